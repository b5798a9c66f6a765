pub mod auth;
pub mod catalog;
pub mod ops;
pub mod orders;
pub mod payments;

//! Adapters that connect kessai's ports to the outside world.

pub mod catalog;
pub mod config;
pub mod db;
pub mod notify;
pub mod password;
pub mod stripe;
pub mod token;

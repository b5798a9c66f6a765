//! Black-box tests of the HTTP API: each test starts the real application on
//! port 0 with a fresh database, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod auth;
mod binary;
mod browser;
mod catalog;
mod crash;
mod emulator;
mod errors;
mod faults;
mod instances;
mod log_secrets;
mod operations;
mod orders;
mod payments;
mod security;
mod webhooks;

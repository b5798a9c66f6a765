#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Black-box tests of the emulator over HTTP, mounted at `/_stripe` as kessai
//! mounts it.

mod auth;
mod checkout;
mod customers;
mod events;
mod faults;
mod helpers;
mod idempotency;
mod payment_intents;
mod refunds;
mod serve;
mod shapes;
mod webhooks;

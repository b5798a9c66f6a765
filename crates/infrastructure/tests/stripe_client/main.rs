//! The Stripe client (`infrastructure::stripe::StripeClient`) through its
//! port, `PaymentGateway`.
//!
//! * `requests`: against a mock HTTP server (wiremock), the exact request of
//!   every call: method, path, headers, form body.
//! * `retries`: what is retried, how often, with which idempotency key, and
//!   what network failures become.
//! * `errors`: Stripe's error objects (and bodies that are not) as typed
//!   `GatewayError`s.
//! * `parsing`: real-shaped objects — Stripe's own examples
//!   (`tests/fixtures/stripe/`, from `shared/stripe/fixtures3.json`) and captured localstripe responses
//!   (`tests/fixtures/localstripe/`) — read into the port's types.
//! * `behaviour`: one suite of cases run against real Stripe-like servers,
//!   one test per case and backend (`behaviour::localstripe::<case>`,
//!   `behaviour::emulator::<case>`). The localstripe tests need
//!   `TEST_LOCALSTRIPE_URL` (scripts/test.sh sets it) and fail without it;
//!   the emulator ones start kessai's `stripe-emulator` in process.
//! * `emulator`: what only the emulator can show: idempotent replays and
//!   refusals, retries through injected faults, timeouts and lost answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod behaviour;
mod emulator;
mod errors;
mod parsing;
mod requests;
mod retries;

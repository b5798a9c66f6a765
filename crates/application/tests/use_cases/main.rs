//! Use-case tests of the `application` crate, run against hand-written
//! in-memory fakes of its ports (see `support`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod auth;
mod catalog;
mod orders;
mod outbox;
mod payments;
mod reconcile;
mod webhooks;

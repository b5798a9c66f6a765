//! Use cases: what a customer or Stripe can ask kessai to do, written against
//! ports so that storage, hashing, tokens and time are supplied from outside.

pub mod auth;
pub mod catalog;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod ports;
pub mod reconcile;
pub mod webhooks;

use std::sync::Arc;

use domain::ports::{
    OrderRepository, OutboxRepository, ProductRepository, SessionRepository, UserRepository,
    WebhookEventRepository,
};

pub use auth::AuthService;
pub use catalog::CatalogService;
pub use orders::OrderService;

/// The storage a running kessai talks to, behind the repository ports.
#[derive(Clone)]
pub struct Repositories {
    pub users: Arc<dyn UserRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub products: Arc<dyn ProductRepository>,
    pub orders: Arc<dyn OrderRepository>,
    pub webhook_events: Arc<dyn WebhookEventRepository>,
    pub outbox: Arc<dyn OutboxRepository>,
}

/// A failure the caller cannot act on (storage down, a bug). Its details go
/// to the log; the client sees an opaque 500.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UnexpectedError(#[from] pub anyhow::Error);

impl From<domain::RepositoryError> for UnexpectedError {
    fn from(error: domain::RepositoryError) -> Self {
        Self(anyhow::Error::new(error))
    }
}

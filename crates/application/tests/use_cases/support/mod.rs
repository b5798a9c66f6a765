//! In-memory fakes of every port and a [`World`] that wires them into the services.

mod gateway;
mod repos;
mod services;
mod webhooks;

use std::sync::Arc;

use application::payments::{CustomerAccounts, LeaseSettings, PaymentService};
use application::webhooks::WebhookService;
use application::{AuthService, CatalogService, OrderService, UnexpectedError};
use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::{Currency, Money, RepositoryError};

pub use gateway::{FakeGateway, Op};
pub use repos::{
    InMemoryOrders, InMemoryProducts, InMemorySessions, InMemoryUsers, InMemoryWebhookEvents,
};
pub use services::{FakeHasher, FakeTokens, SettableClock};
pub use webhooks::{FakeDecoder, BAD_SIGNATURE, GOOD_SIGNATURE};

/// What every injected storage failure says, so a test can recognise it.
pub const INJECTED_FAILURE: &str = "injected storage failure";

/// 2024-11-24T16:00:00Z, i.e. 2024-11-25 01:00 in Japan.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 11, 24, 16, 0, 0).unwrap()
}

pub fn session_ttl() -> Duration {
    Duration::hours(12)
}

/// The flat shipping fee the order service is configured with.
pub fn shipping_fee() -> Money {
    yen(800)
}

pub fn yen(amount: i64) -> Money {
    Money::new(amount, Currency::Jpy).unwrap()
}

/// A lease of [`lease_ttl`] whose waiters poll every 5 ms and give up
/// after `max_wait`: a test that waits for a lease fails fast.
pub fn short_lease(max_wait: std::time::Duration) -> LeaseSettings {
    LeaseSettings {
        ttl: lease_ttl(),
        max_wait,
        poll: std::time::Duration::from_millis(5),
    }
}

pub fn lease_ttl() -> Duration {
    Duration::seconds(60)
}

/// Every fake, shared between the test and the services under test.
pub struct World {
    pub users: Arc<InMemoryUsers>,
    pub sessions: Arc<InMemorySessions>,
    pub products: Arc<InMemoryProducts>,
    pub orders: Arc<InMemoryOrders>,
    /// Shares `orders`: an event is recorded atomically with its order write.
    pub webhook_events: Arc<InMemoryWebhookEvents>,
    pub decoder: Arc<FakeDecoder>,
    pub hasher: Arc<FakeHasher>,
    pub tokens: Arc<FakeTokens>,
    pub clock: Arc<SettableClock>,
    pub gateway: Arc<FakeGateway>,
}

impl World {
    /// Empty storage, the clock at [`t0`].
    pub fn new() -> Self {
        Self::with_gateway(FakeGateway::default())
    }

    /// Like [`World::new`], with a provider set up by the test.
    pub fn with_gateway(gateway: FakeGateway) -> Self {
        let orders = Arc::new(InMemoryOrders::default());
        let users = Arc::new(InMemoryUsers::default());
        Self {
            sessions: Arc::new(InMemorySessions::new(users.clone())),
            users,
            products: Arc::default(),
            webhook_events: Arc::new(InMemoryWebhookEvents::new(orders.clone())),
            orders,
            decoder: Arc::default(),
            hasher: Arc::default(),
            tokens: Arc::default(),
            clock: Arc::new(SettableClock::at(t0())),
            gateway: Arc::new(gateway),
        }
    }

    pub fn auth(&self) -> AuthService {
        AuthService::new(
            self.users.clone(),
            self.sessions.clone(),
            self.hasher.clone(),
            self.tokens.clone(),
            self.clock.clone(),
            session_ttl(),
            CustomerAccounts::new(self.users.clone(), self.gateway.clone()),
        )
    }

    pub fn order_service(&self) -> OrderService {
        OrderService::new(
            self.orders.clone(),
            self.products.clone(),
            self.gateway.clone(),
            self.clock.clone(),
            shipping_fee(),
        )
    }

    pub fn payment_service(&self) -> PaymentService {
        self.payment_service_with(LeaseSettings::default())
    }

    pub fn payment_service_with(&self, lease: LeaseSettings) -> PaymentService {
        PaymentService::new(
            self.orders.clone(),
            self.users.clone(),
            self.gateway.clone(),
            self.clock.clone(),
            lease,
            "test",
        )
    }

    pub fn customer_accounts(&self) -> CustomerAccounts {
        CustomerAccounts::new(self.users.clone(), self.gateway.clone())
    }

    pub fn webhook_service(&self) -> WebhookService {
        WebhookService::new(
            self.decoder.clone(),
            self.orders.clone(),
            self.webhook_events.clone(),
            self.gateway.clone(),
            self.clock.clone(),
        )
    }

    pub fn catalog(&self) -> CatalogService {
        CatalogService::new(self.products.clone())
    }
}

/// Asserts that `error` carries the storage failure a fake injected.
#[track_caller]
pub fn assert_injected(error: &UnexpectedError) {
    match error.0.downcast_ref::<RepositoryError>() {
        Some(RepositoryError::Unexpected(source)) => {
            assert_eq!(source.to_string(), INJECTED_FAILURE);
        }
        _ => panic!("expected the injected storage failure, got {error:?}"),
    }
}

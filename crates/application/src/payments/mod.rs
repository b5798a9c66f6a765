//! Payments: the user's Stripe Customer, the order's PaymentIntent, and
//! bringing an order in line with what Stripe says about its payment.

mod create_intent;
mod customers;
mod settle;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Duration;
use domain::ports::{OrderRepository, UserRepository};

use crate::ports::payment_gateway::PaymentGateway;
use crate::ports::Clock;

pub use create_intent::{CreateIntentError, IntentOutput};
pub use customers::{CustomerAccounts, EnsureCustomerError};
pub use settle::{settle_success, Settlement, SuccessOutcome};

/// How long a caller may hold the right to create an order's PaymentIntent,
/// and how long others wait for it. The lease must outlast the holder's
/// worst case (two Stripe calls, each with the client's timeouts and
/// retries: about 2 × 3 × 10 s); if it does not, a late holder still never
/// cancels an intent the order has recorded.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    pub ttl: Duration,
    pub max_wait: std::time::Duration,
    pub poll: std::time::Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::seconds(120),
            max_wait: std::time::Duration::from_secs(30),
            poll: std::time::Duration::from_millis(50),
        }
    }
}

#[derive(Clone)]
pub struct PaymentService {
    orders: Arc<dyn OrderRepository>,
    gateway: Arc<dyn PaymentGateway>,
    customers: CustomerAccounts,
    settlement: Settlement,
    clock: Arc<dyn Clock>,
    lease: LeaseSettings,
    /// Names this process in lease rows; with the counter it makes each
    /// caller's lease owner unique across instances.
    instance: Arc<str>,
    callers: Arc<AtomicU64>,
}

impl PaymentService {
    pub fn new(
        orders: Arc<dyn OrderRepository>,
        users: Arc<dyn UserRepository>,
        gateway: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
        lease: LeaseSettings,
        instance: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            customers: CustomerAccounts::new(users.clone(), gateway.clone()),
            settlement: Settlement::new(orders.clone(), clock.clone()),
            orders,
            gateway,
            clock,
            lease,
            instance: instance.into(),
            callers: Arc::new(AtomicU64::new(0)),
        }
    }

    fn new_lease_owner(&self) -> String {
        let n = self.callers.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.instance)
    }
}

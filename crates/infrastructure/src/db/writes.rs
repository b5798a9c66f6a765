//! The writes that go through group commit (see [`super::group_commit`]),
//! as the repository hands them to the backends' batch sinks.

use chrono::{DateTime, Utc};
use domain::ports::{EventRecorded, ExpectedPayment, OutboxMessage, WebhookEventRecord};
use domain::{Order, OrderId};

use super::group_commit::{Batched, GroupCommit, WriteKind};

/// One webhook event to record, with the order state and messages that go
/// with it.
pub(crate) struct EventWrite {
    pub event: WebhookEventRecord,
    /// Saved only if still at the version it was read at.
    pub order: Option<Order>,
    pub outbox: Vec<OutboxMessage>,
    pub now: DateTime<Utc>,
}

impl Batched for EventWrite {
    fn order_key(&self) -> Option<i64> {
        self.order.as_ref().map(|order| order.id.get())
    }
}

/// Webhook events: `Err(Conflict)` when an event's order moved on.
pub(crate) type EventWriter = GroupCommit<EventWrite, EventRecorded>;

pub(crate) const EVENTS: WriteKind = WriteKind {
    what: "webhook events",
    metric: "kessai_webhook_commit_batch_size",
};

/// A webhook event paying its order, written only if the order is as the
/// payment expects (PostgreSQL: `postgres/expected_payments.rs`).
pub(crate) struct PaymentWrite {
    pub event: WebhookEventRecord,
    pub payment: ExpectedPayment,
    pub outbox: Vec<OutboxMessage>,
    pub now: DateTime<Utc>,
}

impl Batched for PaymentWrite {
    fn order_key(&self) -> Option<i64> {
        Some(self.payment.order_id.get())
    }
}

/// Expected payments: `None` when nothing was written (the caller reads
/// the order and decides).
pub(crate) type PaymentWriter = GroupCommit<PaymentWrite, Option<EventRecorded>>;

pub(crate) const EXPECTED_PAYMENTS: WriteKind = WriteKind {
    what: "expected payments",
    metric: "kessai_expected_payment_batch_size",
};

/// The two writes around creating a PaymentIntent: a burst of checkouts
/// (a sale opening) would otherwise cost two commits each.
pub(crate) enum OrderWrite {
    /// `claim_payment_lease`: true when the lease was taken.
    ClaimLease {
        order: OrderId,
        /// The version the order was read at.
        version: i64,
        owner: String,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    /// `save_state_releasing_lease`: true when saved, false when the order
    /// moved on since it was read (nothing is written then).
    SaveReleasingLease {
        order: Box<Order>,
        owner: String,
        now: DateTime<Utc>,
    },
}

impl Batched for OrderWrite {
    fn order_key(&self) -> Option<i64> {
        Some(match self {
            Self::ClaimLease { order, .. } => order.get(),
            Self::SaveReleasingLease { order, .. } => order.id.get(),
        })
    }
}

pub(crate) type OrderWriter = GroupCommit<OrderWrite, bool>;

pub(crate) const ORDER_WRITES: WriteKind = WriteKind {
    what: "payment leases and intents",
    metric: "kessai_intent_commit_batch_size",
};

/// A webhook's look-up of its order (PostgreSQL): by PaymentIntent id,
/// else by the order id in the intent's metadata. Not a write, but the
/// same shape of work: in a burst of webhooks every request asks at once,
/// and one query for all of them costs PostgreSQL one statement's
/// overhead, and kessai one connection's round trip, instead of one each.
pub(crate) struct OrderLookup {
    pub payment_intent_id: String,
    pub fallback: Option<OrderId>,
}

impl Batched for OrderLookup {
    fn order_key(&self) -> Option<i64> {
        // Reads take no locks: their order in a batch does not matter.
        None
    }
}

pub(crate) type OrderLookups = GroupCommit<OrderLookup, Option<Order>>;

pub(crate) const ORDER_LOOKUPS: WriteKind = WriteKind {
    what: "order look-ups",
    metric: "kessai_order_lookup_batch_size",
};

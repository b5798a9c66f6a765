//! Repository ports: what the application needs from storage, in domain terms.
//! Adapters (SQLite, PostgreSQL, in-memory fakes) implement them.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::{
    Email, Money, NewOrder, NewProduct, NewUser, Order, OrderId, OrderStatus, Product, ProductId,
    RepositoryError, Session, SessionId, User, UserId,
};

pub type RepoResult<T> = Result<T, RepositoryError>;

#[async_trait]
pub trait UserRepository: Send + Sync {
    /// # Errors
    /// [`RepositoryError::EmailTaken`] when the email is already registered.
    async fn insert(&self, user: NewUser, now: DateTime<Utc>) -> RepoResult<User>;
    async fn find_by_id(&self, id: UserId) -> RepoResult<Option<User>>;
    async fn find_by_email(&self, email: &Email) -> RepoResult<Option<User>>;
    /// Records the user's Stripe Customer unless one is recorded already, and
    /// returns the one that is recorded now (ours, or the one that won).
    async fn set_stripe_customer(&self, id: UserId, customer_id: &str) -> RepoResult<String>;
    /// Users who still have no Stripe Customer (it failed at registration).
    async fn without_stripe_customer(&self, limit: i64) -> RepoResult<Vec<User>>;
}

#[async_trait]
pub trait SessionRepository: Send + Sync {
    async fn insert(&self, session: &Session) -> RepoResult<()>;
    /// The session if it exists, is not revoked and has not expired at `now`.
    async fn find_active(&self, id: &SessionId, now: DateTime<Utc>) -> RepoResult<Option<Session>>;
    /// The user of session `id`, if the session is active at `now`: what
    /// every authenticated request asks, answered in one round trip.
    async fn find_active_user(
        &self,
        id: &SessionId,
        now: DateTime<Utc>,
    ) -> RepoResult<Option<User>>;
    async fn revoke(&self, id: &SessionId, now: DateTime<Utc>) -> RepoResult<()>;
}

#[async_trait]
pub trait ProductRepository: Send + Sync {
    async fn list_active(&self) -> RepoResult<Vec<Product>>;
    /// Active products among `ids`; missing or inactive ones are simply absent.
    async fn find_active(&self, ids: &[ProductId]) -> RepoResult<Vec<Product>>;
    /// Makes the catalog exactly `products`: inserts new SKUs, updates known
    /// ones, and deactivates products that the catalog no longer lists
    /// (they stay in the database because old orders refer to them).
    async fn replace_catalog(&self, products: &[NewProduct]) -> RepoResult<()>;
}

#[async_trait]
pub trait OrderRepository: Send + Sync {
    /// Stores a new order in `pending`, numbering it within `day`
    /// (unique under concurrency).
    async fn insert(
        &self,
        order: NewOrder,
        day: NaiveDate,
        now: DateTime<Utc>,
    ) -> RepoResult<Order>;
    async fn find_by_id(&self, id: OrderId) -> RepoResult<Option<Order>>;
    /// The user's orders, newest first.
    async fn list_for_user(&self, user: UserId) -> RepoResult<Vec<Order>>;
    /// The order whose current PaymentIntent is `payment_intent_id`.
    async fn find_by_payment_intent(&self, payment_intent_id: &str) -> RepoResult<Option<Order>>;
    /// The order whose current PaymentIntent is `payment_intent_id` or, when
    /// no order's is, the order `fallback` (the `metadata.order_id` of an
    /// intent whose creation kessai never recorded). Adapters answer it in
    /// one read: every webhook about an intent asks it.
    async fn find_by_payment_intent_or_id(
        &self,
        payment_intent_id: &str,
        fallback: Option<OrderId>,
    ) -> RepoResult<Option<Order>> {
        if let Some(order) = self.find_by_payment_intent(payment_intent_id).await? {
            return Ok(Some(order));
        }
        match fallback {
            Some(id) => self.find_by_id(id).await,
            None => Ok(None),
        }
    }
    /// Writes the order's state if, and only if, nobody saved the order
    /// since it was read (its version is unchanged), and advances the
    /// version (of the stored row and of `order`). Two writers racing from
    /// the same read cannot both win, even when neither changes the status.
    ///
    /// # Errors
    /// [`RepositoryError::Conflict`] when the order was saved by someone else
    /// since it was read.
    async fn save_state(&self, order: &mut Order, now: DateTime<Utc>) -> RepoResult<()>;
    /// [`Self::save_state`] and, in the same write, gives up the payment
    /// lease `owner` holds on the order (if it still does): creating an
    /// intent records it and frees the order for the next caller at once.
    /// On a `Conflict` nothing is written and the lease stays.
    async fn save_state_releasing_lease(
        &self,
        order: &mut Order,
        owner: &str,
        now: DateTime<Utc>,
    ) -> RepoResult<()>;
    /// [`Self::save_state`] and, in the same transaction, queues `outbox`.
    async fn save_state_and_notify(
        &self,
        order: &mut Order,
        outbox: &[OutboxMessage],
        now: DateTime<Utc>,
    ) -> RepoResult<()>;
    /// Claims the right to create `order`'s PaymentIntent until `until`,
    /// if the order is still at the version it was read at and no other
    /// claim is live at `now`. Returns whether the claim was granted.
    async fn claim_payment_lease(
        &self,
        order: &Order,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> RepoResult<bool>;
    /// Gives up a claim made by `owner` (no-op if it is not the holder).
    async fn release_payment_lease(&self, order: OrderId, owner: &str) -> RepoResult<()>;
    /// Orders awaiting payment with a PaymentIntent, unchanged since
    /// `quiet_since` and due for a check at `now`, least recently changed
    /// first.
    async fn due_for_reconciliation(
        &self,
        quiet_since: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> RepoResult<Vec<Order>>;
    /// Records that the order was checked: the next check is not before
    /// `next_check_at`, and this was check number `checks`.
    async fn schedule_next_check(
        &self,
        order: OrderId,
        next_check_at: DateTime<Utc>,
        checks: i64,
    ) -> RepoResult<()>;
    /// How many times the order was checked already.
    async fn reconcile_checks(&self, order: OrderId) -> RepoResult<i64>;
}

/// A webhook event as kessai recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEventRecord {
    pub id: String,
    pub kind: String,
    /// The provider's timestamp, unix seconds.
    pub created: i64,
    pub received_at: DateTime<Utc>,
    /// What processing did: `applied`, `ignored`, `mismatch`, `foreign`, `review`.
    pub outcome: String,
    pub detail: Option<String>,
    pub order_id: Option<OrderId>,
    pub payment_intent_id: Option<String>,
    /// The verified raw body, kept for replay.
    pub payload: String,
}

/// Follow-up work queued with a change and done after it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub topic: String,
    pub order_id: OrderId,
}

/// A queued message, as the dispatcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOutboxMessage {
    pub id: i64,
    pub message: OutboxMessage,
    pub attempts: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRecorded {
    Recorded,
    /// The event id was recorded before: nothing was written.
    Duplicate,
}

/// A payment to record without reading its order first: the common
/// webhook, an order awaiting payment through this very PaymentIntent, for
/// exactly its total. See [`WebhookEventRepository::record_expected_payment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPayment {
    pub order_id: OrderId,
    pub payment_intent_id: String,
    /// The amount and currency the PaymentIntent charged.
    pub charged: Money,
    pub paid_at: DateTime<Utc>,
}

impl ExpectedPayment {
    /// Whether `order` is in the state this payment expects: awaiting
    /// payment through this PaymentIntent, with this total. The adapters'
    /// conditional writes test exactly this, in storage.
    pub fn is_expected_by(&self, order: &Order) -> bool {
        order.id == self.order_id
            && order.status() == OrderStatus::AwaitingPayment
            && order.state().payment_intent_id.as_deref() == Some(self.payment_intent_id.as_str())
            && order.total() == self.charged
    }
}

#[async_trait]
pub trait WebhookEventRepository: Send + Sync {
    async fn find(&self, id: &str) -> RepoResult<Option<WebhookEventRecord>>;

    /// Atomically and durably (it returns after the commit): records
    /// `event` (a known id → `Duplicate`, and nothing is written), saves
    /// `order`'s state when given (as [`OrderRepository::save_state`]: a
    /// stale version is a `Conflict` and nothing is written), and queues
    /// `outbox`. Adapters may commit concurrent calls together.
    async fn record(
        &self,
        event: &WebhookEventRecord,
        order: Option<&mut Order>,
        outbox: &[OutboxMessage],
        now: DateTime<Utc>,
    ) -> RepoResult<EventRecorded>;

    /// Records `event` and marks its order paid, in one durable write,
    /// **only if** the order is as `payment` expects
    /// ([`ExpectedPayment::is_expected_by`], tested in storage, not on a
    /// copy read before): its status becomes `paid`, `paid_at` is set, the
    /// last payment error cleared, its version advanced, and `outbox` is
    /// queued. A known event id writes nothing (`Some(Duplicate)`).
    ///
    /// `None` means nothing was written: the order is not as expected, or
    /// the adapter declined (it may, for any batch it cannot write this
    /// way). The caller then reads the order and decides as for any
    /// event. The default declines every time: an adapter whose reads
    /// are cheap gains nothing from skipping one.
    async fn record_expected_payment(
        &self,
        _event: &WebhookEventRecord,
        _payment: &ExpectedPayment,
        _outbox: &[OutboxMessage],
        _now: DateTime<Utc>,
    ) -> RepoResult<Option<EventRecorded>> {
        Ok(None)
    }

    /// Like [`Self::record`] for an event being replayed: overwrites the
    /// stored outcome instead of refusing the known id.
    async fn record_replay(
        &self,
        event: &WebhookEventRecord,
        order: Option<&mut Order>,
        outbox: &[OutboxMessage],
        now: DateTime<Utc>,
    ) -> RepoResult<()>;
}

/// What the outbox still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxBacklog {
    pub pending: i64,
    pub given_up: i64,
}

#[async_trait]
pub trait OutboxRepository: Send + Sync {
    /// Claims up to `limit` messages not yet dispatched, tried fewer than
    /// `max_attempts` times and not claimed by anyone else at `now`, oldest
    /// first, until `until`. Concurrent callers (other instances) never get
    /// the same message while the claim holds.
    async fn claim_pending(
        &self,
        limit: i64,
        max_attempts: i64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> RepoResult<Vec<PendingOutboxMessage>>;
    /// Records `ids` as sent, in one statement: a pass records its sends
    /// together, so the outbox costs a shared write, not one per message.
    async fn mark_dispatched(&self, ids: &[i64], now: DateTime<Utc>) -> RepoResult<()>;
    /// Counts a failed attempt and gives up the claim, so the next pass
    /// (of any instance) retries it.
    async fn mark_failed(&self, id: i64) -> RepoResult<()>;
    /// Messages not yet dispatched: those still to send, and those given
    /// up after `max_attempts` (left for an operator).
    async fn backlog(&self, max_attempts: i64) -> RepoResult<OutboxBacklog>;
}

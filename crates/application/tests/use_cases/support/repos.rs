//! In-memory repositories. Each keeps its rows behind a `std::sync::Mutex`
//! and has a `failing` switch that makes every call fail like a broken database.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::ports::{
    EventRecorded, ExpectedPayment, OrderRepository, OutboxMessage, ProductRepository, RepoResult,
    SessionRepository, UserRepository, WebhookEventRecord, WebhookEventRepository,
};
use domain::{
    Email, Money, NewOrder, NewProduct, NewUser, Order, OrderId, OrderNumber, OrderState, Product,
    ProductId, RepositoryError, Session, SessionId, Sku, User, UserId,
};

use super::INJECTED_FAILURE;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unexpected(message: &str) -> RepositoryError {
    RepositoryError::unexpected(io::Error::other(message.to_string()))
}

/// When on, every call of the fake that owns it returns `RepositoryError::Unexpected`.
#[derive(Debug, Default)]
pub struct FailSwitch(AtomicBool);

impl FailSwitch {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> RepoResult<()> {
        if self.0.load(Ordering::SeqCst) {
            Err(unexpected(INJECTED_FAILURE))
        } else {
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- users

#[derive(Default)]
pub struct InMemoryUsers {
    users: Mutex<Vec<User>>,
    pub failing: FailSwitch,
}

impl InMemoryUsers {
    pub fn all(&self) -> Vec<User> {
        lock(&self.users).clone()
    }
}

#[async_trait]
impl UserRepository for InMemoryUsers {
    async fn insert(&self, user: NewUser, now: DateTime<Utc>) -> RepoResult<User> {
        self.failing.check()?;
        let mut users = lock(&self.users);
        if users.iter().any(|u| u.email == user.email) {
            return Err(RepositoryError::EmailTaken);
        }
        let user = User {
            id: UserId::new(users.len() as i64 + 1),
            email: user.email,
            name: user.name,
            password_hash: user.password_hash,
            stripe_customer_id: None,
            created_at: now,
        };
        users.push(user.clone());
        Ok(user)
    }

    async fn find_by_id(&self, id: UserId) -> RepoResult<Option<User>> {
        self.failing.check()?;
        Ok(lock(&self.users).iter().find(|u| u.id == id).cloned())
    }

    async fn find_by_email(&self, email: &Email) -> RepoResult<Option<User>> {
        self.failing.check()?;
        Ok(lock(&self.users)
            .iter()
            .find(|u| &u.email == email)
            .cloned())
    }

    async fn without_stripe_customer(&self, limit: i64) -> RepoResult<Vec<User>> {
        self.failing.check()?;
        Ok(lock(&self.users)
            .iter()
            .filter(|u| u.stripe_customer_id.is_none())
            .take(usize::try_from(limit).unwrap_or(0))
            .cloned()
            .collect())
    }

    async fn set_stripe_customer(&self, id: UserId, customer_id: &str) -> RepoResult<String> {
        self.failing.check()?;
        let mut users = lock(&self.users);
        let user = users
            .iter_mut()
            .find(|u| u.id == id)
            .ok_or_else(|| unexpected("no such user"))?;
        Ok(user
            .stripe_customer_id
            .get_or_insert_with(|| customer_id.to_string())
            .clone())
    }
}

// ---------------------------------------------------------------- sessions

#[derive(Debug, Clone)]
pub struct StoredSession {
    pub session: Session,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub struct InMemorySessions {
    sessions: Mutex<HashMap<SessionId, StoredSession>>,
    /// Sessions name users: the one-query lookup reads them from here.
    users: Arc<InMemoryUsers>,
    pub failing: FailSwitch,
}

impl InMemorySessions {
    pub fn new(users: Arc<InMemoryUsers>) -> Self {
        Self {
            sessions: Mutex::default(),
            users,
            failing: FailSwitch::default(),
        }
    }

    pub fn get(&self, id: &SessionId) -> Option<StoredSession> {
        lock(&self.sessions).get(id).cloned()
    }

    pub fn count(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn revoked_count(&self) -> usize {
        lock(&self.sessions)
            .values()
            .filter(|s| s.revoked_at.is_some())
            .count()
    }
}

#[async_trait]
impl SessionRepository for InMemorySessions {
    async fn insert(&self, session: &Session) -> RepoResult<()> {
        self.failing.check()?;
        let mut sessions = lock(&self.sessions);
        if sessions.contains_key(&session.id) {
            return Err(unexpected("duplicate session id"));
        }
        let stored = StoredSession {
            session: session.clone(),
            revoked_at: None,
        };
        sessions.insert(session.id.clone(), stored);
        Ok(())
    }

    async fn find_active(&self, id: &SessionId, now: DateTime<Utc>) -> RepoResult<Option<Session>> {
        self.failing.check()?;
        Ok(lock(&self.sessions)
            .get(id)
            .filter(|s| s.revoked_at.is_none() && s.session.expires_at > now)
            .map(|s| s.session.clone()))
    }

    async fn find_active_user(
        &self,
        id: &SessionId,
        now: DateTime<Utc>,
    ) -> RepoResult<Option<User>> {
        let Some(session) = self.find_active(id, now).await? else {
            return Ok(None);
        };
        self.users.failing.check()?;
        Ok(lock(&self.users.users)
            .iter()
            .find(|u| u.id == session.user_id)
            .cloned())
    }

    async fn revoke(&self, id: &SessionId, now: DateTime<Utc>) -> RepoResult<()> {
        self.failing.check()?;
        if let Some(stored) = lock(&self.sessions).get_mut(id) {
            stored.revoked_at.get_or_insert(now);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- products

#[derive(Default)]
pub struct InMemoryProducts {
    products: Mutex<Vec<Product>>,
    pub failing: FailSwitch,
}

impl InMemoryProducts {
    /// Stores a product directly (test set-up) and returns it with its id.
    pub fn add(&self, sku: &str, name: &str, price: Money, active: bool) -> Product {
        let mut products = lock(&self.products);
        let product = Product {
            id: ProductId::new(products.len() as i64 + 1),
            sku: Sku::parse(sku).unwrap(),
            name: name.to_string(),
            price,
            active,
        };
        products.push(product.clone());
        product
    }

    pub fn all(&self) -> Vec<Product> {
        lock(&self.products).clone()
    }
}

#[async_trait]
impl ProductRepository for InMemoryProducts {
    async fn list_active(&self) -> RepoResult<Vec<Product>> {
        self.failing.check()?;
        Ok(lock(&self.products)
            .iter()
            .filter(|p| p.active)
            .cloned()
            .collect())
    }

    async fn find_active(&self, ids: &[ProductId]) -> RepoResult<Vec<Product>> {
        self.failing.check()?;
        Ok(lock(&self.products)
            .iter()
            .filter(|p| p.active && ids.contains(&p.id))
            .cloned()
            .collect())
    }

    async fn replace_catalog(&self, catalog: &[NewProduct]) -> RepoResult<()> {
        self.failing.check()?;
        let mut products = lock(&self.products);
        for product in products.iter_mut() {
            product.active = false;
        }
        for new in catalog {
            match products.iter_mut().find(|p| p.sku == new.sku) {
                Some(existing) => {
                    existing.name.clone_from(&new.name);
                    existing.price = new.price;
                    existing.active = new.active;
                }
                None => {
                    let id = ProductId::new(products.len() as i64 + 1);
                    products.push(Product {
                        id,
                        sku: new.sku.clone(),
                        name: new.name.clone(),
                        price: new.price,
                        active: new.active,
                    });
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- orders

/// Runs at the start of the next version-checked write (`save_state`, or
/// the order write of a recorded webhook event), before the version check,
/// on the stored order: stands for another writer that got there first.
type Interference = Box<dyn FnOnce(&mut Order) + Send>;

#[derive(Default)]
pub struct InMemoryOrders {
    orders: Mutex<HashMap<OrderId, Order>>,
    /// Orders numbered so far per shop day.
    sequences: Mutex<HashMap<NaiveDate, u32>>,
    conflicts_to_inject: AtomicUsize,
    interference: Mutex<Option<Interference>>,
    save_calls: AtomicUsize,
    /// Order → (lease owner, held until).
    leases: Mutex<HashMap<OrderId, (String, DateTime<Utc>)>>,
    /// Messages queued by `save_state_and_notify`.
    pub notified: Mutex<Vec<domain::ports::OutboxMessage>>,
    /// Order → (next reconciliation check, checks so far).
    checks: Mutex<HashMap<OrderId, (DateTime<Utc>, i64)>>,
    pub failing: FailSwitch,
}

impl InMemoryOrders {
    /// Stores an order as it is (test set-up), e.g. one built with `Order::restore`.
    pub fn put(&self, order: Order) {
        lock(&self.orders).insert(order.id, order);
    }

    pub fn get(&self, id: OrderId) -> Option<Order> {
        lock(&self.orders).get(&id).cloned()
    }

    pub fn count(&self) -> usize {
        lock(&self.orders).len()
    }

    /// The next `n` calls of `save_state` answer `Conflict` without writing.
    pub fn inject_conflicts(&self, n: usize) {
        self.conflicts_to_inject.store(n, Ordering::SeqCst);
    }

    /// Lets "another writer" change the stored order at the start of the
    /// next version-checked write (`save_state` or a webhook event's).
    pub fn interfere_before_next_save(&self, change: impl FnOnce(&mut Order) + Send + 'static) {
        *lock(&self.interference) = Some(Box::new(change));
    }

    /// The live or expired payment lease on `order`: (owner, held until).
    pub fn lease(&self, order: OrderId) -> Option<(String, DateTime<Utc>)> {
        lock(&self.leases).get(&order).cloned()
    }

    pub fn save_calls(&self) -> usize {
        self.save_calls.load(Ordering::SeqCst)
    }

    /// `save_state`'s write, under the orders' lock: writes `order`'s state
    /// over the stored one if the stored version is the one `order` was
    /// read at (after any interference or injected conflict), and advances
    /// both versions. Shared with [`InMemoryWebhookEvents`], whose order
    /// write must be the same check.
    pub fn write_checked(&self, order: &mut Order) -> RepoResult<()> {
        let mut orders = lock(&self.orders);
        let stored = orders
            .get_mut(&order.id)
            .ok_or_else(|| unexpected("a write of an order that was never stored"))?;
        if let Some(change) = lock(&self.interference).take() {
            // Another writer saved first: its change and a new version.
            change(stored);
            *stored = stored.clone().at_version(stored.version() + 1);
        }
        if self.take_injected_conflict() || stored.version() != order.version() {
            return Err(RepositoryError::Conflict);
        }
        // Only the state is written; what was placed never changes.
        *stored = Order::restore(
            stored.id,
            stored.number.clone(),
            stored.created_at,
            stored.placed.clone(),
            order.state().clone(),
        )
        .at_version(stored.version() + 1);
        order.advance_version();
        Ok(())
    }

    fn take_injected_conflict(&self) -> bool {
        self.conflicts_to_inject
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[async_trait]
impl OrderRepository for InMemoryOrders {
    async fn insert(
        &self,
        order: NewOrder,
        day: NaiveDate,
        now: DateTime<Utc>,
    ) -> RepoResult<Order> {
        self.failing.check()?;
        let mut orders = lock(&self.orders);
        let mut sequences = lock(&self.sequences);
        let sequence = sequences.entry(day).or_default();
        *sequence += 1;
        let number = OrderNumber::new(day, *sequence).map_err(RepositoryError::unexpected)?;
        let id = OrderId::new(orders.keys().map(|id| id.get()).max().unwrap_or(0) + 1);
        let state = OrderState::new_pending(order.total.currency());
        let order = Order::restore(id, number, now, order, state);
        orders.insert(id, order.clone());
        Ok(order)
    }

    async fn find_by_id(&self, id: OrderId) -> RepoResult<Option<Order>> {
        self.failing.check()?;
        Ok(self.get(id))
    }

    async fn find_by_payment_intent(&self, payment_intent_id: &str) -> RepoResult<Option<Order>> {
        self.failing.check()?;
        Ok(lock(&self.orders)
            .values()
            .find(|o| o.state().payment_intent_id.as_deref() == Some(payment_intent_id))
            .cloned())
    }

    async fn list_for_user(&self, user: UserId) -> RepoResult<Vec<Order>> {
        self.failing.check()?;
        let mut own: Vec<Order> = lock(&self.orders)
            .values()
            .filter(|o| o.is_owned_by(user))
            .cloned()
            .collect();
        own.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.id)));
        Ok(own)
    }

    async fn save_state(&self, order: &mut Order, _now: DateTime<Utc>) -> RepoResult<()> {
        self.failing.check()?;
        self.save_calls.fetch_add(1, Ordering::SeqCst);
        self.write_checked(order)
    }

    async fn save_state_releasing_lease(
        &self,
        order: &mut Order,
        owner: &str,
        now: DateTime<Utc>,
    ) -> RepoResult<()> {
        self.save_state(order, now).await?;
        self.release_payment_lease(order.id, owner).await
    }

    async fn claim_payment_lease(
        &self,
        order: &Order,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> RepoResult<bool> {
        self.failing.check()?;
        let orders = lock(&self.orders);
        let stored = orders
            .get(&order.id)
            .ok_or_else(|| unexpected("no such order"))?;
        if stored.version() != order.version() {
            return Ok(false);
        }
        let mut leases = lock(&self.leases);
        match leases.get(&order.id) {
            Some((_, held_until)) if *held_until >= now => Ok(false),
            _ => {
                leases.insert(order.id, (owner.to_string(), until));
                Ok(true)
            }
        }
    }

    async fn save_state_and_notify(
        &self,
        order: &mut Order,
        outbox: &[domain::ports::OutboxMessage],
        now: DateTime<Utc>,
    ) -> RepoResult<()> {
        self.save_state(order, now).await?;
        lock(&self.notified).extend(outbox.iter().cloned());
        Ok(())
    }

    async fn due_for_reconciliation(
        &self,
        _quiet_since: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> RepoResult<Vec<Order>> {
        self.failing.check()?;
        let checks = lock(&self.checks);
        Ok(lock(&self.orders)
            .values()
            .filter(|o| o.status() == domain::OrderStatus::AwaitingPayment)
            .filter(|o| o.state().payment_intent_id.is_some())
            .filter(|o| checks.get(&o.id).is_none_or(|(next, _)| *next <= now))
            .take(usize::try_from(limit).unwrap_or(0))
            .cloned()
            .collect())
    }

    async fn schedule_next_check(
        &self,
        order: OrderId,
        next_check_at: DateTime<Utc>,
        checks: i64,
    ) -> RepoResult<()> {
        self.failing.check()?;
        lock(&self.checks).insert(order, (next_check_at, checks));
        Ok(())
    }

    async fn reconcile_checks(&self, order: OrderId) -> RepoResult<i64> {
        self.failing.check()?;
        Ok(lock(&self.checks).get(&order).map_or(0, |(_, n)| *n))
    }

    async fn release_payment_lease(&self, order: OrderId, owner: &str) -> RepoResult<()> {
        self.failing.check()?;
        let mut leases = lock(&self.leases);
        if leases
            .get(&order)
            .is_some_and(|(holder, _)| holder == owner)
        {
            leases.remove(&order);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- webhook events

/// Webhook events and the outbox. `record` is one "transaction" with the
/// order's state, which lives in the shared [`InMemoryOrders`]: the events'
/// lock is held from the duplicate check to the last insert, the order is
/// written with [`InMemoryOrders::write_checked`] before anything else, and
/// a failed write leaves the event and the outbox untouched.
pub struct InMemoryWebhookEvents {
    orders: Arc<InMemoryOrders>,
    events: Mutex<HashMap<String, WebhookEventRecord>>,
    outbox: Mutex<Vec<OutboxMessage>>,
    record_calls: AtomicUsize,
    expected_payment_calls: AtomicUsize,
    /// Whether `record_expected_payment` writes (as PostgreSQL's adapter)
    /// or declines every call (as SQLite's).
    takes_expected_payments: AtomicBool,
    pub failing: FailSwitch,
}

impl InMemoryWebhookEvents {
    pub fn new(orders: Arc<InMemoryOrders>) -> Self {
        Self {
            orders,
            events: Mutex::default(),
            outbox: Mutex::default(),
            record_calls: AtomicUsize::new(0),
            expected_payment_calls: AtomicUsize::new(0),
            takes_expected_payments: AtomicBool::new(true),
            failing: FailSwitch::default(),
        }
    }

    /// From now on `record_expected_payment` declines, as an adapter
    /// without that write does: every event is read, then decided.
    pub fn decline_expected_payments(&self) {
        self.takes_expected_payments.store(false, Ordering::SeqCst);
    }

    pub fn get(&self, id: &str) -> Option<WebhookEventRecord> {
        lock(&self.events).get(id).cloned()
    }

    pub fn count(&self) -> usize {
        lock(&self.events).len()
    }

    /// Every queued message, in queueing order.
    pub fn outbox(&self) -> Vec<OutboxMessage> {
        lock(&self.outbox).clone()
    }

    /// The topics of [`Self::outbox`], in queueing order.
    pub fn outbox_topics(&self) -> Vec<String> {
        lock(&self.outbox).iter().map(|m| m.topic.clone()).collect()
    }

    /// Calls of `record` and `record_replay`, including refused ones.
    pub fn record_calls(&self) -> usize {
        self.record_calls.load(Ordering::SeqCst)
    }

    /// Calls of `record_expected_payment` it did not decline.
    pub fn expected_payment_calls(&self) -> usize {
        self.expected_payment_calls.load(Ordering::SeqCst)
    }

    fn write(
        &self,
        event: &WebhookEventRecord,
        order: Option<&mut Order>,
        outbox: &[OutboxMessage],
        replay: bool,
    ) -> RepoResult<EventRecorded> {
        self.failing.check()?;
        self.record_calls.fetch_add(1, Ordering::SeqCst);
        let mut events = lock(&self.events);
        if !replay && events.contains_key(&event.id) {
            // Another delivery of this event got here first: nothing is written.
            return Ok(EventRecorded::Duplicate);
        }
        if let Some(order) = order {
            // A conflict returns here, before the event or the outbox is touched.
            self.orders.write_checked(order)?;
        }
        match events.get_mut(&event.id) {
            // A replay overwrites what processing did, as the SQL upsert does.
            Some(stored) => {
                stored.outcome.clone_from(&event.outcome);
                stored.detail.clone_from(&event.detail);
                stored.order_id = event.order_id;
            }
            None => {
                events.insert(event.id.clone(), event.clone());
            }
        }
        lock(&self.outbox).extend_from_slice(outbox);
        Ok(EventRecorded::Recorded)
    }
}

#[async_trait]
impl WebhookEventRepository for InMemoryWebhookEvents {
    async fn find(&self, id: &str) -> RepoResult<Option<WebhookEventRecord>> {
        self.failing.check()?;
        Ok(self.get(id))
    }

    async fn record(
        &self,
        event: &WebhookEventRecord,
        order: Option<&mut Order>,
        outbox: &[OutboxMessage],
        _now: DateTime<Utc>,
    ) -> RepoResult<EventRecorded> {
        self.write(event, order, outbox, false)
    }

    async fn record_replay(
        &self,
        event: &WebhookEventRecord,
        order: Option<&mut Order>,
        outbox: &[OutboxMessage],
        _now: DateTime<Utc>,
    ) -> RepoResult<()> {
        self.write(event, order, outbox, true).map(|_| ())
    }

    async fn record_expected_payment(
        &self,
        event: &WebhookEventRecord,
        payment: &ExpectedPayment,
        outbox: &[OutboxMessage],
        _now: DateTime<Utc>,
    ) -> RepoResult<Option<EventRecorded>> {
        self.failing.check()?;
        self.orders.failing.check()?;
        if !self.takes_expected_payments.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.expected_payment_calls.fetch_add(1, Ordering::SeqCst);
        let mut events = lock(&self.events);
        if events.contains_key(&event.id) {
            return Ok(Some(EventRecorded::Duplicate));
        }
        // Storage tests the expectation on the order as stored, not on a
        // copy read before.
        let Some(mut order) = self
            .orders
            .get(payment.order_id)
            .filter(|order| payment.is_expected_by(order))
        else {
            return Ok(None);
        };
        order
            .mark_paid(payment.paid_at)
            .map_err(RepositoryError::unexpected)?;
        match self.orders.write_checked(&mut order) {
            Ok(()) => {}
            // Another writer got there first (`interfere_before_next_save`):
            // in storage the expectation would not hold any more.
            Err(RepositoryError::Conflict) => return Ok(None),
            Err(other) => return Err(other),
        }
        events.insert(event.id.clone(), event.clone());
        lock(&self.outbox).extend_from_slice(outbox);
        Ok(Some(EventRecorded::Recorded))
    }
}

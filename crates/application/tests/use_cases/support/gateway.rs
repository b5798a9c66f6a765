//! A stateful fake of the payment provider: PaymentIntents and Customers
//! kept in memory, idempotency keys honoured as Stripe does, and switches
//! that make it misbehave: an outage, faults of chosen operations, a
//! provider that ignores idempotency keys, slow answers, tampered intents.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use application::ports::payment_gateway::{
    ClientSecret, Customer, GatewayError, IdempotencyKey, NewCustomer, NewPaymentIntent, NewRefund,
    PaymentGateway, PaymentIntent, PaymentIntentStatus, Refund,
};
use async_trait::async_trait;
use domain::Money;

/// The provider's operations, to count, fault or inspect them one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    CreateCustomer,
    CreateIntent,
    RetrieveIntent,
    UpdateIntent,
    CancelIntent,
    CreateRefund,
}

/// A failure injected into one operation.
struct Fault {
    error: GatewayError,
    /// The provider carries the operation out, then the answer is lost
    /// (a timeout after sending): the caller sees `error` anyway.
    after_applying: bool,
    remaining: usize,
}

type Tamper = Box<dyn Fn(&mut PaymentIntent) + Send>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
pub struct FakeGateway {
    intents: Mutex<HashMap<String, PaymentIntent>>,
    /// Ids of the intents in creation order.
    intent_order: Mutex<Vec<String>>,
    customers: Mutex<Vec<Customer>>,
    /// Idempotency key → id of the object the first create request made.
    keys: Mutex<HashMap<String, String>>,
    /// (operation, idempotency key) → the first answer of an update or a
    /// cancel, replayed as Stripe replays it (errors included).
    replies: Mutex<HashMap<(Op, String), Result<PaymentIntent, GatewayError>>>,
    /// When on, idempotency keys are ignored: every create makes a new
    /// object and nothing is replayed.
    ignoring_keys: AtomicBool,
    faults: Mutex<HashMap<Op, Fault>>,
    /// Every call, in order, with the idempotency key it carried.
    log: Mutex<Vec<(Op, Option<String>)>>,
    /// How long creations take before they are carried out.
    create_delay: Mutex<Duration>,
    /// A longer delay for the next creation of an intent only.
    next_create_delay: Mutex<Option<Duration>>,
    /// A delay between creating the next intent and answering.
    next_answer_delay: Mutex<Option<Duration>>,
    /// How long reading an intent takes.
    retrieve_delay: Mutex<Duration>,
    /// Applied to every intent the provider creates from now on.
    tamper: Mutex<Option<Tamper>>,
    pub down: AtomicBool,
    pub intents_created: AtomicUsize,
    pub customers_created: AtomicUsize,
    pub calls: AtomicUsize,
}

impl FakeGateway {
    /// A provider that does not honour idempotency keys (or a bug that
    /// sends a new key each time): only the caller can prevent duplicates.
    pub fn ignoring_keys() -> Self {
        let gateway = Self::default();
        gateway.ignoring_keys.store(true, Ordering::SeqCst);
        gateway
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The next `times` calls of `op` fail with `error` without doing anything.
    pub fn fail(&self, op: Op, times: usize, error: GatewayError) {
        lock(&self.faults).insert(
            op,
            Fault {
                error,
                after_applying: false,
                remaining: times,
            },
        );
    }

    /// The next `times` calls of `op` are carried out, but the caller gets
    /// `error` instead of the answer.
    pub fn fail_after_applying(&self, op: Op, times: usize, error: GatewayError) {
        lock(&self.faults).insert(
            op,
            Fault {
                error,
                after_applying: true,
                remaining: times,
            },
        );
    }

    /// Every creation (customers and intents) waits `delay` first.
    pub fn set_create_delay(&self, delay: Duration) {
        *lock(&self.create_delay) = delay;
    }

    /// Every read of an intent waits `delay` before answering.
    pub fn set_retrieve_delay(&self, delay: Duration) {
        *lock(&self.retrieve_delay) = delay;
    }

    /// The next creation of an intent waits `delay` first (instead of the
    /// usual create delay).
    pub fn delay_next_intent_creation(&self, delay: Duration) {
        *lock(&self.next_create_delay) = Some(delay);
    }

    /// The next intent is created at once, but the answer takes `delay`
    /// (a caller that gives up or crashes meanwhile never learns of it).
    pub fn delay_next_intent_answer(&self, delay: Duration) {
        *lock(&self.next_answer_delay) = Some(delay);
    }

    /// Every intent created from now on comes back changed by `tamper`,
    /// as a misbehaving provider (or a wrong mapping) would answer.
    pub fn tamper_created_intents(&self, tamper: impl Fn(&mut PaymentIntent) + Send + 'static) {
        *lock(&self.tamper) = Some(Box::new(tamper));
    }

    /// How many times `op` was called (including calls that failed).
    pub fn calls_to(&self, op: Op) -> usize {
        lock(&self.log).iter().filter(|(o, _)| *o == op).count()
    }

    pub fn total_calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The idempotency keys `op` was called with, in call order.
    pub fn keys_for(&self, op: Op) -> Vec<String> {
        lock(&self.log)
            .iter()
            .filter(|(o, _)| *o == op)
            .filter_map(|(_, key)| key.clone())
            .collect()
    }

    pub fn intent(&self, id: &str) -> Option<PaymentIntent> {
        lock(&self.intents).get(id).cloned()
    }

    /// Every intent, in creation order.
    pub fn all_intents(&self) -> Vec<PaymentIntent> {
        let intents = lock(&self.intents);
        lock(&self.intent_order)
            .iter()
            .map(|id| intents[id].clone())
            .collect()
    }

    /// Stores an intent as it is (test set-up): one created by an earlier
    /// process, by another integration, or as Stripe reports it later.
    /// Replaces a stored intent of the same id.
    pub fn put_intent(&self, intent: PaymentIntent) {
        let mut intents = lock(&self.intents);
        if !intents.contains_key(&intent.id) {
            lock(&self.intent_order).push(intent.id.clone());
        }
        intents.insert(intent.id.clone(), intent);
    }

    /// Moves an intent to `status` as a customer or Stripe would.
    pub fn set_status(&self, id: &str, status: PaymentIntentStatus) {
        self.edit_intent(id, |intent| intent.status = status);
    }

    /// Changes a stored intent behind kessai's back (the dashboard, a bug,
    /// another integration).
    pub fn edit_intent(&self, id: &str, edit: impl FnOnce(&mut PaymentIntent)) {
        edit(lock(&self.intents).get_mut(id).unwrap());
    }

    pub fn customers(&self) -> Vec<Customer> {
        lock(&self.customers).clone()
    }

    fn honours_keys(&self) -> bool {
        !self.ignoring_keys.load(Ordering::SeqCst)
    }

    fn missing(id: &str) -> GatewayError {
        GatewayError::InvalidRequest {
            status: 404,
            code: Some("resource_missing".into()),
            param: Some("intent".into()),
            message: format!("No such payment_intent: '{id}'"),
        }
    }

    /// Records the call, then answers for an outage or an injected fault.
    /// `Ok(Some(error))`: carry the operation out, then answer `error`.
    fn enter(
        &self,
        op: Op,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<GatewayError>, GatewayError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        lock(&self.log).push((op, key.map(|k| k.as_str().to_string())));
        if self.down.load(Ordering::SeqCst) {
            return Err(GatewayError::Network {
                message: "connection refused".into(),
                outcome_unknown: false,
            });
        }
        let mut faults = lock(&self.faults);
        let Some(fault) = faults.get_mut(&op).filter(|f| f.remaining > 0) else {
            return Ok(None);
        };
        fault.remaining -= 1;
        if fault.after_applying {
            Ok(Some(fault.error.clone()))
        } else {
            Err(fault.error.clone())
        }
    }

    /// The answer the caller gets once the operation was carried out.
    fn leave<T>(
        lost: Option<GatewayError>,
        result: Result<T, GatewayError>,
    ) -> Result<T, GatewayError> {
        match lost {
            Some(error) => Err(error),
            None => result,
        }
    }

    async fn creation_delay(&self, intent: bool) {
        let one_shot = if intent {
            lock(&self.next_create_delay).take()
        } else {
            None
        };
        let delay = one_shot.unwrap_or_else(|| *lock(&self.create_delay));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// Replays the first answer given under `key` for `op`, or computes,
    /// stores and returns a new one.
    fn keyed(
        &self,
        op: Op,
        key: &IdempotencyKey,
        apply: impl FnOnce() -> Result<PaymentIntent, GatewayError>,
    ) -> Result<PaymentIntent, GatewayError> {
        if !self.honours_keys() {
            return apply();
        }
        let mut replies = lock(&self.replies);
        let slot = (op, key.as_str().to_string());
        if let Some(reply) = replies.get(&slot) {
            return reply.clone();
        }
        let reply = apply();
        replies.insert(slot, reply.clone());
        reply
    }
}

#[async_trait]
impl PaymentGateway for FakeGateway {
    async fn create_customer(
        &self,
        customer: &NewCustomer,
        key: &IdempotencyKey,
    ) -> Result<Customer, GatewayError> {
        let lost = self.enter(Op::CreateCustomer, Some(key))?;
        self.creation_delay(false).await;
        let result = {
            let mut keys = lock(&self.keys);
            let mut customers = lock(&self.customers);
            match keys.get(key.as_str()).filter(|_| self.honours_keys()) {
                Some(id) => Ok(customers.iter().find(|c| &c.id == id).cloned().unwrap()),
                None => {
                    let created = Customer {
                        id: format!("cus_fake{}", customers.len() + 1),
                        email: Some(customer.email.clone()),
                        metadata: customer.metadata.clone(),
                    };
                    keys.insert(key.as_str().to_string(), created.id.clone());
                    customers.push(created.clone());
                    self.customers_created.fetch_add(1, Ordering::SeqCst);
                    Ok(created)
                }
            }
        };
        Self::leave(lost, result)
    }

    async fn create_payment_intent(
        &self,
        intent: &NewPaymentIntent,
        key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        let lost = self.enter(Op::CreateIntent, Some(key))?;
        self.creation_delay(true).await;
        let result = {
            let mut keys = lock(&self.keys);
            let mut intents = lock(&self.intents);
            match keys.get(key.as_str()).filter(|_| self.honours_keys()) {
                Some(id) => Ok(intents[id].clone()),
                None => {
                    let id = format!("pi_fake{}", intents.len() + 1);
                    let mut created = PaymentIntent {
                        id: id.clone(),
                        amount: intent.amount.minor_units(),
                        currency: intent.amount.currency().code().to_string(),
                        status: PaymentIntentStatus::RequiresPaymentMethod,
                        client_secret: Some(ClientSecret::new(format!("{id}_secret_fake"))),
                        customer: intent.customer.clone(),
                        metadata: intent.metadata.clone(),
                        last_payment_error: None,
                        latest_charge: None,
                        created: 0,
                    };
                    if let Some(tamper) = lock(&self.tamper).as_ref() {
                        tamper(&mut created);
                    }
                    keys.insert(key.as_str().to_string(), id.clone());
                    intents.insert(id.clone(), created.clone());
                    lock(&self.intent_order).push(id);
                    self.intents_created.fetch_add(1, Ordering::SeqCst);
                    Ok(created)
                }
            }
        };
        let answer_delay = lock(&self.next_answer_delay).take();
        if let Some(delay) = answer_delay {
            tokio::time::sleep(delay).await;
        }
        Self::leave(lost, result)
    }

    async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, GatewayError> {
        let lost = self.enter(Op::RetrieveIntent, None)?;
        let delay = *lock(&self.retrieve_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let result = self.intent(id).ok_or_else(|| Self::missing(id));
        Self::leave(lost, result)
    }

    async fn update_payment_intent_amount(
        &self,
        id: &str,
        amount: Money,
        key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        let lost = self.enter(Op::UpdateIntent, Some(key))?;
        let result = self.keyed(Op::UpdateIntent, key, || {
            let mut intents = lock(&self.intents);
            let intent = intents.get_mut(id).ok_or_else(|| Self::missing(id))?;
            intent.amount = amount.minor_units();
            intent.currency = amount.currency().code().to_string();
            Ok(intent.clone())
        });
        Self::leave(lost, result)
    }

    async fn cancel_payment_intent(
        &self,
        id: &str,
        key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        let lost = self.enter(Op::CancelIntent, Some(key))?;
        let result = self.keyed(Op::CancelIntent, key, || {
            let mut intents = lock(&self.intents);
            let intent = intents.get_mut(id).ok_or_else(|| Self::missing(id))?;
            match intent.status {
                PaymentIntentStatus::Succeeded
                | PaymentIntentStatus::Processing
                | PaymentIntentStatus::Canceled => Err(GatewayError::InvalidRequest {
                    status: 400,
                    code: Some("payment_intent_unexpected_state".into()),
                    param: None,
                    message: format!(
                        "You cannot cancel this PaymentIntent because it has a status of {}.",
                        intent.status.as_str()
                    ),
                }),
                _ => {
                    intent.status = PaymentIntentStatus::Canceled;
                    Ok(intent.clone())
                }
            }
        });
        Self::leave(lost, result)
    }

    async fn create_refund(
        &self,
        refund: &NewRefund,
        key: &IdempotencyKey,
    ) -> Result<Refund, GatewayError> {
        let lost = self.enter(Op::CreateRefund, Some(key))?;
        let result = self
            .intent(&refund.payment_intent)
            .ok_or_else(|| Self::missing(&refund.payment_intent))
            .map(|intent| Refund {
                id: "re_fake1".into(),
                amount: refund.amount.map_or(intent.amount, |a| a.minor_units()),
                currency: intent.currency,
                status: "succeeded".into(),
                payment_intent: Some(intent.id),
            });
        Self::leave(lost, result)
    }
}

//! POST /api/payments/intent: one PaymentIntent per order, whatever the
//! retries, concurrency or failures.

use std::collections::BTreeMap;

use domain::{Money, Order, OrderId, OrderStatus, RepositoryError, User};

use super::{EnsureCustomerError, PaymentService};
use crate::ports::payment_gateway::{
    ClientSecret, GatewayError, IdempotencyKey, NewPaymentIntent, PaymentIntent,
    PaymentIntentStatus,
};
use crate::UnexpectedError;

/// What the frontend needs to confirm the payment with Stripe.js.
#[derive(Debug, Clone)]
pub struct IntentOutput {
    pub client_secret: ClientSecret,
    pub payment_intent_id: String,
    pub amount: Money,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateIntentError {
    #[error("order not found")]
    NotFound,
    #[error("this order belongs to another user")]
    PermissionDenied,
    #[error("this order has already been paid")]
    AlreadyPaid,
    #[error("an order that is {0} cannot be paid")]
    NotPayable(OrderStatus),
    #[error("the payment provider failed: {0}")]
    Provider(#[from] GatewayError),
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

impl From<EnsureCustomerError> for CreateIntentError {
    fn from(e: EnsureCustomerError) -> Self {
        match e {
            EnsureCustomerError::Provider(g) => Self::Provider(g),
            EnsureCustomerError::Unexpected(u) => Self::Unexpected(u),
        }
    }
}

impl From<RepositoryError> for CreateIntentError {
    fn from(e: RepositoryError) -> Self {
        Self::Unexpected(e.into())
    }
}

/// What became of one round of the loop.
enum Round {
    Ready(IntentOutput),
    /// The order changed under us, or another caller is creating the
    /// intent: read it again.
    Again,
}

fn output(intent: PaymentIntent, amount: Money) -> Result<IntentOutput, CreateIntentError> {
    let client_secret = intent.client_secret.ok_or_else(|| GatewayError::Api {
        status: 200,
        message: "the PaymentIntent came back without a client_secret".into(),
    })?;
    Ok(IntentOutput {
        client_secret,
        payment_intent_id: intent.id,
        amount,
    })
}

impl PaymentService {
    /// Returns the order's open PaymentIntent, creating it if there is none.
    ///
    /// The checks come in the design document's order: the order exists
    /// (404), it is the caller's (403), it is not paid (409), it is payable
    /// (409). The amount and currency are the order's total, never input.
    #[tracing::instrument(skip_all, fields(user_id = %user.id, order_id = %order_id, payment_intent = tracing::field::Empty))]
    pub async fn create_payment_intent(
        &self,
        user: &User,
        order_id: OrderId,
    ) -> Result<IntentOutput, CreateIntentError> {
        let started = std::time::Instant::now();
        loop {
            let order = self
                .orders
                .find_by_id(order_id)
                .await?
                .ok_or(CreateIntentError::NotFound)?;
            if !order.is_owned_by(user.id) {
                return Err(CreateIntentError::PermissionDenied);
            }
            match order.status() {
                OrderStatus::Paid => return Err(CreateIntentError::AlreadyPaid),
                OrderStatus::Pending | OrderStatus::AwaitingPayment => {}
                other => return Err(CreateIntentError::NotPayable(other)),
            }
            let round = match order.state().payment_intent_id.clone() {
                Some(intent_id) => self.reuse_or_replace(user, order, &intent_id).await?,
                None => self.create_new(user, order).await?,
            };
            match round {
                Round::Ready(output) => {
                    tracing::Span::current()
                        .record("payment_intent", output.payment_intent_id.as_str());
                    return Ok(output);
                }
                Round::Again if started.elapsed() < self.lease.max_wait => {
                    tokio::time::sleep(self.lease.poll).await;
                }
                Round::Again => {
                    return Err(GatewayError::Network {
                        message:
                            "timed out waiting for the PaymentIntent another request is creating"
                                .into(),
                        outcome_unknown: true,
                    }
                    .into())
                }
            }
        }
    }

    /// The order already has an intent: return it if it can still be paid
    /// (updating its amount if the total changed), record the payment if it
    /// already succeeded, or replace it if it was cancelled.
    async fn reuse_or_replace(
        &self,
        user: &User,
        order: Order,
        intent_id: &str,
    ) -> Result<Round, CreateIntentError> {
        let intent = self.gateway.retrieve_payment_intent(intent_id).await?;
        if intent
            .metadata
            .get("order_id")
            .is_some_and(|id| id != &order.id.to_string())
        {
            tracing::error!(payment_intent = %intent.id, "the order's PaymentIntent names another order");
            return Err(GatewayError::Api {
                status: 200,
                message: "PaymentIntent does not belong to this order".into(),
            }
            .into());
        }
        match intent.status {
            PaymentIntentStatus::Succeeded => {
                self.settlement.apply_success(order, &intent).await?;
                Err(CreateIntentError::AlreadyPaid)
            }
            PaymentIntentStatus::Canceled => self.create_new(user, order).await,
            ref status if status.is_awaiting_customer() && !intent.charges(order.total()) => {
                let total = order.total();
                // The key names the change (from what, to what), so a second
                // correction is a new request, not a replay of the first.
                let key = IdempotencyKey::new(format!(
                    "kessai-order-{}-intent-v{}-amount-{}{}-to-{}{}",
                    order.id,
                    order.state().payment_attempts,
                    intent.amount,
                    intent.currency,
                    total.minor_units(),
                    total.currency()
                ));
                let updated = self
                    .gateway
                    .update_payment_intent_amount(&intent.id, total, &key)
                    .await?;
                // Read it back: a replayed answer to an identical earlier
                // correction says nothing about the intent now.
                let updated = self.gateway.retrieve_payment_intent(&updated.id).await?;
                if !updated.charges(total) {
                    return Err(GatewayError::Api {
                        status: 200,
                        message: "the PaymentIntent amount could not be corrected".into(),
                    }
                    .into());
                }
                tracing::info!(payment_intent = %updated.id, amount = %total, "PaymentIntent amount updated to the order total");
                Ok(Round::Ready(output(updated, total)?))
            }
            // Open, processing or awaiting capture: the customer continues
            // with the same intent.
            _ => Ok(Round::Ready(output(intent, order.total())?)),
        }
    }

    /// Creates the order's next PaymentIntent under a lease, so that
    /// concurrent callers (in any instance) create exactly one.
    async fn create_new(&self, user: &User, order: Order) -> Result<Round, CreateIntentError> {
        let owner = self.new_lease_owner();
        let now = self.clock.now();
        if !self
            .orders
            .claim_payment_lease(&order, &owner, now, now + self.lease.ttl)
            .await?
        {
            return Ok(Round::Again);
        }
        let result = self.create_under_lease(user, order.clone(), &owner).await;
        // `Ready` from here means the intent was recorded, and the same
        // write gave the lease up; every other outcome still holds it.
        if matches!(result, Ok(Round::Ready(_))) {
            return result;
        }
        if let Err(error) = self.orders.release_payment_lease(order.id, &owner).await {
            // The lease runs out by itself; log and carry on.
            tracing::warn!(%error, "could not release the PaymentIntent lease");
        }
        result
    }

    async fn create_under_lease(
        &self,
        user: &User,
        mut order: Order,
        lease_owner: &str,
    ) -> Result<Round, CreateIntentError> {
        let customer = self.customers.ensure(user).await?;
        let total = order.total();
        let attempt = order.next_payment_attempt();
        let key = IdempotencyKey::new(format!("kessai-order-{}-intent-v{attempt}", order.id));
        let request = NewPaymentIntent {
            amount: total,
            customer: Some(customer),
            metadata: BTreeMap::from([
                ("order_id".to_string(), order.id.to_string()),
                ("order_number".to_string(), order.number.to_string()),
                ("user_id".to_string(), user.id.to_string()),
            ]),
        };
        let intent = self.gateway.create_payment_intent(&request, &key).await?;
        if !intent.charges(total) {
            tracing::error!(payment_intent = %intent.id, charged = intent.amount, expected = %total, "provider created an intent for the wrong amount");
            return Err(GatewayError::Api {
                status: 200,
                message: "PaymentIntent amount does not match the order".into(),
            }
            .into());
        }
        if order.begin_payment(intent.id.clone()).is_err() {
            return Ok(Round::Again);
        }
        match self
            .orders
            .save_state_releasing_lease(&mut order, lease_owner, self.clock.now())
            .await
        {
            Ok(()) => {
                tracing::info!(payment_intent = %intent.id, attempt, "PaymentIntent created");
                Ok(Round::Ready(output(intent, total)?))
            }
            Err(RepositoryError::Conflict) => {
                // The order changed while we were at Stripe. If it now holds
                // this very intent, another caller (whose lease followed our
                // expired one) recorded it with the same idempotency key:
                // it is the order's, hand it out.
                if let Some(stored) = self.orders.find_by_id(order.id).await? {
                    if stored.state().payment_intent_id.as_deref() == Some(intent.id.as_str()) {
                        return Ok(Round::Again);
                    }
                }
                // Otherwise (cancelled, or paid through another path) this
                // intent was never handed out: cancel it so it cannot be
                // paid, then decide again.
                let cancel_key = IdempotencyKey::new(format!(
                    "kessai-order-{}-intent-v{attempt}-cancel",
                    order.id
                ));
                if let Err(error) = self
                    .gateway
                    .cancel_payment_intent(&intent.id, &cancel_key)
                    .await
                {
                    tracing::warn!(payment_intent = %intent.id, %error, "could not cancel an unused PaymentIntent");
                }
                Ok(Round::Again)
            }
            Err(other) => Err(other.into()),
        }
    }
}

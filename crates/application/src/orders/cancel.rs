use domain::{Order, OrderId, OrderStatus, RepositoryError, UserId, ValidationError};

use crate::ports::payment_gateway::{GatewayError, IdempotencyKey, PaymentIntentStatus};

use super::{OrderService, OwnershipError};
use crate::UnexpectedError;

const MAX_REASON_CHARS: usize = 500;
/// A cancel that lost a race re-reads the order and decides again; a few
/// rounds are enough because every round means the status moved forward.
const MAX_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum CancelOrderError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("order not found")]
    NotFound,
    #[error("this order belongs to another user")]
    PermissionDenied,
    #[error("an order that is {0} cannot be cancelled")]
    CannotCancel(OrderStatus),
    #[error("the payment provider failed: {0}")]
    Provider(#[from] GatewayError),
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

impl From<OwnershipError> for CancelOrderError {
    fn from(e: OwnershipError) -> Self {
        match e {
            OwnershipError::NotFound => Self::NotFound,
            OwnershipError::NotYours => Self::PermissionDenied,
            OwnershipError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

impl OrderService {
    /// Cancels an order that has not been paid.
    #[tracing::instrument(skip_all, fields(user_id = %user, order_id = %id))]
    pub async fn cancel_order(
        &self,
        user: UserId,
        id: OrderId,
        reason: Option<String>,
    ) -> Result<Order, CancelOrderError> {
        let reason = reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        if reason.as_ref().is_some_and(|r| r.contains('\0')) {
            // Storage (PostgreSQL text) cannot hold U+0000.
            return Err(ValidationError::new("reason", "must not contain NUL characters").into());
        }
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(ValidationError::new(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            )
            .into());
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut order = self.owned_order(user, id).await?;
            if !order.status().can_become(OrderStatus::Cancelled) {
                return Err(CancelOrderError::CannotCancel(order.status()));
            }
            if let Some(paid) = self.cancel_open_intent(&order).await? {
                return Err(CancelOrderError::CannotCancel(paid));
            }
            let now = self.clock.now();
            order
                .cancel(now, reason.clone())
                .map_err(|e| CancelOrderError::CannotCancel(e.from))?;
            match self.orders.save_state(&mut order, now).await {
                Ok(()) => {
                    tracing::info!("order cancelled");
                    return Ok(order);
                }
                Err(RepositoryError::Conflict) => continue,
                Err(other) => return Err(UnexpectedError::from(other).into()),
            }
        }
        Err(UnexpectedError(anyhow::anyhow!(
            "order {id} kept changing while it was being cancelled"
        ))
        .into())
    }
}

impl OrderService {
    /// Cancels the order's PaymentIntent at the provider before the order
    /// itself, so a cancelled order can never be paid afterwards. Returns
    /// the status that forbids cancelling when the payment turns out to
    /// have gone through (or to be under way) already.
    async fn cancel_open_intent(
        &self,
        order: &Order,
    ) -> Result<Option<OrderStatus>, CancelOrderError> {
        let Some(intent_id) = order.state().payment_intent_id.clone() else {
            return Ok(None);
        };
        // Ask first: cancelling only what can be cancelled means the
        // cancel's idempotency key is never spent on a refusal that Stripe
        // would replay for a day.
        let current = match self.gateway.retrieve_payment_intent(&intent_id).await {
            Ok(intent) => intent,
            // An intent the provider does not know can never be paid.
            Err(e) if e.is_not_found() => {
                tracing::warn!(payment_intent = %intent_id, "the order's PaymentIntent is unknown to the provider");
                return Ok(None);
            }
            Err(other) => return Err(other.into()),
        };
        let intent = if current.status.is_awaiting_customer() {
            let key = IdempotencyKey::new(format!("kessai-order-{}-cancel-{intent_id}", order.id));
            match self.gateway.cancel_payment_intent(&intent_id, &key).await {
                Ok(intent) => intent,
                // It moved on between the two calls (the customer paid):
                // ask again what it is now.
                Err(GatewayError::InvalidRequest { .. }) => {
                    self.gateway.retrieve_payment_intent(&intent_id).await?
                }
                Err(other) => return Err(other.into()),
            }
        } else {
            current
        };
        match intent.status {
            PaymentIntentStatus::Canceled => Ok(None),
            PaymentIntentStatus::Succeeded => {
                let settled = self
                    .settlement
                    .apply_success(order.clone(), &intent)
                    .await?;
                Ok(Some(settled.status()))
            }
            // Processing (e.g. konbini): the money may still arrive.
            _ => Ok(Some(order.status())),
        }
    }
}

use std::sync::Arc;

use domain::ports::OrderRepository;
use domain::{Order, OrderStatus, RepositoryError};

use crate::ports::payment_gateway::{PaymentIntent, PaymentIntentStatus};
use crate::ports::Clock;
use crate::UnexpectedError;

/// Brings an order in line with what the provider says about one of its
/// PaymentIntents. Every path that learns a payment's outcome (the intent
/// endpoint, cancellation, webhooks, reconciliation) goes through here, so
/// the rules are applied once: only the order's own intent counts, the
/// amount and currency must match, and nothing moves backwards.
#[derive(Clone)]
pub struct Settlement {
    orders: Arc<dyn OrderRepository>,
    clock: Arc<dyn Clock>,
}

impl Settlement {
    pub fn new(orders: Arc<dyn OrderRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { orders, clock }
    }

    /// Applies a succeeded `intent` to `order`: marks it paid when the
    /// intent is the order's and charges exactly its total. Returns the
    /// order as stored afterwards.
    pub async fn apply_success(
        &self,
        mut order: Order,
        intent: &PaymentIntent,
    ) -> Result<Order, UnexpectedError> {
        if intent.status != PaymentIntentStatus::Succeeded {
            return Ok(order);
        }
        if order.state().payment_intent_id.as_deref() != Some(intent.id.as_str()) {
            tracing::warn!(order_id = %order.id, payment_intent = %intent.id, "succeeded intent is not the order's current one; ignored");
            return Ok(order);
        }
        if !intent.charges(order.total()) {
            tracing::error!(
                order_id = %order.id,
                payment_intent = %intent.id,
                charged = intent.amount,
                charged_currency = %intent.currency,
                expected = %order.total(),
                "payment amount does not match the order: NOT marking it paid, needs review"
            );
            return Ok(order);
        }
        if order.status() != OrderStatus::AwaitingPayment {
            return Ok(order);
        }
        if order.mark_paid(self.clock.now()).is_err() {
            return Ok(order);
        }
        match self.orders.save_state(&mut order, self.clock.now()).await {
            Ok(()) => {
                tracing::info!(order_id = %order.id, payment_intent = %intent.id, "order paid");
                Ok(order)
            }
            // Someone else changed the order first; theirs is the stored truth.
            Err(RepositoryError::Conflict) => {
                Ok(self.orders.find_by_id(order.id).await?.unwrap_or(order))
            }
            Err(other) => Err(other.into()),
        }
    }
}

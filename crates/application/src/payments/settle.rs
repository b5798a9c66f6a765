use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::ports::OrderRepository;
use domain::{Order, OrderStatus, RepositoryError};

use crate::ports::payment_gateway::{PaymentIntent, PaymentIntentStatus};
use crate::ports::Clock;
use crate::UnexpectedError;

/// What a succeeded PaymentIntent means for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessOutcome {
    /// The order is now paid (in memory: the caller stores it).
    Paid,
    /// The order already records this payment.
    AlreadySettled,
    /// The intent has not succeeded (nothing to settle).
    NotSucceeded,
    /// The intent is not the order's (neither its current id nor its
    /// `metadata.order_id`).
    NotTheOrders,
    /// The intent charged another amount or currency than the order total.
    AmountMismatch,
    /// Money was taken for an order that cannot take it (cancelled, or paid
    /// through another intent): a human must look.
    NeedsReview,
}

/// Applies a succeeded `intent` to `order` in memory. The single rule for
/// every path that learns of a payment (the intent endpoint, cancellation,
/// webhooks, reconciliation): only the order's own intent counts (by id,
/// or by `metadata.order_id` for one we never recorded), the amount and
/// currency must equal the order's total, and nothing moves backwards.
pub fn settle_success(
    order: &mut Order,
    intent: &PaymentIntent,
    now: DateTime<Utc>,
) -> SuccessOutcome {
    if intent.status != PaymentIntentStatus::Succeeded {
        return SuccessOutcome::NotSucceeded;
    }
    let current = order.state().payment_intent_id.as_deref() == Some(intent.id.as_str());
    let named = intent.metadata.get("order_id") == Some(&order.id.to_string());
    if !current && !named {
        return SuccessOutcome::NotTheOrders;
    }
    if !intent.charges(order.total()) {
        metrics::counter!("kessai_payment_amount_mismatches_total").increment(1);
        return SuccessOutcome::AmountMismatch;
    }
    match order.status() {
        OrderStatus::Paid | OrderStatus::Refunded if current => SuccessOutcome::AlreadySettled,
        OrderStatus::Paid | OrderStatus::Refunded | OrderStatus::Cancelled => {
            SuccessOutcome::NeedsReview
        }
        OrderStatus::Pending | OrderStatus::AwaitingPayment => {
            // An intent found through its metadata becomes the order's.
            if order.begin_payment(intent.id.clone()).is_err() || order.mark_paid(now).is_err() {
                return SuccessOutcome::NeedsReview;
            }
            SuccessOutcome::Paid
        }
    }
}

/// Stores what [`settle_success`] decides, for callers outside a webhook.
#[derive(Clone)]
pub struct Settlement {
    orders: Arc<dyn OrderRepository>,
    clock: Arc<dyn Clock>,
}

impl Settlement {
    pub fn new(orders: Arc<dyn OrderRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { orders, clock }
    }

    /// Applies a succeeded `intent` to `order` and stores the result.
    /// Returns the order as stored afterwards.
    pub async fn apply_success(
        &self,
        mut order: Order,
        intent: &PaymentIntent,
    ) -> Result<Order, UnexpectedError> {
        match settle_success(&mut order, intent, self.clock.now()) {
            SuccessOutcome::Paid => {}
            SuccessOutcome::AmountMismatch | SuccessOutcome::NeedsReview => {
                tracing::error!(
                    order_id = %order.id,
                    payment_intent = %intent.id,
                    charged = intent.amount,
                    charged_currency = %intent.currency,
                    expected = %order.total(),
                    status = %order.status(),
                    "a payment succeeded that cannot settle this order: NOT marking it paid, needs review"
                );
                return Ok(order);
            }
            SuccessOutcome::AlreadySettled
            | SuccessOutcome::NotTheOrders
            | SuccessOutcome::NotSucceeded => return Ok(order),
        }
        let paid = [domain::ports::OutboxMessage {
            topic: "order_paid".to_string(),
            order_id: order.id,
        }];
        match self
            .orders
            .save_state_and_notify(&mut order, &paid, self.clock.now())
            .await
        {
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

//! Orders: what was bought, for how much, and where the payment stands.

mod number;
mod status;

use chrono::{DateTime, Utc};

pub use number::OrderNumber;
pub use status::{OrderStatus, TransitionError};

use crate::{Currency, Money, OrderId, ProductId, UserId, ValidationError};

/// Consumption tax applied to every order, in percent, rounded down.
pub const TAX_PERCENT: u32 = 10;
pub const MAX_LINES: usize = 50;
pub const MAX_NOTES_CHARS: usize = 1000;

/// How many of one product a line orders: 1 to 999.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 999;

    pub fn new(value: i64) -> Result<Self, ValidationError> {
        match u32::try_from(value) {
            Ok(v) if (1..=Self::MAX).contains(&v) => Ok(Self(v)),
            _ => Err(ValidationError::new(
                "quantity",
                format!("must be between 1 and {}", Self::MAX),
            )),
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

/// One line as the customer asked for it, priced from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrderLine {
    pub product_id: ProductId,
    pub product_name: String,
    pub unit_price: Money,
    pub quantity: Quantity,
}

/// One line of a placed order: name and price are snapshots taken when the
/// order was placed, so later catalog changes never alter what was bought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub product_name: String,
    pub unit_price: Money,
    pub quantity: Quantity,
    pub subtotal: Money,
}

/// An order that has been priced but not stored yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub user_id: UserId,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub tax: Money,
    pub shipping_fee: Money,
    pub total: Money,
    pub notes: Option<String>,
}

impl NewOrder {
    /// Prices an order: subtotal = Σ unit price × quantity, tax = 10 % of the
    /// subtotal rounded down, total = subtotal + tax + shipping fee.
    pub fn price(
        user_id: UserId,
        lines: Vec<NewOrderLine>,
        shipping_fee: Money,
        notes: Option<String>,
    ) -> Result<Self, ValidationError> {
        if lines.is_empty() || lines.len() > MAX_LINES {
            return Err(ValidationError::new(
                "items",
                format!("an order has between 1 and {MAX_LINES} lines"),
            ));
        }
        let notes = match notes.map(|n| n.trim().to_string()) {
            // Storage (PostgreSQL text) cannot hold U+0000.
            Some(n) if n.contains('\0') => {
                return Err(ValidationError::new(
                    "notes",
                    "must not contain NUL characters",
                ))
            }
            Some(n) if n.chars().count() > MAX_NOTES_CHARS => {
                return Err(ValidationError::new(
                    "notes",
                    format!("must be at most {MAX_NOTES_CHARS} characters"),
                ))
            }
            Some(n) if n.is_empty() => None,
            other => other,
        };
        let currency: Currency = shipping_fee.currency();
        let too_large = |_| ValidationError::new("items", "the order total is too large");
        let mut subtotal = Money::zero(currency);
        let mut priced = Vec::with_capacity(lines.len());
        for line in lines {
            if line.unit_price.currency() != currency {
                return Err(ValidationError::new(
                    "items",
                    "all products of an order must share the shop's currency",
                ));
            }
            let line_total = line
                .unit_price
                .checked_mul(line.quantity.get())
                .map_err(too_large)?;
            subtotal = subtotal.checked_add(line_total).map_err(too_large)?;
            priced.push(OrderLine {
                product_id: line.product_id,
                product_name: line.product_name,
                unit_price: line.unit_price,
                quantity: line.quantity,
                subtotal: line_total,
            });
        }
        let tax = subtotal.percent_floor(TAX_PERCENT);
        let total = subtotal
            .checked_add(tax)
            .and_then(|t| t.checked_add(shipping_fee))
            .map_err(too_large)?;
        Ok(Self {
            user_id,
            lines: priced,
            subtotal,
            tax,
            shipping_fee,
            total,
            notes,
        })
    }
}

/// Why the last payment attempt failed, as the provider reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFailure {
    pub code: Option<String>,
    pub message: String,
}

/// The part of an order that changes over its life. Only [`Order`]'s
/// transition methods change it; storage reads and writes it whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    pub status: OrderStatus,
    pub payment_intent_id: Option<String>,
    /// How many PaymentIntents were created for this order. The next one's
    /// idempotency key is derived from it, so a retried creation (after a
    /// timeout or a crash) reuses the key instead of making a second one.
    pub payment_attempts: i64,
    pub paid_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub refunded_amount: Money,
    pub last_payment_error: Option<PaymentFailure>,
}

impl OrderState {
    pub fn new_pending(currency: Currency) -> Self {
        Self {
            status: OrderStatus::Pending,
            payment_intent_id: None,
            payment_attempts: 0,
            paid_at: None,
            cancelled_at: None,
            cancel_reason: None,
            refunded_amount: Money::zero(currency),
            last_payment_error: None,
        }
    }
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub number: OrderNumber,
    pub created_at: DateTime<Utc>,
    pub placed: NewOrder,
    state: OrderState,
    /// Optimistic-concurrency token: how many times the state was saved.
    /// Storage writes a state only over the version it was read at.
    version: i64,
}

impl Order {
    /// Rebuilds an order from storage. The state was produced by these same
    /// transition methods when it was written.
    pub fn restore(
        id: OrderId,
        number: OrderNumber,
        created_at: DateTime<Utc>,
        placed: NewOrder,
        state: OrderState,
    ) -> Self {
        Self {
            id,
            number,
            created_at,
            placed,
            state,
            version: 0,
        }
    }

    /// The same order as read at storage version `version`.
    pub fn at_version(mut self, version: i64) -> Self {
        self.version = version;
        self
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    /// Called by storage once it has written this state.
    pub fn advance_version(&mut self) {
        self.version += 1;
    }

    pub fn state(&self) -> &OrderState {
        &self.state
    }
    pub fn status(&self) -> OrderStatus {
        self.state.status
    }
    pub fn user_id(&self) -> UserId {
        self.placed.user_id
    }
    pub fn total(&self) -> Money {
        self.placed.total
    }
    pub fn is_owned_by(&self, user: UserId) -> bool {
        self.placed.user_id == user
    }

    /// A PaymentIntent now stands for this order (a replacement keeps the status).
    pub fn begin_payment(&mut self, payment_intent_id: String) -> Result<(), TransitionError> {
        if self.state.status != OrderStatus::AwaitingPayment {
            self.state.status = self.state.status.transition(OrderStatus::AwaitingPayment)?;
        }
        if self.state.payment_intent_id.as_deref() != Some(payment_intent_id.as_str()) {
            self.state.payment_attempts += 1;
        }
        self.state.payment_intent_id = Some(payment_intent_id);
        Ok(())
    }

    /// The attempt number the next new PaymentIntent of this order belongs to.
    pub fn next_payment_attempt(&self) -> i64 {
        self.state.payment_attempts + 1
    }

    pub fn mark_paid(&mut self, at: DateTime<Utc>) -> Result<(), TransitionError> {
        self.state.status = self.state.status.transition(OrderStatus::Paid)?;
        self.state.paid_at = Some(at);
        self.state.last_payment_error = None;
        Ok(())
    }

    /// The payment failed; the order stays payable so the customer can retry.
    pub fn record_payment_failure(
        &mut self,
        failure: PaymentFailure,
    ) -> Result<(), TransitionError> {
        if self.state.status != OrderStatus::AwaitingPayment {
            return Err(TransitionError {
                from: self.state.status,
                to: OrderStatus::AwaitingPayment,
            });
        }
        self.state.last_payment_error = Some(failure);
        Ok(())
    }

    pub fn cancel(
        &mut self,
        at: DateTime<Utc>,
        reason: Option<String>,
    ) -> Result<(), TransitionError> {
        self.state.status = self.state.status.transition(OrderStatus::Cancelled)?;
        self.state.cancelled_at = Some(at);
        self.state.cancel_reason = reason;
        Ok(())
    }

    /// Applies the provider's running total of refunds. Refunds only grow,
    /// so an older (smaller) total never lowers what we recorded; the order
    /// becomes `refunded` once everything was given back.
    pub fn record_refunds(&mut self, refunded_total: Money) -> Result<(), TransitionError> {
        let refund_error = TransitionError {
            from: self.state.status,
            to: OrderStatus::Refunded,
        };
        if !matches!(self.state.status, OrderStatus::Paid | OrderStatus::Refunded)
            || refunded_total.currency() != self.total().currency()
            || refunded_total.minor_units() > self.total().minor_units()
        {
            return Err(refund_error);
        }
        if refunded_total.minor_units() > self.state.refunded_amount.minor_units() {
            self.state.refunded_amount = refunded_total;
        }
        if self.state.refunded_amount == self.total() && self.state.status == OrderStatus::Paid {
            self.state.status = self.state.status.transition(OrderStatus::Refunded)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

use std::fmt;

use crate::ValidationError;

/// Where an order stands. The only way to move is [`OrderStatus::transition`],
/// which knows the legal moves; nothing moves backwards and final states stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    AwaitingPayment,
    Paid,
    Refunded,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order cannot go from {from} to {to}")]
pub struct TransitionError {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        Self::Pending,
        Self::AwaitingPayment,
        Self::Paid,
        Self::Refunded,
        Self::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingPayment => "awaiting_payment",
            Self::Paid => "paid",
            Self::Refunded => "refunded",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| ValidationError::new("status", format!("unknown status `{raw}`")))
    }

    /// The legal moves: pending → awaiting_payment → paid → refunded, and
    /// pending / awaiting_payment → cancelled.
    pub const fn can_become(self, next: OrderStatus) -> bool {
        matches!(
            (self, next),
            (Self::Pending, Self::AwaitingPayment)
                | (Self::Pending, Self::Cancelled)
                | (Self::AwaitingPayment, Self::Paid)
                | (Self::AwaitingPayment, Self::Cancelled)
                | (Self::Paid, Self::Refunded)
        )
    }

    pub fn transition(self, next: OrderStatus) -> Result<OrderStatus, TransitionError> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(TransitionError {
                from: self,
                to: next,
            })
        }
    }

    /// Statuses in which the customer may still pay.
    pub const fn is_payable(self) -> bool {
        matches!(self, Self::Pending | Self::AwaitingPayment)
    }

    /// No event, webhook or reconciler may move an order out of these.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Refunded | Self::Cancelled)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

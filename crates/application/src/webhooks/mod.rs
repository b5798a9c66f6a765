//! Stripe's webhooks turned into exactly-once, forward-only changes to
//! orders. Stripe delivers each event at least once, in no particular
//! order, and anyone can POST to the URL: the decoder rejects what Stripe
//! did not sign, the event id is recorded in the same transaction as the
//! change it causes, and the order's state machine refuses backward moves.

mod decide;
mod receive;

use std::sync::Arc;

use domain::ports::{OrderRepository, WebhookEventRepository};

use crate::ports::payment_gateway::PaymentGateway;
use crate::ports::webhooks::{WebhookDecoder, WebhookRejection};
use crate::ports::Clock;
use crate::UnexpectedError;

pub use receive::ReplayError;

/// What processing an event did. Stored with the event (except
/// `Duplicate`, which writes nothing) and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The order changed.
    Applied,
    /// Seen before; nothing changed.
    Duplicate,
    /// Nothing to change: an event type we do not act on, a stale event,
    /// or one whose effect is already recorded.
    Ignored,
    /// The amount or currency differs from the order's total: not applied.
    Mismatch,
    /// A PaymentIntent that is not one of our orders' (another integration
    /// on the same Stripe account).
    Foreign,
    /// Money moved in a way an order cannot absorb (paid after
    /// cancellation, a second payment): not applied, a human must look.
    Review,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Mismatch => "mismatch",
            Self::Foreign => "foreign",
            Self::Review => "review",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandleWebhookError {
    #[error(transparent)]
    Rejected(#[from] WebhookRejection),
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

#[derive(Clone)]
pub struct WebhookService {
    decoder: Arc<dyn WebhookDecoder>,
    orders: Arc<dyn OrderRepository>,
    events: Arc<dyn WebhookEventRepository>,
    gateway: Arc<dyn PaymentGateway>,
    clock: Arc<dyn Clock>,
}

impl WebhookService {
    pub fn new(
        decoder: Arc<dyn WebhookDecoder>,
        orders: Arc<dyn OrderRepository>,
        events: Arc<dyn WebhookEventRepository>,
        gateway: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            decoder,
            orders,
            events,
            gateway,
            clock,
        }
    }
}

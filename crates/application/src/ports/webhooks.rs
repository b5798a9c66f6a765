//! The webhook port: turning a signed request from the payment provider
//! into a typed event, or a reason to refuse it.

use chrono::{DateTime, Utc};

use super::payment_gateway::PaymentIntent;

/// Why a webhook request is refused (both answer 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    /// Missing or garbled `Stripe-Signature`, no matching signature, or a
    /// timestamp outside the tolerance. The reason is for our log only.
    #[error("invalid signature: {0}")]
    InvalidSignature(&'static str),
    /// Correctly signed, but not a Stripe event we can read.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
}

/// A charge as far as refunds are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub id: String,
    pub payment_intent: Option<String>,
    pub amount: i64,
    /// The running total of refunds on this charge.
    pub amount_refunded: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventObject {
    PaymentIntent(PaymentIntent),
    Charge(Charge),
    /// An object kessai does not act on.
    Other,
}

/// A verified event from the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub id: String,
    /// e.g. `payment_intent.succeeded`.
    pub kind: String,
    /// Unix seconds, as the provider stamped it.
    pub created: i64,
    pub object: EventObject,
}

pub trait WebhookDecoder: Send + Sync {
    /// Verifies `signature` (the `Stripe-Signature` header) over the raw
    /// `payload` bytes, then parses them.
    fn decode(
        &self,
        signature: Option<&str>,
        payload: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ProviderEvent, WebhookRejection>;

    /// Parses a payload that was verified when it arrived (a replay).
    fn parse(&self, payload: &[u8]) -> Result<ProviderEvent, WebhookRejection>;
}

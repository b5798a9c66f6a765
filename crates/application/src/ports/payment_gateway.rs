//! The payment provider port (the design document's `IStripeService`):
//! PaymentIntents, Customers and Refunds, in the provider's terms but
//! without any HTTP detail.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use domain::{Money, PaymentFailure};

/// An `Idempotency-Key`. Always derived from what a call *means* (for
/// example `kessai-order-42-intent-v1`), never from an attempt counter or a
/// random value, so that a retry after a timeout or a crash can never
/// create a second object at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The secret Stripe.js needs to confirm a PaymentIntent. Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// Stripe's PaymentIntent lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentIntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
    /// A status this version of kessai does not know; treated as open.
    Other(String),
}

impl PaymentIntentStatus {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "requires_payment_method" => Self::RequiresPaymentMethod,
            "requires_confirmation" => Self::RequiresConfirmation,
            "requires_action" => Self::RequiresAction,
            "processing" => Self::Processing,
            "requires_capture" => Self::RequiresCapture,
            "canceled" => Self::Canceled,
            "succeeded" => Self::Succeeded,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::RequiresConfirmation => "requires_confirmation",
            Self::RequiresAction => "requires_action",
            Self::Processing => "processing",
            Self::RequiresCapture => "requires_capture",
            Self::Canceled => "canceled",
            Self::Succeeded => "succeeded",
            Self::Other(s) => s,
        }
    }

    /// The customer can still pay with this intent, and its amount may
    /// still be changed.
    pub fn is_awaiting_customer(&self) -> bool {
        matches!(
            self,
            Self::RequiresPaymentMethod | Self::RequiresConfirmation | Self::RequiresAction
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: String,
    /// Minor units of `currency`.
    pub amount: i64,
    /// Lower-case ISO code, as Stripe writes it.
    pub currency: String,
    pub status: PaymentIntentStatus,
    pub client_secret: Option<ClientSecret>,
    pub customer: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub last_payment_error: Option<PaymentFailure>,
    pub latest_charge: Option<String>,
    /// Unix seconds.
    pub created: i64,
}

impl PaymentIntent {
    /// Whether this intent charges exactly `money` (amount and currency).
    pub fn charges(&self, money: Money) -> bool {
        self.amount == money.minor_units() && self.currency == money.currency().code()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPaymentIntent {
    pub amount: Money,
    pub customer: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    pub email: String,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub email: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefund {
    pub payment_intent: String,
    /// `None` refunds whatever is left.
    pub amount: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub payment_intent: Option<String>,
}

/// What can go wrong talking to the provider, after the client's retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The card was declined or failed a check.
    #[error("card error {code:?}: {message}")]
    Card {
        code: Option<String>,
        decline_code: Option<String>,
        message: String,
    },
    /// The request was invalid (includes unknown ids: `resource_missing`).
    #[error("invalid request ({status}) {code:?}: {message}")]
    InvalidRequest {
        status: u16,
        code: Option<String>,
        param: Option<String>,
        message: String,
    },
    /// The same idempotency key was used with different parameters.
    #[error("idempotency error: {message}")]
    Idempotency { message: String },
    #[error("rate limited: {message}")]
    RateLimited { message: String },
    /// The provider failed (5xx) on every attempt.
    #[error("provider error ({status}): {message}")]
    Api { status: u16, message: String },
    /// Our key was refused.
    #[error("authentication failed: {message}")]
    Authentication { message: String },
    /// No usable answer. `outcome_unknown` is true when the request may
    /// have been applied (a timeout, a connection lost after sending): the
    /// caller must retry with the same idempotency key or look it up, never
    /// issue a new operation.
    #[error("provider unreachable: {message}")]
    Network {
        message: String,
        outcome_unknown: bool,
    },
}

impl GatewayError {
    /// The object the request named does not exist at the provider.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::InvalidRequest { status: 404, .. })
            || matches!(self, Self::InvalidRequest { code: Some(c), .. } if c == "resource_missing")
    }
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    async fn create_customer(
        &self,
        customer: &NewCustomer,
        key: &IdempotencyKey,
    ) -> Result<Customer, GatewayError>;

    async fn create_payment_intent(
        &self,
        intent: &NewPaymentIntent,
        key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError>;

    async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, GatewayError>;

    async fn update_payment_intent_amount(
        &self,
        id: &str,
        amount: Money,
        key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError>;

    async fn cancel_payment_intent(
        &self,
        id: &str,
        key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError>;

    async fn create_refund(
        &self,
        refund: &NewRefund,
        key: &IdempotencyKey,
    ) -> Result<Refund, GatewayError>;
}

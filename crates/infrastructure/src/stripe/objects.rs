//! Stripe's JSON objects as we read them: unknown fields ignored, and
//! expandable fields accepted either as an id or as the embedded object.

use std::collections::BTreeMap;

use application::ports::payment_gateway::{
    ClientSecret, Customer, GatewayError, PaymentIntent, PaymentIntentStatus, Refund,
};
use domain::PaymentFailure;
use serde::Deserialize;

/// A field Stripe returns as an id, or as the object when expanded (and
/// localstripe embeds some objects unasked).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Expandable {
    Id(String),
    Object { id: String },
}

impl Expandable {
    fn into_id(self) -> String {
        match self {
            Self::Id(id) | Self::Object { id } => id,
        }
    }
}

/// `metadata` values are strings at Stripe; tolerate other scalars.
fn metadata_map(raw: Option<BTreeMap<String, serde_json::Value>>) -> BTreeMap<String, String> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, value)
        })
        .collect()
}

#[derive(Debug, Deserialize)]
pub(crate) struct LastPaymentError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// An integer amount. Stripe sends a JSON number; localstripe sends a
/// string after an update. Both are read; anything else is an error.
fn amount<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(i64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PaymentIntentObject {
    id: String,
    #[serde(deserialize_with = "amount")]
    amount: i64,
    currency: String,
    status: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    customer: Option<Expandable>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    last_payment_error: Option<LastPaymentError>,
    #[serde(default)]
    latest_charge: Option<Expandable>,
    #[serde(default)]
    created: i64,
}

impl TryFrom<PaymentIntentObject> for PaymentIntent {
    type Error = GatewayError;
    fn try_from(o: PaymentIntentObject) -> Result<Self, GatewayError> {
        Ok(PaymentIntent {
            id: o.id,
            amount: o.amount,
            currency: o.currency.to_ascii_lowercase(),
            status: PaymentIntentStatus::parse(&o.status),
            client_secret: o.client_secret.map(ClientSecret::new),
            customer: o.customer.map(Expandable::into_id),
            metadata: metadata_map(o.metadata),
            last_payment_error: o.last_payment_error.map(|e| PaymentFailure {
                code: e.decline_code.or(e.code),
                message: e
                    .message
                    .unwrap_or_else(|| "the payment failed".to_string()),
            }),
            latest_charge: o.latest_charge.map(Expandable::into_id),
            created: o.created,
        })
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CustomerObject {
    id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, serde_json::Value>>,
}

impl From<CustomerObject> for Customer {
    fn from(o: CustomerObject) -> Self {
        Customer {
            id: o.id,
            email: o.email,
            metadata: metadata_map(o.metadata),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RefundObject {
    id: String,
    #[serde(deserialize_with = "amount")]
    amount: i64,
    currency: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    payment_intent: Option<Expandable>,
}

impl From<RefundObject> for Refund {
    fn from(o: RefundObject) -> Self {
        Refund {
            id: o.id,
            amount: o.amount,
            currency: o.currency.to_ascii_lowercase(),
            status: o.status.unwrap_or_else(|| "pending".into()),
            payment_intent: o.payment_intent.map(Expandable::into_id),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChargeObject {
    id: String,
    #[serde(deserialize_with = "amount")]
    amount: i64,
    #[serde(default, deserialize_with = "optional_amount")]
    amount_refunded: Option<i64>,
    currency: String,
    #[serde(default)]
    payment_intent: Option<Expandable>,
}

fn optional_amount<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    amount(deserializer).map(Some)
}

impl From<ChargeObject> for application::ports::webhooks::Charge {
    fn from(o: ChargeObject) -> Self {
        Self {
            id: o.id,
            payment_intent: o.payment_intent.map(Expandable::into_id),
            amount: o.amount,
            amount_refunded: o.amount_refunded.unwrap_or(0),
            currency: o.currency.to_ascii_lowercase(),
        }
    }
}

/// `{"error": {...}}`, Stripe's error envelope.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEnvelope {
    error: ErrorObject,
}

#[derive(Debug, Deserialize)]
struct ErrorObject {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
}

/// Turns an error answer into the port's typed error.
pub(crate) fn gateway_error(status: u16, body: &[u8]) -> GatewayError {
    let parsed = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .map(|e| e.error);
    let message = parsed
        .as_ref()
        .and_then(|e| e.message.clone())
        .unwrap_or_else(|| format!("HTTP {status} from the payment provider"));
    let kind = parsed
        .as_ref()
        .and_then(|e| e.kind.clone())
        .unwrap_or_default();
    let code = parsed.as_ref().and_then(|e| e.code.clone());
    if parsed.is_none() && status == 404 {
        // Not Stripe's error object: a wrong route or a proxy answered,
        // which says nothing about whether the object exists.
        return GatewayError::Api { status, message };
    }
    match (kind.as_str(), status) {
        ("card_error", _) | (_, 402) => GatewayError::Card {
            code,
            decline_code: parsed.and_then(|e| e.decline_code),
            message,
        },
        ("idempotency_error", _) => GatewayError::Idempotency { message },
        (_, 429) => GatewayError::RateLimited { message },
        (_, 401 | 403) => GatewayError::Authentication { message },
        (_, s) if s >= 500 => GatewayError::Api { status, message },
        ("api_error", _) => GatewayError::Api { status, message },
        _ => GatewayError::InvalidRequest {
            status,
            code,
            param: parsed.and_then(|e| e.param),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expandable_fields_accept_ids_and_objects() {
        let id: Expandable = serde_json::from_str(r#""cus_1""#).unwrap();
        let object: Expandable =
            serde_json::from_str(r#"{"id":"cus_1","object":"customer","email":null}"#).unwrap();
        assert_eq!(id.into_id(), "cus_1");
        assert_eq!(object.into_id(), "cus_1");
    }

    #[test]
    fn amounts_are_read_from_numbers_and_numeric_strings() {
        let parse = |amount: &str| {
            serde_json::from_str::<PaymentIntentObject>(&format!(
                r#"{{"id":"pi_1","amount":{amount},"currency":"jpy","status":"requires_payment_method"}}"#
            ))
            .map(|o| o.amount)
        };
        assert_eq!(parse("16500").unwrap(), 16500);
        assert_eq!(parse(r#""17000""#).unwrap(), 17000);
        assert!(parse(r#""12a""#).is_err());
        assert!(parse("1.5").is_err());
    }

    #[test]
    fn error_objects_become_typed_errors() {
        let card = br#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}"#;
        assert!(
            matches!(gateway_error(402, card), GatewayError::Card { decline_code: Some(d), .. } if d == "insufficient_funds")
        );
        let idem = br#"{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters"}}"#;
        assert!(matches!(
            gateway_error(400, idem),
            GatewayError::Idempotency { .. }
        ));
        let missing = br#"{"error":{"type":"invalid_request_error","code":"resource_missing","param":"intent","message":"No such payment_intent"}}"#;
        let err = gateway_error(404, missing);
        assert!(err.is_not_found(), "{err:?}");
        assert!(matches!(
            gateway_error(429, b"{}"),
            GatewayError::RateLimited { .. }
        ));
        assert!(matches!(
            gateway_error(401, b"not json"),
            GatewayError::Authentication { .. }
        ));
        assert!(matches!(
            gateway_error(503, b""),
            GatewayError::Api { status: 503, .. }
        ));
        assert!(matches!(
            gateway_error(400, br#"{"error":{"type":"invalid_request_error","param":"amount","message":"bad"}}"#),
            GatewayError::InvalidRequest { param: Some(p), .. } if p == "amount"
        ));
    }
}

//! The event parser behind a valid signature: the input is the raw body,
//! signed correctly, so every input gets past `verify` and into the parser.
//!
//! Decoding never panics and never reports a signature problem; it gives
//! the same answer as `parse` (the replay path); and an event it gives
//! agrees with an independent `serde_json::Value` reading of the body:
//! non-empty id (at most 255 bytes) and type, `object` absent or "event",
//! the PaymentIntent or Charge that the type's prefix announces, with the
//! ids, amounts, status and lower-case currency the body carries. Accepted
//! bodies are UTF-8 and JSON objects.
#![no_main]

use application::ports::webhooks::{EventObject, ProviderEvent, WebhookDecoder, WebhookRejection};
use chrono::DateTime;
use hmac::{Hmac, Mac};
use infrastructure::stripe::webhook::{StripeWebhookDecoder, DEFAULT_TOLERANCE_SECONDS};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

const NOW: i64 = 1_700_000_000;
const SECRET: &str = "whsec_test_secret";

fuzz_target!(|body: &[u8]| {
    let decoder = StripeWebhookDecoder::new(
        vec![SecretString::from(SECRET.to_owned())],
        DEFAULT_TOLERANCE_SECONDS,
    );
    let header = format!("t={NOW},v1={}", sign(body));
    let now = DateTime::from_timestamp(NOW, 0).expect("in range");

    let decoded = decoder.decode(Some(&header), body, now);
    assert_eq!(decoded, decoder.parse(body), "decode and parse disagree");
    match decoded {
        Ok(event) => check(&event, body),
        Err(WebhookRejection::InvalidPayload(why)) => assert!(!why.is_empty()),
        Err(rejection) => panic!("a correctly signed body was refused: {rejection:?}"),
    }
});

fn sign(body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{NOW}.").as_bytes());
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fields of an event, read as plain JSON values. Other fields are
/// skipped, not read: serde_json refuses some strings in a `Value` (lone
/// surrogates such as "\ud800") that are valid JSON, which a field the
/// decoder skips may contain.
#[derive(Deserialize)]
struct Envelope {
    id: Value,
    #[serde(rename = "type")]
    kind: Value,
    created: Value,
    #[serde(default)]
    object: Value,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: Value,
}

/// An amount as the decoder reads one: a JSON integer or a numeric string.
fn amount(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// An expandable field: an id, or an object with an id.
fn expandable_id(value: &Value) -> Option<&str> {
    match value {
        Value::String(id) => Some(id),
        Value::Object(map) => map.get("id").and_then(Value::as_str),
        _ => None,
    }
}

fn check(event: &ProviderEvent, body: &[u8]) {
    assert!(!event.id.is_empty() && event.id.len() <= 255, "{event:?}");
    assert!(!event.kind.is_empty(), "{event:?}");

    assert!(
        std::str::from_utf8(body).is_ok(),
        "accepted a body that is not UTF-8"
    );
    assert_eq!(
        body.trim_ascii_start().first(),
        Some(&b'{'),
        "accepted a body that is not a JSON object"
    );
    let json: Envelope = serde_json::from_slice(body).expect("an accepted body is an event");
    assert_eq!(json.id.as_str(), Some(event.id.as_str()));
    assert_eq!(json.kind.as_str(), Some(event.kind.as_str()));
    assert_eq!(json.created.as_i64(), Some(event.created));
    assert!(
        json.object.is_null() || json.object.as_str() == Some("event"),
        "object is {:?}",
        json.object
    );

    let object = &json.data.object;
    let prefix = event.kind.split_once('.').map(|(prefix, _)| prefix);
    match (&event.object, prefix) {
        (EventObject::PaymentIntent(intent), Some("payment_intent")) => {
            assert_eq!(object["id"].as_str(), Some(intent.id.as_str()));
            assert_eq!(amount(&object["amount"]), Some(intent.amount));
            assert_eq!(object["status"].as_str(), Some(intent.status.as_str()));
            let currency = object["currency"].as_str().expect("currency is a string");
            assert_eq!(intent.currency, currency.to_ascii_lowercase());
            assert_eq!(
                intent.customer.as_deref(),
                object.get("customer").and_then(expandable_id)
            );
            assert_eq!(
                intent.latest_charge.as_deref(),
                object.get("latest_charge").and_then(expandable_id)
            );
            let metadata_len = object
                .get("metadata")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            assert_eq!(intent.metadata.len(), metadata_len);
        }
        (EventObject::Charge(charge), Some("charge")) => {
            assert_eq!(object["id"].as_str(), Some(charge.id.as_str()));
            assert_eq!(amount(&object["amount"]), Some(charge.amount));
            let refunded = match object.get("amount_refunded") {
                None => Some(0),
                Some(value) => amount(value),
            };
            assert_eq!(refunded, Some(charge.amount_refunded));
            let currency = object["currency"].as_str().expect("currency is a string");
            assert_eq!(charge.currency, currency.to_ascii_lowercase());
            assert_eq!(
                charge.payment_intent.as_deref(),
                object.get("payment_intent").and_then(expandable_id)
            );
        }
        (EventObject::Other, prefix) => assert!(
            !matches!(prefix, Some("payment_intent" | "charge")),
            "{} parsed as Other",
            event.kind
        ),
        (object, _) => panic!("{} parsed as {object:?}", event.kind),
    }
}

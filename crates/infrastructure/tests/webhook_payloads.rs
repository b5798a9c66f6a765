#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Webhook bodies the decoder once accepted and must not: each was found by
//! the `event_payload` fuzz target (fuzz/, `scripts/fuzz.sh`). The bodies are
//! correctly signed, so they get past the signature check and only the
//! event parser decides.

use application::ports::webhooks::{EventObject, WebhookDecoder, WebhookRejection};
use chrono::DateTime;
use infrastructure::stripe::webhook::{StripeWebhookDecoder, DEFAULT_TOLERANCE_SECONDS};
use secrecy::SecretString;

const SECRET: &str = "whsec_test_secret";
const NOW: i64 = 1_700_000_000;

fn decode(body: &[u8]) -> Result<application::ports::webhooks::ProviderEvent, WebhookRejection> {
    let decoder = StripeWebhookDecoder::new(
        vec![SecretString::from(SECRET.to_string())],
        DEFAULT_TOLERANCE_SECONDS,
    );
    let decoded = decoder.decode(
        Some(&test_support::stripe_signature(SECRET, NOW, body)),
        body,
        DateTime::from_timestamp(NOW, 0).unwrap(),
    );
    assert_eq!(decoded, decoder.parse(body), "decode and replay disagree");
    decoded
}

fn assert_invalid_payload(body: &[u8], reason: &str) {
    match decode(body) {
        Err(WebhookRejection::InvalidPayload(why)) => {
            assert!(why.contains(reason), "{why:?} does not mention {reason:?}");
        }
        other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
    }
}

const EVENT: &str = r#"{"id":"evt_1","object":"event","created":1700000000,"data":{"object":{"id":"pi_1","object":"payment_intent","amount":16500,"currency":"jpy","status":"succeeded","metadata":{"order_id":"1"}}},"request":{"id":null,"idempotency_key":null},"type":"payment_intent.succeeded"}"#;

#[test]
fn the_well_formed_event_decodes() {
    let event = decode(EVENT.as_bytes()).unwrap();
    assert_eq!(event.id, "evt_1");
    assert!(matches!(event.object, EventObject::PaymentIntent(pi) if pi.amount == 16500));
}

/// serde_json does not check the bytes of values it skips, so invalid
/// UTF-8 in a field the decoder does not read (here a key of `request`)
/// passed, and the body was then stored altered by
/// `String::from_utf8_lossy` for replays. JSON is UTF-8.
#[test]
fn a_body_that_is_not_utf8_is_refused() {
    let body = EVENT
        .replacen("idempotency_key", "idempot\u{1}ncy_key", 1)
        .into_bytes()
        .into_iter()
        .map(|b| if b == 1 { 0xff } else { b })
        .collect::<Vec<u8>>();
    assert!(std::str::from_utf8(&body).is_err());
    assert_invalid_payload(&body, "UTF-8");
}

/// A derived `Deserialize` also reads a struct from a JSON array, field by
/// field in order: these arrays were read as an event and as a
/// PaymentIntent.
#[test]
fn arrays_are_neither_events_nor_their_objects() {
    for body in [
        // id, object, type, created, data
        r#"["evt_1",null,"customer.created",1,{"object":{}}]"#,
        r#" ["evt_1",null,"customer.created",1,[{}]]"#,
        r#"{"id":"evt_1","type":"customer.created","created":1,"data":[{}]}"#,
        // id, amount, currency, status
        r#"{"id":"evt_1","type":"payment_intent.succeeded","created":1,"data":{"object":["pi_1",16500,"jpy","succeeded"]}}"#,
        // id, amount, amount_refunded, currency
        r#"{"id":"evt_1","type":"charge.refunded","created":1,"data":{"object":["ch_1",16500,16500,"jpy"]}}"#,
    ] {
        assert_invalid_payload(body.as_bytes(), "expected a JSON object");
    }
}

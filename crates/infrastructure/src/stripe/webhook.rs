//! Webhook verification as Stripe specifies it: the `Stripe-Signature`
//! header carries `t=<unix seconds>` and one or more `v1=<hex>` entries;
//! each `v1` is HMAC-SHA256, keyed with the endpoint secret, over
//! `"{t}.{raw body}"`. Any `v1` matching any configured secret passes (two
//! secrets are live while one is rotated), compared in constant time, and
//! only while `t` is within the tolerance of now.

use application::ports::payment_gateway::PaymentIntent;
use application::ports::webhooks::{
    Charge, EventObject, ProviderEvent, WebhookDecoder, WebhookRejection,
};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use super::objects::{ChargeObject, PaymentIntentObject};

/// Stripe's default tolerance.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

/// A header longer than this is not one Stripe sent.
const MAX_HEADER_LEN: usize = 4096;

pub struct StripeWebhookDecoder {
    secrets: Vec<SecretString>,
    tolerance_seconds: i64,
}

impl StripeWebhookDecoder {
    pub fn new(secrets: Vec<SecretString>, tolerance_seconds: i64) -> Self {
        Self {
            secrets,
            tolerance_seconds,
        }
    }

    /// Checks the header against the raw payload.
    pub fn verify(
        &self,
        header: Option<&str>,
        payload: &[u8],
        now: i64,
    ) -> Result<(), WebhookRejection> {
        let header = header.ok_or(WebhookRejection::InvalidSignature(
            "missing Stripe-Signature header",
        ))?;
        if header.len() > MAX_HEADER_LEN {
            return Err(WebhookRejection::InvalidSignature("header too long"));
        }
        let mut timestamp: Option<i64> = None;
        let mut signatures: Vec<Vec<u8>> = Vec::new();
        for item in header.split(',') {
            let Some((key, value)) = item.trim().split_once('=') else {
                continue;
            };
            match key.trim() {
                "t" => {
                    let t = value.trim().parse::<i64>().map_err(|_| {
                        WebhookRejection::InvalidSignature("timestamp is not a number")
                    })?;
                    timestamp.get_or_insert(t);
                }
                // Other schemes (v0, test signatures) are ignored, as Stripe's libraries do.
                "v1" => {
                    if let Some(bytes) = decode_hex(value.trim()) {
                        signatures.push(bytes);
                    }
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(WebhookRejection::InvalidSignature("no timestamp"))?;
        if signatures.is_empty() {
            return Err(WebhookRejection::InvalidSignature("no v1 signature"));
        }
        if self.secrets.is_empty() {
            return Err(WebhookRejection::InvalidSignature(
                "no webhook secret configured",
            ));
        }
        let matched = self.secrets.iter().any(|secret| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            else {
                return false;
            };
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(payload);
            let expected = mac.finalize().into_bytes();
            // `ct_eq` on equal-length slices: constant time.
            signatures.iter().any(|candidate| {
                use subtle::ConstantTimeEq;
                candidate.len() == expected.len()
                    && bool::from(candidate.as_slice().ct_eq(expected.as_slice()))
            })
        });
        if !matched {
            return Err(WebhookRejection::InvalidSignature("no signature matches"));
        }
        // Checked: a signed `t` near i64::MIN or MAX must not overflow.
        let within_tolerance = now
            .checked_sub(timestamp)
            .and_then(i64::checked_abs)
            .is_some_and(|age| age <= self.tolerance_seconds);
        if !within_tolerance {
            return Err(WebhookRejection::InvalidSignature(
                "timestamp outside the tolerance",
            ));
        }
        Ok(())
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    // Hex digits only: `from_str_radix` alone would also take a sign ("+a").
    if !text.len().is_multiple_of(2)
        || text.len() > 128
        || !text.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Deserialize)]
struct EventEnvelope {
    id: String,
    #[serde(default)]
    object: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: FromObject<EventData>,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// A struct read from a JSON object only. A derived `Deserialize` also
/// reads a struct from a JSON array, field by field in declaration order;
/// neither an event nor the object it carries is ever an array.
struct FromObject<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for FromObject<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Visitor(std::marker::PhantomData))
            .map(FromObject)
    }
}

impl WebhookDecoder for StripeWebhookDecoder {
    fn decode(
        &self,
        signature: Option<&str>,
        payload: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ProviderEvent, WebhookRejection> {
        self.verify(signature, payload, now.timestamp())?;
        self.parse(payload)
    }

    fn parse(&self, payload: &[u8]) -> Result<ProviderEvent, WebhookRejection> {
        let invalid = |why: String| WebhookRejection::InvalidPayload(why);
        // JSON is UTF-8 (RFC 8259), and the body is stored as text for
        // replays. `from_slice` alone would not check the bytes of values it
        // skips, so a body with invalid UTF-8 in an unread field would pass
        // and then be stored altered by a lossy conversion.
        let text = std::str::from_utf8(payload)
            .map_err(|e| invalid(format!("not a Stripe event: not UTF-8: {e}")))?;
        let FromObject(envelope) = serde_json::from_str::<FromObject<EventEnvelope>>(text)
            .map_err(|e| invalid(format!("not a Stripe event: {e}")))?;
        if envelope.object.as_deref().is_some_and(|o| o != "event") {
            return Err(invalid("object is not an event".into()));
        }
        if envelope.id.is_empty() || envelope.id.len() > 255 || envelope.kind.is_empty() {
            return Err(invalid("event id or type is empty".into()));
        }
        let object = match envelope.kind.split_once('.').map(|(prefix, _)| prefix) {
            Some("payment_intent") => {
                let FromObject(intent) = serde_json::from_value::<FromObject<PaymentIntentObject>>(
                    envelope.data.0.object,
                )
                .map_err(|e| invalid(format!("unreadable PaymentIntent: {e}")))?;
                EventObject::PaymentIntent(
                    PaymentIntent::try_from(intent).map_err(|e| invalid(e.to_string()))?,
                )
            }
            Some("charge") => {
                let FromObject(charge) =
                    serde_json::from_value::<FromObject<ChargeObject>>(envelope.data.0.object)
                        .map_err(|e| invalid(format!("unreadable Charge: {e}")))?;
                EventObject::Charge(Charge::from(charge))
            }
            _ => EventObject::Other,
        };
        Ok(ProviderEvent {
            id: envelope.id,
            kind: envelope.kind,
            created: envelope.created,
            object,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(payload);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn decoder(secrets: &[&str]) -> StripeWebhookDecoder {
        StripeWebhookDecoder::new(
            secrets
                .iter()
                .map(|s| SecretString::from(s.to_string()))
                .collect(),
            DEFAULT_TOLERANCE_SECONDS,
        )
    }

    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded","created":1700000000,"data":{"object":{"id":"pi_1","object":"payment_intent","amount":16500,"currency":"jpy","status":"succeeded","metadata":{"order_id":"1"}}}}"#;

    #[test]
    fn accepts_a_correct_signature_within_the_tolerance() {
        let t = 1_700_000_000;
        let header = format!("t={t},v1={}", sign("whsec_a", t, BODY));
        let d = decoder(&["whsec_a"]);
        assert_eq!(d.verify(Some(&header), BODY, t + 300), Ok(()));
        assert_eq!(d.verify(Some(&header), BODY, t - 300), Ok(()));
        assert!(d.verify(Some(&header), BODY, t + 301).is_err());
        assert!(d.verify(Some(&header), BODY, t - 301).is_err());
    }

    #[test]
    fn rejects_tampering_wrong_secrets_and_garbage() {
        let t = 1_700_000_000;
        let good = sign("whsec_a", t, BODY);
        let d = decoder(&["whsec_a"]);
        let tampered = [BODY, b" "].concat();
        assert!(d
            .verify(Some(&format!("t={t},v1={good}")), &tampered, t)
            .is_err());
        assert!(decoder(&["whsec_b"])
            .verify(Some(&format!("t={t},v1={good}")), BODY, t)
            .is_err());
        for header in [
            "",
            "garbage",
            "t=abc,v1=00",
            &format!("v1={good}"),
            &format!("t={t}"),
            &format!("t={t},v0={good}"),
        ] {
            assert!(d.verify(Some(header), BODY, t).is_err(), "{header}");
        }
        assert!(d.verify(None, BODY, t).is_err());
        assert!(decoder(&[])
            .verify(Some(&format!("t={t},v1={good}")), BODY, t)
            .is_err());
    }

    #[test]
    fn any_v1_and_any_secret_may_match_during_rotation() {
        let t = 1_700_000_000;
        let new = sign("whsec_new", t, BODY);
        let header = format!("t={t},v1={},v1={new},v0=ignored", "ab".repeat(32));
        assert_eq!(
            decoder(&["whsec_old", "whsec_new"]).verify(Some(&header), BODY, t),
            Ok(())
        );
    }

    #[test]
    fn parses_payment_intent_and_charge_events() {
        let event = decoder(&["x"]).parse(BODY).unwrap();
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.kind, "payment_intent.succeeded");
        match event.object {
            EventObject::PaymentIntent(pi) => {
                assert_eq!(pi.amount, 16500);
                assert_eq!(pi.metadata["order_id"], "1");
            }
            other => panic!("{other:?}"),
        }
        let charge = br#"{"id":"evt_2","type":"charge.refunded","created":1,"data":{"object":{"id":"ch_1","amount":16500,"amount_refunded":500,"currency":"jpy","payment_intent":"pi_1"}}}"#;
        match decoder(&["x"]).parse(charge).unwrap().object {
            EventObject::Charge(c) => {
                assert_eq!(c.amount_refunded, 500);
                assert_eq!(c.payment_intent.as_deref(), Some("pi_1"));
            }
            other => panic!("{other:?}"),
        }
        let other = br#"{"id":"evt_3","type":"customer.created","created":1,"data":{"object":{"id":"cus_1"}}}"#;
        assert_eq!(
            decoder(&["x"]).parse(other).unwrap().object,
            EventObject::Other
        );
        for bad in [
            &b"{}"[..],
            b"[]",
            b"not json",
            br#"{"id":"evt","object":"customer","type":"x","created":1,"data":{"object":{}}}"#,
        ] {
            assert!(matches!(
                decoder(&["x"]).parse(bad),
                Err(WebhookRejection::InvalidPayload(_))
            ));
        }
    }
}

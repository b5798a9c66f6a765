//! A fake of the webhook decoder: payloads are keys into events the test
//! registered beforehand, and a signature of [`BAD_SIGNATURE`] (or none)
//! is refused as Stripe's real verification would refuse a forgery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use application::ports::webhooks::{ProviderEvent, WebhookDecoder, WebhookRejection};
use chrono::{DateTime, Utc};

/// The signature the fake refuses; any other one is accepted.
pub const BAD_SIGNATURE: &str = "bad";

/// A signature the fake accepts.
pub const GOOD_SIGNATURE: &str = "t=1732464000,v1=fake";

#[derive(Debug, Default)]
pub struct FakeDecoder {
    /// Payload → the event it decodes to.
    events: Mutex<HashMap<Vec<u8>, ProviderEvent>>,
    decode_calls: AtomicUsize,
    parse_calls: AtomicUsize,
}

impl FakeDecoder {
    /// Makes `event` what its payload (`{"id":"<event id>"}`) decodes to,
    /// and returns that payload.
    pub fn register(&self, event: ProviderEvent) -> Vec<u8> {
        let payload = format!(r#"{{"id":"{}"}}"#, event.id).into_bytes();
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(payload.clone(), event);
        payload
    }

    pub fn decode_calls(&self) -> usize {
        self.decode_calls.load(Ordering::SeqCst)
    }

    pub fn parse_calls(&self) -> usize {
        self.parse_calls.load(Ordering::SeqCst)
    }

    fn lookup(&self, payload: &[u8]) -> Result<ProviderEvent, WebhookRejection> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(payload)
            .cloned()
            .ok_or_else(|| WebhookRejection::InvalidPayload("not a registered event".into()))
    }
}

impl WebhookDecoder for FakeDecoder {
    fn decode(
        &self,
        signature: Option<&str>,
        payload: &[u8],
        _now: DateTime<Utc>,
    ) -> Result<ProviderEvent, WebhookRejection> {
        self.decode_calls.fetch_add(1, Ordering::SeqCst);
        match signature {
            None => Err(WebhookRejection::InvalidSignature("missing header")),
            Some(BAD_SIGNATURE) => Err(WebhookRejection::InvalidSignature("no matching signature")),
            Some(_) => self.lookup(payload),
        }
    }

    fn parse(&self, payload: &[u8]) -> Result<ProviderEvent, WebhookRejection> {
        self.parse_calls.fetch_add(1, Ordering::SeqCst);
        self.lookup(payload)
    }
}

//! Stripe's idempotency layer: the first result of a POST with an
//! `Idempotency-Key` (status and body, errors included once the endpoint
//! began executing) is saved per API key for 24 hours and replayed for the
//! same key with the same endpoint and parameters; the same key with other
//! parameters is an `idempotency_error`. A request runs entirely under the
//! state lock, so two concurrent requests with one key cannot both execute.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::error::ApiError;

pub(crate) const MAX_KEY_LEN: usize = 255;
const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub method: String,
    pub path: String,
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Saved {
    pub fingerprint: Fingerprint,
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub request_id: String,
    pub at: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct IdempotencyStore {
    saved: HashMap<(String, String), Saved>,
    inserts: u64,
}

pub(crate) enum Lookup {
    New,
    Replay(Saved),
}

impl IdempotencyStore {
    pub fn lookup(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &Fingerprint,
    ) -> Result<Lookup, ApiError> {
        let Some(saved) = self.saved.get(&(scope.to_string(), key.to_string())) else {
            return Ok(Lookup::New);
        };
        if saved.at.elapsed() > RETENTION {
            return Ok(Lookup::New);
        }
        if saved.fingerprint.path != fingerprint.path
            || saved.fingerprint.method != fingerprint.method
        {
            return Err(ApiError::idempotency(format!(
                "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{} {}' vs '{} {}'). Try using a key other than '{key}' if you meant to execute a different request.",
                saved.fingerprint.method,
                saved.fingerprint.path,
                fingerprint.method,
                fingerprint.path
            )));
        }
        if saved.fingerprint.params != fingerprint.params {
            return Err(ApiError::idempotency(format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
            )));
        }
        Ok(Lookup::Replay(saved.clone()))
    }

    pub fn save(&mut self, scope: &str, key: &str, saved: Saved) {
        self.inserts += 1;
        if self.inserts.is_multiple_of(256) {
            self.saved.retain(|_, s| s.at.elapsed() <= RETENTION);
        }
        self.saved
            .insert((scope.to_string(), key.to_string()), saved);
    }
}

pub(crate) fn check_key(key: &str) -> Result<(), ApiError> {
    if key.len() > MAX_KEY_LEN {
        return Err(ApiError::validation(format!(
            "Invalid Idempotency-Key: keys for idempotent requests can only be {MAX_KEY_LEN} characters long."
        )));
    }
    if key.is_empty() {
        return Err(ApiError::validation(
            "Invalid Idempotency-Key: keys for idempotent requests cannot be empty.",
        ));
    }
    Ok(())
}

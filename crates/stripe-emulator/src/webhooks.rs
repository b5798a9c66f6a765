//! Webhook deliveries, as Stripe makes them: a POST of the event's JSON with
//! `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "t.body")>`
//! (signed at each attempt), any 2xx counting as delivered, and retries with
//! exponential backoff on another status or no answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use hmac::{Hmac, Mac};
use rand::seq::SliceRandom;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::objects::IntentStatus;
use crate::state::{Delivery, EventRequest};
use crate::Inner;

/// `hex(HMAC-SHA256(secret, "{timestamp}.{body}"))`.
pub(crate) fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Settles a `processing` intent once the processing delay has passed.
pub(crate) fn settle_after_delay(inner: &Arc<Inner>, intent: String) {
    let inner = inner.clone();
    let delay = inner.timings.processing_delay;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut state = inner.lock();
        let processing = state
            .intents
            .get(&intent)
            .is_some_and(|i| i.status == IntentStatus::Processing);
        if processing {
            let now = chrono::Utc::now().timestamp();
            if let Err(error) = state.settle_intent(&intent, true, &EventRequest::default(), now) {
                tracing::warn!(payment_intent = %intent, ?error, "could not settle a processing PaymentIntent");
            }
            drop(state);
            inner.wake.notify_one();
        }
    });
}

/// Takes the deliveries that are due (all of them with `all`), shuffled when
/// reordering; also says when the next one falls due.
fn take(inner: &Inner, all: bool) -> (Vec<Delivery>, Option<Instant>) {
    let mut state = inner.lock();
    if !state.faults.webhooks_enabled {
        return (Vec::new(), None);
    }
    if state.webhook_url.is_none() {
        // No endpoint any more: what was queued is never sent.
        let queued: Vec<Delivery> = state.deliveries.drain(..).collect();
        for delivery in queued {
            if let Some(event) = state.event_mut(&delivery.event_id) {
                event.outstanding = event.outstanding.saturating_sub(1);
            }
        }
        return (Vec::new(), None);
    }
    let now = Instant::now();
    let (mut due, rest): (Vec<Delivery>, Vec<Delivery>) = state
        .deliveries
        .drain(..)
        .partition(|d| all || d.due <= now);
    let next = rest.iter().map(|d| d.due).min();
    state.deliveries.extend(rest);
    if state.faults.webhook_reorder {
        due.shuffle(&mut rand::thread_rng());
    }
    (due, next)
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The endpoint answered 2xx.
    Delivered,
    /// The endpoint answered another status.
    Refused,
    /// No answer: the connection was refused or broken, or timed out (also
    /// when the event or the URL went away meanwhile).
    Unreachable,
}

/// One attempt at sending `delivery`.
async fn attempt(inner: &Inner, delivery: &Delivery) -> Attempt {
    let prepared = {
        let state = inner.lock();
        match (&state.webhook_url, state.event(&delivery.event_id)) {
            (Some(url), Some(event)) => Some((
                url.clone(),
                event.kind.clone(),
                serde_json::to_vec_pretty(&event.to_json()).unwrap_or_default(),
            )),
            _ => None,
        }
    };
    let Some((url, kind, body)) = prepared else {
        return Attempt::Unreachable;
    };
    let timestamp = chrono::Utc::now().timestamp();
    let signature = sign(&inner.webhook_secret, timestamp, &body);
    let result = inner
        .http
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("stripe-signature", format!("t={timestamp},v1={signature}"))
        .body(body)
        .send()
        .await;
    let attempt = delivery.attempts + 1;
    match result {
        Ok(response) if response.status().is_success() => {
            tracing::info!(event = %delivery.event_id, kind, attempt, status = response.status().as_u16(), "webhook delivered");
            Attempt::Delivered
        }
        Ok(response) => {
            tracing::info!(event = %delivery.event_id, kind, attempt, status = response.status().as_u16(), "webhook refused");
            Attempt::Refused
        }
        Err(error) => {
            let reason = if error.is_timeout() {
                "timed out"
            } else if error.is_connect() {
                "could not connect"
            } else {
                "connection failed"
            };
            tracing::info!(event = %delivery.event_id, kind, attempt, reason, "webhook not delivered");
            Attempt::Unreachable
        }
    }
}

/// Records an attempt's outcome: done, retried later, or given up.
fn finish(inner: &Inner, mut delivery: Delivery, result: Attempt) {
    let mut state = inner.lock();
    delivery.attempts += 1;
    let done = if result == Attempt::Delivered {
        state.stats.delivered += 1;
        true
    } else {
        state.stats.failed_attempts += 1;
        if result == Attempt::Refused {
            state.stats.refused += 1;
        } else {
            state.stats.unreachable += 1;
        }
        if delivery.attempts >= inner.timings.webhook_max_attempts {
            state.stats.given_up += 1;
            tracing::warn!(event = %delivery.event_id, attempts = delivery.attempts, "webhook delivery given up");
            true
        } else {
            let exponent = delivery.attempts.saturating_sub(1).min(20);
            let backoff = inner
                .timings
                .webhook_retry_base
                .saturating_mul(2u32.saturating_pow(exponent))
                .min(inner.timings.webhook_retry_max);
            delivery.due = Instant::now() + backoff;
            state.deliveries.push_back(delivery.clone());
            false
        }
    };
    if done {
        if let Some(event) = state.event_mut(&delivery.event_id) {
            event.outstanding = event.outstanding.saturating_sub(1);
        }
    }
}

/// Puts deliveries that were taken but not attempted back in the queue.
fn requeue(inner: &Inner, deliveries: impl IntoIterator<Item = Delivery>) {
    let mut state = inner.lock();
    for delivery in deliveries {
        state.deliveries.push_front(delivery);
    }
}

pub(crate) async fn run(inner: &Arc<Inner>, shutdown: impl Future<Output = ()> + Send) {
    tokio::pin!(shutdown);
    loop {
        let (batch, next_due) = take(inner, false);
        let worked = !batch.is_empty();
        let mut batch = batch.into_iter();
        while let Some(delivery) = batch.next() {
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    requeue(inner, std::iter::once(delivery).chain(batch));
                    return;
                }
                result = attempt(inner, &delivery) => finish(inner, delivery, result),
            }
        }
        if worked {
            continue;
        }
        let sleep = async {
            match next_due {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = inner.wake.notified() => {}
            () = sleep => {}
        }
    }
}

/// Sends every queued delivery once, now.
pub(crate) async fn flush(inner: &Arc<Inner>) -> Value {
    let (batch, _) = take(inner, true);
    let attempted = batch.len();
    let mut delivered = 0;
    for delivery in batch {
        let result = attempt(inner, &delivery).await;
        if result == Attempt::Delivered {
            delivered += 1;
        }
        finish(inner, delivery, result);
    }
    let state = inner.lock();
    json!({
        "attempted": attempted,
        "delivered": delivered,
        "failed": attempted - delivered,
        "pending": state.deliveries.len()
    })
}

pub(crate) fn status(inner: &Inner) -> Value {
    let state = inner.lock();
    json!({
        "url": state.webhook_url,
        "enabled": state.faults.webhooks_enabled,
        "pending": state.deliveries.len(),
        "stats": state.stats
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_stripes_scheme() {
        // HMAC-SHA256("whsec_test", "1700000000.{}") computed independently.
        let sig = sign("whsec_test", 1_700_000_000, b"{}");
        assert_eq!(sig.len(), 64);
        assert_eq!(sig, sign("whsec_test", 1_700_000_000, b"{}"));
        assert_ne!(sig, sign("whsec_other", 1_700_000_000, b"{}"));
        assert_ne!(sig, sign("whsec_test", 1_700_000_001, b"{}"));
    }
}

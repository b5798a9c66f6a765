//! `/_emulator/…`: the emulator's own controls (not part of Stripe's API).
//! They need the secret key, like Stripe's test helpers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use crate::error::ApiError;
use crate::form::Params;
use crate::http::{error_response, json_response};
use crate::state::{Caller, EventRequest};
use crate::{webhooks, Faults, Inner};

type Shared = Arc<Inner>;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/_emulator/faults", get(get_faults).put(put_faults))
        .route("/_emulator/webhooks", get(webhook_status))
        .route("/_emulator/webhooks/deliver", post(deliver))
        .route(
            "/_emulator/payment_intents/{id}/settle",
            post(settle_intent),
        )
}

/// `Some(refusal)` unless the secret key is presented.
fn refuse_without_key(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    match inner.authenticate(headers, None, &Params::default()) {
        Ok(Caller::SecretKey) => None,
        Ok(Caller::ClientSecret { .. }) => Some(error_response(&crate::auth::missing_key())),
        Err(error) => Some(error_response(&error)),
    }
}

async fn get_faults(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_without_key(&inner, &headers) {
        return refusal;
    }
    let faults = inner.lock().faults.clone();
    json_response(StatusCode::OK, &json!(faults))
}

async fn put_faults(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = refuse_without_key(&inner, &headers) {
        return refusal;
    }
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(error) => {
            return error_response(&ApiError::validation(format!(
                "Invalid faults JSON: {error}"
            )))
        }
    };
    if let Err(message) = faults.validate() {
        return error_response(&ApiError::validation(message));
    }
    inner.lock().faults = faults.clone();
    inner.wake.notify_one();
    tracing::info!(?faults, "stripe emulator faults changed");
    json_response(StatusCode::OK, &json!(faults))
}

async fn webhook_status(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_without_key(&inner, &headers) {
        return refusal;
    }
    json_response(StatusCode::OK, &webhooks::status(&inner))
}

async fn deliver(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_without_key(&inner, &headers) {
        return refusal;
    }
    json_response(StatusCode::OK, &webhooks::flush(&inner).await)
}

/// Finishes a `processing` PaymentIntent now: `outcome=succeeded` (the
/// default) or `outcome=failed`.
async fn settle_intent(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = refuse_without_key(&inner, &headers) {
        return refusal;
    }
    let mut params = Params::parse(&body);
    let outcome = match params.choice("outcome", &["succeeded", "failed"]) {
        Ok(outcome) => outcome.flatten(),
        Err(error) => return error_response(&error),
    };
    if let Err(error) = params.finish() {
        return error_response(&error);
    }
    let succeed = outcome.as_deref() != Some("failed");
    let now = chrono::Utc::now().timestamp();
    let result = inner
        .lock()
        .settle_intent(&id, succeed, &EventRequest::default(), now);
    inner.wake.notify_one();
    match result {
        Ok(intent) => json_response(StatusCode::OK, &intent),
        Err(error) => error_response(&error),
    }
}

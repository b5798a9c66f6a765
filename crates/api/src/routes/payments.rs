//! POST /api/payments/intent.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use domain::OrderId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Problem;
use crate::extract::{whole_number, CurrentUser, JsonBody};
use crate::{ApiError, AppState};

/// Stripe's events stay far below this; larger bodies are not Stripe's.
pub const WEBHOOK_BODY_LIMIT: usize = 512 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/payments/intent", post(create_payment_intent))
        .route(
            "/api/payments/webhook",
            post(receive_webhook).layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)),
        )
}

/// Only the order is named: the amount always comes from the database, so
/// any other field (`amount` above all) is rejected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentIntentRequest {
    #[serde(deserialize_with = "whole_number")]
    pub order_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatePaymentIntentResponse {
    /// For Stripe.js `confirmPayment`; never logged.
    pub client_secret: String,
    #[schema(example = "pi_3MtwBwLkdIwHu7ix28a3tqPa")]
    pub payment_intent_id: String,
    /// The order's total in the currency's minor unit.
    #[schema(example = 16500)]
    pub amount: i64,
    #[schema(example = "jpy")]
    pub currency: String,
}

/// Create (or return the open) PaymentIntent for one of your orders.
#[utoipa::path(
    post, path = "/api/payments/intent", tag = "payments",
    security(("bearer" = []), ("cookie" = [])),
    request_body = CreatePaymentIntentRequest,
    responses(
        (status = 200, body = CreatePaymentIntentResponse),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`permission_denied`, or `csrf_rejected`: a cookie request from an origin that is neither this server nor in `ALLOWED_ORIGINS`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`payment_already_processed` or `order_not_pending`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_error` (e.g. an `amount` field)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`payment_provider_error`; the order is unchanged", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_payment_intent(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<CreatePaymentIntentRequest>,
) -> Result<Json<CreatePaymentIntentResponse>, ApiError> {
    let output = state
        .payments
        .create_payment_intent(&user, OrderId::new(body.order_id))
        .await?;
    Ok(Json(CreatePaymentIntentResponse {
        client_secret: output.client_secret.expose().to_string(),
        payment_intent_id: output.payment_intent_id,
        amount: output.amount.minor_units(),
        currency: output.amount.currency().code().to_string(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResponse {
    pub received: bool,
    /// What kessai did with the event: applied, duplicate, ignored,
    /// mismatch, foreign or review.
    #[schema(example = "applied")]
    pub outcome: String,
}

/// Stripe's webhook endpoint. The signature is checked on the raw bytes
/// before anything is parsed; each event id is processed once.
#[utoipa::path(
    post, path = "/api/payments/webhook", tag = "payments",
    request_body(content = String, description = "The raw Stripe event, as Stripe sent it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "t=…,v1=… as Stripe signs")),
    responses(
        (status = 200, body = WebhookResponse),
        (status = 400, description = "`invalid_signature` or `invalid_payload`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<WebhookResponse>, ApiError> {
    let payload = Bytes::from_request(request, &state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large()
            } else {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_payload",
                    "リクエストボディを読み取れません",
                )
            }
        })?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = state.webhooks.receive(signature, &payload).await?;
    Ok(Json(WebhookResponse {
        received: true,
        outcome: outcome.as_str().to_string(),
    }))
}

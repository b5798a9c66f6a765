//! POST /api/payments/intent.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use domain::OrderId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Problem;
use crate::extract::{CurrentUser, JsonBody};
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/payments/intent", post(create_payment_intent))
}

/// Only the order is named: the amount always comes from the database, so
/// any other field (`amount` above all) is rejected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentIntentRequest {
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
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`payment_already_processed` or `order_not_pending`", body = Problem, content_type = "application/problem+json"),
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

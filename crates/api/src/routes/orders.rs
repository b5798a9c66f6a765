//! /api/orders: place, list, read and cancel the signed-in user's orders.

use application::orders::{CreateOrderInput, OrderItemInput};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::{Order, OrderId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Problem;
use crate::extract::{whole_number, CurrentUser, JsonBody, OptionalJsonBody};
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/orders", post(create_order).get(list_orders))
        .route("/api/orders/{id}", get(get_order))
        .route("/api/orders/{id}/cancel", post(cancel_order))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemRequest {
    #[serde(deserialize_with = "whole_number")]
    pub product_id: i64,
    /// 1 to 999.
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 999)]
    pub quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    /// 1 to 50 lines. Prices are taken from the catalog, never from here.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<OrderItemRequest>,
    /// At most 1000 characters (after trimming), no NUL; blank means none.
    #[schema(max_length = 1000, pattern = r"^[^\x00]*$")]
    pub notes: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrderRequest {
    /// At most 500 characters (after trimming), no NUL; blank means none.
    #[schema(max_length = 500, pattern = r"^[^\x00]*$")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderItemResponse {
    pub product_id: i64,
    pub product_name: String,
    pub unit_price: i64,
    pub quantity: i64,
    pub subtotal: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentErrorResponse {
    pub code: Option<String>,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderResponse {
    pub id: i64,
    #[schema(example = "ACQ-241124-001")]
    pub order_number: String,
    /// pending, awaiting_payment, paid, refunded or cancelled.
    #[schema(example = "pending")]
    pub status: String,
    pub items: Vec<OrderItemResponse>,
    pub subtotal: i64,
    /// 10 % of the subtotal, rounded down.
    pub tax: i64,
    pub shipping_fee: i64,
    pub total: i64,
    #[schema(example = "jpy")]
    pub currency: String,
    pub notes: Option<String>,
    pub payment_intent_id: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub refunded_amount: i64,
    /// Why the last payment attempt failed; the order stays payable.
    pub last_payment_error: Option<PaymentErrorResponse>,
    pub created_at: DateTime<Utc>,
}

impl From<&Order> for OrderResponse {
    fn from(order: &Order) -> Self {
        let state = order.state();
        let placed = &order.placed;
        Self {
            id: order.id.get(),
            order_number: order.number.to_string(),
            status: state.status.as_str().to_string(),
            items: placed
                .lines
                .iter()
                .map(|l| OrderItemResponse {
                    product_id: l.product_id.get(),
                    product_name: l.product_name.clone(),
                    unit_price: l.unit_price.minor_units(),
                    quantity: i64::from(l.quantity.get()),
                    subtotal: l.subtotal.minor_units(),
                })
                .collect(),
            subtotal: placed.subtotal.minor_units(),
            tax: placed.tax.minor_units(),
            shipping_fee: placed.shipping_fee.minor_units(),
            total: placed.total.minor_units(),
            currency: placed.total.currency().code().to_string(),
            notes: placed.notes.clone(),
            payment_intent_id: state.payment_intent_id.clone(),
            paid_at: state.paid_at,
            cancelled_at: state.cancelled_at,
            refunded_amount: state.refunded_amount.minor_units(),
            last_payment_error: state
                .last_payment_error
                .as_ref()
                .map(|f| PaymentErrorResponse {
                    code: f.code.clone(),
                    message: f.message.clone(),
                }),
            created_at: order.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrdersResponse {
    pub orders: Vec<OrderResponse>,
}

/// Place an order; prices, tax and total come from the database.
#[utoipa::path(
    post, path = "/api/orders", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    request_body = CreateOrderRequest,
    responses(
        (status = 201, body = OrderResponse),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`: sent with the `access_token` cookie (and no `Authorization`) from an origin that is neither this server nor in `ALLOWED_ORIGINS`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`product_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_error`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_order(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<CreateOrderRequest>,
) -> Result<(StatusCode, Json<OrderResponse>), ApiError> {
    let input = CreateOrderInput {
        items: body
            .items
            .into_iter()
            .map(|i| OrderItemInput {
                product_id: i.product_id,
                quantity: i.quantity,
            })
            .collect(),
        notes: body.notes,
    };
    let order = state.orders.create_order(user.id, input).await?;
    Ok((StatusCode::CREATED, Json(OrderResponse::from(&order))))
}

/// The signed-in user's orders, newest first.
#[utoipa::path(
    get, path = "/api/orders", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = OrdersResponse),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_orders(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<OrdersResponse>, ApiError> {
    let orders = state.orders.list_orders(user.id).await?;
    Ok(Json(OrdersResponse {
        orders: orders.iter().map(OrderResponse::from).collect(),
    }))
}

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    raw.parse::<i64>()
        .map(OrderId::new)
        .map_err(|_| ApiError::validation("id: must be an integer order id"))
}

/// One of the signed-in user's orders.
#[utoipa::path(
    get, path = "/api/orders/{id}", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = i64, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderResponse),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_error`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<OrderResponse>, ApiError> {
    let order = state.orders.get_order(user.id, order_id(&id)?).await?;
    Ok(Json(OrderResponse::from(&order)))
}

/// Cancel an order that has not been paid.
#[utoipa::path(
    post, path = "/api/orders/{id}/cancel", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = i64, Path, description = "Order id")),
    request_body(content = Option<CancelOrderRequest>),
    responses(
        (status = 200, body = OrderResponse),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`permission_denied`, or `csrf_rejected`: a cookie request from an origin that is neither this server nor in `ALLOWED_ORIGINS`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`order_cannot_cancel`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_error`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`payment_provider_error`: the PaymentIntent could not be cancelled; the order is unchanged", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_order(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<CancelOrderRequest>,
) -> Result<Json<OrderResponse>, ApiError> {
    let order = state
        .orders
        .cancel_order(user.id, order_id(&id)?, body.reason)
        .await?;
    Ok(Json(OrderResponse::from(&order)))
}

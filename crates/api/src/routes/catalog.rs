//! GET /api/products.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/products", get(list_products))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductResponse {
    pub id: i64,
    #[schema(example = "アクリルスタンド")]
    pub name: String,
    /// Excluding tax, in the currency's minor unit.
    #[schema(example = 1500)]
    pub price: i64,
    #[schema(example = "jpy")]
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductsResponse {
    pub products: Vec<ProductResponse>,
}

/// The products on sale.
#[utoipa::path(
    get, path = "/api/products", tag = "catalog",
    responses((status = 200, body = ProductsResponse))
)]
pub async fn list_products(
    State(state): State<AppState>,
) -> Result<Json<ProductsResponse>, ApiError> {
    let products = state
        .catalog
        .list_products()
        .await?
        .into_iter()
        .map(|p| ProductResponse {
            id: p.id.get(),
            name: p.name,
            price: p.price.minor_units(),
            currency: p.price.currency().code().to_string(),
        })
        .collect();
    Ok(Json(ProductsResponse { products }))
}

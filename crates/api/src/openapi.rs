//! The OpenAPI 3.1 document, generated from the handlers' annotations, and
//! a docs page (Scalar; its script loads from a CDN when viewed).

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::{Scalar, Servable};

use crate::routes::{auth, catalog, ops, orders, payments};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "kessai", description = "Payments backend for an online shop (Stripe PaymentIntents)."),
    paths(
        auth::register, auth::login, auth::logout, auth::me,
        catalog::list_products,
        orders::create_order, orders::list_orders, orders::get_order, orders::cancel_order,
        payments::create_payment_intent, payments::receive_webhook,
        ops::healthz, ops::readyz, ops::metrics,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&SecuritySchemes, &InternalErrors),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "catalog", description = "Products"),
        (name = "orders", description = "Orders"),
        (name = "payments", description = "Stripe PaymentIntents"),
        (name = "operations", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("access_token"))),
        );
    }
}

/// Any operation can answer 500 `internal_error` (the database is gone, a
/// handler panicked): one shared response, added to every operation.
struct InternalErrors;

impl Modify for InternalErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        const NAME: &str = "InternalError";
        let response = ResponseBuilder::new()
            .description("`internal_error`: the cause is logged, never sent")
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .responses
            .insert(NAME.into(), response.into());
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .entry("500".into())
                    .or_insert_with(|| Ref::from_response_name(NAME).into());
            }
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .merge(Scalar::with_url("/docs", ApiDoc::openapi()))
}

//! The HTTP surface of kessai (see `shared/docs/api-contract.md`): axum
//! routers per resource, one error type rendered as problem JSON, the auth
//! extractor and the OpenAPI document. Depends on use cases only, never on
//! an adapter.

mod error;
mod extract;
mod middleware;
pub mod openapi;
mod rate_limit;
mod routes;
mod security;

use std::sync::Arc;

use application::payments::PaymentService;
use application::ports::ReadinessProbe;
use application::webhooks::WebhookService;
use application::{AuthService, CatalogService, OrderService};
use axum::Router;

pub use error::ApiError;
pub use security::SecuritySettings;

/// Largest JSON body accepted on the customer-facing API.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct CookieSettings {
    /// Adds `Secure` to the `access_token` cookie (`COOKIE_SECURE`).
    pub secure: bool,
}

/// Renders the process's metrics in Prometheus text format.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Everything a handler can reach, behind one `Arc`: axum clones the
/// state for every request, and that clone should be one reference count,
/// not one per service plus copies of the settings (it was about 1 % of
/// kessai's CPU in a profile of the intent call).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    pub auth: AuthService,
    pub orders: OrderService,
    pub catalog: CatalogService,
    pub payments: PaymentService,
    pub webhooks: WebhookService,
    pub readiness: Arc<dyn ReadinessProbe>,
    pub cookies: CookieSettings,
    /// Rate limits, allowed origins (CSRF, CORS), proxy trust.
    pub security: SecuritySettings,
    pub metrics: MetricsRenderer,
    /// `stripe`, or `emulator` when no real payments happen.
    pub payments_mode: &'static str,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let policy = Arc::new(security::Policy::new(&state.security, state.cookies.secure));
    let auth_limits = Arc::new(security::AuthRateLimits::new(
        &state.security,
        policy.clone(),
    ));
    let api = Router::new()
        .merge(routes::auth::router(auth_limits))
        .merge(routes::catalog::router())
        .merge(routes::orders::router())
        .merge(routes::payments::router());
    let app = Router::new()
        .merge(routes::ops::router())
        .merge(openapi::router())
        .merge(api)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state);
    middleware::apply(app, policy)
}

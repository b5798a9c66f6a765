//! Cross-cutting layers: request id, tracing span per request, security
//! headers, CORS, CSRF, body limit, and a last-resort panic handler that
//! still answers problem JSON.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{HeaderName, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::security::{self, Policy};
use crate::{ApiError, JSON_BODY_LIMIT};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in kessai's standard layers (outermost first: metrics,
/// request id, trace span, response request id, security headers, CORS
/// (when origins are configured), panic guard, CSRF guard, body limit).
pub fn apply(router: Router, policy: Arc<Policy>) -> Router {
    let cors = policy.cors_layer();
    router.layer(
        ServiceBuilder::new()
            .layer(axum::middleware::from_fn(record_metrics))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn_with_state(
                policy.clone(),
                security::security_headers,
            ))
            .option_layer(cors)
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(axum::middleware::from_fn_with_state(
                policy,
                security::csrf_guard,
            ))
            .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)),
    )
}

fn request_span<B>(request: &Request<B>) -> tracing::Span {
    // The matched route, not the raw URI: paths and query strings can carry
    // values (ids, secrets) that do not belong in every log line.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id,
        user_id = tracing::field::Empty,
    )
}

#[derive(Debug)]
struct HandlerPanicked;

impl fmt::Display for HandlerPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request handler panicked")
    }
}

impl std::error::Error for HandlerPanicked {}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response<axum::body::Body> {
    ApiError::internal(&HandlerPanicked).into_response()
}

/// Counts every request by method, route and status, and times it.
async fn record_metrics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("kessai_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("kessai_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

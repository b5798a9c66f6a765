//! The HTTP surface: routes, the `Request-Id` and fault layers, and the one
//! request pipeline every `/v1` call goes through (parameters → auth →
//! idempotency → operation under the state lock → response).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use rand::Rng;
use serde_json::Value;

use crate::api::{client_secret_mismatch, Op};
use crate::auth;
use crate::error::ApiError;
use crate::form::Params;
use crate::idempotency::{self, Fingerprint, Lookup, Saved};
use crate::ids;
use crate::state::{Caller, Ctx, EventRequest};
use crate::{admin, checkout, webhooks, Inner, API_VERSION};

/// Bodies larger than this are refused.
const MAX_BODY: usize = 256 * 1024;

/// The id of the request being answered (also in events' `request.id`).
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

type Shared = Arc<Inner>;

fn stripe_route(route: MethodRouter<Shared>) -> MethodRouter<Shared> {
    route.fallback(unrecognized)
}

pub(crate) fn router(inner: Shared) -> Router {
    let v1 = Router::new()
        .route("/v1/customers", stripe_route(post(create_customer)))
        .route("/v1/customers/{id}", stripe_route(get(retrieve_customer)))
        .route("/v1/payment_intents", stripe_route(post(create_intent)))
        .route(
            "/v1/payment_intents/{id}",
            stripe_route(get(retrieve_intent).post(update_intent)),
        )
        .route(
            "/v1/payment_intents/{id}/confirm",
            stripe_route(post(confirm_intent)),
        )
        .route(
            "/v1/payment_intents/{id}/cancel",
            stripe_route(post(cancel_intent)),
        )
        .route(
            "/v1/payment_intents/{id}/capture",
            stripe_route(post(capture_intent)),
        )
        .route("/v1/charges/{id}", stripe_route(get(retrieve_charge)))
        .route("/v1/refunds", stripe_route(post(create_refund)))
        .route("/v1/refunds/{id}", stripe_route(get(retrieve_refund)))
        .route(
            "/v1/payment_methods/{id}",
            stripe_route(get(retrieve_payment_method)),
        )
        .route("/v1/events", stripe_route(get(list_events)))
        .route("/v1/events/{id}", stripe_route(get(retrieve_event)))
        .route("/v1/{*rest}", axum::routing::any(unrecognized))
        .layer(middleware::from_fn_with_state(inner.clone(), faults_layer));
    Router::new()
        .merge(v1)
        .merge(admin::routes())
        .route("/checkout/{client_secret}", get(checkout::page))
        .fallback(unrecognized)
        .layer(middleware::from_fn(request_id_layer))
        .with_state(inner)
}

/// Adds `Request-Id` to every response and logs the request (never the
/// query string or body, which may hold a client secret).
async fn request_id_layer(mut request: Request, next: Next) -> Response {
    let id = ids::request_id();
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = loggable_path(request.uri().path());
    let started = Instant::now();
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("request-id", value);
    }
    tracing::info!(
        request_id = %id,
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "stripe emulator request"
    );
    response
}

/// The path with a checkout page's client secret hidden.
fn loggable_path(path: &str) -> String {
    match path.find("/checkout/") {
        Some(i) => format!("{}/checkout/{{client_secret}}", &path[..i]),
        None => path.to_string(),
    }
}

/// A response body that fails at once: hyper closes the connection
/// without having written anything.
struct Abort;

impl http_body::Body for Abort {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection dropped (emulated fault)",
        ))))
    }
}

/// Latency, then one draw decides: drop the connection, 500, 429 or go on.
/// All before anything is done.
async fn faults_layer(State(inner): State<Shared>, request: Request, next: Next) -> Response {
    let faults = inner.lock().faults.clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let draw: f64 = rand::thread_rng().gen();
    let drop = faults.drop_connection_rate;
    let error = drop + faults.error_rate;
    let limited = error + faults.rate_limit_rate;
    if draw < drop {
        tracing::debug!("dropping the connection (fault)");
        return Response::new(Body::new(Abort));
    }
    if draw < error {
        return error_response(
            &ApiError::internal("An unknown error occurred (emulated fault).")
                .header("stripe-should-retry", "true"),
        );
    }
    if draw < limited {
        return error_response(&ApiError::rate_limited());
    }
    next.run(request).await
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    raw_json_response(status, bytes)
}

fn raw_json_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("stripe-version", HeaderValue::from_static(API_VERSION));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(crate) fn error_response(error: &ApiError) -> Response {
    let mut response = json_response(error.status, &error.body());
    for (name, value) in &error.headers {
        response
            .headers_mut()
            .insert(*name, HeaderValue::from_static(value));
    }
    response
}

async fn unrecognized(method: Method, uri: Uri) -> Response {
    error_response(&ApiError::unrecognized_url(method.as_str(), uri.path()))
}

impl Inner {
    /// Who is calling: the secret key, or (for retrieving and confirming an
    /// intent) that intent's client secret.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        op: Option<&Op>,
        params: &Params,
    ) -> Result<Caller, ApiError> {
        let presented = auth::presented_key(headers)?;
        if let Some(key) = &presented {
            if auth::secrets_match(key, &self.secret_key) {
                return Ok(Caller::SecretKey);
            }
        }
        let publishable_or_none = presented.as_deref().is_none_or(|k| k.starts_with("pk_"));
        if let (Some(intent), true) = (op.and_then(Op::client_secret_intent), publishable_or_none) {
            if let Some(secret) = params.peek("client_secret") {
                let state = self.lock();
                let matches = state
                    .intents
                    .get(intent)
                    .is_some_and(|i| auth::secrets_match(secret, &i.client_secret));
                return if matches {
                    Ok(Caller::ClientSecret {
                        intent: intent.to_string(),
                    })
                } else {
                    Err(client_secret_mismatch())
                };
            }
        }
        match presented {
            None => Err(auth::missing_key()),
            Some(key) => Err(auth::invalid_key(&key)),
        }
    }
}

fn request_id_of(request: &Request) -> String {
    request
        .extensions()
        .get::<RequestId>()
        .map_or_else(ids::request_id, |r| r.0.clone())
}

/// The `/v1` pipeline.
async fn handle(inner: Shared, op: Op, request: Request) -> Response {
    let request_id = request_id_of(&request);
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error_response(&ApiError::validation(
            "The request body could not be read or is too large.",
        ));
    };
    let is_post = parts.method == Method::POST;
    let mut params = Params::parse(parts.uri.query().unwrap_or_default().as_bytes());
    if is_post {
        params.extend(Params::parse(&bytes));
    }
    let caller = match inner.authenticate(&parts.headers, Some(&op), &params) {
        Ok(caller) => caller,
        Err(error) => return error_response(&error),
    };
    // Sending an idempotency key with a GET has no effect, as at Stripe.
    let key = if is_post {
        match parts
            .headers
            .get("idempotency-key")
            .map(HeaderValue::to_str)
        {
            None => None,
            Some(Ok(key)) => Some(key.to_string()),
            Some(Err(_)) => {
                return error_response(&ApiError::validation(
                    "Invalid Idempotency-Key: it must be printable ASCII.",
                ))
            }
        }
    } else {
        None
    };
    if let Some(key) = &key {
        if let Err(error) = idempotency::check_key(key) {
            return error_response(&error);
        }
    }
    let fingerprint = Fingerprint {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        params: params.fingerprint(),
    };
    let scope = caller.scope();

    let (status, bytes, settle_later, extra_headers) = {
        let mut state = inner.lock();
        if let Some(key) = &key {
            match state.idempotency.lookup(&scope, key, &fingerprint) {
                Ok(Lookup::New) => {}
                Ok(Lookup::Replay(saved)) => {
                    drop(state);
                    let mut response = raw_json_response(saved.status, saved.body);
                    let headers = response.headers_mut();
                    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
                    if let Ok(original) = HeaderValue::from_str(&saved.request_id) {
                        headers.insert("original-request", original);
                    }
                    return response;
                }
                Err(error) => return error_response(&error),
            }
        }
        let mut ctx = Ctx::new(
            caller,
            EventRequest {
                id: Some(request_id.clone()),
                idempotency_key: key.clone(),
            },
        );
        let events_before = state.events.len();
        let result = state.execute(&op, &mut params, &mut ctx);
        let (status, body, saved, headers) = match result {
            Ok(body) => (StatusCode::OK, body, true, Vec::new()),
            Err(error) => (
                error.status,
                error.body(),
                error.saved,
                error.headers.clone(),
            ),
        };
        let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
        if let (Some(key), true) = (&key, saved) {
            state.idempotency.save(
                &scope,
                key,
                Saved {
                    fingerprint,
                    status,
                    body: bytes.clone(),
                    request_id: request_id.clone(),
                    at: Instant::now(),
                },
            );
        }
        if state.events.len() > events_before {
            inner.wake.notify_one();
        }
        (status, bytes, ctx.settle_later, headers)
    };
    for intent in settle_later {
        webhooks::settle_after_delay(&inner, intent);
    }
    let mut response = raw_json_response(status, bytes);
    for (name, value) in extra_headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn create_customer(State(inner): State<Shared>, request: Request) -> Response {
    handle(inner, Op::CreateCustomer, request).await
}

async fn retrieve_customer(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    handle(inner, Op::RetrieveCustomer(id), request).await
}

async fn create_intent(State(inner): State<Shared>, request: Request) -> Response {
    handle(inner, Op::CreateIntent, request).await
}

async fn retrieve_intent(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    handle(inner, Op::RetrieveIntent(id), request).await
}

async fn update_intent(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    handle(inner, Op::UpdateIntent(id), request).await
}

async fn confirm_intent(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    handle(inner, Op::ConfirmIntent(id), request).await
}

async fn cancel_intent(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    handle(inner, Op::CancelIntent(id), request).await
}

async fn capture_intent(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    handle(inner, Op::CaptureIntent(id), request).await
}

async fn retrieve_charge(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    handle(inner, Op::RetrieveCharge(id), request).await
}

async fn create_refund(State(inner): State<Shared>, request: Request) -> Response {
    handle(inner, Op::CreateRefund, request).await
}

async fn retrieve_refund(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    handle(inner, Op::RetrieveRefund(id), request).await
}

async fn retrieve_payment_method(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    handle(inner, Op::RetrievePaymentMethod(id), request).await
}

async fn list_events(State(inner): State<Shared>, request: Request) -> Response {
    handle(inner, Op::ListEvents, request).await
}

async fn retrieve_event(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    handle(inner, Op::RetrieveEvent(id), request).await
}

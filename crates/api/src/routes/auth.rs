//! POST /api/auth/register, /login, /logout and GET /api/auth/me.

use std::sync::Arc;

use application::auth::{LoginInput, RegisterInput, SignedIn};
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Problem;
use crate::extract::{
    access_token, access_token_cookie, cleared_access_token_cookie, CurrentUser, JsonBody,
};
use crate::security::{limit_auth_attempts, AuthRateLimits};
use crate::{ApiError, AppState};

/// The auth routes; login and register are rate limited by `limits`.
pub fn router(limits: Arc<AuthRateLimits>) -> Router<AppState> {
    let limited = Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route_layer(axum::middleware::from_fn_with_state(
            limits,
            limit_auth_attempts,
        ));
    Router::new()
        .merge(limited)
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Trimmed and lower-cased before use. The pattern (printable ASCII,
    /// one `@`, a dotted domain) is what is always accepted; the server also
    /// takes non-ASCII addresses of at most 64 bytes before the `@` and 254
    /// in all.
    #[schema(
        example = "taro@example.jp",
        max_length = 254,
        pattern = r"^[\x21-\x3f\x41-\x7e]{1,64}@[\x21-\x2d\x2f-\x3f\x41-\x7e]+(\.[\x21-\x2d\x2f-\x3f\x41-\x7e]+)+$"
    )]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(example = "correct horse battery", min_length = 8, max_length = 128)]
    pub password: String,
    /// At most 100 characters, no control characters; blank means none.
    #[schema(
        example = "山田太郎",
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    pub user_id: i64,
    pub email: String,
    pub message: String,
    /// The same token as the cookie, for clients that use `Authorization: Bearer`.
    pub access_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub message: String,
    pub access_token: String,
    pub user_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user_id: i64,
    pub email: String,
    pub name: Option<String>,
    /// The user's Stripe Customer, once created.
    pub stripe_customer_id: Option<String>,
}

fn with_session_cookie(
    state: &AppState,
    signed_in: &SignedIn,
    response: impl IntoResponse,
) -> Response {
    let max_age = state.auth.session_ttl().num_seconds();
    let cookie = access_token_cookie(signed_in.token.expose(), max_age, state.cookies.secure);
    ([(header::SET_COOKIE, cookie)], response).into_response()
}

/// Create an account (and sign it in).
#[utoipa::path(
    post, path = "/api/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered; `access_token` cookie set", body = RegisterResponse),
        (status = 403, description = "`csrf_rejected`: sent with the `access_token` cookie (and no `Authorization`) from an origin that is neither this server nor in `ALLOWED_ORIGINS`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_already_exists`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_error`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many attempts from this client address or for this email", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the next attempt is allowed"))),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<Response, ApiError> {
    let signed_in = state
        .auth
        .register(RegisterInput {
            email: body.email,
            password: body.password,
            name: body.name,
        })
        .await?;
    let response = RegisterResponse {
        user_id: signed_in.user.id.get(),
        email: signed_in.user.email.to_string(),
        message: "ユーザー登録が完了しました".into(),
        access_token: signed_in.token.expose().to_string(),
    };
    Ok(with_session_cookie(
        &state,
        &signed_in,
        (StatusCode::CREATED, Json(response)),
    ))
}

/// Log in with email and password.
#[utoipa::path(
    post, path = "/api/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; `access_token` cookie set", body = LoginResponse),
        (status = 401, description = "`invalid_credentials`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`: sent with the `access_token` cookie (and no `Authorization`) from an origin that is neither this server nor in `ALLOWED_ORIGINS`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_error`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many attempts from this client address or for this email", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the next attempt is allowed"))),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let signed_in = state
        .auth
        .login(LoginInput {
            email: body.email,
            password: body.password,
        })
        .await?;
    let response = LoginResponse {
        message: "ログインしました".into(),
        access_token: signed_in.token.expose().to_string(),
        user_id: signed_in.user.id.get(),
    };
    Ok(with_session_cookie(&state, &signed_in, Json(response)))
}

/// Log out: the token stops working and the cookie is cleared. Idempotent.
#[utoipa::path(
    post, path = "/api/auth/logout", tag = "auth",
    responses(
        (status = 200, description = "Logged out", body = MessageResponse),
        (status = 403, description = "`csrf_rejected`: sent with the `access_token` cookie (and no `Authorization`) from an origin that is neither this server nor in `ALLOWED_ORIGINS`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn logout(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    if let Some(token) = access_token(&parts) {
        state.auth.logout(&token).await?;
    }
    let cookie = cleared_access_token_cookie(state.cookies.secure);
    let body = MessageResponse {
        message: "ログアウトしました".into(),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// The signed-in user.
#[utoipa::path(
    get, path = "/api/auth/me", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = MeResponse),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn me(CurrentUser(user): CurrentUser) -> Json<MeResponse> {
    Json(MeResponse {
        user_id: user.id.get(),
        email: user.email.to_string(),
        name: user.name.map(|n| n.as_str().to_string()),
        stripe_customer_id: user.stripe_customer_id,
    })
}

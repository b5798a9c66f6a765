//! One error type for every handler, rendered as RFC 9457 problem JSON with
//! a stable `code`. Internal causes are logged here and never sent.

use application::auth::{AuthenticateError, LoginError, RegisterError};
use application::orders::{CancelOrderError, CreateOrderError, GetOrderError};
use application::payments::CreateIntentError;
use application::ports::payment_gateway::GatewayError;
use application::ports::webhooks::WebhookRejection;
use application::webhooks::HandleWebhookError;
use application::UnexpectedError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Problem details (RFC 9457) as every 4xx/5xx body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: `code` carries the machine-readable kind.
    #[schema(example = "about:blank")]
    pub r#type: &'static str,
    #[schema(example = "Conflict")]
    pub title: String,
    #[schema(example = 409)]
    pub status: u16,
    /// Human-readable explanation.
    #[schema(example = "この注文は既に決済済みです")]
    pub detail: String,
    /// Stable snake_case machine code.
    #[schema(example = "payment_already_processed")]
    pub code: &'static str,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", detail)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "認証が必要です",
        )
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "リクエストが大きすぎます",
        )
    }

    /// Logs the cause (with the request's span: request id, route) and
    /// returns an opaque 500.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let chain: Vec<String> = std::iter::successors(Some(cause), |e| e.source())
            .map(ToString::to_string)
            .collect();
        tracing::error!(error.chain = ?chain, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "サーバー内部でエラーが発生しました",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            r#type: "about:blank",
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "そのURLはありません")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "このURLはそのメソッドを受け付けません",
    )
}

// One mapping from use-case errors to HTTP, so every code is decided here.

impl From<UnexpectedError> for ApiError {
    fn from(e: UnexpectedError) -> Self {
        Self::internal(e.0.as_ref())
    }
}

impl From<domain::ValidationError> for ApiError {
    fn from(e: domain::ValidationError) -> Self {
        Self::validation(e.to_string())
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Invalid(v) => v.into(),
            RegisterError::EmailTaken => Self::new(
                StatusCode::CONFLICT,
                "email_already_exists",
                "このメールアドレスは既に登録されています",
            ),
            RegisterError::Unexpected(u) => u.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "メールアドレスまたはパスワードが正しくありません",
            ),
            LoginError::Unexpected(u) => u.into(),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(e: AuthenticateError) -> Self {
        match e {
            AuthenticateError::Unauthenticated => Self::unauthenticated(),
            AuthenticateError::Unexpected(u) => u.into(),
        }
    }
}

fn order_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "order_not_found",
        "注文が見つかりません",
    )
}

fn permission_denied() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_denied",
        "この注文にアクセスする権限がありません",
    )
}

impl From<CreateOrderError> for ApiError {
    fn from(e: CreateOrderError) -> Self {
        match e {
            CreateOrderError::Invalid(v) => v.into(),
            CreateOrderError::ProductNotFound(id) => Self::new(
                StatusCode::NOT_FOUND,
                "product_not_found",
                format!("商品が見つかりません (product_id: {id})"),
            ),
            CreateOrderError::Unexpected(u) => u.into(),
        }
    }
}

impl From<GetOrderError> for ApiError {
    fn from(e: GetOrderError) -> Self {
        match e {
            GetOrderError::NotFound => order_not_found(),
            GetOrderError::PermissionDenied => permission_denied(),
            GetOrderError::Unexpected(u) => u.into(),
        }
    }
}

impl From<CancelOrderError> for ApiError {
    fn from(e: CancelOrderError) -> Self {
        match e {
            CancelOrderError::Invalid(v) => v.into(),
            CancelOrderError::NotFound => order_not_found(),
            CancelOrderError::PermissionDenied => permission_denied(),
            CancelOrderError::CannotCancel(status) => Self::new(
                StatusCode::CONFLICT,
                "order_cannot_cancel",
                format!("この注文はキャンセルできません (status: {status})"),
            ),
            CancelOrderError::Provider(g) => g.into(),
            CancelOrderError::Unexpected(u) => u.into(),
        }
    }
}

impl From<GatewayError> for ApiError {
    /// Whatever Stripe said stays in our log; the client learns only that
    /// the provider failed (and that its order is unchanged).
    fn from(e: GatewayError) -> Self {
        tracing::warn!(error = %e, "payment provider call failed");
        Self::new(
            StatusCode::BAD_GATEWAY,
            "payment_provider_error",
            "決済サービスとの通信に失敗しました。時間をおいて再度お試しください",
        )
    }
}

impl From<CreateIntentError> for ApiError {
    fn from(e: CreateIntentError) -> Self {
        match e {
            CreateIntentError::NotFound => order_not_found(),
            CreateIntentError::PermissionDenied => permission_denied(),
            CreateIntentError::AlreadyPaid => Self::new(
                StatusCode::CONFLICT,
                "payment_already_processed",
                "この注文は既に決済済みです",
            ),
            CreateIntentError::NotPayable(status) => Self::new(
                StatusCode::CONFLICT,
                "order_not_pending",
                format!("この注文は支払いできる状態ではありません (status: {status})"),
            ),
            CreateIntentError::Provider(g) => g.into(),
            CreateIntentError::Unexpected(u) => u.into(),
        }
    }
}

impl From<HandleWebhookError> for ApiError {
    fn from(e: HandleWebhookError) -> Self {
        match e {
            HandleWebhookError::Rejected(WebhookRejection::InvalidSignature(_)) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_signature",
                "Webhook signature verification failed",
            ),
            HandleWebhookError::Rejected(WebhookRejection::InvalidPayload(_)) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_payload",
                "The webhook payload is not a Stripe event",
            ),
            HandleWebhookError::Unexpected(u) => u.into(),
        }
    }
}

//! Stripe's error object: `{"error": {"type", "code", "message", "param", …}}`
//! with Stripe's HTTP status codes.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// One error answer. `saved` says whether an idempotency key remembers it:
/// Stripe saves a result only once the endpoint began executing, so errors
/// from parameter validation (and authentication) are not saved and a retry
/// with the same key runs again.
#[derive(Debug, Clone)]
pub(crate) struct ApiError(Box<ErrorData>);

#[derive(Debug, Clone)]
pub(crate) struct ErrorData {
    pub status: StatusCode,
    kind: &'static str,
    code: Option<String>,
    decline_code: Option<String>,
    message: String,
    param: Option<String>,
    extra: Map<String, Value>,
    pub saved: bool,
    /// Extra response headers (`Stripe-Should-Retry`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, &'static str)>,
}

impl std::ops::Deref for ApiError {
    type Target = ErrorData;
    fn deref(&self) -> &ErrorData {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorData {
        &mut self.0
    }
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorData {
            status,
            kind,
            code: None,
            decline_code: None,
            message: message.into(),
            param: None,
            extra: Map::new(),
            saved: true,
            headers: Vec::new(),
        }))
    }

    /// 400 `invalid_request_error` raised while the endpoint runs (saved).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 `invalid_request_error` from parameter validation (not saved).
    pub fn validation(message: impl Into<String>) -> Self {
        Self::invalid(message).unsaved()
    }

    pub fn code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    pub fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    pub fn unsaved(mut self) -> Self {
        self.saved = false;
        self
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// `Received unknown parameter: x`.
    pub fn unknown_parameter(key: &str) -> Self {
        Self::validation(format!("Received unknown parameter: {key}"))
            .code("parameter_unknown")
            .param(key)
    }

    pub fn missing_parameter(key: &str) -> Self {
        Self::validation(format!("Missing required param: {key}."))
            .code("parameter_missing")
            .param(key)
    }

    /// A path object that does not exist: 404 `resource_missing`.
    pub fn not_found(object: &str, id: &str, param: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No such {object}: '{id}'"),
        )
        .code("resource_missing")
        .param(param)
    }

    /// An object named by a parameter that does not exist: 400 `resource_missing`.
    pub fn missing_reference(object: &str, id: &str, param: &str) -> Self {
        Self::invalid(format!("No such {object}: '{id}'"))
            .code("resource_missing")
            .param(param)
    }

    pub fn unexpected_state(message: impl Into<String>) -> Self {
        Self::invalid(message).code("payment_intent_unexpected_state")
    }

    pub fn card(code: &str, decline_code: Option<&str>, message: &str) -> Self {
        let mut error = Self::new(StatusCode::PAYMENT_REQUIRED, "card_error", message).code(code);
        error.decline_code = decline_code.map(str::to_string);
        error
    }

    pub fn idempotency(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "idempotency_error", message).unsaved()
    }

    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .unsaved()
            .header("www-authenticate", "Basic realm=\"Stripe\"")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "api_error", message).unsaved()
    }

    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        )
        .code("rate_limit")
        .unsaved()
    }

    pub fn unrecognized_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
            ),
        )
        .unsaved()
    }

    pub fn body(&self) -> Value {
        let mut error = Map::new();
        if let Some(code) = &self.code {
            error.insert("code".into(), json!(code));
            error.insert(
                "doc_url".into(),
                json!(format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )),
            );
        }
        if let Some(decline_code) = &self.decline_code {
            error.insert("decline_code".into(), json!(decline_code));
        }
        error.insert("message".into(), json!(self.message));
        if let Some(param) = &self.param {
            error.insert("param".into(), json!(param));
        }
        error.insert("type".into(), json!(self.kind));
        for (key, value) in &self.extra {
            error.insert(key.clone(), value.clone());
        }
        json!({ "error": error })
    }
}

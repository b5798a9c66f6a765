//! Extractors that turn a request into typed input or a problem response.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use domain::User;
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

/// The name of the cookie that carries the access token.
pub const ACCESS_TOKEN_COOKIE: &str = "access_token";

/// A JSON body. Any parse failure (malformed JSON, wrong type, missing or
/// unknown field) is a 422 `validation_error` naming the path that failed;
/// an oversized body is a 413. The content type is not required, as
/// clients of the original FastAPI service did not always send it.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body or a JSON `null` means
/// `T::default()` (for endpoints whose every field is optional; the OpenAPI
/// document declares such a body as optional and nullable).
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse_json::<Option<T>>(&bytes).map(|body| Self(body.unwrap_or_default()))
    }
}

/// `deserialize_with` for integer fields of request bodies: JSON has one
/// number type, so `2.0` (or `2e0`) is the integer 2, as JSON Schema's
/// `integer` says; `2.5`, strings and numbers outside `i64` are still
/// type errors. Without it serde would reject the `2.0` that some JSON
/// encoders write for every number.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct WholeNumber;

    impl serde::de::Visitor<'_> for WholeNumber {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("i64")
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            // Exactly the whole floats inside i64's range (-2^63 is exact,
            // 2^63 is already outside).
            if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 {
                Ok(v as i64)
            } else {
                Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
            }
        }
    }

    deserializer.deserialize_any(WholeNumber)
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large()
        } else {
            ApiError::validation("リクエストボディを読み取れません")
        }
    })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::validation(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::validation(format!("{path}: {inner}"))
        }
    })
}

/// The raw access token of a request: `Authorization: Bearer …` first,
/// then the `access_token` cookie.
pub fn access_token(parts: &Parts) -> Option<String> {
    access_token_from_headers(&parts.headers)
}

/// [`access_token`] from the headers alone.
pub fn access_token_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
            .filter(|t| !t.is_empty());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == ACCESS_TOKEN_COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_string())
        .filter(|t| !t.is_empty())
}

/// The authenticated user, or a 401 `unauthenticated`.
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = access_token(parts).ok_or_else(ApiError::unauthenticated)?;
        let user = state.auth.authenticate(&token).await?;
        tracing::Span::current().record("user_id", user.id.get());
        Ok(Self(user))
    }
}

/// A `Set-Cookie` value carrying `token` for `max_age_seconds`.
pub fn access_token_cookie(token: &str, max_age_seconds: i64, secure: bool) -> String {
    let mut cookie = format!(
        "{ACCESS_TOKEN_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age_seconds}"
    );
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// A `Set-Cookie` value that deletes the access token cookie.
pub fn cleared_access_token_cookie(secure: bool) -> String {
    access_token_cookie("", 0, secure)
}

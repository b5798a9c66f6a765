//! Authentication as Stripe does it: `Authorization: Bearer sk_…` or Basic
//! with the key as the user name; the key is compared in constant time and
//! never echoed whole. Retrieving and confirming a PaymentIntent also works
//! with its `client_secret` instead (Stripe.js sends a publishable key and
//! the client secret).

use axum::http::{header, HeaderMap};
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::error::ApiError;

const NO_KEY: &str = "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.";

pub(crate) fn secrets_match(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// What the `Authorization` header presents: `Ok(None)` when there is none.
pub(crate) fn presented_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let Ok(value) = value.to_str() else {
        return Err(invalid_key(""));
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(ApiError::authentication(NO_KEY));
        }
        return Ok(Some(rest.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| invalid_key(""))?;
        let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
        if user.is_empty() {
            return Err(ApiError::authentication(NO_KEY));
        }
        return Ok(Some(user.to_string()));
    }
    Err(invalid_key(""))
}

pub(crate) fn missing_key() -> ApiError {
    ApiError::authentication(NO_KEY)
}

pub(crate) fn invalid_key(key: &str) -> ApiError {
    ApiError::authentication(format!("Invalid API Key provided: {}", redact_key(key)))
}

/// `sk_test_****…1234`: the key's type prefix and, for a long enough key,
/// its last four characters; never more.
pub(crate) fn redact_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let mut prefix = 0;
    let mut underscores = 0;
    for (i, c) in chars.iter().enumerate().take(9) {
        if *c == '_' {
            underscores += 1;
            prefix = i + 1;
            if underscores == 2 {
                break;
            }
        }
    }
    let show_last = if chars.len() >= prefix + 12 { 4 } else { 0 };
    let hidden = chars.len().saturating_sub(prefix + show_last).min(40);
    let head: String = chars.iter().take(prefix).collect();
    let tail: String = chars
        .iter()
        .skip(chars.len().saturating_sub(show_last))
        .collect();
    format!("{head}{}{tail}", "*".repeat(hidden))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_prefix_and_last_four_only() {
        assert_eq!(
            redact_key("sk_test_abcdefghijklmnop1234"),
            format!("sk_test_{}1234", "*".repeat(16))
        );
        assert_eq!(redact_key("sk_test_short"), "sk_test_*****");
        assert_eq!(redact_key("garbage"), "*******");
        assert!(!redact_key("sk_test_supersecretvalue9876").contains("secret"));
    }
}

//! HTTP to Stripe: authentication, the pinned version, idempotency keys,
//! timeouts, and bounded retries with exponential backoff and jitter.

use std::time::{Duration, Instant};

use application::ports::payment_gateway::{GatewayError, IdempotencyKey};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use super::objects::gateway_error;
use super::{Form, StripeConfig, STRIPE_VERSION};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff: a random delay up to
    /// `base × 2^retry`, capped, so that many clients retrying at once
    /// spread out instead of arriving together.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(millis / 2..=millis.max(1)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

#[derive(Clone)]
pub(crate) struct Transport {
    http: reqwest::Client,
    config: StripeConfig,
}

/// What one attempt produced.
enum Attempt {
    Done(Vec<u8>),
    Retry {
        error: GatewayError,
        after: Option<Duration>,
    },
    Fail(GatewayError),
}

impl Transport {
    pub fn new(mut config: StripeConfig) -> anyhow::Result<Self> {
        if !config.api_base.path().ends_with('/') {
            let path = format!("{}/", config.api_base.path());
            config.api_base.set_path(&path);
        }
        let mut headers = HeaderMap::new();
        headers.insert("Stripe-Version", HeaderValue::from_static(STRIPE_VERSION));
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .default_headers(headers)
            .user_agent(concat!("kessai/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, config })
    }

    /// Sends one logical request, retrying what is safe to retry. Every
    /// attempt of a POST carries the same idempotency key, so retries can
    /// never create a second object. `operation` names the call in logs
    /// and metrics (`kessai_stripe_requests_total{operation,outcome}` and
    /// its latency, retries included).
    pub async fn send<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        form: Option<&Form>,
        key: Option<&IdempotencyKey>,
    ) -> Result<T, GatewayError> {
        let started = Instant::now();
        let result = self
            .send_with_retries(operation, method, path, form, key)
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => outcome_label(error),
        };
        metrics::counter!("kessai_stripe_requests_total", "operation" => operation, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("kessai_stripe_request_duration_seconds", "operation" => operation, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn send_with_retries<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        form: Option<&Form>,
        key: Option<&IdempotencyKey>,
    ) -> Result<T, GatewayError> {
        let mut retry = 0;
        loop {
            let started = Instant::now();
            let outcome = self.attempt(method, path, form, key).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match outcome {
                Attempt::Done(body) => {
                    tracing::debug!(
                        operation,
                        path,
                        elapsed_ms,
                        retry,
                        "stripe request succeeded"
                    );
                    return serde_json::from_slice(&body).map_err(|e| GatewayError::Api {
                        status: 200,
                        message: format!("unreadable response from the payment provider: {e}"),
                    });
                }
                Attempt::Fail(error) => {
                    tracing::warn!(operation, path, elapsed_ms, retry, %error, "stripe request failed");
                    return Err(error);
                }
                Attempt::Retry { error, after } => {
                    if retry >= self.config.retry.max_retries {
                        tracing::warn!(operation, path, retry, %error, "stripe request failed after retries");
                        return Err(error);
                    }
                    let delay = after
                        .map(|d| d.min(self.config.retry.max_delay))
                        .unwrap_or_else(|| self.config.retry.backoff(retry));
                    tracing::info!(operation, path, retry, delay_ms = delay.as_millis() as u64, %error, "retrying stripe request");
                    metrics::counter!("kessai_stripe_retries_total", "operation" => operation)
                        .increment(1);
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
            }
        }
    }

    async fn attempt(
        &self,
        method: Method,
        path: &str,
        form: Option<&Form>,
        key: Option<&IdempotencyKey>,
    ) -> Attempt {
        // Relative to the base, so a base with a path prefix (a proxy at
        // https://host/stripe/) keeps it.
        let url = match self.config.api_base.join(path.trim_start_matches('/')) {
            Ok(url) => url,
            Err(e) => {
                return Attempt::Fail(GatewayError::InvalidRequest {
                    status: 0,
                    code: None,
                    param: None,
                    message: format!("bad request path: {e}"),
                })
            }
        };
        let mut request = match method {
            Method::Get => self.http.get(url),
            Method::Post => self.http.post(url),
        }
        .bearer_auth(self.config.secret_key.expose_secret());
        if let Some(form) = form {
            request = request.form(form.pairs());
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key.as_str());
        }
        let response = match request.send().await {
            Ok(response) => response,
            // Never sent (e.g. a header value with a control character):
            // nothing to retry, and nothing can have been applied.
            Err(error) if error.is_builder() => {
                return Attempt::Fail(GatewayError::InvalidRequest {
                    status: 0,
                    code: None,
                    param: None,
                    message: format!("the request could not be built: {error}"),
                })
            }
            Err(error) => return network_failure(&error),
        };
        let status = response.status();
        let should_retry =
            header_str(response.headers(), "stripe-should-retry").map(|v| v == "true");
        let retry_after = header_str(response.headers(), "retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let request_id = header_str(response.headers(), "request-id").unwrap_or_default();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => return network_failure(&error),
        };
        if status.is_success() {
            return Attempt::Done(body.to_vec());
        }
        let error = gateway_error(status.as_u16(), &body);
        tracing::debug!(
            status = status.as_u16(),
            request_id,
            "stripe answered with an error"
        );
        let retryable = should_retry.unwrap_or_else(|| {
            status == StatusCode::CONFLICT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
        });
        if retryable {
            Attempt::Retry {
                error,
                after: retry_after,
            }
        } else {
            Attempt::Fail(error)
        }
    }
}

/// A small, fixed set of metric labels for a failed call.
fn outcome_label(error: &GatewayError) -> &'static str {
    match error {
        GatewayError::Card { .. } => "card_error",
        GatewayError::InvalidRequest { .. } if error.is_not_found() => "not_found",
        GatewayError::InvalidRequest { .. } => "invalid_request",
        GatewayError::Idempotency { .. } => "idempotency_error",
        GatewayError::RateLimited { .. } => "rate_limited",
        GatewayError::Api { .. } => "api_error",
        GatewayError::Authentication { .. } => "authentication_error",
        GatewayError::Network {
            outcome_unknown: true,
            ..
        } => "outcome_unknown",
        GatewayError::Network { .. } => "unreachable",
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A transport failure. A refused connection never reached Stripe; a
/// timeout or a broken connection may have been applied there.
fn network_failure(error: &reqwest::Error) -> Attempt {
    let outcome_unknown = !error.is_connect();
    // The error's Display can include the URL, never the key or the body.
    let message = if error.is_timeout() {
        "timed out waiting for the payment provider".to_string()
    } else if error.is_connect() {
        "could not connect to the payment provider".to_string()
    } else {
        format!("connection to the payment provider failed: {error}")
    };
    Attempt::Retry {
        error: GatewayError::Network {
            message,
            outcome_unknown,
        },
        after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let policy = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for retry in 0..10 {
            let delay = policy.backoff(retry);
            let ceiling = Duration::from_millis(100 * 2u64.pow(retry)).min(Duration::from_secs(1));
            assert!(delay <= ceiling, "retry {retry}: {delay:?} > {ceiling:?}");
            assert!(
                delay >= ceiling / 2,
                "retry {retry}: {delay:?} < half of {ceiling:?}"
            );
        }
    }
}

//! Abuse resistance at the HTTP edge: rate limits on the auth endpoints,
//! CSRF protection for cookie sessions, CORS for configured origins, and
//! security headers on every response.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::extract::access_token_from_headers;
use crate::middleware::REQUEST_ID;
use crate::rate_limit::{address_key, email_key, RateLimiter, DEFAULT_MAX_KEYS};
use crate::ApiError;

/// The path Stripe posts to: never cookie-authenticated, never CSRF-checked.
pub const WEBHOOK_PATH: &str = "/api/payments/webhook";

/// What the operator configured (`ALLOWED_ORIGINS`, `TRUST_PROXY_HEADERS`,
/// `AUTH_RATE_LIMIT_PER_ADDRESS`, `AUTH_RATE_LIMIT_PER_EMAIL`).
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// Origins (`https://shop.example`) whose pages may send cookie
    /// requests and use CORS with credentials. Empty: same origin only.
    pub allowed_origins: Vec<String>,
    /// Believe `X-Forwarded-For`/`-Proto`/`-Host` (set by our own proxy).
    pub trust_proxy_headers: bool,
    /// Login/register attempts per minute per client address (0: no limit).
    pub auth_rate_limit_per_address: u32,
    /// Login/register attempts per minute per email (0: no limit).
    pub auth_rate_limit_per_email: u32,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            trust_proxy_headers: false,
            auth_rate_limit_per_address: 10,
            auth_rate_limit_per_email: 5,
        }
    }
}

/// The policy the middleware apply, built once from the settings.
pub struct Policy {
    allowed_origins: Vec<String>,
    trust_proxy_headers: bool,
    /// `COOKIE_SECURE`: the site is served over https (HSTS, and a cookie
    /// request's own origin must be https).
    https: bool,
}

impl Policy {
    pub fn new(settings: &SecuritySettings, https: bool) -> Self {
        Self {
            allowed_origins: settings
                .allowed_origins
                .iter()
                .filter_map(|o| origin_of(o))
                .collect(),
            trust_proxy_headers: settings.trust_proxy_headers,
            https,
        }
    }

    /// CORS with credentials for the allowed origins; none when there are
    /// none (the browser then keeps other origins out by itself).
    pub fn cors_layer(&self) -> Option<CorsLayer> {
        if self.allowed_origins.is_empty() {
            return None;
        }
        let origins: Vec<HeaderValue> = self
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    HeaderName::from_static("idempotency-key"),
                    REQUEST_ID,
                ])
                .expose_headers([REQUEST_ID, header::RETRY_AFTER])
                .max_age(Duration::from_secs(600)),
        )
    }

    /// Whether a request may go on, as far as CSRF is concerned: `Err`
    /// carries the reason (for the log).
    ///
    /// Only unsafe requests that a browser would authenticate by the
    /// `access_token` cookie alone are checked (no `Authorization` header:
    /// with one, the cookie is ignored). They must come from an allowed
    /// origin or from our own: `Origin` when present, else `Referer`.
    /// A request with neither is a non-browser client (curl with a cookie
    /// jar) and is allowed while no `ALLOWED_ORIGINS` is configured;
    /// with origins configured it is refused — browsers always send
    /// `Origin` on a POST, and other clients can use `Authorization: Bearer`.
    pub fn check_csrf(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), String> {
        if matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) || path == WEBHOOK_PATH
            || headers.contains_key(header::AUTHORIZATION)
            || access_token_from_headers(headers).is_none()
        {
            return Ok(());
        }
        let origin = match (headers.get(header::ORIGIN), headers.get(header::REFERER)) {
            (Some(origin), _) => origin.to_str().ok().and_then(origin_of),
            (None, Some(referer)) => referer.to_str().ok().and_then(origin_of),
            (None, None) if self.allowed_origins.is_empty() => return Ok(()),
            (None, None) => return Err("neither Origin nor Referer".into()),
        };
        let Some(origin) = origin else {
            return Err("an opaque or malformed Origin/Referer".into());
        };
        if self.allowed_origins.contains(&origin) || self.own_origins(headers).contains(&origin) {
            Ok(())
        } else {
            Err(format!("origin {origin} is not allowed"))
        }
    }

    /// This server's own origin(s) as the request names it: the `Host`
    /// (or a trusted `X-Forwarded-Host`) with https when `COOKIE_SECURE`
    /// says so (or a trusted `X-Forwarded-Proto`), else http or https.
    fn own_origins(&self, headers: &HeaderMap) -> Vec<String> {
        let forwarded = |name: &str| {
            self.trust_proxy_headers
                .then(|| last_value(headers, name))
                .flatten()
        };
        let Some(host) = forwarded("x-forwarded-host").or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        }) else {
            return Vec::new();
        };
        let schemes: &[&str] = match forwarded("x-forwarded-proto").as_deref() {
            Some("https") => &["https"],
            Some("http") => &["http"],
            _ if self.https => &["https"],
            _ => &["http", "https"],
        };
        schemes
            .iter()
            .filter_map(|scheme| origin_of(&format!("{scheme}://{host}")))
            .collect()
    }

    /// The client's address: the TCP peer, or with `TRUST_PROXY_HEADERS`
    /// the last `X-Forwarded-For` entry (the one our proxy appended; those
    /// before it are whatever the client claimed).
    pub fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        if self.trust_proxy_headers {
            if let Some(ip) = last_value(request.headers(), "x-forwarded-for").and_then(|v| {
                v.parse::<IpAddr>()
                    .ok()
                    .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
            }) {
                return Some(ip);
            }
        }
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        if peer.is_none() {
            static WARNED: Once = Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "no client address on the request (served without connect info): \
                     every client shares one rate limit"
                );
            });
        }
        peer
    }
}

/// The last comma-separated entry of the last `name` header.
fn last_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    (!last.is_empty()).then(|| last.to_string())
}

/// The origin (`scheme://host[:port]`, lower case, default port omitted)
/// of an `Origin` value or a URL; `None` for `null`, non-http(s) or
/// malformed values.
pub fn origin_of(url: &str) -> Option<String> {
    let uri: axum::http::Uri = url.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    match authority.port_u16() {
        Some(port) if port != default_port => Some(format!("{scheme}://{host}:{port}")),
        _ => Some(format!("{scheme}://{host}")),
    }
}

/// Refuses cookie-authenticated unsafe requests from other origins with
/// 403 `csrf_rejected`.
pub async fn csrf_guard(
    State(policy): State<Arc<Policy>>,
    request: Request,
    next: Next,
) -> Response {
    match policy.check_csrf(request.method(), request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            tracing::warn!(%reason, "cross-site request refused");
            metrics::counter!("kessai_csrf_rejected_total").increment(1);
            ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_rejected",
                "このリクエスト元からの操作は許可されていません",
            )
            .into_response()
        }
    }
}

/// Adds the security headers to every response (a handler's own value
/// wins): `nosniff`, `DENY` framing, no referrer, a CSP that allows
/// nothing (except on `/docs`, whose page loads its script from a CDN),
/// `no-store` on `/api`, and HSTS when served over https.
pub async fn security_headers(
    State(policy): State<Arc<Policy>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let is_docs = path == "/docs" || path.starts_with("/docs/");
    let is_api = path.starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: HeaderValue| {
        headers.entry(name).or_insert(value);
    };
    set(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    set(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    set(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !is_docs {
        set(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if is_api {
        set(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if policy.https {
        set(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// The limits on `POST /api/auth/login` and `/register`.
pub struct AuthRateLimits {
    policy: Arc<Policy>,
    per_address: Option<RateLimiter>,
    per_email: Option<RateLimiter>,
}

impl AuthRateLimits {
    pub fn new(settings: &SecuritySettings, policy: Arc<Policy>) -> Self {
        Self {
            policy,
            per_address: RateLimiter::per_minute(
                settings.auth_rate_limit_per_address,
                DEFAULT_MAX_KEYS,
            ),
            per_email: RateLimiter::per_minute(
                settings.auth_rate_limit_per_email,
                DEFAULT_MAX_KEYS,
            ),
        }
    }
}

#[derive(Deserialize)]
struct EmailField {
    email: String,
}

/// Counts an attempt against the client address, then (reading the JSON
/// body and putting it back) against the email; 429 `rate_limited` with
/// `Retry-After` when either is exhausted.
pub async fn limit_auth_attempts(
    State(limits): State<Arc<AuthRateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let now = Instant::now();
    if let Some(limiter) = &limits.per_address {
        let ip = limits.policy.client_ip(&request);
        if let Err(wait) = limiter.check(ip.map(address_key), now) {
            return too_many_requests(wait, "address");
        }
    }
    let Some(limiter) = &limits.per_email else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let bytes = match Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await {
        Ok(bytes) => bytes,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::payload_too_large().into_response()
        }
        Err(_) => return ApiError::validation("リクエストボディを読み取れません").into_response(),
    };
    // A body without a string `email` is the handler's 422 to give.
    if let Ok(EmailField { email }) = serde_json::from_slice(&bytes) {
        if let Err(wait) = limiter.check(email_key(&email), now) {
            return too_many_requests(wait, "email");
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

fn too_many_requests(wait: Duration, scope: &'static str) -> Response {
    let seconds = (wait.as_secs_f64().ceil() as u64).max(1);
    tracing::warn!(scope, retry_after = seconds, "auth attempts rate limited");
    metrics::counter!("kessai_rate_limited_total", "scope" => scope).increment(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "試行回数が多すぎます。しばらくしてから再度お試しください",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn policy(allowed: &[&str], https: bool, trust: bool) -> Policy {
        Policy::new(
            &SecuritySettings {
                allowed_origins: allowed.iter().map(ToString::to_string).collect(),
                trust_proxy_headers: trust,
                ..SecuritySettings::default()
            },
            https,
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    const COOKIE: (&str, &str) = ("cookie", "access_token=abc");
    const HOST: (&str, &str) = ("host", "shop.example:8000");

    #[test]
    fn origins_are_normalised() {
        assert_eq!(
            origin_of("HTTPS://Shop.Example:443").as_deref(),
            Some("https://shop.example")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8000/api/x?y=1").as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(
            origin_of("http://[::1]:80/").as_deref(),
            Some("http://[::1]")
        );
        for bad in [
            "null",
            "",
            "file:///etc",
            "https://user@shop.example",
            "/relative",
        ] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_unsafe_cookie_requests_are_checked() {
        let p = policy(&[], false, false);
        let foreign = ("origin", "https://evil.example");
        // Safe method, no cookie, Bearer, webhook: not checked.
        assert!(p
            .check_csrf(
                &Method::GET,
                "/api/orders",
                &headers(&[COOKIE, HOST, foreign])
            )
            .is_ok());
        assert!(p
            .check_csrf(&Method::POST, "/api/orders", &headers(&[HOST, foreign]))
            .is_ok());
        assert!(p
            .check_csrf(
                &Method::POST,
                "/api/orders",
                &headers(&[COOKIE, HOST, foreign, ("authorization", "Bearer t")])
            )
            .is_ok());
        assert!(p
            .check_csrf(
                &Method::POST,
                WEBHOOK_PATH,
                &headers(&[COOKIE, HOST, foreign])
            )
            .is_ok());
        // A cookie POST from elsewhere: refused.
        assert!(p
            .check_csrf(
                &Method::POST,
                "/api/orders",
                &headers(&[COOKIE, HOST, foreign])
            )
            .is_err());
        assert!(p
            .check_csrf(
                &Method::DELETE,
                "/api/orders/1",
                &headers(&[COOKIE, HOST, foreign])
            )
            .is_err());
    }

    #[test]
    fn same_origin_allowed_origins_and_referers_pass() {
        let p = policy(&["https://front.example"], false, false);
        let ok = |extra: (&str, &str)| {
            p.check_csrf(
                &Method::POST,
                "/api/orders",
                &headers(&[COOKIE, HOST, extra]),
            )
            .is_ok()
        };
        assert!(ok(("origin", "http://shop.example:8000")));
        assert!(ok(("origin", "https://front.example")));
        assert!(ok(("referer", "https://front.example/cart?x=1")));
        assert!(ok(("referer", "http://shop.example:8000/page")));
        assert!(!ok(("origin", "https://front.example.evil")));
        assert!(!ok(("origin", "http://shop.example:8001")));
        assert!(!ok(("origin", "null")));
        assert!(!ok(("referer", "https://evil.example/")));
    }

    #[test]
    fn no_origin_and_no_referer_is_a_non_browser_client_until_origins_are_configured() {
        let open = policy(&[], false, false);
        let closed = policy(&["https://front.example"], false, false);
        let h = headers(&[COOKIE, HOST]);
        assert!(open.check_csrf(&Method::POST, "/api/orders", &h).is_ok());
        assert!(closed.check_csrf(&Method::POST, "/api/orders", &h).is_err());
    }

    #[test]
    fn https_sites_accept_only_their_https_origin() {
        let p = policy(&[], true, false);
        let h = |origin: &str| headers(&[COOKIE, ("host", "shop.example"), ("origin", origin)]);
        assert!(p
            .check_csrf(&Method::POST, "/api/orders", &h("https://shop.example"))
            .is_ok());
        assert!(p
            .check_csrf(&Method::POST, "/api/orders", &h("http://shop.example"))
            .is_err());
    }

    #[test]
    fn forwarded_host_and_proto_count_only_when_trusted() {
        let h = headers(&[
            COOKIE,
            ("host", "10.0.0.5:8000"),
            ("x-forwarded-host", "shop.example"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://shop.example"),
        ]);
        assert!(policy(&[], false, true)
            .check_csrf(&Method::POST, "/api/orders", &h)
            .is_ok());
        assert!(policy(&[], false, false)
            .check_csrf(&Method::POST, "/api/orders", &h)
            .is_err());
    }

    #[test]
    fn the_client_address_is_the_peer_unless_proxies_are_trusted() {
        let request = || {
            let mut r = Request::new(axum::body::Body::empty());
            r.headers_mut().insert(
                "x-forwarded-for",
                HeaderValue::from_static("1.1.1.1, 203.0.113.9"),
            );
            r.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 4000))));
            r
        };
        assert_eq!(
            policy(&[], false, false).client_ip(&request()),
            Some(IpAddr::from([10, 0, 0, 1]))
        );
        assert_eq!(
            policy(&[], false, true).client_ip(&request()),
            Some(IpAddr::from([203, 0, 113, 9]))
        );
    }
}

//! Abuse resistance: rate limits on login/register, CSRF for cookie
//! sessions, CORS for configured origins, security headers.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, Backend, TestApp, PASSWORD};

async fn login(app: &TestApp, email: &str, password: &str) -> Response {
    app.post(
        "/api/auth/login",
        None,
        &json!({"email": email, "password": password}),
    )
    .await
}

/// Asserts a 429 `rate_limited` with a `Retry-After` of 1..=max seconds.
async fn assert_rate_limited(response: Response, max_seconds: u64) {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After on a 429")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(
        (1..=max_seconds).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn auth_attempts_are_limited_per_client_address() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("AUTH_RATE_LIMIT_PER_ADDRESS", "3"),
            ("AUTH_RATE_LIMIT_PER_EMAIL", "1000"),
        ],
    )
    .await;
    // Register and login share the address's budget, whatever the email.
    assert_eq!(
        app.register("a@example.jp").await.status(),
        StatusCode::CREATED
    );
    for email in ["b@example.jp", "c@example.jp"] {
        assert_eq!(
            login(&app, email, PASSWORD).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // 3 per minute: the next token comes in 20 s.
    assert_rate_limited(login(&app, "a@example.jp", PASSWORD).await, 20).await;
    assert_rate_limited(app.register("d@example.jp").await, 20).await;
    // Other endpoints are not limited.
    assert_eq!(
        app.get("/api/products", None).await.status(),
        StatusCode::OK
    );
    // Another client address (the TCP peer, from ConnectInfo) has its own
    // budget.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let response = elsewhere
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": "a@example.jp", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Three logins from `app.client` claiming `X-Forwarded-For: {forwarded}`:
/// the statuses.
async fn logins_forwarded_for(app: &TestApp, forwarded: &str) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = app
            .client
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"email": "x@example.jp", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    statuses
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let limits = [
        ("AUTH_RATE_LIMIT_PER_ADDRESS", "2"),
        ("AUTH_RATE_LIMIT_PER_EMAIL", "1000"),
    ];
    let limited = [
        StatusCode::UNAUTHORIZED,
        StatusCode::UNAUTHORIZED,
        StatusCode::TOO_MANY_REQUESTS,
    ];
    // Not trusted: a client cannot escape its limit by claiming addresses.
    let app = spawn_app_with(Backend::Sqlite, &limits).await;
    assert_eq!(logins_forwarded_for(&app, "198.51.100.1").await, limited);
    assert_eq!(
        logins_forwarded_for(&app, "198.51.100.2").await,
        [StatusCode::TOO_MANY_REQUESTS; 3]
    );
    // Trusted: the last entry (what our proxy appended) is the client.
    let mut vars = limits.to_vec();
    vars.push(("TRUST_PROXY_HEADERS", "true"));
    let app = spawn_app_with(Backend::Sqlite, &vars).await;
    assert_eq!(
        logins_forwarded_for(&app, "10.9.9.9, 198.51.100.1").await,
        limited
    );
    // A different forged first entry does not help; a different client does.
    assert_eq!(
        logins_forwarded_for(&app, "10.8.8.8, 198.51.100.1").await,
        [StatusCode::TOO_MANY_REQUESTS; 3]
    );
    assert_eq!(logins_forwarded_for(&app, "198.51.100.2").await, limited);
}

#[tokio::test]
async fn auth_attempts_are_limited_per_email_and_the_body_reaches_the_handler() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("AUTH_RATE_LIMIT_PER_ADDRESS", "1000"),
            ("AUTH_RATE_LIMIT_PER_EMAIL", "3"),
        ],
    )
    .await;
    assert_eq!(
        app.register("taro@example.jp").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        login(&app, "taro@example.jp", "wrong password")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // The middleware read the body and put it back: the handler logs in.
    let response = login(&app, "taro@example.jp", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The email is normalised as the domain does: the same account.
    assert_rate_limited(login(&app, "  Taro@EXAMPLE.jp ", PASSWORD).await, 20).await;
    // Another email from the same address is not affected.
    assert_eq!(
        login(&app, "hanako@example.jp", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A body the limiter cannot read an email from is the handler's 422.
    let response = app
        .post_raw("/api/auth/login", None, r#"{"email": 42}"#)
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_login_body_is_a_413_not_a_crash() {
    let app = spawn_app(Backend::Sqlite).await;
    let body = format!(
        r#"{{"email":"a@example.jp","password":"{}"}}"#,
        "x".repeat(100_000)
    );
    let response = app.post_raw("/api/auth/login", None, body).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

/// A cookie-authenticated `POST /api/orders` with the given extra headers.
async fn cookie_order(app: &TestApp, token: &str, headers: &[(&str, &str)]) -> Response {
    let product = app.product_ids().await[0];
    let mut request = app
        .client
        .post(app.url("/api/orders"))
        .header("cookie", format!("access_token={token}"))
        .json(&json!({"items": [{"product_id": product, "quantity": 1}]}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn cookie_requests_from_foreign_origins_are_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let user = app.new_user().await;
    for headers in [
        [("origin", "https://evil.example")],
        [("referer", "https://evil.example/attack.html")],
        [("origin", "null")],
    ] {
        let response = cookie_order(&app, &user.token, &headers).await;
        assert_problem(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
    }
    // Logging out someone from another site is refused too.
    let response = app
        .client
        .post(app.url("/api/auth/logout"))
        .header("cookie", format!("access_token={}", user.token))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
    // Nothing was created.
    let orders: Value = app
        .get("/api/orders", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(orders["orders"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn same_origin_bearer_non_browser_and_webhook_requests_pass() {
    let app = spawn_app(Backend::Sqlite).await;
    let user = app.new_user().await;
    // Same origin, by Origin or by Referer.
    let own_referer = format!("{}/shop/cart", app.address);
    for headers in [
        vec![("origin", app.address.as_str())],
        vec![("referer", own_referer.as_str())],
        // No Origin and no Referer: curl with a cookie jar (the README).
        vec![],
    ] {
        let response = cookie_order(&app, &user.token, &headers).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{headers:?}");
    }
    // Bearer: no cookie is used, so no CSRF check.
    let product = app.product_ids().await[0];
    let response = app
        .client
        .post(app.url("/api/orders"))
        .bearer_auth(&user.token)
        .header("cookie", format!("access_token={}", user.token))
        .header("origin", "https://evil.example")
        .json(&json!({"items": [{"product_id": product, "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // The webhook is exempt: it answers for its signature, not its origin.
    let response = app
        .client
        .post(app.url("/api/payments/webhook"))
        .header("cookie", format!("access_token={}", user.token))
        .header("origin", "https://evil.example")
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid_signature").await;
}

const FRONTEND: &str = "https://shop.example";

#[tokio::test]
async fn allowed_origins_may_use_the_cookie_and_others_may_not() {
    let app = spawn_app_with(Backend::Sqlite, &[("ALLOWED_ORIGINS", FRONTEND)]).await;
    let user = app.new_user().await;
    for (headers, allowed) in [
        (vec![("origin", FRONTEND)], true),
        (vec![("origin", app.address.as_str())], true),
        (vec![("origin", "https://evil.example")], false),
        (vec![("origin", "https://shop.example.evil.example")], false),
        // With origins configured, a cookie request must say where it is from.
        (vec![], false),
    ] {
        let response = cookie_order(&app, &user.token, &headers).await;
        if allowed {
            assert_eq!(response.status(), StatusCode::CREATED, "{headers:?}");
        } else {
            assert_problem(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
        }
    }
}

#[tokio::test]
async fn cors_preflight_is_answered_for_allowed_origins_only() {
    let app = spawn_app_with(Backend::Sqlite, &[("ALLOWED_ORIGINS", FRONTEND)]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/orders"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let response = preflight(FRONTEND).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], FRONTEND);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed_headers = h["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed_headers.contains("content-type"),
        "{allowed_headers}"
    );

    let response = preflight("https://evil.example").await.unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    // A simple request from the frontend may read the response and its
    // request id.
    let response = app
        .client
        .get(app.url("/api/products"))
        .header("origin", FRONTEND)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], FRONTEND);
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

#[tokio::test]
async fn without_allowed_origins_there_is_no_cors() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app
        .client
        .get(app.url("/api/products"))
        .header("origin", FRONTEND)
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in [
        "/api/products",
        "/api/orders",
        "/api/nothing-here",
        "/healthz",
    ] {
        let response = app.get(path, None).await;
        assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&response, "x-frame-options"), Some("DENY"));
        assert_eq!(header(&response, "referrer-policy"), Some("no-referrer"));
        assert_eq!(
            header(&response, "content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{path}"
        );
        let no_store = header(&response, "cache-control") == Some("no-store");
        assert_eq!(no_store, path.starts_with("/api/"), "{path}");
        // Plain http unless COOKIE_SECURE says otherwise.
        assert_eq!(header(&response, "strict-transport-security"), None);
    }
    // Problem responses carry them too.
    let response = app.post_raw("/api/auth/login", None, "{").await;
    assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn the_docs_page_keeps_working_without_the_api_csp() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app.get("/docs", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-security-policy"), None);
    assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
    let html = response.text().await.unwrap();
    assert!(html.contains("<script"), "{html}");
}

#[tokio::test]
async fn hsts_is_sent_when_cookies_are_secure() {
    let app = spawn_app_with(Backend::Sqlite, &[("COOKIE_SECURE", "true")]).await;
    let response = app.get("/api/products", None).await;
    let hsts = header(&response, "strict-transport-security").unwrap();
    assert!(hsts.starts_with("max-age="), "{hsts}");
}

#[tokio::test]
async fn the_openapi_document_lists_the_new_answers() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let login = &doc["paths"]["/api/auth/login"]["post"]["responses"];
    assert!(
        login["429"]["headers"]["Retry-After"].is_object(),
        "{login}"
    );
    assert!(doc["paths"]["/api/auth/register"]["post"]["responses"]["429"].is_object());
    assert!(doc["paths"]["/api/orders"]["post"]["responses"]["403"].is_object());
}

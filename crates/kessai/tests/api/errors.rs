use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_problem, TestApp};
use crate::on_both_backends;

/// Bodies a careless or hostile client might send.
const MALFORMED: &[&str] = &[
    "",
    "{",
    "null",
    "[]",
    "\"text\"",
    "{\"email\": }",
    "{\"email\": \"a@b.jp\", \"password\": null}",
    "{\"items\": [{\"product_id\": 9223372036854775808, \"quantity\": 1}]}",
    "{\"items\": [{\"product_id\": 1, \"quantity\": 1e3}]}",
    "\u{feff}{}",
    "\u{0}",
];

async fn malformed_bodies_get_problem_json_never_5xx(app: TestApp) {
    let user = app.new_user().await;
    for path in ["/api/auth/register", "/api/auth/login", "/api/orders"] {
        for body in MALFORMED {
            let response = app.post_raw(path, Some(&user.token), *body).await;
            assert!(
                response.status().is_client_error(),
                "{path} {body:?} → {}",
                response.status()
            );
            assert_problem(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
            )
            .await;
        }
    }
}

async fn oversized_bodies_are_refused(app: TestApp) {
    let huge = format!(
        "{{\"email\": \"{}@example.jp\", \"password\": \"x\"}}",
        "a".repeat(100 * 1024)
    );
    let response = app.post_raw("/api/auth/register", None, huge).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

async fn unknown_routes_and_methods_are_problems(app: TestApp) {
    assert_problem(
        app.get("/api/nothing-here", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let delete = app
        .client
        .delete(app.url("/api/products"))
        .send()
        .await
        .unwrap();
    assert_problem(delete, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

async fn every_response_carries_a_request_id(app: TestApp) {
    for response in [
        app.get("/healthz", None).await,
        app.get("/api/auth/me", None).await,
        app.get("/missing", None).await,
    ] {
        let id = response
            .headers()
            .get("x-request-id")
            .expect("x-request-id");
        assert!(!id.is_empty());
    }
    // A caller's own request id is kept, so logs on both sides line up.
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "caller-chosen-id");
}

async fn error_bodies_leak_nothing(app: TestApp) {
    let user = app.new_user().await;
    let responses = vec![
        app.post_raw("/api/orders", Some(&user.token), "{").await,
        app.get("/api/orders/1", Some("x.y.z")).await,
        app.get("/api/orders/99999999999999999999", Some(&user.token))
            .await,
    ];
    for response in responses {
        let body: Value = response.json().await.unwrap();
        let text = body.to_string().to_lowercase();
        for needle in [
            "select ",
            "sqlx",
            "panicked",
            "backtrace",
            "test-secret",
            "src/",
        ] {
            assert!(!text.contains(needle), "{needle} in {text}");
        }
        assert!(
            body["detail"].is_string() && body["code"].is_string(),
            "{body}"
        );
    }
}

on_both_backends!(
    malformed_bodies_get_problem_json_never_5xx,
    oversized_bodies_are_refused,
    unknown_routes_and_methods_are_problems,
    every_response_carries_a_request_id,
    error_bodies_leak_nothing,
);

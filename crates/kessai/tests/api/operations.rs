use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_backends;

async fn health_and_readiness(app: TestApp) {
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["database"], "ok");
}

async fn the_openapi_document_covers_the_contract(app: TestApp) {
    let response = app.get("/openapi.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/logout", "post"),
        ("/api/auth/me", "get"),
        ("/api/products", "get"),
        ("/api/orders", "post"),
        ("/api/orders", "get"),
        ("/api/orders/{id}", "get"),
        ("/api/orders/{id}/cancel", "post"),
        ("/api/payments/intent", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    let docs = app.get("/docs", None).await;
    assert_eq!(docs.status(), StatusCode::OK);
}

/// What scripts/schemathesis.sh relies on: the limits the server enforces
/// are in the request schemas (so generated valid data is accepted), and
/// every operation documents the opaque 500.
async fn the_openapi_document_states_the_input_limits(app: TestApp) {
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    let register = &schemas["RegisterRequest"]["properties"];
    assert_eq!(register["password"]["minLength"], 8);
    assert_eq!(register["password"]["maxLength"], 128);
    assert_eq!(register["email"]["maxLength"], 254);
    assert!(register["email"]["pattern"].is_string());
    let order = &schemas["CreateOrderRequest"]["properties"];
    assert_eq!(order["items"]["minItems"], 1);
    assert_eq!(order["items"]["maxItems"], 50);
    assert_eq!(order["notes"]["maxLength"], 1000);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"].get("500").is_some(),
                "{method} {path} does not document 500"
            );
        }
    }
    let internal = &doc["components"]["responses"]["InternalError"]["content"];
    assert!(
        internal.get("application/problem+json").is_some(),
        "{internal}"
    );
}

on_both_backends!(
    health_and_readiness,
    the_openapi_document_covers_the_contract,
    the_openapi_document_states_the_input_limits
);

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app(Backend::Postgres).await;
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    // Drop the test's database from under the running server.
    let name = app.database.url.rsplit('/').next().unwrap().to_string();
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&test_support::postgres_server_url())
            .await
            .unwrap();
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    let response = app.get("/readyz", None).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["database"], "unreachable");
    // Other endpoints fail closed, with an opaque problem, not a hang or a leak.
    let products = app.get("/api/products", None).await;
    assert_eq!(products.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let problem: Value = products.json().await.unwrap();
    assert_eq!(problem["code"], "internal_error");
    assert!(!problem.to_string().contains(&name));
}

use axum::http::StatusCode;
use base64::Engine;

use crate::helpers::{spawn, SECRET_KEY};

#[tokio::test]
async fn missing_or_wrong_keys_are_401_without_echoing_the_key() {
    let em = spawn().await;
    let none = em.http.get(em.url("/v1/events")).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    assert!(none.headers().get("request-id").is_some());
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("You did not provide an API key"));

    let wrong_key = "sk_test_thisIsNotTheRightKeyAtAll9876";
    let wrong = em
        .http
        .get(em.url("/v1/events"))
        .bearer_auth(wrong_key)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let body: serde_json::Value = wrong.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Invalid API Key provided: sk_test_"),
        "{message}"
    );
    assert!(message.ends_with("9876"), "{message}");
    assert!(!message.contains("thisIsNotTheRightKey"), "{message}");

    let garbage = em
        .http
        .get(em.url("/v1/events"))
        .header("authorization", "Token abc")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status().as_u16(), 401);
}

#[tokio::test]
async fn bearer_and_basic_auth_both_work() {
    let em = spawn().await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SECRET_KEY}:"));
    let answer = em
        .http
        .get(em.url("/v1/events"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let answer = em.get("/v1/events").await;
    assert_eq!(answer.status, StatusCode::OK);
    let request_id = answer.header("request-id").unwrap();
    assert!(request_id.starts_with("req_"), "{request_id}");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_stripe_errors() {
    let em = spawn().await;
    let answer = em.get("/v1/nothing_here").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Unrecognized request URL (GET: /v1/nothing_here)"));
    let answer = em
        .http
        .delete(em.url("/v1/customers/cus_x"))
        .bearer_auth(SECRET_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 404);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

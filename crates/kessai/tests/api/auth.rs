use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app_with, Backend, TestApp, PASSWORD};
use crate::on_both_backends;

async fn register_creates_a_user_and_signs_it_in(app: TestApp) {
    let response = app.register("  Hanako@Example.JP ").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("access_token="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], "hanako@example.jp");
    assert!(body["user_id"].as_i64().unwrap() > 0);
    assert!(body["message"].as_str().is_some());

    let me: Value = app
        .get("/api/auth/me", body["access_token"].as_str())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user_id"], body["user_id"]);
    assert_eq!(me["email"], "hanako@example.jp");
    assert_eq!(me["name"], "テスト 太郎");
    assert!(me.as_object().unwrap().contains_key("stripe_customer_id"));
}

async fn registering_an_email_twice_is_a_conflict(app: TestApp) {
    assert_eq!(
        app.register("dup@example.jp").await.status(),
        StatusCode::CREATED
    );
    // Same address in another case is the same address.
    let response = app.register("DUP@example.jp").await;
    assert_problem(response, StatusCode::CONFLICT, "email_already_exists").await;
}

async fn invalid_registrations_are_rejected(app: TestApp) {
    for body in [
        json!({"email": "not-an-email", "password": PASSWORD}),
        json!({"email": "a@example.jp", "password": "short"}),
        json!({"email": "a@example.jp"}),
        json!({"password": PASSWORD}),
        json!({"email": "a@example.jp", "password": PASSWORD, "role": "admin"}),
        json!({"email": 42, "password": PASSWORD}),
        json!({"email": "a@example.jp", "password": PASSWORD, "name": "x".repeat(101)}),
        json!([]),
    ] {
        let response = app.post("/api/auth/register", None, &body).await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
    }
}

async fn login_returns_a_working_token(app: TestApp) {
    let user = app.new_user().await;
    let response = app
        .post(
            "/api/auth/login",
            None,
            &json!({"email": user.email.to_uppercase(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("access_token="));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user_id"], user.id);
    assert!(body["message"].as_str().is_some());
    let token = body["access_token"].as_str().unwrap();
    assert_ne!(token, user.token, "each login opens its own session");
    let me = app.get("/api/auth/me", Some(token)).await;
    assert_eq!(me.status(), StatusCode::OK);
}

async fn wrong_credentials_are_rejected_alike(app: TestApp) {
    let user = app.new_user().await;
    let wrong_password = app
        .post(
            "/api/auth/login",
            None,
            &json!({"email": user.email, "password": "wrong password"}),
        )
        .await;
    let a = assert_problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown_email = app
        .post(
            "/api/auth/login",
            None,
            &json!({"email": "nobody@example.jp", "password": PASSWORD}),
        )
        .await;
    let b = assert_problem(
        unknown_email,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    // Nothing in the answer tells the two apart.
    assert_eq!(a, b);
}

async fn me_requires_a_valid_token(app: TestApp) {
    assert_problem(
        app.get("/api/auth/me", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_problem(
        app.get("/api/auth/me", Some("garbage")).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let user = app.new_user().await;
    let forged = format!("{}x", user.token);
    assert_problem(
        app.get("/api/auth/me", Some(&forged)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
}

async fn logout_revokes_the_token_and_clears_the_cookie(app: TestApp) {
    let user = app.new_user().await;
    let response = app
        .post("/api/auth/logout", Some(&user.token), &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("access_token=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert_problem(
        app.get("/api/auth/me", Some(&user.token)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    // Logging out again is harmless.
    let again = app
        .post("/api/auth/logout", Some(&user.token), &json!({}))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
}

async fn the_cookie_alone_authenticates(app: TestApp) {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let registered = browser
        .post(app.url("/api/auth/register"))
        .json(&json!({"email": "cookie@example.jp", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let me = browser.get(app.url("/api/auth/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let logout = browser
        .post(app.url("/api/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::OK);
    let after = browser.get(app.url("/api/auth/me")).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

on_both_backends!(
    register_creates_a_user_and_signs_it_in,
    registering_an_email_twice_is_a_conflict,
    invalid_registrations_are_rejected,
    login_returns_a_working_token,
    wrong_credentials_are_rejected_alike,
    me_requires_a_valid_token,
    logout_revokes_the_token_and_clears_the_cookie,
    the_cookie_alone_authenticates,
);

#[tokio::test]
async fn cookies_are_secure_when_configured() {
    let app = spawn_app_with(Backend::Sqlite, &[("COOKIE_SECURE", "true")]).await;
    let response = app.register("secure@example.jp").await;
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn token_lifetime_follows_configuration() {
    // Expiry itself is unit-tested (token and use case); here we check the
    // configured lifetime reaches the token the server mints.
    let app = spawn_app_with(Backend::Sqlite, &[("ACCESS_TOKEN_TTL_SECONDS", "60")]).await;
    let user = app.new_user().await;
    let expires: i64 = user.token.split('.').nth(1).unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (55..=61).contains(&(expires - now)),
        "expires in {}",
        expires - now
    );
}

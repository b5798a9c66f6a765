use axum::http::StatusCode;

use crate::helpers::spawn;

#[tokio::test]
async fn same_key_same_parameters_replays_the_first_answer() {
    let em = spawn().await;
    let form = [
        ("email", "taro@example.jp"),
        ("metadata[kessai_user_id]", "7"),
    ];
    let first = em
        .post_with("/v1/customers", &form, Some("kessai-user-7-customer"))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.header("idempotent-replayed").is_none());
    // Parameter order does not matter.
    let reordered = [form[1], form[0]];
    let second = em
        .post_with("/v1/customers", &reordered, Some("kessai-user-7-customer"))
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        second.header("original-request"),
        first.header("request-id")
    );
    assert_ne!(second.header("request-id"), first.header("request-id"));
    assert_eq!(em.event_types(), vec!["customer.created"]);

    // Another key creates another customer.
    let third = em
        .post_with("/v1/customers", &form, Some("another-key"))
        .await;
    assert_ne!(third.body["id"], first.body["id"]);
}

#[tokio::test]
async fn same_key_other_parameters_or_endpoint_is_an_idempotency_error() {
    let em = spawn().await;
    let key = Some("kessai-order-1-intent-v1");
    let first = em
        .post_with(
            "/v1/payment_intents",
            &[("amount", "16500"), ("currency", "jpy")],
            key,
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let other = em
        .post_with(
            "/v1/payment_intents",
            &[("amount", "17000"), ("currency", "jpy")],
            key,
        )
        .await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert_eq!(other.body["error"]["type"], "idempotency_error");
    assert!(other.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("same parameters"));
    let elsewhere = em.post_with("/v1/customers", &[], key).await;
    assert_eq!(elsewhere.status, StatusCode::BAD_REQUEST);
    assert_eq!(elsewhere.body["error"]["type"], "idempotency_error");
    assert_eq!(em.event_types(), vec!["payment_intent.created"]);
    let too_long = "k".repeat(256);
    let answer = em.post_with("/v1/customers", &[], Some(&too_long)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_declined_confirm_is_replayed_not_retried() {
    let em = spawn().await;
    let pi = em.intent("1000", "jpy").await;
    let path = format!("/v1/payment_intents/{}/confirm", pi["id"].as_str().unwrap());
    let form = [("payment_method", "pm_card_chargeDeclined")];
    let first = em.post_with(&path, &form, Some("confirm-1")).await;
    assert_eq!(first.status, StatusCode::PAYMENT_REQUIRED);
    let events = em.emulator.events().len();
    let replay = em.post_with(&path, &form, Some("confirm-1")).await;
    assert_eq!(replay.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(em.emulator.events().len(), events);
}

#[tokio::test]
async fn validation_errors_are_not_saved() {
    let em = spawn().await;
    let key = Some("retry-after-fix");
    let bad = em
        .post_with(
            "/v1/payment_intents",
            &[("amount", "16500"), ("currency", "jpy"), ("colour", "red")],
            key,
        )
        .await;
    assert_eq!(bad.error_code(), "parameter_unknown");
    let good = em
        .post_with(
            "/v1/payment_intents",
            &[("amount", "16500"), ("currency", "jpy")],
            key,
        )
        .await;
    assert_eq!(good.status, StatusCode::OK);
    assert!(good.header("idempotent-replayed").is_none());
}

#[tokio::test]
async fn keys_on_gets_are_ignored_and_keys_are_per_api_key() {
    let em = spawn().await;
    let pi = em.intent("1000", "jpy").await;
    let id = pi["id"].as_str().unwrap();
    let secret = pi["client_secret"].as_str().unwrap();
    // The same key under the client secret is another namespace.
    em.post_with("/v1/customers", &[], Some("shared-key")).await;
    let public = em
        .http
        .post(em.url(&format!("/v1/payment_intents/{id}/confirm")))
        .header("Idempotency-Key", "shared-key")
        .form(&[
            ("payment_method", "pm_card_visa"),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(public.status().as_u16(), 200);
    let get = em
        .http
        .get(em.url(&format!("/v1/payment_intents/{id}")))
        .bearer_auth(crate::helpers::SECRET_KEY)
        .header("Idempotency-Key", "shared-key")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 200);
    assert!(get.headers().get("idempotent-replayed").is_none());
}

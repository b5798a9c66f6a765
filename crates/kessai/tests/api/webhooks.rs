//! POST /api/payments/webhook through the real router: signatures,
//! exactly-once, forward-only, and localstripe delivering for real.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, stripe_signature, unix_now, TestApp, TestUser, ROTATED_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
};
use crate::payments::{intent, pay_at_stripe, two_block_order};
use crate::with_localstripe_on_both_backends;

/// A Stripe event about a PaymentIntent, shaped as Stripe sends it.
fn intent_event(
    event_id: &str,
    kind: &str,
    intent_id: &str,
    order_id: &Value,
    amount: i64,
    status: &str,
) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": unix_now(),
        "type": kind,
        "livemode": false,
        "data": {"object": {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "currency": "jpy",
            "status": status,
            "metadata": {"order_id": order_id.to_string()},
            "last_payment_error": if status == "requires_payment_method" {
                json!({"code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."})
            } else { Value::Null },
        }}
    })
    .to_string()
}

async fn deliver(app: &TestApp, payload: &str, signature: Option<String>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/payments/webhook"))
        .header("content-type", "application/json")
        .body(payload.to_string());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    request.send().await.unwrap()
}

async fn deliver_signed(app: &TestApp, payload: &str) -> Value {
    let response = deliver(
        app,
        payload,
        Some(stripe_signature(WEBHOOK_SECRET, unix_now(), payload)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["received"], true);
    body
}

async fn order_json(app: &TestApp, user: &TestUser, order: &Value) -> Value {
    app.get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap()
}

/// A user with an order that has a PaymentIntent at localstripe.
async fn awaiting_order(app: &TestApp) -> (TestUser, Value, String) {
    let user = app.new_user().await;
    let order = two_block_order(app, &user).await;
    let body: Value = intent(app, &user, &order).await.json().await.unwrap();
    let intent_id = body["payment_intent_id"].as_str().unwrap().to_string();
    (user, order, intent_id)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", crate::helpers::uuid_like().replace('-', ""))
}

async fn signatures_are_checked_and_rotation_works(app: TestApp) {
    let (_, order, intent_id) = awaiting_order(&app).await;
    let payload = intent_event(
        &unique("evt"),
        "payment_intent.processing",
        &intent_id,
        &order["id"],
        16500,
        "processing",
    );
    let now = unix_now();
    let cases = [
        ("no header", None),
        (
            "wrong secret",
            Some(stripe_signature("whsec_somebody_else", now, &payload)),
        ),
        (
            "stale timestamp",
            Some(stripe_signature(WEBHOOK_SECRET, now - 301, &payload)),
        ),
        (
            "future timestamp",
            Some(stripe_signature(WEBHOOK_SECRET, now + 301, &payload)),
        ),
        ("garbled", Some("t=now,v1=zz".to_string())),
        (
            "signed other bytes",
            Some(stripe_signature(
                WEBHOOK_SECRET,
                now,
                &format!("{payload} "),
            )),
        ),
    ];
    for (name, header) in cases {
        let response = deliver(&app, &payload, header).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_signature").await;
    }
    // The secret being rotated in is accepted too.
    let rotated = deliver(
        &app,
        &payload,
        Some(stripe_signature(ROTATED_WEBHOOK_SECRET, now, &payload)),
    )
    .await;
    assert_eq!(rotated.status(), StatusCode::OK);
}

async fn signed_garbage_is_an_invalid_payload(app: TestApp) {
    for payload in [
        "{}",
        "[]",
        "not json",
        r#"{"id":"cus_1","object":"customer"}"#,
    ] {
        let response = deliver(
            &app,
            payload,
            Some(stripe_signature(WEBHOOK_SECRET, unix_now(), payload)),
        )
        .await;
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_payload").await;
    }
}

async fn ten_concurrent_deliveries_apply_once(app: TestApp) {
    let (user, order, intent_id) = awaiting_order(&app).await;
    let payload = intent_event(
        &unique("evt"),
        "payment_intent.succeeded",
        &intent_id,
        &order["id"],
        16500,
        "succeeded",
    );
    let deliveries = (0..10).map(|_| deliver_signed(&app, &payload));
    let outcomes: Vec<String> = futures::future::join_all(deliveries)
        .await
        .into_iter()
        .map(|body| body["outcome"].as_str().unwrap().to_string())
        .collect();
    println!("10 concurrent deliveries → {outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| *o == "applied").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "duplicate").count(),
        9,
        "{outcomes:?}"
    );
    let paid = order_json(&app, &user, &order).await;
    assert_eq!(paid["status"], "paid");
    // Later deliveries change nothing either.
    let again = deliver_signed(&app, &payload).await;
    assert_eq!(again["outcome"], "duplicate");
    assert_eq!(order_json(&app, &user, &order).await, paid);
}

async fn a_late_failure_never_unpays_an_order(app: TestApp) {
    let (user, order, intent_id) = awaiting_order(&app).await;
    let succeeded = intent_event(
        &unique("evt"),
        "payment_intent.succeeded",
        &intent_id,
        &order["id"],
        16500,
        "succeeded",
    );
    let failed = intent_event(
        &unique("evt"),
        "payment_intent.payment_failed",
        &intent_id,
        &order["id"],
        16500,
        "requires_payment_method",
    );
    assert_eq!(deliver_signed(&app, &succeeded).await["outcome"], "applied");
    assert_eq!(deliver_signed(&app, &failed).await["outcome"], "ignored");
    let stored = order_json(&app, &user, &order).await;
    assert_eq!(stored["status"], "paid");
    assert_eq!(stored["last_payment_error"], Value::Null);
}

async fn a_failure_keeps_the_order_payable_with_its_error(app: TestApp) {
    let (user, order, intent_id) = awaiting_order(&app).await;
    let failed = intent_event(
        &unique("evt"),
        "payment_intent.payment_failed",
        &intent_id,
        &order["id"],
        16500,
        "requires_payment_method",
    );
    assert_eq!(deliver_signed(&app, &failed).await["outcome"], "applied");
    let stored = order_json(&app, &user, &order).await;
    assert_eq!(stored["status"], "awaiting_payment");
    assert_eq!(stored["last_payment_error"]["code"], "insufficient_funds");
    assert_eq!(
        stored["last_payment_error"]["message"],
        "Your card has insufficient funds."
    );
}

async fn a_wrong_amount_never_pays_the_order(app: TestApp) {
    let (user, order, intent_id) = awaiting_order(&app).await;
    // Stripe (asked again on doubt) still says 16500 for this intent, but
    // unpaid; the event claims 100 yen succeeded.
    let wrong = intent_event(
        &unique("evt"),
        "payment_intent.succeeded",
        &intent_id,
        &order["id"],
        100,
        "succeeded",
    );
    assert_eq!(deliver_signed(&app, &wrong).await["outcome"], "mismatch");
    let stored = order_json(&app, &user, &order).await;
    assert_eq!(stored["status"], "awaiting_payment");
    assert_eq!(stored["paid_at"], Value::Null);
}

async fn events_for_other_integrations_and_unknown_types_get_200(app: TestApp) {
    let foreign = intent_event(
        &unique("evt"),
        "payment_intent.succeeded",
        "pi_not_ours_at_all",
        &json!(987_654),
        500,
        "succeeded",
    );
    assert_eq!(deliver_signed(&app, &foreign).await["outcome"], "foreign");
    let unknown = json!({"id": unique("evt"), "object": "event", "type": "invoice.paid", "created": unix_now(), "data": {"object": {"id": "in_1", "object": "invoice"}}}).to_string();
    assert_eq!(deliver_signed(&app, &unknown).await["outcome"], "ignored");
}

async fn refunds_add_up_and_a_full_refund_ends_the_order(app: TestApp) {
    let (user, order, intent_id) = awaiting_order(&app).await;
    let succeeded = intent_event(
        &unique("evt"),
        "payment_intent.succeeded",
        &intent_id,
        &order["id"],
        16500,
        "succeeded",
    );
    assert_eq!(deliver_signed(&app, &succeeded).await["outcome"], "applied");
    let refund = |refunded: i64| {
        json!({"id": unique("evt"), "object": "event", "type": "charge.refunded", "created": unix_now(),
            "data": {"object": {"id": "ch_test", "object": "charge", "amount": 16500, "amount_refunded": refunded,
            "currency": "jpy", "payment_intent": intent_id, "refunded": refunded == 16500}}})
        .to_string()
    };
    assert_eq!(
        deliver_signed(&app, &refund(6500)).await["outcome"],
        "applied"
    );
    let partial = order_json(&app, &user, &order).await;
    assert_eq!(partial["refunded_amount"], 6500);
    assert_eq!(partial["status"], "paid");
    // An older running total arriving late changes nothing.
    assert_eq!(
        deliver_signed(&app, &refund(1000)).await["outcome"],
        "ignored"
    );
    assert_eq!(
        deliver_signed(&app, &refund(16500)).await["outcome"],
        "applied"
    );
    let full = order_json(&app, &user, &order).await;
    assert_eq!(full["refunded_amount"], 16500);
    assert_eq!(full["status"], "refunded");
}

/// localstripe confirms a real payment and delivers its own signed
/// `payment_intent.succeeded` to kessai, which marks the order paid.
async fn a_real_confirm_at_localstripe_pays_the_order_through_its_webhook(app: TestApp) {
    let base = test_support::localstripe_url();
    let name = unique("kessai");
    let registered = reqwest::Client::new()
        .post(format!("{base}/_config/webhooks/{name}"))
        .form(&[
            ("url", app.url("/api/payments/webhook")),
            ("secret", WEBHOOK_SECRET.to_string()),
            ("events[]", "payment_intent.succeeded".to_string()),
            ("events[]", "payment_intent.payment_failed".to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert!(registered.status().is_success(), "{}", registered.status());

    let (user, order, intent_id) = awaiting_order(&app).await;
    pay_at_stripe(&intent_id).await;
    // localstripe delivers about a second later, once.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stored = order_json(&app, &user, &order).await;
        if stored["status"] == "paid" {
            assert!(stored["paid_at"].as_str().is_some());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook never paid the order: {stored}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

with_localstripe_on_both_backends!(
    signatures_are_checked_and_rotation_works,
    signed_garbage_is_an_invalid_payload,
    ten_concurrent_deliveries_apply_once,
    a_late_failure_never_unpays_an_order,
    a_failure_keeps_the_order_payable_with_its_error,
    a_wrong_amount_never_pays_the_order,
    events_for_other_integrations_and_unknown_types_get_200,
    refunds_add_up_and_a_full_refund_ends_the_order,
    a_real_confirm_at_localstripe_pays_the_order_through_its_webhook,
);

/// After commit, the outbox announces the payment (the webhook request
/// itself only wrote rows), and `kessai events replay` reprocesses a stored
/// event without changing anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_announces_payments_and_events_can_be_replayed() {
    let app = crate::helpers::spawn_app_with_localstripe(crate::helpers::Backend::Sqlite).await;
    let (user, order, intent_id) = awaiting_order(&app).await;
    let event_id = unique("evt");
    let succeeded = intent_event(
        &event_id,
        "payment_intent.succeeded",
        &intent_id,
        &order["id"],
        16500,
        "succeeded",
    );
    assert_eq!(deliver_signed(&app, &succeeded).await["outcome"], "applied");

    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&app.database.url)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT topic, dispatched_at FROM outbox")
                .fetch_all(&mut db)
                .await
                .unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].0, "order_paid");
        if rows[0].1.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox was never dispatched"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (outcome,): (String,) = sqlx::query_as("SELECT outcome FROM webhook_events WHERE id = $1")
        .bind(&event_id)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(outcome, "applied");

    let before = order_json(&app, &user, &order).await;
    let replay = std::process::Command::new(env!("CARGO_BIN_EXE_kessai"))
        .args(["events", "replay", &event_id])
        .env("DATABASE_URL", &app.database.url)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&replay.stdout).trim(),
        format!("{event_id}: ignored")
    );
    assert_eq!(order_json(&app, &user, &order).await, before);

    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_kessai"))
        .args(["events", "replay", "evt_never_received"])
        .env("DATABASE_URL", &app.database.url)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("evt_never_received"));
}

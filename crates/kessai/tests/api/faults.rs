//! The whole app against a misbehaving Stripe (the embedded emulator with
//! faults): 500s and 429s on API calls, webhooks duplicated and reordered,
//! or not delivered at all. Every order must end right.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TestApp, TestUser};
use crate::payments::two_block_order;

/// Calls `f` until it answers something other than a provider failure
/// (as a customer pressing "pay" again would).
async fn until_not_failing<F, Fut>(mut f: F) -> reqwest::Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    for _ in 0..20 {
        // A connection the emulator dropped is a failure like any other.
        let Ok(response) = f().await else { continue };
        let status = response.status();
        if status != StatusCode::BAD_GATEWAY
            && status != StatusCode::INTERNAL_SERVER_ERROR
            && status != StatusCode::TOO_MANY_REQUESTS
        {
            return response;
        }
    }
    panic!("still failing after 20 tries");
}

async fn pay(app: &TestApp, user: &TestUser, order: &Value) {
    let body = json!({"order_id": order["id"]});
    let intent: Value = until_not_failing(|| async {
        Ok(app
            .post("/api/payments/intent", Some(&user.token), &body)
            .await)
    })
    .await
    .json()
    .await
    .unwrap();
    let id = intent["payment_intent_id"].as_str().unwrap().to_string();
    let secret = intent["client_secret"].as_str().unwrap().to_string();
    // Stripe.js confirming with the test Visa card; a dropped connection
    // or an injected 500 happened before any work, so trying again is safe.
    let confirmed = until_not_failing(|| {
        app.client
            .post(app.url(&format!("/_stripe/v1/payment_intents/{id}/confirm")))
            .form(&[
                ("payment_method", "pm_card_visa"),
                ("client_secret", secret.as_str()),
            ])
            .send()
    })
    .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
}

async fn wait_until_paid(app: &TestApp, user: &TestUser, order: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current: Value = app
            .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
            .await
            .json()
            .await
            .unwrap();
        if current["status"] == "paid" {
            return current;
        }
        assert!(Instant::now() < deadline, "never paid: {current}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Per order: PaymentIntents created, succeeded events applied, payment
/// notifications queued.
async fn ledger(app: &TestApp, backend: Backend, order_id: i64) -> (i64, i64, i64) {
    let sql_attempts = "SELECT payment_attempts FROM orders WHERE id = $1";
    let sql_applied = "SELECT COUNT(*) FROM webhook_events WHERE order_id = $1 \
                       AND type = 'payment_intent.succeeded' AND outcome = 'applied'";
    let sql_outbox = "SELECT COUNT(*) FROM outbox WHERE order_id = $1 AND topic = 'order_paid'";
    match backend {
        Backend::Sqlite => {
            let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&app.database.url)
                .await
                .unwrap();
            let a: i64 = sqlx::query_scalar(sql_attempts)
                .bind(order_id)
                .fetch_one(&mut db)
                .await
                .unwrap();
            let b: i64 = sqlx::query_scalar(sql_applied)
                .bind(order_id)
                .fetch_one(&mut db)
                .await
                .unwrap();
            let c: i64 = sqlx::query_scalar(sql_outbox)
                .bind(order_id)
                .fetch_one(&mut db)
                .await
                .unwrap();
            (a, b, c)
        }
        Backend::Postgres => {
            let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database.url)
                .await
                .unwrap();
            let a: i64 = sqlx::query_scalar(sql_attempts)
                .bind(order_id)
                .fetch_one(&mut db)
                .await
                .unwrap();
            let b: i64 = sqlx::query_scalar(sql_applied)
                .bind(order_id)
                .fetch_one(&mut db)
                .await
                .unwrap();
            let c: i64 = sqlx::query_scalar(sql_outbox)
                .bind(order_id)
                .fetch_one(&mut db)
                .await
                .unwrap();
            (a, b, c)
        }
    }
}

async fn a_faulty_stripe_still_ends_with_every_order_right(backend: Backend) {
    let faults = json!({
        "error_rate": 0.25,
        "rate_limit_rate": 0.1,
        "webhook_duplicate_rate": 0.6,
        "webhook_reorder": true,
        "webhook_delay_ms": 30,
    })
    .to_string();
    let app = spawn_app_with(backend, &[("STRIPE_EMULATOR_FAULTS", &faults)]).await;
    let mut orders = Vec::new();
    for _ in 0..6 {
        let user = app.new_user().await;
        let order = two_block_order(&app, &user).await;
        orders.push((user, order));
    }
    futures::future::join_all(orders.iter().map(|(user, order)| pay(&app, user, order))).await;
    for (user, order) in &orders {
        let paid = wait_until_paid(&app, user, order).await;
        assert_eq!(paid["total"], 16500);
        let (intents, applied, notified) =
            ledger(&app, backend, order["id"].as_i64().unwrap()).await;
        assert_eq!(
            (intents, applied, notified),
            (1, 1, 1),
            "order {}: intents, applied successes, notifications",
            order["id"]
        );
    }
    // Settle the retried webhooks, then check nothing changed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (user, order) in &orders {
        let again: Value = app
            .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(again["status"], "paid");
        let counts = ledger(&app, backend, order["id"].as_i64().unwrap()).await;
        assert_eq!(counts, (1, 1, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_faulty_stripe_still_ends_with_every_order_right_sqlite() {
    a_faulty_stripe_still_ends_with_every_order_right(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_faulty_stripe_still_ends_with_every_order_right_postgres() {
    a_faulty_stripe_still_ends_with_every_order_right(Backend::Postgres).await;
}

/// With webhooks lost, the order waits; asking for the intent again makes
/// kessai ask Stripe, which settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_webhook_leaves_the_order_awaiting_until_kessai_asks_stripe() {
    let faults = json!({"webhook_drop_rate": 1.0}).to_string();
    let app = spawn_app_with(Backend::Sqlite, &[("STRIPE_EMULATOR_FAULTS", &faults)]).await;
    let user = app.new_user().await;
    let order = two_block_order(&app, &user).await;
    pay(&app, &user, &order).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting: Value = app
        .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(waiting["status"], "awaiting_payment", "{waiting}");

    let again = app
        .post(
            "/api/payments/intent",
            Some(&user.token),
            &json!({"order_id": order["id"]}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["code"], "payment_already_processed");
    let settled: Value = app
        .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(settled["status"], "paid");
}

/// Stripe's webhook delivery is down: the reconciliation worker alone
/// finds the paid orders and settles them; the unpaid one stays payable.
async fn with_webhooks_off_reconciliation_alone_settles_every_paid_order(backend: Backend) {
    let faults = json!({"webhooks_enabled": false}).to_string();
    let app = spawn_app_with(
        backend,
        &[
            ("STRIPE_EMULATOR_FAULTS", &faults),
            ("RECONCILE_INTERVAL_SECONDS", "1"),
            ("RECONCILE_AFTER_SECONDS", "0"),
        ],
    )
    .await;
    let mut paid = Vec::new();
    for _ in 0..3 {
        let user = app.new_user().await;
        let order = two_block_order(&app, &user).await;
        pay(&app, &user, &order).await;
        paid.push((user, order));
    }
    let unpaid_user = app.new_user().await;
    let unpaid = two_block_order(&app, &unpaid_user).await;
    let intent = app
        .post(
            "/api/payments/intent",
            Some(&unpaid_user.token),
            &json!({"order_id": unpaid["id"]}),
        )
        .await;
    assert_eq!(intent.status(), StatusCode::OK);

    for (user, order) in &paid {
        let settled = wait_until_paid(&app, user, order).await;
        assert!(settled["paid_at"].as_str().is_some());
        let (intents, applied_by_webhook, notified) =
            ledger(&app, backend, order["id"].as_i64().unwrap()).await;
        assert_eq!(
            (intents, applied_by_webhook, notified),
            (1, 0, 1),
            "settled by reconciliation, not by a webhook"
        );
    }
    let still: Value = app
        .get(
            &format!("/api/orders/{}", unpaid["id"]),
            Some(&unpaid_user.token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["status"], "awaiting_payment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_webhooks_off_reconciliation_alone_settles_every_paid_order_sqlite() {
    with_webhooks_off_reconciliation_alone_settles_every_paid_order(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_webhooks_off_reconciliation_alone_settles_every_paid_order_postgres() {
    with_webhooks_off_reconciliation_alone_settles_every_paid_order(Backend::Postgres).await;
}

//! With no Stripe key, kessai embeds the Stripe emulator under /_stripe
//! and the whole checkout works through the real client and the real
//! webhook endpoint.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app, Backend, TestApp, TestUser};
use crate::payments::{intent, two_block_order};

async fn wait_for_order(
    app: &TestApp,
    user: &TestUser,
    order: &Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current: Value = app
            .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
            .await
            .json()
            .await
            .unwrap();
        if done(&current) {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "order never reached the expected state: {current}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn confirm(app: &TestApp, intent: &Value, card: &str) -> reqwest::Response {
    let id = intent["payment_intent_id"].as_str().unwrap();
    app.client
        .post(app.url(&format!("/_stripe/v1/payment_intents/{id}/confirm")))
        .form(&[
            ("payment_method", card),
            ("client_secret", intent["client_secret"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
}

async fn checkout_with_a_test_card_pays_the_order(app: TestApp) {
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["payments"], "emulator");
    let user = app.new_user().await;
    let me: Value = app
        .get("/api/auth/me", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert!(me["stripe_customer_id"]
        .as_str()
        .unwrap()
        .starts_with("cus_"));
    let order = two_block_order(&app, &user).await;
    let created: Value = intent(&app, &user, &order).await.json().await.unwrap();
    assert_eq!(created["amount"], 16500);

    let page = app
        .get(
            &format!(
                "/_stripe/checkout/{}",
                created["client_secret"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("4242"));

    let confirmed = confirm(&app, &created, "pm_card_visa").await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let paid = wait_for_order(&app, &user, &order, |o| o["status"] == "paid").await;
    assert!(paid["paid_at"].as_str().is_some());
}

async fn a_declined_card_keeps_the_order_payable_with_the_reason(app: TestApp) {
    let user = app.new_user().await;
    let order = two_block_order(&app, &user).await;
    let created: Value = intent(&app, &user, &order).await.json().await.unwrap();
    let declined = confirm(
        &app,
        &created,
        "pm_card_visa_chargeDeclinedInsufficientFunds",
    )
    .await;
    assert_eq!(declined.status(), StatusCode::PAYMENT_REQUIRED);
    let failed = wait_for_order(&app, &user, &order, |o| o["last_payment_error"].is_object()).await;
    assert_eq!(failed["status"], "awaiting_payment");
    assert_eq!(failed["last_payment_error"]["code"], "insufficient_funds");
    // The customer tries again with a good card: same intent, now paid.
    let again: Value = intent(&app, &user, &order).await.json().await.unwrap();
    assert_eq!(again["payment_intent_id"], created["payment_intent_id"]);
    assert_eq!(
        confirm(&app, &again, "pm_card_visa").await.status(),
        StatusCode::OK
    );
    let paid = wait_for_order(&app, &user, &order, |o| o["status"] == "paid").await;
    assert_eq!(paid["last_payment_error"], Value::Null);
}

/// The value of the `name` sample carrying every label in `labels`, as
/// Prometheus text shows it; `None` while there is no such sample.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        if !(rest.is_empty() || rest.starts_with('{')) {
            return None;
        }
        labels
            .iter()
            .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")))
            .then(|| value.parse().ok())?
    })
}

/// The recorder is process-wide: under nextest each test has a process of
/// its own, but `cargo test` runs them side by side, so counters are
/// checked as "at least this checkout's" and gauges for being there.
async fn a_paid_checkout_shows_in_the_metrics(app: TestApp) {
    let user = app.new_user().await;
    let order = two_block_order(&app, &user).await;
    let created: Value = intent(&app, &user, &order).await.json().await.unwrap();
    assert_eq!(
        confirm(&app, &created, "pm_card_visa").await.status(),
        StatusCode::OK
    );
    wait_for_order(&app, &user, &order, |o| o["status"] == "paid").await;

    // The outbox is dispatched by a worker: wait for its pass.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let response = app.get("/metrics", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        if sample(
            &text,
            "kessai_outbox_dispatched_total",
            &[("topic", "order_paid")],
        ) == Some(1.0)
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no notification dispatched:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expect = |name: &str, labels: &[(&str, &str)], at_least: f64| {
        let value = sample(&metrics, name, labels);
        assert!(
            value.is_some_and(|v| v >= at_least),
            "{name}{labels:?} = {value:?} in:\n{metrics}"
        );
    };
    // The webhook's event was group-committed (a batch of at least one).
    expect("kessai_webhook_commit_batch_size_count", &[], 1.0);
    // So were the intent's lease and its record.
    expect("kessai_intent_commit_batch_size_count", &[], 2.0);
    // On PostgreSQL the webhook found its order through a batched look-up
    // (SQLite reads it in-process).
    if app.database.url.starts_with("postgres") {
        expect("kessai_order_lookup_batch_size_count", &[], 1.0);
    }
    // HTTP by route and status, with latency.
    expect(
        "kessai_http_requests_total",
        &[
            ("method", "POST"),
            ("route", "/api/payments/intent"),
            ("status", "200"),
        ],
        1.0,
    );
    expect(
        "kessai_http_request_duration_seconds_count",
        &[("method", "POST"), ("route", "/api/payments/intent")],
        1.0,
    );
    // Stripe calls by operation and outcome, with latency.
    for operation in ["create_customer", "create_payment_intent"] {
        expect(
            "kessai_stripe_requests_total",
            &[("operation", operation), ("outcome", "ok")],
            1.0,
        );
        expect(
            "kessai_stripe_request_duration_seconds_count",
            &[("operation", operation), ("outcome", "ok")],
            1.0,
        );
    }
    // Webhooks by type and outcome; the outbox drained.
    expect(
        "kessai_webhook_events_total",
        &[("type", "payment_intent.succeeded"), ("outcome", "applied")],
        1.0,
    );
    expect("kessai_outbox_backlog", &[("state", "pending")], 0.0);
    expect("kessai_outbox_backlog", &[("state", "given_up")], 0.0);
}

crate::on_both_backends!(
    checkout_with_a_test_card_pays_the_order,
    a_declined_card_keeps_the_order_payable_with_the_reason,
    a_paid_checkout_shows_in_the_metrics,
);

/// `kessai demo` walks the checkout against a running kessai and exits 0
/// once the webhook has marked the order paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_command_pays_an_order_end_to_end() {
    let app = spawn_app(Backend::Sqlite).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kessai"))
        .args(["demo", "--base-url", &app.address])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"status\":\"paid\""), "{stdout}");
}

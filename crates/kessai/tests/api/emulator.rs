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

crate::on_both_backends!(
    checkout_with_a_test_card_pays_the_order,
    a_declined_card_keeps_the_order_payable_with_the_reason,
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

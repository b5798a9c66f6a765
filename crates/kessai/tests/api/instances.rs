//! Two stateless kessai instances on one PostgreSQL behave as one.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    spawn_app_with_localstripe, spawn_second_localstripe_instance, stripe_signature, unix_now,
    Backend, WEBHOOK_SECRET,
};
use crate::payments::{intent, two_block_order};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_intent_calls_split_across_two_instances_create_one_payment_intent() {
    let a = spawn_app_with_localstripe(Backend::Postgres).await;
    let b = spawn_second_localstripe_instance(&a).await;
    let user = a.new_user().await;
    let order = two_block_order(&a, &user).await;
    let calls = (0..16).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        intent(app, &user, &order)
    });
    let mut ids = Vec::new();
    for response in futures::future::join_all(calls).await {
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        ids.push(body["payment_intent_id"].as_str().unwrap().to_string());
    }
    ids.sort();
    ids.dedup();
    println!("16 intent calls over two instances → {ids:?}");
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_webhook_delivered_to_both_instances_at_once_is_applied_once() {
    let a = spawn_app_with_localstripe(Backend::Postgres).await;
    let b = spawn_second_localstripe_instance(&a).await;
    let user = a.new_user().await;
    let order = two_block_order(&a, &user).await;
    let body: Value = intent(&a, &user, &order).await.json().await.unwrap();
    let event_id = format!(
        "evt_two_instances_{}",
        crate::helpers::uuid_like().replace('-', "")
    );
    let payload = json!({
        "id": event_id, "object": "event", "type": "payment_intent.succeeded", "created": unix_now(),
        "data": {"object": {"id": body["payment_intent_id"], "object": "payment_intent", "amount": 16500,
            "currency": "jpy", "status": "succeeded", "metadata": {"order_id": order["id"].to_string()}}}
    })
    .to_string();
    let deliveries = (0..10).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let payload = payload.clone();
        async move {
            let response = app
                .client
                .post(app.url("/api/payments/webhook"))
                .header(
                    "Stripe-Signature",
                    stripe_signature(WEBHOOK_SECRET, unix_now(), &payload),
                )
                .body(payload)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body: Value = response.json().await.unwrap();
            body["outcome"].as_str().unwrap().to_string()
        }
    });
    let outcomes = futures::future::join_all(deliveries).await;
    println!("one event delivered 10× to two instances → {outcomes:?}");
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
    let stored: Value = b
        .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["status"], "paid");
}

/// Both instances run the reconciliation worker against the same orders
/// (no webhook reaches either: localstripe delivers only to registered
/// endpoints): every paid order is settled once, with one notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciliation_running_in_both_instances_handles_each_order_once() {
    let mut vars = crate::helpers::localstripe_vars();
    vars.push(("RECONCILE_INTERVAL_SECONDS", "1".into()));
    vars.push(("RECONCILE_AFTER_SECONDS", "0".into()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = crate::helpers::spawn_app_with(Backend::Postgres, &vars).await;
    let b = crate::helpers::spawn_second_instance(&a, &vars).await;
    let mut orders = Vec::new();
    for _ in 0..4 {
        let user = a.new_user().await;
        let order = two_block_order(&a, &user).await;
        let body: Value = intent(&a, &user, &order).await.json().await.unwrap();
        crate::payments::pay_at_stripe(body["payment_intent_id"].as_str().unwrap()).await;
        orders.push((user, order));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for (user, order) in &orders {
        loop {
            let stored: Value = b
                .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
                .await
                .json()
                .await
                .unwrap();
            if stored["status"] == "paid" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never settled: {stored}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    // Give both workers a few more passes, then count the effects.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&a.database.url)
        .await
        .unwrap();
    for (_, order) in &orders {
        let notified: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE order_id = $1 AND topic = 'order_paid'",
        )
        .bind(order["id"].as_i64().unwrap())
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(
            notified, 1,
            "order {} was settled {notified} times",
            order["id"]
        );
    }
}

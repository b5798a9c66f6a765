//! POST /api/payments/intent and order cancellation against localstripe.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app_with, Backend, TestApp, TestUser, STRIPE_TEST_KEY};
use crate::with_localstripe_on_both_backends;

/// Reads an object straight from localstripe, as Stripe's dashboard would show it.
pub async fn stripe_get(path: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", test_support::localstripe_url()))
        .bearer_auth(STRIPE_TEST_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.json().await.unwrap()
}

/// Every PaymentIntent localstripe holds for `customer` (localstripe's list
/// has no customer filter, so all pages are read).
async fn intents_of_customer(customer: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/payment_intents?limit=100".to_string();
        if let Some(id) = &after {
            path.push_str(&format!("&starting_after={id}"));
        }
        let page = stripe_get(&path).await;
        let data = page["data"].as_array().unwrap();
        found.extend(data.iter().filter(|pi| pi["customer"] == customer).cloned());
        if page["has_more"] != true || data.is_empty() {
            return found;
        }
        after = data.last().unwrap()["id"].as_str().map(str::to_string);
    }
}

/// Pays a PaymentIntent with the test Visa card, as Stripe.js would.
pub async fn pay_at_stripe(intent_id: &str) {
    let client = reqwest::Client::new();
    let base = test_support::localstripe_url();
    // localstripe takes the payment method by update, then an empty confirm.
    let attach = client
        .post(format!("{base}/v1/payment_intents/{intent_id}"))
        .bearer_auth(STRIPE_TEST_KEY)
        .form(&[("payment_method", "pm_card_visa")])
        .send()
        .await
        .unwrap();
    assert_eq!(attach.status(), StatusCode::OK);
    let confirm = client
        .post(format!("{base}/v1/payment_intents/{intent_id}/confirm"))
        .bearer_auth(STRIPE_TEST_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), StatusCode::OK);
    let body: Value = confirm.json().await.unwrap();
    assert_eq!(body["status"], "succeeded");
}

pub async fn two_block_order(app: &TestApp, user: &TestUser) -> Value {
    let block = app.product_priced(5000).await;
    let panel = app.product_priced(2500).await;
    let response = app
        .create_order(
            &user.token,
            json!([{"product_id": block, "quantity": 2}, {"product_id": panel, "quantity": 2}]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

pub async fn intent(app: &TestApp, user: &TestUser, order: &Value) -> reqwest::Response {
    app.post(
        "/api/payments/intent",
        Some(&user.token),
        &json!({"order_id": order["id"]}),
    )
    .await
}

async fn the_payment_intent_carries_the_order_total_metadata_and_customer(app: TestApp) {
    let user = app.new_user().await;
    let me: Value = app
        .get("/api/auth/me", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    let customer = me["stripe_customer_id"]
        .as_str()
        .expect("customer created at registration")
        .to_string();
    assert!(customer.starts_with("cus_"), "{customer}");
    let stripe_customer = stripe_get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(
        stripe_customer["metadata"]["kessai_user_id"],
        user.id.to_string()
    );

    let order = two_block_order(&app, &user).await;
    let response = intent(&app, &user, &order).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let intent_id = body["payment_intent_id"].as_str().unwrap();
    assert!(intent_id.starts_with("pi_"));
    assert_eq!(body["amount"], 16500);
    assert_eq!(body["currency"], "jpy");
    assert!(body["client_secret"]
        .as_str()
        .unwrap()
        .starts_with(intent_id));

    let at_stripe = stripe_get(&format!("/v1/payment_intents/{intent_id}")).await;
    assert_eq!(at_stripe["amount"], 16500);
    assert_eq!(at_stripe["currency"], "jpy");
    assert_eq!(at_stripe["customer"], customer.as_str());
    assert_eq!(at_stripe["metadata"]["order_id"], order["id"].to_string());
    assert_eq!(at_stripe["metadata"]["order_number"], order["order_number"]);
    assert_eq!(at_stripe["metadata"]["user_id"], user.id.to_string());

    let stored: Value = app
        .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["status"], "awaiting_payment");
    assert_eq!(stored["payment_intent_id"], intent_id);

    // Asking again returns the same intent.
    let again: Value = intent(&app, &user, &order).await.json().await.unwrap();
    assert_eq!(again["payment_intent_id"], intent_id);
}

async fn sixteen_concurrent_calls_create_one_payment_intent(app: TestApp) {
    let user = app.new_user().await;
    let order = two_block_order(&app, &user).await;
    let calls = (0..16).map(|_| intent(&app, &user, &order));
    let mut ids = Vec::new();
    for response in futures::future::join_all(calls).await {
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        ids.push(body["payment_intent_id"].as_str().unwrap().to_string());
    }
    ids.dedup();
    println!("16 concurrent intent calls → PaymentIntent ids {ids:?}");
    assert_eq!(ids.len(), 1, "{ids:?}");
    // And Stripe holds exactly one: no losers created and cancelled their own.
    let me: Value = app
        .get("/api/auth/me", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    let at_stripe = intents_of_customer(me["stripe_customer_id"].as_str().unwrap()).await;
    let created: Vec<&Value> = at_stripe.iter().map(|pi| &pi["id"]).collect();
    println!("PaymentIntents at Stripe for this customer: {created:?}");
    assert_eq!(created.len(), 1, "{created:?}");
    let stored: Value = app
        .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["payment_intent_id"], ids[0].as_str());
}

async fn the_body_cannot_set_the_amount(app: TestApp) {
    let user = app.new_user().await;
    let order = two_block_order(&app, &user).await;
    for body in [
        json!({"order_id": order["id"], "amount": 1}),
        json!({"order_id": order["id"], "currency": "usd"}),
        json!({"order_id": "1"}),
        json!({}),
    ] {
        let response = app
            .post("/api/payments/intent", Some(&user.token), &body)
            .await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
    }
    // Nothing reached Stripe: the order has no intent.
    let stored: Value = app
        .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["payment_intent_id"], Value::Null);
    assert_eq!(stored["status"], "pending");
}

async fn the_documents_checks_come_first(app: TestApp) {
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let order = two_block_order(&app, &alice).await;
    let anonymous = app
        .post(
            "/api/payments/intent",
            None,
            &json!({"order_id": order["id"]}),
        )
        .await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let missing = app
        .post(
            "/api/payments/intent",
            Some(&alice.token),
            &json!({"order_id": 987_654}),
        )
        .await;
    assert_problem(missing, StatusCode::NOT_FOUND, "order_not_found").await;
    assert_problem(
        intent(&app, &bob, &order).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    )
    .await;

    let cancel = app
        .post(
            &format!("/api/orders/{}/cancel", order["id"]),
            Some(&alice.token),
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_problem(
        intent(&app, &alice, &order).await,
        StatusCode::CONFLICT,
        "order_not_pending",
    )
    .await;
}

async fn a_paid_order_answers_payment_already_processed(app: TestApp) {
    let user = app.new_user().await;
    let order = two_block_order(&app, &user).await;
    let body: Value = intent(&app, &user, &order).await.json().await.unwrap();
    pay_at_stripe(body["payment_intent_id"].as_str().unwrap()).await;

    let again = intent(&app, &user, &order).await;
    assert_problem(again, StatusCode::CONFLICT, "payment_already_processed").await;
    // kessai asked Stripe and recorded the payment it found.
    let stored: Value = app
        .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["status"], "paid");
    assert!(stored["paid_at"].as_str().is_some());

    let cancel = app
        .post(
            &format!("/api/orders/{}/cancel", order["id"]),
            Some(&user.token),
            &json!({}),
        )
        .await;
    assert_problem(cancel, StatusCode::CONFLICT, "order_cannot_cancel").await;
}

async fn cancelling_an_order_cancels_its_payment_intent(app: TestApp) {
    let user = app.new_user().await;
    let order = two_block_order(&app, &user).await;
    let body: Value = intent(&app, &user, &order).await.json().await.unwrap();
    let intent_id = body["payment_intent_id"].as_str().unwrap();
    let cancel = app
        .post(
            &format!("/api/orders/{}/cancel", order["id"]),
            Some(&user.token),
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::OK);
    let cancelled: Value = cancel.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    let at_stripe = stripe_get(&format!("/v1/payment_intents/{intent_id}")).await;
    assert_eq!(at_stripe["status"], "canceled");
}

async fn a_paid_order_cannot_be_cancelled_even_before_kessai_knows(app: TestApp) {
    let user = app.new_user().await;
    let order = two_block_order(&app, &user).await;
    let body: Value = intent(&app, &user, &order).await.json().await.unwrap();
    pay_at_stripe(body["payment_intent_id"].as_str().unwrap()).await;
    // No webhook has told kessai yet; cancelling asks Stripe first.
    let cancel = app
        .post(
            &format!("/api/orders/{}/cancel", order["id"]),
            Some(&user.token),
            &json!({}),
        )
        .await;
    assert_problem(cancel, StatusCode::CONFLICT, "order_cannot_cancel").await;
    let stored: Value = app
        .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["status"], "paid");
}

with_localstripe_on_both_backends!(
    the_payment_intent_carries_the_order_total_metadata_and_customer,
    sixteen_concurrent_calls_create_one_payment_intent,
    the_body_cannot_set_the_amount,
    the_documents_checks_come_first,
    a_paid_order_answers_payment_already_processed,
    cancelling_an_order_cancels_its_payment_intent,
    a_paid_order_cannot_be_cancelled_even_before_kessai_knows,
);

async fn stripe_down(backend: Backend) {
    let closed = test_support::closed_port_url();
    let app = spawn_app_with(
        backend,
        &[
            ("STRIPE_SECRET_KEY", STRIPE_TEST_KEY),
            ("STRIPE_API_BASE", &closed),
        ],
    )
    .await;
    // Registration still succeeds; the customer waits for checkout.
    let user = app.new_user().await;
    let me: Value = app
        .get("/api/auth/me", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["stripe_customer_id"], Value::Null);

    let order = two_block_order(&app, &user).await;
    let response = intent(&app, &user, &order).await;
    let problem = assert_problem(response, StatusCode::BAD_GATEWAY, "payment_provider_error").await;
    assert!(!problem.to_string().contains("127.0.0.1"), "{problem}");
    let after: Value = app
        .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        after, order,
        "the order changed although Stripe was unreachable"
    );
}

#[tokio::test]
async fn stripe_unreachable_gives_502_and_leaves_the_order_unchanged_sqlite() {
    stripe_down(Backend::Sqlite).await;
}

#[tokio::test]
async fn stripe_unreachable_gives_502_and_leaves_the_order_unchanged_postgres() {
    stripe_down(Backend::Postgres).await;
}

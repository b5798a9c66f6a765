use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app_with, Backend, TestApp};
use crate::on_both_backends;

fn is_order_number(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts[0] == "ACQ"
        && parts[1].len() == 6
        && parts[1].bytes().all(|b| b.is_ascii_digit())
        && parts[2].len() >= 3
        && parts[2].bytes().all(|b| b.is_ascii_digit())
}

async fn the_server_prices_the_order(app: TestApp) {
    let user = app.new_user().await;
    let block = app.product_priced(5000).await;
    let panel = app.product_priced(2500).await;
    let response = app
        .create_order(
            &user.token,
            json!([{"product_id": block, "quantity": 2}, {"product_id": panel, "quantity": 2}]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["subtotal"], 15000);
    assert_eq!(order["tax"], 1500);
    assert_eq!(order["shipping_fee"], 0);
    assert_eq!(order["total"], 16500);
    assert_eq!(order["currency"], "jpy");
    assert_eq!(order["status"], "pending");
    assert_eq!(order["refunded_amount"], 0);
    assert_eq!(order["payment_intent_id"], Value::Null);
    assert_eq!(order["paid_at"], Value::Null);
    assert_eq!(order["cancelled_at"], Value::Null);
    assert!(order["created_at"].as_str().is_some());
    assert!(
        is_order_number(order["order_number"].as_str().unwrap()),
        "{order}"
    );
    let items = order["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["product_id"], block);
    assert_eq!(items[0]["product_name"], "アクリルブロック");
    assert_eq!(items[0]["unit_price"], 5000);
    assert_eq!(items[0]["quantity"], 2);
    assert_eq!(items[0]["subtotal"], 10000);

    let fetched: Value = app
        .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, order);
}

async fn a_client_cannot_send_prices(app: TestApp) {
    let user = app.new_user().await;
    let product = app.product_ids().await[0];
    let with_price = app
        .create_order(
            &user.token,
            json!([{"product_id": product, "quantity": 1, "unit_price": 1}]),
        )
        .await;
    assert_problem(
        with_price,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    let with_total = app
        .post(
            "/api/orders",
            Some(&user.token),
            &json!({"items": [{"product_id": product, "quantity": 1}], "total": 1}),
        )
        .await;
    assert_problem(
        with_total,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
}

async fn invalid_orders_are_rejected(app: TestApp) {
    let user = app.new_user().await;
    let product = app.product_ids().await[0];
    let too_many: Vec<Value> = (0..51)
        .map(|_| json!({"product_id": product, "quantity": 1}))
        .collect();
    for items in [
        json!([]),
        json!([{"product_id": product, "quantity": 0}]),
        json!([{"product_id": product, "quantity": 1000}]),
        json!([{"product_id": product, "quantity": -1}]),
        json!([{"product_id": product, "quantity": 1.5}]),
        json!([{"product_id": "1", "quantity": 1}]),
        json!([{"product_id": product}]),
        json!(too_many),
        json!("nope"),
    ] {
        let response = app.create_order(&user.token, items.clone()).await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
    }
}

async fn unknown_products_are_not_found(app: TestApp) {
    let user = app.new_user().await;
    let response = app
        .create_order(&user.token, json!([{"product_id": 999_999, "quantity": 1}]))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "product_not_found").await;
}

async fn orders_need_authentication(app: TestApp) {
    let product = app.product_ids().await[0];
    let response = app
        .post(
            "/api/orders",
            None,
            &json!({"items": [{"product_id": product, "quantity": 1}]}),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert_problem(
        app.get("/api/orders", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_problem(
        app.get("/api/orders/1", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let cancel = app.post("/api/orders/1/cancel", None, &json!({})).await;
    assert_problem(cancel, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

async fn users_see_only_their_own_orders_newest_first(app: TestApp) {
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let first = app.place_order(&alice.token).await;
    let second = app.place_order(&alice.token).await;
    let bobs = app.place_order(&bob.token).await;

    let listed: Value = app
        .get("/api/orders", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&Value> = listed["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["id"])
        .collect();
    assert_eq!(ids, vec![&second["id"], &first["id"]]);

    let path = format!("/api/orders/{}", bobs["id"]);
    assert_problem(
        app.get(&path, Some(&alice.token)).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    )
    .await;
    let cancel = app
        .post(&format!("{path}/cancel"), Some(&alice.token), &json!({}))
        .await;
    assert_problem(cancel, StatusCode::FORBIDDEN, "permission_denied").await;
    // Bob's order is untouched.
    let still: Value = app.get(&path, Some(&bob.token)).await.json().await.unwrap();
    assert_eq!(still["status"], "pending");
}

async fn missing_orders_are_not_found(app: TestApp) {
    let user = app.new_user().await;
    assert_problem(
        app.get("/api/orders/987654", Some(&user.token)).await,
        StatusCode::NOT_FOUND,
        "order_not_found",
    )
    .await;
    let cancel = app
        .post("/api/orders/987654/cancel", Some(&user.token), &json!({}))
        .await;
    assert_problem(cancel, StatusCode::NOT_FOUND, "order_not_found").await;
    assert_problem(
        app.get("/api/orders/abc", Some(&user.token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
}

async fn cancelling_is_allowed_once(app: TestApp) {
    let user = app.new_user().await;
    let order = app.place_order(&user.token).await;
    let path = format!("/api/orders/{}/cancel", order["id"]);
    let response = app
        .post(
            &path,
            Some(&user.token),
            &json!({"reason": " changed my mind "}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled_at"].as_str().is_some());
    assert_eq!(cancelled["total"], order["total"]);

    let again = app.post(&path, Some(&user.token), &json!({})).await;
    assert_problem(again, StatusCode::CONFLICT, "order_cannot_cancel").await;
}

async fn cancel_accepts_an_empty_body(app: TestApp) {
    let user = app.new_user().await;
    let order = app.place_order(&user.token).await;
    let path = format!("/api/orders/{}/cancel", order["id"]);
    let response = app.post_raw(&path, Some(&user.token), "").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    let bad = app
        .post(&path, Some(&user.token), &json!({"reason": 5}))
        .await;
    assert_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_error").await;
}

/// As schemathesis sends them: JSON has one number type, so `1.0` is the
/// integer 1 (and `1.5` stays a type error, see `invalid_orders_are_rejected`),
/// and `null` is an absent optional body.
async fn whole_floats_and_a_null_cancel_body_are_accepted(app: TestApp) {
    let user = app.new_user().await;
    let product = app.product_ids().await[0];
    let response = app
        .create_order(
            &user.token,
            json!([{"product_id": product as f64, "quantity": 2.0}]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["items"][0]["quantity"], 2);
    let path = format!("/api/orders/{}/cancel", order["id"]);
    let response = app.post_raw(&path, Some(&user.token), "null").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    assert!(body["notes"].is_null());
}

/// PostgreSQL text cannot hold U+0000: refused as input, not a 500 later.
async fn nul_characters_in_free_text_are_rejected(app: TestApp) {
    let user = app.new_user().await;
    let product = app.product_ids().await[0];
    let response = app
        .post(
            "/api/orders",
            Some(&user.token),
            &json!({"items": [{"product_id": product, "quantity": 1}], "notes": "a\u{0}b"}),
        )
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    let order = app.place_order(&user.token).await;
    let path = format!("/api/orders/{}/cancel", order["id"]);
    let response = app
        .post(&path, Some(&user.token), &json!({"reason": "a\u{0}b"}))
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
}

async fn concurrent_orders_get_distinct_numbers(app: TestApp) {
    let user = app.new_user().await;
    let product = app.product_ids().await[0];
    let requests = (0..20)
        .map(|_| app.create_order(&user.token, json!([{"product_id": product, "quantity": 1}])));
    let responses = futures::future::join_all(requests).await;
    let mut numbers = HashSet::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: Value = response.json().await.unwrap();
        numbers.insert(order["order_number"].as_str().unwrap().to_string());
    }
    assert_eq!(numbers.len(), 20, "{numbers:?}");
    let listed: Value = app
        .get("/api/orders", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["orders"].as_array().unwrap().len(), 20);
}

on_both_backends!(
    the_server_prices_the_order,
    a_client_cannot_send_prices,
    invalid_orders_are_rejected,
    unknown_products_are_not_found,
    orders_need_authentication,
    users_see_only_their_own_orders_newest_first,
    missing_orders_are_not_found,
    cancelling_is_allowed_once,
    cancel_accepts_an_empty_body,
    whole_floats_and_a_null_cancel_body_are_accepted,
    nul_characters_in_free_text_are_rejected,
    concurrent_orders_get_distinct_numbers,
);

#[tokio::test]
async fn the_shipping_fee_comes_from_configuration() {
    let app = spawn_app_with(Backend::Sqlite, &[("SHIPPING_FEE", "500")]).await;
    let user = app.new_user().await;
    let panel = app.product_priced(2500).await;
    let order: Value = app
        .create_order(&user.token, json!([{"product_id": panel, "quantity": 1}]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["shipping_fee"], 500);
    assert_eq!(order["total"], 2500 + 250 + 500);
}

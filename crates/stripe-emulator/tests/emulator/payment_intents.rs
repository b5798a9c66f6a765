use std::time::Duration;

use axum::http::StatusCode;

use crate::helpers::{spawn, SECRET_KEY};

#[tokio::test]
async fn create_as_kessai_does() {
    let em = spawn().await;
    let customer = em.customer().await;
    let customer_id = customer["id"].as_str().unwrap();
    let answer = em
        .post_with(
            "/v1/payment_intents",
            &[
                ("amount", "16500"),
                ("currency", "jpy"),
                ("customer", customer_id),
                ("metadata[order_id]", "1"),
                ("metadata[order_number]", "ACQ-241124-001"),
                ("metadata[user_id]", "1"),
                ("automatic_payment_methods[enabled]", "true"),
                ("description", "Order ACQ-241124-001"),
            ],
            Some("kessai-order-1-intent-v1"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let pi = &answer.body;
    let id = pi["id"].as_str().unwrap();
    assert!(id.starts_with("pi_") && id.len() == 27, "{id}");
    let secret = pi["client_secret"].as_str().unwrap();
    assert!(secret.starts_with(&format!("{id}_secret_")), "{secret}");
    assert_eq!(pi["object"], "payment_intent");
    assert_eq!(pi["amount"], 16500);
    assert!(pi["amount"].is_i64());
    assert_eq!(pi["currency"], "jpy");
    assert_eq!(pi["status"], "requires_payment_method");
    assert_eq!(pi["customer"], customer_id);
    assert_eq!(pi["metadata"]["order_number"], "ACQ-241124-001");
    assert_eq!(pi["capture_method"], "automatic_async");
    assert_eq!(pi["automatic_payment_methods"]["enabled"], true);
    assert_eq!(pi["latest_charge"], serde_json::Value::Null);
    assert_eq!(em.event_types_for(id), vec!["payment_intent.created"]);
    let event = em.emulator.events().pop().unwrap();
    assert_eq!(
        event["request"]["idempotency_key"],
        "kessai-order-1-intent-v1"
    );
    assert!(event["request"]["id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(answer.header("request-id"), event["request"]["id"].as_str());
}

#[tokio::test]
async fn amounts_and_currencies_are_validated() {
    let em = spawn().await;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("amount", "49"), ("currency", "jpy")],
            "amount_too_small",
            "amount",
        ),
        (
            &[("amount", "49"), ("currency", "usd")],
            "amount_too_small",
            "amount",
        ),
        (
            &[("amount", "100000000"), ("currency", "jpy")],
            "amount_too_large",
            "amount",
        ),
        (
            &[("amount", "abc"), ("currency", "jpy")],
            "parameter_invalid_integer",
            "amount",
        ),
        (
            &[("amount", "0"), ("currency", "jpy")],
            "parameter_invalid_integer",
            "amount",
        ),
        (&[("amount", "1000")], "parameter_missing", "currency"),
        (&[("currency", "jpy")], "parameter_missing", "amount"),
        (
            &[
                ("amount", "1000"),
                ("currency", "jpy"),
                ("customer", "cus_nope"),
            ],
            "resource_missing",
            "customer",
        ),
        (
            &[
                ("amount", "1000"),
                ("currency", "jpy"),
                ("payment_method", "pm_nope"),
            ],
            "resource_missing",
            "payment_method",
        ),
        (
            &[
                ("amount", "1000"),
                ("currency", "jpy"),
                ("capture_method", "later"),
            ],
            "",
            "capture_method",
        ),
    ];
    for (form, code, param) in cases {
        let answer = em.post("/v1/payment_intents", form).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{form:?}: {}",
            answer.body
        );
        assert_eq!(answer.error_code(), *code, "{form:?}: {}", answer.body);
        assert_eq!(answer.body["error"]["param"], *param, "{form:?}");
        assert_eq!(answer.body["error"]["type"], "invalid_request_error");
    }
    let small = em
        .post(
            "/v1/payment_intents",
            &[("amount", "49"), ("currency", "jpy")],
        )
        .await;
    assert_eq!(
        small.body["error"]["message"],
        "Amount must be at least ¥50 jpy"
    );
    let small = em
        .post(
            "/v1/payment_intents",
            &[("amount", "49"), ("currency", "usd")],
        )
        .await;
    assert_eq!(
        small.body["error"]["message"],
        "Amount must be at least $0.50 usd"
    );
    let currency = em
        .post(
            "/v1/payment_intents",
            &[("amount", "100"), ("currency", "xyz")],
        )
        .await;
    assert_eq!(currency.body["error"]["param"], "currency");
    // Upper case is accepted and stored lower case; the minimum holds exactly.
    let ok = em
        .post(
            "/v1/payment_intents",
            &[("amount", "50"), ("currency", "JPY")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["currency"], "jpy");
    assert!(em
        .event_types()
        .iter()
        .all(|t| t == "payment_intent.created"));
    assert_eq!(em.event_types().len(), 1);
}

#[tokio::test]
async fn confirm_with_a_good_card_succeeds_with_a_charge() {
    let em = spawn().await;
    let pi = em.intent("16500", "jpy").await;
    let id = pi["id"].as_str().unwrap();
    let answer = em
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let pi = &answer.body;
    assert_eq!(pi["status"], "succeeded");
    assert_eq!(pi["amount_received"], 16500);
    let charge_id = pi["latest_charge"].as_str().unwrap();
    assert!(charge_id.starts_with("ch_"));
    let pm = pi["payment_method"].as_str().unwrap();
    assert!(pm.starts_with("pm_") && pm != "pm_card_visa", "{pm}");
    assert_eq!(pi["last_payment_error"], serde_json::Value::Null);

    let charge = em.get(&format!("/v1/charges/{charge_id}")).await.body;
    assert_eq!(charge["amount"], 16500);
    assert_eq!(charge["amount_captured"], 16500);
    assert_eq!(charge["status"], "succeeded");
    assert_eq!(charge["paid"], true);
    assert_eq!(charge["captured"], true);
    assert_eq!(charge["payment_intent"], id);
    assert_eq!(charge["payment_method_details"]["card"]["last4"], "4242");
    assert!(charge.get("refunds").is_none());

    let method = em.get(&format!("/v1/payment_methods/{pm}")).await.body;
    assert_eq!(method["card"]["brand"], "visa");

    let expanded = em
        .get(&format!("/v1/payment_intents/{id}?expand[]=latest_charge"))
        .await
        .body;
    assert_eq!(expanded["latest_charge"]["id"], charge_id);

    assert_eq!(
        em.event_types_for(id),
        vec![
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded"
        ]
    );
    // A second confirm is refused.
    let again = em
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error_code(), "payment_intent_unexpected_state");
}

#[tokio::test]
async fn confirm_on_create() {
    let em = spawn().await;
    let answer = em
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["status"], "succeeded");
    let declined = em
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_chargeDeclined"),
                ("confirm", "true"),
            ],
        )
        .await;
    assert_eq!(declined.status, StatusCode::PAYMENT_REQUIRED);
    let pi = &declined.body["error"]["payment_intent"];
    assert_eq!(pi["status"], "requires_payment_method");
    let id = pi["id"].as_str().unwrap();
    assert_eq!(
        em.get(&format!("/v1/payment_intents/{id}")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn declines_answer_402_and_the_intent_can_be_retried() {
    let em = spawn().await;
    let pi = em.intent("16500", "jpy").await;
    let id = pi["id"].as_str().unwrap();
    for (method, decline_code, message) in [
        (
            "pm_card_chargeDeclined",
            "generic_decline",
            "Your card was declined.",
        ),
        (
            "pm_card_visa_chargeDeclined",
            "generic_decline",
            "Your card was declined.",
        ),
        (
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
            "Your card has insufficient funds.",
        ),
    ] {
        let answer = em
            .post(
                &format!("/v1/payment_intents/{id}/confirm"),
                &[("payment_method", method)],
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::PAYMENT_REQUIRED,
            "{}",
            answer.body
        );
        let error = &answer.body["error"];
        assert_eq!(error["type"], "card_error");
        assert_eq!(error["code"], "card_declined");
        assert_eq!(error["decline_code"], decline_code);
        assert_eq!(error["message"], message);
        assert!(error["charge"].as_str().unwrap().starts_with("ch_"));
        assert_eq!(error["payment_intent"]["id"], id);
        assert_eq!(error["payment_intent"]["status"], "requires_payment_method");
        assert_eq!(error["payment_method"]["object"], "payment_method");

        let pi = em.get(&format!("/v1/payment_intents/{id}")).await.body;
        assert_eq!(pi["status"], "requires_payment_method");
        assert_eq!(pi["payment_method"], serde_json::Value::Null);
        assert_eq!(pi["last_payment_error"]["code"], "card_declined");
        assert_eq!(pi["last_payment_error"]["decline_code"], decline_code);
        assert_eq!(pi["last_payment_error"]["type"], "card_error");
        assert_eq!(pi["latest_charge"], error["charge"]);
        let charge = em
            .get(&format!(
                "/v1/charges/{}",
                error["charge"].as_str().unwrap()
            ))
            .await
            .body;
        assert_eq!(charge["status"], "failed");
        assert_eq!(charge["failure_code"], "card_declined");
        assert_eq!(charge["outcome"]["reason"], decline_code);
    }
    // Unlike localstripe, Stripe lets a failed intent be confirmed again.
    let answer = em
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["status"], "succeeded");
    assert_eq!(answer.body["last_payment_error"], serde_json::Value::Null);
    let types = em.event_types_for(id);
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "payment_intent.payment_failed")
            .count(),
        3
    );
    assert_eq!(types.iter().filter(|t| *t == "charge.failed").count(), 3);
    assert_eq!(types.last().unwrap(), "payment_intent.succeeded");
}

#[tokio::test]
async fn confirm_without_a_payment_method_is_refused() {
    let em = spawn().await;
    let pi = em.intent("1000", "jpy").await;
    let id = pi["id"].as_str().unwrap();
    let answer = em
        .post(&format!("/v1/payment_intents/{id}/confirm"), &[])
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "payment_intent_unexpected_state");
    let missing = em
        .post(
            "/v1/payment_intents/pi_doesnotexist/confirm",
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body["error"]["message"],
        "No such payment_intent: 'pi_doesnotexist'"
    );
    let get = em.get("/v1/payment_intents/pi_x").await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
    assert_eq!(get.error_code(), "resource_missing");
    assert_eq!(
        get.body["error"]["message"],
        "No such payment_intent: 'pi_x'"
    );
}

#[tokio::test]
async fn client_secret_confirms_only_its_own_intent() {
    let em = spawn().await;
    let pi = em
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "16500"),
                ("currency", "jpy"),
                ("metadata[order_id]", "9"),
            ],
        )
        .await
        .body;
    let other = em.intent("2000", "jpy").await;
    let id = pi["id"].as_str().unwrap();
    let secret = pi["client_secret"].as_str().unwrap();

    // Another intent's secret, or a wrong one: refused.
    let other_id = other["id"].as_str().unwrap();
    let wrong = em
        .post_public(
            &format!("/v1/payment_intents/{other_id}/confirm"),
            &[
                ("payment_method", "pm_card_visa"),
                ("client_secret", secret),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong.body["error"]["param"], "client_secret");
    // Without any credential: 401.
    let none = em
        .post_public(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    // The secret cannot cancel.
    let cancel = em
        .post_public(
            &format!("/v1/payment_intents/{id}/cancel"),
            &[("client_secret", secret)],
        )
        .await;
    assert_eq!(cancel.status, StatusCode::UNAUTHORIZED);

    // The checkout page's request: publishable view, no metadata or customer.
    let answer = em
        .post_public(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[
                ("payment_method", "pm_card_visa"),
                ("client_secret", secret),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["status"], "succeeded");
    assert!(answer.body.get("metadata").is_none());
    assert!(answer.body.get("latest_charge").is_none());
    // Retrieving with the secret works too.
    let fetched = em
        .http
        .get(em.url(&format!("/v1/payment_intents/{id}?client_secret={secret}")))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status().as_u16(), 200);
    let fetched: serde_json::Value = fetched.json().await.unwrap();
    assert_eq!(fetched["status"], "succeeded");
    // The secret key sees everything.
    let full = em.get(&format!("/v1/payment_intents/{id}")).await.body;
    assert_eq!(full["metadata"]["order_id"], "9");
    assert_eq!(
        em.http
            .get(em.url(&format!(
                "/v1/payment_intents/{other_id}?client_secret={secret}"
            )))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    let _ = SECRET_KEY;
}

#[tokio::test]
async fn delayed_payments_process_then_succeed() {
    let em = spawn().await;
    let pi = em.intent("16500", "jpy").await;
    let id = pi["id"].as_str().unwrap();
    let answer = em
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", stripe_emulator::DELAYED_PAYMENT_METHOD)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["status"], "processing");
    let charge_id = answer.body["latest_charge"].as_str().unwrap().to_string();
    assert_eq!(
        em.get(&format!("/v1/charges/{charge_id}")).await.body["status"],
        "pending"
    );
    // Cannot cancel or confirm while processing.
    let cancel = em
        .post(&format!("/v1/payment_intents/{id}/cancel"), &[])
        .await;
    assert_eq!(cancel.status, StatusCode::BAD_REQUEST);
    assert_eq!(cancel.error_code(), "payment_intent_unexpected_state");
    // The fast timings settle it after 200 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let pi = em.get(&format!("/v1/payment_intents/{id}")).await.body;
        if pi["status"] == "succeeded" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {}",
            pi["status"]
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        em.get(&format!("/v1/charges/{charge_id}")).await.body["status"],
        "succeeded"
    );
    assert_eq!(
        em.event_types_for(id),
        vec![
            "payment_intent.created",
            "charge.pending",
            "payment_intent.processing",
            "charge.succeeded",
            "payment_intent.succeeded"
        ]
    );
    let settled = em.emulator.events().pop().unwrap();
    assert_eq!(settled["request"]["id"], serde_json::Value::Null);
}

#[tokio::test]
async fn the_admin_endpoint_settles_at_once_either_way() {
    let em = spawn().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let pi = em.intent("1000", "jpy").await;
        let id = pi["id"].as_str().unwrap().to_string();
        let answer = em
            .post(
                &format!("/v1/payment_intents/{id}/confirm"),
                &[("payment_method", "pm_card_delayed")],
            )
            .await;
        assert_eq!(answer.body["status"], "processing");
        ids.push(id);
    }
    let ok = em
        .post(
            &format!("/_emulator/payment_intents/{}/settle", ids[0]),
            &[],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["status"], "succeeded");
    let failed = em
        .post(
            &format!("/_emulator/payment_intents/{}/settle", ids[1]),
            &[("outcome", "failed")],
        )
        .await;
    assert_eq!(failed.body["status"], "requires_payment_method");
    assert_eq!(failed.body["last_payment_error"]["code"], "card_declined");
    assert!(em
        .event_types_for(&ids[1])
        .contains(&"payment_intent.payment_failed".to_string()));
    // Settling again: not processing any more.
    let again = em
        .post(
            &format!("/_emulator/payment_intents/{}/settle", ids[0]),
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    // The delayed timer later finds nothing to do.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        em.event_types_for(&ids[0])
            .iter()
            .filter(|t| *t == "payment_intent.succeeded")
            .count(),
        1
    );
    let unknown = em
        .post("/_emulator/payment_intents/pi_nope/settle", &[])
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn updates_only_while_open_except_metadata() {
    let em = spawn().await;
    let pi = em
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "16500"),
                ("currency", "jpy"),
                ("metadata[a]", "1"),
                ("metadata[b]", "2"),
            ],
        )
        .await
        .body;
    let id = pi["id"].as_str().unwrap();
    let path = format!("/v1/payment_intents/{id}");
    let updated = em
        .post(
            &path,
            &[
                ("amount", "17000"),
                ("currency", "jpy"),
                ("metadata[b]", ""),
                ("metadata[c]", "3"),
            ],
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["amount"], 17000);
    assert!(updated.body["amount"].is_i64());
    assert_eq!(
        updated.body["metadata"],
        serde_json::json!({"a": "1", "c": "3"})
    );
    let small = em.post(&path, &[("amount", "10")]).await;
    assert_eq!(small.error_code(), "amount_too_small");
    let unknown = em
        .post(&path, &[("amount", "17000"), ("colour", "red")])
        .await;
    assert_eq!(unknown.error_code(), "parameter_unknown");

    let with_pm = em.post(&path, &[("payment_method", "pm_card_visa")]).await;
    assert_eq!(with_pm.body["status"], "requires_confirmation");
    let confirmed = em.post(&format!("{path}/confirm"), &[]).await;
    assert_eq!(confirmed.body["status"], "succeeded");
    assert_eq!(confirmed.body["amount_received"], 17000);

    let late = em.post(&path, &[("amount", "18000")]).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST);
    assert_eq!(late.error_code(), "payment_intent_unexpected_state");
    assert!(late.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("status of succeeded"));
    // Metadata may change in any state, as at Stripe.
    let tagged = em.post(&path, &[("metadata[shipped]", "yes")]).await;
    assert_eq!(tagged.status, StatusCode::OK);
    assert_eq!(tagged.body["metadata"]["shipped"], "yes");
    // No `payment_intent.updated` event exists at Stripe.
    assert!(!em.event_types().iter().any(|t| t.contains("updated")));
}

#[tokio::test]
async fn cancel_from_open_states_only() {
    let em = spawn().await;
    let pi = em.intent("1000", "jpy").await;
    let id = pi["id"].as_str().unwrap();
    let bad_reason = em
        .post(
            &format!("/v1/payment_intents/{id}/cancel"),
            &[("cancellation_reason", "bored")],
        )
        .await;
    assert_eq!(bad_reason.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_reason.body["error"]["param"], "cancellation_reason");
    let canceled = em
        .post(
            &format!("/v1/payment_intents/{id}/cancel"),
            &[("cancellation_reason", "abandoned")],
        )
        .await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.body);
    assert_eq!(canceled.body["status"], "canceled");
    assert_eq!(canceled.body["cancellation_reason"], "abandoned");
    assert!(canceled.body["canceled_at"].is_i64());
    assert_eq!(
        em.event_types_for(id).last().unwrap(),
        "payment_intent.canceled"
    );
    let twice = em
        .post(&format!("/v1/payment_intents/{id}/cancel"), &[])
        .await;
    assert_eq!(twice.error_code(), "payment_intent_unexpected_state");
    let confirm = em
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(confirm.error_code(), "payment_intent_unexpected_state");

    let paid = em.paid_intent("1000").await;
    let paid_id = paid["id"].as_str().unwrap();
    let refused = em
        .post(&format!("/v1/payment_intents/{paid_id}/cancel"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error_code(), "payment_intent_unexpected_state");
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("succeeded"));
}

#[tokio::test]
async fn manual_capture_authorizes_then_captures() {
    let em = spawn().await;
    let pi = em
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "5000"),
                ("currency", "jpy"),
                ("capture_method", "manual"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
            ],
        )
        .await
        .body;
    assert_eq!(pi["status"], "requires_capture");
    assert_eq!(pi["amount_capturable"], 5000);
    let id = pi["id"].as_str().unwrap();
    let too_much = em
        .post(
            &format!("/v1/payment_intents/{id}/capture"),
            &[("amount_to_capture", "6000")],
        )
        .await;
    assert_eq!(too_much.error_code(), "amount_too_large");
    let captured = em
        .post(
            &format!("/v1/payment_intents/{id}/capture"),
            &[("amount_to_capture", "4000")],
        )
        .await;
    assert_eq!(captured.status, StatusCode::OK, "{}", captured.body);
    assert_eq!(captured.body["status"], "succeeded");
    assert_eq!(captured.body["amount_received"], 4000);
    let charge = em
        .get(&format!(
            "/v1/charges/{}",
            captured.body["latest_charge"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(charge["amount_captured"], 4000);
    assert_eq!(charge["amount_refunded"], 1000);
    // Only the captured 4000 can be refunded.
    let over = em
        .post("/v1/refunds", &[("payment_intent", id), ("amount", "4001")])
        .await;
    assert_eq!(over.error_code(), "amount_too_large");
    let all = em.post("/v1/refunds", &[("payment_intent", id)]).await;
    assert_eq!(all.body["amount"], 4000);
}

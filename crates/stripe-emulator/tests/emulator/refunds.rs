use axum::http::StatusCode;

use crate::helpers::spawn;

#[tokio::test]
async fn partial_then_full_refunds_never_exceed_the_charge() {
    let em = spawn().await;
    let pi = em.paid_intent("16500").await;
    let id = pi["id"].as_str().unwrap();
    let charge_id = pi["latest_charge"].as_str().unwrap();

    let partial = em
        .post(
            "/v1/refunds",
            &[
                ("payment_intent", id),
                ("amount", "5000"),
                ("reason", "requested_by_customer"),
            ],
        )
        .await;
    assert_eq!(partial.status, StatusCode::OK, "{}", partial.body);
    let refund = &partial.body;
    assert!(refund["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(refund["object"], "refund");
    assert_eq!(refund["amount"], 5000);
    assert_eq!(refund["currency"], "jpy");
    assert_eq!(refund["status"], "succeeded");
    assert_eq!(refund["charge"], charge_id);
    assert_eq!(refund["payment_intent"], id);
    assert_eq!(refund["reason"], "requested_by_customer");
    let charge = em.get(&format!("/v1/charges/{charge_id}")).await.body;
    assert_eq!(charge["amount_refunded"], 5000);
    assert_eq!(charge["refunded"], false);

    let over = em
        .post(
            "/v1/refunds",
            &[("payment_intent", id), ("amount", "11501")],
        )
        .await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    assert_eq!(over.error_code(), "amount_too_large");
    assert_eq!(over.body["error"]["param"], "amount");
    assert!(over.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("¥11,500"));

    // No amount: the rest.
    let rest = em.post("/v1/refunds", &[("charge", charge_id)]).await;
    assert_eq!(rest.status, StatusCode::OK, "{}", rest.body);
    assert_eq!(rest.body["amount"], 11500);
    let charge = em
        .get(&format!("/v1/charges/{charge_id}?expand[]=refunds"))
        .await
        .body;
    assert_eq!(charge["amount_refunded"], 16500);
    assert_eq!(charge["refunded"], true);
    assert_eq!(charge["refunds"]["data"].as_array().unwrap().len(), 2);

    let again = em.post("/v1/refunds", &[("payment_intent", id)]).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error_code(), "charge_already_refunded");
    let again = em
        .post("/v1/refunds", &[("payment_intent", id), ("amount", "1")])
        .await;
    assert_eq!(again.error_code(), "charge_already_refunded");

    // The intent stays succeeded, as at Stripe.
    assert_eq!(
        em.get(&format!("/v1/payment_intents/{id}")).await.body["status"],
        "succeeded"
    );
    let refunded_events: Vec<_> = em
        .emulator
        .events()
        .into_iter()
        .filter(|e| e["type"] == "charge.refunded")
        .collect();
    assert_eq!(refunded_events.len(), 2);
    assert_eq!(
        refunded_events[0]["data"]["object"]["amount_refunded"],
        5000
    );
    assert_eq!(
        refunded_events[0]["data"]["previous_attributes"]["amount_refunded"],
        0
    );
    assert_eq!(
        refunded_events[1]["data"]["object"]["amount_refunded"],
        16500
    );
    assert_eq!(
        em.event_types()
            .iter()
            .filter(|t| *t == "refund.created")
            .count(),
        2
    );
    let fetched = em
        .get(&format!("/v1/refunds/{}", refund["id"].as_str().unwrap()))
        .await;
    assert_eq!(fetched.body, *refund);
}

#[tokio::test]
async fn refund_errors() {
    let em = spawn().await;
    let neither = em.post("/v1/refunds", &[("amount", "100")]).await;
    assert_eq!(neither.status, StatusCode::BAD_REQUEST);
    let unknown = em
        .post("/v1/refunds", &[("payment_intent", "pi_nope")])
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.error_code(), "resource_missing");
    assert_eq!(unknown.body["error"]["param"], "payment_intent");
    let unknown = em.post("/v1/refunds", &[("charge", "ch_nope")]).await;
    assert_eq!(unknown.error_code(), "resource_missing");

    // An intent without a successful charge.
    let open = em.intent("1000", "jpy").await;
    let open_id = open["id"].as_str().unwrap();
    let answer = em.post("/v1/refunds", &[("payment_intent", open_id)]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "charge_not_refundable");
    let declined = em
        .post(
            &format!("/v1/payment_intents/{open_id}/confirm"),
            &[("payment_method", "pm_card_chargeDeclined")],
        )
        .await;
    assert_eq!(declined.status, StatusCode::PAYMENT_REQUIRED);
    let failed_charge = declined.body["error"]["charge"].as_str().unwrap();
    let answer = em.post("/v1/refunds", &[("charge", failed_charge)]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let paid = em.paid_intent("1000").await;
    let zero = em
        .post(
            "/v1/refunds",
            &[
                ("payment_intent", paid["id"].as_str().unwrap()),
                ("amount", "0"),
            ],
        )
        .await;
    assert_eq!(zero.error_code(), "parameter_invalid_integer");
    let bogus = em
        .post(
            "/v1/refunds",
            &[
                ("payment_intent", paid["id"].as_str().unwrap()),
                ("bogus", "x"),
            ],
        )
        .await;
    assert_eq!(bogus.error_code(), "parameter_unknown");
    assert!(!em.event_types().iter().any(|t| t.starts_with("refund")));
}

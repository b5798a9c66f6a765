//! The emulator's objects have the field names and JSON types of Stripe's
//! published fixtures (`tests/fixtures/stripe_resources.json`).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::spawn;

fn fixture(name: &str) -> Value {
    let all: Value =
        serde_json::from_str(include_str!("../fixtures/stripe_resources.json")).unwrap();
    all[name].clone()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Same top-level keys (less `absent`: fields Stripe's reference says are
/// only there when expanded), and the same JSON type wherever both are
/// non-null.
fn assert_same_shape(name: &str, ours: &Value, absent: &[&str]) {
    let expected = fixture(name);
    let expected_keys: BTreeSet<&str> = expected
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| !absent.contains(k))
        .collect();
    let our_keys: BTreeSet<&str> = ours
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        our_keys
            .symmetric_difference(&expected_keys)
            .collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "{name}: missing or extra fields"
    );
    for key in our_keys {
        let (a, b) = (&ours[key], &expected[key]);
        if !a.is_null() && !b.is_null() {
            assert_eq!(kind(a), kind(b), "{name}.{key}: {a} vs {b}");
        }
    }
}

#[tokio::test]
async fn objects_have_stripes_fields_and_types() {
    let em = spawn().await;
    let customer = em.customer().await;
    assert_same_shape("customer", &customer, &[]);

    let pi = em
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "16500"),
                ("currency", "jpy"),
                ("customer", customer["id"].as_str().unwrap()),
                ("metadata[order_id]", "1"),
            ],
        )
        .await
        .body;
    assert_same_shape("payment_intent", &pi, &[]);
    let id = pi["id"].as_str().unwrap();
    let declined = em
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_chargeDeclined")],
        )
        .await;
    let failed = em.get(&format!("/v1/payment_intents/{id}")).await.body;
    assert_same_shape("payment_intent", &failed, &[]);
    assert_same_shape(
        "payment_method",
        &declined.body["error"]["payment_method"],
        &[],
    );
    let paid = em
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_visa")],
        )
        .await
        .body;
    assert_same_shape("payment_intent", &paid, &[]);

    let charge_id = paid["latest_charge"].as_str().unwrap();
    let charge = em.get(&format!("/v1/charges/{charge_id}")).await.body;
    // Since 2022-11-15 a charge's `refunds` appear only when expanded.
    assert_same_shape("charge", &charge, &["refunds"]);
    let expanded = em
        .get(&format!("/v1/charges/{charge_id}?expand[]=refunds"))
        .await
        .body;
    assert_same_shape("charge", &expanded, &[]);

    let refund = em.post("/v1/refunds", &[("payment_intent", id)]).await.body;
    assert_same_shape("refund", &refund, &[]);

    for event in em.emulator.events() {
        assert_same_shape("event", &event, &[]);
        assert!(event["data"]["object"].is_object());
    }
}

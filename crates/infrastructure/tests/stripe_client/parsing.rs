//! Real-shaped objects read into the port's types: Stripe's own examples
//! (`tests/fixtures/stripe/`, from `shared/stripe/fixtures3.json`, adjusted where kessai's objects differ)
//! and localstripe's captured responses, served over HTTP as the client
//! receives them.

use std::collections::BTreeMap;

use application::ports::payment_gateway::{
    Customer, GatewayError, NewCustomer, NewRefund, PaymentGateway, PaymentIntent,
    PaymentIntentStatus, Refund,
};
use domain::PaymentFailure;
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{client, jpy, key, localstripe_fixture, metadata, stripe_fixture, with};

fn json_response(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

async fn serve(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

/// What `retrieve_payment_intent` makes of `body`.
async fn intent_from(body: &str) -> PaymentIntent {
    let server = serve(json_response(body)).await;
    client(&server)
        .retrieve_payment_intent("pi_1")
        .await
        .unwrap_or_else(|e| panic!("{e:?} reading {body}"))
}

async fn intent_from_json(object: Value) -> PaymentIntent {
    intent_from(&object.to_string()).await
}

async fn customer_from(body: &str) -> Customer {
    let server = serve(json_response(body)).await;
    client(&server)
        .create_customer(
            &NewCustomer {
                email: "taro@example.com".into(),
                name: None,
                metadata: Default::default(),
            },
            &key("kessai-user-1-customer-v1"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?} reading {body}"))
}

async fn refund_from(body: &str) -> Refund {
    let server = serve(json_response(body)).await;
    client(&server)
        .create_refund(
            &NewRefund {
                payment_intent: "pi_1".into(),
                amount: Some(jpy(5000)),
            },
            &key("kessai-order-1-refund-1"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?} reading {body}"))
}

fn text<'a>(object: &'a Value, field: &str) -> &'a str {
    object[field]
        .as_str()
        .unwrap_or_else(|| panic!("fixture field {field} is not a string: {object}"))
}

// ---------------------------------------------------------------------------
// Stripe's examples

#[tokio::test]
async fn stripes_example_payment_intent_as_published() {
    let fixture = stripe_fixture("payment_intent");
    let intent = intent_from_json(fixture.clone()).await;

    assert_eq!(intent.id, text(&fixture, "id"));
    assert!(intent.id.starts_with("pi_"));
    assert_eq!(Some(intent.amount), fixture["amount"].as_i64());
    assert_eq!(intent.currency, text(&fixture, "currency"));
    assert_eq!(intent.status.as_str(), text(&fixture, "status"));
    assert!(!matches!(intent.status, PaymentIntentStatus::Other(_)));
    assert_eq!(
        intent.client_secret.as_ref().map(|s| s.expose()),
        Some(text(&fixture, "client_secret"))
    );
    assert_eq!(intent.customer, None, "customer is null in the example");
    assert!(intent.metadata.is_empty());
    assert_eq!(intent.latest_charge, None);
    assert_eq!(Some(intent.created), fixture["created"].as_i64());
    // The example's last_payment_error is only `{"type": ...}`.
    assert_eq!(
        intent.last_payment_error,
        Some(PaymentFailure {
            code: None,
            message: "the payment failed".into()
        })
    );
    // The secret never shows in Debug output.
    let debug = format!("{intent:?}");
    assert!(!debug.contains(text(&fixture, "client_secret")), "{debug}");
}

/// kessai's PaymentIntent as Stripe returns it: customer as an id,
/// metadata, a charge.
#[tokio::test]
async fn stripes_payment_intent_with_kessais_fields() {
    let intent = intent_from_json(with(
        stripe_fixture("payment_intent"),
        json!({
            "amount": 16500,
            "amount_received": 16500,
            "currency": "jpy",
            "status": "succeeded",
            "customer": "cus_QXg1o8vcGmoR32",
            "metadata": {"order_id": "42", "order_number": "ACQ-241124-001", "user_id": "7"},
            "latest_charge": "ch_1PgafuB7WZ01zgkWXYmPNZs8",
            "last_payment_error": null,
        }),
    ))
    .await;

    assert_eq!(intent.amount, 16500);
    assert_eq!(intent.currency, "jpy");
    assert_eq!(intent.status, PaymentIntentStatus::Succeeded);
    assert_eq!(intent.customer.as_deref(), Some("cus_QXg1o8vcGmoR32"));
    assert_eq!(
        intent.metadata,
        metadata(&[
            ("order_id", "42"),
            ("order_number", "ACQ-241124-001"),
            ("user_id", "7")
        ])
    );
    assert_eq!(
        intent.latest_charge.as_deref(),
        Some("ch_1PgafuB7WZ01zgkWXYmPNZs8")
    );
    assert_eq!(intent.last_payment_error, None);
}

/// `expand[]=customer&expand[]=latest_charge`: the objects instead of ids.
#[tokio::test]
async fn stripes_payment_intent_with_expanded_customer_and_charge() {
    let customer = with(
        stripe_fixture("customer"),
        json!({"email": "taro@example.com", "metadata": {"kessai_user_id": "7"}}),
    );
    let charge = stripe_fixture("charge");
    let intent = intent_from_json(with(
        stripe_fixture("payment_intent"),
        json!({"status": "succeeded", "customer": customer, "latest_charge": charge}),
    ))
    .await;

    assert_eq!(intent.customer.as_deref(), Some(text(&customer, "id")));
    assert_eq!(intent.latest_charge.as_deref(), Some(text(&charge, "id")));
    assert!(intent.latest_charge.as_deref().unwrap().starts_with("ch_"));
}

#[tokio::test]
async fn a_card_decline_in_last_payment_error_prefers_the_decline_code() {
    let intent = intent_from_json(with(
        stripe_fixture("payment_intent"),
        json!({
            "status": "requires_payment_method",
            "last_payment_error": {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "charge": "ch_1",
                "payment_method": {"id": "pm_1", "object": "payment_method", "type": "card"}
            },
        }),
    ))
    .await;
    assert_eq!(
        intent.last_payment_error,
        Some(PaymentFailure {
            code: Some("insufficient_funds".into()),
            message: "Your card has insufficient funds.".into()
        })
    );

    let intent = intent_from_json(with(
        stripe_fixture("payment_intent"),
        json!({"last_payment_error": {
            "type": "card_error", "code": "expired_card", "message": "Your card has expired."
        }}),
    ))
    .await;
    assert_eq!(
        intent.last_payment_error,
        Some(PaymentFailure {
            code: Some("expired_card".into()),
            message: "Your card has expired.".into()
        })
    );
}

#[tokio::test]
async fn every_status_is_read_and_unknown_ones_are_kept() {
    let statuses = [
        (
            "requires_payment_method",
            PaymentIntentStatus::RequiresPaymentMethod,
        ),
        (
            "requires_confirmation",
            PaymentIntentStatus::RequiresConfirmation,
        ),
        ("requires_action", PaymentIntentStatus::RequiresAction),
        ("processing", PaymentIntentStatus::Processing),
        ("requires_capture", PaymentIntentStatus::RequiresCapture),
        ("canceled", PaymentIntentStatus::Canceled),
        ("succeeded", PaymentIntentStatus::Succeeded),
        (
            "requires_reauthorization",
            PaymentIntentStatus::Other("requires_reauthorization".into()),
        ),
    ];
    for (raw, expected) in statuses {
        let intent = intent_from_json(with(
            stripe_fixture("payment_intent"),
            json!({"status": raw}),
        ))
        .await;
        assert_eq!(intent.status, expected, "{raw}");
    }
}

#[tokio::test]
async fn unknown_fields_and_odd_metadata_are_tolerated() {
    let intent = intent_from_json(with(
        stripe_fixture("payment_intent"),
        json!({
            "kessai_field_from_the_future": {"nested": [1, 2, {"deep": null}]},
            "amount_details": {"tip": {"amount": 100}, "line_items": []},
            "metadata": {"order_id": 42, "flag": true, "note": "ok"},
            "client_secret": null,
            "currency": "JPY",
        }),
    ))
    .await;
    assert_eq!(intent.client_secret, None);
    assert_eq!(intent.currency, "jpy", "currency codes are lower-cased");
    assert_eq!(
        intent.metadata,
        metadata(&[("flag", "true"), ("note", "ok"), ("order_id", "42")])
    );
}

#[tokio::test]
async fn stripes_example_customer() {
    let fixture = stripe_fixture("customer");
    let customer = customer_from(&fixture.to_string()).await;
    assert_eq!(
        customer,
        Customer {
            id: text(&fixture, "id").into(),
            email: None,
            metadata: BTreeMap::new(),
        }
    );
    assert!(customer.id.starts_with("cus_"));

    let customer = customer_from(
        &with(
            fixture.clone(),
            json!({"email": "taro@example.com", "name": "山田 太郎",
                   "metadata": {"kessai_user_id": "7"}}),
        )
        .to_string(),
    )
    .await;
    assert_eq!(customer.email.as_deref(), Some("taro@example.com"));
    assert_eq!(customer.metadata, metadata(&[("kessai_user_id", "7")]));
}

#[tokio::test]
async fn stripes_example_refund() {
    let fixture = stripe_fixture("refund");
    let refund = refund_from(&fixture.to_string()).await;
    assert_eq!(
        refund,
        Refund {
            id: text(&fixture, "id").into(),
            amount: fixture["amount"].as_i64().unwrap(),
            currency: text(&fixture, "currency").into(),
            status: text(&fixture, "status").into(),
            payment_intent: None,
        }
    );
    assert!(refund.id.starts_with("re_"));

    // kessai refunds by PaymentIntent: Stripe echoes its id…
    let refund = refund_from(
        &with(
            fixture.clone(),
            json!({"amount": 5000, "currency": "jpy", "payment_intent": "pi_1", "status": "pending"}),
        )
        .to_string(),
    )
    .await;
    assert_eq!(refund.amount, 5000);
    assert_eq!(refund.currency, "jpy");
    assert_eq!(refund.status, "pending");
    assert_eq!(refund.payment_intent.as_deref(), Some("pi_1"));

    // …or the object, when expanded.
    let intent = stripe_fixture("payment_intent");
    let refund =
        refund_from(&with(fixture, json!({"payment_intent": intent.clone()})).to_string()).await;
    assert_eq!(refund.payment_intent.as_deref(), Some(text(&intent, "id")));
}

// ---------------------------------------------------------------------------
// localstripe's responses (see docs/localstripe.md)

#[tokio::test]
async fn localstripe_created_payment_intent() {
    let intent = intent_from(&localstripe_fixture("payment_intent_created.json")).await;
    assert_eq!(intent.id, "pi_rRJnqWugD0g9aa");
    assert_eq!(intent.amount, 16500);
    assert_eq!(intent.currency, "jpy");
    assert_eq!(intent.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(
        intent.client_secret.as_ref().map(|s| s.expose()),
        Some("pi_rRJnqWugD0g9aa_secret_YoSDUehpjCOvSzVk")
    );
    assert_eq!(intent.customer.as_deref(), Some("cus_lCfHMzjR90Q9eb"));
    assert_eq!(
        intent.metadata,
        metadata(&[
            ("order_id", "1"),
            ("order_number", "ACQ-241124-001"),
            ("user_id", "1")
        ])
    );
    assert_eq!(intent.last_payment_error, None);
    assert_eq!(intent.latest_charge, None);
    assert_eq!(intent.created, 1795562269);
}

/// localstripe stores an updated amount unconverted: `"amount": "17000"`.
#[tokio::test]
async fn localstripe_updated_payment_intent_with_a_string_amount() {
    let body = localstripe_fixture("payment_intent_updated.json");
    assert!(body.contains(r#""amount": "17000""#), "fixture changed");
    let intent = intent_from(&body).await;
    assert_eq!(intent.amount, 17000);
    assert!(intent.charges(jpy(17000)));
    assert_eq!(intent.metadata["order_number"], "ACQ-241124-001b");
}

#[tokio::test]
async fn localstripe_requires_confirmation_and_canceled() {
    let intent = intent_from(&localstripe_fixture(
        "payment_intent_requires_confirmation.json",
    ))
    .await;
    assert_eq!(intent.id, "pi_5K0mNBiZvphdwZ");
    assert_eq!(intent.status, PaymentIntentStatus::RequiresConfirmation);

    let intent = intent_from(&localstripe_fixture("payment_intent_canceled.json")).await;
    assert_eq!(intent.id, "pi_JQ5zLs3syoQ4Yz");
    assert_eq!(intent.status, PaymentIntentStatus::Canceled);
    assert_eq!(intent.metadata["order_id"], "4");
}

/// localstripe embeds the charge object in `latest_charge`, unasked.
#[tokio::test]
async fn localstripe_succeeded_payment_intent_with_an_embedded_charge() {
    let intent = intent_from(&localstripe_fixture("payment_intent_succeeded.json")).await;
    assert_eq!(intent.status, PaymentIntentStatus::Succeeded);
    assert_eq!(intent.latest_charge.as_deref(), Some("ch_fcvadcrcEYXvSk"));
    assert_eq!(intent.last_payment_error, None);
    assert_eq!(intent.amount, 16500);
}

#[tokio::test]
async fn localstripe_failed_payment_intent() {
    let intent = intent_from(&localstripe_fixture("payment_intent_payment_failed.json")).await;
    assert_eq!(intent.id, "pi_FUVrOgA0yBnLiB");
    assert_eq!(intent.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(
        intent.last_payment_error,
        Some(PaymentFailure {
            code: Some("card_declined".into()),
            message: "Your card was declined.".into()
        })
    );
    assert_eq!(intent.latest_charge.as_deref(), Some("ch_Oz0SzC6oyeGiKk"));
}

#[tokio::test]
async fn localstripe_customer() {
    let customer = customer_from(&localstripe_fixture("customer.json")).await;
    assert_eq!(
        customer,
        Customer {
            id: "cus_lCfHMzjR90Q9eb".into(),
            email: Some("taro@example.com".into()),
            metadata: metadata(&[("kessai_user_id", "1")]),
        }
    );
}

#[tokio::test]
async fn localstripe_refund() {
    let refund = refund_from(&localstripe_fixture("refund.json")).await;
    assert_eq!(
        refund,
        Refund {
            id: "re_lHJXK3BcK5b23H".into(),
            amount: 5000,
            currency: "jpy".into(),
            status: "succeeded".into(),
            payment_intent: Some("pi_XI012SHsjAJCWu".into()),
        }
    );
}

#[tokio::test]
async fn localstripe_error_bodies() {
    let cases = [
        (404, "error_404.json", "Not Found"),
        (400, "error_400.json", "Bad request"),
        (
            400,
            "error_unexpected_param.json",
            "Unexpected automatic_payment_methods",
        ),
    ];
    for (status, file, message) in cases {
        let server = serve(
            ResponseTemplate::new(status)
                .set_body_raw(localstripe_fixture(file).into_bytes(), "application/json"),
        )
        .await;
        let error = client(&server)
            .retrieve_payment_intent("pi_1")
            .await
            .unwrap_err();
        assert_eq!(
            error,
            GatewayError::InvalidRequest {
                status,
                code: None,
                param: None,
                message: message.into(),
            },
            "{file}"
        );
        assert_eq!(error.is_not_found(), status == 404, "{file}");
    }
}

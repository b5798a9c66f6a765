//! The exact HTTP request of each gateway call, and what its answer becomes.
//!
//! The mocks match on everything (method, path, headers, exact body), so a
//! wrong request gets no success answer; `assert_request` then says what
//! differed.

use application::ports::payment_gateway::{
    Customer, GatewayError, NewCustomer, NewPaymentIntent, NewRefund, PaymentGateway,
    PaymentIntentStatus,
};
use domain::{Currency, Money};
use serde_json::json;
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    assert_request, client, jpy, key, metadata, payment_intent_json, received, stripe_fixture,
    with, Expected, SECRET_KEY,
};

/// Mounts a mock answering `response` to exactly the request described,
/// expected exactly once.
async fn expect_once(server: &MockServer, expected: &Expected<'_>, response: ResponseTemplate) {
    let mut mock = Mock::given(method(expected.method))
        .and(path(expected.path))
        .and(header("authorization", format!("Bearer {SECRET_KEY}")))
        .and(header("stripe-version", "2024-06-20"))
        .and(body_string(expected.body));
    if let Some(k) = expected.idempotency_key {
        mock = mock.and(header("idempotency-key", k));
    }
    mock.respond_with(response).expect(1).mount(server).await;
}

/// The one request the server received, checked in full.
async fn only_request(server: &MockServer, expected: &Expected<'_>) {
    let requests = received(server).await;
    assert_eq!(requests.len(), 1, "exactly one request: {requests:#?}");
    assert_request(&requests[0], expected);
}

#[tokio::test]
async fn create_customer_posts_email_name_and_metadata() {
    let server = MockServer::start().await;
    let expected = Expected {
        method: "POST",
        path: "/v1/customers",
        idempotency_key: Some("kessai-user-7-customer-v1"),
        body: "email=taro%2Btest%40example.com&name=%E5%B1%B1%E7%94%B0+%E5%A4%AA%E9%83%8E\
               &metadata%5Bkessai_user_id%5D=7",
        form: &[
            ("email", "taro+test@example.com"),
            ("name", "山田 太郎"),
            ("metadata[kessai_user_id]", "7"),
        ],
    };
    let answer = with(
        stripe_fixture("customer"),
        json!({
            "id": "cus_QXg1o8vcGmoR32",
            "email": "taro+test@example.com",
            "name": "山田 太郎",
            "metadata": {"kessai_user_id": "7"},
        }),
    );
    expect_once(
        &server,
        &expected,
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;

    let customer = client(&server)
        .create_customer(
            &NewCustomer {
                email: "taro+test@example.com".into(),
                name: Some("山田 太郎".into()),
                metadata: metadata(&[("kessai_user_id", "7")]),
            },
            &key("kessai-user-7-customer-v1"),
        )
        .await;

    only_request(&server, &expected).await;
    assert_eq!(
        customer.unwrap(),
        Customer {
            id: "cus_QXg1o8vcGmoR32".into(),
            email: Some("taro+test@example.com".into()),
            metadata: metadata(&[("kessai_user_id", "7")]),
        }
    );
}

#[tokio::test]
async fn create_customer_without_a_name_sends_no_name() {
    let server = MockServer::start().await;
    let expected = Expected {
        method: "POST",
        path: "/v1/customers",
        idempotency_key: Some("kessai-user-8-customer-v1"),
        body: "email=hanako%40example.com",
        form: &[("email", "hanako@example.com")],
    };
    let answer = with(
        stripe_fixture("customer"),
        json!({"id": "cus_2", "email": "hanako@example.com"}),
    );
    expect_once(
        &server,
        &expected,
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;

    let customer = client(&server)
        .create_customer(
            &NewCustomer {
                email: "hanako@example.com".into(),
                name: None,
                metadata: Default::default(),
            },
            &key("kessai-user-8-customer-v1"),
        )
        .await;

    only_request(&server, &expected).await;
    let customer = customer.unwrap();
    assert_eq!(customer.id, "cus_2");
    assert!(customer.metadata.is_empty());
}

#[tokio::test]
async fn create_payment_intent_posts_amount_currency_customer_and_metadata() {
    let server = MockServer::start().await;
    let expected = Expected {
        method: "POST",
        path: "/v1/payment_intents",
        idempotency_key: Some("kessai-order-42-intent-v1"),
        body: "amount=16500&currency=jpy&customer=cus_1&metadata%5Border_id%5D=42\
               &metadata%5Border_number%5D=ACQ-241124-001&metadata%5Buser_id%5D=7",
        form: &[
            ("amount", "16500"),
            ("currency", "jpy"),
            ("customer", "cus_1"),
            ("metadata[order_id]", "42"),
            ("metadata[order_number]", "ACQ-241124-001"),
            ("metadata[user_id]", "7"),
        ],
    };
    expect_once(
        &server,
        &expected,
        ResponseTemplate::new(200).set_body_json(payment_intent_json(
            "pi_3MtwBwLkdIwHu7ix28a3tqPa",
            16500,
            "requires_payment_method",
        )),
    )
    .await;

    let intent = client(&server)
        .create_payment_intent(
            &NewPaymentIntent {
                amount: jpy(16500),
                customer: Some("cus_1".into()),
                metadata: metadata(&[
                    ("user_id", "7"),
                    ("order_number", "ACQ-241124-001"),
                    ("order_id", "42"),
                ]),
            },
            &key("kessai-order-42-intent-v1"),
        )
        .await;

    only_request(&server, &expected).await;
    let intent = intent.unwrap();
    assert_eq!(intent.id, "pi_3MtwBwLkdIwHu7ix28a3tqPa");
    assert_eq!(intent.amount, 16500);
    assert_eq!(intent.currency, "jpy");
    assert!(intent.charges(jpy(16500)));
    assert_eq!(intent.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(
        intent.client_secret.as_ref().map(|s| s.expose()),
        Some("pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_Dm43xiq1k0ywrRRjDoi8y1gkM")
    );
    assert_eq!(intent.customer.as_deref(), Some("cus_1"));
    assert_eq!(
        intent.metadata,
        metadata(&[
            ("order_id", "42"),
            ("order_number", "ACQ-241124-001"),
            ("user_id", "7")
        ])
    );
    assert_eq!(intent.last_payment_error, None);
    assert_eq!(intent.latest_charge, None);
    assert_eq!(intent.created, 1732400000);
}

#[tokio::test]
async fn create_payment_intent_without_customer_or_metadata() {
    let server = MockServer::start().await;
    let expected = Expected {
        method: "POST",
        path: "/v1/payment_intents",
        idempotency_key: Some("kessai-order-43-intent-v1"),
        body: "amount=1099&currency=usd",
        form: &[("amount", "1099"), ("currency", "usd")],
    };
    let answer = with(
        stripe_fixture("payment_intent"),
        json!({"last_payment_error": null}),
    );
    expect_once(
        &server,
        &expected,
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;

    let intent = client(&server)
        .create_payment_intent(
            &NewPaymentIntent {
                amount: Money::new(1099, Currency::Usd).unwrap(),
                customer: None,
                metadata: Default::default(),
            },
            &key("kessai-order-43-intent-v1"),
        )
        .await;

    only_request(&server, &expected).await;
    let intent = intent.unwrap();
    assert_eq!(intent.customer, None);
    assert!(intent.charges(Money::new(1099, Currency::Usd).unwrap()));
}

#[tokio::test]
async fn retrieve_payment_intent_is_a_get_without_body_or_idempotency_key() {
    let server = MockServer::start().await;
    let expected = Expected {
        method: "GET",
        path: "/v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa",
        idempotency_key: None,
        body: "",
        form: &[],
    };
    expect_once(
        &server,
        &expected,
        ResponseTemplate::new(200).set_body_json(payment_intent_json(
            "pi_3MtwBwLkdIwHu7ix28a3tqPa",
            16500,
            "processing",
        )),
    )
    .await;

    let intent = client(&server)
        .retrieve_payment_intent("pi_3MtwBwLkdIwHu7ix28a3tqPa")
        .await;

    only_request(&server, &expected).await;
    let intent = intent.unwrap();
    assert_eq!(intent.id, "pi_3MtwBwLkdIwHu7ix28a3tqPa");
    assert_eq!(intent.status, PaymentIntentStatus::Processing);
}

#[tokio::test]
async fn update_payment_intent_amount_posts_amount_and_currency() {
    let server = MockServer::start().await;
    let expected = Expected {
        method: "POST",
        path: "/v1/payment_intents/pi_1",
        idempotency_key: Some("kessai-order-42-amount-17000"),
        body: "amount=17000&currency=jpy",
        form: &[("amount", "17000"), ("currency", "jpy")],
    };
    expect_once(
        &server,
        &expected,
        ResponseTemplate::new(200).set_body_json(payment_intent_json(
            "pi_1",
            17000,
            "requires_payment_method",
        )),
    )
    .await;

    let intent = client(&server)
        .update_payment_intent_amount("pi_1", jpy(17000), &key("kessai-order-42-amount-17000"))
        .await;

    only_request(&server, &expected).await;
    let intent = intent.unwrap();
    assert_eq!(intent.id, "pi_1");
    assert_eq!(intent.amount, 17000);
}

#[tokio::test]
async fn cancel_payment_intent_posts_an_empty_form() {
    let server = MockServer::start().await;
    let expected = Expected {
        method: "POST",
        path: "/v1/payment_intents/pi_1/cancel",
        idempotency_key: Some("kessai-order-42-cancel"),
        body: "",
        form: &[],
    };
    let answer = with(
        payment_intent_json("pi_1", 16500, "canceled"),
        json!({"canceled_at": 1732400100, "cancellation_reason": "requested_by_customer"}),
    );
    expect_once(
        &server,
        &expected,
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;

    let intent = client(&server)
        .cancel_payment_intent("pi_1", &key("kessai-order-42-cancel"))
        .await;

    only_request(&server, &expected).await;
    assert_eq!(intent.unwrap().status, PaymentIntentStatus::Canceled);
}

#[tokio::test]
async fn create_refund_of_part_posts_payment_intent_and_amount() {
    let server = MockServer::start().await;
    let expected = Expected {
        method: "POST",
        path: "/v1/refunds",
        idempotency_key: Some("kessai-order-42-refund-1"),
        body: "payment_intent=pi_1&amount=5000",
        form: &[("payment_intent", "pi_1"), ("amount", "5000")],
    };
    let answer = with(
        stripe_fixture("refund"),
        json!({"id": "re_1", "amount": 5000, "currency": "jpy", "payment_intent": "pi_1"}),
    );
    expect_once(
        &server,
        &expected,
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;

    let refund = client(&server)
        .create_refund(
            &NewRefund {
                payment_intent: "pi_1".into(),
                amount: Some(jpy(5000)),
            },
            &key("kessai-order-42-refund-1"),
        )
        .await;

    only_request(&server, &expected).await;
    let refund = refund.unwrap();
    assert_eq!(refund.id, "re_1");
    assert_eq!(refund.amount, 5000);
    assert_eq!(refund.currency, "jpy");
    assert_eq!(refund.status, "succeeded");
    assert_eq!(refund.payment_intent.as_deref(), Some("pi_1"));
}

#[tokio::test]
async fn create_refund_of_everything_sends_no_amount() {
    let server = MockServer::start().await;
    let expected = Expected {
        method: "POST",
        path: "/v1/refunds",
        idempotency_key: Some("kessai-order-42-refund-all"),
        body: "payment_intent=pi_1",
        form: &[("payment_intent", "pi_1")],
    };
    let answer = with(
        stripe_fixture("refund"),
        json!({"id": "re_2", "amount": 16500, "currency": "jpy", "payment_intent": "pi_1",
               "status": "pending"}),
    );
    expect_once(
        &server,
        &expected,
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;

    let refund = client(&server)
        .create_refund(
            &NewRefund {
                payment_intent: "pi_1".into(),
                amount: None,
            },
            &key("kessai-order-42-refund-all"),
        )
        .await;

    only_request(&server, &expected).await;
    let refund = refund.unwrap();
    assert_eq!(refund.amount, 16500);
    assert_eq!(refund.status, "pending");
}

/// Ids go into the path: anything that could change the path is refused
/// before a request is made.
#[tokio::test]
async fn ids_that_could_change_the_path_are_refused_without_a_request() {
    let server = MockServer::start().await;
    let gateway = client(&server);
    let k = key("kessai-order-42-x");
    for bad in [
        "",
        "pi_1/cancel",
        "../v1/customers",
        "pi_1?expand[]=customer",
        "pi 1",
    ] {
        let results: Vec<GatewayError> = vec![
            gateway.retrieve_payment_intent(bad).await.unwrap_err(),
            gateway
                .update_payment_intent_amount(bad, jpy(1), &k)
                .await
                .unwrap_err(),
            gateway.cancel_payment_intent(bad, &k).await.unwrap_err(),
            gateway
                .create_refund(
                    &NewRefund {
                        payment_intent: bad.into(),
                        amount: None,
                    },
                    &k,
                )
                .await
                .unwrap_err(),
        ];
        for error in results {
            assert!(
                matches!(&error, GatewayError::InvalidRequest { code: Some(c), .. } if c == "invalid_id"),
                "{bad:?}: {error:?}"
            );
        }
    }
    assert!(received(&server).await.is_empty());
}

/// `api_base` is joined with `/v1/...`: host and port come from it.
#[tokio::test]
async fn requests_go_to_the_configured_host_and_port() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(payment_intent_json(
                "pi_1",
                16500,
                "succeeded",
            )),
        )
        .expect(1)
        .mount(&server)
        .await;
    // A trailing slash on the base makes no difference.
    let gateway =
        crate::support::client_with(crate::support::config_for(&format!("{}/", server.uri())));
    assert_eq!(
        gateway
            .retrieve_payment_intent("pi_1")
            .await
            .unwrap()
            .status,
        PaymentIntentStatus::Succeeded
    );
}

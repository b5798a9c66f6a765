//! Retries: what is retried (5xx, 409, 429, network failures, or whatever
//! `Stripe-Should-Retry` says), how often (`max_retries` + 1 attempts), how
//! long it waits (`Retry-After`, capped), and that every attempt of a POST
//! carries the same idempotency key and body.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use application::ports::payment_gateway::{
    GatewayError, NewPaymentIntent, PaymentGateway, PaymentIntentStatus,
};
use infrastructure::stripe::{RetryPolicy, StripeClient};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{
    body, client, client_with, config_for, header, jpy, key, metadata, payment_intent_json,
    received, SECRET_KEY,
};

const KEY: &str = "kessai-order-42-intent-v1";

fn new_intent() -> NewPaymentIntent {
    NewPaymentIntent {
        amount: jpy(16500),
        customer: Some("cus_1".into()),
        metadata: metadata(&[("order_id", "42")]),
    }
}

async fn create_intent(gateway: &StripeClient) -> Result<PaymentIntentStatus, GatewayError> {
    gateway
        .create_payment_intent(&new_intent(), &key(KEY))
        .await
        .map(|intent| intent.status)
}

fn api_error(kind: &str, message: &str) -> serde_json::Value {
    json!({"error": {"type": kind, "message": message}})
}

fn ok_intent() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(payment_intent_json(
        "pi_1",
        16500,
        "requires_payment_method",
    ))
}

/// `first` once, then `then` for every later request, on POST /v1/payment_intents.
async fn answer_once_then(server: &MockServer, first: ResponseTemplate, then: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(then)
        .mount(server)
        .await;
}

async fn always(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(response)
        .mount(server)
        .await;
}

/// Every request is the same POST with the same idempotency key and body.
fn assert_identical_attempts(requests: &[Request], attempts: usize) {
    assert_eq!(requests.len(), attempts, "attempts: {requests:#?}");
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(request.method.as_str(), "POST", "attempt {i}");
        assert_eq!(request.url.path(), "/v1/payment_intents", "attempt {i}");
        assert_eq!(
            header(request, "idempotency-key").as_deref(),
            Some(KEY),
            "attempt {i}: the idempotency key never changes between attempts"
        );
        assert_eq!(
            body(request),
            "amount=16500&currency=jpy&customer=cus_1&metadata%5Border_id%5D=42",
            "attempt {i}: body"
        );
    }
}

#[tokio::test]
async fn a_server_error_is_retried_with_the_same_idempotency_key() {
    let server = MockServer::start().await;
    answer_once_then(
        &server,
        ResponseTemplate::new(500).set_body_json(api_error("api_error", "Something went wrong")),
        ok_intent(),
    )
    .await;

    let status = create_intent(&client(&server)).await;

    assert_eq!(status.unwrap(), PaymentIntentStatus::RequiresPaymentMethod);
    assert_identical_attempts(&received(&server).await, 2);
}

#[tokio::test]
async fn a_get_is_retried_after_a_server_error_too() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_1"))
        .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_1"))
        .respond_with(ok_intent())
        .mount(&server)
        .await;

    let intent = client(&server).retrieve_payment_intent("pi_1").await;

    assert_eq!(intent.unwrap().id, "pi_1");
    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.method.as_str(), "GET");
        assert_eq!(header(request, "idempotency-key"), None);
    }
}

#[tokio::test]
async fn a_lock_conflict_409_is_retried() {
    let server = MockServer::start().await;
    answer_once_then(
        &server,
        ResponseTemplate::new(409).set_body_json(json!({"error": {
            "type": "invalid_request_error",
            "code": "lock_timeout",
            "message": "This object cannot be accessed right now because another API request or Stripe process is currently accessing it."
        }})),
        ok_intent(),
    )
    .await;

    let status = create_intent(&client(&server)).await;

    assert_eq!(status.unwrap(), PaymentIntentStatus::RequiresPaymentMethod);
    assert_identical_attempts(&received(&server).await, 2);
}

#[tokio::test]
async fn a_rate_limit_is_retried_and_retry_after_is_capped_by_max_delay() {
    let server = MockServer::start().await;
    answer_once_then(
        &server,
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "2")
            .set_body_json(api_error(
                "invalid_request_error",
                "Too many requests hit the API too quickly.",
            )),
        ok_intent(),
    )
    .await;

    let started = Instant::now();
    let status = create_intent(&client(&server)).await;
    let elapsed = started.elapsed();

    assert_eq!(status.unwrap(), PaymentIntentStatus::RequiresPaymentMethod);
    assert_identical_attempts(&received(&server).await, 2);
    // max_delay is 50 ms: a Retry-After of 2 s must not be waited out.
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}

#[tokio::test]
async fn retry_after_is_waited_when_below_max_delay() {
    let server = MockServer::start().await;
    answer_once_then(
        &server,
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "1")
            .set_body_json(api_error("invalid_request_error", "Too many requests")),
        ok_intent(),
    )
    .await;
    let mut config = config_for(&server.uri());
    config.retry = RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
    };

    let started = Instant::now();
    let status = create_intent(&client_with(config)).await;
    let elapsed = started.elapsed();

    assert_eq!(status.unwrap(), PaymentIntentStatus::RequiresPaymentMethod);
    assert_identical_attempts(&received(&server).await, 2);
    // Without Retry-After the backoff would be at most 10 ms.
    assert!(elapsed >= Duration::from_millis(950), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1900), "took {elapsed:?}");
}

/// Client errors other than 409 and 429 are final: one request only.
#[tokio::test]
async fn client_errors_are_not_retried() {
    let cases = [
        (400, "invalid_request_error", None),
        (401, "invalid_request_error", None),
        (402, "card_error", Some("card_declined")),
        (403, "invalid_request_error", None),
        (404, "invalid_request_error", Some("resource_missing")),
    ];
    for (status, kind, code) in cases {
        let server = MockServer::start().await;
        always(
            &server,
            ResponseTemplate::new(status).set_body_json(json!({"error": {
                "type": kind, "code": code, "message": format!("HTTP {status}")
            }})),
        )
        .await;

        let result = create_intent(&client(&server)).await;

        assert!(result.is_err(), "{status}: {result:?}");
        assert_identical_attempts(&received(&server).await, 1);
    }
}

#[tokio::test]
async fn stripe_should_retry_false_on_a_500_is_not_retried() {
    let server = MockServer::start().await;
    always(
        &server,
        ResponseTemplate::new(500)
            .insert_header("Stripe-Should-Retry", "false")
            .set_body_json(api_error("api_error", "Do not retry this one")),
    )
    .await;

    let result = create_intent(&client(&server)).await;

    assert_eq!(
        result.unwrap_err(),
        GatewayError::Api {
            status: 500,
            message: "Do not retry this one".into()
        }
    );
    assert_identical_attempts(&received(&server).await, 1);
}

#[tokio::test]
async fn stripe_should_retry_false_overrides_409_and_429() {
    for status in [409, 429] {
        let server = MockServer::start().await;
        always(
            &server,
            ResponseTemplate::new(status)
                .insert_header("Stripe-Should-Retry", "false")
                .set_body_json(api_error("invalid_request_error", "no")),
        )
        .await;

        let result = create_intent(&client(&server)).await;

        assert!(result.is_err(), "{status}");
        assert_identical_attempts(&received(&server).await, 1);
    }
}

#[tokio::test]
async fn stripe_should_retry_true_on_a_400_is_retried() {
    let server = MockServer::start().await;
    answer_once_then(
        &server,
        ResponseTemplate::new(400)
            .insert_header("Stripe-Should-Retry", "true")
            .set_body_json(api_error("invalid_request_error", "transient")),
        ok_intent(),
    )
    .await;

    let status = create_intent(&client(&server)).await;

    assert_eq!(status.unwrap(), PaymentIntentStatus::RequiresPaymentMethod);
    assert_identical_attempts(&received(&server).await, 2);
}

#[tokio::test]
async fn gives_up_after_max_retries_plus_one_attempts() {
    let server = MockServer::start().await;
    always(
        &server,
        ResponseTemplate::new(502).set_body_json(api_error("api_error", "Bad gateway")),
    )
    .await;

    let result = create_intent(&client(&server)).await;

    assert_eq!(
        result.unwrap_err(),
        GatewayError::Api {
            status: 502,
            message: "Bad gateway".into()
        }
    );
    assert_identical_attempts(&received(&server).await, 4);
}

#[tokio::test]
async fn max_retries_zero_means_a_single_attempt() {
    let server = MockServer::start().await;
    always(
        &server,
        ResponseTemplate::new(500).set_body_json(api_error("api_error", "boom")),
    )
    .await;
    let mut config = config_for(&server.uri());
    config.retry.max_retries = 0;

    let result = create_intent(&client_with(config)).await;

    assert!(matches!(result, Err(GatewayError::Api { status: 500, .. })));
    assert_identical_attempts(&received(&server).await, 1);
}

fn assert_no_secret(error: &GatewayError) {
    let text = format!("{error} {error:?}");
    assert!(!text.contains(SECRET_KEY), "the key leaked: {text}");
}

#[tokio::test]
async fn a_refused_connection_is_a_network_error_with_a_known_outcome_after_retries() {
    let mut config = config_for(&test_support::closed_port_url());
    // Each backoff is 50–100 ms here, so three retries take at least 150 ms,
    // while one refused connection takes a millisecond.
    config.retry = RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(100),
    };

    let started = Instant::now();
    let result = create_intent(&client_with(config)).await;
    let elapsed = started.elapsed();

    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            GatewayError::Network {
                outcome_unknown: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert_no_secret(&error);
    assert!(
        elapsed >= Duration::from_millis(150),
        "retried 3 times? took {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[tokio::test]
async fn a_timeout_is_a_network_error_with_an_unknown_outcome_after_retries() {
    let server = MockServer::start().await;
    always(&server, ok_intent().set_delay(Duration::from_secs(3))).await;
    let mut config = config_for(&server.uri());
    config.request_timeout = Duration::from_millis(200);

    let started = Instant::now();
    let result = create_intent(&client_with(config)).await;
    let elapsed = started.elapsed();

    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            GatewayError::Network {
                outcome_unknown: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert_no_secret(&error);
    // Each attempt was sent, with the same key, and timed out.
    assert_identical_attempts(&received(&server).await, 4);
    assert!(elapsed >= Duration::from_millis(800), "took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

/// A server that reads each request and hangs up without answering: the
/// request reached it, so it may have been applied.
async fn hang_up_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                if socket.readable().await.is_err() {
                    break;
                }
                match socket.try_read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => break,
                }
            }
            drop(socket);
        }
    });
    (url, connections)
}

#[tokio::test]
async fn a_connection_lost_after_sending_is_a_network_error_with_an_unknown_outcome() {
    let (url, connections) = hang_up_server().await;

    let result = create_intent(&client_with(config_for(&url))).await;

    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            GatewayError::Network {
                outcome_unknown: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert_no_secret(&error);
    assert_eq!(connections.load(Ordering::SeqCst), 4, "attempts");
}

/// A request that cannot even be built (here an idempotency key that is not
/// a valid header value) never reached the provider: nothing to retry, and
/// its outcome is known.
#[tokio::test]
async fn a_request_that_cannot_be_built_is_not_sent_nor_retried() {
    let server = MockServer::start().await;
    always(&server, ok_intent()).await;

    let result = client(&server)
        .create_payment_intent(&new_intent(), &key("kessai-order-42\r\nX-Injected: 1"))
        .await;

    let error = result.unwrap_err();
    assert!(
        matches!(error, GatewayError::InvalidRequest { status: 0, .. }),
        "nothing was sent: {error:?}"
    );
    assert_no_secret(&error);
    assert!(received(&server).await.is_empty());
}

/// The same with a secret key that is not a valid header value (a stray
/// control character pasted with it).
#[tokio::test]
async fn a_secret_key_that_is_not_a_header_value_fails_at_once() {
    let server = MockServer::start().await;
    always(&server, ok_intent()).await;
    let mut config = config_for(&server.uri());
    config.secret_key = secrecy::SecretString::from(format!("{SECRET_KEY}\u{7}"));

    let error = create_intent(&client_with(config)).await.unwrap_err();

    assert!(
        matches!(error, GatewayError::InvalidRequest { status: 0, .. }),
        "nothing was sent: {error:?}"
    );
    assert_no_secret(&error);
    assert!(received(&server).await.is_empty());
}

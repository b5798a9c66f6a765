//! What only kessai's emulator can show about the client (localstripe
//! ignores `Idempotency-Key` and cannot fail on purpose): idempotent
//! replays and their refusals, retries through injected 500s, 429s, dropped
//! connections and latency, and answers lost after Stripe acted. Each test
//! runs its own emulator (`behaviour::EmulatorBackend`), so every object and
//! event in it is the test's own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use application::ports::payment_gateway::{
    GatewayError, IdempotencyKey, NewCustomer, NewPaymentIntent, NewRefund, PaymentGateway,
    PaymentIntent, PaymentIntentStatus,
};
use infrastructure::stripe::{RetryPolicy, StripeClient, StripeConfig};
use serde_json::Value;
use stripe_emulator::Faults;

use crate::behaviour::{EmulatorBackend, StripeBackend, TestCard};
use crate::support::{client_with, jpy, key, metadata, SECRET_KEY};

/// The test client, with `retry` and `request_timeout`.
fn gateway_for(backend: &EmulatorBackend, retry: RetryPolicy, timeout: Duration) -> StripeClient {
    let mut config: StripeConfig = backend.config(SECRET_KEY);
    config.retry = retry;
    config.request_timeout = timeout;
    client_with(config)
}

/// The suite's usual client (3 retries, 10–50 ms apart).
fn gateway(backend: &EmulatorBackend) -> StripeClient {
    client_with(backend.config(SECRET_KEY))
}

/// Many quick retries: 40 of them take at least ~0.4 s in all (backoff
/// draws between half and all of 5 ms × 2^n, capped at 20 ms).
fn patient() -> RetryPolicy {
    RetryPolicy {
        max_retries: 40,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    }
}

fn order_intent(amount: i64) -> NewPaymentIntent {
    NewPaymentIntent {
        amount: jpy(amount),
        customer: None,
        metadata: metadata(&[("order_id", "42"), ("user_id", "7")]),
    }
}

fn faults(f: impl FnOnce(&mut Faults)) -> Faults {
    let mut faults = Faults::default();
    f(&mut faults);
    faults
}

/// Sets `faults` now and clears them after `after`, while the caller's
/// request is being retried.
fn faults_for(backend: &EmulatorBackend, faults: Faults, after: Duration) {
    backend.emulator.set_faults(faults);
    let emulator = backend.emulator.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        emulator.set_faults(Faults::default());
    });
}

/// The one `payment_intent.created` event, for `intent` and with `key`.
fn assert_created_once(backend: &EmulatorBackend, intent: &str, key: &IdempotencyKey) {
    let created = backend.events_of("payment_intent.created");
    assert_eq!(
        backend.created_intents(),
        vec![intent.to_string()],
        "exactly one PaymentIntent created: {created:#?}"
    );
    assert_eq!(
        created[0]["request"]["idempotency_key"],
        key.as_str(),
        "{:#}",
        created[0]
    );
}

// ---------------------------------------------------------------------------
// Idempotency

#[tokio::test]
async fn the_same_key_and_request_return_the_same_payment_intent() {
    let backend = EmulatorBackend::start().await;
    let gateway = gateway(&backend);
    let key = key("kessai-order-42-intent-v1");

    let first = gateway
        .create_payment_intent(&order_intent(16500), &key)
        .await
        .unwrap();
    let again = gateway
        .create_payment_intent(&order_intent(16500), &key)
        .await
        .unwrap();

    assert_eq!(again.id, first.id);
    assert_eq!(again, first, "the first answer, replayed");
    assert_created_once(&backend, &first.id, &key);
    // The same through the API, as an operator would look.
    let listed = backend
        .get_json("/v1/events?type=payment_intent.created")
        .await;
    let listed = listed["data"].as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["data"]["object"]["id"], first.id.as_str());
}

#[tokio::test]
async fn the_same_key_with_another_amount_is_an_idempotency_error() {
    let backend = EmulatorBackend::start().await;
    let gateway = gateway(&backend);
    let key = key("kessai-order-43-intent-v1");
    let first = gateway
        .create_payment_intent(&order_intent(16500), &key)
        .await
        .unwrap();

    let error = gateway
        .create_payment_intent(&order_intent(17000), &key)
        .await
        .unwrap_err();

    let GatewayError::Idempotency { message } = &error else {
        panic!("not an idempotency error: {error:?}");
    };
    assert!(message.contains("same parameters"), "{message}");
    assert_created_once(&backend, &first.id, &key);
    let read = gateway.retrieve_payment_intent(&first.id).await.unwrap();
    assert_eq!(read.amount, 16500, "the first request stands");
    // The original request with its key still replays.
    let again = gateway
        .create_payment_intent(&order_intent(16500), &key)
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
}

#[tokio::test]
async fn a_key_used_on_another_endpoint_is_an_idempotency_error() {
    let backend = EmulatorBackend::start().await;
    let gateway = gateway(&backend);
    let key = key("kessai-user-7-customer-v1");
    gateway
        .create_customer(
            &NewCustomer {
                email: "taro@example.jp".into(),
                name: None,
                metadata: metadata(&[]),
            },
            &key,
        )
        .await
        .unwrap();

    let error = gateway
        .create_payment_intent(&order_intent(16500), &key)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, GatewayError::Idempotency { message } if message.contains("same endpoint")),
        "{error:?}"
    );
    assert!(backend.created_intents().is_empty());
}

#[tokio::test]
async fn a_refund_sent_twice_with_its_key_refunds_once() {
    let backend = EmulatorBackend::start().await;
    let gateway = gateway(&backend);
    let intent = gateway
        .create_payment_intent(&order_intent(16500), &key("kessai-order-44-intent-v1"))
        .await
        .unwrap();
    backend.confirm(&intent, TestCard::Succeeds).await;
    let refund = NewRefund {
        payment_intent: intent.id.clone(),
        amount: Some(jpy(5000)),
    };
    let refund_key = key("kessai-refund-9-v1");

    let first = gateway.create_refund(&refund, &refund_key).await.unwrap();
    let again = gateway.create_refund(&refund, &refund_key).await.unwrap();

    assert_eq!(again, first);
    let created = backend.events_of("refund.created");
    assert_eq!(created.len(), 1, "{created:#?}");
    assert_eq!(created[0]["data"]["object"]["id"], first.id.as_str());
    // Only 5000 was taken: the whole rest is 11500.
    let rest = gateway
        .create_refund(
            &NewRefund {
                payment_intent: intent.id.clone(),
                amount: None,
            },
            &key("kessai-refund-10-v1"),
        )
        .await
        .unwrap();
    assert_eq!(rest.amount, 11500);
}

// ---------------------------------------------------------------------------
// Retries under injected faults

/// Faults `f` on every request for 100 ms, then none: the create must
/// succeed through retries, creating one intent.
async fn retried_through(f: impl FnOnce(&mut Faults)) {
    let backend = EmulatorBackend::start().await;
    let gateway = gateway_for(&backend, patient(), Duration::from_secs(5));
    let key = key("kessai-order-45-intent-v1");
    faults_for(&backend, faults(f), Duration::from_millis(100));

    let started = Instant::now();
    let intent = gateway
        .create_payment_intent(&order_intent(16500), &key)
        .await
        .unwrap();

    // The first attempt met the fault, so at least one retry came after it
    // was lifted.
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "succeeded after {:?}, while every request was faulted",
        started.elapsed()
    );
    assert_eq!(intent.amount, 16500);
    assert_created_once(&backend, &intent.id, &key);
}

#[tokio::test]
async fn server_errors_are_retried_until_the_intent_is_created_once() {
    retried_through(|f| f.error_rate = 1.0).await;
}

#[tokio::test]
async fn rate_limits_are_retried_until_the_intent_is_created_once() {
    retried_through(|f| f.rate_limit_rate = 1.0).await;
}

#[tokio::test]
async fn dropped_connections_are_retried_until_the_intent_is_created_once() {
    retried_through(|f| f.drop_connection_rate = 1.0).await;
}

#[tokio::test]
async fn under_random_faults_every_call_succeeds_and_acts_once() {
    let backend = EmulatorBackend::start().await;
    let gateway = gateway_for(&backend, patient(), Duration::from_secs(5));
    // Half of all requests fail, before the emulator acts; with 41
    // attempts a call fails with odds of 2^-41.
    backend.emulator.set_faults(faults(|f| {
        f.error_rate = 0.2;
        f.rate_limit_rate = 0.15;
        f.drop_connection_rate = 0.15;
    }));

    let mut ids = Vec::new();
    for order in 0..6 {
        let key = key(&format!("kessai-order-{order}-intent-v1"));
        let intent = gateway
            .create_payment_intent(&order_intent(16500), &key)
            .await
            .unwrap();
        let updated = gateway
            .update_payment_intent_amount(
                &intent.id,
                jpy(17000 + order),
                &crate::support::key(&format!("kessai-order-{order}-amount-v1")),
            )
            .await
            .unwrap();
        assert_eq!(updated.amount, 17000 + order);
        let read = gateway.retrieve_payment_intent(&intent.id).await.unwrap();
        assert_eq!(read.amount, 17000 + order);
        ids.push(intent.id);
    }
    let canceled = gateway
        .cancel_payment_intent(&ids[0], &key("kessai-order-0-cancel-v1"))
        .await
        .unwrap();
    assert_eq!(canceled.status, PaymentIntentStatus::Canceled);

    backend.emulator.set_faults(Faults::default());
    assert_eq!(backend.created_intents(), ids, "one intent per call");
    assert_eq!(backend.events_of("payment_intent.canceled").len(), 1);
}

#[tokio::test]
async fn persistent_faults_end_in_typed_errors_and_create_nothing() {
    let backend = EmulatorBackend::start().await;
    let gateway = gateway(&backend);
    let new = order_intent(16500);

    backend.emulator.set_faults(faults(|f| f.error_rate = 1.0));
    let error = gateway
        .create_payment_intent(&new, &key("kessai-order-46-intent-v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, GatewayError::Api { status: 500, .. }),
        "{error:?}"
    );

    backend
        .emulator
        .set_faults(faults(|f| f.rate_limit_rate = 1.0));
    let error = gateway
        .create_payment_intent(&new, &key("kessai-order-46-intent-v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, GatewayError::RateLimited { .. }),
        "{error:?}"
    );

    backend
        .emulator
        .set_faults(faults(|f| f.drop_connection_rate = 1.0));
    let error = gateway
        .create_payment_intent(&new, &key("kessai-order-46-intent-v1"))
        .await
        .unwrap_err();
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

    assert!(backend.emulator.events().is_empty());
    // The key was never used by a request that ran: it runs now.
    backend.emulator.set_faults(Faults::default());
    let intent = gateway
        .create_payment_intent(&new, &key("kessai-order-46-intent-v1"))
        .await
        .unwrap();
    assert_created_once(&backend, &intent.id, &key("kessai-order-46-intent-v1"));
}

// ---------------------------------------------------------------------------
// Timeouts and lost answers: the outcome is unknown, the retry with the same
// key settles it

#[tokio::test]
async fn a_timeout_is_an_unknown_outcome_and_the_retry_with_its_key_creates_one_intent() {
    let backend = EmulatorBackend::start().await;
    let timeout = Duration::from_millis(200);
    let retry = RetryPolicy {
        max_retries: 1,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
    };
    let gateway = gateway_for(&backend, retry, timeout);
    let key = key("kessai-order-47-intent-v1");
    backend.emulator.set_faults(faults(|f| f.latency_ms = 600));

    let started = Instant::now();
    let error = gateway
        .create_payment_intent(&order_intent(16500), &key)
        .await
        .unwrap_err();
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
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "gave up after {:?}: two attempts of {timeout:?}",
        started.elapsed()
    );

    // Whatever the emulator does with the abandoned attempts, it is done
    // by now.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let before_retry = backend.created_intents();
    assert!(before_retry.len() <= 1, "{before_retry:?}");

    backend.emulator.set_faults(Faults::default());
    let intent = gateway
        .create_payment_intent(&order_intent(16500), &key)
        .await
        .unwrap();
    if let Some(id) = before_retry.first() {
        assert_eq!(&intent.id, id, "the retry replays what was created");
    }
    assert_created_once(&backend, &intent.id, &key);
}

/// A TCP proxy in front of the emulator that, while `swallow` is set,
/// forwards requests but throws the answers away: the emulator acts, the
/// client never hears of it (a connection lost after Stripe answered).
struct LossyProxy {
    base: String,
    swallow: Arc<AtomicBool>,
}

impl LossyProxy {
    async fn start(backend: &EmulatorBackend) -> Self {
        let upstream = backend.addr;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let swallow = Arc::new(AtomicBool::new(true));
        let flag = swallow.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let swallow = flag.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_server, mut to_server) = outbound.into_split();
                    let requests = tokio::io::copy(&mut from_client, &mut to_server);
                    let answers = async {
                        if swallow {
                            tokio::io::copy(&mut from_server, &mut tokio::io::sink()).await
                        } else {
                            tokio::io::copy(&mut from_server, &mut to_client).await
                        }
                    };
                    let _ = tokio::join!(requests, answers);
                });
            }
        });
        Self { base, swallow }
    }

    /// New connections get their answers from now on.
    fn deliver_answers(&self) {
        self.swallow.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn an_answer_lost_after_the_intent_was_created_is_replayed_on_retry() {
    let backend = EmulatorBackend::start().await;
    let proxy = LossyProxy::start(&backend).await;
    let mut config = backend.config(SECRET_KEY);
    config.api_base = proxy.base.parse().unwrap();
    config.request_timeout = Duration::from_millis(300);
    config.retry.max_retries = 0;
    let gateway = client_with(config);
    let key = key("kessai-order-48-intent-v1");

    let error = gateway
        .create_payment_intent(&order_intent(16500), &key)
        .await
        .unwrap_err();
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
    // Stripe did act: the intent exists though the client has no id.
    let created = backend.created_intents();
    assert_eq!(created.len(), 1, "the emulator answered the lost request");

    proxy.deliver_answers();
    let intent = gateway
        .create_payment_intent(&order_intent(16500), &key)
        .await
        .unwrap();
    assert_eq!(intent.id, created[0], "the retry gets the lost answer");
    assert_eq!(intent.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_created_once(&backend, &intent.id, &key);
}

// ---------------------------------------------------------------------------
// Test cards localstripe does not have or treats otherwise

/// The intent as the client reads it, after confirming with `payment_method`.
async fn confirmed_with(
    backend: &EmulatorBackend,
    gateway: &StripeClient,
    intent: &PaymentIntent,
    payment_method: &str,
    expected_status: u16,
) -> PaymentIntent {
    let (status, body) = backend.confirm_with(intent, payment_method).await;
    assert_eq!(status, expected_status, "{payment_method}: {body:#}");
    gateway.retrieve_payment_intent(&intent.id).await.unwrap()
}

#[tokio::test]
async fn a_decline_for_insufficient_funds_says_so_and_another_card_can_pay() {
    let backend = EmulatorBackend::start().await;
    let gateway = gateway(&backend);
    let intent = gateway
        .create_payment_intent(&order_intent(16500), &key("kessai-order-49-intent-v1"))
        .await
        .unwrap();

    let failed = confirmed_with(
        &backend,
        &gateway,
        &intent,
        "pm_card_visa_chargeDeclinedInsufficientFunds",
        402,
    )
    .await;
    assert_eq!(failed.status, PaymentIntentStatus::RequiresPaymentMethod);
    let failure = failed.last_payment_error.expect("a failure");
    assert_eq!(failure.code.as_deref(), Some("insufficient_funds"));
    assert!(!failure.message.is_empty());

    // Unlike localstripe, Stripe lets the customer try again.
    let paid = confirmed_with(&backend, &gateway, &intent, "pm_card_visa", 200).await;
    assert_eq!(paid.status, PaymentIntentStatus::Succeeded);
    assert_eq!(paid.last_payment_error, None);
    let charge = paid.latest_charge.expect("a charge");
    assert_ne!(
        Some(charge.as_str()),
        failed.latest_charge.as_deref(),
        "a new charge"
    );
}

#[tokio::test]
async fn a_delayed_payment_is_processing_then_succeeds() {
    let backend = EmulatorBackend::start().await;
    let gateway = gateway(&backend);
    let intent = gateway
        .create_payment_intent(&order_intent(16500), &key("kessai-order-50-intent-v1"))
        .await
        .unwrap();

    let processing = confirmed_with(&backend, &gateway, &intent, "pm_card_delayed", 200).await;
    assert_eq!(processing.status, PaymentIntentStatus::Processing);
    assert!(!processing.status.is_awaiting_customer());
    assert!(processing.latest_charge.is_some());
    // Neither refundable nor cancelable while processing.
    let error = gateway
        .create_refund(
            &NewRefund {
                payment_intent: intent.id.clone(),
                amount: None,
            },
            &key("kessai-refund-11-v1"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, GatewayError::InvalidRequest { status: 400, code: Some(c), .. } if c == "charge_not_refundable"),
        "{error:?}"
    );
    let error = gateway
        .cancel_payment_intent(&intent.id, &key("kessai-order-50-cancel-v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, GatewayError::InvalidRequest { status: 400, code: Some(c), .. } if c == "payment_intent_unexpected_state"),
        "{error:?}"
    );

    let deadline = Instant::now() + EmulatorBackend::PROCESSING_DELAY * 20;
    let settled = loop {
        let read = gateway.retrieve_payment_intent(&intent.id).await.unwrap();
        if read.status != PaymentIntentStatus::Processing || Instant::now() > deadline {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(settled.status, PaymentIntentStatus::Succeeded);
    assert_eq!(settled.latest_charge, processing.latest_charge);
    let succeeded: Vec<Value> = backend.events_of("payment_intent.succeeded");
    assert_eq!(succeeded.len(), 1, "{succeeded:#?}");
}

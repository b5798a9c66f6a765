//! The gateway against real Stripe-like servers. Every case is an
//! `async fn case(gateway: &StripeClient, backend: &dyn StripeBackend)`;
//! `backend_suite!` makes one test per case and backend, named
//! `behaviour::<backend>::<case>`. The backends:
//!
//! * `localstripe`: the server at `TEST_LOCALSTRIPE_URL`, shared by parallel
//!   tests: every case creates its own objects and never resets anything.
//! * `emulator`: kessai's own `stripe-emulator`, one per test on
//!   127.0.0.1:0, stopped when the test's backend value drops.
//!
//! Where localstripe departs from Stripe (docs/localstripe.md) the case does
//! not weaken its assertion to what both do: the backend says how it answers
//! ([`Fidelity`]) and the case checks that exact answer, Stripe's for the
//! emulator, localstripe's documented one for localstripe. What only the
//! emulator can show (idempotency, retries under injected faults) is in
//! `crate::emulator`.

use std::net::SocketAddr;
use std::time::Duration;

use application::ports::payment_gateway::{
    GatewayError, IdempotencyKey, NewCustomer, NewPaymentIntent, NewRefund, PaymentGateway,
    PaymentIntent, PaymentIntentStatus,
};
use async_trait::async_trait;
use domain::PaymentFailure;
use infrastructure::stripe::{StripeClient, StripeConfig};
use secrecy::SecretString;
use serde_json::{json, Value};
use stripe_emulator::{Emulator, EmulatorConfig, Faults, Timings};
use tokio::sync::oneshot;

use crate::support::{client_with, config_for, jpy, metadata, SECRET_KEY};

/// What Stripe.js authenticates with in the browser.
pub const PUBLISHABLE_KEY: &str = "pk_test_51KessaiTestKey4eC39HqLyjWDarjtT1zdp7dc";

/// A test card, by what confirming with it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCard {
    /// Charged successfully (4242 4242 4242 4242).
    Succeeds,
    /// Declined when charged (`card_declined`).
    Declined,
}

/// How a backend answers where localstripe departs from Stripe
/// (docs/localstripe.md). `true` is Stripe's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fidelity {
    /// `amount` is a JSON integer in every answer (localstripe: the string
    /// sent, `"17000"`, once an update set it).
    pub integer_amounts: bool,
    /// A decline is a 402 `card_error` with a `decline_code`, which the
    /// intent's `last_payment_error` keeps (localstripe: a 402
    /// `invalid_request_error`, `code: card_declined` only).
    pub card_errors: bool,
    /// Errors carry Stripe's `code` (`payment_intent_unexpected_state`, …)
    /// and `param` (localstripe: a bare `Bad request`).
    pub error_codes: bool,
    /// A refund of more than what is left of the charge is refused
    /// (localstripe refunds it).
    pub refuses_over_refunds: bool,
    /// The amount of a succeeded intent cannot be changed (localstripe
    /// changes it).
    pub refuses_updates_after_payment: bool,
}

impl Fidelity {
    pub const STRIPE: Self = Self {
        integer_amounts: true,
        card_errors: true,
        error_codes: true,
        refuses_over_refunds: true,
        refuses_updates_after_payment: true,
    };
    /// localstripe 1.15.10, as docs/localstripe.md describes it.
    pub const LOCALSTRIPE: Self = Self {
        integer_amounts: false,
        card_errors: false,
        error_codes: false,
        refuses_over_refunds: false,
        refuses_updates_after_payment: false,
    };
}

/// What a case needs from a backend beyond the port: the port has no
/// confirm (Stripe.js does it in the browser), so each backend pays an
/// intent its own way; and a look at the raw JSON, outside the client.
#[async_trait]
pub trait StripeBackend: Send + Sync {
    /// The client configuration for this backend, with `secret_key`.
    fn config(&self, secret_key: &str) -> StripeConfig;

    /// Where this backend departs from Stripe.
    fn fidelity(&self) -> Fidelity;

    /// Attaches `card` to the intent (created through the gateway, in
    /// `requires_payment_method`) and confirms it, as Stripe.js would.
    /// Asserts the HTTP status (200, or 402 for `Declined`) and returns the
    /// confirm answer's JSON: the intent, or the error envelope. With
    /// `Declined` the intent is left `requires_payment_method` with a
    /// `last_payment_error`.
    async fn confirm(&self, intent: &PaymentIntent, card: TestCard) -> Value;

    /// `GET path` with the secret key, outside the client under test;
    /// asserts a 200 and returns the JSON as sent.
    async fn get_json(&self, path: &str) -> Value;
}

/// A fresh suffix, so that ids and idempotency keys never collide between
/// tests or runs on a shared server.
fn unique() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn idempotency(what: &str) -> IdempotencyKey {
    IdempotencyKey::new(format!("kessai-test-{what}-{}", unique()))
}

async fn new_customer(gateway: &StripeClient) -> String {
    gateway
        .create_customer(
            &NewCustomer {
                email: format!("buyer-{}@example.com", unique()),
                name: Some("Taro Yamada".into()),
                metadata: metadata(&[("kessai_user_id", "7")]),
            },
            &idempotency("customer"),
        )
        .await
        .expect("create customer")
        .id
}

fn order_metadata(order_id: &str) -> std::collections::BTreeMap<String, String> {
    metadata(&[
        ("order_id", order_id),
        ("order_number", "ACQ-241124-001"),
        ("user_id", "7"),
    ])
}

async fn new_intent(gateway: &StripeClient, customer: Option<String>) -> PaymentIntent {
    gateway
        .create_payment_intent(
            &NewPaymentIntent {
                amount: jpy(16500),
                customer,
                metadata: order_metadata("42"),
            },
            &idempotency("intent"),
        )
        .await
        .expect("create payment intent")
}

/// An intent paid with a card that succeeds.
async fn paid_intent(gateway: &StripeClient, backend: &dyn StripeBackend) -> PaymentIntent {
    let intent = new_intent(gateway, None).await;
    backend.confirm(&intent, TestCard::Succeeds).await;
    let paid = gateway.retrieve_payment_intent(&intent.id).await.unwrap();
    assert_eq!(paid.status, PaymentIntentStatus::Succeeded);
    paid
}

// ---------------------------------------------------------------------------
// Cases

async fn creates_a_customer(gateway: &StripeClient, _: &dyn StripeBackend) {
    let email = format!("taro-{}@example.com", unique());
    let customer = gateway
        .create_customer(
            &NewCustomer {
                email: email.clone(),
                name: Some("山田 太郎".into()),
                metadata: metadata(&[("kessai_user_id", "7")]),
            },
            &idempotency("customer"),
        )
        .await
        .unwrap();
    assert!(customer.id.starts_with("cus_"), "{customer:?}");
    assert_eq!(customer.email.as_deref(), Some(email.as_str()));
    assert_eq!(customer.metadata, metadata(&[("kessai_user_id", "7")]));
}

async fn creates_and_retrieves_a_payment_intent(gateway: &StripeClient, _: &dyn StripeBackend) {
    let customer = new_customer(gateway).await;
    let created = gateway
        .create_payment_intent(
            &NewPaymentIntent {
                amount: jpy(16500),
                customer: Some(customer.clone()),
                metadata: order_metadata("42"),
            },
            &idempotency("intent"),
        )
        .await
        .unwrap();

    assert!(created.id.starts_with("pi_"), "{created:?}");
    assert_eq!(created.amount, 16500);
    assert_eq!(created.currency, "jpy");
    assert_eq!(created.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert!(created.status.is_awaiting_customer());
    let secret = created.client_secret.as_ref().expect("a client secret");
    assert!(
        secret
            .expose()
            .starts_with(&format!("{}_secret_", created.id)),
        "client secret of {}",
        created.id
    );
    assert_eq!(created.customer.as_deref(), Some(customer.as_str()));
    assert_eq!(created.metadata, order_metadata("42"));
    assert_eq!(created.last_payment_error, None);
    assert_eq!(created.latest_charge, None);
    assert!(
        created.created > 1_700_000_000,
        "created {}",
        created.created
    );

    let read = gateway.retrieve_payment_intent(&created.id).await.unwrap();
    assert_eq!(read, created);
}

async fn updates_the_amount(gateway: &StripeClient, backend: &dyn StripeBackend) {
    let intent = new_intent(gateway, None).await;

    let updated = gateway
        .update_payment_intent_amount(&intent.id, jpy(17000), &idempotency("amount"))
        .await
        .unwrap();
    assert_eq!(updated.id, intent.id);
    assert_eq!(updated.amount, 17000);
    assert_eq!(updated.currency, "jpy");
    assert_eq!(updated.metadata, order_metadata("42"));
    assert!(updated.charges(jpy(17000)));

    let read = gateway.retrieve_payment_intent(&intent.id).await.unwrap();
    assert_eq!(read.amount, 17000);
    assert_eq!(read.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(read.client_secret, intent.client_secret);

    // What the client had to read: Stripe's integer, or localstripe's echo
    // of the form value (which the client must, and does, accept).
    let raw = backend
        .get_json(&format!("/v1/payment_intents/{}", intent.id))
        .await;
    let expected = if backend.fidelity().integer_amounts {
        json!(17000)
    } else {
        json!("17000")
    };
    assert_eq!(raw["amount"], expected, "{raw:#}");
}

async fn cancels_a_payment_intent(gateway: &StripeClient, _: &dyn StripeBackend) {
    let intent = new_intent(gateway, None).await;

    let canceled = gateway
        .cancel_payment_intent(&intent.id, &idempotency("cancel"))
        .await
        .unwrap();
    assert_eq!(canceled.id, intent.id);
    assert_eq!(canceled.status, PaymentIntentStatus::Canceled);
    assert!(!canceled.status.is_awaiting_customer());

    let read = gateway.retrieve_payment_intent(&intent.id).await.unwrap();
    assert_eq!(read.status, PaymentIntentStatus::Canceled);
    assert_eq!(read.amount, 16500);
}

async fn canceling_twice_is_an_invalid_request(
    gateway: &StripeClient,
    backend: &dyn StripeBackend,
) {
    let intent = new_intent(gateway, None).await;
    gateway
        .cancel_payment_intent(&intent.id, &idempotency("cancel"))
        .await
        .unwrap();

    let error = gateway
        .cancel_payment_intent(&intent.id, &idempotency("cancel-again"))
        .await
        .unwrap_err();
    let GatewayError::InvalidRequest { status, code, .. } = &error else {
        panic!("not an invalid request: {error:?}");
    };
    assert_eq!(*status, 400, "{error:?}");
    let expected_code = backend
        .fidelity()
        .error_codes
        .then_some("payment_intent_unexpected_state");
    assert_eq!(code.as_deref(), expected_code, "{error:?}");
    assert!(!error.is_not_found());

    let read = gateway.retrieve_payment_intent(&intent.id).await.unwrap();
    assert_eq!(read.status, PaymentIntentStatus::Canceled);
}

async fn an_unknown_payment_intent_is_not_found(gateway: &StripeClient, _: &dyn StripeBackend) {
    let error = gateway
        .retrieve_payment_intent(&format!("pi_kessaimissing{}", unique()))
        .await
        .unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
}

async fn an_unknown_customer_is_not_found(gateway: &StripeClient, _: &dyn StripeBackend) {
    let error = gateway
        .create_payment_intent(
            &NewPaymentIntent {
                amount: jpy(16500),
                customer: Some(format!("cus_kessaimissing{}", unique())),
                metadata: order_metadata("42"),
            },
            &idempotency("intent"),
        )
        .await
        .unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
}

async fn a_wrong_key_is_an_authentication_error(_: &StripeClient, backend: &dyn StripeBackend) {
    // A publishable key where the secret one belongs.
    let gateway = client_with(backend.config("pk_test_kessai0000000000"));
    let error = gateway
        .retrieve_payment_intent("pi_kessaiwhatever")
        .await
        .unwrap_err();
    assert!(
        matches!(error, GatewayError::Authentication { .. }),
        "{error:?}"
    );
}

async fn a_confirmed_payment_has_succeeded_with_a_charge(
    gateway: &StripeClient,
    backend: &dyn StripeBackend,
) {
    let customer = new_customer(gateway).await;
    let intent = new_intent(gateway, Some(customer.clone())).await;

    let answer = backend.confirm(&intent, TestCard::Succeeds).await;
    assert_eq!(answer["id"], json!(intent.id), "{answer:#}");
    assert_eq!(answer["status"], "succeeded", "{answer:#}");

    let paid = gateway.retrieve_payment_intent(&intent.id).await.unwrap();
    assert_eq!(paid.status, PaymentIntentStatus::Succeeded);
    assert_eq!(paid.amount, 16500);
    assert_eq!(paid.customer.as_deref(), Some(customer.as_str()));
    assert_eq!(paid.last_payment_error, None);
    let charge = paid.latest_charge.expect("a charge");
    assert!(
        charge.starts_with("ch_") || charge.starts_with("py_"),
        "{charge}"
    );
}

async fn a_declined_payment_reports_why(gateway: &StripeClient, backend: &dyn StripeBackend) {
    let intent = new_intent(gateway, None).await;

    let answer = backend.confirm(&intent, TestCard::Declined).await;
    let error = &answer["error"];
    assert_eq!(error["code"], "card_declined", "{answer:#}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer:#}"
    );
    // Stripe's decline is a card_error that says why (here: no reason
    // given); localstripe's is an invalid_request_error without the reason.
    let card_errors = backend.fidelity().card_errors;
    if card_errors {
        assert_eq!(error["type"], "card_error", "{answer:#}");
        assert_eq!(error["decline_code"], "generic_decline", "{answer:#}");
    } else {
        assert_eq!(error["type"], "invalid_request_error", "{answer:#}");
        assert_eq!(error.get("decline_code"), None, "{answer:#}");
    }

    let failed = gateway.retrieve_payment_intent(&intent.id).await.unwrap();
    assert_eq!(failed.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert!(failed.status.is_awaiting_customer());
    let PaymentFailure { code, message } = failed.last_payment_error.expect("a failure");
    // The client reports the decline code when there is one, else the code.
    let expected = if card_errors {
        "generic_decline"
    } else {
        "card_declined"
    };
    assert_eq!(code.as_deref(), Some(expected));
    assert!(!message.is_empty());
}

async fn refunds_a_payment_in_full(gateway: &StripeClient, backend: &dyn StripeBackend) {
    let paid = paid_intent(gateway, backend).await;

    let refund = gateway
        .create_refund(
            &NewRefund {
                payment_intent: paid.id.clone(),
                amount: None,
            },
            &idempotency("refund"),
        )
        .await
        .unwrap();

    assert!(refund.id.starts_with("re_"), "{refund:?}");
    assert_eq!(refund.amount, 16500);
    assert_eq!(refund.currency, "jpy");
    assert_eq!(refund.payment_intent.as_deref(), Some(paid.id.as_str()));
    assert!(
        matches!(refund.status.as_str(), "succeeded" | "pending"),
        "{refund:?}"
    );
}

async fn refunds_part_of_a_payment(gateway: &StripeClient, backend: &dyn StripeBackend) {
    let paid = paid_intent(gateway, backend).await;

    let first = gateway
        .create_refund(
            &NewRefund {
                payment_intent: paid.id.clone(),
                amount: Some(jpy(5000)),
            },
            &idempotency("refund-1"),
        )
        .await
        .unwrap();
    let second = gateway
        .create_refund(
            &NewRefund {
                payment_intent: paid.id.clone(),
                amount: Some(jpy(3000)),
            },
            &idempotency("refund-2"),
        )
        .await
        .unwrap();

    assert_eq!(first.amount, 5000);
    assert_eq!(second.amount, 3000);
    assert_ne!(first.id, second.id);
    for refund in [&first, &second] {
        assert_eq!(refund.currency, "jpy");
        assert_eq!(refund.payment_intent.as_deref(), Some(paid.id.as_str()));
    }
    // The intent itself is still the payment that was made.
    let read = gateway.retrieve_payment_intent(&paid.id).await.unwrap();
    assert_eq!(read.status, PaymentIntentStatus::Succeeded);
    assert_eq!(read.amount, 16500);
}

async fn refunding_more_than_is_left(gateway: &StripeClient, backend: &dyn StripeBackend) {
    let paid = paid_intent(gateway, backend).await;
    let refund = |amount: i64, what: &'static str| {
        let payment_intent = paid.id.clone();
        async move {
            gateway
                .create_refund(
                    &NewRefund {
                        payment_intent,
                        amount: Some(jpy(amount)),
                    },
                    &idempotency(what),
                )
                .await
        }
    };
    let first = refund(10000, "refund-1").await.unwrap();
    assert_eq!(first.amount, 10000);

    // 6500 is left.
    let second = refund(10000, "refund-2").await;
    if backend.fidelity().refuses_over_refunds {
        let error = second.unwrap_err();
        let GatewayError::InvalidRequest {
            status,
            code,
            param,
            ..
        } = &error
        else {
            panic!("not an invalid request: {error:?}");
        };
        assert_eq!(*status, 400, "{error:?}");
        assert_eq!(code.as_deref(), Some("amount_too_large"), "{error:?}");
        assert_eq!(param.as_deref(), Some("amount"), "{error:?}");
        assert!(!error.is_not_found());
        // What is left can still be refunded, exactly.
        let rest = refund(6500, "refund-3").await.unwrap();
        assert_eq!(rest.amount, 6500);
    } else {
        // localstripe has no over-refund check (docs/localstripe.md).
        let second = second.unwrap();
        assert_eq!(second.amount, 10000);
        assert_ne!(second.id, first.id);
    }
}

async fn changing_the_amount_after_payment(gateway: &StripeClient, backend: &dyn StripeBackend) {
    let paid = paid_intent(gateway, backend).await;

    let result = gateway
        .update_payment_intent_amount(&paid.id, jpy(17000), &idempotency("amount"))
        .await;
    let read = gateway.retrieve_payment_intent(&paid.id).await.unwrap();
    assert_eq!(read.status, PaymentIntentStatus::Succeeded);
    if backend.fidelity().refuses_updates_after_payment {
        let error = result.unwrap_err();
        let GatewayError::InvalidRequest {
            status,
            code,
            param,
            ..
        } = &error
        else {
            panic!("not an invalid request: {error:?}");
        };
        assert_eq!(*status, 400, "{error:?}");
        assert_eq!(
            code.as_deref(),
            Some("payment_intent_unexpected_state"),
            "{error:?}"
        );
        assert_eq!(param.as_deref(), Some("amount"), "{error:?}");
        assert_eq!(read.amount, 16500, "the paid amount stays");
    } else {
        // localstripe rewrites any attribute in any state.
        assert_eq!(result.unwrap().amount, 17000);
        assert_eq!(read.amount, 17000);
    }
}

// ---------------------------------------------------------------------------
// The tests: one per case and backend

/// `backend_suite!(backends: [module => constructor, ...], cases: [case, ...])`
/// makes `module::case` for every pair, on a fresh backend value and client.
/// The constructor is evaluated inside the test (so it may `.await`), and the
/// backend value lives until the test ends.
macro_rules! backend_suite {
    (backends: [$($module:ident => $backend:expr),+ $(,)?], cases: $cases:tt $(,)?) => {
        $( backend_suite!(@backend $module, $backend, $cases); )+
    };
    (@backend $module:ident, $backend:expr, [$($case:ident),+ $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = $backend;
                    let gateway = client_with(backend.config(SECRET_KEY));
                    super::$case(&gateway, &backend).await;
                }
            )+
        }
    };
}

backend_suite!(
    backends: [
        localstripe => Localstripe::from_env(),
        emulator => EmulatorBackend::start().await,
    ],
    cases: [
        creates_a_customer,
        creates_and_retrieves_a_payment_intent,
        updates_the_amount,
        cancels_a_payment_intent,
        canceling_twice_is_an_invalid_request,
        an_unknown_payment_intent_is_not_found,
        an_unknown_customer_is_not_found,
        a_wrong_key_is_an_authentication_error,
        a_confirmed_payment_has_succeeded_with_a_charge,
        a_declined_payment_reports_why,
        refunds_a_payment_in_full,
        refunds_part_of_a_payment,
        refunding_more_than_is_left,
        changing_the_amount_after_payment,
    ],
);

// ---------------------------------------------------------------------------
// Backends

/// An answer from a request sent outside the client: the status and the
/// JSON body (the text as a JSON string when it is not JSON: localstripe
/// answers some failures in plain text).
async fn answer(request: reqwest::RequestBuilder, what: &str) -> (u16, Value) {
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// localstripe at `TEST_LOCALSTRIPE_URL` (scripts/test.sh starts it).
pub struct Localstripe {
    base: String,
    http: reqwest::Client,
}

impl Localstripe {
    /// Panics (failing the test) when `TEST_LOCALSTRIPE_URL` is not set.
    pub fn from_env() -> Self {
        let base = test_support::localstripe_url()
            .trim_end_matches('/')
            .to_string();
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// A POST straight to localstripe, outside the client under test.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(SECRET_KEY)
            .form(form);
        answer(
            request,
            &format!("POST {path} to localstripe at {}", self.base),
        )
        .await
    }
}

#[async_trait]
impl StripeBackend for Localstripe {
    fn config(&self, secret_key: &str) -> StripeConfig {
        let mut config = config_for(&self.base);
        config.secret_key = SecretString::from(secret_key.to_string());
        config
    }

    fn fidelity(&self) -> Fidelity {
        Fidelity::LOCALSTRIPE
    }

    /// localstripe refuses `payment_method` on confirm (500 "Not
    /// implemented"): it is set by an update, then confirm is sent empty.
    async fn confirm(&self, intent: &PaymentIntent, card: TestCard) -> Value {
        let (payment_method, expected) = match card {
            TestCard::Succeeds => ("pm_card_visa", 200),
            TestCard::Declined => ("pm_card_chargeCustomerFail", 402),
        };
        let path = format!("/v1/payment_intents/{}", intent.id);
        let (status, body) = self
            .post(&path, &[("payment_method", payment_method)])
            .await;
        assert_eq!(status, 200, "setting the payment method: {body:#}");
        let (status, body) = self.post(&format!("{path}/confirm"), &[]).await;
        assert_eq!(status, expected, "confirm with {payment_method}: {body:#}");
        body
    }

    async fn get_json(&self, path: &str) -> Value {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(SECRET_KEY);
        let (status, body) = answer(request, &format!("GET {path} from localstripe")).await;
        assert_eq!(status, 200, "GET {path}: {body:#}");
        body
    }
}

/// kessai's own emulator (`crates/stripe-emulator`), served on 127.0.0.1:0
/// for one test. Dropping the value stops the server.
pub struct EmulatorBackend {
    /// The running emulator: its faults and events, in process.
    pub emulator: Emulator,
    pub addr: SocketAddr,
    base: String,
    http: reqwest::Client,
    /// Dropped with the backend, which resolves the server's shutdown future.
    _shutdown: oneshot::Sender<()>,
}

impl EmulatorBackend {
    pub const WEBHOOK_SECRET: &'static str = "whsec_kessaiTestSecret0123456789abcdef";

    /// Delayed payments (`pm_card_delayed`) settle after this.
    pub const PROCESSING_DELAY: Duration = Duration::from_millis(200);

    pub async fn start() -> Self {
        let emulator = Emulator::with_timings(
            EmulatorConfig {
                secret_key: SECRET_KEY.to_string(),
                webhook_secret: Self::WEBHOOK_SECRET.to_string(),
                webhook_url: None,
                faults: Faults::default(),
            },
            Timings {
                processing_delay: Self::PROCESSING_DELAY,
                ..Timings::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on 127.0.0.1");
        let addr = listener.local_addr().expect("a bound address");
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(emulator.clone().serve(listener, async move {
            // Sent or dropped: either way, stop.
            let _ = stopped.await;
        }));
        Self {
            emulator,
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            _shutdown: shutdown,
        }
    }

    /// Confirms `intent` with the test PaymentMethod `payment_method` as
    /// Stripe.js does: the publishable key and the intent's client secret.
    pub async fn confirm_with(&self, intent: &PaymentIntent, payment_method: &str) -> (u16, Value) {
        let secret = intent
            .client_secret
            .as_ref()
            .expect("a client secret for the browser");
        let path = format!("/v1/payment_intents/{}/confirm", intent.id);
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(PUBLISHABLE_KEY)
            .form(&[
                ("payment_method", payment_method),
                ("client_secret", secret.expose()),
            ]);
        answer(request, &format!("POST {path} to the emulator")).await
    }

    /// Every event of type `kind` so far, oldest first.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.emulator
            .events()
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// The ids of the PaymentIntents created so far, oldest first.
    pub fn created_intents(&self) -> Vec<String> {
        self.events_of("payment_intent.created")
            .iter()
            .map(|e| {
                e["data"]["object"]["id"]
                    .as_str()
                    .expect("an intent id")
                    .to_string()
            })
            .collect()
    }
}

#[async_trait]
impl StripeBackend for EmulatorBackend {
    fn config(&self, secret_key: &str) -> StripeConfig {
        let mut config = config_for(&self.base);
        config.secret_key = SecretString::from(secret_key.to_string());
        config
    }

    fn fidelity(&self) -> Fidelity {
        Fidelity::STRIPE
    }

    /// In one request, as Stripe.js's `confirmCardPayment` does.
    async fn confirm(&self, intent: &PaymentIntent, card: TestCard) -> Value {
        let (payment_method, expected) = match card {
            TestCard::Succeeds => ("pm_card_visa", 200),
            TestCard::Declined => ("pm_card_chargeDeclined", 402),
        };
        let (status, body) = self.confirm_with(intent, payment_method).await;
        assert_eq!(status, expected, "confirm with {payment_method}: {body:#}");
        body
    }

    async fn get_json(&self, path: &str) -> Value {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(SECRET_KEY);
        let (status, body) = answer(request, &format!("GET {path} from the emulator")).await;
        assert_eq!(status, 200, "GET {path}: {body:#}");
        body
    }
}

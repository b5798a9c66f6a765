//! The gateway against real Stripe-like servers. Every case is an
//! `async fn case(gateway: &StripeClient, backend: &dyn StripeBackend)`;
//! `backend_suite!` makes one test per case and backend, named
//! `behaviour::<backend>::<case>`. Only localstripe for now; another
//! backend (kessai's own emulator) implements `StripeBackend` and is added
//! to the `backend_suite!` call.
//!
//! The servers are shared by parallel tests: every case creates its own
//! objects and never resets anything. Only what both Stripe and the backends
//! agree on is asserted (see docs/localstripe.md for where localstripe
//! differs).

use application::ports::payment_gateway::{
    GatewayError, IdempotencyKey, NewCustomer, NewPaymentIntent, NewRefund, PaymentGateway,
    PaymentIntent, PaymentIntentStatus,
};
use async_trait::async_trait;
use domain::PaymentFailure;
use infrastructure::stripe::{StripeClient, StripeConfig};
use secrecy::SecretString;

use crate::support::{client_with, config_for, jpy, metadata};

/// A test card, by what confirming with it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCard {
    /// Charged successfully (4242 4242 4242 4242).
    Succeeds,
    /// Declined when charged (`card_declined`).
    Declined,
}

/// What a case needs from a backend beyond the port: the port has no
/// confirm (Stripe.js does it in the browser), so each backend pays an
/// intent its own way.
#[async_trait]
pub trait StripeBackend: Send + Sync {
    /// The client configuration for this backend, with `secret_key`.
    fn config(&self, secret_key: &str) -> StripeConfig;

    /// Attaches `card` to the intent (created through the gateway, in
    /// `requires_payment_method`) and confirms it, as Stripe.js would.
    /// Returns once the backend has answered; with `Declined` the intent is
    /// left `requires_payment_method` with a `last_payment_error`.
    async fn confirm(&self, intent_id: &str, card: TestCard);
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
    backend.confirm(&intent.id, TestCard::Succeeds).await;
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

async fn updates_the_amount(gateway: &StripeClient, _: &dyn StripeBackend) {
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

async fn canceling_twice_is_an_invalid_request(gateway: &StripeClient, _: &dyn StripeBackend) {
    let intent = new_intent(gateway, None).await;
    gateway
        .cancel_payment_intent(&intent.id, &idempotency("cancel"))
        .await
        .unwrap();

    let error = gateway
        .cancel_payment_intent(&intent.id, &idempotency("cancel-again"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, GatewayError::InvalidRequest { status: 400, .. }),
        "{error:?}"
    );
    assert!(!error.is_not_found());
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

    backend.confirm(&intent.id, TestCard::Succeeds).await;

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

    backend.confirm(&intent.id, TestCard::Declined).await;

    let failed = gateway.retrieve_payment_intent(&intent.id).await.unwrap();
    assert_eq!(failed.status, PaymentIntentStatus::RequiresPaymentMethod);
    let PaymentFailure { code, message } = failed.last_payment_error.expect("a failure");
    // Stripe reports the decline code when it has one, else the code.
    assert!(
        matches!(code.as_deref(), Some("card_declined" | "generic_decline")),
        "{code:?}"
    );
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

// ---------------------------------------------------------------------------
// The tests: one per case and backend

/// `backend_suite!(backends: [module => constructor, ...], cases: [case, ...])`
/// makes `module::case` for every pair, on a fresh backend value and client.
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
                    let gateway = client_with(backend.config(crate::support::SECRET_KEY));
                    super::$case(&gateway, &backend).await;
                }
            )+
        }
    };
}

backend_suite!(
    backends: [localstripe => Localstripe::from_env()],
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
    ],
);

// ---------------------------------------------------------------------------
// Backends

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
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(crate::support::SECRET_KEY)
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} to localstripe at {}: {e}", self.base));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

#[async_trait]
impl StripeBackend for Localstripe {
    fn config(&self, secret_key: &str) -> StripeConfig {
        let mut config = config_for(&self.base);
        config.secret_key = SecretString::from(secret_key.to_string());
        config
    }

    /// localstripe refuses `payment_method` on confirm (500 "Not
    /// implemented"): it is set by an update, then confirm is sent empty.
    async fn confirm(&self, intent_id: &str, card: TestCard) {
        let (payment_method, expected) = match card {
            TestCard::Succeeds => ("pm_card_visa", 200),
            TestCard::Declined => ("pm_card_chargeCustomerFail", 402),
        };
        let path = format!("/v1/payment_intents/{intent_id}");
        let (status, body) = self
            .post(&path, &[("payment_method", payment_method)])
            .await;
        assert_eq!(status, 200, "setting the payment method: {body}");
        let (status, body) = self.post(&format!("{path}/confirm"), &[]).await;
        assert_eq!(status, expected, "confirm with {payment_method}: {body}");
    }
}

//! Shared helpers: a client configured for fast tests, fixtures, and
//! assertions on the requests a mock server received.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use application::ports::payment_gateway::IdempotencyKey;
use domain::{Currency, Money};
use infrastructure::stripe::{RetryPolicy, StripeClient, StripeConfig, STRIPE_VERSION};
use secrecy::SecretString;
use serde_json::Value;
use wiremock::{MockServer, Request};

/// A test-mode key of the shape Stripe issues.
pub const SECRET_KEY: &str = "sk_test_51KessaiTestKey4eC39HqLyjWDarjtT1zdp7dc";

/// The retry policy of every test client: the production shape (3 retries)
/// with delays small enough to keep the suite fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

pub fn config_for(api_base: &str) -> StripeConfig {
    let mut config = StripeConfig::new(
        api_base.parse().expect("API base is a URL"),
        SecretString::from(SECRET_KEY.to_string()),
    );
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(5);
    config.retry = fast_retry();
    config
}

pub fn client_with(config: StripeConfig) -> StripeClient {
    StripeClient::new(config).expect("the client builds")
}

/// A client pointed at the mock server.
pub fn client(server: &MockServer) -> StripeClient {
    client_with(config_for(&server.uri()))
}

pub fn jpy(minor: i64) -> Money {
    Money::new(minor, Currency::Jpy).expect("valid amount")
}

pub fn key(value: &str) -> IdempotencyKey {
    IdempotencyKey::new(value)
}

pub fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------
// Fixtures

const STRIPE_FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/stripe/fixtures3-resources.json"
);

/// `resources.<name>` of Stripe's published `fixtures3.json` (the objects
/// kessai reads, copied into `tests/fixtures/stripe/`).
pub fn stripe_fixture(name: &str) -> Value {
    static FIXTURES: OnceLock<Value> = OnceLock::new();
    let all = FIXTURES.get_or_init(|| {
        let text = std::fs::read_to_string(STRIPE_FIXTURES).unwrap_or_else(|e| {
            panic!("cannot read Stripe's example objects at {STRIPE_FIXTURES}: {e}")
        });
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{STRIPE_FIXTURES} is not valid JSON: {e}"))
    });
    let object = all
        .pointer(&format!("/resources/{name}"))
        .unwrap_or_else(|| panic!("{STRIPE_FIXTURES} has no resources.{name}"))
        .clone();
    assert!(
        object.is_object(),
        "resources.{name} in {STRIPE_FIXTURES} is not an object"
    );
    object
}

/// `object` with the top-level fields of `overrides` replaced (or added).
pub fn with(mut object: Value, overrides: Value) -> Value {
    let target = object.as_object_mut().expect("an object to override");
    for (k, v) in overrides.as_object().expect("overrides are an object") {
        target.insert(k.clone(), v.clone());
    }
    object
}

/// A captured localstripe response, byte for byte.
pub fn localstripe_fixture(file: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/localstripe/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The shape `POST /v1/payment_intents` answers with for kessai's usual
/// request, built from Stripe's example.
pub fn payment_intent_json(id: &str, amount: i64, status: &str) -> Value {
    with(
        stripe_fixture("payment_intent"),
        serde_json::json!({
            "id": id,
            "amount": amount,
            "currency": "jpy",
            "status": status,
            "client_secret": format!("{id}_secret_Dm43xiq1k0ywrRRjDoi8y1gkM"),
            "customer": "cus_1",
            "metadata": {"order_id": "42", "order_number": "ACQ-241124-001", "user_id": "7"},
            "last_payment_error": null,
            "latest_charge": null,
            "canceled_at": null,
            "next_action": null,
            "created": 1732400000,
        }),
    )
}

// ---------------------------------------------------------------------------
// Requests the mock server received

pub async fn received(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}

pub fn header(request: &Request, name: &str) -> Option<String> {
    let values: Vec<_> = request.headers.get_all(name).iter().collect();
    assert!(
        values.len() <= 1,
        "header {name} sent {} times: {values:?}",
        values.len()
    );
    values
        .first()
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

pub fn body(request: &Request) -> String {
    String::from_utf8(request.body.clone()).expect("UTF-8 body")
}

/// The body decoded as `application/x-www-form-urlencoded` pairs, in order.
pub fn form_pairs(request: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub struct Expected<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// `Some` for every POST, `None` for GET (then the header must be absent).
    pub idempotency_key: Option<&'a str>,
    /// The exact body as sent (percent-encoded).
    pub body: &'a str,
    /// The same body decoded: what Stripe reads.
    pub form: &'a [(&'a str, &'a str)],
}

/// Checks everything the client controls about one request.
pub fn assert_request(request: &Request, expected: &Expected<'_>) {
    let what = format!("{} {}", expected.method, expected.path);
    assert_eq!(request.method.as_str(), expected.method, "{what}: method");
    assert_eq!(request.url.path(), expected.path, "{what}: path");
    assert_eq!(request.url.query(), None, "{what}: query string");
    assert_eq!(
        header(request, "authorization").as_deref(),
        Some(format!("Bearer {SECRET_KEY}").as_str()),
        "{what}: Authorization"
    );
    assert_eq!(
        header(request, "stripe-version").as_deref(),
        Some(STRIPE_VERSION),
        "{what}: Stripe-Version"
    );
    assert_eq!(STRIPE_VERSION, "2024-06-20");
    assert_eq!(
        header(request, "idempotency-key").as_deref(),
        expected.idempotency_key,
        "{what}: Idempotency-Key"
    );
    let user_agent = header(request, "user-agent").unwrap_or_default();
    assert!(
        user_agent.starts_with("kessai/"),
        "{what}: User-Agent {user_agent:?}"
    );
    assert_eq!(body(request), expected.body, "{what}: body");
    let form: Vec<(&str, &str)> = expected.form.to_vec();
    let sent = form_pairs(request);
    let sent: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(sent, form, "{what}: decoded form");
    match expected.method {
        "POST" => assert_eq!(
            header(request, "content-type").as_deref(),
            Some("application/x-www-form-urlencoded"),
            "{what}: Content-Type"
        ),
        _ => assert_eq!(
            header(request, "content-type"),
            None,
            "{what}: Content-Type"
        ),
    }
}

use std::collections::HashMap;

use infrastructure::config::Settings;
use kessai::startup::Application;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
pub use test_support::Backend;
use test_support::TestDatabase;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Generates, for each named `async fn name(app: TestApp)` of the calling
/// module, one test on SQLite and one on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await).await
                }
            )*
        }
    };
}

pub const PASSWORD: &str = "correct horse battery";

/// Any `sk_test_` key works with localstripe.
pub const STRIPE_TEST_KEY: &str = "sk_test_kessai_integration";

/// Generates, for each named `async fn name(app: TestApp)`, one test on
/// SQLite and one on PostgreSQL, both using localstripe as Stripe.
#[macro_export]
macro_rules! with_localstripe_on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::spawn_app_with_localstripe($crate::helpers::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::spawn_app_with_localstripe($crate::helpers::Backend::Postgres).await).await
                }
            )*
        }
    };
}

/// The webhook secrets the test apps accept: the current one and the one
/// being rotated in.
pub const WEBHOOK_SECRET: &str = "whsec_kessai_test_current";
pub const ROTATED_WEBHOOK_SECRET: &str = "whsec_kessai_test_next";

/// The settings of an instance using localstripe.
pub fn localstripe_vars() -> Vec<(&'static str, String)> {
    vec![
        ("STRIPE_SECRET_KEY", STRIPE_TEST_KEY.to_string()),
        ("STRIPE_API_BASE", test_support::localstripe_url()),
        (
            "STRIPE_WEBHOOK_SECRET",
            format!("{WEBHOOK_SECRET},{ROTATED_WEBHOOK_SECRET}"),
        ),
    ]
}

/// kessai talking to the localstripe that `scripts/test.sh` started.
pub async fn spawn_app_with_localstripe(backend: Backend) -> TestApp {
    let vars = localstripe_vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(backend, &vars).await
}

/// A second instance using localstripe on `first`'s database.
pub async fn spawn_second_localstripe_instance(first: &TestApp) -> TestApp {
    let vars = localstripe_vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_second_instance(first, &vars).await
}

/// `Stripe-Signature` for `payload` signed with `secret` at unix time `t`,
/// computed as Stripe does (HMAC-SHA256 over "{t}.{payload}").
pub fn stripe_signature(secret: &str, t: i64, payload: &str) -> String {
    test_support::stripe_signature(secret, t, payload.as_bytes())
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A running kessai. Dropping it shuts the server down.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub database: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub struct TestUser {
    pub id: i64,
    pub email: String,
    pub token: String,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts kessai with the given environment variables on top of the test
/// defaults (fresh database, fixed auth secret).
pub async fn spawn_app_with(backend: Backend, vars: &[(&str, &str)]) -> TestApp {
    spawn_app_on(TestDatabase::new(backend).await, vars).await
}

/// Another kessai instance on `first`'s database, with the same settings
/// otherwise: stateless instances sharing one PostgreSQL.
pub async fn spawn_second_instance(first: &TestApp, vars: &[(&str, &str)]) -> TestApp {
    spawn_app_on(TestDatabase::existing(&first.database.url), vars).await
}

async fn spawn_app_on(database: TestDatabase, vars: &[(&str, &str)]) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        // The writer thread lives as long as its guard: for the whole run.
        static LOG: std::sync::OnceLock<tracing_appender::non_blocking::WorkerGuard> =
            std::sync::OnceLock::new();
        LOG.get_or_init(|| kessai::telemetry::init(infrastructure::config::LogFormat::Text));
    }
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), database.url.clone()),
        ("DATABASE_MAX_CONNECTIONS".into(), "5".into()),
        (
            "AUTH_SECRET".into(),
            "test-secret-test-secret-test-secret-0123".into(),
        ),
        // Every test registers its users from 127.0.0.1: limits far above
        // what a test does (tests of the limits set low ones).
        ("AUTH_RATE_LIMIT_PER_ADDRESS".into(), "100000".into()),
        ("AUTH_RATE_LIMIT_PER_EMAIL".into(), "100000".into()),
    ]);
    for (k, v) in vars {
        env.insert((*k).into(), (*v).into());
    }
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("test settings");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build_with_listener(settings, listener)
        .await
        .expect("application starts");
    let address = format!("http://{}", app.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        database,
        shutdown: Some(tx),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// POST with a raw body and no content type, for malformed-input tests.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn register(&self, email: &str) -> Response {
        self.post(
            "/api/auth/register",
            None,
            &json!({"email": email, "password": PASSWORD, "name": "テスト 太郎"}),
        )
        .await
    }

    /// Registers a new user with a unique email and returns its token.
    pub async fn new_user(&self) -> TestUser {
        let email = format!("user-{}@example.jp", uuid_like());
        let response = self.register(&email).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        TestUser {
            id: body["user_id"].as_i64().unwrap(),
            email,
            token: body["access_token"].as_str().unwrap().to_string(),
        }
    }

    pub async fn product_ids(&self) -> Vec<i64> {
        let body: Value = self.get("/api/products", None).await.json().await.unwrap();
        body["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_i64().unwrap())
            .collect()
    }

    /// The catalog's product with this price (the demo catalog has one each).
    pub async fn product_priced(&self, price: i64) -> i64 {
        let body: Value = self.get("/api/products", None).await.json().await.unwrap();
        body["products"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["price"] == price)
            .unwrap_or_else(|| panic!("no product priced {price}"))["id"]
            .as_i64()
            .unwrap()
    }

    pub async fn create_order(&self, token: &str, items: Value) -> Response {
        self.post("/api/orders", Some(token), &json!({ "items": items }))
            .await
    }

    /// Places a one-line order and returns its JSON.
    pub async fn place_order(&self, token: &str) -> Value {
        let product = self.product_ids().await[0];
        let response = self
            .create_order(token, json!([{"product_id": product, "quantity": 1}]))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }
}

/// Asserts a problem-JSON error with the given status and code.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "body: {body}"
    );
    body
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

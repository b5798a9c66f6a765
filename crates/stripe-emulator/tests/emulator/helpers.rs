//! A running emulator mounted at `/_stripe` (as kessai mounts it) on
//! 127.0.0.1:0, a client, and a webhook receiver.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use stripe_emulator::{Emulator, EmulatorConfig, Faults, Timings};
use tokio::sync::oneshot;

pub const SECRET_KEY: &str = "sk_test_emulatorKey0123456789abcdef";
pub const WEBHOOK_SECRET: &str = "whsec_emulatorSecret0123456789";

pub fn fast_timings() -> Timings {
    Timings {
        processing_delay: Duration::from_millis(200),
        webhook_retry_base: Duration::from_millis(40),
        webhook_retry_max: Duration::from_millis(200),
        webhook_max_attempts: 4,
        webhook_timeout: Duration::from_secs(2),
    }
}

pub struct TestEmulator {
    pub emulator: Emulator,
    /// `http://127.0.0.1:PORT/_stripe`
    pub base: String,
    pub http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

pub async fn spawn() -> TestEmulator {
    spawn_with(None, Faults::default()).await
}

/// With `webhook_url`, the delivery loop runs too.
pub async fn spawn_with(webhook_url: Option<String>, faults: Faults) -> TestEmulator {
    let emulator = Emulator::with_timings(
        EmulatorConfig {
            secret_key: SECRET_KEY.to_string(),
            webhook_secret: WEBHOOK_SECRET.to_string(),
            webhook_url,
            faults,
        },
        fast_timings(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().nest("/_stripe", emulator.router());
    let (stop, stopped) = oneshot::channel::<()>();
    let shared = futures_shared(stopped);
    let deliveries = emulator.clone();
    let stop_deliveries = shared.clone();
    tokio::spawn(async move {
        deliveries
            .run_deliveries(async move {
                stop_deliveries.wait().await;
            })
            .await;
    });
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shared.wait().await })
            .await
            .unwrap();
    });
    TestEmulator {
        emulator,
        base: format!("http://{addr}/_stripe"),
        http: reqwest::Client::new(),
        _stop: stop,
    }
}

/// A oneshot receiver many tasks can wait on.
#[derive(Clone)]
pub struct Shared(tokio::sync::watch::Receiver<bool>);

impl Shared {
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }
}

fn futures_shared(stopped: oneshot::Receiver<()>) -> Shared {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = stopped.await;
        let _ = tx.send(true);
    });
    Shared(rx)
}

impl TestEmulator {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.post_with(path, form, None).await
    }

    pub async fn post_with(&self, path: &str, form: &[(&str, &str)], key: Option<&str>) -> Answer {
        let mut request = self
            .http
            .post(self.url(path))
            .bearer_auth(SECRET_KEY)
            .header("Stripe-Version", "2024-06-20")
            .form(form);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        Self::answer(request.send().await.unwrap()).await
    }

    /// A POST without the secret key (as the checkout page sends it).
    pub async fn post_public(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        Self::answer(
            self.http
                .post(self.url(path))
                .form(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(
            self.http
                .get(self.url(path))
                .bearer_auth(SECRET_KEY)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn put_faults(&self, faults: &Faults) -> Answer {
        Self::answer(
            self.http
                .put(self.url("/_emulator/faults"))
                .bearer_auth(SECRET_KEY)
                .json(faults)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn customer(&self) -> Value {
        let answer = self
            .post(
                "/v1/customers",
                &[("email", "taro@example.jp"), ("name", "山田太郎")],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body
    }

    pub async fn intent(&self, amount: &str, currency: &str) -> Value {
        let answer = self
            .post(
                "/v1/payment_intents",
                &[("amount", amount), ("currency", currency)],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body
    }

    /// A succeeded JPY intent.
    pub async fn paid_intent(&self, amount: &str) -> Value {
        let intent = self.intent(amount, "jpy").await;
        let id = intent["id"].as_str().unwrap();
        let answer = self
            .post(
                &format!("/v1/payment_intents/{id}/confirm"),
                &[("payment_method", "pm_card_visa")],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body["status"], "succeeded");
        answer.body
    }

    pub fn event_types(&self) -> Vec<String> {
        self.emulator
            .events()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    }

    /// Event types concerning one object (by `data.object.id` or its
    /// `payment_intent`).
    pub fn event_types_for(&self, id: &str) -> Vec<String> {
        self.emulator
            .events()
            .iter()
            .filter(|e| {
                let object = &e["data"]["object"];
                object["id"] == id || object["payment_intent"] == id
            })
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    }
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: String,
    pub content_type: String,
    pub body: Bytes,
}

impl Received {
    pub fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many requests first.
    pub fail_first: Arc<Mutex<u32>>,
    pub attempts: Arc<Mutex<u32>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    *receiver.attempts.lock().unwrap() += 1;
    {
        let mut fail = receiver.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    receiver.received.lock().unwrap().push(Received {
        signature: header("stripe-signature"),
        content_type: header("content-type"),
        body,
    });
    StatusCode::OK
}

impl Receiver {
    /// Starts a receiver; returns it and its URL.
    pub async fn start(fail_first: u32) -> (Self, String) {
        let receiver = Receiver {
            fail_first: Arc::new(Mutex::new(fail_first)),
            ..Receiver::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/webhooks/stripe", post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (receiver, format!("http://{addr}/webhooks/stripe"))
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn types(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| r.event()["type"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits until `done` holds for what was received (at most 5 s).
    pub async fn wait_until(&self, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; received {:?}",
                self.types()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Verifies a `Stripe-Signature` header as Stripe's libraries do.
pub fn verify_signature(header: &str, body: &[u8], secret: &str) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    signatures.contains(&expected)
}

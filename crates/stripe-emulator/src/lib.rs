//! A built-in Stripe emulator: a stateful, in-memory imitation of the parts
//! of Stripe's API that a card-payments backend uses, shaped as Stripe's API
//! version 2024-06-20 answers, with signed webhooks and fault injection.
//!
//! Where it must choose, it follows **real Stripe**, not localstripe
//! (`docs/localstripe.md` lists localstripe's deviations):
//!
//! - Customers, PaymentIntents (create, retrieve, update, confirm, cancel,
//!   capture), Charges and PaymentMethods (retrieve), Refunds, Events (list,
//!   retrieve), with Stripe's ids, amounts in the smallest currency unit,
//!   minimum and maximum amounts, and Stripe's error objects and HTTP codes.
//! - Idempotency keys as Stripe: the first result is replayed
//!   (`Idempotent-Replayed: true`), other parameters with the same key are an
//!   `idempotency_error`; every response has a `Request-Id`.
//! - Test cards: `pm_card_visa` succeeds, `pm_card_visa_chargeDeclined`
//!   (alias `pm_card_chargeDeclined`) and
//!   `pm_card_visa_chargeDeclinedInsufficientFunds` are declined with a 402
//!   `card_error`, and the emulator-specific `pm_card_delayed` goes to
//!   `processing` and succeeds after [`Timings::processing_delay`].
//! - Every change emits an event; events are delivered to the webhook URL
//!   signed as Stripe signs them and retried with exponential backoff.
//! - [`Faults`] inject latency, 500s, 429s, dropped connections and webhook
//!   drops, duplicates, delays and reordering.
//!
//! Routes (relative to where the router is mounted): `/v1/…`,
//! `GET /checkout/{client_secret}` (a test-card payment page), and the
//! admin endpoints under `/_emulator/…` (which need the secret key):
//! `GET|PUT /_emulator/faults`, `GET /_emulator/webhooks`,
//! `POST /_emulator/webhooks/deliver`,
//! `POST /_emulator/payment_intents/{id}/settle`.

#![recursion_limit = "256"]

mod admin;
mod api;
mod auth;
mod cards;
mod checkout;
mod error;
mod form;
mod http;
mod idempotency;
mod ids;
mod money;
mod objects;
mod state;
mod webhooks;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::State;

/// The API version whose shapes the emulator answers with.
pub const API_VERSION: &str = "2024-06-20";

/// The name of the emulator-specific PaymentMethod that settles later.
pub const DELAYED_PAYMENT_METHOD: &str = cards::DELAYED;

pub struct EmulatorConfig {
    /// The `sk_test_…` key the API accepts (Bearer or Basic).
    pub secret_key: String,
    /// The `whsec_…` secret deliveries are signed with.
    pub webhook_secret: String,
    /// Where events are POSTed (`None`: events are only stored).
    pub webhook_url: Option<String>,
    pub faults: Faults,
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("secret_key", &"***")
            .field("webhook_secret", &"***")
            .field("webhook_url", &self.webhook_url)
            .field("faults", &self.faults)
            .finish()
    }
}

/// Injected failures. Rates are shares in `[0, 1]`. `PUT /_emulator/faults`
/// takes this as JSON; absent fields take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added before every `/v1` request is handled (a client that gives up
    /// first leaves nothing done), faulted ones too.
    pub latency_ms: u64,
    /// Share of `/v1` requests answered 500 `api_error` before doing anything.
    pub error_rate: f64,
    /// Share answered 429 (`rate_limit`) before doing anything.
    pub rate_limit_rate: f64,
    /// Share whose connection is closed without an answer, **before** doing
    /// the work (nothing is created; a retry with the same idempotency key
    /// runs the request for the first time).
    pub drop_connection_rate: f64,
    /// Share of events never delivered.
    pub webhook_drop_rate: f64,
    /// Share of events delivered twice.
    pub webhook_duplicate_rate: f64,
    /// Delay before each event's first delivery attempt.
    pub webhook_delay_ms: u64,
    /// Deliver pending events in shuffled order (each also gets a random
    /// extra delay of up to `max(webhook_delay_ms, 250)` ms).
    pub webhook_reorder: bool,
    /// `false`: events created meanwhile are stored but never delivered;
    /// deliveries already queued wait until it is `true` again.
    pub webhooks_enabled: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            drop_connection_rate: 0.0,
            webhook_drop_rate: 0.0,
            webhook_duplicate_rate: 0.0,
            webhook_delay_ms: 0,
            webhook_reorder: false,
            webhooks_enabled: true,
        }
    }
}

impl Faults {
    /// Every rate must be a number in `[0, 1]`.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("error_rate", self.error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
            ("drop_connection_rate", self.drop_connection_rate),
            ("webhook_drop_rate", self.webhook_drop_rate),
            ("webhook_duplicate_rate", self.webhook_duplicate_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        Ok(())
    }
}

/// How long things take; the defaults suit people, tests shorten them.
#[derive(Debug, Clone)]
pub struct Timings {
    /// From `processing` to `succeeded` for [`DELAYED_PAYMENT_METHOD`].
    pub processing_delay: Duration,
    /// First webhook retry delay; doubles on each failure…
    pub webhook_retry_base: Duration,
    /// …up to this.
    pub webhook_retry_max: Duration,
    /// Attempts per delivery before giving up.
    pub webhook_max_attempts: u32,
    /// Bound on one delivery attempt.
    pub webhook_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            processing_delay: Duration::from_secs(2),
            webhook_retry_base: Duration::from_millis(200),
            webhook_retry_max: Duration::from_secs(5),
            webhook_max_attempts: 8,
            webhook_timeout: Duration::from_secs(10),
        }
    }
}

/// The emulator: cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    secret_key: String,
    webhook_secret: String,
    timings: Timings,
    state: Mutex<State>,
    /// Wakes the delivery loop (new event, flush, faults changed).
    wake: tokio::sync::Notify,
    http: reqwest::Client,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator").finish_non_exhaustive()
    }
}

impl Emulator {
    pub fn new(config: EmulatorConfig) -> Self {
        Self::with_timings(config, Timings::default())
    }

    pub fn with_timings(config: EmulatorConfig, timings: Timings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timings.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            inner: Arc::new(Inner {
                secret_key: config.secret_key,
                webhook_secret: config.webhook_secret,
                timings,
                state: Mutex::new(State::new(config.faults, config.webhook_url)),
                wake: tokio::sync::Notify::new(),
                http,
            }),
        }
    }

    /// Routes relative to the mount point: `/v1/…`, `/checkout/{client_secret}`
    /// and `/_emulator/…`. Mount with `Router::nest("/_stripe", emulator.router())`.
    pub fn router(&self) -> axum::Router {
        http::router(self.inner.clone())
    }

    pub fn faults(&self) -> Faults {
        self.inner.lock().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.inner.lock().faults = faults;
        self.inner.wake.notify_one();
    }

    pub fn set_webhook_url(&self, url: Option<String>) {
        self.inner.lock().webhook_url = url;
        self.inner.wake.notify_one();
    }

    /// Runs the webhook delivery loop until `shutdown` resolves: sends each
    /// pending event signed as Stripe signs it, and retries on a non-2xx
    /// answer or none with exponential backoff ([`Timings`]).
    pub async fn run_deliveries(&self, shutdown: impl Future<Output = ()> + Send) {
        webhooks::run(&self.inner, shutdown).await;
    }

    /// Sends every queued delivery now, once (failures are re-queued with
    /// backoff); what `POST /_emulator/webhooks/deliver` does.
    pub async fn deliver_pending(&self) -> serde_json::Value {
        webhooks::flush(&self.inner).await
    }

    /// Serves the router and the delivery loop on `listener` until
    /// `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut for_deliveries = stopped.clone();
        let mut for_server = stopped;
        let emulator = self.clone();
        let deliveries = tokio::spawn(async move {
            emulator
                .run_deliveries(async move {
                    let _ = for_deliveries.wait_for(|stopped| *stopped).await;
                })
                .await;
        });
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                let _ = for_server.wait_for(|stopped| *stopped).await;
            })
            .await;
        let _ = deliveries.await;
        result
    }

    /// Every event created so far, oldest first, as `GET /v1/events/{id}`
    /// shows it.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.inner
            .lock()
            .events
            .iter()
            .map(state::StoredEvent::to_json)
            .collect()
    }
}

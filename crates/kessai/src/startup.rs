//! Builds a running kessai from [`Settings`]: database, migrations, catalog,
//! services and router, served on a listener until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use api::{AppParts, AppState, CookieSettings};
use application::outbox::OutboxDispatcher;
use application::payments::{CustomerAccounts, LeaseSettings, PaymentService};
use application::ports::payment_gateway::PaymentGateway;
use application::ports::{Clock, SystemClock};
use application::reconcile::{ReconcileSettings, Reconciler};
use application::webhooks::WebhookService;
use application::{AuthService, CatalogService, OrderService};
use domain::{Currency, Money};
use infrastructure::catalog::{demo_catalog, load_catalog_file};
use infrastructure::config::Settings;
use infrastructure::db::{Database, PoolOptions};
use infrastructure::notify::LogNotifier;
use infrastructure::password::Argon2Hasher;
use infrastructure::stripe::webhook::StripeWebhookDecoder;
use infrastructure::stripe::{NotConfiguredGateway, StripeClient, StripeConfig};
use infrastructure::token::HmacTokenIssuer;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use stripe_emulator::{Emulator, EmulatorConfig, Faults};
use tokio::net::TcpListener;
use url::Url;

/// The shop prices in yen (the demo catalog, the design document).
const SHOP_CURRENCY: Currency = Currency::Jpy;

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    database: Database,
    outbox: OutboxDispatcher,
    /// The built-in Stripe emulator, when no key is configured.
    emulator: Option<Emulator>,
    reconciler: Reconciler,
    reconcile_interval: Option<std::time::Duration>,
}

/// Every use case, wired to its adapters: the design document's `di/`.
pub struct Services {
    pub auth: AuthService,
    pub orders: OrderService,
    pub catalog: CatalogService,
    pub payments: PaymentService,
    pub webhooks: WebhookService,
    pub outbox: OutboxDispatcher,
    pub reconciler: Reconciler,
}

/// Opens the database named by the settings and applies the migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    let database = Database::connect(
        &settings.database_url,
        PoolOptions {
            max_connections: settings.database_max_connections,
        },
    )
    .await?;
    database.migrate().await?;
    Ok(database)
}

/// How kessai reaches Stripe: the real API (a key is configured), the
/// built-in emulator on kessai's own listener, or nothing (commands that
/// run without a server and without a key).
#[derive(Clone)]
pub enum StripeAccess {
    Api {
        base: Url,
        secret_key: SecretString,
        webhook_secrets: Vec<SecretString>,
    },
    Unconfigured,
}

impl StripeAccess {
    /// What the settings say: the configured account, or nothing.
    pub fn from_settings(settings: &Settings) -> Self {
        match &settings.stripe_secret_key {
            Some(key) => Self::Api {
                base: settings.stripe_api_base.clone(),
                secret_key: key.clone(),
                webhook_secrets: settings.stripe_webhook_secrets.clone(),
            },
            None => Self::Unconfigured,
        }
    }

    fn gateway(&self) -> anyhow::Result<Arc<dyn PaymentGateway>> {
        match self {
            Self::Api {
                base, secret_key, ..
            } => Ok(Arc::new(StripeClient::new(StripeConfig::new(
                base.clone(),
                secret_key.clone(),
            ))?)),
            Self::Unconfigured => Ok(Arc::new(NotConfiguredGateway)),
        }
    }

    fn webhook_secrets(&self) -> Vec<SecretString> {
        match self {
            Self::Api {
                webhook_secrets, ..
            } => webhook_secrets.clone(),
            Self::Unconfigured => Vec::new(),
        }
    }
}

impl Services {
    /// Builds the services on an open database.
    pub fn build(
        settings: &Settings,
        database: &Database,
        stripe: &StripeAccess,
    ) -> anyhow::Result<Self> {
        let repositories = database.repositories();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let gateway = stripe.gateway()?;
        let token_key = match &settings.auth_secret {
            Some(secret) => SecretSlice::from(secret.expose_secret().as_bytes().to_vec()),
            None => {
                tracing::warn!(
                    "AUTH_SECRET is not set: using a random key, so every access token \
                     becomes invalid when this process stops (set AUTH_SECRET in production)"
                );
                HmacTokenIssuer::random_key()
            }
        };
        let hasher_slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        let auth = AuthService::new(
            repositories.users.clone(),
            repositories.sessions.clone(),
            Arc::new(Argon2Hasher::new(hasher_slots)?),
            Arc::new(HmacTokenIssuer::new(token_key)),
            clock.clone(),
            chrono::Duration::from_std(settings.access_token_ttl)
                .context("ACCESS_TOKEN_TTL_SECONDS out of range")?,
            CustomerAccounts::new(repositories.users.clone(), gateway.clone()),
        );
        let shipping_fee = Money::new(settings.shipping_fee, SHOP_CURRENCY)
            .context("SHIPPING_FEE out of range")?;
        let orders = OrderService::new(
            repositories.orders.clone(),
            repositories.products.clone(),
            gateway.clone(),
            clock.clone(),
            shipping_fee,
        );
        let webhook_secrets = stripe.webhook_secrets();
        if webhook_secrets.is_empty() {
            tracing::warn!("STRIPE_WEBHOOK_SECRET is not set: every webhook will be rejected");
        }
        let webhooks = WebhookService::new(
            Arc::new(StripeWebhookDecoder::new(
                webhook_secrets,
                settings.stripe_webhook_tolerance_seconds,
            )),
            repositories.orders.clone(),
            repositories.webhook_events.clone(),
            gateway.clone(),
            clock.clone(),
        );
        let instance = instance_id();
        let reconciler = Reconciler::new(
            repositories.orders.clone(),
            repositories.users.clone(),
            gateway.clone(),
            clock.clone(),
            ReconcileSettings {
                quiet_for: chrono::Duration::from_std(settings.reconcile_after)
                    .context("RECONCILE_AFTER_SECONDS out of range")?,
                ..ReconcileSettings::default()
            },
            instance.clone(),
        );
        let payments = PaymentService::new(
            repositories.orders.clone(),
            repositories.users.clone(),
            gateway,
            clock.clone(),
            LeaseSettings::default(),
            instance,
        );
        let outbox =
            OutboxDispatcher::new(repositories.outbox.clone(), Arc::new(LogNotifier), clock);
        Ok(Self {
            auth,
            orders,
            catalog: CatalogService::new(repositories.products.clone()),
            payments,
            webhooks,
            outbox,
            reconciler,
        })
    }
}

impl Application {
    /// Binds `settings.bind_addr` and builds everything.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.bind_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.bind_addr))?;
        Self::build_with_listener(settings, listener).await
    }

    /// Builds everything around an already bound listener (tests bind port 0).
    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let database = open_database(&settings).await?;
        let (stripe, emulator) = match StripeAccess::from_settings(&settings) {
            StripeAccess::Unconfigured => {
                let (access, emulator) = embedded_emulator(&settings, &listener)?;
                (access, Some(emulator))
            }
            configured => {
                tracing::info!(api_base = %settings.stripe_api_base, "using Stripe");
                (configured, None)
            }
        };
        let services = Services::build(&settings, &database, &stripe)?;
        let products = match &settings.catalog_file {
            Some(path) => load_catalog_file(path)?,
            None => demo_catalog()?,
        };
        services
            .catalog
            .load_catalog(&products)
            .await
            .map_err(|e| e.0)?;
        let state = AppState::new(AppParts {
            auth: services.auth,
            orders: services.orders,
            catalog: services.catalog,
            payments: services.payments,
            webhooks: services.webhooks,
            readiness: Arc::new(database.clone()),
            cookies: CookieSettings {
                secure: settings.cookie_secure,
            },
            security: api::SecuritySettings {
                allowed_origins: settings.allowed_origins.clone(),
                trust_proxy_headers: settings.trust_proxy_headers,
                auth_rate_limit_per_address: settings.auth_rate_limit_per_address,
                auth_rate_limit_per_email: settings.auth_rate_limit_per_email,
            },
            metrics: metrics_renderer(),
            payments_mode: if emulator.is_some() {
                "emulator"
            } else {
                "stripe"
            },
        });
        let mut router = api::router(state);
        if let Some(emulator) = &emulator {
            // Mounted after the API's layers: the emulator has its own, and
            // its paths (client secrets) stay out of kessai's request logs.
            router = router.nest("/_stripe", emulator.router());
        }
        Ok(Self {
            listener,
            router,
            database,
            outbox: services.outbox,
            emulator,
            reconciler: services.reconciler,
            reconcile_interval: settings.reconcile_interval,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests
    /// and closes the database pools.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, database = self.database.backend(), "kessai is listening");
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
        let outbox = tokio::spawn(run_outbox(self.outbox, workers_stopped.clone()));
        let reconciler = self.reconcile_interval.map(|every| {
            tokio::spawn(run_reconciler(
                self.reconciler,
                every,
                workers_stopped.clone(),
            ))
        });
        let deliveries = self.emulator.map(|emulator| {
            let mut stop = workers_stopped;
            tokio::spawn(async move {
                emulator
                    .run_deliveries(async move {
                        let _ = stop.changed().await;
                    })
                    .await;
            })
        });
        // With the peer address (ConnectInfo): the auth rate limits key on it.
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server failed")?;
        // In-flight requests are done; let the worker finish its round.
        let _ = stop_workers.send(true);
        let _ = outbox.await;
        if let Some(reconciler) = reconciler {
            let _ = reconciler.await;
        }
        if let Some(deliveries) = deliveries {
            let _ = deliveries.await;
        }
        self.database.close().await;
        tracing::info!("kessai stopped");
        Ok(())
    }
}

/// With no Stripe key, kessai runs the built-in emulator under `/_stripe`
/// on its own listener and talks to it over real HTTP, exactly as it would
/// talk to Stripe; the emulator's webhooks come back to kessai's own
/// endpoint, signed.
fn embedded_emulator(
    settings: &Settings,
    listener: &TcpListener,
) -> anyhow::Result<(StripeAccess, Emulator)> {
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        local.ip()
    };
    let origin = format!("http://{}", SocketAddr::new(host, local.port()));
    let secret_key = format!("sk_test_emulator_{}", random_token());
    let webhook_secret = match settings.stripe_webhook_secrets.first() {
        Some(secret) => secret.expose_secret().to_string(),
        None => format!("whsec_emulator_{}", random_token()),
    };
    let faults = match &settings.stripe_emulator_faults {
        Some(json) => {
            let faults: Faults = serde_json::from_str(json)
                .map_err(|e| anyhow::anyhow!("STRIPE_EMULATOR_FAULTS: {e}"))?;
            faults
                .validate()
                .map_err(|e| anyhow::anyhow!("STRIPE_EMULATOR_FAULTS: {e}"))?;
            tracing::warn!(?faults, "the Stripe emulator injects faults");
            faults
        }
        None => Faults::default(),
    };
    let emulator = Emulator::new(EmulatorConfig {
        secret_key: secret_key.clone(),
        webhook_secret: webhook_secret.clone(),
        webhook_url: Some(format!("{origin}/api/payments/webhook")),
        faults,
    });
    tracing::warn!(
        stripe = %format!("{origin}/_stripe"),
        checkout = %format!("{origin}/_stripe/checkout/{{client_secret}}"),
        "STRIPE_SECRET_KEY is not set: using the BUILT-IN STRIPE EMULATOR. NO REAL PAYMENTS \
         happen; set STRIPE_SECRET_KEY (and STRIPE_WEBHOOK_SECRET) to use Stripe"
    );
    let access = StripeAccess::Api {
        base: Url::parse(&format!("{origin}/_stripe/"))?,
        secret_key: SecretString::from(secret_key),
        webhook_secrets: vec![SecretString::from(webhook_secret)],
    };
    Ok((access, emulator))
}

fn random_token() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
}

/// The process-wide Prometheus recorder (installed once; every
/// application built in this process, as in tests, shares it).
fn metrics_renderer() -> api::MetricsRenderer {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    let handle = HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )
            .and_then(PrometheusBuilder::install_recorder)
            .map_err(|error| tracing::warn!(%error, "metrics recorder not installed"))
            .ok()
    });
    match handle.clone() {
        Some(handle) => Arc::new(move || handle.render()),
        None => Arc::new(String::new),
    }
}

/// Runs a reconciliation pass every `every` until told to stop.
async fn run_reconciler(
    reconciler: Reconciler,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(error) = reconciler.run_once().await {
                    tracing::warn!(%error, "reconciliation pass failed; will retry");
                }
            }
            _ = stop.changed() => break,
        }
    }
}

/// Up to `OUTBOX_BATCH × OUTBOX_BATCHES_PER_PASS` messages a pass (a
/// second): more than the webhooks one instance can take in a second, so
/// a burst's notifications do not pile up.
const OUTBOX_BATCH: i64 = 500;
const OUTBOX_BATCHES_PER_PASS: usize = 20;

/// Dispatches the outbox every second until told to stop.
async fn run_outbox(outbox: OutboxDispatcher, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(error) = outbox.dispatch_pending(OUTBOX_BATCH, OUTBOX_BATCHES_PER_PASS).await {
                    tracing::warn!(%error, "outbox dispatch failed; will retry");
                }
            }
            _ = stop.changed() => break,
        }
    }
}

/// Names this process in lease rows shared with other instances.
fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{:x}", std::process::id(), nanos)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

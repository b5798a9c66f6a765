//! Builds a running kessai from [`Settings`]: database, migrations, catalog,
//! services and router, served on a listener until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use api::{AppState, CookieSettings};
use application::outbox::OutboxDispatcher;
use application::payments::{CustomerAccounts, LeaseSettings, PaymentService};
use application::ports::payment_gateway::PaymentGateway;
use application::ports::{Clock, SystemClock};
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
use secrecy::{ExposeSecret, SecretSlice};
use tokio::net::TcpListener;

/// The shop prices in yen (the demo catalog, the design document).
const SHOP_CURRENCY: Currency = Currency::Jpy;

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    database: Database,
    outbox: OutboxDispatcher,
}

/// Every use case, wired to its adapters: the design document's `di/`.
pub struct Services {
    pub auth: AuthService,
    pub orders: OrderService,
    pub catalog: CatalogService,
    pub payments: PaymentService,
    pub webhooks: WebhookService,
    pub outbox: OutboxDispatcher,
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

impl Services {
    /// Builds the services on an open database.
    pub fn build(settings: &Settings, database: &Database) -> anyhow::Result<Self> {
        let repositories = database.repositories();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let gateway = payment_gateway(settings)?;
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
        if settings.stripe_webhook_secrets.is_empty() {
            tracing::warn!("STRIPE_WEBHOOK_SECRET is not set: every webhook will be rejected");
        }
        let webhooks = WebhookService::new(
            Arc::new(StripeWebhookDecoder::new(
                settings.stripe_webhook_secrets.clone(),
                settings.stripe_webhook_tolerance_seconds,
            )),
            repositories.orders.clone(),
            repositories.webhook_events.clone(),
            gateway.clone(),
            clock.clone(),
        );
        let payments = PaymentService::new(
            repositories.orders.clone(),
            repositories.users.clone(),
            gateway,
            clock.clone(),
            LeaseSettings::default(),
            instance_id(),
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
        let services = Services::build(&settings, &database)?;
        let products = match &settings.catalog_file {
            Some(path) => load_catalog_file(path)?,
            None => demo_catalog()?,
        };
        services
            .catalog
            .load_catalog(&products)
            .await
            .map_err(|e| e.0)?;
        let state = AppState {
            auth: services.auth,
            orders: services.orders,
            catalog: services.catalog,
            payments: services.payments,
            webhooks: services.webhooks,
            readiness: Arc::new(database.clone()),
            cookies: CookieSettings {
                secure: settings.cookie_secure,
            },
            metrics: metrics_renderer(),
        };
        Ok(Self {
            listener,
            router: api::router(state),
            database,
            outbox: services.outbox,
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
        let outbox = tokio::spawn(run_outbox(self.outbox, workers_stopped));
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")?;
        // In-flight requests are done; let the worker finish its round.
        let _ = stop_workers.send(true);
        let _ = outbox.await;
        self.database.close().await;
        tracing::info!("kessai stopped");
        Ok(())
    }
}

/// The Stripe client for the configured account, or — with no key — a
/// gateway that refuses every call (loudly), so nothing pretends to pay.
fn payment_gateway(settings: &Settings) -> anyhow::Result<Arc<dyn PaymentGateway>> {
    match &settings.stripe_secret_key {
        Some(key) => {
            let config = StripeConfig::new(settings.stripe_api_base.clone(), key.clone());
            tracing::info!(api_base = %settings.stripe_api_base, "using Stripe");
            Ok(Arc::new(StripeClient::new(config)?))
        }
        None => {
            tracing::warn!(
                "STRIPE_SECRET_KEY is not set: kessai runs without a payment provider; \
                 NO REAL PAYMENTS will happen and payment calls answer 502"
            );
            Ok(Arc::new(NotConfiguredGateway))
        }
    }
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

/// Dispatches the outbox every second until told to stop.
async fn run_outbox(outbox: OutboxDispatcher, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(error) = outbox.dispatch_pending(100).await {
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

//! PostgreSQL: production and scale-out. Every instance is stateless; this
//! database is the only shared state, so invariants live in its constraints
//! and conditional updates.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Postgres;

use super::writes::{EventWriter, OrderWriter, EVENTS, ORDER_WRITES};
use super::PoolOptions;

super::repositories::sql_repositories!(Postgres);

pub(super) async fn open(
    url: &SecretString,
    options: PoolOptions,
) -> anyhow::Result<SqlStore<Postgres>> {
    // The URL may hold a password: errors below never include it.
    let connect = PgConnectOptions::from_str(url.expose_secret())
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL"))?;
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect)
        .await
        .context("cannot connect to PostgreSQL")?;
    Ok(SqlStore {
        events: EventWriter::spawn(EventBatches(pool.clone()), event_writers(options), EVENTS),
        order_writes: OrderWriter::spawn(
            OrderBatches(pool.clone()),
            order_writers(options),
            ORDER_WRITES,
        ),
        writer: pool.clone(),
        reader: pool,
        inline: None,
    })
}

/// Group-commit tasks for webhook events: enough to keep PostgreSQL
/// committing while one batch waits on its round trips, at most a third
/// of the pool so reads always find a connection.
fn event_writers(options: PoolOptions) -> usize {
    (options.max_connections as usize / 3).clamp(1, 4)
}

/// Group-commit tasks for payment leases and intents: fewer than for
/// events (each creation also waits on Stripe, so fewer arrive at once),
/// and with the event writers at most half the pool.
fn order_writers(options: PoolOptions) -> usize {
    (options.max_connections as usize / 5).clamp(1, 2)
}

pub(super) async fn migrate(store: &SqlStore<Postgres>) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations/postgres")
        .run(&store.writer)
        .await
        .context("PostgreSQL migrations failed")
}

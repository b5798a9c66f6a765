//! SQLite: the embedded default. WAL so readers never block the writer,
//! `synchronous=FULL` so a committed payment survives a power cut, foreign
//! keys on, and a busy timeout for other processes touching the file.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Sqlite;

use super::inline_reads::InlineReads;
use super::kept::KeptConnections;
use super::writes::{EventWriter, OrderWriter, EVENTS, ORDER_WRITES};
use super::PoolOptions;

super::repositories::sql_repositories!(Sqlite);

/// The outbox claim (see postgres.rs): SQLite has no arrays, and finds
/// the rows by rowid.
const CLAIM_OUTBOX: &str = super::repositories::claim_outbox!("IN (", ")");

pub(super) async fn open(url: &str, options: PoolOptions) -> anyhow::Result<SqlStore<Sqlite>> {
    let base = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("DATABASE_URL `{url}` is not a SQLite URL"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let filename = base.get_filename().to_path_buf();
    // No ping before handing out a connection (sqlx's default): a SQLite
    // connection is a file handle that cannot go stale, and the ping is a
    // round trip to the connection's worker thread, as dear as the query.
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(base.clone())
        .await
        .with_context(|| format!("cannot open SQLite database `{url}`"))?;
    let reader = SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(2))
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(base.read_only(true))
        .await
        .with_context(|| format!("cannot open SQLite database `{url}` for reading"))?;
    // Nothing kept: the one writer connection serves every other write too.
    let kept = Arc::new(KeptConnections::new(writer.clone(), 0));
    let events = EventWriter::spawn(EventBatches(kept.clone()), 1, EVENTS);
    let order_writes = OrderWriter::spawn(OrderBatches(kept.clone()), 1, ORDER_WRITES);
    let inline = (!filename.as_os_str().is_empty() && filename.as_os_str() != ":memory:")
        .then(|| InlineReads::new(filename.clone()));
    Ok(SqlStore {
        writer,
        reader,
        events,
        order_writes,
        inline,
        kept,
        expected_payments: None,
        order_lookups: None,
        lookup_pool: None,
    })
}

pub(super) async fn migrate(store: &SqlStore<Sqlite>) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations/sqlite")
        .run(&store.writer)
        .await
        .context("SQLite migrations failed")
}

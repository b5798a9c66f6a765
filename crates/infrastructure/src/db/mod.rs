//! Storage: one SQL implementation of the repository ports, compiled for
//! SQLite (the embedded default) and PostgreSQL (production, scale-out).

mod group_commit;
mod inline_reads;
mod kept;
mod postgres;
mod repositories;
mod rows;
mod sqlite;
mod writes;

use std::sync::Arc;

use application::ports::ReadinessProbe;
use application::Repositories;
use async_trait::async_trait;
use domain::RepositoryError;

use crate::config::DatabaseUrl;

pub use group_commit::BatchStats;

/// Connection pools of one database. On SQLite all writes go through a
/// single connection (SQLite has one writer anyway, and queueing in the
/// pool beats `SQLITE_BUSY` retries); reads use a pool of their own.
/// On PostgreSQL both are the same pool.
pub struct SqlStore<DB: sqlx::Database> {
    pub(crate) writer: sqlx::Pool<DB>,
    pub(crate) reader: sqlx::Pool<DB>,
    /// Webhook events go through group commit (see [`group_commit`]).
    pub(crate) events: writes::EventWriter,
    /// So do the payment lease and the intent's record.
    pub(crate) order_writes: writes::OrderWriter,
    /// SQLite's hot reads, on the calling thread (see [`inline_reads`]);
    /// `None` on PostgreSQL and for an in-memory SQLite database.
    pub(crate) inline: Option<inline_reads::InlineReads>,
    /// The group-commit writers' connections between batches (see [`kept`]).
    pub(crate) kept: Arc<kept::KeptConnections<DB>>,
    /// PostgreSQL: webhooks paying the order that awaits them, without a
    /// read first; `None` on SQLite, whose reads are in-process.
    pub(crate) expected_payments: Option<writes::PaymentWriter>,
    /// PostgreSQL: webhooks' order look-ups, batched like the writes;
    /// `None` on SQLite, whose reads are in-process.
    pub(crate) order_lookups: Option<writes::OrderLookups>,
    /// PostgreSQL: the look-ups' own connections, when they have them.
    pub(crate) lookup_pool: Option<sqlx::Pool<DB>>,
}

pub(crate) fn db_error(error: sqlx::Error) -> RepositoryError {
    RepositoryError::unexpected(error)
}

/// An open database of either kind.
#[derive(Clone)]
pub enum Database {
    Sqlite(Arc<SqlStore<sqlx::Sqlite>>),
    Postgres(Arc<SqlStore<sqlx::Postgres>>),
}

#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub max_connections: u32,
}

impl Database {
    /// Opens (and for SQLite creates) the database. Does not migrate.
    pub async fn connect(url: &DatabaseUrl, options: PoolOptions) -> anyhow::Result<Self> {
        match url {
            DatabaseUrl::Sqlite(url) => {
                Ok(Self::Sqlite(Arc::new(sqlite::open(url, options).await?)))
            }
            DatabaseUrl::Postgres(url) => Ok(Self::Postgres(Arc::new(
                postgres::open(url, options).await?,
            ))),
        }
    }

    /// Applies the embedded migrations of this backend (safe to run from
    /// several instances at once: sqlx takes a lock).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(store) => sqlite::migrate(store).await,
            Self::Postgres(store) => postgres::migrate(store).await,
        }
    }

    pub fn repositories(&self) -> Repositories {
        match self {
            Self::Sqlite(s) => Repositories {
                users: s.clone(),
                sessions: s.clone(),
                products: s.clone(),
                orders: s.clone(),
                webhook_events: s.clone(),
                outbox: s.clone(),
            },
            Self::Postgres(s) => Repositories {
                users: s.clone(),
                sessions: s.clone(),
                products: s.clone(),
                orders: s.clone(),
                webhook_events: s.clone(),
                outbox: s.clone(),
            },
        }
    }

    /// How the webhook event writer has batched so far.
    pub fn event_batches(&self) -> &BatchStats {
        match self {
            Self::Sqlite(s) => &s.events.stats,
            Self::Postgres(s) => &s.events.stats,
        }
    }

    /// How the payment lease and intent writer has batched so far.
    pub fn order_write_batches(&self) -> &BatchStats {
        match self {
            Self::Sqlite(s) => &s.order_writes.stats,
            Self::Postgres(s) => &s.order_writes.stats,
        }
    }

    /// How the webhooks' order look-ups have batched so far (PostgreSQL;
    /// SQLite reads them in-process, one by one).
    pub fn order_lookup_batches(&self) -> Option<&BatchStats> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres(s) => s.order_lookups.as_ref().map(|lookups| &*lookups.stats),
        }
    }

    /// PostgreSQL with the look-ups' own connections: how many times their
    /// look-up ran on a generic plan and how many times it was planned
    /// afresh, summed over their connections (for tests; waits until
    /// none is in use).
    #[doc(hidden)]
    pub async fn order_lookup_plans(&self) -> Option<(i64, i64)> {
        let Self::Postgres(store) = self else {
            return None;
        };
        postgres::lookup_plans(store.lookup_pool.as_ref()?).await
    }

    /// PostgreSQL: the plan of the outbox claim as a prepared statement
    /// plans it once it stops planning per call (`EXPLAIN` of its generic
    /// plan; for tests). `None` on SQLite.
    #[doc(hidden)]
    pub async fn outbox_claim_plan(&self) -> Option<String> {
        let Self::Postgres(store) = self else {
            return None;
        };
        postgres::claim_plan(&store.reader).await.ok()
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => {
                s.reader.close().await;
                s.writer.close().await;
            }
            Self::Postgres(s) => {
                // Closing the pool closes what comes back to it: the
                // writers' shelf gives its connections back (after the pool
                // is marked closed, so none is kept again), or they would
                // stay open on the server until the process ends.
                let closing = s.writer.close();
                s.kept.release_all();
                closing.await;
                if let Some(lookups) = &s.lookup_pool {
                    lookups.close().await;
                }
            }
        }
    }
}

#[async_trait]
impl ReadinessProbe for Database {
    async fn check(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(s) => {
                sqlx::query("SELECT 1").execute(&s.reader).await?;
            }
            Self::Postgres(s) => {
                sqlx::query("SELECT 1").execute(&s.reader).await?;
            }
        }
        Ok(())
    }
}

//! PostgreSQL: production and scale-out. Every instance is stateless; this
//! database is the only shared state, so invariants live in its constraints
//! and conditional updates.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Postgres;

use super::group_commit::BatchSink;
use super::kept::KeptConnections;
use super::rows::{LookupLineRow, ORDERS_BY_LOOKUP};
use super::writes::{
    EventWriter, OrderLookup, OrderLookups, OrderWriter, PaymentWriter, EVENTS, EXPECTED_PAYMENTS,
    ORDER_LOOKUPS, ORDER_WRITES,
};
use super::PoolOptions;

super::repositories::sql_repositories!(Postgres);

/// The outbox claim. The ids come from an `ARRAY(…)`, which PostgreSQL
/// computes once, up front, by the pending index in id order; the rows are
/// then found by id. With `id IN (SELECT …)` instead, the generic plan of
/// the prepared statement was a hash semi-join over a sequential scan of
/// the whole table: every claim read every message ever sent (25 ms for
/// 210,000 rows here, against 3 ms), and in a burst of webhooks the claims
/// kept a backend busy all the time.
const CLAIM_OUTBOX: &str = super::repositories::claim_outbox!("= ANY (ARRAY(", "))");

mod event_statement;
mod expected_payments;

pub(super) async fn open(
    url: &SecretString,
    options: PoolOptions,
) -> anyhow::Result<SqlStore<Postgres>> {
    // The URL may hold a password: errors below never include it.
    let connect = PgConnectOptions::from_str(url.expose_secret())
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL"))?;
    // The look-ups' connections come out of the same budget.
    let lookup_connections = lookup_connections(options);
    let pool = pool_of(
        options.max_connections - lookup_connections,
        connect.clone(),
    )
    .await?;
    let lookup_pool = match lookup_connections {
        0 => None,
        n => Some(
            pool_of(
                n,
                connect.options([("plan_cache_mode", "force_generic_plan")]),
            )
            .await?,
        ),
    };
    let order_writers = order_writers(options);
    // At most half the pool waits on the writers' shelf: the other half
    // always serves reads and the other writes.
    let shelf = (EVENT_WRITERS + PAYMENT_WRITERS + order_writers)
        .min(pool.options().get_max_connections() as usize / 2);
    let kept = Arc::new(KeptConnections::new(pool.clone(), shelf));
    Ok(SqlStore {
        events: EventWriter::spawn(
            event_statement::EventStatements(kept.clone()),
            EVENT_WRITERS,
            EVENTS,
        ),
        order_writes: OrderWriter::spawn(OrderBatches(kept.clone()), order_writers, ORDER_WRITES),
        expected_payments: Some(PaymentWriter::spawn(
            expected_payments::PaymentStatements(kept.clone()),
            PAYMENT_WRITERS,
            EXPECTED_PAYMENTS,
        )),
        order_lookups: Some(OrderLookups::spawn(
            OrderLookupBatches(lookup_pool.clone().unwrap_or_else(|| pool.clone())),
            lookup_tasks(options),
            ORDER_LOOKUPS,
        )),
        lookup_pool,
        writer: pool.clone(),
        reader: pool,
        inline: None,
        kept,
    })
}

/// A pool of `max` connections with kessai's settings.
async fn pool_of(max: u32, connect: PgConnectOptions) -> anyhow::Result<sqlx::PgPool> {
    // No ping before handing out a connection (sqlx's default): it is a
    // round trip of its own before every query and every transaction, on
    // the hot paths a third or more of the round trips. A connection that
    // died while idle fails the one statement that uses it; sqlx then
    // drops it and the next acquire opens a new one. Webhooks are retried
    // by Stripe and the other writes are conditional, so that one failure
    // loses nothing. `idle_timeout` keeps idle connections from going stale
    // behind a proxy or firewall in the first place.
    PgPoolOptions::new()
        .max_connections(max)
        .test_before_acquire(false)
        .idle_timeout(Duration::from_secs(60))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect)
        .await
        .context("cannot connect to PostgreSQL")
}

/// Tasks running batched order look-ups: two, so one batch's round trip
/// does not hold up the next (one on a pool of three or fewer).
fn lookup_tasks(options: PoolOptions) -> usize {
    if options.max_connections <= 3 {
        1
    } else {
        2
    }
}

/// Connections of the look-ups' own pool, one per look-up task, out of
/// `DATABASE_MAX_CONNECTIONS`; none on a pool of one, where the look-ups
/// share it.
///
/// The pool exists for its `plan_cache_mode = force_generic_plan`, which
/// nothing else runs under. PostgreSQL otherwise plans the look-up afresh
/// on every run: knowing each batch's arrays, it always finds a custom
/// plan cheaper than the generic one (which assumes ten rows), so it never
/// switches. Planning that four-way join took 0.2–0.5 ms against 0.06 ms
/// to run it, and in a profile of the webhook burst planning was about a
/// quarter of PostgreSQL's CPU. The generic plan is index scans all the
/// way down (by `payment_intent_id`, by primary key, by order for the
/// lines), whatever the batch, and PostgreSQL plans it again when an
/// `ANALYZE` changes the tables' statistics.
///
/// Not for the whole pool: a generic plan is made once per connection, and
/// for the one-statement event batch (`event_statement`), made while
/// `webhook_events` was still small, it hashed a sequential scan of that
/// table, which grew under it (measured: a third of PostgreSQL's CPU).
fn lookup_connections(options: PoolOptions) -> u32 {
    if options.max_connections <= 1 {
        0
    } else {
        lookup_tasks(options) as u32
    }
}

/// `EXPLAIN` of the outbox claim's generic plan (see
/// [`super::Database::outbox_claim_plan`]).
pub(super) async fn claim_plan(pool: &sqlx::PgPool) -> Result<String, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("PREPARE kessai_claim_plan AS {CLAIM_OUTBOX}"))
        .execute(&mut *tx)
        .await?;
    let lines: Vec<String> =
        sqlx::query_scalar("EXPLAIN (COSTS OFF) EXECUTE kessai_claim_plan (0, 10, 0, 500, 0)")
            .fetch_all(&mut *tx)
            .await?;
    sqlx::query("DEALLOCATE kessai_claim_plan")
        .execute(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(lines.join("\n"))
}

/// `(generic, custom)` plans of the look-up over `pool`'s
/// connections (see [`super::Database::order_lookup_plans`]).
pub(super) async fn lookup_plans(pool: &sqlx::PgPool) -> Option<(i64, i64)> {
    // Every open connection, once it is back in the pool: sqlx pings a
    // connection on its way back, and asking for one meanwhile would open
    // another.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pool.num_idle() < pool.size() as usize && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut idle = Vec::new();
    while let Some(connection) = pool.try_acquire() {
        idle.push(connection);
    }
    let mut plans = (0, 0);
    for connection in &mut idle {
        let (generic, custom): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(sum(generic_plans), 0)::int8, COALESCE(sum(custom_plans), 0)::int8 \
             FROM pg_prepared_statements WHERE statement = $1",
        )
        .bind(ORDERS_BY_LOOKUP)
        .fetch_one(&mut **connection)
        .await
        .ok()?;
        plans = (plans.0 + generic, plans.1 + custom);
    }
    Some(plans)
}

/// The batched look-ups' database: their own pool (see
/// [`lookup_connections`]), or the shared one.
struct OrderLookupBatches(sqlx::PgPool);

#[async_trait]
impl BatchSink<OrderLookup, Option<Order>> for OrderLookupBatches {
    async fn write_batch(
        &self,
        lookups: &[OrderLookup],
    ) -> Result<Vec<RepoResult<Option<Order>>>, sqlx::Error> {
        let intents: Vec<&str> = lookups
            .iter()
            .map(|l| l.payment_intent_id.as_str())
            .collect();
        let fallbacks: Vec<Option<i64>> = lookups
            .iter()
            .map(|l| l.fallback.map(OrderId::get))
            .collect();
        let rows = sqlx::query_as::<_, LookupLineRow>(ORDERS_BY_LOOKUP)
            .bind(&intents)
            .bind(&fallbacks)
            .fetch_all(&self.0)
            .await?;
        // Rows come ordered by lookup, each lookup's lines together.
        let mut found: Vec<Vec<OrderLineRow>> = lookups.iter().map(|_| Vec::new()).collect();
        for row in rows {
            let slot = usize::try_from(row.lookup - 1)
                .ok()
                .and_then(|index| found.get_mut(index));
            if let Some(slot) = slot {
                slot.push(row.line);
            }
        }
        Ok(found
            .into_iter()
            .map(|rows| orders_from_lines(rows).map(|mut orders| orders.pop()))
            .collect())
    }
}

/// Group-commit tasks for webhook events: one. A batch is one statement
/// (`event_statement`), and what PostgreSQL spends on a statement (its
/// executor, its commit) hardly depends on how many events it carries, so
/// the burst is best taken in as few, large batches as it takes. Measured
/// (5 s runs of `bench/run.sh`, webhooks at 16 / 64 connections): three
/// writers 4,192 / 5,502 events/s, two 4,648 / 6,330, one 4,788 / ≥ 7,038
/// (its pool of events ran out); five 3,409 / 5,788. When a batch was five
/// round trips, several writers had paid: one left PostgreSQL waiting.
const EVENT_WRITERS: usize = 1;

/// Group-commit tasks for expected payments (`expected_payments`): two.
/// In a burst nearly every webhook goes this way (the event writer above
/// takes what it leaves), and without a look-up in front a webhook waits
/// on little but these statements' commits: with one writer a batch
/// waited for the whole statement before it, with two the next one is on
/// its way while the last one's commit is flushed. Measured (5 s runs,
/// 16 connections): one writer 3,519 webhooks/s (52 % of the database
/// floor), two 5,286 (74 %).
const PAYMENT_WRITERS: usize = 2;

/// Group-commit tasks for payment leases and intents: a batch there is a
/// transaction of several round trips, so two keep PostgreSQL busy while
/// one waits; one on a pool of fewer than ten.
fn order_writers(options: PoolOptions) -> usize {
    (options.max_connections as usize / 5).clamp(1, 2)
}

pub(super) async fn migrate(store: &SqlStore<Postgres>) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations/postgres")
        .run(&store.writer)
        .await
        .context("PostgreSQL migrations failed")
}

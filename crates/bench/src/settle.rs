//! Between scenarios: let the database settle, so that each scenario pays
//! for its own writes and not for the cleanup of the one before.
//!
//! Intent creation updates tens of thousands of orders twice; on
//! PostgreSQL the dead row versions it leaves call autovacuum, which then
//! competes with the next scenario for the same two cores. Settling runs
//! that work up front (`VACUUM ANALYZE`, then a `CHECKPOINT` so the next
//! scenario does not pay for flushing the previous one's pages) and waits
//! for any autovacuum worker still running. On SQLite it checkpoints the
//! WAL into the database file.
//!
//! What it found is printed and recorded (dead rows in `orders` before, how
//! long it took), so a run shows whether there was anything to settle.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::Executor;

#[derive(Args)]
pub struct SettleArgs {
    /// kessai's DATABASE_URL.
    #[arg(long)]
    db: String,
    /// The records file the settle record is appended to.
    #[arg(long)]
    records: PathBuf,
    #[arg(long = "label")]
    labels: Vec<String>,
}

/// How long to wait for autovacuum workers to finish before going on.
const AUTOVACUUM_PATIENCE: Duration = Duration::from_secs(60);

pub async fn run(args: SettleArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut record = if args.db.starts_with("sqlite:") {
        sqlite(&args.db).await?
    } else {
        postgres(&args.db).await?
    };
    record["type"] = json!("settle");
    record["took_ms"] = json!(started.elapsed().as_millis() as u64);
    if let Some(object) = record.as_object_mut() {
        object.extend(crate::labels(&args.labels)?);
    }
    crate::append_record(&args.records, &record)?;
    println!("{record}");
    Ok(())
}

async fn postgres(url: &str) -> anyhow::Result<serde_json::Value> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("cannot connect to PostgreSQL")?;
    let dead_before: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(n_dead_tup), 0)::bigint FROM pg_stat_user_tables")
            .fetch_one(&pool)
            .await?;
    let autovacuum_before = autovacuum_workers(&pool).await?;
    // VACUUM cannot run inside a transaction block: one statement each.
    pool.execute("VACUUM (ANALYZE)").await?;
    pool.execute("CHECKPOINT").await?;
    let deadline = Instant::now() + AUTOVACUUM_PATIENCE;
    let mut autovacuum_after = autovacuum_workers(&pool).await?;
    while autovacuum_after > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        autovacuum_after = autovacuum_workers(&pool).await?;
    }
    pool.close().await;
    Ok(json!({
        "backend": "postgres",
        "dead_rows_before": dead_before,
        "autovacuum_workers_before": autovacuum_before,
        "autovacuum_workers_after": autovacuum_after,
    }))
}

async fn autovacuum_workers(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
    )
    .fetch_one(pool)
    .await?)
}

async fn sqlite(url: &str) -> anyhow::Result<serde_json::Value> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::from_str(url)?.busy_timeout(Duration::from_secs(10)))
        .await
        .with_context(|| format!("cannot open {url}"))?;
    // (busy, WAL frames, frames checkpointed): kessai's readers may keep
    // the checkpoint from finishing; that is reported, not an error.
    let (busy, wal_frames, checkpointed): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await?;
    pool.close().await;
    Ok(json!({
        "backend": "sqlite",
        "wal_frames": wal_frames,
        "checkpointed_frames": checkpointed,
        "checkpoint_busy": busy != 0,
    }))
}

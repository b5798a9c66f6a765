//! After a webhook scenario: was every event applied exactly once? And the
//! throwaway PostgreSQL's durability, put back to the server defaults.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::Executor;

#[derive(Args)]
pub struct CheckArgs {
    /// kessai's DATABASE_URL.
    #[arg(long)]
    db: String,
    /// The tag the events were signed with (`sign-webhooks --tag`), also
    /// the `tag` label of the scenario's record.
    #[arg(long)]
    tag: String,
    /// The records file: the scenario's record is read from it, the check's
    /// record appended to it.
    #[arg(long)]
    records: PathBuf,
    #[arg(long = "label")]
    labels: Vec<String>,
}

#[derive(Args)]
pub struct PgDurableArgs {
    #[arg(long)]
    url: String,
}

struct Counts {
    by_outcome: Vec<(String, i64)>,
    applied_orders: i64,
    paid_orders: i64,
}

/// The same SQL on both backends (`$1` binds work on SQLite too).
macro_rules! counts {
    ($pool:expr, $tag:expr) => {{
        let event_prefix = format!("evt_bench_{}_", $tag);
        let by_outcome: Vec<(String, i64)> = sqlx::query_as(
            "SELECT outcome, COUNT(*) FROM webhook_events \
             WHERE substr(id, 1, $2) = $1 GROUP BY outcome ORDER BY outcome",
        )
        .bind(&event_prefix)
        .bind(event_prefix.len() as i32)
        .fetch_all($pool)
        .await?;
        let applied_orders: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT order_id) FROM webhook_events \
             WHERE substr(id, 1, $2) = $1 AND outcome = 'applied'",
        )
        .bind(&event_prefix)
        .bind(event_prefix.len() as i32)
        .fetch_one($pool)
        .await?;
        // Paid by them: through the intent the applied event names.
        let paid_orders: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders o JOIN webhook_events e \
             ON e.order_id = o.id AND e.payment_intent_id = o.payment_intent_id \
             WHERE substr(e.id, 1, $2) = $1 AND e.outcome = 'applied' AND o.status = 'paid'",
        )
        .bind(&event_prefix)
        .bind(event_prefix.len() as i32)
        .fetch_one($pool)
        .await?;
        Counts {
            by_outcome,
            applied_orders,
            paid_orders,
        }
    }};
}

async fn counts(db: &str, tag: &str) -> anyhow::Result<Counts> {
    if db.starts_with("sqlite:") {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::from_str(db)?
                    .read_only(true)
                    .busy_timeout(Duration::from_secs(10)),
            )
            .await
            .with_context(|| format!("cannot open {db}"))?;
        let counts = counts!(&pool, tag);
        pool.close().await;
        Ok(counts)
    } else {
        let pool = PgPoolOptions::new().max_connections(1).connect(db).await?;
        let counts = counts!(&pool, tag);
        pool.close().await;
        Ok(counts)
    }
}

pub async fn webhooks(args: CheckArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.records)
        .with_context(|| format!("cannot read {}", args.records.display()))?;
    let scenario: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|r| r["type"] == "scenario" && r["tag"].as_str() == Some(args.tag.as_str()))
        .with_context(|| format!("no scenario record with tag {}", args.tag))?;
    let ok = scenario["ok"].as_f64().unwrap_or(0.0) as i64;
    let sent = scenario["sent"].as_f64().unwrap_or(0.0) as i64;
    let wraps = scenario["wraps"].as_f64().unwrap_or(0.0) as i64;
    let exhausted = scenario["exhausted"].as_f64().unwrap_or(0.0) as i64;

    // Requests cut off when wrk stopped may still be committing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = counts(&args.db, &args.tag).await?;
    let applied = counts
        .by_outcome
        .iter()
        .find(|(o, _)| o == "applied")
        .map_or(0, |(_, n)| *n);
    let others: Vec<&(String, i64)> = counts
        .by_outcome
        .iter()
        .filter(|(o, _)| o != "applied")
        .collect();
    let mut problems = Vec::new();
    if wraps > 0 {
        problems.push(format!(
            "events were sent again ({wraps} wrap(s)): run wrk with --once"
        ));
    }
    if applied < ok {
        problems.push(format!(
            "{ok} events answered 2xx but only {applied} are applied"
        ));
    }
    if applied > sent {
        problems.push(format!(
            "{applied} events applied but only {sent} were sent"
        ));
    }
    if counts.applied_orders != applied {
        problems.push(format!(
            "{applied} applied events paid {} distinct orders",
            counts.applied_orders
        ));
    }
    if counts.paid_orders != applied {
        problems.push(format!(
            "{applied} applied events but {} orders paid by them",
            counts.paid_orders
        ));
    }
    if !others.is_empty() {
        problems.push(format!("events with other outcomes: {others:?}"));
    }
    let mut record = json!({
        "type": "check",
        "check": "webhook_events_applied_once",
        "tag": args.tag,
        "ok_responses": ok,
        "sent": sent,
        "applied": applied,
        "paid_orders": counts.paid_orders,
        "other_outcomes": others.iter().map(|(o, n)| json!({"outcome": o, "count": n})).collect::<Vec<_>>(),
        "pool_exhausted": exhausted > 0,
        "pass": problems.is_empty(),
        "problems": problems,
    });
    if let Some(object) = record.as_object_mut() {
        object.extend(crate::labels(&args.labels)?);
    }
    crate::append_record(&args.records, &record)?;
    println!("{record}");
    Ok(())
}

pub async fn pg_durable(args: PgDurableArgs) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.url)
        .await
        .context("cannot connect to PostgreSQL")?;
    for statement in [
        "ALTER SYSTEM SET fsync = on",
        "ALTER SYSTEM SET synchronous_commit = on",
        "ALTER SYSTEM SET full_page_writes = on",
        "SELECT pg_reload_conf()",
    ] {
        pool.execute(statement).await?;
    }
    pool.close().await;
    // The postmaster applies the reload asynchronously.
    let mut settings = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fresh = PgPoolOptions::new()
            .max_connections(1)
            .connect(&args.url)
            .await?;
        settings = sqlx::query_as::<_, (String, String)>(
            "SELECT name, setting FROM pg_settings \
             WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes') ORDER BY name",
        )
        .fetch_all(&fresh)
        .await?;
        fresh.close().await;
        if settings.iter().all(|(_, v)| v == "on") {
            println!("{}", json!({"postgres_durability": settings}));
            return Ok(());
        }
    }
    anyhow::bail!("PostgreSQL did not take the durable settings: {settings:?}")
}

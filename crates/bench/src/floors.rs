//! The floors kessai's figures are divided by, measured on the same
//! machine in the same run:
//!
//! - the database alone: single-row insert transactions per second, with
//!   the settings kessai uses (SQLite: WAL, `synchronous=FULL`, foreign
//!   keys, one writer connection; PostgreSQL: the server's durability as
//!   configured, a pool of kessai's size), at the scenario's concurrency.
//!   The pool does not ping a connection before handing it out (sqlx's
//!   `test_before_acquire`, on by default): the floor is the database's,
//!   not the pool's;
//! - a bare request to the Stripe stand-in through kessai's own Stripe
//!   client (`infrastructure::stripe::StripeClient`: the same reqwest
//!   settings, headers, form encoding, idempotency keys and parsing).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use application::ports::payment_gateway::{
    IdempotencyKey, NewCustomer, NewPaymentIntent, PaymentGateway,
};
use clap::{Args, ValueEnum};
use domain::{Currency, Money};
use infrastructure::stripe::{StripeClient, StripeConfig};
use secrecy::SecretString;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Executor;

use crate::drive::{drive, Run};

#[derive(Args)]
pub struct DbArgs {
    /// `sqlite://PATH` (a fresh file) or a PostgreSQL server URL (a
    /// database `kessai_bench_floor` is created there and dropped after).
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// PostgreSQL pool size (kessai's DATABASE_MAX_CONNECTIONS).
    #[arg(long, default_value_t = 10)]
    pool_size: u32,
    /// Size of the inserted row's text column; default: the size of the
    /// harness's webhook event payload.
    #[arg(long)]
    payload_bytes: Option<usize>,
    #[arg(long)]
    record: Option<PathBuf>,
    #[arg(long = "label")]
    labels: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StripeOp {
    /// POST /v1/payment_intents (what an intent creation sends).
    Create,
    /// GET /v1/payment_intents/{id} (what a repeated intent call sends).
    Retrieve,
}

#[derive(Args)]
pub struct StripeArgs {
    /// The stand-in's base URL (what kessai gets as STRIPE_API_BASE).
    #[arg(long)]
    base: String,
    #[arg(long, default_value = "sk_test_bench")]
    key: String,
    #[arg(long, value_enum, default_value = "create")]
    op: StripeOp,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The intent amount (JPY).
    #[arg(long, default_value_t = 1000)]
    amount: i64,
    #[arg(long)]
    record: Option<PathBuf>,
    #[arg(long = "label")]
    labels: Vec<String>,
}

const CREATE_TABLE: &str = "CREATE TABLE floor_events (\
     id TEXT PRIMARY KEY, payload TEXT NOT NULL, received_at TEXT NOT NULL)";
const INSERT: &str = "INSERT INTO floor_events (id, payload, received_at) VALUES ($1, $2, $3)";

fn now_text() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

fn finish(
    run: &Run,
    base: serde_json::Value,
    record: Option<&PathBuf>,
    labels: &[String],
) -> anyhow::Result<()> {
    let mut out = base;
    if let (Some(object), Some(summary)) = (out.as_object_mut(), run.summary().as_object()) {
        object.extend(summary.clone());
        object.extend(crate::labels(labels)?);
    }
    if let Some(path) = record {
        crate::append_record(path, &out)?;
    }
    println!("{out}");
    if run.ok == 0 {
        anyhow::bail!(
            "no request succeeded: {}",
            run.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

pub async fn db(args: DbArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(args.duration);
    let payload_bytes = args.payload_bytes.unwrap_or_else(|| {
        crate::webhooks::event_payload("floor", 1_000_000, None, 1100, "jpy", 1_700_000_000)
            .to_string()
            .len()
    });
    let payload: Arc<str> = "x".repeat(payload_bytes).into();
    let run = if args.url.starts_with("sqlite:") {
        let path = args
            .url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        // The options of crates/infrastructure/src/db/sqlite.rs (writer).
        let options = SqliteConnectOptions::from_str(&args.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open {}", args.url))?;
        pool.execute(CREATE_TABLE).await?;
        let run = drive(args.concurrency, duration, move |n| {
            let pool = pool.clone();
            let payload = payload.clone();
            async move {
                let mut tx = pool.begin().await?;
                sqlx::query(INSERT)
                    .bind(format!("evt_floor_{n}"))
                    .bind(&*payload)
                    .bind(now_text())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        })
        .await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        run
    } else {
        let server = PgPoolOptions::new()
            .max_connections(1)
            .connect(&args.url)
            .await
            .context("cannot connect to PostgreSQL")?;
        server
            .execute("DROP DATABASE IF EXISTS kessai_bench_floor WITH (FORCE)")
            .await?;
        server.execute("CREATE DATABASE kessai_bench_floor").await?;
        let mut url = url::Url::parse(&args.url)?;
        url.set_path("/kessai_bench_floor");
        let pool = PgPoolOptions::new()
            .max_connections(args.pool_size)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url.as_str())
            .await?;
        pool.execute(CREATE_TABLE).await?;
        let settings: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, setting FROM pg_settings \
             WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes') ORDER BY name",
        )
        .fetch_all(&pool)
        .await?;
        eprintln!("floor-db: PostgreSQL settings {settings:?}");
        let run = {
            let pool = pool.clone();
            drive(args.concurrency, duration, move |n| {
                let pool = pool.clone();
                let payload = payload.clone();
                async move {
                    let mut tx = pool.begin().await?;
                    sqlx::query(INSERT)
                        .bind(format!("evt_floor_{n}"))
                        .bind(&*payload)
                        .bind(now_text())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }
            })
            .await
        };
        pool.close().await;
        server
            .execute("DROP DATABASE IF EXISTS kessai_bench_floor WITH (FORCE)")
            .await?;
        run
    };
    finish(
        &run,
        json!({
            "type": "floor",
            "floor": "db",
            "conns": args.concurrency,
            "payload_bytes": payload_bytes,
        }),
        args.record.as_ref(),
        &args.labels,
    )
}

pub async fn stripe(args: StripeArgs) -> anyhow::Result<()> {
    let client = StripeClient::new(StripeConfig::new(
        url::Url::parse(&args.base)?,
        SecretString::from(args.key.clone()),
    ))?;
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let customer = client
        .create_customer(
            &NewCustomer {
                email: "floor@example.com".into(),
                name: None,
                metadata: BTreeMap::from([("kessai_user_id".into(), "0".into())]),
            },
            &IdempotencyKey::new(format!("bench-floor-{tag}-customer")),
        )
        .await
        .context("creating the floor's Customer at the stand-in")?;
    let amount =
        Money::new(args.amount, Currency::Jpy).map_err(|e| anyhow::anyhow!("amount: {e}"))?;
    let new_intent = move |n: u64| NewPaymentIntent {
        amount,
        customer: Some(customer.id.clone()),
        metadata: BTreeMap::from([
            ("order_id".to_string(), n.to_string()),
            ("order_number".to_string(), "ACQ-000000-000".to_string()),
            ("user_id".to_string(), "0".to_string()),
        ]),
    };
    let duration = Duration::from_secs_f64(args.duration);
    let client = Arc::new(client);
    let (op, run) = match args.op {
        StripeOp::Create => {
            let run = drive(args.concurrency, duration, move |n| {
                let client = client.clone();
                let intent = new_intent(n);
                async move {
                    let key = IdempotencyKey::new(format!("bench-floor-{tag}-{n}"));
                    client.create_payment_intent(&intent, &key).await?;
                    Ok(())
                }
            })
            .await;
            ("create", run)
        }
        StripeOp::Retrieve => {
            let intent = client
                .create_payment_intent(
                    &new_intent(0),
                    &IdempotencyKey::new(format!("bench-floor-{tag}-retrieved")),
                )
                .await?;
            let id: Arc<str> = intent.id.into();
            let run = drive(args.concurrency, duration, move |_| {
                let client = client.clone();
                let id = id.clone();
                async move {
                    client.retrieve_payment_intent(&id).await?;
                    Ok(())
                }
            })
            .await;
            ("retrieve", run)
        }
    };
    finish(
        &run,
        json!({"type": "floor", "floor": "stripe-client", "op": op, "conns": args.concurrency}),
        args.record.as_ref(),
        &args.labels,
    )
}

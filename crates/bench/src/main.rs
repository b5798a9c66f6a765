//! `kessai-bench`: the pieces of the benchmark harness that want a real
//! program (see `bench/README.md`; `bench/run.sh` drives them). It prepares
//! users and orders through kessai's public API, signs webhook events,
//! measures the floors (the database alone, the Stripe stand-in through
//! kessai's own Stripe client), runs wrk while sampling the server's RSS,
//! checks that every webhook event was applied once, and prints the report.
//!
//! Nothing here runs in the test command.

mod check;
mod drive;
mod floors;
mod prepare;
mod readiness;
mod report;
mod settle;
mod webhooks;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kessai-bench", about = "kessai's benchmark harness helpers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register users and place orders through the public API.
    Prepare(prepare::PrepareArgs),
    /// First call of POST /api/payments/intent for every order of a file
    /// (creates the PaymentIntents, so later calls take the reuse path).
    Warm(prepare::WarmArgs),
    /// Sign one `payment_intent.succeeded` event per order of a pool file.
    SignWebhooks(webhooks::SignArgs),
    /// Single-row insert transactions per second, with kessai's settings.
    FloorDb(floors::DbArgs),
    /// Bare requests to the Stripe stand-in through kessai's Stripe client.
    FloorStripe(floors::StripeArgs),
    /// Run wrk with bench/wrk/scenario.lua, sampling a process's RSS.
    Wrk(wrk::WrkArgs),
    /// Spawn→first 200 from /readyz, several fresh starts.
    Readiness(readiness::ReadinessArgs),
    /// After a webhook scenario: every event applied exactly once?
    CheckWebhooks(check::CheckArgs),
    /// Give a throwaway PostgreSQL its default durability back.
    PgDurable(check::PgDurableArgs),
    /// Between scenarios: vacuum and checkpoint, wait for autovacuum.
    Settle(settle::SettleArgs),
    /// Read the records of a run, print the table, write the results file.
    Report(report::ReportArgs),
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kessai-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Prepare(args) => prepare::prepare(args).await,
            Command::Warm(args) => prepare::warm(args).await,
            Command::SignWebhooks(args) => webhooks::sign(args),
            Command::FloorDb(args) => floors::db(args).await,
            Command::FloorStripe(args) => floors::stripe(args).await,
            Command::Wrk(args) => wrk::run(args).await,
            Command::Readiness(args) => readiness::run(args).await,
            Command::CheckWebhooks(args) => check::webhooks(args).await,
            Command::PgDurable(args) => check::pg_durable(args).await,
            Command::Settle(args) => settle::run(args).await,
            Command::Report(args) => report::run(args),
            Command::FreePort => free_port(),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kessai-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn free_port() -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    Ok(())
}

/// Appends one JSON record (a line) to the run's records file.
pub(crate) fn append_record(path: &PathBuf, record: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{record}")?;
    Ok(())
}

/// `key=value` labels given on the command line, added to a record.
pub(crate) fn labels(
    pairs: &[String],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("label `{pair}` is not key=value"))?;
        let value = value
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(value));
        map.insert(key.to_string(), value);
    }
    Ok(map)
}

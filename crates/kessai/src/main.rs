//! `kessai [serve]` runs the server; `kessai migrate` only migrates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use infrastructure::config::Settings;
use kessai::startup::{open_database, shutdown_signal, Application, Services, StripeAccess};
use kessai::telemetry;

#[derive(Parser)]
#[command(
    name = "kessai",
    version,
    about = "Payments backend for an online shop (Stripe)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default). Configured by environment variables.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Walk a checkout against a running kessai (register → order → intent
    /// → pay with a test card → webhook → paid), printing each step.
    Demo {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        base_url: String,
        /// A test payment method: pm_card_visa (succeeds),
        /// pm_card_chargeDeclined, pm_card_visa_chargeDeclinedInsufficientFunds.
        #[arg(long, default_value = "pm_card_visa")]
        card: String,
    },
    /// Run the Stripe emulator alone (for tests and other projects).
    StripeEmulator {
        #[arg(long, default_value = "127.0.0.1:12111")]
        bind: std::net::SocketAddr,
        /// The secret key clients must present.
        #[arg(long, default_value = "sk_test_emulator")]
        secret_key: String,
        /// Where to POST events (none: events are only stored).
        #[arg(long)]
        webhook_url: Option<String>,
        /// The secret events are signed with.
        #[arg(long, default_value = "whsec_emulator")]
        webhook_secret: String,
    },
    /// Run one reconciliation pass (ask Stripe about orders awaiting
    /// payment without news) and print what it fixed.
    Reconcile,
    /// Inspect or reprocess received Stripe events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Process a stored event again with today's rules (harmless for one
    /// already applied: nothing moves backwards or twice).
    Replay {
        /// The event id, `evt_…`.
        event_id: String,
    },
}

/// Exit status for a configuration error (as sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::StripeEmulator {
        bind,
        secret_key,
        webhook_url,
        webhook_secret,
    }) = &cli.command
    {
        let _log = telemetry::init(infrastructure::config::LogFormat::Text);
        return match stripe_emulator(*bind, secret_key, webhook_url.clone(), webhook_secret).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("kessai stripe-emulator: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The demo is a client of a running server: it needs no configuration.
    if let Some(Command::Demo { base_url, card }) = &cli.command {
        return match kessai::demo::run(base_url, card).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("kessai demo: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("kessai: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _log = telemetry::init(settings.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
        Command::Events {
            command: EventsCommand::Replay { event_id },
        } => replay(settings, &event_id).await,
        Command::Reconcile => reconcile(settings).await,
        Command::Demo { .. } | Command::StripeEmulator { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "kessai failed");
            eprintln!("kessai: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until(shutdown_signal()).await
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let database = open_database(&settings).await?;
    tracing::info!(database = database.backend(), "migrations applied");
    database.close().await;
    Ok(())
}

async fn replay(settings: Settings, event_id: &str) -> anyhow::Result<()> {
    let database = open_database(&settings).await?;
    let services = Services::build(
        &settings,
        &database,
        &StripeAccess::from_settings(&settings),
    )?;
    let outcome = services.webhooks.replay(event_id).await;
    database.close().await;
    let outcome = outcome?;
    println!("{event_id}: {}", outcome.as_str());
    Ok(())
}

async fn stripe_emulator(
    bind: std::net::SocketAddr,
    secret_key: &str,
    webhook_url: Option<String>,
    webhook_secret: &str,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let emulator = stripe_emulator::Emulator::new(stripe_emulator::EmulatorConfig {
        secret_key: secret_key.to_string(),
        webhook_secret: webhook_secret.to_string(),
        webhook_url,
        faults: stripe_emulator::Faults::default(),
    });
    tracing::info!(addr = %listener.local_addr()?, "Stripe emulator listening (no real payments)");
    emulator.serve(listener, shutdown_signal()).await?;
    Ok(())
}

async fn reconcile(settings: Settings) -> anyhow::Result<()> {
    let database = open_database(&settings).await?;
    let services = Services::build(
        &settings,
        &database,
        &StripeAccess::from_settings(&settings),
    )?;
    let report = services.reconciler.run_once().await;
    database.close().await;
    let report = report?;
    println!(
        "checked {} orders: {} paid, {} still open, {} left for a human, {} failed; {} customers created",
        report.checked,
        report.paid,
        report.still_open,
        report.given_up,
        report.failed,
        report.customers_created
    );
    Ok(())
}

//! `kessai [serve]` runs the server; `kessai migrate` only migrates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use infrastructure::config::Settings;
use kessai::startup::{open_database, shutdown_signal, Application, Services};
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
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("kessai: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(settings.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
        Command::Events {
            command: EventsCommand::Replay { event_id },
        } => replay(settings, &event_id).await,
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
    let services = Services::build(&settings, &database)?;
    let outcome = services.webhooks.replay(event_id).await;
    database.close().await;
    let outcome = outcome?;
    println!("{event_id}: {}", outcome.as_str());
    Ok(())
}

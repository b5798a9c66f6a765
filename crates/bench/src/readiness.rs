//! Time from spawning kessai to its first 200 from `/readyz`, on a fresh
//! SQLite file each time (so migrations and the catalog load are counted),
//! polled every 5 ms over a new connection.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::drive::round;

#[derive(Args)]
pub struct ReadinessArgs {
    /// The kessai binary (release build).
    #[arg(long)]
    bin: PathBuf,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Where the SQLite files and logs go.
    #[arg(long)]
    dir: PathBuf,
    /// `KEY=VALUE` environment for kessai (DATABASE_URL and BIND_ADDR are
    /// set here).
    #[arg(long = "env")]
    env: Vec<String>,
    #[arg(long)]
    record: Option<PathBuf>,
    #[arg(long = "label")]
    labels: Vec<String>,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn ready(addr: &str) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}

async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

pub async fn run(args: ReadinessArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let mut times = Vec::new();
    for run in 0..args.runs.max(1) {
        let db = args.dir.join(format!("ready-{run}.db"));
        let log = std::fs::File::create(args.dir.join(format!("ready-{run}.log")))?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut command = tokio::process::Command::new(&args.bin);
        for pair in &args.env {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--env `{pair}` is not KEY=VALUE"))?;
            command.env(key, value);
        }
        command
            .env("DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("BIND_ADDR", &addr)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", args.bin.display()))?;
        let mut elapsed = None;
        while started.elapsed() < Duration::from_secs(30) {
            if ready(&addr).await {
                elapsed = Some(started.elapsed());
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "kessai exited during start ({status}); see {}",
                    args.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop(&mut child).await;
        let elapsed = elapsed.context("kessai was not ready within 30 s")?;
        times.push(elapsed.as_secs_f64() * 1000.0);
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let max = sorted.last().copied().unwrap_or(0.0);
    let mut record = json!({
        "type": "readiness",
        "runs_ms": times.iter().map(|t| round(*t, 1)).collect::<Vec<_>>(),
        "median_ms": round(median, 1),
        "max_ms": round(max, 1),
    });
    if let Some(object) = record.as_object_mut() {
        object.extend(crate::labels(&args.labels)?);
    }
    if let Some(path) = &args.record {
        crate::append_record(path, &record)?;
    }
    println!("{record}");
    Ok(())
}

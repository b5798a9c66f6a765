//! One scenario: wrk with bench/wrk/scenario.lua for a fixed time, while
//! the server's resident set size is sampled from /proc every 20 ms.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::drive::round;

#[derive(Args)]
pub struct WrkArgs {
    /// Base URL (scheme, host, port).
    #[arg(long)]
    url: String,
    /// intent | webhook | orders | standin (see the Lua script).
    #[arg(long)]
    kind: String,
    /// The pre-generated requests (not for `standin`).
    #[arg(long)]
    requests: Option<PathBuf>,
    #[arg(long)]
    conns: usize,
    /// wrk threads. One by default: on a small machine the load generator
    /// should take as little CPU from the server as it can, and one thread
    /// starts measuring only after its requests are loaded.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds.
    #[arg(long)]
    duration: u64,
    /// Seconds before wrk counts a request as timed out.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// The Lua script.
    #[arg(long)]
    script: PathBuf,
    /// The server process whose RSS is sampled.
    #[arg(long)]
    pid: Option<u32>,
    #[arg(long, default_value = "sk_test_bench")]
    stripe_key: String,
    #[arg(long, default_value_t = 1000)]
    amount: i64,
    /// Send each pre-generated request at most once (see the Lua script).
    #[arg(long)]
    once: bool,
    /// Record the run as this floor (e.g. `standin-wrk`), not a scenario.
    #[arg(long)]
    floor: Option<String>,
    #[arg(long)]
    record: Option<PathBuf>,
    #[arg(long = "label")]
    labels: Vec<String>,
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time a process has used (user + system), in clock ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field of stat(5), utime the 14th, stime the 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) clock ticks of the whole machine, all cores.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

/// USER_HZ: the unit of /proc's tick counts (100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

pub async fn run(args: WrkArgs) -> anyhow::Result<()> {
    let threads = args.threads.clamp(1, args.conns.max(1));
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    // With --once, connections whose thread ran out of requests wait
    // until the end: they must not count as timeouts.
    let timeout = if args.once {
        args.timeout.max(args.duration + 10)
    } else {
        args.timeout
    };
    let mut command = tokio::process::Command::new("wrk");
    command
        .arg(format!("-t{threads}"))
        .arg(format!("-c{}", args.conns))
        .arg(format!("-d{}s", args.duration))
        .arg("--timeout")
        .arg(format!("{timeout}s"))
        .arg("-s")
        .arg(&args.script)
        .arg(&args.url)
        .arg("--")
        .arg(threads.to_string())
        .env("BENCH_KIND", &args.kind)
        .env("BENCH_STRIPE_KEY", &args.stripe_key)
        .env("BENCH_AMOUNT", args.amount.to_string())
        .env("BENCH_TAG", tag.to_string())
        .env("BENCH_ONCE", if args.once { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = &args.requests {
        command.env("BENCH_REQUESTS", path);
    }
    let cpu_before = args.pid.and_then(process_ticks);
    let machine_before = machine_ticks();
    let mut child = command
        .spawn()
        .context("cannot run wrk (is it installed?)")?;
    let mut stdout = child.stdout.take().context("wrk stdout")?;
    let mut stderr = child.stderr.take().context("wrk stderr")?;
    let read_out = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text).await;
        text
    });
    let read_err = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let mut peak_rss = 0u64;
    let mut samples = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = tick.tick() => {
                if let Some((rss, _)) = args.pid.and_then(memory) {
                    peak_rss = peak_rss.max(rss);
                    samples += 1;
                }
            }
        }
    };
    let cpu_after = args.pid.and_then(process_ticks);
    let machine_after = machine_ticks();
    let out = read_out.await?;
    let err = read_err.await?;
    eprint!("{out}");
    eprint!("{err}");
    if !status.success() {
        bail!("wrk failed ({status}): {err}");
    }
    let hwm = args.pid.and_then(memory).map(|(rss, hwm)| {
        peak_rss = peak_rss.max(rss);
        hwm
    });
    if args.pid.is_some() && samples == 0 {
        bail!("the server process is gone (no RSS sample)");
    }
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_RESULT "))
        .context("wrk printed no BENCH_RESULT line (script error?)")?;
    let raw: Value = serde_json::from_str(line).context("BENCH_RESULT is not JSON")?;
    let num = |key: &str| raw[key].as_f64().unwrap_or(0.0);
    let count = |key: &str| raw[key].as_u64().unwrap_or(0);
    let seconds = num("duration_us") / 1e6;
    let requests = count("requests");
    let non2xx = count("status_errors");
    let socket_errors =
        count("connect_errors") + count("read_errors") + count("write_errors") + count("timeouts");
    // Percent of one core used by the server, and of all cores by everything.
    let server_cpu = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some(round(
            (b.saturating_sub(a)) as f64 / TICKS_PER_SECOND / seconds.max(1e-9) * 100.0,
            0,
        )),
        _ => None,
    };
    let machine_cpu = match (machine_before, machine_after) {
        (Some((busy_a, total_a)), Some((busy_b, total_b))) if total_b > total_a => Some(round(
            (busy_b - busy_a) as f64 / (total_b - total_a) as f64 * 100.0,
            0,
        )),
        _ => None,
    };
    let mut record = json!({
        "type": "scenario",
        "server_cpu_pct": server_cpu,
        "machine_cpu_pct": machine_cpu,
        "kind": args.kind,
        "conns": args.conns,
        "threads": threads,
        "duration_s": round(seconds, 3),
        "requests": requests,
        "rps": round(requests as f64 / seconds.max(1e-9), 1),
        "p50_ms": round(num("p50_us") / 1000.0, 3),
        "p90_ms": round(num("p90_us") / 1000.0, 3),
        "p99_ms": round(num("p99_us") / 1000.0, 3),
        "max_ms": round(num("max_us") / 1000.0, 3),
        "non2xx": non2xx,
        "socket_errors": socket_errors,
        "timeouts": count("timeouts"),
        "ok": requests.saturating_sub(non2xx),
        "sent": count("sent"),
        "wraps": count("wraps"),
        "exhausted": count("exhausted"),
        "peak_rss_kib": args.pid.map(|_| peak_rss),
        "hwm_kib": hwm,
        "rss_samples": samples,
    });
    if let Some(object) = record.as_object_mut() {
        if let Some(floor) = &args.floor {
            object.insert("type".into(), json!("floor"));
            object.insert("floor".into(), json!(floor));
        }
        object.extend(crate::labels(&args.labels)?);
    }
    if let Some(path) = &args.record {
        crate::append_record(path, &record)?;
    }
    println!("{record}");
    Ok(())
}

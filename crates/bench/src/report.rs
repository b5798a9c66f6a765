//! The table: every scenario with its floor, the ratio to it, the target
//! and whether it was met; the floors; the readiness time; the machine.
//!
//! Exits non-zero only for failures of correctness (a non-2xx or socket
//! error in a scenario, a webhook event not applied exactly once, a
//! missing result); performance targets are reported, never fatal, since
//! the figures depend on the machine and on what else runs on it.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::drive::round;

#[derive(Args)]
pub struct ReportArgs {
    /// The run's records (JSON lines).
    #[arg(long)]
    records: PathBuf,
    /// The results file to write (JSON).
    #[arg(long)]
    out: PathBuf,
    /// `key=value` facts about the run (versions, duration, mode).
    #[arg(long = "note")]
    notes: Vec<String>,
}

const MIB: f64 = 1024.0;
const RSS_LIMIT_MIB: f64 = 64.0;
const READY_LIMIT_MS: f64 = 300.0;
const WEBHOOK_RATIO: f64 = 0.70;
const INTENT_RATIO: f64 = 0.50;
const INTENT_P99_MS: f64 = 10.0;
const ORDERS_RPS: f64 = 20_000.0;

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "memory_gib": round(mem_kib as f64 / 1024.0 / 1024.0, 1),
        "kernel": kernel,
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let w = widths.get(i).copied().unwrap_or(0);
                format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count())))
            })
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.iter().map(|h| h.to_string()).collect());
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in rows {
        line(row.clone());
    }
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.records)
        .with_context(|| format!("cannot read {}", args.records.display()))?;
    let records: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a record is not JSON")?;
    let of_type = |t: &'static str| records.iter().filter(move |r| r["type"] == t);

    // A floor measured more than once (the database on two runtime
    // shapes) counts at its best: the ratio is to what the stand-in or
    // the database can do, not to one way of driving it.
    let floor = |name: &str, op: Option<&str>, key: &str, value: &Value, conns: &Value| {
        of_type("floor")
            .filter(|r| {
                r["floor"] == name
                    && op.is_none_or(|op| r["op"] == op)
                    && &r[key] == value
                    && &r["conns"] == conns
            })
            .max_by(|a, b| f(&a["rps"]).total_cmp(&f(&b["rps"])))
            .cloned()
    };

    let mut failures: Vec<String> = Vec::new();
    let mut misses: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut computed = Vec::new();
    for r in of_type("scenario") {
        let scenario = s(&r["scenario"]);
        let backend = s(&r["backend"]);
        let standin = s(&r["standin"]);
        let conns = r["conns"].as_u64().unwrap_or(0);
        let name = format!("{backend}/{standin} {scenario} c{conns}");
        let rps = f(&r["rps"]);
        let p99 = f(&r["p99_ms"]);
        let non2xx = f(&r["non2xx"]) as u64;
        let socket = f(&r["socket_errors"]) as u64;
        let rss_mib = f(&r["peak_rss_kib"]) / MIB;
        // A pool that ran out: the rate is a lower bound.
        let exhausted = f(&r["exhausted"]) > 0.0;
        let bound = if exhausted { "≥" } else { "" };

        let (floor_record, floor_label, ratio_target) = match scenario.as_str() {
            "webhook" => (
                floor("db", None, "backend", &r["backend"], &r["conns"]),
                format!("db {backend}"),
                Some(WEBHOOK_RATIO),
            ),
            "intent" => (
                floor(
                    "stripe-client",
                    Some("retrieve"),
                    "standin",
                    &r["standin"],
                    &r["conns"],
                ),
                format!("{standin} GET via client"),
                Some(INTENT_RATIO),
            ),
            "intent-create" => (
                floor(
                    "stripe-client",
                    Some("create"),
                    "standin",
                    &r["standin"],
                    &r["conns"],
                ),
                format!("{standin} POST via client"),
                Some(INTENT_RATIO),
            ),
            _ => (None, String::new(), None),
        };
        let floor_rps = floor_record.as_ref().map(|fr| f(&fr["rps"]));
        let ratio = floor_rps.filter(|v| *v > 0.0).map(|v| rps / v);

        let mut targets = Vec::new();
        let mut missed = Vec::new();
        if let Some(target) = ratio_target {
            targets.push(format!("≥{:.0}% floor", target * 100.0));
            match ratio {
                Some(ratio) if ratio >= target => {}
                Some(ratio) => missed.push(format!("ratio {bound}{:.0}%", ratio * 100.0)),
                None => missed.push("no floor".to_string()),
            }
        }
        if scenario.starts_with("intent") && conns == 16 {
            targets.push(format!("p99<{INTENT_P99_MS:.0}ms"));
            if p99 >= INTENT_P99_MS {
                missed.push(format!("p99 {p99:.1}ms"));
            }
        }
        if scenario == "orders" && backend == "sqlite" && conns == 64 {
            targets.push(format!("≥{ORDERS_RPS:.0}/s"));
            if rps < ORDERS_RPS {
                missed.push(format!("{rps:.0}/s"));
            }
        }
        targets.push("0 non-2xx".to_string());
        if non2xx > 0 || socket > 0 {
            missed.push(format!("{non2xx} non-2xx, {socket} socket errors"));
            failures.push(format!(
                "{name}: {non2xx} non-2xx responses, {socket} socket errors"
            ));
        }
        targets.push(format!("RSS<{RSS_LIMIT_MIB:.0}MiB"));
        if rss_mib >= RSS_LIMIT_MIB {
            missed.push(format!("RSS {rss_mib:.1}MiB"));
        }
        if exhausted && !missed.is_empty() {
            missed.push("pool ran out: rate is a lower bound".to_string());
        }
        if !missed.is_empty() {
            misses.push(format!("{name}: {}", missed.join(", ")));
        }
        rows.push(vec![
            backend.clone(),
            standin.clone(),
            scenario.clone(),
            conns.to_string(),
            format!("{bound}{}", fmt_rate(rps)),
            format!("{:.2}", f(&r["p50_ms"])),
            format!("{p99:.2}"),
            non2xx.to_string(),
            format!("{rss_mib:.1}"),
            format!(
                "{}/{}",
                r["server_cpu_pct"]
                    .as_f64()
                    .map_or("-".into(), |v| format!("{v:.0}")),
                r["machine_cpu_pct"]
                    .as_f64()
                    .map_or("-".into(), |v| format!("{v:.0}"))
            ),
            match floor_rps {
                Some(v) => format!("{} ({floor_label})", fmt_rate(v)),
                None => "-".into(),
            },
            ratio.map_or("-".into(), |v| format!("{bound}{:.0}%", v * 100.0)),
            targets.join(", "),
            if missed.is_empty() {
                "yes".into()
            } else {
                format!("NO: {}", missed.join(", "))
            },
        ]);
        computed.push(json!({
            "name": name,
            "floor_rps": floor_rps,
            "ratio": ratio.map(|v| round(v, 3)),
            "rate_is_lower_bound": exhausted,
            "targets": targets,
            "missed": missed,
        }));
    }
    if rows.is_empty() {
        failures.push("no scenario ran".into());
    }

    for c in of_type("check") {
        if c["pass"] != true {
            failures.push(format!(
                "check {} ({}): {}",
                s(&c["check"]),
                s(&c["tag"]),
                c["problems"]
            ));
        }
    }

    let machine = machine();
    let mut notes = serde_json::Map::new();
    notes.extend(crate::labels(&args.notes)?);
    println!();
    println!(
        "machine: {} × {} ({} GiB RAM, Linux {})",
        machine["nproc"],
        s(&machine["cpu"]),
        machine["memory_gib"],
        s(&machine["kernel"])
    );
    for (k, v) in &notes {
        println!("  {k}: {}", s(v));
    }
    println!();
    print_table(
        &[
            "backend",
            "stand-in",
            "scenario",
            "conns",
            "req/s",
            "p50 ms",
            "p99 ms",
            "non-2xx",
            "peak RSS MiB",
            "CPU % kessai/box",
            "floor req/s",
            "ratio",
            "targets",
            "met?",
        ],
        &rows,
    );

    println!();
    println!("floors (same machine, same run):");
    let floor_rows: Vec<Vec<String>> = of_type("floor")
        .map(|r| {
            let what = match s(&r["floor"]).as_str() {
                "db" => format!(
                    "{} single-row insert txn ({} B row){}",
                    s(&r["backend"]),
                    s(&r["payload_bytes"]),
                    match r["runtime"].as_str() {
                        Some(runtime) => format!(", {runtime}"),
                        None => String::new(),
                    }
                ),
                "stripe-client" => format!(
                    "{} {} via kessai's Stripe client",
                    s(&r["standin"]),
                    if r["op"] == "create" {
                        "POST /v1/payment_intents"
                    } else {
                        "GET /v1/payment_intents/{id}"
                    }
                ),
                "standin-wrk" => {
                    format!("{} alone, wrk POST /v1/payment_intents", s(&r["standin"]))
                }
                other => other.to_string(),
            };
            vec![
                what,
                s(&r["conns"]),
                fmt_rate(f(&r["rps"])),
                format!("{:.2}", f(&r["p50_ms"])),
                format!("{:.2}", f(&r["p99_ms"])),
                format!(
                    "{}",
                    f(&r["errors"]) + f(&r["non2xx"]) + f(&r["socket_errors"])
                ),
            ]
        })
        .collect();
    print_table(
        &["floor", "conns", "req/s", "p50 ms", "p99 ms", "errors"],
        &floor_rows,
    );

    println!();
    let mut ready_ok = None;
    for r in of_type("readiness") {
        let median = f(&r["median_ms"]);
        let met = median < READY_LIMIT_MS;
        ready_ok = Some(ready_ok.unwrap_or(true) && met);
        println!(
            "ready to serve ({}): median {median:.1} ms, max {:.1} ms over {} starts {} — target < {READY_LIMIT_MS:.0} ms: {}",
            s(&r["backend"]),
            f(&r["max_ms"]),
            r["runs_ms"].as_array().map_or(0, Vec::len),
            r["runs_ms"],
            if met { "met" } else { "NOT met" }
        );
        if !met {
            misses.push(format!("readiness median {median:.1} ms"));
        }
    }
    if ready_ok.is_none() {
        println!("ready to serve: not measured");
    }
    for r in of_type("prepare") {
        let register_mib = f(&r["register_peak_rss_kib"]) / MIB;
        let peak_mib = f(&r["peak_rss_kib"]) / MIB;
        println!(
            "prepared ({}/{}): {} users at {}/s, {} orders at {}/s through the API; \
             kessai's peak RSS {register_mib:.1} MiB after the registrations, {peak_mib:.1} MiB in all{}",
            s(&r["backend"]),
            s(&r["standin"]),
            s(&r["users"]),
            s(&r["register_rps"]),
            s(&r["orders"]),
            s(&r["order_rps"]),
            if peak_mib >= RSS_LIMIT_MIB {
                format!(" — over {RSS_LIMIT_MIB:.0} MiB")
            } else {
                String::new()
            }
        );
        if peak_mib >= RSS_LIMIT_MIB {
            misses.push(format!(
                "{}/{} preparation (registrations, orders): RSS {peak_mib:.1}MiB",
                s(&r["backend"]),
                s(&r["standin"])
            ));
        }
    }
    for r in of_type("warm") {
        println!(
            "first intent call per order ({}/{}, 16 concurrent, kessai-bench client): {} at {}/s",
            s(&r["backend"]),
            s(&r["standin"]),
            s(&r["requests"]),
            s(&r["rps"])
        );
    }
    for r in of_type("settle") {
        let found = if r["backend"] == "postgres" {
            format!(
                "{} dead rows, {} autovacuum worker(s) running",
                s(&r["dead_rows_before"]),
                s(&r["autovacuum_workers_before"])
            )
        } else {
            format!("{} WAL frames", s(&r["wal_frames"]))
        };
        println!(
            "settled before {}/{} {} c{}: {found}; took {} ms",
            s(&r["backend"]),
            s(&r["standin"]),
            s(&r["scenario"]),
            s(&r["conns"]),
            s(&r["took_ms"])
        );
    }
    for c in of_type("check") {
        println!(
            "check {} {} ({}): {} — {} answered 2xx, {} sent, {} applied, {} orders paid{}",
            s(&c["check"]),
            s(&c["tag"]),
            s(&c["backend"]),
            if c["pass"] == true { "pass" } else { "FAIL" },
            s(&c["ok_responses"]),
            s(&c["sent"]),
            s(&c["applied"]),
            s(&c["paid_orders"]),
            if c["pass"] == true {
                String::new()
            } else {
                format!(": {}", c["problems"])
            }
        );
    }

    let results = json!({
        "machine": machine,
        "notes": notes,
        "scenarios": computed,
        "targets_missed": misses,
        "failures": failures,
        "records": records,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!();
    println!("results: {}", args.out.display());
    if misses.is_empty() {
        println!("targets: all met");
    } else {
        println!("targets missed ({}):", misses.len());
        for m in &misses {
            println!("  - {m}");
        }
    }
    if !failures.is_empty() {
        println!("FAILURES ({}):", failures.len());
        for failure in &failures {
            println!("  - {failure}");
        }
        bail!("{} failure(s) of correctness", failures.len());
    }
    Ok(())
}

//! Users and orders through kessai's public API, as a shop's frontend
//! creates them: `POST /api/auth/register` (which creates the user's Stripe
//! Customer at the stand-in) and `POST /api/orders`.
//!
//! Every order is the same (one unit of the cheapest product), so every
//! order has the same total and a stateless Stripe stand-in can answer
//! with a fixed amount.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::drive::round;

#[derive(Args)]
pub struct PrepareArgs {
    /// kessai's base URL.
    #[arg(long)]
    base: String,
    /// Users with one order each (the intent and order-read scenarios).
    #[arg(long, default_value_t = 300)]
    users: usize,
    /// Users that own the pools' orders.
    #[arg(long, default_value_t = 32)]
    bulk_users: usize,
    /// `name=count`: a pool of `count` fresh orders written to
    /// `pool-<name>.tsv` (one per webhook or intent-creation scenario).
    #[arg(long = "pool")]
    pools: Vec<String>,
    /// Where users.tsv and the pool files go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Concurrent requests while placing orders.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Concurrent registrations (argon2 keeps each on a core anyway).
    #[arg(long, default_value_t = 8)]
    register_concurrency: usize,
    /// The server process whose RSS is sampled while preparing.
    #[arg(long)]
    pid: Option<u32>,
    /// Append a `prepare` record to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// `key=value` labels for the record.
    #[arg(long = "label")]
    labels: Vec<String>,
}

#[derive(Args)]
pub struct WarmArgs {
    #[arg(long)]
    base: String,
    /// `token<TAB>order_id` lines.
    #[arg(long)]
    file: PathBuf,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Also write `order_id<TAB>payment_intent_id` lines, one per order, in
    /// the file's order (for `sign-webhooks --intents`).
    #[arg(long)]
    intents_out: Option<PathBuf>,
    #[arg(long)]
    record: Option<PathBuf>,
    #[arg(long = "label")]
    labels: Vec<String>,
}

pub fn http_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1))
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Runs `f(i)` for `i in 0..n` with at most `concurrency` at a time and
/// returns the results in order; the first error stops the run.
pub async fn parallel<T, F, Fut>(n: usize, concurrency: usize, f: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let f = f.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(done);
                }
                done.push((i, f(i).await?));
            }
        }));
    }
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for worker in workers {
        for (i, value) in worker.await?? {
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some(value);
            }
        }
    }
    slots
        .into_iter()
        .map(|slot| slot.ok_or_else(|| anyhow::anyhow!("a task produced nothing")))
        .collect()
}

async fn expect_json(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{what}: not JSON: {body}"))
}

async fn register(http: &reqwest::Client, base: &str, email: String) -> anyhow::Result<String> {
    let response = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({
            "email": email,
            "password": "bench password 123",
            "name": "ベンチ 太郎",
        }))
        .send()
        .await?;
    let body = expect_json(response, "register").await?;
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("register: no access_token in {body}"))
}

struct Placed {
    id: i64,
    total: i64,
    currency: String,
}

async fn place_order(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    product_id: i64,
) -> anyhow::Result<Placed> {
    let response = http
        .post(format!("{base}/api/orders"))
        .bearer_auth(token)
        .json(&json!({"items": [{"product_id": product_id, "quantity": 1}]}))
        .send()
        .await?;
    let body = expect_json(response, "place order").await?;
    Ok(Placed {
        id: body["id"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("order without id: {body}"))?,
        total: body["total"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("order without total: {body}"))?,
        currency: body["currency"].as_str().unwrap_or_default().to_string(),
    })
}

fn write_lines(path: &PathBuf, lines: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// Samples a process's RSS every 20 ms until dropped; `peak()` in KiB.
struct RssSampler {
    peak: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn({
            let peak = peak.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                loop {
                    tick.tick().await;
                    if let Some((rss, _)) = crate::wrk::memory(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                }
            }
        });
        Self { peak, task }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn prepare(args: PrepareArgs) -> anyhow::Result<()> {
    let base = args.base.trim_end_matches('/').to_string();
    let sampler = args.pid.map(RssSampler::start);
    let http = http_client(args.concurrency)?;
    std::fs::create_dir_all(&args.out_dir)?;

    let products = expect_json(
        http.get(format!("{base}/api/products")).send().await?,
        "products",
    )
    .await?;
    let product_id = products["products"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["price"].as_i64()?, p["id"].as_i64()?)))
        .min()
        .map(|(_, id)| id)
        .ok_or_else(|| anyhow::anyhow!("the catalog is empty: {products}"))?;

    let pools = args
        .pools
        .iter()
        .map(|spec| {
            let (name, count) = spec
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--pool `{spec}` is not name=count"))?;
            Ok((name.to_string(), count.parse::<usize>()?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pool_total: usize = pools.iter().map(|(_, n)| n).sum();
    let bulk_users = if pool_total == 0 {
        0
    } else {
        args.bulk_users.max(1)
    };

    // Registrations: the users with one order, then the pools' owners.
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let started = Instant::now();
    let n_users = args.users + bulk_users;
    let tokens = {
        let http = http.clone();
        let base = base.clone();
        parallel(n_users, args.register_concurrency, move |i| {
            let http = http.clone();
            let base = base.clone();
            async move { register(&http, &base, format!("bench-{tag}-{i}@example.com")).await }
        })
        .await?
    };
    let register_seconds = started.elapsed().as_secs_f64();
    let register_rss = sampler.as_ref().map(RssSampler::peak);

    // One order per user, then the pools, round-robin over the owners.
    let owners: Vec<String> = tokens.get(args.users..).unwrap_or_default().to_vec();
    let mut order_tokens: Vec<String> = tokens.get(..args.users).unwrap_or_default().to_vec();
    for i in 0..pool_total {
        if let Some(owner) = owners.get(i % owners.len().max(1)) {
            order_tokens.push(owner.clone());
        }
    }
    let started = Instant::now();
    let order_tokens = Arc::new(order_tokens);
    let placed = {
        let http = http.clone();
        let base = base.clone();
        let order_tokens = order_tokens.clone();
        parallel(order_tokens.len(), args.concurrency, move |i| {
            let http = http.clone();
            let base = base.clone();
            let order_tokens = order_tokens.clone();
            async move {
                let token = order_tokens
                    .get(i)
                    .ok_or_else(|| anyhow::anyhow!("no token {i}"))?;
                place_order(&http, &base, token, product_id).await
            }
        })
        .await?
    };
    let order_seconds = started.elapsed().as_secs_f64();

    let first = placed
        .first()
        .ok_or_else(|| anyhow::anyhow!("no order was placed"))?;
    let (amount, currency) = (first.total, first.currency.clone());
    if let Some(odd) = placed
        .iter()
        .find(|p| p.total != amount || p.currency != currency)
    {
        bail!(
            "orders differ in total: {} {} and {} {}",
            amount,
            currency,
            odd.total,
            odd.currency
        );
    }
    let line = |i: usize| -> String {
        format!(
            "{}\t{}",
            order_tokens.get(i).map(String::as_str).unwrap_or_default(),
            placed.get(i).map_or(0, |p| p.id)
        )
    };
    write_lines(&args.out_dir.join("users.tsv"), (0..args.users).map(line))?;
    let mut offset = args.users;
    for (name, count) in &pools {
        write_lines(
            &args.out_dir.join(format!("pool-{name}.tsv")),
            (offset..offset + count).map(line),
        )?;
        offset += count;
    }

    let summary = json!({
        "type": "prepare",
        "product_id": product_id,
        "amount": amount,
        "currency": currency,
        "users": n_users,
        "orders": placed.len(),
        "register_seconds": round(register_seconds, 3),
        "register_rps": round(n_users as f64 / register_seconds.max(1e-9), 1),
        "order_seconds": round(order_seconds, 3),
        "order_rps": round(placed.len() as f64 / order_seconds.max(1e-9), 1),
        "register_peak_rss_kib": register_rss,
        "peak_rss_kib": sampler.as_ref().map(RssSampler::peak),
        "hwm_kib": args.pid.and_then(crate::wrk::memory).map(|(_, hwm)| hwm),
    });
    if let Some(path) = &args.record {
        let mut record = summary.clone();
        if let Some(object) = record.as_object_mut() {
            object.extend(crate::labels(&args.labels)?);
        }
        crate::append_record(path, &record)?;
    }
    println!("{summary}");
    Ok(())
}

/// Reads `token<TAB>order_id` lines.
pub fn read_pairs(path: &PathBuf) -> anyhow::Result<Vec<(String, i64)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (token, id) = line
                .split_once('\t')
                .ok_or_else(|| anyhow::anyhow!("not token<TAB>order_id: {line}"))?;
            Ok((token.to_string(), id.parse()?))
        })
        .collect()
}

pub async fn warm(args: WarmArgs) -> anyhow::Result<()> {
    let base = args.base.trim_end_matches('/').to_string();
    let pairs = Arc::new(read_pairs(&args.file)?);
    let http = http_client(args.concurrency)?;
    let started = Instant::now();
    let n = pairs.len();
    let intents = parallel(n, args.concurrency, {
        let pairs = pairs.clone();
        move |i| {
            let http = http.clone();
            let base = base.clone();
            let pairs = pairs.clone();
            async move {
                let (token, order_id) =
                    pairs.get(i).ok_or_else(|| anyhow::anyhow!("no pair {i}"))?;
                let response = http
                    .post(format!("{base}/api/payments/intent"))
                    .bearer_auth(token)
                    .json(&json!({ "order_id": order_id }))
                    .send()
                    .await?;
                let body = expect_json(response, "payment intent").await?;
                body["payment_intent_id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow::anyhow!("no payment_intent_id in {body}"))
            }
        }
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &args.intents_out {
        write_lines(
            path,
            pairs
                .iter()
                .zip(&intents)
                .map(|((_, order_id), intent)| format!("{order_id}\t{intent}")),
        )?;
    }
    let summary = json!({
        "type": "warm",
        "requests": n,
        "seconds": round(seconds, 3),
        "rps": round(n as f64 / seconds.max(1e-9), 1),
    });
    if let Some(path) = &args.record {
        let mut record = summary.clone();
        if let Some(object) = record.as_object_mut() {
            object.extend(crate::labels(&args.labels)?);
        }
        crate::append_record(path, &record)?;
    }
    println!("{summary}");
    Ok(())
}

//! Crash safety: the real `kessai` executable, killed with SIGKILL again
//! and again while the Stripe emulator streams webhooks at it (retrying
//! what fails), and restarted each time on the same port and database. In
//! the end every event is recorded exactly once, nothing answered a 5xx,
//! and every order's status, paid time and refunded amount are right.
//!
//! The random choices (which step comes when, how long before each kill)
//! come from a seed printed with the summary; `CRASH_TEST_SEED=<n>` makes
//! the same choices again (the timing of deliveries still varies).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use stripe_emulator::{Emulator, EmulatorConfig, Faults, Timings};
use test_support::{Backend, TestDatabase};

const KESSAI: &str = env!("CARGO_BIN_EXE_kessai");
const ORDERS: usize = 24;
/// Kill/restart cycles during the stream.
const KILLS: usize = 8;
const STRIPE_KEY: &str = "sk_test_kessai_crash";
const WEBHOOK_SECRET: &str = "whsec_kessai_crash";

/// What the customer (at the emulator, as Stripe.js) and the shop (refunds
/// at Stripe's dashboard/API) do to one order, in order.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Confirm with a card that is declined (`pm_card_chargeDeclined`).
    Decline,
    /// Confirm with `pm_card_visa`.
    Pay,
    /// Refund this much, or (`None`) everything not yet refunded.
    Refund(Option<i64>),
}

/// The steps of the `i`-th order: every shape of the stream kessai must
/// handle (paid, declined then paid, partial refunds adding up, a full
/// refund, a partial refund then the rest, only declined, never paid).
fn steps(i: usize) -> Vec<Step> {
    use Step::*;
    match i % 8 {
        0 => vec![Pay],
        1 => vec![Decline, Pay],
        2 => vec![Pay, Refund(Some(1000))],
        3 => vec![Pay, Refund(Some(2000)), Refund(Some(3000))],
        4 => vec![Pay, Refund(None)],
        5 => vec![Decline, Pay, Refund(Some(4000)), Refund(None)],
        6 => vec![Decline],
        _ => vec![],
    }
}

struct Order {
    id: i64,
    token: String,
    total: i64,
    intent: String,
    steps: Vec<Step>,
    /// Just before the successful confirmation was sent.
    paid_after: Option<DateTime<Utc>>,
}

impl Order {
    fn expected(&self) -> Expected {
        let paid = self.steps.iter().any(|s| matches!(s, Step::Pay));
        let mut refunded = 0;
        for step in &self.steps {
            match step {
                Step::Refund(Some(amount)) => refunded += amount,
                Step::Refund(None) => refunded = self.total,
                _ => {}
            }
        }
        let status = match (paid, refunded) {
            (false, _) => "awaiting_payment",
            (true, r) if r == self.total => "refunded",
            (true, _) => "paid",
        };
        Expected {
            status,
            paid,
            refunded,
            payment_error: !paid && self.steps.iter().any(|s| matches!(s, Step::Decline)),
        }
    }
}

#[derive(Debug)]
struct Expected {
    status: &'static str,
    paid: bool,
    refunded: i64,
    payment_error: bool,
}

/// The in-process emulator, served on its own port; stopped when dropped.
struct StripeServer {
    emulator: Emulator,
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl StripeServer {
    async fn start(webhook_url: String) -> Self {
        let emulator = Emulator::with_timings(
            EmulatorConfig {
                secret_key: STRIPE_KEY.into(),
                webhook_secret: WEBHOOK_SECRET.into(),
                webhook_url: Some(webhook_url),
                faults: Faults::default(),
            },
            Timings {
                processing_delay: Duration::from_millis(200),
                // Short backoff so the backlog drains soon after a restart,
                // and enough attempts that nothing is given up while down.
                webhook_retry_base: Duration::from_millis(50),
                webhook_retry_max: Duration::from_secs(1),
                webhook_max_attempts: 1000,
                webhook_timeout: Duration::from_secs(5),
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(emulator.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            emulator,
            base,
            http: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    async fn post(&self, path: &str, form: &[(&str, String)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(STRIPE_KEY)
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// `GET /_emulator/webhooks`: queue length and delivery counters.
    async fn webhook_status(&self) -> Value {
        self.http
            .get(format!("{}/_emulator/webhooks", self.base))
            .bearer_auth(STRIPE_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Events whose delivery is queued, being retried or in flight.
    fn undelivered(&self) -> usize {
        self.emulator
            .events()
            .iter()
            .filter(|e| e["pending_webhooks"] != 0)
            .count()
    }
}

impl Drop for StripeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The `kessai serve` child process, on a fixed port. Dropping it kills it
/// (and, when a test is failing, prints the end of its logs).
struct Kessai {
    child: Option<Child>,
    base: String,
    env: Vec<(&'static str, String)>,
    logs: tempfile::TempDir,
    starts: usize,
    http: reqwest::Client,
}

impl Kessai {
    fn new(port: u16, env: Vec<(&'static str, String)>) -> Self {
        Self {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            env,
            logs: tempfile::tempdir().unwrap(),
            starts: 0,
            http: reqwest::Client::new(),
        }
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.logs.path().join(format!("kessai-{start}.log"))
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "kessai is already running");
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).unwrap();
        let child = Command::new(KESSAI)
            .arg("serve")
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Starts a process and waits until `/readyz` answers 200. A port still
    /// held by the killed process's last connections is tried again.
    async fn start(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.spawn();
        loop {
            assert!(Instant::now() < deadline, "kessai never became ready");
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if let Some(status) = exited {
                self.child = None;
                let log = std::fs::read_to_string(self.log_path(self.starts)).unwrap();
                assert!(
                    log.contains("cannot listen"),
                    "kessai exited at start ({status}):\n{log}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.spawn();
                continue;
            }
            let ready = self
                .http
                .get(format!("{}/readyz", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no shutdown code runs.
    /// Returns whether the process was still alive (it died of the signal,
    /// not on its own).
    fn kill(&mut self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let mut child = self.child.take().expect("kessai is running");
        let _ = child.kill();
        child.wait().unwrap().signal() == Some(9)
    }

    fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The JSON log lines of every start that `keep` accepts (a line cut
    /// short by a kill is skipped).
    fn log_lines(&self, keep: impl Fn(&Value) -> bool) -> Vec<String> {
        (1..=self.starts)
            .filter_map(|n| File::open(self.log_path(n)).ok())
            .flat_map(|f| BufReader::new(f).lines().map_while(Result::ok))
            .filter(|line| serde_json::from_str::<Value>(line).is_ok_and(|event| keep(&event)))
            .collect()
    }

    fn error_lines(&self) -> Vec<String> {
        self.log_lines(|event| event["level"] == "ERROR")
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }
}

impl Drop for Kessai {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && self.starts > 0 {
            let errors = self.error_lines();
            if !errors.is_empty() {
                eprintln!("--- kessai ERROR lines ---\n{}", errors.join("\n"));
            }
            let last = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
            let tail: Vec<&str> = last.lines().rev().take(30).collect();
            eprintln!("--- last 30 lines of kessai start #{} ---", self.starts);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A loopback port below Linux's ephemeral range (32768–60999), free now.
/// Ports for `bind(:0)` and outgoing connections come from that range, so
/// the tests running alongside cannot take this one between restarts.
fn fixed_port(rng: &mut StdRng) -> u16 {
    for _ in 0..200 {
        let port = rng.gen_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

/// Registers a customer, places a two-line order and creates its
/// PaymentIntent, through kessai's API.
async fn prepare_order(kessai: &Kessai, i: usize, products: &[(i64, i64)]) -> Order {
    let email = format!("crash-{i}-{}@example.jp", crate::helpers::uuid_like());
    let (status, user) = kessai
        .post(
            "/api/auth/register",
            None,
            &json!({"email": email, "password": crate::helpers::PASSWORD, "name": "クラッシュ 太郎"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let token = user["access_token"].as_str().unwrap().to_string();
    // The dearest product once (so every total exceeds the refunds the
    // steps make) and another one a few times: totals differ by order.
    let other = products[1 + i % (products.len() - 1)];
    let items = json!([
        {"product_id": products[0].0, "quantity": 1},
        {"product_id": other.0, "quantity": 1 + i % 3},
    ]);
    let (status, order) = kessai
        .post("/api/orders", Some(&token), &json!({ "items": items }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let (status, intent) = kessai
        .post(
            "/api/payments/intent",
            Some(&token),
            &json!({"order_id": order["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{intent}");
    let total = order["total"].as_i64().unwrap();
    assert_eq!(intent["amount"], total);
    Order {
        id: order["id"].as_i64().unwrap(),
        token,
        total,
        intent: intent["payment_intent_id"].as_str().unwrap().to_string(),
        steps: steps(i),
        paid_after: None,
    }
}

/// Performs one step at the emulator (kessai need not be up).
async fn perform(stripe: &StripeServer, order: &mut Order, step: Step) {
    let intent = order.intent.clone();
    match step {
        Step::Decline | Step::Pay => {
            let card = if matches!(step, Step::Pay) {
                order.paid_after = Some(Utc::now());
                "pm_card_visa"
            } else {
                "pm_card_chargeDeclined"
            };
            let (status, body) = stripe
                .post(
                    &format!("/v1/payment_intents/{intent}/confirm"),
                    &[("payment_method", card.to_string())],
                )
                .await;
            let expected = if matches!(step, Step::Pay) {
                StatusCode::OK
            } else {
                StatusCode::PAYMENT_REQUIRED
            };
            assert_eq!(status, expected, "{card} on {intent}: {body}");
        }
        Step::Refund(amount) => {
            let mut form = vec![("payment_intent", intent.clone())];
            if let Some(amount) = amount {
                form.push(("amount", amount.to_string()));
            }
            let (status, body) = stripe.post("/v1/refunds", &form).await;
            assert_eq!(status, StatusCode::OK, "refund on {intent}: {body}");
        }
    }
}

/// `SELECT`s the same rows on either backend.
macro_rules! fetch_all {
    ($backend:expr, $url:expr, $ty:ty, $sql:expr) => {
        match $backend {
            Backend::Sqlite => {
                let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect($url)
                    .await
                    .unwrap();
                sqlx::query_as::<_, $ty>($sql)
                    .fetch_all(&mut db)
                    .await
                    .unwrap()
            }
            Backend::Postgres => {
                let mut db = <sqlx::PgConnection as sqlx::Connection>::connect($url)
                    .await
                    .unwrap();
                sqlx::query_as::<_, $ty>($sql)
                    .fetch_all(&mut db)
                    .await
                    .unwrap()
            }
        }
    };
}

/// (id, type, outcome, order_id, received_at)
type EventRow = (String, String, String, Option<i64>, DateTime<Utc>);
/// (id, status, paid_at, refunded_amount, last_payment_error_code)
type OrderRow = (i64, String, Option<DateTime<Utc>>, i64, Option<String>);

async fn sigkill_mid_stream_applies_every_event_once(backend: Backend) {
    let started = Instant::now();
    let seed = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    let mut rng = StdRng::seed_from_u64(seed);

    let database = TestDatabase::new(backend).await;
    let port = fixed_port(&mut rng);
    let stripe = StripeServer::start(format!("http://127.0.0.1:{port}/api/payments/webhook")).await;
    let mut kessai = Kessai::new(
        port,
        vec![
            ("DATABASE_URL", database.url.clone()),
            ("DATABASE_MAX_CONNECTIONS", "5".into()),
            ("BIND_ADDR", format!("127.0.0.1:{port}")),
            ("STRIPE_SECRET_KEY", STRIPE_KEY.into()),
            ("STRIPE_API_BASE", stripe.base.clone()),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
            (
                "AUTH_SECRET",
                "crash-test-secret-crash-test-secret-0123".into(),
            ),
            ("AUTH_RATE_LIMIT_PER_ADDRESS", "100000".into()),
            ("AUTH_RATE_LIMIT_PER_EMAIL", "100000".into()),
            // Webhooks alone must settle everything: no reconciliation.
            ("RECONCILE_INTERVAL_SECONDS", "0".into()),
            ("LOG_FORMAT", "json".into()),
        ],
    );
    kessai.start().await;

    // Customers, orders and PaymentIntents, through kessai's API.
    let (status, catalog) = kessai.get("/api/products", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut products: Vec<(i64, i64)> = catalog["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_i64().unwrap(), p["price"].as_i64().unwrap()))
        .collect();
    products.sort_by_key(|(_, price)| -price);
    assert!(
        products.len() >= 2 && products[0].1 >= 5000,
        "the demo catalog: {catalog}"
    );
    let mut orders = Vec::new();
    for i in 0..ORDERS {
        orders.push(prepare_order(&kessai, i, &products).await);
    }

    // The stream: each order's steps in its own order, the orders
    // interleaved at random, split into chunks done alternately while
    // kessai runs (then it is killed a random moment later, mid-delivery)
    // and while it is down (then it is restarted).
    let rounds = orders.iter().map(|o| o.steps.len()).max().unwrap_or(0);
    let mut actions = Vec::new();
    for round in 0..rounds {
        let mut this_round: Vec<(usize, Step)> = orders
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.steps.get(round).map(|s| (i, *s)))
            .collect();
        this_round.shuffle(&mut rng);
        actions.extend(this_round);
    }
    let chunk = actions.len().div_ceil(2 * KILLS);
    let mut kills = 0;
    let mut kills_at_start = 0;
    let mut undelivered_at_kills = Vec::new();
    for actions in actions.chunks(chunk) {
        for (i, step) in actions {
            perform(&stripe, &mut orders[*i], *step).await;
        }
        if kessai.is_running() {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
            undelivered_at_kills.push(stripe.undelivered());
            assert!(kessai.kill(), "kessai died before it was killed");
            kills += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(20..150))).await;
            if rng.gen_bool(0.5) {
                // A restart that is itself killed before it is ready
                // (opening the database, migrating, loading the catalog).
                kessai.spawn();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..150))).await;
                kills_at_start += usize::from(kessai.kill());
            }
            kessai.start().await;
        }
    }
    if !kessai.is_running() {
        kessai.start().await;
    }

    // Every delivery done (none given up), then the ledger.
    let deadline = Instant::now() + Duration::from_secs(20);
    let webhooks = loop {
        let status = stripe.webhook_status().await;
        if status["pending"] == 0 && stripe.undelivered() == 0 {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never finished: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stats = &webhooks["stats"];
    let emitted = stripe.emulator.events();
    let kills_mid_stream = undelivered_at_kills.iter().filter(|n| **n > 0).count();
    // A delivery kessai committed but could not answer before it died
    // comes again and is found a duplicate.
    let redelivered_after_commit = kessai
        .log_lines(|e| e["message"] == "webhook handled" && e["outcome"] == "duplicate")
        .len();
    eprintln!(
        "crash test ({backend:?}, seed {seed}): {kills} SIGKILLs mid-stream ({kills_mid_stream} \
         with events undelivered: {undelivered_at_kills:?}) and {kills_at_start} while \
         starting, {} starts, {} events, {} delivery attempts ({} delivered, {} unreachable, \
         {} refused), {redelivered_after_commit} committed before a kill and delivered again, \
         {:.1} s",
        kessai.starts,
        emitted.len(),
        stats["delivered"].as_u64().unwrap() + stats["failed_attempts"].as_u64().unwrap(),
        stats["delivered"],
        stats["unreachable"],
        stats["refused"],
        started.elapsed().as_secs_f64(),
    );
    // The test killed kessai mid-stream: events were still to be delivered
    // at some kills, and deliveries failed while it was down.
    assert!(kills >= 4, "only {kills} kills");
    assert!(
        kills_mid_stream >= KILLS / 4,
        "too few kills with deliveries outstanding: {undelivered_at_kills:?}"
    );
    assert!(
        stats["unreachable"].as_u64().unwrap() > 0,
        "no delivery ever failed: {webhooks}"
    );
    // Whenever kessai answered, it answered 2xx (no 500 after a restart,
    // no signature refused), and nothing was given up.
    assert_eq!(stats["refused"], 0, "{webhooks}");
    assert_eq!(stats["given_up"], 0, "{webhooks}");
    assert_eq!(
        stats["delivered"].as_u64().unwrap(),
        emitted.len() as u64,
        "each event delivered once: {webhooks}"
    );
    let errors = kessai.error_lines();
    assert!(
        errors.is_empty(),
        "kessai logged errors:\n{}",
        errors.join("\n")
    );

    // Every event recorded once, with an outcome that is not a problem.
    let events: Vec<EventRow> = fetch_all!(
        backend,
        &database.url,
        EventRow,
        "SELECT id, type, outcome, order_id, received_at FROM webhook_events"
    );
    let recorded_ids: HashSet<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(recorded_ids.len(), events.len(), "an event recorded twice");
    let lost: Vec<String> = emitted
        .iter()
        .filter(|e| !recorded_ids.contains(e["id"].as_str().unwrap()))
        .map(|e| format!("{} {}", e["id"], e["type"]))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} delivered events are not recorded: {lost:?}",
        lost.len(),
        emitted.len()
    );
    assert_eq!(events.len(), emitted.len(), "events from nowhere recorded");
    for (id, kind, outcome, _, _) in &events {
        let acts_on = [
            "payment_intent.succeeded",
            "payment_intent.payment_failed",
            "charge.refunded",
        ];
        if acts_on.contains(&kind.as_str()) {
            assert!(
                outcome == "applied" || outcome == "ignored",
                "{id} ({kind}): {outcome}"
            );
        } else {
            assert_eq!(outcome, "ignored", "{id} ({kind})");
        }
    }

    let rows: Vec<OrderRow> = fetch_all!(
        backend,
        &database.url,
        OrderRow,
        "SELECT id, status, paid_at, refunded_amount, last_payment_error_code FROM orders"
    );
    let rows: HashMap<i64, OrderRow> = rows.into_iter().map(|r| (r.0, r)).collect();
    let outbox: Vec<(i64, String, i64)> = fetch_all!(
        backend,
        &database.url,
        (i64, String, i64),
        "SELECT order_id, topic, COUNT(*) FROM outbox GROUP BY order_id, topic"
    );
    let notified = |order: i64, topic: &str| {
        outbox
            .iter()
            .find(|(o, t, _)| *o == order && t == topic)
            .map_or(0, |(_, _, n)| *n)
    };
    let checked_at = Utc::now();
    for order in &orders {
        let want = order.expected();
        let (_, status, paid_at, refunded, error_code) = &rows[&order.id];
        let context = format!("order {} {:?}: want {want:?}", order.id, order.steps);
        assert_eq!(status, want.status, "{context}");
        assert_eq!(*refunded, want.refunded, "{context}");
        assert_eq!(error_code.is_some(), want.payment_error, "{context}");
        // The restarted server serves the same order to its owner.
        let (code, api) = kessai
            .get(&format!("/api/orders/{}", order.id), Some(&order.token))
            .await;
        assert_eq!(code, StatusCode::OK, "{context}: {api}");
        assert_eq!(api["status"], want.status, "{context}: {api}");
        assert_eq!(api["refunded_amount"], want.refunded, "{context}: {api}");

        let mine: Vec<&EventRow> = events.iter().filter(|e| e.3 == Some(order.id)).collect();
        let of_kind = |kind: &'static str| mine.iter().filter(move |e| e.1 == kind);
        let succeeded: Vec<&&EventRow> = of_kind("payment_intent.succeeded").collect();
        if want.paid {
            // Paid once: by its success event, or before it by a refund
            // that overtook it; paid_at between the confirmation and the
            // success event's arrival, never moved by a redelivery.
            let paid_at = paid_at.unwrap_or_else(|| panic!("{context}: no paid_at"));
            assert_eq!(succeeded.len(), 1, "{context}");
            let success = succeeded[0];
            if success.2 != "applied" {
                assert!(
                    of_kind("charge.refunded").any(|e| e.2 == "applied" && e.4 <= success.4),
                    "{context}: the success was not applied, and no refund settled the order \
                     before it: {mine:?}"
                );
            }
            let confirmed = order.paid_after.unwrap();
            assert!(
                paid_at >= confirmed - chrono::Duration::seconds(1),
                "{context}: paid at {paid_at}, confirmed at {confirmed}"
            );
            assert!(
                paid_at <= success.4 && paid_at <= checked_at,
                "{context}: paid at {paid_at}, success received at {}",
                success.4
            );
            assert_eq!(notified(order.id, "order_paid"), 1, "{context}");
        } else {
            assert!(paid_at.is_none(), "{context}");
            assert!(succeeded.is_empty(), "{context}");
            assert_eq!(notified(order.id, "order_paid"), 0, "{context}");
        }
        let fully_refunded = want.status == "refunded";
        assert_eq!(
            notified(order.id, "order_refunded"),
            i64::from(fully_refunded),
            "{context}"
        );
        let refunds = order
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Refund(_)))
            .count();
        assert_eq!(of_kind("charge.refunded").count(), refunds, "{context}");
        if refunds > 0 {
            assert!(
                of_kind("charge.refunded").any(|e| e.2 == "applied"),
                "{context}: {mine:?}"
            );
        }
        if want.payment_error {
            assert!(
                of_kind("payment_intent.payment_failed").all(|e| e.2 == "applied"),
                "{context}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_applies_every_event_once_sqlite() {
    sigkill_mid_stream_applies_every_event_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_applies_every_event_once_postgres() {
    sigkill_mid_stream_applies_every_event_once(Backend::Postgres).await;
}

//! Pre-signed `payment_intent.succeeded` events, one per order of a pool,
//! each with a unique event id, signed as Stripe signs:
//! `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.payload")>`.
//!
//! The events name their order through `metadata.order_id` (kessai puts it
//! on every intent) and carry the order's exact total, so each one pays a
//! pending order: the work measured is the real ingestion (verify, parse,
//! look the order up, insert the event, update the order, insert the
//! outbox row, in one transaction), never the cheap duplicate path.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

#[derive(Args)]
pub struct SignArgs {
    /// The webhook secret kessai is configured with (`whsec_…`).
    #[arg(long, env = "BENCH_WEBHOOK_SECRET")]
    secret: String,
    /// `token<TAB>order_id` lines (from `prepare --pool`).
    #[arg(long)]
    pool: PathBuf,
    /// `order_id<TAB>payment_intent_id` lines (`warm --intents-out`): the
    /// PaymentIntent each order awaits payment through. Without it, each
    /// event names an intent the order never recorded (`pi_bench…`), found
    /// through its `metadata.order_id`, as after a crash.
    #[arg(long)]
    intents: Option<PathBuf>,
    /// The orders' total, in minor units.
    #[arg(long)]
    amount: i64,
    #[arg(long, default_value = "jpy")]
    currency: String,
    /// Makes the event ids unique across scenarios and runs.
    #[arg(long)]
    tag: String,
    /// `signature<TAB>payload` lines.
    #[arg(long)]
    out: PathBuf,
}

/// The event for one order: a PaymentIntent object shaped like Stripe's
/// (API version 2024-06-20), so the payload has a realistic size.
pub fn event_payload(
    tag: &str,
    order_id: i64,
    intent: Option<&str>,
    amount: i64,
    currency: &str,
    now: i64,
) -> serde_json::Value {
    let intent = intent.map_or_else(|| format!("pi_bench{tag}x{order_id}"), str::to_string);
    json!({
        "id": format!("evt_bench_{tag}_{order_id}"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": now,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": "payment_intent.succeeded",
        "data": {"object": {
            "id": intent,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": amount,
            "capture_method": "automatic_async",
            "client_secret": format!("{intent}_secret_bench"),
            "confirmation_method": "automatic",
            "created": now - 5,
            "currency": currency,
            "customer": format!("cus_bench{order_id}"),
            "description": null,
            "last_payment_error": null,
            "latest_charge": format!("ch_bench{tag}x{order_id}"),
            "livemode": false,
            "metadata": {
                "order_id": order_id.to_string(),
                "order_number": "ACQ-000000-000",
                "user_id": "0"
            },
            "payment_method": format!("pm_bench{order_id}"),
            "payment_method_configuration_details": null,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"],
            "receipt_email": null,
            "setup_future_usage": null,
            "shipping": null,
            "statement_descriptor": null,
            "status": "succeeded"
        }}
    })
}

pub fn signature(secret: &str, timestamp: i64, payload: &[u8]) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("t={timestamp},v1={hex}"))
}

pub fn sign(args: SignArgs) -> anyhow::Result<()> {
    let pairs = crate::prepare::read_pairs(&args.pool)?;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?,
    );
    let intents: std::collections::HashMap<i64, String> = match &args.intents {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let (order, intent) = line
                    .split_once('\t')
                    .ok_or_else(|| anyhow::anyhow!("not order_id<TAB>intent: {line}"))?;
                Ok((order.parse()?, intent.to_string()))
            })
            .collect::<anyhow::Result<_>>()?,
        None => Default::default(),
    };
    let mut bytes = 0usize;
    for (_, order_id) in &pairs {
        let intent = match &args.intents {
            Some(_) => Some(
                intents
                    .get(order_id)
                    .map(String::as_str)
                    .ok_or_else(|| anyhow::anyhow!("no PaymentIntent for order {order_id}"))?,
            ),
            None => None,
        };
        let payload = event_payload(
            &args.tag,
            *order_id,
            intent,
            args.amount,
            &args.currency,
            now,
        )
        .to_string();
        bytes += payload.len();
        writeln!(
            out,
            "{}\t{payload}",
            signature(&args.secret, now, payload.as_bytes())?
        )?;
    }
    out.flush()?;
    println!(
        "{}",
        json!({"events": pairs.len(), "signed_at": now,
               "mean_payload_bytes": bytes / pairs.len().max(1)})
    );
    Ok(())
}

//! The outbox as several instances share it: claims, their expiry, failed
//! attempts and the backlog.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use domain::ports::{OutboxBacklog, OutboxMessage, OutboxRepository};
use infrastructure::db::{Database, PoolOptions};
use test_support::Backend;
use tokio::sync::Barrier;

use crate::{day, new_order, Harness, TEA_CATALOG};

backend_tests! {
    single: [
        a_claim_hides_messages_until_it_expires,
        a_failed_attempt_gives_the_claim_back_and_counts,
        a_claim_reads_the_pending_messages_not_the_whole_table,
    ],
    multi: [
        instances_claiming_at_once_never_get_the_same_message,
    ],
}

/// Queues `count` `order_paid` messages (one order each) and returns their
/// order ids in queue order.
async fn queue(h: &Harness, count: usize) -> Vec<i64> {
    let user = h.user("outbox@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let now = Utc::now();
    let mut order_ids = Vec::new();
    for _ in 0..count {
        let mut order = h
            .repos
            .orders
            .insert(
                new_order(user.id, &[(&products[0], 1)], None),
                day(2024, 11, 24),
                now,
            )
            .await
            .unwrap();
        let message = OutboxMessage {
            topic: "order_paid".into(),
            order_id: order.id,
        };
        h.repos
            .orders
            .save_state_and_notify(&mut order, &[message], now)
            .await
            .unwrap();
        order_ids.push(order.id.get());
    }
    order_ids
}

async fn a_claim_hides_messages_until_it_expires(backend: Backend) {
    let h = Harness::new(backend).await;
    let queued = queue(&h, 3).await;
    let outbox = &h.repos.outbox;
    let now = Utc::now();

    let first = outbox
        .claim_pending(2, 10, now, now + Duration::seconds(60))
        .await
        .unwrap();
    let claimed: Vec<i64> = first.iter().map(|m| m.message.order_id.get()).collect();
    assert_eq!(claimed, queued[..2], "oldest first, at most the limit");

    // The claimed two are not offered again while the claim holds.
    let second = outbox
        .claim_pending(10, 10, now, now + Duration::seconds(60))
        .await
        .unwrap();
    let claimed: Vec<i64> = second.iter().map(|m| m.message.order_id.get()).collect();
    assert_eq!(claimed, queued[2..]);
    assert!(outbox
        .claim_pending(
            10,
            10,
            now + Duration::seconds(59),
            now + Duration::seconds(120)
        )
        .await
        .unwrap()
        .is_empty());

    // A dispatched message is gone for good; the others come back once
    // their claim has expired (the instance holding it died).
    outbox.mark_dispatched(&[first[0].id], now).await.unwrap();
    let later = now + Duration::seconds(61);
    let again = outbox
        .claim_pending(10, 10, later, later + Duration::seconds(60))
        .await
        .unwrap();
    let ids: Vec<i64> = again.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![first[1].id, second[0].id]);
    assert_eq!(
        outbox.backlog(10).await.unwrap(),
        OutboxBacklog {
            pending: 2,
            given_up: 0
        }
    );
}

async fn a_failed_attempt_gives_the_claim_back_and_counts(backend: Backend) {
    let h = Harness::new(backend).await;
    queue(&h, 1).await;
    let outbox = &h.repos.outbox;
    let now = Utc::now();
    let until = now + Duration::seconds(60);

    for attempt in 0..3 {
        let claimed = outbox.claim_pending(10, 3, now, until).await.unwrap();
        assert_eq!(
            claimed.len(),
            1,
            "attempt {attempt}: released and offered again"
        );
        assert_eq!(claimed[0].attempts, attempt);
        outbox.mark_failed(claimed[0].id).await.unwrap();
    }
    // Three failures with a limit of three: left for an operator.
    assert!(outbox
        .claim_pending(10, 3, now, until)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        outbox.backlog(3).await.unwrap(),
        OutboxBacklog {
            pending: 0,
            given_up: 1
        }
    );
}

/// Four instances (each with its own pool) claim from one database at the
/// same moment: every message goes to exactly one of them.
async fn instances_claiming_at_once_never_get_the_same_message(backend: Backend) {
    const MESSAGES: usize = 40;
    const INSTANCES: usize = 4;
    let h = Harness::new(backend).await;
    queue(&h, MESSAGES).await;
    let mut instances: Vec<Arc<dyn OutboxRepository>> = Vec::new();
    for _ in 0..INSTANCES {
        let database = Database::connect(&h.url, PoolOptions { max_connections: 2 })
            .await
            .unwrap();
        instances.push(database.repositories().outbox);
    }
    let barrier = Arc::new(Barrier::new(INSTANCES));
    let now = Utc::now();
    let mut tasks = Vec::new();
    for outbox in instances {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            barrier.wait().await;
            // Small batches, many rounds: the claims really interleave.
            loop {
                let batch = outbox
                    .claim_pending(3, 10, now, now + Duration::seconds(60))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                mine.extend(batch.into_iter().map(|m| m.id));
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut per_instance = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        per_instance.push(mine.len());
        for id in mine {
            assert!(seen.insert(id), "message {id} claimed twice");
        }
    }
    eprintln!("claims per instance: {per_instance:?}");
    assert_eq!(seen.len(), MESSAGES, "every message claimed once");
}

/// The outbox keeps every message it sent, so a claim that scans the table
/// gets slower for ever; under a burst of webhooks it kept a PostgreSQL
/// backend busy full time. Its plan, as the prepared statement runs it
/// once PostgreSQL stops planning it per call, must find the messages by
/// the pending index and the rows by id.
async fn a_claim_reads_the_pending_messages_not_the_whole_table(backend: Backend) {
    let h = Harness::new(backend).await;
    if backend == Backend::Postgres {
        // A table during a sale: many messages sent, some pending, and
        // statistics from before the latest burst (the plan depends on
        // them; this shape made the old claim scan the whole table).
        let order = queue(&h, 1).await[0];
        let burst = |n: u32| {
            format!(
                "INSERT INTO outbox (topic, order_id, created_at) \
                 SELECT 'order_paid', {order}, now() FROM generate_series(1, {n})"
            )
        };
        let sent = |up_to: u32| {
            format!("UPDATE outbox SET dispatched_at = now() WHERE id <= (SELECT min(id) FROM outbox) + {up_to}")
        };
        h.raw_sql(&[
            &burst(15_000),
            &sent(10_000),
            "VACUUM ANALYZE outbox",
            &burst(6_000),
            &sent(20_000),
        ])
        .await;
    }
    let Some(plan) = h.database.outbox_claim_plan().await else {
        assert_eq!(backend, Backend::Sqlite, "only SQLite has no plan to show");
        return;
    };
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(plan.contains("outbox_pending"), "{plan}");
}

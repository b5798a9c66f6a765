//! The outbox dispatcher: a pass drains the backlog batch by batch, stops
//! at the first failed send, and never takes more than its batches.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use application::outbox::{Notifier, OutboxDispatcher, MAX_ATTEMPTS};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::ids::OrderId;
use domain::ports::{
    OutboxBacklog, OutboxMessage, OutboxRepository, PendingOutboxMessage, RepoResult,
};

use crate::support::{t0, SettableClock};

/// One queued message as the fake stores it.
struct Row {
    id: i64,
    order_id: i64,
    attempts: i64,
    claimed_until: Option<DateTime<Utc>>,
    dispatched: bool,
}

/// The outbox table, in memory, with the claim rules of the SQL adapter.
#[derive(Default)]
struct InMemoryOutbox {
    rows: Mutex<Vec<Row>>,
    claims: Mutex<Vec<usize>>,
}

impl InMemoryOutbox {
    fn with_messages(count: i64) -> Self {
        let outbox = Self::default();
        outbox.rows().extend((1..=count).map(|id| Row {
            id,
            order_id: id,
            attempts: 0,
            claimed_until: None,
            dispatched: false,
        }));
        outbox
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, Vec<Row>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many messages each claim returned, in order.
    fn claim_sizes(&self) -> Vec<usize> {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn dispatched(&self) -> usize {
        self.rows().iter().filter(|row| row.dispatched).count()
    }
}

#[async_trait]
impl OutboxRepository for InMemoryOutbox {
    async fn claim_pending(
        &self,
        limit: i64,
        max_attempts: i64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> RepoResult<Vec<PendingOutboxMessage>> {
        let mut claimed = Vec::new();
        for row in self.rows().iter_mut() {
            let free = row.claimed_until.is_none_or(|claim| claim < now);
            if !row.dispatched && row.attempts < max_attempts && free {
                row.claimed_until = Some(until);
                claimed.push(PendingOutboxMessage {
                    id: row.id,
                    message: OutboxMessage {
                        topic: "order_paid".into(),
                        order_id: OrderId::new(row.order_id),
                    },
                    attempts: row.attempts,
                });
            }
            if i64::try_from(claimed.len()).is_ok_and(|n| n >= limit) {
                break;
            }
        }
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(claimed.len());
        Ok(claimed)
    }

    async fn mark_dispatched(&self, ids: &[i64], _now: DateTime<Utc>) -> RepoResult<()> {
        let ids: HashSet<i64> = ids.iter().copied().collect();
        for row in self.rows().iter_mut().filter(|row| ids.contains(&row.id)) {
            row.dispatched = true;
        }
        Ok(())
    }

    async fn mark_failed(&self, id: i64) -> RepoResult<()> {
        for row in self.rows().iter_mut().filter(|row| row.id == id) {
            row.attempts += 1;
            row.claimed_until = None;
        }
        Ok(())
    }

    async fn backlog(&self, max_attempts: i64) -> RepoResult<OutboxBacklog> {
        let rows = self.rows();
        let pending = rows.iter().filter(|row| !row.dispatched);
        let given_up = pending.clone().filter(|r| r.attempts >= max_attempts);
        Ok(OutboxBacklog {
            pending: i64::try_from(pending.count()).unwrap_or(i64::MAX),
            given_up: i64::try_from(given_up.count()).unwrap_or(i64::MAX),
        })
    }
}

/// Records what it sends; refuses the orders in `refuse`.
#[derive(Default)]
struct RecordingNotifier {
    sent: Mutex<Vec<i64>>,
    refuse: HashSet<i64>,
}

impl RecordingNotifier {
    fn sent(&self) -> Vec<i64> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, message: &OutboxMessage) -> anyhow::Result<()> {
        let order = message.order_id.get();
        if self.refuse.contains(&order) {
            anyhow::bail!("the mail server said no to order {order}");
        }
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(order);
        Ok(())
    }
}

fn dispatcher(outbox: &Arc<InMemoryOutbox>, notifier: &Arc<RecordingNotifier>) -> OutboxDispatcher {
    OutboxDispatcher::new(
        outbox.clone(),
        notifier.clone(),
        Arc::new(SettableClock::at(t0())),
    )
}

#[tokio::test]
async fn one_pass_drains_a_backlog_larger_than_a_batch() {
    let outbox = Arc::new(InMemoryOutbox::with_messages(250));
    let notifier = Arc::new(RecordingNotifier::default());

    let sent = dispatcher(&outbox, &notifier)
        .dispatch_pending(100, 10)
        .await
        .unwrap();

    assert_eq!(sent, 250);
    assert_eq!(
        notifier.sent(),
        (1..=250).collect::<Vec<_>>(),
        "oldest first, each once"
    );
    assert_eq!(outbox.dispatched(), 250);
    // Two full batches, then a short one that says the outbox is drained.
    assert_eq!(outbox.claim_sizes(), vec![100, 100, 50]);
}

#[tokio::test]
async fn a_pass_takes_no_more_than_its_batches() {
    let outbox = Arc::new(InMemoryOutbox::with_messages(250));
    let notifier = Arc::new(RecordingNotifier::default());
    let dispatcher = dispatcher(&outbox, &notifier);

    assert_eq!(dispatcher.dispatch_pending(100, 2).await.unwrap(), 200);
    assert_eq!(outbox.claim_sizes(), vec![100, 100]);
    // The next pass takes the rest.
    assert_eq!(dispatcher.dispatch_pending(100, 2).await.unwrap(), 50);
    assert_eq!(outbox.dispatched(), 250);
}

#[tokio::test]
async fn a_failed_send_ends_the_pass_instead_of_retrying_at_once() {
    let outbox = Arc::new(InMemoryOutbox::with_messages(250));
    let notifier = Arc::new(RecordingNotifier {
        refuse: HashSet::from([42]),
        ..RecordingNotifier::default()
    });
    let dispatcher = dispatcher(&outbox, &notifier);

    let sent = dispatcher.dispatch_pending(100, 10).await.unwrap();

    // The batch with the failure is finished, the rest waits a pass: a
    // tight loop would spend the message's attempts in milliseconds.
    assert_eq!(sent, 99);
    assert_eq!(outbox.claim_sizes(), vec![100]);
    let attempts_of_42 = outbox
        .rows()
        .iter()
        .find(|r| r.id == 42)
        .map(|r| r.attempts);
    assert_eq!(attempts_of_42, Some(1));

    // Each later pass retries it first (it is the oldest), fails again and
    // stops after that batch: a message that keeps failing slows the drain
    // to a batch a pass until it is given up, but loses nothing.
    assert_eq!(dispatcher.dispatch_pending(100, 10).await.unwrap(), 99);
    assert_eq!(dispatcher.dispatch_pending(100, 10).await.unwrap(), 51);
    assert_eq!(outbox.dispatched(), 249);
    assert_eq!(outbox.claim_sizes(), vec![100, 100, 52]);
    let backlog = outbox.backlog(MAX_ATTEMPTS).await.unwrap();
    assert_eq!((backlog.pending, backlog.given_up), (1, 0));
}

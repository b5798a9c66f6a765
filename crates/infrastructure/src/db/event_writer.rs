//! Group commit for webhook events.
//!
//! A burst of webhooks used to cost one durable commit each, and on SQLite
//! the single writer spent most of its time waiting for those fsyncs. Here
//! one task owns event writes: it takes every write that is waiting, does
//! them all in one transaction, commits once, and only then answers each
//! caller. Every caller still hears back only after its own event is
//! durable, and each event stays all or nothing: a duplicate writes
//! nothing, a conflicting order removes the event row again before the
//! commit. Nothing waits on a timer: a batch is whatever queued up while
//! the previous commit ran, so a lone event is written at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::ports::{EventRecorded, OutboxMessage, RepoResult, WebhookEventRecord};
use domain::{Order, RepositoryError};
use tokio::sync::{mpsc, oneshot, Mutex};

/// At most this many events share a transaction: enough to amortise a
/// commit many times over, few enough that the first caller of a batch
/// does not wait long for the last.
const MAX_BATCH: usize = 64;
/// Writes waiting beyond this make callers wait to enqueue (backpressure
/// instead of unbounded memory).
const QUEUE_CAPACITY: usize = 1024;

/// One event to record, with the order state and messages that go with it.
pub(crate) struct EventWrite {
    pub event: WebhookEventRecord,
    /// Saved only if still at the version it was read at.
    pub order: Option<Order>,
    pub outbox: Vec<OutboxMessage>,
    pub now: DateTime<Utc>,
}

/// What happened to one write: `Err(Conflict)` when its order moved on.
pub(crate) type WriteOutcome = RepoResult<EventRecorded>;

/// The database side: the backends implement it.
#[async_trait]
pub(crate) trait EventBatchSink: Send + Sync + 'static {
    /// Writes `writes` in one transaction, each all or nothing, and
    /// commits. `Err` when the transaction as a whole failed.
    async fn write_batch(&self, writes: &[EventWrite]) -> Result<Vec<WriteOutcome>, sqlx::Error>;
}

struct Job {
    write: EventWrite,
    reply: oneshot::Sender<WriteOutcome>,
}

/// How many transactions carried how many events (for tests and metrics).
#[derive(Debug, Default)]
pub struct BatchStats {
    batches: AtomicU64,
    events: AtomicU64,
}

impl BatchStats {
    /// `(transactions committed or tried, events they carried)`.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.events.load(Ordering::Relaxed),
        )
    }
}

/// The handle the repository writes through. The task behind it ends
/// when the handle is dropped.
pub(crate) struct EventWriter {
    queue: mpsc::Sender<Job>,
    pub(crate) stats: Arc<BatchStats>,
}

impl EventWriter {
    /// Starts `writers` writing tasks on the current Tokio runtime. One
    /// suits SQLite, which has one writer anyway. PostgreSQL commits
    /// several transactions at once, and a single task would leave it
    /// waiting on one connection's round trips: there, several tasks each
    /// take what is waiting when they are free.
    pub fn spawn(sink: impl EventBatchSink, writers: usize) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let jobs = Arc::new(Mutex::new(jobs));
        let stats = Arc::new(BatchStats::default());
        let sink: Arc<dyn EventBatchSink> = Arc::new(sink);
        for _ in 0..writers.max(1) {
            tokio::spawn(run(sink.clone(), jobs.clone(), stats.clone()));
        }
        Self { queue, stats }
    }

    /// Queues `write` and waits until it is committed (or refused).
    pub async fn write(&self, write: EventWrite) -> WriteOutcome {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { write, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> RepositoryError {
    RepositoryError::Unexpected("the webhook event writer has stopped".into())
}

async fn run(
    sink: Arc<dyn EventBatchSink>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    stats: Arc<BatchStats>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // The lock is held only while waiting for work: whoever holds it takes
    // the next batch, and the others queue behind it, free or committing.
    while jobs.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Orders in id order, for the writes made one by one. Two batches
        // committing at once (PostgreSQL) that save the same order can
        // still deadlock in the one-statement update, whose lock order is
        // the plan's; PostgreSQL breaks it (after `deadlock_timeout`) and
        // the failed batch is written again event by event, so it costs a
        // delay, never an event. It takes two events of one order arriving
        // together, which Stripe rarely sends.
        batch.sort_by_key(|job| job.write.order.as_ref().map(|order| order.id.get()));
        let (writes, replies): (Vec<EventWrite>, Vec<_>) =
            batch.drain(..).map(|job| (job.write, job.reply)).unzip();
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .events
            .fetch_add(writes.len() as u64, Ordering::Relaxed);
        metrics::histogram!("kessai_webhook_commit_batch_size").record(writes.len() as f64);
        let outcomes = write_isolated(&sink, writes).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A caller that went away still had its event written.
            let _ = reply.send(outcome);
        }
    }
}

/// Writes the batch; if the batch fails as a whole (one bad event, a
/// deadlock with another instance, a panic), writes each event on its own
/// so that one event's failure is its own.
async fn write_isolated(
    sink: &Arc<dyn EventBatchSink>,
    writes: Vec<EventWrite>,
) -> Vec<WriteOutcome> {
    let count = writes.len();
    let writes = Arc::new(writes);
    match attempt(sink, &writes, None).await {
        Ok(outcomes) if outcomes.len() == count => return outcomes,
        Ok(_) => tracing::error!("the event batch answered for the wrong number of events"),
        Err(error) if count == 1 => return vec![Err(error)],
        Err(error) => {
            tracing::warn!(%error, events = count, "event batch failed; writing its events one by one")
        }
    }
    let mut outcomes = Vec::with_capacity(count);
    for index in 0..count {
        outcomes.push(match attempt(sink, &writes, Some(index)).await {
            Ok(mut one) if one.len() == 1 => one.remove(0),
            Ok(_) => Err(RepositoryError::Unexpected(
                "the event write answered wrongly".into(),
            )),
            Err(error) => Err(error),
        });
    }
    outcomes
}

/// Runs one transaction (all of `writes`, or only the one at `only`) in a
/// task of its own, so a panic fails this transaction, not the writer.
async fn attempt(
    sink: &Arc<dyn EventBatchSink>,
    writes: &Arc<Vec<EventWrite>>,
    only: Option<usize>,
) -> RepoResult<Vec<WriteOutcome>> {
    let (sink, writes) = (sink.clone(), writes.clone());
    let task = tokio::spawn(async move {
        let selected = match only {
            Some(index) => &writes[index..=index],
            None => &writes[..],
        };
        sink.write_batch(selected).await
    });
    match task.await {
        Ok(Ok(outcomes)) => Ok(outcomes),
        Ok(Err(error)) => Err(super::db_error(error)),
        Err(join) => Err(RepositoryError::Unexpected(
            format!("writing webhook events failed: {join}").into(),
        )),
    }
}

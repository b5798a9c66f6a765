//! Group commit: many callers' writes in one transaction.
//!
//! A burst of webhooks, or of first intent calls, used to cost one durable
//! commit per write, and on SQLite the single writer spent most of its time
//! waiting for those fsyncs. Here one task (or a few, on PostgreSQL) owns a
//! kind of write: it takes every write that is waiting, does them all in
//! one transaction, commits once, and only then answers each caller. Every
//! caller still hears back only after its own write is durable, and each
//! write stays all or nothing (the [`BatchSink`] makes sure of it). Nothing
//! waits on a timer: a batch is whatever queued up while the previous
//! commit ran, so a lone write is done at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use domain::ports::RepoResult;
use domain::RepositoryError;
use tokio::sync::{mpsc, oneshot, Mutex};

/// At most this many writes share a transaction: enough to amortise a
/// commit many times over, few enough that the first caller of a batch
/// does not wait long for the last.
const MAX_BATCH: usize = 64;
/// Writes waiting beyond this make callers wait to enqueue (backpressure
/// instead of unbounded memory).
const QUEUE_CAPACITY: usize = 1024;

/// A write that can share a transaction with others.
pub(crate) trait Batched: Send + Sync + 'static {
    /// The order it saves, if any: a batch is written in order id order,
    /// so concurrent batches lock rows in one order.
    fn order_key(&self) -> Option<i64>;
}

/// The database side of one kind of write: the backends implement it.
#[async_trait]
pub(crate) trait BatchSink<W, V>: Send + Sync + 'static {
    /// Does `writes` in one transaction, each all or nothing, and commits.
    /// `Err` when the transaction as a whole failed.
    async fn write_batch(&self, writes: &[W]) -> Result<Vec<RepoResult<V>>, sqlx::Error>;
}

/// Names one kind of write in log lines, errors and metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteKind {
    pub what: &'static str,
    /// The histogram of batch sizes.
    pub metric: &'static str,
}

struct Job<W, V> {
    write: W,
    reply: oneshot::Sender<RepoResult<V>>,
}

struct Writer<W, V> {
    sink: Arc<dyn BatchSink<W, V>>,
    kind: WriteKind,
    stats: Arc<BatchStats>,
}

/// How many transactions carried how many writes (for tests and metrics).
#[derive(Debug, Default)]
pub struct BatchStats {
    batches: AtomicU64,
    writes: AtomicU64,
}

impl BatchStats {
    /// `(transactions committed or tried, writes they carried)`.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

/// The handle the repository writes through. The tasks behind it end
/// when the handle is dropped.
pub(crate) struct GroupCommit<W, V> {
    queue: mpsc::Sender<Job<W, V>>,
    kind: WriteKind,
    pub(crate) stats: Arc<BatchStats>,
}

impl<W: Batched, V: Send + 'static> GroupCommit<W, V> {
    /// Starts `writers` writing tasks on the current Tokio runtime. One
    /// suits SQLite, which has one writer anyway. PostgreSQL commits
    /// several transactions at once, and a single task would leave it
    /// waiting on one connection's round trips: there, several tasks each
    /// take what is waiting when they are free.
    pub fn spawn(sink: impl BatchSink<W, V>, writers: usize, kind: WriteKind) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let jobs = Arc::new(Mutex::new(jobs));
        let stats = Arc::new(BatchStats::default());
        let writer = Arc::new(Writer {
            sink: Arc::new(sink),
            kind,
            stats: stats.clone(),
        });
        for _ in 0..writers.max(1) {
            tokio::spawn(run(writer.clone(), jobs.clone()));
        }
        Self { queue, kind, stats }
    }

    /// Queues `write` and waits until it is committed (or refused).
    pub async fn write(&self, write: W) -> RepoResult<V> {
        let (reply, answer) = oneshot::channel();
        let stopped = || {
            RepositoryError::Unexpected(
                format!("the writer of {} has stopped", self.kind.what).into(),
            )
        };
        self.queue
            .send(Job { write, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run<W: Batched, V: Send + 'static>(
    writer: Arc<Writer<W, V>>,
    jobs: Arc<Mutex<mpsc::Receiver<Job<W, V>>>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // The lock is held only while waiting for work: whoever holds it takes
    // the next batch, and the others queue behind it, free or committing.
    while jobs.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Orders in id order, for the writes made one by one. Two batches
        // committing at once (PostgreSQL) that save the same order can
        // still deadlock in a one-statement update, whose lock order is
        // the plan's; PostgreSQL breaks it (after `deadlock_timeout`) and
        // the failed batch is written again write by write, so it costs a
        // delay, never a write. It takes two writes of one order arriving
        // together, which is rare (two events of one order, two first
        // intent calls of one order).
        batch.sort_by_key(|job: &Job<W, V>| job.write.order_key());
        let (writes, replies): (Vec<W>, Vec<_>) =
            batch.drain(..).map(|job| (job.write, job.reply)).unzip();
        writer.stats.batches.fetch_add(1, Ordering::Relaxed);
        writer
            .stats
            .writes
            .fetch_add(writes.len() as u64, Ordering::Relaxed);
        metrics::histogram!(writer.kind.metric).record(writes.len() as f64);
        let outcomes = write_isolated(&writer, writes).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A caller that went away still had its write done.
            let _ = reply.send(outcome);
        }
    }
}

/// Writes the batch; if the batch fails as a whole (one bad write, a
/// deadlock with another instance, a panic), does each write on its own
/// so that one write's failure is its own.
async fn write_isolated<W: Batched, V: Send + 'static>(
    writer: &Writer<W, V>,
    writes: Vec<W>,
) -> Vec<RepoResult<V>> {
    let what = writer.kind.what;
    let count = writes.len();
    let writes = Arc::new(writes);
    match attempt(writer, &writes, None).await {
        Ok(outcomes) if outcomes.len() == count => return outcomes,
        Ok(_) => tracing::error!(what, "a batch answered for the wrong number of writes"),
        Err(error) if count == 1 => return vec![Err(error)],
        Err(error) => {
            tracing::warn!(%error, what, writes = count, "batch failed; writing it one by one")
        }
    }
    let mut outcomes = Vec::with_capacity(count);
    for index in 0..count {
        outcomes.push(match attempt(writer, &writes, Some(index)).await {
            Ok(mut one) if one.len() == 1 => one.remove(0),
            Ok(_) => Err(RepositoryError::Unexpected(
                format!("a write of {what} answered wrongly").into(),
            )),
            Err(error) => Err(error),
        });
    }
    outcomes
}

/// Runs one transaction (all of `writes`, or only the one at `only`) in a
/// task of its own, so a panic fails this transaction, not the writer.
async fn attempt<W: Batched, V: Send + 'static>(
    writer: &Writer<W, V>,
    writes: &Arc<Vec<W>>,
    only: Option<usize>,
) -> RepoResult<Vec<RepoResult<V>>> {
    let (sink, writes) = (writer.sink.clone(), writes.clone());
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
            format!("writing {} failed: {join}", writer.kind.what).into(),
        )),
    }
}

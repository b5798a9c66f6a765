//! Dispatching the outbox: follow-up work queued in the same transaction
//! as an order change, done after it committed and retried until it is.

use std::sync::Arc;

use async_trait::async_trait;
use domain::ports::{OutboxMessage, OutboxRepository};

use crate::ports::Clock;
use crate::UnexpectedError;

/// Tells the shop's people and systems what happened (e-mail, chat, a
/// fulfilment queue). Must tolerate the same message twice: dispatch is
/// at-least-once.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, message: &OutboxMessage) -> anyhow::Result<()>;
}

/// Messages that failed this often are left for an operator.
pub const MAX_ATTEMPTS: i64 = 10;

/// How long a claimed message is this instance's to send. Longer than a
/// notification can take; if the instance dies, another one sends the
/// message after this.
const CLAIM_TTL: chrono::Duration = chrono::Duration::seconds(60);

#[derive(Clone)]
pub struct OutboxDispatcher {
    outbox: Arc<dyn OutboxRepository>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
}

impl OutboxDispatcher {
    pub fn new(
        outbox: Arc<dyn OutboxRepository>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            outbox,
            notifier,
            clock,
        }
    }

    /// Sends what is pending, `batch` messages at a time, until a batch
    /// comes back short (drained), a send fails (the rest waits for the
    /// next pass rather than retrying in a tight loop), or `max_batches`
    /// were sent (so a huge backlog cannot hold off shutdown); returns how
    /// many were sent. One batch a pass would fall behind for good once
    /// payments arrive faster than a batch a tick: after a sale's burst of
    /// webhooks, notifications would trail by minutes.
    ///
    /// Another instance running the same pass gets other messages: a
    /// message is sent twice only when an instance dies between sending
    /// it and recording that it did (the notifier tolerates that).
    pub async fn dispatch_pending(
        &self,
        batch: i64,
        max_batches: usize,
    ) -> Result<usize, UnexpectedError> {
        let mut sent = 0;
        for _ in 0..max_batches {
            let pass = self.dispatch_batch(batch).await?;
            sent += pass.sent;
            let full = i64::try_from(pass.claimed).is_ok_and(|claimed| claimed >= batch);
            if !full || pass.sent < pass.claimed {
                break;
            }
        }
        let backlog = self.outbox.backlog(MAX_ATTEMPTS).await?;
        metrics::gauge!("kessai_outbox_backlog", "state" => "pending").set(backlog.pending as f64);
        metrics::gauge!("kessai_outbox_backlog", "state" => "given_up")
            .set(backlog.given_up as f64);
        Ok(sent)
    }

    /// Claims up to `limit` messages and sends them.
    async fn dispatch_batch(&self, limit: i64) -> Result<BatchOutcome, UnexpectedError> {
        let now = self.clock.now();
        let claimed = self
            .outbox
            .claim_pending(limit, MAX_ATTEMPTS, now, now + CLAIM_TTL)
            .await?;
        let claimed_count = claimed.len();
        let mut sent = Vec::with_capacity(claimed_count);
        for pending in claimed {
            let order_id = pending.message.order_id.get();
            match self.notifier.notify(&pending.message).await {
                Ok(()) => {
                    metrics::counter!("kessai_outbox_dispatched_total", "topic" => pending.message.topic.clone())
                        .increment(1);
                    sent.push(pending.id);
                }
                Err(error) => {
                    let attempts = pending.attempts + 1;
                    if attempts >= MAX_ATTEMPTS {
                        tracing::error!(outbox_id = pending.id, order_id, topic = %pending.message.topic, attempts, %error, "notification given up; an operator must send it");
                    } else {
                        tracing::warn!(outbox_id = pending.id, order_id, topic = %pending.message.topic, attempts, %error, "notification failed; will retry");
                    }
                    metrics::counter!("kessai_outbox_failures_total", "topic" => pending.message.topic.clone())
                        .increment(1);
                    self.outbox.mark_failed(pending.id).await?;
                }
            }
        }
        // If this fails or the process dies first, the claims expire and
        // these are sent again: at least once, never lost.
        self.outbox.mark_dispatched(&sent, self.clock.now()).await?;
        Ok(BatchOutcome {
            claimed: claimed_count,
            sent: sent.len(),
        })
    }
}

struct BatchOutcome {
    claimed: usize,
    sent: usize,
}

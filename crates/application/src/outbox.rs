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

    /// Sends what is pending (up to `limit`); returns how many were sent.
    pub async fn dispatch_pending(&self, limit: i64) -> Result<usize, UnexpectedError> {
        let mut sent = 0;
        for pending in self.outbox.pending(limit).await? {
            if pending.attempts >= MAX_ATTEMPTS {
                continue;
            }
            match self.notifier.notify(&pending.message).await {
                Ok(()) => {
                    self.outbox
                        .mark_dispatched(pending.id, self.clock.now())
                        .await?;
                    sent += 1;
                }
                Err(error) => {
                    tracing::warn!(outbox_id = pending.id, %error, "notification failed; will retry");
                    self.outbox.mark_failed(pending.id).await?;
                }
            }
        }
        Ok(sent)
    }
}

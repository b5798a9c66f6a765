//! The notifier kessai ships with: a structured log line per event, for
//! log-based alerting. A shop plugs its e-mail or chat sender in here.

use application::outbox::Notifier;
use async_trait::async_trait;
use domain::ports::OutboxMessage;

#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, message: &OutboxMessage) -> anyhow::Result<()> {
        tracing::info!(
            target: "kessai::notifications",
            topic = %message.topic,
            order_id = %message.order_id,
            "notification"
        );
        Ok(())
    }
}

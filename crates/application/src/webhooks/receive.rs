use domain::ports::EventRecorded;
use domain::RepositoryError;

use super::decide::expected_payment;
use super::{HandleWebhookError, Outcome, WebhookService};
use tracing::field::Empty;

use crate::ports::webhooks::{EventObject, ProviderEvent};
use crate::UnexpectedError;

/// A lost race re-reads the order and decides again; each round means the
/// order moved forward, so a few are enough.
const MAX_ROUNDS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no event {0} was received")]
    NotFound(String),
    #[error("the stored event cannot be read: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

impl WebhookService {
    /// Handles one delivery: verify, then apply once. Every log line of
    /// the delivery carries the event, and the PaymentIntent and order as
    /// soon as they are known.
    #[tracing::instrument(skip_all, fields(event_id = Empty, kind = Empty, payment_intent = Empty, order_id = Empty))]
    pub async fn receive(
        &self,
        signature: Option<&str>,
        payload: &[u8],
    ) -> Result<Outcome, HandleWebhookError> {
        let event = match self.decoder.decode(signature, payload, self.clock.now()) {
            Ok(event) => event,
            Err(rejection) => {
                tracing::warn!(%rejection, "webhook rejected");
                metrics::counter!("kessai_webhook_events_total", "type" => "unverified", "outcome" => "rejected")
                    .increment(1);
                return Err(rejection.into());
            }
        };
        let payload = String::from_utf8_lossy(payload).into_owned();
        let result = self.process(&event, payload, false).await;
        let outcome_label = match &result {
            Ok(outcome) => outcome.as_str(),
            Err(_) => "failed",
        };
        // Event types are bounded: only verified events from Stripe get here.
        metrics::counter!("kessai_webhook_events_total", "type" => event.kind.clone(), "outcome" => outcome_label)
            .increment(1);
        let outcome = result?;
        tracing::info!(outcome = outcome.as_str(), "webhook handled");
        Ok(outcome)
    }

    /// Processes a stored event again (`kessai events replay`): the same
    /// rules apply, so replaying an applied event changes nothing.
    #[tracing::instrument(skip_all, fields(event_id = %event_id, kind = Empty, payment_intent = Empty, order_id = Empty))]
    pub async fn replay(&self, event_id: &str) -> Result<Outcome, ReplayError> {
        let stored = self
            .events
            .find(event_id)
            .await
            .map_err(UnexpectedError::from)?
            .ok_or_else(|| ReplayError::NotFound(event_id.to_string()))?;
        let event = self
            .decoder
            .parse(stored.payload.as_bytes())
            .map_err(|e| ReplayError::Unreadable(e.to_string()))?;
        Ok(self.process(&event, stored.payload, true).await?)
    }

    async fn process(
        &self,
        event: &ProviderEvent,
        payload: String,
        replay: bool,
    ) -> Result<Outcome, UnexpectedError> {
        let span = tracing::Span::current();
        span.record("event_id", event.id.as_str());
        span.record("kind", event.kind.as_str());
        match &event.object {
            EventObject::PaymentIntent(intent) => {
                span.record("payment_intent", intent.id.as_str());
            }
            EventObject::Charge(charge) => {
                if let Some(intent) = &charge.payment_intent {
                    span.record("payment_intent", intent.as_str());
                }
            }
            EventObject::Other => {}
        }
        // No look-up of the event id first: the insert that records it
        // finds a duplicate anyway, in the same write, so a first delivery
        // (nearly all of them) costs one read less. A duplicate is decided
        // again from the order as it is now, then written as nothing.
        if !replay {
            if let Some(outcome) = self.record_if_expected(event, &payload).await? {
                return Ok(outcome);
            }
        }
        for _ in 0..MAX_ROUNDS {
            let mut decision = self.decide(event).await?;
            if let Some(order_id) = decision.order_id {
                span.record("order_id", order_id.get());
            }
            let now = self.clock.now();
            let record = decision.record(event, payload.clone(), now);
            let result = if replay {
                self.events
                    .record_replay(&record, decision.order.as_mut(), &decision.outbox, now)
                    .await
                    .map(|()| EventRecorded::Recorded)
            } else {
                self.events
                    .record(&record, decision.order.as_mut(), &decision.outbox, now)
                    .await
            };
            match result {
                Ok(EventRecorded::Recorded) => return Ok(decision.outcome),
                Ok(EventRecorded::Duplicate) => return Ok(Outcome::Duplicate),
                Err(RepositoryError::Conflict) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(UnexpectedError(anyhow::anyhow!(
            "event {} kept conflicting with concurrent changes",
            event.id
        )))
    }

    /// The common webhook in one write, without reading its order first
    /// ([`expected_payment`]); `None` when it is not that case, or storage
    /// found the order otherwise (nothing was written): then the event is
    /// decided from the order as read, like any other.
    async fn record_if_expected(
        &self,
        event: &ProviderEvent,
        payload: &str,
    ) -> Result<Option<Outcome>, UnexpectedError> {
        let now = self.clock.now();
        let Some((payment, decision)) = expected_payment(event, now) else {
            return Ok(None);
        };
        let record = decision.record(event, payload.to_string(), now);
        let recorded = self
            .events
            .record_expected_payment(&record, &payment, &decision.outbox, now)
            .await?;
        Ok(match recorded {
            Some(EventRecorded::Recorded) => {
                tracing::Span::current().record("order_id", payment.order_id.get());
                tracing::info!(order_id = %payment.order_id, payment_intent = %payment.payment_intent_id, "order paid");
                Some(decision.outcome)
            }
            Some(EventRecorded::Duplicate) => Some(Outcome::Duplicate),
            None => None,
        })
    }
}

//! What an event means for an order, decided in memory from the order as
//! read; `receive` stores the decision atomically with the event id.

use chrono::{DateTime, Utc};
use domain::ports::{ExpectedPayment, OutboxMessage, WebhookEventRecord};
use domain::{Money, Order, OrderStatus, PaymentFailure};

use super::{Outcome, WebhookService};
use crate::payments::{settle_success, SuccessOutcome};
use crate::ports::payment_gateway::{PaymentIntent, PaymentIntentStatus};
use crate::ports::webhooks::{Charge, EventObject, ProviderEvent};
use crate::UnexpectedError;

/// The effect of one event: what to record, and the order to save with it.
pub(super) struct Decision {
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub order: Option<Order>,
    /// The order the event concerns, if any (recorded for operators).
    pub order_id: Option<domain::OrderId>,
    pub payment_intent_id: Option<String>,
    pub outbox: Vec<OutboxMessage>,
}

impl Decision {
    fn new(outcome: Outcome, detail: impl Into<Option<String>>) -> Self {
        Self {
            outcome,
            detail: detail.into(),
            order: None,
            order_id: None,
            payment_intent_id: None,
            outbox: Vec::new(),
        }
    }

    fn about(mut self, order: &Order, intent: Option<&str>) -> Self {
        self.order_id = Some(order.id);
        self.payment_intent_id = intent.map(str::to_string);
        self
    }

    fn saving(mut self, order: Order) -> Self {
        self.order = Some(order);
        self
    }

    fn notify(mut self, topic: &str, order: &Order) -> Self {
        self.outbox.push(OutboxMessage {
            topic: topic.to_string(),
            order_id: order.id,
        });
        self
    }

    /// The event as stored with this decision.
    pub(super) fn record(
        &self,
        event: &ProviderEvent,
        payload: String,
        received_at: DateTime<Utc>,
    ) -> WebhookEventRecord {
        WebhookEventRecord {
            id: event.id.clone(),
            kind: event.kind.clone(),
            created: event.created,
            received_at,
            outcome: self.outcome.as_str().to_string(),
            detail: self.detail.clone(),
            order_id: self.order_id,
            payment_intent_id: self.payment_intent_id.clone(),
            payload,
        }
    }
}

/// The common webhook, decided before its order is read: a succeeded
/// PaymentIntent naming its order (`metadata.order_id`, which kessai puts
/// on every intent), and what to record if storage finds that order
/// awaiting exactly this payment ([`ExpectedPayment::is_expected_by`]).
/// For every such order [`settle_success`] says `Paid` and leaves the
/// state storage writes (`expected_payments_settle_as_decided` holds the
/// two together), so the decision is the one [`WebhookService::decide`]
/// would make; for any other order storage writes nothing.
pub(super) fn expected_payment(
    event: &ProviderEvent,
    paid_at: DateTime<Utc>,
) -> Option<(ExpectedPayment, Decision)> {
    let EventObject::PaymentIntent(intent) = &event.object else {
        return None;
    };
    if event.kind != "payment_intent.succeeded" || intent.status != PaymentIntentStatus::Succeeded {
        return None;
    }
    let order_id = domain::OrderId::new(intent.metadata.get("order_id")?.parse().ok()?);
    let currency = domain::Currency::parse(&intent.currency).ok()?;
    let charged = Money::new(intent.amount, currency).ok()?;
    if !intent.charges(charged) {
        return None;
    }
    let payment = ExpectedPayment {
        order_id,
        payment_intent_id: intent.id.clone(),
        charged,
        paid_at,
    };
    let mut decision = Decision::new(Outcome::Applied, "order paid".to_string());
    decision.order_id = Some(order_id);
    decision.payment_intent_id = Some(intent.id.clone());
    decision.outbox.push(OutboxMessage {
        topic: "order_paid".to_string(),
        order_id,
    });
    Some((payment, decision))
}

impl WebhookService {
    pub(super) async fn decide(&self, event: &ProviderEvent) -> Result<Decision, UnexpectedError> {
        match (&event.object, event.kind.as_str()) {
            (EventObject::PaymentIntent(intent), kind) => self.decide_intent(kind, intent).await,
            (EventObject::Charge(charge), "charge.refunded") => self.decide_refund(charge).await,
            (_, kind) => Ok(Decision::new(
                Outcome::Ignored,
                format!("kessai does not act on {kind}"),
            )),
        }
    }

    /// The order a PaymentIntent belongs to: by its id first, then by the
    /// `metadata.order_id` we put on every intent (one whose creation we
    /// never recorded, after a crash).
    async fn order_of(
        &self,
        intent_id: &str,
        metadata_order: Option<&String>,
    ) -> Result<Option<Order>, UnexpectedError> {
        let fallback = metadata_order
            .and_then(|raw| raw.parse::<i64>().ok())
            .map(domain::OrderId::new);
        Ok(self
            .orders
            .find_by_payment_intent_or_id(intent_id, fallback)
            .await?)
    }

    async fn decide_intent(
        &self,
        kind: &str,
        intent: &PaymentIntent,
    ) -> Result<Decision, UnexpectedError> {
        let Some(mut order) = self
            .order_of(&intent.id, intent.metadata.get("order_id"))
            .await?
        else {
            tracing::info!(payment_intent = %intent.id, kind, "event for a PaymentIntent that is not ours; ignored");
            let mut decision = Decision::new(
                Outcome::Foreign,
                "no order has this PaymentIntent".to_string(),
            );
            decision.payment_intent_id = Some(intent.id.clone());
            return Ok(decision);
        };
        let is_current = order.state().payment_intent_id.as_deref() == Some(intent.id.as_str());
        match kind {
            "payment_intent.succeeded" => self.decide_success(order, intent).await,
            "payment_intent.payment_failed" => {
                if !is_current || order.status() != OrderStatus::AwaitingPayment {
                    return Ok(Decision::new(
                        Outcome::Ignored,
                        format!("order is {}", order.status()),
                    )
                    .about(&order, Some(&intent.id)));
                }
                let failure = intent.last_payment_error.clone().unwrap_or(PaymentFailure {
                    code: None,
                    message: "the payment failed".into(),
                });
                if order.record_payment_failure(failure).is_err() {
                    return Ok(
                        Decision::new(Outcome::Ignored, None).about(&order, Some(&intent.id))
                    );
                }
                Ok(Decision::new(
                    Outcome::Applied,
                    "payment failed; order stays payable".to_string(),
                )
                .about(&order, Some(&intent.id))
                .saving(order))
            }
            // Konbini and bank transfers stay here for days; the order stays
            // payable-in-progress and is never cancelled for it.
            "payment_intent.processing" => Ok(Decision::new(
                Outcome::Ignored,
                "payment processing".to_string(),
            )
            .about(&order, Some(&intent.id))),
            // A cancelled current intent lets the order create a new one
            // (the intent endpoint replaces it); the order itself stays.
            "payment_intent.canceled" => Ok(Decision::new(
                Outcome::Ignored,
                if is_current {
                    "the order's PaymentIntent was cancelled; a new one will be created"
                } else {
                    "an old PaymentIntent was cancelled"
                }
                .to_string(),
            )
            .about(&order, Some(&intent.id))),
            other => Ok(
                Decision::new(Outcome::Ignored, format!("kessai does not act on {other}"))
                    .about(&order, Some(&intent.id)),
            ),
        }
    }

    async fn decide_success(
        &self,
        mut order: Order,
        intent: &PaymentIntent,
    ) -> Result<Decision, UnexpectedError> {
        let now = self.clock.now();
        let mut outcome = settle_success(&mut order, intent, now);
        if outcome == SuccessOutcome::AmountMismatch {
            // On any doubt, ask Stripe: the event may predate an amount
            // update; act on what the intent is now, and only if Stripe
            // says it succeeded.
            match self.gateway.retrieve_payment_intent(&intent.id).await {
                Ok(fresh) if fresh.status == PaymentIntentStatus::Succeeded => {
                    outcome = settle_success(&mut order, &fresh, now);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, payment_intent = %intent.id, "could not re-check a mismatching PaymentIntent")
                }
            }
        }
        let decision = match outcome {
            SuccessOutcome::Paid => {
                tracing::info!(order_id = %order.id, payment_intent = %intent.id, "order paid");
                return Ok(Decision::new(Outcome::Applied, "order paid".to_string())
                    .about(&order, Some(&intent.id))
                    .notify("order_paid", &order)
                    .saving(order));
            }
            SuccessOutcome::AlreadySettled => {
                Decision::new(Outcome::Ignored, "payment already recorded".to_string())
            }
            SuccessOutcome::NotSucceeded => Decision::new(
                Outcome::Mismatch,
                "the event says succeeded, Stripe does not".to_string(),
            ),
            SuccessOutcome::NotTheOrders => Decision::new(
                Outcome::Foreign,
                "not the order's PaymentIntent".to_string(),
            ),
            SuccessOutcome::AmountMismatch => {
                tracing::error!(
                    order_id = %order.id,
                    payment_intent = %intent.id,
                    charged = intent.amount,
                    charged_currency = %intent.currency,
                    expected = %order.total(),
                    "PaymentIntent amount does not match the order: NOT paid, flagged for review"
                );
                Decision::new(
                    Outcome::Mismatch,
                    format!(
                        "charged {} {}, order total {}",
                        intent.amount,
                        intent.currency,
                        order.total()
                    ),
                )
            }
            SuccessOutcome::NeedsReview => {
                tracing::error!(order_id = %order.id, payment_intent = %intent.id, status = %order.status(), "a payment succeeded for an order that cannot take it: flagged for review");
                Decision::new(
                    Outcome::Review,
                    format!("payment succeeded while the order is {}", order.status()),
                )
            }
        };
        Ok(decision.about(&order, Some(&intent.id)))
    }

    /// The intent as Stripe has it now; an outage is an error (the webhook
    /// answers 500 and Stripe delivers again), never a silent skip.
    async fn ask_stripe(&self, intent_id: &str) -> Result<PaymentIntent, UnexpectedError> {
        self.gateway
            .retrieve_payment_intent(intent_id)
            .await
            .map_err(|e| {
                UnexpectedError(anyhow::anyhow!(
                    "could not ask Stripe about {intent_id}: {e}"
                ))
            })
    }

    /// `charge.refunded`: the order's refunded amount follows the charge's
    /// running total, so partial refunds add up and duplicates do not.
    async fn decide_refund(&self, charge: &Charge) -> Result<Decision, UnexpectedError> {
        let Some(intent_id) = charge.payment_intent.clone() else {
            return Ok(Decision::new(
                Outcome::Foreign,
                "charge without a PaymentIntent".to_string(),
            ));
        };
        // The charge names only its intent. For an intent we never
        // recorded, Stripe's copy of it carries our metadata.order_id.
        let mut fetched = None;
        let mut order = self.orders.find_by_payment_intent(&intent_id).await?;
        if order.is_none() {
            match self.gateway.retrieve_payment_intent(&intent_id).await {
                Ok(intent) => {
                    order = self
                        .order_of(&intent_id, intent.metadata.get("order_id"))
                        .await?;
                    fetched = Some(intent);
                }
                // Stripe does not know it either: certainly not ours.
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    return Err(UnexpectedError(anyhow::anyhow!(
                        "could not ask Stripe about {intent_id}: {e}"
                    )))
                }
            }
        }
        let Some(mut order) = order else {
            let mut decision = Decision::new(
                Outcome::Foreign,
                "no order has this PaymentIntent".to_string(),
            );
            decision.payment_intent_id = Some(intent_id);
            return Ok(decision);
        };
        let mut settled_now = false;
        if order.status().is_payable() {
            // The refund overtook the success event: a refunded charge was
            // paid. Ask Stripe, and settle first, so the end state does not
            // depend on the order the events arrived in. If Stripe cannot
            // be asked, fail: Stripe redelivers, and nothing is lost.
            let intent = match fetched {
                Some(intent) => intent,
                None => self.ask_stripe(&intent_id).await?,
            };
            if intent.status == PaymentIntentStatus::Succeeded {
                settled_now =
                    settle_success(&mut order, &intent, self.clock.now()) == SuccessOutcome::Paid;
            }
        }
        let refunded = match domain::Currency::parse(&charge.currency)
            .map(|c| Money::new(charge.amount_refunded, c))
        {
            Ok(Ok(money)) => money,
            _ => {
                return Ok(
                    Decision::new(Outcome::Mismatch, "unreadable refund amount".to_string())
                        .about(&order, Some(&intent_id)),
                )
            }
        };
        let before = order.state().refunded_amount;
        let status_before = order.status();
        if order.record_refunds(refunded).is_err() {
            if settled_now {
                return Ok(Decision::new(Outcome::Applied, "order paid".to_string())
                    .about(&order, Some(&intent_id))
                    .notify("order_paid", &order)
                    .saving(order));
            }
            let outcome = if refunded.currency() != order.total().currency()
                || refunded.minor_units() > order.total().minor_units()
            {
                Outcome::Mismatch
            } else {
                Outcome::Ignored
            };
            return Ok(Decision::new(
                outcome,
                format!(
                    "refund of {refunded} does not apply to a {} order",
                    order.status()
                ),
            )
            .about(&order, Some(&intent_id)));
        }
        if order.state().refunded_amount == before
            && order.status() == status_before
            && !settled_now
        {
            return Ok(
                Decision::new(Outcome::Ignored, "refund already recorded".to_string())
                    .about(&order, Some(&intent_id)),
            );
        }
        let mut decision = Decision::new(
            Outcome::Applied,
            format!("refunded {}", order.state().refunded_amount),
        )
        .about(&order, Some(&intent_id));
        if settled_now {
            decision = decision.notify("order_paid", &order);
        }
        if order.status() == OrderStatus::Refunded && status_before != OrderStatus::Refunded {
            decision = decision.notify("order_refunded", &order);
        }
        Ok(decision.saving(order))
    }
}

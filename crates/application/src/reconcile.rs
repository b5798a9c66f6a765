//! Reconciliation: for orders that await payment and have heard nothing
//! (a webhook lost, Stripe's delivery down for an hour), ask Stripe and
//! apply exactly what a webhook would, through the same settlement rule.
//! Also creates the Stripe Customers that could not be created at
//! registration.
//!
//! Every order is checked on a schedule that backs off (15 s, 1 min,
//! 3 min, 1 h, then daily) and ends: after the last check the order is
//! left to a human, logged and counted. Several instances can run it at
//! once: an order is claimed with the same lease as intent creation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Duration;
use domain::ports::{OrderRepository, UserRepository};
use domain::{Order, OrderStatus};

use crate::payments::{CustomerAccounts, Settlement};
use crate::ports::payment_gateway::{PaymentGateway, PaymentIntentStatus};
use crate::ports::Clock;
use crate::UnexpectedError;

/// Seconds to wait after each check that found the payment still open.
const SCHEDULE_SECONDS: [i64; 10] = [
    15, 60, 180, 3600, 86_400, 86_400, 86_400, 86_400, 86_400, 86_400,
];

#[derive(Debug, Clone, Copy)]
pub struct ReconcileSettings {
    /// An order is checked once it has been quiet this long.
    pub quiet_for: Duration,
    /// Orders handled per pass.
    pub batch: i64,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            quiet_for: Duration::minutes(2),
            batch: 100,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub checked: usize,
    pub paid: usize,
    pub still_open: usize,
    /// Checked for the last time: a human must look.
    pub given_up: usize,
    pub failed: usize,
    pub customers_created: usize,
}

#[derive(Clone)]
pub struct Reconciler {
    orders: Arc<dyn OrderRepository>,
    users: Arc<dyn UserRepository>,
    gateway: Arc<dyn PaymentGateway>,
    customers: CustomerAccounts,
    settlement: Settlement,
    clock: Arc<dyn Clock>,
    settings: ReconcileSettings,
    owner: Arc<str>,
    passes: Arc<AtomicU64>,
}

impl Reconciler {
    pub fn new(
        orders: Arc<dyn OrderRepository>,
        users: Arc<dyn UserRepository>,
        gateway: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
        settings: ReconcileSettings,
        instance: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            customers: CustomerAccounts::new(users.clone(), gateway.clone()),
            settlement: Settlement::new(orders.clone(), clock.clone()),
            orders,
            users,
            gateway,
            clock,
            settings,
            owner: instance.into(),
            passes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// One pass over what is due.
    #[tracing::instrument(skip_all)]
    pub async fn run_once(&self) -> Result<ReconcileReport, UnexpectedError> {
        let mut report = ReconcileReport::default();
        let now = self.clock.now();
        let owner = format!(
            "{}-reconcile-{}",
            self.owner,
            self.passes.fetch_add(1, Ordering::Relaxed)
        );
        let due = self
            .orders
            .due_for_reconciliation(now - self.settings.quiet_for, now, self.settings.batch)
            .await?;
        for order in due {
            // One worker per order at a time, across instances.
            if !self
                .orders
                .claim_payment_lease(&order, &owner, now, now + Duration::seconds(60))
                .await?
            {
                continue;
            }
            let id = order.id;
            let result = self.check(order, &mut report).await;
            self.orders.release_payment_lease(id, &owner).await?;
            if let Err(error) = result {
                report.failed += 1;
                tracing::warn!(order_id = %id, %error, "reconciliation check failed; will retry");
            }
        }
        for user in self
            .users
            .without_stripe_customer(self.settings.batch)
            .await?
        {
            match self.customers.ensure(&user).await {
                Ok(_) => report.customers_created += 1,
                Err(error) => {
                    tracing::warn!(user_id = %user.id, %error, "customer still cannot be created")
                }
            }
        }
        if report != ReconcileReport::default() {
            tracing::info!(?report, "reconciliation pass");
        }
        metrics::counter!("kessai_reconcile_paid_total").increment(report.paid as u64);
        metrics::counter!("kessai_reconcile_given_up_total").increment(report.given_up as u64);
        metrics::counter!("kessai_reconcile_failed_total").increment(report.failed as u64);
        Ok(report)
    }

    #[tracing::instrument(skip_all, fields(order_id = %order.id, payment_intent = tracing::field::Empty))]
    async fn check(
        &self,
        order: Order,
        report: &mut ReconcileReport,
    ) -> Result<(), UnexpectedError> {
        let Some(intent_id) = order.state().payment_intent_id.clone() else {
            return Ok(());
        };
        tracing::Span::current().record("payment_intent", intent_id.as_str());
        let id = order.id;
        let intent = self
            .gateway
            .retrieve_payment_intent(&intent_id)
            .await
            .map_err(|e| {
                UnexpectedError(anyhow::anyhow!("asking Stripe about {intent_id}: {e}"))
            })?;
        report.checked += 1;
        if intent.status == PaymentIntentStatus::Succeeded {
            let settled = self.settlement.apply_success(order, &intent).await?;
            if settled.status() == OrderStatus::Paid {
                report.paid += 1;
                tracing::info!(order_id = %settled.id, payment_intent = %intent_id, "reconciliation found the order paid");
                return Ok(());
            }
            // A mismatch or review case: apply_success logged it; leave it
            // on the schedule so it is not lost.
        }
        let checks = self.orders.reconcile_checks(id).await? + 1;
        let now = self.clock.now();
        match SCHEDULE_SECONDS.get(usize::try_from(checks - 1).unwrap_or(usize::MAX)) {
            Some(wait) => {
                report.still_open += 1;
                self.orders
                    .schedule_next_check(id, now + Duration::seconds(*wait), checks)
                    .await?;
            }
            None => {
                report.given_up += 1;
                tracing::error!(order_id = %id, payment_intent = %intent_id, checks, "still awaiting payment after the last scheduled check: needs a human");
                self.orders
                    .schedule_next_check(id, chrono::DateTime::<chrono::Utc>::MAX_UTC, checks)
                    .await?;
            }
        }
        Ok(())
    }
}

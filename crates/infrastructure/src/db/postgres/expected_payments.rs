//! PostgreSQL: the common webhook without reading its order first.
//!
//! A burst of `payment_intent.succeeded` events after a sale opens is
//! nearly all orders awaiting exactly the payment the event reports. Read
//! first, each costs a round trip for the look-up, and PostgreSQL and
//! kessai CPU for it, before the write; at 16 connections that look-up was
//! a quarter of a webhook's time (see `bench/README.md`). Here the write
//! carries the condition instead ([`ExpectedPayment::is_expected_by`]): one
//! statement pays the orders that meet it and records their events, for a
//! whole batch, in one round trip.
//!
//! The statement never guesses: an order not as expected (paid already,
//! cancelled, another intent, another total), an event known before, or
//! any failure at all writes nothing for that event and answers `None`,
//! and the caller reads the order and decides as for any event. So an
//! event recorded meanwhile by another batch, which the statement cannot
//! take back its order update for, makes the statement divide by zero,
//! which aborts it, and every event of the batch goes the reading way.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use domain::ports::{EventRecorded, RepoResult};
use sqlx::Postgres;

use crate::db::group_commit::BatchSink;
use crate::db::kept::KeptConnections;
use crate::db::repositories::bind_event;
use crate::db::rows::value_rows;

use super::event_statement::queue_messages;
use crate::db::writes::PaymentWrite;

/// Parameters per event (see [`statement`]), after its position.
const PAYMENT_COLUMNS: usize = 15;

/// The expected-payment writer's database on PostgreSQL.
pub(crate) struct PaymentStatements(pub(crate) Arc<KeptConnections<Postgres>>);

#[async_trait]
impl BatchSink<PaymentWrite, Option<EventRecorded>> for PaymentStatements {
    async fn write_batch(
        &self,
        writes: &[PaymentWrite],
    ) -> Result<Vec<RepoResult<Option<EventRecorded>>>, sqlx::Error> {
        let mut connection = self.0.take().await?;
        let firsts = first_copies(writes);
        let mut outcomes: Vec<RepoResult<Option<EventRecorded>>> =
            (0..writes.len()).map(|_| Ok(None)).collect();
        match write_in_one_statement(&mut connection, writes, &firsts).await {
            Ok(rows) => {
                self.0.put_back(connection);
                for (index, recorded, known) in rows {
                    let Some(outcome) = usize::try_from(index)
                        .ok()
                        .and_then(|index| outcomes.get_mut(index))
                    else {
                        continue;
                    };
                    *outcome = Ok(if recorded {
                        Some(EventRecorded::Recorded)
                    } else if known {
                        Some(EventRecorded::Duplicate)
                    } else {
                        None
                    });
                }
            }
            // Nothing was written (the statement is its own transaction):
            // every event of the batch goes the reading way, which is exact.
            // The connection goes back to the pool, which tests it.
            Err(error) => {
                tracing::debug!(%error, events = writes.len(), "expected payments written the reading way");
            }
        }
        Ok(outcomes)
    }
}

/// The writes the statement carries: the first of each event id and of
/// each order. A later one answers `None` and goes the reading way (a
/// second delivery then finds the first recorded; a second event of one
/// order sees what the first did to it).
fn first_copies(writes: &[PaymentWrite]) -> Vec<usize> {
    let mut events = HashSet::new();
    let mut orders = HashSet::new();
    (0..writes.len())
        .filter(|&index| {
            let write = &writes[index];
            // Both checked, so neither set misses an entry for a skipped write.
            let new_event = events.insert(write.event.id.as_str());
            let new_order = orders.insert(write.payment.order_id);
            new_event && new_order
        })
        .collect()
}

async fn write_in_one_statement(
    connection: &mut sqlx::PgConnection,
    writes: &[PaymentWrite],
    firsts: &[usize],
) -> Result<Vec<(i64, bool, bool)>, sqlx::Error> {
    if firsts.is_empty() {
        return Ok(Vec::new());
    }
    let messages: Vec<(&PaymentWrite, &domain::ports::OutboxMessage)> = firsts
        .iter()
        .map(|&index| &writes[index])
        .flat_map(|write| write.outbox.iter().map(move |message| (write, message)))
        .collect();
    let sql = statement(firsts.len(), messages.len());
    let mut query = sqlx::query_as::<_, (i64, bool, bool, i32)>(&sql);
    for &index in firsts {
        let write = &writes[index];
        let payment = &write.payment;
        query = bind_event!(query.bind(index as i64), &write.event)
            .bind(payment.order_id.get())
            .bind(&payment.payment_intent_id)
            .bind(payment.charged.minor_units())
            .bind(payment.charged.currency().code())
            .bind(payment.paid_at)
            .bind(write.now);
    }
    for (write, message) in &messages {
        query = query
            .bind(&write.event.id)
            .bind(&message.topic)
            .bind(message.order_id.get())
            .bind(write.now);
    }
    let rows = query.fetch_all(&mut *connection).await?;
    Ok(rows
        .into_iter()
        .map(|(index, recorded, known, _)| (index, recorded, known))
        .collect())
}

/// The statement for `payments` events and `messages` outbox messages.
/// `v` holds, per event, its position in the batch, its nine columns and
/// the payment expected; `m` the messages.
fn statement(payments: usize, messages: usize) -> String {
    // The condition is `ExpectedPayment::is_expected_by`, and the update
    // is what `settle_success` then does to the order (the application's
    // `expected_payments_settle_as_decided` holds the two together).
    let mut sql = format!(
        "WITH v (n, event_id, type, created, received_at, outcome, detail, event_order_id, \
         event_payment_intent_id, payload, order_id, payment_intent_id, amount, currency, \
         paid_at, updated_at) AS (VALUES {}), \
         paid AS (UPDATE orders SET status = 'paid', paid_at = v.paid_at, \
         last_payment_error_code = NULL, last_payment_error_message = NULL, \
         updated_at = v.updated_at, version = orders.version + 1 \
         FROM v WHERE orders.id = v.order_id AND orders.status = 'awaiting_payment' \
         AND orders.payment_intent_id = v.payment_intent_id \
         AND orders.total = v.amount AND orders.currency = v.currency \
         AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.id = v.event_id) \
         RETURNING v.event_id), \
         inserted AS (INSERT INTO webhook_events (id, type, created, received_at, outcome, detail, \
         order_id, payment_intent_id, payload) \
         SELECT event_id, type, created, received_at, outcome, detail, event_order_id, \
         event_payment_intent_id, payload FROM v WHERE v.event_id IN (SELECT event_id FROM paid) \
         ORDER BY event_id ON CONFLICT (id) DO NOTHING RETURNING id)",
        value_rows(payments, 1 + PAYMENT_COLUMNS)
    );
    sql.push_str(&queue_messages(
        1 + payments * (1 + PAYMENT_COLUMNS),
        messages,
    ));
    // Per event: recorded now; known before the statement (its snapshot);
    // and a division by zero, aborting everything, for an order paid
    // whose event another batch recorded meanwhile.
    sql.push_str(
        " SELECT v.n, v.event_id IN (SELECT id FROM inserted), \
         EXISTS (SELECT 1 FROM webhook_events e WHERE e.id = v.event_id), \
         1 / CASE WHEN v.event_id IN (SELECT event_id FROM paid) \
         AND v.event_id NOT IN (SELECT id FROM inserted) THEN 0 ELSE 1 END FROM v",
    );
    sql
}

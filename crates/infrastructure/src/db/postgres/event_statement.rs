//! PostgreSQL: a batch of webhook events in one statement.
//!
//! The batch as [`super::write_events`] writes it is a transaction of five
//! round trips (`BEGIN`, the events, the orders, the outbox, `COMMIT`),
//! and at 16 connections a webhook mostly waits on them. Here the common
//! batch (every event new, every order still at the version it was read
//! at, no order saved twice) is one data-modifying statement, which
//! PostgreSQL commits on its own: one round trip.
//!
//! One statement cannot take back an event row it inserted, so it orders
//! its parts the other way round: the orders are saved first (only at the
//! version they were read at, only for events not yet recorded), then the
//! events are inserted (only those without an order to save, or whose
//! order was just saved), then their outbox messages. A batch for which
//! that is not the whole story (an order that moved on, an event recorded
//! meanwhile, an event a concurrent batch is inserting) makes the
//! statement divide by zero, which aborts all of it, and the batch is
//! written again by [`super::write_events`], whose outcomes (`Conflict`,
//! `Duplicate`) are exact. That path is what a retried delivery or a race
//! between two events of one order costs; a burst of fresh events never
//! takes it.
//!
//! Both ways lock a batch's orders before its events (the statement
//! saves every order before it inserts an event: the uncorrelated
//! `count(*)` over `saved` runs once, first), so two batches, one written
//! each way, cannot wait for each other in a circle.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::ports::{EventRecorded, OutboxMessage, RepoResult};
use domain::RepositoryError;
use sqlx::{PgConnection, Postgres};

use crate::db::group_commit::BatchSink;
use crate::db::kept::KeptConnections;
use crate::db::repositories::bind_event;
use crate::db::rows::{value_rows, value_rows_from, SAVE_ORDERS_FROM_V};
use crate::db::writes::EventWrite;

/// The SQLSTATE of the division by zero that aborts the statement.
const DIVISION_BY_ZERO: &str = "22012";
/// Parameters per event (see [`statement`]) and per outbox message.
const EVENT_COLUMNS: usize = 22;
const MESSAGE_COLUMNS: usize = 4;

/// The event writer's database on PostgreSQL.
pub(crate) struct EventStatements(pub(crate) Arc<KeptConnections<Postgres>>);

#[async_trait]
impl BatchSink<EventWrite, EventRecorded> for EventStatements {
    async fn write_batch(
        &self,
        writes: &[EventWrite],
    ) -> Result<Vec<RepoResult<EventRecorded>>, sqlx::Error> {
        let mut connection = self.0.take().await?;
        if let Some(firsts) = first_copies(writes) {
            match write_in_one_statement(&mut connection, writes, &firsts).await {
                Ok(outcomes) => {
                    self.0.put_back(connection);
                    return Ok(outcomes);
                }
                // The statement took itself back: write it the exact way.
                Err(sqlx::Error::Database(error))
                    if error.code().as_deref() == Some(DIVISION_BY_ZERO) => {}
                Err(error) => return Err(error),
            }
        }
        let mut tx = sqlx::Connection::begin(&mut *connection).await?;
        // Orders before events, as the one statement takes them: batches
        // taking both kinds of lock in opposite orders deadlock.
        let mut orders: Vec<i64> = writes
            .iter()
            .filter_map(|write| write.order.as_ref().map(|order| order.id.get()))
            .collect();
        orders.sort_unstable();
        orders.dedup();
        if !orders.is_empty() {
            sqlx::query("SELECT id FROM orders WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                .bind(&orders)
                .fetch_all(&mut *tx)
                .await?;
        }
        let outcomes = super::write_events(&mut tx, writes).await?;
        tx.commit().await?;
        self.0.put_back(connection);
        Ok(outcomes)
    }
}

/// The index of the first write of each event id, in batch order; `None`
/// when two of them save the same order (the second must see the first's
/// save, which one statement cannot show it).
fn first_copies(writes: &[EventWrite]) -> Option<Vec<usize>> {
    let mut seen_events = std::collections::HashSet::new();
    let mut seen_orders = std::collections::HashSet::new();
    let mut firsts = Vec::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        if !seen_events.insert(write.event.id.as_str()) {
            continue;
        }
        if let Some(order) = &write.order {
            if !seen_orders.insert(order.id) {
                return None;
            }
        }
        firsts.push(index);
    }
    Some(firsts)
}

async fn write_in_one_statement(
    connection: &mut PgConnection,
    writes: &[EventWrite],
    firsts: &[usize],
) -> Result<Vec<RepoResult<EventRecorded>>, sqlx::Error> {
    let messages: Vec<(&str, &OutboxMessage, DateTime<Utc>)> = firsts
        .iter()
        .map(|&index| &writes[index])
        .flat_map(|write| {
            write
                .outbox
                .iter()
                .map(move |message| (write.event.id.as_str(), message, write.now))
        })
        .collect();
    let sql = statement(firsts.len(), messages.len());
    let mut query = sqlx::query_as::<_, (i64, bool, i32)>(&sql);
    for &index in firsts {
        let write = &writes[index];
        query = bind_event!(query.bind(index as i64), &write.event);
        let order = write.order.as_ref();
        let state = order.map(|order| order.state());
        let (error_code, error_message) = state.map_or((None, None), super::payment_error_columns);
        query = query
            .bind(order.map(|order| order.id.get()))
            .bind(order.map(|order| order.version()))
            .bind(state.map(|s| s.status.as_str()))
            .bind(state.and_then(|s| s.payment_intent_id.as_deref()))
            .bind(state.and_then(|s| s.paid_at))
            .bind(state.and_then(|s| s.cancelled_at))
            .bind(state.and_then(|s| s.cancel_reason.as_deref()))
            .bind(state.map(|s| s.refunded_amount.minor_units()))
            .bind(error_code)
            .bind(error_message)
            .bind(write.now)
            .bind(state.map(|s| s.payment_attempts));
    }
    for (event_id, message, now) in &messages {
        query = query
            .bind(*event_id)
            .bind(&message.topic)
            .bind(message.order_id.get())
            .bind(*now);
    }
    let rows = query.fetch_all(&mut *connection).await?;

    // A first copy is recorded or, without an order to save, a duplicate
    // (its id was known, or a concurrent batch inserted it first); later
    // copies of an event in the batch are duplicates of the first.
    let mut recorded: HashMap<&str, EventRecorded> = HashMap::with_capacity(rows.len());
    let mut is_first = vec![false; writes.len()];
    for (index, inserted, _settled) in rows {
        let Some(index) = usize::try_from(index).ok().filter(|&i| i < writes.len()) else {
            continue;
        };
        let write = &writes[index];
        is_first[index] = true;
        let outcome = if inserted {
            EventRecorded::Recorded
        } else {
            EventRecorded::Duplicate
        };
        recorded.insert(write.event.id.as_str(), outcome);
    }
    Ok(writes
        .iter()
        .enumerate()
        .map(
            |(index, write)| match recorded.get(write.event.id.as_str()) {
                Some(outcome) if is_first[index] => Ok(*outcome),
                Some(_) => Ok(EventRecorded::Duplicate),
                None => Err(RepositoryError::Unexpected(
                    format!("event {} had no row in its batch's answer", write.event.id).into(),
                )),
            },
        )
        .collect())
}

/// The part of a batch statement that queues the outbox messages of the
/// events it inserted: `messages` rows of [`MESSAGE_COLUMNS`] parameters
/// (event id, topic, order id, created at) from `$first`, after a CTE
/// `inserted` that returns the inserted events' `id`. Empty without
/// messages.
pub(super) fn queue_messages(first: usize, messages: usize) -> String {
    if messages == 0 {
        return String::new();
    }
    format!(
        ", m (event_id, topic, order_id, created_at) AS (VALUES {}), \
         queued AS (INSERT INTO outbox (topic, order_id, created_at) \
         SELECT m.topic, m.order_id, m.created_at FROM m \
         WHERE m.event_id IN (SELECT id FROM inserted))",
        value_rows_from(first, messages, MESSAGE_COLUMNS)
    )
}

/// The statement for `events` first copies and `messages` outbox messages.
/// `v` holds, per event, its position in the batch, its nine columns and
/// the order state to save (all NULL without one); `m` the messages.
fn statement(events: usize, messages: usize) -> String {
    let mut sql = format!(
        "WITH v (n, event_id, type, created, received_at, outcome, detail, event_order_id, \
         event_payment_intent_id, payload, order_id, version, status, payment_intent_id, paid_at, \
         cancelled_at, cancel_reason, refunded_amount, last_payment_error_code, \
         last_payment_error_message, updated_at, payment_attempts) AS (VALUES {}), \
         saved AS ({SAVE_ORDERS_FROM_V} FROM v WHERE orders.id = v.order_id AND orders.version = v.version \
         AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.id = v.event_id) \
         RETURNING v.event_id), \
         inserted AS (INSERT INTO webhook_events (id, type, created, received_at, outcome, detail, \
         order_id, payment_intent_id, payload) \
         SELECT event_id, type, created, received_at, outcome, detail, event_order_id, \
         event_payment_intent_id, payload FROM v \
         WHERE (SELECT count(*) FROM saved) >= 0 \
         AND (v.order_id IS NULL OR v.event_id IN (SELECT event_id FROM saved)) \
         ORDER BY event_id ON CONFLICT (id) DO NOTHING RETURNING id)",
        value_rows(events, EVENT_COLUMNS)
    );
    sql.push_str(&queue_messages(1 + events * EVENT_COLUMNS, messages));
    // `settled` divides by zero, aborting the statement, when an event
    // with an order to save did not both save it and get recorded.
    sql.push_str(
        " SELECT v.n, v.event_id IN (SELECT id FROM inserted), \
         1 / CASE WHEN v.order_id IS NOT NULL AND NOT (\
         v.event_id IN (SELECT event_id FROM saved) \
         AND v.event_id IN (SELECT id FROM inserted)) THEN 0 ELSE 1 END FROM v",
    );
    sql
}

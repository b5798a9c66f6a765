//! SQLite reads on the hot paths, run where they are asked for.
//!
//! SQLite is a library in this process, not a server: a read by primary
//! key takes microseconds. sqlx runs each SQLite connection on a thread of
//! its own, so every query there costs two thread switches (to the
//! connection's thread and back), and under load those switches were half
//! of kessai's CPU time (perf, in the bench). The reads every request
//! makes (the session's user, the orders with their lines) run here
//! instead, on the calling thread, over a few read-only connections kept
//! between calls. They are short indexed reads, and in WAL mode a reader
//! never waits for the writer, so they do not stall the runtime. Writes,
//! and reads off the hot paths, stay on sqlx.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use domain::RepositoryError;
use rusqlite::{Connection, OpenFlags, Row};

use super::rows::{
    OrderLineRow, OrderRow, SessionUserRow, UserRow, ORDER_WITH_LINES, SESSION_USER,
};

/// Idle connections kept for the next read; more are opened when more
/// threads read at once (at most one per thread: a read never yields).
const IDLE_CONNECTIONS: usize = 8;

pub(crate) struct InlineReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

fn read_error(error: rusqlite::Error) -> RepositoryError {
    RepositoryError::unexpected(error)
}

impl InlineReads {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // In WAL mode a reader waits only while the WAL index is rebuilt
        // (after a crash); never for long.
        connection.busy_timeout(Duration::from_millis(500))?;
        Ok(connection)
    }

    /// Runs `read` on an idle connection (or a new one), then keeps it.
    fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, RepositoryError> {
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let connection = match reused {
            Some(connection) => connection,
            None => self.open().map_err(read_error)?,
        };
        let result = read(&connection).map_err(read_error);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(connection);
            }
        }
        result
    }

    pub fn session_user(
        &self,
        session_id: &str,
    ) -> Result<Option<SessionUserRow>, RepositoryError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(SESSION_USER)?;
            let mut rows = statement.query([session_id])?;
            rows.next()?.map(session_user_row).transpose()
        })
    }

    /// The orders (with their lines) that `filter` selects, ordered by
    /// `order_by`: as `ORDER_WITH_LINES` documents.
    pub fn orders(
        &self,
        filter: &str,
        order_by: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Vec<OrderLineRow>, RepositoryError> {
        let sql = format!("{ORDER_WITH_LINES} WHERE {filter} ORDER BY {order_by}");
        self.with(|connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement.query_map([value], order_line_row)?;
            rows.collect()
        })
    }
}

/// Timestamps as sqlx stores them in SQLite (RFC 3339), or SQLite's own
/// `YYYY-MM-DD HH:MM:SS` (UTC).
fn timestamp(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(index)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(&text, "%F %T%.f").map(|t| t.and_utc()))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })
}

fn optional_timestamp(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get_ref(index)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => timestamp(row, index).map(Some),
    }
}

/// A row of `SESSION_USER`, by position.
fn session_user_row(row: &Row<'_>) -> rusqlite::Result<SessionUserRow> {
    Ok(SessionUserRow {
        expires_at: timestamp(row, 0)?,
        revoked_at: optional_timestamp(row, 1)?,
        user: UserRow {
            id: row.get(2)?,
            email: row.get(3)?,
            name: row.get(4)?,
            password_hash: row.get(5)?,
            stripe_customer_id: row.get(6)?,
            created_at: timestamp(row, 7)?,
        },
    })
}

/// A row of `ORDER_WITH_LINES`, by position.
fn order_line_row(row: &Row<'_>) -> rusqlite::Result<OrderLineRow> {
    Ok(OrderLineRow {
        order: OrderRow {
            id: row.get(0)?,
            user_id: row.get(1)?,
            order_number: row.get(2)?,
            status: row.get(3)?,
            currency: row.get(4)?,
            subtotal: row.get(5)?,
            tax: row.get(6)?,
            shipping_fee: row.get(7)?,
            total: row.get(8)?,
            notes: row.get(9)?,
            payment_intent_id: row.get(10)?,
            payment_attempts: row.get(11)?,
            paid_at: optional_timestamp(row, 12)?,
            cancelled_at: optional_timestamp(row, 13)?,
            cancel_reason: row.get(14)?,
            refunded_amount: row.get(15)?,
            last_payment_error_code: row.get(16)?,
            last_payment_error_message: row.get(17)?,
            created_at: timestamp(row, 18)?,
            version: row.get(19)?,
        },
        line_product_id: row.get(20)?,
        line_product_name: row.get(21)?,
        line_unit_price: row.get(22)?,
        line_quantity: row.get(23)?,
        line_subtotal: row.get(24)?,
    })
}

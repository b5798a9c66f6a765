//! Row types as both databases return them, and their conversion into
//! domain values. A row that breaks a domain rule is reported, not trusted.

use chrono::{DateTime, Utc};
use domain::order::OrderState;
use domain::{
    Currency, DisplayName, Email, Money, NewOrder, Order, OrderId, OrderLine, OrderNumber,
    OrderStatus, PasswordHash, PaymentFailure, Product, ProductId, Quantity, RepositoryError,
    Session, SessionId, Sku, User, UserId,
};

fn corrupt(what: &str, detail: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Unexpected(format!("stored {what} is invalid: {detail}").into())
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub password_hash: String,
    pub stripe_customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = RepositoryError;
    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        Ok(User {
            id: UserId::new(row.id),
            email: Email::parse(&row.email).map_err(|e| corrupt("user", e))?,
            name: DisplayName::parse(row.name).map_err(|e| corrupt("user", e))?,
            password_hash: PasswordHash::new(row.password_hash),
            stripe_customer_id: row.stripe_customer_id,
            created_at: row.created_at,
        })
    }
}

/// A session's validity and its user, by session id: one row of
/// [`SessionUserRow`].
pub(crate) const SESSION_USER: &str = "SELECT s.expires_at, s.revoked_at, u.id, u.email, u.name, \
     u.password_hash, u.stripe_customer_id, u.created_at \
     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1";

/// A session's validity and its user, read together.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionUserRow {
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    #[sqlx(flatten)]
    pub user: UserRow,
}

impl SessionUserRow {
    /// As [`SessionRow::into_active`]: checked here, not in SQL.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub id: String,
    pub user_id: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl SessionRow {
    /// The session, if it is still usable at `now`. Checked here rather than
    /// in SQL so both databases compare timestamps the same way.
    pub fn into_active(self, now: DateTime<Utc>) -> Option<Session> {
        (self.revoked_at.is_none() && self.expires_at > now).then(|| Session {
            id: SessionId::new(self.id),
            user_id: UserId::new(self.user_id),
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ProductRow {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub currency: String,
    pub active: bool,
}

impl TryFrom<ProductRow> for Product {
    type Error = RepositoryError;
    fn try_from(row: ProductRow) -> Result<Self, Self::Error> {
        let currency = Currency::parse(&row.currency).map_err(|e| corrupt("product", e))?;
        Ok(Product {
            id: ProductId::new(row.id),
            sku: Sku::parse(&row.sku).map_err(|e| corrupt("product", e))?,
            name: row.name,
            price: Money::new(row.price, currency).map_err(|e| corrupt("product", e))?,
            active: row.active,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OrderRow {
    pub id: i64,
    pub user_id: i64,
    pub order_number: String,
    pub status: String,
    pub currency: String,
    pub subtotal: i64,
    pub tax: i64,
    pub shipping_fee: i64,
    pub total: i64,
    pub notes: Option<String>,
    pub payment_intent_id: Option<String>,
    pub payment_attempts: i64,
    pub paid_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub refunded_amount: i64,
    pub last_payment_error_code: Option<String>,
    pub last_payment_error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub version: i64,
}

pub(crate) const ORDER_COLUMNS: &str = "id, user_id, order_number, status, currency, subtotal, \
     tax, shipping_fee, total, notes, payment_intent_id, payment_attempts, paid_at, cancelled_at, cancel_reason, \
     refunded_amount, last_payment_error_code, last_payment_error_message, created_at, version";

/// `UPDATE orders SET …` from a `VALUES` list named `v` that has the
/// order state's columns under their own names, bumping the version;
/// callers add `FROM v WHERE …` (matching `orders.version = v.version`).
pub(crate) const SAVE_ORDERS_FROM_V: &str = "UPDATE orders SET status = v.status, \
     payment_intent_id = v.payment_intent_id, paid_at = v.paid_at, \
     cancelled_at = v.cancelled_at, cancel_reason = v.cancel_reason, \
     refunded_amount = v.refunded_amount, \
     last_payment_error_code = v.last_payment_error_code, \
     last_payment_error_message = v.last_payment_error_message, \
     updated_at = v.updated_at, payment_attempts = v.payment_attempts, \
     version = orders.version + 1";

/// The columns of an order read together with its lines (`o` the order,
/// `i` its lines), in the positions [`super::inline_reads`] reads them by.
macro_rules! order_line_columns {
    () => {
        "o.id, o.user_id, o.order_number, o.status, \
         o.currency, o.subtotal, o.tax, o.shipping_fee, o.total, o.notes, o.payment_intent_id, \
         o.payment_attempts, o.paid_at, o.cancelled_at, o.cancel_reason, o.refunded_amount, \
         o.last_payment_error_code, o.last_payment_error_message, o.created_at, o.version, \
         i.product_id AS line_product_id, i.product_name AS line_product_name, \
         i.unit_price AS line_unit_price, i.quantity AS line_quantity, i.subtotal AS line_subtotal"
    };
}

/// `SELECT` and `FROM` of an order read together with its lines: one
/// row per line (one with no line data for an order without lines),
/// ordered so that an order's rows are adjacent and its lines in order.
/// Callers add `WHERE` and `ORDER BY …, i.line_no`.
pub(crate) const ORDER_WITH_LINES: &str = concat!(
    "SELECT ",
    order_line_columns!(),
    " FROM orders o LEFT JOIN order_items i ON i.order_id = o.id"
);

/// PostgreSQL: many webhook look-ups in one query. `$1` the PaymentIntent
/// ids, `$2` the fallback order ids (or NULL), pairwise; each lookup's
/// order (by intent, else by fallback id) with its lines, tagged with the
/// lookup's position (from 1) as `lookup`.
pub(crate) const ORDERS_BY_LOOKUP: &str = concat!(
    "SELECT ",
    order_line_columns!(),
    ", k.n AS lookup \
     FROM UNNEST($1::text[], $2::int8[]) WITH ORDINALITY AS k(intent, fallback, n) \
     JOIN orders o ON o.id = COALESCE(\
     (SELECT id FROM orders WHERE payment_intent_id = k.intent), k.fallback) \
     LEFT JOIN order_items i ON i.order_id = o.id \
     ORDER BY k.n, i.line_no"
);

/// A row of [`ORDER_WITH_LINES`].
#[derive(sqlx::FromRow)]
pub(crate) struct OrderLineRow {
    #[sqlx(flatten)]
    pub order: OrderRow,
    pub line_product_id: Option<i64>,
    pub line_product_name: Option<String>,
    pub line_unit_price: Option<i64>,
    pub line_quantity: Option<i64>,
    pub line_subtotal: Option<i64>,
}

/// A row of [`ORDERS_BY_LOOKUP`].
#[derive(sqlx::FromRow)]
pub(crate) struct LookupLineRow {
    pub lookup: i64,
    #[sqlx(flatten)]
    pub line: OrderLineRow,
}

/// Folds [`ORDER_WITH_LINES`] rows into orders, keeping their order.
pub(crate) fn orders_from_lines(rows: Vec<OrderLineRow>) -> Result<Vec<Order>, RepositoryError> {
    let mut grouped: Vec<(OrderRow, Vec<OrderItemRow>)> = Vec::new();
    for row in rows {
        let item = match (
            row.line_product_id,
            row.line_product_name,
            row.line_unit_price,
            row.line_quantity,
            row.line_subtotal,
        ) {
            (
                Some(product_id),
                Some(product_name),
                Some(unit_price),
                Some(quantity),
                Some(subtotal),
            ) => Some(OrderItemRow {
                order_id: row.order.id,
                product_id,
                product_name,
                unit_price,
                quantity,
                subtotal,
            }),
            _ => None,
        };
        match grouped.last_mut() {
            Some((order, items)) if order.id == row.order.id => items.extend(item),
            _ => grouped.push((row.order, item.into_iter().collect())),
        }
    }
    grouped
        .into_iter()
        .map(|(order, items)| order.into_order(items))
        .collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct OrderItemRow {
    pub order_id: i64,
    pub product_id: i64,
    pub product_name: String,
    pub unit_price: i64,
    pub quantity: i64,
    pub subtotal: i64,
}

impl OrderRow {
    pub fn into_order(self, items: Vec<OrderItemRow>) -> Result<Order, RepositoryError> {
        let bad = |e: &dyn std::fmt::Display| corrupt("order", e);
        let currency = Currency::parse(&self.currency).map_err(|e| bad(&e))?;
        let money = |v: i64| Money::new(v, currency).map_err(|e| bad(&e));
        let lines = items
            .into_iter()
            .map(|item| {
                Ok(OrderLine {
                    product_id: ProductId::new(item.product_id),
                    product_name: item.product_name,
                    unit_price: money(item.unit_price)?,
                    quantity: Quantity::new(item.quantity).map_err(|e| bad(&e))?,
                    subtotal: money(item.subtotal)?,
                })
            })
            .collect::<Result<Vec<_>, RepositoryError>>()?;
        let placed = NewOrder {
            user_id: UserId::new(self.user_id),
            lines,
            subtotal: money(self.subtotal)?,
            tax: money(self.tax)?,
            shipping_fee: money(self.shipping_fee)?,
            total: money(self.total)?,
            notes: self.notes,
        };
        let last_payment_error = self
            .last_payment_error_message
            .map(|message| PaymentFailure {
                code: self.last_payment_error_code,
                message,
            });
        let state = OrderState {
            status: OrderStatus::parse(&self.status).map_err(|e| bad(&e))?,
            payment_intent_id: self.payment_intent_id,
            payment_attempts: self.payment_attempts,
            paid_at: self.paid_at,
            cancelled_at: self.cancelled_at,
            cancel_reason: self.cancel_reason,
            refunded_amount: money(self.refunded_amount)?,
            last_payment_error,
        };
        Ok(Order::restore(
            OrderId::new(self.id),
            OrderNumber::parse(&self.order_number).map_err(|e| bad(&e))?,
            self.created_at,
            placed,
            state,
        )
        .at_version(self.version))
    }
}

/// `$start, $start+1, …` for `count` bind parameters (both SQLite and
/// PostgreSQL accept `$N`).
pub(crate) fn placeholders(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, …, $columns), ($columns+1, …), …` for a multi-row `VALUES`.
pub(crate) fn value_rows(rows: usize, columns: usize) -> String {
    value_rows_from(1, rows, columns)
}

/// [`value_rows`] numbered from `$start`, for a second `VALUES` list in
/// the same statement.
pub(crate) fn value_rows_from(start: usize, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", placeholders(start + row * columns, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_from_start() {
        assert_eq!(super::placeholders(2, 3), "$2, $3, $4");
        assert_eq!(super::placeholders(1, 0), "");
    }

    #[test]
    fn value_rows_number_every_parameter_once() {
        assert_eq!(super::value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::value_rows(1, 1), "($1)");
        assert_eq!(super::value_rows_from(7, 2, 2), "($7, $8), ($9, $10)");
    }
}

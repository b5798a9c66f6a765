//! The repository ports implemented once in SQL that both SQLite and
//! PostgreSQL accept (`$N` parameters, `ON CONFLICT`, `RETURNING`), then
//! compiled for each database by [`sql_repositories!`]. Where the two really
//! differ, each backend module says so.

/// Binds a `WebhookEventRecord`'s nine columns to any sqlx query, in the
/// order `webhook_events`' inserts name them: `id, type, created,
/// received_at, outcome, detail, order_id, payment_intent_id, payload`.
/// (A macro: sqlx's query types share no trait for `bind`.)
macro_rules! bind_event {
    ($query:expr, $event:expr) => {{
        let event: &domain::ports::WebhookEventRecord = $event;
        $query
            .bind(&event.id)
            .bind(&event.kind)
            .bind(event.created)
            .bind(event.received_at)
            .bind(&event.outcome)
            .bind(event.detail.as_deref())
            .bind(event.order_id.map(|id| id.get()))
            .bind(event.payment_intent_id.as_deref())
            .bind(&event.payload)
    }};
}

pub(crate) use bind_event;

/// `OutboxRepository::claim_pending`'s statement (`$1` claimed until, `$2`
/// max attempts, `$3` and `$5` now, `$4` how many). The backends differ
/// only in how the rows are matched to the ids of the first pending
/// messages: `$open` and `$close` go around that subquery (see
/// `CLAIM_OUTBOX` in sqlite.rs and postgres.rs).
macro_rules! claim_outbox {
    ($open:literal, $close:literal) => {
        concat!(
            "UPDATE outbox SET claimed_until_ms = $1 WHERE id ",
            $open,
            "SELECT id FROM outbox WHERE dispatched_at IS NULL AND attempts < $2 \
             AND (claimed_until_ms IS NULL OR claimed_until_ms < $3) ORDER BY id LIMIT $4",
            $close,
            " AND dispatched_at IS NULL \
             AND (claimed_until_ms IS NULL OR claimed_until_ms < $5) \
             RETURNING id, topic, order_id, attempts"
        )
    };
}

pub(crate) use claim_outbox;

/// Implements every repository port for `SqlStore<$db>`.
macro_rules! sql_repositories {
    ($db:ty) => {
        use async_trait::async_trait;
        use chrono::{DateTime, NaiveDate, Utc};
        use domain::ports::{
            EventRecorded, OrderRepository, OutboxBacklog, OutboxMessage, OutboxRepository, PendingOutboxMessage,
            ProductRepository, RepoResult, SessionRepository, UserRepository, WebhookEventRecord,
            WebhookEventRepository,
        };
        use domain::{
            Email, NewOrder, NewProduct, NewUser, Order, OrderId, OrderNumber, OrderStatus,
            Product, ProductId, RepositoryError, Session, SessionId, User, UserId,
        };

        use $crate::db::rows::{
            orders_from_lines, placeholders, value_rows, OrderItemRow, OrderLineRow, OrderRow, ProductRow,
            SessionRow, SessionUserRow, UserRow, ORDER_COLUMNS, ORDER_WITH_LINES, SESSION_USER,
        };
        use $crate::db::{db_error, SqlStore};

        /// Attempts at numbering an order before giving up; only a counter
        /// reset by hand can make the first attempt collide.
        const ORDER_NUMBER_ATTEMPTS: usize = 5;

        #[async_trait]
        impl UserRepository for SqlStore<$db> {
            async fn insert(&self, user: NewUser, now: DateTime<Utc>) -> RepoResult<User> {
                let row = sqlx::query_as::<_, UserRow>(
                    "INSERT INTO users (email, name, password_hash, created_at) \
                     VALUES ($1, $2, $3, $4) \
                     RETURNING id, email, name, password_hash, stripe_customer_id, created_at",
                )
                .bind(user.email.as_str())
                .bind(user.name.as_ref().map(|n| n.as_str()))
                .bind(user.password_hash.as_str())
                .bind(now)
                .fetch_one(&self.writer)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(d) if d.is_unique_violation() => {
                        RepositoryError::EmailTaken
                    }
                    _ => db_error(e),
                })?;
                row.try_into()
            }

            async fn find_by_id(&self, id: UserId) -> RepoResult<Option<User>> {
                sqlx::query_as::<_, UserRow>(
                    "SELECT id, email, name, password_hash, stripe_customer_id, created_at \
                     FROM users WHERE id = $1",
                )
                .bind(id.get())
                .fetch_optional(&self.reader)
                .await
                .map_err(db_error)?
                .map(User::try_from)
                .transpose()
            }

            async fn find_by_email(&self, email: &Email) -> RepoResult<Option<User>> {
                sqlx::query_as::<_, UserRow>(
                    "SELECT id, email, name, password_hash, stripe_customer_id, created_at \
                     FROM users WHERE email = $1",
                )
                .bind(email.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(db_error)?
                .map(User::try_from)
                .transpose()
            }

            async fn set_stripe_customer(&self, id: UserId, customer_id: &str) -> RepoResult<String> {
                sqlx::query(
                    "UPDATE users SET stripe_customer_id = $1 \
                     WHERE id = $2 AND stripe_customer_id IS NULL",
                )
                .bind(customer_id)
                .bind(id.get())
                .execute(&self.writer)
                .await
                .map_err(db_error)?;
                let stored: Option<String> =
                    sqlx::query_scalar("SELECT stripe_customer_id FROM users WHERE id = $1")
                        .bind(id.get())
                        .fetch_one(&self.writer)
                        .await
                        .map_err(db_error)?;
                stored.ok_or_else(|| RepositoryError::Unexpected("customer id was not stored".into()))
            }

            async fn without_stripe_customer(&self, limit: i64) -> RepoResult<Vec<User>> {
                sqlx::query_as::<_, UserRow>(
                    "SELECT id, email, name, password_hash, stripe_customer_id, created_at \
                     FROM users WHERE stripe_customer_id IS NULL ORDER BY id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.reader)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(User::try_from)
                .collect()
            }
        }

        #[async_trait]
        impl SessionRepository for SqlStore<$db> {
            async fn insert(&self, session: &Session) -> RepoResult<()> {
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(session.id.as_str())
                .bind(session.user_id.get())
                .bind(session.created_at)
                .bind(session.expires_at)
                .execute(&self.writer)
                .await
                .map_err(db_error)?;
                Ok(())
            }

            async fn find_active(
                &self,
                id: &SessionId,
                now: DateTime<Utc>,
            ) -> RepoResult<Option<Session>> {
                let row = sqlx::query_as::<_, SessionRow>(
                    "SELECT id, user_id, created_at, expires_at, revoked_at \
                     FROM sessions WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(db_error)?;
                Ok(row.and_then(|r| r.into_active(now)))
            }

            async fn find_active_user(
                &self,
                id: &SessionId,
                now: DateTime<Utc>,
            ) -> RepoResult<Option<User>> {
                let row = match &self.inline {
                    Some(inline) => inline.session_user(id.as_str())?,
                    None => sqlx::query_as::<_, SessionUserRow>(SESSION_USER)
                        .bind(id.as_str())
                        .fetch_optional(&self.reader)
                        .await
                        .map_err(db_error)?,
                };
                match row {
                    Some(row) if row.is_active(now) => User::try_from(row.user).map(Some),
                    _ => Ok(None),
                }
            }

            async fn revoke(&self, id: &SessionId, now: DateTime<Utc>) -> RepoResult<()> {
                sqlx::query(
                    "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id.as_str())
                .bind(now)
                .execute(&self.writer)
                .await
                .map_err(db_error)?;
                Ok(())
            }
        }

        #[async_trait]
        impl ProductRepository for SqlStore<$db> {
            async fn list_active(&self) -> RepoResult<Vec<Product>> {
                sqlx::query_as::<_, ProductRow>(
                    "SELECT id, sku, name, price, currency, active FROM products \
                     WHERE active = TRUE ORDER BY id",
                )
                .fetch_all(&self.reader)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(Product::try_from)
                .collect()
            }

            async fn find_active(&self, ids: &[ProductId]) -> RepoResult<Vec<Product>> {
                let mut ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
                ids.sort_unstable();
                ids.dedup();
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT id, sku, name, price, currency, active FROM products \
                     WHERE active = TRUE AND id IN ({})",
                    placeholders(1, ids.len())
                );
                let mut query = sqlx::query_as::<_, ProductRow>(&sql);
                for id in &ids {
                    query = query.bind(*id);
                }
                query
                    .fetch_all(&self.reader)
                    .await
                    .map_err(db_error)?
                    .into_iter()
                    .map(Product::try_from)
                    .collect()
            }

            async fn replace_catalog(&self, products: &[NewProduct]) -> RepoResult<()> {
                let now = Utc::now();
                let mut tx = self.writer.begin().await.map_err(db_error)?;
                for product in products {
                    sqlx::query(
                        "INSERT INTO products (sku, name, price, currency, active, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (sku) DO UPDATE SET name = excluded.name, \
                         price = excluded.price, currency = excluded.currency, \
                         active = excluded.active, updated_at = excluded.updated_at",
                    )
                    .bind(product.sku.as_str())
                    .bind(&product.name)
                    .bind(product.price.minor_units())
                    .bind(product.price.currency().code())
                    .bind(product.active)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                }
                // Products the catalog no longer lists stop being sold; their
                // rows stay because placed orders refer to them.
                let sql = if products.is_empty() {
                    "UPDATE products SET active = FALSE, updated_at = $1 WHERE active = TRUE"
                        .to_string()
                } else {
                    format!(
                        "UPDATE products SET active = FALSE, updated_at = $1 \
                         WHERE active = TRUE AND sku NOT IN ({})",
                        placeholders(2, products.len())
                    )
                };
                let mut query = sqlx::query(&sql).bind(now);
                for product in products {
                    query = query.bind(product.sku.as_str());
                }
                query.execute(&mut *tx).await.map_err(db_error)?;
                tx.commit().await.map_err(db_error)
            }
        }

        impl SqlStore<$db> {
            async fn load_items(&self, order_ids: &[i64]) -> RepoResult<Vec<OrderItemRow>> {
                if order_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT order_id, product_id, product_name, unit_price, quantity, subtotal \
                     FROM order_items WHERE order_id IN ({}) ORDER BY order_id, line_no",
                    placeholders(1, order_ids.len())
                );
                let mut query = sqlx::query_as::<_, OrderItemRow>(&sql);
                for id in order_ids {
                    query = query.bind(*id);
                }
                query.fetch_all(&self.reader).await.map_err(db_error)
            }

            async fn assemble(&self, rows: Vec<OrderRow>) -> RepoResult<Vec<Order>> {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                let mut items_by_order: std::collections::HashMap<i64, Vec<OrderItemRow>> =
                    std::collections::HashMap::new();
                for item in self.load_items(&ids).await? {
                    items_by_order.entry(item.order_id).or_default().push(item);
                }
                rows.into_iter()
                    .map(|row| {
                        let items = items_by_order.remove(&row.id).unwrap_or_default();
                        row.into_order(items)
                    })
                    .collect()
            }

            /// One attempt at storing an order under the next number of `day`.
            async fn try_insert_order(
                &self,
                order: &NewOrder,
                day: NaiveDate,
                now: DateTime<Utc>,
            ) -> Result<i64, sqlx::Error> {
                let mut tx = self.writer.begin().await?;
                let day_key = day.format("%y%m%d").to_string();
                let sequence: i64 = sqlx::query_scalar(
                    "INSERT INTO order_number_counters (day, last_value) VALUES ($1, 1) \
                     ON CONFLICT (day) DO UPDATE \
                     SET last_value = order_number_counters.last_value + 1 \
                     RETURNING last_value",
                )
                .bind(&day_key)
                .fetch_one(&mut *tx)
                .await?;
                let number = u32::try_from(sequence)
                    .ok()
                    .and_then(|s| OrderNumber::new(day, s).ok())
                    .ok_or_else(|| sqlx::Error::Protocol(format!("order sequence {sequence} out of range")))?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO orders (user_id, order_number, status, currency, subtotal, tax, \
                     shipping_fee, total, notes, refunded_amount, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10) RETURNING id",
                )
                .bind(order.user_id.get())
                .bind(number.as_str())
                .bind(OrderStatus::Pending.as_str())
                .bind(order.total.currency().code())
                .bind(order.subtotal.minor_units())
                .bind(order.tax.minor_units())
                .bind(order.shipping_fee.minor_units())
                .bind(order.total.minor_units())
                .bind(order.notes.as_deref())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                for (line_no, line) in order.lines.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO order_items (order_id, line_no, product_id, product_name, \
                         unit_price, quantity, subtotal) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(id)
                    .bind(line_no as i64)
                    .bind(line.product_id.get())
                    .bind(&line.product_name)
                    .bind(line.unit_price.minor_units())
                    .bind(i64::from(line.quantity.get()))
                    .bind(line.subtotal.minor_units())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(id)
            }
        }

        #[async_trait]
        impl OrderRepository for SqlStore<$db> {
            async fn insert(
                &self,
                order: NewOrder,
                day: NaiveDate,
                now: DateTime<Utc>,
            ) -> RepoResult<Order> {
                let mut attempt = 0;
                let id = loop {
                    attempt += 1;
                    match self.try_insert_order(&order, day, now).await {
                        Ok(id) => break id,
                        Err(sqlx::Error::Database(e))
                            if e.is_unique_violation() && attempt < ORDER_NUMBER_ATTEMPTS =>
                        {
                            tracing::warn!(attempt, "order number collided, taking the next one");
                        }
                        Err(e) => return Err(db_error(e)),
                    }
                };
                OrderRepository::find_by_id(self, OrderId::new(id))
                    .await?
                    .ok_or_else(|| RepositoryError::Unexpected("inserted order vanished".into()))
            }

            async fn find_by_id(&self, id: OrderId) -> RepoResult<Option<Order>> {
                if let Some(inline) = &self.inline {
                    let rows = inline.orders("o.id = $1", "i.line_no", &id.get())?;
                    return Ok(orders_from_lines(rows)?.pop());
                }
                let sql = format!("{ORDER_WITH_LINES} WHERE o.id = $1 ORDER BY i.line_no");
                let rows = sqlx::query_as::<_, OrderLineRow>(&sql)
                    .bind(id.get())
                    .fetch_all(&self.reader)
                    .await
                    .map_err(db_error)?;
                Ok(orders_from_lines(rows)?.pop())
            }

            async fn list_for_user(&self, user: UserId) -> RepoResult<Vec<Order>> {
                if let Some(inline) = &self.inline {
                    let rows = inline.orders("o.user_id = $1", "o.id DESC, i.line_no", &user.get())?;
                    return orders_from_lines(rows);
                }
                let sql = format!(
                    "{ORDER_WITH_LINES} WHERE o.user_id = $1 ORDER BY o.id DESC, i.line_no"
                );
                let rows = sqlx::query_as::<_, OrderLineRow>(&sql)
                    .bind(user.get())
                    .fetch_all(&self.reader)
                    .await
                    .map_err(db_error)?;
                orders_from_lines(rows)
            }

            async fn save_state(&self, order: &mut Order, now: DateTime<Utc>) -> RepoResult<()> {
                if write_state(&self.writer, order, now, None).await.map_err(db_error)? {
                    order.advance_version();
                    Ok(())
                } else {
                    Err(RepositoryError::Conflict)
                }
            }

            async fn save_state_releasing_lease(
                &self,
                order: &mut Order,
                owner: &str,
                now: DateTime<Utc>,
            ) -> RepoResult<()> {
                let saved = self
                    .order_writes
                    .write($crate::db::writes::OrderWrite::SaveReleasingLease {
                        order: Box::new(order.clone()),
                        owner: owner.to_owned(),
                        now,
                    })
                    .await?;
                if saved {
                    order.advance_version();
                    Ok(())
                } else {
                    Err(RepositoryError::Conflict)
                }
            }

            async fn save_state_and_notify(
                &self,
                order: &mut Order,
                outbox: &[OutboxMessage],
                now: DateTime<Utc>,
            ) -> RepoResult<()> {
                let mut tx = self.writer.begin().await.map_err(db_error)?;
                if !write_state(&mut *tx, order, now, None).await.map_err(db_error)? {
                    return Err(RepositoryError::Conflict);
                }
                queue_outbox(&mut tx, outbox, now).await.map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
                order.advance_version();
                Ok(())
            }

            async fn find_by_payment_intent(&self, payment_intent_id: &str) -> RepoResult<Option<Order>> {
                if let Some(inline) = &self.inline {
                    let rows = inline.orders("o.payment_intent_id = $1", "i.line_no", &payment_intent_id)?;
                    return Ok(orders_from_lines(rows)?.pop());
                }
                let sql = format!(
                    "{ORDER_WITH_LINES} WHERE o.payment_intent_id = $1 ORDER BY i.line_no"
                );
                let rows = sqlx::query_as::<_, OrderLineRow>(&sql)
                    .bind(payment_intent_id)
                    .fetch_all(&self.reader)
                    .await
                    .map_err(db_error)?;
                Ok(orders_from_lines(rows)?.pop())
            }

            async fn find_by_payment_intent_or_id(
                &self,
                payment_intent_id: &str,
                fallback: Option<OrderId>,
            ) -> RepoResult<Option<Order>> {
                if self.inline.is_some() {
                    // In-process reads: two cost less than one round trip.
                    if let Some(order) =
                        OrderRepository::find_by_payment_intent(self, payment_intent_id).await?
                    {
                        return Ok(Some(order));
                    }
                    return match fallback {
                        Some(id) => OrderRepository::find_by_id(self, id).await,
                        None => Ok(None),
                    };
                }
                if let Some(lookups) = &self.order_lookups {
                    return lookups
                        .write($crate::db::writes::OrderLookup {
                            payment_intent_id: payment_intent_id.to_owned(),
                            fallback,
                        })
                        .await;
                }
                // `payment_intent_id` is unique: the subquery is one row or none.
                let sql = format!(
                    "{ORDER_WITH_LINES} WHERE o.id = COALESCE(\
                     (SELECT id FROM orders WHERE payment_intent_id = $1), $2) \
                     ORDER BY i.line_no"
                );
                let rows = sqlx::query_as::<_, OrderLineRow>(&sql)
                    .bind(payment_intent_id)
                    .bind(fallback.map(OrderId::get))
                    .fetch_all(&self.reader)
                    .await
                    .map_err(db_error)?;
                Ok(orders_from_lines(rows)?.pop())
            }

            async fn claim_payment_lease(
                &self,
                order: &Order,
                owner: &str,
                now: DateTime<Utc>,
                until: DateTime<Utc>,
            ) -> RepoResult<bool> {
                self.order_writes
                    .write($crate::db::writes::OrderWrite::ClaimLease {
                        order: order.id,
                        version: order.version(),
                        owner: owner.to_owned(),
                        now,
                        until,
                    })
                    .await
            }

            async fn due_for_reconciliation(
                &self,
                quiet_since: DateTime<Utc>,
                now: DateTime<Utc>,
                limit: i64,
            ) -> RepoResult<Vec<Order>> {
                let sql = format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'awaiting_payment' \
                     AND payment_intent_id IS NOT NULL AND next_check_at_ms <= $1 \
                     AND updated_at < $2 ORDER BY updated_at LIMIT $3"
                );
                let rows = sqlx::query_as::<_, OrderRow>(&sql)
                    .bind(now.timestamp_millis())
                    .bind(quiet_since)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await
                    .map_err(db_error)?;
                self.assemble(rows).await
            }

            async fn schedule_next_check(
                &self,
                order: OrderId,
                next_check_at: DateTime<Utc>,
                checks: i64,
            ) -> RepoResult<()> {
                sqlx::query(
                    "UPDATE orders SET next_check_at_ms = $1, reconcile_checks = $2 WHERE id = $3",
                )
                .bind(next_check_at.timestamp_millis())
                .bind(checks)
                .bind(order.get())
                .execute(&self.writer)
                .await
                .map_err(db_error)?;
                Ok(())
            }

            async fn reconcile_checks(&self, order: OrderId) -> RepoResult<i64> {
                sqlx::query_scalar("SELECT reconcile_checks FROM orders WHERE id = $1")
                    .bind(order.get())
                    .fetch_one(&self.reader)
                    .await
                    .map_err(db_error)
            }

            async fn release_payment_lease(&self, order: OrderId, owner: &str) -> RepoResult<()> {
                sqlx::query(
                    "UPDATE orders SET intent_lease_owner = NULL, intent_lease_until_ms = 0 \
                     WHERE id = $1 AND intent_lease_owner = $2",
                )
                .bind(order.get())
                .bind(owner)
                .execute(&self.writer)
                .await
                .map_err(db_error)?;
                Ok(())
            }
        }
        /// `last_payment_error_code` and `_message` of a state.
        fn payment_error_columns(state: &domain::order::OrderState) -> (Option<&str>, Option<&str>) {
            match &state.last_payment_error {
                Some(f) => (f.code.as_deref(), Some(f.message.as_str())),
                None => (None, None),
            }
        }

        /// Writes `order`'s state over the version it was read at; false
        /// when the stored version moved on (someone else saved first).
        /// With `release_lease_of`, also gives up that owner's payment lease.
        async fn write_state<'e, E>(
            executor: E,
            order: &Order,
            now: DateTime<Utc>,
            release_lease_of: Option<&str>,
        ) -> Result<bool, sqlx::Error>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let state = order.state();
            let (error_code, error_message) = payment_error_columns(state);
            let result = sqlx::query(
                "UPDATE orders SET status = $1, payment_intent_id = $2, paid_at = $3, \
                 cancelled_at = $4, cancel_reason = $5, refunded_amount = $6, \
                 last_payment_error_code = $7, last_payment_error_message = $8, \
                 updated_at = $9, payment_attempts = $12, version = version + 1, \
                 intent_lease_until_ms = CASE WHEN intent_lease_owner = $13 THEN 0 ELSE intent_lease_until_ms END, \
                 intent_lease_owner = CASE WHEN intent_lease_owner = $13 THEN NULL ELSE intent_lease_owner END \
                 WHERE id = $10 AND version = $11",
            )
            .bind(state.status.as_str())
            .bind(state.payment_intent_id.as_deref())
            .bind(state.paid_at)
            .bind(state.cancelled_at)
            .bind(state.cancel_reason.as_deref())
            .bind(state.refunded_amount.minor_units())
            .bind(error_code)
            .bind(error_message)
            .bind(now)
            .bind(order.id.get())
            .bind(order.version())
            .bind(state.payment_attempts)
            .bind(release_lease_of)
            .execute(executor)
            .await?;
            Ok(result.rows_affected() == 1)
        }

        async fn queue_outbox(
            tx: &mut sqlx::Transaction<'_, $db>,
            outbox: &[OutboxMessage],
            now: DateTime<Utc>,
        ) -> Result<(), sqlx::Error> {
            for message in outbox {
                sqlx::query("INSERT INTO outbox (topic, order_id, created_at) VALUES ($1, $2, $3)")
                    .bind(&message.topic)
                    .bind(message.order_id.get())
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }

        #[derive(sqlx::FromRow)]
        struct WebhookEventRow {
            id: String,
            #[sqlx(rename = "type")]
            kind: String,
            created: i64,
            received_at: DateTime<Utc>,
            outcome: String,
            detail: Option<String>,
            order_id: Option<i64>,
            payment_intent_id: Option<String>,
            payload: String,
        }

        /// Writes a batch of events inside one transaction, in a fixed
        /// number of statements (one per order to save, plus at most
        /// three), each event all or nothing: a known id writes nothing
        /// (`Duplicate`), and an order saved by someone else since it was
        /// read takes its event row out again (`Conflict`), so the other
        /// events of the batch still commit.
        async fn write_events(
            tx: &mut sqlx::Transaction<'_, $db>,
            writes: &[$crate::db::writes::EventWrite],
        ) -> Result<Vec<RepoResult<EventRecorded>>, sqlx::Error> {
            use std::collections::HashSet;
            if writes.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "INSERT INTO webhook_events (id, type, created, received_at, outcome, detail, \
                 order_id, payment_intent_id, payload) VALUES {} \
                 ON CONFLICT (id) DO NOTHING RETURNING id",
                value_rows(writes.len(), 9)
            );
            // Rows in event id order: batches committing at once (PostgreSQL)
            // that share an event (two deliveries of it) then wait for each
            // other at their first shared id instead of deadlocking.
            let mut by_id: Vec<&$crate::db::writes::EventWrite> = writes.iter().collect();
            by_id.sort_by(|a, b| a.event.id.cmp(&b.event.id));
            let mut insert = sqlx::query_scalar::<_, String>(&sql);
            for write in by_id {
                insert = $crate::db::repositories::bind_event!(insert, &write.event);
            }
            let mut inserted: HashSet<String> = insert.fetch_all(&mut **tx).await?.into_iter().collect();
            // An id inserted now belongs to its first write in the batch;
            // later copies (and ids known before) are duplicates.
            let mut owner = vec![false; writes.len()];
            for (index, write) in writes.iter().enumerate() {
                owner[index] = inserted.remove(&write.event.id);
            }
            // Orders saved once in the batch go in one statement; an order
            // a second event of the batch also saves is written on its own
            // after it (it conflicts, unless the first one did).
            let mut seen = HashSet::new();
            let (mut together, mut alone) = (Vec::new(), Vec::new());
            for (index, write) in writes.iter().enumerate() {
                if let (true, Some(order)) = (owner[index], &write.order) {
                    if seen.insert(order.id) {
                        together.push((write, order));
                    } else {
                        alone.push((write, order));
                    }
                }
            }
            let saved = write_states(tx, &together).await?;
            let mut conflicted: Vec<&str> = together
                .iter()
                .filter(|(_, order)| !saved.contains(&order.id.get()))
                .map(|(write, _)| write.event.id.as_str())
                .collect();
            for (write, order) in alone {
                if !write_state(&mut **tx, order, write.now, None).await? {
                    conflicted.push(&write.event.id);
                }
            }
            if !conflicted.is_empty() {
                let sql = format!(
                    "DELETE FROM webhook_events WHERE id IN ({})",
                    placeholders(1, conflicted.len())
                );
                let mut delete = sqlx::query(&sql);
                for id in &conflicted {
                    delete = delete.bind(*id);
                }
                delete.execute(&mut **tx).await?;
            }
            let outcomes: Vec<RepoResult<EventRecorded>> = writes
                .iter()
                .zip(&owner)
                .map(|(write, owns)| {
                    // A copy of an event whose write conflicted is not a
                    // duplicate: nothing of it is stored, so it decides again.
                    if conflicted.contains(&write.event.id.as_str()) {
                        Err(RepositoryError::Conflict)
                    } else if *owns {
                        Ok(EventRecorded::Recorded)
                    } else {
                        Ok(EventRecorded::Duplicate)
                    }
                })
                .collect();
            let messages: Vec<(&OutboxMessage, DateTime<Utc>)> = writes
                .iter()
                .zip(&owner)
                .zip(&outcomes)
                .filter(|((_, owns), outcome)| **owns && matches!(outcome, Ok(EventRecorded::Recorded)))
                .flat_map(|((write, _), _)| write.outbox.iter().map(|m| (m, write.now)))
                .collect();
            if !messages.is_empty() {
                let sql = format!(
                    "INSERT INTO outbox (topic, order_id, created_at) VALUES {}",
                    value_rows(messages.len(), 3)
                );
                let mut queue = sqlx::query(&sql);
                for (message, now) in messages {
                    queue = queue.bind(&message.topic).bind(message.order_id.get()).bind(now);
                }
                queue.execute(&mut **tx).await?;
            }
            Ok(outcomes)
        }

        /// [`write_state`] for several distinct orders in one statement;
        /// returns the ids of the orders written (the others moved on).
        async fn write_states(
            tx: &mut sqlx::Transaction<'_, $db>,
            orders: &[(&$crate::db::writes::EventWrite, &Order)],
        ) -> Result<std::collections::HashSet<i64>, sqlx::Error> {
            if orders.is_empty() {
                return Ok(std::collections::HashSet::new());
            }
            let sql = format!(
                "WITH v (id, version, status, payment_intent_id, paid_at, cancelled_at, \
                 cancel_reason, refunded_amount, last_payment_error_code, \
                 last_payment_error_message, updated_at, payment_attempts) AS (VALUES {}) \
                 {} FROM v WHERE orders.id = v.id AND orders.version = v.version RETURNING orders.id",
                value_rows(orders.len(), 12),
                $crate::db::rows::SAVE_ORDERS_FROM_V
            );
            let mut update = sqlx::query_scalar::<_, i64>(&sql);
            for (write, order) in orders {
                let state = order.state();
                let (error_code, error_message) = payment_error_columns(state);
                update = update
                    .bind(order.id.get())
                    .bind(order.version())
                    .bind(state.status.as_str())
                    .bind(state.payment_intent_id.as_deref())
                    .bind(state.paid_at)
                    .bind(state.cancelled_at)
                    .bind(state.cancel_reason.as_deref())
                    .bind(state.refunded_amount.minor_units())
                    .bind(error_code)
                    .bind(error_message)
                    .bind(write.now)
                    .bind(state.payment_attempts);
            }
            Ok(update.fetch_all(&mut **tx).await?.into_iter().collect())
        }

        /// The writer pool as the group-commit task's database (SQLite's;
        /// PostgreSQL writes the common batch in one statement, see
        /// `postgres/event_statement.rs`).
        #[allow(dead_code)]
        pub(crate) struct EventBatches(pub(crate) std::sync::Arc<$crate::db::kept::KeptConnections<$db>>);

        #[async_trait]
        impl $crate::db::group_commit::BatchSink<$crate::db::writes::EventWrite, EventRecorded>
            for EventBatches
        {
            async fn write_batch(
                &self,
                writes: &[$crate::db::writes::EventWrite],
            ) -> Result<Vec<RepoResult<EventRecorded>>, sqlx::Error> {
                let mut connection = self.0.take().await?;
                let mut tx = sqlx::Connection::begin(&mut *connection).await?;
                let outcomes = write_events(&mut tx, writes).await?;
                tx.commit().await?;
                self.0.put_back(connection);
                Ok(outcomes)
            }
        }

        /// The writer pool as the group-commit task of payment leases and
        /// intents.
        pub(crate) struct OrderBatches(pub(crate) std::sync::Arc<$crate::db::kept::KeptConnections<$db>>);

        #[async_trait]
        impl $crate::db::group_commit::BatchSink<$crate::db::writes::OrderWrite, bool>
            for OrderBatches
        {
            async fn write_batch(
                &self,
                writes: &[$crate::db::writes::OrderWrite],
            ) -> Result<Vec<RepoResult<bool>>, sqlx::Error> {
                use $crate::db::writes::OrderWrite;
                // One statement per write: they are few (a batch is the
                // checkouts waiting at once) and each is a keyed update.
                let mut connection = self.0.take().await?;
                let mut tx = sqlx::Connection::begin(&mut *connection).await?;
                let mut outcomes = Vec::with_capacity(writes.len());
                for write in writes {
                    let done = match write {
                        OrderWrite::ClaimLease { order, version, owner, now, until } => {
                            claim_lease(&mut *tx, *order, *version, owner, *now, *until).await?
                        }
                        OrderWrite::SaveReleasingLease { order, owner, now } => {
                            write_state(&mut *tx, order, *now, Some(owner)).await?
                        }
                    };
                    outcomes.push(Ok(done));
                }
                tx.commit().await?;
                self.0.put_back(connection);
                Ok(outcomes)
            }
        }

        /// Takes the payment lease of `order` (read at `version`) for
        /// `owner` until `until`, unless someone else holds it or the order
        /// moved on; true when taken.
        async fn claim_lease<'e, E>(
            executor: E,
            order: OrderId,
            version: i64,
            owner: &str,
            now: DateTime<Utc>,
            until: DateTime<Utc>,
        ) -> Result<bool, sqlx::Error>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let result = sqlx::query(
                "UPDATE orders SET intent_lease_owner = $1, intent_lease_until_ms = $2 \
                 WHERE id = $3 AND version = $4 \
                 AND (intent_lease_owner IS NULL OR intent_lease_until_ms < $5)",
            )
            .bind(owner)
            .bind(until.timestamp_millis())
            .bind(order.get())
            .bind(version)
            .bind(now.timestamp_millis())
            .execute(executor)
            .await?;
            Ok(result.rows_affected() == 1)
        }

        impl SqlStore<$db> {
            /// `record_replay`: overwrites the stored outcome, in a
            /// transaction of its own (replays are an operator's command).
            async fn record_replayed_event(
                &self,
                event: &WebhookEventRecord,
                order: Option<&mut Order>,
                outbox: &[OutboxMessage],
                now: DateTime<Utc>,
            ) -> RepoResult<()> {
                let mut tx = self.writer.begin().await.map_err(db_error)?;
                let replace = sqlx::query_scalar::<_, String>(
                    "INSERT INTO webhook_events (id, type, created, received_at, outcome, detail, \
                     order_id, payment_intent_id, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, detail = excluded.detail, \
                     order_id = excluded.order_id RETURNING id",
                );
                $crate::db::repositories::bind_event!(replace, event)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error)?;
                if let Some(order) = &order {
                    if !write_state(&mut *tx, order, now, None).await.map_err(db_error)? {
                        return Err(RepositoryError::Conflict);
                    }
                }
                queue_outbox(&mut tx, outbox, now).await.map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
                if let Some(order) = order {
                    order.advance_version();
                }
                Ok(())
            }
        }

        #[async_trait]
        impl WebhookEventRepository for SqlStore<$db> {
            async fn find(&self, id: &str) -> RepoResult<Option<WebhookEventRecord>> {
                let row = sqlx::query_as::<_, WebhookEventRow>(
                    "SELECT id, type, created, received_at, outcome, detail, order_id, \
                     payment_intent_id, payload FROM webhook_events WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_error)?;
                Ok(row.map(|r| WebhookEventRecord {
                    id: r.id,
                    kind: r.kind,
                    created: r.created,
                    received_at: r.received_at,
                    outcome: r.outcome,
                    detail: r.detail,
                    order_id: r.order_id.map(OrderId::new),
                    payment_intent_id: r.payment_intent_id,
                    payload: r.payload,
                }))
            }

            async fn record(
                &self,
                event: &WebhookEventRecord,
                order: Option<&mut Order>,
                outbox: &[OutboxMessage],
                now: DateTime<Utc>,
            ) -> RepoResult<EventRecorded> {
                let write = $crate::db::writes::EventWrite {
                    event: event.clone(),
                    order: order.as_deref().cloned(),
                    outbox: outbox.to_vec(),
                    now,
                };
                let saves_order = write.order.is_some();
                let recorded = self.events.write(write).await?;
                if let (EventRecorded::Recorded, true, Some(order)) = (recorded, saves_order, order) {
                    order.advance_version();
                }
                Ok(recorded)
            }

            async fn record_replay(
                &self,
                event: &WebhookEventRecord,
                order: Option<&mut Order>,
                outbox: &[OutboxMessage],
                now: DateTime<Utc>,
            ) -> RepoResult<()> {
                self.record_replayed_event(event, order, outbox, now).await
            }

            async fn record_expected_payment(
                &self,
                event: &WebhookEventRecord,
                payment: &domain::ports::ExpectedPayment,
                outbox: &[OutboxMessage],
                now: DateTime<Utc>,
            ) -> RepoResult<Option<EventRecorded>> {
                // SQLite reads the order in-process, for next to nothing:
                // it declines, and the caller reads first.
                let Some(writer) = &self.expected_payments else {
                    return Ok(None);
                };
                writer
                    .write($crate::db::writes::PaymentWrite {
                        event: event.clone(),
                        payment: payment.clone(),
                        outbox: outbox.to_vec(),
                        now,
                    })
                    .await
            }
        }

        #[async_trait]
        impl OutboxRepository for SqlStore<$db> {
            async fn claim_pending(
                &self,
                limit: i64,
                max_attempts: i64,
                now: DateTime<Utc>,
                until: DateTime<Utc>,
            ) -> RepoResult<Vec<PendingOutboxMessage>> {
                // The claim condition is repeated outside the subquery: on
                // PostgreSQL a concurrent claimer that picked the same rows
                // waits for the first and then re-checks it on the updated
                // row, so it skips them instead of claiming them twice.
                // (SQLite has one writer, so claims never overlap there.)
                // `CLAIM_OUTBOX` is the backend's (sqlite.rs, postgres.rs).
                let mut rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(CLAIM_OUTBOX)
                .bind(until.timestamp_millis())
                .bind(max_attempts)
                .bind(now.timestamp_millis())
                .bind(limit)
                .bind(now.timestamp_millis())
                .fetch_all(&self.writer)
                .await
                .map_err(db_error)?;
                // RETURNING promises no order.
                rows.sort_unstable_by_key(|row| row.0);
                Ok(rows
                    .into_iter()
                    .map(|(id, topic, order_id, attempts)| PendingOutboxMessage {
                        id,
                        message: OutboxMessage {
                            topic,
                            order_id: OrderId::new(order_id),
                        },
                        attempts,
                    })
                    .collect())
            }

            async fn backlog(&self, max_attempts: i64) -> RepoResult<OutboxBacklog> {
                let (pending, given_up): (i64, i64) = sqlx::query_as(
                    "SELECT \
                       COALESCE(SUM(CASE WHEN attempts < $1 THEN 1 ELSE 0 END), 0), \
                       COALESCE(SUM(CASE WHEN attempts >= $2 THEN 1 ELSE 0 END), 0) \
                     FROM outbox WHERE dispatched_at IS NULL",
                )
                .bind(max_attempts)
                .bind(max_attempts)
                .fetch_one(&self.reader)
                .await
                .map_err(db_error)?;
                Ok(OutboxBacklog { pending, given_up })
            }

            async fn mark_dispatched(&self, ids: &[i64], now: DateTime<Utc>) -> RepoResult<()> {
                // Bounded by the claim's limit, far below either database's
                // parameter limit.
                if ids.is_empty() {
                    return Ok(());
                }
                let sql = format!(
                    "UPDATE outbox SET dispatched_at = $1 WHERE id IN ({})",
                    placeholders(2, ids.len())
                );
                let mut query = sqlx::query(&sql).bind(now);
                for id in ids {
                    query = query.bind(*id);
                }
                query.execute(&self.writer).await.map_err(db_error)?;
                Ok(())
            }

            async fn mark_failed(&self, id: i64) -> RepoResult<()> {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, claimed_until_ms = NULL WHERE id = $1",
                )
                    .bind(id)
                    .execute(&self.writer)
                    .await
                    .map_err(db_error)?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_repositories;

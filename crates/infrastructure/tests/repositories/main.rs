//! The repository ports against real databases: every case runs once on
//! SQLite and once on PostgreSQL (`<area>::sqlite::<case>` and
//! `<area>::postgres::<case>`), each on a fresh database.
//!
//! PostgreSQL cases need `TEST_POSTGRES_URL` (scripts/test.sh sets it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use application::Repositories;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use domain::{
    Currency, DisplayName, Email, Money, NewOrder, NewOrderLine, NewProduct, NewUser, Order,
    PasswordHash, Product, Quantity, Sku, User, UserId,
};
use infrastructure::config::DatabaseUrl;
use infrastructure::db::{Database, PoolOptions};
use test_support::{Backend, TestDatabase};

/// Generates, for each listed case `name` (an `async fn name(Backend)` of the
/// calling module), the tests `sqlite::name` and `postgres::name`.
///
/// * `single`: current-thread runtime;
/// * `multi`: multi-thread runtime, for the cases that race writers;
/// * `ignored`: multi-thread runtime, `#[ignore]`d with the given reason
///   (known bugs; run them with `--run-ignored`).
macro_rules! backend_tests {
    (
        single: [$($single:ident),* $(,)?],
        multi: [$($multi:ident),* $(,)?]
        $(, ignored: [$($ignored:ident = $why:literal),* $(,)?])? $(,)?
    ) => {
        backend_tests!(@backend sqlite, Sqlite, [$($single),*], [$($multi),*], [$($($ignored = $why),*)?]);
        backend_tests!(@backend postgres, Postgres, [$($single),*], [$($multi),*], [$($($ignored = $why),*)?]);
    };
    (@backend $module:ident, $backend:ident, [$($single:ident),*], [$($multi:ident),*], [$($ignored:ident = $why:literal),*]) => {
        mod $module {
            use test_support::Backend;
            $(
                #[tokio::test]
                async fn $single() {
                    super::$single(Backend::$backend).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $multi() {
                    super::$multi(Backend::$backend).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[ignore = $why]
                async fn $ignored() {
                    super::$ignored(Backend::$backend).await;
                }
            )*
        }
    };
}

mod concurrency;
mod expected_payments;
mod orders;
mod outbox;
mod products;
mod sessions;
mod users;
mod webhook_events;

/// A migrated, empty database and its repositories.
pub struct Harness {
    pub repos: Repositories,
    pub database: Database,
    url: DatabaseUrl,
    raw_url: String,
    // Last: dropping it removes the SQLite directory.
    _db: TestDatabase,
}

impl Harness {
    pub async fn new(backend: Backend) -> Self {
        Self::with_pool(backend, 5).await
    }

    /// A harness whose pools hold up to `max_connections` (on PostgreSQL
    /// this also sets how many event batches commit at once).
    pub async fn with_pool(backend: Backend, max_connections: u32) -> Self {
        let db = TestDatabase::new(backend).await;
        let url = DatabaseUrl::parse(&db.url).expect("test database URL");
        let database = Database::connect(&url, PoolOptions { max_connections })
            .await
            .expect("connect to the test database");
        database.migrate().await.expect("migrate the test database");
        let repos = database.repositories();
        assert_eq!(
            database.backend(),
            match backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            }
        );
        Self {
            repos,
            database,
            url,
            raw_url: db.url.clone(),
            _db: db,
        }
    }

    /// A second kessai instance on the same database: its own pools and
    /// writers. Close it before the harness goes.
    pub async fn another_instance(&self) -> Database {
        Database::connect(&self.url, PoolOptions { max_connections: 5 })
            .await
            .expect("connect a second instance")
    }

    /// `(id, active)` of the product row with `sku`, read behind the ports'
    /// back: the ports cannot see inactive products, which must still exist.
    pub async fn product_row(&self, sku: &str) -> Option<(i64, bool)> {
        const SQL: &str = "SELECT id, active FROM products WHERE sku = $1";
        match &self.url {
            DatabaseUrl::Sqlite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.raw_url).await.unwrap();
                let row = sqlx::query_as(SQL)
                    .bind(sku)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                row
            }
            DatabaseUrl::Postgres(_) => {
                let pool = sqlx::PgPool::connect(&self.raw_url).await.unwrap();
                let row = sqlx::query_as(SQL)
                    .bind(sku)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                row
            }
        }
    }

    /// PostgreSQL: runs `statements` behind the ports' back, one by one.
    pub async fn raw_sql(&self, statements: &[&str]) {
        let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&self.raw_url)
            .await
            .unwrap();
        for statement in statements {
            sqlx::Executor::execute(&mut connection, *statement)
                .await
                .unwrap();
        }
        sqlx::Connection::close(connection).await.ok();
    }

    /// PostgreSQL: how many other connections the server holds open to
    /// this test's database (`None` on SQLite, which has no server).
    pub async fn other_server_connections(&self) -> Option<i64> {
        let DatabaseUrl::Postgres(_) = &self.url else {
            return None;
        };
        let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&self.raw_url)
            .await
            .unwrap();
        let count = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        sqlx::Connection::close(connection).await.ok();
        Some(count)
    }

    /// Registers a user with `email` (the name is derived from it).
    pub async fn user(&self, email: &str) -> User {
        self.repos
            .users
            .insert(new_user(email, Some(email)), t0())
            .await
            .expect("insert user")
    }

    /// Replaces the catalog with `items` (sku, name, price in yen, all
    /// active) and returns the active products, ordered by id.
    pub async fn catalog(&self, items: &[(&str, &str, i64)]) -> Vec<Product> {
        let catalog: Vec<NewProduct> = items
            .iter()
            .map(|(sku, name, price)| new_product(sku, name, *price, true))
            .collect();
        self.repos
            .products
            .replace_catalog(&catalog)
            .await
            .expect("replace catalog");
        self.repos
            .products
            .list_active()
            .await
            .expect("list active")
    }

    /// `user`'s order of one `product`, placed on 2024-11-24 at [`t0`].
    pub async fn order_of_one(&self, user: UserId, product: &Product) -> Order {
        self.repos
            .orders
            .insert(
                new_order(user, &[(product, 1)], None),
                day(2024, 11, 24),
                t0(),
            )
            .await
            .expect("insert order")
    }

    /// A new user's order of one tea (the catalog is set to
    /// [`TEA_CATALOG`]), its PaymentIntent `intent` recorded.
    pub async fn order_paying_with(&self, email: &str, intent: &str) -> Order {
        let user = self.user(email).await;
        let products = self.catalog(TEA_CATALOG).await;
        let mut order = self.order_of_one(user.id, &products[0]).await;
        order.begin_payment(intent.into()).expect("begin payment");
        self.repos
            .orders
            .save_state(&mut order, t0())
            .await
            .expect("record the intent");
        order
    }
}

pub const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";

/// 2024-11-24T03:04:05.123456Z: a fixed instant with microseconds, the
/// finest precision both databases keep.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 11, 24, 3, 4, 5).unwrap() + Duration::microseconds(123_456)
}

pub fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub fn yen(minor: i64) -> Money {
    Money::new(minor, Currency::Jpy).unwrap()
}

pub fn new_user(email: &str, name: Option<&str>) -> NewUser {
    NewUser {
        email: Email::parse(email).unwrap(),
        name: DisplayName::parse(name.map(str::to_string)).unwrap(),
        password_hash: PasswordHash::new(HASH.to_string()),
    }
}

pub fn new_product(sku: &str, name: &str, price: i64, active: bool) -> NewProduct {
    NewProduct::new(Sku::parse(sku).unwrap(), name, yen(price), active).unwrap()
}

/// An order of `user` for `items` (product, quantity), priced the way the
/// application prices it, with a ¥500 shipping fee.
pub fn new_order(user: UserId, items: &[(&Product, i64)], notes: Option<&str>) -> NewOrder {
    let lines = items
        .iter()
        .map(|(product, quantity)| NewOrderLine {
            product_id: product.id,
            product_name: product.name.clone(),
            unit_price: product.price,
            quantity: Quantity::new(*quantity).unwrap(),
        })
        .collect();
    NewOrder::price(user, lines, yen(500), notes.map(str::to_string)).unwrap()
}

/// The standard small catalog used by the order tests.
pub const TEA_CATALOG: &[(&str, &str, i64)] = &[
    ("TEA-SENCHA", "静岡煎茶 100g", 1_200),
    ("TEA-GYOKURO", "玉露 50g", 3_000),
    ("CUP-YUNOMI", "有田焼 湯呑み", 2_500),
];

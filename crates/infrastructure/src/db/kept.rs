//! Connections the group-commit writers keep between their batches.
//!
//! sqlx 0.8 pings a connection (a round trip) every time it goes back to
//! the pool, and did so once more on the way out until the pool stopped
//! testing before acquire. A PostgreSQL batch is five statements (`BEGIN`,
//! the events, the orders, the outbox, `COMMIT`): the ping was one round
//! trip in six, on the path every webhook waits on. Here a writer takes a
//! connection for its batch and puts it back on this shelf, not in the
//! pool, so the next batch starts at once.
//!
//! The shelf holds at most one connection per writer task, so the writers
//! never keep more of the pool than they were using under load anyway.
//! Only a batch that committed puts its connection back: after any error
//! the connection goes to the pool, which tests it (and closes a broken
//! one) as before. SQLite does not keep any: its single writer connection
//! is shared with every other write.

use std::sync::Mutex;

use sqlx::pool::PoolConnection;

pub(crate) struct KeptConnections<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
    shelf: Mutex<Vec<PoolConnection<DB>>>,
    /// How many may wait on the shelf; 0 keeps none.
    capacity: usize,
}

impl<DB: sqlx::Database> KeptConnections<DB> {
    pub(crate) fn new(pool: sqlx::Pool<DB>, capacity: usize) -> Self {
        Self {
            pool,
            shelf: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
        }
    }

    /// A kept connection, or one from the pool.
    pub(crate) async fn take(&self) -> Result<PoolConnection<DB>, sqlx::Error> {
        let kept = self.lock().pop();
        match kept {
            Some(connection) => Ok(connection),
            None => self.pool.acquire().await,
        }
    }

    /// Puts back a connection whose last transaction committed. Once the
    /// pool is closing, or the shelf is full, it goes back to the pool.
    pub(crate) fn put_back(&self, connection: PoolConnection<DB>) {
        if self.pool.is_closed() {
            return;
        }
        let mut shelf = self.lock();
        if shelf.len() < self.capacity {
            shelf.push(connection);
        }
    }

    /// Returns every kept connection to the pool, which closes them once
    /// it is closing.
    pub(crate) fn release_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PoolConnection<DB>>> {
        // A panic while holding this lock cannot leave the Vec half-changed.
        self.shelf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

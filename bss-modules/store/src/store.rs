//! Opening a store and running transactions. [`Store`] holds a pool for one of the two
//! databases; [`Tx`] is a transaction on it, through which every query of the crate runs
//! (`Tx::execute`, `Tx::fetch_*`: crate-private, so no other crate can send SQL).
//!
//! SQLite is opened in WAL mode with `synchronous = FULL` (a committed outbox row must
//! survive a power cut, or the engine could apply an operation the BSS then forgets),
//! foreign keys on and a busy timeout. Its write transactions start with `BEGIN IMMEDIATE`,
//! so two writers queue on the lock instead of failing when one upgrades from reading, and
//! a process's writers first queue, in order, for its one write permit: SQLite's busy
//! handler retries by sleeping, which is not fair, so under hundreds of concurrent writers
//! some would wait out the busy timeout while others kept winning. Other processes on the
//! same file (the CLI beside a server) still meet the busy timeout.
//! PostgreSQL runs at its default `READ COMMITTED`; the crate takes row locks where
//! it needs them (see [`Dialect`]).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Postgres, Sqlite};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::error::{Result, StoreError};
use crate::sql::{bind_postgres, bind_sqlite, Arg, Dialect, Row};

/// How a store is opened. `Default` suits a server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long to wait for a free connection before failing.
    pub acquire_timeout: Duration,
    /// SQLite: how long a writer waits for the write lock before failing.
    pub busy_timeout: Duration,
    /// SQLite: each connection's page cache, in MiB (SQLite's own default is about 2).
    pub sqlite_cache_mib: u32,
}

impl StoreOptions {
    /// For a bulk load (an import): a page cache large enough to hold the indexes it
    /// inserts into (256 MiB); with SQLite's default a 1 M-row import read its index pages
    /// back from the file again and again (measured in docs/performance.md).
    pub fn bulk() -> StoreOptions {
        StoreOptions { max_connections: 2, sqlite_cache_mib: 256, ..StoreOptions::default() }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(10),
            sqlite_cache_mib: 16,
        }
    }
}

/// The BSS database: SQLite or PostgreSQL, migrated to this build's schema on open.
/// Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    location: Arc<str>,
    /// Woken when a transaction that enqueued outbox items commits.
    pub(crate) outbox_wake: Arc<Notify>,
    /// Woken when a transaction that published hub events with deliveries commits.
    pub(crate) hub_wake: Arc<Notify>,
    /// SQLite: the one write permit of this process's writers, taken in FIFO order.
    writers: Arc<Semaphore>,
    /// How long a writer waits for the permit (the pool's acquire timeout).
    write_wait: Duration,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dialect", &self.dialect()).field("location", &self.location).finish()
    }
}

/// The file name of the embedded database inside a data directory.
pub const SQLITE_FILE_NAME: &str = "bss.sqlite3";

impl Store {
    /// Opens `location`, creating and migrating the database as needed: a
    /// `postgres://` (or `postgresql://`) URL, a `sqlite:` URL, or a path to an SQLite file.
    pub async fn open(location: &str) -> Result<Store> {
        Store::open_with(location, &StoreOptions::default()).await
    }

    /// [`Store::open`] with explicit pool options.
    pub async fn open_with(location: &str, options: &StoreOptions) -> Result<Store> {
        let shown = redact_password(location);
        let open_error = |source| StoreError::Open { location: shown.clone(), source };
        let pool = if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(location).map_err(open_error)?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await
                .map_err(open_error)?;
            Pool::Postgres(pool)
        } else {
            let connect = if location.starts_with("sqlite:") {
                SqliteConnectOptions::from_str(location).map_err(open_error)?
            } else {
                SqliteConnectOptions::new().filename(location)
            };
            let connect = sqlite_settings(connect, options);
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await
                .map_err(open_error)?;
            Pool::Sqlite(pool)
        };
        Store::migrated(pool, shown, options.acquire_timeout).await
    }

    /// A private in-memory SQLite database on one connection, for tests and tools: a
    /// transaction held open blocks every other use of the store until it ends.
    pub async fn memory() -> Result<Store> {
        let options = StoreOptions { max_connections: 1, ..StoreOptions::default() };
        let connect = sqlite_settings(SqliteConnectOptions::new().in_memory(true), &options)
            .journal_mode(SqliteJournalMode::Memory);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|source| StoreError::Open { location: ":memory:".into(), source })?;
        Store::migrated(Pool::Sqlite(pool), ":memory:".into(), options.acquire_timeout).await
    }

    async fn migrated(pool: Pool, location: String, write_wait: Duration) -> Result<Store> {
        let store = Store {
            pool,
            location: location.into(),
            outbox_wake: Arc::new(Notify::new()),
            hub_wake: Arc::new(Notify::new()),
            writers: Arc::new(Semaphore::new(1)),
            write_wait,
        };
        crate::migrate::run(&store).await?;
        Ok(store)
    }

    /// Which database this store speaks to.
    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Begins a read-write transaction. Dropping the [`Tx`] without
    /// [`commit`](Tx::commit) rolls it back. On SQLite it holds the database's one write
    /// lock until it ends: keep it short.
    ///
    /// Cancel-safe: the transaction is begun by a task of its own, so a caller dropped
    /// while it begins (a timeout, an aborted task) cannot leave a connection in the pool
    /// inside a transaction that still holds SQLite's write lock; the task's transaction is
    /// then dropped and rolled back.
    pub async fn begin(&self) -> Result<Tx> {
        let store = self.clone();
        tokio::spawn(async move { store.begin_here().await })
            .await
            .map_err(|_| StoreError::Database { operation: "begin", source: sqlx::Error::WorkerCrashed })?
    }

    async fn begin_here(&self) -> Result<Tx> {
        let (inner, writer) = match &self.pool {
            Pool::Sqlite(pool) => {
                let permit = tokio::time::timeout(self.write_wait, Arc::clone(&self.writers).acquire_owned())
                    .await
                    .map_err(|_| StoreError::Database { operation: "begin", source: sqlx::Error::PoolTimedOut })?
                    .ok();
                (pool.begin_with("BEGIN IMMEDIATE").await.map(TxInner::Sqlite), permit)
            }
            Pool::Postgres(pool) => (pool.begin().await.map(TxInner::Postgres), None),
        };
        let mut tx = self.tx(inner.map_err(StoreError::db("begin"))?);
        tx._writer = writer;
        Ok(tx)
    }

    fn tx(&self, inner: TxInner) -> Tx {
        Tx {
            inner,
            _writer: None,
            wake: self.outbox_wake.clone(),
            enqueued: false,
            hub_wake: self.hub_wake.clone(),
            published: false,
            audits: Vec::new(),
        }
    }

    /// Begins a read-only transaction: a consistent snapshot that takes no write lock.
    pub(crate) async fn read(&self) -> Result<Tx> {
        let inner = match &self.pool {
            Pool::Sqlite(pool) => pool.begin().await.map(TxInner::Sqlite),
            Pool::Postgres(pool) => pool
                .begin_with("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map(TxInner::Postgres),
        }
        .map_err(StoreError::db("begin"))?;
        Ok(self.tx(inner))
    }

    /// The schema version the database is at (the highest migration applied).
    pub async fn schema_version(&self) -> Result<i64> {
        let mut tx = self.read().await?;
        let row = tx
            .fetch_one("schema_version", "SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations", vec![])
            .await?;
        row.int("version")
    }

    /// Closes every connection, waiting for the ones in use to be returned.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

fn sqlite_settings(connect: SqliteConnectOptions, options: &StoreOptions) -> SqliteConnectOptions {
    connect
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout)
        // Negative: in KiB rather than pages.
        .pragma("cache_size", format!("-{}", u64::from(options.sqlite_cache_mib) * 1024))
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages.
fn redact_password(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else { return location.to_owned() };
    let Some((credentials, host)) = rest.split_once('@') else { return location.to_owned() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => location.to_owned(),
    }
}

/// A transaction. Every query of the crate runs through one; dropping it without
/// [`commit`](Tx::commit) rolls it back.
pub struct Tx {
    inner: TxInner,
    /// SQLite: this process's write permit, released after `inner` ends (fields drop in
    /// order).
    _writer: Option<OwnedSemaphorePermit>,
    wake: Arc<Notify>,
    enqueued: bool,
    hub_wake: Arc<Notify>,
    published: bool,
    /// The audit records of this transaction's changes, appended to the chain by
    /// [`Tx::commit`] just before it commits (the chain's head is then held briefly).
    pub(crate) audits: Vec<crate::audit::PendingAudit>,
}

/// A point in a transaction to roll back to ([`Tx::savepoint`]).
#[derive(Debug)]
#[must_use = "a savepoint is for rolling back to"]
pub struct Savepoint {
    /// How many audit records the transaction kept at the savepoint.
    audits: usize,
}

enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("dialect", &self.dialect()).finish_non_exhaustive()
    }
}

impl Tx {
    /// Which database the transaction runs on.
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            TxInner::Sqlite(_) => Dialect::Sqlite,
            TxInner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Commits, after appending the transaction's audit records to the chain; the outbox
    /// worker is woken if the transaction enqueued anything, the hub's delivery worker if
    /// it published an event someone listens to.
    pub async fn commit(mut self) -> Result<()> {
        self.append_audits().await?;
        match self.inner {
            TxInner::Sqlite(tx) => tx.commit().await,
            TxInner::Postgres(tx) => tx.commit().await,
        }
        .map_err(StoreError::db("commit"))?;
        if self.enqueued {
            self.wake.notify_one();
        }
        if self.published {
            self.hub_wake.notify_one();
        }
        Ok(())
    }

    /// Commits without waking this process's outbox worker, for a caller that applies
    /// what it enqueued itself at once ([`OutboxWorker::apply_now`](crate::OutboxWorker::apply_now)),
    /// so the two do not race for the row; what that leaves pending, the worker's next
    /// poll takes.
    pub async fn commit_without_waking(mut self) -> Result<()> {
        self.enqueued = false;
        self.commit().await
    }

    /// Rolls back (as dropping does, but waiting for it and reporting a failure).
    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(tx) => tx.rollback().await,
            TxInner::Postgres(tx) => tx.rollback().await,
        }
        .map_err(StoreError::db("rollback"))
    }

    /// Marks the point [`Tx::rollback_to`] goes back to: what the transaction did after it
    /// (statements and audit records) can be undone while what it did before stays, so a
    /// transaction that carries several steps keeps the earlier ones when a later one
    /// fails (on PostgreSQL also after a failed statement).
    pub async fn savepoint(&mut self) -> Result<Savepoint> {
        self.execute("savepoint", "SAVEPOINT step", vec![]).await?;
        Ok(Savepoint { audits: self.audits.len() })
    }

    /// Undoes what the transaction did since `point` (the latest savepoint not yet rolled
    /// back to); the transaction goes on.
    pub async fn rollback_to(&mut self, point: Savepoint) -> Result<()> {
        self.execute("savepoint.rollback", "ROLLBACK TO SAVEPOINT step", vec![]).await?;
        self.audits.truncate(point.audits);
        Ok(())
    }

    /// Notes that an outbox item was enqueued, so the commit wakes the worker.
    pub(crate) fn enqueued_outbox_item(&mut self) {
        self.enqueued = true;
    }

    /// Notes that an event with deliveries was published, so the commit wakes the hub.
    pub(crate) fn published_event(&mut self) {
        self.published = true;
    }

    /// Runs one statement; returns the number of rows it changed.
    pub(crate) async fn execute(&mut self, operation: &'static str, sql: &str, args: Vec<Arg>) -> Result<u64> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => {
                bind_sqlite(sqlx::query(sql), args).execute(&mut **tx).await.map(|r| r.rows_affected())
            }
            TxInner::Postgres(tx) => {
                bind_postgres(sqlx::query(sql), args).execute(&mut **tx).await.map(|r| r.rows_affected())
            }
        }
        .map_err(StoreError::db(operation))
    }

    /// Runs one statement that returns at most one row.
    pub(crate) async fn fetch_optional(
        &mut self,
        operation: &'static str,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<Row>> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => bind_sqlite(sqlx::query(sql), args)
                .fetch_optional(&mut **tx)
                .await
                .map(|row| row.map(|row| Row::sqlite(row, operation))),
            TxInner::Postgres(tx) => bind_postgres(sqlx::query(sql), args)
                .fetch_optional(&mut **tx)
                .await
                .map(|row| row.map(|row| Row::postgres(row, operation))),
        }
        .map_err(StoreError::db(operation))
    }

    /// Runs one statement that returns exactly one row.
    pub(crate) async fn fetch_one(&mut self, operation: &'static str, sql: &str, args: Vec<Arg>) -> Result<Row> {
        self.fetch_optional(operation, sql, args)
            .await?
            .ok_or(StoreError::Database { operation, source: sqlx::Error::RowNotFound })
    }

    /// Runs one statement and returns all its rows (bound the query with `LIMIT`).
    pub(crate) async fn fetch_all(&mut self, operation: &'static str, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => bind_sqlite(sqlx::query(sql), args)
                .fetch_all(&mut **tx)
                .await
                .map(|rows| rows.into_iter().map(|row| Row::sqlite(row, operation)).collect()),
            TxInner::Postgres(tx) => bind_postgres(sqlx::query(sql), args)
                .fetch_all(&mut **tx)
                .await
                .map(|rows| rows.into_iter().map(|row| Row::postgres(row, operation)).collect()),
        }
        .map_err(StoreError::db(operation))
    }

    /// Runs a script of several statements without arguments (migrations, test DDL).
    pub(crate) async fn execute_script(&mut self, operation: &'static str, sql: &str) -> Result<()> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => sqlx::raw_sql(sql).execute(&mut **tx).await.map(drop),
            TxInner::Postgres(tx) => sqlx::raw_sql(sql).execute(&mut **tx).await.map(drop),
        }
        .map_err(StoreError::db(operation))
    }
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(redact_password("postgres://bss:s3cret@db:5432/tollgate"), "postgres://bss:***@db:5432/tollgate");
        assert_eq!(redact_password("postgres://bss@db/tollgate"), "postgres://bss@db/tollgate");
        assert_eq!(redact_password("/var/lib/tollgate/bss.sqlite3"), "/var/lib/tollgate/bss.sqlite3");
    }
}

//! Test support (feature `testing`), for this crate's tests and the BSS crates built on
//! it: every store test runs twice, on a fresh SQLite file and on a fresh PostgreSQL
//! database ([`store_test!`](crate::store_test)).
//!
//! PostgreSQL comes from a throw-away cluster, one per test binary, started on first use:
//! `initdb` and `pg_ctl` from `/usr/lib/postgresql/<newest>/bin` (or `$TOLLGATE_PG_BIN`),
//! a temporary directory, `127.0.0.1` on a free port, the socket in the directory, no fsync.
//! `initdb` refuses to run as root, so as root the server runs as the `postgres` user
//! (Debian's package creates it) through `runuser`. Each test gets a database of its own.
//! A watchdog shell holds the read end of a pipe whose write end only the test process
//! has: when the process ends, however it ends, the watchdog stops the cluster and
//! deletes the directory. Without PostgreSQL binaries the PostgreSQL half of each test
//! fails when `CI` is set, and is skipped with a loud note otherwise.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;
use sqlx::Connection as _;

use crate::error::Result;
use crate::sql::{args, Dialect};
use crate::versioned::{delete_versioned, update_versioned, Version, Versioned};
use crate::{Store, StoreOptions, Tx};

/// Runs a test body on SQLite and on PostgreSQL, as two tests `<name>::sqlite` and
/// `<name>::postgres`, with `$store` a [`TestStore`] (a fresh, migrated database):
///
/// ```text
/// store_test! {
///     async fn money_round_trips(store) {
///         let mut tx = store.begin().await.expect("begin");
///         // …
///     }
/// }
/// ```
/// The calling crate needs `tokio` (macros, multi-threaded runtime) as a dev-dependency.
#[macro_export]
macro_rules! store_test {
    ($(#[$meta:meta])* async fn $name:ident($store:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $store = $crate::testing::sqlite().await;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($store) = $crate::testing::postgres().await else { return };
                $body
            }
        }
    };
}

/// A fresh, migrated store, with what it needs kept alive (its temporary directory).
#[derive(Debug)]
pub struct TestStore {
    store: Store,
    location: String,
    _dir: Option<TempDir>,
}

impl Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestStore {
    /// The path or URL the store was opened at.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A second, independent store (its own pool) on the same database: a second server.
    pub async fn open_again(&self) -> Store {
        Store::open_with(&self.location, &test_options()).await.expect("open the test database again")
    }
}

fn test_options() -> StoreOptions {
    StoreOptions { max_connections: 4, ..StoreOptions::default() }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique in this machine for a while: process id, time and a counter.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A directory removed, with its contents, on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh SQLite store in a file of its own (WAL mode, as in production).
pub async fn sqlite() -> TestStore {
    let dir = TempDir::new("tollgate-store-test");
    let location = dir.0.join(crate::SQLITE_FILE_NAME).display().to_string();
    let store = Store::open_with(&location, &test_options()).await.expect("open a SQLite test store");
    TestStore { store, location, _dir: Some(dir) }
}

/// A fresh PostgreSQL store in a database of its own on the test binary's cluster;
/// `None` (after a loud note) when PostgreSQL is not installed and `CI` is not set.
pub async fn postgres() -> Option<TestStore> {
    let cluster = match shared_cluster() {
        Ok(cluster) => cluster,
        Err(Unavailable::NotInstalled(why)) => {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL is required in CI ({why}): run scripts/install-test-deps");
            }
            // Once per test binary, and past libtest's capture (which takes `eprintln!`).
            static NOTED: std::sync::Once = std::sync::Once::new();
            NOTED.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPING the PostgreSQL half of every store test in this binary: {why}.\n\
                     *** Run scripts/install-test-deps to install PostgreSQL (CI fails without it).\n"
                );
            });
            return None;
        }
        Err(Unavailable::Failed(why)) => panic!("the test PostgreSQL cluster did not start: {why}"),
    };
    let location = cluster.create_database().await;
    let store = Store::open_with(&location, &test_options()).await.expect("open a PostgreSQL test store");
    Some(TestStore { store, location, _dir: None })
}

/// Why there is no cluster.
#[derive(Debug, Clone)]
enum Unavailable {
    /// No PostgreSQL binaries on this machine.
    NotInstalled(String),
    /// They are there, but the cluster would not start.
    Failed(String),
}

fn shared_cluster() -> Result<&'static PgCluster, Unavailable> {
    static CLUSTER: OnceLock<Result<PgCluster, Unavailable>> = OnceLock::new();
    CLUSTER.get_or_init(PgCluster::start).as_ref().map_err(Clone::clone)
}

/// A PostgreSQL cluster of its own in a temporary directory, stopped and deleted when
/// dropped or when the process ends.
#[derive(Debug)]
pub struct PgCluster {
    port: u16,
    /// The watchdog: closing its standard input stops the cluster and deletes the directory.
    watchdog: Mutex<Option<Child>>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and `pg_ctl`, or
/// `$TOLLGATE_PG_BIN`.
fn postgres_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TOLLGATE_PG_BIN") {
        let dir = PathBuf::from(dir);
        return (dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()).then_some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn output(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let out = command.stdin(Stdio::null()).output().map_err(|error| format!("{shown}: {error}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{shown} exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl PgCluster {
    /// Starts a cluster (see the module documentation).
    fn start() -> Result<PgCluster, Unavailable> {
        let bin = postgres_bin().ok_or_else(|| {
            Unavailable::NotInstalled("no initdb and pg_ctl under /usr/lib/postgresql/*/bin or $TOLLGATE_PG_BIN".into())
        })?;
        let as_root = output(Command::new("id").arg("-u")).map_err(Unavailable::Failed)?.trim() == "0";
        if as_root && output(Command::new("id").args(["-u", "postgres"])).is_err() {
            return Err(Unavailable::Failed(
                "running as root, and initdb refuses root, but there is no `postgres` user to run it as".into(),
            ));
        }
        // As root: run PostgreSQL's programs as `postgres`, in a directory it owns.
        let program = |name: &str| -> Command {
            let path = bin.join(name);
            if as_root {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(path);
                command
            } else {
                Command::new(path)
            }
        };
        let dir = std::env::temp_dir().join(unique("tollgate-pg"));
        std::fs::create_dir_all(&dir).map_err(|error| Unavailable::Failed(format!("{}: {error}", dir.display())))?;
        let cleanup = |why: String| {
            let _ = std::fs::remove_dir_all(&dir);
            Unavailable::Failed(why)
        };
        if as_root {
            output(Command::new("chown").arg("postgres:").arg(&dir)).map_err(cleanup)?;
        }
        let data = dir.join("data");
        output(program("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]))
        .map_err(cleanup)?;
        // The port is free when asked, and may be taken before the server binds it: retry.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()) {
                Ok(address) => address.port(),
                Err(error) => return Err(cleanup(format!("no free port: {error}"))),
            };
            let server_options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off -c max_connections=400 -c shared_buffers=32MB",
                dir.display()
            );
            let started = output(program("pg_ctl").arg("-D").arg(&data).arg("-l").arg(dir.join("server.log")).args([
                "-w",
                "-t",
                "60",
                "-o",
                &server_options,
                "start",
            ]));
            match started {
                Ok(_) => {
                    let watchdog = spawn_watchdog(&bin, as_root, &data, &dir).map_err(cleanup)?;
                    return Ok(PgCluster { port, watchdog: Mutex::new(Some(watchdog)) });
                }
                Err(error) => {
                    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                    last_error = format!("{error}\n{log}");
                }
            }
        }
        Err(cleanup(last_error))
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database; returns its URL.
    pub async fn create_database(&self) -> String {
        let name = unique("test");
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres")).await.expect("connect to the test cluster");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create a test database");
        let _ = admin.close().await;
        self.url(&name)
    }
}

/// The shell that stops the cluster and deletes its directory once its standard input
/// reaches end of file (the test process closed it or ended). It ignores SIGINT, so a
/// Ctrl-C in the terminal still lets it clean up.
fn spawn_watchdog(bin: &Path, as_root: bool, data: &Path, dir: &Path) -> Result<Child, String> {
    let as_postgres = if as_root { "runuser -u postgres -- " } else { "" };
    let script = format!(
        "trap '' INT; read _ignored; {as_postgres}\"$0\" -D \"$1\" -m immediate -w stop >/dev/null 2>&1; rm -rf \"$2\""
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(bin.join("pg_ctl"))
        .arg(data)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("start the cluster's watchdog: {error}"))
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let watchdog =
            self.watchdog.get_mut().map(Option::take).unwrap_or_else(|poisoned| poisoned.into_inner().take());
        if let Some(mut watchdog) = watchdog {
            if let Some(mut stdin) = watchdog.stdin.take() {
                let _ = stdin.write_all(b"\n");
            }
            let _ = watchdog.wait();
        }
    }
}

/// Runs `sql` (several statements allowed) in a transaction of its own and commits: what a
/// DBA at a SQL prompt could do, for tests that tamper with the database.
pub async fn raw_sql(store: &Store, sql: &str) -> Result<()> {
    let mut tx = store.begin().await?;
    tx.execute_script("testing.raw_sql", sql).await?;
    tx.commit().await
}

/// Runs `sql` (several statements allowed, no rows returned) inside the caller's
/// transaction: a test that holds locks another transaction will meet.
pub async fn raw_sql_in(tx: &mut Tx, sql: &str) -> Result<()> {
    tx.execute_script("testing.raw_sql", sql).await
}

/// How many sessions of this PostgreSQL database are waiting for a lock another holds
/// (0 on SQLite, whose writers queue for one permit): a test waits until its
/// transaction is blocked where it means it to be.
pub async fn sessions_waiting_for_a_lock(store: &Store) -> Result<i64> {
    if store.dialect() == Dialect::Sqlite {
        return Ok(0);
    }
    let mut tx = store.begin().await?;
    let row = tx
        .fetch_one(
            "testing.waiting",
            "SELECT COUNT(*)::bigint AS n FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            vec![],
        )
        .await?;
    tx.rollback().await?;
    row.int("n")
}

/// The kind of a column, the same for both dialects' spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ColumnKind {
    Integer,
    Text,
    Decimal,
}

/// A column as the schema comparison sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub kind: ColumnKind,
    pub nullable: bool,
}

/// The tables and columns of a store's database, and its index names: what the two
/// dialects' migrations must agree on. Panics on a column type outside the few the store
/// uses (add it to the mapping along with the migration that needs it).
pub async fn schema(store: &Store) -> Result<(BTreeMap<(String, String), Column>, Vec<String>)> {
    let mut tx = store.begin().await?;
    let (columns_sql, indexes_sql) = match store.dialect() {
        Dialect::Sqlite => (
            "SELECT m.name AS table_name, p.name AS column_name, p.type AS column_type,
                    p.\"notnull\" + p.pk AS not_null
             FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
        ),
        Dialect::Postgres => (
            "SELECT table_name::text AS table_name, column_name::text AS column_name,
                    data_type::text AS column_type,
                    CASE WHEN is_nullable = 'YES' THEN 0 ELSE 1 END::bigint AS not_null
             FROM information_schema.columns WHERE table_schema = current_schema()",
            "SELECT indexname::text AS name FROM pg_indexes
             WHERE schemaname = current_schema() AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'
             ORDER BY indexname",
        ),
    };
    let mut columns = BTreeMap::new();
    for row in tx.fetch_all("testing.schema", columns_sql, vec![]).await? {
        let declared = row.text("column_type")?;
        let kind = match declared.to_ascii_lowercase().as_str() {
            "integer" | "bigint" => ColumnKind::Integer,
            "text" => ColumnKind::Text,
            "numeric" | "decimal_text" => ColumnKind::Decimal,
            other => panic!("column type {other:?} is not one the store uses: map it in testing::schema"),
        };
        let column = Column { kind, nullable: row.int("not_null")? == 0 };
        columns.insert((row.text("table_name")?, row.text("column_name")?), column);
    }
    let indexes = tx.fetch_all("testing.schema", indexes_sql, vec![]).await?;
    let indexes = indexes.iter().map(|row| row.text("name")).collect::<Result<Vec<_>>>()?;
    tx.rollback().await?;
    Ok((columns, indexes))
}

/// A table made only in tests, exercising money and versioned rows as the BSS tables
/// will: `probe (id, amount, version)`, `amount` in the dialect's money type.
pub mod probe {
    use super::*;

    /// Creates the table.
    pub async fn create(store: &Store) -> Result<()> {
        let money = store.dialect().money_type();
        let check = match store.dialect() {
            Dialect::Sqlite => " CHECK (typeof(amount) = 'text')",
            Dialect::Postgres => "",
        };
        raw_sql(
            store,
            &format!(
                "CREATE TABLE probe (id TEXT PRIMARY KEY, amount {money} NOT NULL{check}, version BIGINT NOT NULL)"
            ),
        )
        .await
    }

    /// Inserts a row at [`Version::FIRST`].
    pub async fn insert(tx: &mut Tx, id: &str, amount: Decimal) -> Result<Version> {
        tx.execute("probe.insert", "INSERT INTO probe (id, amount, version) VALUES ($1, $2, 1)", args![id, amount])
            .await?;
        Ok(Version::FIRST)
    }

    /// Reads a row.
    pub async fn get(store: &Store, id: &str) -> Result<Option<Versioned<Decimal>>> {
        let mut tx = store.read().await?;
        let row = tx.fetch_optional("probe.get", "SELECT amount, version FROM probe WHERE id = $1", args![id]).await?;
        row.map(|row| {
            let version = Version::new(row.int("version")?).ok_or_else(|| row.corrupt("version", "below 1".into()))?;
            Ok(Versioned { value: row.money("amount")?, version })
        })
        .transpose()
    }

    /// Changes the amount if the row is at `expected`.
    pub async fn update(tx: &mut Tx, id: &str, expected: Version, amount: Decimal) -> Result<Version> {
        update_versioned(tx, "probe", "probe", id, expected, "amount = $3", args![amount]).await
    }

    /// Deletes the row if it is at `expected`.
    pub async fn delete(tx: &mut Tx, id: &str, expected: Version) -> Result<()> {
        delete_versioned(tx, "probe", "probe", id, expected).await
    }
}

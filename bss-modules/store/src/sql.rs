//! The one place that knows there are two SQL dialects. Queries elsewhere in the crate are
//! written once, as SQL text with `$1, $2, …` placeholders (both SQLite and PostgreSQL
//! accept them, and both accept `RETURNING` and `INSERT … ON CONFLICT … DO …`), with their
//! arguments as [`Arg`] values; [`Tx`](crate::Tx) runs them on whichever driver the store
//! opened and hands back [`Row`]s whose typed getters hide the encodings that differ:
//!
//! - money is `NUMERIC` in PostgreSQL, bound and read as `rust_decimal::Decimal`, and
//!   `DECIMAL_TEXT` in SQLite (TEXT affinity: the canonical decimal string, never `REAL`),
//!   so a value comes back with the same digits and scale on both (a zero comes back as
//!   `0`, its scale dropped, on both: sqlx's `NUMERIC` codec drops it);
//! - instants are `BIGINT` milliseconds since the Unix epoch (UTC) on both;
//! - JSON is `TEXT` on both, so the audit hash covers exactly the stored bytes;
//! - row locks (`FOR UPDATE`, `FOR UPDATE SKIP LOCKED`) exist only in PostgreSQL; SQLite has
//!   one writer at a time ([`Store::begin`](crate::Store::begin) takes the write lock up
//!   front), so [`Dialect`] turns them into nothing there.
//!
//! Compare and add money in Rust, not in SQL: on SQLite the column is text.
//!
//! Bulk statements with thousands of arguments (`bulk.rs`) write `?` on SQLite instead:
//! binding numbered ones costs time quadratic in their number there.

use rust_decimal::Decimal;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Postgres, Row as _, Sqlite};

use crate::error::{Result, StoreError};

/// Which database a store speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite, embedded: a file in the data directory, in WAL mode.
    Sqlite,
    /// PostgreSQL, for production and for several servers sharing one database.
    Postgres,
}

impl Dialect {
    /// The suffix of a `SELECT` that locks the selected rows until the transaction ends.
    pub(crate) fn lock_rows(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// The suffix of a `SELECT` that locks the selected rows and skips rows another
    /// transaction holds (a queue claim that two servers can run at once).
    pub(crate) fn lock_rows_skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// A common table expression `series(n)` of the integers from `$first` to `$last`
    /// (placeholders given by number), both included, to put before an `INSERT … SELECT`:
    /// PostgreSQL's `generate_series`, a recursive expression in SQLite (which has no
    /// series function built in).
    pub(crate) fn integer_series(self, first: usize, last: usize) -> String {
        match self {
            Dialect::Sqlite => format!(
                "WITH RECURSIVE series(n) AS (SELECT CAST(${first} AS BIGINT) UNION ALL SELECT n + 1 FROM series WHERE n < ${last})"
            ),
            Dialect::Postgres => {
                format!("WITH series(n) AS (SELECT generate_series(CAST(${first} AS BIGINT), CAST(${last} AS BIGINT)))")
            }
        }
    }

    /// The suffix of a `SELECT` that keeps the selected rows from being deleted (or their
    /// key changed) until the transaction ends, without blocking other readers that do the
    /// same; SQLite's one writer needs nothing.
    pub(crate) fn lock_rows_shared(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR KEY SHARE",
        }
    }

    /// The column type of an exact decimal (money).
    pub fn money_type(self) -> &'static str {
        match self {
            Dialect::Sqlite => "DECIMAL_TEXT",
            Dialect::Postgres => "NUMERIC",
        }
    }
}

/// One argument of a query, encoded per dialect when bound.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Money(Option<Decimal>),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Arg::Int(Some(value))
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Self {
        Arg::Int(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Arg::Text(Some(value.to_owned()))
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Arg::Text(Some(value))
    }
}

impl From<Option<&str>> for Arg {
    fn from(value: Option<&str>) -> Self {
        Arg::Text(value.map(str::to_owned))
    }
}

impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Self {
        Arg::Text(value)
    }
}

impl From<Decimal> for Arg {
    fn from(value: Decimal) -> Self {
        Arg::Money(Some(value))
    }
}

impl From<Option<Decimal>> for Arg {
    fn from(value: Option<Decimal>) -> Self {
        Arg::Money(value)
    }
}

/// `args![a, b, c]`: a query's arguments, each converted with `Arg::from`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::sql::Arg::from($value)),*]
    };
}
pub(crate) use args;

/// Money as SQLite keeps it: the canonical decimal string (`Display` keeps every digit and
/// the scale), except that zero is `0` whatever its scale, as PostgreSQL hands it back
/// through sqlx's `NUMERIC` codec, so both dialects read back the same value.
fn money_text(amount: Decimal) -> String {
    if amount.is_zero() {
        "0".to_owned()
    } else {
        amount.to_string()
    }
}

pub(crate) fn bind_sqlite<'q>(
    mut query: Query<'q, Sqlite, SqliteArguments<'q>>,
    args: Vec<Arg>,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    for arg in args {
        query = match arg {
            Arg::Int(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
            Arg::Money(value) => query.bind(value.map(money_text)),
        };
    }
    query
}

pub(crate) fn bind_postgres<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    args: Vec<Arg>,
) -> Query<'q, Postgres, PgArguments> {
    for arg in args {
        query = match arg {
            Arg::Int(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
            Arg::Money(value) => query.bind(value),
        };
    }
    query
}

/// One result row, read with typed getters that name the column on failure.
pub(crate) struct Row {
    inner: RowInner,
    operation: &'static str,
}

enum RowInner {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row").field("operation", &self.operation).finish_non_exhaustive()
    }
}

impl Row {
    pub(crate) fn sqlite(row: SqliteRow, operation: &'static str) -> Row {
        Row { inner: RowInner::Sqlite(row), operation }
    }

    pub(crate) fn postgres(row: PgRow, operation: &'static str) -> Row {
        Row { inner: RowInner::Postgres(row), operation }
    }

    pub(crate) fn opt_int(&self, column: &'static str) -> Result<Option<i64>> {
        match &self.inner {
            RowInner::Sqlite(row) => row.try_get(column),
            RowInner::Postgres(row) => row.try_get(column),
        }
        .map_err(StoreError::db(self.operation))
    }

    pub(crate) fn int(&self, column: &'static str) -> Result<i64> {
        self.opt_int(column)?.ok_or_else(|| self.corrupt(column, "NULL where a number is required".into()))
    }

    pub(crate) fn opt_text(&self, column: &'static str) -> Result<Option<String>> {
        match &self.inner {
            RowInner::Sqlite(row) => row.try_get(column),
            RowInner::Postgres(row) => row.try_get(column),
        }
        .map_err(StoreError::db(self.operation))
    }

    pub(crate) fn text(&self, column: &'static str) -> Result<String> {
        self.opt_text(column)?.ok_or_else(|| self.corrupt(column, "NULL where text is required".into()))
    }

    pub(crate) fn opt_money(&self, column: &'static str) -> Result<Option<Decimal>> {
        match &self.inner {
            RowInner::Sqlite(row) => {
                let text: Option<String> = row.try_get(column).map_err(StoreError::db(self.operation))?;
                text.map(|text| {
                    Decimal::from_str_exact(&text)
                        .map_err(|error| self.corrupt(column, format!("{text:?} is not a decimal: {error}")))
                        .and_then(|amount| {
                            // Refuse anything that would not read back with the same digits.
                            if amount.to_string() == text {
                                Ok(amount)
                            } else {
                                Err(self.corrupt(column, format!("{text:?} is not a canonical decimal")))
                            }
                        })
                })
                .transpose()
            }
            RowInner::Postgres(row) => row.try_get(column).map_err(StoreError::db(self.operation)),
        }
    }

    pub(crate) fn money(&self, column: &'static str) -> Result<Decimal> {
        self.opt_money(column)?.ok_or_else(|| self.corrupt(column, "NULL where money is required".into()))
    }

    pub(crate) fn corrupt(&self, column: &'static str, detail: String) -> StoreError {
        StoreError::Corrupt { operation: self.operation, column, detail }
    }
}

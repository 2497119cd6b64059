//! The store's one error type. Each variant names what failed (the operation, the entity and
//! its id, the versions compared) so the API layer can map it to a status without parsing
//! text: `NotFound` → 404, `StaleVersion` → 412, `Conflict` → 409, `Invalid` → 400.

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or connected to.
    #[error("cannot open the store at {location}: {source}")]
    Open {
        /// The path or URL, with any password removed.
        location: String,
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed; `operation` names the store operation that ran it.
    #[error("database error in {operation}: {source}")]
    Database {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// The database was migrated by a newer build than this one.
    #[error("the database's schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    /// An applied migration's text differs from the one this build carries.
    #[error("migration {version} ({description}) was changed after it was applied to this database")]
    MigrationChanged { version: i64, description: &'static str },
    /// No row with this id.
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    /// An optimistic update named a version that is no longer current.
    #[error("{entity} {id} is at version {found}, not the expected {expected}")]
    StaleVersion { entity: &'static str, id: String, expected: i64, found: i64 },
    /// A unique key is already taken by a different value (an idempotency key reused for
    /// another operation, for example).
    #[error("{what} {key} already exists with different content")]
    Conflict { what: &'static str, key: String },
    /// A concurrent transaction took the same unique key first (two requests reserving for
    /// one owner at once, on PostgreSQL): the transaction is spoilt; run it again, and it
    /// finds what the other one committed.
    #[error("{what} {key} was taken by a concurrent transaction: try again")]
    Raced { what: &'static str, key: String },
    /// The database rolled the transaction back because it collided with a concurrent one
    /// (PostgreSQL `40P01` deadlock or `40001` serialization failure, SQLite busy): nothing
    /// of it was kept; run it again.
    #[error("{operation} collided with a concurrent transaction and was rolled back: try again")]
    Contended { operation: &'static str },
    /// A value refused before it reached the database.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A value read back from the database does not decode (money that is not a decimal,
    /// JSON that does not parse, an unknown enum name).
    #[error("corrupt value in column {column} read by {operation}: {detail}")]
    Corrupt { operation: &'static str, column: &'static str, detail: String },
    /// The operating system's random generator failed (creating a token).
    #[error("the system random generator failed")]
    Random,
}

impl StoreError {
    /// Wraps a sqlx error with the operation that saw it.
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| {
            if is_contention(&source) {
                StoreError::Contended { operation }
            } else {
                StoreError::Database { operation, source }
            }
        }
    }

    /// Whether running the transaction again may succeed: it collided with another
    /// ([`StoreError::Contended`]) or lost a race for a unique key ([`StoreError::Raced`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Contended { .. } | StoreError::Raced { .. })
    }

    /// Whether the database refused a duplicate in a unique column or index.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database { source: sqlx::Error::Database(error), .. } if error.is_unique_violation())
    }
}

/// PostgreSQL's deadlock (`40P01`) and serialization failure (`40001`); SQLite's busy
/// (after the busy timeout) and locked, with their extended codes (the primary code is
/// the low byte).
fn is_contention(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(error) = error else { return false };
    if let Some(postgres) = error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return matches!(postgres.code(), "40P01" | "40001");
    }
    if error.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return error.code().and_then(|code| code.parse::<i32>().ok()).is_some_and(|code| matches!(code & 0xff, 5 | 6));
    }
    false
}

/// Shorthand used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

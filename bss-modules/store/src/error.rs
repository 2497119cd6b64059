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
        move |source| StoreError::Database { operation, source }
    }

    /// Whether the database refused a duplicate in a unique column or index.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database { source: sqlx::Error::Database(error), .. } if error.is_unique_violation())
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

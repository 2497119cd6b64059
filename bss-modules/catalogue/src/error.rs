//! The catalogue's one error type. Each variant names the field, the entity or the two
//! states concerned, so the API maps it to a status without reading text: `Invalid` → 400,
//! `NotFound` → 404, `InvalidTransition`, `Frozen`, `Conflict` → 409, `StaleVersion` → 412,
//! `PlanRejected` → 422.

use tollgate_store::StoreError;

/// Everything a catalogue operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogueError {
    /// A field is missing, of the wrong type or out of range.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// No item of this kind with this id.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The lifecycle does not go from `from` to `to`.
    #[error("lifecycleStatus cannot go from {from:?} to {to:?}")]
    InvalidTransition { from: String, to: String },
    /// A field that cannot change once an item is `status` (Active and after).
    #[error("{field} cannot change while the item is {status:?}")]
    Frozen { field: String, status: String },
    /// The change conflicts with other items (a delete of a referred-to item, a plan
    /// version recorded with another source).
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
    /// The write named a version that is no longer current.
    #[error("{kind} {id} is at version {found}, not the expected {expected}")]
    StaleVersion { kind: &'static str, id: String, expected: i64, found: i64 },
    /// Activation compiled a usage price's tariff plan and it was refused: each problem
    /// with file, line, column and field, as `tollgate tariff check` prints them.
    #[error("{field}: the tariff plan is refused: {}", problems.join("; "))]
    PlanRejected { field: String, problems: Vec<String> },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl CatalogueError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CatalogueError {
        CatalogueError::Invalid { field: field.into(), reason: reason.into() }
    }

    /// The store's error in the catalogue's terms, for an item of `kind`.
    pub(crate) fn from_store(kind: &'static str, error: StoreError) -> CatalogueError {
        match error {
            StoreError::NotFound { id, .. } => CatalogueError::NotFound { kind, id },
            StoreError::StaleVersion { id, expected, found, .. } => {
                CatalogueError::StaleVersion { kind, id, expected, found }
            }
            StoreError::Conflict { what, key } => CatalogueError::Conflict { field: what.to_owned(), reason: key },
            StoreError::Invalid { field, reason } => CatalogueError::Invalid { field: field.to_owned(), reason },
            other => CatalogueError::Store(other),
        }
    }
}

impl From<StoreError> for CatalogueError {
    fn from(error: StoreError) -> Self {
        CatalogueError::Store(error)
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = CatalogueError> = std::result::Result<T, E>;

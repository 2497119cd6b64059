//! The customers crate's one error type. Each variant names the field or the entity, so the
//! API maps it to a status without reading text: `Invalid` → 400, `Forbidden` → 403,
//! `NotFound` → 404, `Conflict` → 409, `StaleVersion` → 412, `EngineUnavailable` → 503.

use tollgate_store::StoreError;

/// Everything a customer or billing account operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CustomersError {
    /// A field is missing, of the wrong type or out of range.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The caller may not do this to this entity (a partner outside its hierarchy, finance
    /// changing more than money terms).
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    /// No entity of this kind with this id.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The change conflicts with the entity's state or with others.
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
    /// The write named a version that is no longer current.
    #[error("{kind} {id} is at version {found}, not the expected {expected}")]
    StaleVersion { kind: &'static str, id: String, expected: i64, found: i64 },
    /// The engine could not answer (stopped, unreachable, or it has not created the
    /// account yet); try again later.
    #[error("the engine cannot answer now: {reason}")]
    EngineUnavailable { reason: String },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl CustomersError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CustomersError {
        CustomersError::Invalid { field: field.into(), reason: reason.into() }
    }

    pub(crate) fn forbidden(reason: impl Into<String>) -> CustomersError {
        CustomersError::Forbidden { reason: reason.into() }
    }

    /// The store's error in this crate's terms, for an entity of `kind`.
    pub(crate) fn from_store(kind: &'static str, error: StoreError) -> CustomersError {
        match error {
            StoreError::NotFound { id, .. } => CustomersError::NotFound { kind, id },
            StoreError::StaleVersion { id, expected, found, .. } => {
                CustomersError::StaleVersion { kind, id, expected, found }
            }
            StoreError::Conflict { what, key } => CustomersError::Conflict { field: what.to_owned(), reason: key },
            StoreError::Invalid { field, reason } => CustomersError::Invalid { field: field.to_owned(), reason },
            other => CustomersError::Store(other),
        }
    }
}

impl From<StoreError> for CustomersError {
    fn from(error: StoreError) -> Self {
        CustomersError::Store(error)
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = CustomersError> = std::result::Result<T, E>;

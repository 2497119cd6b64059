//! The orders crate's one error type. Each variant names the field, the entity or both
//! states, so the API maps it to a status without reading text: `Invalid` → 400,
//! `Forbidden` → 403, `NotFound` → 404, `InvalidTransition` and `Conflict` → 409,
//! `StaleVersion` → 412.

use tollgate_store::StoreError;

/// Everything an order operation can refuse or fail with. A step of the workflow that
/// the network or the engine refuses is not an error: it is the order's outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrdersError {
    /// A field is missing, of the wrong type, out of range, or names something that does
    /// not fit (an offering that is not active, a number that is not available).
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The caller may not do this (a partner outside its hierarchy).
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    /// No entity of this kind with this id.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// A state change the state machine does not allow.
    #[error("a {what} cannot go from {from:?} to {to:?}")]
    InvalidTransition { what: &'static str, from: String, to: String },
    /// The change conflicts with the entity's state or with others.
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
    /// The write named a version that is no longer current.
    #[error("{kind} {id} is at version {found}, not the expected {expected}")]
    StaleVersion { kind: &'static str, id: String, expected: i64, found: i64 },
    /// An idempotency key sent again with a request other than the one it placed an
    /// order with.
    #[error("idempotency key {key:?} placed order {order} with another request")]
    KeyReused { key: String, order: String },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl OrdersError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> OrdersError {
        OrdersError::Invalid { field: field.into(), reason: reason.into() }
    }

    pub(crate) fn forbidden(reason: impl Into<String>) -> OrdersError {
        OrdersError::Forbidden { reason: reason.into() }
    }

    pub(crate) fn conflict(field: impl Into<String>, reason: impl Into<String>) -> OrdersError {
        OrdersError::Conflict { field: field.into(), reason: reason.into() }
    }

    /// The store's error in this crate's terms, for an entity of `kind`.
    pub(crate) fn from_store(kind: &'static str, error: StoreError) -> OrdersError {
        match error {
            StoreError::NotFound { id, .. } => OrdersError::NotFound { kind, id },
            StoreError::StaleVersion { id, expected, found, .. } => {
                OrdersError::StaleVersion { kind, id, expected, found }
            }
            StoreError::Conflict { what, key } => OrdersError::Conflict { field: what.to_owned(), reason: key },
            StoreError::Invalid { field, reason } => OrdersError::Invalid { field: field.to_owned(), reason },
            other => OrdersError::Store(other),
        }
    }
}

impl From<StoreError> for OrdersError {
    fn from(error: StoreError) -> Self {
        OrdersError::Store(error)
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = OrdersError> = std::result::Result<T, E>;

//! The inventory crate's one error type. Each variant names the field, the file line or the
//! state, so the API maps it to a status without reading text: `Invalid` and `Line` → 400,
//! `NotFound` → 404, `InvalidTransition` (naming the state) and `Conflict` → 409,
//! `StaleVersion` → 412; `Key` is a configuration problem (the key that seals SIM keys).
//! A number or SIM that is not there to reserve is an answer
//! ([`Reservation::Exhausted`](crate::Reservation)), not an error.

use tollgate_store::StoreError;

use crate::lifecycle::{Action, ResourceState};

/// Everything an inventory operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// A field is missing, of the wrong type or out of range.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A line of a loaded file is wrong: its number (from 1) and the field.
    #[error("line {line}, {field}: {reason}")]
    Line { line: usize, field: String, reason: String },
    /// No resource with this id.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The resource's state does not allow the step.
    #[error("{id} is {state}: it cannot be {}", action.past())]
    InvalidTransition { id: String, state: ResourceState, action: Action },
    /// The change conflicts with the inventory (an overlap, a taken ICCID, another owner).
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
    /// The write named a version that is no longer current.
    #[error("{kind} {id} is at version {found}, not the expected {expected}")]
    StaleVersion { kind: &'static str, id: String, expected: i64, found: i64 },
    /// The key that seals SIM keys is missing, malformed, or not the one they were sealed with.
    #[error("SIM key sealing: {reason}")]
    Key { reason: String },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl InventoryError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InventoryError {
        InventoryError::Invalid { field: field.into(), reason: reason.into() }
    }

    pub(crate) fn line(line: usize, field: impl Into<String>, reason: impl Into<String>) -> InventoryError {
        InventoryError::Line { line, field: field.into(), reason: reason.into() }
    }

    pub(crate) fn conflict(field: impl Into<String>, reason: impl Into<String>) -> InventoryError {
        InventoryError::Conflict { field: field.into(), reason: reason.into() }
    }

    /// The store's error in this crate's terms, for a resource of `kind`.
    pub(crate) fn from_store(kind: &'static str, error: StoreError) -> InventoryError {
        match error {
            StoreError::NotFound { id, .. } => InventoryError::NotFound { kind, id },
            StoreError::StaleVersion { id, expected, found, .. } => {
                InventoryError::StaleVersion { kind, id, expected, found }
            }
            StoreError::Conflict { what, key } => InventoryError::Conflict { field: what.to_owned(), reason: key },
            StoreError::Invalid { field, reason } => InventoryError::Invalid { field: field.to_owned(), reason },
            other => InventoryError::Store(other),
        }
    }
}

impl From<StoreError> for InventoryError {
    fn from(error: StoreError) -> Self {
        InventoryError::Store(error)
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = InventoryError> = std::result::Result<T, E>;

//! The hub crate's one error type. Each variant names the field or the entity, so the API
//! maps it to a status without reading text: `Invalid` → 400, `Forbidden` → 403,
//! `NotFound` → 404; `Signature` is a receiver's verdict on a delivery, `Config` a worker
//! set up with limits that cannot work.

use tollgate_store::StoreError;

/// Everything a hub operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A field of a registration is missing, malformed or out of range.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The caller may not do this (a partner registering a listener).
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    /// No listener or delivery with this id (on this API).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// A delivery's signature does not verify (see `signature.rs`).
    #[error("signature refused: {reason}")]
    Signature { reason: &'static str },
    /// The delivery worker's settings cannot work (a lease shorter than a request).
    #[error("hub configuration: {reason}")]
    Config { reason: String },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HubError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> HubError {
        HubError::Invalid { field, reason: reason.into() }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = HubError> = std::result::Result<T, E>;

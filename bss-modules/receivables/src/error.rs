//! The receivables' one error type.

use tollgate_billing::BillingError;
use tollgate_orders::OrdersError;
use tollgate_store::StoreError;

/// Everything recording payments, importing statements and dunning can refuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceivablesError {
    /// A field of a request is missing, malformed or out of range (its name given).
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// What the request names does not exist (or is outside the caller's reach).
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    /// The caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Orders(#[from] OrdersError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReceivablesError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ReceivablesError {
        ReceivablesError::Invalid { field: field.into(), reason: reason.into() }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = ReceivablesError> = std::result::Result<T, E>;

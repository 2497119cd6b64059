//! The billing core's one error type. Every variant names the input it refuses (a path
//! such as `accounts[1].recurring[0].active[2]`), so a bill run can report the account
//! and the field without reading text. An invoice that comes to zero, or a discount larger
//! than the charges it applies to, is a result, not an error.

/// Everything the billing core can refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BillingError {
    /// A currency code that is not an ISO 4217 currency with minor units.
    #[error("{field}: unknown currency {code:?}")]
    UnknownCurrency { field: String, code: String },
    /// A field is missing, malformed or out of range.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The tax profile has no rate for this jurisdiction and service class.
    #[error("{field}: tax profile {profile:?} has no rate for jurisdiction {jurisdiction:?} and service class {service_class:?}")]
    NoTaxRate { field: String, profile: String, jurisdiction: String, service_class: String },
    /// More items than the named limit allows.
    #[error("{field}: more than {limit} entries")]
    TooMany { field: String, limit: usize },
    /// A sum or product does not fit a 96-bit decimal (amounts far beyond any bill).
    #[error("{field}: the amount overflows")]
    Overflow { field: String },
    /// The general-ledger chart has no account code for a charge type or tax code.
    #[error("no general-ledger account for {what} {key:?}")]
    NoAccountCode { what: &'static str, key: String },
    /// Writing an output (the journal's CSV) failed.
    #[error("{what}: {reason}")]
    Output { what: &'static str, reason: String },
}

impl BillingError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> BillingError {
        BillingError::Invalid { field: field.into(), reason: reason.into() }
    }

    pub(crate) fn overflow(field: impl Into<String>) -> BillingError {
        BillingError::Overflow { field: field.into() }
    }

    /// The field at fault, when the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            BillingError::UnknownCurrency { field, .. }
            | BillingError::Invalid { field, .. }
            | BillingError::NoTaxRate { field, .. }
            | BillingError::TooMany { field, .. }
            | BillingError::Overflow { field } => Some(field),
            BillingError::NoAccountCode { .. } | BillingError::Output { .. } => None,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = BillingError> = std::result::Result<T, E>;

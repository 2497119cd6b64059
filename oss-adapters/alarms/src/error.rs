//! The crate's one error type.

/// What can go wrong with an alarm or its forwarding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlarmError {
    /// A field of an alarm is missing, too long or not one of its values.
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    /// An alarm cannot go from its state by this change (a cleared alarm is final).
    #[error("alarm {id} is {state}: it cannot be {change}")]
    Transition { id: String, state: &'static str, change: &'static str },
    /// A trap could not be encoded (an OID component out of range, a message too long).
    #[error("SNMP trap: {0}")]
    Encode(String),
    /// No alarm has this id.
    #[error("no alarm {id}")]
    NotFound { id: i64 },
    /// The store failed or refused (a conflict, a corrupt row).
    #[error(transparent)]
    Store(tollgate_store::StoreError),
    /// The trap could not be sent.
    #[error("sending the SNMP trap to {target}: {source}")]
    Send { target: String, source: std::io::Error },
}

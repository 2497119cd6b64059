//! The crate's one error type: a policy that cannot work, or an event field that cannot be
//! read. A detector never fails on an event; it has no error path.

/// What can go wrong when configuring the detectors or building an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FraudError {
    /// A policy field is out of its range; the text says which range.
    #[error("policy {field}: {problem}")]
    Policy { field: &'static str, problem: String },
    /// An event field cannot be read (a destination with a non-digit, or longer than E.164
    /// allows).
    #[error("event {field}: {problem}")]
    Event { field: &'static str, problem: String },
}

//! The crate's one error type: what can be wrong before an activation is attempted (a
//! request or a configuration that does not validate, a file that cannot be read, a TLS
//! setup that fails). What happens to an activation itself is an
//! [`ActivationOutcome`](crate::ActivationOutcome), not an error.

use std::path::PathBuf;

/// A request or configuration refused, or a file needed to set an adapter up unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// A field of an activation request does not validate.
    #[error("activation request: {field}: {reason}")]
    Request {
        /// The field, e.g. `subscriber.imsi`.
        field: &'static str,
        reason: String,
    },
    /// A field of the adapter configuration does not validate.
    #[error("activation configuration: {field}: {reason}")]
    Config {
        /// The field as written in the TOML file, e.g. `http.timeout_ms`.
        field: &'static str,
        reason: String,
    },
    /// The configuration file is not valid TOML or does not have the expected shape; the
    /// message carries the line and column.
    #[error("activation configuration {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    /// A file or directory the adapter needs cannot be used.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the path is for, e.g. `spool directory`.
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TLS client configuration cannot be built (a CA or key file, named in the message).
    #[error("activation TLS: {0}")]
    Tls(String),
}

impl ActivationError {
    pub(crate) fn request(field: &'static str, reason: impl Into<String>) -> ActivationError {
        ActivationError::Request { field, reason: reason.into() }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> ActivationError {
        ActivationError::Config { field, reason: reason.into() }
    }
}

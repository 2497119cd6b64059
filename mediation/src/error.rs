//! The one error type of the mediation crate. A bad *record* is not an error: it goes to
//! the rejects file with its reason. A `MediationError` stops a file: its mapping is
//! unusable, an output cannot be written, the engine failed, or the file itself cannot be
//! read as the format it claims to be.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediationError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A column mapping file is not usable; the text names the line or field.
    #[error("{path}: {message}")]
    Mapping { path: PathBuf, message: String },
    /// The file is not of its format at all (for example a CDR file header that is not one).
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// The file is larger than the configured limit.
    #[error("{path}: {size} bytes is more than the limit of {limit}")]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
    /// A checkpoint exists but does not belong to this file (it changed since).
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// A rerate run cannot start as asked; the text says why.
    #[error("rerate: {0}")]
    Rerate(String),
    /// The run was asked to stop ([`crate::MediationConfig::stop`]) and did, between two
    /// batches: what it charged is written and checkpointed; processing the file again
    /// resumes it.
    #[error("stopped on request; the file resumes from its checkpoint")]
    Stopped,
    /// The run was stopped on purpose (crash tests).
    #[error("interrupted: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Engine(#[from] tollgate_engine::EngineError),
}

impl MediationError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> MediationError {
        let path = path.into();
        move |source| MediationError::Io { path, source }
    }
}

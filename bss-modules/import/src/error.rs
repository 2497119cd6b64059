//! The import crate's one error type: what stops an import as a whole (a bad mapping, a
//! file that cannot be read, the store failing). A bad *row* is not an error: it goes to
//! the rejects file with the field and the reason, and the import goes on.

use std::path::PathBuf;

use tollgate_store::StoreError;

/// Everything that stops an import.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The mapping file is not a valid mapping; the message names the line and the field.
    #[error("mapping {path}: {message}")]
    Mapping { path: PathBuf, message: String },
    /// The input does not fit the mapping (a column the mapping names is not in the
    /// header), or is not CSV past some byte.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The rejects file is not as the checkpoint left it (shorter than the rows it had
    /// rejected): it was removed or cut while the import was stopped.
    #[error("{path}: the rejects file holds {found} bytes, but the import's checkpoint wrote {expected}; restore it, or give another --rejects file and start the import anew")]
    RejectsChanged { path: PathBuf, expected: i64, found: u64 },
    /// The store failed, or another import of the same file moved its checkpoint on.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
        move |source| ImportError::Io { path: path.to_owned(), source }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = ImportError> = std::result::Result<T, E>;

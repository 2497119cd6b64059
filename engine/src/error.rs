//! The one error type of the engine crate. Business outcomes (insufficient credit,
//! unknown subscriber, …) are answers, not errors: an `EngineError` means the engine
//! itself could not do its job (storage failed, it is shutting down, its files are bad).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Reading or writing a journal, snapshot or lock file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A snapshot is damaged or from another format version.
    #[error("{path}: bad snapshot: {reason}")]
    Snapshot { path: PathBuf, reason: String },
    /// A journal record in the middle of a journal (not its tail) is damaged.
    #[error("{path}: journal damaged at byte {offset}: {reason}")]
    Journal { path: PathBuf, offset: u64, reason: String },
    /// A tariff plan could not be loaded.
    #[error(transparent)]
    Tariff(#[from] tollgate_tariffs::TariffError),
    /// Another process holds the data directory.
    #[error("{path} is locked by another tollgate process (pid {pid})")]
    Locked { path: PathBuf, pid: String },
    /// The engine is stopping or a shard worker has failed; the request was not applied.
    #[error("engine unavailable: {0}")]
    Unavailable(&'static str),
    /// A shard's queue is full (`queue_capacity` requests already wait for it); the
    /// request was not applied and may be sent again later.
    #[error("shard {shard} is overloaded: its queue is full")]
    Overloaded { shard: usize },
    /// The configuration is not usable.
    #[error("configuration: {0}")]
    Config(String),
    /// The data directory's layout record is damaged or from a newer build.
    #[error("{path}:{line}: {reason}")]
    Layout { path: PathBuf, line: usize, reason: String },
    /// A ledger file or cursor is damaged or does not match its cursor.
    #[error("{path}: ledger: {reason}")]
    Ledger { path: PathBuf, reason: String },
    /// The data directory holds another number of shards than asked for.
    #[error(
        "{path}: the data directory has {recorded} shards, and was opened with {requested}: open it with --shards {recorded}, or change it with `tollgate reshard --to {requested}`"
    )]
    ShardCount { path: PathBuf, recorded: usize, requested: usize },
}

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.into();
        move |source| EngineError::Io { path, source }
    }
}

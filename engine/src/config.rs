//! The engine's settings: how the charging core behaves (quotas, validity, windows) and
//! how the runtime runs it (shards, journal policy, snapshots).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::fs::{FileSystem, RealFs};
use crate::journal::FsyncPolicy;

/// Most money buckets one account may hold (the main one included).
pub(crate) const MAX_MONEY_BUCKETS: usize = 32;

/// Behaviour settings of the charging core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargingConfig {
    /// Validity-Time sent with every grant.
    pub validity_seconds: u32,
    /// How long after its validity a silent reservation is released (Tcc).
    pub reservation_grace_seconds: u32,
    /// How long a session is remembered after its reservations expired with nothing more
    /// heard (its tombstone): usage reported on it meanwhile is still charged, once,
    /// dated from its grant; after that the session is unknown.
    pub session_tombstone_seconds: u32,
    /// How many idempotency keys each shard remembers.
    pub dedupe_window: usize,
    /// Quota granted when a request names no units, per unit kind.
    pub default_quota_seconds: u64,
    pub default_quota_bytes: u64,
    pub default_quota_events: u64,
    /// Most open reservations one session may hold.
    pub max_reservations_per_session: usize,
    /// Most sessions one subscription may have, open or tombstoned: a new one past it is
    /// denied (a network element that opens sessions and never ends them cannot grow a
    /// shard's memory without bound).
    pub max_sessions_per_subscription: u32,
    /// Most rating groups in one session request.
    pub max_units_per_request: usize,
    /// Journal each rated event's detail (called number, plan and rate line, identity …)
    /// for the rated-event ledger. Off only to measure what it costs.
    pub itemise: bool,
}

impl Default for ChargingConfig {
    fn default() -> ChargingConfig {
        ChargingConfig {
            validity_seconds: 600,
            reservation_grace_seconds: 60,
            session_tombstone_seconds: 3600,
            dedupe_window: 1 << 20,
            default_quota_seconds: 300,
            default_quota_bytes: 10 << 20,
            default_quota_events: 1,
            max_reservations_per_session: 64,
            max_sessions_per_subscription: 256,
            max_units_per_request: 64,
            itemise: true,
        }
    }
}

/// Limits on what one request may carry.
pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_TEXT_BYTES: usize = 1024;
pub const MAX_IDENTITIES: usize = 16;

/// How the runtime runs the charging core.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub shards: usize,
    pub fsync: FsyncPolicy,
    /// Capacity of each shard's request queue; senders wait when it is full.
    pub queue_capacity: usize,
    /// Most requests decided and committed together.
    pub max_batch: usize,
    /// Records after which a shard writes a snapshot and starts a new journal segment.
    pub snapshot_every_records: u64,
    /// Entries of an exactly-once window per chunk file: a snapshot writes each full
    /// chunk once (see the snapshot format in `docs/formats.md`).
    pub snapshot_chunk_entries: usize,
    /// How often the reaper looks for expired reservations.
    pub reaper_interval: Duration,
    /// Keep journal segments covered by a snapshot in `archive/` (the audit trail)
    /// instead of deleting them.
    pub archive_segments: bool,
    /// How long archived segments are kept once every consumer has read them
    /// ([`crate::retention`]).
    pub archive_retention: Duration,
    pub charging: ChargingConfig,
    /// Build the rated-event ledger ([`crate::ledger`]) beside the shards. It reads the
    /// archived segments, so it needs `archive_segments`.
    pub ledger: bool,
    /// The file system of the data directory: the real one, or in crash tests a
    /// simulated one that can lose what was not synced.
    pub fs: Arc<dyn FileSystem>,
}

impl EngineConfig {
    /// Embedded defaults: two shards, fsync per batch.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            shards: 2,
            fsync: FsyncPolicy::EveryBatch,
            queue_capacity: 65_536,
            max_batch: 4096,
            snapshot_every_records: 1_000_000,
            snapshot_chunk_entries: crate::snapshot::DEFAULT_CHUNK_ENTRIES,
            reaper_interval: Duration::from_secs(1),
            archive_segments: true,
            archive_retention: crate::retention::DEFAULT_RETENTION,
            charging: ChargingConfig::default(),
            ledger: true,
            fs: Arc::new(RealFs::new()),
        }
    }
}

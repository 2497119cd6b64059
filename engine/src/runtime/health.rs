//! What each shard is doing, for a readiness endpoint: serving, or refusing requests
//! after a journal failure while it waits to rebuild itself from disk.
//!
//! Policy on a failing disk (ENOSPC, EIO, a read-only file system): a shard whose journal
//! write or sync fails answers the requests of that batch and every later one with an
//! error (never success: their changes may not be durable), logs one ERROR, and reports
//! itself not ready. It then retries with backoff (0.1 s doubling to 30 s): once a probe
//! write and sync in the data directory succeed, it cuts its segment back to what was
//! last synced, rebuilds its state from the snapshot and journal on disk (so nothing that
//! was not durable survives in memory), starts a fresh segment and serves again. The
//! other shards go on serving meanwhile.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// The health of one shard.
#[derive(Debug, Default)]
pub(crate) struct ShardHealth {
    failed: AtomicBool,
    failed_at: AtomicI64,
    failures: AtomicU64,
    refused: AtomicU64,
    reason: Mutex<String>,
    /// The last journal record known durable (what the ledger may read up to).
    durable_lsn: AtomicU64,
    /// What the shard counts for a monitoring scrape.
    pub(crate) metrics: crate::metrics::ShardMetrics,
}

/// A shard's state as a readiness check shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardStatus {
    pub shard: u32,
    /// `serving`, or `failed` (refusing requests until it has rebuilt itself).
    pub state: &'static str,
    /// Why it failed (the last failure), if it ever did.
    pub reason: Option<String>,
    /// When the current failure began (Unix seconds).
    #[serde(rename = "failed_since")]
    pub failed_at: Option<i64>,
    /// Journal failures since the engine opened.
    pub failures: u64,
    /// Requests refused while failed, since the engine opened.
    pub refused: u64,
}

impl ShardHealth {
    pub(crate) fn fail(&self, now: i64, reason: &str) {
        if let Ok(mut held) = self.reason.lock() {
            reason.clone_into(&mut held);
        }
        self.failed_at.store(now, Ordering::Release);
        self.failures.fetch_add(1, Ordering::AcqRel);
        self.failed.store(true, Ordering::Release);
    }

    pub(crate) fn recovered(&self) {
        self.failed.store(false, Ordering::Release);
    }

    /// Records that the shard's journal is durable up to `lsn`.
    pub(crate) fn set_durable(&self, lsn: u64) {
        self.durable_lsn.store(lsn, Ordering::Release);
    }

    pub(crate) fn durable_lsn(&self) -> u64 {
        self.durable_lsn.load(Ordering::Acquire)
    }

    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn status(&self, shard: u32) -> ShardStatus {
        let failed = self.failed.load(Ordering::Acquire);
        let reason = self.reason.lock().map(|r| r.clone()).unwrap_or_default();
        ShardStatus {
            shard,
            state: if failed { "failed" } else { "serving" },
            reason: (!reason.is_empty()).then_some(reason),
            failed_at: failed.then(|| self.failed_at.load(Ordering::Acquire)),
            failures: self.failures.load(Ordering::Acquire),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

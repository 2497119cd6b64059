//! Counters and latency histograms a monitoring scrape reads (the admin server's
//! Prometheus `/metrics`): plain atomics, written with relaxed ordering by the thread that
//! does the work and summed when read, so recording takes no lock and allocates nothing.
//!
//! A [`Histogram`] counts observations per bucket of [`LATENCY_BOUNDS_NS`] (non-cumulative;
//! the encoder accumulates) with their sum in nanoseconds. The engine keeps one per shard
//! for its journal syncs; the network adapters keep theirs per interface, striped across
//! threads. [`Engine::metrics`](crate::Engine::metrics) reads the shards'.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of the latency buckets, in nanoseconds: 50 µs to 5 s. An observation
/// above the last falls in the overflow bucket (`+Inf`).
pub const LATENCY_BOUNDS_NS: [u64; 15] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
];

/// Buckets of a histogram: one per bound and the overflow.
pub const BUCKETS: usize = LATENCY_BOUNDS_NS.len() + 1;

/// A latency histogram of atomics. Aligned to a cache line so that histograms kept side
/// by side for different threads do not share one.
#[derive(Debug)]
#[repr(align(64))]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram { counts: [const { AtomicU64::new(0) }; BUCKETS], sum_ns: AtomicU64::new(0) }
    }

    /// Counts one observation of `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_NS.partition_point(|&bound| bound < ns);
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|bucket| self.counts[bucket].load(Ordering::Relaxed)),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment: per bucket (not cumulative) and the sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub counts: [u64; BUCKETS],
    pub sum_ns: u64,
}

impl HistogramSnapshot {
    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |total, count| total.wrapping_add(*count))
    }

    /// Adds `other`'s counts to these (histograms of several threads or shards).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.wrapping_add(theirs);
        }
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
    }
}

/// What one shard counts (inside its `ShardHealth`, shared with the scrape).
#[derive(Debug, Default)]
pub(crate) struct ShardMetrics {
    /// Requests decided (online path), repeats included.
    pub(crate) requests: AtomicU64,
    /// Rated events charged: online usage and bulk records.
    pub(crate) rated_events: AtomicU64,
    /// Usage that could not be rated (answered `rating_failed`): online requests and
    /// grants, and bulk records; repeats not counted.
    pub(crate) unrated_events: AtomicU64,
    /// Open reservations after the last pass.
    pub(crate) reservations: AtomicU64,
    /// Journal syncs (fsync or fdatasync), on the shard's thread and its commit thread.
    pub(crate) fsync: Arc<Histogram>,
}

impl ShardMetrics {
    pub(crate) fn add(counter: &AtomicU64, by: u64) {
        if by > 0 {
            counter.fetch_add(by, Ordering::Relaxed);
        }
    }
}

/// One shard's figures as [`Engine::metrics`](crate::Engine::metrics) reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMetricsView {
    pub shard: u32,
    /// Serving, or failed after a journal failure (see [`Engine::health`](crate::Engine::health)).
    pub serving: bool,
    /// Messages waiting in the shard's request channel.
    pub queue_depth: u64,
    /// Requests decided since the engine opened.
    pub requests: u64,
    /// Rated events charged since the engine opened (online usage and bulk records).
    pub rated_events: u64,
    /// Usage answered `rating_failed` since the engine opened (online requests and their
    /// grants, bulk records), repeats not counted: usage given away unless a tariff is
    /// fixed (the leakage detector of `tollgate serve --fraud` watches it).
    pub unrated_events: u64,
    /// Reservations open after the shard's last pass.
    pub open_reservations: u64,
    /// Journal failures since the engine opened.
    pub journal_failures: u64,
    /// Requests refused while failed.
    pub refused: u64,
    /// Journal sync latency.
    pub fsync: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(micros: &[u64]) -> HistogramSnapshot {
        let histogram = Histogram::new();
        for &us in micros {
            histogram.observe(Duration::from_micros(us));
        }
        histogram.snapshot()
    }

    #[test]
    fn an_observation_falls_in_the_first_bucket_whose_bound_is_not_below_it() {
        // 50 µs is the first bound itself (le="0.00005"); 51 µs the second bucket;
        // 6 s past every bound.
        let snapshot = observed(&[50, 51, 6_000_000]);
        assert_eq!(snapshot.counts[0], 1);
        assert_eq!(snapshot.counts[1], 1);
        assert_eq!(snapshot.counts[BUCKETS - 1], 1);
        assert_eq!(snapshot.count(), 3);
        assert_eq!(snapshot.sum_ns, (50 + 51 + 6_000_000) * 1_000);
    }

    #[test]
    fn merged_snapshots_add_up() {
        let mut total = observed(&[10, 700]);
        total.merge(&observed(&[700, 2_000]));
        assert_eq!(total.count(), 4);
        assert_eq!(total.counts[LATENCY_BOUNDS_NS.partition_point(|&b| b < 700_000)], 2);
        assert_eq!(total.sum_ns, (10 + 700 + 700 + 2_000) * 1_000);
    }
}

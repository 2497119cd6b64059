//! The per-token rate limit: a token bucket per token id, in memory, in integer
//! arithmetic (micro-requests), refilled at `rate_per_second` up to `burst`. A request
//! over the limit is 429 with `Retry-After` in whole seconds. The map holds one bucket
//! per token that made a request since start (there are few tokens); it is bounded by
//! [`MAX_BUCKETS`], past which idle buckets are dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

const MICROS: u64 = 1_000_000;

/// Buckets kept at most; past it, full (idle) buckets are forgotten.
pub(crate) const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Micro-requests available.
    available: u64,
    at: Instant,
}

/// Token buckets keyed by token id.
#[derive(Debug)]
pub struct RateLimit {
    rate_per_second: u64,
    capacity: u64,
    buckets: Mutex<HashMap<i64, Bucket>>,
}

impl RateLimit {
    /// `rate_per_second` requests a second on average (at least 1), `burst` at once (at least 1).
    pub fn new(rate_per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            rate_per_second: u64::from(rate_per_second.max(1)),
            capacity: u64::from(burst.max(1)) * MICROS,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `token_id`'s bucket, or says in how many seconds to retry.
    pub fn check(&self, token_id: i64) -> Result<(), u64> {
        self.check_at(token_id, Instant::now())
    }

    fn check_at(&self, token_id: i64, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&token_id) {
            let capacity = self.capacity;
            let rate = self.rate_per_second;
            buckets.retain(|_, bucket| refilled(*bucket, now, rate, capacity) < capacity);
        }
        let bucket = buckets.entry(token_id).or_insert(Bucket { available: self.capacity, at: now });
        bucket.available = refilled(*bucket, now, self.rate_per_second, self.capacity);
        bucket.at = now;
        if bucket.available >= MICROS {
            bucket.available -= MICROS;
            Ok(())
        } else {
            let missing = MICROS - bucket.available;
            // Micro-requests refill at `rate_per_second * MICROS` a second.
            Err(missing.div_ceil(self.rate_per_second * MICROS).max(1))
        }
    }
}

fn refilled(bucket: Bucket, now: Instant, rate_per_second: u64, capacity: u64) -> u64 {
    let elapsed_micros = u64::try_from(now.saturating_duration_since(bucket.at).as_micros()).unwrap_or(u64::MAX);
    bucket.available.saturating_add(elapsed_micros.saturating_mul(rate_per_second)).min(capacity)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate_then_429_with_retry_after() {
        let limit = RateLimit::new(2, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.check_at(7, start), Ok(()));
        }
        assert_eq!(limit.check_at(7, start), Err(1));
        assert_eq!(limit.check_at(8, start), Ok(()), "another token has its own bucket");
        assert_eq!(limit.check_at(7, start + Duration::from_millis(500)), Ok(()), "half a second refills one");
        assert_eq!(limit.check_at(7, start + Duration::from_millis(500)), Err(1));
    }
}

//! `UsageSpike`: a subscriber's charged amount per bucket (a day by default) against their
//! own baseline. The baseline is an EWMA of past buckets' totals (`mean`) and an EWMA of
//! their absolute deviation from it (`deviation`), scaled by √(π/2) ≈ 1.2533 to estimate a
//! standard deviation; a bucket is judged while it fills, so a spike is found on the event
//! that crosses the line, not at the end of the day. Robustness: a closed bucket enters
//! the baseline clipped at the threshold, so a fraud day does not teach the baseline that
//! fraud is normal; during the warm-up the EWMA is a plain running mean.
//!
//! An episode: found once, re-armed when a bucket closes below the threshold. Days with
//! no usage enter the baseline as zeros (at most 64 of them; a longer silence starts the
//! baseline again). Memory: one `Baseline` (40 bytes) per subscriber in an `Lru`.

use crate::detectors::{charging_outcome, window_ms, Detector};
use crate::finding::{Action, DetectorKind, Finding, Subject};
use crate::lru::Lru;
use crate::policy::SpikePolicy;
use crate::{Outcome, UsageEvent};

/// The EWMA of absolute deviations times this estimates a standard deviation (normal
/// data: E|X − μ| = σ √(2/π)).
const DEVIATION_TO_SIGMA: f64 = 1.253_314_137_315_500_3;
/// The most empty buckets fed into the baseline as zeros; a longer gap restarts it.
const MAX_GAP_BUCKETS: i64 = 64;

#[derive(Debug, Clone, Copy)]
struct Baseline {
    /// The bucket being filled (its index: `at_ms / bucket_ms`).
    bucket: i64,
    /// Its total so far, minor units.
    current_minor: i64,
    mean: f64,
    deviation: f64,
    /// Buckets closed into the baseline.
    seen: u32,
    armed: bool,
}

/// The usage-spike detector.
#[derive(Debug)]
pub struct UsageSpike {
    policy: SpikePolicy,
    action: Action,
    bucket_ms: i64,
    subscribers: Lru<Baseline>,
}

impl UsageSpike {
    pub fn new(policy: SpikePolicy, max_subscribers: usize) -> UsageSpike {
        let action = if policy.suspend { Action::AlarmAndSuspend } else { Action::Alarm };
        let bucket_ms = window_ms(policy.bucket_seconds);
        UsageSpike { policy, action, bucket_ms, subscribers: Lru::new(max_subscribers) }
    }

    /// Subscribers forgotten to stay within `max_subscribers`.
    pub fn evicted(&self) -> u64 {
        self.subscribers.evicted()
    }

    /// Subscribers with state (at most the policy's `max_subscribers`).
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    fn threshold(policy: &SpikePolicy, b: &Baseline) -> (f64, f64) {
        let scale = (b.deviation * DEVIATION_TO_SIGMA).max(policy.min_scale_minor as f64);
        let line = b.mean + (policy.z_threshold * scale).max(policy.min_excess_minor as f64);
        (scale, line)
    }

    fn close(policy: &SpikePolicy, b: &mut Baseline, total_minor: i64) {
        let (_, line) = UsageSpike::threshold(policy, b);
        let judged = b.seen >= policy.warmup_buckets;
        let x = total_minor as f64;
        if judged && x < line {
            b.armed = true;
        }
        let x = if judged { x.min(line) } else { x };
        b.seen = b.seen.saturating_add(1);
        let alpha = if b.seen <= policy.warmup_buckets { 1.0 / f64::from(b.seen) } else { policy.alpha };
        let deviation = (x - b.mean).abs();
        if b.seen == 1 {
            b.mean = x;
            b.deviation = 0.0;
        } else {
            b.mean += alpha * (x - b.mean);
            b.deviation += alpha * (deviation - b.deviation);
        }
    }
}

impl Detector for UsageSpike {
    fn kind(&self) -> DetectorKind {
        DetectorKind::UsageSpike
    }

    fn observe(&mut self, event: &UsageEvent) -> Option<Finding> {
        if !self.policy.enabled || !charging_outcome(event) || event.outcome == Outcome::Rejected {
            return None;
        }
        let bucket = event.at_ms.div_euclid(self.bucket_ms);
        let fresh = Baseline { bucket, current_minor: 0, mean: 0.0, deviation: 0.0, seen: 0, armed: true };
        let b = self.subscribers.get_or_insert_with(event.subscriber, || fresh);
        if bucket > b.bucket {
            let gap = bucket - b.bucket - 1;
            if gap > MAX_GAP_BUCKETS {
                *b = fresh;
            } else {
                let total = b.current_minor;
                UsageSpike::close(&self.policy, b, total);
                for _ in 0..gap {
                    UsageSpike::close(&self.policy, b, 0);
                }
                b.bucket = bucket;
                b.current_minor = 0;
            }
        }
        // An event of an earlier bucket (late) counts in the current one: the totals only
        // grow, so lateness can delay a finding but not invent one.
        b.current_minor = b.current_minor.saturating_add(event.charged_minor.max(0));
        if !b.armed || b.seen < self.policy.warmup_buckets {
            return None;
        }
        let (scale, line) = UsageSpike::threshold(&self.policy, b);
        let x = b.current_minor as f64;
        if x < line {
            return None;
        }
        b.armed = false;
        let z = (x - b.mean) / scale;
        let from = b.bucket.saturating_mul(self.bucket_ms);
        Some(Finding {
            detector: DetectorKind::UsageSpike,
            subject: Subject::Subscriber(event.subscriber),
            at_ms: event.at_ms,
            window_from_at_ms: from,
            window_until_at_ms: from.saturating_add(self.bucket_ms),
            severity: self.policy.severity,
            text: format!(
                "subscriber {} charged {} minor units this bucket against a baseline of {:.0} (z = {z:.1})",
                event.subscriber, b.current_minor, b.mean
            ),
            evidence: vec![("charged_minor", x), ("baseline_minor", b.mean), ("scale_minor", scale), ("z", z)],
            action: self.action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::tests::{call, DAY_MS};

    #[test]
    fn a_baseline_is_40_bytes() {
        assert!(std::mem::size_of::<Baseline>() <= 40, "{}", std::mem::size_of::<Baseline>());
    }

    fn detector() -> UsageSpike {
        // Daily buckets, a 3-day warm-up, z 4, scale at least 100, excess at least 1000.
        let policy = SpikePolicy {
            warmup_buckets: 3,
            z_threshold: 4.0,
            min_scale_minor: 100,
            min_excess_minor: 1_000,
            ..SpikePolicy::default()
        };
        UsageSpike::new(policy, 100)
    }

    /// Charges `amounts` one per day to subscriber 1, returning the day index of each
    /// finding.
    fn days_found(d: &mut UsageSpike, first_day: i64, amounts: &[i64]) -> Vec<i64> {
        let mut found = Vec::new();
        for (i, amount) in amounts.iter().enumerate() {
            let day = first_day + i as i64;
            let mut e = call(1, day * DAY_MS + 3_600_000, "4930123", 60);
            e.charged_minor = *amount;
            if d.observe(&e).is_some() {
                found.push(day);
            }
        }
        found
    }

    #[test]
    fn a_day_far_above_a_steady_baseline_is_found_on_the_crossing_event() {
        let mut d = detector();
        // Four days of 300 (mean 300, deviation 0 → scale 100, line 300 + max(400, 1000)).
        assert!(days_found(&mut d, 0, &[300, 300, 300, 300]).is_empty());
        // Day 4: 1200 is below 1300; another 200 the same day crosses it.
        let mut e = call(1, 4 * DAY_MS, "4930123", 60);
        e.charged_minor = 1_200;
        assert!(d.observe(&e).is_none(), "1200 < 1300");
        e.at_ms += 1_000;
        e.charged_minor = 200;
        let finding = d.observe(&e).expect("1400 ≥ 1300");
        assert_eq!(finding.subscriber(), Some(1));
        assert_eq!(finding.evidence("charged_minor"), Some(1_400.0));
        assert_eq!(finding.evidence("baseline_minor"), Some(300.0));
        assert_eq!(finding.evidence("z"), Some(11.0), "(1400 − 300) / 100");
        assert_eq!(finding.window_from_at_ms, 4 * DAY_MS);
        assert_eq!(finding.action, Action::Alarm);
    }

    #[test]
    fn normal_variation_is_not_a_spike() {
        let mut d = detector();
        let amounts: Vec<i64> = (0..60).map(|day| 300 + (day % 7) * 80).collect();
        assert!(days_found(&mut d, 0, &amounts).is_empty());
    }

    #[test]
    fn nothing_is_judged_during_the_warm_up() {
        let mut d = detector();
        assert!(days_found(&mut d, 0, &[10, 10, 50_000]).is_empty(), "three days seen, none closed past warm-up");
    }

    #[test]
    fn one_finding_per_episode_and_it_re_arms_after_a_normal_day() {
        let mut d = detector();
        let amounts = [300, 300, 300, 300, 5_000, 5_000, 300, 300, 5_000];
        // Day 4 starts the episode, day 5 continues it (clipped into the baseline, still
        // above its line), day 6 closes below: re-armed, so day 8 is a new episode.
        assert_eq!(days_found(&mut d, 0, &amounts), vec![4, 8]);
        // Within one day, many events above the line give one finding.
        let mut d = detector();
        assert!(days_found(&mut d, 0, &[300, 300, 300, 300]).is_empty());
        let hits = (0..20)
            .filter(|i| {
                let mut e = call(1, 4 * DAY_MS + i * 60_000, "4930123", 60);
                e.charged_minor = 2_000;
                d.observe(&e).is_some()
            })
            .count();
        assert_eq!(hits, 1);
    }

    #[test]
    fn silent_days_enter_the_baseline_as_zeros() {
        let mut d = detector();
        assert!(days_found(&mut d, 0, &[3_000, 3_000, 3_000, 3_000]).is_empty());
        // Ten silent days (4 to 13): each zero moves the mean by 2/15 of the way to 0
        // (3000 × (13/15)^10 ≈ 718) and the deviation toward |0 − mean| (≈ 1100 after
        // the ten): scale ≈ 1380, line ≈ 718 + 4 × 1380 ≈ 6240. Without the zeros the line
        // would be 3000 + 1000 = 4000, so a day of 5000 tells the two apart.
        let mut quiet = detector();
        assert!(days_found(&mut quiet, 0, &[3_000, 3_000, 3_000, 3_000]).is_empty());
        assert!(days_found(&mut quiet, 14, &[5_000]).is_empty(), "5000 < 6240");
        assert_eq!(days_found(&mut d, 14, &[7_000]), vec![14], "7000 ≥ 6240");
        let mut busy = detector();
        assert_eq!(days_found(&mut busy, 0, &[3_000, 3_000, 3_000, 3_000, 5_000]), vec![4], "5000 ≥ 4000");
    }

    #[test]
    fn the_state_is_bounded_by_max_subscribers() {
        let mut d = UsageSpike::new(SpikePolicy::default(), 10);
        for subscriber in 0..1_000 {
            let mut e = call(subscriber, 0, "4930123", 60);
            e.charged_minor = 10;
            d.observe(&e);
        }
        assert_eq!(d.subscribers(), 10);
    }
}

//! The three system-wide revenue-leakage detectors, over tumbling windows of
//! `window_seconds` aligned to the Unix epoch. A window is judged when the first event
//! after it arrives (so a finding comes at most one window late), and only if it saw
//! `min_events` charging events (`divergence_min_records` records read for the divergence): a
//! quiet window says nothing, and neither raises nor re-arms.
//!
//! - `UnratedLeak`: at least `min_unrated` events that could not be rated, and at least
//!   `max_unrated_ratio` of the window's events.
//! - `ZeroPricedSpike`: the window's share of zero-priced events (of those priced)
//!   against an EWMA baseline of past windows' shares (originating usage only: receiving
//!   a call is free by design), as `UsageSpike` does per
//!   subscriber (robust scale, warm-up, clipped updates). A share, not a count, so the
//!   daily rhythm of traffic does not look like a spike.
//! - `Divergence`: per window of usage start, the records and units mediation read
//!   (`Source::MediationInput`) against those it charged or rejected
//!   (`Source::Mediated`, any outcome): every record read is one or the other, so a
//!   relative difference above `divergence_tolerance` in records or in units means
//!   records were lost, duplicated or charged for other volumes. The charged side lags, so a window is judged `divergence_settle_seconds`
//!   after its end (by the latest event instant seen); an event for a window already
//!   judged is counted as late and otherwise ignored.
//!
//! Each is an episode detector: found once, re-armed when a judged window is clean.
//! Memory is constant: two counters, or (divergence) at most
//! `settle / window + 2` open windows of five numbers.

use std::collections::VecDeque;

use crate::detectors::{charging_outcome, window_ms, Detector};
use crate::finding::{Action, DetectorKind, Finding, Severity, Subject};
use crate::policy::LeakagePolicy;
use crate::{Direction, Outcome, Source, UsageEvent};

/// See `spike.rs`: mean absolute deviation to standard deviation.
const DEVIATION_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

fn system_finding(
    detector: DetectorKind,
    severity: Severity,
    at_ms: i64,
    window: (i64, i64),
    text: String,
    evidence: Vec<(&'static str, f64)>,
) -> Finding {
    Finding {
        detector,
        subject: Subject::System,
        at_ms,
        window_from_at_ms: window.0,
        window_until_at_ms: window.1,
        severity,
        text,
        evidence,
        action: Action::Alarm,
    }
}

/// A tumbling window's counts: events judged and events of interest.
#[derive(Debug, Clone, Copy)]
struct Counts {
    index: i64,
    events: u64,
    hits: u64,
}

impl Counts {
    /// Moves to the window of `at_ms`, returning the closed window's counts if it moved.
    fn advance(&mut self, at_ms: i64, window_ms: i64) -> Option<Counts> {
        let index = at_ms.div_euclid(window_ms);
        if index <= self.index {
            return None;
        }
        let closed = *self;
        *self = Counts { index, events: 0, hits: 0 };
        Some(closed)
    }
}

/// Usage that could not be rated.
#[derive(Debug)]
pub struct UnratedLeak {
    policy: LeakagePolicy,
    window_ms: i64,
    counts: Option<Counts>,
    armed: bool,
}

impl UnratedLeak {
    pub fn new(policy: LeakagePolicy) -> UnratedLeak {
        let window_ms = window_ms(policy.window_seconds);
        UnratedLeak { policy, window_ms, counts: None, armed: true }
    }

    /// `count` charging events that could not be rated at `at_ms`, told by a counter
    /// instead of one by one: as `count` `Unrated` events. The online path's rating
    /// failures leave no ledger entry; `tollgate serve` reads the engine's count of them.
    pub fn observe_unrated(&mut self, at_ms: i64, count: u64) -> Option<Finding> {
        if !self.policy.enabled || count == 0 {
            return None;
        }
        self.count(at_ms, count, count)
    }

    /// Counts `events` charging events, `hits` of them unrated, at `at_ms`; judges the
    /// window this closes.
    fn count(&mut self, at_ms: i64, events: u64, hits: u64) -> Option<Finding> {
        let window_ms = self.window_ms;
        let counts = self.counts.get_or_insert(Counts { index: at_ms.div_euclid(window_ms), events: 0, hits: 0 });
        let closed = counts.advance(at_ms, window_ms);
        counts.events += events;
        counts.hits += hits;
        let closed = closed?;
        let p = &self.policy;
        if closed.events < p.min_events {
            return None;
        }
        let ratio = closed.hits as f64 / closed.events as f64;
        let holds = closed.hits >= p.min_unrated && ratio >= p.max_unrated_ratio;
        if !holds {
            self.armed = true;
            return None;
        }
        if !self.armed {
            return None;
        }
        self.armed = false;
        let from = closed.index.saturating_mul(window_ms);
        Some(system_finding(
            DetectorKind::LeakageUnrated,
            p.severity,
            at_ms,
            (from, from.saturating_add(window_ms)),
            format!("{} of {} events could not be rated ({:.1} %)", closed.hits, closed.events, ratio * 100.0),
            vec![("unrated", closed.hits as f64), ("events", closed.events as f64), ("ratio", ratio)],
        ))
    }
}

impl Detector for UnratedLeak {
    fn kind(&self) -> DetectorKind {
        DetectorKind::LeakageUnrated
    }

    fn observe(&mut self, event: &UsageEvent) -> Option<Finding> {
        if !self.policy.enabled || !charging_outcome(event) {
            return None;
        }
        self.count(event.at_ms, 1, u64::from(event.outcome == Outcome::Unrated))
    }
}

/// The share of zero-priced usage far above its baseline.
#[derive(Debug)]
pub struct ZeroPricedSpike {
    policy: LeakagePolicy,
    window_ms: i64,
    counts: Option<Counts>,
    mean: f64,
    deviation: f64,
    seen: u32,
    armed: bool,
}

impl ZeroPricedSpike {
    pub fn new(policy: LeakagePolicy) -> ZeroPricedSpike {
        let window_ms = window_ms(policy.window_seconds);
        ZeroPricedSpike { policy, window_ms, counts: None, mean: 0.0, deviation: 0.0, seen: 0, armed: true }
    }
}

impl Detector for ZeroPricedSpike {
    fn kind(&self) -> DetectorKind {
        DetectorKind::LeakageZeroPriced
    }

    fn observe(&mut self, event: &UsageEvent) -> Option<Finding> {
        if !self.policy.enabled
            || !charging_outcome(event)
            || event.direction != Direction::Originating
            || !matches!(event.outcome, Outcome::Rated | Outcome::ZeroPriced)
        {
            return None;
        }
        let window_ms = self.window_ms;
        let counts = self.counts.get_or_insert(Counts { index: event.at_ms.div_euclid(window_ms), events: 0, hits: 0 });
        let closed = counts.advance(event.at_ms, window_ms);
        counts.events += 1;
        counts.hits += u64::from(event.outcome == Outcome::ZeroPriced);
        let closed = closed?;
        let p = &self.policy;
        if closed.events < p.min_events {
            return None;
        }
        let share = closed.hits as f64 / closed.events as f64;
        let scale = (self.deviation * DEVIATION_TO_SIGMA).max(p.zero_priced_min_scale);
        let line = self.mean + (p.zero_priced_z_threshold * scale).max(p.zero_priced_min_excess);
        let judged = self.seen >= p.zero_priced_warmup_windows;
        let holds = judged && share >= line;
        // The baseline learns the window, clipped at the line once judged.
        let (baseline, x) = (self.mean, if judged { share.min(line) } else { share });
        self.seen = self.seen.saturating_add(1);
        if self.seen == 1 {
            self.mean = x;
        } else {
            let alpha = if self.seen <= p.zero_priced_warmup_windows {
                1.0 / f64::from(self.seen)
            } else {
                p.zero_priced_alpha
            };
            let deviation = (x - self.mean).abs();
            self.mean += alpha * (x - self.mean);
            self.deviation += alpha * (deviation - self.deviation);
        }
        if !holds {
            if judged {
                self.armed = true;
            }
            return None;
        }
        if !self.armed {
            return None;
        }
        self.armed = false;
        let z = (share - baseline) / scale;
        let from = closed.index.saturating_mul(window_ms);
        Some(system_finding(
            DetectorKind::LeakageZeroPriced,
            p.severity,
            event.at_ms,
            (from, from.saturating_add(window_ms)),
            format!(
                "{:.1} % of priced events were zero-priced against a baseline of {:.1} % (z = {z:.1})",
                share * 100.0,
                baseline * 100.0
            ),
            vec![("share", share), ("baseline", baseline), ("scale", scale), ("z", z)],
        ))
    }
}

#[derive(Debug, Clone, Copy)]
struct Volumes {
    index: i64,
    input_records: u64,
    output_records: u64,
    input_units: u64,
    output_units: u64,
}

/// Mediated volume read against volume charged or rejected.
#[derive(Debug)]
pub struct Divergence {
    policy: LeakagePolicy,
    window_ms: i64,
    settle_ms: i64,
    /// Open windows, ascending by index.
    open: VecDeque<Volumes>,
    /// The last window judged; an event for it or an earlier one is late.
    closed_through: i64,
    latest_at_ms: i64,
    late: u64,
    armed: bool,
}

impl Divergence {
    pub fn new(policy: LeakagePolicy) -> Divergence {
        let window_ms = window_ms(policy.window_seconds);
        let settle_ms = crate::detectors::window_ms(policy.divergence_settle_seconds);
        Divergence {
            policy,
            window_ms,
            settle_ms,
            open: VecDeque::new(),
            closed_through: i64::MIN,
            latest_at_ms: i64::MIN,
            late: 0,
            armed: true,
        }
    }

    /// Events that came after their window was judged.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Windows waiting to be judged.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Mediation's input in bulk: `records` records of `units` units in all, each starting
    /// in the window of `at_ms`, as that many `MediationInput` events would count, except
    /// that the time stays the charged side's (a server's mediation tells what it charged
    /// ahead of the ledger that judges the windows). Nothing is judged here.
    pub fn observe_input(&mut self, at_ms: i64, records: u64, units: u64) {
        if !self.policy.enabled || records == 0 {
            return;
        }
        if let Some(w) = self.window(at_ms) {
            w.input_records = w.input_records.saturating_add(records);
            w.input_units = w.input_units.saturating_add(units);
        }
    }

    /// Never judges the windows up to the one of `at_ms`, and forgets what they hold: a
    /// server restarting at `at_ms` does not know what its mediation read before (the
    /// ledger's entries of before, read again to warm the detectors up, are then late).
    pub fn judge_from(&mut self, at_ms: i64) {
        let index = at_ms.div_euclid(self.window_ms);
        self.closed_through = self.closed_through.max(index);
        while self.open.front().is_some_and(|w| w.index <= index) {
            self.open.pop_front();
        }
    }

    /// The open window of `at_ms`, made if needed; `None` (counted late) when it was judged.
    fn window(&mut self, at_ms: i64) -> Option<&mut Volumes> {
        let index = at_ms.div_euclid(self.window_ms);
        if index <= self.closed_through {
            self.late += 1;
            return None;
        }
        let at = self.open.partition_point(|w| w.index < index);
        if self.open.get(at).is_none_or(|w| w.index != index) {
            self.open
                .insert(at, Volumes { index, input_records: 0, output_records: 0, input_units: 0, output_units: 0 });
        }
        self.open.get_mut(at)
    }
}

impl Detector for Divergence {
    fn kind(&self) -> DetectorKind {
        DetectorKind::LeakageDivergence
    }

    fn observe(&mut self, event: &UsageEvent) -> Option<Finding> {
        if !self.policy.enabled {
            return None;
        }
        self.latest_at_ms = self.latest_at_ms.max(event.at_ms);
        if event.source != Source::Online {
            if let Some(w) = self.window(event.at_ms) {
                match event.source {
                    Source::MediationInput => {
                        w.input_records += 1;
                        w.input_units = w.input_units.saturating_add(event.units);
                    }
                    _ => {
                        w.output_records += 1;
                        w.output_units = w.output_units.saturating_add(event.units);
                    }
                }
            }
        }
        // Judge every window whose end plus the settling time has passed.
        let mut found: Option<Finding> = None;
        while let Some(w) = self.open.front().copied() {
            let end = (w.index + 1).saturating_mul(self.window_ms);
            if end.saturating_add(self.settle_ms) > self.latest_at_ms {
                break;
            }
            self.open.pop_front();
            self.closed_through = w.index;
            if w.input_records < self.policy.divergence_min_records {
                continue;
            }
            let relative = |read: u64, written: u64| read.abs_diff(written) as f64 / read.max(1) as f64;
            let divergence = relative(w.input_records, w.output_records).max(relative(w.input_units, w.output_units));
            if divergence <= self.policy.divergence_tolerance {
                self.armed = true;
                continue;
            }
            if !self.armed {
                continue;
            }
            self.armed = false;
            let from = w.index.saturating_mul(self.window_ms);
            match &mut found {
                // Two episodes judged by one event: one finding spanning both.
                Some(first) => first.window_until_at_ms = end,
                None => {
                    found = Some(system_finding(
                        DetectorKind::LeakageDivergence,
                        self.policy.severity,
                        event.at_ms,
                        (from, end),
                        format!(
                            "mediation read {} records ({} units) but charged or rejected {} ({} units): {:.1} % apart",
                            w.input_records,
                            w.input_units,
                            w.output_records,
                            w.output_units,
                            divergence * 100.0
                        ),
                        vec![
                            ("input_records", w.input_records as f64),
                            ("output_records", w.output_records as f64),
                            ("input_units", w.input_units as f64),
                            ("output_units", w.output_units as f64),
                            ("divergence", divergence),
                        ],
                    ))
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::tests::call;

    const HOUR_MS: i64 = 3_600_000;

    fn policy() -> LeakagePolicy {
        LeakagePolicy {
            window_seconds: 3_600,
            min_events: 100,
            min_unrated: 10,
            max_unrated_ratio: 0.05,
            zero_priced_warmup_windows: 3,
            zero_priced_z_threshold: 5.0,
            zero_priced_min_scale: 0.01,
            zero_priced_min_excess: 0.05,
            divergence_tolerance: 0.02,
            divergence_min_records: 2,
            divergence_settle_seconds: 3_600,
            ..LeakagePolicy::default()
        }
    }

    /// An hour of `events` events, the first `special` of them with `outcome`, the rest
    /// rated; then the hours whose windows closed with a finding.
    fn hours(d: &mut dyn Detector, plan: &[(u64, u64, Outcome)]) -> Vec<i64> {
        let mut found = Vec::new();
        for (hour, (events, special, outcome)) in plan.iter().enumerate() {
            for i in 0..*events {
                let mut e = call(i, hour as i64 * HOUR_MS + i as i64, "4930", 60);
                e.outcome = if i < *special { *outcome } else { Outcome::Rated };
                if let Some(f) = d.observe(&e) {
                    found.push(f.window_from_at_ms / HOUR_MS);
                }
            }
        }
        found
    }

    #[test]
    fn unrated_usage_above_count_and_share_is_found_once_per_episode() {
        let mut d = UnratedLeak::new(policy());
        let u = Outcome::Unrated;
        // Hour 1: 12 of 200 (6 %) → found; hour 2 also (same episode); hour 3: 9 (< 10)
        // → clean, re-armed; hour 4: 20 of 300 → found; hour 5: 50 of 99 events, too few
        // to judge; hour 6 only closes hour 5.
        let plan = [(200, 1, u), (200, 12, u), (200, 30, u), (200, 9, u), (300, 20, u), (99, 50, u), (1, 0, u)];
        assert_eq!(hours(&mut d, &plan), vec![1, 4]);
        // 1000 events with 40 unrated: 4 % < 5 %.
        let mut d = UnratedLeak::new(policy());
        assert!(hours(&mut d, &[(1000, 40, u), (1, 0, u)]).is_empty());
    }

    #[test]
    fn unrated_usage_told_by_a_count_is_judged_with_the_ledger_s_events() {
        let mut d = UnratedLeak::new(policy());
        // Hour 0: 190 rated events from the ledger and 10 rating failures told by the
        // engine's counter (5 %): found when hour 1's first event closes the window.
        assert!(hours(&mut d, &[(190, 0, Outcome::Unrated)]).is_empty());
        assert!(d.observe_unrated(HOUR_MS - 1, 10).is_none(), "hour 0 is still open");
        let found = d.observe_unrated(HOUR_MS, 1).expect("hour 0 closed with 10 of 200 unrated");
        assert_eq!((found.detector, found.window_from_at_ms), (DetectorKind::LeakageUnrated, 0));
        assert_eq!(found.evidence[..2], [("unrated", 10.0), ("events", 200.0)]);
        assert!(d.observe_unrated(HOUR_MS, 0).is_none(), "nothing told");
        // Off: nothing counted.
        let mut off = UnratedLeak::new(LeakagePolicy { enabled: false, ..policy() });
        assert!(off.observe_unrated(0, 500).is_none() && off.observe_unrated(HOUR_MS, 500).is_none());
    }

    #[test]
    fn a_zero_priced_share_far_above_its_baseline_is_found_after_the_warm_up() {
        let z = Outcome::ZeroPriced;
        let mut d = ZeroPricedSpike::new(policy());
        // Shares 3 %, 4 %, 3 %: mean 3.33 %, deviation ≈ 0.5 % → scale 1 % (the floor):
        // line = 3.33 % + max(5 × 1 %, 5 %) = 8.33 %. Hour 3 at 8 % stays under, hour 4 at
        // 20 % is found, hour 5 at 20 % continues it, hour 6 at 3 % re-arms, hour 7 at
        // 20 % is found.
        let plan = [
            (100, 3, z),
            (100, 4, z),
            (100, 3, z),
            (100, 8, z),
            (100, 20, z),
            (100, 20, z),
            (100, 3, z),
            (100, 20, z),
            (1, 0, z),
        ];
        assert_eq!(hours(&mut d, &plan), vec![4, 7]);
        // During the warm-up nothing is judged.
        let mut d = ZeroPricedSpike::new(policy());
        assert!(hours(&mut d, &[(100, 3, z), (100, 90, z), (1, 0, z)]).is_empty());
    }

    #[test]
    fn unrated_and_rejected_events_do_not_dilute_the_zero_priced_share() {
        let z = Outcome::ZeroPriced;
        let mut d = ZeroPricedSpike::new(policy());
        // Three hours at 3 %: mean 3 %, deviation 0, scale 1 %, line 3 % + 5 % = 8 %.
        assert!(hours(&mut d, &[(100, 3, z), (100, 3, z), (100, 3, z)]).is_empty());
        // Hour 3: 10 of 100 priced events are zero-priced (10 % ≥ 8 %), beside 900
        // unrated and 900 rejected; counted in, they would make it 10 / 1900 ≈ 0.5 %.
        let at = 3 * HOUR_MS;
        let mut found = Vec::new();
        for (i, outcome) in (0..1_900u64).map(|i| match i {
            0..10 => (i, Outcome::ZeroPriced),
            10..100 => (i, Outcome::Rated),
            100..1_000 => (i, Outcome::Unrated),
            _ => (i, Outcome::Rejected),
        }) {
            let mut e = call(i, at + i as i64, "4930", 60);
            e.outcome = outcome;
            found.extend(d.observe(&e));
        }
        found.extend(d.observe(&call(1, 4 * HOUR_MS, "4930", 60)));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].evidence("share"), Some(0.1));
    }

    fn mediated(at_ms: i64, units: u64, source: Source) -> UsageEvent {
        let mut e = call(1, at_ms, "4930", units);
        e.source = source;
        e
    }

    /// Two records read of `read / 2` units each and `written` records of
    /// `written_units / written` units each, at `at_ms`.
    fn window(d: &mut Divergence, at_ms: i64, read: u64, written: u64, written_units: u64) -> Vec<Finding> {
        let mut found = Vec::new();
        for _ in 0..2 {
            found.extend(d.observe(&mediated(at_ms, read / 2, Source::MediationInput)));
        }
        for _ in 0..written {
            found.extend(d.observe(&mediated(at_ms + 1, written_units / written, Source::Mediated)));
        }
        found
    }

    #[test]
    fn mediated_volume_not_charged_is_found_after_the_settling_time() {
        let mut d = Divergence::new(policy());
        // Hour 0: 2 records of 1000 units read, 2 of 950 charged or rejected: the records
        // agree, the units are 5 % apart.
        assert!(window(&mut d, 0, 2_000, 2, 1_900).is_empty());
        // Online traffic advances time but is not mediated volume. 1h59 is before hour 0's
        // end plus the settling hour.
        assert!(d.observe(&mediated(2 * HOUR_MS - 1, 5_000, Source::Online)).is_none());
        let f = d.observe(&mediated(2 * HOUR_MS, 5_000, Source::Online)).expect("judged at 2h");
        assert_eq!(f.evidence("divergence"), Some(0.05));
        assert_eq!(f.evidence("output_records"), Some(2.0));
        assert_eq!((f.window_from_at_ms, f.window_until_at_ms), (0, HOUR_MS));
        // A record of hour 0 arriving now is late.
        assert!(d.observe(&mediated(5, 100, Source::Mediated)).is_none());
        assert_eq!(d.late(), 1);
        // A lost record of the same units: 1 of 2 records is 50 % apart.
        let mut d = Divergence::new(policy());
        assert!(window(&mut d, 0, 2_000, 1, 2_000).is_empty());
        let f = d.observe(&mediated(2 * HOUR_MS, 1, Source::Online)).expect("judged at 2h");
        assert_eq!(f.evidence("divergence"), Some(0.5));
    }

    #[test]
    fn balanced_windows_and_small_ones_are_quiet_and_one_episode_is_one_finding() {
        let mut d = Divergence::new(policy());
        let mut found = Vec::new();
        // Hours 0–5: 2000 units read each; charged: 2000, 1990 (0.5 %), 1500, 1500, 2000,
        // 1000, always 2 records; hour 6 reads 1 record (below the minimum of 2) with
        // nothing charged; time then runs to 9h.
        for (hour, charged) in [2_000u64, 1_990, 1_500, 1_500, 2_000, 1_000].iter().enumerate() {
            found.extend(window(&mut d, hour as i64 * HOUR_MS, 2_000, 2, *charged));
        }
        found.extend(d.observe(&mediated(6 * HOUR_MS, 500, Source::MediationInput)));
        found.extend(d.observe(&mediated(9 * HOUR_MS, 1, Source::Online)));
        let hours: Vec<i64> = found.iter().map(|f| f.window_from_at_ms / HOUR_MS).collect();
        assert_eq!(hours, vec![2, 5], "hour 3 continues hour 2's episode; hour 4 re-arms");
        assert_eq!(d.open_windows(), 0);
    }

    /// A server's mediation tells its input in bulk ahead of the ledger: counted as the
    /// events would be, judged by the ledger's time; windows up to a restart are never
    /// judged (their input before it is unknown).
    #[test]
    fn input_told_in_bulk_is_judged_by_the_charged_side_s_time_and_not_across_a_restart() {
        let mut d = Divergence::new(policy());
        // Told far ahead of any charged event: no time passes, nothing is judged.
        d.observe_input(10, 3, 3_000);
        d.observe_input(20 * HOUR_MS, 1, 1);
        assert_eq!(d.open_windows(), 2);
        for _ in 0..2 {
            assert!(d.observe(&mediated(30, 1_000, Source::Mediated)).is_none());
        }
        let f = d.observe(&mediated(2 * HOUR_MS, 1, Source::Online)).expect("hour 0 judged at 2h");
        assert_eq!((f.evidence("input_records"), f.evidence("output_records")), (Some(3.0), Some(2.0)));
        assert_eq!(f.evidence("input_units"), Some(3_000.0));

        // Told as many as were charged: quiet.
        let mut d = Divergence::new(policy());
        d.observe_input(10, 2, 2_000);
        for _ in 0..2 {
            assert!(d.observe(&mediated(30, 1_000, Source::Mediated)).is_none());
        }
        assert!(d.observe(&mediated(2 * HOUR_MS, 1, Source::Online)).is_none());

        // A restart at 1h30: hours 0 and 1 are never judged, what they get is late.
        let mut d = Divergence::new(policy());
        d.observe_input(10, 5, 5_000);
        d.judge_from(HOUR_MS + HOUR_MS / 2);
        assert_eq!(d.open_windows(), 0);
        d.observe_input(HOUR_MS + 5, 5, 5_000);
        assert!(d.observe(&mediated(HOUR_MS + 6, 1_000, Source::Mediated)).is_none());
        assert_eq!(d.late(), 2);
        d.observe_input(2 * HOUR_MS, 2, 2_000);
        assert!(d.observe(&mediated(4 * HOUR_MS, 1, Source::Online)).is_some(), "hour 2 is judged");
    }
}

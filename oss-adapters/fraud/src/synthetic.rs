//! A seeded synthetic month of traffic with injected fraud and leakage, and its ground
//! truth, for the tests and the benchmark (`examples/month.rs`); `score` compares findings
//! with the truth (precision and recall per detector, defined in the crate README).
//!
//! Normal subscribers follow a daily rhythm (the `DIURNAL` weights) with their own rates
//! of calls made and received, SMS and data sessions; they call a fixed circle of
//! contacts, sometimes another national number or abroad, from three cells; a share of
//! them is postpaid and charged through mediation (each usage then appears as a
//! `MediationInput` event and a `Mediated` one). A few percent of usage is zero-priced,
//! a tenth of a percent unrated, some rejected, all steady over the month.
//!
//! Injected, each with a label: spike subscribers (a day or two of long international
//! calls), IRSF bursts (short calls to high-cost prefixes within 40 minutes), SIM boxes
//! (days of ~190 calls a day to fresh national numbers from one cell, nothing incoming),
//! and system-wide leakage hours in business hours (a tenth of originating usage
//! unrated, a quarter of rated usage zero-priced, a tenth of mediated records lost).
//!
//! The generator is a hand-written SplitMix64 (`Rng`): a dozen lines, fixed output for a
//! seed on every platform and version, which a month of reproducible figures needs; the
//! `rand` crates in the lock file are only there through dev-dependencies of other
//! crates and change their streams between major versions.

use crate::finding::{DetectorKind, Finding};
use crate::{Destination, Direction, Outcome, Service, Source, UsageEvent};

/// What each hour of the day weighs in a day's usage (normalised when used).
const DIURNAL: [f64; 24] = [
    1.0, 0.5, 0.3, 0.3, 0.4, 0.8, 2.0, 4.0, 6.0, 7.0, 7.0, 7.0, 7.5, 7.0, 6.5, 6.5, 7.0, 7.5, 8.0, 8.0, 7.0, 5.0, 3.5,
    2.0,
];
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Prefixes the IRSF bursts call (in the default policy's list).
const IRSF_PREFIXES: [u64; 4] = [882, 883, 252, 881];

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state, one add and a mix per number.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (n ≥ 1; the modulo bias is below 2^-40 for the n used here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [low, high].
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low) + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A Poisson draw (Knuth's product method; the means here are below 20).
    pub fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let mut product = self.unit();
        let mut k = 0;
        while product > limit && k < 1_000 {
            product *= self.unit();
            k += 1;
        }
        k
    }

    /// An exponential draw of this mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// The month to generate.
#[derive(Debug, Clone)]
pub struct SyntheticConfig {
    pub subscribers: u64,
    pub days: u32,
    pub seed: u64,
    /// Midnight UTC of the first day, Unix milliseconds.
    pub start_at_ms: i64,
    /// Spike subscribers, IRSF bursts and SIM boxes: this many of each.
    pub fraudsters_per_kind: u32,
    /// Unrated, zero-priced and divergence hours: this many of each.
    pub leakage_hours_per_kind: u32,
    /// The share of subscribers charged through mediation.
    pub mediated_share: f64,
}

impl Default for SyntheticConfig {
    fn default() -> SyntheticConfig {
        SyntheticConfig {
            subscribers: 10_000,
            days: 30,
            seed: 7,
            // 2026-11-01T00:00:00Z.
            start_at_ms: 1_793_491_200_000,
            fraudsters_per_kind: 10,
            leakage_hours_per_kind: 3,
            mediated_share: 0.3,
        }
    }
}

/// A ground-truth episode: this detector should find this subscriber (or the system)
/// within `[from_at_ms, until_at_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub detector: DetectorKind,
    pub subscriber: Option<u64>,
    pub from_at_ms: i64,
    pub until_at_ms: i64,
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Normal,
    Spike { day: u32, days: u32 },
    Irsf { day: u32, hour: u32, calls: u32, start_minute: u32 },
    SimBox { from_day: u32, until_day: u32 },
}

#[derive(Debug, Clone)]
struct Profile {
    key: u64,
    calls_per_day: f64,
    incoming_per_day: f64,
    sms_per_day: f64,
    data_per_day: f64,
    contacts: [u64; 12],
    cells: [u32; 3],
    mediated: bool,
    role: Role,
}

/// The generator: `next_hour` yields the month hour by hour, each hour's events sorted by
/// instant, so memory stays at one hour of traffic.
#[derive(Debug)]
pub struct Month {
    config: SyntheticConfig,
    rng: Rng,
    profiles: Vec<Profile>,
    /// The leakage injected in each hour of the month, if any.
    leak_by_hour: Vec<Option<DetectorKind>>,
    labels: Vec<Label>,
    hour: u32,
}

fn national(rng: &mut Rng) -> u64 {
    // 49 30 and eight digits: 12 digits.
    493_000_000_000 + rng.below(100_000_000)
}

impl Month {
    pub fn new(config: SyntheticConfig) -> Month {
        let mut rng = Rng::new(config.seed);
        let days = config.days.max(1);
        let n = config.subscribers;
        let mut profiles: Vec<Profile> = (0..n)
            .map(|i| {
                let mut contacts = [0; 12];
                for c in &mut contacts {
                    *c = national(&mut rng);
                }
                let home = rng.below(50_000) as u32;
                Profile {
                    key: 1_000_000 + i,
                    calls_per_day: 2.0 + rng.unit() * 12.0,
                    incoming_per_day: 2.0 + rng.unit() * 12.0,
                    sms_per_day: rng.unit() * 8.0,
                    data_per_day: 2.0 + rng.unit() * 10.0,
                    contacts,
                    cells: [home, home + 1 + rng.below(1_000) as u32, home + 1_001 + rng.below(1_000) as u32],
                    mediated: rng.chance(config.mediated_share),
                    role: Role::Normal,
                }
            })
            .collect();
        let mut labels = Vec::new();
        // Fraudsters: distinct subscribers, each given one role.
        let wanted = u64::from(config.fraudsters_per_kind) * 3;
        let mut chosen: Vec<usize> = Vec::new();
        while (chosen.len() as u64) < wanted.min(n) {
            let i = rng.below(n) as usize;
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        let day_at = |day: u32| config.start_at_ms + i64::from(day) * DAY_MS;
        for (k, i) in chosen.into_iter().enumerate() {
            let p = &mut profiles[i];
            let (role, label) = match k % 3 {
                0 => {
                    let day = rng.between(10, u64::from(days.saturating_sub(2)).max(10)) as u32;
                    let spike_days = 1 + rng.below(2) as u32;
                    (
                        Role::Spike { day, days: spike_days },
                        (DetectorKind::UsageSpike, day_at(day), day_at(day + spike_days)),
                    )
                }
                1 => {
                    let day = rng.between(3, u64::from(days.saturating_sub(1)).max(3)) as u32;
                    let hour = rng.below(24) as u32;
                    let start_minute = rng.below(20) as u32;
                    let calls = rng.between(8, 20) as u32;
                    let from = day_at(day) + i64::from(hour) * HOUR_MS + i64::from(start_minute) * 60_000;
                    (Role::Irsf { day, hour, calls, start_minute }, (DetectorKind::Irsf, from, from + 40 * 60_000 + 1))
                }
                _ => {
                    let from_day = rng.between(5, u64::from(days.saturating_sub(5)).max(5)) as u32;
                    let until_day = (from_day + rng.between(4, 8) as u32).min(days);
                    (Role::SimBox { from_day, until_day }, (DetectorKind::SimBox, day_at(from_day), day_at(until_day)))
                }
            };
            p.role = role;
            labels.push(Label {
                detector: label.0,
                subscriber: Some(p.key),
                from_at_ms: label.1,
                until_at_ms: label.2,
            });
        }
        // Leakage hours: business hours (9–18) of days 3 onwards, at least 3 hours apart.
        let hours = days * 24;
        let mut leak_by_hour = vec![None; hours as usize];
        let kinds = [DetectorKind::LeakageUnrated, DetectorKind::LeakageZeroPriced, DetectorKind::LeakageDivergence];
        let mut placed: Vec<u32> = Vec::new();
        for kind in kinds {
            let mut left = config.leakage_hours_per_kind;
            let mut tries = 0;
            while left > 0 && days > 3 && tries < 10_000 {
                tries += 1;
                let hour = (rng.between(3, u64::from(days - 1)) as u32) * 24 + rng.between(9, 18) as u32;
                if placed.iter().any(|h| h.abs_diff(hour) < 3) {
                    continue;
                }
                placed.push(hour);
                leak_by_hour[hour as usize] = Some(kind);
                let from = config.start_at_ms + i64::from(hour) * HOUR_MS;
                labels.push(Label { detector: kind, subscriber: None, from_at_ms: from, until_at_ms: from + HOUR_MS });
                left -= 1;
            }
        }
        Month { config, rng, profiles, leak_by_hour, labels, hour: 0 }
    }

    /// The ground truth.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// Clears `out` and fills it with the next hour's events, sorted by instant; false
    /// once the month is over.
    pub fn next_hour(&mut self, out: &mut Vec<UsageEvent>) -> bool {
        out.clear();
        if self.hour >= self.config.days.max(1) * 24 {
            return false;
        }
        let hour = self.hour;
        self.hour += 1;
        let day = hour / 24;
        let hour_of_day = (hour % 24) as usize;
        let total: f64 = DIURNAL.iter().sum();
        let weight = DIURNAL[hour_of_day] / total;
        let start = self.config.start_at_ms + i64::from(hour) * HOUR_MS;
        let leak = self.leak_by_hour[hour as usize];
        let rng = &mut self.rng;
        for p in &self.profiles {
            let mut emit = |e: UsageEvent, rng: &mut Rng| emit(out, e, p.mediated, leak, rng);
            let simbox_now = matches!(p.role, Role::SimBox { from_day, .. } if day >= from_day);
            if let Role::SimBox { until_day, .. } = p.role {
                if simbox_now && day < until_day && (7..23).contains(&hour_of_day) {
                    for _ in 0..12 {
                        let seconds = rng.between(60, 300);
                        let at_ms = start + rng.below(HOUR_MS as u64) as i64;
                        emit(
                            event(
                                p,
                                at_ms,
                                Direction::Originating,
                                Service::Voice,
                                Some(national(rng)),
                                seconds,
                                10,
                                Some(p.cells[0]),
                            ),
                            rng,
                        );
                    }
                }
            }
            if simbox_now {
                continue; // during the episode nothing else, after it the SIM is gone
            }
            for _ in 0..rng.poisson(p.calls_per_day * weight) {
                let at_ms = start + rng.below(HOUR_MS as u64) as i64;
                let roll = rng.unit();
                let (to, price) = if roll < 0.92 {
                    (p.contacts[rng.below(12) as usize], 10)
                } else if roll < 0.97 {
                    (national(rng), 10)
                } else {
                    // Abroad: France, the UK, the US, now and then Cuba.
                    let country = [33u64, 44, 1, 53][rng.below(4) as usize];
                    (country * 1_000_000_000 + rng.below(1_000_000_000), 30)
                };
                let seconds = (rng.exponential(100.0) as u64).clamp(5, 3_600);
                let cell = p.cells[pick_cell(rng)];
                emit(
                    event(p, at_ms, Direction::Originating, Service::Voice, Some(to), seconds, price, Some(cell)),
                    rng,
                );
            }
            for _ in 0..rng.poisson(p.incoming_per_day * weight) {
                let at_ms = start + rng.below(HOUR_MS as u64) as i64;
                let from = p.contacts[rng.below(12) as usize];
                let seconds = (rng.exponential(100.0) as u64).clamp(5, 3_600);
                let mut e = event(
                    p,
                    at_ms,
                    Direction::Terminating,
                    Service::Voice,
                    Some(from),
                    seconds,
                    0,
                    Some(p.cells[pick_cell(rng)]),
                );
                e.outcome = Outcome::ZeroPriced;
                emit(e, rng);
            }
            for _ in 0..rng.poisson(p.sms_per_day * weight) {
                let at_ms = start + rng.below(HOUR_MS as u64) as i64;
                let to = p.contacts[rng.below(12) as usize];
                let mut e = event(
                    p,
                    at_ms,
                    Direction::Originating,
                    Service::Sms,
                    Some(to),
                    1,
                    0,
                    Some(p.cells[pick_cell(rng)]),
                );
                e.charged_minor = 5;
                emit(e, rng);
            }
            for _ in 0..rng.poisson(p.data_per_day * weight) {
                let at_ms = start + rng.below(HOUR_MS as u64) as i64;
                let bytes = (rng.exponential(20e6) as u64).max(1_000);
                let mut e = event(
                    p,
                    at_ms,
                    Direction::Originating,
                    Service::Data,
                    None,
                    bytes,
                    0,
                    Some(p.cells[pick_cell(rng)]),
                );
                e.charged_minor = bytes.div_ceil(1_000_000) as i64;
                if rng.chance(0.1) {
                    // A zero-rated application.
                    e.outcome = Outcome::ZeroPriced;
                    e.charged_minor = 0;
                }
                emit(e, rng);
            }
            match p.role {
                Role::Spike { day: d, days } if day >= d && day < d + days && (8..22).contains(&hour_of_day) => {
                    for _ in 0..3 {
                        let at_ms = start + rng.below(HOUR_MS as u64) as i64;
                        let to = 44_000_000_000 + rng.below(1_000_000_000);
                        let seconds = rng.between(300, 900);
                        emit(
                            event(
                                p,
                                at_ms,
                                Direction::Originating,
                                Service::Voice,
                                Some(to),
                                seconds,
                                30,
                                Some(p.cells[0]),
                            ),
                            rng,
                        );
                    }
                }
                Role::Irsf { day: d, hour: h, calls, start_minute } if day == d && hour_of_day as u32 == h => {
                    let burst_start = start + i64::from(start_minute) * 60_000;
                    let step_ms = 40 * 60_000 / i64::from(calls);
                    for c in 0..i64::from(calls) {
                        let at_ms = burst_start + c * step_ms;
                        let prefix = IRSF_PREFIXES[rng.below(4) as usize];
                        let to = prefix * 1_000_000_000 + rng.below(1_000_000_000);
                        let seconds = rng.between(15, 90);
                        emit(
                            event(
                                p,
                                at_ms,
                                Direction::Originating,
                                Service::Voice,
                                Some(to),
                                seconds,
                                150,
                                Some(p.cells[0]),
                            ),
                            rng,
                        );
                    }
                }
                _ => {}
            }
        }
        out.sort_by_key(|e| e.at_ms);
        true
    }
}

fn pick_cell(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0..6 => 0,
        6..9 => 1,
        _ => 2,
    }
}

/// An event of `p`'s, priced at `price_per_minute` minor units (per second, rounded up),
/// with the normal outcomes: 3 % zero-priced, 0.1 % unrated, 0.5 % rejected.
#[allow(clippy::too_many_arguments)]
fn event(
    p: &Profile,
    at_ms: i64,
    direction: Direction,
    service: Service,
    to: Option<u64>,
    units: u64,
    price_per_minute: u64,
    cell: Option<u32>,
) -> UsageEvent {
    UsageEvent {
        subscriber: p.key,
        at_ms,
        direction,
        service,
        destination: to.and_then(Destination::from_number),
        units,
        charged_minor: (units * price_per_minute).div_ceil(60) as i64,
        cell,
        outcome: Outcome::Rated,
        source: Source::Online,
    }
}

/// Applies the normal outcome mix and the hour's leakage, then writes the event as the
/// online path or mediation would report it.
fn emit(out: &mut Vec<UsageEvent>, mut e: UsageEvent, mediated: bool, leak: Option<DetectorKind>, rng: &mut Rng) {
    if e.direction == Direction::Originating && e.outcome == Outcome::Rated {
        let roll = rng.unit();
        if roll < 0.03 {
            e.outcome = Outcome::ZeroPriced;
        } else if roll < 0.031 {
            e.outcome = Outcome::Unrated;
        } else if roll < 0.036 {
            e.outcome = Outcome::Rejected;
        }
        match leak {
            Some(DetectorKind::LeakageUnrated) if rng.chance(0.1) => e.outcome = Outcome::Unrated,
            Some(DetectorKind::LeakageZeroPriced) if e.outcome == Outcome::Rated && rng.chance(0.25) => {
                e.outcome = Outcome::ZeroPriced
            }
            _ => {}
        }
        if e.outcome != Outcome::Rated {
            e.charged_minor = 0;
        }
    }
    if !mediated {
        out.push(e);
        return;
    }
    out.push(UsageEvent { source: Source::MediationInput, ..e });
    if leak == Some(DetectorKind::LeakageDivergence) && rng.chance(0.1) {
        return; // lost between reading and charging
    }
    out.push(UsageEvent { source: Source::Mediated, ..e });
}

/// How one detector did against the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Score {
    pub findings: u64,
    /// Findings matching a label of this detector.
    pub true_positives: u64,
    /// Findings matching no label of this detector but one of another (fraud found by the
    /// "wrong" detector: neither true nor false for this one).
    pub other_fraud: u64,
    /// Findings matching no label at all.
    pub false_positives: u64,
    pub labels: u64,
    /// Labels of this detector matched by at least one of its findings.
    pub labels_found: u64,
}

impl Score {
    /// TP / (TP + FP); 1 when there was nothing to judge.
    pub fn precision(&self) -> f64 {
        let judged = self.true_positives + self.false_positives;
        if judged == 0 {
            1.0
        } else {
            self.true_positives as f64 / judged as f64
        }
    }

    /// Labels found / labels; 1 when there were no labels.
    pub fn recall(&self) -> f64 {
        if self.labels == 0 {
            1.0
        } else {
            self.labels_found as f64 / self.labels as f64
        }
    }
}

/// Whether `finding` matches `label`: the same subscriber (or both system-wide) and, for
/// a subscriber, the finding's instant within the episode (its end included); for the
/// system, the judged window overlapping the labelled one.
pub fn matches(label: &Label, finding: &Finding) -> bool {
    if label.subscriber != finding.subscriber() {
        return false;
    }
    match label.subscriber {
        Some(_) => finding.at_ms >= label.from_at_ms && finding.at_ms <= label.until_at_ms,
        None => finding.window_from_at_ms < label.until_at_ms && finding.window_until_at_ms > label.from_at_ms,
    }
}

/// Scores every detector, in the order of [`DetectorKind::ALL`].
pub fn score(labels: &[Label], findings: &[Finding]) -> Vec<(DetectorKind, Score)> {
    DetectorKind::ALL
        .iter()
        .map(|kind| {
            let mut s = Score::default();
            for f in findings.iter().filter(|f| f.detector == *kind) {
                s.findings += 1;
                if labels.iter().any(|l| l.detector == *kind && matches(l, f)) {
                    s.true_positives += 1;
                } else if labels.iter().any(|l| matches(l, f)) {
                    s.other_fraud += 1;
                } else {
                    s.false_positives += 1;
                }
            }
            for label in labels.iter().filter(|l| l.detector == *kind) {
                s.labels += 1;
                if findings.iter().any(|f| f.detector == *kind && matches(label, f)) {
                    s.labels_found += 1;
                }
            }
            (*kind, s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_gives_the_reference_sequence() {
        // The first outputs for seed 0 of the reference implementation
        // (https://prng.di.unimi.it/splitmix64.c), also in Java's SplittableRandom.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn the_same_seed_gives_the_same_month_and_another_seed_another() {
        let config = SyntheticConfig { subscribers: 50, days: 4, fraudsters_per_kind: 1, ..SyntheticConfig::default() };
        let collect = |seed| {
            let mut month = Month::new(SyntheticConfig { seed, ..config.clone() });
            let (mut all, mut hour) = (Vec::new(), Vec::new());
            while month.next_hour(&mut hour) {
                all.extend_from_slice(&hour);
            }
            (all, month.labels().to_vec())
        };
        let (a, labels_a) = collect(1);
        let (b, labels_b) = collect(1);
        let (c, _) = collect(2);
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert_eq!(labels_a, labels_b);
        assert_ne!(a, c);
        assert!(a.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "sorted by instant");
        let end = config.start_at_ms + 4 * DAY_MS;
        assert!(a.iter().all(|e| e.at_ms >= config.start_at_ms && e.at_ms < end));
    }
}

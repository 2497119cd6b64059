//! The detectors over small seeded synthetic months (`tollgate_fraud::synthetic`): every
//! injected case is found (recall 1: they are clear-cut by construction, far past every
//! default threshold), each at most once per episode; a month with nothing injected
//! raises nothing; a tight subscriber cap holds over a month; and a replayed month gives
//! the same findings (the detectors are deterministic).

use tollgate_fraud::synthetic::{matches, score, Label, Month, SyntheticConfig};
use tollgate_fraud::{Detectors, Finding, Policy};

fn config(seed: u64, fraudsters_per_kind: u32, leakage_hours_per_kind: u32) -> SyntheticConfig {
    SyntheticConfig {
        subscribers: 600,
        days: 20,
        seed,
        fraudsters_per_kind,
        leakage_hours_per_kind,
        ..SyntheticConfig::default()
    }
}

/// Runs the default detectors (with `policy`'s changes) over the month; the findings, the
/// labels and the detectors.
fn run(config: SyntheticConfig, policy: Policy) -> (Vec<Finding>, Vec<Label>, Detectors) {
    let mut detectors = Detectors::new(&policy).expect("a valid policy");
    let mut month = Month::new(config);
    let (mut hour, mut findings) = (Vec::new(), Vec::new());
    while month.next_hour(&mut hour) {
        for event in &hour {
            findings.extend(detectors.observe(event));
        }
    }
    (findings, month.labels().to_vec(), detectors)
}

#[test]
fn every_injected_case_is_found_and_each_episode_once() {
    for seed in [3, 8] {
        let (findings, labels, _) = run(config(seed, 2, 1), Policy::default());
        assert_eq!(labels.len(), 2 * 3 + 3, "2 fraudsters of each of 3 kinds, 1 hour of each of 3 leaks");
        for (kind, s) in score(&labels, &findings) {
            assert_eq!(s.labels_found, s.labels, "seed {seed}: {} found {s:?}", kind.name());
            assert!(s.labels > 0);
        }
        for label in &labels {
            let own = findings.iter().filter(|f| f.detector == label.detector && matches(label, f)).count();
            assert_eq!(own, 1, "seed {seed}: one finding for the episode {label:?}");
        }
    }
}

#[test]
fn a_month_with_nothing_injected_raises_nothing() {
    for seed in [1, 2, 3] {
        let (findings, labels, _) = run(config(seed, 0, 0), Policy::default());
        assert!(labels.is_empty());
        assert!(findings.is_empty(), "seed {seed}: {findings:#?}");
    }
}

#[test]
fn a_subscriber_cap_below_the_population_holds_all_month() {
    let policy = Policy { max_subscribers: 100, ..Policy::default() };
    let (_, _, detectors) = run(config(5, 0, 0), policy);
    assert_eq!(detectors.subscribers(), 100);
    assert!(detectors.evicted() > 0, "600 subscribers went through 100 slots");
}

#[test]
fn a_replayed_month_gives_the_same_findings() {
    let small = SyntheticConfig { subscribers: 200, days: 12, ..config(9, 1, 1) };
    let (first, _, _) = run(small.clone(), Policy::default());
    let (again, _, _) = run(small, Policy::default());
    assert!(!first.is_empty(), "something was injected and found");
    assert_eq!(first, again);
}

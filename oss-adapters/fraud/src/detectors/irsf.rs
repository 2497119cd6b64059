//! `Irsf`: international revenue share fraud, as bursts of short originating calls to
//! high-cost prefixes: `min_calls` such calls within `window_seconds`, each at most
//! `max_call_seconds` long. Attempts count whatever their outcome except `Rejected`
//! (refused calls cost nothing, but a burst of them is caught when they connect).
//!
//! State exists only for subscribers who called a high-cost prefix recently: the ring of
//! their last `min_calls` such calls' instants (8 bytes each) in an `Lru`, so memory is at
//! most `max_subscribers × (8 × min_calls + 64)` bytes and normally far less. Prefix
//! matching is one hash lookup per prefix length of the called number (at most 15).
//!
//! An episode: found once, re-armed when `window_seconds` pass without such a call.

use std::collections::{HashSet, VecDeque};

use crate::detectors::{charging_outcome, window_ms, Detector};
use crate::finding::{Action, DetectorKind, Finding, Subject};
use crate::lru::Lru;
use crate::policy::IrsfPolicy;
use crate::{Destination, Direction, FraudError, Outcome, Service, UsageEvent};

#[derive(Debug)]
struct Burst {
    /// The instants of the last `min_calls` matching calls, oldest first.
    calls_at_ms: VecDeque<i64>,
    armed: bool,
}

/// The IRSF detector.
#[derive(Debug)]
pub struct Irsf {
    policy: IrsfPolicy,
    action: Action,
    prefixes: HashSet<Destination, foldhash::fast::FixedState>,
    /// The digit counts the prefixes have, ascending.
    prefix_lengths: Vec<usize>,
    window_ms: i64,
    subscribers: Lru<Burst>,
}

impl Irsf {
    /// Fails on a prefix that is not digits.
    pub fn new(policy: IrsfPolicy, max_subscribers: usize) -> Result<Irsf, FraudError> {
        let mut prefixes = HashSet::with_hasher(foldhash::fast::FixedState::default());
        for text in &policy.high_cost_prefixes {
            prefixes.insert(Destination::parse(text)?);
        }
        let mut prefix_lengths: Vec<usize> = prefixes.iter().map(|p| p.len()).collect();
        prefix_lengths.sort_unstable();
        prefix_lengths.dedup();
        let action = if policy.suspend { Action::AlarmAndSuspend } else { Action::Alarm };
        let window_ms = window_ms(policy.window_seconds);
        Ok(Irsf { policy, action, prefixes, prefix_lengths, window_ms, subscribers: Lru::new(max_subscribers) })
    }

    /// Subscribers forgotten to stay within `max_subscribers`.
    pub fn evicted(&self) -> u64 {
        self.subscribers.evicted()
    }

    /// Subscribers with state.
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// The high-cost prefix `destination` starts with, if any.
    pub fn high_cost_prefix(&self, destination: Destination) -> Option<Destination> {
        self.prefix_lengths
            .iter()
            .take_while(|len| **len <= destination.len())
            .map(|len| destination.prefix(*len))
            .find(|prefix| self.prefixes.contains(prefix))
    }
}

impl Detector for Irsf {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Irsf
    }

    fn observe(&mut self, event: &UsageEvent) -> Option<Finding> {
        if !self.policy.enabled
            || !charging_outcome(event)
            || event.outcome == Outcome::Rejected
            || event.direction != Direction::Originating
            || event.service != Service::Voice
            || event.units > self.policy.max_call_seconds
        {
            return None;
        }
        let prefix = self.high_cost_prefix(event.destination?)?;
        let min_calls = self.policy.min_calls;
        let window_ms = self.window_ms;
        let burst = self
            .subscribers
            .get_or_insert_with(event.subscriber, || Burst { calls_at_ms: VecDeque::new(), armed: true });
        if let Some(last) = burst.calls_at_ms.back() {
            if event.at_ms.saturating_sub(*last) > window_ms {
                burst.armed = true;
                burst.calls_at_ms.clear();
            }
        }
        if burst.calls_at_ms.len() == min_calls {
            burst.calls_at_ms.pop_front();
        }
        burst.calls_at_ms.push_back(event.at_ms);
        let first = *burst.calls_at_ms.front()?;
        if !burst.armed || burst.calls_at_ms.len() < min_calls || event.at_ms.saturating_sub(first) > window_ms {
            return None;
        }
        burst.armed = false;
        let span_seconds = event.at_ms.saturating_sub(first) as f64 / 1000.0;
        Some(Finding {
            detector: DetectorKind::Irsf,
            subject: Subject::Subscriber(event.subscriber),
            at_ms: event.at_ms,
            window_from_at_ms: first,
            window_until_at_ms: event.at_ms,
            severity: self.policy.severity,
            text: format!(
                "subscriber {} made {min_calls} short calls to high-cost prefixes in {span_seconds:.0} s (the last to {prefix})",
                event.subscriber
            ),
            evidence: vec![("calls", min_calls as f64), ("span_seconds", span_seconds)],
            action: self.action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::tests::call;

    const MINUTE_MS: i64 = 60_000;

    fn detector() -> Irsf {
        // 3 calls of at most 60 s to 882 or 2526 within 10 minutes.
        let policy = IrsfPolicy {
            high_cost_prefixes: vec!["882".to_owned(), "+2526".to_owned()],
            min_calls: 3,
            window_seconds: 600,
            max_call_seconds: 60,
            ..IrsfPolicy::default()
        };
        Irsf::new(policy, 100).expect("valid prefixes")
    }

    /// Calls subscriber 1 makes at the given minutes to `to`, `seconds` long; the minutes
    /// at which a finding came.
    fn minutes_found(d: &mut Irsf, calls: &[(i64, &str, u64)]) -> Vec<i64> {
        calls
            .iter()
            .filter(|(minute, to, seconds)| d.observe(&call(1, minute * MINUTE_MS, to, *seconds)).is_some())
            .map(|(minute, _, _)| *minute)
            .collect()
    }

    #[test]
    fn prefixes_match_by_their_leading_digits_only() {
        let d = detector();
        let p = |s: &str| Destination::parse(s).expect("digits");
        assert_eq!(d.high_cost_prefix(p("8821234")), Some(p("882")));
        assert_eq!(d.high_cost_prefix(p("25261234")), Some(p("2526")));
        assert_eq!(d.high_cost_prefix(p("25271234")), None);
        assert_eq!(d.high_cost_prefix(p("88")), None, "shorter than the prefix");
        assert_eq!(d.high_cost_prefix(p("4988212")), None, "882 inside, not leading");
    }

    #[test]
    fn a_burst_of_short_calls_to_high_cost_prefixes_is_found_on_the_third() {
        let mut d = detector();
        let found = minutes_found(&mut d, &[(0, "88212", 30), (2, "25269", 20), (4, "88277", 45)]);
        assert_eq!(found, vec![4]);
    }

    #[test]
    fn normal_calls_are_not_a_burst() {
        let mut d = detector();
        // Long calls, national calls, calls too far apart, and a terminating call.
        assert!(
            minutes_found(&mut d, &[(0, "88212", 61), (1, "88212", 600), (2, "4930", 20), (3, "4930", 20)]).is_empty()
        );
        assert!(minutes_found(&mut d, &[(100, "88212", 30), (111, "88212", 30), (122, "88212", 30)]).is_empty());
        let mut incoming = call(1, 200 * MINUTE_MS, "88212", 30);
        incoming.direction = Direction::Terminating;
        for minute in 0..5 {
            incoming.at_ms = (200 + minute) * MINUTE_MS;
            assert!(d.observe(&incoming).is_none());
        }
        let mut rejected = call(1, 300 * MINUTE_MS, "88212", 30);
        rejected.outcome = Outcome::Rejected;
        assert!((0..5).all(|_| d.observe(&rejected).is_none()));
        assert_eq!(d.subscribers(), 1, "only the subscriber who called 882 has state");
    }

    #[test]
    fn one_finding_per_burst_and_a_new_burst_after_a_quiet_window() {
        let mut d = detector();
        // Minutes 0–20 every 2 minutes: one burst, found at minute 4. The next call comes
        // at 40, 20 minutes after the last (> 10): re-armed, found again at minute 44.
        let calls: Vec<(i64, &str, u64)> =
            (0..=10).map(|i| (i * 2, "88212", 30)).chain([40, 42, 44].map(|m| (m, "88213", 30))).collect();
        assert_eq!(minutes_found(&mut d, &calls), vec![4, 44]);
    }

    #[test]
    fn the_state_is_bounded_by_max_subscribers() {
        let policy = IrsfPolicy { high_cost_prefixes: vec!["882".to_owned()], ..IrsfPolicy::default() };
        let mut d = Irsf::new(policy, 5).expect("valid");
        for subscriber in 0..100 {
            d.observe(&call(subscriber, 0, "88212", 30));
        }
        assert_eq!(d.subscribers(), 5);
    }
}

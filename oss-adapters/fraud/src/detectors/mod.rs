//! The detectors: each a pure, deterministic state machine over `UsageEvent`s (no clock,
//! no I/O, no thread; the time is the events'), raising at most one `Finding` per event
//! and one per episode. `Detectors` bundles all of them, built from one `Policy`, and
//! fans each event out.

mod irsf;
mod leakage;
mod simbox;
mod spike;

pub use irsf::Irsf;
pub use leakage::{Divergence, UnratedLeak, ZeroPricedSpike};
pub use simbox::SimBox;
pub use spike::UsageSpike;

use crate::finding::{Action, Actions, DetectorKind, Finding};
use crate::policy::Policy;
use crate::{FraudError, Source, UsageEvent};

/// One detector.
pub trait Detector {
    fn kind(&self) -> DetectorKind;
    /// Takes one event into the state; a finding when it starts an episode.
    fn observe(&mut self, event: &UsageEvent) -> Option<Finding>;
}

/// Whether the event is a charging outcome (online, or a mediated record as charged or
/// rejected) rather than mediation's input, which only the divergence detector counts.
pub(crate) fn charging_outcome(event: &UsageEvent) -> bool {
    event.source != Source::MediationInput
}

/// A window or bucket of `seconds` in milliseconds: at least 1 s, saturating rather than
/// overflowing (a policy that skipped `Policy::check` cannot make a detector panic).
pub(crate) fn window_ms(seconds: u64) -> i64 {
    i64::try_from(seconds.max(1).saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// All six detectors, from one policy.
#[derive(Debug)]
pub struct Detectors {
    pub usage_spike: UsageSpike,
    pub irsf: Irsf,
    pub sim_box: SimBox,
    pub unrated: UnratedLeak,
    pub zero_priced: ZeroPricedSpike,
    pub divergence: Divergence,
}

impl Detectors {
    /// Checks the policy and builds the detectors.
    pub fn new(policy: &Policy) -> Result<Detectors, FraudError> {
        policy.check()?;
        let cap = policy.max_subscribers;
        Ok(Detectors {
            usage_spike: UsageSpike::new(policy.usage_spike.clone(), cap),
            irsf: Irsf::new(policy.irsf.clone(), cap)?,
            sim_box: SimBox::new(policy.sim_box.clone(), cap),
            unrated: UnratedLeak::new(policy.leakage.clone()),
            zero_priced: ZeroPricedSpike::new(policy.leakage.clone()),
            divergence: Divergence::new(policy.leakage.clone()),
        })
    }

    /// Fans `event` out to every detector; the findings, in the order of
    /// [`DetectorKind::ALL`]. Allocates only for a finding.
    pub fn observe(&mut self, event: &UsageEvent) -> impl Iterator<Item = Finding> {
        [
            self.usage_spike.observe(event),
            self.irsf.observe(event),
            self.sim_box.observe(event),
            self.unrated.observe(event),
            self.zero_priced.observe(event),
            self.divergence.observe(event),
        ]
        .into_iter()
        .flatten()
    }

    /// `observe`, then for each finding `actions.alarm` and, when the policy says so,
    /// `actions.suspend`. The findings are returned too.
    pub fn observe_and_act(&mut self, event: &UsageEvent, actions: &mut dyn Actions) -> Vec<Finding> {
        let findings: Vec<Finding> = self.observe(event).collect();
        for finding in &findings {
            actions.alarm(finding);
            if let (Action::AlarmAndSuspend, Some(subscriber)) = (finding.action, finding.subscriber()) {
                actions.suspend(subscriber, finding);
            }
        }
        findings
    }

    /// Subscribers forgotten by the per-subscriber detectors to stay within
    /// `max_subscribers`, summed.
    pub fn evicted(&self) -> u64 {
        self.usage_spike.evicted() + self.irsf.evicted() + self.sim_box.evicted()
    }

    /// The most subscribers any per-subscriber detector holds state for.
    pub fn subscribers(&self) -> usize {
        self.usage_spike.subscribers().max(self.irsf.subscribers()).max(self.sim_box.subscribers())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Destination, Direction, Outcome, Service};

    pub(crate) const DAY_MS: i64 = 86_400_000;

    /// An online originating voice call, rated at 0, from no cell.
    pub(crate) fn call(subscriber: u64, at_ms: i64, to: &str, seconds: u64) -> UsageEvent {
        UsageEvent {
            subscriber,
            at_ms,
            direction: Direction::Originating,
            service: Service::Voice,
            destination: Some(Destination::parse(to).expect("test numbers are digits")),
            units: seconds,
            charged_minor: 0,
            cell: None,
            outcome: Outcome::Rated,
            source: Source::Online,
        }
    }

    #[derive(Default)]
    struct Recorded {
        alarms: Vec<DetectorKind>,
        suspended: Vec<u64>,
    }

    impl Actions for Recorded {
        fn alarm(&mut self, finding: &Finding) {
            self.alarms.push(finding.detector);
        }
        fn suspend(&mut self, subscriber: u64, _finding: &Finding) {
            self.suspended.push(subscriber);
        }
    }

    #[test]
    fn the_policy_decides_who_is_suspended() {
        // IRSF suspends by default; turned off here for the second run.
        for suspend in [true, false] {
            let mut policy = Policy::default();
            policy.irsf.suspend = suspend;
            policy.irsf.min_calls = 2;
            let mut detectors = Detectors::new(&policy).expect("valid policy");
            let mut recorded = Recorded::default();
            let mut findings = Vec::new();
            for minute in 0..2 {
                findings.extend(detectors.observe_and_act(&call(9, minute * 60_000, "88212", 30), &mut recorded));
            }
            assert_eq!(recorded.alarms, vec![DetectorKind::Irsf]);
            assert_eq!(recorded.suspended, if suspend { vec![9] } else { vec![] });
            assert_eq!(findings.len(), 1);
        }
    }

    #[test]
    fn mediation_input_is_seen_only_by_the_divergence_detector() {
        let mut policy = Policy::default();
        policy.irsf.min_calls = 1;
        let mut detectors = Detectors::new(&policy).expect("valid policy");
        let mut e = call(9, 0, "88212", 30);
        e.source = Source::MediationInput;
        assert_eq!(detectors.observe(&e).count(), 0);
        assert_eq!(detectors.subscribers(), 0);
        e.source = Source::Mediated;
        assert_eq!(detectors.observe(&e).map(|f| f.detector).collect::<Vec<_>>(), vec![DetectorKind::Irsf]);
    }

    /// Extreme events through detectors built from extreme policies (bypassing
    /// `Policy::check`, as a caller of the constructors can) raise no panic.
    #[test]
    fn extreme_events_and_unchecked_policies_do_not_panic() {
        let mut policies = vec![Policy::default()];
        let mut p = Policy::default();
        p.usage_spike.bucket_seconds = u64::MAX;
        p.irsf.window_seconds = u64::MAX;
        p.irsf.min_calls = 0;
        p.sim_box.window_seconds = 0;
        p.sim_box.max_cells = usize::MAX;
        p.sim_box.min_originating_calls = 0;
        p.sim_box.min_distinct_destinations = 0;
        p.leakage.window_seconds = u64::MAX;
        p.leakage.divergence_settle_seconds = 0;
        p.leakage.min_events = 0;
        p.leakage.divergence_min_records = 0;
        p.leakage.zero_priced_warmup_windows = 0;
        policies.push(p);
        for policy in policies {
            let cap = 3;
            let mut detectors = Detectors {
                usage_spike: UsageSpike::new(policy.usage_spike.clone(), cap),
                irsf: Irsf::new(policy.irsf.clone(), cap).expect("digits"),
                sim_box: SimBox::new(policy.sim_box.clone(), cap),
                unrated: UnratedLeak::new(policy.leakage.clone()),
                zero_priced: ZeroPricedSpike::new(policy.leakage.clone()),
                divergence: Divergence::new(policy.leakage.clone()),
            };
            let instants = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX, 0, i64::MIN];
            for (i, at_ms) in instants.iter().enumerate() {
                for source in [Source::Online, Source::Mediated, Source::MediationInput] {
                    for outcome in [Outcome::Rated, Outcome::ZeroPriced, Outcome::Unrated, Outcome::Rejected] {
                        let mut e = call(i as u64 % 4, *at_ms, "88212345678901", 1);
                        e.source = source;
                        e.outcome = outcome;
                        e.units = if i % 2 == 0 { u64::MAX } else { 0 };
                        e.charged_minor = if i % 2 == 0 { i64::MAX } else { i64::MIN };
                        e.cell = Some(i as u32);
                        let _ = detectors.observe(&e).count();
                        e.direction = Direction::Terminating;
                        let _ = detectors.observe(&e).count();
                    }
                }
            }
            assert!(detectors.subscribers() <= cap);
        }
    }

    #[test]
    fn a_bad_policy_builds_no_detectors() {
        let mut policy = Policy::default();
        policy.sim_box.max_terminating_ratio = 2.0;
        assert!(Detectors::new(&policy).is_err());
    }
}

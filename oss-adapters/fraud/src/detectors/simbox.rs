//! `SimBox`: a SIM in a SIM box terminates bypassed international calls as local ones, so
//! over a day it makes many originating calls to many distinct numbers, receives (almost)
//! nothing and never moves. Per subscriber and tumbling window (`window_seconds`, aligned
//! to the Unix epoch): originating voice calls, distinct destinations, terminating events
//! of any service and distinct cells; judged on every event, found when all four hold.
//! Events without a cell do not count as a cell (mediated CDRs often have none).
//!
//! Bounded: the distinct destinations are kept only up to `min_distinct_destinations`
//! (8 bytes each), the cells up to `max_cells + 1`; memory is at most
//! `max_subscribers × (8 × min_distinct_destinations + 80)` bytes.
//!
//! An episode: found once, re-armed when a window closes in which the pattern did not
//! hold (so a SIM box running for weeks is one finding).

use crate::detectors::{charging_outcome, window_ms, Detector};
use crate::finding::{Action, DetectorKind, Finding, Subject};
use crate::lru::Lru;
use crate::policy::{SimBoxPolicy, MAX_SIM_BOX_CELLS};
use crate::{Direction, Service, UsageEvent};

#[derive(Debug)]
struct Window {
    index: i64,
    originating_calls: u32,
    terminating: u32,
    /// Distinct destination keys, up to the policy's minimum.
    destinations: Vec<u64>,
    cells: [u32; MAX_SIM_BOX_CELLS + 1],
    cell_count: u8,
    /// The pattern held at some point of this window.
    held: bool,
    armed: bool,
}

/// The SIM-box detector.
#[derive(Debug)]
pub struct SimBox {
    policy: SimBoxPolicy,
    action: Action,
    window_ms: i64,
    subscribers: Lru<Window>,
}

impl SimBox {
    pub fn new(policy: SimBoxPolicy, max_subscribers: usize) -> SimBox {
        let action = if policy.suspend { Action::AlarmAndSuspend } else { Action::Alarm };
        let window_ms = window_ms(policy.window_seconds);
        SimBox { policy, action, window_ms, subscribers: Lru::new(max_subscribers) }
    }

    /// Subscribers forgotten to stay within `max_subscribers`.
    pub fn evicted(&self) -> u64 {
        self.subscribers.evicted()
    }

    /// Subscribers with state.
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }
}

impl Detector for SimBox {
    fn kind(&self) -> DetectorKind {
        DetectorKind::SimBox
    }

    fn observe(&mut self, event: &UsageEvent) -> Option<Finding> {
        if !self.policy.enabled || !charging_outcome(event) {
            return None;
        }
        let p = &self.policy;
        let index = event.at_ms.div_euclid(self.window_ms);
        let w = self.subscribers.get_or_insert_with(event.subscriber, || Window {
            index,
            originating_calls: 0,
            terminating: 0,
            destinations: Vec::new(),
            cells: [0; MAX_SIM_BOX_CELLS + 1],
            cell_count: 0,
            held: false,
            armed: true,
        });
        if index > w.index {
            // A window closed (and any between had no events, so the pattern did not
            // hold in them either).
            if !w.held || index > w.index + 1 {
                w.armed = true;
            }
            w.index = index;
            w.originating_calls = 0;
            w.terminating = 0;
            w.destinations.clear();
            w.cell_count = 0;
            w.held = false;
        }
        match event.direction {
            Direction::Terminating => w.terminating = w.terminating.saturating_add(1),
            Direction::Originating if event.service == Service::Voice => {
                w.originating_calls = w.originating_calls.saturating_add(1);
                if let Some(to) = event.destination {
                    if w.destinations.len() < p.min_distinct_destinations && !w.destinations.contains(&to.key()) {
                        w.destinations.push(to.key());
                    }
                }
            }
            Direction::Originating => {}
        }
        if let Some(cell) = event.cell {
            let known = &w.cells[..usize::from(w.cell_count)];
            let room = usize::from(w.cell_count) <= p.max_cells && usize::from(w.cell_count) < w.cells.len();
            if !known.contains(&cell) && room {
                w.cells[usize::from(w.cell_count)] = cell;
                w.cell_count += 1;
            }
        }
        let calls = f64::from(w.originating_calls);
        let holds = w.originating_calls >= p.min_originating_calls
            && w.destinations.len() >= p.min_distinct_destinations
            && f64::from(w.terminating) <= p.max_terminating_ratio * calls
            && usize::from(w.cell_count) <= p.max_cells;
        if !holds {
            return None;
        }
        w.held = true;
        if !w.armed {
            return None;
        }
        w.armed = false;
        let from = w.index.saturating_mul(self.window_ms);
        Some(Finding {
            detector: DetectorKind::SimBox,
            subject: Subject::Subscriber(event.subscriber),
            at_ms: event.at_ms,
            window_from_at_ms: from,
            window_until_at_ms: from.saturating_add(self.window_ms),
            severity: p.severity,
            text: format!(
                "subscriber {} made {} calls to at least {} distinct numbers with {} incoming, from {} cell(s)",
                event.subscriber,
                w.originating_calls,
                w.destinations.len(),
                w.terminating,
                w.cell_count
            ),
            evidence: vec![
                ("originating_calls", calls),
                ("distinct_destinations", w.destinations.len() as f64),
                ("terminating", f64::from(w.terminating)),
                ("cells", f64::from(w.cell_count)),
            ],
            action: self.action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::tests::{call, DAY_MS};

    #[test]
    fn a_window_is_at_most_80_bytes_beside_its_destinations() {
        assert!(std::mem::size_of::<Window>() <= 80, "{}", std::mem::size_of::<Window>());
    }

    fn detector() -> SimBox {
        // 10 calls to 8 distinct numbers in a day, at most 1 incoming per 10 calls, 1 cell.
        let policy = SimBoxPolicy {
            min_originating_calls: 10,
            min_distinct_destinations: 8,
            max_terminating_ratio: 0.1,
            max_cells: 1,
            ..SimBoxPolicy::default()
        };
        SimBox::new(policy, 100)
    }

    /// A day of `calls` calls from subscriber 1 to `distinct` numbers in turn, from `cells`
    /// cells in turn, with `incoming` terminating calls after them; the findings.
    fn day(d: &mut SimBox, day: i64, calls: i64, distinct: i64, cells: u32, incoming: i64) -> Vec<Finding> {
        let mut found = Vec::new();
        for i in 0..calls {
            let mut e = call(1, day * DAY_MS + i * 60_000, &format!("4930{}", 1000 + i % distinct), 90);
            e.cell = Some(7 + (i as u32 % cells));
            found.extend(d.observe(&e));
        }
        for i in 0..incoming {
            let mut e = call(1, day * DAY_MS + (calls + i) * 60_000, "4930999", 90);
            e.direction = Direction::Terminating;
            e.cell = Some(7);
            found.extend(d.observe(&e));
        }
        found
    }

    #[test]
    fn many_distinct_calls_from_one_cell_and_nothing_incoming_is_found_at_the_tenth_call() {
        let mut d = detector();
        let found = day(&mut d, 0, 30, 20, 1, 0);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].at_ms, 9 * 60_000, "the 10th call (minute 9) has 10 calls and 10 numbers");
        assert_eq!(found[0].evidence("distinct_destinations"), Some(8.0), "counted up to the minimum only");
    }

    #[test]
    fn each_missing_condition_keeps_it_quiet() {
        assert!(day(&mut detector(), 0, 9, 9, 1, 0).is_empty(), "too few calls");
        assert!(day(&mut detector(), 0, 30, 7, 1, 0).is_empty(), "too few distinct numbers");
        assert!(day(&mut detector(), 0, 30, 20, 2, 0).is_empty(), "two cells");
        // Incoming traffic first, then the calls: 5 incoming for 30 calls is above 0.1.
        let mut d = detector();
        for i in 0..5 {
            let mut e = call(1, i * 60_000, "4930999", 90);
            e.direction = Direction::Terminating;
            assert!(d.observe(&e).is_none());
        }
        assert!(day(&mut d, 0, 30, 20, 1, 0).is_empty(), "incoming traffic");
    }

    #[test]
    fn a_sim_box_running_for_days_is_one_finding_until_a_clean_day() {
        let mut d = detector();
        let mut per_day = Vec::new();
        for n in 0..5 {
            per_day.push(day(&mut d, n, 30, 20, 1, 0).len());
        }
        assert_eq!(per_day, vec![1, 0, 0, 0, 0]);
        // Day 5 is clean (few calls): re-armed, so day 6 is a new finding.
        assert!(day(&mut d, 5, 3, 3, 1, 0).is_empty());
        assert_eq!(day(&mut d, 6, 30, 20, 1, 0).len(), 1);
    }

    #[test]
    fn the_state_is_bounded_by_max_subscribers() {
        let mut d = SimBox::new(SimBoxPolicy::default(), 3);
        for subscriber in 0..50 {
            d.observe(&call(subscriber, 0, "4930", 60));
        }
        assert_eq!(d.subscribers(), 3);
    }
}

//! What a fault watcher reads of the provisioning workflow ([`StepHealth`]): per step
//! (`activate`, `createSubscription`, …), how many of its runs failed for good since the
//! process started and whether the last one that ended did. The workflow notes each
//! forward attempt that ends done or failed for good, after its transaction commits; the
//! binary turns a failed step into an alarm and clears it when a later run of the same
//! step succeeds. In memory, bounded by the set of steps; nothing here touches the store.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::action::Step;

/// The steps' last outcomes; shared (`Arc`) by a workflow and its watcher.
#[derive(Debug, Default)]
pub struct StepHealth {
    steps: Mutex<BTreeMap<&'static str, StepStatus>>,
}

/// One step's outcomes as [`StepHealth::statuses`] reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepStatus {
    /// The step (`Step::as_str`).
    pub step: &'static str,
    /// Runs that failed for good since the process started.
    pub failures: u64,
    /// What the last run that ended failed of (order, item, error), `None` when it was done.
    pub failed: Option<String>,
}

impl StepHealth {
    /// A run of `step` failed for good: `problem` says which order, item and why.
    pub(crate) fn failed(&self, step: Step, problem: String) {
        let mut steps = self.steps.lock().unwrap_or_else(PoisonError::into_inner);
        let status = steps.entry(step.as_str()).or_insert_with(|| StepStatus::new(step));
        status.failures += 1;
        status.failed = Some(problem);
    }

    /// A run of `step` was done (or skipped: nothing to do).
    pub(crate) fn done(&self, step: Step) {
        let mut steps = self.steps.lock().unwrap_or_else(PoisonError::into_inner);
        steps.entry(step.as_str()).or_insert_with(|| StepStatus::new(step)).failed = None;
    }

    /// Every step that ended at least once, by name.
    pub fn statuses(&self) -> Vec<StepStatus> {
        self.steps.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }
}

impl StepStatus {
    fn new(step: Step) -> StepStatus {
        StepStatus { step: step.as_str(), failures: 0, failed: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_stays_until_the_same_step_is_done_again() {
        let health = StepHealth::default();
        assert!(health.statuses().is_empty());
        health.failed(Step::Activate, "order 1 item 1: refused".to_owned());
        health.done(Step::Complete);
        let statuses = health.statuses();
        assert_eq!(statuses.len(), 2);
        let activate = statuses.iter().find(|s| s.step == "activate").expect("activate");
        assert_eq!((activate.failures, activate.failed.as_deref()), (1, Some("order 1 item 1: refused")));
        health.failed(Step::Activate, "order 2 item 1: refused".to_owned());
        health.done(Step::Activate);
        let activate = health.statuses().into_iter().find(|s| s.step == "activate").expect("activate");
        assert_eq!((activate.failures, activate.failed), (2, None));
    }
}

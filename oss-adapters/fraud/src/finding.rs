//! What a detector raises: a `Finding` (which detector, about whom, when, how bad, a short
//! text and the numbers behind it, and the action the policy asks for), its mapping onto
//! an alarm report of `tollgate-alarms` (`AlarmFields`), and the `Actions` hook through
//! which the server raises the alarm and places the suspend order.

use serde::{Deserialize, Serialize};

/// Which detector raised a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// A subscriber's usage far above their own baseline.
    UsageSpike,
    /// International revenue share fraud: a burst of short calls to high-cost prefixes.
    Irsf,
    /// A SIM box: many distinct destinations, nothing incoming, one cell.
    SimBox,
    /// Usage that could not be rated, above a count and a share of the window.
    LeakageUnrated,
    /// The share of zero-priced usage far above its baseline.
    LeakageZeroPriced,
    /// Mediated volume read versus volume charged or rejected diverging.
    LeakageDivergence,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 6] = [
        DetectorKind::UsageSpike,
        DetectorKind::Irsf,
        DetectorKind::SimBox,
        DetectorKind::LeakageUnrated,
        DetectorKind::LeakageZeroPriced,
        DetectorKind::LeakageDivergence,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::UsageSpike => "usage_spike",
            DetectorKind::Irsf => "irsf",
            DetectorKind::SimBox => "sim_box",
            DetectorKind::LeakageUnrated => "leakage_unrated",
            DetectorKind::LeakageZeroPriced => "leakage_zero_priced",
            DetectorKind::LeakageDivergence => "leakage_divergence",
        }
    }

    /// Whether it watches one subscriber (true) or the whole system (false).
    pub fn per_subscriber(self) -> bool {
        matches!(self, DetectorKind::UsageSpike | DetectorKind::Irsf | DetectorKind::SimBox)
    }
}

/// Whom a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Subscriber(u64),
    /// The charging system as a whole (the leakage detectors).
    System,
}

/// How bad it is; the X.733 perceived severities an alarm can be raised with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Minor,
    Major,
    Critical,
}

impl Severity {
    /// The TMF642 `perceivedSeverity` name (`tollgate_alarms::PerceivedSeverity::as_str`).
    pub fn tmf642_name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

/// What the policy asks the server to do about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Alarm,
    /// Raise the alarm and suspend the subscriber (a TMF622 suspend order). Only a
    /// subscriber's finding asks for it.
    AlarmAndSuspend,
}

/// One episode a detector found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub detector: DetectorKind,
    pub subject: Subject,
    /// The instant of the event that raised it, Unix milliseconds.
    pub at_ms: i64,
    /// The span the evidence covers: the window or bucket judged, Unix milliseconds.
    pub window_from_at_ms: i64,
    pub window_until_at_ms: i64,
    pub severity: Severity,
    /// One sentence for an operator, with the numbers.
    pub text: String,
    /// The numbers behind it, by name (`z`, `calls`, `ratio`, …).
    pub evidence: Vec<(&'static str, f64)>,
    pub action: Action,
}

impl Finding {
    /// The subscriber it is about, if any.
    pub fn subscriber(&self) -> Option<u64> {
        match self.subject {
            Subject::Subscriber(key) => Some(key),
            Subject::System => None,
        }
    }

    /// The evidence value named `name`.
    pub fn evidence(&self, name: &str) -> Option<f64> {
        self.evidence.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// The alarm report's fields (see [`AlarmFields`]).
    pub fn alarm_fields(&self) -> AlarmFields {
        let (alarmed_object, alarmed_object_type) = match self.subject {
            Subject::Subscriber(key) => (format!("subscriber/{key}/{}", self.detector.name()), "subscriber"),
            Subject::System => (format!("charging/{}", self.detector.name()), "chargingSystem"),
        };
        let (alarm_type, probable_cause) = match self.detector {
            DetectorKind::UsageSpike | DetectorKind::Irsf | DetectorKind::SimBox => {
                ("qualityOfServiceAlarm", "thresholdCrossed")
            }
            DetectorKind::LeakageUnrated | DetectorKind::LeakageDivergence => {
                ("processingErrorAlarm", "informationMissing")
            }
            DetectorKind::LeakageZeroPriced => ("processingErrorAlarm", "configurationOrCustomizationError"),
        };
        let mut specific_problem = self.text.clone();
        if specific_problem.len() > MAX_SPECIFIC_PROBLEM_BYTES {
            let mut end = MAX_SPECIFIC_PROBLEM_BYTES;
            while !specific_problem.is_char_boundary(end) {
                end -= 1;
            }
            specific_problem.truncate(end);
        }
        AlarmFields {
            alarmed_object,
            alarmed_object_type,
            alarm_type,
            probable_cause,
            specific_problem,
            perceived_severity: self.severity.tmf642_name(),
            source_system_id: SOURCE_SYSTEM_ID,
        }
    }
}

/// The system the alarms say raised them.
pub const SOURCE_SYSTEM_ID: &str = "tollgate-fraud";

/// `tollgate_alarms::alarm::MAX_TEXT_BYTES`: the longest specific problem an alarm takes.
pub const MAX_SPECIFIC_PROBLEM_BYTES: usize = 1024;

/// The fields of a `tollgate_alarms::AlarmReport`, field for field, with the enums as their
/// TMF642 names (what `AlarmType::parse` and `PerceivedSeverity::parse` read). This crate
/// does not depend on `tollgate-alarms` (which brings the store and SQL); the server
/// converts:
///
/// ```text
/// AlarmReport {
///     alarmed_object: f.alarmed_object,
///     alarmed_object_type: f.alarmed_object_type.into(),
///     alarm_type: AlarmType::parse(f.alarm_type, "alarmType")?,
///     probable_cause: f.probable_cause.into(),
///     specific_problem: f.specific_problem,
///     perceived_severity: PerceivedSeverity::parse(f.perceived_severity, "perceivedSeverity")?,
///     source_system_id: f.source_system_id.into(),
/// }
/// ```
///
/// The alarmed object names the subscriber and the detector (`subscriber/42/irsf`), or the
/// detector alone for the system-wide ones (`charging/leakage_unrated`), so two detectors
/// never update each other's alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmFields {
    pub alarmed_object: String,
    pub alarmed_object_type: &'static str,
    pub alarm_type: &'static str,
    pub probable_cause: &'static str,
    pub specific_problem: String,
    pub perceived_severity: &'static str,
    pub source_system_id: &'static str,
}

/// What the server does with findings. The detectors never call it themselves:
/// `Detectors::observe_and_act` does, after the detectors decided, so they stay pure.
///
/// The server's implementation (`tollgate serve --fraud`, `src/commands/fraud.rs`) must not
/// block the detector thread: it hands the work to a bounded queue. `alarm` becomes
/// `tollgate_alarms::Alarms::raise` with `Finding::alarm_fields`; `suspend` places a
/// TMF622 product order through `tollgate-orders` that modifies the subscriber's product
/// to `suspended`, idempotent by the finding's detector, subscriber and `at_ms` (so a
/// replayed stream suspends once), which the orders worker applies to the engine.
pub trait Actions {
    /// Raise (or update) the alarm of a finding.
    fn alarm(&mut self, finding: &Finding);
    /// Suspend the subscriber; called after `alarm` when the finding's action is
    /// `AlarmAndSuspend`.
    fn suspend(&mut self, subscriber: u64, finding: &Finding);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(detector: DetectorKind, subject: Subject, text: String) -> Finding {
        Finding {
            detector,
            subject,
            at_ms: 0,
            window_from_at_ms: 0,
            window_until_at_ms: 0,
            severity: Severity::Major,
            text,
            evidence: vec![("z", 7.5)],
            action: Action::Alarm,
        }
    }

    /// The names are ones `tollgate-alarms` accepts: each appears as a quoted TMF642 name
    /// in its source (read here rather than depending on the crate and its store).
    #[test]
    fn alarm_fields_use_names_the_alarms_crate_accepts() {
        let alarms = include_str!("../../alarms/src/alarm.rs");
        for detector in DetectorKind::ALL {
            let subject = if detector.per_subscriber() { Subject::Subscriber(42) } else { Subject::System };
            let fields = finding(detector, subject, "text".to_owned()).alarm_fields();
            assert!(alarms.contains(&format!("= \"{}\"", fields.alarm_type)), "{}", fields.alarm_type);
            assert!(alarms.contains(&format!("= \"{}\"", fields.perceived_severity)));
            assert!(fields.alarmed_object.ends_with(detector.name()));
        }
        for severity in [Severity::Warning, Severity::Minor, Severity::Major, Severity::Critical] {
            assert!(alarms.contains(&format!("= \"{}\"", severity.tmf642_name())));
        }
        assert!(alarms.contains(&format!("MAX_TEXT_BYTES: usize = {MAX_SPECIFIC_PROBLEM_BYTES};")));
    }

    #[test]
    fn two_detectors_on_one_subscriber_alarm_two_objects_and_long_texts_are_cut_on_a_char() {
        let a = finding(DetectorKind::Irsf, Subject::Subscriber(7), "x".to_owned()).alarm_fields();
        let b = finding(DetectorKind::SimBox, Subject::Subscriber(7), "x".to_owned()).alarm_fields();
        assert_ne!(a.alarmed_object, b.alarmed_object);
        assert!(a.alarmed_object.contains("/7/"));
        let long = "é".repeat(MAX_SPECIFIC_PROBLEM_BYTES);
        let cut = finding(DetectorKind::Irsf, Subject::Subscriber(7), long).alarm_fields().specific_problem;
        assert!(cut.len() <= MAX_SPECIFIC_PROBLEM_BYTES && !cut.is_empty());
        assert!(cut.chars().all(|c| c == 'é'));
    }
}

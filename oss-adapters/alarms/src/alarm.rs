//! An alarm as ITU-T X.733 and TMF642 (Alarm Management API v4) describe it, and its
//! one lifecycle: raised → updated (the same alarmed object and probable cause reported
//! again, with a new severity or problem) → cleared, which is final; acknowledgement is
//! separate from the state (an operator acknowledges a raised, updated or cleared alarm).
//!
//! Pure: no clock (instants are passed in, Unix milliseconds), no I/O. The names of the
//! values are TMF642's (`critical`, `communicationsAlarm`, `raised`, `acknowledged`); the
//! SNMP numbers of the severities are ITU-ALARM-TC's (RFC 3877).

use crate::AlarmError;

/// The longest alarmed object, probable cause, source system or user id, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest specific problem or comment, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;

macro_rules! names {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The TMF642 name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// From the TMF642 name; `field` names the field in the error.
            pub fn parse(text: &str, field: &'static str) -> Result<$name, AlarmError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(AlarmError::Invalid {
                        field,
                        problem: format!(
                            "{text:?} is not one of {}",
                            [$($text),+].join(", ")
                        ),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names! {
    /// How bad it is (X.733 perceived severity). `Cleared` is the severity of a cleared
    /// alarm only: a report never raises one with it.
    pub enum PerceivedSeverity {
        Critical = "critical",
        Major = "major",
        Minor = "minor",
        Warning = "warning",
        Indeterminate = "indeterminate",
        Cleared = "cleared",
    }
}

impl PerceivedSeverity {
    /// The ITU-ALARM-TC `ItuPerceivedSeverity` number (RFC 3877), as the MIB carries it.
    pub fn itu_number(self) -> i64 {
        match self {
            PerceivedSeverity::Cleared => 1,
            PerceivedSeverity::Indeterminate => 2,
            PerceivedSeverity::Critical => 3,
            PerceivedSeverity::Major => 4,
            PerceivedSeverity::Minor => 5,
            PerceivedSeverity::Warning => 6,
        }
    }
}

names! {
    /// The X.733 event type (TMF642 `alarmType`).
    pub enum AlarmType {
        Communications = "communicationsAlarm",
        ProcessingError = "processingErrorAlarm",
        Environmental = "environmentalAlarm",
        QualityOfService = "qualityOfServiceAlarm",
        Equipment = "equipmentAlarm",
    }
}

names! {
    /// Where the alarm is in its lifecycle.
    pub enum AlarmState {
        Raised = "raised",
        Updated = "updated",
        Cleared = "cleared",
    }
}

names! {
    /// Whether an operator has acknowledged it.
    pub enum AckState {
        Acknowledged = "acknowledged",
        Unacknowledged = "unacknowledged",
    }
}

/// What a source reports when it raises an alarm or reports it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmReport {
    /// What is faulty: `shard/0`, `diameter-peer/pgw1.example`, `disk/data`.
    pub alarmed_object: String,
    /// The kind of object (`shard`, `diameterPeer`, `fileSystem`).
    pub alarmed_object_type: String,
    pub alarm_type: AlarmType,
    /// The X.733 probable cause, in TMF642's camel case (`storageCapacityProblem`).
    pub probable_cause: String,
    /// What exactly went wrong, in words.
    pub specific_problem: String,
    pub perceived_severity: PerceivedSeverity,
    /// The system that raised it (`tollgate` for Tollgate's own sources).
    pub source_system_id: String,
}

impl AlarmReport {
    /// Checks every field, naming the first that is wrong.
    pub fn check(&self) -> Result<(), AlarmError> {
        for (field, value, limit) in [
            ("alarmedObject", &self.alarmed_object, MAX_NAME_BYTES),
            ("alarmedObjectType", &self.alarmed_object_type, MAX_NAME_BYTES),
            ("probableCause", &self.probable_cause, MAX_NAME_BYTES),
            ("sourceSystemId", &self.source_system_id, MAX_NAME_BYTES),
            ("specificProblem", &self.specific_problem, MAX_TEXT_BYTES),
        ] {
            check_text(field, value, limit)?;
        }
        if self.perceived_severity == PerceivedSeverity::Cleared {
            return Err(AlarmError::Invalid {
                field: "perceivedSeverity",
                problem: "an alarm is raised with a severity other than cleared; clear it instead".to_owned(),
            });
        }
        Ok(())
    }
}

/// Checks that `value` is not blank, holds no control character and is at most `limit`
/// bytes.
pub fn check_text(field: &'static str, value: &str, limit: usize) -> Result<(), AlarmError> {
    let problem = if value.trim().is_empty() {
        "is required".to_owned()
    } else if value.len() > limit {
        format!("is {} bytes, more than {limit}", value.len())
    } else if let Some(at) = value.find(char::is_control) {
        format!("has a control character at byte {at}")
    } else {
        return Ok(());
    };
    Err(AlarmError::Invalid { field, problem })
}

/// An alarm with its whole history's instants (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub id: i64,
    pub report: AlarmReport,
    pub state: AlarmState,
    pub ack_state: AckState,
    /// Who acknowledged it last.
    pub ack_user_id: Option<String>,
    pub raised_at_ms: i64,
    /// The last change of any kind (raised, updated, acknowledged, cleared).
    pub changed_at_ms: i64,
    pub cleared_at_ms: Option<i64>,
    pub acknowledged_at_ms: Option<i64>,
    /// Times it was reported again while open.
    pub reports: i64,
}

/// What a change did, for the audit trail and the notification it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Raised,
    /// Reported again: new severity or specific problem.
    Updated,
    /// Reported again with nothing new: only counted.
    Repeated,
    Cleared,
    Acknowledged,
    Unacknowledged,
    /// Asked for what it already was (a second clear, an acknowledged alarm acknowledged).
    Unchanged,
}

impl Change {
    /// The change [`Change::as_str`] names (an audit record's action).
    pub fn parse(text: &str) -> Option<Change> {
        [
            Change::Raised,
            Change::Updated,
            Change::Repeated,
            Change::Cleared,
            Change::Acknowledged,
            Change::Unacknowledged,
            Change::Unchanged,
        ]
        .into_iter()
        .find(|change| change.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Change::Raised => "raised",
            Change::Updated => "updated",
            Change::Repeated => "repeated",
            Change::Cleared => "cleared",
            Change::Acknowledged => "acknowledged",
            Change::Unacknowledged => "unacknowledged",
            Change::Unchanged => "unchanged",
        }
    }
}

impl Alarm {
    /// A new alarm from a checked report.
    pub fn raised(id: i64, report: AlarmReport, now_ms: i64) -> Alarm {
        Alarm {
            id,
            report,
            state: AlarmState::Raised,
            ack_state: AckState::Unacknowledged,
            ack_user_id: None,
            raised_at_ms: now_ms,
            changed_at_ms: now_ms,
            cleared_at_ms: None,
            acknowledged_at_ms: None,
            reports: 1,
        }
    }

    /// Whether it is still open (not cleared).
    pub fn is_open(&self) -> bool {
        self.state != AlarmState::Cleared
    }

    /// The severity as reported now: `cleared` once cleared.
    pub fn severity(&self) -> PerceivedSeverity {
        if self.is_open() {
            self.report.perceived_severity
        } else {
            PerceivedSeverity::Cleared
        }
    }

    /// The same object and cause reported again. A new severity or specific problem
    /// updates the alarm; the same one only counts the report.
    pub fn report_again(&mut self, report: AlarmReport, now_ms: i64) -> Result<Change, AlarmError> {
        self.open_for("reported again")?;
        self.reports += 1;
        let news = report.perceived_severity != self.report.perceived_severity
            || report.specific_problem != self.report.specific_problem
            || report.alarm_type != self.report.alarm_type;
        if !news {
            return Ok(Change::Repeated);
        }
        self.report = AlarmReport {
            alarmed_object: std::mem::take(&mut self.report.alarmed_object),
            probable_cause: std::mem::take(&mut self.report.probable_cause),
            ..report
        };
        self.state = AlarmState::Updated;
        self.changed_at_ms = now_ms;
        Ok(Change::Updated)
    }

    /// Clears it; clearing a cleared alarm changes nothing.
    pub fn clear(&mut self, now_ms: i64) -> Change {
        if !self.is_open() {
            return Change::Unchanged;
        }
        self.state = AlarmState::Cleared;
        self.cleared_at_ms = Some(now_ms);
        self.changed_at_ms = now_ms;
        Change::Cleared
    }

    /// Acknowledges it (or takes the acknowledgement back) as `user`.
    pub fn acknowledge(&mut self, ack: AckState, user: &str, now_ms: i64) -> Result<Change, AlarmError> {
        check_text("ackUserId", user, MAX_NAME_BYTES)?;
        if self.ack_state == ack {
            return Ok(Change::Unchanged);
        }
        self.ack_state = ack;
        self.ack_user_id = Some(user.to_owned());
        self.acknowledged_at_ms = (ack == AckState::Acknowledged).then_some(now_ms);
        self.changed_at_ms = now_ms;
        Ok(match ack {
            AckState::Acknowledged => Change::Acknowledged,
            AckState::Unacknowledged => Change::Unacknowledged,
        })
    }

    fn open_for(&self, change: &'static str) -> Result<(), AlarmError> {
        if self.is_open() {
            return Ok(());
        }
        Err(AlarmError::Transition { id: self.id.to_string(), state: self.state.as_str(), change })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A report of `shard/0`'s storage (the service's tests use it too).
    pub(crate) fn report(severity: PerceivedSeverity, problem: &str) -> AlarmReport {
        AlarmReport {
            alarmed_object: "shard/0".to_owned(),
            alarmed_object_type: "shard".to_owned(),
            alarm_type: AlarmType::ProcessingError,
            probable_cause: "storageCapacityProblem".to_owned(),
            specific_problem: problem.to_owned(),
            perceived_severity: severity,
            source_system_id: "tollgate".to_owned(),
        }
    }

    #[test]
    fn a_report_again_updates_only_with_news_and_a_clear_is_final() {
        let mut alarm = Alarm::raised(7, report(PerceivedSeverity::Major, "journal write failed"), 1_000);
        assert_eq!(
            alarm.report_again(report(PerceivedSeverity::Major, "journal write failed"), 2_000).expect("accepted"),
            Change::Repeated
        );
        assert_eq!((alarm.state, alarm.changed_at_ms, alarm.reports), (AlarmState::Raised, 1_000, 2));
        assert_eq!(
            alarm.report_again(report(PerceivedSeverity::Critical, "disk full"), 3_000).expect("accepted"),
            Change::Updated
        );
        assert_eq!(
            (alarm.state, alarm.severity(), alarm.changed_at_ms),
            (AlarmState::Updated, PerceivedSeverity::Critical, 3_000)
        );
        assert_eq!(alarm.clear(4_000), Change::Cleared);
        assert_eq!((alarm.severity(), alarm.cleared_at_ms), (PerceivedSeverity::Cleared, Some(4_000)));
        assert_eq!(alarm.clear(5_000), Change::Unchanged);
        assert_eq!(alarm.cleared_at_ms, Some(4_000));
        let refused = alarm.report_again(report(PerceivedSeverity::Minor, "again"), 6_000).expect_err("refused");
        assert_eq!(refused.to_string(), "alarm 7 is cleared: it cannot be reported again");
    }

    #[test]
    fn acknowledgement_is_apart_from_the_state_and_names_its_user() {
        let mut alarm = Alarm::raised(1, report(PerceivedSeverity::Warning, "slow fsync"), 10);
        assert_eq!(alarm.acknowledge(AckState::Acknowledged, "noc-1", 20).expect("accepted"), Change::Acknowledged);
        assert_eq!(alarm.acknowledge(AckState::Acknowledged, "noc-2", 30).expect("accepted"), Change::Unchanged);
        assert_eq!((alarm.ack_user_id.as_deref(), alarm.acknowledged_at_ms), (Some("noc-1"), Some(20)));
        alarm.clear(40);
        assert_eq!(alarm.acknowledge(AckState::Unacknowledged, "noc-2", 50).expect("accepted"), Change::Unacknowledged);
        assert_eq!(alarm.acknowledged_at_ms, None);
        assert!(alarm.acknowledge(AckState::Acknowledged, "", 60).is_err());
    }

    #[test]
    fn a_bad_report_names_its_field() {
        let cases = [
            (
                AlarmReport { alarmed_object: " ".to_owned(), ..report(PerceivedSeverity::Minor, "x") },
                "alarmedObject: is required",
            ),
            (
                AlarmReport { probable_cause: "a".repeat(MAX_NAME_BYTES + 1), ..report(PerceivedSeverity::Minor, "x") },
                "probableCause: is 257 bytes, more than 256",
            ),
            (report(PerceivedSeverity::Minor, "line\nbreak"), "specificProblem: has a control character at byte 4"),
            (
                report(PerceivedSeverity::Cleared, "x"),
                "perceivedSeverity: an alarm is raised with a severity other than cleared; clear it instead",
            ),
        ];
        for (report, message) in cases {
            assert_eq!(report.check().expect_err("refused").to_string(), message);
        }
        assert_eq!(
            PerceivedSeverity::parse("fatal", "perceivedSeverity").expect_err("refused").to_string(),
            "perceivedSeverity: \"fatal\" is not one of critical, major, minor, warning, indeterminate, cleared"
        );
    }
}

//! `Alarms`: raises, reports again, clears and acknowledges alarms in the store, one
//! transaction per change with its audit record (the alarm before and after, in TMF642's
//! shape) and its TMF642 event for the hub's listeners ([`EVENTS`]: webhooks, signed and
//! retried by the hub's worker). [`forward_traps`] sends each recorded change as an SNMP
//! trap, whichever process made it.
//!
//! A trap is sent once; SNMPv2c traps are not acknowledged, so one lost on the network is
//! not sent again (the store keeps the alarm; the API and `/metrics` show it). A failed
//! send is logged at WARN.

use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_store::{AlarmFilter, AlarmRow, AuditRecord, NewEvent, Store, StoreError};

use crate::alarm::{AckState, Alarm, AlarmReport, AlarmState, AlarmType, Change, PerceivedSeverity};
use crate::{AlarmError, TrapSender};

/// The audit trail's entity type of an alarm.
pub const ENTITY: &str = "alarm";
/// Where the alarm management API (TMF642) lives; its hub is `{BASE_PATH}/hub`.
pub const BASE_PATH: &str = "/tmf-api/alarmManagement/v4";
/// The events alarms publish: a raise, a change of severity, problem or acknowledgement,
/// a clear.
pub const EVENTS: [&str; 3] = ["AlarmCreateEvent", "AlarmAttributeValueChangeEvent", "AlarmStateChangeEvent"];

/// The event of a change, if it publishes one (a repeat does not).
fn event_type(change: Change) -> Option<&'static str> {
    match change {
        Change::Raised => Some(EVENTS[0]),
        Change::Updated | Change::Acknowledged | Change::Unacknowledged => Some(EVENTS[1]),
        Change::Cleared => Some(EVENTS[2]),
        Change::Repeated | Change::Unchanged => None,
    }
}

/// The alarms of one store.
#[derive(Debug, Clone)]
pub struct Alarms {
    store: Store,
}

impl Alarms {
    pub fn new(store: Store) -> Alarms {
        Alarms { store }
    }

    /// Raises an alarm, or, when one is open for the same alarmed object and probable
    /// cause, reports it again (updated when the severity or problem is new).
    pub async fn raise(&self, report: AlarmReport, actor: &str, now_ms: i64) -> Result<(Alarm, Change), AlarmError> {
        report.check()?;
        let mut tx = self.store.begin().await?;
        let (before, alarm, change) = match tx.open_alarm(&report.alarmed_object, &report.probable_cause).await? {
            Some(row) => {
                let mut alarm = from_row(&row)?;
                let before = alarm.clone();
                let change = alarm.report_again(report, now_ms)?;
                tx.update_alarm(&to_row(&alarm)).await?;
                (Some(before), alarm, change)
            }
            None => {
                let mut alarm = Alarm::raised(0, report, now_ms);
                alarm.id = tx.insert_alarm(&to_row(&alarm)).await?;
                (None, alarm, Change::Raised)
            }
        };
        audit(&mut tx, actor, change, before.as_ref(), &alarm, now_ms).await?;
        tx.commit().await?;
        Ok((alarm, change))
    }

    /// Clears alarm `id`; clearing a cleared alarm changes nothing.
    pub async fn clear(&self, id: i64, actor: &str, now_ms: i64) -> Result<(Alarm, Change), AlarmError> {
        self.change(id, actor, now_ms, |alarm| Ok(alarm.clear(now_ms))).await
    }

    /// Clears the open alarm of an alarmed object and probable cause, if there is one
    /// (what a source does when its fault is gone).
    pub async fn clear_open(
        &self,
        alarmed_object: &str,
        probable_cause: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<Option<Alarm>, AlarmError> {
        let mut tx = self.store.begin().await?;
        let Some(row) = tx.open_alarm(alarmed_object, probable_cause).await? else { return Ok(None) };
        let mut alarm = from_row(&row)?;
        let before = alarm.clone();
        let change = alarm.clear(now_ms);
        tx.update_alarm(&to_row(&alarm)).await?;
        audit(&mut tx, actor, change, Some(&before), &alarm, now_ms).await?;
        tx.commit().await?;
        Ok(Some(alarm))
    }

    /// Acknowledges alarm `id` as `user` (or takes the acknowledgement back).
    pub async fn acknowledge(
        &self,
        id: i64,
        ack: AckState,
        user: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<(Alarm, Change), AlarmError> {
        self.change(id, actor, now_ms, |alarm| alarm.acknowledge(ack, user, now_ms)).await
    }

    async fn change(
        &self,
        id: i64,
        actor: &str,
        now_ms: i64,
        apply: impl FnOnce(&mut Alarm) -> Result<Change, AlarmError>,
    ) -> Result<(Alarm, Change), AlarmError> {
        let mut tx = self.store.begin().await?;
        let row = tx.alarm(id).await?.ok_or(AlarmError::NotFound { id })?;
        let mut alarm = from_row(&row)?;
        let before = alarm.clone();
        let change = apply(&mut alarm)?;
        if change == Change::Unchanged {
            return Ok((alarm, change));
        }
        tx.update_alarm(&to_row(&alarm)).await?;
        audit(&mut tx, actor, change, Some(&before), &alarm, now_ms).await?;
        tx.commit().await?;
        Ok((alarm, change))
    }

    /// An alarm.
    pub async fn get(&self, id: i64) -> Result<Option<Alarm>, AlarmError> {
        self.store.alarm(id).await?.as_ref().map(from_row).transpose()
    }

    /// Alarms matching `filter`, newest first, and how many match in all.
    pub async fn list(&self, filter: &AlarmFilter, offset: u64, limit: u32) -> Result<(Vec<Alarm>, i64), AlarmError> {
        let page = self.store.alarm_list(filter, offset, limit).await?;
        let alarms = page.items.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok((alarms, page.total))
    }

    /// Open alarms by perceived severity.
    pub async fn open_counts(&self) -> Result<Vec<(String, i64)>, AlarmError> {
        Ok(self.store.open_alarm_counts().await?)
    }
}

async fn audit(
    tx: &mut tollgate_store::Tx,
    actor: &str,
    change: Change,
    before: Option<&Alarm>,
    after: &Alarm,
    now_ms: i64,
) -> Result<(), AlarmError> {
    let (before, after_json) = (before.map(|alarm| to_tmf(alarm, "")), to_tmf(after, ""));
    let id = after.id.to_string();
    let record = AuditRecord {
        actor,
        action: change.as_str(),
        entity_type: ENTITY,
        entity_id: &id,
        before: before.as_ref(),
        after: Some(&after_json),
    };
    let now = instant(now_ms)?;
    tx.audit(record, now).await?;
    if let Some(event_type) = event_type(change) {
        let entity = to_tmf(after, BASE_PATH);
        let event = NewEvent { api: BASE_PATH, event_type, entity_type: ENTITY, entity_id: &id, entity: &entity };
        tx.publish_event(event, now).await?;
    }
    Ok(())
}

fn instant(ms: i64) -> Result<Timestamp, AlarmError> {
    Timestamp::from_millisecond(ms)
        .map_err(|err| AlarmError::Invalid { field: "time", problem: format!("{ms} ms: {err}") })
}

fn rfc3339(ms: i64) -> Value {
    Timestamp::from_millisecond(ms).map_or(Value::Null, |at| Value::String(at.to_string()))
}

/// The alarm in TMF642 v4's shape (`href` under `api_root`, which may be empty).
pub fn to_tmf(alarm: &Alarm, api_root: &str) -> Value {
    let report = &alarm.report;
    let mut body = json!({
        "id": alarm.id.to_string(),
        "href": format!("{api_root}/alarm/{}", alarm.id),
        "alarmType": report.alarm_type.as_str(),
        "perceivedSeverity": alarm.severity().as_str(),
        "probableCause": report.probable_cause,
        "specificProblem": report.specific_problem,
        "alarmedObjectType": report.alarmed_object_type,
        "alarmedObject": {"id": report.alarmed_object, "@referredType": report.alarmed_object_type},
        "sourceSystemId": report.source_system_id,
        "state": alarm.state.as_str(),
        "ackState": alarm.ack_state.as_str(),
        "alarmRaisedTime": rfc3339(alarm.raised_at_ms),
        "alarmChangedTime": rfc3339(alarm.changed_at_ms),
        "alarmReportingTime": rfc3339(alarm.changed_at_ms),
        "@type": "Alarm",
    });
    let optional = [
        ("alarmClearedTime", alarm.cleared_at_ms.map(rfc3339)),
        ("ackUserId", alarm.ack_user_id.clone().map(Value::String)),
        ("ackTime", alarm.acknowledged_at_ms.map(rfc3339)),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            body[field] = value;
        }
    }
    body
}

/// The alarm a TMF642 document of [`to_tmf`] shows (an audit record's `after`): its
/// severity as reported (`cleared` for a cleared alarm) and times to the millisecond.
pub fn from_tmf(doc: &Value) -> Result<Alarm, AlarmError> {
    let text = |field: &'static str| -> Result<String, AlarmError> {
        doc.get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(AlarmError::Invalid { field, problem: "missing from the alarm document".into() })
    };
    let time = |field: &'static str| -> Result<Option<i64>, AlarmError> {
        match doc.get(field).and_then(Value::as_str) {
            None => Ok(None),
            Some(at) => at
                .parse::<Timestamp>()
                .map(|at| Some(at.as_millisecond()))
                .map_err(|err| AlarmError::Invalid { field, problem: format!("{at:?}: {err}") }),
        }
    };
    let id = text("id")?
        .parse::<i64>()
        .map_err(|err| AlarmError::Invalid { field: "id", problem: format!("not an alarm id: {err}") })?;
    let alarmed_object = doc
        .pointer("/alarmedObject/id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(AlarmError::Invalid { field: "alarmedObject", problem: "missing from the alarm document".into() })?;
    Ok(Alarm {
        id,
        report: AlarmReport {
            alarmed_object,
            alarmed_object_type: text("alarmedObjectType")?,
            alarm_type: AlarmType::parse(&text("alarmType")?, "alarmType")?,
            probable_cause: text("probableCause")?,
            specific_problem: text("specificProblem")?,
            perceived_severity: PerceivedSeverity::parse(&text("perceivedSeverity")?, "perceivedSeverity")?,
            source_system_id: text("sourceSystemId")?,
        },
        state: AlarmState::parse(&text("state")?, "state")?,
        ack_state: AckState::parse(&text("ackState")?, "ackState")?,
        ack_user_id: doc.get("ackUserId").and_then(Value::as_str).map(str::to_owned),
        raised_at_ms: time("alarmRaisedTime")?.unwrap_or(0),
        changed_at_ms: time("alarmChangedTime")?.unwrap_or(0),
        cleared_at_ms: time("alarmClearedTime")?,
        acknowledged_at_ms: time("ackTime")?,
        reports: 0,
    })
}

/// Sends an SNMP trap for each alarm change recorded in `store` after audit record
/// `after_seq` (the head when the server started: [`Store::audit_head`], read before
/// anything of the server can change an alarm), whichever process made it (this server,
/// `tollgate alarm`, `tollgate bill-run`, `tollgate mediate`): the audit trail is the
/// change log (each change is recorded there in the transaction that makes it, with the
/// alarm after it), read every `every` from where the forwarder left off, until `stop`
/// resolves. A change made while no forwarder runs sends no trap (SNMPv2c traps are
/// unacknowledged: a manager resynchronises through the API); an entry that cannot be
/// read as an alarm is logged and skipped.
pub async fn forward_traps(
    store: Store,
    sender: std::sync::Arc<TrapSender>,
    after_seq: i64,
    every: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), AlarmError> {
    const PAGE: u32 = 500;
    let mut cursor = after_seq;
    tokio::pin!(stop);
    loop {
        let entries = match store.audit_entries_of_type(ENTITY, cursor, PAGE).await {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(error = %err, "alarm traps: the audit trail could not be read; trying again");
                Vec::new()
            }
        };
        let full = entries.len() == PAGE as usize;
        for entry in entries {
            cursor = entry.seq;
            let Some(change) = Change::parse(&entry.action) else { continue };
            match entry.after.as_ref().map(from_tmf) {
                Some(Ok(alarm)) => {
                    if let Err(err) = sender.send(&alarm, change) {
                        tracing::warn!(alarm = alarm.id, error = %err, "alarm trap not sent");
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(seq = entry.seq, error = %err, "alarm trap: an audited alarm unreadable")
                }
                None => {}
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
    }
}

fn to_row(alarm: &Alarm) -> AlarmRow {
    let report = &alarm.report;
    AlarmRow {
        id: alarm.id,
        alarmed_object: report.alarmed_object.clone(),
        alarmed_object_type: report.alarmed_object_type.clone(),
        alarm_type: report.alarm_type.as_str().to_owned(),
        probable_cause: report.probable_cause.clone(),
        specific_problem: report.specific_problem.clone(),
        perceived_severity: report.perceived_severity.as_str().to_owned(),
        source_system_id: report.source_system_id.clone(),
        state: alarm.state.as_str().to_owned(),
        ack_state: alarm.ack_state.as_str().to_owned(),
        ack_user_id: alarm.ack_user_id.clone(),
        reports: alarm.reports,
        raised_at_ms: alarm.raised_at_ms,
        changed_at_ms: alarm.changed_at_ms,
        cleared_at_ms: alarm.cleared_at_ms,
        acknowledged_at_ms: alarm.acknowledged_at_ms,
    }
}

/// A stored alarm; a value the lifecycle does not know is a corrupt row.
fn from_row(row: &AlarmRow) -> Result<Alarm, AlarmError> {
    let state = AlarmState::parse(&row.state, "state")?;
    let perceived_severity = PerceivedSeverity::parse(&row.perceived_severity, "perceivedSeverity")?;
    Ok(Alarm {
        id: row.id,
        report: AlarmReport {
            alarmed_object: row.alarmed_object.clone(),
            alarmed_object_type: row.alarmed_object_type.clone(),
            alarm_type: AlarmType::parse(&row.alarm_type, "alarmType")?,
            probable_cause: row.probable_cause.clone(),
            specific_problem: row.specific_problem.clone(),
            perceived_severity,
            source_system_id: row.source_system_id.clone(),
        },
        state,
        ack_state: AckState::parse(&row.ack_state, "ackState")?,
        ack_user_id: row.ack_user_id.clone(),
        raised_at_ms: row.raised_at_ms,
        changed_at_ms: row.changed_at_ms,
        cleared_at_ms: row.cleared_at_ms,
        acknowledged_at_ms: row.acknowledged_at_ms,
        reports: row.reports,
    })
}

impl From<StoreError> for AlarmError {
    fn from(err: StoreError) -> AlarmError {
        AlarmError::Store(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_store::store_test;

    fn report(object: &str, severity: PerceivedSeverity, problem: &str) -> AlarmReport {
        AlarmReport { alarmed_object: object.to_owned(), ..crate::alarm::tests::report(severity, problem) }
    }

    store_test! {
        async fn the_same_fault_updates_its_open_alarm_and_every_change_is_audited(store) {
            let alarms = Alarms::new((*store).clone());
            let (first, change) =
                alarms.raise(report("shard/0", PerceivedSeverity::Major, "write failed"), "system:engine", 1_000).await.expect("accepted");
            assert_eq!(change, Change::Raised);
            let (again, change) =
                alarms.raise(report("shard/0", PerceivedSeverity::Major, "write failed"), "system:engine", 2_000).await.expect("accepted");
            assert_eq!((again.id, change, again.reports), (first.id, Change::Repeated, 2));
            let (worse, change) =
                alarms.raise(report("shard/0", PerceivedSeverity::Critical, "disk full"), "system:engine", 3_000).await.expect("accepted");
            assert_eq!((worse.id, change, worse.state), (first.id, Change::Updated, AlarmState::Updated));
            let (acked, change) =
                alarms.acknowledge(first.id, AckState::Acknowledged, "noc-7", "token:noc", 4_000).await.expect("accepted");
            assert_eq!((change, acked.ack_user_id.as_deref()), (Change::Acknowledged, Some("noc-7")));
            let cleared = alarms.clear_open("shard/0", "storageCapacityProblem", "system:engine", 5_000).await.expect("accepted");
            assert_eq!(cleared.map(|a| (a.state, a.severity())), Some((AlarmState::Cleared, PerceivedSeverity::Cleared)));
            assert_eq!(alarms.clear(first.id, "token:noc", 6_000).await.expect("accepted").1, Change::Unchanged);
            // The next fault of the same object and cause is a new alarm.
            let (next, _) =
                alarms.raise(report("shard/0", PerceivedSeverity::Minor, "slow"), "system:engine", 7_000).await.expect("accepted");
            assert_ne!(next.id, first.id);
            let stored = alarms.get(first.id).await.expect("accepted").expect("kept");
            assert_eq!((stored.cleared_at_ms, stored.ack_state, stored.reports), (Some(5_000), AckState::Acknowledged, 3));
            // Cleared, it shows `cleared` and keeps the severity it had.
            assert_eq!((stored.severity(), stored.report.perceived_severity), (PerceivedSeverity::Cleared, PerceivedSeverity::Critical));

            let trail = store.audit_entries(Some((ENTITY, &first.id.to_string())), 0, 100).await.expect("accepted");
            let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
            assert_eq!(actions, ["raised", "repeated", "updated", "acknowledged", "cleared"]);
            assert!(alarms.clear(999_999, "token:noc", 8_000).await.is_err());
            // The trap forwarder reads each change back from its record: the alarm as it
            // was after that change (the count of reports is not in the document).
            let changes: Vec<(Change, Alarm)> = trail
                .iter()
                .map(|entry| {
                    let alarm = from_tmf(entry.after.as_ref().expect("after")).expect("an alarm");
                    (Change::parse(&entry.action).expect("a change"), alarm)
                })
                .collect();
            assert_eq!(changes[2].1.report.perceived_severity, PerceivedSeverity::Critical);
            assert_eq!(changes[3].1.ack_user_id.as_deref(), Some("noc-7"));
            assert_eq!((changes[4].0, changes[4].1.state, changes[4].1.cleared_at_ms), (Change::Cleared, AlarmState::Cleared, Some(5_000)));
            assert_eq!(Alarm { reports: stored.reports, ..changes[4].1.clone() }.severity(), stored.severity());
            assert_eq!(changes[4].1.raised_at_ms, stored.raised_at_ms);
        }
    }
}

//! Alarms as rows (`alarms`, migration 0010): the X.733 / TMF642 fields as text, the
//! state and acknowledgement, how often the fault was reported, and the instants in Unix
//! milliseconds. While an alarm is open it is the only open one for its alarmed object and
//! probable cause (a partial unique index), so a source reporting the same fault again
//! finds it with [`Tx::open_alarm`] and updates it.
//!
//! The lifecycle (what a report, a clear or an acknowledgement changes) lives in
//! `tollgate-alarms`; this module stores and reads what it decided.

use crate::error::{Result, StoreError};
use crate::sql::{args, Arg, Row};
use crate::{Store, Tx};

/// Rows a list of alarms returns at most.
pub const ALARM_PAGE_MAX: u32 = 1000;

/// An alarm as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRow {
    /// Given by the store on insert; ignored by [`Tx::insert_alarm`].
    pub id: i64,
    pub alarmed_object: String,
    pub alarmed_object_type: String,
    pub alarm_type: String,
    pub probable_cause: String,
    pub specific_problem: String,
    /// The severity last reported, kept when the alarm is cleared.
    pub perceived_severity: String,
    pub source_system_id: String,
    pub state: String,
    pub ack_state: String,
    pub ack_user_id: Option<String>,
    pub reports: i64,
    pub raised_at_ms: i64,
    pub changed_at_ms: i64,
    pub cleared_at_ms: Option<i64>,
    pub acknowledged_at_ms: Option<i64>,
}

/// What a list of alarms may be narrowed by (each an exact match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmFilter {
    pub state: Option<String>,
    pub ack_state: Option<String>,
    /// The severity last reported (a cleared alarm keeps its own: add `open_only` for the
    /// alarms that have it now).
    pub perceived_severity: Option<String>,
    pub alarmed_object: Option<String>,
    pub probable_cause: Option<String>,
    /// Only alarms not cleared.
    pub open_only: bool,
}

/// One page of alarms and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmPage {
    pub items: Vec<AlarmRow>,
    pub total: i64,
}

const COLUMNS: &str = "id, alarmed_object, alarmed_object_type, alarm_type, probable_cause, specific_problem,
     perceived_severity, source_system_id, state, ack_state, ack_user_id, reports, raised_at_ms, changed_at_ms,
     cleared_at_ms, acknowledged_at_ms";

fn alarm(row: &Row) -> Result<AlarmRow> {
    Ok(AlarmRow {
        id: row.int("id")?,
        alarmed_object: row.text("alarmed_object")?,
        alarmed_object_type: row.text("alarmed_object_type")?,
        alarm_type: row.text("alarm_type")?,
        probable_cause: row.text("probable_cause")?,
        specific_problem: row.text("specific_problem")?,
        perceived_severity: row.text("perceived_severity")?,
        source_system_id: row.text("source_system_id")?,
        state: row.text("state")?,
        ack_state: row.text("ack_state")?,
        ack_user_id: row.opt_text("ack_user_id")?,
        reports: row.int("reports")?,
        raised_at_ms: row.int("raised_at_ms")?,
        changed_at_ms: row.int("changed_at_ms")?,
        cleared_at_ms: row.opt_int("cleared_at_ms")?,
        acknowledged_at_ms: row.opt_int("acknowledged_at_ms")?,
    })
}

impl Tx {
    /// Records a new alarm; returns its id. `Conflict` if an open alarm of the same
    /// alarmed object and probable cause exists (read it with [`Tx::open_alarm`] first).
    pub async fn insert_alarm(&mut self, new: &AlarmRow) -> Result<i64> {
        let row = self
            .fetch_optional(
                "alarms.insert",
                "INSERT INTO alarms (alarmed_object, alarmed_object_type, alarm_type, probable_cause,
                     specific_problem, perceived_severity, source_system_id, state, ack_state, ack_user_id, reports,
                     raised_at_ms, changed_at_ms, cleared_at_ms, acknowledged_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT DO NOTHING
                 RETURNING id",
                args![
                    new.alarmed_object.as_str(),
                    new.alarmed_object_type.as_str(),
                    new.alarm_type.as_str(),
                    new.probable_cause.as_str(),
                    new.specific_problem.as_str(),
                    new.perceived_severity.as_str(),
                    new.source_system_id.as_str(),
                    new.state.as_str(),
                    new.ack_state.as_str(),
                    new.ack_user_id.clone(),
                    new.reports,
                    new.raised_at_ms,
                    new.changed_at_ms,
                    new.cleared_at_ms,
                    new.acknowledged_at_ms
                ],
            )
            .await?;
        match row {
            Some(row) => row.int("id"),
            None => Err(StoreError::Conflict {
                what: "open alarm",
                key: format!("{} {}", new.alarmed_object, new.probable_cause),
            }),
        }
    }

    /// The open alarm of an alarmed object and probable cause (locked until the
    /// transaction ends on PostgreSQL).
    pub async fn open_alarm(&mut self, alarmed_object: &str, probable_cause: &str) -> Result<Option<AlarmRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM alarms WHERE alarmed_object = $1 AND probable_cause = $2 AND state <> 'cleared'{}",
            self.dialect().lock_rows()
        );
        self.fetch_optional("alarms.open", &sql, args![alarmed_object, probable_cause])
            .await?
            .as_ref()
            .map(alarm)
            .transpose()
    }

    /// An alarm read in this transaction (locked until it ends on PostgreSQL).
    pub async fn alarm(&mut self, id: i64) -> Result<Option<AlarmRow>> {
        let sql = format!("SELECT {COLUMNS} FROM alarms WHERE id = $1{}", self.dialect().lock_rows());
        self.fetch_optional("alarms.get", &sql, args![id]).await?.as_ref().map(alarm).transpose()
    }

    /// Writes what changed of an alarm (everything but its id, object, cause and raise).
    pub async fn update_alarm(&mut self, changed: &AlarmRow) -> Result<()> {
        let updated = self
            .execute(
                "alarms.update",
                "UPDATE alarms SET alarmed_object_type = $2, alarm_type = $3, specific_problem = $4,
                     perceived_severity = $5, source_system_id = $6, state = $7, ack_state = $8, ack_user_id = $9,
                     reports = $10, changed_at_ms = $11, cleared_at_ms = $12, acknowledged_at_ms = $13
                 WHERE id = $1",
                args![
                    changed.id,
                    changed.alarmed_object_type.as_str(),
                    changed.alarm_type.as_str(),
                    changed.specific_problem.as_str(),
                    changed.perceived_severity.as_str(),
                    changed.source_system_id.as_str(),
                    changed.state.as_str(),
                    changed.ack_state.as_str(),
                    changed.ack_user_id.clone(),
                    changed.reports,
                    changed.changed_at_ms,
                    changed.cleared_at_ms,
                    changed.acknowledged_at_ms
                ],
            )
            .await?;
        if updated == 0 {
            return Err(StoreError::NotFound { entity: "alarm", id: changed.id.to_string() });
        }
        Ok(())
    }
}

impl Store {
    /// An alarm.
    pub async fn alarm(&self, id: i64) -> Result<Option<AlarmRow>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {COLUMNS} FROM alarms WHERE id = $1");
        tx.fetch_optional("alarms.get", &sql, args![id]).await?.as_ref().map(alarm).transpose()
    }

    /// Alarms matching `filter`, newest raised first: `limit` (at most
    /// [`ALARM_PAGE_MAX`]) from `offset`, and the number matching in all.
    pub async fn alarm_list(&self, filter: &AlarmFilter, offset: u64, limit: u32) -> Result<AlarmPage> {
        let offset = i64::try_from(offset)
            .map_err(|_| StoreError::Invalid { field: "offset", reason: format!("{offset} is too large") })?;
        let mut values: Vec<Arg> = Vec::new();
        let mut conditions = vec!["1 = 1".to_owned()];
        for (column, value) in [
            ("state", &filter.state),
            ("ack_state", &filter.ack_state),
            ("perceived_severity", &filter.perceived_severity),
            ("alarmed_object", &filter.alarmed_object),
            ("probable_cause", &filter.probable_cause),
        ] {
            if let Some(value) = value {
                values.push(Arg::from(value.as_str()));
                conditions.push(format!("{column} = ${}", values.len()));
            }
        }
        if filter.open_only {
            conditions.push("state <> 'cleared'".to_owned());
        }
        let from_where = format!("alarms WHERE {}", conditions.join(" AND "));
        let mut tx = self.read().await?;
        let total = tx
            .fetch_one("alarms.list", &format!("SELECT COUNT(*) AS n FROM {from_where}"), values.clone())
            .await?
            .int("n")?;
        values.push(Arg::from(i64::from(limit.min(ALARM_PAGE_MAX))));
        values.push(Arg::from(offset));
        let count = values.len();
        let sql = format!(
            "SELECT {COLUMNS} FROM {from_where} ORDER BY raised_at_ms DESC, id DESC LIMIT ${} OFFSET ${count}",
            count - 1
        );
        let rows = tx.fetch_all("alarms.list", &sql, values).await?;
        let items = rows.iter().map(alarm).collect::<Result<Vec<_>>>()?;
        Ok(AlarmPage { items, total })
    }

    /// Open alarms by perceived severity (severities without one left out), for
    /// `/metrics`.
    pub async fn open_alarm_counts(&self) -> Result<Vec<(String, i64)>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "alarms.counts",
                "SELECT perceived_severity, COUNT(*) AS n FROM alarms WHERE state <> 'cleared'
                 GROUP BY perceived_severity ORDER BY perceived_severity",
                vec![],
            )
            .await?;
        rows.iter().map(|row| Ok((row.text("perceived_severity")?, row.int("n")?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store_test;

    fn raised(object: &str, cause: &str, at_ms: i64) -> AlarmRow {
        AlarmRow {
            id: 0,
            alarmed_object: object.to_owned(),
            alarmed_object_type: "shard".to_owned(),
            alarm_type: "processingErrorAlarm".to_owned(),
            probable_cause: cause.to_owned(),
            specific_problem: "journal write failed".to_owned(),
            perceived_severity: "critical".to_owned(),
            source_system_id: "tollgate".to_owned(),
            state: "raised".to_owned(),
            ack_state: "unacknowledged".to_owned(),
            ack_user_id: None,
            reports: 1,
            raised_at_ms: at_ms,
            changed_at_ms: at_ms,
            cleared_at_ms: None,
            acknowledged_at_ms: None,
        }
    }

    store_test! {
        async fn one_open_alarm_per_object_and_cause_until_it_is_cleared(store) {
            let mut tx = store.begin().await.expect("accepted");
            let first = tx.insert_alarm(&raised("shard/0", "storageCapacityProblem", 1_000)).await.expect("accepted");
            let other_cause = tx.insert_alarm(&raised("shard/0", "softwareError", 1_500)).await.expect("accepted");
            let twice = tx.insert_alarm(&raised("shard/0", "storageCapacityProblem", 2_000)).await.expect_err("refused");
            assert!(matches!(twice, StoreError::Conflict { what: "open alarm", .. }), "{twice}");
            let mut open = tx.open_alarm("shard/0", "storageCapacityProblem").await.expect("accepted").expect("open");
            assert_eq!(open.id, first);
            open.state = "cleared".to_owned();
            open.cleared_at_ms = Some(3_000);
            open.changed_at_ms = 3_000;
            tx.update_alarm(&open).await.expect("accepted");
            assert_eq!(tx.open_alarm("shard/0", "storageCapacityProblem").await.expect("accepted"), None);
            let again = tx.insert_alarm(&raised("shard/0", "storageCapacityProblem", 4_000)).await.expect("accepted");
            assert!(again != first && again != other_cause);
            tx.commit().await.expect("accepted");

            assert_eq!(store.alarm(first).await.expect("accepted"), Some(AlarmRow { id: first, ..open }));
            let all = store.alarm_list(&AlarmFilter::default(), 0, 10).await.expect("accepted");
            assert_eq!(all.total, 3);
            assert_eq!(all.items.iter().map(|a| a.id).collect::<Vec<_>>(), vec![again, other_cause, first]);
            let open_only = AlarmFilter { open_only: true, ..AlarmFilter::default() };
            assert_eq!(store.alarm_list(&open_only, 0, 10).await.expect("accepted").total, 2);
            let cleared = AlarmFilter { state: Some("cleared".to_owned()), ..AlarmFilter::default() };
            assert_eq!(store.alarm_list(&cleared, 0, 10).await.expect("accepted").items[0].id, first);
            let page = store.alarm_list(&AlarmFilter::default(), 1, 1).await.expect("accepted");
            assert_eq!((page.total, page.items[0].id), (3, other_cause));
            assert_eq!(store.open_alarm_counts().await.expect("accepted"), vec![("critical".to_owned(), 2)]);
        }
    }

    store_test! {
        async fn a_cleared_alarm_needs_its_clear_time(store) {
            let mut tx = store.begin().await.expect("accepted");
            let id = tx.insert_alarm(&raised("disk/data", "storageCapacityProblem", 1_000)).await.expect("accepted");
            let half = AlarmRow { id, state: "cleared".to_owned(), ..raised("disk/data", "storageCapacityProblem", 1_000) };
            assert!(tx.update_alarm(&half).await.is_err(), "the CHECK refuses a clear without its time");
        }
    }
}

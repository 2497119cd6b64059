//! Alarms (TMF642 Alarm Management v4, a subset: README.md) under
//! `/tmf-api/alarmManagement/v4/alarm`: list (filters `state`, `ackState`,
//! `perceivedSeverity`, `alarmedObject.id`, `probableCause`; `offset`/`limit`), get by id,
//! POST to raise (or report again: 201 when new, 200 when an open alarm of the same
//! alarmed object and probable cause took it), PATCH (`application/merge-patch+json`) to
//! acknowledge (`ackState` with `ackUserId`) or clear (`state: "cleared"`). Thin handlers:
//! parse, call `tollgate_alarms::Alarms`, map the answer; every change is audited there.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Map, Value};
use tollgate_alarms::{AckState, AlarmError, AlarmReport, AlarmState, AlarmType, Alarms, Change, PerceivedSeverity};
use tollgate_store::AlarmFilter;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{item_fields, json_body, page_headers, select, BodyType, ListQuery};
use crate::AppState;

pub use tollgate_alarms::service::BASE_PATH;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

fn alarms(state: &AppState) -> Alarms {
    Alarms::new(state.store.clone())
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn id_of(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", format!("no alarm {text:?}")))
}

fn tmf(alarm: &tollgate_alarms::Alarm) -> Value {
    tollgate_alarms::service::to_tmf(alarm, BASE_PATH)
}

pub(crate) async fn list(State(state): State<Arc<AppState>>, query: Params) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let mut filter = AlarmFilter::default();
    for (name, value) in &query.filters {
        let (slot, checked) = match name.as_str() {
            "state" => (&mut filter.state, AlarmState::parse(value, "state").map(|_| ())),
            "ackState" => (&mut filter.ack_state, AckState::parse(value, "ackState").map(|_| ())),
            // A cleared alarm's perceivedSeverity is `cleared`; any other is an open one's.
            "perceivedSeverity" => match PerceivedSeverity::parse(value, "perceivedSeverity")? {
                PerceivedSeverity::Cleared => (&mut filter.state, Ok(())),
                _ => {
                    filter.open_only = true;
                    (&mut filter.perceived_severity, Ok(()))
                }
            },
            "alarmedObject.id" => (&mut filter.alarmed_object, Ok(())),
            "probableCause" => (&mut filter.probable_cause, Ok(())),
            other => {
                return Err(ApiError::bad_request(
                    other,
                    format!(
                    "cannot filter on {other:?} (state, ackState, perceivedSeverity, alarmedObject.id, probableCause)"
                ),
                ))
            }
        };
        checked?;
        if slot.replace(value.clone()).is_some() {
            return Err(ApiError::bad_request(name.clone(), "given twice"));
        }
    }
    let (items, total) = alarms(&state).list(&filter, query.offset, query.limit).await?;
    let count = items.len();
    let items: Vec<Value> = items.iter().map(|alarm| select(tmf(alarm), query.fields.as_deref())).collect();
    Ok((page_headers(total, count), Json(Value::Array(items))).into_response())
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let id = id_of(&id)?;
    let alarm = alarms(&state).get(id).await?.ok_or(AlarmError::NotFound { id })?;
    Ok(Json(select(tmf(&alarm), fields.as_deref())).into_response())
}

fn text<'a>(body: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(ApiError::bad_request(field, "must be a string")),
        None => Err(ApiError::bad_request(field, "is required")),
    }
}

fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request("body", "must be a JSON object")),
    }
}

/// Raises an alarm from a TMF642 body: `alarmedObject.id`, `alarmType`,
/// `perceivedSeverity`, `probableCause` required; `specificProblem`, `alarmedObjectType`
/// (else `alarmedObject.@referredType`) and `sourceSystemId` (else the caller's name).
/// The fields of TMF642's `Alarm_Create`: those in [`TAKEN`] make the alarm, the others
/// are the fault manager's own bookkeeping, accepted and not kept (the store sets the
/// times, acknowledgement and clearing through PATCH).
const ALARM_CREATE_FIELDS: [&str; 33] = [
    "ackState",
    "ackSystemId",
    "ackUserId",
    "affectedService",
    "alarmChangedTime",
    "alarmClearedTime",
    "alarmDetails",
    "alarmEscalation",
    "alarmRaisedTime",
    "alarmReportingTime",
    "alarmType",
    "alarmedObject",
    "alarmedObjectType",
    "clearSystemId",
    "clearUserId",
    "comment",
    "correlatedAlarm",
    "crossedThresholdInformation",
    "externalAlarmId",
    "isRootCause",
    "parentAlarm",
    "perceivedSeverity",
    "plannedOutageIndicator",
    "probableCause",
    "proposedRepairedActions",
    "reportingSystemId",
    "serviceAffecting",
    "sourceSystemId",
    "specificProblem",
    "state",
    "@baseType",
    "@schemaLocation",
    "@type",
];

/// The `Alarm_Create` fields an alarm is made of.
const TAKEN: [&str; 7] = [
    "alarmedObject",
    "alarmedObjectType",
    "alarmType",
    "perceivedSeverity",
    "probableCause",
    "specificProblem",
    "sourceSystemId",
];

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = object(json_body(&headers, body, BodyType::Json)?)?;
    if let Some(name) = body.keys().find(|name| !ALARM_CREATE_FIELDS.contains(&name.as_str())) {
        let reason = match name.as_str() {
            "id" | "href" => "is assigned by the server".to_owned(),
            _ => format!("is not a field of TMF642's Alarm_Create (the fields taken: {})", TAKEN.join(", ")),
        };
        return Err(ApiError::bad_request(name.clone(), reason));
    }
    if body.get("state").is_some_and(|state| state != "raised") {
        return Err(ApiError::bad_request("state", "a new alarm is raised; clear it with a PATCH"));
    }
    let alarmed = match body.get("alarmedObject") {
        Some(Value::Object(alarmed)) => alarmed,
        Some(_) => return Err(ApiError::bad_request("alarmedObject", "must be an object")),
        None => return Err(ApiError::bad_request("alarmedObject", "is required")),
    };
    let alarmed_object = text(alarmed, "id").map_err(|_| ApiError::bad_request("alarmedObject.id", "is required"))?;
    let object_type = match (body.get("alarmedObjectType"), alarmed.get("@referredType")) {
        (Some(Value::String(kind)), _) | (None, Some(Value::String(kind))) => kind.clone(),
        (None, None) => "unknown".to_owned(),
        _ => return Err(ApiError::bad_request("alarmedObjectType", "must be a string")),
    };
    let actor = caller.actor();
    let source = match body.get("sourceSystemId") {
        None => actor.clone(),
        Some(_) => text(&body, "sourceSystemId")?.to_owned(),
    };
    let problem = match body.get("specificProblem") {
        None => "-".to_owned(),
        Some(_) => text(&body, "specificProblem")?.to_owned(),
    };
    let report = AlarmReport {
        alarmed_object: alarmed_object.to_owned(),
        alarmed_object_type: object_type,
        alarm_type: AlarmType::parse(text(&body, "alarmType")?, "alarmType")?,
        probable_cause: text(&body, "probableCause")?.to_owned(),
        specific_problem: problem,
        perceived_severity: PerceivedSeverity::parse(text(&body, "perceivedSeverity")?, "perceivedSeverity")?,
        source_system_id: source,
    };
    let (alarm, change) = alarms(&state).raise(report, &actor, now_ms()).await?;
    let status = if change == Change::Raised { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(tmf(&alarm))).into_response())
}

/// Acknowledges (`ackState`, with `ackUserId` or the caller's name) or clears
/// (`state: "cleared"`) an alarm; other fields cannot be changed.
pub(crate) async fn patch(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = object(json_body(&headers, body, BodyType::MergePatch)?)?;
    let id = id_of(&id)?;
    if let Some(field) = body.keys().find(|field| !matches!(field.as_str(), "ackState" | "ackUserId" | "state")) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "notPatchable",
            field.clone(),
            format!("{field} cannot be changed (ackState, ackUserId and state can)"),
        ));
    }
    let actor = caller.actor();
    let alarms = alarms(&state);
    let mut alarm = alarms.get(id).await?.ok_or(AlarmError::NotFound { id })?;
    if body.contains_key("ackState") {
        let ack = AckState::parse(text(&body, "ackState")?, "ackState")?;
        let user = match body.get("ackUserId") {
            None => actor.clone(),
            Some(_) => text(&body, "ackUserId")?.to_owned(),
        };
        alarm = alarms.acknowledge(id, ack, &user, &actor, now_ms()).await?.0;
    } else if body.contains_key("ackUserId") {
        return Err(ApiError::bad_request("ackUserId", "is given with ackState"));
    }
    if body.contains_key("state") {
        match AlarmState::parse(text(&body, "state")?, "state")? {
            AlarmState::Cleared => alarm = alarms.clear(id, &actor, now_ms()).await?.0,
            other => {
                return Err(ApiError::bad_request(
                    "state",
                    format!("an alarm is set to cleared only, not {other} (a source raises and updates it)"),
                ))
            }
        }
    }
    Ok(Json(tmf(&alarm)).into_response())
}

impl From<AlarmError> for ApiError {
    fn from(error: AlarmError) -> Self {
        let message = error.to_string();
        match error {
            AlarmError::Invalid { field, .. } => ApiError::bad_request(field, message),
            AlarmError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", message),
            AlarmError::Transition { .. } => ApiError::new(StatusCode::CONFLICT, "invalidTransition", "state", message),
            AlarmError::Store(error) => ApiError::from(error),
            other => {
                tracing::error!(error = %other, "api: alarm");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "alarm",
                    "the request could not be completed",
                )
            }
        }
    }
}

//! Bill runs (Tollgate's own resource: TMF678 serves the bills a run wrote, but has no
//! run) under `/tmf-api/billing/v1/billRun`, what `tollgate bill-run` does from a shell:
//!
//! - `POST` with `cycle` (`YYYY-MM`, the month the billed cycles close in) and optionally
//!   `accounts` (hierarchy roots; every hierarchy without it) starts the run in the server
//!   and answers 202 with it; the run of the same cycle and accounts under way already
//!   answers 202 too and is not started twice; a run that is done answers 200 and changes
//!   nothing; a run that failed, or was under way when the server stopped, starts again
//!   and resumes (the invoices and numbers of an uninterrupted run). With `dryRun: true`
//!   (and 1 to [`MAX_DRY_RUN_ACCOUNTS`] `accounts`) it answers 200 with the documents the
//!   run would write, writing nothing.
//! - `GET` lists the runs (latest first; `offset`/`limit`) and reads one by id (the cycle,
//!   then `:` and the accounts, comma-separated, when not all): its state (`drafting`,
//!   `finalising` or `done`, as stored; `failed` with the `error` and `failedAt` when its
//!   last attempt failed, here, on another server or from the CLI, until an attempt gets
//!   further), and for a run
//!   this server started, `running` and the `progress` (documents drafted, statements
//!   among them, hierarchies billed before, documents made final).
//!
//! Thin handlers: parse, call the server's [`BillRuns`], shape the JSON.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use tollgate_store::BillRunRow;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{body_object, item_fields, page_headers, select, BodyType, ListQuery};
use crate::{AppState, BillRunProgress, BillRunRefusal, BillRunRequest, BillRunStart, BillRuns};

/// The API's root.
pub const BASE_PATH: &str = "/tmf-api/billing/v1";

/// The most accounts a dry run composes (its documents are the answer).
pub const MAX_DRY_RUN_ACCOUNTS: usize = 100;

/// The most accounts one run names (a run of more bills every hierarchy).
pub const MAX_RUN_ACCOUNTS: usize = 10_000;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

fn runner(state: &AppState) -> Result<&Arc<dyn BillRuns>, ApiError> {
    state.bill_runs.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "billRun", "this server does not run bill runs")
    })
}

fn refused(refusal: BillRunRefusal) -> ApiError {
    match refusal {
        BillRunRefusal::Invalid { field, reason } => ApiError::bad_request(field, reason),
        BillRunRefusal::Store(error) => ApiError::from(error),
        BillRunRefusal::Failed(message) => {
            tracing::error!(%message, "bill run not started");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "billRun", "the bill run could not start")
        }
    }
}

/// A run as the API shows it: the store's row (none yet: only the server knows it) and
/// this server's progress of it.
fn doc(id: &str, row: Option<&BillRunRow>, progress: Option<&BillRunProgress>) -> Value {
    let mut doc = Map::new();
    doc.insert("id".into(), json!(id));
    doc.insert("href".into(), json!(format!("{BASE_PATH}/billRun/{id}")));
    let cycle = id.split_once(':').map_or(id, |(cycle, _)| cycle);
    doc.insert("cycle".into(), json!(row.map_or(cycle, |row| row.cycle.as_str())));
    if let Some(row) = row.filter(|row| row.scope != "all") {
        doc.insert("accounts".into(), json!(row.scope.split(',').collect::<Vec<_>>()));
    }
    // The last attempt's failure as stored (this server's, another's or the CLI's, kept
    // across restarts; cleared once an attempt gets further); else this server's own when
    // the row has not moved since (the store could not record it: it failed too, or the
    // attempt panicked), or the run has no row (it failed before opening it). None while
    // this server runs it, or once the run is done.
    let running = progress.is_some_and(|p| p.running);
    let here = progress.and_then(|p| p.failure.clone());
    let failure = match row {
        _ if running => None,
        Some(row) if row.state == tollgate_store::BillRunState::Done => None,
        Some(row) => row.failure.clone().or(here.filter(|(_, at)| row.updated_at <= *at)),
        None => here,
    };
    let state = match (row, &failure) {
        (_, Some(_)) => "failed",
        (Some(row), None) => row.state.as_str(),
        (None, None) => "drafting",
    };
    doc.insert("state".into(), json!(state));
    if let Some((error, at)) = failure {
        doc.insert("error".into(), json!(error));
        doc.insert("failedAt".into(), json!(at.to_string()));
    }
    if let Some(row) = row {
        doc.insert("startedAt".into(), json!(row.started_at.to_string()));
        doc.insert("updatedAt".into(), json!(row.updated_at.to_string()));
        if let Some(finished) = row.finished_at {
            doc.insert("finishedAt".into(), json!(finished.to_string()));
        }
    }
    if let Some(progress) = progress {
        doc.insert("running".into(), json!(progress.running));
        doc.insert(
            "progress".into(),
            json!({
                "drafted": progress.drafted,
                "statements": progress.statements,
                "billedBefore": progress.billed_before,
                "finalised": progress.finalised,
            }),
        );
    }
    doc.insert("@type".into(), json!("BillRun"));
    Value::Object(doc)
}

pub(crate) async fn list(State(state): State<Arc<AppState>>, query: Params) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    if let Some((name, _)) = query.filters.first() {
        return Err(ApiError::bad_request(name.clone(), format!("cannot filter bill runs on {name:?}")));
    }
    let (rows, total) = state.store.bill_runs(query.offset, query.limit).await?;
    let runner = state.bill_runs.as_ref();
    let items: Vec<Value> = rows
        .iter()
        .map(|row| {
            let progress = runner.and_then(|runner| runner.progress(&row.id));
            select(doc(&row.id, Some(row), progress.as_ref()), query.fields.as_deref())
        })
        .collect();
    Ok((page_headers(total, items.len()), Json(Value::Array(items))).into_response())
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let row = state.store.bill_run(&id).await?;
    let progress = state.bill_runs.as_ref().and_then(|runner| runner.progress(&id));
    if row.is_none() && progress.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", format!("no bill run {id:?}")));
    }
    Ok(Json(select(doc(&id, row.as_ref(), progress.as_ref()), fields.as_deref())).into_response())
}

/// The request's accounts: absent, or an array of distinct non-empty strings.
fn accounts(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let Some(value) = body.get("accounts") else { return Ok(Vec::new()) };
    let Value::Array(items) = value else {
        return Err(ApiError::bad_request("accounts", "must be an array of billing account ids"));
    };
    if items.is_empty() || items.len() > MAX_RUN_ACCOUNTS {
        return Err(ApiError::bad_request(
            "accounts",
            format!("names 1 to {MAX_RUN_ACCOUNTS} accounts (leave it out to bill every hierarchy)"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(id) if !id.is_empty() && !id.contains(',') && !id.chars().any(char::is_control) => {
                if !seen.insert(id.as_str()) {
                    return Err(ApiError::bad_request("accounts", format!("names {id} twice")));
                }
                out.push(id.clone());
            }
            _ => return Err(ApiError::bad_request("accounts", "each must be a billing account id")),
        }
    }
    Ok(out)
}

/// Starts a bill run, or answers a dry run's documents.
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let runner = runner(&state)?;
    let body = body_object(&headers, body, BodyType::Json, &["cycle", "accounts", "dryRun", "openCycles"])?;
    let cycle = match body.get("cycle") {
        Some(Value::String(cycle)) => cycle.clone(),
        Some(_) => return Err(ApiError::bad_request("cycle", "must be a month, YYYY-MM")),
        None => return Err(ApiError::bad_request("cycle", "is required (YYYY-MM)")),
    };
    let dry_run = match body.get("dryRun") {
        None => false,
        Some(Value::Bool(dry_run)) => *dry_run,
        Some(_) => return Err(ApiError::bad_request("dryRun", "must be true or false")),
    };
    let open_cycles = match body.get("openCycles") {
        None => false,
        Some(Value::Bool(open)) => *open,
        Some(_) => return Err(ApiError::bad_request("openCycles", "must be true or false")),
    };
    let accounts = accounts(&body)?;
    let request = BillRunRequest { cycle, accounts, open_cycles, actor: caller.actor() };
    if dry_run {
        if request.accounts.is_empty() || request.accounts.len() > MAX_DRY_RUN_ACCOUNTS {
            return Err(ApiError::bad_request(
                "accounts",
                format!("a dry run names 1 to {MAX_DRY_RUN_ACCOUNTS} accounts, whose documents it answers"),
            ));
        }
        let (cycle, accounts) = (request.cycle.clone(), request.accounts.clone());
        let documents = runner.dry_run(request).await.map_err(refused)?;
        let answer = json!({"cycle": cycle, "accounts": accounts, "dryRun": true, "documents": documents});
        return Ok(Json(answer).into_response());
    }
    let (status, id) = match runner.start(request).await.map_err(refused)? {
        BillRunStart::Started { id } | BillRunStart::UnderWay { id } => (StatusCode::ACCEPTED, id),
        BillRunStart::Done { id } => (StatusCode::OK, id),
    };
    let row = state.store.bill_run(&id).await?;
    let progress = runner.progress(&id);
    let doc = doc(&id, row.as_ref(), progress.as_ref());
    let mut response = (status, Json(doc)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{BASE_PATH}/billRun/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_store::BillRunState;

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_790_000_000 + second).expect("instant")
    }

    fn row(updated: i64, failure: Option<(&str, i64)>) -> BillRunRow {
        BillRunRow {
            id: "2026-11".into(),
            cycle: "2026-11".into(),
            scope: "all".into(),
            state: BillRunState::Drafting,
            checkpoint: None,
            started_at: at(0),
            updated_at: at(updated),
            finished_at: None,
            failure: failure.map(|(error, second)| (error.to_owned(), at(second))),
        }
    }

    fn here(running: bool, failure: Option<(&str, i64)>) -> BillRunProgress {
        BillRunProgress {
            running,
            drafted: 0,
            statements: 0,
            billed_before: 0,
            finalised: 0,
            failure: failure.map(|(error, second)| (error.to_owned(), at(second))),
        }
    }

    #[test]
    fn a_run_is_failed_by_its_stored_failure_or_by_this_server_s_when_the_store_could_not_record_it() {
        let state = |row: Option<&BillRunRow>, progress: Option<&BillRunProgress>| {
            let doc = doc("2026-11", row, progress);
            (doc["state"].as_str().map(str::to_owned), doc["error"].as_str().map(str::to_owned))
        };
        let failed = |error: &str| (Some("failed".to_owned()), Some(error.to_owned()));
        // Stored: shown by every server, also one that never ran it.
        assert_eq!(state(Some(&row(5, Some(("no rate", 5)))), None), failed("no rate"));
        // This server's, when the store did not record it (the store failed, or a panic).
        let unrecorded = here(false, Some(("store down", 6)));
        assert_eq!(state(Some(&row(5, None)), Some(&unrecorded)), failed("store down"));
        // An attempt elsewhere got further since: the store's state wins.
        assert_eq!(state(Some(&row(9, None)), Some(&unrecorded)), (Some("drafting".to_owned()), None));
        // Running again here, or done: not failed.
        assert_eq!(
            state(Some(&row(5, Some(("no rate", 5)))), Some(&here(true, None))),
            (Some("drafting".into()), None)
        );
        let done = BillRunRow { state: BillRunState::Done, ..row(9, None) };
        assert_eq!(state(Some(&done), Some(&unrecorded)), (Some("done".to_owned()), None));
        // No row yet: this server's failure.
        assert_eq!(state(None, Some(&unrecorded)), failed("store down"));
    }
}

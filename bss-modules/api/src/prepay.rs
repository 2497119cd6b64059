//! Prepaid balances (TMF654 v4, a subset: README.md) under
//! `/tmf-api/prepayBalanceManagement/v4`: `bucket` and `accumulatedBalance` (GET, read from
//! the engine, which alone holds balances; a list needs `partyAccount.id`), `topupBalance`
//! and `adjustBalance` (POST with the client's `id`: 201 when new, 200 with the recorded
//! answer when repeated, 409 when the id was used for another request; GET by id and
//! list). Thin handlers: parse, call `tollgate_customers::Customers`, map the answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::Timestamp;
use serde_json::Value;
use tollgate_store::BalanceActionKind;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{body_bytes, item_fields, page_headers, select, BodyType, ListQuery};
use crate::AppState;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

fn listed(items: Vec<Value>, total: i64, query: &ListQuery) -> Response {
    let count = items.len();
    let items: Vec<Value> = items.into_iter().map(|item| select(item, query.fields.as_deref())).collect();
    (page_headers(total, count), Json(Value::Array(items))).into_response()
}

/// The billing account a balance list is about: `partyAccount.id`, the one filter it takes.
fn account_filter(query: &ListQuery) -> Result<&str, ApiError> {
    let mut account = None;
    for (name, value) in &query.filters {
        match name.as_str() {
            "partyAccount.id" if account.is_none() => account = Some(value.as_str()),
            "partyAccount.id" => return Err(ApiError::bad_request(name.clone(), "given twice")),
            other => {
                return Err(ApiError::bad_request(other, format!("cannot filter on {other:?} (only partyAccount.id)")))
            }
        }
    }
    account.ok_or_else(|| {
        ApiError::bad_request("partyAccount.id", "is required: the billing account whose balance to show")
    })
}

/// A page of an in-memory list.
fn page_of(items: Vec<Value>, query: &ListQuery) -> Response {
    let total = i64::try_from(items.len()).unwrap_or(i64::MAX);
    let start = usize::try_from(query.offset).unwrap_or(usize::MAX);
    let page: Vec<Value> = items.into_iter().skip(start).take(query.limit as usize).collect();
    listed(page, total, query)
}

pub(crate) async fn list_buckets(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let account = account_filter(&query)?;
    Ok(page_of(state.customers.buckets(&caller.principal(), account, Timestamp::now()).await?, &query))
}

pub(crate) async fn get_bucket(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let bucket = state.customers.bucket(&caller.principal(), &id, Timestamp::now()).await?;
    Ok(Json(select(bucket, fields.as_deref())).into_response())
}

pub(crate) async fn list_accumulated(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let account = account_filter(&query)?;
    let balance = state.customers.accumulated_balance(&caller.principal(), account).await?;
    Ok(page_of(vec![balance], &query))
}

pub(crate) async fn get_accumulated(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let balance = state.customers.accumulated_balance(&caller.principal(), &id).await?;
    Ok(Json(select(balance, fields.as_deref())).into_response())
}

async fn list_actions(
    state: &AppState,
    caller: &Caller,
    kind: BalanceActionKind,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let filters = query.filters.iter().map(|(name, value)| (name.as_str(), value.as_str()));
    let (items, total) =
        state.customers.list_balance_actions(&caller.principal(), kind, filters, query.offset, query.limit).await?;
    Ok(listed(items, total, &query))
}

async fn create_action(
    state: &AppState,
    caller: &Caller,
    kind: BalanceActionKind,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = body_bytes(headers, body, BodyType::Json)?;
    let outcome = state.customers.request_balance_action(&caller.principal(), kind, &body, Timestamp::now()).await?;
    if !outcome.created {
        return Ok(Json(outcome.doc).into_response());
    }
    let mut headers = HeaderMap::new();
    if let Some(location) = outcome.doc.get("href").and_then(Value::as_str).and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(outcome.doc)).into_response())
}

async fn get_action(
    state: &AppState,
    caller: &Caller,
    kind: BalanceActionKind,
    id: &str,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let doc = state.customers.get_balance_action(&caller.principal(), kind, id).await?;
    Ok(Json(select(doc, fields.as_deref())).into_response())
}

pub(crate) async fn list_topups(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    list_actions(&state, &caller, BalanceActionKind::TopUp, query).await
}

pub(crate) async fn create_topup(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    create_action(&state, &caller, BalanceActionKind::TopUp, &headers, body).await
}

pub(crate) async fn get_topup(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    get_action(&state, &caller, BalanceActionKind::TopUp, &id, query).await
}

pub(crate) async fn list_adjustments(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    list_actions(&state, &caller, BalanceActionKind::Adjust, query).await
}

pub(crate) async fn create_adjustment(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    create_action(&state, &caller, BalanceActionKind::Adjust, &headers, body).await
}

pub(crate) async fn get_adjustment(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    get_action(&state, &caller, BalanceActionKind::Adjust, &id, query).await
}

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
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::Timestamp;
use tollgate_store::BalanceActionKind;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{body_bytes, item_fields, listed, made, page_of, select, BodyType, ListQuery};
use crate::AppState;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

pub(crate) async fn list_buckets(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let account = query.required_filter("partyAccount.id", "the billing account whose balance to show")?;
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
    let account = query.required_filter("partyAccount.id", "the billing account whose balance to show")?;
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
    Ok(made(outcome.doc, outcome.created))
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

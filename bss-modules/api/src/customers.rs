//! Customers (TMF629 v4) under `/tmf-api/customerManagement/v4/customer` and billing
//! accounts (TMF666 v4) under `/tmf-api/accountManagement/v4/billingAccount`: POST, GET
//! (list and by id), PATCH (merge patch, `If-Match` required); DELETE of a customer that
//! owns no account; `GET …/customer/{id}/export` (right of access) and
//! `POST …/customer/{id}/anonymise` (erasure). Billing accounts are not deleted (their
//! financial records stay). Thin handlers: parse, call `tollgate_customers::Customers`
//! with the caller as a principal (its role and partner scope), map the answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::Timestamp;
use serde_json::Value;
use tollgate_customers::Page;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{created, if_match, item_fields, json_body, one, page_headers, select, BodyType, ListQuery};
use crate::AppState;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

fn page(page: Page, query: &ListQuery) -> Response {
    let count = page.items.len();
    let items: Vec<Value> = page.items.into_iter().map(|item| select(item.value, query.fields.as_deref())).collect();
    (page_headers(page.total, count), Json(Value::Array(items))).into_response()
}

fn filters(query: &ListQuery) -> impl Iterator<Item = (&str, &str)> {
    query.filters.iter().map(|(name, value)| (name.as_str(), value.as_str()))
}

pub(crate) async fn list_customers(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let found = state.customers.list_customers(&caller.principal(), filters(&query), query.offset, query.limit).await?;
    Ok(page(found, &query))
}

pub(crate) async fn get_customer(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    Ok(one(state.customers.get_customer(&caller.principal(), &id).await?, fields.as_deref()))
}

pub(crate) async fn create_customer(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let doc = json_body(&headers, body, BodyType::Json)?;
    Ok(created(state.customers.create_customer(&caller.principal(), doc, Timestamp::now()).await?))
}

pub(crate) async fn patch_customer(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let patch = json_body(&headers, body, BodyType::MergePatch)?;
    let Some(expected) = if_match(&headers, true)? else { return Err(ApiError::bad_request("If-Match", "required")) };
    let item = state.customers.patch_customer(&caller.principal(), &id, &patch, expected, Timestamp::now()).await?;
    Ok(one(item, None))
}

pub(crate) async fn delete_customer(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers, false)?;
    state.customers.delete_customer(&caller.principal(), &id, expected, Timestamp::now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn export_customer(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let export = state.customers.export_customer(&caller.principal(), &id, Timestamp::now()).await?;
    let disposition = HeaderValue::from_static("attachment; filename=\"customer-export.json\"");
    Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(export)).into_response())
}

pub(crate) async fn anonymise_customer(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    Ok(one(state.customers.anonymise_customer(&caller.principal(), &id, Timestamp::now()).await?, None))
}

pub(crate) async fn list_accounts(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let found = state.customers.list_accounts(&caller.principal(), filters(&query), query.offset, query.limit).await?;
    Ok(page(found, &query))
}

pub(crate) async fn get_account(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    Ok(one(state.customers.get_account(&caller.principal(), &id).await?, fields.as_deref()))
}

pub(crate) async fn create_account(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let doc = json_body(&headers, body, BodyType::Json)?;
    Ok(created(state.customers.create_account(&caller.principal(), doc, Timestamp::now()).await?))
}

pub(crate) async fn patch_account(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let patch = json_body(&headers, body, BodyType::MergePatch)?;
    let Some(expected) = if_match(&headers, true)? else { return Err(ApiError::bad_request("If-Match", "required")) };
    let item = state.customers.patch_account(&caller.principal(), &id, &patch, expected, Timestamp::now()).await?;
    Ok(one(item, None))
}

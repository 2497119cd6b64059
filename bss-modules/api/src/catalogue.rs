//! The product catalogue (TMF620 v4) under `/tmf-api/productCatalogManagement/v4/`:
//! `productSpecification`, `productOffering`, `productOfferingPrice` and `category`, each
//! with POST, GET (list and by id), PATCH (merge patch, `If-Match` required) and DELETE
//! (`If-Match` optional). Thin handlers: parse, call `tollgate_catalogue::Catalogue`,
//! map the answer; the caller's token is the audit record's actor.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::Timestamp;
use serde_json::Value;
use tollgate_catalogue::{Filter, Kind};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{created, etag, if_match, item_fields, json_body, page_headers, select, BodyType, ListQuery};
use crate::AppState;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn kind(resource: &str) -> Result<Kind, ApiError> {
    Kind::from_path(resource)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "notFound", "path", format!("no resource {resource:?}")))
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Path(resource): Path<String>,
    query: Params,
) -> Result<Response, ApiError> {
    let kind = kind(&resource)?;
    let query = ListQuery::parse(query)?;
    let filter = Filter::parse(kind, query.filters.iter().map(|(name, value)| (name.as_str(), value.as_str())))?;
    let page = state.catalogue.list(kind, &filter, query.offset, query.limit).await?;
    let count = page.items.len();
    let items: Vec<Value> = page.items.into_iter().map(|item| select(item.value, query.fields.as_deref())).collect();
    Ok((page_headers(page.total, count), Json(Value::Array(items))).into_response())
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Path((resource, id)): Path<(String, String)>,
    query: Params,
) -> Result<Response, ApiError> {
    let kind = kind(&resource)?;
    let fields = item_fields(query)?;
    let item = state.catalogue.get(kind, &id).await?;
    Ok((etag(item.version), Json(select(item.value, fields.as_deref()))).into_response())
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Path(resource): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind = kind(&resource)?;
    let doc = json_body(&headers, body, BodyType::Json)?;
    let item = state.catalogue.create(kind, doc, &caller.actor(), Timestamp::now()).await?;
    Ok(created(item))
}

pub(crate) async fn patch(
    State(state): State<Arc<AppState>>,
    Path((resource, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind = kind(&resource)?;
    let patch = json_body(&headers, body, BodyType::MergePatch)?;
    let Some(expected) = if_match(&headers, true)? else {
        return Err(ApiError::bad_request("If-Match", "required"));
    };
    let item = state.catalogue.patch(kind, &id, &patch, expected, &caller.actor(), Timestamp::now()).await?;
    Ok((etag(item.version), Json(item.value)).into_response())
}

pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Path((resource, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = kind(&resource)?;
    let expected = if_match(&headers, false)?;
    state.catalogue.delete(kind, &id, expected, &caller.actor(), Timestamp::now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

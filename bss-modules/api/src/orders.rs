//! Product orders (TMF622 v4) under `/tmf-api/productOrderingManagement/v4`: `productOrder`
//! list (filters [`tollgate_orders::ORDER_FILTERS`]), POST, GET, PATCH (merge patch of the
//! descriptive fields and the requested start date, `If-Match` required); no DELETE (an
//! order is cancelled, not deleted); `cancelProductOrder` list, POST (a cancellation
//! request, carried out by the workflow) and GET. The inventories the workflow keeps, read
//! only: products (TMF637 `product` under `/tmf-api/productInventory/v4`), services
//! (TMF638 `service` under `/tmf-api/serviceInventory/v4`) and the workflow of each order
//! item as a service order (TMF641 `serviceOrder` under `/tmf-api/serviceOrdering/v4`).
//! Thin handlers: parse, call `tollgate_orders::Orders` with the caller as a principal,
//! map the answer. Without an engine (an API built with no [`tollgate_orders::Orders`])
//! these routes answer 503.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::Timestamp;
use serde_json::Value;
use tollgate_orders::{Orders, Page};
use tollgate_store::Versioned;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{created, etag, if_match, item_fields, json_body, one, page_headers, select, BodyType, ListQuery};
use crate::AppState;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

fn orders(state: &AppState) -> Result<&Orders, ApiError> {
    state.orders.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "productOrder",
            "order management runs in `tollgate serve`, beside the charging engine",
        )
    })
}

/// `doc` with the `fields` asked for, and the members its schema requires (`productOrder`
/// of a cancellation, `productOrderItem` of an order) whatever `fields` says.
fn selected(doc: Value, fields: Option<&[String]>) -> Value {
    let mut kept = select(doc.clone(), fields);
    if let (Value::Object(kept), Value::Object(doc)) = (&mut kept, &doc) {
        for required in ["productOrder", "productOrderItem"] {
            if let Some(value) = doc.get(required) {
                kept.insert(required.to_owned(), value.clone());
            }
        }
    }
    kept
}

fn page(page: Page, query: &ListQuery) -> Response {
    let count = page.items.len();
    let items: Vec<Value> = page.items.into_iter().map(|item| selected(item.value, query.fields.as_deref())).collect();
    (page_headers(page.total, count), Json(Value::Array(items))).into_response()
}

fn filters(query: &ListQuery) -> impl Iterator<Item = (&str, &str)> {
    query.filters.iter().map(|(name, value)| (name.as_str(), value.as_str()))
}

pub(crate) async fn list_orders(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let found = orders(&state)?.list(&caller.principal(), filters(&query), query.offset, query.limit).await?;
    Ok(page(found, &query))
}

pub(crate) async fn get_order(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let found = orders(&state)?.get(&caller.principal(), &id).await?;
    Ok((etag(found.version), Json(selected(found.value, fields.as_deref()))).into_response())
}

pub(crate) async fn create_order(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let doc = json_body(&headers, body, BodyType::Json)?;
    let Some(key) = idempotency_key(&headers)? else {
        return Ok(created(orders(&state)?.create(&caller.principal(), doc, Timestamp::now()).await?));
    };
    let placed = orders(&state)?.create_for_request(&caller.principal(), doc, key, Timestamp::now()).await?;
    let mut response = created(placed.order);
    if placed.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header): a structured
/// field string (quoted), or the bare key many clients send.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let text = value.to_str().map_err(|_| ApiError::bad_request("Idempotency-Key", "must be visible ASCII"))?.trim();
    let key = match text.strip_prefix('"') {
        Some(quoted) => quoted
            .strip_suffix('"')
            .filter(|inner| !inner.contains(['"', '\\']))
            .ok_or_else(|| ApiError::bad_request("Idempotency-Key", "a quoted key must end with its quote"))?,
        None => text,
    };
    Ok(Some(key))
}

pub(crate) async fn patch_order(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let patch = json_body(&headers, body, BodyType::MergePatch)?;
    let Some(expected) = if_match(&headers, true)? else { return Err(ApiError::bad_request("If-Match", "required")) };
    let item = orders(&state)?.patch(&caller.principal(), &id, &patch, expected, Timestamp::now()).await?;
    Ok(one(item, None))
}

pub(crate) async fn list_cancels(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let found = orders(&state)?.list_cancels(&caller.principal(), filters(&query), query.offset, query.limit).await?;
    Ok(page(found, &query))
}

pub(crate) async fn get_cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let found = orders(&state)?.get_cancel(&caller.principal(), &id).await?;
    Ok(Json(selected(found, fields.as_deref())).into_response())
}

pub(crate) async fn create_cancel(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let doc = json_body(&headers, body, BodyType::Json)?;
    let cancel = orders(&state)?.cancel(&caller.principal(), &doc, Timestamp::now()).await?;
    let mut answer = (StatusCode::CREATED, Json(cancel.clone())).into_response();
    if let Some(location) = cancel.get("href").and_then(Value::as_str).and_then(|h| HeaderValue::from_str(h).ok()) {
        answer.headers_mut().insert(header::LOCATION, location);
    }
    Ok(answer)
}

pub(crate) async fn list_products(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let found = orders(&state)?.products(&caller.principal(), filters(&query), query.offset, query.limit).await?;
    Ok(page(found, &query))
}

pub(crate) async fn get_product(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    Ok(one(orders(&state)?.product(&caller.principal(), &id).await?, fields.as_deref()))
}

pub(crate) async fn list_services(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let found = orders(&state)?.services(&caller.principal(), filters(&query), query.offset, query.limit).await?;
    Ok(page(found, &query))
}

pub(crate) async fn get_service(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    Ok(one(orders(&state)?.service(&caller.principal(), &id).await?, fields.as_deref()))
}

pub(crate) async fn list_service_orders(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let found = orders(&state)?.service_orders(&caller.principal(), filters(&query), query.offset, query.limit).await?;
    Ok(page(found, &query))
}

pub(crate) async fn get_service_order(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let found: Versioned<Value> = orders(&state)?.service_order(&caller.principal(), &id).await?;
    Ok(one(found, fields.as_deref()))
}

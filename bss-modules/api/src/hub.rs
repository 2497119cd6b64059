//! The event hub's routes (TMF630 Part 2): [`mount`] adds `POST {apiRoot}/hub` (register a
//! listener: 201 with its id and, once, its secret), `GET {apiRoot}/hub/{id}` and
//! `DELETE {apiRoot}/hub/{id}` (204) for one API, given its [`HubApi`] (root and the event
//! types it publishes); the operator's routes list deliveries
//! (`GET /tmf-api/hub/v1/delivery?state=deadLettered`) and re-drive a dead letter
//! (`POST /tmf-api/hub/v1/delivery/{id}/redrive`). Thin handlers over `tollgate_hub::Hub`;
//! which roles may call them is `auth.rs`'s table.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use jiff::Timestamp;
use serde_json::Value;
use tollgate_hub::{delivery_doc, HubApi};
use tollgate_store::DeliveryState;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{json_body, page_headers, BodyType, ListQuery};
use crate::AppState;

/// Where the operator's delivery routes live.
pub(crate) const DELIVERY_PATH: &str = "/tmf-api/hub/v1/delivery";

type Body = Result<Bytes, BytesRejection>;

fn caller(caller: &Caller) -> tollgate_hub::Caller {
    tollgate_hub::Caller { actor: caller.actor(), role: caller.role }
}

/// Adds `api`'s hub routes under `{api.root}/hub`.
pub(crate) fn mount(router: Router<Arc<AppState>>, api: &'static HubApi) -> Router<Arc<AppState>> {
    let register = move |State(state): State<Arc<AppState>>,
                         Extension(who): Extension<Caller>,
                         headers: HeaderMap,
                         body: Body| async move {
        let doc = json_body(&headers, body, BodyType::Json)?;
        let created = state.hub.register(api, &caller(&who), &doc, Timestamp::now()).await?;
        let mut answer = (StatusCode::CREATED, Json(created.clone())).into_response();
        let location = created["id"].as_str().map(|id| format!("{}/hub/{id}", api.root));
        if let Some(location) = location.and_then(|location| HeaderValue::from_str(&location).ok()) {
            answer.headers_mut().insert(header::LOCATION, location);
        }
        Ok::<Response, ApiError>(answer)
    };
    let read = move |State(state): State<Arc<AppState>>, Path(id): Path<String>, Extension(who): Extension<Caller>| async move {
        let listener = state.hub.get(api, &caller(&who), &id).await?;
        Ok::<Response, ApiError>(Json(listener).into_response())
    };
    let delete = move |State(state): State<Arc<AppState>>,
                       Path(id): Path<String>,
                       Extension(who): Extension<Caller>| async move {
        state.hub.unregister(api, &caller(&who), &id, Timestamp::now()).await?;
        Ok::<Response, ApiError>(StatusCode::NO_CONTENT.into_response())
    };
    router
        .route(&format!("{}/hub", api.root), post(register))
        .route(&format!("{}/hub/{{id}}", api.root), get(read).delete(delete))
}

/// `GET /tmf-api/hub/v1/delivery`: deliveries oldest first, filtered by `state`
/// (`pending`, `delivered`, `deadLettered`) and `listenerId`, paged as every list is.
pub(crate) async fn list_deliveries(
    State(state): State<Arc<AppState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let (mut wanted, mut listener) = (None, None);
    for (name, value) in &query.filters {
        match name.as_str() {
            "state" => {
                wanted = Some(match value.as_str() {
                    "pending" => DeliveryState::Pending,
                    "delivered" => DeliveryState::Done,
                    "deadLettered" => DeliveryState::Failed,
                    _ => return Err(ApiError::bad_request("state", "pending, delivered or deadLettered")),
                });
            }
            "listenerId" => listener = Some(value.as_str()),
            other => {
                return Err(ApiError::bad_request(
                    other,
                    format!("cannot filter on {other:?} (only state, listenerId)"),
                ))
            }
        }
    }
    let page = state.hub.deliveries(wanted, listener, query.offset, query.limit).await?;
    let items: Vec<Value> = page.items.iter().map(delivery_doc).collect();
    Ok((page_headers(page.total, items.len()), Json(Value::Array(items))).into_response())
}

/// `POST /tmf-api/hub/v1/delivery/{id}/redrive`: a dead letter gets one more attempt.
pub(crate) async fn redrive(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(who): Extension<Caller>,
) -> Result<Response, ApiError> {
    let Ok(id) = id.parse::<i64>() else { return Err(ApiError::bad_request("id", "a delivery id is a number")) };
    state.hub.redrive(&caller(&who), id, Timestamp::now()).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

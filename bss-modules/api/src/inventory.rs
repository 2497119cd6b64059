//! The resource inventory (TMF639 v4) under `/tmf-api/resourceInventoryManagement/v4`:
//! `resource` list (filters [`tollgate_inventory::FILTERS`]), POST (a network element, a
//! single MSISDN or a single SIM card without keys), GET, PATCH (merge patch, `If-Match`
//! required) and DELETE (network elements only). The lifecycle steps TMF639 has no
//! operation for are extension routes: `POST …/reservation` (reserve the next free or a
//! named MSISDN or SIM for an owner: 201, or 200 for what the owner already holds, 409
//! `exhausted` when nothing is free) and `POST …/resource/{id}/assign`, `…/release`,
//! `…/unassign`. Loading a number range or a SIM vendor file is the CLI's (`tollgate
//! inventory`). Thin handlers: parse, call `tollgate_inventory::Inventory`, map the answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};
use tollgate_inventory::{PoolKind, Reservation, Reserve, ResourceKind};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{created, if_match, item_fields, json_body, one, page_headers, select, BodyType, ListQuery};
use crate::AppState;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

pub(crate) async fn list(State(state): State<Arc<AppState>>, query: Params) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let filters = query.filters.iter().map(|(name, value)| (name.as_str(), value.as_str()));
    let page = state.inventory.list(filters, query.offset, query.limit, Timestamp::now()).await?;
    let count = page.items.len();
    let items: Vec<Value> = page.items.into_iter().map(|item| select(item.value, query.fields.as_deref())).collect();
    Ok((page_headers(page.total, count), Json(Value::Array(items))).into_response())
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    Ok(one(state.inventory.get(&id, Timestamp::now()).await?, fields.as_deref()))
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let doc = json_body(&headers, body, BodyType::Json)?;
    Ok(created(state.inventory.create(&caller.actor(), doc, Timestamp::now()).await?))
}

pub(crate) async fn patch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let patch = json_body(&headers, body, BodyType::MergePatch)?;
    let Some(expected) = if_match(&headers, true)? else { return Err(ApiError::bad_request("If-Match", "required")) };
    let item = state.inventory.patch(&caller.actor(), &id, &patch, expected, Timestamp::now()).await?;
    Ok(one(item, None))
}

pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers, false)?;
    state.inventory.delete(&caller.actor(), &id, expected, Timestamp::now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A step's body: a JSON object with only `allowed` members.
fn step_body(headers: &HeaderMap, body: Body, allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(members) = json_body(headers, body, BodyType::Json)? else {
        return Err(ApiError::bad_request("body", "must be a JSON object"));
    };
    if let Some(field) = members.keys().find(|field| !allowed.contains(&field.as_str())) {
        return Err(ApiError::bad_request(field.clone(), format!("is not one of {}", allowed.join(", "))));
    }
    Ok(members)
}

/// A string member: required, or `None` when absent and not required.
fn text<'a>(members: &'a Map<String, Value>, field: &str, required: bool) -> Result<Option<&'a str>, ApiError> {
    match members.get(field) {
        Some(Value::String(value)) => Ok(Some(value)),
        None if !required => Ok(None),
        None => Err(ApiError::bad_request(field, "is required")),
        Some(_) => Err(ApiError::bad_request(field, "must be a string")),
    }
}

pub(crate) async fn reserve(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let members =
        step_body(&headers, body, &["resourceSpecification", "owner", "value", "rangeId", "batchId", "holdSeconds"])?;
    let spec = members.get("resourceSpecification").and_then(|spec| spec.get("id")).and_then(Value::as_str);
    let kind = spec
        .and_then(ResourceKind::parse)
        .and_then(ResourceKind::pool)
        .ok_or_else(|| ApiError::bad_request("resourceSpecification.id", "is required: MSISDN or SIMCard"))?;
    let (group_field, other) = match kind {
        PoolKind::Msisdn => ("rangeId", "batchId"),
        PoolKind::Sim => ("batchId", "rangeId"),
    };
    if members.contains_key(other) {
        return Err(ApiError::bad_request(other, format!("is not for {}", spec.unwrap_or_default())));
    }
    let hold = match members.get("holdSeconds") {
        None => None,
        Some(value) => Some(
            value
                .as_i64()
                .map(SignedDuration::from_secs)
                .ok_or_else(|| ApiError::bad_request("holdSeconds", "must be a whole number of seconds"))?,
        ),
    };
    let owner = text(&members, "owner", true)?.unwrap_or_default();
    workflow_owner(owner)?;
    let request = Reserve {
        kind,
        owner,
        value: text(&members, "value", false)?,
        group_id: text(&members, group_field, false)?,
        hold,
    };
    match state.inventory.reserve(&caller.actor(), &request, Timestamp::now()).await? {
        Reservation::Reserved(item) => Ok(created(item)),
        Reservation::Repeated(item) => Ok(one(item, None)),
        Reservation::Exhausted => Err(ApiError::new(
            StatusCode::CONFLICT,
            "exhausted",
            if request.group_id.is_some() { group_field } else { "resourceSpecification.id" },
            format!("no {} is free to reserve", spec.unwrap_or_default()),
        )),
    }
}

/// Refuses an owner the provisioning workflow names its holds by (`order:ORDER:ITEM`):
/// released or assigned through the API, an order in flight would lose its number or SIM
/// half-way (cancel the order instead).
fn workflow_owner(owner: &str) -> Result<(), ApiError> {
    if owner.starts_with("order:") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "workflowOwned",
            "owner",
            "owners named order:… are the provisioning workflow's holds; cancel the order (cancelProductOrder) instead",
        ));
    }
    Ok(())
}

/// `POST …/resource/{id}/{step}`: `assign` `{owner, subscriptionId}`, `release`
/// `{owner}`, `unassign` `{subscriptionId}`.
pub(crate) async fn step(
    State(state): State<Arc<AppState>>,
    Path((id, step)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fields: &[&str] = match step.as_str() {
        "assign" => &["owner", "subscriptionId"],
        "release" => &["owner"],
        "unassign" => &["subscriptionId"],
        _ => return Err(crate::error::not_found().await),
    };
    let members = step_body(&headers, body, fields)?;
    let mut values = Vec::with_capacity(fields.len());
    for field in fields {
        values.push(text(&members, field, true)?.unwrap_or_default());
    }
    if fields.first() == Some(&"owner") {
        workflow_owner(values[0])?;
    }
    let (inventory, actor, now) = (&state.inventory, caller.actor(), Timestamp::now());
    let item = match (step.as_str(), values.as_slice()) {
        ("assign", [owner, subscription]) => inventory.assign(&actor, &id, owner, subscription, now).await?,
        ("release", [owner]) => inventory.release(&actor, &id, owner, now).await?,
        (_, [subscription]) => inventory.unassign(&actor, &id, subscription, now).await?,
        _ => return Err(crate::error::not_found().await),
    };
    Ok(one(item, None))
}

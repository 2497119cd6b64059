//! Thresholds and the crossings they notified (Tollgate's own resources: the TM Forum
//! APIs have no notification threshold on a balance) under
//! `/tmf-api/thresholdManagement/v1`, what `tollgate threshold set|list|delete` does from
//! a shell (`tollgate_customers::Thresholds`: the same checks, audited):
//!
//! - `POST …/threshold`: `billingAccount` (`{"id"}`), `kind` (`balance_below`,
//!   `spending_cap`, `bundle_used`, `bundle_expiry`, `renewal_refused`) with its level:
//!   `amount` (a decimal in the account's currency: `balance_below`, `spending_cap`),
//!   `percent` (1 to 100: `bundle_used`) or `hours` (`bundle_expiry`), none for
//!   `renewal_refused`; optionally `subscription` (`{"id"}`, a bundle threshold's one
//!   line), `language` (a template's, `en` by default), `webhook` (publish crossings to the
//!   hub's listeners, `true` by default), `sms` (also text the lines, `false`). 201 with the
//!   threshold; the same kind and level again changes its delivery only: 200.
//! - `GET …/threshold?billingAccount.id=…` lists an account's; `GET …/threshold/{id}`
//!   reads one; `DELETE …/threshold/{id}` removes it (204; its crossings stay).
//! - `GET …/crossing?billingAccount.id=…`: the crossings notified, latest first.
//!
//! Care and admin set and remove them, a partner its hierarchy's accounts' only (another
//! hierarchy's account is 403, another's threshold 404); every role but the product
//! manager reads. The server's evaluation picks a new threshold up within its refresh.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::Timestamp;
use serde_json::{Map, Value};
use tollgate_customers::{crossing_doc, parse_threshold, threshold_doc, ThresholdKind};
use tollgate_store::ThresholdRow;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{
    body_object, bounded_text, item_fields, listed, made, optional_bool, optional_decimal, page_of, select, with_type,
    BodyType, ListQuery,
};
use crate::AppState;

/// The API's root.
pub const BASE_PATH: &str = "/tmf-api/thresholdManagement/v1";

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

/// The longest id or language taken in a body.
const MAX_TEXT: usize = 64;

fn doc(row: &ThresholdRow) -> Value {
    let mut doc = threshold_doc(row);
    if let Value::Object(map) = &mut doc {
        map.insert("href".into(), Value::from(format!("{BASE_PATH}/threshold/{}", row.id)));
    }
    with_type(doc, "Threshold")
}

fn text<'a>(body: &'a Map<String, Value>, field: &'static str) -> Result<Option<&'a str>, ApiError> {
    bounded_text(body, field, MAX_TEXT)
}

/// A reference's id: `{"id": "…"}`.
fn reference<'a>(body: &'a Map<String, Value>, field: &'static str) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(reference)) => match text(reference, "id")? {
            Some(id)
                if reference.keys().all(|key| matches!(key.as_str(), "id" | "href" | "@type" | "@referredType")) =>
            {
                Ok(Some(id))
            }
            _ => Err(ApiError::bad_request(field, "must be a reference: {\"id\": …}")),
        },
        Some(_) => Err(ApiError::bad_request(field, "must be a reference: {\"id\": …}")),
    }
}

fn whole(body: &Map<String, Value>, field: &'static str) -> Result<Option<i64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_i64().map(Some).ok_or_else(|| ApiError::bad_request(field, "must be a whole number")),
    }
}

/// The level of a `kind` threshold as `tollgate threshold set --level` takes it, from the
/// one field its kind has; a field of another kind is refused naming it.
fn level(kind: ThresholdKind, body: &Map<String, Value>) -> Result<String, ApiError> {
    let amount = optional_decimal(body, "amount")?.map(|amount| amount.to_string());
    let percent = whole(body, "percent")?.map(|percent| percent.to_string());
    let hours = whole(body, "hours")?.map(|hours| format!("{hours}h"));
    let wanted = match kind {
        ThresholdKind::BalanceBelow | ThresholdKind::SpendingCap => Some("amount"),
        ThresholdKind::BundleUsed => Some("percent"),
        ThresholdKind::BundleExpiry => Some("hours"),
        _ => None,
    };
    let mut level = None;
    for (field, given) in [("amount", amount), ("percent", percent), ("hours", hours)] {
        match given {
            Some(given) if Some(field) == wanted => level = Some(given),
            Some(_) => {
                return Err(ApiError::bad_request(field, format!("a {} threshold has no {field}", kind.as_str())))
            }
            None => {}
        }
    }
    match (wanted, level) {
        (Some(field), None) => {
            Err(ApiError::bad_request(field, format!("is required for a {} threshold", kind.as_str())))
        }
        (_, level) => Ok(level.unwrap_or_default()),
    }
}

/// `POST …/threshold`.
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fields = ["billingAccount", "kind", "amount", "percent", "hours", "subscription", "language", "webhook", "sms"];
    let body = body_object(&headers, body, BodyType::Json, &fields)?;
    let account =
        reference(&body, "billingAccount")?.ok_or_else(|| ApiError::bad_request("billingAccount", "is required"))?;
    let kind = match body.get("kind") {
        Some(Value::String(kind)) => ThresholdKind::parse(kind)?,
        _ => {
            return Err(ApiError::bad_request(
                "kind",
                "is required: balance_below, spending_cap, bundle_used, bundle_expiry or renewal_refused",
            ))
        }
    };
    let spec = parse_threshold(
        kind.as_str(),
        &level(kind, &body)?,
        reference(&body, "subscription")?,
        text(&body, "language")?.unwrap_or("en"),
        optional_bool(&body, "webhook")?.unwrap_or(true),
        state.thresholds.templates(),
    )?;
    let spec = tollgate_customers::ThresholdSpec { sms: optional_bool(&body, "sms")?.unwrap_or(false), ..spec };
    let (row, created) = state.thresholds.set_by(&caller.principal(), account, &spec, Timestamp::now()).await?;
    Ok(made(doc(&row), created))
}

/// `GET …/threshold?billingAccount.id=…`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let account = query.required_filter("billingAccount.id", "the account whose thresholds to list")?;
    let rows = state.thresholds.list_by(&caller.principal(), account).await?;
    Ok(page_of(rows.iter().map(doc).collect(), &query))
}

/// `GET …/threshold/{id}`.
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let row = state.thresholds.get_by(&caller.principal(), &id).await?;
    Ok(Json(select(doc(&row), fields.as_deref())).into_response())
}

/// `DELETE …/threshold/{id}`.
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    state.thresholds.delete_by(&caller.principal(), &id, Timestamp::now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET …/crossing?billingAccount.id=…`.
pub(crate) async fn crossings(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let account = query.required_filter("billingAccount.id", "the account whose crossings to list")?;
    let (rows, total) = state.thresholds.crossings_by(&caller.principal(), account, query.offset, query.limit).await?;
    let items = rows.iter().map(|row| with_type(crossing_doc(row), "ThresholdCrossing")).collect();
    Ok(listed(items, total, &query))
}

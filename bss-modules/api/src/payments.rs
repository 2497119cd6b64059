//! Payments (shaped after TMF676 Payment Management v4) under
//! `/tmf-api/paymentManagement/v4/payment`: create (recorded and allocated to the
//! account's bills, the one named in `description` first, then oldest due), list (filtered
//! by `account.id`) and get. `correlatorId` is the payment's reference and makes a create
//! idempotent: the same reference again answers 200 with the payment recorded first, not a
//! second payment. A partner records and reads payments of its own hierarchy only. Thin
//! handlers: parse, call `tollgate-receivables`, shape the JSON.

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::civil::Date;
use serde_json::{Map, Value};
use tollgate_receivables::{payment_doc, NewPayment, Receivables, ReceivablesError, PAYMENT_BASE_PATH};
use tollgate_store::PaymentFilter;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{decimal_value, item_fields, json_body, page_headers, select, BodyType, ListQuery};
use crate::AppState;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

/// The payment routes' root.
pub(crate) fn path(suffix: &str) -> String {
    format!("{PAYMENT_BASE_PATH}/payment{suffix}")
}

impl From<ReceivablesError> for ApiError {
    fn from(error: ReceivablesError) -> Self {
        let message = error.to_string();
        match error {
            ReceivablesError::Invalid { field, .. } => ApiError::bad_request(field, message),
            ReceivablesError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", message),
            ReceivablesError::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Authorization", message)
            }
            ReceivablesError::Billing(error) => ApiError::bad_request(error.field().unwrap_or("body"), message),
            ReceivablesError::Orders(error) => ApiError::from(error),
            ReceivablesError::Store(error) => ApiError::from(error),
            other => {
                tracing::error!(error = %other, "api: recording a payment failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "store",
                    "the request could not be completed",
                )
            }
        }
    }
}

fn object<'a>(body: &'a Map<String, Value>, field: &'static str) -> Result<&'a Map<String, Value>, ApiError> {
    match body.get(field) {
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(ApiError::bad_request(field, "must be an object")),
        None => Err(ApiError::bad_request(field, "is required")),
    }
}

fn text<'a>(body: &'a Map<String, Value>, field: &str, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::bad_request(name, "must be a string")),
    }
}

/// Reads a `PaymentCreate`: `account.id`, `totalAmount` (or `amount`) `{unit, value}`,
/// `correlatorId`; optional `paymentMethod.@type`, `description` (the bill paid first),
/// `paymentDate`.
fn new_payment(body: &Map<String, Value>) -> Result<NewPayment, ApiError> {
    let account = object(body, "account")?;
    let account_id =
        text(account, "id", "account.id")?.ok_or_else(|| ApiError::bad_request("account.id", "is required"))?;
    let (field, money) = match (body.get("totalAmount"), body.get("amount")) {
        (Some(_), _) => ("totalAmount", object(body, "totalAmount")?),
        (None, Some(_)) => ("amount", object(body, "amount")?),
        (None, None) => return Err(ApiError::bad_request("totalAmount", "is required")),
    };
    let unit = text(money, "unit", &format!("{field}.unit"))?
        .ok_or_else(|| ApiError::bad_request(format!("{field}.unit"), "is required"))?;
    let amount = match money.get("value") {
        Some(value) => decimal_value(value, &format!("{field}.value"))?,
        None => return Err(ApiError::bad_request(format!("{field}.value"), "is required")),
    };
    let reference = text(body, "correlatorId", "correlatorId")?
        .ok_or_else(|| ApiError::bad_request("correlatorId", "is required: the payment's reference, recorded once"))?;
    let method = match body.get("paymentMethod") {
        None | Some(Value::Null) => "other".to_owned(),
        Some(Value::Object(method)) => text(method, "@type", "paymentMethod.@type")?.unwrap_or("other").to_owned(),
        Some(_) => return Err(ApiError::bad_request("paymentMethod", "must be an object")),
    };
    let received_on = match text(body, "paymentDate", "paymentDate")? {
        None => jiff::tz::Offset::UTC.to_datetime(jiff::Timestamp::now()).date(),
        Some(text) => match jiff::Timestamp::from_str(text) {
            Ok(at) => jiff::tz::Offset::UTC.to_datetime(at).date(),
            Err(_) => Date::from_str(text)
                .map_err(|_| ApiError::bad_request("paymentDate", format!("{text:?} is not a date-time")))?,
        },
    };
    Ok(NewPayment {
        billing_account_id: account_id.to_owned(),
        amount,
        currency: unit.to_owned(),
        method,
        source: "api".into(),
        reference: reference.to_owned(),
        remittance: text(body, "description", "description")?.map(str::to_owned),
        received_on,
    })
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = match json_body(&headers, body, BodyType::Json)? {
        Value::Object(map) => map,
        _ => return Err(ApiError::bad_request("body", "must be a JSON object")),
    };
    let new = new_payment(&body)?;
    let recorded =
        Receivables::new(state.store.clone()).record(&caller.principal(), new, jiff::Timestamp::now()).await?;
    let doc = payment_doc(&recorded.payment, &recorded.allocations);
    let status = if recorded.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(doc)).into_response())
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let mut filter = PaymentFilter { billing_account_id: None, root_id: caller.scope_root.clone() };
    for (name, value) in &query.filters {
        match name.as_str() {
            "account.id" => filter.billing_account_id = Some(value.clone()),
            other => return Err(ApiError::bad_request(other, format!("cannot filter on {other:?} (only account.id)"))),
        }
    }
    let (rows, total) = state.store.payment_list(&filter, query.offset, query.limit).await?;
    let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let mut allocations = state.store.allocations_of(&ids).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|row| {
            let parts = allocations.remove(&row.id).unwrap_or_default();
            select(payment_doc(row, &parts), query.fields.as_deref())
        })
        .collect();
    Ok((page_headers(total, items.len()), Json(Value::Array(items))).into_response())
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", format!("payment {id} not found"));
    let (payment, allocations) = state.store.payment(&id).await?.ok_or_else(not_found)?;
    if let Some(root) = &caller.scope_root {
        let account = state.store.billing_account(&payment.billing_account_id).await?;
        if account.is_none_or(|account| account.value.root_id != *root) {
            return Err(not_found());
        }
    }
    Ok(Json(select(payment_doc(&payment, &allocations), fields.as_deref())).into_response())
}

//! Discounts and credits a bill run applies (Tollgate's own resources, beside the bill
//! runs) under `/tmf-api/billing/v1`, what `tollgate bill-run discount|credit` records from
//! a shell (`tollgate_receivables::add_discount`, `add_credit`: the same checks, audited):
//!
//! - `POST …/discount`: `billingAccount` (its id), `percent` (above 0, at most 100) or
//!   `amount` with `currency` (per cycle), `validFrom` (a day, `YYYY-MM-DD`) and optionally
//!   `validUntil` (excluded), `product` (a product's discount) or `hierarchy: true` (on a
//!   root: the whole hierarchy's), `id` (else one is made), `description`, `chargeType`
//!   (the contra-revenue GL code, `discount` by default). 201 with the discount.
//! - `POST …/credit`: `billingAccount`, `amount` above zero in the `currency`'s minor units,
//!   `id`, `description`, `chargeType` (`credit`). 201; taken off the account's next
//!   invoices until used up.
//! - `GET …/discount` and `GET …/credit` with `billingAccount.id`: the account's, with
//!   what invoices `used` of each credit.
//!
//! - `GET …/discount/{id}` and `…/credit/{id}`: one, with its `ETag`.
//! - `PATCH …/discount/{id}` (`If-Match` required, a merge patch of `validUntil` only):
//!   the discount's end moved (withdrawn from that day, or `null`: no end); `PATCH
//!   …/credit/{id}` (`amount` only): the credit's amount changed, never below what
//!   invoices `used` of it (its `used` as the amount takes its rest back). Invoices made
//!   final keep what they took; another field is refused naming it, to give a new one.
//!
//! A taken id is 409; an unknown account is 400 naming `billingAccount`; a stale
//! `If-Match` 412.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use tollgate_store::{CreditRow, DiscountRow, Version, Versioned};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{
    body_object, bounded_text, if_match, made, one, optional_bool, optional_decimal, page_of, with_type, BodyType,
    ListQuery,
};
use crate::AppState;

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

/// The longest id, description or charge type accepted.
const MAX_TEXT: usize = 200;

/// An optional bounded text field.
fn text(body: &Map<String, Value>, field: &'static str) -> Result<Option<String>, ApiError> {
    Ok(bounded_text(body, field, MAX_TEXT)?.map(str::to_owned))
}

fn required(body: &Map<String, Value>, field: &'static str) -> Result<String, ApiError> {
    text(body, field)?.ok_or_else(|| ApiError::bad_request(field, "is required"))
}

fn id_or_new(body: &Map<String, Value>) -> Result<String, ApiError> {
    match text(body, "id")? {
        Some(id) => Ok(id),
        None => Ok(tollgate_store::new_entity_id()?),
    }
}

/// `POST /tmf-api/billing/v1/discount`.
pub(crate) async fn create_discount(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fields = [
        "id",
        "billingAccount",
        "percent",
        "amount",
        "currency",
        "product",
        "hierarchy",
        "validFrom",
        "validUntil",
        "description",
        "chargeType",
    ];
    let body = body_object(&headers, body, BodyType::Json, &fields)?;
    let product = text(&body, "product")?;
    let hierarchy = optional_bool(&body, "hierarchy")?.unwrap_or(false);
    let scope = match (&product, hierarchy) {
        (Some(_), true) => return Err(ApiError::bad_request("hierarchy", "a product's discount is not a hierarchy's")),
        (Some(_), false) => "product",
        (None, true) => "hierarchy",
        (None, false) => "account",
    };
    let amount = match (optional_decimal(&body, "amount")?, text(&body, "currency")?) {
        (Some(amount), Some(currency)) => Some((amount, currency)),
        (None, None) => None,
        (Some(_), None) => return Err(ApiError::bad_request("currency", "an amount needs its currency")),
        (None, Some(_)) => return Err(ApiError::bad_request("amount", "a currency goes with an amount")),
    };
    let now = jiff::Timestamp::now();
    let row = DiscountRow {
        id: id_or_new(&body)?,
        billing_account_id: required(&body, "billingAccount")?,
        scope: scope.to_owned(),
        product_id: product,
        percent: optional_decimal(&body, "percent")?,
        amount,
        description: text(&body, "description")?.unwrap_or_else(|| "Discount".to_owned()),
        charge_type: text(&body, "chargeType")?.unwrap_or_else(|| "discount".to_owned()),
        valid_from: required(&body, "validFrom")?,
        valid_until: text(&body, "validUntil")?,
        created_at: now,
    };
    let (doc, created) = tollgate_receivables::add_discount(&state.store, &caller.actor(), &row, now).await?;
    Ok(made(with_type(doc, "Discount"), created))
}

/// `POST /tmf-api/billing/v1/credit`.
pub(crate) async fn create_credit(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fields = ["id", "billingAccount", "amount", "currency", "description", "chargeType"];
    let body = body_object(&headers, body, BodyType::Json, &fields)?;
    let now = jiff::Timestamp::now();
    let row = CreditRow {
        id: id_or_new(&body)?,
        billing_account_id: required(&body, "billingAccount")?,
        amount: optional_decimal(&body, "amount")?.ok_or_else(|| ApiError::bad_request("amount", "is required"))?,
        currency: required(&body, "currency")?,
        description: text(&body, "description")?.unwrap_or_else(|| "Credit".to_owned()),
        charge_type: text(&body, "chargeType")?.unwrap_or_else(|| "credit".to_owned()),
        used: Decimal::ZERO,
        created_at: now,
    };
    let (doc, created) = tollgate_receivables::add_credit(&state.store, &caller.actor(), &row, now).await?;
    Ok(made(with_type(doc, "Credit"), created))
}

/// `GET /tmf-api/billing/v1/discount?billingAccount.id=…`.
pub(crate) async fn list_discounts(State(state): State<Arc<AppState>>, query: Params) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let account = query.required_filter("billingAccount.id", "the account whose discounts to list")?.to_owned();
    let rows = state.store.discounts_of(std::slice::from_ref(&account)).await?;
    let docs = rows.iter().map(|row| with_type(tollgate_receivables::discount_doc(row), "Discount")).collect();
    Ok(page_of(docs, &query))
}

/// `GET /tmf-api/billing/v1/credit?billingAccount.id=…`.
pub(crate) async fn list_credits(State(state): State<Arc<AppState>>, query: Params) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let account = query.required_filter("billingAccount.id", "the account whose credits to list")?.to_owned();
    let rows = state.store.credits_of(std::slice::from_ref(&account)).await?;
    let docs = rows.iter().map(|row| with_type(tollgate_receivables::credit_doc(row), "Credit")).collect();
    Ok(page_of(docs, &query))
}

/// A discount or credit (`kind`) `id` as found, with its ETag; 404 when there is none.
fn found<T>(found: Option<Versioned<T>>, kind: &str, id: &str, doc: fn(&T) -> Value) -> Result<Response, ApiError> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", format!("no {kind} {id}"));
    let found = found.ok_or_else(missing)?;
    Ok(typed(Versioned { value: doc(&found.value), version: found.version }, kind))
}

/// A discount or credit (`kind`) document with its `@type` and ETag.
fn typed(item: Versioned<Value>, kind: &str) -> Response {
    one(Versioned { value: with_type(item.value, kind), version: item.version }, None)
}

/// `GET /tmf-api/billing/v1/discount/{id}`.
pub(crate) async fn get_discount(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    found(state.store.discount(&id).await?, "Discount", &id, tollgate_receivables::discount_doc)
}

/// `GET /tmf-api/billing/v1/credit/{id}`.
pub(crate) async fn get_credit(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    found(state.store.credit(&id).await?, "Credit", &id, tollgate_receivables::credit_doc)
}

/// The version `If-Match` names, which a change of a discount or a credit requires.
fn expected(headers: &HeaderMap) -> Result<Version, ApiError> {
    if_match(headers, true)?.ok_or_else(|| ApiError::bad_request("If-Match", "required"))
}

/// `PATCH /tmf-api/billing/v1/discount/{id}`: its `validUntil` only.
pub(crate) async fn patch_discount(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = body_object(&headers, body, BodyType::MergePatch, &["validUntil"])?;
    let expected = expected(&headers)?;
    if !body.contains_key("validUntil") {
        return Err(ApiError::bad_request("validUntil", "is what a discount's change sets"));
    }
    let until = text(&body, "validUntil")?;
    let now = jiff::Timestamp::now();
    let changed =
        tollgate_receivables::end_discount(&state.store, &caller.actor(), &id, Some(expected), until, now).await?;
    Ok(typed(changed, "Discount"))
}

/// `PATCH /tmf-api/billing/v1/credit/{id}`: its `amount` only.
pub(crate) async fn patch_credit(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = body_object(&headers, body, BodyType::MergePatch, &["amount"])?;
    let expected = expected(&headers)?;
    let amount = optional_decimal(&body, "amount")?
        .ok_or_else(|| ApiError::bad_request("amount", "is what a credit's change sets"))?;
    let now = jiff::Timestamp::now();
    let changed =
        tollgate_receivables::change_credit(&state.store, &caller.actor(), &id, Some(expected), amount, now).await?;
    Ok(typed(changed, "Credit"))
}

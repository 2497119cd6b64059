//! Customer bills (TMF678 v4, read only: README.md) under
//! `/tmf-api/customerBillManagement/v4`: `customerBill` (list, filtered by
//! `billingAccount.id` and `state`, and get) and `appliedCustomerBillingRate` (the lines of
//! one bill: a list needs `bill.id`, and get), from the invoices a bill run wrote. A
//! draft is `onHold`, a final invoice `new`, `partiallyPaid` or `settled` with its
//! `billNo` (issuer, series, number), its `paymentDueDate` and its `remainingAmount`
//! (less credit notes and payments). A
//! partner reads the bills of its own hierarchy only; another hierarchy's bill is 404, as
//! if it did not exist. A final bill is also served as its PDF for `Accept:
//! application/pdf` (406 when the server has no renderer, 409 for a draft). Thin handlers:
//! parse, scope, read the store, shape the JSON.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_store::{InvoiceFilter, InvoiceKind, InvoiceLineRow, InvoiceRow, InvoiceState};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tmf::{item_fields, page_headers, select, ListQuery};
use crate::AppState;

/// The API's root.
pub const BILL_BASE_PATH: &str = "/tmf-api/customerBillManagement/v4";

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Money as TMF678 shows it: a JSON number with the amount's exact digits (a string only
/// past what a JSON number carries exactly).
fn money(currency: &str, value: rust_decimal::Decimal) -> Value {
    json!({"unit": currency, "value": tollgate_customers::money_json(value)})
}

/// The first instant of calendar day `date` in the bill's time zone (its document's
/// `time_zone`; UTC without one), as RFC 3339 with the zone's offset.
fn day_start(date: &str, zone: Option<&str>) -> String {
    let tz = zone.and_then(|zone| jiff::tz::TimeZone::get(zone).ok()).unwrap_or(jiff::tz::TimeZone::UTC);
    match date.parse::<jiff::civil::Date>().ok().and_then(|date| date.to_zoned_datetime(tz).ok()) {
        Some(start) => start.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        None => format!("{date}T00:00:00Z"),
    }
}

/// A decimal the invoice document holds as text, as a JSON number (`null` if it is not one).
fn number(text: &Value) -> Value {
    text.as_str()
        .and_then(|text| text.parse::<rust_decimal::Decimal>().ok())
        .map_or(Value::Null, tollgate_customers::money_json)
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", format!("customer bill {id} not found"))
}

/// What is known of a final bill's payment: due when, and what it still owes.
#[derive(Debug, Clone, Copy, Default)]
struct Payable {
    due: Option<jiff::civil::Date>,
    settled: rust_decimal::Decimal,
}

/// The payment state of final bills `rows` (drafts have none).
async fn payables(state: &AppState, rows: &[InvoiceRow]) -> Result<Vec<Payable>, ApiError> {
    let ids: Vec<&str> =
        rows.iter().filter(|row| row.state == InvoiceState::Final).map(|row| row.id.as_str()).collect();
    if ids.is_empty() {
        return Ok(vec![Payable::default(); rows.len()]);
    }
    let dues = state.store.due_dates(&ids).await?;
    let settled = state.store.settled_amounts(&ids).await?;
    Ok(rows
        .iter()
        .map(|row| Payable {
            due: dues.get(&row.id).copied(),
            settled: settled.get(&row.id).copied().unwrap_or_default(),
        })
        .collect())
}

/// An invoice as a TMF678 `CustomerBill`.
fn bill_doc(row: &InvoiceRow, payable: Payable) -> Value {
    let zone = row.doc.get("time_zone").and_then(Value::as_str);
    let taxes: Vec<Value> = row
        .doc
        .get("taxes")
        .and_then(Value::as_array)
        .map(|taxes| {
            taxes
                .iter()
                .map(|tax| {
                    json!({"taxCategory": tax["code"], "taxRate": number(&tax["rate"]),
                        "taxAmount": {"unit": tax["currency"], "value": number(&tax["tax"])}})
                })
                .collect()
        })
        .unwrap_or_default();
    let mut doc = json!({
        "id": row.id,
        "href": format!("{BILL_BASE_PATH}/customerBill/{}", row.id),
        "@type": "CustomerBill",
        "category": match row.kind {
            _ if row.statement => "statement",
            InvoiceKind::Invoice => "normal",
            InvoiceKind::CreditNote => "creditNote",
        },
        "state": bill_state(row, &payable),
        "billingAccount": {"id": row.billing_account_id,
            "href": format!("/tmf-api/accountManagement/v4/billingAccount/{}", row.billing_account_id)},
        "billingPeriod": {"startDateTime": day_start(&row.period_from, zone),
            "endDateTime": day_start(&row.period_until, zone)},
        "taxExcludedAmount": money(&row.currency, row.net),
        "taxIncludedAmount": money(&row.currency, row.gross),
        // A prepaid statement shows what was charged; nothing is due.
        "amountDue": money(&row.currency, if row.statement { Decimal::ZERO } else { row.gross }),
        "taxItem": taxes,
        "contentHash": row.content_hash,
    });
    if let (Some(number), Some(object)) = (row.number, doc.as_object_mut()) {
        object.insert("billNo".into(), json!(format!("{}/{}/{number}", row.issuer, row.series)));
        if let Some(at) = row.finalised_at {
            object.insert("billDate".into(), json!(at.to_string()));
        }
        if let Some(due) = payable.due.filter(|_| !row.statement) {
            object.insert("paymentDueDate".into(), json!(format!("{due}T00:00:00Z")));
        }
        if row.kind == InvoiceKind::Invoice && !row.statement {
            // Never below zero: what a document gives back (an invoice below zero, a paid
            // invoice credited) is credit on the account, carried there as a payment.
            let remaining = (row.gross - payable.settled).max(Decimal::ZERO);
            object.insert("remainingAmount".into(), money(&row.currency, remaining));
        }
        // The document: this bill's own URL with `Accept: application/pdf`.
        object.insert(
            "billDocument".into(),
            json!([{"id": format!("{}-pdf", row.id), "mimeType": "application/pdf", "@type": "AttachmentRefOrValue",
                "url": format!("{BILL_BASE_PATH}/customerBill/{}", row.id)}]),
        );
    }
    if let (Some(corrected), Some(object)) = (&row.corrects_invoice_id, doc.as_object_mut()) {
        object.insert("correctedBill".into(), json!({"id": corrected}));
    }
    doc
}

/// The bill's TMF678 `stateValue`: `onHold` while it is a draft (its run has not made
/// it final), then `new` until something is paid, `partiallyPaid`, and `settled` once it
/// owes nothing (a statement, a credit note, an invoice below zero: nothing is due).
fn bill_state(row: &InvoiceRow, payable: &Payable) -> &'static str {
    if row.state == InvoiceState::Draft {
        return "onHold";
    }
    if row.statement || row.kind != InvoiceKind::Invoice || row.gross - payable.settled <= Decimal::ZERO {
        return "settled";
    }
    if payable.settled > Decimal::ZERO {
        "partiallyPaid"
    } else {
        "new"
    }
}

/// An invoice line as a TMF678 `AppliedCustomerBillingRate`.
fn rate_doc(bill: &InvoiceRow, line: &InvoiceLineRow) -> Value {
    let zone = bill.doc.get("time_zone").and_then(Value::as_str);
    let id = format!("{}-{}", bill.id, line.position);
    let mut doc = json!({
        "id": id,
        "href": format!("{BILL_BASE_PATH}/appliedCustomerBillingRate/{id}"),
        "@type": "AppliedCustomerBillingRate",
        "type": line.kind,
        "name": line.charge_type,
        "description": line.description,
        "isBilled": bill.state == InvoiceState::Final,
        "bill": {"id": bill.id, "href": format!("{BILL_BASE_PATH}/customerBill/{}", bill.id)},
        "billingAccount": {"id": line.account_id},
        "taxExcludedAmount": money(&line.currency, line.net),
        "taxIncludedAmount": money(&line.currency, line.gross),
        "appliedTax": line.tax_code.as_ref().map(|code| vec![json!({"taxCategory": code,
            "taxRate": line.tax_rate.map(tollgate_customers::money_json),
            "taxAmount": money(&line.currency, line.tax)})]).unwrap_or_default(),
    });
    if let Some(object) = doc.as_object_mut() {
        if let (Some(from), Some(until)) = (&line.period_from, &line.period_until) {
            object.insert(
                "periodCoverage".into(),
                json!({"startDateTime": day_start(from, zone), "endDateTime": day_start(until, zone)}),
            );
        }
        if let Some(product) = &line.product_id {
            object.insert("product".into(), json!({"id": product}));
        }
        if let (Some(quantity), Some(unit)) = (line.quantity, &line.unit) {
            object.insert(
                "characteristic".into(),
                json!([{"name": "quantity", "value": quantity.to_string(), "unit": unit}]),
            );
        }
    }
    doc
}

/// The bill, if the caller may see it (a partner: its own hierarchy's only).
async fn visible_bill(state: &AppState, caller: &Caller, id: &str) -> Result<InvoiceRow, ApiError> {
    let bill = state.store.invoice(id).await?.ok_or_else(|| not_found(id))?;
    match &caller.scope_root {
        Some(root) if *root != bill.root_id => Err(not_found(id)),
        _ => Ok(bill),
    }
}

pub(crate) async fn list_bills(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let mut filter = InvoiceFilter { root_id: caller.scope_root.clone(), ..InvoiceFilter::default() };
    for (name, value) in &query.filters {
        match name.as_str() {
            "billingAccount.id" => filter.billing_account_id = Some(value.clone()),
            "state" => {
                filter.state = Some(
                    // Drafts, or the bills made final (whatever they have been paid).
                    match value.as_str() {
                        "onHold" => "draft",
                        "new" => "final",
                        other => {
                            return Err(ApiError::bad_request(
                                "state",
                                format!("{other:?}: filter on onHold (drafts) or new (final bills, paid or not)"),
                            ))
                        }
                    }
                    .to_owned(),
                )
            }
            other => {
                return Err(ApiError::bad_request(
                    other,
                    format!("cannot filter on {other:?} (billingAccount.id or state)"),
                ))
            }
        }
    }
    let (rows, total) = state.store.invoice_list(&filter, query.offset, query.limit).await?;
    let count = rows.len();
    let payables = payables(&state, &rows).await?;
    let items: Vec<Value> = rows
        .iter()
        .zip(payables)
        .map(|(row, payable)| select(bill_doc(row, payable), query.fields.as_deref()))
        .collect();
    Ok((page_headers(total, count), Json(Value::Array(items))).into_response())
}

/// Whether the client asks for the PDF: `Accept` names `application/pdf` (with a quality
/// above zero) before or instead of JSON.
fn wants_pdf(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()) else { return false };
    let mut best: Option<(&str, f32)> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let kind = pieces.next().unwrap_or("").trim();
        let quality = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if quality > 0.0
            && best.is_none_or(|(_, q)| quality > q)
            && matches!(kind, "application/pdf" | "application/json" | "*/*" | "application/*")
        {
            best = Some((kind, quality));
        }
    }
    best.is_some_and(|(kind, _)| kind == "application/pdf")
}

pub(crate) async fn get_bill(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let bill = visible_bill(&state, &caller, &id).await?;
    if wants_pdf(&headers) {
        let Some(renderer) = &state.bill_pdf else {
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "notAcceptable",
                "Accept",
                "this server renders no PDF",
            ));
        };
        if bill.state != InvoiceState::Final {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "notFinal",
                "state",
                format!("customer bill {id} is a draft: only a final bill has a document"),
            ));
        }
        let pdf = renderer.render(&bill).await.map_err(|reason| {
            tracing::error!(bill = %id, %reason, "api: a bill's PDF could not be rendered");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "pdf", "the bill's PDF could not be rendered")
        })?;
        let disposition =
            format!("inline; filename=\"{}.pdf\"", id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"));
        return Ok((
            [(header::CONTENT_TYPE, "application/pdf".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
            pdf,
        )
            .into_response());
    }
    let payable = payables(&state, std::slice::from_ref(&bill)).await?.pop().unwrap_or_default();
    Ok(Json(select(bill_doc(&bill, payable), fields.as_deref())).into_response())
}

/// One `AppliedCustomerBillingRate` by its id (`{bill id}-{line position}`, the `href` a
/// bill's rates carry).
pub(crate) async fn get_rate(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let fields = item_fields(query)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", format!("no applied rate {id}"));
    let (bill_id, position) = id.rsplit_once('-').ok_or_else(not_found)?;
    let position: i64 = position.parse().map_err(|_| not_found())?;
    let bill = visible_bill(&state, &caller, bill_id).await?;
    let lines = state.store.invoice_lines(&bill.id).await?;
    let line = lines.iter().find(|line| line.position == position).ok_or_else(not_found)?;
    Ok(Json(select(rate_doc(&bill, line), fields.as_deref())).into_response())
}

pub(crate) async fn list_rates(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let mut bill_id = None;
    for (name, value) in &query.filters {
        match name.as_str() {
            "bill.id" if bill_id.is_none() => bill_id = Some(value.as_str()),
            "bill.id" => return Err(ApiError::bad_request(name.clone(), "given twice")),
            other => return Err(ApiError::bad_request(other, format!("cannot filter on {other:?} (only bill.id)"))),
        }
    }
    let bill_id =
        bill_id.ok_or_else(|| ApiError::bad_request("bill.id", "is required: the bill whose rates to list"))?;
    let bill = visible_bill(&state, &caller, bill_id).await?;
    let lines = state.store.invoice_lines(&bill.id).await?;
    let total = i64::try_from(lines.len()).unwrap_or(i64::MAX);
    let start = usize::try_from(query.offset).unwrap_or(usize::MAX);
    let items: Vec<Value> = lines
        .iter()
        .skip(start)
        .take(query.limit as usize)
        .map(|line| select(rate_doc(&bill, line), query.fields.as_deref()))
        .collect();
    Ok((page_headers(total, items.len()), Json(Value::Array(items))).into_response())
}

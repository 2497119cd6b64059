//! The TMF630 machinery every resource shares: list queries (`fields`, `offset`, `limit`
//! and attribute filters), `fields` selection (`id`, `href` and `@type` always kept),
//! pagination headers, typed and bounded bodies (`application/json` to create,
//! `application/merge-patch+json` to patch, else 415; over [`MAX_BODY_BYTES`] 413),
//! versions as ETags (`If-Match` required on PATCH: 428 without, 412 when stale), and
//! one resource's answer (`one`, `created`).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use tollgate_store::{Version, Versioned};

use crate::error::ApiError;

/// Bytes a request body may have.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Items a list returns when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: u32 = 1000;
/// The largest `offset` accepted.
const MAX_OFFSET: u64 = 1 << 40;
/// Filters one list request may have.
const MAX_FILTERS: usize = 16;

/// A list request's parameters.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListQuery {
    pub(crate) fields: Option<Vec<String>>,
    pub(crate) offset: u64,
    pub(crate) limit: u32,
    /// (attribute, value) pairs, checked by the resource.
    pub(crate) filters: Vec<(String, String)>,
}

fn number<T: std::str::FromStr + PartialOrd>(name: &str, text: &str, low: T, high: T) -> Result<T, ApiError> {
    match text.parse::<T>() {
        Ok(value) if value >= low && value <= high => Ok(value),
        _ => Err(ApiError::bad_request(name, format!("{name} {text:?} is not an integer in range"))),
    }
}

fn fields(text: &str) -> Result<Vec<String>, ApiError> {
    let names: Vec<String> =
        text.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_owned).collect();
    if names.len() > 100 || names.iter().any(|name| name.len() > 100) {
        return Err(ApiError::bad_request("fields", "at most 100 names of at most 100 bytes"));
    }
    Ok(names)
}

impl ListQuery {
    /// Reads a list's query string; `offset` 0 and `limit` [`DEFAULT_LIMIT`] by default.
    pub(crate) fn parse(query: Result<Query<Vec<(String, String)>>, QueryRejection>) -> Result<ListQuery, ApiError> {
        let Query(pairs) = query.map_err(|rejection| ApiError::bad_request("query", rejection.body_text()))?;
        let mut list = ListQuery { limit: DEFAULT_LIMIT, ..ListQuery::default() };
        let mut seen = [false; 3];
        for (name, value) in pairs {
            // `fields`, `offset` and `limit` once each: a second would be one of them lost.
            if let Some(at) = ["fields", "offset", "limit"].iter().position(|known| *known == name) {
                if std::mem::replace(&mut seen[at], true) {
                    return Err(ApiError::bad_request(name, "given twice"));
                }
            }
            match name.as_str() {
                "fields" => list.fields = Some(fields(&value)?),
                "offset" => list.offset = number("offset", &value, 0, MAX_OFFSET)?,
                "limit" => list.limit = number("limit", &value, 0, MAX_LIMIT)?,
                _ => {
                    if list.filters.len() == MAX_FILTERS {
                        return Err(ApiError::bad_request(name, format!("at most {MAX_FILTERS} filters")));
                    }
                    list.filters.push((name, value));
                }
            }
        }
        Ok(list)
    }
}

impl ListQuery {
    /// The value of filter `name`, which the list requires (given once) and is the only
    /// filter it takes; `what` says what it names.
    pub(crate) fn required_filter(&self, name: &str, what: &str) -> Result<&str, ApiError> {
        let mut found = None;
        for (given, value) in &self.filters {
            match given.as_str() {
                given if given == name && found.is_none() => found = Some(value.as_str()),
                given if given == name => return Err(ApiError::bad_request(name, "given twice")),
                other => return Err(ApiError::bad_request(other, format!("cannot filter on {other:?} (only {name})"))),
            }
        }
        found.ok_or_else(|| ApiError::bad_request(name, format!("is required: {what}")))
    }
}

/// A list's page: `items` (cut already), of `total`, with the `fields` the query selects.
pub(crate) fn listed(items: Vec<Value>, total: i64, query: &ListQuery) -> Response {
    let count = items.len();
    let items: Vec<Value> = items.into_iter().map(|item| select(item, query.fields.as_deref())).collect();
    (page_headers(total, count), Json(Value::Array(items))).into_response()
}

/// The page `query` asks for of a whole list held in memory (a bounded one).
pub(crate) fn page_of(items: Vec<Value>, query: &ListQuery) -> Response {
    let total = i64::try_from(items.len()).unwrap_or(i64::MAX);
    let start = usize::try_from(query.offset).unwrap_or(usize::MAX);
    let page: Vec<Value> = items.into_iter().skip(start).take(query.limit as usize).collect();
    listed(page, total, query)
}

/// The `fields` of a GET by id (the only parameter it takes).
pub(crate) fn item_fields(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Option<Vec<String>>, ApiError> {
    let Query(pairs) = query.map_err(|rejection| ApiError::bad_request("query", rejection.body_text()))?;
    let mut selected = None;
    for (name, value) in pairs {
        match name.as_str() {
            "fields" if selected.is_some() => return Err(ApiError::bad_request(name, "given twice")),
            "fields" => selected = Some(fields(&value)?),
            _ => return Err(ApiError::bad_request(name.clone(), format!("unknown query parameter {name:?}"))),
        }
    }
    Ok(selected)
}

/// `doc` with only the `fields` asked for, and `id`, `href` and `@type`.
pub(crate) fn select(doc: Value, fields: Option<&[String]>) -> Value {
    let (Some(fields), Value::Object(object)) = (fields, &doc) else { return doc };
    let kept = object
        .iter()
        .filter(|(name, _)| matches!(name.as_str(), "id" | "href" | "@type") || fields.iter().any(|f| f == *name))
        .map(|(name, value)| (name.clone(), value.clone()));
    Value::Object(kept.collect())
}

/// The headers of a list page.
pub(crate) fn page_headers(total: i64, count: usize) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("X-Total-Count", HeaderValue::from(total));
    headers.insert("X-Result-Count", HeaderValue::from(count));
    headers
}

/// The ETag header of a version.
pub(crate) fn etag(version: Version) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&version.etag()) {
        headers.insert(header::ETAG, value);
    }
    headers
}

/// A resource with its ETag, `fields` selected.
pub(crate) fn one(item: Versioned<Value>, fields: Option<&[String]>) -> Response {
    (etag(item.version), Json(select(item.value, fields))).into_response()
}

/// Adds `doc`'s `href` to `headers` as `Location`.
fn location(doc: &Value, headers: &mut HeaderMap) {
    if let Some(location) = doc.get("href").and_then(Value::as_str).and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(header::LOCATION, location);
    }
}

/// A resource just created: 201, its ETag, and its `href` as `Location`.
pub(crate) fn created(item: Versioned<Value>) -> Response {
    let mut headers = etag(item.version);
    location(&item.value, &mut headers);
    (StatusCode::CREATED, headers, Json(item.value)).into_response()
}

/// A resource asked to be made: 201 with its `href` as `Location` when it was made now,
/// 200 when it existed (a request repeated, or an existing one changed).
pub(crate) fn made(doc: Value, created: bool) -> Response {
    if !created {
        return Json(doc).into_response();
    }
    let mut headers = HeaderMap::new();
    location(&doc, &mut headers);
    (StatusCode::CREATED, headers, Json(doc)).into_response()
}

/// The version `If-Match` names: required (428 without), one ETag this server issued.
/// `If-Match: *` (RFC 9110 §13.1.1: true for any current representation) names no
/// version: where one is required (a change that must not overwrite another's) it is
/// answered 428 like a missing header; where it is optional it is no condition (the
/// resource's existence is checked by the operation itself).
pub(crate) fn if_match(headers: &HeaderMap, required: bool) -> Result<Option<Version>, ApiError> {
    let precondition_required =
        |message: &str| ApiError::new(StatusCode::PRECONDITION_REQUIRED, "preconditionRequired", "If-Match", message);
    let Some(value) = headers.get(header::IF_MATCH) else {
        if required {
            return Err(precondition_required("send the ETag of the version you read in If-Match"));
        }
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ApiError::bad_request("If-Match", "not an ETag"))?;
    if text.trim() == "*" {
        if required {
            return Err(precondition_required(
                "If-Match: * names no version; send the ETag of the version you read, so a change made since is not overwritten",
            ));
        }
        return Ok(None);
    }
    Version::from_etag(text).map(Some).map_err(|error| ApiError::bad_request("If-Match", error.to_string()))
}

/// A decimal given as a JSON number or a string, exactly as written (a body's numbers
/// that a float would not carry exactly are refused before, by [`json_body`]), of at most
/// [`tollgate_customers::MAX_MONEY_DIGITS`] significant digits; anything else is refused
/// naming `field`.
pub(crate) fn decimal_value(value: &Value, field: &str) -> Result<rust_decimal::Decimal, ApiError> {
    let text = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.clone(),
        _ => return Err(ApiError::bad_request(field, "must be a decimal")),
    };
    let decimal = rust_decimal::Decimal::from_str_exact(&text)
        .or_else(|_| rust_decimal::Decimal::from_scientific(&text))
        .map_err(|_| ApiError::bad_request(field, format!("{text:?} is not a decimal")))?;
    let digits = tollgate_billing::significant_digits(decimal);
    if digits > tollgate_customers::MAX_MONEY_DIGITS {
        return Err(ApiError::bad_request(
            field,
            format!("{text} has more than {} significant digits", tollgate_customers::MAX_MONEY_DIGITS),
        ));
    }
    Ok(decimal)
}

/// Optional text field `field` of `body`: 1 to `max` printable characters.
pub(crate) fn bounded_text<'a>(
    body: &'a serde_json::Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text))
            if !text.is_empty() && text.chars().count() <= max && !text.chars().any(char::is_control) =>
        {
            Ok(Some(text))
        }
        Some(_) => Err(ApiError::bad_request(field, format!("must be 1 to {max} printable characters"))),
    }
}

/// Optional decimal field `field` of `body` ([`decimal_value`]).
pub(crate) fn optional_decimal(
    body: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<rust_decimal::Decimal>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => decimal_value(value, field).map(Some),
    }
}

/// Optional boolean field `field` of `body`.
pub(crate) fn optional_bool(
    body: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<bool>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(ApiError::bad_request(field, "must be true or false")),
    }
}

/// `doc` with its `@type`.
pub(crate) fn with_type(mut doc: Value, kind: &str) -> Value {
    if let Value::Object(map) = &mut doc {
        map.insert("@type".into(), Value::from(kind));
    }
    doc
}

/// A JSON object body (of media type `expected`) whose fields are all among `fields` (or
/// `@type`); another is refused naming it.
pub(crate) fn body_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    expected: BodyType,
    fields: &[&str],
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let Value::Object(body) = json_body(headers, body, expected)? else {
        return Err(ApiError::bad_request("body", "must be a JSON object"));
    };
    if let Some(name) = body.keys().find(|name| !fields.contains(&name.as_str()) && name.as_str() != "@type") {
        return Err(ApiError::bad_request(name.clone(), format!("is not a field here ({})", fields.join(", "))));
    }
    Ok(body)
}

/// The media type a body must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyType {
    Json,
    MergePatch,
}

/// A JSON body of the expected media type, within the size limit.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    expected: BodyType,
) -> Result<Value, ApiError> {
    let body = body_bytes(headers, body, expected)?;
    let value =
        serde_json::from_slice(&body).map_err(|error| ApiError::bad_request("body", format!("not JSON: {error}")))?;
    if let Some(inexact) = inexact_number(&body) {
        return Err(ApiError::bad_request(
            inexact.field,
            format!(
                "the number {} (byte {}) cannot be read exactly: at most {MAX_EXACT_DIGITS} significant digits \
                 (an integer: 64 bits) within a float's range (where a decimal string is taken, send one)",
                inexact.token, inexact.offset
            ),
        ));
    }
    Ok(value)
}

/// Significant digits a JSON number with a fraction or an exponent may have: every decimal
/// of at most 15 reads back the same through a 64-bit float, which the parser uses.
const MAX_EXACT_DIGITS: usize = 15;

/// A number of a JSON text that the parser did not read exactly.
#[derive(Debug, PartialEq, Eq)]
struct Inexact {
    /// Where it is: the keys of the objects around it, joined by dots.
    field: String,
    token: String,
    offset: usize,
}

/// The first number of `json` (a valid JSON text) that would not read back as written: an
/// integer beyond 64 bits, or a fraction or exponent with more than [`MAX_EXACT_DIGITS`]
/// significant digits, beyond a float's range or below its normal numbers.
fn inexact_number(json: &[u8]) -> Option<Inexact> {
    // The keys of the objects the scan is in (`None` inside an array or before a key).
    let mut path: Vec<Option<String>> = Vec::new();
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'"' => {
                let start = at + 1;
                at += 1;
                while at < json.len() && json[at] != b'"' {
                    at += if json[at] == b'\\' { 2 } else { 1 };
                }
                let text = &json[start..at.min(json.len())];
                at += 1;
                let mut next = at;
                while next < json.len() && json[next].is_ascii_whitespace() {
                    next += 1;
                }
                if json.get(next) == Some(&b':') {
                    if let Some(top) = path.last_mut() {
                        *top = Some(String::from_utf8_lossy(text).into_owned());
                    }
                }
            }
            b'{' => {
                path.push(None);
                at += 1;
            }
            b'[' => {
                path.push(None);
                at += 1;
            }
            b'}' | b']' => {
                path.pop();
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                while at < json.len() && matches!(json[at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    at += 1;
                }
                let token = std::str::from_utf8(&json[start..at]).unwrap_or_default();
                if !exact(token) {
                    let field = path.iter().flatten().cloned().collect::<Vec<_>>().join(".");
                    let field = if field.is_empty() { "body".to_owned() } else { field };
                    return Some(Inexact { field, token: token.to_owned(), offset: start });
                }
            }
            _ => at += 1,
        }
    }
    None
}

/// Whether the parser reads JSON number `token` exactly (see [`inexact_number`]).
fn exact(token: &str) -> bool {
    if !token.contains(['.', 'e', 'E']) {
        return token.parse::<i64>().is_ok() || token.parse::<u64>().is_ok();
    }
    let mantissa = token.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    if significant.len() > MAX_EXACT_DIGITS {
        return false;
    }
    match token.parse::<f64>() {
        Ok(float) => {
            float.is_finite() && (float == 0.0) == significant.is_empty() && (float == 0.0 || float.is_normal())
        }
        Err(_) => false,
    }
}

/// A body of the expected media type, within the size limit, as bytes (for a resource
/// that reads money from the JSON text itself).
pub(crate) fn body_bytes(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    expected: BodyType,
) -> Result<Bytes, ApiError> {
    let wanted = match expected {
        BodyType::Json => "application/json",
        BodyType::MergePatch => "application/merge-patch+json",
    };
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some(wanted) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupportedMediaType",
            "Content-Type",
            format!("the body must be {wanted}"),
        ));
    }
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payloadTooLarge",
                "body",
                format!("a body has at most {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request("body", rejection.body_text())
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_selection_keeps_the_identity() {
        let doc = json!({"id": "1", "href": "/x/1", "@type": "Category", "name": "n", "description": "d"});
        assert_eq!(
            select(doc, Some(&["name".to_owned()])),
            json!({"id": "1", "href": "/x/1", "@type": "Category", "name": "n"})
        );
    }

    /// Regression: JSON numbers were read through a float, so `18446744073709551616` became
    /// `18446744073709552000` and `5.0000000000000000000000000000000000000001` became `5.0`
    /// without a word; such a number is now refused naming where it is.
    #[test]
    fn a_number_a_float_would_not_carry_exactly_is_found_with_its_place() {
        let found = |text: &str| inexact_number(text.as_bytes()).map(|i| (i.field, i.token, i.offset));
        for fine in [
            r#"{"amount": 12.5, "n": -3, "big": 18446744073709551615, "low": -9223372036854775808}"#,
            r#"{"a": [1e3, 0.000001, 123456789012.345, 0.0, -0e0], "s": "18446744073709551616.5"}"#,
            r#"{"x\"y": {"z": "\\"}, "v": 1E-300}"#,
        ] {
            assert_eq!(found(fine), None, "{fine}");
        }
        let text = r#"{"creditLimit": {"unit": "EUR", "value": 100.0000000000000001}}"#;
        let offset = text.find("100.").expect("number");
        assert_eq!(found(text), Some(("creditLimit.value".into(), "100.0000000000000001".into(), offset)));
        assert_eq!(found(r#"{"amount": 18446744073709551616}"#).map(|f| f.0), Some("amount".into()));
        assert_eq!(found(r#"{"a": {"b": 1}, "amount": 1e-400}"#).map(|f| f.0), Some("amount".into()));
        assert_eq!(found(r#"{"amount": 1e400}"#).map(|f| f.1), Some("1e400".into()));
        assert_eq!(found(r#"{"items": [{"x": 1}, {"y": 0.30000000000000004}]}"#).map(|f| f.0), Some("items.y".into()));
        assert_eq!(found("2.2250738585072014e-309").map(|f| f.0), Some("body".into()));
    }
}

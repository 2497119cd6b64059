//! The Nchf_ConvergedCharging v3 HTTP server (axum; HTTP/1.1 and HTTP/2, cleartext or
//! over TLS: `serve`, `serve_tls`).
//!
//! - `POST {apiRoot}/nchf-convergedcharging/v3/chargingdata` → 201 with `Location`: opens a
//!   charging session (or, with `oneTimeEvent`, debits an event at once).
//! - `POST …/chargingdata/{ChargingDataRef}/update` → 200: reports usage, reserves more.
//! - `POST …/chargingdata/{ChargingDataRef}/release` → 204: final usage, releases the rest.
//!
//! The ChargingDataRef encodes the subscriber and a digest of the creating request (the
//! consumer, the instant, the sequence number, and a PDU session's charging id, PDU
//! session id and DNN), so it survives restarts without a table, a retransmitted create
//! gets the same reference, and two sessions opened in one second get two.
//! Every request carries its own exactly-once key: the reference plus
//! `invocationSequenceNumber`, so a retransmission is answered without a second charge.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio::sync::oneshot;
use tollgate_engine::{
    Answer, Body, Engine, Identity, Operation, Outcome, Plans, Request, ServiceRef, SessionStep, Target, Unit,
    UnitRequest, Usage,
};
use tollgate_engine::{MAX_KEY_BYTES, MAX_TEXT_BYTES};

use crate::{metrics, AdapterError};

use super::formats;
use super::model::{
    ChargingDataRequest, ChargingDataResponse, FinalUnitIndication, InvalidParam, MultipleUnitInformation,
    ProblemDetails, UnitField, Units,
};

/// The bundled schema of ChargingDataRequest (see `scripts/bundle-nchf-schema.py`).
const REQUEST_SCHEMA: &str = include_str!("charging_data_request.schema.json");
/// Largest request body accepted (413 past it).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most multipleUnitUsage entries in one request.
pub const MAX_UNIT_USAGES: usize = 64;
/// Deepest nesting of JSON arrays and objects in a request body (a ChargingDataRequest
/// nests 13 deep at most). Checked before the body is parsed, like the two below, so a
/// body within `MAX_BODY_BYTES` cannot make the parser recurse or allocate past them.
pub const MAX_JSON_DEPTH: usize = 32;
/// Most items of one JSON array, or members of one object.
pub const MAX_JSON_ITEMS: usize = 1024;
/// Most values (array items, object members and containers) in a whole request body.
pub const MAX_JSON_VALUES: usize = 16_384;
/// Longest subscriberIdentifier (SUPI or GPSI: `imsi-…`, `msisdn-…`, `nai-…`) accepted, in
/// bytes. The ChargingDataRef hex-encodes it, and the engine's idempotency key
/// `nchf;{reference};{invocationSequenceNumber}` must fit in its `MAX_KEY_BYTES`; an NAI
/// `nai-` plus 235 bytes is the longest.
pub const MAX_SUBSCRIBER_BYTES: usize = (MAX_KEY_BYTES - KEY_BYTES_BESIDES_SUBSCRIBER) / 2;
/// The idempotency key besides the hex-encoded subscriber: `nchf;`, the reference's `-` and
/// digest, `;` and the longest invocationSequenceNumber (a u32).
const KEY_BYTES_BESIDES_SUBSCRIBER: usize =
    "nchf;".len() + "-".len() + DIGEST_HEX_DIGITS + ";".len() + (u32::MAX.ilog10() as usize + 1);
/// Hexadecimal digits of the digest that ends a reference.
const DIGEST_HEX_DIGITS: usize = 16;
// The reference is also the engine's session id.
const _: () = assert!(2 * MAX_SUBSCRIBER_BYTES + "-".len() + DIGEST_HEX_DIGITS <= MAX_TEXT_BYTES);
const BASE: &str = "/nchf-convergedcharging/v3";

pub struct NchfState {
    engine: Arc<Engine>,
    reader: RequestReader,
    /// `apiRoot` used in `Location` headers, e.g. `http://chf.example:8080`.
    api_root: String,
}

/// Checks request bodies against the bundled ChargingDataRequest schema and reads them.
pub struct RequestReader {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for RequestReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestReader")
    }
}

impl RequestReader {
    /// Compiles the bundled schema; fails only on a build defect.
    pub fn new() -> Result<RequestReader, AdapterError> {
        let mut schema: serde_json::Value =
            serde_json::from_str(REQUEST_SCHEMA).map_err(|e| AdapterError::Schema(e.to_string()))?;
        formats::move_number_formats(&mut schema);
        let validator =
            formats::checked(jsonschema::options().with_draft(jsonschema::Draft::Draft7).should_validate_formats(true))
                .build(&schema)
                .map_err(|e| AdapterError::Schema(e.to_string()))?;
        Ok(RequestReader { validator })
    }

    /// Parses and validates a request body; the error is the response to send.
    pub fn read(&self, headers: &HeaderMap, body: &[u8]) -> Result<ChargingDataRequest, Problem> {
        read_request(&self.validator, headers, body)
    }
}

impl std::fmt::Debug for NchfState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NchfState").field("api_root", &self.api_root).finish()
    }
}

/// Builds the router. Fails only if the bundled schema does not compile (a build defect).
pub fn router(engine: Arc<Engine>, api_root: String) -> Result<Router, AdapterError> {
    let state = Arc::new(NchfState { engine, reader: RequestReader::new()?, api_root });
    Ok(Router::new()
        .route(
            &format!("{BASE}/chargingdata"),
            post(|state: State<Arc<NchfState>>, headers: HeaderMap, body: Bytes| counted(create(state, headers, body))),
        )
        .route(
            &format!("{BASE}/chargingdata/{{reference}}/update"),
            post(|state: State<Arc<NchfState>>, reference: Path<String>, headers: HeaderMap, body: Bytes| {
                counted(update(state, reference, headers, body))
            }),
        )
        .route(
            &format!("{BASE}/chargingdata/{{reference}}/release"),
            post(|state: State<Arc<NchfState>>, reference: Path<String>, headers: HeaderMap, body: Bytes| {
                counted(release(state, reference, headers, body))
            }),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(body_in_time))
        .with_state(state))
}

/// The most time a request's body may take to arrive once its headers have: a peer that
/// trickles a body (a byte every few seconds, within the idle timeout) would otherwise
/// hold its connection and stream for as long as it likes, and enough of them would take
/// every connection the server holds. Diameter bounds a message the same way.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a request's body, at most [`MAX_BODY_BYTES`] within [`BODY_DEADLINE`], before the
/// handler runs: 413 for a body declared or found larger, 408 for one that does not
/// arrive in time, both as ProblemDetails (TS 29.500 §5.2.7).
async fn body_in_time(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "INVALID_MSG_FORMAT",
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            Vec::new(),
        )
        .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(error)) => {
            let length_limit =
                std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if length_limit {
                return too_large();
            }
            problem(
                StatusCode::BAD_REQUEST,
                "INVALID_MSG_FORMAT",
                format!("the body could not be read: {error}"),
                Vec::new(),
            )
            .into_response()
        }
        Err(_) => problem(
            StatusCode::REQUEST_TIMEOUT,
            "INVALID_MSG_FORMAT",
            format!("the body did not arrive within {} s", BODY_DEADLINE.as_secs()),
            Vec::new(),
        )
        .into_response(),
    }
}

/// Answers a request and counts its status and latency ([`metrics::NCHF`]).
async fn counted(answer: impl std::future::Future<Output = impl IntoResponse>) -> Response {
    let started = std::time::Instant::now();
    let response = answer.await.into_response();
    metrics::NCHF.record(u32::from(response.status().as_u16()), started.elapsed());
    response
}

/// An error answer: sent as `application/problem+json` ProblemDetails.
#[derive(Debug)]
pub struct Problem(Box<(StatusCode, ProblemDetails)>);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let (status, body) = *self.0;
        let json = serde_json::to_vec(&body).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/problem+json")], json).into_response()
    }
}

fn problem(status: StatusCode, cause: &'static str, detail: impl Into<String>, invalid: Vec<InvalidParam>) -> Problem {
    let body = ProblemDetails {
        title: status.canonical_reason().unwrap_or("error").to_owned(),
        status: status.as_u16(),
        detail: detail.into(),
        cause,
        invalid_params: invalid,
    };
    Problem(Box::new((status, body)))
}

async fn not_found() -> Problem {
    problem(StatusCode::NOT_FOUND, "RESOURCE_URI_STRUCTURE_NOT_FOUND", "no such resource", Vec::new())
}

/// Parses and validates a request body against the specification's schema.
fn read_request(
    validator: &jsonschema::Validator,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ChargingDataRequest, Problem> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json_type {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "INVALID_MSG_FORMAT",
            "the body must be application/json",
            Vec::new(),
        ));
    }
    json_shape(body).map_err(|reason| {
        let param = InvalidParam { param: "/".to_owned(), reason: reason.clone() };
        problem(
            StatusCode::BAD_REQUEST,
            "INVALID_MSG_FORMAT",
            format!("JSON too large in shape: {reason}"),
            vec![param],
        )
    })?;
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|err| {
        problem(StatusCode::BAD_REQUEST, "INVALID_MSG_FORMAT", format!("not JSON: {err}"), Vec::new())
    })?;
    let mut missing = false;
    let invalid: Vec<InvalidParam> = validator
        .iter_errors(&value)
        .take(8)
        .map(|err| {
            let path = err.instance_path().to_string();
            let (path, reason) = match err.kind() {
                jsonschema::error::ValidationErrorKind::Format { format } => (path, formats::reason(format)),
                // TS 29.500 §5.2.7.2: a missing mandatory IE is named itself.
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    missing = true;
                    let name = property.as_str().map_or_else(|| property.to_string(), str::to_owned);
                    (format!("{path}/{name}"), format!("{name} is mandatory"))
                }
                _ => (path, err.to_string()),
            };
            InvalidParam { param: if path.is_empty() { "/".to_owned() } else { path }, reason }
        })
        .collect();
    if !invalid.is_empty() {
        // MANDATORY_IE_MISSING when a mandatory IE is missing, else the message's format.
        let cause = if missing { "MANDATORY_IE_MISSING" } else { "INVALID_MSG_FORMAT" };
        return Err(problem(StatusCode::BAD_REQUEST, cause, "the request does not match ChargingDataRequest", invalid));
    }
    let request: ChargingDataRequest = serde_json::from_value(value).map_err(|err| {
        problem(StatusCode::BAD_REQUEST, "INVALID_MSG_FORMAT", format!("ChargingDataRequest: {err}"), Vec::new())
    })?;
    if request.subscriber_identifier.as_ref().is_some_and(|s| s.len() > MAX_SUBSCRIBER_BYTES) {
        return Err(subscriber_too_long());
    }
    if request.multiple_unit_usage.len() > MAX_UNIT_USAGES {
        let param = InvalidParam {
            param: "/multipleUnitUsage".to_owned(),
            reason: format!("more than {MAX_UNIT_USAGES} entries"),
        };
        return Err(problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "INSUFFICIENT_RESOURCES",
            "too many unit usages",
            vec![param],
        ));
    }
    Ok(request)
}

/// Checks a JSON text's nesting and size against [`MAX_JSON_DEPTH`], [`MAX_JSON_ITEMS`]
/// and [`MAX_JSON_VALUES`] in one pass without allocating; the error names the limit and
/// the byte offset where it was passed. Syntax is left to the parser.
pub fn json_shape(body: &[u8]) -> Result<(), String> {
    // Items so far of each open container (a container with no item yet has 0).
    let mut items = [0usize; MAX_JSON_DEPTH];
    let mut depth = 0usize;
    let mut values = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    for (at, byte) in body.iter().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        let starts_value = match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b':' => false,
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                false
            }
            b',' => {
                if let Some(count) = depth.checked_sub(1).map(|open| &mut items[open]) {
                    *count += 1;
                    if *count > MAX_JSON_ITEMS {
                        return Err(format!("more than {MAX_JSON_ITEMS} items in one array or object at byte {at}"));
                    }
                }
                false
            }
            // Scalars continue until a delimiter; count them once, at their first byte.
            _ => body.get(at.wrapping_sub(1)).is_none_or(|before| b" \t\n\r:,[{".contains(before)),
        };
        if *byte == b'"' {
            in_string = true;
        }
        if starts_value {
            if let Some(count) = depth.checked_sub(1).map(|open| &mut items[open]) {
                *count = (*count).max(1);
            }
            values += 1;
            if values > MAX_JSON_VALUES {
                return Err(format!("more than {MAX_JSON_VALUES} values at byte {at}"));
            }
        }
        if matches!(byte, b'[' | b'{') {
            if depth == MAX_JSON_DEPTH {
                return Err(format!("nested deeper than {MAX_JSON_DEPTH} levels at byte {at}"));
            }
            items[depth] = 0;
            depth += 1;
        }
    }
    Ok(())
}

fn subscriber_too_long() -> Problem {
    let param = InvalidParam {
        param: "/subscriberIdentifier".to_owned(),
        reason: format!("longer than {MAX_SUBSCRIBER_BYTES} bytes"),
    };
    problem(StatusCode::BAD_REQUEST, "INVALID_MSG_FORMAT", "subscriberIdentifier is too long", vec![param])
}

/// `imsi-…`, `msisdn-…`, `nai-…` (SUPI / GPSI forms) to an engine identity.
pub fn identity(subscriber: &str) -> Option<Identity> {
    let (kind, value) = subscriber.split_once('-')?;
    match kind {
        "imsi" if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() => {
            Some(Identity::Imsi(value.to_owned()))
        }
        "msisdn" if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() => {
            Some(Identity::Msisdn(value.to_owned()))
        }
        "nai" if value.contains('@') => Some(Identity::Nai(value.to_owned())),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The inverse of `hex`: lowercase digits only, so a subscriber has one encoding.
fn unhex(text: &str) -> Option<String> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let pairs = text.as_bytes().chunks(2);
    let bytes: Option<Vec<u8>> = pairs.map(|pair| Some((digit(pair[0])? << 4) | digit(*pair.get(1)?)?)).collect();
    String::from_utf8(bytes?).ok()
}

/// FNV-1a, 64 bits: a stable digest for references (not a security boundary: a reference
/// only names a session of the subscriber it encodes).
fn digest(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The ChargingDataRef of a create: the subscriber hex-encoded, `-`, and a digest of the
/// request. `None` for a subscriber longer than `MAX_SUBSCRIBER_BYTES`, which no reference
/// can name (`RequestReader::read` refuses it first).
pub fn reference_of(request: &ChargingDataRequest, subscriber: &str) -> Option<String> {
    if subscriber.len() > MAX_SUBSCRIBER_BYTES {
        return None;
    }
    let consumer = request.nf_consumer_identification.to_string();
    // The instant, not its spelling: a retransmission writing `…26.000Z` for `…26Z` (or
    // `+00:00` for `Z`) is the same create.
    let time_stamp = request
        .invocation_time_stamp
        .parse::<jiff::Timestamp>()
        .map_or_else(|_| request.invocation_time_stamp.clone(), |at| at.to_string());
    let sequence = request.invocation_sequence_number.to_be_bytes();
    let mut parts: Vec<&[u8]> = vec![consumer.as_bytes(), subscriber.as_bytes(), time_stamp.as_bytes(), &sequence];
    // Two PDU sessions of one subscriber opened by one SMF in the same second (the
    // internet and the IMS session of a UE attaching) are two creates, not a
    // retransmission: their charging ids, PDU session ids and DNNs tell them apart.
    let session: Vec<String> = request
        .pdu_session_charging_information
        .iter()
        .flat_map(|info| {
            ["/chargingId", "/pduSessionInformation/pduSessionID", "/pduSessionInformation/dnnId"]
                .map(|pointer| info.pointer(pointer).map(|value| value.to_string()).unwrap_or_default())
        })
        .collect();
    parts.extend(session.iter().map(String::as_bytes));
    let hash = digest(&parts);
    Some(format!("{}-{hash:016x}", hex(subscriber.as_bytes())))
}

/// The subscriber a reference names, if it is one `reference_of` can make.
pub fn subscriber_of(reference: &str) -> Option<String> {
    let (encoded, hash) = reference.rsplit_once('-')?;
    (hash.len() == DIGEST_HEX_DIGITS && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
    (encoded.len() <= 2 * MAX_SUBSCRIBER_BYTES).then_some(())?;
    unhex(encoded)
}

/// The engine idempotency key of a request on `reference`; at most `MAX_KEY_BYTES` for every
/// reference `reference_of` makes.
pub fn idempotency_key(reference: &str, invocation_sequence_number: u32) -> String {
    format!("nchf;{reference};{invocation_sequence_number}")
}

/// The engine's rating groups of a request, each with the field its quantities are in.
/// `plans` tell what each rating group is counted in: reported usage is read in that unit
/// (a container with time and volume: the one the tariff counts) and quota asked and
/// granted in it; a container reporting usage without that unit is refused (403
/// `CHARGING_FAILED` naming it) rather than read in another (seconds charged as bytes, or volume left unpaid).
pub fn unit_requests(
    request: &ChargingDataRequest,
    with_requested: bool,
    plans: &Plans,
) -> Result<Vec<(UnitRequest, UnitField)>, Problem> {
    let mut units = Vec::with_capacity(request.multiple_unit_usage.len());
    for (index, usage) in request.multiple_unit_usage.iter().enumerate() {
        let counted_in = plans.rating_group_unit(usage.rating_group).map(|unit| match unit {
            Unit::Seconds => UnitField::Time,
            Unit::Bytes => UnitField::Volume,
            Unit::Events | Unit::Units => UnitField::ServiceSpecific,
        });
        let requested = usage.requested_unit.as_ref();
        let field = counted_in
            .or_else(|| requested.and_then(Units::quantity).map(|(_, field)| field))
            .or_else(|| usage.used_unit_container.iter().find_map(Units::quantity).map(|(_, field)| field))
            .unwrap_or(UnitField::Volume);
        let mut used: Option<u64> = None;
        for (position, container) in usage.used_unit_container.iter().enumerate() {
            // Nothing used (no quantity, or only zeros): nothing to read.
            if container.is_zero() {
                continue;
            }
            let Some(units) = container.get(field) else {
                let param = format!("/multipleUnitUsage/{index}/usedUnitContainer/{position}");
                let reason = format!("no {} here: rating group {} is counted in it", field.name(), usage.rating_group);
                // TS 32.291 §6.1.7.3: the charging failed (the request itself is well formed).
                return Err(problem(
                    StatusCode::FORBIDDEN,
                    "CHARGING_FAILED",
                    format!("{param}: {reason}"),
                    vec![InvalidParam { param, reason }],
                ));
            };
            used = Some(used.unwrap_or(0).saturating_add(units));
        }
        let requested_units = match (with_requested, requested) {
            (false, _) => None,
            // requestedUnit without a quantity in the counted unit: the default quota.
            (true, Some(units)) => units.get(field),
            (true, None) => Some(0),
        };
        units.push((
            UnitRequest {
                rating_group: usage.rating_group,
                service: None,
                requested_units,
                used_units: used,
                destination: None,
            },
            field,
        ));
    }
    Ok(units)
}

async fn ask(engine: &Engine, request: Request) -> Result<Answer, Problem> {
    let (reply, answered) = oneshot::channel();
    engine.submit(request, Box::new(move |answer| drop(reply.send(answer))));
    match answered.await {
        Ok(Ok(answer)) => Ok(answer),
        // TS 29.500 §5.2.7.2: overload control refused it; nothing was applied.
        Ok(Err(tollgate_engine::EngineError::Overloaded { .. })) => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "NF_CONGESTION",
            "the charging engine is overloaded; nothing was charged, send it again later",
            Vec::new(),
        )),
        _ => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "SYSTEM_FAILURE",
            "the charging engine is unavailable",
            Vec::new(),
        )),
    }
}

fn result_code(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "SUCCESS",
        Outcome::CreditLimitReached => "QUOTA_LIMIT_REACHED",
        Outcome::UnknownSubscriber | Outcome::UnknownAccount => "USER_UNKNOWN",
        Outcome::RatingFailed(_) => "RATING_FAILED",
        Outcome::ServiceDenied(_) => "END_USER_SERVICE_DENIED",
        _ => "END_USER_SERVICE_DENIED",
    }
}

/// Maps an engine answer onto a ChargingDataResponse, or an error response.
fn respond(
    request: &ChargingDataRequest,
    units: &[(UnitRequest, UnitField)],
    answer: &Answer,
) -> Result<ChargingDataResponse, Problem> {
    match &answer.outcome {
        Outcome::UnknownSubscriber | Outcome::UnknownAccount => {
            return Err(problem(StatusCode::NOT_FOUND, "USER_UNKNOWN", "no such subscriber", Vec::new()));
        }
        Outcome::UnknownSession => {
            return Err(problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND", "no such charging data", Vec::new()));
        }
        Outcome::Invalid(reason) => {
            return Err(problem(StatusCode::FORBIDDEN, "CHARGING_FAILED", reason.clone(), Vec::new()));
        }
        // TS 32.291 §6.1.7.3: the end user's service is denied (suspended). An update
        // whose reported usage was charged still gets its unit results (200).
        Outcome::ServiceDenied(reason) if !matches!(answer.body, Body::Session { .. }) => {
            return Err(problem(StatusCode::FORBIDDEN, "END_USER_REQUEST_DENIED", reason.clone(), Vec::new()));
        }
        _ => {}
    }
    let multiple_unit_information = match &answer.body {
        Body::Session { grants } => grants
            .iter()
            .zip(units)
            .map(|(grant, (_, field))| MultipleUnitInformation {
                result_code: result_code(&grant.outcome),
                rating_group: grant.rating_group,
                granted_unit: (grant.granted_units > 0).then(|| Units::of(*field, grant.granted_units)),
                validity_seconds: (grant.granted_units > 0).then_some(grant.validity_seconds),
                final_unit_indication: grant
                    .final_unit
                    .then_some(FinalUnitIndication { final_unit_action: "TERMINATE" }),
            })
            .collect(),
        Body::Charged(charged) => units
            .iter()
            .map(|(unit, field)| MultipleUnitInformation {
                result_code: result_code(&answer.outcome),
                rating_group: unit.rating_group,
                granted_unit: Some(Units::of(*field, charged.charged_units)),
                validity_seconds: None,
                final_unit_indication: None,
            })
            .collect(),
        _ => units
            .iter()
            .map(|(unit, _)| MultipleUnitInformation {
                result_code: result_code(&answer.outcome),
                rating_group: unit.rating_group,
                granted_unit: None,
                validity_seconds: None,
                final_unit_indication: None,
            })
            .collect(),
    };
    Ok(ChargingDataResponse {
        invocation_time_stamp: request.invocation_time_stamp.clone(),
        invocation_sequence_number: request.invocation_sequence_number,
        multiple_unit_information,
    })
}

fn json(status: StatusCode, body: &ChargingDataResponse, location: Option<String>) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    if let Some(location) = location.and_then(|l| l.parse().ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn create(State(state): State<Arc<NchfState>>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let request = state.reader.read(&headers, &body)?;
    // A well-formed request the CHF cannot charge is refused with 403 (TS 32.291 §6.1.7.3),
    // not 400: nothing in it violates the schema.
    let Some(subscriber) = request.subscriber_identifier.clone() else {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "CHARGING_NOT_APPLICABLE",
            "no subscriberIdentifier to charge",
            Vec::new(),
        ));
    };
    let Some(identity) = identity(&subscriber) else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            "USER_UNKNOWN",
            "subscriberIdentifier is not imsi-, msisdn- or nai-",
            Vec::new(),
        ));
    };
    let reference = reference_of(&request, &subscriber).ok_or_else(subscriber_too_long)?;
    let units = unit_requests(&request, true, state.engine.plans())?;
    let key = Some(idempotency_key(&reference, request.invocation_sequence_number));
    let operation = if request.one_time_event {
        let Some((unit, _)) = units.first() else {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "CHARGING_NOT_APPLICABLE",
                "a one-time event without a unit usage",
                Vec::new(),
            ));
        };
        let quantity = unit.requested_units.filter(|u| *u > 0).or(unit.used_units).unwrap_or(1);
        let usage = Usage {
            service: ServiceRef::RatingGroup(unit.rating_group),
            rating_group: Some(unit.rating_group),
            destination: None,
            start_utc_seconds: state.engine.now(),
            units: quantity,
        };
        Operation::DirectDebit { usage }
    } else {
        let units = units.iter().map(|(u, _)| u.clone()).collect();
        Operation::Session { session: reference.clone(), step: SessionStep::Initial, units }
    };
    let answer = ask(&state.engine, Request { key, target: Target::Subscriber(identity), operation }).await?;
    let body = respond(&request, &units, &answer)?;
    let location = format!("{}{BASE}/chargingdata/{reference}", state.api_root);
    Ok(json(StatusCode::CREATED, &body, Some(location)))
}

async fn session_step(
    state: &NchfState,
    reference: &str,
    headers: &HeaderMap,
    body: &Bytes,
    step: SessionStep,
) -> Result<ChargingDataResponse, Problem> {
    let Some(identity) = subscriber_of(reference).as_deref().and_then(identity) else {
        return Err(problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND", "no such charging data", Vec::new()));
    };
    let request = state.reader.read(headers, body)?;
    let units = unit_requests(&request, step != SessionStep::Termination, state.engine.plans())?;
    let key = Some(idempotency_key(reference, request.invocation_sequence_number));
    let operation = Operation::Session {
        session: reference.to_owned(),
        step,
        units: units.iter().map(|(u, _)| u.clone()).collect(),
    };
    let answer = ask(&state.engine, Request { key, target: Target::Subscriber(identity), operation }).await?;
    respond(&request, &units, &answer)
}

async fn update(
    State(state): State<Arc<NchfState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let answer = session_step(&state, &reference, &headers, &body, SessionStep::Update).await?;
    Ok(json(StatusCode::OK, &answer, None))
}

async fn release(
    State(state): State<Arc<NchfState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Problem> {
    session_step(&state, &reference, &headers, &body, SessionStep::Termination).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Serves the router on `listener` until `shutdown` completes (HTTP/1.1 and h2c, no TLS),
/// holding at most `limits.max_connections` connections and closing one idle for
/// `limits.idle_timeout`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: crate::limits::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AdapterError> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY small answers wait for the peer's delayed ACK (≈ 40 ms).
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    let listener = crate::limits::LimitedListener::new(listener, limits, "nchf");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| AdapterError::Io { what: "nchf server", source })
}

/// Serves the router over TLS on `listener` until `shutdown` completes: HTTP/2 or HTTP/1.1
/// as the client's ALPN chooses (`tls` should offer `crate::tls::ALPN_HTTP`), TCP_NODELAY
/// set, and with a client CA in `tls`, only to clients with a certificate from it; limited
/// as [`serve`] is.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: crate::limits::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AdapterError> {
    let listener = crate::tls::TlsListener::new(listener, tls, "nchf")
        .map_err(|source| AdapterError::Io { what: "nchf server", source })?;
    let listener = crate::limits::LimitedListener::new(listener, limits, "nchf");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| AdapterError::Io { what: "nchf server", source })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn json_shape_bounds_depth_items_and_values_naming_the_byte() {
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(json_shape(nested(MAX_JSON_DEPTH).as_bytes()), Ok(()));
        let err = json_shape(nested(MAX_JSON_DEPTH + 1).as_bytes()).expect_err("too deep");
        assert_eq!(err, format!("nested deeper than {MAX_JSON_DEPTH} levels at byte {MAX_JSON_DEPTH}"));
        let array = |items: usize| format!("{{\"a\":[{}]}}", vec!["1"; items].join(","));
        assert_eq!(json_shape(array(MAX_JSON_ITEMS).as_bytes()), Ok(()));
        let err = json_shape(array(MAX_JSON_ITEMS + 1).as_bytes()).expect_err("too many items");
        assert!(err.starts_with(&format!("more than {MAX_JSON_ITEMS} items in one array or object at byte ")), "{err}");
        let object: String = (0..=MAX_JSON_ITEMS).map(|n| format!("\"k{n}\":0")).collect::<Vec<_>>().join(",");
        assert!(json_shape(format!("{{{object}}}").as_bytes()).is_err(), "members of one object count");
        // Many small arrays: each within MAX_JSON_ITEMS, together past MAX_JSON_VALUES.
        let arrays = vec![format!("[{}]", vec!["0"; 1000].join(",")); 17].join(",");
        let err = json_shape(format!("[{arrays}]").as_bytes()).expect_err("too many values");
        assert!(err.starts_with(&format!("more than {MAX_JSON_VALUES} values")), "{err}");
        // Brackets, commas and escaped quotes inside strings are text.
        let text = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(100), ",".repeat(5000));
        assert_eq!(json_shape(text.as_bytes()), Ok(()));
    }

    fn request(consumer: &str, time_stamp: &str, sequence: u32) -> ChargingDataRequest {
        serde_json::from_value(serde_json::json!({
            "nfConsumerIdentification": {"nodeFunctionality": consumer},
            "invocationTimeStamp": time_stamp,
            "invocationSequenceNumber": sequence,
        }))
        .expect("request")
    }

    /// Regression: two PDU sessions of one subscriber created by one SMF in the same
    /// second shared a reference: the second got the first's answer and its usage was
    /// taken for retransmissions, never charged.
    #[test]
    fn two_pdu_sessions_created_in_one_second_have_two_references() {
        let session = |charging_id: u64, pdu_session: u8, dnn: &str| {
            let mut request = request("SMF", "2026-03-02T10:00:00Z", 0);
            request.pdu_session_charging_information = Some(serde_json::json!({
                "chargingId": charging_id,
                "pduSessionInformation": {"pduSessionID": pdu_session, "dnnId": dnn},
            }));
            reference_of(&request, "imsi-001010000000001").expect("a reference")
        };
        let internet = session(1111, 1, "internet");
        assert_ne!(internet, session(2222, 2, "ims"));
        assert_ne!(internet, session(2222, 1, "internet"), "the charging id alone tells them apart");
        assert_eq!(internet, session(1111, 1, "internet"), "a retransmission is the same create");
        let without = reference_of(&request("SMF", "2026-03-02T10:00:00Z", 0), "imsi-001010000000001");
        assert_ne!(Some(internet), without);
    }

    #[test]
    fn references_round_trip_the_subscriber() {
        let request = request("SMF", "2026-03-02T10:00:00Z", 0);
        let reference = reference_of(&request, "imsi-001010000000001").expect("a reference");
        assert_eq!(subscriber_of(&reference).as_deref(), Some("imsi-001010000000001"));
        assert_eq!(
            Some(&reference),
            reference_of(&request, "imsi-001010000000001").as_ref(),
            "stable for retransmissions"
        );
        // Regression: a retransmission spelling the instant otherwise was a new create
        // (charged again).
        for spelling in ["2026-03-02T10:00:00.000Z", "2026-03-02T10:00:00+00:00", "2026-03-02T11:00:00+01:00"] {
            let again = super::tests::request("SMF", spelling, 0);
            assert_eq!(reference_of(&again, "imsi-001010000000001"), Some(reference.clone()), "{spelling}");
        }
        let later = super::tests::request("SMF", "2026-03-02T10:00:01Z", 0);
        assert_ne!(reference_of(&later, "imsi-001010000000001"), Some(reference.clone()), "another instant");
        assert_eq!(subscriber_of("zz-0123456789abcdef"), None);
        assert_eq!(subscriber_of("616263"), None);
        assert_eq!(subscriber_of("6162636-0123456789abcdef"), None, "odd length");
        assert_eq!(subscriber_of("+6162-0123456789abcdef"), None, "a sign is not a digit");
        assert_eq!(subscriber_of("6A-0123456789abcdef"), None, "only the lowercase encoding");
    }

    /// Regression (fuzz target nchf_request): `reference_of` encoded subscribers of any length
    /// and `subscriber_of` decoded at most 256 bytes; the idempotency key of a long one went
    /// past the engine's MAX_KEY_BYTES.
    #[test]
    fn the_subscriber_bound_is_the_longest_whose_key_fits_the_engine() {
        let request = request("SMF", "2026-03-02T10:00:00Z", u32::MAX);
        let longest = format!("nai-{}@example.com", "a".repeat(MAX_SUBSCRIBER_BYTES - "nai-@example.com".len()));
        assert_eq!(longest.len(), MAX_SUBSCRIBER_BYTES);
        let reference = reference_of(&request, &longest).expect("a reference");
        assert_eq!(subscriber_of(&reference).as_deref(), Some(longest.as_str()));
        let key = idempotency_key(&reference, u32::MAX);
        assert!(key.len() <= MAX_KEY_BYTES, "{} bytes", key.len());
        assert!(key.len() + 2 > MAX_KEY_BYTES, "one byte more would not fit: the bound is not lower than it must be");
        assert!(reference.len() <= MAX_TEXT_BYTES, "the reference is the engine session id");
        let longer = format!("x{longest}");
        assert_eq!(reference_of(&request, &longer), None);
        let forged = format!("{}-0123456789abcdef", hex(longer.as_bytes()));
        assert_eq!(subscriber_of(&forged), None, "no reference names a subscriber past the bound");
    }

    proptest! {
        /// Every reference `reference_of` makes names its subscriber, and its idempotency key
        /// fits the engine; a subscriber past the bound gets no reference.
        #[test]
        fn every_reference_names_its_subscriber(
            subscriber in prop_oneof![".{0,80}", ".{200,260}", "nai-[a-z0-9.]{200,250}@[a-z.]{1,20}"],
            consumer in "[A-Z]{1,8}",
            sequence in any::<u32>(),
        ) {
            let request = request(&consumer, "2026-03-02T10:00:00Z", sequence);
            match reference_of(&request, &subscriber) {
                Some(reference) => {
                    prop_assert!(subscriber.len() <= MAX_SUBSCRIBER_BYTES);
                    prop_assert_eq!(subscriber_of(&reference), Some(subscriber));
                    prop_assert!(idempotency_key(&reference, sequence).len() <= MAX_KEY_BYTES);
                }
                None => prop_assert!(subscriber.len() > MAX_SUBSCRIBER_BYTES),
            }
        }

        /// `subscriber_of` never panics and accepts only what `reference_of` would make.
        #[test]
        fn subscriber_of_reads_only_references(
            reference in prop_oneof!["[0-9a-fA-F+-]{0,600}", "([0-9a-f]{2}){0,300}-[0-9a-f]{16}"],
        ) {
            if let Some(subscriber) = subscriber_of(&reference) {
                let (encoded, _) = reference.rsplit_once('-').expect("a digest");
                prop_assert_eq!(hex(subscriber.as_bytes()), encoded);
                prop_assert!(subscriber.len() <= MAX_SUBSCRIBER_BYTES);
            }
        }
    }

    #[test]
    fn the_bundled_schema_compiles() {
        assert!(RequestReader::new().is_ok());
    }
}

//! `tollgate rate --plan FILE`: usage events as JSON lines on stdin, rated results as
//! JSON lines on stdout, one output line per input line, in order. A line that cannot
//! be read or priced gets an answer saying why; it never stops the run.
//!
//! The `error` of an `invalid` answer starts with the input line, then names the field
//! and says what it takes and what it got, e.g. `line 3: field `units`: must be a whole
//! number from 0 to 18446744073709551615, got -5`; a line that is not JSON gives the
//! column within that line.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rust_decimal::Decimal;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use tollgate_tariffs::{rate, store, AllowanceBalance, CompiledPlan, LineKind, RatedEvent, Unrated, UsageEvent};

/// Longest input line accepted; a longer one is answered `invalid` and skipped.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most allowance balances one event may carry.
const MAX_ALLOWANCES_PER_EVENT: usize = 64;

#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Answer<'a> {
    Rated(Box<RatedOut<'a>>),
    Unrated { id: Option<serde_json::Value>, line: u64, reason: &'static str, message: String },
    Invalid { id: Option<serde_json::Value>, line: u64, error: String },
}

#[derive(Debug, Serialize)]
struct RatedOut<'a> {
    id: Option<serde_json::Value>,
    line: u64,
    plan: &'a str,
    plan_version: u32,
    currency: &'a str,
    service: &'a str,
    destination: Option<&'a str>,
    prefix: Option<String>,
    band: &'a str,
    rate_line: u32,
    units: u64,
    charged_units: u64,
    allowance_units: u64,
    amount: Decimal,
    exact_amount: Decimal,
    rounding: RoundingOut,
    lines: Vec<LineOut<'a>>,
}

#[derive(Debug, Serialize)]
struct RoundingOut {
    mode: &'static str,
    decimals: u32,
    adjustment: Decimal,
}

#[derive(Debug, Serialize)]
struct LineOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    band: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowance: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket: Option<u64>,
    from_unit: u64,
    units: u64,
    price: Decimal,
    per: u64,
    exact_amount: Decimal,
    amount: Decimal,
}

pub(crate) fn run(plan_path: &Path) -> anyhow::Result<ExitCode> {
    let plan = store::load_or_compile(plan_path).with_context(|| format!("loading plan {}", plan_path.display()))?;
    let allowance_index: HashMap<&str, u16> =
        plan.allowances.iter().enumerate().map(|(i, a)| (a.name.as_str(), i as u16)).collect();
    let stdin = io::stdin().lock();
    let mut reader = io::BufReader::with_capacity(256 * 1024, stdin);
    let mut out = BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    let mut buffer = Vec::with_capacity(1024);
    let (mut rated, mut unrated, mut invalid) = (0u64, 0u64, 0u64);
    let mut line_number = 0u64;
    loop {
        let read = read_line_bounded(&mut reader, &mut buffer, MAX_LINE_BYTES)?;
        if read == LineRead::Eof {
            break;
        }
        line_number += 1;
        if buffer.iter().all(u8::is_ascii_whitespace) && read == LineRead::Line {
            continue;
        }
        let answer = if read == LineRead::TooLong {
            let error = format!("line {line_number}: longer than {MAX_LINE_BYTES} bytes");
            Answer::Invalid { id: None, line: line_number, error }
        } else {
            answer_line(&plan, &allowance_index, &buffer, line_number)
        };
        match answer {
            Answer::Rated(_) => rated += 1,
            Answer::Unrated { .. } => unrated += 1,
            Answer::Invalid { .. } => invalid += 1,
        }
        serde_json::to_writer(&mut out, &answer)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!("tollgate rate: {rated} rated, {unrated} unrated, {invalid} invalid");
    Ok(ExitCode::SUCCESS)
}

fn answer_line<'p>(
    plan: &'p CompiledPlan,
    allowance_index: &HashMap<&str, u16>,
    bytes: &[u8],
    line: u64,
) -> Answer<'p> {
    let event = match parse_event(bytes, line) {
        Ok(event) => event,
        Err(error) => return Answer::Invalid { id: None, line, error },
    };
    let id = event.id.clone();
    let invalid = |error: String| Answer::Invalid { id: id.clone(), line, error: format!("line {line}: {error}") };
    let service = match (&event.service, event.rating_group, event.service_id) {
        (Some(name), _, _) => {
            plan.service_by_name(name).ok_or_else(|| format!("field `service`: unknown service `{name}`"))
        }
        (None, Some(rg), _) => plan
            .service_by_rating_group(rg)
            .ok_or_else(|| format!("field `rating_group`: no service has rating group {rg}")),
        (None, None, Some(id)) => plan
            .service_by_service_id(id)
            .ok_or_else(|| format!("field `service_id`: no service has service identifier {id}")),
        (None, None, None) => Err("one of `service`, `rating_group` or `service_id` is required".to_owned()),
    };
    let service = match service {
        Ok(service) => service,
        Err(error) => return invalid(error),
    };
    let start = match &event.start {
        Start::EpochSeconds(seconds) => *seconds,
        Start::Rfc3339(text) => match text.parse::<jiff::Timestamp>() {
            Ok(timestamp) => timestamp.as_second(),
            Err(err) => return invalid(format!("field `start`: `{text}` is not an RFC 3339 time: {err}")),
        },
    };
    let mut balances = Vec::with_capacity(event.allowances.len());
    for (index, allowance) in event.allowances.iter().enumerate() {
        let Some(&id) = allowance_index.get(allowance.allowance.as_str()) else {
            return invalid(format!(
                "field `allowances[{index}].allowance`: the plan has no allowance `{}`",
                allowance.allowance
            ));
        };
        balances.push(AllowanceBalance {
            bucket: allowance.bucket.unwrap_or(index as u64),
            allowance: id,
            remaining_units: allowance.remaining,
        });
    }
    let usage = UsageEvent {
        service,
        rating_group: event.rating_group,
        destination: event.destination.as_deref(),
        start_utc_seconds: start,
        units: event.units,
    };
    match rate(plan, &usage, &balances) {
        Ok(rated) => Answer::Rated(Box::new(rated_out(plan, id, line, &rated, event.destination.as_deref()))),
        Err(unrated) => Answer::Unrated { id, line, reason: unrated.code(), message: describe(plan, &unrated) },
    }
}

fn rated_out<'p>(
    plan: &'p CompiledPlan,
    id: Option<serde_json::Value>,
    line: u64,
    rated: &RatedEvent,
    number: Option<&str>,
) -> RatedOut<'p> {
    let band = |band: u16| plan.bands[usize::from(band)].as_str();
    let lines = rated
        .lines
        .iter()
        .map(|l| {
            let (kind, band, step, allowance, bucket) = match l.kind {
                LineKind::ConnectFee => ("connect_fee", None, None, None, None),
                LineKind::Usage { band: b, step } => ("usage", Some(band(b)), Some(step), None, None),
                LineKind::Allowance { bucket, allowance, band: b } => (
                    "allowance",
                    Some(band(b)),
                    None,
                    Some(plan.allowances[usize::from(allowance)].name.as_str()),
                    Some(bucket),
                ),
                LineKind::MinimumCharge => ("minimum_charge", None, None, None, None),
                LineKind::MaximumChargeCap => ("maximum_charge_cap", None, None, None, None),
            };
            LineOut {
                kind,
                band,
                step,
                allowance,
                bucket,
                from_unit: l.from_unit,
                units: l.units,
                price: l.price.normalize(),
                per: l.per,
                exact_amount: l.exact_amount.normalize(),
                amount: l.amount,
            }
        })
        .collect();
    let prefix = number.and_then(|n| {
        let skip = usize::from(n.starts_with('+'));
        n.get(skip..skip + usize::from(rated.prefix_len)).map(str::to_owned)
    });
    RatedOut {
        id,
        line,
        plan: &plan.id,
        plan_version: plan.version,
        currency: &plan.currency,
        service: &plan.services[usize::from(rated.service)].name,
        destination: rated.destination.map(|d| plan.destinations[d as usize].as_str()),
        prefix,
        band: band(rated.band),
        rate_line: rated.rate_line,
        units: rated.units,
        charged_units: rated.charged_units,
        allowance_units: rated.allowance_units,
        amount: rated.amount,
        exact_amount: rated.exact_amount.normalize(),
        rounding: RoundingOut {
            mode: plan.rounding.mode.name(),
            decimals: plan.rounding.decimals,
            adjustment: rated.rounding_adjustment.normalize(),
        },
        lines,
    }
}

fn describe(plan: &CompiledPlan, unrated: &Unrated) -> String {
    match unrated {
        Unrated::UnknownService => "the plan has no such service".to_owned(),
        Unrated::BeforeEffective { effective_from_utc_seconds } => format!(
            "usage starts before plan {} v{} takes effect ({})",
            plan.id,
            plan.version,
            jiff::Timestamp::from_second(*effective_from_utc_seconds).map(|t| t.to_string()).unwrap_or_default()
        ),
        Unrated::UnknownDestination => "no destination prefix matches the number".to_owned(),
        Unrated::MalformedDestination { offset } => format!("field `destination`: not a digit at byte {offset}"),
        Unrated::NoRate { band } => format!(
            "the plan has no rate for this service and destination in band `{}`",
            plan.bands[usize::from(*band)]
        ),
        Unrated::UsageTooLarge { limit, unit } => {
            format!("field `units`: more than {limit} {} in one event", unit.name())
        }
        Unrated::AmountOverflow => "the amount does not fit a 96-bit decimal".to_owned(),
        Unrated::StartTooLate { latest_utc_seconds } => format!(
            "field `start`: after {}, the latest start rated",
            jiff::Timestamp::from_second(*latest_utc_seconds).map(|t| t.to_string()).unwrap_or_default()
        ),
        other => format!("{other:?}"),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    Eof,
    Line,
    TooLong,
}

/// Reads one line into `buffer` (without its newline), keeping at most `limit` bytes;
/// the rest of a longer line is read and dropped.
fn read_line_bounded(reader: &mut impl BufRead, buffer: &mut Vec<u8>, limit: usize) -> io::Result<LineRead> {
    buffer.clear();
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        read_any = true;
        let (chunk, consumed, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], at + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long && buffer.len() + chunk.len() <= limit {
            buffer.extend_from_slice(chunk);
        } else {
            too_long = true;
            buffer.clear();
        }
        reader.consume(consumed);
        if done {
            break;
        }
    }
    Ok(match (read_any, too_long) {
        (false, _) => LineRead::Eof,
        (true, true) => LineRead::TooLong,
        (true, false) => LineRead::Line,
    })
}

/// One input line, read field by field so that a refused value is named by its field
/// (serde's own errors give a JSON line and column but no field).
#[derive(Debug, Default)]
struct EventIn {
    id: Option<serde_json::Value>,
    service: Option<String>,
    rating_group: Option<u32>,
    service_id: Option<u32>,
    destination: Option<String>,
    start: Start,
    units: u64,
    allowances: Vec<AllowanceIn>,
}

#[derive(Debug)]
enum Start {
    EpochSeconds(i64),
    Rfc3339(String),
}

impl Default for Start {
    fn default() -> Start {
        Start::EpochSeconds(0)
    }
}

#[derive(Debug, Default)]
struct AllowanceIn {
    allowance: String,
    remaining: u64,
    bucket: Option<u64>,
}

const EVENT_FIELDS: &str = "id, service, rating_group, service_id, destination, start, units, allowances";
const ALLOWANCE_FIELDS: &str = "allowance, remaining, bucket";
const WHOLE_U64: &str = "must be a whole number from 0 to 18446744073709551615";
const WHOLE_U32: &str = "must be a whole number from 0 to 4294967295";
/// Longest string quoted back in an error.
const MAX_QUOTED_CHARS: usize = 40;

/// Parses one input line; the error names the line, then the field and what it holds.
fn parse_event(bytes: &[u8], line: u64) -> Result<EventIn, String> {
    let fault = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed =
        EventSeed { fault: &fault }.deserialize(&mut deserializer).and_then(|event| deserializer.end().map(|()| event));
    parsed.map_err(|err| match fault.into_inner() {
        Some(fault) => format!("line {line}: {}", fault.describe(bytes, err.column())),
        None => {
            // serde's position is within this one input line: report its column only.
            let message = err.to_string();
            let suffix = format!(" at line {} column {}", err.line(), err.column());
            let message = message.strip_suffix(&suffix).unwrap_or(&message);
            format!("line {line}: not JSON at column {}: {message}", err.column())
        }
    })
}

/// Why a value of an input line was refused, kept aside while serde unwinds: its error
/// knows where reading stopped but not which field it was in.
#[derive(Debug)]
struct Fault {
    /// The field's path (`units`, `allowances[0].remaining`); empty for the line itself.
    field: String,
    /// What the field takes, or what is wrong with it.
    problem: String,
    got: Option<Seen>,
}

impl Fault {
    /// `column` is where serde stopped reading: just past the refused value.
    fn describe(&self, bytes: &[u8], column: usize) -> String {
        let got = match &self.got {
            None => String::new(),
            // A number that is neither a u64 nor an i64 reaches us as an f64: quote the
            // text written rather than the float it became.
            Some(Seen::Fraction(approximate)) => {
                format!(", got {}", number_ending_at(bytes, column).unwrap_or(&approximate.to_string()))
            }
            Some(seen) => format!(", got {seen}"),
        };
        match self.field.as_str() {
            "" => format!("{}{got}", self.problem),
            field => format!("field `{field}`: {}{got}", self.problem),
        }
    }
}

/// The JSON number that ends before byte `end` of `bytes`, where serde stopped reading
/// after refusing it: past the number, the whitespace and any `}` and `]` that close
/// the objects and arrays around it (serde reads them before it unwinds).
fn number_ending_at(bytes: &[u8], end: usize) -> Option<&str> {
    let head = bytes.get(..end)?;
    let end = head.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'}' | b']'))? + 1;
    let head = &head[..end];
    let start =
        head.iter().rposition(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).map_or(0, |at| at + 1);
    std::str::from_utf8(&head[start..]).ok().filter(|text| !text.is_empty())
}

/// A JSON value as a field saw it, before checking it against what the field takes.
#[derive(Debug)]
enum Seen {
    Whole(u64),
    Negative(i64),
    /// A number with a fraction, an exponent, or beyond the range of `u64`/`i64`.
    Fraction(f64),
    Text(String),
    Bool(bool),
    Null,
    Array,
    Object,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Whole(value) => write!(f, "{value}"),
            Seen::Negative(value) => write!(f, "{value}"),
            Seen::Fraction(value) => write!(f, "{value}"),
            Seen::Text(text) if text.chars().count() > MAX_QUOTED_CHARS => {
                let head: String = text.chars().take(MAX_QUOTED_CHARS).collect();
                write!(f, "{}…", serde_json::Value::String(head))
            }
            Seen::Text(text) => write!(f, "{}", serde_json::Value::String(text.clone())),
            Seen::Bool(value) => write!(f, "{value}"),
            Seen::Null => f.write_str("null"),
            Seen::Array => f.write_str("an array"),
            Seen::Object => f.write_str("an object"),
        }
    }
}

/// Keeps `fault` aside and returns the error that makes serde unwind.
fn refuse<E: de::Error>(fault: &RefCell<Option<Fault>>, field: &str, problem: &str, got: Option<Seen>) -> E {
    *fault.borrow_mut() = Some(Fault { field: field.to_owned(), problem: problem.to_owned(), got });
    E::custom("refused field")
}

struct SeenVisitor;

impl<'de> Visitor<'de> for SeenVisitor {
    type Value = Seen;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Seen, E> {
        Ok(Seen::Bool(value))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Seen, E> {
        Ok(u64::try_from(value).map_or(Seen::Negative(value), Seen::Whole))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Seen, E> {
        Ok(Seen::Whole(value))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Seen, E> {
        Ok(Seen::Fraction(value))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Seen, E> {
        Ok(Seen::Text(value.to_owned()))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<Seen, E> {
        Ok(Seen::Text(value))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Seen, E> {
        Ok(Seen::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Seen, E> {
        Ok(Seen::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seen, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Seen::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Seen, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Seen::Object)
    }
}

/// Reads any value and hands it to `check`, which keeps it or says what the field takes.
fn read_value<'de, A, T>(
    map: &mut A,
    fault: &RefCell<Option<Fault>>,
    field: &str,
    check: impl FnOnce(Seen) -> Result<T, (&'static str, Seen)>,
) -> Result<T, A::Error>
where
    A: MapAccess<'de>,
{
    let seen = map.next_value_seed(SeenSeed)?;
    check(seen).map_err(|(problem, seen)| refuse(fault, field, problem, Some(seen)))
}

struct SeenSeed;

impl<'de> DeserializeSeed<'de> for SeenSeed {
    type Value = Seen;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Seen, D::Error> {
        deserializer.deserialize_any(SeenVisitor)
    }
}

fn whole_u64(seen: Seen) -> Result<u64, (&'static str, Seen)> {
    match seen {
        Seen::Whole(value) => Ok(value),
        other => Err((WHOLE_U64, other)),
    }
}

/// A whole number up to `u32::MAX`; null is absent.
fn optional_u32(seen: Seen) -> Result<Option<u32>, (&'static str, Seen)> {
    match seen {
        Seen::Null => Ok(None),
        Seen::Whole(value) => u32::try_from(value).map(Some).map_err(|_| (WHOLE_U32, Seen::Whole(value))),
        other => Err((WHOLE_U32, other)),
    }
}

/// A string; null is absent.
fn optional_string(seen: Seen) -> Result<Option<String>, (&'static str, Seen)> {
    match seen {
        Seen::Null => Ok(None),
        Seen::Text(text) => Ok(Some(text)),
        other => Err(("must be a string", other)),
    }
}

fn start(seen: Seen) -> Result<Start, (&'static str, Seen)> {
    let problem = "must be an RFC 3339 time or whole Unix seconds from -9223372036854775808 to 9223372036854775807";
    match seen {
        Seen::Text(text) => Ok(Start::Rfc3339(text)),
        Seen::Negative(seconds) => Ok(Start::EpochSeconds(seconds)),
        Seen::Whole(seconds) => {
            i64::try_from(seconds).map(Start::EpochSeconds).map_err(|_| (problem, Seen::Whole(seconds)))
        }
        other => Err((problem, other)),
    }
}

/// Marks `field` read, refusing a second value for it.
fn first_time<E: de::Error>(
    seen: &mut Vec<&'static str>,
    fault: &RefCell<Option<Fault>>,
    field: &'static str,
    path: &str,
) -> Result<(), E> {
    if seen.contains(&field) {
        return Err(refuse(fault, path, "given twice", None));
    }
    seen.push(field);
    Ok(())
}

/// `Visitor` methods refusing values of the listed kinds: each keeps a fault (through
/// the visitor's `wrong`) saying what the field takes and what it got.
macro_rules! refuse_kinds {
    ($($kind:ident)*) => { $(refuse_kind!($kind);)* };
}

macro_rules! refuse_kind {
    (bool) => {
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
            Err(self.wrong(Seen::Bool(value)))
        }
    };
    (number) => {
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Err(self.wrong(u64::try_from(value).map_or(Seen::Negative(value), Seen::Whole)))
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
            Err(self.wrong(Seen::Whole(value)))
        }
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
            Err(self.wrong(Seen::Fraction(value)))
        }
    };
    (string) => {
        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Err(self.wrong(Seen::Text(value.to_owned())))
        }
    };
    (null) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.wrong(Seen::Null))
        }
    };
    (array) => {
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong(Seen::Array))
        }
    };
    (object) => {
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong(Seen::Object))
        }
    };
}

struct EventSeed<'f> {
    fault: &'f RefCell<Option<Fault>>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = EventIn;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<EventIn, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = EventIn;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a usage event (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventIn, A::Error> {
        let fault = self.fault;
        let mut event = EventIn::default();
        let mut read: Vec<&'static str> = Vec::with_capacity(8);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "id" => {
                    first_time::<A::Error>(&mut read, fault, "id", "id")?;
                    event.id = map.next_value::<Option<serde_json::Value>>()?;
                }
                "service" => {
                    first_time::<A::Error>(&mut read, fault, "service", "service")?;
                    event.service = read_value(&mut map, fault, "service", optional_string)?;
                }
                "rating_group" => {
                    first_time::<A::Error>(&mut read, fault, "rating_group", "rating_group")?;
                    event.rating_group = read_value(&mut map, fault, "rating_group", optional_u32)?;
                }
                "service_id" => {
                    first_time::<A::Error>(&mut read, fault, "service_id", "service_id")?;
                    event.service_id = read_value(&mut map, fault, "service_id", optional_u32)?;
                }
                "destination" => {
                    first_time::<A::Error>(&mut read, fault, "destination", "destination")?;
                    event.destination = read_value(&mut map, fault, "destination", optional_string)?;
                }
                "start" => {
                    first_time::<A::Error>(&mut read, fault, "start", "start")?;
                    event.start = read_value(&mut map, fault, "start", start)?;
                }
                "units" => {
                    first_time::<A::Error>(&mut read, fault, "units", "units")?;
                    event.units = read_value(&mut map, fault, "units", whole_u64)?;
                }
                "allowances" => {
                    first_time::<A::Error>(&mut read, fault, "allowances", "allowances")?;
                    event.allowances = map.next_value_seed(AllowancesSeed { fault })?;
                }
                other => {
                    let problem = format!("unknown field; the fields are {EVENT_FIELDS}");
                    return Err(refuse(fault, other, &problem, None));
                }
            }
        }
        for required in ["start", "units"] {
            if !read.contains(&required) {
                return Err(refuse(fault, required, "missing", None));
            }
        }
        Ok(event)
    }

    refuse_kinds!(bool number string null array);
}

impl EventSeed<'_> {
    fn wrong<E: de::Error>(&self, seen: Seen) -> E {
        refuse(self.fault, "", "must be a JSON object", Some(seen))
    }
}

struct AllowancesSeed<'f> {
    fault: &'f RefCell<Option<Fault>>,
}

impl<'de> DeserializeSeed<'de> for AllowancesSeed<'_> {
    type Value = Vec<AllowanceIn>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<AllowanceIn>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AllowancesSeed<'_> {
    type Value = Vec<AllowanceIn>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of allowance balances")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<AllowanceIn>, A::Error> {
        let mut allowances = Vec::new();
        loop {
            let index = allowances.len();
            if index == MAX_ALLOWANCES_PER_EVENT {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    let problem = format!("more than {MAX_ALLOWANCES_PER_EVENT}");
                    return Err(refuse(self.fault, "allowances", &problem, None));
                }
                return Ok(allowances);
            }
            match seq.next_element_seed(AllowanceSeed { fault: self.fault, index })? {
                Some(allowance) => allowances.push(allowance),
                None => return Ok(allowances),
            }
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<AllowanceIn>, E> {
        Ok(Vec::new())
    }

    refuse_kinds!(bool number string object);
}

impl AllowancesSeed<'_> {
    fn wrong<E: de::Error>(&self, seen: Seen) -> E {
        refuse(self.fault, "allowances", "must be an array of allowance balances", Some(seen))
    }
}

struct AllowanceSeed<'f> {
    fault: &'f RefCell<Option<Fault>>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for AllowanceSeed<'_> {
    type Value = AllowanceIn;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<AllowanceIn, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AllowanceSeed<'_> {
    type Value = AllowanceIn;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an allowance balance (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AllowanceIn, A::Error> {
        let (fault, index) = (self.fault, self.index);
        let path = |field: &str| format!("allowances[{index}].{field}");
        let mut allowance = AllowanceIn::default();
        let mut read: Vec<&'static str> = Vec::with_capacity(3);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "allowance" => {
                    first_time::<A::Error>(&mut read, fault, "allowance", &path("allowance"))?;
                    allowance.allowance = read_value(&mut map, fault, &path("allowance"), |seen| match seen {
                        Seen::Text(text) => Ok(text),
                        other => Err(("must be the name of one of the plan's allowances", other)),
                    })?;
                }
                "remaining" => {
                    first_time::<A::Error>(&mut read, fault, "remaining", &path("remaining"))?;
                    allowance.remaining = read_value(&mut map, fault, &path("remaining"), whole_u64)?;
                }
                "bucket" => {
                    first_time::<A::Error>(&mut read, fault, "bucket", &path("bucket"))?;
                    allowance.bucket = read_value(&mut map, fault, &path("bucket"), |seen| match seen {
                        Seen::Null => Ok(None),
                        other => whole_u64(other).map(Some),
                    })?;
                }
                other => {
                    let problem = format!("unknown field; the fields are {ALLOWANCE_FIELDS}");
                    return Err(refuse(fault, &path(other), &problem, None));
                }
            }
        }
        for required in ["allowance", "remaining"] {
            if !read.contains(&required) {
                return Err(refuse(fault, &path(required), "missing", None));
            }
        }
        Ok(allowance)
    }

    refuse_kinds!(bool number string null array);
}

impl AllowanceSeed<'_> {
    fn wrong<E: de::Error>(&self, seen: Seen) -> E {
        let field = format!("allowances[{}]", self.index);
        refuse(self.fault, &field, "must be an allowance balance (a JSON object)", Some(seen))
    }
}

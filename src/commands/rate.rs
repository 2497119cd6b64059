//! `tollgate rate --plan FILE`: usage events as JSON lines on stdin, rated results as
//! JSON lines on stdout, one output line per input line, in order. A line that cannot
//! be read or priced gets an answer saying why; it never stops the run.

use std::collections::HashMap;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollgate_tariffs::{rate, store, AllowanceBalance, CompiledPlan, LineKind, RatedEvent, Unrated, UsageEvent};

/// Longest input line accepted; a longer one is answered `invalid` and skipped.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most allowance balances one event may carry.
const MAX_ALLOWANCES_PER_EVENT: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    id: Option<serde_json::Value>,
    service: Option<String>,
    rating_group: Option<u32>,
    service_id: Option<u32>,
    destination: Option<String>,
    start: Start,
    units: u64,
    #[serde(default)]
    allowances: Vec<AllowanceIn>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Start {
    EpochSeconds(i64),
    Rfc3339(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowanceIn {
    allowance: String,
    remaining: u64,
    #[serde(default)]
    bucket: Option<u64>,
}

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
            Answer::Invalid { id: None, line: line_number, error: format!("line longer than {MAX_LINE_BYTES} bytes") }
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
    let event: EventIn = match serde_json::from_slice(bytes) {
        Ok(event) => event,
        Err(err) => return Answer::Invalid { id: None, line, error: err.to_string() },
    };
    let id = event.id.clone();
    let invalid = |error: String| Answer::Invalid { id: id.clone(), line, error };
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
    if event.allowances.len() > MAX_ALLOWANCES_PER_EVENT {
        return invalid(format!("field `allowances`: more than {MAX_ALLOWANCES_PER_EVENT}"));
    }
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

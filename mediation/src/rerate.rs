//! Rerating: re-price events already rated, after a tariff fix.
//!
//! The rated events are the JSON-lines outputs of mediation ([`RatedLine`]). A run selects
//! those whose usage started in `[from, to)` (and, optionally, of one account) and sends
//! each to the engine as an [`Operation::Rerate`]: the engine prices the record again with
//! the plan version now in force for its start, refunds the old charge and takes the new
//! one in one journaled step, and remembers the new charge as the record's charge. A
//! record already at its current price is left alone, so a second run, or a run resumed
//! after a crash, changes nothing that the first one changed.
//!
//! Every selected record gets one line in the run's audit file
//! (`rerate-<run>.jsonl`: the amount first rated, the amount charged before this run, the
//! new amount and the difference) and the run a summary (`rerate-<run>.summary.json`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollgate_engine::{Answer, Body, Engine, Operation, Outcome, Request, ServiceRef, SmolStr, Target, Usage};

use crate::pipeline::{write_atomic, write_json_line, RatedLine};
use crate::MediationError;

/// Longest line read from a rated file.
const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct RerateConfig {
    /// Where the `*.rated.jsonl` files are.
    pub rated_dir: PathBuf,
    /// Where the audit files go.
    pub audit_dir: PathBuf,
    /// Usage that started at or after this (Unix seconds)…
    pub from_at: i64,
    /// …and before this.
    pub to_at: i64,
    /// Only this account's events.
    pub account: Option<u64>,
    /// Records per engine message.
    pub batch_records: usize,
    /// fsync the audit file and summary.
    pub sync: bool,
}

/// What a run did. `selected = rerated + unchanged + refused`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerateSummary {
    pub run: String,
    #[serde(rename = "from")]
    pub from_at: i64,
    #[serde(rename = "to")]
    pub to_at: i64,
    pub account: Option<u64>,
    pub files: u64,
    pub selected: u64,
    /// Records whose charge changed.
    pub rerated: u64,
    /// Records already at their current price.
    pub unchanged: u64,
    /// Records the engine would not rerate; nothing changed for them.
    pub refused: u64,
    pub refused_by_reason: BTreeMap<String, u64>,
    /// Lines of rated files that could not be read (named in the audit file).
    pub unreadable_lines: u64,
    /// Of the rerated records: what they were charged before, per currency…
    pub previous_by_currency: BTreeMap<String, Decimal>,
    /// …and what they are charged now.
    pub new_by_currency: BTreeMap<String, Decimal>,
    pub audit_file: PathBuf,
}

impl RerateSummary {
    pub fn balances(&self) -> bool {
        self.selected == self.rerated + self.unchanged + self.refused
    }
}

/// One line of the audit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLine {
    pub run: String,
    /// `rerated`, `unchanged`, `refused` or `unreadable`.
    pub outcome: String,
    /// Why it was refused or unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub rated_file: String,
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_utc_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// As first rated (from the rated file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_amount: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_plan_version: Option<u32>,
    /// Charged before this run (the engine's record of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_amount: Option<Decimal>,
    /// Charged after this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowance_units: Option<u64>,
}

impl AuditLine {
    fn new(run: &str, outcome: &str, rated_file: &str, line: u64) -> AuditLine {
        AuditLine {
            run: run.to_owned(),
            outcome: outcome.to_owned(),
            reason: None,
            rated_file: rated_file.to_owned(),
            line,
            record_id: None,
            account: None,
            start_utc_seconds: None,
            currency: None,
            first_amount: None,
            first_plan_version: None,
            previous_amount: None,
            amount: None,
            delta: None,
            plan: None,
            plan_version: None,
            band: None,
            units: None,
            allowance_units: None,
        }
    }
}

/// A selected event waiting for its engine answer.
struct Selected {
    file: String,
    line: u64,
    event: RatedLine<'static>,
}

/// Rerates the selected events through `engine`; `progress` gets the records done so far.
pub fn rerate(
    engine: &Engine,
    config: &RerateConfig,
    run: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<RerateSummary, MediationError> {
    if config.from_at >= config.to_at {
        return Err(MediationError::Rerate(format!(
            "`from` ({}) must be before `to` ({})",
            config.from_at, config.to_at
        )));
    }
    std::fs::create_dir_all(&config.audit_dir).map_err(MediationError::io(&config.audit_dir))?;
    let audit_path = config.audit_dir.join(format!("rerate-{run}.jsonl"));
    let summary_path = config.audit_dir.join(format!("rerate-{run}.summary.json"));
    if audit_path.exists() {
        return Err(MediationError::Rerate(format!("{}: a run with this id exists", audit_path.display())));
    }
    let audit_file = File::create(&audit_path).map_err(MediationError::io(&audit_path))?;
    let mut audit = Audit { out: BufWriter::with_capacity(1 << 20, audit_file), path: audit_path.clone() };
    let mut summary = RerateSummary {
        run: run.to_owned(),
        from_at: config.from_at,
        to_at: config.to_at,
        account: config.account,
        audit_file: audit_path,
        ..RerateSummary::default()
    };
    let batch_size = config.batch_records.max(1);
    let mut batch: Vec<Selected> = Vec::with_capacity(batch_size);
    for path in rated_files(&config.rated_dir)? {
        summary.files += 1;
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut reader = BufReader::with_capacity(1 << 20, File::open(&path).map_err(MediationError::io(&path))?);
        let mut buffer = Vec::new();
        let mut number = 0u64;
        loop {
            number += 1;
            let line = match read_line(&mut reader, &mut buffer).map_err(MediationError::io(&path))? {
                Line::End => break,
                Line::TooLong => Err(format!("longer than {MAX_LINE_BYTES} bytes")),
                Line::Text(text) => serde_json::from_slice::<RatedLine<'_>>(text).map_err(|err| err.to_string()),
            };
            let event = match line {
                Ok(event) => event,
                Err(message) => {
                    summary.unreadable_lines += 1;
                    let mut line = AuditLine::new(run, "unreadable", &name, number);
                    line.reason = Some(message);
                    audit.write(&line)?;
                    continue;
                }
            };
            let in_window = config.from_at <= event.start_utc_seconds && event.start_utc_seconds < config.to_at;
            if !in_window || config.account.is_some_and(|account| account != event.account) {
                continue;
            }
            batch.push(Selected { file: name.clone(), line: number, event: owned(event) });
            if batch.len() >= batch_size {
                send(engine, run, &mut batch, &mut audit, &mut summary)?;
                progress(summary.selected);
            }
        }
    }
    send(engine, run, &mut batch, &mut audit, &mut summary)?;
    progress(summary.selected);
    audit.out.flush().map_err(MediationError::io(&audit.path))?;
    if config.sync {
        audit.out.get_ref().sync_data().map_err(MediationError::io(&audit.path))?;
    }
    debug_assert!(summary.balances());
    write_atomic(&summary_path, &serde_json::to_vec_pretty(&summary).unwrap_or_default(), config.sync)?;
    Ok(summary)
}

/// The `*.rated.jsonl` files of `dir`, by name.
fn rated_files(dir: &Path) -> Result<Vec<PathBuf>, MediationError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(MediationError::io(dir))? {
        let path = entry.map_err(MediationError::io(dir))?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".rated.jsonl")) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

enum Line<'b> {
    End,
    TooLong,
    Text(&'b [u8]),
}

/// Reads one line into `buffer` without ever holding more than [`MAX_LINE_BYTES`] of it;
/// the rest of a longer line is skipped.
fn read_line<'b, R: BufRead>(reader: &mut R, buffer: &'b mut Vec<u8>) -> std::io::Result<Line<'b>> {
    buffer.clear();
    let read = reader.by_ref().take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', buffer)?;
    if read == 0 {
        return Ok(Line::End);
    }
    if buffer.last() == Some(&b'\n') {
        buffer.pop();
        return Ok(Line::Text(buffer));
    }
    if buffer.len() <= MAX_LINE_BYTES {
        return Ok(Line::Text(buffer)); // the last line, without a line break
    }
    loop {
        let (skip, done) = {
            let chunk = reader.fill_buf()?;
            match chunk.iter().position(|b| *b == b'\n') {
                Some(at) => (at + 1, true),
                None => (chunk.len(), chunk.is_empty()),
            }
        };
        reader.consume(skip);
        if done {
            return Ok(Line::TooLong);
        }
    }
}

fn owned(line: RatedLine<'_>) -> RatedLine<'static> {
    let own = |text: std::borrow::Cow<'_, str>| std::borrow::Cow::Owned(text.into_owned());
    RatedLine {
        source: own(line.source),
        record_id: own(line.record_id),
        record_identity: line.record_identity.map(own),
        service: own(line.service),
        destination: line.destination.map(own),
        called: line.called.map(own),
        band: own(line.band),
        currency: own(line.currency),
        plan: own(line.plan),
        ..line
    }
}

/// Sends a batch to the engine and writes its audit lines.
fn send(
    engine: &Engine,
    run: &str,
    batch: &mut Vec<Selected>,
    audit: &mut Audit,
    summary: &mut RerateSummary,
) -> Result<(), MediationError> {
    if batch.is_empty() {
        return Ok(());
    }
    let requests = batch
        .iter()
        .map(|selected| {
            let event = &selected.event;
            Request {
                key: None,
                target: Target::Subscription(event.subscription),
                operation: Operation::Rerate {
                    // The text the record's key was made from: its identity, or for a
                    // line written before identities were kept, its id.
                    record: event.record_identity.as_deref().unwrap_or(&event.record_id).to_owned(),
                    usage: Usage {
                        service: ServiceRef::Name(SmolStr::new(&event.service)),
                        rating_group: event.rating_group,
                        destination: event.called.as_deref().map(SmolStr::new),
                        start_utc_seconds: event.start_utc_seconds,
                        units: event.recorded_units,
                    },
                },
            }
        })
        .collect();
    let answers = engine.execute_batch(requests)?;
    for (selected, answer) in batch.drain(..).zip(answers) {
        summary.selected += 1;
        let line = judge(run, &selected, answer, summary);
        audit.write(&line)?;
    }
    Ok(())
}

/// Counts one engine answer and makes its audit line.
fn judge(run: &str, selected: &Selected, answer: Answer, summary: &mut RerateSummary) -> AuditLine {
    let event = &selected.event;
    let mut line = AuditLine::new(run, "refused", &selected.file, selected.line);
    line.record_id = Some(event.record_id.to_string());
    line.account = Some(event.account);
    line.start_utc_seconds = Some(event.start_utc_seconds);
    line.first_amount = Some(event.amount);
    line.first_plan_version = Some(event.plan_version);
    match (answer.outcome, answer.body) {
        (Outcome::Success, Body::Rerated(rerated)) => {
            let charged = &rerated.charged;
            let currency = charged.currency.to_string();
            if rerated.changed {
                summary.rerated += 1;
                *summary.previous_by_currency.entry(currency.clone()).or_default() += rerated.previous_amount;
                *summary.new_by_currency.entry(currency.clone()).or_default() += charged.amount;
            } else {
                summary.unchanged += 1;
            }
            line.outcome = if rerated.changed { "rerated" } else { "unchanged" }.to_owned();
            line.currency = Some(currency);
            line.previous_amount = Some(rerated.previous_amount);
            line.amount = Some(charged.amount);
            line.delta = Some(charged.amount - rerated.previous_amount);
            line.plan = Some(charged.plan.to_string());
            line.plan_version = Some(charged.plan_version);
            line.band = Some(charged.band.to_string());
            line.units = Some(charged.charged_units);
            line.allowance_units = Some(charged.allowance_units);
        }
        (outcome, _) => {
            let reason = match outcome {
                Outcome::UnknownRecord => "unknown_record".to_owned(),
                Outcome::CreditLimitReached => "credit_limit_reached".to_owned(),
                Outcome::UnknownSubscriber | Outcome::UnknownAccount => "unknown_subscriber".to_owned(),
                Outcome::RatingFailed(code) => code,
                Outcome::Invalid(why) => format!("invalid: {why}"),
                other => format!("{other:?}"),
            };
            summary.refused += 1;
            *summary.refused_by_reason.entry(reason.split(':').next().unwrap_or("").to_owned()).or_default() += 1;
            line.reason = Some(reason);
        }
    }
    line
}

struct Audit {
    out: BufWriter<File>,
    path: PathBuf,
}

impl Audit {
    fn write(&mut self, line: &AuditLine) -> Result<(), MediationError> {
        write_json_line(&mut self.out, &self.path, line)
    }
}

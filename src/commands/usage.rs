//! `tollgate usage`: an account's itemised usage and every other change of its money or
//! allowances in a period, from the rated-event ledger (`tollgate_engine::ledger`), as
//! CSV or JSON lines. Works whether or not the server runs: a running server's ledger
//! thread keeps the ledger a fraction of a second behind its journal; on a stopped data
//! directory the command first builds the ledger from the journal itself.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use tollgate_engine::ledger::{self, LedgerEntry};

use super::engine_setup::EngineArgs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Csv,
    Json,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct UsageArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// The account.
    #[arg(long)]
    account: u64,
    /// Start of the period (posting time, inclusive): an RFC 3339 time or a date (UTC).
    #[arg(long)]
    from: String,
    /// End of the period (exclusive): an RFC 3339 time or a date (UTC).
    #[arg(long)]
    to: String,
    /// `csv` (a header line, then one line per entry) or `json` (one object per line).
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Only usage (rated events), not top-ups, refunds, adjustments and grants.
    #[arg(long)]
    usage_only: bool,
}

/// An RFC 3339 time (as `account` reads one), or a date meaning its start (UTC), in Unix
/// seconds.
fn parse_time(text: &str, flag: &str) -> anyhow::Result<i64> {
    let is_date = text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
    match format!("{text}T00:00:00Z").parse::<jiff::Timestamp>() {
        Ok(midnight) if is_date => Ok(midnight.as_second()),
        _ => super::account::parse_time(text, flag)
            .map_err(|err| err.context(format!("{flag} takes an RFC 3339 time or a date YYYY-MM-DD"))),
    }
}

fn time_text(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map(|t| t.to_string()).unwrap_or_else(|_| seconds.to_string())
}

const COLUMNS: [&str; 24] = [
    "posted_at",
    "kind",
    "account",
    "subscription",
    "identity",
    "service",
    "rating_group",
    "called",
    "prefix",
    "destination",
    "band",
    "started_at",
    "units",
    "charged_units",
    "allowance_units",
    "draws",
    "amount",
    "currency",
    "plan",
    "plan_version",
    "rate_line",
    "key",
    "note",
    "lsn",
];

fn csv_row(e: &LedgerEntry) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let draws: Vec<String> = e.draws.iter().map(|(bucket, units)| format!("{bucket}:{units}")).collect();
    vec![
        time_text(e.posted_at),
        e.kind.name().to_owned(),
        e.account.to_string(),
        num(e.subscription),
        opt(&e.identity),
        opt(&e.service),
        num(e.rating_group.map(u64::from)),
        opt(&e.called),
        opt(&e.prefix),
        opt(&e.destination),
        opt(&e.band),
        e.started_at.map(time_text).unwrap_or_default(),
        e.units.to_string(),
        e.charged_units.to_string(),
        e.allowance_units.to_string(),
        draws.join(" "),
        e.amount.to_string(),
        opt(&e.currency),
        opt(&e.plan),
        num(e.plan_version.map(u64::from)),
        num(e.rate_line.map(u64::from)),
        opt(&e.key),
        opt(&e.note),
        e.lsn.to_string(),
    ]
}

/// Brings the ledger of a stopped data directory up to its journal; a running server holds
/// the ledger's lock and keeps it up itself.
pub(crate) fn catch_up_ledger(dir: &std::path::Path, shards: usize) -> anyhow::Result<()> {
    match ledger::LedgerBuilder::open(Arc::new(tollgate_engine::fs::RealFs::new()), dir, shards, None) {
        Ok(mut builder) => {
            builder.catch_up(None).with_context(|| format!("building the ledger of {}", dir.display()))?;
        }
        Err(tollgate_engine::EngineError::Locked { .. }) => {}
        Err(err) => return Err(err).with_context(|| format!("opening the ledger of {}", dir.display())),
    }
    Ok(())
}

pub(crate) fn run(args: &UsageArgs) -> anyhow::Result<ExitCode> {
    let (from, until) = (parse_time(&args.from, "--from")?, parse_time(&args.to, "--to")?);
    if until <= from {
        bail!("--to must be after --from");
    }
    let dir = &args.engine.data_dir;
    let shards = args.engine.shard_count()?;
    catch_up_ledger(dir, shards)?;
    let entries = ledger::account_entries(dir, shards, args.account, from, until)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut csv = matches!(args.format, Format::Csv).then(|| csv::Writer::from_writer(std::io::stdout()));
    if let Some(writer) = csv.as_mut() {
        writer.write_record(COLUMNS)?;
    }
    let mut count = 0u64;
    for entry in entries {
        let entry = entry?;
        if args.usage_only && entry.kind != ledger::EntryKind::Usage {
            continue;
        }
        count += 1;
        match csv.as_mut() {
            Some(writer) => writer.write_record(csv_row(&entry))?,
            None => {
                let mut line = serde_json::to_value(&entry)?;
                if let Some(object) = line.as_object_mut() {
                    object.insert("posted_at".into(), time_text(entry.posted_at).into());
                    if let Some(started) = entry.started_at {
                        object.insert("started_at".into(), time_text(started).into());
                    }
                }
                writeln!(out, "{line}")?;
            }
        }
    }
    if let Some(writer) = csv.as_mut() {
        writer.flush()?;
    }
    out.flush()?;
    Ok(if count == 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

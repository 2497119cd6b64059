//! `tollgate rerate`: re-price events already rated, after a tariff fix (see
//! `tollgate_mediation::rerate`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use tollgate_mediation::{RerateConfig, RerateSummary};

use super::engine_setup::EngineArgs;

#[derive(Debug, Args)]
pub(crate) struct RerateArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Events whose usage started at or after this (RFC 3339, or Unix seconds)…
    #[arg(long = "from", value_name = "FROM", value_parser = parse_time)]
    from_at: i64,
    /// …and before this.
    #[arg(long = "to", value_name = "TO", value_parser = parse_time)]
    to_at: i64,
    /// Only this account's events.
    #[arg(long)]
    account: Option<u64>,
    /// Where the rated events are (default DATA_DIR/mediation/out).
    #[arg(long)]
    rated: Option<PathBuf>,
    /// Records per engine message.
    #[arg(long, default_value_t = 16_384)]
    batch: usize,
}

fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|err| format!("`{text}`: not RFC 3339 (2026-03-01T00:00:00Z) nor Unix seconds: {err}"))
}

pub(crate) fn run(args: &RerateArgs) -> anyhow::Result<ExitCode> {
    if args.from_at >= args.to_at {
        bail!("--from must be before --to");
    }
    let engine = args.engine.open()?;
    let base = args.engine.data_dir.join("mediation");
    let config = RerateConfig {
        rated_dir: args.rated.clone().unwrap_or_else(|| base.join("out")),
        audit_dir: base.join("rerate"),
        from_at: args.from_at,
        to_at: args.to_at,
        account: args.account,
        batch_records: args.batch.max(1),
        sync: true,
    };
    let now = jiff::Timestamp::now();
    let run = format!("{}-{}", now.strftime("%Y%m%dT%H%M%SZ"), std::process::id());
    let summary = tollgate_mediation::rerate(&engine, &config, &run, &mut |_| {})
        .with_context(|| format!("rerating events in {}", config.rated_dir.display()))?;
    engine.shutdown().context("stopping the engine")?;
    print_summary(&summary);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(summary: &RerateSummary) {
    let money = |amounts: &std::collections::BTreeMap<String, rust_decimal::Decimal>| {
        let parts: Vec<String> = amounts.iter().map(|(currency, amount)| format!("{amount} {currency}")).collect();
        if parts.is_empty() {
            "0".to_owned()
        } else {
            parts.join(", ")
        }
    };
    println!(
        "rerate {}: {} events selected from {} files: {} rerated (was {}, now {}), {} unchanged, {} refused{}",
        summary.run,
        summary.selected,
        summary.files,
        summary.rerated,
        money(&summary.previous_by_currency),
        money(&summary.new_by_currency),
        summary.unchanged,
        summary.refused,
        if summary.refused_by_reason.is_empty() { String::new() } else { format!(" {:?}", summary.refused_by_reason) },
    );
    if summary.unreadable_lines > 0 {
        println!("{} lines of rated files could not be read", summary.unreadable_lines);
    }
    println!("audit trail: {}", summary.audit_file.display());
}

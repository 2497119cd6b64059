//! `tollgate reshard --to N`: changes the data directory's shard count, the one way it
//! changes (see `tollgate_engine::reshard`). Run again after an interruption to finish.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::engine_setup::EngineArgs;

#[derive(Debug, Clone, Args)]
pub(crate) struct ReshardArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// The new number of shards.
    #[arg(long)]
    to: usize,
}

pub(crate) fn run(args: &ReshardArgs) -> anyhow::Result<ExitCode> {
    let now = jiff::Timestamp::now().as_second();
    let dir = &args.engine.data_dir;
    let report = tollgate_engine::reshard::reshard(dir, args.to, args.engine.dedupe_window, now)
        .with_context(|| format!("resharding {}", dir.display()))?;
    let summary = serde_json::json!({
        "from": report.from,
        "to": report.to,
        "accounts": report.accounts,
        "subscriptions": report.subscriptions,
        "archived": report.archived.display().to_string(),
        "resumed": report.resumed,
    });
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

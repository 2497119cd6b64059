//! `tollgate archive`: the archived journal segments (the audit trail) and their
//! retention (see `tollgate_engine::retention`). Works on a data directory whether or not
//! the server runs: it only removes closed segments past their retention.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Subcommand;

use super::engine_setup::EngineArgs;

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum ArchiveCommand {
    /// Remove archived segments every consumer has read, older than the retention
    /// (`--archive-retention-days`).
    Prune {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the registered consumers and their watermarks (last LSN read, per shard).
    Consumers,
    /// Record that consumer NAME has read shard SHARD's journal up to LSN.
    Mark {
        #[arg(long)]
        name: String,
        #[arg(long)]
        shard: u32,
        #[arg(long)]
        lsn: u64,
    },
}

pub(crate) fn run(args: &EngineArgs, command: ArchiveCommand) -> anyhow::Result<ExitCode> {
    let dir = &args.data_dir;
    let output = match command {
        ArchiveCommand::Prune { dry_run } => {
            let pruned = tollgate_engine::retention::prune(dir, args.archive_retention(), SystemTime::now(), dry_run)
                .with_context(|| format!("pruning the archive of {}", dir.display()))?;
            serde_json::json!({"dry_run": dry_run, "pruned": pruned})
        }
        ArchiveCommand::Consumers => serde_json::to_value(tollgate_engine::retention::watermarks(dir)?)?,
        ArchiveCommand::Mark { name, shard, lsn } => {
            tollgate_engine::retention::set_watermark(dir, &name, shard, lsn)?;
            serde_json::json!({"consumer": name, "shard": shard, "lsn": lsn})
        }
    };
    println!("{output}");
    Ok(ExitCode::SUCCESS)
}

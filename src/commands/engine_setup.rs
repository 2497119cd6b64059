//! Opening the charging engine from command-line settings, with embedded defaults.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tollgate_engine::{Engine, EngineConfig, FsyncPolicy, Plans, SystemClock};
use tollgate_tariffs::compile_str;

/// The example plans, built into the binary so `serve` and `demo` run anywhere.
const EMBEDDED_PLANS: [(&str, &str); 2] = [
    ("prepaid-mobile.toml", include_str!("../../tariffs/examples/prepaid-mobile.toml")),
    ("postpaid-business.toml", include_str!("../../tariffs/examples/postpaid-business.toml")),
];

/// Shards of a new data directory when `--shards` is not given.
pub(crate) const DEFAULT_SHARDS: usize = 2;

#[derive(Debug, Clone, Args)]
pub(crate) struct EngineArgs {
    /// Data directory (journal, snapshots, lock).
    #[arg(long, global = true, default_value = "tollgate-data")]
    pub data_dir: PathBuf,
    /// Plan files (source .toml or compiled); default: the plans in DATA_DIR/plans, or the
    /// built-in example plans when there are none.
    #[arg(long = "plan-file", global = true)]
    pub plans: Vec<PathBuf>,
    /// Shards (one worker thread each). Default: the count the data directory records
    /// (its LAYOUT file), or 2 for a new one. Another count than recorded is refused; change
    /// it with `tollgate reshard --to N`.
    #[arg(long, global = true)]
    pub shards: Option<usize>,
    /// Journal fsync policy: `batch` (every group commit), `interval:MILLIS` or `never`.
    #[arg(long, global = true, default_value = "batch", value_parser = parse_fsync)]
    pub fsync: FsyncPolicy,
    /// Journal records per shard between snapshots.
    #[arg(long, global = true, default_value_t = 1_000_000)]
    pub snapshot_every: u64,
    /// Idempotency keys each shard remembers (the exactly-once window).
    #[arg(long, global = true, default_value_t = 1 << 20)]
    pub dedupe_window: usize,
    /// Seconds a session is remembered after its reservations expired with nothing more
    /// heard: usage reported on it meanwhile is charged once; after it, the session is
    /// unknown (Diameter 5002, Nchf 404).
    #[arg(long, global = true, default_value_t = 3600)]
    pub session_tombstone_seconds: u32,
    /// Days an archived journal segment is kept once every registered consumer has read
    /// it (`tollgate archive`); pruned after each snapshot.
    #[arg(long, global = true, default_value_t = 90)]
    pub archive_retention_days: u32,
    /// Run without the rated-event ledger: no rated-event detail journaled and no ledger
    /// built. Only to measure what the ledger costs; billing and `tollgate usage` need it.
    #[arg(long, global = true)]
    pub no_ledger: bool,
}

fn parse_fsync(text: &str) -> Result<FsyncPolicy, String> {
    match text {
        "batch" => Ok(FsyncPolicy::EveryBatch),
        "never" => Ok(FsyncPolicy::Never),
        other => match other.strip_prefix("interval:").and_then(|ms| ms.parse::<u64>().ok()) {
            Some(ms) => Ok(FsyncPolicy::Interval(Duration::from_millis(ms))),
            None => Err(format!("`{other}`: use batch, interval:MILLIS or never")),
        },
    }
}

impl EngineArgs {
    pub(crate) fn with_data_dir(data_dir: &Path) -> EngineArgs {
        EngineArgs {
            data_dir: data_dir.to_owned(),
            plans: Vec::new(),
            shards: None,
            fsync: FsyncPolicy::EveryBatch,
            snapshot_every: 1_000_000,
            dedupe_window: 1 << 20,
            session_tombstone_seconds: 3600,
            archive_retention_days: 90,
            no_ledger: false,
        }
    }

    pub(crate) fn load_plans(&self) -> anyhow::Result<Plans> {
        let mut plans = Plans::new();
        let mut files = self.plans.clone();
        if files.is_empty() {
            let dir = self.data_dir.join("plans");
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries {
                    let path = entry?.path();
                    if path.extension().is_some_and(|e| e == "toml" || e == "tgplan") {
                        files.push(path);
                    }
                }
            }
            files.sort();
        }
        for file in &files {
            plans.load(file).with_context(|| format!("loading plan {}", file.display()))?;
        }
        if plans.is_empty() {
            for (name, text) in EMBEDDED_PLANS {
                plans.insert(compile_str(text, name, None)?)?;
            }
        }
        Ok(plans)
    }

    pub(crate) fn config(&self) -> anyhow::Result<EngineConfig> {
        let shards = self.shard_count()?;
        if !(1..=tollgate_engine::MAX_DEDUPE_WINDOW).contains(&self.dedupe_window) {
            bail!("--dedupe-window must be between 1 and {}", tollgate_engine::MAX_DEDUPE_WINDOW);
        }
        let mut config = EngineConfig::new(&self.data_dir);
        config.shards = shards;
        config.fsync = self.fsync;
        config.snapshot_every_records = self.snapshot_every;
        config.charging.dedupe_window = self.dedupe_window;
        config.charging.session_tombstone_seconds = self.session_tombstone_seconds;
        config.archive_retention = self.archive_retention();
        config.ledger = !self.no_ledger;
        config.charging.itemise = !self.no_ledger;
        Ok(config)
    }

    pub(crate) fn archive_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.archive_retention_days) * 86_400)
    }

    /// `--shards`, else the data directory's recorded count, else 2.
    pub(crate) fn shard_count(&self) -> anyhow::Result<usize> {
        let recorded = tollgate_engine::layout::read(&self.data_dir)
            .with_context(|| format!("reading the layout of {}", self.data_dir.display()))?;
        let shards = self.shards.or(recorded.map(|layout| layout.shards)).unwrap_or(DEFAULT_SHARDS);
        if !(1..=tollgate_engine::layout::MAX_SHARDS).contains(&shards) {
            bail!("--shards must be between 1 and {}", tollgate_engine::layout::MAX_SHARDS);
        }
        Ok(shards)
    }

    pub(crate) fn open(&self) -> anyhow::Result<Engine> {
        let plans = self.load_plans()?;
        let engine = Engine::open(self.config()?, plans, Arc::new(SystemClock))
            .with_context(|| format!("opening the engine in {}", self.data_dir.display()))?;
        Ok(engine)
    }
}

//! `tollgate import customers|subscriptions FILE --mapping M.toml`: a legacy system's
//! customers (each with its billing account) and subscriptions into the BSS store, through
//! `tollgate_import` (validation, rejects file, de-duplication by external id, a checkpoint
//! per batch so a killed import resumes); the engine accounts and subscriptions follow
//! through the outbox when `tollgate serve --api-listen` runs. `tollgate import generate`
//! writes synthetic files for the benchmark; `tollgate import status` lists the runs.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use tollgate_import::{import_file, ImportKind, ImportOptions, Mapping, Progress, DEFAULT_BATCH_ROWS, MAX_BATCH_ROWS};

use super::bss::DatabaseArgs;
use super::engine_setup::EngineArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum ImportCommand {
    /// Import customers, one row each with its billing account (see bss-modules/import/README.md
    /// for the mapping's fields: external_id, party_type, name, currency, … parent).
    Customers(FileArgs),
    /// Import subscriptions of imported billing accounts (fields: external_id,
    /// billing_account, plan, msisdn, and optionally offering, imsi, status).
    Subscriptions(FileArgs),
    /// Write synthetic customers.csv and subscriptions.csv (one subscription per customer)
    /// with their mappings, for the benchmark.
    Generate {
        /// Customers (and subscriptions) to write.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        rows: u64,
        /// The directory to write them into.
        #[arg(long)]
        out: PathBuf,
    },
    /// The import runs (kind, state, rows, imported, duplicates, rejected, file) and what the
    /// store holds (customers, billing accounts, subscriptions, engine operations pending,
    /// done and failed in the outbox), as JSON.
    Status,
}

#[derive(Debug, Args)]
pub(crate) struct FileArgs {
    /// The CSV file to import. Importing it again through the same mapping resumes an
    /// interrupted run, or changes nothing when it finished.
    file: PathBuf,
    /// The column mapping (TOML: delimiter, header, [fields], [translate.FIELD]).
    #[arg(long)]
    mapping: PathBuf,
    /// Where rejected rows go (CSV: row, field, reason, raw; default FILE with the
    /// extension .rejects.csv). A resumed run cuts it back to its checkpoint.
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Rows per transaction and checkpoint.
    #[arg(long, default_value_t = DEFAULT_BATCH_ROWS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_BATCH_ROWS as u64))]
    batch: usize,
    /// Tariff plans subscriptions may be on (source .toml or compiled; default: the plans
    /// in DATA_DIR/plans, or the built-in example plans): those `tollgate serve` loads.
    #[arg(long = "plan-file")]
    plans: Vec<PathBuf>,
}

pub(crate) fn run(database: &DatabaseArgs, command: ImportCommand) -> anyhow::Result<ExitCode> {
    let (kind, args) = match command {
        ImportCommand::Customers(args) => (ImportKind::Customers, args),
        ImportCommand::Subscriptions(args) => (ImportKind::Subscriptions, args),
        ImportCommand::Generate { rows, out } => {
            let generated = tollgate_import::generate(&out, rows)?;
            println!(
                "{}",
                serde_json::json!({
                    "rows": rows,
                    "customers": generated.customers.display().to_string(),
                    "customersMapping": generated.customers_mapping.display().to_string(),
                    "subscriptions": generated.subscriptions.display().to_string(),
                    "subscriptionsMapping": generated.subscriptions_mapping.display().to_string(),
                })
            );
            return Ok(ExitCode::SUCCESS);
        }
        ImportCommand::Status => return status(database),
    };
    let mapping = Mapping::load(&args.mapping, kind)?;
    let plans = if kind == ImportKind::Subscriptions {
        plan_currencies(&database.data_dir, &args.plans)?
    } else {
        HashMap::new()
    };
    let options = ImportOptions {
        batch_rows: args.batch,
        actor: super::bss::actor(),
        rejects: args.rejects.clone().unwrap_or_else(|| args.file.with_extension("rejects.csv")),
        plans,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(std::fs::metadata(&args.file).map_or(0, |m| m.len()));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = std::time::Instant::now();
    let summary = super::bss::runtime()?.block_on(async {
        let store = database.open_with(&tollgate_store::StoreOptions::bulk()).await?;
        let mut progress = |at: &Progress| match &bar {
            Some(bar) => {
                bar.set_position(at.bytes_done);
                bar.set_message(format!(
                    "{} rows: {} imported, {} duplicates, {} rejected",
                    at.rows, at.imported, at.duplicates, at.rejected
                ));
            }
            // Not a terminal: a line per committed batch, for the log.
            None => tracing::info!(
                rows = at.rows,
                imported = at.imported,
                duplicates = at.duplicates,
                rejected = at.rejected,
                bytes = at.bytes_done,
                "import: batch committed"
            ),
        };
        let summary = import_file(&store, &args.file, &mapping, &options, &mut progress)
            .await
            .with_context(|| format!("importing {}", args.file.display()));
        store.close().await;
        summary
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut shown = serde_json::to_value(&summary)?;
    shown["elapsed_ms"] = serde_json::json!(elapsed_ms);
    println!("{shown}");
    Ok(ExitCode::SUCCESS)
}

/// Plan id → currency of the plans `tollgate serve` would load with these settings.
fn plan_currencies(data_dir: &Path, files: &[PathBuf]) -> anyhow::Result<HashMap<String, String>> {
    let mut engine = EngineArgs::with_data_dir(data_dir);
    engine.plans = files.to_vec();
    let plans = engine.load_plans()?;
    let now = jiff::Timestamp::now().as_second();
    Ok(plans.ids().filter_map(|id| Some((id.to_owned(), plans.at(id, now)?.names.currency.to_string()))).collect())
}

/// The runs, and what the store holds: customers, billing accounts, subscriptions and the
/// outbox's engine operations by state (pending ones are applied by `tollgate serve
/// --api-listen`), as one JSON object.
fn status(database: &DatabaseArgs) -> anyhow::Result<ExitCode> {
    super::bss::runtime()?.block_on(async {
        let store = database.open().await?;
        let runs: Vec<serde_json::Value> = store
            .import_runs()
            .await?
            .iter()
            .map(|run| {
                serde_json::json!({
                    "run": run.id,
                    "kind": run.kind.as_str(),
                    "file": run.file_name,
                    "state": if run.complete { "complete" } else { "interrupted" },
                    "rows": run.rows_done,
                    "imported": run.imported,
                    "duplicates": run.duplicates,
                    "rejected": run.rejected,
                })
            })
            .collect();
        let customers = store.customer_list(&Default::default(), 0, 0).await?.total;
        let accounts = store.billing_account_list(&Default::default(), 0, 0).await?.total;
        let outbox = store.outbox_counts().await?;
        let shown = serde_json::json!({
            "runs": runs,
            "customers": customers,
            "billing_accounts": accounts,
            "subscriptions": store.subscription_count().await?,
            "outbox": {"pending": outbox.pending, "done": outbox.done, "failed": outbox.failed},
        });
        println!("{shown}");
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

//! `tollgate mediate`: rate usage files (CSV with a mapping, or TS 32.297 BER CDR files)
//! through the engine, once or watching a folder; with a BSS store, a file whose rejects
//! pass a threshold raises an alarm on its source, cleared by a later file under it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use tollgate_mediation::readers::csv::mapping::Mapping;
use tollgate_mediation::{Format, MediationConfig, Mediator, Progress, Summary};

use super::engine_setup::EngineArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// By extension: .csv, .tsv and .txt are delimited text, anything else BER.
    Auto,
    Csv,
    Ber,
}

#[derive(Debug, Args)]
pub(crate) struct MediateArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Usage files to rate, in order.
    files: Vec<PathBuf>,
    /// Column mapping of delimited files (TOML; see the mediation README).
    #[arg(long)]
    mapping: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArg,
    /// Where rated events, rejects and summaries go (default DATA_DIR/mediation/out).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Watch DIR/incoming: rate each file that appears, then move it to DIR/processed
    /// (or DIR/failed when it cannot be read at all).
    #[arg(long)]
    watch: Option<PathBuf>,
    /// With --watch: rate what is in incoming now and stop instead of waiting for more.
    #[arg(long)]
    once: bool,
    /// Records older than this many days are rejected as out of window.
    #[arg(long, default_value_t = 90)]
    max_age_days: i64,
    /// Records charged per engine message and per checkpoint.
    #[arg(long, default_value_t = tollgate_mediation::pipeline::DEFAULT_BATCH_RECORDS)]
    batch: usize,
    /// Refuse input files larger than this many bytes.
    #[arg(long, default_value_t = 16 << 30)]
    max_file_bytes: u64,
    /// The BSS store a rejects alarm is kept in: `postgres://…` or an SQLite file
    /// (default DATA_DIR/bss.sqlite3 when it exists; none: no alarm).
    #[arg(long)]
    database: Option<String>,
    /// Where the files come from, the alarm's object `mediation/SOURCE` (default: the
    /// --watch directory's name, else the name of the directory the file is in).
    #[arg(long)]
    source: Option<String>,
    /// A file whose rejects are more than this percentage of its records raises an alarm
    /// on its source; a later file of the source at or under it clears it.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=99))]
    reject_alarm_percent: u8,
    /// Files with fewer records than this say nothing either way.
    #[arg(long, default_value_t = 20)]
    reject_alarm_min_records: u64,
}

/// The rejects alarm of `tollgate mediate`: after each file, its source's alarm is
/// raised (its rejects above the threshold) or cleared (at or under it), in the store if
/// there is one. A store that cannot be opened or written is logged and tried again
/// with the next file; it never fails the run.
struct RejectAlarms {
    runtime: tokio::runtime::Runtime,
    location: String,
    alarms: Option<tollgate_alarms::Alarms>,
    percent: u64,
    min_records: u64,
}

impl RejectAlarms {
    fn new(args: &MediateArgs) -> anyhow::Result<Option<RejectAlarms>> {
        let default_store = args.engine.data_dir.join(tollgate_store::SQLITE_FILE_NAME);
        let location = match &args.database {
            Some(location) => location.clone(),
            None if default_store.exists() => default_store.display().to_string(),
            None => return Ok(None),
        };
        Ok(Some(RejectAlarms {
            runtime: super::bss::runtime()?,
            location,
            alarms: None,
            percent: u64::from(args.reject_alarm_percent),
            min_records: args.reject_alarm_min_records,
        }))
    }

    fn judge(&mut self, source: &str, file: &Path, summary: &Summary) {
        use super::alarm::source::MEDIATION;
        if summary.records_in == 0 || summary.records_in < self.min_records {
            return;
        }
        let object = format!("mediation/{source}");
        let above = summary.rejected.saturating_mul(100) > self.percent.saturating_mul(summary.records_in);
        let raise = above.then(|| {
            let problem = format!(
                "{}: {} of {} records rejected (more than {} %; the rejects file says why)",
                file.display(),
                summary.rejected,
                summary.records_in,
                self.percent
            );
            MEDIATION.report(&object, tollgate_alarms::PerceivedSeverity::Major, &problem)
        });
        let (location, alarms) = (&self.location, &mut self.alarms);
        self.runtime.block_on(async {
            if alarms.is_none() {
                match tollgate_store::Store::open(location).await {
                    Ok(store) => *alarms = Some(tollgate_alarms::Alarms::new(store, None)),
                    Err(err) => {
                        tracing::warn!(%object, error = %err, "alarm not recorded: the store did not open");
                        return;
                    }
                }
            }
            if let Some(alarms) = alarms {
                super::alarm::record(alarms, &object, MEDIATION, raise).await;
            }
        });
    }
}

/// A file's source: `--source`, else the watched directory's name, else its directory's.
fn source_of(args: &MediateArgs, file: &Path) -> String {
    let name = |dir: Option<&Path>| dir.and_then(Path::file_name).map(|name| name.to_string_lossy().into_owned());
    args.source
        .clone()
        .or_else(|| args.watch.as_deref().and_then(|dir| name(Some(dir))))
        .or_else(|| name(file.parent()))
        .unwrap_or_else(|| "default".to_owned())
}

pub(crate) fn run(args: &MediateArgs) -> anyhow::Result<ExitCode> {
    if args.files.is_empty() && args.watch.is_none() {
        bail!("name files to rate, or --watch DIR");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let mapping = args
        .mapping
        .as_deref()
        .map(|path| Mapping::load(path).with_context(|| format!("column mapping {}", path.display())))
        .transpose()?;
    let engine = args.engine.open()?;
    let base = args.engine.data_dir.join("mediation");
    let mut config = MediationConfig::new(args.out.clone().unwrap_or_else(|| base.join("out")), base.join("state"));
    config.batch_records = args.batch;
    config.max_age_seconds = args.max_age_days.saturating_mul(86_400);
    config.max_file_bytes = args.max_file_bytes;
    let mediator = Mediator::new(&engine, config);
    let mut alarms = RejectAlarms::new(args)?;
    let mut rated = |file: &Path, summary: &Summary| {
        print_summary(file, summary);
        if let Some(alarms) = &mut alarms {
            alarms.judge(&source_of(args, file), file, summary);
        }
    };
    let format_of = |path: &Path| -> anyhow::Result<Format> {
        let text = matches!(path.extension().and_then(|e| e.to_str()), Some("csv" | "tsv" | "txt"));
        match (args.format, text) {
            (FormatArg::Ber, _) | (FormatArg::Auto, false) => Ok(Format::Ber),
            (FormatArg::Csv, _) | (FormatArg::Auto, true) => match &mapping {
                Some(mapping) => Ok(Format::Csv(mapping.clone())),
                None => bail!("{}: delimited files need --mapping", path.display()),
            },
        }
    };
    let mut failed = 0;
    for file in &args.files {
        match format_of(file).and_then(|format| rate_file(&mediator, file, &format)) {
            Ok(summary) => rated(file, &summary),
            Err(err) => {
                failed += 1;
                eprintln!("tollgate: {}: {err:#}", file.display());
            }
        }
    }
    if let Some(dir) = &args.watch {
        failed += watch(&mediator, dir, args.once, &format_of, &mut rated)?;
    }
    engine.shutdown().context("stopping the engine")?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn rate_file(mediator: &Mediator<'_>, file: &Path, format: &Format) -> anyhow::Result<Summary> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(std::fs::metadata(file).map_or(0, |m| m.len()));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {per_sec} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = std::time::Instant::now();
    let mut report = |progress: Progress| {
        if let Some(bar) = &bar {
            bar.set_position(progress.bytes_done);
            let seconds = started.elapsed().as_secs_f64().max(1e-3);
            #[allow(clippy::float_arithmetic)]
            let rate = progress.records as f64 / seconds;
            bar.set_message(format!("{} records, {rate:.0} records/s", progress.records));
        }
    };
    let summary = mediator.process(file, format, &mut report);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(summary?)
}

fn print_summary(file: &Path, summary: &Summary) {
    let amounts: Vec<String> =
        summary.amount_by_currency.iter().map(|(currency, amount)| format!("{amount} {currency}")).collect();
    println!(
        "{}: {} records: {} rated, {} rejected, {} duplicates; charged {}{}",
        file.display(),
        summary.records_in,
        summary.rated,
        summary.rejected,
        summary.duplicates,
        if amounts.is_empty() { "nothing".to_owned() } else { amounts.join(", ") },
        if summary.resumed > 0 { format!(" (resumed {} times)", summary.resumed) } else { String::new() },
    );
}

/// Rates files appearing in DIR/incoming until SIGINT/SIGTERM (or once). Returns how
/// many files failed.
fn watch(
    mediator: &Mediator<'_>,
    dir: &Path,
    once: bool,
    format_of: &dyn Fn(&Path) -> anyhow::Result<Format>,
    rated: &mut dyn FnMut(&Path, &Summary),
) -> anyhow::Result<usize> {
    let (incoming, processed, failed_dir) = (dir.join("incoming"), dir.join("processed"), dir.join("failed"));
    for folder in [&incoming, &processed, &failed_dir] {
        std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    }
    let stop = stop_flag();
    let mut failed = 0;
    while !stop.load(Ordering::SeqCst) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&incoming)
            .with_context(|| format!("reading {}", incoming.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            // Files still being written are expected under a dot name and renamed when whole.
            .filter(|path| path.is_file() && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        files.sort();
        for file in files {
            let target = match format_of(&file).and_then(|format| rate_file(mediator, &file, &format)) {
                Ok(summary) => {
                    rated(&file, &summary);
                    &processed
                }
                Err(err) => {
                    failed += 1;
                    eprintln!("tollgate: {}: {err:#}", file.display());
                    &failed_dir
                }
            };
            let name = file.file_name().unwrap_or_default();
            std::fs::rename(&file, target.join(name)).with_context(|| format!("moving {}", file.display()))?;
        }
        if once {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(failed)
}

/// A flag set on SIGINT or SIGTERM (tokio's signal handling, on a small thread of its own).
fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut interrupt), Ok(mut terminate)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                return;
            };
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            set.store(true, Ordering::SeqCst);
        });
    });
    flag
}

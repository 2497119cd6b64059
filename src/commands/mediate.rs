//! `tollgate mediate`: rate usage files (CSV with a mapping, or TS 32.297 BER CDR files)
//! through the engine, once or watching a folder; with a BSS store, a file whose rejects
//! pass a threshold raises an alarm on its source, cleared by a later file under it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    #[arg(long, default_value_t = REJECT_ALARM_PERCENT, value_parser = clap::value_parser!(u8).range(0..=99))]
    reject_alarm_percent: u8,
    /// Files with fewer records than this say nothing either way.
    #[arg(long, default_value_t = REJECT_ALARM_MIN_RECORDS)]
    reject_alarm_min_records: u64,
}

/// The rejects alarm of `tollgate mediate`: after each file, its source's alarm is
/// raised (its rejects above the threshold) or cleared (at or under it), in the store if
/// there is one. A store that cannot be opened or written is logged and tried again
/// with the next file; it never fails the run.
struct RejectAlarms {
    runtime: Executor,
    location: String,
    alarms: Option<tollgate_alarms::Alarms>,
    percent: u64,
    min_records: u64,
}

/// Where the rejects alarm's store work runs: the command's own current-thread runtime
/// (whose `Runtime::block_on` drives its I/O; its handle's would not), or the server's
/// multi-threaded management runtime, from the mediation thread.
enum Executor {
    Own(tokio::runtime::Runtime),
    Server(tokio::runtime::Handle),
}

impl Executor {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match self {
            Executor::Own(runtime) => runtime.block_on(future),
            Executor::Server(handle) => handle.block_on(future),
        }
    }
}

/// The rejects alarm's thresholds unless given: more than 5 % of a file of at least 20.
const REJECT_ALARM_PERCENT: u8 = 5;
const REJECT_ALARM_MIN_RECORDS: u64 = 20;

impl RejectAlarms {
    fn new(args: &MediateArgs) -> anyhow::Result<Option<RejectAlarms>> {
        let default_store = args.engine.data_dir.join(tollgate_store::SQLITE_FILE_NAME);
        let location = match &args.database {
            Some(location) => location.clone(),
            None if default_store.exists() => default_store.display().to_string(),
            None => return Ok(None),
        };
        Ok(Some(RejectAlarms {
            runtime: Executor::Own(super::bss::runtime()?),
            location,
            alarms: None,
            percent: u64::from(args.reject_alarm_percent),
            min_records: args.reject_alarm_min_records,
        }))
    }

    /// In `serve`: the server's alarms, on its management runtime.
    fn in_server(alarms: tollgate_alarms::Alarms, handle: tokio::runtime::Handle) -> RejectAlarms {
        RejectAlarms {
            runtime: Executor::Server(handle),
            location: String::new(),
            alarms: Some(alarms),
            percent: u64::from(REJECT_ALARM_PERCENT),
            min_records: REJECT_ALARM_MIN_RECORDS,
        }
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
                    Ok(store) => *alarms = Some(tollgate_alarms::Alarms::new(store)),
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
    if args.engine.dedupe_window < args.batch.saturating_mul(4) {
        // A killed run's charged batches (two in flight) are told from new records by the
        // engine's window: smaller than a few batches, they leave it before the resume.
        tracing::warn!(
            window = args.engine.dedupe_window,
            batch = args.batch,
            "--dedupe-window is under four batches: records a killed run charged may be charged again when it resumes"
        );
    }
    let engine = args.engine.open()?;
    let base = args.engine.data_dir.join("mediation");
    let mut config = MediationConfig::new(args.out.clone().unwrap_or_else(|| base.join("out")), base.join("state"));
    config.batch_records = args.batch;
    config.max_age_seconds = args.max_age_days.saturating_mul(86_400);
    config.max_file_bytes = args.max_file_bytes;
    // SIGINT or SIGTERM while watching: the file under way stops between two batches and
    // stays in incoming, to resume from its checkpoint at the next start.
    let stop = args.watch.is_some().then(stop_flag);
    config.stop = stop.clone();
    let mediator = Mediator::new(&engine, config);
    let mut alarms = RejectAlarms::new(args)?;
    let mut rated = |file: &Path, summary: &Summary| {
        print_summary(file, summary);
        if let Some(alarms) = &mut alarms {
            alarms.judge(&source_of(args, file), file, summary);
        }
    };
    let format_of = |path: &Path| format_for(path, args.format, mapping.as_ref(), "--mapping");
    let mut failed = 0;
    let mut stopped = false;
    for file in &args.files {
        match format_of(file).and_then(|format| rate_file(&mediator, file, &format)) {
            Ok(summary) => rated(file, &summary),
            Err(err) if is_stopped(&err) => {
                eprintln!("tollgate: {}: stopped; run it again to resume it", file.display());
                stopped = true;
                break;
            }
            Err(err) => {
                failed += 1;
                eprintln!("tollgate: {}: {err:#}", file.display());
            }
        }
    }
    if let (Some(dir), Some(stop), false) = (&args.watch, &stop, stopped) {
        let mut rate = |file: &Path| format_of(file).and_then(|format| rate_file(&mediator, file, &format));
        failed += watch(dir, args.once, stop, &mut rate, &mut rated)?;
    }
    engine.shutdown().context("stopping the engine")?;
    Ok(if failed == 0 && !stopped { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `serve --mediation-batch` unless given.
const SERVE_BATCH_RECORDS: usize = 4_096;

/// Whether a file's run ended because it was asked to stop (it resumes when run again).
fn is_stopped(error: &anyhow::Error) -> bool {
    matches!(error.downcast_ref(), Some(tollgate_mediation::MediationError::Stopped))
}

/// A batch size of 1 to 1,048,576 records.
fn parse_batch(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=1 << 20).contains(&n) => Ok(n),
        _ => Err("a number of records from 1 to 1048576".to_owned()),
    }
}

/// A file's format: as `arg` says, or by extension (.csv, .tsv and .txt are delimited
/// text, anything else BER); delimited text needs the column mapping (`flag` names it).
fn format_for(path: &Path, arg: FormatArg, mapping: Option<&Mapping>, flag: &str) -> anyhow::Result<Format> {
    let text = matches!(path.extension().and_then(|e| e.to_str()), Some("csv" | "tsv" | "txt"));
    match (arg, text) {
        (FormatArg::Ber, _) | (FormatArg::Auto, false) => Ok(Format::Ber),
        (FormatArg::Csv, _) | (FormatArg::Auto, true) => match mapping {
            Some(mapping) => Ok(Format::Csv(mapping.clone())),
            None => bail!("{}: delimited files need {flag}", path.display()),
        },
    }
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

/// Rates (`rate`) the files appearing in DIR/incoming, in name order, until `stop` is set
/// (or once), moving each to DIR/processed, or DIR/failed when it cannot be read at all. A
/// file whose run was stopped stays in incoming (it resumes from its checkpoint). Returns
/// how many files failed.
fn watch(
    dir: &Path,
    once: bool,
    stop: &AtomicBool,
    rate: &mut dyn FnMut(&Path) -> anyhow::Result<Summary>,
    rated: &mut dyn FnMut(&Path, &Summary),
) -> anyhow::Result<usize> {
    let (incoming, processed, failed_dir) = (dir.join("incoming"), dir.join("processed"), dir.join("failed"));
    for folder in [&incoming, &processed, &failed_dir] {
        std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    }
    let mut failed = 0;
    while !stop.load(Ordering::SeqCst) {
        let files = incoming_files(&incoming).with_context(|| format!("reading {}", incoming.display()))?;
        for file in files {
            let target = match rate(&file) {
                Ok(summary) => {
                    rated(&file, &summary);
                    &processed
                }
                Err(err) if is_stopped(&err) => {
                    tracing::info!(file = %file.display(), "stopped; the file resumes at the next start");
                    return Ok(failed);
                }
                Err(err) => {
                    failed += 1;
                    eprintln!("tollgate: {}: {err:#}", file.display());
                    &failed_dir
                }
            };
            let destination = free_name(target, file.file_name().unwrap_or_default());
            std::fs::rename(&file, &destination).with_context(|| format!("moving {}", file.display()))?;
        }
        if once {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(failed)
}

/// `dir/name`, or, when a file of that name is there already (a switch whose file names
/// wrap around), `dir/name.1`, `dir/name.2`, …: an earlier file is never overwritten.
fn free_name(dir: &Path, name: &std::ffi::OsStr) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    (1u64..)
        .map(|n| {
            let mut numbered = name.to_os_string();
            numbered.push(format!(".{n}"));
            dir.join(numbered)
        })
        .find(|path| !path.exists())
        .unwrap_or(first)
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

/// `tollgate serve`'s mediation flags: usage files rated through the server's own engine,
/// beside online charging (a data directory has one engine: `tollgate mediate` cannot run
/// on it while the server does).
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeMediationArgs {
    /// Rate the usage files that appear in DIR/incoming through this server's engine and
    /// move each to DIR/processed (DIR/failed when it cannot be read at all); outputs in
    /// DATA_DIR/mediation/out. Write a file under a dot name and rename it when whole. At a
    /// stop the file under way ends between two batches and resumes at the next start.
    #[arg(long = "mediation-watch", value_name = "DIR")]
    watch: Option<PathBuf>,
    /// Column mapping of delimited files (TOML; see the mediation README).
    #[arg(long = "mediation-mapping", value_name = "FILE", requires = "watch")]
    mapping: Option<PathBuf>,
    /// The files' format (as `tollgate mediate --format`).
    #[arg(long = "mediation-format", value_enum, default_value = "auto")]
    format: FormatArg,
    /// Records older than this many days are rejected as out of window.
    #[arg(long = "mediation-max-age-days", default_value_t = 90)]
    max_age_days: i64,
    /// Records charged per engine message and per checkpoint (a stop waits for one batch).
    /// Smaller than `tollgate mediate`'s default: a shard charges a batch whole, and the
    /// network's requests wait behind it (docs/performance.md, "Mediation in the server").
    #[arg(long = "mediation-batch", default_value_t = SERVE_BATCH_RECORDS, value_parser = parse_batch)]
    batch: usize,
    /// At most this many records a second go to the engine (0: as fast as it charges
    /// them), leaving the shards time for online charging.
    #[arg(long = "mediation-max-rate", default_value_t = 0)]
    max_rate: u64,
    /// The rejects alarm's object, `mediation/SOURCE` (default: the watched directory's
    /// name); raised when more than 5 % of a file of 20 records or more is rejected.
    #[arg(long = "mediation-source", requires = "watch")]
    source: Option<String>,
}

impl ServeMediationArgs {
    /// Whether `--mediation-watch` is given.
    pub(crate) fn is_watching(&self) -> bool {
        self.watch.is_some()
    }

    /// The watched incoming directory (empty without `--mediation-watch`).
    pub(crate) fn incoming(&self) -> PathBuf {
        self.watch.as_ref().map(|dir| dir.join("incoming")).unwrap_or_default()
    }
}

/// What `serve`'s mediation did since the server started, for `/metrics`. A file resumed
/// after a restart counts its records from before the restart again.
#[derive(Debug, Default)]
pub(crate) struct MediationCounters {
    files_rated: AtomicU64,
    files_failed: AtomicU64,
    records_rated: AtomicU64,
    records_rejected: AtomicU64,
    records_duplicate: AtomicU64,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
}

/// `/metrics`: `serve`'s mediation, and the files waiting in its incoming directory
/// (counted at each scrape).
pub(crate) struct MediationMetrics {
    pub(crate) counters: Arc<MediationCounters>,
    pub(crate) incoming: PathBuf,
}

/// The files in `incoming` a watch rates, in name order: files still being written are
/// expected under a dot name and renamed when whole.
fn incoming_files(incoming: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(incoming)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    Ok(files)
}

impl tollgate_oss_adapters::admin::MetricsSource for MediationMetrics {
    fn write<'a>(
        &'a self,
        page: &'a mut tollgate_oss_adapters::admin::Exposition,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        use tollgate_oss_adapters::admin::Kind;
        Box::pin(async move {
            let c = &self.counters;
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            let files = "tollgate_mediation_files_total";
            page.family(files, Kind::Counter, "Usage files the server's mediation finished, by outcome.");
            page.sample(files, &[("outcome", "rated")], load(&c.files_rated));
            page.sample(files, &[("outcome", "failed")], load(&c.files_failed));
            let records = "tollgate_mediation_records_total";
            page.family(records, Kind::Counter, "Usage records the server's mediation read, by outcome.");
            page.sample(records, &[("outcome", "rated")], load(&c.records_rated));
            page.sample(records, &[("outcome", "rejected")], load(&c.records_rejected));
            page.sample(records, &[("outcome", "duplicate")], load(&c.records_duplicate));
            let waiting = "tollgate_mediation_files_waiting";
            page.family(
                waiting,
                Kind::Gauge,
                "Usage files in the watched incoming directory, the one under way included.",
            );
            let count = incoming_files(&self.incoming).map_or(0, |files| files.len());
            page.sample(waiting, &[], u64::try_from(count).unwrap_or(u64::MAX));
            let bytes = "tollgate_mediation_file_bytes";
            page.family(bytes, Kind::Gauge, "The file under way: its size, and how far it is rated.");
            page.sample(bytes, &[("part", "done")], load(&c.bytes_done));
            page.sample(bytes, &[("part", "total")], load(&c.bytes_total));
        })
    }
}

/// `serve`'s mediation thread, stopped with [`ServeMediation::stop`].
pub(crate) struct ServeMediation {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServeMediation {
    /// Starts the thread when `--mediation-watch` is given: it rates the files of the
    /// directory through `engine` (the management plane's priority), judges each file's
    /// rejects (the alarm, when the server has a store: `alarms` on `handle`), counts
    /// into `counters` and tells what it charged to `charged_volume` (fraud detection's).
    pub(crate) fn start(
        args: &ServeMediationArgs,
        engine: Arc<tollgate_engine::Engine>,
        data_dir: &Path,
        alarms: Option<(tollgate_alarms::Alarms, tokio::runtime::Handle)>,
        counters: Arc<MediationCounters>,
        charged_volume: Option<Arc<dyn tollgate_mediation::ChargedVolume>>,
    ) -> anyhow::Result<Option<ServeMediation>> {
        let Some(dir) = args.watch.clone() else { return Ok(None) };
        // The folders made (or found) now: a directory the server cannot use stops it at
        // the start, naming the flag.
        for folder in ["incoming", "processed", "failed"].map(|name| dir.join(name)) {
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("--mediation-watch: creating {}", folder.display()))?;
        }
        let mapping = args
            .mapping
            .as_deref()
            .map(|path| Mapping::load(path).with_context(|| format!("--mediation-mapping {}", path.display())))
            .transpose()?;
        let base = data_dir.join("mediation");
        let mut config = MediationConfig::new(base.join("out"), base.join("state"));
        config.max_age_seconds = args.max_age_days.saturating_mul(86_400);
        config.batch_records = args.batch;
        config.max_records_per_second = Some(args.max_rate).filter(|rate| *rate > 0);
        config.charged_volume = charged_volume;
        let stop = Arc::new(AtomicBool::new(false));
        config.stop = Some(Arc::clone(&stop));
        let source = args.source.clone().unwrap_or_else(|| {
            dir.file_name().map_or_else(|| "default".to_owned(), |name| name.to_string_lossy().into_owned())
        });
        let format = args.format;
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("tollgate-mediation".into()).spawn(move || {
            super::serve::lower_thread_priority();
            let mediator = Mediator::new(&engine, config);
            let mut alarms = alarms.map(|(alarms, handle)| RejectAlarms::in_server(alarms, handle));
            let format_of = |path: &Path| format_for(path, format, mapping.as_ref(), "--mediation-mapping");
            let mut rate = |file: &Path| -> anyhow::Result<Summary> {
                let format = match format_of(file) {
                    Ok(format) => format,
                    Err(error) => {
                        counters.files_failed.fetch_add(1, Ordering::Relaxed);
                        return Err(error);
                    }
                };
                let mut seen =
                    Progress { records: 0, rated: 0, rejected: 0, duplicates: 0, bytes_done: 0, bytes_total: 0 };
                let mut report = |progress: Progress| {
                    let add = |counter: &AtomicU64, now: u64, before: u64| {
                        counter.fetch_add(now.saturating_sub(before), Ordering::Relaxed);
                    };
                    add(&counters.records_rated, progress.rated, seen.rated);
                    add(&counters.records_rejected, progress.rejected, seen.rejected);
                    add(&counters.records_duplicate, progress.duplicates, seen.duplicates);
                    counters.bytes_done.store(progress.bytes_done, Ordering::Relaxed);
                    counters.bytes_total.store(progress.bytes_total, Ordering::Relaxed);
                    seen = progress;
                };
                tracing::info!(file = %file.display(), "mediation: rating");
                let summary = mediator.process(file, &format, &mut report);
                let counter = if summary.is_ok() { &counters.files_rated } else { &counters.files_failed };
                if !matches!(summary, Err(tollgate_mediation::MediationError::Stopped)) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                counters.bytes_done.store(0, Ordering::Relaxed);
                counters.bytes_total.store(0, Ordering::Relaxed);
                Ok(summary?)
            };
            let mut rated = |file: &Path, summary: &Summary| {
                tracing::info!(
                    file = %file.display(),
                    records = summary.records_in,
                    rated = summary.rated,
                    rejected = summary.rejected,
                    duplicates = summary.duplicates,
                    "mediation: file rated"
                );
                if let Some(alarms) = &mut alarms {
                    alarms.judge(&source, file, summary);
                }
            };
            // A failure of the directory itself (a rename refused, the disk full) is
            // logged and the watch taken up again a little later, until the server stops.
            while let Err(error) = watch(&dir, false, &thread_stop, &mut rate, &mut rated) {
                tracing::error!(dir = %dir.display(), error = format!("{error:#}"), "mediation: watching again in 5 s");
                let again = std::time::Instant::now() + Duration::from_secs(5);
                while std::time::Instant::now() < again && !thread_stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })?;
        Ok(Some(ServeMediation { stop, thread: Some(thread) }))
    }

    /// Stops the thread between two batches and waits for it.
    pub(crate) fn stop(self) {
        drop(self);
    }
}

impl Drop for ServeMediation {
    /// Also when `serve` ends early on an error: the thread holds the engine, which must
    /// not be left charging a file while the process exits.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

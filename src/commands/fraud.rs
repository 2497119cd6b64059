//! Fraud and leakage detection in `tollgate serve` (`--fraud`, `--fraud-policy FILE`):
//! a thread of its own (at the management plane's lower priority) follows the engine's
//! rated-event ledger (`tollgate_engine::ledger::LedgerFollower`, reading the files the
//! ledger thread made durable, never a shard), turns each entry into a `UsageEvent`
//! (`tollgate_fraud::ledger::from_ledger_entry`) and runs the detectors over it. Their
//! findings become orders in a bounded `ActionQueue`, handed to a worker on the
//! management runtime over a bounded channel (full: dropped and counted, the detectors
//! keep their pace): it raises each finding's alarm (`tollgate_alarms::Alarms`) and, when
//! the policy says so, places a TMF622 order suspending the subscriber's line
//! (`tollgate_orders::Orders`).
//!
//! Where the follower stands is saved in `DATA_DIR/fraud.position` by the worker, after
//! the alarms and orders of the entries before it were recorded, so a restart resumes
//! there: **at least once** for the alarms and orders of the last second or so before a
//! crash (an alarm raised again updates the open one; a suspension is placed only for a
//! line still active), never a replay of older history. The detectors' own state (the
//! baselines, the bursts in progress) lives in memory: at a start it is rebuilt by reading
//! the ledger again from the first day of the month `warmup_days` (policy) before now, in
//! silence up to the saved position (nothing there is raised again), then judging on.
//! Without a position file (the first start) the follower starts at the ledger's end.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use tollgate_alarms::{AlarmReport, AlarmType, Alarms, PerceivedSeverity};
use tollgate_engine::ledger::{LedgerFollower, LedgerPosition};
use tollgate_fraud::{ActionQueue, AlarmFields, DetectorKind, Detectors, Order, Policy};
use tollgate_oss_adapters::admin::{Exposition, Kind, MetricsSource};
use tollgate_store::Store;

/// `tollgate serve`'s fraud detection flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct FraudArgs {
    /// Run the fraud and revenue-leakage detectors (oss-adapters/fraud) over the
    /// rated-event ledger with the default policy: each finding raises an alarm, and
    /// IRSF suspends the subscriber's line by a product order. Needs a BSS store. Off
    /// unless given (or --fraud-policy).
    #[arg(long)]
    fraud: bool,
    /// The detectors' policy: a TOML file, or JSON if it ends in `.json` (every field
    /// defaults; oss-adapters/fraud/README.md). Turns --fraud on.
    #[arg(long, value_name = "FILE")]
    fraud_policy: Option<PathBuf>,
}

impl FraudArgs {
    /// The policy to run with, or `None` when detection is off.
    pub(crate) fn policy(&self) -> anyhow::Result<Option<Policy>> {
        let Some(path) = &self.fraud_policy else {
            return Ok(self.fraud.then(Policy::default));
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("--fraud-policy {}", path.display()))?;
        let policy: Policy = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).with_context(|| format!("--fraud-policy {}", path.display()))?
        } else {
            toml::from_str(&text).with_context(|| format!("--fraud-policy {}", path.display()))?
        };
        policy.check().with_context(|| format!("--fraud-policy {}", path.display()))?;
        Ok(Some(policy))
    }
}

/// How often the follower looks for new ledger entries (the ledger thread builds every
/// 200 ms or more).
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Orders a poll's findings may queue before more are dropped.
const ACTION_QUEUE_ORDERS: usize = 4096;
/// Orders (and position saves) waiting for the worker, at most.
const WORKER_QUEUE: usize = 1024;
/// The position file in the data directory.
pub(crate) const POSITION_FILE: &str = "fraud.position";
/// Who the alarms and orders say made them.
const ACTOR: &str = "system:tollgate-fraud";

/// What the detection thread counts, read by `/metrics`.
#[derive(Debug)]
pub(crate) struct FraudCounters {
    polls: AtomicU64,
    entries: AtomicU64,
    events: AtomicU64,
    findings: [AtomicU64; DetectorKind::ALL.len()],
    /// Orders dropped: the action queue or the worker's channel was full.
    dropped: AtomicU64,
    read_errors: AtomicU64,
    suspensions: AtomicU64,
    /// Usage events read again at a start to rebuild the detectors' state.
    warmup_events: AtomicU64,
    /// Online usage the engine answered `rating_failed` (no ledger entry), told to the
    /// unrated-usage detector from the engine's count.
    unrated_online: AtomicU64,
    /// Records this server's mediation told it charged (`MediatedVolume`), held by the
    /// divergence detector against the ledger's mediated entries.
    mediation_input: AtomicU64,
    /// Seconds between the newest entry's posting and its reading, at the last poll that
    /// read any.
    lag_seconds: AtomicI64,
    /// Per shard, the last journal record whose entries were read.
    lsns: Vec<AtomicU64>,
}

impl FraudCounters {
    pub(crate) fn new(shards: usize) -> FraudCounters {
        FraudCounters {
            polls: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            events: AtomicU64::new(0),
            findings: std::array::from_fn(|_| AtomicU64::new(0)),
            dropped: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            suspensions: AtomicU64::new(0),
            warmup_events: AtomicU64::new(0),
            unrated_online: AtomicU64::new(0),
            mediation_input: AtomicU64::new(0),
            lag_seconds: AtomicI64::new(0),
            lsns: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts a finding under its detector.
    fn found(&self, finding: &tollgate_fraud::Finding) {
        let index = DetectorKind::ALL.iter().position(|d| *d == finding.detector).unwrap_or(0);
        self.findings[index].fetch_add(1, Relaxed);
    }
}

/// The detection's figures on `/metrics`.
pub(crate) struct FraudMetrics(pub(crate) Arc<FraudCounters>);

impl MetricsSource for FraudMetrics {
    fn write<'a>(
        &'a self,
        page: &'a mut Exposition,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let c = &self.0;
            let counters = [
                ("tollgate_fraud_polls_total", "Reads of the rated-event ledger by the fraud detectors.", &c.polls),
                (
                    "tollgate_fraud_ledger_entries_total",
                    "Rated-event ledger entries the fraud detectors read.",
                    &c.entries,
                ),
                ("tollgate_fraud_events_total", "Usage events the fraud detectors observed.", &c.events),
                (
                    "tollgate_fraud_orders_dropped_total",
                    "Alarms and suspensions dropped because the fraud worker was behind.",
                    &c.dropped,
                ),
                ("tollgate_fraud_read_errors_total", "Failed reads of the rated-event ledger.", &c.read_errors),
                ("tollgate_fraud_suspensions_total", "Suspend orders placed for fraud findings.", &c.suspensions),
                (
                    "tollgate_fraud_warmup_events_total",
                    "Usage events read again at a start to rebuild the detectors' state, judging nothing.",
                    &c.warmup_events,
                ),
                (
                    "tollgate_fraud_unrated_online_total",
                    "Online usage answered rating_failed, told to the unrated-usage detector by the engine's count.",
                    &c.unrated_online,
                ),
                (
                    "tollgate_fraud_mediation_input_total",
                    "Records this server's mediation charged, told to the divergence detector.",
                    &c.mediation_input,
                ),
            ];
            for (name, help, value) in counters {
                page.family(name, Kind::Counter, help);
                page.sample(name, &[], value.load(Relaxed));
            }
            page.family("tollgate_fraud_findings_total", Kind::Counter, "Fraud and leakage findings by detector.");
            for (detector, count) in DetectorKind::ALL.iter().zip(&c.findings) {
                page.sample("tollgate_fraud_findings_total", &[("detector", detector.name())], count.load(Relaxed));
            }
            page.family(
                "tollgate_fraud_lag_seconds",
                Kind::Gauge,
                "Seconds from the newest ledger entry's posting to its reading by the detectors, at the last read.",
            );
            page.sample("tollgate_fraud_lag_seconds", &[], c.lag_seconds.load(Relaxed).unsigned_abs());
            page.family(
                "tollgate_fraud_ledger_lsn",
                Kind::Gauge,
                "Per shard, the last journal record whose ledger entries the detectors read.",
            );
            for (shard, lsn) in c.lsns.iter().enumerate() {
                page.sample("tollgate_fraud_ledger_lsn", &[("shard", &shard.to_string())], lsn.load(Relaxed));
            }
        })
    }
}

/// What `serve --mediation-watch` charged, per window of the leakage policy: the
/// mediation thread adds each batch (`tollgate_mediation::ChargedVolume`), the detection
/// thread takes it all at each poll, before reading the ledger, into the divergence
/// detector (`Divergence::observe_input`). Usage of a service the detectors do not know
/// (no ledger event either) is left out. Bounded by what one poll interval charges.
#[derive(Debug)]
pub(crate) struct MediatedVolume {
    window_ms: i64,
    /// Window start (Unix ms) → records, units.
    windows: Mutex<BTreeMap<i64, (u64, u64)>>,
}

impl MediatedVolume {
    pub(crate) fn new(policy: &Policy) -> MediatedVolume {
        let window_ms = i64::try_from(policy.leakage.window_seconds.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
        MediatedVolume { window_ms, windows: Mutex::new(BTreeMap::new()) }
    }

    fn take(&self) -> BTreeMap<i64, (u64, u64)> {
        std::mem::take(&mut *self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl tollgate_mediation::ChargedVolume for MediatedVolume {
    fn charged(&self, records: &[tollgate_mediation::ChargedRecord<'_>]) {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for record in records.iter().filter(|r| tollgate_fraud::Service::from_name(r.service).is_some()) {
            let at_ms = record.start_utc_seconds.saturating_mul(1000);
            let window = windows.entry(at_ms.div_euclid(self.window_ms).saturating_mul(self.window_ms)).or_default();
            window.0 += 1;
            window.1 = window.1.saturating_add(record.units);
        }
    }
}

/// What the worker is handed.
enum Work {
    Order(Order),
    /// Save this position once everything before it is done.
    Save(LedgerPosition),
}

/// The running detection: stop it with [`Fraud::stop`].
pub(crate) struct Fraud {
    stop: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// What the detection needs from `serve`.
pub(crate) struct FraudSetup {
    pub(crate) policy: Policy,
    pub(crate) data_dir: PathBuf,
    pub(crate) shards: usize,
    pub(crate) store: Store,
    pub(crate) alarms: Alarms,
    pub(crate) orders: Option<tollgate_orders::Orders>,
    pub(crate) runtime: tokio::runtime::Handle,
    /// Shared with `/metrics` ([`FraudMetrics`]).
    pub(crate) counters: Arc<FraudCounters>,
    /// The engine, for its count of usage it could not rate (online rating failures
    /// leave no ledger entry).
    pub(crate) engine: Arc<tollgate_engine::Engine>,
    /// What this server's mediation charged, when it rates files.
    pub(crate) mediated: Option<Arc<MediatedVolume>>,
}

impl Fraud {
    /// Starts the detection thread and its worker (on `setup.runtime`).
    pub(crate) fn start(setup: FraudSetup) -> anyhow::Result<Fraud> {
        let mut detectors = Detectors::new(&setup.policy).context("the fraud policy")?;
        // What mediation read before this start is not known: the windows up to now are
        // never judged for divergence.
        detectors.divergence.judge_from(jiff::Timestamp::now().as_millisecond());
        let position_path = setup.data_dir.join(POSITION_FILE);
        let resumed = follower(&setup.data_dir, setup.shards, &position_path, "fraud detection")?;
        // The detectors' state is memory: rebuilt from the last days of the ledger, read
        // again in silence up to where detection stood (what it found there was raised
        // before), then judged as usual.
        let warmup = warmup_month(setup.policy.warmup_days, jiff::Timestamp::now()).map(|month| {
            // Per shard, never later than where detection was reading it: what came after
            // is judged.
            let months: Vec<String> = resumed
                .position()
                .reading_months()
                .into_iter()
                .map(|reading| match reading {
                    Some(reading) if reading < month => reading,
                    _ => month.clone(),
                })
                .collect();
            months
        });
        let (follower, quiet_until) = match warmup {
            Some(months) => {
                let quiet = resumed.position().lsns();
                tracing::info!(?months, lsns = ?quiet, "fraud detection rebuilds its state from the recent ledger");
                (LedgerFollower::from_months(&setup.data_dir, &months)?, quiet)
            }
            None => (resumed, Vec::new()),
        };
        let counters = setup.counters;
        let (sender, receiver) = tokio::sync::mpsc::channel(WORKER_QUEUE);
        let worker = Worker {
            alarms: setup.alarms,
            store: setup.store,
            orders: setup.orders,
            position_path,
            counters: Arc::clone(&counters),
        };
        setup.runtime.spawn(worker.run(receiver));
        let (stop, stopped) = std::sync::mpsc::sync_channel(1);
        let engine = setup.engine;
        let mediated = setup.mediated;
        let thread = std::thread::Builder::new().name("tollgate-fraud".to_owned()).spawn(move || {
            super::serve::lower_thread_priority();
            let unrated = move || engine.metrics().iter().map(|shard| shard.unrated_events).sum::<u64>();
            let inputs = Inputs { unrated: &unrated, mediated: mediated.as_deref() };
            detect(follower, detectors, &quiet_until, &counters, &sender, &stopped, inputs);
        })?;
        tracing::info!(shards = setup.shards, "fraud detection following the rated-event ledger");
        Ok(Fraud { stop, thread })
    }

    /// Stops the thread (the worker ends with its channel).
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The follower from the saved position; from the ledger's end without one (or with one
/// of another shard count: the ledger of a resharded directory starts anew). `what`
/// names the reader in the log (`fraud detection`, `threshold evaluation`).
pub(crate) fn follower(
    data_dir: &Path,
    shards: usize,
    position_path: &Path,
    what: &str,
) -> anyhow::Result<LedgerFollower> {
    match std::fs::read_to_string(position_path) {
        Ok(text) => {
            let position = LedgerPosition::decode(&text, position_path)?;
            if position.shards() == shards {
                tracing::info!(lsns = ?position.lsns(), "{what} resumes where it stopped");
                return Ok(LedgerFollower::new(data_dir, position));
            }
            tracing::warn!(
                saved = position.shards(),
                shards,
                "the {what} position is of another shard count; starting at the ledger's end"
            );
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!("{what} starts at the ledger's end (no saved position)");
        }
        Err(err) => return Err(err).with_context(|| position_path.display().to_string()),
    }
    // Saved at once: what charging adds from now on is looked at, also across a restart
    // before anything new came.
    let follower = LedgerFollower::at_end(data_dir, shards)?;
    save(position_path, follower.position()).with_context(|| position_path.display().to_string())?;
    Ok(follower)
}

/// Writes the position file durably (temporary, fsync, rename, fsync of the directory).
pub(crate) fn save(path: &Path, position: &LedgerPosition) -> std::io::Result<()> {
    tollgate_engine::durable::replace_file(
        &tollgate_engine::fs::RealFs::new(),
        path,
        position.encode().as_bytes(),
        0o644,
    )
}

/// The minor-unit digits of currency `code` (2 without one), remembered in `digits`.
fn currency_digits(digits: &mut HashMap<String, u32>, code: Option<&str>) -> u32 {
    match code {
        Some(code) => *digits
            .entry(code.to_owned())
            .or_insert_with(|| tollgate_billing::minor_units("currency", code).unwrap_or(2)),
        None => 2,
    }
}

/// The month (`YYYY-MM`, UTC) the warm-up of `days` days before `now` starts in; `None`
/// for no warm-up.
fn warmup_month(days: u32, now: jiff::Timestamp) -> Option<String> {
    if days == 0 {
        return None;
    }
    let start = now.checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(days))).ok()?;
    Some(jiff::tz::Offset::UTC.to_datetime(start).strftime("%Y-%m").to_string())
}

/// What the detection thread is told besides the ledger.
struct Inputs<'a> {
    /// The engine's count of usage it could not rate.
    unrated: &'a dyn Fn() -> u64,
    mediated: Option<&'a MediatedVolume>,
}

/// The detection thread's loop: poll, detect, hand the orders on, ask for the position
/// to be saved, wait. Entries of a shard up to `quiet_until[shard]` (the warm-up: seen
/// before a restart) update the detectors' state and raise nothing. `inputs.unrated` is
/// the engine's count of usage answered `rating_failed`: what it grew by since the last
/// poll is told to the unrated-usage detector at the poll's time (online rating failures
/// leave no ledger entry; the bulk path's, counted too, are `tollgate mediate`'s when it
/// runs its own engine). What `inputs.mediated` gathered since the last poll goes to the
/// divergence detector first.
fn detect(
    mut follower: LedgerFollower,
    mut detectors: Detectors,
    quiet_until: &[u64],
    counters: &FraudCounters,
    sender: &tokio::sync::mpsc::Sender<Work>,
    stopped: &std::sync::mpsc::Receiver<()>,
    inputs: Inputs<'_>,
) {
    let Inputs { unrated, mediated } = inputs;
    let mut queue = ActionQueue::new(ACTION_QUEUE_ORDERS);
    let mut unrated_seen = unrated();
    let mut digits: HashMap<String, u32> = HashMap::new();
    let mut saved = follower.position().clone();
    let mut queue_dropped = 0;
    let mut failing = false;
    loop {
        // Taken before the ledger is read: what mediation charged is in by the time its
        // entries are.
        for (at_ms, (records, units)) in mediated.map(MediatedVolume::take).unwrap_or_default() {
            counters.mediation_input.fetch_add(records, Relaxed);
            detectors.divergence.observe_input(at_ms, records, units);
        }
        let mut newest_at = None;
        let polled = follower.poll_by_shard(&mut |shard, entry| {
            if quiet_until.get(shard).is_some_and(|quiet| entry.lsn <= *quiet) {
                let minor_digits = currency_digits(&mut digits, entry.currency.as_deref());
                if let Some(event) = tollgate_fraud::ledger::from_ledger_entry(&entry, minor_digits) {
                    counters.warmup_events.fetch_add(1, Relaxed);
                    detectors.observe(&event).for_each(drop);
                }
                return;
            }
            counters.entries.fetch_add(1, Relaxed);
            newest_at = newest_at.max(Some(entry.posted_at));
            let minor_digits = currency_digits(&mut digits, entry.currency.as_deref());
            let Some(event) = tollgate_fraud::ledger::from_ledger_entry(&entry, minor_digits) else { return };
            counters.events.fetch_add(1, Relaxed);
            for finding in detectors.observe_and_act(&event, &mut queue) {
                counters.found(&finding);
            }
        });
        match polled {
            Ok(_) if failing => {
                tracing::warn!("fraud detection reads the ledger again");
                failing = false;
            }
            Err(err) => {
                counters.read_errors.fetch_add(1, Relaxed);
                if !failing {
                    tracing::warn!(error = %err, "fraud detection could not read the rated-event ledger; retrying");
                    failing = true;
                }
            }
            Ok(_) => {}
        }
        let unrated_now = unrated();
        let told = unrated_now.saturating_sub(unrated_seen);
        unrated_seen = unrated_now;
        counters.unrated_online.fetch_add(told, Relaxed);
        if let Some(finding) = detectors.unrated.observe_unrated(jiff::Timestamp::now().as_millisecond(), told) {
            counters.found(&finding);
            tollgate_fraud::Actions::alarm(&mut queue, &finding);
        }
        if let Some(at) = newest_at {
            counters.lag_seconds.store(jiff::Timestamp::now().as_second() - at, Relaxed);
        }
        for (counter, lsn) in counters.lsns.iter().zip(follower.position().lsns()) {
            counter.store(lsn, Relaxed);
        }
        counters.polls.fetch_add(1, Relaxed);
        for order in queue.drain() {
            if sender.try_send(Work::Order(order)).is_err() {
                counters.dropped.fetch_add(1, Relaxed);
            }
        }
        counters.dropped.fetch_add(queue.dropped() - queue_dropped, Relaxed);
        queue_dropped = queue.dropped();
        // Never saved behind where detection stood: a warm-up cut short by a crash
        // starts again from the same place, judging nothing twice.
        let past_quiet = follower.position().lsns().iter().zip(quiet_until).all(|(at, quiet)| at >= quiet);
        if past_quiet
            && follower.position() != &saved
            && sender.try_send(Work::Save(follower.position().clone())).is_ok()
        {
            saved = follower.position().clone();
        }
        if !matches!(stopped.recv_timeout(POLL_INTERVAL), Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
            return;
        }
    }
}

/// Raises the alarms, places the suspensions and saves the position, in order.
struct Worker {
    alarms: Alarms,
    store: Store,
    orders: Option<tollgate_orders::Orders>,
    position_path: PathBuf,
    counters: Arc<FraudCounters>,
}

impl Worker {
    async fn run(self, mut receiver: tokio::sync::mpsc::Receiver<Work>) {
        while let Some(work) = receiver.recv().await {
            match work {
                Work::Order(Order::Alarm(fields)) => match report(&fields) {
                    Ok(report) => {
                        let object = report.alarmed_object.clone();
                        let cause = report.probable_cause.clone();
                        super::alarm::record_cause(&self.alarms, &object, &cause, Some(report)).await;
                    }
                    Err(err) => tracing::warn!(object = %fields.alarmed_object, error = %err, "fraud alarm not raised"),
                },
                Work::Order(Order::Suspend { subscriber, key }) => {
                    if let Err(err) = self.suspend(subscriber, &key).await {
                        tracing::warn!(subscriber, %key, error = %err, "fraud suspension not placed");
                    }
                }
                Work::Save(position) => {
                    let path = self.position_path.clone();
                    let saved = tokio::task::spawn_blocking(move || save(&path, &position)).await;
                    if !matches!(saved, Ok(Ok(()))) {
                        tracing::warn!(path = %self.position_path.display(), "the fraud position was not saved; a restart reads from the last saved one");
                    }
                }
            }
        }
    }

    /// Places an order suspending the line of engine subscription `subscriber`, if it is
    /// a BSS line and still active. Returns whether one was placed.
    async fn suspend(&self, subscriber: u64, key: &str) -> anyhow::Result<bool> {
        let Some(orders) = &self.orders else { return Ok(false) };
        let Some(line) = self.store.subscription_by_engine_id(subscriber).await? else {
            tracing::info!(subscriber, "a fraud suspension for a subscription the BSS does not know: alarm only");
            return Ok(false);
        };
        let line = line.value;
        if line.state != "active" {
            return Ok(false);
        }
        let doc = json!({
            "billingAccount": {"id": line.billing_account_id},
            "category": "fraud",
            "externalId": key,
            "description": format!("fraud: suspend line {} ({key})", line.id),
            "productOrderItem": [{"id": "1", "action": "modify", "product": {"id": line.id, "status": "suspended"}}],
        });
        let who = tollgate_customers::Principal::admin(ACTOR);
        // Under the finding's key: a finding handed over again after a crash (the position
        // is saved after its order) finds the order placed the first time.
        orders.create_once(&who, doc, &format!("fraud:{key}"), jiff::Timestamp::now()).await?;
        self.counters.suspensions.fetch_add(1, Relaxed);
        Ok(true)
    }
}

/// A finding's alarm fields as a report of `tollgate-alarms`.
fn report(fields: &AlarmFields) -> anyhow::Result<AlarmReport> {
    Ok(AlarmReport {
        alarmed_object: fields.alarmed_object.clone(),
        alarmed_object_type: fields.alarmed_object_type.to_owned(),
        alarm_type: AlarmType::parse(fields.alarm_type, "alarmType")?,
        probable_cause: fields.probable_cause.to_owned(),
        specific_problem: super::alarm::source::problem_text(&fields.specific_problem),
        perceived_severity: PerceivedSeverity::parse(fields.perceived_severity, "perceivedSeverity")?,
        source_system_id: fields.source_system_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_fraud::{Action, Finding, Severity, Subject};

    fn policy_of(name: &str, text: &str) -> anyhow::Result<Option<Policy>> {
        let path = std::env::temp_dir().join(format!("tollgate-fraud-policy-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("policy file");
        let args = FraudArgs { fraud: false, fraud_policy: Some(path.clone()) };
        let policy = args.policy();
        std::fs::remove_file(path).ok();
        policy
    }

    #[test]
    fn a_policy_file_is_toml_or_json_and_a_bad_one_names_the_flag() {
        assert_eq!(FraudArgs { fraud: false, fraud_policy: None }.policy().expect("off"), None);
        assert_eq!(FraudArgs { fraud: true, fraud_policy: None }.policy().expect("on"), Some(Policy::default()));
        let toml = policy_of("p.toml", "[irsf]\nmin_calls = 3\n").expect("toml").expect("on");
        assert_eq!(toml.irsf.min_calls, 3);
        let json = policy_of("p.json", r#"{"irsf": {"min_calls": 4}}"#).expect("json").expect("on");
        assert_eq!(json.irsf.min_calls, 4);
        let unknown = policy_of("q.toml", "[irsf]\nmin_call = 3\n").expect_err("a misspelt field");
        assert!(format!("{unknown:#}").starts_with("--fraud-policy "), "{unknown:#}");
        let out_of_range = policy_of("r.toml", "[irsf]\nmin_calls = 0\n").expect_err("out of range");
        assert!(format!("{out_of_range:#}").contains("irsf.min_calls"), "{out_of_range:#}");
    }

    #[test]
    fn every_detector_s_finding_is_an_alarm_report_the_alarms_crate_takes() {
        for detector in DetectorKind::ALL {
            let subject = if detector.per_subscriber() { Subject::Subscriber(42) } else { Subject::System };
            let finding = Finding {
                detector,
                subject,
                at_ms: 0,
                window_from_at_ms: 0,
                window_until_at_ms: 0,
                severity: Severity::Critical,
                text: "calls\nto 882".to_owned(),
                evidence: Vec::new(),
                action: Action::Alarm,
            };
            let report = report(&finding.alarm_fields()).expect("a report");
            report.check().expect("a valid report");
            assert_eq!(report.perceived_severity, PerceivedSeverity::Critical);
            assert_eq!(report.specific_problem, "calls to 882", "control characters as spaces");
            assert!(report.alarmed_object.ends_with(detector.name()));
        }
    }
}

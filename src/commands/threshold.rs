//! Thresholds: `tollgate threshold set|list|delete --billing-account ID` on the store,
//! and their evaluation in `tollgate serve` (with a store). A thread of its own (at the
//! management plane's lower priority) follows the engine's rated-event ledger
//! (`tollgate_engine::ledger::LedgerFollower`, reading the files the ledger thread made
//! durable, never on a shard's path) and notes the accounts with thresholds that an entry
//! touched; a worker on the management runtime, handed them over a bounded channel, reads
//! each account's state (`Engine::account_view` through the `EnginePort`) and lets
//! `tollgate_customers::Thresholds` decide and record the crossings: each once, under its
//! key, with its hub event in the same transaction, which the hub's worker delivers as a
//! signed webhook (retried, dead-lettered).
//!
//! Where the follower stands is saved in `DATA_DIR/thresholds.position` by the worker
//! once the accounts of the entries before it were evaluated, so a restart resumes there
//! and evaluates those accounts again: what was recorded before the crash is not recorded
//! (nor published) twice. Without a position file (the first start) the follower starts
//! at the ledger's end. The configured accounts are cached and reloaded every
//! [`REFRESH_INTERVAL`]; an account newly configured is evaluated at once (its balance may
//! already be below), and so is every configured account at each start: crossings are
//! decided on the account's state, not on the entries, so entries read before the first
//! load (or before a threshold was set) lose nothing. A bundle about to end is a matter
//! of time, not of charges: the accounts with a `bundle_expiry` threshold are evaluated
//! every [`EXPIRY_SCAN_INTERVAL`] as well.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use jiff::Timestamp;
use serde_json::json;
use tollgate_customers::{
    crossing_doc, parse_threshold, threshold_doc, EnginePort, Template, Templates, ThresholdKind, Thresholds,
};
use tollgate_engine::ledger::{LedgerFollower, LedgerPosition};
use tollgate_oss_adapters::admin::{Exposition, Kind, MetricsSource};
use tollgate_store::{Store, ThresholdRow};

use super::bss::{actor, runtime, DatabaseArgs};

/// `tollgate threshold …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ThresholdCommand {
    /// Sets a threshold of a billing account (the same kind and level again changes its
    /// language and webhook only). Prints it as JSON.
    Set {
        #[arg(long)]
        billing_account: String,
        /// `balance_below`, `spending_cap` (postpaid and hybrid accounts), `bundle_used`,
        /// `bundle_expiry`, or `renewal_refused` (a prepaid renewal's fees refused by the
        /// engine; told once per renewal, no level).
        #[arg(long)]
        kind: String,
        /// An amount in the account's currency (`balance_below`: `5.00`, may be negative
        /// for a postpaid account's balance; `spending_cap`: `50`, the unbilled charges),
        /// a percentage of an allowance bucket's grant (`bundle_used`: `80`), or the time
        /// before a bucket with units left ends (`bundle_expiry`: `48h`, `3d`); none for
        /// `renewal_refused`.
        #[arg(long, allow_negative_numbers = true, default_value = "")]
        level: String,
        /// A bundle threshold watches this subscription's buckets only (the store's
        /// subscription id); without it, every subscription of the account.
        #[arg(long)]
        subscription: Option<String>,
        /// The message's language: `en`, `de`, or one of --templates.
        #[arg(long, default_value = "en")]
        language: String,
        /// Record crossings without publishing them to the hub's listeners.
        #[arg(long)]
        no_webhook: bool,
        /// Also send each crossing's message by SMS to the numbers of the account's lines
        /// (of `--subscription`'s only, if given), through `serve --sms-gateway`.
        #[arg(long)]
        sms: bool,
        #[command(flatten)]
        templates: TemplateArgs,
    },
    /// The billing account's thresholds and the crossings notified, as JSON.
    List {
        #[arg(long)]
        billing_account: String,
        /// Crossings shown at most (the oldest first).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Deletes a threshold of the billing account (its crossings stay).
    Delete {
        #[arg(long)]
        billing_account: String,
        #[arg(long)]
        id: String,
    },
}

/// The message templates' file.
#[derive(Debug, Clone, Args)]
pub(crate) struct TemplateArgs {
    /// Threshold message templates: a TOML file of `[LANGUAGE]` tables with
    /// `balance_below` and `bundle_used` texts, and optionally `spending_cap`,
    /// `bundle_expiry` and `renewal_refused` (placeholders `{name}`, `{amount}`, `{balance}`, `{spent}`,
    /// `{percent}`, `{bundle}`, `{remaining}`, `{until}`, `{hours}`); added to or replacing
    /// the built-in `en` and `de`.
    #[arg(long = "threshold-templates", value_name = "FILE")]
    threshold_templates: Option<PathBuf>,
}

impl TemplateArgs {
    pub(crate) fn templates(&self) -> anyhow::Result<Templates> {
        let Some(path) = &self.threshold_templates else { return Ok(Templates::default()) };
        let context = || format!("--threshold-templates {}", path.display());
        let text = std::fs::read_to_string(path).with_context(context)?;
        let overrides: BTreeMap<String, Template> = toml::from_str(&text).with_context(context)?;
        Templates::with(overrides).with_context(context)
    }
}

pub(crate) fn run(database: &DatabaseArgs, command: ThresholdCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = database.open().await?;
        let now = Timestamp::now();
        match command {
            ThresholdCommand::Set {
                billing_account,
                kind,
                level,
                subscription,
                language,
                no_webhook,
                sms,
                templates,
            } => {
                let thresholds = Thresholds::new(store, templates.templates()?);
                let spec = parse_threshold(
                    &kind,
                    &level,
                    subscription.as_deref(),
                    &language,
                    !no_webhook,
                    thresholds.templates(),
                )?;
                let spec = tollgate_customers::ThresholdSpec { sms, ..spec };
                let (row, created) = thresholds.set(&actor(), &billing_account, &spec, now).await?;
                println!("{}", serde_json::to_string_pretty(&threshold_doc(&row))?);
                eprintln!("threshold {} {}", row.id, if created { "created" } else { "updated" });
            }
            ThresholdCommand::List { billing_account, limit } => {
                let thresholds = Thresholds::new(store.clone(), Templates::default());
                let rows = thresholds.list(&billing_account).await?;
                let crossings = store.crossings_of(&billing_account, limit).await?;
                let crossings: Vec<_> = crossings.iter().map(crossing_doc).collect();
                let shown = json!({
                    "billingAccount": {"id": billing_account},
                    "thresholds": rows.iter().map(threshold_doc).collect::<Vec<_>>(),
                    "crossings": crossings,
                });
                println!("{}", serde_json::to_string_pretty(&shown)?);
            }
            ThresholdCommand::Delete { billing_account, id } => {
                let thresholds = Thresholds::new(store, Templates::default());
                let row = thresholds.delete(&actor(), &billing_account, &id, now).await?;
                println!("{}", serde_json::to_string_pretty(&threshold_doc(&row))?);
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// How often the follower looks for new ledger entries (the ledger thread builds every
/// 200 ms or more).
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often the worker reloads the configured thresholds.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// How often the accounts with a `bundle_expiry` threshold are evaluated without a charge.
pub(crate) const EXPIRY_SCAN_INTERVAL: Duration = Duration::from_secs(60);
/// Batches waiting for the worker, at most; past it the thread keeps its accounts and
/// hands them over with the next poll's.
const WORKER_QUEUE: usize = 64;
/// The position file in the data directory.
pub(crate) const POSITION_FILE: &str = "thresholds.position";

/// What the evaluation counts, read by `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ThresholdCounters {
    polls: AtomicU64,
    /// Ledger entries of accounts with thresholds.
    entries: AtomicU64,
    /// Accounts evaluated (read from the engine and decided on).
    evaluations: AtomicU64,
    /// Crossings recorded (each once, with its event when it has a webhook).
    crossings: AtomicU64,
    /// Evaluations that failed (the engine or the store), tried again.
    errors: AtomicU64,
}

/// The evaluation's figures on `/metrics`.
pub(crate) struct ThresholdMetrics(pub(crate) Arc<ThresholdCounters>);

impl MetricsSource for ThresholdMetrics {
    fn write<'a>(
        &'a self,
        page: &'a mut Exposition,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let c = &self.0;
            let counters = [
                (
                    "tollgate_thresholds_polls_total",
                    "Reads of the rated-event ledger by the threshold evaluation.",
                    &c.polls,
                ),
                (
                    "tollgate_thresholds_ledger_entries_total",
                    "Ledger entries of accounts with thresholds the evaluation read.",
                    &c.entries,
                ),
                ("tollgate_thresholds_evaluations_total", "Accounts whose thresholds were evaluated.", &c.evaluations),
                ("tollgate_thresholds_crossings_total", "Threshold crossings recorded (each once).", &c.crossings),
                ("tollgate_thresholds_errors_total", "Threshold evaluations that failed and are retried.", &c.errors),
            ];
            for (name, help, value) in counters {
                page.family(name, Kind::Counter, help);
                page.sample(name, &[], value.load(Relaxed));
            }
        })
    }
}

/// Engine accounts with thresholds, shared by the worker (which loads them) and the thread
/// (which notes only these).
type Watched = Arc<RwLock<HashSet<u64>>>;

/// What the worker is handed: accounts to evaluate, then the position to save.
struct Batch {
    accounts: Vec<u64>,
    position: LedgerPosition,
}

/// The running evaluation: stop it with [`ThresholdEvaluation::stop`].
pub(crate) struct ThresholdEvaluation {
    stop: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// What the evaluation needs from `serve`.
pub(crate) struct ThresholdSetup {
    pub(crate) data_dir: PathBuf,
    pub(crate) shards: usize,
    pub(crate) store: Store,
    pub(crate) templates: Templates,
    pub(crate) engine: Arc<dyn EnginePort>,
    pub(crate) runtime: tokio::runtime::Handle,
    /// Shared with `/metrics` ([`ThresholdMetrics`]).
    pub(crate) counters: Arc<ThresholdCounters>,
}

impl ThresholdEvaluation {
    /// Starts the following thread and its worker (on `setup.runtime`).
    pub(crate) fn start(setup: ThresholdSetup) -> anyhow::Result<ThresholdEvaluation> {
        let position_path = setup.data_dir.join(POSITION_FILE);
        let follower = super::fraud::follower(&setup.data_dir, setup.shards, &position_path, "threshold evaluation")?;
        let watched: Watched = Arc::default();
        let (sender, receiver) = tokio::sync::mpsc::channel(WORKER_QUEUE);
        let worker = Worker {
            thresholds: Thresholds::new(setup.store.clone(), setup.templates),
            store: setup.store,
            engine: setup.engine,
            watched: Arc::clone(&watched),
            position_path,
            configured: HashMap::new(),
            retry: HashSet::new(),
            counters: Arc::clone(&setup.counters),
        };
        setup.runtime.spawn(worker.run(receiver));
        let (stop, stopped) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new().name("tollgate-thresholds".to_owned()).spawn(move || {
            super::serve::lower_thread_priority();
            follow(follower, &watched, &setup.counters, &sender, &stopped);
        })?;
        tracing::info!(shards = setup.shards, "threshold evaluation following the rated-event ledger");
        Ok(ThresholdEvaluation { stop, thread })
    }

    /// Stops the thread (the worker ends with its channel).
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The thread's loop: poll, note the watched accounts touched, hand them over with the
/// position, wait.
fn follow(
    mut follower: LedgerFollower,
    watched: &Watched,
    counters: &ThresholdCounters,
    sender: &tokio::sync::mpsc::Sender<Batch>,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    let mut pending: HashSet<u64> = HashSet::new();
    let mut handed = follower.position().clone();
    let mut failing = false;
    loop {
        let polled = {
            let watched = watched.read().unwrap_or_else(PoisonError::into_inner);
            follower.poll(&mut |entry| {
                if watched.contains(&entry.account) {
                    counters.entries.fetch_add(1, Relaxed);
                    pending.insert(entry.account);
                }
            })
        };
        match polled {
            Ok(_) if failing => {
                tracing::warn!("threshold evaluation reads the ledger again");
                failing = false;
            }
            Err(err) => {
                if !failing {
                    tracing::warn!(error = %err, "threshold evaluation could not read the rated-event ledger; retrying");
                    failing = true;
                }
            }
            Ok(_) => {}
        }
        counters.polls.fetch_add(1, Relaxed);
        if follower.position() != &handed || !pending.is_empty() {
            let batch = Batch { accounts: pending.iter().copied().collect(), position: follower.position().clone() };
            // Full: the accounts stay pending and go with the next poll's; the position
            // is saved only after they were evaluated.
            if sender.try_send(batch).is_ok() {
                pending.clear();
                handed = follower.position().clone();
            }
        }
        if !matches!(stopped.recv_timeout(POLL_INTERVAL), Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
            return;
        }
    }
}

/// Evaluates the accounts handed over and saves the position, in order.
struct Worker {
    thresholds: Thresholds,
    store: Store,
    engine: Arc<dyn EnginePort>,
    watched: Watched,
    position_path: PathBuf,
    /// Per engine account: its currency and thresholds, as last loaded.
    configured: HashMap<u64, (String, Vec<ThresholdRow>)>,
    /// Accounts whose evaluation failed (the engine or the store), tried again at the
    /// next batch or refresh.
    retry: HashSet<u64>,
    counters: Arc<ThresholdCounters>,
}

impl Worker {
    async fn run(mut self, mut receiver: tokio::sync::mpsc::Receiver<Batch>) {
        let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
        let mut expiry_scan = tokio::time::interval(EXPIRY_SCAN_INTERVAL);
        loop {
            tokio::select! {
                batch = receiver.recv() => {
                    let Some(batch) = batch else { return };
                    let mut accounts: Vec<u64> = batch.accounts;
                    accounts.extend(self.retry.drain());
                    self.evaluate(accounts).await;
                    if self.retry.is_empty() {
                        self.save(batch.position).await;
                    }
                }
                _ = refresh.tick() => {
                    let fresh = self.reload().await;
                    let mut accounts: Vec<u64> = fresh;
                    accounts.extend(self.retry.drain());
                    self.evaluate(accounts).await;
                }
                _ = expiry_scan.tick() => {
                    let mut accounts: Vec<u64> = self
                        .configured
                        .iter()
                        .filter(|(_, (_, rows))| rows.iter().any(|row| row.kind == ThresholdKind::BundleExpiry.as_str()))
                        .map(|(account, _)| *account)
                        .collect();
                    accounts.extend(self.retry.drain());
                    self.evaluate(accounts).await;
                }
            }
        }
    }

    /// Loads the configured thresholds; returns the accounts configured since the last
    /// load (all at the first), to be evaluated at once.
    async fn reload(&mut self) -> Vec<u64> {
        let rows = match self.store.watched_thresholds().await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = %err, "thresholds not reloaded; evaluating with the last ones");
                return Vec::new();
            }
        };
        let mut configured: HashMap<u64, (String, Vec<ThresholdRow>)> = HashMap::new();
        for row in rows {
            let entry = configured.entry(row.engine_account_id).or_insert_with(|| (row.currency.clone(), Vec::new()));
            entry.1.push(row.threshold);
        }
        let fresh: Vec<u64> = configured
            .iter()
            .filter(|(account, (_, rows))| {
                self.configured
                    .get(account)
                    .is_none_or(|(_, old)| rows.iter().any(|row| !old.iter().any(|o| o.id == row.id)))
            })
            .map(|(account, _)| *account)
            .collect();
        *self.watched.write().unwrap_or_else(PoisonError::into_inner) = configured.keys().copied().collect();
        self.configured = configured;
        fresh
    }

    async fn evaluate(&mut self, mut accounts: Vec<u64>) {
        accounts.sort_unstable();
        accounts.dedup();
        for account in accounts {
            // The thresholds as they are now: a crossing, a re-arming changes them.
            let Some((currency, _)) = self.configured.get(&account).cloned() else { continue };
            match self.evaluate_one(account, &currency).await {
                Ok(()) => {
                    self.counters.evaluations.fetch_add(1, Relaxed);
                }
                Err(err) => {
                    self.counters.errors.fetch_add(1, Relaxed);
                    tracing::warn!(account, error = %err, "thresholds not evaluated; trying again");
                    self.retry.insert(account);
                }
            }
        }
    }

    async fn evaluate_one(&mut self, account: u64, currency: &str) -> anyhow::Result<()> {
        let Some(view) = self.engine.account(account).await? else { return Ok(()) };
        let billing_account = match self.configured.get(&account).and_then(|(_, rows)| rows.first()) {
            Some(row) => row.billing_account_id.clone(),
            None => return Ok(()),
        };
        let rows = self.store.thresholds_of(&billing_account).await?;
        let recorded = self.thresholds.evaluate(&rows, currency, &view, Timestamp::now()).await?;
        for crossing in &recorded {
            self.counters.crossings.fetch_add(1, Relaxed);
            tracing::info!(
                billing_account = %crossing.billing_account_id,
                threshold = %crossing.threshold_id,
                key = %crossing.crossing_key,
                event = crossing.event_id.as_deref().unwrap_or("-"),
                "threshold crossed"
            );
        }
        if let Some(entry) = self.configured.get_mut(&account) {
            entry.1 = self.store.thresholds_of(&billing_account).await?;
        }
        Ok(())
    }

    async fn save(&self, position: LedgerPosition) {
        let path = self.position_path.clone();
        let saved = tokio::task::spawn_blocking(move || super::fraud::save(&path, &position)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!(path = %self.position_path.display(), "the thresholds position was not saved; a restart reads from the last saved one");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_templates_file_adds_languages_and_a_bad_one_names_the_flag() {
        let dir = std::env::temp_dir().join(format!("tollgate-threshold-templates-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.toml");
        std::fs::write(&path, "[fr]\nbalance_below = \"{name} : solde {balance}\"\nbundle_used = \"{percent} %\"\n")
            .expect("write");
        let args = TemplateArgs { threshold_templates: Some(path.clone()) };
        assert_eq!(args.templates().expect("valid").languages(), ["de", "en", "fr"]);
        std::fs::write(&path, "[fr]\nbalance_below = \"x\"\n").expect("write");
        let missing = args.templates().expect_err("bundle_used missing");
        assert!(format!("{missing:#}").starts_with("--threshold-templates "), "{missing:#}");
        std::fs::remove_dir_all(dir).ok();
    }
}

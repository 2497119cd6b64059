//! The running engine: one worker thread per shard owns its accounts; requests are
//! routed to the owner over bounded channels, decided in batches, journaled with one
//! group commit per batch, and answered only after that commit.
//!
//! Each shard has two queues: one for the network's requests (and control messages), one
//! for bulk records ([`Engine::submit_records`]: mediation). A pass takes every request
//! waiting first and, when there are any, charges at most [`BULK_BESIDE_REQUESTS`]
//! records beside them, else at most [`BULK_PER_PASS`] (a batch of records is charged
//! over several passes then, and answered after the last), so an online request waits
//! behind a bounded slice of bulk work however much is queued. A stop answers after the
//! bulk jobs sent before it were charged.

use std::fs::File;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::api::{Answer, Body, Operation, Outcome, Request, Target};
use crate::bulk::charge_record;
use crate::config::ChargingConfig;
use crate::config::{EngineConfig, MAX_IDENTITIES, MAX_KEY_BYTES, MAX_TEXT_BYTES};
use crate::decide::sessions::expire;
use crate::decide::{decide, Context, Resolved};
use crate::directory::Directory;
use crate::error::EngineError;
use crate::format::charges::ChargesWriter;
use crate::fs::FileSystem;
use crate::journal::{FsyncPolicy, Journal, JournalEntry, RecordKind, MAX_RECORD_BYTES};
use crate::metrics::{Histogram, ShardMetrics, ShardMetricsView};
use crate::model::AccountId;
use crate::plans::Plans;
use crate::records::{RecordAnswer, RecordCharge, RecordOutcome};
use crate::recovery::{recover, start_segment, Recovered};
use crate::snapshot::Captured;
use crate::state::ShardState;

mod commit;
mod health;
mod ledger;
mod snapshots;
use commit::{Answers, CommitStage, HAND_OVER_ITEMS};
use health::ShardHealth;
pub use health::ShardStatus;
use snapshots::{SnapshotRetry, Snapshotter};

/// Where "now" comes from. The engine never reads the system clock directly, so tests
/// can drive time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Seconds since the Unix epoch (UTC).
    fn now(&self) -> i64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
    }
}

/// A clock a test sets by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now: i64) -> ManualClock {
        ManualClock(AtomicI64::new(now))
    }
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

type Inspector = Box<dyn FnOnce(&ShardState) + Send>;
/// Answers of a batch, each with the position of its request.
type Answered = Vec<(usize, Answer)>;
/// Answers of a message of rated records, each with the position of its record.
type RecordsAnswered = Vec<(usize, RecordAnswer)>;

/// Records a pass charges at most beside the network's requests: a bound on the bulk work
/// a request waits behind (the decisions and the journal write of about this many
/// records, some hundreds of microseconds).
pub const BULK_BESIDE_REQUESTS: usize = 256;

/// Records a pass charges at most when no request waits: a request that arrives during
/// the pass waits behind this much bulk work at most (some milliseconds), while the
/// group commit still spreads over thousands of records.
pub const BULK_PER_PASS: usize = 8_192;

/// A batch of records being charged over several passes: its answers so far.
struct PartialRecords {
    records: Arc<Vec<RecordCharge>>,
    positions: Vec<usize>,
    /// How many of `positions` were charged.
    done: usize,
    answered: RecordsAnswered,
    reply: Sender<RecordsAnswered>,
}

enum Job {
    Request {
        request: Request,
        resolved: Resolved,
        reply: Reply,
    },
    /// Many requests for one shard, sent as one message and answered as one message.
    Batch {
        items: Vec<(usize, Resolved, Request)>,
        reply: Sender<Vec<(usize, Answer)>>,
    },
    /// Rated records for one shard (the bulk path), answered as one message.
    Records {
        /// The whole batch, shared by the shards: routing moves no record.
        records: Arc<Vec<RecordCharge>>,
        /// Where this shard's records are in `records`, in order.
        positions: Vec<usize>,
        reply: Sender<RecordsAnswered>,
    },
    Inspect(Inspector),
    Snapshot(Sender<Result<(), EngineError>>),
    Stop(Sender<Result<(), EngineError>>),
}

/// Called with the answer once it is durable; must not block.
pub type Callback = Box<dyn FnOnce(Result<Answer, EngineError>) + Send>;

enum Reply {
    One(Sender<Result<Answer, EngineError>>),
    Callback(Callback),
}

impl Reply {
    fn send(self, answer: Result<Answer, EngineError>) {
        // A caller that went away no longer wants its answer; the change stands.
        match self {
            Reply::One(sender) => drop(sender.send(answer)),
            Reply::Callback(callback) => callback(answer),
        }
    }
}

/// Money moved since the data directory was created ([`Engine::money_totals`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MoneyTotals {
    pub opening: rust_decimal::Decimal,
    pub charged: rust_decimal::Decimal,
    pub top_ups: rust_decimal::Decimal,
    pub refunds: rust_decimal::Decimal,
    pub adjustments: rust_decimal::Decimal,
    /// Σ balances of every account now.
    pub balances: rust_decimal::Decimal,
}

impl MoneyTotals {
    /// Whether the balances are what the money moved says.
    pub fn conserved(&self) -> bool {
        self.balances == self.opening + self.top_ups + self.refunds + self.adjustments - self.charged
    }
}

/// What opening the engine found.
#[derive(Debug, Clone)]
pub struct OpenReport {
    pub shards: Vec<Recovered>,
    pub accounts: usize,
    pub subscriptions: usize,
}

/// The charging engine.
pub struct Engine {
    senders: Vec<Sender<Job>>,
    /// Each shard's queue of bulk records.
    bulk_senders: Vec<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    directory: Arc<Directory>,
    plans: Arc<Plans>,
    clock: Arc<dyn Clock>,
    health: Arc<Vec<ShardHealth>>,
    data_dir: std::path::PathBuf,
    ledger: Option<ledger::LedgerThread>,
    _lock: Option<File>,
    report: OpenReport,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("shards", &self.senders.len()).field("report", &self.report).finish()
    }
}

impl Engine {
    /// Opens (recovering if needed) the engine in `config.data_dir`.
    pub fn open(config: EngineConfig, plans: Plans, clock: Arc<dyn Clock>) -> Result<Engine, EngineError> {
        if config.shards == 0 || config.shards > 256 {
            return Err(EngineError::Config("shards must be 1 to 256".to_owned()));
        }
        if config.ledger && !config.archive_segments {
            return Err(EngineError::Config(
                "the rated-event ledger reads archived journal segments: keep archiving on, or turn the ledger off"
                    .to_owned(),
            ));
        }
        let fs = &*config.fs;
        crate::durable::create_dir_all(fs, &config.data_dir).map_err(EngineError::io(&config.data_dir))?;
        let lock = lock_data_dir(fs, &config.data_dir)?;
        crate::reshard::check_not_interrupted(fs, &config.data_dir)?;
        crate::layout::check_and_record(fs, &config.data_dir, config.shards)?;
        let plans = Arc::new(plans);
        let directory = Arc::new(Directory::new());
        let charging = Arc::new(config.charging.clone());
        // Recover every shard in parallel.
        let recovered: Vec<Result<(ShardState, Journal, Recovered), EngineError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..config.shards as u32)
                .map(|shard| {
                    let config = &config;
                    scope.spawn(move || {
                        recover(&*config.fs, &config.data_dir, shard, config.charging.dedupe_window, config.fsync)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(EngineError::Unavailable("recovery thread panicked"))))
                .collect()
        });
        let mut senders = Vec::with_capacity(config.shards);
        let mut bulk_senders = Vec::with_capacity(config.shards);
        let mut workers = Vec::with_capacity(config.shards);
        let mut reports = Vec::with_capacity(config.shards);
        let health: Arc<Vec<ShardHealth>> = Arc::new((0..config.shards).map(|_| ShardHealth::default()).collect());
        let (mut accounts, mut subscriptions) = (0, 0);
        let mut journal_ends = Vec::with_capacity(config.shards);
        for (shard, result) in recovered.into_iter().enumerate() {
            let (state, journal, report) = result?;
            health[shard].set_durable(state.lsn);
            journal_ends.push(state.lsn);
            let chunks = Arc::new(std::sync::Mutex::new(report.chunks.clone()));
            let snapshot_lsn = report.snapshot_lsn;
            let snapshot_retry = SnapshotRetry::default();
            state.register(&directory);
            accounts += state.accounts.len();
            subscriptions += state.subscriptions.len();
            reports.push(report);
            let (sender, receiver) = bounded(config.queue_capacity);
            let (bulk_sender, bulk) = bounded(config.queue_capacity);
            let stage = match config.fsync {
                FsyncPolicy::EveryBatch => Some(
                    CommitStage::start(shard as u32, Arc::clone(&health)).map_err(EngineError::io(&config.data_dir))?,
                ),
                FsyncPolicy::Interval(_) | FsyncPolicy::Never => None,
            };
            let mut worker = Worker {
                shard: shard as u32,
                state,
                journal: journal.timed(Arc::clone(&health[shard].metrics.fsync)),
                receiver,
                bulk,
                stopping: None,
                partial: std::collections::VecDeque::new(),
                plans: Arc::clone(&plans),
                directory: Arc::clone(&directory),
                charging: Arc::clone(&charging),
                clock: Arc::clone(&clock),
                config: config.clone(),
                health: Arc::clone(&health),
                next_reap_at: 0,
                snapshot_retry: snapshot_retry.clone(),
                snapshot_lsn,
                chunks: Arc::clone(&chunks),
                stage,
                snapshots: Some(
                    Snapshotter::start(&config, shard as u32, Arc::clone(&chunks), snapshot_retry)
                        .map_err(EngineError::io(&config.data_dir))?,
                ),
            };
            let handle = std::thread::Builder::new()
                .name(format!("tollgate-shard-{shard}"))
                .spawn(move || worker.run())
                .map_err(EngineError::io(&config.data_dir))?;
            senders.push(sender);
            bulk_senders.push(bulk_sender);
            workers.push(handle);
        }
        let ledger = if config.ledger {
            let builder = crate::ledger::LedgerBuilder::open(
                Arc::clone(&config.fs),
                &config.data_dir,
                config.shards,
                Some(&journal_ends),
            )?;
            Some(ledger::LedgerThread::start(builder, Arc::clone(&health)).map_err(EngineError::io(&config.data_dir))?)
        } else {
            None
        };
        Ok(Engine {
            senders,
            bulk_senders,
            workers,
            directory,
            plans,
            clock,
            health,
            data_dir: config.data_dir.clone(),
            ledger,
            _lock: lock,
            report: OpenReport { shards: reports, accounts, subscriptions },
        })
    }

    pub fn report(&self) -> &OpenReport {
        &self.report
    }

    pub fn plans(&self) -> &Plans {
        &self.plans
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Each shard's health: serving, or failed after a journal failure and refusing
    /// requests until it has rebuilt itself (see the module `health`'s policy).
    pub fn health(&self) -> Vec<ShardStatus> {
        self.health.iter().enumerate().map(|(shard, health)| health.status(shard as u32)).collect()
    }

    /// Each shard's counters for a monitoring scrape (atomics read without stopping
    /// anything; each figure is exact, the set is not one instant's).
    pub fn metrics(&self) -> Vec<ShardMetricsView> {
        self.health
            .iter()
            .zip(self.senders.iter().zip(&self.bulk_senders))
            .enumerate()
            .map(|(shard, (health, (sender, bulk)))| {
                let status = health.status(shard as u32);
                let metrics = &health.metrics;
                ShardMetricsView {
                    shard: shard as u32,
                    serving: status.state == "serving",
                    queue_depth: (sender.len() + bulk.len()) as u64,
                    requests: metrics.requests.load(Ordering::Relaxed),
                    rated_events: metrics.rated_events.load(Ordering::Relaxed),
                    unrated_events: metrics.unrated_events.load(Ordering::Relaxed),
                    open_reservations: metrics.reservations.load(Ordering::Relaxed),
                    journal_failures: status.failures,
                    refused: status.refused,
                    fsync: metrics.fsync.snapshot(),
                }
            })
            .collect()
    }

    /// Whether every shard serves.
    pub fn ready(&self) -> bool {
        self.health().iter().all(|status| status.state == "serving")
    }

    fn shard_of(&self, account: AccountId) -> usize {
        shard_of(account, self.senders.len())
    }

    /// Resolves a request's target, or answers it at once (unknown subscriber, bad input).
    fn route(&self, request: &Request) -> Result<(usize, Resolved), Outcome> {
        check_bounds(request).map_err(Outcome::Invalid)?;
        let resolved = match &request.target {
            Target::Account(account) => Resolved { account: *account, subscription: None },
            Target::Subscription(subscription) => match self.directory.account_of(*subscription) {
                Some(account) => Resolved { account, subscription: Some(*subscription) },
                None => return Err(Outcome::UnknownSubscriber),
            },
            Target::Subscriber(identity) => match self.directory.subscriber(identity) {
                Some((subscription, account)) => Resolved { account, subscription: Some(subscription) },
                None => return Err(Outcome::UnknownSubscriber),
            },
        };
        Ok((self.shard_of(resolved.account), resolved))
    }

    /// Executes one request and waits for its (durable) answer.
    pub fn execute(&self, request: Request) -> Result<Answer, EngineError> {
        let (shard, resolved) = match self.route(&request) {
            Ok(route) => route,
            Err(outcome) => return Ok(Answer::outcome(outcome)),
        };
        let (sender, receiver) = bounded(1);
        self.senders[shard]
            .send(Job::Request { request, resolved, reply: Reply::One(sender) })
            .map_err(|_| EngineError::Unavailable("shard worker stopped"))?;
        receiver.recv().map_err(|_| EngineError::Unavailable("shard worker stopped"))?
    }

    /// Submits one request without waiting: `callback` runs on the shard's thread or its
    /// commit thread with the answer once it is durable (or at once, on the caller's
    /// thread, when the request is answered without a shard). For asynchronous
    /// front-ends: the callback typically completes a oneshot channel. Never waits: when
    /// the shard's queue is full (`queue_capacity` requests wait already) the callback
    /// gets [`EngineError::Overloaded`] at once, nothing applied, so a front-end answers
    /// "too busy" instead of stalling the thread that serves its other connections.
    pub fn submit(&self, request: Request, callback: Callback) {
        match self.route(&request) {
            Ok((shard, resolved)) => {
                let job = Job::Request { request, resolved, reply: Reply::Callback(callback) };
                if let Err(refused) = self.senders[shard].try_send(job) {
                    let (error, job) = match refused {
                        crossbeam_channel::TrySendError::Full(job) => (EngineError::Overloaded { shard }, job),
                        crossbeam_channel::TrySendError::Disconnected(job) => {
                            (EngineError::Unavailable("shard worker stopped"), job)
                        }
                    };
                    if let Job::Request { reply, .. } = job {
                        reply.send(Err(error));
                    }
                }
            }
            Err(outcome) => callback(Ok(Answer::outcome(outcome))),
        }
    }

    /// Executes many requests and returns their answers in the same order. The requests
    /// of each shard travel as one message and are decided and group-committed together.
    pub fn execute_batch(&self, requests: Vec<Request>) -> Result<Vec<Answer>, EngineError> {
        let count = requests.len();
        let mut answers: Vec<Option<Answer>> = vec![None; count];
        let mut per_shard: Vec<Vec<(usize, Resolved, Request)>> = (0..self.senders.len()).map(|_| Vec::new()).collect();
        for (index, request) in requests.into_iter().enumerate() {
            match self.route(&request) {
                Ok((shard, resolved)) => per_shard[shard].push((index, resolved, request)),
                Err(outcome) => answers[index] = Some(Answer::outcome(outcome)),
            }
        }
        self.scatter(&self.senders, per_shard, |items, reply| Job::Batch { items, reply })?
            .gather(|index, answer| answers[index] = Some(answer))?;
        answers.into_iter().map(|a| a.ok_or(EngineError::Unavailable("a shard stopped before answering"))).collect()
    }

    /// Charges rated records (mediation, offline charging) and returns their answers in the
    /// same order. Each record is charged at most once per key ([`RecordKey`]); a record that
    /// is refused changed nothing and may be sent again. Answers are given after the
    /// journal commit, as for every request.
    pub fn charge_records(&self, records: Vec<RecordCharge>) -> Result<Vec<RecordAnswer>, EngineError> {
        self.submit_records(records)?.wait()
    }

    /// Sends rated records to their shards without waiting for the answers, so a caller
    /// can keep several batches in flight: while one batch's journal sync runs, the
    /// shards decide the next. [`PendingRecords::wait`] gives the answers, in order.
    pub fn submit_records(&self, records: Vec<RecordCharge>) -> Result<PendingRecords, EngineError> {
        let count = records.len();
        let shards = self.senders.len();
        let mut per_shard: Vec<Vec<usize>> = (0..shards).map(|_| Vec::with_capacity(count / shards + 1)).collect();
        for (position, record) in records.iter().enumerate() {
            per_shard[self.shard_of(record.account)].push(position);
        }
        let records = Arc::new(records);
        let sent = self.scatter(&self.bulk_senders, per_shard, |positions, reply| Job::Records {
            records: Arc::clone(&records),
            positions,
            reply,
        })?;
        Ok(PendingRecords { sent, count })
    }

    /// Sends each shard its items as one message made by `job`, on its queue in `queues`.
    fn scatter<I, A>(
        &self,
        queues: &[Sender<Job>],
        per_shard: Vec<Vec<I>>,
        job: impl Fn(Vec<I>, Sender<Vec<(usize, A)>>) -> Job,
    ) -> Result<Scattered<A>, EngineError> {
        let (sender, receiver) = bounded(queues.len());
        let mut pending = 0;
        for (shard, items) in per_shard.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            queues[shard]
                .send(job(items, sender.clone()))
                .map_err(|_| EngineError::Unavailable("shard worker stopped"))?;
            pending += 1;
        }
        Ok(Scattered { receiver, pending })
    }

    /// Money moved since the data directory was created, summed over the shards, with
    /// the balances it must add up to (Σ balances = opening + top-ups + refunds +
    /// adjustments − charged): what a reconciliation starts from.
    pub fn money_totals(&self) -> Result<MoneyTotals, EngineError> {
        let per_shard = self.inspect(|state| {
            let t = &state.totals;
            let balances: rust_decimal::Decimal = state.accounts.values().map(|a| a.balance()).sum();
            MoneyTotals {
                opening: t.opening,
                charged: t.charged,
                top_ups: t.top_ups,
                refunds: t.refunds,
                adjustments: t.adjustments,
                balances,
            }
        })?;
        Ok(per_shard.into_iter().fold(MoneyTotals::default(), |sum, t| MoneyTotals {
            opening: sum.opening + t.opening,
            charged: sum.charged + t.charged,
            top_ups: sum.top_ups + t.top_ups,
            refunds: sum.refunds + t.refunds,
            adjustments: sum.adjustments + t.adjustments,
            balances: sum.balances + t.balances,
        }))
    }

    /// A digest of each shard's whole state in canonical order: equal digests, equal
    /// states (to compare a state before a restart with the one recovered).
    pub fn state_digest(&self) -> Result<Vec<u64>, EngineError> {
        /// Feeds formatted text to the hash as it is written (no copy of the state).
        struct Digest(xxhash_rust::xxh3::Xxh3);
        impl std::fmt::Write for Digest {
            fn write_str(&mut self, text: &str) -> std::fmt::Result {
                self.0.update(text.as_bytes());
                Ok(())
            }
        }
        // The image's values, not its archive's bytes: an archive writes a name shared by
        // many answers once, and a recovered state shares fewer, so equal states could
        // archive differently.
        self.inspect(|state| {
            let mut digest = Digest(xxhash_rust::xxh3::Xxh3::new());
            let _ = std::fmt::Write::write_fmt(
                &mut digest,
                format_args!("{:?}", crate::snapshot::SnapshotImage::of(state)),
            );
            digest.0.digest()
        })
    }

    /// The history of `account`, from the journal (archived segments included).
    pub fn history(&self, account: AccountId) -> Result<Vec<crate::history::HistoryEntry>, EngineError> {
        crate::history::read(&self.data_dir, self.senders.len(), account)
    }

    /// Runs `inspect` on every shard's state (in the shard's thread, between batches)
    /// and returns the results in shard order. For tests: the state's types are not API.
    #[doc(hidden)]
    pub fn inspect<T: Send + 'static>(
        &self,
        inspect: impl Fn(&ShardState) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, EngineError> {
        let inspect = Arc::new(inspect);
        let mut receivers = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            let (reply, receiver) = bounded(1);
            let inspect = Arc::clone(&inspect);
            sender
                .send(Job::Inspect(Box::new(move |state| drop(reply.send(inspect(state))))))
                .map_err(|_| EngineError::Unavailable("shard worker stopped"))?;
            receivers.push(receiver);
        }
        receivers.into_iter().map(|r| r.recv().map_err(|_| EngineError::Unavailable("shard worker stopped"))).collect()
    }

    /// An account as a management system reads it (the BSS's balance view and the checks
    /// it makes before a change the engine could refuse), or `None` if the engine holds no
    /// such account. Read on the account's shard between batches; changes nothing.
    pub fn account_view(&self, account: AccountId) -> Result<Option<crate::api::AccountView>, EngineError> {
        let (plans, now) = (Arc::clone(&self.plans), self.clock.now());
        let (reply, receiver) = bounded(1);
        self.senders[self.shard_of(account)]
            .send(Job::Inspect(Box::new(move |state| {
                drop(reply.send(crate::decide::accounts::account_view(state, &plans, now, account)))
            })))
            .map_err(|_| EngineError::Unavailable("shard worker stopped"))?;
        receiver.recv().map_err(|_| EngineError::Unavailable("shard worker stopped"))
    }

    /// Checks the money invariants on every shard; returns the violations found.
    pub fn check_invariants(&self) -> Result<Vec<String>, EngineError> {
        let now = self.clock.now();
        let found = self.inspect(move |state| state.check_invariants(now))?;
        Ok(found.into_iter().flatten().map(|v| v.0).collect())
    }

    /// Writes a snapshot of every shard and starts new journal segments.
    pub fn snapshot(&self) -> Result<(), EngineError> {
        self.each_shard(Job::Snapshot)
    }

    fn each_shard(&self, job: fn(Sender<Result<(), EngineError>>) -> Job) -> Result<(), EngineError> {
        let mut receivers = Vec::new();
        for sender in &self.senders {
            let (reply, receiver) = bounded(1);
            sender.send(job(reply)).map_err(|_| EngineError::Unavailable("shard worker stopped"))?;
            receivers.push(receiver);
        }
        for receiver in receivers {
            receiver.recv().map_err(|_| EngineError::Unavailable("shard worker stopped"))??;
        }
        Ok(())
    }

    /// Stops the workers after they sync their journals.
    pub fn shutdown(mut self) -> Result<(), EngineError> {
        let result = self.each_shard(Job::Stop);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        // After the shards: the ledger builds what their last syncs made durable.
        drop(self.ledger.take());
        result
    }

    /// Builds the rated-event ledger up to what the journal holds durably now (the ledger
    /// thread does so every [`ledger::LEDGER_INTERVAL`] anyway); returns the entries
    /// written. An error when the engine runs without a ledger.
    pub fn sync_ledger(&self) -> Result<usize, EngineError> {
        match &self.ledger {
            Some(ledger) => ledger.sync(),
            None => Err(EngineError::Config("the engine runs without a ledger".to_owned())),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            let _ = self.each_shard(Job::Stop);
            for worker in self.workers.drain(..) {
                let _ = worker.join();
            }
        }
        drop(self.ledger.take());
    }
}

/// Rated records sent to the shards whose answers are still to come
/// ([`Engine::submit_records`]).
#[derive(Debug)]
pub struct PendingRecords {
    sent: Scattered<RecordAnswer>,
    count: usize,
}

impl PendingRecords {
    /// Waits for the answers (given once durable), in the order the records were sent.
    pub fn wait(self) -> Result<Vec<RecordAnswer>, EngineError> {
        let mut answers = vec![RecordAnswer::refused(RecordOutcome::UnknownSubscriber); self.count];
        self.sent.gather(|index, answer| answers[index] = answer)?;
        Ok(answers)
    }
}

/// Messages sent to shards: where their answers come back, and how many will come.
#[derive(Debug)]
struct Scattered<A> {
    receiver: Receiver<Vec<(usize, A)>>,
    pending: usize,
}

impl<A> Scattered<A> {
    /// Hands every `(position, answer)` that comes back to `put`.
    fn gather(self, mut put: impl FnMut(usize, A)) -> Result<(), EngineError> {
        for _ in 0..self.pending {
            let answered = self.receiver.recv().map_err(|_| EngineError::Unavailable("shard worker stopped"))?;
            for (index, answer) in answered {
                put(index, answer);
            }
        }
        Ok(())
    }
}

/// The shard that owns `account` among `shards`.
pub fn shard_of(account: AccountId, shards: usize) -> usize {
    (account % shards.max(1) as u64) as usize
}

/// The usage in `answer` that could not be rated: the request, or a session's grants
/// answered `rating_failed`; none in a repeated answer (counted when it was first given).
fn unrated(answer: &Answer) -> u64 {
    if answer.repeated {
        return 0;
    }
    match (&answer.outcome, &answer.body) {
        (Outcome::RatingFailed(_), _) => 1,
        (_, Body::Session { grants }) => {
            grants.iter().filter(|grant| matches!(grant.outcome, Outcome::RatingFailed(_))).count() as u64
        }
        _ => 0,
    }
}

fn check_bounds(request: &Request) -> Result<(), String> {
    if request.operation.needs_key() && request.key.as_deref().is_none_or(str::is_empty) {
        return Err("field `key`: a request that changes state needs an idempotency key".to_owned());
    }
    if request.key.as_ref().is_some_and(|k| k.len() > MAX_KEY_BYTES) {
        return Err(format!("field `key`: longer than {MAX_KEY_BYTES} bytes"));
    }
    let long_text = |text: &str| text.len() > MAX_TEXT_BYTES;
    match &request.operation {
        Operation::CreateSubscription { identities, plan, .. } => {
            if identities.is_empty() || identities.len() > MAX_IDENTITIES {
                return Err(format!("field `identities`: 1 to {MAX_IDENTITIES}"));
            }
            if long_text(plan) {
                return Err("field `plan`: too long".to_owned());
            }
        }
        Operation::Rerate { record, .. } if record.is_empty() || long_text(record) => {
            return Err(format!("field `record`: 1 to {MAX_TEXT_BYTES} bytes"));
        }
        Operation::Session { session, .. } if session.is_empty() || long_text(session) => {
            return Err(format!("field `session`: 1 to {MAX_TEXT_BYTES} bytes"));
        }
        Operation::Refund { reason: text, .. }
        | Operation::Adjust { reason: text, .. }
        | Operation::TopUp { reference: text, .. }
        | Operation::GrantCredit { reference: text, .. }
        | Operation::SuspendAccount { reason: text }
            if long_text(text) =>
        {
            return Err(format!("a text field is longer than {MAX_TEXT_BYTES} bytes"));
        }
        _ => {}
    }
    Ok(())
}

/// Takes the data directory's lock (held while the returned file is open) and writes
/// this process's id in it.
pub(crate) fn lock_data_dir(fs: &dyn FileSystem, dir: &std::path::Path) -> Result<Option<File>, EngineError> {
    let path = dir.join("LOCK");
    match fs.lock(&path) {
        Ok(Some(file)) => {
            file.set_len(0).map_err(EngineError::io(&path))?;
            std::io::Write::write_all(&mut &file, std::process::id().to_string().as_bytes())
                .map_err(EngineError::io(&path))?;
            Ok(Some(file))
        }
        Ok(None) => Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
            let pid = fs.read(&path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            Err(EngineError::Locked { pid, path })
        }
        Err(err) => Err(EngineError::Io { path, source: err }),
    }
}

struct Worker {
    shard: u32,
    state: ShardState,
    journal: Journal,
    /// The network's requests and control messages.
    receiver: Receiver<Job>,
    /// Bulk records, taken after the requests waiting ([`Worker::take_pass`]).
    bulk: Receiver<Job>,
    /// A stop received while bulk jobs sent before it were waiting: answered once they
    /// are charged.
    stopping: Option<Sender<Result<(), EngineError>>>,
    /// Batches of records taken and not charged whole yet, continued by the next passes
    /// in order.
    partial: std::collections::VecDeque<PartialRecords>,
    plans: Arc<Plans>,
    directory: Arc<Directory>,
    charging: Arc<ChargingConfig>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    health: Arc<Vec<ShardHealth>>,
    next_reap_at: i64,
    /// When a failed snapshot may be tried again.
    /// Shared with the snapshot thread: a fault seen by either is one incident.
    snapshot_retry: SnapshotRetry,
    /// The LSN of the last snapshot taken (or recovered from).
    snapshot_lsn: u64,
    /// The window chunk files the last durable snapshot lists (the snapshot thread
    /// updates it).
    chunks: Arc<std::sync::Mutex<crate::snapshot::ChunkIndex>>,
    /// The commit thread, with fsync per batch.
    stage: Option<CommitStage>,
    snapshots: Option<Snapshotter>,
}

impl Worker {
    fn metrics(&self) -> &ShardMetrics {
        &self.health[self.shard as usize].metrics
    }

    fn fsync_histogram(&self) -> Arc<Histogram> {
        Arc::clone(&self.metrics().fsync)
    }

    fn run(&mut self) {
        // A shard that panics stops: its requests find no one to answer them. Readiness
        // and `/metrics` must say so (they said `serving`): the guard marks it failed.
        let _stopped = StoppedOnPanic { health: Arc::clone(&self.health), shard: self.shard as usize };
        let mut batch: Vec<Job> = Vec::with_capacity(self.config.max_batch);
        let mut answers = Answers::default();
        let mut charges = ChargesWriter::new();
        let (plans, directory, charging) =
            (Arc::clone(&self.plans), Arc::clone(&self.directory), Arc::clone(&self.charging));
        while let Some(mut budget) = self.take_pass(&mut batch) {
            let now = self.clock.now();
            let mut control = Vec::new();
            let mut bulk = Vec::new();
            for job in batch.drain(..) {
                match job {
                    Job::Request { request, resolved, reply } => {
                        let ctx = Context {
                            plans: &self.plans,
                            directory: &self.directory,
                            config: &self.charging,
                            decided_at: now,
                        };
                        let (answer, effects) = decide(&mut self.state, &ctx, resolved, &request);
                        if !effects.is_empty() {
                            self.record(now, effects);
                        }
                        ShardMetrics::add(&self.metrics().requests, 1);
                        ShardMetrics::add(&self.metrics().unrated_events, unrated(&answer));
                        answers.one.push((reply, answer));
                    }
                    Job::Batch { items, reply } => {
                        let ctx = Context { plans: &plans, directory: &directory, config: &charging, decided_at: now };
                        let mut answered = Vec::with_capacity(items.len());
                        for (index, resolved, request) in items {
                            let (answer, effects) = decide(&mut self.state, &ctx, resolved, &request);
                            if !effects.is_empty() {
                                self.record(now, effects);
                            }
                            ShardMetrics::add(&self.metrics().unrated_events, unrated(&answer));
                            answered.push((index, answer));
                        }
                        ShardMetrics::add(&self.metrics().requests, answered.len() as u64);
                        answers.batches.push((reply, answered));
                    }
                    Job::Records { records, positions, reply } => {
                        let answered = Vec::with_capacity(positions.len());
                        bulk.push(PartialRecords { records, positions, done: 0, answered, reply });
                    }
                    other => control.push(other),
                }
            }
            let mut taken = std::mem::take(&mut self.partial);
            taken.extend(bulk);
            for mut job in taken {
                if budget == 0 {
                    self.partial.push_back(job);
                    continue;
                }
                let ctx = Context { plans: &plans, directory: &directory, config: &charging, decided_at: now };
                let end = job.positions.len().min(job.done.saturating_add(budget));
                let answered = self.charge_records(&ctx, &job.records, &job.positions[job.done..end], &mut charges);
                budget -= end - job.done;
                job.done = end;
                job.answered.extend(answered);
                if job.done == job.positions.len() {
                    answers.records.push((job.reply, job.answered));
                } else {
                    self.partial.push_back(job);
                }
            }
            if now >= self.next_reap_at {
                let effects = expire(&mut self.state, now);
                if !effects.is_empty() {
                    self.record(now, effects);
                }
                self.next_reap_at = now + self.config.reaper_interval.as_secs().max(1) as i64;
            }
            self.metrics().reservations.store(self.state.reservations.len() as u64, Ordering::Relaxed);
            if let Err(reason) = self.commit(std::mem::take(&mut answers)) {
                if !self.rebuild(&reason, control) {
                    return;
                }
                continue;
            }
            // Counted from the last snapshot, restarts included: a server restarted more
            // often than it writes `snapshot_every_records` records still snapshots.
            let since_snapshot = self.state.lsn.saturating_sub(self.snapshot_lsn);
            if since_snapshot >= self.config.snapshot_every_records && self.snapshot_retry.due() {
                match self.snapshot(None) {
                    // Whether it worked is known once the snapshot thread has written it.
                    Ok(()) => {}
                    Err(SnapshotFailure::Journal(reason)) => {
                        if !self.rebuild(&reason, control) {
                            return;
                        }
                        continue;
                    }
                    Err(SnapshotFailure::Other(err)) => {
                        self.snapshot_retry.failed(self.shard, self.state.lsn, &err);
                    }
                }
            }
            for job in control {
                match job {
                    Job::Inspect(inspect) => inspect(&self.state),
                    Job::Snapshot(reply) => {
                        // The snapshot thread answers once the snapshot is durable.
                        match self.snapshot(Some(reply.clone())) {
                            Ok(()) => {}
                            Err(SnapshotFailure::Other(err)) => drop(reply.send(Err(err))),
                            Err(SnapshotFailure::Journal(reason)) => {
                                drop(reply.send(Err(EngineError::Unavailable(SHARD_FAILED))));
                                if !self.rebuild(&reason, Vec::new()) {
                                    return;
                                }
                            }
                        }
                    }
                    Job::Stop(reply) if !self.bulk.is_empty() || !self.partial.is_empty() => {
                        self.stopping = Some(reply);
                    }
                    Job::Stop(reply) => {
                        self.stop(reply);
                        return;
                    }
                    Job::Request { .. } | Job::Batch { .. } | Job::Records { .. } => {}
                }
            }
            if self.bulk.is_empty() && self.partial.is_empty() {
                if let Some(reply) = self.stopping.take() {
                    self.stop(reply);
                    return;
                }
            }
        }
        if let Err(err) = self.journal.sync() {
            tracing::error!(shard = self.shard, error = %err, "final journal sync failed");
        }
    }

    /// Fills `batch` for one pass: waits for a job on either queue (or the reaper's
    /// interval; not with bulk work under way), then takes every request waiting (up to
    /// `max_batch`) and, after them, bulk jobs while the records under way are fewer than
    /// the pass charges ([`BULK_BESIDE_REQUESTS`] with requests, else [`BULK_PER_PASS`]).
    /// Returns that number of records, or `None` once the engine is gone.
    fn take_pass(&mut self, batch: &mut Vec<Job>) -> Option<usize> {
        let busy = self.stopping.is_some() || !self.partial.is_empty();
        let wait = if busy { Duration::ZERO } else { self.config.reaper_interval };
        crossbeam_channel::select! {
            recv(self.receiver) -> job => batch.push(job.ok()?),
            recv(self.bulk) -> job => batch.push(job.ok()?),
            default(wait) => {}
        }
        while batch.len() < self.config.max_batch {
            match self.receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let records = |job: &Job| match job {
            Job::Records { positions, .. } => positions.len(),
            _ => 0,
        };
        let requests = batch.iter().any(|job| !matches!(job, Job::Records { .. }));
        let limit = if requests { BULK_BESIDE_REQUESTS } else { BULK_PER_PASS };
        let mut under_way: usize = self.partial.iter().map(|job| job.positions.len() - job.done).sum::<usize>()
            + batch.iter().map(records).sum::<usize>();
        while under_way < limit && batch.len() < self.config.max_batch {
            match self.bulk.try_recv() {
                Ok(job) => {
                    under_way += records(&job);
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        Some(limit)
    }

    /// Syncs the journal, waits for every answer and snapshot under way, and answers
    /// the stop.
    fn stop(&mut self, reply: Sender<Result<(), EngineError>>) {
        let synced = self.journal.sync().map_err(EngineError::io(&self.config.data_dir));
        if synced.is_ok() && self.stage.as_ref().is_none_or(|stage| !stage.failed()) {
            self.health[self.shard as usize].set_durable(self.state.lsn);
        }
        // Every answer, and every snapshot under way, before the stop's.
        drop(self.stage.take());
        drop(self.snapshots.take());
        drop(reply.send(synced));
    }

    /// Group commit: one write and one fsync (per policy) for everything decided in this
    /// pass, then its answers. With fsync per batch, a large pass (bulk records) goes to
    /// the commit thread, which syncs and answers while this thread decides the next.
    /// Returns why when the journal failed: the shard must rebuild itself from disk.
    fn commit(&mut self, answers: Answers) -> Result<(), String> {
        if let Some(stage) = self.stage.as_ref().filter(|stage| stage.failed()) {
            answers.fail("journal sync failed");
            return Err(stage.error());
        }
        // A pass that syncs here must not overtake answers still in the commit thread.
        let hand_over = self.stage.as_ref().filter(|stage| answers.items() >= HAND_OVER_ITEMS || !stage.idle());
        // Handed over: written but not synced; the segment written to, if anything was.
        let written = match hand_over {
            Some(_) => self.journal.write().and_then(|wrote| wrote.then(|| self.journal.syncer()).transpose()),
            None => self.journal.commit().map(|()| None),
        };
        let written = match written {
            Ok(written) => written,
            Err(err) => {
                answers.fail("journal write failed");
                return Err(format!("journal write or sync failed: {err}"));
            }
        };
        match hand_over {
            Some(stage) if written.is_some() || !answers.is_empty() => stage.push(written, answers, self.state.lsn),
            Some(_) => {}
            None => {
                // The commit thread marks a failed sync before it counts the groups done, so
                // one that failed after the check above and then went idle shows here: the
                // data it held may be lost, and these answers would stand on it (a batch of
                // records charged in slices is answered with its last slice only).
                if let Some(stage) = self.stage.as_ref().filter(|stage| stage.failed()) {
                    answers.fail("journal sync failed");
                    return Err(stage.error());
                }
                self.health[self.shard as usize].set_durable(self.state.lsn);
                answers.send();
            }
        }
        Ok(())
    }

    /// Decides a message of rated records; their changes become charges records in the
    /// journal (one per message, split only where a bucket renewal must come between).
    fn charge_records(
        &mut self,
        ctx: &Context<'_>,
        records: &[RecordCharge],
        positions: &[usize],
        charges: &mut ChargesWriter,
    ) -> RecordsAnswered {
        let mut answered = Vec::with_capacity(positions.len());
        let mut renewals = Vec::new();
        let mut refusals = Vec::new();
        // The keys of the records refused in `refusals`, not yet journaled (a set: a
        // message of thousands of refused records must not compare each with all).
        let mut refused_keys: std::collections::HashSet<crate::records::RecordKey, foldhash::fast::RandomState> =
            std::collections::HashSet::default();
        charges.begin(ctx.decided_at);
        for (at, &index) in positions.iter().enumerate() {
            self.state.prepare(records, positions, at);
            let Some(record) = records.get(index) else { continue };
            if !refused_keys.is_empty() && refused_keys.contains(&record.key) {
                // A later record with a refused record's key may charge it: the refusal
                // is journaled first, so no journal cut keeps that charge without it (a
                // resumed run sending the refused record again would be told "charged").
                self.record_charges(charges);
                charges.begin(ctx.decided_at);
                self.remember_refusals(ctx, &mut refusals);
                refused_keys.clear();
            }
            let refused_before = refusals.len();
            let answer = charge_record(&mut self.state, ctx, record, &mut renewals, &mut refusals, charges);
            if refusals.len() > refused_before {
                refused_keys.insert(record.key);
            }
            if !renewals.is_empty() {
                // Journal order must be apply order: the charges decided before the
                // renewal, the renewal, then this record's charge.
                if let Some(ended) = charges.take_ended() {
                    self.append_charges(&ended);
                }
                self.record(ctx.decided_at, std::mem::take(&mut renewals));
            }
            if charges.len() >= MAX_RECORD_BYTES / 2 {
                self.record_charges(charges);
                charges.begin(ctx.decided_at);
            }
            answered.push((index, answer));
        }
        self.record_charges(charges);
        let charged =
            answered.iter().filter(|(_, answer)| answer.outcome == RecordOutcome::Charged && !answer.repeated).count();
        ShardMetrics::add(&self.metrics().rated_events, charged as u64);
        let unrated = answered
            .iter()
            .filter(|(_, answer)| matches!(answer.outcome, RecordOutcome::RatingFailed(_)) && !answer.repeated)
            .count();
        ShardMetrics::add(&self.metrics().unrated_events, unrated as u64);
        self.remember_refusals(ctx, &mut refusals);
        answered
    }

    /// Applies and journals the refusals of a message's records decided so far.
    fn remember_refusals(&mut self, ctx: &Context<'_>, refusals: &mut Vec<crate::state::Effect>) {
        if !refusals.is_empty() {
            for refusal in refusals.iter() {
                self.state.apply(refusal);
            }
            self.record(ctx.decided_at, std::mem::take(refusals));
        }
    }

    fn record_charges(&mut self, charges: &mut ChargesWriter) {
        if !charges.is_empty() {
            self.append_charges(charges.finish());
        }
    }

    /// Journals one charges payload as the shard's next record.
    fn append_charges(&mut self, payload: &[u8]) {
        self.state.lsn += 1;
        self.journal.append_kind(self.state.lsn, RecordKind::CompactCharges, payload);
    }

    /// Journals one request's effects: compactly when [`crate::format::effects`] covers them,
    /// else as an rkyv archive.
    fn record(&mut self, now: i64, effects: Vec<crate::state::Effect>) {
        let rated = effects.iter().filter(|effect| matches!(effect, crate::state::Effect::Usage { .. })).count();
        ShardMetrics::add(&self.metrics().rated_events, rated as u64);
        self.state.lsn += 1;
        if let Some(payload) = crate::format::effects::encode(now, &effects) {
            debug_assert!(payload.len() <= MAX_RECORD_BYTES);
            self.journal.append_kind(self.state.lsn, RecordKind::CompactEffects, &payload);
            return;
        }
        let payload = JournalEntry { decided_at: now, effects }.encode();
        debug_assert!(payload.len() <= MAX_RECORD_BYTES);
        self.journal.append(self.state.lsn, &payload);
    }

    /// Copies the state, starts a new segment after it, and has the snapshot thread
    /// write the copy (and answer `reply`, if given, once it is durable). The segment
    /// that ends here is synced first: recovery needs every segment but the last whole.
    fn snapshot(&mut self, reply: Option<Sender<Result<(), EngineError>>>) -> Result<(), SnapshotFailure> {
        let Some(snapshots) = &self.snapshots else {
            return Err(SnapshotFailure::Other(EngineError::Unavailable("snapshot thread stopped")));
        };
        // The state copied must be durable: a failed sync (here or in the commit
        // thread) is a journal failure, not a snapshot one.
        if let Some(stage) = self.stage.as_ref().filter(|stage| stage.failed()) {
            return Err(SnapshotFailure::Journal(stage.error()));
        }
        if let Err(err) = self.journal.sync() {
            return Err(SnapshotFailure::Journal(format!("journal sync before a snapshot failed: {err}")));
        }
        self.snapshot_lsn = self.state.lsn;
        let captured = match self.chunks.lock() {
            Ok(index) => Captured::since(&self.state, Some(&index)),
            Err(_) => Captured::of(&self.state),
        };
        let (fs, dir) = (&*self.config.fs, &self.config.data_dir);
        self.journal = start_segment(fs, dir, self.shard, self.state.lsn, self.config.fsync)
            .map_err(SnapshotFailure::Other)?
            .timed(self.fsync_histogram());
        snapshots.write(captured, reply);
        Ok(())
    }

    /// After a journal failure: refuses every request (never answering success for a
    /// change that may not be durable) until [`Worker::try_rebuild`] succeeds, retrying
    /// with backoff. Returns false when the engine stops meanwhile.
    fn rebuild(&mut self, reason: &str, control: Vec<Job>) -> bool {
        let shard = self.shard;
        self.health[shard as usize].fail(self.clock.now(), reason);
        tracing::error!(
            shard,
            reason,
            "journal failed: the shard refuses requests until it has rebuilt itself from disk; retrying with backoff"
        );
        // Answers still waiting in the commit thread are failed by it; a batch of records
        // charged in part is answered nothing (its caller sends it again: the records
        // made durable are repeats then).
        drop(self.stage.take());
        self.partial.clear();
        for job in control.into_iter().chain(self.stopping.take().map(Job::Stop)) {
            if !self.refuse(job) {
                return false;
            }
        }
        let mut delay = REBUILD_FIRST_DELAY;
        let mut attempts = 0u32;
        loop {
            let deadline = Instant::now() + delay;
            loop {
                let job = crossbeam_channel::select! {
                    recv(self.receiver) -> job => job,
                    recv(self.bulk) -> job => job,
                    default(deadline.saturating_duration_since(Instant::now())) => break,
                };
                match job {
                    Ok(job) => {
                        if !self.refuse(job) {
                            return false;
                        }
                    }
                    Err(_) => return false,
                }
            }
            attempts += 1;
            match self.try_rebuild() {
                Ok(()) => {
                    self.health[shard as usize].recovered();
                    tracing::warn!(
                        shard,
                        attempts,
                        "the shard rebuilt itself from disk after a journal failure and serves again"
                    );
                    return true;
                }
                Err(err) => {
                    tracing::debug!(shard, attempts, error = %err, "the data directory still fails; retrying later");
                    delay = (delay * 2).min(REBUILD_MAX_DELAY);
                }
            }
        }
    }

    /// Answers a job while the shard is failed; false for a stop.
    fn refuse(&mut self, job: Job) -> bool {
        match job {
            Job::Request { reply, .. } => {
                self.health[self.shard as usize].refused();
                reply.send(Err(EngineError::Unavailable(SHARD_FAILED)));
            }
            // Dropping a batch's reply tells its caller the shard answered nothing.
            Job::Batch { .. } | Job::Records { .. } | Job::Inspect(_) => {
                self.health[self.shard as usize].refused();
            }
            Job::Snapshot(reply) => drop(reply.send(Err(EngineError::Unavailable(SHARD_FAILED)))),
            Job::Stop(reply) => {
                drop(self.snapshots.take());
                drop(reply.send(Err(EngineError::Unavailable(SHARD_FAILED))));
                return false;
            }
        }
        true
    }

    /// Once the data directory takes a write and a sync again: cuts the segment back to
    /// what was last synced (with fsync per batch; under the other policies recovery cuts
    /// any torn tail), rebuilds the state from disk, and re-registers the shard's
    /// subscribers.
    fn try_rebuild(&mut self) -> Result<(), EngineError> {
        let (fs, dir, shard) = (&*self.config.fs, &self.config.data_dir, self.shard);
        probe(fs, dir, shard)?;
        if self.config.fsync == FsyncPolicy::EveryBatch {
            if let Some(path) = self.journal.path() {
                let synced = self.journal.synced_len();
                let cut = fs.set_len(path, synced).and_then(|()| fs.sync_file(path));
                cut.map_err(EngineError::io(path))?;
            }
        }
        let (state, journal, report) = recover(fs, dir, shard, self.config.charging.dedupe_window, self.config.fsync)?;
        if let Ok(mut index) = self.chunks.lock() {
            *index = report.chunks;
        }
        self.snapshot_lsn = report.snapshot_lsn;
        let stage = match self.config.fsync {
            FsyncPolicy::EveryBatch => {
                Some(CommitStage::start(shard, Arc::clone(&self.health)).map_err(EngineError::io(dir))?)
            }
            FsyncPolicy::Interval(_) | FsyncPolicy::Never => None,
        };
        let shards = self.config.shards;
        self.directory.forget(|account| shard_of(account, shards) == shard as usize);
        state.register(&self.directory);
        self.state = state;
        self.health[shard as usize].set_durable(self.state.lsn);
        self.journal = journal.timed(self.fsync_histogram());
        self.stage = stage;
        // A new start: a snapshot that fails from here on is a new incident, logged again.
        self.snapshot_retry.reset();
        Ok(())
    }
}

/// What an answer refused by a failed shard says.
const SHARD_FAILED: &str = "shard failed after a journal write failure; retrying";
const REBUILD_FIRST_DELAY: Duration = Duration::from_millis(100);
const REBUILD_MAX_DELAY: Duration = Duration::from_secs(30);

/// Why a snapshot was not taken.
enum SnapshotFailure {
    /// The journal could not be synced first: the shard must rebuild itself.
    Journal(String),
    Other(EngineError),
}

/// Writes and syncs a small file in the data directory through the same storage the
/// journal uses, then removes it: whether the directory takes writes again.
fn probe(fs: &dyn FileSystem, dir: &std::path::Path, shard: u32) -> Result<(), EngineError> {
    let path = dir.join(format!(".probe-shard-{shard}"));
    let result = fs.write_file(&path, &[0u8; 4096], 0o644).and_then(|()| fs.sync_file(&path));
    let _ = fs.remove_file(&path);
    result.map_err(EngineError::io(&path))
}

/// Marks its shard failed when dropped while the shard's thread panics.
struct StoppedOnPanic {
    health: Arc<Vec<ShardHealth>>,
    shard: usize,
}

impl Drop for StoppedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
            if let Some(health) = self.health.get(self.shard) {
                health.fail(now, "the shard's thread stopped on a panic: restart the engine (the log has the panic)");
            }
        }
    }
}

#[cfg(test)]
mod panic_tests {
    use super::*;

    /// Regression: a shard whose thread panicked was still reported serving by readiness
    /// and `/metrics` while nothing answered its requests.
    #[test]
    fn a_shard_that_panics_is_reported_failed() {
        let health: Arc<Vec<ShardHealth>> = Arc::new((0..2).map(|_| ShardHealth::default()).collect());
        let watched = Arc::clone(&health);
        let stopped = std::thread::spawn(move || {
            let _guard = StoppedOnPanic { health: watched, shard: 1 };
            panic!("a shard's bug");
        })
        .join();
        assert!(stopped.is_err());
        assert_eq!(health[1].status(1).state, "failed");
        assert!(health[1].status(1).reason.is_some_and(|reason| reason.contains("panic")));
        assert_eq!(health[0].status(0).state, "serving", "the other shard is untouched");
        // Dropped without a panic (the shard's thread ending in order): nothing changes.
        drop(StoppedOnPanic { health: Arc::clone(&health), shard: 0 });
        assert_eq!(health[0].status(0).state, "serving");
    }
}

//! Bill runs started through the management API (`POST /tmf-api/billing/v1/billRun`,
//! `tollgate_api::BillRuns`) in `tollgate serve`: the same run as `tollgate bill-run`
//! ([`super::bill_run::bill`]), with the configuration of `serve --bill-run-config`. Each
//! run goes on a thread of the management plane's blocking pool (it reads the ledger's
//! files), on the management runtime's store; its lines go to the log, its counts to the
//! API and to `/metrics`. A run is started at most once at a time per id in this server;
//! two servers (or the CLI beside one) may run the same cycle at once, which the store
//! makes safe (each hierarchy billed once, numbers gap-free). A failed run raises the
//! `bill-run/RUN` alarm (sent as a trap too), cleared by the next attempt that ends, as
//! from the CLI. At a stop the runs under way end between two batches
//! ([`ServeBillRuns::stop`]) and resume when started again.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tollgate_api::{BillRunProgress, BillRunRefusal, BillRunRequest, BillRunStart, BillRuns, BoxFuture};
use tollgate_billing::RunConfig;
use tollgate_oss_adapters::admin::{Exposition, Kind, MetricsSource};
use tollgate_store::{BillRunState, Store};

use super::bill_run::{bill, not_closed, open_until, record_outcome, BillRequest, RunLog, Stopped};

/// Documents written, and then made final, per transaction (as the CLI's default).
const BATCH: usize = 100;

/// One attempt at a run in this server.
#[derive(Debug, Default)]
struct Attempt {
    log: RunLog,
    running: AtomicBool,
    /// Why the attempt failed, and when.
    error: Mutex<Option<(String, jiff::Timestamp)>>,
}

impl Attempt {
    fn error(&self) -> Option<(String, jiff::Timestamp)> {
        self.error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_error(&self, error: String) {
        *self.error.lock().unwrap_or_else(PoisonError::into_inner) = Some((error, jiff::Timestamp::now()));
    }
}

/// What the attempts that ended did, since the server started.
#[derive(Debug, Default)]
struct Ended {
    /// Held while an attempt's counts move here and while `/metrics` reads them, so a
    /// scrape counts each document once.
    gate: Mutex<()>,
    done: AtomicU64,
    failed: AtomicU64,
    drafted: AtomicU64,
    finalised: AtomicU64,
}

/// Ends an attempt however its thread ends (a panic too): counts it, and marks it not
/// running, last.
struct Ending {
    attempt: Arc<Attempt>,
    ended: Arc<Ended>,
}

impl Drop for Ending {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.attempt.set_error("the run stopped on an internal error (a panic); see the log".to_owned());
            self.ended.failed.fetch_add(1, Relaxed);
        }
        let _gate = self.ended.gate.lock().unwrap_or_else(PoisonError::into_inner);
        self.ended.drafted.fetch_add(self.attempt.log.drafted.load(Relaxed), Relaxed);
        self.ended.finalised.fetch_add(self.attempt.log.finalised.load(Relaxed), Relaxed);
        self.attempt.running.store(false, Relaxed);
    }
}

/// The bill runs of this server, by run id: the latest attempt of each.
#[derive(Debug)]
pub(crate) struct ServeBillRuns {
    store: Store,
    data_dir: PathBuf,
    shards: usize,
    config: RunConfig,
    attempts: Mutex<HashMap<String, Arc<Attempt>>>,
    ended: Arc<Ended>,
}

impl ServeBillRuns {
    pub(crate) fn new(store: Store, data_dir: PathBuf, shards: usize, config: RunConfig) -> ServeBillRuns {
        ServeBillRuns { store, data_dir, shards, config, attempts: Mutex::new(HashMap::new()), ended: Arc::default() }
    }

    fn attempts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Attempt>>> {
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn running(&self, id: &str) -> bool {
        self.attempts().get(id).is_some_and(|attempt| attempt.running.load(Relaxed))
    }

    /// Asks the runs under way to stop between two batches and waits for them, at most
    /// `within`: the server calls it before its runtimes go down. A stopped run keeps what
    /// it wrote and resumes when started again.
    pub(crate) fn stop(&self, within: Duration) {
        let running: Vec<Arc<Attempt>> =
            self.attempts().values().filter(|attempt| attempt.running.load(Relaxed)).cloned().collect();
        for attempt in &running {
            attempt.log.stop.store(true, Relaxed);
        }
        let deadline = Instant::now() + within;
        while running.iter().any(|attempt| attempt.running.load(Relaxed)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The run's request, its cycle and accounts checked: a month, and hierarchy roots.
    async fn request(&self, asked: BillRunRequest, dry_run: bool) -> Result<BillRequest, BillRunRefusal> {
        let (year, month) = tollgate_billing::parse_cycle(&asked.cycle)
            .map_err(|error| BillRunRefusal::Invalid { field: "cycle", reason: error.to_string() })?;
        if !asked.accounts.is_empty() {
            let found = self.store.billable_accounts(Some(&asked.accounts)).await.map_err(BillRunRefusal::Store)?;
            let roots: HashSet<&str> = found.iter().map(|account| account.id.as_str()).collect();
            if let Some(root) = asked.accounts.iter().find(|root| !roots.contains(root.as_str())) {
                return Err(BillRunRefusal::Invalid {
                    field: "accounts",
                    reason: format!("{root} is not the billing account at the root of a hierarchy"),
                });
            }
        }
        if !dry_run && !asked.open_cycles {
            let roots = (!asked.accounts.is_empty()).then_some(asked.accounts.as_slice());
            let accounts = self.store.billable_accounts(roots).await.map_err(BillRunRefusal::Store)?;
            let zone = self.config.zone().map_err(|error| BillRunRefusal::Failed(error.to_string()))?;
            let days =
                accounts.iter().filter(|account| account.parent_id.is_none()).map(|account| account.bill_cycle_day);
            let open = open_until(days, year, month, &zone, jiff::Timestamp::now())
                .map_err(|error| BillRunRefusal::Failed(format!("{error:#}")))?;
            if let Some(end) = open {
                return Err(BillRunRefusal::Invalid {
                    field: "cycle",
                    reason: format!("{} (send openCycles: true to bill it now)", not_closed(&asked.cycle, end)),
                });
            }
        }
        Ok(BillRequest {
            cycle: asked.cycle,
            accounts: asked.accounts,
            open_cycles: asked.open_cycles,
            dry_run,
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            shards: Some(self.shards),
            batch: BATCH,
            actor: asked.actor,
        })
    }
}

impl BillRuns for ServeBillRuns {
    fn start(&self, asked: BillRunRequest) -> BoxFuture<'_, Result<BillRunStart, BillRunRefusal>> {
        Box::pin(async move {
            let request = self.request(asked, false).await?;
            let id = request.run_id().0;
            if self.running(&id) {
                return Ok(BillRunStart::UnderWay { id });
            }
            // A run done (here, by another server or by the CLI) is not run again.
            let stored = self.store.bill_run(&id).await.map_err(BillRunRefusal::Store)?;
            if stored.is_some_and(|run| run.state == BillRunState::Done) {
                return Ok(BillRunStart::Done { id });
            }
            let attempt = {
                let mut attempts = self.attempts();
                if attempts.get(&id).is_some_and(|attempt| attempt.running.load(Relaxed)) {
                    return Ok(BillRunStart::UnderWay { id });
                }
                let attempt = Arc::new(Attempt {
                    log: RunLog { to_log: true, ..RunLog::default() },
                    running: AtomicBool::new(true),
                    error: Mutex::new(None),
                });
                attempts.insert(id.clone(), Arc::clone(&attempt));
                attempt
            };
            tracing::info!(run = %id, actor = %request.actor, "bill run started through the API");
            let (store, run) = (self.store.clone(), id.clone());
            let ending = Ending { attempt, ended: Arc::clone(&self.ended) };
            let runtime = tokio::runtime::Handle::current();
            // Not awaited: the answer is 202, and the run tells how it stands.
            drop(tokio::task::spawn_blocking(move || {
                let Ending { attempt, ended } = &ending;
                runtime.block_on(async {
                    let billed = bill(&store, &request, &attempt.log, &mut std::io::sink()).await;
                    match &billed {
                        Ok(()) => {
                            ended.done.fetch_add(1, Relaxed);
                        }
                        Err(error) if error.downcast_ref::<Stopped>().is_some() => {
                            tracing::info!(%run, "bill run stopped with the server; it resumes when started again");
                            return;
                        }
                        Err(error) => {
                            tracing::error!(%run, error = format!("{error:#}"), "bill run failed");
                            attempt.set_error(format!("{error:#}"));
                            ended.failed.fetch_add(1, Relaxed);
                        }
                    }
                    record_outcome(&store, &run, &billed).await;
                });
                drop(ending);
            }));
            Ok(BillRunStart::Started { id })
        })
    }

    fn dry_run(&self, asked: BillRunRequest) -> BoxFuture<'_, Result<Vec<serde_json::Value>, BillRunRefusal>> {
        Box::pin(async move {
            let request = self.request(asked, true).await?;
            let store = self.store.clone();
            let runtime = tokio::runtime::Handle::current();
            let composed = tokio::task::spawn_blocking(move || {
                runtime.block_on(async {
                    let mut out = Vec::new();
                    bill(&store, &request, &RunLog { to_log: true, ..RunLog::default() }, &mut out).await.map(|()| out)
                })
            })
            .await
            .map_err(|error| BillRunRefusal::Failed(error.to_string()))?
            .map_err(|error| BillRunRefusal::Failed(format!("{error:#}")))?;
            composed
                .split(|byte| *byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| serde_json::from_slice(line).map_err(|error| BillRunRefusal::Failed(error.to_string())))
                .collect()
        })
    }

    fn progress(&self, id: &str) -> Option<BillRunProgress> {
        let attempt = Arc::clone(self.attempts().get(id)?);
        let log = &attempt.log;
        Some(BillRunProgress {
            running: attempt.running.load(Relaxed),
            drafted: log.drafted.load(Relaxed),
            statements: log.statements.load(Relaxed),
            billed_before: log.already.load(Relaxed),
            finalised: log.finalised.load(Relaxed),
            failure: attempt.error(),
        })
    }
}

/// `/metrics`: the bill runs of this server.
#[derive(Debug)]
pub(crate) struct BillRunMetrics(pub(crate) Arc<ServeBillRuns>);

impl MetricsSource for BillRunMetrics {
    fn write<'a>(
        &'a self,
        page: &'a mut Exposition,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let runs = &self.0;
            let ended = &runs.ended;
            // The attempts that ended are in `ended`; those under way add what they did so
            // far (an attempt's counts move to `ended` as it stops running, behind the gate).
            let (running, drafted, finalised) = {
                let _gate = ended.gate.lock().unwrap_or_else(PoisonError::into_inner);
                let (mut running, mut drafted, mut finalised) =
                    (0, ended.drafted.load(Relaxed), ended.finalised.load(Relaxed));
                for attempt in runs.attempts().values().filter(|attempt| attempt.running.load(Relaxed)) {
                    running += 1;
                    drafted += attempt.log.drafted.load(Relaxed);
                    finalised += attempt.log.finalised.load(Relaxed);
                }
                (running, drafted, finalised)
            };
            page.family("tollgate_bill_runs_running", Kind::Gauge, "Bill runs under way in this server.");
            page.sample("tollgate_bill_runs_running", &[], running);
            page.family("tollgate_bill_runs_total", Kind::Counter, "Bill run attempts that ended, by outcome.");
            page.sample("tollgate_bill_runs_total", &[("outcome", "done")], ended.done.load(Relaxed));
            page.sample("tollgate_bill_runs_total", &[("outcome", "failed")], ended.failed.load(Relaxed));
            page.family(
                "tollgate_bill_run_documents_total",
                Kind::Counter,
                "Invoices and statements the bill runs of this server drafted, and made final.",
            );
            page.sample("tollgate_bill_run_documents_total", &[("step", "drafted")], drafted);
            page.sample("tollgate_bill_run_documents_total", &[("step", "finalised")], finalised);
        })
    }
}

//! [`ProvisioningWorker`]: the tokio task that drives the workflow. Each pass claims up to
//! `concurrency` due tasks (the store leases them: on PostgreSQL with `FOR UPDATE SKIP
//! LOCKED`, so several servers share the work without running a task twice at once;
//! SQLite has one writer) and runs them concurrently; a task's item has one due task at a
//! time, so its steps stay in order; a claimed task runs as a chain through the item's
//! steps while they are done ([`Workflow::run`]). As each chain ends its place goes to
//! the next due task; with nothing due it sleeps until the next task falls due, a step finishes, an
//! order is placed or cancelled in this process, or the poll interval passes (for orders
//! placed by another process).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::error::Result;
use crate::workflow::Workflow;

/// Tasks run at once when not configured otherwise.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// The most tasks run at once.
pub const MAX_CONCURRENCY: usize = 1024;

/// Claims due provisioning tasks and runs them.
#[derive(Debug)]
pub struct ProvisioningWorker {
    workflow: Arc<Workflow>,
    wake: Arc<Notify>,
    concurrency: usize,
    poll_interval: Duration,
}

impl ProvisioningWorker {
    /// A worker for `workflow`, woken by its orders' placements and cancellations.
    pub fn new(workflow: Workflow) -> ProvisioningWorker {
        let wake = workflow.orders().wake();
        ProvisioningWorker {
            workflow: Arc::new(workflow),
            wake,
            concurrency: DEFAULT_CONCURRENCY,
            poll_interval: Duration::from_secs(1),
        }
    }

    /// Replaces how many tasks run at once (1 to [`MAX_CONCURRENCY`]).
    pub fn with_concurrency(mut self, concurrency: usize) -> ProvisioningWorker {
        self.concurrency = concurrency.clamp(1, MAX_CONCURRENCY);
        self
    }

    /// Replaces how often an idle worker looks for work other processes added.
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> ProvisioningWorker {
        self.poll_interval = poll_interval;
        self
    }

    /// The workflow.
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// Claims the tasks due at `now` (at most the concurrency) and runs them; returns how
    /// many it claimed. A task whose run failed in the store is left to its lease.
    pub async fn run_once(&self, now: Timestamp) -> Result<usize> {
        let mut running = JoinSet::new();
        let claimed = self.claim_into(&mut running, self.concurrency, now).await?;
        while let Some(joined) = running.join_next().await {
            joined_task(joined);
        }
        Ok(claimed)
    }

    /// Claims up to `room` tasks due at `now` and starts each in `running`.
    async fn claim_into(&self, running: &mut JoinSet<()>, room: usize, now: Timestamp) -> Result<usize> {
        let limit = u32::try_from(room).unwrap_or(u32::MAX);
        let store = self.workflow.orders().store().clone();
        let tasks = store.claim_provisioning_tasks(now, limit, self.workflow.policy().lease).await?;
        let claimed = tasks.len();
        for task in tasks {
            let workflow = Arc::clone(&self.workflow);
            running.spawn(async move {
                if let Err(error) = workflow.run(&task, now).await {
                    tracing::warn!(order = %task.order_id, item = %task.item_id, step = %task.step, %error,
                        "provisioning: a step could not be recorded; it is tried again when its lease runs out");
                }
            });
        }
        Ok(claimed)
    }

    /// Runs until `shutdown` completes (the steps in flight finish first). Up to the
    /// concurrency run at once, as a pipeline: a finished step frees its place for the
    /// next due task at once rather than waiting for the slowest of its pass.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut running = JoinSet::new();
        loop {
            let room = self.concurrency.saturating_sub(running.len());
            let claimed = if room > 0 {
                match self.claim_into(&mut running, room, Timestamp::now()).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::warn!(%error, "provisioning: claiming tasks failed");
                        0
                    }
                }
            } else {
                0
            };
            if claimed == room {
                // Full (room may have been none): the next place frees when a step finishes.
                tokio::select! {
                    () = &mut shutdown => break,
                    Some(joined) = running.join_next() => joined_task(joined),
                }
                continue;
            }
            // Room left: wait for a step to finish (its next step is due now), a task
            // to fall due, an order placed or cancelled here, or the poll interval.
            let wait = match self.workflow.orders().store().next_task_due().await {
                Ok(Some(at)) => {
                    let ms = at.as_millisecond().saturating_sub(Timestamp::now().as_millisecond()).max(0);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(self.poll_interval)
                }
                _ => self.poll_interval,
            };
            if claimed > 0 && wait.is_zero() {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = running.join_next(), if !running.is_empty() => joined_task(joined),
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        while let Some(joined) = running.join_next().await {
            joined_task(joined);
        }
    }
}

/// Logs a step's task that panicked; its lease brings it back.
fn joined_task(joined: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        tracing::error!(%error, "provisioning: a step's task panicked; it is tried again when its lease runs out");
    }
}

//! The transactional outbox: how a BSS change reaches the engine without ever being half
//! done. The change and the engine operation it implies commit together: the operation is
//! a row of `outbox` ([`Tx::enqueue`]) with the engine idempotency key it will be sent
//! under. An [`OutboxWorker`] claims due rows, hands each to an [`OutboxHandler`] (the
//! binary's, which calls the engine; the rows of one claim, at most one per ordering key,
//! concurrently), and marks it done, schedules a retry with exponential backoff, or marks
//! it failed. The worker applies each row at least once; the
//! engine answers a repeated idempotency key with its stored answer, so the operation takes
//! effect exactly once.
//!
//! A claim is a lease: it moves the row's `next_attempt_at_ms` past the lease and counts
//! the attempt, in its own short transaction (on PostgreSQL with `FOR UPDATE SKIP LOCKED`,
//! so two servers never claim the same row; SQLite has one writer). A worker that dies
//! mid-item leaves the row to be claimed again when the lease runs out. Rows that share an
//! `ordering_key` (an account, say) are applied one at a time in enqueue order: only the
//! oldest pending row of a key can be claimed. That machinery is the lease queue of
//! `queue.rs`, which the event hub's deliveries share.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;

use crate::codec::{after_ms, json_text, parse_json, to_ms};
use crate::error::{Result, StoreError};
use crate::queue::Queue;
use crate::sql::{args, Row};
use crate::{Store, Tx};

/// An engine operation to record in the transaction of the BSS change that implies it.
#[derive(Debug, Clone, Copy)]
pub struct NewOutboxItem<'a> {
    /// The engine idempotency key the operation is sent under; unique in the outbox.
    pub idempotency_key: &'a str,
    /// What the handler is to do (`"account.create"`, `"subscription.change_plan"`, …).
    pub kind: &'a str,
    /// Rows with the same key are applied one at a time, in enqueue order.
    pub ordering_key: Option<&'a str>,
    /// The operation's arguments, for the handler.
    pub payload: &'a serde_json::Value,
}

/// A claimed row, handed to the [`OutboxHandler`].
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub idempotency_key: String,
    pub kind: String,
    pub ordering_key: Option<String>,
    pub payload: serde_json::Value,
    /// Which attempt this claim is: 1 the first time.
    pub attempt: i64,
    pub created_at: Timestamp,
}

/// Where a row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    /// Waiting for its next attempt (or leased to a worker).
    Pending,
    /// Applied.
    Done,
    /// Given up on: the handler refused it, or it ran out of attempts. An operator looks
    /// at `last_error`, and may [`requeue`](Store::outbox_requeue) it.
    Failed,
}

impl OutboxState {
    /// The name stored: `pending`, `done`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Done => "done",
            OutboxState::Failed => "failed",
        }
    }

    pub(crate) fn parse(row: &Row, text: &str) -> Result<OutboxState> {
        match text {
            "pending" => Ok(OutboxState::Pending),
            "done" => Ok(OutboxState::Done),
            "failed" => Ok(OutboxState::Failed),
            other => Err(row.corrupt("state", format!("unknown outbox state {other:?}"))),
        }
    }
}

/// A row as an operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub idempotency_key: String,
    pub kind: String,
    pub ordering_key: Option<String>,
    pub payload: serde_json::Value,
    pub state: OutboxState,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// How many rows are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: i64,
    pub done: i64,
    pub failed: i64,
}

/// When to try again and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failed attempt; it doubles after each further one.
    pub first_delay: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
    /// Attempts before a row is marked failed.
    pub max_attempts: i64,
    /// How long a claim holds a row before another worker may claim it again.
    pub lease: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            max_attempts: 20,
            lease: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before the attempt after `attempt` (1-based): first, 2×first, 4×first, …,
    /// at most `max_delay`.
    pub fn delay_after(&self, attempt: i64) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 32)).unwrap_or(32);
        self.first_delay.saturating_mul(1u32 << doublings.min(31)).min(self.max_delay)
    }
}

const COLUMNS: &str = "id, idempotency_key, kind, ordering_key, payload, attempts, created_at_ms";

fn item(row: &Row) -> Result<OutboxItem> {
    Ok(OutboxItem {
        id: row.int("id")?,
        idempotency_key: row.text("idempotency_key")?,
        kind: row.text("kind")?,
        ordering_key: row.opt_text("ordering_key")?,
        payload: parse_json(row, "payload", &row.text("payload")?)?,
        attempt: row.int("attempts")?,
        created_at: row.timestamp("created_at_ms")?,
    })
}

impl Tx {
    /// Records an engine operation in this transaction, due at once; returns its id. The
    /// same idempotency key with the same kind and payload returns the existing row's id
    /// (enqueueing is idempotent too); with anything else it is a
    /// [`StoreError::Conflict`].
    pub async fn enqueue(&mut self, item: NewOutboxItem<'_>, now: Timestamp) -> Result<i64> {
        if item.idempotency_key.is_empty() {
            return Err(StoreError::Invalid { field: "idempotency_key", reason: "empty".into() });
        }
        let payload = json_text("payload", item.payload)?;
        let inserted = self
            .fetch_optional(
                "outbox.enqueue",
                "INSERT INTO outbox (idempotency_key, kind, ordering_key, payload, next_attempt_at_ms, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING id",
                args![item.idempotency_key, item.kind, item.ordering_key, payload, to_ms(now)],
            )
            .await?;
        if let Some(row) = inserted {
            self.enqueued_outbox_item();
            return row.int("id");
        }
        let existing = self
            .fetch_one(
                "outbox.enqueue",
                &format!("SELECT {COLUMNS} FROM outbox WHERE idempotency_key = $1"),
                args![item.idempotency_key],
            )
            .await?;
        let existing = self::item(&existing)?;
        if existing.kind == item.kind
            && existing.ordering_key.as_deref() == item.ordering_key
            && &existing.payload == item.payload
        {
            Ok(existing.id)
        } else {
            Err(StoreError::Conflict { what: "outbox idempotency key", key: item.idempotency_key.to_owned() })
        }
    }
}

impl Tx {
    /// Records many engine operations in this transaction, due at once, a chunk per
    /// statement (a bulk import's). Their idempotency keys must be new: a key already in
    /// the outbox fails the statement (use [`Tx::enqueue`] when a repeat is expected).
    pub async fn enqueue_many(&mut self, items: &[NewOutboxItem<'_>], now: Timestamp) -> Result<()> {
        let now = to_ms(now);
        let mut values = Vec::with_capacity(items.len() * 6);
        for item in items {
            if item.idempotency_key.is_empty() {
                return Err(StoreError::Invalid { field: "idempotency_key", reason: "empty".into() });
            }
            values.extend(args![
                item.idempotency_key,
                item.kind,
                item.ordering_key,
                json_text("payload", item.payload)?,
                now,
                now
            ]);
        }
        crate::bulk::insert_many(
            self,
            "outbox.enqueue",
            "INSERT INTO outbox (idempotency_key, kind, ordering_key, payload, next_attempt_at_ms, created_at_ms)",
            6,
            values,
            "",
        )
        .await?;
        if !items.is_empty() {
            self.enqueued_outbox_item();
        }
        Ok(())
    }
}
/// The outbox as a lease queue (`queue.rs`).
const OUTBOX: Queue = Queue {
    table: "outbox",
    failed_entity: "failed outbox item",
    claim_op: "outbox.claim",
    done_op: "outbox.done",
    retry_op: "outbox.retry",
    failed_op: "outbox.failed",
    requeue_op: "outbox.requeue",
};

impl Store {
    /// Outbox rows not yet applied (`/metrics`).
    pub async fn outbox_pending(&self) -> Result<i64> {
        OUTBOX.pending(self).await
    }

    /// Claims up to `limit` due rows for `lease` (see the module documentation), oldest
    /// first, at most one per ordering key.
    pub async fn claim_outbox(&self, now: Timestamp, limit: u32, lease: Duration) -> Result<Vec<OutboxItem>> {
        let rows = OUTBOX.claim(self, now, limit, lease, COLUMNS, ("", vec![])).await?;
        let mut items = rows.iter().map(item).collect::<Result<Vec<_>>>()?;
        items.sort_by_key(|item| item.id);
        Ok(items)
    }

    /// Claims row `id` for `lease` if it is pending and no older pending row shares its
    /// ordering key, whether or not it is due: the caller that just committed it applies
    /// it at once instead of waiting for the worker. `None` if it cannot be claimed (an
    /// older row of its key goes first, it is finished, or another claim holds it).
    pub async fn claim_outbox_item(&self, id: i64, now: Timestamp, lease: Duration) -> Result<Option<OutboxItem>> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at_ms = $3
             WHERE id IN (
                 SELECT due.id FROM outbox due
                 WHERE due.id = $1 AND due.state = 'pending'
                   AND (due.attempts = 0 OR due.next_attempt_at_ms <= $2)
                   AND NOT EXISTS (
                       SELECT 1 FROM outbox earlier
                       WHERE earlier.state = 'pending' AND earlier.ordering_key = due.ordering_key
                         AND earlier.id < due.id){skip_locked})
             RETURNING {COLUMNS}",
            skip_locked = tx.dialect().lock_rows_skip_locked()
        );
        let row = tx.fetch_optional("outbox.claim_one", &sql, args![id, to_ms(now), after_ms(now, lease)]).await?;
        let claimed = row.as_ref().map(item).transpose()?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// The id of the outbox row with this idempotency key.
    pub async fn outbox_id(&self, idempotency_key: &str) -> Result<Option<i64>> {
        let mut tx = self.read().await?;
        let row = tx
            .fetch_optional("outbox.id", "SELECT id FROM outbox WHERE idempotency_key = $1", args![idempotency_key])
            .await?;
        row.map(|row| row.int("id")).transpose()
    }

    /// Marks a claimed row applied. `false` if it was already finished (another worker
    /// applied it after this claim's lease ran out: harmless, the engine deduplicated).
    pub async fn outbox_done(&self, item: &OutboxItem, now: Timestamp) -> Result<bool> {
        OUTBOX.done(self, item.id, now).await
    }

    /// Marks claimed rows applied, in one transaction; returns how many were still
    /// pending (see [`Store::outbox_done`]).
    pub async fn outbox_done_many(&self, items: &[&OutboxItem], now: Timestamp) -> Result<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut changed = 0;
        for chunk in items.chunks(500) {
            let sql = format!(
                "UPDATE outbox SET state = 'done', finished_at_ms = $1, last_error = NULL
                 WHERE state = 'pending' AND id IN ({})",
                crate::bulk::placeholders(2, chunk.len())
            );
            let mut values = args![to_ms(now)];
            values.extend(chunk.iter().map(|item| crate::sql::Arg::from(item.id)));
            changed += tx.execute("outbox.done", &sql, values).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Schedules another attempt of a claimed row at `at`, recording why this one failed.
    /// `false` if the claim is no longer this caller's (the row was claimed again, or
    /// finished), in which case nothing changed.
    pub async fn outbox_retry(&self, item: &OutboxItem, error: &str, at: Timestamp) -> Result<bool> {
        OUTBOX.retry(self, item.id, item.attempt, error, at).await
    }

    /// Gives up on a claimed row. `false` if the claim is no longer this caller's.
    pub async fn outbox_failed(&self, item: &OutboxItem, error: &str, now: Timestamp) -> Result<bool> {
        OUTBOX.failed(self, item.id, item.attempt, error, now).await
    }

    /// Puts a failed row back in the queue, due at `now` (an operator's decision after
    /// fixing the cause). `NotFound` unless the row exists and has failed.
    pub async fn outbox_requeue(&self, id: i64, now: Timestamp) -> Result<()> {
        let mut tx = self.begin().await?;
        OUTBOX.requeue(&mut tx, id, now).await?;
        tx.commit().await
    }

    /// One row by id.
    pub async fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>> {
        let mut tx = self.read().await?;
        let row = tx
            .fetch_optional(
                "outbox.entry",
                "SELECT id, idempotency_key, kind, ordering_key, payload, state, attempts, next_attempt_at_ms,
                        last_error, created_at_ms, finished_at_ms
                 FROM outbox WHERE id = $1",
                args![id],
            )
            .await?;
        row.map(|row| {
            Ok(OutboxEntry {
                id: row.int("id")?,
                idempotency_key: row.text("idempotency_key")?,
                kind: row.text("kind")?,
                ordering_key: row.opt_text("ordering_key")?,
                payload: parse_json(&row, "payload", &row.text("payload")?)?,
                state: OutboxState::parse(&row, &row.text("state")?)?,
                attempts: row.int("attempts")?,
                next_attempt_at: row.timestamp("next_attempt_at_ms")?,
                last_error: row.opt_text("last_error")?,
                created_at: row.timestamp("created_at_ms")?,
                finished_at: row.opt_timestamp("finished_at_ms")?,
            })
        })
        .transpose()
    }

    /// How many rows are pending, done and failed (for readiness and metrics).
    pub async fn outbox_counts(&self) -> Result<OutboxCounts> {
        let mut tx = self.read().await?;
        let rows =
            tx.fetch_all("outbox.counts", "SELECT state, COUNT(*) AS n FROM outbox GROUP BY state", vec![]).await?;
        let mut counts = OutboxCounts::default();
        for row in &rows {
            let n = row.int("n")?;
            match OutboxState::parse(row, &row.text("state")?)? {
                OutboxState::Pending => counts.pending = n,
                OutboxState::Done => counts.done = n,
                OutboxState::Failed => counts.failed = n,
            }
        }
        Ok(counts)
    }
}

/// Why an attempt did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// Worth trying again later (the engine is busy or restarting, a timeout).
    Retry(String),
    /// Will never succeed as it is (the engine refused the operation): mark it failed now.
    Fail(String),
}

/// Applies outbox rows; the binary implements it with the engine. It must be idempotent by
/// `item.idempotency_key`: an item can be applied more than once (after a crash, or a
/// lease that ran out), and only the first may take effect.
pub trait OutboxHandler: Send + Sync {
    fn apply(&self, item: &OutboxItem) -> impl Future<Output = Result<(), ApplyError>> + Send;
}

/// What one pass of the worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerPass {
    pub claimed: usize,
    pub done: usize,
    pub retried: usize,
    pub failed: usize,
}

/// Claims due outbox rows and applies them through an [`OutboxHandler`].
#[derive(Debug)]
pub struct OutboxWorker<H> {
    store: Store,
    handler: H,
    policy: RetryPolicy,
    batch_size: u32,
    poll_interval: Duration,
}

impl<H: OutboxHandler> OutboxWorker<H> {
    /// A worker with the default [`RetryPolicy`], batches of 64 and a 1 s poll (it is also
    /// woken when this process commits an enqueue).
    pub fn new(store: Store, handler: H) -> Self {
        OutboxWorker {
            store,
            handler,
            policy: RetryPolicy::default(),
            batch_size: 64,
            poll_interval: Duration::from_secs(1),
        }
    }

    /// Replaces the retry policy.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Replaces the batch size (at least 1).
    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Replaces how often an idle worker looks for rows other processes enqueued.
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Claims one batch due at `now` and applies it. A claim holds at most one item per
    /// ordering key, so its items are independent: they are applied concurrently (the
    /// engine group-commits them together), and the applied ones are marked done in one
    /// transaction; a retry or a failure is recorded item by item.
    pub async fn run_once(&self, now: Timestamp) -> Result<WorkerPass> {
        let items = self.store.claim_outbox(now, self.batch_size, self.policy.lease).await?;
        let mut pass = WorkerPass { claimed: items.len(), ..WorkerPass::default() };
        let results = join_all(items.iter().map(|item| self.handler.apply(item)).collect()).await;
        let mut done = Vec::with_capacity(items.len());
        for (item, result) in items.iter().zip(results) {
            match result {
                Ok(()) => done.push(item),
                Err(error) => match self.record_failure(item, error, now).await? {
                    OutboxState::Failed => pass.failed += 1,
                    _ => pass.retried += 1,
                },
            }
        }
        self.store.outbox_done_many(&done, now).await?;
        pass.done = done.len();
        Ok(pass)
    }

    /// Applies row `id` now, as a pass would, if it can be claimed
    /// ([`Store::claim_outbox_item`]): where it stands afterwards (`Pending`: an attempt
    /// failed and another is scheduled), or `None` if it was not claimed (an older row of
    /// its ordering key goes first, or it is finished or held by another claim); the
    /// worker's passes take it from there.
    pub async fn apply_now(&self, id: i64, now: Timestamp) -> Result<Option<OutboxState>> {
        match self.store.claim_outbox_item(id, now, self.policy.lease).await? {
            Some(item) => self.apply(&item, now).await.map(Some),
            None => Ok(None),
        }
    }

    /// Applies one claimed row and records the result.
    async fn apply(&self, item: &OutboxItem, now: Timestamp) -> Result<OutboxState> {
        match self.handler.apply(item).await {
            Ok(()) => {
                self.store.outbox_done(item, now).await?;
                Ok(OutboxState::Done)
            }
            Err(error) => self.record_failure(item, error, now).await,
        }
    }

    /// Records an attempt that did not apply: another attempt later (`Pending`) while
    /// attempts are left and the error is worth a retry, else failed for good.
    async fn record_failure(&self, item: &OutboxItem, error: ApplyError, now: Timestamp) -> Result<OutboxState> {
        match error {
            ApplyError::Retry(error) if item.attempt < self.policy.max_attempts => {
                let delay = self.policy.delay_after(item.attempt);
                let at = Timestamp::from_millisecond(after_ms(now, delay)).unwrap_or(Timestamp::MAX);
                tracing::warn!(id = item.id, kind = %item.kind, attempt = item.attempt, retry_in = ?delay, %error, "outbox: attempt failed, will retry");
                self.store.outbox_retry(item, &error, at).await?;
                Ok(OutboxState::Pending)
            }
            ApplyError::Retry(error) | ApplyError::Fail(error) => {
                tracing::error!(id = item.id, kind = %item.kind, key = %item.idempotency_key, attempt = item.attempt, %error, "outbox: operation failed for good; the BSS and the engine disagree until an operator acts");
                self.store.outbox_failed(item, &error, now).await?;
                Ok(OutboxState::Failed)
            }
        }
    }

    /// Runs until `shutdown` completes: a pass, then, unless the batch was full, a wait for
    /// an enqueue in this process or the poll interval. A store error is logged and the
    /// pass retried after the poll interval.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let full = match self.run_once(Timestamp::now()).await {
                Ok(pass) => pass.claimed == self.batch_size as usize,
                Err(error) => {
                    tracing::warn!(%error, "outbox: pass failed");
                    false
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.store.outbox_wake.notified(), if !full => {}
                () = tokio::time::sleep(self.poll_interval), if !full => {}
                () = std::future::ready(()), if full => {}
            }
        }
    }
}

/// Polls every future until all are ready; their outputs, in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

//! The lease queue under the outbox (`outbox`) and the event hub's deliveries
//! (`hub_deliveries`): one implementation of claiming due rows, finishing them, scheduling
//! another attempt, giving up and putting a given-up row back, over any table with the
//! columns `id`, `ordering_key`, `state` (`pending`, `done`, `failed`), `attempts`,
//! `next_attempt_at_ms`, `last_error` and `finished_at_ms`.
//!
//! A claim is a lease: it moves the row's `next_attempt_at_ms` past the lease and counts
//! the attempt, in its own short transaction (on PostgreSQL with `FOR UPDATE SKIP LOCKED`,
//! so two servers never claim the same row; SQLite has one writer). A worker that dies
//! mid-item leaves the row to be claimed again when the lease runs out. Rows that share an
//! `ordering_key` are handed out one at a time in id order: only the oldest pending row of
//! a key can be claimed. A report (done, retry, failed) names the attempt it is about, so
//! a worker whose lease ran out cannot overwrite the next claim's outcome.

use std::time::Duration;

use jiff::Timestamp;

use crate::bulk::{in_list, MAX_ROWS_PER_STATEMENT};
use crate::codec::{after_ms, to_ms};
use crate::error::{Result, StoreError};
use crate::sql::{args, Arg, Dialect, Row};
use crate::{Store, Tx};

/// One table used as a lease queue, with the operation names its errors carry.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) table: &'static str,
    /// What an operator calls a given-up row in messages (`failed outbox item`).
    pub(crate) failed_entity: &'static str,
    pub(crate) claim_op: &'static str,
    pub(crate) done_op: &'static str,
    pub(crate) retry_op: &'static str,
    pub(crate) failed_op: &'static str,
    pub(crate) requeue_op: &'static str,
}

impl Queue {
    /// Claims up to `limit` due rows for `lease`, oldest first, at most one per ordering
    /// key, and returns the `returning` columns of each, in id order. `extra` is an
    /// additional condition on the candidate row `due` whose placeholders start at `$4`,
    /// with its arguments.
    pub(crate) async fn claim(
        &self,
        store: &Store,
        now: Timestamp,
        limit: u32,
        lease: Duration,
        returning: &str,
        extra: (&str, Vec<Arg>),
    ) -> Result<Vec<Row>> {
        let mut tx = store.begin().await?;
        let (condition, extra_args) = extra;
        let sql = format!(
            "UPDATE {table} SET attempts = attempts + 1, next_attempt_at_ms = $2
             WHERE id IN (
                 SELECT due.id FROM {table} due
                 WHERE due.state = 'pending' AND due.next_attempt_at_ms <= $1{condition}
                   AND NOT EXISTS (
                       SELECT 1 FROM {table} earlier
                       WHERE earlier.state = 'pending' AND earlier.ordering_key = due.ordering_key
                         AND earlier.id < due.id)
                 ORDER BY due.id
                 LIMIT $3{skip_locked})
             RETURNING {returning}",
            table = self.table,
            skip_locked = tx.dialect().lock_rows_skip_locked()
        );
        let mut all = args![to_ms(now), after_ms(now, lease), i64::from(limit)];
        all.extend(extra_args);
        let rows = tx.fetch_all(self.claim_op, &sql, all).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Marks a claimed row finished. `false` if it already was.
    /// Rows still pending (due or waiting for a later attempt): one count on the partial
    /// index of pending rows, cheap enough for every monitoring scrape.
    pub(crate) async fn pending(&self, store: &Store) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) AS n FROM {} WHERE state = 'pending'", self.table);
        let mut tx = store.read().await?;
        tx.fetch_one(self.claim_op, &sql, vec![]).await?.int("n")
    }

    pub(crate) async fn done(&self, store: &Store, id: i64, now: Timestamp) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET state = 'done', finished_at_ms = $2, last_error = NULL WHERE id = $1 AND state = 'pending'",
            self.table
        );
        self.update(store, self.done_op, &sql, args![id, to_ms(now)]).await
    }

    /// Marks claimed rows finished, in one transaction; returns how many were not yet.
    pub(crate) async fn done_many(&self, store: &Store, ids: &[i64], now: Timestamp) -> Result<u64> {
        let mut tx = store.begin().await?;
        let mut changed = 0;
        for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
            let at = match tx.dialect() {
                Dialect::Sqlite => "?",
                Dialect::Postgres => "$1",
            };
            let list = in_list(tx.dialect(), 2, chunk.len());
            let sql = format!(
                "UPDATE {} SET state = 'done', finished_at_ms = {at}, last_error = NULL
                 WHERE state = 'pending' AND id IN ({list})",
                self.table
            );
            let mut all = args![to_ms(now)];
            all.extend(chunk.iter().map(|id| Arg::from(*id)));
            changed += tx.execute(self.done_op, &sql, all).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Schedules another attempt of the row claimed as `attempt` at `at`. `false` if the
    /// claim is no longer the caller's (claimed again, or finished): nothing changed.
    pub(crate) async fn retry(&self, store: &Store, id: i64, attempt: i64, error: &str, at: Timestamp) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET next_attempt_at_ms = $3, last_error = $4 WHERE id = $1 AND attempts = $2 AND state = 'pending'",
            self.table
        );
        self.update(store, self.retry_op, &sql, args![id, attempt, to_ms(at), error]).await
    }

    /// Gives up on the row claimed as `attempt`. `false` if the claim is no longer the
    /// caller's.
    pub(crate) async fn failed(
        &self,
        store: &Store,
        id: i64,
        attempt: i64,
        error: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET state = 'failed', finished_at_ms = $3, last_error = $4
             WHERE id = $1 AND attempts = $2 AND state = 'pending'",
            self.table
        );
        self.update(store, self.failed_op, &sql, args![id, attempt, to_ms(now), error]).await
    }

    /// Hands a claimed row back untried: due at `now`, its attempt not counted. `false` if
    /// the claim is no longer the caller's.
    pub(crate) async fn release(&self, store: &Store, id: i64, attempt: i64, now: Timestamp) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET next_attempt_at_ms = $3, attempts = attempts - 1
             WHERE id = $1 AND attempts = $2 AND state = 'pending'",
            self.table
        );
        self.update(store, self.retry_op, &sql, args![id, attempt, to_ms(now)]).await
    }

    /// Puts a given-up row back in the queue, due at `now` (an operator's decision after
    /// fixing the cause). It keeps its count of attempts, so a worker that gives up after
    /// a number of attempts gives the row one more before giving up again. `NotFound`
    /// unless the row exists and has failed.
    /// In `tx`, so the operator's decision can be audited with it.
    pub(crate) async fn requeue(&self, tx: &mut Tx, id: i64, now: Timestamp) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET state = 'pending', next_attempt_at_ms = $2, finished_at_ms = NULL
             WHERE id = $1 AND state = 'failed'",
            self.table
        );
        if tx.execute(self.requeue_op, &sql, args![id, to_ms(now)]).await? == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound { entity: self.failed_entity, id: id.to_string() })
        }
    }

    async fn update(&self, store: &Store, operation: &'static str, sql: &str, args: Vec<Arg>) -> Result<bool> {
        let mut tx = store.begin().await?;
        let changed = tx.execute(operation, sql, args).await?;
        tx.commit().await?;
        Ok(changed == 1)
    }
}

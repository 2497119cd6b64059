//! Product orders (TMF622) and their provisioning workflow as rows: the order (state,
//! billing account and its hierarchy root, requested start, whether a cancellation was
//! accepted, the document the API shows), its items (action, state, the product acted on,
//! the workflow's parameters) and one task per step of each item (state, attempts, next
//! attempt, last error, result). Exactly one task of an unfinished item is due at a time
//! (`due` forward, `undo` compensating); [`Store::claim_provisioning_tasks`] leases due
//! tasks the way the outbox leases its rows (the attempt counted, `next_attempt_at_ms`
//! moved past the lease, `FOR UPDATE SKIP LOCKED` on PostgreSQL), and
//! [`Tx::finish_task`] records an outcome only while the claim still holds. Cancellation
//! requests (`cancelProductOrder`) are rows of their own.
//!
//! The rules (what an order may do, the steps, their order and compensation) live in
//! `tollgate-orders`; this module stores and reads what it decided.

use std::time::Duration;

use jiff::Timestamp;

use crate::codec::{after_ms, json_text, parse_json, to_ms};
use crate::customers::{equalities, version_of, Page};
use crate::error::{Result, StoreError};
use crate::sql::{args, Arg, Row};
use crate::versioned::{update_versioned, Version, Versioned};
use crate::{Store, Tx};

/// Orders (or cancellation requests) a list returns at most.
pub const ORDER_PAGE_MAX: u32 = 1000;

/// A product order as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductOrderRow {
    pub id: String,
    /// Assigned by the store on insert (ignored there); orders the items of one product.
    pub seq: i64,
    /// The TMF622 state (`acknowledged`, `inProgress`, …).
    pub state: String,
    pub billing_account_id: String,
    /// The root of the billing account's hierarchy.
    pub root_id: String,
    pub requested_start_at: Option<Timestamp>,
    /// A cancellation was accepted: the workflow compensates instead of going on.
    pub cancelling: bool,
    /// The document the API shows.
    pub doc: serde_json::Value,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// The key the caller placed it under, unique per billing hierarchy (`root_id`): placed
    /// again under it, the order is this one.
    pub idempotency_key: Option<String>,
    /// With a key sent in an API request: the digest of that request, so the key sent
    /// again with another request is told apart from a retransmission.
    pub idempotency_digest: Option<String>,
}

/// An order item as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItemRow {
    pub order_id: String,
    pub item_id: String,
    pub position: i64,
    /// The order's `seq`.
    pub order_seq: i64,
    pub action: String,
    pub state: String,
    /// The product (subscription or add-on) it acts on or creates.
    pub product_id: String,
    /// What the workflow needs (chosen number or SIM, target plan, parent line, …).
    pub request: serde_json::Value,
}

/// A provisioning task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub seq: i64,
    pub order_id: String,
    pub item_id: String,
    pub position: i64,
    pub step: String,
    /// `waiting`, `due`, `done`, `skipped`, `failed`, `undo`, `undone` or `cancelled`.
    pub state: String,
    /// Attempts in the current direction (forward, or compensating); a claim counts one.
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub result: Option<serde_json::Value>,
}

/// A task to create with its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTask<'a> {
    pub order_id: &'a str,
    pub item_id: &'a str,
    pub position: i64,
    pub step: &'a str,
    pub state: &'a str,
    pub next_attempt_at: Timestamp,
}

/// How a claimed task ends its attempt ([`Tx::finish_task`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome<'a> {
    pub state: &'a str,
    pub next_attempt_at: Timestamp,
    /// `None` keeps the result the task has.
    pub result: Option<&'a serde_json::Value>,
    pub last_error: Option<&'a str>,
    /// Start counting attempts afresh (the task changes direction).
    pub reset_attempts: bool,
}

/// What an order list may be narrowed by (equality on each given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub state: Option<String>,
    pub billing_account_id: Option<String>,
    pub root_id: Option<String>,
}

/// A cancellation request (TMF622 `cancelProductOrder`) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRow {
    pub id: String,
    pub order_id: String,
    /// `acknowledged`, `inProgress`, `done` or `terminatedWithError`.
    pub state: String,
    pub reason: Option<String>,
    pub error_message: Option<String>,
    pub root_id: String,
    pub requested_at: Timestamp,
    pub effective_at: Option<Timestamp>,
}

const ORDER_COLUMNS: &str = "seq, id, state, billing_account_id, root_id, requested_start_at_ms, cancelling, doc_json,
     version, created_at_ms, completed_at_ms, idempotency_key, idempotency_digest";
const ITEM_COLUMNS: &str = "order_id, item_id, position, order_seq, action, state, product_id, request_json";
const TASK_COLUMNS: &str =
    "seq, order_id, item_id, position, step, state, attempts, next_attempt_at_ms, last_error, result_json";
const CANCEL_COLUMNS: &str =
    "seq, id, order_id, state, reason, error_message, root_id, requested_at_ms, effective_at_ms";

fn order(row: &Row) -> Result<Versioned<ProductOrderRow>> {
    Ok(Versioned {
        value: ProductOrderRow {
            id: row.text("id")?,
            seq: row.int("seq")?,
            state: row.text("state")?,
            billing_account_id: row.text("billing_account_id")?,
            root_id: row.text("root_id")?,
            requested_start_at: row.opt_timestamp("requested_start_at_ms")?,
            cancelling: row.int("cancelling")? != 0,
            doc: parse_json(row, "doc_json", &row.text("doc_json")?)?,
            created_at: row.timestamp("created_at_ms")?,
            completed_at: row.opt_timestamp("completed_at_ms")?,
            idempotency_key: row.opt_text("idempotency_key")?,
            idempotency_digest: row.opt_text("idempotency_digest")?,
        },
        version: version_of(row)?,
    })
}

fn item(row: &Row) -> Result<OrderItemRow> {
    Ok(OrderItemRow {
        order_id: row.text("order_id")?,
        item_id: row.text("item_id")?,
        position: row.int("position")?,
        order_seq: row.int("order_seq")?,
        action: row.text("action")?,
        state: row.text("state")?,
        product_id: row.text("product_id")?,
        request: parse_json(row, "request_json", &row.text("request_json")?)?,
    })
}

fn task(row: &Row) -> Result<TaskRow> {
    Ok(TaskRow {
        seq: row.int("seq")?,
        order_id: row.text("order_id")?,
        item_id: row.text("item_id")?,
        position: row.int("position")?,
        step: row.text("step")?,
        state: row.text("state")?,
        attempts: row.int("attempts")?,
        next_attempt_at: row.timestamp("next_attempt_at_ms")?,
        last_error: row.opt_text("last_error")?,
        result: row.opt_text("result_json")?.map(|text| parse_json(row, "result_json", &text)).transpose()?,
    })
}

fn cancel(row: &Row) -> Result<Versioned<CancelRow>> {
    Ok(Versioned {
        value: CancelRow {
            id: row.text("id")?,
            order_id: row.text("order_id")?,
            state: row.text("state")?,
            reason: row.opt_text("reason")?,
            error_message: row.opt_text("error_message")?,
            root_id: row.text("root_id")?,
            requested_at: row.timestamp("requested_at_ms")?,
            effective_at: row.opt_timestamp("effective_at_ms")?,
        },
        // Cancellation rows are not versioned; they change only by the workflow.
        version: Version::FIRST,
    })
}

impl Tx {
    /// Inserts a new order at [`Version::FIRST`]; returns its `seq`. `Conflict` if the id
    /// is taken, or its idempotency key in its hierarchy ([`Tx::product_order_by_key`]
    /// finds that order; on PostgreSQL once the transaction that placed it has committed).
    pub async fn insert_product_order(&mut self, new: &ProductOrderRow, now: Timestamp) -> Result<i64> {
        let doc = json_text("doc", &new.doc)?;
        let row = self
            .fetch_optional(
                "product_orders.insert",
                "INSERT INTO product_orders (id, state, billing_account_id, root_id, requested_start_at_ms, cancelling,
                     doc_json, version, created_at_ms, updated_at_ms, idempotency_key, idempotency_digest)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8, $9, $10)
                 ON CONFLICT DO NOTHING
                 RETURNING seq",
                args![
                    new.id.as_str(),
                    new.state.as_str(),
                    new.billing_account_id.as_str(),
                    new.root_id.as_str(),
                    new.requested_start_at.map(to_ms),
                    i64::from(new.cancelling),
                    doc,
                    to_ms(now),
                    new.idempotency_key.clone(),
                    new.idempotency_digest.clone()
                ],
            )
            .await?;
        match row {
            Some(row) => row.int("seq"),
            None => Err(StoreError::Conflict { what: "product order", key: new.id.clone() }),
        }
    }

    /// Inserts an order's items.
    pub async fn insert_order_items(&mut self, items: &[OrderItemRow], now: Timestamp) -> Result<()> {
        for item in items {
            let request = json_text("request", &item.request)?;
            self.execute(
                "product_order_items.insert",
                "INSERT INTO product_order_items (order_id, item_id, position, order_seq, action, state, product_id,
                     request_json, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                args![
                    item.order_id.as_str(),
                    item.item_id.as_str(),
                    item.position,
                    item.order_seq,
                    item.action.as_str(),
                    item.state.as_str(),
                    item.product_id.as_str(),
                    request,
                    to_ms(now)
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// Inserts tasks (one statement for an order's steps).
    pub async fn insert_tasks(&mut self, tasks: &[NewTask<'_>], now: Timestamp) -> Result<()> {
        let mut values = Vec::with_capacity(tasks.len() * 8);
        for new in tasks {
            values.extend(args![
                new.order_id,
                new.item_id,
                new.position,
                new.step,
                new.state,
                0_i64,
                to_ms(new.next_attempt_at),
                to_ms(now)
            ]);
        }
        crate::bulk::insert_many(
            self,
            "provisioning_tasks.insert",
            "INSERT INTO provisioning_tasks (order_id, item_id, position, step, state, attempts, next_attempt_at_ms,
                 updated_at_ms)",
            8,
            values,
            "",
        )
        .await?;
        Ok(())
    }

    /// An order read in this transaction (locked until it ends on PostgreSQL).
    pub async fn product_order(&mut self, id: &str) -> Result<Option<Versioned<ProductOrderRow>>> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM product_orders WHERE id = $1{}", self.dialect().lock_rows());
        self.fetch_optional("product_orders.get", &sql, args![id]).await?.as_ref().map(order).transpose()
    }

    /// The order of hierarchy `root_id` placed under idempotency key `key`, if any.
    pub async fn product_order_by_key(
        &mut self,
        root_id: &str,
        key: &str,
    ) -> Result<Option<Versioned<ProductOrderRow>>> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM product_orders WHERE root_id = $1 AND idempotency_key = $2");
        self.fetch_optional("product_orders.by_key", &sql, args![root_id, key]).await?.as_ref().map(order).transpose()
    }

    /// Replaces an order's state, cancellation flag, document and completion still at
    /// `expected`; the new version, or `NotFound` / `StaleVersion`.
    pub async fn update_product_order(
        &mut self,
        row: &ProductOrderRow,
        expected: Version,
        now: Timestamp,
    ) -> Result<Version> {
        let doc = json_text("doc", &row.doc)?;
        update_versioned(
            self,
            "product order",
            "product_orders",
            &row.id,
            expected,
            "state = $3, requested_start_at_ms = $4, cancelling = $5, doc_json = $6, completed_at_ms = $7,
             updated_at_ms = $8",
            args![
                row.state.as_str(),
                row.requested_start_at.map(to_ms),
                i64::from(row.cancelling),
                doc,
                row.completed_at.map(to_ms),
                to_ms(now)
            ],
        )
        .await
    }

    /// An order's items, in order.
    pub async fn order_items(&mut self, order_id: &str) -> Result<Vec<OrderItemRow>> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM product_order_items WHERE order_id = $1 ORDER BY position");
        let rows = self.fetch_all("product_order_items.of_order", &sql, args![order_id]).await?;
        rows.iter().map(item).collect()
    }

    /// Sets an item's state (the caller holds its order's row).
    pub async fn set_item_state(&mut self, order_id: &str, item_id: &str, state: &str, now: Timestamp) -> Result<()> {
        let changed = self
            .execute(
                "product_order_items.set_state",
                "UPDATE product_order_items SET state = $3, updated_at_ms = $4 WHERE order_id = $1 AND item_id = $2",
                args![order_id, item_id, state, to_ms(now)],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound { entity: "product order item", id: format!("{order_id}/{item_id}") });
        }
        Ok(())
    }

    /// An item's tasks, in step order.
    pub async fn item_tasks(&mut self, order_id: &str, item_id: &str) -> Result<Vec<TaskRow>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM provisioning_tasks WHERE order_id = $1 AND item_id = $2 ORDER BY position"
        );
        let rows = self.fetch_all("provisioning_tasks.of_item", &sql, args![order_id, item_id]).await?;
        rows.iter().map(task).collect()
    }

    /// Ends the attempt of a claimed task: `claimed` is the task as the claim returned it.
    /// `false` (and nothing changed) if the claim no longer holds: the lease ran out and
    /// another worker claimed it, or it left the claimed state.
    pub async fn finish_task(&mut self, claimed: &TaskRow, outcome: &TaskOutcome<'_>, now: Timestamp) -> Result<bool> {
        let result = outcome.result.map(|result| json_text("result", result)).transpose()?;
        let changed = self
            .execute(
                "provisioning_tasks.finish",
                "UPDATE provisioning_tasks
                 SET state = $4, next_attempt_at_ms = $5, result_json = COALESCE($6, result_json), last_error = $7,
                     attempts = CASE WHEN $8 = 1 THEN 0 ELSE attempts END, updated_at_ms = $9
                 WHERE seq = $1 AND state = $2 AND attempts = $3",
                args![
                    claimed.seq,
                    claimed.state.as_str(),
                    claimed.attempts,
                    outcome.state,
                    to_ms(outcome.next_attempt_at),
                    result,
                    outcome.last_error,
                    i64::from(outcome.reset_attempts),
                    to_ms(now)
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Moves an unclaimed task (the next step to run, or the previous one to undo) to
    /// `state`, due at `at`, its attempts counted afresh.
    pub async fn set_task(&mut self, seq: i64, state: &str, at: Timestamp, now: Timestamp) -> Result<()> {
        self.execute(
            "provisioning_tasks.set",
            "UPDATE provisioning_tasks SET state = $2, next_attempt_at_ms = $3, attempts = 0, updated_at_ms = $4
             WHERE seq = $1",
            args![seq, state, to_ms(at), to_ms(now)],
        )
        .await?;
        Ok(())
    }

    /// Claims the task `seq` for this transaction's worker as
    /// [`Store::claim_provisioning_tasks`] would (due, its first attempt counted, held for
    /// `lease`), so the worker that finished the step before it runs it next without a
    /// claim of its own; if the worker dies first, the lease brings it back. The task as
    /// claimed, or `None` if there is no such task.
    pub async fn claim_task(&mut self, seq: i64, now: Timestamp, lease: Duration) -> Result<Option<TaskRow>> {
        let sql = format!(
            "UPDATE provisioning_tasks SET state = 'due', attempts = 1, next_attempt_at_ms = $2, updated_at_ms = $3
             WHERE seq = $1
             RETURNING {TASK_COLUMNS}"
        );
        let row = self
            .fetch_optional("provisioning_tasks.claim_one", &sql, args![seq, after_ms(now, lease), to_ms(now)])
            .await?;
        row.as_ref().map(task).transpose()
    }

    /// Makes an order's due (or compensating) tasks due at `at` without counting an
    /// attempt: a new start date, or a cancellation to act on at once. Returns how many.
    pub async fn reschedule_order_tasks(&mut self, order_id: &str, at: Timestamp, now: Timestamp) -> Result<u64> {
        self.execute(
            "provisioning_tasks.reschedule",
            "UPDATE provisioning_tasks SET next_attempt_at_ms = $2, updated_at_ms = $3
             WHERE order_id = $1 AND state IN ('due', 'undo') AND attempts = 0",
            args![order_id, to_ms(at), to_ms(now)],
        )
        .await
    }

    /// The first unfinished item on `product_id` of an order placed before `order_seq`, if
    /// any: (order id, item id).
    pub async fn earlier_open_item(&mut self, product_id: &str, order_seq: i64) -> Result<Option<(String, String)>> {
        let row = self
            .fetch_optional(
                "product_order_items.earlier_open",
                "SELECT order_id, item_id FROM product_order_items
                 WHERE product_id = $1 AND order_seq < $2
                   AND state NOT IN ('completed', 'failed', 'cancelled')
                 ORDER BY order_seq LIMIT 1",
                args![product_id, order_seq],
            )
            .await?;
        row.map(|row| Ok((row.text("order_id")?, row.text("item_id")?))).transpose()
    }

    /// Inserts a cancellation request.
    pub async fn insert_cancel(&mut self, new: &CancelRow) -> Result<()> {
        self.execute(
            "cancel_product_orders.insert",
            "INSERT INTO cancel_product_orders (id, order_id, state, reason, error_message, root_id, requested_at_ms,
                 effective_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            args![
                new.id.as_str(),
                new.order_id.as_str(),
                new.state.as_str(),
                new.reason.clone(),
                new.error_message.clone(),
                new.root_id.as_str(),
                to_ms(new.requested_at),
                new.effective_at.map(to_ms)
            ],
        )
        .await?;
        Ok(())
    }

    /// The cancellation requests of an order still in progress.
    pub async fn open_cancels(&mut self, order_id: &str) -> Result<Vec<CancelRow>> {
        let sql = format!(
            "SELECT {CANCEL_COLUMNS} FROM cancel_product_orders WHERE order_id = $1 AND state = 'inProgress' ORDER BY seq"
        );
        let rows = self.fetch_all("cancel_product_orders.open", &sql, args![order_id]).await?;
        rows.iter().map(|row| cancel(row).map(|found| found.value)).collect()
    }

    /// Ends a cancellation request.
    pub async fn finish_cancel(
        &mut self,
        id: &str,
        state: &str,
        error_message: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        self.execute(
            "cancel_product_orders.finish",
            "UPDATE cancel_product_orders SET state = $2, error_message = $3, effective_at_ms = $4 WHERE id = $1",
            args![id, state, error_message, to_ms(now)],
        )
        .await?;
        Ok(())
    }
}

impl Store {
    /// An order.
    pub async fn product_order(&self, id: &str) -> Result<Option<Versioned<ProductOrderRow>>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {ORDER_COLUMNS} FROM product_orders WHERE id = $1");
        tx.fetch_optional("product_orders.get", &sql, args![id]).await?.as_ref().map(order).transpose()
    }

    /// The ids of hierarchy `root_id`'s orders placed under the idempotency key `prefix`
    /// followed by their billing account's id (one per account, as the dunning run
    /// places them), oldest first.
    pub async fn product_order_ids_keyed_per_account(&self, root_id: &str, prefix: &str) -> Result<Vec<String>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "product_orders.keyed_per_account",
                "SELECT id FROM product_orders
                 WHERE root_id = $1 AND idempotency_key = $2 || billing_account_id
                 ORDER BY seq",
                args![root_id, prefix],
            )
            .await?;
        rows.iter().map(|row| row.text("id")).collect()
    }

    /// The order of hierarchy `root_id` placed under idempotency key `key`, with its
    /// items, read in one snapshot (no lock, no writer taken).
    pub async fn product_order_by_key(
        &self,
        root_id: &str,
        key: &str,
    ) -> Result<Option<(Versioned<ProductOrderRow>, Vec<OrderItemRow>)>> {
        let mut tx = self.read().await?;
        let Some(found) = tx.product_order_by_key(root_id, key).await? else { return Ok(None) };
        let items = tx.order_items(&found.value.id).await?;
        Ok(Some((found, items)))
    }

    /// An order with its items and each item's tasks, read in one snapshot.
    pub async fn product_order_detail(
        &self,
        id: &str,
    ) -> Result<Option<(Versioned<ProductOrderRow>, Vec<(OrderItemRow, Vec<TaskRow>)>)>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {ORDER_COLUMNS} FROM product_orders WHERE id = $1");
        let Some(row) = tx.fetch_optional("product_orders.get", &sql, args![id]).await? else { return Ok(None) };
        let found = order(&row)?;
        let mut items = Vec::new();
        for item in tx.order_items(id).await? {
            let tasks = tx.item_tasks(id, &item.item_id).await?;
            items.push((item, tasks));
        }
        Ok(Some((found, items)))
    }

    /// Orders matching `filter`, in creation order: `limit` (at most [`ORDER_PAGE_MAX`])
    /// from `offset`, and the number matching in all.
    pub async fn product_order_list(
        &self,
        filter: &OrderFilter,
        offset: u64,
        limit: u32,
    ) -> Result<Page<ProductOrderRow>> {
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut values = Vec::new();
        equalities(
            &[
                ("state", &filter.state),
                ("billing_account_id", &filter.billing_account_id),
                ("root_id", &filter.root_id),
            ],
            &mut conditions,
            &mut values,
        );
        let from = format!("product_orders WHERE {}", conditions.join(" AND "));
        self.page("product_orders.list", &from, ORDER_COLUMNS, values, offset, limit.min(ORDER_PAGE_MAX), order).await
    }

    /// Order items (each one service order), oldest order first, a partner's only of its
    /// hierarchy: how many in all, and (order id, item id) of `limit` from `offset`.
    pub async fn order_item_list(
        &self,
        root_id: Option<&str>,
        offset: u64,
        limit: u32,
    ) -> Result<(i64, Vec<(String, String)>)> {
        let offset = crate::customers::offset_arg(offset)?;
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut values: Vec<Arg> = Vec::new();
        equalities(&[("o.root_id", &root_id.map(str::to_owned))], &mut conditions, &mut values);
        let from = format!(
            "product_order_items i JOIN product_orders o ON o.id = i.order_id WHERE {}",
            conditions.join(" AND ")
        );
        let mut tx = self.read().await?;
        let total = tx
            .fetch_one("product_order_items.count", &format!("SELECT COUNT(*) AS n FROM {from}"), values.clone())
            .await?
            .int("n")?;
        values.push(Arg::from(i64::from(limit.min(ORDER_PAGE_MAX))));
        values.push(Arg::from(offset));
        let count = values.len();
        let sql = format!(
            "SELECT i.order_id AS order_id, i.item_id AS item_id FROM {from}
             ORDER BY i.order_seq, i.position LIMIT ${} OFFSET ${count}",
            count - 1
        );
        let rows = tx.fetch_all("product_order_items.list", &sql, values).await?;
        let keys = rows.iter().map(|row| Ok((row.text("order_id")?, row.text("item_id")?))).collect::<Result<_>>()?;
        Ok((total, keys))
    }

    /// Claims up to `limit` tasks due at `now` (forward or compensating): each claim counts
    /// an attempt and holds the task for `lease`, so a worker that dies mid-step leaves it
    /// to be claimed again; two servers on one PostgreSQL never claim the same task.
    pub async fn claim_provisioning_tasks(&self, now: Timestamp, limit: u32, lease: Duration) -> Result<Vec<TaskRow>> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE provisioning_tasks SET attempts = attempts + 1, next_attempt_at_ms = $2
             WHERE seq IN (
                 SELECT seq FROM provisioning_tasks
                 WHERE state IN ('due', 'undo') AND next_attempt_at_ms <= $1
                 ORDER BY next_attempt_at_ms, seq
                 LIMIT $3{skip_locked})
             RETURNING {TASK_COLUMNS}",
            skip_locked = tx.dialect().lock_rows_skip_locked()
        );
        let rows = tx
            .fetch_all("provisioning_tasks.claim", &sql, args![to_ms(now), after_ms(now, lease), i64::from(limit)])
            .await?;
        let mut tasks = rows.iter().map(task).collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        tasks.sort_by_key(|task| task.seq);
        Ok(tasks)
    }

    /// When the next task falls due, if any is waiting to run or be undone.
    pub async fn next_task_due(&self) -> Result<Option<Timestamp>> {
        let mut tx = self.read().await?;
        let row = tx
            .fetch_one(
                "provisioning_tasks.next_due",
                "SELECT MIN(next_attempt_at_ms) AS at FROM provisioning_tasks WHERE state IN ('due', 'undo')",
                vec![],
            )
            .await?;
        row.opt_timestamp("at")
    }

    /// How many tasks are in each state: (state, count), for readiness and tests.
    pub async fn provisioning_task_counts(&self) -> Result<Vec<(String, i64)>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "provisioning_tasks.counts",
                "SELECT state, COUNT(*) AS n FROM provisioning_tasks GROUP BY state ORDER BY state",
                vec![],
            )
            .await?;
        rows.iter().map(|row| Ok((row.text("state")?, row.int("n")?))).collect()
    }

    /// A cancellation request.
    pub async fn cancel_request(&self, id: &str) -> Result<Option<CancelRow>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {CANCEL_COLUMNS} FROM cancel_product_orders WHERE id = $1");
        let row = tx.fetch_optional("cancel_product_orders.get", &sql, args![id]).await?;
        row.as_ref().map(|row| cancel(row).map(|found| found.value)).transpose()
    }

    /// Cancellation requests, in creation order, a partner's only of its hierarchy.
    pub async fn cancel_request_list(&self, root_id: Option<&str>, offset: u64, limit: u32) -> Result<Page<CancelRow>> {
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut values: Vec<Arg> = Vec::new();
        equalities(&[("root_id", &root_id.map(str::to_owned))], &mut conditions, &mut values);
        let from = format!("cancel_product_orders WHERE {}", conditions.join(" AND "));
        self.page(
            "cancel_product_orders.list",
            &from,
            CANCEL_COLUMNS,
            values,
            offset,
            limit.min(ORDER_PAGE_MAX),
            cancel,
        )
        .await
    }
}

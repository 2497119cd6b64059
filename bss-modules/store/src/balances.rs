//! Prepaid balance requests as rows (`balance_actions`): a top-up or an adjustment (TMF654
//! `topupBalance`, `adjustBalance`) under the id the client chose, unique per kind, with
//! the billing account it is for, its amount (`NUMERIC` / canonical decimal text), the
//! request as the server understood it (so a repeat can be told from a different request
//! under the same id), the idempotency key of the engine operation (the outbox row's), and
//! what the engine answered: `created` until then, `completed` with the balance after it,
//! or `failed` with the engine's reason. The engine holds the balance; nothing here is one.
//!
//! The rules (who may ask, what is valid, the engine operation) live in
//! `tollgate-customers`; this module stores and reads what it decided.

use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::codec::{json_text, parse_json, to_ms};
use crate::error::{Result, StoreError};
use crate::sql::{args, Arg, Row};
use crate::{Store, Tx};

/// Rows a list of balance actions returns at most.
pub const BALANCE_ACTION_PAGE_MAX: u32 = 1000;

/// What a balance action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BalanceActionKind {
    /// Money paid in (TMF654 `topupBalance`).
    TopUp,
    /// A signed correction with a reason (TMF654 `adjustBalance`).
    Adjust,
}

impl BalanceActionKind {
    /// The name stored: `topup`, `adjust`.
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceActionKind::TopUp => "topup",
            BalanceActionKind::Adjust => "adjust",
        }
    }

    fn parse(row: &Row, text: &str) -> Result<BalanceActionKind> {
        match text {
            "topup" => Ok(BalanceActionKind::TopUp),
            "adjust" => Ok(BalanceActionKind::Adjust),
            other => Err(row.corrupt("kind", format!("unknown balance action kind {other:?}"))),
        }
    }
}

/// Where a balance action stands (TMF654's `ActionStatusType`, less `cancelled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BalanceActionStatus {
    /// Recorded; the engine has not answered yet (the outbox worker will deliver it).
    Created,
    /// The engine applied it.
    Completed,
    /// The engine refused it; nothing changed there.
    Failed,
}

impl BalanceActionStatus {
    /// The name stored and shown: `created`, `completed`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceActionStatus::Created => "created",
            BalanceActionStatus::Completed => "completed",
            BalanceActionStatus::Failed => "failed",
        }
    }

    fn parse(row: &Row, text: &str) -> Result<BalanceActionStatus> {
        match text {
            "created" => Ok(BalanceActionStatus::Created),
            "completed" => Ok(BalanceActionStatus::Completed),
            "failed" => Ok(BalanceActionStatus::Failed),
            other => Err(row.corrupt("status", format!("unknown balance action status {other:?}"))),
        }
    }
}

/// A balance action as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceActionRow {
    pub kind: BalanceActionKind,
    /// The client's id; unique per kind.
    pub id: String,
    pub billing_account_id: String,
    /// Positive for a top-up; signed, never zero, for an adjustment.
    pub amount: Decimal,
    pub currency: String,
    /// The request as the server understood it (normalised): a repeat must equal it.
    pub request: serde_json::Value,
    /// The engine operation's idempotency key (its outbox row's).
    pub idempotency_key: String,
    pub status: BalanceActionStatus,
    /// The account's money balance after the action (when completed).
    pub balance_after: Option<Decimal>,
    /// Why the engine refused it (when failed).
    pub failure_reason: Option<String>,
    /// Who asked (the audit trail's actor).
    pub actor: String,
    pub requested_at: Timestamp,
    /// When the engine answered.
    pub confirmed_at: Option<Timestamp>,
}

/// One page of balance actions and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceActionPage {
    pub items: Vec<BalanceActionRow>,
    pub total: i64,
}

/// What a list of balance actions may be narrowed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceActionFilter {
    pub kind: BalanceActionKind,
    pub billing_account_id: Option<String>,
    pub status: Option<String>,
    /// Only actions on accounts of the hierarchy under this root.
    pub root_id: Option<String>,
}

const COLUMNS: &str = "kind, id, billing_account_id, amount, currency, request_json, idempotency_key, status,
     balance_after, failure_reason, actor, requested_at_ms, confirmed_at_ms";

fn action(row: &Row) -> Result<BalanceActionRow> {
    Ok(BalanceActionRow {
        kind: BalanceActionKind::parse(row, &row.text("kind")?)?,
        id: row.text("id")?,
        billing_account_id: row.text("billing_account_id")?,
        amount: row.money("amount")?,
        currency: row.text("currency")?,
        request: parse_json(row, "request_json", &row.text("request_json")?)?,
        idempotency_key: row.text("idempotency_key")?,
        status: BalanceActionStatus::parse(row, &row.text("status")?)?,
        balance_after: row.opt_money("balance_after")?,
        failure_reason: row.opt_text("failure_reason")?,
        actor: row.text("actor")?,
        requested_at: row.timestamp("requested_at_ms")?,
        confirmed_at: row.opt_timestamp("confirmed_at_ms")?,
    })
}

impl Tx {
    /// Records a new balance action (status as given, normally `created`); `Conflict` if
    /// its id (for its kind) or its idempotency key is taken.
    pub async fn insert_balance_action(&mut self, new: &BalanceActionRow) -> Result<()> {
        let request = json_text("request", &new.request)?;
        let inserted = self
            .execute(
                "balance_actions.insert",
                "INSERT INTO balance_actions (kind, id, billing_account_id, amount, currency, request_json,
                     idempotency_key, status, balance_after, failure_reason, actor, requested_at_ms, confirmed_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT DO NOTHING",
                args![
                    new.kind.as_str(),
                    new.id.as_str(),
                    new.billing_account_id.as_str(),
                    new.amount,
                    new.currency.as_str(),
                    request,
                    new.idempotency_key.as_str(),
                    new.status.as_str(),
                    new.balance_after,
                    new.failure_reason.clone(),
                    new.actor.as_str(),
                    to_ms(new.requested_at),
                    new.confirmed_at.map(to_ms)
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict {
                what: "balance action",
                key: format!("{} {}", new.kind.as_str(), new.id),
            });
        }
        Ok(())
    }

    /// A balance action read in this transaction (locked until it ends on PostgreSQL).
    pub async fn balance_action(&mut self, kind: BalanceActionKind, id: &str) -> Result<Option<BalanceActionRow>> {
        let sql =
            format!("SELECT {COLUMNS} FROM balance_actions WHERE kind = $1 AND id = $2{}", self.dialect().lock_rows());
        self.fetch_optional("balance_actions.get", &sql, args![kind.as_str(), id])
            .await?
            .as_ref()
            .map(action)
            .transpose()
    }

    /// The balance action recorded under an engine idempotency key (locked until the
    /// transaction ends on PostgreSQL).
    pub async fn balance_action_by_key(&mut self, idempotency_key: &str) -> Result<Option<BalanceActionRow>> {
        let sql =
            format!("SELECT {COLUMNS} FROM balance_actions WHERE idempotency_key = $1{}", self.dialect().lock_rows());
        self.fetch_optional("balance_actions.by_key", &sql, args![idempotency_key])
            .await?
            .as_ref()
            .map(action)
            .transpose()
    }

    /// Records the engine's answer to a balance action still `created`: `completed` with
    /// the balance after it, or `failed` with the reason. `false` (and nothing changed) if
    /// it was answered already: the first answer stands.
    pub async fn settle_balance_action(
        &mut self,
        idempotency_key: &str,
        status: BalanceActionStatus,
        balance_after: Option<Decimal>,
        failure_reason: Option<&str>,
        now: Timestamp,
    ) -> Result<bool> {
        if status == BalanceActionStatus::Created {
            return Err(StoreError::Invalid { field: "status", reason: "an answer is completed or failed".into() });
        }
        let changed = self
            .execute(
                "balance_actions.settle",
                "UPDATE balance_actions SET status = $2, balance_after = $3, failure_reason = $4, confirmed_at_ms = $5
                 WHERE idempotency_key = $1 AND status = 'created'",
                args![idempotency_key, status.as_str(), balance_after, failure_reason, to_ms(now)],
            )
            .await?;
        Ok(changed == 1)
    }
}

impl Store {
    /// Whether money reached billing account `id`'s prepaid balance after `since`: a
    /// top-up or a positive adjustment the engine applied (confirmed after `since`; a
    /// top-up's amount is positive too).
    pub async fn credited_since(&self, id: &str, since: Timestamp) -> Result<bool> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "balance_actions.credited_since",
                "SELECT amount FROM balance_actions
                 WHERE billing_account_id = $1 AND status = 'completed' AND confirmed_at_ms > $2",
                args![id, to_ms(since)],
            )
            .await?;
        for row in &rows {
            if row.money("amount")? > Decimal::ZERO {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A balance action.
    pub async fn balance_action(&self, kind: BalanceActionKind, id: &str) -> Result<Option<BalanceActionRow>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {COLUMNS} FROM balance_actions WHERE kind = $1 AND id = $2");
        tx.fetch_optional("balance_actions.get", &sql, args![kind.as_str(), id]).await?.as_ref().map(action).transpose()
    }

    /// Balance actions of one kind matching `filter`, oldest first: `limit` (at most
    /// [`BALANCE_ACTION_PAGE_MAX`]) from `offset`, and the number matching in all.
    pub async fn balance_action_list(
        &self,
        filter: &BalanceActionFilter,
        offset: u64,
        limit: u32,
    ) -> Result<BalanceActionPage> {
        let offset = i64::try_from(offset)
            .map_err(|_| StoreError::Invalid { field: "offset", reason: format!("{offset} is too large") })?;
        let mut values = vec![Arg::from(filter.kind.as_str())];
        let mut conditions = vec!["b.kind = $1".to_owned()];
        for (column, value) in [("b.billing_account_id", &filter.billing_account_id), ("b.status", &filter.status)] {
            if let Some(value) = value {
                values.push(Arg::from(value.as_str()));
                conditions.push(format!("{column} = ${}", values.len()));
            }
        }
        if let Some(root) = &filter.root_id {
            values.push(Arg::from(root.as_str()));
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM billing_accounts a WHERE a.id = b.billing_account_id AND a.root_id = ${})",
                values.len()
            ));
        }
        let from_where = format!("balance_actions b WHERE {}", conditions.join(" AND "));
        let mut tx = self.read().await?;
        let total = tx
            .fetch_one("balance_actions.list", &format!("SELECT COUNT(*) AS n FROM {from_where}"), values.clone())
            .await?
            .int("n")?;
        values.push(Arg::from(i64::from(limit.min(BALANCE_ACTION_PAGE_MAX))));
        values.push(Arg::from(offset));
        let count = values.len();
        let columns = COLUMNS.split(", ").map(|column| format!("b.{}", column.trim())).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {columns} FROM {from_where} ORDER BY b.seq LIMIT ${} OFFSET ${count}", count - 1);
        let rows = tx.fetch_all("balance_actions.list", &sql, values).await?;
        let items = rows.iter().map(action).collect::<Result<Vec<_>>>()?;
        Ok(BalanceActionPage { items, total })
    }
}

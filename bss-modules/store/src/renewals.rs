//! Prepaid renewals (migration 19): the fees of a final prepaid statement, per account,
//! to be debited from that account's prepaid balance by the engine. A renewal's debit goes
//! through the outbox under [`renewal_key`] (one key per attempt: the engine remembers a
//! refused key's answer, so a retry after a top-up needs a new one); what the engine
//! answered is recorded here ([`Tx::settle_renewal`]), only for the attempt under way, so
//! a late answer to an earlier attempt changes nothing. A renewal unpaid past its grace
//! records the suspend orders placed for it, and once paid the resume orders that lifted
//! them.

use jiff::civil::Date;
use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::codec::to_ms;
use crate::error::{Result, StoreError};
use crate::sql::{args, Row};
use crate::{Store, Tx};

/// Where a renewal's debit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RenewalState {
    /// An attempt is in the outbox, not answered yet.
    Pending,
    /// The engine debited the fees.
    Paid,
    /// The engine refused the last attempt (not enough balance); retried later.
    Unpaid,
}

impl RenewalState {
    pub fn as_str(self) -> &'static str {
        match self {
            RenewalState::Pending => "pending",
            RenewalState::Paid => "paid",
            RenewalState::Unpaid => "unpaid",
        }
    }

    fn parse(row: &Row, text: &str) -> Result<RenewalState> {
        match text {
            "pending" => Ok(RenewalState::Pending),
            "paid" => Ok(RenewalState::Paid),
            "unpaid" => Ok(RenewalState::Unpaid),
            other => Err(row.corrupt("state", format!("unknown renewal state {other:?}"))),
        }
    }
}

/// One account's fees of one prepaid statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalRow {
    /// The statement (an `invoices` row whose document is a statement).
    pub invoice_id: String,
    pub billing_account_id: String,
    pub root_id: String,
    pub engine_account_id: u64,
    pub currency: String,
    /// What the engine debits: the statement's fees of this account, tax included.
    pub amount: Decimal,
    /// The day the fees fall due: the first day of the period they pay for.
    pub renewal_on: Date,
    /// Unpaid after this day, the account's lines are suspended.
    pub grace_until: Date,
    pub state: RenewalState,
    /// Debits tried; the one under way (or last answered) is number `attempts`.
    pub attempts: i64,
    /// Why the engine refused the last attempt.
    pub reason: Option<String>,
    pub paid_at: Option<Timestamp>,
    /// The suspend orders placed when the grace ran out (comma-separated ids).
    pub suspend_order_ids: Option<String>,
    pub suspended_at: Option<Timestamp>,
    /// The resume orders placed once it was paid.
    pub lifted_order_ids: Option<String>,
    pub lifted_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The outbox and engine idempotency key of attempt `attempt` to debit renewal
/// (`invoice`, `account`).
pub fn renewal_key(invoice: &str, account: &str, attempt: i64) -> String {
    format!("bss:renewal:{invoice}:{account}:{attempt}")
}

/// The statement, billing account and attempt a [`renewal_key`] names.
pub fn parse_renewal_key(key: &str) -> Option<(&str, &str, i64)> {
    let rest = key.strip_prefix("bss:renewal:")?;
    let (rest, attempt) = rest.rsplit_once(':')?;
    let (invoice, account) = rest.rsplit_once(':')?;
    let attempt = attempt.parse().ok().filter(|attempt| *attempt >= 1)?;
    (!invoice.is_empty() && !account.is_empty()).then_some((invoice, account, attempt))
}

const RENEWAL_COLUMNS: &str =
    "invoice_id, billing_account_id, root_id, engine_account_id, currency, amount, renewal_on,
     grace_until, state, attempts, reason, paid_at_ms, suspend_order_ids, suspended_at_ms, lifted_order_ids,
     lifted_at_ms, created_at_ms, updated_at_ms";

fn date(row: &Row, column: &'static str) -> Result<Date> {
    let text = row.text(column)?;
    text.parse::<Date>().map_err(|e| row.corrupt(column, format!("{text:?} is not a date: {e}")))
}

fn renewal(row: &Row) -> Result<RenewalRow> {
    let engine = row.int("engine_account_id")?;
    Ok(RenewalRow {
        invoice_id: row.text("invoice_id")?,
        billing_account_id: row.text("billing_account_id")?,
        root_id: row.text("root_id")?,
        engine_account_id: u64::try_from(engine)
            .map_err(|_| row.corrupt("engine_account_id", format!("{engine} is negative")))?,
        currency: row.text("currency")?,
        amount: row.money("amount")?,
        renewal_on: date(row, "renewal_on")?,
        grace_until: date(row, "grace_until")?,
        state: RenewalState::parse(row, &row.text("state")?)?,
        attempts: row.int("attempts")?,
        reason: row.opt_text("reason")?,
        paid_at: row.opt_timestamp("paid_at_ms")?,
        suspend_order_ids: row.opt_text("suspend_order_ids")?,
        suspended_at: row.opt_timestamp("suspended_at_ms")?,
        lifted_order_ids: row.opt_text("lifted_order_ids")?,
        lifted_at: row.opt_timestamp("lifted_at_ms")?,
        created_at: row.timestamp("created_at_ms")?,
        updated_at: row.timestamp("updated_at_ms")?,
    })
}

impl Tx {
    /// Records a renewal, pending its first attempt; `false` when it exists (a repeated
    /// finalisation), and nothing is written.
    pub async fn insert_renewal(&mut self, new: &RenewalRow) -> Result<bool> {
        if new.amount <= Decimal::ZERO {
            return Err(StoreError::Invalid {
                field: "amount",
                reason: format!("{} is not more than zero", new.amount),
            });
        }
        let engine = i64::try_from(new.engine_account_id)
            .map_err(|_| StoreError::Invalid { field: "engine_account_id", reason: "out of range".into() })?;
        let written = self
            .execute(
                "prepaid_renewals.insert",
                "INSERT INTO prepaid_renewals (invoice_id, billing_account_id, root_id, engine_account_id, currency,
                     amount, renewal_on, grace_until, state, attempts, created_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 1, $9, $9)
                 ON CONFLICT (invoice_id, billing_account_id) DO NOTHING",
                args![
                    new.invoice_id.as_str(),
                    new.billing_account_id.as_str(),
                    new.root_id.as_str(),
                    engine,
                    new.currency.as_str(),
                    new.amount,
                    new.renewal_on.to_string(),
                    new.grace_until.to_string(),
                    to_ms(new.created_at),
                ],
            )
            .await?;
        Ok(written == 1)
    }

    /// Records the engine's answer to attempt `attempt`: paid, or unpaid with the reason.
    /// `false` (nothing written) when that attempt is not the one under way: answered
    /// before, or an older attempt's late answer.
    pub async fn settle_renewal(
        &mut self,
        invoice: &str,
        account: &str,
        attempt: i64,
        refused: Option<&str>,
        now: Timestamp,
    ) -> Result<bool> {
        let (state, paid_at) = match refused {
            None => (RenewalState::Paid, Some(to_ms(now))),
            Some(_) => (RenewalState::Unpaid, None),
        };
        let written = self
            .execute(
                "prepaid_renewals.settle",
                "UPDATE prepaid_renewals SET state = $4, reason = $5, paid_at_ms = $6, updated_at_ms = $7
                 WHERE invoice_id = $1 AND billing_account_id = $2 AND attempts = $3 AND state = 'pending'",
                args![invoice, account, attempt, state.as_str(), refused.map(str::to_owned), paid_at, to_ms(now)],
            )
            .await?;
        Ok(written == 1)
    }

    /// Starts the next attempt of an unpaid renewal: its number, or `None` when the
    /// renewal is not unpaid (paid, or an attempt under way).
    pub async fn retry_renewal(&mut self, invoice: &str, account: &str, now: Timestamp) -> Result<Option<i64>> {
        let row = self
            .fetch_optional(
                "prepaid_renewals.retry",
                "UPDATE prepaid_renewals SET attempts = attempts + 1, state = 'pending', updated_at_ms = $3
                 WHERE invoice_id = $1 AND billing_account_id = $2 AND state = 'unpaid' RETURNING attempts",
                args![invoice, account, to_ms(now)],
            )
            .await?;
        row.map(|row| row.int("attempts")).transpose()
    }

    /// Records the suspend orders placed for a renewal unpaid past its grace; `false`
    /// when recorded before, or when it was paid meanwhile (its orders are then lifted by
    /// the next run, as any paid renewal's).
    pub async fn suspend_renewal(
        &mut self,
        invoice: &str,
        account: &str,
        orders: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let written = self
            .execute(
                "prepaid_renewals.suspend",
                "UPDATE prepaid_renewals SET suspend_order_ids = $3, suspended_at_ms = $4, updated_at_ms = $4
                 WHERE invoice_id = $1 AND billing_account_id = $2 AND suspended_at_ms IS NULL AND state <> 'paid'",
                args![invoice, account, orders, to_ms(now)],
            )
            .await?;
        Ok(written == 1)
    }

    /// Records the resume orders that lifted a paid renewal's suspension; `false` when
    /// recorded before or there was none.
    pub async fn lift_renewal(&mut self, invoice: &str, account: &str, orders: &str, now: Timestamp) -> Result<bool> {
        let written = self
            .execute(
                "prepaid_renewals.lift",
                "UPDATE prepaid_renewals SET lifted_order_ids = $3, lifted_at_ms = $4, updated_at_ms = $4
                 WHERE invoice_id = $1 AND billing_account_id = $2 AND state = 'paid'
                     AND suspended_at_ms IS NOT NULL AND lifted_at_ms IS NULL",
                args![invoice, account, orders, to_ms(now)],
            )
            .await?;
        Ok(written == 1)
    }
}

impl Tx {
    /// One renewal.
    pub async fn renewal(&mut self, invoice: &str, account: &str) -> Result<Option<RenewalRow>> {
        let sql =
            format!("SELECT {RENEWAL_COLUMNS} FROM prepaid_renewals WHERE invoice_id = $1 AND billing_account_id = $2");
        self.fetch_optional("prepaid_renewals.get", &sql, args![invoice, account])
            .await?
            .as_ref()
            .map(renewal)
            .transpose()
    }
}

impl Store {
    /// One renewal.
    pub async fn renewal(&self, invoice: &str, account: &str) -> Result<Option<RenewalRow>> {
        self.read().await?.renewal(invoice, account).await
    }

    /// Renewals by statement and account, up to `limit` from `offset` (an operator's list).
    pub async fn renewal_list(&self, offset: u64, limit: u32) -> Result<Vec<RenewalRow>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {RENEWAL_COLUMNS} FROM prepaid_renewals ORDER BY renewal_on, invoice_id, billing_account_id
             LIMIT $1 OFFSET $2"
        );
        let (limit, offset) = (i64::from(limit), i64::try_from(offset).unwrap_or(i64::MAX));
        tx.fetch_all("prepaid_renewals.list", &sql, args![limit, offset]).await?.iter().map(renewal).collect()
    }

    /// The renewals with something left to do, oldest first: unpaid and pending ones (to
    /// retry, to suspend past their grace, or an attempt whose outbox row failed for good),
    /// and paid ones whose suspension is not lifted yet.
    pub async fn renewals_open(&self) -> Result<Vec<RenewalRow>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {RENEWAL_COLUMNS} FROM prepaid_renewals
             WHERE state <> 'paid' OR (suspended_at_ms IS NOT NULL AND lifted_at_ms IS NULL)
             ORDER BY renewal_on, invoice_id, billing_account_id"
        );
        tx.fetch_all("prepaid_renewals.open", &sql, Vec::new()).await?.iter().map(renewal).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_key_names_its_statement_account_and_attempt() {
        let key = renewal_key("inv-2026-11-ba-1", "ba-1", 3);
        assert_eq!(key, "bss:renewal:inv-2026-11-ba-1:ba-1:3");
        assert_eq!(parse_renewal_key(&key), Some(("inv-2026-11-ba-1", "ba-1", 3)));
        for bad in [
            "bss:renewal:inv:ba:0",
            "bss:renewal:inv:ba:x",
            "bss:renewal::ba:1",
            "bss:topup:inv:ba:1",
            "bss:renewal:ba:1",
        ] {
            assert_eq!(parse_renewal_key(bad), None, "{bad}");
        }
    }
}

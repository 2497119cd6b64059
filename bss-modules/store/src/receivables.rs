//! Receivables' rows (migration 11): payments (`payments`, recorded once per source and
//! reference, never changed), what each paid (`payment_allocations`), the day a final
//! invoice falls due (`invoices.due_on`, set when it is made final) and the dunning steps
//! taken per invoice (`dunning_actions`); and the reads allocation, aging and dunning
//! need: an account's open invoices with what each still owes, and its payments with
//! what each has left.
//!
//! What is owed is summed here, in Rust, exactly: an invoice owes its gross, less the
//! final credit notes that correct it, less what payments were allocated to it. SQLite's
//! `SUM` would go through floating point, so neither dialect sums money in SQL.
//! Allocation for an account is serialised by locking its billing account row
//! ([`Tx::lock_receivables`]), so two payments of one account never both pay the last
//! euro of an invoice.
//!
//! The rules (which invoice a payment pays, what is overdue, which step is due) are
//! `tollgate-billing`'s; this module stores and reads what they decided.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::bulk::select_in;
use crate::codec::to_ms;
use crate::error::{Result, StoreError};
use crate::sql::{args, Arg, Row};
use crate::{Store, Tx};

/// Payments a list returns at most.
pub const PAYMENT_PAGE_MAX: u32 = 1000;

/// A payment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub id: String,
    pub billing_account_id: String,
    pub amount: Decimal,
    pub currency: String,
    /// `bankTransfer`, `card`, `cash`, `directDebit`, `other`.
    pub method: String,
    /// Where it came from: `api`, `bank-statement`, `cli`.
    pub source: String,
    /// Its reference there (a request id, the bank's entry reference): unique per source.
    pub reference: String,
    /// The invoice the payer named (a bill number or id), if any.
    pub remittance: Option<String>,
    pub received_on: Date,
    pub created_at: Timestamp,
}

/// One part of a payment: the invoice it paid and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRow {
    pub payment_id: String,
    pub invoice_id: String,
    pub amount: Decimal,
    pub allocated_at: Timestamp,
}

/// A final invoice of an account that still owes something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInvoiceRow {
    pub invoice_id: String,
    /// `issuer/series/number`, as a payer quotes it.
    pub bill_no: String,
    pub billing_account_id: String,
    pub root_id: String,
    pub currency: String,
    pub due_on: Date,
    /// The day it was made final (UTC).
    pub issued_on: Date,
    pub gross: Decimal,
    /// Gross less final credit notes less allocations; more than zero.
    pub outstanding: Decimal,
}

/// A payment with what it has not paid yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnallocatedPayment {
    pub payment: PaymentRow,
    pub left: Decimal,
}

/// A dunning step taken for an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DunningActionRow {
    pub invoice_id: String,
    pub step: String,
    /// `reminder` or `suspend`.
    pub action: String,
    pub billing_account_id: String,
    /// The orders it placed (a suspension's), comma-separated; empty for a reminder.
    pub order_ids: String,
    pub taken_on: Date,
    pub taken_at: Timestamp,
    /// The resume orders that lifted a suspension, and when.
    pub lifted_order_ids: Option<String>,
    pub lifted_at: Option<Timestamp>,
}

/// What a list of payments may be narrowed by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub billing_account_id: Option<String>,
    /// Only payments of accounts in the hierarchy under this root.
    pub root_id: Option<String>,
}

const PAYMENT_COLUMNS: &str = "id, billing_account_id, amount, currency, method, source, reference, remittance,
     received_on, created_at_ms";

fn date(row: &Row, column: &'static str, text: &str) -> Result<Date> {
    text.parse::<Date>().map_err(|e| row.corrupt(column, format!("{text:?} is not a date: {e}")))
}

fn payment(row: &Row) -> Result<PaymentRow> {
    Ok(PaymentRow {
        id: row.text("id")?,
        billing_account_id: row.text("billing_account_id")?,
        amount: row.money("amount")?,
        currency: row.text("currency")?,
        method: row.text("method")?,
        source: row.text("source")?,
        reference: row.text("reference")?,
        remittance: row.opt_text("remittance")?,
        received_on: date(row, "received_on", &row.text("received_on")?)?,
        created_at: row.timestamp("created_at_ms")?,
    })
}

fn allocation(row: &Row) -> Result<AllocationRow> {
    Ok(AllocationRow {
        payment_id: row.text("payment_id")?,
        invoice_id: row.text("invoice_id")?,
        amount: row.money("amount")?,
        allocated_at: row.timestamp("allocated_at_ms")?,
    })
}

const DUNNING_COLUMNS: &str = "invoice_id, step, action, billing_account_id, order_ids, taken_on, taken_at_ms,
     lifted_order_ids, lifted_at_ms";

fn dunning(row: &Row) -> Result<DunningActionRow> {
    Ok(DunningActionRow {
        invoice_id: row.text("invoice_id")?,
        step: row.text("step")?,
        action: row.text("action")?,
        billing_account_id: row.text("billing_account_id")?,
        order_ids: row.text("order_ids")?,
        taken_on: date(row, "taken_on", &row.text("taken_on")?)?,
        taken_at: row.timestamp("taken_at_ms")?,
        lifted_order_ids: row.opt_text("lifted_order_ids")?,
        lifted_at: row.opt_timestamp("lifted_at_ms")?,
    })
}

/// The day a final invoice without a stored due date falls due: the day it was made final
/// (UTC). Invoices made final before migration 11 have none.
fn issue_day(at: Timestamp) -> Date {
    jiff::tz::Offset::UTC.to_datetime(at).date()
}

/// A final invoice row's due date: `due_on`, else its issue day.
fn due_on(row: &Row) -> Result<Date> {
    match row.opt_text("due_on")? {
        Some(text) => date(row, "due_on", &text),
        None => Ok(issue_day(row.timestamp("finalised_at_ms")?)),
    }
}

/// The open invoices among final invoices `rows` (`invoices` columns plus `terms`),
/// given every allocation and final credit note of them.
/// What payments and final credit notes took off invoices `keys`, by invoice: all of it
/// (`as_of` `None`), or what was known by the end of day `as_of` (UTC: an allocation of a
/// payment received and allocated by then, a credit note issued by then).
async fn settled(tx: &mut Tx, keys: &[&str], as_of: Option<Date>) -> Result<BTreeMap<String, Decimal>> {
    let known = |day: Date| as_of.is_none_or(|as_of| day <= as_of);
    let mut paid: BTreeMap<String, Decimal> = BTreeMap::new();
    let sql = "SELECT a.invoice_id, a.amount, a.allocated_at_ms, p.received_on FROM payment_allocations a
               JOIN payments p ON p.id = a.payment_id WHERE a.invoice_id IN (#)";
    for row in select_in(tx, "receivables.settled", sql, keys).await? {
        let received_on = date(&row, "received_on", &row.text("received_on")?)?;
        if known(received_on) && known(issue_day(row.timestamp("allocated_at_ms")?)) {
            *paid.entry(row.text("invoice_id")?).or_default() += row.money("amount")?;
        }
    }
    let sql = "SELECT corrects_invoice_id AS invoice_id, gross AS amount, finalised_at_ms FROM invoices
               WHERE kind = 'credit_note' AND state = 'final' AND corrects_invoice_id IN (#)";
    for row in select_in(tx, "receivables.settled", sql, keys).await? {
        // A credit note's gross is negative: it lowers what the invoice owes.
        if known(issue_day(row.timestamp("finalised_at_ms")?)) {
            *paid.entry(row.text("invoice_id")?).or_default() -= row.money("amount")?;
        }
    }
    Ok(paid)
}

/// The final invoices of `rows` that owe something: now (`as_of` `None`), or at the end of
/// day `as_of` (UTC), counting only what was known paid by then: an allocation of a
/// payment received and allocated on or before that day, a credit note issued on or before
/// it, and only invoices issued on or before it.
async fn open_of(tx: &mut Tx, rows: Vec<Row>, as_of: Option<Date>) -> Result<Vec<OpenInvoiceRow>> {
    let known = |day: Date| as_of.is_none_or(|as_of| day <= as_of);
    let ids: Vec<String> = rows.iter().map(|row| row.text("id")).collect::<Result<_>>()?;
    let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
    let paid = settled(tx, &keys, as_of).await?;
    let mut open = Vec::new();
    for row in rows {
        if !known(issue_day(row.timestamp("finalised_at_ms")?)) {
            continue;
        }
        let id = row.text("id")?;
        let gross = row.money("gross")?;
        let outstanding = gross - paid.get(&id).copied().unwrap_or_default();
        if outstanding <= Decimal::ZERO {
            continue;
        }
        let due_on = due_on(&row)?;
        let number = row.int("number")?;
        open.push(OpenInvoiceRow {
            bill_no: format!("{}/{}/{number}", row.text("issuer")?, row.text("series")?),
            invoice_id: id,
            billing_account_id: row.text("billing_account_id")?,
            root_id: row.text("root_id")?,
            currency: row.text("currency")?,
            due_on,
            issued_on: issue_day(row.timestamp("finalised_at_ms")?),
            gross,
            outstanding,
        });
    }
    Ok(open)
}

const OPEN_COLUMNS: &str = "id, billing_account_id, root_id, currency, gross, due_on, finalised_at_ms, number, issuer,
     series";

impl Tx {
    /// Locks billing account `id` for the rest of the transaction (PostgreSQL; SQLite has
    /// one writer): allocations to its invoices are made one transaction at a time.
    pub async fn lock_receivables(&mut self, id: &str) -> Result<()> {
        let sql = format!("SELECT id FROM billing_accounts WHERE id = $1{}", self.dialect().lock_rows());
        self.fetch_optional("receivables.lock", &sql, args![id])
            .await?
            .ok_or_else(|| StoreError::NotFound { entity: "billing account", id: id.to_owned() })?;
        Ok(())
    }

    /// Locks the receivables of `accounts` (as [`Tx::lock_receivables`] does each) in a
    /// few statements and returns those that have a payment recorded: only their credit
    /// can pay an invoice made final now, the others need no settling. Locked first, so
    /// a payment recorded meanwhile waits and then finds the new invoices.
    pub async fn lock_receivables_of(&mut self, accounts: &[String]) -> Result<BTreeSet<String>> {
        let keys: Vec<&str> = accounts.iter().map(String::as_str).collect();
        let lock = format!("SELECT id FROM billing_accounts WHERE id IN (#){}", self.dialect().lock_rows());
        select_in(self, "receivables.lock", &lock, &keys).await?;
        let sql = "SELECT DISTINCT billing_account_id FROM payments WHERE billing_account_id IN (#)";
        select_in(self, "receivables.paying", sql, &keys)
            .await?
            .iter()
            .map(|row| row.text("billing_account_id"))
            .collect()
    }

    /// Records a payment, or returns the one recorded before under the same source and
    /// reference (`false`: nothing new was written).
    pub async fn insert_payment(&mut self, new: &PaymentRow) -> Result<(PaymentRow, bool)> {
        if new.amount <= Decimal::ZERO {
            return Err(StoreError::Invalid {
                field: "amount",
                reason: format!("{} is not more than zero", new.amount),
            });
        }
        let written = self
            .execute(
                "payments.insert",
                "INSERT INTO payments (id, billing_account_id, amount, currency, method, source, reference, remittance,
                     received_on, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (source, reference) DO NOTHING",
                args![
                    new.id.as_str(),
                    new.billing_account_id.as_str(),
                    new.amount,
                    new.currency.as_str(),
                    new.method.as_str(),
                    new.source.as_str(),
                    new.reference.as_str(),
                    new.remittance.clone(),
                    new.received_on.to_string(),
                    to_ms(new.created_at),
                ],
            )
            .await?;
        if written == 1 {
            return Ok((new.clone(), true));
        }
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE source = $1 AND reference = $2");
        let row = self.fetch_one("payments.insert", &sql, args![new.source.as_str(), new.reference.as_str()]).await?;
        Ok((payment(&row)?, false))
    }

    /// Records what a payment paid: `parts` are (invoice, amount).
    pub async fn insert_allocations(
        &mut self,
        payment_id: &str,
        parts: &[(String, Decimal)],
        now: Timestamp,
    ) -> Result<()> {
        for (invoice_id, amount) in parts {
            self.execute(
                "payment_allocations.insert",
                "INSERT INTO payment_allocations (payment_id, invoice_id, amount, allocated_at_ms) VALUES ($1, $2, $3, $4)",
                args![payment_id, invoice_id.as_str(), *amount, to_ms(now)],
            )
            .await?;
        }
        Ok(())
    }

    /// The final invoices of billing account `id` that still owe something, by due date.
    pub async fn open_invoices(&mut self, id: &str) -> Result<Vec<OpenInvoiceRow>> {
        let sql = format!(
            "SELECT {OPEN_COLUMNS} FROM invoices WHERE billing_account_id = $1 AND kind = 'invoice' AND document = 'invoice' AND state = 'final'
             ORDER BY number"
        );
        let rows = self.fetch_all("receivables.open", &sql, args![id]).await?;
        let mut open = open_of(self, rows, None).await?;
        open.sort_by_key(|invoice| invoice.due_on);
        Ok(open)
    }

    /// What final invoice `id` still owes, signed: its gross less what payments allocated
    /// to it and what its final credit notes took off (below zero: more was paid or
    /// credited than it billed).
    pub async fn invoice_remaining(&mut self, id: &str) -> Result<Decimal> {
        let row = self
            .fetch_optional("receivables.remaining", "SELECT gross FROM invoices WHERE id = $1", args![id])
            .await?
            .ok_or_else(|| StoreError::NotFound { entity: "invoice", id: id.to_owned() })?;
        let paid = settled(self, &[id], None).await?;
        Ok(row.money("gross")? - paid.get(id).copied().unwrap_or_default())
    }

    /// The payments of billing account `id` with something left to allocate, oldest first.
    pub async fn unallocated_payments(&mut self, id: &str) -> Result<Vec<UnallocatedPayment>> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE billing_account_id = $1 ORDER BY seq");
        let payments = self.fetch_all("receivables.unallocated", &sql, args![id]).await?;
        let payments: Vec<PaymentRow> = payments.iter().map(payment).collect::<Result<_>>()?;
        let ids: Vec<&str> = payments.iter().map(|p| p.id.as_str()).collect();
        let mut used: BTreeMap<String, Decimal> = BTreeMap::new();
        let sql = "SELECT payment_id, amount FROM payment_allocations WHERE payment_id IN (#)";
        for row in select_in(self, "receivables.unallocated", sql, &ids).await? {
            *used.entry(row.text("payment_id")?).or_default() += row.money("amount")?;
        }
        Ok(payments
            .into_iter()
            .filter_map(|payment| {
                let left = payment.amount - used.get(&payment.id).copied().unwrap_or_default();
                (left > Decimal::ZERO).then_some(UnallocatedPayment { payment, left })
            })
            .collect())
    }

    /// Records a dunning step taken; `false` when it was taken before.
    pub async fn insert_dunning_action(&mut self, new: &DunningActionRow) -> Result<bool> {
        let written = self
            .execute(
                "dunning_actions.insert",
                "INSERT INTO dunning_actions (invoice_id, step, action, billing_account_id, order_ids, taken_on,
                     taken_at_ms, lifted_order_ids, lifted_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL) ON CONFLICT (invoice_id, step) DO NOTHING",
                args![
                    new.invoice_id.as_str(),
                    new.step.as_str(),
                    new.action.as_str(),
                    new.billing_account_id.as_str(),
                    new.order_ids.as_str(),
                    new.taken_on.to_string(),
                    to_ms(new.taken_at),
                ],
            )
            .await?;
        Ok(written == 1)
    }

    /// Records the resume orders that lifted a dunning suspension.
    pub async fn lift_dunning_suspension(
        &mut self,
        invoice_id: &str,
        step: &str,
        orders: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let written = self
            .execute(
                "dunning_actions.lift",
                "UPDATE dunning_actions SET lifted_order_ids = $3, lifted_at_ms = $4
                 WHERE invoice_id = $1 AND step = $2 AND action = 'suspend' AND lifted_at_ms IS NULL",
                args![invoice_id, step, orders, to_ms(now)],
            )
            .await?;
        Ok(written == 1)
    }
}

impl Store {
    /// A payment and what it paid.
    pub async fn payment(&self, id: &str) -> Result<Option<(PaymentRow, Vec<AllocationRow>)>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1");
        let Some(row) = tx.fetch_optional("payments.get", &sql, args![id]).await? else {
            return Ok(None);
        };
        let allocations = tx
            .fetch_all(
                "payments.get",
                "SELECT payment_id, invoice_id, amount, allocated_at_ms FROM payment_allocations WHERE payment_id = $1
                 ORDER BY allocated_at_ms, invoice_id",
                args![id],
            )
            .await?;
        Ok(Some((payment(&row)?, allocations.iter().map(allocation).collect::<Result<_>>()?)))
    }

    /// Payments matching `filter`, oldest first: `limit` (at most [`PAYMENT_PAGE_MAX`]) from
    /// `offset`, and the number matching in all.
    pub async fn payment_list(
        &self,
        filter: &PaymentFilter,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<PaymentRow>, i64)> {
        let offset = i64::try_from(offset)
            .map_err(|_| StoreError::Invalid { field: "offset", reason: format!("{offset} is too large") })?;
        let mut values: Vec<Arg> = Vec::new();
        let mut conditions = vec!["1 = 1".to_owned()];
        if let Some(account) = &filter.billing_account_id {
            values.push(Arg::from(account.as_str()));
            conditions.push(format!("billing_account_id = ${}", values.len()));
        }
        if let Some(root) = &filter.root_id {
            values.push(Arg::from(root.as_str()));
            conditions.push(format!(
                "billing_account_id IN (SELECT id FROM billing_accounts WHERE root_id = ${})",
                values.len()
            ));
        }
        let from_where = format!("payments WHERE {}", conditions.join(" AND "));
        let mut tx = self.read().await?;
        let total = tx
            .fetch_one("payments.list", &format!("SELECT COUNT(*) AS n FROM {from_where}"), values.clone())
            .await?
            .int("n")?;
        values.push(Arg::from(i64::from(limit.min(PAYMENT_PAGE_MAX))));
        values.push(Arg::from(offset));
        let count = values.len();
        let sql =
            format!("SELECT {PAYMENT_COLUMNS} FROM {from_where} ORDER BY seq LIMIT ${} OFFSET ${count}", count - 1);
        let rows = tx.fetch_all("payments.list", &sql, values).await?;
        Ok((rows.iter().map(payment).collect::<Result<_>>()?, total))
    }

    /// What payments `ids` paid, by payment (one query per chunk of ids, for a page).
    pub async fn allocations_of(&self, ids: &[&str]) -> Result<BTreeMap<String, Vec<AllocationRow>>> {
        let mut tx = self.read().await?;
        let sql = "SELECT payment_id, invoice_id, amount, allocated_at_ms FROM payment_allocations
                   WHERE payment_id IN (#) ORDER BY allocated_at_ms, invoice_id";
        let mut found: BTreeMap<String, Vec<AllocationRow>> = BTreeMap::new();
        for row in select_in(&mut tx, "payments.allocations", sql, ids).await? {
            let part = allocation(&row)?;
            found.entry(part.payment_id.clone()).or_default().push(part);
        }
        Ok(found)
    }

    /// What was allocated to invoice `id`, and its final credit notes' total (negative).
    pub async fn invoice_settlement(&self, id: &str) -> Result<(Vec<AllocationRow>, Decimal)> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "receivables.settlement",
                "SELECT payment_id, invoice_id, amount, allocated_at_ms FROM payment_allocations WHERE invoice_id = $1
                 ORDER BY allocated_at_ms, payment_id",
                args![id],
            )
            .await?;
        let credited = tx
            .fetch_all(
                "receivables.settlement",
                "SELECT gross FROM invoices WHERE kind = 'credit_note' AND state = 'final' AND corrects_invoice_id = $1",
                args![id],
            )
            .await?
            .iter()
            .map(|row| row.money("gross"))
            .sum::<Result<Decimal>>()?;
        Ok((rows.iter().map(allocation).collect::<Result<_>>()?, credited))
    }

    /// What was taken off invoices `ids` by payments and final credit notes (positive), by
    /// invoice; an invoice with neither is absent.
    pub async fn settled_amounts(&self, ids: &[&str]) -> Result<BTreeMap<String, Decimal>> {
        let mut tx = self.read().await?;
        let mut settled: BTreeMap<String, Decimal> = BTreeMap::new();
        let sql = "SELECT invoice_id, amount FROM payment_allocations WHERE invoice_id IN (#)";
        for row in select_in(&mut tx, "receivables.settled", sql, ids).await? {
            *settled.entry(row.text("invoice_id")?).or_default() += row.money("amount")?;
        }
        let sql = "SELECT corrects_invoice_id AS invoice_id, gross AS amount FROM invoices
                   WHERE kind = 'credit_note' AND state = 'final' AND corrects_invoice_id IN (#)";
        for row in select_in(&mut tx, "receivables.settled", sql, ids).await? {
            *settled.entry(row.text("invoice_id")?).or_default() -= row.money("amount")?;
        }
        Ok(settled)
    }

    /// The due dates of final invoices `ids` (those made final before migration 11: their
    /// issue day).
    pub async fn due_dates(&self, ids: &[&str]) -> Result<BTreeMap<String, Date>> {
        let mut tx = self.read().await?;
        let sql = "SELECT id, due_on, finalised_at_ms FROM invoices WHERE state = 'final' AND id IN (#)";
        let mut dates = BTreeMap::new();
        for row in select_in(&mut tx, "receivables.due", sql, ids).await? {
            let due = due_on(&row)?;
            dates.insert(row.text("id")?, due);
        }
        Ok(dates)
    }

    /// The name final invoice `id` was issued to (its billing account's name when it was
    /// made final); `None` for one made final before that was kept, or not final.
    pub async fn bill_to(&self, id: &str) -> Result<Option<String>> {
        let mut tx = self.read().await?;
        let row = tx
            .fetch_optional(
                "invoices.bill_to",
                "SELECT bill_to FROM invoices WHERE id = $1 AND state = 'final'",
                args![id],
            )
            .await?;
        Ok(match row {
            Some(row) => row.opt_text("bill_to")?,
            None => None,
        })
    }

    /// Every final invoice that still owes something (of the hierarchy under `root`, or of
    /// all), by account and due date: now, or at the end of day `as_of` (what was issued,
    /// paid and credited by then).
    pub async fn receivables(&self, root: Option<&str>, as_of: Option<Date>) -> Result<Vec<OpenInvoiceRow>> {
        let mut tx = self.read().await?;
        let rows = match root {
            Some(root) => {
                let sql = format!(
                    "SELECT {OPEN_COLUMNS} FROM invoices WHERE root_id = $1 AND kind = 'invoice' AND document = 'invoice' AND state = 'final'"
                );
                tx.fetch_all("receivables.all", &sql, args![root]).await?
            }
            None => {
                let sql = format!("SELECT {OPEN_COLUMNS} FROM invoices WHERE kind = 'invoice' AND document = 'invoice' AND state = 'final'");
                tx.fetch_all("receivables.all", &sql, Vec::new()).await?
            }
        };
        let mut open = open_of(&mut tx, rows, as_of).await?;
        open.sort_by(|a, b| {
            (&a.billing_account_id, a.due_on, &a.bill_no).cmp(&(&b.billing_account_id, b.due_on, &b.bill_no))
        });
        Ok(open)
    }

    /// The dunning steps taken for invoices `ids`, by invoice.
    pub async fn dunning_taken(&self, ids: &[&str]) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let mut tx = self.read().await?;
        let mut taken: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let sql = "SELECT invoice_id, step FROM dunning_actions WHERE invoice_id IN (#)";
        for row in select_in(&mut tx, "dunning_actions.taken", sql, ids).await? {
            taken.entry(row.text("invoice_id")?).or_default().insert(row.text("step")?);
        }
        Ok(taken)
    }

    /// Dunning suspensions not lifted yet, oldest first.
    pub async fn dunning_suspensions(&self) -> Result<Vec<DunningActionRow>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {DUNNING_COLUMNS} FROM dunning_actions WHERE action = 'suspend' AND lifted_at_ms IS NULL
             ORDER BY taken_at_ms, invoice_id"
        );
        tx.fetch_all("dunning_actions.open", &sql, Vec::new()).await?.iter().map(dunning).collect()
    }

    /// The dunning steps taken for the invoices of billing account `id`.
    pub async fn dunning_actions_of(&self, id: &str) -> Result<Vec<DunningActionRow>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {DUNNING_COLUMNS} FROM dunning_actions WHERE billing_account_id = $1 ORDER BY taken_at_ms, step"
        );
        tx.fetch_all("dunning_actions.of", &sql, args![id]).await?.iter().map(dunning).collect()
    }
}

impl Store {
    /// The final invoice numbered `number` in `issuer`'s `series`: its id and billing account.
    pub async fn invoice_by_number(&self, issuer: &str, series: &str, number: i64) -> Result<Option<(String, String)>> {
        let mut tx = self.read().await?;
        let row = tx
            .fetch_optional(
                "invoices.by_number",
                // A statement owes nothing: a payment naming one is not matched by it.
                "SELECT id, billing_account_id FROM invoices
                 WHERE issuer = $1 AND series = $2 AND number = $3 AND document = 'invoice'",
                args![issuer, series, number],
            )
            .await?;
        row.map(|row| Ok((row.text("id")?, row.text("billing_account_id")?))).transpose()
    }
}

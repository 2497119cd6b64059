//! Billing's rows (migration 9): bill runs with their state and checkpoint
//! (`bill_runs`), invoices and credit notes (`invoices`: draft → final, the issuing entity
//! and series, a number only when final), their lines (`invoice_lines`, money as
//! `NUMERIC` / decimal text), the number counters (`invoice_series`) and what was billed
//! (`billed_items`, keyed by what it is, so nothing is billed twice); and the reads a bill
//! run needs: the accounts of the hierarchies to bill and their products with the
//! catalogue's prices.
//!
//! **Numbers are gap-free per issuer and series**: [`Tx::finalise_invoice`] takes the next
//! number from the series' counter row in the finalising transaction (the row lock queues
//! concurrent finalisations on PostgreSQL; SQLite has one writer), so a transaction that
//! rolls back or dies gives its number back. **A final invoice is never changed**: the
//! database refuses an update or delete of a final invoice or of its lines (triggers).
//! **An item is billed once**: `billed_items.item_key` is the primary key, and a draft
//! invoice is written with its billed items in one transaction.
//!
//! The rules (what is billed, how it is priced and composed) are `tollgate-billing`'s and
//! the bill run's; this module stores and reads what they decided.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::bulk::{insert_many, select_in};
use crate::codec::{json_text, parse_json, to_ms};
use crate::customers::engine_id;
use crate::error::{Result, StoreError};
use crate::sql::{args, Arg, Row};
use crate::{Store, Tx};

/// Invoices a list returns at most.
pub const INVOICE_PAGE_MAX: u32 = 1000;

/// Where a bill run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BillRunState {
    /// Composing and writing draft invoices, account after account.
    Drafting,
    /// Numbering the run's drafts.
    Finalising,
    /// Every invoice of the run is final.
    Done,
}

impl BillRunState {
    /// The name stored: `drafting`, `finalising`, `done`.
    pub fn as_str(self) -> &'static str {
        match self {
            BillRunState::Drafting => "drafting",
            BillRunState::Finalising => "finalising",
            BillRunState::Done => "done",
        }
    }

    fn parse(row: &Row, text: &str) -> Result<BillRunState> {
        match text {
            "drafting" => Ok(BillRunState::Drafting),
            "finalising" => Ok(BillRunState::Finalising),
            "done" => Ok(BillRunState::Done),
            other => Err(row.corrupt("state", format!("unknown bill run state {other:?}"))),
        }
    }
}

/// A bill run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRunRow {
    pub id: String,
    /// The month the billed cycles close in, `YYYY-MM`.
    pub cycle: String,
    /// `all`, or the invoiced accounts, comma-separated.
    pub scope: String,
    pub state: BillRunState,
    /// The last account whose draft was written.
    pub checkpoint: Option<String>,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Why the last attempt failed, and when ([`Store::fail_bill_run`]); cleared by the
    /// next step an attempt saves.
    pub failure: Option<(String, Timestamp)>,
}

/// The longest failure a bill run keeps, in characters (an error's chain can be long).
pub const MAX_BILL_RUN_ERROR: usize = 2000;

/// An invoice or a credit note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvoiceKind {
    Invoice,
    /// Corrects a final invoice (`corrects_invoice_id`).
    CreditNote,
}

impl InvoiceKind {
    /// The name stored: `invoice`, `credit_note`.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceKind::Invoice => "invoice",
            InvoiceKind::CreditNote => "credit_note",
        }
    }

    fn parse(row: &Row, text: &str) -> Result<InvoiceKind> {
        match text {
            "invoice" => Ok(InvoiceKind::Invoice),
            "credit_note" => Ok(InvoiceKind::CreditNote),
            other => Err(row.corrupt("kind", format!("unknown invoice kind {other:?}"))),
        }
    }
}

/// An invoice's state: a draft may be rewritten or dropped; a final one has its number
/// and never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvoiceState {
    Draft,
    Final,
}

impl InvoiceState {
    /// The name stored: `draft`, `final`.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceState::Draft => "draft",
            InvoiceState::Final => "final",
        }
    }

    fn parse(row: &Row, text: &str) -> Result<InvoiceState> {
        match text {
            "draft" => Ok(InvoiceState::Draft),
            "final" => Ok(InvoiceState::Final),
            other => Err(row.corrupt("state", format!("unknown invoice state {other:?}"))),
        }
    }
}

/// An invoice as stored. Its totals are those of its currency (the account's); the
/// document (`doc`) is the composed invoice.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceRow {
    pub id: String,
    pub kind: InvoiceKind,
    /// A prepaid hierarchy's statement (migration 19): numbered as an invoice in its own
    /// series, but nothing to pay (usage was charged online, fees are debited from the
    /// prepaid balance): never a receivable.
    pub statement: bool,
    pub bill_run_id: Option<String>,
    /// The invoiced account (the root of its hierarchy).
    pub billing_account_id: String,
    pub root_id: String,
    /// The month the cycle closes in, `YYYY-MM`.
    pub cycle: String,
    /// The billed days, ISO dates, `period_until` excluded.
    pub period_from: String,
    pub period_until: String,
    /// The issuing entity and its number series.
    pub issuer: String,
    pub series: String,
    pub state: InvoiceState,
    /// Assigned when final, gap-free per issuer and series.
    pub number: Option<i64>,
    /// The final invoice a credit note corrects.
    pub corrects_invoice_id: Option<String>,
    pub currency: String,
    pub net: Decimal,
    pub tax: Decimal,
    pub gross: Decimal,
    pub content_hash: String,
    pub doc: serde_json::Value,
    pub created_at: Timestamp,
    pub finalised_at: Option<Timestamp>,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLineRow {
    pub position: i64,
    /// The account whose section the line is in.
    pub account_id: String,
    /// `recurring`, `one-off`, `usage`, … (the billing crate's line kinds).
    pub kind: String,
    pub charge_type: String,
    pub product_id: Option<String>,
    pub reference: Option<String>,
    pub description: String,
    pub period_from: Option<String>,
    pub period_until: Option<String>,
    pub currency: String,
    pub quantity: Option<Decimal>,
    pub unit: Option<String>,
    pub amount: Decimal,
    pub net: Decimal,
    pub tax: Decimal,
    pub gross: Decimal,
    pub tax_code: Option<String>,
    pub tax_rate: Option<Decimal>,
}

/// What a billed item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BilledKind {
    /// A rated-event ledger entry.
    Usage,
    /// A product's recurring price for one cycle.
    Recurring,
    /// A product's one-time price.
    OneOff,
}

impl BilledKind {
    /// The name stored: `usage`, `recurring`, `one_off`.
    pub fn as_str(self) -> &'static str {
        match self {
            BilledKind::Usage => "usage",
            BilledKind::Recurring => "recurring",
            BilledKind::OneOff => "one_off",
        }
    }

    fn parse(row: &Row, text: &str) -> Result<BilledKind> {
        match text {
            "usage" => Ok(BilledKind::Usage),
            "recurring" => Ok(BilledKind::Recurring),
            "one_off" => Ok(BilledKind::OneOff),
            other => Err(row.corrupt("kind", format!("unknown billed kind {other:?}"))),
        }
    }
}

/// One billed item: its key (what it is), the account, the amount charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledItem {
    pub item_key: String,
    pub kind: BilledKind,
    pub billing_account_id: String,
    pub amount: Decimal,
    pub currency: String,
}

/// What a list of invoices may be narrowed by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    pub bill_run_id: Option<String>,
    pub billing_account_id: Option<String>,
    pub state: Option<String>,
    /// Only invoices of the hierarchy under this root.
    pub root_id: Option<String>,
}

/// An account of a hierarchy to bill: what composing its section needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillableAccount {
    pub id: String,
    pub engine_account_id: u64,
    pub parent_id: Option<String>,
    pub root_id: String,
    pub account_type: String,
    pub currency: String,
    pub bill_cycle_day: u8,
    pub payment_terms_days: i64,
    pub tax_profile_id: Option<String>,
}

/// A product of an account (a line or an add-on) with one of its offering's recurring or
/// one-time prices, over one period of its history (migration 0013; a product with no
/// history recorded: from its start to its termination, on its current offering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPrice {
    pub billing_account_id: String,
    /// The line's or add-on's id.
    pub product_id: String,
    /// The order that created it, when one did.
    pub order_id: Option<String>,
    pub offering_id: String,
    pub price_id: String,
    pub price_name: String,
    /// `recurring` or `oneTime`.
    pub price_type: String,
    pub amount: Decimal,
    /// The price's unit: its currency.
    pub currency: String,
    /// When the period started (a line's start, else when it was recorded).
    pub started_at: Timestamp,
    /// When the product was terminated, ending the period.
    pub terminated_at: Option<Timestamp>,
    /// When a change (a plan change, a suspension, a resumption) ended the period.
    pub changed_at: Option<Timestamp>,
    /// Whether the product was suspended in the period.
    pub suspended: bool,
    /// A recurring price's `chargeTiming` (`inAdvance` or `inArrears`), when it has one.
    pub charge_timing: Option<String>,
}

const RUN_COLUMNS: &str =
    "id, cycle, scope, state, checkpoint, started_at_ms, updated_at_ms, finished_at_ms, error, failed_at_ms";

fn bill_run(row: &Row) -> Result<BillRunRow> {
    Ok(BillRunRow {
        id: row.text("id")?,
        cycle: row.text("cycle")?,
        scope: row.text("scope")?,
        state: BillRunState::parse(row, &row.text("state")?)?,
        checkpoint: row.opt_text("checkpoint")?,
        started_at: row.timestamp("started_at_ms")?,
        updated_at: row.timestamp("updated_at_ms")?,
        finished_at: row.opt_timestamp("finished_at_ms")?,
        failure: match (row.opt_text("error")?, row.opt_timestamp("failed_at_ms")?) {
            (Some(error), Some(at)) => Some((error, at)),
            _ => None,
        },
    })
}

const INVOICE_COLUMNS: &str =
    "id, kind, document, bill_run_id, billing_account_id, root_id, cycle, period_from, period_until,
     issuer, series, state, number, corrects_invoice_id, currency, net, tax, gross, content_hash, doc_json,
     created_at_ms, finalised_at_ms";

fn invoice(row: &Row) -> Result<InvoiceRow> {
    Ok(InvoiceRow {
        id: row.text("id")?,
        kind: InvoiceKind::parse(row, &row.text("kind")?)?,
        statement: match row.text("document")?.as_str() {
            "invoice" => false,
            "statement" => true,
            other => return Err(row.corrupt("document", format!("unknown document {other:?}"))),
        },
        bill_run_id: row.opt_text("bill_run_id")?,
        billing_account_id: row.text("billing_account_id")?,
        root_id: row.text("root_id")?,
        cycle: row.text("cycle")?,
        period_from: row.text("period_from")?,
        period_until: row.text("period_until")?,
        issuer: row.text("issuer")?,
        series: row.text("series")?,
        state: InvoiceState::parse(row, &row.text("state")?)?,
        number: row.opt_int("number")?,
        corrects_invoice_id: row.opt_text("corrects_invoice_id")?,
        currency: row.text("currency")?,
        net: row.money("net")?,
        tax: row.money("tax")?,
        gross: row.money("gross")?,
        content_hash: row.text("content_hash")?,
        doc: parse_json(row, "doc_json", &row.text("doc_json")?)?,
        created_at: row.timestamp("created_at_ms")?,
        finalised_at: row.opt_timestamp("finalised_at_ms")?,
    })
}

const LINE_COLUMNS: &str = "position, account_id, kind, charge_type, product_id, reference, description, period_from,
     period_until, currency, quantity, unit, amount, net, tax, gross, tax_code, tax_rate";

fn line(row: &Row) -> Result<InvoiceLineRow> {
    Ok(InvoiceLineRow {
        position: row.int("position")?,
        account_id: row.text("account_id")?,
        kind: row.text("kind")?,
        charge_type: row.text("charge_type")?,
        product_id: row.opt_text("product_id")?,
        reference: row.opt_text("reference")?,
        description: row.text("description")?,
        period_from: row.opt_text("period_from")?,
        period_until: row.opt_text("period_until")?,
        currency: row.text("currency")?,
        quantity: row.opt_money("quantity")?,
        unit: row.opt_text("unit")?,
        amount: row.money("amount")?,
        net: row.money("net")?,
        tax: row.money("tax")?,
        gross: row.money("gross")?,
        tax_code: row.opt_text("tax_code")?,
        tax_rate: row.opt_money("tax_rate")?,
    })
}

fn billed(row: &Row) -> Result<BilledItem> {
    Ok(BilledItem {
        item_key: row.text("item_key")?,
        kind: BilledKind::parse(row, &row.text("kind")?)?,
        billing_account_id: row.text("billing_account_id")?,
        amount: row.money("amount")?,
        currency: row.text("currency")?,
    })
}

/// The unique-key refusal of an insert, as a conflict naming what was taken.
fn taken(what: &'static str, key: String) -> impl FnOnce(StoreError) -> StoreError {
    move |error| {
        if error.is_unique_violation() {
            StoreError::Conflict { what, key }
        } else {
            error
        }
    }
}

impl Tx {
    /// Opens bill run `id` for `cycle` and `scope`, or returns it as it stands when it
    /// exists (a rerun); `Conflict` if it exists for another cycle or scope.
    pub async fn open_bill_run(&mut self, id: &str, cycle: &str, scope: &str, now: Timestamp) -> Result<BillRunRow> {
        self.execute(
            "bill_runs.open",
            "INSERT INTO bill_runs (id, cycle, scope, state, checkpoint, started_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, 'drafting', NULL, $4, $4) ON CONFLICT DO NOTHING",
            args![id, cycle, scope, to_ms(now)],
        )
        .await?;
        let sql = format!("SELECT {RUN_COLUMNS} FROM bill_runs WHERE id = $1{}", self.dialect().lock_rows());
        let run = bill_run(&self.fetch_one("bill_runs.open", &sql, args![id]).await?)?;
        if run.cycle != cycle || run.scope != scope {
            return Err(StoreError::Conflict { what: "bill run", key: id.to_owned() });
        }
        Ok(run)
    }

    /// Records a bill run's state and checkpoint (`finished_at` set when `Done`); a
    /// failure recorded before is cleared (this attempt got further).
    pub async fn save_bill_run(
        &mut self,
        id: &str,
        state: BillRunState,
        checkpoint: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        let finished = (state == BillRunState::Done).then(|| to_ms(now));
        let changed = self
            .execute(
                "bill_runs.save",
                "UPDATE bill_runs SET state = $2, checkpoint = $3, updated_at_ms = $4,
                     finished_at_ms = COALESCE(finished_at_ms, $5), error = NULL, failed_at_ms = NULL
                 WHERE id = $1",
                args![id, state.as_str(), checkpoint, to_ms(now), finished],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound { entity: "bill run", id: id.to_owned() });
        }
        Ok(())
    }

    /// Writes a draft invoice (or credit note) with its lines and what it bills, in this
    /// transaction. `Conflict` when the account already has an invoice for the cycle, or an
    /// item is billed already (nothing is billed twice); `Invalid` for a final state, or a
    /// credit note that does not correct a final invoice.
    pub async fn insert_draft_invoice(
        &mut self,
        new: &InvoiceRow,
        lines: &[InvoiceLineRow],
        items: &[BilledItem],
        now: Timestamp,
    ) -> Result<()> {
        if new.state != InvoiceState::Draft || new.number.is_some() {
            return Err(StoreError::Invalid { field: "state", reason: "a new invoice is a draft, unnumbered".into() });
        }
        if (new.kind == InvoiceKind::CreditNote) != new.corrects_invoice_id.is_some() {
            return Err(StoreError::Invalid {
                field: "corrects_invoice_id",
                reason: "a credit note, and only a credit note, corrects an invoice".into(),
            });
        }
        if let Some(corrected) = &new.corrects_invoice_id {
            let row = self
                .fetch_optional(
                    "invoices.insert",
                    "SELECT kind, document, state FROM invoices WHERE id = $1",
                    args![corrected.as_str()],
                )
                .await?
                .ok_or_else(|| StoreError::NotFound { entity: "invoice", id: corrected.clone() })?;
            // A statement owes nothing: its fees are corrected by a refund to the
            // prepaid balance, not by a credit note.
            if row.text("kind")? != "invoice" || row.text("document")? != "invoice" || row.text("state")? != "final" {
                return Err(StoreError::Invalid {
                    field: "corrects_invoice_id",
                    reason: format!("{corrected} is not a final invoice"),
                });
            }
        }
        let doc = json_text("doc", &new.doc)?;
        self.execute(
            "invoices.insert",
            "INSERT INTO invoices (id, kind, bill_run_id, billing_account_id, root_id, cycle, period_from, period_until,
                 issuer, series, state, number, corrects_invoice_id, currency, net, tax, gross, content_hash, doc_json,
                 created_at_ms, finalised_at_ms, document)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'draft', NULL, $11, $12, $13, $14, $15, $16, $17, $18, NULL,
                 $19)",
            args![
                new.id.as_str(),
                new.kind.as_str(),
                new.bill_run_id.clone(),
                new.billing_account_id.as_str(),
                new.root_id.as_str(),
                new.cycle.as_str(),
                new.period_from.as_str(),
                new.period_until.as_str(),
                new.issuer.as_str(),
                new.series.as_str(),
                new.corrects_invoice_id.clone(),
                new.currency.as_str(),
                new.net,
                new.tax,
                new.gross,
                new.content_hash.as_str(),
                doc,
                to_ms(now),
                if new.statement { "statement" } else { "invoice" }
            ],
        )
        .await
        .map_err(taken("invoice of account and cycle", format!("{} {}", new.billing_account_id, new.cycle)))?;
        let mut values = Vec::with_capacity(lines.len() * 19);
        for line in lines {
            values.extend(args![
                new.id.as_str(),
                line.position,
                line.account_id.as_str(),
                line.kind.as_str(),
                line.charge_type.as_str(),
                line.product_id.clone(),
                line.reference.clone(),
                line.description.as_str(),
                line.period_from.clone(),
                line.period_until.clone(),
                line.currency.as_str(),
                line.quantity,
                line.unit.clone(),
                line.amount,
                line.net,
                line.tax,
                line.gross,
                line.tax_code.clone(),
                line.tax_rate
            ]);
        }
        if !values.is_empty() {
            insert_many(
                self,
                "invoice_lines.insert",
                &format!("INSERT INTO invoice_lines (invoice_id, {})", LINE_COLUMNS.replace('\n', " ")),
                19,
                values,
                "",
            )
            .await?;
        }
        let mut values = Vec::with_capacity(items.len() * 7);
        for item in items {
            values.extend(args![
                item.item_key.as_str(),
                item.kind.as_str(),
                item.billing_account_id.as_str(),
                new.id.as_str(),
                item.amount,
                item.currency.as_str(),
                to_ms(now)
            ]);
        }
        if !values.is_empty() {
            insert_many(
                self,
                "billed_items.insert",
                "INSERT INTO billed_items (item_key, kind, billing_account_id, invoice_id, amount, currency, billed_at_ms)",
                7,
                values,
                "",
            )
            .await
            .map_err(taken("billed item", new.id.clone()))?;
        }
        Ok(())
    }

    /// Makes invoice `id` final with the next number of its issuer's series, taken from the
    /// series' counter in this transaction (gap-free: a rollback gives the number back), due
    /// the account's payment terms after the day it is made final (UTC, `invoices.due_on`).
    /// Returns its number; an invoice already final keeps the one it has.
    pub async fn finalise_invoice(&mut self, id: &str, now: Timestamp) -> Result<i64> {
        let numbers = self.finalise_invoices(&[id], now).await?;
        numbers
            .first()
            .map(|(number, _)| *number)
            .ok_or_else(|| StoreError::NotFound { entity: "invoice", id: id.to_owned() })
    }

    /// Makes invoices `ids` final as [`Tx::finalise_invoice`] does one, numbered in the
    /// order given, in a few statements for them all (a bill run numbers a batch of
    /// hundreds): their rows read at once, each series' counter moved once by the count
    /// of its drafts, the rows changed by one `UPDATE` a chunk. Returns their numbers in
    /// that order, each with whether it was made final now (`false`: it was final already,
    /// made so by another run); an id given twice is refused (it would take two numbers).
    pub async fn finalise_invoices(&mut self, ids: &[&str], now: Timestamp) -> Result<Vec<(i64, bool)>> {
        let mut given = BTreeSet::new();
        if let Some(twice) = ids.iter().find(|id| !given.insert(**id)) {
            return Err(StoreError::Invalid { field: "id", reason: format!("invoice {twice} given twice") });
        }
        let sql = format!(
            "SELECT i.id, i.state, i.number, i.issuer, i.series, a.payment_terms_days FROM invoices i
             JOIN billing_accounts a ON a.id = i.billing_account_id WHERE i.id IN (#){}",
            // The invoices' rows only: the accounts' stay free for their other writers.
            match self.dialect() {
                crate::Dialect::Sqlite => "",
                crate::Dialect::Postgres => " FOR UPDATE OF i",
            }
        );
        let rows = select_in(self, "invoices.finalise", &sql, ids).await?;
        let mut found = BTreeMap::new();
        for row in &rows {
            found.insert(row.text("id")?, row);
        }
        // Numbers: a final invoice's own; a draft's the next of its series, in the order given.
        let mut numbers = Vec::with_capacity(ids.len());
        let mut drafts: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        let mut due = Vec::with_capacity(ids.len());
        for (index, id) in ids.iter().enumerate() {
            let row = found.get(*id).ok_or_else(|| StoreError::NotFound { entity: "invoice", id: (*id).to_owned() })?;
            if InvoiceState::parse(row, &row.text("state")?)? == InvoiceState::Final {
                numbers.push(row.int("number")?);
                continue;
            }
            numbers.push(0);
            drafts.entry((row.text("issuer")?, row.text("series")?)).or_default().push(index);
            // Due the account's payment terms after the day it is issued (UTC).
            let terms = row.int("payment_terms_days")?;
            let due_on = jiff::tz::Offset::UTC
                .to_datetime(now)
                .date()
                .checked_add(jiff::Span::new().days(terms))
                .map_err(|e| row.corrupt("payment_terms_days", format!("{terms} days: {e}")))?;
            due.push((index, due_on.to_string()));
        }
        for ((issuer, series), indexes) in &drafts {
            self.open_series(issuer, series).await?;
            let count = i64::try_from(indexes.len()).unwrap_or(i64::MAX);
            let first = self
                .fetch_one(
                    "invoices.finalise",
                    "UPDATE invoice_series SET next_number = next_number + $3 WHERE issuer = $1 AND series = $2
                     RETURNING next_number - $3 AS number",
                    args![issuer.as_str(), series.as_str(), count],
                )
                .await?
                .int("number")?;
            for (offset, index) in (0..).zip(indexes) {
                numbers[*index] = first + offset;
            }
        }
        let dialect = self.dialect();
        for chunk in due.chunks(crate::bulk::MAX_ROWS_PER_STATEMENT) {
            // UPDATE … SET number = CASE id WHEN … THEN … END, due_on = CASE … END WHERE id IN (…)
            let mut args: Vec<Arg> = Vec::with_capacity(1 + chunk.len() * 5);
            let mut next = 0;
            let mut placeholder = |arg: Arg, args: &mut Vec<Arg>| {
                next += 1;
                args.push(arg);
                crate::bulk::placeholder(dialect, next)
            };
            let at = placeholder(Arg::from(to_ms(now)), &mut args);
            // The name it is issued to, fixed with it (its PDF shows it, whatever the account is called later).
            let mut sql = format!(
                "UPDATE invoices SET state = 'final', finalised_at_ms = {at},
                     bill_to = (SELECT a.name FROM billing_accounts a WHERE a.id = invoices.billing_account_id),
                     number = CASE id"
            );
            for (index, _) in chunk {
                let (id, number) = (
                    placeholder(Arg::from(ids[*index]), &mut args),
                    placeholder(Arg::from(numbers[*index]), &mut args),
                );
                sql.push_str(&format!(" WHEN {id} THEN {number}"));
            }
            sql.push_str(" END, due_on = CASE id");
            for (index, due_on) in chunk {
                let (id, due_on) = (
                    placeholder(Arg::from(ids[*index]), &mut args),
                    placeholder(Arg::from(due_on.as_str()), &mut args),
                );
                sql.push_str(&format!(" WHEN {id} THEN {due_on}"));
            }
            sql.push_str(" END WHERE state = 'draft' AND id IN (");
            for (position, (index, _)) in chunk.iter().enumerate() {
                if position > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&placeholder(Arg::from(ids[*index]), &mut args));
            }
            sql.push(')');
            let changed = self.execute("invoices.finalise", &sql, args).await?;
            if changed != chunk.len() as u64 {
                return Err(StoreError::Conflict {
                    what: "invoice",
                    key: format!("{} of {} drafts were made final", changed, chunk.len()),
                });
            }
        }
        let drafted: BTreeSet<usize> = due.iter().map(|(index, _)| *index).collect();
        Ok(numbers.into_iter().enumerate().map(|(index, number)| (number, drafted.contains(&index))).collect())
    }

    /// Locks the number series of `series` (issuer, series), in their sorted order, before
    /// a transaction that numbers several invoices takes any invoice's row: two such
    /// transactions (two bill runs) then queue on the series instead of each holding an
    /// invoice the other waits for (a deadlock on PostgreSQL; SQLite runs one writer).
    pub async fn lock_invoice_series(&mut self, series: &BTreeSet<(String, String)>) -> Result<()> {
        let lock = format!(
            "SELECT next_number FROM invoice_series WHERE issuer = $1 AND series = $2{}",
            self.dialect().lock_rows()
        );
        for (issuer, series) in series {
            self.open_series(issuer, series).await?;
            self.fetch_one("invoices.series_lock", &lock, args![issuer.as_str(), series.as_str()]).await?;
        }
        Ok(())
    }

    /// Starts the counter of `issuer`'s `series` at 1, unless it has one.
    async fn open_series(&mut self, issuer: &str, series: &str) -> Result<()> {
        self.execute(
            "invoices.series",
            "INSERT INTO invoice_series (issuer, series, next_number) VALUES ($1, $2, 1) ON CONFLICT DO NOTHING",
            args![issuer, series],
        )
        .await?;
        Ok(())
    }
}

impl Store {
    /// A bill run.
    /// Records that an attempt at bill run `id` failed with `error` (its first
    /// [`MAX_BILL_RUN_ERROR`] characters) at `now`, unless the run is done; whether it
    /// was recorded (no such run, or done: not).
    pub async fn fail_bill_run(&self, id: &str, error: &str, now: Timestamp) -> Result<bool> {
        let error: String = error.chars().take(MAX_BILL_RUN_ERROR).collect();
        let mut tx = self.begin().await?;
        let changed = tx
            .execute(
                "bill_runs.fail",
                "UPDATE bill_runs SET error = $2, failed_at_ms = $3, updated_at_ms = $3 WHERE id = $1 AND state <> 'done'",
                args![id, error, to_ms(now)],
            )
            .await?;
        tx.commit().await?;
        Ok(changed > 0)
    }

    pub async fn bill_run(&self, id: &str) -> Result<Option<BillRunRow>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {RUN_COLUMNS} FROM bill_runs WHERE id = $1");
        tx.fetch_optional("bill_runs.get", &sql, args![id]).await?.as_ref().map(bill_run).transpose()
    }

    /// Bill runs, the latest started first: `limit` (at most [`INVOICE_PAGE_MAX`]) from
    /// `offset`, and how many there are.
    pub async fn bill_runs(&self, offset: u64, limit: u32) -> Result<(Vec<BillRunRow>, i64)> {
        let offset = i64::try_from(offset)
            .map_err(|_| StoreError::Invalid { field: "offset", reason: format!("{offset} is too large") })?;
        let mut tx = self.read().await?;
        let total = tx.fetch_one("bill_runs.list", "SELECT COUNT(*) AS n FROM bill_runs", vec![]).await?.int("n")?;
        let sql = format!("SELECT {RUN_COLUMNS} FROM bill_runs ORDER BY started_at_ms DESC, id LIMIT $1 OFFSET $2");
        let rows = tx.fetch_all("bill_runs.list", &sql, args![i64::from(limit.min(INVOICE_PAGE_MAX)), offset]).await?;
        Ok((rows.iter().map(bill_run).collect::<Result<Vec<_>>>()?, total))
    }

    /// An invoice or credit note.
    pub async fn invoice(&self, id: &str) -> Result<Option<InvoiceRow>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1");
        tx.fetch_optional("invoices.get", &sql, args![id]).await?.as_ref().map(invoice).transpose()
    }

    /// Which of `accounts` have their invoice of `cycle` (drafted or final): one query per
    /// few hundred accounts, for a bill run that skips them.
    pub async fn invoiced_accounts(&self, accounts: &[String], cycle: &str) -> Result<BTreeSet<String>> {
        let mut tx = self.read().await?;
        let keys: Vec<&str> = accounts.iter().map(String::as_str).collect();
        let sql = "SELECT billing_account_id, cycle FROM invoices WHERE kind = 'invoice' AND billing_account_id IN (#)";
        let rows = select_in(&mut tx, "invoices.invoiced", sql, &keys).await?;
        let mut invoiced = BTreeSet::new();
        for row in &rows {
            if row.text("cycle")? == cycle {
                invoiced.insert(row.text("billing_account_id")?);
            }
        }
        Ok(invoiced)
    }

    /// An invoice's lines, in position order.
    pub async fn invoice_lines(&self, invoice_id: &str) -> Result<Vec<InvoiceLineRow>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {LINE_COLUMNS} FROM invoice_lines WHERE invoice_id = $1 ORDER BY position");
        tx.fetch_all("invoice_lines.list", &sql, args![invoice_id]).await?.iter().map(line).collect()
    }

    /// What an invoice billed, by key.
    pub async fn billed_items_of(&self, invoice_id: &str) -> Result<Vec<BilledItem>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "billed_items.of",
                "SELECT item_key, kind, billing_account_id, amount, currency FROM billed_items
                 WHERE invoice_id = $1 ORDER BY item_key",
                args![invoice_id],
            )
            .await?;
        rows.iter().map(billed).collect()
    }

    /// What each of `invoices` billed, by invoice and then key: one query per few hundred
    /// invoices, for a bill run making a batch of them final. An invoice that billed
    /// nothing (or does not exist) is absent.
    pub async fn billed_items_of_invoices(&self, invoices: &[String]) -> Result<BTreeMap<String, Vec<BilledItem>>> {
        let mut tx = self.read().await?;
        let keys: Vec<&str> = invoices.iter().map(String::as_str).collect();
        let sql = "SELECT invoice_id, item_key, kind, billing_account_id, amount, currency FROM billed_items
                   WHERE invoice_id IN (#)";
        let mut billed_by: BTreeMap<String, Vec<BilledItem>> = BTreeMap::new();
        for row in select_in(&mut tx, "billed_items.of_invoices", sql, &keys).await? {
            billed_by.entry(row.text("invoice_id")?).or_default().push(billed(&row)?);
        }
        for items in billed_by.values_mut() {
            items.sort_by(|a, b| a.item_key.cmp(&b.item_key));
        }
        Ok(billed_by)
    }

    /// Which of `keys` are billed already.
    pub async fn billed_keys(&self, keys: &[String]) -> Result<BTreeSet<String>> {
        Ok(self.billed_amounts(keys).await?.into_keys().collect())
    }

    /// The amount each of `keys` that is billed was billed with.
    pub async fn billed_amounts(&self, keys: &[String]) -> Result<BTreeMap<String, Decimal>> {
        let mut tx = self.read().await?;
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let sql = "SELECT item_key, amount FROM billed_items WHERE item_key IN (#)";
        let rows = select_in(&mut tx, "billed_items.keys", sql, &keys).await?;
        rows.iter().map(|row| Ok((row.text("item_key")?, row.money("amount")?))).collect()
    }

    /// Invoices matching `filter`, in the order they were drafted: `limit` (at most
    /// [`INVOICE_PAGE_MAX`]) from `offset`, and the number matching in all.
    pub async fn invoice_list(
        &self,
        filter: &InvoiceFilter,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<InvoiceRow>, i64)> {
        let offset = i64::try_from(offset)
            .map_err(|_| StoreError::Invalid { field: "offset", reason: format!("{offset} is too large") })?;
        let mut values = Vec::new();
        let mut conditions = vec!["1 = 1".to_owned()];
        for (column, value) in [
            ("bill_run_id", &filter.bill_run_id),
            ("billing_account_id", &filter.billing_account_id),
            ("state", &filter.state),
            ("root_id", &filter.root_id),
        ] {
            if let Some(value) = value {
                values.push(Arg::from(value.as_str()));
                conditions.push(format!("{column} = ${}", values.len()));
            }
        }
        let from_where = format!("invoices WHERE {}", conditions.join(" AND "));
        let mut tx = self.read().await?;
        let total = tx
            .fetch_one("invoices.list", &format!("SELECT COUNT(*) AS n FROM {from_where}"), values.clone())
            .await?
            .int("n")?;
        values.push(Arg::from(i64::from(limit.min(INVOICE_PAGE_MAX))));
        values.push(Arg::from(offset));
        let count = values.len();
        let sql =
            format!("SELECT {INVOICE_COLUMNS} FROM {from_where} ORDER BY seq LIMIT ${} OFFSET ${count}", count - 1);
        let rows = tx.fetch_all("invoices.list", &sql, values).await?;
        Ok((rows.iter().map(invoice).collect::<Result<Vec<_>>>()?, total))
    }

    /// The accounts of the hierarchies to bill, roots and children, ordered by root and
    /// then depth and id: every hierarchy, or those whose root is in `roots`.
    pub async fn billable_accounts(&self, roots: Option<&[String]>) -> Result<Vec<BillableAccount>> {
        let mut tx = self.read().await?;
        let columns = "seq, id, parent_id, root_id, account_type, currency, bill_cycle_day, payment_terms_days,
             tax_profile_id";
        let order = "ORDER BY root_id, depth, id";
        let rows = match roots {
            None => {
                tx.fetch_all("billing.accounts", &format!("SELECT {columns} FROM billing_accounts {order}"), vec![])
                    .await?
            }
            Some(roots) => {
                let keys: Vec<&str> = roots.iter().map(String::as_str).collect();
                let sql = format!("SELECT {columns} FROM billing_accounts WHERE root_id IN (#) {order}");
                let mut rows = select_in(&mut tx, "billing.accounts", &sql, &keys).await?;
                // Chunks each come sorted; sort the whole.
                let mut keyed = Vec::with_capacity(rows.len());
                for row in rows.drain(..) {
                    keyed.push(((row.text("root_id")?, row.int("seq")?), row));
                }
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                keyed.into_iter().map(|(_, row)| row).collect()
            }
        };
        let mut accounts = rows
            .iter()
            .map(|row| {
                let day = row.int("bill_cycle_day")?;
                Ok(BillableAccount {
                    id: row.text("id")?,
                    engine_account_id: engine_id(row.int("seq")?),
                    parent_id: row.opt_text("parent_id")?,
                    root_id: row.text("root_id")?,
                    account_type: row.text("account_type")?,
                    currency: row.text("currency")?,
                    bill_cycle_day: u8::try_from(day)
                        .map_err(|_| row.corrupt("bill_cycle_day", format!("{day} is not a day")))?,
                    payment_terms_days: row.int("payment_terms_days")?,
                    tax_profile_id: row.opt_text("tax_profile_id")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        accounts.sort_by(|a, b| (&a.root_id, a.id != a.root_id, &a.id).cmp(&(&b.root_id, b.id != b.root_id, &b.id)));
        Ok(accounts)
    }

    /// The products (lines and add-ons) of `accounts` that have started, each with each
    /// recurring and one-time price of its offering, ordered by account, product and price.
    /// A line still being provisioned or cancelled has not started.
    pub async fn product_prices(&self, accounts: &[String]) -> Result<Vec<ProductPrice>> {
        let mut tx = self.read().await?;
        let keys: Vec<&str> = accounts.iter().map(String::as_str).collect();
        let prices = "JOIN catalogue_refs r ON r.from_id = {offering} AND r.field = 'productOfferingPrice'
             JOIN catalogue_items p ON p.id = r.to_id AND p.price_type IN ('recurring', 'oneTime')";
        // A product's periods, each with its offering's prices; one-time prices only with
        // the period that started the product (a suspension or a plan change bills none).
        let periods = format!(
            "SELECT s.billing_account_id, h.product_id, h.order_id, COALESCE(h.offering_id, '') AS offering_id,
                 p.id AS price_id, p.name AS price_name, p.price_type, p.price_amount, p.price_unit,
                 h.from_ms AS started_at_ms,
                 CASE WHEN h.closed_by IN ('terminate', 'removeAddOn') THEN h.until_ms END AS terminated_at_ms,
                 CASE WHEN h.closed_by IN ('terminate', 'removeAddOn') THEN NULL ELSE h.until_ms END AS changed_at_ms,
                 h.state AS period_state, 'activation' AS charge_event
             FROM product_periods h JOIN subscriptions s ON s.id = h.subscription_id {}
             WHERE s.billing_account_id IN (#)
               AND (p.price_type = 'recurring' OR h.opened_by IN ('newLine', 'addAddOn', 'import', 'backfill'))",
            prices.replace("{offering}", "h.offering_id")
        );
        let no_history = "NOT EXISTS (SELECT 1 FROM product_periods h WHERE h.product_id = {product})";
        let lines = format!(
            "SELECT s.billing_account_id, s.id AS product_id, s.order_id, s.offering_id, p.id AS price_id,
                 p.name AS price_name, p.price_type, p.price_amount, p.price_unit,
                 COALESCE(s.started_at_ms, s.created_at_ms) AS started_at_ms, s.terminated_at_ms,
                 CAST(NULL AS BIGINT) AS changed_at_ms, 'active' AS period_state, 'activation' AS charge_event
             FROM subscriptions s {}
             WHERE s.billing_account_id IN (#) AND {}
               AND (s.product_status IS NULL OR s.product_status NOT IN ('pendingActive', 'cancelled'))",
            prices.replace("{offering}", "s.offering_id"),
            no_history.replace("{product}", "s.id")
        );
        let addons = format!(
            "SELECT s.billing_account_id, a.id AS product_id, a.order_id, a.offering_id, p.id AS price_id,
                 p.name AS price_name, p.price_type, p.price_amount, p.price_unit,
                 a.created_at_ms AS started_at_ms, a.terminated_at_ms, CAST(NULL AS BIGINT) AS changed_at_ms,
                 'active' AS period_state, 'activation' AS charge_event
             FROM subscription_addons a JOIN subscriptions s ON s.id = a.subscription_id {}
             WHERE s.billing_account_id IN (#) AND {}",
            prices.replace("{offering}", "a.offering_id"),
            no_history.replace("{product}", "a.id")
        );
        // A line's golden number: its one-time price, billed once with the line's order
        // (`golden-number:{msisdn}` is the price's id).
        let golden = "SELECT s.billing_account_id, s.id AS product_id, s.order_id,
                 COALESCE(s.offering_id, '') AS offering_id, 'golden-number:' || m.msisdn AS price_id,
                 'Golden number ' || m.msisdn AS price_name, 'oneTime' AS price_type, m.price AS price_amount,
                 m.currency AS price_unit, COALESCE(s.started_at_ms, s.created_at_ms) AS started_at_ms,
                 s.terminated_at_ms, CAST(NULL AS BIGINT) AS changed_at_ms, 'active' AS period_state,
                 'activation' AS charge_event
             FROM msisdns m JOIN subscriptions s ON s.id = m.subscription_id
             WHERE m.price IS NOT NULL AND s.billing_account_id IN (#)
               AND (s.product_status IS NULL OR s.product_status NOT IN ('pendingActive', 'cancelled'))";
        // A line's completed SIM swaps, each with the one-time prices of the offering the
        // line was on then (`chargeEvent: simSwap` keeps only those), under the swap's order.
        let swaps = format!(
            "SELECT s.billing_account_id, s.id AS product_id, i.order_id, COALESCE(h.offering_id, s.offering_id, '')
                 AS offering_id, p.id AS price_id, p.name AS price_name, p.price_type, p.price_amount, p.price_unit,
                 i.updated_at_ms AS started_at_ms, CAST(NULL AS BIGINT) AS terminated_at_ms,
                 CAST(NULL AS BIGINT) AS changed_at_ms, 'active' AS period_state, 'simSwap' AS charge_event
             FROM product_order_items i JOIN subscriptions s ON s.id = i.product_id
             LEFT JOIN product_periods h ON h.product_id = s.id AND h.from_ms <= i.updated_at_ms
                 AND (h.until_ms IS NULL OR h.until_ms > i.updated_at_ms) {}
             WHERE i.action = 'simSwap' AND i.state = 'completed' AND s.billing_account_id IN (#)
               AND p.price_type = 'oneTime'",
            prices.replace("{offering}", "COALESCE(h.offering_id, s.offering_id)")
        );
        let mut rows = select_in(&mut tx, "billing.product_prices", &periods, &keys).await?;
        rows.extend(select_in(&mut tx, "billing.product_prices", &swaps, &keys).await?);
        rows.extend(select_in(&mut tx, "billing.product_prices", &lines, &keys).await?);
        rows.extend(select_in(&mut tx, "billing.product_prices", &addons, &keys).await?);
        rows.extend(select_in(&mut tx, "billing.product_prices", golden, &keys).await?);
        let out = rows
            .iter()
            .filter_map(|row| {
                // A price without an amount (a price of another kind) bills nothing.
                let amount = match row.opt_money("price_amount") {
                    Ok(Some(amount)) => amount,
                    Ok(None) => return None,
                    Err(error) => return Some(Err(error)),
                };
                Some((|| {
                    let price = ProductPrice {
                        billing_account_id: row.text("billing_account_id")?,
                        product_id: row.text("product_id")?,
                        order_id: row.opt_text("order_id")?,
                        offering_id: row.text("offering_id")?,
                        price_id: row.text("price_id")?,
                        price_name: row.text("price_name")?,
                        price_type: row.text("price_type")?,
                        amount,
                        currency: row.text("price_unit")?,
                        started_at: row.timestamp("started_at_ms")?,
                        terminated_at: row.opt_timestamp("terminated_at_ms")?,
                        changed_at: row.opt_timestamp("changed_at_ms")?,
                        suspended: row.text("period_state")? == "suspended",
                        charge_timing: None,
                    };
                    Ok((price, row.text("charge_event")?))
                })())
            })
            .collect::<Result<Vec<_>>>()?;
        // Each price's timing and event, read once per price from its document.
        let ids: BTreeSet<&str> = out.iter().map(|(price, _)| price.price_id.as_str()).collect();
        let ids: Vec<&str> = ids.into_iter().collect();
        let docs = select_in(
            &mut tx,
            "billing.price_timing",
            "SELECT id, doc_json FROM catalogue_items WHERE id IN (#)",
            &ids,
        )
        .await?;
        let (mut timing, mut events) = (BTreeMap::new(), BTreeMap::new());
        for row in &docs {
            let doc = parse_json(row, "doc_json", &row.text("doc_json")?)?;
            let field = |name: &str| doc.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
            timing.insert(row.text("id")?, field("chargeTiming"));
            events.insert(row.text("id")?, field("chargeEvent"));
        }
        // A one-time price is billed for its event only: a SIM swap fee with the swaps, the
        // others with the product's start.
        let mut out: Vec<ProductPrice> = out
            .into_iter()
            .filter(|(price, event)| {
                let wanted = events.get(&price.price_id).cloned().flatten();
                price.price_type != "oneTime" || wanted.as_deref().unwrap_or("activation") == event
            })
            .map(|(mut price, _)| {
                price.charge_timing = timing.get(&price.price_id).cloned().flatten();
                price
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.billing_account_id, &a.product_id, &a.price_id, a.started_at).cmp(&(
                &b.billing_account_id,
                &b.product_id,
                &b.price_id,
                b.started_at,
            ))
        });
        Ok(out)
    }
}

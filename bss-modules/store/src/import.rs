//! What a bulk import (data migration from a legacy system) needs of the store: customers
//! with their billing accounts inserted a chunk of rows per statement, lookups by external
//! id (what was imported before, a parent account, a subscription's account), and the
//! import run's checkpoint (`import_runs`), which each batch updates in its own
//! transaction, so a killed import resumes exactly after its last committed batch.
//!
//! The rules (what a valid row is, what counts as the same row) live in `tollgate-import`;
//! this module stores and reads what it decided.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::bulk::{insert_many, select_in};
use crate::codec::{parse_json, to_ms};
use crate::customers::engine_id;
use crate::error::{Result, StoreError};
use crate::sql::{args, Row};
use crate::{BillingAccountRow, CustomerRow, Store, Tx};

/// What an import run imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportKind {
    /// Customers, each with its billing account.
    Customers,
    /// Subscriptions of imported billing accounts.
    Subscriptions,
}

impl ImportKind {
    /// The name in rows and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Customers => "customers",
            ImportKind::Subscriptions => "subscriptions",
        }
    }

    fn parse(row: &Row, text: &str) -> Result<ImportKind> {
        match text {
            "customers" => Ok(ImportKind::Customers),
            "subscriptions" => Ok(ImportKind::Subscriptions),
            other => Err(row.corrupt("kind", format!("unknown import kind {other:?}"))),
        }
    }
}

/// One import of one file through one mapping, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRun {
    pub id: String,
    pub kind: ImportKind,
    /// The file's name as given (for people; the digest identifies it).
    pub file_name: String,
    pub file_sha256: String,
    pub file_bytes: i64,
    pub mapping_sha256: String,
    /// Whether every row has been committed.
    pub complete: bool,
    /// Rows committed so far (the last committed row's number).
    pub rows_done: i64,
    /// The byte offset where the row after them starts.
    pub next_offset: i64,
    /// The rejects file's length after the last committed batch.
    pub rejects_bytes: i64,
    pub imported: i64,
    pub duplicates: i64,
    pub rejected: i64,
    /// Who runs it, as the audit trail names them.
    pub actor: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// A customer and its billing account, as one imported row creates them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedAccount {
    /// The legacy system's id: the customer's and the billing account's external id.
    pub external_id: String,
    pub customer_id: String,
    /// `individual` or `organization`.
    pub party_type: String,
    pub name: String,
    pub status: String,
    /// The customer's document (what the API shows) as JSON text, stored as it is.
    pub customer_doc_json: String,
    pub account: BillingAccountRow,
}

/// A customer found by external id, with its billing account of the same external id (if
/// it has one) and that account's parent's external id.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalAccount {
    pub external_id: String,
    pub customer: CustomerRow,
    pub account: Option<BillingAccountRow>,
    pub parent_external_id: Option<String>,
}

const RUN_COLUMNS: &str = "id, kind, file_name, file_sha256, file_bytes, mapping_sha256, state, rows_done, next_offset,
     rejects_bytes, imported, duplicates, rejected, actor, started_at_ms, finished_at_ms";

fn run(row: &Row) -> Result<ImportRun> {
    let state = row.text("state")?;
    Ok(ImportRun {
        id: row.text("id")?,
        kind: ImportKind::parse(row, &row.text("kind")?)?,
        file_name: row.text("file_name")?,
        file_sha256: row.text("file_sha256")?,
        file_bytes: row.int("file_bytes")?,
        mapping_sha256: row.text("mapping_sha256")?,
        complete: match state.as_str() {
            "running" => false,
            "complete" => true,
            other => return Err(row.corrupt("state", format!("unknown import state {other:?}"))),
        },
        rows_done: row.int("rows_done")?,
        next_offset: row.int("next_offset")?,
        rejects_bytes: row.int("rejects_bytes")?,
        imported: row.int("imported")?,
        duplicates: row.int("duplicates")?,
        rejected: row.int("rejected")?,
        actor: row.text("actor")?,
        started_at: row.timestamp("started_at_ms")?,
        finished_at: row.opt_timestamp("finished_at_ms")?,
    })
}

fn state(run: &ImportRun) -> &'static str {
    if run.complete {
        "complete"
    } else {
        "running"
    }
}

impl Tx {
    /// The run of this file through this mapping, if one was started.
    pub async fn import_run(
        &mut self,
        kind: ImportKind,
        file_sha256: &str,
        mapping_sha256: &str,
    ) -> Result<Option<ImportRun>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM import_runs WHERE kind = $1 AND file_sha256 = $2 AND mapping_sha256 = $3{}",
            self.dialect().lock_rows()
        );
        let row = self.fetch_optional("import.run", &sql, args![kind.as_str(), file_sha256, mapping_sha256]).await?;
        row.as_ref().map(run).transpose()
    }

    /// Records a new run; `Conflict` if this file was already started through this mapping.
    pub async fn insert_import_run(&mut self, new: &ImportRun, now: Timestamp) -> Result<()> {
        let inserted = self
            .execute(
                "import.start",
                "INSERT INTO import_runs (id, kind, file_name, file_sha256, file_bytes, mapping_sha256, state, rows_done,
                     next_offset, rejects_bytes, imported, duplicates, rejected, actor, started_at_ms, updated_at_ms,
                     finished_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
                 ON CONFLICT (kind, file_sha256, mapping_sha256) DO NOTHING",
                args![
                    new.id.as_str(),
                    new.kind.as_str(),
                    new.file_name.as_str(),
                    new.file_sha256.as_str(),
                    new.file_bytes,
                    new.mapping_sha256.as_str(),
                    state(new),
                    new.rows_done,
                    new.next_offset,
                    new.rejects_bytes,
                    new.imported,
                    new.duplicates,
                    new.rejected,
                    new.actor.as_str(),
                    to_ms(new.started_at),
                    to_ms(now),
                    new.finished_at.map(to_ms)
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict {
                what: "import run",
                key: format!("{} {}", new.kind.as_str(), new.file_sha256),
            });
        }
        Ok(())
    }

    /// Saves a run's checkpoint, provided nobody else moved it on since it stood at
    /// `rows_done_before` (two imports of one file at once: the second is refused with
    /// `StaleVersion`, its batch rolled back with it).
    pub async fn save_import_run(&mut self, run: &ImportRun, rows_done_before: i64, now: Timestamp) -> Result<()> {
        let changed = self
            .execute(
                "import.checkpoint",
                "UPDATE import_runs SET state = $3, rows_done = $4, next_offset = $5, rejects_bytes = $6,
                     imported = $7, duplicates = $8, rejected = $9, updated_at_ms = $10, finished_at_ms = $11
                 WHERE id = $1 AND rows_done = $2",
                args![
                    run.id.as_str(),
                    rows_done_before,
                    state(run),
                    run.rows_done,
                    run.next_offset,
                    run.rejects_bytes,
                    run.imported,
                    run.duplicates,
                    run.rejected,
                    to_ms(now),
                    run.finished_at.map(to_ms)
                ],
            )
            .await?;
        if changed == 0 {
            let found = self
                .fetch_optional(
                    "import.checkpoint",
                    "SELECT rows_done FROM import_runs WHERE id = $1",
                    args![run.id.as_str()],
                )
                .await?;
            return Err(match found {
                None => StoreError::NotFound { entity: "import run", id: run.id.clone() },
                Some(row) => StoreError::StaleVersion {
                    entity: "import run",
                    id: run.id.clone(),
                    expected: rows_done_before,
                    found: row.int("rows_done")?,
                },
            });
        }
        Ok(())
    }

    /// Inserts imported customers and their billing accounts at version 1, a chunk of rows
    /// per statement; returns the accounts' engine account ids in the order given. The
    /// accounts' parents must be inserted already, or come earlier in `rows`.
    pub async fn insert_imported_accounts(&mut self, rows: &[ImportedAccount], now: Timestamp) -> Result<Vec<u64>> {
        let now = to_ms(now);
        let mut customers = Vec::with_capacity(rows.len() * 9);
        for row in rows {
            customers.extend(args![
                row.customer_id.as_str(),
                row.external_id.as_str(),
                row.party_type.as_str(),
                row.name.as_str(),
                row.status.as_str(),
                row.customer_doc_json.as_str(),
                1,
                now,
                now
            ]);
        }
        insert_many(
            self,
            "import.customers",
            "INSERT INTO customers (id, external_id, party_type, name, status, doc_json, version, created_at_ms,
                 updated_at_ms)",
            9,
            customers,
            "",
        )
        .await?;
        let mut accounts = Vec::with_capacity(rows.len() * 17);
        for row in rows {
            let account = &row.account;
            accounts.extend(args![
                account.id.as_str(),
                row.external_id.as_str(),
                account.customer_id.as_str(),
                account.parent_id.as_deref(),
                account.root_id.as_str(),
                account.depth,
                account.name.as_str(),
                account.account_type.as_str(),
                account.state.as_str(),
                account.currency.as_str(),
                account.bill_cycle_day,
                account.payment_terms_days,
                account.tax_profile_id.as_deref(),
                account.credit_limit,
                1,
                now,
                now
            ]);
        }
        let returned = insert_many(
            self,
            "import.billing_accounts",
            "INSERT INTO billing_accounts (id, external_id, customer_id, parent_id, root_id, depth, name, account_type,
                 state, currency, bill_cycle_day, payment_terms_days, tax_profile_id, credit_limit, version,
                 created_at_ms, updated_at_ms)",
            17,
            accounts,
            "RETURNING id, seq",
        )
        .await?;
        let mut seqs = HashMap::with_capacity(returned.len());
        for row in &returned {
            seqs.insert(row.text("id")?, row.int("seq")?);
        }
        rows.iter()
            .map(|row| {
                seqs.get(&row.account.id).map(|seq| engine_id(*seq)).ok_or_else(|| StoreError::Invalid {
                    field: "id",
                    reason: format!("billing account {} was given twice", row.account.id),
                })
            })
            .collect()
    }

    /// The customers with these external ids, each with its billing account of the same
    /// external id and that account's parent's external id (as many as are found).
    pub async fn accounts_by_external_id(&mut self, external_ids: &[&str]) -> Result<Vec<ExternalAccount>> {
        let rows = select_in(
            self,
            "import.accounts_by_external_id",
            "SELECT c.external_id AS external_id, c.id AS customer_id, c.party_type, c.name AS customer_name,
                    c.status, c.doc_json, c.anonymised_at_ms,
                    a.seq, a.id, a.parent_id, a.root_id, a.depth, a.name, a.account_type, a.state, a.currency,
                    a.bill_cycle_day, a.payment_terms_days, a.tax_profile_id, a.credit_limit,
                    p.external_id AS parent_external_id
             FROM customers c
             LEFT JOIN billing_accounts a ON a.customer_id = c.id AND a.external_id = c.external_id
             LEFT JOIN billing_accounts p ON p.id = a.parent_id
             WHERE c.external_id IN (#)",
            external_ids,
        )
        .await?;
        rows.iter()
            .map(|row| {
                let doc = row.text("doc_json")?;
                let customer = CustomerRow {
                    id: row.text("customer_id")?,
                    party_type: row.text("party_type")?,
                    name: row.text("customer_name")?,
                    status: row.text("status")?,
                    doc: parse_json(row, "doc_json", &doc)?,
                    anonymised_at: row.opt_timestamp("anonymised_at_ms")?,
                };
                let account = match row.opt_int("seq")? {
                    None => None,
                    Some(seq) => Some(account_row(row, seq, &customer.id)?),
                };
                Ok(ExternalAccount {
                    external_id: row.text("external_id")?,
                    customer,
                    account,
                    parent_external_id: row.opt_text("parent_external_id")?,
                })
            })
            .collect()
    }

    /// The billing accounts with these external ids, by external id (as many as are
    /// found).
    pub async fn billing_accounts_by_external_id(
        &mut self,
        external_ids: &[&str],
    ) -> Result<HashMap<String, BillingAccountRow>> {
        let rows = select_in(
            self,
            "import.billing_accounts_by_external_id",
            "SELECT external_id, seq, id, customer_id, parent_id, root_id, depth, name, account_type, state, currency,
                    bill_cycle_day, payment_terms_days, tax_profile_id, credit_limit
             FROM billing_accounts WHERE external_id IN (#)",
            external_ids,
        )
        .await?;
        rows.iter()
            .map(|row| {
                let account = account_row(row, row.int("seq")?, &row.text("customer_id")?)?;
                Ok((row.text("external_id")?, account))
            })
            .collect()
    }
}

fn account_row(row: &Row, seq: i64, customer_id: &str) -> Result<BillingAccountRow> {
    Ok(BillingAccountRow {
        id: row.text("id")?,
        engine_account_id: engine_id(seq),
        customer_id: customer_id.to_owned(),
        parent_id: row.opt_text("parent_id")?,
        root_id: row.text("root_id")?,
        depth: row.int("depth")?,
        name: row.text("name")?,
        account_type: row.text("account_type")?,
        state: row.text("state")?,
        currency: row.text("currency")?,
        bill_cycle_day: row.int("bill_cycle_day")?,
        payment_terms_days: row.int("payment_terms_days")?,
        tax_profile_id: row.opt_text("tax_profile_id")?,
        credit_limit: row.money("credit_limit")?,
    })
}

impl Store {
    /// Every import run, newest first, at most 1000.
    pub async fn import_runs(&self) -> Result<Vec<ImportRun>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "import.runs",
                &format!("SELECT {RUN_COLUMNS} FROM import_runs ORDER BY seq DESC LIMIT 1000"),
                vec![],
            )
            .await?;
        rows.iter().map(run).collect()
    }
}

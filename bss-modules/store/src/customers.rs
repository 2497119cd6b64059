//! Customers (TMF629) and billing accounts (TMF666) as rows. A customer is a party
//! (individual or organisation) with its name, status and a JSON document holding the rest
//! of its (minimal) personal data: contact media and consent flags with their instants. A
//! billing account belongs to one customer and may have a parent (a corporate hierarchy):
//! each row carries its hierarchy's `root_id` and its `depth`, so a hierarchy is one
//! indexed equality; [`Tx::move_billing_account`] moves a subtree and keeps both right
//! (the caller checks it makes no cycle). Its credit limit is money
//! (`NUMERIC` / canonical decimal text), and its engine account id is derived from the
//! row's `seq` ([`ENGINE_ACCOUNT_BASE`] + seq): assigned once, never reused.
//!
//! The rules (what is valid, who may see what, what the engine is told) live in
//! `tollgate-customers`; this module stores and reads what it decided.

use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::codec::{json_text, parse_json, to_ms};
use crate::error::{Result, StoreError};
use crate::sql::{args, Arg, Row};
use crate::versioned::{delete_versioned, update_versioned, Version, Versioned};
use crate::{Store, Tx};

/// Rows a list returns at most, whatever the caller asks.
pub const CUSTOMER_PAGE_MAX: u32 = 1000;

/// The engine account id of the billing account with `seq` 1 is this plus one: far above
/// the ids the CLI and the demo provision by hand.
pub const ENGINE_ACCOUNT_BASE: u64 = 1_000_000_000_000;

/// A customer as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    pub id: String,
    /// `individual` or `organization`.
    pub party_type: String,
    pub name: String,
    pub status: String,
    /// The document the API shows (contact media, consent, …).
    pub doc: serde_json::Value,
    /// When its personal data was anonymised, if it was.
    pub anonymised_at: Option<Timestamp>,
}

/// A billing account as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingAccountRow {
    pub id: String,
    /// Assigned by the store on insert (ignored there); see [`ENGINE_ACCOUNT_BASE`].
    pub engine_account_id: u64,
    pub customer_id: String,
    pub parent_id: Option<String>,
    /// The top of its hierarchy (itself when it has no parent).
    pub root_id: String,
    /// 0 at the top of a hierarchy.
    pub depth: i64,
    pub name: String,
    /// `prepaid`, `postpaid` or `hybrid`.
    pub account_type: String,
    pub state: String,
    pub currency: String,
    pub bill_cycle_day: i64,
    pub payment_terms_days: i64,
    pub tax_profile_id: Option<String>,
    pub credit_limit: Decimal,
}

/// What a customer list may be narrowed by (equality on each given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    pub name: Option<String>,
    pub status: Option<String>,
    pub party_type: Option<String>,
    /// Only customers owning an account in the hierarchy under this root.
    pub root_id: Option<String>,
}

/// What a billing account list may be narrowed by (equality on each given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillingAccountFilter {
    pub name: Option<String>,
    pub state: Option<String>,
    pub currency: Option<String>,
    pub customer_id: Option<String>,
    pub parent_id: Option<String>,
    pub root_id: Option<String>,
}

/// One page of a list and how many rows match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<Versioned<T>>,
    pub total: i64,
}

const CUSTOMER_COLUMNS: &str = "id, party_type, name, status, doc_json, anonymised_at_ms, version";
const ACCOUNT_COLUMNS: &str = "seq, id, customer_id, parent_id, root_id, depth, name, account_type, state, currency,
     bill_cycle_day, payment_terms_days, tax_profile_id, credit_limit, version";

pub(crate) fn version_of(row: &Row) -> Result<Version> {
    let version = row.int("version")?;
    Version::new(version).ok_or_else(|| row.corrupt("version", format!("{version} is below 1")))
}

/// The condition that customer `c` is in the hierarchy under the root `placeholder`
/// names: it owns a billing account there, or owns none and a partner of that hierarchy
/// created it.
fn in_hierarchy(placeholder: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM billing_accounts a WHERE a.customer_id = c.id AND a.root_id = {placeholder}) \
         OR (c.partner_root_id = {placeholder} \
             AND NOT EXISTS (SELECT 1 FROM billing_accounts o WHERE o.customer_id = c.id)))"
    )
}

fn customer(row: &Row) -> Result<Versioned<CustomerRow>> {
    let doc = row.text("doc_json")?;
    Ok(Versioned {
        value: CustomerRow {
            id: row.text("id")?,
            party_type: row.text("party_type")?,
            name: row.text("name")?,
            status: row.text("status")?,
            doc: parse_json(row, "doc_json", &doc)?,
            anonymised_at: row.opt_timestamp("anonymised_at_ms")?,
        },
        version: version_of(row)?,
    })
}

pub(crate) fn engine_id(seq: i64) -> u64 {
    ENGINE_ACCOUNT_BASE + seq.unsigned_abs()
}

fn account(row: &Row) -> Result<Versioned<BillingAccountRow>> {
    Ok(Versioned {
        value: BillingAccountRow {
            id: row.text("id")?,
            engine_account_id: engine_id(row.int("seq")?),
            customer_id: row.text("customer_id")?,
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
        },
        version: version_of(row)?,
    })
}

pub(crate) fn offset_arg(offset: u64) -> Result<i64> {
    i64::try_from(offset).map_err(|_| StoreError::Invalid { field: "offset", reason: format!("{offset} is too large") })
}

/// `conditions` and `values` with `column = $n` for each given filter value.
pub(crate) fn equalities(columns: &[(&str, &Option<String>)], conditions: &mut Vec<String>, values: &mut Vec<Arg>) {
    for (column, value) in columns {
        if let Some(value) = value {
            values.push(Arg::from(value.as_str()));
            conditions.push(format!("{column} = ${}", values.len()));
        }
    }
}

impl Tx {
    /// Inserts a new customer at [`Version::FIRST`]; `Conflict` if the id is taken.
    pub async fn insert_customer(&mut self, new: &CustomerRow, now: Timestamp) -> Result<Version> {
        let doc = json_text("doc", &new.doc)?;
        let inserted = self
            .execute(
                "customers.insert",
                "INSERT INTO customers (id, party_type, name, status, doc_json, anonymised_at_ms, version,
                     created_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)
                 ON CONFLICT (id) DO NOTHING",
                args![
                    new.id.as_str(),
                    new.party_type.as_str(),
                    new.name.as_str(),
                    new.status.as_str(),
                    doc,
                    new.anonymised_at.map(to_ms),
                    to_ms(now)
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { what: "customer", key: new.id.clone() });
        }
        Ok(Version::FIRST)
    }

    /// Replaces a customer still at `expected`; the new version, or `NotFound` /
    /// `StaleVersion`.
    pub async fn update_customer(&mut self, row: &CustomerRow, expected: Version, now: Timestamp) -> Result<Version> {
        let doc = json_text("doc", &row.doc)?;
        update_versioned(
            self,
            "customer",
            "customers",
            &row.id,
            expected,
            "party_type = $3, name = $4, status = $5, doc_json = $6, anonymised_at_ms = $7, updated_at_ms = $8",
            args![
                row.party_type.as_str(),
                row.name.as_str(),
                row.status.as_str(),
                doc,
                row.anonymised_at.map(to_ms),
                to_ms(now)
            ],
        )
        .await
    }

    /// Deletes a customer still at `expected`; `Conflict` while it owns an account.
    pub async fn delete_customer(&mut self, id: &str, expected: Version) -> Result<()> {
        let owned = self
            .fetch_one(
                "customers.delete",
                "SELECT COUNT(*) AS n FROM billing_accounts WHERE customer_id = $1",
                args![id],
            )
            .await?
            .int("n")?;
        if owned > 0 {
            return Err(StoreError::Conflict {
                what: "customer",
                key: format!("{id} (owns {owned} billing accounts)"),
            });
        }
        delete_versioned(self, "customer", "customers", id, expected).await
    }

    /// A customer read in this transaction (locked until it ends on PostgreSQL).
    pub async fn customer(&mut self, id: &str) -> Result<Option<Versioned<CustomerRow>>> {
        let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1{}", self.dialect().lock_rows());
        self.fetch_optional("customers.get", &sql, args![id]).await?.as_ref().map(customer).transpose()
    }

    /// Inserts a new billing account at [`Version::FIRST`]; returns the row as stored
    /// (with its engine account id). `Conflict` if the id is taken.
    pub async fn insert_billing_account(
        &mut self,
        new: &BillingAccountRow,
        now: Timestamp,
    ) -> Result<Versioned<BillingAccountRow>> {
        let row = self
            .fetch_optional(
                "billing_accounts.insert",
                &format!(
                    "INSERT INTO billing_accounts (id, customer_id, parent_id, root_id, depth, name, account_type, state,
                         currency, bill_cycle_day, payment_terms_days, tax_profile_id, credit_limit, version,
                         created_at_ms, updated_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $14)
                     ON CONFLICT (id) DO NOTHING
                     RETURNING {ACCOUNT_COLUMNS}"
                ),
                args![
                    new.id.as_str(),
                    new.customer_id.as_str(),
                    new.parent_id.clone(),
                    new.root_id.as_str(),
                    new.depth,
                    new.name.as_str(),
                    new.account_type.as_str(),
                    new.state.as_str(),
                    new.currency.as_str(),
                    new.bill_cycle_day,
                    new.payment_terms_days,
                    new.tax_profile_id.clone(),
                    new.credit_limit,
                    to_ms(now)
                ],
            )
            .await?;
        match row {
            Some(row) => account(&row),
            None => Err(StoreError::Conflict { what: "billing account", key: new.id.clone() }),
        }
    }

    /// Replaces a billing account still at `expected`. Its customer, parent, root, depth
    /// and currency are kept as they are (they never change).
    pub async fn update_billing_account(
        &mut self,
        row: &BillingAccountRow,
        expected: Version,
        now: Timestamp,
    ) -> Result<Version> {
        update_versioned(
            self,
            "billing account",
            "billing_accounts",
            &row.id,
            expected,
            "name = $3, account_type = $4, state = $5, bill_cycle_day = $6, payment_terms_days = $7,
             tax_profile_id = $8, credit_limit = $9, updated_at_ms = $10",
            args![
                row.name.as_str(),
                row.account_type.as_str(),
                row.state.as_str(),
                row.bill_cycle_day,
                row.payment_terms_days,
                row.tax_profile_id.clone(),
                row.credit_limit,
                to_ms(now)
            ],
        )
        .await
    }

    /// The accounts below `id` in its hierarchy (children, their children, …): (id, depth),
    /// found among the accounts of `root_id` deeper than `depth`.
    pub async fn billing_account_descendants(
        &mut self,
        id: &str,
        root_id: &str,
        depth: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = self
            .fetch_all(
                "billing_accounts.descendants",
                "SELECT id, parent_id, depth FROM billing_accounts WHERE root_id = $1 AND depth > $2 ORDER BY depth, seq",
                args![root_id, depth],
            )
            .await?;
        let mut below: Vec<(String, i64)> = Vec::new();
        for row in &rows {
            let parent = row.opt_text("parent_id")?;
            let under =
                parent.as_deref() == Some(id) || below.iter().any(|(seen, _)| Some(seen.as_str()) == parent.as_deref());
            if under {
                below.push((row.text("id")?, row.int("depth")?));
            }
        }
        Ok(below)
    }

    /// Moves billing account `id` under `parent_id` (to the top of its own hierarchy when
    /// `None`) at `depth` in the hierarchy of `root_id`, and its descendants with it. The
    /// caller has checked that this makes no cycle; the account's version is bumped by
    /// the update that goes with the move, its descendants' documents do not change.
    pub async fn move_billing_account(
        &mut self,
        id: &str,
        parent_id: Option<&str>,
        root_id: &str,
        depth: i64,
    ) -> Result<()> {
        let Some(current) = self.billing_account(id).await? else {
            return Err(StoreError::NotFound { entity: "billing account", id: id.to_owned() });
        };
        let below = self.billing_account_descendants(id, &current.value.root_id, current.value.depth).await?;
        self.execute(
            "billing_accounts.move",
            "UPDATE billing_accounts SET parent_id = $2, root_id = $3, depth = $4 WHERE id = $1",
            args![id, parent_id, root_id, depth],
        )
        .await?;
        let shift = depth - current.value.depth;
        for (child, child_depth) in below {
            self.execute(
                "billing_accounts.move",
                "UPDATE billing_accounts SET root_id = $2, depth = $3 WHERE id = $1",
                args![child.as_str(), root_id, child_depth + shift],
            )
            .await?;
        }
        Ok(())
    }

    /// A billing account read in this transaction (locked until it ends on PostgreSQL).
    pub async fn billing_account(&mut self, id: &str) -> Result<Option<Versioned<BillingAccountRow>>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM billing_accounts WHERE id = $1{}", self.dialect().lock_rows());
        self.fetch_optional("billing_accounts.get", &sql, args![id]).await?.as_ref().map(account).transpose()
    }

    /// A customer's billing accounts, in creation order, at most a page.
    pub async fn billing_accounts_of(&mut self, customer_id: &str) -> Result<Vec<Versioned<BillingAccountRow>>> {
        let rows = self
            .fetch_all(
                "billing_accounts.of_customer",
                &format!("SELECT {ACCOUNT_COLUMNS} FROM billing_accounts WHERE customer_id = $1 ORDER BY seq LIMIT $2"),
                args![customer_id, i64::from(CUSTOMER_PAGE_MAX)],
            )
            .await?;
        rows.iter().map(account).collect()
    }

    /// Whether the customer owns an account in the hierarchy under `root_id`.
    pub async fn customer_in_hierarchy(&mut self, customer_id: &str, root_id: &str) -> Result<bool> {
        let sql = format!("SELECT COUNT(*) AS n FROM customers c WHERE c.id = $1 AND {}", in_hierarchy("$2"));
        let row = self.fetch_one("customers.in_hierarchy", &sql, args![customer_id, root_id]).await?;
        Ok(row.int("n")? > 0)
    }

    /// Records that a partner of the hierarchy under `root_id` created customer `id`: it
    /// is that partner's while it owns no billing account.
    pub async fn set_customer_partner_root(&mut self, id: &str, root_id: &str) -> Result<()> {
        self.execute(
            "customers.partner_root",
            "UPDATE customers SET partner_root_id = $1 WHERE id = $2",
            args![root_id, id],
        )
        .await?;
        Ok(())
    }
}

impl Store {
    /// A customer.
    pub async fn customer(&self, id: &str) -> Result<Option<Versioned<CustomerRow>>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1");
        tx.fetch_optional("customers.get", &sql, args![id]).await?.as_ref().map(customer).transpose()
    }

    /// A billing account.
    pub async fn billing_account(&self, id: &str) -> Result<Option<Versioned<BillingAccountRow>>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM billing_accounts WHERE id = $1");
        tx.fetch_optional("billing_accounts.get", &sql, args![id]).await?.as_ref().map(account).transpose()
    }

    /// Whether the customer owns an account in the hierarchy under `root_id`.
    pub async fn customer_in_hierarchy(&self, customer_id: &str, root_id: &str) -> Result<bool> {
        let mut tx = self.read().await?;
        tx.customer_in_hierarchy(customer_id, root_id).await
    }

    /// Customers matching `filter`, in creation order: `limit` (at most
    /// [`CUSTOMER_PAGE_MAX`]) from `offset`, and the number matching in all.
    pub async fn customer_list(&self, filter: &CustomerFilter, offset: u64, limit: u32) -> Result<Page<CustomerRow>> {
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut values = Vec::new();
        equalities(
            &[("c.name", &filter.name), ("c.status", &filter.status), ("c.party_type", &filter.party_type)],
            &mut conditions,
            &mut values,
        );
        if let Some(root) = &filter.root_id {
            values.push(Arg::from(root.as_str()));
            conditions.push(in_hierarchy(&format!("${}", values.len())));
        }
        let condition = conditions.join(" AND ");
        let columns = CUSTOMER_COLUMNS.split(", ").map(|column| format!("c.{column}")).collect::<Vec<_>>().join(", ");
        self.page("customers", &format!("customers c WHERE {condition}"), &columns, values, offset, limit, customer)
            .await
    }

    /// Billing accounts matching `filter`, in creation order: `limit` (at most
    /// [`CUSTOMER_PAGE_MAX`]) from `offset`, and the number matching in all.
    pub async fn billing_account_list(
        &self,
        filter: &BillingAccountFilter,
        offset: u64,
        limit: u32,
    ) -> Result<Page<BillingAccountRow>> {
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut values = Vec::new();
        equalities(
            &[
                ("name", &filter.name),
                ("state", &filter.state),
                ("currency", &filter.currency),
                ("customer_id", &filter.customer_id),
                ("parent_id", &filter.parent_id),
                ("root_id", &filter.root_id),
            ],
            &mut conditions,
            &mut values,
        );
        let condition = conditions.join(" AND ");
        self.page(
            "billing_accounts",
            &format!("billing_accounts WHERE {condition}"),
            ACCOUNT_COLUMNS,
            values,
            offset,
            limit,
            account,
        )
        .await
    }

    #[allow(clippy::too_many_arguments, reason = "one page query's parts")]
    pub(crate) async fn page<T>(
        &self,
        operation: &'static str,
        from_where: &str,
        columns: &str,
        values: Vec<Arg>,
        offset: u64,
        limit: u32,
        decode: fn(&Row) -> Result<Versioned<T>>,
    ) -> Result<Page<T>> {
        self.page_by(operation, from_where, columns, "seq", values, offset, limit, decode).await
    }

    /// [`Store::page`] in the order of `order_by` (a column with a unique index).
    #[allow(clippy::too_many_arguments, reason = "one page query's parts")]
    pub(crate) async fn page_by<T>(
        &self,
        operation: &'static str,
        from_where: &str,
        columns: &str,
        order_by: &str,
        values: Vec<Arg>,
        offset: u64,
        limit: u32,
        decode: fn(&Row) -> Result<Versioned<T>>,
    ) -> Result<Page<T>> {
        let offset = offset_arg(offset)?;
        let mut tx = self.read().await?;
        let total = tx
            .fetch_one(operation, &format!("SELECT COUNT(*) AS n FROM {from_where}"), values.clone())
            .await?
            .int("n")?;
        let mut page_args = values;
        page_args.push(Arg::from(i64::from(limit.min(CUSTOMER_PAGE_MAX))));
        page_args.push(Arg::from(offset));
        let count = page_args.len();
        let sql =
            format!("SELECT {columns} FROM {from_where} ORDER BY {order_by} LIMIT ${} OFFSET ${count}", count - 1);
        let rows = tx.fetch_all(operation, &sql, page_args).await?;
        let items = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(Page { items, total })
    }
}

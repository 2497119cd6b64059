//! Discounts and credits of billing accounts (migration 15): a [`DiscountRow`] takes a
//! percentage or a fixed amount per cycle off one product's, one account's or a whole
//! hierarchy's charges over its days of validity; a [`CreditRow`] is an amount owed to an
//! account, taken off its invoices until used up ([`Tx::use_credit`], in the transaction
//! that writes the invoice that took it).
//!
//! The rules (proration, order, never below zero) are `tollgate-billing`'s; this module
//! stores and reads them.

use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::bulk::select_in;
use crate::codec::to_ms;
use crate::customers::version_of;
use crate::error::{Result, StoreError};
use crate::sql::{args, Row};
use crate::versioned::update_versioned;
use crate::{Store, Tx, Version, Versioned};

/// Discounts, and credits, one billing account may have.
pub const MAX_DISCOUNTS_PER_ACCOUNT: usize = 1_000;

/// A discount of a billing account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscountRow {
    pub id: String,
    /// The account it is listed under (a hierarchy discount: the hierarchy's root).
    pub billing_account_id: String,
    /// `product`, `account` or `hierarchy`.
    pub scope: String,
    /// The product of a `product` discount.
    pub product_id: Option<String>,
    /// A percentage (10 for 10 %) …
    pub percent: Option<Decimal>,
    /// … or a fixed amount per cycle in its currency.
    pub amount: Option<(Decimal, String)>,
    pub description: String,
    pub charge_type: String,
    /// The first day it is valid on, `YYYY-MM-DD` in the operator's zone.
    pub valid_from: String,
    /// The day it ends (excluded); `None`: no end.
    pub valid_until: Option<String>,
    pub created_at: Timestamp,
}

/// A credit of a billing account and how much of it invoices took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditRow {
    pub id: String,
    pub billing_account_id: String,
    pub amount: Decimal,
    pub currency: String,
    pub description: String,
    pub charge_type: String,
    pub used: Decimal,
    pub created_at: Timestamp,
}

const DISCOUNT_COLUMNS: &str = "id, billing_account_id, scope, product_id, percent, amount, currency, description,
     charge_type, valid_from, valid_until, created_at_ms";
const CREDIT_COLUMNS: &str = "id, billing_account_id, amount, currency, description, charge_type, used, created_at_ms";

fn discount(row: &Row) -> Result<DiscountRow> {
    let amount = match (row.opt_money("amount")?, row.opt_text("currency")?) {
        (Some(amount), Some(currency)) => Some((amount, currency)),
        _ => None,
    };
    Ok(DiscountRow {
        id: row.text("id")?,
        billing_account_id: row.text("billing_account_id")?,
        scope: row.text("scope")?,
        product_id: row.opt_text("product_id")?,
        percent: row.opt_money("percent")?,
        amount,
        description: row.text("description")?,
        charge_type: row.text("charge_type")?,
        valid_from: row.text("valid_from")?,
        valid_until: row.opt_text("valid_until")?,
        created_at: row.timestamp("created_at_ms")?,
    })
}

fn credit(row: &Row) -> Result<CreditRow> {
    Ok(CreditRow {
        id: row.text("id")?,
        billing_account_id: row.text("billing_account_id")?,
        amount: row.money("amount")?,
        currency: row.text("currency")?,
        description: row.text("description")?,
        charge_type: row.text("charge_type")?,
        used: row.money("used")?,
        created_at: row.timestamp("created_at_ms")?,
    })
}

impl Tx {
    /// Records a discount; `Conflict` if the id is taken, `Invalid` past
    /// [`MAX_DISCOUNTS_PER_ACCOUNT`].
    pub async fn insert_discount(&mut self, new: &DiscountRow) -> Result<()> {
        self.check_room("discounts", &new.billing_account_id).await?;
        let (amount, currency) = new.amount.clone().unzip();
        let changed = self
            .execute(
                "discounts.insert",
                "INSERT INTO discounts (id, billing_account_id, scope, product_id, percent, amount, currency,
                     description, charge_type, valid_from, valid_until, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (id) DO NOTHING",
                args![
                    new.id.as_str(),
                    new.billing_account_id.as_str(),
                    new.scope.as_str(),
                    new.product_id.clone(),
                    new.percent,
                    amount,
                    currency,
                    new.description.as_str(),
                    new.charge_type.as_str(),
                    new.valid_from.as_str(),
                    new.valid_until.clone(),
                    to_ms(new.created_at)
                ],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Conflict { what: "discount", key: new.id.clone() });
        }
        Ok(())
    }

    /// Records a credit (its `used` as given, normally zero); `Conflict` if the id is
    /// taken, `Invalid` past [`MAX_DISCOUNTS_PER_ACCOUNT`].
    pub async fn insert_credit(&mut self, new: &CreditRow) -> Result<()> {
        self.check_room("credits", &new.billing_account_id).await?;
        let changed = self
            .execute(
                "credits.insert",
                "INSERT INTO credits (id, billing_account_id, amount, currency, description, charge_type, used,
                     created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO NOTHING",
                args![
                    new.id.as_str(),
                    new.billing_account_id.as_str(),
                    new.amount,
                    new.currency.as_str(),
                    new.description.as_str(),
                    new.charge_type.as_str(),
                    new.used,
                    to_ms(new.created_at)
                ],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Conflict { what: "credit", key: new.id.clone() });
        }
        Ok(())
    }

    async fn check_room(&mut self, table: &'static str, account: &str) -> Result<()> {
        let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE billing_account_id = $1");
        let count = self.fetch_one("discounts.count", &sql, args![account]).await?.int("n")?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_DISCOUNTS_PER_ACCOUNT {
            return Err(StoreError::Invalid {
                field: "billing_account_id",
                reason: format!("billing account {account} has {count} {table}, the most allowed"),
            });
        }
        Ok(())
    }

    /// Adds `amount` to what invoices took of credit `id` (read locked and written back, so
    /// the sum stays exact in both dialects); refused beyond the credit's amount.
    pub async fn use_credit(&mut self, id: &str, amount: Decimal) -> Result<()> {
        let lock = self.dialect().lock_rows();
        let sql = format!("SELECT {CREDIT_COLUMNS} FROM credits WHERE id = $1{lock}");
        let Some(row) = self.fetch_optional("credits.get", &sql, args![id]).await? else {
            return Err(StoreError::NotFound { entity: "credit", id: id.to_owned() });
        };
        let found = credit(&row)?;
        let used = found.used + amount;
        if amount.is_sign_negative() || used > found.amount {
            return Err(StoreError::Invalid {
                field: "used",
                reason: format!("credit {id}: {used} used of {} {}", found.amount, found.currency),
            });
        }
        self.execute(
            "credits.use",
            "UPDATE credits SET used = $2, version = version + 1 WHERE id = $1",
            args![id, used],
        )
        .await?;
        Ok(())
    }

    /// Discount `id` as it stands, locked until the transaction ends.
    pub async fn discount_locked(&mut self, id: &str) -> Result<Option<Versioned<DiscountRow>>> {
        let lock = self.dialect().lock_rows();
        self.discount_with(id, lock).await
    }

    /// Credit `id` as it stands, locked until the transaction ends.
    pub async fn credit_locked(&mut self, id: &str) -> Result<Option<Versioned<CreditRow>>> {
        let lock = self.dialect().lock_rows();
        self.credit_with(id, lock).await
    }

    /// Discount `id` with its version, the `SELECT` ending with `lock`.
    async fn discount_with(&mut self, id: &str, lock: &str) -> Result<Option<Versioned<DiscountRow>>> {
        let sql = format!("SELECT {DISCOUNT_COLUMNS}, version FROM discounts WHERE id = $1{lock}");
        let row = self.fetch_optional("discounts.get", &sql, args![id]).await?;
        row.map(|row| Ok(Versioned { value: discount(&row)?, version: version_of(&row)? })).transpose()
    }

    /// Credit `id` with its version, the `SELECT` ending with `lock`.
    async fn credit_with(&mut self, id: &str, lock: &str) -> Result<Option<Versioned<CreditRow>>> {
        let sql = format!("SELECT {CREDIT_COLUMNS}, version FROM credits WHERE id = $1{lock}");
        let row = self.fetch_optional("credits.get", &sql, args![id]).await?;
        row.map(|row| Ok(Versioned { value: credit(&row)?, version: version_of(&row)? })).transpose()
    }

    /// Sets discount `id`'s end (`None`: no end) at version `expected`; its new version.
    pub async fn set_discount_until(&mut self, id: &str, expected: Version, until: Option<&str>) -> Result<Version> {
        update_versioned(self, "discount", "discounts", id, expected, "valid_until = $3", args![until]).await
    }

    /// Sets the amount of credit `found` (as [`Tx::credit_locked`] read it in this
    /// transaction) at version `expected`; refused (`Invalid` on `amount`) below what
    /// invoices used of it. Its new version.
    pub async fn set_credit_amount(
        &mut self,
        found: &CreditRow,
        expected: Version,
        amount: Decimal,
    ) -> Result<Version> {
        let id = found.id.as_str();
        if amount < found.used {
            return Err(StoreError::Invalid {
                field: "amount",
                reason: format!("credit {id}: invoices used {} {} of it already", found.used, found.currency),
            });
        }
        update_versioned(self, "credit", "credits", id, expected, "amount = $3", args![amount]).await
    }
}

impl Store {
    /// Discount `id`, with its version.
    pub async fn discount(&self, id: &str) -> Result<Option<Versioned<DiscountRow>>> {
        self.read().await?.discount_with(id, "").await
    }

    /// Credit `id`, with its version.
    pub async fn credit(&self, id: &str) -> Result<Option<Versioned<CreditRow>>> {
        self.read().await?.credit_with(id, "").await
    }

    /// The discounts of `accounts`, by account, oldest first.
    pub async fn discounts_of(&self, accounts: &[String]) -> Result<Vec<DiscountRow>> {
        let mut tx = self.read().await?;
        let keys: Vec<&str> = accounts.iter().map(String::as_str).collect();
        let sql = format!("SELECT seq, {DISCOUNT_COLUMNS} FROM discounts WHERE billing_account_id IN (#)");
        let rows = select_in(&mut tx, "discounts.of", &sql, &keys).await?;
        let mut out = rows.iter().map(|row| Ok((row.int("seq")?, discount(row)?))).collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| (&a.1.billing_account_id, a.0).cmp(&(&b.1.billing_account_id, b.0)));
        Ok(out.into_iter().map(|(_, row)| row).collect())
    }

    /// The credits of `accounts`, by account, oldest first (used up ones too).
    pub async fn credits_of(&self, accounts: &[String]) -> Result<Vec<CreditRow>> {
        let mut tx = self.read().await?;
        let keys: Vec<&str> = accounts.iter().map(String::as_str).collect();
        let sql = format!("SELECT seq, {CREDIT_COLUMNS} FROM credits WHERE billing_account_id IN (#)");
        let rows = select_in(&mut tx, "credits.of", &sql, &keys).await?;
        let mut out = rows.iter().map(|row| Ok((row.int("seq")?, credit(row)?))).collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| (&a.1.billing_account_id, a.0).cmp(&(&b.1.billing_account_id, b.0)));
        Ok(out.into_iter().map(|(_, row)| row).collect())
    }
}

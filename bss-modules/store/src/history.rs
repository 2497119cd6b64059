//! The product inventory's history (migration 0013): one [`ProductPeriod`] per stretch of
//! time a line or an add-on spent on one offering in one state, with what opened and what
//! closed it. The order workflow turns a product's open period into the next one in the
//! transaction that completes the order item ([`Tx::turn_product_periods`]); a new line,
//! an add-on and the bulk import open the first ([`Tx::insert_product_periods`]). The bill
//! run reads the periods with their prices (`Store::product_prices`).
//!
//! The rules (which change opens which period) live in `tollgate-orders`; this module
//! stores and reads what it decided.

use jiff::Timestamp;

use crate::bulk::insert_many;
use crate::codec::to_ms;
use crate::error::Result;
use crate::sql::{args, Arg, Row};
use crate::{Store, Tx};

/// Periods one product's history read returns at most.
pub const PERIOD_PAGE_MAX: u32 = 10_000;

/// A stretch of a product's life on one offering in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPeriod {
    /// The line's subscription id, or the add-on's id.
    pub product_id: String,
    /// The line (the product itself, or the add-on's line).
    pub subscription_id: String,
    pub offering_id: Option<String>,
    /// `active` or `suspended`.
    pub state: String,
    /// `newLine`, `addAddOn`, `changePlan`, `suspend`, `resume`, `import` or `backfill`.
    pub opened_by: String,
    /// The order that opened it (none for an import).
    pub order_id: Option<String>,
    pub from: Timestamp,
    /// Excluded; `None` while it lasts.
    pub until: Option<Timestamp>,
    /// `changePlan`, `suspend`, `resume`, `terminate` or `removeAddOn`; `None` while it lasts.
    pub closed_by: Option<String>,
}

/// The period that follows the ones a change closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextPeriod<'a> {
    /// The new offering (a plan change); `None` keeps each closed period's.
    pub offering_id: Option<&'a str>,
    /// `active` or `suspended`.
    pub state: &'a str,
    pub opened_by: &'a str,
    pub order_id: Option<&'a str>,
}

const PERIOD_COLUMNS: &str =
    "product_id, subscription_id, offering_id, state, opened_by, order_id, from_ms, until_ms, closed_by";

fn period(row: &Row) -> Result<ProductPeriod> {
    Ok(ProductPeriod {
        product_id: row.text("product_id")?,
        subscription_id: row.text("subscription_id")?,
        offering_id: row.opt_text("offering_id")?,
        state: row.text("state")?,
        opened_by: row.text("opened_by")?,
        order_id: row.opt_text("order_id")?,
        from: row.timestamp("from_ms")?,
        until: row.opt_timestamp("until_ms")?,
        closed_by: row.opt_text("closed_by")?,
    })
}

impl Tx {
    /// Records periods, in a few multi-row statements (a product's open period: `until`
    /// and `closed_by` `None`; `Conflict`-free only while it has no other open one).
    pub async fn insert_product_periods(&mut self, rows: &[ProductPeriod]) -> Result<()> {
        let mut values = Vec::with_capacity(rows.len() * 9);
        for row in rows {
            values.extend(args![
                row.product_id.as_str(),
                row.subscription_id.as_str(),
                row.offering_id.clone(),
                row.state.as_str(),
                row.opened_by.as_str(),
                row.order_id.clone(),
                to_ms(row.from),
                row.until.map(to_ms),
                row.closed_by.clone()
            ]);
        }
        insert_many(
            self,
            "product_periods.insert",
            &format!("INSERT INTO product_periods ({PERIOD_COLUMNS})"),
            9,
            values,
            "",
        )
        .await?;
        Ok(())
    }

    /// Whether product `product_id` has any period recorded.
    pub async fn has_product_periods(&mut self, product_id: &str) -> Result<bool> {
        let found = self
            .fetch_optional(
                "product_periods.any",
                "SELECT 1 AS found FROM product_periods WHERE product_id = $1 LIMIT 1",
                args![product_id],
            )
            .await?;
        Ok(found.is_some())
    }

    /// Ends at `at` the open periods of line `subscription_id`'s products (`product_id`:
    /// that product only; else the line and its add-ons), `closed_by` saying why, and opens
    /// after each the period `next` says (none when the products end). A period is never
    /// closed before it started: one opened after `at` is closed empty, at its start.
    /// Returns the periods closed.
    pub async fn turn_product_periods(
        &mut self,
        subscription_id: &str,
        product_id: Option<&str>,
        closed_by: &str,
        next: Option<&NextPeriod<'_>>,
        at: Timestamp,
    ) -> Result<Vec<ProductPeriod>> {
        let lock = self.dialect().lock_rows();
        let sql = format!(
            "SELECT {PERIOD_COLUMNS} FROM product_periods
             WHERE subscription_id = $1 AND ($2 IS NULL OR product_id = $2) AND until_ms IS NULL
             ORDER BY product_id{lock}"
        );
        let open = self.fetch_all("product_periods.open", &sql, args![subscription_id, product_id]).await?;
        let mut closed = open.iter().map(period).collect::<Result<Vec<_>>>()?;
        self.execute(
            "product_periods.close",
            "UPDATE product_periods SET until_ms = CASE WHEN from_ms > $3 THEN from_ms ELSE $3 END, closed_by = $4
             WHERE subscription_id = $1 AND ($2 IS NULL OR product_id = $2) AND until_ms IS NULL",
            args![subscription_id, product_id, to_ms(at), closed_by],
        )
        .await?;
        let mut following = Vec::with_capacity(closed.len());
        for old in &mut closed {
            old.until = Some(old.from.max(at));
            old.closed_by = Some(closed_by.to_owned());
            if let Some(next) = next {
                following.push(ProductPeriod {
                    product_id: old.product_id.clone(),
                    subscription_id: old.subscription_id.clone(),
                    offering_id: next.offering_id.map(str::to_owned).or_else(|| old.offering_id.clone()),
                    state: next.state.to_owned(),
                    opened_by: next.opened_by.to_owned(),
                    order_id: next.order_id.map(str::to_owned),
                    from: old.from.max(at),
                    until: None,
                    closed_by: None,
                });
            }
        }
        self.insert_product_periods(&following).await?;
        Ok(closed)
    }
}

impl Store {
    /// The periods of line `subscription_id` and its add-ons, oldest first (at most
    /// [`PERIOD_PAGE_MAX`]).
    pub async fn product_periods(&self, subscription_id: &str) -> Result<Vec<ProductPeriod>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {PERIOD_COLUMNS} FROM product_periods WHERE subscription_id = $1
             ORDER BY from_ms, seq LIMIT $2"
        );
        let args: Vec<Arg> = args![subscription_id, i64::from(PERIOD_PAGE_MAX)];
        let rows = tx.fetch_all("product_periods.of_line", &sql, args).await?;
        rows.iter().map(period).collect()
    }
}

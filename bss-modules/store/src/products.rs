//! The product and service inventories as rows. A line (TMF637 product) is a subscription
//! of `subscriptions.rs` with what an order adds: its TMF637 status while it is
//! provisioned or after it was cancelled (`product_status`; none: its `state` says),
//! its SIM card's ICCID, the order that created it, when it started and ended. An add-on is
//! a product of its own on a line (`subscription_addons`); a line's service (TMF638) is a
//! row of `services`. Lists are narrowed to a billing account hierarchy through the line's
//! billing account.
//!
//! The rules live in `tollgate-orders`; this module stores and reads what it decided.

use jiff::Timestamp;

use crate::codec::to_ms;
use crate::customers::{equalities, offset_arg, version_of, Page};
use crate::error::{Result, StoreError};
use crate::sql::{args, Arg, Row};
use crate::subscriptions::{engine_id as engine_subscription_id, SubscriptionRow};
use crate::versioned::{update_versioned, Version, Versioned};
use crate::{Store, Tx};

/// Products or services a list returns at most.
pub const PRODUCT_PAGE_MAX: u32 = 1000;

/// A line: a subscription with its order's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRow {
    pub subscription: SubscriptionRow,
    /// The TMF637 status when its `state` does not say it (`pendingActive`, `cancelled`, …).
    pub product_status: Option<String>,
    pub iccid: Option<String>,
    /// The order that created it.
    pub order_id: Option<String>,
    pub started_at: Option<Timestamp>,
    pub terminated_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl LineRow {
    /// Its TMF637 status.
    pub fn status(&self) -> &str {
        self.product_status.as_deref().unwrap_or(&self.subscription.state)
    }
}

/// An add-on product on a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOnRow {
    pub id: String,
    pub subscription_id: String,
    pub offering_id: String,
    /// `active` or `terminated`.
    pub status: String,
    pub order_id: String,
    pub created_at: Timestamp,
    pub terminated_at: Option<Timestamp>,
}

/// A line's service (TMF638).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRow {
    pub id: String,
    pub subscription_id: String,
    /// `reserved`, `active`, `inactive` or `terminated`.
    pub state: String,
    pub order_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One entry of the product inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductEntry {
    Line(Versioned<LineRow>),
    /// With the billing account of its line.
    AddOn(AddOnRow, String),
}

/// What a product or service list may be narrowed by (equality on each given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFilter {
    /// The TMF637 status (products) or TMF638 state (services).
    pub status: Option<String>,
    pub billing_account_id: Option<String>,
    pub root_id: Option<String>,
}

const LINE_COLUMNS: &str = "u.seq, u.id, u.external_id, u.billing_account_id, u.offering_id, u.plan_id, u.state,
     u.version, u.product_status, u.iccid, u.order_id, u.started_at_ms, u.terminated_at_ms, u.created_at_ms";
const ADDON_COLUMNS: &str =
    "a.id, a.subscription_id, a.offering_id, a.status, a.order_id, a.created_at_ms, a.terminated_at_ms";
const SERVICE_COLUMNS: &str = "s.seq, s.id, s.subscription_id, s.state, s.order_id, s.created_at_ms, s.updated_at_ms";

fn line(row: &Row) -> Result<Versioned<LineRow>> {
    Ok(Versioned {
        value: LineRow {
            subscription: SubscriptionRow {
                id: row.text("id")?,
                engine_subscription_id: engine_subscription_id(row.int("seq")?),
                external_id: row.opt_text("external_id")?,
                billing_account_id: row.text("billing_account_id")?,
                offering_id: row.opt_text("offering_id")?,
                plan_id: row.text("plan_id")?,
                state: row.text("state")?,
                identities: Vec::new(),
            },
            product_status: row.opt_text("product_status")?,
            iccid: row.opt_text("iccid")?,
            order_id: row.opt_text("order_id")?,
            started_at: row.opt_timestamp("started_at_ms")?,
            terminated_at: row.opt_timestamp("terminated_at_ms")?,
            created_at: row.timestamp("created_at_ms")?,
        },
        version: version_of(row)?,
    })
}

fn addon(row: &Row) -> Result<AddOnRow> {
    Ok(AddOnRow {
        id: row.text("id")?,
        subscription_id: row.text("subscription_id")?,
        offering_id: row.text("offering_id")?,
        status: row.text("status")?,
        order_id: row.text("order_id")?,
        created_at: row.timestamp("created_at_ms")?,
        terminated_at: row.opt_timestamp("terminated_at_ms")?,
    })
}

fn service(row: &Row) -> Result<Versioned<ServiceRow>> {
    Ok(Versioned {
        value: ServiceRow {
            id: row.text("id")?,
            subscription_id: row.text("subscription_id")?,
            state: row.text("state")?,
            order_id: row.text("order_id")?,
            created_at: row.timestamp("created_at_ms")?,
            updated_at: row.timestamp("updated_at_ms")?,
        },
        version: Version::FIRST,
    })
}

impl Tx {
    /// Inserts a line (its subscription row and identities, then its order's columns);
    /// returns its engine subscription id.
    pub async fn insert_line(&mut self, new: &LineRow, now: Timestamp) -> Result<u64> {
        let engine_ids = self.insert_subscriptions(std::slice::from_ref(&new.subscription), now).await?;
        self.execute(
            "lines.insert",
            "UPDATE subscriptions SET product_status = $2, iccid = $3, order_id = $4, started_at_ms = $5,
                 terminated_at_ms = $6
             WHERE id = $1",
            args![
                new.subscription.id.as_str(),
                new.product_status.clone(),
                new.iccid.clone(),
                new.order_id.clone(),
                new.started_at.map(to_ms),
                new.terminated_at.map(to_ms)
            ],
        )
        .await?;
        engine_ids.first().copied().ok_or(StoreError::Invalid { field: "id", reason: "no line inserted".into() })
    }

    /// A line with its identities, read in this transaction (locked until it ends on
    /// PostgreSQL).
    pub async fn line(&mut self, id: &str) -> Result<Option<Versioned<LineRow>>> {
        let lock = self.dialect().lock_rows();
        self.line_locked(id, lock).await
    }

    async fn line_locked(&mut self, id: &str, lock: &str) -> Result<Option<Versioned<LineRow>>> {
        let sql = format!("SELECT {LINE_COLUMNS} FROM subscriptions u WHERE u.id = $1{lock}");
        let Some(row) = self.fetch_optional("lines.get", &sql, args![id]).await? else { return Ok(None) };
        let mut found = line(&row)?;
        found.value.subscription.identities = self.identities_of(id).await?;
        Ok(Some(found))
    }

    /// Replaces a line's plan, offering, state, status, ICCID and dates still at
    /// `expected` (its identities change through the two methods below).
    pub async fn update_line(&mut self, row: &LineRow, expected: Version, now: Timestamp) -> Result<Version> {
        update_versioned(
            self,
            "subscription",
            "subscriptions",
            &row.subscription.id,
            expected,
            "plan_id = $3, offering_id = $4, state = $5, product_status = $6, iccid = $7, started_at_ms = $8,
             terminated_at_ms = $9, updated_at_ms = $10",
            args![
                row.subscription.plan_id.as_str(),
                row.subscription.offering_id.clone(),
                row.subscription.state.as_str(),
                row.product_status.clone(),
                row.iccid.clone(),
                row.started_at.map(to_ms),
                row.terminated_at.map(to_ms),
                to_ms(now)
            ],
        )
        .await
    }

    /// Replaces one of a line's identities (engine identity keys) by another.
    pub async fn replace_line_identity(&mut self, subscription_id: &str, old: &str, new: &str) -> Result<()> {
        let changed = self
            .execute(
                "lines.replace_identity",
                "UPDATE subscription_identities SET identity = $3 WHERE subscription_id = $1 AND identity = $2",
                args![subscription_id, old, new],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound { entity: "identity", id: format!("{subscription_id}/{old}") });
        }
        Ok(())
    }

    /// Frees a line's identities (terminated, or never created): another line may take them.
    pub async fn free_line_identities(&mut self, subscription_id: &str) -> Result<()> {
        self.execute(
            "lines.free_identities",
            "DELETE FROM subscription_identities WHERE subscription_id = $1",
            args![subscription_id],
        )
        .await?;
        Ok(())
    }

    /// Inserts an add-on; `Conflict` if the id is taken.
    pub async fn insert_addon(&mut self, new: &AddOnRow, now: Timestamp) -> Result<()> {
        let changed = self
            .execute(
                "addons.insert",
                "INSERT INTO subscription_addons (id, subscription_id, offering_id, status, order_id, created_at_ms,
                     updated_at_ms, terminated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
                 ON CONFLICT (id) DO NOTHING",
                args![
                    new.id.as_str(),
                    new.subscription_id.as_str(),
                    new.offering_id.as_str(),
                    new.status.as_str(),
                    new.order_id.as_str(),
                    to_ms(now),
                    new.terminated_at.map(to_ms)
                ],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Conflict { what: "add-on", key: new.id.clone() });
        }
        Ok(())
    }

    /// An add-on read in this transaction.
    pub async fn addon(&mut self, id: &str) -> Result<Option<AddOnRow>> {
        let sql = format!("SELECT {ADDON_COLUMNS} FROM subscription_addons a WHERE a.id = $1");
        self.fetch_optional("addons.get", &sql, args![id]).await?.as_ref().map(addon).transpose()
    }

    /// Ends an add-on (`id`), or every live add-on of line `subscription_id`.
    pub async fn terminate_addons(&mut self, id: Option<&str>, subscription_id: &str, now: Timestamp) -> Result<()> {
        self.execute(
            "addons.terminate",
            "UPDATE subscription_addons SET status = 'terminated', terminated_at_ms = $3, updated_at_ms = $3
             WHERE subscription_id = $1 AND ($2 IS NULL OR id = $2) AND status <> 'terminated'",
            args![subscription_id, id, to_ms(now)],
        )
        .await?;
        Ok(())
    }

    /// Inserts a line's service, or sets its state if the line has one.
    pub async fn upsert_service(&mut self, new: &ServiceRow, now: Timestamp) -> Result<()> {
        self.execute(
            "services.upsert",
            "INSERT INTO services (id, subscription_id, state, order_id, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (subscription_id) DO UPDATE SET state = $3, order_id = $4, updated_at_ms = $5",
            args![new.id.as_str(), new.subscription_id.as_str(), new.state.as_str(), new.order_id.as_str(), to_ms(now)],
        )
        .await?;
        Ok(())
    }
}

/// `conditions`/`values` for a product or service list's filter, over the billing account
/// `b`, and the status expression `status`.
fn product_conditions(filter: &ProductFilter, status: &str) -> (String, Vec<Arg>) {
    let mut conditions = vec!["1 = 1".to_owned()];
    let mut values = Vec::new();
    equalities(
        &[(status, &filter.status), ("b.id", &filter.billing_account_id), ("b.root_id", &filter.root_id)],
        &mut conditions,
        &mut values,
    );
    (conditions.join(" AND "), values)
}

impl Store {
    /// A line with its identities.
    pub async fn line(&self, id: &str) -> Result<Option<Versioned<LineRow>>> {
        let mut tx = self.read().await?;
        tx.line_locked(id, "").await
    }

    /// A line and the root of its billing account's hierarchy.
    pub async fn line_with_root(&self, id: &str) -> Result<Option<(Versioned<LineRow>, String)>> {
        let mut tx = self.read().await?;
        let Some(found) = tx.line_locked(id, "").await? else { return Ok(None) };
        let root = tx
            .fetch_one(
                "lines.root",
                "SELECT root_id FROM billing_accounts WHERE id = $1",
                args![found.value.subscription.billing_account_id.as_str()],
            )
            .await?
            .text("root_id")?;
        Ok(Some((found, root)))
    }

    /// An add-on, the billing account of its line and that account's hierarchy root.
    pub async fn addon(&self, id: &str) -> Result<Option<(AddOnRow, String, String)>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {ADDON_COLUMNS}, b.id AS billing_account_id, b.root_id AS root_id
             FROM subscription_addons a JOIN subscriptions u ON u.id = a.subscription_id
             JOIN billing_accounts b ON b.id = u.billing_account_id WHERE a.id = $1"
        );
        let Some(row) = tx.fetch_optional("addons.get", &sql, args![id]).await? else { return Ok(None) };
        Ok(Some((addon(&row)?, row.text("billing_account_id")?, row.text("root_id")?)))
    }

    /// A line's live add-ons.
    pub async fn addons_of(&self, subscription_id: &str) -> Result<Vec<AddOnRow>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {ADDON_COLUMNS} FROM subscription_addons a WHERE a.subscription_id = $1 ORDER BY a.seq LIMIT $2"
        );
        let rows = tx.fetch_all("addons.of_line", &sql, args![subscription_id, i64::from(PRODUCT_PAGE_MAX)]).await?;
        rows.iter().map(addon).collect()
    }

    /// The product inventory: lines and add-ons matching `filter`, oldest first, `limit`
    /// (at most [`PRODUCT_PAGE_MAX`]) from `offset`, and how many match in all.
    pub async fn product_list(&self, filter: &ProductFilter, offset: u64, limit: u32) -> Result<Page<ProductEntry>> {
        let offset = offset_arg(offset)?;
        let (condition, values) = product_conditions(filter, "p.status");
        let union = "(SELECT 'line' AS kind, u.id AS id, u.seq AS seq, u.created_at_ms AS created_at_ms,
                         COALESCE(u.product_status, u.state) AS status, u.billing_account_id AS account_id
                     FROM subscriptions u
                     UNION ALL
                     SELECT 'addOn' AS kind, a.id AS id, a.seq AS seq, a.created_at_ms AS created_at_ms,
                         a.status AS status, u.billing_account_id AS account_id
                     FROM subscription_addons a JOIN subscriptions u ON u.id = a.subscription_id) p
                    JOIN billing_accounts b ON b.id = p.account_id";
        let mut tx = self.read().await?;
        let total = tx
            .fetch_one(
                "products.count",
                &format!("SELECT COUNT(*) AS n FROM {union} WHERE {condition}"),
                values.clone(),
            )
            .await?
            .int("n")?;
        let mut page_args = values;
        page_args.push(Arg::from(i64::from(limit.min(PRODUCT_PAGE_MAX))));
        page_args.push(Arg::from(offset));
        let count = page_args.len();
        let sql = format!(
            "SELECT p.kind AS kind, p.id AS id FROM {union} WHERE {condition}
             ORDER BY p.created_at_ms, p.kind DESC, p.seq LIMIT ${} OFFSET ${count}",
            count - 1
        );
        let rows = tx.fetch_all("products.list", &sql, page_args).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = row.text("id")?;
            let entry = if row.text("kind")? == "line" {
                tx.line_locked(&id, "").await?.map(ProductEntry::Line)
            } else {
                let sql = format!(
                    "SELECT {ADDON_COLUMNS}, u.billing_account_id AS billing_account_id
                     FROM subscription_addons a JOIN subscriptions u ON u.id = a.subscription_id WHERE a.id = $1"
                );
                let found = tx.fetch_optional("addons.get", &sql, args![id.as_str()]).await?;
                found
                    .map(|row| Ok::<_, StoreError>(ProductEntry::AddOn(addon(&row)?, row.text("billing_account_id")?)))
                    .transpose()?
            };
            items.extend(entry.map(|entry| Versioned { value: entry, version: Version::FIRST }));
        }
        Ok(Page { items, total })
    }

    /// A service and the root of its line's billing account's hierarchy.
    pub async fn service(&self, id: &str) -> Result<Option<(ServiceRow, String)>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {SERVICE_COLUMNS}, b.root_id AS root_id FROM services s JOIN subscriptions u ON u.id = s.subscription_id
             JOIN billing_accounts b ON b.id = u.billing_account_id WHERE s.id = $1"
        );
        let Some(row) = tx.fetch_optional("services.get", &sql, args![id]).await? else { return Ok(None) };
        Ok(Some((service(&row)?.value, row.text("root_id")?)))
    }

    /// A line's service, if it has one.
    pub async fn service_of(&self, subscription_id: &str) -> Result<Option<ServiceRow>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {SERVICE_COLUMNS} FROM services s WHERE s.subscription_id = $1");
        let row = tx.fetch_optional("services.of_line", &sql, args![subscription_id]).await?;
        row.as_ref().map(|row| service(row).map(|found| found.value)).transpose()
    }

    /// The service inventory: services matching `filter`, oldest first.
    pub async fn service_list(&self, filter: &ProductFilter, offset: u64, limit: u32) -> Result<Page<ServiceRow>> {
        let (condition, values) = product_conditions(filter, "s.state");
        let from = format!(
            "services s JOIN subscriptions u ON u.id = s.subscription_id
             JOIN billing_accounts b ON b.id = u.billing_account_id WHERE {condition}"
        );
        self.page_by(
            "services.list",
            &from,
            SERVICE_COLUMNS,
            "s.seq",
            values,
            offset,
            limit.min(PRODUCT_PAGE_MAX),
            service,
        )
        .await
    }
}

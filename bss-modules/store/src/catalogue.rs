//! The product catalogue's rows (TMF620): specifications, offerings, offering prices and
//! categories in one table, `catalogue_items`, each a JSON document (what the API shows)
//! with a row version, beside the columns lists filter on (name, lifecycle status, version
//! label, bundle flag, price type) and the price as money. `catalogue_refs` records which
//! item names which, so a referred-to item is not deleted from under its referrer;
//! `tariff_plan_versions` keeps every tariff plan version an activation compiled, one
//! source per id and version.
//!
//! The rules (what a valid item is, which lifecycle transitions exist) live in
//! `tollgate-catalogue`; this module stores and reads what it decided.

use jiff::Timestamp;
use ring::rand::{SecureRandom, SystemRandom};
use rust_decimal::Decimal;

use crate::codec::{json_text, parse_json, to_ms};
use crate::error::{Result, StoreError};
use crate::hash::{hex, sha256_hex};
use crate::sql::{args, Arg, Row};
use crate::versioned::{delete_versioned, update_versioned, Version, Versioned};
use crate::{Store, Tx};

/// Items a list returns at most, whatever the caller asks.
pub const CATALOGUE_PAGE_MAX: u32 = 1000;

/// A catalogue item as stored. `kind` is the TMF type name (`ProductOffering`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogueItem {
    pub kind: String,
    pub id: String,
    pub name: String,
    pub lifecycle_status: String,
    pub version_label: Option<String>,
    pub is_bundle: Option<bool>,
    pub price_type: Option<String>,
    /// A price's amount and currency.
    pub price: Option<(Decimal, String)>,
    /// The document the API shows.
    pub doc: serde_json::Value,
    /// The items this one names: (field, id).
    pub refs: Vec<(String, String)>,
}

/// What a list may be narrowed by: equality on each column given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogueFilter {
    pub name: Option<String>,
    pub lifecycle_status: Option<String>,
    pub version_label: Option<String>,
    pub is_bundle: Option<bool>,
    pub price_type: Option<String>,
}

/// One page of a list and how many items match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct CataloguePage {
    pub items: Vec<Versioned<CatalogueItem>>,
    pub total: i64,
}

/// A fresh identifier for a BSS entity: 16 random bytes as 32 lowercase hex digits.
pub fn new_entity_id() -> Result<String> {
    let mut random = [0u8; 16];
    SystemRandom::new().fill(&mut random).map_err(|_| StoreError::Random)?;
    Ok(hex(&random))
}

const COLUMNS: &str =
    "id, kind, name, lifecycle_status, version_label, is_bundle, price_type, price_amount, price_unit, doc_json, version";

fn item(row: &Row) -> Result<Versioned<CatalogueItem>> {
    let doc_json = row.text("doc_json")?;
    let version = row.int("version")?;
    let price = match (row.opt_money("price_amount")?, row.opt_text("price_unit")?) {
        (Some(amount), Some(unit)) => Some((amount, unit)),
        _ => None,
    };
    Ok(Versioned {
        value: CatalogueItem {
            kind: row.text("kind")?,
            id: row.text("id")?,
            name: row.text("name")?,
            lifecycle_status: row.text("lifecycle_status")?,
            version_label: row.opt_text("version_label")?,
            is_bundle: row.opt_int("is_bundle")?.map(|flag| flag != 0),
            price_type: row.opt_text("price_type")?,
            price,
            doc: parse_json(row, "doc_json", &doc_json)?,
            refs: Vec::new(),
        },
        version: Version::new(version).ok_or_else(|| row.corrupt("version", format!("{version} is below 1")))?,
    })
}

fn bundle_flag(flag: Option<bool>) -> Option<i64> {
    flag.map(i64::from)
}

impl Tx {
    /// Inserts a new item at [`Version::FIRST`] with its references.
    pub async fn insert_catalogue_item(&mut self, new: &CatalogueItem, now: Timestamp) -> Result<Version> {
        let doc = json_text("doc", &new.doc)?;
        let (amount, unit) = new.price.clone().unzip();
        let inserted = self
            .execute(
                "catalogue.insert",
                "INSERT INTO catalogue_items (id, kind, name, lifecycle_status, version_label, is_bundle, price_type,
                     price_amount, price_unit, doc_json, version, created_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11)
                 ON CONFLICT (id) DO NOTHING",
                args![
                    new.id.as_str(),
                    new.kind.as_str(),
                    new.name.as_str(),
                    new.lifecycle_status.as_str(),
                    new.version_label.clone(),
                    bundle_flag(new.is_bundle),
                    new.price_type.clone(),
                    amount,
                    unit,
                    doc,
                    to_ms(now)
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { what: "catalogue item", key: new.id.clone() });
        }
        self.write_refs(&new.id, &new.refs).await?;
        Ok(Version::FIRST)
    }

    /// Replaces an item that is still at `expected` (its kind does not change); returns
    /// the new version, or `NotFound` / `StaleVersion`.
    pub async fn update_catalogue_item(
        &mut self,
        item: &CatalogueItem,
        expected: Version,
        now: Timestamp,
    ) -> Result<Version> {
        let doc = json_text("doc", &item.doc)?;
        let (amount, unit) = item.price.clone().unzip();
        let version = update_versioned(
            self,
            "catalogue item",
            "catalogue_items",
            &item.id,
            expected,
            "name = $3, lifecycle_status = $4, version_label = $5, is_bundle = $6, price_type = $7,
             price_amount = $8, price_unit = $9, doc_json = $10, updated_at_ms = $11",
            args![
                item.name.as_str(),
                item.lifecycle_status.as_str(),
                item.version_label.clone(),
                bundle_flag(item.is_bundle),
                item.price_type.clone(),
                amount,
                unit,
                doc,
                to_ms(now)
            ],
        )
        .await?;
        self.execute("catalogue.refs", "DELETE FROM catalogue_refs WHERE from_id = $1", args![item.id.as_str()])
            .await?;
        self.write_refs(&item.id, &item.refs).await?;
        Ok(version)
    }

    /// Deletes an item that is still at `expected`, with the references it makes. Refused
    /// with `Conflict` while another item refers to it.
    pub async fn delete_catalogue_item(&mut self, id: &str, expected: Version) -> Result<()> {
        let referrers = self.catalogue_referrers(id).await?;
        if let Some((from_id, field)) = referrers.first() {
            return Err(StoreError::Conflict {
                what: "catalogue item",
                key: format!("{id} (referred to by {from_id} in {field})"),
            });
        }
        delete_versioned(self, "catalogue item", "catalogue_items", id, expected).await
    }

    /// The items that name `id`: (referrer id, field), at most a page.
    pub async fn catalogue_referrers(&mut self, id: &str) -> Result<Vec<(String, String)>> {
        let rows = self
            .fetch_all(
                "catalogue.referrers",
                "SELECT from_id, field FROM catalogue_refs WHERE to_id = $1 ORDER BY from_id, field LIMIT $2",
                args![id, i64::from(CATALOGUE_PAGE_MAX)],
            )
            .await?;
        rows.iter().map(|row| Ok((row.text("from_id")?, row.text("field")?))).collect()
    }

    /// An item read inside this transaction (locked until it ends on PostgreSQL), with
    /// the references it makes.
    pub async fn catalogue_item(&mut self, id: &str) -> Result<Option<Versioned<CatalogueItem>>> {
        let lock = self.dialect().lock_rows();
        self.catalogue_item_locking(id, lock).await
    }

    async fn catalogue_item_locking(&mut self, id: &str, lock: &str) -> Result<Option<Versioned<CatalogueItem>>> {
        let sql = format!("SELECT {COLUMNS} FROM catalogue_items WHERE id = $1{lock}");
        let Some(row) = self.fetch_optional("catalogue.get", &sql, args![id]).await? else { return Ok(None) };
        let mut found = item(&row)?;
        found.value.refs = self.catalogue_refs(id).await?;
        Ok(Some(found))
    }

    async fn catalogue_refs(&mut self, id: &str) -> Result<Vec<(String, String)>> {
        let rows = self
            .fetch_all(
                "catalogue.refs",
                "SELECT field, to_id FROM catalogue_refs WHERE from_id = $1 ORDER BY field, to_id",
                args![id],
            )
            .await?;
        rows.iter().map(|row| Ok((row.text("field")?, row.text("to_id")?))).collect()
    }

    async fn write_refs(&mut self, from_id: &str, refs: &[(String, String)]) -> Result<()> {
        for (field, to_id) in refs {
            self.execute(
                "catalogue.refs",
                "INSERT INTO catalogue_refs (from_id, field, to_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                args![from_id, field.as_str(), to_id.as_str()],
            )
            .await?;
        }
        Ok(())
    }

    /// Records a compiled tariff plan version's source. Returns `true` when it is new,
    /// `false` when the same source was recorded before, and `Conflict` when this id and
    /// version were recorded with another source (a plan version is immutable).
    pub async fn record_tariff_plan(
        &mut self,
        plan_id: &str,
        plan_version: u32,
        source: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let sha = sha256_hex(source.as_bytes());
        let inserted = self
            .execute(
                "catalogue.plan",
                "INSERT INTO tariff_plan_versions (plan_id, plan_version, source_sha256, source, recorded_at_ms)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (plan_id, plan_version) DO NOTHING",
                args![plan_id, i64::from(plan_version), sha.clone(), source, to_ms(now)],
            )
            .await?;
        if inserted == 1 {
            return Ok(true);
        }
        let row = self
            .fetch_one(
                "catalogue.plan",
                "SELECT source_sha256 FROM tariff_plan_versions WHERE plan_id = $1 AND plan_version = $2",
                args![plan_id, i64::from(plan_version)],
            )
            .await?;
        if row.text("source_sha256")? == sha {
            Ok(false)
        } else {
            Err(StoreError::Conflict {
                what: "tariff plan",
                key: format!("{plan_id} version {plan_version} (a recorded plan version never changes; give the new source a new version)"),
            })
        }
    }
}

impl Store {
    /// An item, with the references it makes.
    pub async fn catalogue_item(&self, id: &str) -> Result<Option<Versioned<CatalogueItem>>> {
        let mut tx = self.read().await?;
        tx.catalogue_item_locking(id, "").await
    }

    /// The items of `kind` matching `filter`, in creation order: `limit` (at most
    /// [`CATALOGUE_PAGE_MAX`]) from `offset`, and the number matching in all.
    pub async fn catalogue_list(
        &self,
        kind: &str,
        filter: &CatalogueFilter,
        offset: u64,
        limit: u32,
    ) -> Result<CataloguePage> {
        let mut conditions = vec!["kind = $1".to_owned()];
        let mut values: Vec<Arg> = args![kind];
        let text_filters = [
            ("name", &filter.name),
            ("lifecycle_status", &filter.lifecycle_status),
            ("version_label", &filter.version_label),
            ("price_type", &filter.price_type),
        ];
        for (column, value) in text_filters {
            if let Some(value) = value {
                values.push(Arg::from(value.as_str()));
                conditions.push(format!("{column} = ${}", values.len()));
            }
        }
        if let Some(flag) = filter.is_bundle {
            values.push(Arg::from(i64::from(flag)));
            conditions.push(format!("is_bundle = ${}", values.len()));
        }
        let condition = conditions.join(" AND ");
        let offset = i64::try_from(offset)
            .map_err(|_| StoreError::Invalid { field: "offset", reason: format!("{offset} is too large") })?;
        let mut tx = self.read().await?;
        let total = tx
            .fetch_one(
                "catalogue.count",
                &format!("SELECT COUNT(*) AS n FROM catalogue_items WHERE {condition}"),
                values.clone(),
            )
            .await?
            .int("n")?;
        let mut page_args = values;
        page_args.push(Arg::from(i64::from(limit.min(CATALOGUE_PAGE_MAX))));
        page_args.push(Arg::from(offset));
        let count = page_args.len();
        let rows = tx
            .fetch_all(
                "catalogue.list",
                &format!(
                    "SELECT {COLUMNS} FROM catalogue_items WHERE {condition} ORDER BY seq LIMIT ${} OFFSET ${count}",
                    count - 1
                ),
                page_args,
            )
            .await?;
        let items = rows.iter().map(item).collect::<Result<Vec<_>>>()?;
        Ok(CataloguePage { items, total })
    }

    /// The recorded tariff plan versions: (plan id, version, SHA-256 of the source), in
    /// order, at most a page.
    pub async fn tariff_plan_versions(&self) -> Result<Vec<(String, u32, String)>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "catalogue.plans",
                "SELECT plan_id, plan_version, source_sha256 FROM tariff_plan_versions
                 ORDER BY plan_id, plan_version LIMIT $1",
                args![i64::from(CATALOGUE_PAGE_MAX)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let version = row.int("plan_version")?;
                let version = u32::try_from(version)
                    .map_err(|_| row.corrupt("plan_version", format!("{version} is not a plan version")))?;
                Ok((row.text("plan_id")?, version, row.text("source_sha256")?))
            })
            .collect()
    }
}

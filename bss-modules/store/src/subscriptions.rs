//! Subscriptions as rows: the BSS's record of a billing account's use of a product, the
//! tariff plan it is rated by (and the catalogue's product offering it was sold as, when
//! known), its identities and its state (`active`, `suspended`, `terminated`, as the
//! engine has it). Its engine subscription id is derived from the row's `seq`
//! ([`ENGINE_SUBSCRIPTION_BASE`] + seq): assigned once, never reused. Identities live in
//! `subscription_identities`, one row each, keyed by the engine's normalised identity key
//! (`msisdn:491700000001`), so an identity belongs to one subscription, as in the engine.
//!
//! The rules live in the crates that create subscriptions (`tollgate-import` today, product
//! orders later); this module stores and reads what they decided.

use jiff::Timestamp;

use crate::bulk::{insert_many, select_in};
use crate::codec::to_ms;
use crate::error::{Result, StoreError};
use crate::sql::{args, Arg, Row};
use crate::versioned::{Version, Versioned};
use crate::{Store, Tx};

/// The engine subscription id of the subscription with `seq` 1 is this plus one: far above
/// the ids the CLI and the demo provision by hand.
pub const ENGINE_SUBSCRIPTION_BASE: u64 = 1_000_000_000_000;

/// Subscriptions a list returns at most.
pub const SUBSCRIPTION_PAGE_MAX: u32 = 1000;

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub id: String,
    /// Assigned by the store on insert (ignored there); see [`ENGINE_SUBSCRIPTION_BASE`].
    pub engine_subscription_id: u64,
    /// The id a legacy system gave it, if it was imported.
    pub external_id: Option<String>,
    pub billing_account_id: String,
    /// The catalogue's product offering, when known.
    pub offering_id: Option<String>,
    /// The tariff plan the engine rates it by.
    pub plan_id: String,
    /// `active`, `suspended` or `terminated`.
    pub state: String,
    /// The engine's identity keys (`msisdn:…`, `imsi:…`, `sip:…`, `nai:…`), in order.
    pub identities: Vec<String>,
}

const COLUMNS: &str = "seq, id, external_id, billing_account_id, offering_id, plan_id, state, version";

pub(crate) fn engine_id(seq: i64) -> u64 {
    ENGINE_SUBSCRIPTION_BASE + seq.unsigned_abs()
}

fn subscription(row: &Row) -> Result<Versioned<SubscriptionRow>> {
    let version = row.int("version")?;
    Ok(Versioned {
        value: SubscriptionRow {
            id: row.text("id")?,
            engine_subscription_id: engine_id(row.int("seq")?),
            external_id: row.opt_text("external_id")?,
            billing_account_id: row.text("billing_account_id")?,
            offering_id: row.opt_text("offering_id")?,
            plan_id: row.text("plan_id")?,
            state: row.text("state")?,
            identities: Vec::new(),
        },
        version: Version::new(version).ok_or_else(|| row.corrupt("version", format!("{version} is below 1")))?,
    })
}

impl Tx {
    /// Inserts new subscriptions at [`Version::FIRST`] with their identities, in a few
    /// multi-row statements; returns their engine subscription ids, in the order given.
    /// Fails (rolling nothing back itself: the caller's transaction does) when an id,
    /// external id or identity is taken.
    pub async fn insert_subscriptions(&mut self, rows: &[SubscriptionRow], now: Timestamp) -> Result<Vec<u64>> {
        let now = to_ms(now);
        let mut values = Vec::with_capacity(rows.len() * 9);
        for row in rows {
            values.extend(args![
                row.id.as_str(),
                row.external_id.as_deref(),
                row.billing_account_id.as_str(),
                row.offering_id.as_deref(),
                row.plan_id.as_str(),
                row.state.as_str(),
                1,
                now,
                now
            ]);
        }
        let returned = insert_many(
            self,
            "subscriptions.insert",
            "INSERT INTO subscriptions (id, external_id, billing_account_id, offering_id, plan_id, state, version,
                 created_at_ms, updated_at_ms)",
            9,
            values,
            "RETURNING id, seq",
        )
        .await?;
        let mut seqs = std::collections::HashMap::with_capacity(returned.len());
        for row in &returned {
            seqs.insert(row.text("id")?, row.int("seq")?);
        }
        let mut identities = Vec::new();
        for row in rows {
            for (position, identity) in row.identities.iter().enumerate() {
                identities.extend(args![identity.as_str(), row.id.as_str(), i64::try_from(position).unwrap_or(0)]);
            }
        }
        insert_many(
            self,
            "subscriptions.insert",
            "INSERT INTO subscription_identities (identity, subscription_id, position)",
            3,
            identities,
            "",
        )
        .await?;
        rows.iter()
            .map(|row| {
                seqs.get(&row.id).map(|seq| engine_id(*seq)).ok_or_else(|| StoreError::Invalid {
                    field: "id",
                    reason: format!("subscription {} was given twice", row.id),
                })
            })
            .collect()
    }

    /// The subscriptions with these external ids (as many as are found).
    pub async fn subscriptions_by_external_id(
        &mut self,
        external_ids: &[&str],
    ) -> Result<Vec<Versioned<SubscriptionRow>>> {
        let sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE external_id IN (#)");
        let rows = select_in(self, "subscriptions.by_external_id", &sql, external_ids).await?;
        let mut found = rows.iter().map(subscription).collect::<Result<Vec<_>>>()?;
        for found in &mut found {
            found.value.identities = self.identities_of(&found.value.id).await?;
        }
        Ok(found)
    }

    /// Which of `identities` are taken, and by which subscription: (identity, subscription id).
    pub async fn identities_in_use(&mut self, identities: &[&str]) -> Result<Vec<(String, String)>> {
        let rows = select_in(
            self,
            "subscriptions.identities_in_use",
            "SELECT identity, subscription_id FROM subscription_identities WHERE identity IN (#)",
            identities,
        )
        .await?;
        rows.iter().map(|row| Ok((row.text("identity")?, row.text("subscription_id")?))).collect()
    }

    pub(crate) async fn identities_of(&mut self, id: &str) -> Result<Vec<String>> {
        let rows = self
            .fetch_all(
                "subscriptions.identities",
                "SELECT identity FROM subscription_identities WHERE subscription_id = $1 ORDER BY position",
                args![id],
            )
            .await?;
        rows.iter().map(|row| row.text("identity")).collect()
    }
}

impl Store {
    /// A subscription with its identities.
    pub async fn subscription(&self, id: &str) -> Result<Option<Versioned<SubscriptionRow>>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE id = $1");
        let Some(row) = tx.fetch_optional("subscriptions.get", &sql, args![id]).await? else { return Ok(None) };
        let mut found = subscription(&row)?;
        found.value.identities = tx.identities_of(id).await?;
        Ok(Some(found))
    }

    /// The subscription whose engine subscription id is `engine_id`, with its identities;
    /// none for an id below [`ENGINE_SUBSCRIPTION_BASE`] (provisioned in the engine by hand,
    /// not through the BSS).
    pub async fn subscription_by_engine_id(&self, engine_id: u64) -> Result<Option<Versioned<SubscriptionRow>>> {
        let Some(seq) = engine_id.checked_sub(ENGINE_SUBSCRIPTION_BASE).and_then(|seq| i64::try_from(seq).ok()) else {
            return Ok(None);
        };
        let mut tx = self.read().await?;
        let sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE seq = $1");
        let Some(row) = tx.fetch_optional("subscriptions.by_engine_id", &sql, args![seq]).await? else {
            return Ok(None);
        };
        let mut found = subscription(&row)?;
        found.value.identities = tx.identities_of(&found.value.id).await?;
        Ok(Some(found))
    }

    /// A billing account's subscriptions in creation order, at most
    /// [`SUBSCRIPTION_PAGE_MAX`], with their identities.
    pub async fn subscriptions_of(&self, billing_account_id: &str) -> Result<Vec<Versioned<SubscriptionRow>>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE billing_account_id = $1 ORDER BY seq LIMIT $2");
        let rows = tx
            .fetch_all(
                "subscriptions.of_account",
                &sql,
                vec![Arg::from(billing_account_id), Arg::from(i64::from(SUBSCRIPTION_PAGE_MAX))],
            )
            .await?;
        let mut found = rows.iter().map(subscription).collect::<Result<Vec<_>>>()?;
        for found in &mut found {
            found.value.identities = tx.identities_of(&found.value.id).await?;
        }
        Ok(found)
    }

    /// How many subscriptions there are.
    pub async fn subscription_count(&self) -> Result<i64> {
        let mut tx = self.read().await?;
        tx.fetch_one("subscriptions.count", "SELECT COUNT(*) AS n FROM subscriptions", vec![]).await?.int("n")
    }
}

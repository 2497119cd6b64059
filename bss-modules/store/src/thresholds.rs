//! Thresholds' rows (migrations 12 and 16): per billing account, `balance_below` and
//! `spending_cap` (an amount in the account's currency), `bundle_used` (a percentage of an
//! allowance bucket's grant) and `bundle_expiry` (hours before a bucket ends) thresholds
//! (`thresholds`), a bundle one optionally narrowed to one subscription, and the crossings
//! notified (`threshold_crossings`,
//! unique per threshold and key, so a crossing evaluated again after a crash is recorded,
//! and its hub event published, once). A balance threshold's `tripped` flag and `episode`
//! say whether the balance is below it now (notified) and how often it re-armed.
//!
//! What is a crossing (the rules, the message) is `tollgate-customers`'; this module
//! stores and reads what it decided.

use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::codec::to_ms;
use crate::customers::engine_id;
use crate::error::{Result, StoreError};
use crate::sql::{args, Row};
use crate::{Store, Tx};

/// Thresholds one billing account may have, at most.
pub const MAX_THRESHOLDS_PER_ACCOUNT: usize = 32;
/// Crossings a list returns at most.
pub const CROSSING_PAGE_MAX: u32 = 1000;

/// A billing account's crossings (`$1`), in the order they were recorded.
const CROSSINGS_OF: &str =
    "SELECT threshold_id, crossing_key, billing_account_id, kind, message, event_id, crossed_at_ms
     FROM threshold_crossings WHERE billing_account_id = $1 ORDER BY seq";

/// A threshold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdRow {
    pub id: String,
    pub billing_account_id: String,
    /// `balance_below`, `spending_cap`, `bundle_used`, `bundle_expiry` or `renewal_refused`.
    pub kind: String,
    /// A `balance_below` or `spending_cap` threshold's amount, in the account's currency.
    pub amount: Option<Decimal>,
    /// A `bundle_used` threshold's percentage of a bucket's grant (1 to 100).
    pub percent: Option<i64>,
    /// A `bundle_expiry` threshold's warning time before a bucket ends, in hours.
    pub hours: Option<i64>,
    /// A bundle threshold narrowed to this subscription's buckets (`None`: every one of
    /// the account's).
    pub subscription_id: Option<String>,
    /// That subscription's engine id (read from the store; ignored on insert).
    pub engine_subscription_id: Option<u64>,
    /// The message's language (`en`, `de`, …).
    pub language: String,
    /// Whether a crossing is published to the hub's listeners.
    pub webhook: bool,
    /// Whether a crossing's message is also sent by SMS to the lines' numbers.
    pub sms: bool,
    /// A balance or spending threshold: the balance is past it and that was notified.
    pub tripped: bool,
    /// A balance or spending threshold: 1, plus one per re-arming.
    pub episode: i64,
    pub created_at: Timestamp,
}

/// A threshold with the engine account of its billing account, for the evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedThreshold {
    pub engine_account_id: u64,
    pub currency: String,
    pub threshold: ThresholdRow,
}

/// A crossing as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossingRow {
    pub threshold_id: String,
    /// What makes it one crossing: `episode-3`, `bucket-7-from-1767225600-80`.
    pub crossing_key: String,
    pub billing_account_id: String,
    pub kind: String,
    pub message: String,
    /// The hub event published with it, if the threshold has a webhook.
    pub event_id: Option<String>,
    pub crossed_at: Timestamp,
}

// The subscription's sequence number by a scalar subquery rather than a join: the rows
// are locked with `FOR UPDATE`, which PostgreSQL refuses on an outer join's nullable side.
const COLUMNS: &str = "t.id, t.billing_account_id, t.kind, t.amount, t.percent, t.hours, t.subscription_id,
     (SELECT s.seq FROM subscriptions s WHERE s.id = t.subscription_id) AS subscription_seq,
     t.language, t.webhook, t.sms, t.tripped, t.episode, t.created_at_ms";

fn flag(row: &Row, column: &'static str) -> Result<bool> {
    match row.int(column)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(row.corrupt(column, format!("{other} is not 0 or 1"))),
    }
}

fn threshold(row: &Row) -> Result<ThresholdRow> {
    Ok(ThresholdRow {
        id: row.text("id")?,
        billing_account_id: row.text("billing_account_id")?,
        kind: row.text("kind")?,
        amount: row.opt_money("amount")?,
        percent: row.opt_int("percent")?,
        hours: row.opt_int("hours")?,
        subscription_id: row.opt_text("subscription_id")?,
        engine_subscription_id: row.opt_int("subscription_seq")?.map(crate::subscriptions::engine_id),
        language: row.text("language")?,
        webhook: flag(row, "webhook")?,
        sms: flag(row, "sms")?,
        tripped: flag(row, "tripped")?,
        episode: row.int("episode")?,
        created_at: row.timestamp("created_at_ms")?,
    })
}

fn crossing(row: &Row) -> Result<CrossingRow> {
    Ok(CrossingRow {
        threshold_id: row.text("threshold_id")?,
        crossing_key: row.text("crossing_key")?,
        billing_account_id: row.text("billing_account_id")?,
        kind: row.text("kind")?,
        message: row.text("message")?,
        event_id: row.opt_text("event_id")?,
        crossed_at: row.timestamp("crossed_at_ms")?,
    })
}

impl Tx {
    /// Adds threshold `new` (its `tripped` and `episode` as given). Refused past
    /// [`MAX_THRESHOLDS_PER_ACCOUNT`] for its account.
    pub async fn insert_threshold(&mut self, new: &ThresholdRow) -> Result<()> {
        let count = self.thresholds_of(&new.billing_account_id).await?.len();
        if count >= MAX_THRESHOLDS_PER_ACCOUNT {
            return Err(StoreError::Invalid {
                field: "threshold",
                reason: format!("billing account {} has {count} thresholds, the most allowed", new.billing_account_id),
            });
        }
        self.execute(
            "thresholds.insert",
            "INSERT INTO thresholds (id, billing_account_id, kind, amount, percent, hours, subscription_id, language,
                 webhook, sms, tripped, episode, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            args![
                new.id.as_str(),
                new.billing_account_id.as_str(),
                new.kind.as_str(),
                new.amount,
                new.percent,
                new.hours,
                new.subscription_id.clone(),
                new.language.as_str(),
                i64::from(new.webhook),
                i64::from(new.sms),
                i64::from(new.tripped),
                new.episode,
                to_ms(new.created_at),
            ],
        )
        .await?;
        Ok(())
    }

    /// Changes threshold `id`'s language and its webhook and SMS flags.
    pub async fn update_threshold_delivery(
        &mut self,
        id: &str,
        language: &str,
        webhook: bool,
        sms: bool,
    ) -> Result<()> {
        let changed = self
            .execute(
                "thresholds.update",
                "UPDATE thresholds SET language = $2, webhook = $3, sms = $4 WHERE id = $1",
                args![id, language, i64::from(webhook), i64::from(sms)],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound { entity: "threshold", id: id.to_owned() });
        }
        Ok(())
    }

    /// Removes threshold `id`; returns it, or `None` if there was none. Its crossings stay.
    pub async fn delete_threshold(&mut self, id: &str) -> Result<Option<ThresholdRow>> {
        let sql = format!("SELECT {COLUMNS} FROM thresholds t WHERE t.id = $1{}", self.dialect().lock_rows());
        let Some(row) = self.fetch_optional("thresholds.delete", &sql, args![id]).await? else {
            return Ok(None);
        };
        let found = threshold(&row)?;
        self.execute("thresholds.delete", "DELETE FROM thresholds WHERE id = $1", args![id]).await?;
        Ok(Some(found))
    }

    /// The thresholds of billing account `id`, oldest first.
    pub async fn thresholds_of(&mut self, id: &str) -> Result<Vec<ThresholdRow>> {
        let sql = format!("SELECT {COLUMNS} FROM thresholds t WHERE t.billing_account_id = $1 ORDER BY t.seq");
        self.fetch_all("thresholds.of", &sql, args![id]).await?.iter().map(threshold).collect()
    }

    /// The MSISDNs (digits, without `+`) of billing account `account_id`'s subscriptions
    /// that are not terminated, or of subscription `subscription_id` only, in the order
    /// the subscriptions were made; at most `limit`.
    pub async fn msisdns_of(
        &mut self,
        account_id: &str,
        subscription_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>> {
        let (narrowed, values) = match subscription_id {
            Some(id) => ("AND s.id = $3", args![account_id, i64::from(limit), id]),
            None => ("", args![account_id, i64::from(limit)]),
        };
        let sql = format!(
            "SELECT i.identity FROM subscriptions s JOIN subscription_identities i ON i.subscription_id = s.id
             WHERE s.billing_account_id = $1 AND s.state <> 'terminated' AND i.identity LIKE 'msisdn:%' {narrowed}
             ORDER BY s.seq, i.position LIMIT $2"
        );
        let rows = self.fetch_all("thresholds.msisdns", &sql, values).await?;
        rows.iter().map(|row| Ok(row.text("identity")?.trim_start_matches("msisdn:").to_owned())).collect()
    }

    /// The billing account subscription `id` belongs to, if there is one.
    pub async fn subscription_account(&mut self, id: &str) -> Result<Option<String>> {
        let row = self
            .fetch_optional(
                "thresholds.subscription",
                "SELECT billing_account_id FROM subscriptions WHERE id = $1",
                args![id],
            )
            .await?;
        row.map(|row| row.text("billing_account_id")).transpose()
    }

    /// Threshold `id` as it is now, locked for the rest of the transaction (PostgreSQL;
    /// SQLite has one writer): two evaluations of one threshold are serialised.
    pub async fn lock_threshold(&mut self, id: &str) -> Result<Option<ThresholdRow>> {
        let sql = format!("SELECT {COLUMNS} FROM thresholds t WHERE t.id = $1{}", self.dialect().lock_rows());
        self.fetch_optional("thresholds.lock", &sql, args![id]).await?.as_ref().map(threshold).transpose()
    }

    /// Sets a balance threshold's state: `tripped`, in `episode`.
    pub async fn set_threshold_state(&mut self, id: &str, tripped: bool, episode: i64) -> Result<()> {
        self.execute(
            "thresholds.state",
            "UPDATE thresholds SET tripped = $2, episode = $3 WHERE id = $1",
            args![id, i64::from(tripped), episode],
        )
        .await?;
        Ok(())
    }

    /// Records crossing `new`; `false` (nothing written) when its threshold and key were
    /// recorded before.
    pub async fn insert_crossing(&mut self, new: &CrossingRow) -> Result<bool> {
        let written = self
            .execute(
                "threshold_crossings.insert",
                "INSERT INTO threshold_crossings (threshold_id, crossing_key, billing_account_id, kind, message, event_id,
                     crossed_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (threshold_id, crossing_key) DO NOTHING",
                args![
                    new.threshold_id.as_str(),
                    new.crossing_key.as_str(),
                    new.billing_account_id.as_str(),
                    new.kind.as_str(),
                    new.message.as_str(),
                    new.event_id.clone(),
                    to_ms(new.crossed_at),
                ],
            )
            .await?;
        Ok(written == 1)
    }

    /// Notes the hub event published with crossing (`threshold_id`, `crossing_key`).
    pub async fn set_crossing_event(&mut self, threshold_id: &str, crossing_key: &str, event_id: &str) -> Result<()> {
        self.execute(
            "threshold_crossings.event",
            "UPDATE threshold_crossings SET event_id = $3 WHERE threshold_id = $1 AND crossing_key = $2",
            args![threshold_id, crossing_key, event_id],
        )
        .await?;
        Ok(())
    }
}

impl Store {
    /// The thresholds of billing account `id`, oldest first.
    pub async fn thresholds_of(&self, id: &str) -> Result<Vec<ThresholdRow>> {
        let mut tx = self.read().await?;
        tx.thresholds_of(id).await
    }

    /// Every threshold with its account's engine id and currency, by account: what the
    /// evaluation watches.
    pub async fn watched_thresholds(&self) -> Result<Vec<WatchedThreshold>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {COLUMNS}, b.seq AS account_seq, b.currency AS currency FROM thresholds t
             JOIN billing_accounts b ON b.id = t.billing_account_id ORDER BY b.seq, t.seq"
        );
        let rows = tx.fetch_all("thresholds.watched", &sql, vec![]).await?;
        rows.iter()
            .map(|row| {
                Ok(WatchedThreshold {
                    engine_account_id: engine_id(row.int("account_seq")?),
                    currency: row.text("currency")?,
                    threshold: threshold(row)?,
                })
            })
            .collect()
    }

    /// Threshold `id`, if there is one.
    pub async fn threshold(&self, id: &str) -> Result<Option<ThresholdRow>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {COLUMNS} FROM thresholds t WHERE t.id = $1");
        tx.fetch_optional("thresholds.get", &sql, args![id]).await?.as_ref().map(threshold).transpose()
    }

    /// A page of billing account `id`'s crossings, the latest first (`limit` capped at
    /// [`CROSSING_PAGE_MAX`]), and how many it has.
    pub async fn crossing_page(&self, id: &str, offset: u64, limit: u32) -> Result<(Vec<CrossingRow>, i64)> {
        let mut tx = self.read().await?;
        let offset = crate::customers::offset_arg(offset)?;
        let total = tx
            .fetch_one(
                "threshold_crossings.count",
                "SELECT COUNT(*) AS n FROM threshold_crossings WHERE billing_account_id = $1",
                args![id],
            )
            .await?
            .int("n")?;
        let rows = tx
            .fetch_all(
                "threshold_crossings.page",
                &format!("{CROSSINGS_OF} DESC LIMIT $2 OFFSET $3"),
                args![id, i64::from(limit.min(CROSSING_PAGE_MAX)), offset],
            )
            .await?;
        Ok((rows.iter().map(crossing).collect::<Result<Vec<_>>>()?, total))
    }

    /// The crossings of billing account `id`, oldest first, at most `limit` (capped at
    /// [`CROSSING_PAGE_MAX`]).
    pub async fn crossings_of(&self, id: &str, limit: u32) -> Result<Vec<CrossingRow>> {
        let mut tx = self.read().await?;
        let limit = i64::from(limit.min(CROSSING_PAGE_MAX));
        let rows =
            tx.fetch_all("threshold_crossings.of", &format!("{CROSSINGS_OF} LIMIT $2"), args![id, limit]).await?;
        rows.iter().map(crossing).collect()
    }
}

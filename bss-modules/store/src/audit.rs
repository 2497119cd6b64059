//! The audit trail: every change, who made it, when, and the entity before and after,
//! appended in the transaction of the change itself ([`Tx::audit`]), so a change is never
//! committed without its record nor recorded without being committed.
//!
//! The trail is append-only twice over. The database refuses changes: a trigger raises on
//! `UPDATE` and `DELETE` (and `TRUNCATE` on PostgreSQL). And the rows form a SHA-256 hash
//! chain: each row's `hash` covers its fields and the previous row's hash, so
//! [`Store::verify_audit_chain`] finds a row that was altered, removed or inserted by
//! someone who got past the trigger (a DBA who dropped it, a file edited by hand). The
//! chain's head (`audit_head`: last sequence number and hash) is one row that every append
//! locks (`SELECT … FOR UPDATE` on PostgreSQL; SQLite has one writer), so concurrent
//! appends queue and the chain never forks. [`Tx::audit`] only checks and keeps the record:
//! [`Tx::commit`] appends the transaction's records just before it commits, so the head is
//! held for those statements and the commit rather than the whole transaction (on
//! PostgreSQL every audited transaction queues on it: the shorter, the more commit), and
//! the chain's order is the order the changes committed in. Someone able to rewrite the whole table and head can recompute the chain: to
//! catch that, copy [`Store::audit_head`] somewhere they cannot write, from time to time.

use jiff::Timestamp;
use ring::digest::{Context, SHA256};

use crate::codec::{json_text, parse_json, to_ms};
use crate::error::{Result, StoreError};
use crate::hash::hex;
use crate::sql::{args, Row};
use crate::{Store, Tx};

/// The hash before the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Entries read per query when verifying or listing.
pub const AUDIT_PAGE_MAX: u32 = 1000;

/// One change to record.
#[derive(Debug, Clone, Copy)]
pub struct AuditRecord<'a> {
    /// Who: a token's name, `cli:<user>`, `system:<component>`.
    pub actor: &'a str,
    /// What: `create`, `update`, `delete`, `revoke`, …
    pub action: &'a str,
    pub entity_type: &'a str,
    pub entity_id: &'a str,
    /// The entity before the change (`None` for a creation).
    pub before: Option<&'a serde_json::Value>,
    /// The entity after the change (`None` for a deletion).
    pub after: Option<&'a serde_json::Value>,
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub prev_hash: String,
    pub hash: String,
}

/// The end of the chain: the last entry's sequence number and hash (0 and
/// [`GENESIS_HASH`] when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

/// What [`Store::verify_audit_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every entry is there, unchanged, and the head names the last one.
    Intact { entries: i64, head: AuditHead },
    /// The first place where the chain does not hold.
    Broken { seq: i64, problem: String },
}

/// The fields as stored, from which the hash is computed.
struct Fields<'a> {
    seq: i64,
    at_ms: i64,
    actor: &'a str,
    action: &'a str,
    entity_type: &'a str,
    entity_id: &'a str,
    before_json: Option<&'a str>,
    after_json: Option<&'a str>,
    prev_hash: &'a str,
}

impl Fields<'_> {
    /// SHA-256 over a versioned tag, the two numbers big-endian, then each text field as a
    /// presence byte, a big-endian length and its UTF-8 bytes: no two different rows
    /// encode the same.
    fn hash(&self) -> String {
        let mut context = Context::new(&SHA256);
        context.update(b"tollgate-audit-v1\0");
        context.update(&self.seq.to_be_bytes());
        context.update(&self.at_ms.to_be_bytes());
        let texts = [
            Some(self.actor),
            Some(self.action),
            Some(self.entity_type),
            Some(self.entity_id),
            self.before_json,
            self.after_json,
            Some(self.prev_hash),
        ];
        for text in texts {
            match text {
                None => context.update(&[0]),
                Some(text) => {
                    context.update(&[1]);
                    context.update(&(text.len() as u64).to_be_bytes());
                    context.update(text.as_bytes());
                }
            }
        }
        hex(context.finish().as_ref())
    }
}

const COLUMNS: &str = "seq, at_ms, actor, action, entity_type, entity_id, before_json, after_json, prev_hash, hash";

/// An entry and the hash its stored fields give.
fn entry(row: &Row) -> Result<(AuditEntry, String)> {
    let before_json = row.opt_text("before_json")?;
    let after_json = row.opt_text("after_json")?;
    let entry = AuditEntry {
        seq: row.int("seq")?,
        at: row.timestamp("at_ms")?,
        actor: row.text("actor")?,
        action: row.text("action")?,
        entity_type: row.text("entity_type")?,
        entity_id: row.text("entity_id")?,
        before: before_json.as_deref().map(|text| parse_json(row, "before_json", text)).transpose()?,
        after: after_json.as_deref().map(|text| parse_json(row, "after_json", text)).transpose()?,
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
    };
    let computed = Fields {
        seq: entry.seq,
        at_ms: row.int("at_ms")?,
        actor: &entry.actor,
        action: &entry.action,
        entity_type: &entry.entity_type,
        entity_id: &entry.entity_id,
        before_json: before_json.as_deref(),
        after_json: after_json.as_deref(),
        prev_hash: &entry.prev_hash,
    }
    .hash();
    Ok((entry, computed))
}

/// An audit record kept by its transaction until the commit appends it.
#[derive(Debug)]
pub(crate) struct PendingAudit {
    at_ms: i64,
    actor: String,
    action: String,
    entity_type: String,
    entity_id: String,
    before_json: Option<String>,
    after_json: Option<String>,
}

impl Tx {
    /// Records a change made in this transaction: checked now, appended to the chain when
    /// the transaction commits (in the order recorded), gone with it if it rolls back.
    pub async fn audit(&mut self, record: AuditRecord<'_>, now: Timestamp) -> Result<()> {
        for (field, value) in [
            ("actor", record.actor),
            ("action", record.action),
            ("entity_type", record.entity_type),
            ("entity_id", record.entity_id),
        ] {
            if value.is_empty() {
                return Err(StoreError::Invalid { field, reason: "empty".into() });
            }
        }
        self.audits.push(PendingAudit {
            at_ms: to_ms(now),
            actor: record.actor.to_owned(),
            action: record.action.to_owned(),
            entity_type: record.entity_type.to_owned(),
            entity_id: record.entity_id.to_owned(),
            before_json: record.before.map(|value| json_text("before", value)).transpose()?,
            after_json: record.after.map(|value| json_text("after", value)).transpose()?,
        });
        Ok(())
    }

    /// Appends the records kept by [`Tx::audit`] to the chain, holding its head until the
    /// transaction ends; [`Tx::commit`] calls it last.
    pub(crate) async fn append_audits(&mut self) -> Result<()> {
        if self.audits.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.audits);
        let sql = format!("SELECT seq, hash FROM audit_head WHERE id = 1{}", self.dialect().lock_rows());
        let head = self.fetch_one("audit.append", &sql, vec![]).await?;
        let mut seq = head.int("seq")?;
        let mut prev_hash = head.text("hash")?;
        // The records go in a few multi-row statements (a bill run audits a batch of
        // documents in one transaction), each row chained to the one before.
        let mut values = Vec::with_capacity(records.len() * 10);
        for record in records {
            seq += 1;
            let hash = Fields {
                seq,
                at_ms: record.at_ms,
                actor: &record.actor,
                action: &record.action,
                entity_type: &record.entity_type,
                entity_id: &record.entity_id,
                before_json: record.before_json.as_deref(),
                after_json: record.after_json.as_deref(),
                prev_hash: &prev_hash,
            }
            .hash();
            values.extend(args![
                seq,
                record.at_ms,
                record.actor,
                record.action,
                record.entity_type,
                record.entity_id,
                record.before_json,
                record.after_json,
                prev_hash,
                hash.clone()
            ]);
            prev_hash = hash;
        }
        let head = format!("INSERT INTO audit_log ({COLUMNS})");
        crate::bulk::insert_many(self, "audit.append", &head, 10, values, "").await?;
        self.execute("audit.append", "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", args![seq, prev_hash])
            .await?;
        Ok(())
    }
}

impl Store {
    /// The chain's head.
    pub async fn audit_head(&self) -> Result<AuditHead> {
        let mut tx = self.read().await?;
        let row = tx.fetch_one("audit.head", "SELECT seq, hash FROM audit_head WHERE id = 1", vec![]).await?;
        Ok(AuditHead { seq: row.int("seq")?, hash: row.text("hash")? })
    }

    /// Entries after `after_seq`, oldest first, at most `limit` (capped at
    /// [`AUDIT_PAGE_MAX`]); for one entity when `entity` is `(type, id)`.
    pub async fn audit_entries(
        &self,
        entity: Option<(&str, &str)>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let limit = i64::from(limit.min(AUDIT_PAGE_MAX));
        let mut tx = self.read().await?;
        let rows = match entity {
            None => {
                tx.fetch_all(
                    "audit.entries",
                    &format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
                    args![after_seq, limit],
                )
                .await?
            }
            Some((entity_type, entity_id)) => {
                tx.fetch_all(
                    "audit.entries",
                    &format!(
                        "SELECT {COLUMNS} FROM audit_log WHERE entity_type = $1 AND entity_id = $2 AND seq > $3
                         ORDER BY seq LIMIT $4"
                    ),
                    args![entity_type, entity_id, after_seq, limit],
                )
                .await?
            }
        };
        rows.iter().map(|row| entry(row).map(|(entry, _)| entry)).collect()
    }

    /// Entries of entity type `entity_type` after `after_seq`, oldest first, at most
    /// `limit` (capped at [`AUDIT_PAGE_MAX`]): a change log of one kind of entity, read
    /// by a follower (the alarm trap forwarder) from where it left off.
    pub async fn audit_entries_of_type(
        &self,
        entity_type: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let limit = i64::from(limit.min(AUDIT_PAGE_MAX));
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "audit.entries_of_type",
                &format!("SELECT {COLUMNS} FROM audit_log WHERE entity_type = $1 AND seq > $2 ORDER BY seq LIMIT $3"),
                args![entity_type, after_seq, limit],
            )
            .await?;
        rows.iter().map(|row| entry(row).map(|(entry, _)| entry)).collect()
    }

    /// Walks the whole chain in one snapshot, a page at a time: every sequence number from
    /// 1 present, each entry's hash matching its fields and naming its predecessor's, and
    /// the head naming the last entry.
    pub async fn verify_audit_chain(&self) -> Result<ChainCheck> {
        let mut tx = self.read().await?;
        let mut prev_seq = 0;
        let mut prev_hash = GENESIS_HASH.to_owned();
        loop {
            let rows = tx
                .fetch_all(
                    "audit.verify",
                    &format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
                    args![prev_seq, i64::from(AUDIT_PAGE_MAX)],
                )
                .await?;
            for row in &rows {
                let (entry, computed) = entry(row)?;
                let broken = |problem: String| Ok(ChainCheck::Broken { seq: entry.seq, problem });
                if entry.seq != prev_seq + 1 {
                    return broken(format!("entries {} to {} are missing", prev_seq + 1, entry.seq - 1));
                }
                if entry.prev_hash != prev_hash {
                    return broken(format!(
                        "prev_hash {} does not name the previous entry's hash {prev_hash}",
                        entry.prev_hash
                    ));
                }
                if entry.hash != computed {
                    return broken(format!("stored hash {} but the entry's fields hash to {computed}", entry.hash));
                }
                prev_seq = entry.seq;
                prev_hash = entry.hash;
            }
            if rows.len() < AUDIT_PAGE_MAX as usize {
                break;
            }
        }
        let head = tx.fetch_one("audit.verify", "SELECT seq, hash FROM audit_head WHERE id = 1", vec![]).await?;
        let head = AuditHead { seq: head.int("seq")?, hash: head.text("hash")? };
        if head.seq != prev_seq || head.hash != prev_hash {
            return Ok(ChainCheck::Broken {
                seq: prev_seq + 1,
                problem: format!(
                    "the chain ends at entry {prev_seq} but the head names entry {} with hash {}",
                    head.seq, head.hash
                ),
            });
        }
        Ok(ChainCheck::Intact { entries: prev_seq, head })
    }
}

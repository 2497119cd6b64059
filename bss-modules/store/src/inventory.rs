//! The resource inventory's rows: number ranges and their MSISDNs, SIM batches and their
//! cards, network elements. MSISDNs and SIM cards are *pool* rows ([`PoolKind`]) that share
//! one lifecycle: `state`, `owner` (who reserved it: an order), `subscription_id` (whom it
//! is assigned to) and `free_at_ms`, the instant from which the row may be reserved (the
//! instant it became available, the end of a reservation or of a quarantine; NULL while
//! assigned or retired). A reservation or quarantine past its end therefore counts as
//! available without anyone sweeping it.
//!
//! **A number or SIM is never handed out twice.** [`Tx::reserve_next`] is one statement:
//! `UPDATE … WHERE seq = (SELECT seq … WHERE free_at_ms <= now ORDER BY free_at_ms, seq
//! LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING …` on PostgreSQL, so concurrent
//! transactions, of one server or of several on one database, each lock and take a
//! different row; on SQLite the same statement runs under the database's one write lock
//! (`BEGIN IMMEDIATE`). An owner is unique among the rows of a table (a partial unique
//! index), so two requests of one order racing on PostgreSQL cannot both reserve: the
//! second is refused with [`StoreError::Raced`] and, run again, finds the first's row.
//! Lifecycle changes are optimistic (`WHERE … AND version = $n`).
//!
//! Loading a range inserts its numbers in one statement from an integer series (golden
//! numbers, with their price, first); loading a SIM batch inserts its cards in multi-row
//! statements and reports the ICCIDs whose ICCID or IMSI was already taken. What is valid,
//! what state follows which and what the keys are sealed with is `tollgate-inventory`'s.

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::codec::{json_text, parse_json, to_ms};
use crate::customers::{equalities, version_of, Page};
use crate::error::{Result, StoreError};
use crate::sql::{args, Arg, Row};
use crate::versioned::{delete_versioned, update_versioned, Version, Versioned};
use crate::{Store, Tx};

/// Rows a list returns at most, whatever the caller asks.
pub const INVENTORY_PAGE_MAX: u32 = 1000;

/// Rows one multi-row `INSERT` carries (golden numbers, SIM cards).
const INSERT_CHUNK: usize = 500;

/// The two kinds of row handed out from the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// A telephone number (E.164 digits), from a number range.
    Msisdn,
    /// A SIM card (ICCID, IMSI, sealed keys), from a vendor's batch.
    Sim,
}

impl PoolKind {
    fn table(self) -> &'static str {
        match self {
            PoolKind::Msisdn => "msisdns",
            PoolKind::Sim => "sims",
        }
    }

    fn key(self) -> &'static str {
        match self {
            PoolKind::Msisdn => "msisdn",
            PoolKind::Sim => "iccid",
        }
    }

    fn group(self) -> &'static str {
        match self {
            PoolKind::Msisdn => "range_id",
            PoolKind::Sim => "batch_id",
        }
    }

    /// The entity named in errors.
    pub fn entity(self) -> &'static str {
        match self {
            PoolKind::Msisdn => "MSISDN",
            PoolKind::Sim => "SIM card",
        }
    }

    fn columns(self) -> &'static str {
        match self {
            PoolKind::Msisdn => "msisdn, range_id, state, free_at_ms, owner, subscription_id, price, currency, version",
            PoolKind::Sim => {
                "iccid, imsi, batch_id, state, free_at_ms, owner, subscription_id,
                 CAST(CASE WHEN ki_sealed IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_keys, version"
            }
        }
    }

    /// What else a row must be to be the next one reserved: never a golden number.
    fn reservable(self) -> &'static str {
        match self {
            PoolKind::Msisdn => " AND price IS NULL",
            PoolKind::Sim => "",
        }
    }

    fn key_arg(self, value: &str) -> Result<Arg> {
        match self {
            PoolKind::Msisdn => value
                .parse::<i64>()
                .map(Arg::from)
                .map_err(|_| StoreError::Invalid { field: "msisdn", reason: format!("{value:?} is not a number") }),
            PoolKind::Sim => Ok(Arg::from(value)),
        }
    }

    fn decode(self) -> fn(&Row) -> Result<Versioned<PoolRow>> {
        match self {
            PoolKind::Msisdn => msisdn_row,
            PoolKind::Sim => sim_row,
        }
    }
}

/// An MSISDN or a SIM card as stored (never a SIM's keys: [`Store::sim_sealed_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRow {
    pub kind: PoolKind,
    /// The MSISDN's digits or the ICCID.
    pub value: String,
    /// The number range or SIM batch it was loaded with.
    pub group_id: Option<String>,
    /// `available`, `reserved`, `assigned`, `quarantine` (MSISDN) or `retired` (SIM), as
    /// last written: a reservation or quarantine past `free_at` counts as available.
    pub state: String,
    /// From when it may be reserved; `None` while assigned or retired.
    pub free_at: Option<Timestamp>,
    pub owner: Option<String>,
    pub subscription_id: Option<String>,
    /// A golden number's one-time price and its currency.
    pub price: Option<(Decimal, String)>,
    /// A SIM's IMSI.
    pub imsi: Option<String>,
    /// Whether a SIM has sealed keys.
    pub has_keys: bool,
}

/// A lifecycle change of a pool row, as `tollgate-inventory` decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolChange<'a> {
    pub state: &'a str,
    pub free_at: Option<Timestamp>,
    pub owner: Option<&'a str>,
    pub subscription_id: Option<&'a str>,
}

/// What a pool list may be narrowed by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolFilter {
    /// The state as it counts at `now`: `available` includes reservations and quarantines
    /// past their end; `reserved` and `quarantine` only those still running.
    pub state: Option<(String, Timestamp)>,
    pub group_id: Option<String>,
    pub value: Option<String>,
    /// Only golden numbers (`true`) or only the others (`false`).
    pub golden: Option<bool>,
    pub owner: Option<String>,
    pub subscription_id: Option<String>,
}

/// A number range as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberRangeRow {
    pub id: String,
    pub name: String,
    pub first: i64,
    pub last: i64,
    /// How many of its numbers are golden.
    pub golden_count: i64,
    /// The golden rules it was loaded with, for the record.
    pub rules: Value,
    pub created_at: Timestamp,
}

/// A golden number of a range being loaded, or a single number: its price if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMsisdn {
    pub msisdn: i64,
    pub price: Option<(Decimal, String)>,
}

/// Where an MSISDN range being loaded meets what the inventory has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlap {
    /// A loaded range, `first..=last`.
    Range { id: String, name: String, first: i64, last: i64 },
    /// A number loaded on its own.
    Number(i64),
}

/// A SIM batch (one vendor output file) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SimBatchRow {
    pub id: String,
    pub name: String,
    pub cards: i64,
    /// The file's header lines (never key material).
    pub header: Value,
    pub file_sha256: String,
    pub created_at: Timestamp,
}

/// A SIM card to insert: its keys already sealed by `tollgate-inventory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSim {
    pub iccid: String,
    pub imsi: String,
    pub ki_sealed: Option<String>,
    pub opc_sealed: Option<String>,
}

/// A SIM's sealed keys as stored (opened only by `tollgate-inventory` with its key).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKeys {
    pub ki: Option<String>,
    pub opc: Option<String>,
}

impl std::fmt::Debug for SealedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedKeys").field("ki", &self.ki.is_some()).field("opc", &self.opc.is_some()).finish()
    }
}

/// A network element (HSS/UDM, PCRF/PCF, SMSC, a gateway) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkElementRow {
    pub id: String,
    pub name: String,
    pub element_type: String,
    pub address: String,
    pub status: String,
    /// The document the API shows.
    pub doc: Value,
}

/// What a network element list may be narrowed by (equality on each given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkElementFilter {
    pub name: Option<String>,
    pub element_type: Option<String>,
    pub status: Option<String>,
}

fn opt_ms(at: Option<Timestamp>) -> Option<i64> {
    at.map(to_ms)
}

fn msisdn_row(row: &Row) -> Result<Versioned<PoolRow>> {
    let price = match (row.opt_money("price")?, row.opt_text("currency")?) {
        (Some(amount), Some(currency)) => Some((amount, currency)),
        _ => None,
    };
    Ok(Versioned {
        value: PoolRow {
            kind: PoolKind::Msisdn,
            value: row.int("msisdn")?.to_string(),
            group_id: row.opt_text("range_id")?,
            state: row.text("state")?,
            free_at: row.opt_timestamp("free_at_ms")?,
            owner: row.opt_text("owner")?,
            subscription_id: row.opt_text("subscription_id")?,
            price,
            imsi: None,
            has_keys: false,
        },
        version: version_of(row)?,
    })
}

fn sim_row(row: &Row) -> Result<Versioned<PoolRow>> {
    Ok(Versioned {
        value: PoolRow {
            kind: PoolKind::Sim,
            value: row.text("iccid")?,
            group_id: row.opt_text("batch_id")?,
            state: row.text("state")?,
            free_at: row.opt_timestamp("free_at_ms")?,
            owner: row.opt_text("owner")?,
            subscription_id: row.opt_text("subscription_id")?,
            price: None,
            imsi: Some(row.text("imsi")?),
            has_keys: row.int("has_keys")? != 0,
        },
        version: version_of(row)?,
    })
}

fn range_row(row: &Row) -> Result<NumberRangeRow> {
    let rules = row.text("rules_json")?;
    Ok(NumberRangeRow {
        id: row.text("id")?,
        name: row.text("name")?,
        first: row.int("first_msisdn")?,
        last: row.int("last_msisdn")?,
        golden_count: row.int("golden_count")?,
        rules: parse_json(row, "rules_json", &rules)?,
        created_at: row.timestamp("created_at_ms")?,
    })
}

fn batch_row(row: &Row) -> Result<SimBatchRow> {
    let header = row.text("header_json")?;
    Ok(SimBatchRow {
        id: row.text("id")?,
        name: row.text("name")?,
        cards: row.int("cards")?,
        header: parse_json(row, "header_json", &header)?,
        file_sha256: row.text("file_sha256")?,
        created_at: row.timestamp("created_at_ms")?,
    })
}

const ELEMENT_COLUMNS: &str = "id, name, element_type, address, status, doc_json, version";

fn element_row(row: &Row) -> Result<Versioned<NetworkElementRow>> {
    let doc = row.text("doc_json")?;
    Ok(Versioned {
        value: NetworkElementRow {
            id: row.text("id")?,
            name: row.text("name")?,
            element_type: row.text("element_type")?,
            address: row.text("address")?,
            status: row.text("status")?,
            doc: parse_json(row, "doc_json", &doc)?,
        },
        version: version_of(row)?,
    })
}

/// A unique violation on the owner index, as the error a caller retries on.
fn raced(owner: &str) -> impl FnOnce(StoreError) -> StoreError + '_ {
    move |error| {
        if error.is_unique_violation() {
            StoreError::Raced { what: "reservation owner", key: owner.to_owned() }
        } else {
            error
        }
    }
}

/// `(…), (…)` for `rows` rows of `width` placeholders, numbered from `$1`.
fn values_rows(rows: usize, width: usize, suffix: &str) -> String {
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = (1..=width).map(|cell| format!("${}", row * width + cell)).collect();
            format!("({}{suffix})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Tx {
    /// The first range or single number of the inventory that `first..=last` meets, if any.
    pub async fn number_range_overlap(&mut self, first: i64, last: i64) -> Result<Option<Overlap>> {
        let range = self
            .fetch_optional(
                "number_ranges.overlap",
                "SELECT id, name, first_msisdn, last_msisdn FROM number_ranges
                 WHERE first_msisdn <= $2 AND last_msisdn >= $1 ORDER BY first_msisdn LIMIT 1",
                args![first, last],
            )
            .await?;
        if let Some(row) = range {
            return Ok(Some(Overlap::Range {
                id: row.text("id")?,
                name: row.text("name")?,
                first: row.int("first_msisdn")?,
                last: row.int("last_msisdn")?,
            }));
        }
        let number = self
            .fetch_optional(
                "number_ranges.overlap",
                "SELECT msisdn FROM msisdns WHERE msisdn BETWEEN $1 AND $2 ORDER BY msisdn LIMIT 1",
                args![first, last],
            )
            .await?;
        number.map(|row| row.int("msisdn").map(Overlap::Number)).transpose()
    }

    /// Loads a range: its row, its `golden` numbers with their prices, then every other
    /// number of `first..=last`, all available from `now`. `Conflict` if a number is
    /// already in the inventory (check [`Tx::number_range_overlap`] first to say where).
    pub async fn insert_number_range(
        &mut self,
        range: &NumberRangeRow,
        golden: &[NewMsisdn],
        now: Timestamp,
    ) -> Result<()> {
        let rules = json_text("rules", &range.rules)?;
        let inserted = self
            .execute(
                "number_ranges.insert",
                "INSERT INTO number_ranges (id, name, first_msisdn, last_msisdn, golden_count, rules_json, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                args![
                    range.id.as_str(),
                    range.name.as_str(),
                    range.first,
                    range.last,
                    range.golden_count,
                    rules,
                    to_ms(range.created_at)
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { what: "number range", key: range.id.clone() });
        }
        let mut loaded = self.insert_msisdns(Some(&range.id), golden, now).await?;
        let series = self.dialect().integer_series(1, 2);
        loaded += self
            .execute(
                "msisdns.load_range",
                &format!(
                    "{series}
                     INSERT INTO msisdns (msisdn, range_id, state, free_at_ms, version, updated_at_ms)
                     SELECT n, $3, 'available', 0, 1, $4 FROM series WHERE 1 = 1
                     ON CONFLICT (msisdn) DO NOTHING"
                ),
                args![range.first, range.last, range.id.as_str(), to_ms(now)],
            )
            .await?;
        let size = u64::try_from(range.last - range.first + 1).unwrap_or(0);
        if loaded != size {
            return Err(StoreError::Conflict {
                what: "number range",
                key: format!(
                    "{}..{} ({} of its numbers are already in the inventory)",
                    range.first,
                    range.last,
                    size.saturating_sub(loaded)
                ),
            });
        }
        Ok(())
    }

    /// Inserts numbers of a range (or, with `None`, single ones), available from `now`;
    /// returns how many were inserted (a number already there is skipped).
    async fn insert_msisdns(&mut self, range_id: Option<&str>, numbers: &[NewMsisdn], now: Timestamp) -> Result<u64> {
        let mut inserted = 0;
        for chunk in numbers.chunks(INSERT_CHUNK) {
            let width = 3;
            let base = chunk.len() * width;
            let sql = format!(
                "INSERT INTO msisdns (msisdn, price, currency, range_id, state, free_at_ms, version, updated_at_ms)
                 VALUES {} ON CONFLICT (msisdn) DO NOTHING",
                values_rows(chunk.len(), width, &format!(", ${}, 'available', 0, 1, ${}", base + 1, base + 2))
            );
            let mut values = Vec::with_capacity(base + 2);
            for number in chunk {
                values.push(Arg::from(number.msisdn));
                values.push(Arg::from(number.price.as_ref().map(|(amount, _)| *amount)));
                values.push(Arg::from(number.price.as_ref().map(|(_, currency)| currency.as_str())));
            }
            values.push(Arg::from(range_id));
            values.push(Arg::from(to_ms(now)));
            inserted += self.execute("msisdns.insert", &sql, values).await?;
        }
        Ok(inserted)
    }

    /// Inserts one number outside any range (a number ported in, say); `Conflict` if it is
    /// already in the inventory.
    pub async fn insert_msisdn(&mut self, number: &NewMsisdn, now: Timestamp) -> Result<Versioned<PoolRow>> {
        if self.insert_msisdns(None, std::slice::from_ref(number), now).await? == 0 {
            return Err(StoreError::Conflict { what: "MSISDN", key: number.msisdn.to_string() });
        }
        let row = self.pool_row(PoolKind::Msisdn, &number.msisdn.to_string()).await?;
        row.ok_or(StoreError::NotFound { entity: "MSISDN", id: number.msisdn.to_string() })
    }

    /// Loads a SIM batch and its cards, available from `now`. Returns the ICCIDs of the
    /// cards not inserted because their ICCID or IMSI is already in the inventory (the
    /// caller rolls back and says which line); `Conflict` if the batch name is taken.
    pub async fn insert_sim_batch(
        &mut self,
        batch: &SimBatchRow,
        cards: &[NewSim],
        now: Timestamp,
    ) -> Result<Vec<String>> {
        let header = json_text("header", &batch.header)?;
        let inserted = self
            .execute(
                "sim_batches.insert",
                "INSERT INTO sim_batches (id, name, cards, header_json, file_sha256, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                args![
                    batch.id.as_str(),
                    batch.name.as_str(),
                    batch.cards,
                    header,
                    batch.file_sha256.as_str(),
                    to_ms(batch.created_at)
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { what: "SIM batch", key: batch.name.clone() });
        }
        self.insert_sims(Some(&batch.id), cards, now).await
    }

    /// Inserts SIM cards of a batch (or, with `None`, single ones); returns the ICCIDs not
    /// inserted because their ICCID or IMSI was taken.
    pub async fn insert_sims(
        &mut self,
        batch_id: Option<&str>,
        cards: &[NewSim],
        now: Timestamp,
    ) -> Result<Vec<String>> {
        let mut taken = Vec::new();
        for chunk in cards.chunks(INSERT_CHUNK) {
            let width = 4;
            let base = chunk.len() * width;
            let sql = format!(
                "INSERT INTO sims (iccid, imsi, ki_sealed, opc_sealed, batch_id, state, free_at_ms, version, updated_at_ms)
                 VALUES {} ON CONFLICT DO NOTHING RETURNING iccid",
                values_rows(chunk.len(), width, &format!(", ${}, 'available', 0, 1, ${}", base + 1, base + 2))
            );
            let mut values = Vec::with_capacity(base + 2);
            for card in chunk {
                values.push(Arg::from(card.iccid.as_str()));
                values.push(Arg::from(card.imsi.as_str()));
                values.push(Arg::from(card.ki_sealed.clone()));
                values.push(Arg::from(card.opc_sealed.clone()));
            }
            values.push(Arg::from(batch_id));
            values.push(Arg::from(to_ms(now)));
            let rows = self.fetch_all("sims.insert", &sql, values).await?;
            let inserted =
                rows.iter().map(|row| row.text("iccid")).collect::<Result<std::collections::HashSet<_>>>()?;
            taken.extend(chunk.iter().filter(|card| !inserted.contains(&card.iccid)).map(|card| card.iccid.clone()));
        }
        Ok(taken)
    }

    /// A pool row read in this transaction (locked until it ends on PostgreSQL).
    pub async fn pool_row(&mut self, kind: PoolKind, value: &str) -> Result<Option<Versioned<PoolRow>>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = $1{}",
            kind.columns(),
            kind.table(),
            kind.key(),
            self.dialect().lock_rows()
        );
        let key = kind.key_arg(value)?;
        self.fetch_optional("inventory.get", &sql, vec![key]).await?.as_ref().map(kind.decode()).transpose()
    }

    /// The row `owner` holds (reserved or assigned), locked until the transaction ends.
    pub async fn pool_row_of_owner(&mut self, kind: PoolKind, owner: &str) -> Result<Option<Versioned<PoolRow>>> {
        let sql =
            format!("SELECT {} FROM {} WHERE owner = $1{}", kind.columns(), kind.table(), self.dialect().lock_rows());
        self.fetch_optional("inventory.of_owner", &sql, args![owner]).await?.as_ref().map(kind.decode()).transpose()
    }

    /// Whether the number range or SIM batch `id` exists.
    pub async fn pool_group_exists(&mut self, kind: PoolKind, id: &str) -> Result<bool> {
        let table = match kind {
            PoolKind::Msisdn => "number_ranges",
            PoolKind::Sim => "sim_batches",
        };
        let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE id = $1");
        Ok(self.fetch_one("inventory.group", &sql, args![id]).await?.int("n")? > 0)
    }

    /// Reserves the next free row for `owner` until `until`, in one statement: the row
    /// free longest (then the first loaded), never a golden number, only of `group_id`
    /// (range or batch) when given. `None` when none is free. [`StoreError::Raced`] when
    /// a concurrent transaction reserved for the same owner first.
    pub async fn reserve_next(
        &mut self,
        kind: PoolKind,
        owner: &str,
        until: Timestamp,
        group_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Versioned<PoolRow>>> {
        let group = if group_id.is_some() { format!(" AND {} = $4", kind.group()) } else { String::new() };
        let sql = |lock: &str| {
            format!(
                "UPDATE {table} SET state = 'reserved', owner = $1, subscription_id = NULL, free_at_ms = $2,
                     version = version + 1, updated_at_ms = $3
                 WHERE seq = (SELECT seq FROM {table} WHERE free_at_ms <= $3{reservable}{group}
                              ORDER BY free_at_ms, seq LIMIT 1{lock})
                 RETURNING {columns}",
                table = kind.table(),
                reservable = kind.reservable(),
                columns = kind.columns(),
            )
        };
        let mut values = args![owner, to_ms(until), to_ms(now)];
        if let Some(group) = group_id {
            values.push(Arg::from(group));
        }
        let dialect = self.dialect();
        let skipping = sql(dialect.lock_rows_skip_locked());
        let mut row =
            self.fetch_optional("inventory.reserve_next", &skipping, values.clone()).await.map_err(raced(owner))?;
        if row.is_none() && dialect == crate::sql::Dialect::Postgres {
            // Every free row may be locked by a transaction still ending (one dropped after
            // an error, whose rollback the pool sends a moment later): wait for those locks
            // rather than answer that none is free.
            let waiting = sql(dialect.lock_rows());
            row = self.fetch_optional("inventory.reserve_next", &waiting, values).await.map_err(raced(owner))?;
        }
        row.as_ref().map(kind.decode()).transpose()
    }

    /// Writes a lifecycle change to a row still at `expected`; the new version, or
    /// `NotFound` / `StaleVersion`, or [`StoreError::Raced`] when the owner was taken
    /// by a concurrent transaction.
    pub async fn change_pool_row(
        &mut self,
        kind: PoolKind,
        value: &str,
        expected: Version,
        change: PoolChange<'_>,
        now: Timestamp,
    ) -> Result<Version> {
        let sql = format!(
            "UPDATE {} SET state = $3, free_at_ms = $4, owner = $5, subscription_id = $6, updated_at_ms = $7,
                 version = version + 1
             WHERE {} = $1 AND version = $2 RETURNING version",
            kind.table(),
            kind.key()
        );
        let mut values = vec![kind.key_arg(value)?];
        values.extend(args![
            expected.get(),
            change.state,
            opt_ms(change.free_at),
            change.owner,
            change.subscription_id,
            to_ms(now)
        ]);
        let row = self
            .fetch_optional("inventory.change", &sql, values)
            .await
            .map_err(raced(change.owner.unwrap_or_default()))?;
        match row {
            Some(row) => version_of(&row),
            None => Err(self.why_not(kind, value, expected).await?),
        }
    }

    /// Sets or clears a number's golden price, if it is still at `expected`.
    pub async fn set_msisdn_price(
        &mut self,
        msisdn: &str,
        expected: Version,
        price: Option<(Decimal, &str)>,
        now: Timestamp,
    ) -> Result<Version> {
        let key = PoolKind::Msisdn.key_arg(msisdn)?;
        let mut values = vec![key];
        values.extend(args![expected.get(), price.map(|(amount, _)| amount), price.map(|(_, unit)| unit), to_ms(now)]);
        let row = self
            .fetch_optional(
                "msisdns.price",
                "UPDATE msisdns SET price = $3, currency = $4, updated_at_ms = $5, version = version + 1
                 WHERE msisdn = $1 AND version = $2 RETURNING version",
                values,
            )
            .await?;
        match row {
            Some(row) => version_of(&row),
            None => Err(self.why_not(PoolKind::Msisdn, msisdn, expected).await?),
        }
    }

    async fn why_not(&mut self, kind: PoolKind, value: &str, expected: Version) -> Result<StoreError> {
        let sql = format!("SELECT version FROM {} WHERE {} = $1", kind.table(), kind.key());
        let key = kind.key_arg(value)?;
        Ok(match self.fetch_optional("inventory.change", &sql, vec![key]).await? {
            None => StoreError::NotFound { entity: kind.entity(), id: value.to_owned() },
            Some(row) => StoreError::StaleVersion {
                entity: kind.entity(),
                id: value.to_owned(),
                expected: expected.get(),
                found: row.int("version")?,
            },
        })
    }

    /// Inserts a network element at [`Version::FIRST`]; `Conflict` if the id is taken.
    pub async fn insert_network_element(&mut self, new: &NetworkElementRow, now: Timestamp) -> Result<Version> {
        let doc = json_text("doc", &new.doc)?;
        let inserted = self
            .execute(
                "network_elements.insert",
                "INSERT INTO network_elements (id, name, element_type, address, status, doc_json, version,
                     created_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) ON CONFLICT (id) DO NOTHING",
                args![
                    new.id.as_str(),
                    new.name.as_str(),
                    new.element_type.as_str(),
                    new.address.as_str(),
                    new.status.as_str(),
                    doc,
                    to_ms(now)
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { what: "network element", key: new.id.clone() });
        }
        Ok(Version::FIRST)
    }

    /// Replaces a network element still at `expected`.
    pub async fn update_network_element(
        &mut self,
        row: &NetworkElementRow,
        expected: Version,
        now: Timestamp,
    ) -> Result<Version> {
        let doc = json_text("doc", &row.doc)?;
        update_versioned(
            self,
            "network element",
            "network_elements",
            &row.id,
            expected,
            "name = $3, element_type = $4, address = $5, status = $6, doc_json = $7, updated_at_ms = $8",
            args![
                row.name.as_str(),
                row.element_type.as_str(),
                row.address.as_str(),
                row.status.as_str(),
                doc,
                to_ms(now)
            ],
        )
        .await
    }

    /// Deletes a network element still at `expected`.
    pub async fn delete_network_element(&mut self, id: &str, expected: Version) -> Result<()> {
        delete_versioned(self, "network element", "network_elements", id, expected).await
    }

    /// A network element read in this transaction (locked until it ends on PostgreSQL).
    pub async fn network_element(&mut self, id: &str) -> Result<Option<Versioned<NetworkElementRow>>> {
        let sql = format!("SELECT {ELEMENT_COLUMNS} FROM network_elements WHERE id = $1{}", self.dialect().lock_rows());
        self.fetch_optional("network_elements.get", &sql, args![id]).await?.as_ref().map(element_row).transpose()
    }
}

impl Store {
    /// A pool row.
    pub async fn pool_row(&self, kind: PoolKind, value: &str) -> Result<Option<Versioned<PoolRow>>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {} FROM {} WHERE {} = $1", kind.columns(), kind.table(), kind.key());
        let key = kind.key_arg(value)?;
        tx.fetch_optional("inventory.get", &sql, vec![key]).await?.as_ref().map(kind.decode()).transpose()
    }

    /// The row `owner` holds (reserved or assigned), if any.
    pub async fn pool_row_of_owner(&self, kind: PoolKind, owner: &str) -> Result<Option<Versioned<PoolRow>>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {} FROM {} WHERE owner = $1", kind.columns(), kind.table());
        tx.fetch_optional("inventory.of_owner", &sql, args![owner]).await?.as_ref().map(kind.decode()).transpose()
    }

    /// Pool rows matching `filter`, in MSISDN or ICCID order: `limit` (at most
    /// [`INVENTORY_PAGE_MAX`]) from `offset`, and the number matching in all.
    pub async fn pool_list(
        &self,
        kind: PoolKind,
        filter: &PoolFilter,
        offset: u64,
        limit: u32,
    ) -> Result<Page<PoolRow>> {
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut values = Vec::new();
        if let Some((state, now)) = &filter.state {
            let now = Arg::from(to_ms(*now));
            let state_arg = Arg::from(state.as_str());
            let condition = match state.as_str() {
                "available" => {
                    values.push(now);
                    format!("free_at_ms <= ${}", values.len())
                }
                "reserved" | "quarantine" => {
                    values.extend([state_arg, now]);
                    format!("state = ${} AND free_at_ms > ${}", values.len() - 1, values.len())
                }
                _ => {
                    values.push(state_arg);
                    format!("state = ${}", values.len())
                }
            };
            conditions.push(condition);
        }
        if let Some(value) = &filter.value {
            values.push(kind.key_arg(value)?);
            conditions.push(format!("{} = ${}", kind.key(), values.len()));
        }
        match (kind, filter.golden) {
            (PoolKind::Msisdn, Some(true)) => conditions.push("price IS NOT NULL".into()),
            (PoolKind::Msisdn, Some(false)) => conditions.push("price IS NULL".into()),
            _ => {}
        }
        equalities(
            &[(kind.group(), &filter.group_id), ("owner", &filter.owner), ("subscription_id", &filter.subscription_id)],
            &mut conditions,
            &mut values,
        );
        let from_where = format!("{} WHERE {}", kind.table(), conditions.join(" AND "));
        let limit = limit.min(INVENTORY_PAGE_MAX);
        self.page_by("inventory.list", &from_where, kind.columns(), kind.key(), values, offset, limit, kind.decode())
            .await
    }

    /// How many of a range's numbers are in each state at `now` (as [`PoolFilter`] counts
    /// them: reservations and quarantines past their end are available).
    pub async fn number_range_counts(&self, range_id: &str, now: Timestamp) -> Result<Vec<(String, i64)>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "number_ranges.counts",
                "SELECT CASE WHEN free_at_ms <= $2 THEN 'available' ELSE state END AS effective, COUNT(*) AS n
                 FROM msisdns WHERE range_id = $1 GROUP BY 1 ORDER BY 1",
                args![range_id, to_ms(now)],
            )
            .await?;
        rows.iter().map(|row| Ok((row.text("effective")?, row.int("n")?))).collect()
    }

    /// Number ranges in load order: `limit` (at most [`INVENTORY_PAGE_MAX`]) from `offset`.
    pub async fn number_ranges(&self, offset: u64, limit: u32) -> Result<Vec<NumberRangeRow>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "number_ranges.list",
                "SELECT id, name, first_msisdn, last_msisdn, golden_count, rules_json, created_at_ms
                 FROM number_ranges ORDER BY seq LIMIT $1 OFFSET $2",
                args![i64::from(limit.min(INVENTORY_PAGE_MAX)), crate::customers::offset_arg(offset)?],
            )
            .await?;
        rows.iter().map(range_row).collect()
    }

    /// SIM batches in load order: `limit` (at most [`INVENTORY_PAGE_MAX`]) from `offset`.
    pub async fn sim_batches(&self, offset: u64, limit: u32) -> Result<Vec<SimBatchRow>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "sim_batches.list",
                "SELECT id, name, cards, header_json, file_sha256, created_at_ms
                 FROM sim_batches ORDER BY seq LIMIT $1 OFFSET $2",
                args![i64::from(limit.min(INVENTORY_PAGE_MAX)), crate::customers::offset_arg(offset)?],
            )
            .await?;
        rows.iter().map(batch_row).collect()
    }

    /// A SIM's sealed keys (`None` if there is no such SIM).
    pub async fn sim_sealed_keys(&self, iccid: &str) -> Result<Option<SealedKeys>> {
        let mut tx = self.read().await?;
        let row = tx
            .fetch_optional("sims.keys", "SELECT ki_sealed, opc_sealed FROM sims WHERE iccid = $1", args![iccid])
            .await?;
        row.map(|row| Ok(SealedKeys { ki: row.opt_text("ki_sealed")?, opc: row.opt_text("opc_sealed")? })).transpose()
    }

    /// A network element.
    pub async fn network_element(&self, id: &str) -> Result<Option<Versioned<NetworkElementRow>>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {ELEMENT_COLUMNS} FROM network_elements WHERE id = $1");
        tx.fetch_optional("network_elements.get", &sql, args![id]).await?.as_ref().map(element_row).transpose()
    }

    /// Network elements matching `filter`, in creation order: `limit` (at most
    /// [`INVENTORY_PAGE_MAX`]) from `offset`, and the number matching in all.
    pub async fn network_element_list(
        &self,
        filter: &NetworkElementFilter,
        offset: u64,
        limit: u32,
    ) -> Result<Page<NetworkElementRow>> {
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut values = Vec::new();
        equalities(
            &[("name", &filter.name), ("element_type", &filter.element_type), ("status", &filter.status)],
            &mut conditions,
            &mut values,
        );
        let from_where = format!("network_elements WHERE {}", conditions.join(" AND "));
        self.page("network_elements.list", &from_where, ELEMENT_COLUMNS, values, offset, limit, element_row).await
    }
}

//! Shard snapshots: the whole state of a shard at one LSN, so recovery replays only the
//! journal written after it.
//!
//! # Byte format (all integers little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `TGSNAP\r\n` |
//! | 8 | 4 | format version ([`SNAPSHOT_FORMAT_VERSION`]) |
//! | 12 | 4 | shard number |
//! | 16 | 8 | LSN of the last journal record included |
//! | 24 | 8 | payload length |
//! | 32 | 4 | CRC-32 (IEEE) of the payload |
//! | 36 | 4 | reserved, zero |
//! | 40 | n | rkyv archive of a [`SnapshotImage`] |
//!
//! Version history: 1 (names held as `String`), 2 (names shared as `Arc<str>`), 3 (adds
//! the bulk path's window of record keys), 4 (adds the online sessions' records). Versions
//! 2 and 3 are still read (version 2 had no bulk path, so its record window is empty; the
//! session records of both are rebuilt from their reservations, as a journal of that time
//! replays them).
//!
//! A snapshot is written to a temporary file, synced, and renamed over `shard-{S}.snapshot`,
//! so the file under the final name is always complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

use crate::api::Answer;
use crate::dedupe::sort_generations;
use crate::error::EngineError;
use crate::model::{Account, Reservation, SessionRecord, Subscription};
use crate::records::{Memo, RecordKey};
use crate::shard::{ShardState, Totals};

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"TGSNAP\r\n";
pub const SNAPSHOT_FORMAT_VERSION: u32 = 4;
const HEADER_BYTES: usize = 40;

/// The archived form of a shard's state, in a canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct SnapshotImage {
    pub lsn: u64,
    pub accounts: Vec<Account>,
    pub subscriptions: Vec<Subscription>,
    pub reservations: Vec<Reservation>,
    pub recent: Vec<(String, Answer)>,
    pub totals: Totals,
    /// The bulk path's window, the older generation first.
    pub recent_records: Vec<(u128, Memo)>,
    /// The online sessions, by session id.
    pub sessions: Vec<SessionRecord>,
}

/// The payload of a version 3 snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
struct SnapshotImageV3 {
    lsn: u64,
    accounts: Vec<Account>,
    subscriptions: Vec<Subscription>,
    reservations: Vec<Reservation>,
    recent: Vec<(String, Answer)>,
    totals: Totals,
    recent_records: Vec<(u128, Memo)>,
}

/// The payload of a version 2 snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
struct SnapshotImageV2 {
    lsn: u64,
    accounts: Vec<Account>,
    subscriptions: Vec<Subscription>,
    reservations: Vec<Reservation>,
    recent: Vec<(String, Answer)>,
    totals: Totals,
}

impl From<SnapshotImageV2> for SnapshotImageV3 {
    /// Version 2 had no bulk path: its record window is empty.
    fn from(old: SnapshotImageV2) -> SnapshotImageV3 {
        let SnapshotImageV2 { lsn, accounts, subscriptions, reservations, recent, totals } = old;
        SnapshotImageV3 { lsn, accounts, subscriptions, reservations, recent, totals, recent_records: Vec::new() }
    }
}

impl From<SnapshotImageV3> for SnapshotImage {
    /// Version 3 had no session records: [`SnapshotImage::into_state`] rebuilds them
    /// from the reservations.
    fn from(old: SnapshotImageV3) -> SnapshotImage {
        let SnapshotImageV3 { lsn, accounts, subscriptions, reservations, recent, totals, recent_records } = old;
        SnapshotImage {
            lsn,
            accounts,
            subscriptions,
            reservations,
            recent,
            totals,
            recent_records,
            sessions: Vec::new(),
        }
    }
}

/// A copy of a shard's state taken between batches, not yet in canonical order: taking
/// it is all a shard pauses for; sorting, encoding and writing happen on another thread.
#[derive(Debug, Clone)]
pub struct Captured {
    lsn: u64,
    accounts: Vec<Account>,
    subscriptions: Vec<Subscription>,
    reservations: Vec<Reservation>,
    recent: Vec<(Arc<str>, Arc<Answer>)>,
    /// How many of `recent` are its older generation.
    recent_older: usize,
    totals: Totals,
    recent_records: Vec<(u128, Memo)>,
    records_older: usize,
    sessions: Vec<SessionRecord>,
}

impl Captured {
    pub fn of(state: &ShardState) -> Captured {
        let (recent, recent_older) = state.recent.generations();
        let (records, records_older) = state.recent_records.generations();
        Captured {
            lsn: state.lsn,
            accounts: state.accounts.values().cloned().collect(),
            subscriptions: state.subscriptions.values().cloned().collect(),
            reservations: state.reservations.values().cloned().collect(),
            recent: recent.into_iter().map(|(key, answer)| (Arc::clone(key), Arc::clone(answer))).collect(),
            recent_older,
            totals: state.totals.clone(),
            recent_records: records.into_iter().map(|(key, memo)| (key.0, *memo)).collect(),
            records_older,
            sessions: state.sessions.values().cloned().collect(),
        }
    }

    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// The image in canonical order: the same state always gives the same bytes.
    pub fn into_image(self) -> SnapshotImage {
        let Captured {
            lsn, mut accounts, mut subscriptions, mut reservations, mut recent, totals, mut sessions, ..
        } = self;
        sessions.sort_unstable_by(|a, b| a.session.cmp(&b.session));
        accounts.sort_unstable_by_key(|a| a.id);
        subscriptions.sort_unstable_by_key(|s| s.id);
        reservations.sort_unstable_by(|a, b| (&a.session, a.rating_group).cmp(&(&b.session, b.rating_group)));
        sort_generations(&mut recent, self.recent_older, |(key, _)| key);
        let mut recent_records = self.recent_records;
        sort_generations(&mut recent_records, self.records_older, |(key, _)| key);
        SnapshotImage {
            lsn,
            accounts,
            subscriptions,
            reservations,
            recent: recent.into_iter().map(|(key, answer)| (key.to_string(), (*answer).clone())).collect(),
            totals,
            recent_records,
            sessions,
        }
    }
}

impl SnapshotImage {
    pub fn of(state: &ShardState) -> SnapshotImage {
        Captured::of(state).into_image()
    }

    pub fn into_state(self, dedupe_window: usize) -> ShardState {
        let mut state = ShardState::new(dedupe_window);
        state.lsn = self.lsn;
        state.accounts = self.accounts.into_iter().map(|a| (a.id, a)).collect();
        let plan_ids = &mut state.plan_ids;
        state.subscriptions = self
            .subscriptions
            .into_iter()
            .map(|mut s| {
                s.plan = plan_ids.share(&s.plan);
                (s.id, s)
            })
            .collect();
        state.sessions = self.sessions.into_iter().map(|r| (r.session.clone(), r)).collect();
        // Images before version 4 have no session records: rebuilt from the reservations.
        let recorded: std::collections::HashSet<String> = state.sessions.keys().cloned().collect();
        for reservation in self.reservations.iter().filter(|r| !recorded.contains(&r.session)) {
            state.note_grant(reservation);
        }
        state.reservations = self.reservations.into_iter().map(|r| ((r.session.clone(), r.rating_group), r)).collect();
        for (key, answer) in self.recent {
            state.recent.insert(&key, std::sync::Arc::new(answer));
        }
        state.totals = self.totals;
        for (key, memo) in self.recent_records {
            state.recent_records.insert(RecordKey(key), memo);
        }
        state
    }
}

pub fn snapshot_path(dir: &Path, shard: u32) -> PathBuf {
    dir.join(format!("shard-{shard}.snapshot"))
}

pub fn encode(image: &SnapshotImage, shard: u32) -> Vec<u8> {
    let payload = match rkyv::to_bytes::<rancor::Panic>(image) {
        Ok(payload) => payload,
        Err(never) => match never {},
    };
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&shard.to_le_bytes());
    out.extend_from_slice(&image.lsn.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

pub fn decode(bytes: &[u8], shard: u32, dedupe_window: usize) -> Result<ShardState, String> {
    if bytes.len() < HEADER_BYTES || bytes[..8] != SNAPSHOT_MAGIC {
        return Err("missing the TGSNAP header".to_owned());
    }
    let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let long = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let version = word(8);
    if !(2..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
        return Err(format!("format version {version}; this build reads 2 to {SNAPSHOT_FORMAT_VERSION}"));
    }
    if word(12) != shard {
        return Err(format!("snapshot of shard {}, not {shard}", word(12)));
    }
    let payload = &bytes[HEADER_BYTES..];
    if long(24) != payload.len() as u64 {
        return Err(format!("header says {} payload bytes, file has {}", long(24), payload.len()));
    }
    if crc32fast::hash(payload) != word(32) {
        return Err("checksum mismatch".to_owned());
    }
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let image = match version {
        2 => rkyv::from_bytes::<SnapshotImageV2, rancor::Error>(&aligned)
            .map(|old| SnapshotImage::from(SnapshotImageV3::from(old))),
        3 => rkyv::from_bytes::<SnapshotImageV3, rancor::Error>(&aligned).map(SnapshotImage::from),
        _ => rkyv::from_bytes::<SnapshotImage, rancor::Error>(&aligned),
    }
    .map_err(|err| err.to_string())?;
    if image.lsn != long(16) {
        return Err("header and payload disagree on the LSN".to_owned());
    }
    Ok(image.into_state(dedupe_window))
}

/// Writes a snapshot durably (temporary file, fsync, rename, fsync of the directory).
pub fn write(dir: &Path, shard: u32, image: &SnapshotImage) -> Result<(), EngineError> {
    let path = snapshot_path(dir, shard);
    crate::durable::replace_file(&path, &encode(image, shard), 0o644).map_err(EngineError::io(&path))
}

/// Reads the shard's snapshot, if there is one.
pub fn read(dir: &Path, shard: u32, dedupe_window: usize) -> Result<Option<ShardState>, EngineError> {
    let path = snapshot_path(dir, shard);
    match std::fs::read(&path) {
        Ok(bytes) => {
            decode(&bytes, shard, dedupe_window).map(Some).map_err(|reason| EngineError::Snapshot { path, reason })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(EngineError::Io { path, source: err }),
    }
}

//! Shard snapshots: the whole state of a shard at one LSN, so recovery replays only the
//! journal written after it.
//!
//! # Byte format (all integers little-endian)
//!
//! `shard-{S}.snapshot`:
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
//! The exactly-once windows are most of a shard's state, and most of a window does not
//! change between two snapshots: a generation's entries never move, new keys are
//! appended. So from version 5 a generation is written in chunks of
//! `snapshot_chunk_entries` (65,536) entries, each to a file of its own the first time it
//! is full (`shard-{S}.{answers|records}.{GENERATION:020}.{INDEX:08}.chunk`), and the
//! snapshot lists the chunks (index, entries, CRC-32) and holds only the generation's
//! unfinished tail; values replaced since (rerated records) ride in the snapshot too. A
//! chunk file:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `TGCHNK\r\n` |
//! | 8 | 4 | chunk format version (1) |
//! | 12 | 4 | shard number |
//! | 16 | 1 | window: 0 answers, 1 records |
//! | 17 | 3 | reserved, zero |
//! | 20 | 8 | generation id |
//! | 28 | 4 | chunk index |
//! | 32 | 4 | entries |
//! | 36 | 4 | CRC-32 (IEEE) of the payload |
//! | 40 | n | rkyv archive of the entries (`Vec<(String, Answer)>` or `Vec<(u128, Memo)>`) |
//!
//! Chunks are written (durably) before the snapshot that lists them; chunks no snapshot
//! lists any more are removed after the new snapshot is durable.
//!
//! Version history: 1 (names held as `String`), 2 (names shared as `Arc<str>`), 3 (adds
//! the bulk path's window of record keys), 4 (adds the online sessions' records), 5
//! (windows by generation, in chunk files), 6 (subscriptions' lifecycles, closed accounts,
//! ended allowance periods), 7 (suspended accounts). Versions 2 to 6 are still read (version 2 had
//! no bulk path, so its record window is empty; the session records of 2 and 3 are
//! rebuilt from their reservations, as a journal of that time replays them).
//!
//! Every file is written to a temporary, synced, and renamed over its name, so a file
//! under its final name is always complete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

use crate::api::Answer;
use crate::dedupe::{RecentAnswers, Window};
use crate::error::EngineError;
use crate::fs::FileSystem;
use crate::model::{
    Account, AccountId, AllowancePeriod, Lifecycle, Reservation, SessionRecord, Subscription, SubscriptionId,
};
use crate::records::{Memo, RecentRecords, RecordKey};
use crate::state::{ShardState, Totals};

pub(crate) const SNAPSHOT_MAGIC: [u8; 8] = *b"TGSNAP\r\n";
pub(crate) const SNAPSHOT_FORMAT_VERSION: u32 = 7;
const HEADER_BYTES: usize = 40;
pub(crate) const CHUNK_MAGIC: [u8; 8] = *b"TGCHNK\r\n";
const CHUNK_FORMAT_VERSION: u32 = 1;
/// Entries per chunk file unless configured.
pub(crate) const DEFAULT_CHUNK_ENTRIES: usize = 1 << 16;

/// Which exactly-once window a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    Answers = 0,
    Records = 1,
}

impl WindowKind {
    fn name(self) -> &'static str {
        match self {
            WindowKind::Answers => "answers",
            WindowKind::Records => "records",
        }
    }
}

/// A chunk file a snapshot lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct ChunkRef {
    pub index: u32,
    pub entries: u32,
    pub crc: u32,
}

/// One generation of a window: its chunk files, then its unfinished tail.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct GenerationImage<K, V> {
    pub id: u64,
    pub chunks: Vec<ChunkRef>,
    pub tail: Vec<(K, V)>,
}

/// A window: its generations (the previous one first) and the values replaced since
/// their chunks were written.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct WindowImage<K, V> {
    pub generations: Vec<GenerationImage<K, V>>,
    pub edited: Vec<(K, V)>,
}

impl<K, V> WindowImage<K, V> {
    /// A flat list of entries (an older snapshot's, or a reshard's): restored by inserting
    /// them in order.
    pub fn flat(entries: Vec<(K, V)>) -> WindowImage<K, V> {
        WindowImage {
            generations: vec![GenerationImage { id: 0, chunks: Vec::new(), tail: entries }],
            edited: Vec::new(),
        }
    }

    /// Every entry, in order (the chunks must have been loaded into the tails).
    pub fn entries(&self) -> impl Iterator<Item = &(K, V)> {
        self.generations.iter().flat_map(|g| g.tail.iter())
    }
}

/// The archived form of a shard's state, in a canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct SnapshotImage {
    pub lsn: u64,
    pub accounts: Vec<Account>,
    pub subscriptions: Vec<Subscription>,
    pub reservations: Vec<Reservation>,
    pub totals: Totals,
    /// The online sessions, by session id.
    pub sessions: Vec<SessionRecord>,
    /// The requests' exactly-once window.
    pub answers: WindowImage<String, Answer>,
    /// The bulk path's window.
    pub records: WindowImage<u128, Memo>,
    /// Subscriptions suspended, terminated or moved to another plan; closed and
    /// suspended accounts; allowance periods that ended.
    pub lifecycle: LifecycleImage,
}

/// What changed after creation, in canonical order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct LifecycleImage {
    pub subscriptions: Vec<(SubscriptionId, Lifecycle)>,
    pub closed: Vec<(AccountId, i64)>,
    pub allowance_history: Vec<(AccountId, Vec<AllowancePeriod>)>,
    /// Suspended accounts, with since when (format 7).
    pub suspended: Vec<(AccountId, i64)>,
}

impl LifecycleImage {
    fn of(state: &ShardState) -> LifecycleImage {
        let mut image = LifecycleImage {
            subscriptions: state.lifecycle.iter().map(|(id, l)| (*id, l.clone())).collect(),
            closed: state.closed.iter().map(|(id, at)| (*id, *at)).collect(),
            allowance_history: state.allowance_history.iter().map(|(id, h)| (*id, h.clone())).collect(),
            suspended: state.suspended.iter().map(|(id, at)| (*id, *at)).collect(),
        };
        image.subscriptions.sort_unstable_by_key(|(id, _)| *id);
        image.closed.sort_unstable();
        image.allowance_history.sort_unstable_by_key(|(id, _)| *id);
        image.suspended.sort_unstable();
        image
    }
}

/// The lifecycle of a version 6 snapshot (no account was suspended then).
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
struct LifecycleImageV6 {
    subscriptions: Vec<(SubscriptionId, Lifecycle)>,
    closed: Vec<(AccountId, i64)>,
    allowance_history: Vec<(AccountId, Vec<AllowancePeriod>)>,
}

/// The payload of a version 6 snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
struct SnapshotImageV6 {
    lsn: u64,
    accounts: Vec<Account>,
    subscriptions: Vec<Subscription>,
    reservations: Vec<Reservation>,
    totals: Totals,
    sessions: Vec<SessionRecord>,
    answers: WindowImage<String, Answer>,
    records: WindowImage<u128, Memo>,
    lifecycle: LifecycleImageV6,
}

impl From<SnapshotImageV6> for SnapshotImage {
    fn from(old: SnapshotImageV6) -> SnapshotImage {
        let SnapshotImageV6 {
            lsn,
            accounts,
            subscriptions,
            reservations,
            totals,
            sessions,
            answers,
            records,
            lifecycle,
        } = old;
        let LifecycleImageV6 { subscriptions: lives, closed, allowance_history } = lifecycle;
        SnapshotImage {
            lsn,
            accounts,
            subscriptions,
            reservations,
            totals,
            sessions,
            answers,
            records,
            lifecycle: LifecycleImage { subscriptions: lives, closed, allowance_history, suspended: Vec::new() },
        }
    }
}

/// The payload of a version 5 snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
struct SnapshotImageV5 {
    lsn: u64,
    accounts: Vec<Account>,
    subscriptions: Vec<Subscription>,
    reservations: Vec<Reservation>,
    totals: Totals,
    sessions: Vec<SessionRecord>,
    answers: WindowImage<String, Answer>,
    records: WindowImage<u128, Memo>,
}

impl From<SnapshotImageV5> for SnapshotImage {
    /// Version 5 had no lifecycle (nothing was suspended, terminated or moved then).
    fn from(old: SnapshotImageV5) -> SnapshotImage {
        let SnapshotImageV5 { lsn, accounts, subscriptions, reservations, totals, sessions, answers, records } = old;
        SnapshotImage {
            lsn,
            accounts,
            subscriptions,
            reservations,
            totals,
            sessions,
            answers,
            records,
            lifecycle: LifecycleImage::default(),
        }
    }
}

/// The payload of a version 4 snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
struct SnapshotImageV4 {
    lsn: u64,
    accounts: Vec<Account>,
    subscriptions: Vec<Subscription>,
    reservations: Vec<Reservation>,
    recent: Vec<(String, Answer)>,
    totals: Totals,
    recent_records: Vec<(u128, Memo)>,
    sessions: Vec<SessionRecord>,
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

impl From<SnapshotImageV3> for SnapshotImageV4 {
    /// Version 3 had no session records: [`SnapshotImage::into_state`] rebuilds them
    /// from the reservations.
    fn from(old: SnapshotImageV3) -> SnapshotImageV4 {
        let SnapshotImageV3 { lsn, accounts, subscriptions, reservations, recent, totals, recent_records } = old;
        SnapshotImageV4 {
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

impl From<SnapshotImageV4> for SnapshotImageV5 {
    /// Version 4 held each window as one list (the older generation first): restored by
    /// inserting in order, as that build did.
    fn from(old: SnapshotImageV4) -> SnapshotImageV5 {
        let SnapshotImageV4 { lsn, accounts, subscriptions, reservations, recent, totals, recent_records, sessions } =
            old;
        SnapshotImageV5 {
            lsn,
            accounts,
            subscriptions,
            reservations,
            totals,
            sessions,
            answers: WindowImage::flat(recent),
            records: WindowImage::flat(recent_records),
        }
    }
}

/// The chunk files on disk that the last durable snapshot lists: their CRCs, by window
/// and generation. What a new snapshot need not write again.
pub(crate) type ChunkIndex = HashMap<(WindowKind, u64), Vec<ChunkRef>>;

/// Of one generation: its id, the chunks already on disk, and the entries after them.
#[derive(Debug, Clone)]
struct GenerationCapture<K, V> {
    id: u64,
    written: Vec<ChunkRef>,
    entries: Vec<(K, V)>,
}

#[derive(Debug, Clone)]
struct WindowCapture<K, V> {
    generations: Vec<GenerationCapture<K, V>>,
    edited: Vec<(K, V)>,
}

impl<K: std::hash::Hash + Eq + Clone + Send + 'static, V: Clone + Send + 'static> WindowCapture<K, V> {
    /// Copies what is not on disk yet: per generation, the entries after its written
    /// chunks (all of them when `index` is `None`).
    fn of(window: &Window<K, V>, kind: WindowKind, index: Option<&ChunkIndex>) -> WindowCapture<K, V> {
        let generations = window
            .by_generation()
            .into_iter()
            .filter(|(_, entries)| !entries.is_empty())
            .map(|(id, entries)| {
                let written = index.and_then(|i| i.get(&(kind, id))).cloned().unwrap_or_default();
                let skip: usize = written.iter().map(|c| c.entries as usize).sum();
                let written = if skip <= entries.len() { written } else { Vec::new() };
                let skip: usize = written.iter().map(|c| c.entries as usize).sum();
                GenerationCapture { id, written, entries: entries[skip..].to_vec() }
            })
            .collect();
        WindowCapture { generations, edited: window.edited().map(|(k, v)| (k.clone(), v.clone())).collect() }
    }
}

/// A copy of a shard's state taken between batches: taking it is all a shard pauses
/// for; sorting, encoding and writing happen on another thread.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    lsn: u64,
    accounts: Vec<Account>,
    subscriptions: Vec<Subscription>,
    reservations: Vec<Reservation>,
    totals: Totals,
    sessions: Vec<SessionRecord>,
    answers: WindowCapture<Arc<str>, Arc<Answer>>,
    records: WindowCapture<RecordKey, Memo>,
    lifecycle: LifecycleImage,
}

impl Captured {
    /// The whole state, windows included.
    pub(crate) fn of(state: &ShardState) -> Captured {
        Captured::since(state, None)
    }

    /// The state, with of each window only what `index` says is not on disk yet.
    pub(crate) fn since(state: &ShardState, index: Option<&ChunkIndex>) -> Captured {
        Captured {
            lsn: state.lsn,
            accounts: state.accounts.values().cloned().collect(),
            subscriptions: state.subscriptions.values().cloned().collect(),
            reservations: state.reservations.values().cloned().collect(),
            totals: state.totals.clone(),
            sessions: state.sessions.values().cloned().collect(),
            answers: WindowCapture::of(state.recent.window_of_keys(), WindowKind::Answers, index),
            records: WindowCapture::of(&state.recent_records, WindowKind::Records, index),
            lifecycle: LifecycleImage::of(state),
        }
    }

    pub(crate) fn lsn(&self) -> u64 {
        self.lsn
    }

    fn sorted(mut self) -> Captured {
        self.sessions.sort_unstable_by(|a, b| a.session.cmp(&b.session));
        self.accounts.sort_unstable_by_key(|a| a.id);
        self.subscriptions.sort_unstable_by_key(|s| s.id);
        self.reservations.sort_unstable_by(|a, b| (&a.session, a.rating_group).cmp(&(&b.session, b.rating_group)));
        self
    }

    /// The image in canonical order, every window entry in the tails (no chunk files):
    /// the same state always gives the same image.
    pub(crate) fn into_image(self) -> SnapshotImage {
        let Captured { lsn, accounts, subscriptions, reservations, totals, sessions, answers, records, lifecycle } =
            self.sorted();
        let answer = |(key, answer): (Arc<str>, Arc<Answer>)| (key.to_string(), (*answer).clone());
        SnapshotImage {
            lsn,
            accounts,
            subscriptions,
            reservations,
            totals,
            sessions,
            answers: flat_generations(answers, answer),
            records: flat_generations(records, |(key, memo)| (key.0, memo)),
            lifecycle,
        }
    }

    /// Writes the chunks that are full and not on disk, then the snapshot listing them,
    /// durably; returns the chunk index the snapshot lists.
    pub(crate) fn write(
        self,
        fs: &dyn FileSystem,
        dir: &Path,
        shard: u32,
        chunk_entries: usize,
    ) -> Result<ChunkIndex, EngineError> {
        let chunk_entries = chunk_entries.clamp(1, u32::MAX as usize);
        let Captured { lsn, accounts, subscriptions, reservations, totals, sessions, answers, records, lifecycle } =
            self.sorted();
        let mut index = ChunkIndex::new();
        let answer = |(key, answer): &(Arc<str>, Arc<Answer>)| (key.to_string(), (**answer).clone());
        let answers = write_window(fs, dir, shard, WindowKind::Answers, answers, chunk_entries, &mut index, answer)?;
        let records =
            write_window(fs, dir, shard, WindowKind::Records, records, chunk_entries, &mut index, |(k, m)| (k.0, *m))?;
        let image =
            SnapshotImage { lsn, accounts, subscriptions, reservations, totals, sessions, answers, records, lifecycle };
        write(fs, dir, shard, &image)?;
        remove_unlisted_chunks(fs, dir, shard, &index)?;
        Ok(index)
    }
}

/// A captured window with every entry in its generation's tail.
fn flat_generations<K, V, A, B>(window: WindowCapture<K, V>, convert: impl Fn((K, V)) -> (A, B)) -> WindowImage<A, B> {
    let generations = window
        .generations
        .into_iter()
        .map(|g| GenerationImage { id: g.id, chunks: Vec::new(), tail: g.entries.into_iter().map(&convert).collect() })
        .collect();
    WindowImage { generations, edited: window.edited.into_iter().map(&convert).collect() }
}

#[allow(clippy::too_many_arguments)]
fn write_window<K, V, A, B>(
    fs: &dyn FileSystem,
    dir: &Path,
    shard: u32,
    kind: WindowKind,
    window: WindowCapture<K, V>,
    chunk_entries: usize,
    index: &mut ChunkIndex,
    convert: impl Fn(&(K, V)) -> (A, B),
) -> Result<WindowImage<A, B>, EngineError>
where
    Vec<(A, B)>: for<'a> RkyvSerialize<
        rkyv::api::high::HighSerializer<AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rancor::Error>,
    >,
{
    let mut generations = Vec::with_capacity(window.generations.len());
    for generation in window.generations {
        let mut chunks = generation.written;
        let full = generation.entries.len() / chunk_entries;
        for part in generation.entries[..full * chunk_entries].chunks(chunk_entries) {
            let index_now = chunks.len() as u32;
            // A chunk a snapshot still being written put on disk is kept as it is (a
            // snapshot before may list it with its checksum); replaced values ride in
            // `edited` either way.
            if let Some(found) = chunk_on_disk(fs, dir, shard, kind, generation.id, index_now, part.len()) {
                chunks.push(found);
                continue;
            }
            let entries: Vec<(A, B)> = part.iter().map(&convert).collect();
            let payload = rkyv::to_bytes::<rancor::Error>(&entries)
                .map_err(|err| EngineError::Snapshot { path: dir.to_owned(), reason: err.to_string() })?;
            let chunk = ChunkRef { index: index_now, entries: part.len() as u32, crc: crc32fast::hash(&payload) };
            let path = chunk_path(dir, shard, kind, generation.id, chunk.index);
            let bytes = encode_chunk(shard, kind, generation.id, chunk, &payload);
            crate::durable::replace_file(fs, &path, &bytes, 0o644).map_err(EngineError::io(&path))?;
            chunks.push(chunk);
        }
        let tail = generation.entries[full * chunk_entries..].iter().map(&convert).collect();
        index.insert((kind, generation.id), chunks.clone());
        generations.push(GenerationImage { id: generation.id, chunks, tail });
    }
    Ok(WindowImage { generations, edited: window.edited.iter().map(&convert).collect() })
}

pub(crate) fn chunk_path(dir: &Path, shard: u32, kind: WindowKind, generation: u64, index: u32) -> PathBuf {
    dir.join(format!("shard-{shard}.{}.{generation:020}.{index:08}.chunk", kind.name()))
}

fn encode_chunk(shard: u32, kind: WindowKind, generation: u64, chunk: ChunkRef, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&CHUNK_MAGIC);
    out.extend_from_slice(&CHUNK_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&shard.to_le_bytes());
    out.extend_from_slice(&[kind as u8, 0, 0, 0]);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&chunk.index.to_le_bytes());
    out.extend_from_slice(&chunk.entries.to_le_bytes());
    out.extend_from_slice(&chunk.crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The reference of a whole, valid chunk file already on disk with `entries` entries.
fn chunk_on_disk(
    fs: &dyn FileSystem,
    dir: &Path,
    shard: u32,
    kind: WindowKind,
    generation: u64,
    index: u32,
    entries: usize,
) -> Option<ChunkRef> {
    let bytes = fs.read(&chunk_path(dir, shard, kind, generation, index)).ok()?;
    let header = bytes.get(..HEADER_BYTES)?;
    let word = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let chunk = ChunkRef { index, entries: u32::try_from(entries).ok()?, crc: word(36) };
    let mut expected = encode_chunk(shard, kind, generation, chunk, &[]);
    expected.truncate(HEADER_BYTES);
    (header == expected.as_slice() && crc32fast::hash(&bytes[HEADER_BYTES..]) == chunk.crc).then_some(chunk)
}

/// Reads chunk `chunk` of a generation and checks it is the one the snapshot lists.
fn read_chunk(
    fs: &dyn FileSystem,
    dir: &Path,
    shard: u32,
    kind: WindowKind,
    generation: u64,
    chunk: ChunkRef,
) -> Result<AlignedVec<16>, EngineError> {
    let path = chunk_path(dir, shard, kind, generation, chunk.index);
    let bytes = fs.read(&path).map_err(EngineError::io(&path))?;
    let bad = |reason: String| EngineError::Snapshot { path: path.clone(), reason };
    if bytes.len() < HEADER_BYTES || bytes[..8] != CHUNK_MAGIC {
        return Err(bad("missing the TGCHNK header".to_owned()));
    }
    let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut long = [0u8; 8];
    long.copy_from_slice(&bytes[20..28]);
    let header = (word(8), word(12), bytes[16], u64::from_le_bytes(long), word(28), word(32), word(36));
    let expected = (CHUNK_FORMAT_VERSION, shard, kind as u8, generation, chunk.index, chunk.entries, chunk.crc);
    if header != expected {
        return Err(bad(format!("header {header:?} is not the chunk the snapshot lists {expected:?}")));
    }
    let payload = &bytes[HEADER_BYTES..];
    if crc32fast::hash(payload) != chunk.crc {
        return Err(bad("checksum mismatch".to_owned()));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    Ok(aligned)
}

/// Puts each generation's chunks, read and checked, before its tail.
fn load_window<K, V>(
    fs: &dyn FileSystem,
    dir: &Path,
    shard: u32,
    kind: WindowKind,
    window: &mut WindowImage<K, V>,
    decode: impl Fn(&[u8]) -> Result<Vec<(K, V)>, rancor::Error>,
) -> Result<(), EngineError> {
    for generation in &mut window.generations {
        let mut entries = Vec::new();
        for chunk in std::mem::take(&mut generation.chunks) {
            let bytes = read_chunk(fs, dir, shard, kind, generation.id, chunk)?;
            let part = decode(&bytes).map_err(|err| EngineError::Snapshot {
                path: chunk_path(dir, shard, kind, generation.id, chunk.index),
                reason: err.to_string(),
            })?;
            entries.extend(part);
        }
        entries.append(&mut generation.tail);
        generation.tail = entries;
    }
    Ok(())
}

/// The shard's chunk files in `dir`, each with its window, generation and index.
fn chunks_in(fs: &dyn FileSystem, dir: &Path, shard: u32) -> Result<Vec<(PathBuf, WindowKind, u64, u32)>, EngineError> {
    let prefix = format!("shard-{shard}.");
    let mut found = Vec::new();
    for path in fs.list(dir).map_err(EngineError::io(dir))? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(rest) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".chunk")) else { continue };
        let mut parts = rest.split('.');
        let kind = match parts.next() {
            Some("answers") => WindowKind::Answers,
            Some("records") => WindowKind::Records,
            _ => continue,
        };
        if let (Some(generation), Some(chunk)) =
            (parts.next().and_then(|g| g.parse::<u64>().ok()), parts.next().and_then(|c| c.parse::<u32>().ok()))
        {
            found.push((path, kind, generation, chunk));
        }
    }
    Ok(found)
}

/// The shard's chunk files in `dir`.
pub(crate) fn chunk_files(fs: &dyn FileSystem, dir: &Path, shard: u32) -> Result<Vec<PathBuf>, EngineError> {
    Ok(chunks_in(fs, dir, shard)?.into_iter().map(|(path, ..)| path).collect())
}

/// Removes the shard's chunk files that `index` does not list.
fn remove_unlisted_chunks(fs: &dyn FileSystem, dir: &Path, shard: u32, index: &ChunkIndex) -> Result<(), EngineError> {
    let mut removed = false;
    for (path, kind, generation, chunk) in chunks_in(fs, dir, shard)? {
        let listed = index.get(&(kind, generation)).is_some_and(|chunks| chunks.iter().any(|c| c.index == chunk));
        if !listed {
            fs.remove_file(&path).map_err(EngineError::io(&path))?;
            removed = true;
        }
    }
    if removed {
        fs.sync_dir(dir).map_err(EngineError::io(dir))?;
    }
    Ok(())
}

impl SnapshotImage {
    pub fn of(state: &ShardState) -> SnapshotImage {
        Captured::of(state).into_image()
    }

    /// The chunks this image lists.
    pub fn chunk_index(&self) -> ChunkIndex {
        let mut index = ChunkIndex::new();
        for (kind, generations) in [
            (WindowKind::Answers, self.answers.generations.iter().map(|g| (g.id, &g.chunks)).collect::<Vec<_>>()),
            (WindowKind::Records, self.records.generations.iter().map(|g| (g.id, &g.chunks)).collect()),
        ] {
            for (id, chunks) in generations {
                if !chunks.is_empty() {
                    index.insert((kind, id), chunks.clone());
                }
            }
        }
        index
    }

    /// Reads the chunk files this image lists into its generations' tails.
    pub fn load_chunks(&mut self, fs: &dyn FileSystem, dir: &Path, shard: u32) -> Result<(), EngineError> {
        load_window(fs, dir, shard, WindowKind::Answers, &mut self.answers, |bytes| {
            rkyv::from_bytes::<Vec<(String, Answer)>, rancor::Error>(bytes)
        })?;
        load_window(fs, dir, shard, WindowKind::Records, &mut self.records, |bytes| {
            rkyv::from_bytes::<Vec<(u128, Memo)>, rancor::Error>(bytes)
        })
    }

    /// The state this image holds; its chunks must have been loaded
    /// ([`SnapshotImage::load_chunks`]).
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
        state.recount_sessions();
        let answers = self
            .answers
            .generations
            .into_iter()
            .map(|g| (g.id, g.tail.into_iter().map(|(key, answer)| (Arc::from(key), Arc::new(answer))).collect()))
            .collect();
        state.recent = RecentAnswers::restore(dedupe_window, answers);
        let records = self
            .records
            .generations
            .into_iter()
            .map(|g| (g.id, g.tail.into_iter().map(|(key, memo)| (RecordKey(key), memo)).collect()))
            .collect();
        let edited = self.records.edited.into_iter().map(|(key, memo)| (RecordKey(key), memo)).collect();
        state.recent_records = RecentRecords::restore(dedupe_window, records, edited);
        state.totals = self.totals;
        state.lifecycle = self.lifecycle.subscriptions.into_iter().collect();
        state.closed = self.lifecycle.closed.into_iter().collect();
        state.suspended = self.lifecycle.suspended.into_iter().collect();
        state.allowance_history = self.lifecycle.allowance_history.into_iter().collect();
        state
    }
}

pub fn snapshot_path(dir: &Path, shard: u32) -> PathBuf {
    dir.join(format!("shard-{shard}.snapshot"))
}

pub(crate) fn encode(image: &SnapshotImage, shard: u32) -> Vec<u8> {
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

/// Decodes a snapshot file's bytes into its image (chunk files not yet read).
pub(crate) fn decode(bytes: &[u8], shard: u32) -> Result<SnapshotImage, String> {
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
            .map(|old| SnapshotImage::from(SnapshotImageV5::from(SnapshotImageV4::from(SnapshotImageV3::from(old))))),
        3 => rkyv::from_bytes::<SnapshotImageV3, rancor::Error>(&aligned)
            .map(|old| SnapshotImage::from(SnapshotImageV5::from(SnapshotImageV4::from(old)))),
        4 => rkyv::from_bytes::<SnapshotImageV4, rancor::Error>(&aligned)
            .map(|old| SnapshotImage::from(SnapshotImageV5::from(old))),
        5 => rkyv::from_bytes::<SnapshotImageV5, rancor::Error>(&aligned).map(SnapshotImage::from),
        6 => rkyv::from_bytes::<SnapshotImageV6, rancor::Error>(&aligned).map(SnapshotImage::from),
        _ => rkyv::from_bytes::<SnapshotImage, rancor::Error>(&aligned),
    }
    .map_err(|err| err.to_string())?;
    if image.lsn != long(16) {
        return Err("header and payload disagree on the LSN".to_owned());
    }
    Ok(image)
}

/// Writes a snapshot durably (temporary file, fsync, rename, fsync of the directory).
/// The chunk files it lists must be on disk already.
pub(crate) fn write(fs: &dyn FileSystem, dir: &Path, shard: u32, image: &SnapshotImage) -> Result<(), EngineError> {
    let path = snapshot_path(dir, shard);
    crate::durable::replace_file(fs, &path, &encode(image, shard), 0o644).map_err(EngineError::io(&path))
}

/// Reads the shard's snapshot and the chunk files it lists, if there is one; with the
/// chunk index of what is on disk.
pub(crate) fn read(
    fs: &dyn FileSystem,
    dir: &Path,
    shard: u32,
    dedupe_window: usize,
) -> Result<Option<(ShardState, ChunkIndex)>, EngineError> {
    let path = snapshot_path(dir, shard);
    match fs.read(&path) {
        Ok(bytes) => {
            let mut image = decode(&bytes, shard).map_err(|reason| EngineError::Snapshot { path, reason })?;
            let index = image.chunk_index();
            image.load_chunks(fs, dir, shard)?;
            Ok(Some((image.into_state(dedupe_window), index)))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(EngineError::Io { path, source: err }),
    }
}

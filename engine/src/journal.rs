//! The journal: checksummed records appended before an answer is given, with group
//! commit and a configurable fsync policy.
//!
//! # Byte format (all integers little-endian)
//!
//! A journal is a sequence of segment files `shard-{S}-{FIRST_LSN:020}.journal`. Each
//! segment starts with a 16-byte header:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `TGJRNL\r\n` |
//! | 8 | 4 | format version ([`JOURNAL_FORMAT_VERSION`]) |
//! | 12 | 4 | shard number |
//!
//! followed by records:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | bits 0–27: payload length `N` (at most [`MAX_RECORD_BYTES`]); bits 28–31: record kind |
//! | 4 | 4 | CRC-32 (IEEE) of the kind byte (only when the kind is not 0) followed by bytes 8 .. 16+N (sequence number and payload) |
//! | 8 | 8 | log sequence number (LSN): the previous record's plus one |
//! | 16 | N | payload, by kind: 0 = rkyv archive of a [`JournalEntry`]; 1 = a batch of
//! charged records in a fixed layout; 2 = the same, compact (both layouts in
//! [`crate::format::charges`]); 3 = a [`JournalEntry`] in the compact layout of [`crate::format::effects`] |
//!
//! Version history: 1 (effects held inline), 2 (large effects boxed, names shared as
//! `Arc<str>`: a different rkyv layout of the payload), 3 (record kinds; kind 1 added),
//! 4 (kind 2 added, and written instead of kind 1), 5 (the session effects
//! `SessionOpened`, `SessionReported` and `SessionEnded` appended to [`Effect`]: older
//! records read unchanged), 6 (kind 3, compact effects, written for the requests whose
//! effects it covers), 7 (the lifecycle effects: plan changes, suspension, termination,
//! identities, credit limits, closing, appended to [`Effect`]), 8 (the rated-event
//! ledger's detail: the `Rated` effect appended to [`Effect`] and compact tag 12, and
//! flag bit 5 of a compact charge), 9 (account suspension: `AccountSuspended` and
//! `AccountResumed` appended to [`Effect`]). Segments of versions 2
//! to 8 are read as they are (kind 2 only from version 4, kind 3 only from 6); a
//! segment of another version
//! is refused, never misread. A build never appends to a segment of an older version:
//! recovery starts a new segment after it.
//!
//! Recovery reads records in order and stops at the first one that is incomplete, fails
//! its checksum, or breaks the LSN sequence: that is a torn or corrupt tail, and the
//! segment is cut there. Nothing past it is replayed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

use crate::error::EngineError;
use crate::fs::FileSystem;
use crate::metrics::Histogram;
use crate::state::Effect;

pub(crate) const JOURNAL_MAGIC: [u8; 8] = *b"TGJRNL\r\n";
pub(crate) const JOURNAL_FORMAT_VERSION: u32 = 9;
/// The oldest segment version this build still reads.
pub(crate) const OLDEST_READABLE_JOURNAL_VERSION: u32 = 2;
pub const SEGMENT_HEADER_BYTES: usize = 16;
pub const RECORD_HEADER_BYTES: usize = 16;
/// Largest record payload; larger requests are refused before they are decided.
pub(crate) const MAX_RECORD_BYTES: usize = 16 << 20;

/// What a record's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// An rkyv [`JournalEntry`]: the general effects of one request.
    Effects = 0,
    /// A batch of charged records in the fixed layout of format 3
    /// ([`crate::format::charges::decode_charges`]); read, no longer written.
    Charges = 1,
    /// A batch of charged records, compact ([`crate::format::charges::ChargesWriter`]).
    CompactCharges = 2,
    /// The effects of one request, compact ([`crate::format::effects`]).
    CompactEffects = 3,
}

const LENGTH_BITS: u32 = 28;
const LENGTH_MASK: u32 = (1 << LENGTH_BITS) - 1;

/// What one record holds: the time the request was decided and its effects.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct JournalEntry {
    pub decided_at: i64,
    pub effects: Vec<Effect>,
}

impl JournalEntry {
    pub fn encode(&self) -> Vec<u8> {
        match rkyv::to_bytes::<rancor::Panic>(self) {
            Ok(bytes) => bytes.into_vec(),
            Err(never) => match never {},
        }
    }

    pub fn decode(payload: &[u8]) -> Result<JournalEntry, String> {
        let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        rkyv::from_bytes::<JournalEntry, rancor::Error>(&aligned).map_err(|err| err.to_string())
    }
}

/// When appended records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync once per group commit, before any answer of the batch is given.
    EveryBatch,
    /// fsync at most once per interval: an answer may be given before its record is on disk.
    Interval(Duration),
    /// Leave it to the operating system.
    Never,
}

/// A byte device a journal segment lives on. Files in production; memory (with the
/// power to cut it at any byte) in crash tests.
pub trait Storage: Send {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// A handle that forces what was appended so far to stable storage from another
    /// thread, so that a writer can go on appending while the sync runs.
    fn syncer(&self) -> io::Result<Arc<dyn Syncer>>;
}

/// Forces a device's appended bytes to stable storage (see [`Storage::syncer`]).
pub trait Syncer: Send + Sync {
    fn sync(&self) -> io::Result<()>;
}

/// Storage faults a test switches on to see how the engine takes a failing disk: while
/// set, appends fail with `write_error` and syncs with `sync_error` (for example
/// `ENOSPC`, `EIO`), or syncs take longer (a slow device). Production code never sets them.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Faults {
    fail_writes: AtomicBool,
    fail_syncs: AtomicBool,
    /// The `errno` returned.
    errno: std::sync::atomic::AtomicI32,
    /// Milliseconds each sync waits before it syncs.
    sync_delay_ms: std::sync::atomic::AtomicU64,
}

impl Faults {
    /// Makes every append (and, with `syncs`, every sync) fail with `errno`.
    pub fn fail(&self, errno: i32, syncs: bool) {
        self.errno.store(errno, Ordering::SeqCst);
        self.fail_syncs.store(syncs, Ordering::SeqCst);
        self.fail_writes.store(true, Ordering::SeqCst);
    }

    /// Makes syncs only fail with `errno` (writes land in the page cache, as with EIO
    /// from a dying device).
    pub fn fail_syncs(&self, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
        self.fail_syncs.store(true, Ordering::SeqCst);
    }

    /// Makes every sync take `delay` longer (a device slow to flush); zero: as fast as it is.
    pub fn delay_syncs(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.sync_delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.fail_writes.store(false, Ordering::SeqCst);
        self.fail_syncs.store(false, Ordering::SeqCst);
        self.sync_delay_ms.store(0, Ordering::SeqCst);
    }

    fn check(&self, flag: &AtomicBool) -> io::Result<()> {
        if flag.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(self.errno.load(Ordering::SeqCst)));
        }
        Ok(())
    }

    pub(crate) fn check_write(&self) -> io::Result<()> {
        self.check(&self.fail_writes)
    }

    /// Before a sync: waits the delay set, then fails if syncs fail.
    pub(crate) fn check_sync(&self) -> io::Result<()> {
        let delay_ms = self.sync_delay_ms.load(Ordering::SeqCst);
        if delay_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        }
        self.check(&self.fail_syncs)
    }
}

/// Optional injected faults, shared by every file of an engine.
pub(crate) type FaultHandle = Option<Arc<Faults>>;

/// A segment file.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    faults: FaultHandle,
}

impl FileStorage {
    /// Opens the segment, creating it if needed (its directory entry is not synced: the
    /// caller syncs the directory of a new segment before relying on it).
    pub fn open(path: &Path) -> io::Result<FileStorage> {
        FileStorage::open_with(path, None)
    }

    /// [`FileStorage::open`] with injected faults (tests).
    pub fn open_with(path: &Path, faults: FaultHandle) -> io::Result<FileStorage> {
        if !path.exists() {
            if let Some(faults) = &faults {
                faults.check(&faults.fail_writes)?;
            }
        }
        let file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
        Ok(FileStorage { file, faults })
    }

    fn check_write(&self) -> io::Result<()> {
        self.faults.as_ref().map_or(Ok(()), |f| f.check(&f.fail_writes))
    }
}

impl Storage for FileStorage {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.check_write()?;
        self.file.write_all(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        if let Some(faults) = &self.faults {
            faults.check_sync()?;
        }
        self.file.sync_data()
    }
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }
    fn syncer(&self) -> io::Result<Arc<dyn Syncer>> {
        Ok(Arc::new(FileSyncer(self.file.try_clone()?, self.faults.clone())))
    }
}

/// A second descriptor of a segment file; syncing it syncs the file.
struct FileSyncer(File, FaultHandle);

impl Syncer for FileSyncer {
    fn sync(&self) -> io::Result<()> {
        if let Some(faults) = &self.1 {
            faults.check_sync()?;
        }
        self.0.sync_data()
    }
}

/// An in-memory device whose contents a test can read, and whose durable part it can
/// cut at any byte to build a crash image on purpose.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    bytes: Vec<u8>,
    /// Bytes known to be on "disk" (covered by a sync).
    synced: usize,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// A device holding `bytes`, as after a restart.
    pub fn with_bytes(bytes: Vec<u8>) -> MemoryStorage {
        let synced = bytes.len();
        MemoryStorage { inner: Arc::new(Mutex::new(MemoryInner { bytes, synced })) }
    }

    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().bytes.clone()
    }

    /// How many bytes a sync has covered.
    pub fn synced_len(&self) -> usize {
        self.lock().synced
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Storage for MemoryStorage {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.lock().bytes.extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let mut inner = self.lock();
        inner.synced = inner.bytes.len();
        Ok(())
    }
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.lock().bytes.clone())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut inner = self.lock();
        inner.bytes.truncate(len as usize);
        inner.synced = inner.synced.min(inner.bytes.len());
        Ok(())
    }
    fn syncer(&self) -> io::Result<Arc<dyn Syncer>> {
        Ok(Arc::new(self.clone()))
    }
}

impl Syncer for MemoryStorage {
    fn sync(&self) -> io::Result<()> {
        let mut inner = self.lock();
        inner.synced = inner.bytes.len();
        Ok(())
    }
}

/// What scanning a segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Every good record, in order.
    pub records: Vec<ScannedRecord>,
    /// Length of the good prefix of the segment.
    pub good_len: u64,
    /// Why the scan stopped before the end, if it did.
    pub cut_reason: Option<String>,
    /// The segment's format version (0 for an empty or torn segment header).
    pub version: u32,
}

/// The checksum of a record: CRC-32 of its kind byte (left out for kind 0, as in version 2)
/// followed by its sequence number and payload, so a flipped kind is caught too.
fn record_crc(kind: RecordKind, covered: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    if kind != RecordKind::Effects {
        hasher.update(&[kind as u8]);
    }
    hasher.update(covered);
    hasher.finalize()
}

/// One record found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedRecord {
    pub lsn: u64,
    pub kind: RecordKind,
    pub payload: Vec<u8>,
}

/// Scans the bytes of one segment. `expected_first_lsn` is the LSN its first record
/// must carry (`None`: any).
pub fn scan(bytes: &[u8], shard: u32, expected_first_lsn: Option<u64>) -> Result<Scan, String> {
    if bytes.is_empty() {
        return Ok(Scan { records: Vec::new(), good_len: 0, cut_reason: None, version: 0 });
    }
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Ok(Scan {
            records: Vec::new(),
            good_len: 0,
            cut_reason: Some("torn segment header".to_owned()),
            version: 0,
        });
    }
    if bytes[..8] != JOURNAL_MAGIC {
        return Err("not a journal segment (bad magic)".to_owned());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(OLDEST_READABLE_JOURNAL_VERSION..=JOURNAL_FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "journal format version {version}; this build reads {OLDEST_READABLE_JOURNAL_VERSION} to {JOURNAL_FORMAT_VERSION}"
        ));
    }
    let header_shard = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if header_shard != shard {
        return Err(format!("segment belongs to shard {header_shard}, not {shard}"));
    }
    let (records, good_len, cut_reason) = scan_records(bytes, SEGMENT_HEADER_BYTES, version, expected_first_lsn);
    Ok(Scan { records, good_len: good_len as u64, cut_reason, version })
}

/// The header of a segment's bytes: its format version, when the header is whole and
/// names `shard` and a version this build reads.
pub(crate) fn segment_version(bytes: &[u8], shard: u32) -> Result<u32, String> {
    match scan(bytes.get(..SEGMENT_HEADER_BYTES).unwrap_or(bytes), shard, None)? {
        Scan { version: 0, .. } => Err("torn segment header".to_owned()),
        found => Ok(found.version),
    }
}

/// The good records of a segment of `version` from byte `at` of `bytes` on: the records,
/// where the good ones end, and why the scan stopped before the end, if it did.
pub(crate) fn scan_records(
    bytes: &[u8],
    at: usize,
    version: u32,
    expected_first_lsn: Option<u64>,
) -> (Vec<ScannedRecord>, usize, Option<String>) {
    let (spans, good, cut) = scan_spans(bytes, at, version, expected_first_lsn);
    let records = spans
        .into_iter()
        .map(|span| ScannedRecord { lsn: span.lsn, kind: span.kind, payload: bytes[span.payload].to_vec() })
        .collect();
    (records, good, cut)
}

/// Where a good record's payload is in the bytes [`scan_spans`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordSpan {
    pub(crate) lsn: u64,
    pub(crate) kind: RecordKind,
    pub(crate) payload: std::ops::Range<usize>,
}

/// [`scan_records`] without copying the payloads: where each one is.
pub(crate) fn scan_spans(
    bytes: &[u8],
    mut at: usize,
    version: u32,
    expected_first_lsn: Option<u64>,
) -> (Vec<RecordSpan>, usize, Option<String>) {
    let mut records = Vec::new();
    let mut expected = expected_first_lsn;
    let cut_reason = loop {
        if at == bytes.len() {
            break None;
        }
        if bytes.len() - at < RECORD_HEADER_BYTES {
            break Some(format!("torn record header at byte {at}"));
        }
        let word = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let length = (word & LENGTH_MASK) as usize;
        let kind = match word >> LENGTH_BITS {
            0 => RecordKind::Effects,
            1 if version >= 3 => RecordKind::Charges,
            2 if version >= 4 => RecordKind::CompactCharges,
            3 if version >= 6 => RecordKind::CompactEffects,
            other => break Some(format!("unknown record kind {other} at byte {at}")),
        };
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if length > MAX_RECORD_BYTES {
            break Some(format!("record length {length} at byte {at} exceeds the limit"));
        }
        let end = at + RECORD_HEADER_BYTES + length;
        if end > bytes.len() {
            break Some(format!("torn record at byte {at}"));
        }
        if record_crc(kind, &bytes[at + 8..end]) != crc {
            break Some(format!("checksum mismatch at byte {at}"));
        }
        let mut lsn = [0u8; 8];
        lsn.copy_from_slice(&bytes[at + 8..at + 16]);
        let lsn = u64::from_le_bytes(lsn);
        if expected.is_some_and(|e| e != lsn) {
            break Some(format!("sequence break at byte {at}: LSN {lsn}, expected {}", expected.unwrap_or(0)));
        }
        expected = Some(lsn + 1);
        records.push(RecordSpan { lsn, kind, payload: at + RECORD_HEADER_BYTES..end });
        at = end;
    };
    (records, at, cut_reason)
}

/// Appends framed records to a storage device with group commit.
pub struct Journal {
    storage: Box<dyn Storage>,
    /// The storage's syncer, made when first asked for.
    syncer: Option<Arc<dyn Syncer>>,
    policy: FsyncPolicy,
    buffer: Vec<u8>,
    last_sync: Instant,
    /// Records appended since the segment was opened.
    pub records_in_segment: u64,
    lengths: Arc<Lengths>,
    path: Option<PathBuf>,
    /// Where sync latencies are counted, if anywhere ([`Journal::timed`]).
    fsync: Option<Arc<Histogram>>,
}

/// How much of the segment was handed to the device, and how much is known durable.
#[derive(Debug, Default)]
struct Lengths {
    written: AtomicU64,
    synced: AtomicU64,
}

/// Runs `sync`, counting its latency in `fsync` when given (a failed sync too: the time
/// was spent).
fn timed(fsync: Option<&Histogram>, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    let Some(fsync) = fsync else { return sync() };
    let started = Instant::now();
    let synced = sync();
    fsync.observe(started.elapsed());
    synced
}

/// A syncer that records how much of the segment it made durable.
struct Tracked {
    inner: Arc<dyn Syncer>,
    lengths: Arc<Lengths>,
    fsync: Option<Arc<Histogram>>,
}

impl Syncer for Tracked {
    fn sync(&self) -> io::Result<()> {
        // What was written before the sync started is durable once it returns.
        let written = self.lengths.written.load(Ordering::Acquire);
        timed(self.fsync.as_deref(), || self.inner.sync())?;
        self.lengths.synced.fetch_max(written, Ordering::AcqRel);
        Ok(())
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("policy", &self.policy).field("buffered", &self.buffer.len()).finish()
    }
}

impl Journal {
    /// Starts a journal on a device that holds `existing_len` good bytes (0: a new
    /// segment, whose header is written now).
    pub fn new(
        mut storage: Box<dyn Storage>,
        shard: u32,
        policy: FsyncPolicy,
        existing_len: u64,
    ) -> io::Result<Journal> {
        let mut length = existing_len;
        if existing_len == 0 {
            let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES);
            header.extend_from_slice(&JOURNAL_MAGIC);
            header.extend_from_slice(&JOURNAL_FORMAT_VERSION.to_le_bytes());
            header.extend_from_slice(&shard.to_le_bytes());
            storage.append(&header)?;
            storage.sync()?;
            length = header.len() as u64;
        }
        // Bytes found on the device at recovery count as durable: they were read back.
        let lengths = Lengths { written: AtomicU64::new(length), synced: AtomicU64::new(length) };
        Ok(Journal {
            storage,
            syncer: None,
            policy,
            buffer: Vec::with_capacity(1 << 20),
            last_sync: Instant::now(),
            records_in_segment: 0,
            lengths: Arc::new(lengths),
            path: None,
            fsync: None,
        })
    }

    /// Counts the latency of every sync of this journal (on its own thread or through
    /// its [`Journal::syncer`]) in `fsync`.
    pub fn timed(mut self, fsync: Arc<Histogram>) -> Journal {
        self.fsync = Some(fsync);
        self.syncer = None;
        self
    }

    fn sync_storage(&mut self) -> io::Result<()> {
        let storage = &mut self.storage;
        timed(self.fsync.as_deref(), || storage.sync())
    }

    /// Names the segment file this journal appends to.
    pub fn at(mut self, path: PathBuf) -> Journal {
        self.path = Some(path);
        self
    }

    /// The segment file, when known.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// How many bytes of the segment are known to be on stable storage: everything a
    /// successful sync covered. After a failed write or sync, only these are trusted.
    pub fn synced_len(&self) -> u64 {
        self.lengths.synced.load(Ordering::Acquire)
    }

    fn synced_all(&mut self) {
        let written = self.lengths.written.load(Ordering::Acquire);
        self.lengths.synced.fetch_max(written, Ordering::AcqRel);
        self.last_sync = Instant::now();
    }

    /// Frames a record of general effects into the group-commit buffer.
    pub fn append(&mut self, lsn: u64, payload: &[u8]) {
        self.append_kind(lsn, RecordKind::Effects, payload);
    }

    /// Frames a record of `kind` into the group-commit buffer.
    pub fn append_kind(&mut self, lsn: u64, kind: RecordKind, payload: &[u8]) {
        debug_assert!(payload.len() <= MAX_RECORD_BYTES);
        let start = self.buffer.len();
        let word = (payload.len() as u32 & LENGTH_MASK) | ((kind as u32) << LENGTH_BITS);
        self.buffer.extend_from_slice(&word.to_le_bytes());
        self.buffer.extend_from_slice(&[0; 4]);
        self.buffer.extend_from_slice(&lsn.to_le_bytes());
        self.buffer.extend_from_slice(payload);
        let crc = record_crc(kind, &self.buffer[start + 8..]);
        self.buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.records_in_segment += 1;
    }

    /// Writes the buffered records in one write and syncs per the policy. When this
    /// returns, the batch is durable as far as the policy promises.
    pub fn commit(&mut self) -> io::Result<()> {
        if !self.write()? {
            return self.maybe_interval_sync();
        }
        match self.policy {
            FsyncPolicy::EveryBatch => {
                self.sync_storage()?;
                self.synced_all();
                Ok(())
            }
            FsyncPolicy::Interval(_) => self.maybe_interval_sync(),
            FsyncPolicy::Never => Ok(()),
        }
    }

    /// Writes the buffered records in one write without forcing them to stable storage,
    /// whatever the policy: for a caller that syncs through [`Journal::syncer`] on another
    /// thread and answers only after that. Returns whether anything was written.
    pub fn write(&mut self) -> io::Result<bool> {
        if self.buffer.is_empty() {
            return Ok(false);
        }
        self.storage.append(&self.buffer)?;
        self.lengths.written.fetch_add(self.buffer.len() as u64, Ordering::AcqRel);
        self.buffer.clear();
        Ok(true)
    }

    /// A handle that syncs this segment from another thread.
    pub fn syncer(&mut self) -> io::Result<Arc<dyn Syncer>> {
        if let Some(syncer) = &self.syncer {
            return Ok(Arc::clone(syncer));
        }
        let syncer: Arc<dyn Syncer> = Arc::new(Tracked {
            inner: self.storage.syncer()?,
            lengths: Arc::clone(&self.lengths),
            fsync: self.fsync.clone(),
        });
        self.syncer = Some(Arc::clone(&syncer));
        Ok(syncer)
    }

    fn maybe_interval_sync(&mut self) -> io::Result<()> {
        if let FsyncPolicy::Interval(interval) = self.policy {
            if self.last_sync.elapsed() >= interval {
                self.sync_storage()?;
                self.synced_all();
            }
        }
        Ok(())
    }

    /// Forces everything written to stable storage (on shutdown).
    pub fn sync(&mut self) -> io::Result<()> {
        self.commit()?;
        self.sync_storage()?;
        self.synced_all();
        Ok(())
    }
}

/// The segment files of a shard in a data directory, oldest first.
pub fn segments(fs: &dyn FileSystem, dir: &Path, shard: u32) -> Result<Vec<(u64, PathBuf)>, EngineError> {
    let prefix = format!("shard-{shard}-");
    let mut found = Vec::new();
    for path in fs.list(dir).map_err(EngineError::io(dir))? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if let Some(first) = name.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(".journal")) {
            if let Ok(first) = first.parse::<u64>() {
                found.push((first, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Path of the segment of `shard` whose first record is `first_lsn`.
pub(crate) fn segment_path(dir: &Path, shard: u32, first_lsn: u64) -> PathBuf {
    dir.join(format!("shard-{shard}-{first_lsn:020}.journal"))
}

//! The rated-event ledger: every change of money or allowance the engine made, one entry
//! each, with what itemisation and billing need (account, subscription, identity,
//! service, rating group, called number and the prefix that matched, band, start, units
//! reported and charged, allowance draws, amount and currency, plan and version, the rate
//! line, the request's key and its journal position).
//!
//! The journal stays the one source of truth: the ledger is derived from it by a
//! [`LedgerBuilder`] (a thread of the engine, or `tollgate usage` on a stopped data
//! directory), which reads only what the journal holds durably and can always be run
//! again: entries are idempotent by journal position. Files are per shard and calendar
//! month of posting (byte format in [`file`]), so reading a period reads its months
//! only, and an account's entries are in its shard's files.
//!
//! Every money movement of a journal record is on exactly one entry, so the entries of
//! an account add up to its balance.

mod builder;
mod entries;
pub mod file;
mod follow;

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

pub use builder::LedgerBuilder;
pub use entries::{EntryKind, LedgerEntry};
pub use follow::{LedgerFollower, LedgerPosition};

use std::sync::Arc;

use crate::cycle::month_window;
use crate::error::EngineError;
use crate::fs::{FileSystem, RealFs};
use crate::ledger::builder::Cursor;
use crate::ledger::file::{check_header, Frame, HEADER_BYTES, MAX_FRAME_BYTES};
use crate::model::AccountId;

/// The ledger's name as a consumer of archived journal segments ([`crate::retention`]).
pub const CONSUMER: &str = "ledger";

/// The ledger's folder in a data directory.
pub fn ledger_dir(dir: &Path) -> PathBuf {
    dir.join("ledger")
}

pub(crate) fn cursor_path(dir: &Path, shard: u32) -> PathBuf {
    ledger_dir(dir).join(format!("shard-{shard}.cursor"))
}

pub(crate) fn file_path(dir: &Path, month: &str, shard: u32) -> PathBuf {
    ledger_dir(dir).join(month).join(format!("shard-{shard}.ledger"))
}

/// Whether the month `YYYY-MM` overlaps `[from, until)`.
fn month_overlaps(name: &str, from: i64, until: i64) -> bool {
    let (Ok(year), Ok(month)) = (name[..4].parse::<i64>(), name[5..].parse::<i64>()) else { return false };
    let (start, next) = month_window(year, month);
    start < until && from < next
}

/// Reads one ledger file frame by frame, up to the length its cursor recorded.
struct FileFrames {
    path: PathBuf,
    file: std::io::BufReader<Box<dyn Read + Send>>,
    left: u64,
    offset: u64,
    payload: Vec<u8>,
}

impl FileFrames {
    fn open(fs: &dyn FileSystem, path: PathBuf, shard: u32, len: u64) -> Result<Option<FileFrames>, EngineError> {
        let file = match fs.open_read(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(EngineError::Io { path, source: err }),
        };
        let mut file = std::io::BufReader::with_capacity(1 << 20, file);
        if len < HEADER_BYTES as u64 {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_BYTES];
        file.read_exact(&mut head).map_err(EngineError::io(&path))?;
        check_header(&head, shard).map_err(|reason| EngineError::Ledger { path: path.clone(), reason })?;
        Ok(Some(FileFrames {
            path,
            file,
            left: len - HEADER_BYTES as u64,
            offset: HEADER_BYTES as u64,
            payload: Vec::new(),
        }))
    }

    /// Reads `path` from byte `from` (a frame boundary, or 0 for the start: the header is
    /// checked then) up to `len`.
    fn open_at(
        fs: &dyn FileSystem,
        path: PathBuf,
        shard: u32,
        from: u64,
        len: u64,
    ) -> Result<Option<FileFrames>, EngineError> {
        if from < HEADER_BYTES as u64 {
            return FileFrames::open(fs, path, shard, len);
        }
        if from >= len {
            return Ok(None);
        }
        let file = match fs.open_read_at(&path, from) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(EngineError::Io { path, source: err }),
        };
        let file = std::io::BufReader::with_capacity(1 << 20, file);
        Ok(Some(FileFrames { path, file, left: len - from, offset: from, payload: Vec::new() }))
    }

    /// The next frame's payload, or `None` at the cursor's length.
    fn next(&mut self) -> Result<Option<Frame<'_>>, EngineError> {
        if self.left == 0 {
            return Ok(None);
        }
        let damaged = |path: &Path, at: u64, reason: String| EngineError::Ledger {
            path: path.to_path_buf(),
            reason: format!("frame at byte {at}: {reason}"),
        };
        let mut head = [0u8; 8];
        self.file.read_exact(&mut head).map_err(EngineError::io(&self.path))?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_FRAME_BYTES || 8 + len as u64 > self.left {
            return Err(damaged(&self.path, self.offset, format!("length {len} runs past the cursor")));
        }
        self.payload.resize(len, 0);
        self.file.read_exact(&mut self.payload).map_err(EngineError::io(&self.path))?;
        if crc32fast::hash(&self.payload) != crc {
            return Err(damaged(&self.path, self.offset, "checksum mismatch".to_owned()));
        }
        let at = self.offset;
        self.left -= 8 + len as u64;
        self.offset += 8 + len as u64;
        let frame = Frame::parse(&self.payload).map_err(|reason| damaged(&self.path, at, reason))?;
        Ok(Some(frame))
    }
}

/// The files of one shard that hold months overlapping `[from, until)`, with the
/// lengths the shard's cursor recorded.
fn shard_files(
    fs: &dyn FileSystem,
    dir: &Path,
    shard: u32,
    from: i64,
    until: i64,
) -> Result<Vec<(PathBuf, u64)>, EngineError> {
    let cursor = Cursor::read(fs, &cursor_path(dir, shard))?;
    Ok(cursor
        .files
        .iter()
        .filter(|(month, _)| month_overlaps(month, from, until))
        .map(|(month, len)| (file_path(dir, month, shard), *len))
        .collect())
}

/// The entries of `account` posted in `[from, until)` (Unix seconds), oldest first, read
/// as they are needed.
pub fn account_entries(
    dir: &Path,
    shards: usize,
    account: AccountId,
    from: i64,
    until: i64,
) -> Result<AccountEntries, EngineError> {
    account_entries_on(Arc::new(RealFs::new()), dir, shards, account, from, until)
}

/// [`account_entries`] on the file system `fs`.
pub fn account_entries_on(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    shards: usize,
    account: AccountId,
    from: i64,
    until: i64,
) -> Result<AccountEntries, EngineError> {
    let shard = crate::runtime::shard_of(account, shards) as u32;
    let files = shard_files(&*fs, dir, shard, from, until)?.into();
    Ok(AccountEntries {
        fs,
        files,
        current: None,
        shard,
        account,
        from_at: from,
        until_at: until,
        ready: VecDeque::new(),
    })
}

/// An account's entries in a period ([`account_entries`]).
pub struct AccountEntries {
    fs: Arc<dyn FileSystem>,
    files: VecDeque<(PathBuf, u64)>,
    current: Option<FileFrames>,
    shard: u32,
    account: AccountId,
    from_at: i64,
    until_at: i64,
    ready: VecDeque<LedgerEntry>,
}

impl std::fmt::Debug for AccountEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountEntries").field("account", &self.account).field("files", &self.files).finish()
    }
}

impl AccountEntries {
    fn fill(&mut self) -> Result<bool, EngineError> {
        loop {
            if self.current.is_none() {
                let Some((path, len)) = self.files.pop_front() else { return Ok(false) };
                self.current = FileFrames::open(&*self.fs, path, self.shard, len)?;
                continue;
            }
            let Some(frames) = self.current.as_mut() else { continue };
            let path = frames.path.clone();
            let Some(frame) = frames.next()? else {
                self.current = None;
                continue;
            };
            let (account, from, until) = (self.account, self.from_at, self.until_at);
            let wanted = |i: usize| frame.account(i) == account && (from..until).contains(&frame.posted_at(i));
            if !(0..frame.count).any(wanted) {
                continue;
            }
            let entries = frame.entries(wanted).map_err(|reason| EngineError::Ledger { path, reason })?;
            self.ready.extend(entries);
            return Ok(true);
        }
    }
}

impl Iterator for AccountEntries {
    type Item = Result<LedgerEntry, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.ready.pop_front() {
                return Some(Ok(entry));
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(err) => {
                    self.files.clear();
                    self.current = None;
                    return Some(Err(err));
                }
            }
        }
    }
}

/// The entries of each of `accounts` posted in `[from, until)` (Unix seconds), oldest
/// first per account, reading each shard's files of the period once for all of them
/// (a bill run reads a batch of accounts this way instead of one scan per account).
/// An account with no entries has none in the map.
pub fn accounts_entries(
    dir: &Path,
    shards: usize,
    accounts: &std::collections::HashSet<AccountId>,
    from: i64,
    until: i64,
) -> Result<std::collections::HashMap<AccountId, Vec<LedgerEntry>>, EngineError> {
    accounts_entries_on(&RealFs::new(), dir, shards, accounts, from, until)
}

/// [`accounts_entries`] on the file system `fs`.
pub fn accounts_entries_on(
    fs: &dyn FileSystem,
    dir: &Path,
    shards: usize,
    accounts: &std::collections::HashSet<AccountId>,
    from: i64,
    until: i64,
) -> Result<std::collections::HashMap<AccountId, Vec<LedgerEntry>>, EngineError> {
    let mut found: std::collections::HashMap<AccountId, Vec<LedgerEntry>> = Default::default();
    let wanted_shards: std::collections::BTreeSet<u32> =
        accounts.iter().map(|account| crate::runtime::shard_of(*account, shards) as u32).collect();
    for shard in wanted_shards {
        for (path, len) in shard_files(fs, dir, shard, from, until)? {
            let Some(mut frames) = FileFrames::open(fs, path.clone(), shard, len)? else { continue };
            while let Some(frame) = frames.next()? {
                let wanted =
                    |i: usize| accounts.contains(&frame.account(i)) && (from..until).contains(&frame.posted_at(i));
                if !(0..frame.count).any(wanted) {
                    continue;
                }
                let entries =
                    frame.entries(wanted).map_err(|reason| EngineError::Ledger { path: path.clone(), reason })?;
                for entry in entries {
                    found.entry(entry.account).or_default().push(entry);
                }
            }
        }
    }
    Ok(found)
}

/// What a period's entries add up to for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AccountTotals {
    /// Σ amounts: the money the period moved on the account's balance.
    pub amount: Decimal,
    /// Σ of the usage entries' amounts alone (negative: charged).
    pub usage: Decimal,
    pub entries: u64,
}

/// Every account's totals over the entries posted in `[from, until)`, reading only the
/// fixed-width columns of the period's files.
pub fn totals(
    dir: &Path,
    shards: usize,
    from: i64,
    until: i64,
) -> Result<BTreeMap<AccountId, AccountTotals>, EngineError> {
    totals_on(&RealFs::new(), dir, shards, from, until)
}

/// [`totals`] on the file system `fs`.
pub fn totals_on(
    fs: &dyn FileSystem,
    dir: &Path,
    shards: usize,
    from: i64,
    until: i64,
) -> Result<BTreeMap<AccountId, AccountTotals>, EngineError> {
    let mut by_account: std::collections::HashMap<AccountId, AccountTotals, foldhash::fast::RandomState> =
        Default::default();
    for shard in 0..shards as u32 {
        for (path, len) in shard_files(fs, dir, shard, from, until)? {
            let Some(mut frames) = FileFrames::open(fs, path, shard, len)? else { continue };
            while let Some(frame) = frames.next()? {
                for index in 0..frame.count {
                    if !(from..until).contains(&frame.posted_at(index)) {
                        continue;
                    }
                    let totals = by_account.entry(frame.account(index)).or_default();
                    let amount = frame.amount(index);
                    totals.amount += amount;
                    if frame.kind(index) == EntryKind::Usage.code() {
                        totals.usage += amount;
                    }
                    totals.entries += 1;
                }
            }
        }
    }
    Ok(by_account.into_iter().collect())
}

/// Each shard's ledger cursor (the last journal record built into it).
pub fn cursors(dir: &Path, shards: usize) -> Result<Vec<u64>, EngineError> {
    (0..shards as u32).map(|shard| Cursor::read(&RealFs::new(), &cursor_path(dir, shard)).map(|c| c.lsn)).collect()
}

/// The entries of a journal segment's bytes (the crash tests' check that they add up at
/// every cut).
#[doc(hidden)]
pub fn entries_of_segment(bytes: &[u8], shard: u32) -> Result<Vec<LedgerEntry>, String> {
    let scan = crate::journal::scan(bytes, shard, None)?;
    let mut out = Vec::new();
    for record in scan.records {
        out.extend(entries::entries_of(record.lsn, record.kind, &record.payload)?);
    }
    Ok(out)
}

//! Building the ledger from the journal: each shard's records past its cursor, up to
//! what the journal holds durably, become entries appended to the month files; the
//! files are synced, then the cursor moves. A crash between the two leaves bytes past
//! the cursor, which the next builder cuts off before it goes on, so every record
//! is in the ledger exactly once (idempotent by journal position).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cycle::{month_of, month_window};
use crate::error::EngineError;
use crate::fs::FileSystem;
use crate::journal::{scan_spans, segment_version, segments, SEGMENT_HEADER_BYTES};
use crate::ledger::entries::drafts_of;
use crate::ledger::file::{header, FrameBuilder, Frames, FRAME_ENTRIES};
use crate::ledger::{cursor_path, file_path, ledger_dir, CONSUMER};
use crate::recovery::archive_dir;

/// Entries held before they are written out, at most.
const FLUSH_ENTRIES: usize = 1 << 16;

/// The frames being built for one month file.
#[derive(Debug, Default)]
struct MonthWriter {
    frame: FrameBuilder,
    /// Finished frames not yet written.
    bytes: Vec<u8>,
    entries: usize,
}

/// The pending frames by month, with the month of the last entry remembered (entries
/// come in posting order, so the month rarely changes).
#[derive(Debug, Default)]
struct Pending {
    months: BTreeMap<String, MonthWriter>,
    last: Option<(i64, i64, String)>,
    entries: usize,
}

impl Pending {
    fn push(&mut self, draft: &crate::ledger::entries::Draft<'_>) {
        let at = draft.posted_at;
        let month = match &self.last {
            Some((from, until, name)) if (*from..*until).contains(&at) => name.clone(),
            _ => {
                let (year, month) = month_of(at);
                let (from, until) = month_window(year, month);
                let name = format!("{year:04}-{month:02}");
                self.last = Some((from, until, name.clone()));
                name
            }
        };
        let writer = self.months.entry(month).or_default();
        writer.frame.push(draft);
        writer.entries += 1;
        if writer.frame.len() >= FRAME_ENTRIES {
            writer.frame.finish_into(&mut writer.bytes);
        }
        self.entries += 1;
    }
}

/// How far a shard's ledger is built: the last journal record it holds, and how long
/// each of its month files was when that was made durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) lsn: u64,
    pub(crate) files: BTreeMap<String, u64>,
}

impl Cursor {
    pub(crate) fn encode(&self) -> String {
        let mut text = format!("lsn {}\n", self.lsn);
        for (month, len) in &self.files {
            text.push_str(&format!("{month} {len}\n"));
        }
        text
    }

    fn decode(text: &str, path: &Path) -> Result<Cursor, EngineError> {
        let bad = |line: usize| EngineError::Ledger {
            path: path.to_path_buf(),
            reason: format!("line {line}: expected `lsn N` then `YYYY-MM LENGTH` lines"),
        };
        let mut cursor = Cursor::default();
        for (index, line) in text.lines().enumerate() {
            let (name, value) = line.split_once(' ').ok_or_else(|| bad(index + 1))?;
            let value: u64 = value.parse().map_err(|_| bad(index + 1))?;
            if index == 0 {
                if name != "lsn" {
                    return Err(bad(1));
                }
                cursor.lsn = value;
            } else if is_month(name) {
                cursor.files.insert(name.to_owned(), value);
            } else {
                return Err(bad(index + 1));
            }
        }
        Ok(cursor)
    }

    pub(crate) fn read(fs: &dyn FileSystem, path: &Path) -> Result<Cursor, EngineError> {
        match fs.read(path) {
            Ok(bytes) => Cursor::decode(&String::from_utf8_lossy(&bytes), path),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Cursor::default()),
            Err(err) => Err(EngineError::Io { path: path.to_path_buf(), source: err }),
        }
    }
}

pub(crate) fn is_month(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 7 && b[4] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit())
}

/// Where a shard's reading of the journal goes on.
#[derive(Debug, Clone)]
struct Tail {
    /// The segment's name (its first LSN) and format version.
    segment: u64,
    version: u32,
    /// The byte after the last record read.
    offset: u64,
}

#[derive(Debug)]
struct ShardLedger {
    shard: u32,
    cursor: Cursor,
    tail: Option<Tail>,
    /// The LSN last recorded as the retention consumer's watermark.
    watermark: u64,
}

/// Builds the ledger of one data directory. Only one builder works on a directory at a
/// time (`ledger/LOCK`).
#[derive(Debug)]
pub struct LedgerBuilder {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    shards: Vec<ShardLedger>,
    _lock: Option<std::fs::File>,
}

impl LedgerBuilder {
    /// Takes the ledger's lock and brings each shard's files back to its cursor. With
    /// `journal_ends` (each shard's last durable LSN, as recovery found it), a shard
    /// whose ledger holds records the journal lost (a power cut under a lax fsync policy)
    /// is rolled back to the journal.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        shards: usize,
        journal_ends: Option<&[u64]>,
    ) -> Result<LedgerBuilder, EngineError> {
        let folder = ledger_dir(dir);
        crate::durable::create_dir_all(&*fs, &folder).map_err(EngineError::io(&folder))?;
        let lock_path = folder.join("LOCK");
        let lock = match fs.lock(&lock_path) {
            Ok(lock) => lock,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(EngineError::Locked { pid: String::new(), path: lock_path })
            }
            Err(err) => return Err(EngineError::Io { path: lock_path, source: err }),
        };
        let mut builder = LedgerBuilder { fs, dir: dir.to_path_buf(), shards: Vec::new(), _lock: lock };
        for shard in 0..shards as u32 {
            let cursor = Cursor::read(&*builder.fs, &cursor_path(dir, shard))?;
            let mut ledger = ShardLedger { shard, watermark: cursor.lsn, cursor, tail: None };
            builder.repair(&mut ledger)?;
            if let Some(end) = journal_ends.and_then(|ends| ends.get(shard as usize)) {
                if ledger.cursor.lsn > *end {
                    builder.roll_back(&mut ledger, *end)?;
                }
            }
            builder.shards.push(ledger);
        }
        Ok(builder)
    }

    /// The last journal record each shard's ledger holds.
    pub fn cursors(&self) -> Vec<u64> {
        self.shards.iter().map(|s| s.cursor.lsn).collect()
    }

    /// Cuts each month file back to the cursor's length and removes files the cursor
    /// does not know (written by a builder that crashed before moving its cursor).
    fn repair(&self, ledger: &mut ShardLedger) -> Result<(), EngineError> {
        let fs = &*self.fs;
        let name = format!("shard-{}.ledger", ledger.shard);
        for month in months(fs, &self.dir)? {
            let path = ledger_dir(&self.dir).join(&month).join(&name);
            if !fs.exists(&path) {
                continue;
            }
            let len = fs.len(&path).map_err(EngineError::io(&path))?;
            match ledger.cursor.files.get(&month) {
                None => crate::durable::remove_file(fs, &path).map_err(EngineError::io(&path))?,
                Some(kept) if len > *kept => {
                    fs.set_len(&path, *kept).and_then(|()| fs.sync_file(&path)).map_err(EngineError::io(&path))?;
                }
                Some(kept) if len < *kept => {
                    return Err(EngineError::Ledger {
                        path,
                        reason: format!("{len} bytes, shorter than the {kept} its cursor recorded"),
                    })
                }
                Some(_) => {}
            }
        }
        for (month, len) in &ledger.cursor.files {
            let path = file_path(&self.dir, month, ledger.shard);
            if *len > 0 && !fs.exists(&path) {
                return Err(EngineError::Ledger { path, reason: "missing; its cursor recorded it".to_owned() });
            }
        }
        Ok(())
    }

    /// Drops the entries of records after `lsn`: each file is cut at its first frame
    /// that holds one, and the cursor goes back to before the earliest such frame (the
    /// records between are built again from the journal).
    fn roll_back(&self, ledger: &mut ShardLedger, lsn: u64) -> Result<(), EngineError> {
        let fs = &*self.fs;
        let mut back_to = lsn;
        let mut files = ledger.cursor.files.clone();
        // A frame that spans the cut is dropped whole, and its earlier records are built
        // again: cut every file again at the new point until none spans it.
        loop {
            let mut moved = false;
            for (month, len) in files.iter_mut() {
                let path = file_path(&self.dir, month, ledger.shard);
                let (keep, spanning) = frames_through(fs, &path, *len, ledger.shard, back_to)?;
                if let Some(first) = spanning.filter(|first| *first <= back_to) {
                    back_to = first.saturating_sub(1);
                    moved = true;
                }
                if keep != *len {
                    fs.set_len(&path, keep).and_then(|()| fs.sync_file(&path)).map_err(EngineError::io(&path))?;
                    *len = keep;
                }
            }
            if !moved {
                break;
            }
        }
        tracing::warn!(
            shard = ledger.shard,
            from = ledger.cursor.lsn,
            to = back_to,
            "the ledger held records the journal no longer has; rolled back to the journal"
        );
        ledger.cursor = Cursor { lsn: back_to, files };
        ledger.tail = None;
        self.write_cursor(ledger)
    }

    fn write_cursor(&self, ledger: &ShardLedger) -> Result<(), EngineError> {
        let path = cursor_path(&self.dir, ledger.shard);
        crate::durable::replace_file(&*self.fs, &path, ledger.cursor.encode().as_bytes(), 0o644)
            .map_err(EngineError::io(&path))
    }

    /// Builds each shard's ledger up to `limits[shard]` (its last durable LSN; `None`:
    /// everything the journal holds). Returns the entries written.
    pub fn catch_up(&mut self, limits: Option<&[u64]>) -> Result<usize, EngineError> {
        let mut shards = std::mem::take(&mut self.shards);
        let mut built = Ok(0);
        for (index, ledger) in shards.iter_mut().enumerate() {
            let limit = limits.and_then(|l| l.get(index).copied()).unwrap_or(u64::MAX);
            built = self.catch_up_shard(ledger, limit).and_then(|written| built.map(|sum| sum + written));
            if built.is_err() {
                break;
            }
        }
        self.shards = shards;
        built
    }

    fn catch_up_shard(&self, ledger: &mut ShardLedger, limit: u64) -> Result<usize, EngineError> {
        if ledger.cursor.lsn >= limit {
            return Ok(0);
        }
        let fs = &*self.fs;
        // The live segments first, then the archive: a snapshot moves segments from the
        // one to the other meanwhile, and a segment moved between the two listings is then
        // in the second (listed the other way round, it was in neither and its records
        // were skipped).
        let mut files = segments(fs, &self.dir, ledger.shard)?;
        match segments(fs, &archive_dir(&self.dir), ledger.shard) {
            Ok(archived) => files.extend(archived),
            // No archive yet: nothing was retired.
            Err(EngineError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        files.sort();
        files.dedup_by_key(|(first, _)| *first);
        // Where to start: the tail's segment if it is still there, else the last
        // segment named at or before the next record.
        let next = ledger.cursor.lsn + 1;
        let start = match &ledger.tail {
            Some(tail) if files.iter().any(|(first, _)| *first == tail.segment) => tail.clone(),
            _ => {
                ledger.tail = None;
                let index = files.iter().rposition(|(first, _)| *first <= next).unwrap_or(0);
                match files.get(index) {
                    Some((first, _)) => Tail { segment: *first, version: 0, offset: 0 },
                    None => return Ok(0),
                }
            }
        };
        let mut pending = Pending::default();
        let mut written = 0;
        let mut lsn = ledger.cursor.lsn;
        let mut tail = start;
        let position = files.iter().position(|(first, _)| *first == tail.segment).unwrap_or(0);
        'segments: for (index, (first, path)) in files.iter().enumerate().skip(position) {
            if *first != tail.segment {
                tail = Tail { segment: *first, version: 0, offset: 0 };
            }
            // A snapshot may have moved the segment to the archive since it was listed.
            let bytes = match fs.read_from(path, tail.offset) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    let archived = archive_dir(&self.dir).join(path.file_name().unwrap_or_default());
                    fs.read_from(&archived, tail.offset).map_err(EngineError::io(&archived))?
                }
                read => read.map_err(EngineError::io(path))?,
            };
            let mut at = 0;
            if tail.offset == 0 {
                if bytes.len() < SEGMENT_HEADER_BYTES {
                    break;
                }
                tail.version = segment_version(&bytes, ledger.shard).map_err(|reason| EngineError::Journal {
                    path: path.clone(),
                    offset: 0,
                    reason,
                })?;
                at = SEGMENT_HEADER_BYTES;
            }
            let (records, good, cut) = scan_spans(&bytes, at, tail.version, None);
            let mut consumed = at;
            for record in records {
                let record_end = record.payload.end;
                if record.lsn <= lsn {
                    consumed = record_end;
                    continue;
                }
                if record.lsn > limit {
                    tail.offset += consumed as u64;
                    break 'segments;
                }
                // A ledger built from nothing starts where the archive does (pruned
                // segments are gone); past that, a record skipped is never silently lost.
                if record.lsn != lsn + 1 && lsn != 0 {
                    return Err(EngineError::Journal {
                        path: path.clone(),
                        offset: tail.offset + consumed as u64,
                        reason: format!("the journal skips from LSN {lsn} to {}: the ledger cannot go on", record.lsn),
                    });
                }
                drafts_of(record.lsn, record.kind, &bytes[record.payload], &mut |draft| pending.push(draft)).map_err(
                    |reason| EngineError::Journal { path: path.clone(), offset: tail.offset + consumed as u64, reason },
                )?;
                lsn = record.lsn;
                consumed = record_end;
                if pending.entries >= FLUSH_ENTRIES {
                    written += self.flush(ledger, &mut pending, lsn)?;
                }
            }
            debug_assert_eq!(consumed, good);
            tail.offset += consumed as u64;
            // A torn tail is the writer's record in flight (or damage recovery will cut):
            // read on from here next time. The end of a segment with a later one: go on.
            if cut.is_some() || index + 1 == files.len() {
                break;
            }
        }
        if lsn != ledger.cursor.lsn {
            written += self.flush(ledger, &mut pending, lsn)?;
        }
        // Only once what was read is in the ledger: after a failed flush the next build
        // reads those records again from where the last good one left off.
        ledger.tail = Some(tail);
        Ok(written)
    }

    /// Appends the pending entries to their month files, syncs them, then records the
    /// cursor at `lsn`.
    fn flush(&self, ledger: &mut ShardLedger, pending: &mut Pending, lsn: u64) -> Result<usize, EngineError> {
        let fs = &*self.fs;
        let mut written = 0;
        pending.entries = 0;
        // The cursor takes the new lengths only once every file is synced: after a
        // failure, each file is cut back to the cursor's length before the next append,
        // so the bytes of a failed flush are never inside the cursor's range.
        let mut lengths = ledger.cursor.files.clone();
        for (month, mut writer) in std::mem::take(&mut pending.months) {
            let path = file_path(&self.dir, &month, ledger.shard);
            let mut bytes = Vec::new();
            let known = ledger.cursor.files.get(&month).copied().unwrap_or(0);
            if known == 0 {
                let folder = ledger_dir(&self.dir).join(&month);
                crate::durable::create_dir_all(fs, &folder).map_err(EngineError::io(&folder))?;
                bytes.extend_from_slice(&header(ledger.shard));
            }
            if fs.exists(&path) && fs.len(&path).map_err(EngineError::io(&path))? != known {
                fs.set_len(&path, known).map_err(EngineError::io(&path))?;
            }
            bytes.append(&mut writer.bytes);
            writer.frame.finish_into(&mut bytes);
            let mut storage = fs.open_append(&path).map_err(EngineError::io(&path))?;
            storage.append(&bytes).and_then(|()| storage.sync()).map_err(EngineError::io(&path))?;
            if known == 0 {
                crate::durable::sync_parent(fs, &path).map_err(EngineError::io(&path))?;
            }
            lengths.insert(month, known + bytes.len() as u64);
            written += writer.entries;
        }
        ledger.cursor.files = lengths;
        ledger.cursor.lsn = lsn;
        self.write_cursor(ledger)?;
        if lsn >= ledger.watermark + WATERMARK_EVERY_RECORDS {
            crate::retention::set_watermark_on(fs, &self.dir, CONSUMER, ledger.shard, lsn)?;
            ledger.watermark = lsn;
        }
        Ok(written)
    }

    /// Records each shard's cursor as the retention watermark now.
    pub fn mark(&mut self) -> Result<(), EngineError> {
        for ledger in &mut self.shards {
            if ledger.cursor.lsn > ledger.watermark {
                crate::retention::set_watermark_on(&*self.fs, &self.dir, CONSUMER, ledger.shard, ledger.cursor.lsn)?;
                ledger.watermark = ledger.cursor.lsn;
            }
        }
        Ok(())
    }
}

/// How much of a ledger file (of `len` bytes by its cursor) holds only records up to
/// `lsn`, and the first LSN of the frame after that, if one follows.
fn frames_through(
    fs: &dyn FileSystem,
    path: &Path,
    len: u64,
    shard: u32,
    lsn: u64,
) -> Result<(u64, Option<u64>), EngineError> {
    let bytes = fs.read(path).map_err(EngineError::io(path))?;
    let bytes = &bytes[..usize::try_from(len).unwrap_or(usize::MAX).min(bytes.len())];
    let mut frames =
        Frames::new(bytes, shard).map_err(|reason| EngineError::Ledger { path: path.to_path_buf(), reason })?;
    let mut keep = frames.offset() as u64;
    while let Some(frame) = frames.next() {
        if frame.last_lsn > lsn {
            return Ok((keep, Some(frame.first_lsn)));
        }
        keep = frames.offset() as u64;
    }
    Ok((keep, None))
}

/// How far the cursor moves before the retention watermark follows it (archived
/// segments are kept until then; a watermark behind the cursor only keeps them longer).
const WATERMARK_EVERY_RECORDS: u64 = 4096;

/// The month folders of a data directory's ledger.
pub(crate) fn months(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<String>, EngineError> {
    let folder = ledger_dir(dir);
    let entries = match fs.list(&folder) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(EngineError::Io { path: folder, source: err }),
    };
    let mut months: Vec<String> = entries
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
        .filter(|n| is_month(n))
        .map(str::to_owned)
        .collect();
    months.sort();
    Ok(months)
}

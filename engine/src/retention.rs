//! How long archived journal segments are kept.
//!
//! A segment covered by a snapshot moves to `archive/` (the audit trail: every top-up,
//! adjustment and charge with its reason). It is removed once both hold:
//! - **every consumer has read it**: a reader that derives something from the journal
//!   (a ledger, an export to a data warehouse) registers a watermark per shard in
//!   `archive/consumers/{NAME}` (`shard = lsn` lines, [`set_watermark`]); a segment
//!   whose last record is above any consumer's watermark for its shard stays;
//! - **the retention period has passed** since its last record was written (the file's
//!   modification time), `--archive-retention-days`, 90 by default.
//!
//! Pruning runs after every snapshot and by hand (`tollgate archive prune`). Removal is
//! the only action: an operator who must keep the trail longer copies `archive/` away
//! (it is closed, append-free files) or raises the retention.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::EngineError;
use crate::fs::{FileSystem, RealFs};
use crate::journal::segments;
use crate::recovery::archive_dir;

/// Default retention of archived segments.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// Longest consumer name.
const MAX_CONSUMER_NAME: usize = 64;

pub fn consumers_dir(dir: &Path) -> PathBuf {
    archive_dir(dir).join("consumers")
}

/// Records that consumer `name` has read shard `shard`'s journal up to `lsn` (durably).
pub fn set_watermark(dir: &Path, name: &str, shard: u32, lsn: u64) -> Result<(), EngineError> {
    set_watermark_on(&RealFs::new(), dir, name, shard, lsn)
}

/// [`set_watermark`] on the file system `fs`.
pub(crate) fn set_watermark_on(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    shard: u32,
    lsn: u64,
) -> Result<(), EngineError> {
    if name.is_empty()
        || name.len() > MAX_CONSUMER_NAME
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(EngineError::Config(format!(
            "consumer name `{name}`: 1 to {MAX_CONSUMER_NAME} letters, digits, `-` or `_`"
        )));
    }
    let folder = consumers_dir(dir);
    crate::durable::create_dir_all(fs, &folder).map_err(EngineError::io(&folder))?;
    let path = folder.join(name);
    let mut marks = read_marks(fs, &path)?;
    marks.insert(shard, lsn);
    let text: String = marks.iter().map(|(shard, lsn)| format!("{shard} = {lsn}\n")).collect();
    crate::durable::replace_file(fs, &path, text.as_bytes(), 0o644).map_err(EngineError::io(&path))
}

/// Each registered consumer's watermarks, by name.
pub fn watermarks(dir: &Path) -> Result<BTreeMap<String, BTreeMap<u32, u64>>, EngineError> {
    watermarks_on(&RealFs::new(), dir)
}

fn watermarks_on(fs: &dyn FileSystem, dir: &Path) -> Result<BTreeMap<String, BTreeMap<u32, u64>>, EngineError> {
    let folder = consumers_dir(dir);
    let mut all = BTreeMap::new();
    let entries = match fs.list(&folder) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(all),
        Err(err) => return Err(EngineError::Io { path: folder, source: err }),
    };
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).filter(|n| !n.ends_with(".tmp")) else {
            continue;
        };
        all.insert(name.to_owned(), read_marks(fs, &path)?);
    }
    Ok(all)
}

fn read_marks(fs: &dyn FileSystem, path: &Path) -> Result<BTreeMap<u32, u64>, EngineError> {
    let text = match fs.read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => return Err(EngineError::Io { path: path.to_owned(), source: err }),
    };
    let mut marks = BTreeMap::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed = line
            .split_once('=')
            .and_then(|(shard, lsn)| Some((shard.trim().parse::<u32>().ok()?, lsn.trim().parse::<u64>().ok()?)));
        let Some((shard, lsn)) = parsed else {
            return Err(EngineError::Layout {
                path: path.to_owned(),
                line: index + 1,
                reason: format!("`{line}` is not `shard = lsn`"),
            });
        };
        marks.insert(shard, lsn);
    }
    Ok(marks)
}

/// What pruning found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Segments removed (or, on a dry run, that would be).
    pub removed: Vec<PathBuf>,
    pub removed_bytes: u64,
    /// Segments kept because a consumer has not read them yet.
    pub kept_for_consumers: usize,
    /// Segments kept because they are younger than the retention.
    pub kept_for_retention: usize,
}

/// Removes the archived segments that every consumer has read and whose last write is
/// older than `retention` at `now`; with `dry_run`, only says which.
pub fn prune(dir: &Path, retention: Duration, now: SystemTime, dry_run: bool) -> Result<Pruned, EngineError> {
    let fs = RealFs::new();
    let mut pruned = Pruned::default();
    for shard in crate::layout::shards_in(&fs, &archive_dir(dir))? {
        prune_shard(&fs, dir, shard, retention, now, dry_run, &mut pruned)?;
    }
    Ok(pruned)
}

/// [`prune`] for one shard's segments (what its snapshot thread runs).
pub fn prune_shard(
    fs: &dyn FileSystem,
    dir: &Path,
    shard: u32,
    retention: Duration,
    now: SystemTime,
    dry_run: bool,
    pruned: &mut Pruned,
) -> Result<(), EngineError> {
    let archive = archive_dir(dir);
    let consumers = watermarks_on(fs, dir)?;
    let files = segments(fs, &archive, shard)?;
    // A segment's last LSN is one before the next segment's first (archived or live).
    let mut firsts: Vec<u64> = files.iter().map(|(first, _)| *first).collect();
    firsts.extend(segments(fs, dir, shard)?.iter().map(|(first, _)| *first));
    firsts.sort_unstable();
    let mut removed_any = false;
    for (first, path) in files {
        let last = firsts.iter().find(|f| **f > first).map_or(u64::MAX, |next| next - 1);
        let unread = consumers.values().any(|marks| marks.get(&shard).is_none_or(|mark| *mark < last));
        if unread {
            pruned.kept_for_consumers += 1;
            continue;
        }
        let len = fs.len(&path).map_err(EngineError::io(&path))?;
        let age = fs.modified(&path).ok().and_then(|written| now.duration_since(written).ok());
        if age.is_none_or(|age| age < retention) {
            pruned.kept_for_retention += 1;
            continue;
        }
        if !dry_run {
            fs.remove_file(&path).map_err(EngineError::io(&path))?;
            removed_any = true;
        }
        pruned.removed_bytes += len;
        pruned.removed.push(path);
    }
    if removed_any {
        fs.sync_dir(&archive).map_err(EngineError::io(&archive))?;
    }
    Ok(())
}

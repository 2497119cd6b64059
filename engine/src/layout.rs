//! The data directory's layout record: how many shards its accounts are spread over and
//! which formats its files were last written in. Opening a directory with another shard
//! count would hide the accounts of the shards left out and let the same account id be
//! created a second time on another shard, so a mismatch is refused; the shard count
//! changes only through [`crate::reshard`], an explicit command.
//!
//! # File format
//!
//! `LAYOUT` in the data directory, UTF-8 text, one `key = value` per line:
//!
//! ```text
//! tollgate-data-layout = 1
//! shards = 2
//! journal_format = 9
//! snapshot_format = 7
//! ```
//!
//! Unknown keys are refused (a newer build's layout is not guessed at). It is replaced
//! durably ([`crate::durable::replace_file`]) when a directory is first opened, when a
//! build of a newer format opens it, and by a reshard.

use std::path::{Path, PathBuf};

use crate::error::EngineError;
use crate::fs::{FileSystem, RealFs};
use crate::journal::JOURNAL_FORMAT_VERSION;
use crate::snapshot::SNAPSHOT_FORMAT_VERSION;

/// The layout file's own format version.
pub const LAYOUT_VERSION: u32 = 1;
/// Most shards a data directory may have.
pub const MAX_SHARDS: usize = 256;

/// What the `LAYOUT` file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub shards: usize,
    pub journal_format: u32,
    pub snapshot_format: u32,
}

impl Layout {
    /// The layout this build writes for `shards`.
    pub fn current(shards: usize) -> Layout {
        Layout { shards, journal_format: JOURNAL_FORMAT_VERSION, snapshot_format: SNAPSHOT_FORMAT_VERSION }
    }

    fn encode(&self) -> String {
        format!(
            "tollgate-data-layout = {LAYOUT_VERSION}\nshards = {}\njournal_format = {}\nsnapshot_format = {}\n",
            self.shards, self.journal_format, self.snapshot_format
        )
    }

    fn decode(text: &str, path: &Path) -> Result<Layout, EngineError> {
        let bad = |line: usize, reason: String| EngineError::Layout { path: path.to_owned(), line, reason };
        // Each value with the line it is on.
        let (mut version, mut shards, mut journal, mut snapshot) = (None, None, None, None);
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let Some((key, value)) = content.split_once('=') else {
                return Err(bad(line, format!("`{content}` is not `key = value`")));
            };
            let (key, value) = (key.trim(), value.trim());
            let number = value.parse::<u32>().map_err(|_| bad(line, format!("`{key}`: `{value}` is not a number")))?;
            let slot = match key {
                "tollgate-data-layout" => &mut version,
                "shards" => &mut shards,
                "journal_format" => &mut journal,
                "snapshot_format" => &mut snapshot,
                other => return Err(bad(line, format!("unknown key `{other}` (written by a newer build?)"))),
            };
            if slot.replace((number, line)).is_some() {
                return Err(bad(line, format!("`{key}` is given twice")));
            }
        }
        let end = text.lines().count();
        let take =
            |value: Option<(u32, usize)>, key: &str| value.ok_or_else(|| bad(end, format!("`{key}` is missing")));
        let (version, line) = take(version, "tollgate-data-layout")?;
        if version != LAYOUT_VERSION {
            return Err(bad(line, format!("layout version {version}; this build reads {LAYOUT_VERSION}")));
        }
        let (shards, line) = take(shards, "shards")?;
        if !(1..=MAX_SHARDS as u32).contains(&shards) {
            return Err(bad(line, format!("`shards` = {shards}: 1 to {MAX_SHARDS}")));
        }
        Ok(Layout {
            shards: shards as usize,
            journal_format: take(journal, "journal_format")?.0,
            snapshot_format: take(snapshot, "snapshot_format")?.0,
        })
    }
}

pub fn layout_path(dir: &Path) -> PathBuf {
    dir.join("LAYOUT")
}

/// Reads the directory's layout: the `LAYOUT` file, or for a directory written before
/// it existed, the shards its files belong to. `None` for a directory with no shard data.
pub fn read(dir: &Path) -> Result<Option<Layout>, EngineError> {
    read_on(&RealFs::new(), dir)
}

/// [`read`] on `fs`.
pub fn read_on(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Layout>, EngineError> {
    let path = layout_path(dir);
    match fs.read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| EngineError::Layout {
                path: path.clone(),
                line: 0,
                reason: "not UTF-8".to_owned(),
            })?;
            return Layout::decode(&text, &path).map(Some);
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(EngineError::Io { path, source: err }),
    }
    let shards = shards_in(fs, dir)?;
    match shards.last() {
        None => Ok(None),
        Some(&highest) => {
            let count = highest as usize + 1;
            if shards.len() != count {
                let found: Vec<String> = shards.iter().map(u32::to_string).collect();
                return Err(EngineError::Layout {
                    path,
                    line: 0,
                    reason: format!(
                        "no LAYOUT file, and the shards found ({}) are not 0 to {highest}: restore the missing shards' files",
                        found.join(", ")
                    ),
                });
            }
            // Formats are what the files say; recovery checks each file's own header.
            Ok(Some(Layout { shards: count, journal_format: 0, snapshot_format: 0 }))
        }
    }
}

/// The shard numbers that have a journal segment or a snapshot in `dir`, ascending.
pub fn shards_on_disk(dir: &Path) -> Result<Vec<u32>, EngineError> {
    shards_in(&RealFs::new(), dir)
}

/// The shard numbers that have a journal segment or a snapshot in `dir` (a data
/// directory or its archive), ascending.
pub fn shards_in(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<u32>, EngineError> {
    let entries = match fs.list(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(EngineError::Io { path: dir.to_owned(), source: err }),
    };
    let mut shards = Vec::new();
    for entry in entries {
        let Some(name) = entry.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(rest) = name.strip_prefix("shard-") else { continue };
        let number = if let Some(number) = rest.strip_suffix(".snapshot") {
            number
        } else if rest.ends_with(".journal") {
            rest.split('-').next().unwrap_or("")
        } else {
            continue;
        };
        if let Ok(shard) = number.parse::<u32>() {
            shards.push(shard);
        }
    }
    shards.sort_unstable();
    shards.dedup();
    Ok(shards)
}

/// Checks that `dir` may be opened with `shards` shards and records the layout this
/// build writes. A directory with no shard data takes `shards`.
pub fn check_and_record(fs: &dyn FileSystem, dir: &Path, shards: usize) -> Result<(), EngineError> {
    let path = layout_path(dir);
    if let Some(found) = read_on(fs, dir)? {
        if found.shards != shards {
            return Err(EngineError::ShardCount { path, recorded: found.shards, requested: shards });
        }
        if found == Layout::current(shards) {
            return Ok(());
        }
    }
    write(fs, dir, Layout::current(shards))
}

/// Replaces the directory's layout record durably.
pub fn write(fs: &dyn FileSystem, dir: &Path, layout: Layout) -> Result<(), EngineError> {
    let path = layout_path(dir);
    crate::durable::replace_file(fs, &path, layout.encode().as_bytes(), 0o644).map_err(EngineError::io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_reads_back_and_bad_ones_name_their_line() {
        let path = Path::new("LAYOUT");
        let layout = Layout::current(4);
        assert_eq!(Layout::decode(&layout.encode(), path).expect("decodes"), layout);
        for (text, expected) in [
            (
                "tollgate-data-layout = 1\nshards = 0\njournal_format = 5\nsnapshot_format = 4\n",
                "LAYOUT:2: `shards` = 0",
            ),
            ("tollgate-data-layout = 1\nshards = x\n", "LAYOUT:2: `shards`: `x` is not a number"),
            (
                "tollgate-data-layout = 2\nshards = 2\njournal_format = 5\nsnapshot_format = 4\n",
                "LAYOUT:1: layout version 2",
            ),
            ("tollgate-data-layout = 1\nshards = 2\ncolour = 3\n", "LAYOUT:3: unknown key `colour`"),
            ("tollgate-data-layout = 1\nshards = 2\nshards = 3\n", "LAYOUT:3: `shards` is given twice"),
            ("tollgate-data-layout = 1\n", "LAYOUT:1: `shards` is missing"),
        ] {
            let err = Layout::decode(text, path).expect_err(text).to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }
}

//! Rebuilding a shard: the last good snapshot, then every journal record after it.

use std::path::Path;

use crate::error::EngineError;
use crate::format::charges::{decode_charges, decode_compact_charges, Charges};
use crate::fs::{FileSystem, RealFs};
use crate::journal::{
    scan, segment_path, segments, FsyncPolicy, Journal, JournalEntry, RecordKind, Scan, JOURNAL_FORMAT_VERSION,
};
use crate::snapshot;
use crate::state::{Effect, MoneyKind, ShardState};

/// Applies the records of one segment's bytes whose LSN is above `state.lsn`, in order.
/// Returns the scan (the good length and why it stopped early, if it did).
pub fn replay_bytes(state: &mut ShardState, bytes: &[u8], shard: u32) -> Result<Scan, String> {
    let found = scan(bytes, shard, None)?;
    for record in &found.records {
        let lsn = record.lsn;
        if lsn <= state.lsn {
            continue;
        }
        if lsn != state.lsn + 1 {
            return Err(format!("journal skips from LSN {} to {lsn}", state.lsn));
        }
        match record.kind {
            RecordKind::Effects | RecordKind::CompactEffects => {
                let entry = entry_of(record.kind, &record.payload).map_err(|err| format!("record {lsn}: {err}"))?;
                for effect in &entry.effects {
                    state.apply(effect);
                }
            }
            RecordKind::Charges | RecordKind::CompactCharges => {
                let batch = decode(record.kind, &record.payload).map_err(|err| format!("record {lsn}: {err}"))?;
                for charge in &batch.charges {
                    state.apply_charge(charge);
                }
            }
        }
        state.lsn = lsn;
    }
    Ok(found)
}

/// A record of general effects, in either layout.
fn entry_of(kind: RecordKind, payload: &[u8]) -> Result<JournalEntry, String> {
    match kind {
        RecordKind::CompactEffects => crate::format::effects::decode(payload),
        _ => JournalEntry::decode(payload),
    }
}

/// A charges payload of either layout.
fn decode(kind: RecordKind, payload: &[u8]) -> Result<Charges<'_>, String> {
    match kind {
        RecordKind::CompactCharges => decode_compact_charges(payload),
        _ => decode_charges(payload),
    }
}

/// What recovering a shard did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub snapshot_lsn: u64,
    pub replayed_records: u64,
    /// Set when a torn or corrupt tail was cut off the last segment.
    pub cut: Option<String>,
    /// The window chunk files the snapshot read lists (what the next need not rewrite).
    pub chunks: snapshot::ChunkIndex,
}

/// Recovers shard `shard` from `dir` and opens its journal for appending.
pub fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    shard: u32,
    dedupe_window: usize,
    policy: FsyncPolicy,
) -> Result<(ShardState, Journal, Recovered), EngineError> {
    let (mut state, chunks) = snapshot::read(fs, dir, shard, dedupe_window)?
        .unwrap_or_else(|| (ShardState::new(dedupe_window), Default::default()));
    let snapshot_lsn = state.lsn;
    let segments = segments(fs, dir, shard)?;
    let mut cut = None;
    let last = segments.len().checked_sub(1);
    let mut tail = None;
    for (index, (_, path)) in segments.iter().enumerate() {
        let mut storage = fs.open_append(path).map_err(EngineError::io(path))?;
        let bytes = storage.read_all().map_err(EngineError::io(path))?;
        let found = replay_bytes(&mut state, &bytes, shard).map_err(|reason| EngineError::Journal {
            path: path.clone(),
            offset: 0,
            reason,
        })?;
        if let Some(reason) = &found.cut_reason {
            if Some(index) != last {
                return Err(EngineError::Journal {
                    path: path.clone(),
                    offset: found.good_len,
                    reason: reason.clone(),
                });
            }
            tracing::warn!(path = %path.display(), at = found.good_len, %reason, "cutting the journal's torn tail");
            storage.truncate(found.good_len).map_err(EngineError::io(path))?;
            cut = Some(reason.clone());
        }
        if Some(index) == last {
            tail = Some((storage, found.good_len, found.version, path.clone()));
        }
    }
    let replayed_records = state.lsn - snapshot_lsn;
    let journal = match tail {
        Some((storage, good_len, version, path)) if version == JOURNAL_FORMAT_VERSION || good_len == 0 => {
            Journal::new(storage, shard, policy, good_len).map(|j| j.at(path))
        }
        Some((mut storage, _, _, path)) if path == segment_path(dir, shard, state.lsn + 1) => {
            // A segment of an older format holding no record: begun again in this one.
            storage.truncate(0).map_err(EngineError::io(&path))?;
            Journal::new(storage, shard, policy, 0).map(|j| j.at(path))
        }
        // Never appended to: a segment of an older format is followed by a new one.
        Some(_) | None => {
            return start_segment(fs, dir, shard, state.lsn, policy)
                .map(|journal| (state, journal, Recovered { snapshot_lsn, replayed_records, cut, chunks }))
        }
    }
    .map_err(EngineError::io(dir))?;
    Ok((state, journal, Recovered { snapshot_lsn, replayed_records, cut, chunks }))
}

/// Where segments covered by a snapshot are moved: they are the audit trail (every
/// top-up, adjustment and charge with its reason), kept until an operator prunes them.
pub fn archive_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("archive")
}

/// Starts the segment whose first record follows `lsn`. When it exists already (a second
/// snapshot with no record since the first), it holds only its header and is kept.
/// A new segment's name is synced before anything is appended, so a segment whose
/// records were acknowledged cannot vanish in a power cut.
pub(crate) fn start_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    shard: u32,
    lsn: u64,
    policy: FsyncPolicy,
) -> Result<Journal, EngineError> {
    let path = segment_path(dir, shard, lsn + 1);
    let existing = if fs.exists(&path) { fs.len(&path).map_err(EngineError::io(&path))? } else { 0 };
    let storage = fs.open_append(&path).map_err(EngineError::io(&path))?;
    if existing == 0 {
        crate::durable::sync_parent(fs, &path).map_err(EngineError::io(&path))?;
    }
    Journal::new(storage, shard, policy, existing).map(|j| j.at(path.clone())).map_err(EngineError::io(&path))
}

/// Once a snapshot at `lsn` is durable: moves the segments it covers (those that start
/// at or before `lsn`) into [`archive_dir`], or deletes them when `archive` is false.
pub(crate) fn retire_segments(
    fs: &dyn FileSystem,
    dir: &Path,
    shard: u32,
    lsn: u64,
    archive: bool,
) -> Result<(), EngineError> {
    let archived = archive_dir(dir);
    for (first, old) in segments(fs, dir, shard)? {
        if first > lsn {
            continue;
        }
        if archive {
            crate::durable::create_dir_all(fs, &archived).map_err(EngineError::io(&archived))?;
            let target = archived.join(old.file_name().unwrap_or_default());
            crate::durable::move_file(fs, &old, &target).map_err(EngineError::io(&old))?;
        } else {
            crate::durable::remove_file(fs, &old).map_err(EngineError::io(&old))?;
        }
    }
    Ok(())
}

/// A batch of charged records as the general effects they amount to, for the audit trail
/// (the key digests are not shown: they are not the keys' text).
fn charges_as_entry(batch: &Charges<'_>) -> JournalEntry {
    let mut effects = Vec::new();
    for charge in &batch.charges {
        let account = charge.account;
        for (bucket, consumed) in &charge.draws {
            effects.push(Effect::Units { account, bucket: *bucket, consumed: *consumed });
        }
        for (bucket, delta) in &charge.moves {
            effects.push(Effect::Money { account, bucket: *bucket, delta: *delta, kind: MoneyKind::Charge });
        }
        effects.push(Effect::Usage {
            account,
            cycle_start_at: charge.cycle_start_at,
            service: charge.service.to_shared(),
            units: charge.memo.charged_units,
            amount: charge.memo.amount,
        });
    }
    JournalEntry { decided_at: batch.decided_at, effects }
}

/// Every journal record of `shard` still on disk (archived segments first), decoded, in
/// LSN order. A torn tail ends the read; damage elsewhere is an error.
pub fn read_history(dir: &Path, shard: u32) -> Result<Vec<(u64, JournalEntry)>, EngineError> {
    let fs = RealFs::new();
    let mut files = segments(&fs, &archive_dir(dir), shard).unwrap_or_default();
    files.extend(segments(&fs, dir, shard)?);
    files.sort();
    let mut out = Vec::new();
    for (_, path) in files {
        let bytes = std::fs::read(&path).map_err(EngineError::io(&path))?;
        let found = scan(&bytes, shard, None).map_err(|reason| EngineError::Journal {
            path: path.clone(),
            offset: 0,
            reason,
        })?;
        for record in found.records {
            let damaged = |reason| EngineError::Journal { path: path.clone(), offset: 0, reason };
            let entry = match record.kind {
                RecordKind::Effects | RecordKind::CompactEffects => {
                    entry_of(record.kind, &record.payload).map_err(damaged)?
                }
                RecordKind::Charges | RecordKind::CompactCharges => {
                    charges_as_entry(&decode(record.kind, &record.payload).map_err(damaged)?)
                }
            };
            out.push((record.lsn, entry));
        }
    }
    Ok(out)
}

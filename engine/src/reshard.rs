//! Changing a data directory's shard count: an explicit, offline command
//! (`tollgate reshard --to N`), never a side effect of a flag.
//!
//! Every shard is recovered (snapshot and journal), its accounts with their
//! subscriptions, reservations and sessions are dealt to the shard that owns each account
//! under the new count ([`crate::runtime::shard_of`]), and each new shard gets a snapshot
//! at LSN 0. The exactly-once windows are not keyed by account, so every new shard gets
//! the keys of every old one (a retransmission reaches the account's new shard and finds
//! its answer there), up to its window. Each new shard's money totals restart at its
//! balances (the conservation check then holds per shard); the old journals, archived
//! whole, keep the history.
//!
//! Crash safety: the new snapshots and layout are written to `reshard.staging/` first;
//! then a `RESHARD` marker names the phase. Phase 1 moves the old shard files (and the
//! old `archive/` segments, the rated-event ledger built to their end, and the archive
//! consumers' watermarks, which count the old journals' positions) into
//! `archive/before-reshard-{UNIX_SECONDS}/`; phase 2 moves
//! the staged files into place. Each step is a rename, and a run that finds the marker
//! finishes the phase it names, so a crash at any point leaves either the old layout or
//! the new one, never a mix. The engine refuses to open a directory with a marker.

use std::path::{Path, PathBuf};

use crate::error::EngineError;
use crate::fs::{FileSystem, RealFs};
use crate::journal::{segments, FsyncPolicy};
use crate::layout::{self, Layout};
use crate::recovery::{archive_dir, recover};
use crate::runtime::shard_of;
use crate::snapshot::{self, snapshot_path, LifecycleImage, SnapshotImage, WindowImage};
use crate::state::Totals;

const STAGING: &str = "reshard.staging";
const MARKER: &str = "RESHARD";

/// What a reshard did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReshardReport {
    pub from: usize,
    pub to: usize,
    pub accounts: usize,
    pub subscriptions: usize,
    /// Where the old shard files were moved.
    pub archived: PathBuf,
    /// True when an interrupted reshard was finished instead of a new one made.
    pub resumed: bool,
}

pub fn marker_path(dir: &Path) -> PathBuf {
    dir.join(MARKER)
}

/// Refuses to open a directory whose reshard was interrupted.
pub fn check_not_interrupted(fs: &dyn FileSystem, dir: &Path) -> Result<(), EngineError> {
    if fs.exists(&marker_path(dir)) {
        return Err(EngineError::Config(format!(
            "{}: a reshard was interrupted; run `tollgate reshard` again to finish it",
            dir.display()
        )));
    }
    Ok(())
}

/// Changes the shard count of the data directory `dir` to `to` (the directory must not be
/// open), or finishes an interrupted reshard. `now` names the archive folder.
pub fn reshard(dir: &Path, to: usize, dedupe_window: usize, now: i64) -> Result<ReshardReport, EngineError> {
    reshard_with(dir, to, dedupe_window, now, &mut Interruption(None))
}

/// [`reshard`] that stops, as a crash would, after `renames` file moves (crash tests).
#[doc(hidden)]
pub fn reshard_interrupted(
    dir: &Path,
    to: usize,
    dedupe_window: usize,
    now: i64,
    renames: usize,
) -> Result<ReshardReport, EngineError> {
    reshard_with(dir, to, dedupe_window, now, &mut Interruption(Some(renames)))
}

/// How many more renames may happen before a simulated crash (`None`: no crash).
struct Interruption(Option<usize>);

impl Interruption {
    fn rename(&mut self, from: &Path, to: &Path) -> Result<(), EngineError> {
        if let Some(left) = &mut self.0 {
            if *left == 0 {
                return Err(EngineError::Unavailable("reshard interrupted (simulated crash)"));
            }
            *left -= 1;
        }
        crate::durable::rename(&RealFs::new(), from, to).map_err(EngineError::io(from))
    }
}

fn reshard_with(
    dir: &Path,
    to: usize,
    dedupe_window: usize,
    now: i64,
    crash: &mut Interruption,
) -> Result<ReshardReport, EngineError> {
    let fs = RealFs::new();
    if !(1..=layout::MAX_SHARDS).contains(&to) {
        return Err(EngineError::Config(format!("shards must be 1 to {}", layout::MAX_SHARDS)));
    }
    let _lock = crate::runtime::lock_data_dir(&fs, dir)?;
    if let Some(marker) = read_marker(dir)? {
        return finish(dir, &marker, crash).map(|(from, to)| ReshardReport {
            from,
            to,
            accounts: 0,
            subscriptions: 0,
            archived: marker.archive,
            resumed: true,
        });
    }
    let from = match layout::read(dir)? {
        Some(found) => found.shards,
        None => return Err(EngineError::Config(format!("{}: no shard data to reshard", dir.display()))),
    };
    if from == to {
        return Err(EngineError::Config(format!("{}: the data directory has {to} shards already", dir.display())));
    }
    let mut old = Vec::with_capacity(from);
    for shard in 0..from as u32 {
        let (state, journal, _) = recover(&fs, dir, shard, dedupe_window, FsyncPolicy::EveryBatch)?;
        drop(journal);
        if let Some(violation) = state.check_invariants(now).into_iter().next() {
            return Err(EngineError::Config(format!(
                "shard {shard} fails its invariants, not resharded: {}",
                violation.0
            )));
        }
        old.push(SnapshotImage::of(&state));
    }
    // The ledger of the old layout is completed from the old journals, and leaves with
    // them (phase 1): the new shards' journals start again at LSN 0.
    if crate::ledger::ledger_dir(dir).exists() {
        let mut builder = crate::ledger::LedgerBuilder::open(std::sync::Arc::new(fs.clone()), dir, from, None)?;
        builder.catch_up(None)?;
    }
    let images = deal(&old, to);
    let (accounts, subscriptions) =
        images.iter().fold((0, 0), |(a, s), image| (a + image.accounts.len(), s + image.subscriptions.len()));
    let before: rust_decimal::Decimal = old.iter().flat_map(|i| i.accounts.iter()).map(|a| a.balance()).sum();
    let after: rust_decimal::Decimal = images.iter().flat_map(|i| i.accounts.iter()).map(|a| a.balance()).sum();
    if before != after || accounts != old.iter().map(|i| i.accounts.len()).sum::<usize>() {
        return Err(EngineError::Config(
            "reshard would not keep every account and balance; nothing changed".to_owned(),
        ));
    }
    let staging = dir.join(STAGING);
    let _ = std::fs::remove_dir_all(&staging);
    crate::durable::create_dir_all(&fs, &staging).map_err(EngineError::io(&staging))?;
    for (shard, image) in images.iter().enumerate() {
        snapshot::write(&fs, &staging, shard as u32, image)?;
    }
    layout::write(&fs, &staging, Layout::current(to))?;
    let marker = Marker { phase: 1, from, to, archive: archive_dir(dir).join(format!("before-reshard-{now}")) };
    write_marker(dir, &marker)?;
    finish(dir, &marker, crash)?;
    Ok(ReshardReport { from, to, accounts, subscriptions, archived: marker.archive, resumed: false })
}

/// Deals the accounts of the old images to `to` new ones.
fn deal(old: &[SnapshotImage], to: usize) -> Vec<SnapshotImage> {
    let mut images: Vec<SnapshotImage> = (0..to)
        .map(|_| SnapshotImage {
            lsn: 0,
            accounts: Vec::new(),
            subscriptions: Vec::new(),
            reservations: Vec::new(),
            totals: Totals::default(),
            sessions: Vec::new(),
            answers: WindowImage::flat(Vec::new()),
            records: WindowImage::flat(Vec::new()),
            lifecycle: LifecycleImage::default(),
        })
        .collect();
    for image in old {
        for account in &image.accounts {
            images[shard_of(account.id, to)].accounts.push(account.clone());
        }
        for subscription in &image.subscriptions {
            images[shard_of(subscription.account, to)].subscriptions.push(subscription.clone());
        }
        for reservation in &image.reservations {
            images[shard_of(reservation.account, to)].reservations.push(reservation.clone());
        }
        for session in &image.sessions {
            images[shard_of(session.account, to)].sessions.push(session.clone());
        }
        let owner: std::collections::HashMap<u64, u64> =
            image.subscriptions.iter().map(|s| (s.id, s.account)).collect();
        for (subscription, lifecycle) in &image.lifecycle.subscriptions {
            if let Some(account) = owner.get(subscription) {
                images[shard_of(*account, to)].lifecycle.subscriptions.push((*subscription, lifecycle.clone()));
            }
        }
        for (account, at) in &image.lifecycle.closed {
            images[shard_of(*account, to)].lifecycle.closed.push((*account, *at));
        }
        for (account, at) in &image.lifecycle.suspended {
            images[shard_of(*account, to)].lifecycle.suspended.push((*account, *at));
        }
        for (account, history) in &image.lifecycle.allowance_history {
            images[shard_of(*account, to)].lifecycle.allowance_history.push((*account, history.clone()));
        }
        // The windows, flat: every new shard inserts every key in order (the tails hold
        // every entry, with its value now: SnapshotImage::of writes no chunk files).
        for new in &mut images {
            new.answers.generations[0].tail.extend(image.answers.entries().cloned());
            new.records.generations[0].tail.extend(image.records.entries().copied());
        }
    }
    for new in &mut images {
        new.accounts.sort_unstable_by_key(|a| a.id);
        new.subscriptions.sort_unstable_by_key(|s| s.id);
        new.reservations.sort_unstable_by(|a, b| (&a.session, a.rating_group).cmp(&(&b.session, b.rating_group)));
        new.sessions.sort_unstable_by(|a, b| a.session.cmp(&b.session));
        new.totals.opening = new.accounts.iter().map(|a| a.balance()).sum();
        new.lifecycle.subscriptions.sort_unstable_by_key(|(id, _)| *id);
        new.lifecycle.closed.sort_unstable();
        new.lifecycle.suspended.sort_unstable();
        new.lifecycle.allowance_history.sort_unstable_by_key(|(id, _)| *id);
    }
    images
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Marker {
    phase: u32,
    from: usize,
    to: usize,
    archive: PathBuf,
}

fn write_marker(dir: &Path, marker: &Marker) -> Result<(), EngineError> {
    let text = format!(
        "phase = {}\nfrom = {}\nto = {}\narchive = {}\n",
        marker.phase,
        marker.from,
        marker.to,
        marker.archive.display()
    );
    let path = marker_path(dir);
    crate::durable::replace_file(&RealFs::new(), &path, text.as_bytes(), 0o644).map_err(EngineError::io(&path))
}

fn read_marker(dir: &Path) -> Result<Option<Marker>, EngineError> {
    let path = marker_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(EngineError::Io { path, source: err }),
    };
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.trim_start().strip_prefix('=')))
            .map(str::trim)
            .ok_or_else(|| EngineError::Layout { path: path.clone(), line: 0, reason: format!("`{key}` is missing") })
    };
    let number = |key: &str| {
        field(key)?.parse::<usize>().map_err(|_| EngineError::Layout {
            path: path.clone(),
            line: 0,
            reason: format!("`{key}` is not a number"),
        })
    };
    Ok(Some(Marker {
        phase: number("phase")? as u32,
        from: number("from")?,
        to: number("to")?,
        archive: PathBuf::from(field("archive")?),
    }))
}

/// Runs the marker's phase and the ones after it; returns (from, to).
fn finish(dir: &Path, marker: &Marker, crash: &mut Interruption) -> Result<(usize, usize), EngineError> {
    let fs = RealFs::new();
    let staging = dir.join(STAGING);
    if marker.phase == 1 {
        // Phase 1: every old shard file leaves the data directory (none of the new ones
        // is in place yet, so what is there is old).
        crate::durable::create_dir_all(&fs, &marker.archive).map_err(EngineError::io(&marker.archive))?;
        for shard in 0..layout::MAX_SHARDS as u32 {
            let mut files: Vec<PathBuf> = segments(&fs, dir, shard)?.into_iter().map(|(_, path)| path).collect();
            files.extend(segments(&fs, &archive_dir(dir), shard)?.into_iter().map(|(_, path)| path));
            let snapshot = snapshot_path(dir, shard);
            if snapshot.exists() {
                files.push(snapshot);
            }
            files.extend(snapshot::chunk_files(&fs, dir, shard)?);
            for file in files {
                let target = marker.archive.join(file.file_name().unwrap_or_default());
                crash.rename(&file, &target)?;
            }
        }
        // The ledger and the consumers' watermarks count the old journals' positions.
        for folder in [crate::ledger::ledger_dir(dir), crate::retention::consumers_dir(dir)] {
            if folder.exists() {
                let target = marker.archive.join(folder.file_name().unwrap_or_default());
                crash.rename(&folder, &target)?;
            }
        }
        write_marker(dir, &Marker { phase: 2, ..marker.clone() })?;
    }
    // Phase 2: the staged snapshots and layout move into place.
    if staging.exists() {
        for entry in std::fs::read_dir(&staging).map_err(EngineError::io(&staging))? {
            let from = entry.map_err(EngineError::io(&staging))?.path();
            let to = dir.join(from.file_name().unwrap_or_default());
            crash.rename(&from, &to)?;
        }
        std::fs::remove_dir(&staging).map_err(EngineError::io(&staging))?;
        fs.sync_dir(dir).map_err(EngineError::io(dir))?;
    }
    let path = marker_path(dir);
    crate::durable::remove_file(&fs, &path).map_err(EngineError::io(&path))?;
    Ok((marker.from, marker.to))
}

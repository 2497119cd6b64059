//! Snapshots written off the shard's thread. Between batches the shard copies its state
//! (the only pause), starts a new journal segment and hands the copy to its snapshot
//! thread, which puts it in canonical order, writes it durably and only then retires the
//! segments it covers. A crash before that leaves the previous snapshot and every segment
//! since, which recovery replays as before.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::EngineError;
use crate::fs::FileSystem;
use crate::recovery::retire_segments;
use crate::snapshot::{Captured, ChunkIndex};

/// A copy to write, and who waits for it to be durable (an explicit snapshot request).
struct Job {
    captured: Captured,
    reply: Option<Sender<Result<(), EngineError>>>,
}

/// A shard's snapshot thread.
pub(super) struct Snapshotter {
    sender: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Snapshotter {
    /// `chunks` is the chunk index of the last durable snapshot, shared with the shard,
    /// which copies only what it does not list.
    pub(super) fn start(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        shard: u32,
        archive: bool,
        retention: std::time::Duration,
        chunks: Arc<Mutex<ChunkIndex>>,
        chunk_entries: usize,
    ) -> std::io::Result<Snapshotter> {
        // One snapshot waiting behind the one being written; a shard that would take a
        // third waits, so copies never pile up in memory.
        let (sender, receiver) = bounded(1);
        let thread = std::thread::Builder::new().name(format!("tollgate-snapshot-{shard}")).spawn(move || {
            let settings = Settings { shard, archive, retention, chunk_entries };
            run(&*fs, &dir, &settings, &chunks, &receiver);
        })?;
        Ok(Snapshotter { sender: Some(sender), thread: Some(thread) })
    }

    /// Queues `captured`; `reply` (if any) gets the result once it is durable.
    pub(super) fn write(&self, captured: Captured, reply: Option<Sender<Result<(), EngineError>>>) {
        let Some(sender) = &self.sender else { return };
        if let Err(crossbeam_channel::SendError(job)) = sender.send(Job { captured, reply }) {
            if let Some(reply) = job.reply {
                drop(reply.send(Err(EngineError::Unavailable("snapshot thread stopped"))));
            }
        }
    }
}

impl Drop for Snapshotter {
    /// Waits for the snapshots queued to be written.
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Settings {
    shard: u32,
    archive: bool,
    retention: std::time::Duration,
    chunk_entries: usize,
}

fn run(
    fs: &dyn FileSystem,
    dir: &std::path::Path,
    settings: &Settings,
    chunks: &Mutex<ChunkIndex>,
    receiver: &Receiver<Job>,
) {
    let Settings { shard, archive, retention, chunk_entries } = *settings;
    for Job { captured, reply } in receiver {
        let lsn = captured.lsn();
        let result = captured.write(fs, dir, shard, chunk_entries).and_then(|index| {
            if let Ok(mut shared) = chunks.lock() {
                *shared = index;
            }
            retire_segments(fs, dir, shard, lsn, archive)
        });
        if result.is_ok() && archive {
            let mut pruned = crate::retention::Pruned::default();
            match crate::retention::prune_shard(
                fs,
                dir,
                shard,
                retention,
                std::time::SystemTime::now(),
                false,
                &mut pruned,
            ) {
                Ok(()) if !pruned.removed.is_empty() => {
                    tracing::info!(
                        shard,
                        segments = pruned.removed.len(),
                        bytes = pruned.removed_bytes,
                        "pruned archived journal segments past their retention"
                    );
                }
                Ok(()) => {}
                Err(err) => {
                    tracing::warn!(shard, error = %err, "pruning the archive failed; it is tried again after the next snapshot")
                }
            }
        }
        if let Err(err) = &result {
            tracing::error!(shard, lsn, error = %err, "snapshot failed; the journal segments since the last one stay");
        }
        if let Some(reply) = reply {
            drop(reply.send(result));
        }
    }
}

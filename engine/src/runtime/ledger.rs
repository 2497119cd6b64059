//! The ledger thread: every [`LEDGER_INTERVAL`] (longer when building took long: it
//! takes at most a fifth of a core), and when asked, builds the rated-event ledger up to
//! each shard's durable journal position ([`crate::ledger`]). It reads files the shards
//! have finished with; the shards never wait for it.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::error::EngineError;
use crate::ledger::LedgerBuilder;
use crate::runtime::health::ShardHealth;

/// How often the ledger follows the journal.
pub(crate) const LEDGER_INTERVAL: Duration = Duration::from_millis(200);

/// The ledger thread takes at most one part in this many of a core: after a build that
/// took `t` it waits at least `t × (LEDGER_SHARE_DIVISOR − 1)`. On a saturated machine the
/// shards keep their CPU and the ledger lags; it catches up when the load drops.
const LEDGER_SHARE_DIVISOR: u32 = 5;

/// How often a ledger that keeps failing logs it again.
const LOG_EVERY: Duration = Duration::from_secs(60);

type SyncReply = Sender<Result<usize, EngineError>>;

/// The running ledger thread; dropping it builds what is durable one last time and stops.
pub(super) struct LedgerThread {
    sender: Option<Sender<SyncReply>>,
    thread: Option<JoinHandle<()>>,
}

impl LedgerThread {
    pub(super) fn start(builder: LedgerBuilder, health: Arc<Vec<ShardHealth>>) -> std::io::Result<LedgerThread> {
        let (sender, receiver) = bounded(16);
        let thread = std::thread::Builder::new()
            .name("tollgate-ledger".to_owned())
            .spawn(move || run(builder, &health, &receiver))?;
        Ok(LedgerThread { sender: Some(sender), thread: Some(thread) })
    }

    /// Builds the ledger up to what is durable now; returns the entries written.
    pub(super) fn sync(&self) -> Result<usize, EngineError> {
        let (reply, answer) = bounded(1);
        let sent = self.sender.as_ref().map(|sender| sender.send(reply));
        if !matches!(sent, Some(Ok(()))) {
            return Err(EngineError::Unavailable("the ledger thread stopped"));
        }
        answer.recv().unwrap_or(Err(EngineError::Unavailable("the ledger thread stopped")))
    }
}

impl Drop for LedgerThread {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(mut builder: LedgerBuilder, health: &[ShardHealth], receiver: &Receiver<SyncReply>) {
    let mut logged: Option<Instant> = None;
    let mut build = |builder: &mut LedgerBuilder| {
        let limits: Vec<u64> = health.iter().map(ShardHealth::durable_lsn).collect();
        let result = builder.catch_up(Some(&limits));
        match &result {
            Ok(_) if logged.is_some() => {
                tracing::warn!("the ledger builds again");
                logged = None;
            }
            Err(err) if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) => {
                tracing::error!(error = %err, "building the rated-event ledger failed; retrying (the journal keeps every record)");
                logged = Some(Instant::now());
            }
            _ => {}
        }
        result
    };
    let mut wait = LEDGER_INTERVAL;
    loop {
        match receiver.recv_timeout(wait) {
            Ok(reply) => {
                let _ = reply.send(build(&mut builder));
            }
            Err(RecvTimeoutError::Timeout) => {
                let started = Instant::now();
                let _ = build(&mut builder);
                wait = LEDGER_INTERVAL.max(started.elapsed() * (LEDGER_SHARE_DIVISOR - 1));
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if build(&mut builder).is_ok() {
        if let Err(err) = builder.mark() {
            tracing::warn!(error = %err, "recording the ledger's retention watermark failed");
        }
    }
}

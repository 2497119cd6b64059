//! Pipelined group commit. With fsync per batch, a shard writes a batch's journal bytes
//! and hands the batch's answers to its commit thread, which syncs the segment and only
//! then sends them. The shard decides the next batch meanwhile, so the time a sync takes
//! no longer stops the shard. Answers leave in the order their batches were decided;
//! groups that queued up while a sync ran share the next one.
//!
//! Nothing is acknowledged early: a later batch may read state an earlier one changed,
//! but its bytes follow that batch's in the same file, so the sync that covers it covers
//! the earlier one too. A failed sync fails every answer still waiting, and the shard
//! rebuilds itself from disk (see `health`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::{Answered, RecordsAnswered, Reply};
use crate::api::Answer;
use crate::error::EngineError;
use crate::journal::Syncer;
use crate::runtime::health::ShardHealth;

/// Most groups waiting for the commit thread; a shard that gets further ahead waits.
const DEPTH: usize = 8;

/// Passes that answer at least this many requests and records are handed over. A
/// smaller pass (online requests, a few dozen at a time) syncs on the shard's thread:
/// the requests that arrive meanwhile make the next group larger, which costs fewer
/// writes and syncs per request than overlapping would save.
pub(super) const HAND_OVER_ITEMS: usize = 1024;

/// The answers of one pass of a shard's loop.
#[derive(Default)]
pub(super) struct Answers {
    pub(super) one: Vec<(Reply, Answer)>,
    pub(super) batches: Vec<(Sender<Answered>, Answered)>,
    pub(super) records: Vec<(Sender<RecordsAnswered>, RecordsAnswered)>,
}

impl Answers {
    pub(super) fn is_empty(&self) -> bool {
        self.one.is_empty() && self.batches.is_empty() && self.records.is_empty()
    }

    /// How many requests and records these answer.
    pub(super) fn items(&self) -> usize {
        self.one.len()
            + self.batches.iter().map(|(_, a)| a.len()).sum::<usize>()
            + self.records.iter().map(|(_, a)| a.len()).sum::<usize>()
    }

    /// Sends every answer (their changes are durable).
    pub(super) fn send(self) {
        for (reply, answer) in self.one {
            reply.send(Ok(answer));
        }
        // A caller that went away no longer wants its answers; the changes stand.
        for (reply, answered) in self.batches {
            drop(reply.send(answered));
        }
        for (reply, answered) in self.records {
            drop(reply.send(answered));
        }
    }

    /// Answers nothing: their changes may not be durable.
    pub(super) fn fail(self, why: &'static str) {
        for (reply, _) in self.one {
            reply.send(Err(EngineError::Unavailable(why)));
        }
        // Dropping the batch senders unanswered tells their callers the shard failed.
    }
}

/// Bytes written to a segment and the answers that wait for them to be durable.
struct Group {
    /// `None` when the group wrote nothing; it still waits for the groups before it.
    written: Option<Arc<dyn Syncer>>,
    answers: Answers,
    /// The shard's last LSN when the group was written.
    lsn: u64,
}

/// A shard's commit thread.
pub(super) struct CommitStage {
    sender: Option<Sender<Group>>,
    thread: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
    /// Why the sync failed.
    error: Arc<Mutex<String>>,
    /// Groups pushed and not yet answered.
    queued: Arc<AtomicUsize>,
}

impl CommitStage {
    pub(super) fn start(shard: u32, health: Arc<Vec<ShardHealth>>) -> std::io::Result<CommitStage> {
        let (sender, receiver) = bounded(DEPTH);
        let failed = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let error = Arc::new(Mutex::new(String::new()));
        let (flag, count, why) = (Arc::clone(&failed), Arc::clone(&queued), Arc::clone(&error));
        let thread = std::thread::Builder::new()
            .name(format!("tollgate-commit-{shard}"))
            .spawn(move || run(shard, &receiver, &flag, &why, &count, &health))?;
        Ok(CommitStage { sender: Some(sender), thread: Some(thread), failed, error, queued })
    }

    /// Why the sync failed, once [`CommitStage::failed`].
    pub(super) fn error(&self) -> String {
        self.error.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Whether every group pushed has been answered, so that a shard that syncs and
    /// answers by itself overtakes none.
    pub(super) fn idle(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    /// Whether a sync failed; the shard must rebuild itself.
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Queues `answers` behind the sync of `written` (and of every group before).
    pub(super) fn push(&self, written: Option<Arc<dyn Syncer>>, answers: Answers, lsn: u64) {
        let Some(sender) = &self.sender else {
            answers.fail("commit stage stopped");
            return;
        };
        self.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(crossbeam_channel::SendError(group)) = sender.send(Group { written, answers, lsn }) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            group.answers.fail("commit stage stopped");
        }
    }
}

impl Drop for CommitStage {
    /// Waits until every queued answer is sent.
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    shard: u32,
    receiver: &Receiver<Group>,
    failed: &AtomicBool,
    error: &Mutex<String>,
    queued: &AtomicUsize,
    health: &[ShardHealth],
) {
    let mut groups = Vec::with_capacity(DEPTH);
    while let Ok(first) = receiver.recv() {
        groups.push(first);
        groups.extend(receiver.try_iter().take(DEPTH));
        let mut durable = !failed.load(Ordering::Acquire);
        let mut last: Option<&Arc<dyn Syncer>> = None;
        for written in groups.iter().filter_map(|g| g.written.as_ref()) {
            // Consecutive groups on one segment need one sync; a new segment its own.
            if !durable || last.is_some_and(|l| Arc::ptr_eq(l, written)) {
                continue;
            }
            if let Err(err) = written.sync() {
                // The shard logs the failure once, when it sees it.
                tracing::debug!(shard, error = %err, "journal sync failed");
                if let Ok(mut why) = error.lock() {
                    *why = format!("journal sync failed: {err}");
                }
                failed.store(true, Ordering::Release);
                durable = false;
            }
            last = Some(written);
        }
        let answered = groups.len();
        if durable {
            if let (Some(last), Some(health)) = (groups.last(), health.get(shard as usize)) {
                health.set_durable(last.lsn);
            }
        }
        for group in groups.drain(..) {
            if durable {
                group.answers.send();
            } else {
                group.answers.fail("journal sync failed");
            }
        }
        queued.fetch_sub(answered, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;
    use std::time::Duration;

    use crossbeam_channel::{unbounded, Receiver, Sender};

    use super::*;
    use crate::api::Outcome;

    /// A device whose syncs wait until the test lets each one through, and count.
    struct Gate {
        release: Mutex<Receiver<io::Result<()>>>,
        syncs: Mutex<u32>,
    }

    impl Syncer for Gate {
        fn sync(&self) -> io::Result<()> {
            *self.syncs.lock().expect("count") += 1;
            self.release.lock().expect("gate").recv().unwrap_or(Ok(()))
        }
    }

    fn gate() -> (Arc<Gate>, Sender<io::Result<()>>) {
        let (release, wait) = unbounded();
        (Arc::new(Gate { release: Mutex::new(wait), syncs: Mutex::new(0) }), release)
    }

    fn answers(to: &Sender<Result<Answer, EngineError>>, name: &str) -> Answers {
        let mut answers = Answers::default();
        answers.one.push((Reply::One(to.clone()), Answer::outcome(Outcome::Invalid(name.to_owned()))));
        answers
    }

    fn name(answer: Result<Answer, EngineError>) -> Result<String, String> {
        match answer {
            Ok(Answer { outcome: Outcome::Invalid(name), .. }) => Ok(name),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(err) => Err(err.to_string()),
        }
    }

    #[test]
    fn answers_wait_for_the_sync_and_leave_in_order() {
        let stage = CommitStage::start(0, Arc::new(vec![ShardHealth::default()])).expect("thread");
        let (device, release) = gate();
        let (to, answered) = unbounded();
        stage.push(Some(device.clone()), answers(&to, "first"), 0);
        stage.push(None, answers(&to, "second"), 0);
        // The sync is held: nothing may be answered yet.
        assert!(answered.recv_timeout(Duration::from_millis(100)).is_err());
        release.send(Ok(())).expect("release");
        assert_eq!(name(answered.recv().expect("first")), Ok("first".to_owned()));
        assert_eq!(name(answered.recv().expect("second")), Ok("second".to_owned()));
        // Two groups that wrote to the same segment while a sync ran share one sync.
        let (held, hold) = gate();
        stage.push(Some(held.clone()), answers(&to, "third"), 0);
        while *held.syncs.lock().expect("count") == 0 {
            std::thread::yield_now();
        }
        stage.push(Some(device.clone()), answers(&to, "fourth"), 0);
        stage.push(Some(device.clone()), answers(&to, "fifth"), 0);
        hold.send(Ok(())).expect("release");
        release.send(Ok(())).expect("release");
        for expected in ["third", "fourth", "fifth"] {
            assert_eq!(name(answered.recv().expect("answer")), Ok(expected.to_owned()));
        }
        assert!(!stage.failed());
        assert!(stage.idle());
        drop(stage);
        assert_eq!(*device.syncs.lock().expect("count"), 2);
    }

    #[test]
    fn a_failed_sync_fails_its_answers_and_all_after() {
        let stage = CommitStage::start(0, Arc::new(vec![ShardHealth::default()])).expect("thread");
        let (device, release) = gate();
        let (to, answered) = unbounded();
        release.send(Err(io::Error::other("disk gone"))).expect("release");
        stage.push(Some(device.clone()), answers(&to, "lost"), 0);
        let failed = name(answered.recv().expect("answer")).expect_err("must fail");
        assert!(failed.contains("journal sync failed"), "{failed}");
        assert!(stage.failed());
        // Later groups are failed too, even one that wrote nothing, and nothing is synced.
        stage.push(None, answers(&to, "after"), 0);
        stage.push(Some(device.clone()), answers(&to, "after"), 0);
        for _ in 0..2 {
            assert!(name(answered.recv().expect("answer")).is_err());
        }
        drop(stage);
        assert_eq!(*device.syncs.lock().expect("count"), 1);
    }
}

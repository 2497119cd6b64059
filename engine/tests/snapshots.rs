//! Snapshots write each full stretch of an exactly-once window once, to a chunk file of
//! its own, and later snapshots refer to it; what they load is the same state.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use tollgate_engine::testing::SnapshotImage;
use tollgate_engine::{Operation, RecordCharge, RecordKey, Target};

fn chunk_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut found: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "chunk"))
        .map(|p| {
            let inode = std::fs::metadata(&p).expect("meta").ino();
            (p, inode)
        })
        .collect();
    found.sort();
    found
}

fn top_up(h: &Harness, n: u32) {
    h.run(&format!("top-{n}"), Target::Account(1), Operation::TopUp { amount: d("0.01"), reference: format!("{n}") });
}

/// Regression (issue 14, item 8): every snapshot rewrote the whole exactly-once window
/// (389 MB a shard under a sustained load, most of it unchanged since the last one).
#[test]
fn each_full_window_chunk_is_written_once_and_loads_back() {
    let h = Harness::with_config("snapshot-chunks", |config| {
        config.shards = 1;
        config.snapshot_chunk_entries = 4;
        config.charging.dedupe_window = 16;
    });
    h.prepaid(1, "491700000001", "10.00");
    for n in 0..10 {
        top_up(&h, n);
    }
    h.engine.snapshot().expect("snapshot");
    let first = chunk_files(&h.dir);
    assert!(!first.is_empty(), "full chunks are written to files of their own");
    for n in 10..20 {
        top_up(&h, n);
    }
    // A record charged on the bulk path, then rerated: its value changes after its
    // chunk was written.
    let record = RecordCharge {
        identity: None,
        key: RecordKey::of("cdr-1"),
        origin: 1,
        account: 1,
        subscription: 10,
        usage: call("4990012345", MONDAY_10, 60),
    };
    h.engine.charge_records(vec![record]).expect("charge");
    for n in 20..24 {
        h.engine
            .charge_records(vec![RecordCharge {
                identity: None,
                key: RecordKey::of(&format!("cdr-{n}")),
                origin: 1,
                account: 1,
                subscription: 10,
                usage: sms(MONDAY_10),
            }])
            .expect("charge");
    }
    h.engine.snapshot().expect("snapshot");
    let rerated = h.run(
        "",
        subscriber("491700000001"),
        Operation::Rerate { record: "cdr-1".into(), usage: call("4990012345", MONDAY_10, 120) },
    );
    assert_eq!(rerated.outcome, tollgate_engine::Outcome::Success, "{rerated:?}");
    let tollgate_engine::Body::Rerated(rerated) = rerated.body else { panic!("a rerate answer") };
    assert!(rerated.changed && rerated.charged.amount != rerated.previous_amount);
    h.engine.snapshot().expect("snapshot");
    let second = chunk_files(&h.dir);
    for (path, inode) in &first {
        let now = second.iter().find(|(p, _)| p == path).map(|(_, i)| *i);
        if let Some(now) = now {
            assert_eq!(now, *inode, "{} was written again", path.display());
        }
    }
    assert!(second.len() > first.len(), "new full chunks were added: {first:?} → {second:?}");
    let before = h.engine.inspect(SnapshotImage::of).expect("inspect");
    let reopened = |h: Harness| {
        h.restart_configured(|config| {
            config.shards = 1;
            config.snapshot_chunk_entries = 4;
            config.charging.dedupe_window = 16;
        })
    };
    let h = reopened(h);
    assert_eq!(h.engine.inspect(SnapshotImage::of).expect("inspect"), before, "the same state loads back");
    // The rerated value survives although its chunk holds the first one.
    let again = h
        .engine
        .charge_records(vec![RecordCharge {
            identity: None,
            key: RecordKey::of("cdr-1"),
            origin: 2,
            account: 1,
            subscription: 10,
            usage: call("4990012345", MONDAY_10, 60),
        }])
        .expect("repeat");
    assert!(again[0].repeated);
    assert_eq!(again[0].amount, rerated.charged.amount, "the rerated memo, not the chunk's first value");
    // Keys past two windows are forgotten, and so are their chunk files.
    for n in 100..160 {
        top_up(&h, n);
    }
    h.engine.snapshot().expect("snapshot");
    let third = chunk_files(&h.dir);
    assert!(
        first.iter().all(|(path, _)| !third.iter().any(|(p, _)| p == path)),
        "forgotten chunks are removed: {first:?} {third:?}"
    );
    let before = h.engine.inspect(SnapshotImage::of).expect("inspect");
    let h = reopened(h);
    assert_eq!(h.engine.inspect(SnapshotImage::of).expect("inspect"), before);
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

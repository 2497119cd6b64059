//! Archived journal segments are removed once every consumer has read them and their
//! retention has passed, and not before.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use tollgate_engine::retention::{prune, set_watermark, watermarks};
use tollgate_engine::{Operation, Target};

const DAY: Duration = Duration::from_secs(86_400);

fn age(path: &std::path::Path, by: Duration) {
    let file = std::fs::File::options().write(true).open(path).expect("segment");
    file.set_modified(SystemTime::now() - by).expect("mtime");
}

#[test]
fn archived_segments_go_once_read_by_every_consumer_and_past_retention() {
    let h = Harness::with_config("retention", |config| config.shards = 1);
    h.prepaid(1, "491700000001", "10.00");
    for n in 0..3 {
        h.run(&format!("t{n}"), Target::Account(1), Operation::TopUp { amount: d("1.00"), reference: format!("{n}") });
        h.engine.snapshot().expect("snapshot");
    }
    let archive = tollgate_engine::testing::archive_dir(&h.dir);
    let archived =
        tollgate_engine::testing::segments(&tollgate_engine::fs::RealFs::new(), &archive, 0).expect("archive");
    assert_eq!(archived.len(), 3, "{archived:?}");
    // Young segments stay.
    let pruned = prune(&h.dir, 30 * DAY, SystemTime::now(), false).expect("prune");
    assert_eq!((pruned.removed.len(), pruned.kept_for_retention), (0, 3));
    for (_, path) in &archived {
        age(path, 40 * DAY);
    }
    // A consumer that has read only the first segment holds the others back.
    set_watermark(&h.dir, "ledger", 0, archived[1].0 - 1).expect("mark");
    let dry = prune(&h.dir, 30 * DAY, SystemTime::now(), true).expect("dry run");
    assert_eq!((dry.removed.len(), dry.kept_for_consumers), (1, 2));
    assert!(archived.iter().all(|(_, path)| path.exists()), "a dry run removes nothing");
    let pruned = prune(&h.dir, 30 * DAY, SystemTime::now(), false).expect("prune");
    assert_eq!(pruned.removed, vec![archived[0].1.clone()]);
    assert!(!archived[0].1.exists() && archived[1].1.exists());
    // Once it has read everything archived, the rest goes.
    let live_first =
        tollgate_engine::testing::segments(&tollgate_engine::fs::RealFs::new(), &h.dir, 0).expect("live")[0].0;
    set_watermark(&h.dir, "ledger", 0, live_first - 1).expect("mark");
    assert_eq!(watermarks(&h.dir).expect("marks")["ledger"][&0], live_first - 1);
    let pruned = prune(&h.dir, 30 * DAY, SystemTime::now(), false).expect("prune");
    assert_eq!(pruned.removed.len(), 2);
    assert!(pruned.removed_bytes > 0);
    // The live state is untouched.
    let h = h.restart();
    assert_eq!(h.balance(1), d("13.00"));
    assert!(set_watermark(&h.dir, "../escape", 0, 1).is_err(), "consumer names are plain");
}

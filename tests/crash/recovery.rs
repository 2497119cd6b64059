//! Snapshots bound recovery: however often `tollgate serve` restarts, a start replays at
//! most about `--snapshot-every` journal records per shard.

use rust_decimal::Decimal;

use crate::grpc;
use crate::ledger::Shared;
use crate::{scratch, Serve};

/// Product bug found with the crash harness (a run of 450 kills replayed 218,126 journal
/// records at its last start, which took 2.5 s, and had never written a snapshot): the
/// shard decides to snapshot when `Journal::records_in_segment` reaches
/// `--snapshot-every`, and a journal opened at recovery starts that count at 0, so the
/// records already in the segment and in every segment since the last snapshot are not
/// counted. A server restarted (or crash-looping) before it appends `--snapshot-every`
/// records in one run never snapshots, and every start replays the whole journal since
/// the last snapshot, growing without bound. Here each run takes 40 top-ups on one shard
/// and stops cleanly; with `--snapshot-every 100` a start should replay at most 100
/// records plus one run's.
#[test]
fn a_server_restarted_before_each_snapshot_point_still_snapshots_and_recovery_stays_bounded() {
    const EVERY: u64 = 100;
    const PER_RUN: u64 = 40;
    let dir = scratch("snapshot-every");
    let data = dir.join("data");
    let origin_host = "ocs-snapshot.crash.test";
    let options = ["--shards", "1", "--snapshot-every", "100", "--demo-subscribers", "1"];
    let mut replayed = Vec::new();
    for run in 0..9 {
        let mut server = Serve::spawn(&data, origin_host, &options);
        let (addresses, _) = server.wait_listening().expect("serve listens");
        replayed.push(server.replayed.expect("`engine ready` says how many records it replayed"));
        let token = std::fs::read_to_string(data.join("grpc.token")).expect("grpc.token").trim().to_owned();
        let shared = Shared::new(origin_host.to_owned(), token);
        if run < 8 {
            for n in 0..PER_RUN {
                grpc::top_up(&shared, addresses.grpc, 1, Decimal::ONE, &format!("run-{run}-top-up-{n}"));
            }
        }
        server.stop();
    }
    let snapshots: Vec<String> = std::fs::read_dir(&data)
        .expect("data dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".snapshot"))
        .collect();
    assert!(
        replayed.iter().all(|r| *r <= EVERY + PER_RUN),
        "records replayed at each of 9 starts, {PER_RUN} appended per run, --snapshot-every {EVERY}: {replayed:?}; snapshots: {snapshots:?}"
    );
    std::fs::remove_dir_all(dir).ok();
}

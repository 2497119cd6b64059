//! Reads a data directory (snapshot + journal) written by an earlier build. If this test
//! fails after a change, the on-disk format changed: bump the format versions and keep
//! a reader for the old one, or regenerate on purpose with
//! `TOLLGATE_REGENERATE_FIXTURES=1 cargo test -p tollgate-engine --test format`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tollgate_engine::{Body, Operation, Outcome, RecordCharge, RecordKey, RecordOutcome, SessionStep, Target};

/// The fixture the current build writes when regenerating.
fn fixture_dir() -> PathBuf {
    fixture("data-v9")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("fixture dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name");
        if name != "LOCK" && path.is_file() {
            std::fs::copy(&path, to.join(name)).expect("copy");
        }
    }
}

fn write_fixture() {
    // Chunks of two window entries, so the fixture has chunk files (snapshot format 5).
    let h = Harness::with_config("fixture-writer", |config| config.snapshot_chunk_entries = 2);
    h.prepaid(1, "491700000001", "10.00");
    h.run("call-1", subscriber("491700000001"), Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) });
    // Version 5: one session open across the snapshot, one opened after it.
    let open = |key: &str, session: &str| {
        let answer = h.run(key, subscriber("491700000001"), data_session(session, SessionStep::Initial, None));
        assert_eq!(answer.outcome, Outcome::Success);
    };
    open("s-before;0", "s-before");
    h.engine.snapshot().expect("snapshot");
    open("s-after;0", "s-after");
    // Version 7: lifecycle effects (an identity added, a suspension and resumption).
    let on_sub = |key: &str, operation| {
        let answer = h.run(key, Target::Subscription(10), operation);
        assert_eq!(answer.outcome, Outcome::Success, "{answer:?}");
    };
    on_sub("imsi-1", Operation::AddIdentity { identity: tollgate_engine::Identity::Imsi("262010000000001".into()) });
    on_sub("suspend-1", Operation::Suspend { reason: "fixture".into() });
    on_sub("resume-1", Operation::Resume);
    // Version 9: an account suspended and resumed.
    let on_account = |key: &str, operation| {
        let answer = h.run(key, Target::Account(1), operation);
        assert_eq!(answer.outcome, Outcome::Success, "{answer:?}");
    };
    on_account("suspend-account-1", Operation::SuspendAccount { reason: "fixture".into() });
    on_account("resume-account-1", Operation::ResumeAccount);
    h.run("top-1", Target::Account(1), Operation::TopUp { amount: d("5.00"), reference: "fixture".into() });
    h.run("sms-1", subscriber("491700000001"), Operation::DirectDebit { usage: sms(MONDAY_10) });
    let records = vec![RecordCharge {
        identity: None,
        key: RecordKey::of("cdr-1"),
        origin: 1,
        account: 1,
        subscription: 10,
        usage: call("4990012345", MONDAY_10, 30),
    }];
    assert_eq!(h.engine.charge_records(records).expect("records")[0].outcome, RecordOutcome::Charged);
    let dir = h.dir.clone();
    let h = h.restart();
    let _ = std::fs::remove_dir_all(fixture_dir());
    copy_dir(&dir, &fixture_dir());
    drop(h);
}

#[test]
fn reads_a_data_dir_written_by_an_earlier_build() {
    if std::env::var_os("TOLLGATE_REGENERATE_FIXTURES").is_some() {
        write_fixture();
    }
    // Version 2: general records only. Version 3 adds a charges record (the bulk path),
    // version 4 writes it compactly, version 5 adds session records (snapshot format 4),
    // version 6 writes the windows' full chunks to files of their own (snapshot format 5)
    // and the online requests' effects compactly (journal format 6); version 7 adds the
    // lifecycle effects (journal 7, snapshot 6); version 8 the rated events' detail for
    // the ledger (journal 8); version 9 account suspension (journal 9, snapshot 7).
    check_fixture("data-v2", "12.51", false);
    check_fixture("data-v3", "10.02", true);
    check_fixture("data-v4", "10.02", true);
    check_fixture("data-v5", "10.02", true);
    check_fixture("data-v6", "10.02", true);
    check_fixture("data-v7", "10.02", true);
    check_fixture("data-v8", "10.02", true);
    check_fixture("data-v9", "10.02", true);
}

fn check_fixture(name: &str, balance: &str, has_records: bool) {
    let dir = data_dir(&format!("format-reader-{name}"));
    copy_dir(&fixture(name), &dir);
    let h = Harness::open(
        dir.clone(),
        std::sync::Arc::new(tollgate_engine::ManualClock::new(MONDAY_10)),
        DirGuard(dir),
        |_| {},
    );
    let report = h.engine.report();
    assert_eq!(report.accounts, 1);
    assert!(report.shards.iter().any(|s| s.snapshot_lsn > 0), "{report:?}");
    let Body::Balance(view) = h.run("", Target::Account(1), Operation::BalanceEnquiry).body else { panic!("balance") };
    assert_eq!(view.balance, d(balance), "{name}");
    let sms = view.buckets.iter().find(|b| b.kind == "sms-bundle").expect("sms bundle");
    assert_eq!(sms.remaining, "999");
    let repeat = h.run(
        "call-1",
        subscriber("491700000001"),
        Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) },
    );
    assert!(repeat.repeated, "keys written before the snapshot are still remembered");
    if name >= "data-v7" {
        let by_imsi = h.run(
            "",
            Target::Subscriber(tollgate_engine::Identity::Imsi("262010000000001".into())),
            Operation::BalanceEnquiry,
        );
        assert_eq!(by_imsi.outcome, Outcome::Success, "{name}: the identity added is known");
    }
    if name >= "data-v5" {
        for session in ["s-before", "s-after"] {
            let key = format!("{session};1");
            let answer =
                h.run(&key, subscriber("491700000001"), data_session(session, SessionStep::Update, Some(1000)));
            assert_eq!(answer.outcome, Outcome::Success, "{name}: {session} is a known session");
        }
    }
    if has_records {
        let records = vec![RecordCharge {
            identity: None,
            key: RecordKey::of("cdr-1"),
            origin: 2,
            account: 1,
            subscription: 10,
            usage: call("4990012345", MONDAY_10, 30),
        }];
        let answer = h.engine.charge_records(records).expect("records")[0];
        assert!(answer.repeated, "{name}: the record key is remembered");
        assert_eq!((answer.origin, answer.amount), (1, d("2.49")), "{name}: the first charge's memo");
        assert!(answer.rated.is_some());
    }
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
    // This build writes after the old records (never into a segment of an older format)
    // and reads both back.
    let record = RecordCharge {
        identity: None,
        key: RecordKey::of("cdr-new"),
        origin: 3,
        account: 1,
        subscription: 10,
        usage: call("4990012345", MONDAY_10, 30),
    };
    assert_eq!(h.engine.charge_records(vec![record.clone()]).expect("records")[0].outcome, RecordOutcome::Charged);
    h.run("top-new", Target::Account(1), Operation::TopUp { amount: d("1.00"), reference: "new".into() });
    let expected = d(balance) - d("2.49") + d("1.00");
    let h = h.restart();
    let again = h.engine.charge_records(vec![record]).expect("records")[0];
    assert!(again.repeated && again.origin == 3, "{name}: {again:?}");
    let Body::Balance(view) = h.run("", Target::Account(1), Operation::BalanceEnquiry).body else { panic!("balance") };
    assert_eq!(view.balance, expected, "{name}: after a restart");
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

/// A data directory of an older journal format is refused with its version named, not
/// misread and not silently skipped.
#[test]
fn refuses_a_journal_of_an_older_format() {
    let dir = data_dir("format-v1");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-v1"), &dir);
    let err = tollgate_engine::Engine::open(
        tollgate_engine::EngineConfig::new(&dir),
        plans(),
        std::sync::Arc::new(tollgate_engine::ManualClock::new(MONDAY_10)),
    )
    .expect_err("an older journal is refused");
    assert!(err.to_string().contains("format version 1; this build reads 2"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

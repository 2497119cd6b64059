//! The data directory records its shard count: opening it with another count is refused,
//! and the count changes only through an explicit reshard, which keeps every account,
//! balance, remembered key, open session and suspension, also when it is interrupted at
//! any step.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use tollgate_engine::{Engine, EngineConfig, EngineError, ManualClock, Operation, Outcome, SessionStep, Target};

fn open(dir: &Path, shards: usize) -> Result<Engine, EngineError> {
    let mut config = EngineConfig::new(dir);
    config.shards = shards;
    Engine::open(config, plans(), Arc::new(ManualClock::new(MONDAY_10)))
}

fn harness(dir: &Path, shards: usize) -> Harness {
    Harness::open(dir.to_owned(), Arc::new(ManualClock::new(MONDAY_10)), DirGuard(std::path::PathBuf::new()), |c| {
        c.shards = shards;
    })
}

/// Ten prepaid accounts, each with a charge and an open session; returns the balances.
fn populate(h: &Harness) -> Vec<rust_decimal::Decimal> {
    (1..=10u64)
        .map(|account| {
            let msisdn = format!("4917000000{account:02}");
            h.prepaid(account, &msisdn, "10.00");
            let call = h.run(
                &format!("call-{account}"),
                subscriber(&msisdn),
                Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) },
            );
            assert_eq!(call.outcome, Outcome::Success);
            let session = h.run(
                &format!("s{account};0"),
                subscriber(&msisdn),
                data_session(&format!("s{account}"), SessionStep::Initial, None),
            );
            assert_eq!(session.outcome, Outcome::Success);
            h.balance(account)
        })
        .collect()
}

/// Everything a reshard must keep, checked on an engine with `shards` shards (`suspended`:
/// the accounts suspended before it, whose sessions are known but granted nothing).
fn check_kept(dir: &Path, shards: usize, balances: &[rust_decimal::Decimal], suspended: &[u64]) {
    let h = harness(dir, shards);
    assert_eq!(h.engine.report().accounts, 10);
    for (index, expected) in balances.iter().enumerate() {
        let account = index as u64 + 1;
        let msisdn = format!("4917000000{account:02}");
        assert_eq!(h.balance(account), *expected, "account {account}");
        let again = h.run(
            &format!("call-{account}"),
            subscriber(&msisdn),
            Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) },
        );
        assert!(again.repeated, "account {account}: the key is still remembered on its new shard");
        let update = h.run(
            &format!("s{account};1"),
            subscriber(&msisdn),
            data_session(&format!("s{account}"), SessionStep::Update, Some(1000)),
        );
        if suspended.contains(&account) {
            let denied = Outcome::ServiceDenied("the subscription is suspended".into());
            assert_eq!(update.outcome, denied, "account {account}: still suspended");
        } else {
            assert_eq!(update.outcome, Outcome::Success, "account {account}: its session is still known");
        }
        let create = h.run(
            &format!("create-again-{account}"),
            Target::Account(account),
            Operation::CreateAccount {
                kind: tollgate_engine::AccountKind::Prepaid,
                currency: "EUR".into(),
                credit_limit: d("0"),
                opening_balance: d("1"),
            },
        );
        assert_eq!(create.outcome, Outcome::AlreadyExists, "account {account} cannot be created twice");
    }
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

/// Regression (issue 14, item 3): opening a data directory with another `--shards` hid
/// the accounts of the other shards and let the same account id be created again.
#[test]
fn a_data_dir_opened_with_another_shard_count_is_refused() {
    let dir = data_dir("layout-mismatch");
    let h = harness(&dir, 2);
    populate(&h);
    drop(h);
    for shards in [1, 3, 4] {
        let err = open(&dir, shards).expect_err("another shard count is refused");
        let text = err.to_string();
        assert!(text.contains("has 2 shards") && text.contains(&format!("reshard --to {shards}")), "{text}");
    }
    let layout = std::fs::read_to_string(dir.join("LAYOUT")).expect("layout");
    assert!(layout.contains("shards = 2"), "{layout}");
    // A directory from before the layout file: its shards are counted from its files.
    std::fs::remove_file(dir.join("LAYOUT")).expect("remove");
    assert!(matches!(open(&dir, 3), Err(EngineError::ShardCount { recorded: 2, requested: 3, .. })));
    drop(open(&dir, 2).expect("the right count opens"));
    assert!(dir.join("LAYOUT").exists(), "and records the layout");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn reshard_keeps_accounts_keys_and_sessions() {
    for (from, to) in [(2, 3), (3, 1)] {
        let dir = data_dir(&format!("reshard-{from}-{to}"));
        let h = harness(&dir, from);
        let balances = populate(&h);
        let suspended = h.run("suspend-10", Target::Account(10), Operation::SuspendAccount { reason: "test".into() });
        assert_eq!(suspended.outcome, Outcome::Success);
        h.engine.snapshot().expect("snapshot");
        drop(h);
        let report = tollgate_engine::reshard::reshard(&dir, to, 1 << 10, MONDAY_10).expect("reshard");
        assert_eq!((report.from, report.to, report.accounts, report.subscriptions), (from, to, 10, 10));
        assert!(report.archived.join("shard-0.snapshot").exists(), "old files archived");
        assert!(matches!(open(&dir, from), Err(EngineError::ShardCount { .. })));
        check_kept(&dir, to, &balances, &[10]);
        let engine = open(&dir, to).expect("open");
        let suspended = |account| engine.account_view(account).expect("view").expect("account").suspended_at;
        assert_eq!((suspended(10), suspended(9)), (Some(MONDAY_10), None), "the suspension moved with its account");
        drop(engine);
        std::fs::remove_dir_all(dir).ok();
    }
}

/// A reshard killed after any number of file moves leaves a directory the engine refuses
/// to open until the reshard is run again, which finishes it with nothing lost.
#[test]
fn an_interrupted_reshard_is_finished_by_the_next_run() {
    let template = data_dir("reshard-template");
    let h = harness(&template, 2);
    let balances = populate(&h);
    drop(h);
    let files = std::fs::read_dir(&template).expect("dir").count();
    let mut renames = 0;
    loop {
        let dir = data_dir(&format!("reshard-crash-{renames}"));
        copy_tree(&template, &dir);
        match tollgate_engine::reshard::reshard_interrupted(&dir, 3, 1 << 10, MONDAY_10, renames) {
            Ok(_) => {
                check_kept(&dir, 3, &balances, &[]);
                std::fs::remove_dir_all(dir).ok();
                break;
            }
            Err(err) => assert!(err.to_string().contains("simulated crash"), "{err}"),
        }
        let refused = open(&dir, 2).map(drop).and_then(|()| open(&dir, 3).map(drop));
        assert!(refused.is_err(), "after {renames} moves, one of the layouts must be refused");
        let resumed = tollgate_engine::reshard::reshard(&dir, 3, 1 << 10, MONDAY_10).expect("finish");
        assert!(resumed.resumed || renames == 0, "after {renames} moves: {resumed:?}");
        check_kept(&dir, 3, &balances, &[]);
        std::fs::remove_dir_all(dir).ok();
        renames += 1;
        assert!(renames < 4 * files + 8, "the reshard never completed");
    }
    assert!(renames > 4, "the crash points covered the moves ({renames})");
    std::fs::remove_dir_all(template).ok();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

#[test]
fn the_layout_file_is_checked() {
    let dir = data_dir("layout-damaged");
    drop(open(&dir, 2).expect("new dir"));
    std::fs::write(dir.join("LAYOUT"), "tollgate-data-layout = 1\nshards = 2\nfuture_thing = 1\n").expect("write");
    let err = open(&dir, 2).expect_err("unknown key refused").to_string();
    assert!(err.contains("LAYOUT:3: unknown key `future_thing`"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

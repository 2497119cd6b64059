//! The rated-event ledger: every path that moves money or allowance leaves one entry with
//! its itemisation; the entries of an account add up to its balance; the ledger follows
//! the journal across restarts without a duplicate, rolls back what the journal lost, and
//! is rebuilt from the journal when it is removed.

mod common;

use std::collections::BTreeMap;

use common::*;
use rust_decimal::Decimal;
use tollgate_engine::ledger::{self, EntryKind, LedgerEntry};
use tollgate_engine::{Operation, RecordCharge, RecordKey, RecordOutcome, SessionStep, Target};

fn entries(h: &Harness, account: u64) -> Vec<LedgerEntry> {
    ledger::account_entries(&h.dir, 2, account, 0, i64::MAX)
        .expect("ledger opens")
        .collect::<Result<Vec<_>, _>>()
        .expect("ledger reads")
}

fn sum(entries: &[LedgerEntry]) -> Decimal {
    entries.iter().map(|e| e.amount).sum()
}

/// Accounts 1 (calls, a session, records) and 2 (top-up, refund, adjustment) on every
/// path that moves money.
fn workload(h: &Harness) {
    h.prepaid(1, "491700000001", "50.00");
    h.prepaid(2, "491700000002", "1.00");
    let debit = h.run(
        "call-1",
        subscriber("491700000001"),
        Operation::DirectDebit { usage: call("+4990012345", MONDAY_10, 61) },
    );
    assert_eq!(debit.outcome, tollgate_engine::Outcome::Success, "{debit:?}");
    for (n, step) in [SessionStep::Initial, SessionStep::Update, SessionStep::Termination].into_iter().enumerate() {
        let used = (step != SessionStep::Initial).then_some(300 << 10);
        h.run(&format!("gy;{n}"), subscriber("491700000001"), data_session("gy", step, used));
    }
    let records: Vec<RecordCharge> = (0..3)
        .map(|n| RecordCharge {
            identity: None,
            key: RecordKey::of(&format!("cdr-{n}")),
            origin: n + 1,
            account: 1,
            subscription: 10,
            usage: call("4990012345", MONDAY_10 + n as i64 * 60, 30),
        })
        .collect();
    let answers = h.engine.charge_records(records).expect("records");
    assert!(answers.iter().all(|a| a.outcome == RecordOutcome::Charged), "{answers:?}");
    let rerate = h.run(
        "rerate-1",
        Target::Subscription(10),
        Operation::Rerate { record: "cdr-0".into(), usage: call("4990012345", MONDAY_10, 90) },
    );
    assert_eq!(rerate.outcome, tollgate_engine::Outcome::Success, "{rerate:?}");
    h.run("top-2", Target::Account(2), Operation::TopUp { amount: d("5.00"), reference: "voucher 77".into() });
    h.run("refund-2", Target::Account(2), Operation::Refund { amount: d("0.50"), reason: "dropped call".into() });
    h.run("adjust-2", Target::Account(2), Operation::Adjust { amount: d("-0.25"), reason: "goodwill".into() });
}

#[test]
fn every_money_movement_is_one_entry_and_an_account_s_entries_add_up_to_its_balance() {
    let h = Harness::new("ledger-paths");
    workload(&h);
    h.engine.sync_ledger().expect("ledger builds");

    let one = entries(&h, 1);
    assert_eq!(sum(&one), h.balance(1), "{one:#?}");
    let usage: Vec<&LedgerEntry> = one.iter().filter(|e| e.kind == EntryKind::Usage).collect();
    // The direct debit, two session steps that reported usage, three records.
    assert_eq!(usage.len(), 6, "{usage:#?}");
    let debit = usage.iter().find(|e| e.key.as_deref() == Some("call-1")).expect("the debit's entry");
    assert_eq!(debit.called.as_deref(), Some("+4990012345"));
    assert_eq!(debit.prefix.as_deref().map(|p| "4990012345".starts_with(p)), Some(true), "{debit:?}");
    assert!(debit.prefix.as_ref().is_some_and(|p| !p.is_empty()));
    assert_eq!(debit.identity.as_deref(), Some("msisdn:491700000001"));
    assert_eq!((debit.subscription, debit.started_at, debit.units), (Some(10), Some(MONDAY_10), 61));
    assert_eq!(debit.plan.as_deref(), Some("mobile-prepaid-s"));
    assert!(debit.plan_version.is_some() && debit.rate_line.is_some_and(|line| line > 0), "{debit:?}");
    assert!(debit.band.is_some() && debit.currency.as_deref() == Some("EUR") && debit.amount.is_sign_negative());
    let session: Vec<_> = usage.iter().filter(|e| e.key.as_deref().is_some_and(|k| k.starts_with("gy;"))).collect();
    assert_eq!(session.len(), 2, "the update and the termination reported usage");
    assert!(session.iter().all(|e| e.rating_group.is_some() && e.units == 300 << 10));
    let records: Vec<_> =
        usage.iter().filter(|e| e.key.as_deref() == Some(&format!("{:032x}", RecordKey::of("cdr-1").0)[..])).collect();
    assert_eq!(records.len(), 1, "a record's entry carries its key digest");
    assert_eq!(records[0].called.as_deref(), Some("4990012345"));
    assert_eq!(records[0].started_at, Some(MONDAY_10 + 60));
    assert!(one.iter().any(|e| e.kind == EntryKind::RerateRefund && e.note.as_deref() == Some("cdr-0")));
    assert!(one.iter().any(|e| e.kind == EntryKind::RerateCharge));
    assert!(one.iter().any(|e| e.kind == EntryKind::Grant), "the subscription's allowances are granted");
    assert!(!one.iter().any(|e| e.kind == EntryKind::Charge), "every charge is itemised: {one:#?}");

    let two = entries(&h, 2);
    assert_eq!(sum(&two), h.balance(2));
    let kinds: Vec<EntryKind> = two.iter().filter(|e| !e.amount.is_zero()).map(|e| e.kind).collect();
    assert_eq!(kinds, [EntryKind::Opening, EntryKind::TopUp, EntryKind::Refund, EntryKind::Adjustment]);
    assert_eq!(two.iter().find(|e| e.kind == EntryKind::TopUp).and_then(|e| e.note.as_deref()), Some("voucher 77"));

    // Totals over the period read the same.
    let totals = ledger::totals(&h.dir, 2, MONDAY_10 - 86_400, MONDAY_10 + 86_400).expect("totals");
    assert_eq!(totals[&1].amount, h.balance(1));
    assert_eq!(totals[&1].usage, usage.iter().map(|e| e.amount).sum::<Decimal>());
    // A period with nothing posted in it.
    assert!(ledger::totals(&h.dir, 2, 0, 86_400).expect("totals").is_empty());

    // Several accounts read in one pass get what each gets alone, in the same order; an
    // account asked for and never charged has nothing.
    let wanted: std::collections::HashSet<u64> = [1, 2, 99].into_iter().collect();
    let batch = ledger::accounts_entries(&h.dir, 2, &wanted, 0, i64::MAX).expect("batch");
    assert_eq!((batch.get(&1), batch.get(&2), batch.get(&99)), (Some(&one), Some(&two), None));
    let only_two: std::collections::HashSet<u64> = [2].into_iter().collect();
    let batch = ledger::accounts_entries(&h.dir, 2, &only_two, 0, i64::MAX).expect("batch");
    assert_eq!(batch.keys().collect::<Vec<_>>(), [&2]);
    assert!(ledger::accounts_entries(&h.dir, 2, &wanted, 0, 86_400).expect("batch").is_empty(), "outside the period");
}

#[test]
fn the_ledger_follows_the_journal_across_restarts_and_is_rebuilt_when_removed() {
    let h = Harness::new("ledger-restart");
    workload(&h);
    h.engine.sync_ledger().expect("ledger builds");
    let before: BTreeMap<u64, Vec<LedgerEntry>> = [1, 2].into_iter().map(|a| (a, entries(&h, a))).collect();
    // A snapshot moves the segments to the archive; the ledger reads on from there.
    h.engine.snapshot().expect("snapshot");
    let h = h.restart();
    assert_eq!(h.engine.sync_ledger().expect("ledger builds"), 0, "nothing is built twice after a restart");
    let after: BTreeMap<u64, Vec<LedgerEntry>> = [1, 2].into_iter().map(|a| (a, entries(&h, a))).collect();
    assert_eq!(after, before);
    h.run("top-2b", Target::Account(2), Operation::TopUp { amount: d("1.00"), reference: "later".into() });
    h.engine.sync_ledger().expect("ledger builds");
    assert_eq!(sum(&entries(&h, 2)), h.balance(2));
    let all_before: Vec<_> = [1, 2].into_iter().flat_map(|a| entries(&h, a)).collect();

    // Removed while stopped: built again from the (archived) journal, the same.
    let dir = h.dir.clone();
    let h = {
        let Harness { engine, clock, dir, .. } = h;
        engine.shutdown().expect("shutdown");
        std::fs::remove_dir_all(ledger::ledger_dir(&dir)).expect("remove the ledger");
        Harness::open(dir.clone(), clock, DirGuard(dir), |_| {})
    };
    h.engine.sync_ledger().expect("ledger builds");
    let all_after: Vec<_> = [1, 2].into_iter().flat_map(|a| entries(&h, a)).collect();
    assert_eq!(all_after, all_before);
    assert_eq!(h.dir, dir);
}

#[test]
fn bytes_past_the_cursor_are_cut_and_a_ledger_ahead_of_the_journal_rolls_back() {
    let h = Harness::new("ledger-repair");
    workload(&h);
    h.engine.sync_ledger().expect("ledger builds");
    let expected = entries(&h, 1);
    let Harness { engine, clock, dir, .. } = h;
    engine.shutdown().expect("shutdown");
    // A builder that crashed after appending and before moving its cursor.
    let cursor = ledger::cursors(&dir, 2).expect("cursors");
    let month = std::fs::read_dir(ledger::ledger_dir(&dir))
        .expect("ledger dir")
        .filter_map(|e| e.ok())
        .find(|e| e.path().is_dir())
        .expect("a month folder")
        .path();
    let shard_file = month.join("shard-1.ledger");
    let mut bytes = std::fs::read(&shard_file).expect("ledger file");
    bytes.extend_from_slice(b"half a frame");
    std::fs::write(&shard_file, &bytes).expect("append garbage");
    // And a cursor that claims more than the journal holds (a lost journal tail).
    let cursor_path = ledger::ledger_dir(&dir).join("shard-1.cursor");
    let text = std::fs::read_to_string(&cursor_path).expect("cursor");
    let claimed = text.replacen(&format!("lsn {}", cursor[1]), &format!("lsn {}", cursor[1] + 5), 1);
    std::fs::write(&cursor_path, claimed).expect("cursor");
    let h = Harness::open(dir.clone(), clock, DirGuard(dir), |_| {});
    assert!(ledger::cursors(&h.dir, 2).expect("cursors")[1] <= cursor[1], "rolled back to the journal");
    h.engine.sync_ledger().expect("ledger builds");
    assert_eq!(entries(&h, 1), expected);
}

/// A builder of `dir`'s ledger whose first build failed to sync its files (syncs work
/// again once it returns).
fn build_failing_to_sync(dir: &std::path::Path) -> ledger::LedgerBuilder {
    let faults = std::sync::Arc::new(tollgate_engine::testing::Faults::default());
    let fs = std::sync::Arc::new(tollgate_engine::fs::RealFs::with_faults(std::sync::Arc::clone(&faults)));
    let mut builder = ledger::LedgerBuilder::open(fs, dir, 2, None).expect("the builder opens");
    faults.fail_syncs(5);
    builder.catch_up(None).expect_err("the ledger's files do not sync");
    faults.heal();
    builder
}

/// Each account's ledger entries add up to its balance: no record skipped, none twice.
fn assert_ledger_totals(dir: &std::path::Path, balances: BTreeMap<u64, Decimal>) {
    let totals = ledger::totals(dir, 2, 0, i64::MAX).expect("totals");
    for (account, balance) in balances {
        assert_eq!(totals.get(&account).map(|t| t.amount), Some(balance), "account {account}");
    }
}

#[test]
fn a_build_whose_files_fail_to_sync_is_built_again_whole_once_they_sync() {
    let h = Harness::new("ledger-sync-fails");
    workload(&h);
    let balances: BTreeMap<u64, Decimal> = [1, 2].into_iter().map(|a| (a, h.balance(a))).collect();
    let Harness { engine, dir, .. } = h;
    engine.shutdown().expect("shutdown");
    std::fs::remove_dir_all(ledger::ledger_dir(&dir)).expect("remove the ledger");
    let mut builder = build_failing_to_sync(&dir);
    builder.catch_up(None).expect("the ledger builds");
    assert_ledger_totals(&dir, balances);
}

/// `count` top-ups of account 2 and calls of account 1, their keys tagged `tag`.
fn top_ups_and_calls(h: &Harness, tag: &str, count: usize) {
    for n in 0..count {
        let top_up = Operation::TopUp { amount: d("1.00"), reference: tag.into() };
        h.run(&format!("top-{tag}-{n}"), Target::Account(2), top_up);
        let debit = Operation::DirectDebit { usage: call("+4990012345", MONDAY_10, 61) };
        h.run(&format!("call-{tag}-{n}"), subscriber("491700000001"), debit);
    }
}

#[test]
fn the_bytes_of_a_flush_that_failed_to_sync_are_cut_before_the_next_one() {
    // A ledger built, then more records charged while the server ran without one.
    let h = Harness::new("ledger-sync-fails-after");
    workload(&h);
    h.engine.sync_ledger().expect("ledger builds");
    let Harness { engine, clock, dir, .. } = h;
    engine.shutdown().expect("shutdown");
    let h = Harness::open(dir.clone(), clock, DirGuard(dir.clone()), |config| config.ledger = false);
    top_ups_and_calls(&h, "late", 3);
    let Harness { engine, clock, dir, .. } = h;
    engine.shutdown().expect("shutdown");
    // The next build appends to the month files, whose sync fails; more records come;
    // then it builds again, a longer batch than the one that failed.
    let mut builder = build_failing_to_sync(&dir);
    let h = Harness::open(dir.clone(), clock, DirGuard(dir.clone()), |config| config.ledger = false);
    top_ups_and_calls(&h, "later", 2);
    let balances: BTreeMap<u64, Decimal> = [1, 2].into_iter().map(|a| (a, h.balance(a))).collect();
    let Harness { engine, dir, .. } = h;
    engine.shutdown().expect("shutdown");
    builder.catch_up(None).expect("the ledger builds");
    assert_ledger_totals(&dir, balances);
}

#[test]
fn a_journal_segment_missing_from_the_middle_stops_the_ledger_instead_of_skipping_its_records() {
    let h = Harness::new("ledger-gap");
    workload(&h);
    for n in 0..3 {
        h.engine.snapshot().expect("snapshot");
        h.run(
            &format!("top-gap-{n}"),
            Target::Account(2),
            Operation::TopUp { amount: d("1.00"), reference: "gap".into() },
        );
    }
    let shard = tollgate_engine::testing::shard_of(2, 2) as u32;
    let Harness { engine, dir, .. } = h;
    engine.shutdown().expect("shutdown");
    let archive = tollgate_engine::testing::archive_dir(&dir);
    let archived =
        tollgate_engine::testing::segments(&tollgate_engine::fs::RealFs::new(), &archive, shard).expect("segments");
    assert!(archived.len() >= 3, "{archived:?}");
    std::fs::remove_file(&archived[1].1).expect("remove a segment from the middle");
    std::fs::remove_dir_all(ledger::ledger_dir(&dir)).expect("remove the ledger");
    let fs = std::sync::Arc::new(tollgate_engine::fs::RealFs::new());
    let mut builder = ledger::LedgerBuilder::open(fs, &dir, 2, None).expect("the builder opens");
    let err = builder.catch_up(None).expect_err("a gap in the journal");
    assert!(err.to_string().contains("skips from LSN"), "{err}");
}

/// The real file system, except that right after the ledger first lists the live
/// journal segments or the archive, every live segment moves to the archive: a snapshot
/// thread retiring segments between the builder's two listings.
#[derive(Debug)]
struct RetiredBetweenListings {
    real: tollgate_engine::fs::RealFs,
    dir: std::path::PathBuf,
    moved: std::sync::atomic::AtomicBool,
}

impl tollgate_engine::fs::FileSystem for RetiredBetweenListings {
    fn write_file(&self, path: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
        self.real.write_file(path, bytes, mode)
    }
    fn sync_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.real.sync_file(path)
    }
    fn open_append(&self, path: &std::path::Path) -> std::io::Result<Box<dyn tollgate_engine::testing::Storage>> {
        self.real.open_append(path)
    }
    fn read(&self, path: &std::path::Path) -> std::io::Result<Vec<u8>> {
        self.real.read(path)
    }
    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        let archive = tollgate_engine::testing::archive_dir(&self.dir);
        let listed = self.real.list(dir);
        if (dir == self.dir || dir == archive) && !self.moved.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::fs::create_dir_all(&archive)?;
            for entry in std::fs::read_dir(&self.dir)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "journal") {
                    std::fs::rename(&path, archive.join(path.file_name().unwrap_or_default()))?;
                }
            }
        }
        listed
    }
    fn len(&self, path: &std::path::Path) -> std::io::Result<u64> {
        self.real.len(path)
    }
    fn modified(&self, path: &std::path::Path) -> std::io::Result<std::time::SystemTime> {
        self.real.modified(path)
    }
    fn exists(&self, path: &std::path::Path) -> bool {
        self.real.exists(path)
    }
    fn is_dir(&self, path: &std::path::Path) -> bool {
        self.real.is_dir(path)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.real.remove_file(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        self.real.rename(from, to)
    }
    fn hard_link(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        self.real.hard_link(from, to)
    }
    fn create_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.real.create_dir(dir)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.real.sync_dir(dir)
    }
    fn set_len(&self, path: &std::path::Path, len: u64) -> std::io::Result<()> {
        self.real.set_len(path, len)
    }
    fn lock(&self, path: &std::path::Path) -> std::io::Result<Option<std::fs::File>> {
        self.real.lock(path)
    }
}

#[test]
fn segments_a_snapshot_retires_while_the_ledger_lists_them_are_read_not_skipped() {
    let h = Harness::new("ledger-retired-meanwhile");
    workload(&h);
    let balances: BTreeMap<u64, Decimal> = [1, 2].into_iter().map(|a| (a, h.balance(a))).collect();
    let Harness { engine, dir, .. } = h;
    engine.shutdown().expect("shutdown");
    std::fs::remove_dir_all(ledger::ledger_dir(&dir)).expect("remove the ledger");
    let fs = std::sync::Arc::new(RetiredBetweenListings {
        real: tollgate_engine::fs::RealFs::new(),
        dir: dir.clone(),
        moved: std::sync::atomic::AtomicBool::new(false),
    });
    let mut builder = ledger::LedgerBuilder::open(fs, &dir, 2, None).expect("the builder opens");
    builder.catch_up(None).expect("the ledger builds");
    assert_ledger_totals(&dir, balances);
}

#[test]
fn without_itemisation_the_ledger_still_adds_up() {
    let h = Harness::with_config("ledger-plain", |config| config.charging.itemise = false);
    workload(&h);
    h.engine.sync_ledger().expect("ledger builds");
    let one = entries(&h, 1);
    assert_eq!(sum(&one), h.balance(1));
    assert!(one.iter().any(|e| e.kind == EntryKind::Charge) && !one.iter().any(|e| e.kind == EntryKind::Usage));
}

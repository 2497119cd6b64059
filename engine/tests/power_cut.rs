//! Power cuts over the whole data directory: the engine runs on a simulated file system
//! that keeps only what was synced (journal segments, snapshots, window chunks, the
//! layout, archive moves), the power is cut at a random moment while several threads
//! charge, and the engine is opened on what survives. It must open, and every request
//! acknowledged before the cut must be there: a retransmission gets its first answer and
//! changes nothing. Some cuts fall during the recovery of an earlier one.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use tollgate_engine::testing::SimFs;
use tollgate_engine::{
    AccountKind, Answer, Engine, EngineConfig, ManualClock, Operation, RecordCharge, RecordKey, Request, SessionStep,
    Target, UnitRequest,
};

/// Cut rounds per run (each with a second cut after reopening).
const ROUNDS: u64 = 100;
const ACCOUNTS: u64 = 4;

fn open(fs: &SimFs, dir: &Path, clock: &Arc<ManualClock>) -> Engine {
    let mut config = EngineConfig::new(dir);
    config.fs = Arc::new(fs.clone());
    config.shards = 2;
    config.snapshot_every_records = 25;
    config.snapshot_chunk_entries = 4;
    // Large enough that no key acknowledged in a round leaves the window.
    config.charging.dedupe_window = 4096;
    config.reaper_interval = std::time::Duration::from_millis(5);
    Engine::open(config, plans(), clock.clone()).unwrap_or_else(|err| panic!("the engine opens after a cut: {err}"))
}

/// What was acknowledged: a keyed request and its answer, or a charged record.
#[derive(Debug, Clone)]
enum Acked {
    Request(Box<(Request, Answer)>),
    Record(RecordCharge, rust_decimal::Decimal),
}

struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn msisdn(account: u64) -> String {
    format!("4917000000{account:02}")
}

/// One client: random debits, top-ups, session steps and record batches until stopped.
fn client(engine: &Engine, thread: u64, seed: u64, stop: &AtomicBool, acked: &Mutex<Vec<Acked>>) {
    let mut random = Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (thread + 1));
    let mut sessions: Vec<(String, u32)> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let account = 1 + random.below(ACCOUNTS);
        let who = subscriber(&msisdn(account));
        let key = format!("t{thread}-{n}");
        let request = match random.below(6) {
            0 => Request { key: Some(key), target: who, operation: Operation::DirectDebit { usage: sms(MONDAY_10) } },
            1 => Request {
                key: Some(key),
                target: Target::Account(account),
                operation: Operation::TopUp { amount: d("0.25"), reference: format!("v{thread}-{n}") },
            },
            2 | 3 => {
                let step = match sessions.iter().position(|(s, _)| s.ends_with(&format!("@{account}"))) {
                    None => {
                        sessions.push((format!("s{thread}-{n}@{account}"), 0));
                        SessionStep::Initial
                    }
                    Some(_) if random.below(3) == 0 => SessionStep::Termination,
                    Some(_) => SessionStep::Update,
                };
                let index = sessions.iter().position(|(s, _)| s.ends_with(&format!("@{account}"))).unwrap_or(0);
                let (session, number) = sessions[index].clone();
                sessions[index].1 += 1;
                if step == SessionStep::Termination {
                    sessions.remove(index);
                }
                let used = (step != SessionStep::Initial).then_some(1 << 18);
                let requested = (step != SessionStep::Termination).then_some(1 << 18);
                Request {
                    key: Some(format!("{session};{number}")),
                    target: who,
                    operation: Operation::Session {
                        session,
                        step,
                        units: vec![UnitRequest {
                            rating_group: 30,
                            service: None,
                            requested_units: requested,
                            used_units: used,
                            destination: None,
                        }],
                    },
                }
            }
            _ => {
                let records: Vec<RecordCharge> = (0..3)
                    .map(|i| RecordCharge {
                        identity: None,
                        key: RecordKey::of(&format!("cdr-{thread}-{n}-{i}")),
                        origin: n,
                        account,
                        subscription: account * 10,
                        usage: sms(MONDAY_10),
                    })
                    .collect();
                if let Ok(answers) = engine.charge_records(records.clone()) {
                    let mut list = acked.lock().expect("acks");
                    for (record, answer) in records.into_iter().zip(answers) {
                        if answer.outcome == tollgate_engine::RecordOutcome::Charged {
                            list.push(Acked::Record(record, answer.amount));
                        }
                    }
                }
                continue;
            }
        };
        if let Ok(answer) = engine.execute(request.clone()) {
            acked.lock().expect("acks").push(Acked::Request(Box::new((request, answer))));
        }
    }
}

/// Every acknowledged request is remembered with its first answer; every charged record
/// is a repeat with its first amount.
fn check(engine: &Engine, acked: &[Acked], context: &str) {
    for item in acked {
        match item {
            Acked::Request(acked) => {
                let (request, first) = &**acked;
                let again = engine.execute(request.clone()).expect("answer");
                assert!(again.repeated, "{context}: {:?} was acknowledged before the cut and is lost", request.key);
                assert_eq!(
                    (&again.outcome, &again.body),
                    (&first.outcome, &first.body),
                    "{context}: {:?}",
                    request.key
                );
            }
            Acked::Record(record, amount) => {
                let again = engine.charge_records(vec![record.clone()]).expect("answer")[0];
                assert!(again.repeated, "{context}: record {:?} was charged before the cut and is lost", record.key);
                assert_eq!(again.amount, *amount, "{context}");
            }
        }
    }
    assert_eq!(engine.check_invariants().expect("inspect"), Vec::<String>::new(), "{context}");
}

/// The ledger, built on after the cut from what survived of it and of the journal, adds
/// up to every account's balance: no record lost, none twice.
fn check_ledger(engine: &Engine, fs: &SimFs, dir: &Path, context: &str) {
    engine.sync_ledger().unwrap_or_else(|err| panic!("{context}: the ledger builds: {err}"));
    let totals = tollgate_engine::ledger::totals_on(fs, dir, 2, 0, i64::MAX).expect("ledger totals");
    for account in 1..=ACCOUNTS {
        let Ok(answer) = engine.execute(Request {
            key: None,
            target: Target::Account(account),
            operation: Operation::BalanceEnquiry,
        }) else {
            panic!("{context}: balance")
        };
        let tollgate_engine::Body::Balance(view) = answer.body else { continue };
        let ledger = totals.get(&account).map(|t| t.amount).unwrap_or_default();
        if ledger != view.balance {
            panic!(
                "{context}: account {account}'s ledger adds up to {ledger}, its balance is {}\n{}",
                view.balance,
                ledger_against_journal(fs, dir, account)
            );
        }
    }
}

/// Where the ledger and the journal disagree on `account`: the entries of each journal
/// record (live and archived segments) against the ledger's, by LSN, and the files.
fn ledger_against_journal(fs: &SimFs, dir: &Path, account: u64) -> String {
    use std::collections::BTreeMap;
    use tollgate_engine::fs::FileSystem;
    let shard = tollgate_engine::testing::shard_of(account, 2) as u32;
    let mut journal: BTreeMap<u64, rust_decimal::Decimal> = BTreeMap::new();
    let prefix = format!("shard-{shard}-");
    let files = fs.files();
    for path in files.iter().filter(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".journal"))
    }) {
        let Ok(bytes) = fs.read(path) else { continue };
        match tollgate_engine::ledger::entries_of_segment(&bytes, shard) {
            Ok(entries) => {
                for entry in entries.into_iter().filter(|e| e.account == account) {
                    *journal.entry(entry.lsn).or_default() += entry.amount;
                }
            }
            Err(err) => return format!("{}: {err}", path.display()),
        }
    }
    let mut ledger: BTreeMap<u64, rust_decimal::Decimal> = BTreeMap::new();
    let fs: std::sync::Arc<dyn FileSystem> = std::sync::Arc::new(fs.clone());
    match tollgate_engine::ledger::account_entries_on(fs, dir, 2, account, 0, i64::MAX) {
        Ok(entries) => {
            for entry in entries {
                match entry {
                    Ok(entry) => *ledger.entry(entry.lsn).or_default() += entry.amount,
                    Err(err) => return format!("ledger: {err}"),
                }
            }
        }
        Err(err) => return format!("ledger: {err}"),
    }
    let mut out = format!("shard {shard}; journal total {}\n", journal.values().sum::<rust_decimal::Decimal>());
    for lsn in journal.keys().chain(ledger.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (j, l) = (journal.get(lsn), ledger.get(lsn));
        if j != l {
            out.push_str(&format!("lsn {lsn}: journal {j:?}, ledger {l:?}\n"));
        }
    }
    for path in files {
        out.push_str(&format!("{}\n", path.display()));
    }
    out
}

/// Runs clients on `engine` until `threshold` more acknowledgements, then cuts the power;
/// returns the image and what was acknowledged before the cut.
fn run_and_cut(
    engine: Engine,
    fs: &SimFs,
    seed: u64,
    threshold: usize,
    acked: &Arc<Mutex<Vec<Acked>>>,
) -> (SimFs, Vec<Acked>) {
    let engine = Arc::new(engine);
    let stop = Arc::new(AtomicBool::new(false));
    let start = acked.lock().expect("acks").len();
    let clients: Vec<_> = (0..2)
        .map(|thread| {
            let (engine, stop, acked) = (Arc::clone(&engine), Arc::clone(&stop), Arc::clone(acked));
            std::thread::spawn(move || client(&engine, thread, seed, &stop, &acked))
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().expect("acks").len() < start + threshold {
        assert!(std::time::Instant::now() < deadline, "the clients stalled");
        std::thread::yield_now();
    }
    // What was acknowledged before the cut was synced before it.
    let before: Vec<Acked> = acked.lock().expect("acks").clone();
    let image = fs.cut(seed);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client");
    }
    drop(engine);
    (image, before)
}

#[test]
fn after_a_power_cut_at_any_moment_the_acknowledged_state_is_there() {
    let base: u64 = std::env::var("TOLLGATE_POWER_CUT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_205);
    let root = PathBuf::from("/sim");
    let dir = root.join("data");
    let clock = Arc::new(ManualClock::new(MONDAY_10));
    let mut files_seen = 0;
    for round in 0..ROUNDS {
        let seed = base.wrapping_add(round.wrapping_mul(7919));
        let mut random = Random(seed | 1);
        let fs = SimFs::new(&root);
        let engine = open(&fs, &dir, &clock);
        let mut setup = Vec::new();
        for account in 1..=ACCOUNTS {
            for (key, target, operation) in [
                (
                    format!("create-{account}"),
                    Target::Account(account),
                    Operation::CreateAccount {
                        kind: AccountKind::Prepaid,
                        currency: "EUR".into(),
                        credit_limit: d("0"),
                        opening_balance: d("50.00"),
                    },
                ),
                (
                    format!("subscribe-{account}"),
                    Target::Account(account),
                    Operation::CreateSubscription {
                        subscription: account * 10,
                        plan: "mobile-prepaid-s".into(),
                        identities: vec![tollgate_engine::Identity::Msisdn(msisdn(account))],
                    },
                ),
            ] {
                let request = Request { key: Some(key), target, operation };
                let answer = engine.execute(request.clone()).expect("setup");
                setup.push(Acked::Request(Box::new((request, answer))));
            }
        }
        let acked = Arc::new(Mutex::new(setup));
        let threshold = 10 + random.below(300) as usize;
        let (image, before) = run_and_cut(engine, &fs, seed, threshold, &acked);
        files_seen += image.files().len();
        // Reopen on what survived: everything acknowledged is there.
        let reopened = open(&image, &dir, &clock);
        check(&reopened, &before, &format!("round {round} (seed {seed}), first cut"));
        check_ledger(&reopened, &image, &dir, &format!("round {round} (seed {seed}), first cut"));
        // Charge on, and cut again, sometimes right after the reopening.
        let threshold = random.below(60) as usize;
        let acked = Arc::new(Mutex::new(before));
        let (second, before) = run_and_cut(reopened, &image, seed ^ 0xdead_beef, threshold, &acked);
        let last = open(&second, &dir, &clock);
        check(&last, &before, &format!("round {round} (seed {seed}), second cut"));
        check_ledger(&last, &second, &dir, &format!("round {round} (seed {seed}), second cut"));
    }
    assert!(files_seen > ROUNDS as usize * 4, "the cuts saw segments, snapshots and chunk files: {files_seen}");
}

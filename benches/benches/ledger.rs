//! The rated-event ledger: scanning a period and aggregating it per account (what a bill
//! run reads), and reading one account's itemised entries. The ledger is built by a real
//! engine from 2 M rated records over 100 k accounts.
//!
//! `cargo bench -p tollgate-benches --bench ledger`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate_benches::{example_prefixes, numbers, Rng};
use tollgate_engine::ledger;
use tollgate_engine::{
    AccountKind, Engine, EngineConfig, FsyncPolicy, Identity, ManualClock, Operation, Plans, RecordCharge, RecordKey,
    Request, ServiceRef, Target, Usage,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Monday 2026-03-02 10:00:00 UTC.
const NOW: i64 = 1_772_445_600;
const ACCOUNTS: u64 = 100_000;

fn build(dir: &std::path::Path, records: u64) -> u64 {
    let mut plans = Plans::new();
    plans.load(&tollgate_benches::example_path("wholesale-international.toml")).expect("plan");
    let mut config = EngineConfig::new(dir);
    config.fsync = FsyncPolicy::Never;
    config.snapshot_every_records = u64::MAX;
    let engine = Engine::open(config, plans, Arc::new(ManualClock::new(NOW))).expect("engine");
    let mut setup = Vec::new();
    for account in 1..=ACCOUNTS {
        setup.push(Request {
            key: Some(format!("create-{account}")),
            target: Target::Account(account),
            operation: Operation::CreateAccount {
                kind: AccountKind::Postpaid,
                currency: "USD".into(),
                credit_limit: rust_decimal::Decimal::new(1_000_000_000, 0),
                opening_balance: rust_decimal::Decimal::ZERO,
            },
        });
        setup.push(Request {
            key: Some(format!("subscribe-{account}")),
            target: Target::Account(account),
            operation: Operation::CreateSubscription {
                subscription: account,
                plan: "wholesale-intl".into(),
                identities: vec![Identity::Msisdn(format!("44{account:010}"))],
            },
        });
        if setup.len() >= 20_000 {
            engine.execute_batch(std::mem::take(&mut setup)).expect("setup");
        }
    }
    engine.execute_batch(setup).expect("setup");
    let called = numbers(&example_prefixes("wholesale-international.toml"), 65_536, 3);
    let mut rng = Rng::new(11);
    let mut sent = 0;
    while sent < records {
        let batch: Vec<RecordCharge> = (0..4096)
            .map(|n| {
                let account = 1 + rng.below(ACCOUNTS);
                RecordCharge {
                    identity: None,
                    key: RecordKey::of(&format!("cdr-{}", sent + n)),
                    origin: 0,
                    account,
                    subscription: account,
                    usage: Usage {
                        service: ServiceRef::Name("voice".into()),
                        rating_group: None,
                        destination: Some(called[rng.below(called.len() as u64) as usize].as_str().into()),
                        start_utc_seconds: NOW - 3600 + rng.below(3600) as i64,
                        units: 1 + rng.below(600),
                    },
                }
            })
            .collect();
        let answers = engine.charge_records(batch).expect("records");
        assert!(answers.iter().all(|a| a.outcome == tollgate_engine::RecordOutcome::Charged), "{:?}", answers[0]);
        sent += 4096;
    }
    engine.sync_ledger().expect("ledger");
    engine.shutdown().expect("shutdown");
    let totals = ledger::totals(dir, 2, 0, i64::MAX).expect("totals");
    totals.values().map(|t| t.entries).sum()
}

fn scan(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("tollgate-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let records = std::env::var("TOLLGATE_BENCH_LEDGER_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let entries = build(&dir, records);
    let mut group = c.benchmark_group("ledger");
    group.sample_size(20);
    group.throughput(Throughput::Elements(entries));
    // A month's period: every file of the month, every account's totals.
    group.bench_function("totals_per_account_one_month", |b| {
        b.iter(|| black_box(ledger::totals(&dir, 2, NOW - 86_400, NOW + 86_400).expect("totals")))
    });
    // Building: the whole ledger again from the journal (what the ledger thread does as
    // the journal grows), entries per second.
    group.sample_size(10);
    group.bench_function("build_from_journal", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..iters {
                std::fs::remove_dir_all(ledger::ledger_dir(&dir)).expect("remove the ledger");
                let start = std::time::Instant::now();
                let fs = Arc::new(tollgate_engine::fs::RealFs::new());
                let mut builder = ledger::LedgerBuilder::open(fs, &dir, 2, None).expect("builder");
                black_box(builder.catch_up(None).expect("built"));
                spent += start.elapsed();
            }
            spent
        })
    });
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_account_s_entries_one_month", |b| {
        let mut account = 0;
        b.iter(|| {
            account = account % ACCOUNTS + 1;
            let read = ledger::account_entries(&dir, 2, account, NOW - 86_400, NOW + 86_400).expect("entries");
            black_box(read.count())
        })
    });
    group.finish();
    std::fs::remove_dir_all(dir).ok();
}

criterion_group!(benches, scan);
criterion_main!(benches);

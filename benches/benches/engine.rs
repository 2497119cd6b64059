//! Charging-core throughput: journal group commit, a shard deciding debits, and the
//! whole engine (routing, batching, rating, journal with fsync per batch) with 1 M accounts,
//! with and without the rated-event ledger.
//!
//! `cargo bench -p tollgate-benches --bench engine`

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rust_decimal::Decimal;
use tollgate_benches::{example_prefixes, numbers, Rng};
use tollgate_engine::testing::{
    charge_record, decide, ChargesWriter, Context, Directory, FileStorage, Journal, Resolved, ShardState,
};
use tollgate_engine::{
    AccountKind, ChargingConfig, Engine, EngineConfig, FsyncPolicy, Identity, ManualClock, Operation, PendingRecords,
    Plans, RecordCharge, RecordKey, Request, ServiceRef, Target, Usage,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 4096;
/// Batches a pipelined caller keeps in flight.
const IN_FLIGHT: usize = 4;
/// Monday 2026-03-02 10:00:00 UTC.
const NOW: i64 = 1_772_445_600;

fn journal(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal");
    group.throughput(Throughput::Elements(BATCH as u64));
    let dir = std::env::temp_dir().join(format!("tollgate-bench-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let storage = FileStorage::open(&dir.join("shard-0-1.journal")).expect("segment");
    let mut journal = Journal::new(Box::new(storage), 0, FsyncPolicy::EveryBatch, 0).expect("journal");
    let payload = vec![0x5au8; 128];
    let mut lsn = 0;
    group.bench_function("group_commit_4096x128B_fsync_per_batch", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                lsn += 1;
                journal.append(lsn, &payload);
            }
            journal.commit().expect("commit");
        })
    });
    group.finish();
    std::fs::remove_dir_all(dir).ok();
}

fn wholesale_plans() -> Plans {
    let mut plans = Plans::new();
    plans.load(&tollgate_benches::example_path("wholesale-international.toml")).expect("plan");
    plans
}

fn create(account: u64) -> [Request; 2] {
    [
        Request {
            key: Some(format!("a{account}")),
            target: Target::Account(account),
            operation: Operation::CreateAccount {
                kind: AccountKind::Postpaid,
                currency: "USD".into(),
                credit_limit: Decimal::new(1_000_000, 0),
                opening_balance: Decimal::ZERO,
            },
        },
        Request {
            key: Some(format!("s{account}")),
            target: Target::Account(account),
            operation: Operation::CreateSubscription {
                subscription: account,
                plan: "wholesale-intl".into(),
                identities: vec![Identity::Msisdn(format!("1555{account:09}"))],
            },
        },
    ]
}

fn debits(accounts: u64, called: &[String], rng: &mut Rng, sequence: &mut u64) -> Vec<(Resolved, Request)> {
    (0..BATCH)
        .map(|i| {
            *sequence += 1;
            let account = 1 + rng.below(accounts);
            let usage = Usage {
                service: ServiceRef::Name("voice".into()),
                rating_group: None,
                destination: Some(called[i % called.len()].as_str().into()),
                start_utc_seconds: NOW - 600,
                units: 1 + rng.below(600),
            };
            let request = Request {
                key: Some(format!("d{sequence}")),
                target: Target::Subscription(account),
                operation: Operation::DirectDebit { usage },
            };
            (Resolved { account, subscription: Some(account) }, request)
        })
        .collect()
}

fn shard(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard");
    group.throughput(Throughput::Elements(BATCH as u64));
    let plans = wholesale_plans();
    let directory = Directory::new();
    let config = ChargingConfig::default();
    let ctx = Context { plans: &plans, directory: &directory, config: &config, decided_at: NOW };
    let accounts = 100_000;
    let mut state = ShardState::new(1 << 20);
    for account in 1..=accounts {
        for request in create(account) {
            decide(&mut state, &ctx, Resolved { account, subscription: None }, &request);
        }
    }
    let called = numbers(&example_prefixes("wholesale-international.toml"), 65_536, 3);
    let mut rng = Rng::new(5);
    let mut sequence = 0;
    group.bench_function("decide_direct_debit_100k_accounts", |b| {
        b.iter_batched(
            || debits(accounts, &called, &mut rng, &mut sequence),
            |batch| {
                for (resolved, request) in &batch {
                    black_box(decide(&mut state, &ctx, *resolved, request));
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    // The bulk path on one shard, without the engine around it: look ahead, rate, charge,
    // remember the key, encode the journal payload.
    let mut journal = ChargesWriter::new();
    let (mut renewals, mut refusals) = (Vec::new(), Vec::new());
    // With the ledger's detail in the journal payload, then without it (what itemising
    // costs).
    let plain = ChargingConfig { itemise: false, ..ChargingConfig::default() };
    for (name, config) in [("charge_record_100k_accounts", &config), ("charge_record_100k_accounts_no_detail", &plain)]
    {
        let ctx = Context { config, ..ctx };
        group.bench_function(name, |b| {
            b.iter_batched(
                || records(accounts, &called, &mut rng, &mut sequence),
                |batch| {
                    journal.begin(NOW);
                    let positions: Vec<usize> = (0..batch.len()).collect();
                    for (at, record) in batch.iter().enumerate() {
                        state.prepare(&batch, &positions, at);
                        black_box(charge_record(&mut state, &ctx, record, &mut renewals, &mut refusals, &mut journal));
                    }
                    black_box(journal.finish());
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// The same debits as rated records, the shape mediation sends.
fn records(accounts: u64, called: &[String], rng: &mut Rng, sequence: &mut u64) -> Vec<RecordCharge> {
    debits(accounts, called, rng, sequence)
        .into_iter()
        .map(|(resolved, request)| {
            let Operation::DirectDebit { usage } = request.operation else { unreachable!() };
            let key = RecordKey::of(request.key.as_deref().unwrap_or_default());
            RecordCharge {
                identity: Some(Identity::Msisdn(format!("1555{:09}", resolved.account))),
                key,
                origin: 0,
                account: resolved.account,
                subscription: resolved.account,
                usage,
            }
        })
        .collect()
}

fn engine(c: &mut Criterion) {
    engine_with(c, "engine", true);
}

/// The same engine with no rated-event ledger (no detail journaled, no ledger thread):
/// `engine` against `engine_no_ledger` is what the ledger costs, measured in one run.
fn engine_no_ledger(c: &mut Criterion) {
    engine_with(c, "engine_no_ledger", false);
}

fn engine_with(c: &mut Criterion, name: &str, ledger: bool) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let accounts: u64 = std::env::var("TOLLGATE_BENCH_ACCOUNTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("tollgate-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = EngineConfig::new(&dir);
    config.snapshot_every_records = u64::MAX;
    config.ledger = ledger;
    config.charging.itemise = ledger;
    if std::env::var_os("TOLLGATE_BENCH_NO_SYNC").is_some() {
        config.fsync = tollgate_engine::FsyncPolicy::Never;
    }
    let engine = Engine::open(config, wholesale_plans(), Arc::new(ManualClock::new(NOW))).expect("engine");
    let mut setup = Vec::with_capacity(20_000);
    for account in 1..=accounts {
        setup.extend(create(account));
        if setup.len() >= 20_000 {
            engine.execute_batch(std::mem::take(&mut setup)).expect("setup");
        }
    }
    engine.execute_batch(setup).expect("setup");
    let called = numbers(&example_prefixes("wholesale-international.toml"), 65_536, 3);
    let mut rng = Rng::new(7);
    let mut sequence = 0;
    group.bench_function("direct_debit_1m_accounts_fsync_per_batch", |b| {
        b.iter_batched(
            || debits(accounts, &called, &mut rng, &mut sequence).into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
            |batch| black_box(engine.execute_batch(batch).expect("answers")),
            criterion::BatchSize::LargeInput,
        )
    });
    // The bulk path mediation uses: the same debits as rated records.
    group.bench_function("charge_records_1m_accounts_fsync_per_batch", |b| {
        b.iter_batched(
            || records(accounts, &called, &mut rng, &mut sequence),
            |batch| black_box(engine.charge_records(batch).expect("answers")),
            criterion::BatchSize::LargeInput,
        )
    });
    // The same, with batches kept in flight as a mediation run keeps them: while one
    // batch's fsync runs, the shards decide the next (pipelined group commit).
    group.bench_function("charge_records_1m_accounts_fsync_per_batch_4_in_flight", |b| {
        b.iter_custom(|iters| {
            let batches: Vec<_> = (0..iters).map(|_| records(accounts, &called, &mut rng, &mut sequence)).collect();
            let start = Instant::now();
            let mut in_flight = VecDeque::with_capacity(IN_FLIGHT);
            for batch in batches {
                if in_flight.len() == IN_FLIGHT {
                    let pending: PendingRecords = in_flight.pop_front().expect("in flight");
                    black_box(pending.wait().expect("answers"));
                }
                in_flight.push_back(engine.submit_records(batch).expect("sent"));
            }
            for pending in in_flight {
                black_box(pending.wait().expect("answers"));
            }
            start.elapsed()
        })
    });
    group.finish();
    drop(engine);
    std::fs::remove_dir_all(dir).ok();
}

criterion_group!(benches, journal, shard, engine, engine_no_ledger);
criterion_main!(benches);

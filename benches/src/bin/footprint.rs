//! Memory per account and restart time, measured on a real data directory.
//!
//! `cargo run --release -p tollgate-benches --bin footprint -- [ACCOUNTS]` (default 1,000,000)

use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;
use tollgate_engine::testing::{Effect, MoneyKind, ShardState};
use tollgate_engine::{AccountKind, Engine, EngineConfig, ManualClock, Operation, Plans, Request, Target};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: i64 = 1_772_445_600;

/// Resident set size of this process, in bytes (Linux).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn account(id: u64) -> tollgate_engine::testing::Account {
    tollgate_engine::testing::Account {
        id,
        kind: AccountKind::Prepaid,
        currency: *b"EUR",
        credit_limit: Decimal::ZERO,
        money: smallvec_one(),
        reserved: Decimal::ZERO,
        units: Vec::new(),
        usage: tollgate_engine::testing::UsageTotals::new(),
        next_bucket: 1,
        cycle_anchor_at: NOW,
    }
}

fn smallvec_one() -> tollgate_engine::testing::MoneyBuckets {
    let mut buckets = tollgate_engine::testing::MoneyBuckets::new();
    buckets.push(tollgate_engine::testing::MoneyBucket {
        id: 0,
        balance: Decimal::ZERO,
        valid_from_at: i64::MIN,
        valid_until_at: i64::MAX,
        priority: u32::MAX,
    });
    buckets
}

fn main() {
    let accounts: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    println!("accounts: {accounts}");

    // 1. Resident bytes per account with one money bucket, in a shard's state.
    let before = resident_bytes();
    let mut state = ShardState::new(1);
    state.accounts.reserve(accounts as usize);
    for id in 1..=accounts {
        state.apply(&Effect::AccountCreated(Box::new(account(id))));
        state.apply(&Effect::Money { account: id, bucket: 0, delta: Decimal::new(1000, 2), kind: MoneyKind::Opening });
    }
    let after = resident_bytes();
    println!(
        "memory: {} bytes resident per account (one money bucket; {} MiB for {accounts})",
        (after - before) / accounts,
        (after - before) >> 20
    );
    drop(state);

    // 2. Restart time: accounts created through the engine, then snapshot, then reopen.
    let dir = std::env::temp_dir().join(format!("tollgate-footprint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let clock = Arc::new(ManualClock::new(NOW));
    let mut config = EngineConfig::new(&dir);
    config.snapshot_every_records = u64::MAX;
    let engine = Engine::open(config.clone(), Plans::new(), clock.clone()).expect("engine");
    let started = Instant::now();
    let mut batch = Vec::with_capacity(50_000);
    for id in 1..=accounts {
        batch.push(Request {
            key: Some(format!("a{id}")),
            target: Target::Account(id),
            operation: Operation::CreateAccount {
                kind: AccountKind::Prepaid,
                currency: "EUR".into(),
                credit_limit: Decimal::ZERO,
                opening_balance: Decimal::new(1000, 2),
            },
        });
        if batch.len() == 50_000 {
            engine.execute_batch(std::mem::take(&mut batch)).expect("create");
        }
    }
    engine.execute_batch(batch).expect("create");
    println!("created {accounts} accounts through the engine in {:.2?}", started.elapsed());
    let started = Instant::now();
    engine.shutdown().expect("shutdown");
    let engine = Engine::open(config.clone(), Plans::new(), clock.clone()).expect("reopen");
    println!(
        "restart from the journal alone: {:.2?} ({} records replayed)",
        started.elapsed(),
        engine.report().shards.iter().map(|s| s.replayed_records).sum::<u64>()
    );
    engine.snapshot().expect("snapshot");
    engine.shutdown().expect("shutdown");
    let started = Instant::now();
    let engine = Engine::open(config, Plans::new(), clock).expect("reopen");
    println!("restart from snapshots: {:.2?} ({} accounts)", started.elapsed(), engine.report().accounts);
    drop(engine);
    std::fs::remove_dir_all(dir).ok();
}

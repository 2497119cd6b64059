//! `tollgate demo`: the main job end to end on a temporary data directory. Loads the
//! example plans, creates subscribers, runs a mixed online/offline workload for a few
//! seconds from several client threads, checks the money invariants, restarts the engine
//! from its journal and checks that the state came back identical.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use rust_decimal::Decimal;
use tollgate_engine::{
    AccountKind, Engine, Identity, Operation, Outcome, Request, ServiceRef, SessionStep, Target, UnitRequest, Usage,
};

use super::engine_setup::EngineArgs;

#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    /// Subscribers to create.
    #[arg(long, default_value_t = 100_000)]
    subscribers: u64,
    /// How long the workload runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Client threads sending requests.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Shards (engine worker threads).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Keep the data directory instead of deleting it.
    #[arg(long)]
    keep: bool,
}

const BATCH: usize = 512;
const DESTINATIONS: [&str; 6] =
    ["491701234567", "4930123456", "4990012345", "33612345678", "12125550100", "491609876543"];

/// Deterministic per-thread generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

fn msisdn(account: u64) -> String {
    format!("49170{account:08}")
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let data_dir = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut engine_args = EngineArgs::with_data_dir(&data_dir);
    engine_args.shards = Some(args.shards);
    println!("Tollgate demo: {} subscribers, {} shards, journal fsync per batch", args.subscribers, args.shards);
    println!("data directory: {}", data_dir.display());
    let engine = engine_args.open()?;
    let now = engine.now();

    let started = Instant::now();
    let opening = provision(&engine, args.subscribers)?;
    println!("setup: {} accounts and subscriptions in {:.2?}", args.subscribers, started.elapsed());

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let tallies: Vec<BTreeMap<(&'static str, String), u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.clients)
            .map(|client| {
                let engine = &engine;
                let subscribers = args.subscribers;
                scope.spawn(move || workload(engine, client, subscribers, now, deadline))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let elapsed = started.elapsed();
    let mut tally: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
    for t in tallies {
        for (key, count) in t {
            *tally.entry(key).or_default() += count;
        }
    }
    let total: u64 = tally.values().sum();
    println!(
        "workload: {total} requests in {elapsed:.2?} from {} clients: {} requests/s",
        args.clients,
        u128::from(total) * 1000 / elapsed.as_millis().max(1)
    );
    let mut kinds: BTreeMap<&str, Vec<(String, u64)>> = BTreeMap::new();
    for ((kind, outcome), count) in &tally {
        kinds.entry(kind).or_default().push((outcome.clone(), *count));
    }
    for (kind, outcomes) in kinds {
        let sum: u64 = outcomes.iter().map(|(_, c)| c).sum();
        let detail: Vec<String> = outcomes.iter().map(|(o, c)| format!("{o} {c}")).collect();
        println!("  {kind:<16} {sum:>10}   ({})", detail.join(", "));
    }

    let violations = engine.check_invariants()?;
    let money = engine.money_totals()?;
    let (open, charged, top_ups, refunds, adjustments, balances) =
        (money.opening, money.charged, money.top_ups, money.refunds, money.adjustments, money.balances);
    let conserved = money.conserved() && open == opening;
    println!(
        "money (EUR): opening {open} + top-ups {top_ups} + refunds {refunds} + adjustments {adjustments} − charged {charged} = {} ; balances {balances} {}",
        open + top_ups + refunds + adjustments - charged,
        if conserved { "✓ conserved" } else { "✗ NOT CONSERVED" }
    );
    println!(
        "invariants: {} (prepaid never negative, postpaid within its credit limit, reserved ≤ spendable, units within grants)",
        if violations.is_empty() { "✓ all hold".to_owned() } else { format!("✗ {} violations", violations.len()) },
    );
    for violation in violations.iter().take(10) {
        println!("    {violation}");
    }

    let before = engine.state_digest()?;
    engine.shutdown()?;
    let started = Instant::now();
    let engine = engine_args.open()?;
    let recovery = started.elapsed();
    let replayed: u64 = engine.report().shards.iter().map(|s| s.replayed_records).sum();
    let identical = engine.state_digest()? == before;
    println!(
        "restart: recovered {} accounts in {recovery:.2?} by replaying {replayed} journal records: state {}",
        engine.report().accounts,
        if identical { "✓ identical" } else { "✗ DIFFERS" }
    );
    engine.shutdown()?;
    if args.keep {
        println!("kept {}", data_dir.display());
    } else {
        std::fs::remove_dir_all(&data_dir).ok();
    }
    Ok(if conserved && violations.is_empty() && identical { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Creates accounts 1..=`subscribers` (7 in 10 prepaid with 20.00, 2 postpaid with a
/// 100.00 limit, 1 hybrid) subscribed to the prepaid example plan as MSISDN `49170NNNNNNNN`.
/// Idempotent: existing ones are left as they are. Returns the opening money created.
pub(crate) fn provision(engine: &Engine, subscribers: u64) -> anyhow::Result<Decimal> {
    let mut requests = Vec::with_capacity(20_000);
    let mut opening = Decimal::ZERO;
    for account in 1..=subscribers {
        let (kind, credit_limit, balance) = match account % 10 {
            0..=6 => (AccountKind::Prepaid, Decimal::ZERO, Decimal::new(2000, 2)),
            7 | 8 => (AccountKind::Postpaid, Decimal::new(10000, 2), Decimal::ZERO),
            _ => (AccountKind::Hybrid, Decimal::new(2000, 2), Decimal::new(1000, 2)),
        };
        opening += balance;
        requests.push(Request {
            key: Some(format!("demo:account:{account}")),
            target: Target::Account(account),
            operation: Operation::CreateAccount {
                kind,
                currency: "EUR".into(),
                credit_limit,
                opening_balance: balance,
            },
        });
        requests.push(Request {
            key: Some(format!("demo:subscription:{account}")),
            target: Target::Account(account),
            operation: Operation::CreateSubscription {
                subscription: account,
                plan: "mobile-prepaid-s".into(),
                identities: vec![Identity::Msisdn(msisdn(account))],
            },
        });
        if requests.len() >= 20_000 || account == subscribers {
            let answers = engine.execute_batch(std::mem::take(&mut requests))?;
            if let Some(bad) = answers.iter().find(|a| a.outcome != Outcome::Success) {
                anyhow::bail!("setup failed: {:?}", bad.outcome);
            }
        }
    }
    Ok(opening)
}

fn outcome_name(outcome: &Outcome) -> String {
    match outcome {
        Outcome::RatingFailed(code) => format!("rating_failed:{code}"),
        Outcome::Invalid(_) => "invalid".to_owned(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

fn workload(
    engine: &Engine,
    client: usize,
    subscribers: u64,
    now: i64,
    deadline: Instant,
) -> BTreeMap<(&'static str, String), u64> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1));
    let mut tally = BTreeMap::new();
    let mut sequence = 0u64;
    while Instant::now() < deadline {
        let mut batch = Vec::with_capacity(BATCH);
        let mut kinds = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            sequence += 1;
            let account = 1 + rng.below(subscribers);
            let target = Target::Subscriber(Identity::Msisdn(msisdn(account)));
            let key = |what: &str| Some(format!("demo:{client}:{sequence}:{what}"));
            let dice = rng.below(100);
            if dice < 35 {
                let usage = Usage {
                    service: ServiceRef::Name("sms".into()),
                    rating_group: None,
                    destination: None,
                    start_utc_seconds: now,
                    units: 1,
                };
                batch.push(Request { key: key("sms"), target, operation: Operation::DirectDebit { usage } });
                kinds.push("sms debit");
            } else if dice < 60 {
                let destination = DESTINATIONS[rng.below(DESTINATIONS.len() as u64) as usize];
                let usage = Usage {
                    service: ServiceRef::Name("voice".into()),
                    rating_group: None,
                    destination: Some(destination.into()),
                    start_utc_seconds: now - 600,
                    units: 1 + rng.below(600),
                };
                batch.push(Request { key: key("call"), target, operation: Operation::DirectDebit { usage } });
                kinds.push("voice debit");
            } else if dice < 84 {
                let usage = Usage {
                    service: ServiceRef::RatingGroup(10),
                    rating_group: Some(10),
                    destination: None,
                    start_utc_seconds: now - 300,
                    units: rng.below(20 << 20),
                };
                batch.push(Request { key: key("cdr"), target, operation: Operation::ChargeRecord { usage } });
                kinds.push("data cdr");
            } else if dice < 99 {
                let session = format!("demo;{client};{sequence}");
                let steps = [
                    (SessionStep::Initial, Some(2u64 << 20), None),
                    (SessionStep::Update, Some(2 << 20), Some(1 + rng.below(2 << 20))),
                    (SessionStep::Termination, None, Some(rng.below(2 << 20))),
                ];
                for (n, (step, requested, used)) in steps.into_iter().enumerate() {
                    batch.push(Request {
                        key: Some(format!("{session};{n}")),
                        target: target.clone(),
                        operation: Operation::Session {
                            session: session.clone(),
                            step,
                            units: vec![UnitRequest {
                                rating_group: 30,
                                service: None,
                                requested_units: requested,
                                used_units: used,
                                destination: None,
                            }],
                        },
                    });
                    kinds.push("session ccr");
                }
            } else {
                batch.push(Request {
                    key: key("topup"),
                    target: Target::Account(account),
                    operation: Operation::TopUp {
                        amount: Decimal::new(500, 2),
                        reference: format!("demo-{client}-{sequence}"),
                    },
                });
                kinds.push("top-up");
            }
        }
        match engine.execute_batch(batch) {
            Ok(answers) => {
                for (kind, answer) in kinds.into_iter().zip(answers) {
                    *tally.entry((kind, outcome_name(&answer.outcome))).or_default() += 1;
                }
            }
            Err(err) => {
                eprintln!("client {client}: {err}");
                break;
            }
        }
    }
    tally
}

//! Rating and compiling throughput.
//!
//! `cargo bench -p tollgate-benches --bench rating`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rust_decimal::Decimal;
use tollgate_benches::{example, example_prefixes, numbers, write_generated_plan, Rng};
use tollgate_tariffs::{compile_file, compile_str, rate, AllowanceBalance, CompiledPlan, UsageEvent};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 65_536;
/// 2026-01-05 (a Monday) 00:00Z and one week of seconds after it.
const WEEK_START: i64 = 1_767_571_200;
const WEEK_SECONDS: u64 = 7 * 86_400;

/// Calls to the given numbers at random times of one week, 1–600 s long.
fn voice_events<'a>(called: &'a [String], rng: &mut Rng) -> Vec<UsageEvent<'a>> {
    called
        .iter()
        .map(|number| UsageEvent {
            service: 0,
            rating_group: None,
            destination: Some(number),
            start_utc_seconds: WEEK_START + rng.below(WEEK_SECONDS) as i64,
            units: 1 + rng.below(600),
        })
        .collect()
}

/// Rates every event and sums what was priced (so nothing is optimised away).
fn rate_all(plan: &CompiledPlan, events: &[UsageEvent<'_>], buckets: &[AllowanceBalance]) -> Decimal {
    events.iter().filter_map(|event| rate(plan, event, buckets).ok()).map(|rated| rated.amount).sum()
}

fn rating(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate");
    group.throughput(Throughput::Elements(EVENTS as u64));

    let wholesale = example("wholesale-international.toml");
    let called = numbers(&example_prefixes("wholesale-international.toml"), EVENTS, 7);
    let mut rng = Rng::new(11);
    let events = voice_events(&called, &mut rng);
    group.bench_function("wholesale_50k_prefixes_voice", |b| b.iter(|| black_box(rate_all(&wholesale, &events, &[]))));

    let prepaid = example("prepaid-mobile.toml");
    let minutes = prepaid.allowance_by_name("national-minutes").expect("allowance");
    let buckets = [AllowanceBalance { bucket: 1, allowance: minutes, remaining_units: 90 }];
    let called = numbers(&example_prefixes("prepaid-mobile.toml"), EVENTS, 9);
    let events = voice_events(&called, &mut rng);
    group.bench_function("prepaid_voice_with_allowance", |b| {
        b.iter(|| black_box(rate_all(&prepaid, &events, &buckets)))
    });

    let data = prepaid.service_by_rating_group(10).expect("data service");
    let events: Vec<UsageEvent<'_>> = (0..EVENTS)
        .map(|_| UsageEvent {
            service: data,
            rating_group: Some(10),
            destination: None,
            start_utc_seconds: WEEK_START + rng.below(WEEK_SECONDS) as i64,
            units: rng.below(50 << 20),
        })
        .collect();
    group.bench_function("prepaid_data", |b| b.iter(|| black_box(rate_all(&prepaid, &events, &[]))));
    group.finish();
}

fn compiling(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    let path = tollgate_benches::example_path("wholesale-international.toml");
    let text = std::fs::read_to_string(&path).expect("example");
    let prefixes = example_prefixes("wholesale-international.toml").len() as u64;
    group.throughput(Throughput::Elements(prefixes));
    group.bench_function("wholesale_50k_prefixes_toml", |b| {
        b.iter(|| black_box(compile_str(&text, "wholesale.toml", None).expect("compiles")))
    });

    let dir = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    let (plan_path, inline, prefixes) = write_generated_plan(&dir, 1_000_000, 2_000);
    group.throughput(Throughput::Elements(prefixes.len() as u64));
    group.bench_function("generated_1m_prefixes_csv", |b| {
        b.iter_batched(|| (), |()| black_box(compile_file(&plan_path).expect("compiles")), BatchSize::PerIteration)
    });
    group.bench_function("generated_1m_prefixes_toml", |b| {
        b.iter(|| black_box(compile_str(&inline, "generated.toml", None).expect("compiles")))
    });
    group.finish();
    std::fs::remove_dir_all(dir).ok();
}

criterion_group!(benches, rating, compiling);
criterion_main!(benches);

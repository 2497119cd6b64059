//! End-to-end mediation throughput: a generated usage file rated from the file to its
//! rated outputs (CSV + JSON lines, rejects, checkpoints, all fsynced per batch) through an
//! engine with its journal on (fsync per batch), as `tollgate mediate` runs it.
//!
//!     cargo run --release -p tollgate-benches --bin mediation -- csv 2000000
//!     cargo run --release -p tollgate-benches --bin mediation -- ber 1000000
//!
//! Arguments: format (`csv` or `ber`), records (CSV lines, or BER CDRs of two events
//! each), subscribers (default 100,000). The CSV file mixes voice calls to national and
//! EU numbers, SMS and data on the example prepaid plan; the BER file repeats the PGW-CDR
//! of the pycrate-generated sample with its MSISDN and local sequence number changed per
//! CDR, so every CDR is a different record.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;
use tollgate_benches::Rng;
use tollgate_engine::{
    AccountKind, Engine, EngineConfig, Identity, ManualClock, Operation, Outcome, Plans, Request, Target,
};
use tollgate_mediation::readers::ber::{framing, tlv};
use tollgate_mediation::readers::csv::mapping::Mapping;
use tollgate_mediation::{Format, MediationConfig, Mediator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2026-03-02 12:00 UTC; the generated usage is from 10:00 to 12:00 that day.
const NOW: i64 = 1_772_452_800;

const MAPPING: &str = r#"
time_format = "%Y-%m-%d %H:%M:%S"
[fields]
record_id = { column = "id" }
subscriber = { column = "msisdn" }
service = { column = "service" }
rating_group = { column = "rg" }
destination = { column = "called" }
start = { column = "start" }
units = { column = "units" }
"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let format = args.get(1).map_or("csv", String::as_str);
    let records: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(2_000_000);
    let subscribers: u64 = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("tollgate-mediation-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");

    let started = Instant::now();
    let (input, file_format) = match format {
        "csv" => (write_csv(&dir, records, subscribers), Format::Csv(Mapping::parse(MAPPING).expect("mapping"))),
        "ber" => (write_ber(&dir, records, subscribers), Format::Ber),
        other => panic!("format `{other}`: csv or ber"),
    };
    let size = std::fs::metadata(&input).expect("input").len();
    eprintln!("generated {} ({size} bytes) in {:.1?}", input.display(), started.elapsed());

    let engine = engine(&dir, subscribers, std::env::var_os("TOLLGATE_BENCH_NO_SYNC").is_some());
    let mut config = MediationConfig::new(dir.join("out"), dir.join("state"));
    config.max_age_seconds = 30 * 86_400;
    // For finding where the time goes: TOLLGATE_BENCH_NO_SYNC=1 skips the fsyncs of the
    // outputs and the journal (the published figures keep them).
    let no_sync = std::env::var_os("TOLLGATE_BENCH_NO_SYNC").is_some();
    config.sync = !no_sync;
    let mediator = Mediator::new(&engine, config);
    let started = Instant::now();
    let summary = mediator.process(&input, &file_format, &mut |_| {}).expect("mediation");
    let elapsed = started.elapsed();
    #[allow(clippy::float_arithmetic)]
    let rate = summary.records_in as f64 / elapsed.as_secs_f64();
    println!(
        "{format}: {} records in ({} rated, {} rejected, {} duplicates) from {size} bytes in {:.2?}: {rate:.0} records/s",
        summary.records_in, summary.rated, summary.rejected, summary.duplicates, elapsed
    );
    assert!(summary.balances() && summary.rated == summary.records_in, "{summary:?}");
    if std::env::var_os("TOLLGATE_BENCH_RERATE").is_some() {
        rerate(&dir, &mediator.config().out_dir, &engine);
    }
    engine.shutdown().expect("engine stops");
    std::fs::remove_dir_all(&dir).ok();
}

/// An engine with journal and snapshots in `dir`, fsync per batch, and `subscribers`
/// postpaid accounts on the example prepaid plan (bundles first, then money).
fn engine(dir: &Path, subscribers: u64, no_sync: bool) -> Engine {
    let mut plans = Plans::new();
    plans.load(&tollgate_benches::example_path("prepaid-mobile.toml")).expect("plan");
    let clock = Arc::new(ManualClock::new(NOW));
    let mut config = EngineConfig::new(dir.join("data"));
    if no_sync {
        config.fsync = tollgate_engine::FsyncPolicy::Never;
    }
    let engine = Engine::open(config, plans, clock).expect("engine");
    let started = Instant::now();
    for chunk in (1..=subscribers).collect::<Vec<_>>().chunks(10_000) {
        let requests = chunk
            .iter()
            .flat_map(|&n| {
                [
                    Request {
                        key: Some(format!("create-{n}")),
                        target: Target::Account(n),
                        operation: Operation::CreateAccount {
                            kind: AccountKind::Postpaid,
                            currency: "EUR".into(),
                            credit_limit: Decimal::new(1_000_000_000, 0),
                            opening_balance: Decimal::ZERO,
                        },
                    },
                    Request {
                        key: Some(format!("subscribe-{n}")),
                        target: Target::Account(n),
                        operation: Operation::CreateSubscription {
                            subscription: n,
                            plan: "mobile-prepaid-s".into(),
                            identities: vec![Identity::Msisdn(msisdn(n))],
                        },
                    },
                ]
            })
            .collect();
        let answers = engine.execute_batch(requests).expect("engine answers");
        assert!(answers.iter().all(|a| a.outcome == Outcome::Success), "setup failed");
    }
    eprintln!("{subscribers} subscribers created in {:.1?}", started.elapsed());
    engine
}

fn msisdn(n: u64) -> String {
    format!("4917{n:08}")
}

fn write_csv(dir: &Path, records: u64, subscribers: u64) -> std::path::PathBuf {
    let path = dir.join("usage.csv");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).expect("csv file"));
    out.write_all(b"id,msisdn,called,service,rg,start,units\n").expect("write");
    let called = ["4915112345678", "4930123456", "4989765432", "33612345678", "4917012345678"];
    let mut rng = Rng::new(7);
    let mut line = String::with_capacity(128);
    for n in 0..records {
        line.clear();
        let who = 1 + rng.below(subscribers);
        let second = rng.below(7_200) as i64;
        let start = jiff::Timestamp::from_second(NOW - 7_200 + second).expect("time");
        let start = start.strftime("%Y-%m-%d %H:%M:%S");
        let _ = match n % 10 {
            0..=6 => {
                let to = called[rng.below(called.len() as u64) as usize];
                writeln!(line, "r{n},{},{to},voice,,{start},{}", msisdn(who), 1 + rng.below(900))
            }
            7 | 8 => writeln!(line, "r{n},{},,sms,,{start},1", msisdn(who)),
            _ => writeln!(line, "r{n},{},,data,10,{start},{}", msisdn(who), 1 + rng.below(50 << 20)),
        };
        out.write_all(line.as_bytes()).expect("write");
    }
    out.flush().expect("flush");
    path
}

/// Repeats the sample PGW-CDR `cdrs` times, each with its own MSISDN (one of the
/// subscribers) and local sequence number, inside one TS 32.297 file.
fn write_ber(dir: &Path, cdrs: u64, subscribers: u64) -> std::path::PathBuf {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mediation/tests/data/ber/pgw.cdr");
    let bytes = std::fs::read(sample).expect("sample CDR file");
    let header = framing::file_header(&bytes).expect("sample file header");
    let at = header.header_length as usize;
    let cdr_header = framing::cdr_header(&bytes[at..]).expect("sample CDR header");
    let start = at + cdr_header.header_bytes;
    let template = &bytes[start..start + usize::from(cdr_header.cdr_length)];
    let record = tlv::read(template, 0).expect("sample CDR");
    let (mut msisdn_at, mut sequence_at) = (None, None);
    for field in tlv::children(&record) {
        let field = field.expect("sample field");
        match (field.tag, field.value.len()) {
            (22, 7) => msisdn_at = Some(field.value_offset + 3), // `91`, `94 71`, then 4 octets
            (20, 2) => sequence_at = Some(field.value_offset),
            _ => {}
        }
    }
    let (msisdn_at, sequence_at) = (msisdn_at.expect("servedMSISDN"), sequence_at.expect("localSequenceNumber"));
    assert!(cdrs / subscribers < 65_536, "too few subscribers for distinct sequence numbers");

    let path = dir.join("usage.cdr");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).expect("cdr file"));
    let mut file_header = bytes[..at].to_vec();
    let each = cdr_header.header_bytes + template.len();
    let length = u32::try_from(at as u64 + cdrs * each as u64).expect("file under 4 GiB");
    file_header[0..4].copy_from_slice(&length.to_be_bytes());
    file_header[18..22].copy_from_slice(&u32::try_from(cdrs).expect("CDR count").to_be_bytes());
    out.write_all(&file_header).expect("write");
    let mut cdr = bytes[at..start + template.len()].to_vec();
    let body = cdr_header.header_bytes;
    for n in 0..cdrs {
        let who = 1 + n % subscribers;
        // The last eight digits of 4917xxxxxxxx in TBCD: two digits per octet, low nibble first.
        let digits = format!("{who:08}").into_bytes();
        for (i, pair) in digits.chunks(2).enumerate() {
            cdr[body + msisdn_at + i] = (pair[0] - b'0') | ((pair[1] - b'0') << 4);
        }
        let sequence = u16::try_from(n / subscribers).expect("sequence");
        cdr[body + sequence_at..body + sequence_at + 2].copy_from_slice(&sequence.to_be_bytes());
        out.write_all(&cdr).expect("write");
    }
    out.flush().expect("flush");
    path
}

/// With `TOLLGATE_BENCH_RERATE=1`: rerates every event just rated (the same plan, so each
/// comes back unchanged: the cost of reading the rated file and asking the engine).
fn rerate(dir: &Path, rated: &Path, engine: &Engine) {
    let config = tollgate_mediation::RerateConfig {
        rated_dir: rated.to_owned(),
        audit_dir: dir.join("rerate"),
        from_at: NOW - 86_400,
        to_at: NOW + 1,
        account: None,
        batch_records: 16_384,
        sync: true,
    };
    let started = Instant::now();
    let summary = tollgate_mediation::rerate(engine, &config, "bench", &mut |_| {}).expect("rerate");
    let elapsed = started.elapsed();
    #[allow(clippy::float_arithmetic)]
    let rate = summary.selected as f64 / elapsed.as_secs_f64();
    println!(
        "rerate: {} events ({} unchanged) in {elapsed:.2?}: {rate:.0} events/s",
        summary.selected, summary.unchanged
    );
}

//! A real engine with two prepaid subscribers, a scratch folder, and readers of the outputs.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rust_decimal::Decimal;
use tollgate_engine::{
    AccountKind, Body, Engine, EngineConfig, Identity, ManualClock, Operation, Plans, Request, Target,
};
use tollgate_mediation::readers::csv::mapping::Mapping;
use tollgate_mediation::{Format, MediationConfig, MediationError, Mediator, Outputs, Summary};

/// The column mapping of the test CSV files.
pub const MAPPING: &str = r#"
delimiter = ","
header = true
time_format = "%Y-%m-%d %H:%M:%S"
units_divisor = 1000

[fields]
record_id = { column = "id" }
subscriber = { column = "a_number" }
service = { column = "service" }
destination = { column = "b_number" }
start = { column = "start" }
units = { column = "duration_ms" }
"#;

/// CSV with [`MAPPING`].
pub fn format() -> Format {
    Format::Csv(Mapping::parse(MAPPING).expect("mapping"))
}

pub const HEADER: &str = "id,a_number,b_number,service,start,duration_ms\n";

/// Monday 2026-03-02 12:00:00 UTC: the sample records are from that morning.
pub const NOW: i64 = 1_772_452_800;

pub fn d(text: &str) -> Decimal {
    text.parse().expect("decimal")
}

pub struct Harness {
    pub engine: Engine,
    pub dir: PathBuf,
    pub config: MediationConfig,
    shards: usize,
    clock: Arc<ManualClock>,
    _cleanup: DirGuard,
}

/// Removes the scratch folder when the harness is gone.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The example prepaid plan the subscribers are on.
pub fn plans() -> Plans {
    let mut plans = Plans::new();
    plans.load(&examples().join("prepaid-mobile.toml")).expect("plan");
    plans
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tariffs/examples")
}

/// [`plans`] and a tariff fix: version 4 of the plan, the same from the same date but for
/// `from` → `to` replaced in its text.
pub fn plans_with_fix(from: &str, to: &str) -> Plans {
    let mut plans = plans();
    let text = std::fs::read_to_string(examples().join("prepaid-mobile.toml")).expect("plan");
    assert!(text.contains("version = 3") && text.contains(from), "the example plan changed");
    let fixed = text.replace("version = 3", "version = 4").replace(from, to);
    plans.insert(tollgate_tariffs::compile_str(&fixed, "fix.toml", None).expect("fix compiles")).expect("v4");
    plans
}

impl Harness {
    pub fn new(name: &str) -> Harness {
        Harness::with_batch(name, 16_384)
    }

    pub fn with_batch(name: &str, batch: usize) -> Harness {
        Harness::with_shards(name, batch, EngineConfig::new("").shards)
    }

    /// An engine of `shards` shards: account 1 is on shard 1 % shards, account 2 on
    /// 2 % shards (one shard, or two different ones).
    pub fn with_shards(name: &str, batch: usize, shards: usize) -> Harness {
        let dir = std::env::temp_dir().join(format!("tollgate-mediation-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        // Subscribers exist from 08:00; the files are mediated at noon.
        let clock = Arc::new(ManualClock::new(NOW - 4 * 3600));
        let engine = Engine::open(engine_config(&dir, shards), plans(), clock.clone()).expect("engine");
        let run = |key: String, target, operation| {
            let answer = engine.execute(Request { key: Some(key), target, operation }).expect("engine answers");
            assert_eq!(answer.outcome, tollgate_engine::Outcome::Success, "{answer:?}");
        };
        for n in 1..=2u64 {
            run(
                format!("create-{n}"),
                Target::Account(n),
                Operation::CreateAccount {
                    kind: AccountKind::Prepaid,
                    currency: "EUR".into(),
                    credit_limit: Decimal::ZERO,
                    opening_balance: d("10.00"),
                },
            );
            run(
                format!("subscribe-{n}"),
                Target::Account(n),
                Operation::CreateSubscription {
                    subscription: n * 10,
                    plan: "mobile-prepaid-s".into(),
                    identities: vec![
                        Identity::Msisdn(format!("49170000000{n}")),
                        Identity::Imsi(format!("26201000000000{n}")),
                    ],
                },
            );
        }
        clock.set(NOW);
        let mut config = MediationConfig::new(dir.join("out"), dir.join("state"));
        config.batch_records = batch;
        Harness { engine, dir: dir.clone(), config, shards, clock, _cleanup: DirGuard(dir) }
    }

    /// Stops the engine and opens it again on its data with `plans` (a tariff fix).
    pub fn reopen_with(self, plans: Plans) -> Harness {
        let Harness { engine, dir, config, shards, clock, _cleanup } = self;
        engine.shutdown().expect("engine stops");
        let engine = Engine::open(engine_config(&dir, shards), plans, clock.clone()).expect("engine");
        Harness { engine, dir, config, shards, clock, _cleanup }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        self.write_bytes(name, text.as_bytes())
    }

    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).expect("input file");
        path
    }

    pub fn try_process(&self, file: &Path, format: &Format) -> Result<Summary, MediationError> {
        Mediator::new(&self.engine, self.config.clone()).process(file, format, &mut |_| {})
    }

    pub fn process(&self, file: &Path, format: &Format) -> Summary {
        let summary = self.try_process(file, format).expect("file processed");
        assert!(summary.balances(), "{summary:?}");
        summary
    }

    /// Runs `batches` batches, then stops the way a crash would right after the engine
    /// charged the next batch (before its outputs are synced and its checkpoint written).
    pub fn process_batches_then_crash(&self, file: &Path, format: &Format, batches: usize) {
        assert!(self.try_process_batches_then_crash(file, format, batches), "the file has more batches");
    }

    /// As [`Harness::process_batches_then_crash`]; false when the file has no more than
    /// `batches` batches, so the run finished instead.
    pub fn try_process_batches_then_crash(&self, file: &Path, format: &Format, batches: usize) -> bool {
        let mut config = self.config.clone();
        config.crash_after_charging_batch = Some(batches as u64 + 1);
        match Mediator::new(&self.engine, config).process(file, format, &mut |_| {}) {
            Err(MediationError::Interrupted(_)) => true,
            Ok(summary) => {
                assert!(summary.complete && summary.balances(), "{summary:?}");
                false
            }
            Err(err) => panic!("{err}"),
        }
    }

    /// Every output of `file`, byte for byte: rated CSV, rated JSON lines, rejects and
    /// summary, with the summary's count of resumptions (the one thing a resumed run is
    /// meant to tell apart) set to 0.
    pub fn output_bytes(&self, file: &Path) -> OutputBytes {
        let outputs = Outputs::of(&self.config, file);
        let read = |p: &Path| std::fs::read(p).expect("output");
        let mut summary = String::from_utf8(read(&outputs.summary)).expect("summary text");
        let resumed = ["\"resumed\": 0", "\"resumed\": 1"].into_iter().find(|r| summary.contains(r));
        summary = summary.replace(resumed.expect("a summary says how often it was resumed"), "\"resumed\": 0");
        vec![
            ("rated.csv".to_owned(), read(&outputs.rated_csv)),
            ("rated.jsonl".to_owned(), read(&outputs.rated_jsonl)),
            ("rejects.csv".to_owned(), read(&outputs.rejects)),
            ("summary.json".to_owned(), summary.into_bytes()),
        ]
    }

    pub fn outputs(&self, file: &Path) -> (String, String, String) {
        let outputs = Outputs::of(&self.config, file);
        let read = |p: &Path| std::fs::read_to_string(p).expect("output");
        (read(&outputs.rated_csv), read(&outputs.rated_jsonl), read(&outputs.rejects))
    }

    pub fn rated_csv(&self, file: &Path) -> Vec<HashMap<String, String>> {
        read_csv(&Outputs::of(&self.config, file).rated_csv)
    }

    pub fn rejects(&self, file: &Path) -> Vec<HashMap<String, String>> {
        read_csv(&Outputs::of(&self.config, file).rejects)
    }

    pub fn balance(&self, account: u64) -> Decimal {
        let answer = self
            .engine
            .execute(Request { key: None, target: Target::Account(account), operation: Operation::BalanceEnquiry })
            .expect("balance");
        match answer.body {
            Body::Balance(view) => view.balance,
            other => panic!("not a balance: {other:?}"),
        }
    }
}

/// The outputs of a file by name (`rated.csv`, …), their bytes.
pub type OutputBytes = Vec<(String, Vec<u8>)>;

fn engine_config(dir: &Path, shards: usize) -> EngineConfig {
    let mut config = EngineConfig::new(dir.join("data"));
    config.shards = shards;
    config
}

fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).expect("csv output");
    let headers = reader.headers().expect("header").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("record");
            headers.iter().zip(r.iter()).map(|(h, v)| (h.to_owned(), v.to_owned())).collect()
        })
        .collect()
}

/// The log events of this test process, captured by a global subscriber (the reader and
/// writer of a run log from threads of their own).
pub mod logs {
    use std::path::Path;
    use std::sync::{Mutex, OnceLock};

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    /// One event: its level, message and other fields, as text.
    #[derive(Debug, Clone)]
    pub struct Logged {
        pub level: tracing::Level,
        pub message: String,
        pub fields: Vec<(String, String)>,
    }

    impl Logged {
        pub fn field(&self, name: &str) -> Option<&str> {
            self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }
    }

    static LOGGED: OnceLock<Mutex<Vec<Logged>>> = OnceLock::new();

    struct Capture;

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut logged = Logged { level: *event.metadata().level(), message: String::new(), fields: Vec::new() };
            event.record(&mut logged);
            if let Some(all) = LOGGED.get() {
                all.lock().unwrap_or_else(|e| e.into_inner()).push(logged);
            }
        }
    }

    impl Visit for Logged {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let text = format!("{value:?}");
            if field.name() == "message" {
                self.message = text;
            } else {
                self.fields.push((field.name().to_owned(), text));
            }
        }
    }

    /// Starts capturing (once per process).
    pub fn capture() {
        LOGGED.get_or_init(|| {
            let subscriber = tracing_subscriber::registry().with(Capture);
            tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
            Mutex::new(Vec::new())
        });
    }

    /// The events captured so far whose `file` field names `file`.
    pub fn about(file: &Path) -> Vec<Logged> {
        let name = file.display().to_string();
        let all = LOGGED.get().expect("capturing").lock().unwrap_or_else(|e| e.into_inner());
        all.iter().filter(|l| l.field("file") == Some(name.as_str())).cloned().collect()
    }
}

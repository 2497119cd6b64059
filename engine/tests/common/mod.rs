//! Shared fixtures for the engine tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rust_decimal::Decimal;
use tollgate_engine::{
    AccountKind, Answer, Engine, EngineConfig, Identity, ManualClock, Operation, Plans, Request, ServiceRef,
    SessionStep, Target, UnitRequest, Usage,
};

/// Monday 2026-03-02 10:00:00 UTC (11:00 in Berlin: peak).
pub const MONDAY_10: i64 = 1_772_445_600;

pub fn d(text: &str) -> Decimal {
    text.parse().expect("test decimal")
}

/// The example plans plus version 4 of the prepaid plan, a tariff fix that prices
/// premium voice at `premium_price` per minute from the same date.
pub fn plans_with_premium_fix(premium_price: &str) -> Plans {
    let mut plans = plans();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tariffs/examples/prepaid-mobile.toml");
    let text = std::fs::read_to_string(path).expect("prepaid plan");
    assert!(text.contains("version = 3") && text.contains(r#"price = "1.99""#), "the example plan changed");
    let fixed = text
        .replace("version = 3", "version = 4")
        .replace(r#"price = "1.99""#, &format!("price = \"{premium_price}\""));
    plans
        .insert(tollgate_tariffs::compile_str(&fixed, "prepaid-mobile-fix.toml", None).expect("fix compiles"))
        .expect("v4");
    plans
}

/// The example plans plus `mobile-prepaid-l`: the prepaid plan with premium voice at
/// 0.99 a minute (1.99 in `mobile-prepaid-s`) and video at 0.05 a MB (0.10).
pub fn plans_with_large() -> Plans {
    let mut plans = plans();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tariffs/examples/prepaid-mobile.toml");
    let text = std::fs::read_to_string(path).expect("prepaid plan");
    let large = text
        .replace(r#"id = "mobile-prepaid-s""#, r#"id = "mobile-prepaid-l""#)
        .replace(r#"price = "1.99""#, r#"price = "0.99""#)
        .replace("price = \"0.10\"\nper = 1048576", "price = \"0.05\"\nper = 1048576");
    assert!(large.contains("mobile-prepaid-l") && large.contains(r#"price = "0.05""#), "the example plan changed");
    plans
        .insert(tollgate_tariffs::compile_str(&large, "prepaid-large.toml", None).expect("large compiles"))
        .expect("l");
    plans
}

pub fn plans() -> Plans {
    let mut plans = Plans::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tariffs/examples");
    plans.load(&examples.join("prepaid-mobile.toml")).expect("prepaid plan");
    plans.load(&examples.join("postpaid-business.toml")).expect("business plan");
    plans
}

/// A fresh, empty data directory unique to this test.
pub fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-engine-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    dir
}

pub struct Harness {
    pub engine: Engine,
    pub clock: Arc<ManualClock>,
    pub dir: PathBuf,
    _cleanup: DirGuard,
}

/// Removes the data directory when the last harness using it is gone.
pub struct DirGuard(pub PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Harness {
    pub fn new(name: &str) -> Harness {
        Harness::with_config(name, |_| {})
    }

    pub fn with_config(name: &str, configure: impl FnOnce(&mut EngineConfig)) -> Harness {
        let dir = data_dir(name);
        let guard = DirGuard(dir.clone());
        Harness::open(dir, Arc::new(ManualClock::new(MONDAY_10)), guard, configure)
    }

    /// A harness whose engine has `plans` loaded.
    pub fn with_plans(name: &str, plans: Plans) -> Harness {
        let dir = data_dir(name);
        let guard = DirGuard(dir.clone());
        Harness::open_with(dir, Arc::new(ManualClock::new(MONDAY_10)), guard, |_| {}, plans)
    }

    pub fn open(
        dir: PathBuf,
        clock: Arc<ManualClock>,
        guard: DirGuard,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> Harness {
        Harness::open_with(dir, clock, guard, configure, plans())
    }

    fn open_with(
        dir: PathBuf,
        clock: Arc<ManualClock>,
        guard: DirGuard,
        configure: impl FnOnce(&mut EngineConfig),
        plans: Plans,
    ) -> Harness {
        let mut config = EngineConfig::new(&dir);
        configure(&mut config);
        let engine = Engine::open(config, plans, clock.clone()).expect("engine opens");
        Harness { engine, clock, dir, _cleanup: guard }
    }

    /// Shuts the engine down and opens it again on the same directory with `configure`.
    pub fn restart_configured(self, configure: impl FnOnce(&mut EngineConfig)) -> Harness {
        let Harness { engine, clock, dir, _cleanup } = self;
        engine.shutdown().expect("clean shutdown");
        Harness::open_with(dir, clock, _cleanup, configure, plans())
    }

    /// Shuts the engine down and opens it again on the same directory.
    pub fn restart(self) -> Harness {
        self.restart_with(plans())
    }

    /// Shuts the engine down and opens it again on the same directory with `plans`.
    pub fn restart_with(self, plans: Plans) -> Harness {
        let Harness { engine, clock, dir, _cleanup } = self;
        engine.shutdown().expect("clean shutdown");
        // The shard count the directory records.
        let shards = tollgate_engine::layout::read(&dir).expect("layout").map_or(2, |layout| layout.shards);
        Harness::open_with(dir, clock, _cleanup, |config| config.shards = shards, plans)
    }

    pub fn run(&self, key: &str, target: Target, operation: Operation) -> Answer {
        self.engine
            .execute(Request { key: (!key.is_empty()).then(|| key.to_owned()), target, operation })
            .expect("engine answers")
    }

    /// Creates a prepaid account with `balance` and a subscription to the prepaid plan
    /// for MSISDN `msisdn`.
    pub fn prepaid(&self, account: u64, msisdn: &str, balance: &str) {
        self.account(account, AccountKind::Prepaid, "0", balance);
        self.subscribe(account, account * 10, "mobile-prepaid-s", msisdn);
    }

    pub fn account(&self, account: u64, kind: AccountKind, credit_limit: &str, balance: &str) {
        let answer = self.run(
            &format!("create-{account}"),
            Target::Account(account),
            Operation::CreateAccount {
                kind,
                currency: "EUR".to_owned(),
                credit_limit: d(credit_limit),
                opening_balance: d(balance),
            },
        );
        assert_eq!(answer.outcome, tollgate_engine::Outcome::Success, "{answer:?}");
    }

    pub fn subscribe(&self, account: u64, subscription: u64, plan: &str, msisdn: &str) {
        let answer = self.run(
            &format!("subscribe-{subscription}"),
            Target::Account(account),
            Operation::CreateSubscription {
                subscription,
                plan: plan.to_owned(),
                identities: vec![Identity::Msisdn(msisdn.to_owned())],
            },
        );
        assert_eq!(answer.outcome, tollgate_engine::Outcome::Success, "{answer:?}");
    }

    pub fn balance(&self, account: u64) -> Decimal {
        match self.run("", Target::Account(account), Operation::BalanceEnquiry).body {
            tollgate_engine::Body::Balance(view) => view.balance,
            other => panic!("not a balance: {other:?}"),
        }
    }
}

pub fn subscriber(msisdn: &str) -> Target {
    Target::Subscriber(Identity::Msisdn(msisdn.to_owned()))
}

pub fn sms(start: i64) -> Usage {
    Usage {
        service: ServiceRef::Name("sms".into()),
        rating_group: None,
        destination: None,
        start_utc_seconds: start,
        units: 1,
    }
}

pub fn call(to: &str, start: i64, seconds: u64) -> Usage {
    Usage {
        service: ServiceRef::Name("voice".into()),
        rating_group: None,
        destination: Some(to.into()),
        start_utc_seconds: start,
        units: seconds,
    }
}

/// A step of data session `session` on rating group 10 asking for 1 MB and reporting `used`.
pub fn data_session(session: &str, step: SessionStep, used: Option<u64>) -> Operation {
    Operation::Session {
        session: session.to_owned(),
        step,
        units: vec![UnitRequest {
            rating_group: 10,
            service: None,
            requested_units: Some(1 << 20),
            used_units: used,
            destination: None,
        }],
    }
}

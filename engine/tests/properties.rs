//! The laws of the charging core under random operation sequences run from several
//! threads at once: money is conserved, a prepaid balance never goes negative, a replayed
//! journal reproduces the state, and a repeated key changes nothing.

mod common;

use common::*;
use proptest::prelude::*;
use tollgate_engine::testing::SnapshotImage;
use tollgate_engine::{
    AccountKind, AllowanceGrant, Operation, Outcome, PlanChangeAt, Request, ServiceRef, SessionStep, Target,
    UnitRequest, Usage,
};

const SUBSCRIBERS: [&str; 4] = ["491700000001", "491700000002", "491700000003", "491700000004"];

#[derive(Debug, Clone)]
enum Op {
    Sms(usize),
    Call(usize, &'static str, u64),
    Record(usize, u64),
    Session(usize, u32, Vec<(u64, u64)>),
    TopUp(usize, u32),
    Refund(usize, u32),
    Adjust(usize, i32),
    Suspend(usize),
    Resume(usize),
    ChangePlan(usize, bool, bool),
    SetLimit(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..SUBSCRIBERS.len();
    prop_oneof![
        who.clone().prop_map(Op::Sms),
        (who.clone(), prop_oneof![Just("4990012345"), Just("491601234"), Just("12125550100")], 1u64..900)
            .prop_map(|(w, to, s)| Op::Call(w, to, s)),
        (who.clone(), 1u64..(50 << 20)).prop_map(|(w, bytes)| Op::Record(w, bytes)),
        (who.clone(), 0u32..3, proptest::collection::vec((0u64..(8 << 20), 0u64..(8 << 20)), 1..4))
            .prop_map(|(w, s, steps)| Op::Session(w, s, steps)),
        (who.clone(), 1u32..2000).prop_map(|(w, cents)| Op::TopUp(w, cents)),
        (who.clone(), 1u32..500).prop_map(|(w, cents)| Op::Refund(w, cents)),
        (who.clone(), -3000i32..3000).prop_map(|(w, cents)| Op::Adjust(w, cents)),
        who.clone().prop_map(Op::Suspend),
        who.clone().prop_map(Op::Resume),
        (who, any::<bool>(), any::<bool>()).prop_map(|(w, now, full)| Op::ChangePlan(w, now, full)),
        (0u32..4000).prop_map(Op::SetLimit),
    ]
}

fn cents(value: i64) -> rust_decimal::Decimal {
    rust_decimal::Decimal::new(value, 2)
}

/// The requests an op stands for (a session is several, in order).
fn requests(thread: usize, index: usize, op: &Op) -> Vec<Request> {
    let key = |suffix: &str| Some(format!("t{thread}-{index}-{suffix}"));
    let sub = |w: usize| Target::Subscriber(tollgate_engine::Identity::Msisdn(SUBSCRIBERS[w].to_owned()));
    let account = |w: usize| Target::Account(w as u64 + 1);
    match op {
        Op::Sms(w) => vec![Request {
            key: key("sms"),
            target: sub(*w),
            operation: Operation::DirectDebit { usage: sms(MONDAY_10) },
        }],
        Op::Call(w, to, seconds) => vec![Request {
            key: key("call"),
            target: sub(*w),
            operation: Operation::DirectDebit { usage: call(to, MONDAY_10, *seconds) },
        }],
        Op::Record(w, bytes) => vec![Request {
            key: key("cdr"),
            target: sub(*w),
            operation: Operation::ChargeRecord {
                usage: Usage {
                    service: ServiceRef::RatingGroup(10),
                    rating_group: Some(10),
                    destination: None,
                    start_utc_seconds: MONDAY_10,
                    units: *bytes,
                },
            },
        }],
        Op::Session(w, session, steps) => {
            let name = format!("s{thread}-{index}-{session}");
            let last = steps.len() - 1;
            steps
                .iter()
                .enumerate()
                .map(|(n, (requested, used))| {
                    let step = match n {
                        0 => SessionStep::Initial,
                        n if n == last => SessionStep::Termination,
                        _ => SessionStep::Update,
                    };
                    Request {
                        key: key(&format!("{name}-{n}")),
                        target: sub(*w),
                        operation: Operation::Session {
                            session: name.clone(),
                            step,
                            units: vec![UnitRequest {
                                rating_group: 30,
                                service: None,
                                requested_units: Some(*requested),
                                used_units: (n > 0).then_some(*used),
                                destination: None,
                            }],
                        },
                    }
                })
                .collect()
        }
        Op::TopUp(w, c) => vec![Request {
            key: key("topup"),
            target: account(*w),
            operation: Operation::TopUp { amount: cents(i64::from(*c)), reference: "prop".into() },
        }],
        Op::Refund(w, c) => vec![Request {
            key: key("refund"),
            target: account(*w),
            operation: Operation::Refund { amount: cents(i64::from(*c)), reason: "prop".into() },
        }],
        Op::Adjust(w, c) => vec![Request {
            key: key("adjust"),
            target: account(*w),
            operation: Operation::Adjust { amount: cents(i64::from(*c)), reason: "prop".into() },
        }],
        Op::Suspend(w) => vec![Request {
            key: key("suspend"),
            target: sub(*w),
            operation: Operation::Suspend { reason: "prop".into() },
        }],
        Op::Resume(w) => vec![Request { key: key("resume"), target: sub(*w), operation: Operation::Resume }],
        Op::ChangePlan(w, now, full) => vec![Request {
            key: key("plan"),
            target: sub(*w),
            operation: Operation::ChangePlan {
                plan: if (thread + index).is_multiple_of(2) { "mobile-prepaid-l" } else { "mobile-prepaid-s" }.into(),
                when: if *now { PlanChangeAt::Now } else { PlanChangeAt::NextCycle },
                allowances: if *full { AllowanceGrant::Full } else { AllowanceGrant::ProRata },
            },
        }],
        Op::SetLimit(c) => vec![Request {
            key: key("limit"),
            target: account(2),
            operation: Operation::SetCreditLimit { credit_limit: cents(i64::from(*c)) },
        }],
    }
}

fn images(h: &Harness) -> Vec<SnapshotImage> {
    h.engine.inspect(SnapshotImage::of).expect("inspect")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn laws_hold_under_concurrent_random_operations(
        threads in proptest::collection::vec(proptest::collection::vec(op(), 1..40), 3),
    ) {
        let h = Harness::with_plans("props", plans_with_large());
        h.account(1, AccountKind::Prepaid, "0", "5.00");
        h.account(2, AccountKind::Prepaid, "0", "0");
        h.account(3, AccountKind::Postpaid, "20.00", "0");
        h.account(4, AccountKind::Hybrid, "3.00", "2.00");
        for (w, msisdn) in SUBSCRIBERS.iter().enumerate() {
            h.subscribe(w as u64 + 1, w as u64 + 100, "mobile-prepaid-s", msisdn);
        }
        let all: Vec<Vec<Request>> = threads
            .iter()
            .enumerate()
            .map(|(t, ops)| ops.iter().enumerate().flat_map(|(i, op)| requests(t, i, op)).collect())
            .collect();
        let answers: Vec<Vec<tollgate_engine::Answer>> = std::thread::scope(|scope| {
            let handles: Vec<_> = all
                .iter()
                .map(|requests| {
                    let engine = &h.engine;
                    scope.spawn(move || requests.iter().map(|r| engine.execute(r.clone()).expect("answer")).collect())
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().expect("thread")).collect()
        });
        prop_assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
        // Only a plan change to the plan in force or a limit below what is owed is refused
        // as invalid.
        for (requests, answers) in all.iter().zip(&answers) {
            for (request, answer) in requests.iter().zip(answers) {
                let may_refuse =
                    matches!(request.operation, Operation::ChangePlan { .. } | Operation::SetCreditLimit { .. });
                prop_assert!(may_refuse || !matches!(answer.outcome, Outcome::Invalid(_)), "{:?}", answer);
            }
        }

        // Every key again: the stored answers come back and nothing changes.
        let before = images(&h);
        for (requests, answers) in all.iter().zip(&answers) {
            for (request, first) in requests.iter().zip(answers) {
                let again = h.engine.execute(request.clone()).expect("answer");
                prop_assert!(again.repeated);
                prop_assert_eq!(&again.body, &first.body);
            }
        }
        prop_assert_eq!(images(&h), before.clone());

        // The ledger's entries add up to each account's balance.
        h.engine.sync_ledger().expect("ledger");
        let totals = tollgate_engine::ledger::totals(&h.dir, 2, 0, i64::MAX).expect("ledger totals");
        for account in 1..=4 {
            let ledger = totals.get(&account).map(|t| t.amount).unwrap_or_default();
            prop_assert_eq!(ledger, h.balance(account), "account {}", account);
        }

        // The journal replays to the same state.
        let h = h.restart_with(plans_with_large());
        prop_assert_eq!(images(&h), before);
        prop_assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
    }
}

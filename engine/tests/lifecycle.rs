//! The operations an order needs after creation: plan changes, suspension, termination,
//! identity changes, credit limits, account kinds, suspending and closing an account, and
//! cycle totals; and the account view a management system reads. Each change is
//! journaled (it survives a restart), idempotent by key, and keeps money conserved.

mod common;

use common::*;
use tollgate_engine::{
    AccountKind, AllowanceGrant, Answer, Body, Identity, Operation, Outcome, PlanChangeAt, RecordCharge, RecordKey,
    RecordOutcome, SessionStep, Target, UnitRequest,
};

const SUB: u64 = 10;

fn harness(name: &str) -> Harness {
    let h = Harness::with_plans(name, plans_with_large());
    h.prepaid(1, "491700000001", "50.00");
    h
}

fn on_sub(h: &Harness, key: &str, operation: Operation) -> Answer {
    h.run(key, Target::Subscription(SUB), operation)
}

fn premium_call(h: &Harness, key: &str, start: i64) -> Answer {
    h.run(key, subscriber("491700000001"), Operation::DirectDebit { usage: call("4990012345", start, 60) })
}

fn amount(answer: &Answer) -> rust_decimal::Decimal {
    match &answer.body {
        Body::Charged(charged) => charged.amount,
        other => panic!("not a charge: {other:?}"),
    }
}

fn video(session: &str, step: SessionStep, requested: Option<u64>, used: Option<u64>) -> Operation {
    Operation::Session {
        session: session.to_owned(),
        step,
        units: vec![UnitRequest {
            rating_group: 30,
            service: None,
            requested_units: requested,
            used_units: used,
            destination: None,
        }],
    }
}

fn grants(answer: &Answer) -> &[tollgate_engine::Grant] {
    match &answer.body {
        Body::Session { grants } => grants,
        other => panic!("not a session answer: {other:?}"),
    }
}

fn totals(h: &Harness, at: Option<i64>) -> tollgate_engine::CycleTotals {
    match h.run("", Target::Account(1), Operation::CycleTotals { at }).body {
        Body::Totals(totals) => *totals,
        other => panic!("not totals: {other:?}"),
    }
}

fn assert_survives_restart(h: Harness) -> Harness {
    let before = h.engine.state_digest().expect("digest");
    let h = h.restart_with(plans_with_large());
    assert_eq!(h.engine.state_digest().expect("digest"), before, "the same state after a restart");
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
    h
}

#[test]
fn a_plan_change_now_prices_usage_by_when_it_happened() {
    let h = harness("plan-now");
    assert_eq!(amount(&premium_call(&h, "c1", MONDAY_10)), d("2.49"));
    // A reservation opened on the old plan.
    let open = h.run("v;0", subscriber("491700000001"), video("v", SessionStep::Initial, Some(1 << 20), None));
    assert_eq!(open.outcome, Outcome::Success);
    h.clock.advance(60);
    let change = Operation::ChangePlan {
        plan: "mobile-prepaid-l".into(),
        when: PlanChangeAt::Now,
        allowances: AllowanceGrant::Full,
    };
    assert_eq!(on_sub(&h, "change-1", change.clone()).outcome, Outcome::Success);
    assert!(on_sub(&h, "change-1", change).repeated, "a repeat changes nothing");
    // After the change: the new price; usage dated before it: the old one.
    assert_eq!(amount(&premium_call(&h, "c2", MONDAY_10 + 120)), d("1.49"));
    assert_eq!(amount(&premium_call(&h, "c3", MONDAY_10 + 10)), d("2.49"));
    // The reservation granted before the change settles on the old plan (0.10 a MB).
    let update = h.run("v;1", subscriber("491700000001"), video("v", SessionStep::Termination, None, Some(1 << 20)));
    assert_eq!(grants(&update)[0].charged, d("0.10"));
    let h = assert_survives_restart(h);
    assert_eq!(amount(&premium_call(&h, "c4", MONDAY_10 + 180)), d("1.49"), "after a restart too");
    let same = Operation::ChangePlan {
        plan: "mobile-prepaid-l".into(),
        when: PlanChangeAt::Now,
        allowances: AllowanceGrant::Full,
    };
    assert!(matches!(on_sub(&h, "change-2", same).outcome, Outcome::Invalid(ref why) if why.contains("already")));
}

#[test]
fn a_plan_change_at_the_next_cycle_waits_for_it_and_grants_its_allowances_then() {
    let h = harness("plan-next");
    let change = Operation::ChangePlan {
        plan: "mobile-prepaid-l".into(),
        when: PlanChangeAt::NextCycle,
        allowances: AllowanceGrant::Full,
    };
    assert_eq!(on_sub(&h, "change-1", change).outcome, Outcome::Success);
    assert_eq!(amount(&premium_call(&h, "c1", MONDAY_10 + 60)), d("2.49"), "still the old plan this cycle");
    let cycle = totals(&h, None);
    let next = cycle.cycle_end_at;
    h.clock.set(next + 3600);
    assert_eq!(amount(&premium_call(&h, "c2", next + 3600)), d("1.49"), "the new plan from the next cycle");
    // The new plan's data bundle is valid from the cycle boundary, in full.
    let now = totals(&h, None);
    let data: Vec<_> = now.allowances.iter().filter(|a| a.allowance == "data-10gb").collect();
    assert!(data.iter().any(|a| a.valid_from_at == next && a.granted == 10 << 30), "{data:?}");
    assert_survives_restart(h);
}

#[test]
fn a_pro_rata_plan_change_grants_the_rest_of_the_cycle() {
    let h = harness("plan-pro-rata");
    let cycle = totals(&h, None);
    // Half way through the cycle.
    let half = cycle.cycle_start_at + (cycle.cycle_end_at - cycle.cycle_start_at) / 2;
    h.clock.set(half);
    let change = Operation::ChangePlan {
        plan: "mobile-prepaid-l".into(),
        when: PlanChangeAt::Now,
        allowances: AllowanceGrant::ProRata,
    };
    assert_eq!(on_sub(&h, "change-1", change).outcome, Outcome::Success);
    let Body::Balance(view) = h.run("", Target::Account(1), Operation::BalanceEnquiry).body else { panic!() };
    let sms: Vec<&tollgate_engine::BucketView> =
        view.buckets.iter().filter(|b| b.kind == "sms-bundle" && b.valid_from_at == half).collect();
    assert_eq!(sms.len(), 1, "{:?}", view.buckets);
    let expected = 1000u64 * (cycle.cycle_end_at - half) as u64 / (cycle.cycle_end_at - cycle.cycle_start_at) as u64;
    assert_eq!(sms[0].remaining, expected.to_string(), "1000 SMS pro rata");
    assert_survives_restart(h);
}

#[test]
fn a_suspended_subscription_is_refused_online_and_its_records_after_the_suspension() {
    let h = harness("suspend");
    let open = h.run("v;0", subscriber("491700000001"), video("v", SessionStep::Initial, Some(1 << 20), None));
    assert_eq!(open.outcome, Outcome::Success);
    h.clock.advance(10);
    let suspended_at = MONDAY_10 + 10;
    assert_eq!(on_sub(&h, "suspend-1", Operation::Suspend { reason: "dunning".into() }).outcome, Outcome::Success);
    let denied = premium_call(&h, "c1", suspended_at + 5);
    assert!(matches!(denied.outcome, Outcome::ServiceDenied(_)), "{denied:?}");
    let denied = h.run("w;0", subscriber("491700000001"), video("w", SessionStep::Initial, Some(1), None));
    assert!(matches!(denied.outcome, Outcome::ServiceDenied(_)), "{denied:?}");
    // Usage on the session opened before is charged; nothing more is granted.
    let update =
        h.run("v;1", subscriber("491700000001"), video("v", SessionStep::Update, Some(1 << 20), Some(1 << 20)));
    let grant = &grants(&update)[0];
    assert_eq!((grant.charged, grant.granted_units), (d("0.10"), 0));
    assert!(matches!(grant.outcome, Outcome::ServiceDenied(_)));
    // Records: refused after the suspension, charged before it.
    let record = |key: &str, start: i64| RecordCharge {
        identity: None,
        key: RecordKey::of(key),
        origin: 1,
        account: 1,
        subscription: SUB,
        usage: call("4990012345", start, 60),
    };
    let answers =
        h.engine.charge_records(vec![record("late", suspended_at + 1), record("early", MONDAY_10)]).expect("records");
    assert_eq!((answers[0].outcome, answers[1].outcome), (RecordOutcome::Suspended, RecordOutcome::Charged));
    let h = assert_survives_restart(h);
    assert_eq!(on_sub(&h, "resume-1", Operation::Resume).outcome, Outcome::Success);
    assert_eq!(premium_call(&h, "c2", suspended_at + 20).outcome, Outcome::Success);
}

#[test]
fn a_terminated_subscription_frees_its_number_and_keeps_its_history() {
    let h = harness("terminate");
    h.run("v;0", subscriber("491700000001"), video("v", SessionStep::Initial, Some(1 << 20), None));
    let Body::Balance(before) = h.run("", Target::Account(1), Operation::BalanceEnquiry).body else { panic!() };
    assert!(before.reserved > d("0"));
    assert_eq!(on_sub(&h, "end-1", Operation::Terminate { reason: "churn".into() }).outcome, Outcome::Success);
    let Body::Balance(after) = h.run("", Target::Account(1), Operation::BalanceEnquiry).body else { panic!() };
    assert_eq!(after.reserved, d("0"), "its reservations are released");
    assert_eq!(premium_call(&h, "c1", MONDAY_10).outcome, Outcome::UnknownSubscriber);
    let late = h.run("v;1", subscriber("491700000001"), video("v", SessionStep::Update, None, Some(1000)));
    assert_eq!(late.outcome, Outcome::UnknownSubscriber);
    // The number can go to another subscription (after quarantine, which is the OSS's).
    h.account(2, AccountKind::Prepaid, "0", "5.00");
    h.subscribe(2, 20, "mobile-prepaid-s", "491700000001");
    assert_eq!(premium_call(&h, "c2", MONDAY_10).outcome, Outcome::Success);
    let h = assert_survives_restart(h);
    assert_eq!(h.balance(2), d("5.00") - d("2.49"), "the number belongs to the new subscription after a restart");
    let history = h.engine.history(1).expect("history");
    assert!(history.iter().any(|e| matches!(e.event, tollgate_engine::history::HistoryEvent::Subscribed { .. })));
}

#[test]
fn identities_are_added_replaced_and_removed_without_touching_balances() {
    let h = harness("identities");
    let imsi = Identity::Imsi("262010000000001".into());
    assert_eq!(on_sub(&h, "id-1", Operation::AddIdentity { identity: imsi.clone() }).outcome, Outcome::Success);
    let by_imsi = h.run("c1", Target::Subscriber(imsi.clone()), Operation::DirectDebit { usage: sms(MONDAY_10) });
    assert_eq!(by_imsi.outcome, Outcome::Success);
    // A SIM swap: the new IMSI replaces the old one.
    let swapped = Identity::Imsi("262010000000002".into());
    let swap = Operation::ReplaceIdentity { old: imsi.clone(), new: swapped.clone() };
    assert_eq!(on_sub(&h, "id-2", swap).outcome, Outcome::Success);
    let old = h.run("c2", Target::Subscriber(imsi.clone()), Operation::DirectDebit { usage: sms(MONDAY_10) });
    assert_eq!(old.outcome, Outcome::UnknownSubscriber);
    let new = h.run("c3", Target::Subscriber(swapped.clone()), Operation::DirectDebit { usage: sms(MONDAY_10) });
    assert_eq!(new.outcome, Outcome::Success);
    // Another subscription cannot take an identity in use.
    h.account(2, AccountKind::Prepaid, "0", "5.00");
    h.subscribe(2, 20, "mobile-prepaid-s", "491700000002");
    let taken = h.run("id-3", Target::Subscription(20), Operation::AddIdentity { identity: swapped.clone() });
    assert_eq!(taken.outcome, Outcome::AlreadyExists);
    assert_eq!(on_sub(&h, "id-4", Operation::RemoveIdentity { identity: swapped }).outcome, Outcome::Success);
    let last = on_sub(&h, "id-5", Operation::RemoveIdentity { identity: Identity::Msisdn("491700000001".into()) });
    assert!(matches!(last.outcome, Outcome::Invalid(ref why) if why.contains("last")), "{last:?}");
    assert_eq!(h.balance(1), d("50.00"), "the SMS came from the bundle");
    assert_survives_restart(h);
}

#[test]
fn credit_limits_and_account_kinds_are_checked_against_what_the_account_owes() {
    let h = Harness::with_plans("credit", plans_with_large());
    h.account(3, AccountKind::Postpaid, "10.00", "0");
    h.subscribe(3, 30, "mobile-prepaid-s", "491700000003");
    for n in 0..3 {
        let call = h.run(
            &format!("c{n}"),
            subscriber("491700000003"),
            Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) },
        );
        assert_eq!(call.outcome, Outcome::Success);
    }
    let owed = d("7.47");
    assert_eq!(h.balance(3), -owed);
    let too_low = h.run("l1", Target::Account(3), Operation::SetCreditLimit { credit_limit: d("7.00") });
    assert!(matches!(too_low.outcome, Outcome::Invalid(ref why) if why.contains("owes 7.47")), "{too_low:?}");
    assert_eq!(
        h.run("l2", Target::Account(3), Operation::SetCreditLimit { credit_limit: d("8.00") }).outcome,
        Outcome::Success
    );
    let prepaid = Operation::ChangeAccountKind { kind: AccountKind::Prepaid, credit_limit: d("0") };
    assert!(matches!(h.run("k1", Target::Account(3), prepaid.clone()).outcome, Outcome::Invalid(_)), "it owes money");
    h.run("t1", Target::Account(3), Operation::TopUp { amount: owed, reference: "paid".into() });
    assert_eq!(h.run("k2", Target::Account(3), prepaid).outcome, Outcome::Success);
    let nonzero = h.run("l3", Target::Account(3), Operation::SetCreditLimit { credit_limit: d("1") });
    assert!(matches!(nonzero.outcome, Outcome::Invalid(ref why) if why.contains("prepaid")));
    let Body::Balance(view) = h.run("", Target::Account(3), Operation::BalanceEnquiry).body else { panic!() };
    assert_eq!((view.kind, view.credit_limit), (AccountKind::Prepaid, d("0")));
    assert_survives_restart(h);
}

#[test]
fn a_suspended_account_refuses_its_subscriptions_usage_until_resumed_and_keeps_it_over_restarts() {
    let h = harness("suspend-account");
    h.subscribe(1, 11, "mobile-prepaid-s", "491700000002");
    let open = h.run("v;0", subscriber("491700000001"), video("v", SessionStep::Initial, Some(1 << 20), None));
    assert_eq!(open.outcome, Outcome::Success);
    h.clock.advance(10);
    let suspended_at = MONDAY_10 + 10;
    let suspend = |h: &Harness, key: &str| {
        h.run(key, Target::Account(1), Operation::SuspendAccount { reason: "billing account suspended".into() })
    };
    assert_eq!(suspend(&h, "sa-1").outcome, Outcome::Success);
    // Every subscription of the account, online and on the bulk path; not before it.
    for (key, number) in [("c1", "491700000001"), ("c2", "491700000002")] {
        let denied =
            h.run(key, subscriber(number), Operation::DirectDebit { usage: call("4990012345", suspended_at + 5, 60) });
        assert!(matches!(denied.outcome, Outcome::ServiceDenied(_)), "{number}: {denied:?}");
    }
    let denied = h.run("w;0", subscriber("491700000002"), video("w", SessionStep::Initial, Some(1), None));
    assert!(matches!(denied.outcome, Outcome::ServiceDenied(_)), "{denied:?}");
    let update = h.run("v;1", subscriber("491700000001"), video("v", SessionStep::Update, Some(1), Some(1 << 20)));
    assert_eq!((grants(&update)[0].charged, grants(&update)[0].granted_units), (d("0.10"), 0), "used is charged");
    let record = |key: &str, start: i64| RecordCharge {
        identity: None,
        key: RecordKey::of(key),
        origin: 1,
        account: 1,
        subscription: 11,
        usage: call("4990012345", start, 60),
    };
    let answers =
        h.engine.charge_records(vec![record("late", suspended_at + 1), record("early", MONDAY_10)]).expect("records");
    assert_eq!((answers[0].outcome, answers[1].outcome), (RecordOutcome::Suspended, RecordOutcome::Charged));
    // Money still moves; a repeated suspension changes nothing.
    let topped = h.run("t1", Target::Account(1), Operation::TopUp { amount: d("5"), reference: "shop".into() });
    assert_eq!(topped.outcome, Outcome::Success);
    let view = h.engine.account_view(1).expect("view").expect("the account");
    assert_eq!((view.suspended_at, view.closed_at), (Some(suspended_at), None));
    let h = assert_survives_restart(h);
    h.clock.advance(10);
    assert_eq!(suspend(&h, "sa-2").outcome, Outcome::Success);
    assert_eq!(h.engine.account_view(1).expect("view").expect("the account").suspended_at, Some(suspended_at));
    // Resumed: usage goes through again; the subscriptions' own suspensions are theirs.
    assert_eq!(h.run("ra-1", Target::Account(1), Operation::ResumeAccount).outcome, Outcome::Success);
    assert_eq!(premium_call(&h, "c3", suspended_at + 30).outcome, Outcome::Success);
    on_sub(&h, "own", Operation::Suspend { reason: "lost phone".into() });
    suspend(&h, "sa-3");
    h.run("ra-2", Target::Account(1), Operation::ResumeAccount);
    assert!(matches!(premium_call(&h, "c4", suspended_at + 40).outcome, Outcome::ServiceDenied(_)));
    let other = h.run(
        "c5",
        subscriber("491700000002"),
        Operation::DirectDebit { usage: call("4990012345", suspended_at + 40, 60) },
    );
    assert_eq!(other.outcome, Outcome::Success);
    let h = assert_survives_restart(h);
    assert_eq!(h.engine.account_view(1).expect("view").expect("the account").suspended_at, None);
}

#[test]
fn the_account_view_names_each_allowance_with_its_subscription_service_and_unit() {
    let h = harness("account-view");
    assert_eq!(h.engine.account_view(99).expect("view"), None);
    let view = h.engine.account_view(1).expect("view").expect("the account");
    assert_eq!((view.balance.balance, view.live_subscriptions.as_slice()), (d("50.00"), &[SUB][..]));
    assert!(!view.allowances.is_empty(), "the plan grants allowances: {view:?}");
    for allowance in &view.allowances {
        assert_eq!(allowance.subscription, SUB);
        assert!(!allowance.name.starts_with("allowance "), "named by the plan: {allowance:?}");
        assert!(["seconds", "bytes", "events", "units"].contains(&allowance.unit.as_str()), "{allowance:?}");
        assert_eq!(allowance.remaining, allowance.granted);
        assert!(allowance.valid_from_s <= MONDAY_10 && MONDAY_10 < allowance.valid_until_s);
    }
    let money: Vec<_> = view.balance.buckets.iter().filter(|bucket| bucket.kind == "money").collect();
    assert_eq!(money.len(), 1);
    on_sub(&h, "end", Operation::Terminate { reason: "moving".into() });
    h.run("close", Target::Account(1), Operation::CloseAccount { settle_reason: Some("refunded".into()) });
    let view = h.engine.account_view(1).expect("view").expect("the account");
    assert_eq!((view.live_subscriptions.len(), view.closed_at, view.balance.balance), (0, Some(MONDAY_10), d("0")));
}

#[test]
fn an_account_closes_only_when_nothing_is_open_and_its_money_is_settled() {
    let h = harness("close");
    let close = |key: &str, reason: Option<&str>| {
        h.run(key, Target::Account(1), Operation::CloseAccount { settle_reason: reason.map(str::to_owned) })
    };
    assert!(matches!(close("x1", None).outcome, Outcome::Invalid(ref why) if why.contains("not terminated")));
    on_sub(&h, "end", Operation::Terminate { reason: "moving".into() });
    assert!(matches!(close("x2", None).outcome, Outcome::Invalid(ref why) if why.contains("holds 50.00")));
    assert_eq!(close("x3", Some("refunded by bank transfer")).outcome, Outcome::Success);
    assert_eq!(h.balance(1), d("0"));
    let after = h.run("t1", Target::Account(1), Operation::TopUp { amount: d("1"), reference: "late".into() });
    assert!(matches!(after.outcome, Outcome::ServiceDenied(_)), "{after:?}");
    let h = assert_survives_restart(h);
    let money = h.engine.money_totals().expect("totals");
    assert!(money.conserved() && money.adjustments == d("-50.00"), "{money:?}");
}

#[test]
fn cycle_totals_sum_money_by_service_and_allowances_by_period() {
    let h = harness("totals");
    for n in 0..3 {
        premium_call(&h, &format!("c{n}"), MONDAY_10 + n);
        h.run(&format!("s{n}"), subscriber("491700000001"), Operation::DirectDebit { usage: sms(MONDAY_10) });
    }
    let now = totals(&h, None);
    let voice = now.services.iter().find(|s| s.service == "voice").expect("voice");
    assert_eq!((voice.events, voice.amount), (3, d("7.47")));
    let sms_bundle = now.allowances.iter().find(|a| a.allowance == "sms-bundle").expect("sms bundle");
    assert_eq!((sms_bundle.granted, sms_bundle.used), (1000, 3));
    // Next cycle: the bundle renews, and the ended period stays in the history.
    h.clock.set(now.cycle_end_at + 60);
    h.run("s9", subscriber("491700000001"), Operation::DirectDebit { usage: sms(now.cycle_end_at + 60) });
    let before = totals(&h, Some(MONDAY_10));
    let ended = before.allowances.iter().find(|a| a.allowance == "sms-bundle").expect("sms bundle then");
    assert_eq!(ended.used, 3, "{:?}", before.allowances);
    let after = totals(&h, None);
    assert!(after.services.iter().all(|s| s.service != "voice"), "no voice this cycle");
    assert_survives_restart(h);
}

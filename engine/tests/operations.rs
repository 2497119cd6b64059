//! The charging operations, end to end through the sharded engine and its journal.

mod common;

use common::*;
use tollgate_engine::{AccountKind, Body, Grant, Operation, Outcome, SessionStep, Target, UnitRequest};

fn charged(body: &Body) -> &tollgate_engine::Charged {
    match body {
        Body::Charged(charged) => charged,
        other => panic!("not a charge: {other:?}"),
    }
}

fn grants(body: &Body) -> &[Grant] {
    match body {
        Body::Session { grants } => grants,
        other => panic!("not a session answer: {other:?}"),
    }
}

#[test]
fn direct_debit_charges_once_and_a_repeated_key_changes_nothing() {
    let h = Harness::new("debit");
    h.prepaid(1, "491700000001", "10.00");
    // The SMS bundle (1000) pays first: nothing charged in money.
    let first = h.run("sms-1", subscriber("491700000001"), Operation::DirectDebit { usage: sms(MONDAY_10) });
    assert_eq!(first.outcome, Outcome::Success);
    assert_eq!(charged(&first.body).allowance_units, 1);
    // A call to a premium number is paid in money.
    let call_answer = h.run(
        "call-1",
        subscriber("491700000001"),
        Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) },
    );
    assert_eq!(charged(&call_answer.body).amount, d("2.49"));
    assert_eq!(h.balance(1), d("7.51"));
    let again = h.run(
        "call-1",
        subscriber("491700000001"),
        Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) },
    );
    assert!(again.repeated);
    assert_eq!((again.outcome, again.body), (call_answer.outcome, call_answer.body));
    assert_eq!(h.balance(1), d("7.51"), "a repeat is not charged again");
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

#[test]
fn insufficient_credit_is_an_answer_that_changes_nothing() {
    let h = Harness::new("insufficient");
    h.prepaid(1, "491700000001", "1.00");
    let answer = h.run(
        "call-1",
        subscriber("491700000001"),
        Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) },
    );
    assert_eq!(answer.outcome, Outcome::CreditLimitReached);
    assert_eq!(h.balance(1), d("1.00"));
}

#[test]
fn postpaid_accounts_stop_at_their_credit_limit() {
    let h = Harness::new("postpaid");
    h.account(2, AccountKind::Postpaid, "5.00", "0");
    h.subscribe(2, 20, "mobile-prepaid-s", "491700000002");
    let first =
        h.run("c1", subscriber("491700000002"), Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) });
    assert_eq!(first.outcome, Outcome::Success);
    assert_eq!(h.balance(2), d("-2.49"));
    let second =
        h.run("c2", subscriber("491700000002"), Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) });
    assert_eq!(second.outcome, Outcome::Success);
    let third =
        h.run("c3", subscriber("491700000002"), Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) });
    assert_eq!(third.outcome, Outcome::CreditLimitReached);
    assert_eq!(h.balance(2), d("-4.98"));
}

#[test]
fn unknown_subscriber_and_rating_failures_are_answers() {
    let h = Harness::new("unknown");
    h.prepaid(1, "491700000001", "1.00");
    let answer = h.run("x", subscriber("499999"), Operation::DirectDebit { usage: sms(MONDAY_10) });
    assert_eq!(answer.outcome, Outcome::UnknownSubscriber);
    let answer = h.run("y", subscriber("491700000001"), Operation::DirectDebit { usage: call("00", MONDAY_10, 60) });
    assert_eq!(answer.outcome, Outcome::RatingFailed("unknown_destination".to_owned()));
    let answer = h.run("", subscriber("491700000001"), Operation::DirectDebit { usage: sms(MONDAY_10) });
    assert!(matches!(answer.outcome, Outcome::Invalid(ref why) if why.contains("idempotency key")), "{answer:?}");
}

fn session(h: &Harness, key: &str, step: SessionStep, units: Vec<UnitRequest>) -> tollgate_engine::Answer {
    h.run(key, subscriber("491700000001"), Operation::Session { session: "gx;1".to_owned(), step, units })
}

fn data(requested: Option<u64>, used: Option<u64>) -> UnitRequest {
    UnitRequest { rating_group: 30, service: None, requested_units: requested, used_units: used, destination: None }
}

#[test]
fn a_session_reserves_commits_and_releases() {
    let h = Harness::new("session");
    h.prepaid(1, "491700000001", "1.00");
    // Video (RG 30) costs 0.10 per MB, per KB: 1.00 buys 10 MB.
    let initial = session(&h, "gx;1;0", SessionStep::Initial, vec![data(Some(4 << 20), None)]);
    assert_eq!(initial.outcome, Outcome::Success);
    assert_eq!(grants(&initial.body)[0].granted_units, 4 << 20);
    let view = h.run("", Target::Account(1), Operation::BalanceEnquiry);
    let Body::Balance(view) = view.body else { panic!("balance") };
    assert_eq!((view.balance, view.reserved, view.available), (d("1.00"), d("0.40"), d("0.60")));
    // Report 3 MB, ask for 8 MB more: only 7 MB are affordable → final unit.
    let update = session(&h, "gx;1;1", SessionStep::Update, vec![data(Some(8 << 20), Some(3 << 20))]);
    let grant = &grants(&update.body)[0];
    assert_eq!((grant.used_units, grant.charged), (3 << 20, d("0.30")));
    assert_eq!(grant.granted_units, 7 << 20);
    assert!(grant.final_unit);
    // Retransmission of the update: same answer, nothing charged twice.
    let again = session(&h, "gx;1;1", SessionStep::Update, vec![data(Some(8 << 20), Some(3 << 20))]);
    assert!(again.repeated);
    assert_eq!(again.body, update.body);
    let terminate = session(&h, "gx;1;2", SessionStep::Termination, vec![data(None, Some(1 << 20))]);
    assert_eq!(grants(&terminate.body)[0].charged, d("0.10"));
    let view = h.run("", Target::Account(1), Operation::BalanceEnquiry);
    let Body::Balance(view) = view.body else { panic!("balance") };
    assert_eq!((view.balance, view.reserved), (d("0.60"), d("0.00")));
    let late = session(&h, "gx;1;3", SessionStep::Update, vec![data(Some(1), None)]);
    assert_eq!(late.outcome, Outcome::UnknownSession);
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

#[test]
fn an_empty_balance_grants_nothing() {
    let h = Harness::new("empty");
    h.prepaid(1, "491700000001", "0");
    let initial = session(&h, "gx;1;0", SessionStep::Initial, vec![data(Some(1 << 20), None)]);
    assert_eq!(initial.outcome, Outcome::CreditLimitReached);
    assert_eq!(grants(&initial.body)[0].granted_units, 0);
}

#[test]
fn the_reaper_releases_silent_sessions() {
    let h = Harness::with_config("reaper", |config| config.reaper_interval = std::time::Duration::from_millis(20));
    h.prepaid(1, "491700000001", "1.00");
    session(&h, "gx;1;0", SessionStep::Initial, vec![data(Some(4 << 20), None)]);
    h.clock.advance(600 + 60 + 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let view = h.run("", Target::Account(1), Operation::BalanceEnquiry);
        let Body::Balance(view) = view.body else { panic!("balance") };
        if view.reserved.is_zero() {
            assert_eq!(view.balance, d("1.00"), "released units return to the balance");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "reservation never released");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn top_up_refund_and_adjustment() {
    let h = Harness::new("money");
    h.prepaid(1, "491700000001", "1.00");
    let top_up =
        h.run("t1", Target::Account(1), Operation::TopUp { amount: d("5.00"), reference: "voucher 1234".into() });
    assert_eq!(top_up.body, Body::Money { balance_after: d("6.00") });
    h.run("r1", Target::Account(1), Operation::Refund { amount: d("0.50"), reason: "dropped call".into() });
    let refused = h.run("a1", Target::Account(1), Operation::Adjust { amount: d("-10"), reason: "fraud".into() });
    assert_eq!(refused.outcome, Outcome::CreditLimitReached, "a prepaid balance never goes negative");
    let no_reason = h.run("a2", Target::Account(1), Operation::Adjust { amount: d("-1"), reason: " ".into() });
    assert!(matches!(no_reason.outcome, Outcome::Invalid(_)));
    h.run("a3", Target::Account(1), Operation::Adjust { amount: d("-1.25"), reason: "goodwill reversal".into() });
    assert_eq!(h.balance(1), d("5.25"));
    let totals = h.engine.inspect(|state| state.totals.clone()).expect("inspect");
    let top_ups: rust_decimal::Decimal = totals.iter().map(|t| t.top_ups).sum();
    assert_eq!(top_ups, d("5.00"));
}

#[test]
fn state_survives_a_restart_and_keys_are_still_remembered() {
    let h = Harness::new("restart");
    h.prepaid(1, "491700000001", "10.00");
    let answer = h.run(
        "call-1",
        subscriber("491700000001"),
        Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) },
    );
    session(&h, "gx;1;0", SessionStep::Initial, vec![data(Some(1 << 20), None)]);
    let before = h.engine.inspect(tollgate_engine::testing::SnapshotImage::of).expect("inspect");
    let h = h.restart();
    let after = h.engine.inspect(tollgate_engine::testing::SnapshotImage::of).expect("inspect");
    assert_eq!(before, after);
    let again = h.run(
        "call-1",
        subscriber("491700000001"),
        Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) },
    );
    assert!(again.repeated);
    assert_eq!(again.body, answer.body);
    // And through a snapshot plus a shorter journal.
    h.engine.snapshot().expect("snapshot");
    h.run("call-2", subscriber("491700000001"), Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) });
    let before = h.engine.inspect(tollgate_engine::testing::SnapshotImage::of).expect("inspect");
    let h = h.restart();
    assert_eq!(h.engine.inspect(tollgate_engine::testing::SnapshotImage::of).expect("inspect"), before);
}

/// Every subscription of a shard points to one copy of its plan's id (the bulk path
/// reads it for every record), live and after recovery from the journal and from a
/// snapshot.
#[test]
fn subscriptions_share_one_copy_of_a_plan_id() {
    fn copies(h: &Harness) -> Vec<usize> {
        let per_shard = h
            .engine
            .inspect(|state| {
                let mut seen: Vec<*const u8> = state.subscriptions.values().map(|s| s.plan.as_ptr()).collect();
                seen.sort_unstable();
                seen.dedup();
                seen.len()
            })
            .expect("inspect");
        per_shard.into_iter().filter(|copies| *copies > 0).collect()
    }
    let h = Harness::new("shared-plan-ids");
    for account in 1..=12u64 {
        h.prepaid(account, &format!("4917000000{account:02}"), "5.00");
    }
    assert!(!copies(&h).is_empty());
    assert!(copies(&h).iter().all(|copies| *copies == 1), "{:?}", copies(&h));
    let h = h.restart();
    assert!(copies(&h).iter().all(|copies| *copies == 1), "after replay: {:?}", copies(&h));
    h.engine.snapshot().expect("snapshot");
    let h = h.restart();
    assert!(copies(&h).iter().all(|copies| *copies == 1), "after a snapshot: {:?}", copies(&h));
}

#[test]
fn allowances_refill_each_cycle() {
    let h = Harness::new("refill");
    h.prepaid(1, "491700000001", "1.00");
    for n in 0..3 {
        h.run(&format!("sms-{n}"), subscriber("491700000001"), Operation::DirectDebit { usage: sms(MONDAY_10) });
    }
    let remaining = |h: &Harness| {
        let Body::Balance(view) = h.run("", Target::Account(1), Operation::BalanceEnquiry).body else { panic!() };
        view.buckets.iter().find(|b| b.kind == "sms-bundle").map(|b| b.remaining.clone()).expect("bundle")
    };
    assert_eq!(remaining(&h), "997");
    h.clock.advance(40 * 86_400);
    let later = MONDAY_10 + 40 * 86_400;
    h.run("sms-later", subscriber("491700000001"), Operation::DirectDebit { usage: sms(later) });
    assert_eq!(remaining(&h), "999", "a new cycle starts full");
}

#[test]
fn a_second_process_cannot_open_the_same_data_dir() {
    let h = Harness::new("lock");
    let err = tollgate_engine::Engine::open(
        tollgate_engine::EngineConfig::new(&h.dir),
        plans(),
        std::sync::Arc::new(tollgate_engine::SystemClock),
    )
    .expect_err("locked");
    assert!(err.to_string().contains("locked"), "{err}");
}

#[test]
fn promotional_credit_is_spent_first_and_only_while_valid() {
    let h = Harness::new("promo");
    h.prepaid(1, "491700000001", "1.00");
    let granted = h.run(
        "promo-1",
        Target::Account(1),
        Operation::GrantCredit {
            amount: d("2.00"),
            valid_from_at: MONDAY_10,
            valid_until_at: MONDAY_10 + 3600,
            priority: 1,
            reference: "welcome bonus".into(),
        },
    );
    assert_eq!(granted.body, Body::Money { balance_after: d("3.00") });
    // 2.49 is paid with the 2.00 bonus first, then 0.49 from the main bucket.
    let paid =
        h.run("c1", subscriber("491700000001"), Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) });
    assert_eq!(paid.outcome, Outcome::Success);
    let Body::Balance(view) = h.run("", Target::Account(1), Operation::BalanceEnquiry).body else { panic!("balance") };
    // Bucket ids are shared with the allowance buckets: the main bucket is 0, the bonus is the next free id.
    let money: Vec<(bool, String)> =
        view.buckets.iter().filter(|b| b.kind == "money").map(|b| (b.id == 0, b.remaining.clone())).collect();
    assert_eq!(money, vec![(true, "0.51".to_owned()), (false, "0.00".to_owned())]);
    // A second bonus that has expired cannot be spent.
    h.run(
        "promo-2",
        Target::Account(1),
        Operation::GrantCredit {
            amount: d("5.00"),
            valid_from_at: MONDAY_10,
            valid_until_at: MONDAY_10 + 60,
            priority: 1,
            reference: "flash".into(),
        },
    );
    h.clock.advance(120);
    let refused = h.run(
        "c2",
        subscriber("491700000001"),
        Operation::DirectDebit { usage: call("4990012345", MONDAY_10 + 120, 60) },
    );
    assert_eq!(refused.outcome, Outcome::CreditLimitReached);
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

#[test]
fn snapshots_archive_old_segments_and_the_audit_trail_keeps_everything() {
    let h = Harness::new("archive");
    h.prepaid(1, "491700000001", "1.00");
    h.run("t1", Target::Account(1), Operation::TopUp { amount: d("2.00"), reference: "before snapshot".into() });
    h.engine.snapshot().expect("snapshot");
    let shard = tollgate_engine::testing::shard_of(1, 2) as u32;
    // An explicit snapshot answers once it is durable (it is written on another thread).
    assert!(tollgate_engine::testing::snapshot_path(&h.dir, shard).exists());
    // A second snapshot with no record since the first keeps the segment it started.
    h.engine.snapshot().expect("snapshot again");
    h.run("t2", Target::Account(1), Operation::TopUp { amount: d("3.00"), reference: "after snapshot".into() });
    let archived = tollgate_engine::testing::segments(
        &tollgate_engine::fs::RealFs::new(),
        &tollgate_engine::testing::archive_dir(&h.dir),
        shard,
    )
    .expect("archive");
    assert!(!archived.is_empty(), "segments covered by the snapshot are archived, not deleted");
    let h = h.restart();
    let history = tollgate_engine::testing::read_history(&h.dir, shard).expect("history");
    let references: Vec<String> = history
        .iter()
        .flat_map(|(_, entry)| entry.effects.iter())
        .filter_map(|effect| match effect {
            tollgate_engine::testing::Effect::Money {
                kind: tollgate_engine::testing::MoneyKind::TopUp { reference },
                ..
            } => Some(reference.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(references, vec!["before snapshot".to_owned(), "after snapshot".to_owned()]);
    let lsns: Vec<u64> = history.iter().map(|(lsn, _)| *lsn).collect();
    assert!(lsns.windows(2).all(|w| w[1] == w[0] + 1), "contiguous: {lsns:?}");
    assert_eq!(h.balance(1), d("6.00"));
}

fn data_on(rating_group: u32, requested: Option<u64>, used: Option<u64>) -> UnitRequest {
    UnitRequest { rating_group, service: None, requested_units: requested, used_units: used, destination: None }
}

fn on_session(
    h: &Harness,
    session: &str,
    key: &str,
    step: SessionStep,
    units: Vec<UnitRequest>,
) -> tollgate_engine::Answer {
    h.run(key, subscriber("491700000001"), Operation::Session { session: session.to_owned(), step, units })
}

/// The example plan's 10 GB data bundle, in bytes.
const FULL_DATA_BUNDLE: u64 = 10 << 30;

/// Data is charged in increments of 10 KB (the example plan's data rate).
fn in_increments(bytes: u64) -> u64 {
    bytes.div_ceil(10_240) * 10_240
}

fn bundle_left(h: &Harness, name: &str) -> String {
    let Body::Balance(view) = h.run("", Target::Account(1), Operation::BalanceEnquiry).body else { panic!("balance") };
    view.buckets.iter().find(|b| b.kind == name).map(|b| b.remaining.clone()).expect("bundle")
}

/// Regression (issue 14, item 1): usage reported on a session id the engine never saw was
/// charged in money, back-dated by its unit count read as seconds, so the data bundle was
/// skipped and large volumes failed to rate.
#[test]
fn usage_on_a_session_the_engine_never_knew_is_refused_and_charges_nothing() {
    let h = Harness::new("unknown-session-usage");
    h.prepaid(1, "491700000001", "10.00");
    for (key, step, used) in [
        ("u1", SessionStep::Update, 1_000_000),
        ("u2", SessionStep::Update, 10_000_000_000),
        ("t1", SessionStep::Termination, 1_000_000),
    ] {
        let answer = on_session(&h, "made-up;1", key, step, vec![data_on(10, None, Some(used))]);
        assert_eq!(answer.outcome, Outcome::UnknownSession, "{key}: {answer:?}");
    }
    let asks_more = on_session(&h, "made-up;2", "u3", SessionStep::Update, vec![data_on(10, Some(1000), None)]);
    assert_eq!(asks_more.outcome, Outcome::UnknownSession, "no grant on an unknown session");
    assert_eq!(h.balance(1), d("10.00"));
    assert_eq!(bundle_left(&h, "data-10gb"), FULL_DATA_BUNDLE.to_string());
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

#[test]
fn usage_after_a_termination_is_refused_and_charges_nothing() {
    let h = Harness::new("terminated-session-usage");
    h.prepaid(1, "491700000001", "10.00");
    let initial = on_session(&h, "s;1", "s;1;0", SessionStep::Initial, vec![data_on(10, Some(1 << 20), None)]);
    assert_eq!(initial.outcome, Outcome::Success);
    let end = on_session(&h, "s;1", "s;1;1", SessionStep::Termination, vec![data_on(10, None, Some(1000))]);
    assert_eq!(end.outcome, Outcome::Success);
    let left = bundle_left(&h, "data-10gb");
    let late = on_session(&h, "s;1", "s;1;2", SessionStep::Update, vec![data_on(10, None, Some(5000))]);
    assert_eq!(late.outcome, Outcome::UnknownSession);
    let late_end = on_session(&h, "s;1", "s;1;3", SessionStep::Termination, vec![data_on(10, None, Some(5000))]);
    assert_eq!(late_end.outcome, Outcome::UnknownSession);
    assert_eq!(bundle_left(&h, "data-10gb"), left);
    assert_eq!(h.balance(1), d("10.00"));
    // A retransmission of the termination still gets its first answer.
    let again = on_session(&h, "s;1", "s;1;1", SessionStep::Termination, vec![data_on(10, None, Some(1000))]);
    assert!(again.repeated);
    assert_eq!(again.outcome, Outcome::Success);
}

/// Usage reported after the reaper released the reservation it was granted under is
/// charged once, dated from the grant (so the bundle valid then pays), while the
/// session's tombstone lasts; after it, the session is unknown.
#[test]
fn usage_reported_after_the_reservation_expired_is_charged_once_from_the_bundle() {
    let h = Harness::with_config("tombstone", |config| {
        config.reaper_interval = std::time::Duration::from_millis(20);
        config.charging.session_tombstone_seconds = 1800;
    });
    h.prepaid(1, "491700000001", "10.00");
    let initial = on_session(&h, "s;2", "s;2;0", SessionStep::Initial, vec![data_on(10, Some(1 << 20), None)]);
    assert_eq!(grants(&initial.body)[0].granted_units, 1 << 20);
    h.clock.advance(600 + 60 + 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.engine.inspect(|state| state.reservations.len()).expect("inspect").iter().sum::<usize>() > 0 {
        assert!(std::time::Instant::now() < deadline, "reservation never released");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // 10 GB reported late: far more than was granted, and far more seconds than have
    // passed since the grant; the bundle pays all of it.
    let late = on_session(&h, "s;2", "s;2;1", SessionStep::Update, vec![data_on(10, Some(0), Some(10_000_000))]);
    assert_eq!(late.outcome, Outcome::Success, "{late:?}");
    let grant = &grants(&late.body)[0];
    assert_eq!((grant.used_units, grant.charged), (10_000_000, d("0")));
    assert_eq!(bundle_left(&h, "data-10gb"), (FULL_DATA_BUNDLE - in_increments(10_000_000)).to_string());
    assert_eq!(h.balance(1), d("10.00"));
    let again = on_session(&h, "s;2", "s;2;1", SessionStep::Update, vec![data_on(10, Some(0), Some(10_000_000))]);
    assert!(again.repeated);
    assert_eq!(
        bundle_left(&h, "data-10gb"),
        (FULL_DATA_BUNDLE - in_increments(10_000_000)).to_string(),
        "charged once"
    );
    // The tombstone survives a restart.
    let h = h.restart();
    h.clock.advance(60);
    let more = on_session(&h, "s;2", "s;2;2", SessionStep::Update, vec![data_on(10, Some(0), Some(1_000_000))]);
    assert_eq!(more.outcome, Outcome::Success);
    assert_eq!(
        bundle_left(&h, "data-10gb"),
        (FULL_DATA_BUNDLE - in_increments(10_000_000) - in_increments(1_000_000)).to_string()
    );
    // Past the tombstone the session is forgotten (the restarted engine has the default
    // tombstone of an hour).
    h.clock.advance(600 + 60 + 3600 + 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.engine.inspect(|state| state.sessions.len()).expect("inspect").iter().sum::<usize>() > 0 {
        assert!(std::time::Instant::now() < deadline, "session never forgotten");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let forgotten = on_session(&h, "s;2", "s;2;3", SessionStep::Update, vec![data_on(10, Some(0), Some(1_000_000))]);
    assert_eq!(forgotten.outcome, Outcome::UnknownSession);
    assert_eq!(
        bundle_left(&h, "data-10gb"),
        (FULL_DATA_BUNDLE - in_increments(10_000_000) - in_increments(1_000_000)).to_string()
    );
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

#[test]
fn a_session_id_belongs_to_the_subscriber_that_opened_it() {
    let h = Harness::new("session-owner");
    h.prepaid(1, "491700000001", "10.00");
    h.prepaid(3, "491700000003", "10.00");
    let initial = on_session(&h, "s;3", "s;3;0", SessionStep::Initial, vec![data_on(30, Some(1 << 20), None)]);
    assert_eq!(initial.outcome, Outcome::Success);
    // Accounts 1 and 3 live on the same shard (two shards): the other subscriber's report
    // on this session id must not settle account 1's reservation.
    let other = h.run(
        "x;1",
        subscriber("491700000003"),
        Operation::Session {
            session: "s;3".to_owned(),
            step: SessionStep::Update,
            units: vec![data_on(30, None, Some(1 << 20))],
        },
    );
    assert_eq!(other.outcome, Outcome::UnknownSession);
    assert_eq!(h.balance(3), d("10.00"));
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

/// A reservation journaled before sessions had records of their own (journal format 4
/// and older, snapshot format 3 and older) makes its session's record when replayed, so
/// the session stays known and its usage is dated from the grant.
#[test]
fn a_reservation_from_before_session_records_rebuilds_its_session() {
    use tollgate_engine::testing::Reservation;
    use tollgate_engine::testing::{Effect, ShardState};
    let mut state = ShardState::new(16);
    state.apply(&Effect::Reserved(Box::new(Reservation {
        session: "old;1".to_owned(),
        rating_group: 10,
        subscription: 10,
        account: 1,
        started_at: MONDAY_10,
        granted_units: 1000,
        money: d("0"),
        bucket_units: Vec::new(),
        expires_at: MONDAY_10 + 660,
        destination: Some("4930123".to_owned()),
    })));
    let record = state.sessions.get("old;1").expect("session record rebuilt");
    assert_eq!((record.account, record.subscription, record.opened_at), (1, 10, MONDAY_10));
    let group = record.group(10).expect("rating group");
    assert_eq!((group.usage_since_at, group.destination.as_deref()), (MONDAY_10, Some("4930123")));
    assert!(record.forget_at > MONDAY_10 + 660, "kept as a tombstone after the reservation expires");
}

/// Regression: a network element that opened sessions and never ended them grew a shard's
/// session records without bound. A subscription has at most
/// `max_sessions_per_subscription`; past it a new session is denied (4010), the open
/// ones go on, and ending one makes room; the count survives a restart.
#[test]
fn a_subscription_s_sessions_are_bounded_and_an_ended_one_makes_room() {
    let h = Harness::with_config("session-cap", |config| config.charging.max_sessions_per_subscription = 3);
    h.prepaid(1, "491700000001", "10.00");
    let step = |h: &Harness, session: &str, key: &str, step: SessionStep| {
        let units = vec![data(Some(1 << 20), None)];
        h.run(key, subscriber("491700000001"), Operation::Session { session: session.to_owned(), step, units })
    };
    for n in 0..3 {
        assert_eq!(step(&h, &format!("gx;{n}"), &format!("i{n}"), SessionStep::Initial).outcome, Outcome::Success);
    }
    let denied = step(&h, "gx;3", "i3", SessionStep::Initial).outcome;
    assert!(matches!(&denied, Outcome::ServiceDenied(why) if why.contains("3 sessions")), "{denied:?}");
    assert_eq!(step(&h, "gx;0", "u0", SessionStep::Update).outcome, Outcome::Success, "an open one goes on");
    assert_eq!(step(&h, "gx;0", "t0", SessionStep::Termination).outcome, Outcome::Success);
    assert_eq!(step(&h, "gx;3", "i3-again", SessionStep::Initial).outcome, Outcome::Success, "room again");
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
    // Rebuilt from the journal (and a snapshot), the count is the same: still full.
    let h = h.restart_configured(|config| config.charging.max_sessions_per_subscription = 3);
    assert!(matches!(step(&h, "gx;4", "i4", SessionStep::Initial).outcome, Outcome::ServiceDenied(_)));
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

/// Regression: a top-up of 7.9 × 10^28 (or two large ones on accounts of one shard)
/// overflowed the shard's totals and stopped the shard with a panic, while readiness
/// still said it served. Amounts and balances are bounded at 10^15: beyond is an invalid
/// answer that changes nothing, and the shard goes on serving.
#[test]
fn money_beyond_the_bound_is_refused_and_the_shard_serves_on() {
    let h = Harness::new("money-bound");
    h.prepaid(1, "491700000001", "10.00");
    h.prepaid(3, "491700000003", "10.00");
    for (key, amount) in [("huge", "79228162514264337593543950335"), ("over", "1000000000000001")] {
        let answer = h.run(key, Target::Account(1), Operation::TopUp { amount: d(amount), reference: key.into() });
        assert!(matches!(&answer.outcome, Outcome::Invalid(text) if text.contains("amount")), "{amount}: {answer:?}");
    }
    let most =
        h.run("most", Target::Account(1), Operation::TopUp { amount: d("999999999999990"), reference: "m".into() });
    assert_eq!(most.outcome, Outcome::Success);
    let past = h.run("past", Target::Account(1), Operation::TopUp { amount: d("20.00"), reference: "p".into() });
    assert!(matches!(&past.outcome, Outcome::Invalid(text) if text.contains("would pass")), "{past:?}");
    let limit = h.run(
        "limit",
        Target::Account(7),
        Operation::CreateAccount {
            kind: AccountKind::Postpaid,
            currency: "EUR".into(),
            credit_limit: d("1000000000000001"),
            opening_balance: d("0"),
        },
    );
    assert!(matches!(limit.outcome, Outcome::Invalid(_)), "{limit:?}");
    // Still serving: another account of the engine is charged as before.
    let call =
        h.run("call", subscriber("491700000003"), Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) });
    assert_eq!(call.outcome, Outcome::Success);
    assert_eq!(h.balance(1), d("1000000000000000.00"));
    assert!(h.engine.health().iter().all(|shard| shard.state == "serving"));
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

/// Regression: a rating group named twice in one request (two MSCCs, two Nchf
/// containers) was granted twice against one reservation: more quota out than money
/// reserved. Refused, and nothing is reserved.
#[test]
fn a_rating_group_named_twice_in_one_request_is_refused() {
    let h = Harness::new("rating-group-twice");
    h.prepaid(1, "491700000001", "10.00");
    let twice = vec![data_on(30, Some(8_000_000), None), data_on(30, Some(8_000_000), None)];
    let answer = on_session(&h, "gy;twice", "twice-i", SessionStep::Initial, twice);
    assert!(matches!(&answer.outcome, Outcome::Invalid(text) if text.contains("rating_group")), "{answer:?}");
    let update = vec![data_on(30, Some(1_000), Some(10)), data_on(30, None, Some(10))];
    let answer = on_session(&h, "gy;twice", "twice-u", SessionStep::Update, update);
    assert!(!matches!(answer.outcome, Outcome::Success), "{answer:?}");
    assert_eq!(h.balance(1), d("10.00"));
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
    // Two rating groups are two reservations, as before.
    let two = vec![data_on(30, Some(1_000), None), data_on(31, Some(1_000), None)];
    let answer = on_session(&h, "gy;two", "two-i", SessionStep::Initial, two);
    assert_eq!(answer.outcome, Outcome::Success, "{answer:?}");
}

/// Regression: a grant paid by a bonus valid 45 s more was granted for the full
/// Validity-Time (600 s); the usage reported after the bonus expired found no money
/// behind it (a prepaid balance below zero available) and went uncharged. A grant lasts
/// no longer than the money and allowances that pay for it.
#[test]
fn a_grant_lasts_no_longer_than_the_bonus_that_pays_for_it() {
    let h = Harness::new("grant-validity");
    h.prepaid(1, "491700000001", "0.00");
    let bonus = Operation::GrantCredit {
        amount: d("5.00"),
        valid_from_at: MONDAY_10 - 10,
        valid_until_at: MONDAY_10 + 45,
        priority: 1,
        reference: "bonus".into(),
    };
    assert_eq!(h.run("bonus", Target::Account(1), bonus).outcome, Outcome::Success);
    let answer = on_session(&h, "gy;bonus", "bonus-i", SessionStep::Initial, vec![data_on(30, Some(1_000), None)]);
    assert_eq!(answer.outcome, Outcome::Success, "{answer:?}");
    let grant = &grants(&answer.body)[0];
    assert!(grant.granted_units > 0, "{grant:?}");
    assert!((1..=45).contains(&grant.validity_seconds), "{grant:?}");
}

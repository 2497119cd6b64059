//! The bulk record path (`Engine::charge_records`): same prices as a direct debit,
//! each key charged once, refusals change nothing, and everything survives restarts.

mod common;

use common::*;
use tollgate_engine::testing::SnapshotImage;
use tollgate_engine::{Body, Operation, RecordAnswer, RecordCharge, RecordKey, RecordOutcome, Request, Target, Usage};

/// A record for `subscription` of the account the harness gives it (`subscription / 10`).
fn record(key: &str, subscription: u64, usage: Usage) -> RecordCharge {
    let account = subscription / 10;
    RecordCharge {
        identity: None,
        key: RecordKey::of(key),
        origin: u64::from(key.len() as u32),
        account,
        subscription,
        usage,
    }
}

fn charge(h: &Harness, records: Vec<RecordCharge>) -> Vec<RecordAnswer> {
    h.engine.charge_records(records).expect("engine answers")
}

fn state(h: &Harness) -> Vec<SnapshotImage> {
    h.engine.inspect(SnapshotImage::of).expect("inspect")
}

#[test]
fn records_cost_what_a_direct_debit_costs_and_a_key_is_charged_once() {
    let h = Harness::new("records-once");
    h.prepaid(1, "491700000001", "10.00");
    h.prepaid(2, "491700000002", "10.00");
    let debit = h.run(
        "debit-1",
        subscriber("491700000002"),
        Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 60) },
    );
    let Body::Charged(debited) = &debit.body else { panic!("{debit:?}") };
    let answers = charge(
        &h,
        vec![
            record("f1:1", 10, call("4990012345", MONDAY_10, 60)),
            record("f1:2", 10, sms(MONDAY_10)),
            record("f1:1", 10, call("4990012345", MONDAY_10, 60)),
        ],
    );
    assert_eq!(answers[0].outcome, RecordOutcome::Charged);
    assert_eq!(answers[0].amount, debited.amount);
    assert_eq!(answers[0].charged_units, debited.charged_units);
    let rated = answers[0].rated.expect("indexes of a charged record");
    let plan = h.engine.plans().by_handle(rated.plan).expect("plan handle");
    assert_eq!(plan.names.services[usize::from(rated.service)].as_ref(), debited.service.as_ref());
    assert_eq!(plan.names.bands[usize::from(rated.band)].as_ref(), debited.band.as_ref());
    assert_eq!(answers[1].allowance_units, 1, "the SMS bundle pays first");
    assert!(answers[2].repeated, "the same key later in the same batch is a repeat");
    assert_eq!(answers[2], RecordAnswer { repeated: true, ..answers[0] }, "a repeat gets the first answer");
    assert_eq!(h.balance(1), h.balance(2), "charged once, like the one direct debit");
    let again = charge(&h, vec![record("f1:1", 10, call("4990012345", MONDAY_10, 60))]);
    assert!(again[0].repeated);
    assert_eq!(h.balance(1), h.balance(2));
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

#[test]
fn refused_records_change_nothing_and_can_be_sent_again() {
    let h = Harness::new("records-refused");
    h.prepaid(1, "491700000001", "1.00");
    h.prepaid(2, "491700000002", "9.00");
    // Subscription 10 belongs to account 1, not to account 2.
    let wrong_account = RecordCharge { identity: None, account: 2, ..record("r:4", 10, sms(MONDAY_10)) };
    let answers = charge(
        &h,
        vec![
            record("r:1", 10, call("4990012345", MONDAY_10, 60)),
            record("r:2", 99, sms(MONDAY_10)),
            record("r:3", 10, call("x-not-a-number", MONDAY_10, 60)),
            wrong_account,
        ],
    );
    assert_eq!(answers[0].outcome, RecordOutcome::CreditLimitReached);
    assert_eq!(answers[1].outcome, RecordOutcome::UnknownSubscriber);
    assert!(matches!(answers[2].outcome, RecordOutcome::RatingFailed(_)), "{:?}", answers[2]);
    assert_eq!(answers[3].outcome, RecordOutcome::UnknownSubscriber, "a record routed by the wrong account");
    assert_eq!((h.balance(1), h.balance(2)), (d("1.00"), d("9.00")));
    h.run("top-up", tollgate_engine::Target::Account(1), Operation::TopUp { amount: d("5"), reference: "t".into() });
    let retried = charge(&h, vec![record("r:1", 10, call("4990012345", MONDAY_10, 60))]);
    assert_eq!(retried[0].outcome, RecordOutcome::Charged);
    assert!(!retried[0].repeated, "a refused key was not remembered");
    assert_eq!(h.balance(1), d("6.00") - retried[0].amount);
}

#[test]
fn charged_records_survive_restarts_from_the_journal_and_from_a_snapshot() {
    let h = Harness::new("records-restart");
    h.prepaid(1, "491700000001", "500.00");
    let batch: Vec<RecordCharge> = (0..40)
        .map(|n| {
            let usage = if n % 3 == 0 { sms(MONDAY_10 + n) } else { call("4990012345", MONDAY_10 + n, 30 + n as u64) };
            record(&format!("j:{n}"), 10, usage)
        })
        .collect();
    let first = charge(&h, batch.clone());
    assert!(first.iter().all(|a| a.outcome == RecordOutcome::Charged), "{first:?}");
    let before = state(&h);
    let h = h.restart();
    assert_eq!(state(&h), before, "the journal's charges records replay to the same state");
    let repeated = charge(&h, batch.clone());
    assert!(repeated.iter().all(|a| a.repeated));
    assert_eq!(
        repeated.iter().map(|a| a.amount).collect::<Vec<_>>(),
        first.iter().map(|a| a.amount).collect::<Vec<_>>()
    );
    h.engine.snapshot().expect("snapshot");
    charge(&h, vec![record("j:after", 10, sms(MONDAY_10))]);
    let before = state(&h);
    let h = h.restart();
    assert_eq!(state(&h), before, "snapshot (with the record window) plus journal");
    assert!(charge(&h, batch)[0].repeated, "the window came back from the snapshot");
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

#[test]
fn a_bucket_renewed_between_records_replays_in_the_same_order() {
    let h = Harness::new("records-renewal");
    h.prepaid(1, "491700000001", "5.00");
    let later = MONDAY_10 + 40 * 86_400;
    // The second record falls in the next cycle: the SMS bundle renews between the two,
    // and the third draws from the renewed bundle.
    charge(
        &h,
        vec![record("n:1", 10, sms(MONDAY_10)), record("n:2", 10, sms(later)), record("n:3", 10, sms(later + 1))],
    );
    let before = state(&h);
    let history_records = tollgate_engine::testing::read_history(&h.dir, 0).expect("history").len()
        + tollgate_engine::testing::read_history(&h.dir, 1).expect("history").len();
    assert!(history_records > 0);
    let h = h.restart();
    assert_eq!(state(&h), before);
}

fn rerate(h: &Harness, record: &str, subscription: u64, usage: Usage) -> tollgate_engine::Answer {
    h.engine
        .execute(tollgate_engine::Request {
            key: None,
            target: tollgate_engine::Target::Subscription(subscription),
            operation: Operation::Rerate { record: record.to_owned(), usage },
        })
        .expect("engine answers")
}

fn rerated(answer: &tollgate_engine::Answer) -> &tollgate_engine::Rerated {
    match &answer.body {
        Body::Rerated(rerated) => rerated,
        _ => panic!("not a rerate: {answer:?}"),
    }
}

/// Sum of the usage totals of `account` (what billing will read).
fn usage_amount(h: &Harness, account: u64) -> rust_decimal::Decimal {
    h.engine
        .inspect(move |state| {
            state
                .accounts
                .get(&account)
                .map(|a| a.usage.iter().map(|u| u.amount).sum::<rust_decimal::Decimal>())
                .unwrap_or_default()
        })
        .expect("inspect")
        .into_iter()
        .sum::<rust_decimal::Decimal>()
}

#[test]
fn a_rerate_refunds_the_old_charge_takes_the_new_one_once_and_survives_restarts() {
    let h = Harness::new("records-rerate");
    h.prepaid(1, "491700000001", "20.00");
    let first = charge(
        &h,
        vec![
            record("p:1", 10, call("4990012345", MONDAY_10, 60)),
            record("p:2", 10, call("4990012345", MONDAY_10 + 600, 120)),
            record("p:3", 10, sms(MONDAY_10)),
        ],
    );
    assert_eq!(first.iter().map(|a| a.amount).collect::<Vec<_>>(), vec![d("2.49"), d("4.48"), d("0")]);
    let before = h.balance(1);
    assert_eq!(usage_amount(&h, 1), d("6.97"));

    // The premium rate was wrong: version 4 of the plan prices it at 0.99 a minute.
    let h = h.restart_with(plans_with_premium_fix("0.99"));
    let answer = rerate(&h, "p:1", 10, call("4990012345", MONDAY_10, 60));
    let fixed = rerated(&answer);
    assert!(fixed.changed);
    assert_eq!((fixed.previous_amount, fixed.charged.amount, fixed.charged.plan_version), (d("2.49"), d("1.49"), 4));
    assert_eq!(h.balance(1), before + d("1.00"), "refunded 2.49, charged 1.49");
    assert_eq!(fixed.charged.balance_after, h.balance(1));
    assert_eq!(usage_amount(&h, 1), d("5.97"), "the usage total follows the new price");

    let again = rerate(&h, "p:1", 10, call("4990012345", MONDAY_10, 60));
    assert!(!rerated(&again).changed, "a second rerate changes nothing");
    assert_eq!(rerated(&again).previous_amount, d("1.49"));
    assert_eq!(h.balance(1), before + d("1.00"));
    let repeat = charge(&h, vec![record("p:1", 10, call("4990012345", MONDAY_10, 60))]);
    assert!(repeat[0].repeated);
    assert_eq!(repeat[0].amount, d("1.49"), "a repeat of the record gets its current charge");
    assert_eq!(rerate(&h, "p:9", 10, sms(MONDAY_10)).outcome, tollgate_engine::Outcome::UnknownRecord);
    let sms_again = rerate(&h, "p:3", 10, sms(MONDAY_10));
    assert!(!rerated(&sms_again).changed, "the bundle paid the SMS; it stays paid");
    assert_eq!(rerated(&sms_again).charged.allowance_units, 1);

    // Restarts replay the rerate; the second record is rerated once across them.
    let before_restart = state(&h);
    let h = h.restart_with(plans_with_premium_fix("0.99"));
    assert_eq!(state(&h), before_restart, "the journal replays the rerate");
    assert!(rerated(&rerate(&h, "p:2", 10, call("4990012345", MONDAY_10 + 600, 120))).changed);
    h.engine.snapshot().expect("snapshot");
    let h = h.restart_with(plans_with_premium_fix("0.99"));
    let p2 = rerate(&h, "p:2", 10, call("4990012345", MONDAY_10 + 600, 120));
    assert!(!rerated(&p2).changed, "the snapshot holds the rerated memo");
    assert_eq!(rerated(&p2).charged.amount, d("2.48"));
    assert_eq!(h.balance(1), before + d("1.00") + d("2.00"));
    assert_eq!(usage_amount(&h, 1), d("3.97"));
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

#[test]
fn a_rerate_the_balance_cannot_pay_changes_nothing() {
    let h = Harness::new("records-rerate-limit");
    h.prepaid(1, "491700000001", "3.00");
    charge(&h, vec![record("q:1", 10, call("4990012345", MONDAY_10, 60))]);
    assert_eq!(h.balance(1), d("0.51"));
    let h = h.restart_with(plans_with_premium_fix("2.99"));
    let answer = rerate(&h, "q:1", 10, call("4990012345", MONDAY_10, 60));
    assert_eq!(answer.outcome, tollgate_engine::Outcome::CreditLimitReached, "3.49 > 0.51 + 2.49");
    assert_eq!(h.balance(1), d("0.51"));
    assert_eq!(charge(&h, vec![record("q:1", 10, call("4990012345", MONDAY_10, 60))])[0].amount, d("2.49"));
    h.run("top-up", tollgate_engine::Target::Account(1), Operation::TopUp { amount: d("1"), reference: "t".into() });
    assert!(rerated(&rerate(&h, "q:1", 10, call("4990012345", MONDAY_10, 60))).changed);
    assert_eq!(h.balance(1), d("0.51") + d("1") - d("1.00"));
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());
}

/// Regression (found by `tests/crash/mediation.rs`
/// `a_refused_record_stays_refused_after_a_kill_when_a_later_record_reuses_its_id`): a
/// record refused and a later record of the same message charging its key (a corrected
/// re-delivery). The refusal was journaled after the message's charges, so a kill between
/// the two records left the charge without the refusal, and the refused record sent again
/// by a resumed run was answered "charged" (a duplicate). Here the journal is cut at every
/// record boundary the message wrote: the refused record sent again is refused each time.
#[test]
fn a_refused_record_stays_refused_at_every_journal_cut_when_a_later_record_charges_its_key() {
    let h = Harness::new("records-refused-cut");
    h.prepaid(1, "491700000001", "9.00");
    let refused = RecordCharge { origin: 1, ..record("c:1", 10, call("x-not-a-number", MONDAY_10, 60)) };
    let later = RecordCharge { origin: 2, ..record("c:1", 10, call("4990012345", MONDAY_10, 60)) };
    let shard = tollgate_engine::testing::shard_of(1, 2) as u32;
    let segment = |dir: &std::path::Path| {
        let segments =
            tollgate_engine::testing::segments(&tollgate_engine::fs::RealFs::new(), dir, shard).expect("list");
        segments.last().expect("the account's shard has a segment").1.clone()
    };
    let written_before = std::fs::metadata(segment(&h.dir)).expect("segment").len() as usize;
    let answers = charge(&h, vec![refused.clone(), later.clone()]);
    assert!(matches!(answers[0].outcome, RecordOutcome::RatingFailed(_)), "{:?}", answers[0]);
    assert_eq!(answers[1].outcome, RecordOutcome::Charged);
    // The journal as the message left it (its answers wait for it to be durable).
    let bytes = std::fs::read(segment(&h.dir)).expect("segment");
    let scan = tollgate_engine::testing::scan(&bytes, shard, None).expect("scan");
    let mut ends = vec![tollgate_engine::testing::SEGMENT_HEADER_BYTES];
    for record in &scan.records {
        let last = *ends.last().expect("ends");
        ends.push(last + tollgate_engine::testing::RECORD_HEADER_BYTES + record.payload.len());
    }
    let cuts: Vec<usize> = ends.into_iter().filter(|end| *end >= written_before).collect();
    assert!(cuts.len() >= 3, "the message wrote its charge and its refusal: {cuts:?}");
    for cut in cuts {
        let dir = data_dir(&format!("records-refused-cut-{cut}"));
        for entry in std::fs::read_dir(&h.dir).expect("data dir") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
            }
        }
        let copy = segment(&dir);
        std::fs::OpenOptions::new().write(true).open(&copy).expect("open").set_len(cut as u64).expect("cut");
        let crashed = Harness::open(dir.clone(), h.clock.clone(), DirGuard(dir), |config| config.shards = 2);
        let again = charge(&crashed, vec![refused.clone(), later.clone()]);
        assert!(matches!(again[0].outcome, RecordOutcome::RatingFailed(_)), "cut at {cut}: {:?}", again[0]);
        assert_eq!(again[1].outcome, RecordOutcome::Charged, "cut at {cut}");
        assert_eq!(again[1].amount, answers[1].amount, "cut at {cut}");
    }
}

/// Holds the one shard of `h` (an inspection waiting) while `queue` sends what it sends,
/// then lets it go.
fn while_held<T>(h: &Harness, queue: impl FnOnce() -> T) -> T {
    use std::sync::{Arc, Barrier};
    let (entered, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    std::thread::scope(|scope| {
        let (inside, go) = (Arc::clone(&entered), Arc::clone(&release));
        let held = scope.spawn(|| {
            h.engine.inspect(move |_| {
                inside.wait();
                go.wait();
            })
        });
        entered.wait();
        let queued = queue();
        release.wait();
        held.join().expect("the inspection returns").expect("inspected");
        queued
    })
}

/// Sends a balance enquiry of account 1; its answer comes on the receiver.
fn enquire(h: &Harness) -> std::sync::mpsc::Receiver<Result<tollgate_engine::Answer, tollgate_engine::EngineError>> {
    let (sender, answered) = std::sync::mpsc::channel();
    let enquiry = Request { key: None, target: Target::Account(1), operation: Operation::BalanceEnquiry };
    h.engine.submit(enquiry, Box::new(move |answer| drop(sender.send(answer))));
    answered
}

fn balance_in(
    answered: std::sync::mpsc::Receiver<Result<tollgate_engine::Answer, tollgate_engine::EngineError>>,
) -> rust_decimal::Decimal {
    let answer = answered.recv().expect("answered").expect("engine answers");
    let Body::Balance(view) = answer.body else { panic!("a balance: {answer:?}") };
    view.balance
}

/// The network's requests are decided before bulk records queued ahead of them: a shard
/// takes every request waiting and, with them, one bulk job at most per pass. The shard is
/// held while five batches of records and then a balance enquiry are queued; released, it
/// answers the enquiry with at most the first batch charged (first come, first served
/// would have charged all five), and every record is charged.
#[test]
fn an_online_request_is_decided_before_bulk_records_queued_ahead_of_it() {
    let h = Harness::with_config("records-priority", |config| config.shards = 1);
    h.prepaid(1, "491700000001", "1000.00");
    let single = charge(&h, vec![record("p:0", 10, call("4990012345", MONDAY_10, 60))]);
    let cost = single[0].amount;
    assert!(cost > d("0"), "a call costs money: {single:?}");
    let start = h.balance(1);
    let (batches, answered) = while_held(&h, || {
        let batches: Vec<_> = (1..=5)
            .map(|n| {
                let batch = vec![record(&format!("p:{n}"), 10, call("4990012345", MONDAY_10, 60))];
                h.engine.submit_records(batch).expect("queued")
            })
            .collect();
        (batches, enquire(&h))
    });
    let seen = balance_in(answered);
    assert!(seen == start || seen == start - cost, "behind one batch at most: {seen} of {start}, {cost} a record");
    for batch in batches {
        assert_eq!(batch.wait().expect("charged")[0].outcome, RecordOutcome::Charged);
    }
    assert_eq!(h.balance(1), start - cost * d("5"), "every record charged once");
}

/// A batch of records larger than a pass charges beside requests is charged over several
/// passes: a request queued behind it waits for one slice of it only, and the batch is
/// answered whole, each record once.
#[test]
fn a_large_batch_of_records_is_charged_in_slices_between_requests() {
    let h = Harness::with_config("records-slices", |config| config.shards = 1);
    h.prepaid(1, "491700000001", "1000000.00");
    let start = h.balance(1);
    let count = 4 * tollgate_engine::BULK_BESIDE_REQUESTS + 7;
    let records: Vec<RecordCharge> =
        (0..count).map(|n| record(&format!("l:{n}"), 10, call("4990012345", MONDAY_10, 60))).collect();
    let (batch, answered) = while_held(&h, || (h.engine.submit_records(records).expect("queued"), enquire(&h)));
    let seen = balance_in(answered);
    let answers = batch.wait().expect("answered whole");
    assert_eq!(answers.len(), count);
    assert!(answers.iter().all(|answer| answer.outcome == RecordOutcome::Charged && !answer.repeated));
    let cost = answers[0].amount;
    let charged_before = (start - seen) / cost;
    assert!(
        charged_before <= d(&tollgate_engine::BULK_BESIDE_REQUESTS.to_string()),
        "the enquiry waited for one slice at most: {charged_before} records charged before it"
    );
    assert_eq!(h.balance(1), start - cost * d(&count.to_string()), "each record once");
}

/// A shutdown answers after the bulk records sent before it: though the stop overtakes
/// them in the shard's queues, every batch queued ahead of it is charged, answered and
/// durable.
#[test]
fn a_shutdown_charges_the_bulk_records_sent_before_it() {
    let h = Harness::with_config("records-stop", |config| config.shards = 1);
    h.prepaid(1, "491700000001", "1000000.00");
    let start = h.balance(1);
    // Enough work that most batches still wait when the stop arrives.
    let batches: Vec<Vec<RecordCharge>> = (0..20)
        .map(|n| (0..2_000).map(|i| record(&format!("s:{n}:{i}"), 10, call("4990012345", MONDAY_10, 60))).collect())
        .collect();
    let batches: Vec<_> = batches.into_iter().map(|batch| h.engine.submit_records(batch).expect("queued")).collect();
    let h = h.restart();
    let mut cost = d("0");
    for batch in batches {
        for answer in batch.wait().expect("answered before the stop") {
            assert_eq!(answer.outcome, RecordOutcome::Charged);
            cost += answer.amount;
        }
    }
    assert_eq!(h.balance(1), start - cost, "durable, as read after the restart");
}

/// A batch larger than a pass charges (`BULK_PER_PASS`) with no request waiting is
/// charged over several passes and answered whole, each record once, also after a restart.
#[test]
fn a_batch_larger_than_a_pass_is_charged_whole_each_record_once() {
    let h = Harness::with_config("records-passes", |config| config.shards = 1);
    h.prepaid(1, "491700000001", "1000000.00");
    let start = h.balance(1);
    let count = 2 * tollgate_engine::BULK_PER_PASS + 5;
    let records: Vec<RecordCharge> =
        (0..count).map(|n| record(&format!("w:{n}"), 10, call("4990012345", MONDAY_10, 60))).collect();
    let answers = charge(&h, records.clone());
    assert_eq!(answers.len(), count);
    assert!(answers.iter().all(|answer| answer.outcome == RecordOutcome::Charged && !answer.repeated));
    let cost = answers[0].amount;
    assert_eq!(h.balance(1), start - cost * d(&count.to_string()));
    let h = h.restart();
    assert_eq!(h.balance(1), start - cost * d(&count.to_string()), "durable");
    assert!(charge(&h, records).iter().all(|answer| answer.repeated), "each key once");
    assert_eq!(h.balance(1), start - cost * d(&count.to_string()));
}

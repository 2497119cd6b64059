//! Rerating rated events after a tariff fix: the old charge refunded and the new one
//! taken once, an audit line per event, and a second run that changes nothing.

mod common;

use std::path::Path;

use common::*;
use tollgate_mediation::{rerate, AuditLine, RerateConfig, RerateSummary};

/// 10:00 and 11:00 UTC on the day of the sample records.
const TEN: i64 = NOW - 2 * 3600;
const ELEVEN: i64 = NOW - 3600;

fn config(h: &Harness, from: i64, to: i64, account: Option<u64>) -> RerateConfig {
    RerateConfig {
        rated_dir: h.config.out_dir.clone(),
        audit_dir: h.dir.join("rerate"),
        from_at: from,
        to_at: to,
        account,
        batch_records: 2,
        sync: true,
    }
}

fn run(h: &Harness, config: &RerateConfig, id: &str) -> (RerateSummary, Vec<AuditLine>) {
    let summary = rerate(&h.engine, config, id, &mut |_| {}).expect("rerate runs");
    assert!(summary.balances(), "{summary:?}");
    let audit = std::fs::read_to_string(&summary.audit_file).expect("audit file");
    let lines = audit.lines().map(|line| serde_json::from_str(line).expect("audit line")).collect();
    (summary, lines)
}

/// Two files of premium calls, national calls and SMS for both subscribers, mediated
/// under the plan as first published (premium voice at 1.99 a minute).
fn mediated(name: &str) -> Harness {
    let h = Harness::with_batch(name, 3);
    let calls = |prefix: &str, hour: u32| {
        let mut text = HEADER.to_owned();
        for n in 0..4 {
            let who = 1 + n % 2;
            text.push_str(&format!(
                "{prefix}{n},49170000000{who},4990012345,voice,2026-03-02 {hour:02}:{:02}:00,60000\n\
                 {prefix}n{n},49170000000{who},4930123456,voice,2026-03-02 {hour:02}:{:02}:30,90000\n\
                 {prefix}s{n},49170000000{who},,sms,2026-03-02 {hour:02}:{:02}:45,1000\n",
                n * 5,
                n * 5,
                n * 5
            ));
        }
        text
    };
    for (file, prefix, hour) in [("morning.csv", "m", 10), ("later.csv", "l", 11)] {
        let path = h.write(file, &calls(prefix, hour));
        assert_eq!(h.process(&path, &format()).rated, 12);
    }
    h
}

#[test]
fn a_tariff_fix_is_applied_once_with_an_audit_line_per_event() {
    let h = mediated("rerate-fix");
    // 8 premium calls of 2.49; the national calls and SMS come out of the bundles.
    assert_eq!((h.balance(1), h.balance(2)), (d("10.00") - d("9.96"), d("10.00") - d("9.96")));
    let h = h.reopen_with(plans_with_fix(r#"price = "1.99""#, r#"price = "0.99""#));

    let (summary, audit) = run(&h, &config(&h, TEN, ELEVEN, None), "first");
    assert_eq!((summary.files, summary.selected), (2, 12), "only the 10:00 hour: {summary:?}");
    assert_eq!((summary.rerated, summary.unchanged, summary.refused), (4, 8, 0), "{summary:?}");
    assert_eq!(summary.previous_by_currency["EUR"], d("9.96"));
    assert_eq!(summary.new_by_currency["EUR"], d("5.96"));
    assert_eq!((h.balance(1), h.balance(2)), (d("10.00") - d("9.96") + d("2.00"), d("10.00") - d("9.96") + d("2.00")));
    let premium: Vec<&AuditLine> = audit.iter().filter(|line| line.outcome == "rerated").collect();
    assert_eq!(premium.len(), 4);
    for line in &premium {
        assert!(line.record_id.as_deref().is_some_and(|id| id.starts_with('m')), "{line:?}");
        assert_eq!((line.first_amount, line.first_plan_version), (Some(d("2.49")), Some(3)));
        assert_eq!(
            (line.previous_amount, line.amount, line.delta),
            (Some(d("2.49")), Some(d("1.49")), Some(d("-1.00")))
        );
        assert_eq!((line.plan_version, line.band.as_deref()), (Some(4), Some("peak")));
    }
    assert_eq!(audit.len(), 12, "one line per selected event");

    // The same run again changes nothing; its audit says so.
    let (again, audit) = run(&h, &config(&h, TEN, ELEVEN, None), "second");
    assert_eq!((again.rerated, again.unchanged), (0, 12), "{again:?}");
    assert!(audit.iter().all(|line| line.outcome == "unchanged" && line.delta == Some(d("0"))));
    assert_eq!((h.balance(1), h.balance(2)), (d("10.00") - d("9.96") + d("2.00"), d("10.00") - d("9.96") + d("2.00")));

    // One account, the whole day: only its two 11:00 premium calls are left to fix.
    let (one, audit) = run(&h, &config(&h, TEN, NOW, Some(2)), "account-2");
    assert_eq!((one.selected, one.rerated), (12, 2), "{one:?}");
    assert!(audit.iter().all(|line| line.account == Some(2)));
    assert_eq!(h.balance(2), d("10.00") - d("9.96") + d("4.00"));
    assert_eq!(h.balance(1), d("10.00") - d("9.96") + d("2.00"));
    assert_eq!(h.engine.check_invariants().expect("inspect"), Vec::<String>::new());

    // A restart keeps every rerate: the whole day again changes only account 1's calls.
    let h = h.reopen_with(plans_with_fix(r#"price = "1.99""#, r#"price = "0.99""#));
    let (day, _) = run(&h, &config(&h, TEN, NOW, None), "day");
    assert_eq!((day.rerated, day.unchanged), (2, 22), "{day:?}");
    assert_eq!((h.balance(1), h.balance(2)), (d("10.00") - d("5.96"), d("10.00") - d("5.96")));
}

#[test]
fn unreadable_lines_and_unknown_records_are_reported_and_change_nothing() {
    let h = mediated("rerate-hostile");
    let h = h.reopen_with(plans_with_fix(r#"price = "1.99""#, r#"price = "0.99""#));
    let rated = h.config.out_dir.join("morning.csv.rated.jsonl");
    let text = std::fs::read_to_string(&rated).expect("rated file");
    // A line naming a record the engine never charged: its key is made from its identity.
    let mut forged: serde_json::Value = serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    assert_eq!(forged["record_identity"], "csv:mapping:m0:msisdn:491700000001", "{forged}");
    forged["record_id"] = "never-charged".into();
    forged["record_identity"] = "csv:mapping:never-charged:msisdn:491700000001".into();
    let extra = h.config.out_dir.join("extra.rated.jsonl");
    std::fs::write(&extra, format!("{forged}\nnot json\n{}\n", "x".repeat(2 << 20))).expect("extra file");
    let before = (h.balance(1), h.balance(2));
    let (summary, audit) = run(&h, &config(&h, TEN, ELEVEN, Some(1)), "hostile");
    assert_eq!(summary.unreadable_lines, 2, "{summary:?}");
    assert_eq!(summary.refused_by_reason.get("unknown_record"), Some(&1), "{summary:?}");
    let unreadable: Vec<(&str, u64)> =
        audit.iter().filter(|l| l.outcome == "unreadable").map(|l| (l.rated_file.as_str(), l.line)).collect();
    assert_eq!(unreadable, [("extra.rated.jsonl", 2), ("extra.rated.jsonl", 3)]);
    assert!(audit.iter().any(|l| l.reason.as_deref().is_some_and(|r| r.contains("longer than"))));
    assert_eq!(summary.rerated, 2, "account 1's two 10:00 premium calls");
    assert_eq!((h.balance(1), h.balance(2)), (before.0 + d("2.00"), before.1));
    assert!(!Path::new(&h.dir.join("rerate/rerate-hostile.summary.json")).with_extension("tmp").exists());
    let err = rerate(&h.engine, &config(&h, TEN, ELEVEN, None), "hostile", &mut |_| {}).expect_err("same run id");
    assert!(err.to_string().contains("exists"), "{err}");
    let err = rerate(&h.engine, &config(&h, ELEVEN, TEN, None), "backwards", &mut |_| {}).expect_err("empty window");
    assert!(err.to_string().contains("before"), "{err}");
}

#[test]
fn a_rated_line_written_before_record_identities_is_rerated_by_its_record_id() {
    use tollgate_engine::{RecordCharge, RecordKey, RecordOutcome, ServiceRef, Usage};
    // A record an earlier build charged, keyed by the digest of its id alone, and its
    // rated line as that build wrote it (no `record_identity`).
    let h = Harness::new("rerate-old-line");
    let answers = h
        .engine
        .charge_records(vec![RecordCharge {
            identity: None,
            key: RecordKey::of("old-1"),
            origin: 1,
            account: 1,
            subscription: 10,
            usage: Usage {
                service: ServiceRef::Name("voice".into()),
                rating_group: None,
                destination: Some("4990012345".into()),
                start_utc_seconds: TEN + 60,
                units: 60,
            },
        }])
        .expect("charged");
    assert_eq!(answers[0].outcome, RecordOutcome::Charged);
    std::fs::create_dir_all(&h.config.out_dir).expect("out dir");
    let old = format!(
        r#"{{"source":"old.csv","record_number":1,"record_id":"old-1","account":1,"subscription":10,"service":"voice","rating_group":null,"destination":"premium","called":"4990012345","band":"peak","start_utc_seconds":{},"recorded_units":60,"units":60,"allowance_units":0,"amount":"2.49","currency":"EUR","plan":"mobile-prepaid-s","plan_version":3}}"#,
        TEN + 60
    );
    std::fs::write(h.config.out_dir.join("old.csv.rated.jsonl"), format!("{old}\n")).expect("rated file");
    let h = h.reopen_with(plans_with_fix(r#"price = "1.99""#, r#"price = "0.99""#));
    let (summary, _) = run(&h, &config(&h, TEN, ELEVEN, None), "old");
    assert_eq!((summary.selected, summary.rerated, summary.refused), (1, 1, 0), "{summary:?}");
    assert_eq!(h.balance(1), d("10.00") - d("1.49"));
}

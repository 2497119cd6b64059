//! CSV files through the whole pipeline and a real engine: rated lines, every reject with
//! its reason, duplicates across files, a summary that balances, and resuming.

mod common;

use common::*;
use tollgate_mediation::readers::csv::mapping::Mapping;
use tollgate_mediation::{Format, RejectReason};

#[test]
fn good_and_bad_records_each_land_where_they_belong_and_the_summary_balances() {
    let h = Harness::new("csv-mixed");
    let file = h.write(
        "calls.csv",
        &format!(
            "{HEADER}\
             c1,491700000001,4990012345,voice,2026-03-02 10:00:00,60000\n\
             c2,491700000001,,sms,2026-03-02 10:01:00,1000\n\
             c3,499999999999,4990012345,voice,2026-03-02 10:02:00,60000\n\
             c4,491700000001,4990012345,voice,not a time,60000\n\
             c5,491700000001,4990012345,voice,2026-03-02 10:03:00,-5\n\
             c1,491700000001,4990012345,voice,2026-03-02 10:00:00,60000\n\
             c6,491700000001,4990012345,voice,2025-01-01 10:00:00,60000\n\
             c7,491700000001,x-not-a-number,voice,2026-03-02 10:04:00,60000\n\
             c8,491700000001\n\
             \"c9\",\"491700000002\",\"4990012345\",\"voice\",\"2026-03-02 10:05:00\",\"30500\"\n"
        ),
    );
    let summary = h.process(&file, &format());
    assert_eq!(summary.records_in, 10);
    assert!(summary.balances(), "{summary:?}");
    assert_eq!((summary.rated, summary.duplicates), (3, 1), "{summary:?}");
    // Regression: the duplicate was counted among the reasons too, which then added up to
    // more than `rejected`.
    assert_eq!(summary.rejected_by_reason.get("duplicate"), None, "{summary:?}");
    assert_eq!(summary.rejected_by_reason.values().sum::<u64>(), summary.rejected, "{summary:?}");
    let rated = h.rated_csv(&file);
    assert_eq!(rated.iter().map(|r| r["record_id"].as_str()).collect::<Vec<_>>(), ["c1", "c2", "c9"]);
    assert_eq!(rated[0]["amount"], "2.49");
    assert_eq!(rated[0]["service"], "voice");
    assert_eq!(rated[0]["destination"], "premium");
    assert_eq!(rated[1]["allowance_units"], "1", "the SMS bundle paid");
    assert_eq!(rated[2]["units"], "60", "30.5 s rounds up to whole seconds, then the first minute");
    let rejects = h.rejects(&file);
    let reasons: Vec<(&str, &str)> =
        rejects.iter().map(|r| (r["record_number"].as_str(), r["reason"].as_str())).collect();
    assert_eq!(
        reasons,
        [
            ("3", RejectReason::UnknownSubscriber.code()),
            ("4", "malformed"),
            ("5", "malformed"),
            ("6", "duplicate"),
            ("7", "out_of_window"),
            ("8", "rating_failed"),
            ("9", "malformed"),
        ]
    );
    assert!(rejects[1]["message"].contains("field `start`"), "{:?}", rejects[1]);
    assert!(rejects[6]["message"].contains("field `service`: column 4 missing"), "{:?}", rejects[6]);
    // Each reject carries its line exactly as the file has it, and where it starts.
    let text = std::fs::read_to_string(&file).expect("input");
    for reject in &rejects {
        let number: usize = reject["record_number"].parse().expect("number");
        let line = text.lines().nth(number).expect("line"); // line 0 is the header
        assert_eq!(reject["record"], line, "{reject:?}");
        let offset: usize = reject["offset"].parse().expect("offset");
        assert!(text[offset..].starts_with(line), "{reject:?}");
    }
    assert_eq!(h.balance(1), d("10.00") - d("2.49"));
    assert_eq!(h.balance(2), d("10.00") - d("2.49"));

    // Regression: with CRLF line breaks a reject's offset was one byte early and its
    // record began with the LF before it.
    let crlf = h.write(
        "calls-crlf.csv",
        &format!(
            "{HEADER}k1,491700000001,4990012345,voice,not a time,60000\nk2,491700000001,4990012345,voice,never,60000\n"
        )
        .replace('\n', "\r\n"),
    );
    let summary = h.process(&crlf, &format());
    assert_eq!(summary.rejected, 2, "{summary:?}");
    let text = std::fs::read_to_string(&crlf).expect("input");
    for reject in h.rejects(&crlf) {
        let offset: usize = reject["offset"].parse().expect("offset");
        assert!(reject["record"].starts_with('k') && !reject["record"].contains('\r'), "{reject:?}");
        assert!(text[offset..].starts_with(&format!("{}\r\n", reject["record"])), "{reject:?}");
    }
}

#[test]
fn a_record_seen_in_an_earlier_file_is_a_duplicate_and_a_finished_file_is_not_read_twice() {
    let h = Harness::new("csv-files");
    let first = h.write("a.csv", &format!("{HEADER}x1,491700000001,4990012345,voice,2026-03-02 10:00:00,60000\n"));
    let second = h.write(
        "b.csv",
        &format!(
            "{HEADER}x1,491700000001,4990012345,voice,2026-03-02 10:00:00,60000\nx2,491700000001,4990012345,voice,2026-03-02 10:00:00,60000\n"
        ),
    );
    assert_eq!(h.process(&first, &format()).rated, 1);
    let summary = h.process(&second, &format());
    assert_eq!((summary.rated, summary.duplicates), (1, 1));
    assert_eq!(h.balance(1), d("10.00") - d("4.98"));
    let again = h.process(&second, &format());
    assert_eq!(again, summary, "a complete file answers with its summary");
    assert_eq!(h.balance(1), d("10.00") - d("4.98"));
}

/// Regression: a switch whose file names wrap around delivers another file under a name
/// mediated before. With the same size it was taken for the finished file (its records
/// never rated, the run reporting the earlier summary); with another size it was refused.
/// Both are rated, the later one's outputs under its name and content digest, and each,
/// delivered again, is still recognised as done.
#[test]
fn another_file_under_a_name_mediated_before_is_rated_not_taken_for_it() {
    let h = Harness::new("csv-same-name");
    let line = |id: &str| format!("{id},491700000001,4990012345,voice,2026-03-02 10:00:00,60000\n");
    let deliver = |dir: &str, text: &str| {
        std::fs::create_dir_all(h.dir.join(dir)).expect("dir");
        h.write(&format!("{dir}/CDR0001.csv"), text)
    };
    let first = deliver("one", &format!("{HEADER}{}", line("r1")));
    let same_size = deliver("two", &format!("{HEADER}{}", line("r2")));
    let longer = deliver("three", &format!("{HEADER}{}{}", line("r3"), line("r4")));
    assert_eq!(h.process(&first, &format()).rated, 1);
    let second = h.process(&same_size, &format());
    assert_eq!((second.rated, second.duplicates), (1, 0), "{second:?}");
    assert_eq!(h.process(&longer, &format()).rated, 2);
    assert_eq!(h.balance(1), d("10.00") - d("2.49") * d("4"), "four calls, each charged once");
    let diverted = std::fs::read_dir(h.dir.join("out"))
        .expect("outputs")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("CDR0001.csv~") && name.ends_with(".rated.csv"))
        .count();
    assert_eq!(diverted, 2, "the two later files' outputs carry their digests");
    assert_eq!(h.rated_csv(&first).len(), 1, "the first file's outputs are its own");
    for file in [&first, &same_size, &longer] {
        let again = h.process(file, &format());
        assert_eq!(again.resumed, 0);
    }
    assert_eq!(h.balance(1), d("10.00") - d("2.49") * d("4"), "nothing charged twice");
}

#[test]
fn a_file_without_header_maps_columns_by_position_and_a_missing_column_is_refused() {
    let h = Harness::new("csv-positions");
    let mapping = Mapping::parse(
        "header = false\ntime_format = \"unix\"\n[fields]\nrecord_id = { position = 1 }\nsubscriber = { position = 2 }\nservice = { value = \"sms\" }\nstart = { position = 3 }\nunits = { value = \"1\" }\n",
    )
    .expect("mapping");
    let file = h.write("sms.txt", "s1;491700000001;1772445600\n");
    let semicolon = Mapping::parse(
        "delimiter = \";\"\nheader = false\ntime_format = \"unix\"\n[fields]\nrecord_id = { position = 1 }\nsubscriber = { position = 2 }\nservice = { value = \"sms\" }\nstart = { position = 3 }\nunits = { value = \"1\" }\n",
    )
    .expect("mapping");
    assert_eq!(h.process(&file, &Format::Csv(semicolon)).rated, 1);
    let other = h.write("sms2.txt", "s2;491700000001;1772445600\n");
    let summary = h.process(&other, &Format::Csv(mapping));
    assert_eq!(summary.rejected, 1, "with the wrong delimiter the record is one field: {summary:?}");
    let named = Mapping::parse(MAPPING).expect("mapping");
    let headerless = h.write("no-header.csv", "y1,491700000001\n");
    let err = h.try_process(&headerless, &Format::Csv(named)).expect_err("missing columns");
    assert!(err.to_string().contains("no column \"id\" in the header"), "{err}");
}

#[test]
fn a_line_without_end_is_bounded_and_the_records_before_it_are_kept() {
    let h = Harness::new("csv-long-line");
    let mut text = format!("{HEADER}z1,491700000001,4990012345,voice,2026-03-02 10:00:00,60000\n");
    text.push_str(&"9".repeat(2 << 20));
    let file = h.write("long.csv", &text);
    let summary = h.process(&file, &format());
    assert_eq!((summary.rated, summary.rejected), (1, 1), "{summary:?}");
    assert!(summary.unreadable_from_offset.is_some());
    assert!(summary.balances());
}

#[test]
fn a_run_stopped_after_any_batch_resumes_to_the_same_outputs_and_balances() {
    let mut text = HEADER.to_owned();
    for n in 0..50 {
        let who = 1 + n % 2;
        let minute = n % 60;
        text.push_str(&format!(
            "r{n},49170000000{who},4990012345,voice,2026-03-02 10:{minute:02}:00,{}\n",
            20_000 + n * 1000
        ));
        if n % 7 == 0 {
            text.push_str(&format!("r{n},49170000000{who},4990012345,voice,2026-03-02 10:{minute:02}:00,1000\n"));
        }
    }
    let clean = Harness::with_batch("csv-clean", 4);
    let file = clean.write("big.csv", &text);
    let expected = clean.process(&file, &format());
    assert!(expected.duplicates > 0 && expected.balances());
    let expected_outputs = clean.outputs(&file);
    let expected_balances = (clean.balance(1), clean.balance(2));
    // Crash images: the outputs and checkpoint as a run left them after k batches, plus
    // the engine's journal with the *next* batch already charged (the crash came after the
    // engine answered, before the checkpoint).
    for stop_after in [1usize, 3, 6] {
        let h = Harness::with_batch(&format!("csv-resume-{stop_after}"), 4);
        let file = h.write("big.csv", &text);
        h.process_batches_then_crash(&file, &format(), stop_after);
        let summary = h.process(&file, &format());
        assert_eq!(summary.rated, expected.rated, "stop after {stop_after}");
        assert_eq!(summary.duplicates, expected.duplicates);
        assert_eq!(summary.resumed, 1);
        assert_eq!(h.outputs(&file), expected_outputs, "stop after {stop_after}: outputs equal a clean run");
        assert_eq!((h.balance(1), h.balance(2)), expected_balances);
    }
}

/// A run asked to stop (`MediationConfig::stop`, a server shutting down) stops between
/// batches with `Stopped`, having written and checkpointed what it charged; processed
/// again, the file resumes to the outputs and balances of a run never stopped.
#[test]
fn a_run_asked_to_stop_ends_between_batches_and_resumes_to_a_clean_run() {
    let mut text = HEADER.to_owned();
    for n in 0..40 {
        text.push_str(&format!("r{n},49170000000{},4990012345,voice,2026-03-02 10:{:02}:00,60\n", 1 + n % 2, n % 60));
    }
    let clean = Harness::with_batch("csv-stop-clean", 4);
    let file = clean.write("calls.csv", &text);
    clean.process(&file, &format());
    let expected = (clean.outputs(&file), clean.balance(1), clean.balance(2));

    let mut h = Harness::with_batch("csv-stop", 4);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    h.config.stop = Some(std::sync::Arc::clone(&stop));
    let file = h.write("calls.csv", &text);
    let mediator = tollgate_mediation::Mediator::new(&h.engine, h.config.clone());
    let mut written = 0;
    let stopped = mediator.process(&file, &format(), &mut |progress| {
        written = progress.records;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    assert!(matches!(stopped, Err(tollgate_mediation::MediationError::Stopped)), "{stopped:?}");
    assert!((4..40).contains(&written), "stopped after a batch or a few, before the end: {written}");
    stop.store(false, std::sync::atomic::Ordering::SeqCst);
    let summary = h.process(&file, &format());
    assert_eq!((summary.records_in, summary.resumed), (40, 1));
    assert_eq!((h.outputs(&file), h.balance(1), h.balance(2)), expected);
}

/// `MediationConfig::max_records_per_second` holds batches back to the rate: 40 records
/// in batches of 4 at 100 a second cannot be sent in less than the 0.36 s the tenth
/// batch waits for (a lower bound: sleeping never ends early), and the file is read whole.
#[test]
fn a_paced_run_sends_no_faster_than_its_rate() {
    let mut text = HEADER.to_owned();
    for n in 0..40 {
        text.push_str(&format!("p{n},49170000000{},4990012345,voice,2026-03-02 10:{:02}:00,60\n", 1 + n % 2, n % 60));
    }
    let mut h = Harness::with_batch("csv-paced", 4);
    h.config.max_records_per_second = Some(100);
    let file = h.write("paced.csv", &text);
    let started = std::time::Instant::now();
    let summary = h.process(&file, &format());
    assert!(started.elapsed() >= std::time::Duration::from_millis(360), "{:?}", started.elapsed());
    assert_eq!((summary.records_in, summary.complete), (40, true));
}

/// Regression: an output lost or cut shorter than its checkpoint covers (a power cut
/// before its name was durable, a file truncated by hand) was extended with zeros by the
/// resumed run, which then appended after them. It is refused, naming the file.
#[test]
fn an_output_shorter_than_its_checkpoint_is_refused_not_filled_with_zeros() {
    let mut text = HEADER.to_owned();
    for n in 0..20 {
        text.push_str(&format!("r{n},491700000001,4990012345,voice,2026-03-02 10:{n:02}:00,60\n"));
    }
    let h = Harness::with_batch("csv-short-output", 4);
    let file = h.write("short.csv", &text);
    h.process_batches_then_crash(&file, &format(), 2);
    let rated = tollgate_mediation::Outputs::of(&h.config, &file).rated_csv;
    // The checkpoint covers the header and two batches' lines; 10 bytes is less.
    assert!(std::fs::metadata(&rated).expect("rated output").len() > 100);
    std::fs::OpenOptions::new().write(true).open(&rated).expect("open").set_len(10).expect("cut");
    let error = h.try_process(&file, &format()).expect_err("a short output is refused").to_string();
    assert!(error.contains("short.csv.rated.csv") && error.contains("which has 10"), "{error}");
    let after = std::fs::read(&rated).expect("rated output");
    assert_eq!(after.len(), 10, "the output is left as it was found");
    assert!(!after.contains(&0), "no zeros written");
}

/// What a run tells `MediationConfig::charged_volume`.
#[derive(Debug, Default)]
struct Told(std::sync::Mutex<Vec<(i64, u64, String)>>);

impl tollgate_mediation::ChargedVolume for Told {
    fn charged(&self, records: &[tollgate_mediation::ChargedRecord<'_>]) {
        let mut told = self.0.lock().expect("lock");
        told.extend(records.iter().map(|r| (r.start_utc_seconds, r.units, r.service.to_owned())));
    }
}

impl Told {
    fn taken(&self) -> Vec<(i64, u64, String)> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

/// A run tells what it charged itself (start, reported units, service) for each record
/// the engine wrote a ledger entry for now: not its rejects, not a duplicate of another
/// file's record, not a record an earlier (crashed) run of the file charged.
#[test]
fn a_run_tells_the_records_it_charged_itself_once() {
    let mut h = Harness::with_batch("csv-told", 4);
    let told = std::sync::Arc::new(Told::default());
    h.config.charged_volume = Some(told.clone());
    let at = |minute: u32| {
        jiff::civil::date(2026, 3, 2).at(10, minute as i8, 0, 0).in_tz("UTC").expect("time").timestamp().as_second()
    };
    let mut text = HEADER.to_owned();
    for n in 0..10u32 {
        text.push_str(&format!(
            "t{n},49170000000{},4990012345,voice,2026-03-02 10:{n:02}:00,{}\n",
            1 + n % 2,
            1000 * (n + 1)
        ));
    }
    text.push_str("t3,491700000002,4990012345,voice,2026-03-02 10:03:00,4000\n"); // a duplicate
    text.push_str("u1,499999999999,4990012345,voice,2026-03-02 10:20:00,5000\n"); // unknown subscriber
    text.push_str("s1,491700000001,,sms,2026-03-02 10:30:00,1000\n");
    let file = h.write("told.csv", &text);
    let summary = h.process(&file, &format());
    assert_eq!((summary.records_in, summary.duplicates), (13, 1), "{summary:?}");
    // Exactly the rated lines' records, as the file gave them (the mapping's units are
    // seconds for milliseconds, messages for thousandths).
    let input = |id: &str| match id.strip_prefix('t').and_then(|n| n.parse::<u32>().ok()) {
        Some(n) => (at(n), u64::from(n + 1), "voice".to_owned()),
        None => (at(30), 1, "sms".to_owned()),
    };
    let expected: Vec<_> = h.rated_csv(&file).iter().map(|line| input(&line["record_id"])).collect();
    assert!(expected.len() >= 5 && expected.len() as u64 == summary.rated, "{summary:?}");
    assert_eq!(told.taken(), expected);

    // The same records in another file are duplicates: nothing charged, nothing told.
    let again = h.write("told-again.csv", &text);
    assert_eq!(h.process(&again, &format()).duplicates, summary.rated + 1);
    assert_eq!(told.taken(), []);

    // Crashed after the engine charged the third batch and resumed: each record told at
    // most once, and only by the run that charged it.
    // (An engine of its own: the first one's balances are spent.)
    let mut h = Harness::with_batch("csv-told-crash", 4);
    h.config.charged_volume = Some(told.clone());
    let file = h.write("told-crash.csv", &text);
    h.process_batches_then_crash(&file, &format(), 2);
    let first = told.taken();
    let rated = |lines: &[std::collections::HashMap<String, String>]| lines.len();
    assert_eq!(first.len(), rated(&h.rated_csv(&file)), "what the two batches written rated: {first:?}");
    let summary = h.process(&file, &format());
    let second = told.taken();
    // The third batch's records were charged by the crashed run; the resumed one rates
    // them again as repeats and tells only the fourth batch's.
    let third = summary.rated as usize - first.len() - second.len();
    assert!(third >= 1 && second.len() <= 1, "{first:?} {second:?} {summary:?}");
    assert!(second.iter().all(|record| !first.contains(record)));
}

//! What makes a record itself (its identity), and what follows: a record id another
//! subscriber shares is another record, whatever the number of shards; a run killed
//! after any batch and resumed writes exactly a clean run's outputs; a CDR delivered
//! again, encoded with other optional fields, is a duplicate; a CSV record id belongs to
//! its source. (Issue 14, item 6.)

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use rust_decimal::Decimal;
use tollgate_mediation::event::Reader;
use tollgate_mediation::readers::ber::BerReader;
use tollgate_mediation::readers::csv::mapping::Mapping;
use tollgate_mediation::{Format, Summary, UsageRecord};

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ber").join(name)
}

fn events(name: &str) -> Vec<UsageRecord> {
    let mut reader = BerReader::open(&sample(name), 0, 0).expect("opens");
    let mut out = Vec::new();
    while let Some(item) = reader.next_item().expect("reads") {
        out.push(item.record.expect("decodes"));
    }
    out
}

/// What a clean run with one shard gave.
struct Clean {
    summary: Summary,
    rated: Vec<HashMap<String, String>>,
    rejects: Vec<HashMap<String, String>>,
    balances: (Decimal, Decimal),
}

/// Rates a file holding `bytes` with 1, 2 and 3 shards (accounts 1 and 2 on one shard,
/// then on two), each cleanly and then killed right after the engine charged batch k + 1
/// (the next batch possibly in flight too), for every k, and resumed on the engine
/// reopened from its journal, with batches of 1, 2 and 3 records. Every run's rated
/// files, rejects and summary are the same bytes (but for the summary's count of
/// resumptions), and its balances the same.
fn check_the_same_with_any_shards_and_any_kill(test: &str, name: &str, bytes: &[u8], format: &Format) -> Clean {
    let mut first: Option<(Clean, OutputBytes)> = None;
    for batch in [1, 2, 3] {
        for shards in [1, 2, 3] {
            // One harness name for every run: the input's path, which the summary
            // names, is the same in all of them.
            let h = Harness::with_shards(test, batch, shards);
            let file = h.write_bytes(name, bytes);
            let summary = h.process(&file, format);
            let outputs = h.output_bytes(&file);
            let balances = (h.balance(1), h.balance(2));
            let Some((expected, expected_outputs)) = &first else {
                let clean = Clean { summary, rated: h.rated_csv(&file), rejects: h.rejects(&file), balances };
                first = Some((clean, outputs));
                continue;
            };
            let run = format!("a clean run with {shards} shards, batches of {batch}");
            assert_same_outputs(expected_outputs, &outputs, &run);
            assert_eq!(balances, expected.balances, "{run}");
            drop(h);
            for stop_after in 0.. {
                let h = Harness::with_shards(test, batch, shards);
                let file = h.write_bytes(name, bytes);
                if !h.try_process_batches_then_crash(&file, format, stop_after) {
                    break;
                }
                let h = h.reopen_with(plans());
                let summary = h.process(&file, format);
                assert_eq!(summary.resumed, u32::from(stop_after > 0), "{summary:?}");
                let run = format!("{shards} shards, batches of {batch}, killed after batch {}", stop_after + 1);
                assert_same_outputs(expected_outputs, &h.output_bytes(&file), &run);
                assert_eq!((h.balance(1), h.balance(2)), expected.balances, "{run}");
            }
        }
    }
    first.expect("a clean run").0
}

fn assert_same_outputs(expected: &[(String, Vec<u8>)], got: &[(String, Vec<u8>)], run: &str) {
    for ((name, want), (_, have)) in expected.iter().zip(got) {
        assert!(
            want == have,
            "{run}: {name} differs from the first clean run's\n--- first clean run\n{}\n--- {run}\n{}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(have)
        );
    }
}

fn reasons(rejects: &[HashMap<String, String>]) -> Vec<(&str, &str)> {
    rejects.iter().map(|r| (r["record_number"].as_str(), r["reason"].as_str())).collect()
}

#[test]
fn csv_record_ids_shared_by_two_subscribers_give_the_same_outputs_with_any_shard_count_and_after_any_kill() {
    // x1 is subscriber 1's hour to a premium number (more than the balance: refused)
    // and subscriber 2's minute; x2 is charged to subscriber 2, then to subscriber 1,
    // then to subscriber 1 again (written with a +: the same subscriber); x1 comes
    // again for subscriber 2.
    let text = format!(
        "{HEADER}\
         x1,491700000001,4990012345,voice,2026-03-02 10:00:00,3600000\n\
         x1,491700000002,4990012345,voice,2026-03-02 10:00:00,60000\n\
         x2,491700000002,4990012345,voice,2026-03-02 10:01:00,60000\n\
         x2,491700000001,4990012345,voice,2026-03-02 10:01:00,60000\n\
         x2,+491700000001,4990012345,voice,2026-03-02 10:01:00,60000\n\
         x3,491700000001,4930123456,voice,2026-03-02 10:02:00,90000\n\
         x4,491700000002,,sms,2026-03-02 10:03:00,1000\n\
         x1,491700000002,4990012345,voice,2026-03-02 10:00:00,60000\n"
    );
    let clean = check_the_same_with_any_shards_and_any_kill("identity-csv", "shared.csv", text.as_bytes(), &format());
    assert_eq!(
        (clean.summary.rated, clean.summary.rejected, clean.summary.duplicates),
        (5, 1, 2),
        "{:?}",
        clean.summary
    );
    assert_eq!(reasons(&clean.rejects), [("1", "credit_limit_reached"), ("5", "duplicate"), ("8", "duplicate")]);
    let rated: Vec<(&str, &str)> =
        clean.rated.iter().map(|r| (r["record_id"].as_str(), r["account"].as_str())).collect();
    assert_eq!(rated, [("x1", "2"), ("x2", "2"), ("x2", "1"), ("x3", "1"), ("x4", "2")]);
    assert_eq!(clean.rated[2]["record_identity"], "csv:mapping:x2:msisdn:491700000001");
    assert_eq!(clean.balances, (d("10.00") - d("2.49"), d("10.00") - d("4.98")));
}

#[test]
fn ber_call_references_shared_by_two_subscribers_give_the_same_outputs_with_any_shard_count_and_after_any_kill() {
    // One MSC numbered calls of subscribers 1 and 2 alike: records 1 and 2 share call
    // reference, sequence number and seizure time (1 is an hour to a premium number,
    // more than subscriber 1's balance), as do 3, 4 and 5 (5 is 4 delivered twice).
    let bytes = std::fs::read(sample("moc-shared-reference.cdr")).expect("sample");
    let clean = check_the_same_with_any_shards_and_any_kill("identity-ber", "shared.cdr", &bytes, &Format::Ber);
    assert_eq!(
        (clean.summary.rated, clean.summary.rejected, clean.summary.duplicates),
        (3, 1, 1),
        "{:?}",
        clean.summary
    );
    assert_eq!(reasons(&clean.rejects), [("1", "credit_limit_reached"), ("5", "duplicate")]);
    let accounts: Vec<&str> = clean.rated.iter().map(|r| r["account"].as_str()).collect();
    assert_eq!(accounts, ["2", "2", "1"]);
    assert_eq!(clean.balances, (d("10.00") - d("2.49"), d("10.00") - d("4.98")));
}

#[test]
fn a_cdr_delivered_again_encoded_with_other_optional_fields_is_a_duplicate() {
    // redelivered.cdr holds pgw.cdr's and moc.cdr's records encoded again: other
    // optional fields, the P-GW address as text instead of binary, the call times in
    // UTC+01:00. Other bytes, the same records.
    let first: Vec<UsageRecord> = events("pgw.cdr").into_iter().chain(events("moc.cdr")).collect();
    let again = events("redelivered.cdr");
    assert_eq!(first.len(), again.len());
    for (a, b) in first.iter().zip(&again) {
        assert_ne!(a.record_id, b.record_id, "the bytes differ");
        assert_eq!(a.record_identity, b.record_identity);
        assert_eq!((a.start_utc_seconds, a.units), (b.start_utc_seconds, b.units));
    }
    let h = Harness::new("identity-redelivered");
    for name in ["pgw.cdr", "moc.cdr"] {
        let file = h.write_bytes(name, &std::fs::read(sample(name)).expect("sample"));
        assert_eq!(h.process(&file, &Format::Ber).rejected, 0);
    }
    let balances = (h.balance(1), h.balance(2));
    let file = h.write_bytes("redelivered.cdr", &std::fs::read(sample("redelivered.cdr")).expect("sample"));
    let summary = h.process(&file, &Format::Ber);
    assert_eq!((summary.rated, summary.duplicates), (0, 6), "{summary:?}");
    assert_eq!((h.balance(1), h.balance(2)), balances);

    // The same for CHF-CDRs that carry their session's identifiers.
    let first = events("chf-session.cdr");
    let again = events("chf-session-redelivered.cdr");
    assert_eq!(
        first.iter().map(|e| &e.record_identity).collect::<Vec<_>>(),
        again.iter().map(|e| &e.record_identity).collect::<Vec<_>>()
    );
    assert!(first
        .iter()
        .zip(&again)
        .all(|(a, b)| a.record_id != b.record_id && a.start_utc_seconds == b.start_utc_seconds));
    let file = h.write_bytes("chf-session.cdr", &std::fs::read(sample("chf-session.cdr")).expect("sample"));
    assert_eq!(h.process(&file, &Format::Ber).rated, 3);
    let balance = h.balance(1);
    let file = h.write_bytes("chf-again.cdr", &std::fs::read(sample("chf-session-redelivered.cdr")).expect("sample"));
    let summary = h.process(&file, &Format::Ber);
    assert_eq!((summary.rated, summary.duplicates), (0, 3), "{summary:?}");
    assert_eq!(h.balance(1), balance);
}

#[test]
fn each_cdr_type_is_identified_by_its_identifying_fields_and_its_subscriber() {
    let identities = |name: &str| events(name).into_iter().map(|e| e.record_identity).collect::<Vec<_>>();
    // p-GWAddress, nodeID, chargingID, recordSequenceNumber, localSequenceNumber, the
    // container's localSequenceNumber, the subscriber.
    assert_eq!(
        identities("pgw.cdr"),
        [
            "pgw:10.0.0.1:pgw-fra-01:1001:1:10011:11:msisdn:491700000001",
            "pgw:10.0.0.1:pgw-fra-01:1001:1:10011:12:msisdn:491700000001",
            "pgw:10.0.0.1:pgw-fra-01:1001:2:10012:21:msisdn:491700000001",
            "pgw:10.0.0.1:pgw-fra-01:1002:1:10021:11:msisdn:491700000002",
        ]
    );
    // An SGW-CDR here has no localSequenceNumber, a traffic volume container none ever.
    assert_eq!(
        identities("sgw.cdr"),
        [
            "sgw:10.0.1.1:sgw-fra-01:1001:1::#0:msisdn:491700000001",
            "sgw:10.0.1.1:sgw-fra-01:1001:1::#1:msisdn:491700000001",
            "sgw:10.0.1.1:sgw-fra-01:1003:1::#0:msisdn:491700000001",
        ]
    );
    // recordingEntity, mSCAddress (absent), callReference, sequenceNumber, seizureTime.
    assert_eq!(
        identities("moc.cdr"),
        [
            "moc:491720000000::00010001:1:1772445600:msisdn:491700000001",
            "moc:491720000000::00010002:2:1772447400:msisdn:491700000001",
        ]
    );
    // recordingNetworkFunctionID, chargingID, pDUSessionChargingID,
    // chargingSessionIdentifier (absent), recordSequenceNumber, localRecordSequenceNumber,
    // the container's localSequenceNumber.
    assert_eq!(
        identities("chf-session.cdr"),
        [
            "chf:0c4f0000-0000-4000-8000-000000000001:7001:7001::1:501:1:msisdn:491700000001",
            "chf:0c4f0000-0000-4000-8000-000000000001:7001:7001::1:501:2:msisdn:491700000001",
            "chf:0c4f0000-0000-4000-8000-000000000001:7001:7001::2:502:3:msisdn:491700000001",
        ]
    );
    // chf.cdr's records name no session and no local record sequence number: a record
    // sequence number alone restarts with every session, so they are known by the
    // digest of their bytes, the one their record ids show.
    for event in events("chf.cdr") {
        let (digest, position) = event.record_id.strip_prefix("cdr:").and_then(|id| id.split_once('/')).expect("id");
        let subscriber = match &event.subscriber {
            tollgate_engine::Identity::Msisdn(n) => format!("msisdn:{n}"),
            tollgate_engine::Identity::Imsi(n) => format!("imsi:{n}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(event.record_identity, format!("cdr:{digest}:#{position}:{subscriber}"));
    }
}

#[test]
fn a_csv_record_id_belongs_to_its_source_and_a_file_delivered_again_through_its_mapping_is_a_duplicate() {
    let h = Harness::new("identity-sources");
    let mapping = |file: &str, source: Option<&str>| {
        let text = match source {
            Some(source) => format!("source = {source:?}\n{MAPPING}"),
            None => MAPPING.to_owned(),
        };
        let path = h.write(file, &text);
        Format::Csv(Mapping::load(&path).expect("mapping"))
    };
    let msc_a = mapping("msc-a.toml", None);
    let msc_b = mapping("msc-b.toml", Some("msc-b"));
    let also_a = mapping("copy.toml", Some("msc-a"));
    let line = format!("{HEADER}y1,491700000001,4990012345,voice,2026-03-02 10:00:00,60000\n");
    let run = |name: &str, format: &Format| {
        let file = h.write(name, &line);
        let summary = h.process(&file, format);
        (summary.rated, summary.duplicates, h.rated_csv(&file))
    };
    let (rated, duplicates, lines) = run("a.csv", &msc_a);
    assert_eq!((rated, duplicates), (1, 0));
    assert_eq!(lines[0]["record_identity"], "csv:msc-a:y1:msisdn:491700000001", "the mapping file's name");
    let (rated, _, lines) = run("b.csv", &msc_b);
    assert_eq!(rated, 1, "the same id from another source is another record");
    assert_eq!(lines[0]["record_identity"], "csv:msc-b:y1:msisdn:491700000001");
    assert_eq!(run("a-again.csv", &msc_a).1, 1, "the file delivered again under another name");
    assert_eq!(run("c.csv", &also_a).1, 1, "another mapping naming the same source");
    assert_eq!(h.balance(1), d("10.00") - d("4.98"));
}

#[test]
fn a_run_interrupted_before_record_identities_resumes_with_its_old_keys_and_charges_nothing_twice() {
    use tollgate_engine::{RecordCharge, RecordKey, ServiceRef, Usage};
    let mut text = HEADER.to_owned();
    for n in 1..=4 {
        text.push_str(&format!("z{n},491700000001,4990012345,voice,2026-03-02 10:0{n}:00,60000\n"));
    }
    let name = "upgrade.csv";
    // The outputs and checkpoint as a run left them after its first batch...
    let h = Harness::with_batch("identity-upgrade", 1);
    let file = h.write(name, &text);
    h.process_batches_then_crash(&file, &format(), 1);
    let saved: Vec<(PathBuf, Vec<u8>)> = [&h.config.out_dir, &h.config.state_dir]
        .into_iter()
        .flat_map(|dir| std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()))
        .map(|path| {
            let bytes = std::fs::read(&path).expect("file");
            (path, bytes)
        })
        .collect();
    drop(h);
    // ...by a build that keyed records by their ids alone, and whose engine had charged
    // records 1 and 2 (batch 2 was charged when it was killed), each tagged with its
    // origin as the pipeline makes it (the file's name and size, the record's number).
    let h = Harness::with_batch("identity-upgrade", 1);
    let file = h.write(name, &text);
    let seed = xxhash_rust::xxh3::xxh3_64(format!("{name}:{}", text.len()).as_bytes());
    let old_charges = (1..=2u64)
        .map(|n| RecordCharge {
            identity: None,
            key: RecordKey::of(&format!("z{n}")),
            origin: xxhash_rust::xxh3::xxh3_64_with_seed(&n.to_le_bytes(), seed),
            account: 1,
            subscription: 10,
            usage: Usage {
                service: ServiceRef::Name("voice".into()),
                rating_group: None,
                destination: Some("4990012345".into()),
                start_utc_seconds: NOW - 2 * 3600 + 60 * n as i64,
                units: 60,
            },
        })
        .collect();
    h.engine.charge_records(old_charges).expect("charged");
    for (path, bytes) in &saved {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
        std::fs::write(path, bytes).expect("restored");
    }
    let checkpoint = h.config.state_dir.join(format!("{name}.checkpoint.json"));
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&checkpoint).expect("checkpoint")).expect("json");
    assert_eq!(value["keys"], "record_identity", "{value}");
    value.as_object_mut().expect("object").remove("keys");
    std::fs::write(&checkpoint, serde_json::to_vec(&value).expect("json")).expect("checkpoint");

    let summary = h.process(&file, &format());
    assert_eq!((summary.rated, summary.duplicates, summary.rejected), (4, 0, 0), "{summary:?}");
    assert_eq!(h.balance(1), d("10.00") - d("9.96"), "four calls charged once each");
    // The file keeps the keys it was started with, and its rated lines say so.
    let identities: Vec<String> = h.rated_csv(&file).iter().map(|r| r["record_identity"].clone()).collect();
    assert_eq!(identities[1..], ["z2", "z3", "z4"]);
}

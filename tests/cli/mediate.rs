//! `tollgate mediate` as an operator runs it: a large CSV file, the process killed with
//! SIGKILL in the middle, then run again: the outputs and balances equal a clean run's.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{scratch, tollgate};

pub(crate) const MAPPING: &str = r#"
time_format = "%Y-%m-%d %H:%M:%S"
[fields]
record_id = { column = "id" }
subscriber = { column = "msisdn" }
service = { value = "voice" }
destination = { column = "called" }
start = { column = "start" }
units = { column = "seconds" }
"#;

const SUBSCRIBERS: u64 = 5;

pub(crate) fn setup(data: &Path) {
    let data_dir = data.to_str().expect("path");
    for n in 1..=SUBSCRIBERS {
        let id = n.to_string();
        let create = tollgate(
            &["account", "create", "--data-dir", data_dir, "--id", &id, "--kind", "postpaid", "--currency", "EUR"]
                .into_iter()
                .chain(["--credit-limit", "100000000"])
                .collect::<Vec<_>>(),
            "",
        );
        assert_eq!(create.status.code(), Some(0), "{}", String::from_utf8_lossy(&create.stderr));
        let subscription = (n * 10).to_string();
        let identity = format!("msisdn:4917000000{n:02}");
        let subscribe = tollgate(
            &[
                "account",
                "subscribe",
                "--data-dir",
                data_dir,
                "--id",
                &id,
                "--subscription",
                &subscription,
                "--plan",
                "mobile-prepaid-s",
                "--identity",
                &identity,
            ],
            "",
        );
        assert_eq!(subscribe.status.code(), Some(0), "{}", String::from_utf8_lossy(&subscribe.stderr));
    }
}

pub(crate) fn mediate_args<'a>(data: &'a str, out: &'a str, mapping: &'a str, file: &'a str) -> Vec<&'a str> {
    vec![
        "mediate",
        "--data-dir",
        data,
        "--out",
        out,
        "--mapping",
        mapping,
        "--max-age-days",
        "100000",
        "--batch",
        "2048",
        file,
    ]
}

pub(crate) fn balances(data: &Path) -> Vec<Value> {
    (1..=SUBSCRIBERS)
        .map(|n| {
            let output = tollgate(
                &["balance", "show", "--data-dir", data.to_str().expect("path"), "--account", &n.to_string()],
                "",
            );
            let view: Value = serde_json::from_slice(&output.stdout).expect("balance json");
            view["body"]["balance"].clone()
        })
        .collect()
}

#[test]
fn mediate_killed_with_sigkill_resumes_to_exactly_a_clean_run() {
    let dir = scratch("mediate-kill");
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let input = dir.join("calls.csv");
    let mut text = String::from("id,msisdn,called,start,seconds\n");
    for n in 0..200_000u64 {
        let who = 1 + n % SUBSCRIBERS;
        let called = if n % 3 == 0 { "4990012345" } else { "4930123456" };
        let (minute, second) = ((n / 60) % 60, n % 60);
        text.push_str(&format!(
            "call-{n},4917000000{who:02},{called},2026-03-02 10:{minute:02}:{second:02},{}\n",
            1 + n % 900
        ));
        if n % 1000 == 0 {
            // A duplicate of an earlier record, and a malformed one.
            text.push_str(&format!("call-{},4917000000{who:02},{called},2026-03-02 10:00:00,30\n", n / 2));
            text.push_str("broken,4917000000x,,,\n");
        }
    }
    std::fs::write(&input, text).expect("input");
    let (mapping, input) = (mapping.to_str().expect("path"), input.to_str().expect("path"));

    let clean = dir.join("clean");
    setup(&clean);
    let clean_out = clean.join("out");
    let (clean_data, clean_out_text) = (clean.to_str().expect("path"), clean_out.to_str().expect("path"));
    let output = tollgate(&mediate_args(clean_data, clean_out_text, mapping, input), "");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));

    let crashed = dir.join("crashed");
    setup(&crashed);
    let crashed_out = crashed.join("out");
    let (crashed_data, crashed_out_text) = (crashed.to_str().expect("path"), crashed_out.to_str().expect("path"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(mediate_args(crashed_data, crashed_out_text, mapping, input))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mediate starts");
    let checkpoint = crashed.join("mediation/state/calls.csv.checkpoint.json");
    let started = Instant::now();
    loop {
        let progress: Option<Value> =
            std::fs::read(&checkpoint).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if progress.is_some_and(|p| p["summary"]["records_in"].as_u64().unwrap_or(0) > 10_000) {
            break;
        }
        assert!(child.try_wait().expect("poll").is_none(), "mediate finished before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let output = tollgate(&mediate_args(crashed_data, crashed_out_text, mapping, input), "");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("resumed 1 times"), "the second run resumed: {stdout}");

    for suffix in ["rated.csv", "rated.jsonl", "rejects.csv"] {
        let name = format!("calls.csv.{suffix}");
        let (a, b) = (
            std::fs::read(clean_out.join(&name)).expect("clean"),
            std::fs::read(crashed_out.join(&name)).expect("resumed"),
        );
        assert!(a == b, "{name} differs between the clean and the resumed run ({} vs {} bytes)", a.len(), b.len());
    }
    let summary = |out: &Path| -> Value {
        let mut s: Value =
            serde_json::from_slice(&std::fs::read(out.join("calls.csv.summary.json")).expect("summary")).expect("json");
        s["resumed"] = Value::Null;
        s
    };
    let clean_summary = summary(&clean_out);
    assert_eq!(clean_summary, summary(&crashed_out));
    assert_eq!(clean_summary["duplicates"], 200);
    assert_eq!(clean_summary["rejected"], 200);
    assert_eq!(balances(&clean), balances(&crashed), "balances equal a clean run's");
    std::fs::remove_dir_all(dir).ok();
}

/// A file of `count` calls from subscribers 1 to 5, of which `unknown` come from a number
/// no subscription has (rejected).
fn calls_file(path: &Path, count: u64, unknown: u64) {
    let mut text = String::from("id,msisdn,called,start,seconds\n");
    for n in 0..count {
        let msisdn = if n < unknown { format!("4917999999{n:02}") } else { format!("4917000000{:02}", 1 + n % 5) };
        text.push_str(&format!("{}-{n},{msisdn},4930123456,2026-03-02 10:{:02}:00,30\n", path.display(), n % 60));
    }
    std::fs::write(path, text).expect("calls");
}

/// Issue 19, mediation rejects: a file of a source (the directory `msc1`) with most of its
/// records from unknown subscribers raises an alarm on `mediation/msc1`; a clean file of
/// another source leaves it; the next clean file of `msc1` clears it.
#[test]
fn a_file_whose_rejects_pass_the_threshold_raises_an_alarm_cleared_by_a_clean_file_of_its_source() {
    use super::alarms::{alarm_of, all_alarms, open_alarms};
    let dir = scratch("mediate-rejects-alarm");
    let data = dir.join("data");
    setup(&data);
    let (data_dir, out) = (data.display().to_string(), dir.join("out").display().to_string());
    let database = dir.join("bss.sqlite3").display().to_string();
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let mapping = mapping.display().to_string();
    for source in ["msc1", "msc2"] {
        std::fs::create_dir_all(dir.join(source)).expect("source dir");
    }
    let mediate = |file: &Path| {
        let file = file.display().to_string();
        let mut args = mediate_args(&data_dir, &out, &mapping, &file);
        args.extend(["--database", database.as_str(), "--reject-alarm-percent", "10"]);
        let output = tollgate(&args, "");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    // 12 of 40 rejected: 30 %.
    let bad = dir.join("msc1/bad.csv");
    calls_file(&bad, 40, 12);
    assert!(mediate(&bad).contains("12 rejected"));
    let open = open_alarms(&database);
    let alarm = alarm_of(&open, "mediation/msc1").unwrap_or_else(|| panic!("{open:?}"));
    assert_eq!(alarm[1..6], ["major", "raised", "unacknowledged", "mediation/msc1", "corruptData"]);
    assert!(alarm[6].contains("12 of 40 records rejected"), "{alarm:?}");

    // Another source's clean file changes nothing; 4 of 40 (10 %) is not above the threshold.
    let other = dir.join("msc2/clean.csv");
    calls_file(&other, 40, 0);
    mediate(&other);
    assert!(alarm_of(&open_alarms(&database), "mediation/msc1").is_some());
    let good = dir.join("msc1/good.csv");
    calls_file(&good, 40, 4);
    assert!(mediate(&good).contains("4 rejected"));
    assert_eq!(alarm_of(&open_alarms(&database), "mediation/msc1"), None, "cleared");
    let all = all_alarms(&database);
    assert_eq!(alarm_of(&all, "mediation/msc1").expect("kept")[..3], [alarm[0].as_str(), "cleared", "cleared"]);
    assert_eq!(alarm_of(&all, "mediation/msc2"), None, "a clean source never had one");
    std::fs::remove_dir_all(dir).ok();
}

/// `serve --mediation-watch`: usage files rated through the server's own engine, beside
/// online charging. A file dropped into DIR/incoming is rated and moved to processed, its
/// outputs in DATA/mediation/out, its rejects judged (the `mediation/SOURCE` alarm) and
/// counted on `/metrics`. A server stopped (SIGTERM) in the middle of a file leaves it in
/// incoming, stopped between two batches; started again, it finishes it. Every call is
/// charged exactly once: the balances equal those of `tollgate mediate` on a fresh copy.
#[test]
fn serve_rates_the_files_of_its_watched_directory_and_a_stop_mid_file_resumes_exactly_once() {
    use super::alarms::{alarm_of, open_alarms};
    use super::fraud::metric;
    let dir = scratch("serve-mediation");
    let (data, clean) = (dir.join("data"), dir.join("clean"));
    setup(&data);
    setup(&clean);
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let spool = dir.join("msc7");
    let database = dir.join("bss.sqlite3").display().to_string();
    let flags = [
        "--mediation-watch",
        spool.to_str().expect("path"),
        "--mediation-mapping",
        mapping.to_str().expect("path"),
        "--mediation-max-age-days",
        "100000",
        "--mediation-batch",
        "50",
        "--database",
        &database,
    ];
    let start = || super::start_servers(&data, "ocs.mediation.test", &flags).0;
    let drop_in = |name: &str, count: u64, unknown: u64| {
        let staged = spool.join(format!(".{name}"));
        calls_file(&staged, count, unknown);
        std::fs::rename(&staged, spool.join("incoming").join(name)).expect("into incoming");
    };
    let processed = |name: &str| spool.join("processed").join(name).exists();
    let wait_until = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !check() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // A small file with 12 of 40 records from unknown subscribers: rated, alarmed, counted.
    let server = start();
    let admin = super::admin_address_of(&data);
    wait_until("the server made its incoming directory", &|| spool.join("incoming").is_dir());
    drop_in("bad.csv", 40, 12);
    wait_until("bad.csv was rated", &|| processed("bad.csv"));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(data.join("mediation/out/bad.csv.summary.json")).expect("summary"))
            .expect("JSON");
    assert_eq!(
        (summary["records_in"].as_u64(), summary["rated"].as_u64(), summary["rejected"].as_u64()),
        (Some(40), Some(28), Some(12))
    );
    assert_eq!(metric(&admin, "tollgate_mediation_records_total{outcome=\"rated\"}"), Some(28));
    assert_eq!(metric(&admin, "tollgate_mediation_records_total{outcome=\"rejected\"}"), Some(12));
    assert_eq!(metric(&admin, "tollgate_mediation_files_total{outcome=\"rated\"}"), Some(1));
    assert_eq!(metric(&admin, "tollgate_mediation_files_waiting"), Some(0));
    let alarm = alarm_of(&open_alarms(&database), "mediation/msc7").expect("the rejects alarm");
    assert!(alarm[6].contains("12 of 40 records rejected"), "{alarm:?}");

    // A file of many batches, the server stopped while it is under way.
    drop_in("big.csv", 12_000, 0);
    wait_until("big.csv is under way", &|| {
        metric(&admin, "tollgate_mediation_file_bytes{part=\"done\"}").is_some_and(|done| done > 0)
            || processed("big.csv")
    });
    super::stop_server(server);
    assert!(!processed("big.csv"), "stopped before the end of the file (a faster machine: raise the count)");
    assert!(spool.join("incoming/big.csv").exists(), "left in incoming to resume");
    let server = start();
    wait_until("big.csv was rated after the restart", &|| processed("big.csv"));
    super::stop_server(server);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(data.join("mediation/out/big.csv.summary.json")).expect("summary"))
            .expect("JSON");
    assert_eq!((summary["rated"].as_u64(), summary["resumed"].as_u64()), (Some(12_000), Some(1)));

    // The same calls through `tollgate mediate` on a fresh copy: the same balances.
    let (clean_dir, out) = (clean.display().to_string(), dir.join("clean-out").display().to_string());
    for name in ["bad.csv", "big.csv"] {
        let file = spool.join("processed").join(name).display().to_string();
        let output = tollgate(&mediate_args(&clean_dir, &out, mapping.to_str().expect("path"), &file), "");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    assert_eq!(balances(&data), balances(&clean), "each call charged once");
    std::fs::remove_dir_all(dir).ok();
}

/// `tollgate mediate --watch DIR --once`: the files in DIR/incoming are rated in name
/// order and moved to processed; a file that cannot be read at all (`c.cdr`, read as
/// BER by its extension, is not a CDR file) goes to failed and the exit code says so.
#[test]
fn mediate_watch_once_rates_what_is_in_incoming_and_moves_each_file() {
    let dir = scratch("mediate-watch-once");
    let data = dir.join("data");
    setup(&data);
    let spool = dir.join("spool");
    std::fs::create_dir_all(spool.join("incoming")).expect("incoming");
    calls_file(&spool.join("incoming/a.csv"), 30, 0);
    calls_file(&spool.join("incoming/b.csv"), 20, 5);
    std::fs::write(spool.join("incoming/c.cdr"), b"not a CDR file").expect("c.cdr");
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let (data_dir, spool_dir) = (data.display().to_string(), spool.display().to_string());
    let args = [
        "mediate",
        "--data-dir",
        &data_dir,
        "--mapping",
        mapping.to_str().expect("path"),
        "--max-age-days",
        "100000",
        "--watch",
        &spool_dir,
        "--once",
    ];
    let output = tollgate(&args, "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "one file failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("a.csv: 30 records: 30 rated") && stdout.contains("b.csv: 20 records: 15 rated"),
        "{stdout}"
    );
    let names = |folder: &str| {
        let mut names: Vec<String> = std::fs::read_dir(spool.join(folder))
            .expect("folder")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("incoming"), Vec::<String>::new());
    assert_eq!(names("processed"), ["a.csv", "b.csv"]);
    assert_eq!(names("failed"), ["c.cdr"]);
    std::fs::remove_dir_all(dir).ok();
}

/// A watched directory the server cannot use stops `serve` at its start, naming the flag,
/// rather than leaving it running without mediation.
#[test]
fn serve_refuses_a_mediation_directory_it_cannot_make() {
    let dir = scratch("serve-mediation-bad-dir");
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, "not a directory").expect("file");
    let (data, spool) = (dir.join("data").display().to_string(), blocker.join("spool").display().to_string());
    let mut args = vec!["serve"];
    args.extend(super::LOOPBACK_LISTENERS);
    args.extend(["--data-dir", &data, "--mediation-watch", &spool]);
    let output = tollgate(&args, "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--mediation-watch: creating"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

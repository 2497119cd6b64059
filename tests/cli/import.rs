//! `tollgate import` end to end: generated legacy files imported, then `tollgate serve
//! --api-listen` applies the outbox and the engine serves the imported subscribers (Nchf
//! over a socket, `balance show`); and imports SIGKILLed mid-run and re-run end with the
//! same rows, outbox and rejects as a clean import, nothing twice and nothing missing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{http, scratch, start_servers, stop_server, tollgate};

fn run(args: &[&str], data: &Path) -> Value {
    let mut all = args.to_vec();
    let data = data.display().to_string();
    all.extend(["--data-dir", &data]);
    let output = tollgate(&all, "");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{args:?}: {err}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn generate(dir: &Path, rows: u64) -> (String, String, String, String) {
    let out = dir.join("gen");
    let output =
        tollgate(&["import", "generate", "--rows", &rows.to_string(), "--out", &out.display().to_string()], "");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let path = |name: &str| out.join(name).display().to_string();
    (path("customers.csv"), path("customers.toml"), path("subscriptions.csv"), path("subscriptions.toml"))
}

/// An Nchf create for `msisdn` asking for 1 MB of data (rating group 10): the status.
fn nchf_create(address: &str, msisdn: &str) -> u16 {
    let body = serde_json::json!({
        "subscriberIdentifier": format!("msisdn-{msisdn}"),
        "nfConsumerIdentification": {"nodeFunctionality": "SMF", "nFName": "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4c"},
        "invocationTimeStamp": "2026-11-23T10:00:00Z",
        "invocationSequenceNumber": 0,
        "multipleUnitUsage": [{"ratingGroup": 10, "requestedUnit": {"totalVolume": 1 << 20}}]
    });
    http(address, "POST", "/nchf-convergedcharging/v3/chargingdata", &body.to_string()).0
}

#[test]
fn imported_accounts_and_subscriptions_reach_the_engine_through_the_outbox() {
    let dir = scratch("import-engine");
    let data = dir.join("data");
    let (customers, customers_mapping, subscriptions, subscriptions_mapping) = generate(&dir, 100);
    let summary = run(&["import", "customers", &customers, "--mapping", &customers_mapping], &data);
    assert_eq!((summary["imported"].as_i64(), summary["rejected"].as_i64()), (Some(100), Some(0)), "{summary}");
    let summary = run(&["import", "subscriptions", &subscriptions, "--mapping", &subscriptions_mapping], &data);
    assert_eq!((summary["imported"].as_i64(), summary["rejected"].as_i64()), (Some(100), Some(0)), "{summary}");
    // 100 accounts, 100 subscriptions, and a suspension of row 100's.
    assert_eq!(run(&["import", "status"], &data)["outbox"]["pending"], 201);

    let flags = ["--api-listen", "127.0.0.1:0", "--outbox-lease-seconds", "1"];
    let (child, _, nchf) = start_servers(&data, "ocs.import.test", &flags);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let status = run(&["import", "status"], &data);
        if status["outbox"]["pending"] == 0 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (status["outbox"]["done"].as_i64(), status["outbox"]["failed"].as_i64()),
        (Some(201), Some(0)),
        "{status}"
    );
    // Row 7 is active on the prepaid plan (its data bundle grants the megabyte), row 100
    // suspended, and a number never imported unknown.
    assert_eq!(nchf_create(&nchf, "49150000000007"), 201);
    assert_eq!(nchf_create(&nchf, "49150000000100"), 403);
    assert_eq!(nchf_create(&nchf, "49150000000999"), 404);
    stop_server(child);
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("failed for good"), "{log}");

    // Row 7's billing account is the 7th: engine account ENGINE_ACCOUNT_BASE + 7, with
    // row 7's IMSI too.
    let view = run(&["balance", "show", "--subscriber", "imsi:262010000000007"], &data);
    assert_eq!(view["outcome"], "success", "{view}");
    assert_eq!(
        (view["body"]["account"].as_u64(), view["body"]["currency"].as_str()),
        (Some(1_000_000_000_007), Some("EUR"))
    );
    let organisation = run(&["balance", "show", "--account", "1000000000050"], &data);
    assert_eq!(
        (organisation["body"]["kind"].as_str(), organisation["body"]["credit_limit"].as_str()),
        (Some("postpaid"), Some("250")),
        "{organisation}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Starts an import in the background (its log, a line per committed batch, piped).
fn spawn_import(kind: &str, file: &str, mapping: &str, data: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["import", kind, file, "--mapping", mapping, "--batch", "50", "--data-dir"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("import starts")
}

/// SIGKILLs an import once it logged a batch committed at `rows` rows or more (it goes on
/// meanwhile: the kill lands anywhere in the batches after); returns the rows its run had
/// committed when it died.
fn kill_after(mut child: Child, kind: &str, rows: i64, data: &Path) -> i64 {
    use std::io::BufRead;
    let log = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    for line in log.lines().map_while(Result::ok) {
        let committed =
            line.split_whitespace().find_map(|field| field.strip_prefix("rows=")).and_then(|n| n.parse::<i64>().ok());
        if committed.is_some_and(|committed| committed >= rows) {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let status = run(&["import", "status"], data);
    let run = status["runs"].as_array().and_then(|runs| runs.iter().find(|r| r["kind"] == kind)).cloned();
    let run = run.expect("the run");
    assert_eq!(run["state"], "interrupted", "killed before it finished: {run}");
    run["rows"].as_i64().unwrap_or(0)
}

/// What a data directory's store holds, without the runs' ids.
fn holdings(data: &Path) -> Value {
    let mut status = run(&["import", "status"], data);
    for run in status["runs"].as_array_mut().expect("runs") {
        run.as_object_mut().expect("run").remove("run");
    }
    status
}

#[test]
fn a_killed_import_resumes_and_imports_every_row_once() {
    let dir = scratch("import-kill");
    let (customers, customers_mapping, subscriptions, subscriptions_mapping) = generate(&dir, 10_000);
    // Four rows with a bad e-mail address: their customers and subscriptions are rejected.
    let mut text = std::fs::read_to_string(&customers).expect("customers");
    for n in [707, 1407, 2107, 2807] {
        text = text.replace(&format!(",customer{n}@example.com"), &format!(",customer{n}.example.com"));
    }
    std::fs::write(&customers, text).expect("customers");

    let clean = dir.join("clean");
    run(
        &[
            "import",
            "customers",
            &customers,
            "--mapping",
            &customers_mapping,
            "--rejects",
            &dir.join("clean-c.csv").display().to_string(),
        ],
        &clean,
    );
    run(
        &[
            "import",
            "subscriptions",
            &subscriptions,
            "--mapping",
            &subscriptions_mapping,
            "--rejects",
            &dir.join("clean-s.csv").display().to_string(),
        ],
        &clean,
    );

    let data = dir.join("killed");
    let first = kill_after(spawn_import("customers", &customers, &customers_mapping, &data), "customers", 400, &data);
    let second =
        kill_after(spawn_import("customers", &customers, &customers_mapping, &data), "customers", first + 800, &data);
    assert!(second > first, "the second attempt resumed and went on: {first} then {second}");
    let summary = run(&["import", "customers", &customers, "--mapping", &customers_mapping], &data);
    assert_eq!(summary["resumed_after_row"].as_i64(), Some(second));
    assert_eq!(
        (
            summary["rows"].as_i64(),
            summary["imported"].as_i64(),
            summary["duplicates"].as_i64(),
            summary["rejected"].as_i64()
        ),
        (Some(10_000), Some(9996), Some(0), Some(4)),
        "{summary}"
    );
    kill_after(
        spawn_import("subscriptions", &subscriptions, &subscriptions_mapping, &data),
        "subscriptions",
        1000,
        &data,
    );
    let summary = run(&["import", "subscriptions", &subscriptions, "--mapping", &subscriptions_mapping], &data);
    assert_eq!((summary["imported"].as_i64(), summary["rejected"].as_i64()), (Some(9996), Some(4)), "{summary}");

    // The same rows, the same outbox (each account and subscription once: 9996 + 9996 and
    // 100 suspensions) and the same rejects as the clean import's.
    let killed = holdings(&data);
    assert_eq!(killed, holdings(&clean));
    assert_eq!(killed["outbox"]["pending"], 9996 + 9996 + 100, "{killed}");
    let rejects = |path: &str| std::fs::read_to_string(path).expect("rejects");
    assert_eq!(
        rejects(&customers.replace(".csv", ".rejects.csv")),
        rejects(&dir.join("clean-c.csv").display().to_string())
    );
    assert_eq!(
        rejects(&subscriptions.replace(".csv", ".rejects.csv")),
        rejects(&dir.join("clean-s.csv").display().to_string())
    );
    // Running it again changes nothing.
    let again = run(&["import", "subscriptions", &subscriptions, "--mapping", &subscriptions_mapping], &data);
    assert_eq!(again["already_complete"], true);
    assert_eq!(holdings(&data), killed);
    std::fs::remove_dir_all(dir).ok();
}

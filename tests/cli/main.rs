//! End-to-end tests of the `tollgate` binary: real processes, real files, real pipes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod alarms;
mod api;
mod bill_run;
mod disk;
mod fraud;
mod hostile;
mod import;
mod inventory;
mod lifecycle;
mod mediate;
mod metrics;
mod orders;
mod prepay;
mod rate_errors;
mod renewal;
mod rerate;
mod thresholds;
mod tls;
mod usage;

fn tollgate(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tollgate starts");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_owned();
    let writer = std::thread::spawn(move || input.write_all(stdin.as_bytes()));
    let output = child.wait_with_output().expect("tollgate runs");
    writer.join().expect("writer thread").expect("stdin written");
    output
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tariffs/examples").join(name).display().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect()
}

#[test]
fn tariff_check_accepts_the_examples() {
    let files = ["prepaid-mobile.toml", "postpaid-business.toml", "wholesale-international.toml"].map(example);
    let mut args = vec!["tariff", "check"];
    args.extend(files.iter().map(String::as_str));
    let output = tollgate(&args, "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.matches("ok: ").count(), 3, "{stdout}");
    assert!(stdout.contains("plan wholesale-intl v7"), "{stdout}");
}

#[test]
fn tariff_check_refuses_a_bad_plan_naming_file_line_and_field() {
    let dir = scratch("bad");
    let plan = dir.join("bad.toml");
    let text = std::fs::read_to_string(example("prepaid-mobile.toml")).expect("example");
    let text = text.replacen("increment = 10240", "increment = 0", 1);
    std::fs::write(&plan, &text).expect("write plan");
    let line = text.lines().position(|l| l == "increment = 0").expect("edited line") + 1;
    let output = tollgate(&["tariff", "check", plan.to_str().expect("path")], "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!("{}:{line}:", plan.display());
    assert!(stderr.contains(&expected), "expected {expected} in {stderr}");
    assert!(stderr.contains("field `rates[7].increment`"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn compiled_and_source_plans_rate_identically() {
    let dir = scratch("compile");
    let compiled = dir.join("prepaid.tgplan");
    let output =
        tollgate(&["tariff", "compile", &example("prepaid-mobile.toml"), "-o", compiled.to_str().expect("path")], "");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let events = concat!(
        r#"{"id":1,"service":"voice","destination":"+491701234567","start":"2026-03-02T06:59:00Z","units":120}"#,
        "\n",
        r#"{"id":2,"rating_group":10,"start":1772600000,"units":5000000}"#,
        "\n",
    );
    let from_source = tollgate(&["rate", "--plan", &example("prepaid-mobile.toml")], events);
    let from_compiled = tollgate(&["rate", "--plan", compiled.to_str().expect("path")], events);
    assert!(from_source.status.success());
    assert_eq!(json_lines(&from_source), json_lines(&from_compiled));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn rate_answers_every_line_in_order() {
    let events = [
        r#"{"id":"split","service":"voice","destination":"+491701234567","start":"2026-03-02T06:59:00Z","units":120}"#,
        r#"{"id":"bundle","service":"voice","destination":"491701234567","start":"2026-03-02T10:00:00Z","units":100,"allowances":[{"allowance":"national-minutes","remaining":30,"bucket":7}]}"#,
        "not json",
        r#"{"id":"nowhere","service":"voice","destination":"000","start":"2026-03-02T10:00:00Z","units":1}"#,
        r#"{"id":"badtime","service":"sms","start":"yesterday","units":1}"#,
        "",
        r#"{"id":"sms","service":"sms","start":"2026-03-02T10:00:00+01:00","units":3}"#,
    ];
    let long = format!(r#"{{"id":"{}","service":"sms","start":0,"units":1}}"#, "x".repeat(70_000));
    let input = format!("{}\n{long}\n", events.join("\n"));
    let output = tollgate(&["rate", "--plan", &example("prepaid-mobile.toml")], &input);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answers = json_lines(&output);
    let summary: Vec<(&str, &str)> =
        answers.iter().map(|a| (a["id"].as_str().unwrap_or("-"), a["status"].as_str().unwrap_or("?"))).collect();
    assert_eq!(
        summary,
        vec![
            ("split", "rated"),
            ("bundle", "rated"),
            ("-", "invalid"),
            ("nowhere", "unrated"),
            ("badtime", "invalid"),
            ("sms", "rated"),
            ("-", "invalid"),
        ]
    );
    let split = &answers[0];
    assert_eq!(split["amount"], "0.14");
    let bands: Vec<&str> =
        split["lines"].as_array().expect("lines").iter().map(|l| l["band"].as_str().unwrap_or("")).collect();
    assert_eq!(bands, vec!["offpeak", "peak"]);
    let bundle = &answers[1];
    assert_eq!((bundle["allowance_units"].as_u64(), bundle["amount"].as_str()), (Some(30), Some("0.11")));
    assert_eq!(answers[3]["reason"], "unknown_destination");
    assert!(answers[4]["error"].as_str().unwrap_or("").contains("field `start`"));
    assert_eq!(answers[5]["amount"], "0.27");
    assert_eq!(answers[6]["line"], 8, "line numbers count every input line");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("3 rated, 1 unrated, 3 invalid"), "{stderr}");
}

#[test]
fn demo_runs_the_main_job_and_verifies_it() {
    let output = tollgate(&["demo", "--subscribers", "2000", "--seconds", "1", "--clients", "2"], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("✓ conserved"), "{stdout}");
    assert!(stdout.contains("invariants: ✓ all hold"), "{stdout}");
    assert!(stdout.contains("state ✓ identical"), "{stdout}");
}

#[test]
fn engine_settings_out_of_bounds_are_refused_by_name() {
    let dir = scratch("bounds");
    let data_dir = dir.join("data");
    let data_dir = data_dir.to_str().expect("path");
    for (flag, value, expected) in [
        ("--shards", "0", "--shards must be between 1 and 256"),
        ("--shards", "257", "--shards must be between 1 and 256"),
        ("--dedupe-window", "0", "--dedupe-window must be between 1 and"),
        ("--dedupe-window", "4294967296", "--dedupe-window must be between 1 and"),
    ] {
        let output =
            tollgate(&["balance", "show", "--subscriber", "msisdn:1", "--data-dir", data_dir, flag, value], "");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} {value} was accepted");
        assert!(stderr.contains(expected), "{flag} {value}: {stderr}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn account_and_balance_commands_work_on_a_data_dir() {
    let dir = scratch("accounts");
    let data = dir.join("data");
    let data_dir = data.to_str().expect("path");
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", data_dir]);
        let output = tollgate(&all, "");
        let answer: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code(), answer)
    };
    let (code, _) =
        run(&["account", "create", "--id", "7", "--kind", "prepaid", "--currency", "EUR", "--balance", "3.00"]);
    assert_eq!(code, Some(0));
    let (code, _) = run(&[
        "account",
        "subscribe",
        "--id",
        "7",
        "--subscription",
        "70",
        "--plan",
        "mobile-prepaid-s",
        "--identity",
        "msisdn:+491700000007",
    ]);
    assert_eq!(code, Some(0));
    let (code, answer) = run(&["balance", "top-up", "--account", "7", "--amount", "2.50", "--reference", "voucher-1"]);
    assert_eq!((code, answer["body"]["balance_after"].as_str()), (Some(0), Some("5.50")));
    // The same voucher again is the same top-up: answered, not applied twice.
    let (_, again) = run(&["balance", "top-up", "--account", "7", "--amount", "2.50", "--reference", "voucher-1"]);
    assert_eq!(again["repeated"], true);
    let (code, refused) = run(&["balance", "adjust", "--account", "7", "--amount", "-9", "--reason", "test"]);
    assert_eq!((code, refused["outcome"].as_str()), (Some(2), Some("credit_limit_reached")));
    let (_, view) = run(&["balance", "show", "--subscriber", "msisdn:491700000007"]);
    assert_eq!(view["body"]["balance"], "5.50");
    let buckets = view["body"]["buckets"].as_array().expect("buckets");
    assert!(buckets.iter().any(|b| b["kind"] == "national-minutes" && b["remaining"] == "30000"), "{view}");
    let (code, unknown) = run(&["balance", "show", "--subscriber", "msisdn:499"]);
    assert_eq!((code, unknown["outcome"].as_str()), (Some(2), Some("unknown_subscriber")));
    let (code, granted) = run(&[
        "balance",
        "grant",
        "--account",
        "7",
        "--amount",
        "1.25",
        "--valid-until",
        "2099-01-01T00:00:00Z",
        "--reference",
        "bonus-1",
    ]);
    assert_eq!((code, granted["body"]["balance_after"].as_str()), (Some(0), Some("6.75")));

    // The audit trail, read from the journal.
    let output = tollgate(&["account", "history", "--id", "7", "--data-dir", data_dir], "");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let events = json_lines(&output);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
    assert_eq!(
        kinds,
        vec!["account_created", "opening_balance", "subscribed", "top_up", "money_bucket_added", "top_up"]
    );
    assert_eq!((events[3]["delta"].as_str(), events[3]["note"].as_str()), (Some("2.50"), Some("voucher-1")));
    std::fs::remove_dir_all(dir).ok();
}

/// Regression (issue 14, item 3): `--shards` other than the data directory's count hid
/// accounts; now it is refused, the default is the recorded count, and `reshard` is the
/// one way to change it.
#[test]
fn the_shard_count_is_the_data_dirs_and_changes_only_by_reshard() {
    let dir = scratch("reshard");
    let data = dir.join("data");
    let data_dir = data.to_str().expect("path");
    let create = ["account", "create", "--id", "9", "--kind", "prepaid", "--currency", "EUR", "--balance", "4.00"];
    let created = tollgate(&[&create[..], &["--data-dir", data_dir, "--shards", "3"]].concat(), "");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let show = |extra: &[&str]| {
        tollgate(&[&["balance", "show", "--account", "9", "--data-dir", data_dir], extra].concat(), "")
    };
    let refused = show(&["--shards", "2"]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("has 3 shards") && message.contains("tollgate reshard --to 2"), "{message}");
    let shown = show(&[]);
    let view: Value = serde_json::from_slice(&shown.stdout).expect("balance json");
    assert_eq!(view["body"]["balance"], "4.00", "the recorded count is the default");
    let resharded = tollgate(&["reshard", "--to", "2", "--data-dir", data_dir], "");
    assert!(resharded.status.success(), "{}", String::from_utf8_lossy(&resharded.stderr));
    let report: Value = serde_json::from_slice(&resharded.stdout).expect("report json");
    assert_eq!(
        (report["from"].as_u64(), report["to"].as_u64(), report["accounts"].as_u64()),
        (Some(3), Some(2), Some(1))
    );
    let view: Value = serde_json::from_slice(&show(&["--shards", "2"]).stdout).expect("balance json");
    assert_eq!(view["body"]["balance"], "4.00");
    let again = tollgate(&[&create[..], &["--data-dir", data_dir]].concat(), "");
    let answer: Value = serde_json::from_slice(&again.stdout).expect("answer json");
    assert_eq!(answer["repeated"], true, "the same create is answered from the window, on the new shard: {answer}");
    let view: Value = serde_json::from_slice(&show(&[]).stdout).expect("balance json");
    assert_eq!(view["body"]["balance"], "4.00", "account 9 is not created a second time");
    std::fs::remove_dir_all(dir).ok();
}

/// Starts `tollgate serve` on a free loopback port; returns the child and the address.
fn start_server(data: &Path, origin_host: &str) -> (Served, String) {
    start_server_with(data, origin_host, &[])
}

fn start_server_with(data: &Path, origin_host: &str, extra: &[&str]) -> (Served, String) {
    let (child, diameter, _) = start_servers(data, origin_host, extra);
    (child, diameter)
}

/// Starts `tollgate serve` with every front-end on free loopback ports; returns the child
/// and the Diameter and Nchf addresses. The gRPC and admin addresses are noted in the data
/// directory (`grpc_address_of`, `admin_address_of`), the server's log is copied to
/// `DATA.log` beside it.
/// `serve`'s listeners, each on a free loopback port.
const LOOPBACK_LISTENERS: [&str; 8] = [
    "--diameter-listen",
    "127.0.0.1:0",
    "--nchf-listen",
    "127.0.0.1:0",
    "--grpc-listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
];

fn start_servers(data: &Path, origin_host: &str, extra: &[&str]) -> (Served, String, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .args(LOOPBACK_LISTENERS)
        .args(["--origin-realm", "test.realm", "--origin-host", origin_host])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut log = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let (mut diameter, mut nchf, mut admin) = (None, None, None);
    let mut copy = std::fs::File::create(data.with_extension("log")).expect("log copy");
    while log.read_line(&mut line).unwrap_or(0) > 0 {
        copy.write_all(line.as_bytes()).expect("log copy");
        let address = line.find("listen=").and_then(|at| line[at + 7..].split_whitespace().next().map(str::to_owned));
        if line.contains("diameter server listening") {
            diameter = address;
        } else if line.contains("nchf server listening") {
            nchf = address;
        } else if line.contains("grpc server listening") {
            if let Some(address) = address {
                std::fs::write(data.join("grpc.address"), address).expect("note the grpc address");
            }
        } else if line.contains("admin server listening") {
            admin = address;
        }
        line.clear();
        if let (Some(diameter), Some(nchf), Some(admin), true) =
            (&diameter, &nchf, &admin, data.join("grpc.address").exists())
        {
            std::fs::write(data.with_extension("admin"), admin).expect("note the admin address");
            let (diameter, nchf) = (diameter.clone(), nchf.clone());
            // Keep draining the log (into the copy) so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in log.lines().map_while(Result::ok) {
                    let _ = writeln!(copy, "{line}");
                }
            });
            return (Served(Some(child)), diameter, nchf);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server exited before listening");
}

/// A running `tollgate serve`: killed (SIGKILL) and reaped when dropped while it still
/// runs, so a test that fails leaves no server behind. Stop it with [`stop_server`].
pub(crate) struct Served(Option<std::process::Child>);

impl Served {
    /// The child, no longer killed on drop.
    pub(crate) fn into_child(mut self) -> std::process::Child {
        self.0.take().expect("a served child")
    }
}

impl std::ops::Deref for Served {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("a served child")
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("a served child")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Stops the server with SIGTERM and checks it shut down cleanly.
fn stop_server(served: Served) {
    let mut child = served.into_child();
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("serve exits");
    assert!(exit.success(), "clean shutdown on SIGTERM: {exit:?}");
}

#[test]
fn serve_creates_a_private_grpc_token() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("grpc-token");
    let data = dir.join("data");
    let (child, _, _) = start_servers(&data, "ocs.token.test", &[]);
    stop_server(child);
    let token_file = data.join("grpc.token");
    let token = std::fs::read_to_string(&token_file).expect("token file");
    assert!(token.len() >= 32, "a long random token");
    let mode = std::fs::metadata(&token_file).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "readable by the owner only");
    std::fs::remove_dir_all(dir).ok();
}

/// Regression (issue 14, item 4): `grpc.token` was written without fsync, so a power cut
/// shortly after the first start left it empty and `serve` refused to start. It is now
/// written durably, and an empty file (nobody can hold an empty token) is replaced.
#[test]
fn serve_replaces_an_empty_grpc_token_left_by_a_power_cut() {
    let dir = scratch("grpc-token-empty");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("grpc.token"), "").expect("empty token");
    let (child, _, _) = start_servers(&data, "ocs.token-empty.test", &[]);
    stop_server(child);
    let token = std::fs::read_to_string(data.join("grpc.token")).expect("token file");
    assert!(token.len() >= 32, "a new token was written: {token:?}");
    let names: Vec<String> = std::fs::read_dir(&data)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "no temporary left: {names:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn serve_answers_diameter_and_stops_cleanly_on_sigterm() {
    use std::io::Read;
    let dir = scratch("serve");
    let data = dir.join("data");
    let (child, address) = start_server(&data, "ocs.cli.test");
    // A minimal CER: Origin-Host, Origin-Realm, Auth-Application-Id 4.
    fn avp(code: u32, data: &[u8]) -> Vec<u8> {
        let length = 8 + data.len();
        let mut out = code.to_be_bytes().to_vec();
        out.extend_from_slice(&((0x40u32 << 24) | length as u32).to_be_bytes());
        out.extend_from_slice(data);
        out.resize(length.div_ceil(4) * 4 + out.len() - length, 0);
        out
    }
    let mut body = avp(264, b"client.test");
    body.extend(avp(296, b"test"));
    body.extend(avp(258, &4u32.to_be_bytes()));
    let mut cer = ((1u32 << 24) | (20 + body.len()) as u32).to_be_bytes().to_vec();
    cer.extend_from_slice(&((0x80u32 << 24) | 257).to_be_bytes());
    cer.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
    cer.extend(body);
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    stream.write_all(&cer).expect("send CER");
    let mut header = [0u8; 20];
    stream.read_exact(&mut header).expect("CEA header");
    let length = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
    let mut rest = vec![0u8; length - 20];
    stream.read_exact(&mut rest).expect("CEA body");
    assert_eq!(u32::from_be_bytes([0, header[5], header[6], header[7]]), 257);
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("ocs.cli.test"), "CEA carries our Origin-Host");
    // Result-Code 2001 appears as AVP 268 with value 2001.
    let result = rest.windows(12).any(|w| w[..4] == 268u32.to_be_bytes() && w[8..] == 2001u32.to_be_bytes());
    assert!(result, "CEA Result-Code 2001");
    stop_server(child);
    std::fs::remove_dir_all(dir).ok();
}

/// Interop: python-diameter (PyPI), an independent Diameter stack, runs the scenario suite
/// in tests/interop/python_diameter_suite.py against `tollgate serve` over TCP.
#[test]
fn interop_python_diameter() {
    let available = Command::new("python3").args(["-c", "import diameter.node"]).status().is_ok_and(|s| s.success());
    assert!(available, "python-diameter is missing: pip install python-diameter==0.9.0 (bash .ci/run installs it)");
    let dir = scratch("interop-python");
    let data = dir.join("data");
    let data_dir = data.to_str().expect("path");
    for (id, balance) in [("101", "1.00"), ("102", "0.15")] {
        let msisdn = format!("msisdn:491700000{id}");
        for args in [
            vec!["account", "create", "--id", id, "--kind", "prepaid", "--currency", "EUR", "--balance", balance],
            vec![
                "account",
                "subscribe",
                "--id",
                id,
                "--subscription",
                id,
                "--plan",
                "mobile-prepaid-s",
                "--identity",
                &msisdn,
            ],
        ] {
            let mut all = args.clone();
            all.extend(["--data-dir", data_dir]);
            assert!(tollgate(&all, "").status.success());
        }
    }
    let (child, address) = start_server(&data, "ocs.test.realm");
    let port = address.rsplit(':').next().expect("port");
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_diameter_suite.py");
    let output = Command::new("python3").arg(&suite).args(["--port", port]).output().expect("suite runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stop_server(child);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}");
    // The session charged 1 MB + 0.5 MB of video once, the retransmission nothing: 1.00 − 0.15.
    let shown = tollgate(&["balance", "show", "--account", "101", "--data-dir", data_dir], "");
    let view: Value = serde_json::from_slice(&shown.stdout).expect("balance json");
    assert_eq!(view["body"]["balance"], "0.85");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn load_generators_drive_every_front_end_and_report_latency() {
    let dir = scratch("load");
    let data = dir.join("data");
    let (child, diameter, nchf) = start_servers(&data, "ocs.load.test", &["--demo-subscribers", "50"]);
    let token_file = data.join("grpc.token");
    let grpc_address = grpc_address_of(&data);
    let bounded = ["--seconds", "1", "--sessions", "4", "--subscribers", "50", "--requests", "400"];
    let runs = [
        ("diameter", diameter.clone(), vec![]),
        ("nchf", nchf, vec![]),
        ("grpc", grpc_address, vec!["--token-file".to_owned(), token_file.display().to_string()]),
    ];
    for (kind, target, extra) in runs {
        let mut args = vec!["load", kind, "--target", &target];
        args.extend(bounded);
        args.extend(extra.iter().map(String::as_str));
        let output = tollgate(&args, "");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{kind}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("latency µs: p50"), "{kind}: {stdout}");
        assert!(stdout.contains("transport failures: 0"), "{kind}: {stdout}");
    }
    stop_server(child);
    let refused = tollgate(&["load", "diameter", "--target", "10.1.2.3:3868", "--seconds", "1"], "");
    assert!(!refused.status.success(), "only loopback targets");
    std::fs::remove_dir_all(dir).ok();
}

/// Interop: Erlang/OTP's diameter application (RFC 4006 dictionary compiled by diameterc)
/// runs CER → CCR-I → CCR-U → CCR-T → DPR with MSCC against `tollgate serve` and checks
/// every CCA with its own decoder.
#[test]
fn interop_erlang_diameter() {
    let available = Command::new("diameterc").arg("-h").output().is_ok_and(|o| o.status.success());
    assert!(available, "Erlang/OTP diameter is missing: scripts/install-test-deps installs it");
    let dir = scratch("interop-erlang");
    let data = dir.join("data");
    let data_dir = data.to_str().expect("path");
    for args in [
        vec!["account", "create", "--id", "103", "--kind", "prepaid", "--currency", "EUR", "--balance", "1.00"],
        vec![
            "account",
            "subscribe",
            "--id",
            "103",
            "--subscription",
            "103",
            "--plan",
            "mobile-prepaid-s",
            "--identity",
            "msisdn:491700000103",
        ],
    ] {
        let mut all = args.clone();
        all.extend(["--data-dir", data_dir]);
        assert!(tollgate(&all, "").status.success());
    }
    let (child, address) = start_server(&data, "ocs.test.realm");
    let port = address.rsplit(':').next().expect("port");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/run-erlang-client.sh");
    let output = Command::new("bash").arg(&script).arg(port).output().expect("erlang client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stop_server(child);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}");
    let shown = tollgate(&["balance", "show", "--account", "103", "--data-dir", data_dir], "");
    let view: Value = serde_json::from_slice(&shown.stdout).expect("balance json");
    assert_eq!(view["body"]["balance"], "0.85", "1 MB + 0.5 MB of video charged once");
    std::fs::remove_dir_all(dir).ok();
}

/// A raw HTTP/1.1 exchange (Connection: close): status, headers, body.
fn http(address: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// The ChargingDataRef at the end of a create's `Location` header.
fn charging_data_ref(head: &str) -> String {
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .expect("Location header")
        .trim();
    location.rsplit('/').next().expect("reference").to_owned()
}

fn charging_data(sequence: u32, requested: Option<u64>, used: Option<u64>) -> String {
    let mut usage = serde_json::json!({"ratingGroup": 30});
    if let Some(units) = requested {
        usage["requestedUnit"] = serde_json::json!({"totalVolume": units});
    }
    if let Some(units) = used {
        usage["usedUnitContainer"] = serde_json::json!([{"localSequenceNumber": 1, "totalVolume": units}]);
    }
    serde_json::json!({
        "subscriberIdentifier": "msisdn-4917000000001",
        "nfConsumerIdentification": {"nodeFunctionality": "SMF", "nFName": "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4c"},
        "invocationTimeStamp": "2026-11-23T10:00:00Z",
        "invocationSequenceNumber": sequence,
        "multipleUnitUsage": [usage]
    })
    .to_string()
}

#[test]
fn nchf_converged_charging_session_over_http() {
    let dir = scratch("nchf");
    let (child, _, address) = start_servers(&dir.join("data"), "ocs.nchf.test", &["--demo-subscribers", "1"]);
    let base = "/nchf-convergedcharging/v3/chargingdata";
    let (status, head, body) = http(&address, "POST", base, &charging_data(0, Some(1 << 20), None));
    assert_eq!(status, 201, "{head}{body}");
    let reference = charging_data_ref(&head);
    let created: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(created["multipleUnitInformation"][0]["grantedUnit"]["totalVolume"], 1 << 20);
    assert_eq!(created["multipleUnitInformation"][0]["resultCode"], "SUCCESS");
    let update = charging_data(1, Some(1 << 20), Some(1 << 20));
    let (status, _, first) = http(&address, "POST", &format!("{base}/{reference}/update"), &update);
    assert_eq!(status, 200, "{first}");
    // A retransmitted update is answered the same and not charged twice.
    let (status, _, again) = http(&address, "POST", &format!("{base}/{reference}/update"), &update);
    assert_eq!((status, again), (200, first));
    let (status, _, body) =
        http(&address, "POST", &format!("{base}/{reference}/release"), &charging_data(2, None, Some(1 << 19)));
    assert_eq!((status, body.as_str()), (204, ""));
    let (status, head, body) = http(&address, "POST", &format!("{base}/nonsense-0123456789abcdef/update"), &update);
    assert_eq!(status, 404, "{head}{body}");
    assert!(head.to_ascii_lowercase().contains("application/problem+json"));
    let (status, _, body) = http(&address, "POST", base, r#"{"invocationSequenceNumber": "x"}"#);
    assert_eq!(status, 400);
    let problem: Value = serde_json::from_str(&body).expect("problem json");
    // Its mandatory IEs (nfConsumerIdentification, invocationTimeStamp) are missing.
    assert_eq!(problem["cause"], "MANDATORY_IE_MISSING", "{problem}");
    let (status, _, body) = http(&address, "POST", base, "{not json");
    assert_eq!(status, 400);
    let problem: Value = serde_json::from_str(&body).expect("problem json");
    assert_eq!(problem["cause"], "INVALID_MSG_FORMAT", "{problem}");
    stop_server(child);
    // Demo subscriber 1 starts with 20.00; 1 MB + 0.5 MB of video at 0.10/MB.
    let data = dir.join("data");
    let shown = tollgate(&["balance", "show", "--account", "1", "--data-dir", data.to_str().expect("path")], "");
    let view: Value = serde_json::from_slice(&shown.stdout).expect("balance json");
    assert_eq!(view["body"]["balance"], "19.85");
    std::fs::remove_dir_all(dir).ok();
}

/// Regression (issue 14, item 1): an update or release on a released or made-up
/// ChargingDataRef with a usedUnitContainer was answered 200/204 and charged.
#[test]
fn nchf_usage_on_a_released_or_made_up_reference_is_404_and_charges_nothing() {
    let dir = scratch("nchf-unknown-ref");
    let data = dir.join("data");
    let (child, _, address) = start_servers(&data, "ocs.nchf-ref.test", &["--demo-subscribers", "1"]);
    let base = "/nchf-convergedcharging/v3/chargingdata";
    // A reference in our format for a real subscriber, but for no session ever created.
    let made_up: String =
        "msisdn-4917000000001".bytes().map(|b| format!("{b:02x}")).collect::<String>() + "-0123456789abcdef";
    for action in ["update", "release"] {
        let (status, head, body) =
            http(&address, "POST", &format!("{base}/{made_up}/{action}"), &charging_data(1, None, Some(5 << 20)));
        assert_eq!(status, 404, "{action}: {head}{body}");
        assert!(head.to_ascii_lowercase().contains("application/problem+json"), "{head}");
        let problem: Value = serde_json::from_str(&body).expect("problem json");
        assert_eq!(problem["status"], 404);
    }
    let (status, head, _) = http(&address, "POST", base, &charging_data(0, Some(1 << 20), None));
    assert_eq!(status, 201);
    let reference = charging_data_ref(&head);
    let (status, _, _) =
        http(&address, "POST", &format!("{base}/{reference}/release"), &charging_data(1, None, Some(1 << 20)));
    assert_eq!(status, 204);
    for (sequence, action) in [(2, "update"), (3, "release")] {
        let (status, _, body) = http(
            &address,
            "POST",
            &format!("{base}/{reference}/{action}"),
            &charging_data(sequence, None, Some(5 << 20)),
        );
        assert_eq!(status, 404, "{action} after release: {body}");
    }
    stop_server(child);
    // Demo subscriber 1 starts with 20.00; only the 1 MB of video released was charged.
    let shown = tollgate(&["balance", "show", "--account", "1", "--data-dir", data.to_str().expect("path")], "");
    let view: Value = serde_json::from_slice(&shown.stdout).expect("balance json");
    assert_eq!(view["body"]["balance"], "19.90");
    std::fs::remove_dir_all(dir).ok();
}

/// schemathesis (PyPI) fuzzes the Nchf server with the 3GPP OpenAPI files in ../shared.
/// The longest test of the suite (about five minutes): named to sort first, since the
/// test harness starts tests in name order and the others then share the second core
/// while it runs, instead of leaving it idle at the end.
#[test]
fn a_schemathesis_run_against_the_nchf_server_with_the_3gpp_spec() {
    let spec =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/specs/nchf-rel17/TS32291_Nchf_ConvergedCharging.yaml");
    assert!(spec.exists(), "the 3GPP Nchf OpenAPI files are expected at {}", spec.display());
    let available = Command::new("st").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(available, "schemathesis is missing: scripts/install-test-deps installs it");
    let dir = scratch("schemathesis");
    let (child, _, address) = start_servers(&dir.join("data"), "ocs.st.test", &["--demo-subscribers", "10"]);
    // `format: float` is enforced (a binary32 range); schemathesis does not bound it, so a
    // hook tells it what the format means (tests/interop/st_float_range.py).
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let output = Command::new("st")
        .env("PYTHONPATH", &hooks)
        .env("SCHEMATHESIS_HOOKS", "st_float_range")
        .arg("run")
        .arg(&spec)
        .args(["--url", &format!("http://{address}/nchf-convergedcharging/v3")])
        // 30 generated cases per operation besides the coverage phase: the CI run must stay
        // under 30 minutes on two cores.
        .args(["--phases", "coverage,fuzzing", "--max-examples", "30", "--seed", "20261123", "--no-color"])
        .output()
        .expect("schemathesis runs");
    stop_server(child);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    std::fs::remove_dir_all(dir).ok();
}

/// The admin (health) address `start_servers` noted beside the data directory.
fn admin_address_of(data: &Path) -> String {
    std::fs::read_to_string(data.with_extension("admin")).expect("admin address")
}

/// The gRPC address `start_servers` noted in the data directory.
fn grpc_address_of(data: &Path) -> String {
    std::fs::read_to_string(data.join("grpc.address")).expect("grpc address")
}

/// Regression: `tollgate … | head` panicked ("failed printing to stdout: Broken pipe",
/// with a backtrace) once the reader had gone. It exits quietly, as a shell expects of a
/// process whose pipe closed (141: 128 + SIGPIPE).
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let plan = example("prepaid-mobile.toml");
    let plan = plan.as_str();
    // About 150 bytes a line: well past what a pipe holds before its reader is needed.
    let mut args = vec!["tariff", "check"];
    args.extend(std::iter::repeat_n(plan, 2000));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tollgate starts");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("tollgate runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}

//! `tollgate inventory` end to end: a number range loaded by prefix with golden numbers, a
//! SIM vendor file loaded with its keys sealed (the key never printed), a bad file refused
//! naming its line; then a real `tollgate serve --api-listen` reserving from what the CLI
//! loaded, and schemathesis with the TMF639 specification against the implemented
//! operations.

use std::path::Path;

use serde_json::{json, Value};

use super::api::{api_address, create_token, request, schemathesis, tmf_spec};
use super::{scratch, start_servers, stop_server, tollgate};

const FIXTURE: &str = "oss-adapters/inventory/tests/fixtures/vendor-output.txt";

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE).display().to_string()
}

/// Runs `tollgate inventory ARGS --data-dir DATA`; (success, stdout, stderr).
fn inventory(data: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["inventory"];
    all.extend_from_slice(args);
    let data = data.display().to_string();
    all.extend(["--data-dir", &data]);
    let output = tollgate(&all, "");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Loads a 1,000-number range (`*000` golden) and the fixture's five SIM cards.
fn load_stock(dir: &Path, data: &Path) {
    let (ok, out, err) = inventory(
        data,
        &[
            "number-range",
            "load",
            "--prefix",
            "4477009",
            "--start",
            "00000",
            "--end",
            "00999",
            "--golden",
            "*000=EUR:99.50",
        ],
    );
    assert!(ok, "{err}");
    let loaded: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!((loaded["numbers"].as_i64(), loaded["goldenNumbers"].as_i64()), (Some(1000), Some(1)), "{loaded}");
    let key = dir.join("sim.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).expect("key file");
    let (ok, _, err) = inventory(data, &["sim", "load", &fixture()]);
    assert!(!ok && err.contains("--sim-key-file"), "keys are never stored in clear: {err}");
    let (ok, out, err) =
        inventory(data, &["sim", "load", &fixture(), "--sim-key-file", &key.display().to_string(), "--plmn", "00101"]);
    assert!(ok, "{err}");
    assert!(!format!("{out}{err}").contains("B02C780E"), "the key never shows: {out}{err}");
}

#[test]
fn the_inventory_commands_load_list_show_and_refuse_naming_the_line() {
    let dir = scratch("inventory-cli");
    let data = dir.join("data");
    load_stock(&dir, &data);
    let (ok, out, _) = inventory(&data, &["number-range", "list"]);
    assert!(ok && out.contains("447700900000..447700900999") && out.contains("available 1000"), "{out}");
    let (ok, out, _) = inventory(&data, &["list", "--kind", "sim"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(out.lines().all(|line| line.contains("\tSIMCard\tavailable\t")), "{out}");
    let (ok, out, _) = inventory(&data, &["show", "sim-8944001010000000017"]);
    let shown: Value = serde_json::from_str(&out).expect("JSON");
    assert!(ok && shown["hasKeys"] == json!(true) && !out.contains("B02C780E"), "{out}");
    let (ok, out, _) = inventory(&data, &["list", "--kind", "msisdn", "--category", "golden"]);
    assert!(ok && out.starts_with("msisdn-447700900000\tMSISDN\tavailable"), "{out}");

    let bad = dir.join("bad.out");
    std::fs::write(&bad, "Batch: BAD\nVar_Out: ICCID/IMSI\n8944001010000000010 001010000000001\n").expect("write");
    let (ok, _, err) = inventory(&data, &["sim", "load", &bad.display().to_string()]);
    assert!(!ok && err.contains("line 3, ICCID") && err.contains("check digit"), "{err}");
    std::fs::write(&bad, b"Batch: BAD\nVar_Out: ICCID/IMSI\n89440\xff\n").expect("write");
    let (ok, _, err) = inventory(&data, &["sim", "load", &bad.display().to_string()]);
    assert!(!ok && err.contains("line 3, byte 36: not UTF-8"), "invalid UTF-8 named by line and byte: {err}");
    let (ok, _, err) = inventory(&data, &["number-range", "load", "447700900500..447700901499"]);
    assert!(!ok && err.contains("first"), "an overlap names the field: {err}");
    let element = dir.join("hss.json");
    std::fs::write(&element, r#"{"resourceSpecification": {"id": "NetworkElement"}, "name": "HSS", "category": "HSS", "address": "hss.example.net:3868"}"#).expect("write");
    let (ok, out, err) = inventory(&data, &["element", "create", "--file", &element.display().to_string()]);
    assert!(ok && out.contains("\"category\": \"HSS\""), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_api_reserves_what_the_cli_loaded_and_schemathesis_tmf639_finds_nothing() {
    let spec = tmf_spec("TMF639_ResourceInventory.swagger.json");
    let dir = scratch("schemathesis-tmf639");
    let data = dir.join("data");
    load_stock(&dir, &data);
    let admin = create_token(&data, "admin");
    let care = create_token(&data, "care");
    let (child, _, _) = start_servers(
        &data,
        "ocs.st639.test",
        &[
            "--api-listen",
            "127.0.0.1:0",
            "--api-rate",
            "100000",
            "--api-burst",
            "100000",
            "--reservation-hold-minutes",
            "5",
        ],
    );
    let address = api_address(&data);
    let base = "/tmf-api/resourceInventoryManagement/v4";
    let body = json!({"resourceSpecification": {"id": "MSISDN"}, "owner": "order-1"});
    let (status, _, reserved) = request(
        &address,
        "POST",
        &format!("{base}/reservation"),
        &care,
        &["Content-Type: application/json"],
        Some(&body),
    );
    assert_eq!((status, reserved["id"].as_str()), (201, Some("msisdn-447700900001")), "{reserved}");
    let until = reserved["reservedUntil"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).expect("an instant");
    let held_seconds = until.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((200..=300).contains(&held_seconds), "--reservation-hold-minutes 5 holds five minutes: {held_seconds} s");

    let output = schemathesis(&spec, &address, "resourceInventoryManagement", &admin, r"^/resource(/\{id\})?$");
    stop_server(child);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    std::fs::remove_dir_all(dir).ok();
}

//! The management API of a real `tollgate serve --api-listen` over a socket: a token made
//! with `tollgate token create`, offerings created, activated and read through the API and
//! the CLI, the audit trail verified; a billing account that reaches the engine once
//! across SIGKILLs; a hub listener that receives a signed event; and schemathesis with
//! the TMF620, TMF629 and TMF666 specifications against the implemented operations.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use super::{scratch, start_servers, stop_server, tollgate};

/// The API address `serve` logged (into DATA.log, which `start_servers` keeps writing).
pub(super) fn api_address(data: &Path) -> String {
    for _ in 0..200 {
        let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
        if let Some(line) = log.lines().find(|line| line.contains("management api listening")) {
            let at = line.find("listen=").expect("listen=") + 7;
            return line[at..].split_whitespace().next().expect("an address").to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the management API did not start");
}

pub(super) fn create_token(data: &Path, role: &str) -> String {
    let output = tollgate(&["token", "create", "--role", role, "--data-dir", &data.display().to_string()], "");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// One HTTP/1.1 exchange: status, head, JSON body (Null when empty).
pub(super) fn request(
    address: &str,
    method: &str,
    path: &str,
    token: &str,
    headers: &[&str],
    body: Option<&Value>,
) -> (u16, String, Value) {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    stream.write_all(format!("{head}\r\n{body}").as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The TMF v4 specification `file` in ../shared, once it and schemathesis are checked to be there.
pub(super) fn tmf_spec(file: &str) -> PathBuf {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/specs/tmf-v4").join(file);
    assert!(spec.exists(), "the TMF specification is expected at {}", spec.display());
    let available = Command::new("st").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(available, "schemathesis is missing: scripts/install-test-deps installs it");
    spec
}

/// schemathesis with `spec` against the API at `address` under `/tmf-api/{api}/v4`, on the
/// operations whose paths match `paths`: no 5xx, and documented answers conform.
pub(super) fn schemathesis(spec: &Path, address: &str, api: &str, token: &str, paths: &str) -> Output {
    schemathesis_with(spec, address, api, token, paths, &[])
}

/// [`schemathesis`] with `extra` arguments (a health check suppressed, say).
pub(super) fn schemathesis_with(
    spec: &Path,
    address: &str,
    api: &str,
    token: &str,
    paths: &str,
    extra: &[&str],
) -> Output {
    Command::new("st")
        .arg("run")
        .arg(spec)
        .args(["--url", &format!("http://{address}/tmf-api/{api}/v4")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--include-path-regex", paths])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        // 15 generated cases per operation (plus the coverage phase's): the CI run must stay
        // under 30 minutes on two cores; a longer run is `--max-examples` by hand.
        .args(["--max-examples", "15", "--seed", "20261205", "--no-color"])
        .args(extra)
        .output()
        .expect("schemathesis runs")
}

#[test]
fn the_management_api_serves_the_catalogue_with_cli_tokens_over_a_socket() {
    let dir = scratch("api");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let admin = create_token(&data, "admin");
    let reader = create_token(&data, "read_only");
    assert!(admin.starts_with("tg_") && admin.len() == 67, "the secret is printed once on stdout");
    let (child, _, _) = start_servers(&data, "ocs.api.test", &["--api-listen", "127.0.0.1:0"]);
    let address = api_address(&data);
    let base = "/tmf-api/productCatalogManagement/v4";
    let json_type = "Content-Type: application/json";

    assert_eq!(request(&address, "GET", &format!("{base}/productOffering"), "tg_nope", &[], None).0, 401);
    let offering = json!({"name": "Gold", "lifecycleStatus": "In design"});
    assert_eq!(
        request(&address, "POST", &format!("{base}/productOffering"), &reader, &[json_type], Some(&offering)).0,
        403
    );
    let plan = std::fs::read_to_string(super::example("prepaid-mobile.toml")).expect("plan");
    let price =
        json!({"name": "usage", "priceType": "usage", "tariffPlan": {"source": plan, "file": "prepaid-mobile.toml"}});
    let (status, _, price) =
        request(&address, "POST", &format!("{base}/productOfferingPrice"), &admin, &[json_type], Some(&price));
    assert_eq!(status, 201, "{price}");
    let offering =
        json!({"name": "Gold", "lifecycleStatus": "In design", "productOfferingPrice": [{"id": price["id"]}]});
    let (status, head, created) =
        request(&address, "POST", &format!("{base}/productOffering"), &admin, &[json_type], Some(&offering));
    assert_eq!(status, 201, "{created}");
    assert!(head.to_ascii_lowercase().contains("etag: w/\"1\""), "{head}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, _, active) = request(
        &address,
        "PATCH",
        &format!("{base}/productOffering/{id}"),
        &admin,
        &["Content-Type: application/merge-patch+json", "If-Match: W/\"1\""],
        Some(&json!({"lifecycleStatus": "Active"})),
    );
    assert_eq!((status, active["lifecycleStatus"].as_str()), (200, Some("Active")), "{active}");
    let (status, head, list) =
        request(&address, "GET", &format!("{base}/productOffering?lifecycleStatus=Active"), &reader, &[], None);
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(1)));
    assert!(head.to_ascii_lowercase().contains("x-total-count: 1"), "{head}");
    let (status, _, check) = request(&address, "GET", "/tmf-api/audit/v1/chainVerification", &admin, &[], None);
    assert_eq!((status, check["intact"].as_bool()), (200, Some(true)), "{check}");
    stop_server(child);

    // The CLI reads the same store through the same catalogue code.
    let data_dir = data.display().to_string();
    let shown = tollgate(&["offering", "show", &id, "--data-dir", &data_dir], "");
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["lifecycleStatus"], "Active");
    let file = dir.join("offering.json");
    std::fs::write(&file, r#"{"name": "Silver"}"#).expect("write");
    let created = tollgate(&["offering", "create", "--file", &file.display().to_string(), "--data-dir", &data_dir], "");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let created: Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let silver = created["id"].as_str().expect("id");
    let refused = tollgate(&["offering", "activate", silver, "--data-dir", &data_dir], "");
    assert!(!refused.status.success(), "In study → Active skips a step");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot go from \"In study\" to \"Active\""));
    let listed = tollgate(&["token", "list", "--data-dir", &data_dir], "");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("admin") && !listed.contains(&admin), "tokens are listed without secrets: {listed}");
    // Regression: a partner token was created for an account that does not exist (it
    // reached nothing, silently); its scope is an existing root account.
    let refused = tollgate(
        &["token", "create", "--role", "partner", "--scope-account", "no-such-account", "--data-dir", &data_dir],
        "",
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no such billing account"), "{refused:?}");
    std::fs::remove_dir_all(dir).ok();
}

/// schemathesis (PyPI) with the TMF620 specification against the implemented operations:
/// no 5xx, and every documented answer conforms to its schema.
#[test]
fn schemathesis_tmf620_against_the_catalogue() {
    let spec = tmf_spec("TMF620_ProductCatalog.swagger.json");
    let dir = scratch("schemathesis-tmf620");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let admin = create_token(&data, "admin");
    let (child, _, _) = start_servers(
        &data,
        "ocs.st620.test",
        &["--api-listen", "127.0.0.1:0", "--api-rate", "100000", "--api-burst", "100000"],
    );
    let address = api_address(&data);
    let paths = r"^/(productSpecification|productOffering|productOfferingPrice|category|hub)(/\{id\})?$";
    let output = schemathesis(&spec, &address, "productCatalogManagement", &admin, paths);
    stop_server(child);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    std::fs::remove_dir_all(dir).ok();
}

/// The engine link across SIGKILLs: a billing account created (and its credit limit
/// changed) through the API, the server killed right after each answer and restarted on
/// the same data directory; in the end the engine has the account once, with the last
/// credit limit, and no outbox row failed.
#[test]
fn a_billing_account_reaches_the_engine_once_across_sigkills() {
    let dir = scratch("api-engine-link");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let admin = create_token(&data, "admin");
    let json_type = "Content-Type: application/json";
    let flags = ["--api-listen", "127.0.0.1:0", "--outbox-lease-seconds", "1"];
    let kill = |served: super::Served| {
        let mut child = served.into_child();
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    };

    let (child, _, _) = start_servers(&data, "ocs.link.test", &flags);
    let address = api_address(&data);
    let customer = json!({"name": "Acme", "engagedParty": {"id": "acme", "@referredType": "Organization"}});
    let (status, _, customer) =
        request(&address, "POST", "/tmf-api/customerManagement/v4/customer", &admin, &[json_type], Some(&customer));
    assert_eq!(status, 201, "{customer}");
    let account = json!({
        "name": "HQ",
        "creditLimit": {"unit": "EUR", "value": "500.25"},
        "relatedParty": [{"id": customer["id"], "@referredType": "Customer"}],
    });
    let accounts = "/tmf-api/accountManagement/v4/billingAccount";
    let (status, _, created) = request(&address, "POST", accounts, &admin, &[json_type], Some(&account));
    assert_eq!(status, 201, "{created}");
    kill(child);
    let engine_id = created["engineAccountId"].as_u64().expect("an engine account id").to_string();
    let id = created["id"].as_str().expect("id").to_owned();

    let (child, _, _) = start_servers(&data, "ocs.link.test", &flags);
    let address = api_address(&data);
    let (status, _, changed) = request(
        &address,
        "PATCH",
        &format!("{accounts}/{id}"),
        &admin,
        &["Content-Type: application/merge-patch+json", "If-Match: W/\"1\""],
        Some(&json!({"creditLimit": {"unit": "EUR", "value": 750}})),
    );
    assert_eq!(status, 200, "{changed}");
    kill(child);

    // Restarted: whatever the kills interrupted is applied (a claim's lease is 1 s here).
    let (child, _, _) = start_servers(&data, "ocs.link.test", &flags);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    stop_server(child);
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("failed for good"), "{log}");

    let shown = tollgate(&["balance", "show", "--account", &engine_id, "--data-dir", &data.display().to_string()], "");
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let view: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(view["outcome"], "success", "{view}");
    let body = &view["body"];
    assert_eq!(
        (body["kind"].as_str(), body["currency"].as_str(), body["credit_limit"].as_str(), body["balance"].as_str()),
        (Some("postpaid"), Some("EUR"), Some("750"), Some("0")),
        "the engine has the account with the last limit: {view}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// schemathesis with the TMF629 (customer) and TMF666 (billing account) specifications
/// against the implemented operations: no 5xx, and documented answers conform.
#[test]
fn schemathesis_tmf629_and_tmf666_against_customers_and_accounts() {
    let dir = scratch("schemathesis-tmf629-666");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let admin = create_token(&data, "admin");
    let (child, _, _) = start_servers(
        &data,
        "ocs.st629.test",
        &["--api-listen", "127.0.0.1:0", "--api-rate", "100000", "--api-burst", "100000"],
    );
    let address = api_address(&data);
    let runs = [
        ("TMF629_Customer.swagger.json", "customerManagement", r"^/(customer|hub)(/\{id\})?$"),
        ("TMF666_Account.swagger.json", "accountManagement", r"^/(billingAccount|hub)(/\{id\})?$"),
    ];
    let mut failures = Vec::new();
    for (spec, api, paths) in runs {
        let output = schemathesis(&tmf_spec(spec), &address, api, &admin, paths);
        if !output.status.success() {
            failures.push(format!(
                "{spec}:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    stop_server(child);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(dir).ok();
}

/// `tollgate customer` on the store: create from a file, list, export, anonymise.
#[test]
fn the_customer_commands_create_export_and_anonymise() {
    let dir = scratch("customer-cli");
    let data_dir = dir.join("data").display().to_string();
    let file = dir.join("customer.json");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(&file, r#"{"name": "Ada Lovelace", "engagedParty": {"id": "ada", "@referredType": "Individual"}}"#)
        .expect("write");
    let created = tollgate(&["customer", "create", "--file", &file.display().to_string(), "--data-dir", &data_dir], "");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let created: Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let id = created["id"].as_str().expect("id");
    let listed = tollgate(&["customer", "list", "--data-dir", &data_dir], "");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("Ada Lovelace"));
    let export = tollgate(&["customer", "export", id, "--data-dir", &data_dir], "");
    let export: Value = serde_json::from_slice(&export.stdout).expect("JSON");
    assert_eq!(export["customer"]["name"], "Ada Lovelace");
    let erased = tollgate(&["customer", "anonymise", id, "--data-dir", &data_dir], "");
    assert!(erased.status.success(), "{}", String::from_utf8_lossy(&erased.stderr));
    let shown = tollgate(&["customer", "show", id, "--data-dir", &data_dir], "");
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["name"], "anonymised");
    let missing = tollgate(&["customer", "show", "nope", "--data-dir", &data_dir], "");
    assert!(!missing.status.success());
    std::fs::remove_dir_all(dir).ok();
}

/// One HTTP request as a listener receives it: its head (lowercase header names) and body.
pub(super) fn receive_one(listener: &std::net::TcpListener) -> (std::collections::HashMap<String, String>, Vec<u8>) {
    let (mut stream, _) = listener.accept().expect("a delivery");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let (headers, body_at) = loop {
        let n = stream.read(&mut buffer).expect("read");
        assert!(n > 0, "the connection closed mid-request");
        received.extend_from_slice(&buffer[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).into_owned();
            let headers: std::collections::HashMap<String, String> = head
                .lines()
                .skip(1)
                .filter_map(|line| line.split_once(':'))
                .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
                .collect();
            break (headers, end + 4);
        }
    };
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).expect("a content length");
    while received.len() < body_at + length {
        let n = stream.read(&mut buffer).expect("read");
        assert!(n > 0, "the connection closed mid-body");
        received.extend_from_slice(&buffer[..n]);
    }
    stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").expect("answer");
    (headers, received[body_at..body_at + length].to_vec())
}

/// Asserts that a delivery's `body` is signed with the listener's `secret` (its
/// timestamp within five minutes of now).
pub(super) fn assert_signed(secret: &str, headers: &std::collections::HashMap<String, String>, body: &[u8]) {
    let header = |name: &str| headers.get(name).map(String::as_str).unwrap_or("");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    let verified = tollgate_hub::signature::verify(
        secret,
        header("x-tollgate-timestamp"),
        header("x-tollgate-signature"),
        body,
        i64::try_from(now).expect("in range"),
        300,
    );
    assert!(verified.is_ok(), "{verified:?}");
}

/// `tollgate serve --api-listen` runs the hub's delivery worker: a listener registered
/// through the API receives a created customer's event, signed with the secret it was
/// given.
#[test]
fn serve_delivers_a_customer_event_to_a_registered_listener_signed() {
    let dir = scratch("hub");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let admin = create_token(&data, "admin");
    let (child, _, _) = start_servers(&data, "ocs.hub.test", &["--api-listen", "127.0.0.1:0"]);
    let address = api_address(&data);
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let callback = format!("http://{}/events", receiver.local_addr().expect("address"));
    let json_type = "Content-Type: application/json";
    let hub = "/tmf-api/customerManagement/v4/hub";
    let listener = json!({"callback": callback, "query": "eventType=CustomerCreateEvent"});
    let (status, _, registered) = request(&address, "POST", hub, &admin, &[json_type], Some(&listener));
    assert_eq!(status, 201, "{registered}");
    let secret = registered["secret"].as_str().expect("the secret").to_owned();
    let customer = json!({"name": "Ada", "engagedParty": {"id": "p", "@referredType": "Individual", "name": "Ada"}});
    let (status, _, created) =
        request(&address, "POST", "/tmf-api/customerManagement/v4/customer", &admin, &[json_type], Some(&customer));
    assert_eq!(status, 201, "{created}");
    let (headers, body) = receive_one(&receiver);
    assert_signed(&secret, &headers, &body);
    let header = |name: &str| headers.get(name).map(String::as_str).unwrap_or("");
    let event: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(event["eventType"], "CustomerCreateEvent");
    assert_eq!(event["event"]["customer"]["id"], created["id"]);
    assert_eq!(header("x-tollgate-event-id"), event["eventId"].as_str().expect("an event id"));
    assert_eq!(header("content-type"), "application/json");
    stop_server(child);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_silent_management_api_connection_is_closed_at_the_idle_time() {
    let dir = scratch("api-idle");
    let data = dir.join("data");
    let args = ["--api-listen", "127.0.0.1:0", "--api-idle-seconds", "1"];
    let (child, _, _) = start_servers(&data, "ocs.api-idle.test", &args);
    let address = api_address(&data);
    let silent = std::net::TcpStream::connect(&address).expect("connect");
    // A hang guard only: the server's deadline under test is one second.
    silent.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("timeout");
    let mut buf = [0u8; 1];
    let read = (&silent).read(&mut buf);
    assert!(
        match &read {
            Ok(0) => true,
            Err(error) => !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            Ok(_) => false,
        },
        "the silent connection was not closed: {read:?}"
    );
    // A client that talks is served.
    let token = create_token(&data, "admin");
    let (status, _, _) =
        request(&address, "GET", "/tmf-api/productCatalogManagement/v4/productOffering", &token, &[], None);
    assert_eq!(status, 200);
    stop_server(child);
    std::fs::remove_dir_all(dir).ok();
}

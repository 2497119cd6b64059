//! The Nchf_ConvergedCharging server over a real socket (HTTP/1.1): what a request is refused
//! for, and with which ProblemDetails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_engine::{
    AccountKind, Body, Engine, EngineConfig, Identity, Operation, Plans, Request, SystemClock, Target,
};
use tollgate_oss_adapters::nchf::formats::FORMATS;
use tollgate_oss_adapters::nchf::server::{router, serve, MAX_SUBSCRIBER_BYTES};

const BASE: &str = "/nchf-convergedcharging/v3/chargingdata";
const NF_NAME: &str = "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4c";

struct Server {
    engine: Arc<Engine>,
    address: std::net::SocketAddr,
    _runtime: tokio::runtime::Runtime,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("tollgate-nchf-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut plans = Plans::new();
    plans.load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tariffs/examples/prepaid-mobile.toml")).expect("plan");
    let engine = Arc::new(Engine::open(EngineConfig::new(&dir), plans, Arc::new(SystemClock)).expect("engine"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let address = listener.local_addr().expect("address");
    let app = router(Arc::clone(&engine), format!("http://{address}")).expect("router");
    runtime.spawn(serve(
        listener,
        app,
        tollgate_oss_adapters::limits::ConnectionLimits::default(),
        std::future::pending(),
    ));
    Server { engine, address, _runtime: runtime, dir }
}

/// A prepaid account `account` with one subscription under `identity`.
fn subscriber(server: &Server, account: u64, identity: Identity, balance: &str) {
    let run = |key: &str, operation| {
        server
            .engine
            .execute(Request { key: Some(key.into()), target: Target::Account(account), operation })
            .expect("answer")
    };
    run(
        &format!("a{account}"),
        Operation::CreateAccount {
            kind: AccountKind::Prepaid,
            currency: "EUR".into(),
            credit_limit: Decimal::ZERO,
            opening_balance: balance.parse().expect("amount"),
        },
    );
    run(
        &format!("s{account}"),
        Operation::CreateSubscription {
            subscription: account,
            plan: "mobile-prepaid-s".into(),
            identities: vec![identity],
        },
    );
}

fn balance(server: &Server, account: u64) -> Decimal {
    match server
        .engine
        .execute(Request { key: None, target: Target::Account(account), operation: Operation::BalanceEnquiry })
        .expect("answer")
        .body
    {
        Body::Balance(view) => view.balance,
        other => panic!("{other:?}"),
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("{err}: {}{}", self.head, self.body))
    }

    /// The `invalidParams` entries as (param, reason).
    fn invalid_params(&self) -> Vec<(String, String)> {
        let problem = self.json();
        problem["invalidParams"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (e["param"].as_str().unwrap_or("").to_owned(), e["reason"].as_str().unwrap_or("").to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The ChargingDataRef at the end of a create's `Location` header.
    fn reference(&self) -> String {
        let location = self
            .head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("location")).map(|(_, v)| v))
            .unwrap_or_else(|| panic!("a Location header: {}", self.head))
            .trim();
        location.rsplit('/').next().expect("reference").to_owned()
    }
}

fn post(server: &Server, path: &str, body: &Value) -> Answer {
    let body = body.to_string();
    let mut stream = TcpStream::connect(server.address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.address,
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Answer { status, head: head.to_owned(), body: body.to_owned() }
}

/// A ChargingDataRequest for rating group 30 (data), well formed in every field.
fn charging_data(subscriber: &str, sequence: u32, requested: Option<u64>, used: Option<u64>) -> Value {
    let mut usage = json!({"ratingGroup": 30});
    if let Some(units) = requested {
        usage["requestedUnit"] = json!({"totalVolume": units});
    }
    if let Some(units) = used {
        usage["usedUnitContainer"] = json!([{"localSequenceNumber": 1, "totalVolume": units}]);
    }
    json!({
        "subscriberIdentifier": subscriber,
        "nfConsumerIdentification": {"nodeFunctionality": "SMF", "nFName": NF_NAME},
        "invocationTimeStamp": "2026-11-23T10:00:00Z",
        "invocationSequenceNumber": sequence,
        "multipleUnitUsage": [usage]
    })
}

/// Sets the member at JSON `pointer` in `value`, adding the objects on the way.
fn set(value: &mut Value, pointer: &str, member: Value) {
    let mut at = value;
    let tokens: Vec<&str> = pointer.split('/').skip(1).collect();
    for (i, token) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        at = match at {
            Value::Array(items) => &mut items[token.parse::<usize>().expect("an index")],
            Value::Object(map) if last => {
                map.insert((*token).to_owned(), member);
                return;
            }
            Value::Object(map) => map.entry(*token).or_insert_with(|| json!({})),
            other => panic!("{pointer}: {other} has no members"),
        };
    }
    *at = member;
}

/// Asserts a 400 INVALID_MSG_FORMAT whose invalidParams name `param` with a reason that
/// contains `reason`, and that no engine-internal field name leaks.
fn assert_invalid(answer: &Answer, param: &str, reason: &str) {
    assert_eq!(answer.status, 400, "{}{}", answer.head, answer.body);
    assert!(answer.head.to_ascii_lowercase().contains("application/problem+json"), "{}", answer.head);
    assert_eq!(answer.json()["cause"], "INVALID_MSG_FORMAT", "{}", answer.body);
    let params = answer.invalid_params();
    assert!(
        params.iter().any(|(p, r)| p == param && r.contains(reason)),
        "expected {param} with a reason containing {reason:?}: {params:?}"
    );
    assert!(!answer.body.contains("field `"), "an engine field name leaked: {}", answer.body);
}

/// Regression: a create whose nfConsumerIdentification.nFName was "zzz" got 201 (Draft 7
/// has no `uuid` format, and an unknown format passed).
#[test]
fn a_create_whose_nf_name_is_not_a_uuid_is_400_naming_the_field() {
    let server = start("nf-name");
    subscriber(&server, 1, Identity::Msisdn("4917000000001".into()), "1.00");
    let mut request = charging_data("msisdn-4917000000001", 0, Some(1 << 20), None);
    request["nfConsumerIdentification"]["nFName"] = json!("zzz");
    let answer = post(&server, BASE, &request);
    assert_invalid(&answer, "/nfConsumerIdentification/nFName", "\"uuid\"");
    request["nfConsumerIdentification"]["nFName"] = json!(NF_NAME);
    let answer = post(&server, BASE, &request);
    assert_eq!(answer.status, 201, "{}", answer.body);
}

struct FormatCase {
    format: &'static str,
    pointer: &'static str,
    valid: Value,
    invalid: Value,
}

/// One field of each format of the schema, with a value of the format and one that is not.
fn format_cases() -> Vec<FormatCase> {
    vec![
        FormatCase {
            format: "byte",
            pointer: "/registrationChargingInformation/5GMMCapability",
            valid: json!("AQI="),
            invalid: json!("AQI"),
        },
        FormatCase {
            format: "date-time",
            pointer: "/invocationTimeStamp",
            valid: json!("2026-11-23T11:00:00.250+01:00"),
            invalid: json!("2026-02-30T10:00:00Z"),
        },
        FormatCase {
            format: "float",
            pointer: "/multipleUnitUsage/0/usedUnitContainer/0/nSPAContainerInformation/throughput/guaranteedThpt",
            valid: json!(1.5e6),
            invalid: json!(1e39),
        },
        FormatCase {
            format: "uuid",
            pointer: "/nfConsumerIdentification/nFName",
            valid: json!("6BA7B810-9DAD-11D1-80B4-00C04FD430C8"),
            invalid: json!("6ba7b810-9dad-11d1-80b4-00c04fd430c"),
        },
    ]
}

#[test]
fn every_format_of_the_schema_is_enforced_on_a_create() {
    let cases = format_cases();
    for format in FORMATS {
        assert!(cases.iter().any(|case| case.format == format.name), "no case for the format {}", format.name);
    }
    let server = start("formats");
    subscriber(&server, 1, Identity::Msisdn("4917000000001".into()), "5.00");
    for (sequence, case) in (0u32..).step_by(2).zip(&cases) {
        let mut request = charging_data("msisdn-4917000000001", sequence, Some(1 << 20), Some(1 << 10));
        request["registrationChargingInformation"] = json!({"registrationMessagetype": "INITIAL"});
        set(&mut request, case.pointer, case.invalid.clone());
        let answer = post(&server, BASE, &request);
        assert_invalid(&answer, case.pointer, &format!("\"{}\"", case.format));
        set(&mut request, case.pointer, case.valid.clone());
        request["invocationSequenceNumber"] = json!(sequence + 1);
        let answer = post(&server, BASE, &request);
        assert_eq!(answer.status, 201, "{}: {}", case.format, answer.body);
    }
}

fn nai(bytes: usize) -> String {
    let domain = "@example.com";
    format!("nai-{}{domain}", "u".repeat(bytes - "nai-".len() - domain.len()))
}

/// Regression: a subscriberIdentifier of about 250 bytes (a long `nai-…`) was answered 403
/// CHARGING_FAILED "field `key`: longer than 512 bytes", the engine's name for the
/// idempotency key the reference went into.
#[test]
fn a_subscriber_identifier_past_the_bound_is_400_naming_it_and_one_at_the_bound_is_charged() {
    let server = start("long-subscriber");
    let longest = nai(MAX_SUBSCRIBER_BYTES);
    let value = longest.strip_prefix("nai-").expect("nai");
    subscriber(&server, 1, Identity::Nai(value.into()), "1.00");
    for bytes in [MAX_SUBSCRIBER_BYTES + 1, 250, 300, 4096] {
        for path in [BASE.to_owned(), format!("{BASE}/{}-0123456789abcdef/update", "6e61692d40")] {
            let answer = post(&server, &path, &charging_data(&nai(bytes), 0, Some(1 << 20), None));
            assert_invalid(&answer, "/subscriberIdentifier", &format!("longer than {MAX_SUBSCRIBER_BYTES} bytes"));
        }
    }
    // At the bound, with the longest invocationSequenceNumber, the whole session works.
    let last = u32::MAX;
    let created = post(&server, BASE, &charging_data(&longest, last - 2, Some(1 << 20), None));
    assert_eq!(created.status, 201, "{}", created.body);
    let reference = created.reference();
    let update = post(
        &server,
        &format!("{BASE}/{reference}/update"),
        &charging_data(&longest, last - 1, Some(1 << 20), Some(1 << 20)),
    );
    assert_eq!(update.status, 200, "{}", update.body);
    let release =
        post(&server, &format!("{BASE}/{reference}/release"), &charging_data(&longest, last, None, Some(1 << 20)));
    assert_eq!(release.status, 204, "{}", release.body);
    assert_eq!(balance(&server, 1), "0.80".parse::<Decimal>().expect("amount"), "2 MB of data at 0.10/MB");
}

/// Regression: an update or release on a reference naming a subscriber longer than the bound
/// (decoded up to 256 bytes) reached the engine with a key past MAX_KEY_BYTES and was
/// answered 403 "field `key`: …"; no create can make such a reference, so it names nothing.
#[test]
fn an_update_on_a_reference_past_the_subscriber_bound_is_404_not_an_engine_error() {
    let server = start("long-reference");
    let long = nai(250);
    let value = long.strip_prefix("nai-").expect("nai");
    subscriber(&server, 1, Identity::Nai(value.into()), "1.00");
    let encoded: String = long.bytes().map(|b| format!("{b:02x}")).collect();
    let reference = format!("{encoded}-0123456789abcdef");
    for action in ["update", "release"] {
        let request = charging_data("msisdn-4917000000001", 1, None, Some(1 << 20));
        let answer = post(&server, &format!("{BASE}/{reference}/{action}"), &request);
        assert_eq!(answer.status, 404, "{action}: {}", answer.body);
        assert_eq!(answer.json()["cause"], "RESOURCE_NOT_FOUND", "{action}: {}", answer.body);
        assert!(!answer.body.contains("field `"), "an engine field name leaked: {}", answer.body);
    }
    assert_eq!(balance(&server, 1), "1.00".parse::<Decimal>().expect("amount"));
}

/// A suspended subscriber's create is 403 with END_USER_REQUEST_DENIED (TS 32.291
/// §6.1.7.3); usage reported on a session opened before is still charged (200), with the
/// unit's result END_USER_SERVICE_DENIED and nothing more granted; resumed, it is served.
#[test]
fn a_suspended_subscriber_is_refused_403_and_its_open_session_reports_usage() {
    let server = start("suspended");
    subscriber(&server, 7, Identity::Msisdn("4917000000007".into()), "10.00");
    let base = "/nchf-convergedcharging/v3/chargingdata";
    let created = post(&server, base, &charging_data("msisdn-4917000000007", 0, Some(1 << 20), None));
    assert_eq!(created.status, 201, "{}", created.body);
    let reference = created.reference();
    let suspend = server
        .engine
        .execute(Request {
            key: Some("suspend-7".into()),
            target: Target::Subscription(7),
            operation: Operation::Suspend { reason: "dunning".into() },
        })
        .expect("answer");
    assert_eq!(suspend.outcome, tollgate_engine::Outcome::Success);
    let refused = post(&server, base, &charging_data("msisdn-4917000000007", 9, Some(1 << 20), None));
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["cause"], "END_USER_REQUEST_DENIED");
    let update = post(
        &server,
        &format!("{base}/{reference}/update"),
        &charging_data("msisdn-4917000000007", 1, Some(1 << 20), Some(1 << 20)),
    );
    assert_eq!(update.status, 200, "{}", update.body);
    let unit = &update.json()["multipleUnitInformation"][0];
    assert_eq!(unit["resultCode"], "END_USER_SERVICE_DENIED", "{unit}");
    assert!(unit.get("grantedUnit").is_none_or(Value::is_null), "nothing more granted: {unit}");
    assert_eq!(balance(&server, 7), "9.90".parse::<Decimal>().expect("d"), "the usage was charged");
    server
        .engine
        .execute(Request {
            key: Some("resume-7".into()),
            target: Target::Subscription(7),
            operation: Operation::Resume,
        })
        .expect("answer");
    let again = post(&server, base, &charging_data("msisdn-4917000000007", 10, Some(1 << 20), None));
    assert_eq!(again.status, 201, "{}", again.body);
}

/// Regression: a used-unit container with `time` and `totalVolume` was charged for its
/// time as bytes (the volume went unpaid), and a quota asked in time was granted as time
/// on a rating group counted in bytes. The tariff's unit is read and granted; a container
/// without it is refused, naming it.
#[test]
fn usage_is_read_and_granted_in_the_unit_the_tariff_counts() {
    let server = start("measures");
    subscriber(&server, 8, Identity::Msisdn("4917000000008".into()), "1.00");
    let base = "/nchf-convergedcharging/v3/chargingdata";
    let mut create = charging_data("msisdn-4917000000008", 0, None, None);
    create["multipleUnitUsage"][0]["requestedUnit"] = json!({"time": 60});
    let created = post(&server, base, &create);
    assert_eq!(created.status, 201, "{}", created.body);
    let granted = &created.json()["multipleUnitInformation"][0]["grantedUnit"];
    assert!(granted["totalVolume"].as_u64().is_some_and(|v| v > 0) && granted.get("time").is_none(), "{granted}");
    let reference = created.reference();

    // Time and volume in one container: the 2 MiB are charged (RG 30 costs 0.10 a MiB).
    let mut update = charging_data("msisdn-4917000000008", 1, Some(1 << 20), None);
    update["multipleUnitUsage"][0]["usedUnitContainer"] =
        json!([{"localSequenceNumber": 1, "time": 60, "totalVolume": 2u64 << 20}]);
    let answer = post(&server, &format!("{base}/{reference}/update"), &update);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(balance(&server, 8), "0.80".parse::<Decimal>().expect("d"));

    // Time alone: refused naming the container; nothing charged.
    let mut release = charging_data("msisdn-4917000000008", 2, None, None);
    release["multipleUnitUsage"][0]["usedUnitContainer"] = json!([{"localSequenceNumber": 2, "time": 5_000_000}]);
    let refused = post(&server, &format!("{base}/{reference}/release"), &release);
    assert_eq!((refused.status, refused.json()["cause"].as_str()), (403, Some("CHARGING_FAILED")), "{}", refused.body);
    assert!(
        refused.invalid_params().iter().any(|(param, _)| param == "/multipleUnitUsage/0/usedUnitContainer/0"),
        "{}",
        refused.body
    );
    assert_eq!(balance(&server, 8), "0.80".parse::<Decimal>().expect("d"));
    // Zeros in another unit are no usage: nothing to refuse (schemathesis sends such).
    let mut zeros = charging_data("msisdn-4917000000008", 3, None, None);
    zeros["multipleUnitUsage"][0]["usedUnitContainer"] =
        json!([{"localSequenceNumber": 3, "time": 0, "serviceSpecificUnits": 0}]);
    let released = post(&server, &format!("{base}/{reference}/release"), &zeros);
    assert_eq!(released.status, 204, "{}", released.body);
}

/// Regression: a body trickled a byte at a time (within the idle timeout) held its
/// connection for as long as the peer liked, so enough such peers took every connection
/// the server holds; and a body over the limit was answered 413 in text/plain. A body must
/// arrive within `BODY_DEADLINE` (408) and within the limit (413), as ProblemDetails.
#[test]
fn a_body_must_arrive_in_time_and_within_the_limit() {
    let server = start("deadline");
    let path = "/nchf-convergedcharging/v3/chargingdata";
    let head = |length: usize| {
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n")
    };
    let read_all = |stream: &mut TcpStream| {
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    };
    let mut large = TcpStream::connect(server.address).expect("connect");
    large.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    large.write_all(head(tollgate_oss_adapters::nchf::server::MAX_BODY_BYTES + 1).as_bytes()).expect("send");
    let response = read_all(&mut large);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.to_ascii_lowercase().contains("application/problem+json"), "{response}");

    let mut slow = TcpStream::connect(server.address).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    slow.write_all(head(100).as_bytes()).expect("send");
    let started = std::time::Instant::now();
    // A byte every second: never idle, never done.
    let mut response = String::new();
    let mut buf = [0u8; 4096];
    slow.set_nonblocking(true).expect("nonblocking");
    while started.elapsed() < Duration::from_secs(25) {
        let _ = slow.write_all(b" ");
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.push_str(&String::from_utf8_lossy(&buf[..n]));
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
    assert!(response.starts_with("HTTP/1.1 408"), "answered after {:?}: {response}", started.elapsed());
    assert!(started.elapsed() >= tollgate_oss_adapters::nchf::server::BODY_DEADLINE, "{:?}", started.elapsed());
}

/// Regression: a missing mandatory IE was `INVALID_MSG_FORMAT` naming `/` ("… is a
/// required property"); TS 29.500 §5.2.7.2 has `MANDATORY_IE_MISSING`, naming the IE.
#[test]
fn a_missing_mandatory_ie_is_named_as_such() {
    let server = start("mandatory");
    let mut body = charging_data("msisdn-4917000000009", 0, Some(1), None);
    body.as_object_mut().expect("object").remove("invocationSequenceNumber");
    let answer = post(&server, "/nchf-convergedcharging/v3/chargingdata", &body);
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["cause"], "MANDATORY_IE_MISSING", "{}", answer.body);
    assert!(answer.invalid_params().iter().any(|(param, _)| param == "/invocationSequenceNumber"), "{}", answer.body);
}

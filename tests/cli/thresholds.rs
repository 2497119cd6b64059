//! Threshold notifications end to end (issue 19's acceptance): a `balance_below`
//! threshold set with `tollgate threshold set` on a billing account sold a line through a
//! product order; a Diameter session charges the line across it; `tollgate serve` records
//! the crossing once and publishes its event to a hub listener whose callback is down at
//! first; the server is SIGKILLed with the delivery pending and restarted with the
//! listener up: the listener receives the signed event exactly once, and the crossing
//! stays one. A spending cap on the same kind of line crosses once its charges reach it,
//! and its message reaches an SMS gateway.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::api::{assert_signed, create_token, receive_one, request};
use super::fraud::metric;
use super::hostile::Peer;
use super::orders::{lab, session, sold_line};
use super::{admin_address_of, tollgate};

const JSON: &str = "Content-Type: application/json";
const HUB: &str = "/tmf-api/accountManagement/v4/hub";
const DELIVERIES: &str = "/tmf-api/hub/v1/delivery";
/// How long the test waits for what it expects before failing (a hang guard, not a
/// performance bound).
const PATIENCE: Duration = Duration::from_secs(90);

/// Waits until `check` gives a value.
fn eventually<T>(what: &str, check: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The management API's thresholds.
const THRESHOLDS: &str = "/tmf-api/thresholdManagement/v1/threshold";

/// `tollgate threshold list` for `account`, beside the running server.
fn listed(data_dir: &str, account: &str) -> Value {
    let output = tollgate(&["threshold", "list", "--billing-account", account, "--data-dir", data_dir], "");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// The hub's deliveries of the threshold event.
fn deliveries(address: &str, admin: &str) -> Vec<Value> {
    let (status, _, page) = request(address, "GET", DELIVERIES, admin, &[], None);
    assert_eq!(status, 200, "{page}");
    let all = page.as_array().expect("a list").clone();
    all.into_iter().filter(|d| d["eventType"] == "BillingAccountThresholdEvent").collect()
}

#[test]
fn a_balance_crossing_is_delivered_once_across_a_sigkill_between_crossing_and_delivery() {
    let lab = lab("thresholds", 2);
    let data_dir = lab.data.display().to_string();
    let admin = create_token(&lab.data, "admin");
    let (mut child, diameter, address) = lab.serve(&[]);
    let (account, _, msisdn) = sold_line(&lab, &address, &admin);

    // A listener whose callback is down: the port is free, nothing answers on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let callback = format!("http://127.0.0.1:{port}/thresholds");
    let listener = json!({"callback": callback, "query": "eventType=BillingAccountThresholdEvent"});
    let (status, _, registered) = request(&address, "POST", HUB, &admin, &[JSON], Some(&listener));
    assert_eq!(status, 201, "{registered}");
    let secret = registered["secret"].as_str().expect("the secret").to_owned();

    // The postpaid account starts at 0; the threshold is 5 cents below (German message).
    let set = tollgate(
        &[
            "threshold",
            "set",
            "--billing-account",
            &account,
            "--kind",
            "balance_below",
            "--level",
            "-0.05",
            "--language",
            "de",
            "--data-dir",
            &data_dir,
        ],
        "",
    );
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let threshold: Value = serde_json::from_slice(&set.stdout).expect("JSON");
    assert_eq!((threshold["kind"].as_str(), threshold["amount"].as_str()), (Some("balance_below"), Some("-0.05")));
    assert!(listed(&data_dir, &account)["crossings"].as_array().expect("crossings").is_empty());

    // One session of 1 MiB video: 0.10 EUR, the balance -0.10.
    let mut peer = Peer::connect(&diameter);
    peer.capabilities_exchange("pgw.thresholds.test");
    assert_eq!(session(&mut peer, "t;1", &msisdn), Some(2001));
    let crossings = eventually("the crossing is recorded", || {
        let crossings = listed(&data_dir, &account)["crossings"].clone();
        (!crossings.as_array()?.is_empty()).then_some(crossings)
    });
    assert_eq!(crossings.as_array().map(Vec::len), Some(1), "{crossings}");
    assert_eq!(crossings[0]["crossingKey"], "episode-1");
    assert_eq!(
        crossings[0]["message"],
        "Ada: Ihr Guthaben beträgt -0,1 EUR und liegt unter -0,05 EUR. Bitte laden Sie auf."
    );
    let event_id = crossings[0]["eventId"].as_str().expect("published").to_owned();
    // The delivery was tried and failed: it is pending with the hub.
    let pending = eventually("a failed attempt at the delivery", || {
        let found = deliveries(&address, &admin);
        found.iter().any(|d| d["attempts"].as_i64() >= Some(1)).then_some(found)
    });
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["state"], "pending", "{pending:?}");
    assert_eq!(metric(&admin_address_of(&lab.data), "tollgate_thresholds_crossings_total"), Some(1));

    // Killed between the crossing and the delivery.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    // The listener up, the server back: the event arrives once.
    let receiver = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the callback's port again");
    let (child, _, address) = lab.serve(&[]);
    let metrics = admin_address_of(&lab.data);
    let (sender, received) = mpsc::channel();
    let accepting = receiver.try_clone().expect("clone");
    std::thread::spawn(move || drop(sender.send(receive_one(&accepting))));
    let (headers, body) = received.recv_timeout(PATIENCE).expect("the delivery after the restart");
    assert_signed(&secret, &headers, &body);
    let event: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        (event["eventType"].as_str(), event["eventId"].as_str()),
        (Some("BillingAccountThresholdEvent"), Some(event_id.as_str()))
    );
    let crossing = &event["event"]["thresholdCrossing"];
    assert_eq!(crossing["billingAccount"]["id"], account.as_str());
    assert_eq!(crossing["threshold"]["id"], threshold["id"]);
    assert_eq!(crossing["detail"]["balance"]["value"], "-0.1");
    assert_eq!(crossing["message"], crossings[0]["message"]);

    // Marked delivered, nothing else pending or sent; the crossing still one, although
    // the restarted evaluation looked at the account again.
    let done = eventually("the delivery is marked delivered", || {
        let found = deliveries(&address, &admin);
        found.iter().all(|d| d["state"] == "delivered").then_some(found)
    });
    assert_eq!(done.len(), 1, "{done:?}");
    // The restarted server evaluated the account (every configured account at a start)
    // and recorded nothing new.
    eventually("the account evaluated after the restart", || {
        (metric(&metrics, "tollgate_thresholds_evaluations_total")? >= 1).then_some(())
    });
    assert_eq!(metric(&metrics, "tollgate_thresholds_crossings_total"), Some(0));
    assert_eq!(listed(&data_dir, &account)["crossings"].as_array().map(Vec::len), Some(1));
    receiver.set_nonblocking(true).expect("nonblocking");
    assert!(matches!(receiver.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "a second delivery");
    super::stop_server(child);
}

/// A spending cap on the postpaid account of a line sold through an order: the engine's
/// balance falls by each charge, and the charges reaching the cap are one crossing with
/// its message, sent by SMS to the line's number through the SMS gateway (a real HTTP
/// server here, the HTTP adapter's bearer token and request id checked); a non-bundle
/// threshold naming a subscription is refused, naming the flag's field.
#[test]
fn a_spending_cap_crosses_when_the_unbilled_charges_reach_it_and_is_sent_by_sms() {
    let lab = lab("spending-cap", 2);
    let data_dir = lab.data.display().to_string();
    let admin = create_token(&lab.data, "admin");
    let sms_gateway = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let config = lab.data.with_extension("sms.toml");
    let url = format!("http://{}/sms/v1/messages", sms_gateway.local_addr().expect("address"));
    std::fs::write(
        &config,
        format!("[http]\nurl = \"{url}\"\nauth = {{ scheme = \"bearer\", token = \"s3cr3t-sms\" }}\n"),
    )
    .expect("config");
    let (child, diameter, address) = lab.serve(&["--sms-gateway", &config.display().to_string()]);
    let (account, _, msisdn) = sold_line(&lab, &address, &admin);
    let set = |kind: &str, level: &str, extra: &[&str]| {
        let mut args = vec!["threshold", "set", "--billing-account", &account, "--kind", kind, "--level", level];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--data-dir", &data_dir]);
        tollgate(&args, "")
    };
    let refused = set("balance_below", "1", &["--subscription", "any"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("subscription"), "{refused:?}");
    // Set through the management API this time (as a care agent or a corporate admin
    // would): the server's evaluation takes it as one the CLI set.
    let cap = json!({"billingAccount": {"id": account}, "kind": "spending_cap", "amount": "0.10", "sms": true,
        "webhook": false});
    let (status, _, threshold) = request(&address, "POST", THRESHOLDS, &admin, &[JSON], Some(&cap));
    assert_eq!(status, 201, "{threshold}");
    assert_eq!((threshold["sms"].as_bool(), threshold["webhook"].as_bool()), (Some(true), Some(false)));

    // One session of 1 MiB video: 0.10 EUR, the cap reached exactly.
    let mut peer = Peer::connect(&diameter);
    peer.capabilities_exchange("pgw.spending-cap.test");
    assert_eq!(session(&mut peer, "c;1", &msisdn), Some(2001));
    let crossings = eventually("the crossing is recorded", || {
        let crossings = listed(&data_dir, &account)["crossings"].clone();
        (!crossings.as_array()?.is_empty()).then_some(crossings)
    });
    assert_eq!(crossings.as_array().map(Vec::len), Some(1), "{crossings}");
    assert_eq!(
        (crossings[0]["kind"].as_str(), crossings[0]["crossingKey"].as_str()),
        (Some("spending_cap"), Some("episode-1"))
    );
    let text = "Ada: your charges since your last bill are 0.1 EUR, reaching your cap of 0.1 EUR.";
    assert_eq!(crossings[0]["message"], text);
    let thresholds = listed(&data_dir, &account)["thresholds"].clone();
    assert_eq!(thresholds[0]["tripped"], true, "{thresholds}");
    let (status, _, read) =
        request(&address, "GET", &format!("{THRESHOLDS}/{}", threshold["id"].as_str().expect("id")), &admin, &[], None);
    assert_eq!((status, &read["tripped"]), (200, &json!(true)), "{read}");
    let by_api = format!("/tmf-api/thresholdManagement/v1/crossing?billingAccount.id={account}");
    let (status, _, page) = request(&address, "GET", &by_api, &admin, &[], None);
    assert_eq!((status, &page[0]["message"]), (200, &crossings[0]["message"]), "{page}");

    // The SMS gateway receives the message for the line's number.
    let (sender, received) = mpsc::channel();
    std::thread::spawn(move || drop(sender.send(receive_one(&sms_gateway))));
    let (headers, body) = received.recv_timeout(PATIENCE).expect("the SMS");
    let sms: Value = serde_json::from_slice(&body).expect("JSON");
    let to = format!("+{}", msisdn.trim_start_matches('+'));
    assert_eq!((sms["to"][0].as_str(), sms["text"].as_str()), (Some(to.as_str()), Some(text)), "{sms}");
    let reference = sms["reference"].as_str().expect("reference");
    assert_eq!(headers.get("x-request-id").map(String::as_str), Some(reference));
    assert_eq!(headers.get("idempotency-key").map(String::as_str), Some(reference));
    assert_eq!(headers.get("authorization").map(String::as_str), Some("Bearer s3cr3t-sms"));
    super::stop_server(child);
}

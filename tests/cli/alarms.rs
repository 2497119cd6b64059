//! Diameter peers as an alarm source of `tollgate serve` (with a store): a peer whose
//! connection is lost (closed without a Disconnect-Peer-Request) raises a major alarm,
//! seen by `tollgate alarm list` and on `/metrics`; it is cleared when the peer connects
//! again; a peer that leaves in order (DPR) raises none.

use std::time::{Duration, Instant};

use tollgate_oss_adapters::diameter::dictionary::code;
use tollgate_oss_adapters::diameter::Avp;

use super::hostile::{result_code, Peer};
use super::{admin_address_of, http, scratch, start_servers, stop_server, tollgate};

/// The open alarms of the store, one line each (`tollgate alarm list --open`).
pub(crate) fn open_alarms(database: &str) -> Vec<String> {
    alarm_list(database, &["--open"])
}

/// Every alarm of the store, cleared ones too, newest first.
pub(crate) fn all_alarms(database: &str) -> Vec<String> {
    alarm_list(database, &[])
}

fn alarm_list(database: &str, flags: &[&str]) -> Vec<String> {
    let args = [&["alarm", "list", "--database", database][..], flags].concat();
    let listed = tollgate(&args, "");
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).collect()
}

/// The fields of the alarm line naming `object` (id, severity, state, ack, object,
/// cause, problem), if there is one.
pub(crate) fn alarm_of(lines: &[String], object: &str) -> Option<Vec<String>> {
    lines
        .iter()
        .map(|line| line.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .find(|fields| fields.get(4).map(String::as_str) == Some(object))
}

/// Waits until `check` holds of the open alarms (the server looks once a second).
pub(crate) fn wait_for(database: &str, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = open_alarms(database);
        if check(&open) {
            return open;
        }
        assert!(Instant::now() < deadline, "{what}: {open:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `/health/ready`: its status code, its `status`, and the state of dependency `name`.
fn readiness(admin: &str, name: &str) -> (u16, String, Option<String>) {
    let (code, _, body) = http(admin, "GET", "/health/ready", "");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let state = body["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .find(|d| d["name"] == name)
        .map(|d| d["state"].as_str().expect("state").to_owned());
    (code, body["status"].as_str().expect("status").to_owned(), state)
}

fn peers_gauge(admin: &str, state: &str) -> Option<String> {
    let (_, _, page) = http(admin, "GET", "/metrics", "");
    let sample = format!("tollgate_diameter_peers{{state=\"{state}\"}} ");
    page.lines().find_map(|line| line.strip_prefix(sample.as_str())).map(str::to_owned)
}

#[test]
fn a_lost_diameter_peer_raises_an_alarm_cleared_when_it_connects_again() {
    let dir = scratch("peer-alarm");
    let data = dir.join("data");
    let database = dir.join("bss.sqlite3");
    let database = database.to_str().expect("path");
    let (child, diameter, _) = start_servers(&data, "ocs.peers.test", &["--database", database]);
    let admin = admin_address_of(&data);

    let mut lost = Peer::connect(&diameter);
    lost.capabilities_exchange("pgw-lost.peers.test");
    assert_eq!(peers_gauge(&admin, "connected").as_deref(), Some("1"));
    drop(lost); // closed without a DPR
    let open = wait_for(database, "the lost peer's alarm", |open| open.iter().any(|l| l.contains("pgw-lost")));
    let line = open.iter().find(|l| l.contains("pgw-lost")).expect("alarm");
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(
        fields[1..6],
        ["major", "raised", "unacknowledged", "diameter-peer/pgw-lost.peers.test", "communicationsSubsystemFailure"]
    );
    assert!(fields[6].contains("closed without a Disconnect-Peer-Request"), "{line}");
    assert_eq!(peers_gauge(&admin, "lost").as_deref(), Some("1"));
    // Readiness shows it: degraded (charging goes on), the store up.
    let peer = "diameter-peer/pgw-lost.peers.test";
    assert_eq!(readiness(&admin, peer), (200, "degraded".to_owned(), Some("down".to_owned())));
    assert_eq!(readiness(&admin, "bss-store").2.as_deref(), Some("up"));

    // It connects again: cleared.
    let mut back = Peer::connect(&diameter);
    back.capabilities_exchange("pgw-lost.peers.test");
    wait_for(database, "the alarm cleared", |open| !open.iter().any(|l| l.contains("pgw-lost")));
    assert_eq!(peers_gauge(&admin, "lost").as_deref(), Some("0"));
    assert_eq!(readiness(&admin, peer), (200, "ready".to_owned(), Some("up".to_owned())));

    // Leaving in order raises nothing.
    let dpr = vec![
        Avp::utf8(code::ORIGIN_HOST, 0, "pgw-lost.peers.test"),
        Avp::utf8(code::ORIGIN_REALM, 0, "test"),
        Avp::u32(code::DISCONNECT_CAUSE, 0, 0),
    ];
    let dpa = back.ask(282, 0, dpr);
    assert_eq!(result_code(&dpa), Some(2001));
    drop(back);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert!(open_alarms(database).iter().all(|l| !l.contains("pgw-lost")), "a DPR is no fault");
        std::thread::sleep(Duration::from_millis(300));
    }
    let all = tollgate(&["alarm", "list", "--database", database], "");
    let all = String::from_utf8_lossy(&all.stdout).into_owned();
    assert_eq!(all.lines().filter(|l| l.contains("pgw-lost")).count(), 1, "one alarm in all: {all}");
    assert!(all.contains("cleared"), "{all}");
    assert_eq!(readiness(&admin, peer), (200, "ready".to_owned(), None), "a peer that left in order is no dependency");
    stop_server(child);
    std::fs::remove_dir_all(dir).ok();
}

//! `GET /metrics` of `tollgate serve --admin-listen`, scraped over HTTP while real
//! Diameter, Nchf and gRPC traffic runs: Prometheus's own checker (`promtool check
//! metrics`, Debian package `prometheus`) accepts the page, and the counters moved by
//! exactly the traffic sent.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use super::hostile::{ccr_of, result_code, Peer, Units};
use super::{
    admin_address_of, charging_data, charging_data_ref, grpc_address_of, http, scratch, start_servers, stop_server,
    tollgate,
};

/// A scraped page: every sample by its name and labels as written (`name{a="b"}`).
struct Scrape {
    text: String,
    samples: BTreeMap<String, u64>,
}

impl Scrape {
    fn of(admin: &str) -> Scrape {
        let (status, head, text) = http(admin, "GET", "/metrics", "");
        assert_eq!(status, 200, "{head}{text}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (name, value) = line.rsplit_once(' ').expect("name value");
                // Sums are decimal seconds; only integer samples are compared here.
                (name.to_owned(), value.parse().unwrap_or(u64::MAX))
            })
            .collect();
        Scrape { text, samples }
    }

    fn get(&self, sample: &str) -> u64 {
        self.samples.get(sample).copied().unwrap_or(0)
    }

    /// The sum of every sample of `name` (over its labels), histograms' parts excluded.
    fn total(&self, name: &str) -> u64 {
        self.samples.iter().filter(|(key, _)| key.split('{').next() == Some(name)).map(|(_, value)| value).sum()
    }

    /// Checked by Prometheus's own parser and linter.
    fn check_with_promtool(&self) {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool runs: scripts/install-test-deps installs the prometheus package");
        child.stdin.take().expect("stdin").write_all(self.text.as_bytes()).expect("page to promtool");
        let output = child.wait_with_output().expect("promtool ends");
        assert!(
            output.status.success(),
            "promtool check metrics: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.text
        );
    }
}

#[test]
fn metrics_count_the_traffic_of_every_interface_and_pass_promtool() {
    let dir = scratch("metrics");
    let data = dir.join("data");
    let database = dir.join("bss.sqlite3");
    let database = database.to_str().expect("path");
    let (child, diameter, nchf) =
        start_servers(&data, "ocs.metrics.test", &["--demo-subscribers", "8", "--shards", "2", "--database", database]);
    let admin = admin_address_of(&data);
    let before = Scrape::of(&admin);
    before.check_with_promtool();
    assert_eq!(before.total("tollgate_shard_up"), 2, "both shards serve");
    assert_eq!(before.total("tollgate_open_reservations"), 0);
    // With a store: its backlogs and the open alarms, none.
    assert_eq!(before.samples.get("tollgate_outbox_pending"), Some(&0), "{}", before.text);
    assert_eq!(before.samples.get("tollgate_hub_deliveries_pending"), Some(&0));
    assert_eq!(before.samples.get(r#"tollgate_alarms_active{severity="critical"}"#), Some(&0));

    // Diameter: a session of CCR-I, CCR-U and CCR-T (2001 each), and a CCR of a
    // subscriber nobody knows (5030).
    let mut peer = Peer::connect(&diameter);
    peer.capabilities_exchange("pgw.metrics.test");
    let session = "pgw.metrics.test;1;1";
    let steps = [(1, 0, Units::Requested(1 << 20)), (2, 1, Units::Used(1 << 19)), (3, 2, Units::Used(1 << 18))];
    for (request_type, number, units) in steps {
        let cca = peer.ask(272, 4, ccr_of(session, request_type, number, "4917000000001", 30, units));
        assert_eq!(result_code(&cca), Some(2001));
    }
    let unknown = peer.ask(272, 4, ccr_of("pgw.metrics.test;1;2", 1, 0, "4917099999999", 30, Units::Requested(1)));
    assert_eq!(result_code(&unknown), Some(5030));

    // Nchf: a create (201) whose reservation stays open until its release (204).
    let base = "/nchf-convergedcharging/v3/chargingdata";
    let (status, head, body) = http(&nchf, "POST", base, &charging_data(0, Some(1 << 20), None));
    assert_eq!(status, 201, "{head}{body}");
    let open = Scrape::of(&admin);
    assert_eq!(open.total("tollgate_open_reservations"), 1, "the Nchf session's reservation");
    let reference = charging_data_ref(&head);
    let release = charging_data(1, None, Some(1 << 20));
    let (status, _, body) = http(&nchf, "POST", &format!("{base}/{reference}/release"), &release);
    assert_eq!(status, 204, "{body}");

    // gRPC: the load generator's debits, as many as it reports.
    let grpc = grpc_address_of(&data);
    let token = data.join("grpc.token");
    let load = tollgate(
        &[
            "load",
            "grpc",
            "--target",
            &grpc,
            "--token-file",
            token.to_str().expect("path"),
            "--seconds",
            "5",
            "--sessions",
            "2",
            "--subscribers",
            "8",
            "--requests",
            "40",
        ],
        "",
    );
    let report = String::from_utf8_lossy(&load.stdout);
    assert!(load.status.success(), "{report}");
    let grpc_answers: u64 = report
        .split_whitespace()
        .zip(report.split_whitespace().skip(1))
        .find_map(|(count, word)| (word == "answers").then(|| count.parse().ok()).flatten())
        .expect("the load generator reports its answers");

    let after = Scrape::of(&admin);
    after.check_with_promtool();
    let moved = |sample: &str| after.get(sample) - before.get(sample);
    assert_eq!(moved(r#"tollgate_requests_total{interface="diameter",code="2001"}"#), 3);
    assert_eq!(moved(r#"tollgate_requests_total{interface="diameter",code="5030"}"#), 1);
    assert_eq!(moved(r#"tollgate_request_duration_seconds_count{interface="diameter"}"#), 4);
    assert_eq!(moved(r#"tollgate_requests_total{interface="nchf",code="201"}"#), 1);
    assert_eq!(moved(r#"tollgate_requests_total{interface="nchf",code="204"}"#), 1);
    assert_eq!(moved(r#"tollgate_request_duration_seconds_count{interface="nchf"}"#), 2);
    assert_eq!(moved(r#"tollgate_requests_total{interface="grpc",code="OK"}"#), grpc_answers);
    assert!(grpc_answers > 0, "{report}");
    // Rated: the Diameter session's two reports and the Nchf release's, and every
    // gRPC debit (demo subscribers have money enough for 40 small debits).
    let rated = after.total("tollgate_rated_events_total") - before.total("tollgate_rated_events_total");
    assert_eq!(rated, 3 + grpc_answers, "{}", after.text);
    assert_eq!(after.total("tollgate_open_reservations"), 0, "every session ended");
    let fsyncs = after.total("tollgate_journal_fsync_duration_seconds_count")
        - before.total("tollgate_journal_fsync_duration_seconds_count");
    assert!(fsyncs > 0, "every charge was synced before its answer: {}", after.text);
    assert_eq!(after.total("tollgate_journal_failures_total"), 0);
    stop_server(child);
    std::fs::remove_dir_all(dir).ok();
}

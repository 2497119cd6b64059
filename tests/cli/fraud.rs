//! Fraud detection in `tollgate serve --fraud`: a subscriber's burst of short calls to a
//! high-cost prefix, charged by `tollgate mediate`, reaches the detectors through the
//! rated-event ledger and raises a critical IRSF alarm in the store, counted on
//! `/metrics`; the server resumes from its saved position, so a restart reads nothing
//! again and raises nothing twice. A line sold through a product order is suspended by
//! the order the IRSF policy places.

use super::alarms::{alarm_of, all_alarms, open_alarms, wait_for};
use super::api::{create_token, request};
use super::mediate::{mediate_args, setup, MAPPING};
use super::orders::{lab, sold_line};
use super::{admin_address_of, http, scratch, start_servers, stop_server, tollgate};

/// The value of the `/metrics` sample `sample` (name and labels as written).
pub(super) fn metric(admin: &str, sample: &str) -> Option<u64> {
    let (_, _, page) = http(admin, "GET", "/metrics", "");
    let prefix = format!("{sample} ");
    page.lines().find_map(|line| line.strip_prefix(prefix.as_str())).and_then(|v| v.parse().ok())
}

/// Waits (at most 30 s) until `check` holds.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `calls` (`msisdn,called,start,seconds` each) as a CSV file of the mediate tests'
/// mapping, their ids `name-N`.
fn calls_csv(name: &str, calls: &[(String, &str, String, u32)]) -> String {
    let mut text = String::from("id,msisdn,called,start,seconds\n");
    for (n, (msisdn, called, start, seconds)) in calls.iter().enumerate() {
        text.push_str(&format!("{name}-{n},{msisdn},{called},{start},{seconds}\n"));
    }
    text
}

/// Mediates `calls` (`msisdn,called,start,seconds` each) into `dir/data` with the mediate
/// tests' mapping and the engine flags `extra`.
fn mediate(dir: &std::path::Path, name: &str, calls: &[(String, &str, String, u32)], extra: &[&str]) {
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let input = dir.join(format!("{name}.csv"));
    std::fs::write(&input, calls_csv(name, calls)).expect("input");
    let (data, out) = (dir.join("data"), dir.join(format!("out-{name}")));
    let args = mediate_args(
        data.to_str().expect("path"),
        out.to_str().expect("path"),
        mapping.to_str().expect("path"),
        input.to_str().expect("path"),
    );
    let output = tollgate(&[&args[..], extra].concat(), "");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn an_irsf_burst_raises_a_critical_alarm_once_across_restarts() {
    let dir = scratch("fraud-irsf");
    let data = dir.join("data");
    setup(&data);
    let database = dir.join("bss.sqlite3");
    let database = database.to_str().expect("path");
    let serve = ["--database", database, "--fraud"];
    // The first start records where the ledger ends: history before it is not judged.
    let (child, _, _) = start_servers(&data, "ocs.fraud.test", &serve);
    stop_server(child);
    let saved = || std::fs::read_to_string(data.join("fraud.position")).expect("the position saved at the first start");
    let before = saved();

    // Subscriber 2 (subscription 20) calls a satellite range (882, a default high-cost
    // prefix) six times in ten minutes; subscriber 3 calls Berlin as often.
    let mut calls = Vec::new();
    for n in 0..6u32 {
        let start = format!("2026-03-02 10:{:02}:00", n * 2);
        calls.push(("491700000002".to_owned(), "88212345", start.clone(), 40));
        calls.push(("491700000003".to_owned(), "4930123456", start, 40));
    }
    mediate(&dir, "burst", &calls, &[]);

    let (child, _, _) = start_servers(&data, "ocs.fraud.test", &serve);
    let admin = admin_address_of(&data);
    let open = wait_for(database, "the IRSF alarm", |open| alarm_of(open, "subscriber/20/irsf").is_some());
    let alarm = alarm_of(&open, "subscriber/20/irsf").expect("alarm");
    assert_eq!(alarm[1..6], ["critical", "raised", "unacknowledged", "subscriber/20/irsf", "thresholdCrossed"]);
    assert!(alarm_of(&open, "subscriber/30/irsf").is_none(), "calls to Berlin are no IRSF: {open:?}");
    assert_eq!(metric(&admin, "tollgate_fraud_findings_total{detector=\"irsf\"}"), Some(1));
    assert_eq!(metric(&admin, "tollgate_fraud_events_total"), Some(12), "each mediated call observed once");
    assert_eq!(metric(&admin, "tollgate_fraud_orders_dropped_total"), Some(0));
    // Subscription 20 was provisioned in the engine by hand, not as a BSS line: the
    // policy's suspension has no line to suspend, and no order is placed.
    assert_eq!(metric(&admin, "tollgate_fraud_suspensions_total"), Some(0));
    // The position is saved once the alarm is recorded; wait for it before stopping.
    eventually(&format!("the position moves past the burst: {before}"), || saved() != before);
    stop_server(child);

    // A restart resumes after the burst: nothing is read again, nothing raised again.
    let (child, _, _) = start_servers(&data, "ocs.fraud.test", &serve);
    let admin = admin_address_of(&data);
    eventually("the detectors read the ledger", || metric(&admin, "tollgate_fraud_polls_total").unwrap_or(0) > 0);
    assert_eq!(metric(&admin, "tollgate_fraud_events_total"), Some(0), "no event read twice");
    assert_eq!(metric(&admin, "tollgate_fraud_findings_total{detector=\"irsf\"}"), Some(0));
    stop_server(child);
    let all = all_alarms(database);
    assert_eq!(all.iter().filter(|line| line.contains("subscriber/20/irsf")).count(), 1, "{all:?}");

    // A burst under way across a restart: subscriber 3 makes three calls to 882 that are
    // judged before it, two after. At the start the detectors read the recent ledger again
    // in silence (the warm-up), so the five make the burst; nothing is judged twice.
    let now = jiff::Timestamp::now().as_second();
    let calls = |minutes_ago: &[i64]| -> Vec<(String, &str, String, u32)> {
        minutes_ago
            .iter()
            .map(|ago| {
                let start = jiff::Timestamp::from_second(now - 60 * ago).expect("instant");
                ("491700000003".to_owned(), "88212345", start.strftime("%Y-%m-%d %H:%M:%S").to_string(), 40)
            })
            .collect()
    };
    mediate(&dir, "under-way-1", &calls(&[30, 28, 26]), &[]);
    let before = saved();
    let (child, _, _) = start_servers(&data, "ocs.fraud.test", &serve);
    let admin = admin_address_of(&data);
    eventually("the first calls are judged", || metric(&admin, "tollgate_fraud_events_total") == Some(3));
    eventually("the position moves past them", || saved() != before);
    assert!(alarm_of(&open_alarms(database), "subscriber/30/irsf").is_none(), "three calls are no burst yet");
    stop_server(child);
    mediate(&dir, "under-way-2", &calls(&[24, 22]), &[]);
    let (child, _, _) = start_servers(&data, "ocs.fraud.test", &serve);
    let admin = admin_address_of(&data);
    wait_for(database, "the IRSF alarm of the burst under way", |open| alarm_of(open, "subscriber/30/irsf").is_some());
    assert_eq!(metric(&admin, "tollgate_fraud_events_total"), Some(2), "only the calls after the restart are judged");
    assert!(metric(&admin, "tollgate_fraud_warmup_events_total") >= Some(3), "the first three are read again");
    stop_server(child);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_irsf_burst_on_a_bss_line_places_an_order_that_suspends_it() {
    let lab = lab("fraud-suspend", 2);
    let admin = create_token(&lab.data, "admin");
    let (child, _, address) = lab.serve(&["--fraud"]);
    let (account, inventory, msisdn) = sold_line(&lab, &address, &admin);
    stop_server(child);

    // Six short calls to 882 from the new line, starting a minute from now (mediation
    // takes records up to an hour ahead; the line exists before them).
    let now = jiff::Timestamp::now().as_second();
    let calls: Vec<_> = (1..=6)
        .map(|n| {
            let start = jiff::Timestamp::from_second(now + 60 * n).expect("instant");
            (msisdn.clone(), "88212345", start.strftime("%Y-%m-%d %H:%M:%S").to_string(), 30)
        })
        .collect();
    let plans = lab.plans.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
    let dir = lab.data.parent().expect("lab dir");
    mediate(dir, "line", &calls, &["--plan-file", &plans[0], "--plan-file", &plans[1]]);

    let (child, _, address) = lab.serve(&["--fraud"]);
    let database = lab.data.join("bss.sqlite3");
    let database = database.to_str().expect("path");
    let is_irsf = |line: &String| line.contains("\tsubscriber/") && line.contains("/irsf\t");
    wait_for(database, "the line's IRSF alarm", |open| open.iter().any(is_irsf));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, _, line) = request(&address, "GET", &inventory, &admin, &[], None);
        if line["status"] == "suspended" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the line is suspended by the fraud order: {line}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let orders = format!("/tmf-api/productOrderingManagement/v4/productOrder?billingAccount.id={account}");
    let (status, _, orders) = request(&address, "GET", &orders, &admin, &[], None);
    assert_eq!(status, 200, "{orders}");
    let fraud: Vec<_> = orders.as_array().expect("orders").iter().filter(|o| o["category"] == "fraud").collect();
    assert_eq!(fraud.len(), 1, "one suspend order: {orders}");
    assert_eq!(fraud[0]["productOrderItem"][0]["product"]["status"], "suspended");
    assert!(fraud[0]["externalId"].as_str().is_some_and(|key| key.starts_with("fraud:irsf:")), "{}", fraud[0]);
    assert_eq!(open_alarms(database).iter().filter(|l| is_irsf(l)).count(), 1);
    stop_server(child);
}

/// Online usage the engine cannot rate leaves no ledger entry: `serve --fraud` tells the
/// unrated-usage detector the engine's count of it (`tollgate_unrated_events_total`), so
/// data sessions on a rating group no tariff prices raise the `leakage_unrated` alarm,
/// while a rated session adds nothing to the count.
#[test]
fn online_usage_the_engine_cannot_rate_raises_the_unrated_leakage_alarm() {
    use super::hostile::{ccr_of, Peer, Units};
    let dir = scratch("fraud-unrated");
    let data = dir.join("data");
    setup(&data);
    let database = dir.join("bss.sqlite3");
    let database = database.to_str().expect("path");
    let policy = dir.join("policy.toml");
    let windows = "window_seconds = 1\ndivergence_settle_seconds = 1\n";
    std::fs::write(&policy, format!("[leakage]\n{windows}min_events = 5\nmin_unrated = 5\nmax_unrated_ratio = 0.5\n"))
        .expect("policy");
    let policy = policy.to_str().expect("path");
    let (child, diameter, _) =
        start_servers(&data, "ocs.fraud.test", &["--database", database, "--fraud-policy", policy]);
    let admin = admin_address_of(&data);
    let unrated = || -> u64 {
        (0..2).filter_map(|shard| metric(&admin, &format!("tollgate_unrated_events_total{{shard=\"{shard}\"}}"))).sum()
    };
    let mut peer = Peer::connect(&diameter);
    peer.capabilities_exchange("pgw.fraud.test");
    // A rated session (video, rating group 30) counts nothing.
    let rated = peer.ask(272, 4, ccr_of("rated;1", 1, 0, "491700000001", 30, Units::Requested(1 << 20)));
    assert_eq!(super::hostile::result_code(&rated), Some(2001));
    assert_eq!(unrated(), 0);
    // Sessions on rating group 999, which no tariff prices, each until the alarm is up
    // (the detector judges a window when a later one's first failures are told).
    let mut sent = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        for _ in 0..10 {
            sent += 1;
            peer.ask(272, 4, ccr_of(&format!("unrated;{sent}"), 1, 0, "491700000001", 999, Units::Requested(1 << 20)));
        }
        if alarm_of(&open_alarms(database), "charging/leakage_unrated").is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no leakage alarm after {sent} unrated sessions");
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }
    assert_eq!(unrated(), sent, "each unrated grant counted once");
    let alarm = alarm_of(&open_alarms(database), "charging/leakage_unrated").expect("alarm");
    assert_eq!((alarm[1].as_str(), alarm[4].as_str()), ("major", "charging/leakage_unrated"), "{alarm:?}");
    eventually("the detector was told", || metric(&admin, "tollgate_fraud_unrated_online_total").unwrap_or(0) >= 10);
    assert!(metric(&admin, "tollgate_fraud_findings_total{detector=\"leakage_unrated\"}") >= Some(1));
    stop_server(child);
    std::fs::remove_dir_all(dir).ok();
}

/// `serve --fraud` beside `--mediation-watch`: the records the server's mediation charged
/// are held against the ledger's mediated entries of the same windows
/// (`leakage_divergence`). Calls charged into a window by another mediation (`tollgate
/// mediate` while the server was down) are volume this server's mediation never read:
/// the window is found apart and the alarm raised; a window the server's files alone
/// charged is quiet.
#[test]
fn mediated_volume_the_server_s_mediation_did_not_read_raises_the_divergence_alarm() {
    let dir = scratch("fraud-divergence");
    let data = dir.join("data");
    setup(&data);
    let database = dir.join("bss.sqlite3");
    let database = database.to_str().expect("path");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[leakage]\nwindow_seconds = 1\ndivergence_settle_seconds = 1\ndivergence_min_records = 2\n",
    )
    .expect("policy");
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let spool = dir.join("msc9");
    let flags = [
        "--database",
        database,
        "--fraud-policy",
        policy.to_str().expect("path"),
        "--mediation-watch",
        spool.to_str().expect("path"),
        "--mediation-mapping",
        mapping.to_str().expect("path"),
    ];
    // The first start records where the ledger ends.
    let (child, _, _) = start_servers(&data, "ocs.fraud.test", &flags);
    stop_server(child);

    // Calls two minutes ahead (a window after the next start), each second its window.
    let t = jiff::Timestamp::now().as_second() + 120;
    let at = |second: i64| {
        jiff::Timestamp::from_second(t + second).expect("instant").strftime("%Y-%m-%d %H:%M:%S").to_string()
    };
    let call = |n: usize, second: i64| (format!("49170000000{}", 1 + n % 3), "4930123456", at(second), 30);
    // Two calls in window t charged while the server was down.
    mediate(&dir, "elsewhere", &[call(0, 0), call(1, 0)], &[]);

    let (child, _, _) = start_servers(&data, "ocs.fraud.test", &flags);
    let admin = admin_address_of(&data);
    let drop_in = |name: &str, calls: &[(String, &str, String, u32)]| {
        let staged = spool.join(format!(".{name}"));
        std::fs::write(&staged, calls_csv(name, calls)).expect("calls");
        eventually("the server made its incoming directory", || spool.join("incoming").is_dir());
        std::fs::rename(&staged, spool.join("incoming").join(name)).expect("into incoming");
    };
    let admin = admin.as_str();
    let told = |count: u64| move || metric(admin, "tollgate_fraud_mediation_input_total") == Some(count);
    // Four calls in window t from the server's own file: 4 read, 6 charged.
    drop_in("mine.csv", &(0..4).map(|n| call(n, 0)).collect::<Vec<_>>());
    eventually("mine.csv told", told(4));
    eventually("the six calls of window t observed", || metric(admin, "tollgate_fraud_events_total") == Some(6));
    // Two in window t + 10: read and charged alike. Their entries judge window t.
    drop_in("later.csv", &[call(0, 10), call(1, 10)]);
    let alarm =
        wait_for(database, "the divergence alarm", |open| alarm_of(open, "charging/leakage_divergence").is_some());
    let alarm = alarm_of(&alarm, "charging/leakage_divergence").expect("alarm");
    assert!(alarm[6].contains("read 4 records") && alarm[6].contains("rejected 6"), "{alarm:?}");
    eventually("later.csv told", told(6));
    // One in window t + 20 judges window t + 10: quiet.
    drop_in("last.csv", &[call(2, 20)]);
    eventually("every call observed", || metric(admin, "tollgate_fraud_events_total") == Some(9));
    let polls = metric(admin, "tollgate_fraud_polls_total").unwrap_or(0);
    eventually("the poll that judged window t + 10 over", || {
        metric(admin, "tollgate_fraud_polls_total") > Some(polls + 1)
    });
    assert_eq!(metric(admin, "tollgate_fraud_findings_total{detector=\"leakage_divergence\"}"), Some(1));
    stop_server(child);
    std::fs::remove_dir_all(dir).ok();
}

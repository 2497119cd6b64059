//! Traps received by Net-SNMP's `snmptrapd` (Debian package `snmptrapd`), an independent
//! decoder: it runs in the foreground on a loopback port with a community it accepts,
//! logs each trap's variable bindings with numeric OIDs to stdout, and the test checks
//! them against the alarm that was sent.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tollgate_alarms::{AckState, Alarm, AlarmReport, AlarmType, Change, PerceivedSeverity, TrapSender};

/// `snmptrapd`, killed when dropped, with its log lines arriving on a channel.
struct Receiver {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
    dir: std::path::PathBuf,
}

impl Receiver {
    fn start(community: &str) -> Receiver {
        let dir = std::env::temp_dir().join(format!("tollgate-snmptrapd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let config = dir.join("snmptrapd.conf");
        std::fs::write(&config, format!("authCommunity log {community}\n")).expect("config");
        // A free port: bound and let go (snmptrapd binds it right after).
        let port = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port").port();
        let mut child = Command::new("snmptrapd")
            .args(["-f", "-Lo", "-n", "-On", "-C", "-m", "", "-c"])
            .arg(&config)
            .arg(format!("udp:127.0.0.1:{port}"))
            .env("SNMP_PERSISTENT_DIR", &dir)
            .env("MIBDIRS", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("snmptrapd runs: scripts/install-test-deps installs the snmptrapd package");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let receiver = Receiver { child, lines, port, dir };
        receiver.wait_for(|line| line.contains("NET-SNMP version"));
        receiver
    }

    fn wait_for(&self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(err) => panic!("snmptrapd said nothing wanted: {err}"),
            }
        }
    }

    /// The variable bindings of the next trap logged, by numeric OID.
    fn next_trap(&self) -> Vec<(String, String)> {
        let line = self.wait_for(|line| line.contains(".1.3.6.1.6.3.1.1.4.1.0"));
        line.split('\t')
            .filter_map(|binding| binding.split_once(" = "))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn value<'a>(bindings: &'a [(String, String)], oid: &str) -> &'a str {
    bindings.iter().find(|(name, _)| name == oid).map(|(_, value)| value.as_str()).unwrap_or_else(|| {
        panic!("{oid} missing from {bindings:?}");
    })
}

#[test]
fn snmptrapd_decodes_a_raised_and_a_cleared_alarm_with_every_object() {
    let receiver = Receiver::start("tollgate-test");
    let sender = TrapSender::new(([127, 0, 0, 1], receiver.port).into(), "tollgate-test").expect("sender");
    let report = AlarmReport {
        alarmed_object: "shard/1".to_owned(),
        alarmed_object_type: "shard".to_owned(),
        alarm_type: AlarmType::ProcessingError,
        probable_cause: "storageCapacityProblem".to_owned(),
        specific_problem: "journal write failed: No space left on device (os error 28)".to_owned(),
        perceived_severity: PerceivedSeverity::Critical,
        source_system_id: "tollgate".to_owned(),
    };
    let mut alarm = Alarm::raised(4_294_967_297, report, 1_796_000_000_000);
    assert!(sender.send(&alarm, Change::Raised).expect("sent"));
    let raised = receiver.next_trap();
    let object = |n: u32| format!(".1.3.6.1.4.1.32473.1.1.{n}.0");
    assert!(value(&raised, ".1.3.6.1.2.1.1.3.0").starts_with("Timeticks: "), "{raised:?}");
    assert_eq!(value(&raised, ".1.3.6.1.6.3.1.1.4.1.0"), "OID: .1.3.6.1.4.1.32473.1.0.1");
    assert_eq!(value(&raised, &object(1)), "STRING: \"4294967297\"");
    assert_eq!(value(&raised, &object(2)), "STRING: \"shard/1\"");
    assert_eq!(value(&raised, &object(3)), "STRING: \"shard\"");
    assert_eq!(value(&raised, &object(4)), "STRING: \"processingErrorAlarm\"");
    assert_eq!(value(&raised, &object(5)), "INTEGER: 3", "critical");
    assert_eq!(value(&raised, &object(6)), "STRING: \"storageCapacityProblem\"");
    assert_eq!(value(&raised, &object(7)), "STRING: \"journal write failed: No space left on device (os error 28)\"");
    assert_eq!(value(&raised, &object(8)), "INTEGER: 1", "raised");
    assert_eq!(value(&raised, &object(9)), "INTEGER: 2", "unacknowledged");
    assert_eq!(value(&raised, &object(10)), "Gauge32: 1796000000");

    // A repeat sends nothing; an acknowledgement and a clear each send their own trap.
    assert!(!sender.send(&alarm, Change::Repeated).expect("nothing to send"));
    let change = alarm.acknowledge(AckState::Acknowledged, "noc", 1_796_000_060_000).expect("ack");
    assert!(sender.send(&alarm, change).expect("sent"));
    let acknowledged = receiver.next_trap();
    assert_eq!(value(&acknowledged, ".1.3.6.1.6.3.1.1.4.1.0"), "OID: .1.3.6.1.4.1.32473.1.0.4");
    assert_eq!(value(&acknowledged, &object(9)), "INTEGER: 1", "acknowledged");
    let change = alarm.clear(1_796_000_120_000);
    assert!(sender.send(&alarm, change).expect("sent"));
    let cleared = receiver.next_trap();
    assert_eq!(value(&cleared, ".1.3.6.1.6.3.1.1.4.1.0"), "OID: .1.3.6.1.4.1.32473.1.0.3");
    assert_eq!(value(&cleared, &object(5)), "INTEGER: 1", "severity cleared");
    assert_eq!(value(&cleared, &object(8)), "INTEGER: 3", "state cleared");
    assert_eq!(value(&cleared, &object(11)), "Gauge32: 1796000120");
}

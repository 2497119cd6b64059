//! Soak: `tollgate serve` under sustained mixed load, with its resident memory, disk use
//! and throughput sampled over time. Not run in CI.
//!
//! `cargo build --release -p tollgate && cargo run --release -p tollgate-benches --bin soak -- [MINUTES] [SESSIONS]`
//! (default 30 minutes, 256 Diameter sessions in flight). `TOLLGATE_BIN` names the binary
//! (default `target/release/tollgate`); `SOAK_SNAPSHOT_EVERY` the journal records between
//! snapshots (default the server's, 1,000,000). Every 10 s it prints one line: elapsed
//! time, CCR/s and Nchf req/s of the last stretch, the server's RSS (and its peak so
//! far), and the bytes of the live journal, the archive, the snapshots and chunk files.
//! The Diameter load is 2 connections of CCR-I, 2 × CCR-U, CCR-T sessions over 10,000
//! subscribers; the Nchf load 32 sessions of create, 2 updates, release.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One stretch of load between two samples.
const STRETCH: Duration = Duration::from_secs(10);

fn main() {
    let mut args = std::env::args().skip(1);
    let minutes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let sessions: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let binary = PathBuf::from(std::env::var("TOLLGATE_BIN").unwrap_or_else(|_| "target/release/tollgate".into()));
    assert!(binary.exists(), "{} missing: cargo build --release -p tollgate first", binary.display());
    let dir = std::env::temp_dir().join(format!("tollgate-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let mut server = Command::new(&binary);
    server
        .args(["serve", "--demo-subscribers", "10000"])
        .args(["--diameter-listen", "127.0.0.1:23868", "--nchf-listen", "127.0.0.1:28080"])
        .args(["--grpc-listen", "127.0.0.1:25051", "--admin-listen", "127.0.0.1:29090"])
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(every) = std::env::var("SOAK_SNAPSHOT_EVERY") {
        server.args(["--snapshot-every", &every]);
    }
    let mut server = server.spawn().expect("serve starts");
    wait_ready();
    println!("soak: {minutes} min, {sessions} Diameter sessions + 32 Nchf sessions, data in {}", data.display());
    println!("elapsed_s,ccr_per_s,nchf_per_s,rss_mib,peak_rss_mib,journal_mib,archive_mib,snapshot_mib");
    let started = Instant::now();
    let mut peak = 0u64;
    while started.elapsed() < Duration::from_secs(minutes * 60) {
        let seconds = STRETCH.as_secs().to_string();
        let diameter = load(
            &binary,
            &["diameter", "--target", "127.0.0.1:23868", "--sessions", &sessions.to_string(), "--seconds", &seconds],
        );
        let nchf = load(&binary, &["nchf", "--target", "127.0.0.1:28080", "--sessions", "32", "--seconds", &seconds]);
        let (ccr, http) = (rate(diameter), rate(nchf));
        let rss = resident_bytes(server.id());
        peak = peak.max(rss);
        let (journal, archive, snapshots) = disk(&data);
        println!(
            "{},{ccr:.0},{http:.0},{},{},{},{},{}",
            started.elapsed().as_secs(),
            rss >> 20,
            peak >> 20,
            journal >> 20,
            archive >> 20,
            snapshots >> 20
        );
    }
    stop(&mut server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_ready() {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect("127.0.0.1:29090") {
            use std::io::{Read, Write};
            let _ = stream.write_all(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the server never became ready");
}

/// Starts one load generator; its output is read when it ends.
fn load(binary: &Path, args: &[&str]) -> Child {
    Command::new(binary).arg("load").args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("load")
}

/// Requests per second a load generator reported (its "… N CCR/s" or "… N req/s").
fn rate(child: Child) -> f64 {
    let output = child.wait_with_output().expect("load ends");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    text.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1].starts_with("CCR/s") || w[1].starts_with("req/s"))
        .and_then(|w| w[0].parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn resident_bytes(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// Bytes of the live journal segments, the archive, and the snapshots with their chunks.
fn disk(data: &Path) -> (u64, u64, u64) {
    let (mut journal, mut snapshots) = (0, 0);
    for entry in std::fs::read_dir(data).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let size = entry.metadata().map_or(0, |m| m.len());
        if name.ends_with(".journal") {
            journal += size;
        } else if name.ends_with(".snapshot") || name.ends_with(".chunk") {
            snapshots += size;
        }
    }
    let archive = std::fs::read_dir(data.join("archive"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    (journal, archive, snapshots)
}

fn stop(server: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let _ = server.wait();
}

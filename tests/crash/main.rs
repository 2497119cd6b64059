//! SIGKILL under load: the real `tollgate` binary, killed at seeded random moments and
//! restarted on the same data directory, checked against a model of what it answered that
//! the test keeps itself (no engine code computes an expectation).
//!
//! - `online.rs`: `tollgate serve` driven over Diameter, Nchf and gRPC from several client
//!   threads that retransmit (the same CCR again with the T flag, the same request on two
//!   connections at once, Nchf updates re-POSTed, gRPC calls repeated with the same key),
//!   killed while it serves and while it recovers. Checks per account that what was
//!   charged lies between what was acknowledged and that plus what went unanswered, that
//!   it is exact once every unanswered request was retried, that every retransmission got
//!   the first answer, and that no prepaid balance went below zero.
//! - `mediation.rs`: `tollgate mediate` of a generated CSV file killed at random points and
//!   resumed until done: its outputs are byte-identical to a clean run's.
//! - `shutdown.rs`: `tollgate serve` stops on SIGTERM whatever its clients do.
//! - `recovery.rs`: recovery stays bounded by snapshots however often `serve` restarts.
//!
//! `TOLLGATE_CRASH_SEED` replays a run (the seed is printed), `TOLLGATE_CRASH_KILLS` sets
//! the number of kill points (default 120: three quarters for `serve`, the rest for
//! `mediate`). The figures are written to stderr directly, so they show in CI logs even
//! when the tests pass (libtest captures only `eprintln!`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod diameter;
mod grpc;
mod ledger;
mod mediation;
mod nchf;
mod online;
mod recovery;
mod shutdown;

/// Kill points of one CI run, both tests together, unless `TOLLGATE_CRASH_KILLS` says.
const DEFAULT_KILLS: u64 = 120;

/// The seed of this run: `TOLLGATE_CRASH_SEED` (decimal or 0x-hex), else the clock.
fn seed() -> u64 {
    match std::env::var("TOLLGATE_CRASH_SEED") {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("TOLLGATE_CRASH_SEED={text} is not a number"))
        }
        Err(_) => {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

/// Kill points for the `serve` test and for the `mediate` test.
fn kills() -> (u64, u64) {
    let total = match std::env::var("TOLLGATE_CRASH_KILLS") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("TOLLGATE_CRASH_KILLS={text} is not a number")),
        Err(_) => DEFAULT_KILLS,
    };
    let serve = (total * 3 / 4).max(1);
    (serve, total.saturating_sub(serve).max(1))
}

/// xorshift64* with a splitmix64 seeding step: small, seeded, and the same on every machine.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// An independent stream for one client thread.
    pub(crate) fn fork(&mut self, stream: u64) -> Rng {
        Rng::new(self.next() ^ stream.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// Uniform in `low..=high`.
    pub(crate) fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low) + 1)
    }

    pub(crate) fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Writes lines straight to the process's stderr: shown in CI logs even for passing tests.
fn report(lines: &[String]) {
    let mut stderr = std::io::stderr().lock();
    for line in lines {
        let _ = writeln!(stderr, "{line}");
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-crash-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs `tollgate ARGS` to completion.
fn tollgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).stdin(Stdio::null()).output().expect("tollgate runs")
}

/// The money balance `tollgate balance show` reads from the data directory (server stopped).
fn balance_on_disk(data: &Path, account: u64) -> rust_decimal::Decimal {
    let output =
        tollgate(&["balance", "show", "--account", &account.to_string(), "--data-dir", data.to_str().expect("path")]);
    assert!(output.status.success(), "balance show {account}: {}", String::from_utf8_lossy(&output.stderr));
    let view: serde_json::Value = serde_json::from_slice(&output.stdout).expect("balance json");
    let text = view["body"]["balance"].as_str().unwrap_or_else(|| panic!("no balance in {view}"));
    text.parse().unwrap_or_else(|_| panic!("balance {text}"))
}

/// Where a running `tollgate serve` listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Addresses {
    pub(crate) diameter: SocketAddr,
    pub(crate) nchf: SocketAddr,
    pub(crate) grpc: SocketAddr,
    pub(crate) admin: SocketAddr,
}

/// What the server's log said, as it said it.
enum LogEvent {
    /// With the journal records it replayed (`replayed=`).
    EngineReady(Option<u64>),
    Listening(&'static str, SocketAddr),
}

/// One `tollgate serve` process. Its log is appended to `DATA.log`.
pub(crate) struct Serve {
    child: Child,
    events: mpsc::Receiver<LogEvent>,
    /// The log reader: ends at the process's end, with whether "engine ready" was logged
    /// and how many front-ends said they listen.
    reader: Option<std::thread::JoinHandle<(bool, usize)>>,
    started: Instant,
    /// Journal records replayed at the start, once the engine said it is ready.
    pub(crate) replayed: Option<u64>,
}

/// How a killed server had got on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KilledAt {
    /// Before it logged "engine ready": opening the data directory (recovery) or provisioning.
    Recovery,
    /// Engine ready, not yet listening on every front-end.
    BeforeListening,
    /// Serving.
    Serving,
}

impl Serve {
    pub(crate) fn spawn(data: &Path, origin_host: &str, extra: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--diameter-listen", "127.0.0.1:0", "--nchf-listen", "127.0.0.1:0"])
            .args(["--grpc-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--origin-realm", "crash.test", "--origin-host", origin_host])
            .args(extra)
            .arg("--data-dir")
            .arg(data)
            .env_remove("TOLLGATE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let started = Instant::now();
        let log = child.stderr.take().expect("stderr");
        let mut copy =
            std::fs::OpenOptions::new().create(true).append(true).open(data.with_extension("log")).expect("log copy");
        let (sender, events) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let _ = writeln!(copy, "=== tollgate serve started");
            let (mut ready, mut listening) = (false, 0);
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                let _ = writeln!(copy, "{line}");
                if line.contains("engine ready") {
                    ready = true;
                    let replayed = line
                        .split_whitespace()
                        .find_map(|field| field.strip_prefix("replayed="))
                        .and_then(|n| n.parse().ok());
                    let _ = sender.send(LogEvent::EngineReady(replayed));
                }
                let address = line
                    .find("listen=")
                    .and_then(|at| line[at + 7..].split_whitespace().next())
                    .and_then(|text| text.parse::<SocketAddr>().ok());
                let kind = ["diameter", "nchf", "grpc", "admin"]
                    .into_iter()
                    .find(|kind| line.contains(&format!("{kind} server listening")));
                if let (Some(kind), Some(address)) = (kind, address) {
                    listening += 1;
                    let _ = sender.send(LogEvent::Listening(kind, address));
                }
            }
            (ready, listening)
        });
        Serve { child, events, reader: Some(reader), started, replayed: None }
    }

    /// Waits until every front-end listens; `None` if the process ended first.
    pub(crate) fn wait_listening(&mut self) -> Option<(Addresses, Duration)> {
        let (mut diameter, mut nchf, mut grpc, mut admin) = (None, None, None, None);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let (Some(diameter), Some(nchf), Some(grpc), Some(admin)) = (diameter, nchf, grpc, admin) {
                return Some((Addresses { diameter, nchf, grpc, admin }, self.started.elapsed()));
            }
            // A hang guard only: a start takes well under a second.
            let left = deadline.checked_duration_since(Instant::now()).expect("serve listens within 120 s");
            match self.events.recv_timeout(left) {
                Ok(LogEvent::Listening("diameter", address)) => diameter = Some(address),
                Ok(LogEvent::Listening("nchf", address)) => nchf = Some(address),
                Ok(LogEvent::Listening("grpc", address)) => grpc = Some(address),
                Ok(LogEvent::Listening(_, address)) => admin = Some(address),
                Ok(LogEvent::EngineReady(replayed)) => self.replayed = replayed,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("serve did not listen within 120 s"),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL; says how far the process had got, from its whole log.
    pub(crate) fn kill(mut self) -> KilledAt {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
        let (ready, listening) = self.reader.take().map_or((false, 0), |r| r.join().expect("log reader"));
        match (ready, listening) {
            (false, _) => KilledAt::Recovery,
            (true, 4) => KilledAt::Serving,
            (true, _) => KilledAt::BeforeListening,
        }
    }

    /// SIGTERM and a clean exit.
    pub(crate) fn stop(self) {
        let exit = self.terminate(Duration::from_secs(120));
        assert!(exit.is_some_and(|e| e.success()), "serve stops cleanly on SIGTERM: {exit:?}");
    }

    /// SIGTERM; the exit status, or `None` (and SIGKILL) if the process is still running
    /// after `hang_guard`.
    pub(crate) fn terminate(mut self, hang_guard: Duration) -> Option<std::process::ExitStatus> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -TERM");
        let deadline = Instant::now() + hang_guard;
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("poll") {
                break Some(exit);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        exit
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.reader.is_some() {
            // A test that panicked leaves no server behind.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

//! `tollgate serve` killed with SIGKILL at seeded random moments under load from Diameter,
//! Nchf and gRPC clients, some kills while it recovers, then checked against the ledger.
//!
//! Accounts (demo subscribers, prepaid with 20.00): 1–6 carry Diameter sessions, 10–13
//! Nchf sessions (both topped up by 1,000,000.00 first, so they never run short, also in
//! runs of thousands of kills), 20–21 take
//! Diameter and gRPC debits, gRPC sessions and gRPC top-ups of 0.50 from three clients at
//! once and spend most of the run near zero.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use crate::diameter::{DiameterClient, Traffic};
use crate::grpc::{self, GrpcClient};
use crate::ledger::{demo_opening, Shared, Stats, CHECK_BOUNDS, CHECK_DISK, CHECK_EXACT, CHECK_NOT_NEGATIVE};
use crate::nchf::NchfClient;
use crate::{balance_on_disk, kills, report, scratch, seed, KilledAt, Rng, Serve};

/// Percent of requests whose first attempt got no answer that are left unanswered until
/// after the final restart; the others are sent again, with the same key, until answered.
pub(crate) const ABANDON_PERCENT: u64 = 40;
/// Percent of restarts killed again before they listen.
const RECOVERY_KILL_PERCENT: u64 = 30;
/// How long a server serves before it is killed, in milliseconds.
const SERVE_MS: (u64, u64) = (40, 700);
/// Acknowledged requests of each client sent again after the final restart.
const RESEND_SAMPLE: usize = 150;
const DEMO_SUBSCRIBERS: &str = "30";
const FUNDING: Decimal = Decimal::from_parts(100_000_000, 0, 0, false, 2);

const DIAMETER_SESSION_ACCOUNTS: [u64; 6] = [1, 2, 3, 4, 5, 6];
const NCHF_ACCOUNTS: [u64; 4] = [10, 11, 12, 13];
const DRY_ACCOUNTS: [u64; 2] = [20, 21];

/// How a request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Once.
    Once,
    /// Once, then again with the same key after the answer (Diameter: with the T flag).
    Repeat,
    /// On two connections at once.
    Twins,
}

impl Mode {
    pub(crate) fn pick(rng: &mut Rng) -> Mode {
        match rng.below(100) {
            0..70 => Mode::Once,
            70..85 => Mode::Repeat,
            _ => Mode::Twins,
        }
    }
}

/// A client thread's work: the load, then what follows the final restart.
pub(crate) trait Client: Send {
    fn name(&self) -> &str;
    /// Sends requests until the load stops.
    fn run(&mut self, shared: &Shared);
    /// Sends up to `count` acknowledged requests again (same key): each must get its first answer.
    fn resend_sample(&mut self, shared: &Shared, count: usize);
    /// Sends every unanswered request again (same key) until it is answered.
    fn retry_unanswered(&mut self, shared: &Shared);
    fn stats(&self) -> Stats;
}

#[derive(Debug, Default)]
struct Kills {
    serving: u64,
    recovery: u64,
    before_listening: u64,
    restarts: u64,
    startup_ms: Vec<u64>,
}

impl Kills {
    fn count(&mut self, at: KilledAt) {
        match at {
            KilledAt::Serving => self.serving += 1,
            KilledAt::Recovery => self.recovery += 1,
            KilledAt::BeforeListening => self.before_listening += 1,
        }
    }

    fn total(&self) -> u64 {
        self.serving + self.recovery + self.before_listening
    }

    /// A typical start, from spawn to listening, for aiming kills at recovery.
    fn startup_estimate_ms(&self) -> u64 {
        let mut recent: Vec<u64> = self.startup_ms.iter().rev().take(9).copied().collect();
        recent.sort_unstable();
        recent.get(recent.len() / 2).copied().unwrap_or(300)
    }
}

fn all_accounts() -> Vec<u64> {
    DIAMETER_SESSION_ACCOUNTS.iter().chain(&NCHF_ACCOUNTS).chain(&DRY_ACCOUNTS).copied().collect()
}

/// Checks the balances against the ledger: within the bounds, or (`exact`) equal.
fn check_balances(shared: &Shared, balances: &BTreeMap<u64, (Decimal, Decimal)>, exact: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for (account, book) in shared.books() {
        let (balance, reserved) = balances[&account];
        let taken = book.opening - balance;
        let low = book.acknowledged - book.unanswered_credit;
        let high = book.acknowledged + book.unanswered_charge;
        let line = format!(
            "  account {account:>2}: opening {} balance {balance} (reserved {reserved}): taken {taken}, acknowledged {}, unanswered up to +{} / -{}",
            book.opening, book.acknowledged, book.unanswered_charge, book.unanswered_credit
        );
        if exact {
            shared.check(CHECK_EXACT, taken == book.acknowledged, || line.clone());
        } else {
            shared.check(CHECK_BOUNDS, low <= taken && taken <= high, || line.clone());
        }
        shared.check(CHECK_NOT_NEGATIVE, balance >= Decimal::ZERO, || line.clone());
        lines.push(line);
    }
    lines
}

#[test]
fn serve_killed_at_random_moments_under_load_keeps_every_acknowledged_answer_once() {
    let seed = seed();
    let (kill_target, _) = kills();
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let dir = scratch("serve");
    let data = dir.join("data");
    let origin_host = format!("ocs-{}.crash.test", std::process::id());
    // A fixed apiRoot: the Location of a session must not change with the port of a restart.
    let options = [
        "--demo-subscribers",
        DEMO_SUBSCRIBERS,
        "--snapshot-every",
        "1000",
        "--nchf-api-root",
        "http://chf.crash.test",
    ];
    report(&[format!(
        "crash/serve: seed {seed} (TOLLGATE_CRASH_SEED={seed} replays the kill schedule), {kill_target} kills, data {}",
        data.display()
    )]);

    // Setup, nothing killed: the demo subscribers, the funding of the session accounts.
    let mut server = Serve::spawn(&data, &origin_host, &options);
    let (addresses, _) = server.wait_listening().expect("the first start listens");
    let token = std::fs::read_to_string(data.join("grpc.token")).expect("grpc.token").trim().to_owned();
    let shared = Shared::new(origin_host.clone(), token);
    for account in all_accounts() {
        shared.open_account(account, demo_opening(account));
    }
    for account in DIAMETER_SESSION_ACCOUNTS.iter().chain(&NCHF_ACCOUNTS) {
        let after = grpc::top_up(&shared, addresses.grpc, *account, FUNDING, &format!("funding-{account}"));
        assert_eq!(after, demo_opening(*account) + FUNDING, "account {account} opened with 20.00 (demo.rs)");
        shared.acknowledged(*account, -FUNDING);
    }
    shared.publish(addresses);

    let mut clients: Vec<Box<dyn Client>> = vec![
        Box::new(DiameterClient::new("dia-session-a", Traffic::Sessions, rng.fork(1), vec![1, 2, 3])),
        Box::new(DiameterClient::new("dia-session-b", Traffic::Sessions, rng.fork(2), vec![4, 5, 6])),
        Box::new(DiameterClient::new("dia-debit", Traffic::Debits, rng.fork(3), DRY_ACCOUNTS.to_vec())),
        Box::new(NchfClient::new("nchf", rng.fork(4), NCHF_ACCOUNTS.to_vec())),
        Box::new(GrpcClient::new("grpc", rng.fork(5), DRY_ACCOUNTS.to_vec(), &shared.token)),
    ];

    // The load, and the kills.
    let mut kills = Kills::default();
    let load_started = Instant::now();
    std::thread::scope(|scope| {
        let shared = &shared;
        let handles: Vec<_> = clients
            .drain(..)
            .map(|mut client| {
                scope.spawn(move || {
                    client.run(shared);
                    client
                })
            })
            .collect();
        'serving: loop {
            std::thread::sleep(Duration::from_millis(rng.between(SERVE_MS.0, SERVE_MS.1)));
            shared.retire();
            kills.count(server.kill());
            if kills.total() >= kill_target {
                break;
            }
            loop {
                let mut next = Serve::spawn(&data, &origin_host, &options);
                kills.restarts += 1;
                if rng.percent(RECOVERY_KILL_PERCENT) {
                    let estimate = kills.startup_estimate_ms();
                    std::thread::sleep(Duration::from_millis(rng.below(estimate + estimate / 5)));
                    kills.count(next.kill());
                    if kills.total() >= kill_target {
                        break 'serving;
                    }
                    continue;
                }
                let pid = next.pid();
                let (addresses, took) = next
                    .wait_listening()
                    .unwrap_or_else(|| panic!("serve (pid {pid}) exited before listening; see {}.log", data.display()));
                kills.startup_ms.push(took.as_millis() as u64);
                shared.publish(addresses);
                server = next;
                continue 'serving;
            }
        }
        shared.stop();
        clients = handles.into_iter().map(|h| h.join().expect("client thread")).collect();
    });
    let load_time = load_started.elapsed();

    // The final restart: bounds, retransmissions, every unanswered request retried.
    let mut server = Serve::spawn(&data, &origin_host, &options);
    let (addresses, _) = server.wait_listening().expect("the final start listens");
    shared.last(addresses);
    let accounts = all_accounts();
    let before = grpc::balances(&shared, addresses.grpc, &accounts);
    let bounds = check_balances(&shared, &before, false);
    for client in &mut clients {
        client.resend_sample(&shared, RESEND_SAMPLE);
    }
    for client in &mut clients {
        client.retry_unanswered(&shared);
    }
    let after = grpc::balances(&shared, addresses.grpc, &accounts);
    let exact = check_balances(&shared, &after, true);
    let stats: Vec<(String, Stats)> = clients.iter().map(|c| (c.name().to_owned(), c.stats())).collect();
    // Their connections close with them: a quiet HTTP/2 (gRPC) connection keeps `serve`
    // from stopping on SIGTERM.
    drop(clients);
    server.stop();
    for account in &accounts {
        let on_disk = balance_on_disk(&data, *account);
        shared.check(CHECK_DISK, on_disk == after[account].0, || {
            format!("account {account}: on disk {on_disk}, served {}", after[account].0)
        });
    }

    let mut total = Stats::default();
    let mut lines = vec![format!(
        "crash/serve: seed {seed}: {} kills ({} serving, {} during recovery, {} after recovery before listening), {} restarts, load {:.1?}, whole test {:.1?}, typical start {} ms",
        kills.total(),
        kills.serving,
        kills.recovery,
        kills.before_listening,
        kills.restarts,
        load_time,
        started.elapsed(),
        kills.startup_estimate_ms()
    )];
    for (name, s) in &stats {
        total.add(s);
        lines.push(format!(
            "  {:<14} requests {:>6}, sent {:>6}, acknowledged {:>6}, unanswered {:>4}, retried {:>4}, repeated {:>5}, twins {:>5}, broken {:>4}, compared {:>5}",
            name, s.requests, s.sent, s.acknowledged, s.unanswered, s.retried, s.repeated, s.twins, s.broken, s.compared
        ));
    }
    lines.push(format!(
        "  {:<14} requests {:>6}, sent {:>6}, acknowledged {:>6}, unanswered {:>4}, retried {:>4}, repeated {:>5}, twins {:>5}, broken {:>4}, compared {:>5}",
        "all", total.requests, total.sent, total.acknowledged, total.unanswered, total.retried, total.repeated, total.twins, total.broken, total.compared
    ));
    lines.push("  balances after the final restart, before retrying the unanswered:".to_owned());
    lines.extend(bounds);
    lines.push("  balances once every request was answered:".to_owned());
    lines.extend(exact);
    let checks = shared.checks();
    let mut failed = Vec::new();
    for (name, passed, fails, examples) in &checks {
        lines.push(format!("  check {name}: {passed} held, {fails} failed"));
        if *fails > 0 {
            failed.push(format!("{name}: {fails} failed, e.g. {examples:#?}"));
        }
    }
    report(&lines);
    assert!(failed.is_empty(), "seed {seed}: {failed:#?}\nserver log: {}.log", data.display());
    assert!(kills.total() >= kill_target);
    std::fs::remove_dir_all(dir).ok();
}

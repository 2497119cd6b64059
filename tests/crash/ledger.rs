//! The test's own account of what the server said, kept apart from the server: what each
//! account was charged according to the answers received (acknowledged), what requests
//! that got no answer could have charged or credited at most (unanswered), the first
//! answer to every idempotency key, the checks' tallies, and which server is up.
//!
//! Money comes from the answers where they carry it (Diameter Cost-Information, gRPC
//! amounts and grants' `charged`); Diameter and Nchf session answers carry only units, so
//! their usage is priced with the plan's one flat rate for rating group 30, which every
//! money-carrying answer is checked against.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rust_decimal::Decimal;

use crate::{Addresses, Rng};

pub(crate) const MIB: u64 = 1 << 20;

/// The rating group every request uses: `video` in `tariffs/examples/prepaid-mobile.toml`,
/// 0.10 per 1,048,576 bytes in increments of 1,024 bytes, one rate at all times.
pub(crate) const RATING_GROUP: u32 = 30;

/// What `bytes` of rating group 30 cost: 0.10 a MiB. Requests use whole MiB, so no
/// rounding is involved.
pub(crate) fn price_of(bytes: u64) -> Decimal {
    assert_eq!(bytes % MIB, 0, "the test reports whole MiB");
    Decimal::new(10, 2) * Decimal::from(bytes / MIB)
}

/// The opening balance of a prepaid demo subscriber (`src/commands/demo.rs`, `provision`:
/// accounts N with N % 10 in 0..=6 are prepaid with 20.00).
pub(crate) fn demo_opening(account: u64) -> Decimal {
    assert!(account % 10 <= 6, "account {account} is not a prepaid demo subscriber");
    Decimal::new(2000, 2)
}

/// The most a request can move its account's money: `charge` down, `credit` up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exposure {
    pub(crate) account: u64,
    pub(crate) charge: Decimal,
    pub(crate) credit: Decimal,
}

/// One account as the test sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Book {
    pub(crate) opening: Decimal,
    /// Net money taken by acknowledged requests (charges minus top-ups).
    pub(crate) acknowledged: Decimal,
    /// The most unanswered requests could have charged…
    pub(crate) unanswered_charge: Decimal,
    /// …and credited.
    pub(crate) unanswered_credit: Decimal,
}

/// A named check: how often it held and, when it did not, what was seen.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) examples: Vec<String>,
}

pub(crate) const CHECK_BOUNDS: &str = "acknowledged <= opening - balance <= acknowledged + unanswered";
pub(crate) const CHECK_EXACT: &str = "opening - balance = acknowledged once every request was answered";
pub(crate) const CHECK_FIRST_ANSWER: &str = "a retransmission gets the first answer";
pub(crate) const CHECK_NOT_NEGATIVE: &str = "no prepaid balance below zero";
pub(crate) const CHECK_KNOWN: &str = "an acknowledged session is known to its next request";
pub(crate) const CHECK_PRICE: &str = "money in an answer is the usage's price or nothing";
pub(crate) const CHECK_CONNECTIONS: &str = "no connection fails but at a kill";
pub(crate) const CHECK_DISK: &str = "balances on disk equal the server's";

/// Counts of one client (and, summed, of all).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    /// Requests (idempotency keys).
    pub(crate) requests: u64,
    /// Messages sent, retransmissions included.
    pub(crate) sent: u64,
    /// Requests answered during the load.
    pub(crate) acknowledged: u64,
    /// Requests that got no answer and were left so until after the final restart.
    pub(crate) unanswered: u64,
    /// Requests whose first attempt got no answer, sent again with the same key until answered.
    pub(crate) retried: u64,
    /// Requests sent again after their answer (T flag, re-POST, same key).
    pub(crate) repeated: u64,
    /// Requests sent on two connections at once.
    pub(crate) twins: u64,
    /// Attempts that ended with the connection broken (the server killed).
    pub(crate) broken: u64,
    /// Answers compared with the first answer to their key.
    pub(crate) compared: u64,
}

impl Stats {
    pub(crate) fn add(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.sent += other.sent;
        self.acknowledged += other.acknowledged;
        self.unanswered += other.unanswered;
        self.retried += other.retried;
        self.repeated += other.repeated;
        self.twins += other.twins;
        self.broken += other.broken;
        self.compared += other.compared;
    }
}

/// Which server is up, as the clients need to know it.
#[derive(Debug, Default)]
struct Current {
    generation: u64,
    addresses: Option<Addresses>,
    /// Set just before a kill: a connection failing from now on is the kill's doing.
    dying: bool,
    /// The load is over: clients leave what is unanswered and return.
    stop: bool,
    /// After the final restart nothing is killed: a failure is a failure.
    last: bool,
}

/// What the controller and the client threads share.
#[derive(Debug)]
pub(crate) struct Shared {
    current: Mutex<Current>,
    changed: Condvar,
    pub(crate) origin_host: String,
    pub(crate) token: String,
    books: Mutex<BTreeMap<u64, Book>>,
    checks: Mutex<BTreeMap<&'static str, Tally>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(origin_host: String, token: String) -> Shared {
        Shared {
            current: Mutex::default(),
            changed: Condvar::new(),
            origin_host,
            token,
            books: Mutex::default(),
            checks: Mutex::default(),
        }
    }

    /// A server listens at `addresses`.
    pub(crate) fn publish(&self, addresses: Addresses) {
        let mut current = lock(&self.current);
        current.generation += 1;
        current.addresses = Some(addresses);
        current.dying = false;
        self.changed.notify_all();
    }

    /// The server is about to be killed: no new connections to it.
    pub(crate) fn retire(&self) {
        let mut current = lock(&self.current);
        current.dying = true;
        current.addresses = None;
    }

    pub(crate) fn stop(&self) {
        lock(&self.current).stop = true;
        self.changed.notify_all();
    }

    /// The final server: clients may connect again, and nothing will be killed.
    pub(crate) fn last(&self, addresses: Addresses) {
        {
            let mut current = lock(&self.current);
            current.stop = false;
            current.last = true;
        }
        self.publish(addresses);
    }

    pub(crate) fn stopping(&self) -> bool {
        lock(&self.current).stop
    }

    /// Waits for a server newer than `after`; `None` once the load is over.
    pub(crate) fn wait_server(&self, after: u64) -> Option<(u64, Addresses)> {
        let mut current = lock(&self.current);
        loop {
            if current.stop {
                return None;
            }
            if let Some(addresses) = current.addresses.filter(|_| current.generation > after) {
                return Some((current.generation, addresses));
            }
            current = self
                .changed
                .wait_timeout(current, Duration::from_millis(200))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// A connection to server `generation` broke: fine if that server is being killed.
    pub(crate) fn broken(&self, generation: u64, what: &str) {
        let (expected, last) = {
            let current = lock(&self.current);
            (current.generation != generation || current.dying, current.last)
        };
        assert!(!last, "{what}: a connection to the final server failed, with nothing killed");
        if expected {
            self.pass(CHECK_CONNECTIONS);
        } else {
            self.fail(CHECK_CONNECTIONS, format!("{what} (server {generation} was not being killed)"));
        }
    }

    pub(crate) fn pass(&self, check: &'static str) {
        lock(&self.checks).entry(check).or_default().passed += 1;
    }

    pub(crate) fn fail(&self, check: &'static str, example: String) {
        let mut checks = lock(&self.checks);
        let tally = checks.entry(check).or_default();
        tally.failed += 1;
        if tally.examples.len() < 8 {
            tally.examples.push(example);
        }
    }

    pub(crate) fn check(&self, check: &'static str, holds: bool, example: impl FnOnce() -> String) {
        if holds {
            self.pass(check);
        } else {
            self.fail(check, example());
        }
    }

    pub(crate) fn checks(&self) -> Vec<(&'static str, u64, u64, Vec<String>)> {
        lock(&self.checks).iter().map(|(name, t)| (*name, t.passed, t.failed, t.examples.clone())).collect()
    }

    pub(crate) fn open_account(&self, account: u64, opening: Decimal) {
        lock(&self.books).entry(account).or_default().opening = opening;
    }

    /// An answer took `net` from the account (negative: credited).
    pub(crate) fn acknowledged(&self, account: u64, net: Decimal) {
        lock(&self.books).entry(account).or_default().acknowledged += net;
    }

    pub(crate) fn unanswered(&self, exposure: Exposure) {
        let mut books = lock(&self.books);
        let book = books.entry(exposure.account).or_default();
        book.unanswered_charge += exposure.charge;
        book.unanswered_credit += exposure.credit;
    }

    /// An unanswered request was answered after all (retried after the final restart).
    pub(crate) fn answered_late(&self, exposure: Exposure, net: Decimal) {
        let mut books = lock(&self.books);
        let book = books.entry(exposure.account).or_default();
        book.unanswered_charge -= exposure.charge;
        book.unanswered_credit -= exposure.credit;
        book.acknowledged += net;
    }

    pub(crate) fn books(&self) -> BTreeMap<u64, Book> {
        lock(&self.books).clone()
    }
}

/// The first answer to each key, and every later one compared with it.
#[derive(Debug)]
pub(crate) struct FirstAnswers<A> {
    first: HashMap<String, A>,
    keys: Vec<String>,
}

impl<A: PartialEq + Debug + Clone> FirstAnswers<A> {
    pub(crate) fn new() -> FirstAnswers<A> {
        FirstAnswers { first: HashMap::new(), keys: Vec::new() }
    }

    /// Records `answer` to `key`: the first one is kept, a later one must equal it.
    pub(crate) fn record(&mut self, shared: &Shared, stats: &mut Stats, key: &str, answer: &A) {
        match self.first.get(key) {
            None => {
                self.first.insert(key.to_owned(), answer.clone());
                self.keys.push(key.to_owned());
            }
            Some(first) => {
                stats.compared += 1;
                shared.check(CHECK_FIRST_ANSWER, first == answer, || {
                    format!("{key}: first answer {first:?}, then {answer:?}")
                });
            }
        }
    }

    /// Up to `count` keys picked at random.
    pub(crate) fn sample(&self, rng: &mut Rng, count: usize) -> Vec<String> {
        let mut keys = self.keys.clone();
        let count = count.min(keys.len());
        for i in 0..count {
            let j = i + rng.below((keys.len() - i) as u64) as usize;
            keys.swap(i, j);
        }
        keys.truncate(count);
        keys
    }
}

//! [`HubWorker`]: sends the deliveries that committed events queued, signed, at least
//! once. It keeps up to `concurrency` attempts in flight, at most `per_listener` of them
//! for one listener, each bounded by a connect and a request timeout, so a slow or dead
//! listener holds a few slots for a bounded time and never the others' deliveries. A
//! delivery is claimed under a lease (the store's lease queue): a worker that stops or
//! dies mid-attempt leaves it to be claimed again when the lease runs out, by itself
//! restarted or by another server.
//!
//! An attempt's outcome: 2xx is delivered; a network error, a timeout, 408, 429 and 5xx
//! are tried again after an exponential backoff with jitter (half to all of
//! `first_delay × 2^(attempt-1)`, at most `max_delay`), or after the listener's
//! `Retry-After` when it sent one (at most `max_retry_after`); any other answer (a 3xx,
//! which is not followed, or a 4xx) and running out of attempts dead-letters it, kept
//! for an operator to re-drive. Nothing about a delivery is logged above DEBUG except a
//! dead letter (WARN, with the listener and event ids; never the body, the URL or the
//! secret).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use jiff::Timestamp;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::RootCertStore;
use tokio::task::JoinSet;
use tollgate_store::{Delivery, RetryPolicy, Store};

use crate::client::{public_roots, Answer, HttpClient};
use crate::error::{HubError, Result};
use crate::listener::parse_callback;
use crate::signature::{sign, ATTEMPT_HEADER, EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// How deliveries are sent.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeliveryConfig {
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// Attempts in flight at once to one listener.
    pub per_listener: usize,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long the TLS handshake, sending and the answer's head may take after connecting.
    pub request_timeout: Duration,
    /// Backoff (`first_delay`, `max_delay`), attempts before a dead letter
    /// (`max_attempts`) and the claim's lease (longer than both timeouts together).
    pub retry: RetryPolicy,
    /// The longest `Retry-After` honoured; a longer one waits this long.
    pub max_retry_after: Duration,
    /// How often an idle worker looks for deliveries other processes queued (or retries
    /// that fell due).
    pub poll_interval: Duration,
    /// Accept `http://` callbacks to any host (must match the registration's setting).
    pub allow_plain_http: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            concurrency: 16,
            per_listener: 4,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                first_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(3600),
                max_attempts: 15,
                lease: Duration::from_secs(60),
            },
            max_retry_after: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(1),
            allow_plain_http: false,
        }
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Try again; after the listener's `Retry-After` if it sent one.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Never worth trying again as it is.
    Refused(String),
}

fn classify(answer: Result<Answer, String>) -> Outcome {
    match answer {
        Ok(Answer { status: 200..=299, .. }) => Outcome::Delivered,
        Ok(Answer { status: status @ (408 | 429 | 500..=599), retry_after }) => {
            Outcome::Retry { error: format!("HTTP {status}"), after: retry_after }
        }
        Ok(Answer { status, .. }) => Outcome::Refused(format!("HTTP {status} (not retried)")),
        Err(error) => Outcome::Retry { error, after: None },
    }
}

/// Sends deliveries; see the module documentation.
#[derive(Debug)]
pub struct HubWorker {
    store: Store,
    client: HttpClient,
    config: DeliveryConfig,
}

impl HubWorker {
    /// A worker on `store` trusting the Mozilla roots for `https://` callbacks.
    pub fn new(store: Store, config: DeliveryConfig) -> Result<HubWorker> {
        HubWorker::with_roots(store, config, public_roots())
    }

    /// A worker trusting `roots` (a private CA's listeners, tests).
    pub fn with_roots(store: Store, config: DeliveryConfig, roots: RootCertStore) -> Result<HubWorker> {
        let attempt = config.connect_timeout.saturating_add(config.request_timeout);
        if config.retry.lease <= attempt {
            return Err(HubError::Config {
                reason: format!(
                    "the lease ({:?}) must be longer than the connect and request timeouts together ({attempt:?}), or a \
                     slow attempt's delivery is claimed again while it runs",
                    config.retry.lease
                ),
            });
        }
        if config.concurrency == 0 || config.per_listener == 0 || config.retry.max_attempts < 1 {
            return Err(HubError::Config {
                reason: "concurrency, per_listener and max_attempts are at least 1".into(),
            });
        }
        let client = HttpClient::new(roots, config.connect_timeout, config.request_timeout)?;
        Ok(HubWorker { store, client, config })
    }

    /// Runs until `shutdown` completes, then lets the attempts in flight finish (each is
    /// bounded by the timeouts). Dropping the future instead abandons them: their
    /// deliveries are claimed again when their lease runs out.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut in_flight: JoinSet<Ended> = JoinSet::new();
        let mut busy: HashMap<String, usize> = HashMap::new();
        let mut delivered: Vec<i64> = Vec::new();
        loop {
            self.fill(&mut in_flight, &mut busy).await;
            tokio::select! {
                () = &mut shutdown => break,
                Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => {
                    ended(finished, &mut busy, &mut delivered);
                    // The attempts that ended meanwhile are recorded with it.
                    while let Some(finished) = in_flight.try_join_next() {
                        ended(finished, &mut busy, &mut delivered);
                    }
                    self.record_delivered(&mut delivered).await;
                }
                () = self.store.hub_published() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        while let Some(finished) = in_flight.join_next().await {
            ended(finished, &mut busy, &mut delivered);
        }
        self.record_delivered(&mut delivered).await;
    }

    /// Records the deliveries whose attempts succeeded, in one transaction: under load
    /// several end while the one before waits for the store, and each would otherwise be
    /// a write transaction of its own. Not recorded (the store failed), they are sent
    /// again when their lease runs out (at least once).
    async fn record_delivered(&self, delivered: &mut Vec<i64>) {
        if delivered.is_empty() {
            return;
        }
        if let Err(error) = self.store.deliveries_done(delivered, Timestamp::now()).await {
            tracing::warn!(%error, count = delivered.len(),
                "hub: recording delivered deliveries failed; they are sent again after their lease");
        }
        delivered.clear();
    }

    /// Claims as many due deliveries as there are free slots (skipping listeners at their
    /// limit) and starts them.
    async fn fill(&self, in_flight: &mut JoinSet<Ended>, busy: &mut HashMap<String, usize>) {
        let free = self.config.concurrency.saturating_sub(in_flight.len());
        if free == 0 {
            return;
        }
        let now = Timestamp::now();
        // What is due, by listener, read without the write lock: a claim (a write
        // transaction, queued behind the store's writers on SQLite) asks for no more than
        // the free slots and the listeners' remaining shares take, and is not made at all
        // when they take nothing (every listener with work at its limit, or none due).
        let due = match self.store.due_deliveries_by_listener(now).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "hub: reading the due deliveries failed; trying again");
                return;
            }
        };
        let takes: usize = due
            .iter()
            .map(|(listener, count)| {
                let share = self.config.per_listener.saturating_sub(busy.get(listener).copied().unwrap_or(0));
                share.min(usize::try_from(*count).unwrap_or(usize::MAX))
            })
            .sum();
        let limit = free.min(takes);
        if limit == 0 {
            return;
        }
        let full: Vec<&str> =
            busy.iter().filter(|(_, n)| **n >= self.config.per_listener).map(|(id, _)| id.as_str()).collect();
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let claimed = match self.store.claim_deliveries(now, limit, self.config.retry.lease, &full).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "hub: claiming deliveries failed; trying again");
                return;
            }
        };
        for delivery in claimed {
            let count = busy.entry(delivery.listener_id.clone()).or_insert(0);
            if *count >= self.config.per_listener {
                // More of one listener's deliveries than its share came in one claim.
                if let Err(error) = self.store.delivery_release(&delivery, now).await {
                    tracing::warn!(%error, id = delivery.id, "hub: handing a delivery back failed; its lease will");
                }
                continue;
            }
            *count += 1;
            let (store, client, config) = (self.store.clone(), self.client.clone(), self.config.clone());
            in_flight.spawn(async move {
                let delivered = attempt(&store, &client, &config, &delivery).await;
                Ended { listener: delivery.listener_id, delivered: delivered.then_some(delivery.id) }
            });
        }
    }
}

/// What an attempt's task hands back to the worker.
struct Ended {
    listener: String,
    /// The delivery's id when it was delivered (the worker records it); a retry or a dead
    /// letter is recorded by the attempt.
    delivered: Option<i64>,
}

/// An attempt's task ended: its listener's slot is free, and a delivery is to be recorded.
fn ended(
    finished: std::result::Result<Ended, tokio::task::JoinError>,
    busy: &mut HashMap<String, usize>,
    delivered: &mut Vec<i64>,
) {
    if let Ok(ended) = finished {
        release(busy, &ended.listener);
        delivered.extend(ended.delivered);
    }
}

fn release(busy: &mut HashMap<String, usize>, listener: &str) {
    if let Some(count) = busy.get_mut(listener) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            busy.remove(listener);
        }
    }
}

/// The headers of one attempt, signed now.
fn signed_headers(delivery: &Delivery, timestamp_s: i64) -> Vec<(HeaderName, HeaderValue)> {
    let signature = sign(delivery.secret.expose(), timestamp_s, delivery.body.as_bytes());
    let values = [
        (EVENT_ID_HEADER, delivery.event_id.clone()),
        (EVENT_TYPE_HEADER, delivery.event_type.clone()),
        (TIMESTAMP_HEADER, timestamp_s.to_string()),
        (SIGNATURE_HEADER, signature),
        (ATTEMPT_HEADER, delivery.attempt.to_string()),
    ];
    values
        .into_iter()
        .filter_map(|(name, value)| Some((HeaderName::from_static(name), HeaderValue::from_str(&value).ok()?)))
        .collect()
}

/// The wait before the attempt after `attempt`: half to all of the policy's backoff.
fn backoff(policy: &RetryPolicy, attempt: i64) -> Duration {
    let full = policy.delay_after(attempt);
    let half_ms = u64::try_from(full.as_millis() / 2).unwrap_or(u64::MAX / 2);
    let mut random = [0u8; 8];
    let spread = match SystemRandom::new().fill(&mut random) {
        Ok(()) => u64::from_le_bytes(random) % half_ms.saturating_add(1),
        Err(_) => half_ms,
    };
    Duration::from_millis(half_ms.saturating_add(spread))
}

/// One attempt of one delivery. `true` if it was delivered (for the worker to record);
/// a retry or a dead letter is written to the store here.
async fn attempt(store: &Store, client: &HttpClient, config: &DeliveryConfig, delivery: &Delivery) -> bool {
    let outcome = match parse_callback(&delivery.callback, config.allow_plain_http) {
        Err(error) => Outcome::Refused(error.to_string()),
        Ok(callback) => {
            let headers = signed_headers(delivery, Timestamp::now().as_second());
            classify(client.post(&callback, headers, Bytes::from(delivery.body.clone())).await)
        }
    };
    let now = Timestamp::now();
    let (id, listener, event) = (delivery.id, &delivery.listener_id, &delivery.event_id);
    let written = match outcome {
        Outcome::Delivered => return true,
        Outcome::Retry { error, after } if delivery.attempt < config.retry.max_attempts => {
            let delay = match after {
                Some(asked) => asked.clamp(config.retry.first_delay, config.max_retry_after),
                None => backoff(&config.retry, delivery.attempt),
            };
            tracing::debug!(id, %listener, %event, attempt = delivery.attempt, ?delay, %error, "hub: attempt failed");
            let at = now.checked_add(delay).unwrap_or(Timestamp::MAX);
            store.delivery_retry(delivery, &error, at).await
        }
        Outcome::Retry { error, .. } | Outcome::Refused(error) => {
            tracing::warn!(id, %listener, %event, attempt = delivery.attempt, %error, "hub: delivery dead-lettered");
            store.delivery_dead(delivery, &error, now).await
        }
    };
    if let Err(error) = written {
        tracing::warn!(id, %error, "hub: recording a delivery's outcome failed; it is tried again after its lease");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_delivered_retried_or_refused() {
        let answer = |status| Ok(Answer { status, retry_after: None });
        assert_eq!(classify(answer(200)), Outcome::Delivered);
        assert_eq!(classify(answer(204)), Outcome::Delivered);
        for status in [408, 429, 500, 502, 503, 599] {
            assert!(matches!(classify(answer(status)), Outcome::Retry { .. }), "{status}");
        }
        for status in [301, 400, 401, 403, 404, 410, 413, 422] {
            assert!(matches!(classify(answer(status)), Outcome::Refused(_)), "{status}");
        }
        assert!(matches!(classify(Err("connect: refused".into())), Outcome::Retry { .. }));
        let asked = Ok(Answer { status: 429, retry_after: Some(Duration::from_secs(7)) });
        assert_eq!(classify(asked), Outcome::Retry { error: "HTTP 429".into(), after: Some(Duration::from_secs(7)) });
    }

    #[test]
    fn the_backoff_doubles_with_jitter_between_half_and_all() {
        let policy = RetryPolicy {
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_attempts: 10,
            lease: Duration::from_secs(60),
        };
        for (attempt, full) in [(1, 2), (2, 4), (3, 8), (6, 60), (40, 60)] {
            let full = Duration::from_secs(full);
            for _ in 0..50 {
                let delay = backoff(&policy, attempt);
                assert!(
                    delay >= full / 2 && delay <= full,
                    "attempt {attempt}: {delay:?} outside [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
    }

    #[tokio::test]
    async fn a_lease_shorter_than_an_attempt_is_refused() {
        let store = Store::memory().await.expect("a store");
        let mut config = DeliveryConfig::default();
        config.retry.lease = config.request_timeout;
        assert!(matches!(HubWorker::new(store, config), Err(HubError::Config { .. })));
    }
}

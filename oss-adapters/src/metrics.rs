//! What the network interfaces count for the admin server's `/metrics`: requests by
//! interface and result code, and their latency, recorded on the request path with a few
//! relaxed atomic additions: no lock, no allocation.
//!
//! Each interface ([`DIAMETER`], [`NCHF`], [`GRPC`]) is a process-wide static, as a
//! Prometheus client library's default registry is: the servers record into it without
//! being handed anything, and one process serves one set of interfaces. Its counters are
//! striped: a thread writes the stripe it was given on first use ([`STRIPES`] of them,
//! each on cache lines of its own), and a scrape sums the stripes, so the runtime's
//! threads do not contend for one cache line. A result code outside an interface's list
//! is counted as `other`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tollgate_engine::metrics::{Histogram, HistogramSnapshot};

use crate::diameter::result_code as rc;

/// Stripes per interface: more than the threads that usually record at once.
pub const STRIPES: usize = 8;

/// The most result codes an interface lists (besides `other`).
pub const MAX_CODES: usize = 24;

/// One interface's counters.
#[derive(Debug)]
pub struct InterfaceMetrics {
    /// The `interface` label.
    pub name: &'static str,
    /// The result codes counted one by one, with their label.
    codes: &'static [(u32, &'static str)],
    stripes: [Stripe; STRIPES],
}

#[derive(Debug)]
#[repr(align(64))]
struct Stripe {
    /// One per listed code, then `other`.
    requests: [AtomicU64; MAX_CODES + 1],
    latency: Histogram,
}

/// One interface's counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSnapshot {
    pub name: &'static str,
    /// Answers by result code label; codes never answered are left out.
    pub requests: Vec<(&'static str, u64)>,
    pub latency: HistogramSnapshot,
}

impl InterfaceMetrics {
    pub const fn new(name: &'static str, codes: &'static [(u32, &'static str)]) -> InterfaceMetrics {
        assert!(codes.len() <= MAX_CODES, "too many result codes for one interface");
        let stripes = [const { Stripe { requests: [const { AtomicU64::new(0) }; MAX_CODES + 1], latency: Histogram::new() } };
            STRIPES];
        InterfaceMetrics { name, codes, stripes }
    }

    /// Counts one answer with result code `code`, given `elapsed` after its request.
    pub fn record(&self, code: u32, elapsed: Duration) {
        let slot = self.codes.iter().position(|(known, _)| *known == code).unwrap_or(self.codes.len());
        let stripe = &self.stripes[stripe()];
        stripe.requests[slot].fetch_add(1, Ordering::Relaxed);
        stripe.latency.observe(elapsed);
    }

    /// The stripes summed.
    pub fn snapshot(&self) -> InterfaceSnapshot {
        let mut latency = HistogramSnapshot::default();
        let mut counts = [0u64; MAX_CODES + 1];
        for stripe in &self.stripes {
            latency.merge(&stripe.latency.snapshot());
            for (total, count) in counts.iter_mut().zip(&stripe.requests) {
                *total = total.wrapping_add(count.load(Ordering::Relaxed));
            }
        }
        let labels = self.codes.iter().map(|(_, label)| *label).chain(["other"]);
        let requests = labels.zip(counts).filter(|(_, count)| *count > 0).collect();
        InterfaceSnapshot { name: self.name, requests, latency }
    }
}

/// The stripe of the calling thread, given on its first use.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

/// Credit-control answers (CCAs) by Result-Code.
pub static DIAMETER: InterfaceMetrics = InterfaceMetrics::new(
    "diameter",
    &[
        (rc::SUCCESS, "2001"),
        (rc::LIMITED_SUCCESS, "2002"),
        (rc::COMMAND_UNSUPPORTED, "3001"),
        (rc::UNABLE_TO_DELIVER, "3002"),
        (rc::TOO_BUSY, "3004"),
        (rc::APPLICATION_UNSUPPORTED, "3007"),
        (rc::INVALID_HDR_BITS, "3008"),
        (rc::INVALID_AVP_BITS, "3009"),
        (rc::UNKNOWN_PEER, "3010"),
        (rc::END_USER_SERVICE_DENIED, "4010"),
        (rc::CREDIT_CONTROL_NOT_APPLICABLE, "4011"),
        (rc::CREDIT_LIMIT_REACHED, "4012"),
        (rc::AVP_UNSUPPORTED, "5001"),
        (rc::UNKNOWN_SESSION_ID, "5002"),
        (rc::INVALID_AVP_VALUE, "5004"),
        (rc::MISSING_AVP, "5005"),
        (rc::UNABLE_TO_COMPLY, "5012"),
        (rc::INVALID_AVP_LENGTH, "5014"),
        (rc::USER_UNKNOWN, "5030"),
        (rc::RATING_FAILED, "5031"),
    ],
);

/// Nchf_ConvergedCharging answers by HTTP status.
pub static NCHF: InterfaceMetrics = InterfaceMetrics::new(
    "nchf",
    &[
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (411, "411"),
        (413, "413"),
        (415, "415"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
        (504, "504"),
    ],
);

/// gRPC answers by status code (streamed debits: one per reply).
pub static GRPC: InterfaceMetrics = InterfaceMetrics::new(
    "grpc",
    &[
        (0, "OK"),
        (1, "CANCELLED"),
        (2, "UNKNOWN"),
        (3, "INVALID_ARGUMENT"),
        (4, "DEADLINE_EXCEEDED"),
        (5, "NOT_FOUND"),
        (6, "ALREADY_EXISTS"),
        (7, "PERMISSION_DENIED"),
        (8, "RESOURCE_EXHAUSTED"),
        (9, "FAILED_PRECONDITION"),
        (10, "ABORTED"),
        (11, "OUT_OF_RANGE"),
        (12, "UNIMPLEMENTED"),
        (13, "INTERNAL"),
        (14, "UNAVAILABLE"),
        (15, "DATA_LOSS"),
        (16, "UNAUTHENTICATED"),
    ],
);

/// Every interface, in the order `/metrics` lists them.
pub fn interfaces() -> [&'static InterfaceMetrics; 3] {
    [&DIAMETER, &NCHF, &GRPC]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_from_several_threads_add_up_by_code_and_unknown_codes_count_as_other() {
        static TEST: InterfaceMetrics = InterfaceMetrics::new("test", &[(1, "one"), (2, "two")]);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        TEST.record(1, Duration::from_micros(10));
                    }
                    TEST.record(7, Duration::from_millis(2));
                });
            }
        });
        let snapshot = TEST.snapshot();
        assert_eq!(snapshot.requests, vec![("one", 400), ("other", 4)]);
        assert_eq!(snapshot.latency.count(), 404);
        assert_eq!(snapshot.latency.sum_ns, 400 * 10_000 + 4 * 2_000_000);
    }
}

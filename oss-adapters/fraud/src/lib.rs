//! Fraud and revenue-leakage detection (issue 19): streaming detectors over the charging
//! events that run beside the engine and never on its charging path. Each detector
//! (`detectors/`) is a pure, deterministic state machine over `UsageEvent`s (`event.rs`)
//! with bounded memory, configured by a `Policy` (`policy.rs`); it raises a `Finding`
//! (`finding.rs`) once per episode, which maps onto an alarm report, and, by policy, asks
//! for the subscriber's suspension through the `Actions` hook the server implements
//! (`actions.rs`: `ActionQueue`, a bounded non-blocking one).
//! `synthetic.rs` generates a seeded month of traffic with injected fraud and its ground
//! truth, for the tests and the benchmark (`examples/month.rs`). With the `ledger`
//! feature, `ledger.rs` turns the engine's rated-event ledger entries into events.
//!
//! Floats appear here only as statistics (EWMA, deviations, z-scores, shares); money is
//! integer minor units (`UsageEvent::charged_minor`), so the workspace's
//! `clippy::float_arithmetic` warning is allowed for this crate.

#![forbid(unsafe_code)]
#![allow(clippy::float_arithmetic)]

pub mod actions;
pub mod detectors;
mod error;
pub mod event;
pub mod finding;
#[cfg(feature = "ledger")]
pub mod ledger;
mod lru;
pub mod policy;
pub mod synthetic;

pub use actions::{ActionQueue, Order};
pub use detectors::{Detector, Detectors};
pub use error::FraudError;
pub use event::{Destination, Direction, Outcome, Service, Source, UsageEvent};
pub use finding::{Action, Actions, AlarmFields, DetectorKind, Finding, Severity, Subject};
pub use policy::Policy;

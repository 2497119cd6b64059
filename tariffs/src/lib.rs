//! Tollgate's tariff language, its compiler and the rating function.
//!
//! A plan is written in TOML ([`source`]), compiled by [`compile_file`] /
//! [`compile_str`] into an immutable [`CompiledPlan`] built for lookup speed, saved
//! and loaded with rkyv ([`store`]), and used by [`rate`] to price usage events.
//!
//! This crate does no I/O on the rating path and knows nothing of sockets, balances or
//! databases: [`rate`] is a pure function of the plan, the event and the allowance
//! balances it is given.

#![forbid(unsafe_code)]

pub mod calendar;
pub mod compile;
mod error;
pub mod money;
pub mod plan;
pub mod prefix;
mod rate;
pub mod source;
pub mod store;

pub use compile::{compile_file, compile_str};
pub use error::{Problem, TariffError};
pub use money::{Rounding, RoundingMode};
pub use plan::{AllowanceId, BandId, CompiledPlan, DestinationId, ServiceId, Unit};
pub use rate::{
    rate, rate_with_paid_units, AllowanceBalance, AllowanceDraw, LineKind, RatedEvent, RatedLine, Unrated, UsageEvent,
    MAX_EVENT_BYTES, MAX_EVENT_EVENTS, MAX_EVENT_SECONDS, MAX_EVENT_UNITS, MAX_START_UTC_SECONDS,
};

//! Tollgate's fault management: alarms with the ITU-T X.733 / TMF642 fields and their one
//! lifecycle (`alarm.rs`: raised, updated when the same object and cause is reported
//! again, cleared; acknowledged apart from that), and their forwarding to an operator's
//! fault manager as SNMPv2c traps (`snmp.rs`, described by `TOLLGATE-ALARM-MIB.txt`).
//!
//! `Alarms` (`service.rs`) applies a change to the store in one transaction with its
//! audit record and then sends its trap. No SQL and no HTTP here: the store keeps the
//! alarms, the management API serves them.

#![forbid(unsafe_code)]

pub mod alarm;
mod error;
pub mod service;
pub mod snmp;

pub use alarm::{AckState, Alarm, AlarmReport, AlarmState, AlarmType, Change, PerceivedSeverity};
pub use error::AlarmError;
pub use service::Alarms;
pub use snmp::TrapSender;

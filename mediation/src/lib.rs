//! Batch mediation of usage files: CSV and 3GPP TS 32.298 BER CDR files are read as a
//! stream, normalized into one [`UsageRecord`] shape, validated, identified, rated and
//! charged exactly once through the engine's bulk path, and written out as rated events,
//! rejects with reasons, and a per-file summary that always balances. A killed run
//! resumes from its last checkpoint (see [`pipeline`]). Rated events are re-priced after a
//! tariff fix by [`rerate()`].
#![forbid(unsafe_code)]

mod error;
pub mod event;
mod lines;
pub mod pipeline;
pub mod readers;
pub mod rerate;

pub use error::MediationError;
pub use event::{Item, Raw, Reader, RejectReason, UsageRecord};
pub use pipeline::{
    ChargedRecord, ChargedVolume, Format, MediationConfig, Mediator, Outputs, Progress, RatedLine, Summary,
};
pub use rerate::{rerate, AuditLine, RerateConfig, RerateSummary};

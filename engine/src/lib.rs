//! Tollgate's charging core: accounts, balances, reservations, exactly-once request
//! handling and a durable journal. Only this crate mutates a balance.

#![deny(unsafe_code)]

pub mod accounts;
pub mod api;
pub mod compact;
pub mod cycle;
pub mod dedupe;
pub mod directory;
pub mod durable;
mod error;
pub mod fs;
pub mod journal;
pub mod layout;
pub mod model;
pub mod plans;
mod prefetch;
pub mod records;
pub mod recovery;
pub mod reshard;
pub mod retention;
pub mod runtime;
pub mod shard;
#[doc(hidden)]
pub mod simfs;
pub mod snapshot;
mod table;
mod wire;

pub use api::{
    Answer, Body, Charged, Grant, Operation, Outcome, Request, Rerated, ServiceRef, SessionStep, SmolStr, Target,
    UnitRequest, Usage,
};
pub use error::EngineError;
pub use journal::FsyncPolicy;
pub use model::{AccountId, AccountKind, Identity, SubscriptionId};
pub use plans::Plans;
pub use records::{RecordAnswer, RecordCharge, RecordKey, RecordOutcome};
pub use runtime::{Callback, Clock, Engine, EngineConfig, ManualClock, PendingRecords, SystemClock};
pub use shard::{ChargingConfig, Effect, ShardState};

//! Tollgate's charging core: accounts, balances, reservations, exactly-once request
//! handling and a durable journal. Only this crate mutates a balance.
//!
//! The public surface is [`Engine`] with its configuration ([`EngineConfig`],
//! [`ChargingConfig`]), the request and answer types every front-end uses ([`Request`],
//! [`Answer`] and what they hold), the bulk path's record types ([`RecordCharge`],
//! [`RecordAnswer`]), an account's [`history`], the rated-event [`ledger`], and the operations on a data directory
//! that run beside or without an engine ([`layout`], [`reshard`], [`retention`], and
//! the [`fs`] and [`durable`] file primitives). The crate README lists it. Everything
//! else is private; [`testing`] re-exports what the crash, format and fuzz tests and the
//! micro-benchmarks reach into, and is not an API.

#![deny(unsafe_code)]

mod accounts;
mod api;
mod bulk;
mod config;
mod cycle;
mod decide;
mod dedupe;
mod directory;
pub mod durable;
mod error;
mod format;
pub mod fs;
pub mod history;
mod journal;
pub mod layout;
pub mod ledger;
pub mod metrics;
mod model;
mod plans;
mod prefetch;
mod records;
mod recovery;
pub mod reshard;
pub mod retention;
mod runtime;
mod simfs;
mod snapshot;
mod state;
mod table;

pub use api::{
    AccountView, AllowanceGrant, AllowanceUse, AllowanceView, Answer, BalanceView, Body, BucketView, Charged,
    CycleTotals, Grant, Name, Operation, Outcome, PlanChangeAt, Request, Rerated, ServiceRef, ServiceTotal,
    SessionStep, SmolStr, Target, UnitRequest, Usage,
};
pub use config::{ChargingConfig, EngineConfig, MAX_IDENTITIES, MAX_KEY_BYTES, MAX_TEXT_BYTES};
pub use dedupe::MAX_WINDOW as MAX_DEDUPE_WINDOW;
pub use error::EngineError;
pub use journal::FsyncPolicy;
pub use model::{AccountId, AccountKind, BucketId, Identity, SubscriptionId};
pub use plans::{PlanNames, Plans, Versioned};
pub use records::{RatedIndexes, RecordAnswer, RecordCharge, RecordKey, RecordOutcome};
pub use recovery::Recovered;
pub use runtime::{
    Callback, Clock, Engine, ManualClock, MoneyTotals, OpenReport, PendingRecords, ShardStatus, SystemClock,
    BULK_BESIDE_REQUESTS, BULK_PER_PASS,
};
/// What a plan counts a service in, as `Plans::rating_group_unit` says it.
pub use tollgate_tariffs::Unit;

/// Internals the engine's own tests, the fuzz targets and the micro-benchmarks reach
/// into: shard state and effects, the journal and snapshot codecs, recovery, the
/// simulated file system. Not an API: anything here may change without notice.
#[doc(hidden)]
pub mod testing {
    pub use crate::bulk::charge_record;
    pub use crate::decide::{decide, Context, Resolved};
    pub use crate::dedupe::{RecentAnswers, Window};
    pub use crate::directory::Directory;
    pub use crate::format::charges::ChargeDetail;
    pub use crate::format::charges::{decode_charges, decode_compact_charges, ChargesWriter};
    pub use crate::format::effects::{decode as decode_compact_effects, encode as encode_compact_effects};
    pub use crate::journal::{
        scan, segments, Faults, FileStorage, Journal, JournalEntry, MemoryStorage, RecordKind, Storage,
        RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
    };
    pub use crate::model::{Account, MoneyBucket, MoneyBuckets, Reservation, SessionRecord, UnitBucket, UsageTotals};
    pub use crate::recovery::{archive_dir, read_history, recover, replay_bytes};
    pub use crate::runtime::shard_of;
    pub use crate::simfs::SimFs;
    pub use crate::snapshot::{snapshot_path, SnapshotImage};
    pub use crate::state::{Effect, MoneyKind, RatedDetail, RecordRerated, RefusedRecord, ShardState, Totals};
}

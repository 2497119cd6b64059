//! Tollgate's bulk import: a legacy system's customers (each with its billing account) and
//! subscriptions, read from CSV files through an operator-written column mapping
//! ([`Mapping`], TOML, the shape of mediation's), validated row by row (a bad row goes to
//! the rejects file with its row number, field and reason, and the import goes on),
//! de-duplicated by external id (the same row again is skipped, a different row under an
//! imported external id is rejected: an import is not an update), written a batch of rows
//! per transaction with multi-row statements, each batch committed with its outbox rows
//! (the engine accounts and subscriptions it implies), its audit record and the run's
//! checkpoint, so a killed import resumes exactly where it stopped ([`import_file`]). No
//! SQL (the store's) and no engine calls (the outbox worker's).
#![forbid(unsafe_code)]

mod batch;
mod customers;
mod error;
mod generate;
mod mapping;
mod reader;
mod run;
mod subscriptions;

pub use batch::MAX_EXTERNAL_ID_CHARS;
pub use customers::{parse_row as parse_customer_row, CustomerData};
pub use error::{ImportError, Result};
pub use generate::{generate, Generated, CUSTOMERS_MAPPING, GENERATED_PLAN, SUBSCRIPTIONS_MAPPING};
pub use mapping::{
    fields_of, Columns, Field, Mapping, Reject, Source, CUSTOMER_FIELDS, CUSTOMER_REQUIRED, SUBSCRIPTION_FIELDS,
    SUBSCRIPTION_REQUIRED,
};
pub use reader::{RawLines, RowPosition, RowReader, MAX_ROW_BYTES};
pub use run::{import_file, ImportOptions, Progress, Summary, DEFAULT_BATCH_ROWS, MAX_BATCH_ROWS, REJECTS_HEADER};
pub use subscriptions::{parse_row as parse_subscription_row, SubscriptionData, SUSPENDED_REASON};
pub use tollgate_store::ImportKind;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The SHA-256 of `bytes` as 64 lowercase hex digits.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

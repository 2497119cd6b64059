//! Tollgate's resource inventory (after TM Forum's TMF639), the OSS side of an order: MSISDN
//! ranges with golden numbers (`number.rs`), SIM cards loaded from a vendor's output file
//! (`sim.rs`) with their keys sealed at rest (`secret.rs`), network elements
//! (`element.rs`), one lifecycle for numbers and SIMs (`lifecycle.rs`: available → reserved
//! → assigned → quarantine or retired) and the TMF639 documents (`doc.rs`). [`Inventory`]
//! (`service.rs`) applies them to the store, one transaction per change with its audit
//! record. **A number or SIM is never handed out twice** (the store reserves in one
//! statement) and **a SIM's keys never leave**: not in a document, a log or the audit
//! trail. No SQL (the store's) and no HTTP (the API's).
#![forbid(unsafe_code)]

mod doc;
mod element;
mod error;
mod lifecycle;
mod number;
mod secret;
mod service;
mod sim;

pub use doc::{parse_id, pool_doc, ResourceKind};
pub use element::{validate_element, ValidElement, ELEMENT_STATUSES, ELEMENT_TYPES};
pub use error::{InventoryError, Result};
pub use lifecycle::{effective, next, Action, Illegal, ResourceState};
pub use number::{
    parse_msisdn, GoldenRule, GoldenRules, Money, NumberRange, Pattern, MAX_GOLDEN_NUMBERS, MAX_GOLDEN_PATTERNS,
    MAX_GOLDEN_RULES, MAX_MSISDN_DIGITS, MAX_PRICE_DIGITS, MAX_PRICE_SCALE, MAX_RANGE_NUMBERS, MIN_MSISDN_DIGITS,
};
pub use secret::{KeySealer, SimKey, SimKeys, REDACTED};
pub use service::{
    Inventory, InventoryConfig, Page, RangeLoad, Reservation, Reserve, BASE_PATH, FILTERS, MAX_OWNER_CHARS,
};
pub use sim::{
    check_iccid, check_imsi, luhn_check_digit, luhn_valid, parse_plmn, parse_sim_file, SimCard, SimFile,
    MAX_HEADER_LINES, MAX_SIM_CARDS, MAX_SIM_FILE_BYTES,
};
pub use tollgate_store::PoolKind;

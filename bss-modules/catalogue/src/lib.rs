//! Tollgate's product catalogue, after TM Forum's TMF620: product specifications,
//! offerings, offering prices and categories, their lifecycle (In study → In design →
//! Active → Retired → Obsolete), validity periods, bundles and price shapes (recurring with
//! its period, one-time, usage pointing at a tariff plan). The rules are here, as pure
//! functions of JSON documents ([`validate`], [`LifecycleStatus::transition`],
//! [`merge_patch`]); [`Catalogue`] applies them to the store in one transaction per change,
//! with the change's audit record and its event for the hub's listeners ([`EVENTS`]). No SQL (the store's) and no HTTP (the API's): the API
//! and the CLI both call [`Catalogue`], so a rule exists once.
#![forbid(unsafe_code)]

mod error;
mod item;
mod lifecycle;
mod patch;
mod price;
mod service;

pub use error::{CatalogueError, Result};
pub use item::{validate, Kind, Validated, MAX_NAME_CHARS};
pub use lifecycle::LifecycleStatus;
pub use patch::merge_patch;
pub use price::{parse_money, ChargePeriod, PriceShape, MAX_MONEY_DIGITS, MAX_PLAN_SOURCE_BYTES};
pub use service::{Catalogue, Filter, Page, BASE_PATH, EVENTS, FILTERS};

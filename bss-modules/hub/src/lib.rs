//! Tollgate's event hub (TMF630 Part 2, the TM Forum API hub): listeners register on an
//! API's `{root}/hub` with a callback and a query; the BSS publishes each change as an
//! event in the change's own transaction (`Tx::publish_event`, tollgate-store); the
//! [`HubWorker`] sends every event to every matching listener, signed with the listener's
//! secret (HMAC-SHA256, `signature.rs`), at least once, retried with backoff and jitter,
//! dead-lettered after a limit and re-driven by an operator. `listener.rs` holds the
//! registration rules ([`Hub`], [`HubApi`], callbacks, the query syntax), `client.rs` one
//! HTTP attempt, `worker.rs` the worker. No SQL (the store's); the routes are the API's.
//! README.md has the headers and how a receiver verifies them.
#![forbid(unsafe_code)]

mod client;
mod error;
mod listener;
pub mod signature;
mod worker;

pub use error::{HubError, Result};
pub use listener::{
    delivery_doc, parse_callback, parse_query, Callback, Caller, Hub, HubApi, HubOptions, MAX_CALLBACK_BYTES,
    MAX_QUERY_BYTES, MAX_QUERY_TERMS,
};
pub use worker::{DeliveryConfig, HubWorker};

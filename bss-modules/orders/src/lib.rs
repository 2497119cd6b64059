//! Tollgate's product orders (after TM Forum's TMF622) and their durable provisioning
//! workflow. [`Orders`] places, reads, amends and cancels orders and reads the product
//! (TMF637), service (TMF638) and service order (TMF641) inventories; [`Workflow`] runs one
//! step of an order item at a time, each step recorded in the store, retried with backoff,
//! undone in reverse order when a later one fails for good, and resumed after a crash;
//! [`ProvisioningWorker`] claims due steps and runs them. The engine, the resource
//! inventory and the network are reached through ports ([`EnginePort`], [`Resources`],
//! `tollgate_activation::Activator`). No SQL (the store's) and no HTTP (the API's).
#![forbid(unsafe_code)]

mod action;
mod docs;
mod error;
mod health;
mod inventory;
mod offering;
mod ports;
mod service;
mod state;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;
mod workflow;

pub use action::{
    parse_order, Action, Request, RequestedItem, RequestedOrder, Step, MAX_ITEMS, MAX_ITEM_ID_CHARS, MAX_REF_BYTES,
    MAX_START_AHEAD_DAYS,
};
pub use docs::{service_order_id, ORDER_BASE_PATH, PRODUCT_BASE_PATH, SERVICE_BASE_PATH, SERVICE_ORDER_BASE_PATH};
pub use error::{OrdersError, Result};
pub use health::{StepHealth, StepStatus};
pub use inventory::{InventoryResources, ORDER_HOLD_DAYS};
pub use ports::{
    BoxFuture, EngineAnswer, EngineCall, EngineOperation, EnginePort, EngineTarget, NetworkDetails, ResourceKind,
    Resources, Sim,
};
pub use service::{
    Orders, Page, Placed, MAX_IDEMPOTENCY_KEY_BYTES, ORDER_EVENTS, ORDER_FILTERS, PRODUCT_FILTERS, SERVICE_FILTERS,
};
pub use state::{ItemState, OrderState};
pub use worker::{ProvisioningWorker, DEFAULT_CONCURRENCY, MAX_CONCURRENCY};
pub use workflow::Workflow;

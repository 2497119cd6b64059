//! Tollgate's BSS store: the only crate that speaks SQL. It opens SQLite (embedded, a file
//! in the data directory) or PostgreSQL (several servers, one database) behind one code path
//! ([`Store`], [`Tx`]; the dialects differ only inside `sql.rs`), runs the migrations on open,
//! and provides what the BSS modules are built from: optimistic concurrency on versioned
//! rows ([`Version`], ETags), the outbox through which a BSS change reaches the engine
//! ([`Tx::enqueue`], [`OutboxWorker`]), the hash-chained append-only audit trail
//! ([`Tx::audit`], [`Store::verify_audit_chain`]) and API tokens stored hashed
//! ([`Tx::create_token`], [`Store::check_token`]), and the product catalogue's rows
//! ([`Tx::insert_catalogue_item`], [`Store::catalogue_list`]), and customers' and billing
//! accounts' rows ([`Tx::insert_customer`], [`Tx::insert_billing_account`]), subscriptions'
//! rows ([`Tx::insert_subscriptions`]) and what a bulk import needs (multi-row inserts,
//! lookups by external id, the import run's checkpoint: [`Tx::insert_imported_accounts`],
//! [`Tx::save_import_run`]), prepaid balance requests ([`Tx::insert_balance_action`]), the
//! resource inventory's rows: number ranges, MSISDNs and SIM cards reserved in one statement
//! ([`Tx::reserve_next`]), network elements; the event hub's listeners, events and
//! deliveries ([`Tx::publish_event`], [`Store::claim_deliveries`]); and product orders with
//! their provisioning tasks and the product and service inventories
//! ([`Tx::insert_product_order`], [`Store::claim_provisioning_tasks`], [`Tx::insert_line`]);
//! and billing's bill runs, invoices numbered gap-free when final, and what was billed
//! ([`Tx::insert_draft_invoice`], [`Tx::finalise_invoice`]); and thresholds with the
//! crossings notified, once each ([`Tx::insert_threshold`], [`Tx::insert_crossing`]);
//! and the product inventory's history, the periods the bill run prorates
//! ([`Tx::turn_product_periods`], [`Store::product_periods`]); and the discounts and
//! credits the bill run applies ([`Tx::insert_discount`], [`Tx::use_credit`]). README.md states the invariants.
#![forbid(unsafe_code)]

mod alarms;
mod audit;
mod balances;
mod billing;
mod bulk;
mod catalogue;
mod codec;
mod customers;
mod discounts;
mod error;
mod hash;
mod history;
mod hub;
mod import;
mod inventory;
mod migrate;
mod orders;
mod outbox;
mod products;
mod queue;
mod receivables;
mod renewals;
mod sql;
mod store;
mod subscriptions;
#[cfg(feature = "testing")]
pub mod testing;
mod thresholds;
mod tokens;
mod versioned;

pub use alarms::{AlarmFilter, AlarmPage, AlarmRow, ALARM_PAGE_MAX};
pub use audit::{AuditEntry, AuditHead, AuditRecord, ChainCheck, AUDIT_PAGE_MAX, GENESIS_HASH};
pub use balances::{
    BalanceActionFilter, BalanceActionKind, BalanceActionPage, BalanceActionRow, BalanceActionStatus,
    BALANCE_ACTION_PAGE_MAX,
};
pub use billing::{
    BillRunRow, BillRunState, BillableAccount, BilledItem, BilledKind, InvoiceFilter, InvoiceKind, InvoiceLineRow,
    InvoiceRow, InvoiceState, ProductPrice, INVOICE_PAGE_MAX, MAX_BILL_RUN_ERROR,
};
pub use catalogue::{new_entity_id, CatalogueFilter, CatalogueItem, CataloguePage, CATALOGUE_PAGE_MAX};
pub use customers::{
    BillingAccountFilter, BillingAccountRow, CustomerFilter, CustomerRow, Page, CUSTOMER_PAGE_MAX, ENGINE_ACCOUNT_BASE,
};
pub use discounts::{CreditRow, DiscountRow, MAX_DISCOUNTS_PER_ACCOUNT};
pub use error::{Result, StoreError};
pub use hash::sha256_hex;
pub use history::{NextPeriod, ProductPeriod, PERIOD_PAGE_MAX};
pub use hub::{
    Delivery, DeliveryEntry, DeliveryPage, DeliveryState, EventFilter, HubSecret, Listener, NewEvent, NewListener,
    Published, DELIVERY_PAGE_MAX, HUB_SECRET_PREFIX, MAX_LISTENERS_PER_API,
};
pub use import::{ExternalAccount, ImportKind, ImportRun, ImportedAccount};
pub use inventory::{
    NetworkElementFilter, NetworkElementRow, NewMsisdn, NewSim, NumberRangeRow, Overlap, PoolChange, PoolFilter,
    PoolKind, PoolRow, SealedKeys, SimBatchRow, INVENTORY_PAGE_MAX,
};
pub use migrate::SCHEMA_VERSION;
pub use orders::{
    CancelRow, NewTask, OrderFilter, OrderItemRow, ProductOrderRow, TaskOutcome, TaskRow, ORDER_PAGE_MAX,
};
pub use outbox::{
    ApplyError, NewOutboxItem, OutboxCounts, OutboxEntry, OutboxHandler, OutboxItem, OutboxState, OutboxWorker,
    RetryPolicy, WorkerPass,
};
pub use products::{AddOnRow, LineRow, ProductEntry, ProductFilter, ServiceRow, PRODUCT_PAGE_MAX};
pub use receivables::{
    AllocationRow, DunningActionRow, OpenInvoiceRow, PaymentFilter, PaymentRow, UnallocatedPayment, PAYMENT_PAGE_MAX,
};
pub use renewals::{parse_renewal_key, renewal_key, RenewalRow, RenewalState};
pub use sql::Dialect;
pub use store::{Savepoint, Store, StoreOptions, Tx, SQLITE_FILE_NAME};
pub use subscriptions::{SubscriptionRow, ENGINE_SUBSCRIPTION_BASE, SUBSCRIPTION_PAGE_MAX};
pub use thresholds::{CrossingRow, ThresholdRow, WatchedThreshold, CROSSING_PAGE_MAX, MAX_THRESHOLDS_PER_ACCOUNT};
pub use tokens::{ApiToken, NewToken, Role, TokenCheck, TokenSecret, TOKEN_PREFIX};
pub use versioned::{Version, Versioned};

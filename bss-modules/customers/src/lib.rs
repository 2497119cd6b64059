//! Tollgate's customers (after TM Forum's TMF629) and billing accounts (TMF666): parties
//! with minimal personal data and consent flags, accounts with currency, bill cycle day,
//! payment terms, tax profile and credit limit in hierarchies (a corporate parent and its
//! children, same currency, bounded depth), a partner's reach limited to its hierarchy,
//! right of access (export) and erasure (anonymisation that keeps financial records).
//! [`Customers`] applies the rules to the store, one transaction per change with its audit
//! record and, when the engine must follow (an account created, its credit limit, kind or
//! state changed, a top-up or adjustment), its outbox row ([`EngineOperation`]). Prepaid
//! balances in TMF654's shape (`balance.rs`, `prepay.rs`) are read from the engine through
//! an [`EnginePort`]; the engine alone holds them. No SQL (the store's) and no HTTP (the
//! API's). Its changes publish events for the hub's listeners ([`CUSTOMER_EVENTS`],
//! [`ACCOUNT_EVENTS`]). Thresholds on an account's balance and bundles are decided here
//! ([`decide`]) and each crossing recorded and published once ([`Thresholds`]).
#![forbid(unsafe_code)]

mod account;
mod balance;
mod customer;
mod engine;
mod error;
mod lifecycle;
mod port;
mod prepay;
mod service;
#[cfg(feature = "testing")]
pub mod testing;
mod threshold;

pub use account::{
    account_doc, parse_credit_limit, validate_account, ValidAccount, MAX_DEPTH, MAX_MONEY_DIGITS, MAX_MONEY_SCALE,
};
pub use balance::{
    bucket_id, money_json, parse_balance_request, parse_bucket_id, BalanceRequest, MAX_NOTE_BYTES,
    MAX_REQUEST_ID_CHARS, PREPAY_BASE_PATH,
};
pub use customer::{
    anonymised, redacted, validate_customer, ValidCustomer, MAX_CONSENTS, MAX_CONTACT_MEDIA, MAX_NAME_CHARS,
};
pub use engine::{
    enqueue_operation, idempotency_key, ordering_key, subscription_key, AccountType, EngineOperation, Revert,
    RevertField, ADJUST, BILL_RELEASE, CHANGE_ACCOUNT_KIND, CLOSE_ACCOUNT, CREATE_ACCOUNT, CREATE_SUBSCRIPTION,
    RENEWAL_FEE, RESUME_ACCOUNT, SET_CREDIT_LIMIT, STATEMENT_CREDIT, SUSPEND_ACCOUNT, SUSPEND_SUBSCRIPTION, TOP_UP,
};
pub use error::{CustomersError, Result};
pub use lifecycle::{transition, AccountState};
pub use port::{AllowanceBucket, BoxFuture, EngineAccount, EngineAnswer, EnginePort, EngineUnavailable, MoneyBucket};
pub use prepay::{balance_key, BalanceOutcome, Settled, BALANCE_ACTION_FILTERS, ENGINE_ACTOR, RENEWAL_ENTITY};
pub use service::{
    Customers, Page, Principal, ACCOUNT_BASE_PATH, ACCOUNT_EVENTS, ACCOUNT_FILTERS, CUSTOMER_BASE_PATH,
    CUSTOMER_EVENTS, CUSTOMER_FILTERS,
};
pub use threshold::{
    crossing_doc, decide, doc as threshold_doc, fill, parse_threshold, sms_key, Decision, Template, Templates,
    ThresholdKind, ThresholdSpec, Thresholds, ENGINE_EVALUATOR, MAX_EXPIRY_HOURS, MAX_SMS_RECIPIENTS,
    MAX_TEMPLATE_CHARS, SMS_OUTBOX_KIND, THRESHOLD_EVENT,
};

/// JSON merge patch (RFC 7386): an object patch sets each member it names, removes the
/// members it sets to `null`, and recurses into objects; anything else replaces the target.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(object) = target {
        for (name, value) in members {
            if value.is_null() {
                object.remove(name);
            } else {
                merge_patch(object.entry(name.clone()).or_insert(serde_json::Value::Null), value);
            }
        }
    }
}

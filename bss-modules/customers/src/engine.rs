//! The engine operations a billing account or subscription change implies, as outbox
//! rows: their kinds, payloads and idempotency keys. A binary's `OutboxHandler` reads them back with
//! [`EngineOperation::from_outbox`] and sends each to the engine under the row's
//! idempotency key, so a retry (after a failure, a crash, a lease that ran out) takes
//! effect once. The key is derived from the account's (or subscription's) id and the row
//! version the change produced: the same change always has the same key, two changes never
//! share one. A subscription's operations carry its billing account's ordering key, so they
//! are applied after the account's creation, in order.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_store::OutboxItem;

/// The outbox kind of an engine account creation.
pub const CREATE_ACCOUNT: &str = "engine.account.create";
/// The outbox kind of an engine credit limit change.
pub const SET_CREDIT_LIMIT: &str = "engine.account.set_credit_limit";
/// The outbox kind of an engine subscription creation.
pub const CREATE_SUBSCRIPTION: &str = "engine.subscription.create";
/// The outbox kind of an engine subscription suspension.
pub const SUSPEND_SUBSCRIPTION: &str = "engine.subscription.suspend";

/// How a billing account pays, as the engine knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountType {
    /// Pays in advance; its credit limit is zero.
    Prepaid,
    /// Billed later, down to minus its credit limit.
    Postpaid,
    /// Prepaid money first, then the credit limit.
    Hybrid,
}

impl AccountType {
    /// The name used in documents and rows.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Prepaid => "prepaid",
            AccountType::Postpaid => "postpaid",
            AccountType::Hybrid => "hybrid",
        }
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<AccountType> {
        [AccountType::Prepaid, AccountType::Postpaid, AccountType::Hybrid].into_iter().find(|t| t.as_str() == name)
    }
}

/// One engine operation recorded in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineOperation {
    /// Create the engine account (`Operation::CreateAccount`, opening balance zero).
    CreateAccount { account: u64, account_type: AccountType, currency: String, credit_limit: Decimal },
    /// Set its credit limit (`Operation::SetCreditLimit`).
    SetCreditLimit { account: u64, credit_limit: Decimal },
    /// Create a subscription of the account on a tariff plan under its identities, each
    /// the engine's identity key (`msisdn:491700000001`, `imsi:…`)
    /// (`Operation::CreateSubscription`).
    CreateSubscription { account: u64, subscription: u64, plan: String, identities: Vec<String> },
    /// Suspend a subscription (`Operation::Suspend`).
    SuspendSubscription { subscription: u64, reason: String },
}

impl EngineOperation {
    /// The outbox kind.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineOperation::CreateAccount { .. } => CREATE_ACCOUNT,
            EngineOperation::SetCreditLimit { .. } => SET_CREDIT_LIMIT,
            EngineOperation::CreateSubscription { .. } => CREATE_SUBSCRIPTION,
            EngineOperation::SuspendSubscription { .. } => SUSPEND_SUBSCRIPTION,
        }
    }

    /// The outbox payload (money as decimal text, exact).
    pub fn payload(&self) -> Value {
        match self {
            EngineOperation::CreateAccount { account, account_type, currency, credit_limit } => json!({
                "account": account,
                "accountType": account_type.as_str(),
                "currency": currency,
                "creditLimit": credit_limit.to_string(),
            }),
            EngineOperation::SetCreditLimit { account, credit_limit } => {
                json!({"account": account, "creditLimit": credit_limit.to_string()})
            }
            EngineOperation::CreateSubscription { account, subscription, plan, identities } => json!({
                "account": account,
                "subscription": subscription,
                "plan": plan,
                "identities": identities,
            }),
            EngineOperation::SuspendSubscription { subscription, reason } => {
                json!({"subscription": subscription, "reason": reason})
            }
        }
    }

    /// The operation an outbox row holds, or why it does not hold one.
    pub fn from_outbox(item: &OutboxItem) -> Result<EngineOperation, String> {
        let text = |field: &str| -> Result<String, String> {
            item.payload
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(format!("payload.{field}: missing"))
        };
        let id =
            |field: &str| item.payload.get(field).and_then(Value::as_u64).ok_or(format!("payload.{field}: not an id"));
        match item.kind.as_str() {
            CREATE_SUBSCRIPTION => {
                let identities = item
                    .payload
                    .get("identities")
                    .and_then(Value::as_array)
                    .and_then(|list| list.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                    .ok_or("payload.identities: not a list of identities")?;
                return Ok(EngineOperation::CreateSubscription {
                    account: id("account")?,
                    subscription: id("subscription")?,
                    plan: text("plan")?,
                    identities,
                });
            }
            SUSPEND_SUBSCRIPTION => {
                return Ok(EngineOperation::SuspendSubscription {
                    subscription: id("subscription")?,
                    reason: text("reason")?,
                })
            }
            _ => {}
        }
        let account = item.payload.get("account").and_then(Value::as_u64).ok_or("payload.account: not an id")?;
        let credit_limit = item
            .payload
            .get("creditLimit")
            .and_then(Value::as_str)
            .and_then(|text| Decimal::from_str(text).ok())
            .ok_or("payload.creditLimit: not a decimal")?;
        match item.kind.as_str() {
            CREATE_ACCOUNT => Ok(EngineOperation::CreateAccount {
                account,
                account_type: item
                    .payload
                    .get("accountType")
                    .and_then(Value::as_str)
                    .and_then(AccountType::parse)
                    .ok_or("payload.accountType: unknown")?,
                currency: item
                    .payload
                    .get("currency")
                    .and_then(Value::as_str)
                    .ok_or("payload.currency: missing")?
                    .to_owned(),
                credit_limit,
            }),
            SET_CREDIT_LIMIT => Ok(EngineOperation::SetCreditLimit { account, credit_limit }),
            other => Err(format!("unknown outbox kind {other:?}")),
        }
    }
}

/// The idempotency key of the engine operation that the change of billing account `id` to
/// `version` implies (`what`: `create`, `credit-limit`).
pub fn idempotency_key(id: &str, version: i64, what: &str) -> String {
    format!("bss:billing-account:{id}:v{version}:{what}")
}

/// The idempotency key of the engine operation that the change of subscription `id` to
/// `version` implies (`what`: `create`, `suspend`).
pub fn subscription_key(id: &str, version: i64, what: &str) -> String {
    format!("bss:subscription:{id}:v{version}:{what}")
}

/// The ordering key of a billing account's engine operations, and of its subscriptions'
/// (applied one at a time, in order).
pub fn ordering_key(id: &str) -> String {
    format!("billing-account:{id}")
}

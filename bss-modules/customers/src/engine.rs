//! The engine operations a billing account or subscription change implies, as outbox
//! rows: their kinds, payloads and idempotency keys. A binary's `OutboxHandler` reads them back with
//! [`EngineOperation::from_outbox`] and sends each to the engine under the row's
//! idempotency key, so a retry (after a failure, a crash, a lease that ran out) takes
//! effect once. The key is derived from the account's (or subscription's) id and the row
//! version the change produced (a balance request's from its client id): the same change
//! always has the same key, two changes never share one. A subscription's operations carry
//! its billing account's ordering key, so they are applied after the account's creation,
//! in order. A change the engine may refuse (a lifecycle step, a
//! kind or credit limit change) carries what to restore in its payload ([`Revert`]), for
//! [`Customers::settle`](crate::Customers::settle).

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
/// The outbox kind of a top-up (TMF654 `topupBalance`).
pub const TOP_UP: &str = "engine.account.top_up";
/// The outbox kind of a balance adjustment (TMF654 `adjustBalance`).
pub const ADJUST: &str = "engine.account.adjust";
/// The outbox kind of a final invoice's release: the usage it bills moves from the
/// engine's running balance to the receivable (an adjustment), freeing the credit limit.
pub const BILL_RELEASE: &str = "engine.account.bill_release";
/// The outbox kind of a prepaid statement's fees debited from the prepaid balance at
/// renewal: all or nothing (the engine refuses a debit the account cannot pay).
pub const RENEWAL_FEE: &str = "engine.account.renewal_fee";
/// The outbox kind of what a prepaid statement gives back to the prepaid balance (its fee
/// lines add up below zero: an in-advance fee corrected, a credit or discount).
pub const STATEMENT_CREDIT: &str = "engine.account.statement_credit";
/// The outbox kind of an account suspension.
pub const SUSPEND_ACCOUNT: &str = "engine.account.suspend";
/// The outbox kind of the end of an account's suspension.
pub const RESUME_ACCOUNT: &str = "engine.account.resume";
/// The outbox kind of an account's closure.
pub const CLOSE_ACCOUNT: &str = "engine.account.close";
/// The outbox kind of a change of how an account pays (prepaid, postpaid, hybrid).
pub const CHANGE_ACCOUNT_KIND: &str = "engine.account.change_kind";

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
    /// Money paid in, to the main money bucket (`Operation::TopUp`); `reference` names the
    /// BSS request in the engine's journal.
    TopUp { account: u64, amount: Decimal, reference: String },
    /// A signed correction with its reason (`Operation::Adjust`).
    Adjust { account: u64, amount: Decimal, reason: String },
    /// Give back to a postpaid account's running balance the usage a final invoice bills
    /// (`Operation::Adjust`, positive, its reason naming the invoice): the receivable holds it
    /// now, and the credit limit is free for the next cycle.
    BillRelease { account: u64, amount: Decimal, invoice: String },
    /// Debit a prepaid statement's fees at renewal (`Operation::Adjust`, negative, its
    /// reason naming the statement): all or nothing, `amount` positive. A refusal (not
    /// enough balance) is a normal answer: the renewal stays unpaid and is tried again.
    RenewalFee { account: u64, amount: Decimal, statement: String },
    /// Give back to the prepaid balance what a statement's fee lines owe the customer
    /// (`Operation::Adjust`, positive, its reason naming the statement), `amount` positive.
    StatementCredit { account: u64, amount: Decimal, statement: String },
    /// Stop the service of every subscription of the account (`Operation::SuspendAccount`).
    SuspendAccount { account: u64, reason: String },
    /// End the account's suspension (`Operation::ResumeAccount`).
    ResumeAccount { account: u64 },
    /// Close the account (`Operation::CloseAccount`). Money left is settled either
    /// beforehand by an adjustment or, when the close names a `settle_reason`, by the
    /// engine's final adjustment with that reason; without either the engine refuses a
    /// close that would make money disappear.
    CloseAccount { account: u64, settle_reason: Option<String> },
    /// Change how the account pays, with its credit limit (`Operation::ChangeAccountKind`).
    ChangeAccountKind { account: u64, account_type: AccountType, credit_limit: Decimal },
}

/// What [`Customers::settle`](crate::Customers::settle) restores on a billing account when
/// the engine refuses the change this row carries: the field, the value the change set
/// and the value before it. Applied only while the account still holds the value set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revert {
    pub billing_account: String,
    /// `state`, `accountType` (with the credit limit) or `creditLimit`.
    pub field: RevertField,
}

/// The field a refused change is undone on, with the values set and before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertField {
    State { set: String, before: String },
    AccountType { set: (AccountType, Decimal), before: (AccountType, Decimal) },
    CreditLimit { set: Decimal, before: Decimal },
}

fn money(payload: &Value, field: &'static str) -> Result<Decimal, String> {
    payload
        .get(field)
        .and_then(Value::as_str)
        .and_then(|text| Decimal::from_str(text).ok())
        .ok_or_else(|| format!("payload.{field}: not a decimal"))
}

fn text(payload: &Value, field: &'static str) -> Result<String, String> {
    payload.get(field).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("payload.{field}: missing"))
}

fn account_type(payload: &Value, field: &'static str) -> Result<AccountType, String> {
    payload
        .get(field)
        .and_then(Value::as_str)
        .and_then(AccountType::parse)
        .ok_or_else(|| format!("payload.{field}: unknown"))
}

impl EngineOperation {
    /// The outbox kind.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineOperation::CreateAccount { .. } => CREATE_ACCOUNT,
            EngineOperation::SetCreditLimit { .. } => SET_CREDIT_LIMIT,
            EngineOperation::CreateSubscription { .. } => CREATE_SUBSCRIPTION,
            EngineOperation::SuspendSubscription { .. } => SUSPEND_SUBSCRIPTION,
            EngineOperation::TopUp { .. } => TOP_UP,
            EngineOperation::Adjust { .. } => ADJUST,
            EngineOperation::BillRelease { .. } => BILL_RELEASE,
            EngineOperation::RenewalFee { .. } => RENEWAL_FEE,
            EngineOperation::StatementCredit { .. } => STATEMENT_CREDIT,
            EngineOperation::SuspendAccount { .. } => SUSPEND_ACCOUNT,
            EngineOperation::ResumeAccount { .. } => RESUME_ACCOUNT,
            EngineOperation::CloseAccount { .. } => CLOSE_ACCOUNT,
            EngineOperation::ChangeAccountKind { .. } => CHANGE_ACCOUNT_KIND,
        }
    }

    /// The engine account the operation is for; `None` for one addressed to a subscription
    /// alone.
    pub fn account(&self) -> Option<u64> {
        Some(match self {
            EngineOperation::SuspendSubscription { .. } => return None,
            EngineOperation::CreateAccount { account, .. }
            | EngineOperation::CreateSubscription { account, .. }
            | EngineOperation::SetCreditLimit { account, .. }
            | EngineOperation::TopUp { account, .. }
            | EngineOperation::Adjust { account, .. }
            | EngineOperation::BillRelease { account, .. }
            | EngineOperation::RenewalFee { account, .. }
            | EngineOperation::StatementCredit { account, .. }
            | EngineOperation::SuspendAccount { account, .. }
            | EngineOperation::ResumeAccount { account }
            | EngineOperation::CloseAccount { account, .. }
            | EngineOperation::ChangeAccountKind { account, .. } => *account,
        })
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
            EngineOperation::TopUp { account, amount, reference } => {
                json!({"account": account, "amount": amount.to_string(), "reference": reference})
            }
            EngineOperation::Adjust { account, amount, reason } => {
                json!({"account": account, "amount": amount.to_string(), "reason": reason})
            }
            EngineOperation::BillRelease { account, amount, invoice } => {
                json!({"account": account, "amount": amount.to_string(), "invoice": invoice})
            }
            EngineOperation::RenewalFee { account, amount, statement }
            | EngineOperation::StatementCredit { account, amount, statement } => {
                json!({"account": account, "amount": amount.to_string(), "statement": statement})
            }
            EngineOperation::SuspendAccount { account, reason } => json!({"account": account, "reason": reason}),
            EngineOperation::ResumeAccount { account } => json!({"account": account}),
            EngineOperation::CloseAccount { account, settle_reason } => {
                json!({"account": account, "settleReason": settle_reason})
            }
            EngineOperation::ChangeAccountKind { account, account_type, credit_limit } => json!({
                "account": account,
                "accountType": account_type.as_str(),
                "creditLimit": credit_limit.to_string(),
            }),
        }
    }

    /// The payload with what to restore if the engine refuses the operation.
    pub fn payload_with(&self, revert: &Revert) -> Value {
        let mut payload = self.payload();
        let undo = match &revert.field {
            RevertField::State { set, before } => json!({"field": "state", "set": set, "before": before}),
            RevertField::AccountType { set, before } => json!({
                "field": "accountType",
                "set": {"accountType": set.0.as_str(), "creditLimit": set.1.to_string()},
                "before": {"accountType": before.0.as_str(), "creditLimit": before.1.to_string()},
            }),
            RevertField::CreditLimit { set, before } => {
                json!({"field": "creditLimit", "set": set.to_string(), "before": before.to_string()})
            }
        };
        payload["revert"] = json!({"billingAccount": revert.billing_account, "undo": undo});
        payload
    }

    /// The operation an outbox row holds, or why it does not hold one.
    pub fn from_outbox(item: &OutboxItem) -> Result<EngineOperation, String> {
        let payload = &item.payload;
        let id = |field: &str| payload.get(field).and_then(Value::as_u64).ok_or(format!("payload.{field}: not an id"));
        if item.kind == SUSPEND_SUBSCRIPTION {
            return Ok(EngineOperation::SuspendSubscription {
                subscription: id("subscription")?,
                reason: text(payload, "reason")?,
            });
        }
        let account = id("account")?;
        Ok(match item.kind.as_str() {
            CREATE_ACCOUNT => EngineOperation::CreateAccount {
                account,
                account_type: account_type(payload, "accountType")?,
                currency: text(payload, "currency")?,
                credit_limit: money(payload, "creditLimit")?,
            },
            CREATE_SUBSCRIPTION => EngineOperation::CreateSubscription {
                account,
                subscription: id("subscription")?,
                plan: text(payload, "plan")?,
                identities: payload
                    .get("identities")
                    .and_then(Value::as_array)
                    .and_then(|list| list.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                    .ok_or("payload.identities: not a list of identities")?,
            },
            SET_CREDIT_LIMIT => {
                EngineOperation::SetCreditLimit { account, credit_limit: money(payload, "creditLimit")? }
            }
            TOP_UP => EngineOperation::TopUp {
                account,
                amount: money(payload, "amount")?,
                reference: text(payload, "reference")?,
            },
            ADJUST => {
                EngineOperation::Adjust { account, amount: money(payload, "amount")?, reason: text(payload, "reason")? }
            }
            BILL_RELEASE => EngineOperation::BillRelease {
                account,
                amount: money(payload, "amount")?,
                invoice: text(payload, "invoice")?,
            },
            RENEWAL_FEE | STATEMENT_CREDIT => {
                let amount = money(payload, "amount")?;
                if amount <= Decimal::ZERO {
                    return Err(format!("payload.amount: {} is positive, not {amount}", item.kind));
                }
                let statement = text(payload, "statement")?;
                if item.kind == RENEWAL_FEE {
                    EngineOperation::RenewalFee { account, amount, statement }
                } else {
                    EngineOperation::StatementCredit { account, amount, statement }
                }
            }
            SUSPEND_ACCOUNT => EngineOperation::SuspendAccount { account, reason: text(payload, "reason")? },
            RESUME_ACCOUNT => EngineOperation::ResumeAccount { account },
            CLOSE_ACCOUNT => EngineOperation::CloseAccount {
                account,
                settle_reason: payload.get("settleReason").and_then(Value::as_str).map(str::to_owned),
            },
            CHANGE_ACCOUNT_KIND => EngineOperation::ChangeAccountKind {
                account,
                account_type: account_type(payload, "accountType")?,
                credit_limit: money(payload, "creditLimit")?,
            },
            other => return Err(format!("unknown outbox kind {other:?}")),
        })
    }
}

impl Revert {
    /// What to restore that an outbox row carries, if it carries it (rows of a change the
    /// engine may refuse; rows written before this existed carry none).
    pub fn from_outbox(item: &OutboxItem) -> Result<Option<Revert>, String> {
        let Some(revert) = item.payload.get("revert") else { return Ok(None) };
        let billing_account = text(revert, "billingAccount")?;
        let undo = revert.get("undo").ok_or("payload.revert.undo: missing")?;
        let field = match undo.get("field").and_then(Value::as_str) {
            Some("state") => RevertField::State { set: text(undo, "set")?, before: text(undo, "before")? },
            Some("accountType") => {
                let pair = |side: &'static str| -> Result<(AccountType, Decimal), String> {
                    let value = undo.get(side).ok_or_else(|| format!("payload.revert.undo.{side}: missing"))?;
                    Ok((account_type(value, "accountType")?, money(value, "creditLimit")?))
                };
                RevertField::AccountType { set: pair("set")?, before: pair("before")? }
            }
            Some("creditLimit") => {
                RevertField::CreditLimit { set: money(undo, "set")?, before: money(undo, "before")? }
            }
            _ => return Err("payload.revert.undo.field: unknown".into()),
        };
        Ok(Some(Revert { billing_account, field }))
    }
}

/// The idempotency key of the engine operation that the change of billing account `id` to
/// `version` implies (`what`: `create`, `credit-limit`, `kind`, `state`).
pub fn idempotency_key(id: &str, version: i64, what: &str) -> String {
    format!("bss:billing-account:{id}:v{version}:{what}")
}

/// The idempotency key of the engine operation that the change of subscription `id` to
/// `version` implies (`what`: `create`, `suspend`).
pub fn subscription_key(id: &str, version: i64, what: &str) -> String {
    format!("bss:subscription:{id}:v{version}:{what}")
}

/// Records `operation` in the outbox in the caller's transaction, under idempotency key
/// `key` and billing account `billing_account`'s ordering key (applied after the
/// account's earlier operations).
pub async fn enqueue_operation(
    tx: &mut tollgate_store::Tx,
    operation: &EngineOperation,
    key: &str,
    billing_account: &str,
    now: jiff::Timestamp,
) -> tollgate_store::Result<i64> {
    let ordering = ordering_key(billing_account);
    let payload = operation.payload();
    let item = tollgate_store::NewOutboxItem {
        idempotency_key: key,
        kind: operation.kind(),
        ordering_key: Some(&ordering),
        payload: &payload,
    };
    tx.enqueue(item, now).await
}

/// The ordering key of a billing account's engine operations (applied one at a time, in
/// order): its changes, its balance requests and its subscriptions' operations.
pub fn ordering_key(id: &str) -> String {
    format!("billing-account:{id}")
}

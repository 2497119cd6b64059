//! (feature `testing`) A model of the engine for the BSS crates' tests: accounts with one
//! money balance, a credit limit, suspension, closure and live subscriptions, reached the
//! way the binary reaches the real engine: an [`OutboxHandler`] that applies outbox rows
//! exactly once per idempotency key and hands the answer to [`Customers::settle`], and an
//! [`EnginePort`] that reads accounts and applies a row at once through an
//! [`OutboxWorker`]. It can be taken down ([`ModelEngine::set_down`]) to test what the
//! BSS does while the engine is unreachable. The real link is tested in the binary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_store::{ApplyError, OutboxHandler, OutboxItem, OutboxWorker, RetryPolicy, Store};

use crate::engine::{AccountType, EngineOperation};
use crate::port::{BoxFuture, EngineAccount, EngineAnswer, EnginePort, EngineUnavailable, MoneyBucket};
use crate::prepay::Settled;
use crate::service::Customers;

/// One account of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAccount {
    pub account_type: AccountType,
    pub currency: String,
    pub balance: Decimal,
    pub credit_limit: Decimal,
    pub suspended: bool,
    pub closed: bool,
    pub live_subscriptions: Vec<u64>,
}

/// The model engine's state, shared by its handler and its port.
#[derive(Debug, Default)]
pub struct ModelEngine {
    accounts: Mutex<HashMap<u64, ModelAccount>>,
    answers: Mutex<HashMap<String, EngineAnswer>>,
    down: AtomicBool,
}

impl ModelEngine {
    /// Takes the engine down (every call fails as unavailable) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// An account as the model holds it.
    pub fn account(&self, id: u64) -> Option<ModelAccount> {
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
    }

    /// Changes an account behind the BSS's back (usage charged, a subscription added).
    pub fn edit(&self, id: u64, change: impl FnOnce(&mut ModelAccount)) {
        if let Some(account) = self.accounts.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&id) {
            change(account);
        }
    }

    /// How many operations took effect (a repeated key is not counted again).
    pub fn applied(&self) -> usize {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn decide(&self, key: &str, operation: &EngineOperation) -> EngineAnswer {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(answer) = answers.get(key) {
            return answer.clone();
        }
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let refused = |reason: &str| EngineAnswer::Refused { reason: reason.to_owned() };
        let answer = match operation {
            EngineOperation::CreateAccount { account, account_type, currency, credit_limit } => {
                if accounts.contains_key(account) {
                    refused("already exists")
                } else {
                    accounts.insert(
                        *account,
                        ModelAccount {
                            account_type: *account_type,
                            currency: currency.clone(),
                            balance: Decimal::ZERO,
                            credit_limit: *credit_limit,
                            suspended: false,
                            closed: false,
                            live_subscriptions: Vec::new(),
                        },
                    );
                    EngineAnswer::Applied { balance_after: None }
                }
            }
            other => match other.account().and_then(|account| accounts.get_mut(&account)) {
                None => refused("unknown account"),
                Some(account) if account.closed => refused("the account is closed"),
                Some(account) => apply(account, other),
            },
        };
        if matches!(answer, EngineAnswer::Applied { .. }) || !matches!(operation, EngineOperation::CreateAccount { .. })
        {
            answers.insert(key.to_owned(), answer.clone());
        }
        answer
    }
}

/// A signed change of the balance, refused (all or nothing) beyond what the account may spend.
fn change_balance(account: &mut ModelAccount, amount: Decimal) -> EngineAnswer {
    if account.balance + account.credit_limit + amount < Decimal::ZERO {
        return EngineAnswer::Refused { reason: "insufficient credit".into() };
    }
    account.balance += amount;
    EngineAnswer::Applied { balance_after: Some(account.balance) }
}

fn apply(account: &mut ModelAccount, operation: &EngineOperation) -> EngineAnswer {
    let refused = |reason: String| EngineAnswer::Refused { reason };
    let money = |account: &ModelAccount| EngineAnswer::Applied { balance_after: Some(account.balance) };
    match operation {
        EngineOperation::CreateAccount { .. } => refused("already exists".into()),
        EngineOperation::SetCreditLimit { credit_limit, .. } => {
            if account.balance < -*credit_limit {
                return refused(format!("field `credit_limit`: the account owes {}", -account.balance));
            }
            account.credit_limit = *credit_limit;
            EngineAnswer::Applied { balance_after: None }
        }
        EngineOperation::TopUp { amount, .. } => {
            account.balance += *amount;
            money(account)
        }
        EngineOperation::Adjust { amount, .. } | EngineOperation::BillRelease { amount, .. } => {
            change_balance(account, *amount)
        }
        EngineOperation::RenewalFee { amount, .. } => change_balance(account, -*amount),
        EngineOperation::StatementCredit { amount, .. } => change_balance(account, *amount),
        EngineOperation::CreateSubscription { subscription, .. } => {
            account.live_subscriptions.push(*subscription);
            EngineAnswer::Applied { balance_after: None }
        }
        // Addressed to a subscription alone: the model keeps no subscriptions by id, so
        // `decide` refuses it as an unknown account before it gets here.
        EngineOperation::SuspendSubscription { .. } => refused("not modelled".into()),
        EngineOperation::SuspendAccount { .. } => {
            account.suspended = true;
            EngineAnswer::Applied { balance_after: None }
        }
        EngineOperation::ResumeAccount { .. } => {
            account.suspended = false;
            EngineAnswer::Applied { balance_after: None }
        }
        EngineOperation::CloseAccount { settle_reason, .. } => {
            if let Some(subscription) = account.live_subscriptions.first() {
                return refused(format!("subscription {subscription} is not terminated"));
            }
            if !account.balance.is_zero() && settle_reason.is_none() {
                return refused(format!("field `settle_reason`: the account holds {}", account.balance));
            }
            account.balance = Decimal::ZERO;
            account.closed = true;
            money(account)
        }
        EngineOperation::ChangeAccountKind { account_type, credit_limit, .. } => {
            if account.balance < -*credit_limit {
                return refused(format!("field `credit_limit`: the account owes {}", -account.balance));
            }
            account.account_type = *account_type;
            account.credit_limit = *credit_limit;
            EngineAnswer::Applied { balance_after: None }
        }
    }
}

/// The model's outbox handler: applies a row, then lets [`Customers::settle`] record the
/// answer; a refusal nothing settles (an account creation) fails the row.
#[derive(Debug)]
pub struct ModelLink {
    engine: Arc<ModelEngine>,
    customers: Customers,
}

impl OutboxHandler for ModelLink {
    async fn apply(&self, item: &OutboxItem) -> Result<(), ApplyError> {
        if self.engine.down.load(Ordering::SeqCst) {
            return Err(ApplyError::Retry("the model engine is down".into()));
        }
        let operation = EngineOperation::from_outbox(item).map_err(ApplyError::Fail)?;
        let answer = self.engine.decide(&item.idempotency_key, &operation);
        match self.customers.settle(item, &answer, Timestamp::now()).await {
            Ok(Settled::Unhandled) => Err(ApplyError::Fail(format!("refused: {answer:?}"))),
            Ok(_) => Ok(()),
            Err(error) => Err(ApplyError::Retry(error.to_string())),
        }
    }
}

/// The model's port: reads its accounts and applies rows at once through a worker.
#[derive(Debug)]
pub struct ModelPort {
    engine: Arc<ModelEngine>,
    worker: OutboxWorker<ModelLink>,
}

impl EnginePort for ModelPort {
    fn account(&self, account: u64) -> BoxFuture<'_, Result<Option<EngineAccount>, EngineUnavailable>> {
        Box::pin(async move {
            if self.engine.down.load(Ordering::SeqCst) {
                return Err(EngineUnavailable("the model engine is down".into()));
            }
            Ok(self.engine.account(account).map(|held| EngineAccount {
                account_type: held.account_type,
                currency: held.currency.clone(),
                balance: held.balance,
                available: (held.balance + held.credit_limit).max(Decimal::ZERO),
                reserved: Decimal::ZERO,
                credit_limit: held.credit_limit,
                closed: held.closed,
                suspended: held.suspended,
                live_subscriptions: held.live_subscriptions.clone(),
                money: vec![MoneyBucket {
                    id: 0,
                    balance: held.balance,
                    reserved: Decimal::ZERO,
                    valid_from_s: i64::MIN,
                    valid_until_s: i64::MAX,
                }],
                allowances: Vec::new(),
            }))
        })
    }

    fn apply_now(&self, outbox_id: i64) -> BoxFuture<'_, Result<(), EngineUnavailable>> {
        Box::pin(async move {
            self.worker
                .apply_now(outbox_id, Timestamp::now())
                .await
                .map(drop)
                .map_err(|error| EngineUnavailable(error.to_string()))
        })
    }
}

/// A model engine on a store, with what tests drive it by.
#[derive(Debug)]
pub struct Model {
    pub engine: Arc<ModelEngine>,
    /// Applies the rows the port did not apply at once (the engine was down, say).
    pub worker: OutboxWorker<ModelLink>,
    /// The port, for an API configuration.
    pub port: Arc<dyn EnginePort>,
    /// `Customers` on the store with the port.
    pub customers: Customers,
}

/// A model engine on `store`.
pub fn model_engine(store: &Store) -> Model {
    let engine = Arc::new(ModelEngine::default());
    let link = || ModelLink { engine: Arc::clone(&engine), customers: Customers::new(store.clone()) };
    let policy = RetryPolicy { first_delay: Duration::ZERO, ..RetryPolicy::default() };
    let port: Arc<dyn EnginePort> = Arc::new(ModelPort {
        engine: Arc::clone(&engine),
        worker: OutboxWorker::new(store.clone(), link()).with_policy(policy),
    });
    let worker = OutboxWorker::new(store.clone(), link()).with_policy(policy);
    let customers = Customers::new(store.clone()).with_engine(Arc::clone(&port));
    Model { engine, worker, port, customers }
}

/// A prepaid EUR account's view as the engine would report it: `balance` (decimal text),
/// nothing reserved, no credit limit, subscription 20 live, with `allowances`.
pub fn prepaid_view(balance: &str, allowances: Vec<crate::port::AllowanceBucket>) -> EngineAccount {
    let balance: Decimal = balance.parse().expect("a decimal balance");
    EngineAccount {
        account_type: AccountType::Prepaid,
        currency: "EUR".into(),
        balance,
        available: balance,
        reserved: Decimal::ZERO,
        credit_limit: Decimal::ZERO,
        closed: false,
        suspended: false,
        live_subscriptions: vec![20],
        money: vec![],
        allowances,
    }
}

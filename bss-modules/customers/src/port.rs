//! [`EnginePort`]: the engine as the BSS reaches it besides the outbox worker, implemented
//! by the binary over the engine's API. It reads an account (the balance view and the
//! checks made before a change the engine could refuse: a close while money remains, a
//! credit limit below what is owed) and applies a just-committed outbox row at once, so a
//! top-up answers with the resulting balance; a row it cannot apply stays for the worker.
//! The engine holds every balance: these are its answers, never stored as balances here.
//! [`EngineAnswer`] is what the engine answered to an outbox row's operation, handed back
//! to [`Customers::settle`](crate::Customers::settle).

use std::future::Future;
use std::pin::Pin;

use rust_decimal::Decimal;

use crate::engine::AccountType;

/// A boxed future, so the port can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The engine could not be asked (stopped, a shard failed, a timeout); try again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the engine is unavailable: {0}")]
pub struct EngineUnavailable(pub String);

/// The engine, for reads and immediate application of outbox rows.
pub trait EnginePort: Send + Sync + std::fmt::Debug {
    /// The engine's account `account`, or `None` if it has none by that id (its creation
    /// may still be waiting in the outbox).
    fn account(&self, account: u64) -> BoxFuture<'_, Result<Option<EngineAccount>, EngineUnavailable>>;

    /// Applies outbox row `outbox_id` now if it can be claimed (the worker's steps for one
    /// row: the engine under the row's key, the answer settled, the row marked). A row
    /// that could not be claimed or applied stays for the worker; that is not an error.
    fn apply_now(&self, outbox_id: i64) -> BoxFuture<'_, Result<(), EngineUnavailable>>;
}

/// An engine account as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineAccount {
    pub account_type: AccountType,
    pub currency: String,
    /// All money buckets together.
    pub balance: Decimal,
    /// What may be spent now (valid buckets, the credit limit, less reservations).
    pub available: Decimal,
    /// Held by open reservations.
    pub reserved: Decimal,
    pub credit_limit: Decimal,
    pub closed: bool,
    pub suspended: bool,
    /// Subscriptions not terminated (a close is refused while there are any).
    pub live_subscriptions: Vec<u64>,
    /// Money buckets: the main one (id 0) and promotional ones.
    pub money: Vec<MoneyBucket>,
    /// Allowance buckets, one per subscription, allowance and period.
    pub allowances: Vec<AllowanceBucket>,
}

/// A money bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyBucket {
    /// 0 is the account's main bucket.
    pub id: u32,
    pub balance: Decimal,
    pub reserved: Decimal,
    pub valid_from_s: i64,
    pub valid_until_s: i64,
}

/// The units of one allowance of one subscription for one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowanceBucket {
    pub id: u32,
    pub subscription: u64,
    /// The allowance's name in the subscription's plan.
    pub name: String,
    /// The service it pays for, and that service's unit (`seconds`, `bytes`, `events`,
    /// `units`).
    pub service: String,
    pub unit: String,
    pub granted: u64,
    pub remaining: u64,
    pub reserved: u64,
    pub valid_from_s: i64,
    pub valid_until_s: i64,
}

/// What the engine answered to an outbox row's operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineAnswer {
    /// Applied; for a money operation, the account's balance after it.
    Applied { balance_after: Option<Decimal> },
    /// Refused, with the engine's reason; nothing changed in the engine.
    Refused { reason: String },
}

//! What the workflow reaches besides the store, each behind a trait so the crate links
//! neither the engine nor a particular inventory: [`EnginePort`] applies engine
//! operations under idempotency keys (the binary implements it with the engine, the only
//! crate that links BSS to engine), [`Resources`] reserves, assigns and releases MSISDNs
//! and SIM cards (the resource inventory, in the caller's transaction, so a reservation
//! commits with the step that made it), and `tollgate_activation::Activator` carries an
//! action to the network.

use std::future::Future;
use std::pin::Pin;

use jiff::Timestamp;
use tollgate_activation::{NetworkElement, SimSecrets};
use tollgate_store::Tx;

use crate::error::Result;

/// A boxed future, so the ports can be `dyn` and chosen at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whom an engine operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineTarget {
    Account(u64),
    Subscription(u64),
}

/// An engine lifecycle operation (the engine's `Operation` of the same name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineOperation {
    /// Create a subscription of the target account on `plan` under `identities` (the
    /// engine's identity keys, `msisdn:…`, `imsi:…`); the plan's allowances are granted.
    CreateSubscription {
        subscription: u64,
        plan: String,
        identities: Vec<String>,
    },
    /// Move the subscription to `plan` now; the new plan's allowances pro rata.
    ChangePlan {
        plan: String,
    },
    Suspend {
        reason: String,
    },
    Resume,
    /// Irreversible: open sessions closed, identities freed.
    Terminate {
        reason: String,
    },
    ReplaceIdentity {
        old: String,
        new: String,
    },
}

/// One engine call: the operation, its target and the idempotency key it is sent under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineCall {
    /// `order:{order}:{item}:{step}` (`…:undo` for a compensation): the same for every
    /// attempt of the step, so the engine applies it once.
    pub key: String,
    pub target: EngineTarget,
    pub operation: EngineOperation,
}

/// What the engine made of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineAnswer {
    /// Done, now or by an earlier attempt under the same key.
    Applied,
    /// The engine refused it (unknown account, identity taken, invalid plan): it will
    /// not work as asked.
    Refused(String),
    /// The engine could not answer (stopping, a failed shard): try again later.
    Unavailable(String),
}

/// The engine as the workflow reaches it. Implementations send `call.key` as the
/// engine's idempotency key: the engine answers a repeated key with the stored answer, so
/// a step retried after a crash or a lost answer takes effect once.
pub trait EnginePort: Send + Sync + std::fmt::Debug {
    fn apply(&self, call: EngineCall) -> BoxFuture<'_, EngineAnswer>;

    /// Whether the engine has a tariff plan with this id (an order for an offering whose
    /// plan the engine does not have is refused when it is placed).
    fn knows_plan(&self, plan: &str) -> bool;
}

/// A SIM card as the inventory holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sim {
    pub iccid: String,
    pub imsi: String,
}

/// The two kinds of resource an order holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Msisdn,
    Sim,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Msisdn => "msisdn",
            ResourceKind::Sim => "sim",
        }
    }
}

/// What the network needs to hear about a line besides its identities.
#[derive(Debug, Clone, Default)]
pub struct NetworkDetails {
    /// The network elements to configure (the inventory's HSS/UDM, PCRF/PCF, …).
    pub targets: Vec<NetworkElement>,
    /// The SIM card's keys, when the inventory holds them.
    pub sim: Option<SimSecrets>,
}

/// The resource inventory as the workflow reaches it. Every method runs in the caller's
/// transaction, so what it changes commits (or not) with the step's record. A refusal
/// (taken, not found, not the owner's) is `OrdersError::Invalid`/`Conflict`/`NotFound`;
/// a store failure is `OrdersError::Store` and is retried.
pub trait Resources: Send + Sync + std::fmt::Debug {
    /// Reserves an MSISDN for `owner`: the `chosen` one, or the next free one. Idempotent
    /// by owner: an owner that holds one gets it again. `None`: none free.
    fn reserve_number<'a>(
        &'a self,
        tx: &'a mut Tx,
        owner: &'a str,
        chosen: Option<&'a str>,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Option<String>>>;

    /// Reserves a SIM card likewise.
    fn reserve_sim<'a>(
        &'a self,
        tx: &'a mut Tx,
        owner: &'a str,
        chosen: Option<&'a str>,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Option<Sim>>>;

    /// Gives `owner`'s reservation back: available at once (it was never used). Nothing
    /// to do if `owner` no longer holds it.
    fn release<'a>(
        &'a self,
        tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        owner: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<()>>;

    /// Turns `owner`'s reservation into an assignment to `subscription_id` (repeating it
    /// changes nothing).
    fn assign<'a>(
        &'a self,
        tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        owner: &'a str,
        subscription_id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<()>>;

    /// Takes an assigned resource from `subscription_id`: an MSISDN goes into quarantine,
    /// a SIM card is retired. Nothing to do if it is no longer assigned to it.
    fn unassign<'a>(
        &'a self,
        tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        subscription_id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<()>>;

    /// Whether `value` could be reserved now (an order's validation of a customer's
    /// choice); `NotFound` if the inventory has no such resource.
    fn is_available<'a>(
        &'a self,
        tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<bool>>;

    /// The network elements to configure and the keys of SIM `iccid`, for an activation.
    fn network<'a>(&'a self, iccid: &'a str) -> BoxFuture<'a, Result<NetworkDetails>>;
}

//! Test doubles (feature `testing`) for this crate's tests and the API's: [`ModelEngine`],
//! an in-memory model of the engine's lifecycle operations with its exactly-once by key
//! (and scripted faults: unavailable, refused, or applied with the answer lost), and
//! [`MemoryResources`], an in-memory resource inventory with the same lifecycle as the
//! real one (available → reserved → assigned → quarantine or retired). Neither is
//! transactional: a rolled-back step's reservation stays, as harmless as a repeated
//! reservation by the same owner is.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use jiff::Timestamp;
use tollgate_activation::{ElementKind, NetworkElement};
use tollgate_store::Tx;

use crate::error::{OrdersError, Result};
use crate::ports::{
    BoxFuture, EngineAnswer, EngineCall, EngineOperation, EnginePort, EngineTarget, NetworkDetails, ResourceKind,
    Resources, Sim,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A subscription as the model engine holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSubscription {
    pub account: u64,
    pub plan: String,
    pub identities: Vec<String>,
    pub suspended: bool,
    pub terminated: bool,
}

/// A scripted fault for the model engine's next calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer `Unavailable` without applying.
    Unavailable,
    /// Apply, then answer `Unavailable` (the answer was lost on its way back).
    AnswerLost,
    /// Answer `Refused` without applying.
    Refused,
    /// Apply, then never answer (the worker dies while it waits).
    Hang,
}

#[derive(Debug, Default)]
struct Model {
    subscriptions: BTreeMap<u64, ModelSubscription>,
    answers: HashMap<String, EngineAnswer>,
    faults: VecDeque<Fault>,
    calls: Vec<EngineCall>,
}

/// An in-memory model of the engine's lifecycle operations.
#[derive(Debug)]
pub struct ModelEngine {
    plans: HashSet<String>,
    model: Mutex<Model>,
}

impl ModelEngine {
    /// A model that knows these tariff plans.
    pub fn new(plans: &[&str]) -> ModelEngine {
        ModelEngine { plans: plans.iter().map(|plan| (*plan).to_owned()).collect(), model: Mutex::default() }
    }

    /// The next calls meet these faults, in order.
    pub fn fault(&self, faults: &[Fault]) {
        lock(&self.model).faults.extend(faults.iter().cloned());
    }

    /// The subscriptions it holds.
    pub fn subscriptions(&self) -> BTreeMap<u64, ModelSubscription> {
        lock(&self.model).subscriptions.clone()
    }

    /// Every call received, in order (repeats included).
    pub fn calls(&self) -> Vec<EngineCall> {
        lock(&self.model).calls.clone()
    }

    fn decide(model: &mut Model, plans: &HashSet<String>, call: &EngineCall) -> EngineAnswer {
        let refused = |reason: &str| EngineAnswer::Refused(reason.to_owned());
        match (&call.target, &call.operation) {
            (
                EngineTarget::Account(account),
                EngineOperation::CreateSubscription { subscription, plan, identities },
            ) => {
                if !plans.contains(plan) {
                    return refused("unknown plan");
                }
                if model.subscriptions.contains_key(subscription) {
                    return refused("already exists");
                }
                let taken = model.subscriptions.values().any(|other| {
                    !other.terminated && other.identities.iter().any(|identity| identities.contains(identity))
                });
                if taken {
                    return refused("identity taken");
                }
                model.subscriptions.insert(
                    *subscription,
                    ModelSubscription {
                        account: *account,
                        plan: plan.clone(),
                        identities: identities.clone(),
                        suspended: false,
                        terminated: false,
                    },
                );
                EngineAnswer::Applied
            }
            (EngineTarget::Subscription(id), operation) => {
                let Some(found) = model.subscriptions.get_mut(id) else { return refused("unknown subscriber") };
                if found.terminated {
                    return refused("terminated");
                }
                match operation {
                    EngineOperation::ChangePlan { plan } if !plans.contains(plan) || *plan == found.plan => {
                        return refused("not another known plan")
                    }
                    EngineOperation::ChangePlan { plan } => found.plan = plan.clone(),
                    EngineOperation::Suspend { .. } => found.suspended = true,
                    EngineOperation::Resume => found.suspended = false,
                    EngineOperation::Terminate { .. } => {
                        found.terminated = true;
                        found.identities.clear();
                    }
                    EngineOperation::ReplaceIdentity { old, new } => {
                        match found.identities.iter_mut().find(|i| *i == old) {
                            Some(identity) => *identity = new.clone(),
                            None => return refused("no such identity"),
                        }
                    }
                    EngineOperation::CreateSubscription { .. } => return refused("invalid target"),
                }
                EngineAnswer::Applied
            }
            _ => refused("invalid target"),
        }
    }
}

impl EnginePort for ModelEngine {
    fn apply(&self, call: EngineCall) -> BoxFuture<'_, EngineAnswer> {
        let mut model = lock(&self.model);
        model.calls.push(call.clone());
        let fault = model.faults.pop_front();
        let answer = match fault {
            Some(Fault::Unavailable) => EngineAnswer::Unavailable("scripted".into()),
            Some(Fault::Refused) => EngineAnswer::Refused("scripted".into()),
            None | Some(Fault::AnswerLost | Fault::Hang) => {
                let answer = match model.answers.get(&call.key) {
                    Some(answer) => answer.clone(),
                    None => {
                        let answer = ModelEngine::decide(&mut model, &self.plans, &call);
                        model.answers.insert(call.key.clone(), answer.clone());
                        answer
                    }
                };
                if fault == Some(Fault::AnswerLost) {
                    EngineAnswer::Unavailable("the answer was lost".into())
                } else {
                    answer
                }
            }
        };
        if fault == Some(Fault::Hang) {
            return Box::pin(std::future::pending());
        }
        Box::pin(std::future::ready(answer))
    }

    fn knows_plan(&self, plan: &str) -> bool {
        self.plans.contains(plan)
    }
}

/// Where a resource stands in the memory inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Available,
    Reserved(String),
    Assigned(String),
    Quarantine,
    Retired,
}

#[derive(Debug, Default)]
struct Pools {
    numbers: BTreeMap<String, Held>,
    sims: BTreeMap<String, (String, Held)>,
}

/// An in-memory resource inventory.
#[derive(Debug)]
pub struct MemoryResources {
    pools: Mutex<Pools>,
    elements: Vec<NetworkElement>,
}

impl MemoryResources {
    /// `numbers` MSISDNs and `sims` (ICCID, IMSI) cards, all available, and one HSS.
    pub fn new(numbers: &[&str], sims: &[(&str, &str)]) -> MemoryResources {
        let pools = Pools {
            numbers: numbers.iter().map(|n| ((*n).to_owned(), Held::Available)).collect(),
            sims: sims
                .iter()
                .map(|(iccid, imsi)| ((*iccid).to_owned(), ((*imsi).to_owned(), Held::Available)))
                .collect(),
        };
        let hss = NetworkElement::new(ElementKind::Hss, "hss-1", "hss1.test:3868").map(|e| vec![e]).unwrap_or_default();
        MemoryResources { pools: Mutex::new(pools), elements: hss }
    }

    /// Where resource `value` of `kind` stands.
    pub fn held(&self, kind: ResourceKind, value: &str) -> Option<Held> {
        let pools = lock(&self.pools);
        match kind {
            ResourceKind::Msisdn => pools.numbers.get(value).cloned(),
            ResourceKind::Sim => pools.sims.get(value).map(|(_, held)| held.clone()),
        }
    }

    fn slot<'a>(pools: &'a mut Pools, kind: ResourceKind, value: &str) -> Result<&'a mut Held> {
        let found = match kind {
            ResourceKind::Msisdn => pools.numbers.get_mut(value),
            ResourceKind::Sim => pools.sims.get_mut(value).map(|(_, held)| held),
        };
        found.ok_or_else(|| OrdersError::NotFound { kind: "resource", id: value.to_owned() })
    }

    fn reserve(&self, kind: ResourceKind, owner: &str, chosen: Option<&str>) -> Result<Option<String>> {
        let mut pools = lock(&self.pools);
        let owned = Held::Reserved(owner.to_owned());
        let values: Vec<(String, Held)> = match kind {
            ResourceKind::Msisdn => pools.numbers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ResourceKind::Sim => pools.sims.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect(),
        };
        if let Some((value, _)) = values.iter().find(|(_, held)| *held == owned) {
            return Ok(Some(value.clone()));
        }
        let pick = match chosen {
            Some(value) => match values.iter().find(|(v, _)| v == value) {
                Some((value, Held::Available)) => Some(value.clone()),
                Some(_) => return Err(OrdersError::conflict("value", format!("{value} is not available"))),
                None => return Err(OrdersError::NotFound { kind: "resource", id: value.to_owned() }),
            },
            None => values.iter().find(|(_, held)| *held == Held::Available).map(|(value, _)| value.clone()),
        };
        if let Some(value) = &pick {
            *MemoryResources::slot(&mut pools, kind, value)? = owned;
        }
        Ok(pick)
    }
}

impl Resources for MemoryResources {
    fn reserve_number<'a>(
        &'a self,
        _tx: &'a mut Tx,
        owner: &'a str,
        chosen: Option<&'a str>,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(std::future::ready(self.reserve(ResourceKind::Msisdn, owner, chosen)))
    }

    fn reserve_sim<'a>(
        &'a self,
        _tx: &'a mut Tx,
        owner: &'a str,
        chosen: Option<&'a str>,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<Option<Sim>>> {
        let found = self.reserve(ResourceKind::Sim, owner, chosen).map(|iccid| {
            iccid.map(|iccid| {
                let imsi = lock(&self.pools).sims.get(&iccid).map(|(imsi, _)| imsi.clone()).unwrap_or_default();
                Sim { iccid, imsi }
            })
        });
        Box::pin(std::future::ready(found))
    }

    fn release<'a>(
        &'a self,
        _tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        owner: &'a str,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<()>> {
        let mut pools = lock(&self.pools);
        let done = MemoryResources::slot(&mut pools, kind, value).map(|held| {
            if *held == Held::Reserved(owner.to_owned()) {
                *held = Held::Available;
            }
        });
        Box::pin(std::future::ready(done))
    }

    fn assign<'a>(
        &'a self,
        _tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        owner: &'a str,
        subscription_id: &'a str,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<()>> {
        let mut pools = lock(&self.pools);
        let done = MemoryResources::slot(&mut pools, kind, value).and_then(|held| match held {
            Held::Reserved(by) if by == owner => {
                *held = Held::Assigned(subscription_id.to_owned());
                Ok(())
            }
            Held::Assigned(to) if to == subscription_id => Ok(()),
            other => Err(OrdersError::conflict("owner", format!("{value} is {other:?}, not reserved by {owner}"))),
        });
        Box::pin(std::future::ready(done))
    }

    fn unassign<'a>(
        &'a self,
        _tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        subscription_id: &'a str,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<()>> {
        let mut pools = lock(&self.pools);
        let done = MemoryResources::slot(&mut pools, kind, value).map(|held| {
            if *held == Held::Assigned(subscription_id.to_owned()) {
                *held = if kind == ResourceKind::Msisdn { Held::Quarantine } else { Held::Retired };
            }
        });
        Box::pin(std::future::ready(done))
    }

    fn is_available<'a>(
        &'a self,
        _tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<bool>> {
        let found = self
            .held(kind, value)
            .map(|held| held == Held::Available)
            .ok_or_else(|| OrdersError::NotFound { kind: "resource", id: value.to_owned() });
        Box::pin(std::future::ready(found))
    }

    fn network<'a>(&'a self, _iccid: &'a str) -> BoxFuture<'a, Result<NetworkDetails>> {
        Box::pin(std::future::ready(Ok(NetworkDetails { targets: self.elements.clone(), sim: None })))
    }
}

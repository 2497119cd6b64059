//! The lab the order tests run in: a store (SQLite or PostgreSQL) with two active
//! offerings (plans `mobile-prepaid-s` and `mobile-prepaid-m`, EUR) and an add-on, a
//! customer with a billing account, the model engine, a memory inventory, a scripted
//! network, and a worker that runs one step at a time or until nothing is due. The
//! agreement check compares store, inventory and engine.

#![allow(dead_code, unreachable_pub, reason = "each test binary uses part of the lab")]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_activation::{ActivationFuture, ActivationOutcome, ActivationRequest, Activator};
use tollgate_catalogue::{Catalogue, Kind, LifecycleStatus};
use tollgate_customers::{Customers, Principal};
use tollgate_orders::testing::{Held, MemoryResources, ModelEngine};
use tollgate_orders::{Orders, ProvisioningWorker, ResourceKind, Workflow};
use tollgate_store::{ProductEntry, ProductFilter, RetryPolicy, Store};

pub const PLAN: &str = include_str!("../../../../tariffs/examples/prepaid-mobile.toml");

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).expect("a valid instant")
}

/// A network that answers from a script (then `Done`), recording every request.
#[derive(Debug, Default)]
pub struct Network {
    script: Mutex<VecDeque<ActivationOutcome>>,
    requests: Mutex<Vec<(String, String, String)>>,
    /// Requests still to apply and then never answer (the worker dies while it waits).
    hangs: Mutex<usize>,
}

impl Network {
    /// The next requests are answered so.
    pub fn script(&self, outcomes: Vec<ActivationOutcome>) {
        self.script.lock().expect("script").extend(outcomes);
    }

    /// The next `count` requests are applied and never answered.
    pub fn hang(&self, count: usize) {
        *self.hangs.lock().expect("hangs") += count;
    }

    /// (request id, operation, MSISDN) of every request.
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Activator for Network {
    fn activate<'a>(&'a self, request: &'a ActivationRequest) -> ActivationFuture<'a> {
        self.requests.lock().expect("requests").push((
            request.id().to_string(),
            request.operation().name().to_owned(),
            request.subscriber().msisdn.as_str().to_owned(),
        ));
        {
            let mut hangs = self.hangs.lock().expect("hangs");
            if *hangs > 0 {
                *hangs -= 1;
                return Box::pin(std::future::pending());
            }
        }
        let next = self.script.lock().expect("script").pop_front();
        let outcome = next.unwrap_or_else(|| ActivationOutcome::Done { reference: format!("gw-{}", request.id()) });
        Box::pin(std::future::ready(outcome))
    }
}

pub fn transient() -> ActivationOutcome {
    ActivationOutcome::Transient { reason: "gateway busy".into(), retry_after_ms: None }
}

pub fn permanent() -> ActivationOutcome {
    ActivationOutcome::Permanent { code: "IMSI_IN_USE".into(), reason: "refused".into() }
}

pub struct Lab {
    pub store: Store,
    pub orders: Orders,
    pub engine: Arc<ModelEngine>,
    pub resources: Arc<MemoryResources>,
    pub network: Arc<Network>,
    pub admin: Principal,
    pub account: String,
    pub engine_account: u64,
    pub customer: String,
    pub small: String,
    pub medium: String,
    pub addon: String,
    pub now: Timestamp,
}

pub const NUMBERS: [&str; 4] = ["491510000001", "491510000002", "491510000003", "491510000004"];
pub const SIMS: [(&str, &str); 4] = [
    ("894902000000000001", "262010000000001"),
    ("894902000000000002", "262010000000002"),
    ("894902000000000003", "262010000000003"),
    ("894902000000000004", "262010000000004"),
];

pub fn policy() -> RetryPolicy {
    RetryPolicy {
        first_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        max_attempts: 4,
        lease: Duration::from_secs(60),
    }
}

async fn offering(catalogue: &Catalogue, name: &str, plan: Option<&str>) -> String {
    let mut offering = json!({"name": name, "lifecycleStatus": "In design"});
    if let Some(plan) = plan {
        let price = json!({"name": format!("{name} usage"), "priceType": "usage", "tariffPlan": {"source": plan, "file": "plan.toml"}});
        let price = catalogue.create(Kind::ProductOfferingPrice, price, "test", at(0)).await.expect("price");
        offering["productOfferingPrice"] = json!([{"id": price.value["id"]}]);
    }
    let created = catalogue.create(Kind::ProductOffering, offering, "test", at(0)).await.expect("offering");
    let id = created.value["id"].as_str().expect("id").to_owned();
    catalogue.set_status(Kind::ProductOffering, &id, LifecycleStatus::Active, "test", at(0)).await.expect("activate");
    id
}

pub async fn lab(store: &Store) -> Lab {
    let catalogue = Catalogue::new(store.clone(), tollgate_catalogue::BASE_PATH);
    let small = offering(&catalogue, "Prepaid S", Some(PLAN)).await;
    let medium_plan = PLAN.replacen("id = \"mobile-prepaid-s\"", "id = \"mobile-prepaid-m\"", 1);
    let medium = offering(&catalogue, "Prepaid M", Some(&medium_plan)).await;
    let addon = offering(&catalogue, "Roaming pack", None).await;
    let customers = Customers::new(store.clone());
    let admin = Principal::admin("test");
    let customer = customers
        .create_customer(
            &admin,
            json!({"name": "Ada", "engagedParty": {"id": "ada", "@referredType": "Individual"}}),
            at(0),
        )
        .await
        .expect("customer");
    let customer = customer.value["id"].as_str().expect("id").to_owned();
    let account = json!({
        "name": "Ada's line",
        "accountType": "postpaid",
        "creditLimit": {"unit": "EUR", "value": "100"},
        "relatedParty": [{"id": customer, "@referredType": "Customer"}],
    });
    let account = customers.create_account(&admin, account, at(0)).await.expect("account");
    let engine_account = account.value["engineAccountId"].as_u64().expect("engine id");
    let account = account.value["id"].as_str().expect("id").to_owned();
    let engine = Arc::new(ModelEngine::new(&["mobile-prepaid-s", "mobile-prepaid-m"]));
    let resources = Arc::new(MemoryResources::new(&NUMBERS, &SIMS));
    let orders = Orders::new(store.clone(), engine.clone(), resources.clone());
    let network = Arc::new(Network::default());
    Lab {
        store: store.clone(),
        orders,
        engine,
        resources,
        network,
        admin,
        account,
        engine_account,
        customer,
        small,
        medium,
        addon,
        now: at(10),
    }
}

impl Lab {
    /// A worker over a fresh workflow (a restarted server: nothing carried over but the
    /// store, the engine and the inventory), on `store`.
    pub fn worker_on(&self, store: &Store, activation: bool, concurrency: usize) -> ProvisioningWorker {
        let orders = Orders::new(store.clone(), self.engine.clone(), self.resources.clone());
        let activator: Option<Arc<dyn Activator>> = if activation { Some(self.network.clone()) } else { None };
        ProvisioningWorker::new(Workflow::new(orders, activator, policy())).with_concurrency(concurrency)
    }

    pub fn worker(&self) -> ProvisioningWorker {
        self.worker_on(&self.store, true, 8)
    }

    /// Runs passes at `now` until nothing is due; returns the tasks run.
    pub async fn drive_with(&self, worker: &ProvisioningWorker, now: Timestamp) -> usize {
        let mut ran = 0;
        for _ in 0..500 {
            match worker.run_once(now).await.expect("pass") {
                0 => return ran,
                n => ran += n,
            }
        }
        panic!("the workflow did not settle in 500 passes");
    }

    pub async fn drive(&self) -> usize {
        self.drive_with(&self.worker(), self.now).await
    }

    pub fn new_line(&self) -> Value {
        json!({
            "billingAccount": {"id": self.account},
            "productOrderItem": [{"id": "1", "action": "add", "productOffering": {"id": self.small}}],
        })
    }

    pub fn modify(&self, product: &str, change: Value) -> Value {
        let mut item = json!({"id": "1", "action": "modify", "product": {"id": product}});
        if let Value::Object(change) = change {
            for (name, value) in change {
                if name == "productOffering" {
                    item["productOffering"] = value;
                } else {
                    item["product"][name] = value;
                }
            }
        }
        json!({"billingAccount": {"id": self.account}, "productOrderItem": [item]})
    }

    pub fn delete(&self, product: &str) -> Value {
        json!({"billingAccount": {"id": self.account}, "productOrderItem": [{"id": "1", "action": "delete", "product": {"id": product}}]})
    }

    /// Places an order at the lab's now; returns (order id, first item's product id).
    pub async fn place(&self, doc: Value) -> (String, String) {
        let created = self.orders.create(&self.admin, doc, self.now).await.expect("order placed");
        let id = created.value["id"].as_str().expect("id").to_owned();
        let product = created.value["productOrderItem"][0]["product"]["id"].as_str().expect("product id").to_owned();
        (id, product)
    }

    pub async fn order(&self, id: &str) -> Value {
        self.orders.get(&self.admin, id).await.expect("order").value
    }

    pub async fn state(&self, id: &str) -> String {
        self.order(id).await["state"].as_str().expect("state").to_owned()
    }

    pub async fn product(&self, id: &str) -> Value {
        self.orders.product(&self.admin, id).await.expect("product").value
    }

    /// The steps of an order's first item: (step, state).
    pub async fn steps(&self, id: &str) -> Vec<(String, String)> {
        let order = self.orders.service_order(&self.admin, &format!("{id}-1")).await.expect("service order");
        order.value["milestone"]
            .as_array()
            .expect("milestones")
            .iter()
            .map(|m| (m["name"].as_str().unwrap_or("").to_owned(), m["status"].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// Store, inventory and engine agree: every live line is in the engine, live, with the
    /// same plan, identities and suspension, its number and SIM assigned to it; every
    /// cancelled or terminated line is not live in the engine; every live engine
    /// subscription is a live line; every assigned resource belongs to a live line, every
    /// other one of the lab's is available, in quarantine or retired. Nothing is due.
    pub async fn agree(&self) {
        let page = self.store.product_list(&ProductFilter::default(), 0, 1000).await.expect("products");
        let engine = self.engine.subscriptions();
        let mut live = Vec::new();
        for entry in page.items {
            let ProductEntry::Line(line) = entry.value else { continue };
            let line = line.value;
            let sub = &line.subscription;
            let modelled = engine.get(&sub.engine_subscription_id);
            match line.status() {
                "active" | "suspended" => {
                    let modelled = modelled.unwrap_or_else(|| panic!("live line {} is not in the engine", sub.id));
                    assert!(!modelled.terminated, "live line {} is terminated in the engine", sub.id);
                    assert_eq!(modelled.plan, sub.plan_id, "line {}", sub.id);
                    assert_eq!(modelled.identities, sub.identities, "line {}", sub.id);
                    assert_eq!(modelled.suspended, line.status() == "suspended", "line {}", sub.id);
                    assert_eq!(modelled.account, self.engine_account);
                    for identity in &sub.identities {
                        if let Some(msisdn) = identity.strip_prefix("msisdn:") {
                            assert_eq!(
                                self.resources.held(ResourceKind::Msisdn, msisdn),
                                Some(Held::Assigned(sub.id.clone()))
                            );
                        }
                    }
                    let iccid = line.iccid.clone().expect("a live line has a SIM");
                    assert_eq!(self.resources.held(ResourceKind::Sim, &iccid), Some(Held::Assigned(sub.id.clone())));
                    live.push(sub.engine_subscription_id);
                }
                "cancelled" | "terminated" => {
                    assert!(modelled.is_none_or(|m| m.terminated), "ended line {} is live in the engine", sub.id);
                    assert!(sub.identities.is_empty(), "ended line {} keeps identities", sub.id);
                }
                other => panic!("line {} is {other} with nothing due", sub.id),
            }
        }
        for (id, modelled) in &engine {
            if !modelled.terminated {
                assert!(live.contains(id), "engine subscription {id} has no live line");
            }
        }
        for number in NUMBERS {
            match self.resources.held(ResourceKind::Msisdn, number).expect("number") {
                Held::Reserved(owner) => panic!("{number} is still reserved by {owner}"),
                Held::Assigned(to) => assert!(page_has_live(&self.store, &to).await, "{number} assigned to {to}"),
                _ => {}
            }
        }
        for (iccid, _) in SIMS {
            if let Held::Reserved(owner) = self.resources.held(ResourceKind::Sim, iccid).expect("sim") {
                panic!("{iccid} is still reserved by {owner}");
            }
        }
        assert_eq!(self.store.next_task_due().await.expect("due"), None, "nothing is left to run");
        assert!(matches!(
            self.store.verify_audit_chain().await.expect("audit"),
            tollgate_store::ChainCheck::Intact { .. }
        ));
    }
}

async fn page_has_live(store: &Store, id: &str) -> bool {
    store.line(id).await.expect("line").is_some_and(|line| matches!(line.value.status(), "active" | "suspended"))
}

//! The workflow on the real resource inventory (`tollgate-inventory`), on both databases:
//! a new line reserves the next free number and SIM card, assigns them when it completes
//! and sends the inventory's network elements to the network; a refused activation gives
//! both back as available; a terminated line's number goes into quarantine and its SIM is
//! retired; a customer's chosen number that is taken is refused naming the field; 1,000
//! new-line orders placed at once and carried out by two concurrent workers get 1,000
//! distinct numbers and SIM cards.

mod common;

use std::sync::Arc;

use common::{at, lab, permanent, policy, Lab};
use serde_json::{json, Value};
use tollgate_activation::Activator;
use tollgate_inventory::{luhn_check_digit, GoldenRules, Inventory, InventoryConfig, NumberRange, RangeLoad};
use tollgate_orders::{InventoryResources, Orders, OrdersError, ProvisioningWorker, Workflow};
use tollgate_store::store_test;

fn vendor_file(count: u64) -> String {
    let mut text = format!("Batch: B1\nQuantity: {count}\nVar_Out: ICCID/IMSI\n");
    for n in 0..count {
        let payload = format!("894400102{n:09}");
        text.push_str(&format!("{payload}{} 26201{n:010}\n", luhn_check_digit(&payload)));
    }
    text
}

struct Real {
    inventory: Inventory,
    orders: Orders,
    worker: ProvisioningWorker,
}

async fn real(lab: &Lab) -> Real {
    real_with(lab, "4915100009", 5).await
}

/// The real inventory with numbers 4915100000..=`last` and `sims` SIM cards.
async fn real_with(lab: &Lab, last: &str, sims: u64) -> Real {
    let inventory = Inventory::new(lab.store.clone(), InventoryConfig::default().with_quarantine_days(30));
    let load = RangeLoad {
        name: "test".into(),
        range: NumberRange::new("4915100000", last).expect("range"),
        golden: GoldenRules::new(Vec::new(), "golden").expect("rules"),
    };
    inventory.load_number_range("test", &load, at(0)).await.expect("numbers");
    inventory.load_sim_file("test", &vendor_file(sims), None, None, at(0)).await.expect("sims");
    let hss = json!({"resourceSpecification": {"id": "NetworkElement"}, "name": "HSS 1", "category": "HSS", "address": "hss1.test:3868"});
    inventory.create("test", hss, at(0)).await.expect("element");
    let resources = Arc::new(InventoryResources::new(inventory.clone(), None));
    let orders = Orders::new(lab.store.clone(), lab.engine.clone(), resources);
    let activator: Arc<dyn Activator> = lab.network.clone();
    let worker = ProvisioningWorker::new(Workflow::new(orders.clone(), Some(activator), policy()));
    Real { inventory, orders, worker }
}

async fn state(inventory: &Inventory, id: &str) -> String {
    inventory.get(id, at(20)).await.expect("resource").value["state"].as_str().unwrap_or_default().to_owned()
}

store_test! {
    async fn a_line_holds_inventory_numbers_and_gives_them_back_as_the_lifecycle_says(store) {
        let lab = lab(&store).await;
        let real = real(&lab).await;
        let created = real.orders.create(&lab.admin, lab.new_line(), lab.now).await.expect("order").value;
        let product = created["productOrderItem"][0]["product"]["id"].as_str().expect("product").to_owned();
        lab.drive_with(&real.worker, lab.now).await;
        let line = real.orders.product(&lab.admin, &product).await.expect("line").value;
        assert_eq!(line["status"], "active");
        let value = |name: &str| -> String {
            line["productCharacteristic"].as_array().and_then(|l| l.iter().find(|c| c["name"] == name)).and_then(|c| c["value"].as_str()).unwrap_or_default().to_owned()
        };
        let (msisdn, iccid) = (value("msisdn"), value("iccid"));
        assert_eq!(msisdn, "4915100000");
        let number = real.inventory.get(&format!("msisdn-{msisdn}"), at(20)).await.expect("number").value;
        assert_eq!((number["state"].as_str(), number["subscriptionId"].as_str()), (Some("assigned"), Some(product.as_str())));
        assert_eq!(state(&real.inventory, &format!("sim-{iccid}")).await, "assigned");
        assert_eq!(lab.network.requests()[0].1, "activate");

        // A refused activation gives the next number and SIM back as available.
        lab.network.script(vec![permanent()]);
        let created = real.orders.create(&lab.admin, lab.new_line(), lab.now).await.expect("order").value;
        lab.drive_with(&real.worker, lab.now).await;
        let order = real.orders.get(&lab.admin, created["id"].as_str().expect("id")).await.expect("order").value;
        assert_eq!(order["state"], "failed");
        assert_eq!(state(&real.inventory, "msisdn-4915100001").await, "available");

        // Terminated: the number cools off in quarantine, the SIM is retired.
        real.orders.create(&lab.admin, lab.delete(&product), lab.now).await.expect("order");
        lab.drive_with(&real.worker, lab.now).await;
        assert_eq!(state(&real.inventory, &format!("msisdn-{msisdn}")).await, "quarantine");
        assert_eq!(state(&real.inventory, &format!("sim-{iccid}")).await, "retired");

        // A chosen number that is not available is refused naming the field.
        let mut doc: Value = lab.new_line();
        doc["productOrderItem"][0]["product"] = json!({"productCharacteristic": [{"name": "msisdn", "value": msisdn}]});
        match real.orders.create(&lab.admin, doc, lab.now).await {
            Err(OrdersError::Invalid { field, reason }) => {
                assert_eq!(field, "productOrderItem[0].product.productCharacteristic");
                assert!(reason.contains("is not available"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}

store_test! {
    async fn a_thousand_concurrent_new_lines_get_a_thousand_distinct_numbers_and_sims(store) {
        const ORDERS: usize = 1000;
        let lab = lab(&store).await;
        let real = real_with(&lab, "4915100999", ORDERS as u64).await;
        // Placed at once, 1,000 concurrent clients on a store of 4 connections (the rest
        // queue for one; the catalogue is read before each order's transaction, so none
        // holds a connection while waiting for another), all before the workers start:
        // the 1,000 orders are then in the workflow together.
        let mut placing = tokio::task::JoinSet::new();
        for _ in 0..ORDERS {
            let (orders, admin, doc, now) = (real.orders.clone(), lab.admin.clone(), lab.new_line(), lab.now);
            placing.spawn(async move { orders.create(&admin, doc, now).await.map(|created| created.value) });
        }
        let mut products = Vec::with_capacity(ORDERS);
        while let Some(placed) = placing.join_next().await {
            let order = placed.expect("task").expect("order");
            products.push(order["productOrderItem"][0]["product"]["id"].as_str().expect("product").to_owned());
        }
        // Carried out by two workers at once, each running 32 steps concurrently: their
        // claims and reservations race.
        let second = ProvisioningWorker::new(Workflow::new(real.orders.clone(), Some(lab.network.clone()), policy()))
            .with_concurrency(32);
        let first = ProvisioningWorker::new(Workflow::new(real.orders.clone(), Some(lab.network.clone()), policy()))
            .with_concurrency(32);
        let (a, b) = tokio::join!(lab.drive_with(&first, lab.now), lab.drive_with(&second, lab.now));
        assert!(a > 0 && b > 0, "both workers ran steps ({a}, {b})");
        let (mut numbers, mut sims) = (Vec::with_capacity(ORDERS), Vec::with_capacity(ORDERS));
        for product in &products {
            let line = real.orders.product(&lab.admin, product).await.expect("line").value;
            assert_eq!(line["status"], "active", "{line}");
            let value = |name: &str| -> String {
                line["productCharacteristic"].as_array().and_then(|l| l.iter().find(|c| c["name"] == name)).and_then(|c| c["value"].as_str()).unwrap_or_default().to_owned()
            };
            numbers.push(value("msisdn"));
            sims.push(value("iccid"));
        }
        for held in [&mut numbers, &mut sims] {
            held.sort();
            held.dedup();
            assert_eq!(held.len(), ORDERS, "no number or SIM given twice");
        }
        let assigned = real.inventory.list([("state", "assigned")], 0, 1, at(20)).await.expect("list").total;
        assert_eq!(assigned, 2 * ORDERS as i64, "every number and SIM assigned, nothing more");
    }
}

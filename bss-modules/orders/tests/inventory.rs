//! The workflow on the real resource inventory (`tollgate-inventory`), on both databases:
//! a new line reserves the next free number and SIM card, assigns them when it completes
//! and sends the inventory's network elements to the network; a refused activation gives
//! both back as available; a terminated line's number goes into quarantine and its SIM is
//! retired; a customer's chosen number that is taken is refused naming the field.

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
    let inventory = Inventory::new(lab.store.clone(), InventoryConfig::default().with_quarantine_days(30));
    let load = RangeLoad {
        name: "test".into(),
        range: NumberRange::new("4915100000", "4915100009").expect("range"),
        golden: GoldenRules::new(Vec::new(), "golden").expect("rules"),
    };
    inventory.load_number_range("test", &load, at(0)).await.expect("numbers");
    inventory.load_sim_file("test", &vendor_file(5), None, None, at(0)).await.expect("sims");
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

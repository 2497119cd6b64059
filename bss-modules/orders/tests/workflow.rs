//! The provisioning workflow on both databases, with a scripted network and the model
//! engine: a new line end to end; transient failures retried; a permanent one undone in
//! reverse order (number and SIM available again, not in quarantine); a crash between any
//! two steps, forward and while undoing, and in an outside call whose outcome is not yet
//! recorded, resumed by a new worker with store, inventory and
//! engine agreeing; the lifecycle orders on a line; cancellation; future dates; held
//! orders; the no-activation mode; an order placed again under its idempotency key.

mod common;

use common::{at, lab, permanent, transient, Lab};
use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_orders::testing::{Fault, Held};
use tollgate_orders::Resources;
use tollgate_orders::{OrdersError, ResourceKind};
use tollgate_store::testing::{self, TestStore};
use tollgate_store::{store_test, Dialect, TaskOutcome};

fn msisdn(product: &Value) -> String {
    characteristic(product, "msisdn")
}

fn characteristic(product: &Value, name: &str) -> String {
    product["productCharacteristic"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == name))
        .and_then(|c| c["value"].as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn new_line(lab: &Lab) -> String {
    let (order, product) = lab.place(lab.new_line()).await;
    lab.drive().await;
    assert_eq!(lab.state(&order).await, "completed");
    product
}

store_test! {
    async fn a_new_line_is_reserved_created_activated_and_recorded(store) {
        let lab = lab(&store).await;
        let (order, product) = lab.place(lab.new_line()).await;
        assert_eq!(lab.state(&order).await, "acknowledged");
        let ran = lab.drive().await;
        assert_eq!(ran, 1, "one claim carries the item through its six steps");
        let shown = lab.order(&order).await;
        assert_eq!(shown["state"], "completed");
        assert_eq!(shown["productOrderItem"][0]["state"], "completed");
        assert!(shown["completionDate"].is_string());
        let line = lab.product(&product).await;
        assert_eq!(line["status"], "active");
        assert_eq!(characteristic(&line, "tariffPlan"), "mobile-prepaid-s");
        let number = msisdn(&line);
        assert_eq!(number, common::NUMBERS[0]);
        assert_eq!(lab.resources.held(ResourceKind::Msisdn, &number), Some(Held::Assigned(product.clone())));
        let service = line["realizingService"][0]["id"].as_str().expect("a service").to_owned();
        let service = lab.orders.service(&lab.admin, &service).await.expect("service").value;
        assert_eq!(service["state"], "active");
        let requests = lab.network.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!((requests[0].1.as_str(), requests[0].2.as_str()), ("activate", number.as_str()));
        assert!(requests[0].0.starts_with(&format!("order:{order}:1:activate")), "{requests:?}");
        assert!(lab.steps(&order).await.iter().all(|(_, state)| state == "done"));
        lab.agree().await;
        let audit = store.audit_entries(Some(("ProductOrder", &order)), 0, 100).await.expect("audit");
        let actions: Vec<&str> = audit.iter().map(|entry| entry.action.as_str()).collect();
        assert_eq!(actions, ["create", "state:inProgress", "state:completed"]);
    }
}

store_test! {
    async fn a_transient_network_failure_is_retried_with_the_same_request_id(store) {
        let lab = lab(&store).await;
        lab.network.script(vec![transient(), transient()]);
        lab.engine.fault(&[Fault::Unavailable]);
        let (order, _) = lab.place(lab.new_line()).await;
        lab.drive().await;
        assert_eq!(lab.state(&order).await, "completed");
        let ids: Vec<String> = lab.network.requests().into_iter().map(|(id, _, _)| id).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.iter().all(|id| *id == ids[0]), "every attempt carries one request id: {ids:?}");
        let keys: Vec<String> = lab.engine.calls().into_iter().map(|call| call.key).collect();
        assert_eq!(keys.len(), 2, "the engine step was tried twice: {keys:?}");
        assert_eq!(keys[0], keys[1]);
        lab.agree().await;
    }
}

store_test! {
    async fn attempts_run_out_and_a_refusal_is_undone_in_reverse_order(store) {
        let lab = lab(&store).await;
        lab.network.script(vec![permanent()]);
        let (order, product) = lab.place(lab.new_line()).await;
        lab.drive().await;
        let shown = lab.order(&order).await;
        assert_eq!((shown["state"].as_str(), shown["productOrderItem"][0]["state"].as_str()), (Some("failed"), Some("failed")));
        let steps = lab.steps(&order).await;
        let states: Vec<&str> = steps.iter().map(|(_, state)| state.as_str()).collect();
        assert_eq!(states, ["undone", "undone", "undone", "undone", "failed", "cancelled"], "{steps:?}");
        // Regression: why the order failed was only in its service order's milestones; the
        // product order names the step and the refusal in a note.
        let notes = shown["note"].as_array().expect("a note");
        assert_eq!(notes.len(), 1, "{notes:?}");
        let text = notes[0]["text"].as_str().expect("text");
        assert!(text.starts_with(&format!("item 1: step {} failed: ", steps[4].0)), "{text}");
        // Never used: available again at once, not in quarantine.
        assert_eq!(lab.resources.held(ResourceKind::Msisdn, common::NUMBERS[0]), Some(Held::Available));
        assert_eq!(lab.resources.held(ResourceKind::Sim, common::SIMS[0].0), Some(Held::Available));
        assert_eq!(lab.product(&product).await["status"], "cancelled");
        let terminations = lab.engine.calls().into_iter().filter(|call| call.key.ends_with(":undo")).count();
        assert_eq!(terminations, 1, "the engine subscription was terminated");
        lab.agree().await;

        // Transient failures until the attempts run out end the same way.
        lab.network.script(vec![transient(); 4]);
        let (order, _) = lab.place(lab.new_line()).await;
        lab.drive().await;
        assert_eq!(lab.state(&order).await, "failed");
        let service_order = lab.orders.service_order(&lab.admin, &format!("{order}-1")).await.expect("service order").value;
        let activate = &service_order["milestone"][4];
        assert!(activate["message"].as_str().is_some_and(|m| m.contains("gave up after 4 attempts")), "{activate}");
        lab.agree().await;
    }
}

/// Runs the order's tasks one at a time; after `steps` of them, "crashes": the next task
/// is claimed and never finished (its worker died), the engine's next answer is lost on
/// its way back, and a new worker on a new connection to the database resumes once the
/// lease has run out.
async fn crash_after(lab: &Lab, database: &TestStore, steps: usize) {
    let worker = lab.worker_on(&lab.store, true, 1);
    for _ in 0..steps {
        worker.run_once(lab.now).await.expect("step");
    }
    let abandoned =
        lab.store.claim_provisioning_tasks(lab.now, 1, std::time::Duration::from_secs(60)).await.expect("claim");
    lab.engine.fault(&[Fault::AnswerLost]);
    drop(worker);
    let reopened = database.open_again().await;
    let resumed = lab.worker_on(&reopened, true, 4);
    let later = lab.now.checked_add(jiff::SignedDuration::from_secs(61)).expect("later");
    lab.drive_with(&resumed, later).await;
    assert!(abandoned.len() <= 1);
}

/// A fresh database of the same kind as `store`.
async fn fresh(store: &TestStore) -> TestStore {
    match store.dialect() {
        Dialect::Sqlite => testing::sqlite().await,
        Dialect::Postgres => testing::postgres().await.expect("PostgreSQL is there: the test runs on it"),
    }
}

store_test! {
    async fn a_crash_between_any_two_steps_is_resumed_to_completion(store) {
        for steps in 0..7 {
            let database = if steps == 0 { None } else { Some(fresh(&store).await) };
            let database = database.as_ref().unwrap_or(&store);
            let lab = lab(database).await;
            let (order, _) = lab.place(lab.new_line()).await;
            crash_after(&lab, database, steps).await;
            assert_eq!(lab.state(&order).await, "completed", "crash after {steps} steps");
            lab.agree().await;
        }
    }
}

/// Runs the order until a call to the engine (`Engine`) or the network (`Network`) hangs,
/// then "crashes" there (the worker is dropped with the outcomes of the calls before it
/// unrecorded) and resumes with a new worker on a new connection once the lease has run
/// out.
async fn crash_in_call(lab: &Lab, database: &TestStore, hang: Hang) {
    match hang {
        Hang::Engine => lab.engine.fault(&[Fault::Hang]),
        Hang::Network => lab.network.hang(1),
    }
    let worker = lab.worker_on(&lab.store, true, 1);
    let ran = tokio::time::timeout(std::time::Duration::from_millis(500), worker.run_once(lab.now)).await;
    assert!(ran.is_err(), "the worker hangs in the call");
    drop(worker);
    let reopened = database.open_again().await;
    let resumed = lab.worker_on(&reopened, true, 4);
    let later = lab.now.checked_add(jiff::SignedDuration::from_secs(61)).expect("later");
    lab.drive_with(&resumed, later).await;
}

#[derive(Debug, Clone, Copy)]
enum Hang {
    Engine,
    Network,
}

store_test! {
    async fn a_crash_in_an_outside_call_before_its_outcome_is_recorded_is_resumed_to_completion(store) {
        for hang in [Hang::Engine, Hang::Network] {
            let database = fresh(&store).await;
            let lab = lab(&database).await;
            let (order, product) = lab.place(lab.new_line()).await;
            crash_in_call(&lab, &database, hang).await;
            assert_eq!(lab.state(&order).await, "completed", "crash in the {hang:?} call");
            // The store's steps committed before the call and were not done again.
            let line = lab.product(&product).await;
            assert_eq!(msisdn(&line), common::NUMBERS[0], "crash in the {hang:?} call");
            let creations = lab.engine.calls().into_iter().filter(|call| call.key.ends_with(":createSubscription")).count();
            assert_eq!(creations, 2, "the engine call was made again under its key ({hang:?})");
            lab.agree().await;
        }
    }
}

store_test! {
    async fn a_crash_while_undoing_is_resumed_to_a_clean_compensation(store) {
        for steps in 0..11 {
            let database = if steps == 0 { None } else { Some(fresh(&store).await) };
            let database = database.as_ref().unwrap_or(&store);
            let lab = lab(database).await;
            lab.network.script(vec![permanent()]);
            let (order, _) = lab.place(lab.new_line()).await;
            crash_after(&lab, database, steps).await;
            assert_eq!(lab.state(&order).await, "failed", "crash after {steps} steps");
            lab.agree().await;
        }
    }
}

store_test! {
    async fn a_line_is_suspended_resumed_moved_swapped_renumbered_and_terminated(store) {
        let lab = lab(&store).await;
        let product = new_line(&lab).await;
        let lab = &lab;
        let done = |order: String| async move {
            lab.drive().await;
            lab.state(&order).await
        };
        let (order, _) = lab.place(lab.modify(&product, json!({"status": "suspended"}))).await;
        assert_eq!(done(order).await, "completed");
        assert_eq!(lab.product(&product).await["status"], "suspended");
        lab.agree().await;
        let (order, _) = lab.place(lab.modify(&product, json!({"status": "active"}))).await;
        assert_eq!(done(order).await, "completed");
        let (order, _) = lab.place(lab.modify(&product, json!({"productOffering": {"id": lab.medium}}))).await;
        assert_eq!(done(order).await, "completed");
        let line = lab.product(&product).await;
        assert_eq!((characteristic(&line, "tariffPlan").as_str(), line["productOffering"]["id"].as_str()), ("mobile-prepaid-m", Some(lab.medium.as_str())));
        lab.agree().await;
        let old_sim = characteristic(&line, "iccid");
        let swap = json!({"productCharacteristic": [{"name": "iccid", "value": common::SIMS[2].0}]});
        let (order, _) = lab.place(lab.modify(&product, swap)).await;
        assert_eq!(done(order).await, "completed");
        let line = lab.product(&product).await;
        assert_eq!((characteristic(&line, "iccid").as_str(), characteristic(&line, "imsi").as_str()), common::SIMS[2]);
        assert_eq!(lab.resources.held(ResourceKind::Sim, &old_sim), Some(Held::Retired));
        let old_number = msisdn(&line);
        let change = json!({"productCharacteristic": [{"name": "msisdn", "value": ""}]});
        let (order, _) = lab.place(lab.modify(&product, change)).await;
        assert_eq!(done(order).await, "completed");
        let line = lab.product(&product).await;
        assert_ne!(msisdn(&line), old_number);
        assert_eq!(lab.resources.held(ResourceKind::Msisdn, &old_number), Some(Held::Quarantine));
        lab.agree().await;
        let operations: Vec<String> = lab.network.requests().into_iter().map(|(_, op, _)| op).collect();
        assert_eq!(operations, ["activate", "suspend", "resume", "changeProfile", "simSwap", "numberChange"]);

        let (order, _) = lab.place(lab.delete(&product)).await;
        assert_eq!(done(order).await, "completed");
        let line = lab.product(&product).await;
        assert_eq!(line["status"], "terminated");
        assert_eq!(lab.resources.held(ResourceKind::Msisdn, &msisdn_of_last(lab).await), Some(Held::Quarantine));
        lab.agree().await;
        // A terminated line takes no more orders.
        let refused = lab.orders.create(&lab.admin, lab.modify(&product, json!({"status": "suspended"})), lab.now).await;
        assert!(matches!(refused, Err(OrdersError::Invalid { ref field, .. }) if field == "productOrderItem[0].product.status"), "{refused:?}");
    }
}

async fn msisdn_of_last(lab: &Lab) -> String {
    // The number the line had before termination: the last order's reservation.
    let calls = lab.network.requests();
    calls.last().map(|(_, _, msisdn)| msisdn.clone()).expect("a request")
}

store_test! {
    async fn a_failed_change_is_undone_in_the_engine(store) {
        let lab = lab(&store).await;
        let product = new_line(&lab).await;
        lab.network.script(vec![permanent()]);
        let (order, _) = lab.place(lab.modify(&product, json!({"productOffering": {"id": lab.medium}}))).await;
        lab.drive().await;
        assert_eq!(lab.state(&order).await, "failed");
        assert_eq!(characteristic(&lab.product(&product).await, "tariffPlan"), "mobile-prepaid-s");
        lab.agree().await;
        lab.network.script(vec![permanent()]);
        let swap = json!({"productCharacteristic": [{"name": "iccid", "value": ""}]});
        let (order, _) = lab.place(lab.modify(&product, swap)).await;
        lab.drive().await;
        assert_eq!(lab.state(&order).await, "failed");
        assert_eq!(lab.resources.held(ResourceKind::Sim, common::SIMS[1].0), Some(Held::Available), "the new SIM was released");
        lab.agree().await;
    }
}

store_test! {
    async fn cancelling_undoes_what_was_done_and_a_completed_order_cannot_be_cancelled(store) {
        let lab = lab(&store).await;
        let (order, _) = lab.place(lab.new_line()).await;
        // The engine is unavailable: the store's steps are done, the engine's is to retry.
        lab.engine.fault(&[Fault::Unavailable]);
        let worker = lab.worker_on(&lab.store, true, 1);
        worker.run_once(lab.now).await.expect("step");
        let cancel = lab.orders.cancel(&lab.admin, &json!({"productOrder": {"id": order}, "cancellationReason": "changed my mind"}), lab.now).await.expect("cancel accepted");
        assert_eq!(cancel["state"], "inProgress");
        assert_eq!(lab.state(&order).await, "pendingCancellation");
        lab.drive().await;
        let shown = lab.order(&order).await;
        assert_eq!((shown["state"].as_str(), shown["cancellationReason"].as_str()), (Some("cancelled"), Some("changed my mind")));
        assert!(shown["cancellationDate"].is_string());
        let cancel = lab.orders.get_cancel(&lab.admin, cancel["id"].as_str().expect("id")).await.expect("cancel");
        assert_eq!(cancel["state"], "done");
        assert!(lab.network.requests().is_empty(), "cancelled before the network heard of it");
        lab.agree().await;
        let again = lab.orders.cancel(&lab.admin, &json!({"productOrder": {"id": order}}), lab.now).await;
        assert!(matches!(again, Err(OrdersError::Conflict { .. })), "{again:?}");

        let product = new_line(&lab).await;
        let (order, _) = lab.place(lab.delete(&product)).await;
        lab.drive().await;
        let late = lab.orders.cancel(&lab.admin, &json!({"productOrder": {"id": order}}), lab.now).await;
        assert!(matches!(late, Err(OrdersError::Conflict { ref field, .. }) if field == "productOrder.id"), "{late:?}");
    }
}

store_test! {
    async fn a_future_dated_order_waits_and_a_later_order_on_the_product_is_held(store) {
        let lab = lab(&store).await;
        let product = new_line(&lab).await;
        let mut suspend = lab.modify(&product, json!({"status": "suspended"}));
        suspend["requestedStartDate"] = json!(at(3600).to_string());
        let (first, _) = lab.place(suspend).await;
        assert_eq!(lab.state(&first).await, "pending");
        assert_eq!(lab.drive().await, 0, "not due yet");
        let (second, _) = lab.place(lab.delete(&product)).await;
        let worker = lab.worker();
        lab.drive_with(&worker, lab.now).await;
        assert_eq!(lab.state(&second).await, "held", "the termination waits for the suspension");
        lab.drive_with(&worker, at(3601)).await;
        lab.drive_with(&worker, at(3603)).await;
        assert_eq!(lab.state(&first).await, "completed");
        assert_eq!(lab.state(&second).await, "completed");
        assert_eq!(lab.product(&product).await["status"], "terminated");
        lab.agree().await;
    }
}

store_test! {
    async fn without_an_activator_the_network_step_is_skipped(store) {
        let lab = lab(&store).await;
        let worker = lab.worker_on(&lab.store, false, 4);
        let (order, _) = lab.place(lab.new_line()).await;
        lab.drive_with(&worker, lab.now).await;
        assert_eq!(lab.state(&order).await, "completed");
        let steps = lab.steps(&order).await;
        assert_eq!(steps[4], ("activate".to_owned(), "skipped".to_owned()));
        assert!(lab.network.requests().is_empty());
        lab.agree().await;
    }
}

store_test! {
    async fn add_ons_are_added_and_removed(store) {
        let lab = lab(&store).await;
        let product = new_line(&lab).await;
        let add = json!({"billingAccount": {"id": lab.account}, "productOrderItem": [{"id": "a", "action": "add",
            "productOffering": {"id": lab.addon},
            "product": {"productRelationship": [{"relationshipType": "addOnOf", "product": {"id": product}}]}}]});
        let created = lab.orders.create(&lab.admin, add, lab.now).await.expect("order").value;
        let addon = created["productOrderItem"][0]["product"]["id"].as_str().expect("id").to_owned();
        lab.drive().await;
        assert_eq!(lab.product(&addon).await["status"], "active");
        assert_eq!(lab.product(&product).await["productRelationship"][0]["product"]["id"], json!(addon));
        let (order, _) = lab.place(lab.delete(&addon)).await;
        lab.drive().await;
        assert_eq!(lab.state(&order).await, "completed");
        assert_eq!(lab.product(&addon).await["status"], "terminated");
        let listed = lab.orders.products(&lab.admin, [("status", "active")], 0, 10).await.expect("list");
        assert_eq!(listed.total, 1);
    }
}

store_test! {
    async fn an_order_is_checked_naming_the_field(store) {
        let lab = lab(&store).await;
        let refused = |doc: Value| {
            let lab = &lab;
            async move {
                match lab.orders.create(&lab.admin, doc.clone(), lab.now).await {
                    Err(OrdersError::Invalid { field, reason }) => format!("{field}: {reason}"),
                    other => panic!("{doc}: expected Invalid, got {other:?}"),
                }
            }
        };
        let mut doc = lab.new_line();
        doc["billingAccount"]["id"] = json!("nope");
        assert!(refused(doc).await.starts_with("billingAccount.id: no billing account"));
        // Regression: an unknown product to suspend was named as `….product.status`.
        let doc = lab.modify("no-such-line", json!({"status": "suspended"}));
        assert!(refused(doc).await.starts_with("productOrderItem[0].product.id: billing account"), "the product's id");
        // Regression: a number as externalId was taken and echoed as a number.
        let mut doc = lab.new_line();
        doc["externalId"] = json!(7);
        assert_eq!(refused(doc).await, "externalId: must be a string");
        let mut doc = lab.new_line();
        doc["productOrderItem"][0]["productOffering"]["id"] = json!(lab.addon);
        assert!(refused(doc).await.starts_with("productOrderItem[0].productOffering.id: product offering"));
        let mut doc = lab.new_line();
        doc["productOrderItem"][0]["product"] = json!({"productCharacteristic": [{"name": "msisdn", "value": "499999"}]});
        assert!(refused(doc).await.starts_with("productOrderItem[0].product.productCharacteristic: the inventory has no msisdn"));
        let unknown_plan = tollgate_orders::Orders::new(
            store.clone(),
            std::sync::Arc::new(tollgate_orders::testing::ModelEngine::new(&[])),
            lab.resources.clone(),
        );
        match unknown_plan.create(&lab.admin, lab.new_line(), lab.now).await {
            Err(OrdersError::Invalid { field, reason }) => {
                assert_eq!(field, "productOrderItem[0].productOffering.id");
                assert!(reason.contains("no tariff plan mobile-prepaid-s"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let product = new_line(&lab).await;
        let doc = lab.modify(&product, json!({"status": "active"}));
        assert!(refused(doc).await.contains("is active: it cannot be given resume"));
        let doc = lab.modify(&product, json!({"productOffering": {"id": lab.small}}));
        assert!(refused(doc).await.contains("on this offering's plan"));
        // A partner reaches its own hierarchy only.
        let partner = tollgate_customers::Principal { actor: "p".into(), role: tollgate_store::Role::Partner, scope_root: Some("elsewhere".into()) };
        assert!(matches!(lab.orders.create(&partner, lab.new_line(), lab.now).await, Err(OrdersError::Forbidden { .. })));
        let order = lab.orders.list(&lab.admin, [], 0, 10).await.expect("list").items[0].value["id"].as_str().expect("id").to_owned();
        assert!(matches!(lab.orders.get(&partner, &order).await, Err(OrdersError::Forbidden { .. })));
        assert_eq!(lab.orders.list(&partner, [], 0, 10).await.expect("list").total, 0);
        let _: Timestamp = lab.now;
    }
}

store_test! {
    async fn an_order_placed_again_under_its_idempotency_key_is_the_first_order(store) {
        let lab = lab(&store).await;
        let first = lab.orders.create_once(&lab.admin, lab.new_line(), "dunning:i-1:suspend", lab.now).await.expect("placed");
        let id = first.value["id"].as_str().expect("id").to_owned();
        // Replayed, also concurrently: the first order, nothing new placed.
        let replays: Vec<_> = (0..4).map(|_| {
            let (orders, who, doc, now) = (lab.orders.clone(), lab.admin.clone(), lab.new_line(), lab.now);
            tokio::spawn(async move { orders.create_once(&who, doc, "dunning:i-1:suspend", now).await })
        }).collect();
        for replay in replays {
            assert_eq!(replay.await.expect("joined").expect("replayed").value["id"], id.as_str());
        }
        let other = lab.orders.create_once(&lab.admin, lab.new_line(), "dunning:i-2:suspend", lab.now).await.expect("placed");
        assert_ne!(other.value["id"], id.as_str(), "another key is another order");
        let placed = store.product_order_list(&Default::default(), 0, 10).await.expect("orders");
        assert_eq!(placed.total, 2);
        for key in ["", &"k".repeat(tollgate_orders::MAX_IDEMPOTENCY_KEY_BYTES + 1)] {
            let refused = lab.orders.create_once(&lab.admin, lab.new_line(), key, lab.now).await;
            assert!(matches!(refused, Err(OrdersError::Invalid { ref field, .. }) if field == "idempotencyKey"), "{refused:?}");
        }
        lab.drive().await;
        assert_eq!(lab.state(&id).await, "completed");
    }
}

store_test! {
    async fn concurrent_orders_under_one_idempotency_key_place_one_order(store) {
        let lab = lab(&store).await;
        let placing = (0..8).map(|_| {
            let orders = lab.orders.clone();
            let (who, doc, now) = (lab.admin.clone(), lab.new_line(), lab.now);
            tokio::spawn(async move { orders.create_once(&who, doc, "fraud:episode-1", now).await })
        });
        let placing: Vec<_> = placing.collect();
        let mut ids = std::collections::BTreeSet::new();
        for joined in placing {
            ids.insert(joined.await.expect("joined").expect("placed").value["id"].as_str().expect("id").to_owned());
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
        let placed = store.product_order_list(&Default::default(), 0, 10).await.expect("orders");
        assert_eq!(placed.total, 1);
    }
}

store_test! {
    async fn a_store_step_claimed_on_its_own_of_an_item_in_progress_runs_in_a_transaction(store) {
        // The state a retried reservation leaves, or a server of the version before the
        // chain: the number reserved and recorded, the item in progress, the SIM's step
        // due on its own. It once ran as an outside call and failed the item.
        let lab = lab(&store).await;
        let (order, _) = lab.place(lab.new_line()).await;
        let lease = std::time::Duration::from_secs(60);
        let claimed = lab.store.claim_provisioning_tasks(lab.now, 1, lease).await.expect("claim").remove(0);
        let mut tx = lab.store.begin().await.expect("begin");
        let owner = format!("order:{order}:1");
        let msisdn = lab.resources.reserve_number(&mut tx, &owner, None, lab.now).await.expect("reserve").expect("free");
        let result = json!({"msisdn": msisdn});
        let done = TaskOutcome { state: "done", next_attempt_at: lab.now, result: Some(&result), last_error: None, reset_attempts: false };
        assert!(tx.finish_task(&claimed, &done, lab.now).await.expect("finish"));
        let tasks = tx.item_tasks(&order, "1").await.expect("tasks");
        tx.set_task(tasks[1].seq, "due", lab.now, lab.now).await.expect("due");
        tx.set_item_state(&order, "1", "inProgress", lab.now).await.expect("in progress");
        tx.commit().await.expect("commit");
        lab.drive().await;
        assert_eq!(lab.state(&order).await, "completed");
        lab.agree().await;
    }
}

store_test! {
    /// Regression: a cancellation accepted while the activation had been sent without an
    /// answer (a timeout) cancelled the step and released the number and SIM, while the
    /// network may have carried it out: the subscriber stayed live on the network. The step
    /// is now tried again under its request id until it answers; done, it is undone on the
    /// network before the number is freed.
    async fn a_cancellation_after_an_unanswered_activation_undoes_it_on_the_network(store) {
        let lab = lab(&store).await;
        let (order, _) = lab.place(lab.new_line()).await;
        lab.network.script(vec![transient()]);
        let worker = lab.worker_on(&lab.store, true, 1);
        worker.run_once(lab.now).await.expect("steps up to the activation");
        assert_eq!(lab.network.requests().len(), 1, "the activation was sent once, its outcome unknown");
        lab.orders.cancel(&lab.admin, &json!({"productOrder": {"id": order}}), lab.now).await.expect("cancel accepted");
        lab.drive().await;
        assert_eq!(lab.state(&order).await, "cancelled");
        let requests = lab.network.requests();
        let ids: Vec<&str> = requests.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(ids[0], ids[1], "tried again under its request id");
        assert_eq!(ids[2], format!("{}:undo", ids[0]), "then undone on the network");
        lab.agree().await;
    }
}

store_test! {
    /// Regression: a pending (future-dated) order whose start was brought forward to now
    /// was refused 409 ("cannot go from pending to acknowledged"). It stays pending, due at
    /// once, and the workflow carries it out.
    async fn a_pending_order_brought_forward_to_now_is_carried_out(store) {
        let lab = lab(&store).await;
        let product = new_line(&lab).await;
        let mut suspend = lab.modify(&product, json!({"status": "suspended"}));
        suspend["requestedStartDate"] = json!(at(3600).to_string());
        let (order, _) = lab.place(suspend).await;
        assert_eq!(lab.state(&order).await, "pending");
        let current = lab.orders.get(&lab.admin, &order).await.expect("order");
        let patch = json!({"requestedStartDate": lab.now.to_string()});
        let patched = lab.orders.patch(&lab.admin, &order, &patch, current.version, lab.now).await.expect("brought forward");
        assert_eq!(patched.value["state"], "pending");
        lab.drive().await;
        assert_eq!(lab.state(&order).await, "completed");
        assert_eq!(lab.product(&product).await["status"], "suspended");
        lab.agree().await;
    }
}

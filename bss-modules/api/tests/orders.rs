//! Product orders (TMF622) and the inventories they keep (TMF637, TMF638, TMF641) through
//! the router, on SQLite and PostgreSQL, with the model engine and a memory inventory: an
//! order placed, provisioned by the workflow and read back; its roles (care and admin
//! order, a partner in its hierarchy only, read_only reads); a limited PATCH; a
//! cancellation; every refusal a TMF error body naming the field.

mod common;

use std::sync::Arc;

use common::{call, token};
use serde_json::{json, Value};
use tollgate_api::{router, ApiConfig};
use tollgate_orders::testing::{MemoryResources, ModelEngine};
use tollgate_orders::{Orders, ProvisioningWorker, Workflow};
use tollgate_store::{store_test, RetryPolicy, Role, Store};

const PLAN: &str = include_str!("../../../tariffs/examples/prepaid-mobile.toml");
const ORDERS: &str = "/tmf-api/productOrderingManagement/v4";

fn orders(store: &Store) -> Orders {
    Orders::new(
        store.clone(),
        Arc::new(ModelEngine::new(&["mobile-prepaid-s"])),
        Arc::new(MemoryResources::new(&["491510000001", "491510000002"], &[("894902000000000001", "262010000000001")])),
    )
}

/// An active offering, a customer and its billing account, made through the API.
async fn setup(app: &axum::Router, admin: &str) -> (String, String) {
    let catalogue = "/tmf-api/productCatalogManagement/v4";
    let price = json!({"name": "usage", "priceType": "usage", "tariffPlan": {"source": PLAN, "file": "p.toml"}});
    let price = call(app, "POST", &format!("{catalogue}/productOfferingPrice"), Some(admin), Some(price), &[]).await;
    let offering =
        json!({"name": "S", "lifecycleStatus": "In design", "productOfferingPrice": [{"id": price.body["id"]}]});
    let offering = call(app, "POST", &format!("{catalogue}/productOffering"), Some(admin), Some(offering), &[]).await;
    let id = offering.body["id"].as_str().expect("id").to_owned();
    let active = call(
        app,
        "PATCH",
        &format!("{catalogue}/productOffering/{id}"),
        Some(admin),
        Some(json!({"lifecycleStatus": "Active"})),
        &[("If-Match", "W/\"1\"")],
    )
    .await;
    assert_eq!(active.status, 200, "{}", active.body);
    let customer = json!({"name": "Ada", "engagedParty": {"id": "ada", "@referredType": "Individual"}});
    let customer = call(app, "POST", "/tmf-api/customerManagement/v4/customer", Some(admin), Some(customer), &[]).await;
    let account = json!({"name": "A", "creditLimit": {"unit": "EUR", "value": 10}, "relatedParty": [{"id": customer.body["id"], "@referredType": "Customer"}]});
    let account =
        call(app, "POST", "/tmf-api/accountManagement/v4/billingAccount", Some(admin), Some(account), &[]).await;
    (id, account.body["id"].as_str().expect("id").to_owned())
}

fn new_line(account: &str, offering: &str) -> Value {
    json!({"billingAccount": {"id": account}, "description": "a line",
        "productOrderItem": [{"id": "1", "action": "add", "productOffering": {"id": offering}}]})
}

store_test! {
    async fn an_order_is_placed_provisioned_and_read_through_the_api(store) {
        let orders = orders(&store);
        let app = router(Store::clone(&store), &ApiConfig::default().with_orders(orders.clone()));
        let admin = token(&store, Role::Admin, None).await;
        let reader = token(&store, Role::ReadOnly, None).await;
        let care = token(&store, Role::Care, None).await;
        let (offering, account) = setup(&app, &admin).await;

        assert_eq!(call(&app, "POST", &format!("{ORDERS}/productOrder"), None, Some(new_line(&account, &offering)), &[]).await.status, 401);
        assert_eq!(call(&app, "POST", &format!("{ORDERS}/productOrder"), Some(&reader), Some(new_line(&account, &offering)), &[]).await.status, 403);
        let mut bad = new_line(&account, &offering);
        bad["productOrderItem"][0]["action"] = json!("upgrade");
        let refused = call(&app, "POST", &format!("{ORDERS}/productOrder"), Some(&care), Some(bad), &[]).await;
        assert_eq!((refused.status.as_u16(), refused.body["reason"].as_str()), (400, Some("productOrderItem[0].action")));

        let placed = call(&app, "POST", &format!("{ORDERS}/productOrder"), Some(&care), Some(new_line(&account, &offering)), &[]).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        assert_eq!(placed.body["state"], "acknowledged");
        let id = placed.body["id"].as_str().expect("id").to_owned();
        assert_eq!(placed.header("location"), format!("{ORDERS}/productOrder/{id}"));
        let product = placed.body["productOrderItem"][0]["product"]["id"].as_str().expect("product").to_owned();

        let policy = RetryPolicy { first_delay: std::time::Duration::ZERO, ..RetryPolicy::default() };
        let worker = ProvisioningWorker::new(Workflow::new(orders, None, policy));
        while worker.run_once(jiff::Timestamp::now()).await.expect("pass") > 0 {}

        let shown = call(&app, "GET", &format!("{ORDERS}/productOrder/{id}"), Some(&reader), None, &[]).await;
        assert_eq!((shown.status.as_u16(), shown.body["state"].as_str()), (200, Some("completed")));
        assert_eq!(shown.header("etag"), "W/\"3\"");
        let listed = call(&app, "GET", &format!("{ORDERS}/productOrder?state=completed&fields=state"), Some(&reader), None, &[]).await;
        assert_eq!((listed.header("x-total-count"), listed.body[0]["description"].is_null()), ("1", true));
        let line = call(&app, "GET", &format!("/tmf-api/productInventory/v4/product/{product}"), Some(&reader), None, &[]).await;
        assert_eq!((line.status.as_u16(), line.body["status"].as_str()), (200, Some("active")));
        let service = line.body["realizingService"][0]["id"].as_str().expect("service").to_owned();
        let service = call(&app, "GET", &format!("/tmf-api/serviceInventory/v4/service/{service}"), Some(&reader), None, &[]).await;
        assert_eq!(service.body["state"], "active");
        let workflow = call(&app, "GET", &format!("/tmf-api/serviceOrdering/v4/serviceOrder/{id}-1"), Some(&reader), None, &[]).await;
        assert_eq!(workflow.body["milestone"].as_array().map(Vec::len), Some(6));
        let services = call(&app, "GET", "/tmf-api/serviceOrdering/v4/serviceOrder", Some(&reader), None, &[]).await;
        assert_eq!(services.header("x-total-count"), "1");

        // PATCH: the descriptive fields only, If-Match required.
        let path = format!("{ORDERS}/productOrder/{id}");
        assert_eq!(call(&app, "PATCH", &path, Some(&care), Some(json!({"description": "x"})), &[]).await.status, 428);
        let state = call(&app, "PATCH", &path, Some(&care), Some(json!({"state": "cancelled"})), &[("If-Match", "W/\"3\"")]).await;
        assert_eq!((state.status.as_u16(), state.body["reason"].as_str()), (400, Some("state")));
        let final_order = call(&app, "PATCH", &path, Some(&care), Some(json!({"description": "x"})), &[("If-Match", "W/\"3\"")]).await;
        assert_eq!(final_order.status, 409, "a completed order is not amended");
        assert_eq!(call(&app, "DELETE", &path, Some(&admin), None, &[]).await.status, 405);

        // A cancellation: accepted while something can be undone, refused once completed.
        let late = call(&app, "POST", &format!("{ORDERS}/cancelProductOrder"), Some(&care), Some(json!({"productOrder": {"id": id}})), &[]).await;
        assert_eq!((late.status.as_u16(), late.body["reason"].as_str()), (409, Some("productOrder.id")));
        let second = call(&app, "POST", &format!("{ORDERS}/productOrder"), Some(&care), Some(new_line(&account, &offering)), &[]).await;
        let second = second.body["id"].as_str().expect("id").to_owned();
        let cancel = call(&app, "POST", &format!("{ORDERS}/cancelProductOrder"), Some(&care), Some(json!({"productOrder": {"id": second}, "cancellationReason": "no"})), &[]).await;
        assert_eq!((cancel.status.as_u16(), cancel.body["state"].as_str()), (201, Some("inProgress")));
        while worker.run_once(jiff::Timestamp::now()).await.expect("pass") > 0 {}
        let cancel_id = cancel.body["id"].as_str().expect("id");
        let cancel = call(&app, "GET", &format!("{ORDERS}/cancelProductOrder/{cancel_id}"), Some(&reader), None, &[]).await;
        assert_eq!(cancel.body["state"], "done");

        // A partner of another hierarchy sees nothing of it.
        let partner = token(&store, Role::Partner, Some("elsewhere")).await;
        assert_eq!(call(&app, "GET", &path, Some(&partner), None, &[]).await.status, 403);
        assert_eq!(call(&app, "GET", &format!("{ORDERS}/productOrder"), Some(&partner), None, &[]).await.header("x-total-count"), "0");
        assert_eq!(call(&app, "POST", &format!("{ORDERS}/productOrder"), Some(&partner), Some(new_line(&account, &offering)), &[]).await.status, 403);
        let own = token(&store, Role::Partner, Some(&account)).await;
        assert_eq!(call(&app, "GET", &path, Some(&own), None, &[]).await.status, 200, "its own hierarchy's order");
        // The product manager sees no orders and no inventories (no customer data).
        let manager = token(&store, Role::ProductManager, None).await;
        for route in ["/tmf-api/productOrderingManagement/v4/productOrder", "/tmf-api/productInventory/v4/product", "/tmf-api/serviceInventory/v4/service", "/tmf-api/serviceOrdering/v4/serviceOrder"] {
            assert_eq!(call(&app, "GET", route, Some(&manager), None, &[]).await.status, 403, "{route}");
            assert_eq!(call(&app, "GET", route, Some(&reader), None, &[]).await.status, 200, "{route}");
        }
        // One that does not exist looks to a partner like another hierarchy's.
        for missing in ["productOrder/nope", "cancelProductOrder/nope"] {
            let path = format!("{ORDERS}/{missing}");
            assert_eq!(call(&app, "GET", &path, Some(&own), None, &[]).await.status, 403, "{path}");
            assert_eq!(call(&app, "GET", &path, Some(&reader), None, &[]).await.status, 404, "{path}");
        }
        let nowhere = call(&app, "POST", &format!("{ORDERS}/productOrder"), Some(&own), Some(new_line("nope", &offering)), &[]).await;
        assert_eq!(nowhere.status, 403, "{}", nowhere.body);
        let nothing = call(&app, "POST", &format!("{ORDERS}/cancelProductOrder"), Some(&own), Some(json!({"productOrder": {"id": "nope"}})), &[]).await;
        assert_eq!(nothing.status, 403, "{}", nothing.body);

        // Every change audited.
        let audit = store.audit_entries(Some(("ProductOrder", &id)), 0, 100).await.expect("audit");
        assert!(audit.iter().any(|entry| entry.actor.starts_with("token:") && entry.action == "create"));
    }
}

store_test! {
    async fn without_orders_the_routes_answer_503(store) {
        let app = router(Store::clone(&store), &ApiConfig::default());
        let admin = token(&store, Role::Admin, None).await;
        let answer = call(&app, "GET", &format!("{ORDERS}/productOrder"), Some(&admin), None, &[]).await;
        assert_eq!(answer.status, 503);
    }
}

store_test! {
    async fn an_order_sent_again_under_its_idempotency_key_is_placed_once(store) {
        let orders = orders(&store);
        let app = router(Store::clone(&store), &ApiConfig::default().with_orders(orders.clone()));
        let care = token(&store, Role::Care, None).await;
        let admin = token(&store, Role::Admin, None).await;
        let (offering, account) = setup(&app, &admin).await;
        let path = format!("{ORDERS}/productOrder");
        let key = [("Idempotency-Key", "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"")];

        let first = call(&app, "POST", &path, Some(&care), Some(new_line(&account, &offering)), &key).await;
        assert_eq!(first.status, 201, "{}", first.body);
        assert_eq!(first.header("idempotent-replayed"), "");
        // The client timed out and sends the same request again, quoted or bare.
        for header in [key[0].1, "8e03978e-40d5-43e8-bc93-6894a57f9324"] {
            let again = call(&app, "POST", &path, Some(&care), Some(new_line(&account, &offering)), &[("Idempotency-Key", header)]).await;
            assert_eq!((again.status.as_u16(), &again.body["id"]), (201, &first.body["id"]), "{}", again.body);
            assert_eq!(again.header("idempotent-replayed"), "true");
        }
        let listed = call(&app, "GET", &path, Some(&care), None, &[]).await;
        assert_eq!(listed.header("x-total-count"), "1", "one order placed");

        // The key with another request: refused, naming the header.
        let mut other = new_line(&account, &offering);
        other["description"] = json!("another line");
        let reused = call(&app, "POST", &path, Some(&care), Some(other.clone()), &key).await;
        assert_eq!((reused.status.as_u16(), reused.body["reason"].as_str()), (422, Some("Idempotency-Key")), "{}", reused.body);
        for bad in ["\"unterminated", "a key with spaces", ""] {
            let refused = call(&app, "POST", &path, Some(&care), Some(other.clone()), &[("Idempotency-Key", bad)]).await;
            assert_eq!((refused.status.as_u16(), refused.body["reason"].as_str()), (400, Some("Idempotency-Key")), "{bad:?}: {}", refused.body);
        }
        // Another key, or none: a new order each.
        let second = call(&app, "POST", &path, Some(&care), Some(other.clone()), &[("Idempotency-Key", "k-2")]).await;
        assert_eq!(second.status, 201, "{}", second.body);
        assert_ne!(second.body["id"], first.body["id"]);
        // Concurrent retransmissions of a new key place one order.
        let sent: Vec<_> = (0..4)
            .map(|_| {
                let (app, care, body) = (app.clone(), care.clone(), other.clone());
                let path = path.clone();
                tokio::spawn(async move { call(&app, "POST", &path, Some(&care), Some(body), &[("Idempotency-Key", "k-3")]).await })
            })
            .collect();
        let mut ids = std::collections::BTreeSet::new();
        for answer in sent {
            let answer = answer.await.expect("joined");
            assert_eq!(answer.status, 201, "{}", answer.body);
            ids.insert(answer.body["id"].as_str().expect("id").to_owned());
        }
        assert_eq!(ids.len(), 1, "one order for the concurrent retransmissions");
        let listed = call(&app, "GET", &path, Some(&care), None, &[]).await;
        assert_eq!(listed.header("x-total-count"), "3");

        // The offering retired since: a new order for it is refused, the retry of the
        // first still answers the order it placed.
        let catalogue = "/tmf-api/productCatalogManagement/v4";
        let retired = call(&app, "PATCH", &format!("{catalogue}/productOffering/{offering}"), Some(&admin),
            Some(json!({"lifecycleStatus": "Retired"})), &[("If-Match", "W/\"2\"")]).await;
        assert_eq!(retired.status, 200, "{}", retired.body);
        let refused = call(&app, "POST", &path, Some(&care), Some(new_line(&account, &offering)), &[("Idempotency-Key", "k-4")]).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        let again = call(&app, "POST", &path, Some(&care), Some(new_line(&account, &offering)), &key).await;
        assert_eq!((again.status.as_u16(), &again.body["id"]), (201, &first.body["id"]), "{}", again.body);
    }
}

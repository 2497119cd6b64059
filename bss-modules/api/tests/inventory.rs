//! The resource inventory (TMF639) through the API in process, on SQLite and PostgreSQL:
//! the role table (admin writes, care reads and reserves, read_only reads, finance and
//! partner 403), network elements with ETags, 428 and 412, numbers reserved, assigned and
//! unassigned with 409 naming the state or owner and `exhausted` when nothing is free,
//! 400 naming the field, lists with filters and pagination, SIM keys never in an answer,
//! and every change in the audit trail with the token as actor.

mod common;

use axum::http::StatusCode;
use common::{call, token};
use jiff::Timestamp;
use serde_json::json;
use tollgate_api::{router, ApiConfig};
use tollgate_inventory::{GoldenRule, GoldenRules, Inventory, InventoryConfig, KeySealer, NumberRange, RangeLoad};
use tollgate_store::{store_test, Role};

const BASE: &str = "/tmf-api/resourceInventoryManagement/v4";
const FIXTURE: &str = include_str!("../../../oss-adapters/inventory/tests/fixtures/vendor-output.txt");

/// Loads a range of ten numbers, `447700900009` golden, and the fixture's five SIMs, as
/// the CLI does.
async fn stock(inventory: &Inventory) {
    let golden =
        GoldenRules::new(vec![GoldenRule::parse("golden", "*9=EUR:25").expect("rule")], "golden").expect("rules");
    let range = NumberRange::parse("447700900000..447700900009").expect("range");
    let load = RangeLoad { name: "test".into(), range, golden };
    inventory.load_number_range("cli:test", &load, Timestamp::now()).await.expect("range");
    let sealer = KeySealer::from_hex(&"ab".repeat(32)).expect("key");
    inventory.load_sim_file("cli:test", FIXTURE, None, Some(&sealer), Timestamp::now()).await.expect("SIMs");
}

store_test! {
    async fn the_inventory_answers_by_role_and_never_hands_a_number_out_twice(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        stock(&Inventory::new((*store).clone(), InventoryConfig::default())).await;
        let admin = token(&store, Role::Admin, None).await;
        let care = token(&store, Role::Care, None).await;
        let reader = token(&store, Role::ReadOnly, None).await;
        let resources = format!("{BASE}/resource");
        let reservation = format!("{BASE}/reservation");

        for (role, scope) in [(Role::Finance, None), (Role::Partner, Some("root"))] {
            let other = token(&store, role, scope).await;
            assert_eq!(call(&app, "GET", &resources, Some(&other), None, &[]).await.status, StatusCode::FORBIDDEN, "{role}");
        }
        assert_eq!(call(&app, "GET", &resources, None, None, &[]).await.status, StatusCode::UNAUTHORIZED);
        let listed = call(&app, "GET", &format!("{resources}?resourceSpecification.id=MSISDN&limit=3&offset=2&fields=state"), Some(&reader), None, &[]).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        assert_eq!((listed.header("x-total-count"), listed.header("x-result-count")), ("10", "3"));
        assert_eq!(listed.body[0], json!({"id": "msisdn-447700900002", "href": format!("{resources}/msisdn-447700900002"), "@type": "LogicalResource", "state": "available"}));
        let reserve = json!({"resourceSpecification": {"id": "MSISDN"}, "owner": "order-1"});
        assert_eq!(call(&app, "POST", &reservation, Some(&reader), Some(reserve.clone()), &[]).await.status, StatusCode::FORBIDDEN);

        // Care reserves; the same order asking again gets the same number.
        let first = call(&app, "POST", &reservation, Some(&care), Some(reserve.clone()), &[]).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
        assert_eq!((first.body["id"].as_str(), first.body["state"].as_str(), first.header("etag")), (Some("msisdn-447700900000"), Some("reserved"), "W/\"2\""));
        let again = call(&app, "POST", &reservation, Some(&care), Some(reserve), &[]).await;
        assert_eq!((again.status, again.body["id"].as_str()), (StatusCode::OK, Some("msisdn-447700900000")));
        let number = format!("{resources}/msisdn-447700900000");
        let assign = json!({"owner": "order-1", "subscriptionId": "sub-1"});
        assert_eq!(call(&app, "POST", &format!("{number}/assign"), Some(&care), Some(assign.clone()), &[]).await.status, StatusCode::FORBIDDEN);
        let assigned = call(&app, "POST", &format!("{number}/assign"), Some(&admin), Some(assign), &[]).await;
        assert_eq!((assigned.status, assigned.body["state"].as_str()), (StatusCode::OK, Some("assigned")), "{}", assigned.body);
        // Regression: care released a hold of the provisioning workflow (an order in flight lost its number).
        let held = call(&app, "POST", &format!("{number}/release"), Some(&care), Some(json!({"owner": "order:o1:1"})), &[]).await;
        assert_eq!((held.status, held.body["reason"].as_str()), (StatusCode::CONFLICT, Some("owner")), "{}", held.body);
        let taken = json!({"resourceSpecification": {"id": "MSISDN"}, "owner": "order:o1:1"});
        assert_eq!(call(&app, "POST", &reservation, Some(&care), Some(taken), &[]).await.status, StatusCode::CONFLICT);
        let release = call(&app, "POST", &format!("{number}/release"), Some(&care), Some(json!({"owner": "order-1"})), &[]).await;
        assert_eq!((release.status, release.body["reason"].as_str(), release.body["code"].as_str()), (StatusCode::CONFLICT, Some("state"), Some("invalidTransition")));
        assert!(release.body["message"].as_str().is_some_and(|m| m.contains("is assigned")), "{}", release.body);
        let unassigned = call(&app, "POST", &format!("{number}/unassign"), Some(&admin), Some(json!({"subscriptionId": "sub-1"})), &[]).await;
        assert_eq!((unassigned.status, unassigned.body["state"].as_str()), (StatusCode::OK, Some("quarantine")));

        // Eight more free numbers (the golden one is reserved by naming it), then none.
        for n in 2..10 {
            let body = json!({"resourceSpecification": {"id": "MSISDN"}, "owner": format!("order-{n}"), "holdSeconds": 600});
            assert_eq!(call(&app, "POST", &reservation, Some(&care), Some(body), &[]).await.status, StatusCode::CREATED);
        }
        let none = call(&app, "POST", &reservation, Some(&care), Some(json!({"resourceSpecification": {"id": "MSISDN"}, "owner": "order-x"})), &[]).await;
        assert_eq!((none.status, none.body["code"].as_str()), (StatusCode::CONFLICT, Some("exhausted")));
        let golden = json!({"resourceSpecification": {"id": "MSISDN"}, "owner": "order-x", "value": "447700900009"});
        let chosen = call(&app, "POST", &reservation, Some(&care), Some(golden), &[]).await;
        assert_eq!((chosen.status, chosen.body["price"].clone()), (StatusCode::CREATED, json!({"unit": "EUR", "value": 25})));
        let taken = json!({"resourceSpecification": {"id": "MSISDN"}, "owner": "order-y", "value": "447700900009"});
        let taken = call(&app, "POST", &reservation, Some(&care), Some(taken), &[]).await;
        assert_eq!((taken.status, taken.body["reason"].as_str()), (StatusCode::CONFLICT, Some("state")));

        // 400 naming the field.
        for (body, field) in [
            (json!({"owner": "o"}), "resourceSpecification.id"),
            (json!({"resourceSpecification": {"id": "NetworkElement"}, "owner": "o"}), "resourceSpecification.id"),
            (json!({"resourceSpecification": {"id": "MSISDN"}}), "owner"),
            (json!({"resourceSpecification": {"id": "MSISDN"}, "owner": "o", "colour": 1}), "colour"),
            (json!({"resourceSpecification": {"id": "MSISDN"}, "owner": "o", "holdSeconds": "soon"}), "holdSeconds"),
            (json!({"resourceSpecification": {"id": "MSISDN"}, "owner": "o", "holdSeconds": 0}), "holdSeconds"),
            (json!({"resourceSpecification": {"id": "MSISDN"}, "owner": "o", "batchId": "b"}), "batchId"),
            (json!({"resourceSpecification": {"id": "SIMCard"}, "owner": "o", "value": "123"}), "value"),
        ] {
            let answer = call(&app, "POST", &reservation, Some(&care), Some(body.clone()), &[]).await;
            assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {}", answer.body);
        }
        for (query, field) in [("state=lost", "state"), ("colour=red", "colour"), ("resourceSpecification.id=Modem", "resourceSpecification.id")] {
            let answer = call(&app, "GET", &format!("{resources}?{query}"), Some(&reader), None, &[]).await;
            assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{query}");
        }
        assert_eq!(call(&app, "GET", &format!("{resources}/msisdn-1"), Some(&reader), None, &[]).await.status, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, "DELETE", &number, Some(&admin), None, &[]).await.status, StatusCode::CONFLICT);

        // SIMs: reserved by care, their keys nowhere in any answer.
        let sim = call(&app, "POST", &reservation, Some(&care), Some(json!({"resourceSpecification": {"id": "SIMCard"}, "owner": "order-1"})), &[]).await;
        assert_eq!((sim.status, sim.body["serialNumber"].as_str(), sim.body["hasKeys"].as_bool()), (StatusCode::CREATED, Some("8944001010000000017"), Some(true)));
        let sims = call(&app, "GET", &format!("{resources}?resourceSpecification.id=SIMCard"), Some(&admin), None, &[]).await;
        let audit = call(&app, "GET", "/tmf-api/audit/v1/auditRecord?limit=1000", Some(&admin), None, &[]).await;
        let shown = format!("{} {} {}", sim.body, sims.body, audit.body).to_ascii_uppercase();
        for secret in ["B02C780E9917D6FE", "CBA249A1E39EE8A1", "12345671", "11223341"] {
            assert!(!shown.contains(secret), "{secret} leaked");
        }
        let records = audit.body.as_array().expect("records");
        assert!(records.iter().any(|r| r["entityType"] == "SIMCard" && r["action"] == "reserve" && r["actor"].as_str().is_some_and(|a| a.ends_with(":care"))));
        let changes = records.iter().filter(|r| r["entityType"] == "MSISDN").count();
        assert_eq!(changes, 1 + 1 + 1 + 1 + 8 + 1, "reserve, its renewal, assign, unassign, eight reserves, the golden one");
    }
}

store_test! {
    async fn network_elements_are_crud_with_etags(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        let admin = token(&store, Role::Admin, None).await;
        let care = token(&store, Role::Care, None).await;
        let resources = format!("{BASE}/resource");
        let element = json!({"resourceSpecification": {"id": "NetworkElement"}, "name": "SMSC 1", "category": "SMSC", "address": "10.0.0.7:2775"});
        assert_eq!(call(&app, "POST", &resources, Some(&care), Some(element.clone()), &[]).await.status, StatusCode::FORBIDDEN);
        let created = call(&app, "POST", &resources, Some(&admin), Some(element), &[]).await;
        assert_eq!((created.status, created.header("etag")), (StatusCode::CREATED, "W/\"1\""), "{}", created.body);
        let href = created.body["href"].as_str().expect("href").to_owned();
        assert_eq!(created.header("location"), href);
        let got = call(&app, "GET", &href, Some(&care), None, &[]).await;
        assert_eq!((got.status, got.body["category"].as_str(), got.body["@type"].as_str()), (StatusCode::OK, Some("SMSC"), Some("PhysicalResource")));
        let patch = Some(json!({"resourceStatus": "suspended"}));
        assert_eq!(call(&app, "PATCH", &href, Some(&admin), patch.clone(), &[]).await.status, StatusCode::PRECONDITION_REQUIRED);
        assert_eq!(call(&app, "PATCH", &href, Some(&admin), patch.clone(), &[("if-match", "W/\"7\"")]).await.status, StatusCode::PRECONDITION_FAILED);
        let patched = call(&app, "PATCH", &href, Some(&admin), patch, &[("if-match", "W/\"1\"")]).await;
        assert_eq!((patched.status, patched.header("etag"), patched.body["resourceStatus"].as_str()), (StatusCode::OK, "W/\"2\"", Some("suspended")));
        let bad = call(&app, "PATCH", &href, Some(&admin), Some(json!({"address": "no such thing"})), &[("if-match", "W/\"2\"")]).await;
        assert_eq!((bad.status, bad.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("address")));
        let filtered = call(&app, "GET", &format!("{resources}?category=SMSC&resourceStatus=suspended"), Some(&care), None, &[]).await;
        assert_eq!(filtered.header("x-total-count"), "1");
        assert_eq!(call(&app, "DELETE", &href, Some(&admin), None, &[("if-match", "W/\"2\"")]).await.status, StatusCode::NO_CONTENT);
        assert_eq!(call(&app, "GET", &href, Some(&care), None, &[]).await.status, StatusCode::NOT_FOUND);
        let single = json!({"resourceSpecification": {"id": "MSISDN"}, "value": "447700955555", "price": {"unit": "EUR", "value": "9.99"}});
        let number = call(&app, "POST", &resources, Some(&admin), Some(single.clone()), &[]).await;
        assert_eq!((number.status, number.body["category"].as_str()), (StatusCode::CREATED, Some("golden")), "{}", number.body);
        let twice = call(&app, "POST", &resources, Some(&admin), Some(single), &[]).await;
        assert_eq!((twice.status, twice.body["reason"].as_str()), (StatusCode::CONFLICT, Some("value")));
        let cheaper = call(&app, "PATCH", &format!("{resources}/msisdn-447700955555"), Some(&admin), Some(json!({"price": null})), &[("if-match", "W/\"1\"")]).await;
        assert_eq!((cheaper.status, cheaper.body["category"].as_str()), (StatusCode::OK, Some("standard")), "{}", cheaper.body);
        let state = call(&app, "PATCH", &format!("{resources}/msisdn-447700955555"), Some(&admin), Some(json!({"state": "assigned"})), &[("if-match", "W/\"2\"")]).await;
        assert_eq!((state.status, state.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("state")));
    }
}

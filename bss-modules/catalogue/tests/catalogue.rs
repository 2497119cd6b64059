//! The catalogue on the store, on SQLite and PostgreSQL: create, patch through the
//! lifecycle, activation compiling a usage price's plan (and refusing a bad one with
//! file:line), references, deletes, and an audit record per change with the chain intact.

use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_catalogue::{Catalogue, CatalogueError, Filter, Kind, LifecycleStatus, BASE_PATH};
use tollgate_store::{store_test, ChainCheck, Version};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + seconds).expect("a valid instant")
}

fn plan() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tariffs/examples/prepaid-mobile.toml"))
        .expect("the example plan")
}

async fn usage_offering(catalogue: &Catalogue, source: &str) -> (String, String) {
    let price = catalogue
        .create(
            Kind::ProductOfferingPrice,
            json!({"name": "usage", "priceType": "usage", "tariffPlan": {"source": source, "file": "mobile.toml"}}),
            "test",
            at(0),
        )
        .await
        .expect("create the price");
    let price_id = price.value["id"].as_str().expect("id").to_owned();
    let offering = catalogue
        .create(
            Kind::ProductOffering,
            json!({"name": "Mobile", "lifecycleStatus": "In design", "productOfferingPrice": [{"id": price_id}]}),
            "test",
            at(1),
        )
        .await
        .expect("create the offering");
    (offering.value["id"].as_str().expect("id").to_owned(), price_id)
}

store_test! {
    async fn an_offering_goes_through_its_lifecycle_and_every_change_is_audited(store) {
        let catalogue = Catalogue::new((*store).clone(), BASE_PATH);
        let (id, price_id) = usage_offering(&catalogue, &plan()).await;
        let got = catalogue.get(Kind::ProductOffering, &id).await.expect("get");
        assert_eq!(got.value["href"], format!("{BASE_PATH}/productOffering/{id}"));
        assert_eq!(got.value["@type"], "ProductOffering");

        // Skipping a step is refused, naming both states.
        let retire = json!({"lifecycleStatus": "Retired"});
        match catalogue.patch(Kind::ProductOffering, &id, &retire, got.version, "test", at(2)).await {
            Err(CatalogueError::InvalidTransition { from, to }) => assert_eq!((from.as_str(), to.as_str()), ("In design", "Retired")),
            other => panic!("expected InvalidTransition, got {other:?}"),
        }
        // A stale version is refused with both.
        let rename = json!({"name": "Mobile M"});
        let renamed = catalogue.patch(Kind::ProductOffering, &id, &rename, got.version, "test", at(3)).await.expect("rename");
        assert!(matches!(
            catalogue.patch(Kind::ProductOffering, &id, &rename, got.version, "test", at(3)).await,
            Err(CatalogueError::StaleVersion { expected: 1, found: 2, .. })
        ));
        let active = catalogue.set_status(Kind::ProductOffering, &id, LifecycleStatus::Active, "test", at(4)).await.expect("activate");
        assert_eq!(active.value["lifecycleStatus"], "Active");
        assert_eq!(active.version.get(), renamed.version.get() + 1);
        // Released: the definition is fixed, the price cannot go.
        assert!(matches!(
            catalogue.patch(Kind::ProductOffering, &id, &json!({"name": "X"}), active.version, "test", at(5)).await,
            Err(CatalogueError::Frozen { .. })
        ));
        assert!(matches!(catalogue.delete(Kind::ProductOfferingPrice, &price_id, None, "test", at(5)).await, Err(CatalogueError::Conflict { .. })));
        assert!(matches!(catalogue.delete(Kind::ProductOffering, &id, None, "test", at(5)).await, Err(CatalogueError::Conflict { .. })));

        let versions = store.tariff_plan_versions().await.expect("plans");
        assert_eq!(versions.len(), 1, "the activation recorded the plan version");
        let records = store.audit_entries(Some(("ProductOffering", &id)), 0, 100).await.expect("audit");
        let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["create", "update", "lifecycle:Active"]);
        assert_eq!(records[1].before.as_ref().map(|b| b["name"].clone()), Some(json!("Mobile")));
        assert_eq!(records[1].after.as_ref().map(|a| a["name"].clone()), Some(json!("Mobile M")));
        assert!(records[2].after.as_ref().is_some_and(|a| a["@compiledTariffPlans"][0]["price"] == json!(price_id)));
        assert!(matches!(store.verify_audit_chain().await.expect("verify"), ChainCheck::Intact { entries: 4, .. }));
    }
}

store_test! {
    async fn activation_refuses_a_plan_that_does_not_compile_naming_file_and_line(store) {
        let catalogue = Catalogue::new((*store).clone(), BASE_PATH);
        let bad = plan().replacen("[plan]", "[plan]\nbogus_field = 1", 1);
        let (id, _) = usage_offering(&catalogue, &bad).await;
        match catalogue.set_status(Kind::ProductOffering, &id, LifecycleStatus::Active, "test", at(9)).await {
            Err(CatalogueError::PlanRejected { field, problems }) => {
                assert!(field.starts_with("productOfferingPrice[0]"), "{field}");
                assert!(problems.iter().any(|p| p.starts_with("mobile.toml:")), "{problems:?}");
            }
            other => panic!("expected PlanRejected, got {other:?}"),
        }
        let still = catalogue.get(Kind::ProductOffering, &id).await.expect("get");
        assert_eq!(still.value["lifecycleStatus"], "In design");
        assert_eq!(still.version, Version::FIRST);

        // Regression: the price of an active offering took another plan by a PATCH, a
        // broken one too, which no activation compiled. Refused; the name may change.
        let (id, price) = usage_offering(&catalogue, &plan()).await;
        catalogue.set_status(Kind::ProductOffering, &id, LifecycleStatus::Active, "test", at(9)).await.expect("activate");
        let current = catalogue.get(Kind::ProductOfferingPrice, &price).await.expect("price");
        let broken = json!({"tariffPlan": {"source": bad, "file": "evil.toml"}});
        match catalogue.patch(Kind::ProductOfferingPrice, &price, &broken, current.version, "test", at(10)).await {
            Err(CatalogueError::Conflict { field, reason }) => {
                assert_eq!(field, "tariffPlan");
                assert!(reason.contains(&id), "{reason}");
            }
            other => panic!("expected Conflict, got {other:?}"),
        }
        let renamed = json!({"name": "usage, renamed"});
        catalogue.patch(Kind::ProductOfferingPrice, &price, &renamed, current.version, "test", at(11)).await.expect("a new name");

        // Regression: a recurring price of an active offering took a new amount, type and
        // currency (only a usage price's plan was fixed).
        let monthly = json!({"name": "monthly", "lifecycleStatus": "In design", "priceType": "recurring",
            "recurringChargePeriodType": "month", "price": {"unit": "EUR", "value": 9.99}});
        let monthly = catalogue.create(Kind::ProductOfferingPrice, monthly, "test", at(12)).await.expect("price");
        let monthly_id = monthly.value["id"].as_str().expect("id").to_owned();
        let offering = json!({"name": "Flat", "lifecycleStatus": "In design", "productOfferingPrice": [{"id": monthly_id}]});
        let offering = catalogue.create(Kind::ProductOffering, offering, "test", at(12)).await.expect("offering");
        let offering_id = offering.value["id"].as_str().expect("id").to_owned();
        catalogue.set_status(Kind::ProductOffering, &offering_id, LifecycleStatus::Active, "test", at(13)).await.expect("active");
        for (patch, named) in [
            (json!({"price": {"unit": "EUR", "value": 0.01}}), "price"),
            (json!({"price": {"unit": "USD", "value": 9.99}}), "price"),
            (json!({"recurringChargePeriodType": "year"}), "recurringChargePeriodType"),
        ] {
            match catalogue.patch(Kind::ProductOfferingPrice, &monthly_id, &patch, monthly.version, "test", at(14)).await {
                Err(CatalogueError::Conflict { field, reason }) => {
                    assert_eq!(field, named);
                    assert!(reason.contains(&offering_id), "{reason}");
                }
                other => panic!("{patch}: expected Conflict, got {other:?}"),
            }
        }
    }
}

store_test! {
    async fn references_must_exist_and_lists_filter_and_page(store) {
        let catalogue = Catalogue::new((*store).clone(), BASE_PATH);
        match catalogue.create(Kind::ProductOffering, json!({"name": "a", "category": [{"id": "nope"}]}), "t", at(0)).await {
            Err(CatalogueError::Invalid { field, .. }) => assert_eq!(field, "category[0].id"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        for n in 0..7 {
            let status = if n % 2 == 0 { "In study" } else { "In design" };
            catalogue
                .create(Kind::Category, json!({"name": format!("c{n}"), "lifecycleStatus": status}), "t", at(n))
                .await
                .expect("create");
        }
        let filter = Filter::parse(Kind::Category, [("lifecycleStatus", "In study")]).expect("filter");
        let page = catalogue.list(Kind::Category, &filter, 1, 2).await.expect("list");
        assert_eq!(page.total, 4);
        let names: Vec<&Value> = page.items.iter().map(|item| &item.value["name"]).collect();
        assert_eq!(names, [&json!("c2"), &json!("c4")]);
        assert!(Filter::parse(Kind::Category, [("priceType", "usage")]).is_err());
        assert!(Filter::parse(Kind::Category, [("colour", "red")]).is_err());
    }
}

store_test! {
    async fn every_change_publishes_its_event_in_its_transaction(store) {
        let catalogue = Catalogue::new((*store).clone(), BASE_PATH);
        let secret = tollgate_store::HubSecret::generate().expect("a secret");
        let filter = tollgate_store::EventFilter {
            event_types: vec![],
            fields: vec![("event.productOffering.@type".into(), "ProductOffering".into())],
        };
        let mut tx = store.begin().await.expect("begin");
        let new = tollgate_store::NewListener { id: "l1", api: BASE_PATH, callback: "http://127.0.0.1:9/", query: None, filter: &filter, secret: &secret, created_by: "t" };
        tx.insert_listener(new, at(0)).await.expect("listen");
        tx.commit().await.expect("commit");
        let (id, _) = usage_offering(&catalogue, &plan()).await;
        let got = catalogue.get(Kind::ProductOffering, &id).await.expect("get");
        let renamed = catalogue.patch(Kind::ProductOffering, &id, &json!({"name": "Mobile M"}), got.version, "t", at(3)).await.expect("rename");
        // Refused: nothing published.
        assert!(catalogue.patch(Kind::ProductOffering, &id, &json!({"lifecycleStatus": "Retired"}), renamed.version, "t", at(4)).await.is_err());
        catalogue.set_status(Kind::ProductOffering, &id, LifecycleStatus::Active, "t", at(5)).await.expect("activate");
        let mut events = Vec::new();
        loop {
            let claimed = store.claim_deliveries(at(100), 10, std::time::Duration::from_secs(60), &[]).await.expect("claim");
            if claimed.is_empty() {
                break;
            }
            for delivery in claimed {
                let body: Value = serde_json::from_str(&delivery.body).expect("JSON");
                assert_eq!(body["event"]["productOffering"]["id"], id.as_str());
                events.push(delivery.event_type.clone());
                store.deliveries_done(&[delivery.id], at(100)).await.expect("done");
            }
        }
        assert_eq!(events, ["ProductOfferingCreateEvent", "ProductOfferingAttributeValueChangeEvent", "ProductOfferingStateChangeEvent"]);
    }
}

//! The customers crate on both databases: customers and billing accounts created with
//! their audit records and engine outbox rows, hierarchy rules (moves without cycles), a
//! partner's reach, finance's narrower writes, right of access and anonymisation that keeps the accounts.

use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_customers::{Customers, CustomersError, EngineOperation, Principal, CREATE_ACCOUNT, SET_CREDIT_LIMIT};
use tollgate_store::{store_test, Role, Store, Version};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + seconds).expect("a valid instant")
}

fn person(name: &str) -> Value {
    json!({
        "name": name,
        "engagedParty": {"id": "p-1", "@referredType": "Individual", "name": name},
        "contactMedium": [{"mediumType": "email", "characteristic": {"emailAddress": "ada@example.org"}}],
        "consent": [{"purpose": "marketing", "granted": true}],
    })
}

fn account(name: &str, customer: &str, parent: Option<&str>, currency: &str, limit: &str) -> Value {
    let mut doc = json!({
        "name": name,
        "creditLimit": {"unit": currency, "value": limit},
        "relatedParty": [{"id": customer, "@referredType": "Customer"}],
        "billCycleDay": 5,
    });
    if let Some(parent) = parent {
        doc["parentAccount"] = json!({"id": parent});
    }
    doc
}

fn id(doc: &Value) -> String {
    doc["id"].as_str().expect("id").to_owned()
}

async fn outbox(store: &Store) -> Vec<(String, EngineOperation)> {
    let items = store.claim_outbox(at(10_000), 100, std::time::Duration::from_secs(60)).await.expect("claim");
    let mut all = Vec::new();
    for item in items {
        all.push((item.idempotency_key.clone(), EngineOperation::from_outbox(&item).expect("operation")));
        store.outbox_done(&item, at(10_000)).await.expect("done");
    }
    all
}

store_test! {
    async fn accounts_reach_the_engine_through_the_outbox_and_hierarchies_hold(store) {
        let customers = Customers::new(Store::clone(&store));
        let admin = Principal::admin("test");
        let acme = customers.create_customer(&admin, person("Acme"), at(0)).await.expect("customer");
        assert_eq!(acme.value["consent"][0]["at"], json!(at(0).to_string()));
        let acme_id = id(&acme.value);
        let root = customers.create_account(&admin, account("HQ", &acme_id, None, "EUR", "1000.50"), at(1)).await.expect("root");
        let root_id = id(&root.value);
        let child = customers
            .create_account(&admin, account("Sales", &acme_id, Some(&root_id), "EUR", "100"), at(2))
            .await
            .expect("child");
        assert_eq!(child.value["parentAccount"]["id"], json!(root_id));
        let engine_id = root.value["engineAccountId"].as_u64().expect("engine id");

        // A child's currency is its parent's.
        match customers.create_account(&admin, account("USD", &acme_id, Some(&root_id), "USD", "1"), at(3)).await {
            Err(CustomersError::Invalid { field, .. }) => assert_eq!(field, "creditLimit.unit"),
            other => panic!("{other:?}"),
        }
        // Depth is bounded.
        let mut parent = id(&child.value);
        for level in 2..=tollgate_customers::MAX_DEPTH {
            let next = customers
                .create_account(&admin, account(&format!("L{level}"), &acme_id, Some(&parent), "EUR", "1"), at(4))
                .await
                .expect("level");
            parent = id(&next.value);
        }
        match customers.create_account(&admin, account("deep", &acme_id, Some(&parent), "EUR", "1"), at(5)).await {
            Err(CustomersError::Invalid { field, .. }) => assert_eq!(field, "parentAccount.id"),
            other => panic!("{other:?}"),
        }
        // An unknown customer, a bad bill cycle day: refused naming the field.
        for (doc, field) in [
            (account("x", "nobody", None, "EUR", "1"), "relatedParty.id"),
            (json!({"name": "x", "creditLimit": {"unit": "EUR", "value": 1}, "billCycleDay": 29,
                    "relatedParty": [{"id": acme_id, "@referredType": "Customer"}]}), "billCycleDay"),
            (json!({"name": "x", "creditLimit": {"unit": "EUR", "value": -1},
                    "relatedParty": [{"id": acme_id, "@referredType": "Customer"}]}), "creditLimit.value"),
        ] {
            match customers.create_account(&admin, doc, at(6)).await {
                Err(CustomersError::Invalid { field: found, .. }) => assert_eq!(found, field),
                other => panic!("{other:?}"),
            }
        }

        let ops = outbox(&store).await;
        assert_eq!(ops.len(), 2 + usize::try_from(tollgate_customers::MAX_DEPTH - 1).expect("small"));
        assert_eq!(ops[0].0, format!("bss:billing-account:{root_id}:v1:create"));
        assert!(matches!(&ops[0].1, EngineOperation::CreateAccount { account, currency, credit_limit, .. }
            if *account == engine_id && currency == "EUR" && credit_limit.to_string() == "1000.5"));
        assert!(ops.iter().all(|(_, op)| op.kind() == CREATE_ACCOUNT));

        // A new credit limit: stale writes refused, finance may change money terms only.
        let finance = Principal { actor: "fin".into(), role: Role::Finance, scope_root: None };
        match customers.patch_account(&finance, &root_id, &json!({"name": "HQ2"}), root.version, at(7)).await {
            Err(CustomersError::Forbidden { .. }) => {}
            other => panic!("{other:?}"),
        }
        let patch = json!({"creditLimit": {"unit": "EUR", "value": "2000"}});
        let changed = customers.patch_account(&finance, &root_id, &patch, root.version, at(7)).await.expect("patch");
        assert_eq!(changed.version.get(), 2);
        match customers.patch_account(&finance, &root_id, &patch, root.version, at(8)).await {
            Err(CustomersError::StaleVersion { expected: 1, found: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
        let ops = outbox(&store).await;
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].0, format!("bss:billing-account:{root_id}:v2:credit-limit"));
        assert!(matches!(&ops[0].1, EngineOperation::SetCreditLimit { account, credit_limit }
            if *account == engine_id && credit_limit.to_string() == "2000" && ops[0].1.kind() == SET_CREDIT_LIMIT));
    }
}

store_test! {
    async fn a_partner_reaches_its_hierarchy_only(store) {
        let customers = Customers::new(Store::clone(&store));
        let admin = Principal::admin("test");
        let a = id(&customers.create_customer(&admin, person("A"), at(0)).await.expect("a").value);
        let b = id(&customers.create_customer(&admin, person("B"), at(0)).await.expect("b").value);
        let root_a = id(&customers.create_account(&admin, account("A", &a, None, "EUR", "10"), at(1)).await.expect("ra").value);
        let root_b = id(&customers.create_account(&admin, account("B", &b, None, "EUR", "10"), at(1)).await.expect("rb").value);
        let partner = Principal { actor: "partner-a".into(), role: Role::Partner, scope_root: Some(root_a.clone()) };

        assert!(customers.get_account(&partner, &root_a).await.is_ok());
        assert!(customers.get_customer(&partner, &a).await.is_ok());
        assert!(matches!(customers.get_account(&partner, &root_b).await, Err(CustomersError::Forbidden { .. })));
        assert!(matches!(customers.get_customer(&partner, &b).await, Err(CustomersError::Forbidden { .. })));
        let patch = json!({"name": "mine now"});
        assert!(matches!(
            customers.patch_account(&partner, &root_b, &patch, Version::FIRST, at(2)).await,
            Err(CustomersError::Forbidden { .. })
        ));
        // A child in its own hierarchy: yes; under B's root or a new root: no.
        let line = customers.create_account(&partner, account("line", &a, Some(&root_a), "EUR", "5"), at(3)).await;
        assert!(line.is_ok(), "{line:?}");
        for parent in [Some(root_b.as_str()), None] {
            assert!(matches!(
                customers.create_account(&partner, account("x", &a, parent, "EUR", "5"), at(3)).await,
                Err(CustomersError::Forbidden { .. })
            ));
        }
        // B's customer cannot be pulled into A's hierarchy.
        assert!(matches!(
            customers.create_account(&partner, account("x", &b, Some(&root_a), "EUR", "5"), at(3)).await,
            Err(CustomersError::Forbidden { .. })
        ));
        let page = customers.list_accounts(&partner, [], 0, 100).await.expect("list");
        assert_eq!(page.total, 2);
        let page = customers.list_customers(&partner, [], 0, 100).await.expect("list");
        assert_eq!(page.items.iter().map(|c| id(&c.value)).collect::<Vec<_>>(), vec![a.as_str()]);

        // Regression: a partner raised its own credit limit, lengthened its payment terms
        // and resumed a line the operator had suspended. Those are the operator's terms; a
        // partner shares its root's credit out to its children, no more.
        let line = line.expect("line");
        let line_id = id(&line.value);
        let root = customers.get_account(&admin, &root_a).await.expect("root");
        for patch in [
            json!({"creditLimit": {"unit": "EUR", "value": "999999"}}),
            json!({"paymentTermsDays": 365}),
            json!({"taxProfileId": "zero-rated"}),
        ] {
            let refused = customers.patch_account(&partner, &root_a, &patch, root.version, at(4)).await;
            assert!(matches!(refused, Err(CustomersError::Forbidden { .. })), "{patch}: {refused:?}");
        }
        let suspended =
            customers.patch_account(&admin, &line_id, &json!({"state": "Suspended"}), line.version, at(4)).await.expect("suspend");
        let resumed = customers.patch_account(&partner, &line_id, &json!({"state": "Active"}), suspended.version, at(5)).await;
        assert!(matches!(resumed, Err(CustomersError::Forbidden { .. })), "{resumed:?}");
        let above = json!({"creditLimit": {"unit": "EUR", "value": "11"}});
        let refused = customers.patch_account(&partner, &line_id, &above, suspended.version, at(5)).await;
        assert!(matches!(refused, Err(CustomersError::Forbidden { .. })), "{refused:?}");
        let within = json!({"creditLimit": {"unit": "EUR", "value": "10"}});
        customers.patch_account(&partner, &line_id, &within, suspended.version, at(5)).await.expect("within the root's");
        let mut rich = account("rich", &a, Some(&root_a), "EUR", "50");
        let refused = customers.create_account(&partner, rich.clone(), at(6)).await;
        assert!(matches!(refused, Err(CustomersError::Forbidden { .. })), "{refused:?}");
        rich["creditLimit"]["value"] = json!("1");
        rich["paymentTermsDays"] = json!(90);
        let refused = customers.create_account(&partner, rich, at(6)).await;
        assert!(matches!(refused, Err(CustomersError::Forbidden { .. })), "{refused:?}");
        // Finance changes the money terms of accounts; it does not open them.
        let finance = Principal { actor: "fin".into(), role: Role::Finance, scope_root: None };
        let refused = customers.create_account(&finance, account("f", &b, Some(&root_b), "EUR", "1"), at(6)).await;
        assert!(matches!(refused, Err(CustomersError::Forbidden { .. })), "{refused:?}");
    }
}

store_test! {
    async fn export_and_anonymisation_keep_the_accounts(store) {
        let customers = Customers::new(Store::clone(&store));
        let care = Principal { actor: "care".into(), role: Role::Care, scope_root: None };
        let ada = id(&customers.create_customer(&care, person("Ada Lovelace"), at(0)).await.expect("ada").value);
        let acct = id(&customers.create_account(&care, account("Ada", &ada, None, "GBP", "50"), at(1)).await.expect("acct").value);
        let export = customers.export_customer(&care, &ada, at(2)).await.expect("export");
        assert_eq!(export["customer"]["name"], json!("Ada Lovelace"));
        assert_eq!(export["billingAccounts"][0]["id"], json!(acct));

        let erased = customers.anonymise_customer(&care, &ada, at(3)).await.expect("anonymise");
        let text = erased.value.to_string();
        assert!(!text.contains("Ada") && !text.contains("ada@example.org"), "{text}");
        assert_eq!(erased.value["consent"], json!([]));
        let account = customers.get_account(&care, &acct).await.expect("account kept");
        assert_eq!(account.value["creditLimit"], json!({"unit": "GBP", "value": 50}));
        // Regression: the account named after her kept her name, in the account and in the
        // audit trail.
        assert_eq!(account.value["name"], json!("anonymised"));
        // The customer cannot be deleted while it owns the account, nor changed once anonymised.
        assert!(matches!(customers.delete_customer(&care, &ada, None, at(4)).await, Err(CustomersError::Conflict { .. })));
        assert!(matches!(
            customers.patch_customer(&care, &ada, &json!({"name": "Ada"}), erased.version, at(4)).await,
            Err(CustomersError::Conflict { .. })
        ));
        // The append-only audit trail never held the personal data.
        let entries = store.audit_entries(None, 0, 100).await.expect("audit");
        let trail = format!("{entries:?}");
        assert!(!trail.contains("Lovelace") && !trail.contains("ada@example.org") && !trail.contains("Ada"), "{trail}");
        assert!(trail.contains("anonymise"));
        // A field the customer does not keep is refused by name.
        match customers.create_customer(&care, json!({"name": "x", "engagedParty": {"id": "1", "@referredType": "Individual"}, "birthDate": "1815-12-10"}), at(5)).await {
            Err(CustomersError::Invalid { field, .. }) => assert_eq!(field, "birthDate"),
            other => panic!("{other:?}"),
        }
    }
}

store_test! {
    async fn moving_an_account_keeps_the_hierarchy_acyclic_and_the_partner_scope_right(store) {
        let customers = Customers::new(Store::clone(&store));
        let admin = Principal::admin("test");
        let c = id(&customers.create_customer(&admin, person("C"), at(0)).await.expect("c").value);
        let make = |name: &'static str, parent: Option<String>| {
            let customers = customers.clone();
            let admin = admin.clone();
            let c = c.clone();
            async move {
                customers.create_account(&admin, account(name, &c, parent.as_deref(), "EUR", "1"), at(1)).await.expect(name)
            }
        };
        let a = make("a", None).await;
        let a_id = id(&a.value);
        let child = make("child", Some(a_id.clone())).await;
        let child_id = id(&child.value);
        let grandchild = make("grandchild", Some(child_id.clone())).await;
        let b = make("b", None).await;
        let b_id = id(&b.value);

        // Under itself or under its own descendant: a cycle, refused naming the field.
        for target in [&a_id, &child_id, &id(&grandchild.value)] {
            match customers.patch_account(&admin, &a_id, &json!({"parentAccount": {"id": target}}), a.version, at(2)).await {
                Err(CustomersError::Invalid { field, .. }) => assert_eq!(field, "parentAccount.id"),
                other => panic!("{target}: {other:?}"),
            }
        }
        // Moving child (with grandchild) under b: both leave a's hierarchy.
        let partner_a = Principal { actor: "pa".into(), role: Role::Partner, scope_root: Some(a_id.clone()) };
        let partner_b = Principal { actor: "pb".into(), role: Role::Partner, scope_root: Some(b_id.clone()) };
        assert!(customers.get_account(&partner_a, &id(&grandchild.value)).await.is_ok());
        let moved = customers
            .patch_account(&admin, &child_id, &json!({"parentAccount": {"id": b_id}}), child.version, at(3))
            .await
            .expect("move");
        assert_eq!(moved.value["parentAccount"]["id"], json!(b_id));
        assert!(matches!(
            customers.get_account(&partner_a, &id(&grandchild.value)).await,
            Err(CustomersError::Forbidden { .. })
        ));
        assert!(customers.get_account(&partner_b, &id(&grandchild.value)).await.is_ok());
        // A partner cannot move an account out of its hierarchy or make it a root.
        for patch in [json!({"parentAccount": {"id": a_id}}), json!({"parentAccount": null})] {
            assert!(matches!(
                customers.patch_account(&partner_b, &child_id, &patch, moved.version, at(4)).await,
                Err(CustomersError::Forbidden { .. })
            ));
        }
        // An admin may make it a root of its own.
        let root = customers
            .patch_account(&admin, &child_id, &json!({"parentAccount": null}), moved.version, at(5))
            .await
            .expect("root");
        assert_eq!(root.value.get("parentAccount"), None);
        let partner_child = Principal { actor: "pc".into(), role: Role::Partner, scope_root: Some(child_id.clone()) };
        assert!(customers.get_account(&partner_child, &id(&grandchild.value)).await.is_ok());
    }
}

/// Registers a listener for every event of `api` (as the hub crate would).
async fn listen(store: &Store, api: &str) {
    let secret = tollgate_store::HubSecret::generate().expect("a secret");
    let filter = tollgate_store::EventFilter::default();
    let id = tollgate_store::new_entity_id().expect("an id");
    let mut tx = store.begin().await.expect("begin");
    let new = tollgate_store::NewListener {
        id: &id,
        api,
        callback: "http://127.0.0.1:9/",
        query: None,
        filter: &filter,
        secret: &secret,
        created_by: "test",
    };
    tx.insert_listener(new, at(0)).await.expect("listen");
    tx.commit().await.expect("commit");
}

/// The events queued so far, as (type, entity id, the entity's `name`), marked delivered.
async fn events(store: &Store) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    loop {
        let claimed =
            store.claim_deliveries(at(10_000), 100, std::time::Duration::from_secs(60), &[]).await.expect("claim");
        if claimed.is_empty() {
            return all;
        }
        for delivery in claimed {
            let body: Value = serde_json::from_str(&delivery.body).expect("JSON");
            let entity = body["event"].as_object().and_then(|event| event.values().next()).expect("an entity").clone();
            all.push((delivery.event_type.clone(), id(&entity), entity["name"].as_str().unwrap_or("").to_owned()));
            store.deliveries_done(&[delivery.id], at(10_000)).await.expect("done");
        }
    }
}

store_test! {
    async fn every_change_publishes_its_events_in_its_transaction(store) {
        let customers = Customers::new(Store::clone(&store));
        let admin = Principal::admin("test");
        listen(&store, tollgate_customers::CUSTOMER_BASE_PATH).await;
        listen(&store, tollgate_customers::ACCOUNT_BASE_PATH).await;
        let ada = customers.create_customer(&admin, person("Ada"), at(0)).await.expect("customer");
        let ada_id = id(&ada.value);
        let renamed = customers
            .patch_customer(&admin, &ada_id, &json!({"name": "Ada L"}), ada.version, at(1))
            .await
            .expect("rename");
        let paused = customers
            .patch_customer(&admin, &ada_id, &json!({"status": "Inactive"}), renamed.version, at(2))
            .await
            .expect("status");
        // A refused change publishes nothing.
        assert!(customers.patch_customer(&admin, &ada_id, &json!({"name": ""}), paused.version, at(3)).await.is_err());
        let hq = customers.create_account(&admin, account("HQ", &ada_id, None, "EUR", "10"), at(4)).await.expect("account");
        let hq_id = id(&hq.value);
        customers
            .patch_account(&admin, &hq_id, &json!({"creditLimit": {"unit": "EUR", "value": "20"}}), hq.version, at(5))
            .await
            .expect("limit");
        // Per entity in order (deliveries of one entity go one at a time, so the rounds of
        // claims interleave entities).
        let mut found = events(&store).await;
        found.sort_by_key(|(_, entity, _)| usize::from(entity != &ada_id));
        let expected = [
            ("CustomerCreateEvent", &ada_id, "Ada"),
            ("CustomerAttributeValueChangeEvent", &ada_id, "Ada L"),
            ("CustomerStateChangeEvent", &ada_id, "Ada L"),
            ("BillingAccountCreateEvent", &hq_id, "HQ"),
            ("BillingAccountAttributeValueChangeEvent", &hq_id, "HQ"),
        ];
        let expected: Vec<(String, String, String)> =
            expected.iter().map(|(t, i, n)| ((*t).to_owned(), (*i).clone(), (*n).to_owned())).collect();
        assert_eq!(found, expected);

        customers.anonymise_customer(&admin, &ada_id, at(6)).await.expect("anonymise");
        let other = customers.create_customer(&admin, person("Bob"), at(7)).await.expect("customer");
        customers.delete_customer(&admin, &id(&other.value), None, at(8)).await.expect("delete");
        let mut found: Vec<String> = events(&store).await.into_iter().map(|(t, _, _)| t).collect();
        found.sort();
        assert_eq!(found, ["CustomerAttributeValueChangeEvent", "CustomerCreateEvent", "CustomerDeleteEvent"]);
    }
}

store_test! {
    async fn an_anonymisation_takes_the_personal_data_out_of_the_events_not_delivered_yet(store) {
        let customers = Customers::new(Store::clone(&store));
        let admin = Principal::admin("test");
        listen(&store, tollgate_customers::CUSTOMER_BASE_PATH).await;
        let ada = customers.create_customer(&admin, person("Ada"), at(0)).await.expect("customer");
        let ada_id = id(&ada.value);
        let bob = customers.create_customer(&admin, person("Bob"), at(1)).await.expect("customer");
        customers
            .patch_customer(&admin, &ada_id, &json!({"name": "Ada L"}), ada.version, at(2))
            .await
            .expect("rename");
        customers.anonymise_customer(&admin, &ada_id, at(3)).await.expect("anonymise");
        // Every event of Ada's still to be delivered says only what the anonymised
        // customer keeps; Bob's are as published.
        let mut bodies = Vec::new();
        loop {
            let claimed =
                store.claim_deliveries(at(10_000), 100, std::time::Duration::from_secs(60), &[]).await.expect("claim");
            if claimed.is_empty() {
                break;
            }
            for delivery in claimed {
                bodies.push(serde_json::from_str::<Value>(&delivery.body).expect("JSON"));
                store.deliveries_done(&[delivery.id], at(10_000)).await.expect("done");
            }
        }
        let of = |who: &str| -> Vec<&Value> {
            bodies.iter().map(|body| &body["event"]["customer"]).filter(|c| c["id"] == who).collect()
        };
        let adas = of(&ada_id);
        assert_eq!(adas.len(), 3, "created, renamed, anonymised: {bodies:?}");
        for customer in adas {
            let text = customer.to_string();
            assert_eq!(customer["name"], "anonymised", "{text}");
            assert!(!text.contains("Ada") && customer.get("contactMedium").is_none(), "{text}");
        }
        let bobs = of(&id(&bob.value));
        assert_eq!(bobs.len(), 1);
        assert_eq!(bobs[0]["name"], "Bob");
    }
}

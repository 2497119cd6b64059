//! Customers (TMF629), billing accounts (TMF666) and prepaid balances (TMF654) through the
//! API in process, on SQLite and PostgreSQL: 401 and 403 by role, a partner confined to its
//! hierarchy across two of them, finance changing money terms only, 400 naming the field,
//! 404, 409, 412, 428, the export, and anonymisation that keeps the account and its engine
//! outbox row; the customers' and accounts' event hubs (TMF630 `…/hub`): registration by
//! role, the secret shown once, validation naming the field, removal, and the operator's
//! dead letters; top-ups and adjustments idempotent by request id against the model engine
//! of `tollgate_customers::testing`, the balance view, 503 while the engine is down, and
//! the account lifecycle.

mod common;

use axum::http::StatusCode;
use axum::Router;
use common::{call, call_raw, token};
use serde_json::{json, Value};
use tollgate_api::{router, ApiConfig};
use tollgate_customers::testing::model_engine;
use tollgate_store::{store_test, Role, Store};

const CUSTOMERS: &str = "/tmf-api/customerManagement/v4/customer";
const ACCOUNTS: &str = "/tmf-api/accountManagement/v4/billingAccount";

fn person(name: &str) -> Value {
    json!({
        "name": name,
        "engagedParty": {"id": "p", "@referredType": "Organization"},
        "contactMedium": [{"mediumType": "email", "characteristic": {"emailAddress": "x@example.org"}}],
        "consent": [{"purpose": "marketing", "granted": false}],
    })
}

fn account(customer: &str, parent: Option<&str>) -> Value {
    let mut doc = json!({
        "name": "line",
        "creditLimit": {"unit": "EUR", "value": 100},
        "relatedParty": [{"id": customer, "@referredType": "Customer"}],
    });
    if let Some(parent) = parent {
        doc["parentAccount"] = json!({"id": parent});
    }
    doc
}

async fn create(app: &Router, token: &str, path: &str, body: Value) -> Value {
    let answer = call(app, "POST", path, Some(token), Some(body), &[]).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.header("etag"), "W/\"1\"");
    answer.body
}

fn id(doc: &Value) -> String {
    doc["id"].as_str().expect("an id").to_owned()
}

store_test! {
    async fn customers_and_accounts_answer_by_role_and_hierarchy(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        let admin = token(&store, Role::Admin, None).await;
        assert_eq!(call(&app, "GET", CUSTOMERS, None, None, &[]).await.status, StatusCode::UNAUTHORIZED);

        let a = id(&create(&app, &admin, CUSTOMERS, person("A")).await);
        let b = id(&create(&app, &admin, CUSTOMERS, person("B")).await);
        let root_a = id(&create(&app, &admin, ACCOUNTS, account(&a, None)).await);
        let root_b = id(&create(&app, &admin, ACCOUNTS, account(&b, None)).await);
        let partner_a = token(&store, Role::Partner, Some(&root_a)).await;
        let partner_b = token(&store, Role::Partner, Some(&root_b)).await;

        // Each partner sees and changes its own hierarchy only.
        let child = create(&app, &partner_a, ACCOUNTS, account(&a, Some(&root_a))).await;
        assert_eq!(child["parentAccount"]["id"], json!(root_a));
        for (partner, mine, theirs, customer, other) in
            [(&partner_a, &root_a, &root_b, &a, &b), (&partner_b, &root_b, &root_a, &b, &a)]
        {
            let ok = call(&app, "GET", &format!("{ACCOUNTS}/{mine}"), Some(partner), None, &[]).await;
            assert_eq!(ok.status, StatusCode::OK);
            let no = call(&app, "GET", &format!("{ACCOUNTS}/{theirs}"), Some(partner), None, &[]).await;
            assert_eq!(no.status, StatusCode::FORBIDDEN);
            let no = call(&app, "GET", &format!("{CUSTOMERS}/{other}"), Some(partner), None, &[]).await;
            assert_eq!(no.status, StatusCode::FORBIDDEN);
            let ok = call(&app, "GET", &format!("{CUSTOMERS}/{customer}"), Some(partner), None, &[]).await;
            assert_eq!(ok.status, StatusCode::OK);
            let patch = call(&app, "PATCH", &format!("{ACCOUNTS}/{theirs}"), Some(partner), Some(json!({"name": "x"})), &[("if-match", "W/\"1\"")]).await;
            assert_eq!(patch.status, StatusCode::FORBIDDEN);
            let under = call(&app, "POST", ACCOUNTS, Some(partner), Some(account(customer, Some(theirs))), &[]).await;
            assert_eq!(under.status, StatusCode::FORBIDDEN);
            let list = call(&app, "GET", ACCOUNTS, Some(partner), None, &[]).await;
            assert!(list.body.as_array().expect("a list").iter().all(|acct| acct["id"] != json!(theirs)));
            let export = call(&app, "GET", &format!("{CUSTOMERS}/{customer}/export"), Some(partner), None, &[]).await;
            assert_eq!(export.status, StatusCode::FORBIDDEN);
        }
        let list = call(&app, "GET", ACCOUNTS, Some(&partner_a), None, &[]).await;
        assert_eq!(list.header("x-total-count"), "2");
        // A customer without an account is its creator's: another role's is no partner's
        // to take over; a partner's own is its to read and to open an account for, and
        // no other partner's.
        let free = id(&create(&app, &admin, CUSTOMERS, person("Free")).await);
        let claim = call(&app, "POST", ACCOUNTS, Some(&partner_a), Some(account(&free, Some(&root_a))), &[]).await;
        assert_eq!(claim.status, StatusCode::FORBIDDEN, "{}", claim.body);
        let read = call(&app, "GET", &format!("{CUSTOMERS}/{free}"), Some(&partner_a), None, &[]).await;
        assert_eq!(read.status, StatusCode::FORBIDDEN);
        let own = id(&create(&app, &partner_a, CUSTOMERS, person("Own")).await);
        let read = call(&app, "GET", &format!("{CUSTOMERS}/{own}"), Some(&partner_a), None, &[]).await;
        assert_eq!(read.status, StatusCode::OK);
        let other = call(&app, "POST", ACCOUNTS, Some(&partner_b), Some(account(&own, Some(&root_b))), &[]).await;
        assert_eq!(other.status, StatusCode::FORBIDDEN, "{}", other.body);
        let listed = call(&app, "GET", &format!("{CUSTOMERS}?name=Own"), Some(&partner_a), None, &[]).await;
        assert_eq!(listed.header("x-total-count"), "1");
        create(&app, &partner_a, ACCOUNTS, account(&own, Some(&root_a))).await;
        let listed = call(&app, "GET", &format!("{CUSTOMERS}?name=Own"), Some(&partner_b), None, &[]).await;
        assert_eq!(listed.header("x-total-count"), "0");

        // An id that does not exist looks to a partner like another hierarchy's (it
        // learns nothing of which ids others have); to others it is not found.
        for (path, body) in [
            (format!("{ACCOUNTS}/nope"), None),
            (format!("{CUSTOMERS}/nope"), None),
            (ACCOUNTS.to_owned(), Some(account(&a, Some("nope")))),
            (ACCOUNTS.to_owned(), Some(account("nope", Some(&root_a)))),
        ] {
            let method = if body.is_some() { "POST" } else { "GET" };
            let partner = call(&app, method, &path, Some(&partner_a), body.clone(), &[]).await;
            assert_eq!(partner.status, StatusCode::FORBIDDEN, "{method} {path}: {}", partner.body);
            let care = call(&app, method, &path, Some(&admin), body, &[]).await;
            assert!(matches!(care.status, StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST), "{method} {path}");
        }
        let patch = call(&app, "PATCH", &format!("{ACCOUNTS}/nope"), Some(&partner_a), Some(json!({"name": "x"})), &[("if-match", "W/\"1\"")]).await;
        assert_eq!(patch.status, StatusCode::FORBIDDEN);

        // Roles: finance reads accounts and changes money terms only; read_only reads.
        let finance = token(&store, Role::Finance, None).await;
        let read_only = token(&store, Role::ReadOnly, None).await;
        assert_eq!(call(&app, "GET", CUSTOMERS, Some(&finance), None, &[]).await.status, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "GET", CUSTOMERS, Some(&read_only), None, &[]).await.status, StatusCode::OK);
        let post = call(&app, "POST", CUSTOMERS, Some(&read_only), Some(person("C")), &[]).await;
        assert_eq!(post.status, StatusCode::FORBIDDEN);
        let path = format!("{ACCOUNTS}/{root_b}");
        let v1 = [("if-match", "W/\"1\"")];
        let rename = call(&app, "PATCH", &path, Some(&finance), Some(json!({"name": "n"})), &v1).await;
        assert_eq!(rename.status, StatusCode::FORBIDDEN);
        let limit = json!({"creditLimit": {"unit": "EUR", "value": 250.5}, "paymentTermsDays": 14});
        let changed = call(&app, "PATCH", &path, Some(&finance), Some(limit.clone()), &v1).await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
        assert_eq!(changed.header("etag"), "W/\"2\"");
        assert_eq!(changed.body["creditLimit"]["value"], json!(250.5));
        let stale = call(&app, "PATCH", &path, Some(&finance), Some(limit.clone()), &v1).await;
        assert_eq!((stale.status, stale.body["reason"].as_str()), (StatusCode::PRECONDITION_FAILED, Some("If-Match")));
        let bare = call(&app, "PATCH", &path, Some(&finance), Some(limit), &[]).await;
        assert_eq!(bare.status, StatusCode::PRECONDITION_REQUIRED);

        // 400 naming the field, 404, 409, 405.
        let mut bad = account(&a, None);
        bad["billCycleDay"] = json!(31);
        let answer = call(&app, "POST", ACCOUNTS, Some(&admin), Some(bad), &[]).await;
        assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("billCycleDay")));
        let mut usd = account(&a, Some(&root_a));
        usd["creditLimit"] = json!({"unit": "USD", "value": 1});
        let answer = call(&app, "POST", ACCOUNTS, Some(&admin), Some(usd), &[]).await;
        assert_eq!(answer.body["reason"], json!("creditLimit.unit"));
        let answer = call(&app, "POST", CUSTOMERS, Some(&admin), Some(json!({"name": "x"})), &[]).await;
        assert_eq!(answer.body["reason"], json!("engagedParty"));
        let mut xxx = account(&a, None);
        xxx["creditLimit"] = json!({"unit": "XXX", "value": 1});
        let answer = call(&app, "POST", ACCOUNTS, Some(&admin), Some(xxx), &[]).await;
        assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("creditLimit.unit")));
        let mut control = account(&a, None);
        control["name"] = json!("a\u{0}b");
        let answer = call(&app, "POST", ACCOUNTS, Some(&admin), Some(control), &[]).await;
        assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("name")));
        let answer = call(&app, "POST", CUSTOMERS, Some(&admin), Some(person("a\u{7}b")), &[]).await;
        assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("name")));
        let answer = call(&app, "GET", &format!("{CUSTOMERS}/nope"), Some(&admin), None, &[]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        let answer = call(&app, "DELETE", &format!("{CUSTOMERS}/{a}"), Some(&admin), None, &[]).await;
        assert_eq!(answer.status, StatusCode::CONFLICT);
        let answer = call(&app, "DELETE", &format!("{ACCOUNTS}/{root_a}"), Some(&admin), None, &[]).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
        let filtered = call(&app, "GET", &format!("{ACCOUNTS}?relatedParty.id={b}&fields=name"), Some(&admin), None, &[]).await;
        assert_eq!(filtered.header("x-total-count"), "1");
        assert_eq!(filtered.body[0].get("creditLimit"), None);
        let answer = call(&app, "GET", &format!("{ACCOUNTS}?colour=red"), Some(&admin), None, &[]).await;
        assert_eq!(answer.body["reason"], json!("colour"));
    }
}

store_test! {
    async fn export_and_anonymise_keep_the_account(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        let care = token(&store, Role::Care, None).await;
        let customer = id(&create(&app, &care, CUSTOMERS, person("Grace Hopper")).await);
        let acct = id(&create(&app, &care, ACCOUNTS, account(&customer, None)).await);
        let export = call(&app, "GET", &format!("{CUSTOMERS}/{customer}/export"), Some(&care), None, &[]).await;
        assert_eq!(export.status, StatusCode::OK);
        assert_eq!(export.body["customer"]["name"], json!("Grace Hopper"));
        assert_eq!(export.body["billingAccounts"][0]["id"], json!(acct));

        let erased = call(&app, "POST", &format!("{CUSTOMERS}/{customer}/anonymise"), Some(&care), None, &[]).await;
        assert_eq!(erased.status, StatusCode::OK);
        assert!(!erased.body.to_string().contains("Hopper"));
        let read = call(&app, "GET", &format!("{CUSTOMERS}/{customer}"), Some(&care), None, &[]).await;
        assert_eq!((read.body["name"].as_str(), read.body.get("contactMedium")), (Some("anonymised"), None));
        let kept = call(&app, "GET", &format!("{ACCOUNTS}/{acct}"), Some(&care), None, &[]).await;
        assert_eq!(kept.status, StatusCode::OK);
        assert_eq!(kept.body["relatedParty"][0]["id"], json!(customer));
        assert_eq!(store.outbox_counts().await.expect("counts").pending, 1, "the engine account is still on its way");
        let finance = token(&store, Role::Finance, None).await;
        let path = format!("{CUSTOMERS}/{customer}/anonymise");
        assert_eq!(call(&app, "POST", &path, Some(&finance), None, &[]).await.status, StatusCode::FORBIDDEN);
    }
}

const CUSTOMER_HUB: &str = "/tmf-api/customerManagement/v4/hub";
const ACCOUNT_HUB: &str = "/tmf-api/accountManagement/v4/hub";
const CATALOGUE_HUB: &str = "/tmf-api/productCatalogManagement/v4/hub";
const DELIVERIES: &str = "/tmf-api/hub/v1/delivery";

store_test! {
    async fn hubs_register_listeners_by_role_and_show_the_secret_once(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        let admin = token(&store, Role::Admin, None).await;
        let care = token(&store, Role::Care, None).await;
        let finance = token(&store, Role::Finance, None).await;
        let read_only = token(&store, Role::ReadOnly, None).await;
        let a = id(&create(&app, &admin, CUSTOMERS, person("A")).await);
        let root_a = id(&create(&app, &admin, ACCOUNTS, account(&a, None)).await);
        let partner = token(&store, Role::Partner, Some(&root_a)).await;
        let listener = json!({"callback": "http://127.0.0.1:9/hook", "query": "eventType=CustomerCreateEvent"});

        // Who may register where: the role owning the API, never a partner.
        let cases = [
            (&admin, CUSTOMER_HUB, StatusCode::CREATED),
            (&care, CUSTOMER_HUB, StatusCode::CREATED),
            (&finance, CUSTOMER_HUB, StatusCode::FORBIDDEN),
            (&read_only, CUSTOMER_HUB, StatusCode::FORBIDDEN),
            (&partner, CUSTOMER_HUB, StatusCode::FORBIDDEN),
            (&care, CATALOGUE_HUB, StatusCode::FORBIDDEN),
            (&partner, ACCOUNT_HUB, StatusCode::FORBIDDEN),
        ];
        for (who, hub, status) in cases {
            let answer = call(&app, "POST", hub, Some(who), Some(listener.clone()), &[]).await;
            assert_eq!(answer.status, status, "{hub}: {}", answer.body);
        }
        let on_accounts = json!({"callback": "https://hooks.example.com/x", "query": "eventType=BillingAccountCreateEvent"});
        assert_eq!(call(&app, "POST", ACCOUNT_HUB, Some(&finance), Some(on_accounts), &[]).await.status, StatusCode::CREATED);

        let answer = call(&app, "POST", CUSTOMER_HUB, Some(&care), Some(listener.clone()), &[]).await;
        assert_eq!(answer.status, StatusCode::CREATED);
        let registered = answer.body;
        let hub_id = id(&registered);
        assert_eq!(answer.headers.get("location").and_then(|v| v.to_str().ok()), Some(format!("{CUSTOMER_HUB}/{hub_id}").as_str()));
        assert_eq!((registered["callback"].clone(), registered["query"].clone()), (listener["callback"].clone(), listener["query"].clone()));
        let secret = registered["secret"].as_str().expect("the secret, once").to_owned();
        assert!(secret.starts_with(tollgate_store::HUB_SECRET_PREFIX));
        let read = call(&app, "GET", &format!("{CUSTOMER_HUB}/{hub_id}"), Some(&care), None, &[]).await;
        assert_eq!(read.status, StatusCode::OK);
        assert_eq!(read.body["id"], json!(hub_id));
        assert!(read.body.get("secret").is_none(), "never shown again: {}", read.body);
        // The listener belongs to the customers' hub only; the audit trail holds no secret.
        assert_eq!(call(&app, "GET", &format!("{ACCOUNT_HUB}/{hub_id}"), Some(&admin), None, &[]).await.status, StatusCode::NOT_FOUND);
        let audit = call(&app, "GET", &format!("/tmf-api/audit/v1/auditRecord?entityType=EventSubscription&entityId={hub_id}"), Some(&admin), None, &[]).await;
        assert_eq!(audit.status, StatusCode::OK);
        assert!(!audit.body.to_string().contains(&secret));
        assert!(audit.body.to_string().contains("register"), "{}", audit.body);

        // A customer created now is queued for the listener; removing it removes that too.
        create(&app, &admin, CUSTOMERS, person("B")).await;
        let queued = call(&app, "GET", &format!("{DELIVERIES}?listenerId={hub_id}&state=pending"), Some(&admin), None, &[]).await;
        assert_eq!((queued.status, queued.header("x-total-count")), (StatusCode::OK, "1"));
        assert_eq!(queued.body[0]["eventType"], "CustomerCreateEvent");
        assert_eq!(call(&app, "GET", DELIVERIES, Some(&care), None, &[]).await.status, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "DELETE", &format!("{CUSTOMER_HUB}/{hub_id}"), Some(&partner), None, &[]).await.status, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "DELETE", &format!("{CUSTOMER_HUB}/{hub_id}"), Some(&care), None, &[]).await.status, StatusCode::NO_CONTENT);
        assert_eq!(call(&app, "GET", &format!("{CUSTOMER_HUB}/{hub_id}"), Some(&care), None, &[]).await.status, StatusCode::NOT_FOUND);
        let queued = call(&app, "GET", &format!("{DELIVERIES}?listenerId={hub_id}"), Some(&admin), None, &[]).await;
        assert_eq!(queued.header("x-total-count"), "0");
    }
}

store_test! {
    async fn a_registration_is_validated_naming_the_field(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        let admin = token(&store, Role::Admin, None).await;
        let cases = [
            (json!({"query": "eventType=CustomerCreateEvent"}), "callback"),
            (json!({"callback": 7}), "callback"),
            (json!({"callback": "http://hooks.example.com/x"}), "callback"),
            (json!({"callback": "ftp://127.0.0.1/x"}), "callback"),
            (json!({"callback": "https://u:p@hooks.example.com/x"}), "callback"),
            (json!({"callback": "https://hooks.example.com/x", "query": "eventType=BillingAccountCreateEvent"}), "query"),
            (json!({"callback": "https://hooks.example.com/x", "query": "status=Active"}), "query"),
            (json!({"callback": "https://hooks.example.com/x", "secret": "mine"}), "secret"),
            (json!({"callback": "https://hooks.example.com/x", "id": "mine"}), "id"),
        ];
        for (body, field) in cases {
            let answer = call(&app, "POST", CUSTOMER_HUB, Some(&admin), Some(body.clone()), &[]).await;
            assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {}", answer.body);
        }
        // Plain http to any host only where the server allows it (a lab).
        let lab = router((*store).clone(), &ApiConfig::default().with_hub(tollgate_hub::HubOptions { allow_plain_http: true }));
        let plain = json!({"callback": "http://hooks.example.com/x"});
        assert_eq!(call(&lab, "POST", CUSTOMER_HUB, Some(&admin), Some(plain), &[]).await.status, StatusCode::CREATED);
        // The operator's routes refuse what they do not know.
        assert_eq!(call(&app, "GET", &format!("{DELIVERIES}?state=lost"), Some(&admin), None, &[]).await.body["reason"], "state");
        assert_eq!(call(&app, "GET", &format!("{DELIVERIES}?colour=red"), Some(&admin), None, &[]).await.body["reason"], "colour");
        assert_eq!(call(&app, "POST", &format!("{DELIVERIES}/x/redrive"), Some(&admin), None, &[]).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(call(&app, "POST", &format!("{DELIVERIES}/12345/redrive"), Some(&admin), None, &[]).await.status, StatusCode::NOT_FOUND);
    }
}

const PREPAY: &str = "/tmf-api/prepayBalanceManagement/v4";

fn topup(id: &str, account: &str, amount: &str) -> String {
    format!(
        r#"{{"id": "{id}", "partyAccount": {{"id": "{account}"}}, "amount": {{"amount": {amount}, "units": "EUR"}}}}"#
    )
}

store_test! {
    async fn prepaid_balances_answer_by_role_and_request_id(store) {
        let model = model_engine(&store);
        let app = router((*store).clone(), &ApiConfig::default().with_engine(model.port.clone()));
        let admin = token(&store, Role::Admin, None).await;
        let customer = id(&create(&app, &admin, CUSTOMERS, person("Ada")).await);
        let mut prepaid = account(&customer, None);
        prepaid["accountType"] = json!("prepaid");
        prepaid["creditLimit"] = json!({"unit": "EUR", "value": 0});
        let acct = id(&create(&app, &admin, ACCOUNTS, prepaid).await);
        assert_eq!(model.worker.run_once(jiff::Timestamp::now()).await.expect("pass").done, 1);
        let care = token(&store, Role::Care, None).await;
        let topups = format!("{PREPAY}/topupBalance");
        let adjustments = format!("{PREPAY}/adjustBalance");
        let balance = format!("{PREPAY}/accumulatedBalance/{acct}");

        // 401, 403 by role.
        assert_eq!(call(&app, "GET", &balance, None, None, &[]).await.status, StatusCode::UNAUTHORIZED);
        for (role, method, path, body) in [
            (Role::ProductManager, "GET", balance.clone(), None),
            (Role::ReadOnly, "POST", topups.clone(), Some(topup("r1", &acct, "1"))),
            (Role::Finance, "POST", topups.clone(), Some(topup("r2", &acct, "1"))),
            (Role::Partner, "POST", adjustments.clone(), Some(topup("r3", &acct, "1"))),
        ] {
            let holder = token(&store, role, (role == Role::Partner).then_some(acct.as_str())).await;
            let answer = call_raw(&app, method, &path, Some(&holder), body, &[]).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{role} {method} {path}");
        }
        let elsewhere = token(&store, Role::Partner, Some("another-root")).await;
        assert_eq!(call(&app, "GET", &balance, Some(&elsewhere), None, &[]).await.status, StatusCode::FORBIDDEN);
        let answer = call_raw(&app, "POST", &topups, Some(&elsewhere), Some(topup("p1", &acct, "1")), &[]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);

        // A top-up: 201 applied at once, a repeat 200 with the same answer, another
        // request under the same id 409.
        let made = call_raw(&app, "POST", &topups, Some(&care), Some(topup("t1", &acct, "\"10.50\"")), &[]).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
        assert_eq!(made.header("location"), format!("{topups}/t1"));
        assert_eq!((&made.body["status"], &made.body["balanceAfter"]["amount"]), (&json!("completed"), &json!(10.5)));
        let again = call_raw(&app, "POST", &topups, Some(&care), Some(topup("t1", &acct, "10.5")), &[]).await;
        assert_eq!((again.status, &again.body), (StatusCode::OK, &made.body));
        let other = call_raw(&app, "POST", &topups, Some(&care), Some(topup("t1", &acct, "11")), &[]).await;
        assert_eq!((other.status, other.body["reason"].as_str()), (StatusCode::CONFLICT, Some("id")));
        assert_eq!(model.engine.account(made_engine_id(&store, &acct).await).expect("account").balance.to_string(), "10.5");

        // 400 naming the field, 415.
        for (body, field) in [
            (topup("b1", &acct, "1e3"), "amount.amount"),
            (topup("b2", &acct, "-5"), "amount.amount"),
            (topup("b3", &acct, "1234567890123456"), "amount.amount"),
            (topup("b4", &acct, "1").replace("EUR", "XXX"), "amount.units"),
            (topup("b5", &acct, "1").replace("EUR", "euro"), "amount.units"),
            (topup("", &acct, "1"), "id"),
            (topup("b7", "nope", "1"), "partyAccount.id"),
            ("[1]".to_owned(), "body"),
        ] {
            let answer = call_raw(&app, "POST", &topups, Some(&care), Some(body.clone()), &[]).await;
            assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}");
        }
        let typed = call_raw(&app, "POST", &topups, Some(&care), Some(topup("b8", &acct, "1")), &[("content-type", "text/plain")]).await;
        assert_eq!(typed.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        // Read back; lists; the balance view is the engine's; 404.
        let read = call(&app, "GET", &format!("{topups}/t1?fields=status"), Some(&care), None, &[]).await;
        assert_eq!(read.body, json!({"id": "t1", "href": format!("{topups}/t1"), "@type": "TopupBalance", "status": "completed"}));
        let listed = call(&app, "GET", &format!("{topups}?partyAccount.id={acct}"), Some(&care), None, &[]).await;
        assert_eq!(listed.header("x-total-count"), "1");
        let view = call(&app, "GET", &balance, Some(&care), None, &[]).await;
        assert_eq!((view.status, &view.body["totalBalance"]), (StatusCode::OK, &json!({"amount": 10.5, "units": "EUR"})));
        let buckets = call(&app, "GET", &format!("{PREPAY}/bucket?partyAccount.id={acct}"), Some(&care), None, &[]).await;
        assert_eq!((buckets.header("x-total-count"), &buckets.body[0]["remainingValue"]["amount"]), ("1", &json!(10.5)));
        let main = call(&app, "GET", &format!("{PREPAY}/bucket/{acct}-0"), Some(&care), None, &[]).await;
        assert_eq!(main.body, buckets.body[0]);
        for missing in [format!("{PREPAY}/bucket/{acct}-9"), format!("{topups}/nope"), format!("{PREPAY}/accumulatedBalance/nope")] {
            assert_eq!(call(&app, "GET", &missing, Some(&care), None, &[]).await.status, StatusCode::NOT_FOUND, "{missing}");
        }
        let unfiltered = call(&app, "GET", &format!("{PREPAY}/bucket"), Some(&care), None, &[]).await;
        assert_eq!(unfiltered.body["reason"], json!("partyAccount.id"));

        // Finance adjusts; more than is available is a 409 before anything is recorded.
        let finance = token(&store, Role::Finance, None).await;
        let adjust = |id: &str, amount: &str| format!(r#"{{"id": "{id}", "partyAccount": {{"id": "{acct}"}}, "amount": {{"amount": {amount}, "units": "EUR"}}, "reason": "goodwill"}}"#);
        let adjusted = call_raw(&app, "POST", &adjustments, Some(&finance), Some(adjust("a1", "-0.5")), &[]).await;
        assert_eq!((adjusted.status, &adjusted.body["balanceAfter"]["amount"]), (StatusCode::CREATED, &json!(10)));
        let too_much = call_raw(&app, "POST", &adjustments, Some(&finance), Some(adjust("a2", "-50")), &[]).await;
        assert_eq!((too_much.status, too_much.body["reason"].as_str()), (StatusCode::CONFLICT, Some("amount.amount")));

        // The engine down: the view is 503, a top-up is recorded and applied later.
        model.engine.set_down(true);
        let down = call(&app, "GET", &balance, Some(&care), None, &[]).await;
        assert_eq!((down.status, down.header("retry-after")), (StatusCode::SERVICE_UNAVAILABLE, "1"));
        let waiting = call_raw(&app, "POST", &topups, Some(&care), Some(topup("t2", &acct, "5")), &[]).await;
        assert_eq!((waiting.status, &waiting.body["status"]), (StatusCode::CREATED, &json!("created")));
        model.engine.set_down(false);
        model.worker.run_once(jiff::Timestamp::now()).await.expect("pass");
        let later = call(&app, "GET", &format!("{topups}/t2"), Some(&care), None, &[]).await;
        assert_eq!((&later.body["status"], &later.body["balanceAfter"]["amount"]), (&json!("completed"), &json!(15)));

        // The lifecycle through PATCH: suspend, a close refused while money remains, a
        // close that settles with a reason, then nothing more.
        let path = format!("{ACCOUNTS}/{acct}");
        let suspended = call(&app, "PATCH", &path, Some(&care), Some(json!({"state": "Suspended"})), &[("if-match", "W/\"1\"")]).await;
        assert_eq!((suspended.status, &suspended.body["state"]), (StatusCode::OK, &json!("Suspended")));
        let stale = call(&app, "PATCH", &path, Some(&care), Some(json!({"state": "Active"})), &[("if-match", "W/\"1\"")]).await;
        assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
        let v2 = [("if-match", "W/\"2\"")];
        let refused = call(&app, "PATCH", &path, Some(&care), Some(json!({"state": "Closed"})), &v2).await;
        assert_eq!((refused.status, refused.body["reason"].as_str()), (StatusCode::CONFLICT, Some("state")));
        assert!(refused.body["message"].as_str().expect("message").contains("15"), "{}", refused.body);
        let bad = call(&app, "PATCH", &path, Some(&care), Some(json!({"state": "Gone"})), &v2).await;
        assert_eq!((bad.status, bad.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("state")));
        let close = json!({"state": "Closed", "settleReason": "refunded in cash"});
        let closed = call(&app, "PATCH", &path, Some(&care), Some(close), &v2).await;
        assert_eq!((closed.status, &closed.body["state"]), (StatusCode::OK, &json!("Closed")), "{}", closed.body);
        assert_eq!(closed.body.get("settleReason"), None, "the reason is audited, not kept in the document");
        // The worker applies an account's rows one at a time, in order: suspend, close.
        while model.worker.run_once(jiff::Timestamp::now()).await.expect("pass").claimed > 0 {}
        let after = call_raw(&app, "POST", &topups, Some(&care), Some(topup("t3", &acct, "1")), &[]).await;
        assert_eq!((after.status, after.body["reason"].as_str()), (StatusCode::CONFLICT, Some("partyAccount.id")));
        let reopen = call(&app, "PATCH", &path, Some(&care), Some(json!({"state": "Active"})), &[("if-match", "W/\"3\"")]).await;
        assert_eq!((reopen.status, reopen.body["reason"].as_str()), (StatusCode::CONFLICT, Some("state")));
        let view = call(&app, "GET", &balance, Some(&care), None, &[]).await;
        assert_eq!(view.body["totalBalance"]["amount"], json!(0), "the engine settled what was left");
        let trail = call(&app, "GET", &format!("/tmf-api/audit/v1/auditRecord?entityType=BillingAccount&entityId={acct}"), Some(&admin), None, &[]).await;
        let last = trail.body.as_array().and_then(|entries| entries.last()).expect("an entry").clone();
        assert_eq!(last["after"]["settleReason"], json!("refunded in cash"));
    }
}

async fn made_engine_id(store: &Store, account: &str) -> u64 {
    store.billing_account(account).await.expect("read").expect("present").value.engine_account_id
}

//! Customers (TMF629), billing accounts (TMF666) and prepaid balances (TMF654) through the
//! API in process, on SQLite and PostgreSQL: 401 and 403 by role, a partner confined to its
//! hierarchy across two of them, finance changing money terms only, 400 naming the field,
//! 404, 409, 412, 428, the export, and anonymisation that keeps the account and its engine
//! outbox row; top-ups and adjustments idempotent by request id against the model engine
//! of `tollgate_customers::testing`, the balance view, 503 while the engine is down, and
//! the account lifecycle.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tollgate_api::{router, ApiConfig};
use tollgate_customers::testing::model_engine;
use tollgate_store::{store_test, NewToken, Role, Store};
use tower::ServiceExt;

const CUSTOMERS: &str = "/tmf-api/customerManagement/v4/customer";
const ACCOUNTS: &str = "/tmf-api/accountManagement/v4/billingAccount";

/// A response: status, headers, JSON body (Null when empty).
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn token(store: &Store, role: Role, scope: Option<&str>) -> String {
    let mut tx = store.begin().await.expect("begin");
    let (secret, _) = tx
        .create_token(
            NewToken { name: role.as_str(), role, scope_account_id: scope, expires_at: None },
            jiff::Timestamp::now(),
        )
        .await
        .expect("create a token");
    tx.commit().await.expect("commit");
    secret.expose().to_owned()
}

/// One request: `extra` headers beside the bearer token; a JSON body as application/json
/// for POST and application/merge-patch+json for PATCH unless `extra` says otherwise.
async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> Answer {
    call_raw(app, method, path, token, body.map(|body| body.to_string()), extra).await
}

/// [`call`] with the body's text as given (a number written as `1e3`, say).
async fn call_raw(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if !extra.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) && body.is_some() {
        let media = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
        request = request.header(header::CONTENT_TYPE, media);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let body = body.map(Body::from).unwrap_or_else(Body::empty);
    let response = app.clone().oneshot(request.body(body).expect("a request")).await.expect("an answer");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("the body").to_bytes();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON body") };
    if !status.is_success() {
        assert_eq!(body["@type"], "Error", "an error has a TMF error body: {body}");
        assert_eq!(body["status"], status.as_u16().to_string());
    }
    Answer { status, headers, body }
}

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

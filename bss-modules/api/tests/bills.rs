//! TMF678 customer bills over the router: a bill run's invoices listed and read as
//! `CustomerBill` (a draft `onHold`, a final one `new` with its number), their lines
//! as `appliedCustomerBillingRate`; finance, admin and read_only read every bill, a
//! partner its own hierarchy's only (another's is 404), care and the product manager none;
//! filters are checked by name; nothing can be written.

mod common;
#[path = "common/hierarchies.rs"]
mod hierarchies;

use std::str::FromStr;

use axum::http::StatusCode;
use common::{call, call_raw, token};
use hierarchies::hierarchies;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_api::{router, ApiConfig, BILL_BASE_PATH};
use tollgate_store::{store_test, InvoiceKind, InvoiceLineRow, InvoiceRow, InvoiceState, Role, Store, SubscriptionRow};

fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_790_000_000 + seconds).expect("instant")
}

fn money(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

/// Two hierarchies (`root-a` with child `child-a`, `root-b`), each invoiced; `root-a`'s
/// invoice is final.
async fn bills(store: &Store) {
    hierarchies(store, "postpaid", at(0)).await;
    let mut tx = store.begin().await.expect("begin");
    tx.open_bill_run("2026-11", "2026-11", "all", at(1)).await.expect("run");
    for root in ["root-a", "root-b"] {
        let invoice = InvoiceRow {
            id: format!("inv-{root}"),
            kind: InvoiceKind::Invoice,
            statement: false,
            bill_run_id: Some("2026-11".into()),
            billing_account_id: root.into(),
            root_id: root.into(),
            cycle: "2026-11".into(),
            period_from: "2026-11-01".into(),
            period_until: "2026-12-01".into(),
            issuer: "acme".into(),
            series: "INV".into(),
            state: InvoiceState::Draft,
            number: None,
            corrects_invoice_id: None,
            currency: "EUR".into(),
            net: money("10.00"),
            tax: money("2.00"),
            gross: money("12.00"),
            content_hash: format!("sha256:{root}"),
            doc: json!({"taxes": [{"currency": "EUR", "code": "VAT", "rate": "0.20", "net": "10.00", "tax": "2.00"}]}),
            created_at: at(2),
            finalised_at: None,
        };
        let line = |position: i64, account: &str| InvoiceLineRow {
            position,
            account_id: account.into(),
            kind: "recurring".into(),
            charge_type: "recurring".into(),
            product_id: Some("line-1".into()),
            reference: None,
            description: "Plan M".into(),
            period_from: Some("2026-11-01".into()),
            period_until: Some("2026-12-01".into()),
            currency: "EUR".into(),
            quantity: None,
            unit: None,
            amount: money("5.00"),
            net: money("5.00"),
            tax: money("1.00"),
            gross: money("6.00"),
            tax_code: Some("VAT".into()),
            tax_rate: Some(money("0.20")),
        };
        tx.insert_draft_invoice(&invoice, &[line(0, root), line(1, &format!("child-{}", &root[5..]))], &[], at(2))
            .await
            .expect("draft");
    }
    tx.finalise_invoice("inv-root-a", at(3)).await.expect("finalise");
    tx.commit().await.expect("commit");
}

fn ids(body: &Value) -> Vec<&str> {
    body.as_array().expect("a list").iter().map(|item| item["id"].as_str().expect("id")).collect()
}

store_test! {
    async fn bills_are_read_by_role_and_a_partner_sees_its_hierarchy_only(store) {
        bills(&store).await;
        let app = router((*store).clone(), &ApiConfig::default());
        let bill_path = format!("{BILL_BASE_PATH}/customerBill");
        for role in [Role::Admin, Role::Finance, Role::ReadOnly] {
            let token = token(&store, role, None).await;
            let list = call(&app, "GET", &bill_path, Some(&token), None, &[]).await;
            assert_eq!(list.status, StatusCode::OK, "{role:?}");
            assert_eq!(ids(&list.body), ["inv-root-a", "inv-root-b"]);
            assert_eq!(list.header("x-total-count"), "2");
        }
        for role in [Role::Care, Role::ProductManager] {
            let token = token(&store, role, None).await;
            assert_eq!(call(&app, "GET", &bill_path, Some(&token), None, &[]).await.status, StatusCode::FORBIDDEN, "{role:?}");
        }
        let finance = token(&store, Role::Finance, None).await;
        let bill = call(&app, "GET", &format!("{bill_path}/inv-root-a"), Some(&finance), None, &[]).await;
        assert_eq!(bill.status, StatusCode::OK);
        assert_eq!((bill.body["state"].as_str(), bill.body["billNo"].as_str()), (Some("new"), Some("acme/INV/1")));
        assert_eq!(bill.body["amountDue"], json!({"unit": "EUR", "value": 12}));
        assert_eq!(bill.body["taxItem"][0]["taxAmount"], json!({"unit": "EUR", "value": 2}));
        let draft = call(&app, "GET", &format!("{bill_path}/inv-root-b"), Some(&finance), None, &[]).await;
        // Regression: a draft was `inProgress`, not a TMF678 stateValue.
        assert_eq!((draft.body["state"].as_str(), draft.body.get("billNo")), (Some("onHold"), None), "a draft has no number");

        // No renderer configured: the PDF is not acceptable; JSON by preference still is.
        let pdf = call(&app, "GET", &format!("{bill_path}/inv-root-a"), Some(&finance), None, &[("accept", "application/pdf")]).await;
        assert_eq!((pdf.status, pdf.body["reason"].as_str()), (StatusCode::NOT_ACCEPTABLE, Some("Accept")));
        let json_first = call(&app, "GET", &format!("{bill_path}/inv-root-a"), Some(&finance), None, &[("accept", "application/pdf;q=0.5, application/json")]).await;
        assert_eq!(json_first.status, StatusCode::OK);

        let filtered = call(&app, "GET", &format!("{bill_path}?state=new"), Some(&finance), None, &[]).await;
        assert_eq!(ids(&filtered.body), ["inv-root-a"]);
        let by_account = call(&app, "GET", &format!("{bill_path}?billingAccount.id=root-b"), Some(&finance), None, &[]).await;
        assert_eq!(ids(&by_account.body), ["inv-root-b"]);
        for bad in ["?state=paid", "?amountDue=1"] {
            let answer = call(&app, "GET", &format!("{bill_path}{bad}"), Some(&finance), None, &[]).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        }

        let rates_path = format!("{BILL_BASE_PATH}/appliedCustomerBillingRate");
        let rates = call(&app, "GET", &format!("{rates_path}?bill.id=inv-root-a"), Some(&finance), None, &[]).await;
        assert_eq!(ids(&rates.body), ["inv-root-a-0", "inv-root-a-1"]);
        assert_eq!((rates.body[1]["billingAccount"]["id"].as_str(), rates.body[1]["isBilled"].as_bool()), (Some("child-a"), Some(true)));
        assert_eq!(rates.body[0]["taxIncludedAmount"], json!({"unit": "EUR", "value": 6}));
        // Regression: a rate's href answered 404 (there was no route to one rate).
        let href = rates.body[1]["href"].as_str().expect("href");
        let one = call(&app, "GET", href, Some(&finance), None, &[]).await;
        assert_eq!((one.status, &one.body), (StatusCode::OK, &rates.body[1]));
        for missing in ["inv-root-a-9", "inv-root-a", "nope-x"] {
            let answer = call(&app, "GET", &format!("{rates_path}/{missing}"), Some(&finance), None, &[]).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{missing}");
        }
        assert_eq!(call(&app, "GET", &rates_path, Some(&finance), None, &[]).await.status, StatusCode::BAD_REQUEST, "bill.id is required");

        // A partner of root-a: its bill and rates, not root-b's.
        let partner = token(&store, Role::Partner, Some("root-a")).await;
        let list = call(&app, "GET", &bill_path, Some(&partner), None, &[]).await;
        assert_eq!(ids(&list.body), ["inv-root-a"]);
        assert_eq!(call(&app, "GET", &format!("{bill_path}/inv-root-b"), Some(&partner), None, &[]).await.status, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, "GET", &format!("{rates_path}?bill.id=inv-root-b"), Some(&partner), None, &[]).await.status, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, "GET", &format!("{rates_path}?bill.id=inv-root-a"), Some(&partner), None, &[]).await.status, StatusCode::OK);
        assert_eq!(call(&app, "GET", &format!("{rates_path}/inv-root-b-0"), Some(&partner), None, &[]).await.status, StatusCode::NOT_FOUND);

        // Nothing is written through this API.
        let admin = token(&store, Role::Admin, None).await;
        let post = call(&app, "POST", &bill_path, Some(&admin), Some(json!({})), &[]).await;
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(call(&app, "GET", &format!("{bill_path}/nope"), Some(&admin), None, &[]).await.status, StatusCode::NOT_FOUND);
    }
}

store_test! {
    async fn a_payment_pays_a_bill_once_per_reference_and_a_partner_pays_its_own_hierarchy_only(store) {
        bills(&store).await;
        let app = router((*store).clone(), &ApiConfig::default());
        let payments = "/tmf-api/paymentManagement/v4/payment";
        let finance = token(&store, Role::Finance, None).await;
        // Finance registers for payment events; care may not.
        let hub = "/tmf-api/paymentManagement/v4/hub";
        let listener = json!({"callback": "http://127.0.0.1:9/payments"});
        let care = token(&store, Role::Care, None).await;
        assert_eq!(call(&app, "POST", hub, Some(&care), Some(listener.clone()), &[]).await.status, StatusCode::FORBIDDEN);
        let registered = call(&app, "POST", hub, Some(&finance), Some(listener), &[]).await;
        assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
        let bill_hub = "/tmf-api/customerBillManagement/v4/hub";
        let reminders = json!({"callback": "http://127.0.0.1:9/reminders", "query": "eventType=CustomerBillDunningEvent"});
        assert_eq!(call(&app, "POST", bill_hub, Some(&finance), Some(reminders), &[]).await.status, StatusCode::CREATED);
        let body = json!({"account": {"id": "root-a"}, "totalAmount": {"unit": "EUR", "value": "5.00"},
            "correlatorId": "psp-1", "paymentMethod": {"@type": "card"}, "paymentDate": "2026-12-02T10:00:00Z"});
        let created = call(&app, "POST", payments, Some(&finance), Some(body.clone()), &[]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["paymentItem"][0]["item"]["id"], "inv-root-a");
        assert_eq!(created.body["paymentItem"][0]["amount"], json!({"unit": "EUR", "value": 5}));
        assert_eq!(created.body["unallocatedAmount"]["value"], 0);
        assert_eq!(created.body["paymentDate"], "2026-12-02T00:00:00Z");
        let id = created.body["id"].as_str().expect("id").to_owned();
        assert_eq!(store.hub_pending().await.expect("count"), 1, "a PaymentCreateEvent for the listener");

        // The same reference again: the payment recorded first, nothing paid twice.
        let again = call(&app, "POST", payments, Some(&finance), Some(body), &[]).await;
        assert_eq!((again.status, again.body["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
        let bill = call(&app, "GET", &format!("{BILL_BASE_PATH}/customerBill/inv-root-a"), Some(&finance), None, &[]).await;
        assert_eq!(bill.body["remainingAmount"], json!({"unit": "EUR", "value": 7}));
        assert!(bill.body["paymentDueDate"].as_str().is_some_and(|due| due.ends_with("T00:00:00Z")), "{}", bill.body);
        let draft = call(&app, "GET", &format!("{BILL_BASE_PATH}/customerBill/inv-root-b"), Some(&finance), None, &[]).await;
        assert_eq!(draft.body.get("paymentDueDate"), None, "a draft is not due");

        // Bad requests name the field.
        for (body, field) in [
            (json!({"totalAmount": {"unit": "EUR", "value": "1"}, "correlatorId": "x"}), "account"),
            (json!({"account": {"id": "root-a"}, "totalAmount": {"unit": "EUR", "value": "1"}}), "correlatorId"),
            (json!({"account": {"id": "root-a"}, "totalAmount": {"unit": "EUR", "value": "-1"}, "correlatorId": "x"}), "amount.value"),
            (json!({"account": {"id": "root-a"}, "totalAmount": {"unit": "USD", "value": "1"}, "correlatorId": "x"}), "amount.unit"),
            (json!({"account": {"id": "root-a"}, "totalAmount": {"unit": "EUR", "value": "one"}, "correlatorId": "x"}), "totalAmount.value"),
        ] {
            let refused = call(&app, "POST", payments, Some(&finance), Some(body), &[]).await;
            assert_eq!((refused.status, refused.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{}", refused.body);
        }

        // Care may not record payments; a partner of root-b neither sees nor pays root-a's.
        let body = json!({"account": {"id": "root-a"}, "totalAmount": {"unit": "EUR", "value": "1"}, "correlatorId": "c"});
        assert_eq!(call(&app, "POST", payments, Some(&care), Some(body.clone()), &[]).await.status, StatusCode::FORBIDDEN);
        let partner = token(&store, Role::Partner, Some("root-b")).await;
        assert_eq!(call(&app, "POST", payments, Some(&partner), Some(body), &[]).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(call(&app, "GET", &format!("{payments}/{id}"), Some(&partner), None, &[]).await.status, StatusCode::NOT_FOUND);
        let list = call(&app, "GET", payments, Some(&partner), None, &[]).await;
        assert_eq!((list.status, list.header("x-total-count")), (StatusCode::OK, "0"));
        let list = call(&app, "GET", &format!("{payments}?account.id=root-a"), Some(&finance), None, &[]).await;
        assert_eq!(ids(&list.body), [id.as_str()]);
    }
}

store_test! {
    async fn discounts_and_credits_are_given_by_finance_checked_as_the_bill_run_takes_them_and_audited(store) {
        bills(&store).await;
        let app = router((*store).clone(), &ApiConfig::default());
        let (finance, care, reader) = (
            token(&store, Role::Finance, None).await,
            token(&store, Role::Care, None).await,
            token(&store, Role::ReadOnly, None).await,
        );
        let discounts = "/tmf-api/billing/v1/discount";
        let credits = "/tmf-api/billing/v1/credit";
        let ten = json!({"id": "d1", "billingAccount": "root-a", "percent": 10, "validFrom": "2026-11-01"});
        assert_eq!(call(&app, "POST", discounts, Some(&care), Some(ten.clone()), &[]).await.status, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "POST", discounts, Some(&reader), Some(ten.clone()), &[]).await.status, StatusCode::FORBIDDEN);
        let line = SubscriptionRow {
            id: "line-b".into(),
            engine_subscription_id: 0,
            external_id: None,
            billing_account_id: "root-b".into(),
            offering_id: None,
            plan_id: "plan".into(),
            state: "active".into(),
            identities: vec!["msisdn:491700000001".into()],
        };
        let mut tx = store.begin().await.expect("begin");
        tx.insert_subscriptions(&[line], at(2)).await.expect("line");
        tx.commit().await.expect("commit");

        // Refused as the bill run would refuse them, naming the field.
        for (body, field) in [
            (json!({"billingAccount": "root-a", "percent": 150, "validFrom": "2026-11-01"}), "percent"),
            (json!({"billingAccount": "root-a", "percent": 10, "validFrom": "2026-11-01", "validUntil": "2026-10-01"}), "validUntil"),
            (json!({"billingAccount": "root-a", "amount": 0, "currency": "EUR", "validFrom": "2026-11-01"}), "amount"),
            (json!({"billingAccount": "root-a", "amount": "1.005", "currency": "EUR", "validFrom": "2026-11-01"}), "amount"),
            (json!({"billingAccount": "root-a", "amount": "9223372036854775807", "currency": "EUR", "validFrom": "2026-11-01"}), "amount"),
            (json!({"billingAccount": "root-a", "amount": 5, "currency": "USD", "validFrom": "2026-11-01"}), "currency"),
            (json!({"billingAccount": "root-a", "percent": 10, "validFrom": "November"}), "validFrom"),
            (json!({"billingAccount": "root-a", "percent": 10}), "validFrom"),
            (json!({"billingAccount": "nobody", "percent": 10, "validFrom": "2026-11-01"}), "billingAccount"),
            (json!({"billingAccount": "root-a", "amount": 5, "validFrom": "2026-11-01"}), "currency"),
            (json!({"billingAccount": "root-a", "percent": 10, "product": "p", "hierarchy": true, "validFrom": "2026-11-01"}), "hierarchy"),
            (json!({"billingAccount": "root-a", "percent": 10, "validFrom": "2026-11-01", "colour": "red"}), "colour"),
            (json!({"billingAccount": "child-a", "percent": 10, "hierarchy": true, "validFrom": "2026-11-01"}), "hierarchy"),
            (json!({"billingAccount": "root-a", "percent": 10, "product": "nothing", "validFrom": "2026-11-01"}), "product"),
            (json!({"billingAccount": "root-a", "percent": 10, "product": "line-b", "validFrom": "2026-11-01"}), "product"),
        ] {
            let answer = call(&app, "POST", discounts, Some(&finance), Some(body.clone()), &[]).await;
            assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {}", answer.body);
        }
        let created = call(&app, "POST", discounts, Some(&finance), Some(ten.clone()), &[]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!((created.body["scope"].as_str(), created.body["percent"].as_str()), (Some("account"), Some("10")));
        let again = call(&app, "POST", discounts, Some(&finance), Some(ten.clone()), &[]).await;
        assert_eq!((again.status, again.body["id"].as_str()), (StatusCode::OK, Some("d1")), "the same again: {}", again.body);
        let mut other = ten;
        other["percent"] = json!(20);
        assert_eq!(call(&app, "POST", discounts, Some(&finance), Some(other), &[]).await.status, StatusCode::CONFLICT, "an id once");
        let fixed = json!({"billingAccount": "root-a", "amount": "2.50", "currency": "EUR", "hierarchy": true,
            "validFrom": "2026-11-01", "validUntil": "2027-01-01"});
        let fixed = call(&app, "POST", discounts, Some(&finance), Some(fixed), &[]).await;
        assert_eq!((fixed.status, fixed.body["scope"].as_str()), (StatusCode::CREATED, Some("hierarchy")), "{}", fixed.body);

        let line_b = json!({"billingAccount": "root-b", "percent": 50, "product": "line-b", "validFrom": "2026-11-01"});
        let line_b = call(&app, "POST", discounts, Some(&finance), Some(line_b), &[]).await;
        assert_eq!((line_b.status, line_b.body["scope"].as_str()), (StatusCode::CREATED, Some("product")), "{}", line_b.body);

        // Credits: above zero in the currency's minor units.
        for (body, field) in [
            (json!({"billingAccount": "root-a", "amount": "0", "currency": "EUR"}), "amount"),
            (json!({"billingAccount": "root-a", "amount": "1.005", "currency": "EUR"}), "amount"),
            (json!({"billingAccount": "root-a", "amount": "10", "currency": "XXY"}), "currency"),
            (json!({"billingAccount": "root-a", "amount": "10", "currency": "USD"}), "currency"),
            (json!({"billingAccount": "root-a", "amount": "18446744073709551615", "currency": "EUR"}), "amount"),
            // Regression: 10^13 was taken, and then every bill run of the cycle failed on it.
            (json!({"billingAccount": "root-a", "amount": "10000000000000", "currency": "EUR"}), "amount"),
            (json!({"billingAccount": "root-a", "amount": "5.0000000000000000000000000000000000000001", "currency": "EUR"}), "amount"),
        ] {
            let answer = call(&app, "POST", credits, Some(&finance), Some(body.clone()), &[]).await;
            assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {}", answer.body);
        }
        // A JSON number a float would not carry exactly is refused naming its field, not
        // rounded (it was stored as 18446744073709552000, or 5.0).
        for number in ["18446744073709551616", "5.0000000000000000000000000000000000000001", "1e-400"] {
            let body = format!(r#"{{"billingAccount": "root-a", "amount": {number}, "currency": "EUR"}}"#);
            let answer = call_raw(&app, "POST", credits, Some(&finance), Some(body), &[]).await;
            assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("amount")), "{number}: {}", answer.body);
        }
        let credit = json!({"id": "c1", "billingAccount": "root-b", "amount": "20", "currency": "EUR"});
        let again = credit.clone();
        let credit = call(&app, "POST", credits, Some(&finance), Some(credit), &[]).await;
        assert_eq!((credit.status, credit.body["used"].as_str()), (StatusCode::CREATED, Some("0")), "{}", credit.body);
        // Regression: echoed (and kept) as given, "20"; it has the currency's decimals.
        assert_eq!(credit.body["amount"], "20.00", "{}", credit.body);
        let again = call(&app, "POST", credits, Some(&finance), Some(again), &[]).await;
        assert_eq!((again.status, again.body["id"].as_str()), (StatusCode::OK, Some("c1")), "the same again: {}", again.body);

        // A discount's end moved and a credit's amount changed, on the version read.
        let d1 = format!("{discounts}/d1");
        let read = call(&app, "GET", &d1, Some(&reader), None, &[]).await;
        assert_eq!((read.status, read.header("etag")), (StatusCode::OK, "W/\"1\""), "{}", read.body);
        let end = json!({"validUntil": "2026-12-01"});
        let patch = |token: String, body: Value, etag: &'static str| {
            let app = app.clone();
            let d1 = d1.clone();
            async move { call(&app, "PATCH", &d1, Some(&token), Some(body), &[("If-Match", etag)]).await }
        };
        assert_eq!(patch(care.clone(), end.clone(), "W/\"1\"").await.status, StatusCode::FORBIDDEN);
        let missing = call(&app, "PATCH", &d1, Some(&finance), Some(end.clone()), &[]).await;
        assert_eq!(missing.status, StatusCode::PRECONDITION_REQUIRED);
        for (body, field) in [
            (json!({"percent": 20}), "percent"),
            (json!({"validUntil": "2026-10-01"}), "validUntil"),
            (json!({"validUntil": "soon"}), "validUntil"),
            (json!({}), "validUntil"),
        ] {
            let refused = patch(finance.clone(), body.clone(), "W/\"1\"").await;
            assert_eq!((refused.status, refused.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {}", refused.body);
        }
        let ended = patch(finance.clone(), end.clone(), "W/\"1\"").await;
        assert_eq!((ended.status, ended.header("etag")), (StatusCode::OK, "W/\"2\""), "{}", ended.body);
        assert_eq!(ended.body["validUntil"], "2026-12-01");
        assert_eq!(patch(finance.clone(), json!({"validUntil": null}), "W/\"1\"").await.status, StatusCode::PRECONDITION_FAILED);
        let open = patch(finance.clone(), json!({"validUntil": null}), "W/\"2\"").await;
        assert_eq!((open.status, &open.body["validUntil"]), (StatusCode::OK, &Value::Null), "{}", open.body);

        let mut tx = store.begin().await.expect("begin");
        tx.use_credit("c1", money("7.50")).await.expect("an invoice takes 7.50");
        tx.commit().await.expect("commit");
        let c1 = format!("{credits}/c1");
        let read = call(&app, "GET", &c1, Some(&reader), None, &[]).await;
        assert_eq!((read.header("etag"), read.body["used"].as_str()), ("W/\"2\"", Some("7.50")), "a use moves the version");
        for (amount, field) in [("7.49", "amount"), ("-1", "amount"), ("8.001", "amount"), ("50000000000000", "amount")] {
            let body = json!({"amount": amount});
            let refused = call(&app, "PATCH", &c1, Some(&finance), Some(body), &[("If-Match", "W/\"2\"")]).await;
            assert_eq!((refused.status, refused.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{amount}: {}", refused.body);
        }
        let body = json!({"amount": "7.50"});
        let rest_back = call(&app, "PATCH", &c1, Some(&finance), Some(body), &[("If-Match", "W/\"2\"")]).await;
        assert_eq!((rest_back.status, rest_back.body["amount"].as_str()), (StatusCode::OK, Some("7.50")), "{}", rest_back.body);
        assert_eq!(call(&app, "GET", &format!("{credits}/none"), Some(&reader), None, &[]).await.status, StatusCode::NOT_FOUND);

        // Listed per account; read_only reads; the audit trail has each.
        let listed = call(&app, "GET", &format!("{discounts}?billingAccount.id=root-a"), Some(&reader), None, &[]).await;
        assert_eq!((listed.status, listed.header("x-total-count")), (StatusCode::OK, "2"), "{}", listed.body);
        let listed = call(&app, "GET", &format!("{credits}?billingAccount.id=root-b"), Some(&reader), None, &[]).await;
        assert_eq!(listed.body[0]["id"], "c1");
        assert_eq!(call(&app, "GET", credits, Some(&reader), None, &[]).await.body["reason"], "billingAccount.id");
        let entries = store.audit_entries(None, 0, 100).await.expect("audit");
        let kinds: Vec<&str> = entries.iter().map(|entry| entry.entity_type.as_str()).filter(|kind| matches!(*kind, "Discount" | "Credit")).collect();
        assert_eq!(kinds.len(), 7, "4 given, 3 changed: {kinds:?}");
    }
}

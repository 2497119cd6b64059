//! Thresholds over the router (`/tmf-api/thresholdManagement/v1`): set by care, admin and
//! a partner within its hierarchy, checked as `tollgate threshold set` checks them (each
//! refusal naming its field), the same kind and level again changing the delivery only,
//! read by every role but the product manager, removed, audited; the crossings notified
//! listed latest first.

mod common;
#[path = "common/hierarchies.rs"]
mod hierarchies;

use axum::http::StatusCode;
use common::{call, token};
use hierarchies::hierarchies;
use serde_json::{json, Value};
use tollgate_api::{router, ApiConfig};
use tollgate_store::{store_test, CrossingRow, Role, Store, SubscriptionRow};

const BASE: &str = "/tmf-api/thresholdManagement/v1";

fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_790_000_000 + seconds).expect("instant")
}

/// Two hierarchies: `root-a` (postpaid) with its prepaid child `child-a`, which has the
/// line `line-a`; `root-b` (postpaid).
async fn accounts(store: &Store) {
    hierarchies(store, "prepaid", at(0)).await;
    let mut tx = store.begin().await.expect("begin");
    let line = SubscriptionRow {
        id: "line-a".into(),
        engine_subscription_id: 0,
        external_id: None,
        billing_account_id: "child-a".into(),
        offering_id: None,
        plan_id: "plan".into(),
        state: "active".into(),
        identities: vec!["msisdn:491700000002".into()],
    };
    tx.insert_subscriptions(&[line], at(0)).await.expect("line");
    tx.commit().await.expect("commit");
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array().expect("a list").iter().filter_map(|item| item["id"].as_str()).collect()
}

store_test! {
    async fn thresholds_are_set_checked_read_and_removed_by_role_and_hierarchy(store) {
        accounts(&store).await;
        let app = router((*store).clone(), &ApiConfig::default());
        let care = token(&store, Role::Care, None).await;
        let path = format!("{BASE}/threshold");

        // Set: 201 with its Location; the same kind and level again changes the delivery: 200.
        let five = json!({"billingAccount": {"id": "child-a"}, "kind": "balance_below", "amount": "5.00"});
        let created = call(&app, "POST", &path, Some(&care), Some(five.clone()), &[]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["id"].as_str().expect("id").to_owned();
        assert_eq!(created.header("location"), format!("{path}/{id}"));
        assert_eq!((created.body["amount"].as_str(), created.body["language"].as_str()), (Some("5"), Some("en")));
        assert_eq!((created.body["webhook"].as_bool(), created.body["sms"].as_bool()), (Some(true), Some(false)));
        assert_eq!(created.body["@type"], "Threshold");
        let mut german = five.clone();
        german["language"] = json!("de");
        german["amount"] = json!(5);
        let updated = call(&app, "POST", &path, Some(&care), Some(german), &[]).await;
        assert_eq!((updated.status, updated.body["id"].as_str()), (StatusCode::OK, Some(id.as_str())), "{}", updated.body);
        assert_eq!(updated.body["language"], "de");
        let bundle = json!({"billingAccount": {"id": "child-a"}, "kind": "bundle_expiry", "hours": 48,
            "subscription": {"id": "line-a"}, "webhook": false});
        let bundle = call(&app, "POST", &path, Some(&care), Some(bundle), &[]).await;
        assert_eq!((bundle.status, bundle.body["hours"].as_i64()), (StatusCode::CREATED, Some(48)), "{}", bundle.body);
        assert_eq!(bundle.body["subscription"]["id"], "line-a");

        // Refused as the CLI refuses them, naming the field.
        let on = |account: &str, rest: Value| {
            let mut body = json!({"billingAccount": {"id": account}});
            body.as_object_mut().expect("object").extend(rest.as_object().expect("object").clone());
            body
        };
        for (body, field) in [
            (json!({"kind": "balance_below", "amount": "5"}), "billingAccount"),
            (json!({"billingAccount": "child-a", "kind": "balance_below", "amount": "5"}), "billingAccount"),
            (on("nobody", json!({"kind": "balance_below", "amount": "5"})), "billingAccount"),
            (on("child-a", json!({"amount": "5"})), "kind"),
            (on("child-a", json!({"kind": "balance_above", "amount": "5"})), "kind"),
            (on("child-a", json!({"kind": "balance_below"})), "amount"),
            (on("child-a", json!({"kind": "balance_below", "amount": "five"})), "amount"),
            (on("child-a", json!({"kind": "balance_below", "amount": "5", "percent": 80})), "percent"),
            (on("child-a", json!({"kind": "bundle_used", "percent": 150})), "percent"),
            (on("child-a", json!({"kind": "bundle_used", "percent": "80"})), "percent"),
            (on("child-a", json!({"kind": "bundle_expiry", "hours": 0})), "hours"),
            (on("child-a", json!({"kind": "renewal_refused", "hours": 3})), "hours"),
            (on("child-a", json!({"kind": "balance_below", "amount": "5", "subscription": {"id": "line-a"}})), "subscription"),
            (on("child-a", json!({"kind": "bundle_used", "percent": 80, "subscription": {"id": "line-b"}})), "subscription"),
            (on("child-a", json!({"kind": "balance_below", "amount": "5", "language": "fr"})), "language"),
            (on("child-a", json!({"kind": "balance_below", "amount": "5", "sms": "yes"})), "sms"),
            (on("child-a", json!({"kind": "spending_cap", "amount": "50"})), "kind"),
            (on("child-a", json!({"kind": "balance_below", "amount": "-5"})), "amount"),
            (on("root-a", json!({"kind": "spending_cap", "amount": "99999999999999999999"})), "amount"),
            (on("root-a", json!({"kind": "balance_below", "amount": "1.0000000000000000000000000000001"})), "amount"),
            (on("child-a", json!({"kind": "balance_below", "amount": "5", "tripped": true})), "tripped"),
        ] {
            let refused = call(&app, "POST", &path, Some(&care), Some(body.clone()), &[]).await;
            assert_eq!((refused.status, refused.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {}", refused.body);
        }

        // Listed per account; every role but the product manager reads, care sets.
        let listed = call(&app, "GET", &format!("{path}?billingAccount.id=child-a"), Some(&care), None, &[]).await;
        assert_eq!((listed.status, listed.header("x-total-count")), (StatusCode::OK, "2"), "{}", listed.body);
        assert_eq!(call(&app, "GET", &path, Some(&care), None, &[]).await.body["reason"], "billingAccount.id");
        let finance = token(&store, Role::Finance, None).await;
        let one = call(&app, "GET", &format!("{path}/{id}?fields=kind"), Some(&finance), None, &[]).await;
        assert_eq!((one.status, one.body["kind"].as_str(), one.body.get("amount")), (StatusCode::OK, Some("balance_below"), None));
        let manager = token(&store, Role::ProductManager, None).await;
        assert_eq!(call(&app, "GET", &format!("{path}/{id}"), Some(&manager), None, &[]).await.status, StatusCode::FORBIDDEN);
        let reader = token(&store, Role::ReadOnly, None).await;
        assert_eq!(call(&app, "POST", &path, Some(&reader), Some(five.clone()), &[]).await.status, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "DELETE", &format!("{path}/{id}"), Some(&finance), None, &[]).await.status, StatusCode::FORBIDDEN);

        // A partner: its hierarchy's accounts only; another's threshold is not found.
        let partner_b = token(&store, Role::Partner, Some("root-b")).await;
        assert_eq!(call(&app, "POST", &path, Some(&partner_b), Some(five.clone()), &[]).await.status, StatusCode::FORBIDDEN);
        let others = format!("{path}?billingAccount.id=child-a");
        assert_eq!(call(&app, "GET", &others, Some(&partner_b), None, &[]).await.status, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "GET", &format!("{path}/{id}"), Some(&partner_b), None, &[]).await.status, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, "DELETE", &format!("{path}/{id}"), Some(&partner_b), None, &[]).await.status, StatusCode::NOT_FOUND);
        // An account that does not exist looks to it like another hierarchy's.
        let nobody = json!({"billingAccount": {"id": "nobody"}, "kind": "balance_below", "amount": "5"});
        assert_eq!(call(&app, "POST", &path, Some(&partner_b), Some(nobody), &[]).await.status, StatusCode::FORBIDDEN);
        let unknown = format!("{path}?billingAccount.id=nobody");
        assert_eq!(call(&app, "GET", &unknown, Some(&partner_b), None, &[]).await.status, StatusCode::FORBIDDEN);
        let cap = json!({"billingAccount": {"id": "root-b"}, "kind": "spending_cap", "amount": "50"});
        let cap = call(&app, "POST", &path, Some(&partner_b), Some(cap), &[]).await;
        assert_eq!(cap.status, StatusCode::CREATED, "a corporate admin caps its own lines: {}", cap.body);
        let partner_a = token(&store, Role::Partner, Some("root-a")).await;
        let seen = call(&app, "GET", &others, Some(&partner_a), None, &[]).await;
        assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);

        // The crossings notified, latest first.
        let mut tx = store.begin().await.expect("begin");
        for (key, second) in [("episode-1", 10), ("episode-2", 20)] {
            let crossing = CrossingRow {
                threshold_id: id.clone(),
                crossing_key: key.into(),
                billing_account_id: "child-a".into(),
                kind: "balance_below".into(),
                message: format!("below 5 ({key})"),
                event_id: None,
                crossed_at: at(second),
            };
            assert!(tx.insert_crossing(&crossing).await.expect("crossing"));
        }
        tx.commit().await.expect("commit");
        let crossings = format!("{BASE}/crossing?billingAccount.id=child-a&limit=1");
        let page = call(&app, "GET", &crossings, Some(&reader), None, &[]).await;
        assert_eq!((page.status, page.header("x-total-count"), page.header("x-result-count")), (StatusCode::OK, "2", "1"));
        assert_eq!((page.body[0]["crossingKey"].as_str(), page.body[0]["threshold"]["id"].as_str()), (Some("episode-2"), Some(id.as_str())));
        assert_eq!(call(&app, "GET", &crossings, Some(&partner_b), None, &[]).await.status, StatusCode::FORBIDDEN);

        // Removed: 204, then gone; its crossings stay; the audit trail has each change.
        assert_eq!(call(&app, "DELETE", &format!("{path}/{id}"), Some(&care), None, &[]).await.status, StatusCode::NO_CONTENT);
        assert_eq!(call(&app, "GET", &format!("{path}/{id}"), Some(&care), None, &[]).await.status, StatusCode::NOT_FOUND);
        let listed = call(&app, "GET", &format!("{path}?billingAccount.id=child-a"), Some(&care), None, &[]).await;
        assert_eq!(ids(&listed.body), [bundle.body["id"].as_str().expect("id")]);
        assert_eq!(call(&app, "GET", &crossings, Some(&care), None, &[]).await.header("x-total-count"), "2");
        let entries = store.audit_entries(None, 0, 100).await.expect("audit");
        let actions: Vec<&str> = entries.iter().filter(|entry| entry.entity_id == id).map(|entry| entry.action.as_str()).collect();
        assert_eq!(actions.len(), 3, "create, update, delete: {actions:?}");
        assert!(actions.contains(&"threshold.delete"), "{actions:?}");
    }
}

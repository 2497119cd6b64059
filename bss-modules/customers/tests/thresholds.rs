//! Thresholds on both databases: set (again: the same threshold updated, not a second),
//! listed, deleted, audited; evaluated against engine views, each crossing recorded once
//! with one hub event, whatever how often the same view is evaluated (a restart re-reads
//! the ledger); a balance threshold re-armed by a top-up fires again; a bundle threshold
//! fires once per bucket period; a spending cap (postpaid only) fires once per episode
//! and re-arms after the bill release; a bundle expiry warns once per bucket period; a
//! bundle threshold narrowed to a subscription of another account is refused.

use jiff::Timestamp;
use serde_json::json;
use tollgate_customers::{
    parse_threshold, AllowanceBucket, Customers, EngineAccount, Principal, Templates, Thresholds, ACCOUNT_BASE_PATH,
    THRESHOLD_EVENT,
};
use tollgate_customers::{sms_key, CustomersError, ThresholdSpec, SMS_OUTBOX_KIND};
use tollgate_store::{store_test, DeliveryState, EventFilter, HubSecret, NewListener, Store, SubscriptionRow};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + seconds).expect("a valid instant")
}

/// A prepaid account of Ada's in EUR: its id.
async fn ada(store: &Store) -> String {
    account_of(store, "prepaid").await
}

/// An account of `account_type` of Ada's in EUR: its id.
async fn account_of(store: &Store, account_type: &str) -> String {
    let customers = Customers::new(store.clone());
    let admin = Principal::admin("test");
    let person = json!({"name": "Ada", "engagedParty": {"id": "p-1", "@referredType": "Individual", "name": "Ada"}});
    let customer = customers.create_customer(&admin, person, at(0)).await.expect("customer");
    let account = json!({
        "name": "Ada's phone", "accountType": account_type, "creditLimit": {"unit": "EUR", "value": "0"},
        "relatedParty": [{"id": customer.value["id"], "@referredType": "Customer"}],
    });
    let created = customers.create_account(&admin, account, at(0)).await.expect("account");
    created.value["id"].as_str().expect("id").to_owned()
}

async fn listen(store: &Store) {
    let secret = HubSecret::generate().expect("secret");
    let filter = EventFilter { event_types: vec![THRESHOLD_EVENT.to_owned()], fields: vec![] };
    let mut tx = store.begin().await.expect("begin");
    let new = NewListener {
        id: "l1",
        api: ACCOUNT_BASE_PATH,
        callback: "http://127.0.0.1:9/hook",
        query: None,
        filter: &filter,
        secret: &secret,
        created_by: "test",
    };
    tx.insert_listener(new, at(0)).await.expect("listener");
    tx.commit().await.expect("commit");
}

fn view(balance: &str, allowances: Vec<AllowanceBucket>) -> EngineAccount {
    tollgate_customers::testing::prepaid_view(balance, allowances)
}

fn data(remaining: u64, valid_from_s: i64) -> AllowanceBucket {
    AllowanceBucket {
        id: 1,
        subscription: 20,
        name: "data".into(),
        service: "data".into(),
        unit: "bytes".into(),
        granted: 1000,
        remaining,
        reserved: 0,
        valid_from_s,
        valid_until_s: valid_from_s + 86_400,
    }
}

/// The thresholds' events queued for the hub, as `kind:key`.
async fn events(store: &Store) -> Vec<String> {
    let page = store.deliveries(Some(DeliveryState::Pending), None, 0, 100).await.expect("deliveries");
    let mut found = Vec::new();
    for delivery in page.items {
        assert_eq!(delivery.event_type, THRESHOLD_EVENT);
        found.push(delivery.entity_id);
    }
    found
}

/// Evaluates `account`'s thresholds against `engine`; the crossings recorded, as keys.
async fn evaluate(
    thresholds: &Thresholds,
    store: &Store,
    account: &str,
    engine: &EngineAccount,
    at: Timestamp,
) -> Vec<String> {
    let rows = store.thresholds_of(account).await.expect("thresholds");
    let recorded = thresholds.evaluate(&rows, "EUR", engine, at).await.expect("evaluate");
    recorded.into_iter().map(|c| c.crossing_key).collect()
}

store_test! {
    async fn a_balance_crossing_is_notified_once_and_again_after_a_top_up(store) {
        let account = ada(&store).await;
        listen(&store).await;
        let thresholds = Thresholds::new(store.clone(), Templates::default());
        let spec = parse_threshold("balance_below", "5", None, "de", true, thresholds.templates()).expect("spec");
        let (first, created) = thresholds.set("test", &account, &spec, at(1)).await.expect("set");
        assert!(created);
        let (again, created) = thresholds.set("test", &account, &spec, at(2)).await.expect("set again");
        assert_eq!((again.id.as_str(), created), (first.id.as_str(), false), "the same threshold, not a second");

        assert!(evaluate(&thresholds, &store, &account, &view("7", vec![]), at(3)).await.is_empty());
        assert_eq!(evaluate(&thresholds, &store, &account, &view("4.50", vec![]), at(4)).await, ["episode-1"]);
        // The same state evaluated again (the next entry, a restart re-reading the ledger).
        assert!(evaluate(&thresholds, &store, &account, &view("4.50", vec![]), at(5)).await.is_empty());
        assert!(evaluate(&thresholds, &store, &account, &view("1", vec![]), at(6)).await.is_empty());
        assert_eq!(events(&store).await, std::slice::from_ref(&account), "one event for one crossing");
        let crossings = store.crossings_of(&account, 10).await.expect("crossings");
        assert_eq!(crossings.len(), 1);
        assert_eq!(crossings[0].message, "Ada's phone: Ihr Guthaben beträgt 4,5 EUR und liegt unter 5 EUR. Bitte laden Sie auf.");
        assert!(crossings[0].event_id.is_some());

        // A top-up re-arms it; the next fall is a new crossing.
        assert!(evaluate(&thresholds, &store, &account, &view("20", vec![]), at(7)).await.is_empty());
        assert_eq!(store.thresholds_of(&account).await.expect("list")[0].episode, 2);
        assert_eq!(evaluate(&thresholds, &store, &account, &view("3", vec![]), at(8)).await, ["episode-2"]);
        assert_eq!(events(&store).await.len(), 2);

        // Without a webhook: recorded, nothing published.
        let quiet = parse_threshold("balance_below", "2", None, "en", false, thresholds.templates()).expect("spec");
        thresholds.set("test", &account, &quiet, at(9)).await.expect("set");
        assert_eq!(evaluate(&thresholds, &store, &account, &view("1", vec![]), at(10)).await, ["episode-1"]);
        assert_eq!(events(&store).await.len(), 2);

        let entries = store.audit_entries(Some(("threshold", &first.id)), 0, 100).await.expect("audit");
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["threshold.create", "threshold.update", "threshold.cross", "threshold.rearm", "threshold.cross"]);
        thresholds.delete("test", &account, &first.id, at(11)).await.expect("delete");
        assert!(thresholds.delete("test", &account, &first.id, at(12)).await.is_err(), "gone");
        assert_eq!(thresholds.list(&account).await.expect("list").len(), 1);
    }
}

store_test! {
    async fn a_bundle_crossing_is_notified_once_per_bucket_period(store) {
        let account = ada(&store).await;
        listen(&store).await;
        let thresholds = Thresholds::new(store.clone(), Templates::default());
        for percent in ["80", "100"] {
            let spec = parse_threshold("bundle_used", percent, None, "en", true, thresholds.templates()).expect("spec");
            thresholds.set("test", &account, &spec, at(1)).await.expect("set");
        }
        let period = 1_767_225_600;
        assert!(evaluate(&thresholds, &store, &account, &view("0", vec![data(201, period)]), at(2)).await.is_empty());
        let key = format!("bucket-20-1-from-{period}");
        assert_eq!(evaluate(&thresholds, &store, &account, &view("0", vec![data(150, period)]), at(3)).await, std::slice::from_ref(&key));
        assert!(evaluate(&thresholds, &store, &account, &view("0", vec![data(100, period)]), at(4)).await.is_empty());
        assert_eq!(evaluate(&thresholds, &store, &account, &view("0", vec![data(0, period)]), at(5)).await, [key], "100 %");
        // The next period's bucket: both again.
        let next = period + 86_400;
        assert_eq!(evaluate(&thresholds, &store, &account, &view("0", vec![data(0, next)]), at(6)).await.len(), 2);
        assert_eq!(events(&store).await.len(), 4);
        let messages: Vec<String> = store.crossings_of(&account, 10).await.expect("crossings").into_iter().map(|c| c.message).collect();
        assert_eq!(messages[0], "Ada's phone: you have used 80 % of your data.");
    }
}

store_test! {
    async fn a_spending_cap_is_for_postpaid_accounts_and_fires_once_per_episode(store) {
        let prepaid = ada(&store).await;
        let postpaid = account_of(&store, "postpaid").await;
        listen(&store).await;
        let thresholds = Thresholds::new(store.clone(), Templates::default());
        let spec = parse_threshold("spending_cap", "50", None, "en", true, thresholds.templates()).expect("spec");
        match thresholds.set("test", &prepaid, &spec, at(1)).await {
            Err(CustomersError::Invalid { field, .. }) => assert_eq!(field, "kind"),
            other => panic!("a prepaid account's spending cap: {other:?}"),
        }
        thresholds.set("test", &postpaid, &spec, at(1)).await.expect("set");
        let postpaid_view = |balance: &str| EngineAccount {
            account_type: tollgate_customers::AccountType::Postpaid,
            ..view(balance, vec![])
        };
        assert!(evaluate(&thresholds, &store, &postpaid, &postpaid_view("-49.99"), at(2)).await.is_empty());
        assert_eq!(evaluate(&thresholds, &store, &postpaid, &postpaid_view("-50"), at(3)).await, ["episode-1"]);
        assert!(evaluate(&thresholds, &store, &postpaid, &postpaid_view("-70"), at(4)).await.is_empty());
        // The bill release brings the balance back: armed again, the next cycle's cap fires.
        assert!(evaluate(&thresholds, &store, &postpaid, &postpaid_view("0"), at(5)).await.is_empty());
        assert_eq!(evaluate(&thresholds, &store, &postpaid, &postpaid_view("-55"), at(6)).await, ["episode-2"]);
        assert_eq!(events(&store).await.len(), 2);
        let crossings = store.crossings_of(&postpaid, 10).await.expect("crossings");
        assert_eq!(crossings[0].message, "Ada's phone: your charges since your last bill are 50 EUR, reaching your cap of 50 EUR.");
        assert_eq!(crossings[0].kind, "spending_cap");
    }
}

store_test! {
    async fn a_bundle_expiry_warns_once_and_a_threshold_names_only_its_account_s_subscription(store) {
        let account = ada(&store).await;
        let other = ada(&store).await;
        listen(&store).await;
        let mut tx = store.begin().await.expect("begin");
        let line = |id: &str, account: &str, msisdn: &str| SubscriptionRow {
            id: id.into(),
            engine_subscription_id: 0,
            external_id: None,
            billing_account_id: account.into(),
            offering_id: None,
            plan_id: "basic".into(),
            state: "active".into(),
            identities: vec![format!("msisdn:{msisdn}")],
        };
        let engine_ids = tx
            .insert_subscriptions(&[line("s-mine", &account, "491700000001"), line("s-other", &other, "491700000002")], at(0))
            .await
            .expect("subscriptions");
        tx.commit().await.expect("commit");
        let thresholds = Thresholds::new(store.clone(), Templates::default());
        let foreign = parse_threshold("bundle_expiry", "48h", Some("s-other"), "en", true, thresholds.templates()).expect("spec");
        match thresholds.set("test", &account, &foreign, at(1)).await {
            Err(CustomersError::Invalid { field, .. }) => assert_eq!(field, "subscription"),
            other => panic!("another account's subscription: {other:?}"),
        }
        let spec = parse_threshold("bundle_expiry", "2d", Some("s-mine"), "en", true, thresholds.templates()).expect("spec");
        let spec = ThresholdSpec { sms: true, ..spec };
        let (row, _) = thresholds.set("test", &account, &spec, at(1)).await.expect("set");
        let listed = thresholds.list(&account).await.expect("list");
        assert_eq!(listed[0].engine_subscription_id, Some(engine_ids[0]), "{row:?}");
        // Buckets of the subscription and of another line of the account's, ending an hour
        // after `at(0)` (1,750,003,600 s: 2025-06-15 16:06:40 UTC).
        let period = 1_750_000_000 - 86_400 + 3600;
        let bucket = |subscription| AllowanceBucket { subscription, ..data(10, period) };
        let ending = view("0", vec![bucket(engine_ids[0]), bucket(engine_ids[0] + 1000)]);
        let key = format!("expiry-{}-1-from-{period}", engine_ids[0]);
        assert_eq!(evaluate(&thresholds, &store, &account, &ending, at(0)).await, std::slice::from_ref(&key));
        assert!(evaluate(&thresholds, &store, &account, &ending, at(60)).await.is_empty(), "once per bucket period");
        let crossings = store.crossings_of(&account, 10).await.expect("crossings");
        assert_eq!(crossings.len(), 1);
        assert_eq!(crossings[0].message, "Ada's phone: your data ends on 2025-06-15 16:06 UTC with 10 bytes left.");
        assert_eq!(events(&store).await.len(), 1);
        // Its message by SMS to the subscription's line only: one outbox row under the
        // crossing's key, written with it.
        let sms = store.outbox_id(&sms_key(&row.id, &key)).await.expect("read").expect("the SMS row");
        let entry = store.outbox_entry(sms).await.expect("read").expect("entry");
        assert_eq!(entry.kind, SMS_OUTBOX_KIND);
        assert_eq!(entry.payload, json!({"reference": sms_key(&row.id, &key), "to": ["491700000001"], "text": crossings[0].message}));
    }
}

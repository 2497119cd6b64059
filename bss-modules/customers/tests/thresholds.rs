//! Thresholds on both databases: set (again: the same threshold updated, not a second),
//! listed, deleted, audited; evaluated against engine views, each crossing recorded once
//! with one hub event, whatever how often the same view is evaluated (a restart re-reads
//! the ledger); a balance threshold re-armed by a top-up fires again; a bundle threshold
//! fires once per bucket period.

use jiff::Timestamp;
use serde_json::json;
use tollgate_customers::{
    parse_threshold, AllowanceBucket, Customers, EngineAccount, Principal, Templates, Thresholds, ACCOUNT_BASE_PATH,
    THRESHOLD_EVENT,
};
use tollgate_store::{store_test, DeliveryState, EventFilter, HubSecret, NewListener, Store};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + seconds).expect("a valid instant")
}

/// A prepaid account of Ada's in EUR: its id.
async fn ada(store: &Store) -> String {
    let customers = Customers::new(store.clone());
    let admin = Principal::admin("test");
    let person = json!({"name": "Ada", "engagedParty": {"id": "p-1", "@referredType": "Individual", "name": "Ada"}});
    let customer = customers.create_customer(&admin, person, at(0)).await.expect("customer");
    let account = json!({
        "name": "Ada's phone", "accountType": "prepaid", "creditLimit": {"unit": "EUR", "value": "0"},
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
        let spec = parse_threshold("balance_below", "5", "de", true, thresholds.templates()).expect("spec");
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
        assert_eq!(crossings[0].message, "Ada's phone: Ihr Guthaben beträgt 4.5 EUR und liegt unter 5 EUR. Bitte laden Sie auf.");
        assert!(crossings[0].event_id.is_some());

        // A top-up re-arms it; the next fall is a new crossing.
        assert!(evaluate(&thresholds, &store, &account, &view("20", vec![]), at(7)).await.is_empty());
        assert_eq!(store.thresholds_of(&account).await.expect("list")[0].episode, 2);
        assert_eq!(evaluate(&thresholds, &store, &account, &view("3", vec![]), at(8)).await, ["episode-2"]);
        assert_eq!(events(&store).await.len(), 2);

        // Without a webhook: recorded, nothing published.
        let quiet = parse_threshold("balance_below", "2", "en", false, thresholds.templates()).expect("spec");
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
            let spec = parse_threshold("bundle_used", percent, "en", true, thresholds.templates()).expect("spec");
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

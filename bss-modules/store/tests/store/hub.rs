//! The event hub's rows: an event is published with its transaction or not at all, fanned
//! out to the listeners whose filter matches, delivered one at a time per listener and
//! entity, dead-lettered and re-driven; an unregistered listener's deliveries go with it.

use std::time::Duration;

use serde_json::json;
use tollgate_store::{
    store_test, DeliveryState, EventFilter, HubSecret, NewEvent, NewListener, Store, StoreError, Tx, HUB_SECRET_PREFIX,
    MAX_LISTENERS_PER_API,
};

use crate::at;

const API: &str = "/tmf-api/customerManagement/v4";
const LEASE: Duration = Duration::from_secs(60);

async fn register(store: &Store, id: &str, filter: EventFilter) -> HubSecret {
    let secret = HubSecret::generate().expect("a secret");
    let mut tx = store.begin().await.expect("begin");
    let new = NewListener {
        id,
        api: API,
        callback: "http://127.0.0.1:9/hook",
        query: None,
        filter: &filter,
        secret: &secret,
        created_by: "test",
    };
    tx.insert_listener(new, at(0)).await.expect("register");
    tx.commit().await.expect("commit");
    secret
}

fn types(names: &[&str]) -> EventFilter {
    EventFilter { event_types: names.iter().map(|name| (*name).to_owned()).collect(), fields: vec![] }
}

async fn publish(tx: &mut Tx, event_type: &str, id: &str, status: &str) -> (String, usize) {
    let entity = json!({ "id": id, "status": status, "name": "Ada" });
    let event = NewEvent { api: API, event_type, entity_type: "customer", entity_id: id, entity: &entity };
    let published = tx.publish_event(event, at(1)).await.expect("publish");
    (published.event_id, published.deliveries)
}

async fn publish_committed(store: &Store, event_type: &str, id: &str, status: &str) -> (String, usize) {
    let mut tx = store.begin().await.expect("begin");
    let published = publish(&mut tx, event_type, id, status).await;
    tx.commit().await.expect("commit");
    published
}

#[test]
fn a_filter_matches_event_types_and_field_equalities() {
    let body = json!({ "eventType": "CustomerCreateEvent", "event": { "customer": { "status": "Active", "n": 3, "ok": true } } });
    let check = |types: &[&str], fields: &[(&str, &str)]| {
        let filter = EventFilter {
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            fields: fields.iter().map(|(p, v)| ((*p).to_owned(), (*v).to_owned())).collect(),
        };
        filter.matches("CustomerCreateEvent", &body)
    };
    assert!(check(&[], &[]));
    assert!(check(&["CustomerDeleteEvent", "CustomerCreateEvent"], &[]));
    assert!(!check(&["CustomerDeleteEvent"], &[]));
    assert!(check(&[], &[("event.customer.status", "Active")]));
    assert!(!check(&[], &[("event.customer.status", "Inactive")]));
    assert!(check(&[], &[("event.customer.n", "3"), ("event.customer.ok", "true")]));
    assert!(!check(&[], &[("event.customer.missing", "x")]));
    assert!(!check(&[], &[("event.customer", "x")]), "an object never equals a value");
}

#[test]
fn a_secret_is_random_prefixed_and_never_printed() {
    let one = HubSecret::generate().expect("a secret");
    let two = HubSecret::generate().expect("a secret");
    assert_ne!(one, two);
    assert!(one.expose().starts_with(HUB_SECRET_PREFIX));
    assert_eq!(one.expose().len(), HUB_SECRET_PREFIX.len() + 64);
    assert!(!format!("{one:?} {one}").contains(&one.expose()[HUB_SECRET_PREFIX.len()..]));
}

store_test! {
    async fn an_event_is_published_with_its_transaction_or_not_at_all(store) {
        register(&store, "l1", EventFilter::default()).await;
        let mut tx = store.begin().await.expect("begin");
        let (_, queued) = publish(&mut tx, "CustomerCreateEvent", "c1", "Active").await;
        assert_eq!(queued, 1);
        tx.rollback().await.expect("rollback");
        assert!(store.claim_deliveries(at(2), 10, LEASE, &[]).await.expect("claim").is_empty());

        let (event_id, queued) = publish_committed(&store, "CustomerCreateEvent", "c1", "Active").await;
        assert_eq!(queued, 1);
        let claimed = store.claim_deliveries(at(2), 10, LEASE, &[]).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        let delivery = &claimed[0];
        assert_eq!((delivery.listener_id.as_str(), delivery.event_id.as_str(), delivery.attempt), ("l1", event_id.as_str(), 1));
        let body: serde_json::Value = serde_json::from_str(&delivery.body).expect("JSON");
        assert_eq!(body["eventId"], event_id.as_str());
        assert_eq!(body["eventType"], "CustomerCreateEvent");
        assert_eq!(body["eventTime"], at(1).to_string());
        assert_eq!(body["event"]["customer"]["id"], "c1");
    }
}

store_test! {
    async fn an_event_fans_out_to_the_matching_listeners_only(store) {
        register(&store, "all", EventFilter::default()).await;
        register(&store, "creates", types(&["CustomerCreateEvent"])).await;
        let active = EventFilter { event_types: vec![], fields: vec![("event.customer.status".into(), "Active".into())] };
        register(&store, "active", active).await;
        assert_eq!(publish_committed(&store, "CustomerCreateEvent", "c1", "Active").await.1, 3);
        assert_eq!(publish_committed(&store, "CustomerDeleteEvent", "c2", "Inactive").await.1, 1);
        // Another API's event reaches none of them, and with no listener nothing is kept.
        let mut tx = store.begin().await.expect("begin");
        let entity = json!({ "id": "a1" });
        let event = NewEvent { api: "/tmf-api/accountManagement/v4", event_type: "BillingAccountCreateEvent", entity_type: "billingAccount", entity_id: "a1", entity: &entity };
        assert_eq!(tx.publish_event(event, at(1)).await.expect("publish").deliveries, 0);
        tx.commit().await.expect("commit");
        let mut listeners: Vec<String> = store
            .deliveries(Some(DeliveryState::Pending), None, 0, 100)
            .await
            .expect("list")
            .items
            .into_iter()
            .map(|d| format!("{}:{}", d.listener_id, d.event_type))
            .collect();
        listeners.sort();
        assert_eq!(listeners, ["active:CustomerCreateEvent", "all:CustomerCreateEvent", "all:CustomerDeleteEvent", "creates:CustomerCreateEvent"]);
    }
}

store_test! {
    async fn deliveries_of_one_entity_to_one_listener_go_one_at_a_time_in_order(store) {
        register(&store, "l1", EventFilter::default()).await;
        register(&store, "l2", EventFilter::default()).await;
        publish_committed(&store, "CustomerCreateEvent", "c1", "Active").await;
        publish_committed(&store, "CustomerAttributeValueChangeEvent", "c1", "Active").await;
        publish_committed(&store, "CustomerCreateEvent", "c2", "Active").await;
        // Due by listener, read without the write lock: three each (claimable or not).
        let mut due = store.due_deliveries_by_listener(at(2)).await.expect("due");
        due.sort();
        assert_eq!(due, [("l1".to_owned(), 3), ("l2".to_owned(), 3)]);
        assert!(store.due_deliveries_by_listener(at(0)).await.expect("due").is_empty(), "none due before it was published");
        // One per (listener, entity): c1's first event to each listener, and c2's.
        let first = store.claim_deliveries(at(2), 10, LEASE, &[]).await.expect("claim");
        let seen: Vec<(String, String)> = first.iter().map(|d| (d.listener_id.clone(), d.event_type.clone())).collect();
        assert_eq!(first.len(), 4, "{seen:?}");
        assert!(first.iter().all(|d| d.event_type == "CustomerCreateEvent"));
        // c1's change waits while its create is pending (leased to the first claim).
        assert!(store.claim_deliveries(at(2), 10, LEASE, &[]).await.expect("claim").is_empty());
        let mut due = store.due_deliveries_by_listener(at(2)).await.expect("due");
        due.sort();
        assert_eq!(due, [("l1".to_owned(), 1), ("l2".to_owned(), 1)], "the leased ones are not due");
        for delivery in &first {
            assert_eq!(store.deliveries_done(&[delivery.id], at(3)).await.expect("done"), 1);
        }
        // A busy listener is skipped.
        let next = store.claim_deliveries(at(3), 10, LEASE, &["l1"]).await.expect("claim");
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].listener_id.as_str(), next[0].event_type.as_str()), ("l2", "CustomerAttributeValueChangeEvent"));
        // Handed back untried, it is due again with its attempt not counted.
        assert!(store.delivery_release(&next[0], at(3)).await.expect("release"));
        let again = store.claim_deliveries(at(3), 10, LEASE, &[]).await.expect("claim");
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|d| d.attempt == 1));
    }
}

store_test! {
    async fn deliveries_that_ended_together_are_recorded_delivered_in_one_call(store) {
        register(&store, "l1", EventFilter::default()).await;
        register(&store, "l2", EventFilter::default()).await;
        publish_committed(&store, "CustomerCreateEvent", "c1", "Active").await;
        publish_committed(&store, "CustomerAttributeValueChangeEvent", "c1", "Active").await;
        publish_committed(&store, "CustomerCreateEvent", "c2", "Active").await;
        let first = store.claim_deliveries(at(2), 10, LEASE, &[]).await.expect("claim");
        assert_eq!(first.len(), 4);
        let ids: Vec<i64> = first.iter().map(|d| d.id).collect();
        assert_eq!(store.deliveries_done(&[], at(3)).await.expect("none"), 0);
        assert_eq!(store.deliveries_done(&ids, at(3)).await.expect("done"), 4);
        // Recorded again (a report that came twice): nothing changes.
        assert_eq!(store.deliveries_done(&ids[..2], at(4)).await.expect("again"), 0);
        let done = store.deliveries(Some(DeliveryState::Done), None, 0, 10).await.expect("list");
        assert_eq!(done.total, 4);
        assert!(done.items.iter().all(|d| d.finished_at == Some(at(3))));
        // c1's change to each listener was waiting behind its create: now claimable.
        let next = store.claim_deliveries(at(3), 10, LEASE, &[]).await.expect("claim");
        assert_eq!(next.len(), 2);
        assert!(next.iter().all(|d| d.event_type == "CustomerAttributeValueChangeEvent"));
        // Only the ids given are recorded.
        assert_eq!(store.deliveries_done(&[next[0].id], at(5)).await.expect("one"), 1);
        assert_eq!(store.deliveries(Some(DeliveryState::Pending), None, 0, 10).await.expect("list").total, 1);
    }
}

store_test! {
    async fn a_dead_letter_is_kept_listed_and_redriven(store) {
        register(&store, "l1", EventFilter::default()).await;
        publish_committed(&store, "CustomerCreateEvent", "c1", "Active").await;
        let first = store.claim_deliveries(at(2), 10, LEASE, &[]).await.expect("claim");
        assert!(store.delivery_retry(&first[0], "HTTP 503", at(10)).await.expect("retry"));
        assert!(store.claim_deliveries(at(9), 10, LEASE, &[]).await.expect("claim").is_empty());
        let second = store.claim_deliveries(at(10), 10, LEASE, &[]).await.expect("claim");
        assert_eq!(second[0].attempt, 2);
        assert!(!store.delivery_dead(&first[0], "late report of an old claim", at(11)).await.expect("dead"));
        assert!(store.delivery_dead(&second[0], "HTTP 410", at(11)).await.expect("dead"));
        assert!(store.claim_deliveries(at(100), 10, LEASE, &[]).await.expect("claim").is_empty());
        let dead = store.deliveries(Some(DeliveryState::Failed), None, 0, 10).await.expect("list");
        assert_eq!(dead.total, 1);
        let entry = &dead.items[0];
        assert_eq!((entry.attempts, entry.last_error.as_deref(), entry.entity_id.as_str()), (2, Some("HTTP 410"), "c1"));
        assert_eq!(entry.finished_at, Some(at(11)));

        let mut tx = store.begin().await.expect("begin");
        tx.redrive_delivery(entry.id, at(200)).await.expect("redrive");
        assert!(matches!(tx.redrive_delivery(entry.id, at(200)).await, Err(StoreError::NotFound { .. })));
        tx.commit().await.expect("commit");
        let third = store.claim_deliveries(at(200), 10, LEASE, &[]).await.expect("claim");
        assert_eq!((third[0].id, third[0].attempt), (entry.id, 3));
        assert_eq!(store.deliveries_done(&[third[0].id], at(201)).await.expect("done"), 1);
        assert_eq!(store.deliveries(Some(DeliveryState::Done), Some("l1"), 0, 10).await.expect("list").total, 1);
    }
}

store_test! {
    async fn an_unregistered_listener_takes_its_deliveries_with_it(store) {
        register(&store, "l1", EventFilter::default()).await;
        register(&store, "l2", EventFilter::default()).await;
        publish_committed(&store, "CustomerCreateEvent", "c1", "Active").await;
        let mut tx = store.begin().await.expect("begin");
        assert!(tx.delete_listener("l1").await.expect("delete"));
        assert!(!tx.delete_listener("l1").await.expect("delete again"));
        tx.commit().await.expect("commit");
        assert!(store.listener("l1").await.expect("read").is_none());
        let claimed = store.claim_deliveries(at(2), 10, LEASE, &[]).await.expect("claim");
        assert_eq!(claimed.iter().map(|d| d.listener_id.as_str()).collect::<Vec<_>>(), ["l2"]);
        assert_eq!(publish_committed(&store, "CustomerCreateEvent", "c2", "Active").await.1, 1);
    }
}

store_test! {
    async fn a_listener_is_kept_without_showing_its_secret_and_an_api_has_a_limit(store) {
        let filter = types(&["CustomerCreateEvent"]);
        register(&store, "l0", filter.clone()).await;
        let found = store.listener("l0").await.expect("read").expect("present");
        assert_eq!((found.api.as_str(), found.filter, found.created_at), (API, filter.clone(), at(0)));
        let secret = HubSecret::generate().expect("a secret");
        let new = NewListener { id: "l0", api: API, callback: "http://127.0.0.1:9/", query: None, filter: &filter, secret: &secret, created_by: "t" };
        let mut tx = store.begin().await.expect("begin");
        assert!(matches!(tx.insert_listener(new, at(0)).await, Err(StoreError::Conflict { .. })));
        drop(tx);
        for n in 1..MAX_LISTENERS_PER_API {
            register(&store, &format!("l{n}"), EventFilter::default()).await;
        }
        let mut tx = store.begin().await.expect("begin");
        let new = NewListener { id: "one-too-many", ..new };
        let refused = tx.insert_listener(new, at(0)).await;
        assert!(matches!(refused, Err(StoreError::Invalid { field: "callback", .. })), "{refused:?}");
    }
}

//! Order and provisioning task rows: an order with its items and tasks reads back; due
//! tasks are claimed once, also by two servers at once, and again only after the lease;
//! a claim that no longer holds records nothing; a line's identities and status change
//! with its version.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use tollgate_store::{
    store_test, BillingAccountRow, CustomerRow, LineRow, NewTask, OrderItemRow, ProductOrderRow, Store,
    SubscriptionRow, TaskOutcome,
};

use crate::at;

async fn account(store: &Store) {
    let mut tx = store.begin().await.expect("begin");
    let customer = CustomerRow {
        id: "c".into(),
        party_type: "individual".into(),
        name: "C".into(),
        status: "Approved".into(),
        doc: json!({}),
        anonymised_at: None,
    };
    tx.insert_customer(&customer, at(0)).await.expect("customer");
    let account = BillingAccountRow {
        id: "ba".into(),
        engine_account_id: 0,
        customer_id: "c".into(),
        parent_id: None,
        root_id: "ba".into(),
        depth: 0,
        name: "ba".into(),
        account_type: "postpaid".into(),
        state: "Active".into(),
        currency: "EUR".into(),
        bill_cycle_day: 1,
        payment_terms_days: 30,
        tax_profile_id: None,
        credit_limit: Decimal::ZERO,
    };
    tx.insert_billing_account(&account, at(0)).await.expect("account");
    tx.commit().await.expect("commit");
}

/// An order `id` with `items` items of three steps each, the first due at `due`.
async fn order(store: &Store, id: &str, items: usize, due: i64) {
    let mut tx = store.begin().await.expect("begin");
    let row = ProductOrderRow {
        id: id.into(),
        seq: 0,
        state: "acknowledged".into(),
        billing_account_id: "ba".into(),
        root_id: "ba".into(),
        requested_start_at: None,
        cancelling: false,
        doc: json!({"id": id}),
        created_at: at(0),
        completed_at: None,
        idempotency_key: None,
        idempotency_digest: None,
    };
    let seq = tx.insert_product_order(&row, at(0)).await.expect("order");
    let rows: Vec<OrderItemRow> = (0..items)
        .map(|n| OrderItemRow {
            order_id: id.into(),
            item_id: n.to_string(),
            position: i64::try_from(n).expect("small"),
            order_seq: seq,
            action: "suspend".into(),
            state: "acknowledged".into(),
            product_id: format!("p{n}"),
            request: json!({}),
        })
        .collect();
    tx.insert_order_items(&rows, at(0)).await.expect("items");
    let ids: Vec<String> = (0..items).map(|n| n.to_string()).collect();
    let mut tasks = Vec::new();
    for item in &ids {
        for position in 0..3 {
            let state = if position == 0 { "due" } else { "waiting" };
            tasks.push(NewTask {
                order_id: id,
                item_id: item,
                position,
                step: "suspend",
                state,
                next_attempt_at: at(due),
            });
        }
    }
    tx.insert_tasks(&tasks, at(0)).await.expect("tasks");
    tx.commit().await.expect("commit");
}

store_test! {
    async fn due_tasks_are_claimed_once_and_a_lost_claim_records_nothing(store) {
        account(&store).await;
        order(&store, "o1", 20, 5).await;
        assert!(store.claim_provisioning_tasks(at(4), 100, Duration::from_secs(60)).await.expect("claim").is_empty(), "not due yet");
        assert_eq!(store.next_task_due().await.expect("due"), Some(at(5)));
        // Two servers claim at once: between them every due task, none twice.
        let other = store.open_again().await;
        let (a, b) = tokio::join!(
            store.claim_provisioning_tasks(at(5), 12, Duration::from_secs(60)),
            other.claim_provisioning_tasks(at(5), 12, Duration::from_secs(60)),
        );
        let mut seqs: Vec<i64> = a.expect("claim").iter().chain(b.expect("claim").iter()).map(|task| task.seq).collect();
        assert_eq!(seqs.len(), 20);
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 20, "no task claimed twice");
        assert!(store.claim_provisioning_tasks(at(6), 100, Duration::from_secs(60)).await.expect("claim").is_empty(), "leased");
        // The lease runs out: claimed again, a second attempt; the first claim is void.
        let again = store.claim_provisioning_tasks(at(66), 1, Duration::from_secs(60)).await.expect("claim");
        assert_eq!(again[0].attempts, 2);
        let mut stale = again[0].clone();
        stale.attempts = 1;
        let done = TaskOutcome { state: "done", next_attempt_at: at(66), result: Some(&json!({"x": 1})), last_error: None, reset_attempts: false };
        let mut tx = store.begin().await.expect("begin");
        assert!(!tx.finish_task(&stale, &done, at(66)).await.expect("finish"), "a lost claim records nothing");
        assert!(tx.finish_task(&again[0], &done, at(66)).await.expect("finish"));
        tx.commit().await.expect("commit");
        let (_, items) = store.product_order_detail("o1").await.expect("read").expect("order");
        let task = &items.iter().find(|(item, _)| item.item_id == again[0].item_id).expect("item").1[0];
        assert_eq!((task.state.as_str(), task.result.clone()), ("done", Some(json!({"x": 1}))));
        assert_eq!(store.provisioning_task_counts().await.expect("counts").iter().find(|(s, _)| s == "done").map(|(_, n)| *n), Some(1));
    }
}

store_test! {
    async fn an_earlier_open_item_holds_a_later_one_and_lines_change_with_their_version(store) {
        account(&store).await;
        order(&store, "first", 1, 0).await;
        order(&store, "second", 1, 0).await;
        let mut tx = store.begin().await.expect("begin");
        let second = tx.product_order("second").await.expect("read").expect("order").value;
        assert_eq!(tx.earlier_open_item("p0", second.seq).await.expect("earlier"), Some(("first".into(), "0".into())));
        tx.set_item_state("first", "0", "completed", at(1)).await.expect("state");
        assert_eq!(tx.earlier_open_item("p0", second.seq).await.expect("earlier"), None);
        let line = LineRow {
            subscription: SubscriptionRow {
                id: "line".into(),
                engine_subscription_id: 0,
                external_id: None,
                billing_account_id: "ba".into(),
                offering_id: None,
                plan_id: "plan-a".into(),
                state: "active".into(),
                identities: vec!["msisdn:4915".into(), "imsi:26201".into()],
            },
            product_status: Some("pendingActive".into()),
            iccid: Some("8949".into()),
            order_id: Some("first".into()),
            started_at: None,
            terminated_at: None,
            created_at: at(1),
        };
        let engine_id = tx.insert_line(&line, at(1)).await.expect("line");
        let stored = tx.line("line").await.expect("read").expect("line");
        assert_eq!(stored.value.subscription.engine_subscription_id, engine_id);
        assert_eq!((stored.value.status(), stored.value.iccid.as_deref()), ("pendingActive", Some("8949")));
        tx.replace_line_identity("line", "imsi:26201", "imsi:26202").await.expect("replace");
        let mut changed = stored.value.clone();
        changed.product_status = None;
        changed.subscription.state = "suspended".into();
        let version = tx.update_line(&changed, stored.version, at(2)).await.expect("update");
        assert!(tx.update_line(&changed, stored.version, at(2)).await.is_err(), "a stale version is refused");
        tx.commit().await.expect("commit");
        let read = store.line("line").await.expect("read").expect("line");
        assert_eq!(read.version, version);
        assert_eq!((read.value.status(), read.value.subscription.identities.clone()), ("suspended", vec!["msisdn:4915".to_owned(), "imsi:26202".to_owned()]));
    }
}

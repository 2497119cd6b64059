//! Thresholds' rows: money kept exactly in both dialects, each kind with its level only,
//! a bounded number per account, the evaluation's view joined with the account's engine
//! id; a crossing recorded once per threshold and key, and kept when its threshold goes.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::json;
use tollgate_store::{
    store_test, BillingAccountRow, CrossingRow, CustomerRow, Store, StoreError, ThresholdRow, ENGINE_ACCOUNT_BASE,
    MAX_THRESHOLDS_PER_ACCOUNT,
};

use crate::at;

async fn account(store: &Store, id: &str) {
    let mut tx = store.begin().await.expect("begin");
    let customer = CustomerRow {
        id: format!("c-{id}"),
        party_type: "individual".into(),
        name: "Ada".into(),
        status: "Approved".into(),
        doc: json!({}),
        anonymised_at: None,
    };
    tx.insert_customer(&customer, at(0)).await.expect("customer");
    let account = BillingAccountRow {
        id: id.into(),
        engine_account_id: 0,
        customer_id: customer.id.clone(),
        parent_id: None,
        root_id: id.into(),
        depth: 0,
        name: id.into(),
        account_type: "prepaid".into(),
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

fn balance_below(id: &str, account: &str, amount: &str) -> ThresholdRow {
    ThresholdRow {
        id: id.into(),
        billing_account_id: account.into(),
        kind: "balance_below".into(),
        amount: Some(Decimal::from_str(amount).expect("decimal")),
        percent: None,
        hours: None,
        subscription_id: None,
        engine_subscription_id: None,
        language: "de".into(),
        webhook: true,
        sms: false,
        tripped: false,
        episode: 1,
        created_at: at(1),
    }
}

fn crossing(threshold: &str, key: &str) -> CrossingRow {
    CrossingRow {
        threshold_id: threshold.into(),
        crossing_key: key.into(),
        billing_account_id: "a1".into(),
        kind: "balance_below".into(),
        message: "a1: low".into(),
        event_id: None,
        crossed_at: at(5),
    }
}

store_test! {
    async fn thresholds_keep_their_money_exactly_and_are_watched_with_the_engine_account(store) {
        account(&store, "a1").await;
        account(&store, "a2").await;
        let mut tx = store.begin().await.expect("begin");
        let small = balance_below("t1", "a1", "0.10");
        let large = balance_below("t2", "a1", "12345678901234.5678");
        let bundle = ThresholdRow {
            id: "t3".into(), kind: "bundle_used".into(), amount: None, percent: Some(80), webhook: false,
            ..balance_below("t3", "a2", "0")
        };
        let expiry = ThresholdRow {
            id: "t4".into(), kind: "bundle_expiry".into(), amount: None, hours: Some(48),
            ..balance_below("t4", "a2", "0")
        };
        let cap = ThresholdRow { id: "t5".into(), kind: "spending_cap".into(), ..balance_below("t5", "a2", "250.5") };
        for row in [&small, &large, &bundle, &expiry, &cap] {
            tx.insert_threshold(row).await.expect("insert");
        }
        tx.commit().await.expect("commit");
        assert_eq!(store.thresholds_of("a1").await.expect("list"), [small.clone(), large.clone()]);
        let watched = store.watched_thresholds().await.expect("watched");
        let seen: Vec<(u64, &str, &str)> =
            watched.iter().map(|w| (w.engine_account_id, w.currency.as_str(), w.threshold.id.as_str())).collect();
        assert_eq!(seen, [
            (ENGINE_ACCOUNT_BASE + 1, "EUR", "t1"), (ENGINE_ACCOUNT_BASE + 1, "EUR", "t2"),
            (ENGINE_ACCOUNT_BASE + 2, "EUR", "t3"), (ENGINE_ACCOUNT_BASE + 2, "EUR", "t4"), (ENGINE_ACCOUNT_BASE + 2, "EUR", "t5"),
        ]);
        assert_eq!(watched[2].threshold, bundle);
        assert_eq!(store.thresholds_of("a2").await.expect("list"), [bundle.clone(), expiry, cap]);

        let mut tx = store.begin().await.expect("begin");
        tx.set_threshold_state("t1", true, 4).await.expect("state");
        tx.update_threshold_delivery("t1", "en", false, true).await.expect("delivery");
        assert!(matches!(tx.update_threshold_delivery("nope", "en", false, false).await, Err(StoreError::NotFound { .. })));
        tx.commit().await.expect("commit");
        let t1 = &store.thresholds_of("a1").await.expect("list")[0];
        assert_eq!((t1.tripped, t1.episode, t1.language.as_str(), t1.webhook, t1.sms), (true, 4, "en", false, true));
    }
}

store_test! {
    async fn a_threshold_has_the_level_of_its_kind_only_and_an_account_a_bounded_number(store) {
        account(&store, "a1").await;
        for bad in [
            ThresholdRow { amount: None, ..balance_below("x1", "a1", "1") },
            ThresholdRow { percent: Some(80), ..balance_below("x2", "a1", "1") },
            ThresholdRow { kind: "bundle_used".into(), percent: Some(101), amount: None, ..balance_below("x3", "a1", "1") },
            ThresholdRow { kind: "balance_above".into(), ..balance_below("x4", "a1", "1") },
            ThresholdRow { kind: "spending_cap".into(), amount: None, ..balance_below("x6", "a1", "1") },
            ThresholdRow { hours: Some(48), ..balance_below("x7", "a1", "1") },
            ThresholdRow { kind: "bundle_expiry".into(), amount: None, ..balance_below("x8", "a1", "1") },
            ThresholdRow { kind: "bundle_expiry".into(), amount: None, hours: Some(0), ..balance_below("x9", "a1", "1") },
            ThresholdRow { subscription_id: Some("no-such-line".into()), ..balance_below("x10", "a1", "1") },
            ThresholdRow {
                kind: "bundle_used".into(), amount: None, percent: Some(80), subscription_id: Some("no-such-line".into()),
                ..balance_below("x11", "a1", "1")
            },
            balance_below("x5", "no-such-account", "1"),
        ] {
            let mut tx = store.begin().await.expect("begin");
            assert!(tx.insert_threshold(&bad).await.is_err(), "{bad:?}");
        }
        let mut tx = store.begin().await.expect("begin");
        for n in 0..MAX_THRESHOLDS_PER_ACCOUNT {
            tx.insert_threshold(&balance_below(&format!("t{n}"), "a1", &n.to_string())).await.expect("insert");
        }
        let refused = tx.insert_threshold(&balance_below("one-more", "a1", "99")).await;
        assert!(matches!(refused, Err(StoreError::Invalid { field: "threshold", .. })), "{refused:?}");
        tx.commit().await.expect("commit");
        assert_eq!(store.thresholds_of("a1").await.expect("list").len(), MAX_THRESHOLDS_PER_ACCOUNT);
    }
}

store_test! {
    async fn a_crossing_is_recorded_once_per_threshold_and_key_and_outlives_its_threshold(store) {
        account(&store, "a1").await;
        let mut tx = store.begin().await.expect("begin");
        tx.insert_threshold(&balance_below("t1", "a1", "5")).await.expect("insert");
        assert!(tx.insert_crossing(&crossing("t1", "episode-1")).await.expect("first"));
        assert!(!tx.insert_crossing(&crossing("t1", "episode-1")).await.expect("again"), "the same key records nothing");
        assert!(tx.insert_crossing(&crossing("t1", "episode-2")).await.expect("next episode"));
        tx.set_crossing_event("t1", "episode-2", "e-42").await.expect("event");
        tx.commit().await.expect("commit");
        // A crash after the commit, the same crossing evaluated again: still one row.
        let mut tx = store.begin().await.expect("begin");
        assert!(!tx.insert_crossing(&crossing("t1", "episode-1")).await.expect("after a restart"));
        tx.commit().await.expect("commit");
        let mut tx = store.begin().await.expect("begin");
        let deleted = tx.delete_threshold("t1").await.expect("delete").expect("it was there");
        assert_eq!(deleted.amount, Some(Decimal::new(5, 0)));
        assert_eq!(tx.delete_threshold("t1").await.expect("delete again"), None);
        tx.commit().await.expect("commit");
        let kept = store.crossings_of("a1", 100).await.expect("crossings");
        let keys: Vec<(&str, Option<&str>)> = kept.iter().map(|c| (c.crossing_key.as_str(), c.event_id.as_deref())).collect();
        assert_eq!(keys, [("episode-1", None), ("episode-2", Some("e-42"))]);
        assert_eq!(kept[0], crossing("t1", "episode-1"));
        assert!(store.thresholds_of("a1").await.expect("list").is_empty());
    }
}

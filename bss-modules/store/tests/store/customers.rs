//! Customer and billing account rows: insert and read back with money exact and the
//! engine account id assigned, optimistic updates, hierarchy-scoped lists, a subtree
//! moved to another hierarchy, and a customer that owns an account is not deleted.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::json;
use tollgate_store::{
    store_test, BillingAccountFilter, BillingAccountRow, CustomerFilter, CustomerRow, StoreError, Version,
    ENGINE_ACCOUNT_BASE,
};

use crate::at;

fn customer(id: &str, name: &str) -> CustomerRow {
    CustomerRow {
        id: id.into(),
        party_type: "organization".into(),
        name: name.into(),
        status: "Approved".into(),
        doc: json!({"id": id, "name": name}),
        anonymised_at: None,
    }
}

fn account(id: &str, customer: &str, parent: Option<&str>, root: &str, depth: i64) -> BillingAccountRow {
    BillingAccountRow {
        id: id.into(),
        engine_account_id: 0,
        customer_id: customer.into(),
        parent_id: parent.map(Into::into),
        root_id: root.into(),
        depth,
        name: id.into(),
        account_type: "postpaid".into(),
        state: "Active".into(),
        currency: "EUR".into(),
        bill_cycle_day: 1,
        payment_terms_days: 30,
        tax_profile_id: Some("vat-de".into()),
        credit_limit: Decimal::from_str("1000.50").expect("decimal"),
    }
}

store_test! {
    async fn customers_and_accounts_round_trip_scope_and_refuse_stale_writes(store) {
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(tx.insert_customer(&customer("c1", "Acme"), at(0)).await.expect("insert"), Version::FIRST);
        tx.insert_customer(&customer("c2", "Other"), at(0)).await.expect("insert");
        let root = tx.insert_billing_account(&account("a1", "c1", None, "a1", 0), at(0)).await.expect("root");
        let child = tx.insert_billing_account(&account("a2", "c1", Some("a1"), "a1", 1), at(0)).await.expect("child");
        tx.insert_billing_account(&account("b1", "c2", None, "b1", 0), at(0)).await.expect("other");
        tx.commit().await.expect("commit");
        assert!(root.value.engine_account_id > ENGINE_ACCOUNT_BASE);
        assert_ne!(root.value.engine_account_id, child.value.engine_account_id);

        let mut tx = store.begin().await.expect("begin");
        assert!(matches!(
            tx.insert_customer(&customer("c1", "again"), at(1)).await,
            Err(StoreError::Conflict { .. })
        ));
        drop(tx);

        let read = store.billing_account("a2").await.expect("read").expect("exists");
        assert_eq!(read.value.credit_limit.to_string(), "1000.50");
        assert_eq!(read.value.parent_id.as_deref(), Some("a1"));
        assert_eq!(read.value.engine_account_id, child.value.engine_account_id);

        let scoped = BillingAccountFilter { root_id: Some("a1".into()), ..BillingAccountFilter::default() };
        let page = store.billing_account_list(&scoped, 0, 10).await.expect("list");
        assert_eq!(page.total, 2);
        assert_eq!(page.items.iter().map(|a| a.value.id.as_str()).collect::<Vec<_>>(), ["a1", "a2"]);
        let page = store.billing_account_list(&scoped, 1, 10).await.expect("page");
        assert_eq!((page.total, page.items.len()), (2, 1));
        let customers = CustomerFilter { root_id: Some("b1".into()), ..CustomerFilter::default() };
        let page = store.customer_list(&customers, 0, 10).await.expect("customers");
        assert_eq!(page.items.iter().map(|c| c.value.id.as_str()).collect::<Vec<_>>(), ["c2"]);
        assert!(store.customer_in_hierarchy("c1", "a1").await.expect("scope"));
        assert!(!store.customer_in_hierarchy("c1", "b1").await.expect("scope"));

        let mut tx = store.begin().await.expect("begin");
        let mut changed = read.value.clone();
        changed.credit_limit = Decimal::from_str("0.00").expect("decimal");
        let version = tx.update_billing_account(&changed, Version::FIRST, at(2)).await.expect("update");
        assert!(matches!(
            tx.update_billing_account(&changed, Version::FIRST, at(2)).await,
            Err(StoreError::StaleVersion { expected: 1, found: 2, .. })
        ));
        let mut renamed = customer("c1", "Acme GmbH");
        renamed.anonymised_at = Some(at(3));
        tx.update_customer(&renamed, Version::FIRST, at(3)).await.expect("update customer");
        assert!(matches!(tx.delete_customer("c1", Version::new(2).expect("v")).await, Err(StoreError::Conflict { .. })));
        tx.insert_customer(&customer("c3", "Lonely"), at(3)).await.expect("insert");
        tx.delete_customer("c3", Version::FIRST).await.expect("delete");
        tx.commit().await.expect("commit");
        let read = store.billing_account("a2").await.expect("read").expect("exists");
        assert_eq!((read.version, read.value.credit_limit), (version, Decimal::ZERO));

        // Moving a1 (with its child a2) under b1 moves the whole subtree into b1's hierarchy.
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(tx.billing_account_descendants("a1", "a1", 0).await.expect("below"), [("a2".to_owned(), 1)]);
        tx.move_billing_account("a1", Some("b1"), "b1", 1).await.expect("move");
        tx.commit().await.expect("commit");
        let a2 = store.billing_account("a2").await.expect("read").expect("exists");
        assert_eq!((a2.value.root_id.as_str(), a2.value.depth, a2.version), ("b1", 2, version));
        let a1 = store.billing_account("a1").await.expect("read").expect("exists");
        assert_eq!((a1.value.parent_id.as_deref(), a1.value.depth), (Some("b1"), 1));
        let c1 = store.customer("c1").await.expect("read").expect("exists");
        assert_eq!((c1.value.name.as_str(), c1.value.anonymised_at), ("Acme GmbH", Some(at(3))));
        assert!(store.customer("c3").await.expect("read").is_none());
    }
}

/// Regression: two transactions that lock two billing accounts in opposite orders (two
/// concurrent moves, say) deadlock on PostgreSQL; the one the database rolled back came
/// out as a bare database error, answered 500. It is `Contended` now: transient (the API
/// answers 503 with Retry-After), and the other transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_is_a_transient_contention_and_the_other_transaction_commits() {
    let Some(postgres) = tollgate_store::testing::postgres().await else { return };
    let store: &tollgate_store::Store = &postgres;
    let mut tx = store.begin().await.expect("begin");
    tx.insert_customer(&customer("c1", "Acme"), at(0)).await.expect("insert");
    tx.insert_billing_account(&account("a1", "c1", None, "a1", 0), at(0)).await.expect("a1");
    tx.insert_billing_account(&account("a2", "c1", None, "a2", 0), at(0)).await.expect("a2");
    tx.commit().await.expect("commit");
    let (mut first, mut second) = (store.begin().await.expect("begin"), store.begin().await.expect("begin"));
    first.billing_account("a1").await.expect("lock a1");
    second.billing_account("a2").await.expect("lock a2");
    let (one, other) = tokio::join!(first.billing_account("a2"), second.billing_account("a1"));
    let (failed, kept, winner) = match (one, other) {
        (Err(error), Ok(_)) => (error, "a1", second),
        (Ok(_), Err(error)) => (error, "a2", first),
        other => panic!("one of the two is rolled back: {other:?}"),
    };
    assert!(matches!(failed, StoreError::Contended { operation: "billing_accounts.get" }), "{failed:?}");
    assert!(failed.is_transient());
    winner.commit().await.expect("the other commits");
    assert!(store.billing_account(kept).await.expect("read").is_some());
}

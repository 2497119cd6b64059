//! What a bulk import needs of the store: customers and accounts inserted many rows per
//! statement and found again by external id with their parent's, subscriptions with their
//! identities (one subscription per identity), outbox rows enqueued many at once, and the
//! run's checkpoint refused when another run moved it on.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::json;
use tollgate_store::{
    store_test, BillingAccountRow, ImportKind, ImportRun, ImportedAccount, NewOutboxItem, StoreError, SubscriptionRow,
    ENGINE_ACCOUNT_BASE, ENGINE_SUBSCRIPTION_BASE,
};

use crate::at;

fn imported(n: usize, parent: Option<usize>) -> ImportedAccount {
    let root = parent.unwrap_or(n);
    ImportedAccount {
        external_id: format!("X{n}"),
        customer_id: format!("c{n}"),
        party_type: "individual".into(),
        name: format!("Customer {n}"),
        status: "Approved".into(),
        customer_doc_json: json!({"id": format!("c{n}"), "name": format!("Customer {n}")}).to_string(),
        account: BillingAccountRow {
            id: format!("a{n}"),
            engine_account_id: 0,
            customer_id: format!("c{n}"),
            parent_id: parent.map(|p| format!("a{p}")),
            root_id: format!("a{root}"),
            depth: i64::from(parent.is_some()),
            name: format!("Account {n}"),
            account_type: "postpaid".into(),
            state: "Active".into(),
            currency: "EUR".into(),
            bill_cycle_day: 1 + (n % 28) as i64,
            payment_terms_days: 30,
            tax_profile_id: None,
            credit_limit: Decimal::from_str(&format!("{n}.25")).expect("decimal"),
        },
    }
}

fn subscription(n: usize, account: usize, identities: &[&str]) -> SubscriptionRow {
    SubscriptionRow {
        id: format!("s{n}"),
        engine_subscription_id: 0,
        external_id: Some(format!("S{n}")),
        billing_account_id: format!("a{account}"),
        offering_id: None,
        plan_id: "mobile-prepaid-s".into(),
        state: if n.is_multiple_of(2) { "suspended".into() } else { "active".into() },
        identities: identities.iter().map(|identity| (*identity).to_owned()).collect(),
    }
}

store_test! {
    async fn imported_accounts_are_inserted_in_bulk_and_found_by_external_id(store) {
        // More rows than one statement carries, children after their parent.
        let rows: Vec<ImportedAccount> =
            (1..=1200).map(|n| imported(n, (n % 10 != 1).then(|| n - (n - 1) % 10))).collect();
        let mut tx = store.begin().await.expect("begin");
        let engine_ids = tx.insert_imported_accounts(&rows, at(0)).await.expect("insert");
        tx.commit().await.expect("commit");
        assert_eq!(engine_ids.len(), 1200);
        assert!(engine_ids.iter().all(|id| *id > ENGINE_ACCOUNT_BASE));
        let mut sorted = engine_ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 1200, "every account has its own engine id");

        let mut tx = store.begin().await.expect("begin");
        let found = tx.accounts_by_external_id(&["X1", "X5", "X1199", "nobody"]).await.expect("lookup");
        tx.rollback().await.expect("rollback");
        assert_eq!(found.len(), 3);
        let x5 = found.iter().find(|f| f.external_id == "X5").expect("X5");
        let account = x5.account.as_ref().expect("its account");
        assert_eq!((account.id.as_str(), account.root_id.as_str(), account.depth), ("a5", "a1", 1));
        assert_eq!(x5.parent_external_id.as_deref(), Some("X1"));
        assert_eq!(account.credit_limit.to_string(), "5.25");
        assert_eq!(account.engine_account_id, engine_ids[4]);
        assert_eq!(x5.customer.doc["name"], "Customer 5");
        let stored = store.billing_account("a1199").await.expect("read").expect("a1199");
        assert_eq!(stored.value.engine_account_id, engine_ids[1198]);

        // The same external id again fails the statement (the caller decides first).
        let mut tx = store.begin().await.expect("begin");
        let mut again = imported(5, None);
        again.customer_id = "c-other".into();
        again.account.id = "a-other".into();
        again.account.customer_id = "c-other".into();
        assert!(tx.insert_imported_accounts(&[again], at(1)).await.is_err());
    }
}

store_test! {
    async fn subscriptions_keep_their_identities_and_an_identity_has_one_subscription(store) {
        let mut tx = store.begin().await.expect("begin");
        tx.insert_imported_accounts(&[imported(1, None), imported(2, None)], at(0)).await.expect("accounts");
        let subscriptions = [
            subscription(1, 1, &["msisdn:491500000001", "imsi:262010000000001"]),
            subscription(2, 1, &["msisdn:491500000002"]),
            subscription(3, 2, &["msisdn:491500000003"]),
        ];
        let engine_ids = tx.insert_subscriptions(&subscriptions, at(0)).await.expect("insert");
        let items: Vec<serde_json::Value> = engine_ids.iter().map(|id| json!({"subscription": id})).collect();
        let keys: Vec<String> = (1..=3).map(|n| format!("bss:subscription:s{n}:v1:create")).collect();
        let outbox: Vec<NewOutboxItem<'_>> = keys
            .iter()
            .zip(&items)
            .map(|(key, payload)| NewOutboxItem {
                idempotency_key: key,
                kind: "engine.subscription.create",
                ordering_key: Some("billing-account:a1"),
                payload,
            })
            .collect();
        tx.enqueue_many(&outbox, at(0)).await.expect("enqueue");
        tx.commit().await.expect("commit");
        assert!(engine_ids.iter().all(|id| *id > ENGINE_SUBSCRIPTION_BASE));
        assert_eq!(store.outbox_counts().await.expect("counts").pending, 3);
        assert_eq!(store.subscription_count().await.expect("count"), 3);

        let one = store.subscription("s1").await.expect("read").expect("s1");
        assert_eq!(one.value.identities, vec!["msisdn:491500000001", "imsi:262010000000001"]);
        assert_eq!((one.value.engine_subscription_id, one.value.state.as_str()), (engine_ids[0], "active"));
        let of_account: Vec<String> =
            store.subscriptions_of("a1").await.expect("list").into_iter().map(|s| s.value.id).collect();
        assert_eq!(of_account, vec!["s1", "s2"]);
        let by_engine_id = store.subscription_by_engine_id(engine_ids[2]).await.expect("read").expect("s3");
        assert_eq!((by_engine_id.value.id.as_str(), by_engine_id.value.billing_account_id.as_str()), ("s3", "a2"));
        assert_eq!(by_engine_id.value.identities, vec!["msisdn:491500000003"]);
        assert!(store.subscription_by_engine_id(20).await.expect("read").is_none(), "below the base: not a BSS one");
        assert!(store.subscription_by_engine_id(engine_ids[2] + 1).await.expect("read").is_none());

        let mut tx = store.begin().await.expect("begin");
        let found = tx.subscriptions_by_external_id(&["S2", "S9"]).await.expect("by external id");
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].value.state.as_str(), found[0].value.identities.len()), ("suspended", 1));
        let taken = tx.identities_in_use(&["imsi:262010000000001", "msisdn:499"]).await.expect("in use");
        assert_eq!(taken, vec![("imsi:262010000000001".to_owned(), "s1".to_owned())]);
        // An identity another subscription holds fails the insert.
        let clash = subscription(4, 2, &["msisdn:491500000003"]);
        assert!(tx.insert_subscriptions(&[clash], at(1)).await.is_err());
    }
}

store_test! {
    async fn an_import_checkpoint_moves_on_only_from_where_it_was(store) {
        let run = ImportRun {
            id: "run-1".into(),
            kind: ImportKind::Customers,
            file_name: "customers.csv".into(),
            file_sha256: "f".repeat(64),
            file_bytes: 1000,
            mapping_sha256: "m".repeat(64),
            complete: false,
            rows_done: 0,
            next_offset: 0,
            rejects_bytes: 0,
            imported: 0,
            duplicates: 0,
            rejected: 0,
            actor: "cli:test".into(),
            started_at: at(0),
            finished_at: None,
        };
        let mut tx = store.begin().await.expect("begin");
        tx.insert_import_run(&run, at(0)).await.expect("start");
        tx.commit().await.expect("commit");
        let mut tx = store.begin().await.expect("begin");
        assert!(matches!(tx.insert_import_run(&run, at(0)).await, Err(StoreError::Conflict { .. })));
        tx.rollback().await.expect("rollback");

        let moved = ImportRun { rows_done: 10, next_offset: 400, rejects_bytes: 20, imported: 9, rejected: 1, ..run.clone() };
        let mut tx = store.begin().await.expect("begin");
        tx.save_import_run(&moved, 0, at(1)).await.expect("checkpoint");
        tx.commit().await.expect("commit");
        // A second import of the same file that still thinks the run is at row 0.
        let mut tx = store.begin().await.expect("begin");
        let stale = ImportRun { rows_done: 10, ..run.clone() };
        match tx.save_import_run(&stale, 0, at(2)).await {
            Err(StoreError::StaleVersion { expected: 0, found: 10, .. }) => {}
            other => panic!("expected a stale checkpoint, got {other:?}"),
        }
        tx.rollback().await.expect("rollback");

        let mut tx = store.begin().await.expect("begin");
        let read = tx.import_run(ImportKind::Customers, &run.file_sha256, &run.mapping_sha256).await.expect("read");
        tx.rollback().await.expect("rollback");
        assert_eq!(read, Some(moved.clone()));
        assert_eq!(store.import_runs().await.expect("runs"), vec![moved]);
    }
}

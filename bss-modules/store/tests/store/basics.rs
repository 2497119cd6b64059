//! Opening and migrating, the schema both dialects must share, money that reads back
//! exactly, and optimistic concurrency on versioned rows.

use std::str::FromStr;

use rust_decimal::Decimal;
use tollgate_store::testing::{probe, schema};
use tollgate_store::{store_test, Dialect, Store, StoreError, Version, SCHEMA_VERSION};

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).expect("a decimal literal")
}

store_test! {
    async fn opening_migrates_to_this_builds_schema_and_reopening_changes_nothing(store) {
        assert_eq!(store.schema_version().await.expect("version"), SCHEMA_VERSION);
        let again = store.open_again().await;
        assert_eq!(again.schema_version().await.expect("version"), SCHEMA_VERSION);
    }
}

store_test! {
    async fn a_database_from_a_newer_build_is_refused(store) {
        tollgate_store::testing::raw_sql(
            &store,
            "INSERT INTO schema_migrations (version, description, checksum, applied_at_ms) VALUES (999, 'future', 'x', 0)",
        )
        .await
        .expect("insert a future migration");
        match Store::open(store.location()).await {
            Err(StoreError::SchemaTooNew { found: 999, supported }) => assert_eq!(supported, SCHEMA_VERSION),
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
}

store_test! {
    async fn a_migration_missing_below_an_applied_one_is_applied(store) {
        // Branches number their migrations in parallel: a database may have a later one
        // applied and miss an earlier number; opening applies what is missing. Migration 7
        // (the event hub) is one no later migration builds on.
        tollgate_store::testing::raw_sql(
            &store,
            "DROP TABLE hub_deliveries; DROP TABLE hub_events; DROP TABLE hub_listeners;
             DELETE FROM schema_migrations WHERE version = 7",
        )
        .await
        .expect("forget migration 7");
        const { assert!(SCHEMA_VERSION > 7, "a migration above the forgotten one is applied") };
        let reopened = Store::open(store.location()).await.expect("open");
        assert_eq!(reopened.schema_version().await.expect("version"), SCHEMA_VERSION);
        let secret = tollgate_store::HubSecret::generate().expect("a secret");
        let filter = tollgate_store::EventFilter::default();
        let new = tollgate_store::NewListener {
            id: "l1",
            api: "/tmf-api/customerManagement/v4",
            callback: "http://127.0.0.1:9/",
            query: None,
            filter: &filter,
            secret: &secret,
            created_by: "test",
        };
        let mut tx = reopened.begin().await.expect("begin");
        tx.insert_listener(new, jiff::Timestamp::UNIX_EPOCH).await.expect("migration 7's table is back");
        tx.commit().await.expect("commit");
    }
}

store_test! {
    async fn an_applied_migration_that_changed_is_refused(store) {
        tollgate_store::testing::raw_sql(&store, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
            .await
            .expect("edit a checksum");
        match Store::open(store.location()).await {
            Err(StoreError::MigrationChanged { version: 1, .. }) => {}
            other => panic!("expected MigrationChanged, got {other:?}"),
        }
    }
}

/// The two dialects' migrations describe the same schema: same tables, columns, kinds
/// of column, nullability and indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_dialects_migrate_to_the_same_tables_columns_and_indexes() {
    let sqlite = tollgate_store::testing::sqlite().await;
    let Some(postgres) = tollgate_store::testing::postgres().await else { return };
    let (sqlite_columns, sqlite_indexes) = schema(&sqlite).await.expect("SQLite schema");
    let (postgres_columns, postgres_indexes) = schema(&postgres).await.expect("PostgreSQL schema");
    assert!(sqlite_columns.len() > 20, "the schema was read: {sqlite_columns:#?}");
    assert_eq!(sqlite_columns, postgres_columns);
    assert_eq!(sqlite_indexes, postgres_indexes);
}

#[tokio::test]
async fn an_in_memory_store_is_migrated_too() {
    let store = Store::memory().await.expect("memory store");
    assert_eq!(store.dialect(), Dialect::Sqlite);
    assert_eq!(store.schema_version().await.expect("version"), SCHEMA_VERSION);
}

store_test! {
    async fn money_reads_back_with_every_digit_and_its_scale(store) {
        probe::create(&store).await.expect("probe table");
        let cases = [
            ("sum", decimal("0.1") + decimal("0.2")),
            ("scale", decimal("0.30")),
            ("zero", decimal("0")),
            ("negative", decimal("-12.3456")),
            ("large", decimal("9999999999999999999999999999")),
            ("small", decimal("0.0000000000000000000000000001")),
            ("negative-large", decimal("-7922816251426433759354395.0335")),
            ("max", Decimal::MAX),
            ("min", Decimal::MIN),
        ];
        let mut tx = store.begin().await.expect("begin");
        for (id, amount) in cases {
            probe::insert(&mut tx, id, amount).await.expect("insert");
        }
        tx.commit().await.expect("commit");
        for (id, amount) in cases {
            let read = probe::get(&store, id).await.expect("get").expect("present").value;
            assert_eq!(read, amount, "{id}");
            assert_eq!(read.to_string(), amount.to_string(), "{id}: digits and scale");
        }
        assert_eq!(probe::get(&store, "sum").await.expect("get").expect("present").value, decimal("0.3"));
        // A zero keeps its value but not its scale, the same on both dialects.
        let mut tx = store.begin().await.expect("begin");
        probe::insert(&mut tx, "zero-scaled", decimal("-0.0000")).await.expect("insert");
        tx.commit().await.expect("commit");
        let zero = probe::get(&store, "zero-scaled").await.expect("get").expect("present").value;
        assert_eq!((zero, zero.to_string()), (Decimal::ZERO, "0".to_owned()));
    }
}

store_test! {
    async fn a_stale_version_is_refused_and_names_both_versions(store) {
        probe::create(&store).await.expect("probe table");
        let mut tx = store.begin().await.expect("begin");
        let v1 = probe::insert(&mut tx, "a", decimal("1.00")).await.expect("insert");
        tx.commit().await.expect("commit");

        // Two writers read version 1; the first wins, the second is told it is stale.
        let mut tx = store.begin().await.expect("begin");
        let v2 = probe::update(&mut tx, "a", v1, decimal("2.00")).await.expect("first writer");
        tx.commit().await.expect("commit");
        assert_eq!(v2.get(), 2);
        let mut tx = store.begin().await.expect("begin");
        match probe::update(&mut tx, "a", v1, decimal("3.00")).await {
            Err(StoreError::StaleVersion { entity: "probe", id, expected: 1, found: 2 }) => assert_eq!(id, "a"),
            other => panic!("expected StaleVersion, got {other:?}"),
        }
        match probe::update(&mut tx, "missing", v1, decimal("3.00")).await {
            Err(StoreError::NotFound { entity: "probe", id }) => assert_eq!(id, "missing"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        match probe::delete(&mut tx, "a", v1).await {
            Err(StoreError::StaleVersion { expected: 1, found: 2, .. }) => {}
            other => panic!("expected StaleVersion, got {other:?}"),
        }
        drop(tx);
        let read = probe::get(&store, "a").await.expect("get").expect("present");
        assert_eq!((read.value, read.version), (decimal("2.00"), v2));

        // The ETag a client got carries the version back.
        let etag = read.version.etag();
        let mut tx = store.begin().await.expect("begin");
        let v3 = probe::update(&mut tx, "a", Version::from_etag(&etag).expect("etag"), decimal("4.00")).await.expect("update");
        probe::delete(&mut tx, "a", v3).await.expect("delete at the current version");
        tx.commit().await.expect("commit");
        assert_eq!(probe::get(&store, "a").await.expect("get"), None);
    }
}

store_test! {
    async fn concurrent_writers_of_one_version_have_exactly_one_winner(store) {
        probe::create(&store).await.expect("probe table");
        let mut tx = store.begin().await.expect("begin");
        let v1 = probe::insert(&mut tx, "a", decimal("0")).await.expect("insert");
        tx.commit().await.expect("commit");
        let second = store.open_again().await;
        let write = |store: Store, amount: &'static str| async move {
            let mut tx = store.begin().await.expect("begin");
            let result = probe::update(&mut tx, "a", v1, decimal(amount)).await;
            tx.commit().await.expect("commit");
            result
        };
        let (one, two) = tokio::join!(
            tokio::spawn(write(Store::clone(&store), "1")),
            tokio::spawn(write(second, "2"))
        );
        let results = [one.expect("task"), two.expect("task")];
        assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 1, "{results:?}");
        assert!(results.iter().any(|result| matches!(result, Err(StoreError::StaleVersion { found: 2, .. }))));
    }
}

store_test! {
    async fn a_begin_cancelled_part_way_leaves_no_transaction_holding_the_database(store) {
        // Callers dropped at every point of beginning (a timeout, an aborted task): none may
        // leave a pooled connection inside a transaction, which on SQLite would keep the
        // write lock and refuse every later writer ("database is locked").
        for micros in 0..200u64 {
            let _ = tokio::time::timeout(std::time::Duration::from_micros(micros * 5), store.begin()).await;
        }
        for n in 0..3 {
            let mut tx = store.begin().await.expect("a writer begins after the cancelled ones");
            let record = tollgate_store::AuditRecord {
                actor: "test",
                action: "update",
                entity_type: "probe",
                entity_id: "cancel",
                before: None,
                after: None,
            };
            tx.audit(record, jiff::Timestamp::UNIX_EPOCH).await.expect("audit");
            tx.commit().await.expect("and commits");
            assert_eq!(store.audit_head().await.expect("head").seq, n + 1);
        }
    }
}

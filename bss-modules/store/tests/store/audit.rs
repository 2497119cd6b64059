//! The audit trail: entries chain, the database refuses to change them, tampering past the
//! trigger is found, concurrent appends keep one chain, and a record made after a
//! savepoint goes with a rollback to it.

use serde_json::json;
use tollgate_store::testing::raw_sql;
use tollgate_store::{store_test, AuditRecord, ChainCheck, Dialect, Store, GENESIS_HASH};

use crate::at;

async fn append(store: &Store, entity_id: &str, seconds: i64) -> i64 {
    let before = json!({ "status": "active", "creditLimit": "100.00" });
    let after = json!({ "status": "suspended", "creditLimit": "100.00" });
    let mut tx = store.begin().await.expect("begin");
    tx.audit(
        AuditRecord {
            actor: "token:care-desk",
            action: "update",
            entity_type: "account",
            entity_id,
            before: Some(&before),
            after: Some(&after),
        },
        at(seconds),
    )
    .await
    .expect("audit");
    tx.commit().await.expect("commit");
    // Appends in this test run one after another: the head is this one's.
    store.audit_head().await.expect("head").seq
}

async fn intact(store: &Store) -> i64 {
    match store.verify_audit_chain().await.expect("verify") {
        ChainCheck::Intact { entries, head } => {
            assert_eq!(head, store.audit_head().await.expect("head"));
            entries
        }
        broken => panic!("the chain is broken: {broken:?}"),
    }
}

async fn broken_at(store: &Store) -> i64 {
    match store.verify_audit_chain().await.expect("verify") {
        ChainCheck::Broken { seq, problem } => {
            assert!(!problem.is_empty());
            seq
        }
        intact => panic!("tampering went unnoticed: {intact:?}"),
    }
}

/// What a DBA would run to get past the append-only triggers.
async fn drop_triggers(store: &Store) {
    let sql = match store.dialect() {
        Dialect::Sqlite => "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;",
        Dialect::Postgres => {
            "DROP TRIGGER audit_log_no_update ON audit_log; DROP TRIGGER audit_log_no_delete ON audit_log;"
        }
    };
    raw_sql(store, sql).await.expect("drop the triggers");
}

store_test! {
    async fn entries_chain_and_read_back(store) {
        assert_eq!(intact(&store).await, 0);
        assert_eq!(store.audit_head().await.expect("head").hash, GENESIS_HASH);
        for n in 1..=5 {
            assert_eq!(append(&store, &format!("A-{}", n % 2), n).await, n);
        }
        assert_eq!(intact(&store).await, 5);
        let all = store.audit_entries(None, 0, 100).await.expect("entries");
        assert_eq!(all.iter().map(|entry| entry.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(all[0].prev_hash, GENESIS_HASH);
        assert!(all.windows(2).all(|pair| pair[1].prev_hash == pair[0].hash));
        assert_eq!((all[2].at, all[2].actor.as_str()), (at(3), "token:care-desk"));
        assert_eq!(all[2].after.as_ref().expect("after")["status"], "suspended");
        let one = store.audit_entries(Some(("account", "A-1")), 0, 100).await.expect("entries");
        assert_eq!(one.iter().map(|entry| entry.seq).collect::<Vec<_>>(), [1, 3, 5]);
        let page = store.audit_entries(None, 2, 2).await.expect("entries");
        assert_eq!(page.iter().map(|entry| entry.seq).collect::<Vec<_>>(), [3, 4]);
    }
}

store_test! {
    async fn the_records_of_one_transaction_chain_in_their_order_across_multi_row_statements(store) {
        append(&store, "A-0", 1).await;
        // More records than one multi-row statement carries (a bill run audits a batch of
        // documents in one transaction).
        let mut tx = store.begin().await.expect("begin");
        for n in 0..1_001 {
            let after = json!({ "n": n });
            let record = AuditRecord {
                actor: "bill-run",
                action: "create",
                entity_type: "CustomerBill",
                entity_id: &format!("inv-{n}"),
                before: None,
                after: Some(&after),
            };
            tx.audit(record, at(2)).await.expect("audit");
        }
        tx.commit().await.expect("commit");
        assert_eq!(intact(&store).await, 1_002);
        let all = store.audit_entries(None, 0, 1_000).await.expect("entries");
        let ids: Vec<String> = all[1..].iter().map(|entry| entry.entity_id.clone()).collect();
        assert_eq!(ids, (0..999).map(|n| format!("inv-{n}")).collect::<Vec<_>>(), "in the order recorded");
        assert!(all.windows(2).all(|pair| pair[1].prev_hash == pair[0].hash && pair[1].seq == pair[0].seq + 1));
    }
}

store_test! {
    async fn an_entry_left_out_of_a_rolled_back_transaction_leaves_no_gap(store) {
        append(&store, "A-1", 1).await;
        let mut tx = store.begin().await.expect("begin");
        tx.audit(
            AuditRecord { actor: "x", action: "create", entity_type: "account", entity_id: "A-2", before: None, after: None },
            at(2),
        )
        .await
        .expect("audit");
        tx.rollback().await.expect("rollback");
        assert_eq!(append(&store, "A-3", 3).await, 2);
        assert_eq!(intact(&store).await, 2);
    }
}

store_test! {
    async fn the_database_refuses_to_change_or_delete_an_entry(store) {
        append(&store, "A-1", 1).await;
        let update = raw_sql(&store, "UPDATE audit_log SET actor = 'someone else' WHERE seq = 1").await;
        let message = format!("{}", update.expect_err("UPDATE refused"));
        assert!(message.contains("append-only"), "{message}");
        let delete = raw_sql(&store, "DELETE FROM audit_log WHERE seq = 1").await;
        assert!(format!("{}", delete.expect_err("DELETE refused")).contains("append-only"));
        if store.dialect() == Dialect::Postgres {
            let truncate = raw_sql(&store, "TRUNCATE audit_log").await;
            assert!(format!("{}", truncate.expect_err("TRUNCATE refused")).contains("append-only"));
        }
        assert_eq!(intact(&store).await, 1);
    }
}

store_test! {
    async fn a_changed_entry_is_found(store) {
        for n in 1..=4 {
            append(&store, "A-1", n).await;
        }
        drop_triggers(&store).await;
        raw_sql(&store, "UPDATE audit_log SET after_json = '{\"status\":\"active\"}' WHERE seq = 2").await.expect("tamper");
        assert_eq!(broken_at(&store).await, 2);
    }
}

store_test! {
    async fn a_changed_entry_with_a_recomputed_hash_breaks_the_next_link(store) {
        for n in 1..=4 {
            append(&store, "A-1", n).await;
        }
        drop_triggers(&store).await;
        // The forger rewrites entry 2's hash too; entry 3 still names the old one.
        raw_sql(&store, "UPDATE audit_log SET actor = 'forger', hash = 'feed' WHERE seq = 2").await.expect("tamper");
        let seq = broken_at(&store).await;
        assert!(seq == 2, "found at {seq}");
    }
}

store_test! {
    async fn a_deleted_entry_is_found_in_the_middle_and_at_the_end(store) {
        for n in 1..=4 {
            append(&store, "A-1", n).await;
        }
        drop_triggers(&store).await;
        raw_sql(&store, "DELETE FROM audit_log WHERE seq = 4").await.expect("delete the last entry");
        assert_eq!(broken_at(&store).await, 4);
        raw_sql(&store, "DELETE FROM audit_log WHERE seq = 2").await.expect("delete an entry");
        assert_eq!(broken_at(&store).await, 3);
    }
}

store_test! {
    async fn concurrent_appends_from_two_servers_keep_one_chain(store) {
        const PER_TASK: i64 = 25;
        let second = store.open_again().await;
        let mut tasks = Vec::new();
        for (n, server) in [Store::clone(&store), second.clone(), Store::clone(&store), second].into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                for i in 0..PER_TASK {
                    append(&server, &format!("A-{n}"), i).await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(intact(&store).await, 4 * PER_TASK);
    }
}

store_test! {
    async fn the_chain_takes_transactions_in_the_order_they_commit_not_the_order_they_audited(store) {
        // On PostgreSQL two transactions are open at once: the first to record a change
        // commits last, and the second did not wait for it (the head is taken at commit).
        // SQLite has one writer: the transactions follow each other, and the chain
        // their order.
        let record = |entity_id| AuditRecord { actor: "x", action: "update", entity_type: "account", entity_id, before: None, after: None };
        if store.dialect() == Dialect::Postgres {
            let mut first = store.begin().await.expect("begin");
            first.audit(record("first"), at(1)).await.expect("audit");
            first.audit(record("first-again"), at(1)).await.expect("audit");
            let mut second = store.begin().await.expect("begin");
            second.audit(record("second"), at(2)).await.expect("audit");
            tokio::time::timeout(std::time::Duration::from_secs(30), second.commit())
                .await
                .expect("the second commits while the first is open")
                .expect("commit");
            first.commit().await.expect("commit");
        } else {
            let mut second = store.begin().await.expect("begin");
            second.audit(record("second"), at(2)).await.expect("audit");
            second.commit().await.expect("commit");
            let mut first = store.begin().await.expect("begin");
            first.audit(record("first"), at(1)).await.expect("audit");
            first.audit(record("first-again"), at(1)).await.expect("audit");
            first.commit().await.expect("commit");
        }
        let all = store.audit_entries(None, 0, 10).await.expect("entries");
        let order: Vec<(i64, &str)> = all.iter().map(|entry| (entry.seq, entry.entity_id.as_str())).collect();
        assert_eq!(order, [(1, "second"), (2, "first"), (3, "first-again")]);
        assert_eq!(intact(&store).await, 3);
    }
}

store_test! {
    async fn rolling_back_to_a_savepoint_keeps_what_came_before_it_also_after_a_failed_statement(store) {
        let mut tx = store.begin().await.expect("begin");
        let record = |entity_id| AuditRecord { actor: "x", action: "create", entity_type: "account", entity_id, before: None, after: None };
        tx.audit(record("A-1"), at(1)).await.expect("audit");
        let mark = tx.savepoint().await.expect("savepoint");
        tx.audit(record("A-2"), at(2)).await.expect("audit");
        // A statement that fails (no such billing account): on PostgreSQL the transaction
        // is aborted until it rolls back to the savepoint.
        let order = tollgate_store::ProductOrderRow {
            id: "o-1".into(),
            seq: 0,
            state: "acknowledged".into(),
            billing_account_id: "nobody".into(),
            root_id: "nobody".into(),
            requested_start_at: None,
            cancelling: false,
            doc: json!({}),
            created_at: at(2),
            completed_at: None,
            idempotency_key: None,
            idempotency_digest: None,
        };
        tx.insert_product_order(&order, at(2)).await.expect_err("no such billing account");
        tx.rollback_to(mark).await.expect("rolled back to the savepoint");
        tx.audit(record("A-3"), at(3)).await.expect("audit");
        tx.commit().await.expect("commit");
        let entries = store.audit_entries(None, 0, 10).await.expect("entries");
        let ids: Vec<&str> = entries.iter().map(|entry| entry.entity_id.as_str()).collect();
        assert_eq!(ids, ["A-1", "A-3"]);
        assert_eq!(intact(&store).await, 2);
    }
}

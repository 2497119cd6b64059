//! The outbox: an enqueue commits or rolls back with its transaction, claims never hand the
//! same row to two workers, a crashed worker's row comes back after its lease, and failed
//! attempts back off, then fail for good.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use tollgate_store::{
    store_test, ApplyError, NewOutboxItem, OutboxHandler, OutboxItem, OutboxState, OutboxWorker, RetryPolicy, Store,
    StoreError, Tx,
};

use crate::at;

const LEASE: Duration = Duration::from_secs(60);

async fn enqueue(tx: &mut Tx, key: &str, ordering_key: Option<&str>) -> i64 {
    let payload = json!({ "account": "A-1", "amount": "10.00" });
    tx.enqueue(NewOutboxItem { idempotency_key: key, kind: "account.top_up", ordering_key, payload: &payload }, at(0))
        .await
        .expect("enqueue")
}

async fn enqueue_committed(store: &Store, keys: &[&str]) -> Vec<i64> {
    let mut tx = store.begin().await.expect("begin");
    let mut ids = Vec::new();
    for key in keys {
        ids.push(enqueue(&mut tx, key, None).await);
    }
    tx.commit().await.expect("commit");
    ids
}

store_test! {
    async fn an_enqueue_in_a_rolled_back_transaction_leaves_nothing(store) {
        let mut tx = store.begin().await.expect("begin");
        enqueue(&mut tx, "k1", None).await;
        tx.rollback().await.expect("rollback");
        let mut tx = store.begin().await.expect("begin");
        enqueue(&mut tx, "k2", None).await;
        drop(tx); // dropped without commit: rolled back too
        assert!(store.claim_outbox(at(10), 10, LEASE).await.expect("claim").is_empty());
        assert_eq!(store.outbox_counts().await.expect("counts").pending, 0);

        enqueue_committed(&store, &["k3"]).await;
        let claimed = store.claim_outbox(at(10), 10, LEASE).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].idempotency_key, "k3");
        assert_eq!(claimed[0].attempt, 1);
        assert_eq!(claimed[0].payload["amount"], "10.00");
    }
}

store_test! {
    async fn enqueueing_is_idempotent_by_key_and_a_reused_key_is_a_conflict(store) {
        let mut tx = store.begin().await.expect("begin");
        let first = enqueue(&mut tx, "k1", None).await;
        assert_eq!(enqueue(&mut tx, "k1", None).await, first);
        let other = json!({ "account": "A-2" });
        let reused = tx
            .enqueue(NewOutboxItem { idempotency_key: "k1", kind: "account.top_up", ordering_key: None, payload: &other }, at(0))
            .await;
        assert!(matches!(reused, Err(StoreError::Conflict { .. })), "{reused:?}");
        tx.commit().await.expect("commit");
        assert_eq!(store.outbox_counts().await.expect("counts").pending, 1);
    }
}

store_test! {
    async fn two_claimers_never_get_the_same_item(store) {
        const ITEMS: usize = 200;
        let keys: Vec<String> = (0..ITEMS).map(|n| format!("k{n}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        enqueue_committed(&store, &keys).await;
        // Two servers: two pools on one database, each with two claiming tasks.
        let second = store.open_again().await;
        let mut tasks = Vec::new();
        for server in [Store::clone(&store), second.clone(), Store::clone(&store), second] {
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = server.claim_outbox(at(10), 7, LEASE).await.expect("claim");
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|item| item.id));
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut seen = HashSet::new();
        let mut per_task = Vec::new();
        for task in tasks {
            let ids = task.await.expect("task");
            per_task.push(ids.len());
            for id in ids {
                assert!(seen.insert(id), "item {id} claimed twice");
            }
        }
        assert_eq!(seen.len(), ITEMS, "every item claimed once (per task: {per_task:?})");
    }
}

store_test! {
    async fn a_claim_is_a_lease_and_an_unfinished_item_comes_back_after_it(store) {
        enqueue_committed(&store, &["k1"]).await;
        let first = store.claim_outbox(at(0), 10, LEASE).await.expect("claim");
        assert_eq!(first.len(), 1);
        // The worker dies without finishing: nothing is due until the lease runs out.
        assert!(store.claim_outbox(at(59), 10, LEASE).await.expect("claim").is_empty());
        let again = store.claim_outbox(at(60), 10, LEASE).await.expect("claim");
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id, again[0].attempt), (first[0].id, 2));
        // The first claim's late report changes nothing; finishing is allowed to either.
        assert!(!store.outbox_retry(&first[0], "late", at(61)).await.expect("retry"));
        assert!(store.outbox_done(&again[0], at(61)).await.expect("done"));
        assert!(!store.outbox_done(&first[0], at(62)).await.expect("done"));
        let entry = store.outbox_entry(first[0].id).await.expect("entry").expect("present");
        assert_eq!((entry.state, entry.attempts, entry.finished_at), (OutboxState::Done, 2, Some(at(61))));
    }
}

store_test! {
    async fn items_with_one_ordering_key_are_applied_one_at_a_time_in_order(store) {
        let mut tx = store.begin().await.expect("begin");
        let a1 = enqueue(&mut tx, "a1", Some("A")).await;
        let b1 = enqueue(&mut tx, "b1", Some("B")).await;
        let a2 = enqueue(&mut tx, "a2", Some("A")).await;
        let free = enqueue(&mut tx, "free", None).await;
        tx.commit().await.expect("commit");
        let ids = |items: &[OutboxItem]| items.iter().map(|item| item.id).collect::<Vec<_>>();
        let claimed = store.claim_outbox(at(0), 10, LEASE).await.expect("claim");
        assert_eq!(ids(&claimed), [a1, b1, free]);
        // a2 waits for a1 even after a1's lease expires and a1 is claimed again.
        assert_eq!(ids(&store.claim_outbox(at(60), 10, LEASE).await.expect("claim")), [a1, b1, free]);
        let a1_item = store.claim_outbox(at(120), 10, LEASE).await.expect("claim");
        let a1_item = a1_item.iter().find(|item| item.id == a1).expect("a1 again");
        store.outbox_done(a1_item, at(121)).await.expect("done");
        assert_eq!(ids(&store.claim_outbox(at(121), 10, LEASE).await.expect("claim")), [a2]);
    }
}

/// A handler that fails a set number of times, then succeeds (or always refuses).
#[derive(Debug)]
struct Flaky {
    transient_failures: usize,
    refuse: bool,
    calls: Mutex<Vec<(String, i64)>>,
}

impl OutboxHandler for Flaky {
    async fn apply(&self, item: &OutboxItem) -> Result<(), ApplyError> {
        let mut calls = self.calls.lock().expect("lock");
        calls.push((item.idempotency_key.clone(), item.attempt));
        if self.refuse {
            Err(ApplyError::Fail("the engine refused: unknown plan".into()))
        } else if calls.len() <= self.transient_failures {
            Err(ApplyError::Retry(format!("engine busy ({})", calls.len())))
        } else {
            Ok(())
        }
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        first_delay: Duration::from_secs(10),
        max_delay: Duration::from_secs(30),
        max_attempts: 4,
        lease: Duration::from_secs(60),
    }
}

store_test! {
    async fn failed_attempts_back_off_and_then_succeed(store) {
        let [id] = enqueue_committed(&store, &["k1"]).await[..] else { panic!("one item") };
        let worker = OutboxWorker::new(Store::clone(&store), Flaky { transient_failures: 3, refuse: false, calls: Mutex::default() })
            .with_policy(policy());
        let pass = worker.run_once(at(0)).await.expect("pass");
        assert_eq!((pass.claimed, pass.retried), (1, 1));
        let entry = store.outbox_entry(id).await.expect("entry").expect("present");
        assert_eq!((entry.state, entry.attempts, entry.next_attempt_at), (OutboxState::Pending, 1, at(10)));
        assert_eq!(entry.last_error.as_deref(), Some("engine busy (1)"));
        // Not due before the backoff: 10 s, then 20 s, then 30 s (the cap).
        assert_eq!(worker.run_once(at(9)).await.expect("pass").claimed, 0);
        assert_eq!(worker.run_once(at(10)).await.expect("pass").retried, 1);
        assert_eq!(store.outbox_entry(id).await.expect("entry").expect("present").next_attempt_at, at(30));
        assert_eq!(worker.run_once(at(30)).await.expect("pass").retried, 1);
        assert_eq!(store.outbox_entry(id).await.expect("entry").expect("present").next_attempt_at, at(60));
        assert_eq!(worker.run_once(at(60)).await.expect("pass").done, 1);
        let entry = store.outbox_entry(id).await.expect("entry").expect("present");
        assert_eq!((entry.state, entry.attempts, entry.last_error), (OutboxState::Done, 4, None));
        let calls = worker.handler().calls.lock().expect("lock").clone();
        assert_eq!(calls, [("k1".into(), 1), ("k1".into(), 2), ("k1".into(), 3), ("k1".into(), 4)]);
    }
}

store_test! {
    async fn an_item_fails_for_good_after_its_last_attempt_or_when_refused(store) {
        let [busy_id] = enqueue_committed(&store, &["busy"]).await[..] else { panic!("one item") };
        let worker = OutboxWorker::new(Store::clone(&store), Flaky { transient_failures: 100, refuse: false, calls: Mutex::default() })
            .with_policy(policy());
        let mut now = 0;
        let mut failed = 0;
        for _ in 0..10 {
            let pass = worker.run_once(at(now)).await.expect("pass");
            failed += pass.failed;
            now += 60;
        }
        assert_eq!(failed, 1);
        let busy = store.outbox_entry(busy_id).await.expect("entry").expect("present");
        assert_eq!((busy.state, busy.attempts), (OutboxState::Failed, 4));
        assert_eq!(worker.handler().calls.lock().expect("lock").len(), 4);

        enqueue_committed(&store, &["refused"]).await;
        let refusing = OutboxWorker::new(Store::clone(&store), Flaky { transient_failures: 0, refuse: true, calls: Mutex::default() });
        assert_eq!(refusing.run_once(at(now)).await.expect("pass").failed, 1);
        let counts = store.outbox_counts().await.expect("counts");
        assert_eq!((counts.pending, counts.failed), (0, 2));

        // An operator requeues one after fixing the cause.
        store.outbox_requeue(busy.id, at(now)).await.expect("requeue");
        assert!(matches!(store.outbox_requeue(busy.id, at(now)).await, Err(StoreError::NotFound { .. })));
        let claimed = store.claim_outbox(at(now), 10, LEASE).await.expect("claim");
        assert_eq!(claimed.iter().map(|item| (item.id, item.attempt)).collect::<Vec<_>>(), [(busy.id, 5)]);
    }
}

store_test! {
    async fn the_worker_applies_what_another_transaction_commits(store) {
        let worker = std::sync::Arc::new(
            OutboxWorker::new(Store::clone(&store), Flaky { transient_failures: 0, refuse: false, calls: Mutex::default() })
                .with_poll_interval(Duration::from_secs(30)),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let worker = worker.clone();
            async move { worker.run(async { stopped.await.unwrap_or(()) }).await }
        });
        enqueue_committed(&store, &["k1", "k2"]).await;
        // Woken by the commit, well before the 30 s poll.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.outbox_counts().await.expect("counts").done < 2 {
            assert!(std::time::Instant::now() < deadline, "the worker did not apply the items");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(()).expect("stop");
        running.await.expect("worker task");
        assert_eq!(worker.handler().calls.lock().expect("lock").len(), 2);
    }
}

/// Counts how many applications are in flight at once.
#[derive(Default)]
struct Overlapping {
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl OutboxHandler for Overlapping {
    async fn apply(&self, _item: &OutboxItem) -> Result<(), ApplyError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.in_flight.fetch_sub(1, SeqCst);
        Ok(())
    }
}

store_test! {
    async fn a_claims_independent_items_are_applied_together_and_marked_done_at_once(store) {
        let mut tx = store.begin().await.expect("begin");
        for (key, ordering) in [("a1", "a"), ("b1", "b"), ("c1", "c"), ("a2", "a")] {
            enqueue(&mut tx, key, Some(ordering)).await;
        }
        tx.commit().await.expect("commit");
        let worker = OutboxWorker::new(Store::clone(&store), Overlapping::default());
        let pass = worker.run_once(at(0)).await.expect("pass");
        assert_eq!((pass.claimed, pass.done), (3, 3), "one item per ordering key");
        assert_eq!(worker.handler().most.load(std::sync::atomic::Ordering::SeqCst), 3, "applied concurrently");
        assert_eq!(store.outbox_counts().await.expect("counts").done, 3);
        let pass = worker.run_once(at(1)).await.expect("pass");
        assert_eq!((pass.claimed, pass.done), (1, 1), "a2 after a1");
    }
}

store_test! {
    async fn a_row_is_applied_at_once_by_its_committer_but_never_before_an_older_one_of_its_key(store) {
        let mut tx = store.begin().await.expect("begin");
        let first = enqueue(&mut tx, "k1", Some("account:1")).await;
        let second = enqueue(&mut tx, "k2", Some("account:1")).await;
        tx.commit_without_waking().await.expect("commit");
        let worker = OutboxWorker::new(store.clone(), Flaky { transient_failures: 1, refuse: false, calls: Mutex::default() })
            .with_policy(policy());
        assert_eq!(worker.apply_now(second, at(1)).await.expect("apply"), None, "k1 goes first");
        assert_eq!(worker.apply_now(first, at(1)).await.expect("apply"), Some(OutboxState::Pending), "a failed attempt is retried later");
        assert_eq!(worker.apply_now(first, at(1)).await.expect("apply"), None, "not before its retry is due");
        assert_eq!(worker.apply_now(first, at(100)).await.expect("apply"), Some(OutboxState::Done));
        assert_eq!(worker.apply_now(first, at(100)).await.expect("apply"), None, "done already");
        assert_eq!(worker.apply_now(second, at(100)).await.expect("apply"), Some(OutboxState::Done));
        let calls = worker.handler().calls.lock().expect("lock").clone();
        assert_eq!(calls, [("k1".to_owned(), 1), ("k1".to_owned(), 2), ("k2".to_owned(), 1)]);

        // A row a worker's pass holds under its lease is not taken from it.
        let third = enqueue_committed(&store, &["k3"]).await[0];
        assert_eq!(store.claim_outbox(at(200), 10, LEASE).await.expect("claim").len(), 1);
        assert_eq!(worker.apply_now(third, at(200)).await.expect("apply"), None);
        assert_eq!(store.outbox_id("k3").await.expect("id"), Some(third));
        assert_eq!(store.outbox_id("nope").await.expect("id"), None);
    }
}

store_test! {
    async fn the_pending_backlog_counts_only_rows_not_yet_applied(store) {
        assert_eq!(store.outbox_pending().await.expect("count"), 0);
        enqueue_committed(&store, &["p1", "p2"]).await;
        assert_eq!(store.outbox_pending().await.expect("count"), 2);
        let claimed = store.claim_outbox(at(10), 10, LEASE).await.expect("claim");
        assert_eq!(store.outbox_pending().await.expect("count"), 2, "claimed is still pending");
        assert!(store.outbox_done(&claimed[0], at(11)).await.expect("done"));
        assert_eq!(store.outbox_pending().await.expect("count"), 1);
        assert_eq!(store.hub_pending().await.expect("count"), 0);
    }
}

//! Prepaid balances and account lifecycle on both databases, against the model engine of
//! `tollgate_customers::testing` reached through the outbox: a top-up applied at once and
//! exactly once however often it is repeated, a different request under the same id
//! refused, a request made while the engine is down delivered later by the worker, roles
//! and partner reach, adjustments checked against what is available; suspension, resumption
//! and closure reaching the engine, a close refused while money remains, and a change the
//! engine refuses after all undone on the billing account with its audit record.

use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_customers::testing::model_engine;
use tollgate_customers::{AccountState, AccountType, Customers, CustomersError, Principal};
use tollgate_store::{store_test, BalanceActionKind, Role, Store};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + seconds).expect("a valid instant")
}

struct Fixture {
    customers: Customers,
    account: String,
    engine_id: u64,
}

/// A customer and a prepaid account in EUR, created in the model engine.
async fn prepaid(
    store: &Store,
    customers: &Customers,
    worker: &tollgate_store::OutboxWorker<tollgate_customers::testing::ModelLink>,
) -> Fixture {
    let admin = Principal::admin("test");
    let customer = json!({"name": "Ada", "engagedParty": {"id": "ada", "@referredType": "Individual"}});
    let customer = customers.create_customer(&admin, customer, at(0)).await.expect("customer");
    let account = json!({
        "name": "Ada's phone",
        "accountType": "prepaid",
        "creditLimit": {"unit": "EUR", "value": 0},
        "relatedParty": [{"id": customer.value["id"], "@referredType": "Customer"}],
    });
    let account = customers.create_account(&admin, account, at(1)).await.expect("account");
    let pass = worker.run_once(Timestamp::now()).await.expect("pass");
    assert_eq!(pass.done, 1, "the engine account is created");
    let _ = store;
    Fixture {
        customers: customers.clone(),
        account: account.value["id"].as_str().expect("id").to_owned(),
        engine_id: account.value["engineAccountId"].as_u64().expect("engine id"),
    }
}

fn topup(id: &str, account: &str, amount: Value) -> Vec<u8> {
    json!({"id": id, "partyAccount": {"id": account}, "amount": {"amount": amount, "units": "EUR"}, "channel": {"name": "shop"}})
        .to_string()
        .into_bytes()
}

fn adjust(id: &str, account: &str, amount: &str, reason: &str) -> Vec<u8> {
    json!({"id": id, "partyAccount": {"id": account}, "amount": {"amount": amount, "units": "EUR"}, "reason": reason})
        .to_string()
        .into_bytes()
}

fn field_of(error: CustomersError) -> (&'static str, String) {
    match error {
        CustomersError::Invalid { field, .. } => ("invalid", field),
        CustomersError::Conflict { field, .. } => ("conflict", field),
        CustomersError::Forbidden { .. } => ("forbidden", String::new()),
        other => panic!("{other:?}"),
    }
}

store_test! {
    async fn a_top_up_applies_once_however_often_it_is_repeated(store) {
        let tollgate_customers::testing::Model { engine, worker, customers, .. } = model_engine(&store);
        let f = prepaid(&store, &customers, &worker).await;
        let care = Principal { actor: "token:9:care".into(), role: Role::Care, scope_root: None };
        let first = f.customers.request_balance_action(&care, BalanceActionKind::TopUp, &topup("t-1", &f.account, json!("10.50")), at(2)).await.expect("top-up");
        assert!(first.created);
        assert_eq!(first.doc["status"], "completed", "{}", first.doc);
        assert_eq!(first.doc["balanceAfter"], json!({"amount": 10.5, "units": "EUR"}));
        assert_eq!(first.doc["href"], json!("/tmf-api/prepayBalanceManagement/v4/topupBalance/t-1"));
        assert_eq!(engine.account(f.engine_id).expect("account").balance.to_string(), "10.5");

        // The same id and request: the recorded answer, no second engine operation, also
        // written differently (the same amount as a number with fewer decimals).
        let applied = engine.applied();
        for body in [topup("t-1", &f.account, json!("10.50")), topup("t-1", &f.account, json!(10.5))] {
            let again = f.customers.request_balance_action(&care, BalanceActionKind::TopUp, &body, at(3)).await.expect("repeat");
            assert!(!again.created);
            assert_eq!(again.doc, first.doc);
        }
        assert_eq!(engine.applied(), applied);
        assert_eq!(engine.account(f.engine_id).expect("account").balance.to_string(), "10.5");
        // The same id with another request is refused naming the id.
        let other = f.customers.request_balance_action(&care, BalanceActionKind::TopUp, &topup("t-1", &f.account, json!(11)), at(4)).await;
        assert_eq!(field_of(other.expect_err("another request")), ("conflict", "id".into()));

        // Read back one by one and listed; the audit trail has the request and the answer.
        let admin = Principal::admin("test");
        assert_eq!(f.customers.get_balance_action(&admin, BalanceActionKind::TopUp, "t-1").await.expect("get"), first.doc);
        assert!(matches!(
            f.customers.get_balance_action(&admin, BalanceActionKind::Adjust, "t-1").await,
            Err(CustomersError::NotFound { .. })
        ));
        let (listed, total) = f.customers
            .list_balance_actions(&admin, BalanceActionKind::TopUp, [("partyAccount.id", f.account.as_str())], 0, 10)
            .await
            .expect("list");
        assert_eq!((listed.len(), total), (1, 1));
        let audit = store.audit_entries(Some(("TopupBalance", "t-1")), 0, 10).await.expect("audit");
        let actions: Vec<(&str, &str)> = audit.iter().map(|e| (e.actor.as_str(), e.action.as_str())).collect();
        assert_eq!(actions, [("token:9:care", "create"), ("engine", "completed")]);

        // The balance view is the engine's.
        let view = f.customers.accumulated_balance(&admin, &f.account).await.expect("view");
        assert_eq!(view["totalBalance"], json!({"amount": 10.5, "units": "EUR"}));
        let buckets = f.customers.buckets(&admin, &f.account, at(5)).await.expect("buckets");
        assert_eq!(buckets[0]["remainingValue"], json!({"amount": 10.5, "units": "EUR"}));
        let one = f.customers.bucket(&admin, buckets[0]["id"].as_str().expect("id"), at(5)).await.expect("bucket");
        assert_eq!(one, buckets[0]);
    }
}

store_test! {
    async fn a_request_made_while_the_engine_is_down_is_delivered_later_once(store) {
        let tollgate_customers::testing::Model { engine, worker, customers, .. } = model_engine(&store);
        let f = prepaid(&store, &customers, &worker).await;
        let admin = Principal::admin("test");
        engine.set_down(true);
        let made = f.customers.request_balance_action(&admin, BalanceActionKind::TopUp, &topup("t-2", &f.account, json!(5)), at(2)).await.expect("recorded");
        assert_eq!(made.doc["status"], "created", "{}", made.doc);
        assert!(matches!(
            f.customers.accumulated_balance(&admin, &f.account).await,
            Err(CustomersError::EngineUnavailable { .. })
        ));
        let repeat = f.customers.request_balance_action(&admin, BalanceActionKind::TopUp, &topup("t-2", &f.account, json!(5)), at(3)).await.expect("repeat");
        assert_eq!((repeat.created, &repeat.doc["status"]), (false, &json!("created")));
        engine.set_down(false);
        let pass = worker.run_once(Timestamp::now()).await.expect("pass");
        assert_eq!(pass.done, 1);
        let shown = f.customers.get_balance_action(&admin, BalanceActionKind::TopUp, "t-2").await.expect("get");
        assert_eq!((&shown["status"], &shown["balanceAfter"]["amount"]), (&json!("completed"), &json!(5)));
        assert_eq!(engine.account(f.engine_id).expect("account").balance.to_string(), "5");
        assert_eq!(worker.run_once(Timestamp::now()).await.expect("pass").claimed, 0);
    }
}

store_test! {
    async fn roles_reach_and_the_accounts_state_decide_who_may_change_a_balance(store) {
        let tollgate_customers::testing::Model { worker, customers, .. } = model_engine(&store);
        let f = prepaid(&store, &customers, &worker).await;
        let principal = |role: Role, scope: Option<&str>| Principal { actor: format!("t:{role}"), role, scope_root: scope.map(str::to_owned) };
        let body = |id: &str| topup(id, &f.account, json!(1));
        let refused = [
            (principal(Role::Finance, None), BalanceActionKind::TopUp, body("r-1")),
            (principal(Role::ReadOnly, None), BalanceActionKind::TopUp, body("r-2")),
            (principal(Role::ReadOnly, None), BalanceActionKind::Adjust, adjust("r-3", &f.account, "1", "x")),
            (principal(Role::Partner, Some(&f.account)), BalanceActionKind::Adjust, adjust("r-4", &f.account, "1", "x")),
            (principal(Role::Partner, Some("elsewhere")), BalanceActionKind::TopUp, body("r-5")),
            (principal(Role::ProductManager, None), BalanceActionKind::TopUp, body("r-6")),
        ];
        for (who, kind, body) in refused {
            let result = f.customers.request_balance_action(&who, kind, &body, at(2)).await;
            assert_eq!(field_of(result.expect_err("refused")).0, "forbidden", "{who:?} {kind:?}");
        }
        let partner = principal(Role::Partner, Some(&f.account));
        f.customers.request_balance_action(&partner, BalanceActionKind::TopUp, &body("p-1"), at(3)).await.expect("a partner tops up its hierarchy");
        let finance = principal(Role::Finance, None);
        let adjusted = f.customers
            .request_balance_action(&finance, BalanceActionKind::Adjust, &adjust("f-1", &f.account, "-0.25", "duplicate charge"), at(4))
            .await
            .expect("finance adjusts");
        assert_eq!(adjusted.doc["balanceAfter"]["amount"], json!(0.75));
        // More than is available is refused before anything is recorded.
        let too_much = f.customers
            .request_balance_action(&finance, BalanceActionKind::Adjust, &adjust("f-2", &f.account, "-5", "x"), at(5))
            .await;
        assert_eq!(field_of(too_much.expect_err("too much")), ("conflict", "amount.amount".into()));
        assert_eq!(store.balance_action(BalanceActionKind::Adjust, "f-2").await.expect("read"), None);
        // The account's currency, an account that exists, an account not closed.
        let admin = Principal::admin("test");
        let usd = json!({"id": "u-1", "partyAccount": {"id": f.account}, "amount": {"amount": 1, "units": "USD"}}).to_string();
        let result = f.customers.request_balance_action(&admin, BalanceActionKind::TopUp, usd.as_bytes(), at(6)).await;
        assert_eq!(field_of(result.expect_err("currency")), ("invalid", "amount.units".into()));
        let result = f.customers.request_balance_action(&admin, BalanceActionKind::TopUp, &topup("n-1", "nope", json!(1)), at(6)).await;
        assert_eq!(field_of(result.expect_err("no account")), ("invalid", "partyAccount.id".into()));
        f.customers.set_account_state(&admin, &f.account, AccountState::Closed, Some("refunded in cash"), at(7)).await.expect("close");
        worker.run_once(Timestamp::now()).await.expect("pass");
        let result = f.customers.request_balance_action(&admin, BalanceActionKind::TopUp, &body("c-1"), at(8)).await;
        assert_eq!(field_of(result.expect_err("closed")), ("conflict", "partyAccount.id".into()));
    }
}

store_test! {
    async fn lifecycle_steps_reach_the_engine_and_a_refused_one_is_undone(store) {
        let tollgate_customers::testing::Model { engine, worker, customers, .. } = model_engine(&store);
        let f = prepaid(&store, &customers, &worker).await;
        let admin = Principal::admin("ops");
        let state = |doc: &Value| doc["state"].as_str().expect("state").to_owned();

        let suspended = f.customers.set_account_state(&admin, &f.account, AccountState::Suspended, None, at(2)).await.expect("suspend");
        assert_eq!(state(&suspended.value), "Suspended");
        worker.run_once(Timestamp::now()).await.expect("pass");
        assert!(engine.account(f.engine_id).expect("account").suspended);
        let resumed = f.customers.set_account_state(&admin, &f.account, AccountState::Active, None, at(3)).await.expect("resume");
        assert_eq!(state(&resumed.value), "Active");
        worker.run_once(Timestamp::now()).await.expect("pass");
        assert!(!engine.account(f.engine_id).expect("account").suspended);

        // Prepaid to postpaid with a credit limit, and a limit lowered below what is owed
        // refused before it is recorded.
        let patch = json!({"accountType": "postpaid", "creditLimit": {"unit": "EUR", "value": 50}});
        let postpaid = f.customers.patch_account(&admin, &f.account, &patch, resumed.version, at(4)).await.expect("to postpaid");
        worker.run_once(Timestamp::now()).await.expect("pass");
        let held = engine.account(f.engine_id).expect("account");
        assert_eq!((held.account_type, held.credit_limit.to_string()), (AccountType::Postpaid, "50".to_owned()));
        engine.edit(f.engine_id, |account| account.balance = rust_decimal::Decimal::from(-30));
        let lower = json!({"creditLimit": {"unit": "EUR", "value": 20}});
        let result = f.customers.patch_account(&admin, &f.account, &lower, postpaid.version, at(5)).await;
        assert_eq!(field_of(result.expect_err("owes more")), ("conflict", "creditLimit.value".into()));

        // A close is refused while money is owed or held, or a subscription lives.
        let close = json!({"state": "Closed"});
        let result = f.customers.patch_account(&admin, &f.account, &close, postpaid.version, at(6)).await;
        assert_eq!(field_of(result.expect_err("money left")), ("conflict", "state".into()));
        engine.edit(f.engine_id, |account| {
            account.balance = rust_decimal::Decimal::ZERO;
            account.live_subscriptions = vec![7];
        });
        let result = f.customers.patch_account(&admin, &f.account, &close, postpaid.version, at(7)).await;
        match result {
            Err(CustomersError::Conflict { field, reason }) => assert!(field == "state" && reason.contains("subscription 7"), "{reason}"),
            other => panic!("{other:?}"),
        }
        engine.edit(f.engine_id, |account| account.live_subscriptions.clear());

        // The engine is unreachable when the close is recorded, and money arrives before
        // it gets there: the engine refuses, and the account is Active again, audited, and
        // announced to the account hub's listeners like the close was.
        let secret = tollgate_store::HubSecret::generate().expect("a secret");
        let (filter, listener) = (tollgate_store::EventFilter::default(), tollgate_store::new_entity_id().expect("id"));
        let mut tx = store.begin().await.expect("begin");
        let new = tollgate_store::NewListener {
            id: &listener,
            api: tollgate_customers::ACCOUNT_BASE_PATH,
            callback: "http://127.0.0.1:9/",
            query: None,
            filter: &filter,
            secret: &secret,
            created_by: "test",
        };
        tx.insert_listener(new, at(0)).await.expect("listen");
        tx.commit().await.expect("commit");
        engine.set_down(true);
        let closed = f.customers.patch_account(&admin, &f.account, &close, postpaid.version, at(8)).await.expect("recorded");
        assert_eq!(state(&closed.value), "Closed");
        engine.edit(f.engine_id, |account| account.balance = rust_decimal::Decimal::from(3));
        engine.set_down(false);
        worker.run_once(Timestamp::now()).await.expect("pass");
        assert!(!engine.account(f.engine_id).expect("account").closed);
        let now = f.customers.get_account(&admin, &f.account).await.expect("account");
        assert_eq!(state(&now.value), "Active");
        assert_eq!(now.version.get(), closed.version.get() + 1, "a versioned compensating update");
        let audit = store.audit_entries(Some(("BillingAccount", &f.account)), 0, 100).await.expect("audit");
        let last = audit.last().expect("an entry");
        assert_eq!((last.actor.as_str(), last.action.as_str()), ("engine", "engine-refused"));
        let after = last.after.as_ref().expect("after");
        assert!(after["engineRefused"]["reason"].as_str().expect("reason").contains("settle_reason"), "{after}");
        let lease = std::time::Duration::from_secs(60);
        let later = Timestamp::now().checked_add(jiff::SignedDuration::from_hours(1)).expect("an hour on");
        let mut states = Vec::new();
        loop {
            let claimed = store.claim_deliveries(later, 100, lease, &[]).await.expect("claim");
            if claimed.is_empty() {
                break;
            }
            for delivery in claimed {
                let body: Value = serde_json::from_str(&delivery.body).expect("JSON");
                states.push((delivery.event_type.clone(), body["event"]["billingAccount"]["state"].clone()));
                store.deliveries_done(&[delivery.id], later).await.expect("done");
            }
        }
        let change = "BillingAccountStateChangeEvent".to_owned();
        assert_eq!(states, [(change.clone(), json!("Closed")), (change, json!("Active"))], "the close, then its undoing");

        // Settled by an explicit final adjustment, the close goes through; a closed
        // account takes no change.
        f.customers
            .request_balance_action(&admin, BalanceActionKind::Adjust, &adjust("final", &f.account, "-3", "final settlement"), at(9))
            .await
            .expect("settle");
        let closed = f.customers.patch_account(&admin, &f.account, &close, now.version, at(10)).await.expect("close");
        worker.run_once(Timestamp::now()).await.expect("pass");
        assert!(engine.account(f.engine_id).expect("account").closed);
        let result = f.customers.patch_account(&admin, &f.account, &json!({"name": "x"}), closed.version, at(11)).await;
        assert_eq!(field_of(result.expect_err("closed")), ("conflict", "state".into()));
        let result = f.customers.patch_account(&admin, &f.account, &json!({"state": "Active"}), closed.version, at(11)).await;
        assert_eq!(field_of(result.expect_err("closed")), ("conflict", "state".into()));
        assert_eq!(store.outbox_counts().await.expect("counts").failed, 0);
    }
}

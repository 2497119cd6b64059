//! Balance requests (TMF654 top-ups and adjustments) as rows: money exact, an id unique per
//! kind (the other kind may reuse it), the engine's answer recorded once, lists by account,
//! status and hierarchy.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::json;
use tollgate_store::{
    store_test, BalanceActionFilter, BalanceActionKind, BalanceActionRow, BalanceActionStatus, BillingAccountRow,
    CustomerRow, StoreError,
};

use crate::at;

fn action(kind: BalanceActionKind, id: &str, account: &str, amount: &str) -> BalanceActionRow {
    BalanceActionRow {
        kind,
        id: id.into(),
        billing_account_id: account.into(),
        amount: Decimal::from_str(amount).expect("decimal"),
        currency: "EUR".into(),
        request: json!({"id": id, "amount": amount}),
        idempotency_key: format!("bss:{}:{id}", kind.as_str()),
        status: BalanceActionStatus::Created,
        balance_after: None,
        failure_reason: None,
        actor: "test".into(),
        requested_at: at(0),
        confirmed_at: None,
    }
}

async fn accounts(store: &tollgate_store::Store) {
    let mut tx = store.begin().await.expect("begin");
    let customer = CustomerRow {
        id: "c1".into(),
        party_type: "individual".into(),
        name: "Ada".into(),
        status: "Approved".into(),
        doc: json!({}),
        anonymised_at: None,
    };
    tx.insert_customer(&customer, at(0)).await.expect("customer");
    for (id, root) in [("a1", "a1"), ("a2", "a2")] {
        let account = BillingAccountRow {
            id: id.into(),
            engine_account_id: 0,
            customer_id: "c1".into(),
            parent_id: None,
            root_id: root.into(),
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
    }
    tx.commit().await.expect("commit");
}

store_test! {
    async fn balance_actions_round_trip_and_record_one_answer(store) {
        accounts(&store).await;
        let mut tx = store.begin().await.expect("begin");
        tx.insert_balance_action(&action(BalanceActionKind::TopUp, "t1", "a1", "10.50")).await.expect("insert");
        tx.insert_balance_action(&action(BalanceActionKind::Adjust, "t1", "a1", "-0.0001")).await.expect("the other kind may reuse an id");
        tx.insert_balance_action(&action(BalanceActionKind::TopUp, "t2", "a2", "3")).await.expect("insert");
        match tx.insert_balance_action(&action(BalanceActionKind::TopUp, "t1", "a2", "1")).await {
            Err(StoreError::Conflict { what: "balance action", .. }) => {}
            other => panic!("{other:?}"),
        }
        tx.commit().await.expect("commit");

        let read = store.balance_action(BalanceActionKind::TopUp, "t1").await.expect("read").expect("present");
        assert_eq!(read, action(BalanceActionKind::TopUp, "t1", "a1", "10.50"));
        assert_eq!(read.amount.to_string(), "10.50", "every digit and the scale");
        let adjust = store.balance_action(BalanceActionKind::Adjust, "t1").await.expect("read").expect("present");
        assert_eq!(adjust.amount.to_string(), "-0.0001");

        let mut tx = store.begin().await.expect("begin");
        let after = Some(Decimal::from_str("10.50").expect("decimal"));
        assert!(tx.settle_balance_action("bss:topup:t1", BalanceActionStatus::Completed, after, None, at(5)).await.expect("settle"));
        assert!(!tx.settle_balance_action("bss:topup:t1", BalanceActionStatus::Failed, None, Some("late"), at(6)).await.expect("settle"), "the first answer stands");
        assert!(matches!(
            tx.settle_balance_action("bss:topup:t2", BalanceActionStatus::Created, None, None, at(6)).await,
            Err(StoreError::Invalid { field: "status", .. })
        ));
        assert!(tx.settle_balance_action("bss:topup:t2", BalanceActionStatus::Failed, None, Some("closed"), at(7)).await.expect("settle"));
        let by_key = tx.balance_action_by_key("bss:topup:t1").await.expect("read").expect("present");
        assert_eq!((by_key.status, by_key.balance_after, by_key.confirmed_at), (BalanceActionStatus::Completed, after, Some(at(5))));
        tx.commit().await.expect("commit");

        let filter = |account: Option<&str>, status: Option<&str>, root: Option<&str>| BalanceActionFilter {
            kind: BalanceActionKind::TopUp,
            billing_account_id: account.map(str::to_owned),
            status: status.map(str::to_owned),
            root_id: root.map(str::to_owned),
        };
        let ids = |page: tollgate_store::BalanceActionPage| {
            (page.items.into_iter().map(|row| row.id).collect::<Vec<_>>(), page.total)
        };
        assert_eq!(ids(store.balance_action_list(&filter(None, None, None), 0, 10).await.expect("list")), (vec!["t1".to_owned(), "t2".to_owned()], 2));
        assert_eq!(ids(store.balance_action_list(&filter(Some("a2"), None, None), 0, 10).await.expect("list")), (vec!["t2".to_owned()], 1));
        assert_eq!(ids(store.balance_action_list(&filter(None, Some("completed"), None), 0, 10).await.expect("list")), (vec!["t1".to_owned()], 1));
        assert_eq!(ids(store.balance_action_list(&filter(None, None, Some("a2")), 0, 10).await.expect("list")), (vec!["t2".to_owned()], 1));
        assert_eq!(ids(store.balance_action_list(&filter(None, None, None), 1, 10).await.expect("list")), (vec!["t2".to_owned()], 2));
        let failed = store.balance_action(BalanceActionKind::TopUp, "t2").await.expect("read").expect("present");
        assert_eq!((failed.status, failed.failure_reason.as_deref()), (BalanceActionStatus::Failed, Some("closed")));
    }
}

store_test! {
    async fn a_balance_action_names_an_existing_account(store) {
        let mut tx = store.begin().await.expect("begin");
        assert!(matches!(
            tx.insert_balance_action(&action(BalanceActionKind::TopUp, "t1", "nope", "1")).await,
            Err(StoreError::Database { .. })
        ));
    }
}

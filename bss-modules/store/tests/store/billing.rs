//! Billing's rows: a draft invoice written with its lines and billed items, money exact;
//! an item billed once and an account invoiced once per cycle; numbers assigned only when
//! final, gap-free per issuer and series, also when finalisations race or roll back; a
//! final invoice and its lines refused any change by the database; a credit note names a
//! final invoice; bill runs reopened as they stand; the bill run's reads (hierarchies,
//! products with their offering's recurring and one-time prices).

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::json;
use tollgate_store::testing::raw_sql;
use tollgate_store::{
    store_test, AddOnRow, BillRunState, BilledItem, BilledKind, BillingAccountRow, CatalogueItem, CreditRow,
    CustomerRow, DiscountRow, InvoiceFilter, InvoiceKind, InvoiceLineRow, InvoiceRow, InvoiceState, LineRow, NewMsisdn,
    NumberRangeRow, PoolChange, PoolKind, Store, StoreError, SubscriptionRow, MAX_BILL_RUN_ERROR,
};

use crate::at;

fn money(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

async fn accounts(store: &Store, ids: &[&str]) {
    let mut tx = store.begin().await.expect("begin");
    let customer = CustomerRow {
        id: "c1".into(),
        party_type: "organization".into(),
        name: "Acme".into(),
        status: "Approved".into(),
        doc: json!({}),
        anonymised_at: None,
    };
    tx.insert_customer(&customer, at(0)).await.expect("customer");
    for id in ids {
        let account = BillingAccountRow {
            id: (*id).into(),
            engine_account_id: 0,
            customer_id: "c1".into(),
            parent_id: None,
            root_id: (*id).into(),
            depth: 0,
            name: (*id).into(),
            account_type: "postpaid".into(),
            state: "Active".into(),
            currency: "EUR".into(),
            bill_cycle_day: 1,
            payment_terms_days: 30,
            tax_profile_id: None,
            credit_limit: Decimal::ZERO,
        };
        tx.insert_billing_account(&account, at(0)).await.expect("account");
    }
    tx.open_bill_run("run-1", "2026-11", "all", at(1)).await.expect("bill run");
    tx.commit().await.expect("commit");
}

fn draft(id: &str, account: &str, gross: &str) -> InvoiceRow {
    InvoiceRow {
        id: id.into(),
        kind: InvoiceKind::Invoice,
        statement: false,
        bill_run_id: Some("run-1".into()),
        billing_account_id: account.into(),
        root_id: account.into(),
        cycle: "2026-11".into(),
        period_from: "2026-11-01".into(),
        period_until: "2026-12-01".into(),
        issuer: "acme-telecom".into(),
        series: "INV".into(),
        state: InvoiceState::Draft,
        number: None,
        corrects_invoice_id: None,
        currency: "EUR".into(),
        net: money(gross),
        tax: Decimal::ZERO,
        gross: money(gross),
        content_hash: format!("sha256:{id}"),
        doc: json!({"id": id}),
        created_at: at(2),
        finalised_at: None,
    }
}

fn line(account: &str, amount: &str) -> InvoiceLineRow {
    InvoiceLineRow {
        position: 0,
        account_id: account.into(),
        kind: "usage".into(),
        charge_type: "voice".into(),
        product_id: None,
        reference: None,
        description: "calls".into(),
        period_from: Some("2026-11-01".into()),
        period_until: Some("2026-12-01".into()),
        currency: "EUR".into(),
        quantity: Some(money("12.5")),
        unit: Some("minute".into()),
        amount: money(amount),
        net: money(amount),
        tax: money("0.00"),
        gross: money(amount),
        tax_code: Some("FR-VAT-20".into()),
        tax_rate: Some(money("0.20")),
    }
}

fn item(key: &str, account: &str) -> BilledItem {
    BilledItem {
        item_key: key.into(),
        kind: BilledKind::Usage,
        billing_account_id: account.into(),
        amount: money("0.0125"),
        currency: "EUR".into(),
    }
}

async fn write_draft(store: &Store, invoice: &InvoiceRow, keys: &[&str]) -> Result<(), StoreError> {
    let mut tx = store.begin().await.expect("begin");
    let items: Vec<BilledItem> = keys.iter().map(|key| item(key, &invoice.billing_account_id)).collect();
    tx.insert_draft_invoice(invoice, &[line(&invoice.billing_account_id, "10.05")], &items, at(2)).await?;
    tx.commit().await
}

store_test! {
    async fn a_draft_round_trips_and_bills_each_item_once(store) {
        accounts(&store, &["a1", "a2"]).await;
        write_draft(&store, &draft("i1", "a1", "10.05"), &["usage:1:1:0", "usage:1:2:0"]).await.expect("draft");
        let read = store.invoice("i1").await.expect("read").expect("present");
        assert_eq!(read, draft("i1", "a1", "10.05"));
        assert_eq!(store.invoice_lines("i1").await.expect("lines"), vec![line("a1", "10.05")]);
        assert_eq!(store.invoice_lines("i1").await.expect("lines")[0].quantity.map(|q| q.to_string()).as_deref(), Some("12.5"));
        let billed = store.billed_items_of("i1").await.expect("billed");
        assert_eq!(billed.iter().map(|item| item.item_key.as_str()).collect::<Vec<_>>(), ["usage:1:1:0", "usage:1:2:0"]);
        assert_eq!(billed[0].amount.to_string(), "0.0125", "every digit and the scale");
        let invoices = ["i1".to_owned(), "nothing".to_owned()];
        let by_invoice = store.billed_items_of_invoices(&invoices).await.expect("billed");
        assert_eq!(by_invoice.keys().collect::<Vec<_>>(), ["i1"], "an invoice without items is absent");
        assert_eq!(by_invoice["i1"], billed, "the same items, in key order");

        // Another invoice may not bill an item again; the refusal leaves nothing behind.
        match write_draft(&store, &draft("i2", "a2", "1"), &["usage:9:9:0", "usage:1:2:0"]).await {
            Err(StoreError::Conflict { what: "billed item", .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(store.invoice("i2").await.expect("read"), None);
        // An account has one invoice per cycle.
        match write_draft(&store, &draft("i3", "a1", "1"), &[]).await {
            Err(StoreError::Conflict { what: "invoice of account and cycle", .. }) => {}
            other => panic!("{other:?}"),
        }
        let keys = vec!["usage:1:1:0".to_owned(), "usage:9:9:0".to_owned()];
        assert_eq!(store.billed_keys(&keys).await.expect("keys").into_iter().collect::<Vec<_>>(), ["usage:1:1:0"]);
        let accounts = ["a1".to_owned(), "a2".to_owned(), "nobody".to_owned()];
        let invoiced = store.invoiced_accounts(&accounts, "2026-11").await.expect("invoiced");
        assert_eq!(invoiced, ["a1".to_owned()].into(), "only a1 has its November invoice");
        assert!(store.invoiced_accounts(&accounts, "2026-12").await.expect("invoiced").is_empty());
    }
}

store_test! {
    async fn two_transactions_numbering_the_same_invoices_in_opposite_orders_queue_on_the_series(store) {
        accounts(&store, &["a1", "a2"]).await;
        for (id, account) in [("i1", "a1"), ("i2", "a2")] {
            write_draft(&store, &draft(id, account, "5"), &[]).await.expect("draft");
        }
        let series: std::collections::BTreeSet<(String, String)> = [("acme-telecom".to_owned(), "INV".to_owned())].into();
        let mut first = store.begin().await.expect("begin");
        first.lock_invoice_series(&series).await.expect("lock");
        assert_eq!(first.finalise_invoice("i1", at(3)).await.expect("finalise"), 1);
        // A second bill run's batch, in the other order: without the series locked first it
        // would hold i2 while waiting for the series, which the first holds while it waits
        // for i2 (PostgreSQL aborts one as a deadlock).
        let (other, other_series) = (store.clone(), series.clone());
        let second = tokio::spawn(async move {
            let mut tx = other.begin().await?;
            tx.lock_invoice_series(&other_series).await?;
            let two = tx.finalise_invoice("i2", at(4)).await?;
            let one = tx.finalise_invoice("i1", at(4)).await?;
            tx.commit().await?;
            Ok::<_, StoreError>((one, two))
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(first.finalise_invoice("i2", at(3)).await.expect("no deadlock"), 2);
        first.commit().await.expect("commit");
        assert_eq!(second.await.expect("task").expect("the second waited for the first"), (1, 2), "their numbers kept");
    }
}

store_test! {
    async fn numbers_are_assigned_when_final_gap_free_and_kept(store) {
        accounts(&store, &["a1", "a2", "a3"]).await;
        for (id, account) in [("i1", "a1"), ("i2", "a2"), ("i3", "a3")] {
            write_draft(&store, &draft(id, account, "5"), &[]).await.expect("draft");
        }
        // A finalisation rolled back gives its number back.
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(tx.finalise_invoice("i2", at(3)).await.expect("finalise"), 1);
        tx.rollback().await.expect("rollback");
        assert_eq!(store.invoice("i2").await.expect("read").expect("present").state, InvoiceState::Draft);

        let mut tx = store.begin().await.expect("begin");
        assert_eq!(tx.finalise_invoice("i2", at(3)).await.expect("finalise"), 1);
        assert_eq!(tx.finalise_invoice("i1", at(3)).await.expect("finalise"), 2);
        assert_eq!(tx.finalise_invoice("i2", at(4)).await.expect("again"), 1, "a final invoice keeps its number");
        assert!(matches!(tx.finalise_invoice("nope", at(4)).await, Err(StoreError::NotFound { entity: "invoice", .. })));
        tx.commit().await.expect("commit");
        let final_one = store.invoice("i2").await.expect("read").expect("present");
        assert_eq!((final_one.state, final_one.number, final_one.finalised_at), (InvoiceState::Final, Some(1), Some(at(3))));

        // Another series counts on its own.
        let mut other = draft("i4", "a3", "1");
        other.cycle = "2026-12".into();
        other.series = "B2B".into();
        write_draft(&store, &other, &[]).await.expect("draft");
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(tx.finalise_invoice("i4", at(5)).await.expect("finalise"), 1);
        assert_eq!(tx.finalise_invoice("i3", at(5)).await.expect("finalise"), 3);
        tx.commit().await.expect("commit");

        let (list, total) = store.invoice_list(&InvoiceFilter { state: Some("final".into()), ..InvoiceFilter::default() }, 0, 10).await.expect("list");
        assert_eq!(total, 4);
        assert_eq!(list.iter().map(|row| (row.id.as_str(), row.number)).collect::<Vec<_>>(),
            [("i1", Some(2)), ("i2", Some(1)), ("i3", Some(3)), ("i4", Some(1))]);
        let (run, _) = store.invoice_list(&InvoiceFilter { billing_account_id: Some("a3".into()), ..InvoiceFilter::default() }, 0, 10).await.expect("list");
        assert_eq!(run.len(), 2);
    }
}

store_test! {
    async fn a_final_invoice_and_its_lines_are_never_changed(store) {
        accounts(&store, &["a1", "a2"]).await;
        write_draft(&store, &draft("i1", "a1", "5"), &[]).await.expect("draft");
        write_draft(&store, &draft("i2", "a2", "5"), &[]).await.expect("draft");
        let mut tx = store.begin().await.expect("begin");
        tx.finalise_invoice("i1", at(3)).await.expect("finalise");
        tx.commit().await.expect("commit");
        for sql in [
            "UPDATE invoices SET gross = 1 WHERE id = 'i1'",
            "DELETE FROM invoices WHERE id = 'i1'",
            "UPDATE invoice_lines SET amount = 1 WHERE invoice_id = 'i1'",
            "DELETE FROM invoice_lines WHERE invoice_id = 'i1'",
            "INSERT INTO invoice_lines (invoice_id, position, account_id, kind, charge_type, description, currency,
                 amount, net, tax, gross) VALUES ('i1', 9, 'a1', 'usage', 'voice', '', 'EUR', '1', '1', '0', '1')",
        ] {
            assert!(raw_sql(&store, sql).await.is_err(), "refused: {sql}");
        }
        assert_eq!(store.invoice("i1").await.expect("read").expect("present").gross, money("5"));
        assert_eq!(store.invoice_lines("i1").await.expect("lines").len(), 1);
        // A draft may still change.
        raw_sql(&store, "UPDATE invoice_lines SET description = 'x' WHERE invoice_id = 'i2'").await.expect("a draft's line");
        raw_sql(&store, "UPDATE invoices SET content_hash = 'x' WHERE id = 'i2'").await.expect("a draft");
    }
}

store_test! {
    async fn a_credit_note_corrects_a_final_invoice(store) {
        accounts(&store, &["a1"]).await;
        write_draft(&store, &draft("i1", "a1", "5"), &[]).await.expect("draft");
        let mut note = draft("cn1", "a1", "-5");
        note.kind = InvoiceKind::CreditNote;
        note.series = "CN".into();
        note.corrects_invoice_id = Some("i1".into());
        let mut tx = store.begin().await.expect("begin");
        assert!(matches!(
            tx.insert_draft_invoice(&note, &[], &[], at(3)).await,
            Err(StoreError::Invalid { field: "corrects_invoice_id", .. })
        ), "a draft cannot be corrected");
        drop(tx);
        let mut tx = store.begin().await.expect("begin");
        tx.finalise_invoice("i1", at(3)).await.expect("finalise");
        tx.insert_draft_invoice(&note, &[], &[], at(3)).await.expect("credit note");
        assert_eq!(tx.finalise_invoice("cn1", at(4)).await.expect("finalise"), 1, "its own series");
        tx.commit().await.expect("commit");
        let read = store.invoice("cn1").await.expect("read").expect("present");
        assert_eq!((read.kind, read.corrects_invoice_id.as_deref(), read.gross), (InvoiceKind::CreditNote, Some("i1"), money("-5")));
        let mut stray = draft("cn2", "a1", "-1");
        stray.corrects_invoice_id = Some("i1".into());
        let mut tx = store.begin().await.expect("begin");
        assert!(matches!(tx.insert_draft_invoice(&stray, &[], &[], at(3)).await, Err(StoreError::Invalid { .. })), "an invoice corrects nothing");
    }
}

store_test! {
    async fn concurrent_finalisations_give_gap_free_numbers(store) {
        let ids: Vec<String> = (0..24).map(|n| format!("a{n:02}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        accounts(&store, &refs).await;
        for id in &ids {
            write_draft(&store, &draft(&format!("i-{id}"), id, "1"), &[]).await.expect("draft");
        }
        // Two servers (two pools) finalise the same drafts at once, in opposite orders,
        // one invoice per transaction; a third of the transactions roll back.
        let second = store.open_again().await;
        let run = |store: Store, order: Vec<String>| tokio::spawn(async move {
            for (n, id) in order.iter().enumerate() {
                loop {
                    let mut tx = store.begin().await.expect("begin");
                    match tx.finalise_invoice(&format!("i-{id}"), at(5)).await {
                        Ok(_) if n % 3 == 0 => { tx.rollback().await.expect("rollback"); }
                        Ok(_) => match tx.commit().await { Ok(()) => break, Err(_) => continue },
                        // A serialisation failure or deadlock: run it again.
                        Err(_) => continue,
                    }
                    // The rolled-back one is finalised by a later pass.
                    break;
                }
            }
        });
        let forward = ids.clone();
        let backward: Vec<String> = ids.iter().rev().cloned().collect();
        let (first, second) = (run((*store).clone(), forward), run(second, backward));
        first.await.expect("first");
        second.await.expect("second");
        // Whatever was rolled back is finalised now.
        for id in &ids {
            let mut tx = store.begin().await.expect("begin");
            tx.finalise_invoice(&format!("i-{id}"), at(6)).await.expect("finalise");
            tx.commit().await.expect("commit");
        }
        let (list, total) = store.invoice_list(&InvoiceFilter::default(), 0, 100).await.expect("list");
        assert_eq!(total, 24);
        let mut numbers: Vec<i64> = list.iter().map(|row| row.number.expect("final")).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=24).collect::<Vec<_>>(), "every number once, none skipped");
    }
}

store_test! {
    async fn a_bill_run_reopens_as_it_stands(store) {
        accounts(&store, &["a1"]).await;
        let mut tx = store.begin().await.expect("begin");
        let run = tx.open_bill_run("run-1", "2026-11", "all", at(9)).await.expect("reopen");
        assert_eq!((run.state, run.started_at), (BillRunState::Drafting, at(1)));
        tx.save_bill_run("run-1", BillRunState::Finalising, Some("a1"), at(10)).await.expect("save");
        assert!(matches!(tx.open_bill_run("run-1", "2026-12", "all", at(9)).await, Err(StoreError::Conflict { what: "bill run", .. })));
        tx.commit().await.expect("commit");

        // A failed attempt is kept with the run (bounded) until an attempt gets further.
        let long = format!("no rate for {}", "é".repeat(3 * MAX_BILL_RUN_ERROR));
        assert!(store.fail_bill_run("run-1", &long, at(10)).await.expect("fail"));
        assert!(!store.fail_bill_run("nope", "x", at(10)).await.expect("fail"), "no such run");
        let run = store.bill_run("run-1").await.expect("read").expect("present");
        let (error, failed_at) = run.failure.expect("failure kept");
        assert_eq!((error.chars().count(), failed_at, run.state), (MAX_BILL_RUN_ERROR, at(10), BillRunState::Finalising));
        assert!(long.starts_with(&error));
        let mut tx = store.begin().await.expect("begin");
        tx.save_bill_run("run-1", BillRunState::Finalising, Some("a1"), at(10)).await.expect("save");
        tx.commit().await.expect("commit");
        assert_eq!(store.bill_run("run-1").await.expect("read").expect("present").failure, None, "cleared");
        assert!(store.fail_bill_run("run-1", "again", at(10)).await.expect("fail"));

        let mut tx = store.begin().await.expect("begin");
        tx.save_bill_run("run-1", BillRunState::Done, Some("a1"), at(11)).await.expect("save");
        assert!(matches!(tx.save_bill_run("nope", BillRunState::Done, None, at(11)).await, Err(StoreError::NotFound { .. })));
        tx.commit().await.expect("commit");
        let run = store.bill_run("run-1").await.expect("read").expect("present");
        assert_eq!((run.state, run.checkpoint.as_deref(), run.finished_at), (BillRunState::Done, Some("a1"), Some(at(11))));
        assert_eq!(run.failure, None, "done: the failure before is cleared");
        assert!(!store.fail_bill_run("run-1", "late", at(12)).await.expect("fail"), "a done run does not fail");
        assert_eq!(store.bill_run("run-1").await.expect("read").expect("present").failure, None);
    }
}

store_test! {
    async fn bill_runs_list_the_latest_started_first_a_page_at_a_time(store) {
        accounts(&store, &["a1"]).await;
        let mut tx = store.begin().await.expect("begin");
        tx.open_bill_run("2026-12", "2026-12", "all", at(20)).await.expect("open");
        tx.open_bill_run("2026-11:a1", "2026-11", "a1", at(15)).await.expect("open");
        tx.commit().await.expect("commit");
        let (runs, total) = store.bill_runs(0, 10).await.expect("list");
        let ids: Vec<&str> = runs.iter().map(|run| run.id.as_str()).collect();
        assert_eq!((ids, total), (vec!["2026-12", "2026-11:a1", "run-1"], 3), "run-1 was opened at 1");
        let (page, total) = store.bill_runs(1, 1).await.expect("page");
        assert_eq!((page.len(), page[0].scope.as_str(), total), (1, "a1", 3));
        assert!(store.bill_runs(5, 10).await.expect("past the end").0.is_empty());
    }
}

fn catalogue_item(id: &str, kind: &str, price: Option<(&str, &str)>, refs: &[&str]) -> CatalogueItem {
    CatalogueItem {
        kind: kind.into(),
        id: id.into(),
        name: id.into(),
        lifecycle_status: "Active".into(),
        version_label: None,
        is_bundle: None,
        price_type: price.map(|(kind, _)| kind.to_owned()),
        price: price.map(|(_, amount)| (money(amount), "EUR".to_owned())),
        doc: json!({}),
        refs: refs.iter().map(|to| ("productOfferingPrice".to_owned(), (*to).to_owned())).collect(),
    }
}

store_test! {
    async fn a_bill_run_reads_hierarchies_and_products_with_their_prices(store) {
        accounts(&store, &["a1", "a2"]).await;
        let mut tx = store.begin().await.expect("begin");
        let mut child = BillingAccountRow {
            id: "a1-child".into(),
            engine_account_id: 0,
            customer_id: "c1".into(),
            parent_id: Some("a1".into()),
            root_id: "a1".into(),
            depth: 1,
            name: "child".into(),
            account_type: "postpaid".into(),
            state: "Active".into(),
            currency: "EUR".into(),
            bill_cycle_day: 15,
            payment_terms_days: 30,
            tax_profile_id: Some("FR".into()),
            credit_limit: Decimal::ZERO,
        };
        tx.insert_billing_account(&child, at(0)).await.expect("child");
        child.id = "a1-child-2".into();
        tx.insert_billing_account(&child, at(0)).await.expect("child");
        for (id, price) in [("monthly", ("recurring", "29.99")), ("fee", ("oneTime", "10")), ("usage", ("usage", "0.01"))] {
            tx.insert_catalogue_item(&catalogue_item(id, "ProductOfferingPrice", Some(price), &[]), at(0)).await.expect("price");
        }
        tx.insert_catalogue_item(&catalogue_item("plan", "ProductOffering", None, &["monthly", "fee", "usage"]), at(0)).await.expect("offering");
        tx.insert_catalogue_item(&catalogue_item("extra", "ProductOffering", None, &["monthly"]), at(0)).await.expect("add-on offering");
        for (id, account, status, started) in [("l1", "a1-child", None, Some(at(100))), ("l2", "a2", Some("pendingActive"), None)] {
            let line = LineRow {
                subscription: SubscriptionRow {
                    id: id.into(),
                    engine_subscription_id: 0,
                    external_id: None,
                    billing_account_id: account.into(),
                    offering_id: Some("plan".into()),
                    plan_id: "plan-a".into(),
                    state: "active".into(),
                    identities: vec![format!("msisdn:{id}")],
                },
                product_status: status.map(str::to_owned),
                iccid: None,
                order_id: Some("o1".into()),
                started_at: started,
                terminated_at: None,
                created_at: at(50),
            };
            tx.insert_line(&line, at(50)).await.expect("line");
        }
        let addon = AddOnRow {
            id: "x1".into(),
            subscription_id: "l1".into(),
            offering_id: "extra".into(),
            status: "active".into(),
            order_id: "o2".into(),
            created_at: at(200),
            terminated_at: None,
        };
        tx.insert_addon(&addon, at(200)).await.expect("add-on");
        tx.commit().await.expect("commit");

        let all = store.billable_accounts(None).await.expect("accounts");
        assert_eq!(all.iter().map(|account| account.id.as_str()).collect::<Vec<_>>(), ["a1", "a1-child", "a1-child-2", "a2"], "the root first, then its children");
        assert_eq!((all[1].bill_cycle_day, all[1].tax_profile_id.as_deref(), all[1].parent_id.as_deref()), (15, Some("FR"), Some("a1")));
        assert!(all[0].engine_account_id > 1_000_000_000_000);
        let only = store.billable_accounts(Some(&["a2".to_owned()])).await.expect("accounts");
        assert_eq!(only.iter().map(|account| account.id.as_str()).collect::<Vec<_>>(), ["a2"]);

        // l1's number is a golden one: its price is a one-time charge of the line.
        let mut tx = store.begin().await.expect("begin");
        let range = NumberRangeRow { id: "r1".into(), name: "r1".into(), first: 447700900000, last: 447700900009, golden_count: 1, rules: json!([]), created_at: at(0) };
        let golden = NewMsisdn { msisdn: 447700900000, price: Some((money("99.90"), "EUR".into())) };
        tx.insert_number_range(&range, &[golden], at(0)).await.expect("range");
        let row = tx.pool_row(PoolKind::Msisdn, "447700900000").await.expect("read").expect("the golden number");
        let assign = PoolChange { state: "assigned", free_at: None, owner: None, subscription_id: Some("l1") };
        tx.change_pool_row(PoolKind::Msisdn, "447700900000", row.version, assign, at(100)).await.expect("assigned");
        tx.commit().await.expect("commit");

        let ids: Vec<String> = all.iter().map(|account| account.id.clone()).collect();
        let prices = store.product_prices(&ids).await.expect("prices");
        let seen: Vec<(&str, &str, &str, String, Option<&str>)> = prices
            .iter()
            .map(|price| (price.product_id.as_str(), price.price_id.as_str(), price.price_type.as_str(), price.amount.to_string(), price.order_id.as_deref()))
            .collect();
        // The line still being provisioned has not started; usage prices are the engine's.
        assert_eq!(seen, [
            ("l1", "fee", "oneTime", "10".to_owned(), Some("o1")),
            ("l1", "golden-number:447700900000", "oneTime", "99.90".to_owned(), Some("o1")),
            ("l1", "monthly", "recurring", "29.99".to_owned(), Some("o1")),
            ("x1", "monthly", "recurring", "29.99".to_owned(), Some("o2")),
        ]);
        assert_eq!((prices[1].price_name.as_str(), prices[1].currency.as_str()), ("Golden number 447700900000", "EUR"));
        assert_eq!((prices[0].started_at, prices[3].started_at), (at(100), at(200)), "a line's start, an add-on's creation");
        assert_eq!(prices[0].billing_account_id, "a1-child");
    }
}

store_test! {
    async fn discounts_and_credits_are_kept_exact_and_a_credit_is_never_used_beyond_its_amount(store) {
        accounts(&store, &["a1", "a2"]).await;
        let discount = |id: &str, scope: &str, product: Option<&str>, percent: Option<&str>, amount: Option<&str>| DiscountRow {
            id: id.into(),
            billing_account_id: "a1".into(),
            scope: scope.into(),
            product_id: product.map(str::to_owned),
            percent: percent.map(money),
            amount: amount.map(|amount| (money(amount), "EUR".to_owned())),
            description: "Loyalty".into(),
            charge_type: "discount".into(),
            valid_from: "2026-11-01".into(),
            valid_until: Some("2027-11-01".into()),
            created_at: at(5),
        };
        let mut tx = store.begin().await.expect("begin");
        tx.insert_discount(&discount("d1", "account", None, Some("12.5"), None)).await.expect("percent");
        tx.insert_discount(&discount("d2", "product", Some("l1"), None, Some("2.50"))).await.expect("fixed");
        assert!(matches!(tx.insert_discount(&discount("d1", "account", None, Some("1"), None)).await, Err(StoreError::Conflict { .. })));
        let credit = CreditRow {
            id: "c1".into(),
            billing_account_id: "a1".into(),
            amount: money("10.00"),
            currency: "EUR".into(),
            description: "Goodwill".into(),
            charge_type: "credit".into(),
            used: Decimal::ZERO,
            created_at: at(6),
        };
        tx.insert_credit(&credit).await.expect("credit");
        tx.commit().await.expect("commit");
        // The database refuses a discount with both a percentage and an amount.
        let mut tx = store.begin().await.expect("begin");
        assert!(tx.insert_discount(&discount("d3", "account", None, Some("5"), Some("1.00"))).await.is_err());
        tx.rollback().await.expect("rollback");

        let ids = ["a1".to_owned(), "a2".to_owned()];
        let found = store.discounts_of(&ids).await.expect("discounts");
        assert_eq!(found, [discount("d1", "account", None, Some("12.5"), None), discount("d2", "product", Some("l1"), None, Some("2.50"))]);
        // Used in two invoices' transactions: 3.33 then 6.67, exactly 10.00; a cent more is refused.
        for used in ["3.33", "6.67"] {
            let mut tx = store.begin().await.expect("begin");
            tx.use_credit("c1", money(used)).await.expect("use");
            tx.commit().await.expect("commit");
        }
        let mut tx = store.begin().await.expect("begin");
        assert!(matches!(tx.use_credit("c1", money("0.01")).await, Err(StoreError::Invalid { field: "used", .. })));
        assert!(matches!(tx.use_credit("nope", money("1")).await, Err(StoreError::NotFound { .. })));
        tx.rollback().await.expect("rollback");
        let credits = store.credits_of(&ids).await.expect("credits");
        assert_eq!((credits.len(), credits[0].used, credits[0].amount), (1, money("10.00"), money("10.00")));
    }
}

store_test! {
    async fn a_batch_is_numbered_in_its_order_per_series_and_final_ones_keep_theirs(store) {
        accounts(&store, &["a1", "a2", "a3", "a4", "a5"]).await;
        for (id, account) in [("i1", "a1"), ("i2", "a2"), ("i3", "a3")] {
            write_draft(&store, &draft(id, account, "5"), &[]).await.expect("draft");
        }
        let mut b2b = draft("i4", "a4", "1");
        b2b.series = "B2B".into();
        write_draft(&store, &b2b, &[]).await.expect("draft");
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(tx.finalise_invoice("i2", at(3)).await.expect("finalise"), 1);
        // Refused before anything is taken: an id twice (it would take two numbers), an unknown one.
        assert!(matches!(tx.finalise_invoices(&["i1", "i1"], at(4)).await, Err(StoreError::Invalid { field: "id", .. })));
        assert!(matches!(tx.finalise_invoices(&["i3", "nope"], at(4)).await, Err(StoreError::NotFound { entity: "invoice", .. })));
        // In the order given, per series; the final one keeps its number and time.
        assert_eq!(
            tx.finalise_invoices(&["i3", "i4", "i2", "i1"], at(4)).await.expect("finalise"),
            [(2, true), (1, true), (1, false), (3, true)],
            "i2 was final already"
        );
        tx.commit().await.expect("commit");
        for (id, number, finalised) in [("i1", 3, at(4)), ("i2", 1, at(3)), ("i3", 2, at(4)), ("i4", 1, at(4))] {
            let row = store.invoice(id).await.expect("read").expect("present");
            assert_eq!((row.state, row.number, row.finalised_at), (InvoiceState::Final, Some(number), Some(finalised)), "{id}");
        }
        // The counter moved by exactly what was taken: the next draft of the series is 4.
        write_draft(&store, &draft("i5", "a5", "2"), &[]).await.expect("draft");
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(tx.finalise_invoices(&["i5"], at(5)).await.expect("finalise"), [(4, true)]);
        tx.commit().await.expect("commit");
    }
}

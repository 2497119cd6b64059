//! Receivables on a real store (SQLite and PostgreSQL): payments allocated oldest due
//! first and recorded once per reference, credit on account settled when the next
//! invoice becomes final, a bank statement matched by bill number or account, aging, and
//! dunning: a reminder, then a suspend order through the order flow, each once, lifted by
//! a resume order once the account has paid; a dunning run replayed after a crash finds
//! the orders it placed.

use std::str::FromStr;
use std::sync::Arc;

use jiff::civil::{date, Date};
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_billing::{read_camt053, DunningAction, DunningPolicy};
use tollgate_customers::Principal;
use tollgate_orders::testing::{MemoryResources, ModelEngine};
use tollgate_orders::Orders;
use tollgate_receivables::{NewPayment, Receivables, ReceivablesError};
use tollgate_store::{
    store_test, BillingAccountRow, CustomerRow, InvoiceKind, InvoiceRow, InvoiceState, LineRow, Store, SubscriptionRow,
};

fn money(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

/// Noon UTC of `day`.
fn on(day: Date) -> Timestamp {
    jiff::tz::Offset::UTC.to_timestamp(day.at(12, 0, 0, 0)).expect("instant")
}

/// A postpaid EUR billing account of customer c1: a root, or a child of `parent`.
fn account_row(id: &str, parent: Option<&str>) -> BillingAccountRow {
    BillingAccountRow {
        id: id.into(),
        engine_account_id: 0,
        customer_id: "c1".into(),
        parent_id: parent.map(Into::into),
        root_id: parent.unwrap_or(id).into(),
        depth: i64::from(parent.is_some()),
        name: id.into(),
        account_type: "postpaid".into(),
        state: "Active".into(),
        currency: "EUR".into(),
        bill_cycle_day: 1,
        payment_terms_days: 30,
        tax_profile_id: None,
        credit_limit: Decimal::ZERO,
    }
}

/// Customer c1 with billing accounts a1 (a line, l1) and a2, EUR, 30 days' terms.
async fn setup(store: &Store) {
    let mut tx = store.begin().await.expect("begin");
    let customer = CustomerRow {
        id: "c1".into(),
        party_type: "organization".into(),
        name: "Acme".into(),
        status: "Approved".into(),
        doc: json!({}),
        anonymised_at: None,
    };
    tx.insert_customer(&customer, on(date(2026, 1, 1))).await.expect("customer");
    for id in ["a1", "a2"] {
        let account = account_row(id, None);
        tx.insert_billing_account(&account, on(date(2026, 1, 1))).await.expect("account");
    }
    let line = LineRow {
        subscription: SubscriptionRow {
            id: "l1".into(),
            engine_subscription_id: 0,
            external_id: None,
            billing_account_id: "a1".into(),
            offering_id: None,
            plan_id: "plan-a".into(),
            state: "active".into(),
            identities: vec!["msisdn:33600000001".into()],
        },
        product_status: None,
        iccid: None,
        order_id: None,
        started_at: Some(on(date(2026, 1, 1))),
        terminated_at: None,
        created_at: on(date(2026, 1, 1)),
    };
    tx.insert_line(&line, on(date(2026, 1, 1))).await.expect("line");
    tx.open_bill_run("run", "2026-10", "all", on(date(2026, 10, 1))).await.expect("bill run");
    tx.commit().await.expect("commit");
}

/// A final invoice of `account` for `cycle`, made final on `day` (due 30 days later).
async fn final_invoice(store: &Store, id: &str, account: &str, cycle: &str, gross: &str, day: Date) {
    let invoice = InvoiceRow {
        id: id.into(),
        kind: InvoiceKind::Invoice,
        statement: false,
        bill_run_id: Some("run".into()),
        billing_account_id: account.into(),
        root_id: account.into(),
        cycle: cycle.into(),
        period_from: format!("{cycle}-01"),
        period_until: format!("{cycle}-28"),
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
        created_at: on(day),
        finalised_at: None,
    };
    let mut tx = store.begin().await.expect("begin");
    tx.insert_draft_invoice(&invoice, &[], &[], on(day)).await.expect("draft");
    tx.finalise_invoice(id, on(day)).await.expect("final");
    tx.commit().await.expect("commit");
}

fn payment(account: &str, amount: &str, reference: &str) -> NewPayment {
    NewPayment {
        billing_account_id: account.into(),
        amount: money(amount),
        currency: "EUR".into(),
        method: "bankTransfer".into(),
        source: "api".into(),
        reference: reference.into(),
        remittance: None,
        received_on: date(2026, 11, 20),
    }
}

fn parts(allocations: &[tollgate_store::AllocationRow]) -> Vec<(String, String)> {
    allocations.iter().map(|part| (part.invoice_id.clone(), part.amount.to_string())).collect()
}

store_test! {
    async fn payments_pay_the_oldest_invoice_first_once_per_reference_and_credit_waits_for_the_next_invoice(store) {
        setup(&store).await;
        final_invoice(&store, "i-oct", "a1", "2026-10", "100.00", date(2026, 10, 1)).await;
        final_invoice(&store, "i-nov", "a1", "2026-11", "50.00", date(2026, 11, 1)).await;
        let receivables = Receivables::new(store.clone());
        let who = Principal::admin("cli:finance");
        let now = on(date(2026, 11, 20));

        let first = receivables.record(&who, payment("a1", "120.00", "r1"), now).await.expect("paid");
        assert!(first.created);
        assert_eq!(parts(&first.allocations), [("i-oct".into(), "100.00".into()), ("i-nov".into(), "20.00".into())]);

        // The same reference again (a retried request): nothing new.
        let again = receivables.record(&who, payment("a1", "120.00", "r1"), now).await.expect("repeat");
        assert!(!again.created);
        assert_eq!(again.payment.id, first.payment.id);
        let aging = receivables.aging(date(2026, 11, 20), None).await.expect("aging");
        assert_eq!(aging.len(), 1);
        assert_eq!(aging[0].aging.total(), money("30.00"), "150 billed, 120 paid once");

        // Paying more than is owed leaves credit on the account, settled on the next invoice.
        let over = receivables.record(&who, payment("a1", "40.00", "r2"), now).await.expect("paid");
        assert_eq!(parts(&over.allocations), [("i-nov".into(), "30.00".into())]);
        let (_, allocations) = store.payment(&over.payment.id).await.expect("read").expect("present");
        assert_eq!(allocations.iter().map(|a| a.amount).sum::<Decimal>(), money("30.00"));
        final_invoice(&store, "i-dec", "a1", "2026-12", "25.00", date(2026, 12, 1)).await;
        let settled = receivables.settle("system:bill-run", "a1", on(date(2026, 12, 1))).await.expect("settled");
        assert_eq!(parts(&settled), [("i-dec".into(), "10.00".into())]);
        assert!(receivables.settle("system:bill-run", "a1", on(date(2026, 12, 1))).await.expect("settled").is_empty());
        // A bill run settles only the accounts that ever paid: a1 has, a2 has not.
        let mut tx = store.begin().await.expect("begin");
        let accounts = ["a1".to_owned(), "a2".to_owned(), "nobody".to_owned()];
        let paying = tx.lock_receivables_of(&accounts).await.expect("locked");
        assert_eq!(paying.into_iter().collect::<Vec<_>>(), ["a1"]);
        tx.commit().await.expect("commit");

        // On 2027-01-15, i-dec (due 2026-12-31) is 15 days overdue with 15.00 left.
        let aging = receivables.aging(date(2027, 1, 15), Some("a1")).await.expect("aging");
        assert_eq!((aging[0].aging.days_1_30, aging[0].aging.current, aging[0].invoices), (money("15.00"), Decimal::ZERO, 1));

        // Every payment and allocation is in the audit trail.
        let audit = store.audit_entries(None, 0, 1000).await.expect("audit");
        assert_eq!(audit.iter().filter(|e| e.entity_type == "payment" && e.action == "create").count(), 2);
        assert_eq!(audit.iter().filter(|e| e.entity_type == "payment" && e.action == "allocate").count(), 1);
    }
}

store_test! {
    async fn payments_that_do_not_fit_the_account_are_refused_naming_the_field(store) {
        setup(&store).await;
        let receivables = Receivables::new(store.clone());
        let who = Principal::admin("cli:finance");
        let now = on(date(2026, 11, 20));
        let cases: [(NewPayment, &str); 6] = [
            (NewPayment { currency: "USD".into(), ..payment("a1", "1.00", "x1") }, "amount.unit"),
            (payment("a1", "0", "x2"), "amount.value"),
            (payment("a1", "1.001", "x3"), "amount.value"),
            (NewPayment { method: "cheque-ish".into(), ..payment("a1", "1", "x4") }, "paymentMethod"),
            (payment("nobody", "1", "x5"), "account.id"),
            (payment("a1", "79228162514264337593543950335", "x6"), "amount.value"),
        ];
        for (new, field) in cases {
            match receivables.record(&who, new, now).await {
                Err(ReceivablesError::Invalid { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let (rows, total) = store.payment_list(&Default::default(), 0, 10).await.expect("list");
        assert_eq!((rows.len(), total), (0, 0), "nothing refused was recorded");
    }
}

const STATEMENT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt><Id>S1</Id>
 <Ntry><Amt Ccy="EUR">60.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2026-11-21</Dt></BookgDt>
  <AcctSvcrRef>B1</AcctSvcrRef><NtryDtls><TxDtls><RmtInf><Ustrd>Bill acme-telecom/INV/2, thanks</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
 <Ntry><Amt Ccy="EUR">5.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2026-11-21</Dt></BookgDt>
  <AcctSvcrRef>B2</AcctSvcrRef><NtryDtls><TxDtls><RmtInf><Ustrd>account a2</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
 <Ntry><Amt Ccy="EUR">7.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2026-11-21</Dt></BookgDt>
  <AcctSvcrRef>B3</AcctSvcrRef><NtryDtls><TxDtls><RmtInf><Ustrd>for my phone</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>"#;

store_test! {
    async fn a_bank_statement_pays_the_bill_it_names_and_is_imported_once(store) {
        setup(&store).await;
        final_invoice(&store, "i-oct", "a1", "2026-10", "100.00", date(2026, 10, 1)).await;
        final_invoice(&store, "i-nov", "a1", "2026-11", "50.00", date(2026, 11, 1)).await;
        let receivables = Receivables::new(store.clone());
        let statement = read_camt053(STATEMENT).expect("statement");
        let now = on(date(2026, 11, 22));
        let report = receivables.import_statement("cli:finance", &statement, now).await.expect("import");
        assert_eq!((report.recorded, report.already_recorded), (2, 0));
        assert_eq!(report.amount_recorded.get("EUR"), Some(&money("65.00")));
        assert_eq!(report.rejects.len(), 1);
        assert_eq!(report.rejects[0].1, "B3");
        assert!(report.rejects[0].2.contains("remittance"), "{:?}", report.rejects);

        // Bill number 2 is i-nov: paid first although i-oct is older.
        let (rows, _) = store.payment_list(&tollgate_store::PaymentFilter { billing_account_id: Some("a1".into()), root_id: None }, 0, 10).await.expect("list");
        let (_, allocations) = store.payment(&rows[0].id).await.expect("read").expect("present");
        assert_eq!(parts(&allocations), [("i-nov".into(), "50.00".into()), ("i-oct".into(), "10.00".into())]);
        // a2 has no invoice: its 5.00 waits as credit.
        let (rows, _) = store.payment_list(&tollgate_store::PaymentFilter { billing_account_id: Some("a2".into()), root_id: None }, 0, 10).await.expect("list");
        assert_eq!(rows.len(), 1);

        let again = receivables.import_statement("cli:finance", &statement, now).await.expect("import");
        assert_eq!((again.recorded, again.already_recorded), (0, 2));
        let (_, total) = store.payment_list(&Default::default(), 0, 10).await.expect("list");
        assert_eq!(total, 2);

        // Regression: a reference recorded before coming back for another amount was
        // counted as recorded before (the money lost without a word), and an unknown
        // currency ended the import at that credit. Both are rejects now; the rest of the
        // statement is read on.
        let other = STATEMENT
            .replace(r#"<Amt Ccy="EUR">5.00</Amt>"#, r#"<Amt Ccy="EUR">6.00</Amt>"#)
            .replace(r#"<Amt Ccy="EUR">60.00</Amt>"#, r#"<Amt Ccy="eur">60.00</Amt>"#)
            .replace("<AcctSvcrRef>B1</AcctSvcrRef>", "<AcctSvcrRef>B9</AcctSvcrRef>")
            .replace("for my phone", "account a2");
        let report = receivables.import_statement("cli:finance", &read_camt053(&other).expect("statement"), now).await.expect("import");
        let rejected: Vec<(&str, bool)> = report.rejects.iter().map(|r| (r.1.as_str(), r.2.contains("B2") || r.2.contains("eur"))).collect();
        assert_eq!(rejected, [("B9", true), ("B2", true)], "{:?}", report.rejects);
        assert_eq!(report.recorded, 1, "B3 now names account a2");

        // A remittance naming two accounts (and no bill) pays neither; an unreadable
        // amount's reject keeps the entry's reference.
        let third = STATEMENT
            .replace("<AcctSvcrRef>B2</AcctSvcrRef>", "<AcctSvcrRef>B20</AcctSvcrRef>")
            .replace("account a2", "account a1 or a2")
            .replace(r#"<Amt Ccy="EUR">60.00</Amt>"#, r#"<Amt Ccy="EUR">6x</Amt>"#);
        let report = receivables.import_statement("cli:finance", &read_camt053(&third).expect("statement"), now).await.expect("import");
        let rejected: Vec<&str> = report.rejects.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(rejected, ["B1", "B20", "B3"], "{:?}", report.rejects);
        assert!(report.rejects[1].2.contains("a1 and a2"), "{:?}", report.rejects);
    }
}

/// The set-up with invoice `i-oct` of account `a1` due 2026-10-31, and the orders,
/// receivables and default dunning policy over the store.
async fn overdue(store: &Store) -> (Orders, Receivables, DunningPolicy) {
    setup(store).await;
    final_invoice(store, "i-oct", "a1", "2026-10", "100.00", date(2026, 10, 1)).await;
    let orders =
        Orders::new(store.clone(), Arc::new(ModelEngine::new(&["plan-a"])), Arc::new(MemoryResources::new(&[], &[])));
    (orders, Receivables::new(store.clone()), DunningPolicy::default())
}

store_test! {
    async fn dunning_reminds_then_suspends_through_an_order_once_and_resumes_after_payment(store) {
        let (orders, receivables, policy) = overdue(&store).await;

        let early = receivables.dunning(&orders, &policy, date(2026, 11, 6), "system:dunning", on(date(2026, 11, 6))).await.expect("dunning");
        assert!(early.taken.is_empty(), "6 days overdue: nothing yet");
        let reminded = receivables.dunning(&orders, &policy, date(2026, 11, 7), "system:dunning", on(date(2026, 11, 7))).await.expect("dunning");
        assert_eq!(reminded.taken.iter().map(|t| (t.1.as_str(), t.2)).collect::<Vec<_>>(), [("reminder", DunningAction::Reminder)]);
        let repeat = receivables.dunning(&orders, &policy, date(2026, 11, 8), "system:dunning", on(date(2026, 11, 8))).await.expect("dunning");
        assert!(repeat.taken.is_empty(), "a step is taken once");

        let suspended = receivables.dunning(&orders, &policy, date(2026, 11, 21), "system:dunning", on(date(2026, 11, 21))).await.expect("dunning");
        assert_eq!(suspended.taken.len(), 1);
        let (_, step, action, placed) = &suspended.taken[0];
        assert_eq!((step.as_str(), *action, placed.len()), ("suspend", DunningAction::Suspend, 1));
        let who = Principal::admin("test");
        let order = orders.get(&who, &placed[0]).await.expect("the suspend order").value;
        assert_eq!(order["billingAccount"]["id"], "a1");
        assert_eq!((&order["productOrderItem"][0]["product"]["id"], &order["productOrderItem"][0]["product"]["status"]), (&json!("l1"), &json!("suspended")));
        assert!(receivables.dunning(&orders, &policy, date(2026, 11, 22), "system:dunning", on(date(2026, 11, 22))).await.expect("dunning").taken.is_empty());

        // The order flow suspends the line (its worker is not running here).
        let mut tx = store.begin().await.expect("begin");
        let line = tx.line("l1").await.expect("read").expect("line");
        let mut row = line.value.clone();
        row.subscription.state = "suspended".into();
        tx.update_line(&row, line.version, on(date(2026, 11, 22))).await.expect("suspended");
        tx.commit().await.expect("commit");

        // Still owed: stays suspended.
        let none = receivables.dunning(&orders, &policy, date(2026, 11, 23), "system:dunning", on(date(2026, 11, 23))).await.expect("dunning");
        assert!(none.lifted.is_empty());
        receivables.record(&who, payment("a1", "100.00", "paid-in-full"), on(date(2026, 11, 24))).await.expect("paid");
        // Paid while the suspend order is still under way: no lift yet (a resume order
        // now would leave the line suspended once the suspend order ends).
        let early = receivables.dunning(&orders, &policy, date(2026, 11, 24), "system:dunning", on(date(2026, 11, 24))).await.expect("dunning");
        assert!(early.lifted.is_empty(), "lifted while the suspend order runs: {early:?}");
        complete_order(&store, &placed[0], date(2026, 11, 24)).await;
        let lifted = receivables.dunning(&orders, &policy, date(2026, 11, 24), "system:dunning", on(date(2026, 11, 24))).await.expect("dunning");
        assert_eq!(lifted.lifted.len(), 1);
        let resume = orders.get(&who, &lifted.lifted[0].2[0]).await.expect("the resume order").value;
        assert_eq!((&resume["productOrderItem"][0]["product"]["id"], &resume["productOrderItem"][0]["product"]["status"]), (&json!("l1"), &json!("active")));
        let again = receivables.dunning(&orders, &policy, date(2026, 11, 25), "system:dunning", on(date(2026, 11, 25))).await.expect("dunning");
        assert!(again.lifted.is_empty() && again.taken.is_empty());

        // The reminder is in the audit trail with what it told.
        let events: Vec<Value> = store.audit_entries(Some(("dunning", "i-oct/reminder")), 0, 10).await.expect("audit").into_iter().filter_map(|e| e.after).collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["daysOverdue"], 7);
    }
}

store_test! {
    async fn a_dunning_run_replayed_after_a_crash_finds_the_suspend_order_it_placed(store) {
        let (orders, receivables, policy) = overdue(&store).await;
        // A run placed the suspend order, then died before it recorded the step.
        let who = Principal::admin("system:dunning");
        let doc = json!({"billingAccount": {"id": "a1"}, "productOrderItem": [
            {"id": "1", "action": "modify", "product": {"id": "l1", "status": "suspended"}}]});
        let first = orders.create_once(&who, doc, "dunning:i-oct:suspend:a1", on(date(2026, 11, 21))).await.expect("first order");
        let first = first.value["id"].as_str().expect("id").to_owned();

        let replayed = receivables.dunning(&orders, &policy, date(2026, 11, 21), "system:dunning", on(date(2026, 11, 21))).await.expect("dunning");
        let suspend = replayed.taken.iter().find(|taken| taken.2 == DunningAction::Suspend).expect("the suspend step");
        assert_eq!(suspend.3, [first], "the step names the order placed before the crash");
        let placed = store.product_order_list(&Default::default(), 0, 10).await.expect("orders");
        assert_eq!(placed.total, 1, "no second suspend order");
    }
}

/// Marks line `id` suspended, as the order flow (or a care agent) does.
async fn suspend_line(store: &Store, id: &str, day: Date) {
    let mut tx = store.begin().await.expect("begin");
    let line = tx.line(id).await.expect("read").expect("line");
    let mut row = line.value.clone();
    row.subscription.state = "suspended".into();
    tx.update_line(&row, line.version, on(day)).await.expect("suspended");
    tx.commit().await.expect("commit");
}

store_test! {
    async fn a_replayed_dunning_run_whose_suspend_order_completed_lifts_only_the_lines_it_suspended(store) {
        let (orders, receivables, policy) = overdue(&store).await;
        // l2, on the same account, suspended at the customer's request before the dunning.
        let mut tx = store.begin().await.expect("begin");
        let mut l2 = tx.line("l1").await.expect("read").expect("line").value;
        l2.subscription.id = "l2".into();
        l2.subscription.engine_subscription_id = 1;
        l2.subscription.identities = vec!["msisdn:33600000002".into()];
        l2.subscription.state = "suspended".into();
        tx.insert_line(&l2, on(date(2026, 2, 1))).await.expect("line");
        tx.commit().await.expect("commit");
        // A run placed the suspend order, the order flow completed it, and the run died
        // before it recorded the step.
        let who = Principal::admin("system:dunning");
        let doc = json!({"billingAccount": {"id": "a1"}, "productOrderItem": [
            {"id": "1", "action": "modify", "product": {"id": "l1", "status": "suspended"}}]});
        let first = orders.create_once(&who, doc, "dunning:i-oct:suspend:a1", on(date(2026, 11, 21))).await.expect("first order");
        let first = first.value["id"].as_str().expect("id").to_owned();
        suspend_line(&store, "l1", date(2026, 11, 21)).await;
        complete_order(&store, &first, date(2026, 11, 21)).await;

        let replayed = receivables.dunning(&orders, &policy, date(2026, 11, 21), "system:dunning", on(date(2026, 11, 21))).await.expect("dunning");
        let suspend = replayed.taken.iter().find(|taken| taken.2 == DunningAction::Suspend).expect("the suspend step");
        assert_eq!(suspend.3, [first], "the step names the order placed before the crash, though its line is suspended now");

        receivables.record(&who, payment("a1", "100.00", "paid-in-full"), on(date(2026, 11, 24))).await.expect("paid");
        let lifted = receivables.dunning(&orders, &policy, date(2026, 11, 24), "system:dunning", on(date(2026, 11, 24))).await.expect("dunning");
        assert_eq!(lifted.lifted.len(), 1);
        let mut resumed = Vec::new();
        for id in &lifted.lifted[0].2 {
            resumed.push(orders.get(&who, id).await.expect("the resume order").value);
        }
        let products: Vec<&Value> = resumed.iter().flat_map(|order| order["productOrderItem"].as_array().into_iter().flatten()).map(|item| &item["product"]["id"]).collect();
        assert_eq!(products, [&json!("l1")], "the lift resumes l1, which the dunning suspended, and leaves l2 suspended");
    }
}

store_test! {
    async fn the_periodic_dunning_takes_each_step_once_and_reports_every_run(store) {
        let (orders, receivables, policy) = overdue(&store).await;
        let runs: Arc<std::sync::Mutex<Vec<tollgate_receivables::DunningReport>>> = Arc::default();
        let (done, stop) = tokio::sync::oneshot::channel::<()>();
        let done = std::sync::Mutex::new(Some(done));
        let seen = Arc::clone(&runs);
        receivables
            .dun_periodically(
                &orders,
                &policy,
                std::time::Duration::from_millis(10),
                "system:dunning",
                || (date(2026, 11, 21), on(date(2026, 11, 21))),
                |result| {
                    let mut runs = seen.lock().expect("runs");
                    runs.push(result.expect("a dunning run"));
                    if runs.len() == 3 {
                        if let Some(done) = done.lock().expect("done").take() {
                            let _ = done.send(());
                        }
                    }
                    std::future::ready(())
                },
                async move {
                    drop(stop.await);
                },
            )
            .await;
        let runs = runs.lock().expect("runs").clone();
        assert_eq!(runs.len(), 3, "it stops when told");
        let steps: Vec<(&str, DunningAction)> = runs[0].taken.iter().map(|t| (t.1.as_str(), t.2)).collect();
        assert_eq!(steps, [("reminder", DunningAction::Reminder), ("suspend", DunningAction::Suspend)]);
        assert!(runs[1..].iter().all(|run| run.taken.is_empty() && run.lifted.is_empty()), "{runs:?}");
        let placed = store.product_order_list(&Default::default(), 0, 10).await.expect("orders");
        assert_eq!(placed.total, 1, "one suspend order");
    }
}

store_test! {
    async fn a_suspension_recorded_without_its_orders_finds_them_by_their_keys_when_lifted(store) {
        let (orders, receivables, policy) = overdue(&store).await;
        // A replay by an earlier version recorded the step with no order, though its
        // suspend order had been placed and carried out.
        let who = Principal::admin("system:dunning");
        let doc = json!({"billingAccount": {"id": "a1"}, "productOrderItem": [
            {"id": "1", "action": "modify", "product": {"id": "l1", "status": "suspended"}}]});
        let placed = orders.create_once(&who, doc, "dunning:i-oct:suspend:a1", on(date(2026, 11, 21))).await.expect("the order");
        suspend_line(&store, "l1", date(2026, 11, 21)).await;
        complete_order(&store, placed.value["id"].as_str().expect("id"), date(2026, 11, 21)).await;
        let mut tx = store.begin().await.expect("begin");
        let row = tollgate_store::DunningActionRow {
            invoice_id: "i-oct".into(),
            step: "suspend".into(),
            action: "suspend".into(),
            billing_account_id: "a1".into(),
            order_ids: String::new(),
            taken_on: date(2026, 11, 21),
            taken_at: on(date(2026, 11, 21)),
            lifted_order_ids: None,
            lifted_at: None,
        };
        assert!(tx.insert_dunning_action(&row).await.expect("recorded"));
        tx.commit().await.expect("commit");

        receivables.record(&who, payment("a1", "100.00", "paid-in-full"), on(date(2026, 11, 24))).await.expect("paid");
        let lifted = receivables.dunning(&orders, &policy, date(2026, 11, 24), "system:dunning", on(date(2026, 11, 24))).await.expect("dunning");
        assert_eq!(lifted.lifted.len(), 1);
        assert_eq!(lifted.lifted[0].2.len(), 1, "one resume order: {lifted:?}");
        let resume = orders.get(&who, &lifted.lifted[0].2[0]).await.expect("the resume order").value;
        assert_eq!(resume["productOrderItem"][0]["product"]["id"], "l1");
    }
}

/// Marks order `id` completed, as the provisioning workflow does when its steps are done.
async fn complete_order(store: &Store, id: &str, day: Date) {
    let mut tx = store.begin().await.expect("begin");
    let order = tx.product_order(id).await.expect("read").expect("order");
    let mut row = order.value.clone();
    row.state = "completed".into();
    row.doc["state"] = json!("completed");
    row.completed_at = Some(on(day));
    tx.update_product_order(&row, order.version, on(day)).await.expect("completed");
    tx.commit().await.expect("commit");
}

/// The outbox rows due, taken (marked done) as the engine link would.
async fn take_outbox(store: &Store) -> Vec<tollgate_store::OutboxItem> {
    let items = store.claim_outbox(on(date(2030, 1, 1)), 100, std::time::Duration::from_secs(60)).await.expect("claim");
    for item in &items {
        store.outbox_done(item, on(date(2030, 1, 1))).await.expect("done");
    }
    items
}

store_test! {
    async fn a_prepaid_renewal_unpaid_past_its_grace_suspends_the_line_and_resumes_it_once_the_fees_are_debited(store) {
        let (orders, receivables, _) = overdue(&store).await;
        let customers = tollgate_customers::Customers::new(store.clone());
        // a1's statement for November, final, its fees 10.00 due on 1 November with 7 days' grace.
        let mut tx = store.begin().await.expect("begin");
        let statement = InvoiceRow {
            id: "st-1".into(), kind: InvoiceKind::Invoice, statement: true, bill_run_id: Some("run".into()),
            billing_account_id: "a1".into(), root_id: "a1".into(), cycle: "2026-11".into(),
            period_from: "2026-11-01".into(), period_until: "2026-12-01".into(), issuer: "acme-telecom".into(),
            series: "ST".into(), state: InvoiceState::Draft, number: None, corrects_invoice_id: None,
            currency: "EUR".into(), net: money("10.00"), tax: Decimal::ZERO, gross: money("10.00"),
            content_hash: "sha256:st-1".into(), doc: json!({"id": "st-1"}), created_at: on(date(2026, 11, 1)),
            finalised_at: None,
        };
        tx.insert_draft_invoice(&statement, &[], &[], on(date(2026, 11, 1))).await.expect("draft");
        assert_eq!(tx.finalise_invoice("st-1", on(date(2026, 11, 1))).await.expect("final"), 1, "the statement series' first number");
        let renewal = tollgate_store::RenewalRow {
            invoice_id: "st-1".into(), billing_account_id: "a1".into(), root_id: "a1".into(), engine_account_id: 7,
            currency: "EUR".into(), amount: money("10.00"), renewal_on: date(2026, 11, 1), grace_until: date(2026, 11, 8),
            state: tollgate_store::RenewalState::Pending, attempts: 1, reason: None, paid_at: None,
            suspend_order_ids: None, suspended_at: None, lifted_order_ids: None, lifted_at: None,
            created_at: on(date(2026, 11, 1)), updated_at: on(date(2026, 11, 1)),
        };
        let opened = tollgate_receivables::open_renewals(&mut tx, std::slice::from_ref(&renewal), "acme-telecom/ST/1", on(date(2026, 11, 1))).await.expect("open");
        assert_eq!(opened, 1);
        tx.commit().await.expect("commit");
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(tollgate_receivables::open_renewals(&mut tx, &[renewal], "acme-telecom/ST/1", on(date(2026, 11, 1))).await.expect("again"), 0, "a renewal is opened once");
        tx.commit().await.expect("commit");

        // The statement owes nothing: only the postpaid invoice is a receivable.
        let open: Vec<String> = store.receivables(None, None).await.expect("receivables").into_iter().map(|row| row.invoice_id).collect();
        assert_eq!(open, ["i-oct"]);

        // The first debit, refused by the engine (not enough balance).
        let first = take_outbox(&store).await;
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].idempotency_key.as_str(), first[0].kind.as_str()), ("bss:renewal:st-1:a1:1", tollgate_customers::RENEWAL_FEE));
        assert_eq!(
            tollgate_customers::EngineOperation::from_outbox(&first[0]).expect("operation"),
            tollgate_customers::EngineOperation::RenewalFee { account: 7, amount: money("10.00"), statement: "acme-telecom/ST/1".into() }
        );
        let refused = tollgate_customers::EngineAnswer::Refused { reason: "insufficient credit".into() };
        customers.settle(&first[0], &refused, on(date(2026, 11, 1))).await.expect("settled");
        assert_eq!(store.renewal("st-1", "a1").await.expect("read").expect("renewal").state, tollgate_store::RenewalState::Unpaid);

        // In its grace: tried again, not suspended.
        let day5 = receivables.renewals(&orders, date(2026, 11, 5), "system:dunning", on(date(2026, 11, 5))).await.expect("renewals");
        assert_eq!(day5.retried, [("st-1".to_owned(), "a1".to_owned(), 2)]);
        assert!(day5.suspended.is_empty());
        let second = take_outbox(&store).await;
        assert_eq!(second.iter().map(|item| item.idempotency_key.as_str()).collect::<Vec<_>>(), ["bss:renewal:st-1:a1:2"]);
        // A late repeat of the first attempt's answer changes nothing; the second is refused too.
        customers.settle(&first[0], &tollgate_customers::EngineAnswer::Applied { balance_after: None }, on(date(2026, 11, 5))).await.expect("late");
        assert_eq!(store.renewal("st-1", "a1").await.expect("read").expect("renewal").state, tollgate_store::RenewalState::Pending);
        customers.settle(&second[0], &refused, on(date(2026, 11, 5))).await.expect("settled");
        // While an attempt is under way it is not tried again.
        let day6 = receivables.renewals(&orders, date(2026, 11, 6), "system:dunning", on(date(2026, 11, 6))).await.expect("renewals");
        assert_eq!(day6.retried.len(), 1);
        let day6b = receivables.renewals(&orders, date(2026, 11, 6), "system:dunning", on(date(2026, 11, 6))).await.expect("renewals");
        assert!(day6b.retried.is_empty(), "attempt 3 is pending");
        let third = take_outbox(&store).await;
        customers.settle(&third[0], &refused, on(date(2026, 11, 6))).await.expect("settled");
        // Refused today: not tried again today, unless money reached the balance since.
        let later = on(date(2026, 11, 6)) + jiff::SignedDuration::from_hours(3);
        let waiting = receivables.renewals(&orders, date(2026, 11, 6), "system:dunning", later).await.expect("renewals");
        assert!(waiting.retried.is_empty(), "tried again at most once a day");
        assert_eq!(waiting.waiting, [("st-1".to_owned(), "a1".to_owned())]);
        let mut tx = store.begin().await.expect("begin");
        tx.insert_balance_action(&tollgate_store::BalanceActionRow {
            kind: tollgate_store::BalanceActionKind::TopUp, id: "t1".into(), billing_account_id: "a1".into(),
            amount: money("2.00"), currency: "EUR".into(), request: json!({}), idempotency_key: "bss:topup:t1".into(),
            status: tollgate_store::BalanceActionStatus::Completed, balance_after: Some(money("2.00")), failure_reason: None,
            actor: "test".into(), requested_at: later, confirmed_at: Some(later),
        }).await.expect("a top-up");
        tx.commit().await.expect("commit");
        let topped = receivables.renewals(&orders, date(2026, 11, 6), "system:dunning", later).await.expect("renewals");
        assert_eq!(topped.retried, [("st-1".to_owned(), "a1".to_owned(), 4)], "a top-up makes it try at once");
        let fourth_try = take_outbox(&store).await;
        customers.settle(&fourth_try[0], &refused, later).await.expect("still too little");

        // The grace over (8 November was its last day): a suspend order for a1's line, once.
        let day9 = receivables.renewals(&orders, date(2026, 11, 9), "system:dunning", on(date(2026, 11, 9))).await.expect("renewals");
        assert_eq!(day9.suspended.len(), 1);
        let placed = day9.suspended[0].2.clone();
        assert_eq!(placed.len(), 1);
        let who = Principal::admin("test");
        let order = orders.get(&who, &placed[0]).await.expect("the suspend order").value;
        assert_eq!(order["billingAccount"]["id"], "a1");
        assert_eq!((&order["productOrderItem"][0]["product"]["id"], &order["productOrderItem"][0]["product"]["status"]), (&json!("l1"), &json!("suspended")));
        let fourth = take_outbox(&store).await;
        assert_eq!(fourth.iter().map(|item| item.idempotency_key.as_str()).collect::<Vec<_>>(), ["bss:renewal:st-1:a1:5"]);
        // Topped up meanwhile: the fourth attempt is debited.
        customers.settle(&fourth[0], &tollgate_customers::EngineAnswer::Applied { balance_after: Some(money("5.00")) }, on(date(2026, 11, 9))).await.expect("settled");
        let paid = store.renewal("st-1", "a1").await.expect("read").expect("renewal");
        assert_eq!((paid.state, paid.attempts, paid.suspend_order_ids.as_deref()), (tollgate_store::RenewalState::Paid, 5, Some(placed[0].as_str())));

        // Not lifted while the suspend order is under way (its line would stay suspended).
        let early = receivables.renewals(&orders, date(2026, 11, 9), "system:dunning", on(date(2026, 11, 9))).await.expect("renewals");
        assert!(early.lifted.is_empty() && early.suspended.is_empty() && early.retried.is_empty());
        suspend_line(&store, "l1", date(2026, 11, 9)).await;
        complete_order(&store, &placed[0], date(2026, 11, 9)).await;
        let lifted = receivables.renewals(&orders, date(2026, 11, 10), "system:dunning", on(date(2026, 11, 10))).await.expect("renewals");
        assert_eq!(lifted.lifted.len(), 1);
        let resume = orders.get(&who, &lifted.lifted[0].2[0]).await.expect("the resume order").value;
        assert_eq!((&resume["productOrderItem"][0]["product"]["id"], &resume["productOrderItem"][0]["product"]["status"]), (&json!("l1"), &json!("active")));
        let after = receivables.renewals(&orders, date(2026, 11, 11), "system:dunning", on(date(2026, 11, 11))).await.expect("renewals");
        assert_eq!(after, tollgate_receivables::RenewalReport::default(), "nothing left to do");
        // Every step is in the audit trail.
        let actions: Vec<String> = store.audit_entries(Some((tollgate_customers::RENEWAL_ENTITY, "st-1/a1")), 0, 50).await.expect("audit")
            .into_iter().filter_map(|e| e.after.and_then(|after| after.get("action").or(after.get("state")).and_then(Value::as_str).map(str::to_owned))).collect();
        assert_eq!(actions, ["open", "unpaid", "retry", "unpaid", "retry", "unpaid", "retry", "unpaid", "suspend", "retry", "paid", "resume"]);
    }
}

/// Every outbox row due, taken one ordering key's head at a time until none is left.
async fn take_all(store: &Store) -> Vec<tollgate_store::OutboxItem> {
    let mut all = Vec::new();
    loop {
        let taken = take_outbox(store).await;
        if taken.is_empty() {
            return all;
        }
        all.extend(taken);
    }
}

/// A final statement `id` of a1 for `cycle` with a renewal of 10.00 due on `due`, 7 days' grace.
async fn statement_with_renewal(store: &Store, id: &str, cycle: &str, due: Date) {
    let mut tx = store.begin().await.expect("begin");
    let statement = InvoiceRow {
        id: id.into(),
        kind: InvoiceKind::Invoice,
        statement: true,
        bill_run_id: Some("run".into()),
        billing_account_id: "a1".into(),
        root_id: "a1".into(),
        cycle: cycle.into(),
        period_from: format!("{cycle}-01"),
        period_until: due.to_string(),
        issuer: "acme-telecom".into(),
        series: "ST".into(),
        state: InvoiceState::Draft,
        number: None,
        corrects_invoice_id: None,
        currency: "EUR".into(),
        net: money("10.00"),
        tax: Decimal::ZERO,
        gross: money("10.00"),
        content_hash: format!("sha256:{id}"),
        doc: json!({"id": id}),
        created_at: on(due),
        finalised_at: None,
    };
    tx.insert_draft_invoice(&statement, &[], &[], on(due)).await.expect("draft");
    tx.finalise_invoice(id, on(due)).await.expect("final");
    let renewal = tollgate_store::RenewalRow {
        invoice_id: id.into(),
        billing_account_id: "a1".into(),
        root_id: "a1".into(),
        engine_account_id: 7,
        currency: "EUR".into(),
        amount: money("10.00"),
        renewal_on: due,
        grace_until: due.checked_add(jiff::ToSpan::days(7)).expect("day"),
        state: tollgate_store::RenewalState::Pending,
        attempts: 1,
        reason: None,
        paid_at: None,
        suspend_order_ids: None,
        suspended_at: None,
        lifted_order_ids: None,
        lifted_at: None,
        created_at: on(due),
        updated_at: on(due),
    };
    tollgate_receivables::open_renewals(&mut tx, &[renewal], id, on(due)).await.expect("open");
    tx.commit().await.expect("commit");
}

store_test! {
    async fn a_line_stays_suspended_while_any_renewal_of_its_account_is_overdue_and_a_failed_debit_counts_as_unpaid(store) {
        let (orders, receivables, _) = overdue(&store).await;
        let customers = tollgate_customers::Customers::new(store.clone());
        let refused = tollgate_customers::EngineAnswer::Refused { reason: "insufficient credit".into() };
        let paid = tollgate_customers::EngineAnswer::Applied { balance_after: None };
        statement_with_renewal(&store, "st-oct", "2026-09", date(2026, 11, 1)).await;
        statement_with_renewal(&store, "st-nov", "2026-12", date(2026, 12, 1)).await;
        // October's debit (its account's first row) refused; November's never answered:
        // its outbox row failed for good.
        let oct = take_outbox(&store).await.pop().expect("october's debit");
        assert_eq!(oct.idempotency_key, "bss:renewal:st-oct:a1:1");
        customers.settle(&oct, &refused, on(date(2026, 11, 1))).await.expect("settled");
        let claimed = store.claim_outbox(on(date(2030, 1, 1)), 10, std::time::Duration::from_secs(60)).await.expect("claim");
        let nov = claimed.iter().find(|item| item.idempotency_key == "bss:renewal:st-nov:a1:1").expect("november's debit");
        assert!(store.outbox_failed(nov, "engine unreachable", on(date(2026, 12, 1))).await.expect("failed"));

        // October is past its grace: suspended. November's failed attempt is taken as unpaid
        // and tried again; it is within its grace still.
        let run = receivables.renewals(&orders, date(2026, 12, 2), "system:dunning", on(date(2026, 12, 2))).await.expect("renewals");
        assert_eq!(run.suspended.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["st-oct"]);
        let mut retried: Vec<(&str, i64)> = run.retried.iter().map(|r| (r.0.as_str(), r.2)).collect();
        retried.sort_unstable();
        assert_eq!(retried, [("st-nov", 2), ("st-oct", 2)]);
        let failed = store.renewal("st-nov", "a1").await.expect("read").expect("renewal");
        assert!(failed.reason.as_deref().is_some_and(|r| r.contains("engine unreachable")), "{failed:?}");
        let order = run.suspended[0].2[0].clone();
        suspend_line(&store, "l1", date(2026, 12, 2)).await;
        complete_order(&store, &order, date(2026, 12, 2)).await;
        for item in take_all(&store).await {
            customers.settle(&item, &refused, on(date(2026, 12, 2))).await.expect("settled");
        }

        // November past its grace too; then October is paid: the line stays suspended, as
        // November is owed.
        let run = receivables.renewals(&orders, date(2026, 12, 9), "system:dunning", on(date(2026, 12, 9))).await.expect("renewals");
        assert_eq!(run.suspended.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["st-nov"]);
        for item in take_all(&store).await {
            let answer = if item.idempotency_key.contains("st-oct") { &paid } else { &refused };
            customers.settle(&item, answer, on(date(2026, 12, 9))).await.expect("settled");
        }
        for placed in &run.suspended[0].2 {
            complete_order(&store, placed, date(2026, 12, 9)).await;
        }
        let run = receivables.renewals(&orders, date(2026, 12, 10), "system:dunning", on(date(2026, 12, 10))).await.expect("renewals");
        assert!(run.lifted.is_empty(), "November is still owed: {run:?}");
        for item in take_all(&store).await {
            customers.settle(&item, &paid, on(date(2026, 12, 10))).await.expect("settled");
        }
        // Both paid: the line is resumed.
        let run = receivables.renewals(&orders, date(2026, 12, 11), "system:dunning", on(date(2026, 12, 11))).await.expect("renewals");
        let lifted: Vec<&str> = run.lifted.iter().map(|l| l.0.as_str()).collect();
        assert!(lifted.contains(&"st-oct"), "{run:?}");
        let who = Principal::admin("test");
        let resume = orders.get(&who, &run.lifted.iter().find(|l| l.0 == "st-oct").expect("october").2[0]).await.expect("order").value;
        assert_eq!((&resume["productOrderItem"][0]["product"]["id"], &resume["productOrderItem"][0]["product"]["status"]), (&json!("l1"), &json!("active")));
    }
}

store_test! {
    async fn a_renewal_refused_today_waits_for_tomorrow_but_one_the_engine_never_answered_is_tried_at_once(store) {
        let (orders, receivables, _) = overdue(&store).await;
        let customers = tollgate_customers::Customers::new(store.clone());
        let refused = tollgate_customers::EngineAnswer::Refused { reason: "insufficient credit".into() };
        // Opened today (its first attempt with it) and failed for good today: the engine
        // never answered, so it is tried again now, not tomorrow.
        statement_with_renewal(&store, "st-dec", "2026-11", date(2026, 12, 3)).await;
        let day = on(date(2026, 12, 3));
        let claimed = store.claim_outbox(on(date(2030, 1, 1)), 10, std::time::Duration::from_secs(60)).await.expect("claim");
        let first = claimed.iter().find(|item| item.idempotency_key == "bss:renewal:st-dec:a1:1").expect("the first debit");
        assert!(store.outbox_failed(first, "engine unreachable", day).await.expect("failed"));
        let run = receivables.renewals(&orders, date(2026, 12, 3), "system:dunning", day).await.expect("renewals");
        assert_eq!(run.retried, [("st-dec".to_owned(), "a1".to_owned(), 2)], "tried at once");
        // The engine refuses the second today: the next run today leaves it.
        let second = take_outbox(&store).await;
        let second = second.iter().find(|item| item.idempotency_key == "bss:renewal:st-dec:a1:2").expect("the second debit");
        customers.settle(second, &refused, day).await.expect("settled");
        let again = receivables.renewals(&orders, date(2026, 12, 3), "system:dunning", day).await.expect("renewals");
        assert!(again.retried.is_empty());
        assert_eq!(again.waiting, [("st-dec".to_owned(), "a1".to_owned())]);
        // Tomorrow it is tried again.
        let tomorrow = receivables.renewals(&orders, date(2026, 12, 4), "system:dunning", on(date(2026, 12, 4))).await.expect("renewals");
        assert_eq!(tomorrow.retried, [("st-dec".to_owned(), "a1".to_owned(), 3)]);
    }
}

store_test! {
    async fn a_refused_renewal_is_told_once_to_the_accounts_renewal_refused_thresholds_with_its_amount_and_grace(store) {
        let (orders, receivables, _) = overdue(&store).await;
        let customers = tollgate_customers::Customers::new(store.clone());
        let thresholds = tollgate_customers::Thresholds::new(store.clone(), tollgate_customers::Templates::default());
        let templates = thresholds.templates().clone();
        let spec = |kind: &str, level: &str, language: &str| {
            let spec = tollgate_customers::parse_threshold(kind, level, None, language, true, &templates).expect("valid");
            tollgate_customers::ThresholdSpec { sms: true, ..spec }
        };
        assert!(tollgate_customers::parse_threshold("renewal_refused", "5", None, "en", true, &templates).is_err(), "it has no level");
        let day = on(date(2026, 12, 3));
        let (told, _) = thresholds.set("test", "a1", &spec("renewal_refused", "", "de"), day).await.expect("set");
        let (balance, _) = thresholds.set("test", "a1", &spec("balance_below", "1", "en"), day).await.expect("set");
        statement_with_renewal(&store, "st-dec", "2026-11", date(2026, 12, 3)).await;
        let refused = tollgate_customers::EngineAnswer::Refused { reason: "insufficient credit".into() };

        let first = take_outbox(&store).await;
        let first = first.iter().find(|item| item.idempotency_key == "bss:renewal:st-dec:a1:1").expect("the first debit");
        customers.settle(first, &refused, day).await.expect("settled");
        // Settled again (a crash before the outbox row was marked done): told once.
        customers.settle(first, &refused, day).await.expect("settled again");
        let crossings = store.crossings_of("a1", 10).await.expect("crossings");
        assert_eq!(crossings.len(), 1, "{crossings:?}");
        let crossing = &crossings[0];
        assert_eq!((crossing.threshold_id.as_str(), crossing.kind.as_str()), (told.id.as_str(), "renewal_refused"));
        assert_eq!(crossing.crossing_key, "renewal-st-dec");
        assert!(crossing.event_id.is_some(), "published to the hub's listeners");
        assert!(crossing.message.contains("10 EUR") && crossing.message.contains("2026-12-10"), "{}", crossing.message);
        assert!(crossing.message.contains("Guthaben"), "in the threshold's language: {}", crossing.message);
        let texts = take_outbox(&store).await;
        let keys: Vec<&str> = texts.iter().map(|item| item.idempotency_key.as_str()).collect();
        assert_eq!(keys, [tollgate_customers::sms_key(&told.id, "renewal-st-dec")]);
        assert_eq!(texts[0].kind, tollgate_customers::SMS_OUTBOX_KIND);
        assert_eq!(texts[0].payload["to"], json!(["33600000001"]));

        // Tried again tomorrow and refused again: nothing more is told.
        let tomorrow = receivables.renewals(&orders, date(2026, 12, 4), "system:dunning", on(date(2026, 12, 4))).await.expect("renewals");
        assert_eq!(tomorrow.retried, [("st-dec".to_owned(), "a1".to_owned(), 2)]);
        let second = take_outbox(&store).await;
        assert_eq!(second.len(), 1);
        customers.settle(&second[0], &refused, on(date(2026, 12, 4))).await.expect("settled");
        assert_eq!(store.crossings_of("a1", 10).await.expect("crossings").len(), 1);
        assert!(take_outbox(&store).await.is_empty(), "no second text");
        assert!(balance.kind == "balance_below" && crossings.iter().all(|c| c.threshold_id != balance.id));

        // The next renewal refused is told again; a paid one is not.
        statement_with_renewal(&store, "st-jan", "2026-12", date(2027, 1, 1)).await;
        let jan = take_outbox(&store).await;
        customers.settle(&jan[0], &refused, on(date(2027, 1, 1))).await.expect("settled");
        statement_with_renewal(&store, "st-feb", "2027-01", date(2027, 2, 1)).await;
        let feb: Vec<_> = take_outbox(&store).await.into_iter().filter(|item| item.idempotency_key.contains("st-feb")).collect();
        customers.settle(&feb[0], &tollgate_customers::EngineAnswer::Applied { balance_after: None }, on(date(2027, 2, 1))).await.expect("paid");
        let keys: Vec<String> = store.crossings_of("a1", 10).await.expect("crossings").into_iter().map(|c| c.crossing_key).collect();
        assert_eq!(keys, ["renewal-st-dec", "renewal-st-jan"]);
    }
}

store_test! {
    /// Regression: a payment for a child account of a hierarchy stayed unallocated credit
    /// on the child (children have no invoices) while the root's invoice, which bills the
    /// child, aged. It is the hierarchy's: recorded on the root and allocated there.
    async fn a_payment_for_a_child_account_pays_its_hierarchy_s_invoice(store) {
        setup(&store).await;
        let mut tx = store.begin().await.expect("begin");
        let child = account_row("a1-child", Some("a1"));
        tx.insert_billing_account(&child, on(date(2026, 1, 1))).await.expect("child");
        tx.commit().await.expect("commit");
        final_invoice(&store, "i-root", "a1", "2026-10", "50.00", date(2026, 10, 1)).await;
        let receivables = Receivables::new(store.clone());
        let who = Principal::admin("cli:finance");
        let mut paid = payment("a1-child", "20", "r-child");
        paid.remittance = Some("a1-child".into());
        let recorded = receivables.record(&who, paid, on(date(2026, 11, 20))).await.expect("paid");
        assert_eq!(recorded.payment.billing_account_id, "a1", "the hierarchy's root");
        assert_eq!(recorded.payment.remittance.as_deref(), Some("a1-child"), "what it named is kept");
        assert_eq!(recorded.payment.amount.to_string(), "20.00", "kept with the currency's decimals");
        // Regression: an aging as of a day before the invoice was issued listed it.
        assert!(receivables.aging(date(2026, 9, 30), Some("a1")).await.expect("aging").is_empty());
        // Regression: a payment dated 2099 was taken.
        let mut future = payment("a1", "5", "r-future");
        future.received_on = date(2099, 1, 1);
        match receivables.record(&who, future, on(date(2026, 11, 20))).await {
            Err(ReceivablesError::Invalid { field, .. }) => assert_eq!(field, "paymentDate"),
            other => panic!("{other:?}"),
        }
        assert_eq!(parts(&recorded.allocations), [("i-root".into(), "20.00".into())]);
        let aging = receivables.aging(date(2026, 11, 20), Some("a1")).await.expect("aging");
        assert_eq!(aging[0].aging.total(), money("30.00"));
        // Regression: an empty bucket printed "0", not an amount in EUR.
        assert_eq!((aging[0].aging.current.to_string(), aging[0].aging.days_1_30.to_string()), ("0.00".into(), "30.00".into()));
        // Regression: an aging as of a day before the payment was received subtracted it.
        let before = receivables.aging(date(2026, 11, 19), Some("a1")).await.expect("aging");
        assert_eq!(before[0].aging.total(), money("50.00"), "the 20 came on 20 November");
        // A payment received earlier but allocated later counts from the allocation's day.
        let mut late = payment("a1", "10", "r-late");
        late.received_on = date(2026, 11, 21);
        receivables.record(&who, late, on(date(2026, 11, 25))).await.expect("paid");
        let aging = receivables.aging(date(2026, 11, 22), Some("a1")).await.expect("aging");
        assert_eq!(aging[0].aging.total(), money("30.00"), "known paid only from 25 November");
        let aging = receivables.aging(date(2026, 11, 25), Some("a1")).await.expect("aging");
        assert_eq!(aging[0].aging.total(), money("20.00"));
    }
}

store_test! {
    /// Regression: an invoice below zero (fees paid in advance given back after a
    /// termination) kept its credit to itself: the account was aged and dunned for the
    /// invoice that credit should have paid. The credit is carried to the account as a
    /// payment from the invoice, once, and pays what the account owes.
    async fn an_invoice_below_zero_pays_what_the_account_owes(store) {
        setup(&store).await;
        final_invoice(&store, "i-sep", "a1", "2026-09", "78.10", date(2026, 10, 1)).await;
        let receivables = Receivables::new(store.clone());
        let who = Principal::admin("cli:finance");
        receivables.record(&who, payment("a1", "77.20", "net-owed"), on(date(2026, 11, 20))).await.expect("paid");
        final_invoice(&store, "i-oct", "a1", "2026-10", "-0.90", date(2026, 11, 1)).await;
        let aging = receivables.aging(date(2026, 11, 20), Some("a1")).await.expect("aging");
        assert_eq!(aging[0].aging.total(), money("0.90"), "the credit did not reach the account");

        let now = on(date(2026, 11, 21));
        let mut tx = store.begin().await.expect("begin");
        let carried = tollgate_receivables::carry_credit(&mut tx, "system:bill-run", "a1", "EUR", money("0.90"), "i-oct", date(2026, 11, 21), now)
            .await
            .expect("carried")
            .expect("recorded now");
        assert_eq!((carried.source.as_str(), carried.reference.as_str()), (tollgate_receivables::CARRIED_CREDIT_SOURCE, "i-oct"));
        let settled = tollgate_receivables::settle_account(&mut tx, "system:bill-run", "a1", now).await.expect("settled");
        assert_eq!(parts(&settled), [("i-sep".into(), "0.90".into())]);
        let again = tollgate_receivables::carry_credit(&mut tx, "system:bill-run", "a1", "EUR", money("0.90"), "i-oct", date(2026, 11, 21), now)
            .await
            .expect("asked again");
        assert!(again.is_none(), "once per document");
        assert_eq!(tx.invoice_remaining("i-oct").await.expect("remaining"), money("-0.90"));
        assert_eq!(tx.invoice_remaining("i-sep").await.expect("remaining"), Decimal::ZERO);
        tx.commit().await.expect("commit");
        assert!(receivables.aging(date(2026, 11, 22), Some("a1")).await.expect("aging").is_empty(), "nothing owed");
    }
}

store_test! {
    /// Regression: two overdue invoices of one hierarchy each placed suspend orders for
    /// its lines (the second's failed on lines already suspended), and paying lifted
    /// both, resuming lines the failed orders never suspended. The hierarchy is
    /// suspended once; the second invoice's step is recorded without orders.
    async fn a_hierarchy_is_suspended_once_for_all_its_overdue_invoices(store) {
        let (orders, receivables, policy) = overdue(&store).await;
        final_invoice(&store, "i-oct-2", "a1", "2026-10-b", "50.00", date(2026, 10, 1)).await;
        let run = receivables.dunning(&orders, &policy, date(2026, 11, 21), "system:dunning", on(date(2026, 11, 21))).await.expect("dunning");
        let steps: Vec<_> = run.taken.iter().filter(|taken| taken.2 == DunningAction::Suspend).collect();
        assert_eq!(steps.len(), 2, "each invoice's step is recorded: {run:?}");
        let placed: Vec<&String> = steps.iter().flat_map(|taken| &taken.3).collect();
        assert_eq!(placed.len(), 1, "one suspend order for the hierarchy's line: {run:?}");
        assert_eq!(store.product_order_list(&Default::default(), 0, 10).await.expect("orders").total, 1);
        // A later run places none either while the suspension holds.
        let later = receivables.dunning(&orders, &policy, date(2026, 11, 22), "system:dunning", on(date(2026, 11, 22))).await.expect("dunning");
        assert!(later.taken.is_empty(), "{later:?}");

        suspend_line(&store, "l1", date(2026, 11, 22)).await;
        complete_order(&store, placed[0], date(2026, 11, 22)).await;
        let who = Principal::admin("test");
        receivables.record(&who, payment("a1", "150.00", "paid-in-full"), on(date(2026, 11, 24))).await.expect("paid");
        let lifted = receivables.dunning(&orders, &policy, date(2026, 11, 24), "system:dunning", on(date(2026, 11, 24))).await.expect("dunning");
        assert_eq!(lifted.lifted.len(), 2, "both steps lifted: {lifted:?}");
        let resumes: Vec<&String> = lifted.lifted.iter().flat_map(|step| &step.2).collect();
        assert_eq!(resumes.len(), 1, "one resume order, for the line the suspension stopped: {lifted:?}");
    }
}

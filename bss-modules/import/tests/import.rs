//! Imports on SQLite and PostgreSQL (`store_test!`): customers with hierarchies, bad rows
//! rejected naming the field, duplicates skipped or rejected by content, each account and
//! subscription recorded once in the outbox under its key, one audit record per batch; and
//! a run stopped after a batch resumes to exactly a clean run's rows, rejects and counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tollgate_import::{import_file, ImportKind, ImportOptions, Mapping, Summary};
use tollgate_store::{store_test, ChainCheck, Store};

const CUSTOMERS_MAPPING: &str = r#"
[fields]
external_id = { column = "id" }
party_type = { column = "party" }
name = { column = "name" }
email = { column = "email" }
currency = { column = "ccy" }
account_type = { column = "type" }
credit_limit = { column = "limit" }
parent = { column = "parent" }

[translate.party_type]
P = "individual"
O = "organization"
"#;

const CUSTOMERS: &str = "\
id,party,name,email,ccy,type,limit,parent
ACME,O,Acme Ltd,billing@acme.example,EUR,postpaid,1000.50,
ACME-1,P,Ada,ada@acme.example,EUR,postpaid,100,ACME
ACME-2,P,Bob,not-an-address,EUR,postpaid,100,ACME
ORPHAN,P,Cy,,EUR,prepaid,0,NOBODY
EARLY,P,Di,,EUR,prepaid,0,LATE
LATE,P,Ed,,EUR,prepaid,0,
ACME-1,P,Ada,ada@acme.example,EUR,postpaid,100,ACME
ACME-1,P,Ada Lovelace,ada@acme.example,EUR,postpaid,100,ACME
USD-CHILD,P,Fay,,USD,postpaid,5,ACME
PRE,P,Gus,,EUR,prepaid,10,
BAD-PARTY,X,Hal,,EUR,prepaid,0,
TOO-MUCH,P,Ivy,,EUR,postpaid,12.34567,
";

const SUBSCRIPTIONS_MAPPING: &str = r#"
[fields]
external_id = { column = "line" }
billing_account = { column = "account" }
plan = { column = "plan" }
offering = { column = "offering" }
msisdn = { column = "msisdn" }
imsi = { column = "imsi" }
status = { column = "status" }
"#;

const SUBSCRIPTIONS: &str = "\
line,account,plan,offering,msisdn,imsi,status
L1,ACME-1,mobile-prepaid-s,,+491510000001,262010000000001,active
L2,ACME-1,mobile-prepaid-s,,491510000002,,suspended
L3,NOBODY,mobile-prepaid-s,,491510000003,,active
L4,LATE,gold,,491510000004,,active
L5,LATE,business-pro,,491510000005,,active
L6,LATE,mobile-prepaid-s,,491510000001,,active
L7,LATE,mobile-prepaid-s,no-such-offering,491510000007,,active
L8,LATE,mobile-prepaid-s,,4915x,,active
L1,ACME-1,mobile-prepaid-s,,+491510000001,262010000000001,active
L1,ACME-1,mobile-prepaid-s,,+491510000001,262010000000001,suspended
L9,LATE,mobile-prepaid-s,,491510000009,,terminated
";

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("tollgate-import-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Files { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn plans() -> HashMap<String, String> {
    HashMap::from([("mobile-prepaid-s".into(), "EUR".into()), ("business-pro".into(), "GBP".into())])
}

fn options(rejects: &Path, batch_rows: usize) -> ImportOptions {
    ImportOptions { batch_rows, actor: "cli:test".into(), rejects: rejects.to_owned(), plans: plans() }
}

async fn import(store: &Store, file: &Path, mapping: &Mapping, options: &ImportOptions) -> Summary {
    import_file(store, file, mapping, options, &mut |_| {}).await.expect("import")
}

/// The rejects file as (row, field) pairs.
fn rejects(path: &Path) -> Vec<(String, String)> {
    let mut reader = csv::Reader::from_path(path).expect("rejects file");
    reader.records().map(|r| r.expect("row")).map(|r| (r[0].to_owned(), r[1].to_owned())).collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(row, field)| ((*row).to_owned(), (*field).to_owned())).collect()
}

store_test! {
    async fn customers_and_subscriptions_are_imported_with_rejects_and_duplicates(store) {
        let files = Files::new(&format!("mixed-{:?}", store.dialect()));
        let customers = files.write("customers.csv", CUSTOMERS);
        let mapping = Mapping::parse(CUSTOMERS_MAPPING, ImportKind::Customers).expect("mapping");
        let customer_rejects = files.dir.join("customers.rejects.csv");
        let summary = import(&store, &customers, &mapping, &options(&customer_rejects, 4)).await;
        assert_eq!((summary.rows, summary.imported, summary.duplicates, summary.rejected), (12, 3, 1, 8), "{summary:?}");
        assert_eq!(
            rejects(&customer_rejects),
            pairs(&[
                ("3", "email"),
                ("4", "parent"),
                ("5", "parent"),
                ("8", "name"),
                ("9", "currency"),
                ("10", "credit_limit"),
                ("11", "party_type"),
                ("12", "credit_limit"),
            ])
        );
        let raw = std::fs::read_to_string(&customer_rejects).expect("rejects");
        assert!(raw.contains("ORPHAN,P,Cy,,EUR,prepaid,0,NOBODY"), "the raw row is kept: {raw}");
        assert!(raw.contains("a parent comes before its children"), "{raw}");

        let mut tx = store.begin().await.expect("begin");
        let found = tx.accounts_by_external_id(&["ACME", "ACME-1", "LATE", "EARLY"]).await.expect("lookup");
        tx.rollback().await.expect("rollback");
        assert_eq!(found.len(), 3, "EARLY was rejected");
        let acme = found.iter().find(|f| f.external_id == "ACME").expect("ACME");
        let ada = found.iter().find(|f| f.external_id == "ACME-1").expect("ACME-1");
        let (acme_account, ada_account) = (acme.account.as_ref().expect("account"), ada.account.as_ref().expect("account"));
        assert_eq!((ada_account.root_id.as_str(), ada_account.depth), (acme_account.id.as_str(), 1));
        assert_eq!(acme_account.credit_limit.to_string(), "1000.5", "normalised, as the API does");
        assert_eq!(ada.customer.doc["contactMedium"][0]["characteristic"]["emailAddress"], "ada@acme.example");
        let customer = store.customer(&ada.customer.id).await.expect("read").expect("customer");
        assert_eq!(customer.value.doc["engagedParty"]["@referredType"], "Individual");

        // Each account once in the outbox, under its creation key, with its engine id.
        let counts = store.outbox_counts().await.expect("counts");
        assert_eq!(counts.pending, 3);
        let mut keys = Vec::new();
        for id in 1..=3 {
            let entry = store.outbox_entry(id).await.expect("entry").expect("row");
            assert_eq!(entry.kind, "engine.account.create");
            keys.push(entry.idempotency_key.clone());
            if entry.idempotency_key == format!("bss:billing-account:{}:v1:create", acme_account.id) {
                assert_eq!(entry.payload["account"].as_u64(), Some(acme_account.engine_account_id));
                assert_eq!(entry.payload["creditLimit"], "1000.5");
            }
        }
        assert!(keys.contains(&format!("bss:billing-account:{}:v1:create", ada_account.id)), "{keys:?}");

        // One audit record per batch (12 rows, 4 a batch), and the chain holds.
        let audit = store.audit_entries(Some(("ImportRun", &summary.run)), 0, 100).await.expect("audit");
        assert_eq!(audit.len(), 3);
        assert_eq!(audit[0].after.as_ref().expect("doc")["createdRows"], serde_json::json!([[1, 2]]));
        assert!(matches!(store.verify_audit_chain().await.expect("verify"), ChainCheck::Intact { .. }));

        // Importing the file again changes nothing.
        let again = import(&store, &customers, &mapping, &options(&customer_rejects, 4)).await;
        assert!(again.already_complete);
        assert_eq!(store.outbox_counts().await.expect("counts").pending, 3);

        let subscriptions = files.write("subscriptions.csv", SUBSCRIPTIONS);
        let mapping = Mapping::parse(SUBSCRIPTIONS_MAPPING, ImportKind::Subscriptions).expect("mapping");
        let subscription_rejects = files.dir.join("subscriptions.rejects.csv");
        let summary = import(&store, &subscriptions, &mapping, &options(&subscription_rejects, 3)).await;
        assert_eq!((summary.rows, summary.imported, summary.duplicates, summary.rejected), (11, 2, 1, 8), "{summary:?}");
        assert_eq!(
            rejects(&subscription_rejects),
            pairs(&[
                ("3", "billing_account"),
                ("4", "plan"),
                ("5", "plan"),
                ("6", "msisdn"),
                ("7", "offering"),
                ("8", "msisdn"),
                ("10", "status"),
                ("11", "status"),
            ])
        );
        let mut tx = store.begin().await.expect("begin");
        let lines = tx.subscriptions_by_external_id(&["L1", "L2"]).await.expect("lookup");
        tx.rollback().await.expect("rollback");
        let l1 = lines.iter().find(|s| s.value.external_id.as_deref() == Some("L1")).expect("L1");
        let l2 = lines.iter().find(|s| s.value.external_id.as_deref() == Some("L2")).expect("L2");
        assert_eq!(l1.value.identities, vec!["msisdn:491510000001", "imsi:262010000000001"]);
        assert_eq!((l2.value.state.as_str(), l2.value.billing_account_id.as_str()), ("suspended", ada_account.id.as_str()));
        // A creation per subscription, and a suspension for the suspended one, behind the
        // account's creation (same ordering key).
        assert_eq!(store.outbox_counts().await.expect("counts").pending, 3 + 3);
        let suspend = store.outbox_entry(6).await.expect("entry").expect("row");
        assert_eq!(suspend.idempotency_key, format!("bss:subscription:{}:v1:suspend", l2.value.id));
        assert_eq!(suspend.ordering_key, Some(format!("billing-account:{}", ada_account.id)));
        assert_eq!(suspend.payload["subscription"].as_u64(), Some(l2.value.engine_subscription_id));
        // Each imported line's history starts with the import, in the state it came in.
        for (line, state) in [(l1, "active"), (l2, "suspended")] {
            let periods = store.product_periods(&line.value.id).await.expect("periods");
            let seen: Vec<(&str, &str, bool)> =
                periods.iter().map(|p| (p.state.as_str(), p.opened_by.as_str(), p.until.is_none())).collect();
            assert_eq!(seen, [(state, "import", true)], "{}", line.value.id);
        }
    }
}

store_test! {
    async fn a_run_stopped_after_a_batch_resumes_to_a_clean_runs_result(store) {
        let files = Files::new(&format!("resume-{:?}", store.dialect()));
        let customers = files.write("customers.csv", CUSTOMERS);
        let mapping = Mapping::parse(CUSTOMERS_MAPPING, ImportKind::Customers).expect("mapping");

        // A clean run, into a store of its own.
        let clean_store = match store.dialect() {
            tollgate_store::Dialect::Sqlite => tollgate_store::testing::sqlite().await,
            tollgate_store::Dialect::Postgres => tollgate_store::testing::postgres().await.expect("postgres"),
        };
        let clean_rejects = files.dir.join("clean.rejects.csv");
        let clean = import(&clean_store, &customers, &mapping, &options(&clean_rejects, 2)).await;

        // The same file, stopped (as by a kill) right after its third batch committed;
        // the next batch's rejects had been written, its rows not committed.
        let rejects = files.dir.join("customers.rejects.csv");
        let stopped = {
            let store = store.clone();
            let (customers, mapping, options) = (customers.clone(), mapping.clone(), options(&rejects, 2));
            tokio::task::LocalSet::new()
                .run_until(async move {
                    tokio::task::spawn_local(async move {
                        let mut batches = 0;
                        import_file(&store, &customers, &mapping, &options, &mut |_| {
                            batches += 1;
                            assert!(batches < 3, "stopped after the third batch");
                        })
                        .await
                    })
                    .await
                })
                .await
        };
        assert!(stopped.is_err(), "the run was stopped");
        let mut written = std::fs::OpenOptions::new().append(true).open(&rejects).expect("rejects");
        std::io::Write::write_all(&mut written, b"7,name,an uncommitted batch's reject,x\n").expect("append");

        let resumed = import(&store, &customers, &mapping, &options(&rejects, 2)).await;
        assert_eq!(resumed.resumed_after_row, 6);
        assert_eq!(
            (resumed.rows, resumed.imported, resumed.duplicates, resumed.rejected),
            (clean.rows, clean.imported, clean.duplicates, clean.rejected)
        );
        assert_eq!(std::fs::read(&rejects).expect("rejects"), std::fs::read(&clean_rejects).expect("clean rejects"));
        assert_eq!(store.outbox_counts().await.expect("counts"), clean_store.outbox_counts().await.expect("counts"));
        let page = store.billing_account_list(&Default::default(), 0, 100).await.expect("accounts");
        let clean_page = clean_store.billing_account_list(&Default::default(), 0, 100).await.expect("accounts");
        let shape = |page: &tollgate_store::Page<tollgate_store::BillingAccountRow>| -> Vec<(String, i64, String)> {
            page.items.iter().map(|a| (a.value.name.clone(), a.value.depth, a.value.credit_limit.to_string())).collect()
        };
        assert_eq!(shape(&page), shape(&clean_page));
    }
}

store_test! {
    /// Regression: one row longer than the most a row may be ended the run (and every
    /// rerun stopped at it). It is rejected, shown by its beginning, and the rows after it
    /// are imported.
    async fn a_row_too_long_is_rejected_and_the_rows_after_it_are_read(store) {
        let files = Files::new(&format!("long-{:?}", store.dialect()));
        let long = "x".repeat(2 * tollgate_import::MAX_ROW_BYTES);
        let text = format!(
            "id,party,name,email,ccy,type,limit,parent\nA1,P,Ada,,EUR,prepaid,0,\nBIG,P,{long},,EUR,prepaid,0,\nA2,P,Bob,,EUR,prepaid,0,\n"
        );
        let customers = files.write("long.csv", &text);
        let mapping = Mapping::parse(CUSTOMERS_MAPPING, ImportKind::Customers).expect("mapping");
        let customer_rejects = files.dir.join("long.rejects.csv");
        let summary = import(&store, &customers, &mapping, &options(&customer_rejects, 2)).await;
        assert_eq!((summary.rows, summary.imported, summary.rejected), (3, 2, 1), "{summary:?}");
        assert_eq!(rejects(&customer_rejects), pairs(&[("2", "row")]));
        let size = std::fs::metadata(&customer_rejects).expect("rejects").len();
        assert!(size < 1000, "the long row is shown by its beginning: {size} bytes");

        // Regression: a first row too long aborted the whole import (nothing imported);
        // and with CRLF line breaks each reject's raw row began with the LF before it.
        let text = format!(
            "id,party,name,email,ccy,type,limit,parent\r\nBIG,P,{long},,EUR,prepaid,0,\r\nBAD,X,Hal,,EUR,prepaid,0,\r\nA3,P,Cy,,EUR,prepaid,0,\r\n"
        );
        let customers = files.write("long-first.csv", &text);
        let first_rejects = files.dir.join("long-first.rejects.csv");
        let summary = import(&store, &customers, &mapping, &options(&first_rejects, 2)).await;
        assert_eq!((summary.rows, summary.imported, summary.rejected), (3, 1, 2), "{summary:?}");
        assert_eq!(rejects(&first_rejects), pairs(&[("1", "row"), ("2", "party_type")]));
        let mut reader = csv::Reader::from_path(&first_rejects).expect("rejects");
        let raw: Vec<String> = reader.records().map(|record| record.expect("record")[3].to_owned()).collect();
        assert!(raw[0].starts_with("BIG,P,xxx"), "{:?}", &raw[0][..20]);
        assert_eq!(raw[1], "BAD,X,Hal,,EUR,prepaid,0,");
    }
}

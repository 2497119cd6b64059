//! The account hierarchies the billing-side tests share (included with `#[path]` by the
//! tests that use it): customer `c1` with `root-a` (postpaid), its child `child-a` and
//! `root-b` (postpaid), all in EUR.

use rust_decimal::Decimal;
use serde_json::json;
use tollgate_store::{BillingAccountRow, CustomerRow, Store};

/// Writes the hierarchies, `child-a` of `child_kind` (`postpaid` or `prepaid`), created at `at`.
pub(crate) async fn hierarchies(store: &Store, child_kind: &str, at: jiff::Timestamp) {
    let mut tx = store.begin().await.expect("begin");
    let customer = CustomerRow {
        id: "c1".into(),
        party_type: "organization".into(),
        name: "Acme".into(),
        status: "Approved".into(),
        doc: json!({}),
        anonymised_at: None,
    };
    tx.insert_customer(&customer, at).await.expect("customer");
    for (id, parent, root, kind) in [
        ("root-a", None, "root-a", "postpaid"),
        ("child-a", Some("root-a"), "root-a", child_kind),
        ("root-b", None, "root-b", "postpaid"),
    ] {
        let account = BillingAccountRow {
            id: id.into(),
            engine_account_id: 0,
            customer_id: "c1".into(),
            parent_id: parent.map(str::to_owned),
            root_id: root.into(),
            depth: i64::from(parent.is_some()),
            name: id.into(),
            account_type: kind.into(),
            state: "Active".into(),
            currency: "EUR".into(),
            bill_cycle_day: 1,
            payment_terms_days: 30,
            tax_profile_id: None,
            credit_limit: Decimal::ZERO,
        };
        tx.insert_billing_account(&account, at).await.expect("account");
    }
    tx.commit().await.expect("commit");
}

//! The product history the order workflow records (migration 0013), on both databases: a
//! line ordered, moved to another plan, suspended, resumed, given an add-on and
//! terminated, each on a given day, leaves one period per offering and state with the
//! instants of each change, written in the transaction that completed the order item.

mod common;

use common::{lab, Lab};
use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_store::store_test;

fn instant(text: &str) -> Timestamp {
    text.parse().expect("instant")
}

/// Places the order `doc` makes on `when` and runs the workflow then; the order completes.
async fn order_on(lab: &mut Lab, when: &str, doc: impl FnOnce(&Lab) -> Value) -> String {
    lab.now = instant(when);
    let (order, product) = lab.place(doc(lab)).await;
    lab.drive().await;
    assert_eq!(lab.state(&order).await, "completed", "the order of {when}");
    product
}

/// The line's periods as `product state offering opened_by from..until closed_by`, the
/// lab's offerings by name.
async fn check(lab: &Lab, line: &str, expected: &[&str]) {
    let names = [(lab.small.as_str(), "S"), (lab.medium.as_str(), "M"), (lab.addon.as_str(), "addon")];
    let periods = lab.store.product_periods(line).await.expect("periods");
    let seen: Vec<String> = periods
        .iter()
        .map(|period| {
            let offering = period.offering_id.as_deref().unwrap_or("-");
            let offering = names.iter().find(|(id, _)| *id == offering).map_or(offering, |(_, name)| name);
            let product = if period.product_id == line { "line" } else { "addon" };
            let until = period.until.map_or("-".to_owned(), |at| at.to_string());
            let closed = period.closed_by.as_deref().unwrap_or("-");
            format!("{product} {} {offering} {} {}..{until} {closed}", period.state, period.opened_by, period.from)
        })
        .collect();
    assert_eq!(seen, expected);
}

store_test! {
    async fn each_change_of_a_line_opens_a_period_with_its_date(store) {
        let mut lab = lab(&store).await;
        let line = order_on(&mut lab, "2026-10-20T09:00:00Z", Lab::new_line).await;
        let medium = json!({"productOffering": {"id": lab.medium}});
        order_on(&mut lab, "2026-11-16T12:00:00Z", |lab| lab.modify(&line, medium)).await;
        order_on(&mut lab, "2026-11-21T08:00:00Z", |lab| lab.modify(&line, json!({"status": "suspended"}))).await;
        order_on(&mut lab, "2026-11-26T10:00:00Z", |lab| lab.modify(&line, json!({"status": "active"}))).await;
        let addon = json!({"billingAccount": {"id": lab.account}, "productOrderItem": [{"id": "1", "action": "add",
            "productOffering": {"id": lab.addon}, "product": {"productRelationship": [{"relationshipType": "addOnOf", "product": {"id": line}}]}}]});
        order_on(&mut lab, "2026-11-27T00:00:00Z", |_| addon).await;
        order_on(&mut lab, "2026-12-10T23:59:59Z", |lab| lab.delete(&line)).await;
        check(&lab, &line, &[
            "line active S newLine 2026-10-20T09:00:00Z..2026-11-16T12:00:00Z changePlan",
            "line active M changePlan 2026-11-16T12:00:00Z..2026-11-21T08:00:00Z suspend",
            "line suspended M suspend 2026-11-21T08:00:00Z..2026-11-26T10:00:00Z resume",
            "line active M resume 2026-11-26T10:00:00Z..2026-12-10T23:59:59Z terminate",
            "addon active addon addAddOn 2026-11-27T00:00:00Z..2026-12-10T23:59:59Z terminate",
        ]).await;
    }
}

//! The product history the order workflow records (migration 0013), on both databases: a
//! line ordered, moved to another plan, suspended, resumed, given an add-on and
//! terminated, each on a given day, leaves one period per offering and state with the
//! instants of each change, written in the transaction that completed the order item.
//! Then the bill run's reads of it (`Store::product_prices`) through `plan_invoice`, as
//! `tollgate bill-run` does, on hand-computed cases: a plan change mid-cycle, a
//! suspension inside a cycle, an in-advance price and its correction, a SIM swap fee, a
//! rerun. A line from before the history gets its first period when it first changes.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{lab, Lab, PLAN};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_billing::{
    closing_cycle, lookup_keys, plan_invoice, AccountInput, ChargeTiming, Line, PriceKind, ProductInput, RunConfig,
};
use tollgate_catalogue::{Catalogue, Kind, LifecycleStatus};
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

/// An active offering on tariff plan `plan` (`s` or `m`) with a recurring price of
/// `amount` EUR a month, `timing` its `chargeTiming` when given.
async fn priced_offering(lab: &Lab, name: &str, plan: &str, amount: u32, timing: Option<&str>) -> String {
    offering_with(lab, name, plan, amount, timing, Vec::new()).await
}

/// [`priced_offering`] with `extra` prices.
async fn offering_with(
    lab: &Lab,
    name: &str,
    plan: &str,
    amount: u32,
    timing: Option<&str>,
    extra: Vec<Value>,
) -> String {
    let catalogue = Catalogue::new(lab.store.clone(), tollgate_catalogue::BASE_PATH);
    let at = common::at(0);
    let source = PLAN.replacen("id = \"mobile-prepaid-s\"", &format!("id = \"mobile-prepaid-{plan}\""), 1);
    let usage = json!({"name": format!("{name} usage"), "priceType": "usage", "tariffPlan": {"source": source, "file": "plan.toml"}});
    let mut monthly = json!({"name": format!("{name} monthly"), "priceType": "recurring", "recurringChargePeriodType": "month",
        "price": {"unit": "EUR", "value": amount}});
    if let Some(timing) = timing {
        monthly["chargeTiming"] = json!(timing);
    }
    let mut prices = Vec::new();
    for price in [usage, monthly].into_iter().chain(extra) {
        let created = catalogue.create(Kind::ProductOfferingPrice, price, "test", at).await.expect("price");
        prices.push(json!({"id": created.value["id"]}));
    }
    let offering = json!({"name": name, "lifecycleStatus": "In design", "productOfferingPrice": prices});
    let created = catalogue.create(Kind::ProductOffering, offering, "test", at).await.expect("offering");
    let id = created.value["id"].as_str().expect("id").to_owned();
    catalogue.set_status(Kind::ProductOffering, &id, LifecycleStatus::Active, "test", at).await.expect("activate");
    id
}

fn new_line_on(lab: &Lab, offering: &str) -> Value {
    json!({"billingAccount": {"id": lab.account},
        "productOrderItem": [{"id": "1", "action": "add", "productOffering": {"id": offering}}]})
}

/// Bills the lab's account for the cycle closing in `year`-`month` (cycle day 1, UTC) from
/// the store's products, as `tollgate bill-run` reads them, with `billed` (key → amount)
/// what earlier runs billed, which this run's keys join. Returns the lines as
/// `kind description period days/of amount` and the invoice's net total (none: nothing
/// to bill).
async fn bill(
    lab: &Lab,
    year: i16,
    month: i8,
    billed: &mut BTreeMap<String, Decimal>,
) -> (Vec<String>, Option<String>) {
    let cycle = closing_cycle(year, month, 1, TimeZone::UTC).expect("cycle");
    let prices = lab.store.product_prices(std::slice::from_ref(&lab.account)).await.expect("prices");
    let products = prices
        .iter()
        .map(|price| ProductInput {
            product_id: price.product_id.clone(),
            order_id: price.order_id.clone(),
            price_id: price.price_id.clone(),
            description: price.price_name.clone(),
            kind: PriceKind::from_tmf(&price.price_type),
            amount: price.amount,
            currency: price.currency.clone(),
            started_at: price.started_at,
            terminated_at: price.terminated_at,
            changed_at: price.changed_at,
            suspended: price.suspended,
            timing: ChargeTiming::from_tmf(price.charge_timing.as_deref(), "chargeTiming")
                .expect("a timing the catalogue took"),
        })
        .collect();
    let mut account = AccountInput {
        account_id: lab.account.clone(),
        currency: "EUR".into(),
        products,
        usage: Vec::new(),
        billed_amounts: BTreeMap::new(),
        discounts: Vec::new(),
        credits: Vec::new(),
    };
    let keys = lookup_keys(&cycle, std::slice::from_ref(&account)).expect("keys");
    account.billed_amounts = keys.iter().filter_map(|key| Some((key.clone(), *billed.get(key)?))).collect();
    let done: BTreeSet<String> = account.billed_amounts.keys().cloned().collect();
    let planned = plan_invoice(&cycle, &RunConfig::default(), None, &[account], &done).expect("plan");
    let Some(planned) = planned else { return (Vec::new(), None) };
    for key in &planned.billed {
        assert!(billed.insert(key.key.clone(), key.amount).is_none(), "{} billed twice", key.key);
    }
    let lines = planned.invoice.sections[0].lines.iter().map(Line::summary).collect();
    (lines, planned.invoice.total("EUR").map(|total| total.net.to_string()))
}

store_test! {
    async fn a_plan_change_mid_cycle_bills_each_plan_its_days(store) {
        let mut lab = lab(&store).await;
        let small = priced_offering(&lab, "S", "s", 30, None).await;
        let medium = priced_offering(&lab, "M", "m", 45, None).await;
        let line = order_on(&mut lab, "2026-10-20T09:00:00Z", |lab| new_line_on(lab, &small)).await;
        order_on(&mut lab, "2026-11-16T12:00:00Z", |lab| lab.modify(&line, json!({"productOffering": {"id": medium}}))).await;
        let mut billed = BTreeMap::new();
        // October: 20..31 Oct on S, 12/31 of 30.00 = 11.6129… → 11.61 (half-even).
        let (lines, net) = bill(&lab, 2026, 10, &mut billed).await;
        assert_eq!(lines, ["Recurring S monthly [2026-10-20, 2026-11-01) 12/31 11.61"]);
        assert_eq!(net.as_deref(), Some("11.61"));
        // November (30 days): S on 1..15 Nov, 15/30 of 30.00 = 15.00; M from the day of the
        // change, 16..30 Nov, 15/30 of 45.00 = 22.50; 37.50 in all.
        let (lines, net) = bill(&lab, 2026, 11, &mut billed).await;
        assert_eq!(lines, [
            "Recurring S monthly [2026-11-01, 2026-11-16) 15/30 15.00",
            "Recurring M monthly [2026-11-16, 2026-12-01) 15/30 22.50",
        ]);
        assert_eq!(net.as_deref(), Some("37.50"));
        // The same run again bills nothing.
        assert_eq!(bill(&lab, 2026, 11, &mut billed).await, (Vec::new(), None));
    }
}

store_test! {
    async fn a_suspension_inside_a_cycle_is_not_charged(store) {
        let mut lab = lab(&store).await;
        let medium = priced_offering(&lab, "M", "m", 45, None).await;
        let line = order_on(&mut lab, "2026-10-20T09:00:00Z", |lab| new_line_on(lab, &medium)).await;
        order_on(&mut lab, "2026-11-21T08:00:00Z", |lab| lab.modify(&line, json!({"status": "suspended"}))).await;
        order_on(&mut lab, "2026-11-26T10:00:00Z", |lab| lab.modify(&line, json!({"status": "active"}))).await;
        // Suspended from 21 Nov, resumed on 26 Nov (charged again): 1..20 and 26..30 Nov,
        // 25/30 of 45.00 = 37.50.
        let mut billed = BTreeMap::new();
        let (lines, net) = bill(&lab, 2026, 11, &mut billed).await;
        assert_eq!(lines, ["Recurring M monthly [2026-11-01, 2026-12-01) 25/30 37.50"]);
        assert_eq!(net.as_deref(), Some("37.50"));
    }
}

store_test! {
    async fn an_in_advance_price_is_billed_ahead_and_corrected_once(store) {
        let mut lab = lab(&store).await;
        let plan = priced_offering(&lab, "A", "s", 60, Some("inAdvance")).await;
        let line = order_on(&mut lab, "2026-10-16T10:00:00Z", |lab| new_line_on(lab, &plan)).await;
        let mut billed = BTreeMap::new();
        // October's run: 16..31 Oct never charged, 16/31 of 60.00 = 30.9677… → 30.97, and
        // November ahead, 60.00.
        let (lines, net) = bill(&lab, 2026, 10, &mut billed).await;
        assert_eq!(lines, [
            "Recurring A monthly [2026-11-01, 2026-12-01) 30/30 60.00",
            "RecurringAdjustment A monthly [2026-10-16, 2026-11-01) 16/31 30.97",
        ]);
        assert_eq!(net.as_deref(), Some("90.97"));
        // Terminated on 10 Nov (a charged day): November had 10/30 of 60.00 = 20.00 of the
        // 60.00 charged ahead, so 40.00 back; December nothing.
        order_on(&mut lab, "2026-11-10T15:00:00Z", |lab| lab.delete(&line)).await;
        let (lines, net) = bill(&lab, 2026, 11, &mut billed).await;
        assert_eq!(lines, ["RecurringAdjustment A monthly [2026-11-01, 2026-11-11) 10/30 -40.00"]);
        assert_eq!(net.as_deref(), Some("-40.00"));
        // Run again: nothing; and December has nothing left to bill.
        assert_eq!(bill(&lab, 2026, 11, &mut billed).await, (Vec::new(), None));
        assert_eq!(bill(&lab, 2026, 12, &mut billed).await, (Vec::new(), None));
    }
}

store_test! {
    async fn a_sim_swap_bills_its_fee_once_in_its_cycle(store) {
        let mut lab = lab(&store).await;
        let one_time = |name: &str, value: &str, event: Option<&str>| {
            let mut price = json!({"name": name, "priceType": "oneTime",
                "price": {"unit": "EUR", "value": serde_json::from_str::<Value>(value).expect("number")}});
            if let Some(event) = event {
                price["chargeEvent"] = json!(event);
            }
            price
        };
        let fees = vec![one_time("Activation", "9.99", None), one_time("SIM swap", "15", Some("simSwap"))];
        let plan = offering_with(&lab, "S", "s", 30, None, fees).await;
        let line = order_on(&mut lab, "2026-10-20T09:00:00Z", |lab| new_line_on(lab, &plan)).await;
        let mut billed = BTreeMap::new();
        // October: 12/31 of 30.00 = 11.61 and the activation fee 9.99, no SIM swap fee: 21.60.
        let (lines, net) = bill(&lab, 2026, 10, &mut billed).await;
        assert_eq!(lines, ["Recurring S monthly [2026-10-20, 2026-11-01) 12/31 11.61", "OneOff Activation [2026-10-20, 2026-10-21) 9.99"]);
        assert_eq!(net.as_deref(), Some("21.60"));
        let swap = json!({"productCharacteristic": [{"name": "iccid", "value": common::SIMS[2].0}]});
        order_on(&mut lab, "2026-11-05T10:00:00Z", |lab| lab.modify(&line, swap)).await;
        // November: the month, 30.00, and the swap's fee once, 15.00: 45.00.
        let (lines, net) = bill(&lab, 2026, 11, &mut billed).await;
        assert_eq!(lines, ["Recurring S monthly [2026-11-01, 2026-12-01) 30/30 30.00", "OneOff SIM swap [2026-11-05, 2026-11-06) 15.00"]);
        assert_eq!(net.as_deref(), Some("45.00"));
        assert_eq!(bill(&lab, 2026, 11, &mut billed).await, (Vec::new(), None));
    }
}

store_test! {
    async fn a_line_from_before_the_history_gets_its_first_period_when_it_changes(store) {
        let mut lab = lab(&store).await;
        let line = order_on(&mut lab, "2026-10-20T09:00:00Z", Lab::new_line).await;
        // As if the line were older than migration 0013: no period recorded.
        tollgate_store::testing::raw_sql(&store, "DELETE FROM product_periods").await.expect("delete");
        order_on(&mut lab, "2026-11-21T08:00:00Z", |lab| lab.modify(&line, json!({"status": "suspended"}))).await;
        check(&lab, &line, &[
            "line active S backfill 2026-10-20T09:00:00Z..2026-11-21T08:00:00Z suspend",
            "line suspended S suspend 2026-11-21T08:00:00Z..- -",
        ]).await;
    }
}

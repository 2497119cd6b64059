//! Prepaid renewals end to end (issue 18: "prepaid: recurring fees are debited from the
//! balance by the engine at renewal; insufficient balance → the offering's policy: grace
//! days, then a suspend order"): two prepaid lines sold through orders on an offering with
//! a monthly fee and a two-day grace term, a bill run that makes their statements, `serve`
//! debiting the fees through its outbox worker (one account pays, the other cannot), and
//! `tollgate receivables renewals` run as an operator's timer would while `serve` runs:
//! the unpaid line suspended by an order past its grace, tried again, paid after a top-up,
//! and resumed by another order.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::api::{create_token, request};
use super::bill_run::cycles;
use super::orders::{lab, order, place, settled};
use super::{json_lines, stop_server, tollgate};

const JSON: &str = "Content-Type: application/json";
const CATALOGUE: &str = "/tmf-api/productCatalogManagement/v4";
const PREPAY: &str = "/tmf-api/prepayBalanceManagement/v4";

fn ok(args: &[&str]) -> String {
    let output = tollgate(args, "");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn post(address: &str, token: &str, path: &str, body: &Value) -> Value {
    let (status, _, answer) = request(address, "POST", path, token, &[JSON], Some(body));
    assert_eq!(status, 201, "{path}: {answer}");
    answer
}

/// An active offering priced by `plan` for usage, 10.00 EUR a month, with two days of
/// grace for a prepaid renewal.
fn monthly_offering(address: &str, admin: &str, plan: &std::path::Path) -> String {
    let source = std::fs::read_to_string(plan).expect("plan");
    let usage = post(
        address,
        admin,
        &format!("{CATALOGUE}/productOfferingPrice"),
        &json!({"name": "usage", "priceType": "usage", "tariffPlan": {"source": source, "file": "plan.toml"}}),
    );
    let fee = post(
        address,
        admin,
        &format!("{CATALOGUE}/productOfferingPrice"),
        &json!({"name": "monthly fee", "priceType": "recurring", "recurringChargePeriodType": "month",
            "price": {"unit": "EUR", "value": 10}}),
    );
    let offering = post(
        address,
        admin,
        &format!("{CATALOGUE}/productOffering"),
        &json!({"name": "Prepaid monthly", "lifecycleStatus": "In design",
            "productOfferingPrice": [{"id": usage["id"]}, {"id": fee["id"]}],
            "productOfferingTerm": [{"name": "prepaidGracePeriod", "duration": {"amount": 2, "units": "days"}}]}),
    );
    let id = offering["id"].as_str().expect("id").to_owned();
    let patch = ["Content-Type: application/merge-patch+json", "If-Match: W/\"1\""];
    let path = format!("{CATALOGUE}/productOffering/{id}");
    let (status, _, active) =
        request(address, "PATCH", &path, admin, &patch, Some(&json!({"lifecycleStatus": "Active"})));
    assert_eq!(status, 200, "{active}");
    id
}

/// The engine's balance of billing account `id` through TMF654 (503 until the engine
/// has the account).
fn balance(address: &str, token: &str, id: &str) -> Option<Decimal> {
    let (status, _, body) = request(address, "GET", &format!("{PREPAY}/accumulatedBalance/{id}"), token, &[], None);
    (status == 200).then(|| body["totalBalance"]["amount"].to_string().trim_matches('"').parse().expect("a decimal"))
}

/// Waits until `check` holds, polling.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A prepaid billing account topped up with `amount` EUR: its id.
fn prepaid_account(address: &str, admin: &str, name: &str, amount: &str) -> String {
    let customer = post(
        address,
        admin,
        "/tmf-api/customerManagement/v4/customer",
        &json!({"name": name, "engagedParty": {"id": name, "@referredType": "Individual"}}),
    );
    let account = post(
        address,
        admin,
        "/tmf-api/accountManagement/v4/billingAccount",
        &json!({"name": name, "accountType": "prepaid", "creditLimit": {"unit": "EUR", "value": 0},
            "relatedParty": [{"id": customer["id"], "@referredType": "Customer"}]}),
    );
    let id = account["id"].as_str().expect("id").to_owned();
    wait_until("the engine account", || balance(address, admin, &id).is_some());
    top_up(address, admin, &id, &format!("{name}-1"), amount);
    id
}

fn top_up(address: &str, token: &str, account: &str, id: &str, amount: &str) {
    let topup = json!({"id": id, "partyAccount": {"id": account}, "amount": {"amount": amount, "units": "EUR"}});
    let done = post(address, token, &format!("{PREPAY}/topupBalance"), &topup);
    assert_eq!(done["status"], "completed", "{done}");
}

/// The renewals as `receivables renewals --list` prints them, by billing account.
fn renewals(data_dir: &str) -> Vec<Value> {
    let out = tollgate(&["receivables", "renewals", "--list", "--data-dir", data_dir], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json_lines(&out)
}

fn renewal_of<'a>(all: &'a [Value], account: &str) -> &'a Value {
    all.iter().find(|renewal| renewal["billingAccount"] == account).expect("a renewal of the account")
}

fn line_status(address: &str, token: &str, product: &str) -> Value {
    let (_, _, line) =
        request(address, "GET", &format!("/tmf-api/productInventory/v4/product/{product}"), token, &[], None);
    line["status"].clone()
}

#[test]
fn a_prepaid_fee_is_debited_at_renewal_and_an_unpaid_one_suspends_the_line_past_its_grace_until_paid() {
    let lab = lab("renewal", 4);
    let data_dir = lab.data.display().to_string();
    let admin = create_token(&lab.data, "admin");
    let (child, _, address) = lab.serve(&[]);
    let offering = monthly_offering(&address, &admin, &lab.plans[0]);
    let rich = prepaid_account(&address, &admin, "rich", "25.00");
    let poor = prepaid_account(&address, &admin, "poor", "4.00");
    let mut products = Vec::new();
    for account in [&rich, &poor] {
        let placed = place(
            &address,
            &admin,
            &order(account, json!({"id": "1", "action": "add", "productOffering": {"id": offering}})),
        );
        assert_eq!(settled(&address, &admin, placed["id"].as_str().expect("id"))["state"], "completed");
        products.push(placed["productOrderItem"][0]["product"]["id"].as_str().expect("product").to_owned());
    }
    stop_server(child);

    // The bill run: a statement each, in the statement series, its fee 10.00 a renewal.
    let (cycle, _) = cycles();
    let summary = tollgate(&["bill-run", "--cycle", &cycle, "--open-cycles", "--data-dir", &data_dir], "");
    assert!(summary.status.success(), "{}", String::from_utf8_lossy(&summary.stderr));
    let documents = json_lines(&tollgate(&["bill-run", "show", "--run", &cycle, "--data-dir", &data_dir], ""));
    let series: Vec<(&Value, &Value)> = documents[1..].iter().map(|doc| (&doc["series"], &doc["number"])).collect();
    assert_eq!(series, [(&json!("ST"), &json!(1)), (&json!("ST"), &json!(2))], "{documents:?}");
    let opened = renewals(&data_dir);
    assert_eq!(opened.len(), 2);
    for renewal in &opened {
        assert_eq!(
            (&renewal["state"], &renewal["amount"], &renewal["attempts"]),
            (&json!("pending"), &json!("10.00"), &json!(1)),
            "{renewal}"
        );
    }

    // Both ask to be told of a refused renewal, in the operator's own words.
    let templates = lab.data.join("templates.toml");
    std::fs::write(
        &templates,
        "[en]\nbalance_below = \"{name}: {balance}\"\nbundle_used = \"{percent}\"\n\
         renewal_refused = \"{name}: renewal of {amount} refused, top up by {until}\"\n",
    )
    .expect("templates");
    for account in [&rich, &poor] {
        ok(&["threshold", "set", "--billing-account", account, "--kind", "renewal_refused", "--data-dir", &data_dir]);
    }
    let crossings = |account: &str| {
        let listed = ok(&["threshold", "list", "--billing-account", account, "--data-dir", &data_dir]);
        serde_json::from_str::<Value>(&listed).expect("json")["crossings"].as_array().expect("crossings").clone()
    };

    // `serve` debits them: rich pays, poor cannot (4.00 left) and stays unpaid.
    let templates_flag = templates.display().to_string();
    let (child, _, address) = lab.serve(&["--threshold-templates", &templates_flag]);
    wait_until("both first debits answered", || renewals(&data_dir).iter().all(|r| r["state"] != "pending"));
    let first = renewals(&data_dir);
    assert_eq!(renewal_of(&first, &rich)["state"], "paid");
    assert_eq!(renewal_of(&first, &poor)["state"], "unpaid");
    assert_eq!(balance(&address, &admin, &rich), Some(Decimal::from(15)));
    assert_eq!(balance(&address, &admin, &poor), Some(Decimal::from(4)));
    assert!(crossings(&rich).is_empty(), "a paid renewal tells nothing");
    let told = crossings(&poor);
    assert_eq!(told.len(), 1, "{told:?}");
    let grace_until = renewal_of(&first, &poor)["graceUntil"].as_str().expect("day").to_owned();
    assert_eq!(told[0]["message"], format!("poor: renewal of 10 EUR refused, top up by {grace_until}"));
    assert!(told[0]["eventId"].is_string(), "published to the hub: {told:?}");

    // Past the grace (two days after the renewal day): a suspend order for poor's line, and
    // a second attempt, refused again.
    let renewal_on: jiff::civil::Date =
        renewal_of(&first, &poor)["renewalOn"].as_str().expect("day").parse().expect("date");
    assert_eq!(
        renewal_of(&first, &poor)["graceUntil"],
        json!(renewal_on.checked_add(jiff::ToSpan::days(2)).expect("date").to_string()),
        "the offering's grace term"
    );
    let in_grace = renewal_on.checked_add(jiff::ToSpan::days(2)).expect("date").to_string();
    let out = ok(&["receivables", "renewals", "--as-of", &in_grace, "--data-dir", &data_dir]);
    assert!(!out.contains("suspended"), "the grace's last day suspends nothing: {out}");
    wait_until("the second attempt answered", || renewal_of(&renewals(&data_dir), &poor)["state"] == "unpaid");
    let late = renewal_on.checked_add(jiff::ToSpan::days(3)).expect("date").to_string();
    let out = ok(&["receivables", "renewals", "--as-of", &late, "--data-dir", &data_dir]);
    let suspended: Vec<&str> = out.lines().filter(|line| line.contains("\tsuspended\t")).collect();
    assert_eq!(suspended.len(), 1, "{out}");
    assert!(suspended[0].contains(&poor), "{out}");
    let order = suspended[0].rsplit('\t').next().expect("order").to_owned();
    assert_eq!(settled(&address, &admin, &order)["state"], "completed");
    assert_eq!(line_status(&address, &admin, &products[1]), "suspended");
    assert_eq!(line_status(&address, &admin, &products[0]), "active", "the paid line is not touched");
    wait_until("the third attempt answered", || renewal_of(&renewals(&data_dir), &poor)["state"] == "unpaid");
    assert_eq!(renewal_of(&renewals(&data_dir), &poor)["attempts"], 3);
    assert_eq!(crossings(&poor).len(), 1, "told once per renewal, not per refused attempt");

    // Topped up: the next attempt is debited, and the line resumed by an order.
    top_up(&address, &admin, &poor, "poor-2", "10.00");
    ok(&["receivables", "renewals", "--as-of", &late, "--data-dir", &data_dir]);
    wait_until("the fourth attempt debited", || renewal_of(&renewals(&data_dir), &poor)["state"] == "paid");
    assert_eq!(balance(&address, &admin, &poor), Some(Decimal::from(4)), "14.00 less the fee");
    let out = ok(&["receivables", "renewals", "--as-of", &late, "--data-dir", &data_dir]);
    let resumed: Vec<&str> = out.lines().filter(|line| line.contains("\tresumed\t")).collect();
    assert_eq!(resumed.len(), 1, "{out}");
    let order = resumed[0].rsplit('\t').next().expect("order").to_owned();
    assert_eq!(settled(&address, &admin, &order)["state"], "completed");
    assert_eq!(line_status(&address, &admin, &products[1]), "active");
    let out = tollgate(&["receivables", "renewals", "--as-of", &late, "--data-dir", &data_dir], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 retried, 0 suspended, 0 resumed"), "nothing left to do");

    // A rerun of the bill run opens no renewal twice.
    stop_server(child);
    ok(&["bill-run", "--cycle", &cycle, "--open-cycles", "--data-dir", &data_dir]);
    let after = renewals(&data_dir);
    assert_eq!(after.len(), 2);
    assert_eq!(
        (renewal_of(&after, &rich)["attempts"].clone(), renewal_of(&after, &poor)["attempts"].clone()),
        (json!(1), json!(4))
    );
}

//! Prepaid balances end to end on a real `tollgate serve`: a prepaid billing account
//! created over the API, topped up through TMF654, the balance seen in the TMF654 view and
//! in `tollgate account show`, the same top-up id repeated (no second credit) before and
//! after a restart; and billing accounts changed by the CLI while no server runs, which a
//! later `serve` without the API still delivers to the engine through its outbox worker.

use std::path::Path;

use serde_json::{json, Value};

use super::api::{api_address, create_token, request};
use super::{scratch, start_servers, stop_server, tollgate};

const PREPAY: &str = "/tmf-api/prepayBalanceManagement/v4";
const JSON: &str = "Content-Type: application/json";

/// The engine's balance of `account` as `tollgate account show` prints it (the server
/// must be stopped: the command opens the data directory).
fn account_show(data: &Path, account: u64) -> Value {
    let shown =
        tollgate(&["account", "show", "--id", &account.to_string(), "--data-dir", &data.display().to_string()], "");
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    serde_json::from_slice(&shown.stdout).expect("JSON")
}

/// The accumulated balance once the engine has the account (its creation travels through
/// the outbox, applied by the worker a moment after the POST answered).
fn accumulated(address: &str, token: &str, account: &str) -> Value {
    for _ in 0..100 {
        let (status, _, body) =
            request(address, "GET", &format!("{PREPAY}/accumulatedBalance/{account}"), token, &[], None);
        if status == 200 {
            return body;
        }
        assert_eq!(status, 503, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the engine never had billing account {account}");
}

#[test]
fn a_prepaid_account_is_topped_up_once_per_request_id_across_a_restart() {
    let dir = scratch("prepay");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let admin = create_token(&data, "admin");
    let care = create_token(&data, "care");
    let flags = ["--api-listen", "127.0.0.1:0"];
    let (child, _, _) = start_servers(&data, "ocs.prepay.test", &flags);
    let address = api_address(&data);

    let customer = json!({"name": "Ada", "engagedParty": {"id": "ada", "@referredType": "Individual"}});
    let (status, _, customer) =
        request(&address, "POST", "/tmf-api/customerManagement/v4/customer", &admin, &[JSON], Some(&customer));
    assert_eq!(status, 201, "{customer}");
    let account = json!({
        "name": "Ada's phone",
        "accountType": "prepaid",
        "creditLimit": {"unit": "EUR", "value": 0},
        "relatedParty": [{"id": customer["id"], "@referredType": "Customer"}],
    });
    let (status, _, account) =
        request(&address, "POST", "/tmf-api/accountManagement/v4/billingAccount", &admin, &[JSON], Some(&account));
    assert_eq!(status, 201, "{account}");
    let id = account["id"].as_str().expect("id").to_owned();
    let engine_id = account["engineAccountId"].as_u64().expect("engine id");
    assert_eq!(accumulated(&address, &care, &id)["totalBalance"], json!({"amount": 0, "units": "EUR"}));

    let topup = json!({"id": "shop-0042", "partyAccount": {"id": id}, "amount": {"amount": "12.50", "units": "EUR"},
        "channel": {"name": "shop"}});
    let topups = format!("{PREPAY}/topupBalance");
    let (status, head, first) = request(&address, "POST", &topups, &care, &[JSON], Some(&topup));
    assert_eq!(status, 201, "{first}");
    assert!(head.contains(&format!("location: {topups}/shop-0042")), "{head}");
    assert_eq!((&first["status"], &first["balanceAfter"]["amount"]), (&json!("completed"), &json!(12.5)), "{first}");
    let (status, _, again) = request(&address, "POST", &topups, &care, &[JSON], Some(&topup));
    assert_eq!((status, &again), (200, &first), "a repeat answers what was recorded");
    assert_eq!(accumulated(&address, &care, &id)["totalBalance"]["amount"], json!(12.5));
    let (status, _, buckets) =
        request(&address, "GET", &format!("{PREPAY}/bucket?partyAccount.id={id}"), &care, &[], None);
    assert_eq!((status, &buckets[0]["remainingValue"]["amount"]), (200, &json!(12.5)), "{buckets}");
    stop_server(child);

    let shown = account_show(&data, engine_id);
    assert_eq!(
        (shown["body"]["kind"].as_str(), shown["body"]["balance"].as_str()),
        (Some("prepaid"), Some("12.5")),
        "{shown}"
    );

    // After a restart: the same id still credits nothing more.
    let (child, _, _) = start_servers(&data, "ocs.prepay.test", &flags);
    let address = api_address(&data);
    let (status, _, after) = request(&address, "POST", &topups, &care, &[JSON], Some(&topup));
    assert_eq!((status, &after), (200, &first));
    assert_eq!(accumulated(&address, &care, &id)["totalBalance"]["amount"], json!(12.5));
    let (status, _, other) = request(
        &address,
        "POST",
        &topups,
        &care,
        &[JSON],
        Some(&json!({
        "id": "shop-0042", "partyAccount": {"id": id}, "amount": {"amount": 20, "units": "EUR"}})),
    );
    assert_eq!((status, other["reason"].as_str()), (409, Some("id")), "{other}");
    stop_server(child);
    assert_eq!(account_show(&data, engine_id)["body"]["balance"], json!("12.5"));
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("failed for good"), "{log}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn billing_accounts_changed_by_the_cli_reach_the_engine_through_a_later_serve() {
    let dir = scratch("billing-account-cli");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let data_dir = data.display().to_string();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", &data_dir]);
        let output = tollgate(&all, "");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    };
    let file = dir.join("customer.json");
    std::fs::write(&file, r#"{"name": "Acme", "engagedParty": {"id": "acme", "@referredType": "Organization"}}"#)
        .expect("write");
    let customer: Value =
        serde_json::from_slice(&cli(&["customer", "create", "--file", &file.display().to_string()]).stdout)
            .expect("JSON");
    let file = dir.join("account.json");
    let account = json!({"name": "HQ", "creditLimit": {"unit": "EUR", "value": "100"},
        "relatedParty": [{"id": customer["id"], "@referredType": "Customer"}]});
    std::fs::write(&file, account.to_string()).expect("write");
    let created = cli(&["billing-account", "create", "--file", &file.display().to_string()]);
    assert!(String::from_utf8_lossy(&created.stderr).contains("wait in the outbox"));
    let created: Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let id = created["id"].as_str().expect("id").to_owned();
    let engine_id = created["engineAccountId"].as_u64().expect("engine id");
    let limited: Value =
        serde_json::from_slice(&cli(&["billing-account", "set-credit-limit", &id, "250.75"]).stdout).expect("JSON");
    assert_eq!(limited["creditLimit"]["value"], json!(250.75));
    let suspended: Value = serde_json::from_slice(&cli(&["billing-account", "suspend", &id]).stdout).expect("JSON");
    assert_eq!(suspended["state"], "Suspended");
    let listed =
        String::from_utf8_lossy(&cli(&["billing-account", "list", "--state", "Suspended"]).stdout).into_owned();
    assert!(listed.contains(&id) && listed.contains(&engine_id.to_string()), "{listed}");
    let refused = tollgate(&["billing-account", "resume", "nope", "--data-dir", &data_dir], "");
    assert!(!refused.status.success());

    // No API: `serve` finds the store in the data directory and its worker applies the
    // rows in order (create, credit limit, suspension). The CLI reads the store beside the
    // running server until nothing waits in the outbox.
    let (child, _, _) = start_servers(&data, "ocs.bacli.test", &[]);
    for _ in 0..600 {
        let shown = tollgate(&["billing-account", "show", &id, "--data-dir", &data_dir], "");
        if shown.status.success() && !String::from_utf8_lossy(&shown.stderr).contains("wait in the outbox") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop_server(child);
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    assert!(log.contains("outbox worker running"), "{log}");
    let shown = tollgate(&["account", "show", "--id", &engine_id.to_string(), "--data-dir", &data_dir], "");
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(
        (shown["body"]["credit_limit"].as_str(), shown["body"]["kind"].as_str()),
        (Some("250.75"), Some("postpaid")),
        "{shown}"
    );
    // The suspension was applied too (in order, after the creation and the limit): nothing
    // waits in the outbox any more.
    let shown = tollgate(&["billing-account", "show", &id, "--data-dir", &data_dir], "");
    assert!(shown.status.success());
    assert!(!String::from_utf8_lossy(&shown.stderr).contains("wait in the outbox"), "the outbox is empty");
    std::fs::remove_dir_all(dir).ok();
}

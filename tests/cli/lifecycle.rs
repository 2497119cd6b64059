//! The lifecycle operations an order needs, from the command line: plan change,
//! suspension, identities, termination, credit limit, cycle totals, closing.

use serde_json::Value;

use super::{scratch, tollgate};

#[test]
fn subscription_and_account_lifecycle_commands_work_on_a_data_dir() {
    let dir = scratch("lifecycle");
    let data = dir.join("data");
    let data_dir = data.to_str().expect("path");
    let run = |args: &[&str]| {
        let output = tollgate(&[args, &["--data-dir", data_dir]].concat(), "");
        let answer: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|err| panic!("{args:?}: {err}: {}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code(), answer)
    };
    let ok = |args: &[&str]| {
        let (code, answer) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {answer}");
        answer
    };
    ok(&["account", "create", "--id", "5", "--kind", "postpaid", "--currency", "EUR", "--credit-limit", "20"]);
    ok(&[
        "account",
        "subscribe",
        "--id",
        "5",
        "--subscription",
        "50",
        "--plan",
        "mobile-prepaid-s",
        "--identity",
        "msisdn:491700000005",
    ]);
    let (code, same) =
        run(&["subscription", "change-plan", "--id", "50", "--plan", "mobile-prepaid-s", "--next-cycle"]);
    assert_eq!(code, Some(2), "the plan in force already: {same}");
    let (code, other) = run(&["subscription", "change-plan", "--id", "50", "--plan", "business-pro"]);
    assert!(code == Some(2) && other["detail"].as_str().is_some_and(|d| d.contains("GBP")), "{other}");
    ok(&["subscription", "suspend", "--id", "50", "--reason", "dunning", "--key", "s1"]);
    ok(&["subscription", "resume", "--id", "50", "--key", "r1"]);
    ok(&["subscription", "identity", "--id", "50", "--add", "imsi:262010000000005"]);
    let (_, view) = run(&["balance", "show", "--subscriber", "imsi:262010000000005"]);
    assert_eq!(view["body"]["account"], 5, "the new identity reaches the account: {view}");
    ok(&[
        "subscription",
        "identity",
        "--id",
        "50",
        "--add",
        "imsi:262010000000006",
        "--replace",
        "imsi:262010000000005",
    ]);
    let (code, _) = run(&["balance", "show", "--subscriber", "imsi:262010000000005"]);
    assert_eq!(code, Some(2), "the replaced identity is gone");
    let (code, refused) = run(&["account", "credit-limit", "--id", "5", "--credit-limit", "-1"]);
    assert_eq!((code, refused["outcome"].as_str()), (Some(2), Some("invalid")), "{refused}");
    ok(&["account", "credit-limit", "--id", "5", "--credit-limit", "30"]);
    let totals = ok(&["account", "totals", "--id", "5"]);
    assert!(totals["body"]["allowances"].as_array().is_some_and(|a| !a.is_empty()), "{totals}");
    let (code, refused) = run(&["account", "close", "--id", "5"]);
    assert_eq!(code, Some(2), "a live subscription keeps the account open: {refused}");
    ok(&["subscription", "terminate", "--id", "50", "--reason", "churn"]);
    ok(&["account", "close", "--id", "5"]);
    let (code, denied) = run(&["balance", "top-up", "--account", "5", "--amount", "1", "--reference", "late"]);
    assert_eq!((code, denied["outcome"].as_str()), (Some(2), Some("service_denied")), "{denied}");
    std::fs::remove_dir_all(dir).ok();
}

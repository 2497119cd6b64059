//! `tollgate usage`: an account's itemised usage from the rated-event ledger, after
//! mediated calls and a top-up, as CSV and as JSON lines, adding up to the balance.

use rust_decimal::Decimal;
use serde_json::Value;

use super::mediate::{mediate_args, setup, MAPPING};
use super::{scratch, tollgate};

#[test]
fn usage_lists_an_account_s_itemised_calls_and_they_add_up_to_its_balance() {
    let dir = scratch("usage");
    let data = dir.join("data");
    setup(&data);
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let input = dir.join("calls.csv");
    let mut text = String::from("id,msisdn,called,start,seconds\n");
    for n in 0..40u64 {
        let who = 1 + n % 5;
        text.push_str(&format!("call-{n},4917000000{who:02},+4930123{n:03},2026-03-02 10:{n:02}:00,{}\n", 30 + n));
    }
    std::fs::write(&input, text).expect("input");
    let (data_dir, out) = (data.to_str().expect("path"), dir.join("out"));
    let output = tollgate(
        &mediate_args(
            data_dir,
            out.to_str().expect("path"),
            mapping.to_str().expect("path"),
            input.to_str().expect("path"),
        ),
        "",
    );
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let top_up = tollgate(
        &["balance", "top-up", "--data-dir", data_dir, "--account", "2", "--amount", "7.50", "--reference", "card 1"],
        "",
    );
    assert_eq!(top_up.status.code(), Some(0), "{}", String::from_utf8_lossy(&top_up.stderr));

    let usage = |format: &str, extra: &[&str]| {
        let args = [
            &[
                "usage",
                "--data-dir",
                data_dir,
                "--account",
                "2",
                "--from",
                "2026-01-01",
                "--to",
                "2030-01-01",
                "--format",
                format,
            ][..],
            extra,
        ]
        .concat();
        let output = tollgate(&args, "");
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let csv = usage("csv", &[]);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("column {name}"));
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_owned).collect()).collect();
    let calls: Vec<&Vec<String>> = rows.iter().filter(|r| r[column("kind")] == "usage").collect();
    assert_eq!(calls.len(), 8, "account 2 made every fifth of 40 calls: {csv}");
    for call in &calls {
        assert!(call[column("called")].starts_with("+4930123"), "{call:?}");
        assert!(call[column("prefix")].starts_with("49"), "{call:?}");
        assert_eq!(call[column("identity")], "msisdn:491700000002");
        assert_eq!(call[column("plan")], "mobile-prepaid-s");
        assert!(!call[column("rate_line")].is_empty() && call[column("started_at")].starts_with("2026-03-02T10:"));
    }
    assert!(rows.iter().any(|r| r[column("kind")] == "top_up" && r[column("note")] == "card 1"), "{csv}");
    let sum: Decimal = rows.iter().map(|r| r[column("amount")].parse::<Decimal>().expect("amount")).sum();
    let balance = tollgate(&["balance", "show", "--data-dir", data_dir, "--account", "2"], "");
    let view: Value = serde_json::from_slice(&balance.stdout).expect("balance json");
    let balance: Decimal = view["body"]["balance"].as_str().expect("balance").parse().expect("decimal");
    assert_eq!(sum, balance, "the ledger's entries add up to the balance");

    let json = usage("json", &["--usage-only"]);
    let entries: Vec<Value> = json.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(entries.len(), 8);
    assert!(entries.iter().all(|e| e["kind"] == "usage" && e["units"].as_u64().is_some_and(|u| u >= 30)));

    // A bad period is refused by name; an account with nothing posted exits 2.
    let bad =
        tollgate(&["usage", "--data-dir", data_dir, "--account", "2", "--from", "yesterday", "--to", "2030-01-01"], "");
    assert!(bad.status.code() != Some(0) && String::from_utf8_lossy(&bad.stderr).contains("--from"));
    let none = tollgate(
        &["usage", "--data-dir", data_dir, "--account", "99", "--from", "2026-01-01", "--to", "2030-01-01"],
        "",
    );
    assert_eq!(none.status.code(), Some(2));
    std::fs::remove_dir_all(dir).ok();
}

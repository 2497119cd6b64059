//! `tollgate rerate` as an operator runs it after a tariff fix: mediate a file, load the
//! fixed plan version, rerate the day; the balances move by the difference once, the
//! journal shows the refund and the new charge, and a second run changes nothing.

use super::mediate::{balances, mediate_args, setup, MAPPING};
use super::{example, json_lines, scratch, tollgate};

fn rerate(data: &str, plans: &[&str]) -> String {
    let mut args =
        vec!["rerate", "--data-dir", data, "--from", "2026-03-02T00:00:00Z", "--to", "2026-03-03T00:00:00Z", "--rated"];
    let rated = format!("{data}/out");
    args.push(&rated);
    for plan in plans {
        args.extend(["--plan-file", plan]);
    }
    let output = tollgate(&args, "");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn rerate_applies_a_tariff_fix_once_and_leaves_an_audit_trail() {
    let dir = scratch("rerate");
    let data = dir.join("data");
    setup(&data);
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let input = dir.join("calls.csv");
    let mut text = String::from("id,msisdn,called,start,seconds\n");
    for n in 0..30u64 {
        let called = if n % 3 == 0 { "4990012345" } else { "4930123456" };
        text.push_str(&format!("call-{n},4917000000{:02},{called},2026-03-02 10:{n:02}:00,60\n", 1 + n % 5));
    }
    std::fs::write(&input, text).expect("input");
    let data_dir = data.to_str().expect("path");
    let out = data.join("out");
    let args = mediate_args(
        data_dir,
        out.to_str().expect("path"),
        mapping.to_str().expect("path"),
        input.to_str().expect("path"),
    );
    let output = tollgate(&args, "");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let before = balances(&data);

    // Version 4 of the plan prices premium voice at 0.99 instead of 1.99 a minute.
    let original = example("prepaid-mobile.toml");
    let fixed = dir.join("prepaid-mobile-v4.toml");
    let text = std::fs::read_to_string(&original).expect("example plan");
    std::fs::write(
        &fixed,
        text.replace("version = 3", "version = 4").replace(r#"price = "1.99""#, r#"price = "0.99""#),
    )
    .expect("fixed plan");
    let plans = [original.as_str(), fixed.to_str().expect("path")];

    let first = rerate(data_dir, &plans);
    assert!(
        first.contains("30 events selected from 1 files: 10 rerated (was 24.90 EUR, now 14.90 EUR), 20 unchanged"),
        "{first}"
    );
    let after = balances(&data);
    for (was, now) in before.iter().zip(&after) {
        let amount =
            |v: &serde_json::Value| -> rust_decimal::Decimal { v.as_str().expect("balance").parse().expect("decimal") };
        // Two premium calls per subscriber, each 1.00 cheaper now.
        assert_eq!(amount(now) - amount(was), rust_decimal::Decimal::TWO, "{was} → {now}");
    }
    let second = rerate(data_dir, &plans);
    assert!(second.contains("0 rerated (was 0, now 0), 30 unchanged, 0 refused"), "{second}");
    assert_eq!(balances(&data), after, "the second run changed nothing");

    let history = tollgate(&["account", "history", "--id", "1", "--data-dir", data_dir], "");
    let events = json_lines(&history);
    let rerates: Vec<(&str, &str, &str)> = events
        .iter()
        .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("rerate")))
        .map(|e| {
            (e["type"].as_str().unwrap_or(""), e["delta"].as_str().unwrap_or(""), e["note"].as_str().unwrap_or(""))
        })
        .collect();
    // The journal names a record as the engine knows it: by its identity (source, id,
    // subscriber), the text its key was made from.
    let (call_0, call_15) = ("csv:mapping:call-0:msisdn:491700000001", "csv:mapping:call-15:msisdn:491700000001");
    assert_eq!(
        rerates,
        [
            ("rerate_refund", "2.49", call_0),
            ("rerate_charge", "-1.49", call_0),
            ("rerate_refund", "2.49", call_15),
            ("rerate_charge", "-1.49", call_15),
        ]
    );
    let audits = std::fs::read_dir(data.join("mediation/rerate")).expect("audit dir").count();
    assert_eq!(audits, 4, "an audit file and a summary per run");
    std::fs::remove_dir_all(dir).ok();
}

//! `tollgate rate` and `tollgate tariff check` name the input line or the plan entry, and
//! the field, of every value they refuse (issue 14, item 7).

use serde_json::Value;

use super::{example, json_lines, scratch, tollgate};

/// Rates `lines` with the prepaid example and returns, per answer, its input line, its
/// status and its error or unrated message.
fn answers(lines: &[&str]) -> Vec<(u64, String, String)> {
    let input = lines.join("\n") + "\n";
    let output = tollgate(&["rate", "--plan", &example("prepaid-mobile.toml")], &input);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    json_lines(&output)
        .iter()
        .map(|answer| {
            let text = |key: &str| answer[key].as_str().unwrap_or("").to_owned();
            let said = if answer["status"] == "invalid" { text("error") } else { text("message") };
            (answer["line"].as_u64().unwrap_or(0), text("status"), said)
        })
        .collect()
}

/// Units of -5, 2^64 or 1.5 and an allowance `remaining` of -5 used to come back as
/// serde's text (`invalid value: integer `-5`, expected u64 at line 1 column 90`): no
/// field, and a JSON line and column that read like the input's. Each is now refused on
/// its own line, naming the input line and the field; the other lines are answered in
/// order as before.
#[test]
fn rate_refuses_a_bad_value_naming_its_input_line_and_field() {
    let sms = |units: &str| format!(r#"{{"service":"sms","start":"2026-03-02T10:00:00Z","units":{units}}}"#);
    let lines = [
        sms("1"),
        sms("-5"),
        sms("18446744073709551616"),
        sms("1.5"),
        r#"{"service":"voice","destination":"491701234567","start":"2026-03-02T10:00:00Z","units":60,"allowances":[{"allowance":"national-minutes","remaining":-5}]}"#.to_owned(),
        sms("1e3"),
        sms(r#""5""#),
        sms("null"),
        r#"{"rating_group":4294967296,"start":0,"units":1}"#.to_owned(),
        r#"{"service":"sms","start":18446744073709551615,"units":1}"#.to_owned(),
        r#"{"service":"sms","start":"2026-03-02T10:00:00Z"}"#.to_owned(),
        r#"{"service":"sms","start":"2026-03-02T10:00:00Z","unit":1,"units":1}"#.to_owned(),
        r#"{"service":"sms","start":"2026-03-02T10:00:00Z","units":1,"units":2}"#.to_owned(),
        r#"{"service":"sms","start":"2026-03-02T10:00:00Z","units":1,"allowances":[{"allowance":"sms-bundle"}]}"#.to_owned(),
        r#"{"service":"sms","start":"2026-03-02T10:00:00Z","units":1,"allowances":{"allowance":"sms-bundle"}}"#.to_owned(),
        "[1, 2]".to_owned(),
        r#"{"service":"sms","units":1,"#.to_owned(),
        r#"{"service":"sms","start":0,"units":1,"allowances":[{"allowance":"sms-bundle","remaining":2.50} ]}"#.to_owned(),
        r#"{"units": 1.25 , "service":"sms","start":0}"#.to_owned(),
        sms("2"),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let expected = [
        (1, "rated", ""),
        (2, "invalid", "line 2: field `units`: must be a whole number from 0 to 18446744073709551615, got -5"),
        (3, "invalid", "line 3: field `units`: must be a whole number from 0 to 18446744073709551615, got 18446744073709551616"),
        (4, "invalid", "line 4: field `units`: must be a whole number from 0 to 18446744073709551615, got 1.5"),
        (
            5,
            "invalid",
            "line 5: field `allowances[0].remaining`: must be a whole number from 0 to 18446744073709551615, got -5",
        ),
        (6, "invalid", "line 6: field `units`: must be a whole number from 0 to 18446744073709551615, got 1e3"),
        (7, "invalid", "line 7: field `units`: must be a whole number from 0 to 18446744073709551615, got \"5\""),
        (8, "invalid", "line 8: field `units`: must be a whole number from 0 to 18446744073709551615, got null"),
        (9, "invalid", "line 9: field `rating_group`: must be a whole number from 0 to 4294967295, got 4294967296"),
        (
            10,
            "invalid",
            "line 10: field `start`: must be an RFC 3339 time or whole Unix seconds from -9223372036854775808 to 9223372036854775807, got 18446744073709551615",
        ),
        (11, "invalid", "line 11: field `units`: missing"),
        (
            12,
            "invalid",
            "line 12: field `unit`: unknown field; the fields are id, service, rating_group, service_id, destination, start, units, allowances",
        ),
        (13, "invalid", "line 13: field `units`: given twice"),
        (14, "invalid", "line 14: field `allowances[0].remaining`: missing"),
        (15, "invalid", "line 15: field `allowances`: must be an array of allowance balances, got an object"),
        (16, "invalid", "line 16: must be a JSON object, got an array"),
        (17, "invalid", "line 17: not JSON at column 27: EOF while parsing a value"),
        (
            18,
            "invalid",
            "line 18: field `allowances[0].remaining`: must be a whole number from 0 to 18446744073709551615, got 2.50",
        ),
        (19, "invalid", "line 19: field `units`: must be a whole number from 0 to 18446744073709551615, got 1.25"),
        (20, "rated", ""),
    ];
    let expected: Vec<(u64, String, String)> =
        expected.iter().map(|(line, status, said)| (*line, (*status).to_owned(), (*said).to_owned())).collect();
    assert_eq!(answers(&lines), expected);
}

/// Data near 2^64 bytes used to be rated with `charged_units` saturated at
/// 18446744073709551615; every unit now has a limit, answered `usage_too_large`.
#[test]
fn rate_answers_usage_beyond_the_limit_of_its_unit_as_usage_too_large() {
    let event = |service: &str, units: &str| {
        format!(r#"{{"service":"{service}","start":"2026-03-02T10:00:00Z","units":{units}}}"#)
    };
    let lines = [
        event("data", "1125899906842624"),
        event("data", "1125899906842625"),
        event("data", "18446744073709551615"),
        event("sms", "1000000001"),
        format!(
            r#"{{"service":"voice","destination":"491701234567","start":"2026-03-02T10:00:00Z","units":{}}}"#,
            604_801
        ),
        r#"{"service":"sms","start":253370764801,"units":1}"#.to_owned(),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let input = lines.join("\n") + "\n";
    let output = tollgate(&["rate", "--plan", &example("prepaid-mobile.toml")], &input);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answers = json_lines(&output);
    assert_eq!(answers[0]["status"], "rated");
    // At the limit, whole increments of 10240 bytes may charge a little more.
    assert_eq!(answers[0]["charged_units"], Value::from(1_125_899_906_846_720u64));
    let unrated: Vec<(&str, &str)> = answers[1..]
        .iter()
        .map(|a| (a["reason"].as_str().unwrap_or("?"), a["message"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        unrated,
        [
            ("usage_too_large", "field `units`: more than 1125899906842624 bytes in one event"),
            ("usage_too_large", "field `units`: more than 1125899906842624 bytes in one event"),
            ("usage_too_large", "field `units`: more than 1000000000 events in one event"),
            ("usage_too_large", "field `units`: more than 604800 seconds in one event"),
            ("start_too_late", "field `start`: after 9999-01-01T00:00:00Z, the latest start rated"),
        ]
    );
}

/// A band gap used to be reported at 1:1, a missing field without its entry, a
/// duplicate prefix without a column: each now stands at the offending entry, with its
/// path.
#[test]
fn tariff_check_names_the_entry_line_and_column_of_each_problem() {
    let dir = scratch("tariff-errors");
    let original = std::fs::read_to_string(example("prepaid-mobile.toml")).expect("example");
    let plan = dir.join("plan.toml");
    let at = plan.display().to_string();
    let cases = [
        (
            r#"days = ["sat", "sun", "holiday"]"#,
            r#"days = ["sat", "holiday"]"#,
            format!("error: {at}:70:1: field `bands[2]`: no band covers sun 00:00–24:00 (after band `weekend`)\n"),
        ),
        ("price = \"0.09\"\n", "", format!("error: {at}:75:1: field `rates[0]`: missing field `price`\n")),
        (
            r#""493""#,
            r#""4917""#,
            format!(
                "error: {at}:41:20: field `destinations[1].prefixes[1]`: prefix 4917 is in two destinations: \
                 `national-mobile` ({at}:37:29) and `national-fixed`\n"
            ),
        ),
    ];
    for (from, to, expected) in cases {
        assert!(original.contains(from), "example lacks {from:?}");
        std::fs::write(&plan, original.replacen(from, to, 1)).expect("write plan");
        let output = tollgate(&["tariff", "check", &at], "");
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&output.stderr), expected);
    }
    std::fs::remove_dir_all(dir).ok();
}

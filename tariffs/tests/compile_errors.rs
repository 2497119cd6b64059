//! A bad plan is refused with the file, line and field it failed on.

use tollgate_tariffs::{compile_str, Problem};

/// A valid plan; each case below breaks one thing in it.
const BASE: &str = r#"
[plan]
id = "t"
version = 1
currency = "EUR"
time_zone = "UTC"
effective_from = "2026-01-01T00:00:00Z"

[[services]]
name = "voice"
unit = "seconds"

[[destinations]]
name = "mobile"
prefixes = ["4917"]

[[destinations]]
name = "fixed"
prefixes = ["4930"]

[[bands]]
name = "peak"
days = ["mon-fri"]
from = "08:00"
to = "20:00"

[[bands]]
name = "offpeak"
days = ["mon-fri"]
from = "20:00"
to = "08:00"

[[bands]]
name = "weekend"
days = ["sat-sun"]

[[rates]]
service = "voice"
destination = "mobile"
price = "0.09"
per = 60
increment = 1
"#;

/// Compiles `BASE` with `from` replaced by `to` (or `to` appended when `from` is empty)
/// and returns the problems.
fn problems(from: &str, to: &str) -> Vec<Problem> {
    let text = if from.is_empty() { format!("{BASE}{to}") } else { BASE.replacen(from, to, 1) };
    assert!(from.is_empty() || BASE.contains(from), "fixture lacks {from:?}");
    match compile_str(&text, "plan.toml", None) {
        Ok(_) => Vec::new(),
        Err(err) => err.problems().to_vec(),
    }
}

fn line_of(needle: &str, from: &str, to: &str) -> u32 {
    let text = if from.is_empty() { format!("{BASE}{to}") } else { BASE.replacen(from, to, 1) };
    let offset = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in plan"));
    text[..offset].matches('\n').count() as u32 + 1
}

/// Checks that the change yields exactly one problem on the line holding `at`, naming
/// `field` and saying something containing `says`.
fn check(from: &str, to: &str, at: &str, field: &str, says: &str) {
    let found = problems(from, to);
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    let problem = &found[0];
    assert_eq!(problem.file, "plan.toml");
    assert_eq!(problem.line, line_of(at, from, to), "{problem}");
    assert_eq!(problem.field, field, "{problem}");
    assert!(problem.message.contains(says), "{problem}");
}

/// Checks that the change yields exactly these problems, each as `tariff check` prints
/// it (`file:line:column: field `path`: message`), in order.
fn check_printed(from: &str, to: &str, expected: &[&str]) {
    let found: Vec<String> = problems(from, to).iter().map(Problem::to_string).collect();
    assert_eq!(found, expected, "after replacing {from:?} with {to:?}");
}

#[test]
fn the_base_plan_compiles() {
    assert_eq!(problems("", ""), Vec::new());
}

#[test]
fn unknown_destination_in_a_rate() {
    check(
        r#"destination = "mobile""#,
        r#"destination = "mobil""#,
        r#""mobil""#,
        "rates[0].destination",
        "unknown destination `mobil`",
    );
}

#[test]
fn duplicate_destination() {
    check(
        r#"name = "fixed""#,
        r#"name = "mobile""#,
        r#"name = "mobile"
prefixes = ["4930"]"#,
        "destinations[1].name",
        "duplicate destination `mobile`",
    );
}

#[test]
fn same_prefix_in_two_destinations() {
    let (from, to) = (r#"prefixes = ["4930"]"#, r#"prefixes = ["4917"]"#);
    let found = problems(from, to);
    assert_eq!(found.len(), 1, "{found:#?}");
    // Reported on the second occurrence, naming the first.
    assert_eq!(found[0].line, line_of(r#"name = "fixed""#, from, to) + 1, "{}", found[0]);
    assert_eq!(found[0].field, "prefixes");
    assert!(
        found[0].message.contains("prefix 4917 is in two destinations: `mobile` (plan.toml:15) and `fixed`"),
        "{}",
        found[0]
    );
}

#[test]
fn same_prefix_twice_in_one_destination() {
    let found = problems(r#"prefixes = ["4930"]"#, r#"prefixes = ["4930", "4930"]"#);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("listed twice for `fixed`"), "{}", found[0]);
}

#[test]
fn overlapping_bands() {
    check(
        r#"from = "20:00""#,
        r#"from = "19:00""#,
        "[[bands]]\nname = \"offpeak\"",
        "bands[1]",
        "overlaps band `peak`",
    );
}

#[test]
fn missing_band_coverage() {
    let found = problems(r#"days = ["sat-sun"]"#, r#"days = ["sat"]"#);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "bands");
    assert!(found[0].message.contains("no band covers sun 00:00–24:00"), "{}", found[0]);
}

#[test]
fn a_first_interval_or_increment_beyond_the_event_limit_is_refused() {
    let cases = [
        (
            "increment = 1",
            "increment = 604801",
            "plan.toml:42:13: field `rates[0].increment`: more than 604800 seconds, the most one event may use",
        ),
        (
            "increment = 1",
            "increment = 1\nfirst_interval = 18446744073709551615",
            "plan.toml:43:18: field `rates[0].first_interval`: more than 604800 seconds, the most one event may use",
        ),
    ];
    for (from, to, expected) in cases {
        check_printed(from, to, &[expected]);
    }
}

#[test]
fn zero_increment() {
    check("increment = 1", "increment = 0", "increment = 0", "rates[0].increment", "zero increment");
}

#[test]
fn negative_price() {
    check(r#"price = "0.09""#, r#"price = "-0.09""#, r#"price = "-0.09""#, "rates[0].price", "negative amount");
}

#[test]
fn price_written_as_a_float_is_refused() {
    let found = problems(r#"price = "0.09""#, "price = 0.09");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].line, line_of("price = 0.09", r#"price = "0.09""#, "price = 0.09"));
}

#[test]
fn allowance_on_unknown_service() {
    let allowance = "\n[[allowances]]\nname = \"sms\"\nservice = \"sms\"\namount = 100\nunit = \"events\"\n";
    check("", allowance, "service = \"sms\"", "allowances[0].service", "unknown service `sms`");
}

#[test]
fn allowance_unit_must_measure_the_service() {
    let allowance = "\n[[allowances]]\nname = \"m\"\nservice = \"voice\"\namount = 10\nunit = \"GB\"\n";
    check("", allowance, "unit = \"GB\"", "allowances[0].unit", "does not measure seconds");
}

#[test]
fn unknown_time_zone() {
    check(r#"time_zone = "UTC""#, r#"time_zone = "Mars/Olympus""#, "time_zone", "plan.time_zone", "unknown time zone");
}

#[test]
fn syntax_error_names_line_and_column() {
    let found = problems(r#"version = 1"#, "version = = 1");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].line, 4);
    assert!(found[0].column > 0);
}

#[test]
fn unknown_field_is_refused() {
    let found = problems("per = 60", "per = 60\nprise = \"1\"");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("prise"), "{}", found[0]);
}

#[test]
fn duplicate_rate_key() {
    let rate = "\n[[rates]]\nservice = \"voice\"\ndestination = \"mobile\"\nprice = \"1\"\n";
    check(
        "",
        rate,
        "[[rates]]\nservice = \"voice\"\ndestination = \"mobile\"\nprice = \"1\"",
        "rates[1]",
        "already defined on line",
    );
}

#[test]
fn steps_must_increase() {
    let steps = "[[rates.steps]]\nfrom = 60\nprice = \"0.05\"\n[[rates.steps]]\nfrom = 30\nprice = \"0.01\"\n";
    check("", steps, "from = 30", "rates[0].steps[1].from", "increase");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = BASE.replacen("increment = 1", "increment = 0", 1).replacen(r#"price = "0.09""#, r#"price = "x""#, 1);
    let err = compile_str(&text, "plan.toml", None).expect_err("two problems");
    assert_eq!(err.problems().len(), 2, "{err}");
    assert!(err.to_string().contains("and 1 more problem"), "{err}");
}

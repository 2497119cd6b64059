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
    // Reported at the second occurrence, naming the first.
    check_printed(
        r#"prefixes = ["4930"]"#,
        r#"prefixes = ["4917"]"#,
        &["plan.toml:19:13: field `destinations[1].prefixes[0]`: prefix 4917 is in two destinations: `mobile` (plan.toml:15:13) and `fixed`"],
    );
}

#[test]
fn same_prefix_twice_in_one_destination() {
    check_printed(
        r#"prefixes = ["4930"]"#,
        r#"prefixes = ["4930", "4930"]"#,
        &["plan.toml:19:21: field `destinations[1].prefixes[1]`: prefix 4930 is listed twice for `fixed` (also at plan.toml:19:13)"],
    );
}

#[test]
fn a_duplicate_prefix_in_a_prefix_file_names_its_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("tollgate-compile-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("prefixes.csv"), "prefix,destination\n4940,hamburg\n  4917,hamburg-mobile\n").expect("csv");
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, format!("prefix_files = [\"prefixes.csv\"]\n{BASE}")).expect("plan");
    let err = tollgate_tariffs::compile_file(&plan).expect_err("duplicate prefix");
    let found: Vec<String> = err.problems().iter().map(Problem::to_string).collect();
    let (csv, plan) = (dir.join("prefixes.csv").display().to_string(), plan.display().to_string());
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        found,
        [format!(
            "{csv}:3:3: field `prefix`: prefix 4917 is in two destinations: `mobile` ({plan}:16:13) and `hamburg-mobile`"
        )]
    );
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
    check_printed(
        r#"days = ["sat-sun"]"#,
        r#"days = ["sat"]"#,
        &["plan.toml:33:1: field `bands[2]`: no band covers sun 00:00–24:00 (after band `weekend`)"],
    );
}

/// A gap in the week is reported at the `[[bands]]` entry it follows (going back over
/// midnight and from Monday to Sunday), or on a holiday at the entry it precedes, not at
/// the top of the file.
#[test]
fn a_band_gap_is_reported_at_the_band_it_follows() {
    let holiday_from_eight =
        "\n[calendar]\nholidays = [\"2026-12-25\"]\n\n[[bands]]\nname = \"feast\"\ndays = [\"holiday\"]\nfrom = \"08:00\"\n";
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            r#"to = "08:00""#,
            r#"to = "07:00""#,
            &[
                "plan.toml:27:1: field `bands[1]`: no band covers mon 07:00–08:00 (after band `offpeak`)",
                "plan.toml:27:1: field `bands[1]`: no band covers tue 07:00–08:00 (after band `offpeak`)",
                "plan.toml:27:1: field `bands[1]`: no band covers wed 07:00–08:00 (after band `offpeak`)",
                "plan.toml:27:1: field `bands[1]`: no band covers thu 07:00–08:00 (after band `offpeak`)",
                "plan.toml:27:1: field `bands[1]`: no band covers fri 07:00–08:00 (after band `offpeak`)",
            ],
        ),
        (
            r#"to = "08:00""#,
            r#"to = "24:00""#,
            &[
                "plan.toml:27:1: field `bands[1]`: no band covers tue 00:00–08:00 (after band `offpeak`)",
                "plan.toml:27:1: field `bands[1]`: no band covers wed 00:00–08:00 (after band `offpeak`)",
                "plan.toml:27:1: field `bands[1]`: no band covers thu 00:00–08:00 (after band `offpeak`)",
                "plan.toml:27:1: field `bands[1]`: no band covers fri 00:00–08:00 (after band `offpeak`)",
                "plan.toml:33:1: field `bands[2]`: no band covers mon 00:00–08:00 (after band `weekend`)",
            ],
        ),
        (
            "",
            holiday_from_eight,
            &["plan.toml:47:1: field `bands[3]`: no band covers holiday 00:00–08:00 (before band `feast`)"],
        ),
    ];
    for (from, to, expected) in cases {
        check_printed(from, to, expected);
    }
}

#[test]
fn holidays_without_a_holiday_band_are_reported_at_the_holidays() {
    check_printed(
        "",
        "\n[calendar]\nholidays = [\"2026-12-25\"]\n",
        &["plan.toml:45:13: field `calendar.holidays`: holidays are listed but no band covers the day `holiday`"],
    );
}

/// serde says which field is missing but not in which entry; the problem names the
/// entry's path and stands at its header.
#[test]
fn a_missing_field_names_its_entry() {
    let cases = [
        ("price = \"0.09\"\n", "", "plan.toml:37:1: field `rates[0]`: missing field `price`"),
        ("name = \"weekend\"\n", "", "plan.toml:33:1: field `bands[2]`: missing field `name`"),
        ("unit = \"seconds\"\n", "", "plan.toml:9:1: field `services[0]`: missing field `unit`"),
        ("currency = \"EUR\"\n", "", "plan.toml:2:1: field `plan`: missing field `currency`"),
        ("", "[[rates.steps]]\nfrom = 60\n", "plan.toml:43:1: field `rates[0].steps[0]`: missing field `price`"),
    ];
    for (from, to, expected) in cases {
        check_printed(from, to, &[expected]);
    }
}

#[test]
fn a_value_of_the_wrong_type_names_its_field() {
    let cases = [
        (
            "increment = 1",
            "increment = \"x\"",
            "plan.toml:42:13: field `rates[0].increment`: invalid type: string \"x\", expected u64",
        ),
        (
            r#"days = ["sat-sun"]"#,
            r#"days = ["sat-sun", 5]"#,
            "plan.toml:35:20: field `bands[2].days[1]`: invalid type: integer `5`, expected a string",
        ),
    ];
    for (from, to, expected) in cases {
        check_printed(from, to, &[expected]);
    }
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

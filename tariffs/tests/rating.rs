//! Rating behaviour: increments, band splits, steps, allowances, fees, rounding, and
//! the laws that hold for every event (property tests).

use std::collections::BTreeMap;
use std::str::FromStr;

use proptest::prelude::*;
use rust_decimal::Decimal;
use tollgate_tariffs::{
    compile_str, rate, rate_with_paid_units, AllowanceBalance, CompiledPlan, LineKind, RatedEvent, Rounding,
    RoundingMode, Unit, Unrated, UsageEvent, MAX_START_UTC_SECONDS,
};

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("test decimal")
}

fn utc(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().expect("test timestamp").as_second()
}

/// A Berlin plan with peak 08:00–20:00 on weekdays and off-peak otherwise; `rates` and
/// `extra` are appended as written.
fn plan(rounding: &str, rates: &str, extra: &str) -> CompiledPlan {
    let text = format!(
        r#"
[plan]
id = "t"
version = 1
currency = "EUR"
time_zone = "Europe/Berlin"
effective_from = "2026-01-01T00:00:00"
{rounding}
[[services]]
name = "voice"
unit = "seconds"
[[services]]
name = "data"
unit = "bytes"
rating_groups = [10, 20]
[[destinations]]
name = "mobile"
prefixes = ["4917"]
[[destinations]]
name = "fixed"
prefixes = ["4930"]
[calendar]
holidays = ["2026-12-25"]
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
name = "offpeak"
days = ["sat-sun", "holiday"]
{rates}
{extra}
"#
    );
    compile_str(&text, "test.toml", None).unwrap_or_else(|err| panic!("{err}\n{text}"))
}

const PEAK_OFFPEAK: &str = r#"
[[rates]]
service = "voice"
band = "peak"
price = "0.60"
per = 60
[[rates]]
service = "voice"
band = "offpeak"
price = "0.30"
per = 60
[[rates]]
service = "data"
price = "1.00"
per = 1048576
increment = 1024
"#;

fn voice(number: &'static str, start: &str, seconds: u64) -> UsageEvent<'static> {
    UsageEvent {
        service: 0,
        rating_group: None,
        destination: Some(number),
        start_utc_seconds: utc(start),
        units: seconds,
    }
}

/// Rates `event` and checks the laws every rated event obeys before returning it.
fn check(plan: &CompiledPlan, event: &UsageEvent<'_>, allowances: &[AllowanceBalance]) -> RatedEvent {
    let rated = rate(plan, event, allowances).unwrap_or_else(|unrated| panic!("unrated: {unrated:?}"));
    assert_laws(plan, event, allowances, &rated);
    rated
}

fn assert_laws(plan: &CompiledPlan, event: &UsageEvent<'_>, allowances: &[AllowanceBalance], rated: &RatedEvent) {
    let line_sum: Decimal = rated.lines.iter().map(|l| l.amount).sum();
    assert_eq!(line_sum, rated.amount, "rounded lines add up to the amount: {rated:#?}");
    let exact_sum: Decimal = rated.lines.iter().map(|l| l.exact_amount).sum();
    assert_eq!(exact_sum, rated.exact_amount);
    assert_eq!(rated.amount, plan.rounding.apply(rated.exact_amount), "amount is the exact total rounded once");
    assert_eq!(rated.amount.scale(), plan.rounding.decimals);
    assert_eq!(rated.rounding_adjustment, rated.amount - rated.exact_amount);
    let unit_sum: u64 = rated
        .lines
        .iter()
        .filter(|l| matches!(l.kind, LineKind::Usage { .. } | LineKind::Allowance { .. }))
        .map(|l| l.units)
        .sum();
    assert_eq!(unit_sum, rated.charged_units, "usage and allowance lines cover the charged units once");
    assert!(rated.charged_units >= event.units);
    let drawn: u64 = rated.draws.iter().map(|draw| draw.units).sum();
    assert_eq!(drawn, rated.allowance_units);
    for draw in &rated.draws {
        let balance = allowances.iter().find(|b| b.bucket == draw.bucket).expect("draw from a given bucket");
        assert!(draw.units <= balance.remaining_units, "never draws more than a bucket holds");
    }
    assert!(rated.amount >= Decimal::ZERO);
}

fn usage_units_by_band(plan: &CompiledPlan, rated: &RatedEvent) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in &rated.lines {
        if let LineKind::Usage { band, .. } = line.kind {
            *out.entry(plan.bands[usize::from(band)].clone()).or_default() += line.units;
        }
    }
    out
}

#[test]
fn increments_round_usage_up_as_documented() {
    // (first_interval, increment, used) → charged
    let cases = [
        (60, 60, 1, 60),
        (60, 60, 60, 60),
        (60, 60, 61, 120),
        (30, 6, 1, 30),
        (30, 6, 31, 36),
        (30, 6, 37, 42),
        (1, 1, 59, 59),
        (60, 1, 61, 61),
        (0, 10, 1, 10),
        (60, 60, 0, 0),
    ];
    for (first, increment, used, charged) in cases {
        let rates = format!(
            "[[rates]]\nservice = \"voice\"\nprice = \"0.60\"\nper = 60\nfirst_interval = {first}\nincrement = {increment}\n"
        );
        let plan = plan("", &rates, "");
        let rated = check(&plan, &voice("4917", "2026-03-02T10:00:00Z", used), &[]);
        assert_eq!(rated.charged_units, charged, "{first}/{increment} with {used}");
        assert_eq!(rated.exact_amount, d("0.01") * Decimal::from(charged), "{first}/{increment} with {used}");
    }
}

#[test]
fn a_call_across_the_peak_boundary_is_split_exactly_at_it() {
    let plan = plan("", PEAK_OFFPEAK, "");
    // Monday 2026-03-02, Berlin is UTC+1: 07:59 local = 06:59Z.
    let rated = check(&plan, &voice("4917", "2026-03-02T06:59:00Z", 120), &[]);
    assert_eq!(plan.bands[usize::from(rated.band)], "offpeak");
    let by_band = usage_units_by_band(&plan, &rated);
    assert_eq!(by_band, BTreeMap::from([("offpeak".to_owned(), 60), ("peak".to_owned(), 60)]));
    assert_eq!(rated.amount, d("0.90"));
    // One second either side of 08:00:00.
    let rated = check(&plan, &voice("4917", "2026-03-02T06:59:59Z", 2), &[]);
    assert_eq!(usage_units_by_band(&plan, &rated), BTreeMap::from([("offpeak".to_owned(), 1), ("peak".to_owned(), 1)]));
    // Starting exactly at 08:00:00 is all peak.
    let rated = check(&plan, &voice("4917", "2026-03-02T07:00:00Z", 120), &[]);
    assert_eq!(usage_units_by_band(&plan, &rated), BTreeMap::from([("peak".to_owned(), 120)]));
}

#[test]
fn band_boundaries_follow_daylight_saving_time() {
    let plan = plan("", PEAK_OFFPEAK, "");
    // Monday 2026-03-30, Berlin is on summer time (UTC+2): 08:00 local = 06:00Z.
    let rated = check(&plan, &voice("4917", "2026-03-30T05:59:00Z", 120), &[]);
    assert_eq!(
        usage_units_by_band(&plan, &rated),
        BTreeMap::from([("offpeak".to_owned(), 60), ("peak".to_owned(), 60)])
    );
}

#[test]
fn holidays_use_the_holiday_bands() {
    let plan = plan("", PEAK_OFFPEAK, "");
    // Friday 2026-12-25 at 11:00 local is a holiday: off-peak all day.
    let rated = check(&plan, &voice("4917", "2026-12-25T10:00:00Z", 60), &[]);
    assert_eq!(plan.bands[usize::from(rated.band)], "offpeak");
    let rated = check(&plan, &voice("4917", "2026-12-24T10:00:00Z", 60), &[]);
    assert_eq!(plan.bands[usize::from(rated.band)], "peak");
}

#[test]
fn a_long_call_crosses_several_bands_and_midnight() {
    let plan = plan("", PEAK_OFFPEAK, "");
    // Friday 19:00 local → Saturday 09:00 local: 1 h peak, then off-peak through the weekend.
    let rated = check(&plan, &voice("4917", "2026-03-06T18:00:00Z", 14 * 3600), &[]);
    assert_eq!(
        usage_units_by_band(&plan, &rated),
        BTreeMap::from([("offpeak".to_owned(), 13 * 3600), ("peak".to_owned(), 3600)])
    );
    assert_eq!(rated.amount, d("0.60") * Decimal::from(60) + d("0.30") * Decimal::from(13 * 60));
}

#[test]
fn price_steps_apply_from_their_offset() {
    let rates =
        "[[rates]]\nservice = \"voice\"\nprice = \"0.60\"\nper = 60\n[[rates.steps]]\nfrom = 60\nprice = \"0.06\"\n";
    let plan = plan("", rates, "");
    let rated = check(&plan, &voice("4917", "2026-03-02T10:00:00Z", 90), &[]);
    assert_eq!(rated.exact_amount, d("0.60") + d("0.03"));
    assert_eq!(rated.lines.len(), 2);
    assert_eq!((rated.lines[1].from_unit, rated.lines[1].units), (60, 30));
}

#[test]
fn connect_fee_minimum_and_maximum_charge() {
    let rates = r#"
[[rates]]
service = "voice"
destination = "mobile"
connect_fee = "0.10"
price = "0.60"
per = 60
minimum_charge = "0.50"
maximum_charge = "3.00"
"#;
    let plan = plan("", rates, "");
    let short = check(&plan, &voice("4917", "2026-03-02T10:00:00Z", 10), &[]);
    assert_eq!(short.amount, d("0.50"), "{short:#?}");
    assert!(short.lines.iter().any(|l| l.kind == LineKind::MinimumCharge && l.exact_amount == d("0.30")));
    let long = check(&plan, &voice("4917", "2026-03-02T10:00:00Z", 600), &[]);
    assert_eq!(long.amount, d("3.00"));
    assert!(long.lines.iter().any(|l| l.kind == LineKind::MaximumChargeCap && l.exact_amount == d("-3.10")));
    let zero = check(&plan, &voice("4917", "2026-03-02T10:00:00Z", 0), &[]);
    assert_eq!(zero.amount, d("0.00"));
}

const BUNDLES: &str = r#"
[[allowances]]
name = "mobile-minutes"
service = "voice"
destinations = ["mobile"]
amount = 10
unit = "minutes"
priority = 1
[[allowances]]
name = "any-minutes"
service = "voice"
amount = 100
unit = "minutes"
priority = 5
[[allowances]]
name = "rg20-data"
service = "data"
rating_groups = [20]
amount = 1
unit = "MB"
"#;

#[test]
fn allowances_are_drawn_by_priority_then_money_pays_the_rest() {
    let plan = plan("", PEAK_OFFPEAK, BUNDLES);
    let mobile = plan.allowance_by_name("mobile-minutes").expect("allowance");
    let any = plan.allowance_by_name("any-minutes").expect("allowance");
    let buckets = [
        AllowanceBalance { bucket: 1, allowance: any, remaining_units: 30 },
        AllowanceBalance { bucket: 2, allowance: mobile, remaining_units: 45 },
    ];
    let rated = check(&plan, &voice("4917", "2026-03-02T10:00:00Z", 100), &buckets);
    let draws: Vec<(u64, u64)> = rated.draws.iter().map(|d| (d.bucket, d.units)).collect();
    assert_eq!(draws, vec![(2, 45), (1, 30)], "lower priority number first");
    assert_eq!(rated.allowance_units, 75);
    assert_eq!(rated.exact_amount, d("0.25"), "25 s at 0.60/min");
    // A fixed-line call may not use the mobile bundle.
    let rated = check(&plan, &voice("4930", "2026-03-02T10:00:00Z", 100), &buckets);
    assert_eq!(rated.draws.iter().map(|d| d.bucket).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn a_fully_covered_call_pays_no_connect_fee() {
    let rates = "[[rates]]\nservice = \"voice\"\nconnect_fee = \"0.10\"\nprice = \"0.60\"\nper = 60\n";
    let plan = plan("", rates, BUNDLES);
    let any = plan.allowance_by_name("any-minutes").expect("allowance");
    let buckets = [AllowanceBalance { bucket: 9, allowance: any, remaining_units: 600 }];
    let rated = check(&plan, &voice("4930", "2026-03-02T10:00:00Z", 100), &buckets);
    assert_eq!(rated.amount, d("0.00"));
    assert_eq!(rated.allowance_units, 100);
}

#[test]
fn data_allowances_match_the_rating_group() {
    let plan = plan("", PEAK_OFFPEAK, BUNDLES);
    let data = plan.service_by_rating_group(20).expect("service");
    let bucket = plan.allowance_by_name("rg20-data").expect("allowance");
    let buckets = [AllowanceBalance { bucket: 3, allowance: bucket, remaining_units: 1 << 20 }];
    let event = |rating_group| UsageEvent {
        service: data,
        rating_group: Some(rating_group),
        destination: None,
        start_utc_seconds: utc("2026-03-02T10:00:00Z"),
        units: 2 << 20,
    };
    let rated = check(&plan, &event(20), &buckets);
    assert_eq!((rated.allowance_units, rated.amount), (1 << 20, d("1.00")));
    let rated = check(&plan, &event(10), &buckets);
    assert_eq!((rated.allowance_units, rated.amount), (0, d("2.00")));
}

#[test]
fn outcomes_that_cannot_be_priced() {
    let rates = "[[rates]]\nservice = \"voice\"\ndestination = \"mobile\"\nband = \"peak\"\nprice = \"1\"\n";
    let plan = plan("", rates, "");
    let cases = [
        (voice("4917", "2026-03-02T10:00:00Z", 1), Unrated::NoRate { band: 1 }),
        (voice("33", "2026-03-02T10:00:00Z", 1), Unrated::UnknownDestination),
        (voice("49a", "2026-03-02T10:00:00Z", 1), Unrated::MalformedDestination { offset: 2 }),
        (
            voice("4917", "2025-12-31T10:00:00Z", 1),
            Unrated::BeforeEffective { effective_from_utc_seconds: utc("2025-12-31T23:00:00Z") },
        ),
        (
            voice("4917", "2026-03-02T10:00:00Z", 8 * 86_400),
            Unrated::UsageTooLarge { limit: 7 * 86_400, unit: Unit::Seconds },
        ),
    ];
    let fixed_rates = plan.rate_for(0, Some(0), 0).is_some();
    assert!(fixed_rates, "peak mobile has a rate");
    for (event, expected) in cases {
        let event = if expected == (Unrated::NoRate { band: 1 }) {
            UsageEvent { start_utc_seconds: utc("2026-03-02T20:00:00Z"), ..event }
        } else {
            event
        };
        assert_eq!(rate(&plan, &event, &[]), Err(expected));
    }
    // A peak call running into off-peak, where there is no rate, is not half-priced.
    assert_eq!(rate(&plan, &voice("4917", "2026-03-02T18:59:00Z", 120), &[]), Err(Unrated::NoRate { band: 1 }));
    let unknown = UsageEvent { service: 9, ..voice("4917", "2026-03-02T10:00:00Z", 1) };
    assert_eq!(rate(&plan, &unknown, &[]), Err(Unrated::UnknownService));
}

#[test]
fn rounding_modes_apply_to_the_total() {
    // 7 s at 0.01/min = 0.0011666…: each mode rounds it as named at 3 decimals.
    let rates = "[[rates]]\nservice = \"voice\"\nprice = \"0.01\"\nper = 60\n";
    for (mode, expected) in [("half-up", "0.001"), ("half-even", "0.001"), ("up", "0.002"), ("down", "0.001")] {
        let plan = plan(&format!("[rounding]\nmode = \"{mode}\"\ndecimals = 3\n"), rates, "");
        let rated = check(&plan, &voice("4917", "2026-03-02T10:00:00Z", 7), &[]);
        assert_eq!(rated.amount, d(expected), "{mode}");
    }
    // 45 s at 0.01/min = 0.0075: half-up and half-even differ on ties.
    for (mode, expected) in [("half-up", "0.008"), ("half-even", "0.008"), ("down", "0.007")] {
        let plan = plan(&format!("[rounding]\nmode = \"{mode}\"\ndecimals = 3\n"), rates, "");
        assert_eq!(check(&plan, &voice("4917", "2026-03-02T10:00:00Z", 45), &[]).amount, d(expected), "{mode}");
    }
    let plan = plan("[rounding]\nmode = \"half-even\"\ndecimals = 4\n", rates, "");
    // 27 s = 0.0045 → half-even at 4 decimals stays 0.0045.
    assert_eq!(check(&plan, &voice("4917", "2026-03-02T10:00:00Z", 27), &[]).amount, d("0.0045"));
}

#[test]
fn currency_default_rounding_uses_its_minor_unit() {
    let text = BASE_JPY;
    let plan = compile_str(text, "jpy.toml", None).expect("plan");
    assert_eq!(plan.rounding, Rounding { mode: RoundingMode::HalfUp, decimals: 0 });
}

const BASE_JPY: &str = r#"
[plan]
id = "jp"
version = 1
currency = "JPY"
time_zone = "Asia/Tokyo"
effective_from = "2026-01-01T00:00:00"
[[services]]
name = "sms"
unit = "events"
[[rates]]
service = "sms"
price = "3"
"#;

const BASE_JPY_SERVICES: &str =
    "[[services]]\nname = \"sms\"\nunit = \"events\"\n[[rates]]\nservice = \"sms\"\nprice = \"3\"\n";

fn rounding_mode() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("half-up"), Just("half-even"), Just("up"), Just("down")]
}

fn price() -> impl Strategy<Value = String> {
    (0u64..100_000, 0u32..6).prop_map(|(mantissa, scale)| Decimal::new(mantissa as i64, scale).to_string())
}

prop_compose! {
    fn random_plan()(
        mode in rounding_mode(),
        decimals in 0u32..5,
        connect_fee in price(),
        first_interval in 0u64..120,
        increment in 1u64..90,
        per in prop_oneof![Just(1u64), Just(60), Just(7)],
        peak in price(),
        offpeak in price(),
        step in proptest::option::of((1u64..600, price())),
        minimum in proptest::option::of(price()),
        maximum in proptest::option::of(price()),
    ) -> CompiledPlan {
        let step = step.map_or(String::new(), |(from, price)| format!("[[rates.steps]]\nfrom = {from}\nprice = \"{price}\"\n"));
        let minimum_line = minimum.as_ref().map_or(String::new(), |m| format!("minimum_charge = \"{m}\"\n"));
        let maximum_line = match (&maximum, &minimum) {
            (Some(max), Some(min)) if d(max) < d(min) => String::new(),
            (Some(max), _) => format!("maximum_charge = \"{max}\"\n"),
            (None, _) => String::new(),
        };
        let rates = format!(
            "[[rates]]\nservice = \"voice\"\nband = \"peak\"\nconnect_fee = \"{connect_fee}\"\nfirst_interval = {first_interval}\n\
             increment = {increment}\nprice = \"{peak}\"\nper = {per}\n{minimum_line}{maximum_line}{step}\
             [[rates]]\nservice = \"voice\"\nband = \"offpeak\"\nconnect_fee = \"{connect_fee}\"\nfirst_interval = {first_interval}\n\
             increment = {increment}\nprice = \"{offpeak}\"\nper = {per}\n{minimum_line}{maximum_line}{step}\
             [[rates]]\nservice = \"data\"\nprice = \"{peak}\"\nper = 1048576\nincrement = {increment}\n"
        );
        plan(&format!("[rounding]\nmode = \"{mode}\"\ndecimals = {decimals}\n"), &rates, BUNDLES)
    }
}

prop_compose! {
    fn random_voice_event()(
        number in prop_oneof![Just("4917123"), Just("4930555")],
        // Any second of 2026.
        start in 1_767_225_600i64..1_798_761_600,
        seconds in prop_oneof![0u64..200, 0u64..20_000],
    ) -> UsageEvent<'static> {
        UsageEvent { service: 0, rating_group: None, destination: Some(number), start_utc_seconds: start, units: seconds }
    }
}

fn random_buckets() -> impl Strategy<Value = Vec<(u16, u64)>> {
    proptest::collection::vec((0u16..3, 0u64..2_000), 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn lines_always_add_up_and_units_are_covered_once(
        plan in random_plan(),
        event in random_voice_event(),
        buckets in random_buckets(),
    ) {
        let buckets: Vec<AllowanceBalance> = buckets
            .into_iter()
            .enumerate()
            .map(|(i, (allowance, remaining_units))| AllowanceBalance { bucket: i as u64, allowance, remaining_units })
            .collect();
        let rated = check(&plan, &event, &buckets);
        // Rerating keeps the allowance units of the first rating and prices the rest:
        // with the same plan it must come to the same money, line for line.
        let paid = rate_with_paid_units(&plan, &event, rated.allowance_units).expect("rates as before");
        prop_assert_eq!((paid.allowance_units, paid.amount), (rated.allowance_units, rated.amount));
        prop_assert!(paid.draws.is_empty());
        let money_lines = |r: &RatedEvent| {
            r.lines.iter().filter(|l| !matches!(l.kind, LineKind::Allowance { .. })).copied().collect::<Vec<_>>()
        };
        prop_assert_eq!(money_lines(&paid), money_lines(&rated));
        let rounding = plan.rounding;
        let gap = (rated.amount - rated.exact_amount).abs();
        match rounding.mode {
            RoundingMode::HalfUp | RoundingMode::HalfEven => prop_assert!(gap * Decimal::TWO <= rounding.minor_unit()),
            RoundingMode::Up => prop_assert!(rated.amount >= rated.exact_amount && gap < rounding.minor_unit()),
            RoundingMode::Down => prop_assert!(rated.amount <= rated.exact_amount && gap < rounding.minor_unit()),
        }
    }

    #[test]
    fn charged_seconds_fall_in_the_band_of_their_own_second(event in random_voice_event()) {
        let plan = plan("", PEAK_OFFPEAK, "");
        let rated = check(&plan, &event, &[]);
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for second in 0..rated.charged_units {
            let band = plan.calendar().band_at(event.start_utc_seconds + second as i64).band;
            *expected.entry(plan.bands[usize::from(band)].clone()).or_default() += 1;
        }
        prop_assert_eq!(usage_units_by_band(&plan, &rated), expected);
    }

    #[test]
    fn rating_is_deterministic(plan in random_plan(), event in random_voice_event()) {
        prop_assert_eq!(rate(&plan, &event, &[]), rate(&plan, &event, &[]));
    }
}

/// One service of each unit, each with its own allowance; `{voice}` … `{api}` are the
/// `first_interval`/`increment` lines of each service's rate.
fn every_unit_plan(voice: &str, data: &str, sms: &str, api: &str, prices: [&str; 4]) -> CompiledPlan {
    let [voice_price, data_price, sms_price, api_price] = prices;
    let text = format!(
        r#"
[plan]
id = "units"
version = 1
currency = "EUR"
time_zone = "Europe/Berlin"
effective_from = "2026-01-01T00:00:00"
[[services]]
name = "voice"
unit = "seconds"
[[services]]
name = "data"
unit = "bytes"
[[services]]
name = "sms"
unit = "events"
[[services]]
name = "api"
unit = "units"
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
name = "offpeak"
days = ["sat-sun"]
[[rates]]
service = "voice"
band = "peak"
price = "{voice_price}"
per = 60
{voice}
[[rates]]
service = "voice"
band = "offpeak"
price = "0.30"
per = 60
{voice}
[[rates]]
service = "data"
price = "{data_price}"
per = 1048576
{data}
[[rates]]
service = "sms"
price = "{sms_price}"
{sms}
[[rates]]
service = "api"
price = "{api_price}"
per = 1000
{api}
[[allowances]]
name = "minutes"
service = "voice"
amount = 100
unit = "minutes"
[[allowances]]
name = "bytes"
service = "data"
amount = 1
unit = "GB"
[[allowances]]
name = "messages"
service = "sms"
amount = 100
unit = "events"
[[allowances]]
name = "calls"
service = "api"
amount = 1000
unit = "units"
"#
    );
    compile_str(&text, "units.toml", None).unwrap_or_else(|err| panic!("{err}\n{text}"))
}

const UNIT_OF_SERVICE: [Unit; 4] = [Unit::Seconds, Unit::Bytes, Unit::Events, Unit::Units];

fn usage(service: u16, start_utc_seconds: i64, units: u64) -> UsageEvent<'static> {
    UsageEvent { service, rating_group: None, destination: None, start_utc_seconds, units }
}

/// Units near 2^64 used to saturate `charged_units` (data with an increment of 1024
/// charged 18446744073709551615 bytes); every unit now has a limit, refused by name.
#[test]
fn usage_beyond_the_limit_of_its_unit_is_refused_not_saturated() {
    let plan =
        every_unit_plan("increment = 60", "increment = 1024", "", "increment = 7", ["0.60", "1.00", "0.05", "0.01"]);
    let start = utc("2026-03-02T10:00:00Z");
    // (service, unit, limit, charged units at the limit)
    let cases = [
        (0, Unit::Seconds, 604_800, 604_800),
        (1, Unit::Bytes, 1 << 50, 1 << 50),
        (2, Unit::Events, 1_000_000_000, 1_000_000_000),
        (3, Unit::Units, 1_000_000_000_000, 1_000_000_000_006),
    ];
    for (service, unit, limit, charged) in cases {
        assert_eq!(unit.max_per_event(), limit);
        let rated = check(&plan, &usage(service, start, limit), &[]);
        assert_eq!(rated.charged_units, charged, "{unit:?} at its limit");
        let too_large = Unrated::UsageTooLarge { limit, unit };
        for units in [limit + 1, u64::MAX - 1023, u64::MAX] {
            assert_eq!(rate(&plan, &usage(service, start, units), &[]), Err(too_large), "{unit:?} {units}");
            assert_eq!(
                rate_with_paid_units(&plan, &usage(service, start, units), 5),
                Err(too_large),
                "{unit:?} {units}"
            );
        }
        assert_eq!(too_large.code(), "usage_too_large");
    }
}

/// Sums of money past 96 bits used to panic in `Decimal`'s `+`; they are refused.
#[test]
fn amounts_beyond_96_bits_are_refused_not_panicked() {
    const MAX: &str = "79228162514264337593543950335";
    const HALF: &str = "50000000000000000000000000000";
    let start = utc("2026-03-02T10:00:00Z");
    // One line past 96 bits; two lines that fit but whose sum does not.
    let plan = every_unit_plan("", "", "", "", ["0.60", "1.00", MAX, "0.01"]);
    assert_eq!(rate(&plan, &usage(2, start, 2), &[]), Err(Unrated::AmountOverflow));
    let steps = format!("[[rates.steps]]\nfrom = 1\nprice = \"{HALF}\"\n");
    let plan = every_unit_plan("", "", &steps, "", ["0.60", "1.00", HALF, "0.01"]);
    // (Too large to carry two decimals, the amount keeps none.)
    assert_eq!(rate(&plan, &usage(2, start, 1), &[]).map(|rated| rated.amount), Ok(d(HALF)));
    assert_eq!(rate(&plan, &usage(2, start, 2), &[]), Err(Unrated::AmountOverflow));
    // A connect fee on top of a line that fits.
    let text = format!("[[services]]\nname = \"sms\"\nunit = \"events\"\n[[rates]]\nservice = \"sms\"\nconnect_fee = \"{HALF}\"\nprice = \"{HALF}\"\n");
    let plan = compile_str(&BASE_JPY.replace(BASE_JPY_SERVICES, &text), "fee.toml", None).expect("plan");
    let event = UsageEvent { start_utc_seconds: utc("2026-03-02T10:00:00Z"), ..usage(0, 0, 1) };
    assert_eq!(rate(&plan, &event, &[]), Err(Unrated::AmountOverflow));
    assert_eq!(Unrated::AmountOverflow.code(), "amount_overflow");
}

/// A call starting near the end of `i64` seconds used to saturate its clock and never
/// finish rating; starts after 9999-01-01T00:00:00Z are refused.
#[test]
fn a_start_after_the_last_rated_second_is_refused() {
    let plan = every_unit_plan("", "", "", "", ["0.60", "1.00", "0.05", "0.01"]);
    let latest = utc("9999-01-01T00:00:00Z");
    assert_eq!(MAX_START_UTC_SECONDS, latest);
    for service in 0..4 {
        let rated = check(&plan, &usage(service, latest, 600), &[]);
        assert_eq!(rated.charged_units, 600);
        for start in [latest + 1, i64::MAX - 10, i64::MAX] {
            let refused = Err(Unrated::StartTooLate { latest_utc_seconds: latest });
            assert_eq!(rate(&plan, &usage(service, start, 600), &[]), refused, "service {service} at {start}");
        }
    }
    assert_eq!(Unrated::StartTooLate { latest_utc_seconds: latest }.code(), "start_too_late");
}

fn units_near_the_edges() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..5_000,
        prop::sample::select(UNIT_OF_SERVICE.to_vec())
            .prop_flat_map(|unit| (unit.max_per_event() - 5_000)..=(unit.max_per_event() + 5_000)),
        (u64::MAX - 5_000)..=u64::MAX,
    ]
}

fn first_interval_and_increment(limit: u64) -> impl Strategy<Value = String> {
    (
        prop_oneof![Just(None), Just(Some(0)), Just(Some(limit)), (1u64..5_000).prop_map(Some)],
        prop_oneof![Just(limit), 1u64..5_000],
    )
        .prop_map(|(first, increment)| {
            first.map_or(String::new(), |first| format!("first_interval = {first}\n"))
                + &format!("increment = {increment}\n")
        })
}

prop_compose! {
    fn every_unit_random_plan()(
        voice in first_interval_and_increment(Unit::Seconds.max_per_event()),
        data in first_interval_and_increment(Unit::Bytes.max_per_event()),
        sms in first_interval_and_increment(Unit::Events.max_per_event()),
        api in first_interval_and_increment(Unit::Units.max_per_event()),
    ) -> CompiledPlan {
        every_unit_plan(&voice, &data, &sms, &api, ["0.60", "1.00", "0.05", "0.01"])
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Over the whole `u64` range of units and remaining allowance, and starts from 2026
    /// to the end of `i64`: rating answers exactly (charged units and allowance units as
    /// computed in 128 bits, every line at its price) or refuses with the code that says
    /// why; it never panics and never saturates.
    #[test]
    fn rating_answers_exactly_or_refuses_with_a_code_over_the_whole_u64_range(
        plan in every_unit_random_plan(),
        service in 0u16..4,
        units in units_near_the_edges(),
        start in prop_oneof![
            1_767_225_600i64..1_798_761_600,
            (MAX_START_UTC_SECONDS - 1_000_000)..=(MAX_START_UTC_SECONDS + 10),
            (i64::MAX - 1_000_000)..=i64::MAX,
        ],
        buckets in proptest::collection::vec((0u16..4, prop_oneof![any::<u64>(), 0u64..10_000]), 0..4),
        paid in prop_oneof![any::<u64>(), 0u64..10_000],
    ) {
        let event = usage(service, start, units);
        let unit = UNIT_OF_SERVICE[usize::from(service)];
        let balances: Vec<AllowanceBalance> = buckets
            .iter()
            .enumerate()
            .map(|(i, &(allowance, remaining_units))| AllowanceBalance { bucket: i as u64, allowance, remaining_units })
            .collect();
        let answers = [(rate(&plan, &event, &balances), None), (rate_with_paid_units(&plan, &event, paid), Some(paid))];
        for (answer, paid) in answers {
            if start > MAX_START_UTC_SECONDS {
                prop_assert_eq!(answer, Err(Unrated::StartTooLate { latest_utc_seconds: MAX_START_UTC_SECONDS }));
                continue;
            }
            if units > unit.max_per_event() {
                prop_assert_eq!(answer, Err(Unrated::UsageTooLarge { limit: unit.max_per_event(), unit }));
                continue;
            }
            let rated = match answer {
                Ok(rated) => rated,
                Err(unrated) => return Err(TestCaseError::fail(format!("{unrated:?} for {units} {unit:?}"))),
            };
            // The opening rate of a seconds service is the one of the band at the start.
            let opening = &plan.rates[plan.rates.iter().position(|r| r.source_line == rated.rate_line).expect("rate")];
            let (first, increment) = (u128::from(opening.first_interval_units), u128::from(opening.increment));
            let used = u128::from(units);
            let charged = match used {
                0 => 0,
                used if used <= first => first,
                used => first + (used - first).div_ceil(increment) * increment,
            };
            prop_assert_eq!(u128::from(rated.charged_units), charged);
            let available = match paid {
                Some(paid) => u128::from(paid),
                None => balances
                    .iter()
                    .filter(|b| plan.allowances[usize::from(b.allowance)].service == service)
                    .map(|b| u128::from(b.remaining_units))
                    .sum(),
            };
            prop_assert_eq!(u128::from(rated.allowance_units), available.min(charged));
            if paid.is_none() {
                assert_laws(&plan, &event, &balances, &rated);
            }
            let mut money_units = 0u128;
            for line in &rated.lines {
                if let LineKind::Usage { .. } = line.kind {
                    money_units += u128::from(line.units);
                    let exact = line.price * Decimal::from(line.units) / Decimal::from(line.per);
                    prop_assert_eq!(line.exact_amount, exact, "{:?}", line);
                }
            }
            prop_assert_eq!(money_units, charged - available.min(charged));
        }
    }
}

//! Billing cycles and proration by day. A cycle is a run of calendar days in the
//! operator's time zone, from its bill cycle day to the day before the next one (a cycle
//! day the month does not have is the month's last day: day 31 in April is 30 April, in
//! February 2028 it is 29 February). A charge is active over [`DateSpan`]s, half-open runs
//! of days; its [`Proration`] is the exact ratio of its active days in the cycle to the
//! cycle's days, kept as two integers and turned into money with one rounding
//! ([`Proration::apply`]). The README's "Proration policy" says which day belongs to whom
//! when a product is activated, changed, suspended or terminated.

use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tollgate_tariffs::Rounding;

use crate::error::{BillingError, Result};

/// The latest bill cycle day (a cycle may start on the 31st; shorter months clamp it).
pub const MAX_BILL_CYCLE_DAY: u8 = 31;

/// Active spans one charge may have in one invoice.
pub const MAX_SPANS_PER_CHARGE: usize = 1_000;

/// The days from `from` up to but not including `until`, in the operator's calendar.
/// A product activated on 15 February and still active is `from` 2028-02-15, `until`
/// [`Date::MAX`]; one terminated on 30 November (a charged day) has `until` 1 December.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateSpan {
    pub from: Date,
    pub until: Date,
}

impl DateSpan {
    /// The days from `from` to the day before `until`; `from` after `until` is refused.
    pub fn new(field: &str, from: Date, until: Date) -> Result<DateSpan> {
        if from > until {
            return Err(BillingError::invalid(field, format!("starts on {from}, after it ends on {until}")));
        }
        Ok(DateSpan { from, until })
    }

    /// A product's active days by the proration policy: from the activation day, through
    /// the termination day (charged) when there is one, else with no end.
    pub fn active(field: &str, activated_on: Date, terminated_on: Option<Date>) -> Result<DateSpan> {
        let until = match terminated_on {
            Some(day) => day.tomorrow().map_err(|_| BillingError::invalid(field, "terminated on the last date"))?,
            None => Date::MAX,
        };
        DateSpan::new(field, activated_on, until)
    }

    /// The span cut at a plan change on `changed_on`: the old plan's days end the day
    /// before, the new plan's start on the day of the change. `None` when the change is
    /// outside the span.
    pub fn split_at(self, changed_on: Date) -> Option<(DateSpan, DateSpan)> {
        (self.from < changed_on && changed_on < self.until).then_some((
            DateSpan { from: self.from, until: changed_on },
            DateSpan { from: changed_on, until: self.until },
        ))
    }

    /// The span without a suspension from `suspended_on` (not charged) to `resumed_on`
    /// (charged again); [`Date::MAX`] for a suspension not yet over. Zero, one or two spans.
    pub fn without(self, suspended_on: Date, resumed_on: Date) -> Vec<DateSpan> {
        [
            DateSpan { from: self.from, until: suspended_on.min(self.until) },
            DateSpan { from: resumed_on.max(self.from), until: self.until },
        ]
        .into_iter()
        .filter(|span| span.from < span.until)
        .collect()
    }

    /// Whether the span has no day.
    pub fn is_empty(self) -> bool {
        self.from >= self.until
    }

    /// The days both spans hold (empty when they do not meet).
    pub fn intersect(self, other: DateSpan) -> DateSpan {
        let from = self.from.max(other.from);
        DateSpan { from, until: self.until.min(other.until).max(from) }
    }

    /// The number of days in the span.
    pub fn days(self) -> u32 {
        if self.is_empty() {
            return 0;
        }
        let seconds = self.from.duration_until(self.until).as_secs();
        u32::try_from(seconds / 86_400).unwrap_or(u32::MAX)
    }

    /// The span's last day (the day before `until`), `None` when empty.
    pub fn last_day(self) -> Option<Date> {
        (!self.is_empty()).then(|| self.until.yesterday().ok()).flatten()
    }
}

impl fmt::Display for DateSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.from, self.until)
    }
}

/// How a span appears in JSON: ISO dates, `until` excluded.
#[derive(Serialize, Deserialize)]
struct SpanText {
    from: String,
    until: String,
}

impl Serialize for DateSpan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SpanText { from: self.from.to_string(), until: self.until.to_string() }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DateSpan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DateSpan, D::Error> {
        let text = SpanText::deserialize(deserializer)?;
        let parse = |name: &str, value: &str| {
            value.parse::<Date>().map_err(|error| serde::de::Error::custom(format!("{name}: {error}")))
        };
        let (from, until) = (parse("from", &text.from)?, parse("until", &text.until)?);
        DateSpan::new("span", from, until).map_err(serde::de::Error::custom)
    }
}

/// One billing cycle of an account: its days and the operator's time zone they are in.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingCycle {
    span: DateSpan,
    bill_cycle_day: u8,
    time_zone: TimeZone,
}

/// The day a cycle with `bill_cycle_day` starts in `year`-`month` (clamped to the month).
fn cycle_start(year: i16, month: i8, bill_cycle_day: u8) -> Result<Date> {
    let first = Date::new(year, month, 1).map_err(|error| BillingError::invalid("cycle", error.to_string()))?;
    let day = i8::try_from(bill_cycle_day).unwrap_or(i8::MAX).min(first.days_in_month());
    Date::new(year, month, day).map_err(|error| BillingError::invalid("cycle", error.to_string()))
}

impl BillingCycle {
    /// The cycle that starts in `year`-`month` on `bill_cycle_day` (1 to 31, clamped to the
    /// month's length) and ends the day before the next month's cycle day.
    pub fn starting_in(year: i16, month: i8, bill_cycle_day: u8, time_zone: TimeZone) -> Result<BillingCycle> {
        if !(1..=MAX_BILL_CYCLE_DAY).contains(&bill_cycle_day) {
            return Err(BillingError::invalid("bill_cycle_day", format!("{bill_cycle_day} is not 1 to 31")));
        }
        let from = cycle_start(year, month, bill_cycle_day)?;
        let (next_year, next_month) = if month == 12 { (year.saturating_add(1), 1) } else { (year, month + 1) };
        let until = cycle_start(next_year, next_month, bill_cycle_day)?;
        Ok(BillingCycle { span: DateSpan { from, until }, bill_cycle_day, time_zone })
    }

    /// The cycle after this one.
    pub fn next(&self) -> Result<BillingCycle> {
        let start = self.span.until;
        BillingCycle::starting_in(start.year(), start.month(), self.bill_cycle_day, self.time_zone.clone())
    }

    /// The cycle's days.
    pub fn span(&self) -> DateSpan {
        self.span
    }

    /// The number of days in the cycle (28 to 31).
    pub fn days(&self) -> u32 {
        self.span.days()
    }

    /// The bill cycle day the cycle was built from (before clamping).
    pub fn bill_cycle_day(&self) -> u8 {
        self.bill_cycle_day
    }

    /// The operator's time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    /// The time zone's IANA name (`Europe/Paris`), its offset (`+03`, `+05:30`) for a fixed one, or
    /// `custom` for a zone with rules and no name.
    pub fn time_zone_name(&self) -> String {
        match (self.time_zone.iana_name(), self.time_zone.to_fixed_offset()) {
            (Some(name), _) => name.to_owned(),
            (None, Ok(offset)) => offset.to_string(),
            (None, Err(_)) => "custom".to_owned(),
        }
    }

    /// The calendar day `at` falls on in the operator's time zone: how an activation or a
    /// rated event's instant is placed in a cycle.
    pub fn date_of(&self, at: Timestamp) -> Date {
        self.time_zone.to_datetime(at).date()
    }

    /// The cycle's first instant (midnight of its first day in the operator's zone, or the
    /// first instant after it on a day whose midnight a clock change skips).
    pub fn starts_at(&self) -> Result<Timestamp> {
        self.midnight(self.span.from)
    }

    /// The first instant after the cycle (its end, excluded).
    pub fn ends_at(&self) -> Result<Timestamp> {
        self.midnight(self.span.until)
    }

    /// Whether `at` falls in the cycle, in the operator's calendar.
    pub fn contains(&self, at: Timestamp) -> bool {
        let day = self.date_of(at);
        self.span.from <= day && day < self.span.until
    }

    fn midnight(&self, day: Date) -> Result<Timestamp> {
        day.to_zoned_datetime(self.time_zone.clone())
            .map(|zoned| zoned.timestamp())
            .map_err(|error| BillingError::invalid("cycle", error.to_string()))
    }

    /// The share of the cycle a charge active over `spans` is due for. The spans must not
    /// overlap (a day charged twice) and each must start before it ends; `field` names
    /// them in the error.
    pub fn proration(&self, field: &str, spans: &[DateSpan]) -> Result<Proration> {
        if spans.len() > MAX_SPANS_PER_CHARGE {
            return Err(BillingError::TooMany { field: field.to_owned(), limit: MAX_SPANS_PER_CHARGE });
        }
        let mut sorted: Vec<(usize, DateSpan)> = spans.iter().copied().enumerate().collect();
        for (index, span) in &sorted {
            DateSpan::new(&format!("{field}[{index}]"), span.from, span.until)?;
        }
        sorted.sort_by_key(|(index, span)| (*span, *index));
        for pair in sorted.windows(2) {
            let ((first, a), (second, b)) = (pair[0], pair[1]);
            if !a.is_empty() && !b.is_empty() && b.from < a.until {
                return Err(BillingError::invalid(
                    format!("{field}[{second}]"),
                    format!("{b} overlaps {field}[{first}] {a}: a day would be charged twice"),
                ));
            }
        }
        let days = sorted.iter().map(|(_, span)| span.intersect(self.span).days()).sum();
        Ok(Proration { days, period_days: self.days() })
    }
}

/// `days` of `period_days`: the exact share of a cycle's recurring price that is due.
/// 15 days of a 29-day February is 15/29, which no decimal holds exactly, so the ratio
/// stays two integers until [`Proration::apply`] rounds the amount once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Proration {
    pub days: u32,
    pub period_days: u32,
}

impl Proration {
    /// The share as a decimal, to rust_decimal's 28 digits (exact when it terminates: 15/30
    /// is 0.5); for display. Zero for an empty period.
    pub fn fraction(self) -> Decimal {
        if self.period_days == 0 {
            return Decimal::ZERO;
        }
        Decimal::from(self.days) / Decimal::from(self.period_days)
    }

    /// The whole period.
    pub fn is_full(self) -> bool {
        self.days == self.period_days
    }

    /// `amount` × days ÷ period days, multiplied before dividing so the only inexact step
    /// is the division, rounded once with `rounding`. `None` on overflow.
    pub fn apply(self, amount: Decimal, rounding: Rounding) -> Option<Decimal> {
        if self.period_days == 0 {
            return Some(rounding.apply(Decimal::ZERO));
        }
        let due = amount.checked_mul(Decimal::from(self.days))?.checked_div(Decimal::from(self.period_days))?;
        Some(rounding.apply(due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn cycle(year: i16, month: i8, day: u8) -> BillingCycle {
        BillingCycle::starting_in(year, month, day, TimeZone::UTC).expect("cycle")
    }

    #[test]
    fn a_cycle_runs_from_its_day_to_the_day_before_the_next() {
        // (year, month, cycle day) → first day, first day of the next cycle, days.
        let cases = [
            ((2028, 2, 1), date(2028, 2, 1), date(2028, 3, 1), 29), // leap February
            ((2026, 2, 1), date(2026, 2, 1), date(2026, 3, 1), 28),
            ((2026, 11, 1), date(2026, 11, 1), date(2026, 12, 1), 30),
            ((2026, 12, 15), date(2026, 12, 15), date(2027, 1, 15), 31), // over the year's end
            // Day 31 in April (30 days) clamps to the 30th; May has the 31st: 30 Apr..30 May.
            ((2026, 4, 31), date(2026, 4, 30), date(2026, 5, 31), 31),
            // Day 31 in January runs to the day before 29 Feb 2028 (clamped): 31 + 29 - 31 = 29 days.
            ((2028, 1, 31), date(2028, 1, 31), date(2028, 2, 29), 29),
            ((2028, 2, 30), date(2028, 2, 29), date(2028, 3, 30), 30),
        ];
        for ((year, month, day), from, until, days) in cases {
            let cycle = cycle(year, month, day);
            assert_eq!(cycle.span(), DateSpan { from, until }, "{year}-{month} day {day}");
            assert_eq!(cycle.days(), days, "{year}-{month} day {day}");
        }
        assert_eq!(cycle(2028, 1, 31).next().expect("next").span().from, date(2028, 2, 29));
    }

    #[test]
    fn a_cycle_day_out_of_range_is_refused() {
        for day in [0, 32] {
            let error = BillingCycle::starting_in(2026, 1, day, TimeZone::UTC).expect_err("refused");
            assert!(error.to_string().starts_with("invalid bill_cycle_day"), "{error}");
        }
    }

    #[test]
    fn instants_are_placed_in_the_operators_calendar() {
        let paris = TimeZone::get("Europe/Paris").expect("tzdb");
        let november = BillingCycle::starting_in(2026, 11, 1, paris).expect("cycle");
        // 31 Oct 2026 23:30 UTC is 1 Nov 00:30 in Paris (UTC+1 after 25 Oct): in the cycle.
        let late = Timestamp::from_second(1_793_489_400).expect("instant");
        assert_eq!(november.date_of(late), date(2026, 11, 1));
        assert!(november.contains(late));
        // The cycle starts at 31 Oct 23:00 UTC (midnight in Paris) and ends at 30 Nov 23:00 UTC.
        assert_eq!(november.starts_at().expect("start").as_second(), 1_793_487_600);
        assert_eq!(november.ends_at().expect("end").as_second(), 1_793_487_600 + 30 * 86_400);
        assert_eq!(november.time_zone_name(), "Europe/Paris");
        let fixed = BillingCycle::starting_in(2026, 11, 1, jiff::tz::offset(3).to_time_zone()).expect("cycle");
        assert_eq!(fixed.time_zone_name(), "+03");
    }

    #[test]
    fn overlapping_spans_are_refused_naming_both() {
        let november = cycle(2026, 11, 1);
        let spans = [
            DateSpan { from: date(2026, 11, 10), until: date(2026, 11, 20) },
            DateSpan { from: date(2026, 11, 1), until: date(2026, 11, 11) },
        ];
        let error = november.proration("recurring[0].active", &spans).expect_err("overlap");
        assert_eq!(
            error.to_string(),
            "invalid recurring[0].active[0]: [2026-11-10, 2026-11-20) overlaps recurring[0].active[1] \
             [2026-11-01, 2026-11-11): a day would be charged twice"
        );
        let backwards = [DateSpan { from: date(2026, 11, 10), until: date(2026, 11, 9) }];
        assert!(november.proration("a", &backwards).is_err());
    }

    #[test]
    fn policy_helpers_charge_the_termination_day_and_the_change_day_once() {
        let span = DateSpan::active("x", date(2026, 11, 5), Some(date(2026, 11, 30))).expect("span");
        assert_eq!(span, DateSpan { from: date(2026, 11, 5), until: date(2026, 12, 1) });
        assert_eq!(span.days(), 26); // 5..=30 November
        let (old, new) = span.split_at(date(2026, 11, 16)).expect("inside");
        assert_eq!((old.days(), new.days()), (11, 15)); // 5..=15 and 16..=30
        assert_eq!(span.split_at(date(2026, 11, 5)), None);
        let parts = span.without(date(2026, 11, 10), date(2026, 11, 20));
        assert_eq!(parts.iter().map(|s| s.days()).collect::<Vec<_>>(), [5, 11]); // 5..=9, 20..=30
        assert_eq!(span.last_day(), Some(date(2026, 11, 30)));
    }

    #[test]
    fn a_span_round_trips_through_json() {
        let span = DateSpan { from: date(2028, 2, 15), until: date(2028, 3, 1) };
        let text = serde_json::to_string(&span).expect("json");
        assert_eq!(text, r#"{"from":"2028-02-15","until":"2028-03-01"}"#);
        assert_eq!(serde_json::from_str::<DateSpan>(&text).expect("back"), span);
        assert!(serde_json::from_str::<DateSpan>(r#"{"from":"2028-02-30","until":"2028-03-01"}"#).is_err());
    }
}

//! Calendar periods for allowance refills and billing cycles (UTC).

use tollgate_tariffs::plan::Period;

use crate::model::FOREVER;

/// The end of the period of kind `period` that starts at `start` (UTC seconds).
pub(crate) fn period_end(start: i64, period: Period) -> i64 {
    advance(start, period, 1)
}

/// Seconds in a day; UTC has no other kind.
const DAY: i64 = 86_400;
/// The times jiff represents (years -9999 to 9999 in every offset), and so the range of
/// times a window may have.
const SECONDS: std::ops::RangeInclusive<i64> = -377_705_023_201..=253_402_207_200;

/// `start` plus `periods` whole periods of kind `period` (UTC; months and years keep the
/// day of month of `start`, clamped to the month's length); `FOREVER` when out of range.
/// Integer calendar arithmetic (days from the civil date and back), as this runs for
/// every charged record; the tests check it against jiff.
fn advance(start: i64, period: Period, periods: i64) -> i64 {
    if !SECONDS.contains(&start) {
        return FOREVER;
    }
    let end = match period {
        Period::Daily => periods.checked_mul(DAY).and_then(|s| start.checked_add(s)),
        Period::Weekly => periods.checked_mul(7 * DAY).and_then(|s| start.checked_add(s)),
        Period::Monthly | Period::Yearly => {
            let months = if period == Period::Yearly { periods.checked_mul(12) } else { Some(periods) };
            let (days, time_of_day) = (start.div_euclid(DAY), start.rem_euclid(DAY));
            let (year, month, day) = civil_from_days(days);
            months.and_then(|m| (year * 12 + month - 1).checked_add(m)).and_then(|total| {
                let (year, month) = (total.div_euclid(12), total.rem_euclid(12) + 1);
                // Far outside the range, the day count below could overflow.
                (-20_000..=20_000)
                    .contains(&year)
                    .then(|| days_from_civil(year, month, day.min(days_in_month(year, month))) * DAY + time_of_day)
            })
        }
        Period::Once => None,
    };
    end.filter(|end| SECONDS.contains(end)).unwrap_or(FOREVER)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The calendar month (UTC) of a time: year and month (1–12).
pub(crate) fn month_of(at: i64) -> (i64, i64) {
    let (year, month, _) = civil_from_days(at.div_euclid(86_400));
    (year, month)
}

/// When a calendar month (UTC) starts (Unix seconds).
pub(crate) fn month_start(year: i64, month: i64) -> i64 {
    days_from_civil(year, month, 1) * 86_400
}

/// The calendar month (UTC) `[from, until)` (Unix seconds).
pub(crate) fn month_window(year: i64, month: i64) -> (i64, i64) {
    let next = if month == 12 { month_start(year + 1, 1) } else { month_start(year, month + 1) };
    (month_start(year, month), next)
}

/// The window `[from, until)` of the period sequence anchored at `anchor` that contains
/// `now` (or the first window when `now` is before the anchor). Window `k` runs from
/// `anchor` plus `k` periods to `anchor` plus `k + 1`, so a monthly sequence anchored on
/// the 31st has windows starting on the 28th (or 29th) of February and the 31st of March.
/// Computed directly, not by walking the periods: the cost does not grow with the
/// anchor's age.
pub(crate) fn window_containing(anchor: i64, period: Period, now: i64) -> (i64, i64) {
    if period == Period::Once {
        return (anchor, FOREVER);
    }
    if now < anchor {
        return (anchor, period_end(anchor, period));
    }
    // A first guess from the average period length, corrected by at most a step or two.
    let average = match period {
        Period::Daily => 86_400,
        Period::Weekly => 7 * 86_400,
        Period::Monthly => 2_629_746,
        Period::Yearly | Period::Once => 31_556_952,
    };
    let mut k = (now - anchor) / average;
    for _ in 0..8 {
        let from = advance(anchor, period, k);
        if from > now {
            k -= 1;
            continue;
        }
        let until = advance(anchor, period, k + 1);
        if until <= now && until != FOREVER {
            k += 1;
            continue;
        }
        return (from, until);
    }
    // Unreachable for times jiff can represent; the guess is never eight periods off.
    let from = advance(anchor, period, k);
    (from, advance(anchor, period, k + 1))
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;
    use jiff::{Span, Timestamp};

    use super::*;

    /// What jiff says `advance` should give.
    fn jiff_advance(start: i64, period: Period, periods: i64) -> i64 {
        let span = match period {
            Period::Daily => Span::new().try_days(periods),
            Period::Weekly => Span::new().try_weeks(periods),
            Period::Monthly => Span::new().try_months(periods),
            Period::Yearly => Span::new().try_years(periods),
            Period::Once => return FOREVER,
        };
        let Ok(span) = span else { return FOREVER };
        let Ok(timestamp) = Timestamp::from_second(start) else { return FOREVER };
        TimeZone::UTC
            .to_datetime(timestamp)
            .checked_add(span)
            .ok()
            .and_then(|end| end.to_zoned_datetime(TimeZone::UTC).ok())
            .map_or(FOREVER, |end| end.timestamp().as_second())
    }

    #[test]
    fn calendar_arithmetic_agrees_with_jiff() {
        // Every day of 1999–2001 and 2096–2104 (century and leap rules), a pseudo-random
        // time of day, moved by months and years both ways.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let days = (days_from_civil(1999, 1, 1)..days_from_civil(2002, 1, 1))
            .chain(days_from_civil(2096, 1, 1)..days_from_civil(2105, 1, 1))
            .chain([days_from_civil(-9999, 1, 3), days_from_civil(9999, 12, 29)]);
        for day in days {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let start = day * DAY + (seed >> 33) as i64 % DAY;
            assert_eq!(civil_from_days(day), {
                let date = TimeZone::UTC.to_datetime(Timestamp::from_second(start).expect("in range")).date();
                (i64::from(date.year()), i64::from(date.month()), i64::from(date.day()))
            });
            for period in [Period::Daily, Period::Weekly, Period::Monthly, Period::Yearly] {
                for periods in [-13, -1, 0, 1, 2, 11, 12, 49] {
                    assert_eq!(
                        advance(start, period, periods),
                        jiff_advance(start, period, periods),
                        "{start} {period:?} {periods}"
                    );
                }
            }
        }
    }

    fn utc(text: &str) -> i64 {
        text.parse::<Timestamp>().expect("timestamp").as_second()
    }

    #[test]
    fn monthly_windows_follow_the_calendar() {
        let anchor = utc("2026-01-31T10:00:00Z");
        assert_eq!(period_end(anchor, Period::Monthly), utc("2026-02-28T10:00:00Z"));
        let (from, until) =
            window_containing(utc("2026-01-15T00:00:00Z"), Period::Monthly, utc("2026-03-20T00:00:00Z"));
        assert_eq!((from, until), (utc("2026-03-15T00:00:00Z"), utc("2026-04-15T00:00:00Z")));
        assert_eq!(window_containing(5, Period::Once, 1_000_000), (5, FOREVER));
        // Anchored on the 31st: the day is clamped per month, never drifts.
        let (from, until) = window_containing(anchor, Period::Monthly, utc("2026-03-30T00:00:00Z"));
        assert_eq!((from, until), (utc("2026-02-28T10:00:00Z"), utc("2026-03-31T10:00:00Z")));
        let (from, until) = window_containing(anchor, Period::Monthly, utc("2026-03-31T10:00:00Z"));
        assert_eq!((from, until), (utc("2026-03-31T10:00:00Z"), utc("2026-04-30T10:00:00Z")));
        // Before the anchor: the first window.
        assert_eq!(window_containing(anchor, Period::Monthly, 0), (anchor, utc("2026-02-28T10:00:00Z")));
    }

    /// Walks the windows one by one, as the definition reads.
    fn walk(anchor: i64, period: Period, now: i64) -> (i64, i64) {
        let mut k = 0;
        while advance(anchor, period, k + 1) <= now {
            k += 1;
        }
        (advance(anchor, period, k), advance(anchor, period, k + 1))
    }

    #[test]
    fn the_direct_window_is_the_one_a_walk_finds() {
        let anchors = [utc("2020-02-29T23:59:59Z"), utc("2021-01-31T00:00:00Z"), utc("2024-06-15T12:30:00Z")];
        let periods = [Period::Daily, Period::Weekly, Period::Monthly, Period::Yearly];
        for anchor in anchors {
            for period in periods {
                // Every boundary and the seconds around it, over six years.
                let mut boundary = anchor;
                while boundary < anchor + 6 * 31_622_400 {
                    for now in [boundary - 1, boundary, boundary + 1, boundary + 43_200] {
                        let expected =
                            if now < anchor { (anchor, period_end(anchor, period)) } else { walk(anchor, period, now) };
                        assert_eq!(window_containing(anchor, period, now), expected, "{anchor} {period:?} {now}");
                        assert!(expected.0 <= now.max(anchor) && now.max(anchor) < expected.1);
                    }
                    boundary = window_containing(anchor, period, boundary).1;
                }
            }
        }
    }
}

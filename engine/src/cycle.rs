//! Calendar periods for allowance refills and billing cycles (UTC).

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use tollgate_tariffs::plan::Period;

use crate::model::FOREVER;

/// The end of the period of kind `period` that starts at `start` (UTC seconds).
pub fn period_end(start: i64, period: Period) -> i64 {
    let span = match period {
        Period::Daily => Span::new().days(1),
        Period::Weekly => Span::new().weeks(1),
        Period::Monthly => Span::new().months(1),
        Period::Yearly => Span::new().years(1),
        Period::Once => return FOREVER,
    };
    let Ok(timestamp) = Timestamp::from_second(start) else { return FOREVER };
    let civil: DateTime = TimeZone::UTC.to_datetime(timestamp);
    civil
        .checked_add(span)
        .ok()
        .and_then(|end| end.to_zoned_datetime(TimeZone::UTC).ok())
        .map_or(FOREVER, |end| end.timestamp().as_second())
}

/// `start` plus `periods` whole periods of kind `period` (UTC; months and years keep the
/// day of month of `start`, clamped to the month's length); `FOREVER` when out of range.
fn advance(start: i64, period: Period, periods: i64) -> i64 {
    let span = match period {
        Period::Daily => return start.saturating_add(periods.saturating_mul(86_400)),
        Period::Weekly => return start.saturating_add(periods.saturating_mul(7 * 86_400)),
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

/// The window `[from, until)` of the period sequence anchored at `anchor` that contains
/// `now` (or the first window when `now` is before the anchor). Window `k` runs from
/// `anchor` plus `k` periods to `anchor` plus `k + 1`, so a monthly sequence anchored on
/// the 31st has windows starting on the 28th (or 29th) of February and the 31st of March.
/// Computed directly, not by walking the periods: the cost does not grow with the
/// anchor's age.
pub fn window_containing(anchor: i64, period: Period, now: i64) -> (i64, i64) {
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
    use super::*;

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

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

/// The window `[from, until)` of the period sequence anchored at `anchor` that contains
/// `now` (or the first window when `now` is before the anchor). Bounded: gives up after
/// 100,000 periods and returns the last window reached.
pub fn window_containing(anchor: i64, period: Period, now: i64) -> (i64, i64) {
    let mut from = anchor;
    let mut until = period_end(from, period);
    let mut steps = 0;
    while until <= now && until != FOREVER && steps < 100_000 {
        from = until;
        until = period_end(from, period);
        steps += 1;
    }
    (from, until)
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
    }
}

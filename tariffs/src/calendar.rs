//! Wall-clock time for rating: the plan's UTC-offset history, its week of time bands
//! and its holidays, all precomputed at compile time so rating needs no clock, no time
//! zone database and no allocation.

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

/// Minutes in a day.
pub const MINUTES_PER_DAY: u16 = 1440;
/// Index of the holiday pseudo-day in the week table (after Monday = 0 … Sunday = 6).
pub const HOLIDAY: usize = 7;
/// The names of the eight day slots, as written in plan files.
pub const DAY_NAMES: [&str; 8] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun", "holiday"];

const SECONDS_PER_DAY: i64 = 86_400;

/// A stretch of one day slot in one band: minutes `[start_minute, end_minute)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Segment {
    pub start_minute: u16,
    pub end_minute: u16,
    pub band: u16,
}

/// From `at_utc_seconds` on, local time is UTC plus `offset_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Transition {
    pub at_utc_seconds: i64,
    pub offset_seconds: i32,
}

/// The band in force at an instant, and the first later instant at which it may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandAt {
    pub band: u16,
    pub until_utc_seconds: i64,
}

/// The compiled calendar of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Calendar {
    /// Eight day slots; each is sorted, gap-free and covers `[0, 1440)`, except that the
    /// holiday slot is empty when the plan gives holidays no bands of their own.
    pub(crate) days: Vec<Vec<Segment>>,
    /// Local days (since 1970-01-01) that use the holiday slot, sorted.
    pub(crate) holidays: Vec<i32>,
    /// Offset history; the first entry starts at `i64::MIN`.
    pub(crate) transitions: Vec<Transition>,
}

impl Calendar {
    /// The band at `utc_seconds` and the instant (exclusive) up to which it surely holds:
    /// the end of its segment, local midnight, or the next change of UTC offset.
    pub fn band_at(&self, utc_seconds: i64) -> BandAt {
        let index = self.transitions.partition_point(|t| t.at_utc_seconds <= utc_seconds).saturating_sub(1);
        let offset = self.transitions.get(index).map_or(0, |t| i64::from(t.offset_seconds));
        let next_transition = self.transitions.get(index + 1).map_or(i64::MAX, |t| t.at_utc_seconds);
        let local = utc_seconds.saturating_add(offset);
        let day = local.div_euclid(SECONDS_PER_DAY);
        let second_of_day = local.rem_euclid(SECONDS_PER_DAY);
        let slot = self.slot_of_day(day);
        let minute = (second_of_day / 60) as u16;
        let segments = &self.days[slot];
        let segment = segments
            .iter()
            .find(|segment| minute < segment.end_minute)
            .or(segments.last())
            .copied()
            .unwrap_or(Segment { start_minute: 0, end_minute: MINUTES_PER_DAY, band: 0 });
        let segment_end = utc_seconds.saturating_add(i64::from(segment.end_minute) * 60 - second_of_day);
        BandAt { band: segment.band, until_utc_seconds: segment_end.min(next_transition) }
    }

    fn slot_of_day(&self, day: i64) -> usize {
        if !self.days[HOLIDAY].is_empty()
            && i32::try_from(day).is_ok_and(|day| self.holidays.binary_search(&day).is_ok())
        {
            HOLIDAY
        } else {
            weekday_monday0(day)
        }
    }

    /// The UTC offset in force at `utc_seconds`.
    pub fn offset_at(&self, utc_seconds: i64) -> i32 {
        let index = self.transitions.partition_point(|t| t.at_utc_seconds <= utc_seconds).saturating_sub(1);
        self.transitions.get(index).map_or(0, |t| t.offset_seconds)
    }
}

/// Monday = 0 … Sunday = 6, for a day counted from 1970-01-01 (a Thursday).
pub fn weekday_monday0(day: i64) -> usize {
    (day + 3).rem_euclid(7) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_band_per_half_day() -> Calendar {
        let day = vec![
            Segment { start_minute: 0, end_minute: 720, band: 0 },
            Segment { start_minute: 720, end_minute: MINUTES_PER_DAY, band: 1 },
        ];
        let mut days = vec![day; 7];
        days.push(vec![Segment { start_minute: 0, end_minute: MINUTES_PER_DAY, band: 2 }]);
        Calendar {
            days,
            holidays: vec![1],
            transitions: vec![Transition { at_utc_seconds: i64::MIN, offset_seconds: 3600 }],
        }
    }

    #[test]
    fn band_and_its_end_follow_local_time() {
        let calendar = one_band_per_half_day();
        // 1970-01-01T10:00Z is 11:00 local: morning band until 12:00 local = 11:00Z.
        let at = calendar.band_at(10 * 3600);
        assert_eq!(at, BandAt { band: 0, until_utc_seconds: 11 * 3600 });
        // 1970-01-02 is a holiday all day long (local).
        let at = calendar.band_at(86_400 + 3600);
        assert_eq!(at.band, 2);
        assert_eq!(at.until_utc_seconds, 2 * 86_400 - 3600);
    }

    #[test]
    fn weekday_of_known_dates() {
        assert_eq!(weekday_monday0(0), 3); // 1970-01-01 Thursday
        assert_eq!(weekday_monday0(-1), 2); // 1969-12-31 Wednesday
        assert_eq!(weekday_monday0(20_457), 6); // 2026-01-04 Sunday
    }
}

//! Time: 15-minute UTC buckets (what the store keeps) and calendar days and months in the
//! configured time zone (what queries and quotas speak).
//!
//! Every UTC offset in use since 1970 is a multiple of 15 minutes, so a local midnight always
//! falls on a bucket boundary and summing buckets gives any time zone's day exactly.

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use crate::error::{LedgerError, LedgerErrorKind};

/// Width of a stored bucket.
pub const BUCKET_MS: i64 = 15 * 60 * 1000;

/// The start of the 15-minute UTC bucket holding `ms`.
#[must_use]
pub const fn bucket_of(ms: i64) -> i64 {
    ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// A time zone and the calendar arithmetic the ledger needs.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: TimeZone,
    name: String,
}

impl Calendar {
    /// The calendar of the IANA zone `name` (`UTC`, `Europe/Paris`...).
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Config`] if the zone is unknown.
    pub fn new(name: &str) -> Result<Self, LedgerError> {
        let tz = TimeZone::get(name).map_err(|e| {
            LedgerError::with(
                LedgerErrorKind::Config,
                format!("quotas.timezone: unknown time zone {name:?}"),
                e,
            )
        })?;
        Ok(Self {
            tz,
            name: name.to_owned(),
        })
    }

    /// UTC.
    #[must_use]
    pub fn utc() -> Self {
        Self {
            tz: TimeZone::UTC,
            name: "UTC".to_owned(),
        }
    }

    /// The zone's name as configured.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local date of instant `ms`.
    #[must_use]
    pub fn date_of(&self, ms: i64) -> Option<Date> {
        let ts = Timestamp::from_millisecond(ms).ok()?;
        Some(self.tz.to_datetime(ts).date())
    }

    /// The local day `YYYYMMDD` of instant `ms`.
    #[must_use]
    pub fn day_of(&self, ms: i64) -> Option<u32> {
        self.date_of(ms).map(day_id)
    }

    /// The instant local `date` starts (its first instant, across DST gaps).
    #[must_use]
    pub fn start_of(&self, date: Date) -> Option<i64> {
        let ts = self
            .tz
            .to_timestamp(date.to_datetime(Time::midnight()))
            .ok()?;
        Some(ts.as_millisecond())
    }

    /// The instant local day `date` ends (exclusive): the start of the next day.
    #[must_use]
    pub fn end_of_day(&self, date: Date) -> Option<i64> {
        self.start_of(date.tomorrow().ok()?)
    }

    /// The instant the local month of `date` ends (exclusive).
    #[must_use]
    pub fn end_of_month(&self, date: Date) -> Option<i64> {
        self.start_of(date.last_of_month().tomorrow().ok()?)
    }
}

/// `YYYYMMDD` of a date.
#[must_use]
pub fn day_id(date: Date) -> u32 {
    let y = u32::try_from(date.year()).unwrap_or(0);
    let m = u32::try_from(date.month()).unwrap_or(0);
    let d = u32::try_from(date.day()).unwrap_or(0);
    y * 10_000 + m * 100 + d
}

/// The date of `YYYYMMDD`.
#[must_use]
pub fn date_of_day(day: u32) -> Option<Date> {
    let y = i16::try_from(day / 10_000).ok()?;
    let m = i8::try_from(day / 100 % 100).ok()?;
    let d = i8::try_from(day % 100).ok()?;
    Date::new(y, m, d).ok()
}

/// `YYYY-MM-DD` of a date.
#[must_use]
pub fn format_day(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// `YYYY-MM` of a date's month.
#[must_use]
pub fn format_month(date: Date) -> String {
    format!("{:04}-{:02}", date.year(), date.month())
}

/// Parses `YYYY-MM-DD`.
#[must_use]
pub fn parse_day(text: &str) -> Option<Date> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()
}

/// Parses `YYYY-MM` into the first day of that month.
#[must_use]
pub fn parse_month(text: &str) -> Option<Date> {
    let mut parts = text.split('-');
    let (y, m) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paris_day_is_23_hours_on_dst_start() {
        let cal = Calendar::new("Europe/Paris").unwrap();
        let date = parse_day("2026-03-29").unwrap();
        let start = cal.start_of(date).unwrap();
        let end = cal.end_of_day(date).unwrap();
        assert_eq!(end - start, 23 * 3_600_000);
        assert_eq!(start % BUCKET_MS, 0);
        assert_eq!(cal.day_of(start), Some(20260329));
        assert_eq!(cal.day_of(end - 1), Some(20260329));
    }

    #[test]
    fn buckets_and_parsing() {
        assert_eq!(bucket_of(-1), -BUCKET_MS);
        assert_eq!(bucket_of(BUCKET_MS + 5), BUCKET_MS);
        assert_eq!(parse_month("2026-11").map(day_id), Some(20261101));
        assert!(parse_day("2026-02-30").is_none());
        assert!(parse_day("2026-2-03").is_none());
        let cal = Calendar::utc();
        let nov = parse_month("2026-11").unwrap();
        assert_eq!(
            cal.end_of_month(nov),
            cal.start_of(parse_day("2026-12-01").unwrap())
        );
    }
}

//! Calendar windows for daily and monthly quotas, in a configured IANA time zone.
//!
//! A quota day runs from 00:00:00.000 to 23:59:59.999 local time and a month from the first day
//! at 00:00:00.000 to the last day at 23:59:59.999, whatever DST does: a day may last 23 or 25
//! hours, and a day whose midnight does not exist starts at its first existing instant.
//!
//! Time is an argument (`now_ms`, milliseconds since the Unix epoch); this module never reads a
//! clock. Computing a window walks the time-zone rules and is meant for roll-over, not for every
//! request: a shard keeps the current [`Window`] and compares `now_ms` with [`Window::end_ms`].

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A half-open interval of time `[start_ms, end_ms)` with a calendar id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// First instant of the window, ms since the Unix epoch.
    pub start_ms: i64,
    /// First instant after the window, ms since the Unix epoch.
    pub end_ms: i64,
    /// `YYYYMMDD` for a day, `YYYYMM` for a month (local calendar).
    pub id: u32,
}

impl Window {
    /// Whether `now_ms` falls in the window.
    pub fn contains(&self, now_ms: i64) -> bool {
        self.start_ms <= now_ms && now_ms < self.end_ms
    }

    /// Milliseconds from `now_ms` until the window ends (0 once it has).
    pub fn remaining_ms(&self, now_ms: i64) -> i64 {
        (self.end_ms - now_ms).max(0)
    }

    /// Seconds until the window ends, rounded up (for `RateLimit-Reset` and `Retry-After`).
    pub fn remaining_secs_ceil(&self, now_ms: i64) -> u64 {
        u64::try_from(self.remaining_ms(now_ms)).map_or(0, |ms| ms.div_ceil(1000))
    }
}

/// A problem with a time zone or an instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The name is not in the IANA time-zone database.
    #[error("unknown time zone `{0}` (expected an IANA name such as `UTC` or `Europe/Paris`)")]
    UnknownZone(String),
    /// The instant is outside the supported range (years -9999..=9999).
    #[error("instant {0} ms is out of range")]
    OutOfRange(i64),
}

/// The quota calendar of a gateway: a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    tz: TimeZone,
    name: String,
}

impl Calendar {
    /// The calendar of the IANA time zone `name` (`UTC` included).
    ///
    /// # Errors
    /// [`WindowError::UnknownZone`] when the name is not known.
    pub fn new(name: &str) -> Result<Self, WindowError> {
        let tz = TimeZone::get(name).map_err(|_| WindowError::UnknownZone(name.to_owned()))?;
        Ok(Self {
            tz,
            name: name.to_owned(),
        })
    }

    /// The UTC calendar.
    pub fn utc() -> Self {
        Self {
            tz: TimeZone::UTC,
            name: "UTC".to_owned(),
        }
    }

    /// The zone's name as configured.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local calendar date at `now_ms`.
    fn date(&self, now_ms: i64) -> Result<Date, WindowError> {
        let ts =
            Timestamp::from_millisecond(now_ms).map_err(|_| WindowError::OutOfRange(now_ms))?;
        Ok(ts.to_zoned(self.tz.clone()).date())
    }

    /// First instant of a local date (midnight, or the first instant after a DST gap).
    fn start_of(&self, date: Date, at: i64) -> Result<i64, WindowError> {
        let zoned = date
            .to_zoned(self.tz.clone())
            .and_then(|z| z.start_of_day())
            .map_err(|_| WindowError::OutOfRange(at))?;
        Ok(zoned.timestamp().as_millisecond())
    }

    /// The local day containing `now_ms`.
    ///
    /// # Errors
    /// [`WindowError::OutOfRange`] for instants outside years -9999..=9999.
    pub fn day(&self, now_ms: i64) -> Result<Window, WindowError> {
        let date = self.date(now_ms)?;
        let next = date
            .tomorrow()
            .map_err(|_| WindowError::OutOfRange(now_ms))?;
        Ok(Window {
            start_ms: self.start_of(date, now_ms)?,
            end_ms: self.start_of(next, now_ms)?,
            id: day_id(date),
        })
    }

    /// The local month containing `now_ms`.
    ///
    /// # Errors
    /// [`WindowError::OutOfRange`] for instants outside years -9999..=9999.
    pub fn month(&self, now_ms: i64) -> Result<Window, WindowError> {
        let first = self.date(now_ms)?.first_of_month();
        let next = first
            .checked_add(1.month())
            .map_err(|_| WindowError::OutOfRange(now_ms))?;
        Ok(Window {
            start_ms: self.start_of(first, now_ms)?,
            end_ms: self.start_of(next, now_ms)?,
            id: month_id(first),
        })
    }
}

fn day_id(date: Date) -> u32 {
    month_id(date) * 100 + u32::from(date.day().unsigned_abs())
}

fn month_id(date: Date) -> u32 {
    let year = u32::from(date.year().unsigned_abs());
    year * 100 + u32::from(date.month().unsigned_abs())
}

#[cfg(test)]
mod tests;

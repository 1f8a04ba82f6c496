//! Calendar days and months as the events carry them: `YYYYMMDD` and `YYYYMM` in a `u32`.
//!
//! Compact, sortable, readable in a dump, and the month is `day / 100`. The gateway computes them
//! in its configured time zone; this module only checks that a value names a real date.

/// The first and last years an event may name.
const YEARS: std::ops::RangeInclusive<u32> = 1970..=9999;

/// Whether `day` is a real calendar date written `YYYYMMDD` (years 1970–9999, leap years
/// honoured): `20240229` is, `20230229` and `2024131` are not.
#[must_use]
pub fn is_calendar_day(day: u32) -> bool {
    let (month, dd) = (day / 100, day % 100);
    is_calendar_month(month) && dd >= 1 && dd <= days_in_month(month / 100, month % 100)
}

/// Whether `month` is a real calendar month written `YYYYMM` (years 1970–9999).
#[must_use]
pub fn is_calendar_month(month: u32) -> bool {
    YEARS.contains(&(month / 100)) && (1..=12).contains(&(month % 100))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Checks a `(day, month)` pair: both real, and the day inside the month. Returns the name of
/// the bad field and why.
pub(crate) fn check_day_month(day: u32, month: u32) -> Result<(), (&'static str, String)> {
    if !is_calendar_day(day) {
        return Err(("day", format!("{day} is not a calendar date YYYYMMDD")));
    }
    if month != day / 100 {
        return Err((
            "month",
            format!("{month} is not the month YYYYMM of day {day}"),
        ));
    }
    Ok(())
}

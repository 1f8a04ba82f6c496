//! Queries over the store: usage by day or month in the configured time zone, billing exports.
//!
//! The store keeps 15-minute UTC buckets; a query sums the buckets of each local day or month.
//! Each bucket row carries its lateness: rows that arrived after their day's grace are that
//! day's `adjustments`, rows that arrived after their month's grace are the month's.

use std::collections::BTreeMap;

use gateway_model::event::UsageCounters;
use jiff::civil::Date;

use crate::calendar::{self, Calendar};
use crate::error::LedgerError;
use crate::fold::{LATE_FOR_DAY, LATE_FOR_MONTH};
use crate::store::{AggRow, Dimension, Store, counters_json};

/// Day or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Calendar day.
    Day,
    /// Calendar month.
    Month,
}

impl Granularity {
    /// `day` or `month`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// Whether a row of lateness `level` is an adjustment at this granularity.
    #[must_use]
    pub const fn is_adjustment(self, level: u8) -> bool {
        match self {
            Self::Day => level >= LATE_FOR_DAY,
            Self::Month => level >= LATE_FOR_MONTH,
        }
    }
}

/// Counters of one period: regular and adjustments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodUsage {
    /// Usage applied within the period's grace.
    pub regular: UsageCounters,
    /// Usage applied after it.
    pub adjustments: UsageCounters,
}

impl PeriodUsage {
    fn add(&mut self, granularity: Granularity, row: &AggRow) {
        if granularity.is_adjustment(row.level) {
            self.adjustments.merge(&row.counters);
        } else {
            self.regular.merge(&row.counters);
        }
    }

    /// JSON of one item: the regular counters at the top level, adjustments apart.
    #[must_use]
    pub fn to_json(&self, period: &str) -> serde_json::Value {
        let mut item = counters_json(&self.regular);
        if let Some(obj) = item.as_object_mut() {
            obj.insert("period".into(), period.into());
            obj.insert("adjustments".into(), counters_json(&self.adjustments));
        }
        item
    }
}

/// The instants `[from, to)` covering local days `from..=to` (whole months at month
/// granularity); open ends are unbounded.
#[must_use]
pub fn range(
    cal: &Calendar,
    granularity: Granularity,
    from: Option<Date>,
    to: Option<Date>,
) -> (i64, i64) {
    let (from, to) = match granularity {
        Granularity::Day => (from, to),
        Granularity::Month => (
            from.map(|d| d.first_of_month()),
            to.map(|d| d.last_of_month()),
        ),
    };
    let start = from.and_then(|d| cal.start_of(d)).unwrap_or(i64::MIN);
    let end = to.and_then(|d| cal.end_of_day(d)).unwrap_or(i64::MAX);
    (start, end)
}

/// A local period's label: `YYYY-MM-DD` or `YYYY-MM`.
#[must_use]
pub fn label(granularity: Granularity, date: Date) -> String {
    match granularity {
        Granularity::Day => calendar::format_day(date),
        Granularity::Month => calendar::format_month(date),
    }
}

/// Usage of `id` in `dim` per local period, oldest first.
///
/// # Errors
///
/// Store errors.
pub fn usage(
    store: &Store,
    cal: &Calendar,
    dim: Dimension,
    id: &str,
    granularity: Granularity,
    from: Option<Date>,
    to: Option<Date>,
) -> Result<BTreeMap<String, PeriodUsage>, LedgerError> {
    let (start, end) = range(cal, granularity, from, to);
    let mut out: BTreeMap<String, PeriodUsage> = BTreeMap::new();
    let mut last: Option<(i64, String)> = None;
    for row in store.aggregates(dim, id, start, end)? {
        let period = match &last {
            Some((bucket, period)) if *bucket == row.bucket_ms => period.clone(),
            _ => {
                let Some(date) = cal.date_of(row.bucket_ms) else {
                    continue;
                };
                let period = label(granularity, date);
                last = Some((row.bucket_ms, period.clone()));
                period
            }
        };
        out.entry(period).or_default().add(granularity, &row);
    }
    Ok(out)
}

/// What an export has one line per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportBy {
    /// API key (the default).
    ApiKey,
    /// Subscription: the line id is `<api>/<consumer>/<subscription>`.
    Subscription,
}

/// Usage of every API key (or subscription) in one local period (`YYYY-MM` or `YYYY-MM-DD`),
/// by key (or subscription line).
///
/// # Errors
///
/// Store errors.
pub fn export(
    store: &Store,
    cal: &Calendar,
    granularity: Granularity,
    date: Date,
    by: ExportBy,
) -> Result<BTreeMap<String, PeriodUsage>, LedgerError> {
    let (start, end) = range(cal, granularity, Some(date), Some(date));
    let mut out: BTreeMap<String, PeriodUsage> = BTreeMap::new();
    let dim = match by {
        ExportBy::ApiKey => Dimension::ApiKey,
        ExportBy::Subscription => Dimension::SubscriptionLine,
    };
    store.each_aggregate(dim, start, end, |row| {
        let slot = match out.get_mut(&row.id) {
            Some(slot) => slot,
            None => out.entry(row.id.clone()).or_default(),
        };
        slot.add(granularity, &row);
    })?;
    Ok(out)
}

/// The CSV header of an export.
pub const CSV_HEADER: &str = "period,timezone,apikey,calls,rejected,bytes_in,bytes_out,\
status_1xx,status_2xx,status_3xx,status_4xx,status_5xx,\
adjustment_calls,adjustment_rejected,adjustment_bytes_in,adjustment_bytes_out";

/// The CSV header of an export by subscription.
pub const CSV_HEADER_BY_SUBSCRIPTION: &str = "period,timezone,api,consumer,subscription,calls,\
rejected,bytes_in,bytes_out,status_1xx,status_2xx,status_3xx,status_4xx,status_5xx,\
adjustment_calls,adjustment_rejected,adjustment_bytes_in,adjustment_bytes_out";

/// The API, consumer and subscription of a subscription line id.
#[must_use]
pub fn split_line(line: &str) -> (&str, &str, &str) {
    let mut parts = line.splitn(3, '/');
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

/// One CSV line of an export (no newline). `who` is the key, or the line's id by subscription
/// (written as its three columns).
#[must_use]
pub fn csv_line(
    period: &str,
    timezone: &str,
    who: &str,
    by: ExportBy,
    usage: &PeriodUsage,
) -> String {
    let r = &usage.regular;
    let a = &usage.adjustments;
    let who = match by {
        ExportBy::ApiKey => csv_field(who),
        ExportBy::Subscription => {
            let (api, consumer, subscription) = split_line(who);
            format!(
                "{},{},{}",
                csv_field(api),
                csv_field(consumer),
                csv_field(subscription)
            )
        }
    };
    format!(
        "{period},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        csv_field(timezone),
        who,
        r.admitted,
        r.rejected.total(),
        r.bytes_in,
        r.bytes_out,
        r.status.informational,
        r.status.success,
        r.status.redirection,
        r.status.client_error,
        r.status.server_error,
        a.admitted,
        a.rejected.total(),
        a.bytes_in,
        a.bytes_out,
    )
}

/// Quotes a CSV field when needed (RFC 4180), and defuses spreadsheet formulas.
#[must_use]
pub fn csv_field(value: &str) -> String {
    let formula = value.starts_with(['=', '+', '-', '@']);
    if formula || value.contains([',', '"', '\n', '\r']) {
        let prefix = if formula { "'" } else { "" };
        format!("\"{prefix}{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

//! The ledger's live counters and gauges, rendered as Prometheus text and as `/health`.
//!
//! Event lag is the age of the oldest event not folded yet, bounded from above: 0 while every
//! source was read to its end at the last poll, else the time since the fold was last caught up
//! (every event not folded yet was appended after that moment). It does not grow on an idle
//! node, so an alert on it fires only when the fold falls behind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use gateway_telemetry::prom::{self, MetricType};

use crate::fold::FoldStats;

/// How far behind a source is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Records between the ledger's position and the end of the source (Kafka: high
    /// watermark minus position; journal: 0 once a poll reached the end), when known.
    pub records: Option<u64>,
    /// The source's position.
    pub position: u64,
}

/// Shared by the fold thread (writer) and the query threads (readers).
#[derive(Debug, Default)]
pub struct Metrics {
    stats: Mutex<FoldStats>,
    lag: Mutex<BTreeMap<String, Lag>>,
    last_error: Mutex<Option<String>>,
    /// Chunks committed since start.
    pub commits: AtomicU64,
    /// Failed commits (the fold restarted from the store).
    pub commit_errors: AtomicU64,
    /// Source read errors (journal IO, Kafka).
    pub source_errors: AtomicU64,
    /// Totals records published on the totals topic.
    pub totals_published: AtomicU64,
    /// Totals records that could not be handed to the producer.
    pub totals_publish_errors: AtomicU64,
    /// Sequences currently missing across producers.
    pub missing: AtomicU64,
    /// Highest usage window end applied, ms (event time).
    pub high_water_ms: AtomicI64,
    /// When the last chunk was committed, ms.
    pub last_commit_ms: AtomicI64,
    /// Whether the fold thread runs.
    pub running: AtomicBool,
    /// When every source was last read to its end, ms (the start time until then).
    caught_up_ms: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    /// Metrics starting from the counters stored by previous runs.
    #[must_use]
    pub fn new(stored: FoldStats) -> Self {
        let m = Self::default();
        *lock(&m.stats) = stored;
        m.caught_up_ms
            .store(crate::runtime::now_ms(), Ordering::Relaxed);
        m
    }

    /// Adds a committed chunk's counters.
    pub fn add(&self, stats: &FoldStats) {
        lock(&self.stats).add(stats);
    }

    /// The counters summed over every commit.
    #[must_use]
    pub fn stats(&self) -> FoldStats {
        *lock(&self.stats)
    }

    /// Sets a source's lag; when every source is then known to be read to its end, the fold
    /// is caught up now.
    pub fn set_lag(&self, source: &str, lag: Lag) {
        let mut lags = lock(&self.lag);
        lags.insert(source.to_owned(), lag);
        if lags.values().all(|l| l.records == Some(0)) {
            self.caught_up_ms
                .store(crate::runtime::now_ms(), Ordering::Relaxed);
        }
    }

    /// The event lag at `now_ms`, in ms: 0 while caught up (every source read to its end at
    /// its last poll), else the time since the fold was last caught up (or started); `None`
    /// before any source was polled.
    #[must_use]
    pub fn event_lag_ms(&self, now_ms: i64) -> Option<i64> {
        let lags = lock(&self.lag);
        if lags.is_empty() {
            return None;
        }
        if lags.values().all(|l| l.records == Some(0)) {
            return Some(0);
        }
        Some((now_ms - self.caught_up_ms.load(Ordering::Relaxed)).max(0))
    }

    /// Every source's lag.
    #[must_use]
    pub fn lags(&self) -> BTreeMap<String, Lag> {
        lock(&self.lag).clone()
    }

    /// Records the last source or store error (shown in `/health`), or clears it.
    pub fn set_error(&self, error: Option<String>) {
        *lock(&self.last_error) = error;
    }

    /// The last error, if the source has not recovered since.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Prometheus text exposition.
    #[must_use]
    pub fn render(&self, now_ms: i64) -> String {
        let s = self.stats();
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            prom::counter(&mut out, &format!("tollgate_ledger_{name}"), help, value);
        };
        counter("records_total", "Records read from the sources.", s.records);
        counter("batches_applied_total", "Usage batches applied.", s.batches);
        counter("entries_applied_total", "Usage entries applied.", s.entries);
        counter(
            "batches_duplicate_total",
            "Usage batches skipped as replays of an applied sequence.",
            s.duplicates,
        );
        counter(
            "sequence_gaps_total",
            "Usage batches applied past a hole in their producer's sequence.",
            s.gaps,
        );
        counter(
            "sequences_skipped_total",
            "Sequences jumped over by gaps.",
            s.missing_opened,
        );
        counter(
            "sequences_filled_total",
            "Batches that arrived out of order and filled a hole.",
            s.filled,
        );
        counter(
            "sequences_abandoned_total",
            "Missing sequences given up on.",
            s.abandoned,
        );
        counter(
            "late_entries_total",
            "Entries applied after their period's grace (adjustments).",
            s.late_entries,
        );
        counter(
            "quarantined_total",
            "Records quarantined (undecodable or damaged).",
            s.quarantined,
        );
        counter(
            "journal_corrupt_total",
            "Journal frames skipped for a bad checksum.",
            s.corrupt_skipped,
        );
        counter(
            "entity_events_total",
            "Entity events folded into the history.",
            s.entity_events,
        );
        counter(
            "journal_records_gone_total",
            "Journal records deleted by retention before the ledger read them.",
            s.offset_gone,
        );
        counter(
            "commits_total",
            "Chunks committed since start.",
            self.commits.load(Ordering::Relaxed),
        );
        counter(
            "commit_errors_total",
            "Failed commits since start.",
            self.commit_errors.load(Ordering::Relaxed),
        );
        counter(
            "source_errors_total",
            "Source read errors since start.",
            self.source_errors.load(Ordering::Relaxed),
        );
        counter(
            "totals_published_total",
            "Totals records published since start.",
            self.totals_published.load(Ordering::Relaxed),
        );
        counter(
            "totals_publish_errors_total",
            "Totals records that could not be published since start.",
            self.totals_publish_errors.load(Ordering::Relaxed),
        );
        prom::gauge(
            &mut out,
            "tollgate_ledger_sequences_missing",
            "Sequences currently missing across producers.",
            self.missing.load(Ordering::Relaxed),
        );
        const LAG: &str = "tollgate_ledger_lag_records";
        prom::family(
            &mut out,
            LAG,
            "Records between the ledger's position and the end of each source.",
            MetricType::Gauge,
        );
        for (source, lag) in self.lags() {
            if let Some(records) = lag.records {
                prom::sample(&mut out, LAG, &[("source", &source)], records);
            }
        }
        if let Some(lag) = self.event_lag_ms(now_ms) {
            prom::gauge(
                &mut out,
                "tollgate_ledger_event_lag_seconds",
                "Age of the oldest event not folded yet, at most: 0 when caught up, else the time \
                 since the fold last read every source to its end.",
                format_args!("{:.3}", lag as f64 / 1000.0),
            );
        }
        let high_water = self.high_water_ms.load(Ordering::Relaxed);
        if high_water > 0 {
            prom::gauge(
                &mut out,
                "tollgate_ledger_newest_event_timestamp_seconds",
                "End of the newest usage window folded (event time).",
                format_args!("{:.3}", high_water as f64 / 1000.0),
            );
        }
        let last_commit = self.last_commit_ms.load(Ordering::Relaxed);
        if last_commit > 0 {
            prom::gauge(
                &mut out,
                "tollgate_ledger_last_commit_timestamp_seconds",
                "When the fold last committed a chunk.",
                format_args!("{:.3}", last_commit as f64 / 1000.0),
            );
        }
        out
    }

    /// `/health`: `(healthy, body)`.
    #[must_use]
    pub fn health(&self, now_ms: i64, source: &str) -> (bool, serde_json::Value) {
        let running = self.running.load(Ordering::Relaxed);
        let lags: serde_json::Map<String, serde_json::Value> = self
            .lags()
            .into_iter()
            .map(|(k, l)| {
                (
                    k,
                    serde_json::json!({"position": l.position, "lag_records": l.records}),
                )
            })
            .collect();
        let high_water = self.high_water_ms.load(Ordering::Relaxed);
        let last_commit = self.last_commit_ms.load(Ordering::Relaxed);
        let error = self.last_error();
        let status = match (running, &error) {
            (false, _) => "down",
            (true, Some(_)) => "degraded",
            (true, None) => "ok",
        };
        let s = self.stats();
        (
            running,
            serde_json::json!({
                "status": status,
                "source": source,
                "consumer_lag": lags,
                "event_lag_ms": self.event_lag_ms(now_ms),
                "newest_event_ms": (high_water > 0).then_some(high_water),
                "last_commit_ms": (last_commit > 0).then_some(last_commit),
                "last_error": error,
                "batches_applied": s.batches,
                "duplicates": s.duplicates,
                "gaps": s.gaps,
                "quarantined": s.quarantined,
                "sequences_missing": self.missing.load(Ordering::Relaxed),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lag_is_zero_when_caught_up_and_grows_only_while_behind() {
        let m = Metrics::new(FoldStats::default());
        let now = crate::runtime::now_ms();
        assert_eq!(m.event_lag_ms(now), None);
        // An old event was folded long ago: idle, caught up, the lag stays 0.
        m.high_water_ms.store(now - 3_600_000, Ordering::Relaxed);
        let caught_up = Lag {
            records: Some(0),
            position: 10,
        };
        m.set_lag("journal:usage", caught_up);
        m.set_lag("journal:entities", caught_up);
        assert_eq!(m.event_lag_ms(now + 60_000), Some(0));
        assert!(
            m.render(now + 60_000)
                .contains("tollgate_ledger_event_lag_seconds 0.000")
        );
        // Behind: the lag is the time since the last catch-up, not since the newest event.
        m.set_lag(
            "journal:usage",
            Lag {
                records: None,
                position: 11,
            },
        );
        let lag = m.event_lag_ms(now + 5_000).unwrap();
        assert!((4_000..=6_000).contains(&lag), "{lag}");
        m.set_lag("journal:usage", caught_up);
        assert_eq!(m.event_lag_ms(now + 10_000), Some(0));
    }
}

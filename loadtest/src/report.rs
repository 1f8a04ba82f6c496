//! The result of a run: counts, latency histogram, throughput over time; printed as a summary,
//! written as JSON (a fixed schema) or as HTML (see [`crate::html`]).

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};

use crate::{DriverKind, Error};

/// Failed requests by cause. A failed request has no status and no latency sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// The TCP connect failed (refused, unreachable).
    pub connect: u64,
    /// Reading failed, or the peer closed before the response was complete.
    pub read: u64,
    /// Writing the request failed.
    pub write: u64,
    /// Connect, write or response took longer than the timeout.
    pub timeout: u64,
    /// The response was not valid HTTP/1.x (or its head did not fit in 16 KiB).
    pub parse: u64,
}

impl ErrorCounts {
    /// All errors.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.parse
    }

    pub(crate) fn add(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.read += o.read;
        self.write += o.write;
        self.timeout += o.timeout;
        self.parse += o.parse;
    }
}

/// What a status ratio counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// Failed requests.
    Errors,
    /// A class of statuses: `2` for `2xx`.
    Hundreds(u16),
    /// One status.
    Exact(u16),
}

impl StatusClass {
    /// Parses `errors`, `2xx` (1xx–9xx) or a status (100–999).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        if text == "errors" {
            Some(Self::Errors)
        } else if let Some(digit) = text.strip_suffix("xx") {
            let d: u16 = digit.parse().ok().filter(|d| (1..=9).contains(d))?;
            Some(Self::Hundreds(d))
        } else {
            let s: u16 = text.parse().ok().filter(|s| (100..=999).contains(s))?;
            Some(Self::Exact(s))
        }
    }
}

/// The measured part of a run (warm-up excluded).
#[derive(Debug, Clone)]
pub struct Report {
    /// The target URL.
    pub url: String,
    /// Whether the run was open loop (scheduled, latency from the intended send time).
    pub open_loop: bool,
    /// The IO driver the workers got.
    pub driver: Option<DriverKind>,
    /// Worker threads.
    pub threads: usize,
    /// Connections in all.
    pub connections: usize,
    /// Responses received (any status).
    pub requests: u64,
    /// From the end of the warm-up to the last response (at least the planned duration when
    /// the run was not stopped by a request budget).
    pub duration: Duration,
    /// Responses per status code.
    pub status: BTreeMap<u16, u64>,
    /// Failed requests by cause.
    pub errors: ErrorCounts,
    /// Latency in µs (open loop: from the intended send time).
    pub latency_us: Histogram<u64>,
    /// Open loop: how late requests were sent after their intended time, in µs (the
    /// generator's own timer granularity and any backlog; part of `latency_us`).
    pub send_lag_us: Histogram<u64>,
    /// Responses completed in each second of the measured period.
    pub per_second: Vec<u64>,
    /// TCP connections opened (initial ones and reconnects).
    pub connects: u64,
}

impl Report {
    /// Responses per second over the measured duration.
    #[must_use]
    pub fn rps(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency (µs) at `percentile` (0–100); 0 without samples.
    #[must_use]
    pub fn percentile_us(&self, percentile: f64) -> u64 {
        quantile(&self.latency_us, percentile)
    }

    /// The share of completed requests (responses + errors) that match `class`: a status
    /// (`"429"`), a class (`"2xx"`), or `"errors"`. `None` for an unknown class.
    #[must_use]
    pub fn ratio(&self, class: &str) -> Option<f64> {
        let matched: u64 = match StatusClass::parse(class)? {
            StatusClass::Errors => self.errors.total(),
            StatusClass::Hundreds(d) => self
                .status
                .iter()
                .filter(|(s, _)| **s / 100 == d)
                .map(|(_, n)| n)
                .sum(),
            StatusClass::Exact(s) => self.status.get(&s).copied().unwrap_or(0),
        };
        let all = self.requests + self.errors.total();
        #[allow(clippy::cast_precision_loss)]
        Some(if all == 0 {
            0.0
        } else {
            matched as f64 / all as f64
        })
    }

    /// The JSON report: `{"rps", "requests", "duration_s", "errors", "status", "latency_us"}`
    /// plus `error_kinds`, and `send_lag_us` for an open loop (documented in docs/loadtest.md).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let status: serde_json::Map<String, Value> = self
            .status
            .iter()
            .map(|(code, n)| (code.to_string(), json!(n)))
            .collect();
        let mut v = json!({
            "rps": self.rps(),
            "requests": self.requests,
            "duration_s": self.duration.as_secs_f64(),
            "errors": self.errors.total(),
            "error_kinds": self.errors,
            "status": status,
            "latency_us": {
                "p50": self.percentile_us(50.0),
                "p90": self.percentile_us(90.0),
                "p99": self.percentile_us(99.0),
                "p999": self.percentile_us(99.9),
                "max": self.latency_us.max(),
            },
        });
        if self.open_loop {
            v["send_lag_us"] = json!({
                "p50": quantile(&self.send_lag_us, 50.0),
                "p99": quantile(&self.send_lag_us, 99.0),
                "max": self.send_lag_us.max(),
            });
        }
        v
    }

    /// Writes [`Report::to_json`] to `path`.
    ///
    /// # Errors
    /// [`Error::Write`] when the file cannot be written.
    pub fn write_json(&self, path: &str) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(&self.to_json()).map_err(|e| Error::Write {
            path: path.into(),
            source: e.into(),
        })?;
        std::fs::write(path, text + "\n").map_err(|source| Error::Write {
            path: path.into(),
            source,
        })
    }

    /// A human summary, several lines.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mode = if self.open_loop {
            "open loop (latency from intended send time)"
        } else {
            "closed loop"
        };
        let driver = self
            .driver
            .map_or_else(|| "-".to_string(), |d| d.to_string());
        let _ = writeln!(
            out,
            "{} — {mode}, {} thread(s), {} connection(s), {driver}",
            self.url, self.threads, self.connections
        );
        let _ = writeln!(
            out,
            "  requests     {} in {:.2}s, {} connections opened",
            group(self.requests),
            self.duration.as_secs_f64(),
            self.connects
        );
        let _ = writeln!(out, "  requests/s   {:.1}", self.rps());
        let statuses: Vec<String> = self
            .status
            .iter()
            .map(|(s, n)| format!("{s}: {}", group(*n)))
            .collect();
        let statuses = if statuses.is_empty() {
            "-".to_string()
        } else {
            statuses.join(", ")
        };
        let _ = writeln!(out, "  status       {statuses}");
        let e = &self.errors;
        let _ = writeln!(
            out,
            "  errors       {} (connect {}, read {}, write {}, timeout {}, parse {})",
            group(e.total()),
            e.connect,
            e.read,
            e.write,
            e.timeout,
            e.parse
        );
        let _ = writeln!(
            out,
            "  latency      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            human_us(self.percentile_us(50.0)),
            human_us(self.percentile_us(90.0)),
            human_us(self.percentile_us(99.0)),
            human_us(self.percentile_us(99.9)),
            human_us(self.latency_us.max()),
        );
        if self.open_loop {
            let _ = writeln!(
                out,
                "  send lag     p50 {}  p99 {}  max {}  (late sends, included in latency)",
                human_us(quantile(&self.send_lag_us, 50.0)),
                human_us(quantile(&self.send_lag_us, 99.0)),
                human_us(self.send_lag_us.max()),
            );
        }
        out
    }
}

fn quantile(h: &Histogram<u64>, percentile: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(percentile / 100.0)
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1500` → `1.50ms`.
pub(crate) fn human_us(us: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let v = us as f64;
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", v / 1e3)
    } else {
        format!("{:.2}s", v / 1e6)
    }
}

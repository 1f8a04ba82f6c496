//! Per-thread measurements: plain data owned by one worker thread, merged once at the end.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use hdrhistogram::Histogram;

use crate::{Error, report::ErrorCounts};

/// Highest latency the histogram holds exactly (larger values are clamped): one minute in µs.
pub(crate) const MAX_LATENCY_US: u64 = 60_000_000;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Connect,
    Read,
    Write,
    Timeout,
    Parse,
}

/// What one worker thread measured.
#[derive(Debug)]
pub(crate) struct ThreadStats {
    pub latency_us: Histogram<u64>,
    /// Open loop: how late each request was sent after its intended time (µs).
    pub send_lag_us: Histogram<u64>,
    /// Responses per status code (index = code, 100..=999).
    pub status: Vec<u64>,
    pub errors: ErrorCounts,
    /// Measured responses per second since the measurement start.
    pub per_second: Vec<u64>,
    pub requests: u64,
    pub connects: u64,
    pub last_done: Option<Instant>,
}

impl ThreadStats {
    pub(crate) fn new(seconds_hint: usize) -> Result<Self, Error> {
        Ok(Self {
            latency_us: new_histogram()?,
            send_lag_us: new_histogram()?,
            status: vec![0; 1000],
            errors: ErrorCounts::default(),
            per_second: Vec::with_capacity(seconds_hint + 2),
            requests: 0,
            connects: 0,
            last_done: None,
        })
    }

    pub(crate) fn response(&mut self, status: u16, latency_us: u64, second: usize, done: Instant) {
        self.requests += 1;
        if let Some(slot) = self.status.get_mut(usize::from(status)) {
            *slot += 1;
        }
        self.latency_us.saturating_record(latency_us.max(1));
        match self.per_second.get_mut(second) {
            Some(slot) => *slot += 1,
            None => {
                // Rare: past the expected length (grows once per second at most).
                self.per_second.resize(second, 0);
                self.per_second.push(1);
            }
        }
        self.last_done = Some(done);
    }

    pub(crate) fn error(&mut self, kind: ErrorKind) {
        let e = &mut self.errors;
        match kind {
            ErrorKind::Connect => e.connect += 1,
            ErrorKind::Read => e.read += 1,
            ErrorKind::Write => e.write += 1,
            ErrorKind::Timeout => e.timeout += 1,
            ErrorKind::Parse => e.parse += 1,
        }
    }
}

/// An empty latency histogram: 1 µs to one minute, 3 significant digits.
pub(crate) fn new_histogram() -> Result<Histogram<u64>, Error> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .map_err(|e| Error::config(format!("latency histogram: {e:?}")))
}

/// Live counters one worker publishes for the progress display (single writer, relaxed).
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub(crate) fn publish(&self, done: u64, errors: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.errors.store(errors, Ordering::Relaxed);
    }
}

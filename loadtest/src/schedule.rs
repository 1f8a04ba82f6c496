//! Open-loop schedules: the intended send time of the n-th request for a rate that is steady,
//! ramps linearly, or spikes. Pure arithmetic: no clock, no IO.
//!
//! The schedule is a sequence of segments in which the rate moves linearly from `from` to `to`
//! requests/s. The n-th request (counting from 0 over all connections) is due when the integral
//! of the rate reaches n. Connection `i` of `C` sends requests `i, i + C, i + 2C, …`, so the total
//! rate is split evenly and the connections are staggered.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

#[cfg(test)]
mod tests;

/// One phase of an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// The rate moves linearly from `from` to `to` requests/s over `duration`.
    Ramp {
        /// Requests/s at the start.
        from: f64,
        /// Requests/s at the end.
        to: f64,
        /// How long the ramp lasts.
        duration: Duration,
    },
    /// A constant rate.
    Steady {
        /// Requests/s.
        rate: f64,
        /// How long.
        duration: Duration,
    },
    /// The rate jumps to `rate` for `duration`, then returns to the previous stage's final rate
    /// for `after`.
    Spike {
        /// Peak requests/s.
        rate: f64,
        /// How long the peak lasts.
        duration: Duration,
        /// How long the previous rate holds after the peak.
        after: Duration,
    },
}

impl Stage {
    /// How long the stage runs (a spike: its peak and the time after it).
    #[must_use]
    pub fn length(&self) -> Duration {
        match *self {
            Self::Ramp { duration, .. } | Self::Steady { duration, .. } => duration,
            Self::Spike {
                duration, after, ..
            } => duration + after,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    /// Seconds from the schedule's start.
    start_s: f64,
    /// Requests due before this segment.
    start_n: f64,
    from: f64,
    to: f64,
    /// May be infinite for a steady tail.
    duration_s: f64,
}

impl Segment {
    fn count(&self) -> f64 {
        if self.duration_s.is_infinite() {
            if self.from > 0.0 { f64::INFINITY } else { 0.0 }
        } else {
            (self.from + self.to) * 0.5 * self.duration_s
        }
    }

    /// Seconds into the segment at which `m` requests (of this segment) are due.
    fn offset_of(&self, m: f64) -> f64 {
        let slope = if self.duration_s.is_finite() && self.duration_s > 0.0 {
            (self.to - self.from) / self.duration_s
        } else {
            0.0
        };
        if slope == 0.0 {
            if self.from > 0.0 { m / self.from } else { 0.0 }
        } else {
            // Solve from·x + slope·x²/2 = m in the form that is stable when slope is small.
            let a = slope * 0.5;
            let b = self.from;
            let disc = (b * b + 4.0 * a * m).max(0.0);
            let den = b + disc.sqrt();
            if den > 0.0 { 2.0 * m / den } else { 0.0 }
        }
    }
}

/// Intended send times for an open-loop run.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    segments: Vec<Segment>,
}

impl Schedule {
    /// A constant `rate` for `duration` (`None`: until stopped by a request budget).
    #[must_use]
    pub fn steady(rate: f64, duration: Option<Duration>) -> Self {
        let mut s = Self {
            segments: Vec::new(),
        };
        s.push(
            rate,
            rate,
            duration.map_or(f64::INFINITY, |d| d.as_secs_f64()),
        );
        s
    }

    /// A schedule made of `stages`, after a warm-up of `warmup` at `warmup_rate`.
    #[must_use]
    pub fn from_stages(warmup: Duration, warmup_rate: f64, stages: &[Stage]) -> Self {
        let mut s = Self {
            segments: Vec::new(),
        };
        if !warmup.is_zero() {
            s.push(warmup_rate, warmup_rate, warmup.as_secs_f64());
        }
        let mut last_rate = 0.0;
        for stage in stages {
            match *stage {
                Stage::Ramp { from, to, duration } => {
                    s.push(from, to, duration.as_secs_f64());
                    last_rate = to;
                }
                Stage::Steady { rate, duration } => {
                    s.push(rate, rate, duration.as_secs_f64());
                    last_rate = rate;
                }
                Stage::Spike {
                    rate,
                    duration,
                    after,
                } => {
                    s.push(rate, rate, duration.as_secs_f64());
                    s.push(last_rate, last_rate, after.as_secs_f64());
                }
            }
        }
        s
    }

    /// Prepends a warm-up of `duration` at `rate`.
    #[must_use]
    pub fn with_warmup(self, duration: Duration, rate: f64) -> Self {
        let mut s = Self {
            segments: Vec::new(),
        };
        if !duration.is_zero() {
            s.push(rate, rate, duration.as_secs_f64());
        }
        for seg in self.segments {
            s.push(seg.from, seg.to, seg.duration_s);
        }
        s
    }

    fn push(&mut self, from: f64, to: f64, duration_s: f64) {
        let (start_s, start_n) = self.segments.last().map_or((0.0, 0.0), |l| {
            (l.start_s + l.duration_s, l.start_n + l.count())
        });
        if duration_s <= 0.0 || start_s.is_infinite() {
            return;
        }
        self.segments.push(Segment {
            start_s,
            start_n,
            from: from.max(0.0),
            to: to.max(0.0),
            duration_s,
        });
    }

    /// The schedule's length (infinite for an open-ended steady rate).
    #[must_use]
    pub fn duration(&self) -> Option<Duration> {
        let end = self
            .segments
            .last()
            .map_or(0.0, |l| l.start_s + l.duration_s);
        Duration::try_from_secs_f64(end).ok()
    }

    /// How many requests the whole schedule sends (infinite for an open-ended one).
    #[must_use]
    pub fn total_requests(&self) -> f64 {
        self.segments.last().map_or(0.0, |l| l.start_n + l.count())
    }

    /// The highest rate anywhere in the schedule.
    #[must_use]
    pub fn peak_rate(&self) -> f64 {
        self.segments
            .iter()
            .map(|s| s.from.max(s.to))
            .fold(0.0, f64::max)
    }

    /// When request `n` is due, from the schedule's start; `None` past the end. `cursor` is the
    /// caller's segment index, moved forward as `n` grows (so each call is O(1) amortised).
    pub fn time_of(&self, n: u64, cursor: &mut usize) -> Option<Duration> {
        #[allow(clippy::cast_precision_loss)] // exact below 2^53 requests
        let n = n as f64;
        loop {
            let seg = self.segments.get(*cursor)?;
            let m = n - seg.start_n;
            if m < seg.count() {
                let at = seg.start_s + seg.offset_of(m);
                return Duration::try_from_secs_f64(at).ok();
            }
            *cursor += 1;
        }
    }
}

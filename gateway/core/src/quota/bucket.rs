//! The throttling token bucket in GCRA form: one `u64` per key, the theoretical arrival time
//! (`tat`, ns since the Unix epoch), so that leasing tokens is one compare-and-swap.
//!
//! A bucket of capacity `C` refilled at `C` tokens per second issues one token every
//! `interval = ⌈10⁹ / C⌉` ns and lets `tat` run ahead of now by at most `tolerance = C × interval`
//! ns. Tokens available at `now`: `⌊(now + tolerance − max(tat, now)) / interval⌋` (`C` when
//! `tat ≤ now`: full). Taking `n` moves `tat` to `max(tat, now) + n × interval`. Rounding the
//! interval up makes a rate that does not divide 10⁹ very slightly slower, never faster.

/// Throttling quotas are enforced up to this many calls per second (an interval of 1 ns).
pub(crate) const MAX_RATE: u64 = 1_000_000_000;

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_SEC: u64 = 1_000_000_000;

/// A token bucket's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bucket {
    rate: u64,
    interval_ns: u64,
    tolerance_ns: u64,
}

impl Bucket {
    /// A bucket of capacity `rate` refilled at `rate` tokens per second (`rate` is clamped to
    /// [`MAX_RATE`]; 0 issues no token).
    pub(crate) fn new(rate: u64) -> Self {
        let rate = rate.min(MAX_RATE);
        if rate == 0 {
            return Self {
                rate: 0,
                interval_ns: NS_PER_SEC,
                tolerance_ns: 0,
            };
        }
        let interval_ns = NS_PER_SEC.div_ceil(rate);
        Self {
            rate,
            interval_ns,
            // ≤ 10⁹ + rate: no overflow.
            tolerance_ns: interval_ns.saturating_mul(rate),
        }
    }

    /// Capacity and refill per second.
    pub(crate) fn rate(&self) -> u64 {
        self.rate
    }

    /// Whole tokens available at `now_ns`.
    pub(crate) fn level(&self, tat: u64, now_ns: u64) -> u64 {
        let base = tat.max(now_ns);
        now_ns
            .saturating_add(self.tolerance_ns)
            .saturating_sub(base)
            .checked_div(self.interval_ns)
            .unwrap_or(0)
            .min(self.rate)
    }

    /// `tat` after taking `n` tokens (`n ≤ level`).
    pub(crate) fn take(&self, tat: u64, now_ns: u64, n: u64) -> u64 {
        tat.max(now_ns)
            .saturating_add(n.saturating_mul(self.interval_ns))
    }

    /// `tat` after giving `n` unused tokens back. Never lets the bucket hold more than its
    /// capacity plus what cores still hold (see the module doc of `quota`).
    pub(crate) fn give_back(&self, tat: u64, n: u64) -> u64 {
        tat.saturating_sub(n.saturating_mul(self.interval_ns))
    }

    /// When the next token will be available, for a bucket that has none at `now_ns`.
    pub(crate) fn next_token_ns(&self, tat: u64, now_ns: u64) -> u64 {
        tat.max(now_ns)
            .saturating_add(self.interval_ns)
            .saturating_sub(self.tolerance_ns)
            .max(now_ns)
    }
}

/// `now_ms` on the bucket's clock (ns since the Unix epoch; instants before it read as 0).
pub(crate) fn ns(now_ms: i64) -> u64 {
    u64::try_from(now_ms).unwrap_or(0).saturating_mul(NS_PER_MS)
}

/// Seconds from `now_ns` until `at_ns`, rounded up, at least 1 (`Retry-After`).
pub(crate) fn secs_until(at_ns: u64, now_ns: u64) -> u64 {
    at_ns.saturating_sub(now_ns).div_ceil(NS_PER_SEC).max(1)
}

/// The first whole millisecond at or after `at_ns`.
pub(crate) fn ms_ceil(at_ns: u64) -> i64 {
    i64::try_from(at_ns.div_ceil(NS_PER_MS)).unwrap_or(i64::MAX)
}

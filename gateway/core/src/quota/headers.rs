//! What a keyed response says about the key's quotas (DESIGN §3): Otoroshi's daily and monthly
//! remaining calls, the IETF `RateLimit-*` fields for the tightest quota, and `Retry-After` on a
//! 429. Written straight into the response head, without allocating.

use crate::flow::QuotaExceeded;

/// Calls left today (Otoroshi's name).
pub const DAILY_REMAINING: &str = "Otoroshi-Daily-Calls-Remaining";
/// Calls left this month (Otoroshi's name).
pub const MONTHLY_REMAINING: &str = "Otoroshi-Monthly-Calls-Remaining";
/// The tightest quota's limit.
pub const RATELIMIT_LIMIT: &str = "RateLimit-Limit";
/// What the tightest quota still allows.
pub const RATELIMIT_REMAINING: &str = "RateLimit-Remaining";
/// Seconds until the tightest quota resets.
pub const RATELIMIT_RESET: &str = "RateLimit-Reset";
/// Seconds until a refused call may succeed (429 only).
pub const RETRY_AFTER: &str = "Retry-After";

/// Most bytes [`QuotaState::write_headers`] appends (reserve this to never reallocate).
pub const MAX_HEADERS_LEN: usize = DAILY_REMAINING.len()
    + MONTHLY_REMAINING.len()
    + RATELIMIT_LIMIT.len()
    + RATELIMIT_REMAINING.len()
    + RATELIMIT_RESET.len()
    + RETRY_AFTER.len()
    // ": " + up to 20 digits + CRLF, six times.
    + 6 * 24;

/// One of a key's three quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// `throttlingQuota`, calls per second.
    Throttling,
    /// `dailyQuota`, calls per calendar day.
    Daily,
    /// `monthlyQuota`, calls per calendar month.
    Monthly,
}

impl QuotaKind {
    /// The quota a refusal names.
    #[must_use]
    pub fn of(refusal: QuotaExceeded) -> Self {
        match refusal {
            QuotaExceeded::Throttled { .. } => Self::Throttling,
            QuotaExceeded::Daily { .. } => Self::Daily,
            QuotaExceeded::Monthly { .. } => Self::Monthly,
        }
    }
}

/// A quota's limit and what it still allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Allowance {
    /// The quota (clamped to the counters' capacity).
    pub limit: u64,
    /// Calls it still allows after this one.
    pub remaining: u64,
}

/// The quota closest to refusing, for the `RateLimit-*` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tightest {
    /// Which quota.
    pub kind: QuotaKind,
    /// Its limit.
    pub limit: u64,
    /// What it still allows.
    pub remaining: u64,
    /// Seconds until it resets: the end of the day or month, 1 for throttling (the bucket
    /// refills within a second), the `Retry-After` of a refusal.
    pub reset_secs: u64,
}

/// A key's quotas as one core sees them right after admitting (or refusing) a call.
///
/// Daily and monthly remaining counts are the quota minus the calls admitted, as this node knows
/// them: on one core exact; with several cores, the other cores' calls are seen as of their last
/// report (each core reports and reads back every tick, 50 ms, and at each lease: at most two
/// ticks late), other nodes' as of the ledger's last count.
/// Units leased but not used are not calls and are not subtracted. The throttling count is this
/// core's view of the bucket. Refused quotas read 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    /// Calls per second.
    pub throttling: Allowance,
    /// Calls per calendar day.
    pub daily: Allowance,
    /// Calls per calendar month.
    pub monthly: Allowance,
    /// When the call was admitted or refused, ms since the Unix epoch.
    pub now_ms: i64,
    /// End of the current day.
    pub day_end_ms: i64,
    /// End of the current month.
    pub month_end_ms: i64,
    /// The refusal, on a 429.
    pub refused: Option<QuotaExceeded>,
}

impl QuotaState {
    /// Calls left today (`Otoroshi-Daily-Calls-Remaining`).
    #[must_use]
    pub fn daily_remaining(&self) -> u64 {
        self.daily.remaining
    }

    /// Calls left this month (`Otoroshi-Monthly-Calls-Remaining`).
    #[must_use]
    pub fn monthly_remaining(&self) -> u64 {
        self.monthly.remaining
    }

    /// `Retry-After`, on a refusal.
    #[must_use]
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.refused.map(QuotaExceeded::retry_after_secs)
    }

    fn allowance(&self, kind: QuotaKind) -> Allowance {
        match kind {
            QuotaKind::Throttling => self.throttling,
            QuotaKind::Daily => self.daily,
            QuotaKind::Monthly => self.monthly,
        }
    }

    fn reset_secs(&self, kind: QuotaKind) -> u64 {
        let until = |end_ms: i64| {
            u64::try_from(end_ms.saturating_sub(self.now_ms)).map_or(0, |ms| ms.div_ceil(1000))
        };
        match kind {
            QuotaKind::Throttling => 1,
            QuotaKind::Daily => until(self.day_end_ms),
            QuotaKind::Monthly => until(self.month_end_ms),
        }
    }

    /// The quota with the fewest calls left; on a tie the one that resets last (month, then
    /// day, then throttling), since waiting for it is what frees a call. On a refusal, the
    /// refused quota.
    #[must_use]
    pub fn tightest(&self) -> Tightest {
        if let Some(refusal) = self.refused {
            let kind = QuotaKind::of(refusal);
            return Tightest {
                kind,
                limit: self.allowance(kind).limit,
                remaining: 0,
                reset_secs: refusal.retry_after_secs(),
            };
        }
        let mut kind = QuotaKind::Monthly;
        for candidate in [QuotaKind::Daily, QuotaKind::Throttling] {
            if self.allowance(candidate).remaining < self.allowance(kind).remaining {
                kind = candidate;
            }
        }
        let a = self.allowance(kind);
        Tightest {
            kind,
            limit: a.limit,
            remaining: a.remaining,
            reset_secs: self.reset_secs(kind),
        }
    }

    /// Appends the quota header lines (`Name: value\r\n`) to a response head: the daily and
    /// monthly remaining calls, `RateLimit-Limit`/`-Remaining`/`-Reset` for the
    /// [`tightest`](Self::tightest) quota and, on a refusal, `Retry-After`. Allocates nothing
    /// when `out` has [`MAX_HEADERS_LEN`] bytes of spare capacity.
    pub fn write_headers(&self, out: &mut Vec<u8>) {
        let tightest = self.tightest();
        // Built on the stack and appended at once: one copy into `out`, one capacity check.
        let mut head = Head::new();
        head.header(DAILY_REMAINING, self.daily.remaining);
        head.header(MONTHLY_REMAINING, self.monthly.remaining);
        head.header(RATELIMIT_LIMIT, tightest.limit);
        head.header(RATELIMIT_REMAINING, tightest.remaining);
        head.header(RATELIMIT_RESET, tightest.reset_secs);
        if let Some(secs) = self.retry_after_secs() {
            head.header(RETRY_AFTER, secs);
        }
        out.extend_from_slice(head.as_bytes());
    }
}

/// Header lines being written, on the stack.
struct Head {
    buf: [u8; MAX_HEADERS_LEN],
    len: usize,
}

impl Head {
    fn new() -> Self {
        Self {
            buf: [0; MAX_HEADERS_LEN],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Appends `bytes` (never past the buffer, which holds the longest possible lines).
    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
            self.len = end;
        }
    }

    fn header(&mut self, name: &str, value: u64) {
        self.push(name.as_bytes());
        self.push(b": ");
        self.decimal(value);
        self.push(b"\r\n");
    }

    /// Appends `n` in decimal, two digits at a time from the right.
    fn decimal(&mut self, mut n: u64) {
        let digits = n.checked_ilog10().map_or(1, |log| log as usize + 1);
        let start = self.len;
        let Some(out) = self.buf.get_mut(start..start + digits) else {
            return;
        };
        let mut end = digits;
        while n >= 10 {
            // n % 100 < 100: the cast is exact.
            let at = (n % 100) as usize * 2;
            n /= 100;
            if let (Some(dst), Some(src)) = (
                out.get_mut(end.saturating_sub(2)..end),
                DIGIT_PAIRS.get(at..at + 2),
            ) {
                dst.copy_from_slice(src);
            }
            end = end.saturating_sub(2);
        }
        if end == 1 {
            if let Some(d) = out.first_mut() {
                // n < 10: the cast is exact.
                *d = b'0' + n as u8;
            }
        }
        self.len = start + digits;
    }
}

/// "00" to "99".
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

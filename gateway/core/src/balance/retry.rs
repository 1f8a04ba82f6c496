//! The retry schedule of a backend (`client.retries`, `retry_initial_delay`, `backoff_factor`).

use gateway_model::entity::ClientConfig;

/// When the attempts of one call may start: attempt 0 is the first call, attempts
/// `1..=retries` are retries, each after an exponentially growing delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    retries: u32,
    initial_delay_ms: u64,
    backoff_factor: u64,
    max_delay_ms: u64,
}

impl RetrySchedule {
    /// The schedule of a backend's `client` config. A delay never exceeds `global_timeout` (the
    /// budget of the whole call, retries included), and a `backoff_factor` of 0 counts as 1.
    #[must_use]
    pub fn from_client(client: &ClientConfig) -> Self {
        Self {
            retries: client.retries,
            initial_delay_ms: client.retry_initial_delay,
            backoff_factor: client.backoff_factor.max(1),
            max_delay_ms: client.global_timeout,
        }
    }

    /// How many retries follow a failed first attempt.
    #[must_use]
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The delay (ms) before attempt `attempt`: 0 for the first call (attempt 0),
    /// `retry_initial_delay × backoff_factor^(attempt − 1)` for retry `attempt`, capped at
    /// `global_timeout`; `None` once `attempt` is past `retries` (no attempt left).
    #[must_use]
    pub fn delay_before(&self, attempt: u32) -> Option<u64> {
        match attempt {
            0 => Some(0),
            n if n > self.retries => None,
            n => Some(
                self.initial_delay_ms
                    .saturating_mul(self.backoff_factor.saturating_pow(n - 1))
                    .min(self.max_delay_ms),
            ),
        }
    }
}

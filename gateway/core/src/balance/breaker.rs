//! The per-target circuit breaker, with Otoroshi's semantics (an Akka `CircuitBreaker` per target:
//! `maxFailures = max_errors`, `resetTimeout = sample_interval`).
//!
//! - **Closed**: every call goes through. Each failure adds one to a consecutive-failure count and
//!   each success resets it; the failure that brings the count to `max_errors` opens the breaker.
//!   `max_errors = 0` disables the breaker (Akka trips on `count == maxFailures`, which 0 never
//!   equals).
//! - **Open** for `sample_interval` ms: no call goes through. Calls that were already in flight
//!   when it opened do not change anything when they end.
//! - **Half-open** once `sample_interval` has passed: exactly one trial call goes through (it is
//!   claimed by [`Breaker::on_start`], not by the pick, so a pick that is never started claims
//!   nothing). The trial's success closes the breaker; its failure opens it for another
//!   `sample_interval`; a cancelled trial lets the next call be the trial.
//! - A trial whose end is never reported would keep the target out forever; after `trial_timeout`
//!   ms (the longest a call may last) it counts as lost and another trial may start.
//!
//! Time is the caller's `now_ms`; nothing here reads a clock.

use gateway_model::entity::ClientConfig;

use super::{BreakerState, Outcome};

/// The breaker's thresholds, taken from the backend's `client` config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; 0 disables it.
    pub max_errors: u32,
    /// How long the breaker stays open before a trial (ms).
    pub sample_interval_ms: i64,
    /// After how long an unreported trial counts as lost (ms).
    pub trial_timeout_ms: i64,
}

impl BreakerConfig {
    /// The thresholds of a backend's `client` config (`max_errors`, `sample_interval`; a trial is
    /// lost after the longest of `call_and_stream_timeout`, `global_timeout` and
    /// `sample_interval`).
    #[must_use]
    pub fn from_client(client: &ClientConfig) -> Self {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let sample_interval_ms = ms(client.sample_interval);
        Self {
            max_errors: client.max_errors,
            sample_interval_ms,
            trial_timeout_ms: ms(client.call_and_stream_timeout)
                .max(ms(client.global_timeout))
                .max(sample_interval_ms),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    /// Open until `retry_at`; from then on half-open with no trial in flight.
    Open {
        retry_at: i64,
    },
    /// Half-open with trial number `seq` in flight since `started`.
    Trial {
        started: i64,
        seq: u32,
    },
}

/// What a started call is to the breaker; carried by the call's ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRole {
    /// An ordinary call.
    Normal,
    /// The half-open trial number `seq`.
    Trial(u32),
}

/// A breaker state change, for alerts and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerTransition {
    /// The breaker opened (from closed, or a failed trial re-opened it).
    Opened,
    /// A successful trial closed the breaker.
    Closed,
}

/// One target's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    phase: Phase,
    consecutive_failures: u32,
    trial_seq: u32,
}

impl Breaker {
    /// A closed breaker with no failures.
    #[must_use]
    pub fn new() -> Self {
        Self {
            phase: Phase::Closed,
            consecutive_failures: 0,
            trial_seq: 0,
        }
    }

    /// Consecutive failures reported (reset by a success or when the breaker closes).
    #[must_use]
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Whether a new call may go to this target at `now`.
    #[inline]
    #[must_use]
    pub fn admits(&self, now: i64, cfg: &BreakerConfig) -> bool {
        match self.phase {
            Phase::Closed => true,
            Phase::Open { retry_at } => now >= retry_at,
            Phase::Trial { started, .. } => now >= started.saturating_add(cfg.trial_timeout_ms),
        }
    }

    /// The state as seen at `now`.
    #[must_use]
    pub fn state(&self, now: i64, cfg: &BreakerConfig) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { retry_at } if now < retry_at => BreakerState::Open {
                retry_at_ms: retry_at,
            },
            Phase::Open { .. } => BreakerState::HalfOpen {
                trial_in_flight: false,
            },
            Phase::Trial { .. } => BreakerState::HalfOpen {
                trial_in_flight: !self.admits(now, cfg),
            },
        }
    }

    /// A call to this target starts at `now`: when the breaker is half-open with no trial in
    /// flight, this call becomes the trial.
    pub fn on_start(&mut self, now: i64, cfg: &BreakerConfig) -> CallRole {
        match self.phase {
            Phase::Closed => CallRole::Normal,
            _ if !self.admits(now, cfg) => CallRole::Normal,
            _ => {
                self.trial_seq = self.trial_seq.wrapping_add(1);
                self.phase = Phase::Trial {
                    started: now,
                    seq: self.trial_seq,
                };
                CallRole::Trial(self.trial_seq)
            }
        }
    }

    /// A call that started as `role` ended at `now` with `outcome`.
    pub fn on_finish(
        &mut self,
        role: CallRole,
        outcome: Outcome,
        now: i64,
        cfg: &BreakerConfig,
    ) -> Option<BreakerTransition> {
        match (self.phase, role) {
            (Phase::Trial { seq, .. }, CallRole::Trial(mine)) if seq == mine => match outcome {
                Outcome::Success => {
                    self.phase = Phase::Closed;
                    self.consecutive_failures = 0;
                    Some(BreakerTransition::Closed)
                }
                Outcome::Failure(_) => {
                    self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                    self.phase = Phase::Open {
                        retry_at: now.saturating_add(cfg.sample_interval_ms),
                    };
                    Some(BreakerTransition::Opened)
                }
                Outcome::Cancelled => {
                    // No verdict: the next call may be the trial.
                    self.phase = Phase::Open { retry_at: now };
                    None
                }
            },
            (Phase::Closed, _) => match outcome {
                Outcome::Success => {
                    self.consecutive_failures = 0;
                    None
                }
                Outcome::Failure(_) => {
                    self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                    if cfg.max_errors > 0 && self.consecutive_failures >= cfg.max_errors {
                        self.phase = Phase::Open {
                            retry_at: now.saturating_add(cfg.sample_interval_ms),
                        };
                        Some(BreakerTransition::Opened)
                    } else {
                        None
                    }
                }
                Outcome::Cancelled => None,
            },
            // Open, or half-open and this is not the current trial: a late result changes nothing.
            _ => None,
        }
    }

    /// Back to closed with no failures (a target that health checks bring back starts afresh).
    pub fn reset(&mut self) {
        self.phase = Phase::Closed;
        self.consecutive_failures = 0;
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new()
    }
}

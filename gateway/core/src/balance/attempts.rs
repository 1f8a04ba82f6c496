//! The attempts of one upstream call, as a sans-IO machine: the shell reports how each attempt
//! failed ([`UpstreamError`], classified where the failure is seen, never from a status code),
//! and [`Attempts::failed`] answers the balancer's verdict on the target and what to do next:
//! try again (after a delay from the backend's [`RetrySchedule`], on another target) or answer
//! the client. No clock, no IO: the shell sleeps and picks.
//!
//! The rules:
//! - what may be tried again depends on how far the request got ([`UpstreamError::retry`]):
//!   nothing of it reached the upstream ([`Retry::Always`]: any request), the upstream had closed
//!   a pooled connection before reading it ([`Retry::ReusedOnly`]: sent again on a fresh
//!   connection, not counted), or the upstream may have acted on it ([`Retry::IfReplayable`]:
//!   only an idempotent request whose body, if any, was buffered whole);
//! - counted retries never exceed the schedule's `retries`, each after `delay_before(n)`;
//!   uncounted ones (a stale pooled connection) are bounded by [`MAX_UNCOUNTED`], after which such
//!   a failure counts like any other;
//! - the client's answer is the reply of the last failure.

use super::{FailureKind, Outcome, RetrySchedule};
use crate::respond::ErrorReply;

/// Stale pooled connections replaced in one call before that failure counts as an attempt:
/// bounds the machine whatever the pool holds.
pub const MAX_UNCOUNTED: u32 = 16;

/// Why one attempt at an upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// This core already holds the target's `max_connections` connections.
    AtCapacity,
    /// The TCP connect did not complete within `connection_timeout`.
    ConnectTimeout,
    /// The connect was refused or failed.
    ConnectFailed,
    /// The TLS handshake with the upstream failed; `verification`: its certificate did not
    /// verify.
    Tls {
        /// The certificate (chain, name or validity) was refused.
        verification: bool,
    },
    /// The connection closed before any byte of the response, and before anything of the
    /// request was consumed from the client.
    Closed,
    /// The connection broke while the request or the response travelled.
    Broken,
    /// The response head was malformed.
    BadResponse,
    /// No response head within `call_timeout`.
    Timeout,
}

/// Which requests an attempt that failed this way may be tried again for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing of the request reached the upstream: any request.
    Always,
    /// On a reused pooled connection: sent again at once on a fresh connection, not counted as
    /// an attempt or as the target's failure. On a fresh connection: as [`Retry::IfReplayable`].
    ReusedOnly,
    /// The upstream may have acted on the request: only a replayable one (idempotent method,
    /// body none or buffered whole).
    IfReplayable,
}

impl UpstreamError {
    /// Which requests may be tried again after this failure.
    #[must_use]
    pub fn retry(self) -> Retry {
        match self {
            Self::AtCapacity | Self::ConnectTimeout | Self::ConnectFailed | Self::Tls { .. } => {
                Retry::Always
            }
            Self::Closed => Retry::ReusedOnly,
            Self::Broken | Self::BadResponse | Self::Timeout => Retry::IfReplayable,
        }
    }

    /// The client's answer when this is the last failure.
    #[must_use]
    pub fn reply(self) -> ErrorReply {
        match self {
            Self::AtCapacity => ErrorReply::UNAVAILABLE,
            Self::ConnectTimeout | Self::Timeout => ErrorReply::GATEWAY_TIMEOUT,
            Self::ConnectFailed | Self::Closed | Self::Broken | Self::BadResponse => {
                ErrorReply::BAD_GATEWAY
            }
            Self::Tls { verification: true } => ErrorReply::UPSTREAM_CERTIFICATE,
            Self::Tls {
                verification: false,
            } => ErrorReply::UPSTREAM_TLS,
        }
    }

    /// The target's verdict (its circuit breaker): `reused` says the attempt ran on a pooled
    /// connection. A full connection table and a pooled connection the upstream had closed say
    /// nothing about the target.
    #[must_use]
    pub fn outcome(self, reused: bool) -> Outcome {
        match self {
            Self::AtCapacity => Outcome::Cancelled,
            Self::Closed if reused => Outcome::Cancelled,
            Self::ConnectTimeout | Self::Timeout => Outcome::Failure(FailureKind::Timeout),
            Self::ConnectFailed | Self::Tls { .. } => Outcome::Failure(FailureKind::Connect),
            Self::Closed | Self::Broken | Self::BadResponse => {
                Outcome::Failure(FailureKind::Broken)
            }
        }
    }
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Try again after `delay_ms`: a counted retry (`counted`, on another target when there is
    /// one), or a stale pooled connection replaced at once.
    Retry {
        /// Wait before the next attempt, ms.
        delay_ms: u64,
        /// Whether it is one of the schedule's retries.
        counted: bool,
    },
    /// No attempt left, or the request cannot be replayed: answer this.
    Answer(ErrorReply),
}

/// The attempts of one call. See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Attempts {
    schedule: RetrySchedule,
    replayable: bool,
    retries: u32,
    uncounted: u32,
}

impl Attempts {
    /// The first attempt of a call under `schedule`; `replayable`: the method is idempotent and
    /// the body is none or buffered whole (it can be sent again).
    #[must_use]
    pub fn new(schedule: RetrySchedule, replayable: bool) -> Self {
        Self {
            schedule,
            replayable,
            retries: 0,
            uncounted: 0,
        }
    }

    /// Counted retries made so far.
    #[must_use]
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The attempt on a connection (`reused`: taken from the pool) failed with `error`: the
    /// target's verdict, and what follows.
    pub fn failed(&mut self, error: UpstreamError, reused: bool) -> (Outcome, Step) {
        let outcome = error.outcome(reused);
        let may = match error.retry() {
            Retry::Always => true,
            Retry::ReusedOnly if reused && self.uncounted < MAX_UNCOUNTED => {
                self.uncounted += 1;
                return (
                    outcome,
                    Step::Retry {
                        delay_ms: 0,
                        counted: false,
                    },
                );
            }
            Retry::ReusedOnly | Retry::IfReplayable => self.replayable,
        };
        if !may {
            return (outcome, Step::Answer(error.reply()));
        }
        let next = self.retries.saturating_add(1);
        match self.schedule.delay_before(next) {
            Some(delay_ms) => {
                self.retries = next;
                (
                    outcome,
                    Step::Retry {
                        delay_ms,
                        counted: true,
                    },
                )
            }
            None => (outcome, Step::Answer(error.reply())),
        }
    }
}

#[cfg(test)]
mod tests;

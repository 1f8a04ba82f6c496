//! Target selection for one backend on one core: load-balancing policies, in-flight accounting,
//! per-target circuit breakers, health marks and the retry schedule.
//!
//! A [`Balancer`] is built from a backend once per config snapshot, on each core, and is plain
//! data (`!Sync` is fine: it never leaves its core). It must never do IO, read a clock, lock,
//! use an atomic, allocate or panic while picking: the server passes `now_ms` and reports each
//! call's end, and health checks run in the server, which reports their results with
//! [`Balancer::set_health`].
//!
//! The protocol for one upstream call:
//! 1. [`Balancer::pick`] chooses a target (`None`: nothing is available, answer 503);
//! 2. [`Balancer::start`] right away, before any await, counts the call in flight and, when the
//!    target's breaker is half-open, makes it the one trial call;
//! 3. [`Balancer::finish`] with the [`Ticket`] when the call ends, whatever the end
//!    ([`Outcome::Cancelled`] when there is no verdict on the target, e.g. the client left);
//! 4. on a failure, [`Attempts::failed`] classifies it ([`UpstreamError`]) into the target's
//!    [`Outcome`] and the next [`Step`]: a retry after [`RetrySchedule::delay_before`] on
//!    [`Balancer::next_for_retry`]'s target, or the client's answer.
//!
//! Availability: a target is available when it is healthy (the default until a health check says
//! otherwise) and its breaker admits a call (closed, or half-open with no trial in flight; see
//! [`BreakerState`]). Every policy skips unavailable targets. Backup targets
//! (`backup: true`) obey the same rules and are considered only when no primary target is
//! available; they are then chosen by the same policy. When nothing is available, `pick` returns
//! `None`: an open or unhealthy target is never used as a last resort.
//!
//! Policies (see `policy.rs` for the exact rules): smooth weighted round robin (nginx's), weighted
//! random, power of two random choices and least connections on in-flight calls per weight on this
//! core, weighted rendezvous hashing of the client IP or of a header (stable across cores and
//! nodes; round robin when the hint is missing), and naive failover.
//!
//! State carried across snapshots: [`Balancer::rebuild_from`] matches targets by `hostname:port`
//! (the n-th occurrence of a pair to the n-th) and keeps their breaker, failure count, health,
//! in-flight count and round-robin position; new targets start closed and healthy. Removed targets
//! disappear, but one with calls still in flight is kept aside until they finish, so that tickets
//! taken before a rebuild still settle correctly (and the state comes back if the target does).

mod attempts;
mod breaker;
mod policy;
mod retry;
pub(crate) mod rng;

#[cfg(test)]
mod tests;

use gateway_model::entity::{Backend, Target};
use rustc_hash::FxHashMap;

pub use attempts::{Attempts, MAX_UNCOUNTED, Retry, Step, UpstreamError};
pub use breaker::{BreakerConfig, BreakerTransition};
pub use policy::Policy;
pub use retry::RetrySchedule;

use breaker::{Breaker, CallRole};
use rng::{Rng, stable_hash};

/// Why a balancer cannot be built from a backend (paths as in the backend's JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    /// The backend has no target.
    #[error("targets: expected at least one target")]
    NoTargets,
    /// A target has weight 0.
    #[error("targets[{index}].weight: expected at least 1, got 0")]
    ZeroWeight {
        /// The target's position.
        index: usize,
    },
    /// More targets than a [`TargetId`] can number.
    #[error("targets: expected at most {max} targets, got {got}", max = u32::MAX)]
    TooManyTargets {
        /// How many there are.
        got: usize,
    },
    /// A load-balancing policy Tollgate does not implement.
    #[error("load_balancing.type: unsupported policy")]
    UnsupportedPolicy,
}

/// A target of a balancer: its position in the backend's `targets`, plus an identity that
/// survives snapshots, so a call started before a rebuild still settles on the right target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetId {
    index: u32,
    uid: u32,
}

impl TargetId {
    /// The target's position in the backend's `targets` (in the snapshot that chose it).
    #[must_use]
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// What the hash policies need from the request, looked up by the caller (see
/// [`Balancer::hash_header`]). Borrowed: building one allocates nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PickHint<'a> {
    /// The client's IP address as bytes (4 or 16 octets), for `IpAddressHash`.
    pub client_ip: Option<&'a [u8]>,
    /// The value of the `HeaderHash` header, when the request has it.
    pub header_value: Option<&'a [u8]>,
}

/// How a call failed; every kind counts as one breaker failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection could not be made.
    Connect,
    /// The upstream did not answer in time.
    Timeout,
    /// The connection broke during the call.
    Broken,
    /// A 5xx status, when the caller counts those as failures.
    ServerError,
}

/// How a call ended, as far as the target's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered.
    Success,
    /// The target failed.
    Failure(FailureKind),
    /// No verdict on the target (the client went away, the call was aborted): frees the call's
    /// place and, for a half-open trial, lets the next call be the trial.
    Cancelled,
}

/// A target's circuit breaker as seen at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// No call goes through until `retry_at_ms`.
    Open {
        /// When the breaker becomes half-open.
        retry_at_ms: i64,
    },
    /// One trial call may go through; while it is in flight no other call does.
    HalfOpen {
        /// Whether the trial has started and not ended.
        trial_in_flight: bool,
    },
}

/// One target's state, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetState<'a> {
    /// The target.
    pub id: TargetId,
    /// Its host name.
    pub hostname: &'a str,
    /// Its port.
    pub port: u16,
    /// Its weight.
    pub weight: u32,
    /// Whether it is a backup.
    pub backup: bool,
    /// The last health mark (true until a health check says otherwise).
    pub healthy: bool,
    /// Its breaker.
    pub breaker: BreakerState,
    /// Calls in flight on this core.
    pub in_flight: u32,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// The kind of the last failure reported.
    pub last_failure: Option<FailureKind>,
    /// Whether a pick may choose it now (healthy and admitted by its breaker).
    pub available: bool,
}

/// One started call: hand it back to [`Balancer::finish`] when the call ends. Neither `Copy` nor
/// `Clone`, so a call cannot be finished twice.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "every started call must be finished, or its target stays counted in flight"]
pub struct Ticket {
    id: TargetId,
    /// `None`: the target was unknown at start; finishing changes nothing.
    role: Option<CallRole>,
}

impl Ticket {
    /// The target the call went to.
    #[must_use]
    pub fn target(&self) -> TargetId {
        self.id
    }
}

/// One target's balancing state.
#[derive(Debug, Clone)]
struct Slot {
    uid: u32,
    /// `stable_hash("hostname:port")`, the target's identity for rendezvous hashing.
    key_hash: u64,
    hostname: Box<str>,
    port: u16,
    weight: u32,
    backup: bool,
    healthy: bool,
    in_flight: u32,
    /// Smooth weighted round robin's current weight.
    current: i64,
    breaker: Breaker,
    last_failure: Option<FailureKind>,
}

impl Slot {
    fn new(t: &Target) -> Self {
        Self {
            uid: 0,
            key_hash: stable_hash(format!("{}:{}", t.hostname, t.port).as_bytes()),
            hostname: t.hostname.as_str().into(),
            port: t.port,
            weight: t.weight,
            backup: t.backup,
            healthy: true,
            in_flight: 0,
            current: 0,
            breaker: Breaker::new(),
            last_failure: None,
        }
    }

    /// Takes over the state of `old`, the same target in the previous snapshot.
    fn carry(&mut self, old: &Slot) {
        self.uid = old.uid;
        self.healthy = old.healthy;
        self.in_flight = old.in_flight;
        self.current = old.current;
        self.breaker = old.breaker.clone();
        self.last_failure = old.last_failure;
    }
}

/// Where a target lives: among the snapshot's targets, or aside (removed, calls in flight).
#[derive(Debug, Clone, Copy)]
enum Loc {
    Live(usize),
    Retired(usize),
}

/// Target selection for one backend on one core. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Balancer {
    /// In the backend's `targets` order.
    slots: Vec<Slot>,
    /// Removed targets with calls still in flight.
    retired: Vec<Slot>,
    policy: Policy,
    breaker: BreakerConfig,
    retry: RetrySchedule,
    rng: Rng,
    next_uid: u32,
    has_backup: bool,
    uniform_weights: bool,
}

impl Balancer {
    /// A balancer for `backend`, with its random choices seeded by `seed` (give each core its
    /// own).
    ///
    /// # Errors
    /// No target, a target of weight 0, or an unsupported policy.
    pub fn new(backend: &Backend, seed: u64) -> Result<Self, BalanceError> {
        let mut b = Self::build(backend, Rng::new(seed))?;
        for s in &mut b.slots {
            s.uid = b.next_uid;
            b.next_uid = b.next_uid.wrapping_add(1);
        }
        Ok(b)
    }

    /// The balancer for a new snapshot of the backend, carrying over `old`'s state for the
    /// targets both have (matched by `hostname:port`), and its random stream.
    ///
    /// # Errors
    /// As [`Balancer::new`]; `old` is untouched, so the caller can keep it.
    pub fn rebuild_from(old: &Balancer, backend: &Backend) -> Result<Self, BalanceError> {
        let mut b = Self::build(backend, old.rng.clone())?;
        b.next_uid = old.next_uid;
        // Old targets by key hash, in order, live ones before retired.
        let olds: Vec<&Slot> = old.slots.iter().chain(&old.retired).collect();
        let mut by_key: FxHashMap<u64, Vec<usize>> = FxHashMap::default();
        for (j, s) in olds.iter().enumerate() {
            by_key.entry(s.key_hash).or_default().push(j);
        }
        let mut taken = vec![false; olds.len()];
        for s in &mut b.slots {
            let candidates = by_key.get_mut(&s.key_hash);
            let found = candidates.and_then(|c| {
                let at = c.iter().position(|&j| {
                    olds.get(j)
                        .is_some_and(|o| o.hostname == s.hostname && o.port == s.port)
                })?;
                let j = c.remove(at);
                Some((j, *olds.get(j)?))
            });
            if let Some((j, o)) = found {
                s.carry(o);
                if let Some(t) = taken.get_mut(j) {
                    *t = true;
                }
            } else {
                s.uid = b.next_uid;
                b.next_uid = b.next_uid.wrapping_add(1);
            }
        }
        b.retired = olds
            .iter()
            .zip(&taken)
            .filter(|(s, taken)| !**taken && s.in_flight > 0)
            .map(|(s, _)| (*s).clone())
            .collect();
        Ok(b)
    }

    fn build(backend: &Backend, rng: Rng) -> Result<Self, BalanceError> {
        if backend.targets.is_empty() {
            return Err(BalanceError::NoTargets);
        }
        if u32::try_from(backend.targets.len()).is_err() {
            return Err(BalanceError::TooManyTargets {
                got: backend.targets.len(),
            });
        }
        if let Some(index) = backend.targets.iter().position(|t| t.weight == 0) {
            return Err(BalanceError::ZeroWeight { index });
        }
        let policy =
            Policy::from_model(&backend.load_balancing).ok_or(BalanceError::UnsupportedPolicy)?;
        let slots: Vec<Slot> = backend.targets.iter().map(Slot::new).collect();
        let has_backup = slots.iter().any(|s| s.backup);
        let uniform_weights = slots.windows(2).all(|w| match w {
            [a, b] => a.weight == b.weight,
            _ => true,
        });
        Ok(Self {
            slots,
            retired: Vec::new(),
            policy,
            breaker: BreakerConfig::from_client(&backend.client),
            retry: RetrySchedule::from_client(&backend.client),
            rng,
            next_uid: 0,
            has_backup,
            uniform_weights,
        })
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The header whose value [`PickHint::header_value`] must carry (`HeaderHash` only).
    #[must_use]
    pub fn hash_header(&self) -> Option<&str> {
        match &self.policy {
            Policy::HeaderHash { header_name } => Some(header_name),
            _ => None,
        }
    }

    /// Whether picks use [`PickHint::client_ip`] (`IpAddressHash` only).
    #[must_use]
    pub fn wants_client_ip(&self) -> bool {
        self.policy == Policy::IpAddressHash
    }

    /// The breaker thresholds.
    #[must_use]
    pub fn breaker_config(&self) -> &BreakerConfig {
        &self.breaker
    }

    /// The retry schedule.
    #[must_use]
    pub fn retry(&self) -> &RetrySchedule {
        &self.retry
    }

    /// Chooses a target for a call at `now_ms`, or `None` when no target is available (503).
    /// Allocates nothing; follow it with [`Balancer::start`].
    pub fn pick(&mut self, now_ms: i64, hint: PickHint<'_>) -> Option<TargetId> {
        let i = self.select(now_ms, hint, None)?;
        self.id_at(i)
    }

    /// Chooses a target for the retry of a call that failed on `failed`: another available
    /// target when there is one (a backup rather than `failed`), else `failed` itself if it is
    /// still available, else `None`. Follow it with [`Balancer::start`].
    pub fn next_for_retry(
        &mut self,
        now_ms: i64,
        hint: PickHint<'_>,
        failed: TargetId,
    ) -> Option<TargetId> {
        let i = self
            .select(now_ms, hint, Some(failed.uid))
            .or_else(|| self.select(now_ms, hint, None))?;
        self.id_at(i)
    }

    fn select(&mut self, now: i64, hint: PickHint<'_>, exclude: Option<u32>) -> Option<usize> {
        let cfg = self.breaker;
        let key = match self.policy {
            Policy::IpAddressHash => hint.client_ip.map(stable_hash),
            Policy::HeaderHash { .. } => hint.header_value.map(stable_hash),
            _ => None,
        };
        for backup in [false, true] {
            if backup && !self.has_backup {
                break;
            }
            let ok = move |s: &Slot| {
                s.backup == backup
                    && s.healthy
                    && s.breaker.admits(now, &cfg)
                    && exclude != Some(s.uid)
            };
            let slots = &mut self.slots;
            let chosen = match (&self.policy, key) {
                (Policy::IpAddressHash | Policy::HeaderHash { .. }, Some(key)) => {
                    policy::rendezvous(slots, key, self.uniform_weights, ok)
                }
                (Policy::RoundRobin | Policy::IpAddressHash | Policy::HeaderHash { .. }, _) => {
                    policy::smooth_round_robin(slots, ok)
                }
                (Policy::Random, _) => policy::weighted_random(slots, &mut self.rng, ok),
                (Policy::PowerOfTwoChoices, _) => policy::power_of_two(slots, &mut self.rng, ok),
                (Policy::LeastConnections, _) => policy::least_connections(slots, ok),
                (Policy::NaiveFailover, _) => policy::first(slots, ok),
            };
            if chosen.is_some() {
                return chosen;
            }
        }
        None
    }

    /// The target at position `index` of the backend's `targets`.
    #[must_use]
    pub fn id_at(&self, index: usize) -> Option<TargetId> {
        let s = self.slots.get(index)?;
        Some(TargetId {
            index: u32::try_from(index).ok()?,
            uid: s.uid,
        })
    }

    fn locate(&self, id: TargetId) -> Option<Loc> {
        if self
            .slots
            .get(id.index as usize)
            .is_some_and(|s| s.uid == id.uid)
        {
            return Some(Loc::Live(id.index as usize));
        }
        // Chosen in an earlier snapshot: the target may have moved or been removed.
        if let Some(i) = self.slots.iter().position(|s| s.uid == id.uid) {
            return Some(Loc::Live(i));
        }
        self.retired
            .iter()
            .position(|s| s.uid == id.uid)
            .map(Loc::Retired)
    }

    /// A call to `id` starts at `now_ms`: it counts in flight until [`Balancer::finish`], and it
    /// is the breaker's trial when the breaker is half-open with no trial in flight.
    pub fn start(&mut self, id: TargetId, now_ms: i64) -> Ticket {
        let cfg = self.breaker;
        let role = match self.locate(id) {
            Some(Loc::Live(i)) => self.slots.get_mut(i).map(|s| {
                s.in_flight = s.in_flight.saturating_add(1);
                s.breaker.on_start(now_ms, &cfg)
            }),
            Some(Loc::Retired(i)) => self.retired.get_mut(i).map(|s| {
                s.in_flight = s.in_flight.saturating_add(1);
                CallRole::Normal
            }),
            None => None,
        };
        Ticket { id, role }
    }

    /// The call of `ticket` ended at `now_ms` with `outcome`. Returns the breaker's change of
    /// state, if the outcome caused one (for alerts and metrics).
    pub fn finish(
        &mut self,
        ticket: Ticket,
        outcome: Outcome,
        now_ms: i64,
    ) -> Option<BreakerTransition> {
        let role = ticket.role?;
        let cfg = self.breaker;
        match self.locate(ticket.id)? {
            Loc::Live(i) => {
                let s = self.slots.get_mut(i)?;
                s.in_flight = s.in_flight.saturating_sub(1);
                if let Outcome::Failure(kind) = outcome {
                    s.last_failure = Some(kind);
                }
                s.breaker.on_finish(role, outcome, now_ms, &cfg)
            }
            Loc::Retired(i) => {
                let s = self.retired.get_mut(i)?;
                s.in_flight = s.in_flight.saturating_sub(1);
                if s.in_flight == 0 && i < self.retired.len() {
                    self.retired.swap_remove(i);
                }
                None
            }
        }
    }

    /// Records a health check's verdict on `id`; unhealthy targets are skipped. A target that
    /// becomes healthy again also gets a closed breaker (health checks put it back). Returns
    /// false when `id` is not a target of this snapshot.
    pub fn set_health(&mut self, id: TargetId, healthy: bool) -> bool {
        let Some(Loc::Live(i)) = self.locate(id) else {
            return false;
        };
        let Some(s) = self.slots.get_mut(i) else {
            return false;
        };
        if healthy && !s.healthy {
            s.breaker.reset();
        }
        s.healthy = healthy;
        true
    }

    fn state_of<'a>(&'a self, index: usize, s: &'a Slot, now_ms: i64) -> Option<TargetState<'a>> {
        Some(TargetState {
            id: TargetId {
                index: u32::try_from(index).ok()?,
                uid: s.uid,
            },
            hostname: &s.hostname,
            port: s.port,
            weight: s.weight,
            backup: s.backup,
            healthy: s.healthy,
            breaker: s.breaker.state(now_ms, &self.breaker),
            in_flight: s.in_flight,
            consecutive_failures: s.breaker.consecutive_failures(),
            last_failure: s.last_failure,
            available: s.healthy && s.breaker.admits(now_ms, &self.breaker),
        })
    }

    /// The state of target `id` at `now_ms`; `None` if it is not a target of this snapshot.
    #[must_use]
    pub fn target(&self, id: TargetId, now_ms: i64) -> Option<TargetState<'_>> {
        match self.locate(id)? {
            Loc::Live(i) => self.state_of(i, self.slots.get(i)?, now_ms),
            Loc::Retired(_) => None,
        }
    }

    /// Every target's state at `now_ms`, in the backend's order.
    pub fn targets(&self, now_ms: i64) -> impl Iterator<Item = TargetState<'_>> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(i, s)| self.state_of(i, s, now_ms))
    }

    /// Calls still in flight on targets that the current snapshot removed.
    #[must_use]
    pub fn retired_in_flight(&self) -> u32 {
        self.retired
            .iter()
            .fold(0u32, |n, s| n.saturating_add(s.in_flight))
    }
}

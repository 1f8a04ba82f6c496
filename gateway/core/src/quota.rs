//! Sharded quota counters (DESIGN §3): per-core shards admit calls from leases taken from a
//! per-node pool, so that the request path touches only core-local memory.
//!
//! ```text
//!   core 0: QuotaShard ─┐ lease (one CAS)      NodePool (one per node, Sync)
//!   core 1: QuotaShard ─┼──────────────────►   per key: day (id, taken), month (id, taken),
//!   core N: QuotaShard ─┘ ◄── give back ──     token bucket (GCRA), remote counts, quotas
//! ```
//!
//! - A call needs one unit of each quota: the day's, the month's and a throttling token. A shard
//!   admits it from its leases; when one is empty it takes a new one from the pool with one
//!   compare-and-swap. Lease size: `min(remaining / (4 × cores), quota / (128 × cores))`, at
//!   least 1, never more than what remains. Only admitted calls count: a refused call takes
//!   nothing (leases taken for it are given back at once).
//! - **Exact within a node.** The pool never leases more than the quota minus what it leased
//!   before (minus what other nodes consumed, [`NodePool::set_remote`]), so the calls admitted by
//!   all cores together never exceed `dailyQuota` or `monthlyQuota`, whatever the interleaving.
//! - **Stranded capacity.** Each core holds at most one lease per quota, of at most
//!   `⌊quota / (128 × cores)⌋` units, and takes one only to admit a call at once; so the units
//!   held unused by all cores stay below `quota / 128` (under 1 % of the quota), and are 0 when
//!   leases are single units (`quota < 256 × cores`). They go back to the pool when a core is idle
//!   on the key ([`QuotaShard::reclaim_idle`]), on demand ([`QuotaShard::release_all`]) and when
//!   the snapshot changes; leases of a finished window are void.
//! - **Throttling** is `throttlingQuota` calls per second: a token bucket of that capacity
//!   refilled at that rate (GCRA on a nanosecond clock derived from `now_ms`), whose tokens are
//!   leased the same way. In any interval of `d` ms a node admits at most
//!   `C + ⌊C/128⌋ + C·d/1000` calls for a quota `C`, exactly `C + C·d/1000` (what one bucket
//!   allows) when leases are single tokens (`C < 256 × cores`). Throttling is per node.
//! - **Calendar windows** come from [`crate::window::Calendar`]: a day is 00:00:00.000 to
//!   23:59:59.999 in the configured zone. The first call at or after a window's end rolls it
//!   over: the pool starts the new window at the full quota and leases of the old one are void.
//! - **Across nodes** the pool subtracts the consumption of the other nodes published by the
//!   ledger (`tollgate.totals`). The cluster may then overshoot a quota by at most the calls it
//!   admits during one propagation lag (usage flush + ledger fold + totals delivery): each node
//!   stops at `quota − (what it has seen of the others)`, and what it has not seen yet is at most
//!   the others' admitted rate × the lag.
//! - **Restarts** restore the day's and month's consumption ([`NodePool::restore`]) before serving.
//! - **Huge quotas.** Counters hold up to [`DAILY_CAPACITY`] calls per day, [`MONTHLY_CAPACITY`]
//!   per month and [`THROTTLING_CAPACITY`] per second; larger quotas (`UNLIMITED_QUOTA`,
//!   `u64::MAX`) are enforced as that capacity, which no node can reach: they are unlimited in
//!   effect and still counted. Otoroshi's default, 10,000,000, is an ordinary number.
//!
//! This module must never take a lock, spawn a thread, read a clock or touch a shared atomic per
//! request: atomics are used by the [`NodePool`] only, once per lease (plus once per lease given
//! back), and a refused call re-checks the pool at most every [`REFUSAL_RECHECK_MS`].

mod bucket;
mod headers;
mod pool;
mod shard;

pub use headers::{
    Allowance, DAILY_REMAINING, MAX_HEADERS_LEN, MONTHLY_REMAINING, QuotaKind, QuotaState,
    RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET, RETRY_AFTER, Tightest,
};
pub use pool::{Consumption, DAILY_CAPACITY, MONTHLY_CAPACITY, NodePool, THROTTLING_CAPACITY};
pub use shard::{Held, QuotaShard, ShardAdmission};

/// A core that was refused a call for a daily or monthly quota refuses further calls of that key
/// without asking the pool for this long (never past the window's end); throttled calls wait for
/// the next token instead. Bounds how late a core sees capacity returned to the pool (a reset, a
/// raised quota, another core's released lease).
pub const REFUSAL_RECHECK_MS: i64 = 100;

/// Units of a lease: `min(remaining / (4 × cores), quota / (128 × cores))`, at least 1, at most
/// `remaining` (0 when nothing remains).
pub(crate) fn lease_size(remaining: u64, quota: u64, cores: u64) -> u64 {
    let cores = cores.max(1);
    let by_remaining = remaining / cores.saturating_mul(4);
    let by_quota = quota / cores.saturating_mul(128);
    by_remaining.min(by_quota).max(1).min(remaining)
}

#[cfg(test)]
mod tests;

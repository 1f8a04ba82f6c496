//! The node's pool: per API key, what the day and the month still allow and the throttling token
//! bucket, shared by all cores. Cores take leases from it, one compare-and-swap each.
//!
//! Each key's counters live in a `Slot` (one cache line of atomics) owned through an `Arc`. A
//! config snapshot carries a [`NodePool`] built from the previous one ([`NodePool::rebuild`]):
//! the slots are found again by client id, so consumption survives snapshots, a key added later
//! gets a fresh slot and a key whose quotas change keeps its counts under the new limits. Cores
//! still serving the old snapshot count against the same slots.
//!
//! Day and month counters pack the window id and the units taken (leased) in that window into
//! one `u64`, so that rolling a window over, taking a lease and giving one back are each a single
//! compare-and-swap and can never mix two windows.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::bucket::{self, Bucket};
use super::lease_size;
use crate::apikey::{KeyEntry, KeyStore};
use crate::window::Calendar;

/// Bits of a day counter word that hold the count (the other 27 hold `YYYYMMDD`).
const DAY_BITS: u32 = 37;
/// Bits of a month counter word that hold the count (the other 20 hold `YYYYMM`).
const MONTH_BITS: u32 = 44;

/// Most calls per day a counter holds; a larger `dailyQuota` is enforced as this (≈ 1.4 × 10¹¹,
/// 1.6 million calls per second all day: unlimited in effect).
pub const DAILY_CAPACITY: u64 = (1 << DAY_BITS) - 1;
/// Most calls per month a counter holds; a larger `monthlyQuota` is enforced as this
/// (≈ 1.8 × 10¹³).
pub const MONTHLY_CAPACITY: u64 = (1 << MONTH_BITS) - 1;
/// Highest `throttlingQuota` enforced (calls per second); a larger one is enforced as this.
pub const THROTTLING_CAPACITY: u64 = bucket::MAX_RATE;

/// Pool ids start at 1 so that a new shard (pool id 0) binds on its first call.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// Which calendar window a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    Day,
    Month,
}

impl Period {
    fn bits(self) -> u32 {
        match self {
            Self::Day => DAY_BITS,
            Self::Month => MONTH_BITS,
        }
    }

    fn capacity(self) -> u64 {
        match self {
            Self::Day => DAILY_CAPACITY,
            Self::Month => MONTHLY_CAPACITY,
        }
    }

    fn pack(self, id: u32, count: u64) -> u64 {
        // The id and the clamped count occupy disjoint bits: `^` would do as well as `|`
        // (an equivalent mutant, docs/testing.md).
        (u64::from(id) << self.bits()) | count.min(self.capacity())
    }

    fn unpack(self, word: u64) -> (u32, u64) {
        let id = u32::try_from(word >> self.bits()).unwrap_or(u32::MAX);
        (id, word & self.capacity())
    }
}

/// A key's counters: one cache line of atomics, so that two keys never share a line. They
/// publish no other memory, so every access is `Relaxed`: each compare-and-swap is atomic on
/// its own word, which is all the accounting needs.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Counters {
    /// `(day id, units taken this day)`.
    day: AtomicU64,
    /// `(month id, units taken this month)`.
    month: AtomicU64,
    /// `(day id, calls of other nodes that day)`.
    remote_day: AtomicU64,
    /// `(month id, calls of other nodes that month)`.
    remote_month: AtomicU64,
    /// Throttling bucket: theoretical arrival time, ns since the Unix epoch.
    tat: AtomicU64,
    /// Quotas, clamped to the capacities; rewritten when a snapshot changes them.
    daily: AtomicU64,
    monthly: AtomicU64,
    throttling: AtomicU64,
    /// `(day id, calls this node's cores admitted that day, as reported)`: unlike `day`, not
    /// counting the units cores hold unused in their leases. Cores add theirs each tick, at each
    /// lease and when they give leases back, never per call. What the quota headers and
    /// `consumption` report.
    admitted_day: AtomicU64,
    /// `(month id, calls admitted that month, as reported)`.
    admitted_month: AtomicU64,
}

/// One key's place in the pool.
pub(crate) struct Slot {
    counters: Counters,
    client_id: Box<str>,
    /// The latest quota reset applied (ms since the epoch; `i64::MIN`: none). Read and written
    /// by the admin API and the totals follower only, never per request.
    reset_at: AtomicI64,
}

// Diagnostics only (its mutants are equivalent, docs/testing.md); so is `NodePool`'s.
impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Units leased from a day or month counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The window the units belong to (the pool's, which may be ahead of the core's).
    pub(crate) id: u32,
    /// Units leased.
    pub(crate) units: u64,
    /// What the pool still had after this lease.
    pub(crate) left: u64,
    /// The quota.
    pub(crate) limit: u64,
}

/// Tokens leased from the bucket, or when the next one comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tokens {
    Leased {
        units: u64,
        /// Tokens the bucket still had after this lease.
        left: u64,
    },
    Empty {
        next_ns: u64,
    },
}

impl Slot {
    fn new(key: &KeyEntry) -> Self {
        let slot = Self {
            counters: Counters::default(),
            client_id: key.client_id().into(),
            reset_at: AtomicI64::new(i64::MIN),
        };
        slot.set_quotas(key);
        slot
    }

    fn set_quotas(&self, key: &KeyEntry) {
        let q = key.quotas();
        let c = &self.counters;
        c.daily
            .store(q.daily.min(DAILY_CAPACITY), Ordering::Relaxed);
        c.monthly
            .store(q.monthly.min(MONTHLY_CAPACITY), Ordering::Relaxed);
        c.throttling
            .store(q.throttling.min(THROTTLING_CAPACITY), Ordering::Relaxed);
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    fn word(&self, period: Period) -> &AtomicU64 {
        match period {
            Period::Day => &self.counters.day,
            Period::Month => &self.counters.month,
        }
    }

    fn remote_word(&self, period: Period) -> &AtomicU64 {
        match period {
            Period::Day => &self.counters.remote_day,
            Period::Month => &self.counters.remote_month,
        }
    }

    /// The quota of a period (clamped).
    pub(crate) fn limit(&self, period: Period) -> u64 {
        match period {
            Period::Day => self.counters.daily.load(Ordering::Relaxed),
            Period::Month => self.counters.monthly.load(Ordering::Relaxed),
        }
    }

    /// The throttling bucket of the current quota.
    pub(crate) fn bucket(&self) -> Bucket {
        Bucket::new(self.counters.throttling.load(Ordering::Relaxed))
    }

    fn admitted_word(&self, period: Period) -> &AtomicU64 {
        match period {
            Period::Day => &self.counters.admitted_day,
            Period::Month => &self.counters.admitted_month,
        }
    }

    /// Adds `calls` admitted by a core in window `id` and returns the node's admitted calls of
    /// that window, as reported so far (a count of an older window is replaced; 0 and nothing
    /// recorded when the pool already counts a newer one). With `calls == 0` it only reads.
    pub(crate) fn add_admitted(&self, period: Period, id: u32, calls: u64) -> u64 {
        let word = self.admitted_word(period);
        if calls == 0 {
            let (wid, n) = period.unpack(word.load(Ordering::Relaxed));
            return if wid == id { n } else { 0 };
        }
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let (wid, n) = period.unpack(current);
            let next = match wid.cmp(&id) {
                std::cmp::Ordering::Less => calls,
                std::cmp::Ordering::Equal => n.saturating_add(calls),
                std::cmp::Ordering::Greater => return 0,
            };
            match word.compare_exchange_weak(
                current,
                period.pack(id, next),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next.min(period.capacity()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Other nodes' calls in window `id` (0 when the ledger's count is for another window).
    pub(crate) fn remote(&self, period: Period, id: u32) -> u64 {
        let (rid, n) = period.unpack(self.remote_word(period).load(Ordering::Relaxed));
        if rid == id { n } else { 0 }
    }

    /// Leases units of window `id` (or of the pool's window if it is already ahead). A pool
    /// still on an older window starts `id` at the full quota.
    ///
    /// # Errors
    /// The window the pool is on, when nothing remains in it.
    pub(crate) fn take(&self, period: Period, id: u32, cores: u64) -> Result<Lease, u32> {
        let word = self.word(period);
        let limit = self.limit(period);
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let (pool_id, taken) = period.unpack(current);
            let (id, taken) = if pool_id < id {
                (id, 0)
            } else {
                (pool_id, taken)
            };
            let left = limit
                .saturating_sub(taken)
                .saturating_sub(self.remote(period, id));
            if left == 0 {
                return Err(id);
            }
            let units = lease_size(left, limit, cores);
            let next = period.pack(id, taken.saturating_add(units));
            match word.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    return Ok(Lease {
                        id,
                        units,
                        left: left.saturating_sub(units),
                        limit,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back `units` unused units of window `id`; void (nothing happens) once the pool has
    /// moved to another window.
    pub(crate) fn give_back(&self, period: Period, id: u32, units: u64) {
        if units == 0 {
            return;
        }
        let word = self.word(period);
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let (pool_id, taken) = period.unpack(current);
            if pool_id != id {
                return;
            }
            let next = period.pack(id, taken.saturating_sub(units));
            match word.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Leases tokens from the bucket at `now_ns`.
    pub(crate) fn take_tokens(&self, bucket: &Bucket, now_ns: u64, cores: u64) -> Tokens {
        let tat = &self.counters.tat;
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            let level = bucket.level(current, now_ns);
            if level == 0 {
                return Tokens::Empty {
                    next_ns: bucket.next_token_ns(current, now_ns),
                };
            }
            let units = lease_size(level, bucket.rate(), cores);
            let next = bucket.take(current, now_ns, units);
            match tat.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    return Tokens::Leased {
                        units,
                        left: level.saturating_sub(units),
                    };
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives `units` unused tokens back to the bucket.
    pub(crate) fn give_back_tokens(&self, bucket: &Bucket, units: u64) {
        if units == 0 {
            return;
        }
        // `fetch_update` with a closure that always returns `Some` cannot fail.
        let _ = self
            .counters
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(bucket.give_back(tat, units))
            });
    }

    /// Raises the count of window `id` to at least `consumed` (a newer window than the pool's
    /// replaces it; an older one is ignored).
    fn restore(&self, period: Period, id: u32, consumed: u64) {
        for word in [self.word(period), self.admitted_word(period)] {
            let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                let (pool_id, taken) = period.unpack(current);
                match pool_id.cmp(&id) {
                    std::cmp::Ordering::Less => Some(period.pack(id, consumed)),
                    std::cmp::Ordering::Equal => Some(period.pack(id, taken.max(consumed))),
                    std::cmp::Ordering::Greater => None,
                }
            });
        }
    }

    /// Records other nodes' calls in window `id`, unless a newer window is already recorded.
    fn set_remote(&self, period: Period, id: u32, calls: u64) {
        let _ = self.remote_word(period).fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |current| {
                let (rid, _) = period.unpack(current);
                (rid <= id).then(|| period.pack(id, calls))
            },
        );
    }

    /// `(authorized, current, remaining)` of window `id`: the calls admitted on this node as
    /// reported (within a tick), plus other nodes' calls last reported by the ledger.
    fn usage(&self, period: Period, id: u32) -> (u64, u64, u64) {
        let limit = self.limit(period);
        let current = self
            .add_admitted(period, id, 0)
            .saturating_add(self.remote(period, id));
        (limit, current, limit.saturating_sub(current))
    }

    fn reset(&self) {
        let c = &self.counters;
        // Keep the window ids, zero the counts: an id-only word reads as "nothing taken".
        c.day.fetch_and(!DAILY_CAPACITY, Ordering::Relaxed);
        c.month.fetch_and(!MONTHLY_CAPACITY, Ordering::Relaxed);
        c.remote_day.fetch_and(!DAILY_CAPACITY, Ordering::Relaxed);
        c.remote_month
            .fetch_and(!MONTHLY_CAPACITY, Ordering::Relaxed);
        c.admitted_day.fetch_and(!DAILY_CAPACITY, Ordering::Relaxed);
        c.admitted_month
            .fetch_and(!MONTHLY_CAPACITY, Ordering::Relaxed);
        c.tat.store(0, Ordering::Relaxed);
    }
}

/// A key's consumption as the pool sees it, in Otoroshi's `RemainingQuotas` shape
/// (`GET /api/apikeys/{id}/quotas`).
///
/// `current` counts the calls admitted on this node as the cores reported them (each core
/// reports every tick, 50 ms, and whenever it leases or gives back: units held unused in leases
/// are not calls), plus the other nodes' calls last reported by the ledger. The window is the throttling second: `throttlingCallsPerWindow` is the tokens
/// the bucket lacks (used or leased, not yet refilled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Consumption {
    /// `throttlingQuota`.
    pub authorized_calls_per_window: u64,
    /// Tokens missing from the bucket.
    pub throttling_calls_per_window: u64,
    /// Tokens in the bucket.
    pub remaining_calls_per_window: u64,
    /// `dailyQuota`.
    pub authorized_calls_per_day: u64,
    /// Calls counted today.
    pub current_calls_per_day: u64,
    /// What today still allows.
    pub remaining_calls_per_day: u64,
    /// `monthlyQuota`.
    pub authorized_calls_per_month: u64,
    /// Calls counted this month.
    pub current_calls_per_month: u64,
    /// What this month still allows.
    pub remaining_calls_per_month: u64,
}

/// The quota counters of one node, for one config snapshot's keys (see the module doc): shared
/// by all cores (`Sync`), never locked. Cores lease from it; the server restores it at start,
/// feeds it other nodes' totals, and reads or resets it for the admin API.
pub struct NodePool {
    id: u64,
    cores: u64,
    calendar: Calendar,
    /// By [`KeyEntry::index`].
    slots: Box<[Option<Arc<Slot>>]>,
    by_client: FxHashMap<Box<str>, Arc<Slot>>,
}

impl fmt::Debug for NodePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodePool")
            .field("id", &self.id)
            .field("cores", &self.cores)
            .field("calendar", &self.calendar.name())
            .field("keys", &self.by_client.len())
            .finish()
    }
}

impl NodePool {
    /// The pool of a node with `cores` cores (each with its own [`super::QuotaShard`]) for the
    /// keys of `keys`, counting days and months in `calendar`.
    pub fn new(calendar: Calendar, cores: usize, keys: &KeyStore) -> Self {
        Self::assemble(calendar, cores, keys, None)
    }

    /// The pool of the next snapshot: the same counters for the keys that stay (by client id,
    /// with their new quotas), fresh ones for new keys. Consumption carries over: a raised quota
    /// gives only the difference, a lowered one below what was consumed refuses until the window
    /// ends. Leases granted under the old quota stay valid until used or given back.
    #[must_use]
    pub fn rebuild(&self, keys: &KeyStore) -> Self {
        Self::assemble(self.calendar.clone(), self.cores_usize(), keys, Some(self))
    }

    fn assemble(
        calendar: Calendar,
        cores: usize,
        keys: &KeyStore,
        previous: Option<&Self>,
    ) -> Self {
        let len = keys.iter().map(|k| k.index() + 1).max().unwrap_or(0);
        let mut slots: Vec<Option<Arc<Slot>>> = vec![None; len];
        let mut by_client = FxHashMap::default();
        by_client.reserve(keys.len());
        for key in keys.iter() {
            let slot = match previous.and_then(|p| p.by_client.get(key.client_id())) {
                Some(slot) => {
                    slot.set_quotas(key);
                    Arc::clone(slot)
                }
                None => Arc::new(Slot::new(key)),
            };
            if let Some(place) = slots.get_mut(key.index()) {
                *place = Some(Arc::clone(&slot));
            }
            by_client.insert(key.client_id().into(), slot);
        }
        Self {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            cores: u64::try_from(cores.max(1)).unwrap_or(1),
            calendar,
            slots: slots.into_boxed_slice(),
            by_client,
        }
    }

    fn cores_usize(&self) -> usize {
        usize::try_from(self.cores).unwrap_or(1)
    }

    /// Identifies this pool (unique in the process); shards rebind when it changes.
    #[inline]
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Cores sharing the pool (lease sizes are divided among them).
    #[must_use]
    pub fn cores(&self) -> usize {
        self.cores_usize()
    }

    /// The quota calendar.
    #[must_use]
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Whether the pool has no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    pub(crate) fn slots_len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn cores_u64(&self) -> u64 {
        self.cores
    }

    /// The slot of `key`: by index, checked against the client id, else by client id.
    pub(crate) fn slot_of(&self, key: &KeyEntry) -> Option<&Arc<Slot>> {
        // The index is a fast path only: when the check fails, the lookup by client id finds
        // the same slot (a mutant that always fails the check is equivalent, docs/testing.md).
        match self.slots.get(key.index()) {
            Some(Some(slot)) if slot.client_id() == key.client_id() => Some(slot),
            _ => self.by_client.get(key.client_id()),
        }
    }

    /// Resumes consumption after a restart: this node's calls on day `day_id` (`YYYYMMDD`) and
    /// in month `month_id` (`YYYYMM`), from its journal or the ledger's per-node totals. Call it
    /// before the cores serve; it never lowers a count and ignores windows older than the
    /// pool's. Returns whether the key is known.
    pub fn restore(
        &self,
        client_id: &str,
        day_id: u32,
        day_consumed: u64,
        month_id: u32,
        month_consumed: u64,
    ) -> bool {
        let Some(slot) = self.by_client.get(client_id) else {
            return false;
        };
        slot.restore(Period::Day, day_id, day_consumed);
        slot.restore(Period::Month, month_id, month_consumed);
        true
    }

    /// What the other nodes consumed on day `day_id` and in month `month_id`
    /// (`TotalsRecord::calls_excluding(this node)`): subtracted from what this node may still
    /// admit in those windows, ignored in others. A record for an older window than the one
    /// already recorded is ignored. Returns whether the key is known.
    pub fn set_remote(
        &self,
        client_id: &str,
        day_id: u32,
        day_calls: u64,
        month_id: u32,
        month_calls: u64,
    ) -> bool {
        let Some(slot) = self.by_client.get(client_id) else {
            return false;
        };
        slot.set_remote(Period::Day, day_id, day_calls);
        slot.set_remote(Period::Month, month_id, month_calls);
        true
    }

    /// The key's consumption at `now_ms`, or `None` for an unknown key (or an instant out of the
    /// calendar's range).
    #[must_use]
    pub fn consumption(&self, client_id: &str, now_ms: i64) -> Option<Consumption> {
        let slot = self.by_client.get(client_id)?;
        let day = self.calendar.day(now_ms).ok()?;
        let month = self.calendar.month(now_ms).ok()?;
        let (authorized_day, current_day, remaining_day) = slot.usage(Period::Day, day.id);
        let (authorized_month, current_month, remaining_month) =
            slot.usage(Period::Month, month.id);
        let bucket = slot.bucket();
        let tokens = bucket.level(
            slot.counters.tat.load(Ordering::Relaxed),
            bucket::ns(now_ms),
        );
        Some(Consumption {
            authorized_calls_per_window: bucket.rate(),
            throttling_calls_per_window: bucket.rate().saturating_sub(tokens),
            remaining_calls_per_window: tokens,
            authorized_calls_per_day: authorized_day,
            current_calls_per_day: current_day,
            remaining_calls_per_day: remaining_day,
            authorized_calls_per_month: authorized_month,
            current_calls_per_month: current_month,
            remaining_calls_per_month: remaining_month,
        })
    }

    /// Units of the current day and month taken from the pool: calls admitted plus units held
    /// in cores' leases (the leasing tests observe it).
    #[cfg(test)]
    pub(crate) fn taken(&self, client_id: &str, now_ms: i64) -> Option<(u64, u64)> {
        let slot = self.by_client.get(client_id)?;
        let day = self.calendar.day(now_ms).ok()?;
        let month = self.calendar.month(now_ms).ok()?;
        let taken = |period: Period, id: u32| {
            let (wid, n) = period.unpack(slot.word(period).load(Ordering::Relaxed));
            if wid == id { n } else { 0 }
        };
        Some((taken(Period::Day, day.id), taken(Period::Month, month.id)))
    }

    /// Gives the key its full quotas back for a reset made at `at_ms` (Otoroshi's
    /// `DELETE /api/apikeys/{id}/quotas`, here or on another node): today's and this month's
    /// counts, the other nodes' counts and the throttling bucket. Leases cores hold stay valid
    /// (under 1 % of the quota). A reset not newer than the last one applied changes nothing (a
    /// replayed event never resets twice). Returns whether the key is known.
    pub fn reset(&self, client_id: &str, at_ms: i64) -> bool {
        let Some(slot) = self.by_client.get(client_id) else {
            return false;
        };
        if slot.reset_at.fetch_max(at_ms, Ordering::Relaxed) < at_ms {
            slot.reset();
        }
        true
    }

    /// The latest quota reset applied to the key (ms since the epoch), if any: totals the
    /// ledger folded before it still count the calls before it and must not be applied.
    #[must_use]
    pub fn reset_at(&self, client_id: &str) -> Option<i64> {
        let slot = self.by_client.get(client_id)?;
        Some(slot.reset_at.load(Ordering::Relaxed)).filter(|at| *at != i64::MIN)
    }
}

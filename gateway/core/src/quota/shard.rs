//! A core's quota shard: per active key, the leases this core may admit calls from without
//! asking anyone. Plain data, used by its core only (`!Sync`).
//!
//! The hot path is a few compares and three decrements on core-local memory: the shard's pool
//! is the one it is bound to, the current day has not ended, the key's leases are for the
//! current day and month and none is empty. Anything else (first call of a key, an empty lease,
//! a window roll-over, a new snapshot) goes through the slow path, which talks to the
//! [`NodePool`].

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::REFUSAL_RECHECK_MS;
use super::bucket::{self, Bucket};
use super::headers::{Allowance, QuotaKind, QuotaState};
use super::pool::{
    DAILY_CAPACITY, MONTHLY_CAPACITY, NodePool, Period, Slot, THROTTLING_CAPACITY, Tokens,
};
use crate::apikey::KeyEntry;
use crate::flow::{Admission, QuotaExceeded};
use crate::window::Window;

/// Before the first call: ends at once, so the first call computes the real windows.
const NO_WINDOW: Window = Window {
    start_ms: i64::MIN,
    end_ms: i64::MIN,
    id: 0,
};

/// Day and month ids in one word, for a single compare on the hot path.
fn windows(day_id: u32, month_id: u32) -> u64 {
    (u64::from(day_id) << 32) | u64::from(month_id)
}

/// One key on one core.
struct Entry {
    slot: Arc<Slot>,
    bucket: Bucket,
    /// `windows(day_id, month_id)`: the hot path's validity check.
    windows: u64,
    day_id: u32,
    month_id: u32,
    /// Units left in the leases.
    day: u64,
    month: u64,
    tokens: u64,
    /// What the bucket had left after this core's last lease (for the headers).
    tokens_left: u64,
    /// Limits seen at the last lease.
    day_limit: u64,
    month_limit: u64,
    /// Calls this core admitted in `day_id` / `month_id` and has not reported to the pool yet.
    unreported_day: u64,
    unreported_month: u64,
    /// The node's calls in `day_id` / `month_id` as of this core's last report: every core's
    /// reported admissions plus other nodes' (the ledger's count). With the unreported ones,
    /// what the quota headers subtract from the limit.
    seen_day: u64,
    seen_month: u64,
    /// Last admitted call, for idle reclaim.
    last_used_ms: i64,
    /// A refusal this core repeats without asking the pool, until `refused_until_ms`.
    refused: Option<QuotaKind>,
    refused_until_ms: i64,
}

impl Entry {
    fn new(slot: Arc<Slot>, now_ms: i64) -> Self {
        let bucket = slot.bucket();
        let day_limit = slot.limit(Period::Day);
        let month_limit = slot.limit(Period::Month);
        Self {
            slot,
            bucket,
            windows: 0,
            day_id: 0,
            month_id: 0,
            day: 0,
            month: 0,
            tokens: 0,
            tokens_left: bucket.rate(),
            day_limit,
            month_limit,
            unreported_day: 0,
            unreported_month: 0,
            seen_day: 0,
            seen_month: 0,
            last_used_ms: now_ms,
            refused: None,
            refused_until_ms: i64::MIN,
        }
    }

    /// The state after admitting a call.
    #[inline]
    fn state(&self, now_ms: i64, day: &Window, month: &Window) -> QuotaState {
        QuotaState {
            throttling: Allowance {
                limit: self.bucket.rate(),
                remaining: self
                    .tokens_left
                    .saturating_add(self.tokens)
                    .min(self.bucket.rate()),
            },
            daily: Allowance {
                limit: self.day_limit,
                remaining: self
                    .day_limit
                    .saturating_sub(self.seen_day.saturating_add(self.unreported_day)),
            },
            monthly: Allowance {
                limit: self.month_limit,
                remaining: self
                    .month_limit
                    .saturating_sub(self.seen_month.saturating_add(self.unreported_month)),
            },
            now_ms,
            day_end_ms: day.end_ms,
            month_end_ms: month.end_ms,
            refused: None,
        }
    }

    /// The state of a refused call: the refused quota reads 0.
    fn refusal_state(
        &self,
        refusal: QuotaExceeded,
        now_ms: i64,
        day: &Window,
        month: &Window,
    ) -> QuotaState {
        let mut state = self.state(now_ms, day, month);
        match refusal {
            QuotaExceeded::Throttled { .. } => state.throttling.remaining = 0,
            QuotaExceeded::Daily { .. } => state.daily.remaining = 0,
            QuotaExceeded::Monthly { .. } => state.monthly.remaining = 0,
        }
        state.refused = Some(refusal);
        state
    }

    /// Leases of windows that ended are void (their units are not given back: the pool starts
    /// the new window at the full quota).
    fn void_past_windows(&mut self, day: &Window, month: &Window) {
        if self.day_id < day.id {
            self.report();
            self.day = 0;
            self.day_id = day.id;
            self.seen_day = 0;
        }
        if self.month_id < month.id {
            self.report();
            self.month = 0;
            self.month_id = month.id;
            self.seen_month = 0;
        }
        self.windows = windows(self.day_id, self.month_id);
    }

    /// Reports this core's admitted calls to the pool and reads back the node's count (every
    /// core's reports and other nodes' calls): at each tick, each lease and each give-back.
    fn report(&mut self) {
        let day = self
            .slot
            .add_admitted(Period::Day, self.day_id, self.unreported_day);
        let month = self
            .slot
            .add_admitted(Period::Month, self.month_id, self.unreported_month);
        self.unreported_day = 0;
        self.unreported_month = 0;
        self.seen_day = day.saturating_add(self.slot.remote(Period::Day, self.day_id));
        self.seen_month = month.saturating_add(self.slot.remote(Period::Month, self.month_id));
    }

    /// The refusal this core repeats until `refused_until_ms`.
    fn cached_refusal(&self, now_ms: i64, day: &Window, month: &Window) -> Option<QuotaExceeded> {
        if now_ms >= self.refused_until_ms {
            return None;
        }
        Some(match self.refused? {
            QuotaKind::Monthly => QuotaExceeded::Monthly {
                retry_after_secs: month.remaining_secs_ceil(now_ms).max(1),
            },
            QuotaKind::Daily => QuotaExceeded::Daily {
                retry_after_secs: day.remaining_secs_ceil(now_ms).max(1),
            },
            QuotaKind::Throttling => QuotaExceeded::Throttled {
                retry_after_secs: u64::try_from(self.refused_until_ms.saturating_sub(now_ms))
                    .map_or(1, |ms| ms.div_ceil(1000).max(1)),
            },
        })
    }

    /// Fills the empty leases from the pool, the longest window first. If one quota refuses,
    /// the leases taken for this call go back at once: a refused call takes nothing.
    fn refill(
        &mut self,
        cores: u64,
        now_ms: i64,
        day: &Window,
        month: &Window,
    ) -> Result<(), QuotaExceeded> {
        let mut month_lease = None;
        if self.month == 0 {
            match self.slot.take(Period::Month, self.month_id, cores) {
                Ok(lease) => month_lease = Some(lease),
                Err(_) => {
                    self.refuse(
                        QuotaKind::Monthly,
                        now_ms.saturating_add(REFUSAL_RECHECK_MS).min(month.end_ms),
                    );
                    return Err(QuotaExceeded::Monthly {
                        retry_after_secs: month.remaining_secs_ceil(now_ms).max(1),
                    });
                }
            }
        }
        let mut day_lease = None;
        if self.day == 0 {
            match self.slot.take(Period::Day, self.day_id, cores) {
                Ok(lease) => day_lease = Some(lease),
                Err(_) => {
                    if let Some(l) = month_lease {
                        self.slot.give_back(Period::Month, l.id, l.units);
                    }
                    self.refuse(
                        QuotaKind::Daily,
                        now_ms.saturating_add(REFUSAL_RECHECK_MS).min(day.end_ms),
                    );
                    return Err(QuotaExceeded::Daily {
                        retry_after_secs: day.remaining_secs_ceil(now_ms).max(1),
                    });
                }
            }
        }
        if self.tokens == 0 {
            let now_ns = bucket::ns(now_ms);
            match self.slot.take_tokens(&self.bucket, now_ns, cores) {
                Tokens::Leased { units, left } => {
                    self.tokens = units;
                    self.tokens_left = left;
                }
                Tokens::Empty { next_ns } => {
                    if let Some(l) = month_lease {
                        self.slot.give_back(Period::Month, l.id, l.units);
                    }
                    if let Some(l) = day_lease {
                        self.slot.give_back(Period::Day, l.id, l.units);
                    }
                    self.refuse(QuotaKind::Throttling, bucket::ms_ceil(next_ns));
                    return Err(QuotaExceeded::Throttled {
                        retry_after_secs: bucket::secs_until(next_ns, now_ns),
                    });
                }
            }
        }
        // Calls counted so far belong to the windows they were admitted in.
        self.report();
        if let Some(l) = month_lease {
            self.month = l.units;
            self.month_id = l.id;
            self.month_limit = l.limit;
        }
        if let Some(l) = day_lease {
            self.day = l.units;
            self.day_id = l.id;
            self.day_limit = l.limit;
        }
        self.windows = windows(self.day_id, self.month_id);
        self.refused = None;
        // Reads back the node's counts in the leases' windows (0 in one the pool has not counted).
        self.report();
        Ok(())
    }

    fn refuse(&mut self, kind: QuotaKind, until_ms: i64) {
        self.refused = Some(kind);
        self.refused_until_ms = until_ms;
    }

    /// Gives every unused unit back to the pool (units of a window the pool has left are void).
    fn release(&mut self) {
        self.report();
        self.slot.give_back(Period::Day, self.day_id, self.day);
        self.slot
            .give_back(Period::Month, self.month_id, self.month);
        self.slot.give_back_tokens(&self.bucket, self.tokens);
        self.day = 0;
        self.month = 0;
        self.tokens = 0;
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("client_id", &self.slot.client_id())
            .field("day_id", &self.day_id)
            .field("month_id", &self.month_id)
            .field("day", &self.day)
            .field("month", &self.month)
            .field("tokens", &self.tokens)
            .field("last_used_ms", &self.last_used_ms)
            .finish_non_exhaustive()
    }
}

/// Units a shard holds in leases, summed over its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Held {
    /// Day units (of the shard's current day).
    pub day: u64,
    /// Month units (of the shard's current month).
    pub month: u64,
    /// Throttling tokens.
    pub tokens: u64,
    /// Keys with an entry.
    pub keys: usize,
}

/// One core's quota state: leases per active key, bound to one [`NodePool`] at a time.
///
/// `!Sync` on purpose: a shard belongs to its core. It rebinds (giving every lease back) when
/// it is handed a pool of another snapshot.
pub struct QuotaShard {
    pool_id: u64,
    cores: u64,
    day: Window,
    month: Window,
    windows: u64,
    /// By [`KeyEntry::index`] in the bound pool.
    entries: Vec<Option<Entry>>,
    /// Indexes of the `Some` entries.
    active: Vec<usize>,
    last_refusal: Option<QuotaState>,
    _core_local: PhantomData<Cell<()>>,
}

impl fmt::Debug for QuotaShard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaShard")
            .field("pool_id", &self.pool_id)
            .field("day", &self.day)
            .field("month", &self.month)
            .field("active", &self.active.len())
            .finish_non_exhaustive()
    }
}

impl Default for QuotaShard {
    fn default() -> Self {
        Self::new()
    }
}

impl QuotaShard {
    /// An empty shard; it binds to the pool of its first call.
    #[must_use]
    pub fn new() -> Self {
        Self {
            pool_id: 0,
            cores: 1,
            day: NO_WINDOW,
            month: NO_WINDOW,
            windows: 0,
            entries: Vec::new(),
            active: Vec::new(),
            last_refusal: None,
            _core_local: PhantomData,
        }
    }

    /// Admits one call of `key` at `now_ms` if its throttling, daily and monthly quotas all allow
    /// it, taking one unit of each (from this core's leases, refilled from `pool` when empty).
    /// `key` must come from the key store `pool` was built from; a key the pool does not know is
    /// admitted without counting.
    ///
    /// # Errors
    /// The exhausted quota with its `Retry-After`: the month's or the day's end, or the next
    /// throttling token (at least 1 s). A refused call consumes nothing;
    /// [`last_refusal`](Self::last_refusal) has its state for the 429's headers.
    #[inline]
    pub fn admit(
        &mut self,
        pool: &NodePool,
        key: &KeyEntry,
        now_ms: i64,
    ) -> Result<QuotaState, QuotaExceeded> {
        if pool.id() == self.pool_id && now_ms < self.day.end_ms {
            if let Some(Some(e)) = self.entries.get_mut(key.index()) {
                if e.windows == self.windows && e.day.min(e.month).min(e.tokens) > 0 {
                    e.day -= 1;
                    e.month -= 1;
                    e.tokens -= 1;
                    e.unreported_day += 1;
                    e.unreported_month += 1;
                    e.last_used_ms = now_ms;
                    return Ok(e.state(now_ms, &self.day, &self.month));
                }
            }
        }
        self.admit_slow(pool, key, now_ms)
    }

    #[inline(never)]
    fn admit_slow(
        &mut self,
        pool: &NodePool,
        key: &KeyEntry,
        now_ms: i64,
    ) -> Result<QuotaState, QuotaExceeded> {
        if pool.id() != self.pool_id {
            self.bind(pool);
        }
        if now_ms >= self.day.end_ms {
            self.roll(pool, now_ms)?;
        }
        let (day, month, cores) = (self.day, self.month, self.cores);
        let Some(e) = self.entry(pool, key, now_ms) else {
            return Ok(unmetered(now_ms, &day, &month));
        };
        e.void_past_windows(&day, &month);
        if e.day.min(e.month).min(e.tokens) == 0 {
            let refusal = match e.cached_refusal(now_ms, &day, &month) {
                Some(refusal) => Err(refusal),
                None => e.refill(cores, now_ms, &day, &month),
            };
            if let Err(refusal) = refusal {
                let state = e.refusal_state(refusal, now_ms, &day, &month);
                self.last_refusal = Some(state);
                return Err(refusal);
            }
        }
        e.day -= 1;
        e.month -= 1;
        e.tokens -= 1;
        e.unreported_day += 1;
        e.unreported_month += 1;
        e.last_used_ms = now_ms;
        Ok(e.state(now_ms, &day, &month))
    }

    /// The state of the last refused call (for the 429's headers).
    #[must_use]
    pub fn last_refusal(&self) -> Option<&QuotaState> {
        self.last_refusal.as_ref()
    }

    /// Binds to `pool`: every lease of the previous pool goes back, entries start afresh.
    fn bind(&mut self, pool: &NodePool) {
        self.release_all();
        self.entries.clear();
        self.entries.resize_with(pool.slots_len(), || None);
        self.pool_id = pool.id();
        self.cores = pool.cores_u64();
    }

    /// Moves to the windows containing `now_ms` (never backwards: a clock that steps back keeps
    /// the current windows).
    fn roll(&mut self, pool: &NodePool, now_ms: i64) -> Result<(), QuotaExceeded> {
        // An instant outside years -9999..=9999 cannot be counted: refuse rather than guess.
        let out_of_range = QuotaExceeded::Daily {
            retry_after_secs: 1,
        };
        let day = pool.calendar().day(now_ms).map_err(|_| out_of_range)?;
        if now_ms >= self.month.end_ms {
            self.month = pool.calendar().month(now_ms).map_err(|_| out_of_range)?;
        }
        self.day = day;
        self.windows = windows(self.day.id, self.month.id);
        Ok(())
    }

    /// The entry of `key`, created on its first call.
    fn entry(&mut self, pool: &NodePool, key: &KeyEntry, now_ms: i64) -> Option<&mut Entry> {
        let index = key.index();
        let place = self.entries.get_mut(index)?;
        if place.is_none() {
            let slot = Arc::clone(pool.slot_of(key)?);
            *place = Some(Entry::new(slot, now_ms));
            self.active.push(index);
        }
        place.as_mut()
    }

    /// Gives back the leases of keys this core has not admitted a call for in `idle_ms` (their
    /// entries are dropped; the next call re-leases). Call it from the core's timer, e.g. every
    /// 100 ms with `idle_ms` = 1000: capacity stranded on idle cores then returns within about
    /// a second. Returns the number of keys reclaimed.
    pub fn reclaim_idle(&mut self, now_ms: i64, idle_ms: i64) -> usize {
        let before = self.active.len();
        let entries = &mut self.entries;
        self.active.retain(|&index| {
            let Some(place) = entries.get_mut(index) else {
                return false;
            };
            let idle = place
                .as_ref()
                .is_none_or(|e| now_ms.saturating_sub(e.last_used_ms) >= idle_ms);
            if idle {
                if let Some(mut e) = place.take() {
                    e.release();
                }
                false
            } else {
                true
            }
        });
        before - self.active.len()
    }

    /// Reports the admitted calls of every key this core admitted since the last report, and
    /// reads back the node's counts for them (one atomic operation per such key and period; keys
    /// without calls on this core cost nothing): the core's ticker calls it, so that quota
    /// headers and `consumption` see the other cores' calls within two ticks. A key idle on
    /// this core keeps its last view until its entry is reclaimed (1 s) or it leases again.
    pub fn report_admitted(&mut self) {
        for &index in &self.active {
            if let Some(Some(e)) = self.entries.get_mut(index) {
                if e.unreported_day > 0 || e.unreported_month > 0 {
                    e.report();
                }
            }
        }
    }

    /// Gives every lease back to the pool and forgets every key (shutdown, tests, a snapshot
    /// swap, which also happens on its own at the first call with a new pool).
    pub fn release_all(&mut self) {
        for index in self.active.drain(..) {
            if let Some(mut e) = self.entries.get_mut(index).and_then(Option::take) {
                e.release();
            }
        }
    }

    /// Units this core holds unused in leases of the current windows (a metric; the stranded
    /// capacity of the module doc).
    #[must_use]
    pub fn held(&self) -> Held {
        let mut held = Held::default();
        for e in self.entries.iter().flatten() {
            held.keys += 1;
            if e.day_id == self.day.id {
                held.day = held.day.saturating_add(e.day);
            }
            if e.month_id == self.month.id {
                held.month = held.month.saturating_add(e.month);
            }
            held.tokens = held.tokens.saturating_add(e.tokens);
        }
        held
    }
}

/// The state of a key the pool does not know (admitted without counting).
fn unmetered(now_ms: i64, day: &Window, month: &Window) -> QuotaState {
    let full = |limit| Allowance {
        limit,
        remaining: limit,
    };
    QuotaState {
        throttling: full(THROTTLING_CAPACITY),
        daily: full(DAILY_CAPACITY),
        monthly: full(MONTHLY_CAPACITY),
        now_ms,
        day_end_ms: day.end_ms,
        month_end_ms: month.end_ms,
        refused: None,
    }
}

/// The flow's quota phase on a core: its shard and the snapshot's pool. Keeps the state of the
/// last call (admitted or refused) for the response headers.
#[derive(Debug)]
pub struct ShardAdmission<'a> {
    shard: &'a mut QuotaShard,
    pool: &'a NodePool,
    state: Option<QuotaState>,
}

impl<'a> ShardAdmission<'a> {
    /// The quota phase of one request.
    pub fn new(shard: &'a mut QuotaShard, pool: &'a NodePool) -> Self {
        Self {
            shard,
            pool,
            state: None,
        }
    }

    /// The state of the last call, for [`QuotaState::write_headers`]; `None` before any call
    /// (keyless routes).
    #[must_use]
    pub fn state(&self) -> Option<&QuotaState> {
        self.state.as_ref()
    }
}

impl Admission for ShardAdmission<'_> {
    fn admit(&mut self, key: &KeyEntry, now_ms: i64) -> Result<(), QuotaExceeded> {
        match self.shard.admit(self.pool, key, now_ms) {
            Ok(state) => {
                self.state = Some(state);
                Ok(())
            }
            Err(refusal) => {
                self.state = self.shard.last_refusal().copied();
                Err(refusal)
            }
        }
    }
}

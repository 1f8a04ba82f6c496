//! Usage accounting: one [`UsageAccumulator`] per core merges every keyed call into per-identity
//! counters and flushes them as [`UsageBatch`]es, one per partition (DESIGN §4, docs/events.md).
//!
//! ```text
//! request path:  record(identity, outcome, bytes, status)   a hash, a probe, a few adds
//!                         │
//!                         ▼  every 100 ms, or 4096 identities pending, or forced
//! flush(now, force, send) ─► one UsageBatch per partition with pending entries (chunked at
//!                            4096 entries), sequence +1 per batch handed over
//! ```
//!
//! Sans-IO: no clock (`now_ms` is an argument of `flush`), no channel (the caller's `send`
//! closure hands a batch over, typically with a non-blocking `try_send`), no thread.
//!
//! A batch is built from the slots' counters without taking them: only when `send` accepts it
//! are the counters zeroed and the sequence advanced. A batch that could not be handed over is
//! thus never lost and never leaves a hole in the sequence: its counters stay in the slots, keep
//! merging with new calls, and go out with the next flush under the same sequence number. The
//! memory a stuck sink costs is bounded by the number of identities, not by time.
//!
//! An identity seen before costs no allocation: slots keep their owned strings and are found by
//! hash with borrowed `&str`s. Slots idle for `idle_evict_ms` (yesterday's days, retired keys)
//! are swept away during flushes.
//!
//! **Surviving a crash.** Counters in a `Vec` die with the process. An accumulator can be given a
//! [`UsageMirror`] (the server's is a `MAP_SHARED` file per core): every identity gets a stable
//! record number in it, and every call is added to that record's *cumulative* counters as it
//! is counted here. The mirror never needs to know what was flushed: at the next start, a
//! record's cumulative counters minus what the journal holds of that identity's batches from
//! `first_sequence` on is exactly what never reached the journal. An admitted call is counted
//! by [`UsageAccumulator::admit`] before its response is written, and its bytes and status by
//! [`UsageAccumulator::complete`] after: a call a client saw answered is always counted.

mod ident;
mod index;
mod reason;

#[cfg(test)]
mod tests;

use gateway_model::event::{
    RejectReason, UsageBatch, UsageCounters, UsageEntry, is_calendar_day, partition_for,
};

pub use gateway_model::event::UsageIdentity;
pub use reason::{key_reject_reason, reject_reason};

use ident::{hash_identity, is_identity};
use index::IdentityIndex;

/// Flush at least this often (ms) while entries are pending.
pub const DEFAULT_FLUSH_INTERVAL_MS: i64 = 100;
/// Flush as soon as this many identities are pending.
pub const DEFAULT_MAX_PENDING: usize = 4096;
/// No batch holds more entries than this; a partition with more pending is sent in chunks.
pub const DEFAULT_MAX_BATCH_ENTRIES: usize = 4096;
/// Forget an identity after this long without a call (ms).
pub const DEFAULT_IDLE_EVICT_MS: i64 = 10 * 60 * 1000;

/// Where an accumulator's counts also go, so that a crash of the process does not lose them
/// (module docs). Called on the request path: implementations must not allocate, lock or make
/// a syscall in [`count`](Self::count).
pub trait UsageMirror {
    /// Identity `entry` (its counters are ignored) is now held in record `record`, in partition
    /// `partition`; its batches have sequences `first_sequence` and later. Returns false when
    /// the record cannot be kept (no room): the identity is then counted in memory only.
    fn open(
        &mut self,
        record: u32,
        entry: &UsageEntry,
        partition: u32,
        first_sequence: u64,
    ) -> bool;
    /// Adds to record `record`'s cumulative counters: one call with `outcome` (`None`: only
    /// bytes and status), `bytes_in`, `bytes_out` and `status` (0: none yet).
    fn count(
        &mut self,
        record: u32,
        outcome: Option<Outcome>,
        bytes_in: u64,
        bytes_out: u64,
        status: u16,
    );
    /// Record `record`'s identity was forgotten (idle, fully flushed): the record is free.
    fn close(&mut self, record: u32);
}

/// No mirror: counts live in memory only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMirror;

impl UsageMirror for NoMirror {
    fn open(&mut self, _: u32, _: &UsageEntry, _: u32, _: u64) -> bool {
        false
    }
    fn count(&mut self, _: u32, _: Option<Outcome>, _: u64, _: u64, _: u16) {}
    fn close(&mut self, _: u32) {}
}

/// An admitted call counted by [`UsageAccumulator::admit`], to be completed with its bytes and
/// status by [`UsageAccumulator::complete`]. Plain data; valid until the next sweep of idle
/// identities (the accumulator then finds the identity again by its strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    slot: u32,
    sweeps: u32,
}

/// What happened to a call made with an identified API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Admitted (it consumed quota), whatever the upstream answered.
    Admitted,
    /// Refused by the gateway, for this reason.
    Rejected(RejectReason),
}

impl Outcome {
    /// The outcome of a flow refusal; `None` when there is no key to charge
    /// ([`reject_reason`]).
    #[must_use]
    pub fn of_rejection(rejection: crate::flow::Rejection) -> Option<Self> {
        reject_reason(rejection).map(Self::Rejected)
    }
}

/// Who produces the batches and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageConfig {
    /// Gateway node id.
    pub node: String,
    /// Boot epoch of the node (grows with every start).
    pub epoch: u64,
    /// This accumulator's core.
    pub core: u16,
    /// Partition count of the usage stream (0 is read as 1).
    pub partitions: u32,
    /// Flush at least this often while entries are pending, ms.
    pub flush_interval_ms: i64,
    /// Flush as soon as this many identities are pending.
    pub max_pending: usize,
    /// Most entries in one batch (at least 1).
    pub max_batch_entries: usize,
    /// Forget an identity after this long without a call, ms.
    pub idle_evict_ms: i64,
}

impl UsageConfig {
    /// The defaults (100 ms, 4096 pending, 4096 per batch, 10 minutes idle) for one core.
    #[must_use]
    pub fn new(node: impl Into<String>, epoch: u64, core: u16, partitions: u32) -> Self {
        Self {
            node: node.into(),
            epoch,
            core,
            partitions,
            flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
            max_pending: DEFAULT_MAX_PENDING,
            max_batch_entries: DEFAULT_MAX_BATCH_ENTRIES,
            idle_evict_ms: DEFAULT_IDLE_EVICT_MS,
        }
    }
}

/// What one call to [`UsageAccumulator::flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Whether a flush pass ran (it was due or forced).
    pub ran: bool,
    /// Batches handed over.
    pub batches: u64,
    /// Entries in those batches.
    pub entries: u64,
    /// Whether `send` refused a batch: its entries stay pending for the next pass.
    pub blocked: bool,
}

/// Running totals of an accumulator, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageStats {
    /// Calls recorded.
    pub calls: u64,
    /// Calls refused because their identity was invalid (`day` not a date, `month != day / 100`).
    pub invalid: u64,
    /// Batches handed over.
    pub batches: u64,
    /// Entries in those batches.
    pub entries: u64,
    /// Batches `send` refused (kept, and sent later).
    pub refused: u64,
    /// Identities forgotten after being idle.
    pub evicted: u64,
    /// Identities the mirror had no room for (counted in memory only).
    pub unmirrored: u64,
}

/// One identity: its owned strings and its pending delta.
#[derive(Debug)]
struct Slot {
    hash: u64,
    partition: u32,
    /// In its partition's pending list.
    pending: bool,
    /// `now_ms` of the last flush that sent it (or of its creation).
    last_active_ms: i64,
    /// Its record in the mirror, if it has one.
    record: Option<u32>,
    entry: UsageEntry,
}

/// One partition's producer state.
#[derive(Debug)]
struct Partition {
    /// Slots with a delta to send.
    pending: Vec<u32>,
    /// Sequence of the next batch handed over.
    next_sequence: u64,
    /// Start of the current accumulation window.
    window_start_ms: i64,
}

/// A core's usage counters, flushed as batches (see the module docs). `!Sync` plain data.
#[derive(Debug)]
pub struct UsageAccumulator<M: UsageMirror = NoMirror> {
    config: UsageConfig,
    mirror: M,
    /// Mirror records freed by sweeps, reused first.
    free_records: Vec<u32>,
    /// The next never-used mirror record.
    next_record: u32,
    /// Sweeps so far (a [`Counted`] from before a sweep is looked up again).
    sweeps: u32,
    slots: Vec<Slot>,
    index: IdentityIndex,
    partitions: Vec<Partition>,
    pending: usize,
    /// `now_ms` of the last flush pass.
    last_flush_ms: i64,
    /// After a refusal, no unforced pass before this.
    retry_at_ms: i64,
    last_sweep_ms: i64,
    /// The partition the next pass starts with (the one that was refused), so that a sink with
    /// room for a few batches at a time still serves every partition in turn.
    cursor: usize,
    stats: UsageStats,
}

impl UsageAccumulator {
    /// An empty accumulator whose first windows start at `now_ms`, without a mirror.
    #[must_use]
    pub fn new(config: UsageConfig, now_ms: i64) -> Self {
        Self::with_mirror(config, now_ms, NoMirror)
    }
}

impl<M: UsageMirror> UsageAccumulator<M> {
    /// An empty accumulator whose first windows start at `now_ms`, counting into `mirror` too.
    #[must_use]
    pub fn with_mirror(mut config: UsageConfig, now_ms: i64, mirror: M) -> Self {
        config.partitions = config.partitions.max(1);
        config.max_batch_entries = config.max_batch_entries.max(1);
        config.max_pending = config.max_pending.max(1);
        let partitions = (0..config.partitions)
            .map(|_| Partition {
                pending: Vec::new(),
                next_sequence: 0,
                window_start_ms: now_ms,
            })
            .collect();
        Self {
            config,
            mirror,
            free_records: Vec::new(),
            next_record: 0,
            sweeps: 0,
            slots: Vec::new(),
            index: IdentityIndex::new(),
            partitions,
            pending: 0,
            last_flush_ms: now_ms,
            retry_at_ms: now_ms,
            last_sweep_ms: now_ms,
            cursor: 0,
            stats: UsageStats::default(),
        }
    }

    /// The configuration (with `partitions`, `max_pending` and `max_batch_entries` at least 1).
    #[must_use]
    pub fn config(&self) -> &UsageConfig {
        &self.config
    }

    /// Counts one call. Returns false, counting nothing but [`UsageStats::invalid`], when the
    /// identity is invalid (`day` not a calendar date or `month != day / 100`): such an entry
    /// would make the whole batch unencodable.
    ///
    /// Allocates only for an identity it has not seen (or has forgotten).
    pub fn record(
        &mut self,
        identity: UsageIdentity<'_>,
        outcome: Outcome,
        bytes_in: u64,
        bytes_out: u64,
        status: u16,
    ) -> bool {
        let Some(slot) = self.slot_of(identity) else {
            return false;
        };
        self.add(slot, Some(outcome), bytes_in, bytes_out, status);
        self.stats.calls += 1;
        true
    }

    /// Counts an admitted call now, before its response is written (its bytes and status come
    /// with [`complete`](Self::complete)); `None` when the identity is invalid, as in
    /// [`record`](Self::record).
    pub fn admit(&mut self, identity: UsageIdentity<'_>) -> Option<Counted> {
        let slot = self.slot_of(identity)?;
        self.add(slot, Some(Outcome::Admitted), 0, 0, 0);
        self.stats.calls += 1;
        Some(Counted {
            slot,
            sweeps: self.sweeps,
        })
    }

    /// Adds the bytes and status of a call [`admit`](Self::admit) counted. `identity` must be
    /// the one it was admitted with: it finds the slot again after a sweep.
    pub fn complete(
        &mut self,
        counted: Counted,
        identity: UsageIdentity<'_>,
        bytes_in: u64,
        bytes_out: u64,
        status: u16,
    ) {
        let slot = if counted.sweeps == self.sweeps {
            Some(counted.slot)
        } else {
            self.slot_of(identity)
        };
        if let Some(slot) = slot {
            self.add(slot, None, bytes_in, bytes_out, status);
        }
    }

    /// The slot of `identity`, created when new; `None` (counted as invalid) for an invalid one.
    #[inline]
    fn slot_of(&mut self, identity: UsageIdentity<'_>) -> Option<u32> {
        let hash = hash_identity(&identity);
        let slots = &self.slots;
        let found = self.index.find(hash, |slot| {
            slots
                .get(slot as usize)
                .is_some_and(|s| is_identity(&s.entry, &identity))
        });
        match found {
            Some(slot) => Some(slot),
            None => {
                let inserted = self.insert(hash, identity);
                if inserted.is_none() {
                    self.stats.invalid += 1;
                }
                inserted
            }
        }
    }

    /// Adds one call (`outcome`; `None`: bytes and status only) to `slot` and its mirror record.
    #[inline]
    fn add(
        &mut self,
        slot: u32,
        outcome: Option<Outcome>,
        bytes_in: u64,
        bytes_out: u64,
        status: u16,
    ) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if let Some(record) = s.record {
            self.mirror
                .count(record, outcome, bytes_in, bytes_out, status);
        }
        let counters = &mut s.entry.counters;
        match outcome {
            Some(Outcome::Admitted) => counters.admitted = counters.admitted.saturating_add(1),
            Some(Outcome::Rejected(reason)) => counters.rejected.add(reason, 1),
            None => {}
        }
        counters.bytes_in = counters.bytes_in.saturating_add(bytes_in);
        counters.bytes_out = counters.bytes_out.saturating_add(bytes_out);
        if status != 0 {
            counters.status.record(status);
        }
        if !s.pending {
            s.pending = true;
            if let Some(p) = self.partitions.get_mut(s.partition as usize) {
                p.pending.push(slot);
                self.pending += 1;
            }
        }
    }

    fn insert(&mut self, hash: u64, identity: UsageIdentity<'_>) -> Option<u32> {
        if identity.month != identity.day / 100 || !is_calendar_day(identity.day) {
            return None;
        }
        let slot = u32::try_from(self.slots.len()).ok()?;
        let partition = partition_for(identity.apikey, self.config.partitions);
        let entry = UsageEntry {
            apikey: identity.apikey.to_owned(),
            api: identity.api.map(str::to_owned),
            route: identity.route.to_owned(),
            consumer: identity.consumer.map(str::to_owned),
            subscription: identity.subscription.map(str::to_owned),
            day: identity.day,
            month: identity.month,
            counters: UsageCounters::default(),
        };
        let first_sequence = self
            .partitions
            .get(partition as usize)
            .map_or(0, |p| p.next_sequence);
        let record = self.free_records.pop().unwrap_or(self.next_record);
        let record = if self.mirror.open(record, &entry, partition, first_sequence) {
            if record == self.next_record {
                self.next_record += 1;
            }
            Some(record)
        } else {
            if record != self.next_record {
                self.free_records.push(record);
            }
            self.stats.unmirrored += 1;
            None
        };
        self.slots.push(Slot {
            hash,
            partition,
            pending: false,
            last_active_ms: self.last_flush_ms,
            record,
            entry,
        });
        self.index.insert(hash, slot);
        Some(slot)
    }

    /// The mirror.
    #[must_use]
    pub fn mirror(&self) -> &M {
        &self.mirror
    }

    /// The mirror, to update what it keeps beside the counters (the server's file stamps the
    /// time of its last tick).
    pub fn mirror_mut(&mut self) -> &mut M {
        &mut self.mirror
    }

    /// Identities with a delta waiting for a flush.
    #[must_use]
    pub fn pending_entries(&self) -> usize {
        self.pending
    }

    /// Identities known (pending or not).
    #[must_use]
    pub fn identities(&self) -> usize {
        self.index.len()
    }

    /// Running totals.
    #[must_use]
    pub fn stats(&self) -> UsageStats {
        self.stats
    }

    /// Whether an unforced [`flush`](Self::flush) at `now_ms` would run: entries are pending,
    /// no refusal is being backed off from, and the interval has passed or too many are pending.
    #[must_use]
    pub fn flush_due(&self, now_ms: i64) -> bool {
        self.pending > 0
            && now_ms >= self.retry_at_ms
            && (now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_interval_ms
                || self.pending >= self.config.max_pending)
    }

    /// If due (or `force`d), hands every pending entry to `send` as batches, one or more per
    /// partition, in sequence order per partition.
    ///
    /// `send` returns the batch it could not take (a full channel): the pass stops there, and
    /// that batch's entries stay pending, merged with later calls, for the next pass, which comes
    /// no sooner than one flush interval later unless forced. Nothing is lost and no sequence
    /// number is skipped: a sequence is used up only by a batch `send` accepted.
    pub fn flush<F>(&mut self, now_ms: i64, force: bool, mut send: F) -> FlushReport
    where
        F: FnMut(UsageBatch) -> Result<(), UsageBatch>,
    {
        let mut report = FlushReport::default();
        if !(force || self.flush_due(now_ms)) {
            return report;
        }
        report.ran = true;
        self.last_flush_ms = now_ms;
        let count = self.partitions.len();
        let first = self.cursor.min(count.saturating_sub(1));
        for p in (first..count).chain(0..first) {
            if !self.flush_partition(p, now_ms, &mut send, &mut report) {
                self.cursor = p;
                self.retry_at_ms = now_ms.saturating_add(self.config.flush_interval_ms);
                report.blocked = true;
                self.stats.refused += 1;
                break;
            }
        }
        if !report.blocked {
            self.cursor = 0;
            self.retry_at_ms = now_ms;
        }
        self.stats.batches += report.batches;
        self.stats.entries += report.entries;
        if now_ms.saturating_sub(self.last_sweep_ms) >= self.config.idle_evict_ms / 4 {
            self.sweep(now_ms);
        }
        report
    }

    /// [`flush`](Self::flush) with a `send` that never refuses: appends the batches to `out`.
    pub fn flush_into(
        &mut self,
        now_ms: i64,
        force: bool,
        out: &mut Vec<UsageBatch>,
    ) -> FlushReport {
        self.flush(now_ms, force, |batch| {
            out.push(batch);
            Ok(())
        })
    }

    /// Sends partition `p`'s pending entries; false if `send` refused a batch.
    fn flush_partition<F>(
        &mut self,
        p: usize,
        now_ms: i64,
        send: &mut F,
        report: &mut FlushReport,
    ) -> bool
    where
        F: FnMut(UsageBatch) -> Result<(), UsageBatch>,
    {
        let Some(part) = self.partitions.get_mut(p) else {
            return true;
        };
        let window_end_ms = now_ms.max(part.window_start_ms);
        loop {
            let from = part
                .pending
                .len()
                .saturating_sub(self.config.max_batch_entries);
            let Some(chunk) = part.pending.get(from..).filter(|c| !c.is_empty()) else {
                part.window_start_ms = window_end_ms;
                return true;
            };
            let entries: Vec<UsageEntry> = chunk
                .iter()
                .filter_map(|&slot| self.slots.get(slot as usize))
                .filter(|s| !s.entry.counters.is_zero())
                .map(|s| s.entry.clone())
                .collect();
            let sent = entries.len();
            if sent > 0 {
                let batch = UsageBatch {
                    node: self.config.node.clone(),
                    epoch: self.config.epoch,
                    core: self.config.core,
                    partition: u32::try_from(p).unwrap_or(0),
                    partitions: self.config.partitions,
                    sequence: part.next_sequence,
                    window_start_ms: part.window_start_ms,
                    window_end_ms,
                    entries,
                };
                if send(batch).is_err() {
                    return false;
                }
                part.next_sequence += 1;
                report.batches += 1;
                report.entries += sent as u64;
            }
            for &slot in chunk {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    s.entry.counters = UsageCounters::default();
                    s.pending = false;
                    s.last_active_ms = now_ms;
                }
            }
            self.pending = self.pending.saturating_sub(chunk.len());
            part.pending.truncate(from);
        }
    }

    /// Forgets identities with nothing pending and no call for `idle_evict_ms`.
    fn sweep(&mut self, now_ms: i64) {
        self.last_sweep_ms = now_ms;
        let idle = self.config.idle_evict_ms;
        let keep = |s: &Slot| s.pending || now_ms.saturating_sub(s.last_active_ms) < idle;
        if self.slots.iter().all(keep) {
            return;
        }
        let mut remap = vec![u32::MAX; self.slots.len()];
        let mut next = 0u32;
        for (old, slot) in self.slots.iter().enumerate() {
            if keep(slot) {
                if let Some(r) = remap.get_mut(old) {
                    *r = next;
                }
                next += 1;
            }
        }
        let before = self.slots.len();
        for slot in self.slots.iter().filter(|s| !keep(s)) {
            if let Some(record) = slot.record {
                self.mirror.close(record);
                self.free_records.push(record);
            }
        }
        self.sweeps = self.sweeps.wrapping_add(1);
        self.slots.retain(keep);
        self.stats.evicted += (before - self.slots.len()) as u64;
        for part in &mut self.partitions {
            for slot in &mut part.pending {
                *slot = remap.get(*slot as usize).copied().unwrap_or(u32::MAX);
            }
        }
        self.index.rebuild(
            self.slots.len(),
            self.slots.iter().zip(0u32..).map(|(s, i)| (s.hash, i)),
        );
    }
}

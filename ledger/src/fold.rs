//! The in-memory fold: records in, a [`Delta`] out, no IO.
//!
//! A source hands every record with its position to [`Fold::apply_usage`] or
//! [`Fold::apply_entity`]; the fold validates it whole (a record that does not decode is
//! quarantined, never applied half-way), deduplicates usage batches by producer sequence and
//! accumulates the counters of every entry into rows keyed by the entry's identity, its
//! 15-minute UTC bucket and its lateness. [`Fold::take_delta`] hands the accumulated chunk to
//! [`crate::store::Store::commit`], which writes it, the producers' sequence state and the
//! positions in one transaction.
//!
//! The producer state and positions live here in memory and are the truth of the store plus
//! the uncommitted chunk: after a failed commit the fold must be rebuilt from the store
//! ([`Fold::resume`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use gateway_model::event::{ArchivedUsageBatch, EntityEvent, EventError, UsageDecoder};
use serde::Serialize;

use crate::calendar::{Calendar, bucket_of};

mod rows;

pub use rows::{RowRef, Rows};

/// How many sequences a producer may have applied above its first missing one before the
/// ledger gives up waiting for the hole (and counts it `abandoned`): bounds the state kept per
/// producer when a log starts mid-stream.
pub const MAX_OUT_OF_ORDER: usize = 4096;

/// Lateness of a row: on time for its day.
pub const ON_TIME: u8 = 0;
/// Lateness of a row: after its day's grace, within its month's.
pub const LATE_FOR_DAY: u8 = 1;
/// Lateness of a row: after its month's grace too.
pub const LATE_FOR_MONTH: u8 = 2;

/// A usage producer: `(node, epoch, core, partition)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProducerKey {
    /// Gateway node id.
    pub node: String,
    /// Boot epoch.
    pub epoch: u64,
    /// Core.
    pub core: u16,
    /// Partition.
    pub partition: u32,
}

/// Which sequences of a producer were applied: every one below `next`, and those in `above`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProducerState {
    /// Every sequence below this was applied (or given up on).
    pub next: u64,
    /// Sequences above `next` applied out of order (a hole below them is open).
    pub above: BTreeSet<u64>,
}

/// What a sequence is to a producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceClass {
    /// Applied already: a replay.
    Duplicate,
    /// The next one after the highest applied.
    InOrder,
    /// Past the next expected one: `missing` sequences are skipped over.
    Gap {
        /// How many sequences this jumps over.
        missing: u64,
    },
    /// Below the highest applied, not applied yet: fills a hole.
    Fill,
}

impl ProducerState {
    /// The sequence after the highest applied.
    #[must_use]
    pub fn frontier(&self) -> u64 {
        self.above
            .last()
            .map_or(self.next, |last| last.saturating_add(1))
    }

    /// Sequences below the frontier not applied yet.
    #[must_use]
    pub fn missing(&self) -> u64 {
        let above = u64::try_from(self.above.len()).unwrap_or(u64::MAX);
        self.frontier()
            .saturating_sub(self.next)
            .saturating_sub(above)
    }

    /// Classifies `sequence`.
    #[must_use]
    pub fn classify(&self, sequence: u64) -> SequenceClass {
        let frontier = self.frontier();
        // `sequence == frontier` is taken before `sequence > frontier`: `>=` there would be an
        // equivalent mutant.
        if sequence < self.next || self.above.contains(&sequence) {
            SequenceClass::Duplicate
        } else if sequence == frontier {
            SequenceClass::InOrder
        } else if sequence > frontier {
            SequenceClass::Gap {
                missing: sequence - frontier,
            }
        } else {
            SequenceClass::Fill
        }
    }

    /// Records `sequence` as applied; returns how many missing sequences were given up on to
    /// keep the state bounded ([`MAX_OUT_OF_ORDER`]).
    pub fn mark(&mut self, sequence: u64) -> u64 {
        if sequence == self.next {
            self.next = self.next.saturating_add(1);
        } else {
            self.above.insert(sequence);
        }
        let mut abandoned = 0;
        if self.above.len() > MAX_OUT_OF_ORDER {
            if let Some(&first) = self.above.first() {
                abandoned = self.missing_below(first);
                self.next = first;
            }
        }
        while self.above.remove(&self.next) {
            self.next = self.next.saturating_add(1);
        }
        abandoned
    }

    fn missing_below(&self, bound: u64) -> u64 {
        let applied = self.above.range(..bound).count();
        bound
            .saturating_sub(self.next)
            .saturating_sub(u64::try_from(applied).unwrap_or(u64::MAX))
    }
}

/// Where a source stands: the next position to read, and the highest window end seen (the
/// event-time clock that decides lateness, so that a replay judges lateness exactly as the
/// first pass did).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SourcePos {
    /// Next record offset to apply.
    pub next: u64,
    /// Highest `window_end_ms` of the usage applied from this source.
    pub high_water_ms: i64,
}

/// A record that could not be applied, kept whole with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarantined {
    /// Source name (`journal:usage`, `kafka:tollgate.usage:3`).
    pub source: String,
    /// Position in the source.
    pub offset: u64,
    /// Error class: `checksum` (journal frame damaged) or an `EventError` kind.
    pub kind: String,
    /// The error message.
    pub error: String,
    /// The raw bytes.
    #[serde(skip)]
    pub payload: Vec<u8>,
}

/// One entity event to add to the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    /// Kind name (`apikey`...).
    pub kind: &'static str,
    /// Entity id.
    pub entity_id: String,
    /// Entity version.
    pub version: u64,
    /// The event's JSON as received (secrets sealed by the producer).
    pub json: Vec<u8>,
}

/// A quota reset of an API key folded from its entity event (`_rotation.quotasResetAt`).
///
/// The totals the ledger publishes for the key count only the calls after it: the store keeps
/// a baseline per (period, node) of the calls before the reset, and the totals are the counts
/// minus the baseline. Calls count as before the reset when their usage batch ended at or
/// before `at` (the gateways' own rule), or when the ledger had folded them before it folded
/// the reset (the entity event's lag behind the usage at the ledger: such calls were made
/// after the reset but are counted before it, so the cluster may admit that many more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaReset {
    /// API key id (client id).
    pub apikey: String,
    /// The reset, ms since the epoch.
    pub at: i64,
    /// The key's admitted calls in this chunk before the reset was folded:
    /// `(period 0 = day | 1 = month, day or month id, node) → calls`.
    pub chunk_calls: BTreeMap<(u8, u32, String), u64>,
}

/// Counters of what the fold did; persisted with every commit, served as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FoldStats {
    /// Records read (usage and entities, quarantined included).
    pub records: u64,
    /// Usage batches applied.
    pub batches: u64,
    /// Usage entries applied.
    pub entries: u64,
    /// Batches skipped as replays (sequence already applied).
    pub duplicates: u64,
    /// Batches applied past a hole in their producer's sequence.
    pub gaps: u64,
    /// Sequences those gaps skipped over.
    pub missing_opened: u64,
    /// Batches that arrived late and filled a hole.
    pub filled: u64,
    /// Missing sequences given up on ([`MAX_OUT_OF_ORDER`]).
    pub abandoned: u64,
    /// Entries applied after their day's grace (adjustments).
    pub late_entries: u64,
    /// Records quarantined (undecodable, or damaged journal frames).
    pub quarantined: u64,
    /// Journal frames skipped for a bad checksum (also counted in `quarantined`).
    pub corrupt_skipped: u64,
    /// Entity events folded into the history.
    pub entity_events: u64,
    /// Journal records lost to retention before the ledger read them.
    pub offset_gone: u64,
    /// Records at a position already applied (seen again after a seek), skipped.
    pub replayed_records: u64,
}

impl FoldStats {
    /// `(name, value)` of every counter, in a fixed order.
    #[must_use]
    pub fn fields(&self) -> [(&'static str, u64); 14] {
        [
            ("records", self.records),
            ("batches", self.batches),
            ("entries", self.entries),
            ("duplicates", self.duplicates),
            ("gaps", self.gaps),
            ("missing_opened", self.missing_opened),
            ("filled", self.filled),
            ("abandoned", self.abandoned),
            ("late_entries", self.late_entries),
            ("quarantined", self.quarantined),
            ("corrupt_skipped", self.corrupt_skipped),
            ("entity_events", self.entity_events),
            ("offset_gone", self.offset_gone),
            ("replayed_records", self.replayed_records),
        ]
    }

    /// Sets the counter `name` (unknown names are ignored: a newer store's counter).
    pub fn set(&mut self, name: &str, value: u64) {
        let slot = match name {
            "records" => &mut self.records,
            "batches" => &mut self.batches,
            "entries" => &mut self.entries,
            "duplicates" => &mut self.duplicates,
            "gaps" => &mut self.gaps,
            "missing_opened" => &mut self.missing_opened,
            "filled" => &mut self.filled,
            "abandoned" => &mut self.abandoned,
            "late_entries" => &mut self.late_entries,
            "quarantined" => &mut self.quarantined,
            "corrupt_skipped" => &mut self.corrupt_skipped,
            "entity_events" => &mut self.entity_events,
            "offset_gone" => &mut self.offset_gone,
            "replayed_records" => &mut self.replayed_records,
            _ => return,
        };
        *slot = value;
    }

    /// Adds every counter of `other`.
    pub fn add(&mut self, other: &Self) {
        for (name, value) in other.fields() {
            let current = self
                .fields()
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, v)| *v);
            self.set(name, current.saturating_add(value));
        }
    }
}

/// The chunk accumulated since the last commit.
#[derive(Debug, Default)]
pub struct Delta {
    /// Usage rows.
    pub rows: Rows,
    /// Producers whose state changed.
    pub producers: BTreeSet<ProducerKey>,
    /// Sources whose position changed.
    pub sources: BTreeSet<String>,
    /// Records to quarantine.
    pub quarantine: Vec<Quarantined>,
    /// Entity events to add to the history.
    pub history: Vec<HistoryRecord>,
    /// Quota resets folded in this chunk, in order.
    pub resets: Vec<QuotaReset>,
    /// Calls after the chunk's last reset of their key that count as before it (their batch
    /// ended at or before the reset): `(period, apikey, day or month id, node) → calls`.
    pub baseline: BTreeMap<(u8, String, u32, String), u64>,
    /// What the chunk did.
    pub stats: FoldStats,
}

impl Delta {
    /// Whether the chunk holds anything to commit (a position move counts).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.producers.is_empty()
    }
}

/// What [`Fold::apply_usage`] did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied: the batch's entries are in the chunk.
    Applied,
    /// A replay of an applied batch (by sequence): nothing changed but the position.
    Duplicate,
    /// Already applied at this position: skipped.
    Replayed,
    /// Undecodable: quarantined.
    Quarantined,
}

#[derive(Debug, Clone, Copy)]
struct Period {
    /// Local day (`YYYYMMDD`) of the bucket.
    day: u32,
    /// End of that local day, ms.
    day_end: i64,
    /// End of its local month, ms.
    month_end: i64,
}

/// The fold. See the module docs.
#[derive(Debug)]
pub struct Fold {
    decoder: UsageDecoder,
    state: State,
}

#[derive(Debug)]
struct State {
    calendar: Calendar,
    grace_ms: i64,
    producers: HashMap<ProducerKey, ProducerState>,
    sources: BTreeMap<String, SourcePos>,
    periods: HashMap<i64, Period, BuildHasherDefault<IdHasher>>,
    /// The latest quota reset of every key that has one (ms since the epoch).
    resets: HashMap<String, i64>,
    delta: Delta,
}

impl Fold {
    /// An empty fold (a fresh store) with days and months in `calendar` and a grace of
    /// `grace_ms` after each period.
    #[must_use]
    pub fn new(calendar: Calendar, grace_ms: i64) -> Self {
        Self::resume(calendar, grace_ms, HashMap::new(), BTreeMap::new())
    }

    /// A fold continuing from the producers' state and positions stored by the last commit.
    #[must_use]
    pub fn resume(
        calendar: Calendar,
        grace_ms: i64,
        producers: HashMap<ProducerKey, ProducerState>,
        sources: BTreeMap<String, SourcePos>,
    ) -> Self {
        Self {
            decoder: UsageDecoder::new(),
            state: State {
                calendar,
                grace_ms,
                producers,
                sources,
                periods: HashMap::default(),
                resets: HashMap::new(),
                delta: Delta::default(),
            },
        }
    }

    /// The same fold knowing the keys' latest quota resets (as stored by the last commit).
    #[must_use]
    pub fn with_resets(mut self, resets: HashMap<String, i64>) -> Self {
        self.state.resets = resets;
        self
    }

    /// Where `source` stands (the position to read from next).
    #[must_use]
    pub fn position(&self, source: &str) -> Option<SourcePos> {
        self.state.sources.get(source).copied()
    }

    /// Every source's position.
    #[must_use]
    pub fn positions(&self) -> &BTreeMap<String, SourcePos> {
        &self.state.sources
    }

    /// Every producer's sequence state.
    #[must_use]
    pub fn producers(&self) -> &HashMap<ProducerKey, ProducerState> {
        &self.state.producers
    }

    /// The chunk so far.
    #[must_use]
    pub fn delta(&self) -> &Delta {
        &self.state.delta
    }

    /// Hands over the chunk accumulated since the last call.
    pub fn take_delta(&mut self) -> Delta {
        std::mem::take(&mut self.state.delta)
    }

    /// Folds the usage record at `offset` of `source`: decodes it with validation, skips it if
    /// its position or its producer sequence was applied already, else adds its entries.
    pub fn apply_usage(&mut self, source: &str, offset: u64, bytes: &[u8]) -> Outcome {
        let Some(high_water) = self.state.advance(source, offset) else {
            return Outcome::Replayed;
        };
        match self.decoder.access(bytes) {
            Ok(batch) => self.state.fold_batch(source, batch, high_water),
            Err(error) => {
                self.state.quarantine(source, offset, &error, bytes);
                Outcome::Quarantined
            }
        }
    }

    /// Folds an already validated batch (for callers holding a view, e.g. benches) without
    /// a position.
    pub fn apply_batch(&mut self, source: &str, batch: &ArchivedUsageBatch) -> Outcome {
        let high_water = self
            .state
            .sources
            .get(source)
            .map_or(i64::MIN, |p| p.high_water_ms);
        self.state.fold_batch(source, batch, high_water)
    }

    /// Folds the entity event at `offset` of `source` into the history.
    pub fn apply_entity(&mut self, source: &str, offset: u64, bytes: &[u8]) -> Outcome {
        if self.state.advance(source, offset).is_none() {
            return Outcome::Replayed;
        }
        match EntityEvent::decode(bytes) {
            Ok(event) => {
                if event.kind == gateway_model::event::EntityKind::ApiKey {
                    if let Some(at) = quotas_reset_at(&event.entity) {
                        self.state.reset(&event.entity_id, at);
                    }
                }
                self.state.delta.history.push(HistoryRecord {
                    kind: event.kind.as_str(),
                    entity_id: event.entity_id,
                    version: event.version,
                    json: bytes.to_vec(),
                });
                self.state.delta.stats.entity_events += 1;
                Outcome::Applied
            }
            Err(error) => {
                self.state.quarantine(source, offset, &error, bytes);
                Outcome::Quarantined
            }
        }
    }

    /// Records a journal frame damaged at checksum level (`raw` as `skip_corrupt` returned
    /// it) at `offset`; the source continues at `next_offset`.
    pub fn apply_corrupt(
        &mut self,
        source: &str,
        offset: u64,
        next_offset: u64,
        error: &str,
        raw: &[u8],
    ) {
        self.state.advance(source, offset);
        self.state.set_next(source, next_offset);
        let stats = &mut self.state.delta.stats;
        stats.corrupt_skipped += 1;
        stats.quarantined += 1;
        self.state.delta.quarantine.push(Quarantined {
            source: source.to_owned(),
            offset,
            kind: "checksum".to_owned(),
            error: error.to_owned(),
            payload: raw.to_vec(),
        });
    }

    /// Records that the records `requested..available` of `source` are gone (retention) and
    /// moves on to `available`.
    pub fn apply_gone(&mut self, source: &str, requested: u64, available: u64) {
        self.state.delta.stats.offset_gone += available.saturating_sub(requested);
        self.state.set_next(source, available);
    }
}

/// `_rotation.quotasResetAt` of an API key's log JSON (where the gateways keep it).
fn quotas_reset_at(entity: &serde_json::Value) -> Option<i64> {
    entity.get("_rotation")?.get("quotasResetAt")?.as_i64()
}

impl State {
    /// Folds a quota reset of `apikey` at `at` (ms), if it is newer than the one it has.
    fn reset(&mut self, apikey: &str, at: i64) {
        if self.resets.get(apikey).is_some_and(|known| *known >= at) {
            return;
        }
        self.resets.insert(apikey.to_owned(), at);
        // Everything of the key in the chunk so far counts as before it (the baseline the
        // commit writes is the store's totals plus these); calls put aside as "before the
        // previous reset" are among them.
        let mut chunk_calls = BTreeMap::new();
        for (row, words) in self.delta.rows.iter() {
            if row.apikey != apikey || words[0] == 0 {
                continue;
            }
            for (period, id) in [(0u8, row.day), (1u8, row.month)] {
                let slot = chunk_calls
                    .entry((period, id, row.node.to_owned()))
                    .or_insert(0u64);
                *slot = slot.saturating_add(words[0]);
            }
        }
        self.delta
            .baseline
            .retain(|(_, key, _, _), _| key != apikey);
        self.delta.resets.push(QuotaReset {
            apikey: apikey.to_owned(),
            at,
            chunk_calls,
        });
    }

    /// Moves `source` past `offset`; returns its high-water mark before, or `None` if the
    /// position was applied already.
    fn advance(&mut self, source: &str, offset: u64) -> Option<i64> {
        let pos = match self.sources.get_mut(source) {
            Some(pos) => pos,
            None => self.sources.entry(source.to_owned()).or_default(),
        };
        if offset < pos.next {
            self.delta.stats.replayed_records += 1;
            return None;
        }
        pos.next = offset.saturating_add(1);
        let high_water = pos.high_water_ms;
        if !self.delta.sources.contains(source) {
            self.delta.sources.insert(source.to_owned());
        }
        self.delta.stats.records += 1;
        Some(high_water)
    }

    fn set_next(&mut self, source: &str, next: u64) {
        let pos = self.sources.entry(source.to_owned()).or_default();
        pos.next = pos.next.max(next);
        self.delta.sources.insert(source.to_owned());
    }

    fn quarantine(&mut self, source: &str, offset: u64, error: &EventError, bytes: &[u8]) {
        tracing::warn!(source, offset, %error, "record quarantined");
        self.delta.stats.quarantined += 1;
        self.delta.quarantine.push(Quarantined {
            source: source.to_owned(),
            offset,
            kind: error.kind().to_string(),
            error: error.to_string(),
            payload: bytes.to_vec(),
        });
    }

    fn period(&mut self, bucket: i64) -> Period {
        if let Some(period) = self.periods.get(&bucket) {
            return *period;
        }
        let date = self.calendar.date_of(bucket);
        let period = Period {
            day: date.map_or(0, crate::calendar::day_id),
            day_end: date
                .and_then(|d| self.calendar.end_of_day(d))
                .unwrap_or(i64::MAX),
            month_end: date
                .and_then(|d| self.calendar.end_of_month(d))
                .unwrap_or(i64::MAX),
        };
        if self.periods.len() > 100_000 {
            self.periods.clear();
        }
        self.periods.insert(bucket, period);
        period
    }

    fn level(&self, period: Period, high_water: i64) -> u8 {
        if high_water >= period.month_end.saturating_add(self.grace_ms) {
            LATE_FOR_MONTH
        } else if high_water >= period.day_end.saturating_add(self.grace_ms) {
            LATE_FOR_DAY
        } else {
            ON_TIME
        }
    }

    fn fold_batch(&mut self, source: &str, batch: &ArchivedUsageBatch, high_water: i64) -> Outcome {
        let key = ProducerKey {
            node: batch.node.as_str().to_owned(),
            epoch: batch.epoch.to_native(),
            core: batch.core.to_native(),
            partition: batch.partition.to_native(),
        };
        let sequence = batch.sequence.to_native();
        let state = self.producers.entry(key.clone()).or_default();
        let stats = &mut self.delta.stats;
        match state.classify(sequence) {
            SequenceClass::Duplicate => {
                stats.duplicates += 1;
                return Outcome::Duplicate;
            }
            SequenceClass::InOrder => {}
            SequenceClass::Gap { missing } => {
                stats.gaps += 1;
                stats.missing_opened = stats.missing_opened.saturating_add(missing);
                tracing::warn!(
                    node = %key.node, epoch = key.epoch, core = key.core,
                    partition = key.partition, sequence, missing,
                    "usage sequence gap"
                );
            }
            SequenceClass::Fill => stats.filled += 1,
        }
        stats.abandoned = stats.abandoned.saturating_add(state.mark(sequence));
        stats.batches += 1;
        self.delta.producers.insert(key);

        let start = batch.window_start_ms.to_native();
        let end = batch.window_end_ms.to_native();
        let first = bucket_of(start);
        let last = bucket_of(end.saturating_sub(1).max(start));
        let first_period = self.period(first);
        let last_period = if last == first {
            first_period
        } else {
            self.period(last)
        };
        let levels = [
            self.level(first_period, high_water),
            self.level(last_period, high_water),
        ];
        let node = batch.node.as_str();
        let mut late = 0u64;
        for entry in batch.entries.iter() {
            let day = entry.day.to_native();
            // A window that crosses a local midnight holds entries of both days: each goes to
            // the bucket of its own day (the gateway split them by day).
            let (bucket, level) =
                if last != first && day != first_period.day && day == last_period.day {
                    (last, levels[1])
                } else {
                    (first, levels[0])
                };
            if level != ON_TIME {
                late += 1;
            }
            let identity = entry.identity();
            let words = crate::store::archived_words(&entry.counters);
            if !self.resets.is_empty() && words[0] > 0 {
                if let Some(at) = self.resets.get(identity.apikey) {
                    // A batch that ended by the key's reset counts before it, whenever the
                    // ledger sees it.
                    if end <= *at {
                        for (period, id) in [(0u8, day), (1u8, identity.month)] {
                            let slot = self
                                .delta
                                .baseline
                                .entry((period, identity.apikey.to_owned(), id, node.to_owned()))
                                .or_insert(0);
                            *slot = slot.saturating_add(words[0]);
                        }
                    }
                }
            }
            self.delta.rows.add(
                &RowRef {
                    node,
                    apikey: identity.apikey,
                    api: identity.api,
                    route: identity.route,
                    consumer: identity.consumer,
                    subscription: identity.subscription,
                    day,
                    month: identity.month,
                    bucket_ms: bucket,
                    level,
                },
                &words,
            );
        }
        let stats = &mut self.delta.stats;
        stats.entries += u64::try_from(batch.entries.len()).unwrap_or(u64::MAX);
        stats.late_entries += late;
        if let Some(pos) = self.sources.get_mut(source) {
            pos.high_water_ms = pos.high_water_ms.max(end);
        } else {
            self.sources.insert(
                source.to_owned(),
                SourcePos {
                    next: 0,
                    high_water_ms: end,
                },
            );
        }
        Outcome::Applied
    }
}

/// A hasher that passes a `u64` through: the row table hashes its keys itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = rows::hash_bytes(self.0, bytes);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = rows::mix(self.0, n);
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = rows::mix(self.0, n as u64);
    }
}

#[cfg(test)]
mod tests;

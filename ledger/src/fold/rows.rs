//! The chunk's usage rows: a hash table keyed by an entry's identity, node, day, bucket and
//! lateness, looked up with borrowed strings so that a hit allocates nothing (the fold's hot
//! path: one lookup and one counter merge per entry).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::store::{Words, add_words};

use super::IdHasher;

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const K: u64 = 0xf135_7aea_2e62_a9c5;
const END: u32 = u32::MAX;

/// Rows after which a source commits its chunk whatever its record count (bounds memory).
pub const MAX_ROWS: usize = 1 << 20;

/// One multiply-rotate step (the FxHash family): fast, and good enough for a table whose
/// keys are not chosen by an attacker who can see the hashes.
#[must_use]
pub fn mix(hash: u64, word: u64) -> u64 {
    (hash ^ word).wrapping_mul(K).rotate_left(26)
}

/// Mixes `bytes`, eight at a time, then their length.
#[must_use]
pub fn hash_bytes(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
        hash = mix(hash, word);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        for (slot, byte) in word.iter_mut().zip(rest) {
            *slot = *byte;
        }
        hash = mix(hash, u64::from_le_bytes(word));
    }
    mix(hash, bytes.len() as u64)
}

fn hash_opt(hash: u64, value: Option<&str>) -> u64 {
    match value {
        Some(s) => hash_bytes(mix(hash, 1), s.as_bytes()),
        None => mix(hash, 0),
    }
}

/// A row's key, borrowed (from a batch when folding, from the table's arena when reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef<'a> {
    /// Gateway node that produced the usage (for the totals' per-node breakdown).
    pub node: &'a str,
    /// API key id.
    pub apikey: &'a str,
    /// API.
    pub api: Option<&'a str>,
    /// Route.
    pub route: &'a str,
    /// Consumer.
    pub consumer: Option<&'a str>,
    /// Subscription.
    pub subscription: Option<&'a str>,
    /// The entry's day `YYYYMMDD` in the gateway's time zone (what its quota counts).
    pub day: u32,
    /// The entry's month `YYYYMM`.
    pub month: u32,
    /// Start of the 15-minute UTC bucket, ms.
    pub bucket_ms: i64,
    /// Lateness ([`super::ON_TIME`], [`super::LATE_FOR_DAY`], [`super::LATE_FOR_MONTH`]).
    pub level: u8,
}

/// Where a string lives in the arena; `len == NONE` for `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    len: u32,
}

const NONE: u32 = u32::MAX;

impl Span {
    fn get(self, arena: &str) -> Option<&str> {
        if self.len == NONE {
            return None;
        }
        arena.get(self.start..self.start + self.len as usize)
    }
}

fn push(arena: &mut String, s: Option<&str>) -> Span {
    match s {
        None => Span {
            start: 0,
            len: NONE,
        },
        Some(s) => {
            // Strings of a decoded batch are below 64 MiB (a journal record's limit).
            let span = Span {
                start: arena.len(),
                len: u32::try_from(s.len()).unwrap_or(0),
            };
            arena.push_str(s);
            span
        }
    }
}

impl RowRef<'_> {
    /// The row's hash (its chain in the table).
    pub(super) fn hash(&self) -> u64 {
        let mut h = hash_bytes(SEED, self.apikey.as_bytes());
        h = hash_bytes(h, self.route.as_bytes());
        h = hash_bytes(h, self.node.as_bytes());
        h = hash_opt(h, self.api);
        h = hash_opt(h, self.consumer);
        h = hash_opt(h, self.subscription);
        h = mix(h, u64::from(self.day) << 8 | u64::from(self.level));
        mix(h, self.bucket_ms as u64)
    }

    fn matches(&self, row: &Row, arena: &str) -> bool {
        let [node, apikey, api, route, consumer, subscription] = row.spans;
        self.bucket_ms == row.bucket_ms
            && self.day == row.day
            && self.level == row.level
            && self.month == row.month
            && Some(self.apikey) == apikey.get(arena)
            && Some(self.route) == route.get(arena)
            && Some(self.node) == node.get(arena)
            && self.api == api.get(arena)
            && self.consumer == consumer.get(arena)
            && self.subscription == subscription.get(arena)
    }
}

#[derive(Debug)]
struct Row {
    /// node, apikey, api, route, consumer, subscription.
    spans: [Span; 6],
    day: u32,
    month: u32,
    bucket_ms: i64,
    level: u8,
    counters: Words,
    next: u32,
}

impl Row {
    fn key<'a>(&self, arena: &'a str) -> RowRef<'a> {
        let [node, apikey, api, route, consumer, subscription] = self.spans;
        RowRef {
            node: node.get(arena).unwrap_or_default(),
            apikey: apikey.get(arena).unwrap_or_default(),
            api: api.get(arena),
            route: route.get(arena).unwrap_or_default(),
            consumer: consumer.get(arena),
            subscription: subscription.get(arena),
            day: self.day,
            month: self.month,
            bucket_ms: self.bucket_ms,
            level: self.level,
        }
    }
}

/// The rows of a chunk. Their strings live in one arena, so a new row costs no allocation of
/// its own.
#[derive(Debug, Default)]
pub struct Rows {
    heads: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    rows: Vec<Row>,
    arena: String,
}

impl Rows {
    /// Adds `counters` (as [`crate::store::to_words`] lays them out) to the row `key`
    /// (created at zero if new).
    pub fn add(&mut self, key: &RowRef<'_>, counters: &Words) {
        let hash = key.hash();
        let head = self.heads.get(&hash).copied().unwrap_or(END);
        let mut at = head;
        while let Some(row) = self.rows.get_mut(at as usize) {
            if key.matches(row, &self.arena) {
                add_words(&mut row.counters, counters);
                return;
            }
            at = row.next;
        }
        let Ok(index) = u32::try_from(self.rows.len()) else {
            return;
        };
        if index == END {
            // 4 G rows: memory runs out long before; a chunk is committed at `MAX_ROWS`.
            return;
        }
        let arena = &mut self.arena;
        let spans = [
            push(arena, Some(key.node)),
            push(arena, Some(key.apikey)),
            push(arena, key.api),
            push(arena, Some(key.route)),
            push(arena, key.consumer),
            push(arena, key.subscription),
        ];
        self.rows.push(Row {
            spans,
            day: key.day,
            month: key.month,
            bucket_ms: key.bucket_ms,
            level: key.level,
            counters: *counters,
            next: head,
        });
        self.heads.insert(hash, index);
    }

    /// Number of rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every row, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (RowRef<'_>, &Words)> {
        self.rows
            .iter()
            .map(|row| (row.key(&self.arena), &row.counters))
    }

    /// Whether the chunk holds enough rows to be committed now ([`MAX_ROWS`]).
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.rows.len() >= MAX_ROWS
    }
}

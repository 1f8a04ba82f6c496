//! Hashing and comparing identities on the request path, word by word.
//!
//! Every keyed call hashes its identity and compares it with the slot's: a handful of short ids
//! (15–40 bytes). Going through `Hash` and `==` costs a `hash_bytes` call per string and a
//! `memcmp` call per comparison, more than the work itself; reading 8 bytes at a time inline
//! halves the cost of `record`. The hash is process-local (an index, never on the wire).

use gateway_model::event::{UsageEntry, UsageIdentity};

const K: u64 = 0xf135_7aea_2e62_a9c5;

/// An 8-byte word, little-endian.
#[inline]
fn word(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_le_bytes)
}

/// The bytes after the last whole word, as a word: the string's last 8 bytes (overlapping the
/// previous word) when it has 8 or more, else all of them. Equal strings give equal words, and
/// strings of the same length with different tails give different ones.
#[inline]
fn tail_word(bytes: &[u8]) -> u64 {
    if let Some(last) = bytes.last_chunk::<8>() {
        return u64::from_le_bytes(*last);
    }
    if let (Some(lo), Some(hi)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        return u64::from(u32::from_le_bytes(*lo)) | (u64::from(u32::from_le_bytes(*hi)) << 32);
    }
    // 0 to 3 bytes: the first, middle and last cover them all.
    let at = |i: usize| u64::from(bytes.get(i).copied().unwrap_or(0));
    let len = bytes.len();
    at(0) | (at(len / 2) << 8) | (at(len.wrapping_sub(1)) << 16)
}

/// One string's hash chain, from `seed`.
#[inline]
fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = (seed ^ bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ word(w)).wrapping_mul(K).rotate_left(23);
    }
    if !words.remainder().is_empty() {
        h = (h ^ tail_word(bytes)).wrapping_mul(K).rotate_left(23);
    }
    h
}

/// The index hash of an identity: its key, route, API and day. The consumer and subscription
/// follow from the key (and API), so they only take part in the comparison. The strings are
/// hashed in independent chains, which the CPU runs side by side.
#[inline]
pub(super) fn hash_identity(identity: &UsageIdentity<'_>) -> u64 {
    let key = hash_bytes(0x243f_6a88_85a3_08d3, identity.apikey.as_bytes());
    let route = hash_bytes(0x1319_8a2e_0370_7344, identity.route.as_bytes());
    let api = identity.api.map_or(0x0a40_9382_2299_f31d, |api| {
        hash_bytes(0xa409_3822_299f_31d0, api.as_bytes())
    });
    let mut h =
        key ^ route.rotate_left(21) ^ api.rotate_left(42) ^ u64::from(identity.day).wrapping_mul(K);
    // Final avalanche (murmur3's fmix64), so that the low bits the table uses depend on all.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `a == b`, a word at a time, inline.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut wa, mut wb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut wa).zip(&mut wb) {
        if word(x) != word(y) {
            return false;
        }
    }
    wa.remainder().is_empty() || tail_word(a) == tail_word(b)
}

#[inline]
fn same_str(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

#[inline]
fn same_opt(a: Option<&String>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same_str(a, b),
        _ => false,
    }
}

/// Whether `entry` has this identity (the cheap fields first).
#[inline]
pub(super) fn is_identity(entry: &UsageEntry, identity: &UsageIdentity<'_>) -> bool {
    entry.day == identity.day
        && entry.month == identity.month
        && same_str(&entry.apikey, identity.apikey)
        && same_str(&entry.route, identity.route)
        && same_opt(entry.api.as_ref(), identity.api)
        && same_opt(entry.consumer.as_ref(), identity.consumer)
        && same_opt(entry.subscription.as_ref(), identity.subscription)
}

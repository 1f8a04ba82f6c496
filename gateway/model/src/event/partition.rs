//! Which partition a key's usage goes to.
//!
//! The hash is FNV-1a 64 over the UTF-8 bytes of the API key id, reduced modulo the partition
//! count. It is part of the wire contract: gateways and ledgers of different versions, on
//! different platforms, must agree on it, so it is written out here rather than taken from
//! `std::hash` (randomised per process and free to change between releases).

/// FNV-1a 64 offset basis.
pub const FNV1A_64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
pub const FNV1A_64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`: for each byte, `h = (h ^ byte) * PRIME` (wrapping), from
/// [`FNV1A_64_OFFSET`].
#[must_use]
pub const fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash = FNV1A_64_OFFSET;
    let mut rest = bytes;
    while let [byte, tail @ ..] = rest {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(FNV1A_64_PRIME);
        rest = tail;
    }
    hash
}

/// The partition of `api_key_id` among `partitions`:
/// `fnv1a_64(api_key_id.as_bytes()) % partitions`.
///
/// Always `< partitions`; a count of 0 is read as 1 (everything in partition 0). Never changes
/// across versions or platforms: a changed value would send a key's usage to a ledger that does
/// not own it.
#[must_use]
pub fn partition_for(api_key_id: &str, partitions: u32) -> u32 {
    let partitions = u64::from(partitions.max(1));
    // The remainder is below `partitions`, itself a `u32`, so the fallback is unreachable.
    u32::try_from(fnv1a_64(api_key_id.as_bytes()) % partitions).unwrap_or(0)
}

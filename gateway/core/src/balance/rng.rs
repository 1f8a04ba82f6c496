//! A small, fast, seedable PRNG (wyrand) for the random policies.
//!
//! Each core owns its balancers, so the generator is plain data: no thread-local, no atomic, no
//! OS entropy. The caller seeds it (e.g. from the core index and the boot time), which also makes
//! every test reproducible. Not cryptographic: it only spreads load.

/// wyrand: one 64-bit state, one 128-bit multiply per draw; passes BigCrush and PractRand, and
/// every seed (zero included) gives a full-period stream.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state).wrapping_mul(u128::from(self.state ^ 0xe703_7ed1_a0b4_28db));
        // Truncations intended: the high and low halves of the 128-bit product.
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A number in `0..bound` (`0` when `bound` is 0), by Lemire's multiply-shift: no division,
    /// and a bias below `bound / 2^64`, far under anything a load balancer could notice.
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// Stable 64-bit hash of `bytes` (FNV-1a, then a splitmix64 finaliser for avalanche).
///
/// Stable across cores, processes, nodes and releases (no per-process seed): a client IP or a
/// session header maps to the same target on every gateway node.
#[must_use]
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: a bijective mix in which every input bit affects every output bit.
#[inline]
#[must_use]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `-ln(u)` for `u` uniform in (0, 1) drawn from `h`'s 52 high bits, with only IEEE basic
/// operations (no libm): bit-identical on every platform, so that weighted rendezvous hashing
/// picks the same target on every node, and several times faster than `f64::ln`. Relative error
/// below 1e-9; always positive.
#[inline]
#[must_use]
pub fn neg_ln_unit(h: u64) -> f64 {
    const LN_2: f64 = std::f64::consts::LN_2;
    // u = (k + 0.5) / 2^52 with k < 2^52: exact (53 significant bits), normal, in (0, 1).
    let u = ((h >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64);
    let bits = u.to_bits();
    // Truncation intended: the 11 exponent bits.
    let mut exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        exp += 1;
    }
    // ln(m) = 2 atanh(t) with t = (m - 1) / (m + 1), |t| < 0.172: the series to t^11 leaves
    // an error below 2e-11.
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let ln_m = 2.0
        * t
        * (1.0
            + t2 * (1.0 / 3.0
                + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0 + t2 / 11.0)))));
    -(f64::from(exp) * LN_2 + ln_m)
}

//! The selection policies. Each one chooses among the slots that `ok` accepts (one tier, primary
//! or backup, of available targets) and returns the chosen slot's index, or `None` when `ok`
//! accepts none. They only read and write the slots' balancing fields and the generator: no
//! allocation, O(targets) per pick.
//!
//! Load (for power-of-two choices and least connections) is in-flight calls divided by weight,
//! compared by cross-multiplication, so a target of weight 2 takes twice the concurrent calls of
//! a target of weight 1 before it counts as busier; with equal weights it is plain in-flight.

use gateway_model::entity::LoadBalancing;

use super::Slot;
use super::rng::{Rng, mix, neg_ln_unit};

/// The compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// The less loaded of two weighted-random distinct targets.
    PowerOfTwoChoices,
    /// The least loaded target; ties by smooth weighted round robin.
    LeastConnections,
    /// Weighted rendezvous hash of the client IP; round robin without one.
    IpAddressHash,
    /// Weighted rendezvous hash of a header's value; round robin without one.
    HeaderHash {
        /// The header the caller looks up.
        header_name: Box<str>,
    },
    /// The first available target in configuration order.
    NaiveFailover,
}

impl Policy {
    /// The policy for a model value; `None` for [`LoadBalancing::Unsupported`].
    #[must_use]
    pub fn from_model(lb: &LoadBalancing) -> Option<Self> {
        Some(match lb {
            LoadBalancing::RoundRobin => Self::RoundRobin,
            LoadBalancing::Random => Self::Random,
            LoadBalancing::PowerOfTwoRandomChoices => Self::PowerOfTwoChoices,
            LoadBalancing::LeastConnections => Self::LeastConnections,
            LoadBalancing::IpAddressHash => Self::IpAddressHash,
            LoadBalancing::HeaderHash { header_name } => Self::HeaderHash {
                header_name: header_name.as_str().into(),
            },
            LoadBalancing::NaiveFailover => Self::NaiveFailover,
            LoadBalancing::Unsupported => return None,
        })
    }
}

/// nginx's smooth weighted round robin: every candidate's `current` grows by its weight, the
/// largest wins (the first on ties) and gives back the candidates' total weight. Weights 5:1:1
/// give `a a b a c a a`.
pub fn smooth_round_robin(slots: &mut [Slot], ok: impl Fn(&Slot) -> bool) -> Option<usize> {
    let mut total: i64 = 0;
    let mut best: Option<(usize, i64)> = None;
    for (i, s) in slots.iter_mut().enumerate() {
        if !ok(s) {
            continue;
        }
        let w = i64::from(s.weight);
        s.current = s.current.saturating_add(w);
        total = total.saturating_add(w);
        if best.is_none_or(|(_, c)| s.current > c) {
            best = Some((i, s.current));
        }
    }
    let (i, _) = best?;
    if let Some(s) = slots.get_mut(i) {
        s.current = s.current.saturating_sub(total);
    }
    Some(i)
}

/// A weighted random candidate.
pub fn weighted_random(slots: &[Slot], rng: &mut Rng, ok: impl Fn(&Slot) -> bool) -> Option<usize> {
    let total: u64 = slots
        .iter()
        .filter(|s| ok(s))
        .map(|s| u64::from(s.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    let mut last = None;
    for (i, s) in slots.iter().enumerate() {
        if !ok(s) {
            continue;
        }
        let w = u64::from(s.weight);
        if r < w {
            return Some(i);
        }
        r -= w;
        last = Some(i);
    }
    last
}

/// A slot's load: (in-flight, weight), meaning `in_flight / weight`.
#[inline]
fn load(s: &Slot) -> (u64, u64) {
    (u64::from(s.in_flight), u64::from(s.weight))
}

/// Whether load `a` is below load `b`.
#[inline]
fn lighter((ai, aw): (u64, u64), (bi, bw): (u64, u64)) -> bool {
    ai * bw < bi * aw
}

/// Whether loads `a` and `b` are equal.
#[inline]
fn same_load((ai, aw): (u64, u64), (bi, bw): (u64, u64)) -> bool {
    ai * bw == bi * aw
}

/// Power of two random choices: two distinct weighted-random candidates, the less loaded wins
/// (the first drawn on a tie, so that with no load the picks follow the weights).
pub fn power_of_two(
    slots: &[Slot],
    rng: &mut Rng,
    ok: impl Fn(&Slot) -> bool + Copy,
) -> Option<usize> {
    let first = weighted_random(slots, rng, ok)?;
    let Some(a) = slots.get(first) else {
        return Some(first);
    };
    let a_uid = a.uid;
    let Some(second) = weighted_random(slots, rng, |s| s.uid != a_uid && ok(s)) else {
        return Some(first);
    };
    match slots.get(second) {
        Some(b) if lighter(load(b), load(a)) => Some(second),
        _ => Some(first),
    }
}

/// Least connections: the least loaded candidate; ties go round robin (smooth, weighted).
pub fn least_connections(slots: &mut [Slot], ok: impl Fn(&Slot) -> bool) -> Option<usize> {
    let mut min: Option<(u64, u64)> = None;
    for s in slots.iter().filter(|s| ok(s)) {
        if min.is_none_or(|m| lighter(load(s), m)) {
            min = Some(load(s));
        }
    }
    let min = min?;
    smooth_round_robin(slots, |s| ok(s) && same_load(load(s), min))
}

/// Weighted rendezvous (highest random weight) hashing of `key`: every candidate scores
/// `weight / -ln(u)` with `u` uniform in (0, 1) from `hash(key, target)`, and the highest score
/// wins, so a target's share of keys is its share of the weight. A key keeps its target while
/// that target is available, moves only when it goes away and comes back when it returns; the
/// targets' order and the other targets' availability do not matter. With equal weights the
/// score is `u` itself (same winner, no logarithm).
pub fn rendezvous(
    slots: &[Slot],
    key: u64,
    uniform_weights: bool,
    ok: impl Fn(&Slot) -> bool,
) -> Option<usize> {
    if uniform_weights {
        let mut best: Option<(usize, u64)> = None;
        for (i, s) in slots.iter().enumerate() {
            let h = mix(key ^ s.key_hash);
            if ok(s) && best.is_none_or(|(_, b)| h > b) {
                best = Some((i, h));
            }
        }
        return best.map(|(i, _)| i);
    }
    // Highest weight / L is lowest L / weight, compared by cross-multiplication: no division.
    let mut best: Option<(usize, f64, f64)> = None;
    for (i, s) in slots.iter().enumerate() {
        if !ok(s) {
            continue;
        }
        let l = neg_ln_unit(mix(key ^ s.key_hash));
        let w = f64::from(s.weight);
        if best.is_none_or(|(_, bl, bw)| l * bw < bl * w) {
            best = Some((i, l, w));
        }
    }
    best.map(|(i, _, _)| i)
}

/// The first candidate in configuration order.
pub fn first(slots: &[Slot], ok: impl Fn(&Slot) -> bool) -> Option<usize> {
    slots.iter().position(ok)
}

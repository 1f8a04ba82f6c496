//! An open-addressing index from an identity's hash to its slot in the accumulator.
//!
//! The accumulator looks an identity up on every call, by borrowed `&str`s, so the index must
//! find a slot without building an owned key: it stores the full 64-bit hash and asks the caller
//! to compare the identity itself, which `std`'s `HashMap` cannot do on stable Rust. Linear
//! probing over a power-of-two table kept at most half full: a hit costs one hash, one or two
//! probes and one comparison of the identity's strings.

/// Where an identity lives: its hash, and its slot + 1 (0 marks an empty bucket).
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    hash: u64,
    slot: u32,
}

/// Hash → slot, with the comparison of identities left to the caller.
#[derive(Debug)]
pub(super) struct IdentityIndex {
    table: Vec<Bucket>,
    len: usize,
}

const MIN_CAPACITY: usize = 64;

impl IdentityIndex {
    pub(super) fn new() -> Self {
        Self {
            table: vec![Bucket::default(); MIN_CAPACITY],
            len: 0,
        }
    }

    fn mask(&self) -> usize {
        self.table.len().wrapping_sub(1)
    }

    /// The slot whose hash is `hash` and for which `same` says the identity matches.
    pub(super) fn find(&self, hash: u64, mut same: impl FnMut(u32) -> bool) -> Option<u32> {
        let mask = self.mask();
        // Truncating the hash to the table's width is the point.
        let mut at = (hash as usize) & mask;
        // The table is at most half full, so an empty bucket ends every probe sequence; the
        // bound only guards against a broken invariant.
        for _ in 0..self.table.len() {
            let bucket = self.table.get(at)?;
            if bucket.slot == 0 {
                return None;
            }
            let slot = bucket.slot - 1;
            if bucket.hash == hash && same(slot) {
                return Some(slot);
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Adds `slot` under `hash` (the caller knows it is not there yet).
    pub(super) fn insert(&mut self, hash: u64, slot: u32) {
        if (self.len + 1) * 2 > self.table.len() {
            self.grow(self.table.len() * 2);
        }
        self.place(hash, slot);
        self.len += 1;
    }

    /// Forgets everything and indexes the `len` `entries` (hash, slot) afresh, in a table sized
    /// for them.
    pub(super) fn rebuild(&mut self, len: usize, entries: impl Iterator<Item = (u64, u32)>) {
        let capacity = (len * 2).next_power_of_two().max(MIN_CAPACITY);
        self.table = vec![Bucket::default(); capacity];
        self.len = 0;
        for (hash, slot) in entries {
            self.place(hash, slot);
            self.len += 1;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn grow(&mut self, capacity: usize) {
        let old = std::mem::replace(&mut self.table, vec![Bucket::default(); capacity]);
        for bucket in old.into_iter().filter(|b| b.slot != 0) {
            self.place(bucket.hash, bucket.slot - 1);
        }
    }

    fn place(&mut self, hash: u64, slot: u32) {
        let mask = self.mask();
        let mut at = (hash as usize) & mask;
        for _ in 0..self.table.len() {
            match self.table.get_mut(at) {
                Some(bucket) if bucket.slot == 0 => {
                    *bucket = Bucket {
                        hash,
                        slot: slot + 1,
                    };
                    return;
                }
                Some(_) => at = (at + 1) & mask,
                None => return,
            }
        }
    }
}

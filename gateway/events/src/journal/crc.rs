//! CRC-32C (Castagnoli), the checksum of every journal record.
//!
//! Reflected polynomial `0x82F63B78`, initial value and final XOR `0xFFFFFFFF` (as in iSCSI,
//! ext4 and Kafka's record batches): `crc32c(b"123456789") == 0xE306_9283`. Table-driven,
//! slicing by 8, tables built at compile time; a few hundred bytes of code instead of a
//! dependency, and fast enough that the journal's cost is the write, not the checksum.

// Every index below is a constant under 8 or a value masked to 0..=255 into a 256-entry table:
// none can be out of bounds, and `get` is not available in the `const fn` that builds them.
#![allow(clippy::indexing_slicing)]

const POLY: u32 = 0x82F6_3B78;

static TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut j = 1;
        while j < 8 {
            let prev = t[j - 1][i];
            t[j][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            j += 1;
        }
        i += 1;
    }
    t
}

/// A CRC-32C computed over several pieces.
#[derive(Debug, Clone, Copy)]
pub(super) struct Crc32c(u32);

impl Crc32c {
    pub(super) fn new() -> Self {
        Self(!0)
    }

    pub(super) fn update(mut self, bytes: &[u8]) -> Self {
        let t = &TABLES;
        let mut crc = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
            let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xff) as usize]
                ^ t[2][((hi >> 8) & 0xff) as usize]
                ^ t[1][((hi >> 16) & 0xff) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in chunks.remainder() {
            crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        self.0 = crc;
        self
    }

    pub(super) fn finish(self) -> u32 {
        !self.0
    }
}

/// CRC-32C of `bytes`.
#[cfg(test)]
pub(super) fn crc32c(bytes: &[u8]) -> u32 {
    Crc32c::new().update(bytes).finish()
}

//! Incremental end-of-head search that also enforces strict CRLF line endings.
//!
//! A head that arrives in one read is parsed by httparse straight away and then checked for bare
//! LF (the one framing sin httparse forgives). When it arrives in pieces, [`HeadScan`] takes
//! over: it remembers how far it has validated, so a head fed one byte at a time costs O(n) in
//! total, not O(n²), and httparse runs once more, on the complete head. The scanner also decides
//! which error a malformed head gets, so the result never depends on how the bytes were split.

use super::error::ErrorKind;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const CR_SPLAT: u64 = LO * (b'\r' as u64);
const LF_SPLAT: u64 = LO * (b'\n' as u64);

/// Resumable scan state: how many bytes at the front of the buffer are known to be well formed.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadScan {
    /// Bytes of empty lines before the start line (RFC 9112 §2.2 lets us skip them).
    start: usize,
    /// Everything before this offset has been validated and contains no end of head.
    pos: usize,
}

impl HeadScan {
    /// Whether no progress has been recorded: the next call would start at offset 0.
    pub(crate) fn is_fresh(&self) -> bool {
        self.pos == 0 && self.start == 0
    }

    /// Forgets all progress; the next call scans from offset 0.
    pub(crate) fn reset(&mut self) {
        self.start = 0;
        self.pos = 0;
    }

    /// Continues the search over `buf`, which must start with the bytes seen by earlier calls.
    ///
    /// Returns the offset just past the blank line that ends the head, or `Ok(None)` when more
    /// bytes are needed; resets itself when it returns an offset.
    /// Fails on a bare CR or LF, an obs-fold continuation line, or when no end of head is found
    /// within `max` bytes.
    pub(crate) fn advance(&mut self, buf: &[u8], max: usize) -> Result<Option<usize>, ErrorKind> {
        if buf.len() < self.pos {
            // Not the buffer we were scanning: start over rather than trust stale offsets.
            self.reset();
        }
        let window = buf.get(..buf.len().min(max)).unwrap_or(buf);
        let mut i = self.pos;
        loop {
            let Some(j) = find_cr_or_lf(window, i) else {
                self.pos = window.len();
                return need_more(buf, max);
            };
            if window.get(j) == Some(&b'\n') {
                // Every CR LF pair is consumed whole, so an LF found on its own is bare.
                return Err(ErrorKind::BareLf);
            }
            match window.get(j + 1) {
                None => {
                    self.pos = j;
                    return need_more(buf, max);
                }
                Some(b'\n') => {}
                Some(_) => return Err(ErrorKind::BareCr),
            }
            if j == self.start {
                // An empty line before the start line: skip it.
                self.start = j + 2;
                i = j + 2;
                continue;
            }
            if j >= self.start + 2 && window.get(j - 2..j) == Some(b"\r\n".as_slice()) {
                self.reset();
                return Ok(Some(j + 2));
            }
            // End of a non-empty line: the next line must not begin with whitespace.
            match window.get(j + 2) {
                None => {
                    self.pos = j;
                    return need_more(buf, max);
                }
                Some(b' ' | b'\t') => return Err(ErrorKind::ObsFold),
                Some(_) => i = j + 2,
            }
        }
    }
}

fn need_more(buf: &[u8], max: usize) -> Result<Option<usize>, ErrorKind> {
    if buf.len() >= max {
        Err(ErrorKind::HeadTooLarge)
    } else {
        Ok(None)
    }
}

/// Whether some LF in `head` is not preceded by CR. Branch-free so that it vectorizes: it runs
/// on every head that httparse (which accepts bare LF) parsed in one go.
pub(crate) fn has_bare_lf(head: &[u8]) -> bool {
    let rest = head.get(1..).unwrap_or_default();
    let bare = rest.iter().zip(head).fold(false, |acc, (&b, &prev)| {
        acc | ((b == b'\n') & (prev != b'\r'))
    });
    bare | (head.first() == Some(&b'\n'))
}

/// Index of the first CR or LF in `buf[from..]`, eight bytes at a time.
fn find_cr_or_lf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let mut words = rest.chunks_exact(8);
    let mut base = from;
    for word in words.by_ref() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        let cr = w ^ CR_SPLAT;
        let lf = w ^ LF_SPLAT;
        // "Has a zero byte": borrows can flag bytes above a real match, never below it, so the
        // lowest flagged byte is exact.
        let hits = (cr.wrapping_sub(LO) & !cr & HI) | (lf.wrapping_sub(LO) & !lf & HI);
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|k| base + k)
}

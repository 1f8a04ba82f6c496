//! Segment files: their names, the record frame, and a cursor that reads records from a file
//! that may still be growing.
//!
//! ```text
//! record:  [len: u32 LE] [crc: u32 LE] [payload: len bytes]
//!          crc = CRC-32C over the 4 len bytes, then the payload
//! ```
//!
//! The checksum covers the length so that a zero-filled tail (a crash after the file grew but
//! before its data reached the disk) never parses as empty records: CRC-32C of four zero bytes
//! is not zero.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::crc::Crc32c;

/// Bytes of a record header: length and checksum.
pub const HEADER_BYTES: usize = 8;

/// The largest payload a record may have. A header announcing more is corrupt, not torn: the
/// bound keeps a flipped length bit from passing for a record still being written.
pub const MAX_RECORD_BYTES: u32 = 64 << 20;

const SUFFIX: &str = ".seg";

/// The file name of the segment whose first record has offset `base`.
pub(super) fn segment_name(base: u64) -> String {
    format!("{base:020}{SUFFIX}")
}

/// The first offset of a segment, from its file name; `None` for any other file.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments of `dir`, by first offset.
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_segment_name) {
            segments.push((base, entry.path()));
        }
    }
    segments.sort_unstable_by_key(|(base, _)| *base);
    Ok(segments)
}

/// Appends the frame of `payload` to `out`. The caller checked `payload.len() <=
/// MAX_RECORD_BYTES`.
pub(super) fn frame_into(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let crc = Crc32c::new().update(&len).update(payload).finish();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What is wrong with the bytes where a record should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Damage {
    /// Fewer than 8 bytes left: a header cut short.
    ShortHeader,
    /// The header announces more payload than the file holds.
    ShortPayload,
    /// The checksum does not match the length and payload.
    BadChecksum,
    /// The header announces more than [`MAX_RECORD_BYTES`].
    Oversized,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ShortHeader => "short header",
            Self::ShortPayload => "short payload",
            Self::BadChecksum => "bad checksum",
            Self::Oversized => "length over the record limit",
        })
    }
}

/// What a cursor found at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// A whole, valid record; its payload is `cursor.payload(range)`.
    Record(std::ops::Range<usize>),
    /// Bytes that can never become a valid record.
    Bad(Damage),
    /// The end of the file: nothing left, or (`Some`) a partial record.
    End(Option<Damage>),
}

enum Parsed {
    Record { size: usize },
    Incomplete { need: usize, damage: Damage },
    Bad(Damage),
}

fn parse(buf: &[u8]) -> Parsed {
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_BYTES>() else {
        return Parsed::Incomplete {
            need: HEADER_BYTES,
            damage: Damage::ShortHeader,
        };
    };
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let len = u32::from_le_bytes(len_bytes);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_BYTES {
        return Parsed::Bad(Damage::Oversized);
    }
    let len = len as usize;
    let Some(payload) = rest.get(..len) else {
        return Parsed::Incomplete {
            need: HEADER_BYTES + len,
            damage: Damage::ShortPayload,
        };
    };
    if Crc32c::new().update(&len_bytes).update(payload).finish() != crc {
        return Parsed::Bad(Damage::BadChecksum);
    }
    Parsed::Record {
        size: HEADER_BYTES + len,
    }
}

/// Reads records from one segment file, from a position, through a buffer. Positional reads
/// (`pread`): the cursor keeps no file-position state, so a file being appended to is seen
/// growing, and bytes past the last whole record can be dropped and read again later.
#[derive(Debug)]
pub(super) struct Cursor {
    file: File,
    path: PathBuf,
    /// File position of `buf[0]`.
    buf_pos: u64,
    /// Zeroed once when grown, then reused: `buf[at..end]` holds bytes read and not consumed.
    buf: Vec<u8>,
    /// Index in `buf` of the next record.
    at: usize,
    /// End of the bytes read.
    end: usize,
}

/// The least a read asks for.
const READ_CHUNK: usize = 64 << 10;

impl Cursor {
    pub(super) fn new(file: File, path: PathBuf, pos: u64) -> Self {
        Self {
            file,
            path,
            buf_pos: pos,
            buf: Vec::new(),
            at: 0,
            end: 0,
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// File position of the next record.
    pub(super) fn pos(&self) -> u64 {
        self.buf_pos + self.at as u64
    }

    pub(super) fn payload(&self, range: std::ops::Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or_default()
    }

    /// The bytes from the next record's position to the end of what is buffered.
    pub(super) fn buffered(&self) -> &[u8] {
        self.buf.get(self.at..self.end).unwrap_or_default()
    }

    /// Forgets buffered bytes past the next record's position, so they are read afresh.
    pub(super) fn drop_lookahead(&mut self) {
        self.end = self.at;
    }

    /// Steps over `bytes` bytes (a record the caller decided to skip).
    pub(super) fn advance(&mut self, bytes: usize) {
        self.buf_pos = self.pos() + bytes as u64;
        self.at = 0;
        self.end = 0;
    }

    /// The record at the cursor, reading more of the file as needed.
    ///
    /// # Errors
    ///
    /// Reading the file failed.
    pub(super) fn next_step(&mut self) -> io::Result<Step> {
        loop {
            match parse(self.buffered()) {
                Parsed::Record { size } => {
                    let start = self.at + HEADER_BYTES;
                    self.at += size;
                    return Ok(Step::Record(start..self.at));
                }
                Parsed::Bad(damage) => return Ok(Step::Bad(damage)),
                Parsed::Incomplete { need, damage } => {
                    if self.fill(need)? == 0 {
                        let partial = !self.buffered().is_empty();
                        return Ok(Step::End(partial.then_some(damage)));
                    }
                }
            }
        }
    }

    /// Reads at least one more byte unless at the end of the file; returns how many it read.
    /// `need` is the size of the record being completed.
    fn fill(&mut self, need: usize) -> io::Result<usize> {
        let have = self.end - self.at;
        // Move the unread bytes to the front when they are few, or when the record would not
        // fit behind them.
        if self.at > 0 && (have <= self.at || self.buf.len() - self.at < need) {
            self.buf.copy_within(self.at..self.end, 0);
            self.buf_pos += self.at as u64;
            self.end = have;
            self.at = 0;
        }
        let want = need.saturating_sub(have).max(READ_CHUNK);
        if self.buf.len() < self.end + want {
            self.buf.resize(self.end + want, 0);
        }
        loop {
            let Some(spare) = self.buf.get_mut(self.end..) else {
                return Ok(0);
            };
            match self.file.read_at(spare, self.buf_pos + self.end as u64) {
                Ok(read) => {
                    self.end += read;
                    return Ok(read);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// What [`scan`] found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scan {
    /// Records up to the last valid one, corrupt ones kept in between included.
    pub records: u64,
    /// Where the last valid record ends: everything after is a damaged tail.
    pub valid_bytes: u64,
    /// What the tail starts with, if there is one.
    pub damage: Option<Damage>,
    /// Records with a bad checksum followed by valid records: corruption inside the segment,
    /// not a torn tail. They keep their offsets, and readers report them.
    pub corrupt_kept: u64,
}

/// The frame length in a header, if the header is there.
pub(super) fn frame_len(bytes: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(*bytes.first_chunk::<4>()?);
    Some(HEADER_BYTES + len as usize)
}

/// Reads a whole segment and finds where its valid records end.
///
/// A record with a bad checksum whose frame fits in the file is stepped over (by its length,
/// as readers do): if a valid record follows, it was damage inside the segment and is kept, so
/// that offsets stay what readers counted; if none follows, it starts the damaged tail. A
/// length over the limit, a short frame or the end of the file ends the walk.
pub(super) fn scan(file: File, path: PathBuf) -> io::Result<Scan> {
    let mut cursor = Cursor::new(file, path, 0);
    let mut scan = Scan {
        records: 0,
        valid_bytes: 0,
        damage: None,
        corrupt_kept: 0,
    };
    // Bad-checksum records since the last valid one, and the damage after it.
    let mut bad_since_valid = 0;
    let mut tail_damage = None;
    loop {
        match cursor.next_step()? {
            Step::Record(_) => {
                scan.records += 1 + bad_since_valid;
                scan.corrupt_kept += bad_since_valid;
                scan.valid_bytes = cursor.pos();
                bad_since_valid = 0;
                tail_damage = None;
            }
            Step::Bad(Damage::BadChecksum) => {
                tail_damage.get_or_insert(Damage::BadChecksum);
                bad_since_valid += 1;
                let Some(len) = frame_len(cursor.buffered()) else {
                    break;
                };
                cursor.advance(len);
            }
            Step::Bad(damage) | Step::End(Some(damage)) => {
                tail_damage.get_or_insert(damage);
                break;
            }
            Step::End(None) => break,
        }
    }
    scan.damage = tail_damage;
    Ok(scan)
}

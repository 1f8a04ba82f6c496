//! The Kafka sink's on-disk spool: a bounded FIFO of encoded usage batches kept while the broker
//! is unreachable or the client queue is full, replayed in order when it returns.
//!
//! ```text
//! <data>/spool/usage/00281474976710656.spool   records n..m   (file name = offset of its first)
//!                    00281474976711000.spool   records m..    (active: appended to)
//!                    ACKED                      [offset u64 LE][crc32c u32 LE]: first unconfirmed
//! record: [len u32 LE][crc32c(len ‖ body) u32 LE][body = partition u32 LE ‖ batch bytes]
//! ```
//!
//! Offsets are record numbers, increasing. A fresh spool starts at [`BASE_OFFSET`] rather than 0
//! so that [`Spool::prepend`] (at shutdown, for batches the client held in memory, which are
//! older than everything spooled) can put records *before* the head. A record is handed out by
//! [`Spool::next_record`], stays on disk until [`Spool::ack`] confirms it, and a file is deleted
//! once every record in it is confirmed; `ACKED` records the first unconfirmed offset at close so a
//! clean restart does not replay what was confirmed before it (records confirmed after it, and
//! after a crash those of the first file, may be sent again: the ledger skips them by sequence).
//!
//! At open a torn or corrupt record (a crash mid-append) is detected by its length and CRC, the
//! file is truncated there and the loss is logged; it is never replayed. This module does
//! blocking file IO: it belongs to the sink thread.

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// First offset of a fresh spool; leaves room below for [`Spool::prepend`].
pub const BASE_OFFSET: u64 = 1 << 48;
/// Bytes of a record's frame before its body: length and CRC.
pub const FRAME_BYTES: u64 = 8;
/// Largest body accepted (partition + batch): a longer length at open is corruption.
pub const MAX_BODY_BYTES: u32 = 64 << 20;

const SUFFIX: &str = ".spool";
const ACKED_FILE: &str = "ACKED";

/// Why the spool refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Appending would pass the size bound; the caller keeps the batch.
    #[error("spool full: {bytes} of {max_bytes} bytes used, record of {record} bytes refused")]
    Full {
        /// Bytes used now.
        bytes: u64,
        /// The bound.
        max_bytes: u64,
        /// Size of the refused record, frame included.
        record: u64,
    },
    /// The record is larger than [`MAX_BODY_BYTES`].
    #[error("spool record of {0} bytes is over the limit")]
    TooLarge(usize),
    /// File IO failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A record handed out for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Its offset, to [`Spool::ack`] once delivered.
    pub offset: u64,
    /// Partition of the usage topic it goes to.
    pub partition: u32,
    /// The encoded batch.
    pub bytes: Vec<u8>,
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolRecovery {
    /// Records waiting to be replayed.
    pub records: u64,
    /// Bytes cut from torn or corrupt tails.
    pub truncated_bytes: u64,
}

#[derive(Debug)]
struct Segment {
    first: u64,
    count: u64,
    bytes: u64,
    path: PathBuf,
}

impl Segment {
    fn end(&self) -> u64 {
        self.first + self.count
    }
}

/// The spool of one stream. Not thread-safe by design: one sink thread owns it.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    active: Option<File>,
    /// Offset the next appended record gets.
    next: u64,
    /// Next offset [`Spool::next_record`] hands out, and its byte position in its segment.
    read: u64,
    /// `None` when it must be found by walking the frames of the file.
    read_pos: Option<u64>,
    /// Handed out, not yet acknowledged.
    outstanding: BTreeSet<u64>,
    /// After [`Spool::rewind`]: below `redo_until`, only the offsets in `redo` are handed out
    /// again (the others were confirmed).
    redo: BTreeSet<u64>,
    redo_until: u64,
    bytes: u64,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, bounded to `max_bytes` on disk, rolling
    /// files at `segment_bytes`. Truncates a torn or corrupt tail (logged).
    ///
    /// # Errors
    ///
    /// The directory or a file could not be read, created or truncated.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
    ) -> Result<(Self, SpoolRecovery), SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let acked = read_acked(&dir.join(ACKED_FILE));
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            firsts.push(first);
        }
        firsts.sort_unstable();

        let mut recovery = SpoolRecovery::default();
        let mut segments = VecDeque::new();
        let mut read = None;
        for first in firsts {
            let path = dir.join(segment_name(first));
            let scan = scan(&path)?;
            if scan.truncated > 0 {
                tracing::error!(
                    path = %path.display(),
                    kept_records = scan.count,
                    cut_bytes = scan.truncated,
                    "usage spool: torn or corrupt tail truncated; those bytes are not replayed"
                );
                recovery.truncated_bytes += scan.truncated;
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                file.set_len(scan.valid).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
            }
            let segment = Segment {
                first,
                count: scan.count,
                bytes: scan.valid,
                path,
            };
            // Fully confirmed before the last close: delete.
            if acked.is_some_and(|a| segment.end() <= a) || segment.count == 0 {
                fs::remove_file(&segment.path).map_err(io_err(&segment.path))?;
                continue;
            }
            if read.is_none() {
                read = Some(acked.map_or(first, |a| a.max(first)));
            }
            segments.push_back(segment);
        }
        let next = segments
            .back()
            .map(Segment::end)
            .or(acked)
            .unwrap_or(BASE_OFFSET);
        let read = read.unwrap_or(next);
        let bytes = segments.iter().map(|s| s.bytes).sum();
        recovery.records = next - read;
        let spool = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: segment_bytes.max(1),
            segments,
            active: None,
            next,
            read,
            read_pos: None,
            outstanding: BTreeSet::new(),
            redo: BTreeSet::new(),
            redo_until: 0,
            bytes,
        };
        Ok((spool, recovery))
    }

    /// Bytes on disk.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The size bound.
    #[must_use]
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Records appended and not yet handed out by [`Spool::next_record`].
    #[must_use]
    pub fn pending(&self) -> u64 {
        self.next - self.read
    }

    /// Records handed out and not yet acknowledged.
    #[must_use]
    pub fn outstanding(&self) -> u64 {
        self.outstanding.len() as u64
    }

    /// No record pending nor outstanding.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending() == 0 && self.outstanding.is_empty()
    }

    /// Appends a batch for `partition` at the tail; returns its offset.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Full`] when the bound would be passed (nothing written), `TooLarge`, or IO.
    pub fn append(&mut self, partition: u32, bytes: &[u8]) -> Result<u64, SpoolError> {
        let frame = frame(partition, bytes)?;
        let record = frame.len() as u64;
        if self.bytes + record > self.max_bytes {
            return Err(SpoolError::Full {
                bytes: self.bytes,
                max_bytes: self.max_bytes,
                record,
            });
        }
        let roll = match self.segments.back() {
            None => true,
            Some(last) => last.end() != self.next || last.bytes >= self.segment_bytes,
        };
        if roll || self.active.is_none() {
            if roll {
                let path = self.dir.join(segment_name(self.next));
                self.segments.push_back(Segment {
                    first: self.next,
                    count: 0,
                    bytes: 0,
                    path,
                });
            }
            let Some(last) = self.segments.back() else {
                unreachable_segment()?
            };
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&last.path)
                .map_err(io_err(&last.path))?;
            self.active = Some(file);
        }
        let (Some(file), Some(last)) = (self.active.as_mut(), self.segments.back_mut()) else {
            unreachable_segment()?
        };
        if let Err(source) = file.write_all(&frame) {
            // Cut a partial write so the file stays a sequence of whole records.
            let _ = file.set_len(last.bytes);
            self.active = None;
            return Err(SpoolError::Io {
                path: last.path.clone(),
                source,
            });
        }
        last.count += 1;
        last.bytes += record;
        self.bytes += record;
        let offset = self.next;
        self.next += 1;
        Ok(offset)
    }

    /// The oldest record not yet handed out, or `None` when none is pending. It stays on disk
    /// until acknowledged.
    ///
    /// # Errors
    ///
    /// The file could not be read, or it changed under the spool (reported, not skipped).
    pub fn next_record(&mut self) -> Result<Option<SpoolRecord>, SpoolError> {
        loop {
            let Some(record) = self.read_one()? else {
                return Ok(None);
            };
            if record.offset < self.redo_until && !self.redo.remove(&record.offset) {
                // Confirmed before the rewind: not again.
                self.outstanding.remove(&record.offset);
                continue;
            }
            return Ok(Some(record));
        }
    }

    fn read_one(&mut self) -> Result<Option<SpoolRecord>, SpoolError> {
        if self.read >= self.next {
            return Ok(None);
        }
        let Some(segment) = self.segments.iter().find(|s| s.end() > self.read) else {
            self.read = self.next;
            return Ok(None);
        };
        if segment.first > self.read {
            // A gap left by a truncated file: continue at the next one.
            self.read = segment.first;
            self.read_pos = Some(0);
        }
        let path = segment.path.clone();
        let end = segment.end();
        let changed = || SpoolError::Io {
            path: path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, "spool record changed"),
        };
        let pos = match self.read_pos {
            Some(pos) => pos,
            None => self.position_of(self.read).ok_or_else(changed)?,
        };
        let file = File::open(&path).map_err(io_err(&path))?;
        let mut header = [0u8; 8];
        file.read_exact_at(&mut header, pos)
            .map_err(io_err(&path))?;
        let (len, crc) = split_header(header);
        if !(4..=MAX_BODY_BYTES).contains(&len) {
            return Err(changed());
        }
        let mut body = vec![0u8; len as usize];
        file.read_exact_at(&mut body, pos + FRAME_BYTES)
            .map_err(io_err(&path))?;
        if crc32c_frame(len, &body) != crc {
            return Err(changed());
        }
        let partition = body
            .first_chunk::<4>()
            .map(|p| u32::from_le_bytes(*p))
            .ok_or_else(changed)?;
        body.drain(..4);
        let offset = self.read;
        self.outstanding.insert(offset);
        self.read += 1;
        self.read_pos = (self.read < end).then_some(pos + FRAME_BYTES + u64::from(len));
        Ok(Some(SpoolRecord {
            offset,
            partition,
            bytes: body,
        }))
    }

    /// Confirms delivery of a record handed out by [`Spool::next_record`]; deletes the files
    /// that hold only confirmed records.
    ///
    /// # Errors
    ///
    /// A file could not be deleted.
    pub fn ack(&mut self, offset: u64) -> Result<(), SpoolError> {
        self.outstanding.remove(&offset);
        self.release()
    }

    /// Gives back the record just handed out by [`Spool::next_record`] (the client refused it): the
    /// next call hands it out again.
    pub fn unread(&mut self, offset: u64) {
        if self.outstanding.remove(&offset) {
            if offset < self.redo_until {
                self.redo.insert(offset);
            }
            self.read = self.read.min(offset);
            self.read_pos = None;
        }
    }

    /// Makes every handed-out, unacknowledged record pending again (from the oldest), as when
    /// the client was purged at shutdown.
    pub fn rewind(&mut self) {
        if let Some(&first) = self.outstanding.first() {
            self.redo_until = self.redo_until.max(self.read);
            self.redo.append(&mut self.outstanding);
            self.read = first;
            self.read_pos = None;
        }
    }

    /// Puts `records` (oldest first) before every record of the spool: batches the client held
    /// in memory at shutdown, older than anything spooled. Only valid with nothing outstanding
    /// (after [`Spool::rewind`]).
    ///
    /// # Errors
    ///
    /// IO; `Full` is not checked here: those batches must not be dropped.
    pub fn prepend(&mut self, records: &[(u32, Vec<u8>)]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        self.rewind();
        self.trim_head()?;
        let count = records.len() as u64;
        let head = self.read;
        let first = head.saturating_sub(count);
        let path = self.dir.join(segment_name(first));
        let mut out = Vec::new();
        for (partition, bytes) in records {
            out.extend_from_slice(&frame(*partition, bytes)?);
        }
        let tmp = self.dir.join(format!("{first:020}.tmp"));
        fs::write(&tmp, &out).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        // Records of the old head file before `head` were confirmed; reading continues at
        // `head` in it once the new file is read (its position found by walking the frames).
        let bytes = out.len() as u64;
        self.segments.push_front(Segment {
            first,
            count,
            bytes,
            path,
        });
        self.bytes += bytes;
        self.read = first;
        self.read_pos = Some(0);
        self.redo.extend(first..head);
        if self.segments.len() == 1 {
            self.next = first + count;
        }
        self.write_acked()
    }

    /// Rewrites the first file without its confirmed records, so that it starts at `read`
    /// and records can be put before it without overlapping offsets or file names.
    fn trim_head(&mut self) -> Result<(), SpoolError> {
        let head = self.read;
        let Some(front) = self.segments.front() else {
            return Ok(());
        };
        if front.first >= head || front.end() <= head {
            return Ok(());
        }
        let pos = self.position_of(head).ok_or_else(|| SpoolError::Io {
            path: front.path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, "spool record changed"),
        })?;
        let old = front.path.clone();
        let data = fs::read(&old).map_err(io_err(&old))?;
        let kept = data
            .get(usize::try_from(pos).unwrap_or(usize::MAX)..)
            .unwrap_or_default();
        let path = self.dir.join(segment_name(head));
        let tmp = self.dir.join(format!("{head:020}.tmp"));
        fs::write(&tmp, kept).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        fs::remove_file(&old).map_err(io_err(&old))?;
        let last = self.segments.len() == 1;
        if let Some(front) = self.segments.front_mut() {
            self.bytes -= front.bytes - kept.len() as u64;
            front.count -= head - front.first;
            front.first = head;
            front.bytes = kept.len() as u64;
            front.path = path;
        }
        if last {
            self.active = None;
        }
        self.read_pos = Some(0);
        Ok(())
    }

    /// Forces the active file's records to disk (`fdatasync`), so that they survive a crash of
    /// the machine, not only of the process.
    ///
    /// # Errors
    ///
    /// IO.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if let (Some(file), Some(last)) = (self.active.as_ref(), self.segments.back()) {
            file.sync_data().map_err(io_err(&last.path))?;
        }
        Ok(())
    }

    /// Syncs the active file and records the first unconfirmed offset, so that a clean
    /// restart replays from there.
    ///
    /// # Errors
    ///
    /// IO.
    pub fn close(&mut self) -> Result<(), SpoolError> {
        self.rewind();
        if let (Some(file), Some(last)) = (self.active.as_ref(), self.segments.back()) {
            file.sync_all().map_err(io_err(&last.path))?;
        }
        self.write_acked()
    }

    fn write_acked(&self) -> Result<(), SpoolError> {
        let low = self.low_water();
        let mut buf = low.to_le_bytes().to_vec();
        buf.extend_from_slice(&crc32c(&low.to_le_bytes()).to_le_bytes());
        let path = self.dir.join(ACKED_FILE);
        let tmp = self.dir.join("ACKED.tmp");
        fs::write(&tmp, &buf).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    fn low_water(&self) -> u64 {
        self.outstanding.first().copied().unwrap_or(self.read)
    }

    fn release(&mut self) -> Result<(), SpoolError> {
        let low = self.low_water();
        let mut released = false;
        while let Some(first) = self.segments.front() {
            if first.end() > low {
                break;
            }
            // The last file is still appended to unless everything in it is confirmed and
            // nothing is pending: then it goes too and the next append starts a new one.
            if self.segments.len() == 1 {
                self.active = None;
            }
            if let Some(segment) = self.segments.pop_front() {
                fs::remove_file(&segment.path).map_err(io_err(&segment.path))?;
                self.bytes -= segment.bytes;
                released = true;
            }
        }
        if released {
            self.write_acked()?;
        }
        Ok(())
    }

    /// Byte position of record `offset` in its file, by walking the frames.
    fn position_of(&self, offset: u64) -> Option<u64> {
        let segment = self.segments.iter().find(|s| s.end() > offset)?;
        if segment.first >= offset {
            return Some(0);
        }
        let file = File::open(&segment.path).ok()?;
        let mut pos = 0;
        let mut at = segment.first;
        while at < offset {
            let mut header = [0u8; 8];
            file.read_exact_at(&mut header, pos).ok()?;
            let (len, _) = split_header(header);
            pos += FRAME_BYTES + u64::from(len);
            at += 1;
        }
        Some(pos)
    }
}

fn unreachable_segment<T>() -> Result<T, SpoolError> {
    Err(SpoolError::Io {
        path: PathBuf::new(),
        source: io::Error::other("spool: no active segment"),
    })
}

fn segment_name(first: u64) -> String {
    format!("{first:020}{SUFFIX}")
}

fn split_header(header: [u8; 8]) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = header;
    (
        u32::from_le_bytes([a, b, c, d]),
        u32::from_le_bytes([e, f, g, h]),
    )
}

fn frame(partition: u32, bytes: &[u8]) -> Result<Vec<u8>, SpoolError> {
    let len = u32::try_from(bytes.len() + 4)
        .ok()
        .filter(|l| *l <= MAX_BODY_BYTES)
        .ok_or(SpoolError::TooLarge(bytes.len()))?;
    let mut out = Vec::with_capacity(bytes.len() + 12);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&partition.to_le_bytes());
    out.extend_from_slice(bytes);
    let crc = crc32c_frame(len, out.get(8..).unwrap_or_default());
    if let Some(slot) = out.get_mut(4..8) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    Ok(out)
}

fn read_acked(path: &Path) -> Option<u64> {
    let buf = fs::read(path).ok()?;
    let (value, crc) = buf.split_at_checked(8)?;
    let value: [u8; 8] = value.try_into().ok()?;
    let crc: [u8; 4] = crc.try_into().ok()?;
    (crc32c(&value) == u32::from_le_bytes(crc)).then(|| u64::from_le_bytes(value))
}

struct Scan {
    count: u64,
    valid: u64,
    truncated: u64,
}

fn scan(path: &Path) -> Result<Scan, SpoolError> {
    let data = fs::read(path).map_err(io_err(path))?;
    let total = data.len() as u64;
    let mut pos = 0usize;
    let mut count = 0u64;
    while let Some(header) = data.get(pos..pos + 8) {
        let mut h = [0u8; 8];
        h.copy_from_slice(header);
        let (len, crc) = split_header(h);
        if !(4..=MAX_BODY_BYTES).contains(&len) {
            break;
        }
        let Some(body) = data.get(pos + 8..pos + 8 + len as usize) else {
            break;
        };
        if crc32c_frame(len, body) != crc {
            break;
        }
        pos += 8 + len as usize;
        count += 1;
    }
    Ok(Scan {
        count,
        valid: pos as u64,
        truncated: total - pos as u64,
    })
}

fn crc32c_frame(len: u32, body: &[u8]) -> u32 {
    crc32c_update(crc32c_update(!0, &len.to_le_bytes()), body) ^ !0
}

/// CRC-32C (Castagnoli, reflected `0x82F63B78`): `crc32c(b"123456789") == 0xE306_9283`.
fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_update(!0, bytes) ^ !0
}

static CRC_TABLE: [u32; 256] = crc_table();

// `i` stays below 256 in a 256-entry table; `get_mut` is not usable in a `const fn`.
#[allow(clippy::indexing_slicing)]
const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

fn crc32c_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        let index = usize::from((crc as u8) ^ b);
        crc = (crc >> 8) ^ CRC_TABLE.get(index).copied().unwrap_or(0);
    }
    crc
}

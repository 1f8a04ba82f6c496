//! The embedded journal: append-only segment files, one directory per stream, a CRC-32C per
//! record (DESIGN §4, docs/journal.md).
//!
//! ```text
//! <data>/journal/usage/00000000000000000000.seg   records 0..n      (sealed)
//!                      0000000000000000n.seg      records n..       (active: appended to)
//!                      LOCK                        held by the one writer
//! record: [len u32 LE][crc32c(len ‖ payload) u32 LE][payload]
//! ```
//!
//! - [`Journal`] is the one writer of a stream directory: it appends, rolls segments at a size,
//!   syncs by policy, deletes old sealed segments by retention, and at open finds a torn or
//!   corrupt tail in the active segment and truncates it ([`Recovery`]), so that it is never
//!   replayed.
//! - [`JournalReader`] reads from an offset and tails a journal another thread or process is
//!   appending to: it never returns a partially written record, follows segment rolls, and
//!   reports a corrupt record as an error with its offset ([`JournalError::Corrupt`]).
//! - [`sink`] is the thread that takes the cores' usage batches off a bounded channel and
//!   appends them to the `usage` stream.
//!
//! Offsets are record numbers, global and monotonic per stream; a segment's file name is the
//! offset of its first record. This module does blocking file IO and must never run on a core's
//! runtime: it belongs to the sink thread, the admin API's writer and the ledger.

mod crc;
mod reader;
mod segment;
pub mod sink;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub use reader::{JournalReader, Record, Skipped};
pub use segment::{Damage, HEADER_BYTES, MAX_RECORD_BYTES};

use segment::{frame_into, list_segments, scan, segment_name};

/// Default size at which the active segment is sealed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default interval of [`SyncPolicy::Every`].
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);

const LOCK_FILE: &str = "LOCK";

/// The journal's streams, each in its own subdirectory of the journal directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Encoded `UsageBatch`es (`tollgate.usage`).
    Usage,
    /// JSON `EntityEvent`s (`tollgate.entities`).
    Entities,
    /// JSON `TotalsRecord`s (`tollgate.totals`).
    Totals,
}

impl Stream {
    /// Every stream.
    pub const ALL: [Self; 3] = [Self::Usage, Self::Entities, Self::Totals];

    /// The subdirectory's name.
    #[must_use]
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Usage => "usage",
            Self::Entities => "entities",
            Self::Totals => "totals",
        }
    }

    /// The stream's directory under the journal directory `root`.
    #[must_use]
    pub fn dir(self, root: &Path) -> PathBuf {
        root.join(self.dir_name())
    }
}

/// When appended records are forced to disk (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// After every append (and every `append_batch`).
    Always,
    /// When [`Journal::sync_if_due`] finds this much time passed since the last sync; a crash
    /// of the machine (not of the process) loses at most that much.
    Every(Duration),
    /// Only on [`Journal::sync`]; the OS writes back when it likes.
    Never,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self::Every(DEFAULT_SYNC_INTERVAL)
    }
}

/// How a journal writes and what it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// Seal the active segment before a record would take it past this size (a record larger
    /// than this gets a segment of its own). Default 64 MiB.
    pub segment_bytes: u64,
    /// Default: every 100 ms.
    pub sync: SyncPolicy,
    /// Delete the oldest sealed segments while all segments together exceed this. Default: none.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments last written longer ago than this. Default: none.
    pub retention_age: Option<Duration>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            sync: SyncPolicy::default(),
            retention_bytes: None,
            retention_age: None,
        }
    }
}

/// What [`Journal::open`] found and cut at the end of the active segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The active segment it scanned.
    pub segment: PathBuf,
    /// Records in it, up to the last valid one (kept; corrupt ones inside included).
    pub records: u64,
    /// Bytes cut after them (0 after a clean shutdown).
    pub truncated_bytes: u64,
    /// What the first cut bytes were, when any were cut.
    pub damage: Option<Damage>,
    /// Records with a bad checksum inside the segment (valid records follow them): kept, not
    /// cut, so that offsets stay what readers counted; readers report them as corrupt.
    pub corrupt_kept: u64,
    /// The first offset still in the journal.
    pub first_offset: u64,
    /// The offset the next append gets.
    pub next_offset: u64,
}

/// Errors of the journal, its readers and its sink.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("journal {}: {op}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A record that can never be read: a bad checksum, an impossible length, or a sealed
    /// segment that ends inside a record. [`JournalReader::skip_corrupt`] steps over it.
    #[error(
        "journal {}: corrupt record at offset {offset} (byte {position}): {damage}",
        segment.display()
    )]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// The record's offset.
        offset: u64,
        /// Its byte position in the segment.
        position: u64,
        /// What is wrong.
        damage: Damage,
    },
    /// The requested offset was deleted by retention (or never existed below the first
    /// segment), or a segment is missing between two others.
    #[error("journal {}: offset {requested} is not in the journal (next available: {available})", dir.display())]
    OffsetGone {
        /// The stream directory.
        dir: PathBuf,
        /// The offset asked for or expected next.
        requested: u64,
        /// The first offset that is there.
        available: u64,
    },
    /// Another writer holds the stream directory.
    #[error("journal {}: locked by another writer{}", dir.display(), holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Locked {
        /// The stream directory.
        dir: PathBuf,
        /// The process holding it (from the lock file), when it could be told.
        holder: Option<String>,
    },
    /// A payload over [`MAX_RECORD_BYTES`].
    #[error("journal: a {len}-byte record exceeds the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// An earlier write failed and its partial bytes could not be cut: reopen the journal.
    #[error("journal {}: an earlier write failed and could not be undone; reopen it", dir.display())]
    Poisoned {
        /// The stream directory.
        dir: PathBuf,
    },
    /// The sink thread panicked.
    #[error("journal sink thread panicked")]
    SinkPanicked,
}

impl JournalError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io { op, path, source }
    }

    /// Whether trying again later (or after reopening) may succeed: IO errors and a poisoned
    /// journal; not corruption, a gone offset, a lock held by another writer or a record too
    /// large.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Poisoned { .. })
    }
}

#[derive(Debug)]
struct Segment {
    base: u64,
    path: PathBuf,
    bytes: u64,
}

/// The single writer of one stream directory (see the module docs).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    options: JournalOptions,
    /// Oldest first; the last is the active segment.
    segments: VecDeque<Segment>,
    active: File,
    next_offset: u64,
    unsynced: bool,
    last_sync: Instant,
    poisoned: bool,
    frames: Vec<u8>,
    /// Held for the journal's lifetime: the flock is released when it closes.
    _lock: File,
}

impl Journal {
    /// Opens (creating it if needed) the stream directory `dir`, takes its writer lock, and
    /// recovers the active segment: a torn or corrupt tail is cut and reported.
    ///
    /// # Errors
    ///
    /// [`JournalError::Locked`] if another writer has it open; [`JournalError::Io`] if a file
    /// operation fails.
    pub fn open(
        dir: impl AsRef<Path>,
        options: JournalOptions,
    ) -> Result<(Self, Recovery), JournalError> {
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(JournalError::io("create directory", &dir))?;
        let lock = lock_dir(&dir)?;
        let mut listed = list_segments(&dir).map_err(JournalError::io("list segments", &dir))?;
        if listed.is_empty() {
            let path = dir.join(segment_name(0));
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(JournalError::io("create segment", &path))?;
            sync_dir(&dir)?;
            listed.push((0, path));
        }
        let mut segments = VecDeque::with_capacity(listed.len());
        for (base, path) in listed {
            let bytes = fs::metadata(&path)
                .map_err(JournalError::io("stat segment", &path))?
                .len();
            segments.push_back(Segment { base, path, bytes });
        }
        let Some(last) = segments.back_mut() else {
            return Err(JournalError::Io {
                op: "list segments",
                path: dir,
                source: io::Error::other("no segment"),
            });
        };
        let active = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&last.path)
            .map_err(JournalError::io("open segment", &last.path))?;
        let found = scan(
            active
                .try_clone()
                .map_err(JournalError::io("open segment", &last.path))?,
            last.path.clone(),
        )
        .map_err(JournalError::io("read segment", &last.path))?;
        let truncated_bytes = last.bytes.saturating_sub(found.valid_bytes);
        if found.corrupt_kept > 0 {
            tracing::warn!(
                segment = %last.path.display(),
                corrupt = found.corrupt_kept,
                "journal: corrupt records inside the active segment, kept for readers to report"
            );
        }
        if truncated_bytes > 0 {
            active
                .set_len(found.valid_bytes)
                .map_err(JournalError::io("truncate torn tail", &last.path))?;
            active
                .sync_all()
                .map_err(JournalError::io("sync segment", &last.path))?;
            tracing::warn!(
                segment = %last.path.display(),
                records = found.records,
                truncated_bytes,
                damage = %found.damage.map_or_else(String::new, |d| d.to_string()),
                "journal: cut a torn or corrupt tail"
            );
        }
        last.bytes = found.valid_bytes;
        let next_offset = last.base + found.records;
        let recovery = Recovery {
            segment: last.path.clone(),
            records: found.records,
            truncated_bytes,
            damage: found.damage,
            corrupt_kept: found.corrupt_kept,
            first_offset: segments.front().map_or(0, |s| s.base),
            next_offset,
        };
        let journal = Self {
            dir,
            options,
            segments,
            active,
            next_offset,
            unsynced: false,
            last_sync: Instant::now(),
            poisoned: false,
            frames: Vec::new(),
            _lock: lock,
        };
        Ok((journal, recovery))
    }

    /// The stream directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options it was opened with.
    #[must_use]
    pub fn options(&self) -> &JournalOptions {
        &self.options
    }

    /// The oldest offset still in the journal.
    #[must_use]
    pub fn first_offset(&self) -> u64 {
        self.segments.front().map_or(self.next_offset, |s| s.base)
    }

    /// The offset the next append gets.
    #[must_use]
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Bytes in all segments.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Segment files, the active one included.
    #[must_use]
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Appends one record; returns its offset. Then syncs if the policy is
    /// [`SyncPolicy::Always`].
    ///
    /// # Errors
    ///
    /// [`JournalError::TooLarge`]; [`JournalError::Io`] if the write failed (nothing of the
    /// record stays in the file); [`JournalError::Poisoned`] if an earlier failure could not be
    /// undone.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, JournalError> {
        self.append_batch([payload]).map(|range| range.start)
    }

    /// Appends records in order, with one write per segment they land in and at most one sync;
    /// returns their offsets.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append). On an error, the records before the failing one may have
    /// been appended: [`next_offset`](Self::next_offset) says how many.
    pub fn append_batch<I>(&mut self, payloads: I) -> Result<Range<u64>, JournalError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        if self.poisoned {
            return Err(JournalError::Poisoned {
                dir: self.dir.clone(),
            });
        }
        let start = self.next_offset;
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        let result = self.frame_and_write(payloads, &mut frames);
        frames.clear();
        self.frames = frames;
        result?;
        if self.options.sync == SyncPolicy::Always && self.next_offset > start {
            self.sync()?;
        }
        Ok(start..self.next_offset)
    }

    /// Frames the payloads into `frames`, writing them out (and rolling) at segment boundaries.
    fn frame_and_write<I>(&mut self, payloads: I, frames: &mut Vec<u8>) -> Result<(), JournalError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut framed = 0u64;
        for payload in payloads {
            let payload = payload.as_ref();
            if payload.len() > MAX_RECORD_BYTES as usize {
                self.write_frames(frames, framed)?;
                return Err(JournalError::TooLarge { len: payload.len() });
            }
            let size = (HEADER_BYTES + payload.len()) as u64;
            let active = self.active_bytes() + frames.len() as u64;
            if active > 0 && active + size > self.options.segment_bytes {
                self.write_frames(frames, framed)?;
                frames.clear();
                framed = 0;
                self.roll()?;
            }
            frame_into(frames, payload);
            framed += 1;
        }
        self.write_frames(frames, framed)
    }

    fn active_bytes(&self) -> u64 {
        self.segments.back().map_or(0, |s| s.bytes)
    }

    /// Writes whole frames at the end of the active segment; on failure cuts what was written.
    fn write_frames(&mut self, frames: &[u8], records: u64) -> Result<(), JournalError> {
        if frames.is_empty() {
            return Ok(());
        }
        let Some(active) = self.segments.back_mut() else {
            return Ok(());
        };
        if let Err(source) = self.active.write_all_at(frames, active.bytes) {
            if self.active.set_len(active.bytes).is_err() {
                self.poisoned = true;
            }
            return Err(JournalError::Io {
                op: "append",
                path: active.path.clone(),
                source,
            });
        }
        active.bytes += frames.len() as u64;
        self.next_offset += records;
        self.unsynced = true;
        Ok(())
    }

    /// Seals the active segment (synced unless the policy is `Never`) and starts a new one, then
    /// applies retention.
    fn roll(&mut self) -> Result<(), JournalError> {
        if self.options.sync != SyncPolicy::Never {
            self.sync()?;
        }
        let path = self.dir.join(segment_name(self.next_offset));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(JournalError::io("create segment", &path))?;
        if self.options.sync != SyncPolicy::Never {
            sync_dir(&self.dir)?;
        }
        tracing::debug!(segment = %path.display(), "journal: rolled");
        self.active = file;
        self.unsynced = false;
        self.segments.push_back(Segment {
            base: self.next_offset,
            path,
            bytes: 0,
        });
        if let Err(err) = self.enforce_retention(SystemTime::now()) {
            tracing::warn!(error = %err, "journal: retention failed");
        }
        Ok(())
    }

    /// The first offset of the active segment: it changes when the journal rolls.
    #[must_use]
    pub fn active_base(&self) -> u64 {
        self.segments.back().map_or(self.next_offset, |s| s.base)
    }

    /// A second handle on the active segment, for a thread that syncs it in the background (the
    /// sink's syncer) while this one keeps appending. After a roll ([`active_base`](Self::active_base)
    /// changes) ask again: the sealed segment was synced by the roll itself.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] if the descriptor cannot be duplicated.
    pub fn active_file(&self) -> Result<File, JournalError> {
        self.active
            .try_clone()
            .map_err(JournalError::io("dup segment", &self.dir))
    }

    /// Forces appended records to disk.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] if `fdatasync` fails.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if self.unsynced {
            let path = self.segments.back().map(|s| s.path.as_path());
            self.active
                .sync_data()
                .map_err(JournalError::io("sync", path.unwrap_or(&self.dir)))?;
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs if the policy says it is time (`Every(d)`: `d` since the last sync, with records
    /// unsynced); returns whether it synced. The owner calls it on a timer.
    ///
    /// # Errors
    ///
    /// As [`sync`](Self::sync).
    pub fn sync_if_due(&mut self, now: Instant) -> Result<bool, JournalError> {
        let due = match self.options.sync {
            SyncPolicy::Every(every) => {
                self.unsynced && now.saturating_duration_since(self.last_sync) >= every
            }
            SyncPolicy::Always => self.unsynced,
            SyncPolicy::Never => false,
        };
        if due {
            self.sync()?;
        }
        Ok(due)
    }

    /// Deletes the oldest sealed segments while the journal exceeds `retention_bytes` or they
    /// were last written before `now - retention_age`. Never the active segment; always from
    /// the oldest, so the retained offsets stay contiguous. Returns how many it deleted.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] if a segment cannot be inspected or deleted.
    pub fn enforce_retention(&mut self, now: SystemTime) -> Result<usize, JournalError> {
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let Some(oldest) = self.segments.front() else {
                break;
            };
            let over_size = self
                .options
                .retention_bytes
                .is_some_and(|max| self.total_bytes() > max);
            let too_old = match self.options.retention_age {
                Some(age) => {
                    let modified = fs::metadata(&oldest.path)
                        .and_then(|m| m.modified())
                        .map_err(JournalError::io("stat segment", &oldest.path))?;
                    now.duration_since(modified).is_ok_and(|d| d > age)
                }
                None => false,
            };
            if !(over_size || too_old) {
                break;
            }
            fs::remove_file(&oldest.path)
                .map_err(JournalError::io("delete segment", &oldest.path))?;
            tracing::debug!(segment = %oldest.path.display(), "journal: retention deleted");
            self.segments.pop_front();
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// Takes an exclusive `flock` on `dir/LOCK`, so that two writers never append to one stream,
/// and writes this process's pid into it, so that a second writer can name the first.
fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    use std::os::fd::AsRawFd;

    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(JournalError::io("open lock", &path))?;
    // SAFETY: flock takes a file descriptor, which `file` owns and keeps open for the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            return Err(JournalError::Locked {
                dir: dir.to_owned(),
                holder: crate::holder::describe(&path),
            });
        }
        return Err(JournalError::Io {
            op: "lock",
            path,
            source: err,
        });
    }
    // Best effort: naming the holder only improves another writer's error.
    if let Err(e) = crate::holder::write_into(&mut file) {
        tracing::debug!(lock = %path.display(), error = %e, "journal: pid not written into the lock file");
    }
    Ok(file)
}

/// Makes a created or deleted directory entry durable.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(JournalError::io("sync directory", dir))
}

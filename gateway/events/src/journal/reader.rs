//! Reading a stream from an offset, and tailing it while its writer appends.
//!
//! The reader only ever returns a record whose length, checksum and payload are all on disk.
//! At the end of what is written it returns `Ok(None)` and forgets the bytes of any partial
//! record, so the next call reads them afresh (a writer that truncated a torn tail and wrote new
//! records there is read correctly). A segment is known to be complete once its successor
//! exists: the writer never appends to a segment after creating the next one, so the reader
//! reads it to its end once more, then moves on; bytes left over in a complete segment are a
//! corrupt record, not a torn one.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::JournalError;
use super::segment::{Cursor, Damage, Step, frame_len, list_segments, segment_name};

/// One record, borrowed from the reader's buffer until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its offset in the stream.
    pub offset: u64,
    /// Its payload.
    pub payload: &'a [u8],
}

/// What [`JournalReader::skip_corrupt`] stepped over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Offset of the corrupt record.
    pub offset: u64,
    /// The offset the reader goes on from: `offset + 1` when the bad record's length could be
    /// trusted, else the next segment's first offset (the rest of the segment was skipped).
    pub next_offset: u64,
    /// The skipped bytes, frame headers included, for quarantine.
    pub raw: Vec<u8>,
}

/// A reader of one stream directory (see the module docs). Any number of readers may read a
/// stream while its one [`Journal`](super::Journal) appends, from other threads or processes.
#[derive(Debug)]
pub struct JournalReader {
    dir: PathBuf,
    /// First offset of the current segment.
    base: u64,
    cursor: Cursor,
    /// Offset of the record at the cursor.
    next_offset: u64,
    /// Records below this offset are read but not returned.
    from: u64,
    /// The next segment's first offset, once it exists: the current segment is then complete.
    sealed: Option<u64>,
    /// A corrupt record the reader is stopped at: its damage and byte position.
    corrupt: Option<(Damage, u64)>,
    /// Position of a bad checksum already read twice.
    retried: Option<u64>,
    /// Polls that found no new record, to pace directory listings.
    misses: u32,
}

/// Every this many empty polls, the reader lists the directory to find a successor segment
/// whose name it did not expect (a gap, or a roll it has not read up to yet).
const LIST_EVERY: u32 = 16;

impl JournalReader {
    /// A reader of the stream in `dir` whose first record will be `from_offset` (or the first
    /// one written later, if the journal has not reached it yet).
    ///
    /// # Errors
    ///
    /// [`JournalError::OffsetGone`] if `from_offset` is below the first retained offset;
    /// [`JournalError::Io`] if the directory has no segment (the writer creates the first one
    /// when it opens) or cannot be read.
    pub fn open(dir: impl AsRef<Path>, from_offset: u64) -> Result<Self, JournalError> {
        let dir = dir.as_ref().to_owned();
        let segments = list_segments(&dir).map_err(JournalError::io("list segments", &dir))?;
        let Some(&(first, _)) = segments.first() else {
            return Err(JournalError::Io {
                op: "open reader",
                path: dir,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no segment"),
            });
        };
        if from_offset < first {
            return Err(JournalError::OffsetGone {
                dir,
                requested: from_offset,
                available: first,
            });
        }
        let base = segments
            .iter()
            .rev()
            .map(|(base, _)| *base)
            .find(|base| *base <= from_offset)
            .unwrap_or(first);
        let cursor = open_cursor(&dir, base)?;
        Ok(Self {
            dir,
            base,
            cursor,
            next_offset: base,
            from: from_offset,
            sealed: None,
            corrupt: None,
            retried: None,
            misses: 0,
        })
    }

    /// A reader from `from_offset`, or from the first retained record when retention deleted
    /// `from_offset` already; returns the reader and, in that case, the first retained offset
    /// (the caller says what the skipped records mean).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), [`JournalError::OffsetGone`] aside.
    pub fn open_retained(
        dir: impl AsRef<Path>,
        from_offset: u64,
    ) -> Result<(Self, Option<u64>), JournalError> {
        match Self::open(dir.as_ref(), from_offset) {
            Err(JournalError::OffsetGone { available, .. }) => {
                Ok((Self::open(dir, available)?, Some(available)))
            }
            other => other.map(|reader| (reader, None)),
        }
    }

    /// The offset of the next record [`next_record`](Self::next_record) returns.
    #[must_use]
    pub fn next_offset(&self) -> u64 {
        self.next_offset.max(self.from)
    }

    /// The next record, or `None` when the reader has caught up with the writer (call again
    /// later: it tails).
    ///
    /// # Errors
    ///
    /// [`JournalError::Corrupt`] at a record that can never be read (returned again on every
    /// call until [`skip_corrupt`](Self::skip_corrupt)); [`JournalError::OffsetGone`] if the
    /// next segment was deleted before the reader reached it; [`JournalError::Io`].
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, JournalError> {
        if let Some((damage, position)) = self.corrupt {
            return Err(self.corrupt_error(damage, position));
        }
        loop {
            let step = self
                .cursor
                .next_step()
                .map_err(JournalError::io("read segment", self.cursor.path()))?;
            match step {
                Step::Record(range) => {
                    let offset = self.next_offset;
                    self.next_offset += 1;
                    self.retried = None;
                    self.misses = 0;
                    if offset < self.from {
                        continue;
                    }
                    return Ok(Some(Record {
                        offset,
                        payload: self.cursor.payload(range),
                    }));
                }
                Step::Bad(Damage::BadChecksum) if self.retried != Some(self.cursor.pos()) => {
                    // Bytes buffered before the writer truncated a torn tail and wrote anew
                    // there would fail the checksum: read them once more before judging.
                    self.retried = Some(self.cursor.pos());
                    self.cursor.drop_lookahead();
                }
                Step::Bad(damage) => return Err(self.stop_at_corrupt(damage)),
                Step::End(partial) => match self.sealed {
                    None => {
                        self.cursor.drop_lookahead();
                        match self.successor(false)? {
                            // Complete now: read it to its end once more, then move on.
                            Some(next) => self.sealed = Some(next),
                            None => return Ok(None),
                        }
                    }
                    Some(next) => {
                        if let Some(damage) = partial {
                            return Err(self.stop_at_corrupt(damage));
                        }
                        if next != self.next_offset {
                            return Err(JournalError::OffsetGone {
                                dir: self.dir.clone(),
                                requested: self.next_offset,
                                available: next,
                            });
                        }
                        self.switch_to(next)?;
                    }
                },
            }
        }
    }

    /// Steps over the corrupt record the reader is stopped at and returns its bytes for
    /// quarantine; `None` if it is not stopped at one.
    ///
    /// A record whose checksum is wrong but whose length fits in the file is skipped alone
    /// (offsets stay exact, unless the length itself was damaged). Otherwise the rest of the
    /// segment is skipped, once the next segment exists.
    ///
    /// # Errors
    ///
    /// The [`JournalError::Corrupt`] again if the rest of the active segment would have to be
    /// skipped (no later segment yet: try again after the writer rolls); [`JournalError::Io`].
    pub fn skip_corrupt(&mut self) -> Result<Option<Skipped>, JournalError> {
        let Some((damage, position)) = self.corrupt else {
            return Ok(None);
        };
        let offset = self.next_offset;
        if damage == Damage::BadChecksum {
            let frame = self.cursor.buffered();
            if let Some(raw) = frame_len(frame).and_then(|len| frame.get(..len)) {
                let raw = raw.to_vec();
                self.cursor.advance(raw.len());
                self.next_offset += 1;
                self.corrupt = None;
                self.retried = None;
                return Ok(Some(Skipped {
                    offset,
                    next_offset: self.next_offset,
                    raw,
                }));
            }
        }
        let next = match self.sealed {
            Some(next) => Some(next),
            None => self.successor(true)?,
        };
        let Some(next) = next else {
            return Err(self.corrupt_error(damage, position));
        };
        let path = self.cursor.path().to_owned();
        let raw = std::fs::read(&path)
            .map_err(JournalError::io("read segment", &path))?
            .get(usize::try_from(position).unwrap_or(usize::MAX)..)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        self.switch_to(next)?;
        Ok(Some(Skipped {
            offset,
            next_offset: next,
            raw,
        }))
    }

    fn stop_at_corrupt(&mut self, damage: Damage) -> JournalError {
        let position = self.cursor.pos();
        self.corrupt = Some((damage, position));
        self.corrupt_error(damage, position)
    }

    fn corrupt_error(&self, damage: Damage, position: u64) -> JournalError {
        JournalError::Corrupt {
            segment: self.cursor.path().to_owned(),
            offset: self.next_offset,
            position,
            damage,
        }
    }

    /// The first offset of the segment after the current one, if it exists yet. Unless
    /// `list_now`, the directory is listed only every [`LIST_EVERY`] calls.
    fn successor(&mut self, list_now: bool) -> Result<Option<u64>, JournalError> {
        // The next segment starts where this one ends; on an empty segment that is this
        // segment's own base, which is not a successor (switching to it would loop forever).
        if self.next_offset > self.base && self.dir.join(segment_name(self.next_offset)).exists() {
            return Ok(Some(self.next_offset));
        }
        self.misses = self.misses.wrapping_add(1);
        if !list_now && self.misses % LIST_EVERY != 0 {
            return Ok(None);
        }
        let segments =
            list_segments(&self.dir).map_err(JournalError::io("list segments", &self.dir))?;
        Ok(segments
            .iter()
            .map(|(base, _)| *base)
            .find(|base| *base > self.base))
    }

    fn switch_to(&mut self, base: u64) -> Result<(), JournalError> {
        self.cursor = open_cursor(&self.dir, base)?;
        self.base = base;
        self.next_offset = base;
        self.sealed = None;
        self.corrupt = None;
        self.retried = None;
        self.misses = 0;
        Ok(())
    }
}

fn open_cursor(dir: &Path, base: u64) -> Result<Cursor, JournalError> {
    let path = dir.join(segment_name(base));
    let file = File::open(&path).map_err(JournalError::io("open segment", &path))?;
    Ok(Cursor::new(file, path, 0))
}

//! Per-core usage tallies in `MAP_SHARED` files: what a killed process counted survives it, and
//! the next start journals exactly what never reached the usage journal.
//!
//! ```text
//! <data_dir>/tally/<epoch>-<core>.tally     one file per core and run (boot epoch)
//!   header (1 KiB)   magic, epoch, core, partitions, created_ms, last_ms, journal_from, node id
//!   record r (1 KiB) state, first_sequence, partition | identity length, identity checksum,
//!                    17 cumulative counters (UsageCounters' fields), the identity's bytes
//! ```
//!
//! **Writing** (a core, [`Tally`] as the accumulator's [`UsageMirror`]): a new identity gets a
//! record (identity bytes and checksum first, then `state = VALID`); every call adds to the
//! record's cumulative counters with plain loads and stores (relaxed atomics on memory only this
//! core writes: no lock, no read-modify-write instruction, no syscall, no allocation). An admitted
//! call is added before its response is written. Pages of a `MAP_SHARED` file mapping belong to
//! the page cache, not to the process: a SIGKILL loses none of it. A record is cleared when its
//! identity is forgotten, 10 minutes after its last batch was handed to the sink.
//!
//! **Recovering** ([`recover`], at start, before the sink runs and before the quota restore):
//! for each file of a previous run, the journal is read from the offset the run started at, and
//! every batch of that `(node, epoch, core)` is summed per identity, counting only sequences at
//! or after the record's `first_sequence` (an identity forgotten and seen again starts over).
//! What the file counted minus what the journal holds (per counter, never below 0) is appended
//! as one batch per partition with the next sequence of that producer, then the journal is
//! synced and only then the files deleted. Every crash instant:
//! - between counting and a flush, or with batches still in the sink's channel: the journal
//!   lacks them, the difference carries them;
//! - in the middle of a journal write: the torn tail is truncated at open, as above;
//! - after the journal write: the sum covers them, the difference is 0 (nothing to clear);
//! - during recovery, before its batches are written, or after them but before the files are
//!   deleted: the next start computes the difference again, against a journal that now holds the
//!   recovery batches (difference 0: never journaled twice);
//! - while a record is being opened: its state is not `VALID` yet and it has counted nothing.
//!
//! A machine crash is weaker: unsynced pages of the file and the journal may both be lost. The
//! journal keeps everything before its last fsync (every 100 ms), and the clamp at 0 means a file
//! older than the journal adds nothing: at most the journal's fsync interval is lost.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gateway_core::usage::{Outcome, UsageMirror};
use gateway_model::event::{
    RejectReason, UsageBatch, UsageCounters, UsageDecoder, UsageEntry, encode,
};

use crate::journal::{Journal, JournalReader};

/// The tally files' directory under a node's data directory.
#[must_use]
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tally")
}

const WORD: usize = 8;
const HEADER_WORDS: usize = 128;
const RECORD_WORDS: usize = 128;
/// Records per file: identities alive on a core at once (idle ones are forgotten after 10 min).
/// The file is sparse: only records in use take disk and memory.
pub const CAPACITY: u32 = 16_384;

const FILE_MAGIC: u64 = u64::from_le_bytes(*b"TGTALLY1");
const VALID: u64 = u64::from_le_bytes(*b"TALLY_OK");

// Header words.
const H_MAGIC: usize = 0;
const H_EPOCH: usize = 1;
const H_CORE: usize = 2;
const H_PARTITIONS: usize = 3;
const H_CREATED: usize = 4;
const H_LAST: usize = 5;
const H_JOURNAL_FROM: usize = 6;
const H_CAPACITY: usize = 7;
const H_NODE_LEN: usize = 8;
const H_NODE: usize = 9;
const MAX_NODE_BYTES: usize = (HEADER_WORDS - H_NODE) * WORD;

// Record words.
const R_STATE: usize = 0;
const R_FIRST_SEQ: usize = 1;
const R_PARTITION_LEN: usize = 2;
const R_CHECKSUM: usize = 3;
const R_COUNTERS: usize = 4;
const COUNTERS: usize = 17;
const R_IDENT: usize = R_COUNTERS + COUNTERS;
const MAX_IDENT_BYTES: usize = (RECORD_WORDS - R_IDENT) * WORD;

// Counter indexes (UsageCounters' fields in order).
const C_ADMITTED: usize = 0;
const C_REJECTED: usize = 1;
const C_BYTES_IN: usize = 10;
const C_BYTES_OUT: usize = 11;
const C_STATUS: usize = 12;

const FILE_BYTES: usize = (HEADER_WORDS + CAPACITY as usize * RECORD_WORDS) * WORD;

/// A shared, writable mapping of a whole file. The only unsafe code of the tally.
struct Mapping {
    ptr: std::ptr::NonNull<libc::c_void>,
    words: usize,
}

impl Mapping {
    /// Maps `file` (already `len` bytes long) shared and writable.
    #[allow(unsafe_code)]
    fn new(file: &std::fs::File, len: usize) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), of a file descriptor
        // that is open for the duration of the call; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self {
            ptr,
            words: len / WORD,
        })
    }

    /// The mapping as words.
    #[allow(unsafe_code)]
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is `words * 8` bytes, readable and writable, page-aligned (so
        // aligned for `AtomicU64`, which has `u64`'s layout), and stays mapped until `self` is
        // dropped, which the returned borrow cannot outlive. Other processes only read the file
        // once this one is dead (the node's journal lock keeps two processes from one data
        // directory), so within the process these atomics are the only access.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU64>(), self.words) }
    }
}

impl Drop for Mapping {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `new` mapped; no borrow of it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr(), self.words * WORD);
        }
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("words", &self.words)
            .finish()
    }
}

/// Who writes a tally file.
#[derive(Debug, Clone)]
pub struct TallyOwner<'a> {
    /// Node id.
    pub node: &'a str,
    /// Boot epoch of this run.
    pub epoch: u64,
    /// The core.
    pub core: u16,
    /// Usage partitions.
    pub partitions: u32,
    /// The usage journal's next offset when this run started (recovery reads from there).
    pub journal_from: u64,
    /// Now, ms.
    pub now_ms: i64,
}

/// One core's tally file (or none: [`Tally::none`] counts in memory only).
#[derive(Debug)]
pub struct Tally {
    map: Option<Mapping>,
}

impl Tally {
    /// No file: the accumulator counts in memory only.
    #[must_use]
    pub fn none() -> Self {
        Self { map: None }
    }

    /// Creates this core's file in `dir` and maps it.
    ///
    /// # Errors
    /// When the file cannot be created, sized or mapped, or the node id is too long for it.
    pub fn create(dir: &Path, owner: &TallyOwner<'_>) -> io::Result<Self> {
        if owner.node.len() > MAX_NODE_BYTES {
            return Err(io::Error::other("node id too long for a tally file"));
        }
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}-{}.tally", owner.epoch, owner.core));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.set_len(FILE_BYTES as u64)?;
        let map = Mapping::new(&file, FILE_BYTES)?;
        let w = map.words();
        let set = |i: usize, v: u64| {
            if let Some(word) = w.get(i) {
                word.store(v, Ordering::Relaxed);
            }
        };
        set(H_EPOCH, owner.epoch);
        set(H_CORE, u64::from(owner.core));
        set(H_PARTITIONS, u64::from(owner.partitions.max(1)));
        set(H_CREATED, owner.now_ms as u64);
        set(H_LAST, owner.now_ms as u64);
        set(H_JOURNAL_FROM, owner.journal_from);
        set(H_CAPACITY, u64::from(CAPACITY));
        set(H_NODE_LEN, owner.node.len() as u64);
        store_bytes(w, H_NODE, owner.node.as_bytes());
        if let Some(word) = w.get(H_MAGIC) {
            word.store(FILE_MAGIC, Ordering::Release);
        }
        // The file's name must be durable for a machine crash not to lose the whole tally.
        file.sync_all()?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(Self { map: Some(map) })
    }

    /// Stamps the time of the core's last tick (the recovery batch's window end).
    pub fn touch(&self, now_ms: i64) {
        if let Some(w) = self.map.as_ref().and_then(|m| m.words().get(H_LAST)) {
            w.store(now_ms as u64, Ordering::Relaxed);
        }
    }

    fn record(&self, record: u32) -> Option<&[AtomicU64]> {
        if record >= CAPACITY {
            return None;
        }
        let base = HEADER_WORDS + record as usize * RECORD_WORDS;
        self.map.as_ref()?.words().get(base..base + RECORD_WORDS)
    }
}

/// Adds `n` to a word only this thread writes: a load and a store, no locked instruction.
#[inline]
fn bump(words: &[AtomicU64], i: usize, n: u64) {
    if let Some(w) = words.get(i) {
        w.store(w.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

fn reason_index(reason: RejectReason) -> usize {
    match reason {
        RejectReason::Auth => 0,
        RejectReason::Disabled => 1,
        RejectReason::NotAuthorized => 2,
        RejectReason::Restriction => 3,
        RejectReason::ReadOnly => 4,
        RejectReason::Throttled => 5,
        RejectReason::QuotaDaily => 6,
        RejectReason::QuotaMonthly => 7,
        RejectReason::Other => 8,
    }
}

impl UsageMirror for Tally {
    fn open(
        &mut self,
        record: u32,
        entry: &UsageEntry,
        partition: u32,
        first_sequence: u64,
    ) -> bool {
        let mut ident = Vec::with_capacity(128);
        if !encode_identity(entry, &mut ident) {
            return false;
        }
        let Some(w) = self.record(record) else {
            return false;
        };
        let set = |i: usize, v: u64| {
            if let Some(word) = w.get(i) {
                word.store(v, Ordering::Relaxed);
            }
        };
        // Not valid while it is rewritten (a crash here leaves a record recovery skips).
        if let Some(state) = w.get(R_STATE) {
            state.store(0, Ordering::Release);
        }
        set(R_FIRST_SEQ, first_sequence);
        set(
            R_PARTITION_LEN,
            u64::from(partition) | ((ident.len() as u64) << 32),
        );
        set(R_CHECKSUM, checksum(&ident));
        for c in 0..COUNTERS {
            set(R_COUNTERS + c, 0);
        }
        store_bytes(w, R_IDENT, &ident);
        if let Some(state) = w.get(R_STATE) {
            state.store(VALID, Ordering::Release);
        }
        true
    }

    #[inline]
    fn count(
        &mut self,
        record: u32,
        outcome: Option<Outcome>,
        bytes_in: u64,
        bytes_out: u64,
        status: u16,
    ) {
        let Some(w) = self.record(record) else {
            return;
        };
        let Some(counters) = w.get(R_COUNTERS..R_COUNTERS + COUNTERS) else {
            return;
        };
        match outcome {
            Some(Outcome::Admitted) => bump(counters, C_ADMITTED, 1),
            Some(Outcome::Rejected(reason)) => bump(counters, C_REJECTED + reason_index(reason), 1),
            None => {}
        }
        if bytes_in != 0 {
            bump(counters, C_BYTES_IN, bytes_in);
        }
        if bytes_out != 0 {
            bump(counters, C_BYTES_OUT, bytes_out);
        }
        if let class @ 1..=5 = status / 100 {
            bump(counters, C_STATUS + usize::from(class) - 1, 1);
        }
    }

    fn close(&mut self, record: u32) {
        if let Some(state) = self.record(record).and_then(|w| w.get(R_STATE)) {
            state.store(0, Ordering::Release);
        }
    }
}

/// Packs `bytes` into words from `at` (little-endian, zero-padded).
fn store_bytes(words: &[AtomicU64], at: usize, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(WORD).enumerate() {
        let mut word = [0u8; WORD];
        for (d, s) in word.iter_mut().zip(chunk) {
            *d = *s;
        }
        if let Some(w) = words.get(at + i) {
            w.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
    }
}

/// FNV-1a, 64 bits: tells a whole identity from a torn or stale one (not a defence against
/// forgery: the file is the node's own).
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// day, month (u32 LE), then apikey, api, route, consumer, subscription, each a u16 LE length
/// (`0xffff`: none) and the bytes. False when it does not fit a record.
fn encode_identity(e: &UsageEntry, out: &mut Vec<u8>) -> bool {
    out.extend_from_slice(&e.day.to_le_bytes());
    out.extend_from_slice(&e.month.to_le_bytes());
    for s in [
        Some(e.apikey.as_str()),
        e.api.as_deref(),
        Some(e.route.as_str()),
        e.consumer.as_deref(),
        e.subscription.as_deref(),
    ] {
        match s {
            Some(s) if s.len() < 0xffff => {
                out.extend_from_slice(&(s.len() as u16).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Some(_) => return false,
            None => out.extend_from_slice(&0xffffu16.to_le_bytes()),
        }
    }
    out.len() <= MAX_IDENT_BYTES
}

fn decode_identity(mut b: &[u8]) -> Option<UsageEntry> {
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = b.split_at_checked(n)?;
        b = rest;
        Some(head)
    };
    let day = u32::from_le_bytes(take(4)?.try_into().ok()?);
    let month = u32::from_le_bytes(take(4)?.try_into().ok()?);
    let mut strings: [Option<String>; 5] = Default::default();
    for s in &mut strings {
        let len = u16::from_le_bytes(take(2)?.try_into().ok()?);
        if len != 0xffff {
            *s = Some(String::from_utf8(take(usize::from(len))?.to_vec()).ok()?);
        }
    }
    let [apikey, api, route, consumer, subscription] = strings;
    Some(UsageEntry {
        apikey: apikey?,
        api,
        route: route?,
        consumer,
        subscription,
        day,
        month,
        counters: UsageCounters::default(),
    })
}

fn counters_from(words: &[u64]) -> UsageCounters {
    let at = |i: usize| words.get(i).copied().unwrap_or(0);
    let mut c = UsageCounters {
        admitted: at(C_ADMITTED),
        bytes_in: at(C_BYTES_IN),
        bytes_out: at(C_BYTES_OUT),
        ..UsageCounters::default()
    };
    for reason in RejectReason::ALL {
        c.rejected
            .add(reason, at(C_REJECTED + reason_index(reason)));
    }
    c.status.informational = at(C_STATUS);
    c.status.success = at(C_STATUS + 1);
    c.status.redirection = at(C_STATUS + 2);
    c.status.client_error = at(C_STATUS + 3);
    c.status.server_error = at(C_STATUS + 4);
    c
}

/// `a - b` per counter, never below 0.
fn minus(a: &UsageCounters, b: &UsageCounters) -> UsageCounters {
    let mut r = UsageCounters {
        admitted: a.admitted.saturating_sub(b.admitted),
        bytes_in: a.bytes_in.saturating_sub(b.bytes_in),
        bytes_out: a.bytes_out.saturating_sub(b.bytes_out),
        ..UsageCounters::default()
    };
    for reason in RejectReason::ALL {
        r.rejected.add(
            reason,
            a.rejected
                .get(reason)
                .saturating_sub(b.rejected.get(reason)),
        );
    }
    r.status.informational = a
        .status
        .informational
        .saturating_sub(b.status.informational);
    r.status.success = a.status.success.saturating_sub(b.status.success);
    r.status.redirection = a.status.redirection.saturating_sub(b.status.redirection);
    r.status.client_error = a.status.client_error.saturating_sub(b.status.client_error);
    r.status.server_error = a.status.server_error.saturating_sub(b.status.server_error);
    r
}

/// One file of a previous run, read back.
#[derive(Debug)]
struct Image {
    path: PathBuf,
    node: String,
    epoch: u64,
    core: u16,
    partitions: u32,
    created_ms: i64,
    last_ms: i64,
    journal_from: u64,
    /// (partition, first_sequence, identity with the cumulative counters)
    records: Vec<(u32, u64, UsageEntry)>,
}

fn read_image(path: &Path) -> io::Result<Option<Image>> {
    let bytes = std::fs::read(path)?;
    let words: Vec<u64> = bytes
        .chunks_exact(WORD)
        .map(|c| c.try_into().map_or(0, u64::from_le_bytes))
        .collect();
    let at = |i: usize| words.get(i).copied().unwrap_or(0);
    if at(H_MAGIC) != FILE_MAGIC {
        return Ok(None);
    }
    let node_len = usize::try_from(at(H_NODE_LEN)).unwrap_or(usize::MAX);
    let Some(node) = bytes
        .get(H_NODE * WORD..)
        .and_then(|b| b.get(..node_len))
        .and_then(|b| std::str::from_utf8(b).ok())
    else {
        return Ok(None);
    };
    let capacity = usize::try_from(at(H_CAPACITY)).unwrap_or(0);
    let mut records = Vec::new();
    for r in 0..capacity {
        let base = HEADER_WORDS + r * RECORD_WORDS;
        if base + RECORD_WORDS > words.len() {
            break;
        }
        if at(base + R_STATE) != VALID {
            continue;
        }
        let pl = at(base + R_PARTITION_LEN);
        let partition = (pl & 0xffff_ffff) as u32;
        let len = (pl >> 32) as usize;
        let Some(ident) = bytes
            .get((base + R_IDENT) * WORD..)
            .and_then(|b| b.get(..len.min(MAX_IDENT_BYTES)))
        else {
            continue;
        };
        if len > MAX_IDENT_BYTES || checksum(ident) != at(base + R_CHECKSUM) {
            continue;
        }
        let Some(mut entry) = decode_identity(ident) else {
            continue;
        };
        entry.counters = counters_from(
            words
                .get(base + R_COUNTERS..base + R_COUNTERS + COUNTERS)
                .unwrap_or_default(),
        );
        records.push((partition, at(base + R_FIRST_SEQ), entry));
    }
    Ok(Some(Image {
        path: path.to_owned(),
        node: node.to_owned(),
        epoch: at(H_EPOCH),
        core: u16::try_from(at(H_CORE)).unwrap_or(u16::MAX),
        partitions: u32::try_from(at(H_PARTITIONS)).unwrap_or(1).max(1),
        created_ms: at(H_CREATED) as i64,
        last_ms: at(H_LAST) as i64,
        journal_from: at(H_JOURNAL_FROM),
        records,
    }))
}

/// What [`recover`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Tally files of previous runs read (and deleted).
    pub files: usize,
    /// Batches appended to the journal.
    pub batches: usize,
    /// Entries in them.
    pub entries: usize,
    /// Admitted calls they carry (counted, never journaled before).
    pub admitted: u64,
    /// Files that were not tally files (left in place, renamed `*.bad`).
    pub bad: usize,
}

type IdentKey = (
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    u32,
);

fn ident_key(e: &UsageEntry) -> IdentKey {
    (
        e.apikey.clone(),
        e.api.clone(),
        e.route.clone(),
        e.consumer.clone(),
        e.subscription.clone(),
        e.day,
    )
}

/// Journals what the tally files of previous runs in `dir` counted and the journal lacks, then
/// deletes them (module docs). Runs at start, with the usage journal open for writing and before
/// anything else appends to it.
///
/// # Errors
/// When a file cannot be read or the journal cannot be read, written or synced: nothing is
/// deleted then, and the next start tries again.
pub fn recover(dir: &Path, journal: &mut Journal) -> io::Result<Recovered> {
    let mut report = Recovered::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(e),
    };
    let mut images = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("tally") {
            continue;
        }
        match read_image(&path)? {
            Some(image) => images.push(image),
            None => {
                // A file created but killed before its header was written holds nothing.
                report.bad += 1;
                let _ = std::fs::rename(&path, path.with_extension("bad"));
            }
        }
    }
    if images.is_empty() {
        return Ok(report);
    }
    // What the journal already holds of each record: (image, identity) → sum, and the last
    // sequence of each (image, partition).
    let producers: HashMap<(String, u64, u16), usize> = images
        .iter()
        .enumerate()
        .map(|(i, im)| ((im.node.clone(), im.epoch, im.core), i))
        .collect();
    let index: Vec<HashMap<IdentKey, usize>> = images
        .iter()
        .map(|im| {
            im.records
                .iter()
                .enumerate()
                .map(|(r, (_, _, e))| (ident_key(e), r))
                .collect()
        })
        .collect();
    let mut journaled: Vec<Vec<UsageCounters>> = images
        .iter()
        .map(|im| vec![UsageCounters::default(); im.records.len()])
        .collect();
    let mut last_seq: HashMap<(usize, u32), u64> = HashMap::new();
    let from = images.iter().map(|im| im.journal_from).min().unwrap_or(0);
    let (mut reader, _) = JournalReader::open_retained(journal.dir(), from)
        .map_err(|e| io::Error::other(format!("read the usage journal: {e}")))?;
    let mut decoder = UsageDecoder::new();
    loop {
        let record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(_) => {
                if matches!(reader.skip_corrupt(), Ok(Some(_))) {
                    continue;
                }
                break;
            }
        };
        let producer = match decoder.access(record.payload) {
            Ok(b) => (
                b.node.as_str().to_owned(),
                b.epoch.to_native(),
                b.core.to_native(),
            ),
            Err(_) => continue,
        };
        let Some(&i) = producers.get(&producer) else {
            continue;
        };
        // Only this run's batches are decoded whole (recovery runs once, at start).
        let Ok(batch) = decoder.decode(record.payload) else {
            continue;
        };
        let (Some(image), Some(idx), Some(sums)) =
            (images.get(i), index.get(i), journaled.get_mut(i))
        else {
            continue;
        };
        let last = last_seq
            .entry((i, batch.partition))
            .or_insert(batch.sequence);
        *last = (*last).max(batch.sequence);
        for e in &batch.entries {
            let Some(&r) = idx.get(&ident_key(e)) else {
                continue;
            };
            let Some((_, first_seq, _)) = image.records.get(r) else {
                continue;
            };
            if batch.sequence < *first_seq {
                continue;
            }
            if let Some(sum) = sums.get_mut(r) {
                sum.merge(&e.counters);
            }
        }
    }
    drop(reader);
    let mut payloads = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let mut by_partition: std::collections::BTreeMap<u32, Vec<UsageEntry>> =
            std::collections::BTreeMap::new();
        for (r, (partition, _, entry)) in image.records.iter().enumerate() {
            let done = journaled
                .get(i)
                .and_then(|s| s.get(r))
                .copied()
                .unwrap_or_default();
            let missing = minus(&entry.counters, &done);
            if missing.is_zero() {
                continue;
            }
            let mut e = entry.clone();
            e.counters = missing;
            by_partition.entry(*partition).or_default().push(e);
        }
        for (partition, entries) in by_partition {
            let first = last_seq.get(&(i, partition)).map_or(0, |s| s + 1);
            for (next, chunk) in
                (first..).zip(entries.chunks(gateway_core::usage::DEFAULT_MAX_BATCH_ENTRIES))
            {
                let batch = UsageBatch {
                    node: image.node.clone(),
                    epoch: image.epoch,
                    core: image.core,
                    partition,
                    partitions: image.partitions,
                    sequence: next,
                    window_start_ms: image.created_ms.min(image.last_ms),
                    window_end_ms: image.last_ms.max(image.created_ms),
                    entries: chunk.to_vec(),
                };
                report.batches += 1;
                report.entries += chunk.len();
                report.admitted += chunk.iter().map(|e| e.counters.admitted).sum::<u64>();
                payloads.push(
                    encode(&batch)
                        .map_err(|e| io::Error::other(format!("encode a recovered batch: {e}")))?,
                );
            }
        }
    }
    if !payloads.is_empty() {
        journal
            .append_batch(&payloads)
            .map_err(|e| io::Error::other(format!("append recovered usage: {e}")))?;
    }
    // Synced before the files go: a machine crash between the two must not lose both.
    journal
        .sync()
        .map_err(|e| io::Error::other(format!("sync the usage journal: {e}")))?;
    for image in &images {
        std::fs::remove_file(&image.path)?;
        report.files += 1;
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(report)
}

#[cfg(test)]
mod tests;

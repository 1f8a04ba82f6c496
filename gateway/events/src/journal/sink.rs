//! The usage sink thread: cores hand their `UsageBatch`es over a bounded channel, one thread
//! encodes them and appends them to the `usage` journal.
//!
//! ```text
//! core 0 ─ SinkHandle::try_send ─┐  bounded channel      ┌─ encode (rkyv, versioned)
//! core 1 ─ SinkHandle::try_send ─┼─────────────────────► ├─ Journal::append_batch
//! core N ─ SinkHandle::try_send ─┘   (never blocks)      └─ sync by policy, count
//! ```
//!
//! With `SyncPolicy::Every`, `fdatasync` runs on a second thread (`tollgate-sync`) over a
//! duplicate of the active segment's descriptor: a slow disk delays durability, never the
//! appends, so a process crash loses only what is still in the channel (one tick's worth).
//!
//! A core never waits: a full channel gives the batch back, and the core's
//! `UsageAccumulator` keeps its entries pending for the next flush (nothing lost, no sequence
//! skipped). The thread retries a failed append until it succeeds (reopening the journal if a
//! write could not be undone), so a full disk delays events instead of dropping them.
//! [`Sink::shutdown`] stops new hand-overs, drains the channel, syncs, and returns the journal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gateway_model::event::{UsageBatch, encode_into};

use super::{Journal, JournalError};

/// How the sink thread runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// Batches the channel holds before `try_send` refuses. Default 1024.
    pub capacity: usize,
    /// Most batches appended in one write. Default 256.
    pub max_write: usize,
    /// How often the idle thread wakes to sync by policy and notice a shutdown. Default 10 ms.
    pub tick: Duration,
    /// Longest wait between two tries of a failed append. Default 1 s.
    pub max_backoff: Duration,
    /// Tries of a failed append during shutdown before its batches are counted lost. Default 5.
    pub shutdown_tries: u32,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            capacity: 1024,
            max_write: 256,
            tick: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            shutdown_tries: 5,
        }
    }
}

/// The sink's counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// Batches appended to the journal.
    pub batches: u64,
    /// Usage entries in them.
    pub entries: u64,
    /// Bytes appended (frames included).
    pub bytes: u64,
    /// Syncs done.
    pub syncs: u64,
    /// Hand-overs refused because the channel was full or the sink closed (the core kept them).
    pub refused: u64,
    /// Appends that failed and were tried again.
    pub write_retries: u64,
    /// Batches that could not be encoded (a producer bug; they are dropped and logged).
    pub encode_errors: u64,
    /// Batches given up on: after `shutdown_tries` failed appends during shutdown, or refused
    /// by the journal for good (over its record size limit).
    pub lost: u64,
}

#[derive(Debug, Default)]
struct Shared {
    closed: AtomicBool,
    /// Handles between their look at `closed` and the end of their `try_send`.
    in_flight: AtomicUsize,
    batches: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    syncs: AtomicU64,
    refused: AtomicU64,
    write_retries: AtomicU64,
    encode_errors: AtomicU64,
    lost: AtomicU64,
}

impl Shared {
    fn counters(&self) -> SinkCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SinkCounters {
            batches: get(&self.batches),
            entries: get(&self.entries),
            bytes: get(&self.bytes),
            syncs: get(&self.syncs),
            refused: get(&self.refused),
            write_retries: get(&self.write_retries),
            encode_errors: get(&self.encode_errors),
            lost: get(&self.lost),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A core's side of the sink: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    tx: SyncSender<UsageBatch>,
    shared: Arc<Shared>,
}

impl SinkHandle {
    /// Hands `batch` to the sink thread, or gives it back if the channel is full or the sink
    /// is shutting down: the caller keeps it (`UsageAccumulator::flush` does).
    ///
    /// # Errors
    ///
    /// The batch, not handed over.
    pub fn try_send(&self, batch: UsageBatch) -> Result<(), UsageBatch> {
        // `in_flight` is raised before `closed` is read, and the thread reads `in_flight`
        // after setting `closed` (both SeqCst): either this send sees `closed`, or the thread
        // waits for it before its final drain. No batch slips in after the drain.
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = if self.shared.closed.load(Ordering::SeqCst) {
            Err(batch)
        } else {
            self.tx.try_send(batch).map_err(|err| match err {
                TrySendError::Full(batch) | TrySendError::Disconnected(batch) => batch,
            })
        };
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if result.is_err() {
            bump(&self.shared.refused, 1);
        }
        result
    }

    /// The sink's counters.
    #[must_use]
    pub fn counters(&self) -> SinkCounters {
        self.shared.counters()
    }
}

/// The sink thread (see the module docs).
#[derive(Debug)]
pub struct Sink {
    tx: SyncSender<UsageBatch>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<Journal, JournalError>>>,
}

impl Sink {
    /// Starts the thread `tollgate-sink`, which owns `journal` (the `usage` stream).
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] if the thread cannot be spawned.
    pub fn spawn(journal: Journal, options: SinkOptions) -> Result<Self, JournalError> {
        let (tx, rx) = sync_channel(options.capacity.max(1));
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let dir = journal.dir().to_owned();
        let thread = std::thread::Builder::new()
            .name("tollgate-sink".into())
            .spawn(move || run(journal, &rx, &thread_shared, &options))
            .map_err(JournalError::io("spawn sink thread", &dir))?;
        Ok(Self {
            tx,
            shared,
            thread: Some(thread),
        })
    }

    /// A handle for a core.
    #[must_use]
    pub fn handle(&self) -> SinkHandle {
        SinkHandle {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// The sink's counters.
    #[must_use]
    pub fn counters(&self) -> SinkCounters {
        self.shared.counters()
    }

    /// Refuses further hand-overs, appends every batch already handed over, syncs, and returns
    /// the journal with the final counters. Call it after the cores made their last forced
    /// flush: a batch offered later is given back to its core.
    ///
    /// # Errors
    ///
    /// The final sync's error, or [`JournalError::SinkPanicked`].
    pub fn shutdown(mut self) -> Result<(Journal, SinkCounters), JournalError> {
        let journal = self.stop()?;
        Ok((journal, self.shared.counters()))
    }

    fn stop(&mut self) -> Result<Journal, JournalError> {
        self.shared.closed.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.take() else {
            return Err(JournalError::SinkPanicked);
        };
        thread.join().map_err(|_| JournalError::SinkPanicked)?
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.thread.is_some() {
            if let Err(err) = self.stop() {
                tracing::error!(error = %err, "usage sink: stopped with an error");
            }
        }
    }
}

/// The background syncer's side: the active segment to sync, and whether it has unsynced
/// appends.
#[derive(Debug, Default)]
struct SyncState {
    file: std::sync::Mutex<Option<Arc<std::fs::File>>>,
    dirty: AtomicBool,
    stop: AtomicBool,
}

/// Syncs the active segment every `every` while it has unsynced appends.
fn syncer(state: &SyncState, shared: &Shared, every: Duration) {
    while !state.stop.load(Ordering::Acquire) {
        std::thread::park_timeout(every);
        if !state.dirty.swap(false, Ordering::AcqRel) {
            continue;
        }
        let file = state
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(file) = file {
            match file.sync_data() {
                Ok(()) => bump(&shared.syncs, 1),
                Err(err) => {
                    state.dirty.store(true, Ordering::Release);
                    tracing::warn!(error = %err, "usage sink: background sync failed");
                }
            }
        }
    }
}

/// The background syncer thread, when the policy is `Every`.
struct Syncer {
    state: Arc<SyncState>,
    base: Option<u64>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn start(journal: &Journal, shared: &Arc<Shared>) -> Option<Self> {
        let super::SyncPolicy::Every(every) = journal.options().sync else {
            return None;
        };
        let state = Arc::new(SyncState::default());
        let (thread_state, thread_shared) = (Arc::clone(&state), Arc::clone(shared));
        let thread = std::thread::Builder::new()
            .name("tollgate-sync".into())
            .spawn(move || syncer(&thread_state, &thread_shared, every))
            .map_err(
                |err| tracing::warn!(error = %err, "usage sink: no sync thread; syncing inline"),
            )
            .ok()?;
        let mut syncer = Self {
            state,
            base: None,
            thread: Some(thread),
        };
        syncer.follow(journal);
        Some(syncer)
    }

    /// After appends: point at the active segment (it changes on a roll) and mark it dirty.
    fn follow(&mut self, journal: &Journal) {
        let base = journal.active_base();
        if Some(base) != self.base {
            // A new segment (or the first): hand the syncer a descriptor of it, once.
            match journal.active_file() {
                Ok(file) => {
                    self.base = Some(base);
                    *self
                        .state
                        .file
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(file));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "usage sink: segment not handed to the syncer")
                }
            }
        }
        self.state.dirty.store(true, Ordering::Release);
    }

    fn stop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread's loop: receive, encode, append (retrying), sync by policy (in the background
/// for `Every`); on close, drain and sync.
fn run(
    mut journal: Journal,
    rx: &Receiver<UsageBatch>,
    shared: &Arc<Shared>,
    options: &SinkOptions,
) -> Result<Journal, JournalError> {
    let mut batches: Vec<UsageBatch> = Vec::with_capacity(options.max_write.max(1));
    let mut writer = Writer::default();
    let mut background = Syncer::start(&journal, shared);
    loop {
        let closing = shared.closed.load(Ordering::SeqCst);
        if closing {
            while shared.in_flight.load(Ordering::SeqCst) > 0 {
                std::thread::yield_now();
            }
        } else {
            match rx.recv_timeout(options.tick) {
                Ok(batch) => batches.push(batch),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        }
        // Take what else is waiting (all of it when closing), a write's worth at a time.
        loop {
            while batches.len() < options.max_write.max(1) {
                match rx.try_recv() {
                    Ok(batch) => batches.push(batch),
                    Err(_) => break,
                }
            }
            if batches.is_empty() {
                break;
            }
            journal = writer.write(journal, &batches, shared, options, closing);
            batches.clear();
            if let Some(background) = background.as_mut() {
                background.follow(&journal);
            }
            if !closing {
                break;
            }
        }
        if closing {
            if let Some(mut background) = background.take() {
                background.stop();
            }
            journal.sync()?;
            bump(&shared.syncs, 1);
            return Ok(journal);
        }
        if background.is_some() {
            continue;
        }
        match journal.sync_if_due(Instant::now()) {
            Ok(true) => bump(&shared.syncs, 1),
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "usage sink: sync failed"),
        }
    }
}

/// Encodes batches into one buffer and appends them.
#[derive(Debug, Default)]
struct Writer {
    encoded: Vec<u8>,
    ends: Vec<usize>,
    entries: Vec<u64>,
}

impl Writer {
    fn write(
        &mut self,
        mut journal: Journal,
        batches: &[UsageBatch],
        shared: &Shared,
        options: &SinkOptions,
        closing: bool,
    ) -> Journal {
        self.encoded.clear();
        self.ends.clear();
        self.entries.clear();
        for batch in batches {
            match encode_into(batch, &mut self.encoded) {
                Ok(()) => {
                    self.ends.push(self.encoded.len());
                    self.entries.push(batch.entries.len() as u64);
                }
                Err(err) => {
                    bump(&shared.encode_errors, 1);
                    tracing::error!(
                        producer = %batch.producer(), sequence = batch.sequence, error = %err,
                        "usage sink: batch not encodable, dropped"
                    );
                }
            }
        }
        let mut done = 0;
        let mut tries = 0u32;
        let mut backoff = Duration::from_millis(10);
        while done < self.ends.len() {
            let before = journal.next_offset();
            let records = (done..self.ends.len()).map(|i| self.record(i));
            match journal.append_batch(records) {
                Ok(_) => {
                    self.count(done..self.ends.len(), shared);
                    done = self.ends.len();
                }
                Err(err) => {
                    // The records before the failing one are in: go on after them.
                    let written = usize::try_from(journal.next_offset() - before).unwrap_or(0);
                    self.count(done..done + written, shared);
                    done += written;
                    if !err.is_retryable() {
                        // A record the journal can never take (over its size limit).
                        bump(&shared.lost, 1);
                        tracing::error!(error = %err, "usage sink: batch refused by the journal, dropped");
                        done += 1;
                        continue;
                    }
                    tries += 1;
                    bump(&shared.write_retries, 1);
                    tracing::warn!(error = %err, tries, "usage sink: append failed, retrying");
                    if closing && tries >= options.shutdown_tries {
                        let lost = (self.ends.len() - done) as u64;
                        bump(&shared.lost, lost);
                        tracing::error!(lost, "usage sink: gave up on batches at shutdown");
                        break;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(options.max_backoff);
                    if matches!(err, JournalError::Poisoned { .. }) {
                        journal = reopen(journal);
                    }
                }
            }
        }
        journal
    }

    fn record(&self, i: usize) -> &[u8] {
        let start = i
            .checked_sub(1)
            .and_then(|p| self.ends.get(p).copied())
            .unwrap_or(0);
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.encoded.get(start..end).unwrap_or_default()
    }

    fn count(&self, records: std::ops::Range<usize>, shared: &Shared) {
        for i in records {
            bump(&shared.batches, 1);
            bump(&shared.entries, self.entries.get(i).copied().unwrap_or(0));
            bump(
                &shared.bytes,
                (self.record(i).len() + super::HEADER_BYTES) as u64,
            );
        }
    }
}

/// Closes a poisoned journal and opens it again (which cuts the partial write); on failure
/// keeps the old one, and the next try reopens again.
fn reopen(journal: Journal) -> Journal {
    let dir = journal.dir().to_owned();
    let options = journal.options().clone();
    drop(journal);
    match Journal::open(&dir, options.clone()) {
        Ok((journal, recovery)) => {
            tracing::warn!(
                truncated_bytes = recovery.truncated_bytes,
                "usage sink: journal reopened"
            );
            journal
        }
        Err(err) => {
            tracing::error!(error = %err, "usage sink: cannot reopen the journal");
            // Without a journal nothing can be written; keep trying to open it.
            loop {
                std::thread::sleep(Duration::from_secs(1));
                if let Ok((journal, _)) = Journal::open(&dir, options.clone()) {
                    return journal;
                }
            }
        }
    }
}

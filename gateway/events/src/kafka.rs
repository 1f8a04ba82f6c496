//! The Kafka sink: one thread takes the cores' usage batches off a bounded channel and produces
//! them to `tollgate.usage` with an idempotent rdkafka producer, spooling to disk whenever the
//! broker cannot take them (DESIGN §4 and §6, docs/events.md).
//!
//! ```text
//! core ─ KafkaHandle::try_send ─► channel ─► sink thread ─┬─ spool empty: BaseProducer::send ──┐
//!                                  (never blocks)         └─ else / queue full: Spool::append  │
//!                                          Spool::next_record (replay, oldest first) ─► send ──┤
//!                              delivery report OK: counted (a spooled record is acked, deleted) ◄┘
//!                              delivery error: producer reset, everything unconfirmed back to
//!                              the spool head in order, a fresh producer
//! ```
//!
//! - **Placement.** A batch holds one partition's entries (`partition_for(apikey, partitions)`),
//!   so it is produced to exactly that partition of the usage topic, keyed by the partition
//!   number in decimal ASCII (`b"7"`): the key is informative, the partition is explicit.
//! - **Producer.** `enable.idempotence=true`, `acks=all`, `compression.type=lz4` (built into the
//!   bundled librdkafka), a small `linger.ms`, and `message.timeout.ms=0` (never time out): with
//!   tansu, an idempotent message that times out makes the broker refuse every later produce,
//!   and with Kafka a timeout would reorder. During an outage the client queue
//!   (`queue.buffering.max.messages`, bounded by [`KafkaConfig::queue_max_messages`]) fills, and
//!   from then on batches go to the spool.
//! - **Order.** While anything is pending in the spool new batches are appended behind it, and
//!   replay hands records to the client oldest first, behind what the client already holds; the
//!   idempotent producer keeps per-partition order on the wire. So a partition's batches arrive
//!   in the order the sink received them.
//! - **Delivery errors.** With an infinite timeout an outage produces none; what remains is a
//!   broker refusing a produce (tansu answers "unknown broker error" to the first produces to a
//!   fresh topic, and a restarted broker may not know the producer id). On the first error the
//!   sink *resets*: it purges the client, puts the direct batches it held (in hand-over order)
//!   before the spool's head and makes the spooled ones pending again, creates a fresh producer
//!   and replays after 500 ms. Order is kept; `failed` counts the errors. A batch the broker
//!   refuses for good (too large) is retried this way forever, with an error log each time:
//!   never dropped.
//! - **Confirmation.** A batch counts as sent only on an OK delivery report; a spooled record is
//!   deleted from disk only then. Duplicates: none in normal operation (idempotence removes the
//!   client's retries). Across a crash, a producer reset, or a shutdown that had to purge
//!   requests already on the wire, a batch whose acknowledgement was lost may be sent twice;
//!   each carries its producer's sequence and the ledger skips `sequence <= last`
//!   (docs/events.md, "Ordering and sequence").
//! - **Bounds.** The spool is bounded ([`KafkaConfig::spool_max_bytes`]); a warning is logged at
//!   50 %, 75 % and 90 %, an error when full. When full the thread holds the batch it could not
//!   spool and stops taking new ones: the channel fills, `try_send` gives batches back and the
//!   cores keep their entries merged in their accumulators (memory bounded by key count, not
//!   time), exactly as with a slow journal. Nothing is dropped; a batch still unspoolable at
//!   shutdown is counted `lost` and logged as an error.
//! - **Crash exposure.** Fed from the channel, batches in the client queue are in memory only
//!   (at most `queue_max_messages`): [`KafkaSink::shutdown`] spools them, a process crash loses
//!   them. The gateway therefore feeds the sink from its usage journal ([`JournalSource`]): every
//!   record is copied into the spool and produced from there only, and the journal position is
//!   saved after a spool sync, so a crash at any instant loses nothing (records after the last
//!   saved position are forwarded again; the ledger drops the copies by sequence).
//!
//! Topics are created at start with the admin client (tansu has no auto-creation): the usage
//! topic with [`KafkaConfig::partitions`] partitions, the entity and totals topics compacted.
//! Until that succeeds every batch is spooled (each attempt blocks the sink thread for up to
//! `admin_timeout`; the channel absorbs the cores' batches meanwhile). This module does blocking
//! IO on its own thread and must never run on a core's runtime.

pub mod spool;

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use gateway_model::event::{ENTITIES_TOPIC, TOTALS_TOPIC, USAGE_TOPIC, UsageBatch, encode};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::PurgeConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

pub use spool::{Spool, SpoolError, SpoolRecord, SpoolRecovery};

/// Topic names; configurable so that tests (and staging clusters) can use their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Usage batches. Default `tollgate.usage`.
    pub usage: String,
    /// Entity events (compacted). Default `tollgate.entities`.
    pub entities: String,
    /// Totals (compacted). Default `tollgate.totals`.
    pub totals: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            usage: USAGE_TOPIC.to_owned(),
            entities: ENTITIES_TOPIC.to_owned(),
            totals: TOTALS_TOPIC.to_owned(),
        }
    }
}

impl Topics {
    /// The default names with `suffix` appended to each (`tollgate.usage.<suffix>`).
    #[must_use]
    pub fn with_suffix(suffix: &str) -> Self {
        let d = Self::default();
        Self {
            usage: format!("{}.{suffix}", d.usage),
            entities: format!("{}.{suffix}", d.entities),
            totals: format!("{}.{suffix}", d.totals),
        }
    }
}

/// How the Kafka sink runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Partitions of the usage topic (and of the compacted topics) when created; must match the
    /// gateway's usage partition count. Default 16.
    pub partitions: u32,
    /// Replication factor of created topics. Default 1.
    pub replication: i32,
    /// Spool directory, `<data_dir>/spool/usage`.
    pub spool_dir: PathBuf,
    /// Spool bound on disk. Default 1 GiB.
    pub spool_max_bytes: u64,
    /// Spool file size at which a new file is started. Default 16 MiB.
    pub spool_segment_bytes: u64,
    /// Client queue bound in messages; beyond it batches spool. Default 10 000.
    pub queue_max_messages: u32,
    /// `linger.ms`. Default 5 ms.
    pub linger: Duration,
    /// `compression.type`. Default `lz4`.
    pub compression: String,
    /// Batches the hand-over channel holds. Default 1024.
    pub channel_capacity: usize,
    /// How long the idle thread waits for batches before polling the client. Default 10 ms.
    pub tick: Duration,
    /// How long [`KafkaSink::shutdown`] waits for delivery reports. Default 5 s.
    pub flush_timeout: Duration,
    /// Timeout of each topic-creation attempt; retried every `admin_retry`. Default 5 s.
    pub admin_timeout: Duration,
    /// Interval between topic-creation attempts while they fail. Default 2 s.
    pub admin_retry: Duration,
    /// Extra librdkafka settings, applied last.
    pub extra: Vec<(String, String)>,
    /// Feed the sink from a usage journal instead of the channel (the gateway's mode): see
    /// [`JournalSource`]. Default `None`.
    pub source: Option<JournalSource>,
}

/// The journal as the sink's outbox: the sink tails the usage journal the cores write through,
/// copies each record into its spool (synced before the position is saved), and produces from
/// the spool only. A crash at any instant loses nothing: at restart the sink resumes from the
/// saved position, so records between the last save and the crash are spooled, and sent, again
/// (the ledger skips them by sequence, docs/events.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSource {
    /// The usage journal's directory (`<data_dir>/journal/usage`); its writer must have opened it.
    pub dir: PathBuf,
    /// The file holding the first journal offset not yet safely in the spool
    /// (`<data_dir>/spool/usage.forwarded`).
    pub mark: PathBuf,
    /// How often the position is saved (after a spool sync). Default 100 ms.
    pub save_every: Duration,
}

impl JournalSource {
    /// The gateway's layout under `data_dir`.
    #[must_use]
    pub fn under(data_dir: &Path) -> Self {
        Self {
            dir: crate::journal::Stream::Usage.dir(&data_dir.join("journal")),
            mark: data_dir.join("spool").join("usage.forwarded"),
            save_every: Duration::from_millis(100),
        }
    }

    /// The saved position: 0 (the journal's start) when none was saved yet.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read or does not hold a position.
    pub fn saved(&self) -> Result<u64, std::io::Error> {
        match std::fs::read_to_string(&self.mark) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.mark.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn save(&self, offset: u64) -> Result<(), std::io::Error> {
        let tmp = self.mark.with_extension("forwarded.tmp");
        std::fs::write(&tmp, format!("{offset}\n"))?;
        std::fs::rename(&tmp, &self.mark)
    }
}

/// The sink's reading side of a [`JournalSource`].
#[derive(Debug)]
struct Forward {
    source: JournalSource,
    reader: crate::journal::JournalReader,
    decoder: gateway_model::event::UsageDecoder,
    /// Position last saved.
    saved: u64,
    last_save: Instant,
}

impl KafkaConfig {
    /// Defaults for `brokers`, spooling under `<data_dir>/spool/usage`.
    #[must_use]
    pub fn new(brokers: &str, data_dir: &Path) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topics: Topics::default(),
            partitions: 16,
            replication: 1,
            spool_dir: data_dir.join("spool").join("usage"),
            spool_max_bytes: 1 << 30,
            spool_segment_bytes: 16 << 20,
            queue_max_messages: 10_000,
            linger: Duration::from_millis(5),
            compression: "lz4".to_owned(),
            channel_capacity: 1024,
            tick: Duration::from_millis(10),
            flush_timeout: Duration::from_secs(5),
            admin_timeout: Duration::from_secs(5),
            admin_retry: Duration::from_secs(2),
            extra: Vec::new(),
            source: None,
        }
    }

    /// A client of these brokers with `role`'s settings and this config's `extra` ([`client_config`]).
    #[must_use]
    pub fn client(&self, role: &[(&str, &str)]) -> ClientConfig {
        client_config(&self.brokers, role, &self.extra)
    }

    fn producer_config(&self) -> ClientConfig {
        let linger = self.linger.as_millis().to_string();
        let queue = self.queue_max_messages.max(1).to_string();
        self.client(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.type", &self.compression),
            ("message.timeout.ms", "0"),
            ("linger.ms", &linger),
            ("queue.buffering.max.messages", &queue),
        ])
    }
}

/// Every rdkafka client Tollgate creates (usage sink, entity log, totals follower and
/// publisher, ledger consumer, rebuild, tail) is configured here: the brokers, then the role's
/// own settings, then `extra` (the operator's librdkafka settings), applied last so they win.
#[must_use]
pub fn client_config(
    brokers: &str,
    role: &[(&str, &str)],
    extra: &[(String, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in role {
        config.set(*key, *value);
    }
    for (key, value) in extra {
        config.set(key, value);
    }
    config
}

/// Errors of the Kafka sink.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    /// The client could not be created (bad settings).
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    /// Topic creation failed (other than "already exists").
    #[error("kafka topic {topic}: {code}")]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: RDKafkaErrorCode,
    },
    /// The spool could not be opened or written.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The source journal or its saved position could not be read.
    #[error("usage journal source: {0}")]
    Source(String),
    /// The sink thread could not be started.
    #[error("kafka sink thread: {0}")]
    Thread(std::io::Error),
}

/// The sink's counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KafkaCounters {
    /// Batches confirmed by the broker (direct and replayed).
    pub produced: u64,
    /// Batches written to the spool.
    pub spooled: u64,
    /// Spooled batches confirmed by the broker (included in `produced`).
    pub replayed: u64,
    /// Delivery errors (the batch went back to the spool).
    pub failed: u64,
    /// Hand-overs refused (channel full or sink closed); the core kept the batch.
    pub refused: u64,
    /// Batches that could not be encoded (a producer bug; dropped and logged).
    pub encode_errors: u64,
    /// Batches given up on at shutdown because the spool was full or failing (logged).
    pub lost: u64,
    /// Bytes in the spool now.
    pub spool_bytes: u64,
    /// The spool's bound.
    pub spool_max_bytes: u64,
    /// Records in the spool not yet confirmed.
    pub spool_records: u64,
    /// Messages in the client (queued or on the wire).
    pub in_flight: u64,
    /// Journal records copied into the spool (journal-fed sinks).
    pub forwarded: u64,
    /// Journal records that could not be read or decoded, skipped and logged (journal-fed).
    pub corrupt: u64,
}

#[derive(Debug, Default)]
struct Shared {
    closed: AtomicBool,
    sending: AtomicU64,
    produced: AtomicU64,
    spooled: AtomicU64,
    replayed: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    encode_errors: AtomicU64,
    lost: AtomicU64,
    spool_bytes: AtomicU64,
    spool_max_bytes: AtomicU64,
    spool_records: AtomicU64,
    in_flight: AtomicU64,
    forwarded: AtomicU64,
    corrupt: AtomicU64,
}

impl Shared {
    fn counters(&self) -> KafkaCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        KafkaCounters {
            produced: get(&self.produced),
            spooled: get(&self.spooled),
            replayed: get(&self.replayed),
            failed: get(&self.failed),
            refused: get(&self.refused),
            encode_errors: get(&self.encode_errors),
            lost: get(&self.lost),
            spool_bytes: get(&self.spool_bytes),
            spool_max_bytes: get(&self.spool_max_bytes),
            spool_records: get(&self.spool_records),
            in_flight: get(&self.in_flight),
            forwarded: get(&self.forwarded),
            corrupt: get(&self.corrupt),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// What travels to the sink thread.
#[derive(Debug)]
enum Item {
    Batch(UsageBatch),
    Encoded { partition: u32, bytes: Vec<u8> },
}

/// A core's side of the sink: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct KafkaHandle {
    tx: SyncSender<Item>,
    shared: Arc<Shared>,
}

impl KafkaHandle {
    /// The sink's counters now (for metrics).
    #[must_use]
    pub fn counters(&self) -> KafkaCounters {
        self.shared.counters()
    }

    /// Hands `batch` to the sink thread (which encodes it), or gives it back when the channel
    /// is full or the sink is closed: the caller keeps it.
    ///
    /// # Errors
    ///
    /// The batch, not handed over.
    pub fn try_send(&self, batch: UsageBatch) -> Result<(), UsageBatch> {
        match self.hand_over(Item::Batch(batch)) {
            Err(Item::Batch(batch)) => Err(batch),
            // The channel gives back the item it was given: a batch.
            Ok(()) | Err(Item::Encoded { .. }) => Ok(()),
        }
    }

    /// Hands an already encoded batch for `partition` (its header's `partition`) to the sink.
    ///
    /// # Errors
    ///
    /// The bytes, not handed over.
    pub fn try_send_encoded(&self, partition: u32, bytes: Vec<u8>) -> Result<(), Vec<u8>> {
        match self.hand_over(Item::Encoded { partition, bytes }) {
            Err(Item::Encoded { bytes, .. }) => Err(bytes),
            // The channel gives back the item it was given: encoded bytes.
            Ok(()) | Err(Item::Batch(_)) => Ok(()),
        }
    }

    fn hand_over(&self, item: Item) -> Result<(), Item> {
        // `sending` is raised before `closed` is read and the thread reads it after seeing
        // `closed` (both SeqCst): either this send sees `closed`, or the thread waits for it.
        self.shared.sending.fetch_add(1, Ordering::SeqCst);
        let result = if self.shared.closed.load(Ordering::SeqCst) {
            Err(item)
        } else {
            self.tx.try_send(item).map_err(|err| match err {
                std::sync::mpsc::TrySendError::Full(item)
                | std::sync::mpsc::TrySendError::Disconnected(item) => item,
            })
        };
        self.shared.sending.fetch_sub(1, Ordering::SeqCst);
        if result.is_err() {
            bump(&self.shared.refused, 1);
        }
        result
    }
}

/// The running sink: its thread, a handle to clone for the cores, counters.
#[derive(Debug)]
pub struct KafkaSink {
    handle: KafkaHandle,
    thread: Option<JoinHandle<()>>,
}

impl KafkaSink {
    /// Opens the spool, creates the producer and starts the sink thread. Topics are created by
    /// the thread (retried until the broker answers; batches spool meanwhile), so a gateway
    /// starts and serves while Kafka is down.
    ///
    /// # Errors
    ///
    /// Bad client settings, an unusable spool directory, or no thread.
    pub fn start(config: KafkaConfig) -> Result<Self, KafkaSinkError> {
        let (spool, recovery) = Spool::open(
            &config.spool_dir,
            config.spool_max_bytes,
            config.spool_segment_bytes,
        )?;
        if recovery.records > 0 {
            tracing::info!(
                records = recovery.records,
                bytes = spool.bytes(),
                "usage spool: replaying batches left by the last run"
            );
        }
        let producer: BaseProducer<Reports> = config
            .producer_config()
            .create_with_context(Reports::default())?;
        let shared = Arc::new(Shared::default());
        let forward = match &config.source {
            Some(source) => Some(Forward::open(source.clone())?),
            None => None,
        };
        let (tx, rx) = sync_channel(config.channel_capacity.max(1));
        let mut worker = Worker {
            forward,
            config,
            producer,
            spool,
            rx,
            shared: Arc::clone(&shared),
            topics_ready: false,
            next_admin: Instant::now(),
            direct_seq: 0,
            held: VecDeque::new(),
            warned_level: 0,
            purged_direct: Vec::new(),
            replay_after: Instant::now(),
        };
        worker.publish();
        let thread = std::thread::Builder::new()
            .name("kafka-sink".to_owned())
            .spawn(move || worker.run())
            .map_err(KafkaSinkError::Thread)?;
        Ok(Self {
            handle: KafkaHandle { tx, shared },
            thread: Some(thread),
        })
    }

    /// A handle for a core.
    #[must_use]
    pub fn handle(&self) -> KafkaHandle {
        self.handle.clone()
    }

    /// The counters now.
    #[must_use]
    pub fn counters(&self) -> KafkaCounters {
        self.handle.shared.counters()
    }

    /// Stops taking batches, drains the channel, waits up to `flush_timeout` for delivery
    /// reports, then spools whatever the client still holds (in order, before the spool's
    /// records) and syncs the spool. Returns the final counters.
    pub fn shutdown(mut self) -> KafkaCounters {
        self.stop();
        self.counters()
    }

    fn stop(&mut self) {
        self.handle.shared.closed.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("kafka sink thread panicked");
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates the usage topic (`partitions` partitions) and the compacted entity and totals
/// topics; topics that exist already are left as they are.
///
/// # Errors
///
/// The broker could not be reached within `admin_timeout`, or refused a topic.
pub fn ensure_topics(config: &KafkaConfig) -> Result<(), KafkaSinkError> {
    let admin: AdminClient<DefaultClientContext> = config.client(&[]).create()?;
    let partitions = i32::try_from(config.partitions.max(1)).unwrap_or(i32::MAX);
    let replication = TopicReplication::Fixed(config.replication.max(1));
    let topics = [
        NewTopic::new(&config.topics.usage, partitions, replication),
        NewTopic::new(
            &config.topics.entities,
            partitions,
            TopicReplication::Fixed(config.replication.max(1)),
        )
        .set("cleanup.policy", "compact"),
        NewTopic::new(
            &config.topics.totals,
            partitions,
            TopicReplication::Fixed(config.replication.max(1)),
        )
        .set("cleanup.policy", "compact"),
    ];
    let options = AdminOptions::new().request_timeout(Some(config.admin_timeout));
    let results = block_on(admin.create_topics(&topics, &options))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSinkError::Topic { topic, code }),
        }
    }
    Ok(())
}

/// Runs a future to completion on this thread (the admin client resolves its futures from its
/// own thread; no runtime is needed). For blocking callers of rdkafka's async admin API.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Where a message came from.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// Produced straight from the channel; `seq` orders them for a shutdown spool.
    Direct { seq: u64 },
    /// Replayed from the spool record at this offset.
    Spool { offset: u64 },
}

#[derive(Debug)]
struct Report {
    origin: Origin,
    partition: u32,
    /// `None` when delivered; else the error and the payload to spool again.
    error: Option<(KafkaError, Vec<u8>)>,
}

/// Producer context: delivery reports are collected here during `poll` and handled by the
/// sink thread right after.
#[derive(Debug, Default)]
struct Reports {
    reports: Mutex<Vec<Report>>,
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Origin>;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Box<Origin>) {
        let report = match result {
            Ok(message) => Report {
                origin: *origin,
                partition: u32::try_from(message.partition()).unwrap_or(0),
                error: None,
            },
            Err((error, message)) => Report {
                origin: *origin,
                partition: u32::try_from(message.partition()).unwrap_or(0),
                error: Some((
                    error.clone(),
                    message.payload().unwrap_or_default().to_vec(),
                )),
            },
        };
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(report);
    }
}

struct Worker {
    /// The journal the sink feeds from, if any.
    forward: Option<Forward>,
    config: KafkaConfig,
    producer: BaseProducer<Reports>,
    spool: Spool,
    rx: Receiver<Item>,
    shared: Arc<Shared>,
    topics_ready: bool,
    next_admin: Instant,
    direct_seq: u64,
    /// Batches the full spool refused, oldest first; no new batch is taken until they fit.
    held: VecDeque<(u32, Vec<u8>)>,
    /// Fill level last warned about: 0, 50, 75, 90 or 100 (%).
    warned_level: u8,
    /// Direct messages purged at shutdown, to spool before everything else.
    purged_direct: Vec<(u64, u32, Vec<u8>)>,
    /// No replay before this (a pause after a producer reset).
    replay_after: Instant,
}

impl Forward {
    fn open(source: JournalSource) -> Result<Self, KafkaSinkError> {
        let from = source
            .saved()
            .map_err(|e| KafkaSinkError::Source(e.to_string()))?;
        let (reader, gone) = crate::journal::JournalReader::open_retained(&source.dir, from)
            .map_err(|e| KafkaSinkError::Source(e.to_string()))?;
        if let Some(available) = gone {
            tracing::error!(
                saved = from,
                available,
                "usage journal: records not yet forwarded to Kafka were deleted by retention; \
                 forwarding resumes at the first retained record"
            );
        }
        if from > 0 {
            tracing::info!(from, "usage journal: forwarding to Kafka resumes");
        }
        Ok(Self {
            source,
            reader,
            decoder: gateway_model::event::UsageDecoder::new(),
            saved: from,
            last_save: Instant::now(),
        })
    }
}

/// Pause after a producer reset before replaying again.
const RESET_PAUSE: Duration = Duration::from_millis(500);

/// Most channel items taken per loop turn, so that polling and replay keep up.
const MAX_INTAKE: usize = 256;

impl Worker {
    fn run(mut self) {
        let mut progress = false;
        loop {
            if !self.topics_ready && Instant::now() >= self.next_admin {
                self.try_topics();
            }
            let closing = self.shared.closed.load(Ordering::SeqCst);
            // Idle: wait on the channel. Replaying, or closing: do not.
            let mut taken = self.intake(!closing && !progress);
            taken += self.forward(closing);
            progress = self.replay();
            self.producer.poll(Duration::ZERO);
            self.handle_reports();
            self.publish();
            if closing && taken == 0 && self.shared.sending.load(Ordering::SeqCst) == 0 {
                // No hand-over is between its look at `closed` and its send: take the last.
                while let Ok(item) = self.rx.try_recv() {
                    self.accept(item);
                }
                break;
            }
            if !self.held.is_empty() && !progress {
                std::thread::sleep(self.config.tick);
            }
        }
        self.finish();
    }

    /// Copies new journal records into the spool (never straight to the client, so that the
    /// position saved is always backed by the spool on disk); saves the position after a spool
    /// sync every `save_every`, and always when `closing`. Returns how many records it copied.
    fn forward(&mut self, closing: bool) -> usize {
        let Some(mut forward) = self.forward.take() else {
            return 0;
        };
        let mut copied = 0;
        while self.held.is_empty() && copied < MAX_INTAKE {
            let (partition, bytes) = match forward.reader.next_record() {
                Ok(Some(record)) => match forward.decoder.access(record.payload) {
                    Ok(batch) => (batch.partition.to_native(), record.payload.to_vec()),
                    Err(error) => {
                        bump(&self.shared.corrupt, 1);
                        tracing::error!(
                            %error,
                            offset = record.offset,
                            "usage journal record does not decode; not forwarded"
                        );
                        continue;
                    }
                },
                Ok(None) => break,
                Err(error) => {
                    match forward.reader.skip_corrupt() {
                        Ok(Some(skipped)) => {
                            bump(&self.shared.corrupt, 1);
                            tracing::error!(
                                %error,
                                offset = skipped.offset,
                                next_offset = skipped.next_offset,
                                bytes = skipped.raw.len(),
                                "usage journal: corrupt record skipped"
                            );
                        }
                        Ok(None) | Err(_) => {
                            tracing::warn!(%error, "usage journal unreadable; forwarding paused");
                            break;
                        }
                    }
                    continue;
                }
            };
            self.spool_append(partition, bytes);
            bump(&self.shared.forwarded, 1);
            copied += 1;
        }
        let position = forward.reader.next_offset();
        let due = forward.last_save.elapsed() >= forward.source.save_every;
        if position != forward.saved && (due || closing) && self.held.is_empty() {
            // Everything before `position` is in the spool (or confirmed): make it durable, then
            // move the mark. A crash between the two only forwards some records twice.
            match self.spool.sync() {
                Ok(()) => match forward.source.save(position) {
                    Ok(()) => {
                        forward.saved = position;
                        forward.last_save = Instant::now();
                    }
                    Err(error) => {
                        tracing::error!(%error, "usage forwarding position not saved");
                    }
                },
                Err(error) => tracing::error!(%error, "usage spool not synced"),
            }
        }
        self.forward = Some(forward);
        copied
    }

    fn try_topics(&mut self) {
        match ensure_topics(&self.config) {
            Ok(()) => {
                self.topics_ready = true;
                tracing::debug!(topic = %self.config.topics.usage, "kafka topics ready");
            }
            Err(error) => {
                self.next_admin = Instant::now() + self.config.admin_retry;
                tracing::warn!(%error, "kafka topics not created yet; usage batches spool");
            }
        }
    }

    /// Takes up to [`MAX_INTAKE`] batches off the channel (waiting up to a tick for the first
    /// when `wait`); returns how many.
    fn intake(&mut self, wait: bool) -> usize {
        self.place_held();
        let mut taken = 0;
        while self.held.is_empty() && taken < MAX_INTAKE {
            let item = if taken == 0 && wait {
                match self.rx.recv_timeout(self.config.tick) {
                    Ok(item) => item,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.try_recv() {
                    Ok(item) => item,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            };
            taken += 1;
            self.accept(item);
        }
        taken
    }

    fn accept(&mut self, item: Item) {
        let (partition, bytes) = match item {
            Item::Batch(batch) => match encode(&batch) {
                Ok(bytes) => (batch.partition, bytes),
                Err(error) => {
                    bump(&self.shared.encode_errors, 1);
                    tracing::error!(
                        %error,
                        node = %batch.node,
                        core = batch.core,
                        sequence = batch.sequence,
                        "usage batch could not be encoded; dropped"
                    );
                    return;
                }
            },
            Item::Encoded { partition, bytes } => (partition, bytes),
        };
        self.place(partition, bytes);
    }

    /// Produces directly when nothing is spooled (so nothing older waits), else spools.
    fn place(&mut self, partition: u32, bytes: Vec<u8>) {
        if self.topics_ready && self.spool.is_empty() && self.purged_direct.is_empty() {
            let seq = self.direct_seq;
            match self.produce(partition, &bytes, Origin::Direct { seq }) {
                Ok(()) => {
                    self.direct_seq += 1;
                    return;
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {}
                Err(error) => {
                    tracing::warn!(%error, partition, "usage batch refused by the client; spooled");
                }
            }
        }
        self.spool_append(partition, bytes);
    }

    fn produce(&self, partition: u32, bytes: &[u8], origin: Origin) -> Result<(), KafkaError> {
        let key = partition.to_string();
        let record = BaseRecord::with_opaque_to(&self.config.topics.usage, Box::new(origin))
            .partition(i32::try_from(partition).unwrap_or(i32::MAX))
            .key(key.as_bytes())
            .payload(bytes);
        self.producer.send(record).map_err(|(error, _)| error)
    }

    /// Appends to the spool; a batch the spool refuses is held (and no new batch taken) until
    /// it fits.
    fn spool_append(&mut self, partition: u32, bytes: Vec<u8>) {
        if !self.held.is_empty() {
            self.held.push_back((partition, bytes));
            return;
        }
        match self.spool.append(partition, &bytes) {
            Ok(_) => {
                bump(&self.shared.spooled, 1);
                self.warn_fill();
            }
            Err(error) => {
                if self.warned_level < 100 {
                    tracing::error!(
                        %error,
                        spool_bytes = self.spool.bytes(),
                        spool_max_bytes = self.spool.max_bytes(),
                        "usage spool full or failing: no new batches are taken until it drains \
                         (cores keep their usage pending)"
                    );
                    self.warned_level = 100;
                }
                self.held.push_back((partition, bytes));
            }
        }
    }

    /// Retries held batches, oldest first.
    fn place_held(&mut self) {
        while let Some((partition, bytes)) = self.held.pop_front() {
            match self.spool.append(partition, &bytes) {
                Ok(_) => bump(&self.shared.spooled, 1),
                Err(_) => {
                    self.held.push_front((partition, bytes));
                    return;
                }
            }
        }
    }

    fn warn_fill(&mut self) {
        let max = self.spool.max_bytes().max(1);
        let percent = self.spool.bytes().saturating_mul(100) / max;
        for level in [90u8, 75, 50] {
            if percent >= u64::from(level) {
                if self.warned_level < level {
                    self.warned_level = level;
                    tracing::warn!(
                        spool_bytes = self.spool.bytes(),
                        spool_max_bytes = max,
                        percent,
                        "usage spool filling: Kafka is not taking batches"
                    );
                }
                return;
            }
        }
    }

    /// Hands spooled records to the client, oldest first, while its queue has room; returns
    /// whether any was handed.
    fn replay(&mut self) -> bool {
        if !self.topics_ready || Instant::now() < self.replay_after {
            return false;
        }
        let room = i64::from(self.config.queue_max_messages.max(1));
        let mut sent = false;
        while i64::from(self.producer.in_flight_count()) < room {
            let record = match self.spool.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(%error, "usage spool unreadable; replay paused");
                    break;
                }
            };
            let origin = Origin::Spool {
                offset: record.offset,
            };
            match self.produce(record.partition, &record.bytes, origin) {
                Ok(()) => sent = true,
                Err(error) => {
                    self.spool.unread(record.offset);
                    if !matches!(
                        error,
                        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                    ) {
                        tracing::warn!(%error, "usage replay not accepted by the client");
                    }
                    break;
                }
            }
        }
        sent
    }

    /// Counts confirmations (acking spooled records); on a delivery error resets the producer
    /// so that everything unconfirmed goes back to the spool in its original order.
    fn handle_reports(&mut self) {
        if let Some(error) = self.collect_reports() {
            self.reset(&error);
        }
    }

    /// Handles the reports so far; returns the first delivery error other than a purge.
    fn collect_reports(&mut self) -> Option<KafkaError> {
        let reports = std::mem::take(
            &mut *self
                .producer
                .context()
                .reports
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut first_error = None;
        for report in reports {
            match (report.error, report.origin) {
                (None, origin) => {
                    bump(&self.shared.produced, 1);
                    if let Origin::Spool { offset } = origin {
                        bump(&self.shared.replayed, 1);
                        self.ack(offset);
                    }
                }
                (Some((error, payload)), origin) => {
                    if !is_purge(&error) {
                        bump(&self.shared.failed, 1);
                        first_error.get_or_insert(error);
                    }
                    // Direct ones are spooled ahead of the spool by `take_back`; spooled ones
                    // stay unconfirmed in it and are replayed again.
                    if let Origin::Direct { seq } = origin {
                        self.purged_direct.push((seq, report.partition, payload));
                    }
                }
            }
        }
        first_error
    }

    /// A delivery failed (with an infinite message timeout, only a fatal or permanent error):
    /// take everything back from the client in order and start a fresh producer after a pause.
    fn reset(&mut self, error: &KafkaError) {
        let fatal = self.producer.client().fatal_error();
        tracing::warn!(
            %error,
            fatal = %fatal.as_ref().map_or_else(String::new, |(code, text)| format!("{code}: {text}")),
            "usage delivery failed: producer reset, unconfirmed batches back to the spool"
        );
        self.take_back();
        match self
            .config
            .producer_config()
            .create_with_context(Reports::default())
        {
            Ok(producer) => self.producer = producer,
            Err(error) => tracing::error!(%error, "kafka producer not recreated"),
        }
        self.replay_after = Instant::now() + RESET_PAUSE;
    }

    /// Purges the client and spools what it held, in order: direct batches (sorted by their
    /// hand-over order) before every spooled record, spooled ones made pending again.
    fn take_back(&mut self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            self.producer.poll(Duration::from_millis(10));
            let _ = self.collect_reports();
            if self.producer.in_flight_count() == 0 || Instant::now() >= deadline {
                break;
            }
        }
        let _ = self.collect_reports();
        let left = self.producer.in_flight_count();
        if left > 0 {
            tracing::error!(
                in_flight = left,
                "kafka client kept messages after a purge; their batches may be lost"
            );
        }
        self.spool.rewind();
        let mut purged = std::mem::take(&mut self.purged_direct);
        purged.sort_by_key(|(seq, _, _)| *seq);
        let purged: Vec<(u32, Vec<u8>)> = purged.into_iter().map(|(_, p, b)| (p, b)).collect();
        let count = purged.len() as u64;
        match self.spool.prepend(&purged) {
            Ok(()) => bump(&self.shared.spooled, count),
            Err(error) => {
                bump(&self.shared.lost, count);
                tracing::error!(%error, batches = count, "usage batches lost: spool failed");
            }
        }
    }

    fn ack(&mut self, offset: u64) {
        if let Err(error) = self.spool.ack(offset) {
            tracing::error!(%error, "usage spool: confirmed file not deleted");
        }
    }

    fn publish(&mut self) {
        let s = &self.shared;
        s.spool_bytes.store(self.spool.bytes(), Ordering::Relaxed);
        s.spool_max_bytes
            .store(self.spool.max_bytes(), Ordering::Relaxed);
        s.spool_records.store(
            self.spool.pending() + self.spool.outstanding() + self.held.len() as u64,
            Ordering::Relaxed,
        );
        s.in_flight.store(
            u64::try_from(self.producer.in_flight_count()).unwrap_or(0),
            Ordering::Relaxed,
        );
        if self.warned_level > 0
            && self.held.is_empty()
            && self.spool.bytes().saturating_mul(2) < self.spool.max_bytes()
        {
            self.warned_level = 0;
            tracing::info!(
                spool_bytes = self.spool.bytes(),
                "usage spool below half full"
            );
        }
    }

    /// After the last intake: waits for reports, purges what the client still holds, spools it
    /// ahead of the spool, and closes the spool.
    fn finish(mut self) {
        let deadline = Instant::now() + self.config.flush_timeout;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(20));
            let _ = self.collect_reports();
        }
        if self.producer.in_flight_count() > 0 {
            tracing::warn!(
                in_flight = self.producer.in_flight_count(),
                "kafka sink shutdown: unconfirmed batches go to the spool"
            );
        }
        self.take_back();
        self.place_held();
        if !self.held.is_empty() {
            bump(&self.shared.lost, self.held.len() as u64);
            tracing::error!(
                batches = self.held.len(),
                "usage batches lost at shutdown: spool full"
            );
            self.held.clear();
        }
        if let Err(error) = self.spool.close() {
            tracing::error!(%error, "usage spool not closed cleanly");
        }
        self.publish();
    }
}

fn is_purge(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
        )
    )
}

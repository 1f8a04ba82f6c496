//! The entity log over Kafka (`[events] sink = "kafka"`): the compacted topic
//! `tollgate.entities` (key `kind/id`) shared by every node of a cluster.
//!
//! - [`Forwarder`]: the local journal stays the node's durable record (an admin write is
//!   acknowledged once synced there); this thread tails it and produces the node's **own**
//!   events (ids ending `@<node_id>`) to the topic, saving its position
//!   (`<data_dir>/entities.kafka.pos`) only after the broker confirmed delivery. A broker outage
//!   delays propagation, never loses a change; a retry may produce an event twice, which the
//!   readers ignore (same version and stamp).
//! - [`Follower`]: reads the whole topic from the beginning (it is compacted: one event per
//!   entity, the latest) and hands every event of **another** node to the caller, which applies
//!   it when it supersedes its fold (higher version, or same version and larger `(at, id)`), so
//!   all nodes converge on the same state.
//!
//! Secrets stay sealed on the topic: the nodes share the cluster key.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use gateway_events::kafka::KafkaConfig;
use gateway_model::event::EntityEvent;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::journal::JournalReader;

/// Where the entity log's topic is.
#[derive(Debug, Clone)]
pub struct KafkaLogConfig {
    /// The node's Kafka settings (brokers, topic names, partitions).
    pub kafka: KafkaConfig,
    /// The node's data directory (the forwarder's position file lives there).
    pub data_dir: PathBuf,
    /// This node's id.
    pub node_id: String,
}

impl KafkaLogConfig {
    fn topic(&self) -> &str {
        &self.kafka.topics.entities
    }
}

#[derive(Debug, Default)]
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, (): Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::AcqRel);
            tracing::warn!(error = %e, "entity event not delivered to Kafka; will retry");
        }
    }
}

/// Produces this node's entity events from its journal to the topic.
#[derive(Debug)]
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    sent: Arc<AtomicU64>,
}

impl Forwarder {
    /// Starts forwarding the journal in `journal_dir`.
    ///
    /// # Errors
    /// When the producer cannot be created or the thread spawned.
    pub fn start(config: &KafkaLogConfig, journal_dir: PathBuf) -> std::io::Result<Self> {
        if let Err(e) = gateway_events::kafka::ensure_topics(&config.kafka) {
            tracing::warn!(error = %e, "kafka: topics not created yet (retried by the forwarder)");
        }
        let producer: BaseProducer<Deliveries> = config
            .kafka
            .client(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "0"),
            ])
            .create_with_context(Deliveries::default())
            .map_err(std::io::Error::other)?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let pos_file = config.data_dir.join("entities.kafka.pos");
        let topic = config.topic().to_owned();
        let node_id = config.node_id.clone();
        let kafka = config.kafka.clone();
        let thread = {
            let stop = stop.clone();
            let sent = sent.clone();
            std::thread::Builder::new()
                .name("tollgate-entities-out".to_owned())
                .spawn(move || {
                    forward(
                        &producer,
                        &kafka,
                        &journal_dir,
                        &pos_file,
                        &topic,
                        &node_id,
                        &stop,
                        &sent,
                    );
                })?
        };
        Ok(Self {
            stop,
            thread: Some(thread),
            sent,
        })
    }

    /// Events confirmed by the broker since start.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The counter behind [`sent`](Self::sent), for metrics.
    pub fn sent_counter(&self) -> Arc<AtomicU64> {
        self.sent.clone()
    }

    /// Stops (after a last attempt to forward what is pending).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_pos(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn save_pos(path: &std::path::Path, pos: u64) {
    let tmp = path.with_extension("tmp");
    let written =
        std::fs::write(&tmp, format!("{pos}\n")).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(error = %e, "kafka: entity forwarder position not saved");
    }
}

#[allow(clippy::too_many_arguments)]
fn forward(
    producer: &BaseProducer<Deliveries>,
    kafka: &KafkaConfig,
    dir: &std::path::Path,
    pos_file: &std::path::Path,
    topic: &str,
    node_id: &str,
    stop: &AtomicBool,
    sent: &AtomicU64,
) {
    let mut topics_ok = false;
    let mut pos = read_pos(pos_file);
    let mut reader: Option<JournalReader> = None;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if !topics_ok {
            topics_ok = gateway_events::kafka::ensure_topics(kafka).is_ok();
        }
        let r = match reader.as_mut() {
            Some(r) => r,
            None => match JournalReader::open(dir, pos) {
                Ok(r) => reader.insert(r),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka: cannot read the entity journal");
                    if stopping {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            },
        };
        // A batch of the node's own events.
        let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
        let mut next = pos;
        while batch.len() < 512 {
            match r.next_record() {
                Ok(Some(record)) => {
                    next = record.offset + 1;
                    if let Ok(event) = EntityEvent::decode(record.payload) {
                        if super::written_by(&event.id, node_id) {
                            batch.push((event.compaction_key(), record.payload.to_vec()));
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => match r.skip_corrupt() {
                    Ok(Some(skipped)) => next = skipped.next_offset,
                    _ => break,
                },
            }
        }
        if next == pos {
            if stopping {
                return;
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let failed_before = producer.context().failed.load(Ordering::Acquire);
        let mut queued = true;
        for (key, payload) in &batch {
            let mut record = BaseRecord::to(topic)
                .key(key.as_str())
                .payload(payload.as_slice());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        if stop.load(Ordering::Acquire)
                            && !matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            )
                        {
                            queued = false;
                            break;
                        }
                        record = back;
                        producer.poll(Duration::from_millis(50));
                    }
                }
            }
        }
        let flushed = producer.flush(Duration::from_secs(5)).is_ok();
        let failed = producer.context().failed.load(Ordering::Acquire) != failed_before;
        if queued && flushed && !failed {
            pos = next;
            save_pos(pos_file, pos);
            sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
        } else {
            // Start again from the last confirmed position.
            reader = None;
            if stopping {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Reads the topic and hands other nodes' events to a callback.
#[derive(Debug)]
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts following the topic from its beginning; `apply` runs on the follower's thread.
    ///
    /// # Errors
    /// When the consumer cannot be created or the thread spawned.
    pub fn start(
        config: &KafkaLogConfig,
        apply: impl Fn(EntityEvent) + Send + 'static,
    ) -> std::io::Result<Self> {
        let unique = crate::seal::random_bytes(6)
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            .unwrap_or_default();
        let group = format!("tollgate-entities-{}-{unique}", config.node_id);
        let consumer: BaseConsumer = config
            .kafka
            .client(&[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("fetch.wait.max.ms", "20"),
            ])
            .create()
            .map_err(std::io::Error::other)?;
        let stop = Arc::new(AtomicBool::new(false));
        let topic = config.topic().to_owned();
        let node_id = config.node_id.clone();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("tollgate-entities-in".to_owned())
                .spawn(move || follow(&consumer, &topic, &node_id, &stop, &apply))?
        };
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops following.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow(
    consumer: &BaseConsumer,
    topic: &str,
    node_id: &str,
    stop: &AtomicBool,
    apply: &dyn Fn(EntityEvent),
) {
    // Assign every partition from the beginning, once the topic exists.
    while !stop.load(Ordering::Acquire) {
        let assigned = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .ok()
            .and_then(|m| {
                let t = m.topics().iter().find(|t| t.name() == topic)?;
                if t.error().is_some() || t.partitions().is_empty() {
                    return None;
                }
                let mut list = TopicPartitionList::new();
                for p in t.partitions() {
                    list.add_partition_offset(topic, p.id(), Offset::Beginning)
                        .ok()?;
                }
                consumer.assign(&list).ok()
            });
        if assigned.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let Some(payload) = m.payload() else {
                    continue;
                };
                match EntityEvent::decode(payload) {
                    Ok(event) if !super::written_by(&event.id, node_id) => apply(event),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, offset = m.offset(), "kafka: bad entity event skipped");
                    }
                }
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "kafka: entity follower poll");
            }
            None => {}
        }
    }
}

//! Consuming Kafka with every partition assigned by the ledger itself, the offsets kept in the
//! ledger's store.
//!
//! The ledger owns its store alone, so it needs every partition of the usage and entity topics:
//! it `assign()`s them all (no group membership, so no rebalance can hand part of them to a
//! killed instance that the broker has not expired yet), each at the position stored with the
//! aggregates (or the beginning when the store has none), so a restart resumes exactly where
//! the last committed chunk ended. Kafka's committed offsets are never used. Partitions added to
//! a topic later are picked up at the next metadata check. After each committed chunk the
//! totals of the keys it changed are published on the totals topic (compacted, key = API key
//! id).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::SourceConfig;
use crate::error::{LedgerError, LedgerErrorKind};
use crate::metrics::Lag;
use crate::runtime::Shared;

/// The source name of a topic-partition (its key in the positions table).
#[must_use]
pub fn source_name(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}:{partition}")
}

/// Next offset to read per source name: the store's positions, then every record read.
type Positions = HashMap<String, u64>;

/// How often the topics' partition counts are read again (a partition added to a topic is
/// consumed from then on).
const METADATA_EVERY: Duration = Duration::from_secs(10);

/// Consumer context: logs client errors (there is no rebalance: the ledger assigns itself).
struct Logged;

impl ClientContext for Logged {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for Logged {}

/// The partitions of `topics` (topic → partition ids) as the broker reports them now.
fn partitions_of(
    consumer: &BaseConsumer<Logged>,
    topics: &[&str],
) -> Result<BTreeMap<String, Vec<i32>>, LedgerError> {
    let mut out = BTreeMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(kafka_error("read topic metadata"))?;
        let ids: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == *topic && t.error().is_none())
            .flat_map(|t| {
                t.partitions()
                    .iter()
                    .map(rdkafka::metadata::MetadataPartition::id)
            })
            .collect();
        if ids.is_empty() {
            return Err(LedgerError::new(
                LedgerErrorKind::Kafka,
                format!("topic `{topic}` has no partitions in the broker's metadata"),
            ));
        }
        out.insert((*topic).to_owned(), ids);
    }
    Ok(out)
}

/// Assigns every partition of `layout`, each at its position (the beginning when none).
fn assign_all(
    consumer: &BaseConsumer<Logged>,
    layout: &BTreeMap<String, Vec<i32>>,
    positions: &Positions,
) -> Result<(), LedgerError> {
    let mut tpl = TopicPartitionList::new();
    for (topic, ids) in layout {
        for &partition in ids {
            let offset = positions
                .get(&source_name(topic, partition))
                .and_then(|n| i64::try_from(*n).ok())
                .map_or(Offset::Beginning, Offset::Offset);
            tpl.add_partition_offset(topic, partition, offset)
                .map_err(kafka_error("set start offset"))?;
        }
    }
    consumer.assign(&tpl).map_err(kafka_error("assign"))?;
    let assigned: Vec<String> = layout
        .iter()
        .map(|(topic, ids)| format!("{topic}/{}", ids.len()))
        .collect();
    tracing::info!(
        partitions = %assigned.join(","),
        "every partition assigned at the stored positions"
    );
    Ok(())
}

fn kafka_error(context: &str) -> impl FnOnce(KafkaError) -> LedgerError + '_ {
    move |e| LedgerError::with(LedgerErrorKind::Kafka, context.to_owned(), e)
}

/// Consumes until `shared.stop`; commits what it read before returning.
///
/// # Errors
///
/// Kafka client creation or topic creation failed, or a store error (the caller restarts
/// from the store's positions).
pub fn run(shared: &Shared) -> Result<(), LedgerError> {
    let SourceConfig::Kafka {
        brokers,
        usage_topic,
        entities_topic,
        totals_topic,
        group,
        partitions,
    } = &shared.config.source
    else {
        return Ok(());
    };
    let mut admin = gateway_events::kafka::KafkaConfig::new(brokers, std::path::Path::new(""));
    admin.topics = gateway_events::kafka::Topics {
        usage: usage_topic.clone(),
        entities: entities_topic.clone(),
        totals: totals_topic.clone(),
    };
    admin.partitions = *partitions;
    gateway_events::kafka::ensure_topics(&admin)
        .map_err(|e| LedgerError::with(LedgerErrorKind::Kafka, "create topics", e.to_string()))?;

    let mut fold = shared.resume_fold()?;
    let mut positions: Positions = fold
        .positions()
        .iter()
        .filter(|(k, _)| k.starts_with("kafka:"))
        .map(|(k, p)| (k.clone(), p.next))
        .collect();
    let consumer: BaseConsumer<Logged> = gateway_events::kafka::client_config(
        brokers,
        &[
            // Only the name the client reports: with `assign()` there is no group membership,
            // and offsets are never committed to Kafka.
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            // Short fetch waits: the totals this ledger publishes feed the gateways' cross-node
            // quotas, and a broker that does not answer a fetch early when data arrives (tansu)
            // would otherwise add up to the default 500 ms to that lag.
            ("fetch.wait.max.ms", "50"),
        ],
        &[],
    )
    .create_with_context(Logged)
    .map_err(kafka_error("create consumer"))?;
    let topics = [usage_topic.as_str(), entities_topic.as_str()];
    let mut layout = partitions_of(&consumer, &topics)?;
    assign_all(&consumer, &layout, &positions)?;
    let mut last_metadata = Instant::now();
    let producer: ThreadedProducer<DefaultProducerContext> =
        gateway_events::kafka::client_config(brokers, &[("acks", "all"), ("linger.ms", "5")], &[])
            .create()
            .map_err(kafka_error("create totals producer"))?;

    let chunk_wait = Duration::from_millis(50);
    let mut last_lag = Instant::now();
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let deadline = Instant::now() + chunk_wait;
        let mut read = 0usize;
        while !stopping && read < shared.config.chunk_records && !fold.delta().rows.is_full() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match consumer.poll(left) {
                None => break,
                Some(Err(error)) => {
                    tracing::warn!(%error, "kafka poll error");
                    shared.metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                    shared.metrics.set_error(Some(format!("kafka: {error}")));
                    break;
                }
                Some(Ok(message)) => {
                    let Ok(offset) = u64::try_from(message.offset()) else {
                        continue;
                    };
                    let source = source_name(message.topic(), message.partition());
                    let payload = message.payload().unwrap_or_default();
                    if message.topic() == usage_topic {
                        fold.apply_usage(&source, offset, payload);
                    } else {
                        fold.apply_entity(&source, offset, payload);
                    }
                    positions.insert(source, offset + 1);
                    read += 1;
                }
            }
        }
        if let Some(summary) = shared.commit(&mut fold)? {
            if read > 0 {
                shared.metrics.set_error(None);
            }
            for key in &summary.changed_keys {
                publish_totals(shared, &producer, totals_topic, key);
            }
        }
        if stopping {
            let _ = producer.flush(Duration::from_secs(5));
            return Ok(());
        }
        if last_lag.elapsed() >= Duration::from_secs(2) {
            last_lag = Instant::now();
            update_lag(shared, &consumer, &positions);
        }
        if last_metadata.elapsed() >= METADATA_EVERY {
            last_metadata = Instant::now();
            // A broker that does not answer now is retried at the next check; the partitions
            // already assigned go on being consumed.
            match partitions_of(&consumer, &topics) {
                Ok(now) if now != layout => {
                    assign_all(&consumer, &now, &positions)?;
                    layout = now;
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "partition check failed; retrying later"),
            }
        }
    }
}

fn publish_totals(
    shared: &Shared,
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    apikey: &str,
) {
    let record = match shared.totals(apikey) {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, apikey, "totals read failed");
            shared
                .metrics
                .totals_publish_errors
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let Ok(payload) = record.encode() else {
        shared
            .metrics
            .totals_publish_errors
            .fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut attempts = 0;
    loop {
        match producer.send(BaseRecord::to(topic).key(apikey).payload(&payload)) {
            Ok(()) => {
                shared
                    .metrics
                    .totals_published
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err((error, _)) if attempts < 50 => {
                attempts += 1;
                tracing::debug!(%error, "totals producer queue full; waiting");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((error, _)) => {
                tracing::warn!(%error, apikey, "totals not published");
                shared
                    .metrics
                    .totals_publish_errors
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

fn update_lag(shared: &Shared, consumer: &BaseConsumer<Logged>, positions: &Positions) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    for element in assignment.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let name = source_name(topic, partition);
        let position = positions.get(&name).copied().unwrap_or(0);
        let high = consumer
            .fetch_watermarks(topic, partition, Duration::from_millis(500))
            .ok()
            .and_then(|(_, high)| u64::try_from(high).ok());
        shared.metrics.set_lag(
            &name,
            Lag {
                records: high.map(|h| h.saturating_sub(position)),
                position,
            },
        );
    }
}

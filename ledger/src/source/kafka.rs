//! Consuming Kafka in a consumer group, with the offsets kept in the ledger's store.
//!
//! Kafka's committed offsets are never used: on every partition assignment the rebalance
//! callback seeks each assigned partition to the position stored with the aggregates (or to
//! the beginning when the store has none), so a restart or a rebalance resumes exactly where
//! the last committed chunk ended. After each committed chunk the totals of the keys it changed
//! are published on the totals topic (compacted, key = API key id).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::config::SourceConfig;
use crate::error::{LedgerError, LedgerErrorKind};
use crate::metrics::Lag;
use crate::runtime::Shared;

/// The source name of a topic-partition (its key in the positions table).
#[must_use]
pub fn source_name(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}:{partition}")
}

type Positions = Arc<Mutex<HashMap<String, u64>>>;

/// Consumer context: seeks assigned partitions to the ledger's own positions.
struct SeekToStored {
    positions: Positions,
}

impl ClientContext for SeekToStored {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SeekToStored {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                {
                    let positions = self
                        .positions
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    for (topic, partition) in &assigned {
                        let offset = positions
                            .get(&source_name(topic, *partition))
                            .and_then(|n| i64::try_from(*n).ok())
                            .map_or(Offset::Beginning, Offset::Offset);
                        if let Err(error) = tpl.set_partition_offset(topic, *partition, offset) {
                            tracing::error!(%error, topic, partition, "cannot set start offset");
                        }
                    }
                }
                let partitions: Vec<String> =
                    assigned.iter().map(|(t, p)| format!("{t}/{p}")).collect();
                tracing::info!(
                    partitions = %partitions.join(","),
                    "partitions assigned; seeking to stored offsets"
                );
                if let Err(error) = consumer.assign(tpl) {
                    tracing::error!(%error, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!("partitions revoked");
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "unassign failed");
                }
            }
            other => {
                tracing::error!(
                    error = %rdkafka::types::RDKafkaErrorCode::from(other),
                    "rebalance error"
                );
                let _ = consumer.unassign();
            }
        }
    }
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
    let positions: Positions = Arc::new(Mutex::new(
        fold.positions()
            .iter()
            .filter(|(k, _)| k.starts_with("kafka:"))
            .map(|(k, p)| (k.clone(), p.next))
            .collect(),
    ));
    let consumer: BaseConsumer<SeekToStored> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        // Short fetch waits: the totals this ledger publishes feed the gateways' cross-node
        // quotas, and a broker that does not answer a fetch early when data arrives (tansu)
        // would otherwise add up to the default 500 ms to that lag.
        .set("fetch.wait.max.ms", "50")
        .create_with_context(SeekToStored {
            positions: Arc::clone(&positions),
        })
        .map_err(kafka_error("create consumer"))?;
    consumer
        .subscribe(&[usage_topic.as_str(), entities_topic.as_str()])
        .map_err(kafka_error("subscribe"))?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
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
                    positions
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(source, offset + 1);
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

fn update_lag(shared: &Shared, consumer: &BaseConsumer<SeekToStored>, positions: &Positions) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    for element in assignment.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let name = source_name(topic, partition);
        let position = positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .copied()
            .unwrap_or(0);
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

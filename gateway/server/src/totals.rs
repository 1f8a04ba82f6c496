//! Cross-node quotas: a thread follows the ledger's `tollgate.totals` (compacted, one record per
//! API key: today's and this month's calls, with a per-node breakdown) and feeds the node's
//! quota pool (DESIGN §3).
//!
//! For each record: the calls of every *other* node go to `NodePool::set_remote` (subtracted
//! from what this node may still admit in that window), and this node's own count to
//! `NodePool::restore` (a maximum, never an addition: it only matters when this node's journal
//! lost them, e.g. a node rebuilt on a fresh disk). The latest record per key is kept and applied
//! again whenever a new snapshot (a new pool, or new keys) is published.
//!
//! A quota reset (`DELETE /api/apikeys/{id}/quotas` on any node) reaches every node through
//! the entity log and the ledger: a record whose `quotas_reset_at` is older than the key's last
//! reset applied here is skipped (it still counts the calls before the reset); the ledger's
//! next record counts from the reset.
//!
//! Overshoot bound: a node admits on its own view; what other nodes admitted since their last
//! published totals is unknown to it. So a key can be over-admitted by at most
//! (sum of the other nodes' admitted rate for that key) × (propagation lag: their flush interval
//! 100 ms + forwarding + the ledger's commit + this thread's poll). docs/operations.md records
//! the measured lag.
//!
//! Blocking network IO on its own thread; the cores never see it.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gateway_model::event::TotalsRecord;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

pub use crate::metrics::TotalsCounters;
use crate::shared::NodeShared;

/// Starts the follower of `topic` on `brokers` for node `node_id`.
///
/// # Errors
///
/// The thread could not be spawned.
pub fn spawn(
    shared: Arc<NodeShared>,
    kafka: &gateway_events::kafka::KafkaConfig,
    node_id: String,
    counters: Arc<TotalsCounters>,
) -> std::io::Result<JoinHandle<()>> {
    let client = consumer(kafka);
    let topic = kafka.topics.totals.clone();
    std::thread::Builder::new()
        .name("tollgate-totals".into())
        .spawn(move || follow(&shared, client, &topic, &node_id, &counters))
}

fn consumer(kafka: &gateway_events::kafka::KafkaConfig) -> Option<BaseConsumer> {
    kafka
        .client(&[
            ("group.id", "tollgate-gateway-totals"),
            ("enable.auto.commit", "false"),
            // The lag of this thread is part of the overshoot bound: do not let a fetch wait
            // the default 500 ms on a broker that does not answer early.
            ("fetch.wait.max.ms", "50"),
        ])
        .create()
        .map_err(|e| tracing::error!(error = %e, "totals: kafka consumer not created"))
        .ok()
}

/// Assigns every partition of `topic` from the beginning; `false` while the topic is unknown.
fn assign(consumer: &BaseConsumer, topic: &str) -> bool {
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return false;
    };
    let mut list = TopicPartitionList::new();
    for t in metadata.topics() {
        if t.error().is_some() || t.partitions().is_empty() {
            return false;
        }
        for p in t.partitions() {
            if list
                .add_partition_offset(topic, p.id(), Offset::Beginning)
                .is_err()
            {
                return false;
            }
        }
    }
    list.count() > 0 && consumer.assign(&list).is_ok()
}

fn follow(
    shared: &NodeShared,
    consumer: Option<BaseConsumer>,
    topic: &str,
    node_id: &str,
    counters: &TotalsCounters,
) {
    use std::sync::atomic::Ordering;
    let Some(consumer) = consumer else {
        return;
    };
    let mut assigned = false;
    let mut next_try = Instant::now();
    let mut latest: HashMap<String, TotalsRecord> = HashMap::new();
    let mut generation = shared.current().generation;
    while !shared.is_shutting_down() {
        if !assigned {
            if Instant::now() < next_try {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            assigned = assign(&consumer, topic);
            if !assigned {
                tracing::debug!(topic, "totals: topic not available yet");
                next_try = Instant::now() + Duration::from_millis(500);
                continue;
            }
        }
        let current = shared.current();
        if current.generation != generation {
            generation = current.generation;
            for record in latest.values() {
                apply(&current.pool, record, node_id);
            }
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let Some(payload) = message.payload() else {
                    continue;
                };
                match TotalsRecord::decode(payload) {
                    Ok(record) => {
                        apply(&current.pool, &record, node_id);
                        counters.applied.fetch_add(1, Ordering::Relaxed);
                        counters
                            .newest_ms
                            .fetch_max(record.updated_at, Ordering::Relaxed);
                        latest.insert(record.apikey.clone(), record);
                    }
                    Err(error) => {
                        counters.invalid.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, offset = message.offset(), "totals: record skipped");
                    }
                }
            }
            Some(Err(error)) => tracing::debug!(%error, "totals: poll"),
            None => {}
        }
    }
}

fn apply(pool: &gateway_core::quota::NodePool, record: &TotalsRecord, node_id: &str) {
    // Folded before a reset this node has applied: it still counts the calls before it.
    if pool
        .reset_at(&record.apikey)
        .is_some_and(|at| record.quotas_reset_at.is_none_or(|folded| folded < at))
    {
        return;
    }
    let others = record.calls_excluding(node_id);
    pool.set_remote(
        &record.apikey,
        record.day,
        others.daily_calls,
        record.month,
        others.monthly_calls,
    );
    if let Some(own) = record.nodes.get(node_id) {
        pool.restore(
            &record.apikey,
            record.day,
            own.daily_calls,
            record.month,
            own.monthly_calls,
        );
    }
}

//! A real Kafka-protocol broker for tests (tansu, the repository's scripts/kafka-broker.sh): finding it, unique
//! topic names, one Kafka test at a time, and reading a topic back.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gateway_model::event::decode;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

pub const BROKER_SCRIPT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/kafka-broker.sh");

static SERIAL: Mutex<()> = Mutex::new(());

/// Kafka tests of one binary run one at a time (one of them stops the broker).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The broker address, or `None` (after a skip note) when none is configured and none answers.
/// With `TOLLGATE_KAFKA` set (CI) the broker must answer within 20 s or the test fails.
pub fn broker() -> Option<String> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let answers = |addr: &str| {
        addr.parse::<SocketAddr>()
            .ok()
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
    };
    match std::env::var("TOLLGATE_KAFKA") {
        Ok(addr) => {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !answers(&addr) {
                assert!(
                    Instant::now() < deadline,
                    "TOLLGATE_KAFKA={addr} is set but no broker answers there"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Some(addr)
        }
        Err(_) => {
            let addr = "127.0.0.1:9092";
            if answers(addr) {
                Some(addr.to_owned())
            } else {
                eprintln!(
                    "SKIP: no Kafka broker on {addr} and TOLLGATE_KAFKA unset; \
                     start one with {BROKER_SCRIPT} start"
                );
                None
            }
        }
    }
}

/// A name no other run uses: `test-<pid>-<ms>-<n>-<name>`.
pub fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "test-{}-{millis}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every record of `topic` (partitions `0..partitions`) from the beginning, read until none
/// came for `quiet` (or `timeout` passed): `(partition, payload)` in arrival order.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    partitions: u32,
    quiet: Duration,
    timeout: Duration,
) -> Vec<(i32, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, i32::try_from(p).unwrap(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut last = Instant::now();
    while Instant::now() < deadline && last.elapsed() < quiet {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            out.push((
                message.partition(),
                message.payload().unwrap_or_default().to_vec(),
            ));
            last = Instant::now();
        }
    }
    out
}

/// A usage batch's producer and sequence: `(node, epoch, core, partition, sequence)`.
pub type BatchId = (String, u64, u16, u32, u64);

/// Usage batches keyed by producer and sequence, with their admitted and refused calls; a
/// duplicate (same id) must carry the same bytes.
pub fn batches(records: &[(i32, Vec<u8>)]) -> HashMap<BatchId, (u64, u64)> {
    let mut out = HashMap::new();
    let mut bytes_of: HashMap<BatchId, &[u8]> = HashMap::new();
    for (partition, bytes) in records {
        let batch = decode(bytes).unwrap();
        assert_eq!(i64::from(batch.partition), i64::from(*partition));
        let id = (
            batch.node.clone(),
            batch.epoch,
            batch.core,
            batch.partition,
            batch.sequence,
        );
        if let Some(previous) = bytes_of.insert(id.clone(), bytes) {
            assert_eq!(previous, &bytes[..], "duplicate {id:?} with other contents");
        }
        let admitted = batch.entries.iter().map(|e| e.counters.admitted).sum();
        let refused = batch
            .entries
            .iter()
            .map(|e| e.counters.rejected.total())
            .sum();
        out.insert(id, (admitted, refused));
    }
    out
}

pub fn broker_script(action: &str) {
    let status = Command::new("bash")
        .arg(BROKER_SCRIPT)
        .arg(action)
        .status()
        .unwrap();
    assert!(status.success(), "{BROKER_SCRIPT} {action} failed");
}

/// Starts the broker again when dropped, so a failing outage test leaves it running.
pub struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(BROKER_SCRIPT)
            .arg("start")
            .status();
    }
}

//! The Kafka sink against a real broker (tansu, scripts/kafka-broker.sh).
//!
//! With `TOLLGATE_KAFKA` set (CI: `127.0.0.1:9092`) the broker must answer or the tests fail.
//! Unset, they use 127.0.0.1:9092 if something answers there, else print a skip note and pass.
//! Each test uses its own topics (`tollgate.usage.test-<pid>-<time>-<n>`), so runs never see each
//! other's records, and tests run one at a time because the outage test stops the broker.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::kafka::{BrokerBack, broker, broker_script, serial, unique};
use gateway::kafka::{KafkaConfig, KafkaCounters, KafkaHandle, KafkaSink, Topics};
use gateway_model::event::{UsageBatch, UsageCounters, UsageEntry, decode, partition_for};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const PARTITIONS: u32 = 4;

fn config(brokers: &str, name: &str) -> (KafkaConfig, PathBuf) {
    let id = unique(name);
    let data = std::env::temp_dir().join(format!("tollgate-kafka-{id}"));
    let _ = std::fs::remove_dir_all(&data);
    let mut config = KafkaConfig::new(brokers, &data);
    config.topics = Topics::with_suffix(&id);
    config.partitions = PARTITIONS;
    (config, data)
}

/// An API key id per partition.
fn keys() -> Vec<String> {
    (0..PARTITIONS)
        .map(|p| {
            (0..)
                .map(|i| format!("k-{i}"))
                .find(|k| partition_for(k, PARTITIONS) == p)
                .unwrap()
        })
        .collect()
}

/// Batch number `n` of core `core`: partition `n % PARTITIONS`, sequence per partition.
fn batch(keys: &[String], core: u16, n: u64) -> UsageBatch {
    let partition = u32::try_from(n % u64::from(PARTITIONS)).unwrap();
    UsageBatch {
        node: "gw-test".to_owned(),
        epoch: 1,
        core,
        partition,
        partitions: PARTITIONS,
        sequence: n / u64::from(PARTITIONS),
        window_start_ms: 1_700_000_000_000,
        window_end_ms: 1_700_000_000_100,
        entries: vec![UsageEntry {
            apikey: keys[partition as usize].clone(),
            api: Some("api".to_owned()),
            route: "route".to_owned(),
            consumer: None,
            subscription: None,
            day: 20_240_315,
            month: 202_403,
            counters: UsageCounters {
                admitted: n + 1,
                ..UsageCounters::default()
            },
        }],
    }
}

/// Sends until accepted (a refusal means the channel is full: the core would keep it).
fn send(handle: &KafkaHandle, mut batch: UsageBatch) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(back) = handle.try_send(batch) {
        assert!(Instant::now() < deadline, "sink refused batches for 30 s");
        batch = back;
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait_for(
    sink: &KafkaSink,
    what: &str,
    timeout: Duration,
    done: impl Fn(&KafkaCounters) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let counters = sink.counters();
        if done(&counters) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {counters:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the usage topic from the beginning until `expected` records came (or `timeout`), then
/// a little longer to catch duplicates.
fn consume(brokers: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<(i32, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, i32::try_from(p).unwrap(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut extra_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if extra_until.is_some_and(|t| now >= t) || now >= deadline {
            break;
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            let key = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned());
            assert_eq!(
                key,
                Some(message.partition().to_string()),
                "key is the partition number"
            );
            out.push((message.partition(), message.payload().unwrap().to_vec()));
        }
        if out.len() >= expected && extra_until.is_none() {
            extra_until = Some(Instant::now() + Duration::from_millis(500));
        }
    }
    out
}

/// Every batch of `cores` × `per_core` exactly once, decodable, on its partition, in sequence
/// order per producer.
fn check_exactly_once_in_order(records: &[(i32, Vec<u8>)], cores: u16, per_core: u64) {
    let mut last: HashMap<(u16, u32), u64> = HashMap::new();
    let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for (partition, bytes) in records {
        let batch = decode(bytes).unwrap();
        assert_eq!(
            i64::from(batch.partition),
            i64::from(*partition),
            "batch on its partition"
        );
        let producer = (batch.core, batch.partition);
        let expected = last.get(&producer).map_or(0, |s| s + 1);
        assert_eq!(
            batch.sequence,
            expected,
            "producer {producer:?}: sequence {} after {:?} (lost, duplicated or reordered)",
            batch.sequence,
            last.get(&producer)
        );
        last.insert(producer, batch.sequence);
        *per_partition.entry(*partition).or_default() += 1;
    }
    let total = usize::from(cores) * usize::try_from(per_core).unwrap();
    assert_eq!(records.len(), total, "per partition: {per_partition:?}");
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn batches_arrive_exactly_once_in_order_per_partition() {
    let _serial = serial();
    let Some(brokers) = broker() else { return };
    let (config, data) = config(&brokers, "plain");
    let topic = config.topics.usage.clone();
    let sink = KafkaSink::start(config).unwrap();
    let keys = keys();
    let handle = sink.handle();
    let (cores, per_core) = (2u16, 1000u64);
    std::thread::scope(|s| {
        for core in 0..cores {
            let handle = handle.clone();
            let keys = &keys;
            s.spawn(move || {
                for n in 0..per_core {
                    send(&handle, batch(keys, core, n));
                }
            });
        }
    });
    let total = u64::from(cores) * per_core;
    wait_for(&sink, "deliveries", Duration::from_secs(30), |c| {
        c.produced == total
    });
    let counters = sink.shutdown();
    assert_eq!(counters.produced, total);
    assert_eq!(
        (counters.failed, counters.lost, counters.encode_errors),
        (0, 0, 0)
    );
    assert_eq!(counters.spool_bytes, 0, "{counters:?}");
    let records = consume(&brokers, &topic, total as usize, Duration::from_secs(30));
    check_exactly_once_in_order(&records, cores, per_core);
    let _ = std::fs::remove_dir_all(data);
}

#[test]
fn encoded_batches_and_a_restart_of_the_sink() {
    let _serial = serial();
    let Some(brokers) = broker() else { return };
    let (config, data) = config(&brokers, "encoded");
    let topic = config.topics.usage.clone();
    let keys = keys();
    for round in 0..2u64 {
        let sink = KafkaSink::start(config.clone()).unwrap();
        let handle = sink.handle();
        for n in round * 100..(round + 1) * 100 {
            let b = batch(&keys, 0, n);
            let bytes = gateway_model::event::encode(&b).unwrap();
            handle.try_send_encoded(b.partition, bytes).unwrap();
        }
        let counters = sink.shutdown();
        assert_eq!(counters.produced, 100, "round {round}: {counters:?}");
    }
    let records = consume(&brokers, &topic, 200, Duration::from_secs(30));
    check_exactly_once_in_order(&records, 1, 200);
    let _ = std::fs::remove_dir_all(data);
}

/// Stops the broker under load, keeps producing (batches spool), starts it again: every batch
/// arrives once, in order per partition, and the spool ends empty.
#[test]
fn broker_outage_spools_and_replays_in_order_without_loss() {
    let _serial = serial();
    let Some(brokers) = broker() else { return };
    let (mut config, data) = config(&brokers, "outage");
    // A small client queue so that the outage reaches the spool quickly.
    config.queue_max_messages = 200;
    config.spool_segment_bytes = 64 << 10;
    let topic = config.topics.usage.clone();
    let sink = KafkaSink::start(config).unwrap();
    let keys = keys();
    let handle = sink.handle();
    let cores = 2u16;
    let stop = Arc::new(AtomicBool::new(false));

    let mut restarted = false;
    let per_core: Vec<u64> = std::thread::scope(|s| {
        // Producers stop even when an assertion below fails (the scope waits for them).
        let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
        let producers: Vec<_> = (0..cores)
            .map(|core| {
                let handle = handle.clone();
                let keys = &keys;
                let stop = Arc::clone(&stop);
                s.spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        send(&handle, batch(keys, core, n));
                        n += 1;
                        // ~1000 batches/s per core.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    n
                })
            })
            .collect();
        // The topics exist and batches flow before the outage.
        wait_for(&sink, "first delivery", Duration::from_secs(20), |c| {
            c.produced > 0
        });
        std::thread::sleep(Duration::from_secs(1));
        let _back = BrokerBack;
        broker_script("stop");
        let outage = Instant::now();
        // Keep producing until batches spool (and at least 3 s of outage).
        let deadline = Instant::now() + Duration::from_secs(15);
        while sink.counters().spooled == 0 || outage.elapsed() < Duration::from_secs(3) {
            assert!(
                Instant::now() < deadline,
                "nothing spooled: {:?}",
                sink.counters()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker_script("start");
        restarted = true;
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        producers.into_iter().map(|p| p.join().unwrap()).collect()
    });
    assert!(restarted);
    let total: u64 = per_core.iter().sum();
    wait_for(
        &sink,
        "replay after the outage",
        Duration::from_secs(40),
        // `produced` may pass `total`: see the duplicates below.
        |c| c.produced >= total && c.spool_records == 0 && c.in_flight == 0,
    );
    let counters = sink.shutdown();
    eprintln!("outage: {counters:?}");
    assert!(
        counters.spooled > 0 && counters.replayed > 0,
        "{counters:?}"
    );
    assert_eq!(
        (counters.lost, counters.encode_errors),
        (0, 0),
        "{counters:?}"
    );
    assert_eq!(
        counters.spool_bytes, 0,
        "spool empty at the end: {counters:?}"
    );
    let records = consume(&brokers, &topic, total as usize, Duration::from_secs(30));
    // A producer reset (after a delivery error, e.g. when the restarted broker no longer
    // knows the idempotent producer) may resend batches whose acknowledgement was lost: the
    // ledger skips them (`sequence <= last`). What must hold: no batch missing, none out of
    // order (each producer's first occurrences are 0, 1, 2, ...).
    let mut last: HashMap<(u16, u32), u64> = HashMap::new();
    let mut duplicates = 0;
    for (partition, bytes) in &records {
        let b = decode(bytes).unwrap();
        assert_eq!(i64::from(b.partition), i64::from(*partition));
        let key = (b.core, b.partition);
        match last.get(&key) {
            Some(&l) if b.sequence <= l => duplicates += 1,
            l => {
                let expected = l.map_or(0, |s| s + 1);
                assert_eq!(b.sequence, expected, "producer {key:?}: gap or reorder");
                last.insert(key, b.sequence);
            }
        }
    }
    eprintln!(
        "outage: {} records, {duplicates} replayed duplicates",
        records.len()
    );
    assert_eq!(records.len() as u64 - duplicates, total);
    for (core, sent) in per_core.iter().enumerate() {
        let got: u64 = (0..PARTITIONS)
            .filter_map(|p| last.get(&(u16::try_from(core).unwrap(), p)).map(|s| s + 1))
            .sum();
        assert_eq!(got, *sent, "core {core}");
    }
    let _ = std::fs::remove_dir_all(data);
}

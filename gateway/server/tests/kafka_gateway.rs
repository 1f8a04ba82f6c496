//! The gateway with `[events] sink = "kafka"` against a real broker (tansu): usage reaches the
//! topic through the node's journal (the outbox), exactly what the cores handed over, also when
//! the process is killed with SIGKILL under load and started again.
//!
//! With `TOLLGATE_KAFKA` set (CI) the broker must answer or the tests fail (common::kafka).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::kafka::{
    BatchId, BrokerBack, batches, broker, broker_script, read_topic, serial, unique,
};
use common::{Binary, Client, TempDir, get_request};
use gateway::config::HttpLimits;
use gateway::kafka::{KafkaConfig, Topics};
use gateway::node::{Node, NodeOptions};
use gateway::runtime::IoMode;
use gateway_model::import::{Dialect, import_value};
use serde_json::{Value, json};

const PARTITIONS: u32 = 4;
const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];

fn entities_doc(daily: u64) -> Value {
    json!({
        "routes": [{"id": "keyed", "frontend": {"domains": ["*"]},
                    "backend": {"mock": {"body": "ok"}},
                    "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls"}]}],
        "apiKeys": KEYS.iter().map(|k| json!({
            "clientId": k, "clientSecret": "s3cr3t-value", "authorizedEntities": ["route_keyed"],
            "dailyQuota": daily, "monthlyQuota": 10_000_000, "throttlingQuota": 10_000_000
        })).collect::<Vec<_>>()
    })
}

fn keyed(n: usize) -> Vec<u8> {
    let id = format!("Otoroshi-Client-Id: {}", KEYS[n % KEYS.len()]);
    get_request("x", "/", &[&id, "Otoroshi-Client-Secret: s3cr3t-value"])
}

/// The usage journal under `data_dir`, as `(partition, bytes)` records.
fn journal_records(data_dir: &Path) -> Vec<(i32, Vec<u8>)> {
    let dir = gateway::journal::Stream::Usage.dir(&data_dir.join("journal"));
    let mut reader = gateway::journal::JournalReader::open(dir, 0).unwrap();
    let mut out = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        let batch = gateway_model::event::decode(record.payload).unwrap();
        out.push((
            i32::try_from(batch.partition).unwrap(),
            record.payload.to_vec(),
        ));
    }
    out
}

fn sum(map: &HashMap<BatchId, (u64, u64)>, epoch: Option<u64>) -> (u64, u64) {
    map.iter()
        .filter(|(id, _)| epoch.is_none_or(|e| id.1 == e))
        .fold((0, 0), |(a, r), (_, (da, dr))| (a + da, r + dr))
}

/// In-process node on 2 cores: 800 keyed calls over 16 connections against a daily quota of
/// 500 on the one key used: exactly 500 admitted and 300 refused reach Kafka, and the
/// topic holds exactly the journal's batches.
#[test]
fn node_forwards_usage_to_kafka_through_its_journal() {
    let _serial = serial();
    let Some(brokers) = broker() else { return };
    let dir = TempDir::new("kafka-node");
    let id = unique("node");
    let topic = Topics::with_suffix(&id).usage;
    assert_eq!(topic, format!("tollgate.usage.{id}"));
    let doc = entities_doc(500);
    let node = kafka_node(&brokers, &id, "kafka-node", dir.path(), &doc, 2);
    let addr = node.addr();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(move || {
                    let mut c = Client::connect(addr);
                    (0..50)
                        .map(|_| {
                            c.send(&keyed(0));
                            c.response().status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let ok = statuses.iter().filter(|s| **s == 200).count() as u64;
    let refused = statuses.iter().filter(|s| **s == 429).count() as u64;
    assert_eq!((ok, refused), (500, 300));
    node.shutdown();

    let journal = batches(&journal_records(dir.path()));
    let records = read_topic(
        &brokers,
        &topic,
        PARTITIONS,
        Duration::from_secs(3),
        Duration::from_secs(60),
    );
    let topic_batches = batches(&records);
    assert_eq!(
        records.len(),
        topic_batches.len(),
        "no duplicates after a clean stop"
    );
    assert_eq!(
        topic_batches, journal,
        "the topic holds exactly the journal's batches"
    );
    assert_eq!(sum(&topic_batches, None), (500, 300));

    // `gateway events tail --config` reads the same topic.
    let cfg = dir.path().join("tollgate.toml");
    std::fs::write(&cfg, config(&brokers, &id)).unwrap();
    std::fs::write(dir.path().join("entities.json"), doc.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--config")
        .arg(&cfg)
        .args([
            "events",
            "tail",
            "--from-start",
            "--once",
            "--stream",
            "usage",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), records.len());
    let admitted: u64 = lines
        .iter()
        .flat_map(|l| l["event"]["entries"].as_array().unwrap().iter())
        .map(|e| e["counters"]["admitted"].as_u64().unwrap())
        .sum();
    assert_eq!(admitted, 500);
    assert!(lines.iter().all(|l| l["partition"].is_i64()));
}

/// Keyed load from `threads` connections until `stop`; returns the 200s it received. A failed
/// connection (the gateway was killed) is opened again after a pause.
fn load(addr: std::net::SocketAddr, threads: usize, stop: &Arc<AtomicBool>) -> u64 {
    let ok = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ok, stop) = (&ok, stop.clone());
            s.spawn(move || {
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = Client::try_connect(addr) else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    c.set_read_timeout(Duration::from_secs(5));
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        if c.try_send(&keyed(n)).is_err() {
                            break;
                        }
                        match c.try_response() {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => panic!("unexpected status {}", r.status),
                            Err(_) => break,
                        }
                    }
                }
            });
        }
    });
    ok.into_inner()
}

fn config(brokers: &str, id: &str) -> String {
    format!(
        "[node]\nid = \"crash\"\ncores = 2\n\n[listeners.http]\naddr = \"127.0.0.1:0\"\n\n\
         [admin]\naddr = \"127.0.0.1:0\"\ntoken = \"e2e-admin-token\"\n\n\
         [ledger]\naddr = \"127.0.0.1:0\"\n\n[seed]\nentities = \"entities.json\"\n\n\
         [events]\nsink = \"kafka\"\n\n[events.kafka]\nbrokers = \"{brokers}\"\n\
         usage_topic = \"tollgate.usage.{id}\"\nentities_topic = \"tollgate.entities.{id}\"\n\
         totals_topic = \"tollgate.totals.{id}\"\npartitions = {PARTITIONS}\n"
    )
}

/// SIGKILL under load, start again, load, SIGTERM: the topic holds every batch the journal
/// holds (the crashed run's too), duplicates only as identical copies; the clean run's admitted
/// calls equal the 200s its clients saw. Calls admitted in the cores' last flush interval before
/// the SIGKILL were not in the journal when the process died; the restart journals them from the
/// cores' tally files (gateway::tally) and forwards them: the killed run's 200s are then all in
/// the journal and in Kafka (at most the calls the kill cut off on top).
#[test]
fn sigkill_under_load_loses_no_journaled_usage() {
    let _serial = serial();
    let Some(brokers) = broker() else { return };
    let id = unique("crash");
    let gw = Binary::start(
        &config(&brokers, &id),
        &entities_doc(10_000_000),
        IoMode::Epoll,
    );
    let data = gw.dir.path().join("data");

    let stop = Arc::new(AtomicBool::new(false));
    let addr = gw.addr;
    let first = {
        let stop2 = stop.clone();
        let loader = std::thread::spawn(move || load(addr, 8, &stop2));
        std::thread::sleep(Duration::from_millis(1500));
        let Binary { child, dir, .. } = gw;
        drop(child); // SIGKILL, reaped
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let ok = loader.join().unwrap();
        (ok, dir)
    };
    let (first_ok, dir) = first;
    let first_journal = batches(&journal_records(&data));
    let (first_admitted, _) = sum(&first_journal, None);
    assert!(
        first_ok > 0 && first_admitted > 0,
        "load ran: {first_ok} ok"
    );
    assert!(
        first_admitted <= first_ok,
        "journal {first_admitted} > 200s {first_ok}"
    );
    let unflushed = first_ok - first_admitted;
    eprintln!(
        "killed run: {first_ok} calls answered 200, {first_admitted} in the journal \
         ({unflushed} still in the cores' last flush interval)"
    );
    // 1.5 s of load: the loss is one flush interval (100 ms), not a stalled writer's backlog.
    assert!(
        unflushed * 4 <= first_ok,
        "{unflushed} of {first_ok} admitted calls never reached the journal"
    );

    let gw = Binary::start_in(dir, IoMode::Epoll);
    stop.store(false, Ordering::Relaxed);
    let addr = gw.addr;
    let stop2 = stop.clone();
    let loader = std::thread::spawn(move || load(addr, 8, &stop2));
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let second_ok = loader.join().unwrap();
    gw.sigterm();
    let Binary { mut child, .. } = gw;
    let status = child.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{status}");

    let journal = batches(&journal_records(&data));
    let epochs: std::collections::BTreeSet<u64> = journal.keys().map(|k| k.1).collect();
    assert_eq!(epochs.len(), 2, "two runs");
    let second_epoch = *epochs.iter().next_back().unwrap();
    let first_epoch = *epochs.iter().next().unwrap();
    let recovered = sum(&journal, Some(first_epoch)).0;
    eprintln!(
        "killed run after the restart's recovery: {recovered} admitted in the journal for \
         {first_ok} answered 200 ({} more: answers the kill cut off)",
        recovered.saturating_sub(first_ok)
    );
    assert!(
        recovered >= first_ok,
        "killed run: {first_ok} calls answered 200, {recovered} journaled after recovery"
    );
    assert_eq!(
        sum(&journal, Some(second_epoch)).0,
        second_ok,
        "clean run: every 200 counted"
    );
    let records = read_topic(
        &brokers,
        &format!("tollgate.usage.{id}"),
        PARTITIONS,
        Duration::from_secs(3),
        Duration::from_secs(90),
    );
    let topic = batches(&records);
    let missing: Vec<_> = journal.keys().filter(|k| !topic.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} journaled batches never reached Kafka, e.g. {:?}",
        missing.len(),
        journal.len(),
        missing.first()
    );
    assert_eq!(
        topic, journal,
        "the topic holds the journal's batches, nothing else"
    );
    eprintln!(
        "{} batches, {} records on the topic ({} duplicates from the crash)",
        journal.len(),
        records.len(),
        records.len() - topic.len()
    );
}

/// Another node's consumption published on the totals topic reaches this node's pool: with a
/// daily quota of 100 and 60 calls counted elsewhere, exactly 40 more are admitted here.
#[test]
fn totals_of_other_nodes_reduce_what_this_node_admits() {
    use gateway_model::event::{NodeCalls, TotalsRecord};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let _serial = serial();
    let Some(brokers) = broker() else { return };
    let dir = TempDir::new("kafka-totals");
    let id = unique("totals");
    let totals_topic = Topics::with_suffix(&id).totals;
    let node = kafka_node(&brokers, &id, "node-a", dir.path(), &entities_doc(100), 2);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let calendar = gateway_core::window::Calendar::utc();
    let (day, month) = (
        calendar.day(now).unwrap().id,
        calendar.month(now).unwrap().id,
    );
    let record = TotalsRecord {
        apikey: KEYS[0].into(),
        day,
        month,
        daily_calls: 60,
        monthly_calls: 60,
        updated_at: now,
        node: None,
        nodes: [(
            "node-b".to_owned(),
            NodeCalls {
                daily_calls: 60,
                monthly_calls: 60,
            },
        )]
        .into_iter()
        .collect(),
        quotas_reset_at: None,
    };
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let payload = record.encode().unwrap();
    // The node's sink creates the topics at start; produce once they exist.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sent = producer
            .send(BaseRecord::to(&totals_topic).key(KEYS[0]).payload(&payload))
            .is_ok()
            && producer.flush(Duration::from_secs(5)).is_ok();
        if sent {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "totals topic never accepted a record"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let start = std::time::Instant::now();
    while node
        .totals_counters()
        .applied
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "totals record not applied"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "totals record applied {:?} after it was produced",
        start.elapsed()
    );

    let mut c = Client::connect(node.addr());
    let statuses: Vec<u16> = (0..60)
        .map(|_| {
            c.send(&keyed(0));
            c.response().status
        })
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 40);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 20);
    node.shutdown();
}

/// The broker stops under load and comes back: the node keeps answering, usage spools, and
/// after the restart the topic holds every journaled batch; the admitted calls equal the 200s.
#[test]
fn broker_outage_under_load_loses_no_usage() {
    let _serial = serial();
    let Some(brokers) = broker() else { return };
    let dir = TempDir::new("kafka-outage");
    let id = unique("outage");
    let topic = Topics::with_suffix(&id).usage;
    let node = kafka_node(
        &brokers,
        &id,
        "outage",
        dir.path(),
        &entities_doc(10_000_000),
        2,
    );
    let addr = node.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let stop = stop.clone();
        std::thread::spawn(move || load(addr, 4, &stop))
    };
    let wait = |what: &str, done: &dyn Fn(&gateway::kafka::KafkaCounters) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let c = node.kafka_counters().unwrap();
            if done(&c) {
                return c;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {c:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("first delivery", &|c| c.produced > 0);
    let ok;
    {
        let _back = BrokerBack;
        broker_script("stop");
        let before = node.kafka_counters().unwrap().produced;
        std::thread::sleep(Duration::from_secs(3));
        let during = wait("spooling during the outage", &|c| c.forwarded > 0);
        assert!(
            during.spool_records > 0,
            "batches wait in the spool: {during:?}"
        );
        assert!(during.produced <= before + 1, "{during:?}");
        broker_script("start");
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        ok = loader.join().unwrap();
    }
    let drained = wait("replay after the outage", &|c| {
        c.spool_records == 0 && c.in_flight == 0
    });
    node.shutdown();
    eprintln!("outage: {ok} calls answered 200; sink {drained:?}");
    let journal = batches(&journal_records(dir.path()));
    assert_eq!(sum(&journal, None).0, ok, "every 200 is in the journal");
    let records = read_topic(
        &brokers,
        &topic,
        PARTITIONS,
        Duration::from_secs(3),
        Duration::from_secs(60),
    );
    assert_eq!(
        batches(&records),
        journal,
        "the topic holds every journaled batch"
    );
}

fn kafka_node(
    brokers: &str,
    id: &str,
    node_id: &str,
    dir: &std::path::Path,
    doc: &Value,
    cores: usize,
) -> Node {
    let mut kafka = KafkaConfig::new(brokers, dir);
    kafka.topics = Topics::with_suffix(id);
    kafka.partitions = PARTITIONS;
    let out = import_value(doc, Some(Dialect::Tollgate)).unwrap();
    assert!(out.is_clean(), "{}", out.problems);
    let options = NodeOptions {
        limits: HttpLimits::default(),
        kafka: Some(kafka),
        ..common::node_options(node_id, cores, IoMode::Epoll, Some(dir))
    };
    Node::start(&options, out.entities).unwrap()
}

/// Two gateway nodes share one key through Kafka and a ledger (remote mode, consuming the
/// usage topic and publishing totals): the propagation lag from a call admitted on A to B's
/// pool counting it is measured, and under load on both nodes the key's daily quota is
/// overshot by no more than the documented bound (other node's rate × lag), far below the
/// 2× that two independent nodes would admit.
#[test]
fn two_nodes_share_a_quota_through_the_ledger_totals() {
    let _serial = serial();
    let Some(brokers) = broker() else { return };
    let id = unique("cross");
    const QUOTA: u64 = 3000;
    let mut doc = entities_doc(QUOTA);
    doc["apiKeys"][1]["dailyQuota"] = json!(10_000_000); // k1: the lag probe
    let (dir_a, dir_b, dir_l) = (
        TempDir::new("cross-a"),
        TempDir::new("cross-b"),
        TempDir::new("cross-ledger"),
    );
    let a = kafka_node(&brokers, &id, "node-a", dir_a.path(), &doc, 1);
    let b = kafka_node(&brokers, &id, "node-b", dir_b.path(), &doc, 1);
    let topics = Topics::with_suffix(&id);
    let mut config = ledger::LedgerConfig::journal(dir_l.path());
    config.source =
        ledger::config::SourceConfig::kafka(&brokers, &topics, &unique("ledger-group"), PARTITIONS);
    let ledger = ledger::Ledger::start(config).unwrap();

    // Propagation: one call on A, until B's pool counts it.
    let seen_on_b = |key: &str| {
        b.current()
            .pool
            .consumption(key, gateway_events::clock::now_ms())
            .map_or(0, |c| c.current_calls_per_day)
    };
    let mut lags = Vec::new();
    let mut ca = Client::connect(a.addr());
    for round in 0..6u64 {
        let before = seen_on_b("k1");
        let start = std::time::Instant::now();
        ca.send(&keyed(1));
        assert_eq!(ca.response().status, 200);
        let lh = ledger.handle();
        let before_l = lh.totals("k1").map_or(0, |t| t.daily_calls);
        while lh.totals("k1").map_or(0, |t| t.daily_calls) <= before_l {
            assert!(start.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(2));
        }
        let in_ledger = start.elapsed();
        while seen_on_b("k1") <= before {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "round {round}: B never saw A's call"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        lags.push(start.elapsed());
        eprintln!(
            "round {round}: in the ledger's totals after {in_ledger:?}, on node B after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The first round includes the followers' start-up (topic assignment).
    let mut steady: Vec<Duration> = lags[1..].to_vec();
    steady.sort();
    let median = steady[steady.len() / 2];
    let max = *steady.last().unwrap();
    eprintln!(
        "propagation A→B: first {:?}, then median {median:?}, max {max:?}",
        lags[0]
    );

    // Both nodes hammer key k0 (daily quota QUOTA) until both refuse.
    let run = |node: &Node| {
        let addr = node.addr();
        move || {
            let mut c = Client::connect(addr);
            let (mut ok, mut refused_in_a_row) = (0u64, 0u32);
            let start = std::time::Instant::now();
            while refused_in_a_row < 50 && start.elapsed() < Duration::from_secs(60) {
                c.send(&keyed(0));
                match c.response().status {
                    200 => {
                        ok += 1;
                        refused_in_a_row = 0;
                    }
                    429 => refused_in_a_row += 1,
                    s => panic!("status {s}"),
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            (ok, start.elapsed())
        }
    };
    let (ta, tb) = (std::thread::spawn(run(&a)), std::thread::spawn(run(&b)));
    let ((ok_a, took_a), (ok_b, took_b)) = (ta.join().unwrap(), tb.join().unwrap());
    let total = ok_a + ok_b;
    let rate_b = ok_b as f64 / took_b.as_secs_f64();
    let rate_a = ok_a as f64 / took_a.as_secs_f64();
    let overshoot = total.saturating_sub(QUOTA);
    let bound = (rate_a.max(rate_b) * max.as_secs_f64()).ceil() as u64;
    eprintln!(
        "quota {QUOTA}: node-a admitted {ok_a} ({rate_a:.0}/s), node-b {ok_b} ({rate_b:.0}/s), \
         total {total}, overshoot {overshoot} (bound: other node's rate × max lag = {bound})"
    );
    assert!(
        ok_a <= QUOTA && ok_b <= QUOTA,
        "one node alone never passes the quota"
    );
    assert!(
        total >= QUOTA,
        "the nodes together admit the whole quota: {total}"
    );
    // Under load the lag is longer than the idle probe's (the ledger commits bigger chunks, the
    // machine is busy): allow twice the idle lag plus 200 ms before calling it a failure.
    let allowed = (rate_a.max(rate_b) * (2.0 * max.as_secs_f64() + 0.2)).ceil() as u64;
    assert!(
        overshoot <= allowed,
        "overshoot {overshoot} over {allowed} (idle-lag bound {bound})"
    );
    assert!(
        total < QUOTA * 3 / 2,
        "cross-node enforcement: {total} of {QUOTA}"
    );
    ledger.shutdown();
    a.shutdown();
    b.shutdown();
}

//! Two gateway nodes sharing one Kafka broker converge through the compacted entity topic: a
//! key created through node A's admin API admits calls on node B within a second (measured),
//! a change on B reaches A, secrets are sealed on the topic, and a restarted node catches up.
//!
//! Needs a broker: `TOLLGATE_KAFKA=host:port` (then it must answer) or one on 127.0.0.1:9092;
//! skipped with a note otherwise.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::TempDir;
use common::kafka::{broker, read_topic, serial, unique};
use common::stack::{Stack, StackOptions, kafka_entity_log};
use gateway::kafka::Topics;
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-for-kafka";

/// Node `id` of the cluster: its admin API shares the entity log on the broker (2 partitions).
fn member(id: &str, dir: &Path, key_file: &Path, brokers: &str, topics: &Topics) -> Stack {
    member_with(
        id,
        dir,
        key_file,
        brokers,
        topics,
        gateway::admin::system_clock(),
    )
}

/// [`member`] on an injected clock.
fn member_with(
    id: &str,
    dir: &Path,
    key_file: &Path,
    brokers: &str,
    topics: &Topics,
    clock: gateway::admin::Clock,
) -> Stack {
    Stack::start(
        dir,
        StackOptions {
            key_file: Some(key_file),
            clock,
            kafka: Some(kafka_entity_log(brokers, topics, 2, dir, id)),
            ..StackOptions::new(id, 2, TOKEN)
        },
    )
}

fn status(addr: SocketAddr, path: &str, key: (&str, &str)) -> u16 {
    let mut c = common::Client::connect(addr);
    c.send(&common::get_request(
        "x",
        path,
        &[
            &format!("Otoroshi-Client-Id: {}", key.0),
            &format!("Otoroshi-Client-Secret: {}", key.1),
        ],
    ));
    c.response().status
}

/// Time until 8 fresh connections in a row answer `want` (at most `within`).
fn until(addr: SocketAddr, path: &str, key: (&str, &str), want: u16, within: Duration) -> Duration {
    let start = Instant::now();
    let ok = common::wait_until(within, || (0..8).all(|_| status(addr, path, key) == want));
    assert!(ok, "{path} did not answer {want} within {within:?}");
    start.elapsed()
}

#[test]
fn two_nodes_converge_through_the_entity_topic() {
    let Some(brokers) = broker() else { return };
    let _serial = serial();
    let topics = Topics::with_suffix(&unique("entities"));
    let key_dir = TempDir::new("kafka-cluster-key");
    let key_file = key_dir.path().join("cluster.key");
    std::fs::write(&key_file, "42".repeat(32)).unwrap();
    let (dir_a, dir_b) = (TempDir::new("kafka-a"), TempDir::new("kafka-b"));
    let a = member("node-a", dir_a.path(), &key_file, &brokers, &topics);
    let mut b = member("node-b", dir_b.path(), &key_file, &brokers, &topics);

    assert_eq!(
        a.call(
            "POST",
            "/api/backends",
            Some(&json!({"id": "mock", "backend": {"mock": {"body": "ok"}}}))
        )
        .0,
        201
    );
    let route = json!({"id": "r", "frontend": {"domains": ["*/r"]}, "backend_ref": "mock",
                       "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]});
    assert_eq!(a.call("POST", "/api/routes", Some(&route)).0, 201);
    // The route reaches B (unknown key: 401, as a wrong secret).
    until(b.data(), "/r", ("none", "x"), 401, Duration::from_secs(10));

    // Keys created on A admit on B: measured five times.
    let mut times = Vec::new();
    for i in 0..5 {
        let id = format!("k{i}");
        let secret = format!("Kafka-Secret-{i}-8d1f");
        let key =
            json!({"clientId": id, "clientSecret": secret, "authorizedEntities": ["route_r"]});
        assert_eq!(a.call("POST", "/api/apikeys", Some(&key)).0, 201);
        let t = until(b.data(), "/r", (&id, &secret), 200, Duration::from_secs(5));
        times.push(t);
    }
    times.sort();
    eprintln!(
        "propagation A→B (admin write acknowledged → 8 connections on B admitted): \
         min {:?}, median {:?}, max {:?}",
        times[0], times[2], times[4]
    );
    assert!(
        times[4] < Duration::from_secs(1),
        "propagation took {:?}",
        times[4]
    );

    // A change on B reaches A.
    let (s, patched) = b.call("PATCH", "/api/apikeys/k0", Some(&json!({"enabled": false})));
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["_version"], 2);
    until(
        a.data(),
        "/r",
        ("k0", "Kafka-Secret-0-8d1f"),
        401,
        Duration::from_secs(2),
    );
    let (_, on_a) = a.call("GET", "/api/apikeys/k0", None);
    assert_eq!(on_a["_version"], 2);
    assert_eq!(on_a["enabled"], false);

    // The topic holds the events, secrets sealed.
    let records = read_topic(
        &brokers,
        &topics.entities,
        2,
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let bytes: Vec<u8> = records.iter().flat_map(|(_, p)| p.clone()).collect();
    let text = String::from_utf8_lossy(&bytes);
    assert!(records.len() >= 8, "{} records", records.len());
    assert!(text.contains("sealed:v1:"));
    assert!(
        !text.contains("Kafka-Secret-"),
        "a secret is in clear on the topic"
    );

    // The forwarder's count shows on /metrics.
    let addr = a.admin_addr();
    let mut conn = TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut metrics = String::new();
    let _ = conn.read_to_string(&mut metrics);
    let sent: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tollgate_entity_events_sent_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent >= 7, "{metrics}");

    // B restarts and catches up with what A did meanwhile.
    b.stop();
    let key = json!({"clientId": "late", "clientSecret": "Late-Secret-1", "authorizedEntities": ["route_r"]});
    assert_eq!(a.call("POST", "/api/apikeys", Some(&key)).0, 201);
    let b = member("node-b", dir_b.path(), &key_file, &brokers, &topics);
    until(
        b.data(),
        "/r",
        ("late", "Late-Secret-1"),
        200,
        Duration::from_secs(10),
    );
    until(
        b.data(),
        "/r",
        ("k0", "Kafka-Secret-0-8d1f"),
        401,
        Duration::from_secs(2),
    );
    let lists = |m: &Stack| {
        ["routes", "backends", "apikeys"]
            .iter()
            .map(|c| m.call("GET", &format!("/api/{c}"), None).1)
            .collect::<Vec<_>>()
    };
    assert!(common::wait_until(Duration::from_secs(5), || lists(&a) == lists(&b)));
}

/// Key rotation has one owner per key in a cluster: both nodes check rotations at the same
/// (injected) instants, and the topic holds one next secret and one rotation, both written by
/// the node that owns the key (the one that created it); when the owner stops, the other node
/// takes the next step over once it is a takeover delay overdue.
#[test]
fn a_rotation_has_one_owner_in_the_cluster() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    let Some(brokers) = broker() else { return };
    let _serial = serial();
    let topics = Topics::with_suffix(&unique("rotation"));
    let key_dir = TempDir::new("kafka-rotation-key");
    let key_file = key_dir.path().join("cluster.key");
    std::fs::write(&key_file, "24".repeat(32)).unwrap();
    let (dir_a, dir_b) = (TempDir::new("kafka-rot-a"), TempDir::new("kafka-rot-b"));
    let t0 = gateway_events::clock::now_ms();
    let clock = Arc::new(AtomicI64::new(t0));
    let shared = |c: &Arc<AtomicI64>| -> gateway::admin::Clock {
        let c = c.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    };
    let mut a = member_with(
        "node-a",
        dir_a.path(),
        &key_file,
        &brokers,
        &topics,
        shared(&clock),
    );
    let b = member_with(
        "node-b",
        dir_b.path(),
        &key_file,
        &brokers,
        &topics,
        shared(&clock),
    );
    let key = json!({"clientId": "rk", "clientSecret": "Rotating-Secret-0-aa11",
        "rotation": {"enabled": true, "rotationEvery": 10, "gracePeriod": 2}});
    assert_eq!(a.call("POST", "/api/apikeys", Some(&key)).0, 201);
    assert!(common::wait_until(Duration::from_secs(10), || b
        .call("GET", "/api/apikeys/rk", None)
        .0
        == 200));
    let field =
        |m: &Stack, f: &dyn Fn(&Value) -> Value| f(&m.call("GET", "/api/apikeys/rk", None).1);
    let next = |v: &Value| v["rotation"]["nextSecret"].clone();
    let secret = |v: &Value| v["clientSecret"].clone();
    let check_both = |a: &Stack, b: &Stack| {
        // The non-owner first: it must leave the step to the owner.
        b.admin().check_rotations();
        a.admin().check_rotations();
    };

    // The grace period starts: both nodes check, one next secret is published.
    clock.store(t0 + 8 * 3_600_000 + 1_000, Ordering::SeqCst);
    check_both(&a, &b);
    assert!(common::wait_until(Duration::from_secs(10), || {
        let (na, nb) = (field(&a, &next), field(&b, &next));
        !na.is_null() && na == nb
    }));
    let published = field(&a, &next);
    // Checked again at the same instant: nothing more.
    check_both(&a, &b);
    // The switch: the next secret becomes the secret, once.
    clock.store(t0 + 10 * 3_600_000 + 1_000, Ordering::SeqCst);
    check_both(&a, &b);
    assert!(common::wait_until(Duration::from_secs(10), || {
        field(&a, &secret) == published && field(&b, &secret) == published
    }));
    std::thread::sleep(Duration::from_millis(500));

    let rotation_events = |from: usize| -> Vec<Value> {
        read_topic(
            &brokers,
            &topics.entities,
            2,
            Duration::from_secs(3),
            Duration::from_secs(15),
        )
        .iter()
        .filter_map(|(_, p)| serde_json::from_slice::<Value>(p).ok())
        .filter(|e| e["entity_id"] == "rk" && e["actor"] == "rotation")
        .skip(from)
        .collect()
    };
    let events = rotation_events(0);
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let id = e["id"].as_str().unwrap();
            (
                e["action"].as_str().unwrap().to_owned(),
                id.rsplit_once('@').unwrap().1.to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("updated".to_owned(), "node-a".to_owned()),
            ("rotated".to_owned(), "node-a".to_owned()),
        ],
        "one next secret and one rotation, by the owner"
    );

    // The owner stops: the next grace period is taken over by B once it is a minute overdue.
    a.stop();
    let next_grace = t0 + 18 * 3_600_000 + 1_000;
    clock.store(next_grace, Ordering::SeqCst);
    b.admin().check_rotations();
    assert!(field(&b, &next).is_null(), "B waits for the owner first");
    clock.store(
        next_grace + gateway::admin::rotation::TAKEOVER_MS,
        Ordering::SeqCst,
    );
    b.admin().check_rotations();
    assert!(!field(&b, &next).is_null(), "B took the step over");
    let later = rotation_events(2);
    assert_eq!(later.len(), 1, "{later:?}");
    assert!(later[0]["id"].as_str().unwrap().ends_with("@node-b"));
}

/// `DELETE /api/apikeys/{id}/quotas` on one node applies cluster-wide and reaches the ledger's
/// totals: two nodes with usage on Kafka and a ledger publishing totals exhaust a daily quota
/// together, node A resets it, node B admits again (it applied the reset from the entity
/// topic), and the ledger's totals then count only the calls after the reset, so neither node
/// gets the calls before it back from the next totals record.
#[test]
fn a_quota_reset_applies_on_every_node_and_in_the_ledgers_totals() {
    let Some(brokers) = broker() else { return };
    let _serial = serial();
    let topics = Topics::with_suffix(&unique("reset"));
    let key_dir = TempDir::new("kafka-reset-key");
    let key_file = key_dir.path().join("cluster.key");
    std::fs::write(&key_file, "42".repeat(32)).unwrap();
    let (dir_a, dir_b, dir_l) = (
        TempDir::new("reset-a"),
        TempDir::new("reset-b"),
        TempDir::new("reset-ledger"),
    );
    let start = |id: &str, dir: &Path| {
        Stack::start(
            dir,
            StackOptions {
                key_file: Some(&key_file),
                kafka: Some(kafka_entity_log(&brokers, &topics, 2, dir, id)),
                usage_on_kafka: true,
                ..StackOptions::new(id, 1, TOKEN)
            },
        )
    };
    let (a, b) = (start("node-a", dir_a.path()), start("node-b", dir_b.path()));
    let mut config = ledger::LedgerConfig::journal(dir_l.path());
    config.source =
        ledger::config::SourceConfig::kafka(&brokers, &topics, &unique("reset-ledger"), 2);
    let ledger = ledger::Ledger::start(config).unwrap();

    const QUOTA: u64 = 20;
    a.ok(
        "POST",
        "/api/backends",
        json!({"id": "mock", "backend": {"mock": {"body": "ok"}}}),
    );
    a.ok(
        "POST",
        "/api/routes",
        json!({"id": "r", "frontend": {"domains": ["*/r"]}, "backend_ref": "mock",
               "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]}),
    );
    let key = ("kr", "Reset-Secret-4b1e-77");
    a.ok(
        "POST",
        "/api/apikeys",
        json!({"clientId": key.0, "clientSecret": key.1, "authorizedEntities": ["route_r"],
               "dailyQuota": QUOTA, "monthlyQuota": 1_000_000, "throttlingQuota": 1_000_000}),
    );
    // The route (an unknown key: 401) and the key reach B (events of two partitions arrive
    // in any order).
    until(b.data(), "/r", ("none", "x"), 401, Duration::from_secs(10));
    assert!(
        common::wait_until(Duration::from_secs(10), || b
            .node()
            .current()
            .pool
            .consumption(key.0, gateway_events::clock::now_ms())
            .is_some()),
        "the key never reached node B"
    );
    // ... and every core of B serves that snapshot (each takes it on its next tick).
    let generation = b.node().current().generation;
    assert!(
        b.node()
            .publisher()
            .wait_applied(generation, Duration::from_secs(10)),
        "node B's cores never took the snapshot with the key"
    );
    let counted = |s: &Stack| {
        s.node()
            .current()
            .pool
            .consumption(key.0, gateway_events::clock::now_ms())
            .map_or(0, |c| c.current_calls_per_day)
    };
    let ledger_calls = || {
        ledger
            .handle()
            .totals(key.0)
            .map(|t| (t.daily_calls, t.quotas_reset_at))
    };

    // 12 calls on A, 8 on B: the quota is spent; once the ledger's totals reach both nodes,
    // both refuse.
    for (node, n) in [(&a, 12), (&b, 8)] {
        for _ in 0..n {
            assert_eq!(status(node.data(), "/r", key), 200);
        }
    }
    assert!(
        common::wait_until(Duration::from_secs(30), || counted(&a) == QUOTA
            && counted(&b) == QUOTA),
        "the nodes never both counted {QUOTA}: a {}, b {}",
        counted(&a),
        counted(&b)
    );
    assert_eq!(status(a.data(), "/r", key), 429);
    assert_eq!(status(b.data(), "/r", key), 429);
    assert_eq!(ledger_calls(), Some((QUOTA, None)));

    // The reset on A.
    let (s, after) = a.call("DELETE", &format!("/api/apikeys/{}/quotas", key.0), None);
    assert_eq!(s, 200, "{after}");
    assert_eq!(after["currentCallsPerDay"], 0);
    // B applies it from the entity topic.
    assert!(
        common::wait_until(Duration::from_secs(10), || counted(&b) == 0),
        "node B never applied the reset: it counts {}",
        counted(&b)
    );
    // The ledger folds it: its totals count from the reset.
    assert!(
        common::wait_until(Duration::from_secs(20), || ledger_calls()
            .is_some_and(|(calls, at)| calls == 0 && at.is_some())),
        "the ledger's totals never counted from the reset: {:?}",
        ledger_calls()
    );

    // 7 calls on B, 6 on A after the reset: all admitted, and once the totals are through,
    // both nodes count 13, not 13 + the 20 before the reset.
    for (node, n) in [(&b, 7), (&a, 6)] {
        for _ in 0..n {
            assert_eq!(status(node.data(), "/r", key), 200);
        }
    }
    assert!(
        common::wait_until(Duration::from_secs(30), || ledger_calls()
            .is_some_and(|(calls, _)| calls == 13)),
        "the ledger's totals after the reset: {:?}",
        ledger_calls()
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || counted(&a) == 13
            && counted(&b) == 13),
        "after the reset the nodes count a {} and b {} (13 calls made since)",
        counted(&a),
        counted(&b)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!((counted(&a), counted(&b)), (13, 13));
    let (_, on_b) = b.call("GET", &format!("/api/apikeys/{}/quotas", key.0), None);
    assert_eq!(on_b["remainingCallsPerDay"], QUOTA - 13, "{on_b}");
    // The rest of the quota, and no more.
    let mut admitted = 0;
    for _ in 0..QUOTA {
        if status(a.data(), "/r", key) == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, QUOTA - 13);
    ledger.shutdown();
}

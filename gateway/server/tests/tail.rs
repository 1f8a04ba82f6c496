//! `gateway events tail` on the embedded journal: every stream as JSON lines, from the start or
//! from the end, once or following. (From Kafka: tests/kafka_gateway.rs.)

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use gateway::journal::{Journal, JournalOptions, Stream};
use gateway_model::event::{
    EntityAction, EntityEvent, EntityKind, UsageBatch, UsageCounters, UsageEntry, encode,
};
use serde_json::{Value, json};

fn batch(sequence: u64) -> UsageBatch {
    UsageBatch {
        node: "tail".into(),
        epoch: 7,
        core: 0,
        partition: 6,
        partitions: 16,
        sequence,
        window_start_ms: 1_700_000_000_000,
        window_end_ms: 1_700_000_000_100,
        entries: vec![UsageEntry {
            apikey: "key-1".into(),
            api: None,
            route: "r".into(),
            consumer: None,
            subscription: None,
            day: 20_231_114,
            month: 202_311,
            counters: UsageCounters {
                admitted: 5 + sequence,
                ..UsageCounters::default()
            },
        }],
    }
}

fn entity_event() -> Vec<u8> {
    EntityEvent {
        id: "ev-1".into(),
        at: 1_700_000_000_000,
        actor: "test".into(),
        action: EntityAction::Created,
        kind: EntityKind::Route,
        entity_id: "r".into(),
        version: 1,
        entity: json!({"id": "r"}),
    }
    .encode()
    .unwrap()
}

fn tail(data: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["events", "tail", "--data-dir"])
        .arg(data)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn prints_every_stream_as_json_lines() {
    let dir = TempDir::new("tail");
    let root = dir.path().join("journal");
    let (mut usage, _) =
        Journal::open(Stream::Usage.dir(&root), JournalOptions::default()).unwrap();
    let (mut entities, _) =
        Journal::open(Stream::Entities.dir(&root), JournalOptions::default()).unwrap();
    for s in 0..3 {
        usage.append(&encode(&batch(s)).unwrap()).unwrap();
    }
    usage.append(b"\x01not a batch").unwrap();
    entities.append(&entity_event()).unwrap();
    usage.sync().unwrap();
    entities.sync().unwrap();

    let lines = tail(dir.path(), &["--from-start", "--once"]);
    let usage_lines: Vec<&Value> = lines.iter().filter(|l| l["stream"] == "usage").collect();
    assert_eq!(usage_lines.len(), 4, "{lines:?}");
    for (i, l) in usage_lines.iter().take(3).enumerate() {
        assert_eq!(l["offset"], i);
        assert_eq!(l["event"]["sequence"], i);
        assert_eq!(l["event"]["entries"][0]["apikey"], "key-1");
        assert_eq!(l["event"]["entries"][0]["counters"]["admitted"], 5 + i);
    }
    assert_eq!(usage_lines[3]["offset"], 3);
    assert!(
        usage_lines[3]["error"].is_string(),
        "a bad record is reported, not fatal"
    );
    let entity: Vec<&Value> = lines.iter().filter(|l| l["stream"] == "entities").collect();
    assert_eq!(entity.len(), 1);
    assert_eq!(entity[0]["event"]["kind"], "route");
    assert_eq!(entity[0]["event"]["action"], "created");

    // Only one stream; from the end: nothing yet.
    let only = tail(
        dir.path(),
        &["--from-start", "--once", "--stream", "entities"],
    );
    assert_eq!(only.len(), 1);
    assert!(tail(dir.path(), &["--once"]).is_empty());
}

#[test]
fn follows_new_events() {
    let dir = TempDir::new("tail-follow");
    let root = dir.path().join("journal");
    let (mut usage, _) =
        Journal::open(Stream::Usage.dir(&root), JournalOptions::default()).unwrap();
    usage.append(&encode(&batch(0)).unwrap()).unwrap();
    let mut child = common::ChildGuard(Some(
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["events", "tail", "--stream", "usage", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let stdout = child.0.as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    // The tail starts at the end: the record written before it is not printed, the next one is.
    std::thread::sleep(Duration::from_millis(500));
    usage.append(&encode(&batch(1)).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("the new record is printed");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (v["offset"].as_u64(), v["event"]["sequence"].as_u64()),
        (Some(1), Some(1))
    );
}

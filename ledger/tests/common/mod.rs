//! Helpers shared by the ledger's integration tests: temp dirs, batches, a raw HTTP client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gateway_model::event::{
    EntityAction, EntityEvent, EntityKind, UsageBatch, UsageCounters, UsageEntry, partition_for,
};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("ledger-test-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Today's `YYYYMMDD` in UTC.
pub fn today() -> u32 {
    ledger::calendar::Calendar::utc().day_of(now_ms()).unwrap()
}

/// A key of `partition` among `partitions`, the `n`th such.
pub fn key_in(partition: u32, partitions: u32, n: usize) -> String {
    (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| partition_for(k, partitions) == partition)
        .nth(n)
        .unwrap()
}

pub fn entry(apikey: &str, admitted: u64, rejected: u64) -> UsageEntry {
    let day = today();
    UsageEntry {
        apikey: apikey.to_owned(),
        api: Some("api-pets".into()),
        route: "route-pets".into(),
        consumer: Some("acme".into()),
        subscription: Some("sub-gold".into()),
        day,
        month: day / 100,
        counters: UsageCounters {
            admitted,
            rejected: gateway_model::event::Rejections {
                quota_daily: rejected,
                ..Default::default()
            },
            bytes_in: 100 * admitted,
            bytes_out: 1000 * admitted,
            status: gateway_model::event::StatusClasses {
                success: admitted,
                client_error: rejected,
                ..Default::default()
            },
        },
    }
}

pub fn batch(
    node: &str,
    core: u16,
    partition: u32,
    partitions: u32,
    sequence: u64,
    entries: Vec<UsageEntry>,
) -> UsageBatch {
    let start = now_ms();
    UsageBatch {
        node: node.to_owned(),
        epoch: 1,
        core,
        partition,
        partitions,
        sequence,
        window_start_ms: start,
        window_end_ms: start + 100,
        entries,
    }
}

pub fn entity_event(version: u64, secret: &str) -> EntityEvent {
    EntityEvent {
        id: format!("evt-{version}"),
        at: now_ms(),
        actor: "admin".into(),
        action: if version == 1 {
            EntityAction::Created
        } else {
            EntityAction::Updated
        },
        kind: EntityKind::ApiKey,
        entity_id: "key-0".into(),
        version,
        entity: serde_json::json!({"clientId": "key-0", "clientSecret": secret,
            "dailyQuota": 1000 * version}),
    }
}

/// `GET path` with a fresh connection; returns the status and body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: ledger\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, body.to_owned())
}

pub fn get_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(addr, path);
    (status, serde_json::from_str(&body).unwrap())
}

/// Polls `check` every 50 ms until it holds, for at most `timeout`.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

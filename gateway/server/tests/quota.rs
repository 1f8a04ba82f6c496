//! Quotas end to end: per-core shards leasing from the node pool, over real sockets.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use gateway::config::HttpLimits;
use gateway::node::{Node, NodeOptions};
use gateway::runtime::IoMode;
use gateway_model::import::{Dialect, Entities, import_value};
use serde_json::json;

fn entities(daily: u64, throttling: u64) -> Entities {
    let doc = json!({
        "routes": [{"id": "keyed", "frontend": {"domains": ["*"]},
                    "backend": {"mock": {"body": "ok"}},
                    "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls"}]}],
        "apiKeys": [{"clientId": "k", "clientSecret": "s", "authorizedEntities": ["route_keyed"],
                     "dailyQuota": daily, "monthlyQuota": 100000, "throttlingQuota": throttling}]
    });
    let out = import_value(&doc, Some(Dialect::Tollgate)).unwrap();
    assert!(out.is_clean(), "{}", out.problems);
    out.entities
}

fn start(cores: usize, io: IoMode, e: Entities) -> Node {
    start_in(cores, io, e, None)
}

fn start_in(cores: usize, io: IoMode, e: Entities, data_dir: Option<std::path::PathBuf>) -> Node {
    let options = NodeOptions {
        limits: HttpLimits::default(),
        calendar: gateway_core::window::Calendar::new("Europe/Paris").unwrap(),
        ..common::node_options("quota", cores, io, data_dir.as_deref())
    };
    Node::start(&options, e).unwrap()
}

/// One request on a kept-alive connection: status and the response head.
fn call(conn: &mut TcpStream, secret: &str) -> (u16, String) {
    write!(conn, "GET / HTTP/1.1\r\nHost: x\r\nOtoroshi-Client-Id: k\r\nOtoroshi-Client-Secret: {secret}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match conn.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap(),
        };
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_owned();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            if buf.len() >= end + 4 + len {
                return (text[9..12].parse().unwrap(), head);
            }
        }
    }
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

fn uring_available() -> bool {
    // Probe on a throwaway thread (tearing a ring down can interrupt the creating thread).
    std::thread::spawn(|| gateway::runtime::build(IoMode::Uring).is_ok())
        .join()
        .unwrap()
}

#[test]
fn eight_hundred_calls_on_sixty_four_connections_and_two_cores_admit_exactly_the_daily_quota() {
    for io in [IoMode::Uring, IoMode::Epoll] {
        if io == IoMode::Uring && !uring_available() {
            eprintln!("io_uring unavailable here: skipping the uring variant");
            continue;
        }
        let node = start(2, io, entities(500, 1_000_000));
        let addr = node.addr();
        let workers: Vec<_> = (0..64)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut conn = connect(addr);
                    let calls = 800 / 64 + usize::from(i < 800 % 64);
                    (0..calls).map(|_| call(&mut conn, "s")).collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<(u16, String)> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        assert_eq!(results.len(), 800);
        let ok = results.iter().filter(|(s, _)| *s == 200).count();
        let refused = results.iter().filter(|(s, _)| *s == 429).count();
        assert_eq!((ok, refused), (500, 300), "{io:?}");
        for (status, head) in &results {
            assert!(
                header(head, "Otoroshi-Daily-Calls-Remaining").is_some(),
                "{head}"
            );
            assert!(
                header(head, "Otoroshi-Monthly-Calls-Remaining").is_some(),
                "{head}"
            );
            assert!(header(head, "RateLimit-Limit").is_some(), "{head}");
            assert!(header(head, "RateLimit-Remaining").is_some(), "{head}");
            assert!(header(head, "RateLimit-Reset").is_some(), "{head}");
            if *status == 429 {
                assert_eq!(
                    header(head, "Otoroshi-Daily-Calls-Remaining"),
                    Some("0"),
                    "{head}"
                );
                let retry: u64 = header(head, "Retry-After").unwrap().parse().unwrap();
                assert!((1..=25 * 3600).contains(&retry), "{head}");
                assert_eq!(header(head, "otoroshi-error"), Some("true"));
            }
        }
        node.shutdown();
    }
}

#[test]
fn rejected_calls_consume_nothing() {
    let node = start(2, IoMode::Epoll, entities(3, 1_000_000));
    let mut conn = connect(node.addr());
    for _ in 0..10 {
        assert_eq!(call(&mut conn, "wrong").0, 401);
    }
    let statuses: Vec<u16> = (0..5).map(|_| call(&mut conn, "s").0).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    node.shutdown();
}

#[test]
fn throttling_quota_is_calls_per_second() {
    let node = start(2, IoMode::Epoll, entities(1_000_000, 5));
    let mut conns: Vec<TcpStream> = (0..4).map(|_| connect(node.addr())).collect();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    let t0 = std::time::Instant::now();
    for i in 0..12 {
        let (status, head) = call(&mut conns[i % 4], "s");
        if status == 429 {
            retry_after = header(&head, "Retry-After").map(str::to_owned);
        }
        statuses.push(status);
    }
    let elapsed = t0.elapsed();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    // 5 per second: the burst of 5, plus one token per 200 ms the burst took (on a loaded
    // machine it can take several hundred ms), plus one if it straddles a refill.
    let refills = usize::try_from(elapsed.as_millis() / 200).unwrap_or(usize::MAX);
    assert!(ok >= 5 && ok <= 6 + refills, "{statuses:?} in {elapsed:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        call(&mut conns[0], "s").0,
        200,
        "tokens refilled after a second"
    );
    node.shutdown();
}

#[test]
fn every_keyed_call_is_counted_in_the_usage_journal() {
    use gateway_model::event::{RejectReason, UsageDecoder};
    let dir = std::env::temp_dir().join(format!("tollgate-usage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = start_in(2, IoMode::Epoll, entities(15, 1_000_000), Some(dir.clone()));
    let mut conns: Vec<TcpStream> = (0..4).map(|_| connect(node.addr())).collect();
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..20 {
        match call(&mut conns[i % 4], "s").0 {
            200 => ok += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // A wrong secret is NOT charged to the key it names: the caller never proved it holds the
    // key, and charging it would let anyone inflate another customer's figures.
    assert_eq!(call(&mut conns[0], "wrong").0, 401);
    assert_eq!((ok, refused), (15, 5));
    drop(conns);
    node.shutdown(); // drains every core's counters through the sink into the journal
    let mut reader = gateway::journal::JournalReader::open(
        gateway::journal::Stream::Usage.dir(&dir.join("journal")),
        0,
    )
    .unwrap();
    let mut decoder = UsageDecoder::new();
    let (mut admitted, mut daily, mut auth, mut success, mut client_error) = (0, 0, 0, 0, 0);
    while let Some(record) = reader.next_record().unwrap() {
        let batch = decoder.decode(record.payload).unwrap();
        assert_eq!(batch.node, "quota");
        for e in &batch.entries {
            assert_eq!(e.apikey, "k");
            assert_eq!(e.route, "keyed");
            assert_eq!(e.month, e.day / 100);
            admitted += e.counters.admitted;
            daily += e.counters.rejected.get(RejectReason::QuotaDaily);
            auth += e.counters.rejected.get(RejectReason::Auth);
            success += e.counters.status.success;
            client_error += e.counters.status.client_error;
        }
    }
    assert_eq!((admitted, daily, auth), (15, 5, 0));
    assert_eq!((success, client_error), (15, 5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_restart_never_hands_out_a_fresh_quota() {
    let dir = std::env::temp_dir().join(format!("tollgate-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = start_in(2, IoMode::Epoll, entities(8, 1_000_000), Some(dir.clone()));
    let mut conn = connect(first.addr());
    let before: Vec<u16> = (0..5).map(|_| call(&mut conn, "s").0).collect();
    assert_eq!(before, [200; 5]);
    drop(conn);
    first.shutdown();
    // Same node id, same data dir: today's 5 calls are restored from the journal.
    let second = start_in(2, IoMode::Epoll, entities(8, 1_000_000), Some(dir.clone()));
    let mut conn = connect(second.addr());
    let after: Vec<u16> = (0..5).map(|_| call(&mut conn, "s").0).collect();
    assert_eq!(after, [200, 200, 200, 429, 429]);
    let (_, head) = call(&mut conn, "s");
    assert_eq!(header(&head, "Otoroshi-Daily-Calls-Remaining"), Some("0"));
    drop(conn);
    second.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

//! A new snapshot reaches every core between requests, within a tick, without restarting and
//! without dropping the connections that are open.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gateway::config::HttpLimits;
use gateway::node::{Node, NodeOptions};
use gateway::runtime::IoMode;
use gateway::snapshot::{QuotaSetup, Snapshot, SystemResolver};
use gateway_model::import::{Dialect, Entities, import_value};
use serde_json::json;

fn entities(path: &str, body: &str) -> Entities {
    let doc = json!({
        "routes": [{"id": "r", "frontend": {"domains": [format!("*{path}")]},
                    "backend": {"mock": {"body": body}}}]
    });
    let out = import_value(&doc, Some(Dialect::Tollgate)).unwrap();
    assert!(out.is_clean(), "{}", out.problems);
    out.entities
}

/// One GET on a kept-alive connection: (status, body).
fn get(conn: &mut TcpStream, path: &str) -> (u16, String) {
    write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match conn.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap(),
        };
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            if buf.len() >= end + 4 + len {
                let status = text[9..12].parse().unwrap();
                return (status, text[end + 4..end + 4 + len].to_owned());
            }
        }
    }
}

#[test]
fn published_snapshot_reaches_every_core_without_dropping_connections() {
    for io in [IoMode::Epoll, IoMode::Uring] {
        // Probe on a throwaway thread: tearing a ring down can queue task work that interrupts
        // the creating thread's next blocking syscall.
        let uring_ok = std::thread::spawn(|| gateway::runtime::build(IoMode::Uring).is_ok())
            .join()
            .unwrap();
        if io == IoMode::Uring && !uring_ok {
            eprintln!("io_uring unavailable here: skipping the uring variant");
            continue;
        }
        let options = NodeOptions {
            limits: HttpLimits::default(),
            ..common::node_options("swap", 2, io, None)
        };
        let node = Node::start(&options, entities("/old", "old")).unwrap();
        // Several connections, so that both cores (SO_REUSEPORT) hold some.
        let mut conns: Vec<TcpStream> = (0..8)
            .map(|_| TcpStream::connect(node.addr()).unwrap())
            .collect();
        for c in &mut conns {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!(get(c, "/old"), (200, "old".into()));
        }
        let current = node.current();
        let calendar = gateway_core::window::Calendar::utc();
        let setup = QuotaSetup {
            calendar: &calendar,
            cores: 2,
            previous: Some(&current.pool),
        };
        let next =
            Snapshot::build(2, &entities("/new", "new"), &mut SystemResolver, setup).unwrap();
        node.publish(next);
        assert_eq!(node.generation(), 2);
        let start = Instant::now();
        for c in &mut conns {
            // Same connection, next request: the new routes, within a few ticks.
            loop {
                let (status, body) = get(c, "/new");
                if status == 200 {
                    assert_eq!(body, "new");
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(1),
                    "{io:?}: swap took over 1 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(get(c, "/old").0, 404);
        }
        node.shutdown();
    }
}

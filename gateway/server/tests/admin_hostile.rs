//! The admin API against hostile clients, over real sockets, in-process (so that the test reads
//! the server's own memory in `/proc/self/status`): unauthenticated bodies are never allocated,
//! trickling clients from one address neither lock out another address nor outlive the request
//! deadline, bodies over a route's limit are 413 before they are read, chunked bodies work.
//!
//! The attackers connect from 127.0.0.2..4 and the legitimate client from 127.0.0.1 (all of
//! 127.0.0.0/8 is loopback on Linux). Tests run one at a time: they measure memory and count
//! connections.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::TempDir;
use common::stack::{Stack, StackOptions};
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-for-hostile-tests";
const MIB: usize = 1 << 20;

/// One test at a time: memory figures and connection counts must be this test's own.
static SERIAL: Mutex<()> = Mutex::new(());

/// The admin API under attack, with its node, on a data dir that lives as long as they do.
struct Target {
    stack: Stack,
    _dir: TempDir,
}

impl Target {
    fn start(http: gateway_httpd::Limits) -> Self {
        let dir = TempDir::new("admin-hostile");
        let stack = Stack::start(
            dir.path(),
            StackOptions {
                http,
                ..StackOptions::new("admin-hostile", 1, TOKEN)
            },
        );
        Self { stack, _dir: dir }
    }

    fn addr(&self) -> SocketAddr {
        self.stack.admin_addr()
    }
}

/// Resident memory of this process, bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A connection from `from` (a loopback address) to `to`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let from: IpAddr = from.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket
        .connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
}

/// Reads one response: (status, head, body).
fn read_response(stream: &mut TcpStream) -> (u16, String, Value) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert!(n > 0, "closed in a head: {}", String::from_utf8_lossy(&raw));
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (head[9..12].parse().unwrap(), head, value)
}

fn authorized_get(addr: SocketAddr, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut c = connect_from("127.0.0.1", addr);
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (status, _, _) = read_response(&mut c);
    (status, started.elapsed())
}

#[test]
fn unauthenticated_32_mib_bodies_are_refused_before_any_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let stack = Target::start(gateway_httpd::Limits::default());
    let addr = stack.addr();
    // Warm up: the first requests allocate the server's steady-state buffers.
    assert_eq!(authorized_get(addr, "/api/apikeys").0, 200);
    // What the attackers send, allocated once (this process is also the server: its memory is
    // what is measured).
    let block = Arc::new(vec![b'{'; MIB]);
    let before = rss();
    let peak = Arc::new(AtomicUsize::new(before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    // 16 connections at once (8 from each of two addresses: the per-address cap is 8), each
    // announcing 32 MiB and sending all of it as fast as the server takes it, without or with
    // a wrong token.
    let mut conns = Vec::new();
    let mut writers = Vec::new();
    for i in 0..16 {
        let from = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
        let mut c = connect_from(from, addr);
        let auth = if i % 4 < 2 {
            String::new()
        } else {
            "Authorization: Bearer wrong-token\r\n".to_owned()
        };
        write!(
            c,
            "POST /api/import HTTP/1.1\r\nHost: admin\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: 33554432\r\n\r\n"
        )
        .unwrap();
        let mut w = c.try_clone().unwrap();
        let block = block.clone();
        writers.push(std::thread::spawn(move || {
            // Stops at the first error: the server closed after its answer.
            (0..32).take_while(|_| w.write_all(&block).is_ok()).count()
        }));
        conns.push(c);
    }
    for c in &mut conns {
        let (status, head, body) = read_response(c);
        assert_eq!(status, 401, "{head}");
        assert!(head.contains("www-authenticate: Bearer\r\n"));
        assert!(head.contains("connection: close\r\n"));
        assert_eq!(body["error"], "unauthorized");
    }
    let answered = started.elapsed();
    let sent: Vec<usize> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed).max(rss());
    let grown = peak.saturating_sub(before);
    eprintln!(
        "16 unauthenticated 32 MiB requests: RSS {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB); \
         answered in {answered:?}; MiB the clients got to send: {sent:?}",
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        grown as f64 / MIB as f64
    );
    assert!(answered < Duration::from_secs(3), "{answered:?}");
    assert!(grown < 64 * MIB, "RSS grew by {grown} bytes");
    drop(conns);
    // The admin API still serves.
    let (status, took) = authorized_get(addr, "/api/apikeys");
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1));
}

#[test]
fn authorized_bodies_grow_with_the_bytes_received_not_the_declared_length() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let stack = Target::start(gateway_httpd::Limits {
        request_timeout: Duration::from_secs(2),
        ..gateway_httpd::Limits::default()
    });
    let addr = stack.addr();
    assert_eq!(authorized_get(addr, "/api/apikeys").0, 200);
    let before = rss();
    // Authorized this time: 16 bodies announced at 32 MiB (the import limit), 256 KiB sent.
    let mut conns: Vec<TcpStream> = (0..16)
        .map(|i| {
            let from = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
            let mut c = connect_from(from, addr);
            write!(
                c,
                "POST /api/import HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Length: 33554432\r\n\r\n"
            )
            .unwrap();
            c.write_all(&[b' '; 256 * 1024]).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss().saturating_sub(before);
    eprintln!(
        "16 authorized 32 MiB requests, 256 KiB sent each: RSS grew {:.1} MiB",
        grown as f64 / MIB as f64
    );
    assert!(grown < 64 * MIB, "RSS grew by {grown} bytes");
    // Then the deadline ends them.
    for c in &mut conns {
        let (status, _, body) = read_response(c);
        assert_eq!(status, 408);
        assert_eq!(body["error"], "request_timeout");
    }
}

#[test]
fn trickling_connections_from_one_address_do_not_lock_out_another() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // The default limits: a 10 s request deadline, 8 connections per address.
    let stack = Target::start(gateway_httpd::Limits::default());
    let addr = stack.addr();
    let started = Instant::now();
    let mut attackers: Vec<TcpStream> = (0..70)
        .map(|_| {
            let mut c = connect_from("127.0.0.2", addr);
            let _ = c.write_all(b"G");
            c
        })
        .collect();
    // Beyond the per-address cap, connections are answered 503 busy at once.
    let mut busy = 0;
    let mut held = Vec::new();
    for mut c in attackers.drain(..) {
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut first = [0u8; 12];
        match c.read_exact(&mut first) {
            Ok(()) if &first == b"HTTP/1.1 503" => busy += 1,
            Ok(()) => panic!("unexpected answer {:?}", String::from_utf8_lossy(&first)),
            Err(_) => held.push(c),
        }
    }
    assert_eq!(busy, 62);
    assert_eq!(held.len(), 8);
    // Trickle one byte every 3 s; meanwhile the legitimate client is served promptly.
    let trickle = b"ET /api/apikeys HTTP/1.1\r\nHost: admin\r\n\r\n";
    let mut sent = 0;
    let mut next_byte = Instant::now() + Duration::from_secs(3);
    let mut served = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let (status, took) = authorized_get(addr, "/api/apikeys");
        assert_eq!(status, 200);
        served.push(took);
        if Instant::now() >= next_byte {
            for c in &mut held {
                let _ = c.write_all(&trickle[sent..sent + 1]);
            }
            sent += 1;
            next_byte += Duration::from_secs(3);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let worst = served.iter().max().unwrap();
    eprintln!(
        "70 trickling connections: {} requests from another address served, slowest {worst:?}",
        served.len()
    );
    assert!(*worst < Duration::from_secs(1), "{worst:?}");
    // The trickling connections are cut at their deadline (10 s after their first byte): 408.
    for c in &mut held {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (status, _, body) = read_response(c);
        assert_eq!(status, 408);
        assert_eq!(body["error"], "request_timeout");
    }
    let cut = started.elapsed();
    eprintln!("trickling connections cut after {cut:?}");
    assert!(
        cut >= Duration::from_secs(9) && cut < Duration::from_secs(12),
        "{cut:?}"
    );
}

#[test]
fn bodies_over_a_routes_limit_are_413_and_chunked_bodies_are_decoded() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let stack = Target::start(gateway_httpd::Limits {
        request_timeout: Duration::from_secs(1),
        ..gateway_httpd::Limits::default()
    });
    let addr = stack.addr();
    // An entity write is limited to 1 MiB: 2 MiB announced is refused before it is sent.
    let mut c = connect_from("127.0.0.1", addr);
    let started = Instant::now();
    write!(
        c,
        "POST /api/apikeys HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: {}\r\n\r\n",
        2 * MIB
    )
    .unwrap();
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 413);
    assert!(head.contains("connection: close\r\n"));
    assert_eq!(body["error"], "body_too_large");
    assert!(started.elapsed() < Duration::from_millis(500));
    // A GET takes no body.
    let mut c = connect_from("127.0.0.1", addr);
    write!(
        c,
        "GET /api/apikeys HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 10\r\n\r\n0123456789"
    )
    .unwrap();
    assert_eq!(read_response(&mut c).0, 413);
    // A chunked entity write is decoded.
    let key = json!({"clientId": "chunky", "clientSecret": "Chunky-Secret-1234",
                     "authorizedEntities": []})
    .to_string();
    let (first, second) = key.split_at(10);
    let mut c = connect_from("127.0.0.1", addr);
    write!(
        c,
        "POST /api/apikeys HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["clientId"], "chunky");
    // A chunked import too.
    let doc = json!({"apiKeys": [{"clientId": "chunky-2", "clientSecret": "Chunky-Secret-5678",
                                  "authorizedEntities": []}]})
    .to_string();
    write!(
        c,
        "POST /api/import HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{doc}\r\n0\r\n\r\n",
        doc.len()
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 200, "{body}");
    // A head that never ends: 408 at the (1 s) deadline.
    let mut c = connect_from("127.0.0.1", addr);
    let started = Instant::now();
    c.write_all(b"GET /api/apikeys HTTP/1.1\r\nHost: admin\r\n")
        .unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 408);
    assert_eq!(body["error"], "request_timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // Conflicting framing is refused by gateway-core's parser.
    let mut c = connect_from("127.0.0.1", addr);
    write!(
        c,
        "POST /api/apikeys HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 400);
    assert_eq!(body["error"], "conflicting_framing");
    // The listener's counters are in /metrics.
    let mut c = connect_from("127.0.0.1", addr);
    write!(
        c,
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).unwrap();
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut metrics = vec![0u8; length];
    c.read_exact(&mut metrics).unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    for line in [
        "tollgate_admin_requests_too_large_total 2",
        "tollgate_admin_requests_timed_out_total 1",
        "tollgate_admin_connections_busy_total 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

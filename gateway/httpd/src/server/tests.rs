//! The server over real loopback sockets, with a small echo handler.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::auth::{BearerToken, unauthorized};
use crate::request::{Head, Request};

const TOKEN: &str = "test-token-123";

struct Echo {
    token: BearerToken,
}

impl Handler for Echo {
    fn authorize(&self, head: &Head) -> Result<(), Response> {
        if head.path == "/open" || self.token.matches(head) {
            Ok(())
        } else {
            Err(unauthorized())
        }
    }

    fn body_limit(&self, head: &Head) -> u64 {
        match head.path.as_str() {
            "/big" => 1 << 20,
            "/small" => 16,
            _ => 0,
        }
    }

    fn handle(&self, request: &Request) -> Response {
        Response::json(
            200,
            &json!({"method": request.head.method, "path": request.head.path,
                    "body": String::from_utf8_lossy(&request.body)}),
        )
    }
}

fn limits() -> Limits {
    Limits {
        request_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_millis(600),
        max_connections: 16,
        max_connections_per_peer: 4,
        ..Limits::default()
    }
}

fn start(limits: Limits) -> Server {
    let echo = Echo {
        token: BearerToken::new(TOKEN),
    };
    Server::bind("127.0.0.1:0".parse().unwrap(), "test-http", limits, echo).unwrap()
}

fn connect(server: &Server) -> TcpStream {
    connect_from(server, "127.0.0.1".parse().unwrap())
}

/// A connection from a chosen source address (all of 127.0.0.0/8 is loopback on Linux).
fn connect_from(server: &Server, from: IpAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket
        .connect_timeout(&server.addr().into(), Duration::from_secs(5))
        .unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads one response: status, head text, body.
fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert!(n > 0, "closed in a head: {}", String::from_utf8_lossy(&raw));
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, head, body)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

fn closed(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(stream.read_to_end(&mut rest), Ok(0) | Err(_))
}

#[test]
fn keep_alive_and_pipelined_requests_are_served_in_order() {
    let server = start(limits());
    let mut c = connect(&server);
    let auth = format!("Authorization: Bearer {TOKEN}");
    write!(
        c,
        "POST /big HTTP/1.1\r\nHost: x\r\n{auth}\r\nContent-Length: 5\r\n\r\nhello\
         GET /open?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json\r\n"));
    assert!(head.contains("connection: keep-alive\r\n"));
    assert_eq!(json_of(&body)["body"], "hello");
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["path"], "/open");
    write!(
        c,
        "GET /open HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (status, head, _) = read_response(&mut c);
    assert_eq!(status, 200);
    assert!(head.contains("connection: close\r\n"));
    assert!(closed(&mut c));
    server.shutdown();
}

#[test]
fn authorization_comes_before_any_body_byte() {
    let server = start(limits());
    let mut c = connect(&server);
    let started = Instant::now();
    // 32 MiB announced, none sent: the answer cannot wait for it.
    write!(
        c,
        "POST /big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 33554432\r\n\r\n"
    )
    .unwrap();
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 401);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(head.contains("www-authenticate: Bearer\r\n"));
    assert!(head.contains("connection: close\r\n"));
    assert_eq!(json_of(&body)["error"], "unauthorized");
    assert!(closed(&mut c));
    assert_eq!(server.stats().refused.load(Ordering::Relaxed), 1);

    // Without a body, a refused request leaves the connection usable.
    let mut c = connect(&server);
    write!(c, "GET /secret HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (status, head, _) = read_response(&mut c);
    assert_eq!(status, 401);
    assert!(head.contains("connection: keep-alive\r\n"));
    write!(c, "GET /open HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).0, 200);
    server.shutdown();
}

#[test]
fn a_declared_body_over_the_limit_is_413_before_it_is_read() {
    let server = start(limits());
    let auth = format!("Authorization: Bearer {TOKEN}");
    let mut c = connect(&server);
    write!(
        c,
        "POST /small HTTP/1.1\r\nHost: x\r\n{auth}\r\nContent-Length: 17\r\n\r\n"
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 413);
    assert_eq!(json_of(&body)["error"], "body_too_large");
    assert!(closed(&mut c));
    // A route that takes no body.
    let mut c = connect(&server);
    write!(
        c,
        "POST /open HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"
    )
    .unwrap();
    assert_eq!(read_response(&mut c).0, 413);
    // Exactly at the limit is fine.
    let mut c = connect(&server);
    write!(
        c,
        "POST /small HTTP/1.1\r\nHost: x\r\n{auth}\r\nContent-Length: 16\r\n\r\n0123456789abcdef"
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["body"], "0123456789abcdef");
    assert_eq!(server.stats().too_large.load(Ordering::Relaxed), 2);
    server.shutdown();
}

#[test]
fn chunked_bodies_are_decoded_and_bounded() {
    let server = start(limits());
    let auth = format!("Authorization: Bearer {TOKEN}");
    let mut c = connect(&server);
    write!(
        c,
        "POST /big HTTP/1.1\r\nHost: x\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["body"], "hello world");
    // Chunks split over several writes.
    write!(
        c,
        "POST /big HTTP/1.1\r\nHost: x\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    write!(c, "c\r\n0\r\n\r\n").unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["body"], "abc");

    // Past the limit: 413 as soon as the chunk sizes say so.
    let mut c = connect(&server);
    write!(
        c,
        "POST /small HTTP/1.1\r\nHost: x\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n\
         10\r\n0123456789abcdef\r\n1\r\n"
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 413);
    assert_eq!(json_of(&body)["error"], "body_too_large");
    // Broken chunk framing: 400 with the codec's code.
    let mut c = connect(&server);
    write!(
        c,
        "POST /big HTTP/1.1\r\nHost: x\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 400);
    assert_eq!(json_of(&body)["error"], "invalid_chunk_size");
    server.shutdown();
}

#[test]
fn expect_continue_is_answered_after_authorization() {
    let server = start(limits());
    let mut c = connect(&server);
    write!(
        c,
        "POST /big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    .unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"ok").unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["body"], "ok");
    // Refused: no 100, the final answer at once.
    let mut c = connect(&server);
    write!(
        c,
        "POST /big HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut c).0, 401);
    server.shutdown();
}

#[test]
fn a_trickled_request_is_cut_at_its_deadline_not_per_read() {
    let server = start(limits());
    // The head, one byte every 100 ms: each read is quick, the whole is not.
    let mut c = connect(&server);
    let started = Instant::now();
    let head = format!(
        "GET /open HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(40)
    );
    let mut answered = None;
    for b in head.bytes() {
        if c.write_all(&[b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut peek = [0u8; 1];
        c.set_nonblocking(true).unwrap();
        let got = c.peek(&mut peek);
        c.set_nonblocking(false).unwrap();
        if matches!(got, Ok(n) if n > 0) {
            answered = Some(started.elapsed());
            break;
        }
    }
    let at = answered.expect("no answer while trickling");
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 408);
    assert_eq!(json_of(&body)["error"], "request_timeout");
    assert!(
        at >= Duration::from_millis(750) && at < Duration::from_millis(1500),
        "{at:?}"
    );
    assert!(closed(&mut c));

    // A body trickled after a complete head: the same deadline covers it.
    let mut c = connect(&server);
    write!(
        c,
        "POST /big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    for _ in 0..5 {
        let _ = c.write_all(b"x");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _, _) = read_response(&mut c);
    assert_eq!(status, 408);
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(server.stats().timed_out.load(Ordering::Relaxed), 2);
    server.shutdown();
}

#[test]
fn a_new_connections_first_request_is_due_within_the_deadline_of_the_accept() {
    let server = start(limits());
    let mut c = connect(&server);
    let accepted = Instant::now();
    // Silent for most of the 800 ms, then half a head: silence bought no extra time.
    std::thread::sleep(Duration::from_millis(500));
    c.write_all(b"GET /open HTTP/1.1\r\n").unwrap();
    let (status, _, _) = read_response(&mut c);
    assert_eq!(status, 408);
    let at = accepted.elapsed();
    assert!(
        at >= Duration::from_millis(750) && at < Duration::from_millis(1200),
        "{at:?}"
    );
    server.shutdown();
}

#[test]
fn idle_connections_are_closed_silently() {
    let server = start(limits());
    // A new connection that never sends: closed after the request timeout, no answer.
    let mut c = connect(&server);
    let started = Instant::now();
    assert!(closed(&mut c));
    assert!(started.elapsed() >= Duration::from_millis(700));
    // A kept-alive connection: closed after the idle timeout.
    let mut c = connect(&server);
    write!(c, "GET /open HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).0, 200);
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(500) && idle < Duration::from_millis(1500),
        "{idle:?}"
    );
    server.shutdown();
}

#[test]
fn one_peer_cannot_take_every_connection() {
    let server = start(limits());
    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    // The attacker's share (4), each holding an unfinished request.
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = connect_from(&server, attacker);
            c.write_all(b"GET /open HTTP/1.1\r\n").unwrap();
            c
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.active() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.active(), 4);
    // One more from the same peer: 503 busy, closed.
    let mut extra = connect_from(&server, attacker);
    let (status, head, body) = read_response(&mut extra);
    assert_eq!(status, 503);
    assert!(head.contains("connection: close\r\n"));
    assert_eq!(json_of(&body)["error"], "busy");
    assert_eq!(server.stats().busy.load(Ordering::Relaxed), 1);
    // Another peer is served at once.
    let mut c = connect_from(&server, "127.0.0.1".parse().unwrap());
    let started = Instant::now();
    write!(c, "GET /open HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).0, 200);
    assert!(started.elapsed() < Duration::from_millis(300));
    drop(c);
    // The attacker's connections are answered 408 at their deadline and their slots freed.
    for c in &mut held {
        assert_eq!(read_response(c).0, 408);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.active() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.active(), 0);
    server.shutdown();
}

#[test]
fn the_total_cap_answers_busy() {
    let server = start(Limits {
        max_connections: 2,
        max_connections_per_peer: 8,
        ..limits()
    });
    let _a = connect(&server);
    let _b = connect(&server);
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.active() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut c = connect(&server);
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 503);
    assert_eq!(json_of(&body)["error_description"], "too many connections");
    server.shutdown();
}

#[test]
fn malformed_heads_get_the_codec_status_and_json() {
    let server = start(limits());
    for (raw, status, code) in [
        (
            "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "conflicting_framing",
        ),
        (
            "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            400,
            "duplicate_content_length",
        ),
        ("GET / HTTP/1.1\nHost: x\n\n", 400, "bare_lf"),
        ("GET / HTTP/1.1\r\n\r\n", 400, "missing_host"),
        ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "invalid_version"),
        (
            "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "unsupported_transfer_coding",
        ),
    ] {
        let mut c = connect(&server);
        c.write_all(raw.as_bytes()).unwrap();
        let (got, head, body) = read_response(&mut c);
        assert_eq!(got, status, "{raw:?}");
        assert!(head.contains("connection: close\r\n"));
        let v = json_of(&body);
        assert_eq!(v["error"], code, "{raw:?}");
        assert!(v["error_description"].is_string());
        assert!(closed(&mut c));
    }
    // A head over the size limit, and too many fields.
    let mut c = connect(&server);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let _ = c.write_all(big.as_bytes());
    assert_eq!(read_response(&mut c).0, 431);
    let mut c = connect(&server);
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let _ = c.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes());
    assert_eq!(read_response(&mut c).0, 431);
    server.shutdown();
}

#[test]
fn head_requests_get_the_length_without_the_body() {
    let server = start(limits());
    let mut c = connect(&server);
    write!(c, "HEAD /open HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).unwrap();
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(!head.contains("content-length: 0\r\n"));
    // The next answer follows directly: no body was sent.
    write!(
        c,
        "GET /open HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut rest = String::new();
    c.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    server.shutdown();
}

#[test]
fn shutdown_stops_accepting_and_lets_idle_connections_go() {
    let server = start(Limits {
        idle_timeout: Duration::from_secs(30),
        ..limits()
    });
    let addr = server.addr();
    let mut c = connect(&server);
    write!(c, "GET /open HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).0, 200);
    let started = Instant::now();
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(closed(&mut c));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}

#[test]
fn handler_panics_free_the_slot() {
    struct Panics;
    impl Handler for Panics {
        fn authorize(&self, _: &Head) -> Result<(), Response> {
            Ok(())
        }
        fn handle(&self, _: &Request) -> Response {
            panic!("handler bug")
        }
    }
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        "test-panic",
        limits(),
        Panics,
    )
    .unwrap();
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed(&mut c));
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.active() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.active(), 0);
    server.shutdown();
}

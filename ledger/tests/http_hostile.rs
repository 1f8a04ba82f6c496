//! The query API with `[ledger] token` and against hostile clients, over real sockets, with the
//! ledger in-process (so that the test reads its memory in `/proc/self/status`): the token
//! guards every endpoint but `/health`, client-id-only keys never appear by id in listings,
//! unauthenticated bodies are never read, trickling clients from one address neither lock out
//! another nor outlive the request deadline.
//!
//! Attackers connect from 127.0.0.2/.3, the legitimate client from 127.0.0.1 (all of
//! 127.0.0.0/8 is loopback on Linux). Tests run one at a time: they measure memory.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::*;
use gateway_events::journal::{Journal, JournalOptions, Stream};
use gateway_model::entity::Secret;
use gateway_model::event::{EntityAction, EntityEvent, EntityKind, encode};
use ledger::pseudonym::pseudonym;
use ledger::{Ledger, LedgerConfig};
use serde_json::{Value, json};

const TOKEN: &str = "ledger-token-for-tests";
const CID_ONLY: &str = "cid-only-key-7f3a9";
const PLAIN: &str = "plain-key-0001";
const MIB: usize = 1 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

/// Reads one response: (status, head, body).
fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
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
    let mut body = vec![0u8; if head.starts_with("HEAD") { 0 } else { length }];
    stream.read_exact(&mut body).unwrap();
    (
        head[9..12].parse().unwrap(),
        head,
        String::from_utf8(body).unwrap(),
    )
}

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

/// `GET path` on a fresh connection from 127.0.0.1, with `token` if given.
fn get_with(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut c = connect_from("127.0.0.1", addr);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: ledger\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut c)
}

fn authed(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = get_with(addr, path, Some(TOKEN));
    (status, body)
}

fn authed_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = authed(addr, path);
    (status, serde_json::from_str(&body).unwrap())
}

fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn event(version: u64, kind: EntityKind, id: &str, entity: Value) -> EntityEvent {
    EntityEvent {
        id: format!("evt-{id}-{version}"),
        at: now_ms(),
        actor: "admin".into(),
        action: if version == 1 {
            EntityAction::Created
        } else {
            EntityAction::Updated
        },
        kind,
        entity_id: id.into(),
        version,
        entity,
    }
}

/// A journal with usage of a client-id-only key and a plain key, their entity events, an API
/// whose subscription lists both, and a damaged record that mentions the client-id-only key.
/// Returns the data dir and the number of (usage, entity) records.
fn journal() -> (std::path::PathBuf, u64, u64) {
    let data = temp_dir("http-hostile");
    let (mut usage, _) = Journal::open(
        Stream::Usage.dir(&data.join("journal")),
        JournalOptions::default(),
    )
    .unwrap();
    let (mut entities, _) = Journal::open(
        Stream::Entities.dir(&data.join("journal")),
        JournalOptions::default(),
    )
    .unwrap();
    let events = [
        event(
            1,
            EntityKind::ApiKey,
            CID_ONLY,
            json!({"clientId": CID_ONLY, "clientSecret": "sealed:x", "allowClientIdOnly": true}),
        ),
        event(
            1,
            EntityKind::ApiKey,
            PLAIN,
            json!({"clientId": PLAIN, "clientSecret": "sealed:y"}),
        ),
        event(
            1,
            EntityKind::Api,
            "api-pets",
            json!({"id": "api-pets", "subscriptions": [
                {"id": "sub-gold", "consumer_ref": "gold", "apikeys": [CID_ONLY, PLAIN]}]}),
        ),
    ];
    for e in &events {
        entities.append(&e.encode().unwrap()).unwrap();
    }
    entities.sync().unwrap();
    for seq in 0..3 {
        let b = batch(
            "gw-a",
            0,
            0,
            1,
            seq,
            vec![entry(CID_ONLY, 2, 0), entry(PLAIN, 1, 0)],
        );
        usage.append(&encode(&b).unwrap()).unwrap();
    }
    let mut damaged = b"\x01\x04\x00\x00\x00".to_vec();
    damaged.extend_from_slice(CID_ONLY.as_bytes());
    usage.append(&damaged).unwrap();
    usage.sync().unwrap();
    (data, 4, events.len() as u64)
}

fn start(data: &std::path::Path, token: bool) -> Ledger {
    let mut config = LedgerConfig::journal(data);
    config.addr = Some("127.0.0.1:0".parse().unwrap());
    config.token = token.then(|| Secret::new(TOKEN));
    Ledger::start(config).unwrap()
}

fn caught_up(addr: SocketAddr, usage: u64, entities: u64) -> bool {
    let (_, state) = authed_json(addr, "/api/state");
    state["positions"]["journal:usage"]["next"] == usage
        && state["positions"]["journal:entities"]["next"] == entities
}

#[test]
fn a_token_guards_every_endpoint_but_health() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (data, usage, entities) = journal();
    let ledger = start(&data, true);
    let addr = ledger.local_addr().unwrap();
    assert!(eventually(Duration::from_secs(20), || caught_up(
        addr, usage, entities
    )));
    let period = {
        let day = today();
        format!("{}-{:02}", day / 10000, day / 100 % 100)
    };
    for path in [
        format!("/api/usage?apikey={PLAIN}"),
        format!("/api/totals?apikey={PLAIN}"),
        format!("/api/export?period={period}&format=csv"),
        format!("/api/entities/apikey/{PLAIN}/history"),
        "/api/quarantine".to_owned(),
        "/api/state".to_owned(),
        "/metrics".to_owned(),
        "/nope".to_owned(),
    ] {
        for token in [None, Some("wrong-token-123"), Some("")] {
            let (status, head, body) = get_with(addr, &path, token);
            assert_eq!(status, 401, "{path} with {token:?}: {body}");
            assert!(head.contains("www-authenticate: Bearer\r\n"));
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"], "unauthorized");
            assert!(body["error_description"].is_string());
        }
        let (status, body) = authed(addr, &path);
        let want = if path == "/nope" { 404 } else { 200 };
        assert_eq!(status, want, "{path}: {body}");
    }
    // /health is open, for load balancers and probes; HEAD too.
    let (status, _, body) = get_with(addr, "/health", None);
    assert_eq!(status, 200, "{body}");
    let mut c = connect_from("127.0.0.1", addr);
    write!(c, "HEAD /health HTTP/1.1\r\nHost: ledger\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    // Only GET and HEAD are served.
    let mut c = connect_from("127.0.0.1", addr);
    write!(
        c,
        "DELETE /api/state HTTP/1.1\r\nHost: ledger\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 405, "{body}");
    assert!(head.contains("allow: GET, HEAD\r\n"));
    // No body is accepted: 413 before it is read, even authorized.
    let mut c = connect_from("127.0.0.1", addr);
    write!(
        c,
        "GET /api/state HTTP/1.1\r\nHost: ledger\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 1048576\r\n\r\n"
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 413, "{body}");
    // Without a token configured, the API is open (the quickstart's embedded ledger).
    ledger.shutdown();
    let ledger = start(&data, false);
    let addr = ledger.local_addr().unwrap();
    let (status, _, body) = get_with(addr, &format!("/api/totals?apikey={PLAIN}"), None);
    assert_eq!(status, 200, "{body}");
    ledger.shutdown();
    std::fs::remove_dir_all(&data).ok();
}

#[test]
fn client_id_only_keys_never_appear_by_id_in_listings() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (data, usage, entities) = journal();
    let hidden = pseudonym(CID_ONLY);
    for restart in [false, true] {
        // After a restart the ledger knows the key from its store, not from a fold.
        let ledger = start(&data, true);
        let addr = ledger.local_addr().unwrap();
        assert!(eventually(Duration::from_secs(20), || caught_up(
            addr, usage, entities
        )));
        let day = today();
        let month = format!("{}-{:02}", day / 10000, day / 100 % 100);
        let day = format!("{month}-{:02}", day % 100);

        // Listings: the export (both formats), the API's history, the quarantine.
        let (status, csv) = authed(addr, &format!("/api/export?period={month}&format=csv"));
        assert_eq!(status, 200);
        assert!(!csv.contains(CID_ONLY), "restart {restart}: {csv}");
        assert!(
            csv.lines()
                .any(|l| l.starts_with(&format!("{month},UTC,{hidden},6,"))),
            "{csv}"
        );
        assert!(
            csv.lines()
                .any(|l| l.starts_with(&format!("{month},UTC,{PLAIN},3,"))),
            "{csv}"
        );
        let (_, lines) = authed(addr, &format!("/api/export?period={day}&format=json"));
        assert!(!lines.contains(CID_ONLY), "{lines}");
        let keys: Vec<String> = lines
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["apikey"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(keys, [hidden.clone(), PLAIN.to_owned()]);
        let (status, history) = authed(addr, "/api/entities/api/api-pets/history");
        assert_eq!(status, 200);
        assert!(!history.contains(CID_ONLY), "{history}");
        let history: Value = serde_json::from_str(&history).unwrap();
        assert_eq!(
            history["items"][0]["entity"]["subscriptions"][0]["apikeys"],
            json!([hidden, PLAIN])
        );
        let (_, quarantine) = authed(addr, "/api/quarantine");
        assert!(!quarantine.contains(CID_ONLY), "{quarantine}");
        assert!(
            !quarantine.contains(&ledger::store::hex(CID_ONLY.as_bytes())),
            "{quarantine}"
        );
        let quarantine: Value = serde_json::from_str(&quarantine).unwrap();
        assert!(quarantine["items"][0]["payload_hex"].is_null());
        assert!(quarantine["items"][0]["payload_withheld"].is_string());

        // Named by its id, the key's numbers and history are there.
        let (status, body) = authed_json(addr, &format!("/api/usage?apikey={CID_ONLY}"));
        assert_eq!(status, 200);
        assert_eq!(body["apikey"], CID_ONLY);
        assert_eq!(body["items"][0]["calls"], 6);
        let (_, totals) = authed_json(addr, &format!("/api/totals?apikey={CID_ONLY}"));
        assert_eq!(totals["apikey"], CID_ONLY);
        assert_eq!(totals["daily_calls"], 6);
        let (status, body) = authed_json(addr, &format!("/api/entities/apikey/{CID_ONLY}/history"));
        assert_eq!(status, 200);
        assert_eq!(body["items"][0]["entity"]["clientId"], CID_ONLY);
        assert_eq!(body["items"][0]["entity"]["clientSecret"], "***");
        // Named by its pseudonym (as the export lists it): the numbers, not the id.
        let (_, body) = authed(
            addr,
            &format!("/api/usage?apikey={hidden}&granularity=month"),
        );
        assert!(!body.contains(CID_ONLY), "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["apikey"], hidden.as_str());
        assert_eq!(body["items"][0]["calls"], 6);
        let (_, totals) = authed(addr, &format!("/api/totals?apikey={hidden}"));
        assert!(!totals.contains(CID_ONLY), "{totals}");
        let totals: Value = serde_json::from_str(&totals).unwrap();
        assert_eq!(totals["monthly_calls"], 6);
        let (status, body) = authed(addr, &format!("/api/entities/apikey/{hidden}/history"));
        assert_eq!(status, 200);
        assert!(!body.contains(CID_ONLY), "{body}");
        // Per-consumer usage does not break down per key.
        let (_, body) = authed(addr, "/api/usage?consumer=acme&granularity=month");
        assert!(!body.contains(CID_ONLY), "{body}");
        ledger.shutdown();
    }
    std::fs::remove_dir_all(&data).ok();
}

#[test]
fn unauthenticated_bodies_are_never_read() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let data = temp_dir("http-hostile-rss");
    let ledger = start(&data, true);
    let addr = ledger.local_addr().unwrap();
    assert_eq!(get_with(addr, "/health", None).0, 200);
    let block = Arc::new(vec![b'x'; MIB]);
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
    let mut conns = Vec::new();
    let mut writers = Vec::new();
    for i in 0..16 {
        let from = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
        let mut c = connect_from(from, addr);
        write!(
            c,
            "GET /api/export?period=2026-01 HTTP/1.1\r\nHost: ledger\r\nContent-Length: 33554432\r\n\r\n"
        )
        .unwrap();
        let mut w = c.try_clone().unwrap();
        let block = block.clone();
        writers.push(std::thread::spawn(move || {
            (0..32).take_while(|_| w.write_all(&block).is_ok()).count()
        }));
        conns.push(c);
    }
    for c in &mut conns {
        let (status, head, _) = read_response(c);
        assert_eq!(status, 401);
        assert!(head.contains("connection: close\r\n"));
    }
    let answered = started.elapsed();
    let sent: Vec<usize> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let grown = peak
        .load(Ordering::Relaxed)
        .max(rss())
        .saturating_sub(before);
    eprintln!(
        "ledger, 16 unauthenticated 32 MiB requests: RSS +{:.1} MiB at peak, answered in \
         {answered:?}, MiB the clients got to send: {sent:?}",
        grown as f64 / MIB as f64
    );
    assert!(answered < Duration::from_secs(3), "{answered:?}");
    assert!(grown < 64 * MIB, "RSS grew by {grown} bytes");
    ledger.shutdown();
    std::fs::remove_dir_all(&data).ok();
}

#[test]
fn trickling_connections_from_one_address_do_not_lock_out_another() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let data = temp_dir("http-hostile-trickle");
    // Default limits: 10 s per request, 8 connections per address.
    let ledger = start(&data, true);
    let addr = ledger.local_addr().unwrap();
    let started = Instant::now();
    let attackers: Vec<TcpStream> = (0..70)
        .map(|_| {
            let mut c = connect_from("127.0.0.2", addr);
            let _ = c.write_all(b"G");
            c
        })
        .collect();
    let mut busy = 0;
    let mut held = Vec::new();
    for mut c in attackers {
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut first = [0u8; 12];
        match c.read_exact(&mut first) {
            Ok(()) if &first == b"HTTP/1.1 503" => busy += 1,
            Ok(()) => panic!("unexpected answer {:?}", String::from_utf8_lossy(&first)),
            Err(_) => held.push(c),
        }
    }
    assert_eq!((busy, held.len()), (62, 8));
    let trickle = b"ET /api/state HTTP/1.1\r\nHost: ledger\r\n\r\n";
    let mut sent = 0;
    let mut next_byte = Instant::now() + Duration::from_secs(3);
    let mut served = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let asked = Instant::now();
        let (status, _) = authed(addr, "/api/state");
        served.push(asked.elapsed());
        assert_eq!(status, 200);
        if Instant::now() >= next_byte {
            for c in &mut held {
                let _ = c.write_all(&trickle[sent..sent + 1]);
            }
            sent += 1;
            next_byte += Duration::from_secs(3);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let worst = *served.iter().max().unwrap();
    eprintln!(
        "ledger, 70 trickling connections: {} requests from another address, slowest {worst:?}: {served:?}",
        served.len()
    );
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    for c in &mut held {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (status, _, body) = read_response(c);
        assert_eq!(status, 408, "{body}");
        assert!(body.contains("request_timeout"));
    }
    let cut = started.elapsed();
    assert!(
        cut >= Duration::from_secs(9) && cut < Duration::from_secs(12),
        "{cut:?}"
    );
    ledger.shutdown();
    std::fs::remove_dir_all(&data).ok();
}

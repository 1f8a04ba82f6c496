//! The security review's findings, attacked through the real binary with real upstreams (nginx
//! with a `location /admin`, a raw echo upstream, misbehaving upstreams), on both IO drivers:
//! one canonical path, no response to the wrong client, validated wire fields, the header
//! policy, bounded slow bodies, uniform refusals (docs/security.md).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::{Binary, Reply, Upstream, binary_config, echo_header_values, get_request};
use gateway::runtime::IoMode;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-admin-token";
const SECRET: &str = "Sec-Secret-0123456789";

fn drivers() -> Vec<IoMode> {
    let mut d = vec![IoMode::Epoll];
    if common::uring_available() {
        d.push(IoMode::Uring);
    }
    d
}

fn apikey_plugin() -> Value {
    json!({"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}})
}

fn target(port: u16) -> Value {
    json!({"targets": [{"hostname": "127.0.0.1", "port": port}]})
}

/// One request on a fresh connection; the response.
fn get(bin: &Binary, host: &str, target: &str, extra: &[&str]) -> common::Response {
    let mut c = bin.client();
    c.send(&get_request(host, target, extra));
    c.response()
}

fn key_headers() -> [String; 2] {
    [
        "Otoroshi-Client-Id: k1".to_owned(),
        format!("Otoroshi-Client-Secret: {SECRET}"),
    ]
}

/// Every spelling of `/admin` the review found, and more of the same class.
const ADMIN_SPELLINGS: &[&str] = &[
    "/admin",
    "/%61dmin",
    "/%61%64%6d%69%6e",
    "/x/../admin",
    "//admin",
    "///admin",
    "/./admin",
    "/%2e/admin",
    "/%2E%2E/admin",
    "/x/%2e%2e/admin",
    "/%2Fadmin",
    "/%2fadmin",
    "/x%2F..%2Fadmin",
    "/admin%2F",
    "/..;/admin",
    "/x/..;/admin",
    "/x/..%3B/admin",
    "/admin/",
    "/admin/../admin",
    "/x/./../admin/.",
    "/\\admin",
    "/admin#frag",
];

/// Finding 1: API-key restrictions and route prefixes are decided on the canonical path, which is
/// the path forwarded; nginx never serves its `/admin` to a request the gateway refused.
fn restrictions_and_prefixes_see_the_forwarded_path(io: IoMode) {
    let nginx = Nginx::start(
        "location /admin { return 200 \"ADMIN $uri\\n\"; }\n\
         location /api/ { return 200 \"API $uri\\n\"; }\n\
         location / { return 200 \"PUBLIC $uri\\n\"; }",
    );
    let entities = json!({
        "routes": [
            // A key whose restrictions forbid /admin, on a keyed route.
            {"id": "keyed", "frontend": {"domains": ["keyed.test"]}, "backend": target(nginx.port),
             "plugins": [apikey_plugin()]},
            // A public route on / and a keyed one on /admin, same host.
            {"id": "public", "frontend": {"domains": ["mixed.test"]}, "backend": target(nginx.port)},
            {"id": "private", "frontend": {"domains": ["mixed.test/admin"], "strip_path": false},
             "backend": target(nginx.port), "plugins": [apikey_plugin()]},
            // A backend root that must not be escaped.
            {"id": "rooted", "frontend": {"domains": ["root.test"]},
             "backend": {"targets": [{"hostname": "127.0.0.1", "port": nginx.port}], "root": "/api"}},
        ],
        "apiKeys": [{"clientId": "k1", "clientSecret": SECRET,
            "authorizedEntities": ["route_keyed", "route_private"],
            "restrictions": {"enabled": true, "forbidden": [
                {"method": "GET", "path": "/admin.*"},
                {"method": "*", "path": "keyed.test/secret.*"}]}},
            {"clientId": "k2", "clientSecret": SECRET, "authorizedEntities": ["route_private"]}],
    });
    let bin = Binary::start(&binary_config(""), &entities, io);
    let auth = key_headers();
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();

    // Sanity: allowed paths go through, canonical.
    let r = get(&bin, "keyed.test", "/hello/./world", &auth);
    assert_eq!(
        (r.status, r.text()),
        (200, "PUBLIC /hello/world\n".to_owned())
    );
    let r = get(&bin, "root.test", "/v1", &[]);
    assert_eq!((r.status, r.text()), (200, "API /api/v1\n".to_owned()));

    for spelling in ADMIN_SPELLINGS {
        // With a key whose restrictions forbid /admin: 403 (or 400 for an ambiguous target).
        let r = get(&bin, "keyed.test", spelling, &auth);
        assert!(
            matches!(r.status, 400 | 403) && !r.text().contains("ADMIN"),
            "{io:?} keyed {spelling}: {r:?}"
        );
        // With no key, where /admin is the keyed route: never the public route's answer.
        let r = get(&bin, "mixed.test", spelling, &[]);
        assert!(
            r.status == 400 && !r.text().contains("ADMIN"),
            "{io:?} mixed {spelling}: {r:?}"
        );
        // Under a root: never out of it.
        let escaped = format!("/..{spelling}");
        let r = get(&bin, "root.test", &escaped, &[]);
        assert!(
            r.status == 400 || r.text().starts_with("API /api/"),
            "{io:?} root {escaped}: {r:?}"
        );
    }
    // The keyed route still serves /admin to a key, and the public one everything else.
    let k2 = format!("Otoroshi-Client-Secret: {SECRET}");
    let r = get(
        &bin,
        "mixed.test",
        "/admin/x",
        &["Otoroshi-Client-Id: k2", &k2],
    );
    assert_eq!((r.status, r.text()), (200, "ADMIN /admin/x\n".to_owned()));
    let r = get(&bin, "mixed.test", "/%61pi/../other", &[]);
    assert_eq!((r.status, r.text()), (200, "PUBLIC /other\n".to_owned()));

    // Host case, a trailing dot and a port do not escape a `domain/path` restriction.
    for host in [
        "keyed.test",
        "KEYED.Test",
        "keyed.test.",
        "keyed.test:80",
        "Keyed.Test.:8080",
    ] {
        let r = get(&bin, host, "/secret/x", &auth);
        assert_eq!(r.status, 403, "{io:?} host {host}: {r:?}");
    }
    // nginx never served /admin to anything the gateway refused: the only /admin it saw is the
    // keyed one above.
    let admin: Vec<String> = nginx
        .served_uris()
        .into_iter()
        .filter(|u| u.starts_with("/admin"))
        .collect();
    assert_eq!(admin, vec!["/admin/x".to_owned()], "{io:?}");
}

#[test]
fn restrictions_and_prefixes_see_the_forwarded_path_on_both_drivers() {
    for io in drivers() {
        restrictions_and_prefixes_see_the_forwarded_path(io);
    }
}

/// An independent reading of RFC 3986 (Python): the canonical path, or None when refused.
const PY_REFERENCE: &str = r##"
import sys, json, re
UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
def canon(p):
    if not p.startswith("/") or "#" in p or "\\" in p:
        return None
    try:
        raw = p.encode("ascii")
    except UnicodeEncodeError:
        return None
    out = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x25:
            h = raw[i+1:i+3]
            if len(h) != 2 or not all(x in b"0123456789abcdefABCDEF" for x in h):
                return None
            v = int(h, 16)
            if v in UNRESERVED:
                out.append(chr(v))
            elif v in (0x2F, 0x5C) or v < 0x20 or v == 0x7F:
                return None
            else:
                out.append("%%%02X" % v)
            i += 3
            continue
        if c <= 0x20 or c == 0x7F:
            return None
        if chr(c) in '"<>`{}|^':
            out.append("%%%02X" % c)
        else:
            out.append(chr(c))
        i += 1
    segs = "".join(out).split("/")[1:]
    stack = []
    trailing = False
    for s in segs:
        low = s.lower()
        if re.match(r"^\.\.?(;|%3b)", low):
            return None
        if s == "":
            trailing = True
        elif s == ".":
            trailing = True
        elif s == "..":
            if not stack:
                return None
            stack.pop()
            trailing = True
        else:
            stack.append(s)
            trailing = False
    path = "/" + "/".join(stack)
    if trailing and stack:
        path += "/"
    return path
for line in sys.stdin:
    print(json.dumps(canon(json.loads(line))))
"##;

/// Deterministic pseudo-random targets made of the pieces that matter.
fn generated_targets(n: usize) -> Vec<String> {
    const PIECES: &[&str] = &[
        "/", "//", ".", "..", "%2e", "%2E%2e", "%2F", "%5c", "%61", "%7e", "%20", "%c3%A9", "%zz",
        "%00", ";", "%3b", "admin", "a", "b~c", "{", "|", ":", "@", "!", "'", "x-y_z", "%25",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            let mut t = String::from("/");
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for k in 0..(seed % 9) {
                let i = ((seed >> (k * 5)) % PIECES.len() as u64) as usize;
                t.push_str(PIECES[i]);
            }
            t
        })
        .collect()
}

/// Differential: for generated targets, the gateway forwards exactly the path an independent
/// RFC 3986 reading gives, and refuses (400, never forwarded) exactly what it cannot read.
fn forwarded_path_agrees_with_an_independent_reading(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let entities = json!({"routes": [
        {"id": "echo", "frontend": {"domains": ["diff.test"]}, "backend": target(up.port())}]});
    let bin = Binary::start(&binary_config(""), &entities, io);
    let targets = generated_targets(400);
    let input: String = targets
        .iter()
        .map(|t| format!("{}\n", serde_json::to_string(t).unwrap()))
        .collect();
    let mut py = std::process::Command::new("python3")
        .arg("-c")
        .arg(PY_REFERENCE)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    py.stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success());
    let expected: Vec<Option<String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(expected.len(), targets.len());
    let mut c = bin.client();
    let (mut refused, mut forwarded) = (0, 0);
    for (t, want) in targets.iter().zip(&expected) {
        c.send(&get_request("diff.test", t, &[]));
        let r = c.response();
        match want {
            None => {
                assert_eq!(r.status, 400, "{io:?} {t:?} should be refused: {r:?}");
                refused += 1;
                c = bin.client();
            }
            Some(path) => {
                assert_eq!(r.status, 200, "{io:?} {t:?} → {path:?}: {r:?}");
                assert_eq!(r.json()["path"], *path, "{io:?} {t:?}");
                forwarded += 1;
            }
        }
    }
    assert!(
        refused > 40 && forwarded > 40,
        "{refused} refused, {forwarded} forwarded"
    );
    // Nothing refused ever reached the upstream.
    assert_eq!(up.requests(), forwarded, "{io:?}");
}

#[test]
fn forwarded_path_agrees_with_an_independent_reading_on_both_drivers() {
    for io in drivers() {
        forwarded_path_agrees_with_an_independent_reading(io);
    }
}

/// A raw upstream that answers each request with its own path, then, after `delay`, sends an
/// unsolicited second response on the same connection (or, with `delay` zero, in the same
/// write).
struct Treacherous {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl Treacherous {
    fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, n) = (stop.clone(), connections.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        n.fetch_add(1, Ordering::AcqRel);
                        std::thread::spawn(move || treacherous_conn(stream, delay));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            addr,
            stop,
            connections,
        }
    }
}

impl Drop for Treacherous {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn treacherous_conn(stream: TcpStream, delay: Duration) {
    let _ = stream.set_nonblocking(false);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("?").to_owned();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
        }
        let own = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
            path.len()
        );
        let evil = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL";
        if delay.is_zero() {
            let _ = writer.write_all(format!("{own}{evil}").as_bytes());
        } else {
            let _ = writer.write_all(own.as_bytes());
            std::thread::sleep(delay);
            let _ = writer.write_all(evil.as_bytes());
        }
    }
}

/// Finding 2: a connection with unread bytes is never reused, whether the extra response came
/// with the real one or later, on an idle pooled connection; every method is checked.
fn no_client_gets_another_clients_response(io: IoMode) {
    for delay in [Duration::ZERO, Duration::from_millis(20)] {
        let up = Treacherous::start(delay);
        let entities = json!({"routes": [
            {"id": "t", "frontend": {"domains": ["t.test"]}, "backend": target(up.addr.port())}]});
        let bin = Binary::start(&binary_config(""), &entities, io);
        let mut c = bin.client();
        for i in 0..30 {
            let method = if i % 2 == 0 { "GET" } else { "DELETE" };
            let path = format!("/req-{i}");
            c.send(format!("{method} {path} HTTP/1.1\r\nHost: t.test\r\n\r\n").as_bytes());
            let r = c.response();
            assert_eq!(r.status, 200, "{io:?} {delay:?} {path}: {r:?}");
            assert_eq!(r.text(), path, "{io:?} {delay:?}: another client's bytes");
            // Leave time for the late response to land on the idle pooled connection.
            std::thread::sleep(delay * 2);
        }
        // Every connection carried junk: none was reused.
        assert_eq!(
            up.connections.load(Ordering::Acquire),
            30,
            "{io:?} {delay:?}"
        );
    }
}

#[test]
fn no_client_gets_another_clients_response_on_both_drivers() {
    for io in drivers() {
        no_client_gets_another_clients_response(io);
    }
}

/// An upstream that answers `413` as soon as it has a request head, keeps the connection open,
/// and reads whatever follows as more requests (a naive server): what it reads is recorded.
fn early_answer_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if line.starts_with("POST ") || line.starts_with("GET ") {
                        log.lock().unwrap().push(line.trim_end().to_owned());
                        let _ = writer.write_all(
                            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nnope",
                        );
                    }
                    line.clear();
                }
            });
        }
    });
    (addr, seen)
}

/// Finding 2, the other way: an upstream that answers before it has the body is given no more of
/// it, its connection is not reused, and the client connection closes after the answer.
fn early_answer_stops_the_body_and_closes(io: IoMode) {
    let (addr, seen) = early_answer_upstream();
    let entities = json!({"routes": [
        {"id": "e", "frontend": {"domains": ["e.test"]}, "backend": target(addr.port())}]});
    let bin = Binary::start(&binary_config(""), &entities, io);
    // A body larger than the request buffer streams; it looks like requests to a naive server.
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1 << 14);
    let mut c = bin.client();
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: e.test\r\nContent-Length: {}\r\n\r\n",
            smuggled.len()
        )
        .as_bytes(),
    );
    let mut writer = c.stream.try_clone().unwrap();
    let body = smuggled.clone();
    let sender = std::thread::spawn(move || {
        for chunk in body.chunks(8192) {
            if writer.write_all(chunk).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let r = c.response();
    assert_eq!((r.status, r.text()), (413, "nope".to_owned()), "{io:?}");
    assert!(
        r.closes(),
        "{io:?}: the client's body was not all read: {r:?}"
    );
    c.assert_closed_within(Duration::from_secs(5));
    let _ = sender.join();
    // The next request gets a fresh upstream connection and its own answer.
    let r = get(&bin, "e.test", "/next", &[]);
    assert_eq!(r.status, 413);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|l| l.starts_with("GET /next")).count(),
        1,
        "{seen:?}"
    );
    // The gateway stopped sending at the answer: nowhere near the 16k smuggled-looking lines.
    let smuggled_seen = seen.iter().filter(|l| l.contains("/smuggled")).count();
    assert!(
        smuggled_seen < 2_000,
        "{io:?}: {smuggled_seen} body lines sent after the answer"
    );
}

#[test]
fn early_answer_stops_the_body_and_closes_on_both_drivers() {
    for io in drivers() {
        early_answer_stops_the_body_and_closes(io);
    }
}

/// Finding 3: fields that reach the wire or the logs are validated at every entry.
#[test]
fn wire_and_log_fields_are_validated_at_every_entry() {
    let bin = Binary::start(&binary_config(""), &json!({}), IoMode::Epoll);
    let admin = bin.admin_addr();
    let call = |method: &str, path: &str, body: &Value| {
        common::admin_call(admin, TOKEN, method, path, Some(body))
    };
    let smuggling_root = json!({"id": "r", "frontend": {"domains": ["a.test"]},
        "backend": {"targets": [{"hostname": "127.0.0.1", "port": 1}],
                    "root": "/x HTTP/1.1\r\nHost: evil\r\n\r\nGET /y"}});
    let (status, body) = call("POST", "/api/routes", &smuggling_root);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("backend.root"), "{body}");
    let escaping_root = json!({"id": "r", "frontend": {"domains": ["a.test"]},
        "backend": {"targets": [{"hostname": "127.0.0.1", "port": 1}], "root": "/api/../admin"}});
    assert_eq!(call("POST", "/api/routes", &escaping_root).0, 400);
    for id in [
        "a\r\nINFO forged line",
        "../../etc",
        "a/b",
        &"x".repeat(5000),
    ] {
        let key = json!({"clientId": id, "clientSecret": "s", "authorizedEntities": []});
        let (status, body) = call("POST", "/api/apikeys", &key);
        assert_eq!(status, 400, "{id:?}: {body}");
        assert!(body.to_string().contains("clientId"), "{body}");
        let route = json!({"id": id, "frontend": {"domains": ["a.test"]},
            "backend": {"targets": [{"hostname": "127.0.0.1", "port": 1}]}});
        assert_eq!(call("POST", "/api/routes", &route).0, 400, "{id:?}");
    }
    let expression = json!({"id": "r2", "frontend": {"domains": ["a.test"]},
        "backend": {"targets": [{"hostname": "127.0.0.1", "port": 1}]},
        "plugins": [{"plugin": "cp:otoroshi.next.plugins.AdditionalHeadersIn",
                     "config": {"headers": {"X-User": "${req.ip}", "X-Bad": "a\r\nX: 1"}}}]});
    let (status, body) = call("POST", "/api/routes", &expression);
    assert_eq!(status, 400, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("config.headers.X-User") && text.contains("config.headers.X-Bad"),
        "{text}"
    );
    // The same through an import.
    let import = json!({"routes": [smuggling_root]});
    let (status, body) = call("POST", "/api/import", &import);
    assert!(
        status == 400 || body.to_string().contains("backend.root"),
        "{status} {body}"
    );
    // Nothing of it reached the log as a line of its own.
    assert!(
        !bin.log().lines().any(|l| l.starts_with("INFO forged")),
        "{}",
        bin.log()
    );
}

/// Finding 4: `AdditionalHeadersIn`/`Out` apply and overwrite; forwarding headers follow the
/// policy table; trailers never go upstream (framing fields in them are refused outright:
/// proxy.rs `chunked_request_body_is_forwarded_without_trailers`).
fn header_policy_holds(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let entities = json!({"routes": [{"id": "h", "frontend": {"domains": ["h.test"]},
        "backend": target(up.port()),
        "plugins": [
            {"plugin": "cp:otoroshi.next.plugins.AdditionalHeadersIn",
             "config": {"headers": {"X-Internal-User": "gateway"}}},
            {"plugin": "cp:otoroshi.next.plugins.AdditionalHeadersOut",
             "config": {"headers": {"X-Frame-Options": "DENY"}}},
            {"plugin": "cp:otoroshi.next.plugins.AdditionalHeadersIn", "exclude": ["/public/.*"],
             "config": {"headers": {"X-Scoped": "yes"}}}]}]});
    let bin = Binary::start(&binary_config(""), &entities, io);
    let mut c = bin.client();
    c.send(
        b"POST /in HTTP/1.1\r\nHost: h.test\r\nX-Internal-User: admin\r\nForwarded: for=6.6.6.6\r\n\
          X-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Port: 1\r\n\
          X-Forwarded-Host: evil\r\nX-Request-Id: forged\r\nX-Forwarded-For: 2.2.2.2\r\n\
          Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 9\r\n\
          X-Internal-User: admin\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert_eq!(
        echo_header_values(&echo, "x-internal-user"),
        vec!["gateway"]
    );
    assert_eq!(echo_header_values(&echo, "x-scoped"), vec!["yes"]);
    assert_eq!(echo_header_values(&echo, "forwarded"), Vec::<String>::new());
    assert_eq!(
        echo_header_values(&echo, "x-forwarded-port"),
        Vec::<String>::new()
    );
    assert_eq!(echo_header_values(&echo, "x-real-ip"), vec!["127.0.0.1"]);
    assert_eq!(
        echo_header_values(&echo, "x-forwarded-host"),
        vec!["h.test"]
    );
    assert_eq!(
        echo_header_values(&echo, "x-forwarded-for"),
        vec!["1.1.1.1, 2.2.2.2, 127.0.0.1"]
    );
    let rid = echo_header_values(&echo, "x-request-id");
    assert!(rid.len() == 1 && rid[0] != "forged", "{rid:?}");
    assert_eq!(echo["body"], "abc");
    assert_eq!(
        echo["trailers"],
        json!([]),
        "request trailers never go upstream"
    );
    assert_eq!(r.header_count("x-frame-options"), 1);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-request-id"), Some(rid[0].as_str()));
    // The scoped plugin does not run where it is excluded.
    c.send(&get_request("h.test", "/public/x", &[]));
    let echo = c.response().json();
    assert_eq!(echo_header_values(&echo, "x-scoped"), Vec::<String>::new());
    assert_eq!(
        echo_header_values(&echo, "x-internal-user"),
        vec!["gateway"]
    );
    // Refusals carry the request id too.
    let r = get(&bin, "nowhere.test", "/", &[]);
    assert_eq!(r.status, 404);
    assert!(r.header("x-request-id").is_some(), "{r:?}");
}

#[test]
fn header_policy_holds_on_both_drivers() {
    for io in drivers() {
        header_policy_holds(io);
    }
}

/// Finding 5 (data plane): a slow body holds no upstream connection when it is small, a large
/// one at most its share of them, and both are cut below the minimum rate; normal traffic is
/// served throughout.
fn slow_bodies_are_bounded(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let entities = json!({"routes": [{"id": "s", "frontend": {"domains": ["s.test"]},
        "backend": {"targets": [{"hostname": "127.0.0.1", "port": up.port()}],
                    "client": {"max_connections": 4}}}]});
    let config = binary_config(
        "[http]\nmin_body_rate = 1024\nbody_rate_grace_ms = 1500\nstreaming_share_percent = 50\n",
    );
    let bin = Binary::start(&config, &entities, io);
    let started = Instant::now();
    // 40 clients trickling small bodies: none of them reaches the upstream.
    let mut small: Vec<common::Client> = (0..40)
        .map(|_| {
            let mut c = bin.client();
            c.send(b"POST /small HTTP/1.1\r\nHost: s.test\r\nContent-Length: 1000\r\n\r\nx");
            c
        })
        .collect();
    // 6 clients trickling large bodies: at most 2 (50 % of 4) stream, the others get 503.
    let mut large: Vec<common::Client> = (0..6)
        .map(|_| {
            let mut c = bin.client();
            c.send(b"POST /large HTTP/1.1\r\nHost: s.test\r\nContent-Length: 10000000\r\n\r\nx");
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Normal traffic is served while they trickle.
    for i in 0..20 {
        let r = get(&bin, "s.test", &format!("/ok/{i}"), &[]);
        assert_eq!(r.status, 200, "{io:?}: {r:?}");
    }
    for c in small.iter_mut().chain(large.iter_mut()) {
        let _ = c.try_send(b"y");
    }
    let statuses: Vec<u16> = large
        .iter_mut()
        .map(|c| c.try_response().map_or(0, |r| r.status))
        .collect();
    let busy = statuses.iter().filter(|s| **s == 503).count();
    // Below the minimum rate, every slow client is cut with 408 soon after the grace time.
    for c in &mut small {
        let r = c.response();
        assert_eq!(r.status, 408, "{io:?}: {r:?}");
    }
    let cut_after = started.elapsed();
    assert!(
        cut_after < Duration::from_secs(10),
        "{io:?}: cut after {cut_after:?}"
    );
    assert_eq!(
        busy, 4,
        "{io:?}: {statuses:?}: 4 refused expected (2 may stream)"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 408).count(),
        2,
        "{io:?}: {statuses:?}"
    );
    // The small bodies never reached the upstream; only the 2 streaming ones and the 20 GETs.
    let posted = up.seen().iter().filter(|r| r.method == "POST").count();
    assert!(
        posted <= 2,
        "{io:?}: {posted} slow bodies reached the upstream"
    );
    assert!(
        up.connections() <= 4,
        "{io:?}: {} upstream connections",
        up.connections()
    );
}

#[test]
fn slow_bodies_are_bounded_on_both_drivers() {
    for io in drivers() {
        slow_bodies_are_bounded(io);
    }
}

/// Finding 6: an unknown client id and a wrong secret get the same answer, and so does a client
/// id alone, known or not.
fn refusals_do_not_enumerate_ids(io: IoMode) {
    let entities = json!({
        "backends": [{"id": "m", "backend": {"mock": {"body": "ok"}}}],
        "routes": [{"id": "u", "frontend": {"domains": ["u.test"]}, "backend_ref": "m",
                    "plugins": [apikey_plugin()]}],
        "apiKeys": [{"clientId": "known", "clientSecret": SECRET, "authorizedEntities": ["route_u"]}],
    });
    let bin = Binary::start(&binary_config(""), &entities, io);
    // Status, code and description: everything but the trace id, which differs per request.
    let answer = |headers: &[&str]| {
        let r = get(&bin, "u.test", "/", headers);
        let body = r.json();
        assert!(
            body["trace_id"].as_str().is_some_and(|t| t.len() == 32),
            "{body}"
        );
        (
            r.status,
            body["error"].clone(),
            body["error_description"].clone(),
        )
    };
    let unknown = answer(&["Otoroshi-Client-Id: nobody", "Otoroshi-Client-Secret: x"]);
    let wrong = answer(&["Otoroshi-Client-Id: known", "Otoroshi-Client-Secret: x"]);
    assert_eq!(unknown, wrong, "{io:?}");
    assert_eq!(unknown.0, 401);
    assert_eq!(
        answer(&["x-api-key: nobody"]),
        answer(&["x-api-key: known"]),
        "{io:?}"
    );
    assert_eq!(
        answer(&["Authorization: Basic bm9ib2R5Ong="]),
        answer(&["Authorization: Basic a25vd246eA=="]),
        "{io:?}"
    );
    let ok = get(
        &bin,
        "u.test",
        "/",
        &[
            "Otoroshi-Client-Id: known",
            &format!("Otoroshi-Client-Secret: {SECRET}"),
        ],
    );
    assert_eq!(ok.status, 200);
}

#[test]
fn refusals_do_not_enumerate_ids_on_both_drivers() {
    for io in drivers() {
        refusals_do_not_enumerate_ids(io);
    }
}

/// W3C Trace Context: a client's `traceparent` is continued (same trace id and flags, the
/// gateway's span as the parent), one is started when absent or invalid, and the trace id is in
/// error bodies.
#[test]
fn traceparent_is_continued_or_started() {
    let up = Upstream::start(Reply::Echo);
    let entities = json!({"routes": [
        {"id": "t", "frontend": {"domains": ["t.test"]}, "backend": target(up.port())}]});
    let bin = Binary::start(&binary_config(""), &entities, IoMode::Epoll);
    let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let r = get(
        &bin,
        "t.test",
        "/",
        &[&format!("traceparent: {client}"), "tracestate: k=v"],
    );
    let echo = r.json();
    let sent = echo_header_values(&echo, "traceparent");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let parts: Vec<&str> = sent[0].split('-').collect();
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(parts[2], "00f067aa0ba902b7", "the gateway's own span");
    assert_eq!(parts[3], "00", "flags kept");
    assert_eq!(echo_header_values(&echo, "tracestate"), vec!["k=v"]);
    // Absent, or invalid: a new sampled trace, different per request.
    let started: Vec<String> = ["", "traceparent: nonsense"]
        .iter()
        .map(|h| {
            let extra: Vec<&str> = if h.is_empty() { vec![] } else { vec![*h] };
            let echo = get(&bin, "t.test", "/", &extra).json();
            echo_header_values(&echo, "traceparent").remove(0)
        })
        .collect();
    for t in &started {
        assert!(
            t.len() == 55 && t.starts_with("00-") && t.ends_with("-01"),
            "{t}"
        );
    }
    assert_ne!(started[0][3..35], started[1][3..35]);
    // A refusal carries the trace id of the request that caused it.
    let r = get(
        &bin,
        "nowhere.test",
        "/",
        &[&format!("traceparent: {client}")],
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

//! The admin API and the entity log, end to end over real sockets: CRUD reaching every core
//! within a second, restart, sealed secrets, bad input, imports, rotation with injected time,
//! quotas, call examples, events, metrics.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::stack::{Stack, StackOptions};
use common::{TempDir, wait_until};
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-for-tests";
const APIKEY_PLUGIN: &str = "cp:otoroshi.next.plugins.ApikeyCalls";

/// A node with its admin API on a data dir, its clock stopped at the start.
fn start(dir: &std::path::Path, cores: usize) -> Stack {
    start_at(
        dir,
        cores,
        &Arc::new(AtomicI64::new(gateway::entitylog::now_ms())),
    )
}

/// A node with its admin API on a data dir, on a clock the test moves.
fn start_at(dir: &std::path::Path, cores: usize, clock: &Arc<AtomicI64>) -> Stack {
    let c = clock.clone();
    Stack::start(
        dir,
        StackOptions {
            clock: Arc::new(move || c.load(Ordering::SeqCst)),
            previous_secret_grace_ms: 60_000,
            ..StackOptions::new("admin-e2e", cores, TOKEN)
        },
    )
}

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

/// One request on a fresh connection: (status, headers, JSON body or the text as a string).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&Value>,
) -> (u16, String, Value) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let payload = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
    conn.write_all(req.as_bytes()).unwrap();
    conn.write_all(&payload).unwrap();
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let value = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (status, head.to_owned(), value)
}

fn raw_post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, Value) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{}\r\nContent-Length: {}\r\n\r\n",
        auth(),
        body.len()
    );
    conn.write_all(req.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// A data-plane GET on a fresh connection (so that SO_REUSEPORT spreads them over the cores).
fn data_get(addr: SocketAddr, host: &str, path: &str, key: Option<(&str, &str)>) -> u16 {
    let mut c = common::Client::connect(addr);
    let extra: Vec<String> = key
        .map(|(id, secret)| {
            vec![
                format!("Otoroshi-Client-Id: {id}"),
                format!("Otoroshi-Client-Secret: {secret}"),
            ]
        })
        .unwrap_or_default();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    c.send(&common::get_request(host, path, &extra));
    c.response().status
}

/// Waits until 16 fresh connections in a row (spread over the cores) all answer `want`;
/// returns how long that took.
fn until_all(
    addr: SocketAddr,
    host: &str,
    path: &str,
    key: Option<(&str, &str)>,
    want: u16,
) -> Duration {
    let start = Instant::now();
    let ok = wait_until(Duration::from_secs(5), || {
        (0..16).all(|_| data_get(addr, host, path, key) == want)
    });
    assert!(
        ok,
        "{host}{path} did not answer {want} on every connection within 5 s"
    );
    start.elapsed()
}

fn mock_backend() -> Value {
    json!({"id": "mock", "backend": {"mock": {"status": 200, "body": "hello"}}})
}

fn keyed_route(id: &str, path: &str) -> Value {
    json!({"id": id, "frontend": {"domains": [format!("*{path}")]}, "backend_ref": "mock",
           "plugins": [{"plugin": APIKEY_PLUGIN, "config": {}}]})
}

fn key(id: &str, secret: &str, route: &str) -> Value {
    json!({"clientId": id, "clientSecret": secret, "clientName": id,
           "authorizedEntities": [format!("route_{route}")]})
}

/// Read-your-writes: when the API answers a write, every core already serves it. Asked on
/// fresh connections (spread over the cores by SO_REUSEPORT) the instant the answer arrives;
/// before the admin API waited for the cores, the first requests were 404 (a core takes a new
/// snapshot on its next tick, up to 50 ms later).
#[test]
fn every_core_serves_a_write_once_the_api_has_answered_it() {
    let dir = TempDir::new("admin-ryw");
    let stack = start(dir.path(), 2);
    let data = stack.data();
    assert_eq!(
        stack.call("POST", "/api/backends", Some(&mock_backend())).0,
        201
    );
    for i in 0..8 {
        let path = format!("/ryw{i}");
        let id = format!("ryw{i}");
        let (status, created) = stack.call("POST", "/api/routes", Some(&keyed_route(&id, &path)));
        assert_eq!(status, 201, "{created}");
        for _ in 0..8 {
            assert_eq!(
                data_get(data, "x", &path, None),
                400,
                "route {id} not served yet"
            );
        }
        let (status, _) = stack.call(
            "POST",
            "/api/apikeys",
            Some(&key(&id, "secret-value-1", &id)),
        );
        assert_eq!(status, 201);
        for _ in 0..8 {
            assert_eq!(
                data_get(data, "x", &path, Some((&id, "secret-value-1"))),
                200,
                "key {id}"
            );
        }
        assert_eq!(
            stack.call("DELETE", &format!("/api/apikeys/{id}"), None).0,
            200
        );
        for _ in 0..8 {
            assert_eq!(
                data_get(data, "x", &path, Some((&id, "secret-value-1"))),
                401,
                "deleted key {id}"
            );
        }
    }
}

#[test]
fn crud_through_the_api_reaches_every_core_within_a_second() {
    let dir = TempDir::new("admin-crud");
    let stack = start(dir.path(), 2);
    let data = stack.data();
    assert_eq!(
        stack.call("POST", "/api/backends", Some(&mock_backend())).0,
        201
    );
    let (status, route) = stack.call("POST", "/api/routes", Some(&keyed_route("r1", "/r1")));
    assert_eq!(status, 201, "{route}");
    assert_eq!(route["_version"], 1);
    let took = until_all(data, "x", "/r1", None, 400);
    assert!(took < Duration::from_secs(1), "route took {took:?}");

    // A key created through the API admits on every core within a second.
    let (status, created) = stack.call(
        "POST",
        "/api/apikeys",
        Some(&key("k1", "secret-k1-value", "r1")),
    );
    assert_eq!(status, 201, "{created}");
    let took = until_all(data, "x", "/r1", Some(("k1", "secret-k1-value")), 200);
    assert!(took < Duration::from_secs(1), "key creation took {took:?}");
    eprintln!("key creation → admitted on every core: {took:?}");

    // Disabled with PATCH: refused everywhere.
    let (status, patched) =
        stack.call("PATCH", "/api/apikeys/k1", Some(&json!({"enabled": false})));
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["_version"], 2);
    assert_eq!(
        patched["clientName"], "k1",
        "merge patch keeps other fields"
    );
    let took = until_all(data, "x", "/r1", Some(("k1", "secret-k1-value")), 401);
    assert!(took < Duration::from_secs(1), "key update took {took:?}");

    // PUT replaces: enabled again with a new secret.
    let mut replaced = key("k1", "second-secret", "r1");
    replaced["_version"] = json!(2);
    assert_eq!(stack.call("PUT", "/api/apikeys/k1", Some(&replaced)).0, 200);
    until_all(data, "x", "/r1", Some(("k1", "second-secret")), 200);
    assert_eq!(
        data_get(data, "x", "/r1", Some(("k1", "secret-k1-value"))),
        401
    );

    // The route moves: PATCH its domain.
    let (status, _) = stack.call(
        "PATCH",
        "/api/routes/r1",
        Some(&json!({"frontend": {"domains": ["*/moved"]}})),
    );
    assert_eq!(status, 200);
    until_all(data, "x", "/moved", Some(("k1", "second-secret")), 200);

    // Lists: pagination and filters.
    assert_eq!(
        stack
            .call("POST", "/api/apikeys", Some(&key("k2", "s2-secret", "r1")))
            .0,
        201
    );
    assert_eq!(
        stack
            .call("PATCH", "/api/apikeys/k2", Some(&json!({"enabled": false})))
            .0,
        200
    );
    let (_, all) = stack.call("GET", "/api/apikeys", None);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (_, enabled) = stack.call("GET", "/api/apikeys?enabled=true", None);
    assert_eq!(enabled.as_array().unwrap().len(), 1);
    assert_eq!(enabled[0]["clientId"], "k1");
    let (_, page2) = stack.call("GET", "/api/apikeys?page=2&page_size=1", None);
    assert_eq!(page2[0]["clientId"], "k2");

    // Deletes: the key, then the route.
    assert_eq!(stack.call("DELETE", "/api/apikeys/k1", None).0, 200);
    until_all(data, "x", "/moved", Some(("k1", "second-secret")), 401);
    assert_eq!(stack.call("DELETE", "/api/routes/r1", None).0, 200);
    until_all(data, "x", "/moved", None, 404);
    assert_eq!(stack.call("GET", "/api/routes/r1", None).0, 404);
}

#[test]
fn a_restart_keeps_everything() {
    let dir = TempDir::new("admin-restart");
    let mut stack = start(dir.path(), 1);
    stack.call("POST", "/api/backends", Some(&mock_backend()));
    stack.call("POST", "/api/routes", Some(&keyed_route("r", "/r")));
    stack.call(
        "POST",
        "/api/apikeys",
        Some(&key("k", "restart-secret", "r")),
    );
    stack.call("PATCH", "/api/apikeys/k", Some(&json!({"dailyQuota": 77})));
    stack.call("POST", "/api/apikeys", Some(&key("gone", "x-secret", "r")));
    stack.call("DELETE", "/api/apikeys/gone", None);
    let api = json!({"id": "shop", "name": "shop",
        "backends": [{"id": "b", "backend": {"mock": {"body": "shop"}}}],
        "routes": [{"id": "shop-r", "frontend": {"domains": ["*/shop"]}, "backend": "b"}]});
    assert_eq!(stack.call("POST", "/api/apis", Some(&api)).0, 201);
    let (s, c) = stack.call(
        "PATCH",
        "/api/apis/shop",
        Some(&json!({"state": "published"})),
    );
    assert_eq!(s, 200, "{c}");
    let (s, c) = stack.call(
        "POST",
        "/api/apis/shop/consumers",
        Some(&json!({"id": "gold", "kind": "apikey"})),
    );
    assert_eq!(s, 201, "{c}");
    let (s, sub) = stack.call(
        "POST",
        "/api/apis/shop/subscriptions",
        Some(&json!({"id": "s1", "consumer_ref": "gold"})),
    );
    assert_eq!(s, 201, "{sub}");
    let issued_id = sub["credentials"]["clientId"].as_str().unwrap().to_owned();
    let issued_secret = sub["credentials"]["clientSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let before: Vec<Value> = ["apis", "routes", "backends", "apikeys"]
        .iter()
        .map(|c| stack.call("GET", &format!("/api/{c}"), None).1)
        .collect();
    stack.stop();

    let stack = start(dir.path(), 1);
    let after: Vec<Value> = ["apis", "routes", "backends", "apikeys"]
        .iter()
        .map(|c| stack.call("GET", &format!("/api/{c}"), None).1)
        .collect();
    assert_eq!(before, after);
    let k = after[3]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["clientId"] == "k")
        .unwrap();
    assert_eq!(k["dailyQuota"], 77);
    until_all(stack.data(), "x", "/r", Some(("k", "restart-secret")), 200);
    until_all(
        stack.data(),
        "x",
        "/shop",
        Some((&issued_id, &issued_secret)),
        200,
    );
    until_all(stack.data(), "x", "/shop", None, 401);
    // Versions go on from where they were.
    let (_, k) = stack.call("PATCH", "/api/apikeys/k", Some(&json!({"dailyQuota": 78})));
    assert_eq!(k["_version"], 3);
}

#[test]
fn secrets_are_sealed_in_the_log_and_redacted_in_events() {
    let dir = TempDir::new("admin-seal");
    let stack = start(dir.path(), 1);
    stack.call("POST", "/api/backends", Some(&mock_backend()));
    stack.call("POST", "/api/routes", Some(&keyed_route("r", "/r")));
    let secret = "Very-Secret-Value-7f3a9c";
    let mut k = key("k", secret, "r");
    k["rotation"] = json!({"enabled": false, "nextSecret": "Next-Secret-Value-41b2"});
    assert_eq!(stack.call("POST", "/api/apikeys", Some(&k)).0, 201);
    let (status, events) = stack.call("GET", "/api/events", None);
    assert_eq!(status, 200);
    let text = events.to_string();
    assert!(
        !text.contains(secret) && !text.contains("Next-Secret-Value"),
        "{text}"
    );
    let created = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "apikey")
        .unwrap();
    assert_eq!(created["entity"]["clientSecret"], "***");
    assert_eq!(created["entity"]["rotation"]["nextSecret"], "***");
    assert_eq!(created["action"], "created");
    assert_eq!(created["actor"], "admin");
    assert_eq!(created["version"], 1);
    // `after` pages through the log.
    let seq = created["seq"].as_u64().unwrap();
    let (_, later) = stack.call("GET", &format!("/api/events?after={seq}"), None);
    assert!(later["events"].as_array().unwrap().is_empty());
    // Not in any file under the data dir (journal, snapshot, cluster key).
    let mut bytes = Vec::new();
    collect(dir.path(), &mut bytes);
    let all = String::from_utf8_lossy(&bytes);
    assert!(
        all.contains("sealed:v1:"),
        "the journal holds the sealed secret"
    );
    assert!(!all.contains(secret) && !all.contains("Next-Secret-Value"));
    // The admin API itself (authenticated) shows the secret, as Otoroshi's does.
    let (_, got) = stack.call("GET", "/api/apikeys/k", None);
    assert_eq!(got["clientSecret"], secret);
}

fn collect(dir: &std::path::Path, out: &mut Vec<u8>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
}

#[test]
fn bad_input_is_refused_with_every_path_and_nothing_applied() {
    let dir = TempDir::new("admin-bad");
    let stack = start(dir.path(), 1);
    let addr = stack.admin_addr();
    // 401: no token, wrong token, wrong scheme.
    assert_eq!(http(addr, "GET", "/api/apikeys", &[], None).0, 401);
    let wrong = "Authorization: Bearer admin-token-for-testz".to_owned();
    assert_eq!(http(addr, "GET", "/api/apikeys", &[wrong], None).0, 401);
    let basic = format!("Authorization: Basic {TOKEN}");
    assert_eq!(http(addr, "GET", "/api/apikeys", &[basic], None).0, 401);
    assert_eq!(http(addr, "GET", "/metrics", &[], None).0, 401);
    // Health and the OpenAPI document need no token.
    assert_eq!(http(addr, "GET", "/health", &[], None).0, 200);
    let (s, _, doc) = http(addr, "GET", "/openapi.json", &[], None);
    assert_eq!(s, 200);
    assert!(doc["paths"]["/api/{collection}/{id}"]["patch"].is_object());

    // 400: not JSON.
    let (s, body) = raw_post(addr, "/api/apikeys", b"{not json");
    assert_eq!(s, 400, "{body}");
    // 400: every bad field with its path.
    let (s, body) = stack.call(
        "POST",
        "/api/apikeys",
        Some(&json!({"clientId": "k:1", "clientSecret": "", "dailyQuota": -1})),
    );
    assert_eq!(s, 400, "{body}");
    let (s, body) = stack.call(
        "POST",
        "/api/apikeys",
        Some(
            &json!({"clientId": "k:1", "clientSecret": "", "dailyQuota": 5,
                     "rotation": {"enabled": true, "rotationEvery": 0}, "bogus": 1}),
        ),
    );
    assert_eq!(s, 400);
    let paths: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for want in [
        "bogus",
        "clientId",
        "clientSecret",
        "rotation.rotationEvery",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    let (s, body) = stack.call(
        "POST",
        "/api/routes",
        Some(&json!({"id": "r", "frontend": {"domains": ["http://x:80"]},
                     "backend": {"targets": [{"hostname": "h", "port": 0}]}})),
    );
    assert_eq!(s, 400);
    let text = body.to_string();
    assert!(
        text.contains("frontend.domains[0]") && text.contains("backend.targets[0].port"),
        "{text}"
    );
    // A reference to a backend that does not exist: refused, nothing applied.
    let (s, body) = stack.call("POST", "/api/routes", Some(&keyed_route("r", "/r")));
    assert_eq!(s, 400, "{body}");
    assert!(body.to_string().contains("backend_ref"), "{body}");
    assert_eq!(stack.call("GET", "/api/routes/r", None).0, 404);
    let (_, events) = stack.call("GET", "/api/events", None);
    assert!(events["events"].as_array().unwrap().is_empty(), "{events}");

    // 404: unknown entity, unknown collection.
    assert_eq!(stack.call("GET", "/api/apikeys/nope", None).0, 404);
    assert_eq!(
        stack.call("PATCH", "/api/apikeys/nope", Some(&json!({}))).0,
        404
    );
    assert_eq!(stack.call("DELETE", "/api/routes/nope", None).0, 404);
    assert_eq!(stack.call("GET", "/api/widgets", None).0, 404);
    assert_eq!(stack.call("GET", "/api/apikeys/nope/quotas", None).0, 404);

    // 409: version conflicts (If-Match and `_version`/`version`), duplicates, references.
    stack.call("POST", "/api/backends", Some(&mock_backend()));
    stack.call("POST", "/api/routes", Some(&keyed_route("r", "/r")));
    stack.call("POST", "/api/apikeys", Some(&key("k", "secret-k", "r")));
    let (s, _, _) = http(
        addr,
        "PATCH",
        "/api/apikeys/k",
        &[auth(), "If-Match: \"7\"".to_owned()],
        Some(&json!({"dailyQuota": 1})),
    );
    assert_eq!(s, 409);
    let (s, body) = stack.call(
        "PATCH",
        "/api/apikeys/k",
        Some(&json!({"dailyQuota": 1, "version": 9})),
    );
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["version"], 1);
    let (s, _, _) = http(
        addr,
        "PATCH",
        "/api/apikeys/k",
        &[auth(), "If-Match: \"1\"".to_owned()],
        Some(&json!({"dailyQuota": 1, "_version": 1})),
    );
    assert_eq!(s, 200);
    assert_eq!(
        stack
            .call("POST", "/api/apikeys", Some(&key("k", "x-secret", "r")))
            .0,
        409
    );
    assert_eq!(stack.call("DELETE", "/api/backends/mock", None).0, 409);
    // The id in the body cannot differ from the path's.
    let (s, body) = stack.call(
        "PUT",
        "/api/apikeys/k",
        Some(&key("other", "x-secret", "r")),
    );
    assert_eq!(s, 400);
    assert_eq!(body["problems"][0]["path"], "clientId");
    // 405 on a method the endpoint does not have.
    assert_eq!(stack.call("DELETE", "/api/apikeys", None).0, 405);
}

#[test]
fn otoroshi_exports_import_through_the_api() {
    let dir = TempDir::new("admin-import");
    let stack = start(dir.path(), 1);
    for name in ["otoroshi-export-mtls.json", "otoroshi-export-tunnel.json"] {
        let bytes = std::fs::read(format!(
            "{}/../../fixtures/otoroshi/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let (s, report) = raw_post(stack.admin_addr(), "/api/import", &bytes);
        assert_eq!(s, 200, "{name}: {report}");
        assert_eq!(report["dialect"], "otoroshi");
        let skipped = report["skipped"].as_array().unwrap();
        assert!(!skipped.is_empty(), "{name}: nothing skipped?");
        assert!(
            skipped
                .iter()
                .all(|s| !s["reason"].as_str().unwrap().is_empty())
        );
        let imported = &report["imported"];
        let keys = imported["apiKeys"].as_array().unwrap();
        let routes = imported["routes"].as_array().unwrap();
        assert!(!keys.is_empty() || !routes.is_empty(), "{name}: {report}");
        for k in keys {
            let (s, _) = stack.call(
                "GET",
                &format!("/api/apikeys/{}", k.as_str().unwrap()),
                None,
            );
            assert_eq!(s, 200);
        }
        for r in routes {
            let (s, _) = stack.call("GET", &format!("/api/routes/{}", r.as_str().unwrap()), None);
            assert_eq!(s, 200);
        }
        // Importing the same document again changes nothing.
        let (_, again) = raw_post(stack.admin_addr(), "/api/import", &bytes);
        assert_eq!(again["events"], 0, "{again}");
    }
    let (_, events) = stack.call("GET", "/api/events", None);
    let events = events["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .all(|e| e["action"] == "imported" && e["actor"] == "import")
    );
    // A strict Tollgate file with a problem is refused whole.
    let bad = json!({"routes": [{"id": "x", "frontend": {"domains": ["a.test"]},
                                  "backend": {"mock": {}}, "nope": 1}]});
    let (s, body) = raw_post(
        stack.admin_addr(),
        "/api/import",
        bad.to_string().as_bytes(),
    );
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["problems"][0]["path"], "routes[0].nope");
}

#[test]
fn rotation_with_injected_time() {
    let dir = TempDir::new("admin-rotation");
    let t0 = gateway::entitylog::now_ms();
    let clock = Arc::new(AtomicI64::new(t0));
    let stack = start_at(dir.path(), 2, &clock);
    stack.call("POST", "/api/backends", Some(&mock_backend()));
    stack.call("POST", "/api/routes", Some(&keyed_route("r", "/r")));
    let mut k = key("k", "first-secret", "r");
    k["rotation"] = json!({"enabled": true, "rotationEvery": 10, "gracePeriod": 2});
    assert_eq!(stack.call("POST", "/api/apikeys", Some(&k)).0, 201);
    let data = stack.data();
    let admin = stack.admin();
    let hour = 3_600_000;
    // Before the grace period: nothing happens.
    clock.store(t0 + 7 * hour, Ordering::SeqCst);
    admin.check_rotations();
    let (_, got) = stack.call("GET", "/api/apikeys/k", None);
    assert!(got["rotation"]["nextSecret"].is_null());
    // The grace period starts: a next secret is published; both work.
    clock.store(t0 + 8 * hour, Ordering::SeqCst);
    admin.check_rotations();
    let (_, got) = stack.call("GET", "/api/apikeys/k", None);
    let next = got["rotation"]["nextSecret"].as_str().unwrap().to_owned();
    assert_eq!(next.len(), 64);
    until_all(data, "x", "/r", Some(("k", &next)), 200);
    until_all(data, "x", "/r", Some(("k", "first-secret")), 200);
    // The switch: the next secret is the secret; the old one still works for the post-rotation
    // grace (60 s here), then not.
    clock.store(t0 + 10 * hour, Ordering::SeqCst);
    admin.check_rotations();
    let (_, got) = stack.call("GET", "/api/apikeys/k", None);
    assert_eq!(got["clientSecret"], next.as_str());
    assert!(got["rotation"]["nextSecret"].is_null());
    until_all(data, "x", "/r", Some(("k", &next)), 200);
    until_all(data, "x", "/r", Some(("k", "first-secret")), 200);
    clock.store(t0 + 10 * hour + 60_000, Ordering::SeqCst);
    admin.check_rotations();
    until_all(data, "x", "/r", Some(("k", "first-secret")), 401);
    until_all(data, "x", "/r", Some(("k", &next)), 200);
    // Every step is an entity event; the rotation is `rotated`, by the rotation actor.
    let (_, events) = stack.call("GET", "/api/events", None);
    let actions: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "apikey")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("created", "admin"),
        ("updated", "rotation"),
        ("rotated", "rotation"),
        ("updated", "rotation"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(actions, want);
    assert!(!events.to_string().contains(&next));
}

#[test]
fn quotas_call_examples_events_and_metrics() {
    let dir = TempDir::new("admin-quotas");
    let stack = start(dir.path(), 2);
    stack.call("POST", "/api/backends", Some(&mock_backend()));
    stack.call("POST", "/api/routes", Some(&keyed_route("r", "/r")));
    let mut k = key("k", "quota-secret", "r");
    k["dailyQuota"] = json!(100);
    k["monthlyQuota"] = json!(1000);
    k["throttlingQuota"] = json!(50);
    stack.call("POST", "/api/apikeys", Some(&k));
    until_all(stack.data(), "x", "/r", Some(("k", "quota-secret")), 200);
    // The calls made (until_all's 16, all answered 200), as the cores report them (every tick):
    // the units they hold unused in leases are not counted.
    let quotas = || stack.call("GET", "/api/apikeys/k/quotas", None).1;
    assert!(
        wait_until(Duration::from_secs(2), || quotas()["currentCallsPerDay"]
            == 16),
        "{}",
        quotas()
    );
    let (s, q) = stack.call("GET", "/api/apikeys/k/quotas", None);
    assert_eq!(s, 200);
    assert_eq!(q["authorizedCallsPerDay"], 100);
    assert_eq!(q["authorizedCallsPerMonth"], 1000);
    assert_eq!(q["authorizedCallsPerWindow"], 50);
    assert_eq!(q["remainingCallsPerDay"], 100 - 16, "{q}");
    assert_eq!(q["currentCallsPerMonth"], 16, "{q}");
    assert_eq!(q["remainingCallsPerMonth"], 1000 - 16, "{q}");
    for field in [
        "throttlingCallsPerWindow",
        "remainingCallsPerWindow",
        "remainingCallsPerMonth",
    ] {
        assert!(q[field].is_u64(), "{field}: {q}");
    }
    let (s, q) = stack.call("DELETE", "/api/apikeys/k/quotas", None);
    assert_eq!(s, 200);
    assert_eq!(q["currentCallsPerDay"], 0);
    assert_eq!(q["remainingCallsPerDay"], 100);
    let (_, events) = stack.call("GET", "/api/events", None);
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "quotas_reset")
    );

    let (s, ex) = stack.call("GET", "/api/apikeys/k/call-examples", None);
    assert_eq!(s, 200);
    let curl = ex["curl"].as_str().unwrap();
    assert!(
        curl.contains("-H 'Otoroshi-Client-Id: k'")
            && curl.contains("Otoroshi-Client-Secret: quota-secret")
    );
    assert!(
        curl.contains(&format!("http://{}/r", stack.data())),
        "{curl}"
    );
    // base64("k:quota-secret")
    assert_eq!(
        ex["basicAuthHeader"],
        "Authorization: Basic azpxdW90YS1zZWNyZXQ="
    );
    assert!(
        ex["curlWithBasicAuth"]
            .as_str()
            .unwrap()
            .contains("Authorization: Basic azpxdW90YS1zZWNyZXQ=")
    );
    // Every example works as printed, against this node.
    let kinds: Vec<&str> = ex["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["headers", "basic", "bearer", "jwt"]);
    for example in ex["examples"].as_array().unwrap() {
        let curl = example["curl"].as_str().unwrap();
        let out = common::run(
            {
                let mut cmd = std::process::Command::new("sh");
                cmd.arg("-c")
                    .arg(format!("{curl} -s -o /dev/null -w '%{{http_code}}'"));
                cmd
            },
            Duration::from_secs(20),
        );
        assert_eq!(out.stdout_text(), "200", "{}: {curl}", example["kind"]);
    }

    let (s, _, metrics) = http(stack.admin_addr(), "GET", "/metrics", &[auth()], None);
    assert_eq!(s, 200);
    let m = metrics.as_str().unwrap();
    for want in [
        "tollgate_snapshot_generation ",
        "tollgate_driver_info{driver=",
        "tollgate_entities{kind=\"apikey\"} 1",
        "tollgate_entity_events_written_total ",
        "tollgate_admin_requests_total{path=\"/api/apikeys\",status=\"201\"} 1",
        "tollgate_requests_total{core=\"0\"}",
        "tollgate_requests_total{core=\"1\"}",
        "tollgate_responses_total{class=\"2xx\"}",
        "tollgate_quota_rejections_total ",
        "tollgate_request_duration_seconds_bucket{le=\"+Inf\"}",
        "tollgate_usage_batches_total ",
        "tollgate_usage_lost_total 0",
    ] {
        assert!(m.contains(want), "{want} not in\n{m}");
    }
    // The cores publish once per tick: the calls above show within a tick or two.
    let served = |m: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("tollgate_responses_total{class=\"2xx\"} "))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(wait_until(Duration::from_secs(1), || {
        let (_, _, m) = http(stack.admin_addr(), "GET", "/metrics", &[auth()], None);
        served(m.as_str().unwrap()) >= 16
    }));
    // Per route, with bounded labels (the configured routes).
    let (_, _, m) = http(stack.admin_addr(), "GET", "/metrics", &[auth()], None);
    let m = m.as_str().unwrap();
    let route_lines: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("tollgate_route_requests_total{"))
        .collect();
    assert!(
        route_lines
            .iter()
            .any(|l| l.contains("route=\"r\"") && l.contains("class=\"2xx\"")),
        "{m}"
    );
    assert!(
        m.contains("tollgate_route_request_duration_seconds_total{route=\"r\""),
        "{m}"
    );
}

#[test]
fn admin_config_fields_are_checked_by_name() {
    let dir = TempDir::new("admin-config");
    std::fs::write(dir.path().join("short.key"), "abcd").unwrap();
    std::fs::write(dir.path().join("good.key"), "ab".repeat(32)).unwrap();
    let base = "[listeners.http]\naddr = \"127.0.0.1:0\"\n[admin]\ntoken = \"0123456789\"\n";
    let bad = format!(
        "{base}cluster_key_file = \"short.key\"\nsnapshot_every = 0\n\
         previous_secret_grace_s = 999999999999\n"
    );
    let problems = gateway::config::parse(&bad, dir.path()).unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "admin.cluster_key_file",
            "admin.snapshot_every",
            "admin.previous_secret_grace_s"
        ],
        "{problems}"
    );
    let missing = format!("{base}cluster_key_file = \"absent.key\"\n");
    let problems = gateway::config::parse(&missing, dir.path()).unwrap_err();
    assert_eq!(problems.0[0].path, "admin.cluster_key_file");
    let good = format!("{base}cluster_key_file = \"good.key\"\nprevious_secret_grace_s = 0\n");
    let cfg = gateway::config::parse(&good, dir.path()).unwrap();
    assert_eq!(cfg.cluster_key_file, Some(dir.path().join("good.key")));
    assert_eq!(cfg.previous_secret_grace, Duration::ZERO);
    assert_eq!(cfg.snapshot_every, 1000);
}

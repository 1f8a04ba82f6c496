//! API management (DESIGN §8) over real sockets, in-process node and admin API: consumers that
//! enforce, subscriptions that issue keys, the lifecycle of APIs, consumers and subscriptions,
//! strict input, and flows that name plugins Tollgate lacks.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::stack::{Stack, StackOptions};
use common::{TempDir, wait_until};
use serde_json::{Value, json};

const TOKEN: &str = "apim-admin-token";

/// A node with its admin API on a data dir.
fn start(dir: &std::path::Path, cores: usize) -> Stack {
    Stack::start(dir, StackOptions::new("apim", cores, TOKEN))
}

/// A data-plane GET on a fresh connection: status and JSON body (error code) or text.
fn get(addr: SocketAddr, path: &str, headers: &[String]) -> common::Response {
    let mut c = common::Client::connect(addr);
    let extra: Vec<&str> = headers.iter().map(String::as_str).collect();
    c.send(&common::get_request("shop.local", path, &extra));
    c.response()
}

fn key_headers(creds: &Value) -> Vec<String> {
    vec![
        format!(
            "Otoroshi-Client-Id: {}",
            creds["clientId"].as_str().unwrap()
        ),
        format!(
            "Otoroshi-Client-Secret: {}",
            creds["clientSecret"].as_str().unwrap()
        ),
    ]
}

/// Waits until 8 fresh connections in a row answer `status` (and `code`, if given).
fn until(addr: SocketAddr, headers: &[String], status: u16, code: Option<&str>) {
    let ok = wait_until(Duration::from_secs(5), || {
        (0..8).all(|_| {
            let r = get(addr, "/things", headers);
            r.status == status
                && code.is_none_or(|c| r.json().get("error").and_then(Value::as_str) == Some(c))
        })
    });
    let last = get(addr, "/things", headers);
    assert!(
        ok,
        "did not answer {status} {code:?}; last: {} {}",
        last.status,
        last.text()
    );
}

/// The first answer of the published API (a 404 means the snapshot is not there yet).
fn served(addr: SocketAddr, headers: &[String]) -> common::Response {
    for _ in 0..500 {
        let r = get(addr, "/things", headers);
        if r.status != 404 {
            return r;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the API was never served");
}

fn shop_api() -> Value {
    json!({"id": "shop", "name": "shop",
        "backends": [{"id": "b", "backend": {"mock": {"body": "things"}}}],
        "routes": [{"id": "shop-things", "frontend": {"domains": ["shop.local/things"]},
                    "backend": "b"}]})
}

/// An API in staging, its apikey consumer `gold`, then published.
fn published_shop(stack: &Stack, consumer: Value) {
    assert_eq!(stack.call("POST", "/api/apis", Some(&shop_api())).0, 201);
    stack.ok("POST", "/api/apis/shop/consumers", consumer);
    stack.ok("PATCH", "/api/apis/shop", json!({"state": "published"}));
}

#[test]
fn an_apikey_consumer_enforces_and_its_subscriptions_issue_keys() {
    let dir = TempDir::new("apim-apikey");
    let stack = start(dir.path(), 2);
    let data = stack.data();
    published_shop(
        &stack,
        json!({"id": "gold", "kind": "apikey", "dailyQuota": 1000,
               "config": {"template": {"tags": ["paid"], "metadata": {"tier": "gold"}}}}),
    );
    // Protected: no key, no entry.
    until(data, &[], 401, Some("unauthorized"));

    let sub = stack.ok(
        "POST",
        "/api/apis/shop/subscriptions",
        json!({"id": "acme", "consumer_ref": "gold"}),
    );
    let creds = sub["credentials"].clone();
    let client_id = creds["clientId"].as_str().unwrap().to_owned();
    assert_eq!(sub["apikeys"], json!([client_id]), "{sub}");
    assert_eq!(creds["clientSecret"].as_str().unwrap().len(), 64);
    // Answered once: never again.
    let (_, again) = stack.call("GET", "/api/apis/shop/subscriptions/acme", None);
    assert!(again.get("credentials").is_none(), "{again}");
    let (_, key) = stack.call("GET", &format!("/api/apikeys/{client_id}"), None);
    assert_eq!(key["clientSecret"], "***", "{key}");
    assert_eq!(key["metadata"]["subscription"], "acme");
    assert_eq!(key["metadata"]["consumer"], "gold");
    assert_eq!(key["metadata"]["tier"], "gold");
    assert_eq!(key["authorizedEntities"], json!(["api_shop"]));
    assert_eq!(key["dailyQuota"], 1000);
    assert_eq!(key["tags"], json!(["paid"]));
    // The issued key is the subscription's: managed through it.
    let (status, body) = stack.call(
        "PATCH",
        &format!("/api/apikeys/{client_id}"),
        Some(&json!({"dailyQuota": 1000})),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        stack
            .call("DELETE", &format!("/api/apikeys/{client_id}"), None)
            .0,
        409
    );

    let headers = key_headers(&creds);
    until(data, &headers, 200, None);
    let r = get(data, "/things", &headers);
    assert!(r.header("Otoroshi-Daily-Calls-Remaining").is_some());
    // Every extraction of DESIGN §5 works: Basic too.
    let basic = base64_basic(&client_id, creds["clientSecret"].as_str().unwrap());
    assert_eq!(get(data, "/things", &[basic]).status, 200);
    // A wrong secret is the key's refusal.
    let wrong = vec![
        format!("Otoroshi-Client-Id: {client_id}"),
        "Otoroshi-Client-Secret: nope".to_owned(),
    ];
    get(data, "/things", &wrong).assert_error(401, "bad_api_key");

    // The consumer's quota is the subscription's, counted exactly: a consumer with 3 a day, a
    // fresh subscription: its first 3 calls pass, then 429 (leases are single calls this small).
    stack.ok(
        "POST",
        "/api/apis/shop/consumers",
        json!({"id": "bronze", "kind": "apikey", "dailyQuota": 3}),
    );
    let small = stack.ok(
        "POST",
        "/api/apis/shop/subscriptions",
        json!({"id": "tiny", "consumer_ref": "bronze"}),
    );
    let small = key_headers(&small["credentials"]);
    let mut first = get(data, "/things", &small);
    for _ in 0..500 {
        if first.status != 401 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        first = get(data, "/things", &small);
    }
    assert_eq!(first.status, 200);
    let admitted = 1
        + (0..5)
            .filter(|_| get(data, "/things", &small).status == 200)
            .count();
    assert_eq!(admitted, 3);
    get(data, "/things", &small).assert_error(429, "too_many_requests");
    // Raising the consumer's quota raises the subscription's.
    stack.ok(
        "PATCH",
        "/api/apis/shop/consumers/bronze",
        json!({"dailyQuota": 1000}),
    );
    until(data, &small, 200, None);

    // Rotation: new credentials answered once; the old secret stops at once.
    let rotated = stack.ok(
        "POST",
        "/api/apis/shop/subscriptions/acme/rotate",
        json!({}),
    );
    let new_creds = rotated["credentials"].clone();
    assert_eq!(new_creds["clientId"], client_id.as_str());
    assert_ne!(new_creds["clientSecret"], creds["clientSecret"]);
    until(data, &headers, 401, Some("bad_api_key"));
    let headers = key_headers(&new_creds);
    until(data, &headers, 200, None);

    // Lifecycle of the subscription: disabled, enabled again, closed for good.
    stack.ok(
        "PATCH",
        "/api/apis/shop/subscriptions/acme",
        json!({"status": "disabled"}),
    );
    until(data, &headers, 401, Some("subscription_disabled"));
    stack.ok(
        "PATCH",
        "/api/apis/shop/subscriptions/acme",
        json!({"status": "enabled"}),
    );
    until(data, &headers, 200, None);
    stack.ok(
        "PATCH",
        "/api/apis/shop/subscriptions/acme",
        json!({"status": "closed"}),
    );
    until(data, &headers, 401, Some("subscription_closed"));
    let (_, key) = stack.call("GET", &format!("/api/apikeys/{client_id}"), None);
    assert_eq!(
        key["enabled"], false,
        "a closed subscription's key is revoked"
    );
    let (status, body) = stack.call(
        "PATCH",
        "/api/apis/shop/subscriptions/acme",
        Some(&json!({"status": "enabled"})),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        stack
            .call(
                "POST",
                "/api/apis/shop/subscriptions/acme/rotate",
                Some(&json!({}))
            )
            .0,
        409
    );
    // Deleting it deletes the key.
    assert_eq!(
        stack
            .call("DELETE", "/api/apis/shop/subscriptions/acme", None)
            .0,
        200
    );
    assert_eq!(
        stack
            .call("GET", &format!("/api/apikeys/{client_id}"), None)
            .0,
        404
    );
    until(data, &headers, 401, Some("bad_api_key"));
}

fn base64_basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

#[test]
fn a_keyless_consumer_admits_anonymous_calls_and_counts_them() {
    let dir = TempDir::new("apim-keyless");
    let stack = start(dir.path(), 2);
    let data = stack.data();
    published_shop(
        &stack,
        json!({"id": "free", "kind": "keyless", "dailyQuota": 3}),
    );
    // Three a day for every anonymous caller together, counted exactly.
    let first = served(data, &[]);
    assert_eq!(first.status, 200);
    let admitted = 1
        + (0..5)
            .filter(|_| get(data, "/things", &[]).status == 200)
            .count();
    assert_eq!(admitted, 3);
    get(data, "/things", &[]).assert_error(429, "too_many_requests");
    stack.ok(
        "PATCH",
        "/api/apis/shop/consumers/free",
        json!({"dailyQuota": null}),
    );
    until(data, &[], 200, None);

    // Beside an apikey consumer: anonymous calls still pass as the keyless consumer; a
    // credential must be good.
    stack.ok(
        "POST",
        "/api/apis/shop/consumers",
        json!({"id": "paid", "kind": "apikey"}),
    );
    until(data, &[], 200, None);
    let wrong = vec![
        "Otoroshi-Client-Id: who".to_owned(),
        "Otoroshi-Client-Secret: nope".to_owned(),
    ];
    until(data, &wrong, 401, Some("bad_api_key"));
    // The keyless consumer staged: anonymous calls are refused.
    stack.ok(
        "PATCH",
        "/api/apis/shop/consumers/free",
        json!({"status": "staging"}),
    );
    until(data, &[], 401, Some("unauthorized"));
    // No consumer serves at all: nobody is admitted (closing the last consumer never opens an
    // API).
    stack.ok(
        "PATCH",
        "/api/apis/shop/consumers/paid",
        json!({"status": "staging"}),
    );
    until(data, &[], 401, Some("unauthorized"));
}

#[test]
fn lifecycles_of_apis_consumers_and_subscriptions() {
    let dir = TempDir::new("apim-lifecycle");
    let stack = start(dir.path(), 1);
    let data = stack.data();
    let mut api = shop_api();
    api["state"] = json!("published");
    let (status, body) = stack.call("POST", "/api/apis", Some(&api));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "invalid_state_transition");
    assert_eq!(stack.call("POST", "/api/apis", Some(&shop_api())).0, 201);
    // Staging serves nothing.
    until(data, &[], 404, None);
    for (from_ok, to, want) in [
        (true, "deprecated", 409),
        (true, "closed", 409),
        (true, "published", 200),
        (true, "staging", 409),
        (true, "deprecated", 200),
        (true, "published", 200),
        (true, "deprecated", 200),
        (true, "closed", 200),
        (true, "published", 409),
        (true, "deprecated", 409),
        (true, "staging", 200),
    ] {
        let _ = from_ok;
        let (status, body) = stack.call("PATCH", "/api/apis/shop", Some(&json!({"state": to})));
        assert_eq!(status, want, "→ {to}: {body}");
    }
    stack.ok("PATCH", "/api/apis/shop", json!({"state": "published"}));
    // No consumer: the API is open (its routes' own plugins decide).
    until(data, &[], 200, None);

    stack.ok(
        "POST",
        "/api/apis/shop/consumers",
        json!({"id": "gold", "kind": "apikey"}),
    );
    until(data, &[], 401, Some("unauthorized"));
    let sub = stack.ok(
        "POST",
        "/api/apis/shop/subscriptions",
        json!({"id": "s1", "consumer_ref": "gold"}),
    );
    let headers = key_headers(&sub["credentials"]);
    until(data, &headers, 200, None);
    // A pending subscription is refused with its own code.
    let pending = stack.ok(
        "POST",
        "/api/apis/shop/subscriptions",
        json!({"id": "s2", "consumer_ref": "gold", "status": "pending"}),
    );
    until(
        data,
        &key_headers(&pending["credentials"]),
        401,
        Some("subscription_pending"),
    );
    // Deprecated: no new subscription, the existing ones keep calling.
    stack.ok(
        "PATCH",
        "/api/apis/shop/consumers/gold",
        json!({"status": "deprecated"}),
    );
    let (status, body) = stack.call(
        "POST",
        "/api/apis/shop/subscriptions",
        Some(&json!({"id": "s3", "consumer_ref": "gold"})),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "consumer_not_subscribable");
    until(data, &headers, 200, None);
    // A deprecated API serves too.
    stack.ok("PATCH", "/api/apis/shop", json!({"state": "deprecated"}));
    until(data, &headers, 200, None);
    let (status, _) = stack.call(
        "POST",
        "/api/apis/shop/subscriptions",
        Some(&json!({"id": "s4", "consumer_ref": "gold"})),
    );
    assert_eq!(status, 409);
    stack.ok("PATCH", "/api/apis/shop", json!({"state": "published"}));
    // Closing the consumer closes its subscriptions: their keys stop.
    stack.ok(
        "PATCH",
        "/api/apis/shop/consumers/gold",
        json!({"status": "closed"}),
    );
    until(data, &headers, 401, Some("subscription_closed"));
    let (_, subs) = stack.call("GET", "/api/apis/shop/subscriptions", None);
    assert!(
        subs.as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "closed"),
        "{subs}"
    );
    let (status, _) = stack.call(
        "PATCH",
        "/api/apis/shop/consumers/gold",
        Some(&json!({"status": "published"})),
    );
    assert_eq!(status, 409);
    // The API closed: nothing serves.
    stack.ok("PATCH", "/api/apis/shop", json!({"state": "closed"}));
    until(data, &headers, 404, None);
}

#[test]
fn consumers_and_subscriptions_refuse_unknown_fields_and_bad_values() {
    let dir = TempDir::new("apim-strict");
    let stack = start(dir.path(), 1);
    assert_eq!(stack.call("POST", "/api/apis", Some(&shop_api())).0, 201);
    let problems = |body: Value, path: &str| -> Vec<String> {
        let (status, answer) = stack.call("POST", path, Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
        answer["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}: {}", p["path"].as_str().unwrap(), p["message"]))
            .collect()
    };
    let p = problems(
        json!({"id": "c", "bogus": 1, "daily_quota": 5}),
        "/api/apis/shop/consumers",
    );
    assert!(p.iter().any(|p| p.starts_with("bogus:")), "{p:?}");
    assert!(p.iter().any(|p| p.starts_with("daily_quota:")), "{p:?}");
    let p = problems(
        json!({"id": "c", "kind": "apikey", "dailyQuota": -1}),
        "/api/apis/shop/consumers",
    );
    assert!(p.iter().any(|p| p.starts_with("dailyQuota:")), "{p:?}");
    let p = problems(
        json!({"id": "c", "kind": "apikey", "config": {"template": {"readOnly": true, "bogus": 2}}}),
        "/api/apis/shop/consumers",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("config.template.bogus:"), "{p:?}");
    let p = problems(
        json!({"id": "c", "kind": "keyless", "config": {"template": {}}}),
        "/api/apis/shop/consumers",
    );
    assert!(p[0].starts_with("config:"), "{p:?}");
    let p = problems(
        json!({"id": "c", "kind": "jwt", "status": "published"}),
        "/api/apis/shop/consumers",
    );
    assert!(p[0].starts_with("config.verifier:"), "{p:?}");
    let p = problems(
        json!({"id": "c", "kind": "jwt", "config": {"verifier": {"alg": "none"}}}),
        "/api/apis/shop/consumers",
    );
    assert!(p[0].starts_with("config.verifier.alg:"), "{p:?}");
    stack.ok(
        "POST",
        "/api/apis/shop/consumers",
        json!({"id": "gold", "kind": "apikey"}),
    );
    let p = problems(
        json!({"id": "s", "consumer_ref": "gold", "status": "paused"}),
        "/api/apis/shop/subscriptions",
    );
    assert!(p[0].starts_with("status:"), "{p:?}");
    let p = problems(
        json!({"id": "s", "consumer_ref": "ghost", "extra": true}),
        "/api/apis/shop/subscriptions",
    );
    assert!(p.iter().any(|p| p.starts_with("extra:")), "{p:?}");
    assert!(p.iter().any(|p| p.starts_with("consumer_ref:")), "{p:?}");
    let (status, body) = stack.call(
        "POST",
        "/api/apis/shop/subscriptions",
        Some(&json!({"id": "s", "consumer_ref": "gold", "apikeys": ["mine"]})),
    );
    assert_eq!(status, 400, "{body}");
    // A flow naming a plugin Tollgate does not implement: refused with its path.
    let mut api = shop_api();
    api["id"] = json!("other");
    api["routes"][0]["id"] = json!("other-r");
    api["flows"] = json!([{"id": "f", "plugins": [
        {"plugin": "cp:otoroshi.next.plugins.OverrideHost"},
        {"plugin": "cp:otoroshi.next.plugins.Wasm"}]}]);
    api["routes"][0]["flow_ref"] = json!("f");
    let (status, body) = stack.call("POST", "/api/apis", Some(&api));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["problems"][0]["path"], "flows[0].plugins[1].plugin",
        "{body}"
    );
    assert!(
        body["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cp:otoroshi.next.plugins.Wasm")
    );
    let route = json!({"id": "r", "frontend": {"domains": ["x.local"]},
        "backend": {"mock": {"body": "x"}}, "plugins": [{"plugin": "NgJwtVerifier"}]});
    let (status, body) = stack.call("POST", "/api/routes", Some(&route));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["problems"][0]["path"], "plugins[0].plugin", "{body}");
}

/// A consumer's quotas are counted per subscription (the issued key) and, for a keyless
/// consumer, on its quota holder; both resume after a restart (from the usage journal).
#[test]
fn subscription_and_keyless_quotas_survive_a_restart() {
    let dir = TempDir::new("apim-restart");
    let stack = start(dir.path(), 2);
    let data = stack.data();
    published_shop(
        &stack,
        json!({"id": "bronze", "kind": "apikey", "dailyQuota": 2}),
    );
    stack.ok(
        "POST",
        "/api/apis/shop/consumers",
        json!({"id": "free", "kind": "keyless", "dailyQuota": 2}),
    );
    let a = stack.ok(
        "POST",
        "/api/apis/shop/subscriptions",
        json!({"id": "a", "consumer_ref": "bronze"}),
    );
    let b = stack.ok(
        "POST",
        "/api/apis/shop/subscriptions",
        json!({"id": "b", "consumer_ref": "bronze"}),
    );
    let (a, b) = (
        key_headers(&a["credentials"]),
        key_headers(&b["credentials"]),
    );
    // Every core takes the snapshot within a tick.
    std::thread::sleep(Duration::from_millis(300));
    // Each subscription has its own 2 calls; anonymous callers share the keyless 2.
    for headers in [&a, &b, &vec![]] {
        let first = served(data, headers);
        let mut admitted = usize::from(first.status == 200);
        for _ in 0..3 {
            admitted += usize::from(get(data, "/things", headers).status == 200);
        }
        assert_eq!(admitted, 2, "{headers:?}");
    }
    drop(stack);
    let stack = start(dir.path(), 2);
    let data = stack.data();
    for headers in [&a, &b, &vec![]] {
        let r = served(data, headers);
        r.assert_error(429, "too_many_requests");
    }
}

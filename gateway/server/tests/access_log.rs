//! The access log through the real binary: one JSON line per request with its fields (route,
//! key, upstream, trace id, refusal reason), never a secret; the sample share re-read on
//! SIGHUP; off by default.

mod common;

use std::time::Duration;

use common::{Binary, Reply, Upstream, binary_config, get_request, wait_until};
use gateway::runtime::IoMode;
use serde_json::{Value, json};

const SECRET: &str = "Access-Secret-0123456789";

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[allow(unsafe_code)]
fn sighup(pid: u32) {
    // SAFETY: kill(2) with plain integers, on our own child.
    let rc = unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap(), libc::SIGHUP) };
    assert_eq!(rc, 0);
}

#[test]
fn one_line_per_request_and_the_sample_changes_on_sighup() {
    let up = Upstream::start(Reply::Echo);
    let entities = json!({
        "routes": [
            {"id": "pub", "frontend": {"domains": ["pub.test"]},
             "backend": {"targets": [{"hostname": "127.0.0.1", "port": up.port()}]}},
            {"id": "keyed", "frontend": {"domains": ["keyed.test"]},
             "backend": {"targets": [{"hostname": "127.0.0.1", "port": up.port()}]},
             "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]}],
        "apiKeys": [{"clientId": "k1", "clientSecret": SECRET, "authorizedEntities": ["route_keyed"]}],
    });
    let config = binary_config("[access_log]\nenabled = true\npath = \"logs/access.log\"\n");
    let bin = Binary::start(&config, &entities, IoMode::Epoll);
    let path = bin.dir.path().join("logs/access.log");
    let send = |host: &str, target: &str, extra: &[&str]| {
        let mut c = bin.client();
        c.send(&get_request(host, target, extra));
        c.response().status
    };
    let secret_header = format!("Otoroshi-Client-Secret: {SECRET}");
    assert_eq!(
        send(
            "pub.test",
            "/a/../b",
            &["traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
        ),
        200
    );
    assert_eq!(
        send(
            "keyed.test",
            "/x",
            &["Otoroshi-Client-Id: k1", &secret_header]
        ),
        200
    );
    assert_eq!(
        send(
            "keyed.test",
            "/x",
            &["Otoroshi-Client-Id: k1", "Otoroshi-Client-Secret: wrong"]
        ),
        401
    );
    assert_eq!(send("nowhere.test", "/", &[]), 404);
    assert!(wait_until(Duration::from_secs(3), || lines(&path).len() == 4));
    let l = lines(&path);
    assert_eq!(l[0]["method"], "GET");
    assert_eq!(l[0]["host"], "pub.test");
    assert_eq!(l[0]["path"], "/b", "the canonical path");
    assert_eq!(l[0]["status"], 200);
    assert_eq!(l[0]["route"], "pub");
    assert_eq!(l[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(l[0]["upstream"], format!("127.0.0.1:{}", up.port()));
    assert!(l[0]["upstream_us"].as_u64().is_some() && l[0]["duration_us"].as_u64().is_some());
    assert!(l[0]["request_id"].as_str().unwrap().starts_with("e2e-0-"));
    assert!(l[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(l[1]["apikey"], "k1");
    assert!(l[1]["reason"].is_null());
    assert_eq!(l[2]["status"], 401);
    assert_eq!(
        l[2]["reason"], "bad_secret",
        "the distinction the client does not get"
    );
    assert!(l[2]["upstream"].is_null());
    assert_eq!(l[3]["reason"], "route_not_found");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(SECRET) && !text.contains("wrong"),
        "a credential in the log"
    );
    // SIGHUP with sample = 0: nothing more is logged; no restart needed for it.
    let config_path = bin.dir.path().join("tollgate.toml");
    std::fs::write(
        &config_path,
        config.replace("enabled = true", "enabled = true\nsample = 0.0"),
    )
    .unwrap();
    sighup(bin.pid());
    assert!(wait_until(Duration::from_secs(3), || bin
        .log()
        .contains("access log sample 0")));
    std::thread::sleep(Duration::from_millis(150));
    for _ in 0..5 {
        assert_eq!(send("pub.test", "/", &[]), 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&path).len(), 4);
    assert!(!bin.log().contains("[access_log]"), "{}", bin.log());
}

#[test]
fn off_by_default() {
    let entities = json!({
        "backends": [{"id": "m", "backend": {"mock": {"body": "ok"}}}],
        "routes": [{"id": "r", "frontend": {"domains": ["*"]}, "backend_ref": "m"}]});
    let bin = Binary::start(&binary_config(""), &entities, IoMode::Epoll);
    let mut c = bin.client();
    c.send(&get_request("a", "/", &[]));
    assert_eq!(c.response().status, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!bin.dir.path().join("data/access.log").exists());
}

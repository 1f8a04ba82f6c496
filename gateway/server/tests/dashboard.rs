//! The Grafana dashboard (ops/grafana/tollgate.json) against a running node: every metric it
//! queries exists on the node's `/metrics` (admin API, scraped without the token with
//! `[admin] metrics_public = true`) or on its ledger's `/metrics`, and the exposition follows
//! Prometheus conventions.
//!
//! The Kafka and cross-node totals panels need `[events] sink = "kafka"`: with a broker (always
//! in CI, `TOLLGATE_KAFKA`) the node runs with it and every metric is checked; without one the
//! test checks the others and prints a skip note for those.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::kafka::{broker, serial, unique};
use common::{Binary, get_request};
use gateway::runtime::IoMode;
use serde_json::{Value, json};

/// Every `tollgate_…` metric name in the dashboard's queries (panels and variables).
fn dashboard_metrics() -> BTreeSet<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ops/grafana/tollgate.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > 20, "only {} queries found", exprs.len());
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("tollgate_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// `GET path` without a token: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = conn.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (head[9..12].parse().unwrap_or(0), body.to_owned())
}

/// The address in the log line `… <key>=ADDR`.
fn logged_addr(log: &str, key: &str) -> SocketAddr {
    log.lines()
        .find_map(|l| {
            let at = l.find(&format!("{key}="))?;
            l[at + key.len() + 1..]
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {key}= in the log:\n{log}"))
}

/// The metric names (series names, labels stripped) of a Prometheus exposition, checking the
/// conventions on the way: every sample has HELP and TYPE, counters end in `_total`, histograms
/// have `_bucket` (with `le`), `_sum` and `_count`.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut types = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            types.insert(name.to_owned(), kind.to_owned());
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            }
            assert!(
                !name.ends_with("_ms") && !name.contains("_millis"),
                "{name}: use base units (seconds)"
            );
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(&name)
                .to_owned();
            assert!(types.contains_key(&family), "{name} has no # TYPE line");
            if name.ends_with("_bucket") {
                assert!(line.contains("le=\""), "{line}");
            }
            names.insert(name);
        }
    }
    for (name, kind) in &types {
        if kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                assert!(names.contains(&format!("{name}{s}")), "{name}{s} missing");
            }
        }
    }
    names
}

fn config(kafka: Option<(&str, &str)>) -> String {
    let mut text =
        "[node]\nid = \"dash\"\ncores = 1\n\n[listeners.http]\naddr = \"127.0.0.1:0\"\n\n\
         [admin]\naddr = \"127.0.0.1:0\"\ntoken = \"e2e-admin-token\"\nmetrics_public = true\n\n\
         [ledger]\naddr = \"127.0.0.1:0\"\n\n[seed]\nentities = \"entities.json\"\n\n"
            .to_owned();
    if let Some((brokers, id)) = kafka {
        text.push_str(&format!(
            "[events]\nsink = \"kafka\"\n\n[events.kafka]\nbrokers = \"{brokers}\"\n\
             usage_topic = \"tollgate.usage.{id}\"\nentities_topic = \"tollgate.entities.{id}\"\n\
             totals_topic = \"tollgate.totals.{id}\"\npartitions = 2\n"
        ));
    }
    text
}

#[test]
fn every_dashboard_metric_exists_on_a_running_node() {
    let _serial = serial();
    let wanted = dashboard_metrics();
    let brokers = broker();
    let id = unique("dashboard");
    let entities = json!({
        "backends": [{"id": "mock", "backend": {"mock": {"status": 200, "body": "ok"}}}],
        "routes": [{"id": "keyed", "frontend": {"domains": ["*/api"]}, "backend_ref": "mock",
                    "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]}],
        "apiKeys": [{"clientId": "dash", "clientSecret": "dash-secret-0123456789",
                     "authorizedEntities": ["route_keyed"], "dailyQuota": 2}]
    });
    let gw = Binary::start(
        &config(brokers.as_deref().map(|b| (b, id.as_str()))),
        &entities,
        IoMode::Epoll,
    );
    let log = gw.log();
    let admin = logged_addr(&log, "admin_addr");
    let ledger = logged_addr(&log, "ledger_addr");

    // Traffic of every kind: admitted, refused by the quota (2 a day), unknown route.
    let mut c = gw.client();
    for _ in 0..3 {
        c.send(&get_request(
            "a",
            "/api",
            &[
                "Otoroshi-Client-Id: dash",
                "Otoroshi-Client-Secret: dash-secret-0123456789",
            ],
        ));
        let _ = c.response();
    }
    c.send(&get_request("a", "/nowhere", &[]));
    let _ = c.response();

    // Metrics appear once the usage is flushed and the ledger has folded it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (exposed_names, text) = loop {
        let (status, node) = get(admin, "/metrics");
        assert_eq!(status, 200, "metrics_public: no token needed\n{node}");
        let (status, ledger_text) = get(ledger, "/metrics");
        assert_eq!(status, 200, "{ledger_text}");
        let text = format!("{node}{ledger_text}");
        let names = exposed(&text);
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !names.contains(*w))
            .filter(|w| brokers.is_some() || !needs_kafka(w))
            .collect();
        if missing.is_empty() {
            break (names, text);
        }
        assert!(
            Instant::now() < deadline,
            "dashboard metrics missing on a running node: {missing:?}\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    if brokers.is_none() {
        let skipped: Vec<&String> = wanted.iter().filter(|w| needs_kafka(w)).collect();
        eprintln!("SKIP (no Kafka broker): not checked: {skipped:?}");
    }
    assert!(exposed_names.contains("tollgate_build_info"), "{text}");
    assert!(
        text.contains("tollgate_quota_rejections_total 1"),
        "one call over the daily quota of 2\n{text}"
    );
    // An idle ledger that caught up has no event lag.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, ledger_text) = get(ledger, "/metrics");
        if ledger_text.contains("tollgate_ledger_event_lag_seconds 0.000") {
            break;
        }
        assert!(Instant::now() < deadline, "{ledger_text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Everything else still needs the token.
    assert_eq!(get(admin, "/api/apikeys").0, 401);
}

/// Metrics a node has only with `[events] sink = "kafka"`.
fn needs_kafka(name: &str) -> bool {
    name.starts_with("tollgate_kafka_") || name.starts_with("tollgate_totals_")
}

use std::path::Path;

use super::*;

const GOOD: &str = r#"
[node]
id = "node-a"
cores = 2
[listeners.http]
addr = "127.0.0.1:8080"
[admin]
addr = "127.0.0.1:9000"
token = "change-me-admin-token"
[quotas]
timezone = "Europe/Paris"
"#;

fn problems(text: &str) -> Vec<String> {
    parse(text, Path::new("/nonexistent"))
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn good_config_parses_with_defaults() {
    let c = parse(GOOD, Path::new("/etc/tollgate")).unwrap();
    assert_eq!(c.node_id, "node-a");
    assert_eq!(c.cores, 2);
    assert_eq!(c.data_dir, Path::new("/etc/tollgate/data"));
    assert_eq!(
        c.http,
        Some("127.0.0.1:8080".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(c.admin_token.expose(), "change-me-admin-token");
    assert_eq!(c.sink, Sink::Embedded);
    assert_eq!(c.ledger_mode, LedgerMode::Embedded);
    assert_eq!(
        c.ledger_addr,
        "127.0.0.1:9100".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.calendar.name(), "Europe/Paris");
    assert!(c.seed.is_none());
    assert!(
        !format!("{c:?}").contains("change-me-admin-token"),
        "token redacted in Debug"
    );
}

#[test]
fn unknown_keys_are_named() {
    let p = problems(&format!("{GOOD}\n[node2]\nx = 1\n"));
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("unknown field `node2`"), "{p:?}");
    let p = problems(&GOOD.replace("cores = 2", "cores = 2\ncpus = 3"));
    assert!(
        p[0].starts_with("node: unknown field `cpus`") || p[0].contains("cpus"),
        "{p:?}"
    );
}

#[test]
fn wrong_types_name_the_key() {
    let p = problems(&GOOD.replace("cores = 2", "cores = \"two\""));
    assert!(p[0].starts_with("node.cores: invalid type"), "{p:?}");
    let p = problems(&GOOD.replace("cores = 2", "cores = -1"));
    assert!(p[0].starts_with("node.cores:"), "{p:?}");
}

#[test]
fn every_value_problem_is_reported() {
    let text = r#"
[node]
id = "bad id"
cores = 0
[listeners.http]
addr = "localhost"
[admin]
token = "short"
[events]
sink = "kafka"
[ledger]
mode = "far"
[quotas]
timezone = "Mars/Olympus"
"#;
    let p = problems(text);
    for want in [
        "node.id: expected letters, digits, '-', '_' or '.'",
        "node.cores: expected an integer ≥ 1",
        "listeners.http.addr: expected an IP address and port such as 127.0.0.1:8080, got \"localhost\"",
        "admin.token: expected at least 8 characters",
        "events.kafka: sink = \"kafka\" needs [events.kafka] with brokers",
        "ledger.mode: expected \"embedded\" or \"remote\", got \"far\"",
    ] {
        assert!(p.iter().any(|x| x == want), "missing {want:?} in {p:#?}");
    }
    assert!(
        p.iter()
            .any(|x| x.starts_with("quotas.timezone: unknown time zone `Mars/Olympus`")),
        "{p:#?}"
    );
    assert!(
        !p.iter().any(|x| x.contains("short")),
        "the token is never echoed"
    );
}

#[test]
fn missing_listener_and_token() {
    let p = problems("[node]\nid = \"n\"\n");
    assert!(
        p.iter().any(|x| x.starts_with("listeners: expected")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|x| x.starts_with("admin.token: expected")),
        "{p:#?}"
    );
}

#[test]
fn kafka_sink_with_defaults() {
    let c = parse(
        &format!(
            "{GOOD}\n[events]\nsink = \"kafka\"\n[events.kafka]\nbrokers = \"127.0.0.1:9092\"\n"
        ),
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(
        c.sink,
        Sink::Kafka {
            brokers: "127.0.0.1:9092".into(),
            usage_topic: "tollgate.usage".into(),
            entities_topic: "tollgate.entities".into(),
            totals_topic: "tollgate.totals".into(),
            partitions: 16,
        }
    );
}

#[test]
fn not_toml() {
    let p = problems("[node\nid=");
    assert!(p[0].starts_with("not valid TOML"), "{p:?}");
}

#[test]
fn seed_problems_are_reported_under_seed_entities() {
    let dir = std::env::temp_dir().join(format!("tollgate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bad.json"),
        r#"{"apiKeys": [{"clientId": "k", "clientSecret": "s", "dailyQuota": -5}]}"#,
    )
    .unwrap();
    let text = format!("{GOOD}\n[seed]\nentities = \"bad.json\"\n");
    let p: Vec<String> = parse(&text, &dir)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        p,
        vec!["seed.entities: bad.json: apiKeys[0].dailyQuota: expected an integer ≥ 0, got -5"]
    );
    let p: Vec<String> = parse(
        &format!("{GOOD}\n[seed]\nentities = \"missing.json\"\n"),
        &dir,
    )
    .unwrap_err()
    .iter()
    .map(ToString::to_string)
    .collect();
    assert!(p[0].starts_with("seed.entities: missing.json:"), "{p:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn http_section_defaults_and_checks() {
    let c = parse(GOOD, Path::new("/")).unwrap();
    assert_eq!(c.limits, HttpLimits::default());
    let c = parse(&format!("{GOOD}\n[http]\nmax_body_bytes = 0\nidle_timeout_ms = 500\nrequest_id_header = \"Otoroshi-Request-Id\"\n"), Path::new("/")).unwrap();
    assert_eq!(c.limits.max_body_bytes, u64::MAX);
    assert_eq!(c.limits.idle_timeout, std::time::Duration::from_millis(500));
    assert_eq!(c.limits.request_id_header, "Otoroshi-Request-Id");
    let p = problems(&format!(
        "{GOOD}\n[http]\nmax_head_bytes = 10\nmax_headers = 300\nheader_timeout_ms = 0\nrequest_id_header = \"a b\"\n"
    ));
    for want in [
        "http.max_head_bytes: expected at least 1024, got 10",
        "http.max_headers: expected 1..=256, got 300",
        "http.header_timeout_ms: expected a duration ≥ 1 ms",
        "http.request_id_header: expected a header name",
    ] {
        assert!(p.iter().any(|x| x == want), "missing {want:?} in {p:#?}");
    }
}

#[test]
fn journal_section_defaults_and_checks() {
    use crate::journal::{JournalOptions, SyncPolicy};
    let c = parse(GOOD, Path::new("/")).unwrap();
    assert_eq!(c.journal, JournalOptions::default());
    let c = parse(
        &format!(
            "{GOOD}\n[events.journal]\nfsync = \"1s\"\nsegment_bytes = 1048576\n\
             retention_bytes = 1073741824\nretention_hours = 2000\n"
        ),
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(
        c.journal.sync,
        SyncPolicy::Every(std::time::Duration::from_secs(1))
    );
    assert_eq!(c.journal.segment_bytes, 1 << 20);
    assert_eq!(c.journal.retention_bytes, Some(1 << 30));
    assert_eq!(
        c.journal.retention_age,
        Some(std::time::Duration::from_secs(2000 * 3600))
    );
    for (fsync, policy) in [("always", SyncPolicy::Always), ("never", SyncPolicy::Never)] {
        let c = parse(
            &format!("{GOOD}\n[events.journal]\nfsync = \"{fsync}\"\n"),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.journal.sync, policy);
    }
    let p = problems(&format!(
        "{GOOD}\n[events.journal]\nfsync = \"sometimes\"\nsegment_bytes = 10\n\
         retention_bytes = 100\nretention_hours = 24\n"
    ));
    for want in [
        "events.journal.fsync: expected",
        "events.journal.segment_bytes: expected at least 4096",
        "events.journal.retention_bytes: expected at least two segments",
        "events.journal.retention_hours: expected at least 768",
    ] {
        assert!(
            p.iter().any(|x| x.starts_with(want)),
            "missing {want:?} in {p:#?}"
        );
    }
}

//! The `loadtest` binary end to end: JSON report schema, HTML report, scenario files and
//! expectations (exit status), against a real upstream on 127.0.0.1.

#[path = "support/upstream.rs"]
mod upstream;

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use serde_json::Value;
use upstream::{Mode, Upstream};

fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .output()
        .unwrap()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadtest-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn json_report_has_the_documented_schema() {
    let up = Upstream::start(Mode::Statuses(vec![200, 200, 200, 404]));
    let json = temp("report.json");
    let html = temp("report.html");
    let out = loadtest(&[
        "run",
        "--url",
        &up.url(),
        "-c",
        "4",
        "-n",
        "400",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Not a terminal: plain lines, no carriage-return bar.
    assert!(!out.stdout.contains(&b'\r'));

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "duration_s",
            "error_kinds",
            "errors",
            "latency_us",
            "requests",
            "rps",
            "status"
        ]
    );
    assert!(v["rps"].as_f64().unwrap() > 0.0);
    assert_eq!(v["requests"].as_u64(), Some(400));
    assert!(v["duration_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["errors"].as_u64(), Some(0));
    let status = v["status"].as_object().unwrap();
    assert_eq!(status.len(), 2);
    assert_eq!(status["200"].as_u64(), Some(300));
    assert_eq!(status["404"].as_u64(), Some(100));
    let lat = v["latency_us"].as_object().unwrap();
    let mut lat_keys: Vec<&str> = lat.keys().map(String::as_str).collect();
    lat_keys.sort_unstable();
    assert_eq!(lat_keys, ["max", "p50", "p90", "p99", "p999"]);
    let p: Vec<u64> = ["p50", "p90", "p99", "p999", "max"]
        .iter()
        .map(|k| lat[*k].as_u64().unwrap())
        .collect();
    assert!(p.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
    let kinds = v["error_kinds"].as_object().unwrap();
    let mut kind_keys: Vec<&str> = kinds.keys().map(String::as_str).collect();
    kind_keys.sort_unstable();
    assert_eq!(kind_keys, ["connect", "parse", "read", "timeout", "write"]);
    assert!(kinds.values().all(|k| k.as_u64() == Some(0)));

    // The CLI says where it wrote the reports.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("html report  {}", html.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("json report  {}", json.display())),
        "{stdout}"
    );

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches("<svg").count(), 3);
    // When and how it was made.
    assert!(page.contains("UTC with <code>"), "{page}");
    assert!(page.contains("run --url"), "{page}");
    // Responses coloured by status class: 200 green, 404 amber.
    assert!(
        page.contains("fill=\"#2da44e\"><title>200: 300</title>"),
        "{page}"
    );
    assert!(
        page.contains("fill=\"#d4a72c\"><title>404: 100</title>"),
        "{page}"
    );
    // Latency on log scales.
    assert!(page.contains("percentile (log scale)"));
    assert!(page.contains("latency (log scale)"));
    assert!(page.contains("<polyline"));
    assert!(page.contains("<rect class=\"bar\""));
    assert!(!page.contains("<script"));
    assert!(!page.contains("src="));
    assert!(!page.contains("href="));
}

fn scenario(up: &Upstream, expect: &str) -> PathBuf {
    let path = temp(&format!("scenario-{}.toml", expect.len()));
    std::fs::write(
        &path,
        format!(
            r#"
url = "{}"
connections = 4
max_requests = 200
expect = [{expect}]

[[requests]]
weight = 2
path = "/a"

[[requests]]
method = "POST"
path = "/b"
body = "x"

[keys]
header = "Otoroshi-Client-Id"
[[keys.groups]]
name = "valid"
weight = 9
prefix = "k"
count = 10
[[keys.groups]]
name = "invalid"
weight = 1
keys = ["bad"]
"#,
            up.url()
        ),
    )
    .unwrap();
    path
}

#[test]
fn expectations_set_the_exit_status() {
    // Half 200, half 429.
    let up = Upstream::start(Mode::Statuses(vec![200, 429]));
    let met = scenario(&up, r#"'"2xx" >= 0.49', "429 <= 0.51", "errors == 0""#);
    let out = loadtest(&["run", "--scenario", met.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(up.answered(), 200);

    let up = Upstream::start(Mode::Statuses(vec![200, 429]));
    let unmet = scenario(&up, r#"'"2xx" >= 0.99'"#);
    let out = loadtest(&["run", "--scenario", unmet.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2xx >= 0.99: 0.5000 FAILED"));
}

#[test]
fn a_bad_scenario_field_is_named() {
    let path = temp("bad.toml");
    std::fs::write(
        &path,
        "url = \"http://127.0.0.1:9/\"\n[[requests]]\npath = \"/\"\nmethd = \"GET\"\n",
    )
    .unwrap();
    let out = loadtest(&["run", "--scenario", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `methd`"), "{err}");
    assert!(err.contains("bad.toml"), "{err}");
}

#[test]
fn bad_flags_are_refused_before_any_traffic() {
    let out = loadtest(&["run", "--url", "https://127.0.0.1:9/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("https is not supported"));
    let out = loadtest(&["run", "--url", "http://127.0.0.1:9/", "-c", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connections"));
}

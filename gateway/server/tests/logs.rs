//! The gateway binary's own log lines and start-up errors as an operator meets them: `[log]
//! format = "json"` lines, no colours on a pipe, SIGHUP applying a new `[log] level` and naming
//! what needs a restart, a busy port named by its config key, an entity log held by a running
//! node naming its process.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ChildGuard, TempDir, run};
use serde_json::Value;

fn config(log: &str, token: &str) -> String {
    format!(
        "[node]\nid = \"logs\"\ncores = 1\n\n[listeners.http]\naddr = \"127.0.0.1:0\"\n\n\
         [admin]\naddr = \"127.0.0.1:0\"\ntoken = \"{token}\"\n\n\
         [ledger]\naddr = \"127.0.0.1:0\"\n\n{log}"
    )
}

/// The binary on `dir/tollgate.toml`, its stderr collected line by line. `RUST_LOG` is
/// removed (the file's `[log] level` applies) and `NO_COLOR` too (stderr is a pipe: no colours
/// must come from that alone).
fn spawn(dir: &Path) -> (ChildGuard, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--config")
        .arg(dir.join("tollgate.toml"))
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let collected = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            collected.lock().unwrap().push(line);
        }
    });
    (ChildGuard(Some(child)), lines)
}

fn wait_for(lines: &Mutex<Vec<String>>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = lines.lock().unwrap().iter().find(|l| pred(l)) {
            return l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within 30 s:\n{}",
            lines.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(unsafe_code)]
fn signal(child: &ChildGuard, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) takes plain integers; `pid` is our own child, not yet reaped (the guard
    // reaps it only when dropped), so the id cannot name another process.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0);
}

#[test]
fn json_lines_and_sighup_applies_the_new_level() {
    let dir = TempDir::new("logs-json");
    let cfg = dir.path().join("tollgate.toml");
    std::fs::write(
        &cfg,
        config(
            "[log]\nlevel = \"info\"\nformat = \"json\"\n",
            "long-enough-token",
        ),
    )
    .unwrap();
    let (child, lines) = spawn(dir.path());
    let serving = wait_for(&lines, "serving line", |l| l.contains("\"serving\""));
    let v: Value = serde_json::from_str(&serving).unwrap();
    assert_eq!(v["level"], "INFO");
    assert!(v["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{v}");
    assert!(
        v["cores"].is_u64(),
        "fields are values, not debug text: {v}"
    );
    assert!(v["timestamp"].is_string() && v["target"].is_string(), "{v}");

    // A new level and a change that needs a restart.
    std::fs::write(
        &cfg,
        config(
            "[log]\nlevel = \"debug\"\nformat = \"json\"\n",
            "another-long-token",
        ),
    )
    .unwrap();
    signal(&child, libc::SIGHUP);
    let changed = wait_for(&lines, "level change", |l| {
        l.contains("SIGHUP: log level changed")
    });
    let v: Value = serde_json::from_str(&changed).unwrap();
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some("info"), Some("debug"))
    );
    let restart = wait_for(&lines, "restart note", |l| {
        l.contains("applied at the next start")
    });
    let v: Value = serde_json::from_str(&restart).unwrap();
    assert_eq!(v["sections"], "[admin]", "{v}");
    assert!(
        !restart.contains("another-long-token"),
        "a secret in a log line: {restart}"
    );

    signal(&child, libc::SIGTERM);
    let mut child = child;
    assert!(
        child
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
    for line in lines.lock().unwrap().iter() {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON line: {line}");
        assert!(!line.contains('\u{1b}'), "colour codes: {line}");
    }
}

#[test]
fn text_lines_have_no_colours_on_a_pipe() {
    let dir = TempDir::new("logs-text");
    std::fs::write(
        dir.path().join("tollgate.toml"),
        config("", "long-enough-token"),
    )
    .unwrap();
    let (child, lines) = spawn(dir.path());
    let serving = wait_for(&lines, "serving line", |l| l.contains("serving"));
    assert!(
        !serving.contains('\u{1b}'),
        "colour codes on a pipe: {serving:?}"
    );
    assert!(serving.contains(" INFO "), "{serving}");
    assert!(serving.contains("cores=1"), "{serving}");
    drop(child);
}

#[test]
fn a_busy_port_is_named_by_its_config_key() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let dir = TempDir::new("logs-busy");
    let cfg = dir.path().join("tollgate.toml");
    std::fs::write(
        &cfg,
        config("", "long-enough-token").replace(
            "[admin]\naddr = \"127.0.0.1:0\"",
            &format!("[admin]\naddr = \"{addr}\""),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.arg("--config").arg(&cfg);
    let out = run(cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains(&format!(
            "admin.addr {addr} is in use: another process listens there"
        )),
        "{}",
        out.stderr
    );

    // The quickstart names its flag.
    let port = addr.port().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.args([
        "--http-port",
        &port,
        "--admin-port",
        "0",
        "--ledger-port",
        "0",
    ])
    .arg("--data-dir")
    .arg(dir.path().join("quickstart"));
    let out = run(cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains(&format!("--http-port {addr} is in use")),
        "{}",
        out.stderr
    );
    drop(busy);
}

#[test]
fn an_entity_log_held_by_a_running_node_names_its_process() {
    let dir = TempDir::new("logs-held");
    let cfg = dir.path().join("tollgate.toml");
    std::fs::write(&cfg, config("", "long-enough-token")).unwrap();
    let (child, lines) = spawn(dir.path());
    wait_for(&lines, "serving line", |l| l.contains("serving"));
    // Its admin address is port 0 in the file: `gateway import` can only open the log, which
    // the node holds, and must say which process holds it.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/entities.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.arg("import").arg(&file).arg("--config").arg(&cfg);
    let out = run(cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains(&format!("held by a running node (process {}", child.id())),
        "{}",
        out.stderr
    );
    drop(child);
}

//! `gateway check` as a user runs it: the real binary on the example files of ../shared/examples.

use std::path::PathBuf;
use std::process::Command;

fn shared() -> PathBuf {
    std::env::var_os("TOLLGATE_SHARED").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    )
}

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn example_config_checks_ok_verbatim() {
    let config = shared().join("examples/tollgate.toml");
    assert!(
        config.exists(),
        "{} missing (set TOLLGATE_SHARED)",
        config.display()
    );
    let out = gateway()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (node node-a, 2 cores, time zone UTC; seed: 2 routes, 1 backends, 1 API keys, 0 APIs)"), "{stdout}");
}

#[test]
fn bad_config_exits_non_zero_naming_each_field() {
    let dir = std::env::temp_dir().join(format!("tollgate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[node]\ncores = 0\n[listeners.http]\naddr = \"nope\"\n[admin]\ntoken = \"long-enough-token\"\n").unwrap();
    let out = gateway()
        .arg("check")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node.cores: expected an integer ≥ 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("listeners.http.addr: expected an IP address and port"),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_without_config_is_a_usage_error() {
    let out = gateway().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_ledger_fields_are_named_too() {
    let dir = std::env::temp_dir().join(format!("tollgate-check-ledger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("ledger.toml");
    std::fs::write(
        &cfg,
        "[listeners.http]\naddr = \"127.0.0.1:0\"\n[admin]\ntoken = \"long-enough-token\"\n\
         [ledger]\ngrace_secs = 99999999999\n",
    )
    .unwrap();
    let out = gateway()
        .arg("check")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ledger.grace_secs"), "{stderr}");
    // The query API's token: too short, or both forms at once; never echoed.
    std::fs::write(
        &cfg,
        "[listeners.http]\naddr = \"127.0.0.1:0\"\n[admin]\ntoken = \"long-enough-token\"\n\
         [ledger]\ntoken = \"short\"\n",
    )
    .unwrap();
    let out = gateway()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ledger.token: expected a token of at least 8 characters"),
        "{stderr}"
    );
    assert!(!stderr.contains("short"), "{stderr}");
    std::fs::write(
        &cfg,
        "[listeners.http]\naddr = \"127.0.0.1:0\"\n[admin]\ntoken = \"long-enough-token\"\n\
         [ledger]\ntoken = \"ledger-token-123\"\n",
    )
    .unwrap();
    let out = gateway()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! `gateway check` as a user runs it: the real binary on the repository's examples/.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn example_config_checks_ok_verbatim() {
    let config = repo().join("examples/tollgate.toml");
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
    let _ = std::fs::remove_dir_all(&dir);
}

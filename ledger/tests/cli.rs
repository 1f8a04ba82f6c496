//! The `ledger` binary as an operator meets it: `--version`, each subcommand's `--help`, and a
//! store held by a running ledger named with its process and what to use instead.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ledger() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ledger"))
}

#[test]
fn version_and_help_describe_the_binary_and_each_subcommand() {
    let out = ledger().arg("--version").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.starts_with(&format!("ledger {}", env!("CARGO_PKG_VERSION"))));
    assert!(stdout.contains("io: blocking threads"), "{stdout}");
    for (sub, want) in [
        ("dump", "Print the store (or, with --raw, the source log)"),
        ("rebuild", "Replay the whole log into a fresh store"),
        ("run", "Fold the configured source and serve the query API"),
    ] {
        let out = ledger().args([sub, "--help"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(want), "{sub}: {stdout}");
    }
}

#[test]
fn a_store_held_by_a_running_ledger_names_it_and_what_to_use_instead() {
    let dir = std::env::temp_dir().join(format!("ledger-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tollgate.toml");
    std::fs::write(
        &cfg,
        "[node]\ndata_dir = \"data\"\n[ledger]\naddr = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n",
    )
    .unwrap();
    let mut running = ledger()
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(running.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    while !line.contains("query API on") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "ledger exited");
        assert!(Instant::now() < deadline);
    }
    let pid = running.id();

    let out = ledger()
        .arg("--config")
        .arg(&cfg)
        .arg("dump")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains(&format!("is open in process {pid}")),
        "{text}"
    );
    assert!(
        text.contains("/api/state") && text.contains("ledger dump --raw"),
        "{text}"
    );

    // The raw log reads without the lock.
    let out = ledger()
        .arg("--config")
        .arg(&cfg)
        .args(["dump", "--raw"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let _ = running.kill();
    let _ = running.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

//! The `ledger` binary as an operator meets it: `--version`, each subcommand's `--help`, `dump`
//! and `rebuild` while a ledger runs on the store, and a holder that cannot answer named with its
//! process and what to use instead.

mod common;

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

/// Runs `ledger --config cfg args…`; its stdout, or a failure with its stderr.
fn run_ok(cfg: &std::path::Path, args: &[&str]) -> String {
    let out = ledger()
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ledger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn dump_and_rebuild_work_while_a_ledger_runs_on_the_store() {
    let dir = std::env::temp_dir().join(format!("ledger-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tollgate.toml");
    std::fs::write(
        &cfg,
        "[node]\ndata_dir = \"data\"\n[ledger]\naddr = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n",
    )
    .unwrap();
    // Usage in the journal the ledger tails: 3 batches of 2 keys.
    let mut journal = gateway_events::journal::Journal::open(
        dir.join("data/journal/usage"),
        gateway_events::journal::JournalOptions::default(),
    )
    .unwrap()
    .0;
    for sequence in 0..3 {
        let entries = vec![common::entry("key-a", 5, 1), common::entry("key-b", 7, 0)];
        let batch = common::batch("gw-cli", 0, 0, 1, sequence, entries);
        journal
            .append(&gateway_model::event::encode(&batch).unwrap())
            .unwrap();
    }
    journal.sync().unwrap();
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

    // `dump` reads the held store through the running ledger, once it has folded the journal.
    let deadline = Instant::now() + Duration::from_secs(20);
    let dump = loop {
        let dump = run_ok(&cfg, &["dump"]);
        if dump.contains("\"daily_calls\"") && dump.contains("\"journal:usage\"") {
            break dump;
        }
        assert!(Instant::now() < deadline, "never folded: {dump}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(dump.contains("\"type\":\"aggregate\""), "{dump}");
    assert!(dump.contains("state_hash"), "{dump}");
    for l in dump.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }

    // `rebuild` replays the log into a fresh store and compares with the live one.
    let report: serde_json::Value = serde_json::from_str(&run_ok(&cfg, &["rebuild"])).unwrap();
    assert_eq!(report["identical"], true, "{report}");
    assert_eq!(report["positions"], report["live_positions"], "{report}");
    assert!(report.get("live_error").is_none(), "{report}");

    // A holder that does not answer (a build without the socket): named, with what to use.
    std::fs::remove_file(dir.join("data/ledger/ledger.redb.sock")).unwrap();
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

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
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && only_busy_ports(&stderr) {
        // The example's fixed ports (8080, 9000, 9100) are taken by something else on this
        // machine: that is what check must say, and all it may say.
        eprintln!("NOTE: the example's ports are in use here:\n{stderr}");
        return;
    }
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("ok (node node-a, 2 cores, time zone UTC; seed: 2 routes, 1 backends, 1 API keys, 0 APIs)"), "{stdout}");
}

/// Whether every problem `gateway check` printed is a port in use.
fn only_busy_ports(stderr: &str) -> bool {
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.ends_with("problem(s)"))
        .collect();
    !problems.is_empty() && problems.iter().all(|l| l.contains(" is in use"))
}

#[test]
fn bad_config_exits_non_zero_naming_each_field() {
    let dir = std::env::temp_dir().join(format!("tollgate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "[node]\ncores = 0\n[listeners.http]\naddr = \"nope\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         token = \"long-enough-token\"\n[ledger]\naddr = \"127.0.0.1:0\"\n",
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

fn check_output(name: &str, text: &str) -> (Option<i32>, String, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tollgate-check-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tollgate.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = gateway()
        .arg("check")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    )
}

#[test]
fn an_unknown_key_hides_no_other_problem() {
    // Two unknown keys, a value of the wrong type, bad values beside them, a bad [log].
    let (code, stderr, dir) = check_output(
        "all",
        "[node]\ncorez = 2\ncores = 0\n[listeners.http]\naddr = \"nope\"\n\
         [admin]\ntoken = \"long-enough-token\"\naddr = 9000\n[nodes]\nx = 1\n\
         [log]\nlevel = \"info,gateway=loud\"\nformat = \"xml\"\n[ledger]\naddr = \"127.0.0.1:0\"\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    for want in [
        "node.corez: unknown field `corez`",
        "nodes: unknown field `nodes`",
        "admin.addr: invalid type: integer `9000`",
        "node.cores: expected an integer ≥ 1",
        "listeners.http.addr: expected an IP address and port",
        "log.level: expected filter directives",
        "log.format: expected \"text\" or \"json\", got \"xml\"",
        "7 problem(s)",
    ] {
        assert!(stderr.contains(want), "{want:?} not in\n{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreadable_certificates_busy_ports_and_unwritable_data_dir_are_caught() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    // A data directory "inside" a regular file can never be created.
    let blocker = std::env::temp_dir().join(format!("tollgate-check-file-{}", std::process::id()));
    std::fs::write(&blocker, "not a directory").unwrap();
    let (code, stderr, dir) = check_output(
        "preflight",
        &format!(
            "[node]\ndata_dir = \"{}/data\"\n[listeners.http]\naddr = \"{busy_addr}\"\n\
             [listeners.https]\naddr = \"127.0.0.1:0\"\ncert = \"no-such-cert.pem\"\n\
             key = \"no-such-key.pem\"\nclient_ca = \"no-such-ca.pem\"\n\
             [admin]\naddr = \"127.0.0.1:0\"\ntoken = \"long-enough-token\"\n\
             [ledger]\naddr = \"127.0.0.1:0\"\n",
            blocker.display()
        ),
    );
    assert_eq!(code, Some(1), "{stderr}");
    for want in [
        "listeners.https.cert: ",
        "no-such-cert.pem: cannot be read",
        "listeners.https.key: ",
        "listeners.https.client_ca: ",
        &format!("listeners.http.addr: {busy_addr} is in use"),
        "node.data_dir: ",
        "5 problem(s)",
    ] {
        assert!(stderr.contains(want), "{want:?} not in\n{stderr}");
    }
    drop(busy);
    let _ = std::fs::remove_file(&blocker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_subcommand_has_its_own_help_and_the_version_names_the_io_drivers() {
    for (args, want) in [
        (&["check", "--help"][..], "Validate a configuration"),
        (
            &["events", "tail", "--help"][..],
            "Print events as JSON lines",
        ),
        (&["import", "--help"][..], "Import an Otoroshi export"),
        (&["--help"][..], "--http-port"),
    ] {
        let out = gateway().args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout.contains(want), "{args:?}: {want:?} not in\n{stdout}");
    }
    // `check --help` describes check, not the node's --io.
    let out = gateway().args(["check", "--help"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("--io"));
    let out = gateway().arg("--version").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("gateway {}", env!("CARGO_PKG_VERSION"))));
    assert!(
        stdout.contains("io_uring") && stdout.contains("epoll"),
        "{stdout}"
    );
}

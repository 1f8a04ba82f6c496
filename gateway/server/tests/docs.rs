//! The documentation's commands, run as written: the fenced blocks of README.md and docs/*.md
//! marked ```` ```sh doctest ```` (each line a command that must exit 0) and the one marked
//! ```` ```sh doctest-server ```` (the quickstart, started in the background on free ports with its
//! port flags, whose printed curl lines are run too).
//!
//! What is rewritten, and only that: `cargo run [--release] -p gateway [--]` runs this build's
//! debug binary; `127.0.0.1:8080`, `:9000`, `:9100` and `TOKEN` become the quickstart's real
//! addresses and admin token. Commands run with `sh -c` from the repository root, with `TMPDIR`
//! set to a fresh directory (so the quickstart's default state directory is the test's own),
//! and `curl` fails on an HTTP error status (a `.curlrc` with `fail-with-body`), so that a curl line
//! that answers 404 or 400 fails the test. `gateway check` of the example config may only fail
//! because the example's fixed ports are in use on this machine.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ChildGuard, TempDir, run};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A marked block: where it is, its tag, its commands (continuation lines joined).
#[derive(Debug)]
struct Block {
    at: String,
    tag: String,
    commands: Vec<String>,
}

fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let name = file
        .strip_prefix(repo())
        .unwrap_or(file)
        .display()
        .to_string();
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    let mut pending = String::new();
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut current, fence) {
            (None, Some(info)) => {
                let mut words = info.split_whitespace();
                if words.next() == Some("sh") {
                    if let Some(tag) = words.find(|w| w.starts_with("doctest")) {
                        current = Some(Block {
                            at: format!("{name}:{}", n + 1),
                            tag: tag.to_owned(),
                            commands: Vec::new(),
                        });
                    }
                }
            }
            (Some(_), Some(_)) => out.extend(current.take()),
            (Some(block), None) => {
                let line = line.trim();
                if let Some(head) = line.strip_suffix('\\') {
                    pending.push_str(head);
                    pending.push(' ');
                    continue;
                }
                pending.push_str(line);
                let command = std::mem::take(&mut pending);
                if !command.trim().is_empty() && !command.trim_start().starts_with('#') {
                    block.commands.push(command.trim().to_owned());
                }
            }
            (None, None) => {}
        }
    }
    out
}

fn documented_blocks() -> Vec<Block> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files.iter().flat_map(|f| blocks(f)).collect()
}

/// `cargo run [--release] -p gateway [--]` → this build's binary.
fn with_binary(command: &str) -> String {
    let bin = env!("CARGO_BIN_EXE_gateway");
    let mut out = command.to_owned();
    for form in [
        "cargo run --release -p gateway --",
        "cargo run -p gateway --",
        "cargo run --release -p gateway",
        "cargo run -p gateway",
    ] {
        out = out.replace(form, bin);
    }
    out
}

/// What the quickstart printed: its addresses and token, and its curl lines.
#[derive(Debug, Default)]
struct Banner {
    http: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    ledger: Option<SocketAddr>,
    token: Option<String>,
    curls: Vec<String>,
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace()
        .next()?
        .trim_end_matches(':')
        .parse()
        .ok()
}

fn parse_banner(text: &str) -> Banner {
    let mut b = Banner::default();
    let mut pending = String::new();
    for line in text.lines() {
        if line.starts_with("Tollgate quickstart: a demo API on ") {
            b.http = addr_after(line, "http://");
        } else if line.starts_with("Admin API on ") {
            b.admin = addr_after(line, "http://");
            b.token = line
                .split("token generated for this run: ")
                .nth(1)
                .map(|t| t.trim_end_matches("):").to_owned());
        } else if line.starts_with("Ledger (usage for billing) on ") {
            b.ledger = addr_after(line, "http://");
        }
        let Some(at) = line
            .find("curl ")
            .or(if pending.is_empty() { None } else { Some(0) })
        else {
            continue;
        };
        let mut part = line[at..].trim().to_owned();
        // `… (400 no_api_key)`: the banner's note on what to expect, not part of the command.
        if let Some(note) = part.find("  (") {
            part.truncate(note);
        }
        match part.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(&part);
                b.curls.push(std::mem::take(&mut pending).trim().to_owned());
            }
        }
    }
    b
}

/// The quickstart as documented, on free ports (its port flags), until dropped.
struct Quickstart {
    _child: ChildGuard,
    banner: Banner,
}

fn start_quickstart(command: &str, env: &BTreeMap<&str, String>) -> Quickstart {
    let line = format!(
        "exec {} --http-port 0 --admin-port 0 --ledger-port 0",
        with_binary(command)
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&line)
        .current_dir(repo())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut out = out.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
    }
    let mut child = ChildGuard(Some(child));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = out.lock().unwrap().clone();
        if text.contains("State (entity log") {
            let banner = parse_banner(&text);
            assert!(
                banner.http.is_some() && banner.admin.is_some() && banner.ledger.is_some(),
                "banner not understood: {banner:?}\n{text}"
            );
            return Quickstart {
                _child: child,
                banner,
            };
        }
        if let Some(status) = child.wait_exit(Duration::ZERO) {
            panic!("`{line}` exited ({status}) before printing its banner:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "`{line}`: no banner within 30 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether every problem `gateway check` printed is a port in use.
fn only_busy_ports(stderr: &str) -> bool {
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.ends_with("problem(s)"))
        .collect();
    !problems.is_empty() && problems.iter().all(|l| l.contains(" is in use"))
}

fn sh(line: &str, env: &BTreeMap<&str, String>) -> common::Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(line).current_dir(repo()).envs(env);
    run(cmd, Duration::from_secs(60))
}

#[test]
fn documented_commands_work_as_written() {
    let blocks = documented_blocks();
    let servers: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.tag == "doctest-server")
        .collect();
    assert_eq!(
        servers.len(),
        1,
        "expected one ```sh doctest-server block (the quickstart): {servers:?}"
    );
    assert_eq!(servers[0].commands.len(), 1, "{servers:?}");
    let runnable: Vec<&Block> = blocks.iter().filter(|b| b.tag == "doctest").collect();
    assert!(
        runnable.len() >= 4,
        "too few ```sh doctest blocks: {blocks:?}"
    );

    let tmp = TempDir::new("docs");
    let curl_home = tmp.path().join("curl");
    std::fs::create_dir_all(&curl_home).unwrap();
    std::fs::write(curl_home.join(".curlrc"), "fail-with-body\n").unwrap();
    let mut env = BTreeMap::new();
    env.insert("TMPDIR", tmp.path().display().to_string());
    env.insert("NO_COLOR", "1".to_owned());
    env.insert("RUST_LOG", "warn".to_owned());

    let quickstart = start_quickstart(&servers[0].commands[0], &env);
    let b = &quickstart.banner;
    // The quickstart's own curl lines, as printed (the 400 line is the documented 400).
    assert!(b.curls.len() >= 6, "{b:?}");
    for line in &b.curls {
        let out = sh(line, &env);
        assert!(
            out.status.success(),
            "banner line `{line}` failed ({}): {}",
            out.status,
            out.stderr
        );
    }

    env.insert("CURL_HOME", curl_home.display().to_string());
    let token = b.token.clone().unwrap_or_default();
    let addrs = [
        ("127.0.0.1:8080", b.http),
        ("127.0.0.1:9000", b.admin),
        ("127.0.0.1:9100", b.ledger),
    ];
    for block in runnable {
        for command in &block.commands {
            let mut line = with_binary(command).replace("TOKEN", &token);
            for (documented, real) in &addrs {
                if let Some(real) = real {
                    line = line.replace(documented, &real.to_string());
                }
            }
            let out = sh(&line, &env);
            if !out.status.success()
                && command.contains(" check --config examples/")
                && only_busy_ports(&out.stderr)
            {
                eprintln!(
                    "NOTE {}: the example's ports are in use here:\n{}",
                    block.at, out.stderr
                );
                continue;
            }
            assert!(
                out.status.success(),
                "{}: `{command}` (run as `{line}`) failed ({}):\nstdout: {}\nstderr: {}",
                block.at,
                out.status,
                out.stdout_text(),
                out.stderr
            );
            if command.contains("events tail") {
                // It printed the quickstart's events, and said so.
                assert!(
                    out.stdout_text().contains("\"stream\""),
                    "{}",
                    out.stdout_text()
                );
                assert!(
                    out.stderr.contains("event(s) from journal"),
                    "{}",
                    out.stderr
                );
            }
        }
    }
}

//! The real `gateway` binary as a user runs it: the repository's example files, `--io`, a bad config,
//! SIGTERM with a request in flight, and 10,000 idle keep-alive connections.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use gateway::runtime::IoMode;

both_drivers!(
    example_files_serve_public_and_keyed_routes,
    sigterm_drains_in_flight_request_and_exits_0,
);

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// `text` with `from` replaced by `to`, which must occur exactly once.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected {from:?} once in the example file"
    );
    text.replacen(from, to, 1)
}

fn example_files_serve_public_and_keyed_routes(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let examples = examples();
    let toml = std::fs::read_to_string(examples.join("tollgate.toml")).unwrap();
    let json = std::fs::read_to_string(examples.join("entities.json")).unwrap();
    // Only the listening ports change (all ephemeral, so that tests run side by side), the data
    // directory (the test's own) and the target port (the test's upstream); everything else is
    // verbatim.
    let toml = replace_once(&toml, "\"/tmp/tollgate-example\"", "\"data\"");
    let toml = replace_once(&toml, "\"127.0.0.1:8080\"", "\"127.0.0.1:0\"");
    let toml = replace_once(&toml, "\"127.0.0.1:9000\"", "\"127.0.0.1:0\"");
    let toml = replace_once(&toml, "\"127.0.0.1:9100\"", "\"127.0.0.1:0\"");
    let json = replace_once(
        &json,
        "\"port\": 18081",
        &format!("\"port\": {}", up.port()),
    );
    let dir = TempDir::new("examples");
    std::fs::write(dir.path().join("tollgate.toml"), toml).unwrap();
    std::fs::write(dir.path().join("entities.json"), json).unwrap();
    let gw = Binary::start_in(dir, io);
    let driver = match io {
        IoMode::Uring => "io_uring",
        _ => "epoll",
    };
    assert!(
        gw.log().contains(&format!("driver={driver}")),
        "{}",
        gw.log()
    );

    let mut c = gw.client();
    c.send(&get_request("public.tollgate.local", "/hello?x=1", &[]));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    let echo = r.json();
    assert_eq!(echo["path"], "/hello");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(
        echo_header(&echo, "host"),
        Some(format!("127.0.0.1:{}", up.port()))
    );

    c.send(&get_request("api.tollgate.local", "/private", &[]));
    c.response().assert_error(400, "no_api_key");
    c.send(&get_request(
        "api.tollgate.local",
        "/private",
        &[
            "Otoroshi-Client-Id: demo-client",
            "Otoroshi-Client-Secret: wrong-secret",
        ],
    ));
    c.response().assert_error(401, "bad_api_key");
    c.send(&get_request(
        "api.tollgate.local",
        "/private",
        &[
            "Otoroshi-Client-Id: nobody",
            "Otoroshi-Client-Secret: demo-secret-0123456789",
        ],
    ));
    c.response().assert_error(401, "bad_api_key");
    c.send(&get_request(
        "api.tollgate.local",
        "/private",
        &[
            "Otoroshi-Client-Id: demo-client",
            "Otoroshi-Client-Secret: demo-secret-0123456789",
        ],
    ));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    assert_eq!(r.json()["path"], "/private");
    // base64("demo-client:demo-secret-0123456789")
    c.send(&get_request(
        "api.tollgate.local",
        "/basic",
        &["Authorization: Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQtMDEyMzQ1Njc4OQ=="],
    ));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    assert_eq!(r.json()["path"], "/basic");
    assert_eq!(up.requests(), 3);
}

fn sigterm_drains_in_flight_request_and_exits_0(io: IoMode) {
    let up = Upstream::start(Reply::Slow {
        delay: Duration::from_millis(1500),
    });
    let config = binary_config("[http]\ndrain_timeout_ms = 8000\n");
    let entities = doc(vec![route("slow", "slow.test", backend(&[up.port()]))]);
    let mut gw = Binary::start(&config, &entities, io);
    let addr = gw.addr;
    // An idle keep-alive connection, served once before the signal.
    let mut idle = gw.client();
    idle.send(&get_request("ok.test", "/", &[]));
    assert_eq!(idle.response().body, b"ok");
    let mut c = gw.client();
    c.send(&get_request("slow.test", "/in-flight", &[]));
    assert!(
        up.wait_requests(1, Duration::from_secs(5)),
        "the request did not reach the upstream"
    );
    let signalled = Instant::now();
    gw.sigterm();

    // New connections are refused soon after the signal, while the request is still in flight.
    let refused = wait_until(Duration::from_millis(1200), || {
        matches!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    });
    assert!(
        refused,
        "new connections still accepted {:?} after SIGTERM",
        signalled.elapsed()
    );
    assert!(
        signalled.elapsed() < Duration::from_millis(1400),
        "refusal only seen after the in-flight request's upstream answered"
    );

    // Idle connections are closed at once, not kept until the drain timeout.
    idle.assert_closed_within(Duration::from_secs(1));

    let r = c.response();
    let answered = Instant::now();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    assert_eq!(r.json()["path"], "/in-flight");
    assert!(r.closes(), "a draining gateway must close: {r:?}");
    c.assert_closed();
    let status = gw
        .child
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("gateway still running 10 s after SIGTERM:\n{}", gw.log()));
    assert_eq!(status.code(), Some(0), "{}", gw.log());
    // Nothing was left to drain: no waiting for the 8 s drain timeout.
    assert!(
        answered.elapsed() < Duration::from_secs(3),
        "exited {:?} after the last response",
        answered.elapsed()
    );
}

#[test]
fn bad_config_exits_non_zero_naming_the_field() {
    let dir = TempDir::new("bad-config");
    let path = dir.path().join("tollgate.toml");
    std::fs::write(
        &path,
        "[listeners.http]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         token = \"e2e-admin-token\"\n[http]\nmax_headers = 1000\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.arg("--config").arg(&path);
    let out = run(cmd, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("http.max_headers: expected 1..=256, got 1000"),
        "{}",
        out.stderr
    );
}

/// Sends a GET for `ok.test` on `s` and reads the mock's whole response (`…\r\n\r\nok`) with a
/// small stack buffer: ten thousand connections must not cost the test 10,000 heap buffers.
fn ok_roundtrip(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n")?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    loop {
        let n = s.read(&mut buf[len..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        let got = &buf[..len];
        if got.starts_with(b"HTTP/1.1 200") && got.ends_with(b"\r\n\r\nok") {
            return Ok(());
        }
        if len == buf.len() {
            return Err(std::io::Error::other(format!(
                "unexpected response: {:?}",
                String::from_utf8_lossy(got)
            )));
        }
    }
}

#[test]
fn ten_thousand_idle_keep_alive_connections() {
    const WANT: usize = 10_000;
    let limit = raise_nofile(WANT as u64 + 1_000);
    let n = if limit >= WANT as u64 + 500 {
        WANT
    } else {
        let n = usize::try_from(limit.saturating_sub(500)).unwrap_or(0);
        println!("note: RLIMIT_NOFILE is {limit}: holding {n} connections instead of {WANT}");
        n
    };
    assert!(n >= 1_000, "RLIMIT_NOFILE {limit} is too low for this test");
    let gw = Binary::start(&binary_config(""), &doc(vec![]), IoMode::Auto);
    let mut warm = TcpStream::connect(gw.addr).unwrap();
    warm.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    ok_roundtrip(&mut warm).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let before = gw.rss_kib();

    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect_timeout(&gw.addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        // One request each: the connection is accepted, served and now idle in keep-alive.
        ok_roundtrip(&mut s).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        conns.push(s);
    }
    let opened = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let after = gw.rss_kib();

    // With all of them open, a new connection is served, and so are the oldest and newest.
    let mut fresh = TcpStream::connect(gw.addr).unwrap();
    fresh.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    ok_roundtrip(&mut fresh).expect("a new connection is not served");
    ok_roundtrip(&mut conns[0]).expect("the first idle connection was dropped");
    let last = conns.len() - 1;
    ok_roundtrip(&mut conns[last]).expect("the last idle connection was dropped");

    let per_conn = (after.saturating_sub(before)) as f64 / n as f64;
    println!(
        "{n} idle keep-alive connections opened in {opened:?}: gateway RSS {before} KiB -> \
         {after} KiB, {per_conn:.1} KiB per connection"
    );
    assert!(
        per_conn <= 64.0,
        "{per_conn:.1} KiB per idle connection (target ≤ 64 KiB)"
    );
    drop(conns);
}

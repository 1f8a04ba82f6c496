//! The generator against a real upstream on 127.0.0.1: exact counts, open-loop rate accuracy,
//! coordinated-omission correction, status counting, chunked bodies, reconnects, timeouts.

#[path = "support/upstream.rs"]
mod upstream;

use std::{
    thread,
    time::{Duration, Instant},
};

use loadtest::{IoMode, Report, RunConfig, config::RunSpec};
use upstream::{Mode, Upstream};

fn spec(up: &Upstream) -> RunSpec {
    RunSpec {
        url: up.url(),
        ..RunSpec::default()
    }
}

fn run(spec: RunSpec) -> Report {
    let cfg = RunConfig::try_from(spec).unwrap();
    loadtest::run(&cfg, |_| {}).unwrap()
}

fn budget(up: &Upstream, n: u64, connections: usize, threads: usize) -> RunSpec {
    RunSpec {
        connections,
        threads,
        budget: Some(n),
        duration: None,
        ..spec(up)
    }
}

#[test]
fn request_budget_is_exact() {
    for io in [IoMode::Auto, IoMode::Epoll] {
        let up = Upstream::start(Mode::Hello);
        let report = run(RunSpec {
            io,
            ..budget(&up, 1000, 10, 2)
        });
        assert_eq!(report.requests, 1000, "{io:?}");
        assert_eq!(report.errors.total(), 0, "{io:?}");
        assert_eq!(up.answered(), 1000, "{io:?}");
        assert_eq!(report.status.get(&200), Some(&1000));
        assert_eq!(report.latency_us.len(), 1000);
        assert_eq!(report.connects, 10);
    }
}

#[test]
fn open_loop_budget_is_exact() {
    let up = Upstream::start(Mode::Hello);
    let report = run(RunSpec {
        rate: Some(2000.0),
        ..budget(&up, 300, 4, 1)
    });
    assert_eq!(report.requests, 300);
    assert_eq!(up.answered(), 300);
}

#[test]
fn status_codes_are_counted_exactly() {
    let up = Upstream::start(Mode::Statuses(vec![
        200, 200, 200, 200, 200, 404, 404, 404, 429, 429,
    ]));
    let report = run(budget(&up, 1000, 8, 2));
    let expected = [(200, 500), (404, 300), (429, 200)].into_iter().collect();
    assert_eq!(report.status, expected);
    assert_eq!(up.per_status(), expected);
    assert_eq!(report.ratio("4xx"), Some(0.5));
    assert_eq!(report.errors.total(), 0);
}

#[test]
fn chunked_responses_are_read_whole() {
    let up = Upstream::start(Mode::Chunked);
    let report = run(budget(&up, 500, 5, 1));
    assert_eq!(report.requests, 500);
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!(up.answered(), 500);
    // Keep-alive held: no reconnects.
    assert_eq!(report.connects, 5);
}

#[test]
fn connection_close_reconnects() {
    let up = Upstream::start(Mode::CloseEvery(3));
    let report = run(budget(&up, 300, 5, 1));
    assert_eq!(report.requests, 300);
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!(up.answered(), 300);
    // Every third response closed its connection; each close but the last few reconnected.
    assert_eq!(report.connects, up.accepted());
    assert!(report.connects >= 100, "{}", report.connects);
}

#[test]
fn timeouts_are_counted_as_errors() {
    let up = Upstream::start(Mode::Hello);
    up.stall(Duration::from_secs(3));
    let report = run(RunSpec {
        timeout: Duration::from_millis(300),
        ..budget(&up, 4, 2, 1)
    });
    assert_eq!(report.requests, 0);
    assert_eq!(report.errors.timeout, 4, "{:?}", report.errors);
}

#[test]
fn connect_errors_are_counted() {
    // Bind then drop: nothing listens on this port any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let report = run(RunSpec {
        url: format!("http://{addr}/"),
        connections: 2,
        budget: Some(10),
        duration: None,
        ..RunSpec::default()
    });
    assert_eq!(report.requests, 0);
    assert_eq!(report.errors.connect, 10);
}

#[test]
fn open_loop_rate_is_accurate() {
    let up = Upstream::start(Mode::Hello);
    let report = run(RunSpec {
        rate: Some(2000.0),
        duration: Some(Duration::from_secs(10)),
        connections: 20,
        ..spec(&up)
    });
    let times = up.times();
    let n = times.len() as f64;
    let span = (*times.last().unwrap() - times[0]).as_secs_f64();
    let upstream_rate = (n - 1.0) / span;
    assert!(
        (upstream_rate - 2000.0).abs() <= 40.0,
        "upstream saw {upstream_rate:.1} req/s over {span:.3}s"
    );
    assert_eq!(report.requests, 20_000);
    assert!(
        (report.rps() - 2000.0).abs() <= 40.0,
        "report says {:.1} req/s",
        report.rps()
    );
    // Per-second buckets are flat too (±5 %: a descheduled moment on a busy machine moves a few
    // responses across a bucket boundary; the last bucket may be partial).
    for (s, &count) in report.per_second.iter().take(9).enumerate() {
        assert!((1900..=2100).contains(&count), "second {s}: {count}");
    }
}

/// Runs `spec` in a thread and stalls the upstream for 500 ms, 1.2 s in.
fn run_with_stall(up: &Upstream, spec: RunSpec) -> Report {
    let handle = thread::spawn(move || run(spec));
    thread::sleep(Duration::from_millis(1200));
    up.stall(Duration::from_millis(500));
    handle.join().unwrap()
}

#[test]
fn open_loop_latency_shows_a_stall() {
    let up = Upstream::start(Mode::Hello);
    let started = Instant::now();
    let open = run_with_stall(
        &up,
        RunSpec {
            rate: Some(1000.0),
            duration: Some(Duration::from_secs(3)),
            connections: 10,
            ..spec(&up)
        },
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Every scheduled request was sent and recorded, those due during the stall included.
    assert_eq!(open.requests, 3000);
    assert_eq!(open.errors.total(), 0);
    let p99 = open.percentile_us(99.0);
    assert!(p99 >= 300_000, "open-loop p99 {p99} µs");
    // Requests due in the first half of the stall waited at least 250 ms.
    let slow = open.latency_us.count_between(250_000, 10_000_000);
    assert!(slow >= 200, "{slow} requests ≥ 250 ms");

    // The same shape in a closed loop hides the stall: each connection waits once, so only
    // ~10 samples are slow.
    let up = Upstream::start(Mode::Hello);
    let closed = run_with_stall(
        &up,
        RunSpec {
            duration: Some(Duration::from_secs(3)),
            connections: 10,
            ..spec(&up)
        },
    );
    assert!(closed.latency_us.max() >= 400_000, "the stall happened");
    let closed_slow = closed.latency_us.count_between(250_000, 10_000_000);
    assert!(closed_slow <= 20, "{closed_slow}");
    assert!(
        closed.percentile_us(99.0) < p99 / 3,
        "closed p99 {} µs vs open p99 {p99} µs",
        closed.percentile_us(99.0)
    );
}

#[test]
fn warmup_is_not_recorded() {
    let up = Upstream::start(Mode::Hello);
    let report = run(RunSpec {
        rate: Some(500.0),
        duration: Some(Duration::from_secs(1)),
        warmup: Duration::from_millis(500),
        connections: 5,
        ..spec(&up)
    });
    assert_eq!(up.answered(), 750);
    assert_eq!(report.requests, 500);
}

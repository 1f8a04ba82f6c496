//! 100 MiB bodies through the real binary, both directions, compared by length and checksum,
//! while the gateway's resident memory (its own process: /proc/PID/status) stays bounded: bodies
//! are streamed through fixed buffers, never held whole.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gateway::runtime::IoMode;

const BIG: u64 = 100 * 1024 * 1024;

/// Peak resident memory allowed while 100 MiB cross the gateway.
const MAX_PEAK_KIB: u64 = 40 * 1024;

/// Growth allowed while 100 MiB cross the gateway.
const MAX_GROWTH_KIB: u64 = 16 * 1024;

fn assert_bounded(before: u64, peak: u64) {
    assert!(
        peak < MAX_PEAK_KIB,
        "gateway peak RSS {peak} KiB: the body was buffered"
    );
    assert!(
        peak.saturating_sub(before) < MAX_GROWTH_KIB,
        "gateway RSS grew from {before} to {peak} KiB: the body was buffered"
    );
}

fn big_gateway(up: &Upstream) -> Binary {
    // No listener body limit: the default (100 MiB) would sit right at the body's size.
    let config = binary_config("[http]\nmax_body_bytes = 0\n");
    let entities = doc(vec![route("echo", "echo.test", backend(&[up.port()]))]);
    Binary::start(&config, &entities, IoMode::Auto)
}

/// Samples the gateway's VmRSS every 20 ms until dropped; `max` is the largest sample.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, max) = (stop.clone(), max.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                        if let Some(kib) = s.lines().find_map(|l| {
                            l.strip_prefix("VmRSS:")?
                                .trim()
                                .trim_end_matches("kB")
                                .trim()
                                .parse::<u64>()
                                .ok()
                        }) {
                            max.fetch_max(kib, Ordering::AcqRel);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Acquire)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

#[test]
fn hundred_mib_request_body_is_streamed() {
    let up = Upstream::start(Reply::Echo);
    let gw = big_gateway(&up);
    let before = gw.rss_kib();
    let sampler = RssSampler::start(gw.pid());
    let started = Instant::now();
    let mut c = gw.client();
    c.send(
        format!("POST /upload HTTP/1.1\r\nHost: echo.test\r\nContent-Length: {BIG}\r\n\r\n")
            .as_bytes(),
    );
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || for_pattern(BIG, |b| writer.write_all(b)));
    let expected = pattern_checksum(BIG);
    sender.join().unwrap().unwrap();
    let r = c.response();
    let took = started.elapsed();
    let sampled = sampler.finish();
    let peak = gw.peak_rss_kib();
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert_eq!(echo["body_len"], BIG);
    assert_eq!(echo["body_fnv"], expected, "the body changed on its way");
    assert_eq!(echo["chunked"], false);
    println!(
        "100 MiB request body in {took:?}: gateway RSS before {before} KiB, sampled max \
         {sampled} KiB, peak (VmHWM) {peak} KiB"
    );
    assert!(
        peak < MAX_PEAK_KIB,
        "gateway peak RSS {peak} KiB: the body was buffered"
    );
}

#[test]
fn hundred_mib_response_body_is_streamed() {
    let up = Upstream::start(Reply::Big { len: BIG });
    let gw = big_gateway(&up);
    let before = gw.rss_kib();
    let sampler = RssSampler::start(gw.pid());
    let started = Instant::now();
    let mut c = gw.client();
    c.send(&get_request("echo.test", "/download", &[]));
    let mut hash = Fnv::default();
    let mut len = 0u64;
    let r = c
        .response_streamed(&mut |b| {
            hash.update(b);
            len += b.len() as u64;
        })
        .unwrap();
    let took = started.elapsed();
    let sampled = sampler.finish();
    let peak = gw.peak_rss_kib();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(BIG.to_string().as_str()));
    assert_eq!(len, BIG);
    assert_eq!(
        hash.finish(),
        pattern_checksum(BIG),
        "the body changed on its way"
    );
    println!(
        "100 MiB response body in {took:?}: gateway RSS before {before} KiB, sampled max \
         {sampled} KiB, peak (VmHWM) {peak} KiB"
    );
    assert!(
        peak < MAX_PEAK_KIB,
        "gateway peak RSS {peak} KiB: the body was buffered"
    );
    // The connection is still good.
    c.send(&get_request("ok.test", "/", &[]));
    assert_eq!(c.response().body, b"ok");
}

#[test]
fn hundred_mib_chunked_request_body_is_streamed() {
    let up = Upstream::start(Reply::Echo);
    let gw = big_gateway(&up);
    let before = gw.rss_kib();
    let started = Instant::now();
    let mut c = gw.client();
    c.send(b"POST /upload HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for_pattern(BIG, |b| {
            writer.write_all(format!("{:x}\r\n", b.len()).as_bytes())?;
            writer.write_all(b)?;
            writer.write_all(b"\r\n")
        })?;
        writer.write_all(b"0\r\nX-Done: yes\r\n\r\n")
    });
    let expected = pattern_checksum(BIG);
    sender.join().unwrap().unwrap();
    let r = c.response();
    let took = started.elapsed();
    let peak = gw.peak_rss_kib();
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert_eq!(echo["chunked"], true);
    assert_eq!(echo["body_len"], BIG);
    assert_eq!(echo["body_fnv"], expected, "the body changed on its way");
    // Trailers never go upstream (docs/security.md): the body arrives whole, without them.
    assert_eq!(echo["trailers"], serde_json::json!([]));
    println!(
        "100 MiB chunked request body in {took:?}: gateway RSS before {before} KiB, peak {peak} KiB"
    );
    assert_bounded(before, peak);
}

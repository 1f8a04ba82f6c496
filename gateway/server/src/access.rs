//! The access log: one JSON line per request (or per sampled request), off by default.
//!
//! Off the cores' hot path: each core writes its lines into its own byte buffer (no lock, no
//! syscall, no allocation once the buffer has grown) and hands the buffer to the sink thread in
//! a batch every tick, or when it passes 64 KiB, as it does with usage. The sink thread appends
//! batches to the file and rotates it by size (`access.log` → `access.log.1` … `access.log.<keep>`).
//! A batch the sink cannot take at once (it is behind) is dropped and counted, never waited for.
//!
//! Lines carry no secret: the API key's client id, never a credential.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// Batches the sink may hold before a core's next batch is dropped.
const QUEUE: usize = 256;

/// A core hands its buffer over once it holds this much.
pub const FLUSH_BYTES: usize = 64 * 1024;

/// The checked `[access_log]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    /// The file.
    pub path: PathBuf,
    /// Share of requests logged (0.0 to 1.0).
    pub sample: f64,
    /// Rotation size in bytes.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
}

/// What the sink did (read by `/metrics`).
#[derive(Debug, Default)]
pub struct AccessCounters {
    /// Lines written.
    pub lines: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Batches dropped because the sink was behind.
    pub dropped_batches: AtomicU64,
    /// Rotations.
    pub rotations: AtomicU64,
    /// Write errors.
    pub errors: AtomicU64,
    /// The sample threshold cores read each tick: a request is logged when its draw is below it
    /// (`u64::MAX` logs every request). Changed on SIGHUP.
    pub sample_threshold: AtomicU64,
}

/// The threshold of a sample share.
pub fn threshold(sample: f64) -> u64 {
    if sample >= 1.0 {
        u64::MAX
    } else if sample <= 0.0 {
        0
    } else {
        // Truncation is the point: a share of the u64 range.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let t = (sample * u64::MAX as f64) as u64;
        t
    }
}

/// The running sink thread.
#[derive(Debug)]
pub struct AccessSink {
    sender: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
    /// Its counters.
    pub counters: Arc<AccessCounters>,
}

impl AccessSink {
    /// Opens (appends to) the file and starts the thread.
    ///
    /// # Errors
    /// When the file cannot be opened or the thread cannot start.
    pub fn start(settings: &AccessLogSettings) -> io::Result<Self> {
        if let Some(dir) = settings.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open(&settings.path)?;
        let size = file.metadata().map_or(0, |m| m.len());
        let counters = Arc::new(AccessCounters::default());
        counters
            .sample_threshold
            .store(threshold(settings.sample), Ordering::Relaxed);
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = Writer {
            path: settings.path.clone(),
            file,
            size,
            max_bytes: settings.max_bytes.max(1),
            keep: settings.keep,
            counters: counters.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tollgate-access-log".to_owned())
            .spawn(move || writer.run(&receiver))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            counters,
        })
    }

    /// A core's way to the sink.
    pub fn handle(&self) -> Option<AccessHandle> {
        Some(AccessHandle {
            sender: self.sender.clone()?,
            counters: self.counters.clone(),
        })
    }

    /// Stops the thread once every batch handed over is written; the cores' handles must be
    /// gone first (they are when the cores have stopped).
    pub fn shutdown(mut self) {
        self.sender = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A core's sender to the sink.
#[derive(Debug, Clone)]
pub struct AccessHandle {
    sender: SyncSender<Vec<u8>>,
    /// The sink's counters (the sample threshold among them).
    pub counters: Arc<AccessCounters>,
}

impl AccessHandle {
    /// Hands a batch over without waiting; a full queue drops it (counted).
    pub fn send(&self, batch: Vec<u8>) {
        match self.sender.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters
                    .dropped_batches
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
    counters: Arc<AccessCounters>,
}

impl Writer {
    fn run(mut self, batches: &Receiver<Vec<u8>>) {
        while let Ok(batch) = batches.recv() {
            if self.size > 0 && self.size + batch.len() as u64 > self.max_bytes {
                if let Err(e) = self.rotate() {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, path = %self.path.display(), "access log not rotated");
                }
            }
            match self.file.write_all(&batch) {
                Ok(()) => {
                    let lines = batch.iter().filter(|&&b| b == b'\n').count() as u64;
                    self.size += batch.len() as u64;
                    self.counters.lines.fetch_add(lines, Ordering::Relaxed);
                    self.counters
                        .bytes
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, path = %self.path.display(), "access log not written");
                }
            }
        }
        let _ = self.file.flush();
    }

    /// `path.{keep-1}` → `path.{keep}`, …, `path` → `path.1`, then a new `path`.
    fn rotate(&mut self) -> io::Result<()> {
        let name = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(name(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(name(n), name(n + 1));
            }
            std::fs::rename(&self.path, name(1))?;
        }
        self.file = open(&self.path)?;
        self.size = 0;
        self.counters.rotations.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// One core's access log: its line buffer and its way to the sink.
#[derive(Debug)]
pub struct CoreAccess {
    buf: Vec<u8>,
    handle: AccessHandle,
    threshold: u64,
    /// The `YYYY-MM-DDTHH:MM:SS.` of the current second, and that second.
    second: (i64, [u8; 20]),
}

/// What a line says about a request.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// When the response ended, ms since the Unix epoch.
    pub now_ms: i64,
    /// Node id.
    pub node: &'a str,
    /// Core number.
    pub core: usize,
    /// The per-core request counter.
    pub request_n: u64,
    /// The trace.
    pub trace: Option<&'a gateway_core::trace::TraceContext>,
    /// Method.
    pub method: &'a str,
    /// Canonical host.
    pub host: &'a str,
    /// Canonical path.
    pub path: &'a str,
    /// Status sent.
    pub status: u16,
    /// Bytes received and sent.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// From the request head to the end of the response, µs.
    pub duration_us: u64,
    /// The upstream target and the time until its response head, µs.
    pub upstream: Option<(std::net::SocketAddr, u64)>,
    /// Route id.
    pub route: Option<&'a str>,
    /// API id.
    pub api: Option<&'a str>,
    /// Consumer id.
    pub consumer: Option<&'a str>,
    /// Subscription id.
    pub subscription: Option<&'a str>,
    /// The API key's client id (never a secret).
    pub apikey: Option<&'a str>,
    /// Why the request was refused.
    pub reason: Option<&'a str>,
}

impl CoreAccess {
    /// A core's log over `handle`.
    pub fn new(handle: AccessHandle) -> Self {
        let threshold = handle.counters.sample_threshold.load(Ordering::Relaxed);
        Self {
            buf: Vec::with_capacity(FLUSH_BYTES + 1024),
            handle,
            threshold,
            second: (i64::MIN, [b'0'; 20]),
        }
    }

    /// Whether a request with this draw (uniform over u64) is logged.
    pub fn sampled(&self, draw: u64) -> bool {
        self.threshold == u64::MAX || draw < self.threshold
    }

    /// Appends one line; hands the buffer over when it is full enough.
    pub fn write(&mut self, l: &Line<'_>) {
        let out = &mut self.buf;
        out.extend_from_slice(b"{\"time\":\"");
        let second = l.now_ms.div_euclid(1000);
        if self.second.0 != second {
            self.second = (second, second_prefix(second));
        }
        out.extend_from_slice(&self.second.1);
        let ms = l.now_ms.rem_euclid(1000);
        push_padded(out, ms.unsigned_abs(), 3);
        out.extend_from_slice(b"Z\",\"node\":");
        json_str(out, l.node);
        out.extend_from_slice(b",\"core\":");
        gateway_core::rewrite::push_u64(out, l.core as u64);
        out.extend_from_slice(b",\"request_id\":\"");
        json_escape(out, l.node);
        out.push(b'-');
        gateway_core::rewrite::push_u64(out, l.core as u64);
        out.push(b'-');
        gateway_core::rewrite::push_u64(out, l.request_n);
        out.extend_from_slice(b"\",\"trace_id\":");
        match l.trace {
            Some(t) => {
                out.push(b'"');
                t.write_trace_id(out);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"method\":");
        json_str(out, l.method);
        out.extend_from_slice(b",\"host\":");
        json_str(out, l.host);
        out.extend_from_slice(b",\"path\":");
        json_str(out, l.path);
        out.extend_from_slice(b",\"status\":");
        gateway_core::rewrite::push_u64(out, u64::from(l.status));
        out.extend_from_slice(b",\"bytes_in\":");
        gateway_core::rewrite::push_u64(out, l.bytes_in);
        out.extend_from_slice(b",\"bytes_out\":");
        gateway_core::rewrite::push_u64(out, l.bytes_out);
        out.extend_from_slice(b",\"duration_us\":");
        gateway_core::rewrite::push_u64(out, l.duration_us);
        match l.upstream {
            Some((addr, us)) => {
                out.extend_from_slice(b",\"upstream\":\"");
                gateway_core::rewrite::push_ip(out, addr.ip());
                out.push(b':');
                gateway_core::rewrite::push_u64(out, u64::from(addr.port()));
                out.extend_from_slice(b"\",\"upstream_us\":");
                gateway_core::rewrite::push_u64(out, us);
            }
            None => out.extend_from_slice(b",\"upstream\":null,\"upstream_us\":null"),
        }
        for (name, value) in [
            ("route", l.route),
            ("api", l.api),
            ("consumer", l.consumer),
            ("subscription", l.subscription),
            ("apikey", l.apikey),
            ("reason", l.reason),
        ] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            match value {
                Some(v) => json_str(out, v),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b"}\n");
        if self.buf.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// Hands the lines written so far to the sink (every tick), and takes the current sample
    /// threshold.
    pub fn flush(&mut self) {
        self.threshold = self
            .handle
            .counters
            .sample_threshold
            .load(Ordering::Relaxed);
        if self.buf.is_empty() {
            return;
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(FLUSH_BYTES + 1024));
        self.handle.send(full);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of a second since the epoch (UTC).
fn second_prefix(second: i64) -> [u8; 20] {
    let mut out = [b'0'; 20];
    let text = jiff::Timestamp::from_second(second)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S.").to_string())
        .unwrap_or_default();
    for (o, b) in out.iter_mut().zip(text.bytes()) {
        *o = b;
    }
    out
}

fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let start = out.len();
    gateway_core::rewrite::push_u64(out, n);
    while out.len() - start < width {
        out.insert(start, b'0');
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    json_escape(out, s);
    out.push(b'"');
}

/// JSON string escaping: quotes, backslashes and control bytes (a log line stays one line).
fn json_escape(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(*HEX.get(usize::from(b >> 4)).unwrap_or(&b'0'));
                out.push(*HEX.get(usize::from(b & 0xf)).unwrap_or(&b'0'));
            }
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_every_field_and_rotate_by_size() {
        let dir = std::env::temp_dir().join(format!("tollgate-access-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = AccessLogSettings {
            path: dir.join("access.log"),
            sample: 1.0,
            max_bytes: 2000,
            keep: 2,
        };
        let sink = AccessSink::start(&settings).unwrap();
        let mut core = CoreAccess::new(sink.handle().unwrap());
        let trace = gateway_core::trace::TraceContext::for_request(None, [0xab; 16], [1; 8]);
        let line = Line {
            now_ms: 1_796_400_000_007,
            node: "n1",
            core: 2,
            request_n: 9,
            trace: Some(&trace),
            method: "GET",
            host: "api.test",
            path: "/a\"b",
            status: 200,
            bytes_in: 10,
            bytes_out: 20,
            duration_us: 300,
            upstream: Some(("127.0.0.1:8080".parse().unwrap(), 250)),
            route: Some("r1"),
            api: None,
            consumer: None,
            subscription: None,
            apikey: Some("k1"),
            reason: None,
        };
        for _ in 0..20 {
            core.write(&line);
            core.flush();
        }
        // The cores' handles go first (as when the node stops), then the sink drains.
        drop(core);
        sink.shutdown();
        let text = std::fs::read_to_string(dir.join("access.log")).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["time"], "2026-12-04T16:00:00.007Z");
        assert_eq!(first["request_id"], "n1-2-9");
        assert_eq!(first["trace_id"], "abababababababababababababababab");
        assert_eq!(first["path"], "/a\"b");
        assert_eq!(first["upstream"], "127.0.0.1:8080");
        assert_eq!(first["apikey"], "k1");
        assert!(first["api"].is_null());
        // 20 lines of ~450 bytes in files of at most 2000: rotated, 2 kept.
        assert!(dir.join("access.log.1").exists() && dir.join("access.log.2").exists());
        assert!(!dir.join("access.log.3").exists());
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), u64::MAX);
        assert!(threshold(0.5) > u64::MAX / 3 && threshold(0.5) < u64::MAX / 3 * 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

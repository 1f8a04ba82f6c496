//! The end-to-end harness: real upstreams (std::net HTTP/1.1 servers on threads, behaviour chosen
//! by each test), the gateway started in-process or as the real binary, and clients (raw sockets,
//! curl, python3). Loopback only, every port ephemeral, every wait bounded, every process killed
//! when its guard drops.

#![allow(dead_code)]

pub mod kafka;
pub mod nginx;
pub mod pki;
pub mod stack;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gateway::config::HttpLimits;
use gateway::node::{Node, NodeOptions};
use gateway::runtime::IoMode;
use serde_json::{Value, json};

/// How long any single socket read or write may block before a test fails instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The start of the Python scripts `Binary::python` runs: the admin, data-plane and ledger URLs
/// and the admin token from the arguments, `call` (an admin API call that must answer 2xx by
/// default) and `wait` (polls a predicate for up to `within` seconds, else exits).
#[macro_export]
macro_rules! py_admin_prelude {
    () => {
        r#"
import json, sys, time, requests
admin, data, ledger, token = sys.argv[1:5]
A = {"Authorization": "Bearer " + token}
def call(method, path, body=None, ok=(200, 201)):
    r = requests.request(method, admin + path, headers=A, json=body, timeout=10)
    if ok and r.status_code not in ok:
        raise SystemExit(f"{method} {path} {body}: {r.status_code} {r.text}")
    return r
def wait(fn, within=10):
    end = time.time() + within
    while time.time() < end:
        if fn():
            return True
        time.sleep(0.02)
    raise SystemExit("timed out: " + fn.__doc__ if fn.__doc__ else "timed out")
"#
    };
}

/// Runs a test body on both IO drivers: `mod uring { #[test] fn name }` and `mod epoll { … }`.
/// The uring variant is skipped, with a note, only where io_uring cannot be built at all.
#[macro_export]
macro_rules! both_drivers {
    ($($name:ident),+ $(,)?) => {
        mod uring {
            $(
                #[test]
                fn $name() {
                    if !$crate::common::uring_available() {
                        eprintln!("skipped: io_uring is not available on this machine");
                        return;
                    }
                    super::$name(gateway::runtime::IoMode::Uring);
                }
            )+
        }
        mod epoll {
            $(
                #[test]
                fn $name() {
                    super::$name(gateway::runtime::IoMode::Epoll);
                }
            )+
        }
    };
}

/// Whether an io_uring runtime can be built here (checked once, on its own thread).
pub fn uring_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::thread::spawn(|| gateway::runtime::build(IoMode::Uring).is_ok())
            .join()
            .unwrap_or(false)
    })
}

/// The `--io` value of a mode.
pub fn io_flag(io: IoMode) -> &'static str {
    match io {
        IoMode::Auto => "auto",
        IoMode::Uring => "uring",
        IoMode::Epoll => "epoll",
    }
}

// ---------------------------------------------------------------------------------------------
// Checksums and generated bodies: large bodies are compared by length and FNV-1a, never held.

/// FNV-1a 64, streaming: the same value whatever the chunking.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, data: &[u8]) {
        let mut h = self.0;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

pub fn fnv(data: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.update(data);
    h.finish()
}

/// A block whose length is prime, so that a dropped, repeated or shifted block changes the
/// checksum of the stream built from it.
const PATTERN_LEN: usize = 65_521;

pub fn pattern_block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        (0..PATTERN_LEN)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8)
            .collect()
    })
}

/// The first `len` bytes of the pattern stream.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let block = pattern_block();
    while out.len() < len {
        let n = (len - out.len()).min(block.len());
        out.extend_from_slice(&block[..n]);
    }
    out
}

/// Calls `sink` with the pattern stream of `len` bytes, block by block.
pub fn for_pattern(len: u64, mut sink: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let block = pattern_block();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        sink(&block[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Length and checksum of the pattern stream of `len` bytes.
pub fn pattern_checksum(len: u64) -> u64 {
    let mut h = Fnv::default();
    let _ = for_pattern(len, |b| {
        h.update(b);
        Ok(())
    });
    h.finish()
}

// ---------------------------------------------------------------------------------------------
// The upstream.

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct UpRequest {
    pub method: String,
    pub target: String,
    pub path: String,
    pub query: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl UpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the upstream answers.
#[derive(Clone)]
pub enum Reply {
    /// 200 with a JSON description of the request (see [`Upstream`]).
    Echo,
    /// A fixed response; `content-length` is added unless `headers` frame the body themselves.
    Fixed {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// 200, chunked, with a pause before each chunk, then the trailers.
    Chunked {
        chunks: Vec<Vec<u8>>,
        trailers: Vec<(String, String)>,
        pause: Duration,
    },
    /// 200 with neither length nor chunking: the body ends when the upstream closes.
    CloseDelimited { body: Vec<u8> },
    /// Sleeps, then echoes.
    Slow { delay: Duration },
    /// Announces `declared` bytes, writes half of them, closes.
    Die { declared: usize },
    /// 200 with `len` bytes of the pattern stream, Content-Length framed.
    Big { len: u64 },
    /// These bytes as they are, then close.
    Raw(Vec<u8>),
    /// Chooses per request.
    Script(fn(&UpRequest) -> Reply),
}

/// What the upstream saw of a request body.
#[derive(Debug, Default, Clone)]
pub struct BodySeen {
    pub len: u64,
    pub fnv: u64,
    /// The first 64 KiB.
    pub sample: Vec<u8>,
    pub chunked: bool,
    pub trailers: Vec<(String, String)>,
}

const SAMPLE: usize = 64 * 1024;

struct UpShared {
    name: String,
    reply: Reply,
    /// Close every connection after its response without announcing it (stale-pool tests).
    silent_close: bool,
    /// Close a keep-alive connection idle this long, without announcing it.
    idle_close: Option<Duration>,
    stop: AtomicBool,
    connections: AtomicUsize,
    requests: AtomicUsize,
    log: Mutex<Vec<UpRequest>>,
}

/// A real HTTP/1.1 upstream on 127.0.0.1, port 0; one thread per connection.
///
/// The echo reply is `{"server", "conn", "conn_request", "method", "path", "query", "version",
/// "headers": [[name, value]…], "body_len", "body_fnv", "body" (first 64 KiB, lossy UTF-8),
/// "chunked", "trailers"}`.
pub struct Upstream {
    pub addr: SocketAddr,
    shared: Arc<UpShared>,
    accept: Option<JoinHandle<()>>,
}

impl Upstream {
    pub fn start(reply: Reply) -> Self {
        Self::start_with("up", reply, false, None)
    }

    pub fn named(name: &str, reply: Reply) -> Self {
        Self::start_with(name, reply, false, None)
    }

    pub fn start_with(
        name: &str,
        reply: Reply,
        silent_close: bool,
        idle_close: Option<Duration>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(UpShared {
            name: name.to_owned(),
            reply,
            silent_close,
            idle_close,
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                while !shared.stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let id = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
                            let shared = shared.clone();
                            std::thread::spawn(move || {
                                let _ = serve_upstream(stream, id, &shared);
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        Self {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Request heads received so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Acquire)
    }

    /// The request heads received so far.
    pub fn seen(&self) -> Vec<UpRequest> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` request heads arrived.
    pub fn wait_requests(&self, n: usize, within: Duration) -> bool {
        wait_until(within, || self.requests() >= n)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Polls `cond` every 5 ms until it holds or `within` passed.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read_line_crlf(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = reader.take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\r\n") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "line not ended by CRLF: {:?}",
                String::from_utf8_lossy(&line)
            ),
        ));
    }
    line.truncate(line.len() - 2);
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn parse_header(line: &str) -> io::Result<(String, String)> {
    let (name, value) = line.split_once(':').ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("bad header {line:?}"))
    })?;
    Ok((name.to_owned(), value.trim().to_owned()))
}

fn read_up_head(reader: &mut impl BufRead) -> io::Result<Option<UpRequest>> {
    let Some(line) = read_line_crlf(reader)? else {
        return Ok(None);
    };
    let mut parts = line.splitn(3, ' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let version = parts.next().unwrap_or_default().to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.clone(), String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line_crlf(reader)? else {
            return Err(io::ErrorKind::UnexpectedEof.into());
        };
        if line.is_empty() {
            break;
        }
        headers.push(parse_header(&line)?);
    }
    Ok(Some(UpRequest {
        method,
        target,
        path,
        query,
        version,
        headers,
    }))
}

/// Reads a body framed by Content-Length or chunked coding, hashing it as it goes.
fn read_framed_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    seen: &mut BodySeen,
) -> io::Result<()> {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut hash = Fnv::default();
    let mut take = |reader: &mut dyn BufRead, mut n: u64, seen: &mut BodySeen| -> io::Result<()> {
        while n > 0 {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let k = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            let data = &buf[..k];
            hash.update(data);
            if seen.sample.len() < SAMPLE {
                let room = SAMPLE - seen.sample.len();
                seen.sample.extend_from_slice(&data[..room.min(k)]);
            }
            seen.len += k as u64;
            reader.consume(k);
            n -= k as u64;
        }
        Ok(())
    };
    let chunked =
        find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        seen.chunked = true;
        loop {
            let line = read_line_crlf(reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                break;
            }
            take(reader, size, seen)?;
            let end = read_line_crlf(reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            if !end.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk not followed by CRLF",
                ));
            }
        }
        loop {
            let line = read_line_crlf(reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            if line.is_empty() {
                break;
            }
            seen.trailers.push(parse_header(&line)?);
        }
    } else if let Some(len) = find("content-length") {
        let len: u64 = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        take(reader, len, seen)?;
    }
    seen.fnv = hash.finish();
    Ok(())
}

fn serve_upstream(stream: TcpStream, id: usize, shared: &UpShared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut n = 0u64;
    loop {
        // Between requests: an idle connection is closed after `idle_close`, or after 30 s so
        // that no thread outlives its test by much.
        let idle = shared.idle_close.unwrap_or(Duration::from_secs(30));
        reader.get_ref().set_read_timeout(Some(idle))?;
        let Some(req) = read_up_head(&mut reader)? else {
            return Ok(());
        };
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(30)))?;
        n += 1;
        shared.log.lock().unwrap().push(req.clone());
        shared.requests.fetch_add(1, Ordering::AcqRel);
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut seen = BodySeen::default();
        read_framed_body(&mut reader, &req.headers, &mut seen)?;
        let mut reply = shared.reply.clone();
        while let Reply::Script(f) = reply {
            reply = f(&req);
        }
        let client_close = req
            .header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        let keep = write_up_reply(
            &mut writer,
            &req,
            &seen,
            &reply,
            shared,
            id,
            n,
            client_close,
        )?;
        if !keep || client_close || shared.silent_close {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_up_reply(
    w: &mut TcpStream,
    req: &UpRequest,
    seen: &BodySeen,
    reply: &Reply,
    shared: &UpShared,
    conn: usize,
    conn_request: u64,
    client_close: bool,
) -> io::Result<bool> {
    let close_header = if client_close {
        "connection: close\r\n"
    } else {
        ""
    };
    match reply {
        Reply::Echo | Reply::Slow { .. } => {
            if let Reply::Slow { delay } = reply {
                std::thread::sleep(*delay);
            }
            let body = json!({
                "server": shared.name,
                "conn": conn,
                "conn_request": conn_request,
                "method": req.method,
                "target": req.target,
                "path": req.path,
                "query": req.query,
                "version": req.version,
                "headers": req.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                "body_len": seen.len,
                "body_fnv": seen.fnv,
                "body": String::from_utf8_lossy(&seen.sample),
                "chunked": seen.chunked,
                "trailers": seen.trailers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
            })
            .to_string();
            write!(
                w,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-upstream: {}\r\n\
                 content-length: {}\r\n{close_header}\r\n",
                shared.name,
                body.len()
            )?;
            if req.method != "HEAD" {
                w.write_all(body.as_bytes())?;
            }
            Ok(true)
        }
        Reply::Fixed {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} Fixed\r\n");
            let framed = headers.iter().any(|(n, _)| {
                n.eq_ignore_ascii_case("content-length")
                    || n.eq_ignore_ascii_case("transfer-encoding")
            });
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            // 1xx, 204 and 304 have no body, and 204 no length.
            if !framed && !matches!(status, 100..=199 | 204 | 304) {
                head.push_str(&format!("content-length: {}\r\n", body.len()));
            }
            head.push_str(close_header);
            head.push_str("\r\n");
            w.write_all(head.as_bytes())?;
            if req.method != "HEAD" {
                w.write_all(body)?;
            }
            Ok(true)
        }
        Reply::Chunked {
            chunks,
            trailers,
            pause,
        } => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\
                 {close_header}\r\n"
            )?;
            for c in chunks {
                std::thread::sleep(*pause);
                write!(w, "{:x}\r\n", c.len())?;
                w.write_all(c)?;
                w.write_all(b"\r\n")?;
            }
            let mut end = String::from("0\r\n");
            for (n, v) in trailers {
                end.push_str(&format!("{n}: {v}\r\n"));
            }
            end.push_str("\r\n");
            w.write_all(end.as_bytes())?;
            Ok(true)
        }
        Reply::CloseDelimited { body } => {
            w.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")?;
            w.write_all(body)?;
            Ok(false)
        }
        Reply::Die { declared } => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {declared}\r\n\r\n"
            )?;
            w.write_all(&pattern(declared / 2))?;
            w.flush()?;
            // Give the bytes time to leave before the FIN, as a crashing server's would.
            std::thread::sleep(Duration::from_millis(20));
            Ok(false)
        }
        Reply::Big { len } => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\n{close_header}\r\n"
            )?;
            for_pattern(*len, |b| w.write_all(b))?;
            Ok(true)
        }
        Reply::Raw(bytes) => {
            w.write_all(bytes)?;
            std::thread::sleep(Duration::from_millis(20));
            Ok(false)
        }
        Reply::Script(_) => Ok(false),
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// Entities.

/// Entities from a Tollgate entity document; any problem fails the test.
pub fn entities(doc: &Value) -> gateway_model::import::Entities {
    let import =
        gateway_model::import::import_value(doc, Some(gateway_model::import::Dialect::Tollgate))
            .unwrap_or_else(|p| panic!("entity document refused: {p:?}"));
    assert!(
        import.problems.is_empty(),
        "entity document problems: {:?}",
        import.problems
    );
    import.entities
}

/// A backend whose targets are `127.0.0.1:port` for each port.
pub fn backend(ports: &[u16]) -> Value {
    json!({
        "targets": ports.iter().map(|p| json!({"hostname": "127.0.0.1", "port": p})).collect::<Vec<_>>(),
        "load_balancing": {"type": "RoundRobin"},
    })
}

/// A route for `domain` (`host` or `host/path`) to an inline backend.
pub fn route(id: &str, domain: &str, backend: Value) -> Value {
    json!({"id": id, "name": id, "frontend": {"domains": [domain]}, "backend": backend})
}

/// A route to a mock backend answering `status` and `body`.
pub fn mock_route(id: &str, domain: &str, status: u16, body: &str) -> Value {
    route(
        id,
        domain,
        json!({"mock": {"status": status, "headers": {"content-type": "text/plain"}, "body": body}}),
    )
}

/// `{"routes": routes}` plus a mock route `ok.test` answering 200 `ok`.
pub fn doc(routes: Vec<Value>) -> Value {
    let mut routes = routes;
    routes.push(mock_route("ok", "ok.test", 200, "ok"));
    json!({ "routes": routes })
}

// ---------------------------------------------------------------------------------------------
// The gateway in-process.

/// Limits for tests: the defaults, with a short drain so that a test's end is quick.
pub fn test_limits() -> HttpLimits {
    HttpLimits {
        drain_timeout: Duration::from_secs(2),
        ..HttpLimits::default()
    }
}

/// The options of an in-process node `id`: HTTP on 127.0.0.1:0, no HTTPS, no access log,
/// [`test_limits`], UTC calendar, names resolved hourly, no Kafka, the default journal. Callers
/// change what they test with struct update: `NodeOptions { kafka: .., ..node_options(..) }`.
pub fn node_options(id: &str, cores: usize, io: IoMode, data_dir: Option<&Path>) -> NodeOptions {
    NodeOptions {
        node_id: id.to_owned(),
        cores,
        pin: false,
        http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        https: None,
        access_log: None,
        limits: test_limits(),
        io,
        resolve_every: Duration::from_secs(3600),
        calendar: gateway_core::window::Calendar::utc(),
        data_dir: data_dir.map(Path::to_owned),
        kafka: None,
        journal: Default::default(),
    }
}

/// A node started in-process on 127.0.0.1:0, shut down when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    node: Option<Node>,
}

impl Gateway {
    pub fn start(io: IoMode, doc: &Value) -> Self {
        Self::start_with(io, doc, test_limits(), 1)
    }

    pub fn start_with(io: IoMode, doc: &Value, limits: HttpLimits, cores: usize) -> Self {
        let options = NodeOptions {
            limits,
            ..node_options("e2e", cores, io, None)
        };
        let node = Node::start(&options, entities(doc)).unwrap();
        Self {
            addr: node.addr(),
            node: Some(node),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// One request on a fresh connection.
    pub fn get(&self, host: &str, path: &str) -> Response {
        let mut c = self.client();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        c.response()
    }

    /// The node's `/metrics` text (the cores' part: published once per tick).
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        if let Some(node) = &self.node {
            node.publisher().render_metrics(&mut out);
        }
        out
    }

    /// Asserts the gateway still serves a new connection (after a connection it closed).
    pub fn assert_serving(&self) {
        let r = self.get("ok.test", "/");
        assert_eq!(r.status, 200, "the gateway stopped serving: {r:?}");
        assert_eq!(r.body, b"ok");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client.

/// A response as a client received it.
#[derive(Clone, Default)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// Interim (1xx) statuses received before this response.
    pub interim: Vec<u16>,
    pub body: Vec<u8>,
    pub chunked: bool,
    pub trailers: Vec<(String, String)>,
    /// Neither length nor chunking: the body ended with the connection.
    pub until_close: bool,
}

/// Failure messages show the body as text, cut at 2 KiB.
impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.body[..self.body.len().min(2048)];
        f.debug_struct("Response")
            .field("version", &self.version)
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .field("interim", &self.interim)
            .field("body_len", &self.body.len())
            .field("body", &String::from_utf8_lossy(shown))
            .field("chunked", &self.chunked)
            .field("trailers", &self.trailers)
            .field("until_close", &self.until_close)
            .finish()
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the response says the connection closes.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }

    /// Asserts a gateway error: status, JSON code, `otoroshi-error: true`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?} body {}", self.text());
        assert_eq!(self.header("otoroshi-error"), Some("true"), "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let body = self.json();
        assert_eq!(body["error"], code, "{body}");
        assert!(body["error_description"].is_string(), "{body}");
    }
}

/// The headers an echo saw: `[[name, value]…]` → pairs.
pub fn echo_headers(echo: &Value) -> Vec<(String, String)> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The values of `name` an echo saw (case-insensitive).
pub fn echo_header_values(echo: &Value, name: &str) -> Vec<String> {
    echo_headers(echo)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

pub fn echo_header(echo: &Value, name: &str) -> Option<String> {
    let mut v = echo_header_values(echo, name);
    assert!(
        v.len() <= 1,
        "{name} sent {} times upstream: {v:?}",
        v.len()
    );
    v.pop()
}

/// Where a streamed response body goes.
pub type BodySink<'a> = &'a mut dyn FnMut(&[u8]);

/// A raw client connection with strict response parsing (CRLF everywhere).
pub struct Client {
    reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        Self::try_connect(addr).unwrap()
    }

    /// Connects, returning the error (the gateway is down) instead of failing.
    pub fn try_connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
            stream,
        })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends, but an error (the gateway closed early) is returned rather than failing.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    /// Reads one response (after any interim ones), holding its body.
    pub fn response(&mut self) -> Response {
        self.try_response().unwrap()
    }

    /// Reads the response to a HEAD request.
    pub fn head_response(&mut self) -> Response {
        self.try_response_inner(true, None).unwrap()
    }

    /// Reads one response; its body goes to `sink` and is not held when `sink` is given.
    pub fn response_streamed(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<Response> {
        self.try_response_inner(false, Some(sink))
    }

    /// Reads one response; an error (closed early, malformed) is returned, not a failure.
    pub fn try_response(&mut self) -> io::Result<Response> {
        self.try_response_inner(false, None)
    }

    fn try_response_inner(
        &mut self,
        head_request: bool,
        mut sink: Option<BodySink<'_>>,
    ) -> io::Result<Response> {
        let mut r = Response::default();
        loop {
            let line = read_line_crlf(&mut self.reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            let mut parts = line.splitn(3, ' ');
            r.version = parts.next().unwrap_or_default().to_owned();
            r.status = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("status line {line:?}"))
            })?;
            r.reason = parts.next().unwrap_or_default().to_owned();
            r.headers.clear();
            loop {
                let line = read_line_crlf(&mut self.reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
                if line.is_empty() {
                    break;
                }
                r.headers.push(parse_header(&line)?);
            }
            if (100..200).contains(&r.status) && r.status != 101 {
                r.interim.push(r.status);
                continue;
            }
            break;
        }
        if head_request || r.status == 204 || r.status == 304 {
            return Ok(r);
        }
        let mut body = Vec::new();
        let mut deliver = |data: &[u8], body: &mut Vec<u8>| match sink.as_mut() {
            Some(s) => s(data),
            None => body.extend_from_slice(data),
        };
        let chunked = r
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            r.chunked = true;
            loop {
                let line = read_line_crlf(&mut self.reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("chunk size {line:?}"))
                })?;
                if size == 0 {
                    break;
                }
                let mut left = size;
                while left > 0 {
                    let buf = self.reader.fill_buf()?;
                    if buf.is_empty() {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let k = buf.len().min(left);
                    deliver(&buf[..k], &mut body);
                    self.reader.consume(k);
                    left -= k;
                }
                let end = read_line_crlf(&mut self.reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
                if !end.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "chunk without CRLF",
                    ));
                }
            }
            loop {
                let line = read_line_crlf(&mut self.reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
                if line.is_empty() {
                    break;
                }
                r.trailers.push(parse_header(&line)?);
            }
        } else if let Some(len) = r.header("content-length") {
            let mut left: u64 = len
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
            while left > 0 {
                let buf = self.reader.fill_buf()?;
                if buf.is_empty() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                deliver(&buf[..k], &mut body);
                self.reader.consume(k);
                left -= k as u64;
            }
        } else {
            r.until_close = true;
            loop {
                let buf = self.reader.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                let k = buf.len();
                deliver(&buf[..k], &mut body);
                self.reader.consume(k);
            }
        }
        r.body = body;
        Ok(r)
    }

    /// What the next read gives: `Ok(0)` when the peer closed, `Ok(n)` for bytes, or the error
    /// (`WouldBlock`/`TimedOut` when nothing came within `within`).
    pub fn read_some(&mut self, within: Duration) -> io::Result<Vec<u8>> {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = if self.reader.buffer().is_empty() {
            self.reader.read(&mut buf)
        } else {
            let b = self.reader.buffer().to_vec();
            self.reader.consume(b.len());
            buf[..b.len()].copy_from_slice(&b);
            Ok(b.len())
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        n.map(|n| buf[..n].to_vec())
    }

    /// Asserts the gateway closes the connection within `within` without sending anything more.
    pub fn assert_closed_within(&mut self, within: Duration) {
        match self.read_some(within) {
            Ok(b) if b.is_empty() => {}
            Ok(b) => panic!(
                "expected the connection closed, got {} more bytes: {:?}",
                b.len(),
                String::from_utf8_lossy(&b)
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the connection closed within {within:?}, got {e}"),
        }
    }

    pub fn assert_closed(&mut self) {
        self.assert_closed_within(Duration::from_secs(5));
    }

    /// Asserts nothing arrives and the connection stays open for `for_`.
    pub fn assert_open_for(&mut self, for_: Duration) {
        match self.read_some(for_) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Ok(b) if b.is_empty() => panic!("the gateway closed the connection"),
            other => panic!("expected silence, got {other:?}"),
        }
    }
}

/// `GET path` on `host` with extra header lines (each `Name: value`).
pub fn get_request(host: &str, path: &str, extra: &[&str]) -> Vec<u8> {
    let mut s = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Child processes: curl, python3 and the gateway binary.

/// A unique directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tollgate-e2e-{}-{n}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child killed (and reaped) when dropped.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Waits up to `within` for the child to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.0.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a finished child printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = from.read_to_end(&mut out);
        out
    })
}

/// Runs `cmd` to completion, killed (and the test failed) after `within`.
pub fn run(mut cmd: Command, within: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let mut guard = ChildGuard(Some(child));
    let status = guard
        .wait_exit(within)
        .unwrap_or_else(|| panic!("{cmd:?} did not finish within {within:?}"));
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
    }
}

/// `curl -sS` with `args`, bounded to 30 s.
pub fn curl(args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "--noproxy", "*"])
        .args(args);
    run(cmd, Duration::from_secs(40))
}

/// `python3 -c script args…`, bounded to 60 s; fails the test unless it exits 0.
pub fn python(script: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "python3 failed: {}\nstdout: {}",
        out.stderr,
        out.stdout_text()
    );
    out.stdout_text()
}

/// Resident memory fields of `/proc/PID/status`, in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The real `gateway` binary running a config in its own temp dir.
pub struct Binary {
    pub addr: SocketAddr,
    pub child: ChildGuard,
    log: Arc<Mutex<String>>,
    pub dir: TempDir,
}

/// One admin API request with the bearer `token` on a fresh connection (`Connection: close`):
/// the status and the JSON body (`Null` when the body is not JSON).
pub fn admin_call(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    let mut raw = String::new();
    let _ = conn.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// One admin API GET with the bearer `token`: the body as text.
pub fn admin_text(addr: SocketAddr, token: &str, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = conn.read_to_string(&mut raw);
    raw.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// A config for the binary: listener on port 0, the admin/ledger on port 0, one core.
pub fn binary_config(http_section: &str) -> String {
    format!(
        "[node]\nid = \"e2e\"\ncores = 1\n\n[listeners.http]\naddr = \"127.0.0.1:0\"\n\n\
         [admin]\naddr = \"127.0.0.1:0\"\ntoken = \"e2e-admin-token\"\n\n\
         [ledger]\naddr = \"127.0.0.1:0\"\n\n[seed]\nentities = \"entities.json\"\n\n{http_section}"
    )
}

impl Binary {
    /// Writes `tollgate.toml` and `entities.json` into a fresh temp dir and starts the binary.
    pub fn start(config: &str, entities: &Value, io: IoMode) -> Self {
        let dir = TempDir::new("bin");
        std::fs::write(dir.path().join("tollgate.toml"), config).unwrap();
        std::fs::write(
            dir.path().join("entities.json"),
            serde_json::to_vec_pretty(entities).unwrap(),
        )
        .unwrap();
        Self::start_in(dir, io)
    }

    /// Starts the binary on `dir/tollgate.toml`; the listener must be on port 0: the bound
    /// address is read from the `serving` log line.
    pub fn start_in(dir: TempDir, io: IoMode) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.arg("--config")
            .arg(dir.path().join("tollgate.toml"))
            .arg("--io")
            .arg(io_flag(io))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap();
                    log.push_str(&strip_ansi(&line));
                    log.push('\n');
                }
            });
        }
        let mut child = ChildGuard(Some(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = log
                .lock()
                .unwrap()
                .lines()
                .filter(|l| l.contains("serving"))
                .find_map(|l| {
                    let at = l.find("addr=")?;
                    l[at + 5..]
                        .split_whitespace()
                        .next()?
                        .parse::<SocketAddr>()
                        .ok()
                });
            if let Some(addr) = found {
                break addr;
            }
            if let Some(status) = child.wait_exit(Duration::ZERO) {
                panic!(
                    "gateway exited ({status}) before serving:\n{}",
                    log.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not log its address within 30 s:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // The port answers.
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
            "gateway port {addr} does not answer"
        );
        Self {
            addr,
            child,
            log,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin API's address, read from the `admin API listening admin_addr=…` log line.
    pub fn admin_addr(&self) -> SocketAddr {
        self.logged_addr("admin_addr=")
    }

    /// Runs a Python script with the admin, data-plane and ledger URLs and the admin `token`
    /// as its arguments; returns the JSON of its last output line.
    pub fn python(&self, script: &str, token: &str) -> Value {
        let admin = self.logged_addr("admin_addr=");
        let ledger = self.logged_addr("ledger_addr=");
        let out = python(
            script,
            &[
                &format!("http://{admin}"),
                &format!("http://{}", self.addr),
                &format!("http://{ledger}"),
                token,
            ],
        );
        serde_json::from_str(out.trim().lines().last().unwrap_or("null"))
            .unwrap_or_else(|e| panic!("{e}: {out}"))
    }
    /// The address a log line names after `key` (`https_addr=`, `ledger_addr=`), waiting up to
    /// 10 s for it.
    pub fn logged_addr(&self, key: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(a) = self.log().lines().find_map(|l| {
                let at = l.find(key)?;
                l[at + key.len()..].split_whitespace().next()?.parse().ok()
            }) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no {key} logged:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS")
    }

    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM")
    }

    /// Sends SIGTERM.
    #[allow(unsafe_code)]
    pub fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) takes plain integers; `pid` is our own child, not yet reaped (the
        // guard reaps it only when dropped), so the id cannot name another process.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }
}

/// Raises this process's soft RLIMIT_NOFILE to `want` (or the hard limit); returns the result.
#[allow(unsafe_code)]
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the `rlimit` on this stack frame,
    // which outlives both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let target = want.min(lim.rlim_max);
        if lim.rlim_cur < target {
            lim.rlim_cur = target;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            }
        }
    }
    lim.rlim_cur
}

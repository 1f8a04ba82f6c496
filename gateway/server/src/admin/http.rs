//! A small blocking HTTP/1.1 server for the admin API: one thread per connection (bounded),
//! keep-alive, `Content-Length` bodies only, bounded heads and bodies, read timeouts. The admin
//! API is low-traffic and must never run on a core, so plain threads are the right tool.

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request head.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body (bulk imports included).
pub const MAX_BODY: usize = 32 << 20;
/// Most concurrent connections; more are answered 503 and closed.
const MAX_CONNECTIONS: usize = 64;
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE_POLL: Duration = Duration::from_millis(200);

/// A request.
#[derive(Debug)]
pub struct Request {
    /// Method, upper case as sent.
    pub method: String,
    /// Path without the query, percent-decoded.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header fields (names lower case).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Self {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body,
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type,
            body: body.into_bytes(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// A running listener.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves each request with `handler` on connection threads.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn start<H>(addr: SocketAddr, handler: H) -> io::Result<Self>
    where
        H: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let active = Arc::new(AtomicUsize::new(0));
        let counted = active.clone();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tollgate-admin".to_owned())
            .spawn(move || {
                while !stopping.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                                let busy = Response::json(
                                    503,
                                    &serde_json::json!({"error": "busy",
                                        "error_description": "too many admin connections"}),
                                );
                                let mut stream = stream;
                                let _ = write_response(&mut stream, &busy, false);
                                continue;
                            }
                            active.fetch_add(1, Ordering::AcqRel);
                            let handler = handler.clone();
                            let active = active.clone();
                            let stopping = stopping.clone();
                            let spawned = std::thread::Builder::new()
                                .name("tollgate-admin-conn".to_owned())
                                .spawn(move || {
                                    serve(stream, &*handler, &stopping);
                                    active.fetch_sub(1, Ordering::AcqRel);
                                });
                            if spawned.is_err() {
                                tracing::warn!("admin API: cannot spawn a connection thread");
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "admin API: accept failed");
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })?;
        Ok(Self {
            addr,
            stop,
            active: counted,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits (up to 2 s) for open connections to end: idle ones end within
    /// a fraction of a second, a request in progress is answered first.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while self.active.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn serve(stream: TcpStream, handler: &dyn Fn(&Request) -> Response, stop: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        // Between requests, wake up regularly so that a stopping server lets go of idle
        // keep-alive connections (and of the entity log they reach) within a fraction of a second.
        let mut idle = Duration::ZERO;
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            let _ = reader.get_ref().set_read_timeout(Some(IDLE_POLL));
            match reader.fill_buf() {
                Ok([]) => return,
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    idle += IDLE_POLL;
                    if idle >= READ_TIMEOUT {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
        let _ = reader.get_ref().set_read_timeout(Some(READ_TIMEOUT));
        let request = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(problem) => {
                let _ = write_response(&mut writer, &problem, false);
                return;
            }
        };
        let close = stop.load(Ordering::Acquire)
            || request
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let response = handler(&request);
        if write_response(&mut writer, &response, !close).is_err() || close {
            return;
        }
    }
}

fn bad(status: u16, code: &str, text: &str) -> Response {
    Response::json(
        status,
        &serde_json::json!({"error": code, "error_description": text}),
    )
}

/// Reads one request; `Ok(None)` at a clean end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>, Response> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = reader
            .by_ref()
            .take((MAX_HEAD + 1 - head.len().min(MAX_HEAD)) as u64)
            .read_until(b'\n', &mut head)
            .map_err(|_| bad(408, "timeout", "request head not received in time"))?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(bad(400, "bad_request", "incomplete request head"));
        }
        if head.len() > MAX_HEAD {
            return Err(bad(431, "head_too_large", "request head too large"));
        }
        let line = head.get(before..).unwrap_or_default();
        if (line == b"\r\n" || line == b"\n") && before > 0 {
            break;
        }
        if (line == b"\r\n" || line == b"\n") && before == 0 {
            head.clear();
        }
    }
    let mut fields = [httparse::EMPTY_HEADER; 100];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(bad(400, "bad_request", "malformed request head")),
    }
    let method = parsed.method.unwrap_or("GET").to_owned();
    let target = parsed.path.unwrap_or("/");
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(bad(
            411,
            "length_required",
            "chunked bodies are not accepted; send Content-Length",
        ));
    }
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let length = match lengths.as_slice() {
        [] => 0,
        [one] => one
            .parse::<usize>()
            .map_err(|_| bad(400, "bad_request", "invalid Content-Length"))?,
        _ => return Err(bad(400, "bad_request", "duplicate Content-Length")),
    };
    if length > MAX_BODY {
        return Err(bad(413, "body_too_large", "request body too large"));
    }
    let mut body = vec![0u8; length];
    reader
        .read_exact(&mut body)
        .map_err(|_| bad(400, "bad_request", "incomplete request body"))?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    Ok(Some(Request {
        method,
        path: decode(path),
        query,
        headers,
        body,
    }))
}

/// Percent-decoding (`+` is a space in queries; harmless in paths of ids that have none).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b);
            }
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn write_response(stream: &mut TcpStream, r: &Response, keep_alive: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
        r.status,
        gateway_core::respond::reason_phrase(r.status),
        r.content_type,
        r.body.len()
    );
    for (name, value) in &r.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(if keep_alive {
        "connection: keep-alive\r\n\r\n"
    } else {
        "connection: close\r\n\r\n"
    });
    stream.write_all(head.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()
}

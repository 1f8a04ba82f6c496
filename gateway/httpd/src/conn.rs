//! One connection: requests read under a deadline, authorized from the head, bodies read only
//! after that and only up to the handler's limit, answers written, keep-alive.

use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gateway_core::http::{
    BodyDecoder, BodyFraming, BodyLimits, ChunkedLimits, HeadLimits, HeadParser, HttpError,
};

use crate::handler::Handler;
use crate::limits::Limits;
use crate::request::{Head, Request};
use crate::response::Response;
use crate::server::Stats;

/// How often a connection waiting for its next request looks at the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// After an answer that leaves unread bytes (an early refusal, a framing error), the connection
/// reads and drops at most this much, for at most [`LINGER_TIME`], before closing: closing with
/// unread bytes makes the kernel send a reset, which can destroy the answer before the client
/// reads it.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);
/// The first body bytes are reserved up front at most this much (then the buffer grows with
/// what actually arrives).
const BODY_RESERVE: u64 = 64 * 1024;

/// What a read brought.
enum Fill {
    /// Bytes were appended to the buffer.
    Data,
    /// The peer closed its side.
    Eof,
    /// The deadline passed.
    Timeout,
    /// The socket failed.
    Failed,
}

/// After an exchange: serve the next request or close.
enum Next {
    KeepAlive,
    Close,
}

pub(crate) struct Connection<'a, H: Handler> {
    stream: TcpStream,
    peer: SocketAddr,
    limits: &'a Limits,
    stop: &'a AtomicBool,
    handler: &'a H,
    stats: &'a Stats,
    /// Bytes received and not consumed yet: the current head, or body bytes, or what a client
    /// pipelined after them. Bounded by the head limit plus one read.
    buf: Vec<u8>,
    parser: HeadParser,
}

impl<'a, H: Handler> Connection<'a, H> {
    pub(crate) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        limits: &'a Limits,
        stop: &'a AtomicBool,
        handler: &'a H,
        stats: &'a Stats,
    ) -> Self {
        let parser = HeadParser::new(HeadLimits {
            max_head_bytes: limits.max_head_bytes,
            max_headers: limits.max_headers,
        });
        Self {
            stream,
            peer,
            limits,
            stop,
            handler,
            stats,
            buf: Vec::new(),
            parser,
        }
    }

    /// Serves requests until the peer leaves, a limit is hit, or the server stops.
    pub(crate) fn run(mut self) {
        let _ = self.stream.set_nodelay(true);
        let _ = self
            .stream
            .set_write_timeout(Some(nonzero(self.limits.write_timeout)));
        // A new connection's first request must be whole within the request timeout of the
        // accept (silence first does not buy more time); a kept-alive connection waits at most
        // the idle timeout for its next request, which then has the request timeout from its
        // first byte.
        let accepted = Instant::now();
        let mut first = true;
        loop {
            let deadline = if first {
                let deadline = accepted + self.limits.request_timeout;
                if self.buf.is_empty() && !self.wait_for_request(deadline) {
                    return;
                }
                deadline
            } else {
                let idle_until = Instant::now() + self.limits.idle_timeout;
                if self.buf.is_empty() && !self.wait_for_request(idle_until) {
                    return;
                }
                Instant::now() + self.limits.request_timeout
            };
            first = false;
            match self.exchange(deadline) {
                Next::KeepAlive => {}
                Next::Close => return,
            }
        }
    }

    /// One request, from its first byte (already in `buf`) to its answer.
    fn exchange(&mut self, deadline: Instant) -> Next {
        let head = match self.read_head(deadline) {
            Ok(head) => head,
            Err(next) => return next,
        };
        if let Err(refusal) = self.handler.authorize(&head) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            // Without a body the connection is still in sync and may go on.
            let keep_alive = head.keep_alive && !head.has_body() && !self.stopping();
            return self.respond(&head, &refusal, keep_alive);
        }
        let limit = self.handler.body_limit(&head);
        let body = match self.read_body(&head, limit, deadline) {
            Ok(body) => body,
            Err(next) => return next,
        };
        let request = Request { head, body };
        let response = self.handler.handle(&request);
        let keep_alive = request.head.keep_alive && !self.stopping();
        self.respond(&request.head, &response, keep_alive)
    }

    /// Reads and parses a head; `Err` when the exchange ended instead (answered or not).
    fn read_head(&mut self, deadline: Instant) -> Result<Head, Next> {
        self.parser.reset();
        loop {
            let peer = self.peer;
            let parsed = self
                .parser
                .parse_request(&self.buf)
                .map(|found| found.map(|h| (Head::new(&h, peer), h.head_len())));
            match parsed {
                Ok(Some((head, len))) => {
                    self.buf.drain(..len.min(self.buf.len()));
                    return Ok(head);
                }
                Ok(None) if self.buf.len() > self.limits.max_head_bytes => {
                    return Err(self.fail(Response::error(
                        431,
                        "head_too_large",
                        "message head exceeds the size limit",
                    )));
                }
                Ok(None) => {}
                Err(e) => return Err(self.fail(codec_error(e))),
            }
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Timeout => return Err(self.timed_out()),
                // A head cut short by the peer: nobody is left to answer.
                Fill::Eof | Fill::Failed => return Err(Next::Close),
            }
        }
    }

    /// Reads an authorized request's body, at most `limit` bytes, into a buffer that grows with
    /// the bytes received.
    fn read_body(&mut self, head: &Head, limit: u64, deadline: Instant) -> Result<Vec<u8>, Next> {
        let limits = BodyLimits {
            max_body_bytes: limit,
            chunked: ChunkedLimits::default(),
        };
        let mut decoder = match BodyDecoder::request(head.framing, limits) {
            Ok(d) => d,
            // A declared length above the limit: refused before a byte of it is read.
            Err(e) => return Err(self.fail_for(head, codec_error(e))),
        };
        if decoder.is_done() {
            return Ok(Vec::new());
        }
        if head.expect_continue
            && self
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .is_err()
        {
            return Err(Next::Close);
        }
        let reserve = match head.framing {
            BodyFraming::ContentLength(n) => n.min(BODY_RESERVE),
            _ => 0,
        };
        let mut body = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
        loop {
            if !self.buf.is_empty() {
                let decoded = match decoder.decode(&self.buf) {
                    Ok(d) => d,
                    Err(e) => return Err(self.fail_for(head, codec_error(e))),
                };
                if let Some(data) = self.buf.get(decoded.data.clone()) {
                    body.extend_from_slice(data);
                }
                self.buf.drain(..decoded.consumed.min(self.buf.len()));
                if decoded.done {
                    return Ok(body);
                }
                if decoded.consumed > 0 {
                    continue;
                }
            }
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Timeout => return Err(self.timed_out()),
                Fill::Eof => {
                    return Err(self.fail_for(
                        head,
                        Response::error(
                            400,
                            "incomplete_body",
                            "connection closed before the body was complete",
                        ),
                    ));
                }
                Fill::Failed => return Err(Next::Close),
            }
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Waits (until `until`, looking at the stop flag) for the first bytes of a request;
    /// `false` when none came (the peer left, the time passed, the server is stopping).
    fn wait_for_request(&mut self, until: Instant) -> bool {
        loop {
            if self.stopping() {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.read_some(left.min(IDLE_POLL)) {
                Fill::Data => return true,
                Fill::Timeout => {}
                Fill::Eof | Fill::Failed => return false,
            }
        }
    }

    /// Reads more bytes, waiting at most until `deadline`: each read waits only for the time
    /// left, so trickled bytes do not extend it.
    fn fill(&mut self, deadline: Instant) -> Fill {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Fill::Timeout;
            }
            match self.read_some(left) {
                Fill::Timeout => {}
                other => return other,
            }
        }
    }

    /// One read, waiting at most `wait`.
    fn read_some(&mut self, wait: Duration) -> Fill {
        if self.stream.set_read_timeout(Some(nonzero(wait))).is_err() {
            return Fill::Failed;
        }
        let mut chunk = [0u8; READ_CHUNK];
        match self.stream.read(&mut chunk) {
            Ok(0) => Fill::Eof,
            Ok(n) => {
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                Fill::Data
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Fill::Timeout
            }
            Err(_) => Fill::Failed,
        }
    }

    /// Writes `response` (no body in answer to HEAD).
    fn respond(&mut self, head: &Head, response: &Response, keep_alive: bool) -> Next {
        let written = write_response(&mut self.stream, response, keep_alive, head.is_head());
        if written.is_err() || !keep_alive {
            if written.is_ok() {
                self.linger();
            }
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// The request took longer than its deadline: 408 and close.
    fn timed_out(&mut self) -> Next {
        self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %self.peer, "request not received before its deadline");
        self.fail(Response::error(
            408,
            "request_timeout",
            "the request was not received in time",
        ))
    }

    /// Answers a request whose head could not be used, and closes.
    fn fail(&mut self, response: Response) -> Next {
        if write_response(&mut self.stream, &response, false, false).is_ok() {
            self.linger();
        }
        Next::Close
    }

    /// Answers `head`'s request with an error, and closes.
    fn fail_for(&mut self, head: &Head, response: Response) -> Next {
        if response.status == 413 {
            self.stats.too_large.fetch_add(1, Ordering::Relaxed);
        }
        self.respond(head, &response, false)
    }

    /// Closes gracefully: stops sending, then drops what the peer still sends for a bounded
    /// time, so that the answer is not destroyed by a reset.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let until = Instant::now() + LINGER_TIME;
        let mut budget = LINGER_BYTES;
        let mut sink = [0u8; 8 * 1024];
        while budget > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.stream.read(&mut sink) {
                Ok(0) | Err(_) => return,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    }
}

/// A framing or syntax error of gateway-core's codec as an answer.
fn codec_error(e: HttpError) -> Response {
    Response::error(e.status(), e.code(), &e.kind().to_string())
}

/// `set_read_timeout(Some(0))` is an error: at least a millisecond.
fn nonzero(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

/// Writes a response; the body is left out when `head_only`.
pub(crate) fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut out = response.encode_head(keep_alive);
    if !head_only {
        if response.body.len() <= 64 * 1024 {
            out.extend_from_slice(&response.body);
        } else {
            stream.write_all(&out)?;
            out.clear();
            stream.write_all(&response.body)?;
        }
    }
    if !out.is_empty() {
        stream.write_all(&out)?;
    }
    stream.flush()
}

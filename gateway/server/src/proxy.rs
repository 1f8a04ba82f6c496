//! One client connection: HTTP/1.1 requests handled one after another (pipelined requests are
//! answered in order), each routed, checked by its flow (gateway-core) and proxied to a target,
//! with both bodies streamed through fixed buffers (never buffered whole).
//!
//! The sans-IO decisions (parsing, framing, routing, flow, error bodies) come from gateway-core;
//! this module moves bytes, keeps time and owns the sockets. It must never panic, block, log per
//! request at info or above, or allocate per request once its buffers have grown: the read
//! buffer, the head buffer and the parser are reused for every request of the connection.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::stream::Stream;
use gateway_core::balance::{Attempts, FailureKind, Outcome, RetrySchedule, Step, UpstreamError};
use gateway_core::http::{
    BodyDecoder, BodyFraming, BodyLimits, HeadLimits, HeadParser, HttpError, Method, Side,
};
use gateway_core::respond::ErrorReply;
use gateway_core::rewrite;

use crate::core::{Core, now_ms};
use crate::upstream::{ConnectError, PoolKey, UpConn};

mod forward;

/// Initial read buffer of a client connection; it grows (up to the head limit) only for a head
/// that does not fit.
const CLIENT_BUF: usize = 16 * 1024;

/// What to do after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// A client connection's reusable state.
struct Conn {
    client: Stream,
    peer: SocketAddr,
    /// Unread client bytes are `buf[..len]`.
    buf: Vec<u8>,
    /// Heads being written (upstream request head, response head, error responses).
    out: Vec<u8>,
    /// The quota header lines of a refusal (reused).
    hdrs: Vec<u8>,
    /// The canonical path of the current request (reused).
    path: String,
    /// The verified client certificate of a TLS connection.
    client_cert: Option<Rc<gateway_core::flow::ClientCert>>,
    parser: HeadParser,
    /// The current request's id (every response carries it, refusals included).
    rid: u64,
    /// The current request's trace (its id goes into error bodies and the access log).
    trace: Option<gateway_core::trace::TraceContext>,
    /// What the access log needs, kept only when the access log is on: the method and the
    /// canonical host (copied out of the head), whether this request is sampled, when the
    /// upstream exchange started, the target and the time to its response head, and the code of
    /// the error the gateway answered.
    access: AccessFacts,
    /// The current request's response status and byte counts (usage events).
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
}

/// Everything the request path learnt from the head, owned, so that the buffer the head
/// borrowed from can be handed to the socket again.
struct Plan {
    /// When the head was parsed: the request's one clock reading (its wall-clock time is
    /// `now_ms`); its latency, pool checks and upstream deadlines count from it.
    started: Instant,
    now_ms: i64,
    head_len: usize,
    framing: BodyFraming,
    keep_alive: bool,
    http10: bool,
    head_request: bool,
    idempotent: bool,
    expect_continue: bool,
    max_body: u64,
    request_id: u64,
    /// The request's trace context (continued or started).
    trace: gateway_core::trace::TraceContext,
    /// Quota state of a keyed request (its headers go on every response, 429 included).
    quota: Option<gateway_core::quota::QuotaState>,
    /// The snapshot the request was routed with.
    snap: Option<Rc<crate::core::CoreSnapshot>>,
    /// Route slot, once routed.
    route: Option<usize>,
    /// The `AdditionalHeadersOut` plugins that apply (a bit mask of the flow's).
    added_out: u64,
    /// `KeyEntry::index` of the verified key (usage is charged to it).
    key: Option<usize>,
    /// The API consumer and subscription the request was identified as.
    identity: Option<gateway_core::flow::Identity>,
    /// Why the flow refused the request, if it did.
    rejection: Option<gateway_core::flow::Rejection>,
    /// An admitted keyed call, counted (with its day and month) before anything is answered.
    counted: Option<(gateway_core::usage::Counted, u32, u32)>,
    action: Action,
}

/// What an OAuth2 endpoint needs of the request head (copied: the head's buffer is reused for
/// the body).
struct OAuthCall {
    endpoint: gateway_core::oauth::Endpoint,
    api_id: Box<str>,
    api: u32,
    method: Box<str>,
    authorization: Option<Box<[u8]>>,
    content_type: Option<Box<[u8]>>,
}

enum Action {
    /// Answer with an error; `conn.out` is unused.
    Refuse(ErrorReply),
    /// Answer with a mock backend's response.
    Mock { backend: usize },
    /// Answer an OAuth2 endpoint of an API with an `oauth` consumer (`gateway_core::oauth`).
    OAuth(Box<OAuthCall>),
    /// Proxy: `conn.out` holds the upstream request head.
    Proxy { backend: usize },
}

/// The answer to plain HTTP sent to the TLS port (written in clear, then the connection closes).
const PLAIN_TO_TLS: ErrorReply = ErrorReply::new(
    400,
    "plain_http_to_https_port",
    "plain HTTP was sent to the HTTPS port",
);

/// Runs the TLS handshake of a connection accepted on the HTTPS listener (on this core, within
/// the handshake timeout), then serves it. A failed handshake is counted and closed (rustls sent
/// its alert); plain HTTP gets a clear 400.
pub(crate) async fn serve_tls(core: Rc<Core>, tcp: monoio::net::TcpStream, peer: SocketAddr) {
    let Some((config, timeout)) = core.tls_config() else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = crate::tls::TlsStream::new(tcp, conn);
    let handshake = {
        let _active = core.track_connection();
        monoio::time::timeout(timeout, tls.handshake()).await
    };
    match handshake {
        Ok(Ok(())) => {}
        Ok(Err(crate::tls::TlsError::PlainHttp)) => {
            core.stats.borrow_mut().tls_handshake_failures += 1;
            let mut out = Vec::with_capacity(256);
            gateway_core::respond::write_error(&mut out, &PLAIN_TO_TLS, &[], true, false);
            let _ = monoio::io::AsyncWriteRentExt::write_all(tls.tcp_mut(), out).await;
            return;
        }
        Ok(Err(e)) => {
            core.stats.borrow_mut().tls_handshake_failures += 1;
            tracing::debug!(core = core.id, %peer, reason = e.reason(), "TLS handshake failed");
            return;
        }
        Err(_) => {
            core.stats.borrow_mut().tls_handshake_failures += 1;
            return;
        }
    }
    let client_cert = tls
        .connection()
        .peer_certificates()
        .and_then(crate::tls::peer::client_cert)
        .map(Rc::new);
    serve_with(core, Stream::Tls(Box::new(tls)), peer, client_cert).await;
}

/// Serves one accepted connection until it closes.
pub(crate) async fn serve(core: Rc<Core>, client: Stream, peer: SocketAddr) {
    serve_with(core, client, peer, None).await;
}

/// [`serve`], with the connection's verified client certificate.
async fn serve_with(
    core: Rc<Core>,
    client: Stream,
    peer: SocketAddr,
    client_cert: Option<Rc<gateway_core::flow::ClientCert>>,
) {
    let _active = core.track_connection();
    let _ = client.tcp().set_nodelay(true);
    let mut conn = Conn {
        client,
        peer,
        buf: Vec::with_capacity(CLIENT_BUF),
        out: Vec::with_capacity(1024),
        hdrs: Vec::with_capacity(gateway_core::quota::MAX_HEADERS_LEN),
        path: String::with_capacity(256),
        client_cert,
        parser: HeadParser::new(HeadLimits {
            max_head_bytes: core.limits.max_head_bytes,
            max_headers: core.limits.max_headers,
        }),
        rid: 0,
        trace: None,
        access: AccessFacts::default(),
        status: 0,
        bytes_in: 0,
        bytes_out: 0,
    };
    while conn.request(&core).await == Next::KeepAlive {
        if core.is_draining() {
            break;
        }
    }
    conn.client.shutdown().await;
}

/// The usage identity of a keyed call: its key, API, route, consumer, subscription, day and
/// month (`days`: the local calendar day and month).
fn usage_identity(
    snap: &crate::core::CoreSnapshot,
    key: usize,
    route: usize,
    identity: Option<gateway_core::flow::Identity>,
    days: Option<(u32, u32)>,
) -> Option<gateway_core::usage::UsageIdentity<'_>> {
    let (day, month) = days?;
    let client_id = snap.key_ids.get(key)?;
    let rt = snap.shared.routes.get(route)?;
    let (consumer, subscription) = identity.map_or((None, None), |i| snap.shared.directory.ids(i));
    Some(gateway_core::usage::UsageIdentity {
        apikey: client_id,
        api: rt.api.as_deref(),
        route: &rt.id,
        consumer,
        subscription,
        day,
        month,
    })
}

/// Counts an admitted keyed call in its core's usage (and tally file) before any byte of its
/// answer is written: a call a client saw answered is never missing from the usage, even when
/// the process is killed right after answering (tally.rs). Its bytes and status are added when
/// it ends ([`Conn::record_usage`]).
fn count_admission(
    core: &Core,
    snap: &crate::core::CoreSnapshot,
    key: Option<usize>,
    route: usize,
    identity: Option<gateway_core::flow::Identity>,
    now_ms: i64,
) -> Option<(gateway_core::usage::Counted, u32, u32)> {
    let days = core.calendar_ids(snap, now_ms)?;
    let identity = usage_identity(snap, key?, route, identity, Some(days))?;
    let counted = core.usage.borrow_mut().as_mut()?.acc.admit(identity)?;
    Some((counted, days.0, days.1))
}

/// Drops the first `n` bytes of `buf` (the consumed part), keeping the rest at the front.
fn consume(buf: &mut Vec<u8>, n: usize) {
    let n = n.min(buf.len());
    buf.copy_within(n.., 0);
    buf.truncate(buf.len() - n);
}

impl Conn {
    /// Handles one request, from its first byte to the end of its response.
    async fn request(&mut self, core: &Rc<Core>) -> Next {
        let (plan, picked) = match self.read_head(core).await {
            Ok(planned) => planned,
            Err(next) => return next,
        };
        let started = plan.started;
        self.rid = plan.request_id;
        self.trace = Some(plan.trace);
        self.access.sampled = core.access_sampled();
        self.access.upstream = None;
        self.access.exchange_start = None;
        self.access.refusal = None;
        self.status = 0;
        self.bytes_in = plan.head_len as u64;
        self.bytes_out = 0;
        let next = match plan.action {
            Action::Refuse(reply) => {
                // A refused request's body is not read: close unless it has none.
                let close = !plan.keep_alive || plan.framing != BodyFraming::None;
                consume(&mut self.buf, plan.head_len);
                self.reply_quota(core, &reply, close, plan.head_request, plan.quota.as_ref())
                    .await
            }
            Action::Mock { backend } => self.mock(core, &plan, backend).await,
            Action::OAuth(ref call) => self.oauth(core, &plan, call).await,
            Action::Proxy { backend } => match picked {
                Some(picked) => self.proxy(core, &plan, backend, picked).await,
                None => Next::Close,
            },
        };
        self.record_usage(core, &plan);
        let elapsed = started.elapsed();
        {
            let mut stats = core.stats.borrow_mut();
            stats.record(self.status, elapsed, plan.rejection);
            if let (Some(snap), Some(slot)) = (&plan.snap, plan.route) {
                let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                stats.routes.record(&snap.shared, slot, self.status, us);
            }
        }
        if self.access.sampled {
            self.write_access(core, &plan, elapsed);
        }
        if next == Next::KeepAlive && !plan.keep_alive {
            return Next::Close;
        }
        next
    }

    /// Writes the request's access log line.
    fn write_access(&self, core: &Core, plan: &Plan, elapsed: Duration) {
        let snap = plan.snap.as_deref();
        let route = snap
            .zip(plan.route)
            .and_then(|(s, r)| s.shared.routes.get(r));
        let apikey = snap
            .zip(plan.key)
            .and_then(|(s, k)| s.key_ids.get(k))
            .map(|id| &**id);
        let reason = plan
            .rejection
            .map(gateway_core::flow::Rejection::reason)
            .or(self.access.refusal);
        let (consumer, subscription) = match (snap, plan.identity) {
            (Some(s), Some(i)) => s.shared.directory.ids(i),
            _ => (None, None),
        };
        let line = crate::access::Line {
            now_ms: now_ms(),
            node: &core.node,
            core: core.id,
            request_n: plan.request_id,
            trace: self.trace.as_ref(),
            method: &self.access.method,
            host: &self.access.host,
            path: &self.path,
            status: self.status,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            upstream: self.access.upstream,
            route: route.map(|r| &*r.id),
            api: route.and_then(|r| r.api.as_deref()),
            consumer,
            subscription,
            apikey,
            reason,
        };
        if let Some(access) = core.access.borrow_mut().as_mut() {
            access.write(&line);
        }
    }

    /// Charges the request to its key's usage (keyed requests, and calls of an API consumer:
    /// its subscription's key or a keyless consumer's quota holder): refused with the reason,
    /// or, for an admitted call [`count_admission`] counted already, its bytes in and out and
    /// status.
    fn record_usage(&self, core: &Core, plan: &Plan) {
        let (Some(snap), Some(key), Some(route)) = (&plan.snap, plan.key, plan.route) else {
            return;
        };
        let outcome = match plan.rejection {
            None => gateway_core::usage::Outcome::Admitted,
            Some(r) => match gateway_core::usage::Outcome::of_rejection(r) {
                Some(o) => o,
                None => return,
            },
        };
        let days = match plan.counted {
            Some((_, day, month)) => Some((day, month)),
            None => core.calendar_ids(snap, plan.now_ms),
        };
        let Some(identity) = usage_identity(snap, key, route, plan.identity, days) else {
            return;
        };
        if let Some(u) = core.usage.borrow_mut().as_mut() {
            match plan.counted {
                Some((counted, _, _)) => {
                    u.acc.complete(
                        counted,
                        identity,
                        self.bytes_in,
                        self.bytes_out,
                        self.status,
                    );
                }
                None => {
                    u.acc.record(
                        identity,
                        outcome,
                        self.bytes_in,
                        self.bytes_out,
                        self.status,
                    );
                }
            }
        }
    }

    /// Writes an error response with the quota headers of a keyed request.
    async fn reply_quota(
        &mut self,
        core: &Core,
        reply: &ErrorReply,
        close: bool,
        head_request: bool,
        quota: Option<&gateway_core::quota::QuotaState>,
    ) -> Next {
        // 429 storms are refusals too: the quota headers go through a reused buffer.
        self.access.refusal = Some(reply.code);
        self.hdrs.clear();
        if let Some(q) = quota {
            q.write_headers(&mut self.hdrs);
        }
        rewrite::push_request_id(
            &mut self.hdrs,
            &core.limits.request_id_header,
            &forward::request_id(core, self.rid),
        );
        self.out.clear();
        gateway_core::respond::write_error_traced(
            &mut self.out,
            reply,
            &[],
            &self.hdrs,
            close || core.is_draining(),
            head_request,
            self.trace.as_ref(),
        );
        self.send_out(reply.status, close).await
    }

    /// Writes the whole response held in `out` and records its status and size; `close` ends
    /// the connection after it.
    async fn send_out(&mut self, status: u16, close: bool) -> Next {
        let len = self.out.len();
        self.status = status;
        self.bytes_out += len as u64;
        if self
            .client
            .write_range(&mut self.out, 0..len)
            .await
            .is_err()
            || close
        {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// Writes an error response; `close` adds `connection: close` and ends the connection.
    async fn reply(
        &mut self,
        core: &Core,
        reply: &ErrorReply,
        close: bool,
        head_request: bool,
    ) -> Next {
        self.reply_quota(core, reply, close, head_request, None)
            .await
    }

    /// Reads until a whole head is parsed, and decides what to do with the request. `Err` when
    /// the connection must end (closed, timed out, malformed: the error response is sent).
    async fn read_head(
        &mut self,
        core: &Rc<Core>,
    ) -> Result<(Plan, Option<forward::Picked>), Next> {
        // The header deadline is set when a head needs a second read (most arrive whole).
        let mut deadline: Option<Instant> = None;
        loop {
            if !self.buf.is_empty() {
                match self.parser.parse_request(&self.buf) {
                    Ok(Some(head)) => {
                        if core.access.borrow().is_some() {
                            self.access.method.clear();
                            self.access.method.push_str(head.method_str());
                            let mut host = [0u8; gateway_core::http::MAX_HOST];
                            let raw = head.authority().unwrap_or_default();
                            self.access.host.clear();
                            self.access.host.push_str(
                                gateway_core::http::canonical_host(raw, &mut host)
                                    .unwrap_or_default(),
                            );
                        }
                        let facts = forward::ConnFacts {
                            peer: self.peer,
                            proto: if self.client.tls().is_some() {
                                "https"
                            } else {
                                "http"
                            },
                            client_cert: self.client_cert.as_deref(),
                        };
                        let now = Instant::now();
                        return Ok(forward::plan(
                            core,
                            &head,
                            &facts,
                            &mut self.out,
                            &mut self.path,
                            now,
                        ));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let reply = http_error_reply(core, &e);
                        self.rid = core.next_request_id();
                        self.trace = Some(core.trace_for(None));
                        return Err(self.reply(core, &reply, true, false).await);
                    }
                }
            }
            let read = if self.buf.is_empty() {
                // Between requests: the idle timeout, cancelled at once when the core drains.
                if core.is_draining() {
                    return Err(Next::Close);
                }
                let handle = core.idle_handle();
                // Counted from the ticker's clock: no clock read between requests.
                let idle_until = core.coarse_now() + core.limits.idle_timeout;
                let read = monoio::time::timeout_at(
                    monoio::time::Instant::from_std(idle_until),
                    self.client.read_more_cancelable(&mut self.buf, handle),
                )
                .await;
                match read {
                    Ok(res) => res,
                    // Idle too long: close quietly (nothing was sent, nothing to answer). The
                    // dropped read took the buffer with it.
                    Err(_) => {
                        self.buf = Vec::with_capacity(CLIENT_BUF);
                        return Err(Next::Close);
                    }
                }
            } else {
                let until =
                    *deadline.get_or_insert_with(|| Instant::now() + core.limits.header_timeout);
                match monoio::time::timeout_at(
                    monoio::time::Instant::from_std(until),
                    self.client.read_more(&mut self.buf),
                )
                .await
                {
                    Ok(res) => res,
                    Err(_) => {
                        if self.buf.capacity() == 0 {
                            self.buf = Vec::with_capacity(CLIENT_BUF);
                        }
                        self.rid = core.next_request_id();
                        self.trace = Some(core.trace_for(None));
                        return Err(self
                            .reply(core, &ErrorReply::HEAD_TIMEOUT, true, false)
                            .await);
                    }
                }
            };
            match read {
                Ok(0) | Err(_) => return Err(Next::Close),
                Ok(_) => {}
            }
        }
    }

    /// Reads the request body (within the plan's limit) into `into`, or discards it (mock
    /// backends) when `into` is `None`.
    async fn read_body(
        &mut self,
        core: &Core,
        plan: &Plan,
        mut into: Option<&mut Vec<u8>>,
    ) -> Result<(), ErrorReply> {
        let mut decoder = body_decoder(core, plan)?;
        loop {
            let d = decoder
                .decode(&self.buf)
                .map_err(|e| http_error_reply(core, &e))?;
            if let (Some(into), Some(data)) = (into.as_deref_mut(), self.buf.get(d.data.clone())) {
                into.extend_from_slice(data);
            }
            consume(&mut self.buf, d.consumed);
            if d.done {
                return Ok(());
            }
            if d.consumed == 0 || self.buf.is_empty() {
                match monoio::time::timeout(
                    core.limits.idle_timeout,
                    self.client.read_more(&mut self.buf),
                )
                .await
                {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return Err(ErrorReply::BAD_REQUEST),
                }
            }
        }
    }

    /// An OAuth2 endpoint: the body read, the answer computed by `gateway_core::oauth` with this
    /// core's throttle, written as JSON.
    async fn oauth(&mut self, core: &Rc<Core>, plan: &Plan, call: &OAuthCall) -> Next {
        consume(&mut self.buf, plan.head_len);
        if plan.expect_continue
            && plan.framing != BodyFraming::None
            && self.buf.is_empty()
            && self.client.write_static(CONTINUE).await.is_err()
        {
            return Next::Close;
        }
        let mut body = Vec::new();
        if let Err(reply) = self.read_body(core, plan, Some(&mut body)).await {
            return self.reply(core, &reply, true, plan.head_request).await;
        }
        let Some(snap) = plan.snap.clone() else {
            return self
                .reply(core, &ErrorReply::BAD_GATEWAY, true, plan.head_request)
                .await;
        };
        let request = gateway_core::oauth::Request {
            method: &call.method,
            authorization: call.authorization.as_deref(),
            content_type: call.content_type.as_deref(),
            body: &body,
        };
        let answer = gateway_core::oauth::answer(
            call.endpoint,
            &request,
            &call.api_id,
            call.api,
            &snap.shared.directory,
            &snap.keys,
            &mut core.oauth_throttle.borrow_mut(),
            &ring::rand::SystemRandom::new(),
            crate::core::now_ms(),
        );
        let close = !plan.keep_alive || core.is_draining();
        self.out.clear();
        let _ = std::io::Write::write_fmt(
            &mut self.out,
            format_args!(
                "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                answer.status,
                gateway_core::respond::reason_phrase(answer.status),
                answer.body.len()
            ),
        );
        if answer.no_store {
            self.out
                .extend_from_slice(b"cache-control: no-store\r\npragma: no-cache\r\n");
        }
        if answer.basic_challenge {
            self.out
                .extend_from_slice(b"www-authenticate: Basic realm=\"tollgate\"\r\n");
        }
        if let Some(s) = answer.retry_after_s {
            let _ = std::io::Write::write_fmt(&mut self.out, format_args!("retry-after: {s}\r\n"));
        }
        rewrite::push_request_id(
            &mut self.out,
            &core.limits.request_id_header,
            &forward::request_id(core, plan.request_id),
        );
        rewrite::connection_field(&mut self.out, close, plan.http10);
        self.out.extend_from_slice(b"\r\n");
        if !plan.head_request {
            self.out.extend_from_slice(answer.body.as_bytes());
        }
        self.send_out(answer.status, close).await
    }

    async fn mock(&mut self, core: &Rc<Core>, plan: &Plan, backend: usize) -> Next {
        consume(&mut self.buf, plan.head_len);
        if plan.expect_continue
            && plan.framing != BodyFraming::None
            && self.buf.is_empty()
            && self.client.write_static(CONTINUE).await.is_err()
        {
            return Next::Close;
        }
        if let Err(reply) = self.read_body(core, plan, None).await {
            return self.reply(core, &reply, true, plan.head_request).await;
        }
        // The snapshot the request was planned with: the core may have swapped in another
        // while the body was read, and slots are only meaningful in their own snapshot.
        let Some(snap) = plan.snap.clone() else {
            return self
                .reply(core, &ErrorReply::BAD_GATEWAY, true, plan.head_request)
                .await;
        };
        let Some(mock) = snap
            .shared
            .backends
            .get(backend)
            .and_then(|b| b.mock.as_ref())
        else {
            return self
                .reply(core, &ErrorReply::BAD_GATEWAY, true, plan.head_request)
                .await;
        };
        let close = !plan.keep_alive || core.is_draining();
        self.out.clear();
        self.out.extend_from_slice(&mock.head);
        rewrite::push_request_id(
            &mut self.out,
            &core.limits.request_id_header,
            &forward::request_id(core, plan.request_id),
        );
        if let Some(q) = &plan.quota {
            q.write_headers(&mut self.out);
        }
        if let Some(flow) = snap.flows.get(plan.route.unwrap_or(usize::MAX)) {
            for a in flow.headers_out().selected(plan.added_out).iter() {
                self.out.extend_from_slice(a.name.as_bytes());
                self.out.extend_from_slice(b": ");
                self.out.extend_from_slice(a.value.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
        rewrite::connection_field(&mut self.out, close, plan.http10);
        self.out.extend_from_slice(b"\r\n");
        if !plan.head_request {
            self.out.extend_from_slice(&mock.body);
        }
        let status = mock.status;
        self.send_out(status, close).await
    }

    /// Proxies the request to a target of `backend` (first `picked`) and streams the response.
    async fn proxy(
        &mut self,
        core: &Rc<Core>,
        plan: &Plan,
        backend: usize,
        picked: forward::Picked,
    ) -> Next {
        let Some(snap) = plan.snap.clone() else {
            return self
                .reply(core, &ErrorReply::BAD_GATEWAY, true, plan.head_request)
                .await;
        };
        let Some(spec) = snap.shared.backends.get(backend) else {
            core.finish(&snap, backend, picked.ticket, Outcome::Cancelled);
            return self
                .reply(core, &ErrorReply::BAD_GATEWAY, true, plan.head_request)
                .await;
        };
        let client_cfg = &spec.spec.client;
        let connect_timeout = Duration::from_millis(client_cfg.connection_timeout);
        let idle_timeout = Duration::from_millis(client_cfg.idle_timeout);
        let max_open = usize::try_from(client_cfg.max_connections).unwrap_or(usize::MAX);
        let streaming_max =
            (max_open.saturating_mul(usize::from(core.limits.streaming_share_percent)) / 100)
                .max(1);
        let timeouts = Timeouts {
            call: Duration::from_millis(client_cfg.call_timeout),
            stream: Duration::from_millis(client_cfg.call_and_stream_timeout),
        };
        consume(&mut self.buf, plan.head_len);
        let body_clock = plan.started;
        let mut sent_continue = false;
        // A small body is received whole before any upstream connection is taken: a slow
        // client then holds none, and the request can be sent again on another connection.
        let mode = match self
            .buffer_body(core, plan, body_clock, &mut sent_continue)
            .await
        {
            Ok(mode) => mode,
            Err(stop) => {
                core.finish(&snap, backend, picked.ticket, Outcome::Cancelled);
                return match stop {
                    Some(reply) => self.reply(core, &reply, true, plan.head_request).await,
                    None => Next::Close,
                };
            }
        };
        let mut attempts = Attempts::new(
            RetrySchedule::from_client(client_cfg),
            plan.idempotent && mode != BodyMode::Streaming,
        );
        let (mut ticket, mut addr) = (picked.ticket, picked.addr);
        let mut first = true;
        loop {
            let first_attempt = std::mem::take(&mut first);
            let tls = spec
                .targets
                .get(ticket.target().index())
                .and_then(|t| t.tls.as_deref());
            let key = PoolKey::new(addr, tls);
            // A streaming body holds its upstream connection as long as its client takes:
            // such requests get at most a share of the target's connections on this core.
            let _streaming = match mode {
                BodyMode::Streaming => {
                    let place = core
                        .upstreams
                        .pool
                        .borrow_mut()
                        .reserve_streaming(key, streaming_max);
                    if place.is_none() {
                        core.finish(&snap, backend, ticket, Outcome::Cancelled);
                        return self
                            .reply(core, &ErrorReply::STREAMING_BUSY, true, plan.head_request)
                            .await;
                    }
                    place
                }
                BodyMode::None | BodyMode::Buffered => None,
            };
            // Every pooled connection is checked to be silent before it is reused.
            let pooled = core
                .upstreams
                .pool
                .borrow_mut()
                .take(key, plan.started, idle_timeout);
            let mut up = match pooled {
                Some(c) => c,
                None => {
                    let reserved = core.upstreams.pool.borrow_mut().reserve(key, max_open);
                    let connected = match reserved {
                        Ok(place) => {
                            crate::upstream::connect(addr, connect_timeout, place, tls).await
                        }
                        Err(e) => Err(e),
                    };
                    match connected {
                        Ok(c) => c,
                        Err(e) => {
                            let error = match e {
                                ConnectError::AtCapacity => UpstreamError::AtCapacity,
                                ConnectError::Timeout => UpstreamError::ConnectTimeout,
                                ConnectError::Io(_) => UpstreamError::ConnectFailed,
                                ConnectError::Tls(e) => {
                                    core.stats.borrow_mut().upstream_tls_failures += 1;
                                    UpstreamError::Tls {
                                        verification: e.is_verification(),
                                    }
                                }
                            };
                            match self
                                .after_failure(
                                    core,
                                    &snap,
                                    backend,
                                    ticket,
                                    error,
                                    false,
                                    &mut attempts,
                                )
                                .await
                            {
                                Ok(next) => (ticket, addr) = next,
                                Err(reply) => {
                                    return self.reply(core, &reply, true, plan.head_request).await;
                                }
                            }
                            continue;
                        }
                    }
                }
            };
            let reused = up.reused;
            // The call's clock: the request's own reading when nothing came before this call
            // (first attempt, no body, a pooled connection), else a fresh one.
            let call_start = if first_attempt && mode == BodyMode::None && reused {
                plan.started
            } else {
                Instant::now()
            };
            if self.access.sampled {
                self.access.exchange_start = Some(Instant::now());
            }
            match self
                .exchange(
                    core,
                    plan,
                    &mut up,
                    mode,
                    timeouts,
                    body_clock,
                    call_start,
                    &mut sent_continue,
                )
                .await
            {
                Exchange::Done {
                    client_next,
                    upstream_reusable,
                    status,
                } => {
                    let outcome = if status >= 500 {
                        Outcome::Failure(FailureKind::ServerError)
                    } else {
                        Outcome::Success
                    };
                    core.finish(&snap, backend, ticket, outcome);
                    if self.access.sampled {
                        self.access.upstream = Some((addr, self.access.upstream_us));
                    }
                    if upstream_reusable {
                        core.upstreams
                            .pool
                            .borrow_mut()
                            .put(key, up, plan.started, max_open);
                    }
                    return client_next;
                }
                Exchange::Failed(error) => {
                    match self
                        .after_failure(core, &snap, backend, ticket, error, reused, &mut attempts)
                        .await
                    {
                        Ok(next) => (ticket, addr) = next,
                        Err(reply) => {
                            return self.reply(core, &reply, true, plan.head_request).await;
                        }
                    }
                }
                Exchange::Aborted => {
                    core.finish(&snap, backend, ticket, Outcome::Cancelled);
                    return Next::Close;
                }
                Exchange::ClientError(reply) => {
                    // The client's fault (bad, oversized or too slow body): no verdict on the
                    // target.
                    core.finish(&snap, backend, ticket, Outcome::Cancelled);
                    return self.reply(core, &reply, true, plan.head_request).await;
                }
            }
        }
    }

    /// Settles a failed attempt with the target's verdict and, when [`Attempts::failed`] says
    /// to try again, waits its delay and picks the next target (another one for a counted
    /// retry). `Err`: answer the client with it (no attempt left, or no target available).
    #[allow(clippy::too_many_arguments)]
    async fn after_failure(
        &self,
        core: &Core,
        snap: &crate::core::CoreSnapshot,
        backend: usize,
        ticket: gateway_core::balance::Ticket,
        error: UpstreamError,
        reused: bool,
        attempts: &mut Attempts,
    ) -> Result<(gateway_core::balance::Ticket, std::net::SocketAddr), ErrorReply> {
        let failed_id = ticket.target();
        let (outcome, step) = attempts.failed(error, reused);
        core.finish(snap, backend, ticket, outcome);
        match step {
            Step::Answer(reply) => Err(reply),
            Step::Retry { delay_ms, counted } => {
                if delay_ms > 0 {
                    monoio::time::sleep(Duration::from_millis(delay_ms)).await;
                }
                let next = if counted {
                    core.pick_retry(snap, backend, failed_id)
                } else {
                    core.pick(snap, backend, self.peer.ip(), None, now_ms())
                };
                // Nothing left to try: the failure is the answer.
                next.ok_or_else(|| error.reply())
            }
        }
    }

    /// When the client must have sent the next body byte by: after the grace time, at least
    /// `min_body_rate` bytes per second on average, and never more than the idle timeout
    /// between two reads.
    fn body_deadline(core: &Core, started: Instant, received: u64) -> Instant {
        let idle = Instant::now() + core.limits.idle_timeout;
        let rate = core.limits.min_body_rate;
        if rate == 0 {
            return idle;
        }
        let earned = Duration::from_millis(received.saturating_mul(1000) / rate);
        idle.min(started + core.limits.body_rate_grace + earned)
    }

    /// Reads more of the request body before the body deadline. `Err(Some)`: answer it (too
    /// slow); `Err(None)`: the client went away.
    async fn read_body_more(
        &mut self,
        core: &Core,
        started: Instant,
        received: u64,
    ) -> Result<(), Option<ErrorReply>> {
        let left =
            Self::body_deadline(core, started, received).saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, self.client.read_more(&mut self.buf)).await {
            Ok(Ok(n)) if n > 0 => Ok(()),
            Ok(_) => Err(None),
            Err(_) => Err(Some(ErrorReply::BODY_TIMEOUT)),
        }
    }

    /// Receives a body of at most `request_buffer_bytes` whole, and appends it (trailers
    /// dropped) to the upstream head in `out`. A larger body, or one whose size is unknown and
    /// turns out larger, is left in `buf` to be streamed. `Err(Some)`: answer it; `Err(None)`:
    /// the client went away.
    async fn buffer_body(
        &mut self,
        core: &Core,
        plan: &Plan,
        started: Instant,
        sent_continue: &mut bool,
    ) -> Result<BodyMode, Option<ErrorReply>> {
        let limit = core.limits.request_buffer_bytes;
        match plan.framing {
            BodyFraming::None | BodyFraming::ContentLength(0) => return Ok(BodyMode::None),
            BodyFraming::ContentLength(n) if n <= limit as u64 => {}
            BodyFraming::Chunked if limit > 0 => {}
            _ => return Ok(BodyMode::Streaming),
        }
        let mut decoder = body_decoder(core, plan).map_err(Some)?;
        let mut scanned = 0usize;
        let mut trailer_start = None;
        loop {
            if plan.expect_continue && self.buf.len() == scanned && !*sent_continue {
                // Every check passed: the body is wanted.
                *sent_continue = true;
                if self.client.write_static(CONTINUE).await.is_err() {
                    return Err(None);
                }
            }
            let d = decoder
                .decode(self.buf.get(scanned..).unwrap_or_default())
                .map_err(|e| Some(http_error_reply(core, &e)))?;
            if !d.trailers.is_empty() && trailer_start.is_none() {
                trailer_start = Some(scanned + d.trailers.start);
            }
            scanned += d.consumed;
            if d.done {
                break;
            }
            if scanned > limit {
                return Ok(BodyMode::Streaming);
            }
            if d.consumed == 0 || scanned == self.buf.len() {
                self.read_body_more(core, started, scanned as u64).await?;
            }
        }
        let end = trailer_start.unwrap_or(scanned);
        self.out
            .extend_from_slice(self.buf.get(..end).unwrap_or_default());
        if trailer_start.is_some() {
            self.out.extend_from_slice(b"\r\n");
        }
        self.bytes_in += scanned as u64;
        consume(&mut self.buf, scanned);
        Ok(BodyMode::Buffered)
    }

    /// One request/response exchange on an upstream connection.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &mut self,
        core: &Core,
        plan: &Plan,
        up: &mut UpConn,
        mode: BodyMode,
        timeouts: Timeouts,
        body_clock: Instant,
        call_start: Instant,
        sent_continue: &mut bool,
    ) -> Exchange {
        // 1. The head (built in `plan`, kept in `out`), with a buffered body in the same write.
        // `out` is left as it is, so that a retry sends the same bytes again.
        let total = self.out.len();
        if up
            .stream
            .write_range(&mut self.out, 0..total)
            .await
            .is_err()
        {
            // Nothing was consumed from the client: the request can be sent again.
            return Exchange::Failed(UpstreamError::Closed);
        }
        // 2. A streaming body, as it arrives; its trailers never go upstream (docs/security.md).
        let mut early = false;
        if mode == BodyMode::Streaming {
            let mut decoder = match body_decoder(core, plan) {
                Ok(d) => d,
                Err(reply) => return Exchange::ClientError(reply),
            };
            // 100 Continue only once the body is known to be acceptable.
            if plan.expect_continue && self.buf.is_empty() && !*sent_continue {
                *sent_continue = true;
                if self.client.write_static(CONTINUE).await.is_err() {
                    return Exchange::Aborted;
                }
            }
            let mut received = 0u64;
            let mut in_trailers = false;
            loop {
                let d = match decoder.decode(&self.buf) {
                    Ok(d) => d,
                    Err(e) => return Exchange::ClientError(http_error_reply(core, &e)),
                };
                // An upstream that answers before it has the whole body (a 413, a 401) has
                // stopped reading it: the rest would be read as another request. Stop sending,
                // relay the answer, and close both connections.
                if up.stream.has_pending() {
                    early = true;
                    break;
                }
                let keep = forwarded_part(&d, &mut in_trailers);
                let last = d.done && in_trailers;
                if up.stream.write_range(&mut self.buf, keep).await.is_err() {
                    return Exchange::Failed(UpstreamError::Broken);
                }
                if last && up.stream.write_static(CRLF).await.is_err() {
                    return Exchange::Failed(UpstreamError::Broken);
                }
                self.bytes_in += d.consumed as u64;
                received += d.consumed as u64;
                consume(&mut self.buf, d.consumed);
                if d.done {
                    break;
                }
                if d.consumed == 0 || self.buf.is_empty() {
                    match self.read_body_more(core, body_clock, received).await {
                        Ok(()) => {}
                        Err(Some(reply)) => return Exchange::ClientError(reply),
                        Err(None) => return Exchange::Aborted,
                    }
                }
            }
        }
        // 3. The response head.
        let deadline = monoio::time::Instant::from_std(call_start + timeouts.call);
        let resp = loop {
            if !up.buf.is_empty() {
                let method = if plan.head_request {
                    Method::Head
                } else {
                    Method::Get
                };
                match self.parser.parse_response(&up.buf, method) {
                    Ok(Some(head)) if head.is_interim() => {
                        let n = head.head_len();
                        consume(&mut up.buf, n);
                        continue;
                    }
                    Ok(Some(head)) => {
                        if let Some(start) = self.access.exchange_start {
                            let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                            self.access.upstream_us = us;
                        }
                        self.out.clear();
                        let close = early || !plan.keep_alive || core.is_draining();
                        let info = forward::response_head(core, plan, &head, &mut self.out, close);
                        break (info, head.status());
                    }
                    Ok(None) => {}
                    Err(_) => return Exchange::Failed(UpstreamError::BadResponse),
                }
            }
            match monoio::time::timeout_at(deadline, up.stream.read_more(&mut up.buf)).await {
                Err(_) => return Exchange::Failed(UpstreamError::Timeout),
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) if up.buf.is_empty() && mode != BodyMode::Streaming => {
                    return Exchange::Failed(UpstreamError::Closed);
                }
                Ok(_) => return Exchange::Failed(UpstreamError::Broken),
            }
        };
        let (resp, status) = resp;
        self.status = status;
        consume(&mut up.buf, resp.head_len);
        // 4. The response head to the client, then the body, streamed. The head goes out with
        // the first body bytes in one write when they are already here and small.
        let mut decoder = match BodyDecoder::response(resp.framing, BodyLimits::default()) {
            Ok(d) => d,
            Err(_) => return Exchange::Aborted,
        };
        let mut head_pending = true;
        // The call and its whole response, from the start of the call.
        let stream_deadline = monoio::time::Instant::from_std(call_start + timeouts.stream);
        loop {
            let d = match decoder.decode(&up.buf) {
                Ok(d) => d,
                Err(_) => return Exchange::Aborted,
            };
            // Response trailers reach the client as the upstream sent them: they say nothing
            // the upstream could not have put in the head.
            let payload = if resp.dechunk {
                d.data.clone()
            } else {
                0..d.consumed
            };
            let write = if head_pending && payload.len() <= COALESCE_MAX {
                head_pending = false;
                if let Some(bytes) = up.buf.get(payload) {
                    self.out.extend_from_slice(bytes);
                }
                let len = self.out.len();
                self.bytes_out += len as u64;
                self.client.write_range(&mut self.out, 0..len).await
            } else {
                if head_pending {
                    head_pending = false;
                    let len = self.out.len();
                    self.bytes_out += len as u64;
                    if self
                        .client
                        .write_range(&mut self.out, 0..len)
                        .await
                        .is_err()
                    {
                        return Exchange::Aborted;
                    }
                }
                self.bytes_out += payload.len() as u64;
                self.client.write_range(&mut up.buf, payload).await
            };
            if write.is_err() {
                return Exchange::Aborted;
            }
            consume(&mut up.buf, d.consumed);
            if d.done {
                break;
            }
            if d.consumed == 0 || up.buf.is_empty() {
                match monoio::time::timeout_at(stream_deadline, up.stream.read_more(&mut up.buf))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(_) => {
                        // End of stream: fine for a close-delimited body, an error otherwise.
                        if decoder.on_eof().is_ok() {
                            break;
                        }
                        return Exchange::Aborted;
                    }
                    Err(_) => return Exchange::Aborted,
                }
            }
        }
        let client_next = if resp.close_client || early {
            Next::Close
        } else {
            Next::KeepAlive
        };
        Exchange::Done {
            client_next,
            // Reused only when provably idle: the response complete, nothing after it, and the
            // whole request sent (an early answer leaves the request half-sent).
            upstream_reusable: resp.upstream_keep_alive && up.buf.is_empty() && !early,
            status,
        }
    }
}

/// The part of a decoded body chunk to forward: everything but the trailer section, which is
/// dropped (the final CRLF is written after it, see [`CRLF`]). A trailer section that is only
/// the final CRLF, seen whole, is forwarded as is: no extra write for the common case.
fn forwarded_part(
    d: &gateway_core::http::Decoded,
    in_trailers: &mut bool,
) -> std::ops::Range<usize> {
    if *in_trailers {
        return 0..0;
    }
    if d.trailers.is_empty() || (d.done && d.trailers.len() == 2 && d.trailers.end == d.consumed) {
        return 0..d.consumed;
    }
    *in_trailers = true;
    0..d.trailers.start
}

const CRLF: &[u8] = b"\r\n";

/// How the request body travels upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyMode {
    /// No body.
    None,
    /// Received whole and appended to the head in `out`: sent in one write, and again on a
    /// retry.
    Buffered,
    /// Streamed from the client as it arrives (larger than the buffer): not retriable once
    /// started.
    Streaming,
}

/// The backend's response timeouts.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// Until the response head.
    call: Duration,
    /// For the whole streamed response.
    stream: Duration,
}

/// What the access log line of the current request needs beyond the plan.
#[derive(Debug, Default)]
struct AccessFacts {
    sampled: bool,
    method: String,
    host: String,
    exchange_start: Option<Instant>,
    upstream_us: u64,
    upstream: Option<(SocketAddr, u64)>,
    refusal: Option<&'static str>,
}

/// How an exchange ended.
enum Exchange {
    /// The response was relayed.
    Done {
        client_next: Next,
        upstream_reusable: bool,
        status: u16,
    },
    /// The upstream failed; nothing was sent to the client yet.
    Failed(UpstreamError),
    /// Something failed after the response started, or the client went away: close.
    Aborted,
    /// The client sent a bad, oversized or too slow body: answer this, and blame no target.
    ClientError(ErrorReply),
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Bodies up to this size travel in the same write as their head.
const COALESCE_MAX: usize = 16 * 1024;

fn body_decoder(core: &Core, plan: &Plan) -> Result<BodyDecoder, ErrorReply> {
    BodyDecoder::request(
        plan.framing,
        BodyLimits {
            max_body_bytes: plan.max_body,
            ..BodyLimits::default()
        },
    )
    .map_err(|e| http_error_reply(core, &e))
}

/// The response for a framing or limit error; a client's is counted by kind
/// (`tollgate_malformed_requests_total{code}`).
fn http_error_reply(core: &Core, e: &HttpError) -> ErrorReply {
    if e.side() == Side::Upstream {
        return ErrorReply::BAD_GATEWAY;
    }
    if let Some(n) = core.stats.borrow_mut().malformed.get_mut(e.kind().index()) {
        *n += 1;
    }
    match e.status() {
        413 => ErrorReply::BODY_TOO_LARGE,
        431 => ErrorReply::HEAD_TOO_LARGE,
        501 => ErrorReply::new(501, "not_implemented", "not implemented"),
        505 => ErrorReply::new(
            505,
            "http_version_not_supported",
            "HTTP version not supported",
        ),
        _ => ErrorReply::BAD_REQUEST,
    }
}

//! Upstream connections of one core: a pool per [`PoolKey`] (target address and TLS identity)
//! with LIFO reuse (the most recently used connection is the least likely to have been closed by
//! the upstream), a cap on
//! open connections, a smaller cap on connections held by requests still streaming a body,
//! idle eviction, and a sweep that drops connections the upstream closed.
//!
//! A connection is reused only when it is provably idle: the previous response was read to its
//! end with nothing after it, the previous request was sent whole (the proxy decides both before
//! [`Pool::put`]), and a non-blocking peek just before the reuse finds no byte and no end of
//! stream ([`Pool::take`]). An unsolicited or late response therefore never reaches a client:
//! the connection that carries it is dropped.
//!
//! A connection is only ever reused for the TLS identity it was made with: the key holds the
//! address *and* a digest of the SNI name, the trust roots, the verification mode and the client
//! certificate ([`crate::tls::client::UpstreamTls::identity`]); a plain connection has identity
//! 0. Two targets at one address that differ in any of these (a `tls: true` and a plain one, two
//! SNI names, mTLS with one client certificate and without) never share a connection: a
//! connection verified under one route's trust, or authenticated with one route's client
//! certificate, never carries another route's request.
//!
//! Per core and `!Sync`: no locks, no atomics. Connections are counted with a local counter
//! shared by the connections of one address, decremented when a connection is dropped.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use rustc_hash::FxHashMap;

use crate::stream::Stream;

/// Read buffer size of an upstream connection.
pub const UPSTREAM_BUF: usize = 16 * 1024;

/// One upstream connection and its read buffer.
#[derive(Debug)]
pub struct UpConn {
    /// The connection (plain, or TLS to a `tls: true` target).
    pub stream: Stream,
    /// Read buffer (its length is the unread bytes).
    pub buf: Vec<u8>,
    /// Whether it came from the pool (a failure before any response byte may then be a stale
    /// connection, and an idempotent request is retried on a fresh one).
    pub reused: bool,
    idle_since: Instant,
    _open: OpenGuard,
}

#[derive(Debug)]
struct OpenGuard(Rc<Cell<usize>>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

#[derive(Debug, Default)]
struct Slot {
    idle: Vec<UpConn>,
    open: Rc<Cell<usize>>,
    streaming: Rc<Cell<usize>>,
}

/// A counted place for a request streaming its body (see [`Pool::reserve_streaming`]); freed
/// when dropped.
#[derive(Debug)]
pub struct StreamingPlace {
    _count: OpenGuard,
}

/// Why no connection could be had.
#[derive(Debug)]
pub enum ConnectError {
    /// The target already has `max_connections` open on this core.
    AtCapacity,
    /// Connecting (or the TLS handshake) timed out.
    Timeout,
    /// Connecting failed.
    Io(io::Error),
    /// The TLS handshake failed, or the upstream's certificate did not verify.
    Tls(crate::tls::TlsError),
}

/// What a pooled connection is kept under: where it leads and the TLS it speaks there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The target's address.
    pub addr: SocketAddr,
    /// 0 for plain TCP; otherwise the target's TLS identity
    /// ([`crate::tls::client::UpstreamTls::identity`]).
    pub tls: u64,
}

impl PoolKey {
    /// The key of a connection to `addr`, plain or with `tls`.
    pub fn new(addr: SocketAddr, tls: Option<&crate::tls::client::UpstreamTls>) -> Self {
        Self {
            addr,
            tls: tls.map_or(0, |t| t.identity),
        }
    }
}

/// The pool of one core.
#[derive(Debug, Default)]
pub struct Pool {
    slots: FxHashMap<PoolKey, Slot>,
}

impl Pool {
    /// A reusable connection under `key`, most recently used first; expired ones, and ones with
    /// unread bytes or closed by the upstream (checked with a non-blocking peek, one syscall),
    /// are dropped.
    pub fn take(&mut self, key: PoolKey, now: Instant, idle_timeout: Duration) -> Option<UpConn> {
        let slot = self.slots.get_mut(&key)?;
        while let Some(mut conn) = slot.idle.pop() {
            if now.duration_since(conn.idle_since) < idle_timeout && conn.stream.is_idle() {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Counts a request that streams its body under `key`, unless `max` already do on this core.
    pub fn reserve_streaming(&mut self, key: PoolKey, max: usize) -> Option<StreamingPlace> {
        let streaming = self.slots.entry(key).or_default().streaming.clone();
        if streaming.get() >= max {
            return None;
        }
        streaming.set(streaming.get() + 1);
        Some(StreamingPlace {
            _count: OpenGuard(streaming),
        })
    }

    /// Open connections (idle and in use) under `key` on this core.
    pub fn open(&self, key: PoolKey) -> usize {
        self.slots.get(&key).map_or(0, |s| s.open.get())
    }

    /// Idle connections under `key`.
    pub fn idle(&self, key: PoolKey) -> usize {
        self.slots.get(&key).map_or(0, |s| s.idle.len())
    }

    /// Gives a connection back after a complete exchange; kept unless `max_idle` are idle.
    pub fn put(&mut self, key: PoolKey, mut conn: UpConn, now: Instant, max_idle: usize) {
        if !conn.buf.is_empty() {
            return; // bytes beyond the response: never reuse
        }
        let slot = self.slots.entry(key).or_default();
        if slot.idle.len() < max_idle {
            conn.idle_since = now;
            slot.idle.push(conn);
        }
    }

    /// Drops idle connections past `idle_timeout` or closed by the upstream.
    pub fn sweep(&mut self, now: Instant, idle_timeout: Duration) {
        for slot in self.slots.values_mut() {
            slot.idle.retain_mut(|c| {
                now.duration_since(c.idle_since) < idle_timeout && c.stream.is_idle()
            });
        }
        self.slots
            .retain(|_, s| s.open.get() > 0 || s.streaming.get() > 0 || !s.idle.is_empty());
    }

    /// Reserves a place for a new connection under `key`, unless `max_open` are already open.
    /// The place is counted at once, so concurrent connects on this core respect the cap.
    ///
    /// # Errors
    /// [`ConnectError::AtCapacity`].
    pub fn reserve(&mut self, key: PoolKey, max_open: usize) -> Result<Reservation, ConnectError> {
        let open = self.slots.entry(key).or_default().open.clone();
        if open.get() >= max_open {
            return Err(ConnectError::AtCapacity);
        }
        open.set(open.get() + 1);
        Ok(Reservation(OpenGuard(open)))
    }
}

/// A counted place for a connection being made (see [`Pool::reserve`]).
#[derive(Debug)]
pub struct Reservation(OpenGuard);

/// Connects to `addr` in the place `reservation` holds, with TLS when `tls` is set (the
/// handshake counts against `timeout` too).
///
/// # Errors
/// [`ConnectError::Timeout`], [`ConnectError::Io`] or [`ConnectError::Tls`].
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    reservation: Reservation,
    tls: Option<&crate::tls::client::UpstreamTls>,
) -> Result<UpConn, ConnectError> {
    let deadline = Instant::now() + timeout;
    let tcp = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(tls) => {
            let conn = rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
                .map_err(|e| ConnectError::Tls(crate::tls::TlsError::Protocol(e)))?;
            let mut stream = crate::tls::TlsStream::new(tcp, conn);
            let left = deadline.saturating_duration_since(Instant::now());
            match monoio::time::timeout(left, stream.handshake()).await {
                Err(_) => return Err(ConnectError::Timeout),
                Ok(Err(e)) => return Err(ConnectError::Tls(e)),
                Ok(Ok(())) => Stream::Tls(Box::new(stream)),
            }
        }
    };
    Ok(UpConn {
        stream,
        buf: Vec::with_capacity(UPSTREAM_BUF),
        reused: false,
        idle_since: Instant::now(),
        _open: reservation.0,
    })
}

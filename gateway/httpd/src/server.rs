//! The listener: one acceptor thread, one thread per admitted connection, caps on both the
//! total and each peer's connections, graceful shutdown.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::conn::{Connection, write_response};
use crate::handler::Handler;
use crate::limits::Limits;
use crate::response::Response;
use crate::slots::{Busy, Slots};

/// How often the acceptor looks for new connections and at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(10);
/// How long [`Server::shutdown`] waits for open connections.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Counters of a server, for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections admitted.
    pub accepted: AtomicU64,
    /// Connections answered 503 `busy` (a cap was reached).
    pub busy: AtomicU64,
    /// Requests answered 408 (their deadline passed).
    pub timed_out: AtomicU64,
    /// Requests refused by [`Handler::authorize`], before any body byte was read.
    pub refused: AtomicU64,
    /// Requests answered 413.
    pub too_large: AtomicU64,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    slots: Arc<Slots>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves it with `handler`; threads are named `name` (the acceptor) and
    /// `name-conn`.
    ///
    /// # Errors
    /// When the address cannot be bound or the acceptor thread cannot start.
    pub fn bind<H: Handler>(
        addr: SocketAddr,
        name: &str,
        limits: Limits,
        handler: H,
    ) -> io::Result<Self> {
        Self::start(TcpListener::bind(addr)?, name, limits, handler)
    }

    /// Serves an already bound `listener` with `handler`.
    ///
    /// # Errors
    /// When the listener cannot be made non-blocking or the acceptor thread cannot start.
    pub fn start<H: Handler>(
        listener: TcpListener,
        name: &str,
        limits: Limits,
        handler: H,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let slots = Slots::new(limits.max_connections, limits.max_connections_per_peer);
        let stats = Arc::new(Stats::default());
        let acceptor = Acceptor {
            listener,
            name: format!("{name}-conn"),
            limits,
            handler: Arc::new(handler),
            stop: Arc::clone(&stop),
            slots: Arc::clone(&slots),
            stats: Arc::clone(&stats),
        };
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || acceptor.run())?;
        Ok(Self {
            addr,
            stop,
            slots,
            stats,
            thread: Some(thread),
        })
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's counters.
    #[must_use]
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Connections open now.
    #[must_use]
    pub fn active(&self) -> usize {
        self.slots.active()
    }

    /// Stops accepting and waits (at most 2 s) for open connections to end: idle ones end
    /// within a fifth of a second, a request in progress is answered first.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while self.slots.active() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

struct Acceptor<H> {
    listener: TcpListener,
    name: String,
    limits: Limits,
    handler: Arc<H>,
    stop: Arc<AtomicBool>,
    slots: Arc<Slots>,
    stats: Arc<Stats>,
}

impl<H: Handler> Acceptor<H> {
    fn run(self) {
        while !self.stop.load(Ordering::Acquire) {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(ACCEPT_POLL);
                }
                Err(e) => {
                    tracing::warn!(error = %e, server = %self.name, "accept failed");
                    std::thread::sleep(ACCEPT_POLL);
                }
            }
        }
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        let slot = match self.slots.acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(busy) => {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %peer, per_peer = (busy == Busy::Peer), server = %self.name,
                    "connection refused: busy");
                let text = match busy {
                    Busy::Total => "too many connections",
                    Busy::Peer => "too many connections from this address",
                };
                refuse(stream, &Response::error(503, "busy", text));
                return;
            }
        };
        if stream.set_nonblocking(false).is_err() {
            return;
        }
        let limits = self.limits;
        let handler = Arc::clone(&self.handler);
        let stop = Arc::clone(&self.stop);
        let stats = Arc::clone(&self.stats);
        let spawned = std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                let _slot = slot;
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                Connection::new(stream, peer, &limits, &stop, &*handler, &stats).run();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, server = %self.name, "cannot spawn a connection thread");
        }
    }
}

/// Answers a connection that got no slot without ever blocking the acceptor: what the peer
/// already sent is dropped, the answer is written only if it fits the socket's buffer (it does
/// on a fresh connection), and the connection is closed.
fn refuse(mut stream: TcpStream, response: &Response) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match io::Read::read(&mut stream, &mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let _ = write_response(&mut stream, response, false, false);
    let _ = stream.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests;

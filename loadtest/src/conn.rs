//! The request loop: one task per connection on a worker thread's runtime.
//!
//! Per request it picks pre-serialised bytes (an `Rc` clone), writes them, reads into the
//! connection's one reused buffer and runs the response parser over it. Nothing here allocates
//! except after a timeout (the read buffer went with the cancelled read) and nothing panics.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use monoio::{
    io::{AsyncReadRent, AsyncWriteRentExt},
    net::TcpStream,
    time::{sleep_until, timeout_at},
};

use crate::{
    Load,
    request::RequestSet,
    response::{ResponseParser, Step},
    stats::{ErrorKind, Live, ThreadStats},
};

/// Read buffer per connection; a response head must fit in it.
const READ_BUF: usize = 16 * 1024;
/// Pause after a failed connect in a closed loop, so a refused target is not hammered by a spin.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// The resolution of monoio's timer wheel.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// What one worker thread shares between its connection tasks.
#[derive(Debug)]
pub(crate) struct Worker {
    pub addr: SocketAddr,
    pub set: RequestSet,
    /// The serialised requests, shared by `Rc` so writing one needs no copy.
    pub bytes: Vec<Rc<Vec<u8>>>,
    pub load: Load,
    /// Connections over all threads (the open-loop stride).
    pub connections_total: u64,
    /// When the schedule (and the closed loop) starts.
    pub start: Instant,
    /// When recording starts (after the warm-up).
    pub measure_start: Instant,
    /// When a closed loop stops sending.
    pub end: Option<Instant>,
    pub timeout: Duration,
    /// Measured requests this thread may still send (`None`: no budget).
    pub budget: Cell<Option<u64>>,
    pub stats: RefCell<ThreadStats>,
    pub live: Arc<Live>,
    /// Completed requests (warm-up included) and errors, for `live`.
    pub done: Cell<u64>,
    pub failed: Cell<u64>,
}

impl Worker {
    fn take_permit(&self) -> bool {
        match self.budget.get() {
            None => true,
            Some(0) => false,
            Some(n) => {
                self.budget.set(Some(n - 1));
                true
            }
        }
    }

    fn record(
        &self,
        measured: bool,
        from: Instant,
        lag: Option<Duration>,
        done: Instant,
        result: Result<u16, ErrorKind>,
    ) {
        let (d, f) = (
            self.done.get() + 1,
            self.failed.get() + u64::from(result.is_err()),
        );
        self.done.set(d);
        self.failed.set(f);
        self.live.publish(d, f);
        if !measured {
            return;
        }
        let mut stats = self.stats.borrow_mut();
        if let Some(lag) = lag {
            let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
            stats.send_lag_us.saturating_record(micros);
        }
        match result {
            Ok(status) => {
                let latency = done.saturating_duration_since(from);
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                let second = done.saturating_duration_since(self.measure_start).as_secs();
                stats.response(
                    status,
                    micros,
                    usize::try_from(second).unwrap_or(usize::MAX),
                    done,
                );
            }
            Err(kind) => stats.error(kind),
        }
    }

    fn count_connect(&self) {
        self.stats.borrow_mut().connects += 1;
    }
}

/// xorshift64*: cheap, good enough to pick requests by weight.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// One keep-alive connection and its reusable state.
struct Conn {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    parser: ResponseParser,
}

impl Conn {
    fn reset(&mut self) {
        self.stream = None;
        self.parser = ResponseParser::new();
        self.buf.clear();
        if self.buf.capacity() < READ_BUF {
            // The buffer went with a cancelled read: the one allocation after a timeout.
            self.buf = Vec::with_capacity(READ_BUF);
        }
    }

    async fn connect(&mut self, worker: &Worker, deadline: Instant) -> Result<(), ErrorKind> {
        let connect = TcpStream::connect_addr(worker.addr);
        match timeout_at(deadline.into(), connect).await {
            Ok(Ok(stream)) => {
                // Requests are written whole; Nagle would only delay them.
                let _ = stream.set_nodelay(true);
                self.stream = Some(stream);
                worker.count_connect();
                Ok(())
            }
            Ok(Err(_)) => Err(ErrorKind::Connect),
            Err(_) => Err(ErrorKind::Timeout),
        }
    }

    /// Sends one request and reads its response: the status, or why it failed. The connection
    /// is dropped after a failure or a `Connection: close`.
    async fn exchange(
        &mut self,
        worker: &Worker,
        request: Rc<Vec<u8>>,
        head: bool,
        deadline: Instant,
    ) -> Result<u16, ErrorKind> {
        if self.stream.is_none() {
            self.connect(worker, deadline).await?;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(ErrorKind::Connect);
        };
        let round = roundtrip(stream, &mut self.buf, &mut self.parser, request, head);
        match timeout_at(deadline.into(), round).await {
            Ok(Ok((status, close))) => {
                if close {
                    self.stream = None;
                }
                Ok(status)
            }
            Ok(Err(kind)) => {
                self.reset();
                Err(kind)
            }
            Err(_) => {
                self.reset();
                Err(ErrorKind::Timeout)
            }
        }
    }
}

async fn roundtrip(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    parser: &mut ResponseParser,
    request: Rc<Vec<u8>>,
    head: bool,
) -> Result<(u16, bool), ErrorKind> {
    let (res, _) = stream.write_all(request).await;
    res.map_err(|_| ErrorKind::Write)?;
    loop {
        if buf.len() == buf.capacity() {
            // A head that does not fit in the buffer.
            return Err(ErrorKind::Parse);
        }
        let (res, b) = stream.read(std::mem::take(buf)).await;
        *buf = b;
        let step = match res {
            Ok(0) => parser.eof().map_err(|_| ErrorKind::Read)?,
            Ok(_) => parser.feed(buf, head).map_err(|_| ErrorKind::Parse)?,
            Err(_) => return Err(ErrorKind::Read),
        };
        match step {
            Step::NeedMore { consumed } => drop_front(buf, consumed),
            Step::Done {
                consumed,
                status,
                close,
            } => {
                drop_front(buf, consumed);
                return Ok((status, close));
            }
        }
    }
}

fn drop_front(buf: &mut Vec<u8>, n: usize) {
    if n >= buf.len() {
        buf.clear();
    } else if n > 0 {
        buf.drain(..n);
    }
}

/// Runs connection `index` (of all threads) until its schedule, duration or budget ends.
pub(crate) async fn connection(worker: Rc<Worker>, index: u64) {
    let mut conn = Conn {
        stream: None,
        buf: Vec::with_capacity(READ_BUF),
        parser: ResponseParser::new(),
    };
    // Connect before the start so that set-up is not measured; a failure is retried (and
    // counted) with the first request.
    if conn.connect(&worker, worker.start).await.is_err() {
        conn.reset();
    }
    sleep_until(worker.start.into()).await;
    let mut rng = Rng::new(index + 1);
    let mut next = index;
    let mut cursor = 0usize;
    let single = worker.set.is_single();
    loop {
        let due = match &worker.load {
            Load::Closed => {
                let now = Instant::now();
                if worker.end.is_some_and(|end| now >= end) {
                    break;
                }
                now
            }
            Load::Open(schedule) => {
                let Some(offset) = schedule.time_of(next, &mut cursor) else {
                    break;
                };
                next += worker.connections_total;
                let due = worker.start + offset;
                // monoio's timer wheel has 1 ms ticks and rounds deadlines up, so a sleep until
                // `due` wakes 1–2 ms late. Aim one tick early instead: the send lands within
                // about a tick of `due`, on either side.
                let wake = due.checked_sub(TIMER_TICK).unwrap_or(due);
                if wake > Instant::now() {
                    sleep_until(wake.into()).await;
                }
                due
            }
        };
        let measured = due >= worker.measure_start;
        if measured && !worker.take_permit() {
            break;
        }
        let pick = if single {
            0
        } else {
            worker.set.pick(rng.next(), rng.next(), rng.next())
        };
        let (Some(bytes), Some(req)) = (worker.bytes.get(pick), worker.set.requests.get(pick))
        else {
            break;
        };
        // A request late on its schedule still gets the full timeout from when it is sent.
        let sent = Instant::now();
        let lag = match worker.load {
            Load::Open(_) => Some(sent.saturating_duration_since(due)),
            Load::Closed => None,
        };
        let deadline = sent + worker.timeout;
        let result = conn
            .exchange(&worker, bytes.clone(), req.head, deadline)
            .await;
        let done = Instant::now();
        let connect_failed = result == Err(ErrorKind::Connect);
        // Latency runs from the intended time, or from the actual send when that came a little
        // early (a request sent early really did take `done - sent`).
        worker.record(measured, due.min(sent), lag, done, result);
        if connect_failed && matches!(worker.load, Load::Closed) {
            sleep_until((done + CONNECT_BACKOFF).into()).await;
        }
    }
}

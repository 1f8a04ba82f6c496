//! A real HTTP/1.1 upstream for the tests: std::net on an ephemeral 127.0.0.1 port, one thread
//! per connection. It counts what it answers (per status, with timestamps and accepted
//! connections) and can be told to stall.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// How the upstream answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `200` with a 5-byte body.
    Hello,
    /// The n-th answer (over all connections) gets `statuses[n % len]`.
    Statuses(Vec<u16>),
    /// `200` with a chunked body written in several pieces.
    Chunked,
    /// Every `n`-th answer carries `Connection: close` and the connection is closed after it.
    CloseEvery(u64),
}

#[derive(Debug)]
struct State {
    mode: Mode,
    answered: AtomicU64,
    /// Decides each answer's status: taken before answering, so that concurrent connections
    /// get distinct positions in the cycle.
    seq: AtomicU64,
    accepted: AtomicU64,
    stall_until: Mutex<Option<Instant>>,
    per_status: Mutex<BTreeMap<u16, u64>>,
    times: Mutex<Vec<Instant>>,
}

/// A running upstream; its threads end with the test process.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Upstream {
    pub fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            mode,
            answered: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            stall_until: Mutex::new(None),
            per_status: Mutex::new(BTreeMap::new()),
            times: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                thread::spawn(move || serve(stream, &s));
            }
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Responses written so far.
    pub fn answered(&self) -> u64 {
        self.state.answered.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    pub fn per_status(&self) -> BTreeMap<u16, u64> {
        self.state.per_status.lock().unwrap().clone()
    }

    /// When each response was written.
    pub fn times(&self) -> Vec<Instant> {
        self.state.times.lock().unwrap().clone()
    }

    /// Holds every response (new and in progress) until `d` from now.
    pub fn stall(&self, d: Duration) {
        *self.state.stall_until.lock().unwrap() = Some(Instant::now() + d);
    }
}

fn serve(stream: TcpStream, state: &State) {
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        // Request head.
        let mut content_length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            if first {
                first = false;
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let until = *state.stall_until.lock().unwrap();
        if let Some(until) = until {
            let now = Instant::now();
            if until > now {
                thread::sleep(until - now);
            }
        }
        let n = state.seq.fetch_add(1, Ordering::SeqCst);
        let (status, close) = match &state.mode {
            Mode::Hello | Mode::Chunked => (200, false),
            Mode::Statuses(list) => (list[(n as usize) % list.len()], false),
            Mode::CloseEvery(k) => (200, (n + 1) % k == 0),
        };
        let ok = if matches!(state.mode, Mode::Chunked) {
            write_chunked(&mut writer)
        } else {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: 5\r\n{}\r\nhello",
                if close { "Connection: close\r\n" } else { "" }
            );
            writer.write_all(head.as_bytes()).is_ok()
        };
        if !ok {
            return;
        }
        state.answered.fetch_add(1, Ordering::SeqCst);
        *state.per_status.lock().unwrap().entry(status).or_default() += 1;
        state.times.lock().unwrap().push(Instant::now());
        if close {
            return;
        }
    }
}

fn write_chunked(w: &mut TcpStream) -> bool {
    let pieces: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n",
        b"10;ext=1\r\n0123456789abcdef\r\n",
        b"0\r\nX-Trailer: yes\r\n\r\n",
    ];
    pieces
        .iter()
        .all(|p| w.write_all(p).is_ok() && w.flush().is_ok())
}

//! The running ledger's local door: a Unix socket beside its store (`<store>.sock`) through
//! which `ledger dump` and `ledger rebuild` read a store that a running process holds (redb
//! locks the file: no second process can open it). Local only (the file system's permissions
//! guard it, as they guard the store), one request per connection, served one at a time off
//! the fold thread, each in its own read transaction: the fold never waits for it.
//!
//! ```text
//! client: "dump\n"   → the store's JSON lines (Store::dump), then EOF
//! client: "state\n"  → {"state_hash": …, "positions": {source: next}}, then EOF
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{LedgerError, LedgerErrorKind};
use crate::runtime::Shared;
use crate::store::Store;

/// The socket beside `store`.
#[must_use]
pub fn socket_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".sock");
    name.into()
}

/// The serving thread; stops (and removes the socket) when dropped.
#[derive(Debug)]
pub struct LocalDoor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Drop for LocalDoor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves the socket of `shared`'s store. The caller holds the store (its lock), so a socket file already
/// there is a dead process's and is replaced.
///
/// # Errors
/// When the socket cannot be bound (a path over the 107 bytes Unix sockets allow, a read-only
/// directory).
pub fn serve(shared: Arc<Shared>) -> Result<LocalDoor, LedgerError> {
    let path = socket_path(&shared.config.store_path);
    let _ = std::fs::remove_file(&path);
    let io = |what: &str, e| {
        LedgerError::with(LedgerErrorKind::Io, format!("{what} {}", path.display()), e)
    };
    let listener = UnixListener::bind(&path).map_err(|e| io("bind", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io("set non-blocking", e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("ledger-local".into())
        .spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => answer(&shared.store, conn),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ledger local socket: accept failed");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
        .map_err(|e| io("spawn the thread of", e))?;
    Ok(LocalDoor {
        stop,
        thread: Some(thread),
        path,
    })
}

fn answer(store: &Store, conn: UnixStream) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let mut reader = BufReader::new(&conn);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut out = std::io::BufWriter::new(&conn);
    let result = match line.trim() {
        "dump" => store.dump(&mut out),
        "state" => state(store).and_then(|v| {
            writeln!(out, "{v}").map_err(|e| LedgerError::with(LedgerErrorKind::Io, "write", e))
        }),
        other => writeln!(out, "{{\"error\": \"unknown request {other:?}\"}}")
            .map_err(|e| LedgerError::with(LedgerErrorKind::Io, "write", e)),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "ledger local socket: request failed");
    }
    let _ = out.flush();
}

/// The store's state hash and positions (next offset per source).
///
/// # Errors
/// Store errors.
pub fn state(store: &Store) -> Result<serde_json::Value, LedgerError> {
    let positions: serde_json::Map<String, serde_json::Value> = store
        .positions()?
        .into_iter()
        .map(|(k, p)| (k, serde_json::Value::from(p.next)))
        .collect();
    Ok(serde_json::json!({"state_hash": store.state_hash()?, "positions": positions}))
}

/// Asks the process holding `store_path` for `request` (`dump` or `state`), copying the answer
/// to `out`.
///
/// # Errors
/// [`LedgerErrorKind::Locked`] when no process answers on the socket (none runs, or one too old
/// to have it), [`LedgerErrorKind::Io`] when the answer cannot be read or written.
pub fn ask(store_path: &Path, request: &str, out: &mut dyn Write) -> Result<(), LedgerError> {
    let path = socket_path(store_path);
    let mut conn = UnixStream::connect(&path).map_err(|e| {
        LedgerError::with(
            LedgerErrorKind::Locked,
            format!("no ledger answers on {}", path.display()),
            e,
        )
    })?;
    let io = |e| LedgerError::with(LedgerErrorKind::Io, format!("read {}", path.display()), e);
    writeln!(conn, "{request}").map_err(io)?;
    std::io::copy(&mut conn, out).map_err(io)?;
    Ok(())
}

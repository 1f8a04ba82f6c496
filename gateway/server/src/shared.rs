//! What the cores of a node share, read by each core's ticker and by the node's threads (health
//! checks, totals follower, ticket rotation, admin API), never on the request path: the current
//! snapshot, the shutdown flag, health verdicts, the cores' published counters, and the HTTPS
//! listener's ticket keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::snapshot::Snapshot;

/// Health-check verdicts by (backend id, target index).
pub type Verdicts = HashMap<(Box<str>, usize), bool>;

/// What the cores of a node share: the current snapshot and the shutdown flag. Read by each
/// core's ticker, never on the request path.
#[derive(Debug)]
pub struct NodeShared {
    pub(crate) generation: AtomicU64,
    snapshot: Mutex<Arc<Snapshot>>,
    shutdown: AtomicBool,
    pub(crate) health_generation: AtomicU64,
    health: Mutex<Verdicts>,
    /// Each core's published request counters (read by the admin API's `/metrics`).
    pub metrics: crate::metrics::NodeMetrics,
    /// The HTTPS listener's shared parts, when there is one (set once, before the cores run).
    pub(crate) tls: std::sync::OnceLock<NodeTls>,
}

/// What the cores' TLS configs are built from: the listener's settings and the node's ticket
/// keys (rotated by a node thread; each core rebuilds its config when the generation moves).
#[derive(Debug)]
pub struct NodeTls {
    pub(crate) listener: Arc<crate::tls::ListenerTls>,
    keys: Mutex<Arc<crate::tls::TicketKeys>>,
    pub(crate) generation: std::sync::atomic::AtomicU32,
}

impl NodeTls {
    /// Fresh ticket keys for `listener`.
    ///
    /// # Errors
    /// When no randomness can be read.
    pub fn new(
        listener: Arc<crate::tls::ListenerTls>,
        rotation: Duration,
    ) -> std::io::Result<Self> {
        let keys = crate::tls::TicketKeys::new(rotation)?;
        Ok(Self {
            listener,
            generation: std::sync::atomic::AtomicU32::new(keys.generation()),
            keys: Mutex::new(Arc::new(keys)),
        })
    }

    pub(crate) fn keys(&self) -> Arc<crate::tls::TicketKeys> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn rotate(&self) {
        let next = self.keys().rotated();
        match next {
            Ok(next) => {
                let generation = next.generation();
                *self.keys.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
                self.generation.store(generation, Ordering::Release);
                tracing::info!(generation, "TLS session-ticket key rotated");
            }
            Err(e) => tracing::error!(error = %e, "TLS session-ticket key not rotated"),
        }
    }
}

/// Rotates the node's ticket keys every `every` (a node thread; cores follow within a tick).
pub fn spawn_ticket_rotation(
    shared: Arc<NodeShared>,
    every: Duration,
) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tollgate-tickets".to_owned())
        .spawn(move || {
            let mut next = Instant::now() + every;
            while !shared.is_shutting_down() {
                std::thread::sleep(Duration::from_millis(100).min(every));
                if Instant::now() >= next {
                    if let Some(tls) = shared.tls.get() {
                        tls.rotate();
                    }
                    next = Instant::now() + every;
                }
            }
        })
        .ok()
}

impl NodeShared {
    /// Shared state starting with `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            generation: AtomicU64::new(snapshot.generation),
            snapshot: Mutex::new(Arc::new(snapshot)),
            shutdown: AtomicBool::new(false),
            health_generation: AtomicU64::new(0),
            health: Mutex::new(Verdicts::new()),
            metrics: crate::metrics::NodeMetrics::default(),
            tls: std::sync::OnceLock::new(),
        }
    }

    /// Sets the HTTPS listener's shared parts (once, before the cores start).
    pub fn set_tls(&self, tls: Option<NodeTls>) {
        if let Some(tls) = tls {
            let _ = self.tls.set(tls);
        }
    }

    /// Records health-check verdicts; cores apply them on their next tick.
    pub fn record_health(&self, verdicts: Verdicts) {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(verdicts);
        self.health_generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn health(&self) -> Verdicts {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes a new snapshot; every core picks it up within one tick, between requests.
    pub fn publish(&self, snapshot: Snapshot) {
        let generation = snapshot.generation;
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
        self.generation.store(generation, Ordering::Release);
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks every core to stop accepting and drain.
    pub fn shut_down(&self) {
        self.shutdown.store(true, Ordering::Release);
    }

    /// Whether shutdown was asked for.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

//! Running a ledger: the fold thread over a source, the query API, and the in-process handle
//! an embedding gateway reads totals through.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use gateway_model::event::TotalsRecord;

use crate::config::{LedgerConfig, SourceConfig};
use crate::error::{LedgerError, LedgerErrorKind};
use crate::fold::{Fold, FoldStats};
use crate::metrics::Metrics;
use crate::pseudonym::{self, ClientIdOnly};
use crate::store::{CommitSummary, Store};

/// Milliseconds since the Unix epoch, now.
pub use gateway_events::clock::now_ms;

/// State shared by the fold thread, the query threads and the handles.
#[derive(Debug)]
pub struct Shared {
    /// The store.
    pub store: Store,
    /// The configuration.
    pub config: LedgerConfig,
    /// Live metrics.
    pub metrics: Metrics,
    totals: Mutex<TotalsVersions>,
    /// The client-id-only API keys folded so far (their ids are credentials).
    client_id_only: RwLock<ClientIdOnly>,
    /// Set to stop the threads.
    pub stop: AtomicBool,
}

#[derive(Debug, Default)]
struct TotalsVersions {
    version: u64,
    changed: HashMap<String, u64>,
}

impl Shared {
    /// Opens the store of `config` and loads the stored counters.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn open(config: LedgerConfig) -> Result<Arc<Self>, LedgerError> {
        let store = Store::open(&config.store_path)?;
        Self::with_store(config, store)
    }

    /// Shared state over an already open store.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn with_store(config: LedgerConfig, store: Store) -> Result<Arc<Self>, LedgerError> {
        let metrics = Metrics::new(store.stats()?);
        let mut client_id_only = ClientIdOnly::default();
        store.each_history("apikey", |event| {
            if let Some(id) = pseudonym::client_id_only_key(event) {
                client_id_only.insert(&id);
            }
        })?;
        let shared = Arc::new(Self {
            store,
            config,
            metrics,
            totals: Mutex::new(TotalsVersions::default()),
            client_id_only: RwLock::new(client_id_only),
            stop: AtomicBool::new(false),
        });
        // Every key with usage this month is "changed" at version 1, so that a gateway polling
        // `totals_since(0)` after a restart gets them all.
        if let Some(day) = shared.config.calendar.day_of(now_ms()) {
            let keys = shared.store.keys_in_month(day / 100)?;
            let mut t = shared.lock_totals();
            t.version = 1;
            t.changed = keys.into_iter().map(|k| (k, 1)).collect();
        }
        Ok(shared)
    }

    fn lock_totals(&self) -> std::sync::MutexGuard<'_, TotalsVersions> {
        self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client-id-only API keys known now, for answers that must hide them.
    pub fn client_id_only(&self) -> std::sync::RwLockReadGuard<'_, ClientIdOnly> {
        self.client_id_only
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A fold resuming from the store.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn resume_fold(&self) -> Result<Fold, LedgerError> {
        Ok(Fold::resume(
            self.config.calendar.clone(),
            self.config.grace_ms(),
            self.store.producers()?,
            self.store.positions()?,
        )
        .with_resets(self.store.resets()?))
    }

    /// Commits the fold's chunk if it holds anything, then updates metrics and totals
    /// versions.
    ///
    /// # Errors
    ///
    /// Store errors: nothing was written and the fold must be resumed from the store.
    pub fn commit(&self, fold: &mut Fold) -> Result<Option<CommitSummary>, LedgerError> {
        if fold.delta().is_empty() {
            return Ok(None);
        }
        let delta = fold.take_delta();
        // Before the commit: once the chunk's usage is readable, its keys are already known to
        // be hidden (marking a key early is harmless; the fold would mark it again).
        let newly: Vec<String> = delta
            .history
            .iter()
            .filter(|h| h.kind == "apikey")
            .filter_map(|h| pseudonym::client_id_only_key(&h.json))
            .collect();
        if !newly.is_empty() {
            let mut known = self
                .client_id_only
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for id in &newly {
                known.insert(id);
            }
        }
        let summary = match self
            .store
            .commit(&delta, fold.producers(), fold.positions())
        {
            Ok(s) => s,
            Err(e) => {
                self.metrics.commit_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let m = &self.metrics;
        m.add(&summary.stats);
        m.commits.fetch_add(1, Ordering::Relaxed);
        m.last_commit_ms.store(now_ms(), Ordering::Relaxed);
        let s = &summary.stats;
        if s.gaps + s.filled + s.abandoned > 0 {
            let missing = fold
                .producers()
                .values()
                .fold(0u64, |sum, p| sum.saturating_add(p.missing()));
            m.missing.store(missing, Ordering::Relaxed);
        }
        if let Some(hw) = fold.positions().values().map(|p| p.high_water_ms).max() {
            m.high_water_ms.fetch_max(hw, Ordering::Relaxed);
        }
        if !summary.changed_keys.is_empty() {
            let mut t = self.lock_totals();
            t.version += 1;
            let version = t.version;
            for key in &summary.changed_keys {
                match t.changed.get_mut(key) {
                    Some(v) => *v = version,
                    None => {
                        t.changed.insert(key.clone(), version);
                    }
                }
            }
        }
        Ok(Some(summary))
    }

    /// Totals of `apikey` for the current local day and month.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn totals(&self, apikey: &str) -> Result<Option<TotalsRecord>, LedgerError> {
        let now = now_ms();
        let Some(day) = self.config.calendar.day_of(now) else {
            return Ok(None);
        };
        self.store
            .totals(apikey, day, now, Some(&self.config.instance))
    }

    /// Totals changed since `version`.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn totals_since(&self, version: u64) -> Result<TotalsUpdate, LedgerError> {
        let (current, keys): (u64, Vec<String>) = {
            let t = self.lock_totals();
            (
                t.version,
                t.changed
                    .iter()
                    .filter(|(_, v)| **v > version)
                    .map(|(k, _)| k.clone())
                    .collect(),
            )
        };
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(record) = self.totals(&key)? {
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.apikey.cmp(&b.apikey));
        Ok(TotalsUpdate {
            version: current,
            records,
        })
    }

    /// The source's name for health and metrics.
    #[must_use]
    pub fn source_name(&self) -> &'static str {
        match self.config.source {
            SourceConfig::Journal { .. } => "journal",
            SourceConfig::Kafka { .. } => "kafka",
        }
    }
}

/// Totals that changed since a version, and the version to ask from next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalsUpdate {
    /// Pass this to the next `totals_since`.
    pub version: u64,
    /// The current totals of every key changed since the version asked for, by key.
    pub records: Vec<TotalsRecord>,
}

/// A running ledger: its fold thread and, if configured, its query API.
#[derive(Debug)]
pub struct Ledger {
    shared: Arc<Shared>,
    fold: Option<JoinHandle<()>>,
    http: Option<gateway_httpd::Server>,
    addr: Option<SocketAddr>,
    /// `<store>.sock`: `ledger dump` and `ledger rebuild` while this process holds the store.
    local: Option<crate::local::LocalDoor>,
}

/// A cheap, cloneable handle on a running ledger, for the embedding gateway.
#[derive(Debug, Clone)]
pub struct LedgerHandle {
    shared: Arc<Shared>,
}

impl Ledger {
    /// Opens the store, binds the query API (if `config.addr` is set) and starts folding the
    /// configured source from the stored positions.
    ///
    /// # Errors
    ///
    /// The store cannot be opened (another process holds it), or the address cannot be bound.
    pub fn start(config: LedgerConfig) -> Result<Self, LedgerError> {
        let shared = Shared::open(config)?;
        Self::start_shared(shared)
    }

    /// Starts over already opened shared state.
    ///
    /// # Errors
    ///
    /// As [`Ledger::start`].
    pub fn start_shared(shared: Arc<Shared>) -> Result<Self, LedgerError> {
        let (http, addr) = match shared.config.addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr).map_err(|e| {
                    LedgerError::with(LedgerErrorKind::Io, format!("bind {addr}"), e)
                })?;
                let server = crate::http::serve(listener, Arc::clone(&shared))?;
                let local = Some(server.addr());
                (Some(server), local)
            }
            None => (None, None),
        };
        let local = match crate::local::serve(Arc::clone(&shared)) {
            Ok(door) => Some(door),
            Err(e) => {
                tracing::warn!(error = %e, "ledger dump and rebuild will not work while this runs");
                None
            }
        };
        shared.metrics.running.store(true, Ordering::Relaxed);
        let worker = Arc::clone(&shared);
        let fold = std::thread::Builder::new()
            .name("ledger-fold".into())
            .spawn(move || {
                crate::source::run(&worker);
                worker.metrics.running.store(false, Ordering::Relaxed);
            })
            .map_err(|e| LedgerError::with(LedgerErrorKind::Io, "spawn fold thread", e))?;
        tracing::info!(
            source = shared.source_name(),
            store = %shared.config.store_path.display(),
            addr = %addr.map_or_else(|| "none".to_owned(), |a| a.to_string()),
            "ledger started"
        );
        Ok(Self {
            shared,
            fold: Some(fold),
            http,
            addr,
            local,
        })
    }

    /// A handle for in-process reads.
    #[must_use]
    pub fn handle(&self) -> LedgerHandle {
        LedgerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The query API's bound address.
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Stops folding (committing what was read), stops the query API and waits for both.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Blocks until the fold thread ends (it ends only on shutdown or a fatal error).
    pub fn wait(mut self) {
        if let Some(fold) = self.fold.take() {
            let _ = fold.join();
        }
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(fold) = self.fold.take() {
            let _ = fold.join();
        }
        if let Some(http) = self.http.take() {
            http.shutdown();
        }
        self.local.take();
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop();
    }
}

impl LedgerHandle {
    /// Totals of `apikey` for the current day and month in the configured time zone, with the
    /// per-node breakdown; `None` if the key has no admitted call this month (or the store
    /// failed, which is logged).
    #[must_use]
    pub fn totals(&self, apikey: &str) -> Option<TotalsRecord> {
        self.shared.totals(apikey).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ledger totals read failed");
            None
        })
    }

    /// Current totals of every key whose admitted calls changed since `version` (0: every
    /// key with usage this month), and the version to pass next time.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn totals_since(&self, version: u64) -> Result<TotalsUpdate, LedgerError> {
        self.shared.totals_since(version)
    }

    /// The canonical state hash of the store.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn state_hash(&self) -> Result<String, LedgerError> {
        self.shared.store.state_hash()
    }

    /// The fold's counters, summed over every commit of this store.
    #[must_use]
    pub fn stats(&self) -> FoldStats {
        self.shared.metrics.stats()
    }

    /// The store, for queries.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.shared.store
    }
}

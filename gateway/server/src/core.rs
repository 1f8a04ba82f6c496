//! One core's state, shared by its runtime's tasks (the accept loop, one task per connection, a
//! ticker; they live in [`crate::worker`]), all `!Sync` and local: the current snapshot, the upstream pool, the
//! balancers, the flow scratch. The only cross-core data is read by the ticker every
//! [`TICK`], never per request: the node's snapshot cell and its shutdown flag.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gateway_core::balance::{Balancer, Outcome, PickHint, Ticket};
use gateway_core::flow::FlowScratch;
use monoio::io::{CancelHandle, Canceller};
use rustc_hash::FxHashMap;

use crate::config::HttpLimits;
pub use crate::shared::{NodeShared, NodeTls, Verdicts, spawn_ticket_rotation};
use crate::snapshot::Snapshot;
use crate::upstream::Pool;

/// How often a core looks at the node's snapshot and shutdown flag, and sweeps its pool.
pub const TICK: Duration = Duration::from_millis(50);

/// Pool sweeps happen every this many ticks (1 s).
const SWEEP_EVERY_TICKS: u64 = 20;

/// A core's view of a snapshot: the node's snapshot, plus this core's own copies of what holds
/// regexes (the key store with its restrictions, the flows with theirs). A `regex::Regex` used
/// from several threads serialises its searches on a shared cache pool; a clone per core gets its
/// own, so no two cores ever wait on each other.
#[derive(Debug)]
pub struct CoreSnapshot {
    /// The node's snapshot.
    pub shared: Arc<Snapshot>,
    /// This core's copy of the API keys.
    pub keys: gateway_core::apikey::KeyStore,
    /// This core's copy of the routes' flows, by route slot.
    pub flows: Vec<gateway_core::flow::Flow>,
    /// Client ids by `KeyEntry::index` (usage is charged by client id).
    pub key_ids: Vec<Box<str>>,
}

impl CoreSnapshot {
    fn new(shared: Arc<Snapshot>) -> Self {
        let mut key_ids = vec![Box::<str>::from(""); shared.keys.len()];
        for k in shared.keys.iter() {
            if let Some(slot) = key_ids.get_mut(k.index()) {
                *slot = k.client_id().into();
            }
        }
        Self {
            keys: shared.keys.clone(),
            flows: shared.routes.iter().map(|r| r.flow.clone()).collect(),
            key_ids,
            shared,
        }
    }
}

/// One core's state.
pub struct Core {
    /// Core number.
    pub id: usize,
    /// Node id (request ids).
    pub node: Rc<str>,
    /// Downstream limits.
    pub limits: HttpLimits,
    node_shared: Arc<NodeShared>,
    current: RefCell<Rc<CoreSnapshot>>,
    /// Upstream connections and the backends' balancers.
    pub upstreams: Upstreams,
    /// Failed OAuth2 client authentications on this core (`gateway_core::oauth`).
    pub oauth_throttle: RefCell<gateway_core::oauth::Throttle>,
    /// What the lifecycle's decisions change: this core's quota leases and flow buffers
    /// (`gateway_core::lifecycle::CoreState` borrows both from one cell).
    pub lifecycle: RefCell<LifecycleParts>,
    /// This core's usage counters and its way to the event sink (none without a data dir).
    pub usage: RefCell<Option<CoreUsage>>,
    /// Request counters, plain; published into `metrics_cell` once per tick.
    pub stats: RefCell<crate::metrics::CoreStats>,
    /// This core's access log lines (none when the access log is off).
    pub access: RefCell<Option<crate::access::CoreAccess>>,
    /// This core's TLS config (its own session cache and ticketer), rebuilt between
    /// connections when the certificates or the ticket keys change.
    tls: RefCell<Option<CoreTls>>,
    metrics_cell: Arc<crate::metrics::CoreCell>,
    days: Cell<Option<(gateway_core::window::Window, gateway_core::window::Window)>>,
    active: Cell<usize>,
    draining: Cell<bool>,
    idle_cancel: RefCell<Canceller>,
    pub(crate) accept_cancel: RefCell<Canceller>,
    requests: Cell<u64>,
    /// State of the per-core id generator (trace and span ids; splitmix64, seeded at start).
    ids: Cell<u64>,
    health_seen: Cell<u64>,
    ticks: Cell<u64>,
    /// The clock as the ticker last read it: a monotonic instant and the wall-clock ms at that
    /// instant. Requests read the monotonic clock once and derive the wall clock from this
    /// (`wall_ms`); timeouts of many seconds may start from `coarse_now` (at most a tick old).
    clock: Cell<(Instant, i64)>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.id)
            .field("active", &self.active.get())
            .field("draining", &self.draining.get())
            .finish_non_exhaustive()
    }
}

/// One core's TLS config and what it was built from.
#[derive(Debug)]
struct CoreTls {
    config: Arc<rustls::ServerConfig>,
    certs: Arc<crate::tls::CertStore>,
    key_generation: u32,
    handshake_timeout: Duration,
}

/// A core's upstream side: its connection pool and the backends' balancers (their targets'
/// breakers, health and in-flight counts), owned by the core and touched by its requests only.
pub struct Upstreams {
    /// Idle and reserved upstream connections.
    pub pool: RefCell<Pool>,
    balancers: RefCell<FxHashMap<Box<str>, Balancer>>,
    /// Seeds the balancers' random policies (a different stream per core and per rebuild).
    seed: Cell<u64>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("balancers", &self.balancers.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Upstreams {
    fn new(core: usize) -> Self {
        Self {
            pool: RefCell::new(Pool::default()),
            balancers: RefCell::new(FxHashMap::default()),
            seed: Cell::new(0x9e37_79b9_7f4a_7c15 ^ (core as u64 + 1)),
        }
    }

    /// Balancers for `snapshot`'s backends: a backend kept by id keeps its balancer's state
    /// (breakers, in-flight counts); then the health verdicts.
    fn rebuild(&self, snapshot: &Snapshot, verdicts: &Verdicts, now: i64) {
        let mut old = self.balancers.take();
        let mut new = FxHashMap::default();
        for b in &snapshot.backends {
            if b.mock.is_some() {
                continue;
            }
            let seed = self
                .seed
                .get()
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            self.seed.set(seed);
            let built = match old.remove(&b.id) {
                Some(prev) => Balancer::rebuild_from(&prev, &b.spec),
                None => Balancer::new(&b.spec, seed),
            };
            if let Ok(balancer) = built {
                new.insert(b.id.clone(), balancer);
            }
        }
        *self.balancers.borrow_mut() = new;
        self.apply_health(snapshot, verdicts, now);
    }

    /// Unresolved targets and targets failing their health check are skipped.
    fn apply_health(&self, snapshot: &Snapshot, verdicts: &Verdicts, now: i64) {
        let mut balancers = self.balancers.borrow_mut();
        for b in &snapshot.backends {
            let Some(balancer) = balancers.get_mut(&b.id) else {
                continue;
            };
            for (i, t) in b.targets.iter().enumerate() {
                let checked = verdicts.get(&(b.id.clone(), i)).copied().unwrap_or(true);
                if let Some(id) = balancer.id_at(i) {
                    let healthy = t.addr.is_some() && checked;
                    let was = balancer.target(id, now).is_some_and(|s| s.healthy);
                    if was != healthy {
                        balancer.set_health(id, healthy);
                    }
                }
            }
        }
    }

    /// Picks a target of `backend` for a client at `peer` and starts the call on it.
    pub fn pick(
        &self,
        snapshot: &Snapshot,
        backend: usize,
        peer: std::net::IpAddr,
        header_value: Option<&[u8]>,
        now: i64,
    ) -> Option<(Ticket, SocketAddr)> {
        let spec = snapshot.backends.get(backend)?;
        let mut balancers = self.balancers.borrow_mut();
        let balancer = balancers.get_mut(&spec.id)?;
        let ip_v4;
        let ip_v6;
        let client_ip: &[u8] = match peer {
            std::net::IpAddr::V4(ip) => {
                ip_v4 = ip.octets();
                &ip_v4
            }
            std::net::IpAddr::V6(ip) => {
                ip_v6 = ip.octets();
                &ip_v6
            }
        };
        let hint = PickHint {
            client_ip: Some(client_ip),
            header_value,
        };
        let id = balancer.pick(now, hint)?;
        let addr = spec.targets.get(id.index())?.addr?;
        Some((balancer.start(id, now), addr))
    }

    /// Picks another target of `backend` for a retry after a failure on `failed`.
    pub fn pick_retry(
        &self,
        snapshot: &Snapshot,
        backend: usize,
        failed: gateway_core::balance::TargetId,
        now: i64,
    ) -> Option<(Ticket, SocketAddr)> {
        let spec = snapshot.backends.get(backend)?;
        let mut balancers = self.balancers.borrow_mut();
        let balancer = balancers.get_mut(&spec.id)?;
        let id = balancer.next_for_retry(now, PickHint::default(), failed)?;
        let addr = spec.targets.get(id.index())?.addr?;
        Some((balancer.start(id, now), addr))
    }

    /// The call of `ticket` ended.
    pub fn finish(
        &self,
        snapshot: &Snapshot,
        backend: usize,
        ticket: Ticket,
        outcome: Outcome,
        now: i64,
    ) {
        let Some(spec) = snapshot.backends.get(backend) else {
            return;
        };
        if let Some(b) = self.balancers.borrow_mut().get_mut(&spec.id) {
            b.finish(ticket, outcome, now);
        }
    }
}

/// The per-core state `gateway_core::lifecycle::decide` changes.
#[derive(Debug)]
pub struct LifecycleParts {
    /// This core's quota leases.
    pub shard: gateway_core::quota::QuotaShard,
    /// Flow buffers.
    pub scratch: FlowScratch,
}

/// A core's usage pipeline: its accumulator (mirrored in the core's tally file) and the sink it
/// hands batches to.
#[derive(Debug)]
pub struct CoreUsage {
    /// Per-identity counters.
    pub acc: gateway_core::usage::UsageAccumulator<crate::tally::Tally>,
    /// The sink thread's intake (never blocks).
    pub sink: crate::journal::sink::SinkHandle,
    /// Identities counted in memory only, as last logged (logged again when it doubles).
    pub unmirrored_logged: u64,
}

/// Decrements the active-connection count when a connection ends.
#[derive(Debug)]
pub struct ActiveGuard(Rc<Core>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
    }
}

pub(crate) use gateway_events::clock::now_ms;

impl Core {
    /// A core's state, starting on the node's current snapshot.
    pub fn new(
        id: usize,
        node: &str,
        limits: HttpLimits,
        node_shared: Arc<NodeShared>,
    ) -> Rc<Self> {
        let snapshot = node_shared.current();
        let metrics_cell = node_shared.metrics.register(id);
        metrics_cell.set_applied(snapshot.generation);
        let core = Rc::new(Self {
            id,
            node: node.into(),
            limits,
            node_shared,
            current: RefCell::new(Rc::new(CoreSnapshot::new(snapshot.clone()))),
            upstreams: Upstreams::new(id),
            oauth_throttle: RefCell::default(),
            lifecycle: RefCell::new(LifecycleParts {
                shard: gateway_core::quota::QuotaShard::new(),
                scratch: FlowScratch::new(),
            }),
            usage: RefCell::new(None),
            stats: RefCell::new(crate::metrics::CoreStats::default()),
            tls: RefCell::new(None),
            access: RefCell::new(None),
            metrics_cell,
            days: Cell::new(None),
            active: Cell::new(0),
            draining: Cell::new(false),
            idle_cancel: RefCell::new(Canceller::new()),
            accept_cancel: RefCell::new(Canceller::new()),
            requests: Cell::new(0),
            ids: Cell::new(
                crate::seal::random_bytes(8)
                    .ok()
                    .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                    .map_or(0x2545_f491_4f6c_dd1d, u64::from_ne_bytes)
                    ^ (id as u64).rotate_left(32),
            ),
            health_seen: Cell::new(0),
            ticks: Cell::new(0),
            clock: Cell::new((Instant::now(), now_ms())),
        });
        core.rebuild_balancers(&snapshot);
        core.refresh_tls();
        core
    }

    /// Builds this core's TLS config again when the snapshot's certificates or the node's
    /// ticket keys changed since the last build.
    fn refresh_tls(&self) {
        let Some(node_tls) = self.node_shared.tls.get() else {
            return;
        };
        let snapshot = self.current.borrow().shared.clone();
        let key_generation = node_tls.generation.load(Ordering::Acquire);
        let stale = self.tls.borrow().as_ref().is_none_or(|t| {
            t.key_generation != key_generation || !Arc::ptr_eq(&t.certs, &snapshot.certs)
        });
        if !stale {
            return;
        }
        match node_tls
            .listener
            .core_config(snapshot.certs.clone(), &node_tls.keys())
        {
            Ok(config) => {
                *self.tls.borrow_mut() = Some(CoreTls {
                    config,
                    certs: snapshot.certs.clone(),
                    key_generation,
                    handshake_timeout: node_tls.listener.handshake_timeout,
                });
            }
            Err(e) => tracing::error!(core = self.id, error = %e, "TLS config not rebuilt"),
        }
    }

    /// The TLS config new connections of this core use, and the handshake timeout.
    pub fn tls_config(&self) -> Option<(Arc<rustls::ServerConfig>, Duration)> {
        self.tls
            .borrow()
            .as_ref()
            .map(|t| (t.config.clone(), t.handshake_timeout))
    }

    /// The snapshot requests start with (cheap: a local reference count).
    pub fn snapshot(&self) -> Rc<CoreSnapshot> {
        self.current.borrow().clone()
    }

    fn rebuild_balancers(&self, snapshot: &Snapshot) {
        self.upstreams
            .rebuild(snapshot, &self.node_shared.health(), now_ms());
    }

    /// Picks a target of `backend` and starts the call on it ([`Upstreams::pick`]).
    pub fn pick(
        &self,
        snap: &CoreSnapshot,
        backend: usize,
        peer: std::net::IpAddr,
        header_value: Option<&[u8]>,
        now: i64,
    ) -> Option<(Ticket, SocketAddr)> {
        self.upstreams
            .pick(&snap.shared, backend, peer, header_value, now)
    }

    /// Picks another target of `backend` for a retry after a failure on `failed`.
    pub fn pick_retry(
        &self,
        snap: &CoreSnapshot,
        backend: usize,
        failed: gateway_core::balance::TargetId,
    ) -> Option<(Ticket, SocketAddr)> {
        self.upstreams
            .pick_retry(&snap.shared, backend, failed, now_ms())
    }

    /// The call of `ticket` ended (the breaker's clock need not be finer than a tick).
    pub fn finish(&self, snap: &CoreSnapshot, backend: usize, ticket: Ticket, outcome: Outcome) {
        self.upstreams
            .finish(&snap.shared, backend, ticket, outcome, self.clock.get().1);
    }

    /// The local calendar day (`YYYYMMDD`) and month (`YYYYMM`) at `now_ms`, recomputed only when
    /// a window ends.
    pub fn calendar_ids(&self, snap: &CoreSnapshot, now_ms: i64) -> Option<(u32, u32)> {
        if let Some((day, month)) = self.days.get() {
            if day.contains(now_ms) && month.contains(now_ms) {
                return Some((day.id, month.id));
            }
        }
        let calendar = snap.shared.pool.calendar();
        let day = calendar.day(now_ms).ok()?;
        let month = calendar.month(now_ms).ok()?;
        self.days.set(Some((day, month)));
        Some((day.id, month.id))
    }

    /// Hands due usage batches to the sink (`force`: everything pending). Returns the entries
    /// still pending (the sink's channel was full).
    pub fn flush_usage(&self, force: bool) -> usize {
        let mut usage = self.usage.borrow_mut();
        let Some(u) = usage.as_mut() else {
            return 0;
        };
        let sink = &u.sink;
        let now = now_ms();
        u.acc.mirror().touch(now);
        u.acc.flush(now, force, |b| sink.try_send(b));
        let unmirrored = u.acc.stats().unmirrored;
        if unmirrored >= u.unmirrored_logged.saturating_mul(2).max(1) {
            u.unmirrored_logged = unmirrored;
            tracing::warn!(
                core = self.id,
                identities = unmirrored,
                "usage: identities counted in memory only (tally file full, or ids over its \
                 record): a kill -9 can lose their calls of the last flush interval"
            );
        }
        u.acc.pending_entries()
    }

    /// Counts a connection as active until the guard drops.
    pub fn track_connection(self: &Rc<Self>) -> ActiveGuard {
        self.active.set(self.active.get() + 1);
        ActiveGuard(self.clone())
    }

    /// Open client connections on this core.
    pub fn active(&self) -> usize {
        self.active.get()
    }

    /// Whether the core is draining (no new requests on idle connections).
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// A handle for an idle read, cancelled when the core starts draining.
    pub fn idle_handle(&self) -> CancelHandle {
        self.idle_cancel.borrow().handle()
    }

    /// The node's header policy (docs/security.md).
    pub fn header_policy(&self) -> gateway_core::rewrite::HeaderPolicy<'_> {
        gateway_core::rewrite::HeaderPolicy {
            forwarded_for: self.limits.forwarded_for,
            request_id_header: &self.limits.request_id_header,
        }
    }

    /// 64 unpredictable-enough bits for trace and span ids (splitmix64 over a random seed; not
    /// for secrets).
    fn next_id_bits(&self) -> u64 {
        let x = self.ids.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.ids.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Whether this request goes to the access log (sampled), with a draw of the id generator.
    pub fn access_sampled(&self) -> bool {
        match self.access.borrow().as_ref() {
            Some(a) => a.sampled(self.next_id_bits()),
            None => false,
        }
    }

    /// The trace context of a request: its `traceparent` continued, or a new trace.
    pub fn trace_for(&self, traceparent: Option<&[u8]>) -> gateway_core::trace::TraceContext {
        let (a, b, c) = (
            self.next_id_bits(),
            self.next_id_bits(),
            self.next_id_bits(),
        );
        let trace = (u128::from(a) << 64 | u128::from(b)).to_ne_bytes();
        gateway_core::trace::TraceContext::for_request(traceparent, trace, c.to_ne_bytes())
    }

    /// The next request id of this core.
    pub fn next_request_id(&self) -> u64 {
        let n = self.requests.get().wrapping_add(1);
        self.requests.set(n);
        n
    }

    /// One tick: take a new snapshot, sweep the pool, start draining on shutdown.
    /// The wall clock (ms since the epoch) at `at`, derived from the ticker's last reading
    /// without reading the clock again (a wall-clock step shows at the next tick).
    pub fn wall_ms(&self, at: Instant) -> i64 {
        let (anchor, anchor_ms) = self.clock.get();
        let delta = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match at.checked_duration_since(anchor) {
            Some(after) => anchor_ms.saturating_add(delta(after)),
            None => anchor_ms.saturating_sub(delta(anchor.saturating_duration_since(at))),
        }
    }

    /// The monotonic clock as the ticker last read it (at most a tick, 50 ms, old): for
    /// deadlines of seconds, without a clock read.
    pub fn coarse_now(&self) -> Instant {
        self.clock.get().0
    }

    pub(crate) fn tick(&self) {
        self.clock.set((Instant::now(), now_ms()));
        let generation = self.node_shared.generation.load(Ordering::Acquire);
        if generation != self.current.borrow().shared.generation {
            let snapshot = self.node_shared.current();
            self.rebuild_balancers(&snapshot);
            *self.current.borrow_mut() = Rc::new(CoreSnapshot::new(snapshot));
        }
        self.metrics_cell
            .set_applied(self.current.borrow().shared.generation);
        self.refresh_tls();
        let health = self.node_shared.health_generation.load(Ordering::Acquire);
        if health != self.health_seen.get() {
            self.health_seen.set(health);
            let current = self.current.borrow().shared.clone();
            self.upstreams
                .apply_health(&current, &self.node_shared.health(), now_ms());
        }
        // The sweep peeks at every idle upstream socket (a syscall each): once a second is
        // enough, since a stale connection is also retried transparently.
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        if ticks % SWEEP_EVERY_TICKS == 0 {
            self.upstreams
                .pool
                .borrow_mut()
                .sweep(Instant::now(), Duration::from_secs(60));
        }
        self.flush_usage(false);
        if let Some(access) = self.access.borrow_mut().as_mut() {
            access.flush();
        }
        self.metrics_cell.publish(&self.stats.borrow());
        // This core's admitted calls go to the pool (the quota headers of every core count
        // them within a tick); leases a core has not used for a second go back.
        let mut parts = self.lifecycle.borrow_mut();
        parts.shard.report_admitted();
        parts.shard.reclaim_idle(now_ms(), 1_000);
        drop(parts);
        if self.node_shared.is_shutting_down() && !self.draining.get() {
            self.draining.set(true);
            let idle = self.idle_cancel.replace(Canceller::new());
            let _ = idle.cancel();
            let accept = self.accept_cancel.replace(Canceller::new());
            let _ = accept.cancel();
        }
    }
}

//! A running node: one pinned thread per core, each with its own runtime and its own
//! SO_REUSEPORT listener, sharing only the snapshot cell and the shutdown flag; plus a background
//! resolver that refreshes upstream addresses (never resolved on the request path).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use gateway_model::import::Entities;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::HttpLimits;
use crate::core::{Core, NodeShared};
use crate::error::{GatewayError, GatewayErrorKind};
use crate::runtime::{self, Driver, IoMode};
use crate::snapshot::{QuotaSetup, Snapshot, SystemResolver};

/// How a node is started.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Node id.
    pub node_id: String,
    /// Worker threads.
    pub cores: usize,
    /// Pin core `i` to CPU `i % available`.
    pub pin: bool,
    /// Plain HTTP listener (port 0 picks one).
    pub http: Option<SocketAddr>,
    /// HTTPS listener (port 0 picks one).
    pub https: Option<HttpsOptions>,
    /// The access log, when enabled.
    pub access_log: Option<crate::access::AccessLogSettings>,
    /// Limits and timeouts.
    pub limits: HttpLimits,
    /// IO driver.
    pub io: IoMode,
    /// How often upstream names are resolved again.
    pub resolve_every: Duration,
    /// The quota calendar.
    pub calendar: gateway_core::window::Calendar,
    /// Where the embedded journal lives (`<data_dir>/journal/usage`, …); `None` keeps no usage
    /// (in-process tests).
    pub data_dir: Option<std::path::PathBuf>,
    /// Forward usage to Kafka (`[events] sink = "kafka"`): the journal under `data_dir` is the
    /// outbox the Kafka sink tails (`source` is set by the node), so a crash loses nothing.
    /// Its `partitions` is also the usage partition count. Needs `data_dir`.
    pub kafka: Option<gateway_events::kafka::KafkaConfig>,
    /// The usage journal's durability, segments and retention (`[events.journal]`).
    pub journal: crate::journal::JournalOptions,
}

/// The HTTPS listener of a node.
#[derive(Debug, Clone)]
pub struct HttpsOptions {
    /// `host:port`.
    pub addr: SocketAddr,
    /// Its TLS settings, loaded.
    pub tls: Arc<crate::tls::ListenerTls>,
    /// How often the session-ticket key rotates.
    pub ticket_rotation: Duration,
}

/// Partitions of usage batches (DESIGN §4: partition = hash(API key) mod partitions).
pub const USAGE_PARTITIONS: u32 = 16;

/// A started node.
#[derive(Debug)]
pub struct Node {
    shared: Arc<NodeShared>,
    threads: Vec<JoinHandle<()>>,
    addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    driver: Driver,
    tickets: Option<JoinHandle<()>>,
    resolver: Option<JoinHandle<()>>,
    health: Option<JoinHandle<()>>,
    sink: Option<crate::journal::sink::Sink>,
    kafka: Option<gateway_events::kafka::KafkaSink>,
    access: Option<crate::access::AccessSink>,
    totals: Option<JoinHandle<()>>,
    totals_counters: Arc<crate::totals::TotalsCounters>,
    /// The usage journal's directory and this node's id, for [`Node::apply_quota_resets`].
    usage_journal: Option<(std::path::PathBuf, String)>,
    publisher: Publisher,
}

fn listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

impl Node {
    /// Binds the listeners, starts every core and returns once all of them serve.
    ///
    /// # Errors
    /// When the address cannot be bound or a core's runtime cannot be built (for example
    /// `--io uring` where io_uring is unavailable).
    pub fn start(options: &NodeOptions, entities: Entities) -> io::Result<Self> {
        let cores = options.cores.max(1);
        let setup = QuotaSetup {
            calendar: &options.calendar,
            cores,
            previous: None,
        };
        let snapshot =
            Snapshot::build(1, &entities, &mut SystemResolver, setup).map_err(io::Error::other)?;
        let shared = Arc::new(NodeShared::new(snapshot));
        // All listeners are bound before any core accepts, on the same port (the first one's,
        // when the port is 0): one SO_REUSEPORT socket per core and listener.
        let bind_all = |at: Option<SocketAddr>| -> io::Result<(Option<SocketAddr>, Vec<_>)> {
            let Some(at) = at else {
                return Ok((None, Vec::new()));
            };
            let first = listener(at)?;
            let addr = first.local_addr()?;
            let mut all = vec![first];
            for _ in 1..cores {
                all.push(listener(addr)?);
            }
            Ok((Some(addr), all))
        };
        let (addr, plain) = bind_all(options.http)?;
        let (https_addr, secure) = bind_all(options.https.as_ref().map(|h| h.addr))?;
        if addr.is_none() && https_addr.is_none() {
            return Err(io::Error::other("no listener: set http or https"));
        }
        let tls = match &options.https {
            Some(h) => Some(crate::core::NodeTls::new(h.tls.clone(), h.ticket_rotation)?),
            None => None,
        };
        shared.set_tls(tls);
        let access = match &options.access_log {
            Some(settings) => Some(crate::access::AccessSink::start(settings).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("access_log.path {}: {e}", settings.path.display()),
                )
            })?),
            None => None,
        };
        shared
            .metrics
            .set_access(access.as_ref().map(|a| a.counters.clone()));
        let mut plain = plain.into_iter();
        let mut secure = secure.into_iter();
        let listeners: Vec<_> = (0..cores).map(|_| (plain.next(), secure.next())).collect();
        let mut tally_start: Option<(std::path::PathBuf, u64)> = None;
        let sink = match &options.data_dir {
            Some(dir) => {
                let journal_dir = crate::journal::Stream::Usage.dir(&dir.join("journal"));
                let (journal, recovery) =
                    crate::journal::Journal::open(&journal_dir, options.journal.clone())
                        .map_err(io::Error::other)?;
                if recovery.truncated_bytes > 0 {
                    tracing::warn!(
                        segment = %recovery.segment.display(),
                        truncated_bytes = recovery.truncated_bytes,
                        damage = %recovery.damage.map_or_else(String::new, |d| d.to_string()),
                        "usage journal: torn tail truncated at start"
                    );
                }
                // What killed runs counted but never journaled goes into the journal first, so
                // that the restore below, the ledger and Kafka all see it (tally.rs).
                let mut journal = journal;
                let tally_dir = crate::tally::dir(dir);
                match crate::tally::recover(&tally_dir, &mut journal) {
                    Ok(r) if r.files > 0 || r.bad > 0 => tracing::info!(
                        files = r.files,
                        batches = r.batches,
                        entries = r.entries,
                        admitted = r.admitted,
                        bad = r.bad,
                        "usage tallies of previous runs recovered into the journal"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("usage tallies in {}: {e}", tally_dir.display()),
                        ));
                    }
                }
                tally_start = Some((tally_dir, journal.next_offset()));
                restore_consumption(
                    &journal_dir,
                    recovery.first_offset,
                    &options.node_id,
                    &shared.current(),
                    &|_, _| true,
                );
                Some(
                    crate::journal::sink::Sink::spawn(
                        journal,
                        crate::journal::sink::SinkOptions::default(),
                    )
                    .map_err(io::Error::other)?,
                )
            }
            None => None,
        };
        let kafka = match (&options.data_dir, &options.kafka) {
            (Some(dir), Some(config)) => {
                let mut config = config.clone();
                config.source = Some(gateway_events::kafka::JournalSource::under(dir));
                Some(gateway_events::kafka::KafkaSink::start(config).map_err(io::Error::other)?)
            }
            (None, Some(_)) => {
                return Err(io::Error::other(
                    "the Kafka sink needs a data directory (its journal is the outbox)",
                ));
            }
            _ => None,
        };
        let partitions = options
            .kafka
            .as_ref()
            .map_or(USAGE_PARTITIONS, |k| k.partitions.max(1));
        // The boot epoch distinguishes this run's batch sequences from the previous run's.
        let epoch = u64::try_from(crate::core::now_ms()).unwrap_or(0);
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Driver, GatewayError>>();
        let mut threads = Vec::new();
        for (i, (std_plain, std_secure)) in listeners.into_iter().enumerate() {
            let shared = shared.clone();
            let ready = ready_tx.clone();
            let limits = options.limits.clone();
            let node_id = options.node_id.clone();
            let (io_mode, pin) = (options.io, options.pin);
            let sink_handle = sink.as_ref().map(crate::journal::sink::Sink::handle);
            let tally_start = tally_start.clone();
            let access_handle = access.as_ref().and_then(crate::access::AccessSink::handle);
            let handle = std::thread::Builder::new()
                .name(format!("tollgate-core-{i}"))
                .spawn(move || {
                    if pin {
                        let _ = monoio::utils::bind_to_cpu_set([i % cpus]);
                    }
                    let (mut rt, driver) = match runtime::build(io_mode) {
                        Ok(built) => built,
                        Err(e) => {
                            let _ = ready.send(Err(GatewayError::with(
                                GatewayErrorKind::Driver,
                                format!("core {i}"),
                                e,
                            )));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let to_monoio = |l: Option<std::net::TcpListener>| match l {
                            Some(l) => monoio::net::TcpListener::from_std(l).map(Some),
                            None => Ok(None),
                        };
                        let (plain, secure) = match (to_monoio(std_plain), to_monoio(std_secure)) {
                            (Ok(p), Ok(s)) => (p, s),
                            (Err(e), _) | (_, Err(e)) => {
                                let _ = ready.send(Err(GatewayError::with(
                                    GatewayErrorKind::Io,
                                    format!("core {i}: listener"),
                                    e,
                                )));
                                return;
                            }
                        };
                        let core = Core::new(i, &node_id, limits, shared);
                        if let Some(sink) = sink_handle {
                            let config = gateway_core::usage::UsageConfig::new(
                                node_id.as_str(),
                                epoch,
                                u16::try_from(i).unwrap_or(u16::MAX),
                                partitions,
                            );
                            let now = crate::core::now_ms();
                            let tally = tally_start.as_ref().map_or(
                                Ok(crate::tally::Tally::none()),
                                |(dir, from)| {
                                    crate::tally::Tally::create(
                                        dir,
                                        &crate::tally::TallyOwner {
                                            node: &node_id,
                                            epoch,
                                            core: u16::try_from(i).unwrap_or(u16::MAX),
                                            partitions,
                                            journal_from: *from,
                                            now_ms: now,
                                        },
                                    )
                                },
                            );
                            let tally = match tally {
                                Ok(t) => t,
                                Err(e) => {
                                    let _ = ready.send(Err(GatewayError::with(
                                        GatewayErrorKind::Io,
                                        format!("core {i}: usage tally"),
                                        e,
                                    )));
                                    return;
                                }
                            };
                            let acc = gateway_core::usage::UsageAccumulator::with_mirror(
                                config, now, tally,
                            );
                            *core.usage.borrow_mut() = Some(crate::core::CoreUsage {
                                acc,
                                sink,
                                unmirrored_logged: 0,
                            });
                        }
                        if let Some(handle) = access_handle {
                            *core.access.borrow_mut() =
                                Some(crate::access::CoreAccess::new(handle));
                        }
                        let _ = ready.send(Ok(driver));
                        crate::worker::run(core, plain, secure).await;
                    });
                })?;
            threads.push(handle);
        }
        drop(ready_tx);
        let mut driver = None;
        let mut failure = None;
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(d)) => driver = Some(d),
                Ok(Err(e)) => failure = Some(e),
                Err(_) => {
                    failure = Some(GatewayError::new(
                        GatewayErrorKind::Internal,
                        "a core exited while starting",
                    ));
                }
            }
        }
        if let Some(e) = failure {
            shared.shut_down();
            for t in threads {
                let _ = t.join();
            }
            return Err(io::Error::other(e));
        }
        let driver = driver.unwrap_or(Driver::Epoll {
            reason: "no core started".to_owned(),
        });
        match &driver {
            Driver::Epoll { reason } if options.io == IoMode::Auto => {
                tracing::warn!(%reason, "io_uring is not available, using the epoll driver");
            }
            d => tracing::info!(driver = %d, "IO driver"),
        }
        let publisher = Publisher {
            shared: shared.clone(),
            entities: Arc::new(std::sync::Mutex::new(entities)),
            calendar: options.calendar.clone(),
            cores,
        };
        let resolver = spawn_resolver(
            shared.clone(),
            publisher.entities.clone(),
            options.resolve_every,
            options.calendar.clone(),
            cores,
        );
        let health = crate::health::spawn(shared.clone());
        let tickets = options
            .https
            .as_ref()
            .and_then(|h| crate::core::spawn_ticket_rotation(shared.clone(), h.ticket_rotation));
        // Other nodes' consumption, from the ledger's totals (Kafka deployments only).
        let totals_counters = Arc::new(crate::totals::TotalsCounters::default());
        let totals = match &options.kafka {
            Some(k) => Some(crate::totals::spawn(
                shared.clone(),
                k,
                options.node_id.clone(),
                totals_counters.clone(),
            )?),
            None => None,
        };
        shared.metrics.set_events(crate::metrics::EventSources {
            usage: sink.as_ref().map(crate::journal::sink::Sink::handle),
            kafka: kafka.as_ref().map(gateway_events::kafka::KafkaSink::handle),
            totals: options.kafka.as_ref().map(|_| totals_counters.clone()),
        });
        Ok(Self {
            shared,
            threads,
            addr,
            https_addr,
            driver,
            tickets,
            resolver,
            health,
            sink,
            kafka,
            access,
            totals,
            totals_counters,
            usage_journal: options.data_dir.as_ref().map(|d| {
                (
                    crate::journal::Stream::Usage.dir(&d.join("journal")),
                    options.node_id.clone(),
                )
            }),
            publisher,
        })
    }

    /// A handle that swaps new entities into this node (the admin API holds one).
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// The bound address of the HTTP listener (of the HTTPS one when there is no HTTP one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .or(self.https_addr)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The access log's counters, when it is on (its sample share changes through them).
    pub fn access_counters(&self) -> Option<Arc<crate::access::AccessCounters>> {
        self.access.as_ref().map(|a| a.counters.clone())
    }

    /// The bound address of the HTTPS listener.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The IO driver the cores use.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// Swaps a new snapshot into every core (between requests, within one tick).
    pub fn publish(&self, snapshot: Snapshot) {
        self.shared.publish(snapshot);
    }

    /// The current snapshot (to build the next one from: its quota pool carries over).
    pub fn current(&self) -> Arc<Snapshot> {
        self.shared.current()
    }

    /// The generation of the current snapshot.
    pub fn generation(&self) -> u64 {
        self.shared.current().generation
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout) and waits for
    /// every core to stop.
    pub fn shutdown(mut self) {
        self.shared.shut_down();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for t in [
            self.resolver.take(),
            self.health.take(),
            self.totals.take(),
            self.tickets.take(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = t.join();
        }
        // The cores have handed every counted call to the sink; it drains and syncs.
        if let Some(access) = self.access.take() {
            access.shutdown();
        }
        if let Some(sink) = self.sink.take() {
            match sink.shutdown() {
                Ok((_, c)) => tracing::info!(
                    batches = c.batches,
                    entries = c.entries,
                    bytes = c.bytes,
                    syncs = c.syncs,
                    refused = c.refused,
                    write_retries = c.write_retries,
                    encode_errors = c.encode_errors,
                    lost = c.lost,
                    "usage sink stopped"
                ),
                Err(e) => tracing::error!(error = %e, "usage sink failed to stop cleanly"),
            }
        }
        // Then the Kafka sink forwards the journal's tail, waits for confirmations and spools
        // the rest for the next run.
        if let Some(kafka) = self.kafka.take() {
            let c = kafka.shutdown();
            tracing::info!(
                produced = c.produced,
                spooled = c.spooled,
                replayed = c.replayed,
                failed = c.failed,
                lost = c.lost,
                spool_records = c.spool_records,
                spool_bytes = c.spool_bytes,
                forwarded = c.forwarded,
                corrupt = c.corrupt,
                "kafka sink stopped"
            );
        }
    }

    /// The Kafka sink's counters, when usage goes to Kafka.
    pub fn kafka_counters(&self) -> Option<gateway_events::kafka::KafkaCounters> {
        self.kafka
            .as_ref()
            .map(gateway_events::kafka::KafkaSink::counters)
    }

    /// Applies quota resets recorded in the entity log (`DELETE /api/apikeys/{id}/quotas`,
    /// client id → reset time in ms) to the consumption restored at start: each key's count is
    /// zeroed and only the usage of batches that ended after its reset is counted again (a batch
    /// straddling the reset counts whole: never fewer calls than were made). Call it right after
    /// [`Node::start`].
    pub fn apply_quota_resets(&self, resets: &std::collections::HashMap<String, i64>) {
        if resets.is_empty() {
            return;
        }
        let snapshot = self.shared.current();
        for (key, at) in resets {
            snapshot.pool.reset(key, *at);
        }
        if let Some((dir, node_id)) = &self.usage_journal {
            restore_consumption(dir, 0, node_id, &snapshot, &|key, window_end| {
                resets.get(key).is_some_and(|at| window_end > *at)
            });
        }
        tracing::info!(keys = resets.len(), "quota resets re-applied after restore");
    }

    /// The totals follower's counters (all zero without Kafka).
    pub fn totals_counters(&self) -> &crate::totals::TotalsCounters {
        &self.totals_counters
    }
}

/// Replays this node's own usage from its journal into the quota pool, so that a restart never
/// hands out a fresh quota: every admitted call of the current local day and month, over all
/// previous runs (epochs) of this node id, is restored. Other nodes' consumption arrives through
/// the ledger's totals instead. Reading is proportional to the journal's size (bounded by its
/// retention); a record that does not decode is skipped and logged.
fn restore_consumption(
    dir: &std::path::Path,
    from: u64,
    node_id: &str,
    snapshot: &Snapshot,
    keep: &dyn Fn(&str, i64) -> bool,
) {
    use std::collections::HashMap;
    let now = crate::core::now_ms();
    let calendar = snapshot.pool.calendar();
    let (Ok(day), Ok(month)) = (calendar.day(now), calendar.month(now)) else {
        return;
    };
    let Ok((mut reader, _)) = crate::journal::JournalReader::open_retained(dir, from) else {
        return;
    };
    let mut decoder = gateway_model::event::UsageDecoder::new();
    let mut totals: HashMap<String, (u64, u64)> = HashMap::new();
    let mut skipped = 0u64;
    loop {
        match reader.next_record() {
            Ok(Some(record)) => {
                let Ok(batch) = decoder.access(record.payload) else {
                    skipped += 1;
                    continue;
                };
                if batch.node.as_str() != node_id {
                    continue;
                }
                let window_end = batch.window_end_ms.to_native();
                for entry in batch.entries.iter() {
                    let admitted = entry.counters.admitted.to_native();
                    if admitted == 0
                        || entry.month.to_native() != month.id
                        || !keep(entry.apikey.as_str(), window_end)
                    {
                        continue;
                    }
                    let t = totals.entry(entry.apikey.as_str().to_owned()).or_default();
                    t.1 += admitted;
                    if entry.day.to_native() == day.id {
                        t.0 += admitted;
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {
                skipped += 1;
                if !matches!(reader.skip_corrupt(), Ok(Some(_))) {
                    break;
                }
            }
        }
    }
    for (client_id, (day_calls, month_calls)) in &totals {
        snapshot
            .pool
            .restore(client_id, day.id, *day_calls, month.id, *month_calls);
    }
    if !totals.is_empty() || skipped > 0 {
        tracing::info!(
            keys = totals.len(),
            skipped,
            "quota consumption restored from the usage journal"
        );
    }
}

/// Re-resolves upstream names every `every`, publishing a new snapshot when an address changed.
fn spawn_resolver(
    shared: Arc<NodeShared>,
    entities: Arc<std::sync::Mutex<Entities>>,
    every: Duration,
    calendar: gateway_core::window::Calendar,
    cores: usize,
) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tollgate-resolver".to_owned())
        .spawn(move || {
            let step = Duration::from_millis(50);
            let mut waited = Duration::ZERO;
            while !shared.is_shutting_down() {
                std::thread::sleep(step);
                waited += step;
                if waited < every {
                    continue;
                }
                waited = Duration::ZERO;
                // Held while building and publishing, so that an admin change published
                // meanwhile is never overwritten by a rebuild of older entities.
                let entities = entities
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let current = shared.current();
                let setup = QuotaSetup {
                    calendar: &calendar,
                    cores,
                    previous: Some(&current.pool),
                };
                let Ok(fresh) = Snapshot::build(
                    current.generation + 1,
                    &entities,
                    &mut SystemResolver,
                    setup,
                ) else {
                    continue;
                };
                let changed = fresh
                    .backends
                    .iter()
                    .zip(&current.backends)
                    .any(|(a, b)| a.targets != b.targets);
                if changed {
                    tracing::info!(generation = fresh.generation, "upstream addresses changed");
                    shared.publish(fresh);
                }
            }
        })
        .ok()
}

/// Swaps new entities into a running node: builds the next snapshot (carrying the quota pool
/// over) and publishes it; every core takes it within one tick. Cloned by the admin API and the
/// rotation thread; builds are serialised with the background resolver's.
#[derive(Debug, Clone)]
pub struct Publisher {
    shared: Arc<NodeShared>,
    entities: Arc<std::sync::Mutex<Entities>>,
    calendar: gateway_core::window::Calendar,
    cores: usize,
}

impl Publisher {
    /// Builds a snapshot of `entities` (without publishing it): the last check before a change
    /// is committed.
    ///
    /// # Errors
    /// When the entities do not compile into a snapshot.
    pub fn build(&self, entities: &Entities) -> Result<Snapshot, crate::snapshot::SnapshotError> {
        let current = self.shared.current();
        let setup = QuotaSetup {
            calendar: &self.calendar,
            cores: self.cores,
            previous: Some(&current.pool),
        };
        Snapshot::build(current.generation + 1, entities, &mut SystemResolver, setup)
    }

    /// Builds and publishes `entities`; returns the new generation.
    ///
    /// # Errors
    /// When the entities do not compile into a snapshot (nothing is published then).
    pub fn apply(&self, entities: Entities) -> Result<u64, crate::snapshot::SnapshotError> {
        let mut held = self
            .entities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let snapshot = self.build(&entities)?;
        let generation = snapshot.generation;
        self.shared.publish(snapshot);
        *held = entities;
        Ok(generation)
    }

    /// Waits until every core serves snapshot `generation` (each takes it on its next tick,
    /// so within [`crate::core::TICK`] unless a core is stalled); `false` after `within`.
    /// The admin API calls it before answering a write: what it answered is what every core
    /// serves (read-your-writes).
    pub fn wait_applied(&self, generation: u64, within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.shared.metrics.all_applied(generation) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.shared.current()
    }

    /// Appends the cores' request metrics (Prometheus text) to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        self.shared.metrics.render(out);
    }
}

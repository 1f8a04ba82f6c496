//! Data-plane metrics without per-request atomics: each core counts in plain `u64`s
//! ([`CoreStats`], `!Sync`, touched only by its own thread) and copies them once per tick into
//! its own [`CoreCell`] of atomics, which only that core writes and the admin API reads. A
//! scrape sees figures at most one tick (50 ms) old.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gateway_telemetry::prom::{self, MetricType::Counter};

/// Upper bounds of the latency histogram's buckets, in microseconds (then `+Inf`).
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000,
];
const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// Refusal reasons counted (gateway-core's list, `other` last).
const REASONS: usize = gateway_core::flow::REJECTION_REASONS.len();
const HTTP_ERRORS: usize = gateway_core::http::ErrorKind::ALL.len();

/// Counts of one route (per core).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteCounts {
    /// Responses by status class 1xx … 5xx.
    pub statuses: [u64; 5],
    /// Sum of latencies, µs.
    pub latency_sum_us: u64,
}

impl RouteCounts {
    fn add(&mut self, other: &Self) {
        for (a, b) in self.statuses.iter_mut().zip(other.statuses) {
            *a += b;
        }
        self.latency_sum_us += other.latency_sum_us;
    }

    fn requests(&self) -> u64 {
        self.statuses.iter().sum()
    }
}

/// One route's totals: its id, its API's id, its counts.
pub type RouteTotal = (Box<str>, Option<Box<str>>, RouteCounts);

/// Per-route counters of one core: by route slot of the current snapshot (one index per
/// request, no hashing), and by route id for the routes of earlier snapshots (merged when a
/// snapshot is swapped in, a slow path). Labels are bounded by the configured routes.
#[derive(Debug, Clone, Default)]
pub struct RouteStats {
    generation: u64,
    current: Vec<RouteTotal>,
    retired: rustc_hash::FxHashMap<(Box<str>, Option<Box<str>>), RouteCounts>,
}

impl RouteStats {
    /// Counts a request of route `slot` of `snapshot`.
    pub fn record(
        &mut self,
        snapshot: &crate::snapshot::Snapshot,
        slot: usize,
        status: u16,
        latency_us: u64,
    ) {
        if self.generation != snapshot.generation || self.current.is_empty() {
            self.swap_in(snapshot);
        }
        if let Some((_, _, c)) = self.current.get_mut(slot) {
            let class = usize::from(status / 100).clamp(1, 5) - 1;
            if let Some(n) = c.statuses.get_mut(class) {
                *n += 1;
            }
            c.latency_sum_us = c.latency_sum_us.saturating_add(latency_us);
        }
    }

    fn swap_in(&mut self, snapshot: &crate::snapshot::Snapshot) {
        for (id, api, counts) in self.current.drain(..) {
            if counts.requests() > 0 {
                self.retired.entry((id, api)).or_default().add(&counts);
            }
        }
        self.current = snapshot
            .routes
            .iter()
            .map(|r| (r.id.clone(), r.api.clone(), RouteCounts::default()))
            .collect();
        self.generation = snapshot.generation;
    }

    /// Every route's totals (current and retired slots merged).
    pub fn totals(&self) -> Vec<RouteTotal> {
        let mut all = self.retired.clone();
        for (id, api, counts) in &self.current {
            if counts.requests() > 0 {
                all.entry((id.clone(), api.clone()))
                    .or_default()
                    .add(counts);
            }
        }
        let mut out: Vec<_> = all.into_iter().map(|((id, api), c)| (id, api, c)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// One core's counters, plain data.
#[derive(Debug, Clone)]
pub struct CoreStats {
    /// Requests answered (routed: refused or served).
    pub requests: u64,
    /// By status class: 1xx … 5xx (index 0 … 4).
    pub statuses: [u64; 5],
    /// Latency histogram (non-cumulative counts per bucket).
    pub latency: [u64; BUCKETS],
    /// Sum of latencies, µs.
    pub latency_sum_us: u64,
    /// Requests refused by a quota (429).
    pub quota_rejections: u64,
    /// Upstream TLS handshakes that failed (verification included).
    pub upstream_tls_failures: u64,
    /// Client TLS handshakes that failed (garbage, timeout, unknown SNI, bad certificate).
    pub tls_handshake_failures: u64,
    /// Flow refusals by reason (indexed like `REJECTION_REASONS`).
    pub rejections: [u64; REASONS],
    /// Malformed requests (answered 400/413/431/501/505 and closed), by
    /// `ErrorKind::index`.
    pub malformed: [u64; HTTP_ERRORS],
    /// Per-route counters.
    pub routes: RouteStats,
}

impl Default for CoreStats {
    fn default() -> Self {
        Self {
            requests: 0,
            statuses: [0; 5],
            latency: [0; BUCKETS],
            latency_sum_us: 0,
            quota_rejections: 0,
            upstream_tls_failures: 0,
            tls_handshake_failures: 0,
            rejections: [0; REASONS],
            malformed: [0; HTTP_ERRORS],
            routes: RouteStats::default(),
        }
    }
}

impl CoreStats {
    /// Counts one request, and its refusal's reason when the flow refused it.
    pub fn record(
        &mut self,
        status: u16,
        latency: Duration,
        rejection: Option<gateway_core::flow::Rejection>,
    ) {
        let quota_rejected = matches!(rejection, Some(gateway_core::flow::Rejection::Quota(_)));
        if let Some(c) = rejection.and_then(|r| self.rejections.get_mut(r.slot())) {
            *c += 1;
        }
        self.requests += 1;
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(c) = self.statuses.get_mut(class) {
            *c += 1;
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        if let Some(c) = self.latency.get_mut(bucket) {
            *c += 1;
        }
        self.latency_sum_us = self.latency_sum_us.saturating_add(us);
        if quota_rejected {
            self.quota_rejections += 1;
        }
    }
}

/// One core's published counters: written by that core only, once per tick.
#[derive(Debug)]
pub struct CoreCell {
    requests: AtomicU64,
    statuses: [AtomicU64; 5],
    latency: [AtomicU64; BUCKETS],
    latency_sum_us: AtomicU64,
    quota_rejections: AtomicU64,
    upstream_tls_failures: AtomicU64,
    tls_handshake_failures: AtomicU64,
    rejections: [AtomicU64; REASONS],
    malformed: [AtomicU64; HTTP_ERRORS],
    /// The per-route totals, copied once per tick (a lock taken by this core and by scrapes,
    /// never per request).
    routes: Mutex<Vec<RouteTotal>>,
    /// The generation of the snapshot this core serves (set at start and on each tick): what
    /// the admin API waits on before it answers a write (read-your-writes).
    applied: AtomicU64,
}

impl Default for CoreCell {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            statuses: Default::default(),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_us: AtomicU64::new(0),
            quota_rejections: AtomicU64::new(0),
            upstream_tls_failures: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            rejections: std::array::from_fn(|_| AtomicU64::new(0)),
            malformed: std::array::from_fn(|_| AtomicU64::new(0)),
            routes: Mutex::default(),
            applied: AtomicU64::new(0),
        }
    }
}

impl CoreCell {
    /// Records that the core now serves snapshot `generation`.
    pub fn set_applied(&self, generation: u64) {
        self.applied.store(generation, Ordering::Release);
    }

    /// Copies `stats` (cumulative) into the cell.
    pub fn publish(&self, stats: &CoreStats) {
        self.requests.store(stats.requests, Ordering::Relaxed);
        for (a, v) in self.statuses.iter().zip(stats.statuses) {
            a.store(v, Ordering::Relaxed);
        }
        for (a, v) in self.latency.iter().zip(stats.latency) {
            a.store(v, Ordering::Relaxed);
        }
        self.latency_sum_us
            .store(stats.latency_sum_us, Ordering::Relaxed);
        self.quota_rejections
            .store(stats.quota_rejections, Ordering::Relaxed);
        self.upstream_tls_failures
            .store(stats.upstream_tls_failures, Ordering::Relaxed);
        self.tls_handshake_failures
            .store(stats.tls_handshake_failures, Ordering::Relaxed);
        for (a, v) in self.rejections.iter().zip(stats.rejections) {
            a.store(v, Ordering::Relaxed);
        }
        for (a, v) in self.malformed.iter().zip(stats.malformed) {
            a.store(v, Ordering::Relaxed);
        }
        *self.routes.lock().unwrap_or_else(PoisonError::into_inner) = stats.routes.totals();
    }

    fn read(&self) -> CoreStats {
        let mut s = CoreStats {
            requests: self.requests.load(Ordering::Relaxed),
            latency_sum_us: self.latency_sum_us.load(Ordering::Relaxed),
            quota_rejections: self.quota_rejections.load(Ordering::Relaxed),
            upstream_tls_failures: self.upstream_tls_failures.load(Ordering::Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Ordering::Relaxed),
            ..CoreStats::default()
        };
        for (v, a) in s.rejections.iter_mut().zip(&self.rejections) {
            *v = a.load(Ordering::Relaxed);
        }
        for (v, a) in s.malformed.iter_mut().zip(&self.malformed) {
            *v = a.load(Ordering::Relaxed);
        }
        for (id, api, counts) in self
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            s.routes
                .retired
                .entry((id.clone(), api.clone()))
                .or_default()
                .add(counts);
        }
        for (v, a) in s.statuses.iter_mut().zip(&self.statuses) {
            *v = a.load(Ordering::Relaxed);
        }
        for (v, a) in s.latency.iter_mut().zip(&self.latency) {
            *v = a.load(Ordering::Relaxed);
        }
        s
    }
}

/// The cells of a node's cores (each core registers its own once, at start).
#[derive(Debug, Default)]
pub struct NodeMetrics {
    cells: Mutex<Vec<(usize, Arc<CoreCell>)>>,
    events: Mutex<EventSources>,
    access: Mutex<AccessCounters>,
}

/// The access log's counters (set once by the node at start, when it is on).
pub type AccessCounters = Option<Arc<crate::access::AccessCounters>>;

/// Where the usage pipeline's counters are read from (set once by the node at start).
#[derive(Debug, Default)]
pub struct EventSources {
    /// The usage journal's sink.
    pub usage: Option<gateway_events::journal::sink::SinkHandle>,
    /// The Kafka sink, when usage goes to Kafka.
    pub kafka: Option<gateway_events::kafka::KafkaHandle>,
    /// The totals follower, when usage goes to Kafka.
    pub totals: Option<Arc<TotalsCounters>>,
}

/// `1xx` … `5xx` for status class index 0 … 4.
fn status_class(index: usize) -> String {
    format!("{}xx", index + 1)
}

impl NodeMetrics {
    /// Registers core `core`'s cell.
    pub fn register(&self, core: usize) -> Arc<CoreCell> {
        let cell = Arc::new(CoreCell::default());
        self.cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((core, cell.clone()));
        cell
    }

    /// Whether every registered core serves snapshot `generation` or a later one.
    pub fn all_applied(&self, generation: u64) -> bool {
        self.cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .all(|(_, cell)| cell.applied.load(Ordering::Acquire) >= generation)
    }

    /// Sets the access log's counters.
    pub fn set_access(&self, counters: AccessCounters) {
        *self.access.lock().unwrap_or_else(PoisonError::into_inner) = counters;
    }

    /// The access log's counters (SIGHUP changes its sample share through them).
    pub fn access(&self) -> AccessCounters {
        self.access
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets where the usage pipeline's counters come from.
    pub fn set_events(&self, sources: EventSources) {
        *self.events.lock().unwrap_or_else(PoisonError::into_inner) = sources;
    }

    /// Appends the usage pipeline's metrics (journal sink, Kafka sink, totals follower).
    fn render_events(&self, out: &mut String) {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(u) = events.usage.as_ref().map(|h| h.counters()) {
            prom::counter(
                out,
                "tollgate_usage_batches_total",
                "Usage batches appended to the journal.",
                u.batches,
            );
            prom::counter(
                out,
                "tollgate_usage_entries_total",
                "Usage entries in them.",
                u.entries,
            );
            prom::counter(
                out,
                "tollgate_usage_journal_syncs_total",
                "fdatasync calls of the usage journal.",
                u.syncs,
            );
            prom::counter(
                out,
                "tollgate_usage_handover_refused_total",
                "Batches a core kept because the sink channel was full (retried, not lost).",
                u.refused,
            );
            prom::counter(
                out,
                "tollgate_usage_lost_total",
                "Usage batches the journal could not take (logged as errors).",
                u.lost + u.encode_errors,
            );
        }
        if let Some(k) = events.kafka.as_ref().map(|h| h.counters()) {
            prom::counter(
                out,
                "tollgate_kafka_usage_sent_total",
                "Usage batches confirmed by Kafka.",
                k.produced,
            );
            prom::counter(
                out,
                "tollgate_kafka_usage_spooled_total",
                "Usage batches written to the disk spool.",
                k.spooled,
            );
            prom::counter(
                out,
                "tollgate_kafka_usage_forwarded_total",
                "Journal records copied to the spool.",
                k.forwarded,
            );
            prom::counter(
                out,
                "tollgate_kafka_usage_delivery_errors_total",
                "Delivery errors (the batch went back to the spool).",
                k.failed,
            );
            prom::counter(
                out,
                "tollgate_kafka_usage_lost_total",
                "Usage batches given up on (logged as errors).",
                k.lost + k.encode_errors,
            );
            prom::counter(
                out,
                "tollgate_kafka_usage_corrupt_total",
                "Journal records that could not be forwarded (corrupt).",
                k.corrupt,
            );
            prom::gauge(
                out,
                "tollgate_kafka_spool_bytes",
                "Bytes in the usage spool.",
                k.spool_bytes,
            );
            prom::gauge(
                out,
                "tollgate_kafka_spool_max_bytes",
                "The usage spool's bound.",
                k.spool_max_bytes,
            );
            prom::gauge(
                out,
                "tollgate_kafka_spool_records",
                "Usage batches in the spool not yet confirmed.",
                k.spool_records,
            );
            prom::gauge(
                out,
                "tollgate_kafka_in_flight_batches",
                "Usage batches in the Kafka client.",
                k.in_flight,
            );
        }
        if let Some(t) = events.totals.as_ref() {
            prom::counter(
                out,
                "tollgate_totals_applied_total",
                "Totals records from the ledger applied to the quota pool.",
                t.applied.load(Ordering::Relaxed),
            );
            prom::counter(
                out,
                "tollgate_totals_invalid_total",
                "Totals records that did not decode.",
                t.invalid.load(Ordering::Relaxed),
            );
            #[allow(clippy::cast_precision_loss)]
            let newest = t.newest_ms.load(Ordering::Relaxed) as f64 / 1000.0;
            prom::gauge(
                out,
                "tollgate_totals_newest_timestamp_seconds",
                "updated_at of the newest totals record applied (seconds since the epoch).",
                newest,
            );
        }
    }

    /// Appends the Prometheus text of the data-plane metrics to `out`.
    pub fn render(&self, out: &mut String) {
        self.render_events(out);
        if let Some(a) = self.access() {
            use std::sync::atomic::Ordering::Relaxed;
            for (name, help, value) in [
                (
                    "tollgate_access_log_lines_total",
                    "Access log lines written.",
                    a.lines.load(Relaxed),
                ),
                (
                    "tollgate_access_log_bytes_total",
                    "Access log bytes written.",
                    a.bytes.load(Relaxed),
                ),
                (
                    "tollgate_access_log_dropped_batches_total",
                    "Access log batches dropped because the writer was behind.",
                    a.dropped_batches.load(Relaxed),
                ),
                (
                    "tollgate_access_log_rotations_total",
                    "Access log rotations.",
                    a.rotations.load(Relaxed),
                ),
                (
                    "tollgate_access_log_errors_total",
                    "Access log write or rotation errors.",
                    a.errors.load(Relaxed),
                ),
            ] {
                prom::counter(out, name, help, value);
            }
        }
        let mut cells: Vec<(usize, CoreStats)> = self
            .cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(i, c)| (*i, c.read()))
            .collect();
        cells.sort_by_key(|(i, _)| *i);
        const REQUESTS: &str = "tollgate_requests_total";
        prom::family(out, REQUESTS, "Requests answered, by core.", Counter);
        for (i, s) in &cells {
            prom::sample(out, REQUESTS, &[("core", &i.to_string())], s.requests);
        }
        const RESPONSES: &str = "tollgate_responses_total";
        prom::family(out, RESPONSES, "Responses by status class.", Counter);
        for class in 0..5 {
            let n: u64 = cells
                .iter()
                .filter_map(|(_, s)| s.statuses.get(class))
                .sum();
            prom::sample(out, RESPONSES, &[("class", &status_class(class))], n);
        }
        let rejected: u64 = cells.iter().map(|(_, s)| s.quota_rejections).sum();
        prom::counter(
            out,
            "tollgate_quota_rejections_total",
            "Requests refused by a quota (429).",
            rejected,
        );
        let mut routes: std::collections::BTreeMap<(Box<str>, Option<Box<str>>), RouteCounts> =
            std::collections::BTreeMap::new();
        for (_, s) in &cells {
            for (id, api, counts) in s.routes.totals() {
                routes.entry((id, api)).or_default().add(&counts);
            }
        }
        const ROUTE_REQUESTS: &str = "tollgate_route_requests_total";
        prom::family(
            out,
            ROUTE_REQUESTS,
            "Requests by route, API and status class.",
            Counter,
        );
        for ((id, api), counts) in &routes {
            for (class, n) in counts.statuses.iter().enumerate() {
                if *n > 0 {
                    let labels = [
                        ("route", &**id),
                        ("api", api.as_deref().unwrap_or("")),
                        ("class", &status_class(class)),
                    ];
                    prom::sample(out, ROUTE_REQUESTS, &labels, n);
                }
            }
        }
        const ROUTE_DURATION: &str = "tollgate_route_request_duration_seconds_total";
        prom::family(
            out,
            ROUTE_DURATION,
            "Time spent on each route's requests.",
            Counter,
        );
        for ((id, api), counts) in &routes {
            let labels = [("route", &**id), ("api", api.as_deref().unwrap_or(""))];
            prom::sample(
                out,
                ROUTE_DURATION,
                &labels,
                counts.latency_sum_us as f64 / 1e6,
            );
        }
        const REJECTIONS: &str = "tollgate_rejections_total";
        prom::family(
            out,
            REJECTIONS,
            "Requests refused by the flow, by reason (an unknown client id and a wrong secret \
             answer alike but count apart).",
            Counter,
        );
        for (i, reason) in gateway_core::flow::REJECTION_REASONS.iter().enumerate() {
            let n: u64 = cells.iter().filter_map(|(_, s)| s.rejections.get(i)).sum();
            prom::sample(out, REJECTIONS, &[("reason", reason)], n);
        }
        const MALFORMED: &str = "tollgate_malformed_requests_total";
        prom::family(
            out,
            MALFORMED,
            "Requests refused by the HTTP/1.1 parser (answered 400, 413, 431, 501 or 505, \
             connection closed), by error code.",
            Counter,
        );
        for (i, kind) in gateway_core::http::ErrorKind::ALL.iter().enumerate() {
            let n: u64 = cells.iter().filter_map(|(_, s)| s.malformed.get(i)).sum();
            prom::sample(out, MALFORMED, &[("code", kind.code())], n);
        }
        for (name, help, value) in [
            (
                "tollgate_tls_handshake_failures_total",
                "Client TLS handshakes that failed (garbage, plain HTTP, timeout, unknown name, bad certificate).",
                cells
                    .iter()
                    .map(|(_, s)| s.tls_handshake_failures)
                    .sum::<u64>(),
            ),
            (
                "tollgate_upstream_tls_failures_total",
                "TLS handshakes with upstreams that failed or did not verify (502).",
                cells
                    .iter()
                    .map(|(_, s)| s.upstream_tls_failures)
                    .sum::<u64>(),
            ),
        ] {
            prom::counter(out, name, help, value);
        }
        prom::family(
            out,
            "tollgate_request_duration_seconds",
            "Time from the request head to the end of the response.",
            prom::MetricType::Histogram,
        );
        const BUCKET: &str = "tollgate_request_duration_seconds_bucket";
        let mut cumulative = 0u64;
        for (b, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
            cumulative += cells
                .iter()
                .filter_map(|(_, s)| s.latency.get(b))
                .sum::<u64>();
            let le = (*bound as f64 / 1e6).to_string();
            prom::sample(out, BUCKET, &[("le", &le)], cumulative);
        }
        let total: u64 = cells.iter().map(|(_, s)| s.requests).sum();
        prom::sample(out, BUCKET, &[("le", "+Inf")], total);
        let sum: u64 = cells.iter().map(|(_, s)| s.latency_sum_us).sum();
        prom::sample(
            out,
            "tollgate_request_duration_seconds_sum",
            &[],
            sum as f64 / 1e6,
        );
        prom::sample(out, "tollgate_request_duration_seconds_count", &[], total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_publish_and_render() {
        let node = NodeMetrics::default();
        let cell = node.register(0);
        let mut s = CoreStats::default();
        s.record(200, Duration::from_micros(300), None);
        s.record(
            429,
            Duration::from_millis(2),
            Some(gateway_core::flow::Rejection::Quota(
                gateway_core::flow::QuotaExceeded::Daily {
                    retry_after_secs: 1,
                },
            )),
        );
        s.record(502, Duration::from_secs(60), None);
        let mut out = String::new();
        node.render(&mut out);
        assert!(
            out.contains("tollgate_requests_total{core=\"0\"} 0"),
            "{out}"
        );
        cell.publish(&s);
        let mut out = String::new();
        node.render(&mut out);
        for want in [
            "tollgate_requests_total{core=\"0\"} 3",
            "tollgate_responses_total{class=\"2xx\"} 1",
            "tollgate_responses_total{class=\"4xx\"} 1",
            "tollgate_responses_total{class=\"5xx\"} 1",
            "tollgate_quota_rejections_total 1",
            "tollgate_request_duration_seconds_bucket{le=\"0.00025\"} 0",
            "tollgate_request_duration_seconds_bucket{le=\"0.0005\"} 1",
            "tollgate_request_duration_seconds_bucket{le=\"0.0025\"} 2",
            "tollgate_request_duration_seconds_bucket{le=\"10\"} 2",
            "tollgate_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "tollgate_request_duration_seconds_count 3",
        ] {
            assert!(out.contains(want), "{want} not in\n{out}");
        }
    }
}

/// Counters of the totals follower (`crate::totals`), for metrics and tests.
#[derive(Debug, Default)]
pub struct TotalsCounters {
    /// Records applied.
    pub applied: std::sync::atomic::AtomicU64,
    /// Records that did not decode (skipped, logged).
    pub invalid: std::sync::atomic::AtomicU64,
    /// Newest `updated_at` applied (ms), for lag measurements.
    pub newest_ms: std::sync::atomic::AtomicI64,
}

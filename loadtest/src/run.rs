//! Running a load: one thread per worker, each with its own runtime and its share of the
//! connections; the calling thread only watches progress and merges the results at the end.

use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    rc::Rc,
    sync::{Arc, Mutex, atomic::Ordering},
    thread,
    time::{Duration, Instant},
};

use crate::{
    DriverKind, Error, Load, Report, RunConfig,
    conn::{Worker, connection},
    report::ErrorCounts,
    runtime,
    stats::{Live, ThreadStats, new_histogram},
};

/// How often the calling thread looks at the workers.
const TICK: Duration = Duration::from_millis(250);

/// Where a run stands, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressSnapshot {
    /// Since the start (warm-up included).
    pub elapsed: Duration,
    /// Planned length (warm-up included), when known.
    pub planned: Option<Duration>,
    /// Whether the warm-up is still running.
    pub warming_up: bool,
    /// Requests completed so far (warm-up included), responses and errors.
    pub completed: u64,
    /// Of which errors.
    pub errors: u64,
}

/// What a run tells its caller while it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// About four times a second.
    Progress(&'a ProgressSnapshot),
    /// Something the user should know (e.g. an IO driver fallback), once.
    Warning(&'a str),
}

/// Runs `cfg` to its end and returns the measured report.
///
/// # Errors
/// [`Error::Runtime`] when no runtime can be built for the chosen driver, [`Error::Worker`] when
/// a worker thread cannot start or dies.
pub fn run(cfg: &RunConfig, mut on_event: impl FnMut(Event<'_>)) -> Result<Report, Error> {
    let warnings: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut warned: Vec<String> = Vec::new();
    let lives: Vec<Arc<Live>> = (0..cfg.threads)
        .map(|_| Arc::new(Live::default()))
        .collect();
    // Give the workers time to build their runtimes and connect before the clock starts.
    let margin =
        Duration::from_millis(100 + 2 * cfg.connections as u64).min(Duration::from_secs(2));
    let start = Instant::now() + margin;
    let planned = match &cfg.load {
        Load::Open(s) => s.duration(),
        Load::Closed => cfg.duration.map(|d| d + cfg.warmup),
    };
    let per_thread = split(cfg.connections as u64, cfg.threads);
    let budgets: Vec<Option<u64>> = match cfg.budget {
        Some(b) => split_weighted(b, &per_thread)
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; cfg.threads],
    };

    let results = thread::scope(|scope| {
        let mut handles = Vec::with_capacity(cfg.threads);
        let mut first = 0u64;
        for (t, &conns) in per_thread.iter().enumerate() {
            let live = lives.get(t).cloned().unwrap_or_default();
            let budget = budgets.get(t).copied().flatten();
            let warnings = &warnings;
            let spawned = thread::Builder::new()
                .name(format!("loadtest-{t}"))
                .spawn_scoped(scope, move || {
                    worker_thread(cfg, start, first, conns, budget, live, warnings)
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => return Err(Error::Worker(e.to_string())),
            }
            first += conns;
        }
        loop {
            thread::sleep(TICK);
            for w in warnings
                .lock()
                .map(|mut w| std::mem::take(&mut *w))
                .unwrap_or_default()
            {
                if !warned.contains(&w) {
                    on_event(Event::Warning(&w));
                    warned.push(w);
                }
            }
            let now = Instant::now();
            let snap = ProgressSnapshot {
                elapsed: now.saturating_duration_since(start),
                planned,
                warming_up: now < start + cfg.warmup,
                completed: lives.iter().map(|l| l.done.load(Ordering::Relaxed)).sum(),
                errors: lives.iter().map(|l| l.errors.load(Ordering::Relaxed)).sum(),
            };
            on_event(Event::Progress(&snap));
            if handles.iter().all(|h| h.is_finished()) {
                break;
            }
        }
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(
                h.join()
                    .map_err(|_| Error::Worker("a worker thread panicked".into()))??,
            );
        }
        Ok(out)
    })?;
    let finished = Instant::now();
    merge(cfg, start + cfg.warmup, finished, results)
}

fn worker_thread(
    cfg: &RunConfig,
    start: Instant,
    first: u64,
    conns: u64,
    budget: Option<u64>,
    live: Arc<Live>,
    warnings: &Mutex<Vec<String>>,
) -> Result<(ThreadStats, DriverKind), Error> {
    let seconds = cfg.duration.map_or(60, |d| d.as_secs() as usize + 1);
    let worker = Rc::new(Worker {
        addr: cfg.target.addr,
        set: cfg.requests.clone(),
        bytes: cfg
            .requests
            .requests
            .iter()
            .map(|r| Rc::new(r.bytes.clone()))
            .collect(),
        load: cfg.load.clone(),
        connections_total: cfg.connections as u64,
        start,
        measure_start: start + cfg.warmup,
        end: match cfg.load {
            Load::Closed => cfg.duration.map(|d| start + cfg.warmup + d),
            Load::Open(_) => None,
        },
        timeout: cfg.timeout,
        budget: Cell::new(budget),
        stats: RefCell::new(ThreadStats::new(seconds)?),
        live,
        done: Cell::new(0),
        failed: Cell::new(0),
    });
    let run = |driver: DriverKind| {
        let worker = worker.clone();
        async move {
            let tasks: Vec<_> = (first..first + conns)
                .map(|i| monoio::spawn(connection(worker.clone(), i)))
                .collect();
            for t in tasks {
                t.await;
            }
            driver
        }
    };
    let driver = runtime::block_on(cfg.io, run, |w| {
        if let Ok(mut list) = warnings.lock() {
            list.push(w);
        }
    })?;
    let stats = std::mem::replace(&mut *worker.stats.borrow_mut(), ThreadStats::new(0)?);
    Ok((stats, driver))
}

fn merge(
    cfg: &RunConfig,
    measure_start: Instant,
    finished: Instant,
    results: Vec<(ThreadStats, DriverKind)>,
) -> Result<Report, Error> {
    let mut latency = new_histogram()?;
    let mut send_lag = new_histogram()?;
    let mut status = vec![0u64; 1000];
    let mut errors = ErrorCounts::default();
    let mut per_second: Vec<u64> = Vec::new();
    let mut requests = 0;
    let mut connects = 0;
    let mut last_done: Option<Instant> = None;
    let mut driver = None;
    for (s, d) in &results {
        driver.get_or_insert(*d);
        latency
            .add(&s.latency_us)
            .map_err(|e| Error::Worker(format!("merging histograms: {e:?}")))?;
        send_lag
            .add(&s.send_lag_us)
            .map_err(|e| Error::Worker(format!("merging histograms: {e:?}")))?;
        for (total, n) in status.iter_mut().zip(&s.status) {
            *total += n;
        }
        errors.add(&s.errors);
        if per_second.len() < s.per_second.len() {
            per_second.resize(s.per_second.len(), 0);
        }
        for (total, n) in per_second.iter_mut().zip(&s.per_second) {
            *total += n;
        }
        requests += s.requests;
        connects += s.connects;
        last_done = last_done.max(s.last_done);
    }
    let budget_spent = cfg.budget.is_some_and(|b| requests + errors.total() >= b);
    let until_last = last_done
        .unwrap_or(finished)
        .saturating_duration_since(measure_start);
    let duration = match cfg.duration {
        Some(planned) if !budget_spent => until_last.max(planned),
        _ => until_last,
    };
    let status: BTreeMap<u16, u64> = status
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .filter_map(|(code, n)| Some((u16::try_from(code).ok()?, *n)))
        .collect();
    Ok(Report {
        url: cfg.target.url.clone(),
        open_loop: cfg.is_open(),
        driver,
        threads: cfg.threads,
        connections: cfg.connections,
        requests,
        duration,
        status,
        errors,
        latency_us: latency,
        send_lag_us: send_lag,
        per_second,
        connects,
    })
}

/// `total` split into `parts` nearly equal shares (the first ones get the remainder).
fn split(total: u64, parts: usize) -> Vec<u64> {
    let parts_u = parts.max(1) as u64;
    (0..parts_u)
        .map(|i| total / parts_u + u64::from(i < total % parts_u))
        .collect()
}

/// `total` split in proportion to `weights` (exactly, remainder to the first ones).
fn split_weighted(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u64 = weights.iter().sum::<u64>().max(1);
    let mut out: Vec<u64> = weights
        .iter()
        .map(|w| (u128::from(total) * u128::from(*w) / u128::from(sum)) as u64)
        .collect();
    let mut rest = total - out.iter().sum::<u64>();
    for slot in out.iter_mut() {
        if rest == 0 {
            break;
        }
        *slot += 1;
        rest -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_add_up() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split_weighted(1000, &[4, 3, 3]), vec![400, 300, 300]);
        assert_eq!(split_weighted(7, &[1, 1]), vec![4, 3]);
        assert_eq!(split_weighted(5, &[1, 2, 2]).iter().sum::<u64>(), 5);
    }
}

//! A validated run: everything the generator needs, checked before any thread starts.

use std::time::Duration;

use crate::{
    Error, IoMode,
    request::{KeyPool, RequestSet, RequestSpec, Target},
    schedule::Schedule,
};

/// How requests are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Each connection sends its next request as soon as the previous response is complete.
    Closed,
    /// Requests are due on a schedule (warm-up included) shared by all connections; latency is
    /// measured from the due time.
    Open(Schedule),
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where the load goes.
    pub target: Target,
    /// The serialised requests and their weights.
    pub requests: RequestSet,
    /// Connections in all (split across threads).
    pub connections: usize,
    /// Worker threads, each with its own runtime.
    pub threads: usize,
    /// The measured duration after the warm-up (`None`: until the request budget is spent).
    pub duration: Option<Duration>,
    /// Stop after this many measured requests (each ends as a response or an error).
    pub budget: Option<u64>,
    /// Pacing.
    pub load: Load,
    /// A period at the start whose requests are not recorded.
    pub warmup: Duration,
    /// How long a request (connect, write, response) may take before it counts as a timeout.
    pub timeout: Duration,
    /// IO driver.
    pub io: IoMode,
}

/// The knobs a run is built from, before validation.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The target URL (`http://` only).
    pub url: String,
    /// The request mix.
    pub requests: Vec<RequestSpec>,
    /// API keys to spread requests over.
    pub keys: Option<KeyPool>,
    /// Connections in all.
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// Measured duration (after warm-up).
    pub duration: Option<Duration>,
    /// Request budget.
    pub budget: Option<u64>,
    /// Constant total rate (open loop), when no stages are given.
    pub rate: Option<f64>,
    /// Open-loop stages (replace `rate` and `duration`).
    pub stages: Vec<crate::schedule::Stage>,
    /// Warm-up period.
    pub warmup: Duration,
    /// Warm-up rate for staged runs (default: the first stage's starting rate).
    pub warmup_rate: Option<f64>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// IO driver.
    pub io: IoMode,
}

impl Default for RunSpec {
    fn default() -> Self {
        Self {
            url: String::new(),
            requests: vec![RequestSpec::get()],
            keys: None,
            connections: 10,
            threads: 1,
            duration: Some(Duration::from_secs(10)),
            budget: None,
            rate: None,
            stages: Vec::new(),
            warmup: Duration::ZERO,
            warmup_rate: None,
            timeout: Duration::from_secs(5),
            io: IoMode::Auto,
        }
    }
}

impl TryFrom<RunSpec> for RunConfig {
    type Error = Error;

    fn try_from(spec: RunSpec) -> Result<Self, Error> {
        if spec.connections == 0 {
            return Err(Error::config("connections: expected at least 1, got 0"));
        }
        if spec.threads == 0 {
            return Err(Error::config("threads: expected at least 1, got 0"));
        }
        if spec.threads > spec.connections {
            return Err(Error::config(format!(
                "threads: {} threads for {} connections; each thread needs a connection",
                spec.threads, spec.connections
            )));
        }
        if spec.timeout.is_zero() {
            return Err(Error::config("timeout: must be above 0"));
        }
        if spec.budget == Some(0) {
            return Err(Error::config("requests: expected at least 1, got 0"));
        }
        if spec.duration.is_some_and(|d| d.is_zero()) {
            return Err(Error::config("duration: must be above 0"));
        }
        let target = Target::parse(&spec.url)?;
        let requests = RequestSet::build(&target, &spec.requests, spec.keys.as_ref())?;
        let (load, duration) = if !spec.stages.is_empty() {
            if spec.rate.is_some() {
                return Err(Error::config(
                    "rate: give either a rate or stages, not both",
                ));
            }
            let first = match spec.stages.first() {
                Some(crate::schedule::Stage::Ramp { from, .. }) => *from,
                Some(
                    crate::schedule::Stage::Steady { rate, .. }
                    | crate::schedule::Stage::Spike { rate, .. },
                ) => *rate,
                None => 0.0,
            };
            let warmup_rate = spec.warmup_rate.unwrap_or(first);
            check_rate(warmup_rate, "warmup_rate")?;
            for (i, s) in spec.stages.iter().enumerate() {
                match *s {
                    crate::schedule::Stage::Ramp { from, to, duration } => {
                        check_rate(from, &format!("stages[{i}].from"))?;
                        check_rate(to, &format!("stages[{i}].to"))?;
                        check_len(duration, i)?;
                    }
                    crate::schedule::Stage::Steady { rate, duration }
                    | crate::schedule::Stage::Spike { rate, duration, .. } => {
                        check_rate(rate, &format!("stages[{i}].rate"))?;
                        check_len(duration, i)?;
                    }
                }
            }
            let measured = Schedule::from_stages(Duration::ZERO, 0.0, &spec.stages);
            let duration = measured.duration();
            let schedule = measured.with_warmup(spec.warmup, warmup_rate);
            (Load::Open(schedule), duration)
        } else if let Some(rate) = spec.rate {
            check_rate(rate, "rate")?;
            if rate <= 0.0 {
                return Err(Error::config("rate: must be above 0"));
            }
            if spec.duration.is_none() && spec.budget.is_none() {
                return Err(Error::config(
                    "duration: give a duration or a request budget",
                ));
            }
            let schedule = Schedule::steady(rate, spec.duration).with_warmup(spec.warmup, rate);
            (Load::Open(schedule), spec.duration)
        } else {
            if spec.duration.is_none() && spec.budget.is_none() {
                return Err(Error::config(
                    "duration: give a duration or a request budget",
                ));
            }
            (Load::Closed, spec.duration)
        };
        Ok(Self {
            target,
            requests,
            connections: spec.connections,
            threads: spec.threads,
            duration,
            budget: spec.budget,
            load,
            warmup: spec.warmup,
            timeout: spec.timeout,
            io: spec.io,
        })
    }
}

fn check_rate(rate: f64, what: &str) -> Result<(), Error> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{what}: expected a rate ≥ 0 requests/s, got {rate}"
        )))
    }
}

fn check_len(d: Duration, i: usize) -> Result<(), Error> {
    if d.is_zero() {
        Err(Error::config(format!(
            "stages[{i}].duration: must be above 0"
        )))
    } else {
        Ok(())
    }
}

impl RunConfig {
    /// Whether the run is paced (open loop).
    #[must_use]
    pub fn is_open(&self) -> bool {
        matches!(self.load, Load::Open(_))
    }
}

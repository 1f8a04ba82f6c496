//! Scenario files (TOML): request mixes, API-key pools, warm-up, open-loop stages and
//! expectations on status ratios. The user-facing format is checked strictly (unknown fields are
//! refused by name) and converted into a [`RunSpec`]; docs/loadtest.md documents it.

use std::{collections::BTreeMap, fmt, path::Path, time::Duration};

use serde::Deserialize;

use crate::{
    Error, Report,
    config::RunSpec,
    duration::serde_human,
    report::StatusClass,
    request::{KeyGroup, KeyPool, RequestSpec},
    schedule::Stage,
};

#[cfg(test)]
mod tests;

/// A scenario file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Target URL (`http://host:port[/path]`); `--url` overrides it.
    pub url: Option<String>,
    /// Connections in all.
    pub connections: Option<usize>,
    /// Worker threads.
    pub threads: Option<usize>,
    /// Measured duration (closed loop, or open loop at `rate`); not with `stages`.
    #[serde(default, deserialize_with = "serde_human::option::deserialize")]
    pub duration: Option<Duration>,
    /// Constant total rate in requests/s (open loop); not with `stages`.
    pub rate: Option<f64>,
    /// Stop after this many measured requests.
    pub max_requests: Option<u64>,
    /// Warm-up period, not recorded.
    #[serde(default, deserialize_with = "serde_human::option::deserialize")]
    pub warmup: Option<Duration>,
    /// Warm-up rate for staged runs (default: the first stage's starting rate).
    pub warmup_rate: Option<f64>,
    /// Per-request timeout.
    #[serde(default, deserialize_with = "serde_human::option::deserialize")]
    pub timeout: Option<Duration>,
    /// The request mix (default: one `GET` of the URL).
    #[serde(default)]
    pub requests: Vec<RequestEntry>,
    /// API keys to spread requests over.
    pub keys: Option<KeysEntry>,
    /// Open-loop stages, run in order after the warm-up.
    #[serde(default)]
    pub stages: Vec<StageEntry>,
    /// Status-ratio expectations, e.g. `"2xx >= 0.99"`, `"429 <= 0.4"`, `"errors == 0"`.
    #[serde(default)]
    pub expect: Vec<String>,
}

/// One entry of the request mix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestEntry {
    /// Relative weight (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// HTTP method (default `GET`).
    #[serde(default = "get")]
    pub method: String,
    /// Path and query (default: the URL's).
    pub path: Option<String>,
    /// Headers, `Name = "value"`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    pub body: Option<String>,
}

fn one() -> u32 {
    1
}

fn get() -> String {
    "GET".into()
}

/// A pool of API keys sent in one header.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysEntry {
    /// Header carrying the key, e.g. `Otoroshi-Client-Id` or `x-api-key`.
    pub header: String,
    /// Groups of keys, each picked with its weight.
    pub groups: Vec<KeyGroupEntry>,
}

/// A group of keys: give `keys`, or `prefix` and `count` (`prefix0` … `prefix{count-1}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyGroupEntry {
    /// Label: `valid`, `invalid`, `over-quota`…
    pub name: String,
    /// Relative weight among the groups.
    pub weight: u32,
    /// The keys.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Prefix of generated keys.
    pub prefix: Option<String>,
    /// How many keys to generate.
    pub count: Option<usize>,
}

/// One open-loop stage.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StageEntry {
    /// Rate moves linearly from `from` to `to` over `duration`.
    Ramp {
        /// Requests/s at the start.
        from: f64,
        /// Requests/s at the end.
        to: f64,
        /// Length.
        #[serde(deserialize_with = "serde_human::deserialize")]
        duration: Duration,
    },
    /// Constant `rate` for `duration`.
    Steady {
        /// Requests/s.
        rate: f64,
        /// Length.
        #[serde(deserialize_with = "serde_human::deserialize")]
        duration: Duration,
    },
    /// Jump to `rate` for `duration`, then back to the previous stage's rate for `after`.
    Spike {
        /// Peak requests/s.
        rate: f64,
        /// Length of the peak.
        #[serde(deserialize_with = "serde_human::deserialize")]
        duration: Duration,
        /// How long the previous rate holds after the peak (default 0).
        #[serde(default, deserialize_with = "serde_human::deserialize")]
        after: Duration,
    },
}

impl Scenario {
    /// Reads and parses a scenario file.
    ///
    /// # Errors
    /// [`Error::Scenario`] naming the file and the bad field (with its line).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Scenario {
            path: path.display().to_string(),
            source: e.into(),
        })?;
        Self::parse(&text).map_err(|e| Error::Scenario {
            path: path.display().to_string(),
            source: e.into(),
        })
    }

    /// Parses scenario text; the error names the bad field.
    ///
    /// # Errors
    /// [`Error::ScenarioText`], naming the bad field and its line, or
    /// [`Error::Expectation`].
    pub fn parse(text: &str) -> Result<Self, Error> {
        let scenario: Scenario = toml::from_str(text)?;
        scenario.expectations()?;
        Ok(scenario)
    }

    /// The parsed `expect` list.
    ///
    /// # Errors
    /// [`Error::Expectation`] naming the bad entry.
    pub fn expectations(&self) -> Result<Vec<Expectation>, Error> {
        self.expect
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Expectation::parse(e).map_err(|m| Error::Expectation(format!("expect[{i}]: {m}")))
            })
            .collect()
    }

    /// Fills `spec` with what the scenario sets (leaving the rest as it is).
    ///
    /// # Errors
    /// [`Error::Config`] for a key group with no or several key sources.
    pub fn apply(&self, spec: &mut RunSpec) -> Result<(), Error> {
        if let Some(url) = &self.url {
            spec.url.clone_from(url);
        }
        if let Some(c) = self.connections {
            spec.connections = c;
        }
        if let Some(t) = self.threads {
            spec.threads = t;
        }
        if self.duration.is_some() {
            spec.duration = self.duration;
        }
        if self.rate.is_some() {
            spec.rate = self.rate;
        }
        if self.max_requests.is_some() {
            spec.budget = self.max_requests;
            if self.duration.is_none() {
                spec.duration = None;
            }
        }
        if let Some(w) = self.warmup {
            spec.warmup = w;
        }
        spec.warmup_rate = self.warmup_rate;
        if let Some(t) = self.timeout {
            spec.timeout = t;
        }
        if !self.requests.is_empty() {
            spec.requests = self
                .requests
                .iter()
                .map(|r| RequestSpec {
                    weight: r.weight,
                    method: r.method.clone(),
                    path: r.path.clone(),
                    headers: r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    body: r.body.clone().unwrap_or_default().into_bytes(),
                })
                .collect();
        }
        if let Some(keys) = &self.keys {
            let mut groups = Vec::with_capacity(keys.groups.len());
            for (i, g) in keys.groups.iter().enumerate() {
                let keys = match (&g.prefix, g.count, g.keys.is_empty()) {
                    (None, None, false) => g.keys.clone(),
                    (Some(prefix), Some(count), true) => {
                        (0..count).map(|n| format!("{prefix}{n}")).collect()
                    }
                    _ => {
                        return Err(Error::config(format!(
                            "keys.groups[{i}] ({}): give either `keys` or `prefix` and `count`",
                            g.name
                        )));
                    }
                };
                groups.push(KeyGroup {
                    name: g.name.clone(),
                    weight: g.weight,
                    keys,
                });
            }
            spec.keys = Some(KeyPool {
                header: keys.header.clone(),
                groups,
            });
        }
        if !self.stages.is_empty() {
            if self.duration.is_some() || self.rate.is_some() {
                return Err(Error::config(
                    "stages: `duration` and `rate` do not apply to a staged scenario",
                ));
            }
            spec.rate = None;
            spec.stages = self
                .stages
                .iter()
                .map(|s| match *s {
                    StageEntry::Ramp { from, to, duration } => Stage::Ramp { from, to, duration },
                    StageEntry::Steady { rate, duration } => Stage::Steady { rate, duration },
                    StageEntry::Spike {
                        rate,
                        duration,
                        after,
                    } => Stage::Spike {
                        rate,
                        duration,
                        after,
                    },
                })
                .collect();
        }
        Ok(())
    }
}

/// How a ratio is compared with its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `==`
    Eq,
}

/// A bound on the share of requests in a status class: `2xx >= 0.99`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// `2xx`, `429`, or `errors`.
    pub class: String,
    /// The comparison.
    pub op: Op,
    /// The bound, 0–1.
    pub bound: f64,
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Eq => "==",
        };
        write!(f, "{} {op} {}", self.class, self.bound)
    }
}

impl Expectation {
    /// Parses `CLASS OP RATIO`, e.g. `"2xx" >= 0.99` or `429 <= 0.4`.
    ///
    /// # Errors
    /// [`Error::Expectation`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let ops = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        let (at, op_text, op) = ops
            .iter()
            .filter_map(|(t, op)| text.find(t).map(|i| (i, *t, *op)))
            .min_by_key(|(i, t, _)| (*i, usize::MAX - t.len()))
            .ok_or_else(|| {
                Error::Expectation(format!(
                    "`{text}`: expected `CLASS OP RATIO`, e.g. `2xx >= 0.99`"
                ))
            })?;
        let class = text
            .get(..at)
            .unwrap_or_default()
            .trim()
            .trim_matches('"')
            .to_ascii_lowercase();
        let bound_text = text.get(at + op_text.len()..).unwrap_or_default().trim();
        let bound: f64 = bound_text
            .parse()
            .map_err(|_| Error::Expectation(format!("`{text}`: `{bound_text}` is not a number")))?;
        if !(0.0..=1.0).contains(&bound) {
            return Err(Error::Expectation(format!(
                "`{text}`: the ratio must be between 0 and 1"
            )));
        }
        if StatusClass::parse(&class).is_none() {
            return Err(Error::Expectation(format!(
                "`{text}`: unknown class `{class}` (use a status like 429, a class like 2xx, or errors)"
            )));
        }
        Ok(Self { class, op, bound })
    }

    /// The measured ratio and whether it meets the bound.
    #[must_use]
    pub fn check(&self, report: &Report) -> (f64, bool) {
        let actual = report.ratio(&self.class).unwrap_or(0.0);
        let ok = match self.op {
            Op::Ge => actual >= self.bound,
            Op::Le => actual <= self.bound,
            Op::Gt => actual > self.bound,
            Op::Lt => actual < self.bound,
            Op::Eq => (actual - self.bound).abs() < 1e-12,
        };
        (actual, ok)
    }
}

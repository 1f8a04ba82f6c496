//! Path restrictions of an API key (and of the route-level `NgRestrictions` plugin), with
//! Otoroshi's semantics, compiled once per config snapshot.
//!
//! Each entry is `{method, path}`:
//! - `method` is compared ASCII case-insensitively; `*` matches any method.
//! - `path` is a regex that must match the **whole** subject (compiled as `^(?:…)$`, like Java's
//!   `matches()`), not a glob: `/.*` matches every path, `/*` only runs of slashes.
//! - A pattern starting with `/` is matched against the request path (query excluded); any other
//!   pattern is matched against `domain + path` (the host without port, then the path).
//!
//! Decision ([`RestrictionSet::check`]):
//! - `allowLast = true` (Otoroshi's coded default): a `notFound` match is 404, then a `forbidden`
//!   match is 403, anything else is allowed; `allowed` is ignored.
//! - `allowLast = false` (whitelist): an `allowed` match wins; otherwise a `notFound` match is 404,
//!   a `forbidden` match is 403, and anything else is 404.
//! - Disabled restrictions allow everything (and are not compiled, so that an Otoroshi export with
//!   a Java-only regex in a disabled set still imports).
//!
//! Not supported: Otoroshi's per-entry `authorized_entity` scoping (the model has no such field).
//!
//! Patterns are grouped per method into [`regex::RegexSet`]s, so a check costs at most two set
//! searches per list (path, `domain + path`) whatever the number of entries. The `regex` crate keeps its match caches
//! in an internal pool whose fast path belongs to the first thread that uses a regex; a core that
//! wants no contention at all can clone the compiled set (a clone gets a fresh pool).

use gateway_model::entity::{Restriction, Restrictions};
use regex::RegexSet;

#[cfg(test)]
mod tests;

/// What the restrictions decide for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request may go on.
    Allow,
    /// 403 (`forbidden` list).
    Forbidden,
    /// 404 (`notFound` list, or not allowed in whitelist mode).
    NotFound,
}

impl Outcome {
    /// The HTTP status of a refusal (200 for [`Outcome::Allow`], which is no refusal).
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::Allow => 200,
            Self::Forbidden => 403,
            Self::NotFound => 404,
        }
    }

    /// The stable error code of a refusal for the JSON error body.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::Allow => "allowed",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
        }
    }
}

/// A restriction pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: invalid regex {pattern:?}: {message}")]
pub struct CompileError {
    /// Where the pattern is, relative to the restrictions object: `forbidden[2].path`.
    pub field: String,
    /// The pattern as written.
    pub pattern: String,
    /// What the regex compiler said.
    pub message: String,
}

/// Compiled restrictions of one key or route. Cheap to check, immutable, shared by all cores.
#[derive(Debug, Clone)]
pub struct RestrictionSet {
    enabled: bool,
    allow_last: bool,
    /// Whether any pattern is matched against `domain + path` (then the check builds it once).
    needs_host: bool,
    allowed: RuleList,
    forbidden: RuleList,
    not_found: RuleList,
}

impl Default for RestrictionSet {
    fn default() -> Self {
        Self::disabled()
    }
}

impl RestrictionSet {
    /// Restrictions that allow everything.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            allow_last: true,
            needs_host: false,
            allowed: RuleList::default(),
            forbidden: RuleList::default(),
            not_found: RuleList::default(),
        }
    }

    /// Compiles the restrictions of a key (or of a route's `NgRestrictions` plugin, which is
    /// always enabled: pass `enabled: true`).
    ///
    /// # Errors
    /// The first pattern that is not a valid regex, with its place (`notFound[1].path`).
    pub fn compile(restrictions: &Restrictions) -> Result<Self, CompileError> {
        if !restrictions.enabled {
            return Ok(Self::disabled());
        }
        let allowed = RuleList::compile("allowed", &restrictions.allowed)?;
        let forbidden = RuleList::compile("forbidden", &restrictions.forbidden)?;
        let not_found = RuleList::compile("notFound", &restrictions.not_found)?;
        let needs_host = allowed.has_host() || forbidden.has_host() || not_found.has_host();
        Ok(Self {
            enabled: true,
            allow_last: restrictions.allow_last,
            needs_host,
            allowed,
            forbidden,
            not_found,
        })
    }

    /// Whether the restrictions are enabled (a disabled set always allows).
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Decides for one request. `domain` is the request's host without port; `path` is the request
    /// path (anything from `?` on is ignored). `scratch` is a reusable buffer for `domain + path`,
    /// touched only when some pattern needs it.
    #[must_use]
    pub fn check(&self, method: &str, domain: &str, path: &str, scratch: &mut String) -> Outcome {
        if !self.enabled {
            return Outcome::Allow;
        }
        let path = path.split('?').next().unwrap_or(path);
        let host_path = if self.needs_host {
            scratch.clear();
            scratch.push_str(domain);
            scratch.push_str(path);
            scratch.as_str()
        } else {
            ""
        };
        let subject = Subject {
            method,
            path,
            host_path,
        };
        if self.allow_last {
            if self.not_found.matches(&subject) {
                Outcome::NotFound
            } else if self.forbidden.matches(&subject) {
                Outcome::Forbidden
            } else {
                Outcome::Allow
            }
        } else if self.allowed.matches(&subject) {
            Outcome::Allow
        } else if self.not_found.matches(&subject) {
            Outcome::NotFound
        } else if self.forbidden.matches(&subject) {
            Outcome::Forbidden
        } else {
            // Whitelist mode: whatever is not allowed does not exist.
            Outcome::NotFound
        }
    }
}

/// What a request offers to the patterns.
struct Subject<'a> {
    method: &'a str,
    path: &'a str,
    host_path: &'a str,
}

/// One list (`allowed`, `forbidden` or `notFound`). Each method named in the list gets the sets of
/// its own patterns plus the `*` patterns, so a request costs at most one path search and one
/// `domain + path` search per list.
#[derive(Debug, Clone, Default)]
struct RuleList {
    /// Upper-case method → its patterns and the `*` ones.
    methods: Vec<(Box<str>, Sets)>,
    /// The `*` patterns alone, for every other method.
    any: Sets,
}

#[derive(Debug, Clone, Default)]
struct Sets {
    /// Patterns starting with `/`, matched against the path.
    path: Option<RegexSet>,
    /// Other patterns, matched against `domain + path`.
    host: Option<RegexSet>,
}

/// Anchored patterns of one method (or `*`), not compiled yet.
#[derive(Default, Clone)]
struct Pending {
    paths: Vec<String>,
    hosts: Vec<String>,
}

impl RuleList {
    fn compile(list: &'static str, entries: &[Restriction]) -> Result<Self, CompileError> {
        let mut any = Pending::default();
        let mut methods: Vec<(String, Pending)> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let anchored = format!("^(?:{})$", entry.path);
            // Compile alone first, so that the error names the entry (a set's error does not).
            if let Err(err) = regex::Regex::new(&anchored) {
                return Err(CompileError {
                    field: format!("{list}[{i}].path"),
                    pattern: entry.path.clone(),
                    message: err.to_string(),
                });
            }
            let method = entry.method.trim();
            let pending = if method == "*" {
                &mut any
            } else {
                let method = method.to_ascii_uppercase();
                let slot = match methods.iter().position(|(m, _)| *m == method) {
                    Some(slot) => slot,
                    None => {
                        methods.push((method, Pending::default()));
                        methods.len() - 1
                    }
                };
                match methods.get_mut(slot) {
                    Some((_, pending)) => pending,
                    None => continue, // unreachable: `slot` is in bounds
                }
            };
            if entry.path.starts_with('/') {
                pending.paths.push(anchored);
            } else {
                pending.hosts.push(anchored);
            }
        }
        let mut compiled = Vec::with_capacity(methods.len());
        for (method, mut pending) in methods {
            pending.paths.extend(any.paths.iter().cloned());
            pending.hosts.extend(any.hosts.iter().cloned());
            compiled.push((method.into_boxed_str(), Sets::compile(list, &pending)?));
        }
        Ok(Self {
            methods: compiled,
            any: Sets::compile(list, &any)?,
        })
    }

    fn has_host(&self) -> bool {
        self.any.host.is_some() || self.methods.iter().any(|(_, s)| s.host.is_some())
    }

    fn matches(&self, subject: &Subject<'_>) -> bool {
        let sets = self
            .methods
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(subject.method))
            .map_or(&self.any, |(_, sets)| sets);
        sets.path.as_ref().is_some_and(|s| s.is_match(subject.path))
            || sets
                .host
                .as_ref()
                .is_some_and(|s| s.is_match(subject.host_path))
    }
}

impl Sets {
    fn compile(list: &'static str, pending: &Pending) -> Result<Self, CompileError> {
        Ok(Self {
            path: set(list, &pending.paths)?,
            host: set(list, &pending.hosts)?,
        })
    }
}

/// A set of already validated patterns; `None` when there are none.
fn set(list: &'static str, patterns: &[String]) -> Result<Option<RegexSet>, CompileError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    RegexSet::new(patterns)
        .map(Some)
        .map_err(|err| CompileError {
            field: list.to_owned(),
            pattern: String::new(),
            message: err.to_string(),
        })
}

//! The route table: which route serves a request, by host and path.
//!
//! Built once per config snapshot ([`RouteTable::build`]) and then only read, by every core, with
//! no allocation per lookup ([`RouteTable::lookup`]). It must never allocate, lock or panic in
//! `lookup`.
//!
//! Matching rules:
//! - A route's `frontend.domains` entries are `host` or `host/path`. Hosts compare
//!   case-insensitively, without the request's port or a trailing dot. `*.example.com` matches
//!   any host ending in `.example.com` (any depth); `*` matches every host. An exact host beats a
//!   wildcard, a longer wildcard suffix beats a shorter one, and `*` comes last: when a more
//!   specific host has no route for the path, the next one is tried.
//! - Paths match by prefix on segment boundaries: `/api` matches `/api`, `/api/` and `/api/v1`,
//!   never `/apis`. A trailing `/` in the route's path is ignored. The longest matching prefix
//!   wins; with `exact`, the path must equal the prefix.
//! - Among routes with the same host and prefix, a route with constraints (methods, headers,
//!   query) is tried before one without, then in the order given. Methods compare exactly
//!   (HTTP methods are case-sensitive), header names case-insensitively, header and query values
//!   exactly (no percent-decoding).
//! - Disabled routes are not in the table.

use rustc_hash::FxHashMap;

/// What the table needs to know about a route. `slot` is the caller's index of the route's
/// runtime data (backend, flow), returned by [`RouteTable::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDef {
    /// The route's id (for diagnostics).
    pub id: String,
    /// `host` or `host/path` entries.
    pub domains: Vec<String>,
    /// Whether the path must match exactly.
    pub exact: bool,
    /// Whether the matched prefix is removed before proxying.
    pub strip_path: bool,
    /// Allowed methods; empty for any.
    pub methods: Vec<String>,
    /// Required headers (name, value).
    pub headers: Vec<(String, String)>,
    /// Required query parameters (name, value).
    pub query: Vec<(String, String)>,
    /// The caller's index for this route.
    pub slot: usize,
}

impl RouteDef {
    /// The table's view of a model route.
    pub fn from_route(route: &gateway_model::entity::Route, slot: usize) -> Self {
        Self {
            id: route.id.clone(),
            domains: route.frontend.domains.clone(),
            exact: route.frontend.exact,
            strip_path: route.frontend.strip_path,
            methods: route.frontend.methods.clone(),
            headers: route
                .frontend
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            query: route
                .frontend
                .query
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            slot,
        }
    }
}

/// A route entry for one of its domains.
#[derive(Debug, Clone)]
struct Entry {
    slot: usize,
    route: usize,
    prefix_len: usize,
    exact: bool,
    strip_path: bool,
    methods: Box<[Box<str>]>,
    headers: Box<[(Box<str>, Box<str>)]>,
    query: Box<[(Box<str>, Box<str>)]>,
}

impl Entry {
    fn constrained(&self) -> bool {
        !self.methods.is_empty() || !self.headers.is_empty() || !self.query.is_empty()
    }
}

/// The paths of one host pattern.
#[derive(Debug, Default, Clone)]
struct PathIndex {
    /// Bit `n` set: some prefix of length `n` exists (lengths above `MAX_PREFIX` are refused).
    lengths: Vec<u64>,
    by_prefix: FxHashMap<Box<str>, Vec<Entry>>,
}

/// Longest route path prefix accepted, in bytes.
pub const MAX_PREFIX: usize = 4096;

impl PathIndex {
    fn insert(&mut self, prefix: &str, entry: Entry) {
        let words = prefix.len() / 64 + 1;
        if self.lengths.len() < words {
            self.lengths.resize(words, 0);
        }
        if let Some(w) = self.lengths.get_mut(prefix.len() / 64) {
            *w |= 1 << (prefix.len() % 64);
        }
        let list = self.by_prefix.entry(prefix.into()).or_default();
        list.push(entry);
        // Stable: constrained routes first, then insertion order.
        list.sort_by_key(|e| !e.constrained());
    }

    fn has_length(&self, len: usize) -> bool {
        self.lengths
            .get(len / 64)
            .is_some_and(|w| w & (1 << (len % 64)) != 0)
    }

    /// Longest prefix match of `path` among this host's routes.
    fn lookup<'t, 'h, H>(&'t self, path: &str, req: &Request<'_, H>) -> Option<&'t Entry>
    where
        H: Fn(&str) -> Option<&'h [u8]>,
    {
        // Candidate prefix lengths are the segment boundaries: the whole path, then the position
        // of each '/' from the right (a prefix never ends with '/', see `normalise_prefix`).
        let bytes = path.as_bytes();
        let mut end = Some(path.len());
        while let Some(len) = end {
            if self.has_length(len) {
                if let Some(entries) = path.get(..len).and_then(|p| self.by_prefix.get(p)) {
                    let whole = len == path.len();
                    if let Some(e) = entries
                        .iter()
                        .find(|e| (whole || !e.exact) && req.admits(e))
                    {
                        return Some(e);
                    }
                }
            }
            end = bytes
                .get(..len)
                .and_then(|b| b.iter().rposition(|&c| c == b'/'));
        }
        None
    }
}

/// The request facts the table matches on.
struct Request<'r, H> {
    method: &'r [u8],
    query: &'r [u8],
    header: H,
}

impl<H> Request<'_, H> {
    fn admits<'h>(&self, e: &Entry) -> bool
    where
        H: Fn(&str) -> Option<&'h [u8]>,
    {
        (e.methods.is_empty() || e.methods.iter().any(|m| m.as_bytes() == self.method))
            && e.headers
                .iter()
                .all(|(name, value)| (self.header)(name) == Some(value.as_bytes()))
            && e.query
                .iter()
                .all(|(name, value)| query_has(self.query, name.as_bytes(), value.as_bytes()))
    }
}

fn query_has(query: &[u8], name: &[u8], value: &[u8]) -> bool {
    query.split(|&b| b == b'&').any(|pair| {
        let mut kv = pair.splitn(2, |&b| b == b'=');
        kv.next() == Some(name) && kv.next().unwrap_or(b"") == value
    })
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// The caller's index of the route ([`RouteDef::slot`]).
    pub slot: usize,
    /// Length of the matched path prefix in the request path.
    pub prefix_len: usize,
    /// Whether the matched prefix is removed before proxying.
    pub strip_path: bool,
}

impl RouteMatch {
    /// The path to send upstream (before the backend's root is added): the request path with the
    /// matched prefix removed when `strip_path`, never empty.
    pub fn upstream_path<'p>(&self, path: &'p str) -> &'p str {
        if !self.strip_path {
            return path;
        }
        match path.get(self.prefix_len..) {
            Some("") | None => "/",
            Some(rest) => rest,
        }
    }
}

/// A problem building the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route `{route}`: domain `{domain}`: {reason}")]
pub struct BuildError {
    /// The route's id.
    pub route: String,
    /// The offending domain entry.
    pub domain: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Routes indexed by host and path. Immutable once built.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    exact: FxHashMap<Box<str>, PathIndex>,
    /// Keyed by the suffix after `*`, e.g. `.example.com`.
    wildcard: FxHashMap<Box<str>, PathIndex>,
    any: Option<PathIndex>,
    len: usize,
}

impl RouteTable {
    /// Builds the table from route definitions (disabled routes must be left out by the caller).
    ///
    /// # Errors
    /// When a domain entry is malformed (empty host, a `*` elsewhere than the first label, a path
    /// longer than [`MAX_PREFIX`]).
    pub fn build(routes: impl IntoIterator<Item = RouteDef>) -> Result<Self, BuildError> {
        let mut table = Self::default();
        for (route_no, def) in routes.into_iter().enumerate() {
            let methods: Box<[Box<str>]> = def.methods.iter().map(|m| m.as_str().into()).collect();
            let headers: Box<[(Box<str>, Box<str>)]> = def
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect();
            let query: Box<[(Box<str>, Box<str>)]> = def
                .query
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect();
            for domain in &def.domains {
                let err = |reason| BuildError {
                    route: def.id.clone(),
                    domain: domain.clone(),
                    reason,
                };
                let (host, path) = match domain.find('/') {
                    Some(i) => (
                        domain.get(..i).unwrap_or_default(),
                        domain.get(i..).unwrap_or_default(),
                    ),
                    None => (domain.as_str(), ""),
                };
                let raw = host;
                let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
                if host.is_empty() || host.ends_with('.') {
                    return Err(err("empty host or empty label"));
                }
                if host.ends_with('*') && raw != "*" {
                    return Err(err("`*` is only allowed as `*.suffix` or alone"));
                }
                let prefix = normalise_prefix(path);
                if prefix.len() > MAX_PREFIX {
                    return Err(err("path prefix too long"));
                }
                let entry = Entry {
                    slot: def.slot,
                    route: route_no,
                    prefix_len: prefix.len(),
                    exact: def.exact,
                    strip_path: def.strip_path,
                    methods: methods.clone(),
                    headers: headers.clone(),
                    query: query.clone(),
                };
                let index = if host == "*" {
                    table.any.get_or_insert_with(PathIndex::default)
                } else if let Some(suffix) = host.strip_prefix('*') {
                    if !suffix.starts_with('.') || suffix.contains('*') || suffix.len() < 2 {
                        return Err(err("`*` is only allowed as `*.suffix` or alone"));
                    }
                    table.wildcard.entry(suffix.into()).or_default()
                } else if host.contains('*') {
                    return Err(err("`*` is only allowed as `*.suffix` or alone"));
                } else {
                    table.exact.entry(host.as_str().into()).or_default()
                };
                index.insert(prefix, entry);
            }
            table.len += 1;
        }
        Ok(table)
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Finds the route for a request: `host` is the Host header's value (port and case allowed),
    /// `path` the canonical request path without the query ([`crate::http::canonical_path`]), `query` the part after `?` (may be empty),
    /// `header` looks up a request header by name (case-insensitively). Allocation-free.
    pub fn lookup<'h, H>(
        &self,
        host: &[u8],
        method: &[u8],
        path: &str,
        query: &[u8],
        header: H,
    ) -> Option<RouteMatch>
    where
        H: Fn(&str) -> Option<&'h [u8]>,
    {
        let mut buf = [0u8; crate::http::MAX_HOST];
        let host = crate::http::canonical_host(host, &mut buf)?;
        self.lookup_canonical(host, method, path, query, header)
    }

    /// [`RouteTable::lookup`] for a host already in canonical form
    /// ([`crate::http::canonical_host`]: no port, lower case, no trailing dot).
    pub fn lookup_canonical<'h, H>(
        &self,
        host: &str,
        method: &[u8],
        path: &str,
        query: &[u8],
        header: H,
    ) -> Option<RouteMatch>
    where
        H: Fn(&str) -> Option<&'h [u8]>,
    {
        let req = Request {
            method,
            query,
            header,
        };
        let found = self
            .exact
            .get(host)
            .and_then(|index| index.lookup(path, &req))
            .or_else(|| {
                // Wildcards: the suffixes of the host at each '.', longest first.
                let mut at = host.find('.');
                while let Some(i) = at {
                    let suffix = host.get(i..)?;
                    if let Some(e) = self.wildcard.get(suffix).and_then(|x| x.lookup(path, &req)) {
                        return Some(e);
                    }
                    at = suffix.get(1..).and_then(|s| s.find('.')).map(|j| i + 1 + j);
                }
                None
            })
            .or_else(|| self.any.as_ref().and_then(|x| x.lookup(path, &req)))?;
        Some(RouteMatch {
            slot: found.slot,
            prefix_len: found.prefix_len,
            strip_path: found.strip_path,
        })
    }

    /// Every (host pattern, prefix, route order) in the table, for diagnostics and tests.
    pub fn entries(&self) -> Vec<(String, String, usize)> {
        let mut out = Vec::new();
        let mut add = |host: &str, index: &PathIndex| {
            for (prefix, entries) in &index.by_prefix {
                for e in entries {
                    out.push((host.to_owned(), prefix.to_string(), e.route));
                }
            }
        };
        for (h, i) in &self.exact {
            add(h, i);
        }
        for (h, i) in &self.wildcard {
            add(&format!("*{h}"), i);
        }
        if let Some(i) = &self.any {
            add("*", i);
        }
        out.sort();
        out
    }
}

/// `"/api/"` → `"/api"`, `"/"` → `""`: prefixes never end with `/`, so that matching only has to
/// look at segment boundaries.
fn normalise_prefix(path: &str) -> &str {
    path.trim_end_matches('/')
}

#[cfg(test)]
mod tests;

//! Validation of entities: every problem, each with its JSON path
//! (`apiKeys[2].dailyQuota: expected an integer ≥ 0, got -1`), never a panic and never only the
//! first one.
//!
//! Deserialisation checks types ([`from_value`] records the path of a type error and, in strict
//! mode, of every unknown field); [`Validate`] checks values and the rules that span fields.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::entity::{
    Api, ApiKey, ApikeyConsumerConfig, Backend, Certificate, Consumer, ConsumerKind, Frontend,
    LoadBalancing, PluginInstance, Restriction, Route, StoredBackend,
};

/// One problem: where (a JSON path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path of the bad value, e.g. `routes[3].backend.targets[0].port`.
    pub path: String,
    /// What is wrong, e.g. `expected 1..=65535, got 0`.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Joins a JSON path and a field name.
pub fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Joins a JSON path and an array index.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Deserialises `value` (found at `path`) into `T`.
///
/// A type error is recorded with the full path of the bad value and `None` is returned. Fields
/// that `T` does not know are recorded as problems when `strict` (Tollgate's own files) and
/// returned as ignored paths otherwise (Otoroshi exports carry many fields Tollgate has no use for).
pub fn from_value<T: DeserializeOwned>(
    value: &serde_json::Value,
    path: &str,
    strict: bool,
    problems: &mut Problems,
    ignored: &mut Vec<String>,
) -> Option<T> {
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    match result {
        Ok(t) => {
            for field in unknown {
                let full = join(path, &bracket_indexes(&field));
                if strict {
                    problems.push(full, "unknown field");
                } else {
                    ignored.push(full);
                }
            }
            Some(t)
        }
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." {
                path.to_owned()
            } else {
                join(path, &inner.replace(".[", "["))
            };
            problems.push(full, clean_serde_message(&e.into_inner().to_string()));
            None
        }
    }
}

/// serde_ignored writes a sequence index as a path segment (`consumers.0.bogus`) and
/// serde_path_to_error as `[0]` after a dot; both become `consumers[0].bogus`.
fn bracket_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for segment in path.split('.') {
        if segment.starts_with('[') {
            out.push_str(segment);
        } else if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(segment);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// serde_json's messages end with " at line N column M", meaningless for a `Value`; drop it.
fn clean_serde_message(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message.get(..i).unwrap_or(message).to_owned(),
        None => message.to_owned(),
    }
}

/// Value rules of an entity.
pub trait Validate {
    /// Appends every problem of `self`, found at `path`, to `problems`.
    fn validate(&self, path: &str, problems: &mut Problems);
}

fn non_blank(value: &str, path: String, problems: &mut Problems) {
    if value.trim().is_empty() {
        problems.push(path, "expected a non-empty string");
    }
}

/// Longest entity id or client id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Whether `id` may name an entity: 1 to [`MAX_ID_LEN`] bytes of `A-Z a-z 0-9 . _ ~ @ + -`, not
/// starting with `.`. Ids travel in admin URLs, event keys, file names, headers and log lines, so
/// they carry no separator, space or control byte (no forged log line, no `../`).
pub fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~@+-".contains(&b))
}

const ID_RULE: &str =
    "expected 1 to 128 characters of A-Z a-z 0-9 . _ ~ @ + - (not starting with `.`)";

fn entity_id(value: &str, path: String, problems: &mut Problems) {
    if !id_ok(value) {
        problems.push(path, ID_RULE);
    }
}

/// A path written upstream (a backend `root`, a route prefix, a health-check path) must already
/// be in the canonical form requests are compared in ([`crate::canon::canonical_path`]): no dot
/// segments, no `//`, no `?`, `#`, space or control byte, valid upper-case escapes.
pub fn canonical_path_problem(p: &str) -> Option<String> {
    let mut canonical = String::new();
    match crate::canon::canonical_path(p, crate::canon::PathPolicy::STRICT, &mut canonical) {
        Err(crate::canon::PathError::NotAbsolute) => {
            Some("expected a path starting with `/`".to_owned())
        }
        Err(e) => Some(format!("expected a path without {e}")),
        Ok(()) if p.contains('?') => Some("expected a path without `?` (no query)".to_owned()),
        Ok(()) if canonical != p => Some(format!(
            "expected a canonical path (`{canonical}`, without dot segments, `//` or needless escapes)"
        )),
        Ok(()) => None,
    }
}

fn header_value_ok(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Whether `name` may be written as a header field name: an RFC 9110 token.
pub fn field_name_ok(name: &str) -> bool {
    method_ok(name)
}

/// Whether `value` may be written as a header field value: visible ASCII, spaces and tabs, no
/// leading or trailing whitespace (so it cannot end a line or start a new field).
pub fn field_value_ok(value: &str) -> bool {
    header_value_ok(value) && !value.starts_with([' ', '\t']) && !value.ends_with([' ', '\t'])
}

/// Checks the `include`/`exclude` regexes of a plugin and the config of the plugins whose config
/// Tollgate reads when the flow is built, so that a bad one is a 400 with its path rather than a
/// snapshot that does not build.
pub fn validate_plugin(
    plugin: &crate::entity::PluginInstance,
    path: &str,
    problems: &mut Problems,
) {
    for (field, list) in [("include", &plugin.include), ("exclude", &plugin.exclude)] {
        for (i, pattern) in list.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&format!("^(?:{pattern})$")) {
                let line = e.to_string();
                let line = line.lines().last().unwrap_or("invalid regex").trim();
                problems.push(
                    index(&join(path, field), i),
                    format!("invalid regex: {line}"),
                );
            }
        }
    }
    use crate::entity::PluginKind;
    let config_at = join(path, "config");
    let list_of_strings = |field: &str, problems: &mut Problems| -> Vec<String> {
        match plugin.config.get(field) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) if items.iter().all(|v| v.is_string()) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                problems.push(join(&config_at, field), "expected an array of strings");
                Vec::new()
            }
        }
    };
    match PluginKind::from_id(&plugin.plugin) {
        Some(PluginKind::HasClientCertMatching) => {
            for field in ["serial_numbers", "subject_dns", "issuer_dns"] {
                list_of_strings(field, problems);
            }
            for field in ["regex_subject_dns", "regex_issuer_dns"] {
                for (i, pattern) in list_of_strings(field, problems).iter().enumerate() {
                    if regex::Regex::new(&format!("^(?:{pattern})$")).is_err() {
                        problems.push(index(&join(&config_at, field), i), "invalid regex");
                    }
                }
            }
        }
        Some(PluginKind::ClientCertChainHeader) => {
            for flag in ["send_pem", "send_dns", "send_chain"] {
                if plugin
                    .config
                    .get(flag)
                    .is_some_and(|v| !v.is_boolean() && !v.is_null())
                {
                    problems.push(join(&config_at, flag), "expected a boolean");
                }
            }
            for field in ["pem_header_name", "dns_header_name", "chain_header_name"] {
                match plugin.config.get(field) {
                    None | Some(serde_json::Value::Null) => {}
                    Some(serde_json::Value::String(n)) if field_name_ok(n) => {}
                    Some(_) => problems.push(join(&config_at, field), "expected a header name"),
                }
            }
        }
        _ => {}
    }
    if matches!(
        PluginKind::from_id(&plugin.plugin),
        Some(PluginKind::AdditionalHeadersIn | PluginKind::AdditionalHeadersOut)
    ) {
        let at = join(&join(path, "config"), "headers");
        match plugin.config.get("headers") {
            None => {}
            Some(serde_json::Value::Object(map)) => {
                for (name, value) in map {
                    let ok = value.as_str().is_some_and(|v| {
                        field_name_ok(name) && field_value_ok(v) && !v.contains("${")
                    });
                    if !ok {
                        problems.push(
                            join(&at, name),
                            "expected a field name (token) and a string value without control \
                             bytes or expressions (`${…}` is not supported)",
                        );
                    }
                }
            }
            Some(_) => problems.push(at, "expected an object of field names to values"),
        }
    }
}

fn method_ok(method: &str) -> bool {
    !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Validate for ApiKey {
    fn validate(&self, path: &str, problems: &mut Problems) {
        if !id_ok(&self.client_id) {
            problems.push(join(path, "clientId"), ID_RULE);
        }
        if self.client_secret.is_empty() {
            problems.push(join(path, "clientSecret"), "expected a non-empty string");
        } else if !header_value_ok(self.client_secret.expose()) {
            // Never echo the secret itself.
            problems.push(
                join(path, "clientSecret"),
                "must contain only printable ASCII characters",
            );
        }
        for (i, entity) in self.authorized_entities.iter().enumerate() {
            if !id_ok(entity) {
                problems.push(index(&join(path, "authorizedEntities"), i), ID_RULE);
            }
        }
        let rotation = join(path, "rotation");
        if self.rotation.enabled {
            if self.rotation.rotation_every == 0 {
                problems.push(
                    join(&rotation, "rotationEvery"),
                    "expected an integer ≥ 1 (hours)",
                );
            }
            if self.rotation.grace_period > self.rotation.rotation_every {
                problems.push(
                    join(&rotation, "gracePeriod"),
                    format!(
                        "must not exceed rotationEvery ({} h), got {} h",
                        self.rotation.rotation_every, self.rotation.grace_period
                    ),
                );
            }
        }
        if let Some(next) = &self.rotation.next_secret {
            if next.is_empty() || !header_value_ok(next.expose()) {
                problems.push(
                    join(&rotation, "nextSecret"),
                    "expected a non-empty string of printable ASCII characters",
                );
            }
        }
        let restrictions = join(path, "restrictions");
        for (field, list) in [
            ("allowed", &self.restrictions.allowed),
            ("forbidden", &self.restrictions.forbidden),
            ("notFound", &self.restrictions.not_found),
        ] {
            validate_restrictions(list, &join(&restrictions, field), problems);
        }
    }
}

/// Checks restriction entries: a method token or `*`, and a path regex that compiles.
pub fn validate_restrictions(list: &[Restriction], path: &str, problems: &mut Problems) {
    for (i, r) in list.iter().enumerate() {
        let at = index(path, i);
        if r.method != "*" && !method_ok(&r.method) {
            problems.push(join(&at, "method"), "expected an HTTP method or \"*\"");
        }
        if let Err(e) = regex::Regex::new(&format!("^(?:{})$", r.path)) {
            let first = e.to_string();
            let line = first
                .lines()
                .last()
                .unwrap_or("invalid regex")
                .trim()
                .to_owned();
            problems.push(join(&at, "path"), format!("invalid regex: {line}"));
        }
    }
}

impl Validate for Route {
    fn validate(&self, path: &str, problems: &mut Problems) {
        entity_id(&self.id, join(path, "id"), problems);
        self.frontend.validate(&join(path, "frontend"), problems);
        match (&self.backend, &self.backend_ref) {
            (None, None) => problems.push(
                path.to_owned(),
                "expected `backend` (inline targets) or `backend_ref` (a stored backend id)",
            ),
            (_, Some(r)) if r.trim().is_empty() => {
                problems.push(join(path, "backend_ref"), "expected a non-empty backend id");
            }
            (Some(b), None) => b.validate(&join(path, "backend"), problems),
            _ => {}
        }
        if self.max_body_bytes == Some(0) {
            problems.push(join(path, "max_body_bytes"), "expected an integer ≥ 1");
        }
        for (i, plugin) in self.plugins.iter().enumerate() {
            let at = index(&join(path, "plugins"), i);
            non_blank(&plugin.plugin, join(&at, "plugin"), problems);
            validate_plugin(plugin, &at, problems);
        }
    }
}

/// Checks one `frontend.domains` entry: `host` or `host/path`, where the host is a DNS name, an
/// IPv4 address, `*.suffix` or `*`; no port, no scheme.
pub fn domain_problem(domain: &str) -> Option<String> {
    let (host, path) = match domain.find('/') {
        Some(i) => (domain.get(..i).unwrap_or(""), domain.get(i..).unwrap_or("")),
        None => (domain, ""),
    };
    if host.is_empty() {
        return Some("expected `host` or `host/path`, the host is empty".to_owned());
    }
    if domain.contains("://") {
        return Some("expected `host` or `host/path`, without a scheme".to_owned());
    }
    if host.contains(':') {
        return Some("a port is not allowed in a domain (routes match any listener port)".into());
    }
    let name = match host.strip_prefix("*.") {
        Some(rest) => rest,
        None if host == "*" => "",
        None => host,
    };
    if name.contains('*') {
        return Some("`*` is only allowed as the first label (`*.example.com`) or alone".into());
    }
    let host_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) || name.is_empty();
    if !host_ok || host.len() > 253 {
        return Some(format!("invalid host name `{host}`"));
    }
    if path.is_empty() {
        return None;
    }
    canonical_path_problem(path).map(|p| format!("the path: {p}"))
}

impl Validate for Frontend {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let domains = join(path, "domains");
        if self.domains.is_empty() {
            problems.push(domains.clone(), "expected at least one domain");
        }
        for (i, d) in self.domains.iter().enumerate() {
            if let Some(message) = domain_problem(d) {
                problems.push(index(&domains, i), message);
            }
        }
        for (i, m) in self.methods.iter().enumerate() {
            if !method_ok(m) {
                problems.push(index(&join(path, "methods"), i), "expected an HTTP method");
            }
        }
        for (name, value) in &self.headers {
            if !method_ok(name) || !header_value_ok(value) {
                problems.push(
                    join(&join(path, "headers"), name),
                    "expected a header name and a printable value",
                );
            }
        }
        if !self.cookies.is_empty() {
            problems.push(
                join(path, "cookies"),
                "cookie matching is not supported by Tollgate",
            );
        }
    }
}

impl Validate for Backend {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let targets = join(path, "targets");
        match &self.mock {
            None if self.targets.is_empty() => {
                problems.push(
                    targets.clone(),
                    "expected at least one target (or a `mock`)",
                );
            }
            Some(_) if !self.targets.is_empty() => {
                problems.push(join(path, "mock"), "a mock backend has no targets");
            }
            Some(m) => {
                let at = join(path, "mock");
                if !(200..=599).contains(&m.status) {
                    problems.push(
                        join(&at, "status"),
                        format!("expected 200..=599, got {}", m.status),
                    );
                }
                for (name, value) in &m.headers {
                    if !field_name_ok(name) || !field_value_ok(value) {
                        problems.push(
                            join(&join(&at, "headers"), name),
                            "expected a header name and a printable value",
                        );
                    }
                    if name.eq_ignore_ascii_case("content-length")
                        || name.eq_ignore_ascii_case("transfer-encoding")
                        || name.eq_ignore_ascii_case("connection")
                    {
                        problems.push(
                            join(&join(&at, "headers"), name),
                            "set by the gateway, not allowed in a mock",
                        );
                    }
                }
            }
            None => {}
        }
        for (i, t) in self.targets.iter().enumerate() {
            let at = index(&targets, i);
            let host_ok = !t.hostname.is_empty()
                && t.hostname.len() <= 253
                && t.hostname
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
            if !host_ok {
                problems.push(
                    join(&at, "hostname"),
                    "expected a host name or an IP address",
                );
            }
            if !t.id.is_empty() && !id_ok(&t.id) {
                problems.push(join(&at, "id"), ID_RULE);
            }
            if t.port == 0 {
                problems.push(join(&at, "port"), "expected 1..=65535, got 0");
            }
            if t.weight == 0 {
                problems.push(join(&at, "weight"), "expected an integer ≥ 1");
            }
            if t.protocol != "HTTP/1.1" && t.protocol != "HTTP/1.0" {
                problems.push(
                    join(&at, "protocol"),
                    format!(
                        "unsupported upstream protocol `{}` (HTTP/1.1 only)",
                        t.protocol
                    ),
                );
            }
            if let Some(ip) = &t.ip_address {
                if ip.parse::<std::net::IpAddr>().is_err() {
                    problems.push(join(&at, "ip_address"), "expected an IP address");
                }
            }
            if t.tls_config.as_ref().is_some_and(|c| c.enabled) && !t.tls {
                problems.push(
                    join(&join(&at, "tls_config"), "enabled"),
                    "TLS settings of a plaintext target; set the target's `tls: true`",
                );
            }
        }
        for (at, id) in self.certificate_refs() {
            entity_id(id, join(path, &at), problems);
        }
        if let Some(problem) = canonical_path_problem(&self.root) {
            problems.push(join(path, "root"), problem);
        }
        if self.rewrite {
            problems.push(
                join(path, "rewrite"),
                "path rewriting is not supported by Tollgate",
            );
        }
        if self.load_balancing == LoadBalancing::Unsupported {
            problems.push(
                join(&join(path, "load_balancing"), "type"),
                "unsupported; expected RoundRobin, Random, PowerOfTwoRandomChoices, \
                 LeastConnections, IpAddressHash, HeaderHash or NaiveFailover",
            );
        }
        let client = join(path, "client");
        if self.client.max_connections == 0 {
            problems.push(join(&client, "max_connections"), "expected an integer ≥ 1");
        }
        for (field, v) in [
            ("connection_timeout", self.client.connection_timeout),
            ("call_timeout", self.client.call_timeout),
            ("idle_timeout", self.client.idle_timeout),
            ("global_timeout", self.client.global_timeout),
        ] {
            if v == 0 {
                problems.push(join(&client, field), "expected a duration ≥ 1 ms");
            }
        }
        if let Some(hc) = &self.health_check {
            let at = join(path, "health_check");
            if hc.enabled {
                if !hc.url.starts_with('/') && !hc.url.starts_with("http") {
                    problems.push(join(&at, "url"), "expected a path or an http(s) URL");
                } else if hc.url.bytes().any(|b| !b.is_ascii_graphic() || b == b'#') {
                    // It is written into the probe's request line.
                    problems.push(
                        join(&at, "url"),
                        "expected visible ASCII only (no space, control byte or `#`)",
                    );
                }
                if hc.timeout == 0 {
                    problems.push(join(&at, "timeout"), "expected a duration ≥ 1 ms");
                }
                if hc.interval == 0 {
                    problems.push(join(&at, "interval"), "expected a duration ≥ 1 ms");
                }
            }
        }
    }
}

impl Validate for StoredBackend {
    fn validate(&self, path: &str, problems: &mut Problems) {
        entity_id(&self.id, join(path, "id"), problems);
        self.backend.validate(&join(path, "backend"), problems);
    }
}

fn duplicates<'a>(
    ids: impl Iterator<Item = &'a str>,
    path: &str,
    field: &str,
    problems: &mut Problems,
) {
    let mut seen = std::collections::HashSet::new();
    for (i, id) in ids.enumerate() {
        if !seen.insert(id) {
            problems.push(join(&index(path, i), field), format!("duplicate id `{id}`"));
        }
    }
}

impl Validate for Api {
    fn validate(&self, path: &str, problems: &mut Problems) {
        entity_id(&self.id, join(path, "id"), problems);
        let routes = join(path, "routes");
        let backends = join(path, "backends");
        let flows = join(path, "flows");
        let consumers = join(path, "consumers");
        duplicates(
            self.routes.iter().map(|r| r.id.as_str()),
            &routes,
            "id",
            problems,
        );
        duplicates(
            self.backends.iter().map(|b| b.id.as_str()),
            &backends,
            "id",
            problems,
        );
        duplicates(
            self.flows.iter().map(|f| f.id.as_str()),
            &flows,
            "id",
            problems,
        );
        duplicates(
            self.consumers.iter().map(|c| c.id.as_str()),
            &consumers,
            "id",
            problems,
        );
        duplicates(
            self.subscriptions.iter().map(|s| s.id.as_str()),
            &join(path, "subscriptions"),
            "id",
            problems,
        );
        for (i, r) in self.routes.iter().enumerate() {
            let at = index(&routes, i);
            entity_id(&r.id, join(&at, "id"), problems);
            r.frontend.validate(&join(&at, "frontend"), problems);
            if let Some(flow) = &r.flow_ref {
                if !self.flows.iter().any(|f| &f.id == flow) {
                    problems.push(
                        join(&at, "flow_ref"),
                        format!("no flow `{flow}` in this API"),
                    );
                }
            }
        }
        for (i, f) in self.flows.iter().enumerate() {
            let at = index(&flows, i);
            entity_id(&f.id, join(&at, "id"), problems);
            for (j, plugin) in f.plugins.iter().enumerate() {
                validate_plugin(plugin, &index(&join(&at, "plugins"), j), problems);
            }
        }
        for (i, b) in self.backends.iter().enumerate() {
            let at = index(&backends, i);
            entity_id(&b.id, join(&at, "id"), problems);
            b.backend.validate(&join(&at, "backend"), problems);
        }
        for (i, c) in self.consumers.iter().enumerate() {
            validate_consumer(c, &index(&consumers, i), problems);
        }
        for (i, s) in self.subscriptions.iter().enumerate() {
            let at = index(&join(path, "subscriptions"), i);
            entity_id(&s.id, join(&at, "id"), problems);
            match self.consumers.iter().find(|c| c.id == s.consumer_ref) {
                None => problems.push(
                    join(&at, "consumer_ref"),
                    format!("no consumer `{}` in this API", s.consumer_ref),
                ),
                Some(c) if c.kind == ConsumerKind::Keyless => problems.push(
                    join(&at, "consumer_ref"),
                    format!(
                        "consumer `{}` is keyless: it identifies anonymous calls and has no \
                         subscriptions",
                        c.id
                    ),
                ),
                Some(c) => {
                    if !c.kind.issues_keys() && !s.apikeys.is_empty() {
                        problems.push(
                            join(&at, "apikeys"),
                            format!(
                                "consumer `{}` issues no API key (it is {})",
                                c.id,
                                c.kind.as_str()
                            ),
                        );
                    }
                    if c.kind != ConsumerKind::Jwt && s.subject.is_some() {
                        problems.push(
                            join(&at, "subject"),
                            format!(
                                "only subscriptions to a jwt consumer have a subject (`{}` is {})",
                                c.id,
                                c.kind.as_str()
                            ),
                        );
                    }
                    if c.kind != ConsumerKind::Mtls
                        && (s.fingerprint.is_some() || s.certificate.is_some())
                    {
                        let field = if s.fingerprint.is_some() {
                            "fingerprint"
                        } else {
                            "certificate"
                        };
                        problems.push(
                            join(&at, field),
                            format!("only subscriptions to an mtls consumer have a certificate (`{}` is {})", c.id, c.kind.as_str()),
                        );
                    }
                }
            }
            if let Some(subject) = &s.subject {
                if subject.is_empty()
                    || subject.len() > 1024
                    || subject.chars().any(char::is_control)
                {
                    problems.push(
                        join(&at, "subject"),
                        "expected 1 to 1024 characters without control characters",
                    );
                }
            }
            if let Some(fp) = &s.fingerprint {
                if !fingerprint_ok(fp) {
                    problems.push(
                        join(&at, "fingerprint"),
                        "expected a SHA-256 fingerprint: 64 hex digits (pairs may be separated by `:`)",
                    );
                }
            }
            for (j, k) in s.apikeys.iter().enumerate() {
                if !id_ok(k) {
                    problems.push(index(&join(&at, "apikeys"), j), ID_RULE);
                }
            }
        }
        // A subject names one subscription of its consumer; a certificate one of its API.
        let mut subjects = std::collections::HashSet::new();
        let mut fingerprints = std::collections::HashSet::new();
        for (i, s) in self.subscriptions.iter().enumerate() {
            let at = index(&join(path, "subscriptions"), i);
            let consumer = self.consumers.iter().find(|c| c.id == s.consumer_ref);
            if consumer.is_some_and(|c| c.kind == ConsumerKind::Jwt) {
                let subject = s.subject.as_deref().unwrap_or(&s.id);
                if !subjects.insert((s.consumer_ref.as_str(), subject)) {
                    problems.push(
                        join(&at, "subject"),
                        format!(
                            "subject {subject:?} already names another subscription of consumer `{}`",
                            s.consumer_ref
                        ),
                    );
                }
            }
            if let Some(fp) = s.fingerprint.as_deref().and_then(normalise_fingerprint) {
                if !fingerprints.insert(fp) {
                    problems.push(
                        join(&at, "fingerprint"),
                        "this certificate already names another subscription of this API",
                    );
                }
            }
        }
    }
}

/// Checks one consumer of an API: its id and its config against its kind (strictly: an unknown
/// field is a problem; keys, algorithms and regexes are read as the request path will).
pub fn validate_consumer(c: &Consumer, path: &str, problems: &mut Problems) {
    entity_id(&c.id, join(path, "id"), problems);
    let config = join(path, "config");
    match c.kind {
        ConsumerKind::Keyless => {
            let empty = match &c.config {
                serde_json::Value::Null => true,
                serde_json::Value::Object(map) => map.is_empty(),
                _ => false,
            };
            if !empty {
                problems.push(config, "a keyless consumer takes no config (expected {})");
            }
        }
        ConsumerKind::Apikey => {
            let value = if c.config.is_null() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                c.config.clone()
            };
            let mut ignored = Vec::new();
            if let Some(cfg) =
                from_value::<ApikeyConsumerConfig>(&value, &config, true, problems, &mut ignored)
            {
                let template = join(&config, "template");
                let t = &cfg.template;
                if t.rotation.next_secret.is_some() {
                    problems.push(
                        join(&join(&template, "rotation"), "nextSecret"),
                        "a template cannot carry a secret",
                    );
                }
                if t.rotation.enabled {
                    if t.rotation.rotation_every == 0 {
                        problems.push(
                            join(&join(&template, "rotation"), "rotationEvery"),
                            "expected an integer ≥ 1 (hours)",
                        );
                    }
                    if t.rotation.grace_period > t.rotation.rotation_every {
                        problems.push(
                            join(&join(&template, "rotation"), "gracePeriod"),
                            "must not exceed rotationEvery",
                        );
                    }
                }
                for reserved in ["subscription", "consumer"] {
                    if t.metadata.contains_key(reserved) {
                        problems.push(
                            join(&join(&template, "metadata"), reserved),
                            "set by the gateway on every issued key",
                        );
                    }
                }
                let restrictions = join(&template, "restrictions");
                for (field, list) in [
                    ("allowed", &t.restrictions.allowed),
                    ("forbidden", &t.restrictions.forbidden),
                    ("notFound", &t.restrictions.not_found),
                ] {
                    validate_restrictions(list, &join(&restrictions, field), problems);
                }
            }
        }
        ConsumerKind::Jwt if unset(&c.config) => {
            // Not configured yet (an Otoroshi import): it may wait in staging, never serve.
            if c.status.serves() {
                problems.push(
                    join(&config, "verifier"),
                    "a jwt consumer needs a verifier before it is published or deprecated",
                );
            }
        }
        ConsumerKind::Jwt => {
            let mut ignored = Vec::new();
            if let Some(cfg) = from_value::<crate::entity::JwtConsumerConfig>(
                &c.config,
                &config,
                true,
                problems,
                &mut ignored,
            ) {
                validate_jwt_config(&cfg, &config, problems);
            }
        }
        ConsumerKind::Oauth => {
            let value = if c.config.is_null() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                c.config.clone()
            };
            let mut ignored = Vec::new();
            if let Some(cfg) = from_value::<crate::entity::OauthConsumerConfig>(
                &value,
                &config,
                true,
                problems,
                &mut ignored,
            ) {
                if !(60..=86_400).contains(&cfg.token_ttl_s) {
                    problems.push(
                        join(&config, "token_ttl_s"),
                        format!("expected 60..=86400 (seconds), got {}", cfg.token_ttl_s),
                    );
                }
                if cfg.alg == "RS256" {
                    problems.push(
                        join(&config, "alg"),
                        "RS256 access tokens are not implemented: the cluster's token key is \
                         ES256 (use \"ES256\")",
                    );
                } else if cfg.alg != "ES256" {
                    problems.push(
                        join(&config, "alg"),
                        format!("expected \"ES256\", got {:?}", cfg.alg),
                    );
                }
            }
        }
        ConsumerKind::Mtls => {
            let value = if c.config.is_null() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                c.config.clone()
            };
            let mut ignored = Vec::new();
            if let Some(cfg) = from_value::<crate::entity::MtlsConsumerConfig>(
                &value,
                &config,
                true,
                problems,
                &mut ignored,
            ) {
                for (field, list) in [
                    ("regex_subject_dns", &cfg.regex_subject_dns),
                    ("regex_issuer_dns", &cfg.regex_issuer_dns),
                ] {
                    for (i, p) in list.iter().enumerate() {
                        if let Err(e) = regex::Regex::new(&format!("^(?:{p})$")) {
                            problems.push(
                                index(&join(&config, field), i),
                                format!("invalid regex: {e}"),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The rules of a `jwt` consumer's config: one known algorithm; exactly one key source, of the
/// algorithm's family (an HMAC secret of at least the hash's size; a public key or a JWK set
/// whose every key fits the algorithm); a usable subject claim and leeway.
fn validate_jwt_config(
    cfg: &crate::entity::JwtConsumerConfig,
    path: &str,
    problems: &mut Problems,
) {
    use crate::jose::{Alg, Family};
    let verifier = join(path, "verifier");
    let v = &cfg.verifier;
    let Some(alg) = Alg::from_name(&v.alg) else {
        problems.push(
            join(&verifier, "alg"),
            format!(
                "expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, \
                 ES256, ES384, EdDSA (`none` is never accepted), got {:?}",
                v.alg
            ),
        );
        return;
    };
    let sources = [v.secret.is_some(), v.public_key.is_some(), v.jwks.is_some()]
        .into_iter()
        .filter(|s| *s)
        .count();
    if sources != 1 {
        problems.push(
            verifier.clone(),
            "expected exactly one of `secret` (HS*), `public_key` (PEM) or `jwks` (a JWK set)",
        );
        return;
    }
    let family = alg.family();
    if let Some(secret) = &v.secret {
        if family != Family::Hmac {
            problems.push(
                join(&verifier, "secret"),
                format!(
                    "{} takes {}, not a secret (a token \"signed\" with a public key as an HMAC \
                     secret is exactly what this refuses)",
                    alg.name(),
                    family.describe()
                ),
            );
        } else if secret.expose().len() < alg.min_secret_len() {
            problems.push(
                join(&verifier, "secret"),
                format!(
                    "{} needs a secret of at least {} bytes (RFC 7518 §3.2)",
                    alg.name(),
                    alg.min_secret_len()
                ),
            );
        }
    }
    if family == Family::Hmac && v.secret.is_none() {
        problems.push(
            join(&verifier, "secret"),
            format!("{} verifies with a shared `secret`", alg.name()),
        );
        return;
    }
    if let Some(pem) = &v.public_key {
        match crate::jose::public_key_pem(pem) {
            Ok(key) if key.family() != family => problems.push(
                join(&verifier, "public_key"),
                format!(
                    "{} cannot verify {} (it takes {})",
                    key.family().describe(),
                    alg.name(),
                    family.describe()
                ),
            ),
            Ok(_) => {}
            Err(e) => problems.push(join(&verifier, "public_key"), e.to_string()),
        }
    }
    if let Some(set) = &v.jwks {
        let at = join(&verifier, "jwks");
        match set.get("keys").and_then(serde_json::Value::as_array) {
            None => problems.push(at, "expected a JWK set: {\"keys\": [...]}"),
            Some(keys) if keys.is_empty() => problems.push(join(&at, "keys"), "no key"),
            Some(keys) => {
                let mut kids = std::collections::HashSet::new();
                for (i, k) in keys.iter().enumerate() {
                    let kat = index(&join(&at, "keys"), i);
                    match crate::jose::jwk(k) {
                        Err((member, e)) => problems.push(join(&kat, &member), e),
                        Ok(jwk) => {
                            if jwk.key.family() != family {
                                problems.push(
                                    kat.clone(),
                                    format!(
                                        "{} cannot verify {}",
                                        jwk.key.family().describe(),
                                        alg.name()
                                    ),
                                );
                            }
                            if jwk.alg.as_deref().is_some_and(|a| a != alg.name()) {
                                problems.push(
                                    join(&kat, "alg"),
                                    format!("this verifier accepts {} only", alg.name()),
                                );
                            }
                            match jwk.kid {
                                Some(kid) if !kids.insert(kid.clone()) => problems
                                    .push(join(&kat, "kid"), format!("duplicate kid {kid:?}")),
                                Some(_) => {}
                                None if keys.len() > 1 => problems.push(
                                    join(&kat, "kid"),
                                    "a set of several keys needs a `kid` on each",
                                ),
                                None => {}
                            }
                        }
                    }
                }
            }
        }
    }
    for (field, value) in [("issuer", &cfg.issuer), ("audience", &cfg.audience)] {
        if value.as_deref().is_some_and(|s| s.trim().is_empty()) {
            problems.push(
                join(path, field),
                "expected a non-empty string (or no field)",
            );
        }
    }
    if cfg.leeway_s > 300 {
        problems.push(
            join(path, "leeway_s"),
            format!("expected 0..=300 (seconds), got {}", cfg.leeway_s),
        );
    }
    if cfg.subject_claim.trim().is_empty()
        || ["exp", "nbf", "iat"].contains(&cfg.subject_claim.as_str())
    {
        problems.push(
            join(path, "subject_claim"),
            "expected the name of a string claim (not exp, nbf or iat)",
        );
    }
}

/// Whether a consumer's config is absent (`null` or `{}`).
fn unset(config: &serde_json::Value) -> bool {
    match config {
        serde_json::Value::Null => true,
        serde_json::Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// Whether `fp` is a SHA-256 fingerprint: 64 hex digits, in either case, optionally in pairs
/// separated by `:`.
pub fn fingerprint_ok(fp: &str) -> bool {
    normalise_fingerprint(fp).is_some()
}

/// A SHA-256 fingerprint as 64 lower-case hex digits (the separators `:` removed), or `None`
/// when it is not one.
pub fn normalise_fingerprint(fp: &str) -> Option<String> {
    let hex: String = fp
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

impl Validate for Certificate {
    /// Checks the id, that `chain` is PEM certificates that parse as X.509, that `privateKey`
    /// (required unless `ca`) is one unencrypted PEM key that belongs to the leaf, and refuses
    /// what Tollgate cannot honour (`password`, `autoRenew`, `letsEncrypt`, `exposed`). Dates
    /// are not checked: an expired certificate is valid input (reported as a warning where a
    /// clock is known).
    fn validate(&self, path: &str, problems: &mut Problems) {
        use crate::x509;
        entity_id(&self.id, join(path, "id"), problems);
        let chain_at = join(path, "chain");
        let leaf = match x509::parse_pem_chain(&self.chain) {
            Ok(chain) => {
                let mut bad = false;
                for (i, der) in chain.iter().enumerate() {
                    if let Err(e) = x509::inspect_at(der, i) {
                        problems.push(chain_at.clone(), e.to_string());
                        bad = true;
                    }
                }
                chain.into_iter().next().filter(|_| !bad)
            }
            Err(e) => {
                problems.push(chain_at, e.to_string());
                None
            }
        };
        let key_at = join(path, "privateKey");
        let password_set = self.password.as_ref().is_some_and(|p| !p.is_empty());
        if password_set {
            problems.push(
                join(path, "password"),
                "encrypted private keys are not supported; decrypt it first",
            );
        }
        match self.key_pem() {
            None if !self.ca => problems.push(
                key_at,
                "expected a PEM private key: only a CA certificate (`ca: true`) may come \
                 without one",
            ),
            None => {}
            Some(_) if password_set => {}
            Some(pem) => match x509::parse_pem_key(pem) {
                Err(e) => problems.push(key_at, e.to_string()),
                Ok(key) => {
                    if let Some(leaf) = &leaf {
                        if let Err(e) = x509::keys_match(leaf, &key) {
                            problems.push(key_at, e.to_string());
                        }
                    }
                }
            },
        }
        if let Some(ca_ref) = &self.ca_ref {
            if !ca_ref.trim().is_empty() {
                entity_id(ca_ref, join(path, "caRef"), problems);
                if *ca_ref == self.id {
                    problems.push(join(path, "caRef"), "a certificate cannot be its own CA");
                }
            }
        }
        for (field, why) in crate::entity::unsupported_flags(self) {
            problems.push(join(path, field), why);
        }
    }
}

/// The enabled plugins of a chain that Tollgate does not implement, each with the path of its
/// `plugin` field and a message naming it (`plugins[2].plugin: unknown plugin `…``).
pub fn unknown_plugins(plugins: &[PluginInstance], path: &str) -> Vec<(String, String)> {
    plugins
        .iter()
        .enumerate()
        .filter(|(_, p)| p.enabled && crate::entity::PluginKind::from_id(&p.plugin).is_none())
        .map(|(i, p)| {
            (
                join(&index(&join(path, "plugins"), i), "plugin"),
                format!("unknown plugin `{}`", p.plugin),
            )
        })
        .collect()
}

/// [`unknown_plugins`] of a route and of every flow of an API, as problems: what the admin API
/// and strict documents refuse (an Otoroshi import disables the routes instead).
pub fn refuse_unknown_plugins(entity: Plugged<'_>, path: &str, problems: &mut Problems) {
    let found = match entity {
        Plugged::Route(r) => unknown_plugins(&r.plugins, path),
        Plugged::Api(a) => a
            .flows
            .iter()
            .enumerate()
            .flat_map(|(i, f)| unknown_plugins(&f.plugins, &index(&join(path, "flows"), i)))
            .collect(),
    };
    for (at, message) in found {
        problems.push(at, message);
    }
}

/// An entity with plugin chains.
#[derive(Debug, Clone, Copy)]
pub enum Plugged<'a> {
    /// A route's plugins.
    Route(&'a Route),
    /// An API's flows.
    Api(&'a Api),
}

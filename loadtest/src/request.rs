//! Targets and requests: URL parsing (http:// only), address resolution done once before the
//! run, and requests serialised once into the exact bytes each connection writes.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::Error;

#[cfg(test)]
mod tests;

/// Where the load goes: one resolved address and the `Host` header to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The resolved address (resolved once, before the run).
    pub addr: SocketAddr,
    /// The `Host` header value (`host[:port]` as written in the URL).
    pub host: String,
    /// The path and query of the URL (`/` when absent).
    pub path: String,
    /// The URL as given, for reports.
    pub url: String,
}

impl Target {
    /// Parses `http://host[:port][/path][?query]` and resolves the host.
    ///
    /// # Errors
    /// [`Error::Url`] for another scheme or a malformed URL, [`Error::Resolve`] when the host does
    /// not resolve.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(bad("https is not supported yet (plain http:// only)"));
        } else {
            return Err(bad("expected http://host[:port][/path]"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("missing host (or userinfo, which is not supported)"));
        }
        let has_port = if authority.starts_with('[') {
            authority.contains("]:")
        } else {
            authority.contains(':')
        };
        let host_port = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = host_port
            .to_socket_addrs()
            .map_err(|source| Error::Resolve {
                host: host_port.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| Error::Resolve {
                host: host_port.clone(),
                source: std::io::Error::other("no address"),
            })?;
        Ok(Self {
            addr,
            host: authority.to_string(),
            path,
            url: url.to_string(),
        })
    }
}

/// One kind of request in a mix, before serialisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// Relative weight in the mix.
    pub weight: u32,
    /// HTTP method.
    pub method: String,
    /// Path and query; `None` uses the URL's.
    pub path: Option<String>,
    /// Extra headers, in order.
    pub headers: Vec<(String, String)>,
    /// Request body (sent with a `Content-Length`).
    pub body: Vec<u8>,
}

impl RequestSpec {
    /// A plain `GET` of the URL's path.
    #[must_use]
    pub fn get() -> Self {
        Self {
            weight: 1,
            method: "GET".into(),
            path: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// A group of API keys sent in one header, picked with a weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGroup {
    /// A label (`valid`, `invalid`, `over-quota`…), for reports.
    pub name: String,
    /// Relative weight among the groups.
    pub weight: u32,
    /// Header values, one per key.
    pub keys: Vec<String>,
}

/// API keys to spread requests over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPool {
    /// The header carrying the key (e.g. `Otoroshi-Client-Id`).
    pub header: String,
    /// The groups; a request picks a group by weight, then a key in it uniformly.
    pub groups: Vec<KeyGroup>,
}

/// One request, serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialised {
    /// The exact bytes to write.
    pub bytes: Vec<u8>,
    /// Whether it is a `HEAD` (its response has no body).
    pub head: bool,
}

/// Every request a run may send, serialised once, with the weights to pick among them.
///
/// Requests are laid out as `mix entry × key`: index `entry * keys + key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSet {
    /// All serialised requests.
    pub requests: Vec<Serialised>,
    /// Cumulative weights of the mix entries.
    pub entry_cumulative: Vec<u64>,
    /// Cumulative weights of the key groups (empty without a key pool).
    pub group_cumulative: Vec<u64>,
    /// Each group's first key index and key count.
    pub group_ranges: Vec<(usize, usize)>,
    /// Keys in all groups (1 without a key pool).
    pub keys_total: usize,
}

impl RequestSet {
    /// Serialises `specs` (× every key of `keys`) for `target`.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty mix, a zero total weight, an empty key group, or a method,
    /// path or header that would not make a valid request.
    pub fn build(
        target: &Target,
        specs: &[RequestSpec],
        keys: Option<&KeyPool>,
    ) -> Result<Self, Error> {
        if specs.is_empty() {
            return Err(Error::config("requests: the mix is empty"));
        }
        let entry_cumulative = cumulative(specs.iter().map(|s| s.weight))
            .ok_or_else(|| Error::config("requests: the weights add up to 0"))?;
        let mut group_cumulative = Vec::new();
        let mut group_ranges = Vec::new();
        let mut key_values: Vec<Option<&str>> = vec![None];
        if let Some(pool) = keys {
            check_token(&pool.header, "keys.header")?;
            key_values.clear();
            for (i, g) in pool.groups.iter().enumerate() {
                if g.keys.is_empty() {
                    return Err(Error::config(format!(
                        "keys.groups[{i}] ({}): no keys",
                        g.name
                    )));
                }
                for k in &g.keys {
                    check_value(k, &format!("keys.groups[{i}].keys"))?;
                }
                group_ranges.push((key_values.len(), g.keys.len()));
                key_values.extend(g.keys.iter().map(|k| Some(k.as_str())));
            }
            group_cumulative = cumulative(pool.groups.iter().map(|g| g.weight))
                .ok_or_else(|| Error::config("keys.groups: the weights add up to 0"))?;
        }
        let mut requests = Vec::with_capacity(specs.len() * key_values.len());
        for (i, spec) in specs.iter().enumerate() {
            for key in &key_values {
                let key = key.map(|k| (keys.map_or("", |p| p.header.as_str()), k));
                requests.push(serialise(target, spec, key, i)?);
            }
        }
        Ok(Self {
            requests,
            entry_cumulative,
            group_cumulative,
            group_ranges,
            keys_total: key_values.len(),
        })
    }

    /// Whether every pick returns request 0 (no randomness needed).
    #[must_use]
    pub fn is_single(&self) -> bool {
        self.requests.len() == 1
    }

    /// The index of a request picked with the random numbers `r1`, `r2`, `r3`.
    #[must_use]
    pub fn pick(&self, r1: u64, r2: u64, r3: u64) -> usize {
        let entry = pick_weighted(&self.entry_cumulative, r1);
        let key = if self.group_cumulative.is_empty() {
            0
        } else {
            let g = pick_weighted(&self.group_cumulative, r2);
            let (start, len) = self.group_ranges.get(g).copied().unwrap_or((0, 1));
            start + usize::try_from(r3 % len.max(1) as u64).unwrap_or(0)
        };
        entry * self.keys_total + key
    }
}

fn cumulative(weights: impl Iterator<Item = u32>) -> Option<Vec<u64>> {
    let mut total = 0u64;
    let out: Vec<u64> = weights
        .map(|w| {
            total += u64::from(w);
            total
        })
        .collect();
    (total > 0).then_some(out)
}

/// Index of the first cumulative weight above `r mod total`.
fn pick_weighted(cumulative: &[u64], r: u64) -> usize {
    let total = cumulative.last().copied().unwrap_or(1).max(1);
    let x = r % total;
    cumulative.partition_point(|&c| c <= x)
}

fn check_token(text: &str, what: &str) -> Result<(), Error> {
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{what}: `{text}` is not a valid HTTP token"
        )))
    }
}

fn check_value(text: &str, what: &str) -> Result<(), Error> {
    if text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        Err(Error::config(format!(
            "{what}: `{}` contains a line break",
            text.escape_debug()
        )))
    } else {
        Ok(())
    }
}

fn serialise(
    target: &Target,
    spec: &RequestSpec,
    key: Option<(&str, &str)>,
    index: usize,
) -> Result<Serialised, Error> {
    let at = format!("requests[{index}]");
    check_token(&spec.method, &format!("{at}.method"))?;
    let path = spec.path.as_deref().unwrap_or(&target.path);
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Error::config(format!(
            "{at}.path: `{}` must start with / and contain no spaces or control characters",
            path.escape_debug()
        )));
    }
    let mut out = Vec::with_capacity(128 + spec.body.len());
    out.extend_from_slice(spec.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let has = |name: &str| {
        spec.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(target.host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &spec.headers {
        check_token(name, &format!("{at}.headers"))?;
        check_value(value, &format!("{at}.headers.{name}"))?;
        push_header(&mut out, name, value);
    }
    if let Some((name, value)) = key {
        push_header(&mut out, name, value);
    }
    let method_has_body = matches!(spec.method.as_str(), "POST" | "PUT" | "PATCH");
    if (!spec.body.is_empty() || method_has_body) && !has("content-length") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", spec.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&spec.body);
    Ok(Serialised {
        bytes: out,
        head: spec.method.eq_ignore_ascii_case("HEAD"),
    })
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Parses a `Name: value` header argument.
///
/// # Errors
/// [`Error::Config`] when there is no colon or the name is not a token.
pub fn parse_header(text: &str) -> Result<(String, String), Error> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| Error::config(format!("header `{text}`: expected `Name: value`")))?;
    let name = name.trim();
    check_token(name, "header")?;
    let value = value.trim();
    check_value(value, &format!("header {name}"))?;
    Ok((name.to_string(), value.to_string()))
}

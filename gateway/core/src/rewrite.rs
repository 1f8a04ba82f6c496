//! The heads a proxy writes: the upstream request head from the client's, and the client's
//! response head from the upstream's, under one header policy (docs/security.md states it as a
//! table). Sans-IO and allocation-free once the output buffer has grown.
//!
//! Upstream request:
//! - request line: method, backend root + canonical path ([`crate::http::canonical_path`]),
//!   the query as received; always `HTTP/1.1`;
//! - removed: hop-by-hop fields, `Host` (rewritten), `Content-Length` and `Transfer-Encoding`
//!   (re-framed), `Expect` (the gateway answers 100-continue itself), `Forwarded`, `X-Real-IP`,
//!   every `X-Forwarded-*` but `X-Forwarded-For`, the request-id field, the credential fields the
//!   route's consumer reads, and every field an `AdditionalHeadersIn` plugin sets;
//! - `X-Forwarded-For`: the client's values, every field line in order, then the peer address
//!   ([`ForwardedFor::Append`], the default), or the peer address alone
//!   ([`ForwardedFor::Replace`]);
//! - written by the gateway: `Host`, `X-Forwarded-For`, `X-Forwarded-Proto`,
//!   `X-Forwarded-Host`, `X-Real-IP`, the request id, `traceparent` (the client's trace continued
//!   with the gateway's span, or a new trace; `tracestate` passes as sent), the framing,
//!   `AdditionalHeadersIn`, and the
//!   client certificate's fields of `NgClientCertChainHeader` (the client's own fields of those
//!   names are dropped, with or without a certificate).
//!
//! Client response:
//! - removed: hop-by-hop fields, the upstream's request-id field, every field an
//!   `AdditionalHeadersOut` plugin sets, and on keyed routes the quota fields (an upstream cannot
//!   speak for the gateway's quotas);
//! - written by the gateway: the request id, the quota fields, `AdditionalHeadersOut`, the framing
//!   and `Connection`.
//!
//! Request trailers never go upstream (the shell drops the trailer section of chunked request
//! bodies): a trailer could carry any field, `Content-Length` or a credential included, past
//! every rule above. Response trailers reach the client as sent: they carry nothing the upstream
//! could not have put in its head.
//!
//! It must never write a byte the policy does not name, allocate once `out` has grown, or panic.

use std::io::Write as _;
use std::net::IpAddr;

use gateway_model::validate::{field_name_ok, field_value_ok};

use crate::apikey::Extractors;
use crate::flow::{CertHeaderPlugins, ClientCert};
use crate::http::{BodyFraming, Headers, ResponseHead};
use crate::quota::QuotaState;
use crate::respond::reason_phrase;
use crate::trace::TraceContext;

#[cfg(test)]
mod tests;

/// What happens to the client's `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedFor {
    /// Keep the client's values (all field lines, in order) and append the peer address, as
    /// nginx's `$proxy_add_x_forwarded_for` does. Upstreams must trust only the entries added
    /// by proxies they know (the rightmost ones).
    #[default]
    Append,
    /// Drop the client's values: the peer address alone (a gateway at the edge, with no proxy
    /// in front of it).
    Replace,
}

/// The node-wide part of the policy.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPolicy<'p> {
    /// `X-Forwarded-For` handling.
    pub forwarded_for: ForwardedFor,
    /// The request-id field (`X-Request-Id` by default).
    pub request_id_header: &'p str,
}

/// A field a plugin sets (`AdditionalHeadersIn` / `AdditionalHeadersOut`), validated when the
/// flow is built: a token name and a value of visible ASCII, spaces and tabs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedHeader {
    /// Field name.
    pub name: Box<str>,
    /// Field value.
    pub value: Box<str>,
}

impl AddedHeader {
    /// A field, or `None` when the name is not a token or the value has a control byte.
    #[must_use]
    pub fn new(name: &str, value: &str) -> Option<Self> {
        (field_name_ok(name) && field_value_ok(value)).then(|| Self {
            name: name.into(),
            value: value.into(),
        })
    }
}

/// The plugin fields that apply to one request: groups (one per plugin instance) and a bit mask
/// of the selected ones. Borrowed from the flow, never copied.
#[derive(Debug, Clone, Copy)]
pub struct Added<'a> {
    groups: &'a [Box<[AddedHeader]>],
    mask: u64,
}

impl<'a> Added<'a> {
    /// No field.
    pub const NONE: Added<'static> = Added {
        groups: &[],
        mask: 0,
    };

    /// The groups whose bit is set in `mask` (bit `i` for `groups[i]`).
    #[must_use]
    pub fn new(groups: &'a [Box<[AddedHeader]>], mask: u64) -> Self {
        Self { groups, mask }
    }

    /// The selected fields, in group order.
    pub fn iter(self) -> impl Iterator<Item = &'a AddedHeader> {
        let mask = self.mask;
        self.groups
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i < 64 && mask & (1 << i) != 0)
            .flat_map(|(_, g)| g.iter())
    }

    /// Whether `name` is one of the selected fields (case-insensitive).
    #[must_use]
    pub fn sets(self, name: &[u8]) -> bool {
        self.iter()
            .any(|a| name.eq_ignore_ascii_case(a.name.as_bytes()))
    }
}

/// A request id: `<node>-<core>-<n>`.
#[derive(Debug, Clone, Copy)]
pub struct RequestId<'a> {
    /// Node id.
    pub node: &'a str,
    /// Core number.
    pub core: usize,
    /// Per-core counter.
    pub n: u64,
}

/// What the upstream request is made of, besides the client's fields.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamRequest<'a> {
    /// The method, as sent.
    pub method: &'a str,
    /// The backend root without its trailing `/` (empty for `/`).
    pub root: &'a str,
    /// The canonical path to append to the root (after `strip_path`).
    pub path: &'a str,
    /// The query as received, without `?`.
    pub query: Option<&'a str>,
    /// The `Host` to send (the target's, or the client's with `keep_host`).
    pub host: &'a [u8],
    /// The client's authority, for `X-Forwarded-Host`.
    pub client_host: &'a [u8],
    /// `http` or `https`: how the client reached the gateway.
    pub proto: &'static str,
    /// The client's address.
    pub peer: IpAddr,
    /// The request id.
    pub request_id: RequestId<'a>,
    /// How the body is framed upstream.
    pub framing: BodyFraming,
    /// The credential fields of the route's consumer (wiped).
    pub credentials: Option<&'a Extractors>,
    /// `AdditionalHeadersIn`.
    pub added: Added<'a>,
    /// `NgClientCertChainHeader` plugins (with the mask of those that apply) and the
    /// connection's client certificate. The plugins' field names are dropped from the client's
    /// fields whether or not there is a certificate.
    pub cert_headers: Option<(&'a CertHeaderPlugins, u64)>,
    /// The connection's verified client certificate.
    pub client_cert: Option<&'a ClientCert>,
    /// The request's trace context (`traceparent` continued with the gateway's span, or a new
    /// trace).
    pub trace: Option<&'a TraceContext>,
}

/// Writes the upstream request head into `out` (cleared first).
pub fn write_request_head(
    out: &mut Vec<u8>,
    req: &UpstreamRequest<'_>,
    headers: &Headers<'_>,
    policy: &HeaderPolicy<'_>,
) {
    out.clear();
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.root.as_bytes());
    if req.root.is_empty() || req.path != "/" {
        out.extend_from_slice(req.path.as_bytes());
    }
    if let Some(q) = req.query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(req.host);
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers.end_to_end_fields() {
        if request_field_dropped(name, req, policy) {
            continue;
        }
        push_field(out, name, value);
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if policy.forwarded_for == ForwardedFor::Append {
        for h in headers.iter() {
            if h.name.eq_ignore_ascii_case("x-forwarded-for") && !h.value.is_empty() {
                out.extend_from_slice(h.value);
                out.extend_from_slice(b", ");
            }
        }
    }
    let peer_at = out.len();
    push_ip(out, req.peer);
    let peer_end = out.len();
    out.extend_from_slice(b"\r\nx-real-ip: ");
    // The same text again, copied rather than formatted twice.
    out.extend_from_within(peer_at..peer_end);
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(req.proto.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-host: ");
    out.extend_from_slice(req.client_host);
    out.extend_from_slice(b"\r\n");
    push_request_id(out, policy.request_id_header, &req.request_id);
    if let Some(trace) = req.trace {
        out.extend_from_slice(b"traceparent: ");
        trace.write_traceparent(out);
        out.extend_from_slice(b"\r\n");
    }
    for a in req.added.iter() {
        push_field(out, a.name.as_bytes(), a.value.as_bytes());
    }
    if let (Some((plugins, mask)), Some(cert)) = (req.cert_headers, req.client_cert) {
        for plugin in plugins.selected(mask) {
            for (name, value) in plugin.fields(cert) {
                push_field(out, name.as_bytes(), value.as_bytes());
            }
        }
    }
    match req.framing {
        BodyFraming::ContentLength(n) => {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// The client fields the upstream never sees as sent (hop-by-hop ones are already gone).
fn request_field_dropped(
    name: &[u8],
    req: &UpstreamRequest<'_>,
    policy: &HeaderPolicy<'_>,
) -> bool {
    let eq = |other: &str| name.eq_ignore_ascii_case(other.as_bytes());
    eq("host")
        || eq("content-length")
        || eq("expect")
        || eq("forwarded")
        || eq("x-real-ip")
        || (req.trace.is_some() && eq("traceparent"))
        || name
            .get(..12)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"x-forwarded-"))
        || eq(policy.request_id_header)
        || req.credentials.is_some_and(|c| c.reads_header(name))
        || req.added.sets(name)
        || req
            .cert_headers
            .is_some_and(|(plugins, mask)| plugins.selected(mask).any(|p| p.sets(name)))
}

/// What the client response is made of, besides the upstream's fields.
#[derive(Debug, Clone, Copy)]
pub struct ClientResponse<'a> {
    /// The request id.
    pub request_id: RequestId<'a>,
    /// The quota state of a keyed request.
    pub quota: Option<&'a QuotaState>,
    /// `AdditionalHeadersOut`.
    pub added: Added<'a>,
    /// Keep chunked framing towards the client.
    pub chunked: bool,
    /// Close the client connection after this response.
    pub close: bool,
    /// The client spoke HTTP/1.0 (a kept connection then says `keep-alive`).
    pub http10: bool,
}

/// Writes the client's response head for an upstream response head into `out` (appended).
pub fn write_response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead<'_>,
    resp: &ClientResponse<'_>,
    policy: &HeaderPolicy<'_>,
) {
    let status = head.status();
    let reason = match head.reason() {
        "" => reason_phrase(status),
        r => r,
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in head.headers().end_to_end() {
        let name = h.name;
        if name.eq_ignore_ascii_case(policy.request_id_header)
            || resp.added.sets(name.as_bytes())
            || (resp.quota.is_some() && is_quota_field(name))
        {
            continue;
        }
        push_field(out, name.as_bytes(), h.value);
    }
    push_request_id(out, policy.request_id_header, &resp.request_id);
    if let Some(q) = resp.quota {
        q.write_headers(out);
    }
    for a in resp.added.iter() {
        push_field(out, a.name.as_bytes(), a.value.as_bytes());
    }
    if resp.chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    connection_field(out, resp.close, resp.http10);
    out.extend_from_slice(b"\r\n");
}

/// The fields the gateway writes about a key's quotas.
fn is_quota_field(name: &str) -> bool {
    use crate::quota as q;
    [
        q::DAILY_REMAINING,
        q::MONTHLY_REMAINING,
        q::RATELIMIT_LIMIT,
        q::RATELIMIT_REMAINING,
        q::RATELIMIT_RESET,
        q::RETRY_AFTER,
    ]
    .iter()
    .any(|f| name.eq_ignore_ascii_case(f))
}

/// `connection: close` when closing; `connection: keep-alive` for an HTTP/1.0 client kept open.
pub fn connection_field(out: &mut Vec<u8>, close: bool, http10: bool) {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `<field>: <node>-<core>-<n>\r\n`.
pub fn push_request_id(out: &mut Vec<u8>, field: &str, id: &RequestId<'_>) {
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(id.node.as_bytes());
    out.push(b'-');
    push_u64(out, id.core as u64);
    out.push(b'-');
    push_u64(out, id.n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without the formatting machinery (hot path).
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// Appends an IP address (IPv4 without the formatting machinery).
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

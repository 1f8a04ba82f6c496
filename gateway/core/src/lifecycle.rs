//! The request lifecycle's first machine, sans IO: what the gateway does with a parsed request
//! head before any byte goes upstream.
//!
//! ```text
//! head ─► canonical path ─► OAuth2 endpoint? ─► route ─► declared size ─► flow ─► mock or pick ─► upstream head
//!               │                  │              │            │            │          │
//!               └──────────────────┴──────────────┴────────────┴────────────┴──────────┴──► Verdict::Refuse(reply)
//! ```
//!
//! [`decide`] reads borrowed tables ([`Tables`]: the route table, the routes, this core's flows and
//! key store, the node's quota pool), takes this core's quota shard and flow scratch, and the
//! request's one clock reading (`now_ms`). It never awaits, never reads a clock and never touches
//! a socket; its only effects are the upstream request head written into a buffer the caller
//! reuses, the quota the flow admits, and the ticket of the target it picks (which the caller
//! must settle through its balancer). Every refusal is a [`Verdict::Refuse`] carrying its reply, so
//! the shell answers every refusal in one place.
//!
//! The machines after it are [`crate::balance::Attempts`] (which target next, whether a failure
//! is retried and when, what it answers) and [`crate::rewrite::write_response_head`];
//! docs/phases.md draws the whole path. `lifecycle/tests.rs` drives thousands of generated
//! requests through `decide` and `Attempts` with a fake clock and no sockets.
//!
//! Invariants (the harness checks them):
//! - a request is refused before its flow runs (no quota taken) unless its path is canonical, it
//!   matches a route and its declared body fits the route's limit;
//! - a request the flow refuses takes no target, and one the flow admits takes exactly one unit
//!   of each of its key's quotas, whatever happens after;
//! - [`Verdict::Proxy`] is the only verdict that holds a ticket, and `out` holds the upstream head
//!   exactly when the verdict is `Proxy`.

use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;

use crate::apikey::KeyStore;
use crate::balance::Ticket;
use crate::flow::{ClientCert, Flow, FlowScratch, Identity, Rejection, RequestView};
use crate::http::{
    BodyFraming, MAX_HOST, PathError, PathPolicy, RequestHead, canonical_host, canonical_path,
};
use crate::oauth::Endpoint;
use crate::quota::{NodePool, QuotaShard, QuotaState, ShardAdmission};
use crate::respond::ErrorReply;
use crate::rewrite::{self, HeaderPolicy, RequestId, UpstreamRequest};
use crate::route::RouteTable;
use crate::trace::TraceContext;

/// The largest body an OAuth2 endpoint reads (a form of a few fields).
pub const OAUTH_MAX_BODY: u64 = 8 * 1024;

/// A route as the request path uses it.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    /// Route id.
    pub id: Box<str>,
    /// API id, for routes compiled from an API.
    pub api: Option<Box<str>>,
    /// The compiled flow (each core serves from its own clone: [`Tables::flows`]).
    pub flow: Flow,
    /// Index of the route's backend (see [`Upstreams`]).
    pub backend: usize,
    /// Backend root without a trailing `/` (empty for `/`).
    pub root: Box<str>,
    /// Send the client's Host upstream.
    pub keep_host: bool,
    /// Largest request body; `None` for the listener's default.
    pub max_body_bytes: Option<u64>,
    /// Paths with encoded separators are kept encoded instead of refused.
    pub allow_encoded_slashes: bool,
}

/// What the lifecycle reads, borrowed from a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Tables<'t> {
    /// The routes' matching table (its slots index `routes` and `flows`).
    pub table: &'t RouteTable,
    /// The routes, by slot.
    pub routes: &'t [RouteEntry],
    /// This core's copies of the routes' flows, by slot.
    pub flows: &'t [Flow],
    /// This core's copy of the API keys.
    pub keys: &'t KeyStore,
    /// The node's quota pool.
    pub pool: &'t NodePool,
    /// The hosts that serve OAuth2 endpoints: host → (API id, API index).
    pub oauth_hosts: &'t FxHashMap<Box<str>, (Box<str>, u32)>,
}

/// What the lifecycle reads of a backend.
#[derive(Debug, Clone, Copy)]
pub struct BackendFacts<'a> {
    /// The backend answers itself (a mock): no target is picked.
    pub mock: bool,
    /// The request field a `HeaderHash` balancing reads.
    pub hash_header: Option<&'a str>,
}

/// A target chosen for a request.
#[derive(Debug)]
pub struct Pick<'a> {
    /// The balancer's ticket: the caller settles it when the call ends.
    pub ticket: Ticket,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` the target expects (`None`: the client's).
    pub host_header: Option<&'a [u8]>,
}

/// The backends and their balancers, as the shell holds them (resolved addresses, connection
/// pools, TLS settings stay there).
pub trait Upstreams {
    /// The backend at `index`.
    fn backend(&self, index: usize) -> Option<BackendFacts<'_>>;
    /// Picks a target of `backend` for a client at `peer` (`hash`: the balancing header's
    /// value), or `None` when none can take the call.
    fn pick(
        &mut self,
        backend: usize,
        peer: IpAddr,
        hash: Option<&[u8]>,
        now_ms: i64,
    ) -> Option<Pick<'_>>;
}

/// This core's mutable state the lifecycle uses.
#[derive(Debug)]
pub struct CoreState<'a> {
    /// This core's quota leases.
    pub shard: &'a mut QuotaShard,
    /// The flow's reusable buffers.
    pub scratch: &'a mut FlowScratch,
}

/// A request as the lifecycle sees it: the parsed head and what the connection and the core say
/// about it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a, 'h> {
    /// The parsed head.
    pub head: &'a RequestHead<'h>,
    /// The client's address.
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The verified client certificate (TLS with client auth).
    pub client_cert: Option<&'a ClientCert>,
    /// The request's wall-clock time (its one clock reading).
    pub now_ms: i64,
    /// The request id (sent upstream).
    pub request_id: RequestId<'a>,
    /// The trace context (continued or started).
    pub trace: &'a TraceContext,
    /// How the upstream head's forwarding fields are written.
    pub policy: &'a HeaderPolicy<'a>,
    /// The listener's largest request body (a route may set its own).
    pub max_body: u64,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Verdict<'t> {
    /// Answer with this error; nothing goes upstream.
    Refuse(ErrorReply),
    /// Answer an OAuth2 endpoint of the API with an `oauth` consumer (`crate::oauth`).
    OAuth {
        /// Which endpoint.
        endpoint: Endpoint,
        /// The API's id.
        api_id: &'t str,
        /// The API's index in the directory.
        api: u32,
    },
    /// Answer with the route's mock backend.
    Mock {
        /// The backend.
        backend: usize,
    },
    /// Proxy to the picked target: the upstream head is in `out`.
    Proxy {
        /// The backend.
        backend: usize,
        /// The balancer's ticket for the first attempt.
        ticket: Ticket,
        /// The first target's address.
        addr: SocketAddr,
    },
}

/// The lifecycle's decision and what it learnt on the way (the shell's usage, metrics, access
/// log and response headers read it).
#[derive(Debug)]
pub struct Decision<'t> {
    /// What to do.
    pub verdict: Verdict<'t>,
    /// The matched route's slot.
    pub route: Option<usize>,
    /// The largest body this request may send.
    pub max_body: u64,
    /// Quota state of a keyed request (its headers go on every response, 429 included).
    pub quota: Option<QuotaState>,
    /// `KeyEntry::index` of the verified key.
    pub key: Option<usize>,
    /// The API consumer and subscription the request was identified as.
    pub identity: Option<Identity>,
    /// Why the flow refused the request, if it did.
    pub rejection: Option<Rejection>,
    /// The flow admitted the call: it is counted in the usage whatever is answered.
    pub admitted: bool,
    /// The `AdditionalHeadersIn` / `Out` plugins that apply (bit masks of the flow's).
    pub added_in: u64,
    /// See `added_in`.
    pub added_out: u64,
}

impl<'t> Decision<'t> {
    fn new(max_body: u64) -> Self {
        Self {
            verdict: Verdict::Refuse(ErrorReply::NO_ROUTE),
            route: None,
            max_body,
            quota: None,
            key: None,
            identity: None,
            rejection: None,
            admitted: false,
            added_in: 0,
            added_out: 0,
        }
    }

    fn refuse(mut self, reply: ErrorReply) -> Self {
        self.verdict = Verdict::Refuse(reply);
        self
    }
}

/// The host a request addresses: the absolute-form authority or the Host header, without port.
fn host_of<'a>(head: &RequestHead<'a>) -> &'a [u8] {
    head.authority().or_else(|| head.host()).unwrap_or_default()
}

/// The 400 for a request path without an unambiguous canonical form.
fn path_reply(e: PathError) -> ErrorReply {
    ErrorReply::new(400, "ambiguous_path", e.description())
}

/// The 413 when the declared body is over `max`.
fn declared_over(framing: BodyFraming, max: u64) -> bool {
    matches!(framing, BodyFraming::ContentLength(n) if n > max)
}

/// Decides what to do with a request and, when it is proxied, writes the upstream request head
/// into `out` (`path_buf` receives the canonical path; both are the caller's reused buffers).
pub fn decide<'t>(
    tables: &Tables<'t>,
    upstreams: &mut impl Upstreams,
    core: CoreState<'_>,
    req: &Request<'_, '_>,
    path_buf: &mut String,
    out: &mut Vec<u8>,
) -> Decision<'t> {
    let head = req.head;
    let framing = head.framing();
    let mut decision = Decision::new(req.max_body);
    let method = head.method_str();
    let host = host_of(head);
    let headers = head.headers();
    let query = head.query().unwrap_or_default();
    if query.contains('#') {
        return decision.refuse(path_reply(PathError::Fragment));
    }
    // One canonical path, computed before routing: it is what the table matches, what every
    // restriction checks and what goes upstream. A path that only has an encoded canonical form
    // (`%2F`, raw non-ASCII) is routed in that form and then refused unless its route keeps it.
    let preserved = match canonical_path(head.path(), PathPolicy::STRICT, path_buf) {
        Ok(()) => false,
        Err(e) if e.preservable() => {
            if canonical_path(head.path(), PathPolicy::PRESERVE_ENCODED, path_buf).is_err() {
                return decision.refuse(path_reply(e));
            }
            true
        }
        Err(e) => return decision.refuse(path_reply(e)),
    };
    let path = path_buf.as_str();
    let mut host_buf = [0u8; MAX_HOST];
    let canonical = canonical_host(host, &mut host_buf);
    let host_str = canonical.unwrap_or_default();
    // The OAuth2 endpoints of the APIs with an `oauth` consumer, on each of their hosts.
    if let Some(endpoint) = Endpoint::of(path) {
        if let Some((api_id, api)) = tables.oauth_hosts.get(host_str) {
            decision.max_body = OAUTH_MAX_BODY;
            if declared_over(framing, OAUTH_MAX_BODY) {
                return decision.refuse(ErrorReply::BODY_TOO_LARGE);
            }
            decision.verdict = Verdict::OAuth {
                endpoint,
                api_id,
                api: *api,
            };
            return decision;
        }
    }
    // A host without a canonical form matches no route (not even `*`).
    let found = canonical.and_then(|host| {
        tables
            .table
            .lookup_canonical(host, method.as_bytes(), path, query.as_bytes(), |n| {
                headers.get(n)
            })
    });
    let Some(found) = found else {
        return decision;
    };
    let (Some(route), Some(flow)) = (tables.routes.get(found.slot), tables.flows.get(found.slot))
    else {
        return decision;
    };
    if preserved && !route.allow_encoded_slashes {
        return decision.refuse(ErrorReply::new(
            400,
            "ambiguous_path",
            "encoded `/`, `\\` or non-ASCII byte in the path (not allowed on this route)",
        ));
    }
    decision.route = Some(found.slot);
    if let Some(max) = route.max_body_bytes {
        decision.max_body = max;
    }
    // A declared body over the limit is refused before anything else happens: no interim
    // 100 Continue, no quota taken, no upstream contact.
    if declared_over(framing, decision.max_body) {
        return decision.refuse(ErrorReply::BODY_TOO_LARGE);
    }
    let view = RequestView {
        method,
        host: host_str,
        path,
        headers: &headers,
        client_cert: req.client_cert,
    };
    let mut admission = ShardAdmission::new(core.shard, tables.pool);
    let admitted = flow.on_request(
        &view,
        tables.keys,
        &mut admission,
        req.now_ms,
        &mut *core.scratch,
    );
    decision.quota = admission.state().copied();
    decision.key = core.scratch.key_index;
    decision.identity = core.scratch.identity;
    if let Err(rejection) = admitted {
        decision.rejection = Some(rejection);
        return decision.refuse(rejection.reply());
    }
    decision.admitted = true;
    let Some(backend) = upstreams.backend(route.backend) else {
        return decision.refuse(ErrorReply::BAD_GATEWAY);
    };
    if backend.mock {
        decision.verdict = Verdict::Mock {
            backend: route.backend,
        };
        return decision;
    }
    let hash = backend.hash_header.and_then(|name| headers.get(name));
    let Some(pick) = upstreams.pick(route.backend, req.peer.ip(), hash, req.now_ms) else {
        return decision.refuse(ErrorReply::UNAVAILABLE);
    };
    decision.added_in = flow.headers_in().select(path);
    decision.added_out = flow.headers_out().select(path);
    let upstream = UpstreamRequest {
        method,
        root: &route.root,
        path: found.upstream_path(path),
        query: head.query(),
        host: if route.keep_host {
            host
        } else {
            pick.host_header.unwrap_or(host_str.as_bytes())
        },
        client_host: host,
        proto: req.proto,
        peer: req.peer.ip(),
        request_id: req.request_id,
        framing,
        credentials: flow.credentials(),
        added: flow.headers_in().selected(decision.added_in),
        cert_headers: Some((flow.cert_headers(), flow.cert_headers().select(path))),
        client_cert: req.client_cert,
        trace: Some(req.trace),
    };
    rewrite::write_request_head(out, &upstream, &headers, req.policy);
    decision.verdict = Verdict::Proxy {
        backend: route.backend,
        ticket: pick.ticket,
        addr: pick.addr,
    };
    decision
}

#[cfg(test)]
mod tests;

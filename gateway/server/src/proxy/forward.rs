//! The synchronous part of a request, done while the parsed head still borrows the read buffer:
//! route lookup, flow phases, target choice, and the upstream request head; and the rewrite of
//! the upstream response head for the client. No await, no allocation once `out` has grown.

use std::net::SocketAddr;

use gateway_core::balance::Ticket;
use gateway_core::flow::RequestView;
use gateway_core::http::{
    BodyFraming, MAX_HOST, PathError, PathPolicy, RequestHead, ResponseHead, Version,
    canonical_host, canonical_path,
};
use gateway_core::quota::ShardAdmission;
use gateway_core::respond::ErrorReply;
use gateway_core::rewrite::{self, Added, ClientResponse, RequestId, UpstreamRequest};
use gateway_model::entity::LoadBalancing;

use super::{Action, OAUTH_MAX_BODY, OAuthCall, Plan};
use crate::core::Core;

/// What the connection says about every request on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnFacts<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The verified client certificate (TLS with client auth).
    pub client_cert: Option<&'a gateway_core::flow::ClientCert>,
}

/// The first target chosen for a proxied request.
pub(super) struct Picked {
    pub ticket: Ticket,
    pub addr: SocketAddr,
}

/// Response facts the streaming loop needs.
pub(super) struct ResponseInfo {
    pub head_len: usize,
    pub framing: BodyFraming,
    /// HTTP/1.0 client and a chunked response: forward payload only, then close.
    pub dechunk: bool,
    pub close_client: bool,
    pub upstream_keep_alive: bool,
}

/// The host a request addresses: the absolute-form authority or the Host header, without port.
fn host_of<'a>(head: &RequestHead<'a>) -> &'a [u8] {
    head.authority().or_else(|| head.host()).unwrap_or_default()
}

/// The 400 for a request path without an unambiguous canonical form.
fn path_reply(e: PathError) -> ErrorReply {
    ErrorReply::new(400, "ambiguous_path", e.description())
}

/// Decides what to do with a request and, when it is proxied, writes the upstream request head
/// into `out`.
pub(super) fn plan(
    core: &Core,
    head: &RequestHead<'_>,
    conn: &ConnFacts<'_>,
    out: &mut Vec<u8>,
    path_buf: &mut String,
    now: std::time::Instant,
) -> (Plan, Option<Picked>) {
    let now_ms = core.wall_ms(now);
    let ConnFacts {
        peer,
        proto,
        client_cert,
    } = *conn;
    let method = head.method_str();
    let mut plan = Plan {
        started: now,
        now_ms,
        head_len: head.head_len(),
        framing: head.framing(),
        keep_alive: head.keep_alive(),
        http10: head.version() == Version::Http10,
        head_request: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        ),
        expect_continue: head.expect_continue(),
        max_body: core.limits.max_body_bytes,
        request_id: core.next_request_id(),
        trace: core.trace_for(head.headers().get("traceparent")),
        quota: None,
        snap: None,
        route: None,
        added_in: 0,
        added_out: 0,
        key: None,
        identity: None,
        rejection: None,
        counted: None,
        action: Action::Refuse(ErrorReply::NO_ROUTE),
    };
    let snap = core.snapshot();
    let shared = &snap.shared;
    let host = host_of(head);
    let headers = head.headers();
    let query = head.query().unwrap_or_default();
    if query.contains('#') {
        plan.action = Action::Refuse(path_reply(PathError::Fragment));
        return (plan, None);
    }
    // One canonical path, computed before routing: it is what the table matches, what every
    // restriction checks and what goes upstream. A path that only has an encoded canonical form
    // (`%2F`, raw non-ASCII) is routed in that form and then refused unless its route keeps it.
    let preserved = match canonical_path(head.path(), PathPolicy::STRICT, path_buf) {
        Ok(()) => false,
        Err(e) if e.preservable() => {
            if canonical_path(head.path(), PathPolicy::PRESERVE_ENCODED, path_buf).is_err() {
                plan.action = Action::Refuse(path_reply(e));
                return (plan, None);
            }
            true
        }
        Err(e) => {
            plan.action = Action::Refuse(path_reply(e));
            return (plan, None);
        }
    };
    let path = path_buf.as_str();
    // The OAuth2 endpoints of the APIs with an `oauth` consumer, on each of their hosts.
    if let Some(endpoint) = gateway_core::oauth::Endpoint::of(path) {
        let mut host_buf = [0u8; MAX_HOST];
        let host_str = canonical_host(host, &mut host_buf).unwrap_or_default();
        if let Some((api_id, api)) = shared.oauth_hosts.get(host_str) {
            plan.snap = Some(snap.clone());
            plan.max_body = OAUTH_MAX_BODY;
            if let BodyFraming::ContentLength(n) = plan.framing {
                if n > plan.max_body {
                    plan.action = Action::Refuse(ErrorReply::BODY_TOO_LARGE);
                    return (plan, None);
                }
            }
            plan.action = Action::OAuth(Box::new(OAuthCall {
                endpoint,
                api_id: api_id.clone(),
                api: *api,
                method: method.into(),
                authorization: headers.get("authorization").map(Into::into),
                content_type: headers.get("content-type").map(Into::into),
            }));
            return (plan, None);
        }
    }
    let Some(found) = shared
        .table
        .lookup(host, method.as_bytes(), path, query.as_bytes(), |n| {
            headers.get(n)
        })
    else {
        return (plan, None);
    };
    let Some(route) = shared.routes.get(found.slot) else {
        return (plan, None);
    };
    if preserved && !route.allow_encoded_slashes {
        plan.action = Action::Refuse(ErrorReply::new(
            400,
            "ambiguous_path",
            "encoded `/`, `\\` or non-ASCII byte in the path (not allowed on this route)",
        ));
        return (plan, None);
    }
    plan.route = Some(found.slot);
    plan.snap = Some(snap.clone());
    if let Some(max) = route.max_body_bytes {
        plan.max_body = max;
    }
    // A declared body over the limit is refused before anything else happens: no interim
    // 100 Continue, no upstream contact.
    if let BodyFraming::ContentLength(n) = plan.framing {
        if n > plan.max_body {
            plan.action = Action::Refuse(ErrorReply::BODY_TOO_LARGE);
            return (plan, None);
        }
    }
    let mut host_buf = [0u8; MAX_HOST];
    let host_str = canonical_host(host, &mut host_buf).unwrap_or_default();
    let view = RequestView {
        method,
        host: host_str,
        path,
        headers: &headers,
        client_cert,
    };
    let Some(flow) = snap.flows.get(found.slot) else {
        return (plan, None);
    };
    let admitted = {
        let mut scratch = core.scratch.borrow_mut();
        let mut shard = core.quota.borrow_mut();
        let mut admission = ShardAdmission::new(&mut shard, &shared.pool);
        let admitted = flow.on_request(&view, &snap.keys, &mut admission, now_ms, &mut scratch);
        plan.quota = admission.state().copied();
        plan.key = scratch.key_index;
        plan.identity = scratch.identity;
        admitted
    };
    if let Err(rejection) = admitted {
        plan.rejection = Some(rejection);
        plan.action = Action::Refuse(rejection.reply());
        return (plan, None);
    }
    plan.counted = super::count_admission(core, &snap, plan.key, found.slot, plan.identity, now_ms);
    let Some(backend) = shared.backends.get(route.backend) else {
        plan.action = Action::Refuse(ErrorReply::BAD_GATEWAY);
        return (plan, None);
    };
    if backend.mock.is_some() {
        plan.action = Action::Mock {
            backend: route.backend,
        };
        return (plan, None);
    }
    let hash_value = match &backend.spec.load_balancing {
        LoadBalancing::HeaderHash { header_name } => headers.get(header_name),
        _ => None,
    };
    let Some((ticket, addr)) = core.pick(&snap, route.backend, peer, hash_value, now_ms) else {
        plan.action = Action::Refuse(ErrorReply::UNAVAILABLE);
        return (plan, None);
    };
    let target_host = backend
        .targets
        .get(ticket.target().index())
        .map_or(host_str.as_bytes(), |t| t.host_header.as_bytes());
    let credentials = flow.credentials();
    plan.added_in = flow.headers_in().select(path);
    plan.added_out = flow.headers_out().select(path);
    let upstream = UpstreamRequest {
        method,
        root: &route.root,
        path: found.upstream_path(path),
        query: head.query(),
        host: if route.keep_host { host } else { target_host },
        client_host: host,
        proto,
        peer: peer.ip(),
        request_id: request_id(core, plan.request_id),
        framing: plan.framing,
        credentials,
        added: flow.headers_in().selected(plan.added_in),
        cert_headers: Some((flow.cert_headers(), flow.cert_headers().select(path))),
        client_cert,
        trace: Some(&plan.trace),
    };
    rewrite::write_request_head(out, &upstream, &headers, &core.header_policy());
    plan.action = Action::Proxy {
        backend: route.backend,
    };
    (plan, Some(Picked { ticket, addr }))
}

/// The request id of this core's request `n`.
pub(super) fn request_id(core: &Core, n: u64) -> RequestId<'_> {
    RequestId {
        node: &core.node,
        core: core.id,
        n,
    }
}

/// Writes the client's response head for an upstream response head.
pub(super) fn response_head(
    core: &Core,
    plan: &Plan,
    head: &ResponseHead<'_>,
    out: &mut Vec<u8>,
    close: bool,
) -> ResponseInfo {
    let framing = head.framing();
    let dechunk = plan.http10 && framing == BodyFraming::Chunked;
    let close_client = close || dechunk || framing == BodyFraming::UntilClose;
    let flow = plan
        .snap
        .as_ref()
        .zip(plan.route)
        .and_then(|(snap, slot)| snap.flows.get(slot));
    let added = flow.map_or(Added::NONE, |f| f.headers_out().selected(plan.added_out));
    let resp = ClientResponse {
        request_id: request_id(core, plan.request_id),
        quota: plan.quota.as_ref(),
        added,
        chunked: framing == BodyFraming::Chunked && !dechunk,
        close: close_client,
        http10: plan.http10,
    };
    rewrite::write_response_head(out, head, &resp, &core.header_policy());
    ResponseInfo {
        head_len: head.head_len(),
        framing,
        dechunk,
        close_client,
        upstream_keep_alive: head.keep_alive() && framing != BodyFraming::UntilClose,
    }
}

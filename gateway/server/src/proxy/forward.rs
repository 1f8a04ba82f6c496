//! The synchronous part of a request, done while the parsed head still borrows the read buffer:
//! the lifecycle's decision (`gateway_core::lifecycle`: route, size limit, flow, target, upstream
//! head) over this core's snapshot and balancers, and the rewrite of the upstream response head
//! for the client. No await, no allocation once `out` has grown.

use std::net::{IpAddr, SocketAddr};

use gateway_core::balance::Ticket;
use gateway_core::http::{BodyFraming, RequestHead, ResponseHead, Version};
use gateway_core::lifecycle::{
    self, BackendFacts, CoreState, Pick, Request, Tables, Upstreams, Verdict,
};
use gateway_core::rewrite::{self, Added, ClientResponse, RequestId};
use gateway_model::entity::LoadBalancing;

use super::{Action, OAuthCall, Plan};
use crate::core::{Core, CoreSnapshot};

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

/// The snapshot's backends and this core's balancers, as the lifecycle sees them.
struct CoreUpstreams<'a> {
    core: &'a Core,
    snap: &'a CoreSnapshot,
}

impl Upstreams for CoreUpstreams<'_> {
    fn backend(&self, index: usize) -> Option<BackendFacts<'_>> {
        let backend = self.snap.shared.backends.get(index)?;
        Some(BackendFacts {
            mock: backend.mock.is_some(),
            hash_header: match &backend.spec.load_balancing {
                LoadBalancing::HeaderHash { header_name } => Some(header_name),
                _ => None,
            },
        })
    }

    fn pick(
        &mut self,
        backend: usize,
        peer: IpAddr,
        hash: Option<&[u8]>,
        now_ms: i64,
    ) -> Option<Pick<'_>> {
        let (ticket, addr) = self.core.pick(self.snap, backend, peer, hash, now_ms)?;
        let host_header = self
            .snap
            .shared
            .backends
            .get(backend)
            .and_then(|b| b.targets.get(ticket.target().index()))
            .map(|t| t.host_header.as_bytes());
        Some(Pick {
            ticket,
            addr,
            host_header,
        })
    }
}

/// Decides what to do with a request (`gateway_core::lifecycle`) and, when it is proxied, writes
/// the upstream request head into `out`; counts an admitted keyed call before anything is
/// answered.
pub(super) fn plan(
    core: &Core,
    head: &RequestHead<'_>,
    conn: &ConnFacts<'_>,
    out: &mut Vec<u8>,
    path_buf: &mut String,
    now: std::time::Instant,
) -> (Plan, Option<Picked>) {
    let now_ms = core.wall_ms(now);
    let method = head.method_str();
    let rid = core.next_request_id();
    let trace = core.trace_for(head.headers().get("traceparent"));
    let snap = core.snapshot();
    let shared = &snap.shared;
    let tables = Tables {
        table: &shared.table,
        routes: &shared.routes,
        flows: &snap.flows,
        keys: &snap.keys,
        pool: &shared.pool,
        oauth_hosts: &shared.oauth_hosts,
    };
    let policy = core.header_policy();
    let req = Request {
        head,
        peer: conn.peer,
        proto: conn.proto,
        client_cert: conn.client_cert,
        now_ms,
        request_id: request_id(core, rid),
        trace: &trace,
        policy: &policy,
        max_body: core.limits.max_body_bytes,
    };
    let decision = {
        let mut parts = core.lifecycle.borrow_mut();
        let parts = &mut *parts;
        let state = CoreState {
            shard: &mut parts.shard,
            scratch: &mut parts.scratch,
        };
        let mut upstreams = CoreUpstreams { core, snap: &snap };
        lifecycle::decide(&tables, &mut upstreams, state, &req, path_buf, out)
    };
    let counted = match decision.route {
        Some(slot) if decision.admitted => {
            super::count_admission(core, &snap, decision.key, slot, decision.identity, now_ms)
        }
        _ => None,
    };
    let mut picked = None;
    let action = match decision.verdict {
        Verdict::Refuse(reply) => Action::Refuse(reply),
        Verdict::Mock { backend } => Action::Mock { backend },
        Verdict::OAuth {
            endpoint,
            api_id,
            api,
        } => {
            let headers = head.headers();
            Action::OAuth(Box::new(OAuthCall {
                endpoint,
                api_id: api_id.into(),
                api,
                method: method.into(),
                authorization: headers.get("authorization").map(Into::into),
                content_type: headers.get("content-type").map(Into::into),
            }))
        }
        Verdict::Proxy {
            backend,
            ticket,
            addr,
        } => {
            picked = Some(Picked { ticket, addr });
            Action::Proxy { backend }
        }
    };
    let keeps_snap = decision.route.is_some() || matches!(action, Action::OAuth(_));
    let plan = Plan {
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
        max_body: decision.max_body,
        request_id: rid,
        trace,
        quota: decision.quota,
        route: decision.route,
        added_out: decision.added_out,
        key: decision.key,
        identity: decision.identity,
        rejection: decision.rejection,
        counted,
        action,
        snap: keeps_snap.then_some(snap),
    };
    (plan, picked)
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

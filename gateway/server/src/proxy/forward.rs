//! The synchronous part of a request, done while the parsed head still borrows the read buffer:
//! route lookup, flow phases, target choice, and the upstream request head; and the rewrite of
//! the upstream response head for the client. No await, no allocation once `out` has grown.

use std::io::Write as _;
use std::net::SocketAddr;

use gateway_core::balance::Ticket;
use gateway_core::flow::{Consumer, RequestView};
use gateway_core::http::{BodyFraming, RequestHead, ResponseHead, Version};
use gateway_core::quota::ShardAdmission;
use gateway_core::respond::{ErrorReply, reason_phrase};
use gateway_model::entity::LoadBalancing;

use super::{Action, Plan};
use crate::core::Core;

/// Appends `n` in decimal without the formatting machinery (hot path).
pub(super) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
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

/// Appends the client's IP address (IPv4 without the formatting machinery).
fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `<rid header>: <node>-<core>-<n>\r\n`.
fn push_request_id(out: &mut Vec<u8>, core: &Core, id: u64) {
    out.extend_from_slice(core.limits.request_id_header.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(core.node.as_bytes());
    out.push(b'-');
    push_u64(out, core.id as u64);
    out.push(b'-');
    push_u64(out, id);
    out.extend_from_slice(b"\r\n");
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

fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return host
            .iter()
            .position(|&b| b == b']')
            .and_then(|i| host.get(..=i))
            .unwrap_or(host);
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) => host.get(..i).unwrap_or(host),
        None => host,
    }
}

/// Decides what to do with a request and, when it is proxied, writes the upstream request head
/// into `out`.
pub(super) fn plan(
    core: &Core,
    head: &RequestHead<'_>,
    peer: SocketAddr,
    out: &mut Vec<u8>,
    now_ms: i64,
) -> (Plan, Option<Picked>) {
    let method = head.method_str();
    let mut plan = Plan {
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
        quota: None,
        snap: None,
        route: None,
        key: None,
        rejection: None,
        action: Action::Refuse(ErrorReply::NO_ROUTE),
    };
    let snap = core.snapshot();
    let shared = &snap.shared;
    let host = host_of(head);
    let headers = head.headers();
    let path = head.path();
    let query = head.query().unwrap_or_default();
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
    let host_str = std::str::from_utf8(strip_port(host)).unwrap_or_default();
    let view = RequestView {
        method,
        host: host_str,
        path,
        headers: &headers,
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
        admitted
    };
    if let Err(rejection) = admitted {
        plan.rejection = Some(rejection);
        plan.action = Action::Refuse(rejection.reply());
        return (plan, None);
    }
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
        .map_or(host_str, |t| &t.host_header);

    // Request line: the backend root, then the (possibly stripped) path, then the query.
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(route.root.as_bytes());
    let upstream_path = found.upstream_path(path);
    if route.root.is_empty() || upstream_path != "/" {
        out.extend_from_slice(upstream_path.as_bytes());
    }
    if let Some(q) = head.query() {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    if route.keep_host {
        out.extend_from_slice(host);
    } else {
        out.extend_from_slice(target_host.as_bytes());
    }
    out.extend_from_slice(b"\r\n");

    let wipe = match flow.consumer() {
        Consumer::ApiKey(ctx) => Some(ctx.extractors()),
        Consumer::Keyless => None,
    };
    let rid = core.limits.request_id_header.as_str();
    let mut forwarded_for: Option<&[u8]> = None;
    for h in headers.end_to_end() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
            || name.eq_ignore_ascii_case(rid)
            || wipe.is_some_and(|x| x.reads_header(name))
        {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for = Some(h.value);
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prior) = forwarded_for {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    push_ip(out, peer.ip());
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    push_request_id(out, core, plan.request_id);
    match plan.framing {
        BodyFraming::ContentLength(n) => {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
    plan.action = Action::Proxy {
        backend: route.backend,
    };
    (plan, Some(Picked { ticket, addr }))
}

/// `connection: close` when closing; `connection: keep-alive` for an HTTP/1.0 client kept open.
pub(super) fn connection_header(out: &mut Vec<u8>, close: bool, http10: bool) {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
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
    let status = head.status();
    let reason = head.reason();
    let reason = if reason.is_empty() {
        reason_phrase(status)
    } else {
        reason
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let rid = core.limits.request_id_header.as_str();
    for h in head.headers().end_to_end() {
        if h.name.eq_ignore_ascii_case(rid) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    push_request_id(out, core, plan.request_id);
    if let Some(q) = &plan.quota {
        q.write_headers(out);
    }
    if framing == BodyFraming::Chunked && !dechunk {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    connection_header(out, close_client, plan.http10);
    out.extend_from_slice(b"\r\n");
    ResponseInfo {
        head_len: head.head_len(),
        framing,
        dechunk,
        close_client,
        upstream_keep_alive: head.keep_alive() && framing != BodyFraming::UntilClose,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_ip_formatting() {
        for n in [0u64, 7, 10, 99, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for ip in [
            "127.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::1",
            "2001:db8::7",
        ] {
            let mut out = Vec::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip.as_bytes());
        }
    }
}

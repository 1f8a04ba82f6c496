//! `lifecycle/*`: `gateway_core::lifecycle::decide`, everything a core does with a parsed request
//! head before the upstream (canonical path, route lookup among 64 routes, size limit, flow,
//! target pick on a real balancer, the upstream head written), then the ticket settled.
//!
//! - `lifecycle/public`: a public route (no credential).
//! - `lifecycle/keyed`: a route with `ApikeyCalls`, 64 hot keys of a 10,000-key store, each call
//!   taking one unit of the key's quotas from the core's shard.
//!
//! Before measuring, counts heap allocations over 100,000 decisions of each kind with a counting
//! global allocator and refuses to run if there is any.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use criterion::Criterion;
use gateway_core::apikey::KeyStore;
use gateway_core::balance::{Balancer, Outcome, PickHint};
use gateway_core::flow::{Flow, FlowScratch};
use gateway_core::http::HeadParser;
use gateway_core::lifecycle::{
    BackendFacts, CoreState, Pick, Request, RouteEntry, Tables, Upstreams, Verdict, decide,
};
use gateway_core::quota::{NodePool, QuotaShard};
use gateway_core::rewrite::{ForwardedFor, HeaderPolicy, RequestId};
use gateway_core::route::{RouteDef, RouteTable};
use gateway_core::trace::TraceContext;
use gateway_core::window::Calendar;
use gateway_model::entity::{ApiKey, Backend, Route};
use serde_json::json;

#[global_allocator]
static GLOBAL: benches::CountingAlloc = benches::CountingAlloc;

const NOW: i64 = 1_795_000_000_000;

struct One {
    balancer: Balancer,
    host: String,
}

impl Upstreams for One {
    fn backend(&self, index: usize) -> Option<BackendFacts<'_>> {
        (index == 0).then_some(BackendFacts {
            mock: false,
            hash_header: None,
        })
    }

    fn pick(
        &mut self,
        _backend: usize,
        _peer: IpAddr,
        _hash: Option<&[u8]>,
        now_ms: i64,
    ) -> Option<Pick<'_>> {
        let id = self.balancer.pick(now_ms, PickHint::default())?;
        Some(Pick {
            ticket: self.balancer.start(id, now_ms),
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            host_header: Some(self.host.as_bytes()),
        })
    }
}

fn client_id(i: usize) -> String {
    format!("client-{i:05}")
}

/// One decision and its ticket settled; whether it was proxied.
#[allow(clippy::too_many_arguments)]
fn one(
    tables: &Tables<'_>,
    up: &mut One,
    shard: &mut QuotaShard,
    scratch: &mut FlowScratch,
    parser: &mut HeadParser,
    raw: &[u8],
    now: i64,
    path: &mut String,
    out: &mut Vec<u8>,
    trace: &TraceContext,
    policy: &HeaderPolicy<'_>,
) -> bool {
    let Ok(Some(head)) = parser.parse_request(raw) else {
        return false;
    };
    let req = Request {
        head: &head,
        peer: SocketAddr::from(([192, 0, 2, 7], 40000)),
        proto: "http",
        client_cert: None,
        now_ms: now,
        request_id: RequestId {
            node: "gw-bench",
            core: 0,
            n: 1,
        },
        trace,
        policy,
        max_body: 1 << 20,
    };
    let d = decide(tables, up, CoreState { shard, scratch }, &req, path, out);
    match d.verdict {
        Verdict::Proxy { ticket, .. } => {
            up.balancer.finish(ticket, Outcome::Success, now);
            true
        }
        _ => false,
    }
}

fn main() {
    // 64 routes on one host, `/svc00` … `/svc63`; the even ones keyed.
    let mut entries = Vec::new();
    let mut defs = Vec::new();
    for slot in 0..64 {
        let plugins = if slot % 2 == 0 {
            json!([{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}])
        } else {
            json!([])
        };
        let route: Route = serde_json::from_value(json!({
            "id": format!("r{slot}"), "frontend": {"domains": [format!("api.bench.local/svc{slot:02}")]},
            "backend_ref": "b", "plugins": plugins,
        }))
        .unwrap();
        defs.push(RouteDef::from_route(&route, slot));
        entries.push(RouteEntry {
            id: route.id.as_str().into(),
            api: None,
            flow: Flow::build(&route).unwrap(),
            backend: 0,
            root: "".into(),
            keep_host: false,
            max_body_bytes: None,
            allow_encoded_slashes: false,
        });
    }
    let table = RouteTable::build(defs).unwrap();
    let flows: Vec<Flow> = entries.iter().map(|e| e.flow.clone()).collect();
    let keys: Vec<ApiKey> = (0..10_000)
        .map(|i| {
            serde_json::from_value(json!({
                "clientId": client_id(i), "clientSecret": "secret-0123456789",
                "authorizedEntities": ["route_r42"],
                "throttlingQuota": u64::MAX, "dailyQuota": u64::MAX, "monthlyQuota": u64::MAX,
            }))
            .unwrap()
        })
        .collect();
    let keys = KeyStore::build(&keys).unwrap();
    let pool = NodePool::new(Calendar::utc(), 1, &keys);
    let oauth_hosts = Default::default();
    let tables = Tables {
        table: &table,
        routes: &entries,
        flows: &flows,
        keys: &keys,
        pool: &pool,
        oauth_hosts: &oauth_hosts,
    };
    let backend: Backend = serde_json::from_value(json!({
        "targets": [{"hostname": "u1.bench.local", "port": 8080},
                    {"hostname": "u2.bench.local", "port": 8080}]
    }))
    .unwrap();
    let mut up = One {
        balancer: Balancer::new(&backend, 1).unwrap(),
        host: "upstream.bench.local".into(),
    };
    let public: Vec<u8> = b"GET /svc41/items/123?full=1 HTTP/1.1\r\nHost: api.bench.local\r\n\
User-Agent: wrk\r\nAccept: application/json\r\n\r\n"
        .to_vec();
    let keyed: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            format!(
                "GET /svc42/items/123 HTTP/1.1\r\nHost: api.bench.local\r\nUser-Agent: wrk\r\n\
Otoroshi-Client-Id: {}\r\nOtoroshi-Client-Secret: secret-0123456789\r\n\r\n",
                client_id(i * 131)
            )
            .into_bytes()
        })
        .collect();
    let policy = HeaderPolicy {
        forwarded_for: ForwardedFor::Append,
        request_id_header: "x-request-id",
    };
    let trace = TraceContext::for_request(None, [7; 16], [9; 8]);
    let mut shard = QuotaShard::new();
    let mut scratch = FlowScratch::new();
    let mut parser = HeadParser::default();
    let (mut path, mut out) = (String::with_capacity(256), Vec::with_capacity(4096));

    // No allocation in the steady state, public or keyed (after one warm-up pass).
    for pass in 0..2 {
        let before = benches::allocations();
        for i in 0..100_000usize {
            let raw = if i % 2 == 0 {
                &public
            } else {
                &keyed[(i / 2) & 63]
            };
            let proxied = one(
                &tables,
                &mut up,
                &mut shard,
                &mut scratch,
                &mut parser,
                raw,
                NOW + i as i64,
                &mut path,
                &mut out,
                &trace,
                &policy,
            );
            assert!(proxied, "request {i} was not proxied");
        }
        if pass == 1 {
            assert_eq!(benches::allocations() - before, 0, "decide allocated");
        }
    }
    println!("lifecycle: 0 allocations over 100,000 decisions (half keyed)");

    let mut c = Criterion::default().configure_from_args();
    let mut now = NOW;
    c.bench_function("lifecycle/public", |b| {
        b.iter(|| {
            now += 1;
            one(
                &tables,
                &mut up,
                &mut shard,
                &mut scratch,
                &mut parser,
                black_box(&public),
                now,
                &mut path,
                &mut out,
                &trace,
                &policy,
            )
        })
    });
    let mut i = 0usize;
    c.bench_function("lifecycle/keyed", |b| {
        b.iter(|| {
            now += 1;
            i = (i + 1) & 63;
            one(
                &tables,
                &mut up,
                &mut shard,
                &mut scratch,
                &mut parser,
                black_box(&keyed[i]),
                now,
                &mut path,
                &mut out,
                &trace,
                &policy,
            )
        })
    });
    c.final_summary();
}

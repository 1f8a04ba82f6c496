//! The lifecycle without sockets: thousands of generated requests (hosts, paths, methods,
//! credentials, declared sizes) through [`decide`] over real tables (route table, flows, key
//! store, quota pool and shard) and real balancers, then through [`Attempts`] on a fake clock,
//! each decision checked against an oracle written from the contract (DESIGN.md §4, §8), not
//! from the code.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use gateway_model::entity::{ApiKey, Backend, ClientConfig, Route};
use serde_json::json;

use super::*;
use crate::balance::rng::Rng;
use crate::balance::{
    Attempts, Balancer, BreakerState, Outcome, PickHint, RetrySchedule, Step, UpstreamError,
};
use crate::http::HeadParser;
use crate::jose::{JWKS_PATH, TOKEN_PATH};
use crate::rewrite::ForwardedFor;
use crate::route::RouteDef;
use crate::window::Calendar;

/// 23:59:00 UTC: the run crosses midnight, so the daily quota starts over during it.
const START: i64 = 1_795_219_140_000;
const DAY_MS: i64 = 86_400_000;
const DAILY: u64 = 40;

/// One of `from`, drawn with the balancers' own seedable generator (a failing seed replays).
fn pick<'a, T>(rng: &mut Rng, from: &'a [T]) -> &'a T {
    &from[usize::try_from(rng.below(from.len() as u64)).unwrap()]
}

fn route(v: serde_json::Value) -> Route {
    serde_json::from_value(v).unwrap()
}

fn backend(targets: &[&str]) -> Backend {
    let targets: Vec<_> = targets
        .iter()
        .map(|h| json!({"hostname": h, "port": 80}))
        .collect();
    serde_json::from_value(json!({
        "targets": targets,
        "client": {"retries": 2, "retry_initial_delay": 10, "backoff_factor": 2,
                   "global_timeout": 500, "max_errors": 3, "sample_interval": 1000}
    }))
    .unwrap()
}

/// The shell's backends, without sockets: 0 and 1 real (balanced), 2 a mock; 3 does not exist.
struct Fake {
    balancers: Vec<Option<Balancer>>,
    hosts: Vec<Vec<String>>,
    picks: u64,
}

impl Upstreams for Fake {
    fn backend(&self, index: usize) -> Option<BackendFacts<'_>> {
        let b = self.balancers.get(index)?;
        Some(BackendFacts {
            mock: b.is_none(),
            hash_header: None,
        })
    }

    fn pick(
        &mut self,
        backend: usize,
        _peer: IpAddr,
        _hash: Option<&[u8]>,
        now_ms: i64,
    ) -> Option<Pick<'_>> {
        let b = self.balancers.get_mut(backend)?.as_mut()?;
        let id = b.pick(now_ms, PickHint::default())?;
        self.picks += 1;
        let ticket = b.start(id, now_ms);
        Some(Pick {
            ticket,
            addr: SocketAddr::from(([10, 0, 0, 1], 80)),
            host_header: self.hosts[backend].get(id.index()).map(|h| h.as_bytes()),
        })
    }
}

/// Whether every target of `backend` is behind an open breaker at `now`.
fn breaker_open(fake: &Fake, backend: usize, now: i64) -> bool {
    let b = fake.balancers[backend].as_ref().unwrap();
    b.targets(now)
        .all(|t| matches!(t.breaker, BreakerState::Open { retry_at_ms } if retry_at_ms > now))
}

/// What the contract says a request gets.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Status(u16),
    OAuth,
    Mock,
    Proxy,
}

#[test]
#[allow(clippy::too_many_lines)]
fn generated_requests_get_what_the_contract_says_and_quota_is_exact() {
    let routes_json = [
        // Keyed, with a body limit; its backend strips nothing and has a root.
        json!({"id": "keyed", "frontend": {"domains": ["shop.local/api"]}, "backend_ref": "b0",
               "max_body_bytes": 1000,
               "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]}),
        // Public, mock backend.
        json!({"id": "mocked", "frontend": {"domains": ["shop.local/mock"]}, "backend_ref": "m"}),
        // Public, keeps encoded slashes, keeps the client's host.
        json!({"id": "enc", "frontend": {"domains": ["enc.local"], "allow_encoded_slashes": true},
               "backend_ref": "b1", "keep_host": true}),
        // Public, its backend is missing from the snapshot.
        json!({"id": "lost", "frontend": {"domains": ["lost.local"]}, "backend_ref": "x"}),
    ];
    let backends_of = [0usize, 2, 1, 3];
    let roots = ["/v1", "", "", ""];
    let mut entries = Vec::new();
    let mut defs = Vec::new();
    for (slot, r) in routes_json.iter().enumerate() {
        let r = route(r.clone());
        defs.push(RouteDef::from_route(&r, slot));
        entries.push(RouteEntry {
            id: r.id.as_str().into(),
            api: None,
            flow: Flow::build(&r).unwrap(),
            backend: backends_of[slot],
            root: roots[slot].into(),
            keep_host: r.keep_host,
            max_body_bytes: r.max_body_bytes,
            allow_encoded_slashes: r.frontend.allow_encoded_slashes,
        });
    }
    let table = RouteTable::build(defs).unwrap();
    let flows: Vec<Flow> = entries.iter().map(|e| e.flow.clone()).collect();
    let keys: Vec<ApiKey> = ["k1", "k2"]
        .iter()
        .map(|id| {
            serde_json::from_value(json!({
                "clientId": id, "clientSecret": format!("secret-{id}"),
                "authorizedEntities": ["route_keyed"], "dailyQuota": DAILY,
            }))
            .unwrap()
        })
        .collect();
    let keys = KeyStore::build(&keys).unwrap();
    let pool = NodePool::new(Calendar::utc(), 1, &keys);
    let mut oauth_hosts = FxHashMap::default();
    oauth_hosts.insert(
        Box::<str>::from("auth.local"),
        (Box::<str>::from("api-a"), 0),
    );
    let tables = Tables {
        table: &table,
        routes: &entries,
        flows: &flows,
        keys: &keys,
        pool: &pool,
        oauth_hosts: &oauth_hosts,
    };
    let mut fake = Fake {
        balancers: vec![
            Some(Balancer::new(&backend(&["t0.up", "t1.up"]), 1).unwrap()),
            Some(Balancer::new(&backend(&["e0.up"]), 2).unwrap()),
            None,
        ],
        hosts: vec![
            vec!["t0.up".into(), "t1.up".into()],
            vec!["e0.up".into()],
            vec![],
        ],
        picks: 0,
    };
    let schedule = RetrySchedule::from_client(&ClientConfig {
        retries: 2,
        retry_initial_delay: 10,
        backoff_factor: 2,
        global_timeout: 500,
        ..ClientConfig::default()
    });
    let policy = HeaderPolicy {
        forwarded_for: ForwardedFor::Replace,
        request_id_header: "x-request-id",
    };
    let trace = crate::trace::TraceContext::for_request(None, [7; 16], [9; 8]);
    let mut shard = QuotaShard::new();
    let mut scratch = FlowScratch::new();
    let mut parser = HeadParser::default();
    let (mut path_buf, mut out) = (String::new(), Vec::new());
    let mut rng = Rng::new(0x5eed_1234_abcd_0001);
    let mut now = START;
    // Per key and day: the calls the flow admitted (the oracle's count).
    let mut used: FxHashMap<(&str, i64), u64> = FxHashMap::default();
    let mut seen = FxHashMap::<String, u64>::default();
    let hosts = [
        "shop.local",
        "enc.local",
        "lost.local",
        "auth.local",
        "nowhere.local",
    ];
    let paths = [
        "/api/items",
        "/api/./a/../items",
        "/api/a%2Fb",
        "/mock/x",
        "/x%2Fy",
        "/",
        TOKEN_PATH,
        JWKS_PATH,
    ];
    let creds: [Option<(&str, &str)>; 4] = [
        None,
        Some(("k1", "secret-k1")),
        Some(("k2", "secret-k2")),
        Some(("k1", "wrong")),
    ];
    for n in 0..20_000u32 {
        now += i64::try_from(rng.next_u64() % 25).unwrap();
        let host = *pick(&mut rng, &hosts);
        let path = *pick(&mut rng, &paths);
        let fragment = rng.next_u64() % 50 == 0;
        let method = *pick(&mut rng, &["GET", "POST", "HEAD"]);
        let cred = *pick(&mut rng, &creds);
        let size = *pick(
            &mut rng,
            &[None, Some(10u64), Some(8192), Some(8193), Some(10_000)],
        );
        let mut raw = format!("{method} {path}");
        if fragment {
            raw.push_str("?a=1#frag");
        }
        raw.push_str(&format!(" HTTP/1.1\r\nHost: {host}\r\n"));
        if let Some((id, secret)) = cred {
            raw.push_str(&format!(
                "Otoroshi-Client-Id: {id}\r\nOtoroshi-Client-Secret: {secret}\r\n"
            ));
        }
        if let Some(size) = size {
            raw.push_str(&format!("Content-Length: {size}\r\n"));
        }
        raw.push_str("\r\n");
        let Ok(Some(head)) = parser.parse_request(raw.as_bytes()) else {
            // The parser refuses a raw `#` in the target: no lifecycle for it.
            assert!(fragment, "{raw}");
            continue;
        };

        // The oracle.
        let canonical = match path {
            "/api/./a/../items" => "/api/items",
            p => p,
        };
        let encoded = canonical.contains("%2F");
        let oauth_path = path == TOKEN_PATH || path == JWKS_PATH;
        let routed = match (host, canonical) {
            ("shop.local", p) if p.starts_with("/api/") => Some(0),
            ("shop.local", p) if p.starts_with("/mock/") => Some(1),
            ("enc.local", _) => Some(2),
            ("lost.local", _) => Some(3),
            _ => None,
        };
        let day = (now - (START + 60_000)).div_euclid(DAY_MS) + 1;
        let mut flow_admits = None;
        let expect = if fragment {
            Expect::Status(400)
        } else if oauth_path && host == "auth.local" {
            // An OAuth2 endpoint reads at most 8 KiB.
            if size.is_some_and(|n| n > 8192) {
                Expect::Status(413)
            } else {
                Expect::OAuth
            }
        } else if encoded && routed.is_none_or(|slot| slot != 2) {
            Expect::Status(if routed.is_none() { 404 } else { 400 })
        } else {
            match routed {
                None => Expect::Status(404),
                Some(0) if size.is_some_and(|n| n > 1000) => Expect::Status(413),
                Some(0) => match cred {
                    // docs/phases.md: no credential 400, a wrong one 401.
                    None => Expect::Status(400),
                    Some((_, "wrong")) => Expect::Status(401),
                    Some((id, _)) => {
                        let count = used.entry((id, day)).or_default();
                        if *count < DAILY {
                            *count += 1;
                            flow_admits = Some(id);
                            Expect::Proxy
                        } else {
                            Expect::Status(429)
                        }
                    }
                },
                Some(1) => Expect::Mock,
                // Its one target's breaker may be open after failed attempts: then no target
                // can take the call.
                Some(2) if breaker_open(&fake, 1, now) => Expect::Status(503),
                Some(2) => Expect::Proxy,
                Some(_) => Expect::Status(502),
            }
        };

        out.clear();
        out.extend_from_slice(b"stale");
        let picks_before = fake.picks;
        let req = Request {
            head: &head,
            peer: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 5000),
            proto: "http",
            client_cert: None,
            now_ms: now,
            request_id: RequestId {
                node: "n1",
                core: 0,
                n: u64::from(n),
            },
            trace: &trace,
            policy: &policy,
            max_body: 1 << 20,
        };
        let state = CoreState {
            shard: &mut shard,
            scratch: &mut scratch,
        };
        let d = decide(&tables, &mut fake, state, &req, &mut path_buf, &mut out);
        let got = match &d.verdict {
            Verdict::Refuse(reply) => Expect::Status(reply.status),
            Verdict::OAuth { api_id, api, .. } => {
                assert_eq!((*api_id, *api), ("api-a", 0));
                Expect::OAuth
            }
            Verdict::Mock { backend } => {
                assert_eq!(*backend, 2);
                Expect::Mock
            }
            Verdict::Proxy { .. } => Expect::Proxy,
        };
        assert_eq!(got, expect, "request {n}: {raw:?} -> {d:?}");
        *seen.entry(format!("{got:?}")).or_default() += 1;
        assert_eq!(
            d.admitted,
            flow_admits.is_some()
                || matches!(
                    expect,
                    Expect::Mock | Expect::Proxy | Expect::Status(502 | 503)
                ),
            "request {n}: {raw:?}"
        );
        assert_eq!(
            d.key
                .map(|k| keys.iter().find(|e| e.index() == k).unwrap().client_id()),
            flow_admits.or(match (routed, cred, &expect) {
                (Some(0), Some((id, s)), Expect::Status(429)) if s != "wrong" => Some(id),
                _ => None,
            }),
            "request {n}: {raw:?}"
        );
        if d.route == Some(0) && matches!(expect, Expect::Proxy | Expect::Status(429)) {
            assert!(
                d.quota.is_some(),
                "request {n}: a keyed answer carries quota state"
            );
        }
        match d.verdict {
            Verdict::Proxy {
                backend, ticket, ..
            } => {
                assert_eq!(fake.picks, picks_before + 1);
                let sent = String::from_utf8(out.clone()).unwrap();
                // The keyed route's frontend `shop.local/api` strips its prefix (`strip_path`
                // is on by default) and its backend has the root `/v1`.
                let upstream_path = if backend == 0 {
                    format!("/v1{}", canonical.strip_prefix("/api").unwrap())
                } else {
                    canonical.to_owned()
                };
                assert!(
                    sent.starts_with(&format!("{method} {upstream_path} HTTP/1.1\r\nhost: ")),
                    "request {n}: {sent}"
                );
                let sent_host = sent.lines().nth(1).unwrap();
                if backend == 1 {
                    assert_eq!(sent_host, format!("host: {host}"), "keep_host");
                } else {
                    assert!(sent_host == "host: t0.up" || sent_host == "host: t1.up");
                }
                // The keyed route's credential fields never go upstream; a public route
                // forwards the client's fields as they are.
                assert_eq!(
                    sent.to_ascii_lowercase().contains("otoroshi-client-secret"),
                    backend == 1 && cred.is_some(),
                    "request {n}: {sent}"
                );
                assert!(
                    sent.contains(&format!("\r\nx-request-id: n1-0-{n}\r\n")),
                    "request {n}: {sent}"
                );
                // The attempts after the decision: the upstream fails now and then; every ticket
                // is settled.
                let b = fake.balancers[backend].as_mut().unwrap();
                let mut attempts = Attempts::new(schedule, method != "POST");
                let mut ticket = ticket;
                loop {
                    now += 1;
                    if rng.next_u64() % 10 != 0 {
                        b.finish(ticket, Outcome::Success, now);
                        break;
                    }
                    let error = *pick(
                        &mut rng,
                        &[
                            UpstreamError::ConnectFailed,
                            UpstreamError::Timeout,
                            UpstreamError::Closed,
                        ],
                    );
                    let (outcome, step) = attempts.failed(error, rng.next_u64() % 2 == 0);
                    let failed = ticket.target();
                    b.finish(ticket, outcome, now);
                    match step {
                        Step::Answer(reply) => {
                            assert!(reply.status >= 500, "{reply:?}");
                            break;
                        }
                        Step::Retry { delay_ms, counted } => {
                            now += i64::try_from(delay_ms).unwrap();
                            let next = if counted {
                                b.next_for_retry(now, PickHint::default(), failed)
                            } else {
                                b.pick(now, PickHint::default())
                            };
                            match next {
                                Some(id) => ticket = b.start(id, now),
                                None => break,
                            }
                        }
                    }
                }
                for t in b.targets(now) {
                    assert_eq!(
                        t.in_flight, 0,
                        "request {n}: a ticket of {} unsettled",
                        t.hostname
                    );
                }
            }
            _ => {
                assert_eq!(
                    fake.picks, picks_before,
                    "request {n}: no target without Proxy"
                );
                assert_eq!(out, b"stale", "request {n}: no upstream head without Proxy");
            }
        }
    }
    // The run crossed midnight and every verdict occurred.
    assert!(now - START > 2 * 60_000, "{now}");
    assert!(used.keys().any(|(_, day)| *day == 1), "{used:?}");
    for kind in [
        "Proxy",
        "Mock",
        "OAuth",
        "Status(400)",
        "Status(401)",
        "Status(404)",
        "Status(413)",
        "Status(429)",
        "Status(502)",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "{kind} never seen: {seen:?}"
        );
    }
}

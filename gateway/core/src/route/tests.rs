use proptest::prelude::*;

use super::*;

fn def(id: &str, domains: &[&str], slot: usize) -> RouteDef {
    RouteDef {
        id: id.to_owned(),
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        exact: false,
        strip_path: true,
        methods: Vec::new(),
        headers: Vec::new(),
        query: Vec::new(),
        slot,
    }
}

fn no_headers(_: &str) -> Option<&'static [u8]> {
    None
}

fn find(t: &RouteTable, host: &str, path: &str) -> Option<usize> {
    t.lookup(host.as_bytes(), b"GET", path, b"", no_headers)
        .map(|m| m.slot)
}

#[test]
fn host_only_route_matches_every_path() {
    let t = RouteTable::build([def("a", &["api.example.com"], 1)]).unwrap();
    assert_eq!(find(&t, "api.example.com", "/"), Some(1));
    assert_eq!(find(&t, "api.example.com", "/x/y"), Some(1));
    assert_eq!(find(&t, "other.example.com", "/"), None);
}

#[test]
fn host_matching_ignores_case_port_and_trailing_dot() {
    let t = RouteTable::build([def("a", &["Api.Example.com"], 1)]).unwrap();
    assert_eq!(find(&t, "API.EXAMPLE.COM", "/"), Some(1));
    assert_eq!(find(&t, "api.example.com:8080", "/"), Some(1));
    assert_eq!(find(&t, "api.example.com.", "/"), Some(1));
    assert_eq!(find(&t, "api.example.com.:443", "/"), Some(1));
}

#[test]
fn ipv6_host_literal() {
    let t = RouteTable::build([def("a", &["[::1]"], 1)]).unwrap();
    assert_eq!(find(&t, "[::1]:8080", "/"), Some(1));
    assert_eq!(find(&t, "[::1]", "/"), Some(1));
}

#[test]
fn hostile_hosts_do_not_match_or_panic() {
    let t = RouteTable::build([def("a", &["*"], 1)]).unwrap();
    assert_eq!(find(&t, "", "/"), None);
    assert_eq!(find(&t, ":80", "/"), None);
    assert_eq!(find(&t, &"a".repeat(300), "/"), None);
    assert_eq!(
        t.lookup("h\u{e9}".as_bytes(), b"GET", "/", b"", no_headers),
        None
    );
    assert_eq!(t.lookup(b"a b", b"GET", "/", b"", no_headers), None);
    assert_eq!(t.lookup(b"[::1", b"GET", "/", b"", no_headers), None);
}

#[test]
fn longest_prefix_wins() {
    let t = RouteTable::build([
        def("root", &["h"], 1),
        def("api", &["h/api"], 2),
        def("v1", &["h/api/v1"], 3),
    ])
    .unwrap();
    assert_eq!(find(&t, "h", "/"), Some(1));
    assert_eq!(find(&t, "h", "/api"), Some(2));
    assert_eq!(find(&t, "h", "/api/"), Some(2));
    assert_eq!(find(&t, "h", "/api/v2/x"), Some(2));
    assert_eq!(find(&t, "h", "/api/v1"), Some(3));
    assert_eq!(find(&t, "h", "/api/v1/users/7"), Some(3));
}

#[test]
fn prefixes_respect_segment_boundaries() {
    let t = RouteTable::build([def("api", &["h/api"], 2)]).unwrap();
    assert_eq!(find(&t, "h", "/apis"), None);
    assert_eq!(find(&t, "h", "/api-x"), None);
    assert_eq!(find(&t, "h", "/ap"), None);
    assert_eq!(find(&t, "h", "/api/x"), Some(2));
}

#[test]
fn trailing_slash_in_route_path_is_ignored() {
    let t = RouteTable::build([def("api", &["h/api/"], 2)]).unwrap();
    assert_eq!(find(&t, "h", "/api"), Some(2));
    assert_eq!(find(&t, "h", "/api/x"), Some(2));
}

#[test]
fn exact_routes_match_only_the_whole_path() {
    let mut d = def("exact", &["h/health"], 5);
    d.exact = true;
    let t = RouteTable::build([d, def("root", &["h"], 1)]).unwrap();
    assert_eq!(find(&t, "h", "/health"), Some(5));
    assert_eq!(find(&t, "h", "/health/"), Some(1));
    assert_eq!(find(&t, "h", "/health/x"), Some(1));
}

#[test]
fn wildcard_hosts_by_specificity() {
    let t = RouteTable::build([
        def("any", &["*"], 1),
        def("wide", &["*.example.com"], 2),
        def("narrow", &["*.eu.example.com"], 3),
        def("exact", &["www.example.com"], 4),
    ])
    .unwrap();
    assert_eq!(find(&t, "www.example.com", "/"), Some(4));
    assert_eq!(find(&t, "a.example.com", "/"), Some(2));
    assert_eq!(find(&t, "a.b.example.com", "/"), Some(2));
    assert_eq!(find(&t, "x.eu.example.com", "/"), Some(3));
    assert_eq!(find(&t, "example.com", "/"), Some(1));
    assert_eq!(find(&t, "other.org", "/x"), Some(1));
}

#[test]
fn less_specific_host_is_tried_when_the_path_does_not_match() {
    let t = RouteTable::build([
        def("exact-api", &["www.example.com/api"], 1),
        def("wild-root", &["*.example.com"], 2),
    ])
    .unwrap();
    assert_eq!(find(&t, "www.example.com", "/api/x"), Some(1));
    assert_eq!(find(&t, "www.example.com", "/other"), Some(2));
}

#[test]
fn methods_filter_and_fall_through() {
    let mut post = def("post", &["h/items"], 1);
    post.methods = vec!["POST".into()];
    let t = RouteTable::build([post, def("get", &["h/items"], 2), def("root", &["h"], 3)]).unwrap();
    let m = |method: &[u8], path: &str| {
        t.lookup(b"h", method, path, b"", no_headers)
            .map(|m| m.slot)
    };
    assert_eq!(m(b"POST", "/items"), Some(1));
    assert_eq!(m(b"GET", "/items"), Some(2));
    assert_eq!(m(b"post", "/items"), Some(2), "methods are case-sensitive");
}

#[test]
fn constrained_route_tried_before_unconstrained_with_same_prefix() {
    // The unconstrained route comes first in the config, yet the constrained one is tried first.
    let mut v2 = def("v2", &["h/api"], 2);
    v2.headers = vec![("X-Version".into(), "2".into())];
    let t = RouteTable::build([def("v1", &["h/api"], 1), v2]).unwrap();
    let with = |name: &str| -> Option<&'static [u8]> {
        (name.eq_ignore_ascii_case("x-version")).then_some(b"2".as_slice())
    };
    assert_eq!(
        t.lookup(b"h", b"GET", "/api", b"", with).map(|m| m.slot),
        Some(2)
    );
    assert_eq!(find(&t, "h", "/api"), Some(1));
}

#[test]
fn query_constraints() {
    let mut d = def("q", &["h"], 1);
    d.query = vec![
        ("version".into(), "2".into()),
        ("flag".into(), String::new()),
    ];
    let t = RouteTable::build([d]).unwrap();
    let q = |query: &[u8]| {
        t.lookup(b"h", b"GET", "/", query, no_headers)
            .map(|m| m.slot)
    };
    assert_eq!(q(b"version=2&flag"), Some(1));
    assert_eq!(q(b"a=1&flag=&version=2"), Some(1));
    assert_eq!(q(b"version=3&flag"), None);
    assert_eq!(q(b"version=2"), None);
    assert_eq!(q(b""), None);
}

#[test]
fn strip_path_and_upstream_path() {
    let t = RouteTable::build([def("api", &["h/api"], 1)]).unwrap();
    let m = t
        .lookup(b"h", b"GET", "/api/users", b"", no_headers)
        .unwrap();
    assert_eq!(m.prefix_len, 4);
    assert_eq!(m.upstream_path("/api/users"), "/users");
    assert_eq!(m.upstream_path("/api"), "/");
    let mut keep = def("keep", &["k/api"], 2);
    keep.strip_path = false;
    let t = RouteTable::build([keep]).unwrap();
    let m = t
        .lookup(b"k", b"GET", "/api/users", b"", no_headers)
        .unwrap();
    assert_eq!(m.upstream_path("/api/users"), "/api/users");
}

#[test]
fn several_domains_per_route() {
    let t = RouteTable::build([def("multi", &["a.com/x", "b.com"], 9)]).unwrap();
    assert_eq!(find(&t, "a.com", "/x/1"), Some(9));
    assert_eq!(find(&t, "a.com", "/y"), None);
    assert_eq!(find(&t, "b.com", "/y"), Some(9));
    assert_eq!(t.len(), 1);
}

#[test]
fn build_rejects_malformed_domains() {
    for bad in ["", "/path", "a.*.com", "*example.com", "*.", "foo*.com"] {
        let err = RouteTable::build([def("r", &[bad], 0)]).unwrap_err();
        assert_eq!(err.route, "r");
        assert_eq!(err.domain, bad);
    }
    let long = format!("h/{}", "a".repeat(MAX_PREFIX + 1));
    assert!(RouteTable::build([def("r", &[&long], 0)]).is_err());
}

#[test]
fn ten_thousand_routes() {
    let defs =
        (0..10_000).map(|i| def(&format!("r{i}"), &[&format!("h{}.com/p{}", i % 100, i)], i));
    let t = RouteTable::build(defs).unwrap();
    assert_eq!(t.len(), 10_000);
    assert_eq!(find(&t, "h7.com", "/p4507/x"), Some(4507));
    assert_eq!(find(&t, "h7.com", "/p4508"), None);
}

#[test]
fn from_model_route() {
    let route: gateway_model::entity::Route = serde_json::from_str(
        r#"{"id":"r1","frontend":{"domains":["api.local/v1"],"strip_path":false,"methods":["GET"],
            "headers":{"X-A":"1"},"query":{"q":"2"}},"backend_ref":"b"}"#,
    )
    .unwrap();
    let d = RouteDef::from_route(&route, 4);
    assert_eq!(d.domains, vec!["api.local/v1"]);
    assert!(!d.strip_path);
    assert_eq!(d.methods, vec!["GET"]);
    assert_eq!(d.headers, vec![("X-A".into(), "1".into())]);
    assert_eq!(d.query, vec![("q".into(), "2".into())]);
    assert_eq!(d.slot, 4);
}

/// The obvious implementation: scan everything, keep the longest admissible prefix.
fn reference(routes: &[(String, bool)], path: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, (prefix, exact)) in routes.iter().enumerate() {
        let p = prefix.trim_end_matches('/');
        let ok = if *exact {
            path == p
        } else {
            path.starts_with(p) && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
        };
        if ok && best.is_none_or(|(len, _)| p.len() > len) {
            best = Some((p.len(), i));
        }
    }
    best.map(|(_, i)| i)
}

fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "ab", "api", "v1", "x"]).prop_map(str::to_owned)
}

fn path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..5), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p = String::new();
        for s in segs {
            p.push('/');
            p.push_str(&s);
        }
        if slash || p.is_empty() {
            p.push('/');
        }
        p
    })
}

proptest! {
    #[test]
    fn longest_match_agrees_with_reference(
        routes in prop::collection::vec((path(), any::<bool>()), 1..30),
        request in path(),
    ) {
        // Keep the first route of each (normalised prefix, exact) pair: duplicates tie by order.
        let mut seen = std::collections::HashSet::new();
        let routes: Vec<(String, bool)> = routes
            .into_iter()
            .filter(|(p, e)| seen.insert((p.trim_end_matches('/').to_owned(), *e)))
            .collect();
        // An exact and a prefix route on the same prefix: the reference prefers the first listed,
        // the table the first listed too (both unconstrained): keep them comparable.
        let defs = routes.iter().enumerate().map(|(i, (p, exact))| {
            let mut d = def(&format!("r{i}"), &[&format!("h{p}")], i);
            d.exact = *exact;
            d
        });
        let table = RouteTable::build(defs).unwrap();
        let got = find(&table, "h", &request);
        let want = reference(&routes, &request);
        match (got, want) {
            (Some(g), Some(w)) => {
                let norm = |i: usize| routes[i].0.trim_end_matches('/').len();
                prop_assert_eq!(norm(g), norm(w), "same prefix length");
            }
            (g, w) => prop_assert_eq!(g, w),
        }
    }

    #[test]
    fn lookup_never_panics(host in prop::collection::vec(any::<u8>(), 0..300),
                           method in prop::collection::vec(any::<u8>(), 0..10),
                           path in ".{0,64}", query in prop::collection::vec(any::<u8>(), 0..64)) {
        let t = RouteTable::build([def("a", &["*"], 0), def("b", &["x.com/a"], 1)]).unwrap();
        let _ = t.lookup(&host, &method, &path, &query, no_headers);
    }
}

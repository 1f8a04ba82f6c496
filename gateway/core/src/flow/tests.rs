use gateway_model::entity::{ApiKey, Route};
use serde_json::json;

use super::*;
use crate::apikey::KeyRejection;

const NOW: i64 = 1_795_000_000_000;

fn route(plugins: serde_json::Value) -> Route {
    serde_json::from_value(json!({
        "id": "r1", "frontend": {"domains": ["api.local"]}, "backend_ref": "b", "plugins": plugins
    }))
    .unwrap()
}

fn apikey_plugin() -> serde_json::Value {
    json!({"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}})
}

fn store(extra: serde_json::Value) -> KeyStore {
    let mut k = json!({"clientId": "k1", "clientSecret": "s1", "authorizedEntities": ["route_r1"]});
    for (f, v) in extra.as_object().unwrap() {
        k[f] = v.clone();
    }
    let key: ApiKey = serde_json::from_value(k).unwrap();
    KeyStore::build(&[key]).unwrap()
}

fn run(
    flow: &Flow,
    keys: &KeyStore,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    admission: &mut dyn Admission,
) -> Result<Option<String>, Rejection> {
    let req = RequestView {
        method,
        host: "api.local",
        path,
        headers,
        client_cert: None,
    };
    let mut scratch = FlowScratch::new();
    flow.on_request(&req, keys, admission, NOW, &mut scratch)
        .map(|a| a.key.map(|k| k.client_id().to_owned()))
}

const GOOD: &[(&str, &[u8])] = &[
    ("Otoroshi-Client-Id", b"k1"),
    ("Otoroshi-Client-Secret", b"s1"),
];

/// Admits `left` calls, then refuses with the daily quota; counts every call it sees.
struct Countdown {
    left: u32,
    seen: u32,
}

impl Admission for Countdown {
    fn admit(&mut self, _key: &KeyEntry, _now_ms: i64) -> Result<(), QuotaExceeded> {
        self.seen += 1;
        if self.left == 0 {
            return Err(QuotaExceeded::Daily {
                retry_after_secs: 42,
            });
        }
        self.left -= 1;
        Ok(())
    }
}

#[test]
fn keyless_route_lets_everyone_through() {
    let flow = Flow::build(&route(json!([]))).unwrap();
    assert!(matches!(flow.consumer(), Consumer::Keyless));
    assert_eq!(
        run(&flow, &store(json!({})), "POST", "/x", &[], &mut AdmitAll),
        Ok(None)
    );
}

#[test]
fn apikey_route_requires_a_valid_key() {
    let flow = Flow::build(&route(json!([apikey_plugin()]))).unwrap();
    let keys = store(json!({}));
    let err = run(&flow, &keys, "GET", "/", &[], &mut AdmitAll).unwrap_err();
    assert_eq!(err, Rejection::Key(KeyRejection::NoKey));
    assert_eq!(err.phase(), Phase::Consumer);
    assert_eq!(err.reply().status, 400);
    assert_eq!(err.reply().code, "no_api_key");
    assert_eq!(
        run(&flow, &keys, "GET", "/", GOOD, &mut AdmitAll),
        Ok(Some("k1".into()))
    );
    let bad: &[(&str, &[u8])] = &[
        ("Otoroshi-Client-Id", b"k1"),
        ("Otoroshi-Client-Secret", b"nope"),
    ];
    let err = run(&flow, &keys, "GET", "/", bad, &mut AdmitAll).unwrap_err();
    assert_eq!(err.reply().status, 401);
}

#[test]
fn disabled_apikey_plugin_means_keyless() {
    let mut p = apikey_plugin();
    p["enabled"] = json!(false);
    let flow = Flow::build(&route(json!([p]))).unwrap();
    assert!(matches!(flow.consumer(), Consumer::Keyless));
}

#[test]
fn key_restrictions_run_after_the_consumer() {
    let flow = Flow::build(&route(json!([apikey_plugin()]))).unwrap();
    let keys = store(json!({"restrictions": {"enabled": true,
        "forbidden": [{"method": "*", "path": "/admin/.*"}],
        "notFound": [{"method": "DELETE", "path": "/.*"}]}}));
    let err = run(&flow, &keys, "GET", "/admin/users", GOOD, &mut AdmitAll).unwrap_err();
    assert_eq!(err, Rejection::Restricted(restriction::Outcome::Forbidden));
    assert_eq!(
        (err.phase(), err.reply().status, err.reason()),
        (Phase::Restrictions, 403, "restriction_forbidden")
    );
    let err = run(&flow, &keys, "DELETE", "/x", GOOD, &mut AdmitAll).unwrap_err();
    assert_eq!(err.reply().status, 404);
    assert_eq!(
        run(&flow, &keys, "GET", "/public", GOOD, &mut AdmitAll),
        Ok(Some("k1".into()))
    );
}

#[test]
fn route_level_restrictions_use_the_plugin_spelling() {
    let flow = Flow::build(&route(json!([{
        "plugin": "cp:otoroshi.next.plugins.NgRestrictions",
        "config": {"allow_last": false, "allowed": [{"method": "GET", "path": "/ok/.*"}],
                   "not_found": [], "forbidden": []}
    }])))
    .unwrap();
    let keys = store(json!({}));
    assert_eq!(
        run(&flow, &keys, "GET", "/ok/1", &[], &mut AdmitAll),
        Ok(None)
    );
    let err = run(&flow, &keys, "GET", "/other", &[], &mut AdmitAll).unwrap_err();
    assert_eq!(
        err.reply().status,
        404,
        "whitelist mode: not allowed is 404"
    );
}

#[test]
fn read_only_route() {
    let flow = Flow::build(&route(
        json!([{"plugin": "cp:otoroshi.next.plugins.ReadOnlyCalls"}]),
    ))
    .unwrap();
    let keys = store(json!({}));
    for m in ["GET", "HEAD", "OPTIONS"] {
        assert_eq!(
            run(&flow, &keys, m, "/", &[], &mut AdmitAll),
            Ok(None),
            "{m}"
        );
    }
    for m in ["POST", "PUT", "PATCH", "DELETE", "get"] {
        let err = run(&flow, &keys, m, "/", &[], &mut AdmitAll).unwrap_err();
        assert_eq!(
            (err, err.reply().status),
            (Rejection::ReadOnlyRoute, 405),
            "{m}"
        );
    }
}

#[test]
fn quota_phase_refuses_with_429_and_refused_calls_never_reach_it() {
    let flow = Flow::build(&route(json!([apikey_plugin()]))).unwrap();
    let keys = store(
        json!({"restrictions": {"enabled": true, "forbidden": [{"method": "*", "path": "/no"}]}}),
    );
    let mut quota = Countdown { left: 2, seen: 0 };
    assert!(run(&flow, &keys, "GET", "/", GOOD, &mut quota).is_ok());
    // Refused before the quota phase: no consumption, not even a look.
    assert!(run(&flow, &keys, "GET", "/", &[], &mut quota).is_err());
    assert!(run(&flow, &keys, "GET", "/no", GOOD, &mut quota).is_err());
    assert_eq!(quota.seen, 1);
    assert!(run(&flow, &keys, "GET", "/", GOOD, &mut quota).is_ok());
    let err = run(&flow, &keys, "GET", "/", GOOD, &mut quota).unwrap_err();
    assert_eq!(
        err,
        Rejection::Quota(QuotaExceeded::Daily {
            retry_after_secs: 42
        })
    );
    assert_eq!(
        (err.phase(), err.reply().status, err.reason()),
        (Phase::Quota, 429, "quota_daily")
    );
    assert_eq!(
        QuotaExceeded::Throttled {
            retry_after_secs: 1
        }
        .retry_after_secs(),
        1
    );
    assert_eq!(quota.seen, 3);
}

#[test]
fn keyless_routes_have_no_quota() {
    let flow = Flow::build(&route(json!([]))).unwrap();
    let mut quota = Countdown { left: 0, seen: 0 };
    assert_eq!(
        run(&flow, &store(json!({})), "GET", "/", &[], &mut quota),
        Ok(None)
    );
    assert_eq!(quota.seen, 0);
}

#[test]
fn bad_plugin_configs_are_flow_errors() {
    let err = Flow::build(&route(json!([{
        "plugin": "cp:otoroshi.next.plugins.NgRestrictions",
        "config": {"forbidden": [{"method": "GET", "path": "(unclosed"}]}
    }])))
    .unwrap_err();
    assert!(matches!(err, FlowError::Restrictions { .. }), "{err}");
    assert!(err.to_string().contains("route `r1`"));
    let err = Flow::build(&route(json!([{
        "plugin": "cp:otoroshi.next.plugins.NgRestrictions", "config": {"forbidden": 3}
    }])))
    .unwrap_err();
    assert!(matches!(err, FlowError::Restrictions { .. }), "{err}");
}

#[test]
fn rejection_reasons_are_distinct() {
    let all = [
        Rejection::Key(KeyRejection::NoKey),
        Rejection::Restricted(restriction::Outcome::Forbidden),
        Rejection::Restricted(restriction::Outcome::NotFound),
        Rejection::ReadOnlyRoute,
        Rejection::Quota(QuotaExceeded::Throttled {
            retry_after_secs: 1,
        }),
        Rejection::Quota(QuotaExceeded::Daily {
            retry_after_secs: 1,
        }),
        Rejection::Quota(QuotaExceeded::Monthly {
            retry_after_secs: 1,
        }),
    ];
    let reasons: std::collections::HashSet<_> = all.iter().map(|r| r.reason()).collect();
    assert_eq!(reasons.len(), all.len());
    let phases: Vec<_> = all.iter().map(|r| r.phase().name()).collect();
    assert_eq!(
        phases,
        [
            "consumer",
            "restrictions",
            "restrictions",
            "read_only",
            "quota",
            "quota",
            "quota"
        ]
    );
    // Every reason has its own metrics slot (none falls into `other`).
    use crate::apikey::JwtError;
    let keys = [
        KeyRejection::NoKey,
        KeyRejection::UnknownKey,
        KeyRejection::Malformed,
        KeyRejection::BadSecret,
        KeyRejection::BadBearer,
        KeyRejection::ClientIdOnlyNotAllowed,
        KeyRejection::Disabled,
        KeyRejection::Expired,
        KeyRejection::NotAuthorized,
        KeyRejection::ConstrainedOnly,
        KeyRejection::RoutingMismatch,
        KeyRejection::ReadOnly,
        KeyRejection::Jwt(JwtError::Malformed),
        KeyRejection::Jwt(JwtError::Algorithm),
        KeyRejection::Jwt(JwtError::NoClientId),
        KeyRejection::Jwt(JwtError::Signature),
        KeyRejection::Jwt(JwtError::Expired),
        KeyRejection::Jwt(JwtError::NotYetValid),
        KeyRejection::Jwt(JwtError::IssuedInFuture),
        KeyRejection::Jwt(JwtError::Lifespan),
    ]
    .map(Rejection::Key);
    let certs = [CertRejection::Missing, CertRejection::NotMatching].map(Rejection::ClientCert);
    let other = REJECTION_REASONS.len() - 1;
    for r in all.iter().chain(&keys).chain(&certs) {
        assert_ne!(r.slot(), other, "{} has no metrics slot", r.reason());
        assert_eq!(REJECTION_REASONS[r.slot()], r.reason());
    }
}

#[test]
fn example_entities_keyed_route() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/entities.json");
    let bytes = std::fs::read(path).unwrap();
    let doc = gateway_model::import::import_document(&bytes, None).unwrap();
    assert!(doc.is_clean());
    let keys = KeyStore::build(&doc.entities.apikeys).unwrap();
    let public = doc
        .entities
        .routes
        .iter()
        .find(|r| r.id == "route_public")
        .unwrap();
    let keyed = doc
        .entities
        .routes
        .iter()
        .find(|r| r.id == "route_keyed")
        .unwrap();
    let public = Flow::build(public).unwrap();
    let keyed = Flow::build(keyed).unwrap();
    let demo: &'static [(&'static str, &'static [u8])] = &[
        ("Otoroshi-Client-Id", b"demo-client"),
        ("Otoroshi-Client-Secret", b"demo-secret-0123456789"),
    ];
    let mut scratch = FlowScratch::new();
    let req = |h: &'static [(&'static str, &'static [u8])]| RequestView {
        method: "GET",
        host: "api.tollgate.local",
        path: "/",
        headers: h,
        client_cert: None,
    };
    assert!(
        public
            .on_request(&req(&[]), &keys, &mut AdmitAll, NOW, &mut scratch)
            .unwrap()
            .key
            .is_none()
    );
    let ok = keyed
        .on_request(&req(demo), &keys, &mut AdmitAll, NOW, &mut scratch)
        .unwrap();
    assert_eq!(ok.key.unwrap().quotas().daily, 500);
    let err = keyed
        .on_request(&req(&[]), &keys, &mut AdmitAll, NOW, &mut scratch)
        .unwrap_err();
    assert_eq!(err.reply().status, 400);
}

fn cert(subject: &str, issuer: &str, serial: &str) -> ClientCert {
    ClientCert {
        subject: subject.to_owned(),
        issuer: issuer.to_owned(),
        serial: serial.to_owned(),
        sans: vec![],
        sha256: "00".to_owned(),
        chain: vec![ChainEntry {
            subject: subject.to_owned(),
            issuer: issuer.to_owned(),
            serial: serial.to_owned(),
        }],
        pem_escaped: String::new(),
        dns_json: "[]".to_owned(),
        chain_json: "[]".to_owned(),
    }
}

#[test]
fn client_certificate_validators() {
    let flow = Flow::build(&route(json!([
        {"plugin": "cp:otoroshi.next.plugins.NgHasClientCertValidator", "exclude": ["/open/.*"]},
        {"plugin": "cp:otoroshi.next.plugins.NgHasClientCertMatchingValidator", "config": {
            "serial_numbers": ["0x00AB"], "subject_dns": ["CN=*.partner.test, O=Partner"],
            "regex_issuer_dns": ["CN=Team CA .*"]}}
    ])))
    .unwrap();
    let keys = store(json!({}));
    let check = |path: &str, c: Option<&ClientCert>| {
        let req = RequestView {
            method: "GET",
            host: "api.local",
            path,
            headers: &[] as &[(&str, &[u8])],
            client_cert: c,
        };
        let mut scratch = FlowScratch::new();
        flow.on_request(&req, &keys, &mut AdmitAll, NOW, &mut scratch)
            .map(|_| ())
    };
    let missing = Rejection::ClientCert(CertRejection::Missing);
    assert_eq!(check("/x", None), Err(missing));
    assert_eq!(missing.reply().status, 401);
    // The matching validator still applies where the presence check is excluded.
    assert_eq!(check("/open/x", None), Err(missing));
    let by_serial = cert("CN=other", "CN=Else", "ab");
    let by_subject = cert("CN=api.partner.test, O=Partner", "CN=Else", "1");
    let by_issuer = cert("CN=x", "CN=Team CA 2", "2");
    let stranger = cert("CN=api.partner.test, O=Other", "CN=Evil CA", "3");
    for ok in [&by_serial, &by_subject, &by_issuer] {
        assert_eq!(check("/x", Some(ok)), Ok(()), "{ok:?}");
    }
    let refused = check("/x", Some(&stranger)).unwrap_err();
    assert_eq!(refused, Rejection::ClientCert(CertRejection::NotMatching));
    assert_eq!(refused.reply().status, 403);
    assert_eq!(normalise_serial("0x00:AB"), "ab");
    // Bad configs are flow errors.
    assert!(
        Flow::build(&route(
            json!([{"plugin": "NgHasClientCertMatchingValidator",
        "config": {"regex_subject_dns": ["("]}}])
        ))
        .is_err()
    );
    assert!(
        Flow::build(&route(json!([{"plugin": "NgClientCertChainHeader",
        "config": {"send_pem": true, "pem_header_name": "bad name"}}])))
        .is_err()
    );
}

#[test]
fn plugin_scopes_include_and_exclude_full_paths() {
    let flow = Flow::build(&route(json!([{
        "plugin": "cp:otoroshi.next.plugins.ReadOnlyCalls",
        "include": ["/admin/.*"], "exclude": ["/admin/public/.*"]
    }])))
    .unwrap();
    let keys = store(json!({}));
    let post = |path| run(&flow, &keys, "POST", path, &[], &mut AdmitAll);
    assert_eq!(post("/admin/users"), Err(Rejection::ReadOnlyRoute));
    assert_eq!(post("/admin/public/x"), Ok(None));
    assert_eq!(post("/other"), Ok(None));
    // A full match: a path that only contains an included one is not included.
    assert_eq!(post("/x/admin/users"), Ok(None));
    let err = Flow::build(&route(json!([{
        "plugin": "cp:otoroshi.next.plugins.ReadOnlyCalls", "exclude": ["(unclosed"]
    }])))
    .unwrap_err();
    assert!(matches!(err, FlowError::Scope { .. }), "{err}");
}

#[test]
fn header_plugins_are_selected_by_their_scopes() {
    let flow = Flow::build(&route(json!([
        {"plugin": "AdditionalHeadersIn", "config": {"headers": {"X-All": "1"}}},
        {"plugin": "AdditionalHeadersIn", "include": ["/v2/.*"],
            "config": {"headers": {"X-V2": "2"}}},
        {"plugin": "AdditionalHeadersOut", "exclude": ["/v2/.*"],
            "config": {"headers": {"X-Out": "3"}}},
    ])))
    .unwrap();
    let names = |added: &AddedHeaders, path: &str| -> Vec<String> {
        added
            .selected(added.select(path))
            .iter()
            .map(|h| h.name.to_string())
            .collect()
    };
    let (added_in, added_out) = (flow.headers_in(), flow.headers_out());
    assert_eq!(
        (added_in.select("/v1"), added_in.select("/v2/x")),
        (0b01, 0b11)
    );
    assert_eq!(names(added_in, "/v1"), ["X-All"]);
    assert_eq!(names(added_in, "/v2/x"), ["X-All", "X-V2"]);
    assert_eq!(
        (names(added_out, "/v1"), names(added_out, "/v2/x")),
        (vec!["X-Out".to_owned()], vec![])
    );
    assert!(!added_in.is_empty() && !added_out.is_empty());
    assert!(
        Flow::build(&route(json!([])))
            .unwrap()
            .headers_in()
            .is_empty()
    );
}

#[test]
fn cert_header_plugins_are_selected_by_their_scopes() {
    let flow = Flow::build(&route(json!([
        {"plugin": "NgClientCertChainHeader", "config": {"send_dns": true}},
        {"plugin": "NgClientCertChainHeader", "include": ["/v2/.*"],
            "config": {"send_chain": true}},
    ])))
    .unwrap();
    let plugins = flow.cert_headers();
    let c = cert("CN=a", "CN=b", "1");
    let fields = |mask: u64| -> Vec<String> {
        plugins
            .selected(mask)
            .flat_map(|h| h.fields(&c))
            .map(|(name, _)| name.to_owned())
            .collect()
    };
    assert_eq!(
        (plugins.select("/v1"), plugins.select("/v2/x")),
        (0b01, 0b11)
    );
    assert_eq!(fields(plugins.select("/v1")), ["X-Client-Cert-DNs"]);
    assert_eq!(fields(0b11), ["X-Client-Cert-DNs", "X-Client-Cert-Chain"]);
    assert_eq!(fields(0b10), ["X-Client-Cert-Chain"]);
    // A client's own field of a name a selected plugin writes is dropped; others stay.
    let dns = plugins.selected(0b01).next().unwrap();
    assert!(dns.sets(b"x-client-cert-dns") && !dns.sets(b"X-Client-Cert-Chain"));
}

#[test]
fn at_most_64_header_plugins_of_each_kind() {
    let many = |n: usize, plugin: &str, config: serde_json::Value| {
        route(serde_json::Value::Array(
            (0..n)
                .map(|_| json!({"plugin": plugin, "config": config}))
                .collect(),
        ))
    };
    let headers = json!({"headers": {"X-A": "1"}});
    let flow = Flow::build(&many(64, "AdditionalHeadersIn", headers.clone())).unwrap();
    assert_eq!(flow.headers_in().select("/"), u64::MAX);
    let err = Flow::build(&many(65, "AdditionalHeadersIn", headers)).unwrap_err();
    assert!(matches!(err, FlowError::Headers { .. }), "{err}");
    let chain = json!({"send_chain": true});
    let flow = Flow::build(&many(64, "NgClientCertChainHeader", chain.clone())).unwrap();
    assert_eq!(flow.cert_headers().select("/"), u64::MAX);
    let err = Flow::build(&many(65, "NgClientCertChainHeader", chain)).unwrap_err();
    assert!(matches!(err, FlowError::Plugin { .. }), "{err}");
}

#[test]
fn credential_headers_are_the_extractors_own() {
    let flow = Flow::build(&route(json!([apikey_plugin()]))).unwrap();
    let ex = flow.credentials().unwrap();
    for name in [
        "otoroshi-client-id",
        "Otoroshi-Client-Secret",
        "Otoroshi-Authorization",
        "Otoroshi-Token",
        "X-Api-Key",
        "Authorization",
    ] {
        assert!(ex.reads_header(name.as_bytes()), "{name}");
    }
    for name in ["Accept", "Cookie", "X-Client-Id"] {
        assert!(!ex.reads_header(name.as_bytes()), "{name}");
    }
    // One extractor at a time: `Authorization` carries a credential for basic, JWT and
    // `otoapk_` bearers; the client-id header is read for `otoapk_` bearers in any case.
    let only = |extractor: &str| {
        let mut extractors = json!({
            "basic": {"enabled": false}, "custom_headers": {"enabled": false},
            "jwt": {"enabled": false}, "oto_bearer": {"enabled": false},
            "client_id": {"enabled": false}});
        extractors[extractor]["enabled"] = json!(true);
        let mut plugin = apikey_plugin();
        plugin["config"] = json!({ "extractors": extractors });
        let flow = Flow::build(&route(json!([plugin]))).unwrap();
        let ex = flow.credentials().unwrap();
        [
            "Authorization",
            "Otoroshi-Authorization",
            "Otoroshi-Token",
            "Otoroshi-Client-Id",
            "x-api-key",
        ]
        .map(|name| ex.reads_header(name.as_bytes()))
    };
    assert_eq!(only("basic"), [true, true, false, false, true]);
    assert_eq!(only("jwt"), [true, false, true, false, true]);
    assert_eq!(only("oto_bearer"), [true, false, true, false, true]);
    assert_eq!(only("custom_headers"), [false, false, false, true, true]);
    assert!(
        Flow::build(&route(json!([])))
            .unwrap()
            .credentials()
            .is_none()
    );
}

#[test]
fn the_consumer_reads_a_parsed_request_heads_fields() {
    let flow = Flow::build(&route(json!([apikey_plugin()]))).unwrap();
    let keys = store(json!({}));
    let buf = b"GET /x HTTP/1.1\r\nHost: api.local\r\nOtoroshi-Client-Id: k1\r\n\
Otoroshi-Client-Secret: s1\r\n\r\n";
    let mut parser = crate::http::HeadParser::default();
    let head = parser.parse_request(buf).unwrap().unwrap();
    let headers = head.headers();
    let req = RequestView {
        method: "GET",
        host: "api.local",
        path: "/x",
        headers: &headers,
        client_cert: None,
    };
    let admitted = flow
        .on_request(&req, &keys, &mut AdmitAll, NOW, &mut FlowScratch::new())
        .unwrap();
    assert_eq!(admitted.key.map(KeyEntry::client_id), Some("k1"));
}

#[test]
fn every_rejection_counts_in_a_metrics_slot() {
    let subscriptions = [
        SubscriptionRejection::NotIdentified,
        SubscriptionRejection::Pending,
        SubscriptionRejection::Disabled,
        SubscriptionRejection::Closed,
    ]
    .map(Rejection::Subscription);
    let others = [
        Rejection::Key(KeyRejection::NoKey),
        Rejection::ReadOnlyRoute,
        Rejection::ClientCert(CertRejection::Missing),
    ];
    for r in subscriptions.iter().chain(&others) {
        // Each has its own slot (`other` is for a reason a newer build adds).
        let slot = r.slot();
        assert!(slot < REJECTION_REASONS.len() - 1, "{}", r.reason());
        assert_eq!(REJECTION_REASONS[slot], r.reason());
    }
}

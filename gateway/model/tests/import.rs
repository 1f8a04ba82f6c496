//! Reading whole documents: the real Otoroshi exports in the repository's fixtures/otoroshi, the
//! example entity file in examples/, and hostile input.

use std::path::PathBuf;

use gateway_model::import::{Dialect, import_document};
use gateway_model::validate::Problems;
use proptest::prelude::*;
use serde_json::json;

/// A file of the repository, by its path from the repository root.
fn repo_file(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn problems_of(doc: serde_json::Value) -> Vec<String> {
    let out = import_document(doc.to_string().as_bytes(), Some(Dialect::Tollgate)).unwrap();
    out.problems.iter().map(ToString::to_string).collect()
}

#[test]
fn example_entities_validate_strictly() {
    let out = import_document(&repo_file("examples/entities.json"), None).unwrap();
    assert_eq!(out.dialect, Dialect::Tollgate);
    assert!(out.is_clean(), "{}", out.problems);
    assert_eq!(out.entities.routes.len(), 2);
    assert_eq!(out.entities.backends.len(), 1);
    assert_eq!(out.entities.apikeys.len(), 1);
    let key = &out.entities.apikeys[0];
    assert_eq!(key.client_id, "demo-client");
    assert_eq!(key.daily_quota, 500);
    assert_eq!(key.authorized_entities, vec!["route_route_keyed"]);
    assert!(out.skipped.is_empty());
}

#[test]
fn otoroshi_tunnel_export_imports_what_is_supported() {
    let out = import_document(
        &repo_file("fixtures/otoroshi/otoroshi-export-tunnel.json"),
        None,
    )
    .unwrap();
    assert_eq!(out.dialect, Dialect::Otoroshi);
    assert_eq!(out.entities.apikeys.len(), 3, "{:#?}", out.problems);
    assert!(out.entities.apikeys.iter().all(|k| {
        k.authorized_entities
            .iter()
            .any(|e| e.starts_with("group_"))
    }));
    // The route uses the tunnel plugin, which Tollgate lacks: imported, disabled, with a warning.
    assert_eq!(out.entities.routes.len(), 1);
    assert!(!out.entities.routes[0].enabled);
    assert!(
        out.warnings
            .iter()
            .any(|w| w.path == "routes[0].plugins[1].plugin" && w.message.contains("TunnelPlugin")),
        "{}",
        out.warnings
    );
    // Unsupported entities are listed one by one with a reason.
    let sd: Vec<_> = out
        .skipped
        .iter()
        .filter(|s| s.kind == "serviceDescriptors")
        .collect();
    assert_eq!(sd.len(), 1);
    assert_eq!(sd[0].id.as_deref(), Some("admin-api-service"));
    assert!(sd[0].reason.contains("legacy service descriptors"));
    // Certificates are entities: imported, not skipped (tests/certificates.rs has the rest).
    assert_eq!(out.entities.certificates.len(), 5);
    assert!(!out.skipped.iter().any(|s| s.kind == "certificates"));
    assert!(out.skipped.iter().any(|s| s.kind == "config"));
    assert!(
        out.ignored_fields.iter().any(|f| f.ends_with("_loc")),
        "{:?}",
        out.ignored_fields
    );
    assert!(out.is_clean(), "{}", out.problems);
}

#[test]
fn otoroshi_mtls_export_with_legacy_keys() {
    let out = import_document(
        &repo_file("fixtures/otoroshi/otoroshi-export-mtls.json"),
        None,
    )
    .unwrap();
    assert_eq!(out.dialect, Dialect::Otoroshi);
    assert_eq!(out.entities.apikeys.len(), 2);
    for k in &out.entities.apikeys {
        assert!(
            k.authorized_entities
                .iter()
                .all(|e| e.starts_with("group_")),
            "{:?}",
            k.authorized_entities
        );
        assert!(!k.authorized_entities.is_empty());
    }
    assert_eq!(
        out.skipped
            .iter()
            .filter(|s| s.kind == "serviceDescriptors")
            .count(),
        3
    );
    assert_eq!(
        out.skipped
            .iter()
            .filter(|s| s.kind == "clientValidators")
            .count(),
        2
    );
    assert!(out.entities.routes.is_empty());
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let problems = problems_of(json!({
        "apiKeys": [
            {"clientId": "ok", "clientSecret": "s"},
            {"clientId": "also-ok", "clientSecret": "s"},
            {"clientId": "bad", "clientSecret": "s", "dailyQuota": -1},
            {"clientId": "", "clientSecret": ""},
        ],
        "routes": [
            {"id": "r0", "frontend": {"domains": []}},
            {"id": "r1", "frontend": {"domains": ["a.com"]},
             "backend": {"targets": [{"hostname": "127.0.0.1", "port": 0, "weight": 0}]}},
        ],
    }));
    let want = [
        "apiKeys[2].dailyQuota: expected an integer ≥ 0, got -1",
        "apiKeys[3].clientId: expected 1 to 128 characters of A-Z a-z 0-9 . _ ~ @ + - (not starting with `.`)",
        "apiKeys[3].clientSecret: expected a non-empty string",
        "routes[0].frontend.domains: expected at least one domain",
        "routes[1].backend.targets[0].port: expected 1..=65535, got 0",
        "routes[1].backend.targets[0].weight: expected an integer ≥ 1",
    ];
    for w in want {
        assert!(
            problems.iter().any(|p| p == w),
            "missing {w:?} in {problems:#?}"
        );
    }
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("routes[0]: expected `backend`")),
        "{problems:#?}"
    );
}

#[test]
fn strict_files_reject_unknown_fields_and_keys() {
    let problems = problems_of(json!({
        "apiKeys": [{"clientId": "k", "clientSecret": "s", "dailyQuotas": 5,
                     "rotation": {"every": 3}}],
        "services": [],
    }));
    assert!(
        problems.contains(&"apiKeys[0].dailyQuotas: unknown field".to_owned()),
        "{problems:#?}"
    );
    assert!(
        problems.contains(&"apiKeys[0].rotation.every: unknown field".to_owned()),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("services: unknown key")),
        "{problems:#?}"
    );
}

#[test]
fn otoroshi_dialect_tolerates_unknown_fields() {
    let doc = json!({"apiKeys": [{"clientId": "k", "clientSecret": "s", "_loc": {"tenant": "t"},
        "throttlingStrategy": null}]});
    let out = import_document(doc.to_string().as_bytes(), Some(Dialect::Otoroshi)).unwrap();
    assert!(out.is_clean());
    assert_eq!(out.entities.apikeys.len(), 1);
    assert_eq!(
        out.ignored_fields,
        vec!["apiKeys[0]._loc", "apiKeys[0].throttlingStrategy"]
    );
}

#[test]
fn type_errors_name_the_nested_path() {
    let problems = problems_of(json!({"routes": [
        {"id": "r", "frontend": {"domains": ["a"], "strip_path": "yes"}, "backend_ref": "b"}],
        "backends": [{"id": "b", "backend": {"targets": [{"hostname": "h", "port": 70000}]}}]}));
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("routes[0].frontend.strip_path: invalid type")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("backends[0].backend.targets[0].port: invalid value")),
        "{problems:#?}"
    );
}

#[test]
fn references_and_duplicates_are_checked() {
    let problems = problems_of(json!({
        "routes": [
            {"id": "r", "frontend": {"domains": ["a"]}, "backend_ref": "missing"},
            {"id": "dup", "frontend": {"domains": ["a"]}, "backend_ref": "b"},
            {"id": "dup", "frontend": {"domains": ["b"]}, "backend_ref": "b"},
        ],
        "backends": [{"id": "b", "backend": {"targets": [{"hostname": "h", "port": 1}]}}],
        "apiKeys": [{"clientId": "k", "clientSecret": "s"}, {"clientId": "k", "clientSecret": "t"}],
    }));
    assert!(
        problems.contains(&"routes[0].backend_ref: no backend with id `missing`".to_owned()),
        "{problems:#?}"
    );
    assert!(
        problems.contains(&"routes[2]: duplicate id `dup`".to_owned()),
        "{problems:#?}"
    );
    assert!(
        problems.contains(&"apiKeys[1]: duplicate id `k`".to_owned()),
        "{problems:#?}"
    );
}

#[test]
fn strict_unknown_plugin_is_a_problem() {
    let problems = problems_of(
        json!({"routes": [{"id": "r", "frontend": {"domains": ["a"]},
        "backend": {"targets": [{"hostname": "h", "port": 1}]},
        "plugins": [{"plugin": "cp:otoroshi.next.plugins.Wasm"}]}]}),
    );
    assert_eq!(
        problems,
        vec!["routes[0].plugins[0].plugin: unknown plugin `cp:otoroshi.next.plugins.Wasm`"]
    );
}

/// Fields that reach the wire or the logs: a backend root that would write a second request
/// upstream or escape itself, ids that would forge log lines or climb directories.
#[test]
fn wire_and_log_fields_are_validated() {
    let long = "x".repeat(129);
    let problems = problems_of(json!({
        "apiKeys": [{"clientId": "k\r\nX-Forged: 1", "clientSecret": "s"},
                    {"clientId": long, "clientSecret": "s"},
                    {"clientId": "ok", "clientSecret": "s", "authorizedEntities": ["route_a/../b"]}],
        "routes": [
            {"id": "r\nINFO forged", "frontend": {"domains": ["a"]},
             "backend": {"targets": [{"hostname": "h", "port": 1}], "root": "/x HTTP/1.1\r\nHost: evil\r\n\r\nGET /y"}},
            {"id": "../../etc", "frontend": {"domains": ["a/p/../q", "b//c"]},
             "backend": {"targets": [{"hostname": "h", "port": 1}], "root": "/api/../admin"}},
            {"id": "r3", "frontend": {"domains": ["a"]},
             "backend": {"targets": [{"hostname": "h", "port": 1}], "root": "/api?x=1",
                         "health_check": {"enabled": true, "url": "/h HTTP/1.1\r\nX: y"}}},
        ],
        "backends": [{"id": "b/c", "backend": {"targets": [{"hostname": "h", "port": 1}]}}],
    }));
    let id_rule = "expected 1 to 128 characters of A-Z a-z 0-9 . _ ~ @ + - (not starting with `.`)";
    for w in [
        format!("apiKeys[0].clientId: {id_rule}"),
        format!("apiKeys[1].clientId: {id_rule}"),
        format!("apiKeys[2].authorizedEntities[0]: {id_rule}"),
        format!("routes[0].id: {id_rule}"),
        format!("routes[1].id: {id_rule}"),
        format!("backends[0].id: {id_rule}"),
        "routes[0].backend.root: expected a path without control byte in the path".to_owned(),
        "routes[1].backend.root: expected a canonical path (`/admin`, without dot segments, `//` or needless escapes)".to_owned(),
        "routes[1].frontend.domains[0]: the path: expected a canonical path (`/q`, without dot segments, `//` or needless escapes)".to_owned(),
        "routes[1].frontend.domains[1]: the path: expected a canonical path (`/c`, without dot segments, `//` or needless escapes)".to_owned(),
        "routes[2].backend.root: expected a path without `?` (no query)".to_owned(),
        "routes[2].backend.health_check.url: expected visible ASCII only (no space, control byte or `#`)".to_owned(),
    ] {
        assert!(problems.contains(&w), "missing {w:?} in {problems:#?}");
    }
}

#[test]
fn value_rules() {
    let problems = problems_of(json!({
        "apiKeys": [{"clientId": "a:b", "clientSecret": "s\u{1}",
            "rotation": {"enabled": true, "rotationEvery": 2, "gracePeriod": 3},
            "restrictions": {"forbidden": [{"method": "G ET", "path": "/a("}]}}],
        "routes": [{"id": "r", "frontend": {"domains": ["http://a.com", "a.com:80", "a.*.com", "*.ok.com/p"],
            "methods": ["GET", ""], "cookies": {"c": "1"}},
            "backend": {"targets": [{"hostname": "h", "port": 1, "protocol": "HTTP/2"}], "root": "x",
                        "rewrite": true, "load_balancing": {"type": "Sticky"}}}],
    }));
    for w in [
        "apiKeys[0].clientId: expected 1 to 128 characters of A-Z a-z 0-9 . _ ~ @ + - (not starting with `.`)",
        "apiKeys[0].clientSecret: must contain only printable ASCII characters",
        "apiKeys[0].rotation.gracePeriod: must not exceed rotationEvery (2 h), got 3 h",
        "apiKeys[0].restrictions.forbidden[0].method: expected an HTTP method or \"*\"",
        "routes[0].frontend.domains[1]: a port is not allowed in a domain (routes match any listener port)",
        "routes[0].frontend.methods[1]: expected an HTTP method",
        "routes[0].frontend.cookies: cookie matching is not supported by Tollgate",
        "routes[0].backend.targets[0].protocol: unsupported upstream protocol `HTTP/2` (HTTP/1.1 only)",
        "routes[0].backend.root: expected a path starting with `/`",
        "routes[0].backend.rewrite: path rewriting is not supported by Tollgate",
    ] {
        assert!(
            problems.iter().any(|p| p == w),
            "missing {w:?} in {problems:#?}"
        );
    }
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("apiKeys[0].restrictions.forbidden[0].path: invalid regex"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("routes[0].frontend.domains[0]:"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("routes[0].frontend.domains[2]:"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("routes[0].backend.load_balancing.type: unsupported"))
    );
    assert!(
        !problems.iter().any(|p| p.contains("domains[3]")),
        "{problems:#?}"
    );
    // A secret is never echoed back in a problem.
    assert!(!problems.iter().any(|p| p.contains("s\u{1}")));
}

#[test]
fn api_references_are_checked() {
    let problems = problems_of(json!({"apis": [{"id": "a",
        "routes": [{"id": "ar", "frontend": {"domains": ["x"]}, "backend": "be", "flow_ref": "nope"}],
        "consumers": [{"id": "c"}],
        "subscriptions": [{"id": "s", "consumer_ref": "ghost"}]}]}));
    assert!(
        problems.contains(&"apis[0].routes[0].flow_ref: no flow `nope` in this API".to_owned()),
        "{problems:#?}"
    );
    assert!(problems.contains(
        &"apis[0].subscriptions[0].consumer_ref: no consumer `ghost` in this API".to_owned()
    ));
}

#[test]
fn not_json_or_not_an_object() {
    let err: Problems = import_document(b"{\"routes\": [", None).unwrap_err();
    assert!(err.to_string().starts_with("not valid JSON"), "{err}");
    assert!(import_document(b"[1,2]", None).is_err());
    assert!(import_document(b"", None).is_err());
    let problems = problems_of(json!({"routes": {"id": "r"}}));
    assert_eq!(problems, vec!["routes: expected an array"]);
}

proptest! {
    #[test]
    fn garbage_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = import_document(&bytes, None);
    }

    #[test]
    fn mutated_documents_never_panic(pos in 0usize..2000, byte in any::<u8>(), cut in 0usize..2000) {
        let mut doc = repo_file("examples/entities.json");
        if !doc.is_empty() {
            let i = pos % doc.len();
            doc[i] = byte;
            doc.truncate(cut.max(i + 1).min(doc.len()));
        }
        let _ = import_document(&doc, None);
    }

    #[test]
    fn arbitrary_json_values_in_fields_never_panic(v in arb_json()) {
        for field in ["dailyQuota", "clientId", "rotation", "restrictions", "validUntil"] {
            let doc = json!({"apiKeys": [{"clientId": "k", "clientSecret": "s", field: v.clone()}],
                             "routes": [{"id": "r", "frontend": v.clone(), "backend_ref": v.clone()}]});
            let _ = import_document(doc.to_string().as_bytes(), Some(Dialect::Tollgate));
            let _ = import_document(doc.to_string().as_bytes(), Some(Dialect::Otoroshi));
        }
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn mock_backends() {
    let ok = problems_of(json!({"backends": [{"id": "m", "backend": {"mock": {
        "status": 201, "headers": {"x-demo": "1"}, "body": "{\"hello\":\"world\"}"}}}]}));
    assert!(ok.is_empty(), "{ok:#?}");
    let problems = problems_of(json!({"backends": [
        {"id": "a", "backend": {"mock": {"status": 99, "headers": {"content-length": "5"}}}},
        {"id": "b", "backend": {"mock": {}, "targets": [{"hostname": "h", "port": 1}]}},
        {"id": "c", "backend": {}},
    ]}));
    for w in [
        "backends[0].backend.mock.status: expected 200..=599, got 99",
        "backends[0].backend.mock.headers.content-length: set by the gateway, not allowed in a mock",
        "backends[1].backend.mock: a mock backend has no targets",
        "backends[2].backend.targets: expected at least one target (or a `mock`)",
    ] {
        assert!(
            problems.iter().any(|p| p == w),
            "missing {w:?} in {problems:#?}"
        );
    }
}

/// An Otoroshi export with APIs and plans imports the way Otoroshi's `applyPlan` compiles them:
/// no imported API is more open than it was in Otoroshi.
#[test]
fn otoroshi_plans_compile_like_apply_plan() {
    let out = import_document(
        &repo_file("fixtures/otoroshi/otoroshi-export-apis.json"),
        None,
    )
    .unwrap();
    assert_eq!(out.dialect, Dialect::Otoroshi);
    assert!(out.is_clean(), "{}", out.problems);
    let api = |id: &str| out.entities.apis.iter().find(|a| a.id == id).unwrap();
    let status = |api: &gateway_model::entity::Api, id: &str| {
        let c = api.consumers.iter().find(|c| c.id == id).unwrap();
        (c.kind.as_str(), c.status.as_str())
    };
    let payments = api("api_payments");
    assert_eq!(
        status(payments, "plan_payments_gold"),
        ("apikey", "published")
    );
    assert_eq!(
        status(payments, "plan_payments_legacy"),
        ("apikey", "deprecated")
    );
    // Beside a published apikey plan, Otoroshi's NgExpectedConsumer refuses anonymous calls.
    assert_eq!(
        status(payments, "plan_payments_free"),
        ("keyless", "staging")
    );
    let gold = payments.consumers[0].apikey_config().template;
    assert_eq!(gold.tags, vec!["gold"]);
    assert_eq!(gold.metadata.get("tier").map(String::as_str), Some("gold"));
    // The flow with a plugin Tollgate lacks: its route is imported disabled.
    let wasm = payments
        .routes
        .iter()
        .find(|r| r.id == "route_payments_wasm")
        .unwrap();
    assert!(!wasm.enabled);
    assert!(
        payments
            .routes
            .iter()
            .any(|r| r.id == "route_payments" && r.enabled)
    );
    let catalog = api("api_catalog");
    assert_eq!(
        status(catalog, "plan_catalog_public"),
        ("keyless", "published")
    );
    // A JWT plan names a verifier entity that is not imported: it waits in staging,
    // unconfigured (it identifies nobody), and its keyless neighbour is staged.
    let partners = api("api_partners");
    assert_eq!(status(partners, "plan_partners_jwt"), ("jwt", "staging"));
    assert_eq!(
        status(partners, "plan_partners_open"),
        ("keyless", "staging")
    );
    // An mtls plan keeps its regexes and its status (it admits only the certificates its
    // subscriptions bind: none yet); oauth2-local becomes an oauth consumer with Tollgate's
    // defaults, its status kept (no subscription yet); oauth2-remote (a remote IdP's tokens) is a
    // jwt consumer waiting for a verifier.
    assert_eq!(
        status(partners, "plan_partners_mtls"),
        ("mtls", "published")
    );
    let mtls = partners
        .consumers
        .iter()
        .find(|c| c.id == "plan_partners_mtls")
        .unwrap()
        .mtls_config();
    assert_eq!(mtls.regex_subject_dns, vec!["CN=.*, O=Partner Corp"]);
    assert_eq!(mtls.regex_issuer_dns, vec!["CN=Partner CA.*"]);
    assert_eq!(
        status(partners, "plan_partners_m2m"),
        ("oauth", "published")
    );
    let m2m = partners
        .consumers
        .iter()
        .find(|c| c.id == "plan_partners_m2m")
        .unwrap();
    assert_eq!(m2m.oauth_config().token_ttl_s, 3600);
    assert_eq!(status(partners, "plan_partners_idp"), ("jwt", "staging"));
    let warnings: Vec<String> = out.warnings.iter().map(ToString::to_string).collect();
    for expected in [
        "apis[0].plans[1].status: a keyless plan beside a published non-keyless plan",
        "apis[0].flows[1].plugins[1].plugin: unknown plugin `cp:otoroshi.next.plugins.WasmBackend`; the API's routes using the flow are imported disabled: route_payments_wasm",
        "apis[2].plans[0].access_mode_configuration: a `jwt` plan names an Otoroshi JWT verifier entity",
        "apis[2].plans[3].access_mode_configuration: Otoroshi's key pair and expiration are not imported",
        "apis[2].plans[4].access_mode_configuration_type: an `oauth2-remote` plan verifies a remote identity provider's tokens",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(expected)),
            "{expected}\n{warnings:#?}"
        );
    }
    for ignored in [
        "apis[0].plans[0].pricing",
        "apis[0].plans[0].access_mode_configuration.clientNamePattern",
        "apis[0].plans[0].access_mode_configuration.constrainedServicesOnly",
        "apis[2].plans[3].access_mode_configuration",
        "apis[2].plans[4].access_mode_configuration",
    ] {
        assert!(
            out.ignored_fields.iter().any(|f| f == ignored),
            "{ignored}: {:#?}",
            out.ignored_fields
        );
    }
}

#[test]
fn strict_apis_refuse_unknown_plugins_fields_and_shared_ids() {
    let mut problems = problems_of(json!({"apis": [
        {"id": "a", "consumers": [{"id": "c", "kind": "apikey", "bogus": 1,
                        "config": {"template": {"readOnly": true, "extra": 2}}}],
         "subscriptions": [{"id": "s", "consumer_ref": "c", "paused": true}]}]}));
    problems.extend(problems_of(json!({"apis": [
        {"id": "a", "flows": [{"id": "f", "plugins": [{"plugin": "cp:otoroshi.next.plugins.Wasm"}]}],
         "consumers": [{"id": "c", "kind": "apikey"}]},
        {"id": "b", "consumers": [{"id": "c", "kind": "keyless"}]}]})));
    for expected in [
        "apis[0].flows[0].plugins[0].plugin: unknown plugin `cp:otoroshi.next.plugins.Wasm`",
        "apis[0].consumers[0].bogus: unknown field",
        "apis[0].consumers[0].config.template.extra: unknown field",
        "apis[0].subscriptions[0].paused: unknown field",
        "apis[1].consumers[0].id: consumer id `c` is also used by API `a`",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected}\n{problems:#?}"
        );
    }
}

/// The token consumers' configs and their subscriptions' fields are checked strictly, each
/// problem with its path: algorithms (never `none`), one key source of the algorithm's family
/// (algorithm confusion refused at the door), key sizes, JWK sets, regexes, subjects and
/// fingerprints.
#[test]
fn token_consumer_configs_are_checked_with_their_paths() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let rsa = json!({"kty": "RSA", "n": b64(&[0xc1; 256]), "e": "AQAB"});
    let ed = |kid: Option<&str>| {
        let mut k = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[7; 32])});
        if let Some(kid) = kid {
            k["kid"] = json!(kid);
        }
        k
    };
    let jwt =
        |id: &str, config: serde_json::Value| json!({"id": id, "kind": "jwt", "config": config});
    let problems = problems_of(json!({"apis": [{"id": "a", "consumers": [
        jwt("none", json!({"verifier": {"alg": "none", "secret": "x"}})),
        jwt("hs-pem", json!({"verifier": {"alg": "HS256", "public_key": "-----BEGIN PUBLIC KEY-----"}})),
        jwt("rs-secret", json!({"verifier": {"alg": "RS256", "secret": "a".repeat(40)}})),
        jwt("short", json!({"verifier": {"alg": "HS384", "secret": "a".repeat(40)}})),
        jwt("two", json!({"verifier": {"alg": "EdDSA", "secret": "a".repeat(40), "jwks": {"keys": [ed(None)]}}})),
        jwt("mixed", json!({"verifier": {"alg": "ES256", "jwks": {"keys": [rsa]}}})),
        jwt("kids", json!({"verifier": {"alg": "EdDSA", "jwks": {"keys": [ed(Some("a")), ed(None), ed(Some("a"))]}}})),
        jwt("extra", json!({"verifier": {"alg": "HS256", "secret": "a".repeat(32)}, "bogus": 1, "leeway_s": 301, "subject_claim": "exp"})),
        {"id": "unset", "kind": "jwt", "status": "published"},
        {"id": "waiting", "kind": "jwt", "status": "staging"},
        {"id": "m2m", "kind": "oauth", "config": {"alg": "HS256", "token_ttl_s": 10}},
        {"id": "certs", "kind": "mtls", "config": {"regex_subject_dns": ["CN=(unclosed"]}},
        {"id": "keys", "kind": "apikey"},
        jwt("ok", json!({"verifier": {"alg": "EdDSA", "jwks": {"keys": [ed(Some("k1"))]}}, "issuer": "https://idp"})),
    ], "subscriptions": [
        {"id": "s1", "consumer_ref": "keys", "subject": "x"},
        {"id": "s2", "consumer_ref": "certs", "fingerprint": "zz"},
        {"id": "s3", "consumer_ref": "ok", "subject": "alice"},
        {"id": "s4", "consumer_ref": "ok", "subject": "alice"},
        {"id": "alice", "consumer_ref": "ok"},
        {"id": "s6", "consumer_ref": "certs", "fingerprint": "AB:".repeat(31) + "AB"},
        {"id": "s7", "consumer_ref": "certs", "fingerprint": "ab".repeat(32)},
        {"id": "s8", "consumer_ref": "m2m", "fingerprint": "cd".repeat(32)},
    ]}]}));
    let c = "apis[0].consumers";
    let s = "apis[0].subscriptions";
    for expected in [
        format!("{c}[0].config.verifier.alg: expected one of HS256"),
        format!("{c}[1].config.verifier.secret: HS256 verifies with a shared `secret`"),
        format!("{c}[2].config.verifier.secret: RS256 takes an RSA key, not a secret"),
        format!("{c}[3].config.verifier.secret: HS384 needs a secret of at least 48 bytes"),
        format!("{c}[4].config.verifier: expected exactly one of"),
        format!("{c}[5].config.verifier.jwks.keys[0]: an RSA key cannot verify ES256"),
        format!("{c}[6].config.verifier.jwks.keys[1].kid: a set of several keys needs a `kid`"),
        format!("{c}[6].config.verifier.jwks.keys[2].kid: duplicate kid \"a\""),
        format!("{c}[7].config.bogus: unknown field"),
        format!("{c}[7].config.leeway_s: expected 0..=300"),
        format!("{c}[7].config.subject_claim: expected the name of a string claim"),
        format!("{c}[8].config.verifier: a jwt consumer needs a verifier"),
        format!("{c}[10].config.token_ttl_s: expected 60..=86400"),
        format!("{c}[10].config.alg: expected \"ES256\", got \"HS256\""),
        format!("{c}[11].config.regex_subject_dns[0]: invalid regex"),
        format!("{s}[0].subject: only subscriptions to a jwt consumer have a subject"),
        format!("{s}[1].fingerprint: expected a SHA-256 fingerprint"),
        format!("{s}[3].subject: subject \"alice\" already names another subscription"),
        format!("{s}[4].subject: subject \"alice\" already names another subscription"),
        format!("{s}[6].fingerprint: this certificate already names another subscription"),
        format!("{s}[7].fingerprint: only subscriptions to an mtls consumer have a certificate"),
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(&expected)),
            "{expected}\n{problems:#?}"
        );
    }
    // Nothing else: the staging consumer without a verifier, the good one, s3 and s6 are fine.
    assert_eq!(problems.len(), 21, "{problems:#?}");
}

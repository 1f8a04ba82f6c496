//! The admin and ledger APIs fuzzed from their own OpenAPI documents (docs/admin-openapi.json,
//! docs/ledger-openapi.json) by `tests/openapi_fuzz.py` (Python `requests`), against the real
//! binary with an embedded ledger: no 5xx, no status the operation does not document, every 4xx
//! with the JSON error shape, every documented 2xx body inside its schema. Afterwards both APIs
//! and the data plane still serve.
//!
//! `TOLLGATE_OPENAPI_CASES` (per operation, default 60) and `TOLLGATE_OPENAPI_SEED` vary it.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use gateway::runtime::IoMode;
use serde_json::json;

const TOKEN: &str = "e2e-admin-token";

fn fuzz(spec: &str, base: &str, token: &str, known: &[&str]) -> String {
    let cases = std::env::var("TOLLGATE_OPENAPI_CASES").unwrap_or_else(|_| "60".into());
    let seed = std::env::var("TOLLGATE_OPENAPI_SEED").unwrap_or_else(|_| "7".into());
    let spec = format!("{}/../../docs/{spec}", env!("CARGO_MANIFEST_DIR"));
    let script = format!("{}/tests/openapi_fuzz.py", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .args([spec.as_str(), base, token, cases.as_str(), seed.as_str()])
        .args(known);
    let out = run(cmd, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{spec}: {stdout}\n{}", out.stderr);
    stdout
}

#[test]
fn admin_and_ledger_apis_hold_to_their_openapi_documents() {
    let upstream = Upstream::start(Reply::Echo);
    let seed = json!({
        "backends": [{"id": "b1", "backend": {"targets": [{"hostname": "127.0.0.1", "port": upstream.port()}]}}],
        "routes": [{"id": "r1", "frontend": {"domains": ["r1.test"]}, "backend_ref": "b1"}],
        "apiKeys": [{"clientId": "k1", "clientSecret": "secret-k1-value", "clientName": "k1",
                     "authorizedEntities": ["route_r1"]}],
    });
    let bin = Binary::start(&binary_config(""), &seed, IoMode::Epoll);
    let admin = bin.admin_addr();
    // An API with a consumer and a subscription, so that their endpoints have something to find.
    let api = json!({"id": "shop", "name": "shop",
        "backends": [{"id": "b", "backend": {"targets": [{"hostname": "127.0.0.1", "port": upstream.port()}]}}],
        "routes": [{"id": "shop-things", "frontend": {"domains": ["shop.local/things"]}, "backend": "b"}]});
    assert_eq!(
        admin_call(admin, TOKEN, "POST", "/api/apis", Some(&api)).0,
        201
    );
    let consumer = json!({"id": "gold", "kind": "apikey"});
    assert_eq!(
        admin_call(
            admin,
            TOKEN,
            "POST",
            "/api/apis/shop/consumers",
            Some(&consumer)
        )
        .0,
        201
    );
    assert_eq!(
        admin_call(
            admin,
            TOKEN,
            "PATCH",
            "/api/apis/shop",
            Some(&json!({"state": "published"}))
        )
        .0,
        200
    );
    let sub = json!({"id": "acme", "consumer_ref": "gold"});
    assert_eq!(
        admin_call(
            admin,
            TOKEN,
            "POST",
            "/api/apis/shop/subscriptions",
            Some(&sub)
        )
        .0,
        201
    );
    // Some usage for the ledger to answer about.
    for _ in 0..5 {
        let mut c = bin.client();
        c.send(&get_request(
            "r1.test",
            "/",
            &[
                "Otoroshi-Client-Id: k1",
                "Otoroshi-Client-Secret: secret-k1-value",
            ],
        ));
        assert_eq!(c.response().status, 200);
    }

    let known = ["r1", "b1", "k1", "shop", "gold", "acme", "shop-things"];
    let admin_counts = fuzz(
        "admin-openapi.json",
        &format!("http://{admin}"),
        TOKEN,
        &known,
    );
    let ledger = bin.logged_addr("ledger_addr=");
    let ledger_counts = fuzz(
        "ledger-openapi.json",
        &format!("http://{ledger}"),
        "",
        &known,
    );
    eprintln!("admin: {admin_counts}ledger: {ledger_counts}");

    // Everything still serves.
    assert_eq!(admin_call(admin, TOKEN, "GET", "/health", None).0, 200);
    let (status, _) = admin_call(ledger, "", "GET", "/health", None);
    assert_eq!(status, 200);
    let mut c = bin.client();
    c.send(&get_request("ok.test", "/", &[]));
    assert!(c.try_response().is_ok());
}

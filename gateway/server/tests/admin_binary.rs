//! The admin API in the real binary: the seed goes only into an empty log, changes survive a
//! restart, `gateway import` fills a stopped node's log (certificates included), and no secret
//! reaches the logs.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{Binary, binary_config};
use gateway::runtime::IoMode;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-admin-token";

fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    common::admin_call(addr, TOKEN, method, path, body)
}

fn seed() -> Value {
    json!({
        "backends": [{"id": "mock", "backend": {"mock": {"body": "hi"}}}],
        "routes": [{"id": "r", "frontend": {"domains": ["*/r"]}, "backend_ref": "mock",
                    "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]}],
        "apiKeys": [{"clientId": "seeded", "clientSecret": "Seeded-Secret-93ab",
                     "authorizedEntities": ["route_r"]}]
    })
}

#[test]
fn seed_once_restart_import_and_no_secret_in_logs() {
    let mut bin = Binary::start(&binary_config(""), &seed(), IoMode::Epoll);
    let admin = bin.admin_addr();
    let (_, events) = call(admin, "GET", "/api/events", None);
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["actor"] == "seed" && e["action"] == "created")
    );
    let secret = "Admin-Created-Secret-5521";
    let key =
        json!({"clientId": "made", "clientSecret": secret, "authorizedEntities": ["route_r"]});
    assert_eq!(call(admin, "POST", "/api/apikeys", Some(&key)).0, 201);
    let admitted = |bin: &Binary| {
        common::wait_until(Duration::from_secs(2), || {
            let mut c = bin.client();
            c.send(&common::get_request(
                "x",
                "/r",
                &[
                    "Otoroshi-Client-Id: made",
                    &format!("Otoroshi-Client-Secret: {secret}"),
                ],
            ));
            c.response().status == 200
        })
    };
    assert!(admitted(&bin));
    bin.sigterm();
    assert!(
        bin.child.wait_exit(Duration::from_secs(20)).is_some(),
        "did not stop"
    );
    let text = bin.log();
    assert!(text.contains("entity changed"), "{text}");
    assert!(
        !text.contains(secret) && !text.contains("Seeded-Secret-93ab"),
        "a secret was logged:\n{text}"
    );
    assert!(text.contains("generated a cluster key"), "{text}");

    let Binary { dir, .. } = bin;
    // `gateway import` into the stopped node's log.
    let config = dir.path().join("tollgate.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "import",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/otoroshi/otoroshi-export-tunnel.json"
            ),
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !report["skipped"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let imported_keys = report["imported"]["apiKeys"].as_array().unwrap().clone();
    // Its certificates too (their private keys sealed in the log).
    let imported_certs = report["imported"]["certificates"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(imported_certs.len(), 5, "{report}");

    // Restart: the seed is not imported again, everything made before is there.
    let bin = Binary::start_in(dir, IoMode::Epoll);
    let admin = bin.admin_addr();
    assert_eq!(call(admin, "GET", "/api/apikeys/made", None).0, 200);
    for k in &imported_keys {
        assert_eq!(
            call(
                admin,
                "GET",
                &format!("/api/apikeys/{}", k.as_str().unwrap()),
                None
            )
            .0,
            200
        );
    }
    for c in &imported_certs {
        let (s, got) = call(
            admin,
            "GET",
            &format!("/api/certificates/{}", c.as_str().unwrap()),
            None,
        );
        assert_eq!(s, 200);
        assert_eq!(got["privateKey"], "***");
    }
    let (_, events) = call(admin, "GET", "/api/events", None);
    let seeded = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "seed")
        .count();
    assert_eq!(seeded, 3, "the seed was imported again");
    assert!(bin.log().contains("the seed file is not imported again"));
    assert!(admitted(&bin));
    // A running node whose admin address is not known (port 0) cannot be imported into.
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "import",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/otoroshi/otoroshi-export-mtls.json"
            ),
            "--config",
        ])
        .arg(bin.dir.path().join("tollgate.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("running node"));
}

/// `DELETE /api/apikeys/{id}/quotas` survives a restart: the restore from the usage journal
/// counts only the calls made after the reset.
#[test]
fn a_quota_reset_survives_a_restart() {
    let mut doc = seed();
    doc["apiKeys"][0]["dailyQuota"] = json!(10);
    let gw = Binary::start(&binary_config(""), &doc, IoMode::Epoll);
    let calls = |gw: &Binary, n: usize| -> Vec<u16> {
        let mut c = gw.client();
        (0..n)
            .map(|_| {
                c.send(&common::get_request(
                    "x",
                    "/r",
                    &[
                        "Otoroshi-Client-Id: seeded",
                        "Otoroshi-Client-Secret: Seeded-Secret-93ab",
                    ],
                ));
                c.response().status
            })
            .collect()
    };
    let statuses = calls(&gw, 11);
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));
    let admin = gw.admin_addr();
    // The calls' usage batch closes within 100 ms; one still open at the reset would count as
    // after it (conservative: a restart never gives back more than was reset).
    std::thread::sleep(Duration::from_millis(300));
    let (status, quotas) = call(admin, "DELETE", "/api/apikeys/seeded/quotas", None);
    assert_eq!(status, 200, "{quotas}");
    assert_eq!(quotas["currentCallsPerDay"], 0, "{quotas}");
    assert_eq!(calls(&gw, 3), vec![200, 200, 200]);

    gw.sigterm();
    let Binary { mut child, dir, .. } = gw;
    assert!(
        child
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
    let gw = Binary::start_in(dir, IoMode::Epoll);
    let admin = gw.admin_addr();
    let (_, quotas) = call(admin, "GET", "/api/apikeys/seeded/quotas", None);
    assert_eq!(quotas["currentCallsPerDay"], 3, "{quotas}\n{}", gw.log());
    let statuses = calls(&gw, 8);
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));
}

/// `gateway import` on a running node goes through its admin API (`[admin] addr` and token of
/// the same config) and prints the same report; the imported keys are live at once.
#[test]
fn import_into_a_running_node_goes_through_its_admin_api() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = binary_config("").replacen(
        "[admin]\naddr = \"127.0.0.1:0\"",
        &format!("[admin]\naddr = \"127.0.0.1:{port}\""),
        1,
    );
    assert!(config.contains(&format!("127.0.0.1:{port}")), "{config}");
    let bin = Binary::start(&config, &seed(), IoMode::Epoll);
    let admin = bin.admin_addr();
    assert_eq!(admin.port(), port);
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "import",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/otoroshi/otoroshi-export-tunnel.json"
            ),
            "--config",
        ])
        .arg(bin.dir.path().join("tollgate.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = report["imported"]["apiKeys"].as_array().unwrap().clone();
    assert!(!keys.is_empty(), "{report}");
    for k in &keys {
        let path = format!("/api/apikeys/{}", k.as_str().unwrap());
        assert_eq!(call(admin, "GET", &path, None).0, 200, "{path}");
    }
    let (_, events) = call(admin, "GET", "/api/events", None);
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "import"),
        "{events}"
    );
}

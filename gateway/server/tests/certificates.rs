//! Certificates as entities, end to end over real sockets: CRUD through `/api/certificates`,
//! 400 naming `chain` or `privateKey`, private keys sealed in the journal (and on the Kafka
//! topic) and `***` in every answer and event, restart, the data plane's snapshot holding them,
//! the Otoroshi fixtures' certificates imported with their warnings, 409 for a certificate still
//! in use, and `gateway check` naming a bad certificate of the seed file.
//!
//! Certificates are made by the test with the `openssl` CLI; no key is committed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::TempDir;
use common::stack::{Stack, StackOptions};
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-for-certificates";

/// A node with its admin API on a data dir.
fn start(dir: &Path) -> Stack {
    Stack::start(dir, StackOptions::new("certs-e2e", 1, TOKEN))
}

/// The data plane's current runtime certificates: `(id, has a key, dns names)`.
fn runtime(stack: &Stack) -> Vec<(String, bool, Vec<String>)> {
    stack
        .node()
        .publisher()
        .current()
        .certificates
        .iter()
        .map(|c| (c.id.to_string(), c.key.is_some(), c.dns_names.clone()))
        .collect()
}

/// One request with headers: (status, head, JSON body, or the text as a string).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&[u8]>,
) -> (u16, String, Value) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        head.to_owned(),
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())),
    )
}

/// Test certificates made with the `openssl` CLI in a scratch directory.
struct Pki(TempDir);

impl Pki {
    fn new() -> Self {
        Self(TempDir::new("pki"))
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.0.path())
            .output()
            .expect("the openssl CLI makes the test certificates");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.path().join(name)).unwrap()
    }

    /// A self-signed ECDSA P-256 certificate for `dns` (CN and SAN): (chain PEM, PKCS#8 key PEM).
    fn ec(&self, name: &str, dns: &str) -> (String, String) {
        let subj = format!("/CN={dns}");
        let san = format!("subjectAltName=DNS:{dns}");
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        self.openssl(&[
            "req",
            "-x509",
            "-nodes",
            "-days",
            "3",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-subj",
            &subj,
            "-addext",
            &san,
            "-keyout",
            &key,
            "-out",
            &crt,
        ]);
        (self.read(&crt), self.read(&key))
    }

    /// A CA certificate (RSA) and a client certificate it signed: (ca chain, client chain,
    /// client key).
    fn ca_and_client(&self) -> (String, String, String) {
        std::fs::write(
            self.0.path().join("client.ext"),
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        self.openssl(&[
            "req",
            "-x509",
            "-nodes",
            "-days",
            "3",
            "-newkey",
            "rsa:2048",
            "-subj",
            "/CN=Tollgate Test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        self.openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-subj",
            "/CN=client-1",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            // Extensions make it an X.509 v3 certificate, which TLS clients accept.
            "-extfile",
            "client.ext",
            "-out",
            "client.crt",
        ]);
        let client_chain = format!("{}{}", self.read("client.crt"), self.read("ca.crt"));
        (self.read("ca.crt"), client_chain, self.read("client.key"))
    }
}

/// The base64 body of a PEM key: what must never be found in clear.
fn key_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn problem_paths(body: &Value) -> Vec<String> {
    body["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| p["path"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn certificates_crud_through_the_api() {
    let dir = TempDir::new("certs-crud");
    let pki = Pki::new();
    let (chain, key) = pki.ec("api", "api.example.com");
    let (other_chain, other_key) = pki.ec("other", "other.example.com");
    let stack = start(dir.path());
    let addr = stack.admin_addr();

    // Create: 201, the key answered as ***, the read-only fields computed from the leaf.
    let cert = json!({"id": "api", "name": "API", "chain": chain, "privateKey": key,
                      "client": false, "tags": ["edge"], "subject": "ignored"});
    let (s, created) = stack.call("POST", "/api/certificates", Some(&cert));
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["privateKey"], "***");
    assert_eq!(created["_version"], 1);
    assert_eq!(created["subject"], "CN=api.example.com");
    assert_eq!(created["domain"], "api.example.com");
    assert_eq!(created["sans"], json!(["api.example.com"]));
    assert_eq!(created["selfSigned"], true);
    assert!(created["to"].as_i64().unwrap() > created["from"].as_i64().unwrap());
    assert!(!created.to_string().contains(&key_body(&key)));
    // The same id again: 409.
    assert_eq!(stack.call("POST", "/api/certificates", Some(&cert)).0, 409);
    // A missing id is generated.
    let (s, generated) = stack.call(
        "POST",
        "/api/certificates",
        Some(&json!({"chain": other_chain, "privateKey": other_key})),
    );
    assert_eq!(s, 201, "{generated}");
    assert!(
        generated["id"]
            .as_str()
            .unwrap()
            .starts_with("certificate_")
    );
    // A CA certificate without a key.
    let (ca_chain, _, _) = pki.ca_and_client();
    let ca = json!({"id": "ca", "chain": ca_chain, "ca": true});
    assert_eq!(stack.call("POST", "/api/certificates", Some(&ca)).0, 201);

    // The data plane has them, keys and names, within its next snapshot.
    assert!(common::wait_until(Duration::from_secs(2), || {
        runtime(&stack).contains(&("api".to_owned(), true, vec!["api.example.com".to_owned()]))
    }));
    assert!(runtime(&stack).iter().any(|(id, k, _)| id == "ca" && !k));

    // List with pagination; the key is *** in the list too, and filters see only that view.
    let (s, head, page) = http(
        addr,
        "GET",
        "/api/certificates?page=2&page_size=1",
        &[],
        None,
    );
    assert_eq!(s, 200);
    assert!(
        head.to_ascii_lowercase().contains("x-total-count: 3"),
        "{head}"
    );
    assert_eq!(page.as_array().unwrap().len(), 1);
    let (_, all) = stack.call("GET", "/api/certificates", None);
    assert!(!all.to_string().contains(&key_body(&key)));
    let (_, by_tag) = stack.call("GET", "/api/certificates?tags=edge", None);
    assert_eq!(by_tag.as_array().unwrap().len(), 1);
    let oracle = format!("/api/certificates?privateKey={}", key_body(&key));
    assert_eq!(stack.call("GET", &oracle, None).1, json!([]));

    // GET, edit, PUT back with "***": the stored key is kept.
    let (s, mut doc) = stack.call("GET", "/api/certificates/api", None);
    assert_eq!(s, 200);
    assert_eq!(doc["privateKey"], "***");
    doc["description"] = json!("edge certificate");
    let (s, put) = stack.call("PUT", "/api/certificates/api", Some(&doc));
    assert_eq!(s, 200, "{put}");
    assert_eq!(put["_version"], 2);
    assert_eq!(put["description"], "edge certificate");
    // "***" with another chain: the kept key is checked against it, and does not match.
    let mut swapped = doc.clone();
    swapped["chain"] = json!(other_chain);
    swapped.as_object_mut().unwrap().remove("_version");
    let (s, body) = stack.call("PUT", "/api/certificates/api", Some(&swapped));
    assert_eq!(s, 400, "{body}");
    assert_eq!(problem_paths(&body), vec!["privateKey"]);
    // PATCH (merge) and optimistic concurrency.
    let (s, patched) = stack.call(
        "PATCH",
        "/api/certificates/api",
        Some(&json!({"client": true, "_version": 2})),
    );
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["_version"], 3);
    assert_eq!(patched["client"], true);
    let (s, conflict) = stack.call(
        "PATCH",
        "/api/certificates/api",
        Some(&json!({"client": false, "_version": 2})),
    );
    assert_eq!(s, 409);
    assert_eq!(conflict["error"], "version_conflict");
    let (s, _, _) = http(
        addr,
        "DELETE",
        "/api/certificates/api",
        &["If-Match: \"1\""],
        None,
    );
    assert_eq!(s, 409);
    // Replace the key and the chain together.
    let (s, replaced) = stack.call(
        "PATCH",
        "/api/certificates/api",
        Some(&json!({"chain": other_chain, "privateKey": other_key})),
    );
    assert_eq!(s, 200, "{replaced}");
    assert_eq!(replaced["subject"], "CN=other.example.com");
    // Delete: the answer shows the entity as a read does.
    let (s, deleted) = stack.call("DELETE", "/api/certificates/api", None);
    assert_eq!(s, 200);
    assert_eq!(deleted["entity"]["privateKey"], "***");
    assert_eq!(stack.call("GET", "/api/certificates/api", None).0, 404);
    assert!(common::wait_until(Duration::from_secs(2), || {
        !runtime(&stack).iter().any(|(id, _, _)| id == "api")
    }));
    // Metrics count them.
    let (_, _, metrics) = http(addr, "GET", "/metrics", &[], None);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("tollgate_entities{kind=\"certificate\"} 2"),
        "{metrics}"
    );
}

#[test]
fn bad_pem_and_mismatched_keys_are_400_naming_the_field() {
    let dir = TempDir::new("certs-bad");
    let pki = Pki::new();
    let (chain, key) = pki.ec("a", "a.example.com");
    let (_, other_key) = pki.ec("b", "b.example.com");
    let stack = start(dir.path());
    let cases = [
        (
            json!({"id": "c", "chain": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n", "privateKey": key}),
            vec!["chain"],
            "not valid PEM",
        ),
        (
            json!({"id": "c", "chain": "no pem at all", "privateKey": key}),
            vec!["chain"],
            "no PEM `CERTIFICATE` section",
        ),
        (
            json!({"id": "c", "chain": format!("{chain}{key}"), "privateKey": key}),
            vec!["chain"],
            "is a private key",
        ),
        (
            json!({"id": "c", "chain": chain, "privateKey": other_key}),
            vec!["privateKey"],
            "does not match",
        ),
        (
            json!({"id": "c", "chain": chain, "privateKey": "***"}),
            vec!["privateKey"],
            "no PEM private key",
        ),
        (
            json!({"id": "c", "chain": chain}),
            vec!["privateKey"],
            "only a CA certificate",
        ),
        (
            json!({"id": "c", "chain": chain, "privateKey": key, "autoRenew": true,
                   "letsEncrypt": true, "password": "pw"}),
            vec!["password", "autoRenew", "letsEncrypt"],
            "not supported",
        ),
        (
            json!({"id": "c", "chain": chain, "privateKey": key, "certificateType": "x"}),
            vec!["certificateType"],
            "unknown field",
        ),
        (
            json!({"id": "bad id", "chain": chain, "privateKey": key}),
            vec!["id"],
            "expected 1 to 128",
        ),
    ];
    for (body, paths, words) in cases {
        let (s, answer) = stack.call("POST", "/api/certificates", Some(&body));
        assert_eq!(s, 400, "{body}: {answer}");
        assert_eq!(problem_paths(&answer), paths, "{answer}");
        assert!(answer.to_string().contains(words), "{words}: {answer}");
        // A problem never echoes the key.
        assert!(!answer.to_string().contains(&key_body(&key)), "{answer}");
    }
    let (s, encrypted) = {
        pki.openssl(&[
            "pkcs8",
            "-topk8",
            "-in",
            "a.key",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:pw",
            "-out",
            "a.enc",
        ]);
        let body = json!({"id": "c", "chain": chain, "privateKey": pki.read("a.enc")});
        stack.call("POST", "/api/certificates", Some(&body))
    };
    assert_eq!(s, 400);
    assert_eq!(problem_paths(&encrypted), vec!["privateKey"]);
    assert!(
        encrypted
            .to_string()
            .contains("encrypted private keys are not supported; decrypt it first")
    );
    // Nothing was applied.
    assert_eq!(stack.call("GET", "/api/certificates", None).1, json!([]));
    let (_, events) = stack.call("GET", "/api/events", None);
    assert_eq!(events["events"], json!([]));
}

#[test]
fn private_keys_are_sealed_redacted_and_survive_a_restart() {
    let dir = TempDir::new("certs-sealed");
    let pki = Pki::new();
    let (chain, key) = pki.ec("s", "sealed.example.com");
    let body = key_body(&key);
    let mut stack = start(dir.path());
    let cert = json!({"id": "s", "chain": chain, "privateKey": key});
    assert_eq!(stack.call("POST", "/api/certificates", Some(&cert)).0, 201);
    assert_eq!(
        stack
            .call(
                "PATCH",
                "/api/certificates/s",
                Some(&json!({"name": "renamed", "privateKey": "***"}))
            )
            .0,
        200
    );
    // Events: *** in every view of the log.
    let (_, events) = stack.call("GET", "/api/events", None);
    let list = events["events"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for e in list {
        assert_eq!(e["kind"], "certificate");
        assert_eq!(e["entity"]["privateKey"], "***");
    }
    assert!(!events.to_string().contains(&body));
    stack.stop();
    // Journal, fold snapshot, key file: the key is sealed, never in clear.
    let bytes = String::from_utf8_lossy(&all_bytes(dir.path())).into_owned();
    assert!(bytes.contains("sealed:v1:"));
    assert!(
        !bytes.contains(&body),
        "a private key reached the disk in clear"
    );
    // The log opened again holds it in clear, in memory only.
    {
        let log = gateway::admin::open_log(dir.path(), "certs-e2e", None, 1000).unwrap();
        let certs = log.state().entities(0).certificates;
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].private_key.expose(), key);
        assert_eq!(certs[0].name, "renamed");
    }
    // Restart: the certificate is there, at its version, and in the data plane.
    let stack = start(dir.path());
    let (s, got) = stack.call("GET", "/api/certificates/s", None);
    assert_eq!(s, 200);
    assert_eq!(got["_version"], 2);
    assert_eq!(got["privateKey"], "***");
    assert_eq!(
        runtime(&stack),
        vec![("s".to_owned(), true, vec!["sealed.example.com".to_owned()])]
    );
}

#[test]
fn otoroshi_exports_import_their_certificates() {
    let dir = TempDir::new("certs-import");
    let stack = start(dir.path());
    for (name, count) in [
        ("otoroshi-export-mtls.json", 3),
        ("otoroshi-export-tunnel.json", 5),
    ] {
        let bytes = std::fs::read(format!("/work/shared/fixtures/{name}")).unwrap();
        let (s, _, report) = http(stack.admin_addr(), "POST", "/api/import", &[], Some(&bytes));
        assert_eq!(s, 200, "{name}: {report}");
        let ids = report["imported"]["certificates"].as_array().unwrap();
        assert_eq!(ids.len(), count, "{name}: {report}");
        assert!(
            !report["skipped"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "certificates"),
            "{report}"
        );
        let warnings = report["warnings"].as_array().unwrap();
        assert!(
            warnings.iter().any(|w| w["path"] == "certificates[0]"
                && w["message"].as_str().unwrap().contains("expired")),
            "{name}: {report}"
        );
        if name.contains("tunnel") {
            // The export's autoRenew and exposed are on: turned off, a warning each.
            assert!(
                warnings
                    .iter()
                    .any(|w| w["path"] == "certificates[0].autoRenew"),
                "{report}"
            );
        }
        for id in ids {
            let (s, got) = stack.call(
                "GET",
                &format!("/api/certificates/{}", id.as_str().unwrap()),
                None,
            );
            assert_eq!(s, 200);
            assert_eq!(got["privateKey"], "***");
            assert_eq!(got["autoRenew"], false);
        }
        // Importing again changes nothing.
        let (_, _, again) = http(stack.admin_addr(), "POST", "/api/import", &[], Some(&bytes));
        assert_eq!(again["events"], 0, "{again}");
    }
    let tunnel: Value = serde_json::from_slice(
        &std::fs::read("/work/shared/fixtures/otoroshi-export-tunnel.json").unwrap(),
    )
    .unwrap();
    // No private key of either export in clear in the events.
    let (_, events) = stack.call("GET", "/api/events", None);
    let text = events.to_string();
    let mtls: Value = serde_json::from_slice(
        &std::fs::read("/work/shared/fixtures/otoroshi-export-mtls.json").unwrap(),
    )
    .unwrap();
    let all = tunnel["certificates"].as_array().unwrap().iter();
    for c in all.chain(mtls["certificates"].as_array().unwrap()) {
        assert!(!text.contains(&key_body(c["privateKey"].as_str().unwrap())));
    }
    assert!(common::wait_until(Duration::from_secs(2), || {
        runtime(&stack).len() == 8
    }));
    let runtime = runtime(&stack);
    assert!(
        runtime
            .iter()
            .any(|(id, key, names)| id == "otoroshi-wildcard" && *key && names == &["*.oto.tools"])
    );
}

#[test]
fn a_certificate_in_use_cannot_be_deleted() {
    let dir = TempDir::new("certs-refs");
    let pki = Pki::new();
    let (ca_chain, client_chain, client_key) = pki.ca_and_client();
    let stack = start(dir.path());
    let ca = json!({"id": "ca", "chain": ca_chain, "ca": true});
    let client = json!({"id": "client", "chain": client_chain, "privateKey": client_key,
                        "client": true, "caRef": "ca"});
    assert_eq!(stack.call("POST", "/api/certificates", Some(&ca)).0, 201);
    let (s, c) = stack.call("POST", "/api/certificates", Some(&client));
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["subject"], "CN=client-1");
    let target = |certs: Value, trusted: Value| {
        json!({"id": "secure", "backend": {"targets": [{"hostname": "127.0.0.1", "port": 8443,
            "tls": true, "tls_config": {"enabled": true, "certs": certs, "trusted_certs": trusted}}]}})
    };
    // References must resolve: an unknown id, and a CA without a key as a client certificate.
    let (s, body) = stack.call(
        "POST",
        "/api/backends",
        Some(&target(json!(["ghost"]), json!(["ca"]))),
    );
    assert_eq!(s, 400, "{body}");
    assert_eq!(
        problem_paths(&body),
        vec!["backends[secure].backend.targets[0].tls_config.certs[0]"]
    );
    let (s, body) = stack.call(
        "POST",
        "/api/backends",
        Some(&target(json!(["ca"]), json!([]))),
    );
    assert_eq!(s, 400, "{body}");
    assert!(body.to_string().contains("has no private key"), "{body}");
    let (s, body) = stack.call(
        "POST",
        "/api/backends",
        Some(&target(json!(["client"]), json!(["ca"]))),
    );
    assert_eq!(s, 201, "{body}");
    assert_eq!(
        body["backend"]["targets"][0]["tls_config"]["certs"],
        json!(["client"])
    );
    // caRef must name a CA certificate.
    let (s, body) = stack.call(
        "PATCH",
        "/api/certificates/ca",
        Some(&json!({"caRef": "client"})),
    );
    assert_eq!(s, 400, "{body}");
    assert!(
        body.to_string().contains("is not a CA certificate"),
        "{body}"
    );
    // In use: 409 naming who uses it.
    let (s, body) = stack.call("DELETE", "/api/certificates/ca", None);
    assert_eq!(s, 409, "{body}");
    let text = body["error_description"].as_str().unwrap();
    assert!(
        text.contains("backend `secure`") && text.contains("certificate `client` (caRef)"),
        "{text}"
    );
    let (s, body) = stack.call("DELETE", "/api/certificates/client", None);
    assert_eq!(s, 409);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("backend `secure`")
    );
    // Once nothing names them, they go.
    assert_eq!(stack.call("DELETE", "/api/backends/secure", None).0, 200);
    assert_eq!(
        stack.call("DELETE", "/api/certificates/client", None).0,
        200
    );
    assert_eq!(stack.call("DELETE", "/api/certificates/ca", None).0, 200);
}

#[test]
fn gateway_check_names_a_bad_certificate_of_the_seed() {
    let dir = TempDir::new("certs-check");
    let pki = Pki::new();
    let (chain, key) = pki.ec("a", "a.example.com");
    let (_, other_key) = pki.ec("b", "b.example.com");
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        "[node]\nid = \"n\"\ncores = 1\n[listeners.http]\naddr = \"127.0.0.1:0\"\n\
         [admin]\naddr = \"127.0.0.1:0\"\ntoken = \"long-enough-token\"\n\
         [seed]\nentities = \"entities.json\"\n",
    )
    .unwrap();
    let check = |certs: Value| {
        std::fs::write(
            dir.path().join("entities.json"),
            json!({"certificates": certs}).to_string(),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let ok = check(json!([{"id": "a", "chain": chain, "privateKey": key}]));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = check(json!([
        {"id": "a", "chain": chain, "privateKey": other_key},
        {"id": "b", "chain": "garbage", "privateKey": key, "autoRenew": true},
    ]));
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    for want in [
        "certificates[0].privateKey: the private key does not match the public key of the certificate",
        "certificates[1].chain: no PEM `CERTIFICATE` section found",
        "certificates[1].autoRenew: not supported by Tollgate",
    ] {
        assert!(stderr.contains(want), "{want} not in {stderr}");
    }
    assert!(!stderr.contains(&key_body(&key)), "{stderr}");
}

#[test]
fn on_kafka_the_topic_carries_the_key_sealed_and_the_other_node_gets_it() {
    use common::kafka::{broker, read_topic, serial, unique};
    use common::stack::kafka_entity_log;
    use gateway::kafka::Topics;
    let Some(brokers) = broker() else { return };
    let _serial = serial();
    let topics = Topics::with_suffix(&unique("certs"));
    let key_dir = TempDir::new("certs-cluster-key");
    let key_file = key_dir.path().join("cluster.key");
    std::fs::write(&key_file, "17".repeat(32)).unwrap();
    let member = |id: &str, dir: &Path| {
        Stack::start(
            dir,
            StackOptions {
                key_file: Some(&key_file),
                kafka: Some(kafka_entity_log(&brokers, &topics, 1, dir, id)),
                ..StackOptions::new(id, 1, TOKEN)
            },
        )
    };
    let (dir_a, dir_b) = (TempDir::new("certs-kafka-a"), TempDir::new("certs-kafka-b"));
    let a = member("cert-a", dir_a.path());
    let b = member("cert-b", dir_b.path());
    let pki = Pki::new();
    let (chain, key) = pki.ec("k", "kafka.example.com");
    let cert = json!({"id": "k", "chain": chain, "privateKey": key});
    assert_eq!(a.call("POST", "/api/certificates", Some(&cert)).0, 201);
    // Node B folds it from the topic: its admin API and its data plane have it.
    assert!(common::wait_until(Duration::from_secs(10), || {
        b.call("GET", "/api/certificates/k", None).0 == 200
    }));
    assert!(common::wait_until(Duration::from_secs(2), || {
        runtime(&b) == vec![("k".to_owned(), true, vec!["kafka.example.com".to_owned()])]
    }));
    assert_eq!(
        b.call("GET", "/api/certificates/k", None).1["privateKey"],
        "***"
    );
    // The topic's bytes: sealed, never the key.
    let records = read_topic(
        &brokers,
        &topics.entities,
        1,
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let bytes: Vec<u8> = records.iter().flat_map(|(_, p)| p.clone()).collect();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("\"kind\":\"certificate\""), "{text}");
    assert!(text.contains("sealed:v1:"));
    assert!(
        !text.contains(&key_body(&key)),
        "a private key is in clear on the topic"
    );
}

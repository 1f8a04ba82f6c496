//! TLS at the edge and to upstreams, through the real binary with real clients (curl, openssl
//! s_client, Python's ssl) and real servers (nginx with TLS), on both IO drivers: versions,
//! ALPN, SNI, resumption with tickets shared by the cores, every HTTP/1.1 feature over TLS,
//! client certificates and their plugins, bad input on the TLS port, and upstream TLS that never
//! falls back to plaintext. Certificates are made by the tests (openssl), never committed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::{Alg, Ca, Issued, serial_of};
use common::{Binary, Reply, TempDir, Upstream, binary_config, curl};
use gateway::runtime::IoMode;
use serde_json::{Value, json};

fn drivers() -> Vec<IoMode> {
    let mut d = vec![IoMode::Epoll];
    if common::uring_available() {
        d.push(IoMode::Uring);
    }
    d
}

fn https_addr(bin: &Binary) -> SocketAddr {
    bin.logged_addr("https_addr=")
}

fn https_section(server: &Issued, extra: &str) -> String {
    format!(
        "[listeners.https]\naddr = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n{extra}\n",
        server.cert.display(),
        server.key.display()
    )
}

fn mock_entities() -> Value {
    json!({
        "backends": [{"id": "m", "backend": {"mock": {"body": "hello over tls"}}}],
        "routes": [{"id": "r", "frontend": {"domains": ["*"]}, "backend_ref": "m"}],
    })
}

/// `curl` to `https://{name}:{port}{path}`, resolved to 127.0.0.1, trusting `ca`.
fn curl_https(
    addr: SocketAddr,
    name: &str,
    path: &str,
    ca: &Path,
    extra: &[&str],
) -> common::Output {
    let resolve = format!("{name}:{}:127.0.0.1", addr.port());
    let url = format!("https://{name}:{}{path}", addr.port());
    let ca = ca.display().to_string();
    let mut args = vec!["-i", "--cacert", &ca, "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

fn status_of(out: &common::Output) -> u16 {
    let text = out.stdout_text();
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `openssl s_client` with `args`, stdin closed after `input`; stdout + stderr.
fn s_client(addr: SocketAddr, args: &[&str], input: &str) -> String {
    let connect = format!("127.0.0.1:{}", addr.port());
    let mut child = Command::new("openssl")
        .args(["s_client", "-ign_eof", "-connect", &connect])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const GET: &str = "GET / HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";

/// Versions, ALPN, SNI (default, wildcard, strict), and resumption across cores.
fn versions_alpn_sni_resumption(io: IoMode) {
    let mut ca = Ca::new("edge");
    let server = ca.server("gw", &["gw.test", "*.wild.test"], Alg::EcP256);
    let ca_path = ca.cert().display().to_string();
    let config = binary_config(&https_section(&server, "")).replace("cores = 1", "cores = 2");
    let bin = Binary::start(&config, &mock_entities(), io);
    let addr = https_addr(&bin);

    // curl verifies the chain and the name, for the exact and the wildcard SAN.
    for name in ["gw.test", "api.wild.test"] {
        let out = curl_https(addr, name, "/", ca.cert(), &[]);
        assert_eq!(status_of(&out), 200, "{io:?} {name}: {}", out.stderr);
        assert!(out.stdout_text().ends_with("hello over tls"));
    }
    // TLS 1.3 and 1.2 (min_version 1.2), ALPN http/1.1.
    let t13 = s_client(
        addr,
        &[
            "-servername",
            "gw.test",
            "-alpn",
            "http/1.1",
            "-CAfile",
            &ca_path,
        ],
        GET,
    );
    assert!(
        t13.contains("TLSv1.3") && t13.contains("ALPN protocol: http/1.1"),
        "{t13}"
    );
    assert!(t13.contains("Verify return code: 0 (ok)"), "{t13}");
    assert!(t13.contains("hello over tls"), "{t13}");
    let t12 = s_client(
        addr,
        &["-tls1_2", "-servername", "gw.test", "-CAfile", &ca_path],
        GET,
    );
    assert!(
        t12.contains("TLSv1.2") && t12.contains("hello over tls"),
        "{t12}"
    );
    // Resumption: a ticket from one connection resumes the next ones, whichever core accepts
    // them (the ticket keys are the node's, shared by its 2 cores).
    let dir = TempDir::new("sess");
    let sess = dir.path().join("s.pem").display().to_string();
    let first = s_client(
        addr,
        &[
            "-servername",
            "gw.test",
            "-CAfile",
            &ca_path,
            "-sess_out",
            &sess,
        ],
        GET,
    );
    assert!(first.contains("hello over tls"), "{first}");
    let mut reused = 0;
    for _ in 0..8 {
        let again = s_client(
            addr,
            &[
                "-servername",
                "gw.test",
                "-CAfile",
                &ca_path,
                "-sess_in",
                &sess,
            ],
            GET,
        );
        if again.contains("Reused, TLSv1.3") {
            reused += 1;
        }
    }
    assert_eq!(
        reused, 8,
        "{io:?}: every connection resumed with the ticket"
    );
    drop(bin);

    // min_version 1.3 refuses 1.2; strict_sni refuses an unknown name with an alert.
    let strict = binary_config(&https_section(
        &server,
        "min_version = \"1.3\"\nstrict_sni = true",
    ));
    let bin = Binary::start(&strict, &mock_entities(), io);
    let addr = https_addr(&bin);
    let t12 = s_client(addr, &["-tls1_2", "-servername", "gw.test"], GET);
    assert!(
        !t12.contains("hello over tls") && t12.contains("alert"),
        "{t12}"
    );
    let unknown = s_client(addr, &["-servername", "unknown.test"], GET);
    assert!(
        !unknown.contains("hello over tls") && unknown.contains("alert"),
        "{unknown}"
    );
    let known = curl_https(addr, "gw.test", "/", ca.cert(), &[]);
    assert_eq!(status_of(&known), 200, "{}", known.stderr);
}

#[test]
fn versions_alpn_sni_and_resumption_on_both_drivers() {
    for io in drivers() {
        versions_alpn_sni_resumption(io);
    }
}

/// The HTTP/1.1 path over TLS: keep-alive and pipelining, chunked both ways, 100-continue, a
/// streamed 3 MiB body, quotas and their headers, an RSA certificate (Python's ssl client).
fn http11_over_tls(io: IoMode) {
    let mut ca = Ca::new("http11");
    let server = ca.server("gw", &["gw.test"], Alg::Rsa2048);
    let up = Upstream::start(Reply::Echo);
    let entities = json!({
        "routes": [
            {"id": "echo", "frontend": {"domains": ["gw.test"]},
             "backend": {"targets": [{"hostname": "127.0.0.1", "port": up.port()}]}},
            {"id": "keyed", "frontend": {"domains": ["gw.test/keyed"]},
             "backend": {"targets": [{"hostname": "127.0.0.1", "port": up.port()}]},
             "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]}],
        "apiKeys": [{"clientId": "k1", "clientSecret": "TlsSecret-0123456789",
                     "authorizedEntities": ["route_keyed"], "dailyQuota": 3}],
    });
    let bin = Binary::start(&binary_config(&https_section(&server, "")), &entities, io);
    let addr = https_addr(&bin);
    let script = r#"
import json, socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
def conn():
    s = socket.create_connection(("127.0.0.1", port))
    return ctx.wrap_socket(s, server_hostname="gw.test")
def read_response(f):
    status = f.readline()
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""): break
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                f.readline(); break
            body += f.read(size); f.readline()
    else:
        body = f.read(int(headers.get("content-length", "0")))
    return int(status.split()[1]), headers, body
out = {}
s = conn(); out["alpn"] = s.selected_alpn_protocol(); out["version"] = s.version()
f = s.makefile("rb")
# Pipelining: three requests in one write, answered in order on one connection.
s.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: gw.test\r\n\r\n" % i for i in range(3)))
out["pipelined"] = [json.loads(read_response(f)[2])["path"] for _ in range(3)]
# A chunked request body, 3 MiB streamed in 64 KiB chunks.
chunk = bytes(range(256)) * 256
s.sendall(b"POST /up HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n")
for _ in range(48):
    s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
s.sendall(b"0\r\n\r\n")
st, h, body = read_response(f)
out["chunked_upload"] = [st, json.loads(body)["body_len"]]
# 100-continue.
s.sendall(b"POST /c HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
st, _, _ = read_response(f)
s.sendall(b"hello")
st2, _, body = read_response(f)
out["continue"] = [st, st2, json.loads(body)["body"]]
# Quotas: 3 a day, with their headers, then 429.
key = b"Otoroshi-Client-Id: k1\r\nOtoroshi-Client-Secret: TlsSecret-0123456789\r\n"
q = []
for _ in range(4):
    s.sendall(b"GET /keyed HTTP/1.1\r\nHost: gw.test\r\n" + key + b"\r\n")
    st, h, _ = read_response(f)
    q.append([st, h.get("otoroshi-daily-calls-remaining")])
out["quota"] = q
print(json.dumps(out))
"#;
    let ca_path = ca.cert().display().to_string();
    let out = common::python(script, &[&addr.port().to_string(), &ca_path]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["alpn"], "http/1.1", "{io:?} {v}");
    assert_eq!(v["version"], "TLSv1.3");
    assert_eq!(v["pipelined"], json!(["/p0", "/p1", "/p2"]));
    assert_eq!(v["chunked_upload"], json!([200, 3 * 1024 * 1024]));
    assert_eq!(v["continue"], json!([100, 200, "hello"]));
    assert_eq!(
        v["quota"],
        json!([[200, "2"], [200, "1"], [200, "0"], [429, "0"]]),
        "{io:?}"
    );
    // The upstream was told the client came over TLS.
    let seen = up.seen();
    assert!(
        seen.iter()
            .all(|r| r.header("x-forwarded-proto") == Some("https"))
    );
}

#[test]
fn http11_over_tls_on_both_drivers() {
    for io in drivers() {
        http11_over_tls(io);
    }
}

/// Garbage, plain HTTP and a client that stalls mid-handshake each get a clear outcome and the
/// core keeps serving; every failure is counted on /metrics.
fn bad_input_on_the_tls_port(io: IoMode) {
    let mut ca = Ca::new("bad");
    let server = ca.server("gw", &["gw.test"], Alg::EcP256);
    let config = binary_config(&https_section(&server, "handshake_timeout_ms = 500"));
    let bin = Binary::start(&config, &mock_entities(), io);
    let addr = https_addr(&bin);
    // Plain HTTP on the TLS port: a readable 400, then close.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(GET.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = plain.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("plain_http_to_https_port"),
        "{io:?}: {answer:?}"
    );
    // Garbage: an alert (or a close), never a hang.
    let mut junk = TcpStream::connect(addr).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A handshake record holding a message of an unknown type (255).
    junk.write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0x00, 0x00, 0x00])
        .unwrap();
    let mut reply = Vec::new();
    let _ = junk.read_to_end(&mut reply);
    assert!(
        reply.is_empty() || reply[0] == 0x15,
        "{io:?}: an alert record: {reply:?}"
    );
    // A client that stalls mid-handshake is cut at the handshake timeout.
    let mut stall = TcpStream::connect(addr).unwrap();
    stall
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stall
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = stall.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{io:?}: cut after {waited:?}"
    );
    // The core still serves.
    let ok = curl_https(addr, "gw.test", "/", ca.cert(), &[]);
    assert_eq!(status_of(&ok), 200, "{io:?}: {}", ok.stderr);
    let admin = bin.admin_addr();
    let failures = || {
        common::admin_text(admin, "e2e-admin-token", "/metrics")
            .lines()
            .find_map(|l| {
                l.strip_prefix("tollgate_tls_handshake_failures_total ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    // Published once per tick.
    assert!(
        common::wait_until(Duration::from_secs(2), || failures() >= 3),
        "{io:?}: {} failures counted",
        failures()
    );
}

#[test]
fn bad_input_on_the_tls_port_on_both_drivers() {
    for io in drivers() {
        bad_input_on_the_tls_port(io);
    }
}

/// Client certificates: required (no certificate, or one from another CA, fails the
/// handshake), optional (the validators decide per route), the matching rules, and the
/// certificate forwarded in headers.
fn client_certificates(io: IoMode) {
    let mut edge = Ca::new("edge-mtls");
    let server = edge.server("gw", &["gw.test"], Alg::EcP256);
    let mut clients = Ca::new("Partner Clients CA");
    let partner = clients.client("partner", "/O=Partner/CN=client-1");
    let outsider = clients.client("outsider", "/O=Outsider/CN=client-2");
    let mut rogue_ca = Ca::new("Rogue CA");
    let rogue = rogue_ca.client("rogue", "/O=Partner/CN=client-1");
    let up = Upstream::start(Reply::Echo);
    let target = json!({"targets": [{"hostname": "127.0.0.1", "port": up.port()}]});
    let entities = json!({"routes": [
        {"id": "open", "frontend": {"domains": ["gw.test/open"]}, "backend": target},
        {"id": "cert", "frontend": {"domains": ["gw.test/cert"]}, "backend": target,
         "plugins": [{"plugin": "cp:otoroshi.next.plugins.NgHasClientCertValidator"},
                     {"plugin": "cp:otoroshi.next.plugins.NgClientCertChainHeader",
                      "config": {"send_dns": true, "send_pem": true}}]},
        {"id": "partner", "frontend": {"domains": ["gw.test/partner"]}, "backend": target,
         "plugins": [{"plugin": "cp:otoroshi.next.plugins.NgHasClientCertMatchingValidator",
                      "config": {"subject_dns": ["CN=client-1, O=Partner"]}}]},
        {"id": "serial", "frontend": {"domains": ["gw.test/serial"]}, "backend": target,
         "plugins": [{"plugin": "cp:otoroshi.next.plugins.NgHasClientCertMatchingValidator",
                      "config": {"serial_numbers": [serial_of(&outsider.cert)]}}]},
    ]});
    let client_ca = clients.cert().display().to_string();
    // Optional: the validators decide.
    let optional = binary_config(&https_section(
        &server,
        &format!("client_auth = \"optional\"\nclient_ca = \"{client_ca}\""),
    ));
    let bin = Binary::start(&optional, &entities, io);
    let addr = https_addr(&bin);
    let with = |c: &Issued| {
        vec![
            "--cert".to_owned(),
            c.cert.display().to_string(),
            "--key".to_owned(),
            c.key.display().to_string(),
        ]
    };
    let get = |path: &str, cert: Option<&Issued>| {
        let extra = cert.map(with).unwrap_or_default();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        curl_https(addr, "gw.test", path, edge.cert(), &extra)
    };
    assert_eq!(status_of(&get("/open", None)), 200, "{io:?}");
    let no_cert = get("/cert", None);
    assert_eq!(status_of(&no_cert), 401, "{io:?}");
    assert!(no_cert.stdout_text().contains("client_cert_required"));
    let forwarded = get("/cert", Some(&partner));
    assert_eq!(status_of(&forwarded), 200, "{io:?}: {}", forwarded.stderr);
    let body = forwarded.stdout_text();
    let echo: Value = serde_json::from_str(&body[body.find('{').unwrap()..]).unwrap();
    assert_eq!(
        common::echo_header(&echo, "x-client-cert-dns").as_deref(),
        Some("[\"CN=client-1, O=Partner\"]"),
        "{io:?}"
    );
    let pem = common::echo_header(&echo, "x-client-cert-pem").unwrap();
    assert!(pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{pem}");
    // The matching validator: subject, serial; another subject is 403.
    assert_eq!(status_of(&get("/partner", Some(&partner))), 200);
    let wrong = get("/partner", Some(&outsider));
    assert_eq!(status_of(&wrong), 403, "{io:?}");
    assert!(wrong.stdout_text().contains("client_cert_forbidden"));
    assert_eq!(status_of(&get("/serial", Some(&outsider))), 200, "{io:?}");
    assert_eq!(status_of(&get("/serial", Some(&partner))), 403, "{io:?}");
    // A certificate from another CA with the same subject never verifies.
    let forged = get("/partner", Some(&rogue));
    assert_ne!(status_of(&forged), 200, "{io:?}: {}", forged.stdout_text());
    drop(bin);
    // Required: no certificate fails the handshake, a good one passes.
    let required = binary_config(&https_section(
        &server,
        &format!("client_auth = \"required\"\nclient_ca = \"{client_ca}\""),
    ));
    let bin = Binary::start(&required, &entities, io);
    let addr = https_addr(&bin);
    let refused = curl_https(addr, "gw.test", "/open", edge.cert(), &[]);
    assert!(
        !refused.status.success(),
        "{io:?}: {}",
        refused.stdout_text()
    );
    let extra = with(&partner);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let ok = curl_https(addr, "gw.test", "/open", edge.cert(), &extra);
    assert_eq!(status_of(&ok), 200, "{io:?}: {}", ok.stderr);
    let extra = with(&rogue);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let forged = curl_https(addr, "gw.test", "/open", edge.cert(), &extra);
    assert!(!forged.status.success(), "{io:?}");
}

#[test]
fn client_certificates_on_both_drivers() {
    for io in drivers() {
        client_certificates(io);
    }
}

/// TLS to upstreams: an nginx with a certificate the gateway does not trust is a 502
/// `upstream_certificate_invalid`; a plain upstream behind `tls: true` is a 502
/// `upstream_tls_failed` and never receives a plaintext request.
fn upstream_tls_never_falls_back(io: IoMode) {
    let mut upstream_ca = Ca::new("Upstream CA");
    let cert = upstream_ca.server("up", &["localhost", "upstream.test"], Alg::EcP256);
    let nginx = common::nginx::Nginx::start_tls(
        &cert.cert,
        &cert.key,
        "location / { return 200 \"secret upstream\\n\"; }",
    );
    let plain = Upstream::start(Reply::Echo);
    let entities = json!({"routes": [
        {"id": "untrusted", "frontend": {"domains": ["untrusted.test"]},
         "backend": {"targets": [{"hostname": "localhost", "port": nginx.port, "tls": true,
                                  "ip_address": "127.0.0.1"}]}},
        {"id": "plain", "frontend": {"domains": ["plain.test"]},
         "backend": {"targets": [{"hostname": "localhost", "port": plain.port(), "tls": true,
                                  "ip_address": "127.0.0.1"}]}},
    ]});
    let bin = Binary::start(&binary_config(""), &entities, io);
    let mut c = bin.client();
    c.send(&common::get_request("untrusted.test", "/", &[]));
    let r = c.response();
    r.assert_error(502, "upstream_certificate_invalid");
    let mut c = bin.client();
    c.send(&common::get_request("plain.test", "/", &[]));
    let r = c.response();
    r.assert_error(502, "upstream_tls_failed");
    assert_eq!(
        plain.requests(),
        0,
        "{io:?}: a plaintext request reached the upstream"
    );
    let metrics = common::admin_text(bin.admin_addr(), "e2e-admin-token", "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tollgate_upstream_tls_failures_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[test]
fn upstream_tls_never_falls_back_on_both_drivers() {
    for io in drivers() {
        upstream_tls_never_falls_back(io);
    }
}

/// `gateway check` names every bad TLS setting.
#[test]
fn check_names_bad_tls_settings() {
    let mut ca = Ca::new("check");
    let a = ca.server("a", &["a.test"], Alg::EcP256);
    let b = ca.server("b", &["b.test"], Alg::EcP256);
    let dir = TempDir::new("tls-check");
    let config = dir.path().join("tollgate.toml");
    let write = |https: &str| {
        std::fs::write(
            &config,
            binary_config(https).replace("[seed]\nentities = \"entities.json\"\n", ""),
        )
        .unwrap();
    };
    let check = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.arg("check").arg("--config").arg(&config);
        common::run(cmd, Duration::from_secs(30))
    };
    // A key that does not match its certificate.
    write(&format!(
        "[listeners.https]\naddr = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        a.cert.display(),
        b.key.display()
    ));
    let out = check();
    assert!(!out.status.success());
    assert!(out.stderr.contains("listeners.https.key"), "{}", out.stderr);
    // Unknown values and a missing file.
    write(&format!(
        "[listeners.https]\naddr = \"127.0.0.1:0\"\ncert = \"/nonexistent.pem\"\nkey = \"{}\"\n\
         min_version = \"1.1\"\nclient_auth = \"required\"\n",
        a.key.display()
    ));
    let out = check();
    assert!(!out.status.success());
    for key in [
        "listeners.https.cert",
        "listeners.https.min_version",
        "listeners.https.client_ca",
    ] {
        assert!(out.stderr.contains(key), "{key} not named:\n{}", out.stderr);
    }
}

/// Certificate entities: created through the admin API, served by SNI on every core within a
/// tick (exact name before wildcard, an entity before the listener's file certificate), without
/// dropping an open connection; their private keys never come back. Upstreams trusted through
/// `tls_config.trusted_certs`, with mTLS to the backend through `tls_config.certs`, and `loose`.
#[test]
fn certificate_entities_by_sni_and_for_upstreams() {
    let mut ca = Ca::new("entities");
    let default = ca.server("default", &["default.test"], Alg::EcP256);
    let exact = ca.server("exact", &["api.shop.test"], Alg::EcP256);
    let wildcard = ca.server("wild", &["*.shop.test"], Alg::Rsa2048);
    // The upstream: nginx with a certificate of its own CA, asking for a client certificate.
    let mut up_ca = Ca::new("upstream-ca");
    let up_cert = up_ca.server("up", &["upstream.test"], Alg::EcP256);
    let mut client_ca = Ca::new("upstream-clients");
    let gw_client = client_ca.client("gw-client", "/O=Tollgate/CN=gateway");
    let nginx = common::nginx::Nginx::start_tls(
        &up_cert.cert,
        &up_cert.key,
        &format!(
            "ssl_client_certificate {}; ssl_verify_client optional;\n\
             location / {{ return 200 \"verify=$ssl_client_verify dn=$ssl_client_s_dn\\n\"; }}",
            client_ca.cert().display()
        ),
    );
    let config = binary_config(&https_section(&default, "")).replace("cores = 1", "cores = 2");
    let bin = Binary::start(&config, &mock_entities(), IoMode::Epoll);
    let addr = https_addr(&bin);
    let admin = bin.admin_addr();
    let call = |method: &str, path: &str, body: Option<&Value>| {
        common::admin_call(admin, "e2e-admin-token", method, path, body)
    };
    let served_cn = |name: &str| {
        let out = s_client(addr, &["-servername", name], GET);
        out.lines()
            .find(|l| l.trim_start().starts_with("0 s:"))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(served_cn("api.shop.test").contains("CN = default.test"));
    // An open keep-alive connection across the change.
    let ca_path = ca.cert().display().to_string();
    let script = r#"
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="default.test")
f = s.makefile("rb")
def get():
    s.sendall(b"GET / HTTP/1.1\r\nHost: default.test\r\n\r\n")
    status = f.readline(); n = 0
    while True:
        line = f.readline()
        if line == b"\r\n": break
        if line.lower().startswith(b"content-length"): n = int(line.split(b":")[1])
    f.read(n)
    return status.split()[1].decode()
print(get(), flush=True)
sys.stdin.readline()
print(get(), flush=True)
"#;
    let mut keep = Command::new("python3")
        .args(["-c", script, &addr.port().to_string(), &ca_path])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keep_out = std::io::BufReader::new(keep.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut keep_out, &mut line).unwrap();
    assert_eq!(line.trim(), "200");
    for (id, issued) in [("exact", &exact), ("wild", &wildcard)] {
        let body = json!({"id": id, "chain": issued.cert_pem(), "privateKey": issued.key_pem()});
        let (status, answer) = call("POST", "/api/certificates", Some(&body));
        assert_eq!(status, 201, "{answer}");
        assert!(!answer.to_string().contains("PRIVATE KEY"), "{answer}");
    }
    // Every core takes them within a tick: exact before wildcard, then the file certificate.
    assert!(common::wait_until(Duration::from_secs(2), || (0..6).all(
        |_| served_cn("api.shop.test").contains("CN = api.shop.test")
    )));
    assert!(served_cn("www.shop.test").contains("CN = *.shop.test"));
    assert!(served_cn("deep.www.shop.test").contains("CN = default.test"));
    let verified = curl_https(addr, "www.shop.test", "/", ca.cert(), &[]);
    assert_eq!(status_of(&verified), 200, "{}", verified.stderr);
    // The open connection still works.
    keep.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut keep_out, &mut line).unwrap();
    assert_eq!(
        line.trim(),
        "200",
        "the connection survived the certificate change"
    );
    let _ = keep.wait();

    // Upstream trust: unknown CA → 502; trusted through tls_config → 200 with the gateway's
    // client certificate verified by nginx; a wrong name passes only with `loose`.
    let ca_entity =
        json!({"id": "up-ca", "chain": std::fs::read_to_string(up_ca.cert()).unwrap(), "ca": true});
    assert_eq!(call("POST", "/api/certificates", Some(&ca_entity)).0, 201);
    let client_entity = json!({"id": "gw-client", "chain": gw_client.cert_pem(),
        "privateKey": gw_client.key_pem(), "client": true});
    assert_eq!(
        call("POST", "/api/certificates", Some(&client_entity)).0,
        201
    );
    let route = |id: &str, host: &str, hostname: &str, tls_config: Value| {
        json!({"id": id, "frontend": {"domains": [host]},
            "backend": {"targets": [{"hostname": hostname, "port": nginx.port, "tls": true,
                "ip_address": "127.0.0.1", "tls_config": tls_config}]}})
    };
    let cases = [
        (
            "plain-trust",
            "sys.test",
            "upstream.test",
            json!(null),
            "upstream_certificate_invalid",
        ),
        (
            "trusted",
            "trusted.test",
            "upstream.test",
            json!({"enabled": true, "trusted_certs": ["up-ca"], "certs": ["gw-client"]}),
            "",
        ),
        (
            "wrong-name",
            "wrong.test",
            "other.test",
            json!({"enabled": true, "trusted_certs": ["up-ca"]}),
            "upstream_certificate_invalid",
        ),
        (
            "loose",
            "loose.test",
            "other.test",
            json!({"enabled": true, "trusted_certs": ["up-ca"], "loose": true}),
            "",
        ),
        (
            "no-client",
            "noclient.test",
            "upstream.test",
            json!({"enabled": true, "trusted_certs": ["up-ca"]}),
            "",
        ),
    ];
    for (id, host, hostname, tls_config, _) in &cases {
        let (status, answer) = call(
            "POST",
            "/api/routes",
            Some(&route(id, host, hostname, tls_config.clone())),
        );
        assert_eq!(status, 201, "{id}: {answer}");
    }
    // Every core has the routes: the last one created no longer falls to the catch-all mock.
    assert!(common::wait_until(Duration::from_secs(5), || (0..4).all(
        |_| {
            let mut c = bin.client();
            c.send(&common::get_request("noclient.test", "/", &[]));
            c.response().text() != "hello over tls"
        }
    )));
    for (id, host, _, _, error) in &cases {
        let mut c = bin.client();
        c.send(&common::get_request(host, "/", &[]));
        let r = c.response();
        if error.is_empty() {
            assert_eq!(r.status, 200, "{id}: {r:?}");
        } else {
            r.assert_error(502, error);
        }
        if *id == "trusted" {
            assert_eq!(
                r.text(),
                "verify=SUCCESS dn=CN=gateway,O=Tollgate\n",
                "{id}"
            );
        }
    }
    // The same upstream address under three TLS identities (mTLS as the gateway, the same trust
    // without a client certificate, the system roots): a pooled connection is reused only under
    // the identity it was made with, never lending the client certificate or the verified trust
    // to another route. Alternating on both cores, every request shows its own identity.
    for round in 0..8 {
        for (host, expect) in [
            (
                "trusted.test",
                Some("verify=SUCCESS dn=CN=gateway,O=Tollgate\n"),
            ),
            ("noclient.test", Some("verify=NONE dn=\n")),
            ("sys.test", None),
        ] {
            let mut c = bin.client();
            c.send(&common::get_request(host, "/", &[]));
            let r = c.response();
            match expect {
                Some(body) => assert_eq!(r.text(), body, "round {round}, {host}: {r:?}"),
                None => r.assert_error(502, "upstream_certificate_invalid"),
            }
        }
    }
}

/// Session tickets open on every core and across one rotation of the node's ticket key, not
/// two.
#[test]
fn tickets_survive_one_rotation() {
    let mut ca = Ca::new("tickets");
    let server = ca.server("gw", &["gw.test"], Alg::EcP256);
    let config = binary_config(&https_section(&server, "ticket_rotation_secs = 2"))
        .replace("cores = 1", "cores = 2");
    let bin = Binary::start(&config, &mock_entities(), IoMode::Epoll);
    let addr = https_addr(&bin);
    let dir = TempDir::new("rot");
    let sess = dir.path().join("s.pem").display().to_string();
    let first = s_client(addr, &["-servername", "gw.test", "-sess_out", &sess], GET);
    assert!(first.contains("hello over tls"));
    let resumes = || {
        s_client(addr, &["-servername", "gw.test", "-sess_in", &sess], GET)
            .contains("Reused, TLSv1.3")
    };
    assert!(resumes(), "fresh ticket");
    // After one rotation (2 s) the previous key still opens it; after two it does not.
    std::thread::sleep(Duration::from_millis(2600));
    assert!(resumes(), "after one rotation");
    std::thread::sleep(Duration::from_millis(2200));
    assert!(!resumes(), "after two rotations the ticket is refused");
}

//! Token consumers through the real `gateway` binary with third-party clients: PyJWT and
//! `cryptography` mint the tokens a client's identity provider would, `requests` calls the API,
//! `openssl` inspects the client certificates the gateway issues and `curl` presents them, and the
//! ledger bills the subscription. One test per kind from "API created" to "calls billed", one
//! negative test per 401 code (on both IO drivers).

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Binary, Upstream};
use gateway::runtime::IoMode;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-admin-token";

fn drivers() -> Vec<IoMode> {
    let mut d = vec![IoMode::Epoll];
    if common::uring_available() {
        d.push(IoMode::Uring);
    }
    d
}

/// Helpers, an RSA key (the client's identity provider) and an API `shop` with a published
/// `jwt` consumer `partners` (RS256, the provider's PEM public key, issuer and audience).
const PRELUDE: &str = concat!(
    py_admin_prelude!(),
    r#"import base64, jwt
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519
from cryptography.hazmat.primitives import serialization
def get(path, tok=None, host="shop.local"):
    h = {"Host": host}
    if tok is not None:
        h["Authorization"] = "Bearer " + tok
    return requests.get(data + path, headers=h, timeout=10)
idp = rsa.generate_private_key(public_exponent=65537, key_size=2048)
idp_pem = idp.public_key().public_bytes(serialization.Encoding.PEM,
    serialization.PublicFormat.SubjectPublicKeyInfo).decode()
def mint(sub="acme-client", key=idp, alg="RS256", headers=None, **claims):
    now = int(time.time())
    body = {"sub": sub, "iss": "https://idp.example", "aud": "shop-api", "iat": now, "nbf": now,
            "exp": now + 600}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers=headers)
api = {"id": "shop", "name": "shop",
       "backends": [{"id": "b", "backend": {"targets": [{"hostname": "127.0.0.1", "port": PORT}]}}],
       "routes": [{"id": "shop-things", "frontend": {"domains": ["shop.local/things"]}, "backend": "b"}]}
out = {}
out["api_state"] = call("POST", "/api/apis", api).json()["state"]
call("POST", "/api/apis/shop/consumers", {"id": "partners", "kind": "jwt", "dailyQuota": 1000,
     "config": {"verifier": {"alg": "RS256", "public_key": idp_pem},
                "issuer": "https://idp.example", "audience": "shop-api", "leeway_s": 5}})
call("PATCH", "/api/apis/shop", {"state": "published"})
wait(lambda: get("/things").status_code == 401)
"#
);

fn script(body: &str, port: u16) -> String {
    format!("{}{body}", PRELUDE.replace("PORT", &port.to_string()))
}

#[test]
fn jwt_from_an_api_created_to_calls_billed_to_the_subscription() {
    for io in drivers() {
        jwt_billed(io);
    }
}

fn jwt_billed(io: IoMode) {
    let upstream = Upstream::start(common::Reply::Echo);
    let config = common::binary_config("").replace("cores = 1", "cores = 2");
    let bin = Binary::start(&config, &json!({}), io);
    let body = r#"
out["anonymous"] = get("/things").json()["error"]
sub = call("POST", "/api/apis/shop/subscriptions", {"id": "acme", "consumer_ref": "partners",
                                                    "subject": "acme-client"})
out["sub_status"] = sub.status_code
out["creds"] = sub.json().get("credentials")
tok = mint()
wait(lambda: get("/things", tok).status_code == 200)
s = requests.Session()
codes = [s.get(data + "/things", headers={"Host": "shop.local", "Authorization": "Bearer " + tok},
               timeout=10).status_code for _ in range(24)]
out["codes"] = sorted(set(codes))
# A second subscription, named by its id (no subject given), with a fresh token.
other = call("POST", "/api/apis/shop/subscriptions", {"id": "globex", "consumer_ref": "partners"}).json()
out["other_creds"] = other.get("credentials")
wait(lambda: get("/things", mint(sub="globex")).status_code == 200)
def billed():
    r = requests.get(ledger + "/api/usage", params={"subscription": "acme", "granularity": "day"}, timeout=10)
    items = r.json().get("items", [])
    return items and items[-1]["calls"] >= 25
wait(billed, 20)
time.sleep(0.5)
usage = requests.get(ledger + "/api/usage", params={"subscription": "acme", "granularity": "month"}).json()
out["subscription_calls"] = usage["items"][-1]["calls"]
period = usage["items"][-1]["period"]
out["csv"] = requests.get(ledger + "/api/export", params={"period": period, "format": "csv", "by": "subscription"}).text
# Disabling the subscription stops its (cached) token within a tick.
call("PATCH", "/api/apis/shop/subscriptions/acme", {"status": "disabled"})
# (every core: a new connection may land on either)
wait(lambda: all(get("/things", tok).status_code == 401 for _ in range(6)))
out["disabled"] = get("/things", tok).json().get("error")
print(json.dumps(out))
"#;
    let out = bin.python(&script(body, upstream.port()), TOKEN);
    assert_eq!(out["api_state"], "staging", "{out}");
    assert_eq!(out["anonymous"], "unauthorized");
    assert_eq!(out["sub_status"], 201);
    assert_eq!(out["creds"], json!({"subject": "acme-client"}));
    assert_eq!(out["other_creds"], json!({"subject": "globex"}));
    assert_eq!(out["codes"], json!([200]), "{out}");
    assert_eq!(out["subscription_calls"], 25, "{out}");
    let csv = out["csv"].as_str().unwrap();
    assert!(csv.contains(",shop,partners,acme,25,"), "{csv}");
    assert_eq!(out["disabled"], "subscription_disabled");
}

/// Each refusal of a `jwt` consumer, as a client's broken or hostile token produces it.
#[test]
fn jwt_refusals_have_one_code_each() {
    for io in drivers() {
        let upstream = Upstream::start(common::Reply::Echo);
        let bin = Binary::start(&common::binary_config(""), &json!({}), io);
        let body = r#"
call("POST", "/api/apis/shop/subscriptions", {"id": "acme", "consumer_ref": "partners",
                                              "subject": "acme-client"})
wait(lambda: get("/things", mint()).status_code == 200)
def err(tok):
    r = get("/things", tok)
    return [r.status_code, r.json().get("error")]
now = int(time.time())
stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
unsigned = jwt.encode({"sub": "acme-client", "exp": now + 60}, None, algorithm="none")
# Algorithm confusion: HS256 "signed" with the provider's public key PEM as the secret
# (PyJWT refuses to do it, so the token is made by hand).
import hmac, hashlib
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b64(json.dumps({"sub": "acme-client", "iss": "https://idp.example", "aud": "shop-api", "exp": now + 60}).encode())
confused = h + "." + p + "." + b64(hmac.new(idp_pem.encode(), (h + "." + p).encode(), hashlib.sha256).digest())
out["malformed"] = err("a.b.c")
out["garbage_json"] = err(b64(b"{") + "." + p + "." + b64(b"x"))
out["no_exp"] = err(mint(exp=None))
out["none"] = err(unsigned)
out["confusion"] = err(confused)
out["bad_signature"] = err(mint(key=stranger))
out["expired"] = err(mint(exp=now - 60))
out["not_yet_valid"] = err(mint(nbf=now + 120))
out["issued_in_future"] = err(mint(iat=now + 120))
out["wrong_issuer"] = err(mint(iss="https://evil.example"))
out["wrong_audience"] = err(mint(aud="other-api"))
out["unknown_subject"] = err(mint(sub="nobody"))
out["good"] = get("/things", mint()).status_code
print(json.dumps(out))
"#;
        let out = bin.python(&script(body, upstream.port()), TOKEN);
        let expect = |field: &str, code: &str| {
            assert_eq!(out[field], json!([401, code]), "{io:?} {field}: {out}");
        };
        expect("malformed", "token_malformed");
        expect("garbage_json", "token_malformed");
        expect("no_exp", "token_malformed");
        expect("none", "token_bad_signature");
        expect("confusion", "token_bad_signature");
        expect("bad_signature", "token_bad_signature");
        expect("expired", "token_expired");
        expect("not_yet_valid", "token_not_yet_valid");
        expect("issued_in_future", "token_not_yet_valid");
        expect("wrong_issuer", "token_wrong_issuer");
        expect("wrong_audience", "token_wrong_audience");
        expect("unknown_subject", "token_unknown_subject");
        assert_eq!(out["good"], 200);
    }
}

/// A JWK set of several algorithms' keys is not one verifier: each consumer has one algorithm.
/// ES256 and EdDSA providers publish JWK sets with `kid`s; tokens select their key.
#[test]
fn jwt_consumers_with_jwk_sets_select_keys_by_kid() {
    let upstream = Upstream::start(common::Reply::Echo);
    let bin = Binary::start(&common::binary_config(""), &json!({}), IoMode::Epoll);
    let body = r#"
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
k1 = ec.generate_private_key(ec.SECP256R1())
k2 = ec.generate_private_key(ec.SECP256R1())
ed = ed25519.Ed25519PrivateKey.generate()
def jwk(alg, key, kid):
    j = json.loads(alg.to_jwk(key.public_key()))
    j["kid"] = kid
    return j
call("POST", "/api/apis/shop/consumers", {"id": "ec", "kind": "jwt", "status": "published",
     "config": {"verifier": {"alg": "ES256", "jwks": {"keys": [jwk(ECAlgorithm, k1, "one"), jwk(ECAlgorithm, k2, "two")]}},
                "issuer": "https://idp.example"}})
call("POST", "/api/apis/shop/consumers", {"id": "ed", "kind": "jwt", "status": "published",
     "config": {"verifier": {"alg": "EdDSA", "jwks": {"keys": [jwk(OKPAlgorithm, ed, "e")]}}, "subject_claim": "client_id"}})
call("POST", "/api/apis/shop/subscriptions", {"id": "s-ec", "consumer_ref": "ec", "subject": "svc"})
call("POST", "/api/apis/shop/subscriptions", {"id": "s-ed", "consumer_ref": "ed", "subject": "svc"})
def code(tok):
    r = get("/things", tok)
    return r.status_code if r.status_code == 200 else r.json().get("error")
wait(lambda: code(mint(sub="svc", key=k2, alg="ES256", headers={"kid": "two"})) == 200)
wait(lambda: code(mint(sub=None, client_id="svc", key=ed, alg="EdDSA", headers={"kid": "e"})) == 200)
out["one"] = code(mint(sub="svc", key=k1, alg="ES256", headers={"kid": "one"}))
out["wrong_kid"] = code(mint(sub="svc", key=k1, alg="ES256", headers={"kid": "two"}))
out["unknown_kid"] = code(mint(sub="svc", key=k1, alg="ES256", headers={"kid": "three"}))
out["ed"] = code(mint(sub=None, client_id="svc", key=ed, alg="EdDSA", headers={"kid": "e"}))
# A bad key config is refused with its path, never stored.
r = call("POST", "/api/apis/shop/consumers", {"id": "bad", "kind": "jwt",
         "config": {"verifier": {"alg": "ES256", "jwks": {"keys": [jwk(OKPAlgorithm, ed, "x")]}}}}, ok=None)
out["bad"] = [r.status_code, r.text]
print(json.dumps(out))
"#;
    let out = bin.python(&script(body, upstream.port()), TOKEN);
    assert_eq!(out["one"], 200, "{out}");
    assert_eq!(out["wrong_kid"], "token_bad_signature");
    assert_eq!(out["unknown_kid"], "token_bad_signature");
    assert_eq!(out["ed"], 200);
    assert_eq!(out["bad"][0], 400, "{out}");
    assert!(
        out["bad"][1]
            .as_str()
            .unwrap()
            .contains("config.verifier.jwks.keys[0]"),
        "{out}"
    );
}

fn openssl_text(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `(status, error code)` of `GET https://shop.test:{port}/things` with curl, presenting `cert`.
fn mtls_get(
    addr: SocketAddr,
    ca: &std::path::Path,
    cert: Option<(&std::path::Path, &std::path::Path)>,
) -> (u16, String) {
    let resolve = format!("shop.test:{}:127.0.0.1", addr.port());
    let url = format!("https://shop.test:{}/things", addr.port());
    let ca = ca.display().to_string();
    let mut args = vec![
        "-w".to_owned(),
        "\n%{http_code}".to_owned(),
        "--cacert".to_owned(),
        ca,
        "--resolve".to_owned(),
        resolve,
    ];
    if let Some((c, k)) = cert {
        args.extend([
            "--cert".to_owned(),
            c.display().to_string(),
            "--key".to_owned(),
            k.display().to_string(),
        ]);
    }
    args.push(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::curl(&args);
    let text = out.stdout_text();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let error = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (code.trim().parse().unwrap_or(0), error)
}

/// mTLS consumers: the gateway issues a client certificate signed by the API's own CA (made at
/// the first subscription, a `certificates` entity whose key is sealed), answered once; openssl
/// reads it; curl calls with it over the HTTPS listener (client_auth optional) and the calls are
/// billed to the subscription. An existing certificate (signed by the listener's client_ca) is
/// bound by its fingerprint; the consumer's DN regexes restrict; disabling the subscription stops
/// its certificate at once.
#[test]
fn mtls_from_an_api_created_to_calls_billed_to_the_subscription() {
    use common::pki::Ca as TestCa;
    for io in drivers() {
        let mut edge = TestCa::new("edge-tokens");
        let server = edge.server("gw", &["shop.test"], common::pki::Alg::EcP256);
        let mut partners = TestCa::new("Partner Clients CA");
        let partner = partners.client("partner", "/O=Partner/CN=robot-1");
        let outsider = partners.client("outsider", "/O=Outsider/CN=robot-2");
        let upstream = Upstream::start(common::Reply::Echo);
        let https = format!(
            "[listeners.https]\naddr = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nclient_auth = \"optional\"\nclient_ca = \"{}\"\n",
            server.cert.display(),
            server.key.display(),
            partners.cert().display()
        );
        let config = common::binary_config(&https).replace("cores = 1", "cores = 2");
        let bin = Binary::start(&config, &json!({}), io);
        let addr = bin.logged_addr("https_addr=");
        let admin = bin.logged_addr("admin_addr=");
        let ledger = bin.logged_addr("ledger_addr=");
        let call = |method: &str, path: &str, body: Value| {
            let body = (!body.is_null()).then_some(body);
            let (status, answer) = common::admin_call(admin, TOKEN, method, path, body.as_ref());
            assert!(status < 300, "{method} {path}: {status} {answer}");
            answer
        };
        let api = json!({"id": "shop", "name": "shop",
            "backends": [{"id": "b", "backend": {"targets": [{"hostname": "127.0.0.1", "port": upstream.port()}]}}],
            "routes": [{"id": "shop-things", "frontend": {"domains": ["shop.test/things"]}, "backend": "b"}]});
        call("POST", "/api/apis", api);
        call(
            "POST",
            "/api/apis/shop/consumers",
            json!({"id": "robots", "kind": "mtls", "dailyQuota": 1000,
            "config": {"regex_issuer_dns": ["CN=Tollgate API CA shop, O=Tollgate"]}}),
        );
        call(
            "POST",
            "/api/apis/shop/consumers",
            json!({"id": "partners", "kind": "mtls",
            "config": {"regex_subject_dns": ["CN=[a-z0-9-]+, O=Partner"]}}),
        );
        call("PATCH", "/api/apis/shop", json!({"state": "published"}));
        let sub = call(
            "POST",
            "/api/apis/shop/subscriptions",
            json!({"id": "acme", "consumer_ref": "robots"}),
        );
        let creds = &sub["credentials"];
        let dir = bin.dir.path();
        let (cert, key) = (dir.join("acme.crt"), dir.join("acme.key"));
        std::fs::write(&cert, creds["certificate"].as_str().unwrap()).unwrap();
        std::fs::write(&key, creds["privateKey"].as_str().unwrap()).unwrap();
        // Answered once: the subscription shows the certificate, never the key.
        let again = call("GET", "/api/apis/shop/subscriptions/acme", Value::Null);
        assert!(again.get("credentials").is_none(), "{again}");
        assert_eq!(again["fingerprint"], creds["fingerprint"]);
        // openssl reads what a client would: subject, issuer (the API's CA), client auth, and
        // the fingerprint the gateway answered.
        let cert_path = cert.display().to_string();
        let text = openssl_text(&[
            "x509",
            "-in",
            &cert_path,
            "-noout",
            "-subject",
            "-issuer",
            "-ext",
            "extendedKeyUsage",
            "-fingerprint",
            "-sha256",
        ])
        .replace(" = ", "=");
        assert!(text.contains("subject=O=shop, CN=acme"), "{text}");
        assert!(
            text.contains("issuer=O=Tollgate, CN=Tollgate API CA shop"),
            "{text}"
        );
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        let fp = text
            .lines()
            .find_map(|l| l.split_once("Fingerprint="))
            .unwrap()
            .1
            .replace(':', "")
            .to_lowercase();
        assert_eq!(fp, creds["fingerprint"].as_str().unwrap());
        // The CA is a certificate entity whose key never shows.
        let (_, certs) = common::admin_call(admin, TOKEN, "GET", "/api/certificates", None);
        let ca = certs
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["metadata"]["tollgate.api_ca"] == "shop")
            .unwrap()
            .clone();
        assert_eq!(ca["ca"], true);
        assert_eq!(ca["privateKey"], "***");
        // Calls with the issued certificate.
        assert!(
            common::wait_until(Duration::from_secs(10), || mtls_get(
                addr,
                edge.cert(),
                Some((&cert, &key))
            )
            .0 == 200),
            "{io:?}: {:?}\n{}",
            mtls_get(addr, edge.cert(), Some((&cert, &key))),
            bin.log()
        );
        for _ in 0..24 {
            assert_eq!(mtls_get(addr, edge.cert(), Some((&cert, &key))).0, 200);
        }
        assert_eq!(
            mtls_get(addr, edge.cert(), None),
            (401, "unauthorized".into())
        );
        // An existing certificate bound by fingerprint; one the regexes refuse names nobody.
        let fp_of = |c: &std::path::Path| {
            openssl_text(&[
                "x509",
                "-in",
                &c.display().to_string(),
                "-noout",
                "-fingerprint",
                "-sha256",
            ])
            .split_once('=')
            .unwrap()
            .1
            .trim()
            .to_owned()
        };
        let bound = call(
            "POST",
            "/api/apis/shop/subscriptions",
            json!({"id": "partner-1", "consumer_ref": "partners", "fingerprint": fp_of(&partner.cert)}),
        );
        assert!(bound.get("credentials").is_none(), "{bound}");
        call(
            "POST",
            "/api/apis/shop/subscriptions",
            json!({"id": "outsider-1", "consumer_ref": "partners", "fingerprint": fp_of(&outsider.cert)}),
        );
        assert!(
            common::wait_until(Duration::from_secs(10), || mtls_get(
                addr,
                edge.cert(),
                Some((&partner.cert, &partner.key))
            )
            .0 == 200),
            "{io:?}"
        );
        assert_eq!(
            mtls_get(addr, edge.cert(), Some((&outsider.cert, &outsider.key))),
            (401, "unauthorized".into())
        );
        // Billed to the subscription: 25 calls (the first in the wait, then 24).
        let billed = || {
            let url = format!("http://{ledger}/api/usage?subscription=acme&granularity=month");
            let v: Value =
                serde_json::from_str(&common::curl(&[&url]).stdout_text()).unwrap_or(Value::Null);
            v["items"]
                .as_array()
                .and_then(|i| i.last())
                .map(|i| i["calls"].as_u64().unwrap_or(0))
                .unwrap_or(0)
        };
        assert!(
            common::wait_until(Duration::from_secs(20), || billed() >= 25),
            "{io:?}: {}",
            billed()
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(billed(), 25, "{io:?}");
        // Revoked at once: disabling the subscription stops the certificate.
        call(
            "PATCH",
            "/api/apis/shop/subscriptions/acme",
            json!({"status": "disabled"}),
        );
        assert!(
            common::wait_until(Duration::from_secs(2), || mtls_get(
                addr,
                edge.cert(),
                Some((&cert, &key))
            ) == (
                401,
                "subscription_disabled".into()
            )),
            "{io:?}"
        );
        // The certificate of a subscription cannot be swapped.
        let (status, _) = common::admin_call(
            admin,
            TOKEN,
            "PATCH",
            "/api/apis/shop/subscriptions/acme",
            Some(&json!({"fingerprint": fp_of(&partner.cert)})),
        );
        assert_eq!(status, 400);
        assert!(
            !bin.log().contains("PRIVATE KEY"),
            "a private key was logged"
        );
    }
}

/// OAuth2 client credentials with `requests`, as a machine client does it: the subscription's
/// client id and secret (answered once) are exchanged on the API's host for an ES256 access
/// token (form or Basic), PyJWT verifies it with the published JWK set, the API is called with it
/// and the calls are billed to the subscription; RFC 6749 §5.2 errors, introspection (RFC 7662),
/// the throttle on failed attempts, and a key rotation during which both keys verify.
#[test]
fn oauth_from_an_api_created_to_calls_billed_to_the_subscription() {
    for io in drivers() {
        oauth_billed(io);
    }
}

fn oauth_billed(io: IoMode) {
    let upstream = Upstream::start(common::Reply::Echo);
    let config = common::binary_config("").replace("cores = 1", "cores = 2");
    let bin = Binary::start(&config, &json!({}), io);
    let body = r#"
call("POST", "/api/apis/shop/consumers", {"id": "m2m", "kind": "oauth", "dailyQuota": 1000,
     "config": {"token_ttl_s": 600}})
sub = call("POST", "/api/apis/shop/subscriptions", {"id": "acme", "consumer_ref": "m2m"})
creds = sub.json()["credentials"]
out["creds_keys"] = sorted(creds)
out["token_url"] = creds["tokenUrl"]
out["again"] = "credentials" in call("GET", "/api/apis/shop/subscriptions/acme").json()
TOKEN = data + "/.well-known/otoroshi/oauth/token"
H = {"Host": "shop.local"}
s = requests.Session()
def token(**form):
    return s.post(TOKEN, data=form, headers=H, timeout=10)
def exchange():
    return token(grant_type="client_credentials", client_id=creds["clientId"], client_secret=creds["clientSecret"])
wait(lambda: exchange().status_code == 200)
r = exchange()
out["token_status"] = r.status_code
out["no_store"] = r.headers.get("cache-control")
answer = r.json()
out["token_type"] = answer["token_type"]
out["expires_in"] = answer["expires_in"]
at = answer["access_token"]
# Basic authentication works the same.
rb = s.post(TOKEN, data={"grant_type": "client_credentials"}, auth=(creds["clientId"], creds["clientSecret"]), headers=H, timeout=10)
out["basic"] = rb.status_code
# PyJWT verifies the token with the published JWK set.
jwks = s.get(data + "/.well-known/otoroshi/oauth/jwks.json", headers=H, timeout=10).json()
kid = jwt.get_unverified_header(at)["kid"]
key = jwt.PyJWK([k for k in jwks["keys"] if k["kid"] == kid][0])
claims = jwt.decode(at, key.key, algorithms=["ES256"], audience="shop", issuer="tollgate")
out["claims"] = {k: claims[k] for k in ["sub", "aud", "iss", "client_id"]}
out["lifetime"] = claims["exp"] - claims["iat"]
# The API with the token: 25 calls billed to the subscription.
wait(lambda: get("/things", at).status_code == 200)
codes = [s.get(data + "/things", headers={"Host": "shop.local", "Authorization": "Bearer " + at}, timeout=10).status_code for _ in range(24)]
out["codes"] = sorted(set(codes))
# The client id and secret are no API key.
r = get("/things", None)
out["anonymous"] = r.json().get("error")
r = requests.get(data + "/things", headers={"Host": "shop.local", "Otoroshi-Client-Id": creds["clientId"], "Otoroshi-Client-Secret": creds["clientSecret"]}, timeout=10)
out["as_api_key"] = [r.status_code, r.json().get("error")]
# RFC 6749 §5.2 errors.
def err(r):
    return [r.status_code, r.json().get("error")]
out["no_grant"] = err(token(client_id=creds["clientId"], client_secret=creds["clientSecret"]))
out["password_grant"] = err(token(grant_type="password", client_id=creds["clientId"], client_secret=creds["clientSecret"]))
both = s.post(TOKEN, data={"grant_type": "client_credentials", "client_id": creds["clientId"], "client_secret": creds["clientSecret"]}, auth=(creds["clientId"], creds["clientSecret"]), headers=H, timeout=10)
out["two_methods"] = err(both)
out["json_body"] = err(s.post(TOKEN, json={"grant_type": "client_credentials"}, headers=H, timeout=10))
wrong_basic = s.post(TOKEN, data={"grant_type": "client_credentials"}, auth=(creds["clientId"], "nope"), headers=H, timeout=10)
out["wrong_secret"] = err(wrong_basic)
out["challenge"] = wrong_basic.headers.get("www-authenticate")
out["unknown_client"] = err(token(grant_type="client_credentials", client_id="nobody", client_secret="x"))
# Introspection (RFC 7662), by an authenticated client.
INTRO = data + "/.well-known/otoroshi/oauth/token/introspect"
intro = s.post(INTRO, data={"token": at}, auth=(creds["clientId"], creds["clientSecret"]), headers=H, timeout=10).json()
out["introspect"] = {k: intro.get(k) for k in ["active", "sub", "client_id", "aud", "token_type"]}
out["introspect_garbage"] = s.post(INTRO, data={"token": "a.b.c"}, auth=(creds["clientId"], creds["clientSecret"]), headers=H, timeout=10).json()
out["introspect_unauth"] = s.post(INTRO, data={"token": at}, headers=H, timeout=10).status_code
# Billing.
def billed():
    r = requests.get(ledger + "/api/usage", params={"subscription": "acme", "granularity": "day"}, timeout=10)
    items = r.json().get("items", [])
    return items and items[-1]["calls"] >= 25
wait(billed, 20)
time.sleep(0.5)
usage = requests.get(ledger + "/api/usage", params={"subscription": "acme", "granularity": "month"}).json()
out["subscription_calls"] = usage["items"][-1]["calls"]
# Rotation: a new key signs, the old one still verifies.
rot = call("POST", "/api/oauth/token-keys/rotate").json()
out["rotated_kid_differs"] = rot["kid"] != kid
wait(lambda: jwt.get_unverified_header(exchange().json()["access_token"])["kid"] == rot["kid"])
out["old_token_after_rotation"] = get("/things", at).status_code
new_at = exchange().json()["access_token"]
# Every core verifies the new key within a tick (a new connection may land on either).
wait(lambda: all(get("/things", new_at).status_code == 200 for _ in range(6)))
out["new_token"] = get("/things", new_at).status_code
out["jwks_after_rotation"] = sorted(k["kid"] for k in s.get(data + "/.well-known/otoroshi/oauth/jwks.json", headers=H, timeout=10).json()["keys"]) == sorted([kid, rot["kid"]])
# Disabled: its tokens stop, and it is issued none.
call("PATCH", "/api/apis/shop/subscriptions/acme", {"status": "disabled"})
wait(lambda: all(get("/things", new_at).status_code == 401 for _ in range(6)))
out["disabled"] = get("/things", new_at).json().get("error")
out["disabled_token"] = err(exchange())
# Brute force: a fresh connection (one core) fails five times, then is throttled.
b = requests.Session()
codes = [b.post(TOKEN, data={"grant_type": "client_credentials"}, auth=(creds["clientId"], "bad%d" % i), headers=H, timeout=10) for i in range(7)]
out["brute"] = [c.status_code for c in codes]
out["retry_after"] = codes[-1].headers.get("retry-after")
out["right_secret_while_throttled"] = b.post(TOKEN, data={"grant_type": "client_credentials"}, auth=(creds["clientId"], creds["clientSecret"]), headers=H, timeout=10).status_code
print(json.dumps(out))
"#;
    let out = bin.python(&script(body, upstream.port()), TOKEN);
    assert_eq!(
        out["creds_keys"],
        json!(["clientId", "clientSecret", "tokenUrl"]),
        "{out}"
    );
    assert_eq!(
        out["token_url"],
        "http://shop.local/.well-known/otoroshi/oauth/token"
    );
    assert_eq!(out["again"], false);
    assert_eq!(out["token_status"], 200);
    assert_eq!(out["no_store"], "no-store");
    assert_eq!(out["token_type"], "Bearer");
    assert_eq!(out["expires_in"], 600);
    assert_eq!(out["basic"], 200);
    assert_eq!(out["claims"]["sub"], "acme");
    assert_eq!(out["claims"]["aud"], "shop");
    assert_eq!(out["claims"]["iss"], "tollgate");
    assert_eq!(out["lifetime"], 600);
    assert_eq!(out["codes"], json!([200]), "{out}");
    assert_eq!(out["anonymous"], "unauthorized");
    assert_eq!(out["as_api_key"], json!([401, "unauthorized"]), "{out}");
    assert_eq!(out["no_grant"], json!([400, "invalid_request"]));
    assert_eq!(
        out["password_grant"],
        json!([400, "unsupported_grant_type"])
    );
    assert_eq!(out["two_methods"], json!([400, "invalid_request"]));
    assert_eq!(out["json_body"], json!([400, "invalid_request"]));
    assert_eq!(out["wrong_secret"], json!([401, "invalid_client"]));
    assert_eq!(out["challenge"], "Basic realm=\"tollgate\"");
    assert_eq!(out["unknown_client"], json!([401, "invalid_client"]));
    assert_eq!(
        out["introspect"],
        json!({"active": true, "sub": "acme", "client_id": out["claims"]["client_id"], "aud": "shop", "token_type": "Bearer"}),
        "{out}"
    );
    assert_eq!(out["introspect_garbage"], json!({"active": false}));
    assert_eq!(out["introspect_unauth"], 401);
    assert_eq!(out["subscription_calls"], 25, "{out}");
    assert_eq!(out["rotated_kid_differs"], true);
    assert_eq!(
        out["old_token_after_rotation"], 200,
        "the retiring key still verifies"
    );
    assert_eq!(out["new_token"], 200);
    assert_eq!(out["jwks_after_rotation"], true, "{out}");
    // Five failures per client id per core, then 429: the earlier wrong secret may have been
    // counted on the same core (a new connection lands on either), so 4 or 5 401s.
    let brute: Vec<u64> = out["brute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    let refused = brute.iter().take_while(|c| **c == 401).count();
    assert!((4..=5).contains(&refused), "{out}");
    assert!(brute[refused..].iter().all(|c| *c == 429), "{out}");
    assert_eq!(
        out["retry_after"]
            .as_str()
            .map(|s| s.parse::<u64>().unwrap() <= 60),
        Some(true)
    );
    assert_eq!(out["right_secret_while_throttled"], 429);
    assert_eq!(out["disabled"], "subscription_disabled");
    assert_eq!(out["disabled_token"], json!([400, "unauthorized_client"]));
    assert!(
        !bin.log().contains("PRIVATE KEY"),
        "a private key was logged"
    );
}

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gateway_model::entity::{ApiKey, Route};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Sha256, Sha384, Sha512};

use super::*;

const NOW: i64 = 1_700_000_000_000;
const NOW_S: i64 = NOW / 1000;

// ---- helpers (own HMAC code: no JWT library) ----

/// A key `k1` / `s3cret` authorized on route `r1`, with `overrides` merged in.
fn key(overrides: Value) -> ApiKey {
    let mut base = json!({
        "clientId": "k1",
        "clientSecret": "s3cret",
        "clientName": "test",
        "authorizedEntities": ["route_r1"],
    });
    if let (Some(base), Some(over)) = (base.as_object_mut(), overrides.as_object()) {
        for (k, v) in over {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(base).unwrap()
}

fn store(keys: Vec<ApiKey>) -> KeyStore {
    KeyStore::build(&keys).unwrap()
}

fn one(overrides: Value) -> KeyStore {
    store(vec![key(overrides)])
}

fn route_with(config: Value) -> RouteContext {
    let config = ApikeyCallsConfig::from_json(&config).unwrap();
    RouteContext::new("r1", Some("api1"), ["default", "g1"], &config).unwrap()
}

fn route() -> RouteContext {
    route_with(Value::Null)
}

fn auth_on(
    store: &KeyStore,
    route: &RouteContext,
    headers: &[(&str, &str)],
    method: &str,
    now: i64,
) -> Result<String, KeyRejection> {
    let h: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    let mut scratch = Scratch::new();
    authenticate(h.as_slice(), store, route, method, now, &mut scratch)
        .map(|e| e.client_id().to_owned())
}

fn auth(store: &KeyStore, headers: &[(&str, &str)]) -> Result<String, KeyRejection> {
    auth_on(store, &route(), headers, "GET", NOW)
}

fn extracted<'a>(
    headers: &'a [(&'a str, &'a [u8])],
    buf: &'a mut ScratchBuf,
) -> Option<Credential<'a>> {
    extract(&Extractors::default(), headers, buf)
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn hmac_bytes(alg: &str, secret: &[u8], msg: &[u8]) -> Vec<u8> {
    match alg {
        "HS384" => {
            let mut m = Hmac::<Sha384>::new_from_slice(secret).unwrap();
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        "HS512" => {
            let mut m = Hmac::<Sha512>::new_from_slice(secret).unwrap();
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
    }
}

fn jwt_raw(header: &Value, claims: &Value, secret: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let alg = header["alg"].as_str().unwrap_or("HS256");
    let sig = hmac_bytes(alg, secret.as_bytes(), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn jwt(alg: &str, claims: Value, secret: &str) -> String {
    jwt_raw(&json!({"alg": alg, "typ": "JWT"}), &claims, secret)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn otoapk(id: &str, secret: &str) -> String {
    let mac = hmac_bytes(
        "HS256",
        secret.as_bytes(),
        format!("otoapk_{id}").as_bytes(),
    );
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("otoapk_{id}_{hex}")
}

// ---- extraction ----

#[test]
fn custom_headers_accepted() {
    let s = one(json!({}));
    let h = [
        ("Otoroshi-Client-Id", "k1"),
        ("Otoroshi-Client-Secret", "s3cret"),
    ];
    assert_eq!(auth(&s, &h).unwrap(), "k1");
    // Names are case-insensitive.
    let h = [
        ("otoroshi-client-id", "k1"),
        ("OTOROSHI-CLIENT-SECRET", "s3cret"),
    ];
    assert_eq!(auth(&s, &h).unwrap(), "k1");
}

#[test]
fn custom_headers_need_both() {
    let s = one(json!({}));
    assert_eq!(
        auth(&s, &[("Otoroshi-Client-Id", "k1")]),
        Err(KeyRejection::NoKey)
    );
    assert_eq!(
        auth(&s, &[("Otoroshi-Client-Secret", "s3cret")]),
        Err(KeyRejection::NoKey)
    );
}

#[test]
fn no_credential_is_400_no_key() {
    let s = one(json!({}));
    let err = auth(&s, &[("Accept", "*/*")]).unwrap_err();
    assert_eq!(err, KeyRejection::NoKey);
    assert_eq!((err.status(), err.code()), (400, "no_api_key"));
    // Another auth scheme is not ours.
    assert_eq!(
        auth(&s, &[("Authorization", "Digest username=\"k1\"")]),
        Err(KeyRejection::NoKey)
    );
}

#[test]
fn basic_in_authorization() {
    let s = one(json!({}));
    assert_eq!(
        auth(&s, &[("Authorization", &basic("k1", "s3cret"))]).unwrap(),
        "k1"
    );
    // Scheme case-insensitive, padding optional.
    let lower = basic("k1", "s3cret").replacen("Basic", "basic", 1);
    assert_eq!(auth(&s, &[("Authorization", &lower)]).unwrap(), "k1");
    let unpadded = format!(
        "Basic {}",
        URL_SAFE_NO_PAD.encode("k1:s3cret").replace('-', "+")
    );
    assert_eq!(auth(&s, &[("Authorization", &unpadded)]).unwrap(), "k1");
    assert_eq!(
        auth(&s, &[("Authorization", &basic("k1", "wrong"))]),
        Err(KeyRejection::BadSecret)
    );
}

#[test]
fn basic_in_otoroshi_authorization_prefix_optional() {
    let s = one(json!({}));
    let with = basic("k1", "s3cret");
    let without = STANDARD.encode("k1:s3cret");
    assert_eq!(
        auth(&s, &[("Otoroshi-Authorization", &with)]).unwrap(),
        "k1"
    );
    assert_eq!(
        auth(&s, &[("Otoroshi-Authorization", &without)]).unwrap(),
        "k1"
    );
    // Authorization needs the scheme.
    assert_eq!(
        auth(&s, &[("Authorization", &without)]),
        Err(KeyRejection::NoKey)
    );
}

#[test]
fn basic_splits_on_first_colon() {
    let s = one(json!({"clientSecret": "a:b::c:"}));
    assert_eq!(
        auth(&s, &[("Authorization", &basic("k1", "a:b::c:"))]).unwrap(),
        "k1"
    );
    let h = [("Authorization", basic("k1", "a:b::c:"))];
    let h: Vec<(&str, &[u8])> = h.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    let mut buf = ScratchBuf::new();
    match extracted(&h, &mut buf) {
        Some(Credential::IdSecret {
            client_id, secret, ..
        }) => {
            assert_eq!(client_id, b"k1");
            assert_eq!(secret, b"a:b::c:");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn basic_bad_base64_or_no_colon_is_malformed() {
    let s = one(json!({}));
    for value in [
        "Basic !!!notbase64",
        "Basic azE6czNjcmV0=", // non-canonical trailing bits
        &format!("Basic {}", STANDARD.encode("k1s3cret")),
        &format!("Basic {}", STANDARD.encode(":s3cret")),
    ] {
        let err = auth(&s, &[("Authorization", value)]).unwrap_err();
        assert!(
            matches!(err, KeyRejection::Malformed | KeyRejection::UnknownKey),
            "{value}: {err:?}"
        );
        assert_eq!(err.status() / 100, 4);
    }
    assert_eq!(
        auth(&s, &[("Authorization", "Basic !!!")]),
        Err(KeyRejection::Malformed)
    );
    assert_eq!(KeyRejection::Malformed.status(), 401);
    // A malformed Basic does not hide a valid credential found later.
    assert_eq!(
        auth(
            &s,
            &[
                ("Authorization", "Basic !!!"),
                ("x-api-key", &otoapk("k1", "s3cret"))
            ]
        )
        .unwrap(),
        "k1"
    );
}

#[test]
fn precedence_custom_headers_first() {
    let s = one(json!({}));
    // Custom headers win even when wrong: the first extractor that finds something decides.
    let h = [
        ("Authorization", basic("k1", "s3cret")),
        ("Otoroshi-Client-Id", "k1".into()),
        ("Otoroshi-Client-Secret", "nope".into()),
    ];
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(auth(&s, &h), Err(KeyRejection::BadSecret));
    let h = [
        ("Authorization", basic("k1", "nope")),
        ("Otoroshi-Client-Id", "k1".into()),
        ("Otoroshi-Client-Secret", "s3cret".into()),
    ];
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(auth(&s, &h).unwrap(), "k1");
}

#[test]
fn precedence_basic_then_jwt_then_otoapk_then_client_id() {
    let token = jwt("HS256", json!({"clientId": "k1"}), "s3cret");
    let headers_for = |with_basic: bool, with_jwt: bool, with_apk: bool| {
        let mut h: Vec<(&str, String)> = vec![];
        if with_basic {
            h.push(("Otoroshi-Authorization", basic("k1", "s3cret")));
        }
        if with_jwt {
            h.push(("Authorization", bearer(&token)));
        }
        if with_apk {
            h.push(("Otoroshi-Token", otoapk("k1", "s3cret")));
        }
        h.push(("x-api-key", "k1".to_owned()));
        h
    };
    let kind = |h: &[(&str, String)]| {
        let h: Vec<(&str, &[u8])> = h.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        let mut buf = ScratchBuf::new();
        match extracted(&h, &mut buf) {
            Some(Credential::IdSecret { source, .. }) => format!("basic:{source:?}"),
            Some(Credential::Jwt { source, .. }) => format!("jwt:{source:?}"),
            Some(Credential::Bearer { source, .. }) => format!("apk:{source:?}"),
            Some(Credential::ClientIdOnly { .. }) => "id".into(),
            other => format!("{other:?}"),
        }
    };
    assert_eq!(kind(&headers_for(true, true, true)), "basic:BasicHeader");
    assert_eq!(kind(&headers_for(false, true, true)), "jwt:Authorization");
    assert_eq!(kind(&headers_for(false, false, true)), "apk:BearerHeader");
    assert_eq!(kind(&headers_for(false, false, false)), "id");
}

#[test]
fn otoroshi_headers_before_authorization() {
    let h = [
        ("Authorization", basic("other", "x")),
        ("Otoroshi-Authorization", basic("k1", "s3cret")),
    ];
    let h: Vec<(&str, &[u8])> = h.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    let mut buf = ScratchBuf::new();
    let cred = extracted(&h, &mut buf).unwrap();
    assert_eq!(cred.source(), Source::BasicHeader);
    assert_eq!(cred.client_id(), Some(&b"k1"[..]));
}

#[test]
fn otoapk_in_x_api_key_is_never_a_client_id() {
    // Otoroshi #2598: a bearer-looking value must have its signature checked.
    let s = one(json!({"allowClientIdOnly": true}));
    let forged = format!("otoapk_k1_{}", "0".repeat(64));
    assert_eq!(
        auth(&s, &[("x-api-key", &forged)]),
        Err(KeyRejection::BadBearer)
    );
    assert_eq!(
        auth(&s, &[("x-api-key", "otoapk_")]),
        Err(KeyRejection::Malformed)
    );
}

#[test]
fn configured_header_names_replace_defaults() {
    let s = one(json!({"allowClientIdOnly": true}));
    let r = route_with(json!({"extractors": {
        "custom_headers": {"client_id_header_name": "X-Id", "client_secret_header_name": "X-Secret"},
        "basic": {"header_name": "X-Basic"},
        "client_id": {"header_name": "X-Key"},
        "jwt": {"header_name": "X-Jwt"},
    }}));
    let ok = |h: &[(&str, &str)]| auth_on(&s, &r, h, "GET", NOW);
    assert_eq!(ok(&[("X-Id", "k1"), ("X-Secret", "s3cret")]).unwrap(), "k1");
    assert_eq!(
        ok(&[("X-Basic", &STANDARD.encode("k1:s3cret"))]).unwrap(),
        "k1"
    );
    assert_eq!(ok(&[("X-Key", "k1")]).unwrap(), "k1");
    let token = jwt("HS256", json!({"cid": "k1"}), "s3cret");
    assert_eq!(ok(&[("X-Jwt", &token)]).unwrap(), "k1");
    // The defaults are no longer read.
    assert_eq!(
        ok(&[
            ("Otoroshi-Client-Id", "k1"),
            ("Otoroshi-Client-Secret", "s3cret")
        ]),
        Err(KeyRejection::NoKey)
    );
    assert_eq!(ok(&[("x-api-key", "k1")]), Err(KeyRejection::NoKey));
    assert_eq!(
        r.extractors().source_headers(Source::CustomHeaders),
        [Some("X-Id"), Some("X-Secret")]
    );
}

#[test]
fn disabled_extractors_are_skipped() {
    let s = one(json!({"allowClientIdOnly": true}));
    let r = route_with(json!({"extractors": {
        "basic": {"enabled": false},
        "jwt": {"enabled": false},
        "client_id": {"enabled": false},
    }}));
    assert_eq!(
        auth_on(
            &s,
            &r,
            &[("Authorization", &basic("k1", "s3cret"))],
            "GET",
            NOW
        ),
        Err(KeyRejection::NoKey)
    );
    assert_eq!(
        auth_on(&s, &r, &[("x-api-key", "k1")], "GET", NOW),
        Err(KeyRejection::NoKey)
    );
    // A JWT on a route that does not read JWTs is no credential at all.
    let token = jwt("HS256", json!({"cid": "k1"}), "s3cret");
    assert_eq!(
        auth_on(&s, &r, &[("Authorization", &bearer(&token))], "GET", NOW),
        Err(KeyRejection::NoKey)
    );
    // The bearer extractor still reads the client-id header.
    assert_eq!(
        auth_on(
            &s,
            &r,
            &[("x-api-key", &otoapk("k1", "s3cret"))],
            "GET",
            NOW
        )
        .unwrap(),
        "k1"
    );
}

#[test]
fn opaque_bearer_is_malformed() {
    let s = one(json!({}));
    assert_eq!(
        auth(&s, &[("Authorization", "Bearer abc.def")]),
        Err(KeyRejection::Malformed)
    );
}

// ---- JWT ----

#[test]
fn jwt_hs256_384_512_accepted() {
    let s = one(json!({}));
    for alg in ["HS256", "HS384", "HS512"] {
        let token = jwt(alg, json!({"clientId": "k1", "exp": NOW_S + 60}), "s3cret");
        assert_eq!(
            auth(&s, &[("Authorization", &bearer(&token))]).unwrap(),
            "k1",
            "{alg}"
        );
        // Otoroshi-Token, with or without `Bearer `.
        assert_eq!(auth(&s, &[("Otoroshi-Token", &token)]).unwrap(), "k1");
        assert_eq!(
            auth(&s, &[("Otoroshi-Token", &bearer(&token))]).unwrap(),
            "k1"
        );
    }
}

#[test]
fn jwt_expired_and_leeway_edge() {
    let s = one(json!({}));
    let exp = NOW_S;
    let token = jwt("HS256", json!({"clientId": "k1", "exp": exp}), "s3cret");
    let at = |now: i64| auth_on(&s, &route(), &[("Otoroshi-Token", &token)], "GET", now);
    // Default leeway 10 s: valid until exp + 10 s, exclusive.
    assert!(at(exp * 1000 + 9_999).is_ok());
    assert_eq!(
        at(exp * 1000 + 10_000),
        Err(KeyRejection::Jwt(JwtError::Expired))
    );
    assert_eq!(
        at(exp * 1000 + 3_600_000),
        Err(KeyRejection::Jwt(JwtError::Expired))
    );
    let e = KeyRejection::Jwt(JwtError::Expired);
    assert_eq!((e.status(), e.code()), (401, "bad_jwt"));
}

#[test]
fn jwt_leeway_is_configurable() {
    let s = one(json!({}));
    let r = route_with(json!({"extractors": {"jwt": {"leeway_sec": 0}}}));
    let token = jwt("HS256", json!({"clientId": "k1", "exp": NOW_S}), "s3cret");
    let at = |now: i64| auth_on(&s, &r, &[("Otoroshi-Token", &token)], "GET", now);
    assert!(at(NOW - 1).is_ok());
    assert_eq!(at(NOW), Err(KeyRejection::Jwt(JwtError::Expired)));
    assert!(
        ApikeyCallsConfig::from_json(&json!({"extractors": {"jwt": {"leeway_sec": 100_000}}}))
            .map(|c| Extractors::try_from(&c.extractors))
            .unwrap()
            .is_err()
    );
}

/// A leeway of exactly a day is accepted (as 86,400,000 ms); a second more is refused.
#[test]
fn jwt_leeway_of_a_day_is_the_largest_accepted() {
    let extractors = |leeway: u64| {
        let c =
            ApikeyCallsConfig::from_json(&json!({"extractors": {"jwt": {"leeway_sec": leeway}}}))
                .unwrap();
        Extractors::try_from(&c.extractors)
    };
    assert_eq!(
        extractors(86_400).unwrap().jwt_rules().leeway_ms,
        86_400_000
    );
    let err = extractors(86_401).unwrap_err();
    assert_eq!(&*err.field, "extractors.jwt.leeway_sec");
}

#[test]
fn jwt_nbf_in_the_future() {
    let s = one(json!({}));
    let token = jwt(
        "HS256",
        json!({"clientId": "k1", "nbf": NOW_S + 60}),
        "s3cret",
    );
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &token)]),
        Err(KeyRejection::Jwt(JwtError::NotYetValid))
    );
    // Within the leeway.
    let token = jwt(
        "HS256",
        json!({"clientId": "k1", "nbf": NOW_S + 10}),
        "s3cret",
    );
    assert!(auth(&s, &[("Otoroshi-Token", &token)]).is_ok());
    let token = jwt(
        "HS256",
        json!({"clientId": "k1", "nbf": NOW_S + 11}),
        "s3cret",
    );
    assert!(auth(&s, &[("Otoroshi-Token", &token)]).is_err());
}

#[test]
fn jwt_iat_in_the_future() {
    let s = one(json!({}));
    let token = jwt(
        "HS256",
        json!({"clientId": "k1", "iat": NOW_S + 11}),
        "s3cret",
    );
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &token)]),
        Err(KeyRejection::Jwt(JwtError::IssuedInFuture))
    );
    let token = jwt(
        "HS256",
        json!({"clientId": "k1", "iat": NOW_S + 10}),
        "s3cret",
    );
    assert!(auth(&s, &[("Otoroshi-Token", &token)]).is_ok());
    // Fractional NumericDates are fine.
    let token = jwt(
        "HS256",
        json!({"clientId": "k1", "iat": NOW_S as f64 - 0.5}),
        "s3cret",
    );
    assert!(auth(&s, &[("Otoroshi-Token", &token)]).is_ok());
}

#[test]
fn jwt_max_lifespan() {
    let s = one(json!({}));
    let r = route_with(json!({"extractors": {"jwt": {"max_jwt_lifespan_sec": 300}}}));
    let at = |claims: Value| {
        let token = jwt("HS256", claims, "s3cret");
        auth_on(&s, &r, &[("Otoroshi-Token", &token)], "GET", NOW)
    };
    assert!(at(json!({"cid": "k1", "iat": NOW_S, "exp": NOW_S + 300})).is_ok());
    let lifespan = Err(KeyRejection::Jwt(JwtError::Lifespan));
    assert_eq!(
        at(json!({"cid": "k1", "iat": NOW_S, "exp": NOW_S + 301})),
        lifespan
    );
    assert_eq!(at(json!({"cid": "k1", "exp": NOW_S + 60})), lifespan);
}

#[test]
fn jwt_alg_none_and_asymmetric_refused() {
    let s = one(json!({}));
    let claims = URL_SAFE_NO_PAD.encode(json!({"clientId": "k1"}).to_string());
    for alg in ["none", "None", "NONE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg}).to_string());
        let token = format!("{header}.{claims}.");
        assert_eq!(
            auth(&s, &[("Authorization", &bearer(&token))]),
            Err(KeyRejection::Jwt(JwtError::Algorithm)),
            "{alg}"
        );
    }
    for alg in ["RS256", "ES256", "PS256", "hs256"] {
        let token = jwt_raw(&json!({"alg": alg}), &json!({"clientId": "k1"}), "s3cret");
        assert_eq!(
            auth(&s, &[("Authorization", &bearer(&token))]),
            Err(KeyRejection::Jwt(JwtError::Algorithm)),
            "{alg}"
        );
    }
    // secret_signed: false refuses HS JWTs too.
    let r = route_with(json!({"extractors": {"jwt": {"secret_signed": false}}}));
    let token = jwt("HS256", json!({"clientId": "k1"}), "s3cret");
    assert_eq!(
        auth_on(&s, &r, &[("Otoroshi-Token", &token)], "GET", NOW),
        Err(KeyRejection::Jwt(JwtError::Algorithm))
    );
}

#[test]
fn jwt_tampered_payload_refused() {
    let s = store(vec![
        key(json!({})),
        key(json!({"clientId": "admin", "clientSecret": "other"})),
    ]);
    let token = jwt(
        "HS256",
        json!({"clientId": "k1", "exp": NOW_S + 60}),
        "s3cret",
    );
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(json!({"clientId": "k1", "exp": NOW_S + 99_999}).to_string());
    let tampered = parts.join(".");
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &tampered)]),
        Err(KeyRejection::Jwt(JwtError::Signature))
    );
    // Swapping the client id to another key: that key's secret does not match either.
    parts[1] = URL_SAFE_NO_PAD.encode(json!({"clientId": "admin"}).to_string());
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &parts.join("."))]),
        Err(KeyRejection::Jwt(JwtError::Signature))
    );
    // A truncated signature is refused (no truncated-MAC acceptance).
    let short = &token[..token.len() - 4];
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", short)]),
        Err(KeyRejection::Jwt(JwtError::Signature))
    );
    // An expired token with a bad signature says "signature", not "expired": claims are not
    // trusted before the signature is.
    let forged = jwt("HS256", json!({"clientId": "k1", "exp": 1}), "guess");
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &forged)]),
        Err(KeyRejection::Jwt(JwtError::Signature))
    );
}

#[test]
fn jwt_signed_with_next_secret_accepted() {
    let s = one(json!({"rotation": {"enabled": true, "nextSecret": "n3xt"}}));
    for secret in ["s3cret", "n3xt"] {
        let token = jwt("HS384", json!({"clientId": "k1"}), secret);
        assert_eq!(
            auth(&s, &[("Otoroshi-Token", &token)]).unwrap(),
            "k1",
            "{secret}"
        );
    }
    let token = jwt("HS384", json!({"clientId": "k1"}), "random");
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &token)]),
        Err(KeyRejection::Jwt(JwtError::Signature))
    );
}

#[test]
fn jwt_client_id_claim_variants() {
    let s = store(vec![
        key(json!({})),
        key(json!({"clientId": "k2", "clientSecret": "two"})),
    ]);
    for claim in ["clientId", "client_id", "cid", "iss"] {
        let token = jwt("HS256", json!({ claim: "k1" }), "s3cret");
        assert_eq!(
            auth(&s, &[("Otoroshi-Token", &token)]).unwrap(),
            "k1",
            "{claim}"
        );
    }
    // First present wins: clientId, client_id, cid, iss.
    let token = jwt("HS256", json!({"iss": "k2", "cid": "k1"}), "s3cret");
    assert_eq!(auth(&s, &[("Otoroshi-Token", &token)]).unwrap(), "k1");
    let token = jwt("HS256", json!({"clientId": "k2", "client_id": "k1"}), "two");
    assert_eq!(auth(&s, &[("Otoroshi-Token", &token)]).unwrap(), "k2");
    // Escaped strings in claims are fine (they cannot be borrowed from the buffer).
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"clientId":"k\u0031"}"#)
    );
    let sig = hmac_bytes("HS256", b"s3cret", input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(auth(&s, &[("Otoroshi-Token", &token)]).unwrap(), "k1");
}

#[test]
fn jwt_without_or_with_unknown_client_id() {
    let s = one(json!({}));
    let token = jwt("HS256", json!({"sub": "k1"}), "s3cret");
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &token)]),
        Err(KeyRejection::Jwt(JwtError::NoClientId))
    );
    let token = jwt("HS256", json!({"clientId": "nobody"}), "s3cret");
    let err = auth(&s, &[("Otoroshi-Token", &token)]).unwrap_err();
    assert_eq!(err, KeyRejection::UnknownKey);
    assert_eq!((err.status(), err.code()), (401, "bad_api_key"));
}

#[test]
fn jwt_malformed_parts_refused() {
    let s = one(json!({}));
    let good = jwt("HS256", json!({"clientId": "k1"}), "s3cret");
    let parts: Vec<&str> = good.split('.').collect();
    let not_json = URL_SAFE_NO_PAD.encode("not json");
    let cases = [
        format!("!!.{}.{}", parts[1], parts[2]),
        format!("{}.!!.{}", parts[0], parts[2]),
        format!("{not_json}.{}.{}", parts[1], parts[2]),
        format!("{}.{not_json}.{}", parts[0], parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(r#"{"clientId": 42}"#),
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","crit":["exp"]}"#),
            parts[1],
            parts[2]
        ),
    ];
    for token in &cases {
        assert_eq!(
            auth(&s, &[("Otoroshi-Token", token)]),
            Err(KeyRejection::Jwt(JwtError::Malformed)),
            "{token}"
        );
    }
    assert_eq!(
        auth(
            &s,
            &[("Otoroshi-Token", &format!("{}.{}.!!", parts[0], parts[1]))]
        ),
        Err(KeyRejection::Jwt(JwtError::Signature))
    );
}

#[test]
fn jwt_known_vector_and_sign_round_trip() {
    // The jwt.io HS256 example.
    let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                 eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
                 SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    assert!(jwt::signature_valid(token, b"your-256-bit-secret"));
    assert!(!jwt::signature_valid(token, b"your-256-bit-secreT"));

    let s = one(json!({}));
    for alg in [
        jwt::Algorithm::Hs256,
        jwt::Algorithm::Hs384,
        jwt::Algorithm::Hs512,
    ] {
        let token = jwt::sign(alg, &json!({"clientId": "k1"}), b"s3cret");
        assert_eq!(auth(&s, &[("Otoroshi-Token", &token)]).unwrap(), "k1");
        // Same bytes as the test's own signer.
        assert_eq!(
            token,
            jwt_raw(
                &json!({"alg": alg.name(), "typ": "JWT"}),
                &json!({"clientId": "k1"}),
                "s3cret"
            )
        );
    }
}

// ---- otoapk bearer ----

#[test]
fn otoapk_with_underscores_in_client_id() {
    let s = one(json!({"clientId": "my_app_key_1", "authorizedEntities": ["route_r1"]}));
    let b = otoapk("my_app_key_1", "s3cret");
    assert_eq!(bearer_for("my_app_key_1", "s3cret"), b);
    for h in [
        [("Otoroshi-Token", b.clone())],
        [("Authorization", bearer(&b))],
        [("x-api-key", b.clone())],
    ] {
        let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(auth(&s, &h).unwrap(), "my_app_key_1");
    }
    // Upper-case hex is the same signature.
    assert_eq!(
        auth(
            &s,
            &[(
                "Otoroshi-Token",
                &b.to_uppercase()
                    .replace("OTOAPK_MY_APP_KEY_1", "otoapk_my_app_key_1")
            )]
        )
        .unwrap(),
        "my_app_key_1"
    );
}

#[test]
fn otoapk_with_next_secret() {
    let s = one(json!({"rotation": {"nextSecret": "n3xt"}}));
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &otoapk("k1", "n3xt"))]).unwrap(),
        "k1"
    );
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &otoapk("k1", "s3cret"))]).unwrap(),
        "k1"
    );
}

#[test]
fn a_next_secret_equal_to_the_secret_still_accepts_it() {
    let s = one(json!({"rotation": {"nextSecret": "s3cret"}}));
    assert_eq!(
        auth(&s, &[("Authorization", &basic("k1", "s3cret"))]).unwrap(),
        "k1"
    );
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &otoapk("k1", "s3cret"))]).unwrap(),
        "k1"
    );
}

#[test]
fn otoapk_signature_with_non_hex_digits_is_refused() {
    // A secret whose signature has a 0xff byte: non-hex digits in its place must not read as
    // `ff` (a digit's value ORed into the byte would).
    let (secret, at) = (0..1000)
        .map(|i| format!("s{i}"))
        .find_map(|secret| {
            let bearer = otoapk("k1", &secret);
            let sig = bearer.len() - 64;
            let at = (sig..bearer.len())
                .step_by(2)
                .find(|&at| &bearer[at..at + 2] == "ff")?;
            Some((secret, at))
        })
        .unwrap();
    let s = one(json!({"clientSecret": secret}));
    let good = otoapk("k1", &secret);
    assert_eq!(auth(&s, &[("Otoroshi-Token", &good)]).unwrap(), "k1");
    for pair in ["zz", "zf", "fz"] {
        let mut bad = good.clone();
        bad.replace_range(at..at + 2, pair);
        assert_eq!(
            auth(&s, &[("Otoroshi-Token", &bad)]),
            Err(KeyRejection::BadBearer),
            "{pair}"
        );
    }
}

#[test]
fn otoapk_wrong_signature() {
    let s = store(vec![
        key(json!({})),
        key(json!({"clientId": "k2", "clientSecret": "two"})),
    ]);
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &otoapk("k1", "guess"))]),
        Err(KeyRejection::BadBearer)
    );
    // k2's valid bearer relabelled as k1.
    let stolen = otoapk("k2", "two").replace("otoapk_k2_", "otoapk_k1_");
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &stolen)]),
        Err(KeyRejection::BadBearer)
    );
    let good = otoapk("k1", "s3cret");
    for bad in [
        good[..good.len() - 1].to_owned(),
        format!("{good}0"),
        format!("otoapk_k1_{}", "zz".repeat(32)),
    ] {
        assert_eq!(
            auth(&s, &[("Otoroshi-Token", &bad)]),
            Err(KeyRejection::BadBearer),
            "{bad}"
        );
    }
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &otoapk("nobody", "x"))]),
        Err(KeyRejection::UnknownKey)
    );
}

/// An `otoapk_` bearer with an empty client id or an empty signature is malformed, and the
/// search goes on to the next header that may hold a bearer.
#[test]
fn otoapk_with_an_empty_client_id_or_signature_is_malformed_and_the_search_goes_on() {
    let s = one(json!({}));
    let good = otoapk("k1", "s3cret");
    let sig = &good["otoapk_k1_".len()..];
    let no_id = format!("otoapk__{sig}");
    for bad in [no_id.as_str(), "otoapk_k1_"] {
        assert_eq!(
            auth(&s, &[("Otoroshi-Token", bad)]),
            Err(KeyRejection::Malformed),
            "{bad}"
        );
        assert_eq!(
            auth(&s, &[("Otoroshi-Token", bad), ("x-api-key", &good)]).unwrap(),
            "k1",
            "{bad}"
        );
    }
}

/// With the JWT and bearer extractors on different headers, each reads its own: an `otoapk_`
/// bearer is found in the bearer header and not in the JWT header.
#[test]
fn otoapk_bearers_are_read_from_the_bearer_header_not_the_jwt_header() {
    let s = one(json!({}));
    let r = route_with(json!({"extractors": {"jwt": {"header_name": "X-Jwt"}}}));
    let b = otoapk("k1", "s3cret");
    assert_eq!(
        auth_on(&s, &r, &[("Otoroshi-Token", &b)], "GET", NOW).unwrap(),
        "k1"
    );
    assert_eq!(
        auth_on(&s, &r, &[("X-Jwt", &b)], "GET", NOW),
        Err(KeyRejection::NoKey)
    );
}

// ---- client id alone ----

#[test]
fn client_id_only_allowed_or_not() {
    let s = store(vec![
        key(json!({"allowClientIdOnly": true})),
        key(json!({"clientId": "k2"})),
    ]);
    assert_eq!(auth(&s, &[("x-api-key", "k1")]).unwrap(), "k1");
    let err = auth(&s, &[("x-api-key", "k2")]).unwrap_err();
    assert_eq!(err, KeyRejection::ClientIdOnlyNotAllowed);
    assert_eq!(err.status(), 401);
    assert_eq!(
        auth(&s, &[("x-api-key", "k3")]),
        Err(KeyRejection::UnknownKey)
    );
    assert_eq!(auth(&s, &[("x-api-key", "")]), Err(KeyRejection::NoKey));
}

#[test]
fn disabled_key_refused_in_client_id_only_mode() {
    // Otoroshi #2596.
    let s = one(json!({"allowClientIdOnly": true, "enabled": false}));
    assert_eq!(
        auth(&s, &[("x-api-key", "k1")]),
        Err(KeyRejection::Disabled)
    );
}

// ---- key state ----

#[test]
fn unknown_and_bad_secret() {
    let s = one(json!({}));
    let err = auth(
        &s,
        &[
            ("Otoroshi-Client-Id", "nope"),
            ("Otoroshi-Client-Secret", "s3cret"),
        ],
    )
    .unwrap_err();
    let unknown = (err.status(), err.code(), err.description());
    assert_eq!((unknown.0, unknown.1), (401, "bad_api_key"));
    let err = auth(
        &s,
        &[
            ("Otoroshi-Client-Id", "k1"),
            ("Otoroshi-Client-Secret", "s3cre"),
        ],
    )
    .unwrap_err();
    assert_eq!(err, KeyRejection::BadSecret);
    // An unknown id and a wrong secret answer alike (no enumeration); only the reason differs.
    assert_eq!((err.status(), err.code(), err.description()), unknown);
    assert_ne!(err.reason(), KeyRejection::UnknownKey.reason());
    // The same for the client id alone: unknown, or known but not allowed without its secret.
    let alone = |id: &str| {
        let e = auth(&s, &[("x-api-key", id)]).unwrap_err();
        (e.status(), e.code(), e.description())
    };
    assert_eq!(alone("nope"), alone("k1"));
    // Non-UTF-8 ids are unknown keys, not panics.
    let h: [(&str, &[u8]); 2] = [
        ("Otoroshi-Client-Id", b"\xff\xfe"),
        ("Otoroshi-Client-Secret", b"x"),
    ];
    let mut scratch = Scratch::new();
    assert_eq!(
        authenticate(&h, &s, &route(), "GET", NOW, &mut scratch).unwrap_err(),
        KeyRejection::UnknownKey
    );
}

#[test]
fn secret_and_next_secret_both_accepted() {
    let s = one(json!({"rotation": {"enabled": true, "nextSecret": "n3xt"}}));
    for secret in ["s3cret", "n3xt"] {
        assert_eq!(
            auth(&s, &[("Authorization", &basic("k1", secret))]).unwrap(),
            "k1"
        );
    }
    assert_eq!(
        auth(&s, &[("Authorization", &basic("k1", "n3x"))]),
        Err(KeyRejection::BadSecret)
    );
}

#[test]
fn empty_secret_never_matches() {
    let s = one(json!({"clientSecret": ""}));
    assert_eq!(
        auth(
            &s,
            &[("Otoroshi-Client-Id", "k1"), ("Otoroshi-Client-Secret", "")]
        ),
        Err(KeyRejection::BadSecret)
    );
    assert_eq!(
        auth(&s, &[("Otoroshi-Token", &otoapk("k1", ""))]),
        Err(KeyRejection::BadBearer)
    );
}

#[test]
fn disabled_key_after_secret_check() {
    let s = one(json!({"enabled": false}));
    let err = auth(&s, &[("Authorization", &basic("k1", "s3cret"))]).unwrap_err();
    assert_eq!(
        (err, err.status(), err.code()),
        (KeyRejection::Disabled, 401, "api_key_disabled")
    );
    // The secret is proven first: a wrong one says nothing about the key's state.
    assert_eq!(
        auth(&s, &[("Authorization", &basic("k1", "wrong"))]),
        Err(KeyRejection::BadSecret)
    );
}

#[test]
fn valid_until_edge() {
    let s = one(json!({"validUntil": NOW}));
    let h = [("Authorization", basic("k1", "s3cret"))];
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert!(auth_on(&s, &route(), &h, "GET", NOW - 1).is_ok());
    assert_eq!(
        auth_on(&s, &route(), &h, "GET", NOW),
        Err(KeyRejection::Expired)
    );
    assert_eq!(
        auth_on(&s, &route(), &h, "GET", NOW + 1),
        Err(KeyRejection::Expired)
    );
    assert_eq!(KeyRejection::Expired.code(), "api_key_expired");
    // A future validUntil is active (Otoroshi's isActive has this inverted).
    let s = one(json!({"validUntil": NOW + 86_400_000}));
    assert!(auth_on(&s, &route(), &h, "GET", NOW).is_ok());
}

#[test]
fn read_only_matrix() {
    let ro = one(json!({"readOnly": true}));
    let rw = one(json!({}));
    let h = [
        ("Otoroshi-Client-Id", "k1"),
        ("Otoroshi-Client-Secret", "s3cret"),
    ];
    for m in ["GET", "HEAD", "OPTIONS"] {
        assert!(auth_on(&ro, &route(), &h, m, NOW).is_ok(), "{m}");
    }
    for m in ["POST", "PUT", "PATCH", "DELETE", "CONNECT", "TRACE", "get"] {
        let err = auth_on(&ro, &route(), &h, m, NOW).unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (405, "method_not_allowed"),
            "{m}"
        );
        assert!(auth_on(&rw, &route(), &h, m, NOW).is_ok(), "{m}");
    }
}

// ---- authorizations ----

#[test]
fn authorized_entities_prefixes() {
    let h = [
        ("Otoroshi-Client-Id", "k1"),
        ("Otoroshi-Client-Secret", "s3cret"),
    ];
    let cases: [(Value, bool); 10] = [
        (json!(["route_r1"]), true),
        (json!(["service_r1"]), true),
        (json!(["api_api1"]), true),
        (json!(["group_g1"]), true),
        (json!(["g1"]), true), // no known prefix: a group
        (json!(["default"]), true),
        (json!(["route_r2", "api_api2", "group_g2"]), false),
        (json!(["route-composition_r1"]), false),
        (json!(["api_r1"]), false), // kinds are not interchangeable
        (json!([]), false),
    ];
    for (entities, ok) in cases {
        let s = one(json!({"authorizedEntities": entities}));
        let result = auth(&s, &h);
        if ok {
            assert!(result.is_ok(), "{entities}");
        } else {
            let err = result.unwrap_err();
            assert_eq!(
                (err.status(), err.code()),
                (403, "not_authorized"),
                "{entities}"
            );
        }
    }
}

#[test]
fn authorizations_and_legacy_group_are_merged() {
    let h = [
        ("Otoroshi-Client-Id", "k1"),
        ("Otoroshi-Client-Secret", "s3cret"),
    ];
    let s =
        one(json!({"authorizedEntities": [], "authorizations": [{"kind": "api", "id": "api1"}]}));
    assert!(auth(&s, &h).is_ok());
    let s = one(json!({"authorizedEntities": [], "authorizedGroup": "g1"}));
    assert!(auth(&s, &h).is_ok());
    let s = one(json!({"authorizedEntities": [], "authorizations": [{"kind": "x", "id": "r1"}]}));
    assert_eq!(auth(&s, &h), Err(KeyRejection::NotAuthorized));
}

#[test]
fn every_authorizations_kind_authorizes_its_own_kind_only() {
    let h = [
        ("Otoroshi-Client-Id", "k1"),
        ("Otoroshi-Client-Secret", "s3cret"),
    ];
    // The route context is route r1 of API api1 in groups default and g1.
    for (kind, id, ok) in [
        ("route", "r1", true),
        ("service", "r1", true),
        ("api", "api1", true),
        ("group", "g1", true),
        ("route", "api1", false),
        ("service", "g1", false),
        ("api", "r1", false),
        ("group", "r1", false),
        ("routes", "r1", false),
    ] {
        let s =
            one(json!({"authorizedEntities": [], "authorizations": [{"kind": kind, "id": id}]}));
        assert_eq!(auth(&s, &h).is_ok(), ok, "{kind} {id}");
    }
}

#[test]
fn route_without_api_and_large_sets() {
    let h = [
        ("Otoroshi-Client-Id", "k1"),
        ("Otoroshi-Client-Secret", "s3cret"),
    ];
    let no_api = RouteContext::new("r9", None, ["g9"], &ApikeyCallsConfig::default()).unwrap();
    let s = one(json!({"authorizedEntities": ["api_api1"]}));
    assert_eq!(
        auth_on(&s, &no_api, &h, "GET", NOW),
        Err(KeyRejection::NotAuthorized)
    );
    // Many authorized routes (hashed set).
    let many: Vec<String> = (0..100).map(|i| format!("route_r{i}")).collect();
    let s = one(json!({ "authorizedEntities": many }));
    assert!(auth(&s, &h).is_ok());
    let r200 = RouteContext::new("r200", None, ["x"], &ApikeyCallsConfig::default()).unwrap();
    assert_eq!(
        auth_on(&s, &r200, &h, "GET", NOW),
        Err(KeyRejection::NotAuthorized)
    );
}

// ---- routing constraints ----

#[test]
fn constrained_services_only() {
    let s = one(json!({"constrainedServicesOnly": true, "tags": ["gold"]}));
    let h = [
        ("Otoroshi-Client-Id", "k1"),
        ("Otoroshi-Client-Secret", "s3cret"),
    ];
    for config in [
        json!(null),
        json!({"routing": {"enabled": false, "one_tag_in": ["gold"]}}),
        json!({"routing": {"enabled": true}}),
    ] {
        let err = auth_on(&s, &route_with(config.clone()), &h, "GET", NOW).unwrap_err();
        assert_eq!(err, KeyRejection::ConstrainedOnly, "{config}");
        assert_eq!((err.status(), err.code()), (401, "invalid_api_key"));
    }
    let r = route_with(json!({"routing": {"enabled": true, "one_tag_in": ["gold"]}}));
    assert!(auth_on(&s, &r, &h, "GET", NOW).is_ok());
}

#[test]
fn routing_constraints_matrix() {
    let s = one(json!({
        "tags": ["gold", "eu"],
        "metadata": {"tier": "premium", "region": "eu-west"},
    }));
    let h = [
        ("Otoroshi-Client-Id", "k1"),
        ("Otoroshi-Client-Secret", "s3cret"),
    ];
    let cases = [
        (json!({"one_tag_in": ["gold", "x"]}), true),
        (json!({"one_tag_in": ["x", "y"]}), false),
        (json!({"all_tags_in": ["gold", "eu"]}), true),
        (json!({"all_tags_in": ["gold", "us"]}), false),
        (json!({"none_tag_in": ["us"]}), true),
        (json!({"none_tag_in": ["us", "eu"]}), false),
        (json!({"one_meta_in": {"tier": "premium", "x": "y"}}), true),
        (json!({"one_meta_in": {"tier": "free"}}), false),
        (
            json!({"all_meta_in": {"tier": "premium", "region": "eu-west"}}),
            true,
        ),
        (
            json!({"all_meta_in": {"tier": "premium", "region": "us"}}),
            false,
        ),
        (json!({"none_meta_in": {"tier": "free"}}), true),
        (json!({"none_meta_in": {"tier": "premium"}}), false),
        (json!({"one_meta_key_in": ["region", "zzz"]}), true),
        (json!({"one_meta_key_in": ["zzz"]}), false),
        (json!({"all_meta_keys_in": ["region", "tier"]}), true),
        (json!({"all_meta_keys_in": ["region", "zzz"]}), false),
        (json!({"none_meta_keys_in": ["zzz"]}), true),
        (json!({"none_meta_keys_in": ["tier"]}), false),
        (
            json!({"one_tag_in": ["gold"], "none_meta_in": {"region": "eu-west"}}),
            false,
        ),
        (json!({}), true),
    ];
    for (routing, ok) in cases {
        let mut enabled = routing.clone();
        enabled["enabled"] = json!(true);
        let r = route_with(json!({ "routing": enabled }));
        let result = auth_on(&s, &r, &h, "GET", NOW);
        if ok {
            assert!(result.is_ok(), "{routing}");
        } else {
            assert_eq!(result, Err(KeyRejection::RoutingMismatch), "{routing}");
        }
        // Disabled constraints pass every key.
        let r = route_with(json!({ "routing": routing }));
        assert!(auth_on(&s, &r, &h, "GET", NOW).is_ok());
    }
}

// ---- store, config, hygiene ----

#[test]
fn store_build_errors_name_the_key() {
    let err = KeyStore::build(&[key(json!({})), key(json!({}))]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "apikeys[1].clientId: \"k1\" is already the id of apikeys[0]"
    );
    let err = KeyStore::build(&[key(json!({"clientId": ""}))]).unwrap_err();
    assert_eq!(err.to_string(), "apikeys[0].clientId: must not be empty");
    let bad = key(json!({"restrictions": {
        "enabled": true,
        "notFound": [{"method": "*", "path": "/ok"}, {"method": "*", "path": "/(x"}],
    }}));
    let err = KeyStore::build(&[key(json!({"clientId": "a"})), bad]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("apikeys[1].restrictions.notFound[1].path: invalid regex"),
        "{err}"
    );
}

#[test]
fn store_entry_exposes_what_the_flow_needs() {
    let s = store(vec![
        key(json!({"clientId": "a"})),
        key(json!({
            "clientId": "b",
            "throttlingQuota": 5, "dailyQuota": 100, "monthlyQuota": 1000,
            "restrictions": {"enabled": true, "forbidden": [{"method": "*", "path": "/admin"}]},
            "metadata": {"z": "1", "a": "2"},
        })),
    ]);
    assert_eq!(s.len(), 2);
    let b = s.get("b").unwrap();
    assert_eq!(b.index(), 1);
    assert_eq!(
        b.quotas(),
        Quotas {
            throttling: 5,
            daily: 100,
            monthly: 1000
        }
    );
    assert_eq!(
        b.restrictions()
            .check("GET", "h", "/admin", &mut String::new()),
        crate::restriction::Outcome::Forbidden
    );
    assert_eq!(b.metadata_value("a"), Some("2"));
    assert_eq!(b.metadata_value("m"), None);
    assert_eq!(b.metadata().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "z"]);
}

#[test]
fn store_entry_reports_its_name_expiry_and_tags() {
    let s = one(json!({"clientName": "Acme app", "validUntil": NOW, "tags": ["gold", "eu"]}));
    assert!(!s.is_empty());
    let k = s.get("k1").unwrap();
    assert_eq!(k.client_name(), "Acme app");
    assert_eq!(k.valid_until(), Some(NOW));
    let tags: Vec<&str> = k.tags().iter().map(|t| &**t).collect();
    assert_eq!(tags, ["gold", "eu"]);
    assert!(k.has_tag("eu") && !k.has_tag("us"));
    assert_eq!(one(json!({})).get("k1").unwrap().valid_until(), None);
    assert!(store(vec![]).is_empty());
}

#[test]
fn quota_holders_follow_the_keys_and_no_credential_finds_them() {
    let holder = |id: &str| QuotaHolder {
        id: id.into(),
        quotas: Quotas {
            throttling: 1,
            daily: 2,
            monthly: 3,
        },
    };
    let keys = [key(json!({"clientId": "a"})), key(json!({"clientId": "b"}))];
    let s = KeyStore::build_with(&keys, &[holder("keyless:x:1"), holder("keyless:x:2")]).unwrap();
    let indexes: Vec<usize> = ["a", "b", "keyless:x:1", "keyless:x:2"]
        .iter()
        .map(|id| s.get(id).unwrap().index())
        .collect();
    assert_eq!(indexes, [0, 1, 2, 3]);
    let h = s.get("keyless:x:2").unwrap();
    assert!(h.is_holder() && !s.get("b").unwrap().is_holder());
    assert_eq!(h.quotas().monthly, 3);
    assert!(s.lookup(b"keyless:x:2").is_none() && s.lookup(b"a").is_some());
    // Holders without any key (an API with keyless consumers only).
    let only = KeyStore::build_with(&[], &[holder("keyless:y:1")]).unwrap();
    assert_eq!(only.get("keyless:y:1").unwrap().index(), 0);
    let err = KeyStore::build_with(&keys, &[holder("b")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "apikeys[2].clientId: \"b\" is already the id of apikeys[1]"
    );
}

#[test]
fn nothing_secret_in_debug_output() {
    let s = one(json!({"clientSecret": "TOPSECRET", "rotation": {"nextSecret": "NEXTSECRET"}}));
    let entry = s.get("k1").unwrap();
    // It shows the key (a `Debug` that printed nothing would hide no secret either).
    assert!(format!("{entry:?}").contains(r#"client_id: "k1""#));
    let text = format!("{entry:?} {s:?}");
    assert!(
        !text.contains("TOPSECRET") && !text.contains("NEXTSECRET"),
        "{text}"
    );

    let value = basic("k1", "TOPSECRET");
    let h: [(&str, &[u8]); 1] = [("Authorization", value.as_bytes())];
    let mut buf = ScratchBuf::new();
    let cred = extract(&Extractors::default(), &h, &mut buf).unwrap();
    let text = format!("{cred:?}");
    assert!(text.contains("k1") && !text.contains("TOPSECRET"), "{text}");
    let text = format!("{buf:?}");
    assert!(!text.contains("TOPSECRET"), "{text}");
    let token = jwt("HS256", json!({"clientId": "k1"}), "TOPSECRET");
    let h: [(&str, &[u8]); 1] = [("Otoroshi-Token", token.as_bytes())];
    let cred = extract(&Extractors::default(), &h, &mut buf).unwrap();
    assert!(!format!("{cred:?}").contains(&token[..20]));
}

#[test]
fn scratch_is_wiped_after_authenticate() {
    let s = one(json!({}));
    let value = basic("k1", "s3cret");
    let h: [(&str, &[u8]); 1] = [("Authorization", value.as_bytes())];
    let mut scratch = Scratch::new();
    authenticate(&h, &s, &route(), "GET", NOW, &mut scratch).unwrap();
    assert!(scratch.credential.0.is_empty());
    assert!(scratch.credential.0.capacity() > 0);
}

#[test]
fn rejection_table() {
    use KeyRejection as R;
    let all = [
        R::NoKey,
        R::UnknownKey,
        R::Malformed,
        R::BadSecret,
        R::BadBearer,
        R::ClientIdOnlyNotAllowed,
        R::Jwt(JwtError::Malformed),
        R::Jwt(JwtError::Algorithm),
        R::Jwt(JwtError::NoClientId),
        R::Jwt(JwtError::Signature),
        R::Jwt(JwtError::Expired),
        R::Jwt(JwtError::NotYetValid),
        R::Jwt(JwtError::IssuedInFuture),
        R::Jwt(JwtError::Lifespan),
        R::Disabled,
        R::Expired,
        R::NotAuthorized,
        R::ConstrainedOnly,
        R::RoutingMismatch,
        R::ReadOnly,
    ];
    let mut reasons = std::collections::HashSet::new();
    for r in all {
        assert!(matches!(r.status(), 400 | 401 | 403 | 405), "{r:?}");
        let snake = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        assert!(snake(r.code()) && snake(r.reason()), "{r:?}");
        assert!(
            reasons.insert(r.reason()),
            "duplicate reason {}",
            r.reason()
        );
        assert_eq!(r.to_string(), r.description());
    }
}

/// Each rejection's `error_description`, the text the client reads in the JSON body.
#[test]
fn every_rejection_has_its_error_description() {
    use KeyRejection as R;
    let described = [
        (R::NoKey, "no apikey"),
        (R::Malformed, "malformed apikey credential"),
        (R::UnknownKey, "bad apikey"),
        (R::BadSecret, "bad apikey"),
        (R::BadBearer, "bad apikey"),
        (R::ClientIdOnlyNotAllowed, "bad apikey"),
        (R::Jwt(JwtError::Malformed), "malformed jwt"),
        (R::Jwt(JwtError::Algorithm), "unsupported jwt algorithm"),
        (R::Jwt(JwtError::NoClientId), "no client id in jwt"),
        (R::Jwt(JwtError::Signature), "bad jwt signature"),
        (R::Jwt(JwtError::Expired), "jwt expired"),
        (R::Jwt(JwtError::NotYetValid), "jwt not valid yet"),
        (R::Jwt(JwtError::IssuedInFuture), "jwt issued in the future"),
        (
            R::Jwt(JwtError::Lifespan),
            "jwt lifespan too long or undefined",
        ),
        (R::Disabled, "apikey disabled"),
        (R::Expired, "apikey expired"),
        (R::NotAuthorized, "apikey not authorized on this route"),
        (
            R::ConstrainedOnly,
            "apikey only usable on routes with routing constraints",
        ),
        (R::RoutingMismatch, "invalid apikey"),
        (R::ReadOnly, "method not allowed for a read-only apikey"),
    ];
    for (r, text) in described {
        assert_eq!(r.description(), text, "{r:?}");
    }
}

#[test]
fn config_from_otoroshi_json() {
    // Otoroshi's documented default config (with fields Tollgate ignores).
    let otoroshi = json!({
        "extractors": {
            "basic": {"enabled": true, "header_name": null, "query_name": null},
            "custom_headers": {"enabled": true, "client_id_header_name": null, "client_secret_header_name": null},
            "client_id": {"enabled": true, "header_name": null, "query_name": null},
            "jwt": {"enabled": true, "secret_signed": true, "keypair_signed": true,
                    "include_request_attrs": false, "max_jwt_lifespan_sec": null,
                    "header_name": null, "query_name": null, "cookie_name": null}
        },
        "routing": {"enabled": false},
        "validate": true, "mandatory": true, "pass_with_user": false,
        "wipe_backend_request": true, "update_quotas": true
    });
    let c = ApikeyCallsConfig::from_json(&otoroshi).unwrap();
    assert_eq!(c, ApikeyCallsConfig::default());
    assert_eq!(
        Extractors::try_from(&c.extractors).unwrap(),
        Extractors::default()
    );
    assert_eq!(ApikeyCallsConfig::from_json(&Value::Null).unwrap(), c);
    // "" is Otoroshi's cleared field: the default name.
    let c = ApikeyCallsConfig::from_json(&json!({"extractors": {"basic": {"header_name": ""}}}))
        .unwrap();
    assert_eq!(
        Extractors::try_from(&c.extractors).unwrap(),
        Extractors::default()
    );
    // Bad names and types are refused with their place.
    let c = ApikeyCallsConfig::from_json(&json!({"extractors": {"jwt": {"header_name": "a b"}}}))
        .unwrap();
    let err = Extractors::try_from(&c.extractors).unwrap_err();
    assert_eq!(err.field, "extractors.jwt.header_name");
    assert!(
        ApikeyCallsConfig::from_json(&json!({"extractors": {"basic": {"enabled": "yes"}}}))
            .is_err()
    );
}

#[test]
fn route_context_from_ng_route() {
    let route: Route = serde_json::from_value(json!({
        "id": "r7",
        "metadata": {"Otoroshi-Api-Ref": "apiX"},
        "groups": ["gA"],
        "frontend": {"domains": ["api.example.com/v1"]},
        "plugins": [
            {"plugin": "cp:otoroshi.next.plugins.OverrideHost"},
            {"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {
                "routing": {"enabled": true, "one_tag_in": ["gold"]}
            }}
        ]
    }))
    .unwrap();
    let ctx = RouteContext::from_route(&route).unwrap();
    assert_eq!((ctx.route_id(), ctx.api_id()), ("r7", Some("apiX")));
    assert_eq!(ctx.groups().len(), 1);
    assert!(ctx.routing().is_constraining());

    let mut bad = route.clone();
    bad.plugins[1].config = json!({"extractors": {"basic": {"header_name": "bad name"}}});
    let err = RouteContext::from_route(&bad).unwrap_err();
    assert_eq!(err.field, "plugins[1].config.extractors.basic.header_name");
}

// ---- properties ----

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any printable secret (':' included) survives Basic encoding; changing any one byte of
        /// it is refused.
        #[test]
        fn basic_round_trip_and_single_byte_mutation(
            id in "[a-zA-Z0-9_.-]{1,24}",
            secret in "[ -~]{1,64}",
            pos in any::<prop::sample::Index>(),
            replacement in 0x20u8..0x7f,
        ) {
            let s = store(vec![key(json!({"clientId": id, "clientSecret": secret}))]);
            prop_assert_eq!(auth(&s, &[("Authorization", &basic(&id, &secret))]).unwrap(), id.clone());

            let mut mutated = secret.clone().into_bytes();
            let i = pos.index(mutated.len());
            prop_assume!(mutated[i] != replacement);
            mutated[i] = replacement;
            let mutated = String::from_utf8(mutated).unwrap();
            prop_assert_eq!(
                auth(&s, &[("Authorization", &basic(&id, &mutated))]),
                Err(KeyRejection::BadSecret)
            );
        }

        /// Random bytes in every credential header, with or without the prefixes that lead
        /// deeper into the parsers, never panic.
        #[test]
        fn random_header_values_never_panic(
            values in prop::collection::vec(
                (0usize..5, prop::collection::vec(any::<u8>(), 0..120)),
                6,
            ),
            jwtish in prop::collection::vec("[A-Za-z0-9_=!-]{0,40}", 3),
        ) {
            const PREFIXES: [&[u8]; 5] = [b"", b"Basic ", b"Bearer ", b"otoapk_k1_", b"Bearer otoapk_"];
            let names = [
                "Otoroshi-Client-Id", "Otoroshi-Client-Secret", "Authorization",
                "Otoroshi-Authorization", "Otoroshi-Token", "x-api-key",
            ];
            let owned: Vec<Vec<u8>> = values
                .iter()
                .map(|(p, v)| [PREFIXES[*p], v.as_slice()].concat())
                .collect();
            let s = one(json!({"allowClientIdOnly": true}));
            let r = route();
            let mut scratch = Scratch::new();
            // Each header alone, then all together.
            for (name, value) in names.iter().zip(&owned) {
                let h: [(&str, &[u8]); 1] = [(*name, value.as_slice())];
                let _ = authenticate(&h, &s, &r, "GET", NOW, &mut scratch);
            }
            let all: Vec<(&str, &[u8])> = names.iter().copied().zip(owned.iter().map(Vec::as_slice)).collect();
            let _ = authenticate(all.as_slice(), &s, &r, "GET", NOW, &mut scratch);
            let token = format!("Bearer {}", jwtish.join("."));
            let h: [(&str, &[u8]); 1] = [("Authorization", token.as_bytes())];
            let _ = authenticate(&h, &s, &r, "GET", NOW, &mut scratch);
        }

        /// otoapk bearers round-trip for any client id, underscores included.
        #[test]
        fn otoapk_round_trip(id in "[a-z0-9_]{1,30}", secret in "[ -~]{1,40}") {
            let s = store(vec![key(json!({"clientId": id, "clientSecret": secret}))]);
            prop_assert_eq!(auth(&s, &[("Otoroshi-Token", &otoapk(&id, &secret))]).unwrap(), id.clone());
            prop_assert_eq!(bearer_for(&id, &secret), otoapk(&id, &secret));
        }
    }
}

/// The constant-time comparison answers exactly `==`: equal slices of every length up to three
/// words and a tail, and every one-byte change in every position (in a word or in the tail)
/// refused, as is a length change.
#[test]
fn constant_time_eq_is_equality() {
    for len in 0..=27usize {
        let a: Vec<u8> = (0..len)
            .map(|i| u8::try_from(i * 37 % 251 + 1).unwrap())
            .collect();
        assert!(ct::eq(&a, &a.clone()), "equal, {len} bytes");
        for i in 0..len {
            for flip in [0x01, 0x80, 0xff] {
                let mut b = a.clone();
                b[i] ^= flip;
                assert!(!ct::eq(&a, &b), "byte {i} of {len} changed by {flip:#x}");
            }
        }
        let mut longer = a.clone();
        longer.push(0);
        assert!(!ct::eq(&a, &longer), "{len} bytes against {}", len + 1);
        assert!(!ct::eq(&longer, &a));
    }
}

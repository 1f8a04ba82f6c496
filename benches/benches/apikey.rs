//! `apikey/*`: credential extraction + verification against a store of 10,000 keys (target for
//! the header-based paths: ≤ 150 ns, no heap allocation), and `restriction/check`: a key's path
//! restrictions (~10 entries).
//!
//! Before measuring, the bench counts heap allocations on the header-based paths with a counting
//! global allocator and refuses to run if there is any.

use std::hint::black_box;

use criterion::Criterion;
use gateway_core::apikey::{
    ApikeyCallsConfig, KeyStore, RouteContext, Scratch, authenticate, bearer_for, jwt,
};
use gateway_core::restriction::{Outcome, RestrictionSet};
use gateway_model::entity::{ApiKey, Restrictions};
use serde_json::json;

#[global_allocator]
static GLOBAL: benches::CountingAlloc = benches::CountingAlloc;

const KEYS: usize = 10_000;
const NOW: i64 = 1_700_000_000_000;

fn secret(i: usize) -> String {
    // 64 characters, like Otoroshi's generated secrets.
    format!("{i:08}").repeat(8)
}

fn client_id(i: usize) -> String {
    format!("client-{i:05}-{:x}", i * 2_654_435_761 % 65_536)
}

fn store() -> KeyStore {
    let keys: Vec<ApiKey> = (0..KEYS)
        .map(|i| {
            serde_json::from_value(json!({
                "clientId": client_id(i),
                "clientSecret": secret(i),
                "clientName": format!("key {i}"),
                "authorizedEntities": ["group_default", format!("route_r{}", i % 50), "route_r1"],
                "allowClientIdOnly": i % 2 == 0,
                "tags": ["bench"],
            }))
            .unwrap()
        })
        .collect();
    KeyStore::build(&keys).unwrap()
}

/// Standard base64 (the bench crate does not depend on a base64 crate).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Case {
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
}

fn cases() -> Vec<Case> {
    let i = 4242; // an even key: client id alone allowed
    let (id, secret) = (client_id(i), secret(i));
    let common = || -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("Host", b"api.example.com".to_vec()),
            ("User-Agent", b"curl/8.5.0".to_vec()),
            ("Accept", b"*/*".to_vec()),
        ]
    };
    let with = |extra: Vec<(&'static str, Vec<u8>)>| {
        let mut h = common();
        h.extend(extra);
        h
    };
    let token = jwt::sign(
        jwt::Algorithm::Hs256,
        &json!({"clientId": id, "iat": NOW / 1000, "exp": NOW / 1000 + 3600}),
        secret.as_bytes(),
    );
    vec![
        Case {
            name: "apikey/verify_custom_headers",
            headers: with(vec![
                ("Otoroshi-Client-Id", id.clone().into_bytes()),
                ("Otoroshi-Client-Secret", secret.clone().into_bytes()),
            ]),
        },
        Case {
            name: "apikey/verify_basic",
            headers: with(vec![(
                "Authorization",
                format!("Basic {}", base64(format!("{id}:{secret}").as_bytes())).into_bytes(),
            )]),
        },
        Case {
            name: "apikey/verify_jwt_hs256",
            headers: with(vec![(
                "Authorization",
                format!("Bearer {token}").into_bytes(),
            )]),
        },
        Case {
            name: "apikey/verify_otoapk",
            headers: with(vec![(
                "Authorization",
                format!("Bearer {}", bearer_for(&id, &secret)).into_bytes(),
            )]),
        },
        Case {
            name: "apikey/verify_client_id_only",
            headers: with(vec![("x-api-key", id.into_bytes())]),
        },
    ]
}

fn route() -> RouteContext {
    RouteContext::new(
        "r1",
        Some("api1"),
        ["default"],
        &ApikeyCallsConfig::default(),
    )
    .unwrap()
}

fn restrictions() -> RestrictionSet {
    let r: Restrictions = serde_json::from_value(json!({
        "enabled": true,
        "allowLast": true,
        "forbidden": [
            {"method": "*", "path": "/admin/.*"},
            {"method": "DELETE", "path": "/v1/.*"},
            {"method": "POST", "path": "/v1/users/[0-9]+/roles"},
            {"method": "*", "path": r"internal\.example\.com/.*"},
            {"method": "PUT", "path": "/v1/settings"},
        ],
        "notFound": [
            {"method": "*", "path": "/debug/.*"},
            {"method": "*", "path": "/metrics"},
            {"method": "GET", "path": "/v0/.*"},
            {"method": "*", "path": "/\\.git/.*"},
            {"method": "*", "path": "/actuator(/.*)?"},
        ],
    }))
    .unwrap();
    RestrictionSet::compile(&r).unwrap()
}

/// Proves that no path (JWT included) allocates once the scratch buffers are warm.
fn check_allocations(store: &KeyStore, route: &RouteContext) {
    let mut scratch = Scratch::new();
    for case in cases() {
        let headers: Vec<(&str, &[u8])> = case
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_slice()))
            .collect();
        let headers = headers.as_slice();
        // Warm up (the first call may grow the scratch buffers).
        authenticate(headers, store, route, "GET", NOW, &mut scratch).unwrap();
        let before = benches::allocations();
        for _ in 0..1000 {
            black_box(authenticate(headers, store, route, "GET", NOW, &mut scratch).unwrap());
        }
        let allocations = benches::allocations() - before;
        println!("{}: {allocations} allocations in 1000 calls", case.name);
        assert_eq!(allocations, 0, "{} allocates", case.name);
    }
}

fn benches(c: &mut Criterion) {
    let store = store();
    let route = route();
    check_allocations(&store, &route);
    let mut scratch = Scratch::new();
    for case in cases() {
        let headers: Vec<(&str, &[u8])> = case
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_slice()))
            .collect();
        let headers = headers.as_slice();
        c.bench_function(case.name, |b| {
            b.iter(|| {
                black_box(authenticate(
                    black_box(headers),
                    &store,
                    &route,
                    "GET",
                    NOW,
                    &mut scratch,
                ))
            })
        });
    }

    let set = restrictions();
    let mut buf = String::with_capacity(256);
    assert_eq!(
        set.check("GET", "api.example.com", "/v1/users/42", &mut buf),
        Outcome::Allow
    );
    c.bench_function("restriction/check", |b| {
        b.iter(|| {
            black_box(set.check(
                "GET",
                black_box("api.example.com"),
                black_box("/v1/users/42"),
                &mut buf,
            ))
        })
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}

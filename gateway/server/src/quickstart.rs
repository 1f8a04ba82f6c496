//! The quickstart: a node that needs no file and no upstream. A demo API on 127.0.0.1:8080 with
//! a mock backend, a public route and a keyed route, and a freshly generated demo key printed
//! with curl lines to try.

use std::io::Read as _;

use gateway_model::import::{Dialect, Entities, import_value};
use serde_json::json;

/// A random hex string of `bytes` bytes (from the OS).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if filled.is_err() {
        // No /dev/urandom: fall back to the hasher's per-process random keys.
        use std::hash::{BuildHasher, Hasher};
        for chunk in buf.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0);
            for (b, v) in chunk.iter_mut().zip(h.finish().to_le_bytes()) {
                *b = v;
            }
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The quickstart's entities, with `secret` as the demo key's secret.
///
/// # Panics
/// Never: the document is fixed and valid (a test checks it).
pub fn entities(secret: &str) -> Entities {
    let doc = json!({
        "backends": [{
            "id": "demo_mock",
            "name": "demo mock backend",
            "backend": {"mock": {
                "status": 200,
                "headers": {"content-type": "application/json"},
                "body": "{\"message\":\"hello from the Tollgate quickstart\"}\n"
            }}
        }],
        "routes": [
            {"id": "demo_public", "name": "public", "frontend": {"domains": ["*/public"]},
             "backend_ref": "demo_mock"},
            {"id": "demo_keyed", "name": "keyed", "frontend": {"domains": ["*/api"]},
             "backend_ref": "demo_mock",
             "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]}
        ],
        "apiKeys": [{
            "clientId": "demo-client",
            "clientSecret": secret,
            "clientName": "quickstart demo key",
            "authorizedEntities": ["route_demo_keyed"],
            "throttlingQuota": 100,
            "dailyQuota": 1000,
            "monthlyQuota": 10000
        }]
    });
    match import_value(&doc, Some(Dialect::Tollgate)) {
        Ok(import) => import.entities,
        Err(_) => Entities::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_entities_are_valid() {
        let secret = random_hex(16);
        assert_eq!(secret.len(), 32);
        let e = entities(&secret);
        assert_eq!(e.routes.len(), 2);
        assert_eq!(e.apikeys[0].client_secret.expose(), secret);
        let doc = serde_json::to_value(&e.routes).unwrap();
        assert!(doc.to_string().contains("demo_keyed"));
    }
}

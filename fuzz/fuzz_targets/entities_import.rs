//! Entity documents (Tollgate and Otoroshi dialects) as `gateway import`, the seed file and
//! `POST /api/import` read them.
//!
//! Invariants: no panic; reading is deterministic (the same document gives the same entities
//! and the same problems); route ids are unique in what is imported.
#![no_main]

use gateway_model::import::import_document;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first = import_document(data, None);
    let second = import_document(data, None);
    assert_eq!(first, second, "reading the same document twice differs");
    if let Ok(import) = first {
        // Problems and entities never overlap: an entity with a problem is left out.
        let ids: Vec<&str> = import
            .entities
            .routes
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            ids.len(),
            unique.len(),
            "duplicate route ids imported: {ids:?}"
        );
    }
});

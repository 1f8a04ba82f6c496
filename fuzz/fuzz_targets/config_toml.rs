//! The node's config file, as `gateway check` and the start read it.
//!
//! Invariants: no panic; deterministic; a text that is not TOML is one problem with an empty
//! path; every problem of a refused file names a key path or the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/nonexistent/tollgate-fuzz");
    let first = gateway::config::parse(text, base);
    let second = gateway::config::parse(text, base);
    assert_eq!(
        format!("{first:?}"),
        format!("{second:?}"),
        "parsing twice differs"
    );
    if toml::from_str::<toml::Value>(text).is_err() {
        let problems = first.expect_err("not TOML, yet accepted");
        assert!(!problems.is_empty());
    }
});

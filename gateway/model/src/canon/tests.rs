use proptest::prelude::*;

use super::*;

fn canon(raw: &str) -> Result<String, PathError> {
    let mut out = String::new();
    canonical_path(raw, PathPolicy::STRICT, &mut out).map(|()| out)
}

fn canon_preserve(raw: &str) -> Result<String, PathError> {
    let mut out = String::new();
    canonical_path(raw, PathPolicy::PRESERVE_ENCODED, &mut out).map(|()| out)
}

#[test]
fn the_bypasses_of_the_security_review_all_become_admin() {
    for raw in [
        "/admin",
        "/%61dmin",
        "/%61%64%6D%69%6E",
        "/x/../admin",
        "//admin",
        "/./admin",
        "/%2e/admin",
        "/%2E%2E/x/../admin",
        "/x/%2e%2e/admin",
        "///./x/.././admin",
    ] {
        match canon(raw) {
            Ok(p) => assert!(p == "/admin", "{raw} → {p}"),
            Err(PathError::AboveRoot) => assert!(raw.starts_with("/%2E%2E")),
            Err(e) => panic!("{raw}: {e}"),
        }
    }
    // Encoded slashes are refused unless the route preserves them, and then stay encoded.
    assert_eq!(canon("/%2Fadmin"), Err(PathError::EncodedSeparator));
    assert_eq!(canon("/%2fadmin"), Err(PathError::EncodedSeparator));
    assert_eq!(canon_preserve("/%2fadmin").unwrap(), "/%2Fadmin");
    assert_eq!(
        canon_preserve("/a/%2e%2e%2Fadmin").unwrap(),
        "/a/..%2Fadmin"
    );
}

#[test]
fn rfc3986_examples_and_trailing_slashes() {
    let cases = [
        ("/", "/"),
        ("//", "/"),
        ("/a", "/a"),
        ("/a/", "/a/"),
        ("/a//", "/a/"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
        ("/a/b/c/./../../g", "/a/g"),
        ("/mid/content=5/../6", "/mid/6"),
        ("/a/./b/../c/", "/a/c/"),
        ("/~user/%7e/%7E", "/~user/~/~"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%20b", "/a%20b"),
        ("/a%25b", "/a%25b"),
        ("/q\"<>`{}|^", "/q%22%3C%3E%60%7B%7D%7C%5E"),
        ("/a;b=c/d", "/a;b=c/d"),
        ("/...;/x", "/...;/x"),
        ("/.../x", "/.../x"),
        ("/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="),
    ];
    for (raw, want) in cases {
        assert_eq!(canon(raw).as_deref(), Ok(want), "{raw}");
    }
}

#[test]
fn ambiguous_paths_are_refused_with_their_reason() {
    let cases = [
        ("/..", PathError::AboveRoot),
        ("/a/../..", PathError::AboveRoot),
        ("/%2e%2e/", PathError::AboveRoot),
        ("/a%2Fb", PathError::EncodedSeparator),
        ("/a%5cb", PathError::EncodedSeparator),
        ("/a\\b", PathError::Backslash),
        ("/caf\u{e9}", PathError::NonAscii),
        ("/a%00", PathError::Control),
        ("/a%0d%0aX:1", PathError::Control),
        ("/a%7f", PathError::Control),
        ("/a#frag", PathError::Fragment),
        ("/a%zz", PathError::BadEscape),
        ("/a%4", PathError::BadEscape),
        ("/a%", PathError::BadEscape),
        ("/..;/admin", PathError::DotParameter),
        ("/x/..;x/admin", PathError::DotParameter),
        ("/x/.;/admin", PathError::DotParameter),
        ("/x/..%3b/admin", PathError::DotParameter),
        ("/x/%2e%2e;/admin", PathError::DotParameter),
        ("admin", PathError::NotAbsolute),
        ("", PathError::NotAbsolute),
    ];
    for (raw, want) in cases {
        assert_eq!(canon(raw), Err(want), "{raw}");
    }
    // What the preserving policy accepts, and what it still refuses.
    assert_eq!(canon_preserve("/caf\u{e9}").unwrap(), "/caf%C3%A9");
    assert_eq!(canon_preserve("/a\\b").unwrap(), "/a%5Cb");
    for raw in ["/..", "/a%00", "/a#f", "/a%zz", "/..;/x"] {
        assert!(canon_preserve(raw).is_err(), "{raw}");
    }
}

#[test]
fn hosts_are_lower_case_without_port_or_trailing_dot() {
    let mut buf = [0u8; MAX_HOST];
    for (raw, want) in [
        ("Example.COM", Some("example.com")),
        ("example.com.", Some("example.com")),
        ("EXAMPLE.com.:8080", Some("example.com")),
        ("[::1]:80", Some("[::1]")),
        ("", None),
        (".", None),
        ("a b", None),
    ] {
        assert_eq!(canonical_host(raw.as_bytes(), &mut buf), want, "{raw}");
    }
}

/// An independent reading of RFC 3986, written the obvious way with allocations: decode the
/// unreserved escapes, upper-case the others, merge repeated slashes, then run §5.2.4's
/// remove_dot_segments literally (input and output buffers), failing where a `..` would climb
/// above the root.
fn reference(raw: &str) -> Option<String> {
    if !raw.starts_with('/') || raw.contains('#') || raw.contains('\\') || !raw.is_ascii() {
        return None;
    }
    let mut decoded = String::new();
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            let v = u8::from_str_radix(h, 16).ok()?;
            if !h.bytes().all(|x| x.is_ascii_hexdigit()) {
                return None;
            }
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                decoded.push(v as char);
            } else if v == b'/' || v == b'\\' || v < 0x20 || v == 0x7f {
                return None;
            } else {
                decoded.push_str(&format!("%{v:02X}"));
            }
            i += 3;
        } else if c < 0x21 || c == 0x7f {
            return None;
        } else if b"\"<>`{}|^".contains(&c) {
            decoded.push_str(&format!("%{c:02X}"));
            i += 1;
        } else {
            decoded.push(c as char);
            i += 1;
        }
    }
    while decoded.contains("//") {
        decoded = decoded.replace("//", "/");
    }
    // §5.2.4, step by step.
    let mut input = decoded;
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_owned();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_owned();
        } else if input.starts_with("/./") {
            input = input[2..].to_owned();
        } else if input == "/." {
            input = "/".to_owned();
        } else if input.starts_with("/../") || input == "/.." {
            input = if input == "/.." {
                "/".to_owned()
            } else {
                input[3..].to_owned()
            };
            let cut = output.rfind('/')?; // nothing to remove: above the root
            output.truncate(cut);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |j| j + start);
            output.push_str(&input[..end]);
            input = input[end..].to_owned();
        }
    }
    // A path parameter on a dot segment is refused rather than resolved.
    for seg in raw.split('/') {
        let lower = seg
            .to_ascii_lowercase()
            .replace("%2e", ".")
            .replace("%3b", ";");
        if lower.starts_with(".;") || lower.starts_with("..;") {
            return None;
        }
    }
    if output.is_empty() {
        output.push('/');
    }
    Some(output)
}

fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2e".to_owned()),
        Just("%2F".to_owned()),
        Just("%5c".to_owned()),
        Just("%61".to_owned()),
        Just("%7e".to_owned()),
        Just("%20".to_owned()),
        Just("%c3%A9".to_owned()),
        Just("%zz".to_owned()),
        Just("%00".to_owned()),
        Just(";".to_owned()),
        Just("%3b".to_owned()),
        Just("#".to_owned()),
        Just("\\".to_owned()),
        Just("admin".to_owned()),
        Just("{".to_owned()),
        "[a-zA-Z0-9_~!$&'()*+,=:@-]{1,4}",
    ];
    prop::collection::vec(piece, 0..10).prop_map(|v| format!("/{}", v.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The canonical form agrees with the independent reference, on accepted and refused paths.
    #[test]
    fn agrees_with_an_independent_rfc3986_reading(raw in path_strategy()) {
        prop_assert_eq!(canon(&raw).ok(), reference(&raw), "{}", raw);
    }

    /// Canonical paths are a fixed point: checking them again changes nothing, so what a
    /// normalising upstream sees is exactly what was checked.
    #[test]
    fn canonical_paths_are_a_fixed_point(raw in path_strategy()) {
        for policy in [PathPolicy::STRICT, PathPolicy::PRESERVE_ENCODED] {
            let mut once = String::new();
            if canonical_path(&raw, policy, &mut once).is_ok() {
                let mut twice = String::new();
                prop_assert!(canonical_path(&once, PathPolicy::STRICT, &mut twice).is_ok()
                    || policy.preserve_encoded);
                let mut again = String::new();
                canonical_path(&once, policy, &mut again).unwrap();
                prop_assert_eq!(&again, &once);
                prop_assert!(!once.contains("//") && !once.contains("/./") && !once.contains("/../"));
                prop_assert!(!once.ends_with("/.") && !once.ends_with("/.."));
            }
        }
    }

    /// No input panics, whatever its bytes.
    #[test]
    fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let raw = String::from_utf8_lossy(&bytes);
        let _ = canon(&format!("/{raw}"));
        let _ = canon_preserve(&raw);
    }
}

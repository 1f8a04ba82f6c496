use gateway_model::entity::{Restriction, Restrictions};

use super::*;

fn r(method: &str, path: &str) -> Restriction {
    Restriction {
        method: method.into(),
        path: path.into(),
    }
}

fn set(
    allow_last: bool,
    allowed: Vec<Restriction>,
    forbidden: Vec<Restriction>,
    not_found: Vec<Restriction>,
) -> RestrictionSet {
    RestrictionSet::compile(&Restrictions {
        enabled: true,
        allow_last,
        allowed,
        forbidden,
        not_found,
    })
    .unwrap()
}

fn check(s: &RestrictionSet, method: &str, path: &str) -> Outcome {
    s.check(method, "api.example.com", path, &mut String::new())
}

#[test]
fn disabled_allows_everything_and_is_not_compiled() {
    let s = RestrictionSet::compile(&Restrictions {
        enabled: false,
        allow_last: false,
        allowed: vec![],
        forbidden: vec![r("*", "/.*"), r("*", "(unclosed")],
        not_found: vec![r("*", "/.*")],
    })
    .unwrap();
    assert!(!s.is_enabled());
    assert_eq!(check(&s, "GET", "/anything"), Outcome::Allow);
    assert_eq!(
        check(&RestrictionSet::default(), "POST", "/"),
        Outcome::Allow
    );
}

#[test]
fn allow_last_true_matrix() {
    let s = set(
        true,
        vec![r("*", "/admin/.*"), r("*", "/public/.*")],
        vec![r("*", "/admin/.*"), r("*", "/both")],
        vec![r("*", "/secret/.*"), r("*", "/both")],
    );
    // notFound first, then forbidden; `allowed` is ignored in this mode.
    assert_eq!(check(&s, "GET", "/secret/x"), Outcome::NotFound);
    assert_eq!(check(&s, "GET", "/admin/x"), Outcome::Forbidden);
    assert_eq!(check(&s, "GET", "/both"), Outcome::NotFound);
    assert_eq!(check(&s, "GET", "/public/x"), Outcome::Allow);
    assert_eq!(check(&s, "GET", "/elsewhere"), Outcome::Allow);
}

#[test]
fn allow_last_false_matrix_is_a_whitelist() {
    let s = set(
        false,
        vec![r("*", "/public/.*"), r("*", "/admin/open")],
        vec![r("*", "/admin/.*"), r("*", "/both")],
        vec![
            r("*", "/secret/.*"),
            r("*", "/both"),
            r("*", "/public/hidden"),
        ],
    );
    // An allowed entry wins over forbidden and notFound.
    assert_eq!(check(&s, "GET", "/admin/open"), Outcome::Allow);
    assert_eq!(check(&s, "GET", "/public/hidden"), Outcome::Allow);
    assert_eq!(check(&s, "GET", "/public/x"), Outcome::Allow);
    // Not allowed: notFound, then forbidden, else 404.
    assert_eq!(check(&s, "GET", "/secret/x"), Outcome::NotFound);
    assert_eq!(check(&s, "GET", "/admin/x"), Outcome::Forbidden);
    assert_eq!(check(&s, "GET", "/both"), Outcome::NotFound);
    assert_eq!(check(&s, "GET", "/elsewhere"), Outcome::NotFound);
}

#[test]
fn allow_last_false_with_empty_lists_refuses_everything() {
    let s = set(false, vec![], vec![], vec![]);
    assert_eq!(check(&s, "GET", "/"), Outcome::NotFound);
    let s = set(true, vec![], vec![], vec![]);
    assert_eq!(check(&s, "GET", "/"), Outcome::Allow);
}

#[test]
fn patterns_match_the_whole_path() {
    let s = set(true, vec![], vec![r("*", "/api"), r("*", "/v1/.*")], vec![]);
    assert_eq!(check(&s, "GET", "/api"), Outcome::Forbidden);
    assert_eq!(check(&s, "GET", "/api/x"), Outcome::Allow);
    assert_eq!(check(&s, "GET", "/x/api"), Outcome::Allow);
    assert_eq!(check(&s, "GET", "/v1/users"), Outcome::Forbidden);
    assert_eq!(check(&s, "GET", "/v1"), Outcome::Allow);
    assert_eq!(check(&s, "GET", "/v10/x"), Outcome::Allow);
}

#[test]
fn alternation_is_anchored_as_a_whole() {
    let s = set(true, vec![], vec![r("*", "/a|/b")], vec![]);
    assert_eq!(check(&s, "GET", "/a"), Outcome::Forbidden);
    assert_eq!(check(&s, "GET", "/b"), Outcome::Forbidden);
    assert_eq!(check(&s, "GET", "/a/x"), Outcome::Allow);
    assert_eq!(check(&s, "GET", "/x/b"), Outcome::Allow);
}

#[test]
fn dot_star_versus_slash_star() {
    let all = set(true, vec![], vec![r("*", "/.*")], vec![]);
    assert_eq!(check(&all, "GET", "/"), Outcome::Forbidden);
    assert_eq!(check(&all, "GET", "/foo/bar"), Outcome::Forbidden);
    // The docs' "/*" is a regex: only runs of slashes.
    let slashes = set(true, vec![], vec![r("*", "/*")], vec![]);
    assert_eq!(check(&slashes, "GET", "/"), Outcome::Forbidden);
    assert_eq!(check(&slashes, "GET", "///"), Outcome::Forbidden);
    assert_eq!(check(&slashes, "GET", "/foo"), Outcome::Allow);
}

#[test]
fn methods_star_and_case_insensitive() {
    let s = set(
        true,
        vec![],
        vec![
            r("post", "/items"),
            r("DELETE", "/items/.*"),
            r("*", "/admin"),
        ],
        vec![],
    );
    assert_eq!(check(&s, "POST", "/items"), Outcome::Forbidden);
    assert_eq!(check(&s, "post", "/items"), Outcome::Forbidden);
    assert_eq!(check(&s, "GET", "/items"), Outcome::Allow);
    assert_eq!(check(&s, "DELETE", "/items/3"), Outcome::Forbidden);
    assert_eq!(check(&s, "POST", "/items/3"), Outcome::Allow);
    // `*` entries apply to methods that have entries of their own too.
    for m in ["GET", "PUT", "PATCH", "OPTIONS", "FOO", "POST", "delete"] {
        assert_eq!(check(&s, m, "/admin"), Outcome::Forbidden, "{m}");
    }
}

#[test]
fn domain_plus_path_patterns() {
    let s = set(
        true,
        vec![],
        vec![r("*", r"api\.example\.com/admin.*"), r("GET", "/local")],
        vec![r("*", r".*\.internal\.io/.*")],
    );
    let mut scratch = String::new();
    assert_eq!(
        s.check("GET", "api.example.com", "/admin/users", &mut scratch),
        Outcome::Forbidden
    );
    assert_eq!(
        s.check("GET", "other.example.com", "/admin/users", &mut scratch),
        Outcome::Allow
    );
    assert_eq!(
        s.check("GET", "db.internal.io", "/x", &mut scratch),
        Outcome::NotFound
    );
    // A path pattern is matched against the path alone.
    assert_eq!(
        s.check("GET", "api.example.com", "/local", &mut scratch),
        Outcome::Forbidden
    );
    // The scratch is reused: nothing from the previous call leaks in.
    assert_eq!(scratch, "api.example.com/local");
}

#[test]
fn query_string_is_excluded() {
    let s = set(true, vec![], vec![r("*", "/admin")], vec![]);
    assert_eq!(check(&s, "GET", "/admin?debug=true"), Outcome::Forbidden);
    assert_eq!(check(&s, "GET", "/other?p=/admin"), Outcome::Allow);
}

#[test]
fn many_entries_grouped_by_method() {
    let forbidden: Vec<_> = (0..50)
        .map(|i| {
            r(
                if i % 2 == 0 { "GET" } else { "POST" },
                &format!("/r{i}/.*"),
            )
        })
        .collect();
    let s = set(true, vec![], forbidden, vec![]);
    assert_eq!(check(&s, "GET", "/r10/x"), Outcome::Forbidden);
    assert_eq!(check(&s, "POST", "/r10/x"), Outcome::Allow);
    assert_eq!(check(&s, "POST", "/r11/x"), Outcome::Forbidden);
    assert_eq!(check(&s, "GET", "/r50/x"), Outcome::Allow);
}

#[test]
fn invalid_regex_names_the_entry() {
    let err = RestrictionSet::compile(&Restrictions {
        enabled: true,
        allow_last: true,
        allowed: vec![],
        forbidden: vec![r("*", "/ok"), r("GET", "/bad(")],
        not_found: vec![],
    })
    .unwrap_err();
    assert_eq!(err.field, "forbidden[1].path");
    assert_eq!(err.pattern, "/bad(");
    assert!(
        err.to_string()
            .starts_with("forbidden[1].path: invalid regex \"/bad(\"")
    );

    // Java-only syntax (look-ahead) is refused too.
    let err = RestrictionSet::compile(&Restrictions {
        enabled: true,
        allow_last: true,
        allowed: vec![],
        forbidden: vec![],
        not_found: vec![r("*", "/(?!public).*")],
    })
    .unwrap_err();
    assert_eq!(err.field, "notFound[0].path");
}

/// A domain pattern in only one of the three lists still makes the set match on
/// `domain + path` (and an enabled set says so).
#[test]
fn a_domain_pattern_in_any_one_list_is_matched_with_the_domain() {
    let only_forbidden = set(
        true,
        vec![],
        vec![r("*", r"api\.example\.com/admin.*")],
        vec![],
    );
    assert!(only_forbidden.is_enabled());
    assert_eq!(
        check(&only_forbidden, "GET", "/admin/x"),
        Outcome::Forbidden
    );
    let only_not_found = set(
        true,
        vec![],
        vec![],
        vec![r("*", r"api\.example\.com/hidden")],
    );
    assert_eq!(check(&only_not_found, "GET", "/hidden"), Outcome::NotFound);
    // Under a method of its own, too.
    let by_method = set(
        true,
        vec![],
        vec![r("GET", r"api\.example\.com/admin.*")],
        vec![],
    );
    assert_eq!(check(&by_method, "GET", "/admin/x"), Outcome::Forbidden);
    assert_eq!(check(&by_method, "POST", "/admin/x"), Outcome::Allow);
    let only_allowed = set(
        false,
        vec![r("*", r"api\.example\.com/open")],
        vec![],
        vec![],
    );
    assert_eq!(check(&only_allowed, "GET", "/open"), Outcome::Allow);
    assert_eq!(check(&only_allowed, "GET", "/closed"), Outcome::NotFound);
}

#[test]
fn outcome_statuses_and_codes() {
    assert_eq!(Outcome::Forbidden.status(), 403);
    assert_eq!(Outcome::NotFound.status(), 404);
    assert_eq!(Outcome::Forbidden.code(), "forbidden");
    assert_eq!(Outcome::NotFound.code(), "not_found");
    assert_eq!(Outcome::Allow.status(), 200);
}

#[test]
fn deserialised_otoroshi_restrictions_default_to_allow_last() {
    let json = serde_json::json!({
        "enabled": true,
        "forbidden": [{"method": "*", "path": "/admin/.*"}]
    });
    let restrictions: Restrictions = serde_json::from_value(json).unwrap();
    let s = RestrictionSet::compile(&restrictions).unwrap();
    assert_eq!(check(&s, "GET", "/admin/x"), Outcome::Forbidden);
    assert_eq!(check(&s, "GET", "/x"), Outcome::Allow);
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// A literal path (escaped) forbids exactly itself, whatever it contains.
        #[test]
        fn escaped_literal_matches_only_itself(
            path in "/[ -~]{0,30}",
            other in "/[ -~]{0,30}",
        ) {
            let path = path.split('?').next().unwrap().to_owned();
            let other = other.split('?').next().unwrap().to_owned();
            let s = set(true, vec![], vec![r("*", &regex::escape(&path))], vec![]);
            prop_assert_eq!(check(&s, "GET", &path), Outcome::Forbidden);
            let expected = if other == path { Outcome::Forbidden } else { Outcome::Allow };
            prop_assert_eq!(check(&s, "GET", &other), expected);
        }
    }
}

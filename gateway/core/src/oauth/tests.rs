use super::*;

#[test]
fn forms_are_strict() {
    let f = form(b"grant_type=client_credentials&client_id=a%2Bb&scope=x+y").unwrap();
    assert_eq!(f["grant_type"], "client_credentials");
    assert_eq!(f["client_id"], "a+b");
    assert_eq!(f["scope"], "x y");
    assert!(form(b"a=1&a=2").is_none(), "a repeated parameter");
    assert!(form(b"a=%zz").is_none());
    assert!(form(&[0xff]).is_none());
}

#[test]
fn basic_credentials_are_decoded() {
    let v = format!("Basic {}", STANDARD.encode("my%3Aid:s%25cret"));
    assert_eq!(basic(v.as_bytes()), Some(("my:id".into(), "s%cret".into())));
    assert_eq!(basic(b"Bearer abc"), None);
    assert_eq!(basic(b"Basic !!!"), None);
    assert!(is_form(Some(
        b"application/x-www-form-urlencoded; charset=UTF-8"
    )));
    assert!(!is_form(Some(b"application/json")));
    assert!(!is_form(None));
}

#[test]
fn failed_clients_are_throttled_for_a_window() {
    let mut t = Throttle::default();
    let now = 1_000_000;
    for _ in 0..Throttle::MAX_FAILURES - 1 {
        t.failed("c", now);
        assert_eq!(t.blocked("c", now), None);
    }
    t.failed("c", now);
    assert_eq!(t.blocked("c", now), Some(60));
    assert_eq!(t.blocked("c", now + 59_500), Some(1));
    assert_eq!(t.blocked("c", now + 60_000), None, "the window ended");
    assert_eq!(t.blocked("other", now), None);
    t.failed("c", now + 60_000);
    assert_eq!(t.blocked("c", now + 60_000), None, "a new window");
    t.succeeded("c");
    for i in 0..(Throttle::CAPACITY + 5) {
        t.failed(&format!("id{i}"), now);
    }
    assert!(t.failures.len() <= Throttle::CAPACITY);
}

#[test]
fn endpoints_by_path() {
    assert_eq!(Endpoint::of(TOKEN_PATH), Some(Endpoint::Token));
    assert_eq!(Endpoint::of(JWKS_PATH), Some(Endpoint::Jwks));
    assert_eq!(Endpoint::of(INTROSPECT_PATH), Some(Endpoint::Introspect));
    assert_eq!(Endpoint::of("/.well-known/otoroshi/oauth/other"), None);
}

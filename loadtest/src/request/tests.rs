use super::*;

fn target() -> Target {
    Target::parse("http://127.0.0.1:8080/base?x=1").unwrap()
}

#[test]
fn parses_urls() {
    let t = target();
    assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(t.host, "127.0.0.1:8080");
    assert_eq!(t.path, "/base?x=1");
    let t = Target::parse("http://127.0.0.1").unwrap();
    assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
    let t = Target::parse("http://[::1]:9/").unwrap();
    assert_eq!(t.addr, "[::1]:9".parse().unwrap());
    assert!(matches!(
        Target::parse("https://x/"),
        Err(Error::Url { .. })
    ));
    assert!(matches!(Target::parse("ftp://x/"), Err(Error::Url { .. })));
    assert!(matches!(Target::parse("http:///x"), Err(Error::Url { .. })));
}

#[test]
fn serialises_a_get_like_wrk() {
    let set = RequestSet::build(&target(), &[RequestSpec::get()], None).unwrap();
    assert!(set.is_single());
    assert_eq!(
        String::from_utf8(set.requests[0].bytes.clone()).unwrap(),
        "GET /base?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    );
}

#[test]
fn serialises_body_headers_and_keys() {
    let spec = RequestSpec {
        weight: 1,
        method: "POST".into(),
        path: Some("/p".into()),
        headers: vec![
            ("Host".into(), "example".into()),
            ("X-A".into(), "b".into()),
        ],
        body: b"{}".to_vec(),
    };
    let pool = KeyPool {
        header: "Otoroshi-Client-Id".into(),
        groups: vec![
            KeyGroup {
                name: "valid".into(),
                weight: 3,
                keys: vec!["k1".into(), "k2".into()],
            },
            KeyGroup {
                name: "invalid".into(),
                weight: 1,
                keys: vec!["bad".into()],
            },
        ],
    };
    let set = RequestSet::build(&target(), &[spec], Some(&pool)).unwrap();
    assert_eq!(set.requests.len(), 3);
    assert_eq!(
        String::from_utf8(set.requests[2].bytes.clone()).unwrap(),
        "POST /p HTTP/1.1\r\nHost: example\r\nX-A: b\r\nOtoroshi-Client-Id: bad\r\nContent-Length: 2\r\n\r\n{}"
    );
    // Weights: 3/4 of picks go to the valid group.
    let valid = (0..4000u64).filter(|&i| set.pick(0, i, i / 4) < 2).count();
    assert_eq!(valid, 3000);
}

#[test]
fn rejects_bad_input() {
    let mut spec = RequestSpec::get();
    spec.method = "GE T".into();
    assert!(RequestSet::build(&target(), &[spec], None).is_err());
    let mut spec = RequestSpec::get();
    spec.headers.push(("X".into(), "a\r\nInjected: 1".into()));
    assert!(RequestSet::build(&target(), &[spec], None).is_err());
    let mut spec = RequestSpec::get();
    spec.weight = 0;
    assert!(RequestSet::build(&target(), &[spec], None).is_err());
    assert!(parse_header("NoColon").is_err());
    assert_eq!(
        parse_header("X-Key:  v ").unwrap(),
        ("X-Key".to_string(), "v".to_string())
    );
}

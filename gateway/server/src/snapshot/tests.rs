use gateway_model::import::{Dialect, import_document};
use serde_json::json;

use super::*;

struct Fixed;

impl Resolver for Fixed {
    fn resolve(&mut self, host: &str, port: u16) -> Option<SocketAddr> {
        match host {
            "upstream.internal" => Some(SocketAddr::from(([10, 0, 0, 7], port))),
            _ => SystemResolver
                .resolve(host, port)
                .filter(|a| a.ip().is_loopback()),
        }
    }
}

fn entities(doc: serde_json::Value) -> Entities {
    let out = import_document(doc.to_string().as_bytes(), Some(Dialect::Tollgate)).unwrap();
    assert!(out.is_clean(), "{}", out.problems);
    out.entities
}

fn setup(calendar: &gateway_core::window::Calendar) -> QuotaSetup<'_> {
    QuotaSetup {
        calendar,
        cores: 2,
        previous: None,
    }
}

fn no_headers(_: &str) -> Option<&'static [u8]> {
    None
}

#[test]
fn routes_backends_and_api_routes() {
    let e = entities(json!({
        "backends": [{"id": "b", "backend": {"targets": [
            {"hostname": "upstream.internal", "port": 8080},
            {"hostname": "127.0.0.1", "port": 80},
            {"hostname": "nowhere.invalid", "port": 81}], "root": "/base/"}}],
        "routes": [
            {"id": "r1", "frontend": {"domains": ["a.local/x"]}, "backend_ref": "b", "keep_host": true, "max_body_bytes": 10},
            {"id": "r2", "frontend": {"domains": ["b.local"]}, "backend": {"mock": {"status": 418, "body": "teapot"}}},
            {"id": "off", "enabled": false, "frontend": {"domains": ["c.local"]}, "backend_ref": "b"},
        ],
        "apis": [
            {"id": "pets", "state": "published",
             "routes": [{"id": "pr", "frontend": {"domains": ["pets.local"]}, "backend": "pb", "flow_ref": "f"}],
             "backends": [{"id": "pb", "backend": {"targets": [{"hostname": "127.0.0.1", "port": 9001}]}}],
             "flows": [{"id": "f", "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls"}]}]},
            {"id": "draft", "state": "staging",
             "routes": [{"id": "dr", "frontend": {"domains": ["draft.local"]}, "backend": "b"}]},
        ],
    }));
    let cal = gateway_core::window::Calendar::utc();
    let s = Snapshot::build(7, &e, &mut Fixed, setup(&cal)).unwrap();
    assert_eq!(s.generation, 7);
    assert_eq!(s.table.len(), 3, "disabled route and staging API left out");
    let m = s
        .table
        .lookup(b"a.local", b"GET", "/x/1", b"", no_headers)
        .unwrap();
    let r = &s.routes[m.slot];
    assert_eq!(&*r.id, "r1");
    assert!(r.keep_host);
    assert_eq!(r.max_body_bytes, Some(10));
    assert_eq!(&*r.root, "/base");
    let b = &s.backends[r.backend];
    assert_eq!(
        b.targets[0],
        ResolvedTarget {
            host_header: "upstream.internal:8080".into(),
            addr: Some("10.0.0.7:8080".parse().unwrap()),
            tls: None,
        }
    );
    assert_eq!(b.targets[1].host_header.as_ref(), "127.0.0.1");
    assert_eq!(
        b.targets[2].addr, None,
        "unresolvable names leave the target unavailable, not the snapshot broken"
    );
    let m = s
        .table
        .lookup(b"b.local", b"GET", "/", b"", no_headers)
        .unwrap();
    let mock = s.backends[s.routes[m.slot].backend].mock.as_ref().unwrap();
    assert_eq!(mock.status, 418);
    assert!(mock.head.starts_with(b"HTTP/1.1 418 "));
    assert_eq!(&*mock.body, b"teapot");
    let m = s
        .table
        .lookup(b"pets.local", b"GET", "/", b"", no_headers)
        .unwrap();
    let pr = &s.routes[m.slot];
    assert_eq!(pr.api.as_deref(), Some("pets"));
    assert!(matches!(
        pr.flow.consumer(),
        gateway_core::flow::Consumer::ApiKey(_)
    ));
    assert!(
        s.table
            .lookup(b"draft.local", b"GET", "/", b"", no_headers)
            .is_none()
    );
}

#[test]
fn missing_backend_is_an_error() {
    let e = Entities {
        routes: vec![
            serde_json::from_value(
                json!({"id": "r", "frontend": {"domains": ["a"]}, "backend_ref": "ghost"}),
            )
            .unwrap(),
        ],
        ..Entities::default()
    };
    let cal = gateway_core::window::Calendar::utc();
    let err = Snapshot::build(1, &e, &mut Fixed, setup(&cal)).unwrap_err();
    assert_eq!(err.to_string(), "route `r`: no backend `ghost`");
}

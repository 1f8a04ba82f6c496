use super::*;

fn key() -> ClusterKey {
    ClusterKey::from_bytes(&[9; 32]).unwrap()
}

fn dir(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tollgate-entitylog-{label}-{}-{}",
        std::process::id(),
        event_id("t")
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn apikey(id: &str, secret: &str) -> Entity {
    let k: ApiKey = serde_json::from_value(json!({
        "clientId": id, "clientSecret": secret, "authorizedEntities": ["route_r"],
        "rotation": {"enabled": true, "nextSecret": format!("{secret}-next")}
    }))
    .unwrap();
    Entity::ApiKey(
        Box::new(k),
        RotationState {
            started_at: Some(5),
            previous: Some(Secret::new(format!("{secret}-old"))),
            previous_until: Some(99),
            quotas_reset_at: Some(42),
        },
    )
}

fn route(id: &str) -> Entity {
    Entity::Route(Box::new(
        serde_json::from_value(json!({"id": id, "frontend": {"domains": ["a.test"]},
            "backend": {"mock": {"body": "x"}}}))
        .unwrap(),
    ))
}

fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in walk(dir) {
        out.extend(std::fs::read(e).unwrap());
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn commit_fold_reopen_and_versions() {
    let d = dir("reopen");
    let options = LogOptions {
        data_dir: d.clone(),
        node_id: "n1".to_owned(),
        snapshot_every: 1000,
    };
    let (mut log, _) = EntityLog::open(&options, key()).unwrap();
    assert!(log.is_empty());
    log.commit(
        vec![
            Change::put(EntityAction::Created, route("r")),
            Change::put(EntityAction::Created, apikey("k", "very-secret-value")),
        ],
        "admin",
        1,
    )
    .unwrap();
    log.commit(vec![Change::delete(EntityKind::Route, "r")], "admin", 2)
        .unwrap();
    let written = log
        .commit(
            vec![Change::put(EntityAction::Created, route("r"))],
            "admin",
            3,
        )
        .unwrap();
    assert_eq!(written[0].1.version, 3, "versions count on across a delete");
    let before = log.state().clone();
    drop(log);
    let (log, report) = EntityLog::open(&options, key()).unwrap();
    assert_eq!(report.replayed, 4);
    assert_eq!(log.state(), &before);
    let (k, v) = log.state().get(EntityKind::ApiKey, "k").unwrap();
    assert_eq!(v, 1);
    let Entity::ApiKey(k, rot) = k else { panic!() };
    assert_eq!(k.client_secret.expose(), "very-secret-value");
    assert_eq!(
        rot.previous.as_ref().unwrap().expose(),
        "very-secret-value-old"
    );
    // No secret in clear on disk.
    let bytes = String::from_utf8_lossy(&all_bytes(&d)).into_owned();
    assert!(
        !bytes.contains("very-secret-value"),
        "a secret reached the journal"
    );
    // Audit view: redacted.
    let events = log.events_after(None, 100).unwrap();
    assert_eq!(events.len(), 4);
    let text = serde_json::to_string(&events[1].1).unwrap();
    assert!(text.contains("\"clientSecret\":\"***\""), "{text}");
    assert!(!text.contains("sealed:"), "{text}");
    let after = log.events_after(Some(2), 100).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].0, 3);
    // The wrong cluster key cannot open the log.
    drop(log);
    let other = ClusterKey::from_bytes(&[1; 32]).unwrap();
    assert!(matches!(
        EntityLog::open(&options, other),
        Err(LogError::Seal { .. })
    ));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn snapshot_bounds_the_replay() {
    let d = dir("snap");
    let options = LogOptions {
        data_dir: d.clone(),
        node_id: "n1".to_owned(),
        snapshot_every: 10,
    };
    let (mut log, _) = EntityLog::open(&options, key()).unwrap();
    for i in 0..25 {
        log.commit(
            vec![Change::put(EntityAction::Created, route(&format!("r{i}")))],
            "admin",
            i,
        )
        .unwrap();
    }
    let before = log.state().clone();
    drop(log);
    let (log, report) = EntityLog::open(&options, key()).unwrap();
    assert_eq!(report.snapshot_offset, 20);
    assert_eq!(report.replayed, 5);
    assert_eq!(log.state(), &before);
    // A damaged snapshot is ignored: the whole log is replayed.
    drop(log);
    std::fs::write(d.join(SNAPSHOT_FILE), b"{not json").unwrap();
    let (log, report) = EntityLog::open(&options, key()).unwrap();
    assert_eq!(report.replayed, 25);
    assert_eq!(log.state(), &before);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn post_rotation_grace_shows_in_the_data_plane_view_until_it_ends() {
    let mut state = State::default();
    let mut k = apikey("k", "s");
    if let Entity::ApiKey(key, _) = &mut k {
        key.rotation.next_secret = None;
    }
    state.set(EntityKind::ApiKey, "k", 1, Some(k));
    let at = |now| state.entities(now).apikeys[0].rotation.next_secret.clone();
    assert_eq!(at(50).unwrap().expose(), "s-old");
    assert!(at(99).is_none());
    assert_eq!(state.next_expiry(50), Some(99));
    assert_eq!(state.next_expiry(99), None);
}

fn certificate(id: &str, key_pem: &str) -> Entity {
    Entity::Certificate(Box::new(
        serde_json::from_value(json!({"id": id, "chain": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
            "privateKey": key_pem}))
        .unwrap(),
    ))
}

#[test]
fn certificate_private_keys_are_sealed_bound_and_redacted() {
    let d = dir("certs");
    let options = LogOptions {
        data_dir: d.clone(),
        node_id: "n1".to_owned(),
        snapshot_every: 1000,
    };
    let pem = "-----BEGIN PRIVATE KEY-----\nVGhpcy1Jcy1BLVByaXZhdGUtS2V5LUJvZHk=\n-----END PRIVATE KEY-----\n";
    let body = "VGhpcy1Jcy1BLVByaXZhdGUtS2V5LUJvZHk";
    let (mut log, _) = EntityLog::open(&options, key()).unwrap();
    let written = log
        .commit(
            vec![
                Change::put(EntityAction::Created, certificate("c1", pem)),
                Change::put(EntityAction::Created, certificate("ca", "")),
            ],
            "admin",
            1,
        )
        .unwrap();
    // The event as written carries the key sealed, bound to its place.
    let sealed = written[0].1.entity["privateKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sealed.starts_with(SEALED_PREFIX), "{sealed}");
    assert_eq!(
        key().open(&sealed, "certificate/c1/privateKey").unwrap(),
        pem
    );
    assert!(key().open(&sealed, "certificate/c2/privateKey").is_err());
    assert_eq!(
        written[1].1.entity["privateKey"], "",
        "no key, nothing sealed"
    );
    log.write_snapshot().unwrap();
    let before = log.state().clone();
    drop(log);
    let (log, _) = EntityLog::open(&options, key()).unwrap();
    assert_eq!(log.state(), &before);
    let Some((Entity::Certificate(c), 1)) = log.state().get(EntityKind::Certificate, "c1") else {
        panic!("c1 not folded")
    };
    assert_eq!(c.private_key.expose(), pem);
    assert_eq!(log.state().entities(0).certificates.len(), 2);
    // Nowhere in clear: journal, fold snapshot.
    let bytes = String::from_utf8_lossy(&all_bytes(&d)).into_owned();
    assert!(!bytes.contains(body), "a private key reached the disk");
    // Views: the audit view and the admin view show `***`; an empty key stays empty.
    let events = log.events_after(None, 10).unwrap();
    assert_eq!(events[0].1.entity["privateKey"], "***");
    assert_eq!(events[1].1.entity["privateKey"], "");
    let (e, _) = log.state().get(EntityKind::Certificate, "c1").unwrap();
    assert_eq!(e.to_view_json()["privateKey"], "***");
    assert_eq!(e.to_json()["privateKey"], pem);
    // A sealed key moved to another certificate does not open.
    let mut moved = written[0].1.entity.clone();
    moved["id"] = json!("c2");
    let e = Entity::from_log_json(EntityKind::Certificate, moved, &key()).unwrap_err();
    assert_eq!(e.kind, crate::error::GatewayErrorKind::Sealed, "{e}");
    assert_eq!(
        e.to_string(),
        "privateKey: cannot open a sealed value: wrong cluster key or tampered bytes"
    );
    // A value that is not a sealed value's encoding, and JSON of another shape, do not decode.
    let mut garbled = written[0].1.entity.clone();
    garbled["privateKey"] = json!("sealed:v1:!!");
    let e = Entity::from_log_json(EntityKind::Certificate, garbled, &key()).unwrap_err();
    assert_eq!(e.kind, crate::error::GatewayErrorKind::Decode, "{e}");
    let e = Entity::from_log_json(EntityKind::Route, json!({"id": 3}), &key()).unwrap_err();
    assert_eq!(e.kind, crate::error::GatewayErrorKind::Decode, "{e}");
    // A private key left in clear in some JSON is redacted too.
    let mut stray = json!({"certs": [{"privateKey": pem, "password": "pw", "name": "x"}]});
    redact(&mut stray);
    assert_eq!(
        stray,
        json!({"certs": [{"privateKey": "***", "password": "***", "name": "x"}]})
    );
    std::fs::remove_dir_all(&d).unwrap();
}

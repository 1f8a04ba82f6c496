use serde_json::json;

use super::*;

fn key(v: serde_json::Value) -> ApiKey {
    serde_json::from_value(v).unwrap()
}

#[test]
fn apikey_defaults_follow_otoroshi() {
    let k = key(json!({"clientId": "id", "clientSecret": "s"}));
    assert!(k.enabled);
    assert!(!k.read_only);
    assert!(!k.allow_client_id_only);
    assert!(!k.constrained_services_only);
    assert_eq!(k.throttling_quota, DEFAULT_QUOTA);
    assert_eq!(k.daily_quota, DEFAULT_QUOTA);
    assert_eq!(k.monthly_quota, DEFAULT_QUOTA);
    assert_eq!(k.rotation.rotation_every, 744);
    assert_eq!(k.rotation.grace_period, 168);
    assert!(
        k.restrictions.allow_last,
        "Otoroshi's coded default is allowLast=true"
    );
    assert_eq!(k.valid_until, None);
}

#[test]
fn apikey_every_seed_field_round_trips() {
    let v = json!({
        "clientId": "c1", "clientSecret": "s1", "clientName": "n", "description": "d",
        "validUntil": 1_800_000_000_000i64, "enabled": false, "readOnly": true,
        "allowClientIdOnly": true, "constrainedServicesOnly": true,
        "authorizedEntities": ["route_r1", "api_a1", "group_g1"],
        "tags": ["t"], "metadata": {"plan": "gold"},
        "rotation": {"enabled": true, "rotationEvery": 24, "gracePeriod": 2, "nextSecret": "s2"},
        "restrictions": {"enabled": true, "allowLast": false,
            "allowed": [{"method": "GET", "path": "/a/.*"}],
            "forbidden": [{"method": "*", "path": "/admin"}],
            "notFound": [{"method": "POST", "path": "/nf"}]},
        "throttlingQuota": 10, "dailyQuota": 1000, "monthlyQuota": 20000
    });
    let k = key(v.clone());
    assert_eq!(k.client_secret.expose(), "s1");
    assert_eq!(k.rotation.next_secret.as_ref().unwrap().expose(), "s2");
    assert_eq!(k.restrictions.not_found[0].method, "POST");
    assert_eq!(k.valid_until, Some(1_800_000_000_000));
    let back = serde_json::to_value(&k).unwrap();
    assert_eq!(back, v);
}

#[test]
fn secrets_never_show_in_debug() {
    let k = key(json!({"clientId": "id", "clientSecret": "hunter2-secret",
        "rotation": {"nextSecret": "next-hunter3"}}));
    let dbg = format!("{k:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(!dbg.contains("hunter3"), "{dbg}");
    assert_eq!(k.client_secret.to_string(), "***");
}

#[test]
fn quota_errors_say_integer_at_least_zero() {
    for (bad, got) in [
        (json!(-1), "-1"),
        (json!(1.5), "1.5"),
        (json!("10"), "a string"),
    ] {
        let err = serde_json::from_value::<ApiKey>(
            json!({"clientId": "i", "clientSecret": "s", "dailyQuota": bad}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("expected an integer ≥ 0"), "{err}");
        assert!(err.contains(got), "{err}");
    }
    let k = key(json!({"clientId": "i", "clientSecret": "s", "dailyQuota": 5.0}));
    assert_eq!(k.daily_quota, 5);
}

#[test]
fn legacy_authorized_group_and_authorizations_are_merged() {
    let mut k = key(
        json!({"clientId": "i", "clientSecret": "s", "authorizedGroup": "default",
        "authorizedEntities": ["route_x"],
        "authorizations": [{"kind": "api", "id": "a1"}, {"kind": "route", "id": "x"}]}),
    );
    k.normalise_authorizations();
    assert_eq!(
        k.authorized_entities,
        vec!["route_x", "group_default", "api_a1"]
    );
    let out = serde_json::to_value(&k).unwrap();
    assert!(out.get("authorizedGroup").is_none());
    assert!(out.get("authorizations").is_none());
}

#[test]
fn route_defaults_and_domain_alias() {
    let r: Route = serde_json::from_value(json!({
        "id": "r", "frontend": {"domain": "a.com/x"}, "backend_ref": "b"
    }))
    .unwrap();
    assert_eq!(r.frontend.domains, vec!["a.com/x"]);
    assert!(r.frontend.strip_path);
    assert!(!r.frontend.exact);
    assert!(r.enabled);
    assert_eq!(r.groups, vec!["default"]);
    assert!(!r.keep_host);
}

#[test]
fn plugin_kinds_are_recognised_with_or_without_prefix() {
    assert_eq!(
        PluginKind::from_id("cp:otoroshi.next.plugins.ApikeyCalls"),
        Some(PluginKind::ApikeyCalls)
    );
    assert_eq!(
        PluginKind::from_id("otoroshi.next.plugins.OverrideHost"),
        Some(PluginKind::OverrideHost)
    );
    assert_eq!(
        PluginKind::from_id("ReadOnlyCalls"),
        Some(PluginKind::ReadOnlyCalls)
    );
    assert_eq!(
        PluginKind::from_id("cp:otoroshi.next.tunnel.TunnelPlugin"),
        None
    );
    assert_eq!(PluginKind::from_id(""), None);
}

#[test]
fn route_has_plugin_ignores_disabled_ones() {
    let r: Route = serde_json::from_value(json!({
        "id": "r", "frontend": {"domains": ["a"]}, "backend_ref": "b",
        "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "enabled": false},
                    {"plugin": "cp:otoroshi.next.plugins.ReadOnlyCalls"}]
    }))
    .unwrap();
    assert!(!r.has_plugin(PluginKind::ApikeyCalls));
    assert!(r.has_plugin(PluginKind::ReadOnlyCalls));
}

#[test]
fn load_balancing_variants() {
    let lb: LoadBalancing = serde_json::from_value(json!({"type": "HeaderHash"})).unwrap();
    assert_eq!(
        lb,
        LoadBalancing::HeaderHash {
            header_name: "session-id".into()
        }
    );
    let lb: LoadBalancing =
        serde_json::from_value(json!({"type": "HeaderHash", "header_name": "x-user"})).unwrap();
    assert_eq!(
        lb,
        LoadBalancing::HeaderHash {
            header_name: "x-user".into()
        }
    );
    let lb: LoadBalancing = serde_json::from_value(json!({"type": "BestResponseTime"})).unwrap();
    assert_eq!(lb, LoadBalancing::Unsupported);
    let lb: LoadBalancing = serde_json::from_value(json!({"type": "LeastConnections"})).unwrap();
    assert_eq!(lb, LoadBalancing::LeastConnections);
}

#[test]
fn client_config_defaults_match_otoroshi() {
    let c = ClientConfig::default();
    assert_eq!(
        (
            c.retries,
            c.max_errors,
            c.retry_initial_delay,
            c.backoff_factor
        ),
        (1, 20, 50, 2)
    );
    assert_eq!(
        (c.connection_timeout, c.idle_timeout, c.call_timeout),
        (10_000, 60_000, 30_000)
    );
    assert_eq!(
        (
            c.call_and_stream_timeout,
            c.global_timeout,
            c.sample_interval
        ),
        (120_000, 30_000, 2_000)
    );
    let partial: ClientConfig = serde_json::from_value(json!({"retries": 3})).unwrap();
    assert_eq!(partial.retries, 3);
    assert_eq!(partial.max_errors, 20);
}

#[test]
fn api_entity_with_consumers_and_subscriptions() {
    let api: Api = serde_json::from_value(json!({
        "id": "api1", "name": "Pets", "state": "published",
        "routes": [{"id": "pr", "frontend": {"domains": ["pets.local"]}, "backend": "be", "flow_ref": "f"}],
        "backends": [{"id": "be", "backend": {"targets": [{"hostname": "127.0.0.1", "port": 9}]}}],
        "flows": [{"id": "f", "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls"}]}],
        "plans": [{"id": "free", "access_mode_configuration_type": "apikey", "status": "deprecated",
                   "dailyQuota": 100},
                  {"id": "m2m", "kind": "oauth2-local"},
                  {"id": "certs", "kind": "mtls"}, {"id": "tokens", "kind": "jwt"}, {"id": "open"}],
        "subscriptions": [{"id": "s1", "plan_ref": "free", "status": "pending", "apikeys": ["k1"]}]
    }))
    .unwrap();
    assert_eq!(api.state, ApiState::Published);
    assert!(api.state.serves_traffic());
    let kinds: Vec<_> = api.consumers.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ConsumerKind::Apikey,
            ConsumerKind::Oauth,
            ConsumerKind::Mtls,
            ConsumerKind::Jwt,
            ConsumerKind::Keyless
        ]
    );
    assert_eq!(api.consumers[0].status, ConsumerStatus::Deprecated);
    assert_eq!(api.consumers[0].daily_quota, Some(100));
    assert_eq!(api.subscriptions[0].consumer_ref, "free");
    assert_eq!(api.subscriptions[0].status, SubscriptionStatus::Pending);
}

#[test]
fn api_states_and_removed_alias() {
    for (s, want, serves) in [
        ("staging", ApiState::Staging, false),
        ("published", ApiState::Published, true),
        ("deprecated", ApiState::Deprecated, true),
        ("closed", ApiState::Closed, false),
        ("removed", ApiState::Closed, false),
    ] {
        let st: ApiState = serde_json::from_value(json!(s)).unwrap();
        assert_eq!(st, want);
        assert_eq!(st.serves_traffic(), serves);
    }
    assert!(serde_json::from_value::<ApiState>(json!("live")).is_err());
}

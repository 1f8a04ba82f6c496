//! The consumer phase of an API against an oracle: for any sequence of API, consumer and
//! subscription state changes (folded with the lifecycle rules the admin API applies), a call
//! is admitted iff the folded state says its subscription is enabled under a published or
//! deprecated consumer of a serving API (and an anonymous call iff a keyless consumer serves).

use std::sync::Arc;

use gateway_model::entity::{
    Api, ApiKey, ApiState, ConsumerKind, ConsumerStatus, Route, SubscriptionStatus,
};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::flow::{AdmitAll, Flow, FlowScratch, RequestView};

const NOW: i64 = 1_795_000_000_000;

/// Consumers: two apikey consumers and one keyless; subscriptions 0 and 1 to consumer 0, 2 to
/// consumer 1.
const CONSUMERS: [(&str, ConsumerKind); 3] = [
    ("gold", ConsumerKind::Apikey),
    ("silver", ConsumerKind::Apikey),
    ("free", ConsumerKind::Keyless),
];
const SUBSCRIPTIONS: [(&str, usize); 3] = [("s0", 0), ("s1", 0), ("s2", 1)];

#[derive(Debug, Clone)]
enum Change {
    Api(ApiState),
    Consumer(usize, ConsumerStatus),
    Subscription(usize, SubscriptionStatus),
}

fn api_state() -> impl Strategy<Value = ApiState> {
    prop_oneof![
        Just(ApiState::Staging),
        Just(ApiState::Published),
        Just(ApiState::Deprecated),
        Just(ApiState::Closed),
    ]
}

fn consumer_status() -> impl Strategy<Value = ConsumerStatus> {
    prop_oneof![
        Just(ConsumerStatus::Staging),
        Just(ConsumerStatus::Published),
        Just(ConsumerStatus::Deprecated),
        Just(ConsumerStatus::Closed),
    ]
}

fn subscription_status() -> impl Strategy<Value = SubscriptionStatus> {
    prop_oneof![
        Just(SubscriptionStatus::Pending),
        Just(SubscriptionStatus::Enabled),
        Just(SubscriptionStatus::Disabled),
        Just(SubscriptionStatus::Closed),
    ]
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        api_state().prop_map(Change::Api),
        (0..CONSUMERS.len(), consumer_status()).prop_map(|(c, s)| Change::Consumer(c, s)),
        (0..SUBSCRIPTIONS.len(), subscription_status())
            .prop_map(|(i, s)| Change::Subscription(i, s)),
    ]
}

/// The folded state: what the admin API keeps after each accepted change.
#[derive(Debug, Clone)]
struct Folded {
    api: ApiState,
    consumers: [ConsumerStatus; 3],
    subscriptions: [SubscriptionStatus; 3],
}

impl Folded {
    fn start() -> Self {
        Self {
            api: ApiState::Staging,
            consumers: [ConsumerStatus::Published; 3],
            subscriptions: [SubscriptionStatus::Enabled; 3],
        }
    }

    /// Applies a change when its lifecycle allows it (else it is refused and nothing changes),
    /// with the cascade: a closed consumer closes its subscriptions.
    fn apply(&mut self, change: &Change) {
        match *change {
            Change::Api(s) => {
                if self.api.can_become(s) {
                    self.api = s;
                }
            }
            Change::Consumer(c, s) => {
                if self.consumers[c].can_become(s) {
                    self.consumers[c] = s;
                    if s == ConsumerStatus::Closed {
                        for (i, (_, owner)) in SUBSCRIPTIONS.iter().enumerate() {
                            if *owner == c {
                                self.subscriptions[i] = SubscriptionStatus::Closed;
                            }
                        }
                    }
                }
            }
            Change::Subscription(i, s) => {
                if self.subscriptions[i].can_become(s) {
                    self.subscriptions[i] = s;
                }
            }
        }
    }

    /// The oracle for a call with subscription `i`'s key.
    fn admits(&self, i: usize) -> bool {
        let consumer = SUBSCRIPTIONS[i].1;
        self.api.serves_traffic()
            && matches!(
                self.consumers[consumer],
                ConsumerStatus::Published | ConsumerStatus::Deprecated
            )
            && self.subscriptions[i] == SubscriptionStatus::Enabled
    }

    /// The oracle for an anonymous call.
    fn admits_anonymous(&self) -> bool {
        self.api.serves_traffic()
            && matches!(
                self.consumers[2],
                ConsumerStatus::Published | ConsumerStatus::Deprecated
            )
    }

    /// The entities as the admin API would hold them: the API and the issued keys (a closed
    /// subscription's key disabled).
    fn entities(&self) -> (Api, Vec<ApiKey>) {
        let consumers: Vec<_> = CONSUMERS
            .iter()
            .zip(self.consumers)
            .map(|((id, kind), status)| {
                json!({"id": id, "kind": kind.as_str(), "status": status.as_str()})
            })
            .collect();
        let subscriptions: Vec<_> = SUBSCRIPTIONS
            .iter()
            .zip(self.subscriptions)
            .map(|((id, c), status)| {
                json!({"id": id, "consumer_ref": CONSUMERS[*c].0, "status": status.as_str(),
                       "apikeys": [format!("key-{id}")]})
            })
            .collect();
        let api: Api = serde_json::from_value(json!({
            "id": "shop", "state": self.api.as_str(),
            "routes": [{"id": "shop-r", "frontend": {"domains": ["shop.local"]}, "backend": "b"}],
            "consumers": consumers, "subscriptions": subscriptions
        }))
        .unwrap();
        let keys = SUBSCRIPTIONS
            .iter()
            .zip(self.subscriptions)
            .map(|((id, _), status)| {
                serde_json::from_value(json!({
                    "clientId": format!("key-{id}"), "clientSecret": format!("secret-{id}"),
                    "authorizedEntities": ["api_shop"],
                    "enabled": status != SubscriptionStatus::Closed,
                }))
                .unwrap()
            })
            .collect();
        (api, keys)
    }
}

/// Whether a call to the API's route is admitted in the snapshot built from `folded` (no
/// route at all when the API does not serve, as the snapshot compiles none).
fn call(folded: &Folded, credential: Option<usize>) -> bool {
    let (api, keys) = folded.entities();
    if !api.state.serves_traffic() {
        return false;
    }
    let store =
        KeyStore::build_with(&keys, &Directory::holders(std::slice::from_ref(&api))).unwrap();
    let directory = Arc::new(Directory::build(std::slice::from_ref(&api), &store));
    let route: Route = serde_json::from_value(json!({
        "id": "shop-r", "frontend": {"domains": ["shop.local"]}, "backend_ref": "b",
        "metadata": {"Otoroshi-Api-Ref": "shop"}, "groups": ["virtual_group_for_shop"]
    }))
    .unwrap();
    let consumers = ApiConsumers::build(&directory, &api, &route.id, &route.groups).unwrap();
    let flow = Flow::build(&route).unwrap().with_api_consumers(consumers);
    let id;
    let secret;
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    if let Some(i) = credential {
        id = format!("key-{}", SUBSCRIPTIONS[i].0);
        secret = format!("secret-{}", SUBSCRIPTIONS[i].0);
        headers.push(("Otoroshi-Client-Id", id.as_bytes()));
        headers.push(("Otoroshi-Client-Secret", secret.as_bytes()));
    }
    let req = RequestView {
        method: "GET",
        host: "shop.local",
        path: "/",
        headers: headers.as_slice(),
        client_cert: None,
    };
    let mut scratch = FlowScratch::new();
    let admitted = flow.on_request(&req, &store, &mut AdmitAll, NOW, &mut scratch);
    if let Ok(a) = &admitted {
        // The identity is the one the oracle names.
        let identity = a.identity.unwrap();
        match credential {
            Some(i) => {
                assert_eq!(identity.subscription, Some(u32::try_from(i).unwrap()));
                assert_eq!(
                    a.key.unwrap().client_id(),
                    format!("key-{}", SUBSCRIPTIONS[i].0)
                );
            }
            None => {
                assert_eq!(identity.subscription, None);
                assert!(a.key.unwrap().is_holder());
            }
        }
    }
    admitted.is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn admitted_iff_enabled_under_a_serving_consumer_of_a_serving_api(
        changes in proptest::collection::vec(change(), 0..24)
    ) {
        let mut folded = Folded::start();
        // Publish first half of the time, so that serving states are reached often.
        folded.apply(&Change::Api(ApiState::Published));
        for change in &changes {
            folded.apply(change);
            for i in 0..SUBSCRIPTIONS.len() {
                prop_assert_eq!(call(&folded, Some(i)), folded.admits(i), "{:?} {:?}", i, folded);
            }
            prop_assert_eq!(call(&folded, None), folded.admits_anonymous(), "{:?}", folded);
        }
    }
}

#[test]
fn refusals_name_why() {
    let mut folded = Folded::start();
    folded.apply(&Change::Api(ApiState::Published));
    let refusal = |folded: &Folded, i: usize| {
        let (api, keys) = folded.entities();
        let store =
            KeyStore::build_with(&keys, &Directory::holders(std::slice::from_ref(&api))).unwrap();
        let directory = Arc::new(Directory::build(std::slice::from_ref(&api), &store));
        let groups = vec!["virtual_group_for_shop".to_owned()];
        let consumers = ApiConsumers::build(&directory, &api, "shop-r", &groups).unwrap();
        let route: Route = serde_json::from_value(json!({
            "id": "shop-r", "frontend": {"domains": ["shop.local"]}, "backend_ref": "b",
            "metadata": {"Otoroshi-Api-Ref": "shop"}
        }))
        .unwrap();
        let flow = Flow::build(&route).unwrap().with_api_consumers(consumers);
        let id = format!("key-s{i}");
        let secret = format!("secret-s{i}");
        let headers: [(&str, &[u8]); 2] = [
            ("Otoroshi-Client-Id", id.as_bytes()),
            ("Otoroshi-Client-Secret", secret.as_bytes()),
        ];
        let req = RequestView {
            method: "GET",
            host: "shop.local",
            path: "/",
            headers: &headers,
            client_cert: None,
        };
        let mut scratch = FlowScratch::new();
        flow.on_request(&req, &store, &mut AdmitAll, NOW, &mut scratch)
            .err()
            .map(|r| r.reply().code)
    };
    assert_eq!(refusal(&folded, 0), None);
    folded.apply(&Change::Subscription(0, SubscriptionStatus::Pending));
    assert_eq!(refusal(&folded, 0), Some("subscription_pending"));
    folded.apply(&Change::Subscription(0, SubscriptionStatus::Disabled));
    assert_eq!(refusal(&folded, 0), Some("subscription_disabled"));
    folded.apply(&Change::Subscription(0, SubscriptionStatus::Closed));
    assert_eq!(refusal(&folded, 0), Some("subscription_closed"));
    folded.apply(&Change::Consumer(1, ConsumerStatus::Staging));
    assert_eq!(refusal(&folded, 2), Some("unauthorized"));
    folded.apply(&Change::Consumer(2, ConsumerStatus::Closed));
    // No keyless consumer: an anonymous call is not identified.
    assert!(!call(&folded, None));
}

// Consumers of every kind: the directory's indexes and the jwt, mtls and oauth paths of the
// consumer phase (the oracle above only calls with API keys).

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &str = "fedcba9876543210fedcba9876543210";
const THIRD_SECRET: &str = "00112233445566778899aabbccddeeff";
/// A certificate fingerprint as an admin may write it (colons, upper case).
const FINGERPRINT: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

fn fingerprint() -> String {
    FINGERPRINT.replace(':', "").to_ascii_lowercase()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An HS256 token for `sub`, valid for ten minutes.
fn hs256(secret: &str, sub: &str) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({"sub": sub, "exp": NOW / 1000 + 600});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let sig = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(sig.as_ref()))
}

fn jwt_consumer(id: &str, status: &str, secret: &str) -> serde_json::Value {
    json!({"id": id, "kind": "jwt", "status": status,
           "config": {"verifier": {"alg": "HS256", "secret": secret}}})
}

fn api_json(id: &str, consumers: serde_json::Value, subscriptions: serde_json::Value) -> Api {
    serde_json::from_value(json!({
        "id": id, "state": "published",
        "routes": [{"id": format!("{id}-r"), "frontend": {"domains": ["shop.local"]},
                    "backend": "b"}],
        "consumers": consumers, "subscriptions": subscriptions
    }))
    .unwrap()
}

/// A snapshot of `apis`, with the issued `keys` and the holders the APIs need.
struct World {
    apis: Vec<Api>,
    store: KeyStore,
    directory: Arc<Directory>,
}

fn world(apis: Vec<Api>, keys: &[&str], token_keys: Option<TokenKeys>) -> World {
    let keys: Vec<ApiKey> = keys
        .iter()
        .map(|id| {
            serde_json::from_value(json!({
                "clientId": id, "clientSecret": format!("secret-{id}"),
                "authorizedEntities": apis.iter().map(|a| format!("api_{}", a.id)).collect::<Vec<_>>(),
            }))
            .unwrap()
        })
        .collect();
    let store = KeyStore::build_with(&keys, &Directory::holders(&apis)).unwrap();
    let mut directory = Directory::build(&apis, &store);
    if let Some(t) = token_keys {
        directory = directory.with_token_keys(t);
    }
    World {
        apis,
        store,
        directory: Arc::new(directory),
    }
}

fn client_cert(subject: &str, issuer: &str, sha256: &str) -> crate::flow::ClientCert {
    crate::flow::ClientCert {
        subject: subject.to_owned(),
        issuer: issuer.to_owned(),
        serial: "1".to_owned(),
        sans: vec![],
        sha256: sha256.to_owned(),
        chain: vec![],
        pem_escaped: String::new(),
        dns_json: "[]".to_owned(),
        chain_json: "[]".to_owned(),
    }
}

/// Who a call was admitted as: (consumer id, subscription id, quota holder's client id).
type Who = (Option<String>, Option<String>, Option<String>);

/// A call to the route of `w.apis[api]`, with a route plugin when `plugins` is set.
fn call_as(
    w: &World,
    api: usize,
    plugins: Option<serde_json::Value>,
    headers: &[(&str, &[u8])],
    cert: Option<&crate::flow::ClientCert>,
    scratch: &mut FlowScratch,
) -> Result<Who, &'static str> {
    let api = &w.apis[api];
    let route: Route = serde_json::from_value(json!({
        "id": format!("{}-r", api.id), "frontend": {"domains": ["shop.local"]},
        "backend_ref": "b", "metadata": {"Otoroshi-Api-Ref": api.id},
        "plugins": plugins.unwrap_or(json!([])),
    }))
    .unwrap();
    let groups = vec![format!("virtual_group_for_{}", api.id)];
    let consumers = ApiConsumers::build(&w.directory, api, &route.id, &groups).unwrap();
    let flow = Flow::build(&route).unwrap().with_api_consumers(consumers);
    let req = RequestView {
        method: "GET",
        host: "shop.local",
        path: "/",
        headers,
        client_cert: cert,
    };
    let admitted = flow
        .on_request(&req, &w.store, &mut AdmitAll, NOW, scratch)
        .map_err(|r| r.reply().code)?;
    let (consumer, subscription) = admitted
        .identity
        .map_or((None, None), |i| w.directory.ids(i));
    Ok((
        consumer.map(str::to_owned),
        subscription.map(str::to_owned),
        admitted.key.map(|k| k.client_id().to_owned()),
    ))
}

fn who(consumer: &str, subscription: Option<&str>, key: &str) -> Result<Who, &'static str> {
    Ok((
        Some(consumer.to_owned()),
        subscription.map(str::to_owned),
        Some(key.to_owned()),
    ))
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

#[test]
fn subscription_refusals_have_their_own_code_text_and_reason() {
    let all = [
        SubscriptionRejection::NotIdentified,
        SubscriptionRejection::Pending,
        SubscriptionRejection::Disabled,
        SubscriptionRejection::Closed,
    ];
    let described: Vec<_> = all
        .iter()
        .map(|r| (r.code(), r.description(), r.reason()))
        .collect();
    assert_eq!(
        described,
        [
            (
                "unauthorized",
                "no subscription of this API identified the caller",
                "no_subscription"
            ),
            (
                "subscription_pending",
                "the subscription is pending",
                "subscription_pending"
            ),
            (
                "subscription_disabled",
                "the subscription is disabled",
                "subscription_disabled"
            ),
            (
                "subscription_closed",
                "the subscription is closed",
                "subscription_closed"
            ),
        ]
    );
}

/// Two APIs of one snapshot; the second one's consumers are of every kind that names its
/// subscriptions. Holders are made for serving keyless consumers of serving APIs and for the
/// subscriptions of jwt and mtls consumers; every index the directory answers is the entity's.
#[test]
fn the_directory_indexes_every_consumer_and_subscription_of_every_api() {
    let a = api_json(
        "a",
        json!([
            {"id": "free", "kind": "keyless", "dailyQuota": 5},
            {"id": "old", "kind": "keyless", "status": "closed"},
            {"id": "gold", "kind": "apikey"},
        ]),
        json!([{"id": "s1", "consumer_ref": "gold", "apikeys": ["key-1"]}]),
    );
    let b = api_json(
        "b",
        json!([
            {"id": "idp", "kind": "jwt", "throttlingQuota": 7,
             "config": {"verifier": {"alg": "HS256", "secret": SECRET}}},
            {"id": "certs", "kind": "mtls", "status": "deprecated"},
            {"id": "auth", "kind": "oauth", "config": {"token_ttl_s": 900}},
            {"id": "anyone", "kind": "keyless"},
        ]),
        json!([
            {"id": "sj", "consumer_ref": "idp", "subject": "alice", "status": "pending"},
            {"id": "sj2", "consumer_ref": "idp"},
            {"id": "sm", "consumer_ref": "certs", "fingerprint": FINGERPRINT},
            {"id": "so", "consumer_ref": "auth", "apikeys": ["client-o"]},
        ]),
    );
    let mut staging = api_json("c", json!([{"id": "x", "kind": "keyless"}]), json!([]));
    staging.state = ApiState::Staging;
    let mut disabled = api_json("d", json!([{"id": "y", "kind": "keyless"}]), json!([]));
    disabled.enabled = false;
    let apis = vec![a, b, staging, disabled];

    let holders: Vec<_> = Directory::holders(&apis)
        .into_iter()
        .map(|h| (h.id, h.quotas))
        .collect();
    let unlimited = gateway_model::entity::UNLIMITED_QUOTA;
    let default = gateway_model::entity::DEFAULT_QUOTA;
    let q = |throttling, daily, monthly| Quotas {
        throttling,
        daily,
        monthly,
    };
    assert_eq!(
        holders,
        [
            ("keyless:a:free".to_owned(), q(unlimited, 5, unlimited)),
            (
                "keyless:b:anyone".to_owned(),
                q(unlimited, unlimited, unlimited)
            ),
            ("sub:b:sj".to_owned(), q(7, default, default)),
            ("sub:b:sj2".to_owned(), q(7, default, default)),
            ("sub:b:sm".to_owned(), q(default, default, default)),
        ]
    );

    let w = world(apis, &["key-1", "client-o"], None);
    let d = &*w.directory;
    assert_eq!(
        (d.api_index("a"), d.api_index("b"), d.api_index("d")),
        (Some(0), Some(1), Some(3))
    );
    assert_eq!(d.api_index("zz"), None);
    let consumer = |id: &str| {
        let (index, entry) = d.consumer_by_id(id).unwrap();
        (
            index,
            entry.id().to_owned(),
            entry.kind(),
            entry.status(),
            d.api_of(entry),
        )
    };
    assert_eq!(
        consumer("free"),
        (
            0,
            "free".into(),
            ConsumerKind::Keyless,
            ConsumerStatus::Published,
            0
        )
    );
    assert_eq!(
        consumer("gold"),
        (
            2,
            "gold".into(),
            ConsumerKind::Apikey,
            ConsumerStatus::Published,
            0
        )
    );
    assert_eq!(
        consumer("certs"),
        (
            4,
            "certs".into(),
            ConsumerKind::Mtls,
            ConsumerStatus::Deprecated,
            1
        )
    );
    assert_eq!(
        consumer("y"),
        (
            8,
            "y".into(),
            ConsumerKind::Keyless,
            ConsumerStatus::Published,
            3
        )
    );
    assert!(d.consumer_by_id("nobody").is_none());

    let (_, idp) = d.consumer_by_id("idp").unwrap();
    assert_eq!(idp.subscription_named("alice"), Some(1));
    assert_eq!(idp.subscription_named("sj2"), Some(2), "named by its id");
    assert_eq!(idp.subscription_named("sj"), None, "named by its subject");
    let (_, certs) = d.consumer_by_id("certs").unwrap();
    assert_eq!(certs.subscription_named(&fingerprint()), Some(3));
    assert_eq!(certs.subscription_named(FINGERPRINT), None);
    let (_, auth) = d.consumer_by_id("auth").unwrap();
    assert_eq!(auth.subscription_named("so"), Some(4));
    assert_eq!(auth.token_ttl_s(), 900);

    let subscription = |i: u32| {
        let s = d.subscription(i).unwrap();
        (s.id().to_owned(), s.consumer(), s.status())
    };
    assert_eq!(
        subscription(0),
        ("s1".into(), 2, SubscriptionStatus::Enabled)
    );
    assert_eq!(
        subscription(1),
        ("sj".into(), 3, SubscriptionStatus::Pending)
    );
    assert_eq!(
        subscription(3),
        ("sm".into(), 4, SubscriptionStatus::Enabled)
    );
    assert!(d.subscription(5).is_none());
    let key = w.store.get("key-1").unwrap();
    assert_eq!(
        d.subscription_of(key.index()).map(|(i, s)| (i, s.id())),
        Some((0, "s1"))
    );
    // An oauth subscription's client id finds it too (the token endpoint looks it up so); the
    // consumer phase refuses that client id as an API key
    // (`an_access_token_names_its_oauth_subscription_and_counts_on_its_client_id`).
    let client = w.store.get("client-o").unwrap();
    assert_eq!(
        d.subscription_of(client.index()).map(|(i, s)| (i, s.id())),
        Some((4, "so"))
    );
    assert_eq!(
        d.ids(Identity {
            consumer: 3,
            subscription: Some(2)
        }),
        (Some("idp"), Some("sj2"))
    );
    assert_eq!(
        d.ids(Identity {
            consumer: 0,
            subscription: None
        }),
        (Some("free"), None)
    );

    // Each build is a generation of its own (the token caches forget older ones).
    let again = Directory::build(&w.apis, &w.store);
    assert_ne!(again.generation(), d.generation());
}

/// A jwt consumer names the subscription by the token's subject; when every consumer refuses
/// the token, the refusal of the one that got furthest is the answer.
/// The jwt and mtls subscriptions of a staging or disabled API get no quota holder; those of a
/// serving API do.
#[test]
fn subscriptions_of_an_api_serving_no_traffic_have_no_quota_holder() {
    let consumers = json!([
        jwt_consumer("idp", "published", SECRET),
        {"id": "certs", "kind": "mtls"},
    ]);
    let subscriptions = json!([
        {"id": "sj", "consumer_ref": "idp", "subject": "alice"},
        {"id": "sm", "consumer_ref": "certs", "fingerprint": FINGERPRINT},
    ]);
    let serving = api_json("a", consumers.clone(), subscriptions.clone());
    let mut staging = api_json("b", consumers.clone(), subscriptions.clone());
    staging.state = ApiState::Staging;
    let mut disabled = api_json("c", consumers, subscriptions);
    disabled.enabled = false;
    let ids: Vec<String> = Directory::holders(&[serving, staging, disabled])
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(ids, ["sub:a:sj", "sub:a:sm"]);
}

#[test]
fn a_token_names_its_subscription_and_the_furthest_refusal_answers() {
    let shop = api_json(
        "shop",
        json!([
            jwt_consumer("idp", "published", SECRET),
            jwt_consumer("idp2", "published", OTHER_SECRET),
        ]),
        json!([
            {"id": "sa", "consumer_ref": "idp", "subject": "alice"},
            {"id": "sb", "consumer_ref": "idp", "status": "pending"},
            {"id": "sc", "consumer_ref": "idp2", "subject": "carol"},
            {"id": "sd", "consumer_ref": "idp", "subject": "dave", "status": "disabled"},
            {"id": "se", "consumer_ref": "idp", "subject": "eve", "status": "closed"},
        ]),
    );
    let w = world(vec![shop], &[], None);
    let mut scratch = FlowScratch::new();
    let mut token = |secret: &str, sub: &str| {
        let auth = bearer(&hs256(secret, sub));
        call_as(
            &w,
            0,
            None,
            &[("Authorization", auth.as_slice())],
            None,
            &mut scratch,
        )
    };
    assert_eq!(
        token(SECRET, "alice"),
        who("idp", Some("sa"), "sub:shop:sa")
    );
    // The same token again: answered from the core's cache.
    assert_eq!(
        token(SECRET, "alice"),
        who("idp", Some("sa"), "sub:shop:sa")
    );
    assert_eq!(
        token(OTHER_SECRET, "carol"),
        who("idp2", Some("sc"), "sub:shop:sc")
    );
    assert_eq!(token(SECRET, "sb"), Err("subscription_pending"));
    assert_eq!(token(SECRET, "dave"), Err("subscription_disabled"));
    assert_eq!(token(SECRET, "eve"), Err("subscription_closed"));
    // idp verifies the token but knows no carol; idp2 does not verify it.
    assert_eq!(token(SECRET, "carol"), Err("token_unknown_subject"));
    assert_eq!(token(OTHER_SECRET, "alice"), Err("token_unknown_subject"));
    assert_eq!(token(THIRD_SECRET, "alice"), Err("token_bad_signature"));

    let with = |name: &str, value: &[u8]| {
        call_as(&w, 0, None, &[(name, value)], None, &mut FlowScratch::new())
    };
    // Only `Bearer <three parts>` is a token (the scheme in any case).
    assert_eq!(
        with("authorization", b"bearer a.b.c"),
        Err("token_malformed")
    );
    assert_eq!(
        with("Authorization", b"Bearer  a.b.c "),
        Err("token_malformed")
    );
    assert_eq!(with("Authorization", b"Basic a.b.c"), Err("unauthorized"));
    assert_eq!(with("Authorization", b"Bearer a.b"), Err("unauthorized"));
    assert_eq!(
        with("Authorization", b"Bearer a.b.c.d"),
        Err("unauthorized")
    );
    assert_eq!(with("Authorization", b"Bearer"), Err("unauthorized"));
    assert_eq!(with("Accept", b"*/*"), Err("unauthorized"));
}

/// A token cached on one API's route names nothing on another API's route: there, only that
/// API's consumers may name a subscription.
#[test]
fn a_cached_token_names_only_a_subscription_of_the_routes_own_consumers() {
    let a = api_json(
        "a",
        json!([jwt_consumer("idp-a", "published", SECRET)]),
        json!([{"id": "sa", "consumer_ref": "idp-a", "subject": "alice"}]),
    );
    let b = api_json(
        "b",
        json!([jwt_consumer("idp-b", "published", SECRET)]),
        json!([{"id": "sb", "consumer_ref": "idp-b", "subject": "bob"}]),
    );
    let w = world(vec![a, b], &[], None);
    let mut scratch = FlowScratch::new();
    let auth = bearer(&hs256(SECRET, "alice"));
    let headers: [(&str, &[u8]); 1] = [("Authorization", &auth)];
    assert_eq!(
        call_as(&w, 0, None, &headers, None, &mut scratch),
        who("idp-a", Some("sa"), "sub:a:sa")
    );
    assert_eq!(
        call_as(&w, 1, None, &headers, None, &mut scratch),
        Err("token_unknown_subject")
    );
}

/// An enabled subscription calls only while its consumer serves (staging: nobody).
#[test]
fn a_subscription_named_by_a_token_calls_only_under_a_serving_consumer() {
    for (status, expected) in [
        ("published", who("idp", Some("sa"), "sub:shop:sa")),
        ("deprecated", who("idp", Some("sa"), "sub:shop:sa")),
        ("staging", Err("unauthorized")),
    ] {
        let shop = api_json(
            "shop",
            json!([jwt_consumer("idp", status, SECRET)]),
            json!([{"id": "sa", "consumer_ref": "idp", "subject": "alice"}]),
        );
        let w = world(vec![shop], &[], None);
        let auth = bearer(&hs256(SECRET, "alice"));
        let got = call_as(
            &w,
            0,
            None,
            &[("Authorization", auth.as_slice())],
            None,
            &mut FlowScratch::new(),
        );
        assert_eq!(got, expected, "{status}");
    }
}

/// A client certificate names the subscription bound to its fingerprint when the consumer's
/// DN regexes admit it; any other certificate names nobody.
#[test]
fn a_client_certificate_names_its_subscription_when_the_dns_match() {
    let shop = api_json(
        "shop",
        json!([{"id": "certs", "kind": "mtls",
                "config": {"regex_subject_dns": ["CN=alice.*"], "regex_issuer_dns": ["CN=ca"]}}]),
        json!([{"id": "sm", "consumer_ref": "certs", "fingerprint": FINGERPRINT}]),
    );
    let w = world(vec![shop], &[], None);
    let fp = fingerprint();
    let with_cert = |subject: &str, issuer: &str, sha256: &str| {
        let cert = client_cert(subject, issuer, sha256);
        // A bearer token too: no jwt consumer reads it.
        let auth = bearer("a.b.c");
        call_as(
            &w,
            0,
            None,
            &[("Authorization", auth.as_slice())],
            Some(&cert),
            &mut FlowScratch::new(),
        )
    };
    assert_eq!(
        with_cert("CN=alice", "CN=ca", &fp),
        who("certs", Some("sm"), "sub:shop:sm")
    );
    assert_eq!(with_cert("CN=bob", "CN=ca", &fp), Err("unauthorized"));
    assert_eq!(with_cert("CN=alice", "CN=ca2", &fp), Err("unauthorized"));
    assert_eq!(
        with_cert("CN=alice", "CN=ca", &"0".repeat(64)),
        Err("unauthorized")
    );
    assert_eq!(
        call_as(&w, 0, None, &[], None, &mut FlowScratch::new()),
        Err("unauthorized")
    );
}

/// When no consumer that identifies serves, a credential that proves nothing is ignored and a
/// serving keyless consumer admits the call as itself; when one serves, the credential's
/// refusal is the answer.
#[test]
fn a_credential_is_ignored_only_when_no_identifying_consumer_serves() {
    let api = |identifying: &str| {
        api_json(
            "shop",
            json!([
                jwt_consumer("idp", identifying, SECRET),
                {"id": "gold", "kind": "apikey", "status": "staging"},
                {"id": "certs", "kind": "mtls", "status": "staging"},
                {"id": "free", "kind": "keyless"},
            ]),
            json!([
                {"id": "sa", "consumer_ref": "idp", "subject": "alice"},
                {"id": "sg", "consumer_ref": "gold", "apikeys": ["key-g"]},
                {"id": "sm", "consumer_ref": "certs", "fingerprint": FINGERPRINT},
            ]),
        )
    };
    let cert = client_cert("CN=alice", "CN=ca", &fingerprint());
    let bad = bearer(&hs256(THIRD_SECRET, "alice"));
    let secret = b"secret-key-g".to_vec();
    let all: [(&str, &[u8]); 3] = [
        ("Authorization", &bad),
        ("Otoroshi-Client-Id", b"key-g"),
        ("Otoroshi-Client-Secret", &secret),
    ];
    let wrong_key: [(&str, &[u8]); 2] = [
        ("Otoroshi-Client-Id", b"key-g"),
        ("Otoroshi-Client-Secret", b"wrong"),
    ];
    let anonymous = who("free", None, "keyless:shop:free");

    let staging = world(vec![api("staging")], &["key-g"], None);
    let call = |headers: &[(&str, &[u8])], cert: Option<&crate::flow::ClientCert>| {
        call_as(&staging, 0, None, headers, cert, &mut FlowScratch::new())
    };
    // The refused token makes the call anonymous: neither the certificate nor the key (of
    // staging consumers) is read.
    assert_eq!(call(&all, Some(&cert)), anonymous);
    assert_eq!(call(&all[..1], None), anonymous);
    assert_eq!(call(&wrong_key, None), anonymous);
    assert_eq!(call(&[], None), anonymous);
    // Without a token, the staging consumers' credentials name subscriptions that may not call.
    assert_eq!(call(&all[1..], None), Err("unauthorized"));
    assert_eq!(call(&[], Some(&cert)), Err("unauthorized"));

    let serving = world(vec![api("published")], &["key-g"], None);
    let call = |headers: &[(&str, &[u8])], cert: Option<&crate::flow::ClientCert>| {
        call_as(&serving, 0, None, headers, cert, &mut FlowScratch::new())
    };
    assert_eq!(call(&all, Some(&cert)), Err("token_bad_signature"));
    assert_eq!(call(&wrong_key, None), Err("bad_api_key"));
    assert_eq!(call(&[], None), anonymous);
}

/// A fresh ES256 key pair as the cluster's token key `k1` (public part only: the tests sign).
fn cluster_key() -> (
    ring::signature::EcdsaKeyPair,
    ring::rand::SystemRandom,
    TokenKeys,
) {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let token_keys = TokenKeys {
        signer: None,
        public: vec![crate::jose::TokenPublicKey {
            kid: "k1".into(),
            key: gateway_model::jose::PublicKey::P256(pair.public_key().as_ref().to_vec()),
            retire_at_ms: None,
        }],
    };
    (pair, rng, token_keys)
}

/// An access token the gateway issued (ES256, the cluster's key) names the oauth subscription
/// by its id and counts on the client id it was issued; that client id and secret, sent as an
/// API key, name no subscription.
#[test]
fn an_access_token_names_its_oauth_subscription_and_counts_on_its_client_id() {
    let (pair, rng, token_keys) = cluster_key();
    let shop = api_json(
        "shop",
        json!([
            {"id": "auth", "kind": "oauth"},
            {"id": "gold", "kind": "apikey"},
        ]),
        json!([{"id": "so", "consumer_ref": "auth", "apikeys": ["client-o"]}]),
    );
    let w = world(vec![shop], &["client-o"], Some(token_keys));
    assert_eq!(w.directory.token_keys().public.len(), 1);
    let header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
    let claims = json!({"sub": "so", "iss": crate::jose::TOKEN_ISSUER, "aud": "shop",
                        "exp": NOW / 1000 + 600});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = pair.sign(&rng, input.as_bytes()).unwrap();
    let auth = bearer(&format!("{input}.{}", b64(sig.as_ref())));
    assert_eq!(
        call_as(
            &w,
            0,
            None,
            &[("Authorization", auth.as_slice())],
            None,
            &mut FlowScratch::new()
        ),
        who("auth", Some("so"), "client-o")
    );
    let as_key: [(&str, &[u8]); 2] = [
        ("Otoroshi-Client-Id", b"client-o"),
        ("Otoroshi-Client-Secret", b"secret-client-o"),
    ];
    assert_eq!(
        call_as(&w, 0, None, &as_key, None, &mut FlowScratch::new()),
        Err("unauthorized")
    );
}

/// A serving oauth consumer identifies callers: beside a keyless consumer, a token it refuses
/// is the answer rather than an anonymous call.
#[test]
fn a_token_a_serving_oauth_consumer_refuses_is_the_answer_beside_a_keyless_one() {
    let (_, _, token_keys) = cluster_key();
    let shop = api_json(
        "shop",
        json!([{"id": "auth", "kind": "oauth"}, {"id": "free", "kind": "keyless"}]),
        json!([{"id": "so", "consumer_ref": "auth", "apikeys": ["client-o"]}]),
    );
    let w = world(vec![shop], &["client-o"], Some(token_keys));
    let forged = bearer(&hs256(SECRET, "so"));
    let call =
        |headers: &[(&str, &[u8])]| call_as(&w, 0, None, headers, None, &mut FlowScratch::new());
    assert_eq!(
        call(&[("Authorization", forged.as_slice())]),
        Err("token_bad_signature")
    );
    assert_eq!(call(&[]), who("free", None, "keyless:shop:free"));
}

/// The credential headers removed before an API route's request goes upstream are those of its
/// API's `apikey` consumer (staging or serving), and none when the API has no such consumer.
#[test]
fn an_api_routes_credential_headers_are_its_apikey_consumers() {
    let with_key = api_json(
        "a",
        json!([{"id": "gold", "kind": "apikey", "status": "staging"}, {"id": "free", "kind": "keyless"}]),
        json!([]),
    );
    let without = api_json(
        "b",
        json!([jwt_consumer("idp", "published", SECRET), {"id": "free", "kind": "keyless"}]),
        json!([]),
    );
    let w = world(vec![with_key, without], &[], None);
    let credentials = |api: &Api| {
        let route: Route = serde_json::from_value(json!({
            "id": format!("{}-r", api.id), "frontend": {"domains": ["shop.local"]},
            "backend_ref": "b", "metadata": {"Otoroshi-Api-Ref": api.id},
        }))
        .unwrap();
        let groups = vec![format!("virtual_group_for_{}", api.id)];
        let consumers = ApiConsumers::build(&w.directory, api, &route.id, &groups).unwrap();
        assert!(consumers.is_some(), "{}", api.id);
        Flow::build(&route)
            .unwrap()
            .with_api_consumers(consumers)
            .credentials()
            .cloned()
    };
    assert_eq!(credentials(&w.apis[0]), Some(apikey::Extractors::default()));
    assert_eq!(credentials(&w.apis[1]), None);
}

/// A key issued to a subscription of another API names no subscription here: only a keyless
/// consumer admits the call, as itself.
#[test]
fn a_key_of_another_apis_subscription_is_anonymous_here() {
    let a = api_json(
        "a",
        json!([{"id": "gold", "kind": "apikey"}]),
        json!([{"id": "s1", "consumer_ref": "gold", "apikeys": ["key-1"]}]),
    );
    let b = api_json(
        "b",
        json!([{"id": "silver", "kind": "apikey"}, {"id": "free", "kind": "keyless"}]),
        json!([]),
    );
    let w = world(vec![a, b], &["key-1"], None);
    let headers: [(&str, &[u8]); 2] = [
        ("Otoroshi-Client-Id", b"key-1"),
        ("Otoroshi-Client-Secret", b"secret-key-1"),
    ];
    assert_eq!(
        call_as(&w, 0, None, &headers, None, &mut FlowScratch::new()),
        who("gold", Some("s1"), "key-1")
    );
    assert_eq!(
        call_as(&w, 1, None, &headers, None, &mut FlowScratch::new()),
        who("free", None, "keyless:b:free")
    );
}

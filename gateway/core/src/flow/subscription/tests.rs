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

//! API management writes (DESIGN §8): what a change to an API's consumers and subscriptions does
//! to the keys its subscriptions were issued, decided in one place for every admin path (the API
//! itself, `/consumers`, `/subscriptions`, `/rotate`).
//!
//! [`reconcile`] takes the API as it was and as the write wants it, checks the lifecycle rules
//! (Otoroshi's API state transitions, consumers and subscriptions never leaving `closed`,
//! deprecated consumers taking no new subscription, `consumer_ref` and issued keys fixed) and
//! returns the key changes that go into the same commit:
//!
//! - a new subscription to an `apikey` consumer is issued a key (a 16-character client id, a
//!   64-character secret) built from the consumer's template and quotas, authorized on
//!   `api_<id>`, with `metadata.subscription` and `metadata.consumer`; the subscription records
//!   its id in `apikeys`;
//! - every issued key follows its consumer: a template or quota change rewrites it (id, secret
//!   and rotation state kept), a closed subscription (or consumer) disables it at once, a deleted
//!   subscription (or API) deletes it.
//!
//! Issued keys are ordinary API-key entities (sealed secrets, rotation, quotas, usage); only
//! their subscription changes them, and the admin API shows their secrets once.

use std::collections::{BTreeMap, HashSet};

use gateway_core::flow::consumer_quotas;
use gateway_model::entity::{
    Api, ApiKey, ApiState, Consumer, ConsumerKind, Rotation, Secret, Subscription,
    SubscriptionStatus,
};
use gateway_model::event::{EntityAction, EntityKind};

use super::{Failure, fail, rotation};
use crate::entitylog::{Change, Entity, RotationState, State};

/// Credentials issued by a write, answered once.
#[derive(Debug, Clone)]
pub(super) enum Issued {
    /// An API key (`apikey` subscriptions).
    Key {
        /// The key's client id.
        client_id: String,
        /// Its secret.
        secret: Secret,
        /// `oauth` subscriptions: where to exchange them for an access token.
        token_url: Option<String>,
    },
    /// A client certificate and its key (`mtls` subscriptions).
    Cert(super::issue::IssuedCert),
}

/// The outcome of an API write: the API to store and the key changes of the same commit.
#[derive(Debug)]
pub(super) struct Reconciled {
    pub api: Api,
    pub keys: Vec<Change>,
    pub issued: Vec<Issued>,
}

fn conflict(code: &str, text: String) -> Failure {
    fail(409, code, text)
}

/// The keys issued to the subscriptions of every API, by client id → (API, subscription).
pub(super) fn issued_keys(state: &State) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for (e, _) in state.list(EntityKind::Api) {
        if let Entity::Api(a) = e {
            for s in &a.subscriptions {
                for k in &s.apikeys {
                    out.insert(k.clone(), (a.id.clone(), s.id.clone()));
                }
            }
        }
    }
    out
}

/// The key of `sub` (a subscription to the apikey consumer `consumer` of `api`) as its consumer
/// wants it, keeping `current`'s id, secret and next secret.
pub(super) fn issued_key(
    api: &Api,
    consumer: &Consumer,
    sub: &Subscription,
    client_id: &str,
    secret: Secret,
    next_secret: Option<Secret>,
) -> ApiKey {
    let template = consumer.apikey_config().template;
    let quotas = consumer_quotas(consumer);
    let mut metadata = template.metadata.clone();
    metadata.insert("subscription".to_owned(), sub.id.clone());
    metadata.insert("consumer".to_owned(), consumer.id.clone());
    ApiKey {
        client_id: client_id.to_owned(),
        client_secret: secret,
        client_name: if sub.name.is_empty() {
            sub.id.clone()
        } else {
            sub.name.clone()
        },
        description: format!(
            "issued to subscription `{}` of consumer `{}` of API `{}`",
            sub.id, consumer.id, api.id
        ),
        valid_until: template.valid_until,
        enabled: sub.status != SubscriptionStatus::Closed,
        read_only: template.read_only,
        allow_client_id_only: template.allow_client_id_only,
        constrained_services_only: false,
        authorized_entities: vec![format!("api_{}", api.id)],
        authorized_group: None,
        authorizations: Vec::new(),
        tags: template.tags.clone(),
        metadata,
        rotation: Rotation {
            next_secret,
            ..template.rotation.clone()
        },
        restrictions: template.restrictions.clone(),
        throttling_quota: quotas.throttling,
        daily_quota: quotas.daily,
        monthly_quota: quotas.monthly,
    }
}

/// Checks an API write (`old` is `None` for a create, or an import) and computes its key
/// changes; `api` is the API the write wants.
///
/// # Errors
/// 409 for a forbidden lifecycle change, 400 for `apikeys` set by the caller.
pub(super) fn reconcile(
    state: &State,
    old: Option<&Api>,
    mut api: Api,
    now_ms: i64,
) -> Result<Reconciled, Failure> {
    let _ = now_ms;
    let old_state = old.map_or(ApiState::Staging, |o| o.state);
    if old.is_none() && api.state != ApiState::Staging {
        return Err(conflict(
            "invalid_state_transition",
            format!(
                "an API is created in staging (then published), not `{}`",
                api.state.as_str()
            ),
        ));
    }
    if !old_state.can_become(api.state) {
        return Err(conflict(
            "invalid_state_transition",
            format!(
                "API state `{}` cannot become `{}` (staging → published, published ↔ \
                 deprecated, published | deprecated → closed, closed → staging)",
                old_state.as_str(),
                api.state.as_str()
            ),
        ));
    }
    let empty = Api {
        consumers: Vec::new(),
        subscriptions: Vec::new(),
        ..api.clone()
    };
    let old = old.unwrap_or(&empty);
    for c in &api.consumers {
        let Some(before) = old.consumers.iter().find(|o| o.id == c.id) else {
            continue;
        };
        if !before.status.can_become(c.status) {
            return Err(conflict(
                "invalid_status_transition",
                format!(
                    "consumer `{}` is closed: it cannot become `{}`",
                    c.id,
                    c.status.as_str()
                ),
            ));
        }
        let used = old.subscriptions.iter().any(|s| s.consumer_ref == c.id);
        if before.kind != c.kind && used {
            return Err(conflict(
                "conflict",
                format!(
                    "consumer `{}` has subscriptions: its kind cannot change from `{}` to `{}`",
                    c.id,
                    before.kind.as_str(),
                    c.kind.as_str()
                ),
            ));
        }
    }
    // Closing a consumer closes its subscriptions.
    let closed: HashSet<String> = api
        .consumers
        .iter()
        .filter(|c| c.status == gateway_model::entity::ConsumerStatus::Closed)
        .map(|c| c.id.clone())
        .collect();
    for s in &mut api.subscriptions {
        if closed.contains(&s.consumer_ref) {
            s.status = SubscriptionStatus::Closed;
        }
    }
    let bound = issued_keys(state);
    let mut keys = Vec::new();
    let mut issued = Vec::new();
    // The API's CA, found or made at its first mtls certificate (made once per write).
    let mut api_ca: Option<super::issue::Ca> = None;
    for i in 0..api.subscriptions.len() {
        let Some(sub) = api.subscriptions.get(i).cloned() else {
            continue;
        };
        let consumer = api.consumers.iter().find(|c| c.id == sub.consumer_ref);
        match old.subscriptions.iter().find(|o| o.id == sub.id) {
            Some(before) => {
                if before.consumer_ref != sub.consumer_ref {
                    return Err(conflict(
                        "conflict",
                        format!(
                            "subscription `{}` belongs to consumer `{}` for good (create another \
                             subscription)",
                            sub.id, before.consumer_ref
                        ),
                    ));
                }
                if !sub.apikeys.is_empty() && sub.apikeys != before.apikeys {
                    return Err(fail(
                        400,
                        "invalid_entity",
                        format!(
                            "subscription `{}`: apikeys are set by the gateway when it issues \
                             them",
                            sub.id
                        ),
                    ));
                }
                if !before.status.can_become(sub.status) {
                    return Err(conflict(
                        "invalid_status_transition",
                        format!(
                            "subscription `{}` is closed: it cannot become `{}`",
                            sub.id,
                            sub.status.as_str()
                        ),
                    ));
                }
                // The certificate that names an mtls subscription is fixed once created (a new
                // certificate is a new subscription).
                let changed =
                    |now: &Option<String>, then: &Option<String>| now.is_some() && now != then;
                if changed(&sub.fingerprint, &before.fingerprint)
                    || changed(&sub.certificate, &before.certificate)
                {
                    return Err(fail(
                        400,
                        "invalid_entity",
                        format!(
                            "subscription `{}`: its certificate (fingerprint) cannot change \
                             (create another subscription)",
                            sub.id
                        ),
                    ));
                }
                if let Some(slot) = api.subscriptions.get_mut(i) {
                    slot.apikeys.clone_from(&before.apikeys);
                    slot.fingerprint.clone_from(&before.fingerprint);
                    slot.certificate.clone_from(&before.certificate);
                    // A jwt subscription keeps its subject unless the write names another.
                    if slot.subject.is_none() {
                        slot.subject.clone_from(&before.subject);
                    }
                }
            }
            None => {
                if !sub.apikeys.is_empty() {
                    return Err(fail(
                        400,
                        "invalid_entity",
                        format!(
                            "subscription `{}`: apikeys are set by the gateway when it issues \
                             them",
                            sub.id
                        ),
                    ));
                }
                if sub.status == SubscriptionStatus::Closed {
                    return Err(fail(
                        400,
                        "invalid_entity",
                        format!("subscription `{}` cannot be created closed", sub.id),
                    ));
                }
                if !matches!(api.state, ApiState::Staging | ApiState::Published) {
                    return Err(conflict(
                        "api_not_subscribable",
                        format!(
                            "API `{}` is {}: only staging and published APIs take new \
                             subscriptions",
                            api.id,
                            api.state.as_str()
                        ),
                    ));
                }
                if let Some(c) = consumer {
                    if !c.status.accepts_subscriptions() {
                        return Err(conflict(
                            "consumer_not_subscribable",
                            format!(
                                "consumer `{}` is {}: it takes no new subscriptions",
                                c.id,
                                c.status.as_str()
                            ),
                        ));
                    }
                    if c.kind.issues_keys() {
                        let client_id = unique_client_id(state, &bound);
                        let secret = rotation::generate_secret();
                        // oauth: the client credentials of the API's token endpoint.
                        let token_url = (c.kind == ConsumerKind::Oauth).then(|| token_url(&api));
                        issued.push(Issued::Key {
                            client_id: client_id.clone(),
                            secret: secret.clone(),
                            token_url,
                        });
                        let key = issued_key(&api, c, &sub, &client_id, secret, None);
                        keys.push(Change::put(
                            EntityAction::Created,
                            Entity::ApiKey(Box::new(key), RotationState::default()),
                        ));
                        if let Some(slot) = api.subscriptions.get_mut(i) {
                            slot.apikeys = vec![client_id];
                        }
                    }
                    // An mtls subscription without a bound certificate is issued one, signed by
                    // the API's CA (made now if the API has none: a certificate entity in the
                    // same commit).
                    if c.kind == ConsumerKind::Mtls && sub.fingerprint.is_none() {
                        if sub.certificate.is_some() {
                            return Err(fail(
                                400,
                                "invalid_entity",
                                format!(
                                    "subscription `{}`: certificate is set by the gateway when \
                                     it issues one (bind an existing certificate by its \
                                     fingerprint)",
                                    sub.id
                                ),
                            ));
                        }
                        let ca = match api_ca
                            .take()
                            .or_else(|| super::issue::find_ca(state, &api.id))
                        {
                            Some(ca) => ca,
                            None => {
                                let id = format!("api-ca-{}", rotation::random_lower(12));
                                let (ca, entity) = super::issue::new_ca(&api.id, id)
                                    .map_err(|e| fail(500, "internal", format!("API CA: {e}")))?;
                                keys.push(Change::put(
                                    EntityAction::Created,
                                    Entity::Certificate(Box::new(entity)),
                                ));
                                ca
                            }
                        };
                        let cert =
                            super::issue::client_cert(&ca, &api.id, &sub.id).map_err(|e| {
                                fail(500, "internal", format!("client certificate: {e}"))
                            })?;
                        api_ca = Some(ca);
                        if let Some(slot) = api.subscriptions.get_mut(i) {
                            slot.fingerprint = Some(cert.fingerprint.clone());
                            slot.certificate = Some(cert.certificate.clone());
                        }
                        issued.push(Issued::Cert(cert));
                    }
                    // A jwt subscription is named by its subject claim: the one given, else
                    // its id (answered in `credentials`).
                    if c.kind == ConsumerKind::Jwt {
                        if let Some(slot) = api.subscriptions.get_mut(i) {
                            if slot.subject.is_none() {
                                slot.subject = Some(slot.id.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    // Removed subscriptions lose their keys.
    for before in &old.subscriptions {
        if !api.subscriptions.iter().any(|s| s.id == before.id) {
            for k in &before.apikeys {
                if state.get(EntityKind::ApiKey, k).is_some() {
                    keys.push(Change::delete(EntityKind::ApiKey, k));
                }
            }
        }
    }
    // Every issued key follows its consumer and subscription.
    for sub in &api.subscriptions {
        let Some(consumer) = api.consumers.iter().find(|c| c.id == sub.consumer_ref) else {
            continue;
        };
        if !consumer.kind.issues_keys() {
            continue;
        }
        for k in &sub.apikeys {
            let Some((Entity::ApiKey(current, rot), _)) = state.get(EntityKind::ApiKey, k) else {
                continue;
            };
            let wanted = issued_key(
                &api,
                consumer,
                sub,
                k,
                current.client_secret.clone(),
                current.rotation.next_secret.clone(),
            );
            if wanted != **current {
                let mut rot = rot.clone();
                if wanted.rotation.enabled && rot.started_at.is_none() {
                    rot.started_at = Some(now_ms);
                }
                keys.push(Change::put(
                    EntityAction::Updated,
                    Entity::ApiKey(Box::new(wanted), rot),
                ));
            }
        }
    }
    // The first oauth consumer of the cluster makes its token key (sealed in the same commit).
    if api.consumers.iter().any(|c| c.kind == ConsumerKind::Oauth)
        && !super::issue::has_signing_token_key(state)
    {
        let id = format!("token-key-{}", rotation::random_lower(12));
        let entity = super::issue::new_token_key(id, now_ms)
            .map_err(|e| fail(500, "internal", format!("token key: {e}")))?;
        keys.push(Change::put(
            EntityAction::Created,
            Entity::Certificate(Box::new(entity)),
        ));
    }
    Ok(Reconciled { api, keys, issued })
}

/// The key changes of deleting `api`: its issued keys go with it.
pub(super) fn delete_api(state: &State, api: &Api) -> Vec<Change> {
    api.subscriptions
        .iter()
        .flat_map(|s| s.apikeys.iter())
        .filter(|k| state.get(EntityKind::ApiKey, k).is_some())
        .map(|k| Change::delete(EntityKind::ApiKey, k))
        .collect()
}

/// New credentials for the keys of `sub`: a fresh secret each, the old one refused at once (a
/// `rotated` event each).
pub(super) fn rotate(state: &State, sub: &Subscription, now_ms: i64) -> (Vec<Change>, Vec<Issued>) {
    let mut changes = Vec::new();
    let mut issued = Vec::new();
    for k in &sub.apikeys {
        let Some((Entity::ApiKey(current, rot), _)) = state.get(EntityKind::ApiKey, k) else {
            continue;
        };
        let mut key = (**current).clone();
        let secret = rotation::generate_secret();
        key.client_secret = secret.clone();
        key.rotation.next_secret = None;
        let rot = RotationState {
            started_at: key.rotation.enabled.then_some(now_ms),
            previous: None,
            previous_until: None,
            quotas_reset_at: rot.quotas_reset_at,
        };
        changes.push(Change::put(
            EntityAction::Rotated,
            Entity::ApiKey(Box::new(key), rot),
        ));
        issued.push(Issued::Key {
            client_id: k.clone(),
            secret,
            token_url: None,
        });
    }
    (changes, issued)
}

/// The token endpoint of `api`: on its first route's host (every host of the API answers it).
fn token_url(api: &Api) -> String {
    let host = api
        .routes
        .iter()
        .flat_map(|r| r.frontend.domains.iter())
        .map(|d| d.split('/').next().unwrap_or_default())
        .find(|h| !h.is_empty() && !h.contains('*'))
        .unwrap_or("localhost");
    format!("http://{host}{}", gateway_core::jose::TOKEN_PATH)
}

fn unique_client_id(state: &State, bound: &BTreeMap<String, (String, String)>) -> String {
    loop {
        let id = rotation::random_lower(16);
        if state.get(EntityKind::ApiKey, &id).is_none() && !bound.contains_key(&id) {
            return id;
        }
    }
}

/// The `credentials` of an answer: `{clientId, clientSecret}` (one key), `{certificate,
/// privateKey, fingerprint}` (one certificate) or a list.
pub(super) fn credentials_json(issued: &[Issued]) -> serde_json::Value {
    let one = |i: &Issued| match i {
        Issued::Key {
            client_id,
            secret,
            token_url: None,
        } => serde_json::json!({"clientId": client_id, "clientSecret": secret.expose()}),
        Issued::Key {
            client_id,
            secret,
            token_url: Some(url),
        } => serde_json::json!({
            "clientId": client_id,
            "clientSecret": secret.expose(),
            "tokenUrl": url,
        }),
        Issued::Cert(c) => serde_json::json!({
            "certificate": c.certificate,
            "privateKey": c.private_key.expose(),
            "fingerprint": c.fingerprint,
        }),
    };
    match issued {
        [only] => one(only),
        many => serde_json::Value::Array(many.iter().map(one).collect()),
    }
}

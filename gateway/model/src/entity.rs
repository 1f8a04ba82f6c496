//! The entities of Tollgate's configuration: API keys, routes, backends, APIs (with their
//! flows, consumers and subscriptions) and certificates, with Otoroshi's JSON field names so
//! that an Otoroshi export deserialises unchanged.
//!
//! These types only describe; they never do IO. Deserialising them checks types; the rules that
//! span fields and entities live in [`crate::validate`], and the gateway converts validated
//! entities into its runtime tables (route table, key store) once per snapshot.

mod api;
mod apikey;
mod backend;
mod certificate;
mod route;
mod secret;
mod tokens;

pub use api::{
    Api, ApiBackend, ApiRoute, ApiState, ApikeyConsumerConfig, Consumer, ConsumerKind,
    ConsumerStatus, Flow, KeyTemplate, Subscription, SubscriptionStatus,
};
pub use apikey::{
    ApiKey, DEFAULT_QUOTA, EntityRef, Restriction, Restrictions, Rotation, UNLIMITED_QUOTA,
};
pub use backend::{
    Backend, ClientConfig, HealthCheck, LoadBalancing, MockResponse, StoredBackend, Target,
    TlsConfig,
};
pub use certificate::Certificate;
pub use route::{Frontend, PluginInstance, PluginKind, Route};
pub use secret::Secret;
pub use tokens::{
    API_CA_META, JwtConsumerConfig, JwtVerifierConfig, MtlsConsumerConfig, OauthConsumerConfig,
    TOKEN_KEY_CREATED_META, TOKEN_KEY_META, TOKEN_KEY_RETIRE_META,
};

pub(crate) use apikey::json_kind;
pub(crate) use certificate::{UNSUPPORTED_FLAGS, unsupported_flags};

pub(crate) fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests;

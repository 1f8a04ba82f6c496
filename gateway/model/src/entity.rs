//! The entities of Tollgate's configuration: API keys, routes, backends and APIs (with their
//! flows, consumers and subscriptions), with Otoroshi's JSON field names so that an Otoroshi export
//! deserialises unchanged.
//!
//! These types only describe; they never do IO. Deserialising them checks types; the rules that
//! span fields and entities live in [`crate::validate`], and the gateway converts validated
//! entities into its runtime tables (route table, key store) once per snapshot.

mod api;
mod apikey;
mod backend;
mod route;
mod secret;

pub use api::{
    Api, ApiBackend, ApiRoute, ApiState, ApikeyConsumerConfig, Consumer, ConsumerKind,
    ConsumerStatus, Flow, KeyTemplate, Subscription, SubscriptionStatus,
};
pub use apikey::{
    ApiKey, DEFAULT_QUOTA, EntityRef, Restriction, Restrictions, Rotation, UNLIMITED_QUOTA,
};
pub use backend::{
    Backend, ClientConfig, HealthCheck, LoadBalancing, MockResponse, StoredBackend, Target,
};
pub use route::{Frontend, PluginInstance, PluginKind, Route};
pub use secret::Secret;

pub(crate) use apikey::json_kind;

pub(crate) fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests;

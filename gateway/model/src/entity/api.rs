use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Backend, Frontend, PluginInstance, yes};

/// An API (Otoroshi's `Api` entity): routes, backends and plugin flows managed as a whole, with
/// consumers (how callers are identified) and subscriptions (who may call), and a lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Api {
    /// Unique id; API keys authorize it as `api_<id>`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// String metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Version label.
    #[serde(default)]
    pub version: String,
    /// A disabled API serves no traffic.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Lifecycle: only published and deprecated APIs serve traffic.
    #[serde(default)]
    pub state: ApiState,
    /// The API's routes.
    #[serde(default)]
    pub routes: Vec<ApiRoute>,
    /// Backends local to the API.
    #[serde(default)]
    pub backends: Vec<ApiBackend>,
    /// Named plugin chains the routes refer to.
    #[serde(default)]
    pub flows: Vec<Flow>,
    /// How callers are identified (Otoroshi's UI: consumers; its JSON: `plans`).
    #[serde(default, alias = "plans")]
    pub consumers: Vec<Consumer>,
    /// Who is subscribed to which consumer.
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
}

/// An API's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiState {
    /// Being built; serves no traffic.
    #[default]
    Staging,
    /// Live.
    Published,
    /// Live, but new subscriptions are refused.
    Deprecated,
    /// Retired; serves no traffic (Otoroshi: `removed`).
    #[serde(alias = "removed")]
    Closed,
}

impl ApiState {
    /// Whether routes of an API in this state serve traffic.
    pub fn serves_traffic(self) -> bool {
        matches!(self, Self::Published | Self::Deprecated)
    }
}

/// A route of an API: a frontend, a backend reference and a flow reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiRoute {
    /// Unique id (also among top-level routes).
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// A disabled route matches nothing.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where requests come in.
    pub frontend: Frontend,
    /// The id of one of the API's backends, or of a stored backend.
    pub backend: String,
    /// The id of one of the API's flows.
    #[serde(default)]
    pub flow_ref: Option<String>,
}

/// A backend local to an API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiBackend {
    /// Id, unique within the API.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The backend.
    pub backend: Backend,
}

/// A named chain of plugins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// Id, unique within the API.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The plugins, in order.
    #[serde(default)]
    pub plugins: Vec<PluginInstance>,
}

/// How callers of an API are identified (Otoroshi: a plan's access mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    /// Id, unique within the API.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Lifecycle status.
    #[serde(default)]
    pub status: ConsumerStatus,
    /// The security pattern.
    #[serde(default, alias = "access_mode_configuration_type")]
    pub kind: ConsumerKind,
    /// Kind-specific settings (key template, JWT verifier, accepted certificates, …).
    #[serde(default, alias = "access_mode_configuration")]
    pub config: serde_json::Value,
    /// Calls per second granted to each subscription's key.
    #[serde(
        default,
        rename = "throttlingQuota",
        skip_serializing_if = "Option::is_none"
    )]
    pub throttling_quota: Option<u64>,
    /// Calls per day granted to each subscription's key.
    #[serde(
        default,
        rename = "dailyQuota",
        skip_serializing_if = "Option::is_none"
    )]
    pub daily_quota: Option<u64>,
    /// Calls per month granted to each subscription's key.
    #[serde(
        default,
        rename = "monthlyQuota",
        skip_serializing_if = "Option::is_none"
    )]
    pub monthly_quota: Option<u64>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// String metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The kinds of consumer of the APIs entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerKind {
    /// No identification.
    #[default]
    Keyless,
    /// API keys.
    Apikey,
    /// OAuth2 client credentials (Otoroshi: `oauth2-local`, `oauth2-remote`).
    #[serde(alias = "oauth2-local", alias = "oauth2-remote", alias = "oauth2")]
    Oauth,
    /// Client certificates.
    Mtls,
    /// Signed JWTs.
    Jwt,
}

/// Lifecycle of a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerStatus {
    /// Not yet offered.
    Staging,
    /// Offered (Otoroshi's default).
    #[default]
    Published,
    /// No new subscriptions.
    Deprecated,
    /// Closed: its subscriptions end.
    Closed,
}

/// A subscription of a caller to one consumer of an API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Unique id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Lifecycle status.
    #[serde(default)]
    pub status: SubscriptionStatus,
    /// The consumer subscribed to (Otoroshi: `plan_ref`).
    #[serde(alias = "plan_ref")]
    pub consumer_ref: String,
    /// The API keys issued for this subscription (Otoroshi keeps them in `token_refs`).
    #[serde(default)]
    pub apikeys: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// String metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Lifecycle of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    /// Waiting for validation.
    Pending,
    /// Active.
    #[default]
    Enabled,
    /// Paused.
    Disabled,
    /// Ending.
    Deprecated,
    /// Ended.
    Closed,
}

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    Backend, Frontend, JwtConsumerConfig, MtlsConsumerConfig, OauthConsumerConfig, PluginInstance,
    Restrictions, Rotation, yes,
};

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

    /// Otoroshi's `isValidStateTransition`: staging → published, published ↔ deprecated,
    /// published | deprecated → closed (Otoroshi: removed), closed → staging. Staying in the same
    /// state is not a transition and is always allowed.
    pub fn can_become(self, next: Self) -> bool {
        self == next
            || matches!(
                (self, next),
                (Self::Staging, Self::Published)
                    | (Self::Published, Self::Deprecated | Self::Closed)
                    | (Self::Deprecated, Self::Published | Self::Closed)
                    | (Self::Closed, Self::Staging)
            )
    }

    /// The state's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staging => "staging",
            Self::Published => "published",
            Self::Deprecated => "deprecated",
            Self::Closed => "closed",
        }
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
    /// Kind-specific settings: `{template: {…}}` for `apikey` ([`ApikeyConsumerConfig`]),
    /// [`JwtConsumerConfig`], [`OauthConsumerConfig`], [`MtlsConsumerConfig`], nothing for
    /// `keyless`. Checked by [`crate::validate`] against the kind.
    #[serde(default, alias = "access_mode_configuration")]
    pub config: serde_json::Value,
    /// Calls per second granted to each subscription (to the consumer as a whole for a keyless
    /// consumer). Absent: an API key's default (10,000,000) for `apikey` consumers, no limit for
    /// `keyless` ones.
    #[serde(
        default,
        rename = "throttlingQuota",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::apikey::quota_opt"
    )]
    pub throttling_quota: Option<u64>,
    /// Calls per calendar day granted to each subscription (see `throttlingQuota`).
    #[serde(
        default,
        rename = "dailyQuota",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::apikey::quota_opt"
    )]
    pub daily_quota: Option<u64>,
    /// Calls per calendar month granted to each subscription (see `throttlingQuota`).
    #[serde(
        default,
        rename = "monthlyQuota",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::apikey::quota_opt"
    )]
    pub monthly_quota: Option<u64>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// String metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Consumer {
    /// Whether the consumer identifies callers: published, or deprecated (no new subscriptions,
    /// existing ones keep calling). Staging and closed consumers identify nobody.
    pub fn serves(&self) -> bool {
        self.status.serves()
    }

    /// The `apikey` consumer's config (`{template}`), read leniently: the default for a missing
    /// or malformed config (validation reports a malformed one before it is stored).
    pub fn apikey_config(&self) -> ApikeyConsumerConfig {
        if self.config.is_null() {
            return ApikeyConsumerConfig::default();
        }
        serde_json::from_value(self.config.clone()).unwrap_or_default()
    }

    /// The `jwt` consumer's config, if it reads (validation reports a malformed one before it
    /// is stored).
    pub fn jwt_config(&self) -> Option<JwtConsumerConfig> {
        serde_json::from_value(self.config.clone()).ok()
    }

    /// The `oauth` consumer's config, read leniently (the default for a missing one).
    pub fn oauth_config(&self) -> OauthConsumerConfig {
        if self.config.is_null() {
            return OauthConsumerConfig::default();
        }
        serde_json::from_value(self.config.clone()).unwrap_or_default()
    }

    /// The `mtls` consumer's config, read leniently (the default for a missing one).
    pub fn mtls_config(&self) -> MtlsConsumerConfig {
        if self.config.is_null() {
            return MtlsConsumerConfig::default();
        }
        serde_json::from_value(self.config.clone()).unwrap_or_default()
    }
}

/// The config of an `apikey` consumer: the template of the API key each subscription is issued.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApikeyConsumerConfig {
    /// The fields of every issued key (its id, secret, authorizations and quotas are the
    /// gateway's).
    #[serde(default)]
    pub template: KeyTemplate,
}

/// The API-key fields a consumer's template sets on the keys it issues (Otoroshi's names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyTemplate {
    /// Issued keys only make GET, HEAD and OPTIONS calls.
    #[serde(default)]
    pub read_only: bool,
    /// Issued keys may call with their client id alone (`x-api-key`).
    #[serde(default)]
    pub allow_client_id_only: bool,
    /// Path restrictions of the issued keys.
    #[serde(default)]
    pub restrictions: Restrictions,
    /// Automatic secret rotation of the issued keys (`nextSecret` cannot be set here).
    #[serde(default)]
    pub rotation: Rotation,
    /// Tags of the issued keys.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata of the issued keys (`subscription` and `consumer` are the gateway's).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Issued keys are valid until this instant (ms since the Unix epoch).
    #[serde(default)]
    pub valid_until: Option<i64>,
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
    /// OAuth2 client credentials, tokens issued by the gateway (Otoroshi: `oauth2-local`).
    /// Otoroshi's `oauth2-remote` (a remote IdP's tokens) is a `jwt` consumer here.
    #[serde(alias = "oauth2-local", alias = "oauth2")]
    Oauth,
    /// Client certificates.
    Mtls,
    /// Signed JWTs.
    Jwt,
}

impl ConsumerKind {
    /// The kind's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keyless => "keyless",
            Self::Apikey => "apikey",
            Self::Oauth => "oauth",
            Self::Mtls => "mtls",
            Self::Jwt => "jwt",
        }
    }

    /// Whether its subscriptions are issued API keys (`apikey`: to call with; `oauth`: the
    /// client id and secret of the token endpoint).
    pub fn issues_keys(self) -> bool {
        matches!(self, Self::Apikey | Self::Oauth)
    }
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

impl ConsumerStatus {
    /// Published or deprecated: the consumer identifies callers.
    pub fn serves(self) -> bool {
        matches!(self, Self::Published | Self::Deprecated)
    }

    /// Staging or published: new subscriptions are accepted (Otoroshi's write validation).
    pub fn accepts_subscriptions(self) -> bool {
        matches!(self, Self::Staging | Self::Published)
    }

    /// Any change but leaving `closed` (closing ended its subscriptions for good).
    pub fn can_become(self, next: Self) -> bool {
        self == next || self != Self::Closed
    }

    /// The status's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staging => "staging",
            Self::Published => "published",
            Self::Deprecated => "deprecated",
            Self::Closed => "closed",
        }
    }
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
    /// The API keys issued for this subscription (Otoroshi keeps them in `token_refs`): the key
    /// of an `apikey` subscription, the client id and secret of an `oauth` one. Set by the
    /// gateway when it issues them; each key carries `metadata.subscription` back.
    #[serde(default)]
    pub apikeys: Vec<String>,
    /// `jwt` subscriptions: the value of the consumer's subject claim that names this
    /// subscription (defaults to the subscription's id; unique within the consumer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `mtls` subscriptions: the SHA-256 fingerprint (hex) of the client certificate that names
    /// this subscription: the one the gateway issued, or an existing one bound by the caller
    /// (unique within the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// `mtls` subscriptions: the PEM certificate the gateway issued (public; its private key was
    /// answered once and is kept nowhere). Set by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// String metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Lifecycle of a subscription: only enabled subscriptions call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    /// Waiting for validation: calls are refused (401 `subscription_pending`).
    Pending,
    /// Active.
    #[default]
    Enabled,
    /// Paused: calls are refused (401 `subscription_disabled`).
    Disabled,
    /// Ended for good: its credentials are revoked (401 `subscription_closed`).
    Closed,
}

impl SubscriptionStatus {
    /// Any change but leaving `closed`.
    pub fn can_become(self, next: Self) -> bool {
        self == next || self != Self::Closed
    }

    /// The status's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Closed => "closed",
        }
    }
}

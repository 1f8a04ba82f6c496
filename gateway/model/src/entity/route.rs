use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Backend, yes};

/// An NG route (Otoroshi's `NgRoute`): where requests come in (`frontend`), where they go
/// (`backend` or `backend_ref`) and the plugins of its flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Unique id; API keys authorize it as `route_<id>`.
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
    /// String metadata. `Otoroshi-Api-Ref` names the API the route belongs to.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// A disabled route matches nothing.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Groups (API keys authorize them as `group_<id>`).
    #[serde(default = "default_groups")]
    pub groups: Vec<String>,
    /// Where requests come in.
    pub frontend: Frontend,
    /// An inline backend; `backend_ref` wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// The id of a stored backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<String>,
    /// The flow's plugins, in order.
    #[serde(default)]
    pub plugins: Vec<PluginInstance>,
    /// Largest request body accepted on this route, in bytes (413 above it); `null` for the
    /// listener's default. Tollgate only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Send the client's Host header upstream instead of the target's. Tollgate only (Otoroshi
    /// keeps it when the `OverrideHost` plugin is absent; Tollgate rewrites it unless this is set).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_host: bool,
}

impl Route {
    /// The API this route belongs to (metadata `Otoroshi-Api-Ref`), if any.
    pub fn api_ref(&self) -> Option<&str> {
        self.metadata.get("Otoroshi-Api-Ref").map(String::as_str)
    }

    /// Whether an enabled plugin of this kind is in the route's flow.
    pub fn has_plugin(&self, kind: PluginKind) -> bool {
        self.plugins
            .iter()
            .any(|p| p.enabled && PluginKind::from_id(&p.plugin) == Some(kind))
    }
}

fn default_groups() -> Vec<String> {
    vec!["default".to_owned()]
}

/// Where a route's requests come in (Otoroshi's `NgFrontend`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frontend {
    /// `host` or `host/path` entries. A host may start with `*.` (any subdomain, any depth).
    /// `domain` (one string) is accepted as an alias.
    #[serde(alias = "domain", deserialize_with = "one_or_many")]
    pub domains: Vec<String>,
    /// Remove the matched path prefix before proxying.
    #[serde(default = "yes")]
    pub strip_path: bool,
    /// The path must match exactly instead of as a prefix.
    #[serde(default)]
    pub exact: bool,
    /// Headers that must be present with exactly these values (names case-insensitive).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters that must be present with exactly these values.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Cookies that must be present; not supported by Tollgate (validation reports them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cookies: BTreeMap<String, String>,
    /// Allowed methods; empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Accept paths with an encoded `/` or `\\` (`%2F`, `%5C`) or raw non-ASCII bytes, kept
    /// percent-encoded as data: matched, checked and forwarded in that one encoded form (like
    /// Apache's `AllowEncodedSlashes NoDecode`). Off by default: such paths are refused with 400,
    /// since an upstream that decodes them would see another path than the one checked.
    /// Tollgate only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_encoded_slashes: bool,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(de)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A plugin in a route's or flow's chain (Otoroshi's `NgPluginInstance`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInstance {
    /// The plugin id, e.g. `cp:otoroshi.next.plugins.ApikeyCalls`.
    pub plugin: String,
    /// Disabled plugins are skipped.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Otoroshi's debug flag (ignored).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debug: bool,
    /// Path regexes the plugin applies to (empty: all).
    #[serde(default)]
    pub include: Vec<String>,
    /// Path regexes the plugin skips.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The plugin's configuration.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Otoroshi's explicit ordering (ignored: the list order is the order).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub plugin_index: serde_json::Value,
}

/// The plugins Tollgate implements. Anything else is unknown: a route that requires one is
/// imported disabled, with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// `ApikeyCalls`: the API-key consumer (extraction, verification, quotas).
    ApikeyCalls,
    /// `OverrideHost`: send the target's host upstream (Tollgate's default anyway).
    OverrideHost,
    /// `ReadOnlyCalls`: only GET, HEAD and OPTIONS.
    ReadOnlyCalls,
    /// `NgRestrictions`: route-level restrictions with the API-key restriction semantics.
    Restrictions,
    /// `AdditionalHeadersIn`: headers added to the upstream request.
    AdditionalHeadersIn,
    /// `AdditionalHeadersOut`: headers added to the response.
    AdditionalHeadersOut,
    /// `SendOtoroshiHeadersBack`: Tollgate always sends quota headers on keyed routes.
    SendOtoroshiHeadersBack,
    /// `NgHasClientCertValidator`: a verified client certificate is required (401).
    HasClientCert,
    /// `NgHasClientCertMatchingValidator`: the client certificate must match (403).
    HasClientCertMatching,
    /// `NgClientCertChainHeader`: the client certificate goes to the backend in headers.
    ClientCertChainHeader,
}

impl PluginKind {
    /// Recognises Otoroshi's plugin ids, with or without the `cp:` prefix.
    pub fn from_id(id: &str) -> Option<Self> {
        let id = id.strip_prefix("cp:").unwrap_or(id);
        let name = id.rsplit('.').next().unwrap_or(id);
        Some(match name {
            "ApikeyCalls" => Self::ApikeyCalls,
            "OverrideHost" => Self::OverrideHost,
            "ReadOnlyCalls" => Self::ReadOnlyCalls,
            "NgRestrictions" | "Restrictions" => Self::Restrictions,
            "AdditionalHeadersIn" => Self::AdditionalHeadersIn,
            "AdditionalHeadersOut" => Self::AdditionalHeadersOut,
            "SendOtoroshiHeadersBack" => Self::SendOtoroshiHeadersBack,
            "NgHasClientCertValidator" | "HasClientCertValidator" => Self::HasClientCert,
            "NgHasClientCertMatchingValidator" | "HasClientCertMatchingValidator" => {
                Self::HasClientCertMatching
            }
            "NgClientCertChainHeader" | "ClientCertChainHeader" => Self::ClientCertChainHeader,
            _ => return None,
        })
    }
}

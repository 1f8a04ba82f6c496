//! What verification needs to know about the route: its identity (for `authorizedEntities`), its
//! extractors and its routing constraints. Built once per snapshot per keyed route.

use gateway_model::entity::{PluginKind, Route};

use super::config::{ApikeyCallsConfig, ConfigError, Extractors, RoutingConfig};
use super::store::KeyEntry;

/// A keyed route, as API-key verification sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteContext {
    route_id: Box<str>,
    api_id: Option<Box<str>>,
    groups: Box<[Box<str>]>,
    extractors: Extractors,
    routing: RoutingConstraints,
}

impl RouteContext {
    /// A route `route_id`, part of the API `api_id` (if any) and of `groups`, whose `ApikeyCalls`
    /// plugin has `config`.
    ///
    /// # Errors
    /// A bad extractor setting, with its place (`extractors.jwt.header_name`).
    pub fn new<I>(
        route_id: &str,
        api_id: Option<&str>,
        groups: I,
        config: &ApikeyCallsConfig,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Ok(Self {
            route_id: route_id.into(),
            api_id: api_id.map(Into::into),
            groups: groups.into_iter().map(|g| g.as_ref().into()).collect(),
            extractors: Extractors::try_from(&config.extractors)?,
            routing: RoutingConstraints::from(&config.routing),
        })
    }

    /// The context of an NG route: its id, its API (metadata `Otoroshi-Api-Ref`), its groups and
    /// the config of its first enabled `ApikeyCalls` plugin (the default config if it has none).
    ///
    /// # Errors
    /// A bad plugin config, with its place (`plugins[2].config: …`).
    pub fn from_route(route: &Route) -> Result<Self, ConfigError> {
        let plugin = route.plugins.iter().enumerate().find(|(_, p)| {
            p.enabled && PluginKind::from_id(&p.plugin) == Some(PluginKind::ApikeyCalls)
        });
        let config = match plugin {
            None => ApikeyCallsConfig::default(),
            Some((i, p)) => ApikeyCallsConfig::from_json(&p.config).map_err(|e| ConfigError {
                field: format!("plugins[{i}].config"),
                message: e.to_string(),
            })?,
        };
        Self::new(&route.id, route.api_ref(), &route.groups, &config).map_err(|e| ConfigError {
            field: match plugin {
                Some((i, _)) => format!("plugins[{i}].config.{}", e.field),
                None => e.field,
            },
            message: e.message,
        })
    }

    /// The route's id.
    #[must_use]
    pub fn route_id(&self) -> &str {
        &self.route_id
    }

    /// The API the route belongs to.
    #[must_use]
    pub fn api_id(&self) -> Option<&str> {
        self.api_id.as_deref()
    }

    /// The route's groups.
    #[must_use]
    pub fn groups(&self) -> &[Box<str>] {
        &self.groups
    }

    /// The route's extractors.
    #[must_use]
    pub fn extractors(&self) -> &Extractors {
        &self.extractors
    }

    /// The route's routing constraints.
    #[must_use]
    pub fn routing(&self) -> &RoutingConstraints {
        &self.routing
    }
}

/// Validated routing constraints (see [`RoutingConfig`]). A key passes when every non-empty
/// criterion holds; disabled constraints pass every key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoutingConstraints {
    enabled: bool,
    one_tag_in: Box<[Box<str>]>,
    all_tags_in: Box<[Box<str>]>,
    none_tag_in: Box<[Box<str>]>,
    one_meta_in: Box<[(Box<str>, Box<str>)]>,
    all_meta_in: Box<[(Box<str>, Box<str>)]>,
    none_meta_in: Box<[(Box<str>, Box<str>)]>,
    one_meta_key_in: Box<[Box<str>]>,
    all_meta_keys_in: Box<[Box<str>]>,
    none_meta_keys_in: Box<[Box<str>]>,
}

impl From<&RoutingConfig> for RoutingConstraints {
    fn from(c: &RoutingConfig) -> Self {
        let list = |v: &[String]| v.iter().map(|s| s.as_str().into()).collect();
        let pairs = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect()
        };
        Self {
            enabled: c.enabled,
            one_tag_in: list(&c.one_tag_in),
            all_tags_in: list(&c.all_tags_in),
            none_tag_in: list(&c.none_tag_in),
            one_meta_in: pairs(&c.one_meta_in),
            all_meta_in: pairs(&c.all_meta_in),
            none_meta_in: pairs(&c.none_meta_in),
            one_meta_key_in: list(&c.one_meta_key_in),
            all_meta_keys_in: list(&c.all_meta_keys_in),
            none_meta_keys_in: list(&c.none_meta_keys_in),
        }
    }
}

impl RoutingConstraints {
    /// Whether the constraints are enabled and say something: a `constrainedServicesOnly` key is
    /// accepted only on such routes.
    #[must_use]
    pub fn is_constraining(&self) -> bool {
        self.enabled
            && !(self.one_tag_in.is_empty()
                && self.all_tags_in.is_empty()
                && self.none_tag_in.is_empty()
                && self.one_meta_in.is_empty()
                && self.all_meta_in.is_empty()
                && self.none_meta_in.is_empty()
                && self.one_meta_key_in.is_empty()
                && self.all_meta_keys_in.is_empty()
                && self.none_meta_keys_in.is_empty())
    }

    /// Whether `key` satisfies the constraints (always, when they are disabled).
    #[must_use]
    pub fn matches(&self, key: &KeyEntry) -> bool {
        if !self.enabled {
            return true;
        }
        let tag = |t: &str| key.has_tag(t);
        let pair = |k: &str, v: &str| key.metadata_value(k) == Some(v);
        let meta_key = |k: &str| key.metadata_value(k).is_some();
        one(&self.one_tag_in, |t| tag(t))
            && self.all_tags_in.iter().all(|t| tag(t))
            && !self.none_tag_in.iter().any(|t| tag(t))
            && one(&self.one_meta_in, |(k, v)| pair(k, v))
            && self.all_meta_in.iter().all(|(k, v)| pair(k, v))
            && !self.none_meta_in.iter().any(|(k, v)| pair(k, v))
            && one(&self.one_meta_key_in, |k| meta_key(k))
            && self.all_meta_keys_in.iter().all(|k| meta_key(k))
            && !self.none_meta_keys_in.iter().any(|k| meta_key(k))
    }
}

/// "At least one of", where an empty list asks nothing.
fn one<T>(list: &[T], pred: impl FnMut(&T) -> bool) -> bool {
    list.is_empty() || list.iter().any(pred)
}

//! Entity-change envelopes (`tollgate.entities`): compact JSON, one per change.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::EventError;

/// Kafka topic (and journal stream) of entity changes, compacted on
/// [`EntityEvent::compaction_key`].
pub const ENTITIES_TOPIC: &str = "tollgate.entities";

const WHAT: &str = "entity event";

/// One change to one entity.
///
/// The topic is compacted, so the latest event of an entity must carry its whole state: every
/// action but `deleted` has the entity as a JSON object, `deleted` has `null`. Secrets inside
/// `entity` are sealed with the cluster key by the producer; this envelope does not look inside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityEvent {
    /// Unique id of this event (not empty).
    pub id: String,
    /// When the change was made, ms since the Unix epoch (UTC).
    pub at: i64,
    /// Who made it: an admin token name, `import`, `system`...
    pub actor: String,
    /// What was done.
    pub action: EntityAction,
    /// What kind of entity.
    pub kind: EntityKind,
    /// The entity's id (not empty).
    pub entity_id: String,
    /// The entity's version after the change: 1 for its first event, then increasing.
    pub version: u64,
    /// The entity's JSON after the change; `null` when deleted.
    pub entity: serde_json::Value,
}

/// What an [`EntityEvent`] did, serialised in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityAction {
    /// Created.
    Created,
    /// Changed.
    Updated,
    /// Removed; the event's `entity` is `null`.
    Deleted,
    /// An API key's secret rotated.
    Rotated,
    /// An API key's quota counters reset by an operator.
    QuotasReset,
    /// Brought in by `gateway import`.
    Imported,
}

/// The kind of entity an [`EntityEvent`] is about, serialised in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    /// An API.
    Api,
    /// A route.
    Route,
    /// A backend.
    Backend,
    /// An API key.
    ApiKey,
    /// An API consumer.
    Consumer,
    /// A subscription of a consumer to an API.
    Subscription,
    /// A certificate (its private key sealed in `entity`).
    Certificate,
}

impl EntityAction {
    /// Every action.
    pub const ALL: [Self; 6] = [
        Self::Created,
        Self::Updated,
        Self::Deleted,
        Self::Rotated,
        Self::QuotasReset,
        Self::Imported,
    ];

    /// The name used in JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::Rotated => "rotated",
            Self::QuotasReset => "quotas_reset",
            Self::Imported => "imported",
        }
    }
}

impl EntityKind {
    /// Every kind.
    pub const ALL: [Self; 7] = [
        Self::Api,
        Self::Route,
        Self::Backend,
        Self::ApiKey,
        Self::Consumer,
        Self::Subscription,
        Self::Certificate,
    ];

    /// The name used in JSON and in compaction keys.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Route => "route",
            Self::Backend => "backend",
            Self::ApiKey => "apikey",
            Self::Consumer => "consumer",
            Self::Subscription => "subscription",
            Self::Certificate => "certificate",
        }
    }
}

impl fmt::Display for EntityAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EntityEvent {
    /// The key of the compacted topic: `kind/entity_id` (e.g. `apikey/k-123`). Kinds contain no
    /// `/`, so the key splits unambiguously at its first `/`.
    #[must_use]
    pub fn compaction_key(&self) -> String {
        format!("{}/{}", self.kind, self.entity_id)
    }

    /// Checks what serde cannot: non-empty `id` and `entity_id`, `version >= 1`, and `entity`
    /// `null` exactly when the action is `deleted` (an object otherwise).
    ///
    /// # Errors
    ///
    /// [`EventError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.id.is_empty() {
            return Err(EventError::invalid(WHAT, "id", "must not be empty"));
        }
        if self.entity_id.is_empty() {
            return Err(EventError::invalid(WHAT, "entity_id", "must not be empty"));
        }
        if self.version == 0 {
            return Err(EventError::invalid(WHAT, "version", "must be at least 1"));
        }
        match (self.action, &self.entity) {
            (EntityAction::Deleted, serde_json::Value::Null) => Ok(()),
            (EntityAction::Deleted, _) => Err(EventError::invalid(
                WHAT,
                "entity",
                "must be null when action is deleted",
            )),
            (_, serde_json::Value::Object(_)) => Ok(()),
            (action, other) => Err(EventError::invalid(
                WHAT,
                "entity",
                format!(
                    "must be a JSON object when action is {action}, got {}",
                    crate::entity::json_kind(other)
                ),
            )),
        }
    }

    /// Compact JSON of the envelope.
    ///
    /// # Errors
    ///
    /// [`EventError::Invalid`] if [`validate`](Self::validate) fails.
    pub fn encode(&self) -> Result<Vec<u8>, EventError> {
        self.validate()?;
        EventError::to_json(WHAT, self)
    }

    /// Parses and validates an envelope.
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] with the field path, line and column for bad JSON, unknown fields,
    /// missing fields, wrong types and trailing bytes; [`EventError::Invalid`] if
    /// [`validate`](Self::validate) fails.
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        let event: Self = EventError::from_json(WHAT, bytes)?;
        event.validate()?;
        Ok(event)
    }
}

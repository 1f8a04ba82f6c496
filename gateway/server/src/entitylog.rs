//! The entity log: configuration as a log of entity events (DESIGN §4), kept in the embedded
//! journal's `entities` stream. The node's entities are the fold of the log ([`State`]).
//!
//! - Every change is an [`EntityEvent`] (`{id, at, actor, action, kind, entity_id, version,
//!   entity}`); versions count per entity from 1 and keep counting across a delete and a
//!   re-create. Each commit is appended and `fdatasync`ed before it is acknowledged.
//! - Secrets (`clientSecret`, `rotation.nextSecret`, the previous secret kept for the
//!   post-rotation grace, a certificate's `privateKey`) are sealed with the cluster key
//!   ([`crate::seal`]) before they reach the journal; [`redact`] turns sealed values into `***`
//!   for audit views, and [`Entity::to_view_json`] hides them in the admin API's answers where
//!   they are never shown (private keys).
//! - Start-up reads a fold snapshot (`<data_dir>/entities.snapshot.json`: the folded state and
//!   the journal offset it covers, written every N events) and replays only the events after
//!   it, so start-up time does not grow with the history.
//!
//! It never validates entities against each other (the admin API does, before committing) and
//! never touches the data plane (the caller publishes the fold).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use gateway_model::entity::{Api, ApiKey, Certificate, Route, Secret, StoredBackend};
use gateway_model::event::{EntityAction, EntityEvent, EntityKind};
use gateway_model::import::Entities;
use serde_json::{Value, json};

use crate::error::{GatewayError, GatewayErrorKind};
use crate::journal::{Journal, JournalError, JournalOptions, JournalReader, Stream, SyncPolicy};
use crate::seal::{ClusterKey, REDACTED, SEALED_PREFIX, SealError};

/// The private field of an API key's JSON in the log that carries Tollgate's rotation
/// bookkeeping (`startedAt`, `previousSecret` sealed, `previousUntil`).
pub const ROTATION_FIELD: &str = "_rotation";

/// Default number of events between two fold snapshots.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;

const SNAPSHOT_FILE: &str = "entities.snapshot.json";
const SNAPSHOT_FORMAT: u64 = 1;

/// Why the log could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The journal failed (or is locked by a running node).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A sealed value could not be opened (wrong cluster key?).
    #[error("entity log offset {offset}: {source}")]
    Seal {
        /// The record.
        offset: u64,
        /// Why.
        source: SealError,
    },
    /// A record is not a valid entity event.
    #[error("entity log offset {offset}: {reason}")]
    Record {
        /// The record.
        offset: u64,
        /// Why.
        reason: String,
    },
    /// Another node's event that this node's validation refuses (never folded).
    #[error("entity event refused: {problems}")]
    Refused {
        /// Why: every problem, with its path.
        problems: gateway_model::validate::Problems,
    },
    /// The snapshot file could not be written.
    #[error("entity snapshot {path}: {reason}")]
    Snapshot {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Rotation bookkeeping of an API key (beyond Otoroshi's `rotation` settings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RotationState {
    /// When the current rotation cycle started (ms since the epoch).
    pub started_at: Option<i64>,
    /// The secret replaced by the last rotation, still accepted until `previous_until`.
    pub previous: Option<Secret>,
    /// End of the post-rotation grace (ms since the epoch).
    pub previous_until: Option<i64>,
    /// When its quotas were last reset (`DELETE /api/apikeys/{id}/quotas`, ms since the epoch):
    /// a restart restores only the usage after it.
    pub quotas_reset_at: Option<i64>,
}

/// An entity of the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Entity {
    /// A route.
    Route(Box<Route>),
    /// A stored backend.
    Backend(Box<StoredBackend>),
    /// An API key and its rotation bookkeeping.
    ApiKey(Box<ApiKey>, RotationState),
    /// An API (with its consumers and subscriptions).
    Api(Box<Api>),
    /// A certificate (its private key in clear in memory, sealed in the log).
    Certificate(Box<Certificate>),
}

impl Entity {
    /// Its kind.
    pub fn kind(&self) -> EntityKind {
        match self {
            Self::Route(_) => EntityKind::Route,
            Self::Backend(_) => EntityKind::Backend,
            Self::ApiKey(..) => EntityKind::ApiKey,
            Self::Api(_) => EntityKind::Api,
            Self::Certificate(_) => EntityKind::Certificate,
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        match self {
            Self::Route(r) => &r.id,
            Self::Backend(b) => &b.id,
            Self::ApiKey(k, _) => &k.client_id,
            Self::Api(a) => &a.id,
            Self::Certificate(c) => &c.id,
        }
    }

    /// Its JSON with secrets in clear: the base of a merge patch, never an answer as it is
    /// (see [`to_view_json`](Self::to_view_json)).
    pub fn to_json(&self) -> Value {
        let value = match self {
            Self::Route(r) => serde_json::to_value(r),
            Self::Backend(b) => serde_json::to_value(b),
            Self::ApiKey(k, _) => serde_json::to_value(k),
            Self::Api(a) => serde_json::to_value(a),
            Self::Certificate(c) => serde_json::to_value(c),
        };
        value.unwrap_or(Value::Null)
    }

    /// Its JSON as the admin API answers it: a certificate's private key is `"***"` (an empty
    /// one stays empty); an API key's secrets stay in clear, as Otoroshi's admin API shows them
    /// (the caller holds the admin token and needs them to call).
    pub fn to_view_json(&self) -> Value {
        let mut value = self.to_json();
        if let (Self::Certificate(c), Some(obj)) = (self, value.as_object_mut()) {
            if c.key_pem().is_some() {
                obj.insert(PRIVATE_KEY.into(), Value::String(REDACTED.to_owned()));
            }
        }
        value
    }

    /// Its JSON as the log stores it: secrets sealed, rotation bookkeeping in
    /// [`ROTATION_FIELD`].
    ///
    /// # Errors
    /// When sealing fails (no randomness).
    pub fn to_log_json(&self, key: &ClusterKey) -> Result<Value, SealError> {
        let mut value = self.to_json();
        if let (Self::Certificate(c), Some(obj)) = (self, value.as_object_mut()) {
            if let Some(pem) = c.key_pem() {
                let at = context(EntityKind::Certificate, &c.id, PRIVATE_KEY);
                obj.insert(PRIVATE_KEY.into(), Value::String(key.seal(pem, &at)?));
            }
        }
        if let Self::ApiKey(k, rotation) = self {
            let id = &k.client_id;
            if let Some(obj) = value.as_object_mut() {
                let sealed = key.seal(
                    k.client_secret.expose(),
                    &context(EntityKind::ApiKey, id, "clientSecret"),
                )?;
                obj.insert("clientSecret".into(), Value::String(sealed));
                if let Some(next) = &k.rotation.next_secret {
                    let sealed = key.seal(
                        next.expose(),
                        &context(EntityKind::ApiKey, id, "nextSecret"),
                    )?;
                    if let Some(r) = obj.get_mut("rotation").and_then(Value::as_object_mut) {
                        r.insert("nextSecret".into(), Value::String(sealed));
                    }
                }
                if *rotation != RotationState::default() {
                    let previous = match &rotation.previous {
                        Some(p) => Value::String(
                            key.seal(p.expose(), &context(EntityKind::ApiKey, id, "previous"))?,
                        ),
                        None => Value::Null,
                    };
                    obj.insert(
                        ROTATION_FIELD.into(),
                        json!({
                            "startedAt": rotation.started_at,
                            "previousSecret": previous,
                            "previousUntil": rotation.previous_until,
                            "quotasResetAt": rotation.quotas_reset_at,
                        }),
                    );
                }
            }
        }
        Ok(value)
    }

    /// Reads an entity back from the log's JSON, opening sealed secrets.
    ///
    /// # Errors
    /// [`GatewayErrorKind::Sealed`] when a secret does not open with `key` (another cluster
    /// key, or changed bytes); [`GatewayErrorKind::Decode`] when the JSON does not describe a
    /// `kind` entity or a sealed value is malformed.
    pub fn from_log_json(
        kind: EntityKind,
        mut value: Value,
        key: &ClusterKey,
    ) -> Result<Self, GatewayError> {
        let json = |e: serde_json::Error| GatewayError::of(GatewayErrorKind::Decode, e);
        let parse = |v: Value| -> Result<Self, GatewayError> {
            Ok(match kind {
                EntityKind::Route => Self::Route(serde_json::from_value(v).map_err(json)?),
                EntityKind::Backend => Self::Backend(serde_json::from_value(v).map_err(json)?),
                EntityKind::Api => Self::Api(serde_json::from_value(v).map_err(json)?),
                EntityKind::Certificate => {
                    Self::Certificate(serde_json::from_value(v).map_err(json)?)
                }
                EntityKind::ApiKey => Self::ApiKey(
                    serde_json::from_value(v).map_err(json)?,
                    RotationState::default(),
                ),
                other => {
                    return Err(GatewayError::new(
                        GatewayErrorKind::Decode,
                        format!("kind `{other}` is not a top-level entity"),
                    ));
                }
            })
        };
        let id_field = match kind {
            EntityKind::ApiKey => "clientId",
            EntityKind::Certificate => "id",
            _ => return parse(value),
        };
        let id = value
            .get(id_field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let open = |v: &Value, field: &str| -> Result<Value, GatewayError> {
            match v.as_str() {
                Some(s) if s.starts_with(SEALED_PREFIX) => key
                    .open(s, &context(kind, &id, field))
                    .map(Value::String)
                    .map_err(|e| {
                        let kind = match e {
                            SealError::Open => GatewayErrorKind::Sealed,
                            _ => GatewayErrorKind::Decode,
                        };
                        GatewayError::with(kind, field, e)
                    }),
                _ => Ok(v.clone()),
            }
        };
        if kind == EntityKind::Certificate {
            if let Some(obj) = value.as_object_mut() {
                if let Some(sealed) = obj.get(PRIVATE_KEY) {
                    let clear = open(sealed, PRIVATE_KEY)?;
                    obj.insert(PRIVATE_KEY.into(), clear);
                }
            }
            return parse(value);
        }
        let mut rotation = RotationState::default();
        if let Some(obj) = value.as_object_mut() {
            if let Some(s) = obj.get("clientSecret") {
                let clear = open(s, "clientSecret")?;
                obj.insert("clientSecret".into(), clear);
            }
            if let Some(r) = obj.get_mut("rotation").and_then(Value::as_object_mut) {
                if let Some(s) = r.get("nextSecret") {
                    let clear = open(s, "nextSecret")?;
                    r.insert("nextSecret".into(), clear);
                }
            }
            if let Some(state) = obj.remove(ROTATION_FIELD) {
                rotation.started_at = state.get("startedAt").and_then(Value::as_i64);
                rotation.previous_until = state.get("previousUntil").and_then(Value::as_i64);
                rotation.quotas_reset_at = state.get("quotasResetAt").and_then(Value::as_i64);
                if let Some(p) = state.get("previousSecret").filter(|p| !p.is_null()) {
                    let clear = open(p, "previous")?;
                    rotation.previous = clear.as_str().map(Secret::new);
                }
            }
        }
        match parse(value)? {
            Self::ApiKey(k, _) => Ok(Self::ApiKey(k, rotation)),
            other => Ok(other),
        }
    }
}

/// The field of a certificate's JSON that holds its private key.
const PRIVATE_KEY: &str = "privateKey";

/// The associated data of a sealed secret: where it belongs (`apikey/k1/clientSecret`,
/// `certificate/c1/privateKey`), so that a sealed value cannot be moved to another entity or
/// field.
fn context(kind: EntityKind, id: &str, field: &str) -> String {
    format!("{kind}/{id}/{field}")
}

impl State {
    /// Quota resets recorded on API keys: client id → reset time (ms since the epoch).
    #[must_use]
    pub fn quota_resets(&self) -> std::collections::HashMap<String, i64> {
        self.list(EntityKind::ApiKey)
            .filter_map(|(e, _)| match e {
                Entity::ApiKey(k, r) => r.quotas_reset_at.map(|at| (k.client_id.clone(), at)),
                _ => None,
            })
            .collect()
    }
}

/// One entity's place in the fold.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Version of its last event.
    pub version: u64,
    /// The entity; `None` once deleted (the version is kept so a re-create counts on).
    pub entity: Option<Entity>,
    /// `(at, id)` of its last event: orders two events of the same version written on two nodes
    /// (the larger wins everywhere, so nodes converge).
    pub stamp: (i64, String),
}

/// The fold of the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    entries: BTreeMap<(EntityKind, String), Entry>,
}

impl State {
    /// The live entity `kind/id` and its version.
    pub fn get(&self, kind: EntityKind, id: &str) -> Option<(&Entity, u64)> {
        let entry = self.entries.get(&(kind, id.to_owned()))?;
        entry.entity.as_ref().map(|e| (e, entry.version))
    }

    /// The version of `kind/id`'s last event (0 if it never existed).
    pub fn version(&self, kind: EntityKind, id: &str) -> u64 {
        self.entries
            .get(&(kind, id.to_owned()))
            .map_or(0, |e| e.version)
    }

    /// Live entities of `kind`, in id order, with their versions.
    pub fn list(&self, kind: EntityKind) -> impl Iterator<Item = (&Entity, u64)> {
        self.entries
            .range((kind, String::new())..)
            .take_while(move |((k, _), _)| *k == kind)
            .filter_map(|(_, e)| e.entity.as_ref().map(|x| (x, e.version)))
    }

    /// `(at, node)` of `kind/id`'s last event: when and by which node it was written (the node
    /// that owns the key's rotation in a cluster).
    pub fn last_writer(&self, kind: EntityKind, id: &str) -> Option<(i64, &str)> {
        let entry = self.entries.get(&(kind, id.to_owned()))?;
        let (_, node) = entry.stamp.1.rsplit_once('@')?;
        Some((entry.stamp.0, node))
    }

    /// Every node id that wrote an event of the fold (its cluster as the log knows it).
    pub fn writers(&self) -> std::collections::BTreeSet<&str> {
        self.entries
            .values()
            .filter_map(|e| e.stamp.1.rsplit_once('@').map(|(_, n)| n))
            .collect()
    }

    /// Every live entity.
    pub fn all(&self) -> impl Iterator<Item = &Entity> {
        self.entries.values().filter_map(|e| e.entity.as_ref())
    }

    /// Whether no entity is live.
    pub fn is_empty(&self) -> bool {
        self.all().next().is_none()
    }

    /// Sets `kind/id` to `entity` at `version`.
    pub fn set(&mut self, kind: EntityKind, id: &str, version: u64, entity: Option<Entity>) {
        self.set_stamped(kind, id, version, entity, (0, String::new()));
    }

    /// Sets `kind/id` to `entity` at `version`, by the event stamped `(at, id)`.
    pub fn set_stamped(
        &mut self,
        kind: EntityKind,
        id: &str,
        version: u64,
        entity: Option<Entity>,
        stamp: (i64, String),
    ) {
        self.entries.insert(
            (kind, id.to_owned()),
            Entry {
                version,
                entity,
                stamp,
            },
        );
    }

    /// Whether an event of another node (version, stamp) supersedes what the fold holds for
    /// `kind/id`: a higher version, or the same version with a larger `(at, id)`.
    pub fn superseded_by(
        &self,
        kind: EntityKind,
        id: &str,
        version: u64,
        stamp: &(i64, String),
    ) -> bool {
        match self.entries.get(&(kind, id.to_owned())) {
            None => true,
            Some(e) => version > e.version || (version == e.version && *stamp > e.stamp),
        }
    }

    /// The entities as the data plane takes them, as they are at `now_ms`: a key still in its
    /// post-rotation grace also accepts its previous secret (in the `nextSecret` slot, when that
    /// is free).
    pub fn entities(&self, now_ms: i64) -> Entities {
        let mut out = Entities::default();
        for entity in self.all() {
            match entity {
                Entity::Route(r) => out.routes.push((**r).clone()),
                Entity::Backend(b) => out.backends.push((**b).clone()),
                Entity::Api(a) => out.apis.push((**a).clone()),
                Entity::Certificate(c) => out.certificates.push((**c).clone()),
                Entity::ApiKey(k, rotation) => {
                    let mut k = (**k).clone();
                    if let (Some(prev), Some(until)) = (&rotation.previous, rotation.previous_until)
                    {
                        if now_ms < until && k.rotation.next_secret.is_none() {
                            k.rotation.next_secret = Some(prev.clone());
                        }
                    }
                    out.apikeys.push(k);
                }
            }
        }
        out
    }

    /// The earliest instant after `now_ms` at which [`entities`](Self::entities) changes by
    /// itself (a post-rotation grace ends).
    pub fn next_expiry(&self, now_ms: i64) -> Option<i64> {
        self.all()
            .filter_map(|e| match e {
                Entity::ApiKey(_, r) if r.previous.is_some() => r.previous_until,
                _ => None,
            })
            .filter(|t| *t > now_ms)
            .min()
    }
}

/// One change to commit.
#[derive(Debug, Clone)]
pub struct Change {
    /// What is done.
    pub action: EntityAction,
    /// Kind of the entity.
    pub kind: EntityKind,
    /// Its id.
    pub id: String,
    /// The entity after the change; `None` for a delete.
    pub entity: Option<Entity>,
}

impl Change {
    /// An upsert (`created` when the entity is new, `updated` otherwise) is decided by the
    /// caller; this builds a change of `action` to `entity`.
    pub fn put(action: EntityAction, entity: Entity) -> Self {
        Self {
            action,
            kind: entity.kind(),
            id: entity.id().to_owned(),
            entity: Some(entity),
        }
    }

    /// A delete.
    pub fn delete(kind: EntityKind, id: &str) -> Self {
        Self {
            action: EntityAction::Deleted,
            kind,
            id: id.to_owned(),
            entity: None,
        }
    }
}

/// How the log is opened.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The node's data directory (`journal/entities/` and the fold snapshot live there).
    pub data_dir: PathBuf,
    /// This node's id: event ids end with `@<node_id>`, which tells the node's own events from
    /// the ones it received from other nodes.
    pub node_id: String,
    /// Events between two fold snapshots.
    pub snapshot_every: u64,
}

/// What opening found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// Events replayed from the journal (after the snapshot).
    pub replayed: u64,
    /// The offset the snapshot covered (0 without one).
    pub snapshot_offset: u64,
    /// Bytes cut from a torn journal tail.
    pub truncated_bytes: u64,
}

/// The entity log of one node.
#[derive(Debug)]
pub struct EntityLog {
    journal: Journal,
    dir: PathBuf,
    snapshot_path: PathBuf,
    key: ClusterKey,
    state: State,
    snapshot_every: u64,
    since_snapshot: u64,
    node_id: String,
}

/// Milliseconds since the Unix epoch.
pub use gateway_events::clock::now_ms;

fn event_id(node_id: &str) -> String {
    let unique: String = match crate::seal::random_bytes(16) {
        Ok(b) => b.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => format!("{:x}-{}", now_ms(), std::process::id()),
    };
    format!("{unique}@{node_id}")
}

/// Whether event `id` was written by node `node_id`.
pub fn written_by(id: &str, node_id: &str) -> bool {
    id.rsplit_once('@').is_some_and(|(_, n)| n == node_id)
}

impl EntityLog {
    /// Opens the log under `options.data_dir`: reads the fold snapshot (when there is one) and
    /// replays the journal after it.
    ///
    /// # Errors
    /// [`LogError::Journal`] when the journal cannot be opened (a running node holds its lock),
    /// [`LogError::Seal`] when a secret does not open with `key`, [`LogError::Record`] for a
    /// record that is not an entity event.
    pub fn open(options: &LogOptions, key: ClusterKey) -> Result<(Self, OpenReport), LogError> {
        let dir = Stream::Entities.dir(&options.data_dir.join("journal"));
        let journal_options = JournalOptions {
            sync: SyncPolicy::Always,
            ..JournalOptions::default()
        };
        let (journal, recovery) = Journal::open(&dir, journal_options)?;
        if recovery.truncated_bytes > 0 {
            tracing::warn!(
                segment = %recovery.segment.display(),
                truncated_bytes = recovery.truncated_bytes,
                damage = %recovery.damage.map_or_else(String::new, |d| d.to_string()),
                "entity log: torn tail truncated at start"
            );
        }
        let snapshot_path = options.data_dir.join(SNAPSHOT_FILE);
        let mut report = OpenReport {
            truncated_bytes: recovery.truncated_bytes,
            ..OpenReport::default()
        };
        let mut state = State::default();
        let mut from = journal.first_offset();
        if let Some((offset, snap)) = read_snapshot(&snapshot_path, &key) {
            if offset >= journal.first_offset() && offset <= journal.next_offset() {
                state = snap;
                from = offset;
                report.snapshot_offset = offset;
            } else {
                tracing::warn!(
                    offset,
                    journal_next = journal.next_offset(),
                    "entity snapshot does not match the journal; replaying the whole log"
                );
            }
        }
        let mut reader = JournalReader::open(&dir, from)?;
        loop {
            let (offset, event) = match reader.next_record() {
                Ok(Some(record)) => match EntityEvent::decode(record.payload) {
                    Ok(e) => (record.offset, e),
                    Err(e) => {
                        return Err(LogError::Record {
                            offset: record.offset,
                            reason: e.to_string(),
                        });
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    let skipped = reader.skip_corrupt()?;
                    tracing::error!(
                        error = %e,
                        offset = skipped.as_ref().map(|s| s.offset),
                        next_offset = skipped.as_ref().map(|s| s.next_offset),
                        "entity log: corrupt record skipped"
                    );
                    if skipped.is_none() {
                        break;
                    }
                    continue;
                }
            };
            fold(&mut state, &event, &key, offset)?;
            report.replayed += 1;
        }
        let log = Self {
            journal,
            dir,
            snapshot_path,
            key,
            state,
            snapshot_every: options.snapshot_every.max(1),
            since_snapshot: report.replayed,
            node_id: options.node_id.clone(),
        };
        Ok((log, report))
    }

    /// The fold.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether no event was ever written.
    pub fn is_empty(&self) -> bool {
        self.journal.next_offset() == 0
    }

    /// The offset the next event will get.
    pub fn next_offset(&self) -> u64 {
        self.journal.next_offset()
    }

    /// The journal directory of the log (for readers such as `/api/events`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster key.
    pub fn key(&self) -> &ClusterKey {
        &self.key
    }

    /// Appends `changes` as events by `actor` at `at` (versions assigned here), syncs them to
    /// disk and folds them. Returns the events as written (secrets sealed).
    ///
    /// # Errors
    /// When sealing, appending or syncing fails; then nothing was folded (the journal may hold
    /// a prefix of the batch, which the next start folds: each event is whole on its own).
    pub fn commit(
        &mut self,
        changes: Vec<Change>,
        actor: &str,
        at: i64,
    ) -> Result<Vec<(u64, EntityEvent)>, LogError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut events = Vec::with_capacity(changes.len());
        let mut payloads = Vec::with_capacity(changes.len());
        let mut versions: BTreeMap<(EntityKind, String), u64> = BTreeMap::new();
        let next = self.journal.next_offset();
        for change in &changes {
            let slot = versions
                .entry((change.kind, change.id.clone()))
                .or_insert_with(|| self.state.version(change.kind, &change.id));
            *slot += 1;
            let entity = match &change.entity {
                Some(e) => e.to_log_json(&self.key).map_err(|source| LogError::Seal {
                    offset: next,
                    source,
                })?,
                None => Value::Null,
            };
            let event = EntityEvent {
                id: event_id(&self.node_id),
                at,
                actor: actor.to_owned(),
                action: change.action,
                kind: change.kind,
                entity_id: change.id.clone(),
                version: *slot,
                entity,
            };
            let bytes = event.encode().map_err(|e| LogError::Record {
                offset: next,
                reason: e.to_string(),
            })?;
            payloads.push(bytes);
            events.push(event);
        }
        let range = self.journal.append_batch(&payloads)?;
        self.journal.sync()?;
        let mut out = Vec::with_capacity(events.len());
        for ((change, event), offset) in changes.into_iter().zip(events).zip(range) {
            self.state.set_stamped(
                change.kind,
                &change.id,
                event.version,
                change.entity,
                (event.at, event.id.clone()),
            );
            out.push((offset, event));
        }
        self.after_append(out.len());
        Ok(out)
    }

    fn after_append(&mut self, n: usize) {
        self.since_snapshot += n as u64;
        if self.since_snapshot >= self.snapshot_every {
            if let Err(e) = self.write_snapshot() {
                tracing::warn!(error = %e, "entity snapshot not written; start-up replays more");
            }
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Applies an event written by another node (received through Kafka) when it supersedes
    /// what the fold holds (a higher version, or the same version with a larger `(at, id)`):
    /// appends it as it is (secrets stay sealed: the cluster shares the key), syncs and folds.
    /// Returns whether it was applied. `check` first validates the entity id and the entity
    /// (`None` for a delete) as a local write would be.
    ///
    /// # Errors
    /// [`LogError::Refused`] when `check` refuses it (nothing is appended); when its secrets do
    /// not open with this node's cluster key, or the journal fails.
    pub fn apply_remote(
        &mut self,
        event: &EntityEvent,
        check: impl FnOnce(&str, Option<&Entity>) -> Result<(), gateway_model::validate::Problems>,
    ) -> Result<bool, LogError> {
        let stamp = (event.at, event.id.clone());
        if written_by(&event.id, &self.node_id)
            || !self
                .state
                .superseded_by(event.kind, &event.entity_id, event.version, &stamp)
        {
            return Ok(false);
        }
        let next = self.journal.next_offset();
        // Validated as a local write would be, before anything is appended: every node runs
        // the same checks on the same events, so they all fold the same ones.
        let entity = match event.action {
            EntityAction::Deleted => None,
            _ => Some(
                Entity::from_log_json(event.kind, event.entity.clone(), &self.key).map_err(
                    |e| LogError::Record {
                        offset: next,
                        reason: e.to_string(),
                    },
                )?,
            ),
        };
        check(&event.entity_id, entity.as_ref())
            .map_err(|problems| LogError::Refused { problems })?;
        // Opened first, so that an event this node cannot read is never appended.
        let mut probe = State::default();
        fold(&mut probe, event, &self.key, next)?;
        let bytes = event.encode().map_err(|e| LogError::Record {
            offset: next,
            reason: e.to_string(),
        })?;
        self.journal.append(&bytes)?;
        self.journal.sync()?;
        fold(&mut self.state, event, &self.key, next)?;
        self.after_append(1);
        Ok(true)
    }

    /// Writes the fold snapshot (atomically: a temporary file, fsync, rename).
    ///
    /// # Errors
    /// [`LogError::Snapshot`] when the file cannot be written.
    pub fn write_snapshot(&mut self) -> Result<(), LogError> {
        let bad = |reason: String| LogError::Snapshot {
            path: self.snapshot_path.clone(),
            reason,
        };
        let mut entries = Vec::new();
        for ((kind, id), entry) in &self.state.entries {
            let entity = match &entry.entity {
                Some(e) => e.to_log_json(&self.key).map_err(|e| bad(e.to_string()))?,
                None => Value::Null,
            };
            entries.push(json!({"kind": kind, "id": id, "version": entry.version,
                                "at": entry.stamp.0, "event": entry.stamp.1, "entity": entity}));
        }
        let doc = json!({
            "format": SNAPSHOT_FORMAT,
            "next_offset": self.journal.next_offset(),
            "entries": entries,
        });
        let bytes = serde_json::to_vec(&doc).map_err(|e| bad(e.to_string()))?;
        let tmp = self.snapshot_path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.snapshot_path)?;
            if let Some(dir) = self.snapshot_path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| bad(e.to_string()))?;
        self.since_snapshot = 0;
        Ok(())
    }

    /// Up to `limit` events after offset `after` (all from the start when `None`), with their
    /// offsets, secrets redacted.
    ///
    /// # Errors
    /// When the journal cannot be read.
    pub fn events_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, EntityEvent)>, LogError> {
        read_events(&self.dir, after, limit)
    }
}

/// Up to `limit` events of the log in `dir` after offset `after`, secrets redacted.
///
/// # Errors
/// When the journal cannot be read.
pub fn read_events(
    dir: &Path,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<(u64, EntityEvent)>, LogError> {
    let from = after.map_or(0, |a| a.saturating_add(1));
    let (mut reader, _) = JournalReader::open_retained(dir, from)?;
    let mut out = Vec::new();
    while out.len() < limit {
        match reader.next_record() {
            Ok(Some(record)) => {
                if let Ok(mut event) = EntityEvent::decode(record.payload) {
                    redact(&mut event.entity);
                    out.push((record.offset, event));
                }
            }
            Ok(None) => break,
            Err(_) => {
                if reader.skip_corrupt()?.is_none() {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// The one redaction rule of views (`gateway_model::redact`): sealed values and secret fields.
pub use gateway_model::redact::redact;

fn fold(
    state: &mut State,
    event: &EntityEvent,
    key: &ClusterKey,
    offset: u64,
) -> Result<(), LogError> {
    let entity = match event.action {
        EntityAction::Deleted => None,
        _ => Some(
            Entity::from_log_json(event.kind, event.entity.clone(), key).map_err(|e| {
                if e.kind == GatewayErrorKind::Sealed {
                    LogError::Seal {
                        offset,
                        source: SealError::Open,
                    }
                } else {
                    LogError::Record {
                        offset,
                        reason: e.to_string(),
                    }
                }
            })?,
        ),
    };
    state.set_stamped(
        event.kind,
        &event.entity_id,
        event.version,
        entity,
        (event.at, event.id.clone()),
    );
    Ok(())
}

fn read_snapshot(path: &Path, key: &ClusterKey) -> Option<(u64, State)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "entity snapshot unreadable");
            return None;
        }
    };
    let bad = |what: &str| GatewayError::new(GatewayErrorKind::Decode, what);
    let json = |e: serde_json::Error| GatewayError::of(GatewayErrorKind::Decode, e);
    let parsed = || -> Result<(u64, State), GatewayError> {
        let doc: Value = serde_json::from_slice(&bytes).map_err(json)?;
        if doc.get("format").and_then(Value::as_u64) != Some(SNAPSHOT_FORMAT) {
            return Err(bad("unknown format"));
        }
        let offset = doc
            .get("next_offset")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("no next_offset"))?;
        let mut state = State::default();
        for e in doc
            .get("entries")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no entries"))?
        {
            let kind: EntityKind =
                serde_json::from_value(e.get("kind").cloned().unwrap_or_default()).map_err(json)?;
            let id = e
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("no id"))?;
            let version = e
                .get("version")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("no version"))?;
            let entity = match e.get("entity") {
                Some(Value::Null) | None => None,
                Some(v) => Some(Entity::from_log_json(kind, v.clone(), key)?),
            };
            let at = e.get("at").and_then(Value::as_i64).unwrap_or(0);
            let event = e.get("event").and_then(Value::as_str).unwrap_or_default();
            state.set_stamped(kind, id, version, entity, (at, event.to_owned()));
        }
        Ok((offset, state))
    };
    match parsed() {
        Ok(found) => Some(found),
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "entity snapshot ignored; replaying the log");
            None
        }
    }
}

pub mod kafka;

#[cfg(test)]
mod tests;

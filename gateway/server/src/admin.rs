//! The admin API: its own listener and threads (never a core; the server is gateway-httpd's,
//! which checks `Authorization: Bearer <token>` in constant time from the request head, before
//! any body byte is read), REST CRUD of the entities, bulk import, quotas, call examples,
//! the entity log, metrics, health and the OpenAPI description (docs/admin.md).
//!
//! Every write validates the whole resulting entity set (entity values, references, and a
//! trial snapshot build) before anything is appended; then the events are appended and synced,
//! and the new fold is published to the cores. Nothing is half-applied. It never logs a secret,
//! and never answers a certificate's private key (`"***"`; a write that sends `"***"` back keeps
//! the stored key).

mod apim;
mod issue;
mod json;
pub mod rotation;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use gateway_httpd::{BearerToken, Head, error_body};
use gateway_model::entity::{
    Api, ApiKey, Backend, Certificate, Consumer, Route, Secret, StoredBackend, Subscription,
};
use gateway_model::event::{EntityAction, EntityKind};
use gateway_model::import::{Entities, import_document_at};
use gateway_model::validate::{Plugged, Problems, Validate, from_value, refuse_unknown_plugins};
use serde_json::{Value, json};

pub use gateway_httpd::{Request, Response};

use crate::entitylog::{Change, Entity, EntityLog, LogError, RotationState, State};
use crate::error::{GatewayError, GatewayErrorKind};
use crate::node::Publisher;

/// The OpenAPI 3 description of this API (one source: docs/admin-openapi.json).
pub const OPENAPI: &str = include_str!("../../../docs/admin-openapi.json");

/// Largest body of `POST /api/import` (bulk imports).
pub const MAX_IMPORT_BODY: u64 = 32 << 20;
/// Largest body of every other write.
pub const MAX_WRITE_BODY: u64 = 1 << 20;

/// How long a write waits for every core to serve it before the API answers anyway (a core
/// takes a new snapshot on its next tick, 50 ms; longer only when a core is stalled).
const APPLY_WAIT: Duration = Duration::from_secs(2);

/// A clock: ms since the Unix epoch (injected by tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How the admin API runs.
#[derive(Clone)]
pub struct AdminOptions {
    /// Listener address (port 0 picks one).
    pub addr: SocketAddr,
    /// The bearer token.
    pub token: Secret,
    /// How long a rotated-out secret stays accepted, ms (0: not at all, as Otoroshi).
    pub previous_secret_grace_ms: i64,
    /// How often due rotations are checked.
    pub rotation_every: Duration,
    /// The clock of rotations and event times.
    pub clock: Clock,
    /// Base URL of the data plane for call examples (`http://127.0.0.1:8080`).
    pub public_url: String,
    /// The IO driver the cores use (for `/metrics`).
    pub driver: String,
    /// Share the entity log through Kafka (`[events] sink = "kafka"`).
    pub kafka: Option<crate::entitylog::kafka::KafkaLogConfig>,
    /// Limits of the listener: request deadline, idle timeout, connection caps.
    pub http: gateway_httpd::Limits,
    /// Serve `GET /metrics` without the bearer token (`[admin] metrics_public`).
    pub metrics_public: bool,
}

impl std::fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminOptions")
            .field("addr", &self.addr)
            .field("token", &self.token)
            .field("previous_secret_grace_ms", &self.previous_secret_grace_ms)
            .field("public_url", &self.public_url)
            .field("http", &self.http)
            .field("metrics_public", &self.metrics_public)
            .finish_non_exhaustive()
    }
}

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(crate::core::now_ms)
}

/// The running admin API.
#[derive(Debug)]
pub struct AdminServer {
    server: gateway_httpd::Server,
    admin: Arc<Admin>,
    stop: Arc<AtomicBool>,
    rotation: Option<JoinHandle<()>>,
    follower: Option<crate::entitylog::kafka::Follower>,
    forwarder: Option<crate::entitylog::kafka::Forwarder>,
}

impl AdminServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Runs the rotation check once now (tests with an injected clock).
    pub fn check_rotations(&self) {
        self.admin.rotate();
    }

    /// Stops the listener and the rotation thread, and writes the fold snapshot.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.rotation.take() {
            let _ = t.join();
        }
        if let Some(f) = self.follower.take() {
            f.shutdown();
        }
        if let Some(f) = self.forwarder.take() {
            f.shutdown();
        }
        self.server.shutdown();
        let mut log = self
            .admin
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = log.write_snapshot() {
            tracing::warn!(error = %e, "entity snapshot not written at shutdown");
        }
    }
}

/// Starts the admin API over `log`, publishing changes through `publisher`.
///
/// # Errors
/// When the address cannot be bound or a thread cannot be spawned.
pub fn start(
    options: AdminOptions,
    log: EntityLog,
    publisher: Publisher,
) -> std::io::Result<AdminServer> {
    let forwarder = match &options.kafka {
        Some(kafka) => Some(crate::entitylog::kafka::Forwarder::start(
            kafka,
            log.dir().to_owned(),
        )?),
        None => None,
    };
    let admin = Arc::new(Admin {
        token: BearerToken::new(options.token.expose()),
        http_stats: OnceLock::new(),
        log: Mutex::new(log),
        publisher,
        options: options.clone(),
        requests: Mutex::new(std::collections::BTreeMap::new()),
        events_written: AtomicU64::new(0),
        events_sent: forwarder
            .as_ref()
            .map(crate::entitylog::kafka::Forwarder::sent_counter),
    });
    let follower = match &options.kafka {
        Some(kafka) => {
            let receiver = admin.clone();
            Some(crate::entitylog::kafka::Follower::start(
                kafka,
                move |event| {
                    receiver.apply_remote(&event);
                },
            )?)
        }
        None => None,
    };
    let server = gateway_httpd::Server::bind(
        options.addr,
        "tollgate-admin",
        options.http,
        AdminHttp(admin.clone()),
    )?;
    let _ = admin.http_stats.set(server.stats());
    let stop = Arc::new(AtomicBool::new(false));
    let rotation = {
        let admin = admin.clone();
        let stop = stop.clone();
        let every = options.rotation_every.max(Duration::from_millis(10));
        std::thread::Builder::new()
            .name("tollgate-rotation".to_owned())
            .spawn(move || {
                let step = Duration::from_millis(10).min(every);
                let mut waited = Duration::ZERO;
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(step);
                    waited += step;
                    if waited >= every {
                        waited = Duration::ZERO;
                        admin.rotate();
                    }
                }
            })?
    };
    Ok(AdminServer {
        server,
        admin,
        stop,
        rotation: Some(rotation),
        follower,
        forwarder,
    })
}

struct Admin {
    token: BearerToken,
    /// The listener's counters (set once it is bound), for `/metrics`.
    http_stats: OnceLock<Arc<gateway_httpd::Stats>>,
    log: Mutex<EntityLog>,
    publisher: Publisher,
    options: AdminOptions,
    requests: Mutex<std::collections::BTreeMap<(String, u16), u64>>,
    events_written: AtomicU64,
    events_sent: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// The collections of top-level entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Apis,
    Routes,
    Backends,
    ApiKeys,
    Certificates,
}

impl Collection {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "apis" => Self::Apis,
            "routes" => Self::Routes,
            "backends" => Self::Backends,
            "apikeys" => Self::ApiKeys,
            "certificates" => Self::Certificates,
            _ => return None,
        })
    }

    fn kind(self) -> EntityKind {
        match self {
            Self::Apis => EntityKind::Api,
            Self::Routes => EntityKind::Route,
            Self::Backends => EntityKind::Backend,
            Self::ApiKeys => EntityKind::ApiKey,
            Self::Certificates => EntityKind::Certificate,
        }
    }

    fn id_field(self) -> &'static str {
        match self {
            Self::ApiKeys => "clientId",
            _ => "id",
        }
    }
}

/// A failed request: the status and the JSON body.
struct Failure(Response);

fn fail(status: u16, code: &str, text: impl Into<String>) -> Failure {
    Failure(Response::json_pretty(
        status,
        &error_body(code, &text.into()),
    ))
}

fn invalid(problems: &Problems) -> Failure {
    let list: Vec<Value> = problems
        .iter()
        .map(|p| json!({"path": p.path, "message": p.message}))
        .collect();
    let mut body = error_body("invalid_entity", &format!("{} problem(s)", problems.len()));
    if let Some(obj) = body.as_object_mut() {
        obj.insert("problems".to_owned(), Value::Array(list));
    }
    Failure(Response::json_pretty(400, &body))
}

fn not_found(kind: &str, id: &str) -> Failure {
    fail(404, "not_found", format!("no {kind} `{id}`"))
}

fn internal(e: &LogError) -> Failure {
    tracing::error!(error = %e, "admin API: entity log write failed");
    fail(
        500,
        "log_failed",
        "the entity log could not be written; nothing was applied",
    )
}

type Outcome = Result<Response, Failure>;

/// The admin API as gateway-httpd serves it.
struct AdminHttp(Arc<Admin>);

impl gateway_httpd::Handler for AdminHttp {
    /// `/health` and `/openapi.json` are public (and `/metrics` with `[admin] metrics_public`);
    /// everything else needs the bearer token,
    /// checked here from the head alone, so that nothing of a body is read (or allocated) for
    /// an unauthenticated caller.
    fn authorize(&self, head: &Head) -> Result<(), Response> {
        let public_metrics =
            self.0.options.metrics_public && head.method == "GET" && head.path == "/metrics";
        if is_public(head) || public_metrics || self.0.token.matches(head) {
            return Ok(());
        }
        let refusal = gateway_httpd::unauthorized();
        self.0.count(&head.path, refusal.status);
        Err(refusal)
    }

    fn body_limit(&self, head: &Head) -> u64 {
        match (head.method.as_str(), head.path.as_str()) {
            ("POST", "/api/import") => MAX_IMPORT_BODY,
            ("POST" | "PUT" | "PATCH" | "DELETE", _) => MAX_WRITE_BODY,
            _ => 0,
        }
    }

    fn handle(&self, request: &Request) -> Response {
        self.0.handle(request)
    }
}

/// The endpoints served without a token.
fn is_public(head: &Head) -> bool {
    head.method == "GET" && matches!(head.path.as_str(), "/health" | "/openapi.json")
}

impl Admin {
    fn handle(&self, req: &Request) -> Response {
        let response = match self.route(req) {
            Ok(r) | Err(Failure(r)) => r,
        };
        self.count(&req.head.path, response.status);
        response
    }

    fn count(&self, path: &str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((metric_path(path), status))
            .or_default() += 1;
    }

    /// Routes an authorized request (the token was checked by [`AdminHttp::authorize`]).
    fn route(&self, req: &Request) -> Outcome {
        let parts: Vec<&str> = req.head.path.split('/').filter(|s| !s.is_empty()).collect();
        let method = req.head.method.as_str();
        match (method, parts.as_slice()) {
            ("GET", ["health"]) => Ok(Response::json_pretty(
                200,
                &json!({"status": "ok", "generation": self.publisher.current().generation}),
            )),
            ("GET", ["openapi.json"]) => Ok(Response::text(200, "application/json", OPENAPI)),
            ("GET", ["metrics"]) => Ok(self.metrics()),
            ("GET", ["api", "events"]) => self.events(req),
            ("POST", ["api", "import"]) => self.import(req),
            (_, ["api", "apikeys", id, "quotas"]) => self.quotas(method, id),
            ("GET", ["api", "apikeys", id, "call-examples"]) => self.call_examples(id),
            (_, ["api", "apis", api, sub @ ("consumers" | "subscriptions")]) => {
                self.sub_collection(req, api, sub)
            }
            (
                _,
                [
                    "api",
                    "apis",
                    api,
                    sub @ ("consumers" | "subscriptions"),
                    id,
                ],
            ) => self.sub_item(req, api, sub, id),
            ("POST", ["api", "apis", api, "subscriptions", id, "rotate"]) => {
                self.rotate_subscription(req, api, id)
            }
            (_, ["api", "apis", _, "subscriptions", _, "rotate"]) => {
                Err(method_not_allowed("POST"))
            }
            ("POST", ["api", "oauth", "token-keys", "rotate"]) => self.rotate_token_keys(),
            (_, ["api", "oauth", "token-keys", "rotate"]) => Err(method_not_allowed("POST")),
            (_, ["api", coll]) => {
                let c = Collection::parse(coll).ok_or_else(|| not_found("collection", coll))?;
                match method {
                    "GET" => self.list(req, c),
                    "POST" => self.create(req, c),
                    _ => Err(method_not_allowed("GET, POST")),
                }
            }
            (_, ["api", coll, id]) => {
                let c = Collection::parse(coll).ok_or_else(|| not_found("collection", coll))?;
                match method {
                    "GET" => self.get(c, id),
                    "PUT" => self.replace(req, c, id, false),
                    "PATCH" => self.replace(req, c, id, true),
                    "DELETE" => self.delete(req, c, id),
                    _ => Err(method_not_allowed("GET, PUT, PATCH, DELETE")),
                }
            }
            _ => Err(fail(
                404,
                "not_found",
                format!("no endpoint {}", req.head.path),
            )),
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, EntityLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> i64 {
        (self.options.clock)()
    }

    /// Validates `candidate` (the whole state after `changes`), commits the changes and
    /// publishes the fold. The caller holds the log.
    fn commit(
        &self,
        log: &mut EntityLog,
        changes: Vec<Change>,
        actor: &str,
    ) -> Result<Vec<(u64, gateway_model::event::EntityEvent)>, Failure> {
        let now = self.now();
        let entities = publishable(&candidate(log, &changes)?, now);
        if let Err(e) = self.publisher.build(&entities) {
            let mut p = Problems::default();
            p.push("", e.to_string());
            return Err(invalid(&p));
        }
        let written = log.commit(changes, actor, now).map_err(|e| internal(&e))?;
        self.events_written
            .fetch_add(written.len() as u64, Ordering::Relaxed);
        match self.publisher.apply(publishable(log.state(), now)) {
            // Read-your-writes: the answer leaves once every core serves the change.
            Ok(generation) => {
                if !self.publisher.wait_applied(generation, APPLY_WAIT) {
                    tracing::warn!(
                        generation,
                        "admin API: a core did not take the change within {APPLY_WAIT:?}; answering anyway"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "admin API: committed change did not publish"),
        }
        for (offset, event) in &written {
            tracing::info!(
                offset,
                action = %event.action,
                kind = %event.kind,
                id = %event.entity_id.escape_debug(),
                version = event.version,
                actor = %event.actor.escape_debug(),
                "entity changed"
            );
        }
        Ok(written)
    }

    /// Applies an event of another node (from the Kafka topic) and publishes the new fold. Its
    /// strings are logged escaped: they did not pass this node's validation.
    fn apply_remote(&self, event: &gateway_model::event::EntityEvent) {
        let mut log = self.log();
        match log.apply_remote(event, remote_check) {
            Ok(true) => {
                if let Err(e) = self.publisher.apply(publishable(log.state(), self.now())) {
                    tracing::error!(error = %e, id = %event.entity_id.escape_debug(), "received change did not publish");
                }
                // A quota reset made on another node applies here too (a reset this node has
                // applied already, or an older one, changes nothing).
                if let Some((Entity::ApiKey(key, bookkeeping), _)) =
                    log.state().get(EntityKind::ApiKey, &event.entity_id)
                {
                    if let Some(at) = bookkeeping.quotas_reset_at {
                        self.publisher.current().pool.reset(&key.client_id, at);
                    }
                }
                tracing::info!(
                    action = %event.action,
                    kind = %event.kind,
                    id = %event.entity_id.escape_debug(),
                    version = event.version,
                    actor = %event.actor.escape_debug(),
                    "entity received"
                );
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, id = %event.entity_id.escape_debug(), "received entity event not applied")
            }
        }
    }

    fn rotate(&self) {
        let mut log = self.log();
        let now = self.now();
        let grace = self.options.previous_secret_grace_ms;
        // In a cluster each key's rotation has one owner (rotation.rs); a node alone owns all.
        let changes = match &self.options.kafka {
            Some(kafka) => rotation::due_owned(log.state(), now, grace, &kafka.node_id),
            None => rotation::due(log.state(), now, grace),
        };
        if changes.is_empty() {
            return;
        }
        if let Err(Failure(r)) = self.commit(&mut log, changes, "rotation") {
            tracing::error!(
                status = r.status,
                body = %String::from_utf8_lossy(&r.body),
                "rotation could not be committed"
            );
        }
    }

    fn list(&self, req: &Request, c: Collection) -> Outcome {
        let mut problems = Problems::default();
        let (page, size) =
            json::pagination(req.param("page"), req.param("page_size"), &mut problems);
        if !problems.is_empty() {
            return Err(invalid(&problems));
        }
        let filters: Vec<(&str, &str)> = req
            .head
            .query
            .iter()
            .filter(|(k, _)| k != "page" && k != "page_size")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let log = self.log();
        let issued = apim::issued_keys(log.state());
        let matching: Vec<Value> = log
            .state()
            .list(c.kind())
            .map(|(e, v)| with_version(shown(e, &issued), v))
            .filter(|j| filters.iter().all(|(k, v)| json::field_matches(j, k, v)))
            .collect();
        let total = matching.len();
        let items: Vec<Value> = matching
            .into_iter()
            .skip((page - 1).saturating_mul(size))
            .take(size)
            .collect();
        Ok(Response::json_pretty(200, &Value::Array(items))
            .with_header("x-total-count", total.to_string())
            .with_header("x-page", page.to_string())
            .with_header("x-page-size", size.to_string()))
    }

    fn get(&self, c: Collection, id: &str) -> Outcome {
        let log = self.log();
        let (e, v) = log
            .state()
            .get(c.kind(), id)
            .ok_or_else(|| not_found(c.kind().as_str(), id))?;
        let issued = apim::issued_keys(log.state());
        Ok(
            Response::json_pretty(200, &with_version(shown(e, &issued), v))
                .with_header("etag", format!("\"{v}\"")),
        )
    }

    fn create(&self, req: &Request, c: Collection) -> Outcome {
        let mut body = parse_body(&req.body)?;
        let _ = take_version(&mut body, c.kind());
        let Some(obj) = body.as_object_mut() else {
            return Err(body_not_object());
        };
        // Like Otoroshi's templates: a missing id (and a key's missing secret) is generated.
        if !obj.contains_key(c.id_field()) {
            let id = match c {
                Collection::ApiKeys => rotation::random_lower(16),
                other => format!("{}_{}", other.kind(), rotation::random_lower(12)),
            };
            obj.insert(c.id_field().to_owned(), Value::String(id));
        }
        if c == Collection::ApiKeys && !obj.contains_key("clientSecret") {
            obj.insert(
                "clientSecret".to_owned(),
                Value::String(rotation::random_token(64)),
            );
        }
        let mut log = self.log();
        let entity = parse_entity(c, &body, None)?;
        let id = entity.id().to_owned();
        if log.state().get(c.kind(), &id).is_some() {
            return Err(fail(
                409,
                "conflict",
                format!("{} `{id}` already exists; PUT or PATCH it", c.kind()),
            ));
        }
        let entity = self.stamp_rotation(entity, None);
        let mut changes = Vec::new();
        let entity = match entity {
            Entity::Api(api) => {
                let done = apim::reconcile(log.state(), None, *api, self.now())?;
                changes = done.keys;
                Entity::Api(Box::new(done.api))
            }
            other => other,
        };
        changes.insert(0, Change::put(EntityAction::Created, entity));
        let written = self.commit(&mut log, changes, "admin")?;
        let version = written.first().map_or(1, |(_, e)| e.version);
        let (e, _) = log
            .state()
            .get(c.kind(), &id)
            .ok_or_else(|| not_found(c.kind().as_str(), &id))?;
        Ok(entity_response(201, e, version))
    }

    fn replace(&self, req: &Request, c: Collection, id: &str, patch: bool) -> Outcome {
        let mut body = parse_body(&req.body)?;
        let body_version = take_version(&mut body, c.kind());
        if !body.is_object() {
            return Err(body_not_object());
        }
        let mut log = self.log();
        let (current, version) = log
            .state()
            .get(c.kind(), id)
            .ok_or_else(|| not_found(c.kind().as_str(), id))?;
        check_version(req, body_version, version)?;
        let current = current.clone();
        if c == Collection::ApiKeys {
            managed_key(log.state(), id)?;
        }
        let mut doc = if patch {
            let mut doc = current.to_json();
            json::merge_patch(&mut doc, &body);
            doc
        } else {
            body
        };
        if let Some(obj) = doc.as_object_mut() {
            obj.entry(c.id_field().to_owned())
                .or_insert_with(|| Value::String(id.to_owned()));
            keep_private_key(obj, &current);
        }
        let entity = parse_entity(c, &doc, Some(id))?;
        let entity = self.stamp_rotation(entity, Some(&current));
        let mut changes = Vec::new();
        let entity = match (entity, &current) {
            (Entity::Api(api), Entity::Api(old)) => {
                let done = apim::reconcile(log.state(), Some(old), *api, self.now())?;
                changes = done.keys;
                Entity::Api(Box::new(done.api))
            }
            (other, _) => other,
        };
        if entity == current && changes.is_empty() {
            return Ok(entity_response(200, &current, version));
        }
        changes.insert(0, Change::put(EntityAction::Updated, entity));
        let written = self.commit(&mut log, changes, "admin")?;
        let version = written.first().map_or(version, |(_, e)| e.version);
        let (e, _) = log
            .state()
            .get(c.kind(), id)
            .ok_or_else(|| not_found(c.kind().as_str(), id))?;
        Ok(entity_response(200, e, version))
    }

    fn delete(&self, req: &Request, c: Collection, id: &str) -> Outcome {
        let mut log = self.log();
        let (current, version) = log
            .state()
            .get(c.kind(), id)
            .ok_or_else(|| not_found(c.kind().as_str(), id))?;
        check_version(req, None, version)?;
        let issued = apim::issued_keys(log.state());
        let body = with_version(shown(current, &issued), version);
        if c == Collection::ApiKeys {
            managed_key(log.state(), id)?;
        }
        let mut changes = vec![Change::delete(c.kind(), id)];
        if let Entity::Api(api) = current {
            changes.extend(apim::delete_api(log.state(), api));
        }
        let users = match c {
            Collection::Backends => backend_users(log.state(), id),
            Collection::Certificates => certificate_users(log.state(), id),
            _ => Vec::new(),
        };
        if !users.is_empty() {
            return Err(fail(
                409,
                "conflict",
                format!("{} `{id}` is used by {}", c.kind(), users.join(", ")),
            ));
        }
        self.commit(&mut log, changes, "admin")?;
        Ok(Response::json_pretty(
            200,
            &json!({"deleted": true, "entity": body}),
        ))
    }

    /// Keeps the rotation bookkeeping across an update and starts a cycle when rotation is on.
    fn stamp_rotation(&self, entity: Entity, current: Option<&Entity>) -> Entity {
        match entity {
            Entity::ApiKey(key, _) => {
                let mut rot = match current {
                    Some(Entity::ApiKey(_, r)) => r.clone(),
                    _ => RotationState::default(),
                };
                if key.rotation.enabled && rot.started_at.is_none() {
                    rot.started_at = Some(self.now());
                }
                Entity::ApiKey(key, rot)
            }
            other => other,
        }
    }

    fn sub_collection(&self, req: &Request, api_id: &str, sub: &str) -> Outcome {
        let mut log = self.log();
        let (api, version) = get_api(log.state(), api_id)?;
        match req.head.method.as_str() {
            "GET" => {
                let items = if sub == "consumers" {
                    serde_json::to_value(&api.consumers)
                } else {
                    serde_json::to_value(&api.subscriptions)
                };
                Ok(Response::json_pretty(200, &items.unwrap_or(Value::Null))
                    .with_header("etag", format!("\"{version}\"")))
            }
            "POST" => {
                let mut body = parse_body(&req.body)?;
                let body_version = take_version(&mut body, EntityKind::Consumer);
                check_version(req, body_version, version)?;
                let Some(obj) = body.as_object_mut() else {
                    return Err(body_not_object());
                };
                if !obj.contains_key("id") {
                    obj.insert(
                        "id".to_owned(),
                        Value::String(format!(
                            "{}_{}",
                            &sub[..sub.len() - 1],
                            rotation::random_lower(12)
                        )),
                    );
                }
                let old = api.clone();
                let mut api = api;
                let id = put_sub(&mut api, sub, &body, None)?;
                let (written, issued) = self.commit_api(&mut log, &old, api)?;
                let api = get_api(log.state(), api_id)?.0;
                let mut answer = sub_json(&api, sub, &id);
                if let Some(obj) = answer.as_object_mut() {
                    if !issued.is_empty() {
                        obj.insert("credentials".into(), apim::credentials_json(&issued));
                    } else if let Some(subject) = api
                        .subscriptions
                        .iter()
                        .find(|s| s.id == id)
                        .and_then(|s| s.subject.clone())
                    {
                        // A jwt subscription: the subject its tokens must carry.
                        obj.insert(
                            "credentials".into(),
                            serde_json::json!({"subject": subject}),
                        );
                    }
                }
                Ok(Response::json_pretty(201, &answer)
                    .with_header("etag", format!("\"{written}\""))
                    .with_header("cache-control", "no-store".to_owned()))
            }
            _ => Err(method_not_allowed("GET, POST")),
        }
    }

    fn sub_item(&self, req: &Request, api_id: &str, sub: &str, id: &str) -> Outcome {
        let mut log = self.log();
        let (mut api, version) = get_api(log.state(), api_id)?;
        let current = sub_json(&api, sub, id);
        if current.is_null() {
            return Err(not_found(&sub[..sub.len() - 1], id));
        }
        match req.head.method.as_str() {
            "GET" => {
                Ok(Response::json_pretty(200, &current)
                    .with_header("etag", format!("\"{version}\"")))
            }
            "PUT" | "PATCH" => {
                let mut body = parse_body(&req.body)?;
                let body_version = take_version(&mut body, EntityKind::Consumer);
                check_version(req, body_version, version)?;
                if !body.is_object() {
                    return Err(body_not_object());
                }
                let doc = if req.head.method == "PATCH" {
                    let mut doc = current;
                    json::merge_patch(&mut doc, &body);
                    doc
                } else {
                    body
                };
                let old = api.clone();
                put_sub(&mut api, sub, &doc, Some(id))?;
                let (written, _) = self.commit_api(&mut log, &old, api)?;
                let api = get_api(log.state(), api_id)?.0;
                Ok(Response::json_pretty(200, &sub_json(&api, sub, id))
                    .with_header("etag", format!("\"{written}\"")))
            }
            "DELETE" => {
                check_version(req, None, version)?;
                if sub == "consumers" {
                    let users: Vec<&str> = api
                        .subscriptions
                        .iter()
                        .filter(|s| s.consumer_ref == id)
                        .map(|s| s.id.as_str())
                        .collect();
                    if !users.is_empty() {
                        return Err(fail(
                            409,
                            "conflict",
                            format!("consumer `{id}` has subscriptions: {}", users.join(", ")),
                        ));
                    }
                    let old = api.clone();
                    api.consumers.retain(|c| c.id != id);
                    self.commit_api(&mut log, &old, api)?;
                } else {
                    let old = api.clone();
                    api.subscriptions.retain(|s| s.id != id);
                    self.commit_api(&mut log, &old, api)?;
                }
                Ok(Response::json_pretty(
                    200,
                    &json!({"deleted": true, "entity": current}),
                ))
            }
            _ => Err(method_not_allowed("GET, PUT, PATCH, DELETE")),
        }
    }

    /// Validates and commits a changed API (consumers and subscriptions live inside it) with
    /// what it does to issued keys ([`apim::reconcile`]); returns the API's new version and the
    /// credentials issued.
    fn commit_api(
        &self,
        log: &mut EntityLog,
        old: &Api,
        api: Api,
    ) -> Result<(u64, Vec<apim::Issued>), Failure> {
        let mut problems = Problems::default();
        api.validate("", &mut problems);
        if !problems.is_empty() {
            return Err(invalid(&problems));
        }
        let done = apim::reconcile(log.state(), Some(old), api, self.now())?;
        let mut changes = vec![Change::put(
            EntityAction::Updated,
            Entity::Api(Box::new(done.api)),
        )];
        changes.extend(done.keys);
        let written = self.commit(log, changes, "admin")?;
        Ok((written.first().map_or(0, |(_, e)| e.version), done.issued))
    }

    /// `POST /api/oauth/token-keys/rotate`: a new ES256 token key signs from now on; the keys
    /// that signed until now keep verifying for a day and a minute (the longest access-token
    /// lifetime and the nodes' clock skew), then verify nothing; keys retired before now are
    /// deleted. One commit: every node switches with the same snapshot.
    fn rotate_token_keys(&self) -> Outcome {
        use gateway_model::entity::TOKEN_KEY_RETIRE_META;
        let mut log = self.log();
        let now = self.now();
        let retire_at = now + 86_400_000 + 60_000;
        let mut changes = Vec::new();
        let mut retiring = Vec::new();
        let mut removed = Vec::new();
        for mut key in issue::token_keys(log.state()) {
            match key
                .metadata
                .get(TOKEN_KEY_RETIRE_META)
                .and_then(|t| t.parse::<i64>().ok())
            {
                Some(t) if t <= now => {
                    removed.push(key.id.clone());
                    changes.push(Change::delete(EntityKind::Certificate, &key.id));
                }
                Some(t) => retiring.push(json!({"kid": key.id, "retire_at": t})),
                None => {
                    key.metadata
                        .insert(TOKEN_KEY_RETIRE_META.to_owned(), retire_at.to_string());
                    retiring.push(json!({"kid": key.id, "retire_at": retire_at}));
                    changes.push(Change::put(
                        EntityAction::Updated,
                        Entity::Certificate(Box::new(key)),
                    ));
                }
            }
        }
        let id = format!("token-key-{}", rotation::random_lower(12));
        let entity = issue::new_token_key(id.clone(), now)
            .map_err(|e| fail(500, "internal", format!("token key: {e}")))?;
        changes.push(Change::put(
            EntityAction::Created,
            Entity::Certificate(Box::new(entity)),
        ));
        self.commit(&mut log, changes, "admin")?;
        Ok(Response::json_pretty(
            200,
            &json!({"kid": id, "retiring": retiring, "removed": removed}),
        ))
    }

    /// `POST /api/apis/{api}/subscriptions/{id}/rotate`: new credentials for the subscription's
    /// keys, answered once; the old secret is refused at once.
    fn rotate_subscription(&self, req: &Request, api_id: &str, id: &str) -> Outcome {
        let mut log = self.log();
        let (api, version) = get_api(log.state(), api_id)?;
        check_version(req, None, version)?;
        let Some(sub) = api.subscriptions.iter().find(|s| s.id == id) else {
            return Err(not_found("subscription", id));
        };
        if sub.status == gateway_model::entity::SubscriptionStatus::Closed {
            return Err(fail(
                409,
                "invalid_status_transition",
                format!("subscription `{id}` is closed: its credentials are revoked for good"),
            ));
        }
        if sub.apikeys.is_empty() {
            return Err(fail(
                409,
                "conflict",
                format!("subscription `{id}` has no issued credentials to rotate"),
            ));
        }
        let (changes, issued) = apim::rotate(log.state(), sub, self.now());
        self.commit(&mut log, changes, "admin")?;
        let api = get_api(log.state(), api_id)?.0;
        let mut answer = sub_json(&api, "subscriptions", id);
        if let Some(obj) = answer.as_object_mut() {
            obj.insert("credentials".into(), apim::credentials_json(&issued));
        }
        Ok(Response::json_pretty(200, &answer).with_header("cache-control", "no-store".to_owned()))
    }

    fn quotas(&self, method: &str, id: &str) -> Outcome {
        let mut log = self.log();
        if log.state().get(EntityKind::ApiKey, id).is_none() {
            return Err(not_found("apikey", id));
        }
        let snapshot = self.publisher.current();
        match method {
            "GET" => {}
            "DELETE" => {
                let at = crate::core::now_ms();
                snapshot.pool.reset(id, at);
                let Some((entity, _)) = log.state().get(EntityKind::ApiKey, id) else {
                    return Err(not_found("apikey", id));
                };
                let mut entity = entity.clone();
                if let Entity::ApiKey(_, bookkeeping) = &mut entity {
                    bookkeeping.quotas_reset_at = Some(at);
                }
                let change = Change::put(EntityAction::QuotasReset, entity);
                self.commit(&mut log, vec![change], "admin")?;
            }
            _ => return Err(method_not_allowed("GET, DELETE")),
        }
        let snapshot = self.publisher.current();
        let c = snapshot
            .pool
            .consumption(id, crate::core::now_ms())
            .ok_or_else(|| not_found("apikey", id))?;
        Ok(Response::json_pretty(
            200,
            &json!({
                "authorizedCallsPerWindow": c.authorized_calls_per_window,
                "throttlingCallsPerWindow": c.throttling_calls_per_window,
                "remainingCallsPerWindow": c.remaining_calls_per_window,
                "authorizedCallsPerDay": c.authorized_calls_per_day,
                "currentCallsPerDay": c.current_calls_per_day,
                "remainingCallsPerDay": c.remaining_calls_per_day,
                "authorizedCallsPerMonth": c.authorized_calls_per_month,
                "currentCallsPerMonth": c.current_calls_per_month,
                "remainingCallsPerMonth": c.remaining_calls_per_month,
            }),
        ))
    }

    fn call_examples(&self, id: &str) -> Outcome {
        let log = self.log();
        let Some((Entity::ApiKey(key, _), _)) = log.state().get(EntityKind::ApiKey, id) else {
            return Err(not_found("apikey", id));
        };
        managed_key(log.state(), id)?;
        let (url, host) = example_target(log.state(), key, &self.options.public_url);
        let secret = key.client_secret.expose();
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", key.client_id));
        // Every way the key can authenticate, as a curl that works against this node: its
        // address, and the route's host in a Host header.
        let host_header = host
            .as_deref()
            .map(|h| format!(" -H 'Host: {h}'"))
            .unwrap_or_default();
        let curl = |auth: &str| format!("curl -X GET{host_header} {auth} '{url}'");
        let exp = self.now() / 1000 + 3600;
        let jwt = gateway_core::apikey::jwt::sign(
            gateway_core::apikey::jwt::Algorithm::Hs256,
            &json!({"clientId": key.client_id, "exp": exp}),
            secret.as_bytes(),
        );
        let bearer = gateway_core::apikey::bearer_for(&key.client_id, secret);
        let mut examples = vec![
            json!({"kind": "headers", "curl": curl(&format!(
                "-H 'Otoroshi-Client-Id: {}' -H 'Otoroshi-Client-Secret: {secret}'", key.client_id))}),
            json!({"kind": "basic", "curl": curl(&format!("-H 'Authorization: Basic {basic}'"))}),
            json!({"kind": "bearer", "curl": curl(&format!("-H 'Authorization: Bearer {bearer}'"))}),
            json!({"kind": "jwt", "expires": exp,
                   "curl": curl(&format!("-H 'Authorization: Bearer {jwt}'"))}),
        ];
        if key.allow_client_id_only {
            examples.push(json!({"kind": "client_id_only",
                "curl": curl(&format!("-H 'x-api-key: {}'", key.client_id))}));
        }
        Ok(Response::json_pretty(
            200,
            &json!({
                "url": url,
                "host": host,
                "curl": curl(&format!(
                    "-H 'Otoroshi-Client-Id: {}' -H 'Otoroshi-Client-Secret: {secret}'",
                    key.client_id
                )),
                "basicAuthHeader": format!("Authorization: Basic {basic}"),
                "curlWithBasicAuth": curl(&format!("-H 'Authorization: Basic {basic}'")),
                "examples": examples,
            }),
        ))
    }

    fn events(&self, req: &Request) -> Outcome {
        let mut problems = Problems::default();
        let after = match req.param("after") {
            None => None,
            Some(s) => match s.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    problems.push(
                        "after",
                        format!("expected an event sequence number, got {s:?}"),
                    );
                    None
                }
            },
        };
        let limit = match req.param("limit") {
            None => 1000,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => n,
                _ => {
                    problems.push("limit", format!("expected 1..=10000, got {s:?}"));
                    1000
                }
            },
        };
        if !problems.is_empty() {
            return Err(invalid(&problems));
        }
        let dir = self.log().dir().to_owned();
        let events = crate::entitylog::read_events(&dir, after, limit).map_err(|e| internal(&e))?;
        let last = events.last().map(|(o, _)| *o).or(after);
        let items: Vec<Value> = events
            .into_iter()
            .map(|(seq, e)| {
                let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("seq".to_owned(), json!(seq));
                }
                v
            })
            .collect();
        Ok(Response::json_pretty(
            200,
            &json!({"events": items, "last": last}),
        ))
    }

    fn import(&self, req: &Request) -> Outcome {
        let mut log = self.log();
        let now = self.now();
        let (status, body) = import_into(&req.body, &mut log, now, |log, changes| {
            self.commit(log, changes, "import").map(|_| ())
        })?;
        Ok(Response::json_pretty(status, &body))
    }

    fn metrics(&self) -> Response {
        use gateway_telemetry::prom::{self, MetricType};
        let snapshot = self.publisher.current();
        let mut out = String::new();
        prom::gauge(
            &mut out,
            "tollgate_snapshot_generation",
            "Generation of the published snapshot.",
            snapshot.generation,
        );
        prom::family(
            &mut out,
            "tollgate_build_info",
            "The gateway's version.",
            MetricType::Gauge,
        );
        prom::sample(
            &mut out,
            "tollgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        prom::family(
            &mut out,
            "tollgate_driver_info",
            "The IO driver the cores use.",
            MetricType::Gauge,
        );
        prom::sample(
            &mut out,
            "tollgate_driver_info",
            &[("driver", &self.options.driver)],
            1,
        );
        self.publisher.render_metrics(&mut out);
        prom::family(
            &mut out,
            "tollgate_entities",
            "Live entities by kind.",
            MetricType::Gauge,
        );
        {
            let log = self.log();
            for kind in [
                EntityKind::Api,
                EntityKind::Route,
                EntityKind::Backend,
                EntityKind::ApiKey,
                EntityKind::Certificate,
            ] {
                let n = log.state().list(kind).count();
                prom::sample(
                    &mut out,
                    "tollgate_entities",
                    &[("kind", &kind.to_string())],
                    n,
                );
            }
            prom::gauge(
                &mut out,
                "tollgate_entity_log_next_offset",
                "Offset of the next entity event.",
                log.next_offset(),
            );
        }
        prom::counter(
            &mut out,
            "tollgate_entity_events_written_total",
            "Entity events appended by this process.",
            self.events_written.load(Ordering::Relaxed),
        );
        if let Some(sent) = &self.events_sent {
            prom::counter(
                &mut out,
                "tollgate_entity_events_sent_total",
                "Entity events of this node confirmed by Kafka.",
                sent.load(Ordering::Relaxed),
            );
        }
        prom::family(
            &mut out,
            "tollgate_admin_requests_total",
            "Admin API requests by path family and status.",
            MetricType::Counter,
        );
        for ((path, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            prom::sample(
                &mut out,
                "tollgate_admin_requests_total",
                &[("path", path), ("status", &status.to_string())],
                n,
            );
        }
        if let Some(stats) = self.http_stats.get() {
            for (name, help, value) in [
                (
                    "tollgate_admin_connections_total",
                    "Admin API connections admitted.",
                    &stats.accepted,
                ),
                (
                    "tollgate_admin_connections_busy_total",
                    "Admin API connections refused with 503 (total or per-peer cap reached).",
                    &stats.busy,
                ),
                (
                    "tollgate_admin_requests_timed_out_total",
                    "Admin API requests answered 408 (not received within the request deadline).",
                    &stats.timed_out,
                ),
                (
                    "tollgate_admin_requests_too_large_total",
                    "Admin API requests answered 413 (body over the route's limit).",
                    &stats.too_large,
                ),
            ] {
                prom::counter(&mut out, name, help, value.load(Ordering::Relaxed));
            }
        }
        Response::text(200, "text/plain; version=0.0.4", out)
    }
}

/// The result of an import at `now_ms` (expired certificates are warned about): (status, reply
/// body). `commit` validates and appends.
///
/// # Errors
/// A 400 failure when the document is not an entity document (or, for a Tollgate file, when it
/// has any problem), or what `commit` refuses.
fn import_into(
    bytes: &[u8],
    log: &mut EntityLog,
    now_ms: i64,
    commit: impl FnOnce(&mut EntityLog, Vec<Change>) -> Result<(), Failure>,
) -> Result<(u16, Value), Failure> {
    let import = import_document_at(bytes, None, Some(now_ms)).map_err(|p| invalid(&p))?;
    if import.dialect == gateway_model::import::Dialect::Tollgate && !import.is_clean() {
        return Err(invalid(&import.problems));
    }
    let changes = import_changes(log.state(), &import.entities);
    let imported = json!({
        "routes": import.entities.routes.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        "backends": import.entities.backends.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        "apiKeys": import.entities.apikeys.iter().map(|k| k.client_id.as_str()).collect::<Vec<_>>(),
        "apis": import.entities.apis.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        "certificates": import.entities.certificates.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
    });
    let changed = changes.len();
    commit(log, changes)?;
    let skipped: Vec<Value> = import
        .skipped
        .iter()
        .map(|s| json!({"path": s.path, "kind": s.kind, "id": s.id, "reason": s.reason}))
        .collect();
    let warnings: Vec<Value> = import
        .warnings
        .iter()
        .map(|p| json!({"path": p.path, "message": p.message}))
        .collect();
    Ok((
        200,
        json!({
            "dialect": format!("{:?}", import.dialect).to_lowercase(),
            "imported": imported,
            "events": changed,
            "skipped": skipped,
            "warnings": warnings,
        }),
    ))
}

/// The changes that bring `entities` into the log (`imported`, unchanged ones left out).
fn import_changes(state: &State, entities: &Entities) -> Vec<Change> {
    let mut all: Vec<Entity> = Vec::new();
    all.extend(
        entities
            .certificates
            .iter()
            .cloned()
            .map(|c| Entity::Certificate(Box::new(c))),
    );
    all.extend(
        entities
            .backends
            .iter()
            .cloned()
            .map(|b| Entity::Backend(Box::new(b))),
    );
    all.extend(
        entities
            .routes
            .iter()
            .cloned()
            .map(|r| Entity::Route(Box::new(r))),
    );
    all.extend(
        entities
            .apis
            .iter()
            .cloned()
            .map(|a| Entity::Api(Box::new(a))),
    );
    all.extend(entities.apikeys.iter().cloned().map(|k| {
        let rot = match state.get(EntityKind::ApiKey, &k.client_id) {
            Some((Entity::ApiKey(_, r), _)) => r.clone(),
            _ => RotationState::default(),
        };
        Entity::ApiKey(Box::new(k), rot)
    }));
    all.into_iter()
        .filter(|e| state.get(e.kind(), e.id()).is_none_or(|(cur, _)| cur != e))
        .map(|e| Change::put(EntityAction::Imported, e))
        .collect()
}

/// The log's state with `changes` applied, if every reference in it resolves: the check made
/// before anything is appended.
fn candidate(log: &EntityLog, changes: &[Change]) -> Result<State, Failure> {
    let mut candidate = log.state().clone();
    for c in changes {
        let v = candidate.version(c.kind, &c.id) + 1;
        candidate.set(c.kind, &c.id, v, c.entity.clone());
    }
    // A write is refused for the problems it brings, not for those already there (concurrent
    // changes on two nodes can leave a reference dangling; `publishable` leaves its entity out).
    let before = check_references(log.state());
    let mut problems = Problems::default();
    for p in check_references(&candidate).iter() {
        if !before.iter().any(|b| b == p) {
            problems.push(p.path.clone(), p.message.clone());
        }
    }
    if problems.is_empty() {
        Ok(candidate)
    } else {
        Err(invalid(&problems))
    }
}

/// The entities of `state` to publish to the data plane: all of them, except those whose
/// references do not hold (a route whose backend another node deleted at the same time, an API
/// whose route id another node took...). The admin API never commits such a state itself; it
/// arises only from concurrent changes on two nodes. Which entity is left out is decided by
/// the problem's path (`routes[r].backend_ref` leaves route `r` out), from the state alone, so
/// every node that folded the same events publishes the same entities, and none is left unable
/// to build a snapshot. Each one left out is logged.
pub fn publishable(state: &State, now_ms: i64) -> gateway_model::import::Entities {
    let mut state = std::borrow::Cow::Borrowed(state);
    // Leaving an entity out can only remove references, so this ends; bounded all the same.
    for _ in 0..16 {
        let problems = check_references(&state);
        if problems.is_empty() {
            break;
        }
        let owned = state.to_mut();
        for p in problems.iter() {
            let Some((collection, rest)) = p.path.split_once('[') else {
                continue;
            };
            let Some((id, _)) = rest.split_once(']') else {
                continue;
            };
            let kind = match collection {
                "routes" => EntityKind::Route,
                "apis" => EntityKind::Api,
                "backends" => EntityKind::Backend,
                "certificates" => EntityKind::Certificate,
                "apikeys" => EntityKind::ApiKey,
                _ => continue,
            };
            tracing::warn!(
                kind = %kind,
                id = %id.escape_debug(),
                problem = %p,
                "entity left out of the data plane: its references do not hold (concurrent changes on two nodes)"
            );
            let version = owned.version(kind, id);
            owned.set(kind, id, version, None);
        }
    }
    state.entities(now_ms)
}

/// The checks of one entity on its own, the same for a write through this API and for another
/// node's event: every field, and no plugin Tollgate does not implement.
fn entity_problems(entity: &Entity, problems: &mut Problems) {
    match entity {
        Entity::Route(r) => {
            r.validate("", problems);
            refuse_unknown_plugins(Plugged::Route(r), "", problems);
        }
        Entity::Backend(b) => b.validate("", problems),
        Entity::ApiKey(k, _) => k.validate("", problems),
        Entity::Api(a) => {
            a.validate("", problems);
            refuse_unknown_plugins(Plugged::Api(a), "", problems);
        }
        Entity::Certificate(c) => c.validate("", problems),
    }
}

/// Other nodes' entity events pass the checks of a local write (ids, fields, plugins) before
/// they are folded.
///
/// # Errors
/// Every problem found, with its path.
fn remote_check(id: &str, entity: Option<&Entity>) -> Result<(), Problems> {
    let mut problems = Problems::default();
    if !gateway_model::validate::id_ok(id) {
        problems.push("id", format!("not a valid id: `{}`", id.escape_debug()));
    }
    match entity {
        None => {}
        Some(e) if e.id() != id => problems.push("id", "differs from the event's entity id"),
        Some(e) => entity_problems(e, &mut problems),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Imports the document at `path` into the entity log of a stopped node (`gateway import`).
/// Returns the reply (as `POST /api/import` gives it).
///
/// # Errors
/// [`GatewayErrorKind::Refused`] when the document is not an entity document or the resulting
/// entities are invalid, [`GatewayErrorKind::EntityLog`] when the log cannot be written; the
/// text is the reply `POST /api/import` would give.
pub fn import_file(log: &mut EntityLog, bytes: &[u8], now_ms: i64) -> Result<Value, GatewayError> {
    let result = import_into(bytes, log, now_ms, |log, changes| {
        candidate(log, &changes)?;
        log.commit(changes, "import", now_ms)
            .map(|_| ())
            .map_err(|e| internal(&e))
    });
    match result {
        Ok((_, body)) => Ok(body),
        Err(Failure(r)) => Err(GatewayError::new(
            if r.status >= 500 {
                GatewayErrorKind::EntityLog
            } else {
                GatewayErrorKind::Refused
            },
            String::from_utf8_lossy(&r.body),
        )),
    }
}

/// `gateway import FILE [--config F]`: imports into the entity log of the node of config `F`
/// (directly when it is stopped, through its admin API when it runs), or of the quickstart's
/// (stopped) node under `quickstart_dir` without one. Returns the import report.
///
/// # Errors
/// [`GatewayErrorKind::Io`] or [`GatewayErrorKind::Config`] when the file or the config cannot
/// be read, what opening the log or the import gives otherwise (through the admin API of a
/// running node, the context says that the log is held).
pub fn import_command(
    config: Option<&std::path::Path>,
    quickstart_dir: &std::path::Path,
    file: &std::path::Path,
) -> Result<Value, GatewayError> {
    let bytes = std::fs::read(file).map_err(GatewayError::map(
        GatewayErrorKind::Io,
        file.display().to_string(),
    ))?;
    let mut log = match config {
        Some(path) => {
            let cfg = crate::config::load(path).map_err(|problems| {
                GatewayError::new(
                    GatewayErrorKind::Config,
                    problems
                        .iter()
                        .map(|p| format!("{}: {p}", path.display()))
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            })?;
            match open_for(&cfg) {
                Ok((log, _)) => log,
                // A running node holds the log: send the document to its admin API instead.
                Err(held) if held.kind == GatewayErrorKind::Locked => {
                    return import_through_api(&cfg, &bytes)
                        .map_err(|why| GatewayError::with(why.kind, held.to_string(), why));
                }
                Err(e) => return Err(e),
            }
        }
        None => open_log(
            quickstart_dir,
            "quickstart",
            None,
            crate::entitylog::DEFAULT_SNAPSHOT_EVERY,
        )?,
    };
    let report = import_file(&mut log, &bytes, crate::core::now_ms())?;
    log.write_snapshot()
        .map_err(|e| GatewayError::of(GatewayErrorKind::EntityLog, e))?;
    Ok(report)
}

/// `POST /api/import` to the running node of `cfg` (its `[admin] addr`, with its token).
///
/// # Errors
/// [`GatewayErrorKind::Config`] when the config does not say where the admin API is,
/// [`GatewayErrorKind::Io`] when it cannot be reached, [`GatewayErrorKind::Decode`] when its
/// answer is not HTTP with a JSON body, [`GatewayErrorKind::Refused`] when it refuses.
fn import_through_api(
    cfg: &crate::config::NodeConfig,
    bytes: &[u8],
) -> Result<Value, GatewayError> {
    use std::io::{Read, Write};
    let addr = cfg.admin_addr;
    if addr.port() == 0 {
        return Err(GatewayError::new(
            GatewayErrorKind::Config,
            "admin.addr has port 0, so the running node's admin API cannot be found: \
             POST the file to its /api/import",
        ));
    }
    let io = || GatewayError::map(GatewayErrorKind::Io, format!("admin API {addr}"));
    let mut conn =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io())?;
    let timeout = Some(Duration::from_secs(120));
    conn.set_read_timeout(timeout)
        .and_then(|()| conn.set_write_timeout(timeout))
        .map_err(io())?;
    let head = format!(
        "POST /api/import HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        cfg.admin_token.expose(),
        bytes.len()
    );
    conn.write_all(head.as_bytes())
        .and_then(|()| conn.write_all(bytes))
        .map_err(io())?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).map_err(io())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        GatewayError::new(
            GatewayErrorKind::Decode,
            format!("admin API {addr}: no HTTP response"),
        )
    })?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if (200..300).contains(&status) {
        serde_json::from_str(body).map_err(GatewayError::map(
            GatewayErrorKind::Decode,
            format!("admin API {addr}"),
        ))
    } else {
        Err(GatewayError::new(
            GatewayErrorKind::Refused,
            format!("admin API {addr} answered {status}: {body}"),
        ))
    }
}

/// Imports the seed document into an empty log (`created` events, actor `seed`).
///
/// # Errors
/// When the log cannot be written.
pub fn seed(log: &mut EntityLog, entities: &Entities, now_ms: i64) -> Result<usize, LogError> {
    let changes: Vec<Change> = import_changes(&State::default(), entities)
        .into_iter()
        .map(|mut c| {
            c.action = EntityAction::Created;
            c
        })
        .collect();
    let n = changes.len();
    log.commit(changes, "seed", now_ms)?;
    Ok(n)
}

/// Opens the entity log under `data_dir` with the cluster key from `key_file` (or
/// `<data_dir>/cluster.key`, generated with a warning when missing).
///
/// # Errors
/// [`GatewayErrorKind::Locked`] when a running node holds the log, else
/// [`GatewayErrorKind::EntityLog`], naming the file or the journal.
pub fn open_log(
    data_dir: &std::path::Path,
    node_id: &str,
    key_file: Option<&std::path::Path>,
    snapshot_every: u64,
) -> Result<EntityLog, GatewayError> {
    let log_error = |e: crate::seal::SealError| GatewayError::of(GatewayErrorKind::EntityLog, e);
    let key = match key_file {
        Some(path) => crate::seal::ClusterKey::load(path).map_err(log_error)?,
        None => {
            let path = data_dir.join("cluster.key");
            let (key, generated) =
                crate::seal::ClusterKey::load_or_generate(&path).map_err(log_error)?;
            if generated {
                tracing::warn!(
                    path = %path.display(),
                    "no [admin] cluster_key_file: generated a cluster key; every node of a \
                     cluster needs the same key, and losing it loses the sealed secrets"
                );
            }
            key
        }
    };
    let options = crate::entitylog::LogOptions {
        data_dir: data_dir.to_owned(),
        node_id: node_id.to_owned(),
        snapshot_every,
    };
    let (log, report) = EntityLog::open(&options, key).map_err(|e| match e {
        LogError::Journal(crate::journal::JournalError::Locked { dir, holder }) => {
            GatewayError::new(
                GatewayErrorKind::Locked,
                format!(
                    "the entity log {} is held by a running node ({}); change entities through \
                     its admin API (`POST /api/import` imports a file), or stop it first",
                    dir.display(),
                    holder.as_deref().unwrap_or("its process could not be told")
                ),
            )
        }
        other => GatewayError::with(GatewayErrorKind::EntityLog, "entity log", other),
    })?;
    tracing::info!(
        replayed = report.replayed,
        snapshot_offset = report.snapshot_offset,
        next_offset = log.next_offset(),
        "entity log opened"
    );
    Ok(log)
}

/// Opens the node's entity log (seeding an empty one from the config's seed file) and returns
/// it with the admin API's options.
///
/// # Errors
/// What [`open_log`] gives, or [`GatewayErrorKind::EntityLog`] when the seed cannot be
/// written.
pub fn open_for(
    cfg: &crate::config::NodeConfig,
) -> Result<(EntityLog, AdminOptions), GatewayError> {
    let mut log = open_log(
        &cfg.data_dir,
        &cfg.node_id,
        cfg.cluster_key_file.as_deref(),
        cfg.snapshot_every,
    )?;
    if log.is_empty() {
        if let Some((path, import)) = &cfg.seed {
            let n = seed(&mut log, &import.entities, crate::core::now_ms()).map_err(
                GatewayError::map(GatewayErrorKind::EntityLog, "seeding the entity log"),
            )?;
            tracing::info!(seed = %path.display(), events = n, "empty entity log seeded");
        }
    } else if cfg.seed.is_some() {
        tracing::info!("entity log not empty: the seed file is not imported again");
    }
    let options = AdminOptions {
        addr: cfg.admin_addr,
        token: cfg.admin_token.clone(),
        previous_secret_grace_ms: i64::try_from(cfg.previous_secret_grace.as_millis())
            .unwrap_or(i64::MAX),
        rotation_every: Duration::from_secs(1),
        clock: system_clock(),
        public_url: cfg.http.map_or_else(
            || "http://127.0.0.1:8080".to_owned(),
            |a| format!("http://{a}"),
        ),
        driver: String::new(),
        metrics_public: cfg.metrics_public,
        kafka: cfg
            .kafka()
            .map(|kafka| crate::entitylog::kafka::KafkaLogConfig {
                kafka,
                data_dir: cfg.data_dir.clone(),
                node_id: cfg.node_id.clone(),
            }),
        http: gateway_httpd::Limits::default(),
    };
    Ok((log, options))
}

/// The quickstart's log: its demo entities are upserted at every start (actor `quickstart`), so
/// the printed demo secret works while other changes made through the admin API are kept.
///
/// # Errors
/// What [`open_log`] gives, or [`GatewayErrorKind::EntityLog`] when the log cannot be written.
pub fn open_quickstart(
    data_dir: &std::path::Path,
    entities: &Entities,
) -> Result<EntityLog, GatewayError> {
    let mut log = open_log(
        data_dir,
        "quickstart",
        None,
        crate::entitylog::DEFAULT_SNAPSHOT_EVERY,
    )?;
    let changes = import_changes(log.state(), entities)
        .into_iter()
        .map(|mut c| {
            c.action = if log.state().version(c.kind, &c.id) == 0 {
                EntityAction::Created
            } else {
                EntityAction::Updated
            };
            c
        })
        .collect();
    log.commit(changes, "quickstart", crate::core::now_ms())
        .map_err(GatewayError::map(GatewayErrorKind::EntityLog, "entity log"))?;
    Ok(log)
}

fn method_not_allowed(allow: &str) -> Failure {
    Failure(
        Response::json_pretty(
            405,
            &error_body("method_not_allowed", &format!("allowed: {allow}")),
        )
        .with_header("allow", allow.to_owned()),
    )
}

fn body_not_object() -> Failure {
    let mut p = Problems::default();
    p.push("", "expected a JSON object");
    invalid(&p)
}

fn parse_body(bytes: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        let mut p = Problems::default();
        p.push("", format!("not valid JSON: {e}"));
        invalid(&p)
    })
}

/// Removes the optimistic-concurrency field: `_version`, or `version` when it is a number and
/// the entity has no `version` of its own (APIs use `version` as a label).
fn take_version(body: &mut Value, kind: EntityKind) -> Option<Value> {
    let obj = body.as_object_mut()?;
    let found = obj.remove("_version");
    if found.is_some() {
        return found;
    }
    if kind != EntityKind::Api && obj.get("version").is_some_and(Value::is_number) {
        return obj.remove("version");
    }
    None
}

fn check_version(req: &Request, body: Option<Value>, current: u64) -> Result<(), Failure> {
    let header = req
        .header("if-match")
        .map(|h| h.trim().trim_matches('"').to_owned());
    let mut expected = Vec::new();
    if let Some(h) = header.filter(|h| h != "*") {
        match h.parse::<u64>() {
            Ok(v) => expected.push(v),
            Err(_) => {
                let mut p = Problems::default();
                p.push("If-Match", format!("expected an entity version, got {h:?}"));
                return Err(invalid(&p));
            }
        }
    }
    if let Some(v) = body {
        match v.as_u64() {
            Some(v) => expected.push(v),
            None => {
                let mut p = Problems::default();
                p.push("_version", "expected an integer ≥ 1");
                return Err(invalid(&p));
            }
        }
    }
    match expected.into_iter().find(|v| *v != current) {
        Some(v) => {
            let mut body = error_body(
                "version_conflict",
                &format!("expected version {v}, the entity is at version {current}"),
            );
            if let Some(obj) = body.as_object_mut() {
                obj.insert("version".to_owned(), json!(current));
            }
            Err(Failure(Response::json_pretty(409, &body)))
        }
        None => Ok(()),
    }
}

/// Deserialises (strictly: unknown fields are problems) and validates one entity; with
/// `path_id`, the body's id must equal it.
fn parse_entity(c: Collection, body: &Value, path_id: Option<&str>) -> Result<Entity, Failure> {
    let mut problems = Problems::default();
    let mut ignored = Vec::new();
    let mut entity = match c {
        Collection::Routes => from_value::<Route>(body, "", true, &mut problems, &mut ignored)
            .map(|r| Entity::Route(Box::new(r))),
        Collection::Backends => {
            from_value::<StoredBackend>(body, "", true, &mut problems, &mut ignored)
                .map(|b| Entity::Backend(Box::new(b)))
        }
        Collection::ApiKeys => from_value::<ApiKey>(body, "", true, &mut problems, &mut ignored)
            .map(|mut k| {
                k.normalise_authorizations();
                Entity::ApiKey(Box::new(k), RotationState::default())
            }),
        Collection::Apis => from_value::<Api>(body, "", true, &mut problems, &mut ignored)
            .map(|a| Entity::Api(Box::new(a))),
        Collection::Certificates => {
            from_value::<Certificate>(body, "", true, &mut problems, &mut ignored)
                .map(|c| Entity::Certificate(Box::new(c)))
        }
    };
    if let Some(e) = &mut entity {
        entity_problems(e, &mut problems);
        if let (Entity::Certificate(c), true) = (e, problems.is_empty()) {
            if let Err(e) = c.fill_derived() {
                problems.push("chain", e.to_string());
            }
        }
    }
    if let (Some(e), Some(id)) = (&entity, path_id) {
        if e.id() != id {
            problems.push(
                c.id_field(),
                format!("does not match the id in the path (`{id}`); ids cannot change"),
            );
        }
    }
    match entity {
        Some(e) if problems.is_empty() => Ok(e),
        _ => Err(invalid(&problems)),
    }
}

/// References between entities: a route's `backend_ref`, an API route's backend, route ids
/// unique among top-level and API routes, the certificates a target's `tls_config` names
/// (client certificates with a key), a certificate's `caRef` (a CA certificate).
fn check_references(state: &State) -> Problems {
    let mut p = Problems::default();
    check_certificate_references(state, &mut p);
    let backends: std::collections::HashSet<&str> = state
        .list(EntityKind::Backend)
        .map(|(e, _)| e.id())
        .collect();
    let mut route_ids = std::collections::HashMap::new();
    for (e, _) in state.list(EntityKind::Route) {
        if let Entity::Route(r) = e {
            if let Some(b) = &r.backend_ref {
                if !backends.contains(b.as_str()) {
                    p.push(
                        format!("routes[{}].backend_ref", r.id),
                        format!("no backend with id `{b}`"),
                    );
                }
            }
            route_ids.insert(r.id.clone(), format!("route `{}`", r.id));
        }
    }
    let mut consumer_ids = std::collections::HashMap::new();
    let mut subscription_ids = std::collections::HashMap::new();
    let mut key_owner = std::collections::HashMap::new();
    for (e, _) in state.list(EntityKind::Api) {
        if let Entity::Api(a) = e {
            for (i, c) in a.consumers.iter().enumerate() {
                if let Some(other) = consumer_ids.insert(c.id.as_str(), a.id.as_str()) {
                    p.push(
                        format!("apis[{}].consumers[{i}].id", a.id),
                        format!(
                            "consumer id `{}` is also used by API `{other}` (consumer ids are \
                             unique across APIs: usage is counted by them)",
                            c.id
                        ),
                    );
                }
            }
            for (i, s) in a.subscriptions.iter().enumerate() {
                if let Some(other) = subscription_ids.insert(s.id.as_str(), a.id.as_str()) {
                    p.push(
                        format!("apis[{}].subscriptions[{i}].id", a.id),
                        format!(
                            "subscription id `{}` is also used by API `{other}` (subscription \
                             ids are unique across APIs)",
                            s.id
                        ),
                    );
                }
                for (j, k) in s.apikeys.iter().enumerate() {
                    let at = format!("apis[{}].subscriptions[{i}].apikeys[{j}]", a.id);
                    if state.get(EntityKind::ApiKey, k).is_none() {
                        p.push(at.clone(), format!("no API key `{k}`"));
                    }
                    if let Some(other) = key_owner.insert(k.as_str(), s.id.as_str()) {
                        p.push(
                            at,
                            format!("API key `{k}` is also issued to subscription `{other}`"),
                        );
                    }
                }
            }
            for (i, r) in a.routes.iter().enumerate() {
                if !a.backends.iter().any(|b| b.id == r.backend)
                    && !backends.contains(r.backend.as_str())
                {
                    p.push(
                        format!("apis[{}].routes[{i}].backend", a.id),
                        format!(
                            "no backend `{}` in this API or among stored backends",
                            r.backend
                        ),
                    );
                }
                if let Some(other) = route_ids.insert(r.id.clone(), format!("API `{}`", a.id)) {
                    p.push(
                        format!("apis[{}].routes[{i}].id", a.id),
                        format!("route id `{}` is also used by {other}", r.id),
                    );
                }
            }
        }
    }
    p
}

/// Every backend of the state with where it sits: stored backends, routes' inline backends,
/// APIs' backends, each with its owner (`backend `b``) and the JSON path of its `backend`.
fn all_backends(state: &State) -> Vec<(String, String, &Backend)> {
    let mut out = Vec::new();
    for (e, _) in state.list(EntityKind::Backend) {
        if let Entity::Backend(b) = e {
            out.push((
                format!("backend `{}`", b.id),
                format!("backends[{}].backend", b.id),
                &b.backend,
            ));
        }
    }
    for (e, _) in state.list(EntityKind::Route) {
        if let Entity::Route(r) = e {
            if let Some(b) = &r.backend {
                out.push((
                    format!("route `{}`", r.id),
                    format!("routes[{}].backend", r.id),
                    b,
                ));
            }
        }
    }
    for (e, _) in state.list(EntityKind::Api) {
        if let Entity::Api(a) = e {
            for (i, b) in a.backends.iter().enumerate() {
                out.push((
                    format!("API `{}`", a.id),
                    format!("apis[{}].backends[{i}].backend", a.id),
                    &b.backend,
                ));
            }
        }
    }
    out
}

fn get_certificate<'a>(state: &'a State, id: &str) -> Option<&'a Certificate> {
    match state.get(EntityKind::Certificate, id) {
        Some((Entity::Certificate(c), _)) => Some(c),
        _ => None,
    }
}

fn check_certificate_references(state: &State, p: &mut Problems) {
    for (_, at, backend) in all_backends(state) {
        for (path, id) in backend.certificate_refs() {
            let client = path.contains(".certs[");
            match get_certificate(state, id) {
                None => p.push(
                    format!("{at}.{path}"),
                    format!("no certificate with id `{id}`"),
                ),
                Some(c) if client && c.key_pem().is_none() => p.push(
                    format!("{at}.{path}"),
                    format!(
                        "certificate `{id}` has no private key; a client certificate needs one"
                    ),
                ),
                Some(_) => {}
            }
        }
    }
    for (e, _) in state.list(EntityKind::Certificate) {
        if let Entity::Certificate(c) = e {
            let Some(ca) = c.ca_ref.as_deref() else {
                continue;
            };
            let at = format!("certificates[{}].caRef", c.id);
            match get_certificate(state, ca) {
                None => p.push(at, format!("no certificate with id `{ca}`")),
                Some(issuer) if !issuer.ca => p.push(
                    at,
                    format!("certificate `{ca}` is not a CA certificate (`ca: false`)"),
                ),
                Some(_) => {}
            }
        }
    }
}

/// Who names certificate `id`: backends (stored, inline or an API's) whose targets' `tls_config`
/// lists it, certificates whose `caRef` it is.
fn certificate_users(state: &State, id: &str) -> Vec<String> {
    let mut users = Vec::new();
    for (owner, _, backend) in all_backends(state) {
        if backend.certificate_refs().iter().any(|(_, c)| *c == id) && !users.contains(&owner) {
            users.push(owner);
        }
    }
    for (e, _) in state.list(EntityKind::Certificate) {
        if let Entity::Certificate(c) = e {
            if c.ca_ref.as_deref() == Some(id) {
                users.push(format!("certificate `{}` (caRef)", c.id));
            }
        }
    }
    users
}

/// A write that sends back the `"***"` a read answered keeps the stored private key.
fn keep_private_key(doc: &mut serde_json::Map<String, Value>, current: &Entity) {
    if let Entity::Certificate(c) = current {
        if doc.get("privateKey").and_then(Value::as_str) == Some(crate::seal::REDACTED) {
            doc.insert(
                "privateKey".to_owned(),
                Value::String(c.private_key.expose().to_owned()),
            );
        }
    }
}

fn backend_users(state: &State, id: &str) -> Vec<String> {
    let mut users = Vec::new();
    for (e, _) in state.list(EntityKind::Route) {
        if let Entity::Route(r) = e {
            if r.backend_ref.as_deref() == Some(id) {
                users.push(format!("route `{}`", r.id));
            }
        }
    }
    for (e, _) in state.list(EntityKind::Api) {
        if let Entity::Api(a) = e {
            if a.routes.iter().any(|r| r.backend == id) && !a.backends.iter().any(|b| b.id == id) {
                users.push(format!("API `{}`", a.id));
            }
        }
    }
    users
}

fn get_api(state: &State, id: &str) -> Result<(Api, u64), Failure> {
    match state.get(EntityKind::Api, id) {
        Some((Entity::Api(a), v)) => Ok(((**a).clone(), v)),
        _ => Err(not_found("api", id)),
    }
}

fn sub_json(api: &Api, sub: &str, id: &str) -> Value {
    let found = if sub == "consumers" {
        api.consumers
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| serde_json::to_value(c).ok())
    } else {
        api.subscriptions
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| serde_json::to_value(s).ok())
    };
    found.unwrap_or(Value::Null)
}

/// Replaces the item `id` of `list` with `item`, or (no `id`) adds `item`: a duplicate id is a
/// 409. Returns the item's id.
fn upsert<T>(
    list: &mut Vec<T>,
    item: T,
    id: Option<&str>,
    id_of: fn(&T) -> &String,
    what: &str,
) -> Result<String, Failure> {
    let new_id = id_of(&item).clone();
    match id {
        Some(id) => {
            if let Some(slot) = list.iter_mut().find(|x| id_of(x) == id) {
                *slot = item;
            }
        }
        None if list.iter().any(|x| *id_of(x) == new_id) => {
            return Err(fail(
                409,
                "conflict",
                format!("{what} `{new_id}` already exists"),
            ));
        }
        None => list.push(item),
    }
    Ok(new_id)
}

/// Parses a consumer or subscription and puts it into `api` (replacing `id` when given, else
/// adding it: a duplicate id is a 409). Returns its id.
fn put_sub(api: &mut Api, sub: &str, body: &Value, id: Option<&str>) -> Result<String, Failure> {
    let mut problems = Problems::default();
    let mut ignored = Vec::new();
    // Strict, like every entity: unknown fields and bad values are refused with their paths.
    let new_id = if sub == "consumers" {
        let c = from_value::<Consumer>(body, "", true, &mut problems, &mut ignored);
        if let Some(c) = &c {
            gateway_model::validate::validate_consumer(c, "", &mut problems);
        }
        let Some(c) = c.filter(|_| problems.is_empty()) else {
            return Err(invalid(&problems));
        };
        upsert(&mut api.consumers, c, id, |c| &c.id, "consumer")?
    } else {
        let s = from_value::<Subscription>(body, "", true, &mut problems, &mut ignored);
        if let Some(s) = &s {
            if !gateway_model::validate::id_ok(&s.id) {
                problems.push("id", "expected 1 to 128 characters of A-Z a-z 0-9 . _ ~ @ + - (not starting with `.`)");
            }
            if !api.consumers.iter().any(|c| c.id == s.consumer_ref) {
                problems.push(
                    "consumer_ref",
                    format!("no consumer `{}` in this API", s.consumer_ref),
                );
            }
        }
        let Some(s) = s.filter(|_| problems.is_empty()) else {
            return Err(invalid(&problems));
        };
        upsert(&mut api.subscriptions, s, id, |s| &s.id, "subscription")?
    };
    if let Some(id) = id {
        if new_id != id {
            problems.push(
                "id",
                format!("does not match the id in the path (`{id}`); ids cannot change"),
            );
            return Err(invalid(&problems));
        }
    }
    Ok(new_id)
}

fn with_version(mut v: Value, version: u64) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("_version".to_owned(), json!(version));
    }
    v
}

fn entity_response(status: u16, e: &Entity, version: u64) -> Response {
    Response::json_pretty(status, &with_version(e.to_view_json(), version))
        .with_header("etag", format!("\"{version}\""))
}

/// An entity's JSON as the admin API shows it: the secrets of a key issued to a subscription
/// are answered once, when they are issued, and shown as `***` afterwards.
fn shown(e: &Entity, issued: &std::collections::BTreeMap<String, (String, String)>) -> Value {
    let mut json = e.to_view_json();
    if let Entity::ApiKey(k, _) = e {
        if issued.contains_key(&k.client_id) {
            if let Some(obj) = json.as_object_mut() {
                obj.insert(
                    "clientSecret".into(),
                    Value::String(crate::seal::REDACTED.into()),
                );
                if let Some(r) = obj.get_mut("rotation").and_then(Value::as_object_mut) {
                    if r.get("nextSecret").is_some_and(|v| !v.is_null()) {
                        r.insert(
                            "nextSecret".into(),
                            Value::String(crate::seal::REDACTED.into()),
                        );
                    }
                }
            }
        }
    }
    json
}

/// A key issued to a subscription is changed through its subscription (and consumer) only.
fn managed_key(state: &State, id: &str) -> Result<(), Failure> {
    match apim::issued_keys(state).get(id) {
        Some((api, sub)) => Err(fail(
            409,
            "managed_by_subscription",
            format!(
                "API key `{id}` was issued to subscription `{sub}` of API `{api}`: change the \
                 subscription or its consumer (`POST /api/apis/{api}/subscriptions/{sub}/rotate` \
                 for new credentials)"
            ),
        )),
        None => Ok(()),
    }
}

/// A URL a key can call: the first route (top-level or of an API) it is authorized on.
/// The URL of this node for the first route `key` is authorized on (its address, the route's
/// path) and the `Host` to send with it (`None` for a route on any host; a wildcard host gets
/// `api` as its first label).
fn example_target(state: &State, key: &ApiKey, public: &str) -> (String, Option<String>) {
    let mut domains: Vec<&str> = Vec::new();
    for (e, _) in state.list(EntityKind::Route) {
        if let Entity::Route(r) = e {
            if key
                .authorized_entities
                .iter()
                .any(|a| a == &format!("route_{}", r.id))
            {
                domains.extend(r.frontend.domains.iter().map(String::as_str));
            }
        }
    }
    for (e, _) in state.list(EntityKind::Api) {
        if let Entity::Api(a) = e {
            if key
                .authorized_entities
                .iter()
                .any(|x| x == &format!("api_{}", a.id))
            {
                for r in &a.routes {
                    domains.extend(r.frontend.domains.iter().map(String::as_str));
                }
            }
        }
    }
    let public = public.trim_end_matches('/');
    match domains.first() {
        None => (format!("{public}/"), None),
        Some(d) => {
            let (host, path) = d.split_once('/').map_or((*d, ""), |(h, p)| (h, p));
            let host = match host {
                "*" => None,
                h => match h.strip_prefix("*.") {
                    Some(suffix) => Some(format!("api.{suffix}")),
                    None => Some(h.to_owned()),
                },
            };
            (format!("{public}/{path}"), host)
        }
    }
}

fn metric_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        ["api", coll, ..]
            if Collection::parse(coll).is_some() || *coll == "events" || *coll == "import" =>
        {
            format!("/api/{coll}")
        }
        [one] if ["health", "metrics", "openapi.json"].contains(one) => format!("/{one}"),
        _ => "other".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitylog::LogOptions;
    use gateway_model::event::EntityAction;

    fn node_log(label: &str, node: &str) -> EntityLog {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-admin-{label}-{node}-{}-{}",
            std::process::id(),
            crate::entitylog::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let options = LogOptions {
            data_dir: dir,
            node_id: node.to_owned(),
            snapshot_every: 1000,
        };
        let key = crate::seal::ClusterKey::from_bytes(&[7; 32]).unwrap();
        EntityLog::open(&options, key).unwrap().0
    }

    fn entity(kind: EntityKind, doc: Value) -> Entity {
        match kind {
            EntityKind::Route => Entity::Route(Box::new(serde_json::from_value(doc).unwrap())),
            EntityKind::Backend => Entity::Backend(Box::new(serde_json::from_value(doc).unwrap())),
            _ => unreachable!(),
        }
    }

    fn backend(id: &str) -> Entity {
        entity(
            EntityKind::Backend,
            json!({"id": id, "backend": {"targets": [{"hostname": "127.0.0.1", "port": 9}]}}),
        )
    }

    fn route(id: &str, backend: &str) -> Entity {
        entity(
            EntityKind::Route,
            json!({"id": id, "frontend": {"domains": [format!("{id}.test")]}, "backend_ref": backend}),
        )
    }

    fn ids(e: &gateway_model::import::Entities) -> (Vec<String>, Vec<String>) {
        (
            e.routes.iter().map(|r| r.id.clone()).collect(),
            e.backends.iter().map(|b| b.id.clone()).collect(),
        )
    }

    /// Node A adds a route on backend `b` while node B deletes `b` (each valid where it was
    /// made). After both fold both events, in either order, they publish the same entities (the
    /// route is left out), both build a snapshot, and both still accept unrelated writes.
    #[test]
    fn concurrent_conflicting_changes_converge_and_leave_every_node_serving() {
        let mut a = node_log("conv", "a");
        let mut b = node_log("conv", "b");
        let base = a
            .commit(
                vec![Change::put(EntityAction::Created, backend("b"))],
                "t",
                1,
            )
            .unwrap();
        for (_, e) in &base {
            assert!(b.apply_remote(e, remote_check).unwrap());
        }
        let on_a = a
            .commit(
                vec![Change::put(EntityAction::Created, route("r", "b"))],
                "t",
                2,
            )
            .unwrap();
        let on_b = b
            .commit(vec![Change::delete(EntityKind::Backend, "b")], "t", 3)
            .unwrap();
        for (_, e) in &on_b {
            assert!(a.apply_remote(e, remote_check).unwrap());
        }
        for (_, e) in &on_a {
            assert!(b.apply_remote(e, remote_check).unwrap());
        }
        let (pa, pb) = (publishable(a.state(), 10), publishable(b.state(), 10));
        assert_eq!(ids(&pa), ids(&pb));
        assert_eq!(ids(&pa), (vec![], vec![]), "the dangling route is left out");
        for p in [&pa, &pb] {
            let mut resolver = crate::snapshot::SystemResolver;
            let calendar = gateway_core::window::Calendar::utc();
            let setup = crate::snapshot::QuotaSetup {
                calendar: &calendar,
                cores: 1,
                previous: None,
            };
            crate::snapshot::Snapshot::build(1, p, &mut resolver, setup).unwrap();
        }
        // An unrelated write is not blamed for the dangling route; a write that brings its own
        // dangling reference still is.
        let unrelated = [Change::put(EntityAction::Created, backend("c"))];
        assert!(candidate(&a, &unrelated).is_ok());
        let own = [Change::put(EntityAction::Created, route("s", "missing"))];
        assert!(candidate(&a, &own).is_err());
        // Re-creating the backend brings the route back, on both nodes alike.
        let again = b
            .commit(
                vec![Change::put(EntityAction::Created, backend("b"))],
                "t",
                4,
            )
            .unwrap();
        for (_, e) in &again {
            assert!(a.apply_remote(e, remote_check).unwrap());
        }
        assert_eq!(ids(&publishable(a.state(), 10)).0, vec!["r".to_owned()]);
        assert_eq!(ids(&publishable(b.state(), 10)).0, vec!["r".to_owned()]);
    }

    /// Another node's event is validated like a local write before it is folded.
    #[test]
    fn invalid_remote_events_are_refused_before_they_are_folded() {
        let mut a = node_log("refuse", "a");
        let mut b = node_log("refuse", "b");
        // Written on b as if b did not validate (an older version, a forged record).
        let bad_root = entity(
            EntityKind::Backend,
            json!({"id": "evil", "backend": {"root": "/x\r\nX-Injected: 1", "targets": [{"hostname": "h", "port": 1}]}}),
        );
        let written = b
            .commit(vec![Change::put(EntityAction::Created, bad_root)], "t", 1)
            .unwrap();
        for (_, e) in &written {
            let refused = a.apply_remote(e, remote_check);
            assert!(
                matches!(refused, Err(LogError::Refused { .. })),
                "{refused:?}"
            );
        }
        assert!(a.state().entities(10).backends.is_empty());
        assert!(a.is_empty(), "nothing appended");
    }

    #[test]
    fn openapi_describes_every_endpoint() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/health",
            "/metrics",
            "/openapi.json",
            "/api/events",
            "/api/import",
            "/api/{collection}",
            "/api/{collection}/{id}",
            "/api/apikeys/{id}/quotas",
            "/api/apikeys/{id}/call-examples",
            "/api/apis/{api}/consumers",
            "/api/apis/{api}/consumers/{id}",
            "/api/apis/{api}/subscriptions",
            "/api/apis/{api}/subscriptions/{id}",
            "/api/apis/{api}/subscriptions/{id}/rotate",
            "/api/oauth/token-keys/rotate",
        ] {
            assert!(paths.contains_key(p), "{p} is not described");
        }
    }
}

//! Reading entity documents: Otoroshi exports and Tollgate entity files.
//!
//! Both share the top-level keys `routes`, `backends`, `apiKeys`, `apis` and `certificates`. An
//! Otoroshi export ([`Dialect::Otoroshi`]) carries much more (legacy service descriptors, global
//! config, fields Tollgate has no use for): unknown fields are tolerated, unsupported entities are
//! listed one by one with the reason, a route whose flow needs a plugin Tollgate lacks is
//! imported disabled with a warning, and a certificate with a flag Tollgate cannot honour
//! (`autoRenew`, `letsEncrypt`, `exposed`) is imported with the flag off and a warning. A
//! Tollgate file ([`Dialect::Tollgate`]) is strict: an unknown field or key, or an unsupported
//! flag, is a problem. In both, every problem is reported with its JSON path and an entity with a
//! problem is left out, never half-imported. References must resolve inside the document
//! (`backend_ref`, a certificate's `caRef`, a target's `tls_config` certificates).
//!
//! Reading never looks at a clock: [`import_document_at`] takes `now` to warn about expired and
//! not-yet-valid certificates (they are imported all the same).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::entity::{Api, ApiKey, Backend, Certificate, Route, StoredBackend, UNSUPPORTED_FLAGS};
use crate::validate::{Problems, Validate, from_value, index, join, unknown_plugins};
use crate::x509::{CertInfo, Validity, format_ms};

/// Which kind of document this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Tollgate's own entity files: unknown fields are errors.
    Tollgate,
    /// Otoroshi exports: unknown fields are tolerated, unsupported entities skipped and listed.
    Otoroshi,
}

/// The top-level keys of entity documents.
const ENTITY_KEYS: [&str; 5] = ["routes", "backends", "apiKeys", "apis", "certificates"];

/// Top-level keys of an Otoroshi export that describe the export itself.
const EXPORT_META: &[&str] = &["label", "dateRaw", "date", "stats"];

/// Top-level keys of an Otoroshi export that Tollgate does not import, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "config",
        "Otoroshi's global config is not imported; Tollgate's node config is its TOML file",
    ),
    (
        "serviceDescriptors",
        "legacy service descriptors are not supported; export NG routes instead",
    ),
    (
        "services",
        "legacy services are not supported; export NG routes instead",
    ),
    (
        "serviceGroups",
        "groups are implicit in Tollgate: keys authorize `group_<id>` on routes' groups",
    ),
    (
        "admins",
        "admin users are not imported; the admin API uses a bearer token",
    ),
    (
        "simpleAdmins",
        "admin users are not imported; the admin API uses a bearer token",
    ),
    ("authConfigs", "authentication modules are not supported"),
    (
        "jwtVerifiers",
        "JWT verifiers are not supported yet (the JWT consumer is planned)",
    ),
    ("clientValidators", "client validators are not supported"),
    (
        "errorTemplates",
        "error templates are not supported; Tollgate answers JSON errors",
    ),
    ("scripts", "scripts are not supported"),
    ("tcpServices", "TCP services are not supported"),
    (
        "dataExporters",
        "data exporters are not supported; usage leaves as events",
    ),
    ("tenants", "tenants are not supported"),
    ("teams", "teams are not supported"),
    (
        "targets",
        "stored targets are not supported; put targets in backends",
    ),
];

impl Dialect {
    /// Guesses the dialect: an Otoroshi export has export metadata, Otoroshi-only top-level keys
    /// or entities with `_loc`.
    pub fn detect(document: &Value) -> Self {
        let Some(obj) = document.as_object() else {
            return Self::Tollgate;
        };
        let otoroshi_key = obj
            .keys()
            .any(|k| EXPORT_META.contains(&k.as_str()) || UNSUPPORTED.iter().any(|(u, _)| u == k));
        let located = ENTITY_KEYS.iter().any(|k| {
            obj.get(*k)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|e| e.get("_loc").is_some()))
        });
        if otoroshi_key || located {
            Self::Otoroshi
        } else {
            Self::Tollgate
        }
    }
}

/// The entities of a document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entities {
    /// NG routes.
    pub routes: Vec<Route>,
    /// Stored backends.
    pub backends: Vec<StoredBackend>,
    /// API keys.
    pub apikeys: Vec<ApiKey>,
    /// APIs.
    pub apis: Vec<Api>,
    /// Certificates (private keys in clear: seal them before they leave the process).
    pub certificates: Vec<Certificate>,
}

/// An entity of the document that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// JSON path of the entity, e.g. `serviceDescriptors[1]`.
    pub path: String,
    /// Its kind (the top-level key).
    pub kind: String,
    /// Its id, name or client id, when it has one.
    pub id: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

/// What reading a document gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// The dialect the document was read in.
    pub dialect: Dialect,
    /// The entities that are valid and supported.
    pub entities: Entities,
    /// Entities left out (Otoroshi dialect), with the reason.
    pub skipped: Vec<Skipped>,
    /// Things that were imported with a change (e.g. a route disabled for an unknown plugin).
    pub warnings: Problems,
    /// Every problem, with its path. Entities with a problem are not in `entities`.
    pub problems: Problems,
    /// Paths of fields that were ignored (Otoroshi dialect only).
    pub ignored_fields: Vec<String>,
}

impl Import {
    /// Whether the document had no problem at all.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads an entity document from JSON bytes.
///
/// `dialect` `None` detects it ([`Dialect::detect`]).
///
/// # Errors
/// Only when the bytes are not a JSON object; problems inside the document are reported in
/// [`Import::problems`] instead, so that one bad entity does not hide the others.
pub fn import_document(bytes: &[u8], dialect: Option<Dialect>) -> Result<Import, Problems> {
    import_document_at(bytes, dialect, None)
}

/// [`import_document`], and with `now_ms` (ms since the Unix epoch) a warning for every
/// imported certificate that is expired or not yet valid at that instant.
///
/// # Errors
/// Only when the bytes are not a JSON object.
pub fn import_document_at(
    bytes: &[u8],
    dialect: Option<Dialect>,
    now_ms: Option<i64>,
) -> Result<Import, Problems> {
    let document: Value = serde_json::from_slice(bytes).map_err(|e| {
        let mut p = Problems::default();
        p.push("", format!("not valid JSON: {e}"));
        p
    })?;
    import_value_at(&document, dialect, now_ms)
}

/// Reads an entity document that is already parsed.
///
/// # Errors
/// When `document` is not a JSON object.
pub fn import_value(document: &Value, dialect: Option<Dialect>) -> Result<Import, Problems> {
    import_value_at(document, dialect, None)
}

/// [`import_value`], with expiry warnings as [`import_document_at`] gives them.
///
/// # Errors
/// When `document` is not a JSON object.
pub fn import_value_at(
    document: &Value,
    dialect: Option<Dialect>,
    now_ms: Option<i64>,
) -> Result<Import, Problems> {
    let Some(obj) = document.as_object() else {
        let mut p = Problems::default();
        p.push(
            "",
            "expected a JSON object with `routes`, `backends`, `apiKeys`, `apis` and/or \
             `certificates`",
        );
        return Err(p);
    };
    let dialect = dialect.unwrap_or_else(|| Dialect::detect(document));
    let strict = dialect == Dialect::Tollgate;
    let mut out = Import {
        dialect,
        entities: Entities::default(),
        skipped: Vec::new(),
        warnings: Problems::default(),
        problems: Problems::default(),
        ignored_fields: Vec::new(),
    };

    for (key, value) in obj {
        match key.as_str() {
            k if ENTITY_KEYS.contains(&k) => {}
            k if !strict && EXPORT_META.contains(&k) => {}
            k if !strict => {
                let reason = UNSUPPORTED
                    .iter()
                    .find(|(u, _)| *u == k)
                    .map_or("not a kind of entity Tollgate knows", |(_, r)| *r);
                skip_all(key, value, reason, &mut out.skipped);
            }
            k => out.problems.push(
                k,
                "unknown key; expected `routes`, `backends`, `apiKeys`, `apis` or `certificates`",
            ),
        }
    }

    let certificates = read_certificates(obj, &mut out, now_ms);
    let mut backends = read_list::<StoredBackend>(obj, "backends", &mut out, |b| b.id.clone());
    let apikeys = read_list::<ApiKey>(obj, "apiKeys", &mut out, |k| k.client_id.clone());
    // Otoroshi's plans become consumers the way its `applyPlan` compiles them (below).
    let otoroshi_apis;
    let api_source = match obj.get("apis") {
        Some(Value::Array(items)) if !strict => {
            let mut rewritten = serde_json::Map::new();
            let items = items
                .iter()
                .enumerate()
                .map(|(i, api)| otoroshi_plans(api, &index("apis", i), &mut out))
                .collect();
            rewritten.insert("apis".to_owned(), Value::Array(items));
            otoroshi_apis = rewritten;
            &otoroshi_apis
        }
        _ => obj,
    };
    let mut apis = read_list::<Api>(api_source, "apis", &mut out, |a| a.id.clone());
    let mut consumer_ids = HashMap::new();
    let mut subscription_ids = HashMap::new();
    for (path, api) in &apis {
        for (i, c) in api.consumers.iter().enumerate() {
            if let Some(other) = consumer_ids.insert(c.id.as_str(), api.id.as_str()) {
                out.problems.push(
                    join(&index(&join(path, "consumers"), i), "id"),
                    format!(
                        "consumer id `{}` is also used by API `{other}` (consumer ids are unique \
                         across APIs: usage is counted by them)",
                        c.id
                    ),
                );
            }
        }
        for (i, s) in api.subscriptions.iter().enumerate() {
            if let Some(other) = subscription_ids.insert(s.id.as_str(), api.id.as_str()) {
                out.problems.push(
                    join(&index(&join(path, "subscriptions"), i), "id"),
                    format!(
                        "subscription id `{}` is also used by API `{other}` (subscription ids \
                         are unique across APIs)",
                        s.id
                    ),
                );
            }
        }
    }
    apis.retain_mut(|(path, api)| {
        let mut ok = true;
        for (i, flow) in api.flows.iter().enumerate() {
            let at = index(&join(path, "flows"), i);
            for (field, message) in unknown_plugins(&flow.plugins, &at) {
                if strict {
                    out.problems.push(field, message);
                    ok = false;
                    continue;
                }
                let mut disabled = Vec::new();
                for route in api.routes.iter_mut() {
                    if route.enabled && route.flow_ref.as_deref() == Some(flow.id.as_str()) {
                        route.enabled = false;
                        disabled.push(route.id.clone());
                    }
                }
                let consequence = if disabled.is_empty() {
                    "no route of the API uses the flow".to_owned()
                } else {
                    format!(
                        "the API's routes using the flow are imported disabled: {}",
                        disabled.join(", ")
                    )
                };
                out.warnings
                    .push(field, format!("{message}; {consequence}"));
            }
        }
        ok
    });
    let mut routes = read_list::<Route>(obj, "routes", &mut out, |r| r.id.clone());

    let cert_ids: HashMap<&str, &Certificate> =
        certificates.iter().map(|c| (c.id.as_str(), c)).collect();
    backends.retain(|(path, b)| {
        let at = join(path, "backend");
        known_certificates(&b.backend, &at, &cert_ids, &mut out, "backends", &b.id)
    });
    apis.retain(|(path, api)| {
        let mut ok = true;
        for (i, b) in api.backends.iter().enumerate() {
            let at = join(&index(&join(path, "backends"), i), "backend");
            ok &= known_certificates(&b.backend, &at, &cert_ids, &mut out, "apis", &api.id);
        }
        ok
    });
    let backend_ids: HashSet<&str> = backends.iter().map(|(_, b)| b.id.as_str()).collect();
    routes.retain_mut(|(path, route)| {
        let mut ok = route.backend.as_ref().is_none_or(|b| {
            let at = join(path, "backend");
            known_certificates(b, &at, &cert_ids, &mut out, "routes", &route.id)
        });
        if let Some(r) = &route.backend_ref {
            if !backend_ids.contains(r.as_str()) {
                out.problems.push(
                    join(path, "backend_ref"),
                    format!("no backend with id `{r}`"),
                );
                note_skip(
                    &mut out.skipped,
                    dialect,
                    path,
                    "routes",
                    &route.id,
                    "unknown backend_ref",
                );
                ok = false;
            }
        }
        for (at, message) in unknown_plugins(&route.plugins, path) {
            if strict {
                out.problems.push(at, message);
                ok = false;
            } else {
                let note = if route.enabled {
                    "the route is imported disabled"
                } else {
                    "the route is disabled"
                };
                route.enabled = false;
                out.warnings.push(at, format!("{message}; {note}"));
            }
        }
        ok
    });

    for (path, mut key) in apikeys {
        key.normalise_authorizations();
        let _ = path;
        out.entities.apikeys.push(key);
    }
    out.entities.backends = backends.into_iter().map(|(_, b)| b).collect();
    out.entities.routes = routes.into_iter().map(|(_, r)| r).collect();
    out.entities.apis = apis.into_iter().map(|(_, a)| a).collect();
    out.entities.certificates = certificates;

    let route_ids = out.entities.routes.iter().map(|r| r.id.as_str()).chain(
        out.entities
            .apis
            .iter()
            .flat_map(|a| a.routes.iter().map(|r| r.id.as_str())),
    );
    let mut seen = HashSet::new();
    for id in route_ids {
        if !seen.insert(id) {
            out.problems
                .push("routes", format!("route id `{id}` is used twice"));
        }
    }
    Ok(out)
}

/// Deserialises and validates each element of `obj[key]`, keeping the good ones with their path.
fn read_list<T>(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    out: &mut Import,
    id_of: impl Fn(&T) -> String,
) -> Vec<(String, T)>
where
    T: serde::de::DeserializeOwned + Validate,
{
    let Some(value) = obj.get(key) else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        out.problems.push(key, "expected an array");
        return Vec::new();
    };
    let strict = out.dialect == Dialect::Tollgate;
    let mut good = Vec::new();
    let mut ids = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = index(key, i);
        let mut problems = Problems::default();
        let Some(entity) =
            from_value::<T>(item, &path, strict, &mut problems, &mut out.ignored_fields)
        else {
            let reason = problems.to_string();
            note_skip(
                &mut out.skipped,
                out.dialect,
                &path,
                key,
                &label(item),
                &reason,
            );
            out.problems.0.extend(problems.0);
            continue;
        };
        entity.validate(&path, &mut problems);
        let id = id_of(&entity);
        if !ids.insert(id.clone()) {
            problems.push(path.clone(), format!("duplicate id `{id}`"));
        }
        if problems.is_empty() {
            good.push((path, entity));
        } else {
            note_skip(
                &mut out.skipped,
                out.dialect,
                &path,
                key,
                &id,
                &problems.to_string(),
            );
            out.problems.0.extend(problems.0);
        }
    }
    good
}

/// Whether every certificate a backend's targets name is in the document (a client
/// certificate, in `certs`, with a private key); records a problem (and, for an Otoroshi export,
/// the skip of the entity `kind`/`id`) for each one that is not.
fn known_certificates(
    backend: &Backend,
    path: &str,
    certs: &HashMap<&str, &Certificate>,
    out: &mut Import,
    kind: &str,
    id: &str,
) -> bool {
    let mut ok = true;
    for (at, cert) in backend.certificate_refs() {
        let message = match certs.get(cert) {
            None => format!("no certificate with id `{cert}`"),
            Some(c) if at.contains(".certs[") && c.key_pem().is_none() => {
                format!("certificate `{cert}` has no private key; a client certificate needs one")
            }
            Some(_) => continue,
        };
        note_skip(&mut out.skipped, out.dialect, path, kind, id, &message);
        out.problems.push(join(path, &at), message);
        ok = false;
    }
    ok
}

/// Reads `certificates`: in an Otoroshi export, the flags Tollgate cannot honour are turned off
/// first (with a warning each, kept only for certificates that are imported) and a `caRef` to a
/// certificate the export lacks is dropped with a warning; in a Tollgate file both are problems.
/// Imported certificates get their read-only fields computed, and with `now_ms` a warning when
/// they are expired or not yet valid.
fn read_certificates(
    obj: &serde_json::Map<String, Value>,
    out: &mut Import,
    now_ms: Option<i64>,
) -> Vec<Certificate> {
    const KEY: &str = "certificates";
    let mut flag_warnings = Problems::default();
    let mut only = serde_json::Map::new();
    if let Some(mut value) = obj.get(KEY).cloned() {
        if out.dialect == Dialect::Otoroshi {
            for (i, item) in value.as_array_mut().into_iter().flatten().enumerate() {
                for (flag, why) in UNSUPPORTED_FLAGS {
                    if let Some(on) = item.get_mut(flag).filter(|v| **v == Value::Bool(true)) {
                        *on = Value::Bool(false);
                        flag_warnings.push(
                            join(&index(KEY, i), flag),
                            format!("{why}; imported with `{flag}: false`"),
                        );
                    }
                }
            }
        }
        only.insert(KEY.to_owned(), value);
    }
    let mut good = read_list::<Certificate>(&only, KEY, out, |c| c.id.clone());
    let cas: HashMap<String, bool> = good.iter().map(|(_, c)| (c.id.clone(), c.ca)).collect();
    good.retain_mut(|(path, cert)| {
        let Some(ca_ref) = cert.ca_ref.clone().filter(|r| !r.trim().is_empty()) else {
            return true;
        };
        let message = match cas.get(&ca_ref) {
            Some(true) => return true,
            Some(false) => format!("certificate `{ca_ref}` is not a CA certificate (`ca: false`)"),
            None => format!("no certificate with id `{ca_ref}` in this document"),
        };
        if out.dialect == Dialect::Otoroshi {
            out.warnings.push(
                join(path, "caRef"),
                format!("{message}; imported without `caRef`"),
            );
            cert.ca_ref = None;
            true
        } else {
            out.problems.push(join(path, "caRef"), message);
            false
        }
    });
    let mut certificates = Vec::with_capacity(good.len());
    for (path, mut cert) in good {
        for w in flag_warnings.iter() {
            if w.path.starts_with(&format!("{path}.")) {
                out.warnings.push(w.path.clone(), w.message.clone());
            }
        }
        match cert.leaf() {
            Ok(leaf) => {
                if let Some(now) = now_ms {
                    if let Some(warning) = validity_warning(&leaf, now) {
                        out.warnings.push(path.clone(), warning);
                    }
                }
            }
            Err(e) => {
                out.problems.push(join(&path, "chain"), e.to_string());
                continue;
            }
        }
        if let Err(e) = cert.fill_derived() {
            out.problems.push(join(&path, "chain"), e.to_string());
            continue;
        }
        certificates.push(cert);
    }
    certificates
}

/// A warning for a certificate outside its validity at `now_ms`, if it is.
fn validity_warning(leaf: &CertInfo, now_ms: i64) -> Option<String> {
    match leaf.validity_at(now_ms) {
        Validity::Valid => None,
        Validity::Expired => Some(format!(
            "certificate expired on {} (notAfter); imported all the same",
            format_ms(leaf.not_after_ms)
        )),
        Validity::NotYetValid => Some(format!(
            "certificate not valid before {} (notBefore); imported all the same",
            format_ms(leaf.not_before_ms)
        )),
    }
}

fn note_skip(
    skipped: &mut Vec<Skipped>,
    dialect: Dialect,
    path: &str,
    kind: &str,
    id: &str,
    reason: &str,
) {
    if dialect == Dialect::Otoroshi {
        skipped.push(Skipped {
            path: path.to_owned(),
            kind: kind.to_owned(),
            id: (!id.is_empty()).then(|| id.to_owned()),
            reason: reason.to_owned(),
        });
    }
}

/// A human label for an entity that may not deserialise: its id, client id or name.
fn label(item: &Value) -> String {
    ["id", "clientId", "name", "clientName"]
        .iter()
        .find_map(|k| item.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .to_owned()
}

fn skip_all(key: &str, value: &Value, reason: &str, skipped: &mut Vec<Skipped>) {
    match value.as_array() {
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let id = label(item);
                skipped.push(Skipped {
                    path: index(key, i),
                    kind: key.to_owned(),
                    id: (!id.is_empty()).then_some(id),
                    reason: reason.to_owned(),
                });
            }
        }
        None => skipped.push(Skipped {
            path: key.to_owned(),
            kind: key.to_owned(),
            id: None,
            reason: reason.to_owned(),
        }),
    }
}

/// The fields of an Otoroshi apikey plan's key template that Tollgate's consumer template takes.
const TEMPLATE_FIELDS: &[&str] = &[
    "readOnly",
    "allowClientIdOnly",
    "restrictions",
    "rotation",
    "tags",
    "metadata",
    "validUntil",
];

/// Otoroshi's plan fields read into a consumer (the others are listed as ignored).
const PLAN_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "status",
    "access_mode_configuration_type",
    "access_mode_configuration",
    "tags",
    "metadata",
    "throttlingQuota",
    "dailyQuota",
    "monthlyQuota",
];

/// An Otoroshi API with its `plans` rewritten as Tollgate consumers, compiled the way Otoroshi's
/// `applyPlan`/`applyPlansPolicies` would:
///
/// - only published plans apply in Otoroshi, and as soon as one of them is not keyless,
///   `NgExpectedConsumer` refuses every anonymous call: keyless plans are then imported in
///   `staging` (a published keyless consumer would admit anonymous calls in Tollgate);
/// - `jwt` plans (and `oauth2-remote` ones, which become `jwt` consumers) name an Otoroshi JWT
///   verifier entity Tollgate does not import: they are imported in `staging`, unconfigured, so
///   they identify nobody; `mtls` plans keep their regexes, `oauth2-local` plans become `oauth`
///   consumers with Tollgate's defaults; both keep their status (their API admits only the
///   subscriptions created in Tollgate: none until one is);
/// - an apikey plan's key template becomes `config.template` (the fields Tollgate's template has;
///   the others are listed as ignored); quotas in the template become the consumer's.
///
/// Every change is a warning; nothing is more open after the import than it was in Otoroshi.
fn otoroshi_plans(api: &Value, path: &str, out: &mut Import) -> Value {
    let Some(obj) = api.as_object() else {
        return api.clone();
    };
    // `plans` (Otoroshi's API JSON), `documentation.plans` (older versions) or `consumers`.
    let documented = obj.get("documentation").and_then(|d| d.get("plans"));
    let (plans, plans_path) = match (obj.get("plans"), documented, obj.get("consumers")) {
        (Some(Value::Array(p)), _, _) => (p, join(path, "plans")),
        (_, Some(Value::Array(p)), _) => (p, join(&join(path, "documentation"), "plans")),
        (_, _, Some(Value::Array(p))) => (p, join(path, "consumers")),
        _ => return api.clone(),
    };
    let str_of = |plan: &serde_json::Map<String, Value>, k: &str| {
        plan.get(k)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    let kind_of = |plan: &serde_json::Map<String, Value>| {
        str_of(plan, "access_mode_configuration_type")
            .or_else(|| str_of(plan, "kind"))
            .unwrap_or_else(|| "keyless".to_owned())
    };
    let published_non_keyless = plans.iter().filter_map(Value::as_object).any(|p| {
        str_of(p, "status").as_deref().unwrap_or("published") == "published"
            && kind_of(p) != "keyless"
    });
    let mut consumers = Vec::with_capacity(plans.len());
    for (j, plan) in plans.iter().enumerate() {
        let at = index(&plans_path, j);
        let Some(plan) = plan.as_object() else {
            consumers.push(plan.clone());
            continue;
        };
        let mut consumer = serde_json::Map::new();
        for k in plan.keys() {
            if PLAN_FIELDS.contains(&k.as_str()) || k == "kind" || k == "config" {
                continue;
            }
            out.ignored_fields.push(join(&at, k));
        }
        for k in ["id", "name", "description", "tags", "metadata"] {
            if let Some(v) = plan.get(k) {
                consumer.insert(k.to_owned(), v.clone());
            }
        }
        let kind = kind_of(plan);
        let mut status = match str_of(plan, "status").as_deref() {
            None => "published".to_owned(),
            Some(s @ ("staging" | "published" | "deprecated" | "closed")) => s.to_owned(),
            Some(other) => {
                out.warnings.push(
                    join(&at, "status"),
                    format!(
                        "unknown status `{other}` (Otoroshi reads it as closed); imported closed"
                    ),
                );
                "closed".to_owned()
            }
        };
        let serving = status == "published" || status == "deprecated";
        if kind == "keyless" && published_non_keyless && status != "staging" && status != "closed" {
            out.warnings.push(
                join(&at, "status"),
                "a keyless plan beside a published non-keyless plan admits nobody in Otoroshi \
                 (NgExpectedConsumer refuses anonymous calls): imported in staging",
            );
            status = "staging".to_owned();
        }
        // Otoroshi's `oauth2-remote` verifies a remote IdP's tokens: Tollgate's `jwt` consumer
        // with the IdP's keys. Its `verifier` (like a `jwt` plan's) names an Otoroshi JWT
        // verifier entity, which is not imported: such plans wait in staging, unconfigured.
        let kind = if kind == "oauth2-remote" {
            out.warnings.push(
                join(&at, "access_mode_configuration_type"),
                "an `oauth2-remote` plan verifies a remote identity provider's tokens: imported \
                 as a `jwt` consumer in staging; set config.verifier to the provider's JWK set, \
                 then publish it",
            );
            if serving {
                status = "staging".to_owned();
            }
            "jwt".to_owned()
        } else {
            kind
        };
        if kind == "jwt" && serving && status != "staging" {
            out.warnings.push(
                join(&at, "access_mode_configuration"),
                "a `jwt` plan names an Otoroshi JWT verifier entity, which Tollgate does not \
                 import: imported in staging without a verifier; set config.verifier, then \
                 publish it",
            );
            status = "staging".to_owned();
        }
        consumer.insert("kind".to_owned(), Value::String(kind.clone()));
        consumer.insert("status".to_owned(), Value::String(status));
        let config = plan
            .get("access_mode_configuration")
            .or_else(|| plan.get("config"));
        if kind == "apikey" {
            let mut template = serde_json::Map::new();
            if let Some(Value::Object(cfg)) = config {
                let cfg = match cfg.get("template") {
                    Some(Value::Object(t)) => t,
                    _ => cfg,
                };
                for (k, v) in cfg {
                    if TEMPLATE_FIELDS.contains(&k.as_str()) {
                        template.insert(k.clone(), v.clone());
                    } else if ["throttlingQuota", "dailyQuota", "monthlyQuota"]
                        .contains(&k.as_str())
                    {
                        consumer.entry(k.clone()).or_insert_with(|| v.clone());
                    } else {
                        out.ignored_fields
                            .push(join(&join(&at, "access_mode_configuration"), k));
                    }
                }
            }
            if let Some(Value::Object(rotation)) = template.get_mut("rotation") {
                rotation.remove("nextSecret");
            }
            let mut cfg = serde_json::Map::new();
            cfg.insert("template".to_owned(), Value::Object(template));
            consumer.insert("config".to_owned(), Value::Object(cfg));
        } else if kind == "mtls" {
            // Otoroshi's mtls plan config is Tollgate's: the two regex lists.
            let mut cfg = serde_json::Map::new();
            if let Some(Value::Object(given)) = config {
                for (k, v) in given {
                    if k == "regex_subject_dns" || k == "regex_issuer_dns" {
                        cfg.insert(k.clone(), v.clone());
                    } else {
                        out.ignored_fields
                            .push(join(&join(&at, "access_mode_configuration"), k));
                    }
                }
            }
            consumer.insert("config".to_owned(), Value::Object(cfg));
        } else if let Some(cfg) = config.filter(|c| !c.is_null()) {
            if cfg.as_object().is_none_or(|o| !o.is_empty()) {
                out.ignored_fields
                    .push(join(&at, "access_mode_configuration"));
                if kind.starts_with("oauth2") || kind == "oauth" {
                    out.warnings.push(
                        join(&at, "access_mode_configuration"),
                        "Otoroshi's key pair and expiration are not imported: the consumer's \
                         tokens are signed by the cluster's ES256 token key and last 3600 s \
                         (config.alg, config.token_ttl_s)",
                    );
                }
            }
        }
        for k in ["throttlingQuota", "dailyQuota", "monthlyQuota"] {
            if let Some(v) = plan.get(k) {
                consumer.insert(k.to_owned(), v.clone());
            }
        }
        if plan
            .get("rateLimiting")
            .is_some_and(|r| r.as_object().is_some_and(|o| !o.is_empty()))
        {
            out.warnings.push(
                join(&at, "rateLimiting"),
                "Otoroshi's rate-limiting strategy is not imported: set the consumer's \
                 throttlingQuota, dailyQuota and monthlyQuota",
            );
        }
        consumers.push(Value::Object(consumer));
    }
    let mut api = obj.clone();
    api.remove("plans");
    api.insert("consumers".to_owned(), Value::Array(consumers));
    Value::Object(api)
}

//! Reading entity documents: Otoroshi exports and Tollgate entity files.
//!
//! Both share the top-level keys `routes`, `backends`, `apiKeys` and `apis`. An Otoroshi export
//! ([`Dialect::Otoroshi`]) carries much more (legacy service descriptors, certificates, global
//! config, fields Tollgate has no use for): unknown fields are tolerated, unsupported entities are
//! listed one by one with the reason, and a route whose flow needs a plugin Tollgate lacks is
//! imported disabled with a warning. A Tollgate file ([`Dialect::Tollgate`]) is strict: an unknown
//! field or key is a problem. In both, every problem is reported with its JSON path and an entity
//! with a problem is left out, never half-imported.

use std::collections::HashSet;

use serde_json::Value;

use crate::entity::{Api, ApiKey, PluginKind, Route, StoredBackend};
use crate::validate::{Problems, Validate, from_value, index, join};

/// Which kind of document this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Tollgate's own entity files: unknown fields are errors.
    Tollgate,
    /// Otoroshi exports: unknown fields are tolerated, unsupported entities skipped and listed.
    Otoroshi,
}

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
        "certificates",
        "certificates are not part of the entity log; TLS listeners read PEM files",
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
        let located = ["routes", "apiKeys", "backends", "apis"].iter().any(|k| {
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
    let document: Value = serde_json::from_slice(bytes).map_err(|e| {
        let mut p = Problems::default();
        p.push("", format!("not valid JSON: {e}"));
        p
    })?;
    import_value(&document, dialect)
}

/// Reads an entity document that is already parsed.
///
/// # Errors
/// When `document` is not a JSON object.
pub fn import_value(document: &Value, dialect: Option<Dialect>) -> Result<Import, Problems> {
    let Some(obj) = document.as_object() else {
        let mut p = Problems::default();
        p.push(
            "",
            "expected a JSON object with `routes`, `backends`, `apiKeys` and/or `apis`",
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
            "routes" | "backends" | "apiKeys" | "apis" => {}
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
                "unknown key; expected `routes`, `backends`, `apiKeys` or `apis`",
            ),
        }
    }

    let backends = read_list::<StoredBackend>(obj, "backends", &mut out, |b| b.id.clone());
    let apikeys = read_list::<ApiKey>(obj, "apiKeys", &mut out, |k| k.client_id.clone());
    let apis = read_list::<Api>(obj, "apis", &mut out, |a| a.id.clone());
    let mut routes = read_list::<Route>(obj, "routes", &mut out, |r| r.id.clone());

    let backend_ids: HashSet<&str> = backends.iter().map(|(_, b)| b.id.as_str()).collect();
    routes.retain_mut(|(path, route)| {
        let mut ok = true;
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
        for (i, plugin) in route.plugins.iter().enumerate() {
            if plugin.enabled && PluginKind::from_id(&plugin.plugin).is_none() {
                let at = join(&index(&join(path, "plugins"), i), "plugin");
                let message = format!("unknown plugin `{}`", plugin.plugin);
                if strict {
                    out.problems.push(at, message);
                    ok = false;
                } else if route.enabled {
                    route.enabled = false;
                    out.warnings
                        .push(at, format!("{message}; the route is imported disabled"));
                }
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

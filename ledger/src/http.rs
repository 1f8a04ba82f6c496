//! The query API: HTTP/1.1, JSON, served by gateway-httpd (the control plane's one bounded
//! server: a deadline per request, a total and a per-peer connection cap, no body accepted).
//! Read-only: every route is a `GET` that reads the store in its own read transaction,
//! concurrently with the fold.
//!
//! With `[ledger] token`, every endpoint but `/health` needs `Authorization: Bearer <token>`
//! (checked in constant time from the head; 401 otherwise). Answers that list API keys the
//! caller did not name show client-id-only keys by pseudonym ([`crate::pseudonym`]).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

use gateway_httpd::{BearerToken, Head, Request, Response, decode_component};
use gateway_model::event::{EntityEvent, EntityKind};
use serde_json::json;

use crate::calendar;
use crate::error::{LedgerError, LedgerErrorKind};
use crate::query::{self, Granularity};
use crate::runtime::{Shared, now_ms};
use crate::store::Dimension;

fn bad_request(description: impl Into<String>) -> Response {
    Response::error(400, "invalid_request", &description.into())
}

/// The query API as gateway-httpd serves it.
struct LedgerHttp {
    shared: Arc<Shared>,
    token: Option<BearerToken>,
}

impl gateway_httpd::Handler for LedgerHttp {
    fn authorize(&self, head: &Head) -> Result<(), Response> {
        match &self.token {
            Some(token) if !is_health(&head.target) && !token.matches(head) => {
                Err(gateway_httpd::unauthorized())
            }
            _ => Ok(()),
        }
    }

    fn handle(&self, request: &Request) -> Response {
        if !matches!(request.head.method.as_str(), "GET" | "HEAD") {
            return Response::error(405, "method_not_allowed", "only GET is served")
                .with_header("allow", "GET, HEAD".to_owned());
        }
        route(&self.shared, &request.head.target)
    }
}

/// Whether `target` is routed to `/health`, the one endpoint open without the token (read the
/// way [`route`] reads it).
fn is_health(target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    path.trim_start_matches('/') == "health"
}

/// Serves `listener` on its own threads (named `ledger-http`, `ledger-http-conn`) until the
/// returned server is shut down.
///
/// # Errors
///
/// The listener cannot be made non-blocking, or the thread cannot start.
pub fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
) -> Result<gateway_httpd::Server, LedgerError> {
    let token = shared
        .config
        .token
        .as_ref()
        .map(|t| BearerToken::new(t.expose()));
    if token.is_none() {
        if let Ok(addr) = listener.local_addr() {
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "the ledger's query API is open to anyone who can reach it: set [ledger] token");
            }
        }
    }
    let limits = shared.config.http;
    gateway_httpd::Server::start(
        listener,
        "ledger-http",
        limits,
        LedgerHttp { shared, token },
    )
    .map_err(|e| LedgerError::with(LedgerErrorKind::Io, "start the query API", e))
}

fn parse_query(query: &str) -> Result<BTreeMap<String, String>, Response> {
    let mut out = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (decode_component(k), decode_component(v)) else {
            return Err(bad_request("bad percent-encoding in the query"));
        };
        if out.insert(k.clone(), v).is_some() {
            return Err(bad_request(format!("parameter `{k}` given twice")));
        }
    }
    Ok(out)
}

fn check_params(params: &BTreeMap<String, String>, allowed: &[&str]) -> Result<(), Response> {
    match params.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad_request(format!(
            "unknown parameter `{k}` (expected {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn internal(e: &LedgerError) -> Response {
    tracing::error!(error = %e, "query failed");
    Response::error(500, "internal_error", &e.to_string())
}

/// Answers a request for `target` (path and query).
pub fn route(shared: &Shared, target: &str) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = match parse_query(query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match segments.as_slice() {
        ["health"] => Ok(health(shared)),
        ["metrics"] => Ok(Response::text(
            200,
            "text/plain; version=0.0.4",
            shared.metrics.render(now_ms()),
        )),
        ["api", "usage"] => usage(shared, &params),
        ["api", "totals"] => totals(shared, &params),
        ["api", "export"] => export(shared, &params),
        ["api", "entities", kind, id, "history"] => history(shared, kind, id),
        ["api", "quarantine"] => quarantine(shared),
        ["api", "state"] => state(shared),
        _ => Err(Response::error(
            404,
            "not_found",
            &format!("no route {path}"),
        )),
    };
    result.unwrap_or_else(|r| r)
}

fn health(shared: &Shared) -> Response {
    let (ok, body) = shared.metrics.health(now_ms(), shared.source_name());
    Response::json(if ok { 200 } else { 503 }, &body)
}

/// The quarantined records. A record that mentions a client-id-only key (its error text, its
/// raw bytes) shows the pseudonym in the text and no payload: the raw bytes stay in the store,
/// for `ledger dump` on the ledger's own machine.
fn quarantine(shared: &Shared) -> Result<Response, Response> {
    let mut items = shared.store.quarantine().map_err(|e| internal(&e))?;
    let hidden = shared.client_id_only();
    if !hidden.is_empty() {
        for item in &mut items {
            let Some(obj) = item.as_object_mut() else {
                continue;
            };
            if let Some(error) = obj.get("error").and_then(|e| e.as_str()) {
                let scrubbed = hidden.scrub_text(error);
                obj.insert("error".into(), scrubbed.into());
            }
            let payload = obj
                .get("payload_hex")
                .and_then(|h| h.as_str())
                .and_then(unhex);
            if payload.is_some_and(|p| hidden.mentioned_in(&p)) {
                obj.insert("payload_hex".into(), serde_json::Value::Null);
                obj.insert(
                    "payload_withheld".into(),
                    "mentions a client-id-only API key; `ledger dump` shows it".into(),
                );
            }
        }
    }
    Ok(Response::json(200, &json!({ "items": items })))
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

fn state(shared: &Shared) -> Result<Response, Response> {
    let hash = shared.store.state_hash().map_err(|e| internal(&e))?;
    let positions: serde_json::Map<String, serde_json::Value> = shared
        .store
        .positions()
        .map_err(|e| internal(&e))?
        .into_iter()
        .map(|(k, p)| (k, json!({"next": p.next, "high_water_ms": p.high_water_ms})))
        .collect();
    Ok(Response::json(
        200,
        &json!({"state_hash": hash, "positions": positions, "counters": shared.metrics.stats()}),
    ))
}

fn usage(shared: &Shared, params: &BTreeMap<String, String>) -> Result<Response, Response> {
    check_params(
        params,
        &[
            "apikey",
            "consumer",
            "subscription",
            "api",
            "route",
            "granularity",
            "from",
            "to",
        ],
    )?;
    let mut chosen = Dimension::ALL
        .iter()
        .filter_map(|d| params.get(d.as_str()).map(|id| (*d, id)));
    let (dim, id) = match (chosen.next(), chosen.next()) {
        (Some(one), None) => one,
        (None, _) => {
            return Err(bad_request(
                "one of apikey, consumer, subscription, api or route is required",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(bad_request(
                "give only one of apikey, consumer, subscription, api or route",
            ));
        }
    };
    if id.is_empty() {
        return Err(bad_request(format!("`{}` is empty", dim.as_str())));
    }
    let granularity = match params.get("granularity").map(String::as_str) {
        None | Some("day") => Granularity::Day,
        Some("month") => Granularity::Month,
        Some(other) => {
            return Err(bad_request(format!(
                "granularity: expected day or month, got {other:?}"
            )));
        }
    };
    let date = |name: &str| -> Result<Option<jiff::civil::Date>, Response> {
        params
            .get(name)
            .map(|text| {
                calendar::parse_day(text)
                    .or_else(|| {
                        (granularity == Granularity::Month)
                            .then(|| calendar::parse_month(text))
                            .flatten()
                    })
                    .ok_or_else(|| {
                        bad_request(format!("{name}: expected a date YYYY-MM-DD, got {text:?}"))
                    })
            })
            .transpose()
    };
    let (from, to) = (date("from")?, date("to")?);
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(bad_request("from is after to"));
        }
    }
    // A client-id-only key may be named by its pseudonym (as listed by the export).
    let key = match dim {
        Dimension::ApiKey => shared.client_id_only().resolve(id).to_owned(),
        _ => id.clone(),
    };
    let cal = &shared.config.calendar;
    let periods = query::usage(&shared.store, cal, dim, &key, granularity, from, to)
        .map_err(|e| internal(&e))?;
    let items: Vec<_> = periods
        .iter()
        .map(|(period, usage)| usage.to_json(period))
        .collect();
    let mut body = serde_json::Map::new();
    body.insert(dim.as_str().into(), id.clone().into());
    body.insert("granularity".into(), granularity.as_str().into());
    body.insert("timezone".into(), cal.name().into());
    body.insert("items".into(), items.into());
    Ok(Response::json(200, &serde_json::Value::Object(body)))
}

fn totals(shared: &Shared, params: &BTreeMap<String, String>) -> Result<Response, Response> {
    check_params(params, &["apikey"])?;
    let Some(apikey) = params.get("apikey").filter(|k| !k.is_empty()) else {
        return Err(bad_request("apikey is required"));
    };
    // A client-id-only key may be named by its pseudonym; the answer says what was asked.
    let key = shared.client_id_only().resolve(apikey).to_owned();
    let record = shared.totals(&key).map_err(|e| internal(&e))?;
    let now = now_ms();
    let record = match record {
        Some(r) => gateway_model::event::TotalsRecord {
            apikey: apikey.clone(),
            ..r
        },
        None => {
            let day = shared.config.calendar.day_of(now).unwrap_or(0);
            gateway_model::event::TotalsRecord {
                apikey: apikey.clone(),
                day,
                month: day / 100,
                daily_calls: 0,
                monthly_calls: 0,
                updated_at: now,
                node: Some(shared.config.instance.clone()),
                nodes: BTreeMap::new(),
                quotas_reset_at: None,
            }
        }
    };
    let mut body = serde_json::to_value(&record).unwrap_or_default();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("timezone".into(), shared.config.calendar.name().into());
    }
    Ok(Response::json(200, &body))
}

fn export(shared: &Shared, params: &BTreeMap<String, String>) -> Result<Response, Response> {
    check_params(params, &["period", "format", "by"])?;
    let by = match params.get("by").map(String::as_str) {
        None | Some("apikey") => query::ExportBy::ApiKey,
        Some("subscription") => query::ExportBy::Subscription,
        Some(other) => {
            return Err(bad_request(format!(
                "by: expected apikey or subscription, got {other:?}"
            )));
        }
    };
    let Some(period) = params.get("period") else {
        return Err(bad_request(
            "period is required: YYYY-MM (a month) or YYYY-MM-DD (a day)",
        ));
    };
    let (granularity, date) = if let Some(d) = calendar::parse_month(period) {
        (Granularity::Month, d)
    } else if let Some(d) = calendar::parse_day(period) {
        (Granularity::Day, d)
    } else {
        return Err(bad_request(format!(
            "period: expected YYYY-MM or YYYY-MM-DD, got {period:?}"
        )));
    };
    let csv = match params.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "format: expected csv or json, got {other:?}"
            )));
        }
    };
    let cal = &shared.config.calendar;
    let rows =
        query::export(&shared.store, cal, granularity, date, by).map_err(|e| internal(&e))?;
    // Every key is listed: client-id-only ones by pseudonym, in the order of what is shown.
    let rows: BTreeMap<String, query::PeriodUsage> = match by {
        query::ExportBy::ApiKey => {
            let hidden = shared.client_id_only();
            rows.into_iter()
                .map(|(apikey, usage)| (hidden.show(&apikey).into_owned(), usage))
                .collect()
        }
        query::ExportBy::Subscription => rows,
    };
    let label = query::label(granularity, date);
    let mut body = String::new();
    if csv {
        body.push_str(match by {
            query::ExportBy::ApiKey => query::CSV_HEADER,
            query::ExportBy::Subscription => query::CSV_HEADER_BY_SUBSCRIPTION,
        });
        body.push('\n');
        for (who, usage) in &rows {
            body.push_str(&query::csv_line(&label, cal.name(), who, by, usage));
            body.push('\n');
        }
    } else {
        for (who, usage) in &rows {
            let mut line = usage.to_json(&label);
            if let Some(obj) = line.as_object_mut() {
                match by {
                    query::ExportBy::ApiKey => {
                        obj.insert("apikey".into(), who.clone().into());
                    }
                    query::ExportBy::Subscription => {
                        let (api, consumer, subscription) = query::split_line(who);
                        obj.insert("api".into(), api.into());
                        obj.insert("consumer".into(), consumer.into());
                        obj.insert("subscription".into(), subscription.into());
                    }
                }
                obj.insert("timezone".into(), cal.name().into());
            }
            body.push_str(&line.to_string());
            body.push('\n');
        }
    }
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    Ok(Response::text(200, content_type, body))
}

fn history(shared: &Shared, kind: &str, id: &str) -> Result<Response, Response> {
    let Some(kind) = EntityKind::ALL.iter().find(|k| k.as_str() == kind) else {
        return Err(bad_request(format!(
            "unknown entity kind {kind:?} (expected api, route, backend, apikey, consumer, subscription or certificate)"
        )));
    };
    let Some(id) = decode_component(id).filter(|i| !i.is_empty()) else {
        return Err(bad_request("bad entity id"));
    };
    // An API key asked for by its id: that id is shown, every other client-id-only key id is
    // not. Asked for by pseudonym, or another kind: none is.
    let (stored_id, named) = {
        let hidden = shared.client_id_only();
        match kind {
            EntityKind::ApiKey if hidden.resolve(&id) != id => {
                (hidden.resolve(&id).to_owned(), None)
            }
            EntityKind::ApiKey => (id.clone(), Some(id.clone())),
            _ => (id.clone(), None),
        }
    };
    let events = shared
        .store
        .history(kind.as_str(), &stored_id)
        .map_err(|e| internal(&e))?;
    if events.is_empty() {
        return Err(Response::error(
            404,
            "not_found",
            &format!("no history for {kind}/{id}"),
        ));
    }
    let mut items: Vec<_> = events
        .iter()
        .filter_map(|bytes| EntityEvent::decode(bytes).ok())
        .map(|event| {
            let mut entity = event.entity;
            gateway_model::redact::redact(&mut entity);
            json!({"version": event.version, "at": event.at, "actor": event.actor,
                   "action": event.action, "event_id": event.id, "entity": entity})
        })
        .collect();
    let hidden = shared.client_id_only();
    for item in &mut items {
        hidden.scrub(item, named.as_deref());
    }
    Ok(Response::json(
        200,
        &json!({"kind": kind.as_str(), "id": id, "items": items}),
    ))
}

//! OAuth2 client credentials for `oauth` consumers (DESIGN §8): the three endpoints every host
//! of such an API answers, sans-IO (the shell reads the body, passes `now` and a random source,
//! and writes the [`Reply`]).
//!
//! - `POST /.well-known/otoroshi/oauth/token` (RFC 6749 §4.4): `grant_type=client_credentials`,
//!   the client authenticated by HTTP Basic or by `client_id`/`client_secret` in the form (one
//!   method only, §2.3.1); the client is the API key issued to an `oauth` subscription of *this*
//!   API, its secret compared in constant time. The answer is `{access_token, token_type:
//!   "Bearer", expires_in}` with `Cache-Control: no-store`, the token an ES256 JWT signed by the
//!   cluster's current token key (`kid`), `iss` `tollgate`, `aud` the API's id, `sub` the
//!   subscription's id, `client_id`, `iat`, `nbf`, `exp` (the consumer's `token_ttl_s`), `jti`.
//!   Errors are RFC 6749 §5.2's: 400 `invalid_request`, `unsupported_grant_type`,
//!   `unauthorized_client` (a subscription that may not call), 401 `invalid_client` (with
//!   `WWW-Authenticate: Basic` when Basic was used).
//! - `GET /.well-known/otoroshi/oauth/jwks.json`: the public token keys that still verify.
//! - `POST /.well-known/otoroshi/oauth/token/introspect` (RFC 7662): an authenticated client of
//!   the API asks about `token`; `{active: true, …claims}` when it verifies here and its
//!   subscription may call, `{active: false}` otherwise.
//!
//! Failed client authentications are counted per client id on each core ([`Throttle`]): after
//! [`Throttle::MAX_FAILURES`] within [`Throttle::WINDOW_MS`] the client id is answered 429 (with
//! `Retry-After`) until the window ends, whatever the secret.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gateway_model::entity::{ConsumerKind, SubscriptionStatus};
use ring::rand::SecureRandom;
use rustc_hash::FxHashMap;

use crate::apikey::KeyStore;
use crate::flow::Directory;
use crate::jose::{INTROSPECT_PATH, JWKS_PATH, TOKEN_ISSUER, TOKEN_PATH, Verifier};

/// The three endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The token endpoint.
    Token,
    /// The JWK set.
    Jwks,
    /// Token introspection.
    Introspect,
}

impl Endpoint {
    /// The endpoint at `path` (canonical), if any.
    #[must_use]
    pub fn of(path: &str) -> Option<Self> {
        match path {
            TOKEN_PATH => Some(Self::Token),
            JWKS_PATH => Some(Self::Jwks),
            INTROSPECT_PATH => Some(Self::Introspect),
            _ => None,
        }
    }
}

/// What an endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// `WWW-Authenticate: Basic realm="tollgate"` (a Basic client that failed).
    pub basic_challenge: bool,
    /// `Retry-After`, seconds (a throttled client id).
    pub retry_after_s: Option<u64>,
    /// `Cache-Control: no-store` and `Pragma: no-cache` (token and introspection answers).
    pub no_store: bool,
}

impl Reply {
    fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            body: body.to_string(),
            basic_challenge: false,
            retry_after_s: None,
            no_store: true,
        }
    }

    fn error(status: u16, error: &str, description: &str) -> Self {
        Self::json(status, &crate::respond::error_json(error, description))
    }
}

/// The request, as the endpoints need it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method.
    pub method: &'a str,
    /// The `Authorization` header.
    pub authorization: Option<&'a [u8]>,
    /// The `Content-Type` header.
    pub content_type: Option<&'a [u8]>,
    /// The body (at most a few KiB: the shell refuses more).
    pub body: &'a [u8],
}

/// Failed client authentications per client id, on one core (plain data, no lock).
#[derive(Debug, Default)]
pub struct Throttle {
    failures: FxHashMap<Box<str>, (u32, i64)>,
}

impl Throttle {
    /// Failures allowed per client id within [`Throttle::WINDOW_MS`] (per core).
    pub const MAX_FAILURES: u32 = 5;
    /// The window, ms.
    pub const WINDOW_MS: i64 = 60_000;
    /// Client ids tracked at most (the map starts over beyond: bounded memory).
    pub const CAPACITY: usize = 10_000;

    /// Seconds until `client_id` may try again, when it is throttled.
    #[must_use]
    pub fn blocked(&self, client_id: &str, now_ms: i64) -> Option<u64> {
        let (n, since) = self.failures.get(client_id)?;
        let end = since.saturating_add(Self::WINDOW_MS);
        (*n >= Self::MAX_FAILURES && now_ms < end)
            .then(|| u64::try_from((end - now_ms + 999) / 1000).unwrap_or(1))
    }

    /// Counts a failure of `client_id`.
    pub fn failed(&mut self, client_id: &str, now_ms: i64) {
        if self.failures.len() >= Self::CAPACITY && !self.failures.contains_key(client_id) {
            self.failures
                .retain(|_, (_, since)| now_ms < since.saturating_add(Self::WINDOW_MS));
            if self.failures.len() >= Self::CAPACITY {
                self.failures.clear();
            }
        }
        let entry = self.failures.entry(client_id.into()).or_insert((0, now_ms));
        if now_ms >= entry.1.saturating_add(Self::WINDOW_MS) {
            *entry = (0, now_ms);
        }
        entry.0 = entry.0.saturating_add(1);
    }

    /// Forgets `client_id`'s failures (it authenticated).
    pub fn succeeded(&mut self, client_id: &str) {
        self.failures.remove(client_id);
    }
}

/// A form body's fields (`application/x-www-form-urlencoded`), or `None` when malformed or a
/// field is repeated (RFC 6749 §3.2: parameters must not be included more than once).
fn form(body: &[u8]) -> Option<FxHashMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = FxHashMap::default();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = crate::http::decode_component(k)?;
        let v = crate::http::decode_component(v)?;
        if out.insert(k, v).is_some() {
            return None;
        }
    }
    Some(out)
}

/// `Basic <base64(id:secret)>` (each part form-urlencoded, RFC 6749 §2.3.1).
fn basic(value: &[u8]) -> Option<(String, String)> {
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = STANDARD.decode(value.get(6..)?.trim_ascii()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((
        crate::http::decode_component(id)?,
        crate::http::decode_component(secret)?,
    ))
}

/// Why a client was not authenticated.
enum ClientError {
    Reply(Reply),
}

/// The authenticated client: the subscription (directory index) its key was issued to.
struct Client {
    client_id: String,
    subscription: u32,
}

fn is_form(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|c| {
        c.split(|b| *b == b';').next().is_some_and(|m| {
            m.trim_ascii()
                .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
        })
    })
}

/// Authenticates the client of `req` as an `oauth` subscription's key of API `api`.
fn authenticate(
    req: &Request<'_>,
    fields: &FxHashMap<String, String>,
    api: u32,
    directory: &Directory,
    keys: &KeyStore,
    throttle: &mut Throttle,
    now_ms: i64,
) -> Result<Client, ClientError> {
    let from_header = req.authorization.and_then(basic);
    let in_form = fields.get("client_id").zip(fields.get("client_secret"));
    let used_basic = from_header.is_some();
    let (client_id, secret) = match (from_header, in_form) {
        (Some(_), Some(_)) => {
            return Err(ClientError::Reply(Reply::error(
                400,
                "invalid_request",
                "the client authenticated twice (Basic and the form): use one",
            )));
        }
        (Some(pair), None) => pair,
        (None, Some((id, secret))) => (id.clone(), secret.clone()),
        (None, None) => {
            let mut r = Reply::error(401, "invalid_client", "client authentication failed");
            r.basic_challenge = true;
            return Err(ClientError::Reply(r));
        }
    };
    if let Some(wait) = throttle.blocked(&client_id, now_ms) {
        let mut r = Reply::error(
            429,
            "invalid_client",
            "too many failed authentications for this client: retry later",
        );
        r.retry_after_s = Some(wait);
        return Err(ClientError::Reply(r));
    }
    let entry = keys.get(&client_id).filter(|e| !e.is_holder());
    let subscription = entry
        .and_then(|e| directory.subscription_of(e.index()))
        .filter(|(_, s)| {
            directory
                .consumer(s.consumer())
                .is_some_and(|c| c.kind() == ConsumerKind::Oauth && directory.api_of(c) == api)
        });
    let proven = match (entry, subscription) {
        (Some(e), Some(_)) => e.secret_matches(secret.as_bytes()),
        _ => {
            KeyStore::burn_secret(secret.as_bytes());
            false
        }
    };
    let Some((index, _)) = subscription.filter(|_| proven) else {
        throttle.failed(&client_id, now_ms);
        let mut r = Reply::error(401, "invalid_client", "client authentication failed");
        r.basic_challenge = used_basic;
        return Err(ClientError::Reply(r));
    };
    throttle.succeeded(&client_id);
    Ok(Client {
        client_id,
        subscription: index,
    })
}

/// Whether subscription `index` may call: enabled, its consumer serving, its key enabled.
fn may_call(
    directory: &Directory,
    keys: &KeyStore,
    client_id: &str,
    index: u32,
    now_ms: i64,
) -> bool {
    let Some(sub) = directory.subscription(index) else {
        return false;
    };
    let consumer_serves = directory
        .consumer(sub.consumer())
        .is_some_and(|c| c.status().serves());
    let key_ok = keys
        .get(client_id)
        .is_some_and(|k| k.enabled() && !k.is_expired_at(now_ms));
    sub.status() == SubscriptionStatus::Enabled && consumer_serves && key_ok
}

/// Answers `endpoint` for API `api_id` (`api`: its directory index).
#[allow(clippy::too_many_arguments)]
pub fn answer(
    endpoint: Endpoint,
    req: &Request<'_>,
    api_id: &str,
    api: u32,
    directory: &Directory,
    keys: &KeyStore,
    throttle: &mut Throttle,
    rng: &dyn SecureRandom,
    now_ms: i64,
) -> Reply {
    match endpoint {
        Endpoint::Jwks => jwks(req, directory, now_ms),
        Endpoint::Token | Endpoint::Introspect => {
            if req.method != "POST" {
                return Reply::error(405, "invalid_request", "use POST");
            }
            if !is_form(req.content_type) {
                return Reply::error(
                    400,
                    "invalid_request",
                    "expected an application/x-www-form-urlencoded body",
                );
            }
            let Some(fields) = form(req.body) else {
                return Reply::error(
                    400,
                    "invalid_request",
                    "malformed form body, or a parameter repeated",
                );
            };
            if endpoint == Endpoint::Token {
                match fields.get("grant_type").map(String::as_str) {
                    None => {
                        return Reply::error(400, "invalid_request", "grant_type is missing");
                    }
                    Some("client_credentials") => {}
                    Some(_) => {
                        return Reply::error(
                            400,
                            "unsupported_grant_type",
                            "only client_credentials is supported",
                        );
                    }
                }
            }
            let client = match authenticate(req, &fields, api, directory, keys, throttle, now_ms) {
                Ok(c) => c,
                Err(ClientError::Reply(r)) => return r,
            };
            if endpoint == Endpoint::Token {
                token(&client, api_id, directory, keys, rng, now_ms)
            } else {
                introspect(&fields, api_id, api, directory, keys, now_ms)
            }
        }
    }
}

fn token(
    client: &Client,
    api_id: &str,
    directory: &Directory,
    keys: &KeyStore,
    rng: &dyn SecureRandom,
    now_ms: i64,
) -> Reply {
    if !may_call(
        directory,
        keys,
        &client.client_id,
        client.subscription,
        now_ms,
    ) {
        return Reply::error(
            400,
            "unauthorized_client",
            "the client's subscription may not call (pending, disabled or closed)",
        );
    }
    let Some(sub) = directory.subscription(client.subscription) else {
        return Reply::error(400, "unauthorized_client", "no subscription");
    };
    let ttl = directory
        .consumer(sub.consumer())
        .map_or(3600, crate::flow::ConsumerEntry::token_ttl_s);
    let Some(signer) = &directory.token_keys().signer else {
        return Reply::error(
            503,
            "temporarily_unavailable",
            "no token key yet: retry shortly",
        );
    };
    let mut jti = [0u8; 16];
    if rng.fill(&mut jti).is_err() {
        return Reply::error(503, "temporarily_unavailable", "no randomness");
    }
    let now_s = now_ms.div_euclid(1000);
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": signer.kid});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER,
        "sub": sub.id(),
        "aud": api_id,
        "client_id": client.client_id,
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s.saturating_add(i64::try_from(ttl).unwrap_or(3600)),
        "jti": URL_SAFE_NO_PAD.encode(jti),
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let Ok(sig) = signer.pair.sign(rng, input.as_bytes()) else {
        return Reply::error(503, "temporarily_unavailable", "signing failed");
    };
    let access_token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    Reply::json(
        200,
        &serde_json::json!({"access_token": access_token, "token_type": "Bearer", "expires_in": ttl}),
    )
}

fn introspect(
    fields: &FxHashMap<String, String>,
    api_id: &str,
    api: u32,
    directory: &Directory,
    keys: &KeyStore,
    now_ms: i64,
) -> Reply {
    let inactive = || Reply::json(200, &serde_json::json!({"active": false}));
    let Some(token) = fields.get("token") else {
        return Reply::error(400, "invalid_request", "token is missing");
    };
    let Ok(verifier) = Verifier::for_token_keys(directory.token_keys(), api_id) else {
        return inactive();
    };
    let Ok(verified) = verifier.verify(token.as_bytes(), now_ms) else {
        return inactive();
    };
    // The subscription the token names, among this API's oauth consumers.
    let Some(index) = (0..u32::MAX)
        .map_while(|i| directory.consumer(i).map(|c| (i, c)))
        .filter(|(_, c)| c.kind() == ConsumerKind::Oauth && directory.api_of(c) == api)
        .find_map(|(_, c)| c.subscription_named(&verified.subject))
    else {
        return inactive();
    };
    let claims: Option<serde_json::Map<String, serde_json::Value>> = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice(&p).ok());
    let Some(claims) = claims else {
        return inactive();
    };
    let client_id = claims
        .get("client_id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if !may_call(directory, keys, client_id, index, now_ms) {
        return inactive();
    }
    let mut out = serde_json::Map::new();
    out.insert("active".into(), true.into());
    out.insert("token_type".into(), "Bearer".into());
    for k in ["client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti"] {
        if let Some(v) = claims.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    Reply::json(200, &serde_json::Value::Object(out))
}

fn jwks(req: &Request<'_>, directory: &Directory, now_ms: i64) -> Reply {
    if req.method != "GET" && req.method != "HEAD" {
        return Reply::error(405, "invalid_request", "use GET");
    }
    let keys: Vec<serde_json::Value> = directory
        .token_keys()
        .public
        .iter()
        .filter(|k| k.retire_at_ms.is_none_or(|t| now_ms < t))
        .map(|k| {
            let mut m = k.key.jwk_members();
            m.insert("kid".into(), k.kid.clone().into());
            m.insert("use".into(), "sig".into());
            m.insert("alg".into(), "ES256".into());
            serde_json::Value::Object(m)
        })
        .collect();
    let mut r = Reply::json(200, &serde_json::json!({"keys": keys}));
    r.no_store = false;
    r
}

#[cfg(test)]
mod tests;

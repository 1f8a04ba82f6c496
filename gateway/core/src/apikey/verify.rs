//! Verifying a credential against the key store and the route.

use super::ScratchBuf;
use super::context::RouteContext;
use super::extract::Credential;
use super::jwt;
use super::rejection::KeyRejection;
use super::store::{KeyEntry, KeyStore};

/// Checks `cred` for a `method` request on `route` at `now_ms` (ms since the Unix epoch) and
/// returns the key. `scratch` holds decoded JWT parts (untouched for other credentials).
///
/// Checks, in order, each with its own [`KeyRejection`]:
/// 1. the key exists (400 `invalid_api_key`) and the credential proves it: the secret or the next
///    secret (constant time; 401 `bad_api_key`), the `otoapk_` signature for either, a JWT signed
///    with either (401 `bad_jwt`), or the client id alone for a key with `allowClientIdOnly`;
/// 2. the key is enabled and not expired (`now_ms < validUntil`), in every mode, client id alone
///    included (Otoroshi issue #2596);
/// 3. the key authorizes the route id, its API or one of its groups (403 `not_authorized`);
/// 4. a `constrainedServicesOnly` key needs a route with enabled, non-empty routing constraints,
///    and enabled constraints must hold (401 `invalid_api_key`);
/// 5. a `readOnly` key only makes GET, HEAD and OPTIONS requests (405), on every route.
///
/// The credential is proven before anything else is revealed about the key. Path restrictions
/// are the caller's next step ([`KeyEntry::restrictions`]).
///
/// # Errors
/// The first check that fails.
pub fn verify<'s>(
    cred: &Credential<'_>,
    store: &'s KeyStore,
    route: &RouteContext,
    method: &str,
    now_ms: i64,
    scratch: &mut ScratchBuf,
) -> Result<&'s KeyEntry, KeyRejection> {
    let entry = prove(cred, store, route, now_ms, scratch)?;
    check(entry, route, method, now_ms)?;
    Ok(entry)
}

/// Step 1 of [`verify`]: finds the key and checks that the credential proves it (the secret,
/// the next secret, an `otoapk_` signature, a JWT, or the client id alone where allowed), and
/// nothing else. An API's consumers use it to learn whose subscription a call belongs to before
/// they say why that subscription cannot call.
///
/// # Errors
/// An unknown key, or a credential that does not prove it.
pub fn prove<'s>(
    cred: &Credential<'_>,
    store: &'s KeyStore,
    route: &RouteContext,
    now_ms: i64,
    scratch: &mut ScratchBuf,
) -> Result<&'s KeyEntry, KeyRejection> {
    let entry = match *cred {
        Credential::IdSecret {
            client_id, secret, ..
        } => {
            let Some(entry) = store.lookup(client_id) else {
                // As long as a wrong secret takes: the answer's timing must not tell either.
                KeyStore::burn_secret(secret);
                return Err(KeyRejection::UnknownKey);
            };
            if !entry.secret_matches(secret) {
                return Err(KeyRejection::BadSecret);
            }
            entry
        }
        Credential::Bearer {
            client_id,
            signature,
            ..
        } => {
            let Some(entry) = store.lookup(client_id) else {
                KeyStore::burn_bearer(signature);
                return Err(KeyRejection::UnknownKey);
            };
            if !entry.bearer_matches(signature) {
                return Err(KeyRejection::BadBearer);
            }
            entry
        }
        Credential::Jwt { token, .. } => {
            let result = jwt::verify(
                token,
                store,
                route.extractors().jwt_rules(),
                now_ms,
                &mut scratch.0,
            );
            scratch.0.clear();
            result?
        }
        Credential::ClientIdOnly { client_id, .. } => {
            let entry = store.lookup(client_id).ok_or(KeyRejection::UnknownKey)?;
            if !entry.allow_client_id_only() {
                return Err(KeyRejection::ClientIdOnlyNotAllowed);
            }
            entry
        }
        Credential::Malformed { .. } => return Err(KeyRejection::Malformed),
    };
    Ok(entry)
}

/// Steps 2 to 5 of [`verify`], for a key whose credential was proven ([`prove`]): enabled, not
/// expired, authorized on the route, routing constraints, read-only.
///
/// # Errors
/// The first check that fails.
pub fn check(
    entry: &KeyEntry,
    route: &RouteContext,
    method: &str,
    now_ms: i64,
) -> Result<(), KeyRejection> {
    if !entry.enabled() {
        return Err(KeyRejection::Disabled);
    }
    if entry.is_expired_at(now_ms) {
        return Err(KeyRejection::Expired);
    }
    if !entry.authorizes(route) {
        return Err(KeyRejection::NotAuthorized);
    }
    let routing = route.routing();
    if entry.constrained_services_only() && !routing.is_constraining() {
        return Err(KeyRejection::ConstrainedOnly);
    }
    if !routing.matches(entry) {
        return Err(KeyRejection::RoutingMismatch);
    }
    if entry.read_only() && !matches!(method, "GET" | "HEAD" | "OPTIONS") {
        return Err(KeyRejection::ReadOnly);
    }
    Ok(())
}

//! API keys on the request path: extraction of the credential from the request head, and its
//! verification against the key store of the current config snapshot.
//!
//! - [`extract`] finds a [`Credential`] in the headers, in Otoroshi's order with its default
//!   header names (all configurable per route): custom headers, Basic, JWT, `otoapk_` bearer,
//!   client id alone. Only headers are read: Otoroshi's query, cookie and path-parameter sources
//!   are not supported.
//! - [`KeyStore`] is built once per snapshot from the API keys and shared read-only by all cores.
//! - [`verify`] checks the credential against the store and the route ([`RouteContext`], built
//!   once per snapshot from the route and its `ApikeyCalls` plugin config) and returns the
//!   [`KeyEntry`] or a [`KeyRejection`] that says which status and error code to answer with.
//! - [`authenticate`] does both.
//!
//! Where Tollgate differs from Otoroshi, on purpose: `validUntil` is enforced at request time (a
//! key is valid *until* that instant), a disabled key is refused in every mode (including client
//! id alone), HS JWTs and `otoapk_` bearers are accepted when signed with `rotation.nextSecret`,
//! `readOnly` is enforced on every route, a key not authorized on the route is a 403 (not a 400),
//! and a malformed credential is a 401 instead of "no key".
//!
//! Nothing here allocates on the header-based path, reads a clock or logs; secrets never appear in
//! any `Debug` or `Display` output.

mod config;
mod context;
pub(crate) mod ct;
mod extract;
pub mod jwt;
mod rejection;
mod store;
mod verify;

#[cfg(test)]
mod tests;

pub use config::{
    ApikeyCallsConfig, BasicConfig, ClientIdConfig, ConfigError, CustomHeadersConfig,
    ExtractorConfig, Extractors, JwtConfig, JwtRules, OtoBearerConfig, RoutingConfig,
};
pub use context::{RouteContext, RoutingConstraints};
pub use extract::{
    AUTHORIZATION, Credential, DEFAULT_API_KEY_HEADER, DEFAULT_BASIC_HEADER, DEFAULT_BEARER_HEADER,
    DEFAULT_CLIENT_ID_HEADER, DEFAULT_CLIENT_SECRET_HEADER, Source, extract,
};
pub use rejection::{JwtError, KeyRejection};
pub use store::{KeyEntry, KeyStore, QuotaHolder, Quotas, StoreError, bearer_for};
pub use verify::{check, prove, verify};

use std::fmt;

/// Read access to a request's header fields, as extraction needs it.
///
/// `get` must compare names ASCII case-insensitively and return the first field's value. The HTTP
/// codec's head implements it; so does a `[(&str, &[u8])]` slice (tests, benches).
pub trait HeaderLookup {
    /// The value of the first field named `name` (ASCII case-insensitive), if any.
    fn get(&self, name: &str) -> Option<&[u8]>;
}

impl HeaderLookup for [(&str, &[u8])] {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl<const N: usize> HeaderLookup for [(&str, &[u8]); N] {
    fn get(&self, name: &str) -> Option<&[u8]> {
        HeaderLookup::get(self.as_slice(), name)
    }
}

/// A reusable byte buffer for decoding (Basic credentials, JWT parts), kept per core so that
/// decoding allocates only until it has grown once. Its `Debug` never shows its content.
#[derive(Default)]
pub struct ScratchBuf(pub(crate) Vec<u8>);

impl ScratchBuf {
    /// A buffer with room for typical credentials.
    #[must_use]
    pub fn new() -> Self {
        Self(Vec::with_capacity(1024))
    }

    /// Overwrites and empties the buffer, so a decoded secret does not linger in it.
    pub fn wipe(&mut self) {
        self.0.fill(0);
        self.0.clear();
    }
}

impl fmt::Debug for ScratchBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScratchBuf")
            .field("capacity", &self.0.capacity())
            .finish_non_exhaustive()
    }
}

/// The buffers one core needs to extract and verify credentials: one the credential borrows from
/// (decoded Basic), one for verification (decoded JWT parts).
#[derive(Debug, Default)]
pub struct Scratch {
    /// Holds the decoded Basic credential the [`Credential`] borrows.
    pub credential: ScratchBuf,
    /// Holds the decoded JWT header and claims during verification.
    pub token: ScratchBuf,
}

impl Scratch {
    /// Buffers with room for typical credentials.
    #[must_use]
    pub fn new() -> Self {
        Self {
            credential: ScratchBuf::new(),
            token: ScratchBuf::new(),
        }
    }
}

/// Extracts the credential with the route's extractors and verifies it: the whole API-key check
/// of one request.
///
/// # Errors
/// [`KeyRejection::NoKey`] when no credential is found, else whatever [`verify`] refuses.
pub fn authenticate<'s, H: HeaderLookup + ?Sized>(
    headers: &H,
    store: &'s KeyStore,
    route: &RouteContext,
    method: &str,
    now_ms: i64,
    scratch: &mut Scratch,
) -> Result<&'s KeyEntry, KeyRejection> {
    let Scratch { credential, token } = scratch;
    let result = match extract(route.extractors(), headers, credential) {
        Some(cred) => verify(&cred, store, route, method, now_ms, token),
        None => Err(KeyRejection::NoKey),
    };
    credential.wipe();
    result
}

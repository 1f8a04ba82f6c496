//! Finding the credential in the request headers.
//!
//! Order (DESIGN §5; the first extractor that finds something wins):
//! 1. custom headers `Otoroshi-Client-Id` + `Otoroshi-Client-Secret` (both required);
//! 2. Basic: `Otoroshi-Authorization` (the `Basic ` prefix is optional there), then
//!    `Authorization: Basic`; split on the first `:`, so secrets may contain `:`;
//! 3. JWT: `Otoroshi-Token` (an optional `Bearer ` prefix is removed), then
//!    `Authorization: Bearer`; three dot-separated parts, not starting with `otoapk_`;
//! 4. `otoapk_<clientId>_<hex signature>` in `Otoroshi-Token`, `Authorization: Bearer` or
//!    `x-api-key`; split on the last `_` (client ids may contain `_`, the hex signature cannot);
//! 5. the client id alone in `x-api-key`.
//!
//! Unlike Otoroshi, the client id alone comes last, so an `otoapk_` bearer in `x-api-key` is never
//! mistaken for a client id (the bypass of Otoroshi issue #2598). Only headers are read: the query,
//! cookie and path-parameter sources of Otoroshi are not supported.
//!
//! A credential that is present but unusable (bad base64, no `:`, a bearer that is neither a JWT
//! nor a well-formed `otoapk_` value) does not stop the search; when nothing else is found it is
//! reported as [`Credential::Malformed`], so the client gets a 401 rather than "no key".

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::config::Extractors;
use super::{HeaderLookup, ScratchBuf};

/// The standard `Authorization` header.
pub const AUTHORIZATION: &str = "Authorization";
/// Otoroshi's default client-id header of the custom-headers extractor.
pub const DEFAULT_CLIENT_ID_HEADER: &str = "Otoroshi-Client-Id";
/// Otoroshi's default client-secret header of the custom-headers extractor.
pub const DEFAULT_CLIENT_SECRET_HEADER: &str = "Otoroshi-Client-Secret";
/// Otoroshi's default Basic header (`otoroshi.headers.request.authorization`).
pub const DEFAULT_BASIC_HEADER: &str = "Otoroshi-Authorization";
/// Otoroshi's default bearer header, for JWTs and `otoapk_` bearers (`request.bearer`).
pub const DEFAULT_BEARER_HEADER: &str = "Otoroshi-Token";
/// Otoroshi's default client-id-only header (`request.simpleapiclientid`).
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

const OTOAPK: &[u8] = b"otoapk_";

/// Standard base64, padding optional (clients differ), non-canonical trailing bits refused.
const BASIC_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which header a credential came from (to wipe it before proxying, and for events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The custom client-id and client-secret headers.
    CustomHeaders,
    /// The Basic extractor's header (`Otoroshi-Authorization`).
    BasicHeader,
    /// `Authorization` (Basic or Bearer).
    Authorization,
    /// The JWT extractor's header (`Otoroshi-Token`).
    JwtHeader,
    /// The bearer extractor's header (`Otoroshi-Token`).
    BearerHeader,
    /// The client-id header (`x-api-key`).
    ApiKeyHeader,
}

/// A credential found in the request, borrowing from the headers (and, for Basic, from the
/// caller's scratch buffer). Its `Debug` shows the kind and the client id, never a secret,
/// signature or token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A client id and its secret (custom headers or Basic).
    IdSecret {
        /// Where it came from.
        source: Source,
        /// The client id as sent.
        client_id: &'a [u8],
        /// The secret as sent.
        secret: &'a [u8],
    },
    /// A JWT (`header.payload.signature`), client id in its claims.
    Jwt {
        /// Where it came from.
        source: Source,
        /// The whole token.
        token: &'a [u8],
    },
    /// An `otoapk_<clientId>_<signature>` bearer.
    Bearer {
        /// Where it came from.
        source: Source,
        /// The client id.
        client_id: &'a [u8],
        /// The signature as sent (hex).
        signature: &'a [u8],
    },
    /// The client id alone.
    ClientIdOnly {
        /// Where it came from.
        source: Source,
        /// The client id.
        client_id: &'a [u8],
    },
    /// A credential header was present but unusable.
    Malformed {
        /// Where it came from.
        source: Source,
    },
}

impl Credential<'_> {
    /// Where the credential came from.
    #[must_use]
    pub fn source(&self) -> Source {
        match *self {
            Self::IdSecret { source, .. }
            | Self::Jwt { source, .. }
            | Self::Bearer { source, .. }
            | Self::ClientIdOnly { source, .. }
            | Self::Malformed { source } => source,
        }
    }

    /// The client id, when the credential states it outside a JWT.
    #[must_use]
    pub fn client_id(&self) -> Option<&[u8]> {
        match *self {
            Self::IdSecret { client_id, .. }
            | Self::Bearer { client_id, .. }
            | Self::ClientIdOnly { client_id, .. } => Some(client_id),
            Self::Jwt { .. } | Self::Malformed { .. } => None,
        }
    }
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::IdSecret { .. } => "IdSecret",
            Self::Jwt { .. } => "Jwt",
            Self::Bearer { .. } => "Bearer",
            Self::ClientIdOnly { .. } => "ClientIdOnly",
            Self::Malformed { .. } => "Malformed",
        };
        let mut d = f.debug_struct(kind);
        d.field("source", &self.source());
        if let Some(id) = self.client_id() {
            d.field("client_id", &String::from_utf8_lossy(id));
        }
        d.finish_non_exhaustive()
    }
}

impl Extractors {
    /// The headers a credential from `source` was read from, to remove before proxying
    /// (`wipe_backend_request`).
    #[must_use]
    pub fn source_headers(&self, source: Source) -> [Option<&str>; 2] {
        match source {
            Source::CustomHeaders => match &self.custom {
                Some((id, secret)) => [Some(id), Some(secret)],
                None => [None, None],
            },
            Source::BasicHeader => [self.basic.as_deref(), None],
            Source::Authorization => [Some(AUTHORIZATION), None],
            Source::JwtHeader => [self.jwt.as_deref(), None],
            Source::BearerHeader => [self.bearer.as_deref(), None],
            Source::ApiKeyHeader => [Some(&self.api_key_header), None],
        }
    }
}

/// Finds the request's credential with the route's extractors, or `None` when there is none
/// (→ 400 no key). `buf` receives a decoded Basic credential, which the result borrows.
pub fn extract<'a, H: HeaderLookup + ?Sized>(
    ex: &Extractors,
    headers: &'a H,
    buf: &'a mut ScratchBuf,
) -> Option<Credential<'a>> {
    let mut malformed = None;

    // 1. Custom headers: both are required.
    if let Some((id_name, secret_name)) = &ex.custom {
        if let (Some(client_id), Some(secret)) = (headers.get(id_name), headers.get(secret_name)) {
            return Some(Credential::IdSecret {
                source: Source::CustomHeaders,
                client_id,
                secret,
            });
        }
    }

    // Each header is looked up once, whatever the number of extractors reading it.
    let authorization = headers.get(AUTHORIZATION);

    // 2. Basic.
    if let Some(name) = &ex.basic {
        let found = match headers.get(name) {
            Some(v) => Some((Source::BasicHeader, strip_scheme(v, b"basic").unwrap_or(v))),
            None => authorization
                .and_then(|v| strip_scheme(v, b"basic"))
                .map(|v| (Source::Authorization, v)),
        };
        if let Some((source, encoded)) = found {
            match decode_basic(encoded, &mut buf.0) {
                Some(colon) => {
                    let decoded: &'a [u8] = &buf.0;
                    let (client_id, rest) = decoded.split_at_checked(colon)?;
                    return Some(Credential::IdSecret {
                        source,
                        client_id,
                        secret: rest.get(1..)?,
                    });
                }
                None => malformed = Some(source),
            }
        }
    }

    let authorization_bearer = authorization
        .and_then(|v| strip_scheme(v, b"bearer"))
        .map(|v| (Source::Authorization, v));
    let token_header = |name: &str| {
        let v = headers.get(name)?;
        Some(strip_scheme(v, b"bearer").unwrap_or(v))
    };
    let jwt_header = ex.jwt.as_deref().and_then(token_header);
    let bearer_header = match (&ex.bearer, &ex.jwt) {
        (Some(bearer), Some(jwt)) if bearer == jwt => jwt_header,
        (Some(bearer), _) => token_header(bearer),
        (None, _) => None,
    };
    let api_key = if ex.bearer.is_some() || ex.client_id.is_some() {
        headers.get(&ex.api_key_header)
    } else {
        None
    };

    // 3. JWT.
    if ex.jwt.is_some() {
        let candidates = [
            jwt_header.map(|v| (Source::JwtHeader, v)),
            authorization_bearer,
        ];
        for (source, token) in candidates.into_iter().flatten() {
            if token.starts_with(OTOAPK) {
                continue;
            }
            if is_jws_shaped(token) {
                return Some(Credential::Jwt { source, token });
            }
            // A bearer that is no JWT: unusable unless a later extractor finds something.
            malformed = malformed.or(Some(source));
        }
    }

    // 4. otoapk_ bearer.
    if ex.bearer.is_some() {
        let candidates = [
            bearer_header.map(|v| (Source::BearerHeader, v)),
            authorization_bearer,
            api_key.map(|v| (Source::ApiKeyHeader, v)),
        ];
        for (source, value) in candidates.into_iter().flatten() {
            if let Some(rest) = value.strip_prefix(OTOAPK) {
                let split = rest
                    .iter()
                    .rposition(|&b| b == b'_')
                    .and_then(|i| rest.split_at_checked(i));
                match split {
                    Some((client_id, sig)) if !client_id.is_empty() && sig.len() > 1 => {
                        return Some(Credential::Bearer {
                            source,
                            client_id,
                            signature: sig.get(1..).unwrap_or_default(),
                        });
                    }
                    _ => malformed = malformed.or(Some(source)),
                }
            }
        }
    }

    // 5. Client id alone.
    if ex.client_id.is_some() {
        if let Some(client_id) = api_key {
            if client_id.starts_with(OTOAPK) {
                malformed = malformed.or(Some(Source::ApiKeyHeader));
            } else if !client_id.is_empty() {
                return Some(Credential::ClientIdOnly {
                    source: Source::ApiKeyHeader,
                    client_id,
                });
            }
        }
    }

    malformed.map(|source| Credential::Malformed { source })
}

/// `value` without its auth scheme (`Basic`, `Bearer`, compared case-insensitively) and the
/// spaces after it; `None` when it has another scheme.
fn strip_scheme<'v>(value: &'v [u8], scheme: &[u8]) -> Option<&'v [u8]> {
    let (head, rest) = value.split_at_checked(scheme.len())?;
    if !head.eq_ignore_ascii_case(scheme) || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii_start())
}

/// Decodes a Basic credential into `out`; the position of its first `:`, or `None` when it is not
/// valid base64 or has no `:`.
fn decode_basic(encoded: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    out.clear();
    BASIC_B64.decode_vec(encoded.trim_ascii(), out).ok()?;
    out.iter().position(|&b| b == b':')
}

/// Three dot-separated parts, the first two non-empty (an empty signature is left for
/// verification to refuse, as `alg: none` tokens have one).
fn is_jws_shaped(token: &[u8]) -> bool {
    let mut parts = token.split(|&b| b == b'.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(p), Some(_), None) if !h.is_empty() && !p.is_empty()
    )
}

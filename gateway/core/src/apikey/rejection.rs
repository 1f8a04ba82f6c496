//! Why a request's API key is refused, and the response that says so.

use std::fmt;

/// Why a JWT is refused (all 401 `bad_jwt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtError {
    /// Not three base64url parts with JSON header and claims.
    Malformed,
    /// `alg` is not HS256, HS384 or HS512 (`none`, RS*, ES*, …), or HS JWTs are not accepted on
    /// this route (`secret_signed: false`).
    Algorithm,
    /// No `clientId`, `client_id`, `cid` or `iss` claim.
    NoClientId,
    /// The signature matches neither the secret nor the next secret.
    Signature,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `exp` or `iat` is missing, or `exp - iat` exceeds `max_jwt_lifespan_sec`.
    Lifespan,
}

/// Why verification refused the request. Each variant maps to a status, a stable error code for
/// the JSON body (`{"error": code, "error_description": description}`) and a distinct reason for
/// events; none of them carries request data, so nothing secret can leak through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRejection {
    /// No credential in the request: 400 `no_api_key`.
    NoKey,
    /// No key with this client id: 401 `bad_api_key`, exactly as a wrong secret, so that client
    /// ids cannot be enumerated (the distinct reason goes to usage events and metrics).
    UnknownKey,
    /// A credential header is present but unusable (bad base64, no `:`, a bearer that is neither
    /// a JWT nor an `otoapk_` value): 401 `bad_api_key`.
    Malformed,
    /// Wrong secret: 401 `bad_api_key`.
    BadSecret,
    /// Wrong `otoapk_` signature: 401 `bad_api_key`.
    BadBearer,
    /// The client id alone, for a key without `allowClientIdOnly`: 401 `bad_api_key` with the
    /// unknown key's description (the answer must not say the id exists).
    ClientIdOnlyNotAllowed,
    /// A refused JWT: 401 `bad_jwt`.
    Jwt(JwtError),
    /// The key is disabled: 401 `api_key_disabled`.
    Disabled,
    /// `validUntil` is reached: 401 `api_key_expired`.
    Expired,
    /// The key does not authorize this route, its API or its groups: 403 `not_authorized`.
    NotAuthorized,
    /// A `constrainedServicesOnly` key on a route without routing constraints: 401
    /// `invalid_api_key` (the code Otoroshi uses for routing-constraint failures).
    ConstrainedOnly,
    /// The key fails the route's routing constraints: 401 `invalid_api_key`.
    RoutingMismatch,
    /// A read-only key with a method other than GET, HEAD or OPTIONS: 405 `method_not_allowed`.
    ReadOnly,
}

impl KeyRejection {
    /// The HTTP status.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::NoKey => 400,
            Self::UnknownKey
            | Self::Malformed
            | Self::BadSecret
            | Self::BadBearer
            | Self::ClientIdOnlyNotAllowed
            | Self::Jwt(_)
            | Self::Disabled
            | Self::Expired
            | Self::ConstrainedOnly
            | Self::RoutingMismatch => 401,
            Self::NotAuthorized => 403,
            Self::ReadOnly => 405,
        }
    }

    /// The stable error code of the JSON body's `error` field.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::NoKey => "no_api_key",
            Self::ConstrainedOnly | Self::RoutingMismatch => "invalid_api_key",
            Self::UnknownKey
            | Self::Malformed
            | Self::BadSecret
            | Self::BadBearer
            | Self::ClientIdOnlyNotAllowed => "bad_api_key",
            Self::Jwt(_) => "bad_jwt",
            Self::Disabled => "api_key_disabled",
            Self::Expired => "api_key_expired",
            Self::NotAuthorized => "not_authorized",
            Self::ReadOnly => "method_not_allowed",
        }
    }

    /// The human-readable `error_description`.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            Self::NoKey => "no apikey",
            Self::Malformed => "malformed apikey credential",
            Self::UnknownKey | Self::BadSecret | Self::BadBearer | Self::ClientIdOnlyNotAllowed => {
                "bad apikey"
            }
            Self::Jwt(e) => match e {
                JwtError::Malformed => "malformed jwt",
                JwtError::Algorithm => "unsupported jwt algorithm",
                JwtError::NoClientId => "no client id in jwt",
                JwtError::Signature => "bad jwt signature",
                JwtError::Expired => "jwt expired",
                JwtError::NotYetValid => "jwt not valid yet",
                JwtError::IssuedInFuture => "jwt issued in the future",
                JwtError::Lifespan => "jwt lifespan too long or undefined",
            },
            Self::Disabled => "apikey disabled",
            Self::Expired => "apikey expired",
            Self::NotAuthorized => "apikey not authorized on this route",
            Self::ConstrainedOnly => "apikey only usable on routes with routing constraints",
            Self::RoutingMismatch => "invalid apikey",
            Self::ReadOnly => "method not allowed for a read-only apikey",
        }
    }

    /// A distinct snake_case reason per rejection, for usage events and metrics (Otoroshi's
    /// `apikey_rejection_reason`).
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoKey => "no_api_key",
            Self::UnknownKey => "unknown_client_id",
            Self::Malformed => "malformed_credential",
            Self::BadSecret => "bad_secret",
            Self::BadBearer => "bad_bearer_signature",
            Self::ClientIdOnlyNotAllowed => "client_id_only_not_allowed",
            Self::Jwt(e) => match e {
                JwtError::Malformed => "jwt_malformed",
                JwtError::Algorithm => "jwt_algorithm",
                JwtError::NoClientId => "jwt_no_client_id",
                JwtError::Signature => "jwt_signature",
                JwtError::Expired => "jwt_expired",
                JwtError::NotYetValid => "jwt_not_yet_valid",
                JwtError::IssuedInFuture => "jwt_issued_in_future",
                JwtError::Lifespan => "jwt_lifespan",
            },
            Self::Disabled => "disabled",
            Self::Expired => "expired",
            Self::NotAuthorized => "not_authorized",
            Self::ConstrainedOnly => "constrained_services_only",
            Self::RoutingMismatch => "routing_constraints",
            Self::ReadOnly => "read_only",
        }
    }
}

impl fmt::Display for KeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for KeyRejection {}

impl From<JwtError> for KeyRejection {
    fn from(e: JwtError) -> Self {
        Self::Jwt(e)
    }
}

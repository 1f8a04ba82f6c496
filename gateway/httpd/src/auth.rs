//! Bearer tokens, checked in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::request::Head;
use crate::response::Response;

/// An expected bearer token. Only its SHA-256 is kept: comparing digests in constant time
/// (`subtle`) reveals neither the token's bytes nor its length through timing. It never
/// prints the token.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

impl BearerToken {
    /// The token `token` is expected.
    #[must_use]
    pub fn new(token: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `head` carries `Authorization: Bearer <this token>` (scheme case-insensitive).
    #[must_use]
    pub fn matches(&self, head: &Head) -> bool {
        let Some(value) = head.header("authorization") else {
            return false;
        };
        let Some((scheme, token)) = value.split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        bool::from(digest.ct_eq(&self.digest))
    }
}

/// 401 `unauthorized` with `www-authenticate: Bearer`.
#[must_use]
pub fn unauthorized() -> Response {
    Response::error(401, "unauthorized", "missing or wrong bearer token")
        .with_header("www-authenticate", "Bearer".to_owned())
}

#[cfg(test)]
mod tests {
    use gateway_core::http::{HeadLimits, HeadParser};

    use super::*;

    fn head_with(authorization: Option<&str>) -> Head {
        let raw = match authorization {
            Some(a) => format!("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: {a}\r\n\r\n"),
            None => "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        };
        let mut parser = HeadParser::new(HeadLimits::default());
        let parsed = parser.parse_request(raw.as_bytes()).unwrap().unwrap();
        Head::new(&parsed, "127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let t = BearerToken::new("s3cret-token");
        assert!(t.matches(&head_with(Some("Bearer s3cret-token"))));
        assert!(t.matches(&head_with(Some("bearer s3cret-token"))));
        assert!(t.matches(&head_with(Some("BEARER   s3cret-token"))));
        for wrong in [
            None,
            Some("Bearer s3cret-toke"),
            Some("Bearer s3cret-token2"),
            Some("Basic s3cret-token"),
            Some("s3cret-token"),
            Some("Bearer"),
            Some("Bearer "),
        ] {
            assert!(!t.matches(&head_with(wrong)), "{wrong:?}");
        }
        assert_eq!(format!("{t:?}"), "BearerToken(***)");
    }

    #[test]
    fn unauthorized_is_the_error_shape_with_a_challenge() {
        let r = unauthorized();
        assert_eq!(r.status, 401);
        assert_eq!(r.headers, vec![("www-authenticate", "Bearer".to_owned())]);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"], "unauthorized");
    }
}

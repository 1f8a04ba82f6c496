//! One redaction rule for entity JSON shown to people: the admin API's audit view
//! (`GET /api/events`) and the ledger's entity history apply the same function, so a field one
//! of them hides is hidden by the other too.
//!
//! Hidden (replaced with [`REDACTED`]):
//! - every string sealed with the cluster key ([`SEALED_PREFIX`]), whatever its field;
//! - the value of every field whose name says it holds a secret ([`is_secret_field`]:
//!   `clientSecret`, `nextSecret`, `previousSecret`, `privateKey`, `password`, `token`,
//!   `passphrase`, `credentials`...), at any depth, when it is a non-empty string, an object or an
//!   array. An empty string stays (it shows that no secret is set), and so do `null`, numbers and
//!   booleans (`tokenTtlSeconds: 3600` is not a secret).
//!
//! Stored events keep the producer's (sealed) bytes; only views are redacted.

use serde_json::Value;

/// What a redacted value becomes.
pub const REDACTED: &str = "***";

/// How a value sealed with the cluster key starts (`sealed:v1:` + base64).
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// Whether a field named `name` holds a secret: its name, lower-cased without `_` and `-`,
/// contains `secret`, `password`, `privatekey`, `token`, `passphrase` or `credential`.
#[must_use]
pub fn is_secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase().replace(['_', '-'], "");
    [
        "secret",
        "password",
        "privatekey",
        "token",
        "passphrase",
        "credential",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Redacts `value` in place (see the module docs).
pub fn redact(value: &mut Value) {
    match value {
        Value::String(s) if s.starts_with(SEALED_PREFIX) => *s = REDACTED.to_owned(),
        Value::Object(map) => {
            for (name, field) in map.iter_mut() {
                let hides = match field {
                    Value::String(s) => !s.is_empty(),
                    Value::Object(_) | Value::Array(_) => true,
                    Value::Null | Value::Bool(_) | Value::Number(_) => false,
                };
                if hides && is_secret_field(name) {
                    *field = Value::String(REDACTED.to_owned());
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_fields_are_redacted_at_any_depth() {
        let mut v = json!({
            "clientId": "k1", "clientSecret": "plain-left-in-clear",
            "_rotation": {"startedAt": 5, "previousSecret": "x", "quotasResetAt": 7},
            "certs": [{"private_key": "pem", "name": "c", "password": "pw"}],
            "credentials": {"clientId": "k2", "clientSecret": "y"},
            "metadata": {"secretive": null, "passphrase": ""},
            "oauth": {"tokenTtlSeconds": 3600, "revokeTokens": true}
        });
        redact(&mut v);
        assert_eq!(
            v,
            json!({
                "clientId": "k1", "clientSecret": "***",
                "_rotation": {"startedAt": 5, "previousSecret": "***", "quotasResetAt": 7},
                "certs": [{"private_key": "***", "name": "c", "password": "***"}],
                "credentials": "***",
                "metadata": {"secretive": null, "passphrase": ""},
                "oauth": {"tokenTtlSeconds": 3600, "revokeTokens": true}
            })
        );
    }

    #[test]
    fn sealed_values_are_redacted_whatever_their_field() {
        let mut v = json!({
            "id": "c1", "chain": "-----BEGIN CERTIFICATE-----",
            "privateKey": "sealed:v1:abc", "hmac": "sealed:v1:def",
            "list": ["sealed:v1:ghi", "public"], "note": "sealed:v2:not-ours"
        });
        redact(&mut v);
        assert_eq!(
            v,
            json!({
                "id": "c1", "chain": "-----BEGIN CERTIFICATE-----",
                "privateKey": "***", "hmac": "***",
                "list": ["***", "public"], "note": "sealed:v2:not-ours"
            })
        );
    }
}

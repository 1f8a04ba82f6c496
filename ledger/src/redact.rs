//! Redaction of secrets in entity JSON served by the history API.
//!
//! Entity events carry secrets sealed by the gateway with the cluster key; the ledger never
//! needs them, so when serving it replaces the value of every field whose name says it holds a
//! secret (`clientSecret`, `nextSecret`, `privateKey`, `password`, `token`...), sealed or not,
//! at any depth, with `"***"`. The stored event keeps the producer's (sealed) bytes.

use serde_json::Value;

/// What a redacted value becomes.
pub const REDACTED: &str = "***";

/// Whether a field named `name` holds a secret.
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

/// Replaces every secret field's value under `value` with [`REDACTED`] (`null` stays `null`).
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, field) in map.iter_mut() {
                if is_secret_field(name) && !field.is_null() {
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
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let mut v = serde_json::json!({
            "clientId": "k1", "clientSecret": "sealed:abc",
            "rotation": {"enabled": true, "nextSecret": "x"},
            "certs": [{"private_key": "pem", "name": "c"}],
            "metadata": {"secretive": null}
        });
        redact(&mut v);
        assert_eq!(v["clientId"], "k1");
        assert_eq!(v["clientSecret"], REDACTED);
        assert_eq!(v["rotation"]["nextSecret"], REDACTED);
        assert_eq!(v["rotation"]["enabled"], true);
        assert_eq!(v["certs"][0]["private_key"], REDACTED);
        assert_eq!(v["certs"][0]["name"], "c");
        assert!(v["metadata"]["secretive"].is_null());
    }

    #[test]
    fn certificate_private_keys_are_redacted() {
        let mut v = serde_json::json!({
            "id": "c1", "chain": "-----BEGIN CERTIFICATE-----", "privateKey": "sealed:v1:abc",
            "password": null, "subject": "CN=a"
        });
        redact(&mut v);
        assert_eq!(v["privateKey"], REDACTED);
        assert_eq!(
            v["chain"], "-----BEGIN CERTIFICATE-----",
            "a chain is public"
        );
        assert!(v["password"].is_null());
    }
}

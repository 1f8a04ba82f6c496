//! Client-id-only API keys, hidden behind pseudonyms.
//!
//! A key with `allowClientIdOnly: true` is accepted on its client id alone (sent alone in
//! `x-api-key`): its id IS its credential. So no answer of the query API that lists keys the
//! caller did not name (the export, an entity's history that mentions other keys, quarantined
//! records) shows such an id: it shows `cidonly-` followed by the first 16 hex digits of the
//! SHA-256 of the id, the same for every answer and every ledger. A query that names the key
//! (by its id, or by its pseudonym) still gets its numbers.
//!
//! The ledger learns which keys are client-id-only from the `apikey` entity events it folds
//! (their history): a key that allowed it in any version stays hidden (its id was a credential
//! once, and a pseudonym that changed with the key's settings would not be stable).
//!
//! What it must never do: show a client-id-only key's id in an answer that did not name it.
//! Limit: usage folded before its key's entity event (Kafka delivers the two topics
//! independently) shows the id until that event is folded.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// What every pseudonym starts with.
pub const PREFIX: &str = "cidonly-";

/// The pseudonym of API key `id`: [`PREFIX`] and the first 16 hex digits of SHA-256(id).
#[must_use]
pub fn pseudonym(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let mut out = String::with_capacity(PREFIX.len() + 16);
    out.push_str(PREFIX);
    out.push_str(&crate::store::hex(digest.get(..8).unwrap_or_default()));
    out
}

/// The key id of an `apikey` entity event (its JSON as folded) that allows client-id-only
/// calls; `None` for any other event.
#[must_use]
pub fn client_id_only_key(event_json: &[u8]) -> Option<String> {
    let event: Value = serde_json::from_slice(event_json).ok()?;
    if event.get("kind").and_then(Value::as_str) != Some("apikey") {
        return None;
    }
    let allowed = event
        .get("entity")
        .and_then(|e| e.get("allowClientIdOnly"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !allowed {
        return None;
    }
    event
        .get("entity_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The client-id-only keys known to this ledger.
#[derive(Debug, Default, Clone)]
pub struct ClientIdOnly {
    ids: HashSet<String>,
    by_pseudonym: HashMap<String, String>,
}

impl ClientIdOnly {
    /// Records that key `id` allows client-id-only calls.
    pub fn insert(&mut self, id: &str) {
        if self.ids.insert(id.to_owned()) {
            self.by_pseudonym.insert(pseudonym(id), id.to_owned());
        }
    }

    /// Number of client-id-only keys known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `id` is a client-id-only key.
    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// How key `id` is shown to a caller who did not name it.
    #[must_use]
    pub fn show<'a>(&self, id: &'a str) -> Cow<'a, str> {
        if self.contains(id) {
            Cow::Owned(pseudonym(id))
        } else {
            Cow::Borrowed(id)
        }
    }

    /// The key a caller names: a known pseudonym stands for its key; anything else is taken
    /// as an id.
    #[must_use]
    pub fn resolve<'a>(&'a self, asked: &'a str) -> &'a str {
        self.by_pseudonym.get(asked).map_or(asked, String::as_str)
    }

    /// Replaces, anywhere in `value` (in strings and object keys, also inside longer text),
    /// every client-id-only key id but `named` with its pseudonym.
    pub fn scrub(&self, value: &mut Value, named: Option<&str>) {
        if self.ids.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Some(scrubbed) = self.scrubbed(s, named) {
                    *s = scrubbed;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub(v, named)),
            Value::Object(map) => {
                let renamed: Vec<(String, String)> = map
                    .keys()
                    .filter_map(|k| self.scrubbed(k, named).map(|new| (k.clone(), new)))
                    .collect();
                for (old, new) in renamed {
                    if let Some(v) = map.remove(&old) {
                        map.insert(new, v);
                    }
                }
                map.values_mut().for_each(|v| self.scrub(v, named));
            }
            _ => {}
        }
    }

    /// `text` with every client-id-only key id in it replaced by its pseudonym.
    #[must_use]
    pub fn scrub_text(&self, text: &str) -> String {
        self.scrubbed(text, None).unwrap_or_else(|| text.to_owned())
    }

    /// `text` with every client-id-only key id but `named` replaced, if it held one.
    fn scrubbed(&self, text: &str, named: Option<&str>) -> Option<String> {
        if self.contains(text) {
            return (Some(text) != named).then(|| pseudonym(text));
        }
        let mut out: Option<String> = None;
        for id in &self.ids {
            if id.is_empty() || Some(id.as_str()) == named {
                continue;
            }
            let current = out.as_deref().unwrap_or(text);
            if current.contains(id.as_str()) {
                out = Some(current.replace(id.as_str(), &pseudonym(id)));
            }
        }
        out
    }

    /// Whether `bytes` contain a client-id-only key id.
    #[must_use]
    pub fn mentioned_in(&self, bytes: &[u8]) -> bool {
        self.ids
            .iter()
            .filter(|id| !id.is_empty())
            .any(|id| bytes.windows(id.len()).any(|w| w == id.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pseudonyms_are_stable_and_short() {
        let p = pseudonym("k-123");
        assert_eq!(p, pseudonym("k-123"));
        assert_ne!(p, pseudonym("k-124"));
        assert_eq!(p.len(), PREFIX.len() + 16);
        assert!(p.starts_with(PREFIX));
        // SHA-256("abc") = ba7816bf8f01cfea…
        assert_eq!(pseudonym("abc"), "cidonly-ba7816bf8f01cfea");
    }

    #[test]
    fn only_apikey_events_that_allow_it_mark_a_key() {
        let event = |kind: &str, allow: Value| {
            json!({"id": "e", "at": 1, "actor": "a", "action": "created", "kind": kind,
                   "entity_id": "k1", "version": 1,
                   "entity": {"clientId": "k1", "allowClientIdOnly": allow}})
            .to_string()
        };
        assert_eq!(
            client_id_only_key(event("apikey", json!(true)).as_bytes()),
            Some("k1".to_owned())
        );
        assert_eq!(
            client_id_only_key(event("apikey", json!(false)).as_bytes()),
            None
        );
        assert_eq!(
            client_id_only_key(event("route", json!(true)).as_bytes()),
            None
        );
        assert_eq!(client_id_only_key(b"not json"), None);
    }

    #[test]
    fn scrub_hides_every_id_but_the_named_one() {
        let mut known = ClientIdOnly::default();
        known.insert("secret-id");
        known.insert("other-id");
        assert_eq!(known.show("secret-id"), pseudonym("secret-id"));
        assert_eq!(known.show("plain"), "plain");
        assert_eq!(known.resolve(&pseudonym("secret-id")), "secret-id");
        assert_eq!(known.resolve("secret-id"), "secret-id");
        assert_eq!(
            known.resolve("cidonly-0000000000000000"),
            "cidonly-0000000000000000"
        );

        let mut v = json!({"clientId": "secret-id", "subscriptions": [{"apikeys": ["other-id", "plain"]}],
                           "metadata": {"other-id": "x"}, "note": "issued for other-id and secret-id"});
        known.scrub(&mut v, Some("secret-id"));
        assert_eq!(v["clientId"], "secret-id");
        assert_eq!(
            v["note"],
            format!("issued for {} and secret-id", pseudonym("other-id"))
        );
        assert_eq!(
            v["subscriptions"][0]["apikeys"],
            json!([pseudonym("other-id"), "plain"])
        );
        assert_eq!(v["metadata"][pseudonym("other-id")], "x");
        known.scrub(&mut v, None);
        assert_eq!(v["clientId"], pseudonym("secret-id"));
        assert!(!v.to_string().contains("secret-id") && !v.to_string().contains("other-id"));

        let text = known.scrub_text("bad key secret-id in batch");
        assert_eq!(text, format!("bad key {} in batch", pseudonym("secret-id")));
        assert!(known.mentioned_in(b"\x00\x01other-id\x02"));
        assert!(!known.mentioned_in(b"nothing here"));
    }
}

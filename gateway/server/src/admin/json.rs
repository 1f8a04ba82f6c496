//! JSON helpers of the admin API: merge patch (RFC 7396), list filters and pagination.

use serde_json::Value;

use gateway_model::validate::Problems;

/// Applies a JSON merge patch (RFC 7396) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(obj) = target {
                for (k, v) in fields {
                    if v.is_null() {
                        obj.remove(k);
                    } else {
                        merge_patch(obj.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Whether `entity`'s top-level `field` equals `wanted` (a string from the query): strings
/// compare as they are, numbers and booleans by their JSON text, arrays match when one element
/// does; a dotted field (`rotation.enabled`) looks inside objects.
pub fn field_matches(entity: &Value, field: &str, wanted: &str) -> bool {
    let mut at = entity;
    for part in field.split('.') {
        match at.get(part) {
            Some(v) => at = v,
            None => return false,
        }
    }
    scalar_matches(at, wanted)
}

fn scalar_matches(v: &Value, wanted: &str) -> bool {
    match v {
        Value::String(s) => s == wanted,
        Value::Bool(b) => wanted == if *b { "true" } else { "false" },
        Value::Number(n) => n.to_string() == wanted,
        Value::Null => wanted == "null",
        Value::Array(items) => items.iter().any(|i| scalar_matches(i, wanted)),
        Value::Object(_) => false,
    }
}

/// Page and page size from the query: `page` from 1 (default 1), `page_size` 1..=1000 (default
/// 100). Problems name the parameter.
pub fn pagination(
    page: Option<&str>,
    page_size: Option<&str>,
    problems: &mut Problems,
) -> (usize, usize) {
    let mut read = |v: Option<&str>, name: &str, default: usize, max: usize| match v {
        None => default,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                problems.push(name, format!("expected an integer in 1..={max}, got {s:?}"));
                default
            }
        },
    };
    let page = read(page, "page", 1, usize::MAX);
    let size = read(page_size, "page_size", 100, 1000);
    (page, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        // The RFC's appendix A examples, a few of them.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want);
        }
    }

    #[test]
    fn filters_and_pages() {
        let e =
            json!({"enabled": true, "n": 3, "tags": ["a", "b"], "rotation": {"enabled": false}});
        assert!(field_matches(&e, "enabled", "true"));
        assert!(!field_matches(&e, "enabled", "false"));
        assert!(field_matches(&e, "n", "3"));
        assert!(field_matches(&e, "tags", "b"));
        assert!(field_matches(&e, "rotation.enabled", "false"));
        assert!(!field_matches(&e, "missing", "x"));
        let mut p = Problems::default();
        assert_eq!(pagination(Some("2"), Some("10"), &mut p), (2, 10));
        assert!(p.is_empty());
        pagination(Some("0"), Some("x"), &mut p);
        assert_eq!(p.len(), 2);
        assert_eq!(p.0[0].path, "page");
        assert_eq!(p.0[1].path, "page_size");
    }
}

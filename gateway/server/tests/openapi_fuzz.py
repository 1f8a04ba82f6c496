"""Property-based fuzzing of an HTTP API from its own OpenAPI document (tests/openapi_fuzz.rs).

For every operation of the document, generates requests (path and query parameters and JSON
bodies drawn from the schemas, then broken: wrong types, missing and unknown fields, hostile
strings, huge numbers, non-JSON bodies, no token) with a seeded generator and checks each answer:
  - never a 5xx;
  - a status the operation documents (or `default`);
  - every 4xx is the JSON error shape ({"error": str, "error_description": str, ...});
  - a 2xx with a documented JSON schema matches it.
Usage: openapi_fuzz.py SPEC BASE_URL TOKEN CASES_PER_OPERATION SEED [KNOWN_ID ...]
Prints one JSON line of counts; exits 1 with the first violations when there are any.
"""

import json
import random
import sys
import urllib.parse

import requests

HOSTILE_STRINGS = [
    "", " ", "a" * 300, "..", "../..", "%00", "\u00e9t\u00e9", "\u202e", "x\r\nInjected: 1", "null",
    "-1", "0", "1e309", "{}", "[]", "\"", "'", "<script>", "%2F", "a/b", "*", "$ref", "\U0001F600",
]
HOSTILE_VALUES = [None, True, False, 0, -1, 2**63, -(2**63) - 1, 1.5, 1e308, "", "x", [], {}, [1, "a"],
                  {"a": {"b": {"c": []}}}, "a" * 2000]
ENTITY_FIELDS = ["id", "name", "enabled", "state", "frontend", "backend", "backend_ref", "plugins",
                 "clientId", "clientSecret", "clientName", "authorizedEntities", "throttlingQuota",
                 "dailyQuota", "monthlyQuota", "restrictions", "rotation", "metadata", "tags",
                 "domain", "contextPath", "version", "_version", "routes", "consumers", "kind",
                 "settings", "subject", "chain", "privateKey", "targets", "root", "domains"]


class Spec:
    def __init__(self, doc):
        self.doc = doc

    def resolve(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 20:
            path = node["$ref"].lstrip("#/").split("/")
            node = self.doc
            for part in path:
                node = node[part]
            seen += 1
        return node

    def operations(self):
        for path, item in self.doc["paths"].items():
            common = item.get("parameters", [])
            for method, op in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    yield path, method, op, [self.resolve(p) for p in common + op.get("parameters", [])]


def generate(spec, schema, rng, depth=0):
    """A value that matches `schema` (as far as this small generator knows schemas)."""
    schema = spec.resolve(schema or {})
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return generate(spec, rng.choice(schema[key]), rng, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = rng.choice(kind)
    if kind == "integer":
        lo, hi = schema.get("minimum", 0), schema.get("maximum", 1000)
        return rng.randint(lo, max(lo, hi))
    if kind == "number":
        return rng.random() * 100
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string":
        return rng.choice(["a", "key-1", "route-1", "2026-12-04", "x" * rng.randint(1, 20)])
    if kind == "array":
        if depth > 3:
            return []
        return [generate(spec, schema.get("items", {}), rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "object" or "properties" in schema:
        out = {}
        if depth > 3:
            return out
        for name, sub in schema.get("properties", {}).items():
            if name in schema.get("required", []) or rng.random() < 0.6:
                out[name] = generate(spec, sub, rng, depth + 1)
        if schema.get("additionalProperties", True) is not False:
            for _ in range(rng.randint(0, 4)):
                out[rng.choice(ENTITY_FIELDS)] = rng.choice(HOSTILE_VALUES + ["x", 1, True])
        return out
    return rng.choice(HOSTILE_VALUES)


def mutate(value, rng):
    """`value` with one thing broken (or not), recursively."""
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(HOSTILE_VALUES)
    if isinstance(value, dict) and value:
        value = dict(value)
        key = rng.choice(list(value))
        if roll < 0.35:
            del value[key]
        elif roll < 0.5:
            value["unknown_" + str(rng.randint(0, 9))] = rng.choice(HOSTILE_VALUES)
        else:
            value[key] = mutate(value[key], rng)
        return value
    if isinstance(value, list) and value:
        value = list(value)
        i = rng.randrange(len(value))
        value[i] = mutate(value[i], rng)
        return value
    if isinstance(value, str) and roll < 0.6:
        return rng.choice(HOSTILE_STRINGS)
    return value


def matches(spec, schema, value, path="$"):
    """The first way `value` breaks `schema`, or None."""
    schema = spec.resolve(schema or {})
    if "oneOf" in schema or "anyOf" in schema:
        options = schema.get("oneOf", []) + schema.get("anyOf", [])
        errors = [matches(spec, o, value, path) for o in options]
        return None if any(e is None for e in errors) else errors[0]
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: {value!r} not in {schema['enum']}"
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if schema.get("nullable") and value is None:
        return None
    if kinds and not any(checks.get(k, lambda v: True)(value) for k in kinds):
        return f"{path}: {type(value).__name__} where {kinds} is documented"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                return f"{path}: missing required {name}"
        props = schema.get("properties", {})
        for name, sub in value.items():
            if name in props:
                e = matches(spec, props[name], sub, f"{path}.{name}")
                if e:
                    return e
            elif schema.get("additionalProperties") is False:
                return f"{path}: undocumented field {name}"
            elif isinstance(schema.get("additionalProperties"), dict):
                e = matches(spec, schema["additionalProperties"], sub, f"{path}.{name}")
                if e:
                    return e
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            e = matches(spec, schema["items"], item, f"{path}[{i}]")
            if e:
                return e
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{path}: {value} < minimum {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{path}: {value} > maximum {schema['maximum']}"
    return None


def main():
    spec_file, base, token, per_op, seed = sys.argv[1:6]
    known = sys.argv[6:]
    spec = Spec(json.load(open(spec_file)))
    rng = random.Random(int(seed))
    session = requests.Session()
    counts = {"requests": 0, "2xx": 0, "4xx": 0, "other": 0}
    violations = []

    for path, method, op, params in spec.operations():
        for case in range(int(per_op)):
            broken = case % 3 != 0  # a third of the cases are drawn straight from the document
            url_path = path
            query = {}
            for p in params:
                value = generate(spec, p.get("schema"), rng)
                if p["in"] == "path":
                    if p["name"] in ("id", "api") and known and rng.random() < 0.6:
                        value = rng.choice(known)
                    if broken and rng.random() < 0.4:
                        value = rng.choice(HOSTILE_STRINGS) or "x"
                    url_path = url_path.replace("{" + p["name"] + "}", urllib.parse.quote(str(value), safe=""))
                elif p["in"] == "query" and (p.get("required") or rng.random() < 0.5):
                    if isinstance(value, dict):
                        query.update({k: str(v) for k, v in value.items()})
                    else:
                        if broken and rng.random() < 0.5:
                            value = rng.choice(HOSTILE_STRINGS + ["-5", "0", "99999999999999999999", "1.5", "true"])
                        query[p["name"]] = value if isinstance(value, str) else json.dumps(value)
            headers = {"Authorization": "Bearer " + token}
            if broken and rng.random() < 0.08:
                headers = rng.choice([{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}])
            data = None
            body_schema = spec.resolve(op.get("requestBody", {})).get("content", {}).get("application/json", {}).get("schema")
            if body_schema is not None or (broken and method in ("post", "put", "patch") and rng.random() < 0.3):
                body = generate(spec, body_schema, rng)
                if broken:
                    body = mutate(body, rng)
                data = json.dumps(body).encode()
                if broken and rng.random() < 0.1:
                    data = rng.choice([b"", b"{", b"not json", b"\xff\xfe", b"[" * 200 + b"]" * 200, b'{"a":' * 64 + b"1" + b"}" * 64])
                headers["Content-Type"] = "application/json"
            url = base + url_path
            try:
                r = session.request(method.upper(), url, params=query, data=data, headers=headers, timeout=15)
            except requests.RequestException as e:
                violations.append(f"{method.upper()} {url_path} {query}: no answer ({e})")
                session = requests.Session()
                continue
            counts["requests"] += 1
            where = f"{method.upper()} {url_path} query={query} body={(data or b'')[:200]!r} -> {r.status_code} {r.text[:300]!r}"
            documented = op.get("responses", {})
            if r.status_code >= 500:
                violations.append("5xx: " + where)
                continue
            if str(r.status_code) not in documented and "default" not in documented:
                violations.append(f"undocumented status ({sorted(documented)}): " + where)
            if 400 <= r.status_code < 500:
                counts["4xx"] += 1
                try:
                    err = r.json()
                except ValueError:
                    violations.append("4xx without JSON: " + where)
                    continue
                problem = matches(spec, {"type": "object", "required": ["error", "error_description"],
                                         "properties": {"error": {"type": "string"},
                                                        "error_description": {"type": "string"}}}, err)
                if problem:
                    violations.append(f"4xx not the error shape ({problem}): " + where)
            elif 200 <= r.status_code < 300:
                counts["2xx"] += 1
                response = spec.resolve(documented.get(str(r.status_code), {}))
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema is not None:
                    try:
                        value = r.json()
                    except ValueError:
                        violations.append("2xx documented as JSON is not JSON: " + where)
                        continue
                    problem = matches(spec, schema, value)
                    if problem:
                        violations.append(f"2xx outside its schema ({problem}): " + where)
            else:
                counts["other"] += 1
    counts["violations"] = len(violations)
    print(json.dumps(counts))
    if violations:
        for v in violations[:15]:
            print(v, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

use super::*;

const GOOD: &str = r#"
url = "http://127.0.0.1:8080"
connections = 20
warmup = "2s"
timeout = "3s"
expect = ['"2xx" >= 0.9', "429 <= 0.4", "errors == 0"]

[[requests]]
weight = 3
path = "/api/items"
headers = { Accept = "application/json" }

[[requests]]
method = "POST"
path = "/api/items"
body = '{"name": "x"}'

[keys]
header = "Otoroshi-Client-Id"
[[keys.groups]]
name = "valid"
weight = 8
prefix = "key-"
count = 100
[[keys.groups]]
name = "invalid"
weight = 1
keys = ["nope"]

[[stages]]
kind = "ramp"
from = 100
to = 1000
duration = "10s"

[[stages]]
kind = "steady"
rate = 1000
duration = "20s"

[[stages]]
kind = "spike"
rate = 5000
duration = "2s"
after = "5s"
"#;

#[test]
fn parses_a_full_scenario() {
    let s = Scenario::parse(GOOD).unwrap();
    assert_eq!(s.requests.len(), 2);
    assert_eq!(s.requests[0].method, "GET");
    assert_eq!(s.requests[1].weight, 1);
    assert_eq!(s.stages.len(), 3);
    let mut spec = RunSpec::default();
    s.apply(&mut spec).unwrap();
    assert_eq!(spec.connections, 20);
    assert_eq!(spec.warmup, Duration::from_secs(2));
    let keys = spec.keys.as_ref().unwrap();
    assert_eq!(keys.groups[0].keys.len(), 100);
    assert_eq!(keys.groups[0].keys[99], "key-99");
    assert_eq!(
        spec.stages[2],
        Stage::Spike {
            rate: 5000.0,
            duration: Duration::from_secs(2),
            after: Duration::from_secs(5)
        }
    );
    let cfg = crate::RunConfig::try_from(spec).unwrap();
    assert!(cfg.is_open());
    assert_eq!(cfg.requests.requests.len(), 2 * 101);
    assert_eq!(cfg.duration, Some(Duration::from_secs(37)));
    let e = s.expectations().unwrap();
    assert_eq!(e[0].class, "2xx");
    assert_eq!(e[1].op, Op::Le);
}

#[test]
fn unknown_fields_are_named() {
    let err = Scenario::parse("url = \"http://x\"\nconections = 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("conections"), "{err}");
    let err = Scenario::parse("[[requests]]\npath = \"/\"\nheader = {}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("header"), "{err}");
    let err = Scenario::parse("[[stages]]\nkind = \"steady\"\nrat = 3\nduration = \"1s\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("rat"), "{err}");
    let err = Scenario::parse("[[stages]]\nkind = \"wave\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("wave"), "{err}");
    let err = Scenario::parse("warmup = \"3 parsecs\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("warmup") || err.contains("parsecs"), "{err}");
    let err = Scenario::parse("expect = [\"3xy >= 0.1\"]\n").unwrap_err();
    assert!(matches!(&err, Error::Expectation(_)), "{err:?}");
    assert!(err.to_string().contains("expect[0]"), "{err}");
}

#[test]
fn expectations_parse_and_check() {
    assert_eq!(
        Expectation::parse("\"2xx\" >= 0.99").unwrap(),
        Expectation {
            class: "2xx".into(),
            op: Op::Ge,
            bound: 0.99
        }
    );
    assert_eq!(Expectation::parse("429<0.5").unwrap().op, Op::Lt);
    assert!(Expectation::parse("2xx ~ 0.5").is_err());
    assert!(Expectation::parse("2xx >= 1.5").is_err());
    assert!(Expectation::parse("abc >= 0.5").is_err());
}

#[test]
fn key_group_needs_one_source() {
    let s = Scenario::parse(
        "[keys]\nheader = \"x-api-key\"\n[[keys.groups]]\nname = \"v\"\nweight = 1\n",
    )
    .unwrap();
    let err = s.apply(&mut RunSpec::default()).unwrap_err().to_string();
    assert!(err.contains("keys.groups[0]"), "{err}");
}

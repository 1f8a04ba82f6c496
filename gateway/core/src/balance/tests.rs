use std::collections::HashMap;

use gateway_model::entity::{Backend, ClientConfig};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::rng::Rng;
use super::*;

const T0: i64 = 1_700_000_000_000;

/// A backend of targets `(host, weight, backup)` on port 80, built from JSON like a user's
/// config.
fn backend(targets: &[(&str, u32, bool)], lb: Value, client: Value) -> Backend {
    let targets: Vec<Value> = targets
        .iter()
        .map(|(h, w, b)| json!({"hostname": h, "port": 80, "weight": w, "backup": b}))
        .collect();
    let mut v = json!({"targets": targets, "client": client});
    if lb != json!({}) {
        v["load_balancing"] = lb; // absent: the default policy
    }
    serde_json::from_value(v).unwrap()
}

fn balancer(targets: &[(&str, u32, bool)], lb: &str) -> Balancer {
    Balancer::new(&backend(targets, json!({"type": lb}), json!({})), 42).unwrap()
}

fn with_breaker(targets: &[(&str, u32, bool)], lb: &str, max_errors: u32) -> Balancer {
    let client = json!({"max_errors": max_errors, "sample_interval": 1000});
    Balancer::new(&backend(targets, json!({"type": lb}), client), 42).unwrap()
}

fn host(b: &Balancer, id: TargetId) -> String {
    b.target(id, T0).unwrap().hostname.to_owned()
}

fn id(b: &Balancer, h: &str) -> TargetId {
    b.targets(T0).find(|t| t.hostname == h).unwrap().id
}

fn pick_host(b: &mut Balancer, now: i64, hint: PickHint<'_>) -> Option<String> {
    let t = b.pick(now, hint)?;
    Some(b.target(t, now).unwrap().hostname.to_owned())
}

fn counts(b: &mut Balancer, n: usize) -> HashMap<String, usize> {
    let mut c = HashMap::new();
    for _ in 0..n {
        *c.entry(pick_host(b, T0, PickHint::default()).unwrap())
            .or_default() += 1;
    }
    c
}

fn fail(b: &mut Balancer, t: TargetId, now: i64) -> Option<BreakerTransition> {
    let ticket = b.start(t, now);
    b.finish(ticket, Outcome::Failure(FailureKind::Connect), now)
}

fn succeed(b: &mut Balancer, t: TargetId, now: i64) -> Option<BreakerTransition> {
    let ticket = b.start(t, now);
    b.finish(ticket, Outcome::Success, now)
}

fn ip(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

fn by_ip(b: &mut Balancer, now: i64, addr: &[u8]) -> Option<String> {
    pick_host(
        b,
        now,
        PickHint {
            client_ip: Some(addr),
            header_value: None,
        },
    )
}

fn assert_within(c: &HashMap<String, usize>, h: &str, expected: f64, tolerance: f64) {
    let got = *c.get(h).unwrap_or(&0) as f64;
    assert!(
        (got - expected).abs() <= expected * tolerance,
        "{h}: {got} picks, expected {expected} ± {}%",
        tolerance * 100.0
    );
}

const ABC: &[(&str, u32, bool)] = &[("a", 1, false), ("b", 1, false), ("c", 1, false)];
const HEAVY: &[(&str, u32, bool)] = &[("a", 5, false), ("b", 1, false), ("c", 1, false)];

// ---- construction ----

#[test]
fn construction_errors_name_the_field() {
    let lb = json!({"type": "RoundRobin"});
    let e = Balancer::new(&backend(&[], lb.clone(), json!({})), 1).unwrap_err();
    assert_eq!(e, BalanceError::NoTargets);
    let e = Balancer::new(
        &backend(&[("a", 1, false), ("b", 0, false)], lb, json!({})),
        1,
    )
    .unwrap_err();
    assert_eq!(e, BalanceError::ZeroWeight { index: 1 });
    assert_eq!(
        e.to_string(),
        "targets[1].weight: expected at least 1, got 0"
    );
    let e = Balancer::new(
        &backend(ABC, json!({"type": "BestResponseTime"}), json!({})),
        1,
    )
    .unwrap_err();
    assert_eq!(e, BalanceError::UnsupportedPolicy);
}

#[test]
fn hints_the_caller_must_supply() {
    let b = Balancer::new(
        &backend(
            ABC,
            json!({"type": "HeaderHash", "header_name": "x-session"}),
            json!({}),
        ),
        1,
    )
    .unwrap();
    assert_eq!(b.hash_header(), Some("x-session"));
    assert!(!b.wants_client_ip());
    let b = balancer(ABC, "IpAddressHash");
    assert_eq!(b.hash_header(), None);
    assert!(b.wants_client_ip());
    assert_eq!(b.id_at(2).unwrap().index(), 2);
    assert_eq!(b.id_at(3), None);
}

#[test]
fn rng_is_deterministic_and_bounded() {
    let (mut x, mut y) = (Rng::new(7), Rng::new(7));
    let mut z = Rng::new(8);
    let xs: Vec<u64> = (0..100).map(|_| x.next_u64()).collect();
    let ys: Vec<u64> = (0..100).map(|_| y.next_u64()).collect();
    let zs: Vec<u64> = (0..100).map(|_| z.next_u64()).collect();
    assert_eq!(xs, ys);
    assert_ne!(xs, zs);
    assert!((0..10_000).all(|_| x.below(7) < 7));
    assert_eq!(x.below(0), 0);
}

#[test]
fn fast_log_matches_libm() {
    let mut r = Rng::new(3);
    for h in (0..100_000)
        .map(|_| r.next_u64())
        .chain([0, 1, u64::MAX, 1 << 63, (1 << 63) - 1])
    {
        let u = ((h >> 12) as f64 + 0.5) / (1u64 << 52) as f64;
        let (fast, exact) = (super::rng::neg_ln_unit(h), -u.ln());
        assert!(fast > 0.0, "{h}");
        assert!(
            (fast - exact).abs() <= exact * 1e-9,
            "{h}: {fast} vs {exact}"
        );
    }
}

// ---- round robin ----

#[test]
fn weighted_round_robin_is_exact_and_smooth() {
    let mut b = balancer(HEAVY, "RoundRobin");
    let seq: Vec<String> = (0..7000)
        .map(|_| pick_host(&mut b, T0, PickHint::default()).unwrap())
        .collect();
    assert_eq!(
        seq[..7].concat(),
        "aabacaa",
        "nginx's smooth sequence for 5:1:1"
    );
    let count = |h: &str| seq.iter().filter(|s| *s == h).count();
    assert_eq!((count("a"), count("b"), count("c")), (5000, 1000, 1000));
    let longest_a_run = seq
        .chunk_by(|x, y| x == y)
        .filter(|run| run[0] == "a")
        .map(<[String]>::len)
        .max()
        .unwrap();
    assert!(longest_a_run <= 5, "run of {longest_a_run} a's");
    // Every window of 7 consecutive picks holds the exact proportions.
    for w in seq.chunks(7) {
        assert_eq!(w.iter().filter(|s| *s == "a").count(), 5);
    }
}

#[test]
fn round_robin_skips_unavailable_targets() {
    let mut b = balancer(ABC, "RoundRobin");
    b.set_health(id(&b, "b"), false);
    let c = counts(&mut b, 100);
    assert_eq!(c.get("b"), None);
    assert_eq!((c["a"], c["c"]), (50, 50));
}

// ---- random and power of two ----

#[test]
fn random_follows_weights() {
    let mut b = balancer(HEAVY, "Random");
    let c = counts(&mut b, 100_000);
    assert_within(&c, "a", 100_000.0 * 5.0 / 7.0, 0.05);
    assert_within(&c, "b", 100_000.0 / 7.0, 0.05);
    assert_within(&c, "c", 100_000.0 / 7.0, 0.05);
}

#[test]
fn random_depends_on_the_seed_only() {
    let bk = backend(HEAVY, json!({"type": "Random"}), json!({}));
    let run = |seed| {
        let mut b = Balancer::new(&bk, seed).unwrap();
        (0..50)
            .map(|_| pick_host(&mut b, T0, PickHint::default()).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn power_of_two_follows_weights_without_load() {
    let mut b = balancer(HEAVY, "PowerOfTwoRandomChoices");
    let c = counts(&mut b, 100_000);
    assert_within(&c, "a", 100_000.0 * 5.0 / 7.0, 0.05);
    assert_within(&c, "b", 100_000.0 / 7.0, 0.05);
    assert_within(&c, "c", 100_000.0 / 7.0, 0.05);
}

#[test]
fn power_of_two_never_picks_the_more_loaded() {
    let mut b = balancer(ABC, "PowerOfTwoRandomChoices");
    let a = id(&b, "a");
    let _busy: Vec<Ticket> = (0..100).map(|_| b.start(a, T0)).collect();
    let c = counts(&mut b, 10_000);
    assert_eq!(c.get("a"), None, "a is the more loaded of every pair");
    // b and c tie: each wins when drawn first, about half the time.
    assert_within(&c, "b", 5_000.0, 0.05);
    assert_within(&c, "c", 5_000.0, 0.05);
}

#[test]
fn power_of_two_spreads_concurrent_calls() {
    let mut b = balancer(ABC, "PowerOfTwoRandomChoices");
    let tickets: Vec<Ticket> = (0..300)
        .map(|_| {
            let t = b.pick(T0, PickHint::default()).unwrap();
            b.start(t, T0)
        })
        .collect();
    for s in b.targets(T0) {
        assert!((90..=110).contains(&s.in_flight), "{s:?}");
    }
    drop(tickets);
}

// ---- least connections ----

#[test]
fn least_connections_picks_the_minimum() {
    let mut b = balancer(ABC, "LeastConnections");
    let (a, bb, c) = (id(&b, "a"), id(&b, "b"), id(&b, "c"));
    let _t: Vec<Ticket> = [a, a, a, bb, c, c]
        .iter()
        .map(|&t| b.start(t, T0))
        .collect();
    for _ in 0..5 {
        assert_eq!(pick_host(&mut b, T0, PickHint::default()).unwrap(), "b");
    }
    // Starting the picks keeps filling the least loaded: b, then b and c in turn, ...
    let mut seq = Vec::new();
    let mut held = Vec::new();
    for _ in 0..6 {
        let t = b.pick(T0, PickHint::default()).unwrap();
        seq.push(host(&b, t));
        held.push(b.start(t, T0));
    }
    assert_eq!(seq[0], "b");
    let loads: Vec<u32> = b.targets(T0).map(|s| s.in_flight).collect();
    assert_eq!(loads, vec![4, 4, 4]);
}

#[test]
fn least_connections_ties_rotate() {
    let mut b = balancer(ABC, "LeastConnections");
    let seq: Vec<String> = (0..6)
        .map(|_| pick_host(&mut b, T0, PickHint::default()).unwrap())
        .collect();
    assert_eq!(seq.concat(), "abcabc");
    // With a loaded, b and c alternate.
    let _t = b.start(id(&b, "a"), T0);
    let seq: Vec<String> = (0..4)
        .map(|_| pick_host(&mut b, T0, PickHint::default()).unwrap())
        .collect();
    assert!(seq.windows(2).all(|w| w[0] != w[1]), "{seq:?}");
    assert!(!seq.contains(&"a".to_owned()));
}

#[test]
fn least_connections_counts_load_per_weight() {
    let mut b = balancer(&[("a", 2, false), ("b", 1, false)], "LeastConnections");
    let (a, bb) = (id(&b, "a"), id(&b, "b"));
    let _t = [b.start(a, T0), b.start(a, T0), b.start(bb, T0)];
    // a: 2 calls / weight 2 = 1, b: 1 call / weight 1 = 1: a tie, both get picks.
    let c = counts(&mut b, 30);
    assert_eq!((c["a"], c["b"]), (20, 10));
    let _u = b.start(a, T0);
    assert_eq!(pick_host(&mut b, T0, PickHint::default()).unwrap(), "b");
}

// ---- hashing ----

#[test]
fn ip_hash_is_stable_across_picks_cores_and_target_order() {
    let mut b1 = balancer(ABC, "IpAddressHash");
    let mut b2 = Balancer::new(
        &backend(ABC, json!({"type": "IpAddressHash"}), json!({})),
        99,
    )
    .unwrap();
    let reversed = [("c", 1, false), ("b", 1, false), ("a", 1, false)];
    let mut b3 = balancer(&reversed, "IpAddressHash");
    for i in 0..500 {
        let addr = ip(0x0a00_0000 + i);
        let first = by_ip(&mut b1, T0, &addr).unwrap();
        assert_eq!(by_ip(&mut b1, T0, &addr).unwrap(), first);
        assert_eq!(by_ip(&mut b2, T0, &addr).unwrap(), first);
        assert_eq!(by_ip(&mut b3, T0, &addr).unwrap(), first);
    }
}

#[test]
fn ip_hash_spreads_clients_evenly() {
    let mut b = balancer(ABC, "IpAddressHash");
    let mut c = HashMap::new();
    for i in 0..30_000u32 {
        *c.entry(by_ip(&mut b, T0, &ip(0xc0a8_0000 + i)).unwrap())
            .or_default() += 1;
    }
    for h in ["a", "b", "c"] {
        assert_within(&c, h, 10_000.0, 0.05);
    }
    // IPv6 addresses hash too.
    let v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    assert!(by_ip(&mut b, T0, &v6).is_some());
}

#[test]
fn ip_hash_follows_weights() {
    let mut b = balancer(&[("a", 3, false), ("b", 1, false)], "IpAddressHash");
    let mut c = HashMap::new();
    for i in 0..40_000u32 {
        *c.entry(by_ip(&mut b, T0, &ip(i.wrapping_mul(2_654_435_761))).unwrap())
            .or_default() += 1;
    }
    assert_within(&c, "a", 30_000.0, 0.05);
    assert_within(&c, "b", 10_000.0, 0.05);
}

#[test]
fn ip_hash_moves_while_breaker_open_and_comes_back() {
    let mut b = with_breaker(ABC, "IpAddressHash", 1);
    let addr = ip(0x0a01_0203);
    let home = by_ip(&mut b, T0, &addr).unwrap();
    let home_id = id(&b, &home);
    // Where every other client goes before the breaker opens.
    let before: Vec<String> = (0..300)
        .map(|i| by_ip(&mut b, T0, &ip(i)).unwrap())
        .collect();

    assert_eq!(fail(&mut b, home_id, T0), Some(BreakerTransition::Opened));
    let moved = by_ip(&mut b, T0 + 1, &addr).unwrap();
    assert_ne!(moved, home);
    assert_eq!(
        by_ip(&mut b, T0 + 2, &addr).unwrap(),
        moved,
        "stable while away"
    );
    // Only the clients of the open target move.
    for (i, old) in before.iter().enumerate() {
        let now = by_ip(&mut b, T0 + 3, &ip(i as u32)).unwrap();
        if *old != home {
            assert_eq!(&now, old);
        } else {
            assert_ne!(now, home);
        }
    }

    // Half-open: the client's pick is the trial; success closes and it comes back.
    let trial = b.pick(
        T0 + 1000,
        PickHint {
            client_ip: Some(&addr),
            header_value: None,
        },
    );
    assert_eq!(trial, Some(home_id));
    let ticket = b.start(home_id, T0 + 1000);
    assert_eq!(
        b.finish(ticket, Outcome::Success, T0 + 1001),
        Some(BreakerTransition::Closed)
    );
    assert_eq!(by_ip(&mut b, T0 + 1002, &addr).unwrap(), home);
}

#[test]
fn header_hash_is_stable_and_moves_with_the_breaker() {
    let client = json!({"max_errors": 2, "sample_interval": 1000});
    let mut b = Balancer::new(
        &backend(
            ABC,
            json!({"type": "HeaderHash", "header_name": "session"}),
            client,
        ),
        5,
    )
    .unwrap();
    let hint = |v: &'static [u8]| PickHint {
        client_ip: Some(b"\x01\x02\x03\x04"),
        header_value: Some(v),
    };
    let home = pick_host(&mut b, T0, hint(b"user-17")).unwrap();
    for _ in 0..20 {
        assert_eq!(pick_host(&mut b, T0, hint(b"user-17")).unwrap(), home);
    }
    let home_id = id(&b, &home);
    assert_eq!(fail(&mut b, home_id, T0), None);
    assert_eq!(fail(&mut b, home_id, T0), Some(BreakerTransition::Opened));
    let away = pick_host(&mut b, T0 + 999, hint(b"user-17")).unwrap();
    assert_ne!(away, home);
    // Distinct values spread over the targets.
    let mut c = HashMap::new();
    for i in 0..3000 {
        let v = format!("session-{i}");
        let h = pick_host(
            &mut b,
            T0 + 999,
            PickHint {
                client_ip: None,
                header_value: Some(v.as_bytes()),
            },
        )
        .unwrap();
        *c.entry(h).or_insert(0usize) += 1;
    }
    assert_eq!(c.len(), 2, "never the open target");
    // Breaker half-open at T0 + 1000: the trial succeeds and the session comes back.
    assert_eq!(
        succeed(&mut b, home_id, T0 + 1000),
        Some(BreakerTransition::Closed)
    );
    assert_eq!(
        pick_host(&mut b, T0 + 1001, hint(b"user-17")).unwrap(),
        home
    );
}

#[test]
fn header_hash_without_the_header_goes_round_robin() {
    let mut b =
        Balancer::new(&backend(HEAVY, json!({"type": "HeaderHash"}), json!({})), 5).unwrap();
    assert_eq!(b.hash_header(), Some("session-id"));
    let seq: Vec<String> = (0..7)
        .map(|_| pick_host(&mut b, T0, PickHint::default()).unwrap())
        .collect();
    assert_eq!(seq.concat(), "aabacaa");
}

#[test]
fn naive_failover_takes_the_first_available() {
    let mut b = with_breaker(ABC, "NaiveFailover", 1);
    assert_eq!(counts(&mut b, 10)["a"], 10);
    let a = id(&b, "a");
    fail(&mut b, a, T0);
    assert_eq!(pick_host(&mut b, T0, PickHint::default()).unwrap(), "b");
    b.set_health(id(&b, "b"), false);
    assert_eq!(pick_host(&mut b, T0, PickHint::default()).unwrap(), "c");
    b.set_health(id(&b, "b"), true);
    assert_eq!(pick_host(&mut b, T0, PickHint::default()).unwrap(), "b");
}

// ---- circuit breaker ----

#[test]
fn breaker_opens_exactly_at_max_errors() {
    let mut b = with_breaker(&[("a", 1, false)], "RoundRobin", 3);
    let a = id(&b, "a");
    assert_eq!(fail(&mut b, a, T0), None);
    assert_eq!(fail(&mut b, a, T0), None);
    let s = b.target(a, T0).unwrap();
    assert_eq!(
        (s.breaker, s.consecutive_failures, s.available),
        (BreakerState::Closed, 2, true)
    );
    assert_eq!(s.last_failure, Some(FailureKind::Connect));
    assert_eq!(fail(&mut b, a, T0 + 5), Some(BreakerTransition::Opened));
    let s = b.target(a, T0 + 5).unwrap();
    assert_eq!(
        s.breaker,
        BreakerState::Open {
            retry_at_ms: T0 + 1005
        }
    );
    assert_eq!(s.consecutive_failures, 3);
    assert!(!s.available);
    assert_eq!(b.pick(T0 + 5, PickHint::default()), None);
}

#[test]
fn success_resets_the_failure_count() {
    let mut b = with_breaker(&[("a", 1, false)], "RoundRobin", 3);
    let a = id(&b, "a");
    for _ in 0..5 {
        fail(&mut b, a, T0);
        fail(&mut b, a, T0);
        assert_eq!(succeed(&mut b, a, T0), None);
        assert_eq!(b.target(a, T0).unwrap().consecutive_failures, 0);
    }
    assert_eq!(b.target(a, T0).unwrap().breaker, BreakerState::Closed);
    // Cancelled calls neither count nor reset.
    fail(&mut b, a, T0);
    let t = b.start(a, T0);
    b.finish(t, Outcome::Cancelled, T0);
    assert_eq!(b.target(a, T0).unwrap().consecutive_failures, 1);
}

#[test]
fn breaker_stays_open_for_the_sample_interval() {
    let mut b = with_breaker(&[("a", 1, false)], "RoundRobin", 1);
    let a = id(&b, "a");
    fail(&mut b, a, T0);
    for dt in [0, 1, 500, 999] {
        assert_eq!(b.pick(T0 + dt, PickHint::default()), None, "at +{dt}");
    }
    assert_eq!(b.pick(T0 + 1000, PickHint::default()), Some(a));
    assert_eq!(
        b.target(a, T0 + 1000).unwrap().breaker,
        BreakerState::HalfOpen {
            trial_in_flight: false
        }
    );
}

#[test]
fn half_open_admits_exactly_one_trial() {
    let mut b = with_breaker(&[("a", 1, false), ("b", 1, false)], "NaiveFailover", 1);
    let a = id(&b, "a");
    fail(&mut b, a, T0);
    assert_eq!(
        pick_host(&mut b, T0 + 10, PickHint::default()).unwrap(),
        "b"
    );
    // Half-open: a pick that is not started claims nothing.
    assert_eq!(b.pick(T0 + 1000, PickHint::default()), Some(a));
    assert_eq!(b.pick(T0 + 1000, PickHint::default()), Some(a));
    let trial = b.start(a, T0 + 1000);
    assert_eq!(
        b.target(a, T0 + 1001).unwrap().breaker,
        BreakerState::HalfOpen {
            trial_in_flight: true
        }
    );
    for dt in [1, 100, 5000] {
        assert_eq!(
            pick_host(&mut b, T0 + 1000 + dt, PickHint::default()).unwrap(),
            "b"
        );
    }
    b.finish(trial, Outcome::Success, T0 + 6000);
    assert_eq!(
        pick_host(&mut b, T0 + 6000, PickHint::default()).unwrap(),
        "a"
    );
}

#[test]
fn trial_success_closes() {
    let mut b = with_breaker(&[("a", 1, false)], "RoundRobin", 2);
    let a = id(&b, "a");
    fail(&mut b, a, T0);
    fail(&mut b, a, T0);
    let picked = b.pick(T0 + 1000, PickHint::default()).unwrap();
    let trial = b.start(picked, T0 + 1000);
    assert_eq!(
        b.finish(trial, Outcome::Success, T0 + 1020),
        Some(BreakerTransition::Closed)
    );
    let s = b.target(a, T0 + 1020).unwrap();
    assert_eq!(
        (s.breaker, s.consecutive_failures),
        (BreakerState::Closed, 0)
    );
    // Closed again: it takes max_errors fresh failures to open.
    assert_eq!(fail(&mut b, a, T0 + 1030), None);
    assert_eq!(fail(&mut b, a, T0 + 1030), Some(BreakerTransition::Opened));
}

#[test]
fn trial_failure_reopens_for_another_interval() {
    let mut b = with_breaker(&[("a", 1, false)], "RoundRobin", 2);
    let a = id(&b, "a");
    fail(&mut b, a, T0);
    fail(&mut b, a, T0);
    let trial = b.start(a, T0 + 1500);
    assert_eq!(
        b.finish(trial, Outcome::Failure(FailureKind::Timeout), T0 + 1700),
        Some(BreakerTransition::Opened)
    );
    let s = b.target(a, T0 + 1700).unwrap();
    assert_eq!(
        s.breaker,
        BreakerState::Open {
            retry_at_ms: T0 + 2700
        }
    );
    assert_eq!(s.last_failure, Some(FailureKind::Timeout));
    assert_eq!(b.pick(T0 + 2699, PickHint::default()), None);
    assert_eq!(b.pick(T0 + 2700, PickHint::default()), Some(a));
}

#[test]
fn cancelled_trial_lets_the_next_call_be_the_trial() {
    let mut b = with_breaker(&[("a", 1, false)], "RoundRobin", 1);
    let a = id(&b, "a");
    fail(&mut b, a, T0);
    let trial = b.start(a, T0 + 1000);
    assert_eq!(b.pick(T0 + 1001, PickHint::default()), None);
    assert_eq!(b.finish(trial, Outcome::Cancelled, T0 + 1002), None);
    assert_eq!(b.pick(T0 + 1002, PickHint::default()), Some(a));
    let trial = b.start(a, T0 + 1002);
    assert_eq!(b.pick(T0 + 1003, PickHint::default()), None);
    assert_eq!(
        b.finish(trial, Outcome::Success, T0 + 1004),
        Some(BreakerTransition::Closed)
    );
}

#[test]
fn a_lost_trial_expires_after_the_longest_call() {
    let client = json!({"max_errors": 1, "sample_interval": 1000,
                         "call_and_stream_timeout": 20000, "global_timeout": 5000});
    let mut b = Balancer::new(
        &backend(&[("a", 1, false)], json!({"type": "RoundRobin"}), client),
        1,
    )
    .unwrap();
    assert_eq!(b.breaker_config().trial_timeout_ms, 20_000);
    let a = id(&b, "a");
    fail(&mut b, a, T0);
    let lost = b.start(a, T0 + 1000);
    assert_eq!(b.pick(T0 + 20_999, PickHint::default()), None);
    assert_eq!(b.pick(T0 + 21_000, PickHint::default()), Some(a));
    let second = b.start(a, T0 + 21_000);
    // The lost trial's late verdict is ignored; the second trial decides.
    assert_eq!(b.finish(lost, Outcome::Success, T0 + 21_001), None);
    assert_eq!(b.pick(T0 + 21_001, PickHint::default()), None);
    assert_eq!(
        b.finish(second, Outcome::Failure(FailureKind::Broken), T0 + 21_002),
        Some(BreakerTransition::Opened)
    );
    assert_eq!(b.target(a, T0).unwrap().in_flight, 0);
}

#[test]
fn calls_ending_while_open_change_nothing() {
    let mut b = with_breaker(&[("a", 1, false)], "RoundRobin", 2);
    let a = id(&b, "a");
    let early: Vec<Ticket> = (0..4).map(|_| b.start(a, T0)).collect();
    fail(&mut b, a, T0);
    fail(&mut b, a, T0);
    let mut early = early.into_iter();
    let e1 = early.next().unwrap();
    assert_eq!(b.finish(e1, Outcome::Success, T0 + 10), None);
    let e2 = early.next().unwrap();
    assert_eq!(
        b.finish(e2, Outcome::Failure(FailureKind::Connect), T0 + 10),
        None
    );
    assert_eq!(
        b.target(a, T0 + 10).unwrap().breaker,
        BreakerState::Open {
            retry_at_ms: T0 + 1000
        }
    );
    // In half-open, a non-trial call's end does not decide either.
    let trial = b.start(a, T0 + 1000);
    let e3 = early.next().unwrap();
    assert_eq!(b.finish(e3, Outcome::Success, T0 + 1001), None);
    assert_eq!(b.pick(T0 + 1001, PickHint::default()), None);
    b.finish(trial, Outcome::Success, T0 + 1002);
    let e4 = early.next().unwrap();
    b.finish(e4, Outcome::Success, T0 + 1003);
    assert_eq!(b.target(a, T0 + 1003).unwrap().in_flight, 0);
}

#[test]
fn zero_max_errors_disables_the_breaker() {
    let mut b = with_breaker(&[("a", 1, false)], "RoundRobin", 0);
    let a = id(&b, "a");
    for _ in 0..100 {
        assert_eq!(fail(&mut b, a, T0), None);
    }
    assert_eq!(b.pick(T0, PickHint::default()), Some(a));
}

// ---- health and backups ----

#[test]
fn unhealthy_targets_are_skipped_and_recovery_closes_the_breaker() {
    let mut b = with_breaker(&[("a", 1, false), ("b", 1, false)], "RoundRobin", 1);
    let a = id(&b, "a");
    assert!(b.set_health(a, false));
    assert!(!b.target(a, T0).unwrap().available);
    assert_eq!(counts(&mut b, 10)["b"], 10);
    fail(&mut b, a, T0);
    assert!(b.set_health(a, true));
    let s = b.target(a, T0).unwrap();
    assert_eq!((s.breaker, s.available), (BreakerState::Closed, true));
    // A healthy mark on a healthy target does not touch its breaker.
    fail(&mut b, a, T0);
    b.set_health(a, true);
    assert!(!b.target(a, T0).unwrap().available);
}

#[test]
fn backups_serve_only_when_every_primary_is_out() {
    let targets = [
        ("p1", 1, false),
        ("bk1", 1, true),
        ("p2", 1, false),
        ("bk2", 1, true),
    ];
    for lb in [
        "RoundRobin",
        "Random",
        "PowerOfTwoRandomChoices",
        "LeastConnections",
        "IpAddressHash",
        "NaiveFailover",
    ] {
        let mut b = with_breaker(&targets, lb, 1);
        let hint = PickHint {
            client_ip: Some(&[10, 0, 0, 1]),
            header_value: None,
        };
        let picked = |b: &mut Balancer, n| {
            let mut seen: Vec<String> = (0..n).map(|_| pick_host(b, T0, hint).unwrap()).collect();
            seen.sort();
            seen.dedup();
            seen
        };
        assert!(
            picked(&mut b, 50).iter().all(|h| h.starts_with('p')),
            "{lb}"
        );
        b.set_health(id(&b, "p1"), false);
        assert_eq!(picked(&mut b, 50), vec!["p2"], "{lb}");
        let p2 = id(&b, "p2");
        fail(&mut b, p2, T0);
        let backups = picked(&mut b, 50);
        assert!(
            backups.iter().all(|h| h.starts_with("bk")),
            "{lb}: {backups:?}"
        );
        if lb != "NaiveFailover" && lb != "IpAddressHash" {
            assert_eq!(backups.len(), 2, "{lb}: the policy spreads over backups");
        }
        b.set_health(id(&b, "bk1"), false);
        b.set_health(id(&b, "bk2"), false);
        assert_eq!(b.pick(T0, hint), None, "{lb}: everything is out");
        // A primary coming back takes over again.
        b.set_health(id(&b, "p1"), true);
        b.set_health(id(&b, "bk1"), true);
        assert_eq!(picked(&mut b, 20), vec!["p1"], "{lb}");
    }
}

#[test]
fn only_backups_configured_still_serve() {
    let mut b = balancer(&[("x", 1, true), ("y", 1, true)], "RoundRobin");
    let c = counts(&mut b, 10);
    assert_eq!((c["x"], c["y"]), (5, 5));
}

// ---- retries ----

#[test]
fn retry_schedule_backs_off_and_caps() {
    let r = RetrySchedule::from_client(&ClientConfig::default());
    assert_eq!(r.retries(), 1);
    assert_eq!(
        (r.delay_before(0), r.delay_before(1), r.delay_before(2)),
        (Some(0), Some(50), None)
    );
    let c: ClientConfig = serde_json::from_value(json!({
        "retries": 40, "retry_initial_delay": 100, "backoff_factor": 3, "global_timeout": 10000
    }))
    .unwrap();
    let r = RetrySchedule::from_client(&c);
    let delays: Vec<u64> = (1..=5).map(|n| r.delay_before(n).unwrap()).collect();
    assert_eq!(delays, vec![100, 300, 900, 2700, 8100]);
    assert_eq!(r.delay_before(6), Some(10_000));
    assert_eq!(r.delay_before(40), Some(10_000), "no overflow");
    assert_eq!(r.delay_before(41), None);
    let c: ClientConfig =
        serde_json::from_value(json!({"retries": 3, "backoff_factor": 0})).unwrap();
    let r = RetrySchedule::from_client(&c);
    assert_eq!(r.delay_before(3), Some(50), "factor 0 counts as 1");
}

#[test]
fn retry_prefers_another_target() {
    for lb in [
        "RoundRobin",
        "IpAddressHash",
        "NaiveFailover",
        "LeastConnections",
    ] {
        let mut b = with_breaker(&[("a", 1, false), ("b", 1, false)], lb, 100);
        let hint = PickHint {
            client_ip: Some(&[10, 0, 0, 9]),
            header_value: None,
        };
        for _ in 0..10 {
            let first = b.pick(T0, hint).unwrap();
            fail(&mut b, first, T0);
            let next = b.next_for_retry(T0, hint, first).unwrap();
            assert_ne!(next, first, "{lb}");
            succeed(&mut b, next, T0);
        }
    }
}

#[test]
fn retry_falls_back_to_the_failed_target_or_nothing() {
    let mut b = with_breaker(&[("a", 1, false), ("bk", 1, true)], "RoundRobin", 2);
    let (a, bk) = (id(&b, "a"), id(&b, "bk"));
    fail(&mut b, a, T0);
    assert_eq!(
        b.next_for_retry(T0, PickHint::default(), a),
        Some(bk),
        "a backup first"
    );
    b.set_health(bk, false);
    assert_eq!(b.next_for_retry(T0, PickHint::default(), a), Some(a));
    fail(&mut b, a, T0);
    assert_eq!(b.next_for_retry(T0, PickHint::default(), a), None);
}

// ---- snapshots ----

#[test]
fn rebuild_carries_state_of_the_same_targets() {
    let mut b = with_breaker(HEAVY, "RoundRobin", 1);
    let (a, bb) = (id(&b, "a"), id(&b, "b"));
    fail(&mut b, a, T0);
    b.set_health(bb, false);
    let in_flight = b.start(id(&b, "c"), T0);
    pick_host(&mut b, T0, PickHint::default());

    // Same targets, another order and policy, plus a new one.
    let order = [
        ("c", 1, false),
        ("new", 1, false),
        ("b", 1, false),
        ("a", 5, false),
    ];
    let client = json!({"max_errors": 1, "sample_interval": 1000});
    let nb = backend(&order, json!({"type": "LeastConnections"}), client);
    let mut b2 = Balancer::rebuild_from(&b, &nb).unwrap();
    fn s<'a>(b2: &'a Balancer, h: &str) -> TargetState<'a> {
        b2.targets(T0 + 1).find(|t| t.hostname == h).unwrap()
    }
    assert_eq!(
        s(&b2, "a").breaker,
        BreakerState::Open {
            retry_at_ms: T0 + 1000
        }
    );
    assert!(!s(&b2, "b").healthy);
    assert_eq!(s(&b2, "c").in_flight, 1);
    assert_eq!(s(&b2, "c").id.index(), 0);
    let fresh = s(&b2, "new");
    assert_eq!(
        (fresh.breaker, fresh.healthy, fresh.in_flight),
        (BreakerState::Closed, true, 0)
    );
    // The ticket from before the rebuild settles on c at its new position.
    assert_eq!(in_flight.target().index(), 2);
    b2.finish(in_flight, Outcome::Success, T0 + 2);
    assert_eq!(s(&b2, "c").in_flight, 0);
    assert_eq!(b2.retired_in_flight(), 0);
    // Old ids still resolve; ids of the new snapshot are distinct.
    assert_eq!(b2.target(a, T0).unwrap().hostname, "a");
    assert_eq!(
        b2.targets(T0)
            .map(|t| t.id)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        4
    );
}

#[test]
fn rebuild_keeps_the_round_robin_position() {
    let mut b = balancer(HEAVY, "RoundRobin");
    let mut seq: Vec<String> = (0..3)
        .map(|_| pick_host(&mut b, T0, PickHint::default()).unwrap())
        .collect();
    let mut b = Balancer::rebuild_from(&b, &backend(HEAVY, json!({}), json!({}))).unwrap();
    seq.extend((0..4).map(|_| pick_host(&mut b, T0, PickHint::default()).unwrap()));
    assert_eq!(seq.concat(), "aabacaa");
}

#[test]
fn removed_targets_disappear_but_their_calls_settle() {
    let mut b = with_breaker(ABC, "RoundRobin", 1);
    let a = id(&b, "a");
    let t1 = b.start(a, T0);
    let t2 = b.start(a, T0);
    let nb = backend(&[("b", 1, false), ("c", 1, false)], json!({}), json!({}));
    let mut b2 = Balancer::rebuild_from(&b, &nb).unwrap();
    assert_eq!(b2.targets(T0).count(), 2);
    assert!(b2.targets(T0).all(|t| t.hostname != "a"));
    assert_eq!(b2.target(a, T0), None);
    assert!(!b2.set_health(a, false));
    assert_eq!(b2.retired_in_flight(), 2);
    assert!(counts(&mut b2, 100).keys().all(|h| h != "a"));
    // A failure on a removed target touches no live target.
    assert_eq!(
        b2.finish(t1, Outcome::Failure(FailureKind::Connect), T0),
        None
    );
    assert_eq!(b2.retired_in_flight(), 1);
    assert!(
        b2.targets(T0)
            .all(|t| t.consecutive_failures == 0 && t.in_flight == 0)
    );

    // It comes back with its in-flight call: the state is revived, not reset.
    let mut b3 = Balancer::rebuild_from(&b2, &backend(ABC, json!({}), json!({}))).unwrap();
    assert_eq!(b3.retired_in_flight(), 0);
    assert_eq!(b3.target(a, T0).unwrap().in_flight, 1);
    b3.finish(t2, Outcome::Success, T0);
    assert_eq!(b3.target(a, T0).unwrap().in_flight, 0);
    // Without calls in flight a removed target leaves nothing behind.
    let b4 = Balancer::rebuild_from(&b3, &nb).unwrap();
    assert!(b4.retired.is_empty());
}

#[test]
fn duplicate_targets_are_matched_in_order() {
    let dup = [("a", 1, false), ("a", 1, false)];
    let mut b = with_breaker(&dup, "RoundRobin", 1);
    let second = b.id_at(1).unwrap();
    fail(&mut b, second, T0);
    let b2 = Balancer::rebuild_from(&b, &backend(&dup, json!({}), json!({}))).unwrap();
    let states: Vec<bool> = b2.targets(T0).map(|t| t.available).collect();
    assert_eq!(states, vec![true, false]);
}

#[test]
fn unknown_tickets_are_harmless() {
    let mut b = balancer(ABC, "RoundRobin");
    let other = balancer(&[("z", 1, false)], "RoundRobin");
    let mut foreign = other.id_at(0).unwrap();
    foreign.uid = 999;
    let t = b.start(foreign, T0);
    assert_eq!(
        b.finish(t, Outcome::Failure(FailureKind::Connect), T0),
        None
    );
    assert!(
        b.targets(T0)
            .all(|t| t.in_flight == 0 && t.consecutive_failures == 0)
    );
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Op {
    Pick { ip: u8, header: Option<u8> },
    Finish { which: usize, outcome: u8 },
    Retry { which: usize },
    Health { target: usize, healthy: bool },
    Advance { ms: i64 },
    Rebuild { mask: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), proptest::option::of(any::<u8>()))
            .prop_map(|(ip, header)| Op::Pick { ip, header }),
        4 => (any::<usize>(), 0u8..4).prop_map(|(which, outcome)| Op::Finish { which, outcome }),
        1 => any::<usize>().prop_map(|which| Op::Retry { which }),
        2 => (0usize..5, any::<bool>()).prop_map(|(target, healthy)| Op::Health { target, healthy }),
        2 => (0i64..1500).prop_map(|ms| Op::Advance { ms }),
        1 => any::<u8>().prop_map(|mask| Op::Rebuild { mask }),
    ]
}

const POLICIES: [&str; 7] = [
    "RoundRobin",
    "Random",
    "PowerOfTwoRandomChoices",
    "LeastConnections",
    "IpAddressHash",
    "HeaderHash",
    "NaiveFailover",
];
const POOL: [(&str, u32, bool); 5] = [
    ("h0", 1, false),
    ("h1", 3, false),
    ("h2", 1, false),
    ("h3", 2, true),
    ("h4", 1, true),
];

fn pool_backend(mask: u8, lb: &str) -> Backend {
    let mut chosen: Vec<(&str, u32, bool)> = POOL
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, t)| *t)
        .collect();
    if chosen.is_empty() {
        chosen.push(POOL[0]);
    }
    let client = json!({"max_errors": 2, "sample_interval": 500,
                        "call_and_stream_timeout": 3000, "global_timeout": 3000});
    backend(&chosen, json!({"type": lb}), client)
}

/// Availability as the state says, checked independently of `pick`.
fn usable(s: &TargetState<'_>) -> bool {
    s.healthy
        && match s.breaker {
            BreakerState::Closed => true,
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { trial_in_flight } => !trial_in_flight,
        }
}

/// `retrying`: the failed target of a retry, which a retry may leave for a backup.
fn check_pick(
    b: &Balancer,
    got: Option<TargetId>,
    now: i64,
    retrying: Option<TargetId>,
) -> Result<(), TestCaseError> {
    let states: Vec<TargetState<'_>> = b.targets(now).collect();
    let primary_up = states
        .iter()
        .any(|s| !s.backup && usable(s) && retrying.is_none_or(|f| f.uid != s.id.uid));
    match got {
        None => prop_assert!(
            states.iter().all(|s| !usable(s)),
            "None while a target is usable: {states:?}"
        ),
        Some(id) => {
            let s = b.target(id, now);
            prop_assert!(s.is_some(), "picked a target not in the snapshot");
            let s = s.unwrap();
            prop_assert!(usable(&s), "picked an unavailable target: {s:?}");
            prop_assert!(!s.backup || !primary_up, "backup while a primary is up");
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn picks_are_always_available_and_counts_balance(
        policy in 0usize..POLICIES.len(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let lb = POLICIES[policy];
        let mut b = Balancer::new(&pool_backend(0b11111, lb), seed).unwrap();
        let mut now = T0;
        // Outstanding calls: (ticket, host).
        let mut calls: Vec<(Ticket, String)> = Vec::new();
        for op in ops {
            match op {
                Op::Pick { ip, header } => {
                    let hdr = header.map(|h| [h]);
                    let hint = PickHint {
                        client_ip: Some(&[10, 0, 0, ip]),
                        header_value: hdr.as_ref().map(|h| &h[..]),
                    };
                    let got = b.pick(now, hint);
                    check_pick(&b, got, now, None)?;
                    if let Some(t) = got {
                        let h = b.target(t, now).unwrap().hostname.to_owned();
                        calls.push((b.start(t, now), h));
                    }
                }
                Op::Finish { which, outcome } => {
                    if !calls.is_empty() {
                        let (ticket, _) = calls.swap_remove(which % calls.len());
                        let outcome = match outcome {
                            0 => Outcome::Success,
                            1 => Outcome::Cancelled,
                            2 => Outcome::Failure(FailureKind::Timeout),
                            _ => Outcome::Failure(FailureKind::Connect),
                        };
                        b.finish(ticket, outcome, now);
                    }
                }
                Op::Retry { which } => {
                    if let Some((ticket, _)) = calls.get(which % calls.len().max(1)) {
                        let failed = ticket.target();
                        let got = b.next_for_retry(now, PickHint::default(), failed);
                        check_pick(&b, got, now, Some(failed))?;
                        let others = b.targets(now).any(|s| usable(&s) && s.id.uid != failed.uid);
                        if let Some(t) = got {
                            prop_assert!(!others || t.uid != failed.uid, "retried the failed target");
                        }
                    }
                }
                Op::Health { target, healthy } => {
                    if let Some(t) = b.id_at(target) {
                        prop_assert!(b.set_health(t, healthy));
                    }
                }
                Op::Advance { ms } => now += ms,
                Op::Rebuild { mask } => {
                    b = Balancer::rebuild_from(&b, &pool_backend(mask, lb)).unwrap();
                }
            }
            // In flight per target (live or retired) equals the outstanding calls to it.
            let mut expected: HashMap<&str, u32> = HashMap::new();
            for (_, h) in &calls {
                *expected.entry(h).or_default() += 1;
            }
            let mut actual: HashMap<&str, u32> = HashMap::new();
            for s in b.slots.iter().chain(&b.retired) {
                *actual.entry(&s.hostname).or_default() += s.in_flight;
            }
            actual.retain(|_, n| *n > 0);
            prop_assert_eq!(expected, actual);
        }
        for (ticket, _) in calls {
            b.finish(ticket, Outcome::Success, now);
        }
        prop_assert!(b.slots.iter().all(|s| s.in_flight == 0));
        prop_assert!(b.retired.is_empty());
    }
}

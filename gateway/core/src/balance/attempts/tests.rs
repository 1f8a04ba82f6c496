//! The attempts machine: its classification table, its rules as properties over random failure
//! sequences, and a harness that drives thousands of simulated calls through it and a real
//! [`Balancer`] on a fake clock, with no socket (the shell's loop, minus the IO).

use gateway_model::entity::{Backend, ClientConfig};
use proptest::prelude::*;
use serde_json::json;

use super::super::rng::Rng;
use super::super::{Balancer, PickHint, TargetId, Ticket};
use super::*;

const ALL: [UpstreamError; 9] = [
    UpstreamError::AtCapacity,
    UpstreamError::ConnectTimeout,
    UpstreamError::ConnectFailed,
    UpstreamError::Tls { verification: true },
    UpstreamError::Tls {
        verification: false,
    },
    UpstreamError::Closed,
    UpstreamError::Broken,
    UpstreamError::BadResponse,
    UpstreamError::Timeout,
];

fn schedule(retries: u32, initial: u64, factor: u64, cap: u64) -> RetrySchedule {
    RetrySchedule::from_client(&ClientConfig {
        retries,
        retry_initial_delay: initial,
        backoff_factor: factor,
        global_timeout: cap,
        ..ClientConfig::default()
    })
}

#[test]
fn every_failure_has_its_retry_class_reply_and_verdict() {
    use FailureKind::{Broken, Connect, Timeout};
    let table: Vec<(UpstreamError, Retry, u16, &str, Outcome, Outcome)> = vec![
        (
            UpstreamError::AtCapacity,
            Retry::Always,
            503,
            "service_unavailable",
            Outcome::Cancelled,
            Outcome::Cancelled,
        ),
        (
            UpstreamError::ConnectTimeout,
            Retry::Always,
            504,
            "gateway_timeout",
            Outcome::Failure(Timeout),
            Outcome::Failure(Timeout),
        ),
        (
            UpstreamError::ConnectFailed,
            Retry::Always,
            502,
            "bad_gateway",
            Outcome::Failure(Connect),
            Outcome::Failure(Connect),
        ),
        (
            UpstreamError::Tls { verification: true },
            Retry::Always,
            502,
            "upstream_certificate_invalid",
            Outcome::Failure(Connect),
            Outcome::Failure(Connect),
        ),
        (
            UpstreamError::Tls {
                verification: false,
            },
            Retry::Always,
            502,
            "upstream_tls_failed",
            Outcome::Failure(Connect),
            Outcome::Failure(Connect),
        ),
        (
            UpstreamError::Closed,
            Retry::ReusedOnly,
            502,
            "bad_gateway",
            Outcome::Failure(Broken),
            Outcome::Cancelled,
        ),
        (
            UpstreamError::Broken,
            Retry::IfReplayable,
            502,
            "bad_gateway",
            Outcome::Failure(Broken),
            Outcome::Failure(Broken),
        ),
        (
            UpstreamError::BadResponse,
            Retry::IfReplayable,
            502,
            "bad_gateway",
            Outcome::Failure(Broken),
            Outcome::Failure(Broken),
        ),
        (
            UpstreamError::Timeout,
            Retry::IfReplayable,
            504,
            "gateway_timeout",
            Outcome::Failure(Timeout),
            Outcome::Failure(Timeout),
        ),
    ];
    assert_eq!(table.len(), ALL.len());
    for (error, retry, status, code, fresh, reused) in table {
        assert_eq!(error.retry(), retry, "{error:?}");
        assert_eq!(
            (error.reply().status, error.reply().code),
            (status, code),
            "{error:?}"
        );
        assert_eq!(
            error.outcome(false),
            fresh,
            "{error:?} on a fresh connection"
        );
        assert_eq!(
            error.outcome(true),
            reused,
            "{error:?} on a reused connection"
        );
    }
}

#[test]
fn a_request_that_cannot_be_replayed_is_retried_only_when_nothing_reached_the_upstream() {
    for error in ALL {
        let mut a = Attempts::new(schedule(2, 10, 2, 1000), false);
        let (_, step) = a.failed(error, false);
        match error.retry() {
            Retry::Always => assert_eq!(
                step,
                Step::Retry {
                    delay_ms: 10,
                    counted: true
                },
                "{error:?}"
            ),
            Retry::ReusedOnly | Retry::IfReplayable => {
                assert_eq!(step, Step::Answer(error.reply()), "{error:?}");
            }
        }
    }
    // A stale pooled connection is replaced whatever the request.
    let mut a = Attempts::new(schedule(0, 10, 2, 1000), false);
    assert_eq!(
        a.failed(UpstreamError::Closed, true),
        (
            Outcome::Cancelled,
            Step::Retry {
                delay_ms: 0,
                counted: false
            }
        )
    );
    assert_eq!(a.retries(), 0);
}

#[test]
fn retries_follow_the_schedule_and_stop_at_its_count() {
    let mut a = Attempts::new(schedule(3, 50, 2, 150), true);
    let steps: Vec<Step> = (0..4)
        .map(|_| a.failed(UpstreamError::Broken, false).1)
        .collect();
    let retry = |delay_ms| Step::Retry {
        delay_ms,
        counted: true,
    };
    assert_eq!(
        steps,
        [
            retry(50),
            retry(100),
            retry(150), // 200, capped by the global timeout
            Step::Answer(ErrorReply::BAD_GATEWAY)
        ]
    );
    assert_eq!(a.retries(), 3);
}

#[test]
fn stale_pooled_connections_are_replaced_a_bounded_number_of_times() {
    let mut a = Attempts::new(schedule(1, 5, 1, 1000), false);
    for _ in 0..MAX_UNCOUNTED {
        assert_eq!(
            a.failed(UpstreamError::Closed, true).1,
            Step::Retry {
                delay_ms: 0,
                counted: false
            }
        );
    }
    // Past the bound it is a failure like any other: this request cannot be replayed.
    assert_eq!(
        a.failed(UpstreamError::Closed, true).1,
        Step::Answer(ErrorReply::BAD_GATEWAY)
    );
}

fn any_error() -> impl Strategy<Value = UpstreamError> {
    (0..ALL.len()).prop_map(|i| ALL[i])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Over any sequence of failures: counted retries never pass the schedule's count and wait
    /// its delays, uncounted ones never pass [`MAX_UNCOUNTED`] and wait nothing, a request that
    /// cannot be replayed is tried again only when nothing of it reached the upstream or its
    /// pooled connection was stale, and the answer is the last failure's reply. So the machine
    /// ends within `retries + MAX_UNCOUNTED + 1` attempts.
    #[test]
    fn attempts_obey_their_rules(
        retries in 0u32..6,
        initial in 0u64..200,
        factor in 0u64..4,
        cap in 0u64..2000,
        replayable in any::<bool>(),
        failures in proptest::collection::vec((any_error(), any::<bool>()), 1..64),
    ) {
        let s = schedule(retries, initial, factor, cap);
        let mut a = Attempts::new(s, replayable);
        let (mut counted, mut uncounted) = (0u32, 0u32);
        let mut answered = false;
        for (n, (error, reused)) in failures.iter().copied().enumerate() {
            let (outcome, step) = a.failed(error, reused);
            prop_assert_eq!(outcome, error.outcome(reused));
            match step {
                Step::Retry { delay_ms, counted: true } => {
                    counted += 1;
                    prop_assert!(counted <= retries);
                    prop_assert_eq!(Some(delay_ms), s.delay_before(counted));
                    prop_assert!(replayable || error.retry() != Retry::IfReplayable);
                    prop_assert!(replayable || error.retry() == Retry::Always || !reused);
                }
                Step::Retry { delay_ms, counted: false } => {
                    uncounted += 1;
                    prop_assert_eq!(delay_ms, 0);
                    prop_assert!(reused && error == UpstreamError::Closed);
                    prop_assert!(uncounted <= MAX_UNCOUNTED);
                }
                Step::Answer(reply) => {
                    prop_assert_eq!(reply, error.reply());
                    prop_assert!(n as u32 <= retries + MAX_UNCOUNTED);
                    answered = true;
                    break;
                }
            }
            prop_assert_eq!(a.retries(), counted);
        }
        if !answered {
            prop_assert!(failures.len() as u32 <= retries + MAX_UNCOUNTED);
        }
    }
}

// ---------------------------------------------------------------- the harness

/// A target's behaviour in the simulation: each attempt at it fails with `error` with
/// probability `p_fail` (per mille), else answers.
#[derive(Debug, Clone, Copy)]
struct Sim {
    p_fail: u64,
    error: UpstreamError,
}

/// How one simulated call ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Answered,
    Failed(ErrorReply),
    NoTarget,
}

fn backend(targets: usize, retries: u32, max_errors: u32) -> Backend {
    let targets: Vec<_> = (0..targets)
        .map(|i| json!({"hostname": format!("t{i}"), "port": 80}))
        .collect();
    serde_json::from_value(json!({
        "targets": targets,
        "client": {"retries": retries, "retry_initial_delay": 20, "backoff_factor": 2,
                   "global_timeout": 500, "max_errors": max_errors, "sample_interval": 2000}
    }))
    .unwrap()
}

/// The shell's loop without IO: pick, start, fail or answer as `sims` say, settle every ticket,
/// sleep on the fake clock. Returns how the call ended, its attempts and the time it took.
fn call(
    b: &mut Balancer,
    sims: &[Sim],
    rng: &mut Rng,
    now: &mut i64,
    schedule: RetrySchedule,
    replayable: bool,
    hits: &mut [u32],
) -> (End, u32, i64) {
    let start = *now;
    let Some(first) = b.pick(*now, PickHint::default()) else {
        return (End::NoTarget, 0, 0);
    };
    let mut ticket: Ticket = b.start(first, *now);
    let mut attempts = Attempts::new(schedule, replayable);
    let mut tries = 0u32;
    loop {
        tries += 1;
        let target: TargetId = ticket.target();
        let sim = sims[target.index()];
        hits[target.index()] += 1;
        *now += 1; // each attempt takes a millisecond
        if rng.next_u64() % 1000 >= sim.p_fail {
            b.finish(ticket, Outcome::Success, *now);
            return (End::Answered, tries, *now - start);
        }
        let reused = rng.next_u64() % 2 == 0;
        let (outcome, step) = attempts.failed(sim.error, reused);
        b.finish(ticket, outcome, *now);
        match step {
            Step::Answer(reply) => return (End::Failed(reply), tries, *now - start),
            Step::Retry { delay_ms, counted } => {
                *now += i64::try_from(delay_ms).unwrap();
                let next = if counted {
                    b.next_for_retry(*now, PickHint::default(), target)
                } else {
                    b.pick(*now, PickHint::default())
                };
                match next {
                    Some(id) => ticket = b.start(id, *now),
                    None => return (End::Failed(sim.error.reply()), tries, *now - start),
                }
            }
        }
    }
}

/// 20,000 calls over four targets (one always refusing connections, one timing out half the
/// time, one with stale pooled connections, one healthy): every ticket is settled (nothing
/// left in flight), no call makes more attempts than its schedule allows, the total backoff of
/// a call stays within the schedule's sum, a call fails only on a failure of its last attempt,
/// the dead target's breaker opens and it then takes far fewer calls than its share, and
/// replayable calls succeed at least as often as the others.
#[test]
fn simulated_calls_settle_every_ticket_and_keep_their_bounds() {
    let sims = [
        Sim {
            p_fail: 1000,
            error: UpstreamError::ConnectFailed,
        },
        Sim {
            p_fail: 500,
            error: UpstreamError::Timeout,
        },
        Sim {
            p_fail: 300,
            error: UpstreamError::Closed,
        },
        Sim {
            p_fail: 0,
            error: UpstreamError::Broken,
        },
    ];
    let retries = 2;
    let spec = backend(sims.len(), retries, 5);
    let mut b = Balancer::new(&spec, 7).unwrap();
    let schedule = RetrySchedule::from_client(&spec.client);
    let max_backoff: u64 = (1..=retries).filter_map(|n| schedule.delay_before(n)).sum();
    // The balancers' own seedable generator, so a failing seed replays.
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut now = 1_700_000_000_000i64;
    let mut ok = [0u32; 2];
    let mut calls = [0u32; 2];
    let mut hits = [0u32; 4];
    for n in 0..20_000u32 {
        let replayable = n % 2 == 0;
        let (end, tries, took) = call(
            &mut b, &sims, &mut rng, &mut now, schedule, replayable, &mut hits,
        );
        calls[usize::from(replayable)] += 1;
        assert!(
            tries <= retries + MAX_UNCOUNTED + 1,
            "call {n}: {tries} attempts"
        );
        assert!(
            u64::try_from(took).unwrap() <= max_backoff + u64::from(tries),
            "call {n}: {took} ms"
        );
        match end {
            End::Answered => ok[usize::from(replayable)] += 1,
            End::Failed(reply) => assert!(
                sims.iter().any(|s| s.error.reply() == reply),
                "call {n}: {reply:?}"
            ),
            End::NoTarget => {}
        }
        for t in b.targets(now) {
            assert_eq!(
                t.in_flight, 0,
                "call {n}: a ticket of {} unsettled",
                t.hostname
            );
        }
        now += 2; // time between calls
    }
    let dead = b.targets(now).find(|t| t.hostname == "t0").unwrap();
    assert!(dead.consecutive_failures >= 5, "{dead:?}");
    // Its breaker keeps it out but for a trial call per 2-s sample interval.
    let all: u32 = hits.iter().sum();
    assert!(
        hits[0] * 20 < all,
        "the dead target took {} of {all} attempts",
        hits[0]
    );
    // Replayable calls are retried after timeouts and broken stale connections; the others are
    // not, so they fail more.
    assert!(
        ok[1] * calls[0] >= ok[0] * calls[1],
        "replayable {}/{} vs not {}/{}",
        ok[1],
        calls[1],
        ok[0],
        calls[0]
    );
    assert!(
        ok[1] > calls[1] * 9 / 10,
        "replayable success {}/{}",
        ok[1],
        calls[1]
    );
}

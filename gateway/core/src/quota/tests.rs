use gateway_model::entity::{ApiKey, Route, UNLIMITED_QUOTA};
use jiff::tz::TimeZone;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::apikey::{KeyEntry, KeyStore};
use crate::flow::{Flow, FlowScratch, QuotaExceeded, Rejection, RequestView};
use crate::window::Calendar;

// ---- helpers ----

/// A civil date and time.
fn dt(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8, ms: i32) -> jiff::civil::DateTime {
    jiff::civil::date(y, mo, d).at(h, mi, s, ms * 1_000_000)
}

/// ms since the epoch of a civil time in `zone`.
fn at(zone: &str, civil: jiff::civil::DateTime) -> i64 {
    civil
        .to_zoned(TimeZone::get(zone).unwrap())
        .unwrap()
        .timestamp()
        .as_millisecond()
}

fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8, ms: i32) -> i64 {
    at("UTC", dt(y, mo, d, h, mi, s, ms))
}

/// Noon UTC, 2026-11-22: 12 h until the day ends, 8 days and 12 h until the month does.
fn now() -> i64 {
    utc(2026, 11, 22, 12, 0, 0, 0)
}

/// Keys `(client id, throttlingQuota, dailyQuota, monthlyQuota)`.
fn store(specs: &[(&str, u64, u64, u64)]) -> KeyStore {
    let keys: Vec<ApiKey> = specs
        .iter()
        .map(|(id, t, d, m)| {
            serde_json::from_value(json!({
                "clientId": id, "clientSecret": "secret", "authorizedEntities": ["route_r1"],
                "throttlingQuota": t, "dailyQuota": d, "monthlyQuota": m,
            }))
            .unwrap()
        })
        .collect();
    KeyStore::build(&keys).unwrap()
}

/// One key `k` with these quotas.
fn one(throttling: u64, daily: u64, monthly: u64) -> KeyStore {
    store(&[("k", throttling, daily, monthly)])
}

fn key<'s>(store: &'s KeyStore, id: &str) -> &'s KeyEntry {
    store.get(id).unwrap()
}

/// A node: one pool, `cores` shards.
struct Node {
    pool: NodePool,
    shards: Vec<QuotaShard>,
}

impl Node {
    fn new(cores: usize, keys: &KeyStore) -> Self {
        Self::in_zone("UTC", cores, keys)
    }

    fn in_zone(zone: &str, cores: usize, keys: &KeyStore) -> Self {
        Self {
            pool: NodePool::new(Calendar::new(zone).unwrap(), cores, keys),
            shards: (0..cores).map(|_| QuotaShard::new()).collect(),
        }
    }

    fn admit(
        &mut self,
        core: usize,
        key: &KeyEntry,
        now: i64,
    ) -> Result<QuotaState, QuotaExceeded> {
        self.shards[core].admit(&self.pool, key, now)
    }

    /// Calls admitted out of `n` on `core`.
    fn admit_n(&mut self, core: usize, key: &KeyEntry, now: i64, n: usize) -> usize {
        (0..n)
            .filter(|_| self.admit(core, key, now).is_ok())
            .count()
    }

    fn held(&self) -> Held {
        self.shards.iter().fold(Held::default(), |a, s| {
            let h = s.held();
            Held {
                day: a.day + h.day,
                month: a.month + h.month,
                tokens: a.tokens + h.tokens,
                keys: a.keys + h.keys,
            }
        })
    }

    fn release_all(&mut self) {
        for s in &mut self.shards {
            s.release_all();
        }
    }

    /// Units of today and this month taken from the pool: admitted calls plus held leases.
    fn taken(&self, now: i64) -> (u64, u64) {
        self.pool.taken("k", now).unwrap()
    }

    /// The key's consumption after a tick (every shard reports its admitted calls).
    fn usage(&mut self, now: i64) -> Consumption {
        for s in &mut self.shards {
            s.report_admitted();
        }
        self.pool.consumption("k", now).unwrap()
    }
}

const BIG: u64 = 1_000_000_000;

// ---- lease sizing ----

#[test]
fn lease_size_shrinks_with_what_remains_and_is_capped_by_the_quota() {
    // remaining / (4 × cores) vs quota / (128 × cores)
    assert_eq!(lease_size(10_000_000, 10_000_000, 2), 39_062);
    assert_eq!(lease_size(80_000, 10_000_000, 2), 10_000);
    assert_eq!(lease_size(1_000, 10_000_000, 2), 125);
    assert_eq!(lease_size(7, 10_000_000, 2), 1);
    assert_eq!(lease_size(1, 10_000_000, 2), 1);
    assert_eq!(lease_size(0, 10_000_000, 2), 0, "never more than remains");
    assert_eq!(
        lease_size(500, 500, 2),
        1,
        "quota < 256 × cores: single units"
    );
    assert_eq!(lease_size(100, 100, 0), 1, "0 cores reads as 1");
}

// ---- daily and monthly counts ----

#[test]
fn one_core_admits_exactly_the_daily_quota_then_says_when_the_day_ends() {
    let keys = one(BIG, 1_000, 1_000_000);
    let mut node = Node::new(1, &keys);
    let k = key(&keys, "k");
    assert_eq!(node.admit_n(0, k, now(), 1_500), 1_000);
    assert_eq!(
        node.admit(0, k, now()),
        Err(QuotaExceeded::Daily {
            retry_after_secs: 12 * 3_600
        })
    );
    node.release_all();
    assert_eq!(node.usage(now()).current_calls_per_day, 1_000);
    assert_eq!(node.usage(now()).remaining_calls_per_day, 0);
}

#[test]
fn one_core_admits_exactly_the_monthly_quota_through_the_fast_path() {
    // A monthly lease of 78 units (10,000 / 128): most calls take the fast path.
    let keys = one(BIG, BIG, 10_000);
    let mut node = Node::new(1, &keys);
    let k = key(&keys, "k");
    assert_eq!(node.admit_n(0, k, now(), 12_000), 10_000);
    assert!(matches!(
        node.admit(0, k, now()),
        Err(QuotaExceeded::Monthly { .. })
    ));
    node.release_all();
    assert_eq!(node.usage(now()).current_calls_per_month, 10_000);
}

#[test]
fn every_admitted_call_takes_exactly_one_unit_of_each_quota() {
    // Large quotas: leases of many units, so the fast path serves most calls. On one core the
    // remaining counts are exact, so each call lowers each of them by exactly one.
    let keys = one(1_000_000, 2_000_000, 3_000_000);
    let mut node = Node::new(1, &keys);
    let k = key(&keys, "k");
    let mut last = node.admit(0, k, now()).unwrap();
    for i in 1..5_000u64 {
        let s = node.admit(0, k, now()).unwrap();
        assert_eq!(
            (
                s.throttling.remaining,
                s.daily.remaining,
                s.monthly.remaining
            ),
            (
                last.throttling.remaining - 1,
                last.daily.remaining - 1,
                last.monthly.remaining - 1
            ),
            "call {i}"
        );
        last = s;
    }
    assert_eq!(last.daily.remaining, 2_000_000 - 5_000);
    assert_eq!(last.monthly.remaining, 3_000_000 - 5_000);
}

#[test]
fn e2e_shape_800_calls_over_64_connections_on_2_cores_with_daily_quota_500() {
    let keys = one(10_000_000, 500, 10_000_000);
    let mut node = Node::new(2, &keys);
    let k = key(&keys, "k");
    let (mut ok, mut daily) = (0, 0);
    for call in 0..800 {
        let connection = call % 64;
        let core = connection % 2;
        match node.admit(core, k, now() + call as i64) {
            Ok(_) => ok += 1,
            Err(QuotaExceeded::Daily { retry_after_secs }) => {
                assert!(retry_after_secs > 0);
                daily += 1;
            }
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!((ok, daily), (500, 300));
    // The 429's headers come from the shard's last refusal.
    let state = node.shards[1].last_refusal().unwrap();
    assert_eq!(state.daily_remaining(), 0);
    assert_eq!(state.tightest().kind, QuotaKind::Daily);
    assert_eq!(state.retry_after_secs(), Some(12 * 3_600));
}

#[test]
fn a_call_refused_by_the_month_takes_nothing_from_the_day() {
    let keys = one(BIG, 100, 5);
    let mut node = Node::new(1, &keys);
    let k = key(&keys, "k");
    assert_eq!(node.admit_n(0, k, now(), 5), 5);
    let day_before = node.usage(now()).current_calls_per_day;
    assert_eq!(day_before, 5);
    for i in 0..10 {
        let t = now() + i * REFUSAL_RECHECK_MS;
        assert!(matches!(
            node.admit(0, k, t),
            Err(QuotaExceeded::Monthly { .. })
        ));
    }
    assert_eq!(node.usage(now()).current_calls_per_day, day_before);
    assert_eq!(node.usage(now()).current_calls_per_month, 5);
}

#[test]
fn a_call_refused_by_the_day_gives_back_the_month_lease_it_took() {
    let keys = one(BIG, 5, 100);
    let mut node = Node::new(1, &keys);
    let k = key(&keys, "k");
    assert_eq!(node.admit_n(0, k, now(), 5), 5);
    assert!(matches!(
        node.admit(0, k, now()),
        Err(QuotaExceeded::Daily { .. })
    ));
    assert_eq!(node.usage(now()).current_calls_per_month, 5);
    assert_eq!(node.held().month, 0);
}

#[test]
fn a_throttled_call_gives_back_the_day_and_month_leases_it_took() {
    let keys = one(3, 100, 100);
    let mut node = Node::new(1, &keys);
    let k = key(&keys, "k");
    assert_eq!(node.admit_n(0, k, now(), 3), 3);
    assert_eq!(
        node.admit(0, k, now()),
        Err(QuotaExceeded::Throttled {
            retry_after_secs: 1
        })
    );
    let u = node.usage(now());
    assert_eq!((u.current_calls_per_day, u.current_calls_per_month), (3, 3));
}

#[test]
fn the_monthly_refusal_wins_when_day_and_month_are_both_exhausted() {
    let keys = one(BIG, 3, 3);
    let mut node = Node::new(1, &keys);
    let k = key(&keys, "k");
    assert_eq!(node.admit_n(0, k, now(), 3), 3);
    // The longest wait is the one a client must honour.
    assert!(matches!(
        node.admit(0, k, now()),
        Err(QuotaExceeded::Monthly { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any interleaving of cores, any time advances within a day: the admitted calls never
    /// exceed either quota, pool + leases + admitted always add up, the leases stay below 1 %
    /// of the quota, and once they are released the node admits exactly the quota.
    #[test]
    fn admitted_never_exceeds_daily_or_monthly_for_any_interleaving(
        cores in 2usize..=16,
        daily in 1u64..3_000,
        monthly in 1u64..3_000,
        ops in prop::collection::vec((0usize..16, 0i64..20_000, 0u8..20), 1..2_500),
    ) {
        let keys = one(BIG, daily, monthly);
        let k = key(&keys, "k");
        let mut node = Node::new(cores, &keys);
        let quota = daily.min(monthly);
        let start = utc(2026, 11, 22, 0, 0, 0, 0);
        let last = utc(2026, 11, 22, 23, 59, 59, 999);
        let mut t = start;
        let mut admitted = 0u64;
        for (core, advance, action) in ops {
            let core = core % cores;
            t = (t + advance).min(last);
            match action {
                0 => { node.shards[core].reclaim_idle(t, 1_000); }
                1 => node.shards[core].release_all(),
                _ => {
                    if node.admit(core, k, t).is_ok() {
                        admitted += 1;
                    }
                }
            }
            prop_assert!(admitted <= quota, "admitted {admitted} > quota {quota}");
            let held = node.held();
            let (day, month) = node.taken(t);
            prop_assert_eq!(day, admitted + held.day);
            prop_assert_eq!(month, admitted + held.month);
            // After a tick, consumption counts the calls, not the leases.
            let usage = node.usage(t);
            prop_assert_eq!(usage.current_calls_per_day, admitted);
            prop_assert_eq!(usage.current_calls_per_month, admitted);
            // Stranded capacity: below max(1 % of the quota, 1 call).
            prop_assert!(held.day * 100 < daily.max(100), "held {} of {daily}", held.day);
            prop_assert!(held.month * 100 < monthly.max(100), "held {} of {monthly}", held.month);
        }
        node.release_all();
        while node.admit(0, k, t).is_ok() {
            admitted += 1;
        }
        prop_assert_eq!(admitted, quota);
    }
}

#[test]
fn threads_sharing_one_pool_never_admit_more_than_the_quota() {
    const QUOTA: u64 = 25_000;
    let keys = one(BIG, QUOTA, 1_000_000);
    let k = key(&keys, "k");
    let pool = NodePool::new(Calendar::utc(), 4, &keys);
    let admitted: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut shard = QuotaShard::new();
                    let n = (0..10_000)
                        .filter(|_| shard.admit(&pool, k, now()).is_ok())
                        .count() as u64;
                    shard.release_all();
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(admitted <= QUOTA);
    let mut drain = QuotaShard::new();
    let rest = (0..QUOTA)
        .filter(|_| drain.admit(&pool, k, now()).is_ok())
        .count() as u64;
    assert_eq!(admitted + rest, QUOTA);
}

// ---- throttling ----

#[test]
fn ten_per_second_admits_ten_refuses_the_eleventh_then_admits_after_the_refill() {
    let keys = one(10, BIG, BIG);
    let mut node = Node::new(1, &keys);
    let k = key(&keys, "k");
    let t = now();
    assert_eq!(node.admit_n(0, k, t, 10), 10);
    let refused = node.admit(0, k, t).unwrap_err();
    assert_eq!(
        refused,
        QuotaExceeded::Throttled {
            retry_after_secs: 1
        }
    );
    assert!(node.admit(0, k, t + 99).is_err(), "a token every 100 ms");
    assert!(node.admit(0, k, t + 100).is_ok());
    assert!(node.admit(0, k, t + 100).is_err());
    // A full second refills the bucket to its capacity, not beyond.
    assert_eq!(node.admit_n(0, k, t + 5_000, 20), 10);
}

#[test]
fn ten_per_second_across_four_cores_never_exceeds_ten_per_second() {
    let keys = one(10, BIG, BIG);
    let mut node = Node::new(4, &keys);
    let k = key(&keys, "k");
    let t0 = now();
    let mut times = Vec::new();
    for ms in 0..5_000 {
        for attempt in 0..12 {
            let core = (ms + attempt) % 4;
            if node.admit(core as usize, k, t0 + ms as i64).is_ok() {
                times.push(ms as i64);
            }
        }
    }
    // The full bucket at once, then a token every 100 ms.
    assert_eq!(times.iter().filter(|&&t| t == 0).count(), 10);
    assert_eq!(times.len(), 10 + 49);
    for second in 1..5 {
        let n = times.iter().filter(|&&t| t / 1_000 == second).count();
        assert_eq!(n, 10, "second {second}");
    }
    // Once the burst is spent, any 1-second window holds at most 10.
    let steady: Vec<i64> = times.iter().copied().filter(|&t| t > 0).collect();
    for (i, &a) in steady.iter().enumerate() {
        let n = steady[i..].iter().take_while(|&&b| b < a + 1_000).count();
        assert!(n <= 10, "{n} calls in [{a}, {a}+1000)");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the cores and the interleaving: in any interval of d ms the node admits at most
    /// C + (what cores may hold: < C/128) + C·d/1000, one bucket's bound plus the leases.
    #[test]
    fn throttling_holds_the_bucket_bound_across_cores(
        cores in 2usize..=8,
        rate in 1u64..5_000,
        ops in prop::collection::vec((0usize..8, 0i64..30), 1..3_000),
    ) {
        let keys = one(rate, BIG, BIG);
        let k = key(&keys, "k");
        let mut node = Node::new(cores, &keys);
        let mut t = now();
        let mut times = Vec::new();
        for (core, advance) in ops {
            t += advance;
            if node.admit(core % cores, k, t).is_ok() {
                times.push(t);
            }
        }
        let c = cores as u64;
        let held_max = c * (rate / (128 * c)).saturating_sub(1);
        let bound = i128::from((rate + held_max) * 1_000);
        // (j - i + 1)·1000 ≤ bound + rate·(t_j - t_i) for all i ≤ j.
        let r = i128::from(rate);
        let mut min_g = i128::MAX;
        for (j, &tj) in times.iter().enumerate() {
            let j = j as i128;
            min_g = min_g.min((j - 1) * 1_000 - r * i128::from(tj));
            let f = j * 1_000 - r * i128::from(tj);
            prop_assert!(f - min_g <= bound, "burst over the bucket bound at {tj}");
        }
    }
}

// ---- calendar windows ----

#[test]
fn the_day_rolls_over_exactly_at_local_midnight_in_a_non_utc_zone() {
    let zone = "Asia/Kolkata"; // UTC+05:30
    let keys = one(BIG, 10_000, BIG);
    let mut node = Node::in_zone(zone, 2, &keys);
    let k = key(&keys, "k");
    let end = at(zone, dt(2026, 11, 23, 0, 0, 0, 0));
    assert_eq!(end, utc(2026, 11, 22, 18, 30, 0, 0));
    let mut admitted = 0;
    for i in 0..12_000 {
        if node.admit(i % 2, k, end - 60_000).is_ok() {
            admitted += 1;
        }
    }
    assert!(admitted <= 10_000);
    node.shards[0].release_all();
    node.shards[1].release_all();
    admitted += node.admit_n(0, k, end - 30_000, 10_000);
    assert_eq!(admitted, 10_000);
    // 23:59:59.999 local: still the exhausted day.
    assert_eq!(
        node.admit(1, k, end - 1),
        Err(QuotaExceeded::Daily {
            retry_after_secs: 1
        })
    );
    // 00:00:00.000 local: a new day at the full quota.
    assert!(node.admit(1, k, end).is_ok());
    assert!(node.admit(0, k, end).is_ok());
    let (day, month) = node.taken(end);
    assert_eq!(day, 2 + node.held().day);
    assert_eq!(month, 10_002 + node.held().month);
    let usage = node.usage(end);
    assert_eq!(usage.current_calls_per_day, 2);
    assert_eq!(usage.current_calls_per_month, 10_002);
}

#[test]
fn leases_of_a_finished_day_are_void() {
    let keys = one(BIG, 100_000, BIG);
    let mut node = Node::new(2, &keys);
    let k = key(&keys, "k");
    let end = utc(2026, 11, 23, 0, 0, 0, 0);
    node.admit(0, k, end - 1).unwrap();
    assert_eq!(node.held().day, 389, "a lease of 390 units");
    node.admit(0, k, end).unwrap();
    // The new day counts only the new lease, not what was left of yesterday's.
    assert_eq!(node.taken(end).0, 390);
    assert_eq!(node.usage(end).current_calls_per_day, 1);
    assert_eq!(node.usage(end).remaining_calls_per_day, 100_000 - 1);
}

/// Another key's call rolls the core over to the new day: a key whose entry still holds
/// yesterday's lease must not spend it today (the hot path compares the entry's windows with
/// the core's).
#[test]
fn a_lease_of_yesterday_is_not_spent_today_after_another_key_rolled_the_core() {
    let keys = store(&[("k", BIG, 100_000, BIG), ("other", BIG, 100_000, BIG)]);
    let mut node = Node::new(1, &keys);
    let (k, other) = (key(&keys, "k"), key(&keys, "other"));
    let end = utc(2026, 11, 23, 0, 0, 0, 0);
    node.admit(0, k, end - 1).unwrap(); // k leases units of the 22nd
    node.admit(0, other, end).unwrap(); // the core rolls over to the 23rd
    node.admit(0, k, end + 1).unwrap(); // k's call belongs to the 23rd
    assert!(node.taken(end).0 > 0, "k took nothing from the 23rd");
    assert_eq!(node.usage(end).current_calls_per_day, 1);
}

/// The first call after midnight on a core that has not rolled over yet takes the slow path
/// (the hot path is valid only before the core's day ends).
#[test]
fn the_first_call_after_midnight_counts_in_the_new_day() {
    let keys = one(BIG, 100_000, BIG);
    let mut node = Node::new(1, &keys);
    let k = key(&keys, "k");
    let end = utc(2026, 11, 23, 0, 0, 0, 0);
    node.admit(0, k, end - 1).unwrap();
    node.admit(0, k, end + 1).unwrap();
    assert!(
        node.taken(end + 1).0 > 0,
        "the call spent yesterday's lease"
    );
    assert_eq!(node.usage(end + 1).current_calls_per_day, 1);
}

#[test]
fn yesterdays_lease_given_back_today_changes_nothing() {
    let keys = one(BIG, 100_000, BIG);
    let mut node = Node::new(2, &keys);
    let k = key(&keys, "k");
    let end = utc(2026, 11, 23, 0, 0, 0, 0);
    node.admit(0, k, end - 1).unwrap(); // core 0 keeps 389 units of the 22nd
    node.admit(1, k, end).unwrap(); // core 1 starts the 23rd
    node.shards[0].release_all();
    assert_eq!(node.taken(end).0, 390);
    assert_eq!(node.usage(end).current_calls_per_day, 1);
}

#[test]
fn a_core_whose_clock_lags_counts_in_the_pools_newer_day() {
    let keys = one(BIG, 10, BIG);
    let mut node = Node::new(2, &keys);
    let k = key(&keys, "k");
    let end = utc(2026, 11, 23, 0, 0, 0, 0);
    node.admit(1, k, end).unwrap();
    // Core 0 still reads 23:59:59.999: the pool is on the new day, and so is its lease.
    node.admit(0, k, end - 1).unwrap();
    assert_eq!(node.usage(end).current_calls_per_day, 2);
}

/// After the clock steps back, `Retry-After` counts the wait for the next token on the
/// caller's clock, not one second.
#[test]
fn retry_after_counts_the_wait_for_the_next_token_on_a_clock_that_stepped_back() {
    let keys = one(10, BIG, BIG);
    let mut node = Node::new(1, &keys);
    let k = key(&keys, "k");
    let t = now();
    assert_eq!(node.admit_n(0, k, t, 10), 10);
    // The next token comes at t + 100 ms: 3.1 s after t - 3 s.
    assert_eq!(
        node.admit(0, k, t - 3_000).unwrap_err(),
        QuotaExceeded::Throttled {
            retry_after_secs: 4
        }
    );
}

/// The tick reports only the keys a core admitted calls of since its last report: a key idle on
/// a core keeps its view of the other cores' calls until it has calls to report again.
#[test]
fn a_key_idle_on_a_core_keeps_its_last_view_at_the_tick() {
    let keys = one(BIG, 1_000_000, BIG);
    let mut node = Node::new(2, &keys);
    let k = key(&keys, "k");
    let t = now();
    assert_eq!(node.admit(0, k, t).unwrap().daily_remaining(), 999_999);
    node.shards[0].report_admitted();
    assert_eq!(node.admit_n(1, k, t, 5), 5);
    node.shards[1].report_admitted();
    // Nothing to report on core 0: it does not read core 1's five calls back.
    node.shards[0].report_admitted();
    assert_eq!(node.admit(0, k, t).unwrap().daily_remaining(), 999_998);
    node.shards[0].report_admitted();
    assert_eq!(node.admit(0, k, t).unwrap().daily_remaining(), 999_992);
}

#[test]
fn the_month_rolls_over_at_local_midnight_of_the_first() {
    let zone = "America/New_York";
    let keys = one(BIG, BIG, 5);
    let mut node = Node::in_zone(zone, 1, &keys);
    let k = key(&keys, "k");
    let end = at(zone, dt(2027, 2, 1, 0, 0, 0, 0));
    assert_eq!(end, utc(2027, 2, 1, 5, 0, 0, 0));
    assert_eq!(
        node.admit_n(0, k, at(zone, dt(2027, 1, 31, 20, 0, 0, 0)), 10),
        5
    );
    assert_eq!(
        node.admit(0, k, end - 1),
        Err(QuotaExceeded::Monthly {
            retry_after_secs: 1
        })
    );
    assert_eq!(node.admit_n(0, k, end, 10), 5);
    assert_eq!(node.usage(end).current_calls_per_month, 5);
}

#[test]
fn a_23_hour_dst_day_ends_at_local_midnight() {
    let zone = "Europe/Paris"; // 2026-03-29: 02:00 CET → 03:00 CEST
    let keys = one(BIG, 2, BIG);
    let mut node = Node::in_zone(zone, 1, &keys);
    let k = key(&keys, "k");
    // The last instant of the 28th is still the 28th.
    assert_eq!(node.admit_n(0, k, utc(2026, 3, 28, 22, 59, 59, 999), 5), 2);
    assert_eq!(node.admit_n(0, k, utc(2026, 3, 28, 23, 0, 0, 0), 5), 2);
    let end = utc(2026, 3, 29, 22, 0, 0, 0);
    assert_eq!(
        node.admit(0, k, end - 1),
        Err(QuotaExceeded::Daily {
            retry_after_secs: 1
        })
    );
    assert_eq!(node.admit_n(0, k, end, 5), 2);
}

#[test]
fn a_25_hour_dst_day_ends_at_local_midnight() {
    let zone = "America/New_York"; // 2026-11-01: 02:00 EDT → 01:00 EST
    let keys = one(BIG, 2, BIG);
    let mut node = Node::in_zone(zone, 1, &keys);
    let k = key(&keys, "k");
    assert_eq!(node.admit_n(0, k, utc(2026, 11, 1, 5, 0, 0, 0), 5), 2);
    // 24 hours after midnight it is 23:00 local, still the 1st.
    let day_plus_24h = utc(2026, 11, 2, 4, 0, 0, 0);
    assert_eq!(
        node.admit(0, k, day_plus_24h),
        Err(QuotaExceeded::Daily {
            retry_after_secs: 3_600
        })
    );
    let end = utc(2026, 11, 2, 5, 0, 0, 0);
    assert!(node.admit(0, k, end - 1).is_err());
    assert_eq!(node.admit_n(0, k, end, 5), 2);
}

// ---- restore, other nodes, reset, snapshots ----

#[test]
fn restore_resumes_consumption_and_ignores_other_windows() {
    let keys = one(BIG, 10, 100);
    let k = key(&keys, "k");
    let mut node = Node::new(1, &keys);
    assert!(node.pool.restore("k", 20261122, 7, 202611, 50));
    // Restoring twice (journal, then ledger) never adds up: it raises to at least.
    assert!(node.pool.restore("k", 20261122, 6, 202611, 40));
    assert_eq!(node.admit_n(0, k, now(), 20), 3);
    assert_eq!(node.usage(now()).current_calls_per_month, 53);
    assert!(!node.pool.restore("nobody", 20261122, 1, 202611, 1));

    let mut stale = Node::new(1, &keys);
    assert!(stale.pool.restore("k", 20261121, 10, 202610, 100));
    assert_eq!(
        stale.admit_n(0, k, now(), 20),
        10,
        "yesterday's count is not today's"
    );
}

#[test]
fn other_nodes_consumption_reduces_what_this_node_admits() {
    let keys = one(BIG, 10, 100);
    let k = key(&keys, "k");
    let mut node = Node::new(1, &keys);
    assert!(node.pool.set_remote("k", 20261122, 4, 202611, 4));
    assert_eq!(node.admit_n(0, k, now(), 3), 3);
    // The ledger reports more: the node stops at 10 − 5.
    assert!(node.pool.set_remote("k", 20261122, 5, 202611, 5));
    assert_eq!(node.admit_n(0, k, now(), 20), 2);
    let usage = node.usage(now());
    assert_eq!(usage.current_calls_per_day, 10);
    assert_eq!(usage.remaining_calls_per_day, 0);
    // An older record does not replace a newer one.
    assert!(node.pool.set_remote("k", 20261121, 0, 202610, 0));
    assert_eq!(node.usage(now()).current_calls_per_day, 10);

    let mut stale = Node::new(1, &keys);
    stale.pool.set_remote("k", 20261121, 10, 202610, 100);
    assert_eq!(
        stale.admit_n(0, k, now(), 20),
        10,
        "yesterday's totals read as 0"
    );
}

#[test]
fn reset_gives_the_full_quota_back() {
    let keys = one(3, 5, 100);
    let k = key(&keys, "k");
    let mut node = Node::new(1, &keys);
    assert_eq!(node.admit_n(0, k, now(), 10), 3);
    assert_eq!(node.admit_n(0, k, now() + 1_000, 10), 2);
    assert!(node.admit(0, k, now() + 2_000).is_err());
    // A tick passes (the cores report their calls), then the reset.
    node.usage(now() + 2_000);
    assert_eq!(node.pool.reset_at("k"), None);
    assert!(node.pool.reset("k", now() + 2_000));
    assert_eq!(node.pool.reset_at("k"), Some(now() + 2_000));
    let u = node.usage(now() + 2_000);
    assert_eq!(
        (u.current_calls_per_day, u.remaining_calls_per_window),
        (0, 3)
    );
    // The refusing core sees it at its next re-check.
    let t = now() + 2_000 + REFUSAL_RECHECK_MS;
    assert_eq!(node.admit_n(0, k, t, 10), 3);
    assert!(!node.pool.reset("nobody", t));
    // The same reset again (a replayed event) or an older one changes nothing; a newer one
    // resets.
    node.usage(t);
    for at in [now() + 2_000, now()] {
        assert!(node.pool.reset("k", at));
        assert_eq!(node.usage(t).current_calls_per_day, 3, "reset at {at}");
    }
    assert!(node.pool.reset("k", t));
    assert_eq!(node.usage(t).current_calls_per_day, 0);
    assert_eq!(node.pool.reset_at("k"), Some(t));
}

#[test]
fn reset_keeps_the_window_ids_so_records_of_older_windows_are_still_ignored() {
    let keys = one(BIG, 10, 100);
    let node = Node::new(1, &keys);
    // now() is on 2026-11-22: counts of today and this month, then the reset.
    assert!(node.pool.restore("k", 20261122, 3, 202611, 3));
    assert!(node.pool.set_remote("k", 20261122, 4, 202611, 4));
    assert!(node.pool.reset("k", now()));
    // Records of an older day and month that arrive after the reset are still older than
    // what every counter counts: neither restore nor the ledger's totals take them.
    assert!(node.pool.restore("k", 20261031, 7, 202610, 7));
    assert!(node.pool.set_remote("k", 20261031, 5, 202610, 5));
    let last_month = utc(2026, 10, 31, 12, 0, 0, 0);
    assert_eq!(node.pool.taken("k", last_month), Some((0, 0)));
    let u = node.pool.consumption("k", last_month).unwrap();
    assert_eq!((u.current_calls_per_day, u.current_calls_per_month), (0, 0));
}

#[test]
fn the_pool_reports_its_cores_and_keys() {
    let keys = store(&[("a", 1, 1, 1), ("b", 1, 1, 1)]);
    let pool = NodePool::new(Calendar::new("UTC").unwrap(), 3, &keys);
    assert_eq!((pool.cores(), pool.len(), pool.is_empty()), (3, 2, false));
    // A node has at least one core.
    let empty = NodePool::new(Calendar::new("UTC").unwrap(), 0, &KeyStore::default());
    assert_eq!((empty.cores(), empty.len(), empty.is_empty()), (1, 0, true));
}

#[test]
fn a_new_snapshot_keeps_consumption_under_new_quotas_and_adds_keys() {
    let keys = one(BIG, 10, 100);
    let mut node = Node::new(1, &keys);
    assert_eq!(node.admit_n(0, key(&keys, "k"), now(), 4), 4);

    // Lowered to 6: two more.
    let lower = store(&[("other", BIG, 1, 1), ("k", BIG, 6, 100)]);
    node.pool = node.pool.rebuild(&lower);
    assert_eq!(node.admit_n(0, key(&lower, "k"), now(), 10), 2);
    // A key added later gets its own counters.
    assert_eq!(node.admit_n(0, key(&lower, "other"), now(), 10), 1);

    // Raised to 20: fourteen more, not twenty.
    let raised = store(&[("k", BIG, 20, 100)]);
    node.pool = node.pool.rebuild(&raised);
    assert_eq!(node.admit_n(0, key(&raised, "k"), now(), 50), 14);
    assert_eq!(node.usage(now()).current_calls_per_day, 20);

    // Lowered below what was consumed: refused until the day ends.
    let below = store(&[("k", BIG, 8, 100)]);
    node.pool = node.pool.rebuild(&below);
    assert!(matches!(
        node.admit(0, key(&below, "k"), now()),
        Err(QuotaExceeded::Daily { .. })
    ));
}

#[test]
fn a_snapshot_swap_gives_the_old_leases_back() {
    let keys = one(BIG, 100_000, BIG);
    let mut node = Node::new(2, &keys);
    node.admit(0, key(&keys, "k"), now()).unwrap();
    assert_eq!(node.taken(now()).0, 390);
    let next = one(BIG, 100_000, BIG);
    node.pool = node.pool.rebuild(&next);
    node.admit(0, key(&next, "k"), now()).unwrap();
    // 1 + 1 admitted, and one new lease of 390 of which 389 are held.
    assert_eq!(node.taken(now()).0, 1 + 390);
    assert_eq!(node.usage(now()).current_calls_per_day, 2);
}

// ---- reclaim ----

#[test]
fn idle_cores_give_their_leases_back() {
    let keys = one(BIG, 100_000, BIG);
    let k = key(&keys, "k");
    let mut node = Node::new(2, &keys);
    node.admit(0, k, now()).unwrap();
    assert_eq!(node.taken(now()).0, 390);
    assert_eq!(node.shards[0].reclaim_idle(now() + 999, 1_000), 0);
    assert_eq!(node.shards[0].reclaim_idle(now() + 1_000, 1_000), 1);
    assert_eq!(node.taken(now()).0, 1);
    assert_eq!(node.usage(now()).current_calls_per_day, 1);
    assert_eq!(node.held(), Held::default());
}

#[test]
fn release_all_gives_every_lease_back() {
    let keys = store(&[("a", 10_000, 100_000, BIG), ("b", 10_000, 100_000, BIG)]);
    let mut node = Node::new(2, &keys);
    node.admit(0, key(&keys, "a"), now()).unwrap();
    node.admit(0, key(&keys, "b"), now()).unwrap();
    assert_eq!(node.shards[0].held().keys, 2);
    node.shards[0].release_all();
    assert_eq!(node.shards[0].held(), Held::default());
    let a = node.pool.consumption("a", now()).unwrap();
    assert_eq!(a.current_calls_per_day, 1);
    assert_eq!(a.throttling_calls_per_window, 1);
}

#[test]
fn stranded_capacity_is_reclaimed_so_demand_gets_the_whole_quota() {
    let keys = one(BIG, 100_000, BIG);
    let k = key(&keys, "k");
    let mut node = Node::new(2, &keys);
    node.admit(0, k, now()).unwrap(); // core 0 keeps 389 units and goes quiet
    let busy = node.admit_n(1, k, now(), 200_000);
    assert_eq!(busy, 100_000 - 390);
    assert!(node.held().day * 100 < 100_000, "stranded below 1 %");
    node.shards[0].reclaim_idle(now() + 1_000, 1_000);
    let later = now() + 1_000 + REFUSAL_RECHECK_MS;
    assert_eq!(node.admit_n(1, k, later, 1_000), 389);
}

// ---- headers ----

fn state(refused: Option<QuotaExceeded>) -> QuotaState {
    let now = now();
    QuotaState {
        throttling: Allowance {
            limit: 100,
            remaining: 99,
        },
        daily: Allowance {
            limit: 500,
            remaining: if refused.is_some() { 0 } else { 42 },
        },
        monthly: Allowance {
            limit: 10_000,
            remaining: 9_000,
        },
        now_ms: now,
        day_end_ms: now + 3_600_000 - 500,
        month_end_ms: now + 30 * 86_400_000,
        refused,
    }
}

/// The longest header lines (every value at its widest, on a refusal) are written whole.
#[test]
fn the_longest_quota_headers_are_written_whole() {
    let widest = Allowance {
        limit: u64::MAX,
        remaining: u64::MAX,
    };
    let worst = QuotaState {
        throttling: widest,
        daily: widest,
        monthly: widest,
        now_ms: 0,
        day_end_ms: i64::MAX,
        month_end_ms: i64::MAX,
        refused: Some(QuotaExceeded::Monthly {
            retry_after_secs: u64::MAX,
        }),
    };
    let mut out = Vec::new();
    worst.write_headers(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Otoroshi-Daily-Calls-Remaining: 18446744073709551615\r\n\
         Otoroshi-Monthly-Calls-Remaining: 18446744073709551615\r\n\
         RateLimit-Limit: 18446744073709551615\r\n\
         RateLimit-Remaining: 0\r\n\
         RateLimit-Reset: 18446744073709551615\r\n\
         Retry-After: 18446744073709551615\r\n"
    );
}

#[test]
fn headers_of_an_admitted_call_are_exact() {
    let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
    state(None).write_headers(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\n\
         Otoroshi-Daily-Calls-Remaining: 42\r\n\
         Otoroshi-Monthly-Calls-Remaining: 9000\r\n\
         RateLimit-Limit: 500\r\n\
         RateLimit-Remaining: 42\r\n\
         RateLimit-Reset: 3600\r\n"
    );
}

#[test]
fn headers_of_a_429_carry_retry_after() {
    let mut out = Vec::new();
    state(Some(QuotaExceeded::Daily {
        retry_after_secs: 3_600,
    }))
    .write_headers(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Otoroshi-Daily-Calls-Remaining: 0\r\n\
         Otoroshi-Monthly-Calls-Remaining: 9000\r\n\
         RateLimit-Limit: 500\r\n\
         RateLimit-Remaining: 0\r\n\
         RateLimit-Reset: 3600\r\n\
         Retry-After: 3600\r\n"
    );
    let mut out = Vec::new();
    state(Some(QuotaExceeded::Throttled {
        retry_after_secs: 1,
    }))
    .write_headers(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(
        "RateLimit-Limit: 100\r\nRateLimit-Remaining: 0\r\nRateLimit-Reset: 1\r\nRetry-After: 1\r\n"
    ));
}

#[test]
fn headers_from_a_real_shard_count_down() {
    let keys = one(BIG, 3, 10_000);
    let k = key(&keys, "k");
    let mut node = Node::new(1, &keys);
    let mut out = Vec::new();
    node.admit(0, k, now()).unwrap().write_headers(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Otoroshi-Daily-Calls-Remaining: 2\r\n\
         Otoroshi-Monthly-Calls-Remaining: 9999\r\n\
         RateLimit-Limit: 3\r\n\
         RateLimit-Remaining: 2\r\n\
         RateLimit-Reset: 43200\r\n"
    );
}

/// Tried as a new user would: 8 calls on a 10,000,000 daily quota used to answer
/// `Otoroshi-Daily-Calls-Remaining: 9960934` (the other core's lease counted as calls). The
/// headers subtract the calls admitted, as the node knows them: other cores' within a tick.
#[test]
fn quota_headers_report_the_calls_admitted_not_the_leases() {
    let keys = one(BIG, 10_000_000, 300_000_000);
    let k = key(&keys, "k");
    let mut node = Node::new(2, &keys);
    for i in 0..8 {
        node.admit(i % 2, k, now()).unwrap();
    }
    // Before a tick, core 0 knows its own 4 calls (and what the pool had when it leased).
    let s = node.admit(0, k, now()).unwrap();
    assert_eq!(s.daily_remaining(), 10_000_000 - 5);
    // A tick: core 0 reports (5), then core 1 (4, and it reads back 9).
    for shard in &mut node.shards {
        shard.report_admitted();
    }
    let s = node.admit(1, k, now()).unwrap();
    assert_eq!(s.daily_remaining(), 10_000_000 - 10);
    // Core 0 read back before core 1 reported: it learns of core 1's calls at its next report.
    let s = node.admit(0, k, now()).unwrap();
    assert_eq!(s.daily_remaining(), 10_000_000 - 6);
    for shard in &mut node.shards {
        shard.report_admitted();
    }
    // It now knows 10 reported (its 6, core 1's 4; core 1's 5th is reported after it read).
    let s = node.admit(0, k, now()).unwrap();
    assert_eq!(s.daily_remaining(), 10_000_000 - 11);
    assert_eq!(s.monthly_remaining(), 300_000_000 - 11);
    assert_eq!(node.usage(now()).current_calls_per_day, 12);
    assert_eq!(node.usage(now()).remaining_calls_per_day, 10_000_000 - 12);
    // Other nodes' calls (the ledger's totals) count as well.
    let day = node.pool.calendar().day(now()).unwrap();
    let month = node.pool.calendar().month(now()).unwrap();
    node.pool.set_remote("k", day.id, 1_000, month.id, 1_000);
    node.admit(0, k, now()).unwrap();
    node.shards[0].report_admitted();
    let s = node.admit(0, k, now()).unwrap();
    assert_eq!(s.daily_remaining(), 10_000_000 - 14 - 1_000);
}

#[test]
fn writing_headers_does_not_allocate_given_the_capacity() {
    let worst = QuotaState {
        throttling: Allowance {
            limit: u64::MAX,
            remaining: u64::MAX,
        },
        daily: Allowance {
            limit: u64::MAX,
            remaining: u64::MAX,
        },
        monthly: Allowance {
            limit: u64::MAX,
            remaining: u64::MAX,
        },
        now_ms: 0,
        day_end_ms: i64::MAX,
        month_end_ms: i64::MAX,
        refused: Some(QuotaExceeded::Monthly {
            retry_after_secs: u64::MAX,
        }),
    };
    let mut out = Vec::with_capacity(MAX_HEADERS_LEN);
    let capacity = out.capacity();
    worst.write_headers(&mut out);
    assert_eq!(out.capacity(), capacity);
    assert!(out.len() <= MAX_HEADERS_LEN);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains(": 18446744073709551615\r\n")
    );
}

#[test]
fn tightest_is_the_fewest_remaining_and_ties_go_to_the_longest_window() {
    let mut s = state(None);
    s.daily.remaining = 9_000;
    s.throttling.remaining = 9_000;
    assert_eq!(
        s.tightest().kind,
        QuotaKind::Monthly,
        "tie: the month resets last"
    );
    s.throttling.remaining = 5;
    let t = s.tightest();
    assert_eq!(
        (t.kind, t.limit, t.remaining, t.reset_secs),
        (QuotaKind::Throttling, 100, 5, 1)
    );
    s.monthly.remaining = 0;
    let t = s.tightest();
    assert_eq!((t.kind, t.reset_secs), (QuotaKind::Monthly, 30 * 86_400));
}

// ---- consumption view, huge quotas, unknown keys, the flow ----

#[test]
fn consumption_uses_otoroshis_field_names() {
    let keys = one(10, 500, 10_000);
    let mut node = Node::new(1, &keys);
    assert_eq!(node.admit_n(0, key(&keys, "k"), now(), 3), 3);
    node.release_all();
    let json = serde_json::to_value(node.usage(now())).unwrap();
    assert_eq!(
        json,
        json!({
            "authorizedCallsPerWindow": 10, "throttlingCallsPerWindow": 3,
            "remainingCallsPerWindow": 7,
            "authorizedCallsPerDay": 500, "currentCallsPerDay": 3, "remainingCallsPerDay": 497,
            "authorizedCallsPerMonth": 10_000, "currentCallsPerMonth": 3,
            "remainingCallsPerMonth": 9_997,
        })
    );
    assert!(node.pool.consumption("nobody", now()).is_none());
}

#[test]
fn unlimited_quotas_are_enforced_as_the_counters_capacity() {
    let keys = one(UNLIMITED_QUOTA, UNLIMITED_QUOTA, UNLIMITED_QUOTA);
    let mut node = Node::new(2, &keys);
    let state = node.admit(0, key(&keys, "k"), now()).unwrap();
    assert_eq!(state.daily.limit, DAILY_CAPACITY);
    assert_eq!(state.daily.remaining, DAILY_CAPACITY - 1);
    assert_eq!(state.monthly.limit, MONTHLY_CAPACITY);
    assert_eq!(state.throttling.limit, THROTTLING_CAPACITY);
    assert_eq!(node.admit_n(0, key(&keys, "k"), now(), 100_000), 100_000);
    let u = node.usage(now());
    assert_eq!(u.authorized_calls_per_day, DAILY_CAPACITY);
    // Otoroshi's default is an ordinary number.
    let default: ApiKey =
        serde_json::from_value(json!({"clientId": "d", "clientSecret": "s"})).unwrap();
    let keys = KeyStore::build(&[default]).unwrap();
    let mut node = Node::new(1, &keys);
    let state = node.admit(0, key(&keys, "d"), now()).unwrap();
    assert_eq!(state.daily.limit, 10_000_000);
    assert_eq!(state.daily.remaining, 9_999_999);
}

#[test]
fn a_key_the_pool_does_not_know_is_admitted_without_counting() {
    let keys = one(1, 1, 1);
    let others = store(&[("stranger", 1, 1, 1)]);
    let mut node = Node::new(1, &keys);
    assert_eq!(node.admit_n(0, key(&others, "stranger"), now(), 5), 5);
    assert_eq!(node.admit_n(0, key(&keys, "k"), now(), 5), 1);
}

#[test]
fn zero_quotas_refuse_every_call() {
    let keys = store(&[("t", 0, 10, 10), ("d", 10, 0, 10)]);
    let mut node = Node::new(1, &keys);
    assert_eq!(
        node.admit(0, key(&keys, "t"), now()),
        Err(QuotaExceeded::Throttled {
            retry_after_secs: 1
        })
    );
    assert!(matches!(
        node.admit(0, key(&keys, "d"), now()),
        Err(QuotaExceeded::Daily { .. })
    ));
    let t = node.pool.consumption("t", now()).unwrap();
    assert_eq!(t.current_calls_per_day, 0);
}

#[test]
fn the_flow_quota_phase_runs_on_a_shard() {
    let route: Route = serde_json::from_value(json!({
        "id": "r1", "frontend": {"domains": ["api.local"]}, "backend_ref": "b",
        "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]
    }))
    .unwrap();
    let flow = Flow::build(&route).unwrap();
    let keys = store(&[("k1", BIG, 2, BIG)]);
    let pool = NodePool::new(Calendar::utc(), 1, &keys);
    let mut shard = QuotaShard::new();
    let headers: &[(&str, &[u8])] = &[
        ("Otoroshi-Client-Id", b"k1"),
        ("Otoroshi-Client-Secret", b"secret"),
    ];
    let req = RequestView {
        method: "GET",
        host: "api.local",
        path: "/",
        headers,
        client_cert: None,
    };
    let mut scratch = FlowScratch::new();
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let mut admission = ShardAdmission::new(&mut shard, &pool);
        let result = flow.on_request(&req, &keys, &mut admission, now(), &mut scratch);
        let state = *admission.state().unwrap();
        outcomes.push((
            result.is_ok(),
            state.daily_remaining(),
            state.retry_after_secs(),
        ));
        if let Err(r) = result {
            assert!(matches!(r, Rejection::Quota(QuotaExceeded::Daily { .. })));
        }
    }
    assert_eq!(
        outcomes,
        vec![
            (true, 1, None),
            (true, 0, None),
            (false, 0, Some(12 * 3_600))
        ]
    );
}

#[test]
fn header_numbers_print_like_display() {
    let mut values = vec![
        0,
        1,
        9,
        10,
        99,
        100,
        101,
        999,
        1_000,
        43_200,
        u64::MAX,
        u64::MAX / 7,
    ];
    values.extend((0..64).map(|shift| 1u64 << shift));
    values.extend((1..20).map(|e| 10u64.pow(e) - 1));
    for v in values {
        let mut s = state(None);
        s.daily.remaining = v;
        let mut out = Vec::new();
        s.write_headers(&mut out);
        let text = String::from_utf8(out).unwrap();
        let expected = format!("Otoroshi-Daily-Calls-Remaining: {v}\r\n");
        assert!(text.starts_with(&expected), "{v}: {text}");
    }
}

use std::collections::BTreeMap;

use gateway_model::event::{RejectReason, UsageBatch, UsageCounters, encode, partition_for};
use proptest::prelude::*;

use super::*;
use crate::apikey::{JwtError, KeyRejection};
use crate::flow::{QuotaExceeded, Rejection};
use crate::restriction;

const T0: i64 = 1_795_000_000_000;

fn ident<'a>(apikey: &'a str, route: &'a str, day: u32) -> UsageIdentity<'a> {
    UsageIdentity {
        apikey,
        api: Some("api-1"),
        route,
        consumer: None,
        subscription: None,
        day,
        month: day / 100,
    }
}

fn acc(partitions: u32) -> UsageAccumulator {
    UsageAccumulator::new(UsageConfig::new("gw-a", 7, 3, partitions), T0)
}

fn drain(acc: &mut UsageAccumulator, now: i64) -> Vec<UsageBatch> {
    let mut out = Vec::new();
    acc.flush_into(now, true, &mut out);
    out
}

#[test]
fn records_merge_per_identity_and_flush_one_batch_per_partition() {
    let mut a = acc(4);
    for _ in 0..3 {
        assert!(a.record(ident("k1", "r1", 20261122), Outcome::Admitted, 10, 100, 200));
    }
    a.record(
        ident("k1", "r1", 20261122),
        Outcome::Rejected(RejectReason::QuotaDaily),
        5,
        50,
        429,
    );
    a.record(ident("k2", "r1", 20261122), Outcome::Admitted, 1, 2, 502);
    a.record(ident("k1", "r2", 20261122), Outcome::Admitted, 1, 2, 204);
    assert_eq!(a.identities(), 3);
    assert_eq!(a.pending_entries(), 3);

    let batches = drain(&mut a, T0 + 100);
    let expected_partitions: std::collections::BTreeSet<u32> =
        ["k1", "k2"].iter().map(|k| partition_for(k, 4)).collect();
    let got: std::collections::BTreeSet<u32> = batches.iter().map(|b| b.partition).collect();
    assert_eq!(got, expected_partitions);
    for b in &batches {
        assert_eq!((b.node.as_str(), b.epoch, b.core), ("gw-a", 7, 3));
        assert_eq!(b.partitions, 4);
        assert_eq!(b.sequence, 0);
        assert_eq!((b.window_start_ms, b.window_end_ms), (T0, T0 + 100));
        encode(b).unwrap();
    }
    let k1r1 = batches
        .iter()
        .flat_map(|b| &b.entries)
        .find(|e| e.apikey == "k1" && e.route == "r1")
        .unwrap();
    assert_eq!(k1r1.counters.admitted, 3);
    assert_eq!(k1r1.counters.rejected.quota_daily, 1);
    assert_eq!(k1r1.counters.bytes_in, 35);
    assert_eq!(k1r1.counters.bytes_out, 350);
    assert_eq!(k1r1.counters.status.success, 3);
    assert_eq!(k1r1.counters.status.client_error, 1);
    assert_eq!(a.pending_entries(), 0);

    // The next batches continue the sequence, and windows follow on.
    a.record(ident("k2", "r1", 20261122), Outcome::Admitted, 1, 2, 200);
    let next = drain(&mut a, T0 + 250);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].sequence, 1);
    assert_eq!(
        (next[0].window_start_ms, next[0].window_end_ms),
        (T0 + 100, T0 + 250)
    );
}

#[test]
fn flush_is_due_after_the_interval_or_when_full() {
    let mut config = UsageConfig::new("gw", 1, 0, 1);
    config.max_pending = 3;
    let mut a = UsageAccumulator::new(config, T0);
    let mut out = Vec::new();
    assert!(
        !a.flush_into(T0 + 500, false, &mut out).ran,
        "nothing pending"
    );
    a.record(ident("k", "r1", 20261122), Outcome::Admitted, 0, 0, 200);
    assert!(a.flush_due(T0 + 500));
    a.flush_into(T0 + 500, false, &mut out);
    assert_eq!(out.len(), 1);

    a.record(ident("k", "r1", 20261122), Outcome::Admitted, 0, 0, 200);
    assert!(!a.flush_due(T0 + 599));
    assert!(!a.flush_into(T0 + 599, false, &mut out).ran);
    assert!(a.flush_due(T0 + 600));

    a.record(ident("k", "r2", 20261122), Outcome::Admitted, 0, 0, 200);
    assert!(!a.flush_due(T0 + 501));
    a.record(ident("k", "r3", 20261122), Outcome::Admitted, 0, 0, 200);
    assert!(a.flush_due(T0 + 501), "3 identities pending: full");
}

#[test]
fn a_refused_batch_stays_pending_and_keeps_its_sequence() {
    let mut a = acc(1);
    a.record(ident("k", "r", 20261122), Outcome::Admitted, 1, 1, 200);
    let report = a.flush(T0 + 100, false, Err);
    assert!(report.ran && report.blocked);
    assert_eq!(report.batches, 0);
    assert_eq!(a.pending_entries(), 1);
    assert_eq!(a.stats().refused, 1);

    // Backs off for an interval, merging meanwhile.
    a.record(ident("k", "r", 20261122), Outcome::Admitted, 1, 1, 200);
    assert!(!a.flush_due(T0 + 150));
    assert!(a.flush_due(T0 + 200));
    let mut out = Vec::new();
    a.flush_into(T0 + 200, false, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].sequence, 0, "the refused batch used up no sequence");
    assert_eq!(out[0].entries[0].counters.admitted, 2);
    assert_eq!(out[0].window_start_ms, T0);
}

#[test]
fn a_refusal_in_the_middle_keeps_the_rest_and_rotates() {
    let mut config = UsageConfig::new("gw", 1, 0, 8);
    config.max_batch_entries = 2;
    let mut a = UsageAccumulator::new(config, T0);
    for i in 0..40 {
        let key = format!("key-{i}");
        a.record(ident(&key, "r", 20261122), Outcome::Admitted, 0, 0, 200);
    }
    let mut all: Vec<UsageBatch> = Vec::new();
    let mut now = T0;
    // A sink that takes one batch per pass.
    for _ in 0..200 {
        now += 100;
        let mut room = 1;
        a.flush(now, false, |b| {
            if room == 0 {
                return Err(b);
            }
            room -= 1;
            all.push(b);
            Ok(())
        });
        if a.pending_entries() == 0 {
            break;
        }
    }
    assert_eq!(a.pending_entries(), 0);
    let calls: u64 = all
        .iter()
        .flat_map(|b| &b.entries)
        .map(|e| e.counters.admitted)
        .sum();
    assert_eq!(calls, 40);
    let mut seq: BTreeMap<u32, u64> = BTreeMap::new();
    for b in &all {
        let next = seq.entry(b.partition).or_insert(0);
        assert_eq!(b.sequence, *next);
        *next += 1;
        assert!(b.entries.len() <= 2);
    }
}

#[test]
fn invalid_identities_are_refused() {
    let mut a = acc(1);
    let mut bad = ident("k", "r", 20260230);
    assert!(!a.record(bad, Outcome::Admitted, 0, 0, 200));
    bad.day = 20261122;
    bad.month = 202612;
    assert!(!a.record(bad, Outcome::Admitted, 0, 0, 200));
    assert_eq!(a.stats().invalid, 2);
    assert_eq!(a.identities(), 0);
    assert!(drain(&mut a, T0 + 1).is_empty());
}

#[test]
fn idle_identities_are_forgotten_and_pending_ones_kept() {
    let mut config = UsageConfig::new("gw", 1, 0, 2);
    config.idle_evict_ms = 1_000;
    let mut a = UsageAccumulator::new(config, T0);
    for i in 0..100 {
        let route = format!("r{i}");
        a.record(ident("k", &route, 20261121), Outcome::Admitted, 0, 0, 200);
    }
    drain(&mut a, T0 + 100);
    assert_eq!(a.identities(), 100);
    a.record(ident("k", "today", 20261122), Outcome::Admitted, 0, 0, 200);
    a.record(ident("k2", "today", 20261122), Outcome::Admitted, 0, 0, 200);
    drain(&mut a, T0 + 1_200);
    assert_eq!(a.identities(), 2);
    assert_eq!(a.stats().evicted, 100);
    // Pending entries survive a sweep (and its renumbering).
    a.record(ident("k", "today", 20261122), Outcome::Admitted, 0, 0, 200);
    a.record(ident("k3", "later", 20261122), Outcome::Admitted, 0, 0, 200);
    let batches = drain(&mut a, T0 + 5_000);
    let calls: u64 = batches
        .iter()
        .flat_map(|b| &b.entries)
        .map(|e| e.counters.admitted)
        .sum();
    assert_eq!(calls, 2);
    // Forgotten identities come back as new ones.
    a.record(ident("k", "r1", 20261121), Outcome::Admitted, 0, 0, 200);
    assert_eq!(drain(&mut a, T0 + 5_100)[0].entries[0].counters.admitted, 1);
}

#[test]
fn many_identities_grow_the_index() {
    let mut a = acc(3);
    let keys: Vec<String> = (0..5_000).map(|i| format!("k{i}")).collect();
    for round in 0..2 {
        for k in &keys {
            a.record(ident(k, "r", 20261122), Outcome::Admitted, 1, 0, 200);
        }
        assert_eq!(a.identities(), 5_000, "round {round}");
    }
    let batches = drain(&mut a, T0 + 1);
    assert_eq!(
        batches.iter().map(|b| b.entries.len()).sum::<usize>(),
        5_000
    );
    assert!(
        batches
            .iter()
            .flat_map(|b| &b.entries)
            .all(|e| e.counters.admitted == 2)
    );
    for b in &batches {
        assert!(b.entries.len() <= DEFAULT_MAX_BATCH_ENTRIES);
        encode(b).unwrap();
    }
}

#[test]
fn rejections_map_to_the_wire_reasons() {
    use RejectReason as R;
    let cases = [
        (Rejection::Key(KeyRejection::NoKey), None),
        (Rejection::Key(KeyRejection::UnknownKey), None),
        (Rejection::Key(KeyRejection::BadSecret), Some(R::Auth)),
        (Rejection::Key(KeyRejection::Malformed), Some(R::Auth)),
        (Rejection::Key(KeyRejection::BadBearer), Some(R::Auth)),
        (
            Rejection::Key(KeyRejection::ClientIdOnlyNotAllowed),
            Some(R::Auth),
        ),
        (
            Rejection::Key(KeyRejection::Jwt(JwtError::Signature)),
            Some(R::Auth),
        ),
        (Rejection::Key(KeyRejection::Disabled), Some(R::Disabled)),
        (Rejection::Key(KeyRejection::Expired), Some(R::Disabled)),
        (
            Rejection::Key(KeyRejection::NotAuthorized),
            Some(R::NotAuthorized),
        ),
        (
            Rejection::Key(KeyRejection::ConstrainedOnly),
            Some(R::NotAuthorized),
        ),
        (
            Rejection::Key(KeyRejection::RoutingMismatch),
            Some(R::NotAuthorized),
        ),
        (Rejection::Key(KeyRejection::ReadOnly), Some(R::ReadOnly)),
        (
            Rejection::Restricted(restriction::Outcome::Forbidden),
            Some(R::Restriction),
        ),
        (
            Rejection::Restricted(restriction::Outcome::NotFound),
            Some(R::Restriction),
        ),
        (Rejection::ReadOnlyRoute, Some(R::ReadOnly)),
        (
            Rejection::Quota(QuotaExceeded::Throttled {
                retry_after_secs: 1,
            }),
            Some(R::Throttled),
        ),
        (
            Rejection::Quota(QuotaExceeded::Daily {
                retry_after_secs: 1,
            }),
            Some(R::QuotaDaily),
        ),
        (
            Rejection::Quota(QuotaExceeded::Monthly {
                retry_after_secs: 1,
            }),
            Some(R::QuotaMonthly),
        ),
    ];
    for (rejection, expected) in cases {
        assert_eq!(reject_reason(rejection), expected, "{rejection:?}");
        assert_eq!(
            Outcome::of_rejection(rejection),
            expected.map(Outcome::Rejected)
        );
    }
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    Record {
        key: usize,
        route: usize,
        api: bool,
        consumer: bool,
        day: usize,
        outcome: Option<usize>,
        bytes_in: u64,
        bytes_out: u64,
        status: u16,
    },
    Flush {
        advance_ms: i64,
        force: bool,
        /// How many batches the sink takes before refusing (None: all).
        room: Option<usize>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            0..12usize,
            0..3usize,
            any::<bool>(),
            any::<bool>(),
            0..3usize,
            proptest::option::of(0..RejectReason::ALL.len()),
            0..10_000u64,
            0..10_000u64,
            prop_oneof![Just(200u16), Just(302), Just(404), Just(429), Just(502), Just(0)],
        )
            .prop_map(
                |(key, route, api, consumer, day, outcome, bytes_in, bytes_out, status)| {
                    Op::Record {
                        key,
                        route,
                        api,
                        consumer,
                        day,
                        outcome,
                        bytes_in,
                        bytes_out,
                        status,
                    }
                }
            ),
        1 => (0..300i64, any::<bool>(), proptest::option::of(0..4usize))
            .prop_map(|(advance_ms, force, room)| Op::Flush { advance_ms, force, room }),
    ]
}

type Key = (
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    u32,
    u32,
);

fn key_of(e: &UsageEntry) -> Key {
    (
        e.apikey.clone(),
        e.api.clone(),
        e.route.clone(),
        e.consumer.clone(),
        e.subscription.clone(),
        e.day,
        e.month,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn flushed_batches_sum_to_the_recorded_totals(
        ops in proptest::collection::vec(op(), 1..400),
        partitions in 1..5u32,
        max_batch_entries in 1..6usize,
        max_pending in 1..20usize,
        idle_evict_ms in prop_oneof![Just(0i64), Just(250), Just(60_000)],
    ) {
        const DAYS: [u32; 3] = [20261130, 20261201, 20240229];
        let keys: Vec<String> = (0..12).map(|i| format!("key-{i}")).collect();
        let routes = ["r0", "r1", "r2"];
        let mut config = UsageConfig::new("gw-p", 42, 1, partitions);
        config.max_batch_entries = max_batch_entries;
        config.max_pending = max_pending;
        config.idle_evict_ms = idle_evict_ms;
        let mut a = UsageAccumulator::new(config, T0);
        let mut now = T0;
        let mut expected: BTreeMap<Key, UsageCounters> = BTreeMap::new();
        let mut sent: Vec<UsageBatch> = Vec::new();

        for op in ops {
            match op {
                Op::Record { key, route, api, consumer, day, outcome, bytes_in, bytes_out, status } => {
                    let identity = UsageIdentity {
                        apikey: &keys[key],
                        api: api.then_some("api"),
                        route: routes[route],
                        consumer: consumer.then_some("c1"),
                        subscription: None,
                        day: DAYS[day],
                        month: DAYS[day] / 100,
                    };
                    let outcome = match outcome {
                        None => Outcome::Admitted,
                        Some(r) => Outcome::Rejected(RejectReason::ALL[r]),
                    };
                    prop_assert!(a.record(identity, outcome, bytes_in, bytes_out, status));
                    let e = UsageEntry {
                        apikey: identity.apikey.to_owned(),
                        api: identity.api.map(str::to_owned),
                        route: identity.route.to_owned(),
                        consumer: identity.consumer.map(str::to_owned),
                        subscription: None,
                        day: identity.day,
                        month: identity.month,
                        counters: UsageCounters::default(),
                    };
                    let c = expected.entry(key_of(&e)).or_default();
                    match outcome {
                        Outcome::Admitted => c.admitted += 1,
                        Outcome::Rejected(r) => c.rejected.add(r, 1),
                    }
                    c.bytes_in += bytes_in;
                    c.bytes_out += bytes_out;
                    c.status.record(status);
                }
                Op::Flush { advance_ms, force, room } => {
                    now += advance_ms;
                    let mut room = room.unwrap_or(usize::MAX);
                    a.flush(now, force, |b| {
                        if room == 0 {
                            return Err(b);
                        }
                        room -= 1;
                        sent.push(b);
                        Ok(())
                    });
                }
            }
        }
        now += 1;
        let report = a.flush_into(now, true, &mut sent);
        prop_assert!(!report.blocked);
        prop_assert_eq!(a.pending_entries(), 0);

        let mut totals: BTreeMap<Key, UsageCounters> = BTreeMap::new();
        let mut sequences: BTreeMap<u32, u64> = BTreeMap::new();
        for b in &sent {
            prop_assert!(b.validate().is_ok(), "{:?}", b.validate());
            prop_assert_eq!(b.partitions, partitions);
            prop_assert!(!b.entries.is_empty());
            prop_assert!(b.entries.len() <= max_batch_entries);
            let next = sequences.entry(b.partition).or_insert(0);
            prop_assert_eq!(b.sequence, *next, "partition {}", b.partition);
            *next += 1;
            let mut in_batch = std::collections::BTreeSet::new();
            for e in &b.entries {
                prop_assert!(in_batch.insert(key_of(e)), "identity twice in one batch");
                prop_assert!(!e.counters.is_zero());
                totals.entry(key_of(e)).or_default().merge(&e.counters);
            }
        }
        prop_assert_eq!(totals, expected);
    }
}

fn entry_of(identity: UsageIdentity<'_>) -> UsageEntry {
    UsageEntry {
        apikey: identity.apikey.to_owned(),
        api: identity.api.map(str::to_owned),
        route: identity.route.to_owned(),
        consumer: identity.consumer.map(str::to_owned),
        subscription: identity.subscription.map(str::to_owned),
        day: identity.day,
        month: identity.month,
        counters: UsageCounters::default(),
    }
}

proptest! {
    /// The inline word-by-word comparison agrees with `==`, at every length and difference.
    #[test]
    fn inline_identity_comparison_agrees_with_eq(
        a in proptest::collection::vec("[ab]{0,20}", 5),
        b in proptest::collection::vec("[ab]{0,20}", 5),
        some in proptest::collection::vec(any::<bool>(), 6),
        same_days in any::<bool>(),
    ) {
        let x = UsageIdentity {
            apikey: &a[0],
            api: some[0].then_some(a[1].as_str()),
            route: &a[2],
            consumer: some[1].then_some(a[3].as_str()),
            subscription: some[2].then_some(a[4].as_str()),
            day: 20261122,
            month: 202611,
        };
        let y = UsageIdentity {
            apikey: &b[0],
            api: some[3].then_some(b[1].as_str()),
            route: &b[2],
            consumer: some[4].then_some(b[3].as_str()),
            subscription: some[5].then_some(b[4].as_str()),
            day: if same_days { 20261122 } else { 20261123 },
            month: 202611,
        };
        prop_assert_eq!(ident::is_identity(&entry_of(x), &y), x == y);
        prop_assert!(ident::is_identity(&entry_of(x), &x));
        prop_assert!(ident::is_identity(&entry_of(y), &y));
        if x == y {
            prop_assert_eq!(ident::hash_identity(&x), ident::hash_identity(&y));
        }
    }
}

#[test]
fn inline_comparison_sees_a_difference_at_any_byte_of_any_length() {
    for len in 0..40usize {
        let a: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let x = ident(&a, "r", 20261122);
        assert!(ident::is_identity(&entry_of(x), &x));
        for at in 0..len {
            let mut b = a.clone().into_bytes();
            b[at] = b'#';
            let b = String::from_utf8(b).unwrap();
            let y = ident(&b, "r", 20261122);
            assert!(!ident::is_identity(&entry_of(x), &y), "len {len} at {at}");
            assert!(!ident::is_identity(&entry_of(y), &x), "len {len} at {at}");
        }
        let longer = format!("{a}x");
        assert!(!ident::is_identity(
            &entry_of(x),
            &ident(&longer, "r", 20261122)
        ));
    }
}

/// A mirror that keeps what it was told, as the server's tally file does.
#[derive(Debug, Default)]
struct Recorder {
    open: BTreeMap<u32, (String, u32, u64, UsageCounters)>,
    closed: Vec<u32>,
    room: u32,
}

impl UsageMirror for Recorder {
    fn open(&mut self, record: u32, entry: &UsageEntry, partition: u32, first: u64) -> bool {
        if record >= self.room {
            return false;
        }
        self.open.insert(
            record,
            (
                entry.apikey.clone(),
                partition,
                first,
                UsageCounters::default(),
            ),
        );
        true
    }
    fn count(&mut self, record: u32, outcome: Option<Outcome>, i: u64, o: u64, status: u16) {
        let c = &mut self.open.get_mut(&record).unwrap().3;
        match outcome {
            Some(Outcome::Admitted) => c.admitted += 1,
            Some(Outcome::Rejected(r)) => c.rejected.add(r, 1),
            None => {}
        }
        c.bytes_in += i;
        c.bytes_out += o;
        if status != 0 {
            c.status.record(status);
        }
    }
    fn close(&mut self, record: u32) {
        self.open.remove(&record);
        self.closed.push(record);
    }
}

#[test]
fn admit_then_complete_counts_as_record_does_and_the_mirror_sees_every_call() {
    let mirror = Recorder {
        room: 2,
        ..Recorder::default()
    };
    let mut config = UsageConfig::new("gw-a", 7, 3, 4);
    config.idle_evict_ms = 1_000;
    let mut a = UsageAccumulator::with_mirror(config, T0, mirror);
    let mut b = acc(4);
    for i in 0..5u64 {
        let c = a.admit(ident("k1", "r1", 20261122)).unwrap();
        a.complete(c, ident("k1", "r1", 20261122), i, 10 * i, 200);
        b.record(
            ident("k1", "r1", 20261122),
            Outcome::Admitted,
            i,
            10 * i,
            200,
        );
    }
    a.record(ident("k2", "r1", 20261122), Outcome::Admitted, 1, 1, 500);
    // No room for a third identity: counted in memory only.
    a.record(ident("k3", "r1", 20261122), Outcome::Admitted, 1, 1, 200);
    assert_eq!(a.stats().unmirrored, 1);
    let mut got = Vec::new();
    a.flush_into(T0 + 100, true, &mut got);
    let k1 = |bs: &[UsageBatch]| {
        bs.iter()
            .flat_map(|b| &b.entries)
            .find(|e| e.apikey == "k1")
            .unwrap()
            .counters
    };
    assert_eq!(k1(&got), k1(&drain(&mut b, T0 + 100)));
    let mirrored = a.mirror().open.get(&0).unwrap();
    assert_eq!(mirrored.0, "k1");
    assert_eq!(mirrored.3, k1(&got));
    // Cumulative: a flush does not clear the mirror.
    let c = a.admit(ident("k1", "r1", 20261122)).unwrap();
    assert_eq!(a.mirror().open.get(&0).unwrap().3.admitted, 6);
    // Idle identities are forgotten, their records freed and reused; a call admitted before
    // the sweep completes on its identity.
    a.flush_into(T0 + 200, true, &mut Vec::new());
    a.flush_into(T0 + 5_000, true, &mut Vec::new());
    assert_eq!(a.mirror().closed.len(), 2);
    a.complete(c, ident("k1", "r1", 20261122), 7, 7, 200);
    let record = a.mirror().open.keys().copied().collect::<Vec<_>>();
    assert_eq!(record.len(), 1);
    let (key, _, first, counters) = a.mirror().open.get(&record[0]).unwrap();
    assert_eq!(
        (key.as_str(), counters.admitted, counters.bytes_in),
        ("k1", 0, 7)
    );
    assert!(
        *first >= 1,
        "a new record's batches start after the old ones"
    );
}

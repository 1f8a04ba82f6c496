use proptest::prelude::*;
use serde_json::json;

use super::*;

// ---------------------------------------------------------------- fixtures and strategies

fn counters(seed: u64) -> UsageCounters {
    let mut c = UsageCounters {
        admitted: 10 + seed,
        bytes_in: 1_000 + seed,
        bytes_out: 20_000 + seed,
        ..UsageCounters::default()
    };
    c.rejected.add(RejectReason::QuotaDaily, 2);
    c.rejected.add(RejectReason::Auth, seed);
    c.status.record(200);
    c.status.record(429);
    c
}

fn entry(apikey: &str, day: u32) -> UsageEntry {
    UsageEntry {
        apikey: apikey.to_owned(),
        api: Some("api-1".to_owned()),
        route: "route-1".to_owned(),
        consumer: None,
        subscription: Some("sub-9".to_owned()),
        day,
        month: day / 100,
        counters: counters(u64::from(day % 7)),
    }
}

/// A valid batch of `n` entries, all in one partition (partitions = 1).
fn sample_batch(n: usize) -> UsageBatch {
    UsageBatch {
        node: "node-a".to_owned(),
        epoch: 1_717_000_000_000,
        core: 3,
        partition: 0,
        partitions: 1,
        sequence: 42,
        window_start_ms: 1_717_000_000_000,
        window_end_ms: 1_717_000_000_100,
        entries: (0..n)
            .map(|i| entry(&format!("key-{i}"), 20_240_228 + (i % 2) as u32))
            .collect(),
    }
}

fn arb_day() -> impl Strategy<Value = u32> {
    (1970u32..=9999, 1u32..=12, 1u32..=31)
        .prop_map(|(y, m, d)| y * 10_000 + m * 100 + d)
        .prop_filter("a calendar date", |&day| is_calendar_day(day))
}

fn arb_counters() -> impl Strategy<Value = UsageCounters> {
    (
        any::<u64>(),
        prop::array::uniform9(any::<u64>()),
        any::<u64>(),
        any::<u64>(),
        prop::array::uniform5(any::<u64>()),
    )
        .prop_map(|(admitted, r, bytes_in, bytes_out, s)| {
            let mut rejected = Rejections::default();
            for (reason, n) in RejectReason::ALL.into_iter().zip(r) {
                rejected.add(reason, n);
            }
            UsageCounters {
                admitted,
                rejected,
                bytes_in,
                bytes_out,
                status: StatusClasses {
                    informational: s[0],
                    success: s[1],
                    redirection: s[2],
                    client_error: s[3],
                    server_error: s[4],
                },
            }
        })
}

fn arb_entry() -> impl Strategy<Value = UsageEntry> {
    (
        any::<String>(),
        any::<Option<String>>(),
        any::<String>(),
        any::<Option<String>>(),
        any::<Option<String>>(),
        arb_day(),
        arb_counters(),
    )
        .prop_map(
            |(apikey, api, route, consumer, subscription, day, counters)| UsageEntry {
                apikey,
                api,
                route,
                consumer,
                subscription,
                day,
                month: day / 100,
                counters,
            },
        )
}

/// Arbitrary valid batches: entries outside the batch's partition are dropped, so with
/// `partitions == 1` (half the cases) all 0..200 generated entries are kept.
fn arb_batch() -> impl Strategy<Value = UsageBatch> {
    (
        any::<String>(),
        any::<u64>(),
        any::<u16>(),
        prop_oneof![Just(1u32), 1u32..=8, Just(u32::MAX)],
        any::<u64>(),
        any::<i64>(),
        any::<u32>(),
        prop::collection::vec(arb_entry(), 0..200),
    )
        .prop_map(
            |(node, epoch, core, partitions, sequence, start, len, mut entries)| {
                let partition = entries
                    .first()
                    .map_or(0, |e| partition_for(&e.apikey, partitions));
                entries.retain(|e| partition_for(&e.apikey, partitions) == partition);
                UsageBatch {
                    node,
                    epoch,
                    core,
                    partition,
                    partitions,
                    sequence,
                    window_start_ms: start,
                    window_end_ms: start.saturating_add(i64::from(len)),
                    entries,
                }
            },
        )
}

fn arb_json_leaf() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ]
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    arb_json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_entity_event() -> impl Strategy<Value = EntityEvent> {
    (
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        any::<i64>(),
        any::<String>(),
        prop::sample::select(EntityAction::ALL.to_vec()),
        prop::sample::select(EntityKind::ALL.to_vec()),
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        1u64..,
        prop::collection::btree_map(any::<String>(), arb_json(), 0..8),
    )
        .prop_map(
            |(id, at, actor, action, kind, entity_id, version, fields)| EntityEvent {
                id,
                at,
                actor,
                action,
                kind,
                entity_id,
                version,
                entity: if action == EntityAction::Deleted {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::Object(fields.into_iter().collect())
                },
            },
        )
}

fn sample_event() -> EntityEvent {
    EntityEvent {
        id: "evt-1".to_owned(),
        at: 1_717_000_000_123,
        actor: "admin".to_owned(),
        action: EntityAction::QuotasReset,
        kind: EntityKind::ApiKey,
        entity_id: "k-123".to_owned(),
        version: 7,
        entity: json!({"clientId": "k-123", "dailyQuota": 1000}),
    }
}

/// A field path and a way to break that field.
type Breakage<T> = (&'static str, fn(&mut T));

fn decode_event_err(text: &str) -> EventError {
    EntityEvent::decode(text.as_bytes()).expect_err(text)
}

// ---------------------------------------------------------------- usage batches

proptest! {
    // Batches of up to 200 entries of arbitrary strings are slow in debug builds.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn usage_batch_round_trips(batch in arb_batch()) {
        let bytes = encode(&batch)?;
        prop_assert_eq!(bytes.first(), Some(&USAGE_BATCH_VERSION));
        prop_assert_eq!(&decode(&bytes)?, &batch);
        let mut decoder = UsageDecoder::new();
        let view = decoder.access(&bytes)?;
        prop_assert!(*view == batch, "archived view differs from the batch");
        prop_assert_eq!(view.producer(), batch.producer());
        for (archived, entry) in view.entries.iter().zip(&batch.entries) {
            prop_assert_eq!(archived.identity(), entry.identity());
            prop_assert_eq!(archived.counters(), entry.counters);
        }
    }

    #[test]
    fn usage_batch_json_round_trips(batch in arb_batch()) {
        let text = serde_json::to_string(&batch)?;
        prop_assert_eq!(serde_json::from_str::<UsageBatch>(&text)?, batch);
    }

}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn random_archives_behind_a_valid_frame_never_panic(
        archive in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        // Right version, right length: bytecheck itself must refuse the garbage.
        let mut bytes = vec![USAGE_BATCH_VERSION];
        bytes.extend_from_slice(&u32::try_from(archive.len())?.to_le_bytes());
        bytes.extend_from_slice(&archive);
        let _ = decode(&bytes);
        let _ = UsageDecoder::new().access(&bytes);
    }

    #[test]
    fn partition_is_always_below_the_count(key in any::<String>(), partitions in any::<u32>()) {
        let p = partition_for(&key, partitions);
        prop_assert!(p < partitions.max(1));
        prop_assert_eq!(p, partition_for(&key, partitions));
    }
}

/// Version 1 of a one-entry batch, byte for byte.
const GOLDEN_V1: &str = concat!(
    "01200100006b65792d776974682d612d6c6f6e672d6964000000000000920000",
    "00e8ffffff01000000617069ffffffffff72ffffffffffffff00000000000000",
    "000000000000000000000000000000000065d73401a2160300000000000b0000",
    "0000000000010000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000200000000000000000000",
    "00000000000000000000000000e903000000000000214e000000000000000000",
    "0000000000010000000000000000000000000000000100000000000000000000",
    "00000000006e31ffffffffffff07000000000000000200000000000000010000",
    "00000000000900000000000000e8030000000000004c0400000000000000ffff",
    "ff01000000",
);

#[test]
fn encoding_matches_the_golden_bytes_of_version_1() {
    // Wire format freeze: a change in rkyv's layout or in the frame breaks this test, and
    // decoders must keep reading these bytes forever.
    let batch = UsageBatch {
        node: "n1".to_owned(),
        epoch: 7,
        core: 2,
        partition: 0,
        partitions: 1,
        sequence: 9,
        window_start_ms: 1_000,
        window_end_ms: 1_100,
        entries: vec![UsageEntry {
            apikey: "key-with-a-long-id".to_owned(),
            api: Some("api".to_owned()),
            route: "r".to_owned(),
            consumer: None,
            subscription: None,
            day: 20_240_229,
            month: 202_402,
            counters: counters(1),
        }],
    };
    let bytes = encode(&batch).unwrap();
    assert_eq!(to_hex(&bytes), GOLDEN_V1);
    assert_eq!(decode(&from_hex(GOLDEN_V1)).unwrap(), batch);
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn encode_into_appends_and_leaves_the_prefix_alone() {
    let batch = sample_batch(5);
    let alone = encode(&batch).unwrap();
    let mut out = b"journal-header".to_vec();
    encode_into(&batch, &mut out).unwrap();
    assert_eq!(&out[..14], b"journal-header");
    assert_eq!(&out[14..], alone.as_slice());
    // Decoding from an odd offset works: the decoder realigns.
    assert_eq!(decode(&out[14..]).unwrap(), batch);

    out.truncate(14);
    let mut bad = batch.clone();
    bad.partition = 1;
    assert!(encode_into(&bad, &mut out).is_err());
    assert_eq!(
        out, b"journal-header",
        "a failed encode must not leave bytes behind"
    );
}

#[test]
fn decoder_is_reusable_across_batches_of_different_sizes() {
    let mut decoder = UsageDecoder::new();
    for n in [256, 0, 3, 256, 1] {
        let batch = sample_batch(n);
        let bytes = encode(&batch).unwrap();
        assert_eq!(decoder.decode(&bytes).unwrap(), batch);
        assert_eq!(decoder.access(&bytes).unwrap().entries.len(), n);
    }
    assert!(decoder.decode(&[]).is_err());
    let two = sample_batch(2);
    assert_eq!(decoder.decode(&encode(&two).unwrap()).unwrap(), two);
}

#[test]
fn empty_input_is_an_empty_error() {
    let err = decode(&[]).unwrap_err();
    assert_eq!(err.kind(), EventErrorKind::Empty);
    assert_eq!(err.kind().as_str(), "empty");
    assert!(err.to_string().contains("usage batch"), "{err}");
}

#[test]
fn every_other_version_byte_is_unknown() {
    let mut bytes = encode(&sample_batch(2)).unwrap();
    for version in (0..=u8::MAX).filter(|&v| v != USAGE_BATCH_VERSION) {
        bytes[0] = version;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err.kind(),
            EventErrorKind::UnknownVersion,
            "version {version}"
        );
        assert!(
            err.to_string().contains(&format!("version {version}")),
            "{err}"
        );
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = encode(&sample_batch(3)).unwrap();
    for len in 0..bytes.len() {
        let err = decode(&bytes[..len]).expect_err(&format!("prefix of {len} bytes decoded"));
        let expected = match len {
            0 => EventErrorKind::Empty,
            _ => EventErrorKind::Framing,
        };
        assert_eq!(err.kind(), expected, "prefix of {len} bytes: {err}");
    }
    // Trailing bytes are as wrong as missing ones.
    let mut padded = bytes.clone();
    padded.push(0);
    assert_eq!(decode(&padded).unwrap_err().kind(), EventErrorKind::Framing);
}

#[test]
fn truncated_archives_with_a_forged_length_never_panic() {
    // The frame is fixed up so that bytecheck and the invariants see every shortened archive.
    let bytes = encode(&sample_batch(3)).unwrap();
    let archive = &bytes[5..];
    let mut rejected = 0;
    for len in 0..archive.len() {
        let mut forged = vec![USAGE_BATCH_VERSION];
        forged.extend_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
        forged.extend_from_slice(&archive[..len]);
        if decode(&forged).is_err() {
            rejected += 1;
        }
    }
    // Nearly all are refused (misaligned root, pointers out of range, broken invariants).
    assert!(
        rejected * 10 >= archive.len() * 9,
        "{rejected}/{}",
        archive.len()
    );
}

#[test]
fn every_bit_flip_is_survived() {
    let bytes = encode(&sample_batch(3)).unwrap();
    let mut decoder = UsageDecoder::new();
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let result = decoder.decode(&flipped);
        if bit < 5 * 8 {
            // Version byte and length: always caught by the frame.
            assert!(result.is_err(), "flip of bit {bit} in the frame decoded");
        } else if let Ok(other) = result {
            // A flip in the archive may land on a counter (a different, valid batch) or on
            // padding (the same batch); either way what comes out is valid.
            other.validate().unwrap();
        }
    }
}

#[test]
fn invariants_are_enforced_on_encode_and_decode() {
    let cases: Vec<Breakage<UsageBatch>> = vec![
        ("partitions", |b| b.partitions = 0),
        ("partition", |b| b.partition = 1),
        ("window_end_ms", |b| b.window_end_ms = b.window_start_ms - 1),
        ("entries[1].day", |b| {
            b.entries[1].day = 20_230_229;
            b.entries[1].month = 202_302;
        }),
        ("entries[0].day", |b| b.entries[0].day = 19_691_231),
        ("entries[2].month", |b| b.entries[2].month = 202_403),
    ];
    for (path, break_it) in cases {
        let mut batch = sample_batch(3);
        break_it(&mut batch);
        let err = encode(&batch).unwrap_err();
        assert_eq!(err.kind(), EventErrorKind::Invalid, "{path}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("usage batch: {path}: ")),
            "{err}"
        );
    }
}

#[test]
fn entries_of_another_partition_are_refused_by_the_decoder_too() {
    // "a" is in partition 12 of 16 (see the hash vectors below); claim partition 3.
    let mut batch = sample_batch(0);
    batch.partitions = 16;
    batch.partition = 3;
    batch.entries.push(entry("a", 20_240_101));
    let err = batch.validate().unwrap_err();
    assert!(err.to_string().contains("entries[0].apikey"), "{err}");
    assert!(err.to_string().contains("partition 12 of 16"), "{err}");

    // Encode it as partition 12, then rewrite the archived partition field in place.
    batch.partition = 12;
    let mut bytes = encode(&batch).unwrap();
    assert!(UsageDecoder::new().access(&bytes).is_ok());
    let at = bytes
        .windows(8)
        .rposition(|w| w[..4] == 12u32.to_le_bytes() && w[4..] == 16u32.to_le_bytes())
        .unwrap();
    bytes[at] = 3;
    let err = decode(&bytes).unwrap_err();
    assert_eq!(err.kind(), EventErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("entries[0].apikey"), "{err}");
}

#[test]
fn merge_adds_counters_of_equal_identities_only() {
    let mut a = entry("k", 20_240_301);
    let b = entry("k", 20_240_301);
    assert!(a.merge(&b));
    assert_eq!(a.counters.admitted, 2 * b.counters.admitted);
    assert_eq!(a.counters.rejected.quota_daily, 4);
    assert_eq!(a.counters.status.success, 2);
    assert_eq!(a.counters.bytes_out, 2 * b.counters.bytes_out);

    for other in [
        entry("k2", 20_240_301),
        entry("k", 20_240_302),
        UsageEntry {
            consumer: Some("c".to_owned()),
            ..entry("k", 20_240_301)
        },
    ] {
        let before = a.clone();
        assert!(!a.merge(&other));
        assert_eq!(a, before);
    }

    let mut big = UsageCounters {
        admitted: u64::MAX - 1,
        ..UsageCounters::default()
    };
    big.merge(&UsageCounters {
        admitted: 5,
        ..UsageCounters::default()
    });
    assert_eq!(big.admitted, u64::MAX, "sums saturate instead of wrapping");
    assert!(UsageCounters::default().is_zero());
    assert!(!big.is_zero());
}

#[test]
fn rejections_have_one_counter_per_reason() {
    let mut r = Rejections::default();
    for (i, reason) in RejectReason::ALL.into_iter().enumerate() {
        r.add(reason, i as u64 + 1);
    }
    for (i, reason) in RejectReason::ALL.into_iter().enumerate() {
        assert_eq!(r.get(reason), i as u64 + 1, "{reason}");
        assert_eq!(
            serde_json::to_value(reason).unwrap(),
            json!(reason.as_str())
        );
    }
    assert_eq!(r.total(), (1..=9).sum::<u64>());
    let names: Vec<String> = serde_json::to_value(r)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut expected: Vec<String> = RejectReason::ALL
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    expected.sort();
    assert_eq!(names, expected, "JSON field names are the reason names");
}

#[test]
fn status_classes_count_100_to_599_only() {
    let mut s = StatusClasses::default();
    for status in [100, 199, 200, 204, 301, 404, 429, 502, 599] {
        assert!(s.record(status), "{status}");
    }
    for status in [0, 99, 600, 999, u16::MAX] {
        assert!(!s.record(status), "{status}");
    }
    assert_eq!(
        s,
        StatusClasses {
            informational: 2,
            success: 2,
            redirection: 1,
            client_error: 2,
            server_error: 2
        }
    );
    assert_eq!(s.total(), 9);
}

#[test]
fn partition_hash_is_fnv1a_64_for_known_vectors() {
    // Published FNV-1a 64 test vectors, then the partitions they imply. A changed hash fails
    // here: it would send keys to ledgers that do not own them.
    assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    assert_eq!(fnv1a_64("ключ-🔑".as_bytes()), 0x920b_141c_8f85_c2f2);
    let cases: [(&str, [u32; 8]); 6] = [
        ("", [0, 1, 2, 2, 5, 37, 37, 1_343_537_162]),
        ("a", [0, 0, 1, 5, 12, 12, 996, 895_863_001]),
        ("foobar", [0, 0, 0, 6, 8, 40, 968, 2_093_853_018]),
        ("k-123", [0, 1, 1, 1, 11, 59, 643, 2_235_878_293]),
        ("clientId-0001", [0, 1, 2, 4, 13, 61, 245, 498_480_830]),
        ("ключ-🔑", [0, 0, 2, 4, 2, 50, 762, 563_140_367]),
    ];
    for (key, expected) in cases {
        for (partitions, want) in [1, 2, 3, 7, 16, 64, 1000, u32::MAX]
            .into_iter()
            .zip(expected)
        {
            assert_eq!(
                partition_for(key, partitions),
                want,
                "{key:?} mod {partitions}"
            );
        }
        assert_eq!(partition_for(key, 0), 0, "0 partitions read as 1");
    }
}

#[test]
fn calendar_days_and_months() {
    for day in [19_700_101, 20_240_229, 20_000_229, 99_991_231, 20_230_430] {
        assert!(is_calendar_day(day), "{day}");
    }
    for day in [
        0, 19_691_231, 20_230_229, 21_000_229, 20_230_431, 20_231_301, 20_231_200, 2_024_131,
    ] {
        assert!(!is_calendar_day(day), "{day}");
    }
    assert!(is_calendar_month(202_412));
    assert!(!is_calendar_month(202_413));
    assert!(!is_calendar_month(202_400));
}

// ---------------------------------------------------------------- entity events

proptest! {
    #[test]
    fn entity_event_round_trips(event in arb_entity_event()) {
        let bytes = event.encode()?;
        prop_assert_eq!(EntityEvent::decode(&bytes)?, event.clone());
        // Pretty-printed JSON (a human's edit) reads the same.
        let pretty = serde_json::to_vec_pretty(&event)?;
        prop_assert_eq!(EntityEvent::decode(&pretty)?, event);
    }

    #[test]
    fn random_bytes_are_not_entity_events_or_totals(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        prop_assert!(EntityEvent::decode(&bytes).is_err());
        prop_assert!(TotalsRecord::decode(&bytes).is_err());
    }
}

#[test]
fn entity_event_json_shape() {
    let event = sample_event();
    let value: serde_json::Value = serde_json::from_slice(&event.encode().unwrap()).unwrap();
    assert_eq!(
        value,
        json!({
            "id": "evt-1",
            "at": 1_717_000_000_123_i64,
            "actor": "admin",
            "action": "quotas_reset",
            "kind": "apikey",
            "entity_id": "k-123",
            "version": 7,
            "entity": {"clientId": "k-123", "dailyQuota": 1000}
        })
    );
    assert_eq!(event.compaction_key(), "apikey/k-123");
    for kind in EntityKind::ALL {
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
    }
    for action in EntityAction::ALL {
        assert_eq!(
            serde_json::to_value(action).unwrap(),
            json!(action.as_str())
        );
    }
    let kinds: Vec<&str> = EntityKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "api",
            "route",
            "backend",
            "apikey",
            "consumer",
            "subscription",
            "certificate"
        ]
    );
}

#[test]
fn entity_event_errors_name_the_problem() {
    let good = serde_json::to_value(sample_event()).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut v = good.clone();
        v[key] = value;
        v.to_string()
    };

    let err = decode_event_err(&with("extra", json!(1)));
    assert_eq!(err.kind(), EventErrorKind::Json);
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");
    assert!(err.to_string().contains("line 1 column"), "{err}");

    let err = decode_event_err(&with("version", json!("7")));
    assert!(
        err.to_string()
            .contains("`version`: invalid type: string \"7\", expected u64"),
        "{err}"
    );

    let err = decode_event_err(&with("action", json!("archived")));
    assert!(
        err.to_string()
            .contains("`action`: unknown variant `archived`"),
        "{err}"
    );

    let err = decode_event_err(&with("kind", json!("ApiKey")));
    assert!(
        err.to_string().contains("`kind`: unknown variant `ApiKey`"),
        "{err}"
    );

    let err = decode_event_err(&with("at", json!("2024-01-01T00:00:00Z")));
    assert!(
        err.to_string().contains("`at`: invalid type: string"),
        "{err}"
    );

    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("entity_id");
    let err = decode_event_err(&missing.to_string());
    assert!(
        err.to_string().contains("missing field `entity_id`"),
        "{err}"
    );

    let text = good.to_string();
    let err = decode_event_err(&text[..text.len() - 10]);
    assert_eq!(err.kind(), EventErrorKind::Json);
    assert!(err.to_string().contains("EOF while parsing"), "{err}");

    let err = decode_event_err(&format!("{text} {{}}"));
    assert!(err.to_string().contains("trailing characters"), "{err}");

    let err = decode_event_err("");
    assert_eq!(err.kind(), EventErrorKind::Json);
    assert!(err.to_string().starts_with("entity event: "), "{err}");
}

#[test]
fn entity_event_invariants() {
    let cases: Vec<Breakage<EntityEvent>> = vec![
        ("id", |e| e.id.clear()),
        ("entity_id", |e| e.entity_id.clear()),
        ("version", |e| e.version = 0),
        ("entity", |e| e.action = EntityAction::Deleted),
        ("entity", |e| e.entity = serde_json::Value::Null),
        ("entity", |e| e.entity = json!([1, 2])),
    ];
    for (path, break_it) in cases {
        let mut event = sample_event();
        break_it(&mut event);
        let err = event.encode().unwrap_err();
        assert_eq!(err.kind(), EventErrorKind::Invalid);
        assert!(
            err.to_string()
                .starts_with(&format!("entity event: {path}: ")),
            "{err}"
        );
        let text = serde_json::to_vec(&event).unwrap();
        assert_eq!(
            EntityEvent::decode(&text).unwrap_err().kind(),
            EventErrorKind::Invalid
        );
    }
    let deleted = EntityEvent {
        action: EntityAction::Deleted,
        entity: serde_json::Value::Null,
        ..sample_event()
    };
    assert_eq!(
        EntityEvent::decode(&deleted.encode().unwrap()).unwrap(),
        deleted
    );
}

// ---------------------------------------------------------------- totals

fn sample_totals() -> TotalsRecord {
    TotalsRecord {
        apikey: "k-123".to_owned(),
        day: 20_240_315,
        month: 202_403,
        daily_calls: 30,
        monthly_calls: 500,
        updated_at: 1_710_500_000_000,
        node: Some("ledger-0".to_owned()),
        nodes: [
            (
                "gw-a".to_owned(),
                NodeCalls {
                    daily_calls: 10,
                    monthly_calls: 200,
                },
            ),
            (
                "gw-b".to_owned(),
                NodeCalls {
                    daily_calls: 20,
                    monthly_calls: 300,
                },
            ),
        ]
        .into(),
        quotas_reset_at: Some(1_710_499_000_000),
    }
}

#[test]
fn totals_json_shape_and_round_trip() {
    let minimal = TotalsRecord {
        node: None,
        nodes: Default::default(),
        quotas_reset_at: None,
        ..sample_totals()
    };
    let value: serde_json::Value = serde_json::from_slice(&minimal.encode().unwrap()).unwrap();
    assert_eq!(
        value,
        json!({
            "apikey": "k-123", "day": 20_240_315, "month": 202_403, "daily_calls": 30,
            "monthly_calls": 500, "updated_at": 1_710_500_000_000_i64
        })
    );
    assert_eq!(
        TotalsRecord::decode(&minimal.encode().unwrap()).unwrap(),
        minimal
    );
    let full = sample_totals();
    assert_eq!(TotalsRecord::decode(&full.encode().unwrap()).unwrap(), full);
}

#[test]
fn totals_other_nodes_consumption() {
    let t = sample_totals();
    assert_eq!(
        t.calls_excluding("gw-a"),
        NodeCalls {
            daily_calls: 20,
            monthly_calls: 300
        }
    );
    assert_eq!(
        t.calls_excluding("gw-z"),
        NodeCalls {
            daily_calls: 30,
            monthly_calls: 500
        }
    );
}

#[test]
fn totals_errors_name_the_field() {
    let err = TotalsRecord::decode(
        br#"{"apikey":"k","day":20240315,"month":202403,"daily_calls":1,"monthly_calls":1,"updated_at":0,"calls":3}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `calls`"), "{err}");

    let err = TotalsRecord::decode(br#"{"apikey":"k","day":"2024-03-15"}"#).unwrap_err();
    assert!(
        err.to_string().contains("`day`: invalid type: string"),
        "{err}"
    );

    let cases: Vec<Breakage<TotalsRecord>> = vec![
        ("day", |t| t.day = 20_240_230),
        ("month", |t| t.month = 202_404),
        ("daily_calls", |t| t.daily_calls = 501),
        ("nodes", |t| t.daily_calls = 31),
    ];
    for (path, break_it) in cases {
        let mut t = sample_totals();
        break_it(&mut t);
        let err = t.encode().unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("totals record: {path}: ")),
            "{err}"
        );
    }
}

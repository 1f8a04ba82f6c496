use gateway_model::event::{UsageBatch, UsageCounters, UsageEntry, encode};

use super::*;
use crate::calendar::{Calendar, parse_day};
use crate::query::{self, Granularity};
use crate::store::{Dimension, Store};

mod resets;
mod rows;

const HOUR: i64 = 3_600_000;

fn entry(apikey: &str, day: u32, admitted: u64) -> UsageEntry {
    UsageEntry {
        apikey: apikey.into(),
        api: Some("api-1".into()),
        route: "route-1".into(),
        consumer: Some("acme".into()),
        subscription: None,
        day,
        month: day / 100,
        counters: UsageCounters {
            admitted,
            bytes_in: 10 * admitted,
            ..UsageCounters::default()
        },
    }
}

fn batch(sequence: u64, start: i64, end: i64, entries: Vec<UsageEntry>) -> Vec<u8> {
    encode(&UsageBatch {
        node: "gw-a".into(),
        epoch: 1,
        core: 0,
        partition: 0,
        partitions: 1,
        sequence,
        window_start_ms: start,
        window_end_ms: end,
        entries,
    })
    .unwrap()
}

fn ms(day: &str, hour: i64) -> i64 {
    Calendar::utc().start_of(parse_day(day).unwrap()).unwrap() + hour * HOUR
}

fn commit(fold: &mut Fold, store: &Store) {
    let delta = fold.take_delta();
    store
        .commit(&delta, fold.producers(), fold.positions())
        .unwrap();
}

#[test]
fn sequences_dedupe_count_gaps_and_fill_holes() {
    let mut p = ProducerState::default();
    assert_eq!(p.classify(0), SequenceClass::InOrder);
    p.mark(0);
    assert_eq!(p.classify(0), SequenceClass::Duplicate);
    assert_eq!(p.classify(3), SequenceClass::Gap { missing: 2 });
    p.mark(3);
    assert_eq!(p.missing(), 2);
    assert_eq!(p.classify(3), SequenceClass::Duplicate);
    assert_eq!(p.classify(2), SequenceClass::Fill);
    p.mark(2);
    p.mark(1);
    assert_eq!((p.next, p.above.len(), p.missing()), (4, 0, 0));
}

#[test]
fn out_of_order_state_stays_bounded() {
    let mut p = ProducerState::default();
    let mut abandoned = 0;
    for seq in 10..(10 + MAX_OUT_OF_ORDER as u64) {
        abandoned += p.mark(seq);
    }
    // Exactly MAX_OUT_OF_ORDER above the hole: still waiting for it.
    assert_eq!(
        (abandoned, p.above.len(), p.missing()),
        (0, MAX_OUT_OF_ORDER, 10)
    );
    abandoned += p.mark(10 + MAX_OUT_OF_ORDER as u64);
    assert_eq!(abandoned, 10);
    assert!(p.above.is_empty());
    assert_eq!(p.next, 10 + MAX_OUT_OF_ORDER as u64 + 1);
}

#[test]
fn gaps_and_fills_are_counted() {
    let mut fold = Fold::new(Calendar::utc(), HOUR);
    let t = ms("2026-11-22", 10);
    for (offset, sequence) in [0, 3, 1, 2].into_iter().enumerate() {
        let b = batch(sequence, t, t + 100, vec![entry("k1", 20261122, 1)]);
        assert_eq!(fold.apply_usage("s", offset as u64, &b), Outcome::Applied);
    }
    let s = fold.delta().stats;
    assert_eq!(
        (
            s.entries,
            s.batches,
            s.gaps,
            s.missing_opened,
            s.filled,
            s.abandoned
        ),
        (4, 4, 1, 2, 2, 0)
    );
}

#[test]
fn a_window_counts_in_its_first_bucket_unless_an_entry_is_of_the_next_day() {
    let mut fold = Fold::new(Calendar::utc(), HOUR);
    const QUARTER: i64 = 15 * 60_000;
    // 10:14:59.950 to 10:15:00.050: one day, two 15-minute buckets.
    let t = ms("2026-11-22", 10) + QUARTER - 50;
    let b = batch(0, t, t + 100, vec![entry("k1", 20261122, 1)]);
    assert_eq!(fold.apply_usage("s", 0, &b), Outcome::Applied);
    // 23:59:59.950 to 00:00:00.050: each day's entry in its own day's bucket.
    let midnight = ms("2026-11-23", 0);
    let entries = vec![entry("k1", 20261122, 2), entry("k1", 20261123, 3)];
    let b = batch(1, midnight - 50, midnight + 50, entries);
    assert_eq!(fold.apply_usage("s", 1, &b), Outcome::Applied);
    let mut rows: Vec<(u32, i64)> = fold
        .delta()
        .rows
        .iter()
        .map(|(row, _)| (row.day, row.bucket_ms))
        .collect();
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            (20261122, ms("2026-11-22", 10)),
            (20261122, midnight - QUARTER),
            (20261123, midnight),
        ]
    );
}

#[test]
fn replays_change_nothing_and_positions_skip() {
    let store = Store::in_memory().unwrap();
    let mut fold = Fold::new(Calendar::utc(), HOUR);
    let t = ms("2026-11-22", 10);
    let b0 = batch(0, t, t + 100, vec![entry("k1", 20261122, 5)]);
    assert_eq!(fold.apply_usage("s", 0, &b0), Outcome::Applied);
    assert_eq!(fold.apply_usage("s", 0, &b0), Outcome::Replayed);
    assert_eq!(fold.apply_usage("s", 1, &b0), Outcome::Duplicate);
    commit(&mut fold, &store);
    let hash = store.state_hash().unwrap();
    assert_eq!(fold.apply_usage("s", 2, &b0), Outcome::Duplicate);
    commit(&mut fold, &store);
    assert_eq!(store.state_hash().unwrap(), hash);
    let stats = store.stats().unwrap();
    // Records read: offsets 0, 1 and 2 (the second read of offset 0 is a replayed record).
    assert_eq!(
        (
            stats.records,
            stats.batches,
            stats.duplicates,
            stats.replayed_records
        ),
        (3, 1, 2, 1)
    );
    let totals = store.totals("k1", 20261122, 0, None).unwrap().unwrap();
    assert_eq!((totals.daily_calls, totals.monthly_calls), (5, 5));
    assert_eq!(totals.nodes["gw-a"].daily_calls, 5);
}

#[test]
fn garbage_is_quarantined_whole() {
    let store = Store::in_memory().unwrap();
    let mut fold = Fold::new(Calendar::utc(), HOUR);
    let t = ms("2026-11-22", 10);
    let good = batch(0, t, t + 100, vec![entry("k1", 20261122, 5)]);
    // A checksum would pass (a journal CRC covers the bytes as written): the first byte of
    // the archive whose damage bytecheck refuses.
    let bad = (5..good.len())
        .map(|at| {
            let mut b = good.clone();
            b[at] = 0xff;
            b
        })
        .find(|b| {
            gateway_model::event::decode(b)
                .is_err_and(|e| e.kind().to_string() == "invalid_archive")
        })
        .unwrap();
    assert_eq!(fold.apply_usage("s", 0, &bad), Outcome::Quarantined);
    assert_eq!(
        fold.apply_usage("s", 1, b"\x01garbage"),
        Outcome::Quarantined
    );
    assert_eq!(fold.apply_entity("e", 0, b"{\"id\":"), Outcome::Quarantined);
    commit(&mut fold, &store);
    assert_eq!(store.quarantine().unwrap().len(), 3);
    assert_eq!(store.stats().unwrap().quarantined, 3);
    assert!(store.totals("k1", 20261122, 0, None).unwrap().is_none());
    assert_eq!(store.positions().unwrap()["s"].next, 2);
}

#[test]
fn late_usage_amends_within_grace_and_adjusts_after() {
    let store = Store::in_memory().unwrap();
    let mut fold = Fold::new(Calendar::utc(), HOUR);
    let day1 = ms("2026-11-22", 12);
    // On time.
    fold.apply_usage(
        "s",
        0,
        &batch(0, day1, day1 + 100, vec![entry("k1", 20261122, 1)]),
    );
    // The event clock moves to 00:30 the next day: within the 1 h grace of the 22nd.
    let next = ms("2026-11-23", 0) + HOUR / 2;
    fold.apply_usage(
        "s",
        1,
        &batch(1, next, next + 100, vec![entry("k1", 20261123, 1)]),
    );
    fold.apply_usage(
        "s",
        2,
        &batch(2, day1, day1 + 100, vec![entry("k1", 20261122, 2)]),
    );
    // Now 02:00 on the 23rd: the 22nd is closed, a batch for it is an adjustment.
    let later = ms("2026-11-23", 2);
    fold.apply_usage(
        "s",
        3,
        &batch(3, later, later + 100, vec![entry("k1", 20261123, 1)]),
    );
    fold.apply_usage(
        "s",
        4,
        &batch(4, day1, day1 + 100, vec![entry("k1", 20261122, 4)]),
    );
    commit(&mut fold, &store);
    let cal = Calendar::utc();
    let days = query::usage(
        &store,
        &cal,
        Dimension::ApiKey,
        "k1",
        Granularity::Day,
        None,
        None,
    )
    .unwrap();
    assert_eq!(days["2026-11-22"].regular.admitted, 3);
    assert_eq!(days["2026-11-22"].adjustments.admitted, 4);
    assert_eq!(days["2026-11-23"].regular.admitted, 2);
    let months = query::usage(
        &store,
        &cal,
        Dimension::ApiKey,
        "k1",
        Granularity::Month,
        None,
        None,
    )
    .unwrap();
    // The month is still open: the late batch amends it.
    assert_eq!(months["2026-11"].regular.admitted, 9);
    assert_eq!(months["2026-11"].adjustments.admitted, 0);
    assert_eq!(store.stats().unwrap().late_entries, 1);
    // Quotas count every admitted call, late or not.
    let totals = store.totals("k1", 20261122, 0, None).unwrap().unwrap();
    assert_eq!((totals.daily_calls, totals.monthly_calls), (7, 9));
}

#[test]
fn days_follow_the_configured_time_zone() {
    let store = Store::in_memory().unwrap();
    let cal = Calendar::new("Asia/Kathmandu").unwrap(); // UTC+05:45
    let mut fold = Fold::new(cal.clone(), HOUR);
    // 18:00 UTC on the 21st is 23:45 in Kathmandu; 18:15 UTC is 00:00 on the 22nd.
    let t = ms("2026-11-21", 18);
    fold.apply_usage(
        "s",
        0,
        &batch(0, t, t + 100, vec![entry("k1", 20261121, 1)]),
    );
    let t2 = t + 15 * 60_000;
    fold.apply_usage(
        "s",
        1,
        &batch(1, t2, t2 + 100, vec![entry("k1", 20261122, 2)]),
    );
    // A window across the local midnight: each entry goes to its own day's bucket.
    fold.apply_usage(
        "s",
        2,
        &batch(
            2,
            t2 - 50,
            t2 + 50,
            vec![entry("k1", 20261121, 4), entry("k1", 20261122, 8)],
        ),
    );
    commit(&mut fold, &store);
    let days = query::usage(
        &store,
        &cal,
        Dimension::ApiKey,
        "k1",
        Granularity::Day,
        None,
        None,
    )
    .unwrap();
    assert_eq!(days["2026-11-21"].regular.admitted, 5);
    assert_eq!(days["2026-11-22"].regular.admitted, 10);
    let by_consumer = query::usage(
        &store,
        &cal,
        Dimension::Consumer,
        "acme",
        Granularity::Day,
        None,
        None,
    )
    .unwrap();
    assert_eq!(by_consumer["2026-11-22"].regular.bytes_in, 100);
}

#[test]
fn usage_per_subscription_and_the_billing_export_by_subscription() {
    let store = Store::in_memory().unwrap();
    let cal = Calendar::utc();
    let mut fold = Fold::new(cal.clone(), HOUR);
    let sub = |apikey: &str, consumer: &str, subscription: Option<&str>, admitted: u64| {
        let mut e = entry(apikey, 20261121, admitted);
        e.consumer = Some(consumer.into());
        e.subscription = subscription.map(Into::into);
        e
    };
    let t = ms("2026-11-21", 10);
    fold.apply_usage(
        "s",
        0,
        &batch(
            0,
            t,
            t + 100,
            vec![
                sub("key-a", "gold", Some("acme"), 3),
                sub("key-b", "gold", Some("globex"), 5),
                sub("keyless:api-1:free", "free", None, 7),
            ],
        ),
    );
    commit(&mut fold, &store);
    let usage = |dim, id: &str| {
        query::usage(&store, &cal, dim, id, Granularity::Month, None, None).unwrap()["2026-11"]
            .regular
            .admitted
    };
    assert_eq!(usage(Dimension::Subscription, "acme"), 3);
    assert_eq!(usage(Dimension::Subscription, "globex"), 5);
    assert_eq!(usage(Dimension::Consumer, "gold"), 8);
    assert_eq!(usage(Dimension::Consumer, "free"), 7);
    let lines = query::export(
        &store,
        &cal,
        Granularity::Month,
        crate::calendar::parse_month("2026-11").unwrap(),
        query::ExportBy::Subscription,
    )
    .unwrap();
    let got: Vec<(String, u64)> = lines
        .iter()
        .map(|(line, u)| (line.clone(), u.regular.admitted))
        .collect();
    assert_eq!(
        got,
        vec![
            ("api-1/gold/acme".to_owned(), 3),
            ("api-1/gold/globex".to_owned(), 5)
        ]
    );
    let csv = query::csv_line(
        "2026-11",
        "UTC",
        "api-1/gold/acme",
        query::ExportBy::Subscription,
        &lines["api-1/gold/acme"],
    );
    assert!(
        csv.starts_with("2026-11,UTC,api-1,gold,acme,3,0,30,"),
        "{csv}"
    );
}

/// Every counter is set by its name (an unknown name is ignored) and added to the same counter.
#[test]
fn stats_are_set_by_name_and_added_counter_by_counter() {
    let mut stats = FoldStats::default();
    let mut more = FoldStats::default();
    for (i, (name, _)) in (1u64..).zip(FoldStats::default().fields()) {
        stats.set(name, i);
        more.set(name, 100 * i);
    }
    stats.set("a_newer_stores_counter", 7);
    let values = |s: &FoldStats| s.fields().map(|(_, v)| v);
    assert_eq!(values(&stats), std::array::from_fn(|i| i as u64 + 1));
    stats.add(&more);
    assert_eq!(
        values(&stats),
        std::array::from_fn(|i| 101 * (i as u64 + 1))
    );
}

/// A chunk that only moved a position is not empty (the move must be committed).
#[test]
fn a_chunk_with_only_a_position_move_is_not_empty() {
    let mut fold = Fold::new(Calendar::utc(), HOUR);
    assert!(fold.delta().is_empty());
    fold.apply_gone("j", 0, 5);
    assert!(fold.delta().producers.is_empty());
    assert!(!fold.delta().is_empty());
    fold.take_delta();
    assert!(fold.delta().is_empty());
}

/// Records lost to retention and damaged frames are counted, and the source continues after them.
#[test]
fn gone_records_and_corrupt_frames_are_counted_and_skipped() {
    let mut fold = Fold::new(Calendar::utc(), HOUR);
    assert_eq!(fold.position("j"), None);
    fold.apply_gone("j", 3, 10);
    let at = |next, high_water_ms| {
        Some(SourcePos {
            next,
            high_water_ms,
        })
    };
    assert_eq!(fold.position("j"), at(10, 0));
    fold.apply_corrupt("j", 10, 25, "bad checksum", b"raw-1");
    assert_eq!(fold.position("j"), at(25, 0));
    fold.apply_corrupt("j", 25, 30, "bad length", b"raw-2");
    let t = ms("2026-11-22", 10);
    let b = batch(0, t, t + 100, vec![entry("k1", 20261122, 1)]);
    assert_eq!(fold.apply_usage("j", 30, &b), Outcome::Applied);
    assert_eq!(fold.position("j"), at(31, t + 100));
    fold.apply_gone("j", 31, 40);
    assert_eq!(fold.position("j"), at(40, t + 100));
    assert_eq!(fold.position("other"), None);
    let s = fold.delta().stats;
    assert_eq!(
        (s.records, s.offset_gone, s.corrupt_skipped, s.quarantined),
        (3, 16, 2, 2)
    );
    let quarantined: Vec<_> = fold
        .delta()
        .quarantine
        .iter()
        .map(|q| {
            (
                q.source.as_str(),
                q.offset,
                q.kind.as_str(),
                q.error.as_str(),
                q.payload.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        quarantined,
        [
            ("j", 10, "checksum", "bad checksum", &b"raw-1"[..]),
            ("j", 25, "checksum", "bad length", &b"raw-2"[..]),
        ]
    );
}

/// The cache of periods by bucket is cleared when it would pass 100,000 buckets (bounds memory).
#[test]
fn the_period_cache_is_cleared_past_100_000_buckets() {
    let mut fold = Fold::new(Calendar::utc(), HOUR);
    let quarter = 15 * 60_000;
    let t = ms("2026-11-22", 0);
    for i in 0..100_001 {
        fold.state.period(t + i * quarter);
    }
    assert_eq!(fold.state.periods.len(), 100_001);
    // A hit adds nothing; the next new bucket starts the cache over.
    assert_eq!(fold.state.period(t).day, 20261122);
    assert_eq!(fold.state.periods.len(), 100_001);
    assert_eq!(fold.state.period(t - quarter).day, 20261121);
    assert_eq!(fold.state.periods.len(), 1);
}

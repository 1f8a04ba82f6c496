use proptest::prelude::*;

use super::*;

/// ms since the epoch of a UTC civil time, for readable tests.
fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8, ms: i32) -> i64 {
    jiff::civil::date(y, mo, d)
        .at(h, mi, s, ms * 1_000_000)
        .to_zoned(TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_millisecond()
}

#[test]
fn utc_day_bounds() {
    let c = Calendar::utc();
    let w = c.day(utc(2026, 11, 22, 13, 5, 0, 0)).unwrap();
    assert_eq!(w.start_ms, utc(2026, 11, 22, 0, 0, 0, 0));
    assert_eq!(w.end_ms, utc(2026, 11, 23, 0, 0, 0, 0));
    assert_eq!(w.id, 20261122);
    assert_eq!(w.end_ms - w.start_ms, 86_400_000);
}

#[test]
fn last_millisecond_of_the_day_is_in_it_and_midnight_is_not() {
    let c = Calendar::utc();
    let last = utc(2026, 11, 22, 23, 59, 59, 999);
    let w = c.day(last).unwrap();
    assert!(w.contains(last));
    assert!(!w.contains(last + 1));
    assert_eq!(c.day(last + 1).unwrap().id, 20261123);
    assert_eq!(w.remaining_ms(last), 1);
    assert_eq!(w.remaining_secs_ceil(last), 1);
    assert_eq!(w.remaining_secs_ceil(last + 5), 0);
}

#[test]
fn month_bounds_including_february_and_december() {
    let c = Calendar::utc();
    let feb = c.month(utc(2028, 2, 15, 12, 0, 0, 0)).unwrap();
    assert_eq!(feb.start_ms, utc(2028, 2, 1, 0, 0, 0, 0));
    assert_eq!(feb.end_ms, utc(2028, 3, 1, 0, 0, 0, 0));
    assert_eq!(feb.id, 202802);
    assert_eq!((feb.end_ms - feb.start_ms) / 86_400_000, 29, "leap year");
    let dec = c.month(utc(2026, 12, 31, 23, 59, 59, 999)).unwrap();
    assert_eq!(dec.end_ms, utc(2027, 1, 1, 0, 0, 0, 0));
    assert_eq!(dec.id, 202612);
}

#[test]
fn local_zone_day_is_offset() {
    let c = Calendar::new("Asia/Tokyo").unwrap(); // UTC+9, no DST
    // 2026-11-22 20:00 UTC is 2026-11-23 05:00 in Tokyo.
    let w = c.day(utc(2026, 11, 22, 20, 0, 0, 0)).unwrap();
    assert_eq!(w.id, 20261123);
    assert_eq!(w.start_ms, utc(2026, 11, 22, 15, 0, 0, 0));
    assert_eq!(w.end_ms, utc(2026, 11, 23, 15, 0, 0, 0));
}

#[test]
fn dst_spring_forward_day_lasts_23_hours() {
    let c = Calendar::new("Europe/Paris").unwrap();
    // 2026-03-29: clocks go from 02:00 to 03:00 CET→CEST.
    let w = c.day(utc(2026, 3, 29, 12, 0, 0, 0)).unwrap();
    assert_eq!(w.id, 20260329);
    assert_eq!(w.start_ms, utc(2026, 3, 28, 23, 0, 0, 0));
    assert_eq!(w.end_ms, utc(2026, 3, 29, 22, 0, 0, 0));
    assert_eq!(w.end_ms - w.start_ms, 23 * 3_600_000);
}

#[test]
fn dst_fall_back_day_lasts_25_hours() {
    let c = Calendar::new("America/New_York").unwrap();
    // 2026-11-01: clocks go from 02:00 EDT back to 01:00 EST.
    let w = c.day(utc(2026, 11, 1, 15, 0, 0, 0)).unwrap();
    assert_eq!(w.start_ms, utc(2026, 11, 1, 4, 0, 0, 0));
    assert_eq!(w.end_ms, utc(2026, 11, 2, 5, 0, 0, 0));
    assert_eq!(w.end_ms - w.start_ms, 25 * 3_600_000);
}

#[test]
fn day_whose_midnight_does_not_exist_starts_at_first_instant() {
    // America/Santiago moved clocks from 00:00 to 01:00 on 2022-09-11.
    let c = Calendar::new("America/Santiago").unwrap();
    let w = c.day(utc(2022, 9, 11, 18, 0, 0, 0)).unwrap();
    assert_eq!(w.id, 20220911);
    // 01:00 -03 = 04:00 UTC.
    assert_eq!(w.start_ms, utc(2022, 9, 11, 4, 0, 0, 0));
    assert_eq!(w.end_ms - w.start_ms, 23 * 3_600_000);
}

#[test]
fn month_in_zone_with_dst_inside() {
    let c = Calendar::new("Europe/Paris").unwrap();
    let w = c.month(utc(2026, 3, 10, 0, 0, 0, 0)).unwrap();
    assert_eq!(w.start_ms, utc(2026, 2, 28, 23, 0, 0, 0));
    assert_eq!(w.end_ms, utc(2026, 3, 31, 22, 0, 0, 0));
    assert_eq!(w.id, 202603);
}

#[test]
fn unknown_zone_is_an_error_naming_it() {
    let err = Calendar::new("Mars/Olympus").unwrap_err();
    assert_eq!(err, WindowError::UnknownZone("Mars/Olympus".into()));
    assert!(err.to_string().contains("Mars/Olympus"));
}

#[test]
fn out_of_range_instant_is_an_error() {
    let c = Calendar::utc();
    assert!(matches!(c.day(i64::MAX), Err(WindowError::OutOfRange(_))));
    assert!(matches!(c.month(i64::MIN), Err(WindowError::OutOfRange(_))));
}

#[test]
fn pre_epoch_instants_work() {
    let c = Calendar::utc();
    let w = c.day(-1).unwrap();
    assert_eq!(w.id, 19691231);
    assert_eq!(w.end_ms, 0);
}

proptest! {
    #[test]
    fn day_and_month_contain_now_and_tile(now in -2_000_000_000_000i64..4_000_000_000_000i64,
                                          zone in prop::sample::select(vec![
                                              "UTC", "Europe/Paris", "America/New_York",
                                              "Australia/Lord_Howe", "Asia/Kathmandu",
                                              "America/Santiago", "Pacific/Apia"])) {
        let c = Calendar::new(zone).unwrap();
        let d = c.day(now).unwrap();
        prop_assert!(d.contains(now));
        prop_assert!(d.end_ms - d.start_ms >= 22 * 3_600_000);
        prop_assert!(d.end_ms - d.start_ms <= 26 * 3_600_000);
        // Consecutive days tile time: the next day starts where this one ends.
        let next = c.day(d.end_ms).unwrap();
        prop_assert_eq!(next.start_ms, d.end_ms);
        prop_assert!(next.id > d.id);
        let prev = c.day(d.start_ms - 1).unwrap();
        prop_assert_eq!(prev.end_ms, d.start_ms);
        let m = c.month(now).unwrap();
        prop_assert!(m.contains(now));
        prop_assert!(m.start_ms <= d.start_ms && d.end_ms <= m.end_ms);
        prop_assert_eq!(m.id, d.id / 100);
        prop_assert_eq!(c.month(m.end_ms).unwrap().start_ms, m.end_ms);
    }
}

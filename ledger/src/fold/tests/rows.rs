//! The chunk's row table: one row per distinct key, whatever keys share a hash.

use super::*;
use crate::fold::rows::{MAX_ROWS, hash_bytes, mix};
use crate::store::{COUNTER_WORDS, Words};

fn key(bucket_ms: i64) -> RowRef<'static> {
    RowRef {
        node: "gw-a",
        apikey: "k1",
        api: Some("api-1"),
        route: "route-1",
        consumer: Some("acme"),
        subscription: None,
        day: 20261122,
        month: 202611,
        bucket_ms,
        level: ON_TIME,
    }
}

fn words(admitted: u64) -> Words {
    let mut words = [0; COUNTER_WORDS];
    words[0] = admitted;
    words
}

/// `(key, admitted)` of every row.
fn admitted(rows: &Rows) -> Vec<(RowRef<'_>, u64)> {
    rows.iter().map(|(row, words)| (row, words[0])).collect()
}

/// `RowRef::hash` of `key` before its last step, the bucket's (a copy of rows.rs's, seed
/// included: the table's chains hold rows of one full hash, so a test must build collisions).
fn hash_before_bucket(key: &RowRef<'_>) -> u64 {
    let opt = |hash, value: Option<&str>| match value {
        Some(s) => hash_bytes(mix(hash, 1), s.as_bytes()),
        None => mix(hash, 0),
    };
    let mut h = hash_bytes(0x243f_6a88_85a3_08d3, key.apikey.as_bytes());
    h = hash_bytes(h, key.route.as_bytes());
    h = hash_bytes(h, key.node.as_bytes());
    h = opt(h, key.api);
    h = opt(h, key.consumer);
    h = opt(h, key.subscription);
    mix(h, u64::from(key.day) << 8 | u64::from(key.level))
}

/// The same key adds to its row; a key that differs in any one field is a row of its own.
#[test]
fn a_row_is_merged_only_with_its_own_key() {
    let mut rows = Rows::default();
    assert_eq!((rows.len(), rows.is_empty()), (0, true));
    let base = key(1_000);
    rows.add(&base, &words(1));
    rows.add(&base, &words(2));
    assert_eq!((rows.len(), rows.is_empty()), (1, false));
    let others = [
        RowRef {
            bucket_ms: 2_000,
            ..base
        },
        RowRef {
            day: 20261123,
            ..base
        },
        RowRef {
            level: LATE_FOR_DAY,
            ..base
        },
        RowRef {
            month: 202612,
            ..base
        },
        RowRef {
            apikey: "k2",
            ..base
        },
        RowRef {
            route: "route-2",
            ..base
        },
        RowRef {
            node: "gw-b",
            ..base
        },
        RowRef { api: None, ..base },
        RowRef {
            consumer: Some("globex"),
            ..base
        },
        RowRef {
            subscription: Some("gold"),
            ..base
        },
    ];
    for (other, n) in others.iter().zip(10..) {
        rows.add(other, &words(n));
        rows.add(other, &words(n));
    }
    let mut expected = vec![(base, 3)];
    expected.extend(others.iter().zip(10..).map(|(other, n)| (*other, 2 * n)));
    assert_eq!(admitted(&rows), expected);
    assert_eq!((rows.len(), rows.is_empty()), (11, false));
}

/// Keys that share a hash stay apart: the month is not hashed, and a day and a bucket can be
/// chosen to give one hash.
#[test]
fn keys_that_share_a_hash_are_rows_of_their_own() {
    let mut rows = Rows::default();
    let base = key(1_000);
    let next_month = RowRef {
        month: 202612,
        ..base
    };
    let next_day = RowRef {
        day: 20261123,
        ..base
    };
    // mix(h, bucket) is (h ^ bucket) * K, rotated: the same h ^ bucket, the same hash.
    let bucket = base.bucket_ms as u64 ^ hash_before_bucket(&base) ^ hash_before_bucket(&next_day);
    let next_day = RowRef {
        bucket_ms: bucket as i64,
        ..next_day
    };
    // The copy above still is the table's hash: all three keys share one.
    assert_eq!(
        (next_month.hash(), next_day.hash()),
        (base.hash(), base.hash()),
        "rows.rs's hash changed: update hash_before_bucket"
    );
    for (key, n) in [(base, 1), (next_month, 2), (next_day, 4), (base, 8)] {
        rows.add(&key, &words(n));
    }
    assert_eq!(admitted(&rows), [(base, 9), (next_month, 2), (next_day, 4)]);
}

/// A chunk is full at exactly `MAX_ROWS` rows.
#[test]
fn the_row_table_is_full_at_max_rows() {
    let mut rows = Rows::default();
    assert!(!rows.is_full());
    let one = words(1);
    for bucket in 0..MAX_ROWS as i64 - 1 {
        rows.add(&key(bucket), &one);
    }
    assert_eq!(rows.len() + 1, MAX_ROWS);
    assert!(!rows.is_full());
    rows.add(&key(-1), &one);
    assert_eq!(rows.len(), MAX_ROWS);
    assert!(rows.is_full());
}

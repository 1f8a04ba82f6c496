//! Property: folding any permutation of a batch set, with duplicates, in any chunking, gives
//! the same state hash.

use gateway_model::event::{UsageBatch, UsageCounters, UsageEntry, encode, partition_for};
use ledger::calendar::Calendar;
use ledger::{Fold, Store};
use proptest::prelude::*;

const T0: i64 = 1_795_000_000_000; // 2026-11-19, early in the day: no lateness in one hour

fn batches() -> impl Strategy<Value = Vec<UsageBatch>> {
    // Up to 3 producers × up to 8 sequences, each batch up to 4 entries over 4 keys.
    let entry = (0usize..4, 0u64..50, 0u64..5, 0u64..1000).prop_map(|(k, adm, rej, bytes)| {
        let apikey = format!("key-{k}");
        UsageEntry {
            apikey,
            api: (k % 2 == 0).then(|| "api-a".to_owned()),
            route: format!("route-{}", k % 3),
            consumer: Some(format!("c-{}", k % 2)),
            subscription: (k == 1).then(|| "sub-1".to_owned()),
            day: 20261119,
            month: 202611,
            counters: UsageCounters {
                admitted: adm,
                bytes_in: bytes,
                bytes_out: bytes * 2,
                rejected: gateway_model::event::Rejections {
                    throttled: rej,
                    ..Default::default()
                },
                ..UsageCounters::default()
            },
        }
    });
    let producer = (
        0u16..3,
        1usize..8,
        prop::collection::vec(prop::collection::vec(entry, 1..4), 8),
    );
    prop::collection::vec(producer, 1..3).prop_map(|producers| {
        let mut out = Vec::new();
        for (core, count, entries) in producers {
            for (sequence, mut entries) in entries.into_iter().take(count).enumerate() {
                // One partition count of 1: every key is in partition 0.
                entries.retain(|e| partition_for(&e.apikey, 1) == 0);
                let start = T0 + (sequence as i64) * 60_000 + i64::from(core) * 7_000;
                out.push(UsageBatch {
                    node: "gw-a".into(),
                    epoch: 7,
                    core,
                    partition: 0,
                    partitions: 1,
                    sequence: sequence as u64,
                    window_start_ms: start,
                    window_end_ms: start + 100,
                    entries,
                });
            }
        }
        out.sort_by_key(|b| (b.core, b.sequence));
        out.dedup_by_key(|b| (b.core, b.sequence));
        out
    })
}

fn fold_all(records: &[Vec<u8>], chunk: usize) -> String {
    let store = Store::in_memory().unwrap();
    let mut fold = Fold::new(Calendar::utc(), 3_600_000);
    for (offset, bytes) in records.iter().enumerate() {
        fold.apply_usage("journal:usage", offset as u64, bytes);
        if (offset + 1) % chunk == 0 {
            let delta = fold.take_delta();
            store
                .commit(&delta, fold.producers(), fold.positions())
                .unwrap();
        }
    }
    let delta = fold.take_delta();
    store
        .commit(&delta, fold.producers(), fold.positions())
        .unwrap();
    store.state_hash().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_permutation_with_duplicates_folds_to_the_same_state(
        set in batches(),
        seed in any::<u64>(),
        dup_picks in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        chunk in 1usize..7,
    ) {
        let encoded: Vec<Vec<u8>> = set.iter().map(|b| encode(b).unwrap()).collect();
        let reference = fold_all(&encoded, usize::MAX);

        let mut shuffled = encoded.clone();
        for pick in &dup_picks {
            shuffled.push(pick.get(&encoded).clone());
        }
        // Fisher-Yates with a small deterministic PRNG from the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let j = (state % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(fold_all(&shuffled, chunk), reference);
    }
}

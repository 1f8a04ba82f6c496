use gateway_core::usage::{Outcome, UsageAccumulator, UsageConfig, UsageIdentity};
use gateway_model::event::{RejectReason, UsageBatch, decode, encode};

use super::*;
use crate::journal::{Journal, JournalOptions, JournalReader};

const T0: i64 = 1_795_000_000_000;
const PARTITIONS: u32 = 4;

struct Dirs {
    root: PathBuf,
}

impl Dirs {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!(
            "tollgate-tally-{name}-{}-{}",
            std::process::id(),
            T0
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Self { root }
    }
    fn tally(&self) -> PathBuf {
        dir(&self.root)
    }
    fn journal(&self) -> Journal {
        Journal::open(self.root.join("journal"), JournalOptions::default())
            .unwrap()
            .0
    }
    fn batches(&self) -> Vec<UsageBatch> {
        let mut r = JournalReader::open(self.root.join("journal"), 0).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(decode(rec.payload).unwrap());
        }
        out
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn ident<'a>(key: &'a str, route: &'static str) -> UsageIdentity<'a> {
    UsageIdentity {
        apikey: key,
        api: Some("api-1"),
        route,
        consumer: Some("consumer-1"),
        subscription: None,
        day: 20261122,
        month: 202611,
    }
}

fn run(d: &Dirs, epoch: u64, core: u16, journal_from: u64) -> UsageAccumulator<Tally> {
    let tally = Tally::create(
        &d.tally(),
        &TallyOwner {
            node: "gw-a",
            epoch,
            core,
            partitions: PARTITIONS,
            journal_from,
            now_ms: T0,
        },
    )
    .unwrap();
    UsageAccumulator::with_mirror(UsageConfig::new("gw-a", epoch, core, PARTITIONS), T0, tally)
}

/// Admitted calls per key over every batch of the journal.
fn admitted(batches: &[UsageBatch]) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for b in batches {
        for e in &b.entries {
            *out.entry(e.apikey.clone()).or_insert(0) += e.counters.admitted;
        }
    }
    out
}

fn append(journal: &mut Journal, batches: &[UsageBatch]) {
    for b in batches {
        journal.append(&encode(b).unwrap()).unwrap();
    }
}

#[test]
fn a_killed_run_s_unflushed_calls_are_journaled_once() {
    let d = Dirs::new("unflushed");
    let mut journal = d.journal();
    let mut acc = run(&d, 7, 0, journal.next_offset());
    for i in 0..10 {
        let c = acc.admit(ident("k1", "r1")).unwrap();
        acc.complete(c, ident("k1", "r1"), 100, 1000, 200);
        if i % 3 == 0 {
            acc.record(
                ident("k2", "r1"),
                Outcome::Rejected(RejectReason::QuotaDaily),
                10,
                20,
                429,
            );
        }
    }
    // The first 10 calls were flushed and journaled; 5 more are only in the tally.
    let mut flushed = Vec::new();
    acc.flush_into(T0 + 100, true, &mut flushed);
    append(&mut journal, &flushed);
    for _ in 0..5 {
        acc.admit(ident("k1", "r1")).unwrap();
    }
    acc.admit(ident("k3", "r2")).unwrap();
    // A batch handed to the sink but never written (killed with it in the channel).
    acc.flush_into(T0 + 200, true, &mut Vec::new());
    acc.admit(ident("k3", "r2")).unwrap();
    drop(acc); // the kill: the mapping goes, the page cache keeps the file

    let report = recover(&d.tally(), &mut journal).unwrap();
    assert_eq!(report.files, 1);
    assert_eq!(report.admitted, 7);
    let batches = d.batches();
    let per_key = admitted(&batches);
    assert_eq!(per_key.get("k1"), Some(&15));
    assert_eq!(per_key.get("k3"), Some(&2));
    // The rejected calls were journaled before the kill: nothing of them is repeated.
    let rejected: u64 = batches
        .iter()
        .flat_map(|b| &b.entries)
        .filter(|e| e.apikey == "k2")
        .map(|e| e.counters.rejected.quota_daily)
        .sum();
    assert_eq!(rejected, 4);
    // Bytes and statuses of the completed calls, and no more.
    let k1: Vec<_> = batches
        .iter()
        .flat_map(|b| &b.entries)
        .filter(|e| e.apikey == "k1")
        .collect();
    assert_eq!(k1.iter().map(|e| e.counters.bytes_out).sum::<u64>(), 10_000);
    assert_eq!(
        k1.iter().map(|e| e.counters.status.success).sum::<u64>(),
        10
    );
    // Recovery batches continue their producer's sequence.
    for b in &batches {
        assert_eq!((b.node.as_str(), b.epoch, b.core), ("gw-a", 7, 0));
    }
    let mut seen = std::collections::BTreeSet::new();
    for b in &batches {
        assert!(seen.insert((b.partition, b.sequence)), "sequence reused");
    }
    assert!(!d.tally().join("7-0.tally").exists());
    // Nothing left to recover.
    assert_eq!(
        recover(&d.tally(), &mut journal).unwrap(),
        Recovered::default()
    );
}

#[test]
fn a_recovery_killed_before_deleting_its_files_journals_nothing_twice() {
    let d = Dirs::new("twice");
    let mut journal = d.journal();
    let mut acc = run(&d, 9, 1, journal.next_offset());
    for _ in 0..42 {
        acc.admit(ident("k1", "r1")).unwrap();
    }
    drop(acc);
    let file = d.tally().join("9-1.tally");
    let kept = std::fs::read(&file).unwrap();
    let first = recover(&d.tally(), &mut journal).unwrap();
    assert_eq!(first.admitted, 42);
    // As if the first recovery had been killed after its journal write, before the delete.
    std::fs::write(&file, &kept).unwrap();
    let second = recover(&d.tally(), &mut journal).unwrap();
    assert_eq!((second.files, second.batches, second.admitted), (1, 0, 0));
    assert_eq!(admitted(&d.batches()).get("k1"), Some(&42));
}

#[test]
fn a_clean_run_recovers_nothing_and_every_core_has_its_file() {
    let d = Dirs::new("clean");
    let mut journal = d.journal();
    let from = journal.next_offset();
    let mut cores: Vec<_> = (0..3).map(|c| run(&d, 11, c, from)).collect();
    for (c, acc) in cores.iter_mut().enumerate() {
        for _ in 0..=c {
            acc.admit(ident("k1", "r1")).unwrap();
        }
        let mut out = Vec::new();
        acc.flush_into(T0 + 100, true, &mut out);
        append(&mut journal, &out);
    }
    drop(cores);
    let report = recover(&d.tally(), &mut journal).unwrap();
    assert_eq!((report.files, report.batches), (3, 0));
    assert_eq!(admitted(&d.batches()).get("k1"), Some(&6));
}

#[test]
fn a_forgotten_identity_seen_again_counts_only_its_new_batches() {
    let d = Dirs::new("evict");
    let mut journal = d.journal();
    let mut config = UsageConfig::new("gw-a", 13, 0, PARTITIONS);
    config.idle_evict_ms = 1_000;
    let tally = Tally::create(
        &d.tally(),
        &TallyOwner {
            node: "gw-a",
            epoch: 13,
            core: 0,
            partitions: PARTITIONS,
            journal_from: journal.next_offset(),
            now_ms: T0,
        },
    )
    .unwrap();
    let mut acc = UsageAccumulator::with_mirror(config, T0, tally);
    for _ in 0..5 {
        acc.admit(ident("k1", "r1")).unwrap();
    }
    let mut out = Vec::new();
    acc.flush_into(T0 + 100, true, &mut out);
    append(&mut journal, &out);
    // Idle long enough to be forgotten (the sweep runs in a flush), then seen again.
    acc.flush_into(T0 + 5_000, true, &mut Vec::new());
    assert_eq!(acc.identities(), 0);
    for _ in 0..3 {
        acc.admit(ident("k1", "r1")).unwrap();
    }
    drop(acc);
    let report = recover(&d.tally(), &mut journal).unwrap();
    assert_eq!(report.admitted, 3);
    assert_eq!(admitted(&d.batches()).get("k1"), Some(&8));
}

#[test]
fn a_file_killed_before_its_header_is_set_aside() {
    let d = Dirs::new("bad");
    std::fs::create_dir_all(d.tally()).unwrap();
    std::fs::write(d.tally().join("1-0.tally"), vec![0u8; 4096]).unwrap();
    let mut journal = d.journal();
    let report = recover(&d.tally(), &mut journal).unwrap();
    assert_eq!((report.files, report.bad), (0, 1));
    assert!(d.tally().join("1-0.bad").exists());
}

#[test]
fn identities_round_trip_through_a_record() {
    let e = UsageEntry {
        apikey: "key-é".into(),
        api: None,
        route: "r".into(),
        consumer: Some(String::new()),
        subscription: Some("s".into()),
        day: 20260101,
        month: 202601,
        counters: UsageCounters::default(),
    };
    let mut bytes = Vec::new();
    assert!(encode_identity(&e, &mut bytes));
    assert_eq!(decode_identity(&bytes), Some(e.clone()));
    let long = UsageEntry {
        apikey: "k".repeat(MAX_IDENT_BYTES),
        ..e
    };
    assert!(!encode_identity(&long, &mut Vec::new()));
}

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use gateway_model::event::{UsageBatch, UsageCounters, UsageDecoder, UsageEntry, partition_for};

use super::crc::crc32c;
use super::segment::segment_name;
use super::sink::{Sink, SinkOptions};
use super::*;

/// A directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "tollgate-journal-{name}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A payload that says which record it is, of a size that varies with it.
fn payload(i: u64) -> Vec<u8> {
    let len = (i * 37 % 300) as usize;
    let mut p = i.to_le_bytes().to_vec();
    p.extend((0..len).map(|j| (i as usize + j) as u8));
    p
}

fn options(segment_bytes: u64) -> JournalOptions {
    JournalOptions {
        segment_bytes,
        sync: SyncPolicy::Never,
        ..JournalOptions::default()
    }
}

/// Reads every record available now.
fn read_all(dir: &Path, from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut reader = JournalReader::open(dir, from).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        out.push((r.offset, r.payload.to_vec()));
    }
    out
}

fn only_segment(dir: &Path) -> PathBuf {
    dir.join(segment_name(0))
}

#[test]
fn crc32c_matches_the_published_check_values() {
    assert_eq!(crc32c(b""), 0);
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    // RFC 3720, B.4.
    assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    let ascending: Vec<u8> = (0..32).collect();
    assert_eq!(crc32c(&ascending), 0x46DD_794E);
    // Pieces give the same as the whole, at every split.
    let data: Vec<u8> = (0..100u8).collect();
    for split in 0..data.len() {
        let (a, b) = data.split_at(split);
        assert_eq!(
            crc::Crc32c::new().update(a).update(b).finish(),
            crc32c(&data)
        );
    }
}

#[test]
fn records_round_trip_across_segment_rolls_and_reopen() {
    let tmp = TempDir::new("roundtrip");
    let (mut j, recovery) = Journal::open(tmp.path(), options(4096)).unwrap();
    assert_eq!(recovery.records, 0);
    assert_eq!((j.first_offset(), j.next_offset()), (0, 0));
    for i in 0..1000 {
        assert_eq!(j.append(&payload(i)).unwrap(), i);
    }
    let batch: Vec<Vec<u8>> = (1000..2000).map(payload).collect();
    assert_eq!(j.append_batch(&batch).unwrap(), 1000..2000);
    assert_eq!(j.append_batch(Vec::<Vec<u8>>::new()).unwrap(), 2000..2000);
    assert!(j.segment_count() > 50, "{} segments", j.segment_count());
    j.sync().unwrap();

    let all = read_all(tmp.path(), 0);
    assert_eq!(all.len(), 2000);
    for (i, (offset, p)) in all.iter().enumerate() {
        assert_eq!(*offset, i as u64);
        assert_eq!(*p, payload(i as u64));
    }
    let tail = read_all(tmp.path(), 1234);
    assert_eq!(tail.first().map(|r| r.0), Some(1234));
    assert_eq!(tail.len(), 2000 - 1234);
    // A reader ahead of the writer waits for it.
    let mut ahead = JournalReader::open(tmp.path(), 2001).unwrap();
    assert!(ahead.next_record().unwrap().is_none());

    // Segments are named by their first offset and respect the size.
    for (base, path) in segment::list_segments(tmp.path()).unwrap() {
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
        let records = read_all(tmp.path(), base);
        assert_eq!(records[0].0, base);
    }

    drop(j);
    let (mut j, recovery) = Journal::open(tmp.path(), options(4096)).unwrap();
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(recovery.damage, None);
    assert_eq!((j.first_offset(), j.next_offset()), (0, 2000));
    assert_eq!(recovery.next_offset, 2000);
    assert_eq!(j.append(&payload(2000)).unwrap(), 2000);
    assert_eq!(j.append(&payload(2001)).unwrap(), 2001);
    let r = ahead.next_record().unwrap().unwrap();
    assert_eq!((r.offset, r.payload), (2001, &payload(2001)[..]));
    assert_eq!(read_all(tmp.path(), 0).len(), 2002);
}

#[test]
fn a_record_larger_than_a_segment_gets_its_own() {
    let tmp = TempDir::new("large");
    let (mut j, _) = Journal::open(tmp.path(), options(100)).unwrap();
    j.append(b"small").unwrap();
    j.append(&[7u8; 1000]).unwrap();
    j.append(b"after").unwrap();
    assert_eq!(j.segment_count(), 3);
    let all = read_all(tmp.path(), 0);
    assert_eq!(all[1].1, vec![7u8; 1000]);
    assert_eq!(all[2].1, b"after");
    assert!(matches!(
        j.append(&vec![0u8; MAX_RECORD_BYTES as usize + 1]),
        Err(JournalError::TooLarge { .. })
    ));
    assert_eq!(j.next_offset(), 3);
}

/// Writes records 0..5 into one segment and returns the segment's bytes and where record 4
/// starts.
fn five_records(dir: &Path) -> (Vec<u8>, usize) {
    let (mut j, _) = Journal::open(dir, options(DEFAULT_SEGMENT_BYTES)).unwrap();
    for i in 0..4 {
        j.append(&payload(i)).unwrap();
    }
    let last_start = j.total_bytes() as usize;
    j.append(&payload(4)).unwrap();
    drop(j);
    (std::fs::read(only_segment(dir)).unwrap(), last_start)
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_and_never_replayed() {
    let tmp = TempDir::new("torn");
    let (bytes, last_start) = five_records(tmp.path());
    for cut_at in last_start..bytes.len() {
        std::fs::write(only_segment(tmp.path()), &bytes[..cut_at]).unwrap();
        let (mut j, recovery) = Journal::open(tmp.path(), options(DEFAULT_SEGMENT_BYTES)).unwrap();
        let torn = (cut_at - last_start) as u64;
        assert_eq!(recovery.records, 4, "cut at {cut_at}");
        assert_eq!(recovery.truncated_bytes, torn, "cut at {cut_at}");
        let expected = match cut_at - last_start {
            0 => None,
            1..HEADER_BYTES => Some(Damage::ShortHeader),
            _ => Some(Damage::ShortPayload),
        };
        assert_eq!(recovery.damage, expected, "cut at {cut_at}");
        assert_eq!(j.next_offset(), 4);
        let before = read_all(tmp.path(), 0);
        assert_eq!(before.len(), 4);
        // New records go where the torn one was.
        assert_eq!(j.append(b"new").unwrap(), 4);
        drop(j);
        let after = read_all(tmp.path(), 0);
        assert_eq!(after.len(), 5);
        assert_eq!(after[4].1, b"new");
    }
}

#[test]
fn a_flipped_byte_or_a_zeroed_tail_is_detected_and_cut() {
    let tmp = TempDir::new("flip");
    let (bytes, last_start) = five_records(tmp.path());
    for at in last_start..bytes.len() {
        // Each byte gets one flip, the bit moving along (a reopen costs an fsync).
        let bit = 1u8 << (at % 8);
        let mut damaged = bytes.clone();
        damaged[at] ^= bit;
        std::fs::write(only_segment(tmp.path()), &damaged).unwrap();
        let (j, recovery) = Journal::open(tmp.path(), options(DEFAULT_SEGMENT_BYTES)).unwrap();
        assert_eq!(recovery.records, 4, "byte {at} bit {bit:#x}");
        assert_eq!(
            recovery.truncated_bytes,
            (bytes.len() - last_start) as u64,
            "byte {at} bit {bit:#x}"
        );
        assert!(recovery.damage.is_some());
        assert_eq!(j.next_offset(), 4);
    }
    // A tail of zeros (the file grew, its data never reached the disk) is not a run of empty
    // records.
    let mut zeroed = bytes.clone();
    zeroed.extend([0u8; 64]);
    std::fs::write(only_segment(tmp.path()), &zeroed).unwrap();
    let (j, recovery) = Journal::open(tmp.path(), options(DEFAULT_SEGMENT_BYTES)).unwrap();
    assert_eq!((recovery.records, recovery.truncated_bytes), (5, 64));
    assert_eq!(recovery.damage, Some(Damage::BadChecksum));
    assert_eq!(j.next_offset(), 5);
}

#[test]
fn corruption_inside_the_active_segment_is_kept_not_cut() {
    let tmp = TempDir::new("inside");
    let (bytes, _) = five_records(tmp.path());
    let frame = |at: usize| {
        HEADER_BYTES + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
    };
    let r2 = frame(0) + frame(frame(0));
    let mut damaged = bytes.clone();
    damaged[r2 + HEADER_BYTES] ^= 0x10;
    std::fs::write(only_segment(tmp.path()), &damaged).unwrap();
    let (mut j, recovery) = Journal::open(tmp.path(), options(DEFAULT_SEGMENT_BYTES)).unwrap();
    assert_eq!(
        (
            recovery.records,
            recovery.truncated_bytes,
            recovery.corrupt_kept,
            recovery.damage
        ),
        (5, 0, 1, None)
    );
    assert_eq!(j.append(b"new").unwrap(), 5);

    let mut reader = JournalReader::open(tmp.path(), 0).unwrap();
    assert_eq!(reader.next_record().unwrap().unwrap().offset, 0);
    assert_eq!(reader.next_record().unwrap().unwrap().offset, 1);
    assert!(matches!(
        reader.next_record(),
        Err(JournalError::Corrupt {
            offset: 2,
            damage: Damage::BadChecksum,
            ..
        })
    ));
    let skipped = reader.skip_corrupt().unwrap().unwrap();
    assert_eq!((skipped.offset, skipped.next_offset), (2, 3));
    let rest: Vec<u64> =
        std::iter::from_fn(|| reader.next_record().unwrap().map(|r| r.offset)).collect();
    assert_eq!(rest, vec![3, 4, 5]);

    // A bad record with nothing valid after it is the tail, and goes.
    drop(j);
    let mut damaged = bytes.clone();
    let r4 = bytes.len() - frame_len_of_last(&bytes);
    damaged[r4 + HEADER_BYTES] ^= 0x10;
    damaged.extend([0u8; 24]);
    std::fs::write(only_segment(tmp.path()), &damaged).unwrap();
    let (_, recovery) = Journal::open(tmp.path(), options(DEFAULT_SEGMENT_BYTES)).unwrap();
    assert_eq!(
        (
            recovery.records,
            recovery.truncated_bytes,
            recovery.corrupt_kept,
            recovery.damage
        ),
        (4, (damaged.len() - r4) as u64, 0, Some(Damage::BadChecksum))
    );
}

/// The frame length of the last of the five records of `five_records`.
fn frame_len_of_last(bytes: &[u8]) -> usize {
    let mut at = 0;
    let mut last = 0;
    while at < bytes.len() {
        last = HEADER_BYTES + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += last;
    }
    last
}

#[test]
fn a_corrupt_record_in_a_sealed_segment_is_reported_with_its_offset_and_can_be_skipped() {
    let tmp = TempDir::new("corrupt");
    let (mut j, _) = Journal::open(tmp.path(), options(2048)).unwrap();
    for i in 0..100 {
        j.append(&payload(i)).unwrap();
    }
    drop(j);
    let segments = segment::list_segments(tmp.path()).unwrap();
    assert!(segments.len() > 2);
    let first = &segments[0].1;
    let mut bytes = std::fs::read(first).unwrap();
    // Flip a payload byte of record 2.
    let len = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let r1 = HEADER_BYTES + len(0);
    let r2 = r1 + HEADER_BYTES + len(r1);
    let r2_len = len(r2);
    bytes[r2 + HEADER_BYTES + 3] ^= 0xff;
    std::fs::write(first, &bytes).unwrap();

    let mut reader = JournalReader::open(tmp.path(), 0).unwrap();
    assert_eq!(reader.next_record().unwrap().unwrap().offset, 0);
    assert_eq!(reader.next_record().unwrap().unwrap().offset, 1);
    for _ in 0..2 {
        match reader.next_record() {
            Err(JournalError::Corrupt {
                offset,
                position,
                damage,
                ..
            }) => {
                assert_eq!(
                    (offset, position, damage),
                    (2, r2 as u64, Damage::BadChecksum)
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let skipped = reader.skip_corrupt().unwrap().unwrap();
    assert_eq!((skipped.offset, skipped.next_offset), (2, 3));
    assert_eq!(skipped.raw.len(), HEADER_BYTES + r2_len);
    assert!(reader.skip_corrupt().unwrap().is_none());
    let mut rest = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        assert_eq!(r.payload, payload(r.offset));
        rest.push(r.offset);
    }
    assert_eq!(rest, (3..100).collect::<Vec<_>>());

    // A length that cannot be right: the rest of the segment is skipped.
    let mut bytes = std::fs::read(first).unwrap();
    bytes[r2 + 3] = 0xff;
    std::fs::write(first, &bytes).unwrap();
    let mut reader = JournalReader::open(tmp.path(), 0).unwrap();
    reader.next_record().unwrap();
    reader.next_record().unwrap();
    assert!(matches!(
        reader.next_record(),
        Err(JournalError::Corrupt {
            offset: 2,
            damage: Damage::Oversized,
            ..
        })
    ));
    let skipped = reader.skip_corrupt().unwrap().unwrap();
    assert_eq!(skipped.next_offset, segments[1].0);
    assert_eq!(skipped.raw.len(), bytes.len() - r2);
    assert_eq!(reader.next_record().unwrap().unwrap().offset, segments[1].0);
}

#[test]
fn a_sealed_segment_that_ends_inside_a_record_is_corrupt_not_torn() {
    let tmp = TempDir::new("sealed-torn");
    let (mut j, _) = Journal::open(tmp.path(), options(1024)).unwrap();
    for i in 0..30 {
        j.append(&payload(i)).unwrap();
    }
    drop(j);
    let segments = segment::list_segments(tmp.path()).unwrap();
    let first = &segments[0].1;
    let bytes = std::fs::read(first).unwrap();
    std::fs::write(first, &bytes[..bytes.len() - 3]).unwrap();
    let mut reader = JournalReader::open(tmp.path(), 0).unwrap();
    let mut seen = 0;
    let mut polls = 0;
    let err = loop {
        match reader.next_record() {
            Ok(Some(_)) => seen += 1,
            // The successor's name is not the one expected after the last whole record: the
            // reader finds it by listing the directory, every few empty polls.
            Ok(None) => {
                polls += 1;
                assert!(polls < 100, "waits at a sealed segment");
            }
            Err(err) => break err,
        }
    };
    assert!(
        matches!(err, JournalError::Corrupt { damage: Damage::ShortPayload, offset, .. } if offset == seen),
        "{err:?}"
    );
    let skipped = reader.skip_corrupt().unwrap().unwrap();
    assert_eq!(skipped.next_offset, segments[1].0);
    assert_eq!(reader.next_record().unwrap().unwrap().offset, segments[1].0);
}

#[test]
fn a_reader_tailing_a_writer_sees_every_record_once_in_order() {
    const RECORDS: u64 = 20_000;
    let tmp = TempDir::new("tail");
    let (mut j, _) = Journal::open(tmp.path(), options(16 << 10)).unwrap();
    let dir = tmp.path().to_owned();
    let reader = std::thread::spawn(move || {
        let mut reader = JournalReader::open(&dir, 0).unwrap();
        let mut next = 0;
        let mut empty_polls = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while next < RECORDS {
            assert!(Instant::now() < deadline, "stuck at {next}");
            match reader.next_record().unwrap() {
                Some(r) => {
                    assert_eq!(r.offset, next);
                    assert_eq!(r.payload, payload(next), "record {next}");
                    next += 1;
                }
                None => {
                    empty_polls += 1;
                    std::thread::yield_now();
                }
            }
        }
        assert!(reader.next_record().unwrap().is_none());
        empty_polls
    });
    let mut i = 0;
    while i < RECORDS {
        if i % 7 == 0 {
            let n = (i % 13 + 1).min(RECORDS - i);
            let batch: Vec<Vec<u8>> = (i..i + n).map(payload).collect();
            j.append_batch(&batch).unwrap();
            i += n;
        } else {
            j.append(&payload(i)).unwrap();
            i += 1;
        }
        if i % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let empty_polls = reader.join().unwrap();
    assert!(j.segment_count() > 100);
    eprintln!(
        "tail: {empty_polls} empty polls over {} segments",
        j.segment_count()
    );
}

#[test]
fn retention_deletes_old_sealed_segments_only() {
    let tmp = TempDir::new("retention");
    let mut opts = options(1024);
    opts.retention_bytes = Some(8 * 1024);
    let (mut j, _) = Journal::open(tmp.path(), opts.clone()).unwrap();
    for i in 0..2000 {
        j.append(&payload(i)).unwrap();
    }
    let first = j.first_offset();
    assert!(first > 0);
    assert!(j.total_bytes() <= 8 * 1024 + 1024, "{}", j.total_bytes());
    let on_disk = segment::list_segments(tmp.path()).unwrap();
    assert_eq!(on_disk.len(), j.segment_count());
    assert_eq!(on_disk[0].0, first);
    let all = read_all(tmp.path(), first);
    assert_eq!(all.len() as u64, 2000 - first);
    assert!(matches!(
        JournalReader::open(tmp.path(), 0),
        Err(JournalError::OffsetGone { requested: 0, available, .. }) if available == first
    ));
    let (mut retained, gone) = JournalReader::open_retained(tmp.path(), 0).unwrap();
    assert_eq!(gone, Some(first));
    assert_eq!(
        retained.next_record().unwrap().map(|r| r.offset),
        Some(first)
    );
    assert_eq!(
        JournalReader::open_retained(tmp.path(), first).unwrap().1,
        None
    );

    // By age: everything sealed goes, the active segment stays.
    j.options.retention_bytes = None;
    j.options.retention_age = Some(Duration::from_secs(3600));
    assert_eq!(j.enforce_retention(SystemTime::now()).unwrap(), 0);
    let later = SystemTime::now() + Duration::from_secs(7200);
    assert!(j.enforce_retention(later).unwrap() > 0);
    assert_eq!(j.segment_count(), 1);
    assert_eq!(j.enforce_retention(later).unwrap(), 0);
    let active_base = j.first_offset();
    assert_eq!(
        read_all(tmp.path(), active_base).len() as u64,
        2000 - active_base
    );

    // Offsets survive a reopen after retention.
    drop(j);
    let (j, recovery) = Journal::open(tmp.path(), opts).unwrap();
    assert_eq!((j.first_offset(), j.next_offset()), (active_base, 2000));
    assert_eq!(recovery.first_offset, active_base);
}

#[test]
fn a_second_writer_is_refused() {
    let tmp = TempDir::new("lock");
    let (j, _) = Journal::open(tmp.path(), JournalOptions::default()).unwrap();
    assert!(matches!(
        Journal::open(tmp.path(), JournalOptions::default()),
        Err(JournalError::Locked { .. })
    ));
    drop(j);
    Journal::open(tmp.path(), JournalOptions::default()).unwrap();
}

#[test]
fn sync_policies() {
    let tmp = TempDir::new("sync");
    let mut opts = options(DEFAULT_SEGMENT_BYTES);
    opts.sync = SyncPolicy::Every(Duration::from_millis(100));
    let (mut j, _) = Journal::open(tmp.path(), opts).unwrap();
    let t0 = Instant::now();
    assert!(
        !j.sync_if_due(t0 + Duration::from_secs(1)).unwrap(),
        "nothing to sync"
    );
    j.append(b"x").unwrap();
    assert!(
        !j.sync_if_due(j.last_sync + Duration::from_millis(50))
            .unwrap()
    );
    assert!(
        j.sync_if_due(j.last_sync + Duration::from_millis(100))
            .unwrap()
    );
    assert!(!j.sync_if_due(j.last_sync + Duration::from_secs(1)).unwrap());

    let tmp = TempDir::new("sync-always");
    let mut opts = options(DEFAULT_SEGMENT_BYTES);
    opts.sync = SyncPolicy::Always;
    let (mut j, _) = Journal::open(tmp.path(), opts).unwrap();
    j.append(b"x").unwrap();
    assert!(!j.unsynced);
}

fn batch(core: u16, sequence: u64, entries: usize) -> UsageBatch {
    let entries = (0..entries)
        .map(|i| UsageEntry {
            apikey: format!("key-{}", i % 7),
            api: Some("api".into()),
            route: format!("route-{i}"),
            consumer: None,
            subscription: None,
            day: 20261122,
            month: 202611,
            counters: UsageCounters {
                admitted: sequence + 1,
                ..UsageCounters::default()
            },
        })
        .collect();
    UsageBatch {
        node: "gw-test".into(),
        epoch: 1,
        core,
        partition: 0,
        partitions: 1,
        sequence,
        window_start_ms: 0,
        window_end_ms: 100,
        entries,
    }
}

#[test]
fn the_sink_writes_every_batch_handed_over_and_drains_at_shutdown() {
    const THREADS: u16 = 4;
    const PER_THREAD: u64 = 2_500;
    let tmp = TempDir::new("sink");
    let mut opts = options(256 << 10);
    opts.sync = SyncPolicy::Every(Duration::from_millis(20));
    let (j, _) = Journal::open(tmp.path(), opts).unwrap();
    let sink = Sink::spawn(
        j,
        SinkOptions {
            capacity: 16,
            ..SinkOptions::default()
        },
    )
    .unwrap();
    let senders: Vec<_> = (0..THREADS)
        .map(|core| {
            let handle = sink.handle();
            std::thread::spawn(move || {
                let mut refused = 0u64;
                for sequence in 0..PER_THREAD {
                    let mut b = batch(core, sequence, 1 + (sequence % 3) as usize);
                    loop {
                        match handle.try_send(b) {
                            Ok(()) => break,
                            Err(back) => {
                                refused += 1;
                                b = back;
                                std::thread::yield_now();
                            }
                        }
                    }
                }
                refused
            })
        })
        .collect();
    let refused: u64 = senders.into_iter().map(|t| t.join().unwrap()).sum();
    let (journal, counters) = sink.shutdown().unwrap();
    assert_eq!(counters.batches, u64::from(THREADS) * PER_THREAD);
    assert_eq!(counters.refused, refused);
    assert_eq!((counters.lost, counters.encode_errors), (0, 0));
    assert_eq!(journal.next_offset(), u64::from(THREADS) * PER_THREAD);

    let mut decoder = UsageDecoder::new();
    let mut reader = JournalReader::open(tmp.path(), 0).unwrap();
    let mut seen = BTreeSet::new();
    let mut last: Vec<Option<u64>> = vec![None; usize::from(THREADS)];
    while let Some(r) = reader.next_record().unwrap() {
        let b = decoder.decode(r.payload).unwrap();
        assert_eq!(b, batch(b.core, b.sequence, 1 + (b.sequence % 3) as usize));
        // One core's batches keep their order.
        let prev = &mut last[usize::from(b.core)];
        assert!(prev.is_none_or(|p| p < b.sequence));
        *prev = Some(b.sequence);
        assert!(
            seen.insert((b.core, b.sequence)),
            "twice: {:?}",
            (b.core, b.sequence)
        );
    }
    assert_eq!(seen.len() as u64, u64::from(THREADS) * PER_THREAD);
}

/// With `Every`, syncs happen on the background thread while the sink keeps running (no
/// shutdown needed), and an idle journal is not synced again and again.
#[test]
fn the_sink_syncs_in_the_background() {
    let tmp = TempDir::new("sink-sync");
    let mut opts = options(256 << 10);
    opts.sync = SyncPolicy::Every(Duration::from_millis(10));
    let (j, _) = Journal::open(tmp.path(), opts).unwrap();
    let sink = Sink::spawn(j, SinkOptions::default()).unwrap();
    let handle = sink.handle();
    handle.try_send(batch(0, 0, 1)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.counters().syncs == 0 {
        assert!(std::time::Instant::now() < deadline, "no background sync");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sink.counters().batches, 1);
    let idle = sink.counters().syncs;
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        sink.counters().syncs <= idle + 1,
        "idle journal synced again and again"
    );
    handle.try_send(batch(0, 1, 1)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.counters().syncs <= idle + 1 && sink.counters().batches < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no sync after new appends"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (journal, counters) = sink.shutdown().unwrap();
    assert_eq!((counters.batches, journal.next_offset()), (2, 2));
}

#[test]
fn accumulators_through_the_sink_lose_nothing() {
    use gateway_core::usage::{Outcome, UsageAccumulator, UsageConfig, UsageIdentity};

    const CORES: u16 = 3;
    const CALLS: u64 = 30_000;
    let tmp = TempDir::new("pipeline");
    let (j, _) = Journal::open(tmp.path(), options(64 << 10)).unwrap();
    let sink = Sink::spawn(
        j,
        SinkOptions {
            capacity: 4,
            ..SinkOptions::default()
        },
    )
    .unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let cores: Vec<_> = (0..CORES)
        .map(|core| {
            let handle = sink.handle();
            let keys = keys.clone();
            std::thread::spawn(move || {
                let mut now = 1_795_000_000_000i64;
                let mut acc = UsageAccumulator::new(UsageConfig::new("gw", 9, core, 4), now);
                for call in 0..CALLS {
                    let key = &keys[(call as usize * 7 + usize::from(core)) % keys.len()];
                    let identity = UsageIdentity {
                        apikey: key,
                        api: None,
                        route: "r",
                        consumer: None,
                        subscription: None,
                        day: 20261122,
                        month: 202611,
                    };
                    acc.record(identity, Outcome::Admitted, 1, 1, 200);
                    now += 1;
                    acc.flush(now, false, |b| handle.try_send(b));
                }
                while acc.pending_entries() > 0 {
                    now += 100;
                    acc.flush(now, true, |b| handle.try_send(b));
                    std::thread::yield_now();
                }
                acc.stats()
            })
        })
        .collect();
    let refused: u64 = cores.into_iter().map(|t| t.join().unwrap().refused).sum();
    let (_, counters) = sink.shutdown().unwrap();
    eprintln!("pipeline: {counters:?}, accumulator refusals {refused}");

    let mut decoder = UsageDecoder::new();
    let mut reader = JournalReader::open(tmp.path(), 0).unwrap();
    let mut admitted = 0;
    let mut sequences = std::collections::BTreeMap::new();
    while let Some(r) = reader.next_record().unwrap() {
        let b = decoder.decode(r.payload).unwrap();
        let next = sequences.entry(b.producer()).or_insert(0);
        assert_eq!(b.sequence, *next, "{}", b.producer());
        *next += 1;
        for e in &b.entries {
            assert_eq!(partition_for(&e.apikey, 4), b.partition);
            admitted += e.counters.admitted;
        }
    }
    assert_eq!(admitted, u64::from(CORES) * CALLS);
}

/// `cargo test -p gateway --release --lib journal::tests::append_throughput -- --ignored
/// --nocapture`: appends 256-entry usage batches for 5 s with fsync every 100 ms, then reads
/// them back.
#[test]
#[ignore = "a measurement, run by hand"]
fn append_throughput() {
    let tmp = TempDir::new("throughput");
    let (mut j, _) = Journal::open(tmp.path(), JournalOptions::default()).unwrap();
    let record = gateway_model::event::encode(&batch(0, 0, 256)).unwrap();
    let started = Instant::now();
    let mut records = 0u64;
    while started.elapsed() < Duration::from_secs(5) {
        j.append(&record).unwrap();
        records += 1;
        j.sync_if_due(Instant::now()).unwrap();
    }
    j.sync().unwrap();
    let secs = started.elapsed().as_secs_f64();
    let bytes = records * (record.len() + HEADER_BYTES) as u64;
    println!(
        "append_throughput: {records} records of {} bytes (256 entries) in {secs:.2} s: {:.0} records/s, {:.1} MB/s, {:.0} entries/s, {} segments",
        record.len(),
        records as f64 / secs,
        bytes as f64 / secs / 1e6,
        records as f64 * 256.0 / secs,
        j.segment_count()
    );

    let started = Instant::now();
    let mut reader = JournalReader::open(tmp.path(), 0).unwrap();
    let mut read = 0u64;
    while let Some(r) = reader.next_record().unwrap() {
        assert_eq!(r.payload.len(), record.len());
        read += 1;
    }
    assert_eq!(read, records);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "read_throughput: {read} records in {secs:.2} s: {:.0} records/s, {:.1} MB/s (page cache)",
        read as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

#[test]
fn a_reader_on_an_empty_journal_returns_none_at_once() {
    let dir = std::env::temp_dir().join(format!("tollgate-empty-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut journal, recovery) = Journal::open(&dir, JournalOptions::default()).unwrap();
    let mut reader = JournalReader::open(&dir, recovery.first_offset).unwrap();
    assert!(reader.next_record().unwrap().is_none());
    journal.append(b"first").unwrap();
    journal.sync().unwrap();
    assert_eq!(
        reader.next_record().unwrap().map(|r| r.payload.to_vec()),
        Some(b"first".to_vec())
    );
    assert!(reader.next_record().unwrap().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tollgate-spool-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn batch(i: u32) -> Vec<u8> {
    format!("batch-{i:05}")
        .repeat(1 + (i as usize % 3))
        .into_bytes()
}

fn open(dir: &Path, segment_bytes: u64) -> (Spool, SpoolRecovery) {
    Spool::open(dir, 1 << 20, segment_bytes).unwrap()
}

/// Hands out everything pending, acking each; returns (partition, bytes) in order.
fn drain(spool: &mut Spool) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(record) = spool.next_record().unwrap() {
        spool.ack(record.offset).unwrap();
        out.push((record.partition, record.bytes));
    }
    out
}

fn expected(range: std::ops::Range<u32>) -> Vec<(u32, Vec<u8>)> {
    range.map(|i| (i % 4, batch(i))).collect()
}

fn spool_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(SUFFIX))
        .collect();
    names.sort();
    names
}

#[test]
fn crc32c_matches_the_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
}

#[test]
fn records_come_back_in_order_and_confirmed_files_are_deleted() {
    let dir = temp_dir("order");
    let (mut spool, recovery) = open(&dir, 200);
    assert_eq!(recovery, SpoolRecovery::default());
    for i in 0..50 {
        spool.append(i % 4, &batch(i)).unwrap();
    }
    assert!(spool_files(&dir).len() > 3, "rolled into several files");
    assert_eq!(spool.pending(), 50);
    assert_eq!(drain(&mut spool), expected(0..50));
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    assert!(spool_files(&dir).is_empty());
    // Appending after a full drain starts a new file and keeps going.
    spool.append(1, b"again").unwrap();
    let record = spool.next_record().unwrap().unwrap();
    assert_eq!(
        (record.partition, record.bytes.as_slice()),
        (1, &b"again"[..])
    );
}

#[test]
fn order_survives_a_restart_and_confirmed_records_are_not_replayed() {
    let dir = temp_dir("restart");
    let (mut spool, _) = open(&dir, 300);
    for i in 0..30 {
        spool.append(i % 4, &batch(i)).unwrap();
    }
    // Confirm 0..10; hand out 10..14 without confirming (in flight at shutdown).
    for _ in 0..10 {
        let r = spool.next_record().unwrap().unwrap();
        spool.ack(r.offset).unwrap();
    }
    for _ in 0..4 {
        spool.next_record().unwrap().unwrap();
    }
    spool.close().unwrap();
    drop(spool);

    let (mut spool, recovery) = open(&dir, 300);
    assert_eq!(recovery.records, 20);
    assert_eq!(recovery.truncated_bytes, 0);
    for i in 30..35 {
        spool.append(i % 4, &batch(i)).unwrap();
    }
    assert_eq!(drain(&mut spool), expected(10..35));
    assert!(spool.is_empty());
}

#[test]
fn a_crash_without_close_replays_from_the_first_unconfirmed_file_at_worst() {
    let dir = temp_dir("crash");
    let (mut spool, _) = open(&dir, 1 << 20);
    for i in 0..10 {
        spool.append(i % 4, &batch(i)).unwrap();
    }
    for _ in 0..3 {
        let r = spool.next_record().unwrap().unwrap();
        spool.ack(r.offset).unwrap();
    }
    drop(spool); // no close: ACKED not written
    let (mut spool, recovery) = open(&dir, 1 << 20);
    // Duplicates (0..3) are allowed across a crash; nothing is lost and order holds.
    assert_eq!(recovery.records, 10);
    assert_eq!(drain(&mut spool), expected(0..10));
}

#[test]
fn a_torn_tail_is_truncated_and_never_replayed() {
    let dir = temp_dir("torn");
    let (mut spool, _) = open(&dir, 1 << 20);
    for i in 0..5 {
        spool.append(i % 4, &batch(i)).unwrap();
    }
    spool.close().unwrap();
    drop(spool);
    let file = dir.join(&spool_files(&dir)[0]);
    let good = fs::metadata(&file).unwrap().len();
    // Half a frame: a length promising more than was written.
    let mut f = OpenOptions::new().append(true).open(&file).unwrap();
    f.write_all(&100u32.to_le_bytes()).unwrap();
    f.write_all(&[1, 2, 3, 4, 5, 6]).unwrap();
    drop(f);

    let (mut spool, recovery) = open(&dir, 1 << 20);
    assert_eq!(recovery.records, 5);
    assert_eq!(recovery.truncated_bytes, 10);
    assert_eq!(fs::metadata(&file).unwrap().len(), good);
    spool.append(1, &batch(5)).unwrap();
    assert_eq!(drain(&mut spool), expected(0..6));
}

#[test]
fn a_corrupt_last_record_is_cut() {
    let dir = temp_dir("corrupt");
    let (mut spool, _) = open(&dir, 1 << 20);
    for i in 0..4 {
        spool.append(i % 4, &batch(i)).unwrap();
    }
    drop(spool);
    let file = dir.join(&spool_files(&dir)[0]);
    let mut data = fs::read(&file).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    fs::write(&file, &data).unwrap();
    let (mut spool, recovery) = open(&dir, 1 << 20);
    assert_eq!(recovery.records, 3);
    assert!(recovery.truncated_bytes > 0);
    assert_eq!(drain(&mut spool), expected(0..3));
}

#[test]
fn the_bound_refuses_without_writing() {
    let dir = temp_dir("full");
    let (mut spool, _) = Spool::open(&dir, 100, 1 << 20).unwrap();
    spool.append(0, &[7; 40]).unwrap();
    let err = spool.append(0, &[7; 60]).unwrap_err();
    assert!(
        matches!(
            err,
            SpoolError::Full {
                bytes: 52,
                max_bytes: 100,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(spool.bytes(), 52);
    spool.append(0, &[7; 30]).unwrap();
    assert_eq!(spool.pending(), 2);
}

#[test]
fn prepended_records_come_before_the_spool_even_after_restart() {
    let dir = temp_dir("prepend");
    let (mut spool, _) = open(&dir, 1 << 20);
    for i in 5..10 {
        spool.append(i % 4, &batch(i)).unwrap();
    }
    // 5 and 6 handed out and confirmed, 7 handed out and purged.
    for _ in 0..2 {
        let r = spool.next_record().unwrap().unwrap();
        spool.ack(r.offset).unwrap();
    }
    spool.next_record().unwrap().unwrap();
    spool.rewind();
    let older = expected(0..5);
    spool.prepend(&older).unwrap();
    spool.close().unwrap();
    drop(spool);
    let (mut spool, recovery) = open(&dir, 1 << 20);
    assert_eq!(recovery.records, 8);
    let mut want = expected(0..5);
    want.extend(expected(7..10));
    assert_eq!(drain(&mut spool), want);
    assert!(spool.is_empty());
}

#[test]
fn unread_hands_the_same_record_out_again() {
    let dir = temp_dir("unread");
    let (mut spool, _) = open(&dir, 1 << 20);
    for i in 0..3 {
        spool.append(i % 4, &batch(i)).unwrap();
    }
    let first = spool.next_record().unwrap().unwrap();
    let second = spool.next_record().unwrap().unwrap();
    spool.unread(second.offset);
    assert_eq!(spool.next_record().unwrap().unwrap(), second);
    spool.ack(first.offset).unwrap();
    spool.ack(second.offset).unwrap();
    assert_eq!(drain(&mut spool), expected(2..3));
}

#[test]
fn prepend_when_the_confirmed_part_of_the_head_file_equals_the_prepended_count() {
    let dir = temp_dir("prepend-collide");
    let (mut spool, _) = open(&dir, 1 << 20);
    for i in 3..8 {
        spool.append(i % 4, &batch(i)).unwrap();
    }
    for _ in 0..3 {
        let r = spool.next_record().unwrap().unwrap();
        spool.ack(r.offset).unwrap();
    }
    spool.prepend(&expected(0..3)).unwrap();
    spool.close().unwrap();
    drop(spool);
    let (mut spool, recovery) = open(&dir, 1 << 20);
    assert_eq!(recovery.records, 5);
    let mut want = expected(0..3);
    want.extend(expected(6..8));
    assert_eq!(drain(&mut spool), want);
    spool.append(0, b"x").unwrap();
    assert_eq!(drain(&mut spool), vec![(0, b"x".to_vec())]);
}

#[test]
fn rewind_hands_out_again_only_the_unconfirmed() {
    let dir = temp_dir("rewind");
    let (mut spool, _) = open(&dir, 1 << 20);
    for i in 0..6 {
        spool.append(i % 4, &batch(i)).unwrap();
    }
    let handed: Vec<_> = (0..4)
        .map(|_| spool.next_record().unwrap().unwrap())
        .collect();
    // 1 and 3 confirmed; 0 and 2 not (purged).
    spool.ack(handed[1].offset).unwrap();
    spool.ack(handed[3].offset).unwrap();
    spool.rewind();
    spool.prepend(&[(9, b"older".to_vec())]).unwrap();
    let mut want = vec![(9, b"older".to_vec())];
    want.extend([0, 2, 4, 5].map(|i| (i % 4, batch(i))));
    assert_eq!(drain(&mut spool), want);
    assert!(spool.is_empty());
}

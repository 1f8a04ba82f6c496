//! Crash test: kill -9 the `ledger` binary at random instants while a producer appends usage
//! batches to the journal with the real writer; after the last kill, a ledger catches up and
//! its totals must equal the admitted calls produced, exactly, and a rebuild from the log must
//! give the live store's state hash.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gateway_events::journal::{Journal, JournalOptions, Stream};
use gateway_model::event::encode;
use ledger::{Ledger, LedgerConfig};

const KILLS: usize = 8;

/// xorshift, seeded from the clock: each run kills at different instants (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_9_at_random_instants_never_loses_or_doubles_a_call() {
    let dir = temp_dir("crash");
    let config_path = dir.join("tollgate.toml");
    std::fs::write(
        &config_path,
        "[node]\nid = \"gw-a\"\ndata_dir = \"data\"\n[ledger]\naddr = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let data = dir.join("data");
    let seed = now_ms() as u64 | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);

    let keys: Vec<String> = (0..4).map(|n| key_in(0, 1, n)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = Arc::clone(&stop);
        let keys = keys.clone();
        let data = data.clone();
        std::thread::spawn(move || {
            let (mut journal, _) = Journal::open(
                Stream::Usage.dir(&data.join("journal")),
                JournalOptions::default(),
            )
            .unwrap();
            // By key and day: a run across midnight UTC produces on two days.
            let mut produced: BTreeMap<(String, u32), u64> = BTreeMap::new();
            let mut rng = Rng(seed.rotate_left(17) | 1);
            let mut sequences = [0u64; 2];
            let mut records = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let core = (rng.next() % 2) as usize;
                let mut entries = Vec::new();
                for k in &keys {
                    if rng.next() % 3 == 0 {
                        continue;
                    }
                    let admitted = rng.next() % 20;
                    let e = entry(k, admitted, rng.next() % 3);
                    *produced.entry((k.clone(), e.day)).or_default() += admitted;
                    entries.push(e);
                }
                let b = batch("gw-a", core as u16, 0, 1, sequences[core], entries);
                sequences[core] += 1;
                journal.append(&encode(&b).unwrap()).unwrap();
                records += 1;
                // Now and then the producer retries a batch it already sent (same bytes).
                if rng.next() % 10 == 0 {
                    journal.append(&encode(&b).unwrap()).unwrap();
                    records += 1;
                }
                journal.sync_if_due(Instant::now()).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            journal.sync().unwrap();
            (produced, records)
        })
    };

    let ledger_bin = env!("CARGO_BIN_EXE_ledger");
    for kill in 0..KILLS {
        let mut child = Command::new(ledger_bin)
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let alive = Duration::from_millis(150 + rng.next() % 900);
        std::thread::sleep(alive);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the ledger exited by itself before kill {kill}"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        eprintln!("kill {kill} after {alive:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let (produced, records) = producer.join().unwrap();
    assert!(records > 100, "the producer wrote only {records} records");

    // The killed runs made progress (commits happened between kills).
    let config = LedgerConfig::load(&config_path).unwrap();
    {
        let store = ledger::Store::open(&config.store_path).unwrap();
        let done = store
            .positions()
            .unwrap()
            .get("journal:usage")
            .map_or(0, |p| p.next);
        eprintln!("killed runs folded {done} of {records} records");
        assert!(done > 0);
    }

    // A last run catches up; its totals must be exact.
    let mut in_process = config.clone();
    in_process.addr = None;
    let ledger = Ledger::start(in_process).unwrap();
    let handle = ledger.handle();
    assert!(eventually(Duration::from_secs(60), || {
        handle
            .store()
            .positions()
            .unwrap()
            .get("journal:usage")
            .is_some_and(|p| p.next == records)
    }));
    for ((key, day), calls) in &produced {
        let totals = handle.store().totals(key, *day, 0, None).unwrap();
        let got = totals.as_ref().map_or(0, |t| t.daily_calls);
        assert_eq!(got, *calls, "daily calls of {key} on {day}: {totals:?}");
    }
    let stats = handle.stats();
    assert_eq!(stats.gaps, 0);
    assert_eq!(stats.quarantined, 0);
    let live = handle.state_hash().unwrap();
    drop(handle);
    ledger.shutdown();

    let output = Command::new(ledger_bin)
        .arg("--config")
        .arg(&config_path)
        .arg("rebuild")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["state_hash"], live.as_str(), "{report}");
    assert_eq!(report["identical"], true);
    std::fs::remove_dir_all(&dir).ok();
}

//! How long a ledger store takes to open after the process writing it was SIGKILLed
//! (docs/ledger.md, "Opening after a kill").
//!
//! ```text
//! cargo run --release -p ledger --example reopen_after_kill -- [--size-mib 1024] [--rounds 3]
//!     [--dir D] [--legacy] [--cold]
//! ```
//!
//! Builds (once, kept in `--dir`) a store holding about `--size-mib` MiB of rows: the ledger's tables plus a
//! `padding` table of 5 million-odd small rows, so that the file is as large as a busy ledger's
//! and its B-trees as deep. Then, `--rounds` times: starts a child process that opens the store
//! and commits in a loop, SIGKILLs it 0.3–1.3 s later (within a transaction or between two), and
//! times `Store::open` of the file it left. The child commits as the ledger does (`Store::commit`
//! of folded usage batches: quick repair), or, with `--legacy`, plain redb commits of padding rows
//! (the ledger before quick repair). `--cold` evicts the file from the page cache before each
//! open (`posix_fadvise(DONTNEED)` after a sync), as after a machine restart.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway_model::event::{UsageBatch, UsageCounters, UsageEntry, encode};
use redb::{Database, TableDefinition};

const PADDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("padding");
const ROW_BYTES: usize = 200;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let legacy = args.iter().any(|a| a == "--legacy");
    if let Some(path) = arg(&args, "--writer") {
        return writer(Path::new(&path), legacy);
    }
    let size_mib: u64 = arg(&args, "--size-mib").map_or(Ok(1024), |s| s.parse())?;
    let rounds: usize = arg(&args, "--rounds").map_or(Ok(3), |s| s.parse())?;
    let cold = args.iter().any(|a| a == "--cold");
    let dir = arg(&args, "--dir").map_or_else(
        || std::env::temp_dir().join("tollgate-reopen-after-kill"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)?;
    let store = dir.join("ledger.redb");
    build(&store, size_mib)?;
    let mut times = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--writer")
            .arg(&store)
            .args(legacy.then_some("--legacy"))
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
        )
        .lines();
        // Wait for its first commit.
        let first = lines.next().transpose()?;
        anyhow::ensure!(first.as_deref() == Some("writing"), "writer said {first:?}");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let wait = 300 + (u64::from(nanos) ^ (round as u64 * 7919)) % 1000;
        std::thread::sleep(Duration::from_millis(wait));
        child.kill()?; // SIGKILL
        child.wait()?;
        let commits: Vec<String> = lines.map_while(Result::ok).collect();
        if cold {
            evict(&store)?;
        }
        let started = Instant::now();
        let opened = ledger::Store::open(&store)?;
        let took = started.elapsed();
        drop(opened);
        times.push(took);
        println!(
            "round {round}: killed after {wait} ms ({}), reopened in {:.1} ms",
            commits.last().map_or("no commit report", String::as_str),
            took.as_secs_f64() * 1000.0
        );
    }
    times.sort();
    println!(
        "store of {} MiB (file), {} kills, writer {}, page cache {}: reopen min {:.1} ms, median {:.1} ms, max {:.1} ms",
        std::fs::metadata(&store)?.len() >> 20,
        times.len(),
        if legacy {
            "plain redb commits (before)"
        } else {
            "ledger Store::commit (quick repair)"
        },
        if cold { "cold" } else { "warm" },
        times.first().map_or(0.0, |t| t.as_secs_f64() * 1000.0),
        times
            .get(times.len() / 2)
            .map_or(0.0, |t| t.as_secs_f64() * 1000.0),
        times.last().map_or(0.0, |t| t.as_secs_f64() * 1000.0),
    );
    Ok(())
}

/// Fills the store to `size_mib` with padding rows (64 MiB per transaction), then lets the
/// ledger create its tables.
fn build(store: &Path, size_mib: u64) -> anyhow::Result<()> {
    let rows = (size_mib << 20) / (ROW_BYTES as u64 + 16);
    let built = store.with_extension("built");
    if std::fs::read_to_string(&built).ok() == Some(rows.to_string()) {
        return Ok(());
    }
    let _ = std::fs::remove_file(store);
    let started = Instant::now();
    drop(ledger::Store::open(store)?);
    let db = Database::create(store)?;
    let mut row = [0u8; ROW_BYTES];
    let mut n = 0u64;
    while n < rows {
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(PADDING)?;
            for _ in 0..((64 << 20) / (ROW_BYTES as u64 + 16)).min(rows - n) {
                n += 1;
                // Spread keys so that the tree is built by splits, as a ledger's is.
                let key = n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
                row[..8].copy_from_slice(&n.to_le_bytes());
                t.insert(key.as_slice(), row.as_slice())?;
            }
        }
        tx.commit()?;
    }
    drop(db);
    // The last commit of the build is the ledger's own (quick repair), and closed cleanly.
    drop(ledger::Store::open(store)?);
    std::fs::write(&built, rows.to_string())?;
    println!(
        "built {} MiB ({n} padding rows) in {:.1} s",
        std::fs::metadata(store)?.len() >> 20,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The child: commits until killed, saying `writing` after its first commit and its commit
/// count and mean commit time every 200 ms.
fn writer(store: &Path, legacy: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let mut commits = 0u64;
    let mut spent = Duration::ZERO;
    let mut last_report = Instant::now();
    let mut report =
        |commits: u64, spent: Duration, out: &mut std::io::Stdout| -> anyhow::Result<()> {
            if commits == 1 {
                writeln!(out, "writing")?;
            }
            if commits == 1 || last_report.elapsed() > Duration::from_millis(200) {
                writeln!(
                    out,
                    "{commits} commits, {:.2} ms each",
                    spent.as_secs_f64() * 1000.0 / commits as f64
                )?;
                out.flush()?;
                last_report = Instant::now();
            }
            Ok(())
        };
    if legacy {
        let db = Database::create(store)?;
        let mut n = u64::MAX / 2;
        let row = [7u8; ROW_BYTES];
        loop {
            let started = Instant::now();
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(PADDING)?;
                for _ in 0..2_000 {
                    n += 1;
                    t.insert(n.to_be_bytes().as_slice(), row.as_slice())?;
                }
            }
            tx.commit()?;
            spent += started.elapsed();
            commits += 1;
            report(commits, spent, &mut out)?;
        }
    }
    let store = ledger::Store::open(store)?;
    let mut fold = ledger::Fold::new(ledger::calendar::Calendar::utc(), 3_600_000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let day = ledger::calendar::Calendar::utc()
        .day_of(now)
        .map_or(20_261_204, |d| d);
    for sequence in 0.. {
        // One chunk as the ledger commits it: 64 batches of 256 entries (2,000 identities).
        for b in 0..64u64 {
            let entries = (0..256u64)
                .map(|i| {
                    let key = (sequence * 64 + b + i * 31) % 2_000;
                    UsageEntry {
                        apikey: format!("client-{key:05}"),
                        api: Some(format!("api-{}", key % 8)),
                        route: format!("route-{}", key % 16),
                        consumer: Some(format!("consumer-{}", key % 50)),
                        subscription: Some(format!("sub-{}", key % 100)),
                        day,
                        month: day / 100,
                        counters: UsageCounters {
                            admitted: 10,
                            bytes_in: 1_000,
                            bytes_out: 10_000,
                            ..UsageCounters::default()
                        },
                    }
                })
                .collect();
            let batch = UsageBatch {
                node: "reopen".into(),
                epoch: 1,
                core: 0,
                partition: 0,
                partitions: 1,
                sequence: sequence * 64 + b,
                window_start_ms: now,
                window_end_ms: now + 100,
                entries,
            };
            fold.apply_usage("journal:usage", sequence * 64 + b, &encode(&batch)?);
        }
        let delta = fold.take_delta();
        let started = Instant::now();
        store.commit(&delta, fold.producers(), fold.positions())?;
        spent += started.elapsed();
        commits += 1;
        report(commits, spent, &mut out)?;
    }
    Ok(())
}

/// Syncs the file and drops its pages from the page cache.
#[allow(unsafe_code)]
fn evict(store: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(store)?;
    f.sync_all()?;
    // SAFETY: posix_fadvise takes a descriptor this function keeps open and plain integers.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    anyhow::ensure!(rc == 0, "posix_fadvise: {rc}");
    Ok(())
}

//! End-to-end Kafka benchmark: usage batches produced at a fixed rate through a real broker
//! (tansu, scripts/kafka-broker.sh) are folded by an in-process ledger in Kafka mode;
//! every 500 ms it samples entries applied per second and the consumer lag (records produced
//! minus records applied, and the age of the newest applied batch), then prints a summary and
//! checks the ledger's totals equal what was produced, key by key.
//!
//! ```text
//! cargo run --release -p ledger --example kafka_e2e -- --rate 10000 --seconds 30 --entries-per-batch 64
//! cargo run --release -p ledger --example kafka_e2e -- --rate 0 --seconds 30   # saturation
//! ```
//!
//! Fresh topics (unique names) are created with the AdminClient; `--delete-topics` deletes
//! them at the end (off by default, like the other Kafka tests: tansu 0.6's SQLite storage is
//! the fragile part of this setup). Exit status 1 when the totals are not exact.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use gateway_model::event::{
    Rejections, StatusClasses, UsageBatch, UsageCounters, UsageEntry, encode, partition_for,
};
use ledger::{Ledger, LedgerConfig, SourceConfig};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[derive(Debug, Parser)]
#[command(about = "Ledger end to end through Kafka: entries/s and lag at a steady produce rate")]
struct Args {
    /// Usage entries produced per second; 0 produces as fast as the broker acknowledges (at
    /// most 2,000 batches in flight: saturation).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// How long to produce.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Entries per usage batch (distinct API keys of one partition).
    #[arg(long, default_value_t = 64)]
    entries_per_batch: usize,
    /// Partitions of the usage topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// API keys per partition.
    #[arg(long, default_value_t = 1000)]
    keys_per_partition: usize,
    /// Bootstrap brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Samples before this many seconds are left out of the steady-state figures (consumer
    /// group join).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Delete the topics after the run.
    #[arg(long)]
    delete_topics: bool,
}

fn now_ms() -> i64 {
    ledger::runtime::now_ms()
}

/// What the producer thread has sent so far.
#[derive(Default)]
struct Produced {
    batches: AtomicU64,
    entries: AtomicU64,
}

struct Sample {
    t: f64,
    produced_entries: u64,
    applied_entries: u64,
    entries_per_s: f64,
    lag_records: u64,
    lag_ms: i64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.entries_per_batch > 0,
        "--entries-per-batch must be > 0"
    );
    anyhow::ensure!(
        args.keys_per_partition >= args.entries_per_batch,
        "--keys-per-partition must be at least --entries-per-batch"
    );
    let id = format!("bench-{}-{}", std::process::id(), now_ms());
    let topics = gateway_events::kafka::Topics::with_suffix(&id);
    let mut admin_config = gateway_events::kafka::KafkaConfig::new(&args.brokers, "".as_ref());
    admin_config.topics = topics.clone();
    admin_config.partitions = args.partitions;
    // Another test may be restarting the shared broker: retry for a while.
    let mut attempt = 0;
    while let Err(e) = gateway_events::kafka::ensure_topics(&admin_config) {
        attempt += 1;
        anyhow::ensure!(attempt < 10, "create topics on {}: {e}", args.brokers);
        eprintln!("create topics on {}: {e}; retrying", args.brokers);
        std::thread::sleep(Duration::from_secs(3));
    }

    // Keys of each partition, as the gateway would route them.
    let mut keys: Vec<Vec<String>> = vec![Vec::new(); args.partitions as usize];
    let mut n = 0u64;
    while keys.iter().any(|k| k.len() < args.keys_per_partition) {
        let key = format!("key-{n}");
        n += 1;
        let p = partition_for(&key, args.partitions) as usize;
        if keys[p].len() < args.keys_per_partition {
            keys[p].push(key);
        }
    }
    let today = ledger::calendar::Calendar::utc()
        .day_of(now_ms())
        .ok_or_else(|| anyhow::anyhow!("no calendar day for now"))?;

    // The ledger, in Kafka mode, on a fresh store.
    let dir = std::env::temp_dir().join(format!("ledger-{id}"));
    std::fs::create_dir_all(&dir)?;
    let mut config = LedgerConfig::journal(&dir);
    config.source = SourceConfig::kafka(
        &args.brokers,
        &topics,
        &format!("ledger-{id}"),
        args.partitions,
    );
    let ledger = Ledger::start(config)?;
    let handle = ledger.handle();

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "0")
        .set("queue.buffering.max.messages", "100000")
        .create()?;

    let produced = Arc::new(Produced::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let produce_for = Duration::from_secs(args.seconds);
    let producer_thread = {
        let produced = Arc::clone(&produced);
        let stop = Arc::clone(&stop);
        let (rate, per_batch, partitions) = (args.rate, args.entries_per_batch, args.partitions);
        let usage_topic = topics.usage.clone();
        std::thread::spawn(move || -> anyhow::Result<HashMap<String, u64>> {
            let epoch = u64::try_from(now_ms()).unwrap_or(0);
            let mut sequences = vec![0u64; partitions as usize];
            let mut cursors = vec![0usize; partitions as usize];
            let mut expected: HashMap<String, u64> = HashMap::new();
            let mut sent_batches = 0u64;
            let mut p = 0usize;
            while started.elapsed() < produce_for && !stop.load(Ordering::Relaxed) {
                if rate > 0 {
                    let due =
                        (started.elapsed().as_secs_f64() * rate as f64 / per_batch as f64) as u64;
                    if sent_batches >= due {
                        std::thread::sleep(Duration::from_micros(500));
                        continue;
                    }
                } else if producer.in_flight_count() > 2_000 {
                    // Saturation: as fast as the broker acknowledges, not as fast as the
                    // client can queue.
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
                let pool = &keys[p];
                let now = now_ms();
                let entries: Vec<UsageEntry> = (0..per_batch)
                    .map(|i| {
                        let key = &pool[(cursors[p] + i) % pool.len()];
                        let admitted = 1 + (sequences[p] + i as u64) % 3;
                        *expected.entry(key.clone()).or_default() += admitted;
                        UsageEntry {
                            apikey: key.clone(),
                            api: Some("api-bench".into()),
                            route: "route-bench".into(),
                            consumer: Some(format!("consumer-{}", i % 16)),
                            subscription: Some("sub-bench".into()),
                            day: today,
                            month: today / 100,
                            counters: UsageCounters {
                                admitted,
                                rejected: Rejections::default(),
                                bytes_in: 200 * admitted,
                                bytes_out: 1000 * admitted,
                                status: StatusClasses {
                                    success: admitted,
                                    ..Default::default()
                                },
                            },
                        }
                    })
                    .collect();
                cursors[p] = (cursors[p] + per_batch) % pool.len();
                let batch = UsageBatch {
                    node: "bench".into(),
                    epoch,
                    core: 0,
                    partition: p as u32,
                    partitions,
                    sequence: sequences[p],
                    window_start_ms: now - 100,
                    window_end_ms: now,
                    entries,
                };
                sequences[p] += 1;
                let payload = encode(&batch).map_err(|e| anyhow::anyhow!("encode: {e}"))?;
                let key = p.to_string();
                let mut record = BaseRecord::to(&usage_topic)
                    .partition(p as i32)
                    .key(&key)
                    .payload(&payload);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err((e, _)) => anyhow::bail!("produce: {e}"),
                    }
                }
                sent_batches += 1;
                produced.batches.fetch_add(1, Ordering::Relaxed);
                produced
                    .entries
                    .fetch_add(per_batch as u64, Ordering::Relaxed);
                p = (p + 1) % partitions as usize;
            }
            producer.flush(Duration::from_secs(120))?;
            Ok(expected)
        })
    };

    println!(
        "target {} entries/s ({} entries/batch, {} partitions) for {} s on {}",
        if args.rate == 0 {
            "max".to_owned()
        } else {
            args.rate.to_string()
        },
        args.entries_per_batch,
        args.partitions,
        args.seconds,
        args.brokers
    );
    println!("    t_s  produced_entries  applied_entries  entries/s  lag_records  lag_ms");
    let mut samples: Vec<Sample> = Vec::new();
    let (mut last_applied, mut last_t) = (0u64, 0.0f64);
    let deadline = produce_for + Duration::from_secs(120);
    let mut drained_at = None;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let t = started.elapsed().as_secs_f64();
        let stats = handle.stats();
        let produced_batches = produced.batches.load(Ordering::Relaxed);
        let produced_entries = produced.entries.load(Ordering::Relaxed);
        let newest_ms = handle
            .store()
            .positions()?
            .values()
            .map(|p| p.high_water_ms)
            .max()
            .unwrap_or(0);
        let sample = Sample {
            t,
            produced_entries,
            applied_entries: stats.entries,
            entries_per_s: (stats.entries - last_applied) as f64 / (t - last_t),
            lag_records: produced_batches.saturating_sub(stats.batches + stats.duplicates),
            lag_ms: if newest_ms > 0 {
                now_ms() - newest_ms
            } else {
                -1
            },
        };
        (last_applied, last_t) = (stats.entries, t);
        println!(
            "{:7.1}  {:16}  {:15}  {:9.0}  {:11}  {:6}",
            sample.t,
            sample.produced_entries,
            sample.applied_entries,
            sample.entries_per_s,
            sample.lag_records,
            sample.lag_ms
        );
        let producing = started.elapsed() < produce_for;
        samples.push(sample);
        if !producing && producer_thread.is_finished() && drained_at.is_none() {
            let done = produced.batches.load(Ordering::Relaxed);
            if stats.batches + stats.duplicates >= done {
                drained_at = Some(started.elapsed());
                break;
            }
        }
        if started.elapsed() > deadline {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let expected = producer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;

    // Steady state: samples after the warm-up and while producing.
    let produce_s = args.seconds as f64;
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= args.warmup as f64 && s.t <= produce_s)
        .collect();
    let mut lag_records: Vec<f64> = steady.iter().map(|s| s.lag_records as f64).collect();
    let mut lag_ms: Vec<f64> = steady
        .iter()
        .filter(|s| s.lag_ms >= 0)
        .map(|s| s.lag_ms as f64)
        .collect();
    lag_records.sort_by(f64::total_cmp);
    lag_ms.sort_by(f64::total_cmp);
    let sustained = match (steady.first(), steady.last()) {
        (Some(a), Some(b)) if b.t > a.t => {
            (b.applied_entries - a.applied_entries) as f64 / (b.t - a.t)
        }
        _ => 0.0,
    };
    let total_produced = produced.entries.load(Ordering::Relaxed);
    let produce_rate = total_produced as f64 / produce_s;
    let stats = handle.stats();

    let mut wrong = 0usize;
    for (key, calls) in &expected {
        let got = handle.totals(key).map_or(0, |t| t.daily_calls);
        if got != *calls {
            if wrong < 5 {
                eprintln!("totals of {key}: {got}, produced {calls}");
            }
            wrong += 1;
        }
    }
    let exact = wrong == 0 && stats.entries == total_produced && stats.gaps == 0;
    println!("--- summary");
    println!(
        "produced {total_produced} entries in {} batches over {produce_s} s = {produce_rate:.0} \
         entries/s (target {})",
        produced.batches.load(Ordering::Relaxed),
        if args.rate == 0 {
            "max".to_owned()
        } else {
            args.rate.to_string()
        }
    );
    println!(
        "ledger applied {} entries / {} batches (duplicates {}, gaps {}, quarantined {})",
        stats.entries, stats.batches, stats.duplicates, stats.gaps, stats.quarantined
    );
    println!(
        "steady state ({}..{} s): applied {sustained:.0} entries/s; lag records median {:.0} \
         max {:.0}; newest-batch age median {:.0} ms max {:.0} ms",
        args.warmup,
        args.seconds,
        percentile(&lag_records, 0.5),
        lag_records.last().copied().unwrap_or(0.0),
        percentile(&lag_ms, 0.5),
        lag_ms.last().copied().unwrap_or(0.0),
    );
    match drained_at {
        Some(at) => println!(
            "drained {:.1} s after the producer stopped (overall {:.0} entries/s from start to \
             drained)",
            at.as_secs_f64() - produce_s,
            stats.entries as f64 / at.as_secs_f64()
        ),
        None => println!("NOT drained within 120 s after the producer stopped"),
    }
    println!(
        "totals: {} over {} keys",
        if exact {
            "EXACT".to_owned()
        } else {
            format!("WRONG for {wrong} keys")
        },
        expected.len()
    );
    drop(handle);
    ledger.shutdown();
    std::fs::remove_dir_all(&dir).ok();
    if args.delete_topics {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &args.brokers)
            .create()?;
        let names = [
            topics.usage.as_str(),
            topics.entities.as_str(),
            topics.totals.as_str(),
        ];
        if let Err(e) =
            gateway_events::kafka::block_on(admin.delete_topics(&names, &AdminOptions::new()))
        {
            eprintln!("could not delete the topics: {e}");
        }
    }
    if !exact {
        std::process::exit(1);
    }
    Ok(())
}

//! Replaying the whole log: `ledger rebuild` (into a fresh store, compared with the live
//! store's state hash) and `ledger dump --raw`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use gateway_events::journal::{JournalError, JournalReader, Stream};
use gateway_model::event::{EntityEvent, UsageDecoder};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::{LedgerConfig, SourceConfig};
use crate::error::{LedgerError, LedgerErrorKind};
use crate::fold::Fold;
use crate::source::kafka::source_name;
use crate::source::{JOURNAL_ENTITIES, JOURNAL_USAGE};
use crate::store::{Store, hex};

/// One item of the log, in log order per source.
#[derive(Debug)]
pub enum LogItem<'a> {
    /// A record.
    Record {
        /// Source name.
        source: &'a str,
        /// A usage record (else an entity event).
        usage: bool,
        /// Position.
        offset: u64,
        /// Bytes.
        payload: &'a [u8],
    },
    /// A journal frame damaged at checksum level.
    Corrupt {
        /// Source name.
        source: &'a str,
        /// Its offset.
        offset: u64,
        /// The offset after it.
        next_offset: u64,
        /// What is wrong.
        error: String,
        /// Its raw bytes.
        raw: Vec<u8>,
    },
    /// Records deleted by retention.
    Gone {
        /// Source name.
        source: &'a str,
        /// First missing.
        requested: u64,
        /// First available.
        available: u64,
    },
}

/// Reads the whole configured log from its start to its current end, calling `each` for
/// every item.
///
/// # Errors
///
/// The log cannot be read.
pub fn replay(
    config: &LedgerConfig,
    each: &mut dyn FnMut(LogItem<'_>) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    match &config.source {
        SourceConfig::Journal { data_dir } => replay_journal(data_dir, each),
        SourceConfig::Kafka {
            brokers,
            usage_topic,
            entities_topic,
            ..
        } => replay_kafka(brokers, usage_topic, entities_topic, each),
    }
}

fn replay_journal(
    data_dir: &Path,
    each: &mut dyn FnMut(LogItem<'_>) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    let root = data_dir.join("journal");
    for (stream, source) in [
        (Stream::Usage, JOURNAL_USAGE),
        (Stream::Entities, JOURNAL_ENTITIES),
    ] {
        let dir = stream.dir(&root);
        if !dir.exists() {
            continue;
        }
        let journal_error =
            |e: JournalError| LedgerError::with(LedgerErrorKind::Journal, source, e.to_string());
        let mut reader = match JournalReader::open(&dir, 0) {
            Ok(r) => r,
            Err(JournalError::OffsetGone {
                requested,
                available,
                ..
            }) => {
                each(LogItem::Gone {
                    source,
                    requested,
                    available,
                })?;
                JournalReader::open(&dir, available).map_err(journal_error)?
            }
            Err(e) => return Err(journal_error(e)),
        };
        loop {
            match reader.next_record() {
                Ok(Some(record)) => each(LogItem::Record {
                    source,
                    usage: stream == Stream::Usage,
                    offset: record.offset,
                    payload: record.payload,
                })?,
                Ok(None) => break,
                Err(error @ JournalError::Corrupt { .. }) => {
                    match reader.skip_corrupt().map_err(journal_error)? {
                        Some(skipped) => each(LogItem::Corrupt {
                            source,
                            offset: skipped.offset,
                            next_offset: skipped.next_offset,
                            error: error.to_string(),
                            raw: skipped.raw,
                        })?,
                        None => break,
                    }
                }
                Err(e) => return Err(journal_error(e)),
            }
        }
    }
    Ok(())
}

fn replay_kafka(
    brokers: &str,
    usage_topic: &str,
    entities_topic: &str,
    each: &mut dyn FnMut(LogItem<'_>) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    let kafka = |context: &'static str| {
        move |e: rdkafka::error::KafkaError| LedgerError::with(LedgerErrorKind::Kafka, context, e)
    };
    let consumer: BaseConsumer = gateway_events::kafka::client_config(
        brokers,
        &[
            ("group.id", "tollgate-ledger-rebuild"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ],
        &[],
    )
    .create()
    .map_err(kafka("create consumer"))?;
    let timeout = Duration::from_secs(10);
    for topic in [usage_topic, entities_topic] {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(kafka("metadata"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(kafka("watermarks"))?;
            if high <= low {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(kafka("assign"))?;
            consumer.assign(&tpl).map_err(kafka("assign"))?;
            let source = source_name(topic, partition);
            let mut idle = 0;
            loop {
                match consumer.poll(Duration::from_millis(500)) {
                    Some(Ok(message)) => {
                        idle = 0;
                        let offset = u64::try_from(message.offset()).unwrap_or(0);
                        each(LogItem::Record {
                            source: &source,
                            usage: topic == usage_topic,
                            offset,
                            payload: message.payload().unwrap_or_default(),
                        })?;
                        if message.offset() + 1 >= high {
                            break;
                        }
                    }
                    Some(Err(e)) => return Err(kafka("poll")(e)),
                    None => {
                        idle += 1;
                        if idle > 20 {
                            return Err(LedgerError::new(
                                LedgerErrorKind::Kafka,
                                format!("{source}: no record for 10 s before offset {high}"),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Replays the whole log into a fresh store at `out` (replaced) and returns a JSON report:
/// the fresh store's state hash and, if the live store can be opened (the ledger is
/// stopped), its hash and positions next to the rebuilt ones.
///
/// # Errors
///
/// The log cannot be read or the fresh store cannot be written.
pub fn rebuild(config: &LedgerConfig, out: &Path) -> Result<serde_json::Value, LedgerError> {
    if out == config.store_path {
        return Err(LedgerError::new(
            LedgerErrorKind::Config,
            "rebuild: the output must not be the live store",
        ));
    }
    match std::fs::remove_file(out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(LedgerError::with(
                LedgerErrorKind::Io,
                format!("remove {}", out.display()),
                e,
            ));
        }
    }
    let store = Store::open(out)?;
    let hash = rebuild_into(config, &store)?;
    let positions = |s: &Store| -> Result<serde_json::Value, LedgerError> {
        Ok(s.positions()?
            .into_iter()
            .map(|(k, p)| (k, serde_json::Value::from(p.next)))
            .collect::<serde_json::Map<_, _>>()
            .into())
    };
    let mut report = serde_json::json!({
        "state_hash": hash,
        "store": out.display().to_string(),
        "positions": positions(&store)?,
    });
    let live = match Store::open(&config.store_path) {
        Ok(live) => live.state_hash().and_then(|h| Ok((h, positions(&live)?))),
        // Held by a running ledger: it answers on its local socket.
        Err(e) if e.kind == LedgerErrorKind::Locked => live_state(config).map_err(|_| e),
        Err(e) => Err(e),
    };
    if let Some(obj) = report.as_object_mut() {
        match live {
            Ok((live_hash, live_positions)) => {
                obj.insert("identical".into(), (live_hash == hash).into());
                obj.insert("live_state_hash".into(), live_hash.into());
                obj.insert("live_positions".into(), live_positions);
            }
            Err(e) => {
                obj.insert("live_error".into(), e.to_string().into());
            }
        }
    }
    Ok(report)
}

/// The live store's state hash and positions, from the ledger that holds it.
fn live_state(config: &LedgerConfig) -> Result<(String, serde_json::Value), LedgerError> {
    let mut answer = Vec::new();
    crate::local::ask(&config.store_path, "state", &mut answer)?;
    let v: serde_json::Value = serde_json::from_slice(&answer).map_err(|e| {
        LedgerError::with(LedgerErrorKind::Io, "read the running ledger's state", e)
    })?;
    let hash = v
        .get("state_hash")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let positions = v.get("positions").cloned().unwrap_or_default();
    Ok((hash, positions))
}

/// Replays the whole log into `store` (which should be empty) and returns its state hash.
///
/// # Errors
///
/// As [`rebuild`].
pub fn rebuild_into(config: &LedgerConfig, store: &Store) -> Result<String, LedgerError> {
    let mut fold = Fold::new(config.calendar.clone(), config.grace_ms());
    let mut pending = 0usize;
    replay(config, &mut |item| {
        match item {
            LogItem::Record {
                source,
                usage: true,
                offset,
                payload,
            } => {
                fold.apply_usage(source, offset, payload);
            }
            LogItem::Record {
                source,
                usage: false,
                offset,
                payload,
            } => {
                fold.apply_entity(source, offset, payload);
            }
            LogItem::Corrupt {
                source,
                offset,
                next_offset,
                error,
                raw,
            } => fold.apply_corrupt(source, offset, next_offset, &error, &raw),
            LogItem::Gone {
                source,
                requested,
                available,
            } => fold.apply_gone(source, requested, available),
        }
        pending += 1;
        if pending >= config.chunk_records || fold.delta().rows.is_full() {
            pending = 0;
            let delta = fold.take_delta();
            store.commit(&delta, fold.producers(), fold.positions())?;
        }
        Ok(())
    })?;
    let delta = fold.take_delta();
    store.commit(&delta, fold.producers(), fold.positions())?;
    store.state_hash()
}

/// Prints the raw log as JSON lines: decoded usage batches and entity events with their
/// source and offset; undecodable records with their error and bytes in hex.
///
/// # Errors
///
/// The log cannot be read, or writing fails.
pub fn dump_raw(config: &LedgerConfig, out: &mut dyn Write) -> Result<(), LedgerError> {
    let mut decoder = UsageDecoder::new();
    let io = |e| LedgerError::with(LedgerErrorKind::Io, "write dump", e);
    replay(config, &mut |item| {
        let line = match item {
            LogItem::Record {
                source,
                usage: true,
                offset,
                payload,
            } => match decoder.decode(payload) {
                Ok(batch) => {
                    serde_json::json!({"source": source, "offset": offset, "usage": batch})
                }
                Err(e) => serde_json::json!({"source": source, "offset": offset,
                    "error": e.to_string(), "payload_hex": hex(payload)}),
            },
            LogItem::Record {
                source,
                usage: false,
                offset,
                payload,
            } => match EntityEvent::decode(payload) {
                Ok(event) => {
                    serde_json::json!({"source": source, "offset": offset, "entity": event})
                }
                Err(e) => serde_json::json!({"source": source, "offset": offset,
                    "error": e.to_string(), "payload_hex": hex(payload)}),
            },
            LogItem::Corrupt {
                source,
                offset,
                error,
                raw,
                ..
            } => serde_json::json!({"source": source, "offset": offset, "error": error,
                "payload_hex": hex(&raw)}),
            LogItem::Gone {
                source,
                requested,
                available,
            } => {
                serde_json::json!({"source": source, "gone": {"from": requested, "to": available}})
            }
        };
        writeln!(out, "{line}").map_err(io)
    })
}

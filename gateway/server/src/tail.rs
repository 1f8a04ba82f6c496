//! `gateway events tail`: the event streams as JSON lines, for humans and scripts (DESIGN §4).
//!
//! One line per record: `{"stream": "usage", "offset": 7, "event": {…}}` from the embedded
//! journal, with `"partition"` added when read from Kafka. Usage batches are decoded (and
//! validated) into their JSON form; entity events and totals are JSON already and are printed as
//! stored (secrets in entity events are sealed there, never in clear). A record that does not
//! decode is printed as `{"stream": …, "offset": …, "error": "…"}` and the tail goes on.
//!
//! By default the tail starts at the end of each stream and follows it; `--from-start` starts
//! at the first retained record, `--once` stops when it has caught up. This is an operator tool
//! running on its own: blocking IO, never on a core.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use gateway_events::journal::{JournalError, JournalReader, Stream};
use gateway_events::kafka::Topics;
use serde_json::{Value, json};

use crate::error::{GatewayError, GatewayErrorKind};

/// Which streams to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Usage batches.
    Usage,
    /// Entity events.
    Entities,
    /// Per-key totals.
    Totals,
    /// All three.
    All,
}

impl Which {
    fn streams(self) -> Vec<Stream> {
        match self {
            Self::Usage => vec![Stream::Usage],
            Self::Entities => vec![Stream::Entities],
            Self::Totals => vec![Stream::Totals],
            Self::All => Stream::ALL.to_vec(),
        }
    }
}

/// How to tail.
#[derive(Debug, Clone, Copy)]
pub struct TailOptions {
    /// The streams.
    pub which: Which,
    /// Start at the first retained record instead of the end.
    pub from_start: bool,
    /// Stop once caught up instead of following.
    pub once: bool,
}

/// What a tail read, for the line it prints on stderr when it stops (`--once`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailReport {
    /// Records printed.
    pub printed: u64,
    /// The streams that exist (a journal directory, a topic); the others were not found.
    pub found: Vec<&'static str>,
    /// The streams asked for.
    pub asked: Vec<&'static str>,
}

impl TailReport {
    /// One line for stderr: how many events were printed from where, and, when none, why that
    /// may be (`source` is `journal /path` or `kafka host:port`).
    #[must_use]
    pub fn summary(&self, source: &str, from_start: bool) -> String {
        let missing: Vec<&str> = self
            .asked
            .iter()
            .filter(|s| !self.found.contains(s))
            .copied()
            .collect();
        let mut line = format!(
            "gateway events tail: {} event(s) from {source} ({})",
            self.printed,
            self.asked.join(", ")
        );
        if !missing.is_empty() {
            line.push_str(&format!(
                "; not there yet: {} (nothing written to it so far, or another data directory)",
                missing.join(", ")
            ));
        }
        if self.printed == 0 && !from_start {
            line.push_str(
                "; without --from-start the tail starts at the end, so --once prints only \
                 events written while it runs",
            );
        }
        line
    }
}

/// The JSON of one record's payload.
///
/// # Errors
/// A [`GatewayErrorKind::Decode`] error: the decoder's message.
pub fn record_json(stream: Stream, payload: &[u8]) -> Result<Value, GatewayError> {
    let decode =
        |e: Box<dyn std::error::Error + Send + Sync>| GatewayError::of(GatewayErrorKind::Decode, e);
    match stream {
        Stream::Usage => gateway_model::event::decode(payload)
            .map_err(|e| decode(e.into()))
            .and_then(|b| serde_json::to_value(b).map_err(|e| decode(e.into()))),
        Stream::Entities | Stream::Totals => {
            serde_json::from_slice::<Value>(payload).map_err(|e| decode(e.into()))
        }
    }
}

fn line(stream: Stream, offset: u64, partition: Option<i32>, payload: &[u8]) -> Value {
    let mut v = json!({"stream": stream.dir_name(), "offset": offset});
    if let (Some(p), Some(map)) = (partition, v.as_object_mut()) {
        map.insert("partition".into(), p.into());
    }
    if let Some(map) = v.as_object_mut() {
        match record_json(stream, payload) {
            Ok(event) => map.insert("event".into(), event),
            Err(e) => map.insert("error".into(), e.to_string().into()),
        };
    }
    v
}

fn emit(out: &mut impl Write, value: &Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

/// Tails the embedded journal under `data_dir/journal`, writing JSON lines to `out`. Streams
/// whose directory does not exist yet are picked up when it appears.
///
/// # Errors
///
/// Writing to `out` failed (a closed pipe ends the tail), or a journal could not be read.
pub fn journal(
    data_dir: &Path,
    options: TailOptions,
    out: &mut impl Write,
) -> io::Result<TailReport> {
    let root = data_dir.join("journal");
    let mut readers: Vec<(Stream, Option<JournalReader>)> = options
        .which
        .streams()
        .into_iter()
        .map(|s| (s, None))
        .collect();
    let mut report = TailReport {
        asked: readers.iter().map(|(s, _)| s.dir_name()).collect(),
        ..TailReport::default()
    };
    loop {
        let mut progressed = false;
        for (stream, reader) in &mut readers {
            if reader.is_none() {
                *reader = open_reader(&stream.dir(&root), options.from_start)?;
            }
            let Some(r) = reader.as_mut() else { continue };
            loop {
                match r.next_record() {
                    Ok(Some(record)) => {
                        emit(out, &line(*stream, record.offset, None, record.payload))?;
                        report.printed += 1;
                        progressed = true;
                    }
                    Ok(None) => break,
                    Err(JournalError::Corrupt { .. }) => {
                        let skipped = r.skip_corrupt().map_err(io::Error::other)?;
                        emit(
                            out,
                            &json!({"stream": stream.dir_name(),
                                    "error": format!("corrupt record skipped: {skipped:?}")}),
                        )?;
                    }
                    Err(e) => return Err(io::Error::other(e)),
                }
            }
        }
        out.flush()?;
        if options.once {
            report.found = readers
                .iter()
                .filter(|(_, r)| r.is_some())
                .map(|(s, _)| s.dir_name())
                .collect();
            return Ok(report);
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A reader at the start or at the end of the stream in `dir`; `None` while it does not exist.
fn open_reader(dir: &Path, from_start: bool) -> io::Result<Option<JournalReader>> {
    let mut reader = match JournalReader::open_retained(dir, 0) {
        Ok((r, _)) => r,
        Err(JournalError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(io::Error::other(e)),
    };
    if !from_start {
        // Step over what is there now (the reader is cheap; records are not decoded).
        loop {
            match reader.next_record() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(JournalError::Corrupt { .. }) => {
                    reader.skip_corrupt().map_err(io::Error::other)?;
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
    Ok(Some(reader))
}

/// Tails the Kafka topics, writing JSON lines to `out`.
///
/// # Errors
///
/// The broker could not be reached within 10 s, a topic does not exist, or writing failed.
pub fn kafka(
    brokers: &str,
    topics: &Topics,
    options: TailOptions,
    out: &mut impl Write,
) -> io::Result<TailReport> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let group = format!("tollgate-tail-{}", std::process::id());
    let consumer: BaseConsumer = gateway_events::kafka::client_config(
        brokers,
        &[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ],
        &[],
    )
    .create()
    .map_err(io::Error::other)?;
    let timeout = Duration::from_secs(10);
    let mut assignment = TopicPartitionList::new();
    // (topic, stream, partition, high watermark at start), and the offset before the first
    // record to print.
    let mut ends: Vec<(String, Stream, i32, i64)> = Vec::new();
    let mut positions: Vec<i64> = Vec::new();
    let mut report = TailReport::default();
    for stream in options.which.streams() {
        report.asked.push(stream.dir_name());
        let topic = match stream {
            Stream::Usage => &topics.usage,
            Stream::Entities => &topics.entities,
            Stream::Totals => &topics.totals,
        };
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(io::Error::other)?;
        for t in metadata.topics() {
            if let Some(e) = t.error() {
                return Err(io::Error::other(format!(
                    "topic {topic}: {}",
                    rdkafka::types::RDKafkaErrorCode::from(e)
                )));
            }
            report.found.push(stream.dir_name());
            for p in t.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p.id(), timeout)
                    .map_err(io::Error::other)?;
                let start = if options.from_start {
                    Offset::Offset(low)
                } else {
                    Offset::Offset(high)
                };
                assignment
                    .add_partition_offset(topic, p.id(), start)
                    .map_err(io::Error::other)?;
                ends.push((topic.clone(), stream, p.id(), high));
                positions.push(if options.from_start {
                    low - 1
                } else {
                    high - 1
                });
            }
        }
    }
    consumer.assign(&assignment).map_err(io::Error::other)?;
    let caught_up = |positions: &[i64]| {
        ends.iter()
            .zip(positions)
            .all(|((_, _, _, high), pos)| *pos + 1 >= *high)
    };
    let mut idle_since = Instant::now();
    loop {
        if options.once && caught_up(&positions) {
            out.flush()?;
            return Ok(report);
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let i = ends
                    .iter()
                    .position(|(t, _, p, _)| t == m.topic() && *p == m.partition());
                let Some(i) = i else { continue };
                let stream = ends.get(i).map_or(Stream::Usage, |e| e.1);
                if let Some(pos) = positions.get_mut(i) {
                    *pos = m.offset();
                }
                let offset = u64::try_from(m.offset()).unwrap_or(0);
                emit(
                    out,
                    &line(
                        stream,
                        offset,
                        Some(m.partition()),
                        m.payload().unwrap_or_default(),
                    ),
                )?;
                report.printed += 1;
                idle_since = Instant::now();
            }
            Some(Err(e)) => tracing::warn!(error = %e, "kafka tail"),
            None => {
                out.flush()?;
                if options.once && idle_since.elapsed() > Duration::from_secs(30) {
                    return Err(io::Error::other(
                        "kafka tail: no record for 30 s before catching up",
                    ));
                }
            }
        }
    }
}

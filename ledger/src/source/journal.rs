//! Tailing the embedded journal (`<data_dir>/journal/{usage,entities}`), polling every
//! `config.poll` once caught up. Readers take no lock: the gateway keeps writing.

use std::path::Path;
use std::sync::atomic::Ordering;

use gateway_events::journal::{JournalError, JournalReader, Stream};

use super::{JOURNAL_ENTITIES, JOURNAL_USAGE};
use crate::error::{LedgerError, LedgerErrorKind};
use crate::fold::Fold;
use crate::metrics::Lag;
use crate::runtime::Shared;

/// Folds the journal under `data_dir` until `shared.stop`; commits what it read before
/// returning.
///
/// # Errors
///
/// A store error (the caller restarts from the store's positions).
pub fn run(shared: &Shared, data_dir: &Path) -> Result<(), LedgerError> {
    let root = data_dir.join("journal");
    let streams = [
        (Stream::Usage, JOURNAL_USAGE),
        (Stream::Entities, JOURNAL_ENTITIES),
    ];
    let mut fold = shared.resume_fold()?;
    let mut readers: [Option<JournalReader>; 2] = [None, None];
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let mut read = 0usize;
        for ((stream, name), reader) in streams.iter().zip(readers.iter_mut()) {
            read += poll_stream(shared, &mut fold, &stream.dir(&root), name, reader);
        }
        // Caught up (no stream stopped at a full chunk): commit, then wait `poll` so that a
        // steady trickle of batches is committed in one transaction per `poll`, not one each.
        let caught_up = read < shared.config.chunk_records && !fold.delta().rows.is_full();
        shared.commit(&mut fold)?;
        if read > 0 {
            shared.metrics.set_error(None);
        }
        if stopping {
            return Ok(());
        }
        if caught_up {
            std::thread::sleep(shared.config.poll);
        }
    }
}

/// Reads up to a chunk of `name` into the fold; returns how many records it handled.
fn poll_stream(
    shared: &Shared,
    fold: &mut Fold,
    dir: &Path,
    name: &str,
    slot: &mut Option<JournalReader>,
) -> usize {
    if slot.is_none() {
        let from = fold.position(name).map_or(0, |p| p.next);
        match JournalReader::open(dir, from) {
            Ok(reader) => *slot = Some(reader),
            Err(JournalError::OffsetGone {
                requested,
                available,
                ..
            }) => {
                tracing::error!(
                    stream = name,
                    requested,
                    available,
                    "journal records deleted by retention before the ledger read them"
                );
                fold.apply_gone(name, requested, available);
                return 1;
            }
            Err(error) => {
                // Not created yet by the gateway: wait quietly.
                tracing::debug!(stream = name, %error, "journal not readable yet");
                return 0;
            }
        }
    }
    let Some(reader) = slot.as_mut() else {
        return 0;
    };
    let usage = name == JOURNAL_USAGE;
    let mut handled = 0;
    while handled < shared.config.chunk_records && !fold.delta().rows.is_full() {
        match reader.next_record() {
            Ok(Some(record)) => {
                if usage {
                    fold.apply_usage(name, record.offset, record.payload);
                } else {
                    fold.apply_entity(name, record.offset, record.payload);
                }
                handled += 1;
            }
            Ok(None) => {
                shared.metrics.set_lag(
                    name,
                    Lag {
                        records: Some(0),
                        position: reader.next_offset(),
                    },
                );
                return handled;
            }
            Err(JournalError::OffsetGone {
                requested,
                available,
                ..
            }) => {
                fold.apply_gone(name, requested, available);
                *slot = None;
                return handled + 1;
            }
            Err(error @ JournalError::Corrupt { .. }) => match reader.skip_corrupt() {
                Ok(Some(skipped)) => {
                    tracing::error!(stream = name, %error, "damaged journal record quarantined");
                    fold.apply_corrupt(
                        name,
                        skipped.offset,
                        skipped.next_offset,
                        &error.to_string(),
                        &skipped.raw,
                    );
                    handled += 1;
                }
                Ok(None) => return handled,
                Err(e) => return reader_failed(shared, name, slot, &e, handled),
            },
            Err(e) => return reader_failed(shared, name, slot, &e, handled),
        }
    }
    shared.metrics.set_lag(
        name,
        Lag {
            records: None,
            position: reader.next_offset(),
        },
    );
    handled
}

fn reader_failed(
    shared: &Shared,
    name: &str,
    slot: &mut Option<JournalReader>,
    error: &JournalError,
    handled: usize,
) -> usize {
    let error = LedgerError::with(
        LedgerErrorKind::Journal,
        format!("read {name}"),
        error.to_string(),
    );
    tracing::warn!(%error, "journal read failed; reopening");
    shared.metrics.source_errors.fetch_add(1, Ordering::Relaxed);
    shared.metrics.set_error(Some(error.to_string()));
    *slot = None;
    handled
}

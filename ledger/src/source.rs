//! Sources: the embedded journal (tailed) and Kafka (consumed in a group). Both feed the fold
//! record by record with the record's position and commit a chunk at a time; both restart
//! from the store's positions after any store error, so the store stays the only truth.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::SourceConfig;
use crate::runtime::Shared;

pub mod journal;
pub mod kafka;

/// Source name of the journal's usage stream (its key in the positions table).
pub const JOURNAL_USAGE: &str = "journal:usage";
/// Source name of the journal's entity stream.
pub const JOURNAL_ENTITIES: &str = "journal:entities";

/// Runs the configured source until `shared.stop` is set.
pub fn run(shared: &Shared) {
    let mut backoff = Duration::from_millis(100);
    while !shared.stop.load(Ordering::Relaxed) {
        let result = match &shared.config.source {
            SourceConfig::Journal { data_dir } => journal::run(shared, data_dir),
            SourceConfig::Kafka { .. } => kafka::run(shared),
        };
        match result {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(%error, "ledger source failed; resuming from the store");
                shared.metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                shared.metrics.set_error(Some(error.to_string()));
                if !error.is_retryable() && error.kind != crate::LedgerErrorKind::Store {
                    return;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

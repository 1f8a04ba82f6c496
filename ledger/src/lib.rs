//! ledger: Tollgate's billing ledger. It folds the usage stream (`tollgate.usage`, or the
//! embedded journal's `usage` stream) exactly once into per-key, per-consumer, per-subscription,
//! per-API and per-route aggregates, keeps the history of every entity change, publishes per-key
//! totals for cross-node quota enforcement and serves it all over a small HTTP/JSON query API.
//!
//! Exactly once comes from one place: [`store::Store::commit`] writes the aggregates, the
//! per-producer sequence watermarks and the source positions in ONE redb write transaction. A
//! restart resumes from the stored positions; a replayed batch is recognised by its producer
//! sequence and changes nothing.
//!
//! What it must never do: trust bytes from a broker or a journal (every record is decoded with
//! validation, a bad one is quarantined whole), rely on Kafka's committed offsets for
//! correctness, panic on input, depend on the gateway crate (the gateway embeds this one), or
//! show the id of a client-id-only API key (its credential) in an answer that did not name it
//! ([`pseudonym`]).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod calendar;
pub mod config;
pub mod error;
pub mod fold;
pub mod http;
pub mod local;
pub mod metrics;
pub mod pseudonym;
pub mod query;
pub mod rebuild;
pub mod runtime;
pub mod source;
pub mod store;

pub use config::{LedgerConfig, SourceConfig};
pub use error::{LedgerError, LedgerErrorKind};
pub use fold::{Fold, FoldStats};
pub use runtime::{Ledger, LedgerHandle, TotalsUpdate};
pub use store::Store;

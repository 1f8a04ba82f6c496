//! How Tollgate's events leave a process and come back: the embedded journal (append-only
//! segment files, a checksum per record, readable while written) and the Kafka sink with its
//! ordered disk spool. The gateway writes through it; the ledger reads through it.
//!
//! Blocking file and network IO on dedicated threads: nothing here may run on a core's runtime.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod clock;
pub mod holder;
pub mod journal;
pub mod kafka;

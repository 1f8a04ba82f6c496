//! The Tollgate gateway's IO shell: configuration, the monoio runtimes (one pinned thread per
//! core), listeners, the client connection loop, upstream pools, and the node that ties them.
//!
//! It must never hold request-path logic that gateway-core can hold: parsing, routing, key and
//! flow rules are sans-IO and live there; this crate moves bytes and reads clocks. Nothing is
//! shared between cores per request: no locks, no atomics, no DNS on the request path.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod access;
pub mod admin;
pub mod certs;
pub mod config;
pub mod core;
pub mod entitylog;
pub mod error;
pub mod health;
pub mod metrics;
pub mod node;
mod proxy;
pub mod quickstart;
pub mod runtime;
pub mod seal;
pub mod shared;
pub mod snapshot;
pub mod sock;
pub mod stream;
pub mod tail;
pub mod tally;
pub mod tls;
pub mod totals;
pub mod upstream;
pub mod worker;

pub use error::{GatewayError, GatewayErrorKind};
pub use gateway_events::{journal, kafka};

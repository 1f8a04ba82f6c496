//! The Tollgate gateway's IO shell: configuration, and (with the data-plane issue) the monoio
//! runtimes, listeners, upstream pools, event sinks and admin API around gateway-core.
//!
//! It must never hold request-path logic that gateway-core can hold: parsing, routing, key and
//! quota rules are sans-IO and live there; this crate moves bytes and reads clocks.

pub mod config;

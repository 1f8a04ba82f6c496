//! Tollgate's load generator: the library behind the `loadtest` binary.
//!
//! It opens keep-alive HTTP/1.1 connections over plain TCP (`http://` only), one monoio runtime
//! per thread, and drives them either in a closed loop (each connection sends its next request as
//! soon as the previous response is complete, like wrk) or in an open loop on a fixed schedule
//! (latency measured from the *intended* send time, like wrk2), recording latencies in
//! HdrHistogram.
//!
//! What it must never do: allocate, lock or panic on the request path (pre-serialised requests,
//! one reused read buffer per connection, per-thread statistics merged only at the end), or send
//! traffic anywhere but the target it was given.

pub mod config;
pub mod duration;
pub mod error;
pub mod html;
pub mod report;
pub mod request;
pub mod response;
pub mod run;
pub mod runtime;
pub mod scenario;
pub mod schedule;

mod conn;
mod stats;

pub use config::{Load, RunConfig};
pub use error::Error;
pub use report::Report;
pub use run::{ProgressSnapshot, run};
pub use runtime::{DriverKind, IoMode};

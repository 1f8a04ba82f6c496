//! gateway-core: the sans-IO heart of the Tollgate gateway.
//!
//! It takes bytes and the current time (`now`, milliseconds since the Unix epoch) and returns
//! decisions: parsed heads, body framing, the matched route, the verified API key, restriction
//! outcomes, calendar windows and the flow's verdict. It must never do IO, read a clock, spawn a
//! thread or block: the `gateway` server crate moves bytes and reads clocks, and a deterministic
//! harness can drive this crate with a fake clock and simulated cores.
//!
//! On the request path nothing here panics: `unwrap`, `expect`, `panic!` and slice indexing are
//! denied outside tests, and every failure is a value that becomes a response in one place
//! ([`flow::Reject`] and [`respond`]).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod apikey;
pub mod balance;
pub mod error;
pub mod flow;
pub mod http;
pub mod jose;
pub mod lifecycle;
pub mod oauth;
pub mod quota;
pub mod respond;
pub mod restriction;
pub mod rewrite;
pub mod route;
pub mod trace;
pub mod usage;
pub mod window;

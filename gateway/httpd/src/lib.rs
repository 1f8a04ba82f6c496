//! gateway-httpd: Tollgate's control-plane HTTP/1.1 server, written once and used by the admin
//! API (`gateway`) and the ledger's query API (`ledger`).
//!
//! It is blocking and plain: one acceptor thread and one thread per connection, for low-traffic
//! APIs that must never run on a data-plane core. What it guarantees to the [`Handler`] behind
//! it, whatever the peer sends:
//!
//! - **Bounded work before authorization.** A request head is read (at most
//!   [`Limits::max_head_bytes`], [`Limits::max_headers`]) and parsed by gateway-core's strict
//!   parser ([`gateway_core::http::HeadParser`]: conflicting framing, duplicate
//!   `Content-Length`, bare LF… are refused). Then [`Handler::authorize`] sees the head; only
//!   if it passes is a body read, only up to [`Handler::body_limit`] (413 above), into a buffer
//!   that grows with the bytes actually received. Chunked bodies are decoded with gateway-core's
//!   [`gateway_core::http::BodyDecoder`].
//! - **Time.** One deadline per request, head and body together ([`Limits::request_timeout`],
//!   from the request's first byte, or from the accept for a connection's first request),
//!   enforced across reads: each read waits only for the time left, so a client trickling one
//!   byte at a time is answered 408 and closed at the deadline. Between requests a kept-alive
//!   connection waits at most [`Limits::idle_timeout`].
//! - **Connections.** At most [`Limits::max_connections`] at once and at most
//!   [`Limits::max_connections_per_peer`] from one peer (an IPv4 address or an IPv6 /64); past
//!   either, 503 `busy` and closed at once. So the connection threads are bounded, and a flood of
//!   slow connections from one peer does not lock out another.
//! - **Errors** are always `{"error": "<code>", "error_description": "<text>"}`
//!   ([`error_body`], the one writer of that shape), and every response carries
//!   `content-type`, `content-length` and `connection`.
//! - **Shutdown** ([`Server::shutdown`]): stop accepting, let idle connections go within a fifth
//!   of a second, answer requests in progress, wait at most 2 s.
//!
//! What it must never do: allocate from a length the peer declared (`vec![0; content_length]`),
//! read a body before the handler authorized the head, give a peer a fresh timeout per read,
//! log a header value (tokens travel in them), or panic on input: `unwrap`, `expect`, `panic!`
//! and slice indexing are denied outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod auth;
mod conn;
mod handler;
mod limits;
mod request;
mod response;
mod server;
mod slots;

pub use auth::{BearerToken, unauthorized};
pub use handler::Handler;
pub use limits::Limits;
pub use request::{Head, Request, decode_component};
pub use response::{Response, error_body};
pub use server::{Server, Stats};

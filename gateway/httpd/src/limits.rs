//! The limits a server enforces, chosen by its caller.

use std::time::Duration;

/// Limits of one server. [`Limits::default`] suits a control-plane API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head in bytes (431 above). Default 64 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in a request head (431 above; at most 256). Default 100.
    pub max_headers: usize,
    /// Time allowed for a whole request, head and body, from its first byte (for the first
    /// request of a connection: from the accept): 408 and the connection closed after it.
    /// Default 10 s.
    pub request_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request; closed (silently) after it.
    /// Default 30 s.
    pub idle_timeout: Duration,
    /// Time allowed to write one response to a client that does not read. Default 10 s.
    pub write_timeout: Duration,
    /// Most connections open at once; more are answered 503 `busy` and closed. Default 128.
    pub max_connections: usize,
    /// Most connections open at once from one peer (an IPv4 address, or an IPv6 /64); more are
    /// answered 503 `busy` and closed. Default 8.
    pub max_connections_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_connections: 128,
            max_connections_per_peer: 8,
        }
    }
}

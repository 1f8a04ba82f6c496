//! TLS with rustls 0.23 (the ring provider; one rustls version in the tree): the HTTPS listener
//! (certificates from the listener's files and from the entity log, chosen by SNI; session
//! tickets whose keys every core of the node shares; a per-core session cache; optional or
//! required client certificates) and TLS to upstream targets.
//!
//! Nothing here takes a lock or makes a cross-core call per connection: each core builds its own
//! `ServerConfig` (its own session cache and ticketer state) from immutable, shared parts (the
//! certificate index, the ticket keys, the client verifier), and rebuilds it between
//! connections when those change.

pub mod client;
pub mod peer;
pub mod server;
mod sessions;
pub mod stream;
mod tickets;

use std::sync::{Arc, OnceLock};

pub use server::{CertStore, ListenerTls};
pub use stream::{TlsError, TlsStream};
pub use tickets::TicketKeys;

/// The crypto provider every TLS config uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The ALPN protocols the listener offers (room for `h2` later).
pub const ALPN: &[&[u8]] = &[b"http/1.1"];

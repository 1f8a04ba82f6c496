//! gateway-model: Tollgate's entities and event envelopes, shared by the gateway and the ledger.
//!
//! Entities follow Otoroshi's JSON field names so that an Otoroshi export deserialises unchanged;
//! validation returns every problem with its JSON path. Events are the wire formats of DESIGN §4:
//! rkyv usage batches behind a version byte (validated when decoded) and JSON entity envelopes.
//! [`x509`] reads PEM certificates and keys for the certificate entities and the gateway's TLS.
//! This crate never does IO (no files, sockets or clock; loading an ECDSA key to check it draws
//! randomness, see [`x509`]) and never panics on input: bad bytes and bad JSON are errors.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod canon;
pub mod config;
pub mod entity;
pub mod event;
pub mod import;
pub mod jose;
pub mod redact;
pub mod validate;
pub mod x509;

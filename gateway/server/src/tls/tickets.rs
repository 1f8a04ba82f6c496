//! Session tickets that every core of a node can open: the node holds the ticket keys (a current
//! one and the previous one, rotated every `lifetime`), each core seals tickets with its own
//! ticketer built from them. Sealing is XChaCha20-Poly1305 (the `chacha20poly1305` crate, as the
//! entity log's secrets): the ticket is `generation ‖ nonce ‖ ciphertext ‖ tag`, with the
//! generation as associated data; a nonce is the core's random 16-byte prefix and a counter, so
//! no two tickets of a key share one. No lock per ticket.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE: usize = 24;
const GEN: usize = 4;

/// The ticket keys of a node: the current one seals, both open.
pub struct TicketKeys {
    generation: u32,
    current: [u8; 32],
    previous: Option<(u32, [u8; 32])>,
    lifetime: Duration,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

fn random_key() -> std::io::Result<[u8; 32]> {
    let bytes = crate::seal::random_bytes(32)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(std::io::Error::other)
}

impl TicketKeys {
    /// Fresh keys; tickets are advertised as valid for `lifetime` (they open for up to twice
    /// that: while their key is current, then previous).
    ///
    /// # Errors
    /// When no randomness can be read.
    pub fn new(lifetime: Duration) -> std::io::Result<Self> {
        Ok(Self {
            generation: 1,
            current: random_key()?,
            previous: None,
            lifetime,
        })
    }

    /// The next keys: a new current key, this one kept to open older tickets.
    ///
    /// # Errors
    /// When no randomness can be read.
    pub fn rotated(&self) -> std::io::Result<Self> {
        Ok(Self {
            generation: self.generation.wrapping_add(1),
            current: random_key()?,
            previous: Some((self.generation, self.current)),
            lifetime: self.lifetime,
        })
    }

    /// The rotation count.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// How long a key stays current.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

/// One core's ticketer.
pub struct CoreTicketer {
    generation: u32,
    current: XChaCha20Poly1305,
    previous: Option<(u32, XChaCha20Poly1305)>,
    prefix: [u8; 16],
    counter: AtomicU64,
    lifetime: u32,
}

impl fmt::Debug for CoreTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoreTicketer")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl CoreTicketer {
    /// A ticketer sealing with `keys`' current key.
    ///
    /// # Errors
    /// When no randomness can be read for the nonce prefix.
    pub fn new(keys: &Arc<TicketKeys>) -> std::io::Result<Self> {
        let cipher = |k: &[u8; 32]| XChaCha20Poly1305::new(k.into());
        let prefix = crate::seal::random_bytes(16)?;
        Ok(Self {
            generation: keys.generation,
            current: cipher(&keys.current),
            previous: keys.previous.as_ref().map(|(g, k)| (*g, cipher(k))),
            prefix: <[u8; 16]>::try_from(prefix.as_slice()).map_err(std::io::Error::other)?,
            counter: AtomicU64::new(0),
            lifetime: u32::try_from(keys.lifetime.as_secs()).unwrap_or(u32::MAX),
        })
    }
}

impl rustls::server::ProducesTickets for CoreTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE];
        let (head, tail) = nonce.split_at_mut(16);
        head.copy_from_slice(&self.prefix);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        tail.copy_from_slice(&n.to_be_bytes());
        let aad = self.generation.to_be_bytes();
        let sealed = self
            .current
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(GEN + NONCE + sealed.len());
        out.extend_from_slice(&aad);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let aad = ticket.get(..GEN)?;
        let generation = u32::from_be_bytes(<[u8; GEN]>::try_from(aad).ok()?);
        let nonce = ticket.get(GEN..GEN + NONCE)?;
        let sealed = ticket.get(GEN + NONCE..)?;
        let cipher = if generation == self.generation {
            &self.current
        } else {
            match &self.previous {
                Some((g, c)) if *g == generation => c,
                _ => return None,
            }
        };
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use rustls::server::ProducesTickets;

    use super::*;

    #[test]
    fn tickets_open_on_every_core_and_across_one_rotation() {
        let keys = Arc::new(TicketKeys::new(Duration::from_secs(60)).unwrap());
        let (a, b) = (
            CoreTicketer::new(&keys).unwrap(),
            CoreTicketer::new(&keys).unwrap(),
        );
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
        assert_ne!(
            a.encrypt(b"x").unwrap(),
            a.encrypt(b"x").unwrap(),
            "nonce reuse"
        );
        let next = Arc::new(keys.rotated().unwrap());
        let c = CoreTicketer::new(&next).unwrap();
        assert_eq!(c.decrypt(&t).unwrap(), b"session state");
        let newer = Arc::new(next.rotated().unwrap());
        assert!(CoreTicketer::new(&newer).unwrap().decrypt(&t).is_none());
        // Tampering and garbage are refused, never a panic.
        let mut bad = t.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(b.decrypt(&bad).is_none());
        for len in 0..40 {
            assert!(b.decrypt(&vec![7u8; len]).is_none());
        }
    }
}

//! Sealed secrets: API key secrets travel and rest in the entity log encrypted with the cluster
//! key (XChaCha20-Poly1305, a random 192-bit nonce per value, the value's place in the entity as
//! associated data so that a sealed secret cannot be moved to another key or field).
//!
//! A sealed value is the string `sealed:v1:<base64(nonce ‖ ciphertext ‖ tag)>`. This module
//! never logs, prints or formats a secret in clear; [`ClusterKey`]'s `Debug` shows nothing.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Prefix of a sealed value, and what audit views show instead of a secret (one definition, with
/// the redaction rule, in `gateway_model::redact`).
pub use gateway_model::redact::{REDACTED, SEALED_PREFIX};

const NONCE_BYTES: usize = 24;

/// Length of a cluster key in bytes.
pub const KEY_BYTES: usize = 32;

/// Why a value could not be sealed or opened, or a key not loaded.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The value is not `sealed:v1:…` or its base64 is broken.
    #[error("not a sealed value")]
    Malformed,
    /// Authentication failed: another cluster key, or the bytes were changed.
    #[error("cannot open a sealed value: wrong cluster key or tampered bytes")]
    Open,
    /// Encryption failed (never expected).
    #[error("cannot seal a value")]
    Seal,
    /// The key file is unreadable or not 32 bytes (raw, hex or base64).
    #[error("cluster key {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The cluster key: every node of a cluster must have the same one.
#[derive(Clone)]
pub struct ClusterKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(***)")
    }
}

/// `n` random bytes from the OS.
///
/// # Errors
/// When `/dev/urandom` cannot be read.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

impl ClusterKey {
    /// A key from its 32 bytes.
    ///
    /// # Errors
    /// When `bytes` is not 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != KEY_BYTES {
            return Err(SealError::Malformed);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(bytes).map_err(|_| SealError::Malformed)?;
        Ok(Self { cipher })
    }

    /// Reads a key file: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes (surrounding
    /// whitespace ignored).
    ///
    /// # Errors
    /// [`SealError::KeyFile`] naming the file when it cannot be read or holds no 32-byte key.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        let bad = |reason: String| SealError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        let raw = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let bytes = decode_key(&raw)
            .ok_or_else(|| bad("expected 32 bytes: raw, 64 hex digits or base64".to_owned()))?;
        Self::from_bytes(&bytes).map_err(|_| bad("expected 32 bytes".to_owned()))
    }

    /// Loads the key at `path`, or, when the file does not exist, generates one and writes it
    /// there (hex, mode 0600). Returns the key and whether it was generated.
    ///
    /// # Errors
    /// When the file exists but is bad, or cannot be created.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), SealError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let bad = |e: std::io::Error| SealError::KeyFile {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(bad)?;
        }
        let bytes = random_bytes(KEY_BYTES).map_err(bad)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = path.with_extension("tmp");
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(bad)?;
            f.write_all(hex.as_bytes()).map_err(bad)?;
            f.write_all(b"\n").map_err(bad)?;
            f.sync_all().map_err(bad)?;
        }
        std::fs::rename(&tmp, path).map_err(bad)?;
        Ok((Self::from_bytes(&bytes)?, true))
    }

    /// Seals `plain`, bound to `context` (e.g. `apikey/k1/clientSecret`).
    ///
    /// # Errors
    /// When the OS gives no randomness for the nonce.
    pub fn seal(&self, plain: &str, context: &str) -> Result<String, SealError> {
        let nonce_bytes = random_bytes(NONCE_BYTES).map_err(|_| SealError::Seal)?;
        let nonce: [u8; NONCE_BYTES] = nonce_bytes
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Seal)?;
        let nonce = XNonce::from(nonce);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce_bytes;
        out.extend_from_slice(&sealed);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    /// Opens a value made by [`seal`](Self::seal) with the same `context`.
    ///
    /// # Errors
    /// [`SealError::Malformed`] for a value that is not sealed, [`SealError::Open`] for another
    /// key, another context or changed bytes.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, SealError> {
        let b64 = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SealError::Malformed)?;
        let raw = STANDARD.decode(b64).map_err(|_| SealError::Malformed)?;
        if raw.len() < NONCE_BYTES + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, body) = raw.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let nonce = XNonce::from(nonce);
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map_err(|_| SealError::Open)
    }
}

fn decode_key(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() == KEY_BYTES {
        return Some(raw.to_vec());
    }
    let text = std::str::from_utf8(raw).ok()?.trim();
    if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (0..KEY_BYTES)
            .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
    }
    let bytes = STANDARD.decode(text).ok()?;
    (bytes.len() == KEY_BYTES).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ClusterKey {
        ClusterKey::from_bytes(&[b; 32]).unwrap()
    }

    #[test]
    fn seal_round_trips_and_hides_the_value() {
        let k = key(7);
        let sealed = k.seal("s3cret-value", "apikey/a/clientSecret").unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            k.open(&sealed, "apikey/a/clientSecret").unwrap(),
            "s3cret-value"
        );
        // A fresh nonce each time.
        assert_ne!(
            sealed,
            k.seal("s3cret-value", "apikey/a/clientSecret").unwrap()
        );
    }

    #[test]
    fn another_key_or_context_or_tampering_fails() {
        let sealed = key(1).seal("x", "apikey/a/clientSecret").unwrap();
        assert!(matches!(
            key(2).open(&sealed, "apikey/a/clientSecret"),
            Err(SealError::Open)
        ));
        assert!(matches!(
            key(1).open(&sealed, "apikey/b/clientSecret"),
            Err(SealError::Open)
        ));
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(key(1).open(&tampered, "apikey/a/clientSecret").is_err());
        assert!(matches!(
            key(1).open("plain", "x"),
            Err(SealError::Malformed)
        ));
    }

    #[test]
    fn key_files_in_three_encodings_and_generation() {
        let dir = std::env::temp_dir().join(format!("tollgate-seal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hex = dir.join("hex");
        std::fs::write(&hex, format!("{}\n", "ab".repeat(32))).unwrap();
        let b64 = dir.join("b64");
        std::fs::write(&b64, STANDARD.encode([0xab; 32])).unwrap();
        let raw = dir.join("raw");
        std::fs::write(&raw, [0xab; 32]).unwrap();
        let a = ClusterKey::load(&hex).unwrap();
        let sealed = a.seal("v", "c").unwrap();
        for p in [&b64, &raw] {
            assert_eq!(
                ClusterKey::load(p).unwrap().open(&sealed, "c").unwrap(),
                "v"
            );
        }
        let short = dir.join("short");
        std::fs::write(&short, "abcd").unwrap();
        let err = ClusterKey::load(&short).unwrap_err().to_string();
        assert!(err.contains("short"), "{err}");
        let generated = dir.join("gen/cluster.key");
        let (g, fresh) = ClusterKey::load_or_generate(&generated).unwrap();
        assert!(fresh);
        let (again, fresh) = ClusterKey::load_or_generate(&generated).unwrap();
        assert!(!fresh);
        let s = g.seal("v", "c").unwrap();
        assert_eq!(again.open(&s, "c").unwrap(), "v");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

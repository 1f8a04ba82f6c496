//! A byte stream of the data plane, plain TCP or TLS: what the connection loop and the upstream
//! pool read from and write to, whichever the listener or the target is. The plain variant is the
//! monoio socket itself, with no extra copy; the TLS variant is a [`TlsStream`].
//!
//! Reads append to a caller-owned buffer (growing it only when full), writes take a range of a
//! caller-owned buffer, so the connection loop keeps reusing its buffers either way.

use std::io;
use std::ops::Range;

use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent,
};
use monoio::net::TcpStream;

use crate::sock::{PeekState, peek_state};
use crate::tls::TlsStream;

/// A plain or TLS connection.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(t) => t.tcp(),
        }
    }

    /// The TLS connection, when this is one.
    pub fn tls(&self) -> Option<&TlsStream> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(t) => Some(t),
        }
    }

    /// Reads more bytes into `buf[len..]`, growing it when full; `Ok(0)` is the end of stream.
    ///
    /// # Errors
    /// The socket's (or the TLS protocol's, as `InvalidData`).
    pub async fn read_more(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Self::Plain(s) => read_more_plain(s, buf, None).await,
            Self::Tls(t) => t.read_more(buf, None).await,
        }
    }

    /// [`Stream::read_more`] that ends (with an error) when `handle` is cancelled: the idle
    /// wait between requests, cut short when the core drains.
    ///
    /// # Errors
    /// As [`Stream::read_more`], or the cancellation.
    pub async fn read_more_cancelable(
        &mut self,
        buf: &mut Vec<u8>,
        handle: CancelHandle,
    ) -> io::Result<usize> {
        match self {
            Self::Plain(s) => read_more_plain(s, buf, Some(handle)).await,
            Self::Tls(t) => t.read_more(buf, Some(handle)).await,
        }
    }

    /// Writes `buf[range]` of an owned buffer, giving the buffer back.
    ///
    /// # Errors
    /// The socket's.
    pub async fn write_range(&mut self, buf: &mut Vec<u8>, range: Range<usize>) -> io::Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        match self {
            Self::Plain(s) => {
                let owned = std::mem::take(buf);
                let (res, slice) = s.write_all(monoio::buf::IoBuf::slice(owned, range)).await;
                *buf = slice.into_inner();
                res.map(|_| ())
            }
            Self::Tls(t) => t.write_all(buf.get(range).unwrap_or_default()).await,
        }
    }

    /// Writes static bytes (`100 Continue`, a final CRLF).
    ///
    /// # Errors
    /// The socket's.
    pub async fn write_static(&mut self, bytes: &'static [u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(bytes).await.0.map(|_| ()),
            Self::Tls(t) => t.write_all(bytes).await,
        }
    }

    /// Closes the write side (TLS: close_notify first).
    pub async fn shutdown(&mut self) {
        match self {
            Self::Plain(s) => {
                let _ = s.shutdown().await;
            }
            Self::Tls(t) => t.shutdown().await,
        }
    }

    /// Whether an idle pooled connection is still clean: nothing to read and not closed
    /// (without blocking; for TLS, session tickets the peer sent meanwhile are absorbed).
    pub fn is_idle(&mut self) -> bool {
        match self {
            Self::Plain(s) => peek_state(s) == PeekState::Silent,
            Self::Tls(t) => t.poll_idle(),
        }
    }

    /// Whether the peer sent something (or closed) that was not asked for yet.
    pub fn has_pending(&mut self) -> bool {
        match self {
            Self::Plain(s) => peek_state(s) != PeekState::Silent,
            Self::Tls(t) => !t.poll_idle(),
        }
    }
}

async fn read_more_plain(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    cancel: Option<CancelHandle>,
) -> io::Result<usize> {
    if buf.len() == buf.capacity() {
        buf.reserve(buf.capacity().max(4096));
    }
    let len = buf.len();
    let cap = buf.capacity();
    let owned = std::mem::take(buf);
    let slice = monoio::buf::IoBufMut::slice_mut(owned, len..cap);
    let (res, slice) = match cancel {
        Some(handle) => stream.cancelable_read(slice, handle).await,
        None => stream.read(slice).await,
    };
    *buf = slice.into_inner();
    res
}

//! A TLS connection over a monoio `TcpStream`: rustls speaks the protocol, this moves its bytes
//! with monoio's owned-buffer IO (io_uring or epoll alike). Used for client connections on an
//! HTTPS listener and for upstream connections to `tls: true` targets.
//!
//! Every read goes through rustls (`read_tls` → `process_new_packets` → plaintext), every write
//! is encrypted by rustls and written as it queued it. A protocol error sends its alert before
//! the error is returned; the caller then closes. Timeouts are the caller's: a dropped read
//! loses its ciphertext, so after a timeout the connection must be closed, which the proxy does.

use std::io::{self, Read as _, Write as _};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent};
use monoio::net::TcpStream;

/// Ciphertext read at once: one full TLS record with its header and some slack.
const RX_BUF: usize = 18 * 1024;

/// A TLS connection and its socket.
#[derive(Debug)]
pub struct TlsStream {
    tcp: TcpStream,
    conn: rustls::Connection,
    /// Ciphertext read from the socket; `rx[rx_pos..]` is not given to rustls yet (it takes
    /// records only as fast as its plaintext is drained).
    rx: Vec<u8>,
    rx_pos: usize,
    /// Ciphertext waiting for the socket (reused).
    tx: Vec<u8>,
    /// Plaintext rustls holds that was not read yet.
    pending: usize,
    /// The peer closed the TCP stream or sent close_notify.
    closed: bool,
    /// No byte was received yet.
    fresh: bool,
}

/// Why a TLS operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The socket failed.
    #[error("tls: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the protocol or failed verification (its alert was sent).
    #[error("tls: {0}")]
    Protocol(rustls::Error),
    /// The peer closed the connection during the handshake.
    #[error("tls: connection closed during the handshake")]
    Closed,
    /// A client spoke plain HTTP to the TLS port (its first bytes are a request line).
    #[error("tls: plain HTTP sent to the TLS port")]
    PlainHttp,
}

impl TlsError {
    /// A short stable reason, for metrics and error codes.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io(_) => "io",
            Self::Closed => "closed",
            Self::PlainHttp => "plain_http",
            Self::Protocol(e) => match e {
                rustls::Error::InvalidCertificate(_) => "bad_certificate",
                rustls::Error::NoCertificatesPresented => "no_certificate",
                rustls::Error::InvalidMessage(_) => "malformed",
                rustls::Error::PeerIncompatible(_) => "incompatible",
                rustls::Error::AlertReceived(_) => "alert_received",
                rustls::Error::General(_) => "general",
                _ => "protocol",
            },
        }
    }

    /// Whether the peer's certificate failed verification.
    pub fn is_verification(&self) -> bool {
        matches!(
            self,
            Self::Protocol(
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        )
    }
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::Io(e) => e,
            TlsError::Protocol(e) => io::Error::new(io::ErrorKind::InvalidData, e),
            TlsError::Closed => io::Error::from(io::ErrorKind::UnexpectedEof),
            TlsError::PlainHttp => io::Error::from(io::ErrorKind::InvalidData),
        }
    }
}

impl TlsStream {
    /// A connection on `tcp`; call [`TlsStream::handshake`] next.
    pub fn new(tcp: TcpStream, conn: impl Into<rustls::Connection>) -> Self {
        Self {
            tcp,
            conn: conn.into(),
            rx: Vec::with_capacity(RX_BUF),
            rx_pos: 0,
            tx: Vec::new(),
            pending: 0,
            closed: false,
            fresh: true,
        }
    }

    /// The socket, to answer a client that spoke plain HTTP to the TLS port.
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The rustls connection (negotiated protocol, peer certificates, SNI).
    pub fn connection(&self) -> &rustls::Connection {
        &self.conn
    }

    /// Drives the handshake to its end (and sends what the server sends after it, such as
    /// TLS 1.3 session tickets).
    ///
    /// # Errors
    /// [`TlsError`]: the alert for a protocol error was sent.
    pub async fn handshake(&mut self) -> Result<(), TlsError> {
        while self.conn.is_handshaking() {
            self.flush().await?;
            if !self.conn.is_handshaking() {
                break;
            }
            if self.conn.wants_read() && !self.feed().await? && !self.read_tls(None).await? {
                return Err(TlsError::Closed);
            }
        }
        self.flush().await?;
        Ok(())
    }

    /// Gives rustls the ciphertext already read, until it is all taken or plaintext waits to be
    /// drained. `Ok(false)` when there was nothing to give.
    async fn feed(&mut self) -> Result<bool, TlsError> {
        if self.rx_pos >= self.rx.len() {
            return Ok(false);
        }
        let rx = std::mem::take(&mut self.rx);
        let mut fed = false;
        while self.rx_pos < rx.len() && self.pending == 0 {
            let mut input = rx.get(self.rx_pos..).unwrap_or_default();
            let before = input.len();
            match self.conn.read_tls(&mut input) {
                Ok(_) => {}
                // rustls holds as much as it will until its plaintext is read.
                Err(_) if fed => break,
                Err(e) => {
                    self.rx = rx;
                    return Err(TlsError::Io(e));
                }
            }
            self.rx_pos += before - input.len();
            fed = true;
            if let Err(e) = self.process().await {
                self.rx = rx;
                return Err(e);
            }
        }
        self.rx = rx;
        Ok(fed)
    }

    /// Reads ciphertext from the socket (cancellable with `cancel`) and gives it to rustls.
    /// `Ok(false)` at the end of the TCP stream.
    async fn read_tls(&mut self, cancel: Option<CancelHandle>) -> Result<bool, TlsError> {
        let mut rx = std::mem::take(&mut self.rx);
        rx.clear();
        self.rx_pos = 0;
        if rx.capacity() < RX_BUF {
            rx.reserve(RX_BUF);
        }
        let (res, rx) = match cancel {
            Some(handle) => self.tcp.cancelable_read(rx, handle).await,
            None => self.tcp.read(rx).await,
        };
        self.rx = rx;
        let n = res?;
        if n == 0 {
            self.closed = true;
            // A zero-length read tells rustls the stream ended.
            let _ = self.conn.read_tls(&mut io::empty());
            let _ = self.process().await;
            return Ok(false);
        }
        if std::mem::take(&mut self.fresh)
            && matches!(self.conn, rustls::Connection::Server(_))
            && self.rx.first().is_some_and(u8::is_ascii_uppercase)
        {
            // A TLS record starts with its content type (0x16 for a handshake); a request line
            // starts with a method.
            return Err(TlsError::PlainHttp);
        }
        self.feed().await?;
        Ok(true)
    }

    /// Processes what rustls received; on a protocol error its alert is sent first.
    async fn process(&mut self) -> Result<(), TlsError> {
        match self.conn.process_new_packets() {
            Ok(state) => {
                self.pending = state.plaintext_bytes_to_read();
                if state.peer_has_closed() {
                    self.closed = true;
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.flush().await;
                Err(TlsError::Protocol(e))
            }
        }
    }

    /// Writes whatever rustls has queued.
    ///
    /// # Errors
    /// The socket's.
    pub async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut tx = std::mem::take(&mut self.tx);
            tx.clear();
            self.conn.write_tls(&mut tx)?;
            let (res, tx) = self.tcp.write_all(tx).await;
            self.tx = tx;
            res?;
        }
        Ok(())
    }

    /// Appends plaintext to `buf` (growing it when full); `Ok(0)` at the end of the stream.
    /// With `cancel`, a wait for ciphertext ends when the handle is cancelled.
    ///
    /// # Errors
    /// The socket's, or the protocol's (as `InvalidData`).
    pub async fn read_more(
        &mut self,
        buf: &mut Vec<u8>,
        cancel: Option<CancelHandle>,
    ) -> io::Result<usize> {
        loop {
            if self.pending > 0 {
                if buf.len() == buf.capacity() {
                    buf.reserve(buf.capacity().max(4096));
                }
                let len = buf.len();
                let want = self.pending.min(buf.capacity() - len);
                buf.resize(len + want, 0);
                let read = self
                    .conn
                    .reader()
                    .read(buf.get_mut(len..).unwrap_or_default());
                match read {
                    Ok(n) => {
                        buf.truncate(len + n);
                        self.pending = self.pending.saturating_sub(n);
                        if n > 0 {
                            return Ok(n);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        buf.truncate(len);
                        self.pending = 0;
                    }
                    Err(e) => {
                        buf.truncate(len);
                        return Err(e);
                    }
                }
            }
            if self.feed().await? {
                continue;
            }
            if self.closed {
                return Ok(0);
            }
            if !self.read_tls(cancel.clone()).await? {
                continue;
            }
            // Post-handshake messages (key updates, tickets) may want an answer.
            self.flush().await?;
        }
    }

    /// Encrypts and writes all of `data`.
    ///
    /// # Errors
    /// The socket's.
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.conn.writer().write(data)?;
            data = data.get(n..).unwrap_or_default();
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends close_notify, then shuts the socket down.
    pub async fn shutdown(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush().await;
        let _ = monoio::io::AsyncWriteRent::shutdown(&mut self.tcp).await;
    }

    /// Whether a pooled connection is still clean: reads without blocking what the peer sent
    /// meanwhile and gives it to rustls. Handshake messages (TLS 1.3 session tickets) are fine;
    /// application data, close_notify, an error or the end of the stream are not.
    pub fn poll_idle(&mut self) -> bool {
        if self.closed || self.pending > 0 || self.rx_pos < self.rx.len() {
            return false;
        }
        loop {
            match crate::sock::peek_state(&self.tcp) {
                crate::sock::PeekState::Silent => return true,
                crate::sock::PeekState::Closed => return false,
                crate::sock::PeekState::Data => {}
            }
            let mut rx = std::mem::take(&mut self.rx);
            rx.clear();
            rx.resize(RX_BUF, 0);
            let n = crate::sock::recv_now(&self.tcp, &mut rx).unwrap_or(0);
            rx.truncate(n);
            self.rx = rx;
            self.rx_pos = 0;
            if n == 0 {
                return false;
            }
            // Given to rustls here; what it does not take stays in `rx` for the next read.
            while self.rx_pos < self.rx.len() {
                let mut input = self.rx.get(self.rx_pos..).unwrap_or_default();
                let before = input.len();
                if self.conn.read_tls(&mut input).is_err() {
                    return false;
                }
                self.rx_pos += before - input.len();
                match self.conn.process_new_packets() {
                    Ok(state) => {
                        self.pending = state.plaintext_bytes_to_read();
                        self.closed |= state.peer_has_closed();
                        if self.pending > 0 || self.closed {
                            return false;
                        }
                    }
                    Err(_) => {
                        self.closed = true;
                        return false;
                    }
                }
            }
        }
    }
}

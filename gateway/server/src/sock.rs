//! Non-blocking socket reads outside the ring: a one-byte peek (is a pooled connection still
//! silent?) and a read of what is already there. One syscall each, no await; used by the
//! upstream pool, the plain stream and the TLS stream alike.

use std::io;
use std::os::fd::AsRawFd;

use monoio::net::TcpStream;

/// What a non-blocking peek finds on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeekState {
    /// Nothing to read (EAGAIN).
    Silent,
    /// Bytes wait to be read.
    Data,
    /// End of stream, or an error.
    Closed,
}

/// Peeks at one byte without blocking (one syscall).
#[allow(unsafe_code)]
pub fn peek_state(stream: &TcpStream) -> PeekState {
    let mut byte = 0u8;
    // SAFETY: `recv` writes at most 1 byte into `byte`, a valid, writable 1-byte buffer that
    // outlives the call; the fd belongs to `stream`, which is alive for the duration of the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            std::ptr::from_mut(&mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        1.. => PeekState::Data,
        0 => PeekState::Closed,
        _ if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => PeekState::Silent,
        _ => PeekState::Closed,
    }
}

/// Reads what is there without blocking (one syscall): `Some(n)`, or `None` when nothing is
/// (or an error).
#[allow(unsafe_code)]
pub fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `recv` writes at most `buf.len()` bytes into `buf`, a valid, writable slice that
    // outlives the call; the fd belongs to `stream`, alive for the duration of the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).ok()
}

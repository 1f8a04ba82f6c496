//! Body framing decoders: fed arbitrary slices, they say which bytes are payload (as ranges into
//! the slice, so the caller forwards without copying) and where the body ends.

use std::ops::Range;

use super::chunked::{ChunkedDecoder, ChunkedLimits};
use super::error::{ErrorKind, HttpError, Side};

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyFraming {
    /// No body: the next message starts right after the head.
    None,
    /// Exactly this many bytes.
    ContentLength(u64),
    /// Chunked transfer coding, ending with a zero-size chunk and a (possibly empty) trailer
    /// section.
    Chunked,
    /// Responses only: the body runs until the upstream closes the connection.
    ///
    /// RFC 9112 §6.3 also reads a response whose Transfer-Encoding does not end in `chunked`
    /// until close; this codec rejects those instead (see [`HeadParser::parse_response`]).
    ///
    /// [`HeadParser::parse_response`]: super::HeadParser::parse_response
    UntilClose,
}

/// Size limits for a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Most payload bytes (413 for a request). `u64::MAX` for no limit.
    pub max_body_bytes: u64,
    /// Limits of the chunked framing.
    pub chunked: ChunkedLimits,
}

impl Default for BodyLimits {
    /// No payload limit; default chunked limits.
    fn default() -> Self {
        Self {
            max_body_bytes: u64::MAX,
            chunked: ChunkedLimits::default(),
        }
    }
}

/// What one [`BodyDecoder::decode`] or [`ChunkedDecoder::decode`] call found in its input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decoded {
    /// Bytes of the input that belong to this body (framing included). When `done`, the bytes
    /// after them belong to the next message; otherwise a chunked decoder may stop early, after
    /// one payload range, and the caller calls again with the rest of the input.
    pub consumed: usize,
    /// Payload bytes, as a range of the input (possibly empty).
    pub data: Range<usize>,
    /// Raw, validated trailer-section bytes seen in this call, as a range of the input. Over all
    /// calls they are the trailer field lines followed by the final CRLF, so a proxy that
    /// re-chunks writes `0\r\n` and then these bytes; one that drops trailers writes
    /// `0\r\n\r\n`.
    pub trailers: Range<usize>,
    /// Whether the body is complete.
    pub done: bool,
}

#[derive(Debug, Clone)]
enum Mode {
    Empty,
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
    UntilClose { seen: u64, max: u64, closed: bool },
}

/// Decodes one message body according to its [`BodyFraming`], with no allocation and no copy.
///
/// Call [`decode`](Self::decode) with the bytes that follow the head, then with each newly read
/// slice (or the unconsumed rest of one) until [`Decoded::done`]; call [`on_eof`](Self::on_eof)
/// when the peer closes the connection.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    mode: Mode,
    side: Side,
}

impl BodyDecoder {
    /// A decoder for a body sent by `side` with the given framing and limits.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BodyTooLarge`] when a Content-Length already exceeds
    /// `limits.max_body_bytes`.
    pub fn new(framing: BodyFraming, side: Side, limits: BodyLimits) -> Result<Self, HttpError> {
        let mode = match framing {
            BodyFraming::None => Mode::Empty,
            BodyFraming::ContentLength(n) if n > limits.max_body_bytes => {
                return Err(HttpError::new(side, ErrorKind::BodyTooLarge));
            }
            BodyFraming::ContentLength(0) => Mode::Empty,
            BodyFraming::ContentLength(n) => Mode::Length { remaining: n },
            BodyFraming::Chunked => Mode::Chunked(ChunkedDecoder::new(
                side,
                limits.chunked,
                limits.max_body_bytes,
            )),
            BodyFraming::UntilClose => Mode::UntilClose {
                seen: 0,
                max: limits.max_body_bytes,
                closed: false,
            },
        };
        Ok(Self { mode, side })
    }

    /// A decoder for a request body (errors are [`Side::Downstream`]).
    ///
    /// # Errors
    ///
    /// As [`BodyDecoder::new`].
    pub fn request(framing: BodyFraming, limits: BodyLimits) -> Result<Self, HttpError> {
        Self::new(framing, Side::Downstream, limits)
    }

    /// A decoder for a response body (errors are [`Side::Upstream`]).
    ///
    /// # Errors
    ///
    /// As [`BodyDecoder::new`].
    pub fn response(framing: BodyFraming, limits: BodyLimits) -> Result<Self, HttpError> {
        Self::new(framing, Side::Upstream, limits)
    }

    /// Decodes the next bytes of the body.
    ///
    /// # Errors
    ///
    /// Malformed chunked framing, or more payload than `max_body_bytes`. After an error the
    /// connection is out of sync and must be closed.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, HttpError> {
        match &mut self.mode {
            Mode::Empty => Ok(Decoded {
                done: true,
                ..Decoded::default()
            }),
            Mode::Length { remaining } => {
                let take = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                *remaining = remaining.saturating_sub(take as u64);
                Ok(Decoded {
                    consumed: take,
                    data: 0..take,
                    trailers: 0..0,
                    done: *remaining == 0,
                })
            }
            Mode::Chunked(chunked) => chunked.decode(input),
            Mode::UntilClose { seen, max, closed } => {
                if *closed {
                    return Ok(Decoded {
                        done: true,
                        ..Decoded::default()
                    });
                }
                *seen = seen.saturating_add(input.len() as u64);
                if *seen > *max {
                    return Err(HttpError::new(self.side, ErrorKind::BodyTooLarge));
                }
                Ok(Decoded {
                    consumed: input.len(),
                    data: 0..input.len(),
                    trailers: 0..0,
                    done: false,
                })
            }
        }
    }

    /// Whether the body is complete.
    #[must_use]
    pub fn is_done(&self) -> bool {
        match &self.mode {
            Mode::Empty => true,
            Mode::Length { remaining } => *remaining == 0,
            Mode::Chunked(chunked) => chunked.is_done(),
            Mode::UntilClose { closed, .. } => *closed,
        }
    }

    /// Payload bytes still expected, when the framing says (no body or Content-Length).
    #[must_use]
    pub fn remaining(&self) -> Option<u64> {
        match &self.mode {
            Mode::Empty => Some(0),
            Mode::Length { remaining } => Some(*remaining),
            Mode::Chunked(_) | Mode::UntilClose { .. } => None,
        }
    }

    /// The peer closed the connection: completes a close-delimited body.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::IncompleteBody`] when the framing expected more bytes.
    pub fn on_eof(&mut self) -> Result<(), HttpError> {
        if let Mode::UntilClose { closed, .. } = &mut self.mode {
            *closed = true;
        }
        if self.is_done() {
            Ok(())
        } else {
            Err(HttpError::new(self.side, ErrorKind::IncompleteBody))
        }
    }
}

//! Chunked transfer coding decoder (RFC 9112 §7.1): a byte-level state machine for the framing,
//! bulk ranges for the payload.

use super::body::Decoded;
use super::error::{ErrorKind, HttpError, Side};
use super::framing::is_tchar;

/// Limits of the chunked framing itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Most bytes in a chunk-size line (hex size and extensions, CRLF excluded).
    pub max_size_line_bytes: usize,
    /// Most bytes in the trailer section (field lines and the final CRLF).
    pub max_trailer_bytes: usize,
}

impl Default for ChunkedLimits {
    /// 4 KiB per size line, 8 KiB of trailers.
    fn default() -> Self {
        Self {
            max_size_line_bytes: 4096,
            max_trailer_bytes: 8192,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of the chunk size.
    Size,
    /// Chunk extensions, skipped up to CR.
    Ext,
    /// CR of the size line seen.
    SizeLf,
    /// Payload bytes of the current chunk.
    Data,
    /// CR after the payload expected.
    DataCr,
    /// LF after the payload expected.
    DataLf,
    /// At the start of a trailer field line or of the final CRLF.
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// CR of a trailer field line seen.
    TrailerLf,
    /// CR of the final empty line seen.
    FinalLf,
    /// The body is complete.
    Done,
}

/// Incremental decoder of a chunked body.
///
/// Each [`decode`](Self::decode) call reports at most one payload range: it consumes framing
/// bytes, then the payload of the current chunk as far as the input goes, then framing bytes up
/// to the next chunk's payload (or the end of the body).
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    side: Side,
    limits: ChunkedLimits,
    max_body: u64,
    size: u64,
    has_digit: bool,
    line_len: usize,
    remaining: u64,
    total: u64,
    trailer_len: usize,
    /// The current trailer field's name, lowercased, while it could still be a framing field.
    trailer_name: [u8; FRAMING_NAME_MAX],
    /// Its length so far; past [`FRAMING_NAME_MAX`] it is no framing field.
    trailer_name_len: usize,
}

/// The longest framing field name (`transfer-encoding`).
const FRAMING_NAME_MAX: usize = 17;

impl ChunkedDecoder {
    /// A decoder for a body sent by `side`, allowing at most `max_body` payload bytes.
    #[must_use]
    pub fn new(side: Side, limits: ChunkedLimits, max_body: u64) -> Self {
        Self {
            state: State::Size,
            side,
            limits,
            max_body,
            size: 0,
            has_digit: false,
            line_len: 0,
            remaining: 0,
            total: 0,
            trailer_len: 0,
            trailer_name: [0; FRAMING_NAME_MAX],
            trailer_name_len: 0,
        }
    }

    /// Whether the last chunk and the trailer section have been consumed.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes announced by the chunk sizes read so far.
    #[must_use]
    pub fn payload_len(&self) -> u64 {
        self.total
    }

    /// Decodes the next bytes of the body.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidChunkSize`], [`ErrorKind::ChunkSizeOverflow`],
    /// [`ErrorKind::ChunkLineTooLong`], [`ErrorKind::InvalidChunkTerminator`],
    /// [`ErrorKind::InvalidTrailer`], [`ErrorKind::TrailersTooLarge`] or
    /// [`ErrorKind::BodyTooLarge`].
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, HttpError> {
        let side = self.side;
        let err = |kind| HttpError::new(side, kind);
        let mut out = Decoded::default();
        let mut data_seen = false;
        let mut trailer_start: Option<usize> = None;
        let mut pos = 0;
        while self.state != State::Done {
            if self.state == State::Data {
                if data_seen {
                    break;
                }
                let available = input.len().saturating_sub(pos);
                let take = usize::try_from(self.remaining).map_or(available, |r| r.min(available));
                if take == 0 {
                    break;
                }
                out.data = pos..pos + take;
                data_seen = true;
                pos += take;
                self.remaining = self.remaining.saturating_sub(take as u64);
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let Some(&b) = input.get(pos) else { break };
            if matches!(
                self.state,
                State::TrailerStart
                    | State::TrailerName
                    | State::TrailerValue
                    | State::TrailerLf
                    | State::FinalLf
            ) {
                trailer_start.get_or_insert(pos);
                self.trailer_len += 1;
                if self.trailer_len > self.limits.max_trailer_bytes {
                    return Err(err(ErrorKind::TrailersTooLarge));
                }
            }
            self.step(b).map_err(err)?;
            pos += 1;
        }
        if let Some(start) = trailer_start {
            out.trailers = start..pos;
        }
        out.consumed = pos;
        out.done = self.state == State::Done;
        Ok(out)
    }

    /// Advances the framing state machine by one byte.
    fn step(&mut self, b: u8) -> Result<(), ErrorKind> {
        match self.state {
            State::Size | State::Ext => {
                if b != b'\r' {
                    self.line_len += 1;
                    if self.line_len > self.limits.max_size_line_bytes {
                        return Err(ErrorKind::ChunkLineTooLong);
                    }
                }
                self.step_size_line(b)?;
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ErrorKind::InvalidChunkSize);
                }
                if self.size == 0 {
                    self.state = State::TrailerStart;
                } else {
                    self.total = self
                        .total
                        .checked_add(self.size)
                        .filter(|&total| total <= self.max_body)
                        .ok_or(ErrorKind::BodyTooLarge)?;
                    self.remaining = self.size;
                    self.state = State::Data;
                }
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(ErrorKind::InvalidChunkTerminator);
                }
                self.state = State::DataLf;
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(ErrorKind::InvalidChunkTerminator);
                }
                self.size = 0;
                self.has_digit = false;
                self.line_len = 0;
                self.state = State::Size;
            }
            State::TrailerStart => {
                self.state = match b {
                    b'\r' => State::FinalLf,
                    _ if is_tchar(b) => {
                        self.trailer_name_len = 0;
                        self.push_trailer_name(b);
                        State::TrailerName
                    }
                    // Leading whitespace would be obs-fold; anything else is garbage.
                    _ => return Err(ErrorKind::InvalidTrailer),
                };
            }
            State::TrailerName => match b {
                b':' => {
                    // Framing fields are not allowed in a trailer section (RFC 9110 §6.5.1);
                    // readers that honour or validate them (h11) would read it differently.
                    let name = self.trailer_name.get(..self.trailer_name_len);
                    if matches!(name, Some(b"content-length" | b"transfer-encoding")) {
                        return Err(ErrorKind::InvalidTrailer);
                    }
                    self.state = State::TrailerValue;
                }
                _ if is_tchar(b) => self.push_trailer_name(b),
                _ => return Err(ErrorKind::InvalidTrailer),
            },
            State::TrailerValue => match b {
                b'\r' => self.state = State::TrailerLf,
                b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                _ => return Err(ErrorKind::InvalidTrailer),
            },
            State::TrailerLf => {
                if b != b'\n' {
                    return Err(ErrorKind::InvalidTrailer);
                }
                self.state = State::TrailerStart;
            }
            State::FinalLf => {
                if b != b'\n' {
                    return Err(ErrorKind::InvalidTrailer);
                }
                self.state = State::Done;
            }
            // Data is consumed in bulk by `decode`; Done never steps.
            State::Data | State::Done => {}
        }
        Ok(())
    }

    /// chunk-size [ chunk-ext ] CRLF, where chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS val ] ).
    ///
    /// Stricter than that grammar: no whitespace between the size and the first `;` (nor
    /// before the CRLF), which h11 and other readers refuse; a chunk size line is read one way
    /// or refused. What follows the `;` is skipped.
    fn step_size_line(&mut self, b: u8) -> Result<(), ErrorKind> {
        match self.state {
            State::Size => {
                if let Some(digit) = hex_value(b) {
                    if self.size > u64::MAX >> 4 {
                        return Err(ErrorKind::ChunkSizeOverflow);
                    }
                    // The shift leaves the low 4 bits zero: `^` would do as well as `|`
                    // (an equivalent mutant, docs/testing.md).
                    self.size = (self.size << 4) | u64::from(digit);
                    self.has_digit = true;
                    return Ok(());
                }
                if !self.has_digit {
                    return Err(ErrorKind::InvalidChunkSize);
                }
                self.state = match b {
                    b'\r' => State::SizeLf,
                    b';' => State::Ext,
                    _ => return Err(ErrorKind::InvalidChunkSize),
                };
            }
            State::Ext => match b {
                b'\r' => self.state = State::SizeLf,
                // Extensions are ignored, but only printable bytes may hide in them.
                b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                _ => return Err(ErrorKind::InvalidChunkSize),
            },
            _ => {}
        }
        Ok(())
    }
}

impl ChunkedDecoder {
    /// Records one more byte of the current trailer field's name (lowercased).
    fn push_trailer_name(&mut self, b: u8) {
        if let Some(slot) = self.trailer_name.get_mut(self.trailer_name_len) {
            *slot = b.to_ascii_lowercase();
        }
        self.trailer_name_len = self.trailer_name_len.saturating_add(1);
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

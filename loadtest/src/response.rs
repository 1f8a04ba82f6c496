//! A small sans-IO HTTP/1.1 response parser: status line, `Content-Length`, chunked bodies,
//! close-delimited bodies and `Connection: close`. It reads bytes it is given and says how many
//! it consumed; it never allocates and keeps no body bytes.
//!
//! The head must arrive whole in the caller's buffer (the caller keeps unconsumed bytes); body
//! bytes are consumed as they come and may be dropped by the caller.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

#[cfg(test)]
mod tests;

/// Why a response could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The status line is not `HTTP/1.x NNN ...`.
    StatusLine,
    /// A header line has no colon or a bad value.
    Header,
    /// Two different `Content-Length` values.
    ConflictingLength,
    /// A chunk-size line is malformed.
    Chunk,
    /// The connection closed before the response was complete.
    Truncated,
}

/// What a call to [`ResponseParser::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More bytes are needed; `consumed` bytes from the front may be dropped.
    NeedMore {
        /// Bytes consumed from the front of the input.
        consumed: usize,
    },
    /// The response is complete.
    Done {
        /// Bytes consumed from the front of the input (any rest belongs to the next response).
        consumed: usize,
        /// Final status code.
        status: u16,
        /// Whether the server will close the connection (or already did).
        close: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a complete head (an incomplete one is parsed again when more bytes come:
    /// heads split across reads are rare and small).
    Head,
    /// `remaining` body bytes to skip.
    Length {
        remaining: u64,
    },
    Chunked(Chunk),
    /// Body runs until the peer closes.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { size: u64, digits: u8 },
    Extension { size: u64 },
    SizeLf { size: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
}

/// Incremental parser for one response at a time; reset by itself after each `Done`.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    state: State,
    status: u16,
    close: bool,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self::new()
    }
}

/// A parsed response head. (A head that does not fit in the caller's buffer is refused by the
/// caller, not here.)
struct Head {
    len: usize,
    status: u16,
    close: bool,
    body: Body,
}

enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl ResponseParser {
    /// A parser waiting for a status line.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: State::Head,
            status: 0,
            close: false,
        }
    }

    /// Whether the parser is between responses (nothing of the next response seen yet).
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.state == State::Head
    }

    /// Feeds the bytes received so far (those not yet consumed). `head_request` says the request
    /// was `HEAD`, whose response has no body whatever its headers say.
    ///
    /// # Errors
    /// A [`ParseError`] when the bytes are not a valid response; the connection should be closed.
    pub fn feed(&mut self, input: &[u8], head_request: bool) -> Result<Step, ParseError> {
        let mut consumed = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            match self.state {
                State::Head => {
                    let Some(head) = parse_head(rest)? else {
                        return Ok(Step::NeedMore { consumed });
                    };
                    consumed += head.len;
                    // 1xx (but 101, which ends HTTP/1.1) are interim: the real response follows.
                    if (100..200).contains(&head.status) && head.status != 101 {
                        self.state = State::Head;
                        continue;
                    }
                    self.status = head.status;
                    self.close = head.close;
                    let body = if head_request
                        || head.status == 204
                        || head.status == 304
                        || head.status == 101
                    {
                        Body::None
                    } else {
                        head.body
                    };
                    match body {
                        Body::None | Body::Length(0) => return Ok(self.finish(consumed)),
                        Body::Length(n) => self.state = State::Length { remaining: n },
                        Body::Chunked => {
                            self.state = State::Chunked(Chunk::Size { size: 0, digits: 0 });
                        }
                        Body::UntilClose => {
                            self.close = true;
                            self.state = State::UntilClose;
                        }
                    }
                }
                State::Length { remaining } => {
                    let avail = rest.len() as u64;
                    if avail >= remaining {
                        // remaining <= avail <= usize::MAX
                        consumed += usize::try_from(remaining).unwrap_or(usize::MAX);
                        return Ok(self.finish(consumed));
                    }
                    self.state = State::Length {
                        remaining: remaining - avail,
                    };
                    return Ok(Step::NeedMore {
                        consumed: input.len(),
                    });
                }
                State::Chunked(chunk) => {
                    let (used, next) = chunked(chunk, rest)?;
                    consumed += used;
                    match next {
                        Some(chunk) => {
                            self.state = State::Chunked(chunk);
                            return Ok(Step::NeedMore { consumed });
                        }
                        None => return Ok(self.finish(consumed)),
                    }
                }
                State::UntilClose => {
                    return Ok(Step::NeedMore {
                        consumed: input.len(),
                    });
                }
            }
        }
    }

    /// The peer closed the connection: completes a close-delimited body, fails anything else.
    ///
    /// # Errors
    /// [`ParseError::Truncated`] when a response was under way and is not close-delimited.
    pub fn eof(&mut self) -> Result<Step, ParseError> {
        match self.state {
            State::UntilClose => Ok(self.finish(0)),
            _ => {
                self.state = State::Head;
                Err(ParseError::Truncated)
            }
        }
    }

    fn finish(&mut self, consumed: usize) -> Step {
        self.state = State::Head;
        Step::Done {
            consumed,
            status: self.status,
            close: self.close,
        }
    }
}

/// Parses a response head at the start of `buf` in one pass: `None` while its blank line has
/// not arrived.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ParseError> {
    let Some(nl) = find_nl(buf) else {
        return Ok(None);
    };
    let (http10, status) = parse_status_line(trim_cr(buf.get(..nl).unwrap_or_default()))?;
    let mut close = http10;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut pos = nl + 1;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(nl) = find_nl(rest) else {
            return Ok(None);
        };
        let line = trim_cr(rest.get(..nl).unwrap_or_default());
        pos += nl + 1;
        if line.is_empty() {
            break;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(ParseError::Header)?;
        let (name, value) = line.split_at(colon);
        // Only three headers matter; their lengths tell them apart cheaply.
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let value = trim(value.get(1..).unwrap_or_default());
                let n = parse_decimal(value).ok_or(ParseError::Header)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ParseError::ConflictingLength);
                }
                length = Some(n);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // Only the last coding decides; chunked must be last when present.
                let value = trim(value.get(1..).unwrap_or_default());
                let last = value.rsplit(|&b| b == b',').next().map(trim);
                chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                let value = value.get(1..).unwrap_or_default();
                for token in value.split(|&b| b == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            }
            _ => {}
        }
    }
    let body = if chunked {
        Body::Chunked
    } else if let Some(n) = length {
        Body::Length(n)
    } else {
        Body::UntilClose
    };
    Ok(Some(Head {
        len: pos,
        status,
        close,
        body,
    }))
}

fn find_nl(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// `HTTP/1.1 200 OK` → (is HTTP/1.0, 200).
fn parse_status_line(line: &[u8]) -> Result<(bool, u16), ParseError> {
    let version = line.get(..8).ok_or(ParseError::StatusLine)?;
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err(ParseError::StatusLine),
    };
    if line.get(8) != Some(&b' ') {
        return Err(ParseError::StatusLine);
    }
    let code = line.get(9..12).ok_or(ParseError::StatusLine)?;
    let mut status: u16 = 0;
    for &b in code {
        if !b.is_ascii_digit() {
            return Err(ParseError::StatusLine);
        }
        status = status * 10 + u16::from(b - b'0');
    }
    if status < 100 || !matches!(line.get(12), None | Some(b' ')) {
        return Err(ParseError::StatusLine);
    }
    Ok((http10, status))
}

fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Runs the chunked-body state machine over `input`: bytes consumed, and the next state or
/// `None` when the body (trailers included) is complete.
fn chunked(mut state: Chunk, input: &[u8]) -> Result<(usize, Option<Chunk>), ParseError> {
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        state = match state {
            Chunk::Data { remaining } => {
                let avail = (input.len() - i) as u64;
                if avail < remaining {
                    return Ok((
                        input.len(),
                        Some(Chunk::Data {
                            remaining: remaining - avail,
                        }),
                    ));
                }
                i += usize::try_from(remaining).unwrap_or(usize::MAX);
                state = Chunk::DataCr;
                continue;
            }
            Chunk::Size { size, digits } => match hex(b) {
                Some(d) => {
                    if digits >= 15 {
                        return Err(ParseError::Chunk);
                    }
                    Chunk::Size {
                        size: size * 16 + u64::from(d),
                        digits: digits + 1,
                    }
                }
                None if digits == 0 => return Err(ParseError::Chunk),
                None => match b {
                    b';' | b' ' | b'\t' => Chunk::Extension { size },
                    b'\r' => Chunk::SizeLf { size },
                    b'\n' => after_size(size),
                    _ => return Err(ParseError::Chunk),
                },
            },
            Chunk::Extension { size } => match b {
                b'\r' => Chunk::SizeLf { size },
                b'\n' => after_size(size),
                _ => Chunk::Extension { size },
            },
            Chunk::SizeLf { size } => match b {
                b'\n' => after_size(size),
                _ => return Err(ParseError::Chunk),
            },
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                b'\n' => Chunk::Size { size: 0, digits: 0 },
                _ => return Err(ParseError::Chunk),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size { size: 0, digits: 0 },
                _ => return Err(ParseError::Chunk),
            },
            Chunk::TrailerStart => match b {
                b'\r' => Chunk::FinalLf,
                b'\n' => return Ok((i + 1, None)),
                _ => Chunk::TrailerLine,
            },
            Chunk::TrailerLine => match b {
                b'\n' => Chunk::TrailerStart,
                _ => Chunk::TrailerLine,
            },
            Chunk::FinalLf => match b {
                b'\n' => return Ok((i + 1, None)),
                _ => return Err(ParseError::Chunk),
            },
        };
        i += 1;
    }
    Ok((input.len(), Some(state)))
}

fn after_size(size: u64) -> Chunk {
    if size == 0 {
        Chunk::TrailerStart
    } else {
        Chunk::Data { remaining: size }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

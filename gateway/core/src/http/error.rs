//! The codec's one error type: which peer misbehaved, what went wrong, and the status it maps to.

use std::fmt;

/// Which peer sent the bytes that failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client talking to the gateway (requests and their bodies).
    Downstream,
    /// The backend the gateway forwards to (responses and their bodies).
    Upstream,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
        })
    }
}

/// What was wrong with the bytes. Every kind has a stable [`code`](ErrorKind::code) for events and
/// metrics, and a [`status`](ErrorKind::status) used when the peer at fault is downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The head did not end within the configured byte limit.
    #[error("message head exceeds the size limit")]
    HeadTooLarge,
    /// The head has more header fields than the configured limit.
    #[error("too many header fields")]
    TooManyHeaders,
    /// A line ended with LF not preceded by CR.
    #[error("bare LF used as a line terminator")]
    BareLf,
    /// A CR not followed by LF.
    #[error("bare CR in the message head")]
    BareCr,
    /// A header line began with whitespace (obsolete line folding).
    #[error("obsolete line folding in a header field")]
    ObsFold,
    /// The request method is not a token.
    #[error("invalid request method")]
    InvalidMethod,
    /// The request target is malformed or its form does not suit the method.
    #[error("invalid request target")]
    InvalidTarget,
    /// The version is not `HTTP/1.0` or `HTTP/1.1` (505, which also answers an HTTP/2 preface).
    #[error("unsupported or malformed HTTP version")]
    InvalidVersion,
    /// The status line of a response is malformed or its code is outside 100..=599.
    #[error("malformed status line")]
    InvalidStatus,
    /// A header name is empty, contains a non-token byte, or is followed by whitespace before ':'.
    #[error("invalid header field name")]
    InvalidHeaderName,
    /// A header value contains a control character.
    #[error("invalid header field value")]
    InvalidHeaderValue,
    /// An HTTP/1.1 request has no Host header.
    #[error("missing Host header")]
    MissingHost,
    /// A request has more than one Host header.
    #[error("more than one Host header")]
    DuplicateHost,
    /// The Host value is not a valid authority.
    #[error("invalid Host header")]
    InvalidHost,
    /// Both Content-Length and Transfer-Encoding are present.
    #[error("both Content-Length and Transfer-Encoding present")]
    ConflictingFraming,
    /// Content-Length appears more than once (even with equal values).
    #[error("more than one Content-Length header")]
    DuplicateContentLength,
    /// Content-Length is not plain decimal digits, is a list, or overflows u64.
    #[error("invalid Content-Length value")]
    InvalidContentLength,
    /// Transfer-Encoding is malformed, does not end in `chunked`, repeats `chunked`, or appears
    /// in an HTTP/1.0 message.
    #[error("invalid Transfer-Encoding")]
    InvalidTransferEncoding,
    /// Transfer-Encoding applies a coding before `chunked` (e.g. `gzip, chunked`); the gateway
    /// does not decode transfer codings.
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// CONNECT (tunnelling) is not offered by the gateway.
    #[error("CONNECT is not supported")]
    ConnectUnsupported,
    /// The body is larger than the configured limit.
    #[error("message body exceeds the size limit")]
    BodyTooLarge,
    /// A chunk-size line has no hex digits, a non-hex digit, or malformed extensions.
    #[error("invalid chunk size line")]
    InvalidChunkSize,
    /// A chunk size does not fit in 64 bits.
    #[error("chunk size overflows")]
    ChunkSizeOverflow,
    /// A chunk-size line (size plus extensions) exceeds its limit.
    #[error("chunk size line too long")]
    ChunkLineTooLong,
    /// Chunk data is not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    InvalidChunkTerminator,
    /// A trailer field line, or the final CRLF of a chunked body, is malformed.
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// The trailer section exceeds its byte limit.
    #[error("trailer section exceeds the size limit")]
    TrailersTooLarge,
    /// The connection closed before the body was complete.
    #[error("connection closed before the body was complete")]
    IncompleteBody,
}

impl ErrorKind {
    /// Every kind, in declaration order: `ALL[k.index()] == k`.
    pub const ALL: [ErrorKind; 28] = [
        ErrorKind::HeadTooLarge,
        ErrorKind::TooManyHeaders,
        ErrorKind::BareLf,
        ErrorKind::BareCr,
        ErrorKind::ObsFold,
        ErrorKind::InvalidMethod,
        ErrorKind::InvalidTarget,
        ErrorKind::InvalidVersion,
        ErrorKind::InvalidStatus,
        ErrorKind::InvalidHeaderName,
        ErrorKind::InvalidHeaderValue,
        ErrorKind::MissingHost,
        ErrorKind::DuplicateHost,
        ErrorKind::InvalidHost,
        ErrorKind::ConflictingFraming,
        ErrorKind::DuplicateContentLength,
        ErrorKind::InvalidContentLength,
        ErrorKind::InvalidTransferEncoding,
        ErrorKind::UnsupportedTransferCoding,
        ErrorKind::ConnectUnsupported,
        ErrorKind::BodyTooLarge,
        ErrorKind::InvalidChunkSize,
        ErrorKind::ChunkSizeOverflow,
        ErrorKind::ChunkLineTooLong,
        ErrorKind::InvalidChunkTerminator,
        ErrorKind::InvalidTrailer,
        ErrorKind::TrailersTooLarge,
        ErrorKind::IncompleteBody,
    ];

    /// This kind's position in [`ErrorKind::ALL`] (a dense index for per-kind counters).
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A stable, short, snake_case identifier for events, metrics and logs.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::HeadTooLarge => "head_too_large",
            ErrorKind::TooManyHeaders => "too_many_headers",
            ErrorKind::BareLf => "bare_lf",
            ErrorKind::BareCr => "bare_cr",
            ErrorKind::ObsFold => "obs_fold",
            ErrorKind::InvalidMethod => "invalid_method",
            ErrorKind::InvalidTarget => "invalid_target",
            ErrorKind::InvalidVersion => "invalid_version",
            ErrorKind::InvalidStatus => "invalid_status",
            ErrorKind::InvalidHeaderName => "invalid_header_name",
            ErrorKind::InvalidHeaderValue => "invalid_header_value",
            ErrorKind::MissingHost => "missing_host",
            ErrorKind::DuplicateHost => "duplicate_host",
            ErrorKind::InvalidHost => "invalid_host",
            ErrorKind::ConflictingFraming => "conflicting_framing",
            ErrorKind::DuplicateContentLength => "duplicate_content_length",
            ErrorKind::InvalidContentLength => "invalid_content_length",
            ErrorKind::InvalidTransferEncoding => "invalid_transfer_encoding",
            ErrorKind::UnsupportedTransferCoding => "unsupported_transfer_coding",
            ErrorKind::ConnectUnsupported => "connect_unsupported",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::InvalidChunkSize => "invalid_chunk_size",
            ErrorKind::ChunkSizeOverflow => "chunk_size_overflow",
            ErrorKind::ChunkLineTooLong => "chunk_line_too_long",
            ErrorKind::InvalidChunkTerminator => "invalid_chunk_terminator",
            ErrorKind::InvalidTrailer => "invalid_trailer",
            ErrorKind::TrailersTooLarge => "trailers_too_large",
            ErrorKind::IncompleteBody => "incomplete_body",
        }
    }

    /// The status to answer a downstream client with when it sent these bytes.
    ///
    /// 408 is not here: timeouts belong to the IO shell, which owns the clock.
    #[must_use]
    pub const fn status(self) -> u16 {
        match self {
            ErrorKind::HeadTooLarge | ErrorKind::TooManyHeaders | ErrorKind::TrailersTooLarge => {
                431
            }
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::UnsupportedTransferCoding | ErrorKind::ConnectUnsupported => 501,
            ErrorKind::InvalidVersion => 505,
            _ => 400,
        }
    }
}

/// A framing or syntax error from the HTTP/1.1 codec.
///
/// The connection it happened on cannot be trusted to be in sync any more: the caller answers
/// (downstream) or fails the exchange (upstream) and closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{side} HTTP error ({code}): {kind}", code = kind.code())]
pub struct HttpError {
    side: Side,
    kind: ErrorKind,
}

impl HttpError {
    /// Builds an error for bytes sent by `side`.
    #[must_use]
    pub const fn new(side: Side, kind: ErrorKind) -> Self {
        Self { side, kind }
    }

    /// Which peer sent the offending bytes.
    #[must_use]
    pub const fn side(&self) -> Side {
        self.side
    }

    /// What was wrong.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable short code of the kind, e.g. `"conflicting_framing"`.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The status the downstream client receives: the kind's status when the client was at
    /// fault, 502 when the upstream sent a malformed response.
    #[must_use]
    pub const fn status(&self) -> u16 {
        match self.side {
            Side::Downstream => self.kind.status(),
            Side::Upstream => 502,
        }
    }
}

//! HTTP/1.1 request framing and response writing.
//!
//! [`Framer`] is a per-connection state machine over the connection's input buffer:
//! `Head` (waiting for the end of the headers) → `Body` (Content-Length) or `Chunked`
//! (de-chunked in place, incrementally, so a slow chunked body is never re-scanned) →
//! a complete [`Request`] whose slices borrow the buffer. It never allocates; running
//! out of a limit is an [`HttpError`] whose answer and whether the connection must close
//! are fixed here, in one place.
//!
//! Framing is strict where two HTTP parsers could disagree on where a request ends or
//! which value a header has (request smuggling; the list is in docs/DECISIONS.md § HTTP):
//! a bare LF or CR, obs-fold, a repeated framing or security header, any
//! Transfer-Encoding other than one `chunked` (and any at all in HTTP/1.0), a
//! Content-Length that is not one plain decimal number, and chunk lines with stray bytes
//! are all refused rather than interpreted.

mod chunked;
mod framer;
mod response;
mod status;

pub use framer::Framer;
pub use response::{
    begin_chunk, begin_response, begin_response_as, begin_stream, end_stream, finish_chunk, finish_response, itoa_buf, strip_body,
    write_error_body, write_error_object, write_json_string_content, write_no_content, write_response,
};
pub use status::{Status, reason};

/// Limits one connection's requests are held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_bytes_max: usize,
    pub headers_count_max: usize,
    pub body_bytes_max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Other,
}

/// A complete request. Header values are the raw bytes (no decoding); absent = `None`.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// Path without the query string.
    pub path: &'a [u8],
    /// The query string, without its `?` (empty when there is none); raw bytes.
    pub query: &'a [u8],
    pub content_type: Option<&'a [u8]>,
    pub key_id: Option<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
    /// `Authorization` (a JWT bearer token).
    pub authorization: Option<&'a [u8]>,
    /// `X-Request-Id` (idempotency key of the request).
    pub request_id: Option<&'a [u8]>,
    /// Standard Webhooks `webhook-id`, `webhook-timestamp` and `webhook-signature`.
    pub webhook_id: Option<&'a [u8]>,
    pub webhook_timestamp: Option<&'a [u8]>,
    pub webhook_signature: Option<&'a [u8]>,
    /// `X-Stream-Id` (a subscription stream committing its cursors).
    pub stream_id: Option<&'a [u8]>,
    /// `Last-Event-ID` (an SSE client resuming).
    pub last_event_id: Option<&'a [u8]>,
    /// `X-Replay-Id` (a request of `sluice replay run`, sent under a signed runbook).
    pub replay_id: Option<&'a [u8]>,
    /// The whole request head as received (for the dead-letter queue).
    pub head: &'a [u8],
    pub body: &'a [u8],
    /// The client wants the connection kept open after the answer.
    pub keep_alive: bool,
}

/// Why a request could not be framed. Every variant is answered and then the
/// connection is closed: once framing is lost, the next byte's meaning is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    Malformed,
    HeadersTooLarge,
    TooManyHeaders,
    BodyTooLarge,
    ContentLengthInvalid,
    ContentLengthAndChunked,
    TransferEncodingUnsupported,
    ChunkInvalid,
    VersionUnsupported,
    /// A line of the head ends in a bare LF. (A bare CR is `Malformed`: httparse refuses it.)
    LineEndingInvalid,
    /// A framing or security header (Host, Content-Type, the signing and webhook
    /// headers, Authorization, X-Request-Id) appears more than once.
    HeaderRepeated,
    /// The request target is not origin-form (`/path[?query]`): absolute-form,
    /// authority-form and `*` are refused; sluice is no proxy.
    TargetInvalid,
    /// HTTP/1.0 has no Transfer-Encoding; RFC 9112 §6.1 says to treat it as faulty framing.
    TransferEncodingInHttp10,
    /// A chunk-size line (with its extensions) is longer than `CHUNK_LINE_BYTES_MAX`.
    ChunkLineTooLong,
    /// The trailers of a chunked body exceed `CHUNK_TRAILER_BYTES_MAX`.
    TrailersTooLarge,
    /// A chunked request with its framing would not fit the connection's input buffer
    /// (`header_bytes_max + body_bytes_max`), although its data may be under the body limit.
    ChunkedTooLarge,
    /// An HTTP/1.1 request without a `Host` header (RFC 9112 §3.2).
    HostMissing,
    /// A `Host` value that is not `host[:port]` (RFC 9112 §3.2, RFC 3986 §3.2.2).
    HostInvalid,
}

impl HttpError {
    /// Every variant, in declaration order.
    pub const ALL: [HttpError; 18] = [
        HttpError::Malformed,
        HttpError::HeadersTooLarge,
        HttpError::TooManyHeaders,
        HttpError::BodyTooLarge,
        HttpError::ContentLengthInvalid,
        HttpError::ContentLengthAndChunked,
        HttpError::TransferEncodingUnsupported,
        HttpError::ChunkInvalid,
        HttpError::VersionUnsupported,
        HttpError::LineEndingInvalid,
        HttpError::HeaderRepeated,
        HttpError::TargetInvalid,
        HttpError::TransferEncodingInHttp10,
        HttpError::ChunkLineTooLong,
        HttpError::TrailersTooLarge,
        HttpError::ChunkedTooLarge,
        HttpError::HostMissing,
        HttpError::HostInvalid,
    ];

    /// The answer's status: what the framing failure is, in HTTP's own terms.
    pub fn http_status(self) -> Status {
        match self {
            HttpError::HeadersTooLarge | HttpError::TooManyHeaders => Status::HeaderFieldsTooLarge,
            HttpError::BodyTooLarge | HttpError::ChunkedTooLarge => Status::ContentTooLarge,
            HttpError::VersionUnsupported => Status::VersionNotSupported,
            _ => Status::BadRequest,
        }
    }

    /// [`HttpError::http_status`] as a number.
    pub fn status(self) -> u16 {
        self.http_status().code()
    }

    pub fn code(self) -> &'static str {
        match self {
            HttpError::Malformed => "http_malformed",
            HttpError::HeadersTooLarge => "headers_too_large",
            HttpError::TooManyHeaders => "too_many_headers",
            HttpError::BodyTooLarge => "body_too_large",
            HttpError::ContentLengthInvalid => "content_length_invalid",
            HttpError::ContentLengthAndChunked => "content_length_with_transfer_encoding",
            HttpError::TransferEncodingUnsupported => "transfer_encoding_unsupported",
            HttpError::ChunkInvalid => "chunk_invalid",
            HttpError::VersionUnsupported => "http_version_unsupported",
            HttpError::LineEndingInvalid => "line_ending_invalid",
            HttpError::HeaderRepeated => "header_repeated",
            HttpError::TargetInvalid => "request_target_invalid",
            HttpError::TransferEncodingInHttp10 => "transfer_encoding_in_http_1_0",
            HttpError::ChunkLineTooLong => "chunk_line_too_long",
            HttpError::TrailersTooLarge => "trailers_too_large",
            HttpError::ChunkedTooLarge => "chunked_request_too_large",
            HttpError::HostMissing => "host_missing",
            HttpError::HostInvalid => "host_invalid",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            HttpError::Malformed => "the request is not valid HTTP/1.1",
            HttpError::HeadersTooLarge => "request line and headers exceed ingest.header_bytes_max",
            HttpError::TooManyHeaders => "more headers than ingest.headers_count_max",
            HttpError::BodyTooLarge => "body exceeds ingest.body_bytes_max",
            HttpError::ContentLengthInvalid => "Content-Length is not one decimal number",
            HttpError::ContentLengthAndChunked => "Content-Length and Transfer-Encoding together are refused (request smuggling)",
            HttpError::TransferEncodingUnsupported => "only Transfer-Encoding: chunked is supported",
            HttpError::ChunkInvalid => "malformed chunked body",
            HttpError::VersionUnsupported => "only HTTP/1.0 and HTTP/1.1 are served",
            HttpError::LineEndingInvalid => "every line of the head must end with CRLF; a bare LF is refused",
            HttpError::HeaderRepeated => "a framing or signing header appears more than once",
            HttpError::TargetInvalid => "the request target must be a path starting with /",
            HttpError::TransferEncodingInHttp10 => "Transfer-Encoding is refused in an HTTP/1.0 request",
            HttpError::ChunkLineTooLong => "a chunk-size line is too long",
            HttpError::TrailersTooLarge => "the trailers of the chunked body are too large",
            HttpError::ChunkedTooLarge => "the chunked body with its framing exceeds ingest.header_bytes_max + ingest.body_bytes_max",
            HttpError::HostMissing => "an HTTP/1.1 request must carry one Host header",
            HttpError::HostInvalid => "the Host header is not a host with an optional port",
        }
    }
}

/// Where an incomplete request stands; the reactor picks the timeout from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No byte of a request is buffered.
    Idle,
    Head,
    Body {
        /// The client sent `Expect: 100-continue` and waits for the interim answer.
        expects_continue: bool,
    },
}

#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "returned by value once per framed request; boxing would allocate per request")]
pub enum Poll<'a> {
    Incomplete(Phase),
    /// A whole request; `consumed` bytes of the buffer belong to it.
    Complete {
        request: Request<'a>,
        consumed: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_snake_case_and_unique() {
        let all = HttpError::ALL;
        for error in all {
            assert!(error.code().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{error:?}");
            assert_eq!(all.iter().filter(|other| other.code() == error.code()).count(), 1, "{error:?}");
            assert!(!error.message().is_empty());
        }
    }
}

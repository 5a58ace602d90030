//! The client's HTTP/1.1 response framer: fed whatever a receive delivered, it reports
//! each complete response (status, and whether the server closes after it) in order.
//!
//! Heads are parsed with httparse straight from the received bytes; only a head split
//! across receives is copied (into a buffer that is kept). Bodies are never copied:
//! `Content-Length` bodies and chunked bodies (a byte-level state machine over sizes,
//! extensions, data and trailers) are skipped as they arrive. 1xx heads are skipped;
//! 204 and 304 have no body; a final response with neither length nor chunking runs to
//! the end of the connection.

#![forbid(unsafe_code)]

use std::mem::MaybeUninit;

use crate::constants::{BENCH_RESPONSE_HEAD_BYTES_MAX, BENCH_RESPONSE_HEADERS_MAX, BENCH_RESPONSE_TRAILER_BYTES_MAX};

/// One complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server closes the connection after this response (`Connection: close`,
    /// HTTP/1.0 without keep-alive, or a body delimited by the close).
    pub close: bool,
}

/// Why the bytes are not an HTTP/1.1 response stream; the connection cannot be used further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed status line or header: {0}")]
    Head(&'static str),
    #[error("response head larger than {BENCH_RESPONSE_HEAD_BYTES_MAX} bytes")]
    HeadTooLarge,
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("malformed chunked body")]
    Chunk,
    #[error("101 Switching Protocols was not asked for")]
    Upgrade,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// `Content-Length` bytes still to come.
    Body {
        remaining: u64,
    },
    /// A chunk-size line: the size so far, hex digits seen, inside an extension.
    ChunkSize {
        size: u64,
        digits: u8,
        extension: bool,
    },
    ChunkData {
        remaining: u64,
    },
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk: bytes of the current line, bytes so far.
    Trailer {
        line: usize,
        total: usize,
    },
    /// No length: the body ends when the connection does.
    UntilClose,
}

/// Per-connection framing state. Reset it (or make a new one) for a new connection.
#[derive(Debug)]
pub struct ResponseParser {
    state: State,
    /// A head that arrived in pieces (empty otherwise).
    partial: Vec<u8>,
    /// The response whose body is being read.
    current: Response,
}

impl Default for ResponseParser {
    fn default() -> Self {
        ResponseParser { state: State::Head, partial: Vec::new(), current: Response { status: 0, close: false } }
    }
}

/// What the head says about the body that follows.
enum Framing {
    Informational,
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

impl ResponseParser {
    /// Forgets any partial response (after the connection was closed). Keeps the buffer.
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.partial.clear();
    }

    /// True between responses with nothing buffered.
    pub fn is_idle(&self) -> bool {
        self.state == State::Head && self.partial.is_empty()
    }

    /// Consumes `data`, calling `on_response` for every response it completes, in order.
    /// An error leaves the parser unusable until [`reset`](Self::reset).
    pub fn feed(&mut self, data: &[u8], on_response: &mut impl FnMut(Response)) -> Result<(), ParseError> {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            match self.state {
                State::Head => match self.head(rest)? {
                    Some((consumed, response, framing)) => {
                        at += consumed;
                        self.begin_body(response, framing, on_response)?;
                    }
                    None => return Ok(()),
                },
                State::Body { remaining } => {
                    let take = remaining.min(rest.len() as u64);
                    at += take as usize;
                    if take == remaining {
                        self.finish(on_response);
                    } else {
                        self.state = State::Body { remaining: remaining - take };
                    }
                }
                State::ChunkData { remaining } => {
                    let take = remaining.min(rest.len() as u64);
                    at += take as usize;
                    self.state = if take == remaining { State::ChunkEnd } else { State::ChunkData { remaining: remaining - take } };
                }
                State::UntilClose => return Ok(()),
                State::ChunkSize { .. } | State::ChunkEnd | State::Trailer { .. } => {
                    self.chunk_byte(rest[0], on_response)?;
                    at += 1;
                }
            }
        }
        Ok(())
    }

    /// The peer closed the connection: completes a response delimited by the close.
    /// `None` if no response was in progress or the close cut one short.
    pub fn finish_at_eof(&mut self) -> Option<Response> {
        let done = (self.state == State::UntilClose).then_some(self.current);
        self.reset();
        done
    }

    /// Parses a head from `rest` (after any earlier partial bytes). Returns the bytes of
    /// `rest` it used, or `None` when all of `rest` was kept for later.
    fn head(&mut self, rest: &[u8]) -> Result<Option<(usize, Response, Framing)>, ParseError> {
        if self.partial.is_empty() {
            return match parse_head(rest)? {
                Some((length, response, framing)) => Ok(Some((length, response, framing))),
                None => {
                    self.keep_partial(rest)?;
                    Ok(None)
                }
            };
        }
        let before = self.partial.len();
        let room = BENCH_RESPONSE_HEAD_BYTES_MAX.saturating_sub(before);
        let appended = rest.len().min(room);
        self.partial.extend_from_slice(&rest[..appended]);
        match parse_head(&self.partial)? {
            Some((length, response, framing)) => {
                self.partial.clear();
                Ok(Some((length - before, response, framing)))
            }
            None if appended < rest.len() || self.partial.len() >= BENCH_RESPONSE_HEAD_BYTES_MAX => Err(ParseError::HeadTooLarge),
            None => Ok(None),
        }
    }

    fn keep_partial(&mut self, rest: &[u8]) -> Result<(), ParseError> {
        if rest.len() >= BENCH_RESPONSE_HEAD_BYTES_MAX {
            return Err(ParseError::HeadTooLarge);
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    fn begin_body(&mut self, response: Response, framing: Framing, on_response: &mut impl FnMut(Response)) -> Result<(), ParseError> {
        self.current = response;
        match framing {
            Framing::Informational => self.state = State::Head,
            Framing::Empty | Framing::Length(0) => self.finish(on_response),
            Framing::Length(length) => self.state = State::Body { remaining: length },
            Framing::Chunked => self.state = State::ChunkSize { size: 0, digits: 0, extension: false },
            Framing::UntilClose => {
                self.current.close = true;
                self.state = State::UntilClose;
            }
        }
        Ok(())
    }

    fn finish(&mut self, on_response: &mut impl FnMut(Response)) {
        self.state = State::Head;
        on_response(self.current);
    }

    /// One byte of a chunk-size line, the CRLF after chunk data, or a trailer. A bare LF
    /// is accepted where CRLF belongs (RFC 9112 §2.2 lets a recipient do so).
    fn chunk_byte(&mut self, byte: u8, on_response: &mut impl FnMut(Response)) -> Result<(), ParseError> {
        self.state = match (self.state, byte) {
            (State::ChunkSize { digits: 0, .. }, b'\n') => return Err(ParseError::Chunk),
            (State::ChunkSize { size: 0, .. }, b'\n') => State::Trailer { line: 0, total: 0 },
            (State::ChunkSize { size, .. }, b'\n') => State::ChunkData { remaining: size },
            (state @ State::ChunkSize { .. }, b'\r') => state,
            (state @ State::ChunkSize { extension: true, .. }, _) => state,
            (State::ChunkSize { size, digits, .. }, b';' | b' ' | b'\t') => State::ChunkSize { size, digits, extension: true },
            (State::ChunkSize { size, digits, .. }, _) => {
                let value = (byte as char).to_digit(16).ok_or(ParseError::Chunk)?;
                if digits >= 15 {
                    return Err(ParseError::Chunk);
                }
                State::ChunkSize { size: size << 4 | u64::from(value), digits: digits + 1, extension: false }
            }
            (State::ChunkEnd, b'\r') => State::ChunkEnd,
            (State::ChunkEnd, b'\n') => State::ChunkSize { size: 0, digits: 0, extension: false },
            (State::ChunkEnd, _) => return Err(ParseError::Chunk),
            (State::Trailer { line: 0, .. }, b'\n') => {
                self.finish(on_response);
                return Ok(());
            }
            (State::Trailer { total, .. }, b'\n') => State::Trailer { line: 0, total },
            (state @ State::Trailer { .. }, b'\r') => state,
            (State::Trailer { line, total }, _) if total < BENCH_RESPONSE_TRAILER_BYTES_MAX => {
                State::Trailer { line: line + 1, total: total + 1 }
            }
            (State::Trailer { .. }, _) => return Err(ParseError::Chunk),
            (State::Head | State::Body { .. } | State::ChunkData { .. } | State::UntilClose, _) => self.state,
        };
        Ok(())
    }
}

/// Parses one head. `Ok(None)`: incomplete. Returns its length, the response and its framing.
fn parse_head(bytes: &[u8]) -> Result<Option<(usize, Response, Framing)>, ParseError> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; BENCH_RESPONSE_HEADERS_MAX];
    let mut response = httparse::Response::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, bytes, &mut headers) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(ParseError::Head(head_error(error))),
    };
    let status = response.code.ok_or(ParseError::Head("no status code"))?;
    let mut close = response.version == Some(0);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = parse_length(header.value).ok_or(ParseError::ContentLength)?;
            if content_length.is_some_and(|earlier| earlier != value) {
                return Err(ParseError::ContentLength);
            }
            content_length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = last_token(header.value).eq_ignore_ascii_case(b"chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && response.version == Some(0) {
                    close = false;
                }
            }
        }
    }
    let framing = match status {
        101 => return Err(ParseError::Upgrade),
        100..=199 => Framing::Informational,
        204 | 304 => Framing::Empty,
        _ if chunked => Framing::Chunked,
        _ => content_length.map_or(Framing::UntilClose, Framing::Length),
    };
    Ok(Some((length, Response { status, close }, framing)))
}

fn head_error(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |acc, digit| acc * 10 + u64::from(digit - b'0')))
}

fn last_token(value: &[u8]) -> &[u8] {
    value.rsplit(|&b| b == b',').next().map_or(value, trim)
}

fn trim(value: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t');
    let start = value.iter().position(|b| !is_space(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !is_space(b)).map_or(start, |last| last + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parser: &mut ResponseParser, pieces: &[&[u8]]) -> Result<Vec<Response>, ParseError> {
        let mut out = Vec::new();
        for piece in pieces {
            parser.feed(piece, &mut |response| out.push(response))?;
        }
        Ok(out)
    }

    fn one(status: u16) -> Response {
        Response { status, close: false }
    }

    /// Feeds `bytes` split at every position and checks the same responses come out.
    fn every_split(bytes: &[u8], expected: &[Response]) {
        for cut in 0..=bytes.len() {
            let mut parser = ResponseParser::default();
            let got = feed_all(&mut parser, &[&bytes[..cut], &bytes[cut..]]).expect("valid stream");
            assert_eq!(got, expected, "split at {cut}");
            assert!(parser.is_idle(), "split at {cut}");
        }
        let mut parser = ResponseParser::default();
        let singles: Vec<[u8; 1]> = bytes.iter().map(|&b| [b]).collect();
        let pieces: Vec<&[u8]> = singles.iter().map(|b| b.as_slice()).collect();
        assert_eq!(feed_all(&mut parser, &pieces).expect("valid stream"), expected, "byte by byte");
    }

    #[test]
    fn content_length_body() {
        every_split(b"HTTP/1.1 202 Accepted\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}\n", &[one(202)]);
    }

    #[test]
    fn no_content_has_no_body_whatever_it_says() {
        every_split(
            b"HTTP/1.1 204 No Content\r\nServer: nginx\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            &[one(204), one(204)],
        );
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let stream =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=x\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n\
                       HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
        every_split(stream, &[one(200), one(200)]);
    }

    #[test]
    fn informational_responses_are_skipped() {
        every_split(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}", &[
            one(401),
        ]);
    }

    #[test]
    fn pipelined_responses_in_one_read() {
        let mut stream = Vec::new();
        for status in [202, 200, 401, 202] {
            stream.extend_from_slice(format!("HTTP/1.1 {status} X\r\nContent-Length: 3\r\n\r\nabc").as_bytes());
        }
        let mut parser = ResponseParser::default();
        let got = feed_all(&mut parser, &[&stream]).expect("valid");
        assert_eq!(got, vec![one(202), one(200), one(401), one(202)]);
        every_split(&stream, &got);
    }

    #[test]
    fn connection_close_is_reported() {
        every_split(
            b"HTTP/1.1 400 Bad Request\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
            &[Response { status: 400, close: true }],
        );
        every_split(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &[Response { status: 200, close: true }]);
        every_split(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", &[one(200)]);
    }

    #[test]
    fn body_until_close_completes_at_eof() {
        let mut parser = ResponseParser::default();
        assert_eq!(feed_all(&mut parser, &[b"HTTP/1.1 200 OK\r\n\r\nsome body"]), Ok(vec![]));
        assert_eq!(parser.finish_at_eof(), Some(Response { status: 200, close: true }));
        assert!(parser.is_idle());
        let mut parser = ResponseParser::default();
        assert_eq!(feed_all(&mut parser, &[b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsome"]), Ok(vec![]));
        assert_eq!(parser.finish_at_eof(), None, "a body cut short is not a response");
    }

    #[test]
    fn malformed_streams_are_errors() {
        let cases: [&[u8]; 6] = [
            b"HTTP/9.9 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ];
        for case in cases {
            let mut parser = ResponseParser::default();
            assert!(feed_all(&mut parser, &[case]).is_err(), "{:?}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn oversized_heads_are_refused() {
        let mut parser = ResponseParser::default();
        let filler = vec![b'a'; 1024];
        let mut result = feed_all(&mut parser, &[b"HTTP/1.1 200 OK\r\nX-Big: "]);
        for _ in 0..BENCH_RESPONSE_HEAD_BYTES_MAX / 1024 + 1 {
            if result.is_err() {
                break;
            }
            result = feed_all(&mut parser, &[&filler]);
        }
        assert_eq!(result, Err(ParseError::HeadTooLarge));
    }
}

//! The request framer: a per-connection state machine over the connection's input
//! buffer. `Head` (waiting for the end of the headers) → `Body` (Content-Length) or
//! `Chunked` (de-chunked in place by `chunked.rs`) → a complete [`Request`].

use std::mem::MaybeUninit;

use super::chunked::{ChunkStep, Dechunk, dechunk};
use super::{HttpError, Limits, Method, Phase, Poll, Request};
use crate::constants::{CONTENT_LENGTH_DIGITS_MAX, HEADERS_COUNT_MAX_CEILING};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body { head: HeadInfo, body_len: usize },
    Chunked { head: HeadInfo, read: usize, body_len: usize, step: ChunkStep },
}

/// Per-connection framing state. Small and `Copy`-sized: idle connections cost nothing.
#[derive(Debug, Clone, Copy)]
pub struct Framer {
    state: State,
}

impl Default for Framer {
    fn default() -> Self {
        Framer { state: State::Head }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Empty,
    Length(usize),
    Chunked,
}

type Span = (u32, u32);

/// A parsed head as byte ranges into the buffer: `Copy`, so it can wait in the framer
/// state while the body arrives, and the head is parsed exactly once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeadInfo {
    method: Method,
    path: Span,
    /// The query string after `?` (empty span when there is none).
    query: Span,
    content_type: Option<Span>,
    key_id: Option<Span>,
    timestamp: Option<Span>,
    signature: Option<Span>,
    authorization: Option<Span>,
    request_id: Option<Span>,
    webhook_id: Option<Span>,
    webhook_timestamp: Option<Span>,
    webhook_signature: Option<Span>,
    stream_id: Option<Span>,
    last_event_id: Option<Span>,
    replay_id: Option<Span>,
    keep_alive: bool,
    head_len: usize,
    body: BodyKind,
    expects_continue: bool,
}

impl HeadInfo {
    fn request<'a>(&self, buf: &'a [u8], body_len: usize) -> Request<'a> {
        let slice = |(from, to): Span| &buf[from as usize..to as usize];
        Request {
            method: self.method,
            path: slice(self.path),
            query: slice(self.query),
            content_type: self.content_type.map(slice),
            key_id: self.key_id.map(slice),
            timestamp: self.timestamp.map(slice),
            signature: self.signature.map(slice),
            authorization: self.authorization.map(slice),
            request_id: self.request_id.map(slice),
            webhook_id: self.webhook_id.map(slice),
            webhook_timestamp: self.webhook_timestamp.map(slice),
            webhook_signature: self.webhook_signature.map(slice),
            stream_id: self.stream_id.map(slice),
            last_event_id: self.last_event_id.map(slice),
            replay_id: self.replay_id.map(slice),
            head: &buf[..self.head_len.min(buf.len())],
            body: &buf[self.head_len..self.head_len + body_len],
            keep_alive: self.keep_alive,
        }
    }
}

fn span_of(buf: &[u8], part: &[u8]) -> Span {
    let from = part.as_ptr() as usize - buf.as_ptr() as usize;
    (from as u32, (from + part.len()) as u32)
}

#[inline(always)]
fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// A `Content-Length` value: one plain decimal number. Signs, spaces inside, lists
/// (`5, 5`) and more than `CONTENT_LENGTH_DIGITS_MAX` digits are `None`.
fn parse_decimal(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > CONTENT_LENGTH_DIGITS_MAX || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = value.iter().fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
    // Past usize on a 32-bit target is past every body limit: 413, not 400.
    Some(usize::try_from(number).unwrap_or(usize::MAX))
}

/// httparse accepts a bare LF as a line end (RFC 9112 §2.2 leniency) and already refuses
/// a bare CR. A proxy in front that splits lines only at CRLF would see other headers
/// than we do, so a head with any LF not preceded by CR is refused.
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|at| at == 0 || head[at - 1] != b'\r')
}

/// Stores a header that may appear once: with two values, a proxy and sluice could
/// each act on a different one.
fn set_once(slot: &mut Option<Span>, span: Span) -> Result<(), HttpError> {
    match slot.replace(span) {
        Some(_) => Err(HttpError::HeaderRepeated),
        None => Ok(()),
    }
}

fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<HeadInfo>, HttpError> {
    // Uninitialised: zeroing 256 headers (8 KiB) cost more than parsing a typical head.
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_COUNT_MAX_CEILING];
    let mut parsed = httparse::Request::new(&mut []);
    // Only the bytes a head may have are parsed, so the answer does not depend on how
    // much of the stream has arrived, and a trickled head is never scanned past its limit.
    let head = &buf[..buf.len().min(limits.header_bytes_max)];
    let head_len = match parsed.parse_with_uninit_headers(head, &mut storage[..limits.headers_count_max]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.header_bytes_max => return Err(HttpError::HeadersTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HttpError::VersionUnsupported),
        // Obs-fold, space before the colon and control bytes in values land here too.
        Err(_) => return Err(HttpError::Malformed),
    };
    if has_bare_lf(&buf[..head_len]) {
        return Err(HttpError::LineEndingInvalid);
    }
    let method = match parsed.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        _ => Method::Other,
    };
    let target = parsed.path.unwrap_or("").as_bytes();
    if target.first() != Some(&b'/') {
        return Err(HttpError::TargetInvalid);
    }
    let path = target.split(|b| *b == b'?').next().unwrap_or(target);
    let query = target.get(path.len() + 1..).unwrap_or(&target[target.len()..]);
    let http11 = parsed.version == Some(1);
    let mut info = HeadInfo {
        method,
        path: span_of(buf, path),
        query: span_of(buf, query),
        content_type: None,
        key_id: None,
        timestamp: None,
        signature: None,
        authorization: None,
        request_id: None,
        webhook_id: None,
        webhook_timestamp: None,
        webhook_signature: None,
        stream_id: None,
        last_event_id: None,
        replay_id: None,
        keep_alive: http11,
        head_len,
        body: BodyKind::Empty,
        expects_continue: false,
    };
    let framing = read_headers(&mut info, parsed.headers, buf, http11)?;
    info.body = match (framing.content_length, framing.chunked) {
        (Some(_), true) => return Err(HttpError::ContentLengthAndChunked),
        (Some(length), false) if length > limits.body_bytes_max => return Err(HttpError::BodyTooLarge),
        (Some(0), false) | (None, false) => BodyKind::Empty,
        (Some(length), false) => BodyKind::Length(length),
        (None, true) => BodyKind::Chunked,
    };
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400 (two are refused
    // as a repeated header above, in any version).
    if http11 && !framing.host {
        return Err(HttpError::HostMissing);
    }
    Ok(Some(info))
}

/// What the header fields say about the message itself.
struct Framing {
    content_length: Option<usize>,
    chunked: bool,
    /// A `Host` field was present (exactly once).
    host: bool,
}

/// Fills `info` from the header fields; returns how the message is framed. Refuses what
/// could frame the request differently behind a proxy.
fn read_headers(info: &mut HeadInfo, headers: &[httparse::Header<'_>], buf: &[u8], http11: bool) -> Result<Framing, HttpError> {
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut host = false;
    for header in headers {
        let name = header.name.as_bytes();
        let value = trim(header.value);
        let span = span_of(buf, value);
        if eq_ignore_case(name, b"content-length") {
            let length = parse_decimal(value).ok_or(HttpError::ContentLengthInvalid)?;
            if content_length.is_some() {
                // A repeated Content-Length, even with equal values, is a smuggling probe.
                return Err(HttpError::ContentLengthInvalid);
            }
            content_length = Some(length);
        } else if eq_ignore_case(name, b"transfer-encoding") {
            if !http11 {
                return Err(HttpError::TransferEncodingInHttp10);
            }
            if chunked || !eq_ignore_case(value, b"chunked") {
                return Err(HttpError::TransferEncodingUnsupported);
            }
            chunked = true;
        } else if eq_ignore_case(name, b"host") {
            if host {
                return Err(HttpError::HeaderRepeated);
            }
            if !is_host_value(value) {
                return Err(HttpError::HostInvalid);
            }
            host = true;
        } else if eq_ignore_case(name, b"content-type") {
            set_once(&mut info.content_type, span)?;
        } else if eq_ignore_case(name, b"x-key-id") {
            set_once(&mut info.key_id, span)?;
        } else if eq_ignore_case(name, b"x-timestamp") {
            set_once(&mut info.timestamp, span)?;
        } else if eq_ignore_case(name, b"x-signature") {
            set_once(&mut info.signature, span)?;
        } else if eq_ignore_case(name, b"authorization") {
            set_once(&mut info.authorization, span)?;
        } else if eq_ignore_case(name, b"x-request-id") {
            set_once(&mut info.request_id, span)?;
        } else if eq_ignore_case(name, b"webhook-id") {
            set_once(&mut info.webhook_id, span)?;
        } else if eq_ignore_case(name, b"webhook-timestamp") {
            set_once(&mut info.webhook_timestamp, span)?;
        } else if eq_ignore_case(name, b"webhook-signature") {
            set_once(&mut info.webhook_signature, span)?;
        } else if eq_ignore_case(name, b"x-stream-id") {
            set_once(&mut info.stream_id, span)?;
        } else if eq_ignore_case(name, b"last-event-id") {
            set_once(&mut info.last_event_id, span)?;
        } else if eq_ignore_case(name, b"x-replay-id") {
            set_once(&mut info.replay_id, span)?;
        } else if eq_ignore_case(name, b"connection") {
            for token in value.split(|b| *b == b',').map(trim) {
                if eq_ignore_case(token, b"close") {
                    info.keep_alive = false;
                } else if eq_ignore_case(token, b"keep-alive") && !http11 {
                    info.keep_alive = true;
                }
            }
        } else if eq_ignore_case(name, b"expect") && eq_ignore_case(value, b"100-continue") {
            info.expects_continue = http11;
        }
    }
    Ok(Framing { content_length, chunked, host })
}

#[allow(clippy::large_enum_variant, reason = "returned by value once per request step, never stored or collected")]
enum Progress {
    Incomplete(Phase),
    Ready { head: HeadInfo, body_len: usize, consumed: usize },
}

impl Framer {
    /// The phase of the request being read, for timeouts.
    pub fn phase(&self, buffered: usize) -> Phase {
        match self.state {
            State::Head if buffered == 0 => Phase::Idle,
            State::Head => Phase::Head,
            State::Body { head, .. } | State::Chunked { head, .. } => Phase::Body { expects_continue: head.expects_continue },
        }
    }

    /// The whole size (head and body) of the request being read, once its head has
    /// announced a `Content-Length`; `None` before that and for chunked bodies.
    pub fn expected_len(&self) -> Option<usize> {
        match self.state {
            State::Body { head, body_len } => Some(head.head_len + body_len),
            State::Head | State::Chunked { .. } => None,
        }
    }

    /// Frames the next request at the start of `buf`. On `Complete`, the caller
    /// processes the request and then drops `consumed` bytes from the front.
    pub fn poll<'a>(&mut self, buf: &'a mut [u8], limits: &Limits) -> Result<Poll<'a>, HttpError> {
        let progress = self.advance(buf, limits);
        if !matches!(progress, Ok(Progress::Incomplete(_))) {
            self.state = State::Head;
        }
        match progress? {
            Progress::Incomplete(phase) => Ok(Poll::Incomplete(phase)),
            Progress::Ready { head, body_len, consumed } => Ok(Poll::Complete { request: head.request(buf, body_len), consumed }),
        }
    }

    fn advance(&mut self, buf: &mut [u8], limits: &Limits) -> Result<Progress, HttpError> {
        if self.state == State::Head {
            if buf.is_empty() {
                return Ok(Progress::Incomplete(Phase::Idle));
            }
            let Some(head) = parse_head(buf, limits)? else {
                return Ok(Progress::Incomplete(Phase::Head));
            };
            self.state = match head.body {
                BodyKind::Empty => return Ok(Progress::Ready { head, body_len: 0, consumed: head.head_len }),
                BodyKind::Length(body_len) => State::Body { head, body_len },
                BodyKind::Chunked => State::Chunked { head, read: head.head_len, body_len: 0, step: ChunkStep::Size },
            };
        }
        let phase = self.phase(buf.len());
        match self.state {
            State::Head => Ok(Progress::Incomplete(phase)),
            State::Body { head, body_len } => {
                let consumed = head.head_len + body_len;
                if buf.len() < consumed {
                    return Ok(Progress::Incomplete(phase));
                }
                Ok(Progress::Ready { head, body_len, consumed })
            }
            State::Chunked { head, read, body_len, step } => {
                match dechunk(buf, head.head_len, read, body_len, step, limits.body_bytes_max)? {
                    Dechunk::Done { body_len, consumed } => Ok(Progress::Ready { head, body_len, consumed }),
                    // The shard stops reading once a connection buffers this much, so
                    // a request that needs more would only wait for its timeout.
                    Dechunk::More { .. } if buf.len() >= limits.header_bytes_max + limits.body_bytes_max => Err(HttpError::ChunkedTooLarge),
                    Dechunk::More { read, body_len, step } => {
                        self.state = State::Chunked { head, read, body_len, step };
                        Ok(Progress::Incomplete(phase))
                    }
                }
            }
        }
    }
}

/// A `Host` value: `uri-host [":" port]` (RFC 3986 §3.2.2): a reg-name's unreserved,
/// percent and sub-delim characters, an IP literal's brackets and colons. Empty passes
/// (a target without an authority). The characters only: sluice routes nothing by Host,
/// so the check refuses what no host can be (spaces, so a second value after `, `; `/`, `@`).
fn is_host_value(value: &[u8]) -> bool {
    value.iter().all(|&byte| {
        byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::CHUNK_LINE_BYTES_MAX;
    use crate::http::Framer;

    const LIMITS: Limits = Limits { header_bytes_max: 1024, headers_count_max: 16, body_bytes_max: 64 };

    fn frame(input: &[u8]) -> Result<(Vec<u8>, usize, bool, Vec<u8>), HttpError> {
        let mut buf = input.to_vec();
        let mut framer = Framer::default();
        match framer.poll(&mut buf, &LIMITS)? {
            Poll::Complete { request, consumed } => Ok((request.path.to_vec(), consumed, request.keep_alive, request.body.to_vec())),
            Poll::Incomplete(phase) => panic!("incomplete: {phase:?}"),
        }
    }

    #[test]
    fn frames_content_length_and_pipelined_requests() {
        let input = b"POST /v1/events?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /healthz HTTP/1.1\r\nHost: h\r\n\r\n";
        let (path, consumed, keep_alive, body) = frame(input).unwrap();
        assert_eq!((path.as_slice(), body.as_slice(), keep_alive), (&b"/v1/events"[..], &b"hello"[..], true));
        let (path, rest, _, _) = frame(&input[consumed..]).unwrap();
        assert_eq!((path.as_slice(), rest), (&b"/healthz"[..], input.len() - consumed));
    }

    #[test]
    fn frames_chunked_bodies_incrementally() {
        let input =
            b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n3\r\n, w\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let mut framer = Framer::default();
        let mut buf = Vec::new();
        for (index, byte) in input.iter().enumerate() {
            buf.push(*byte);
            let mut copy = buf.clone();
            match framer.poll(&mut copy, &LIMITS).unwrap() {
                Poll::Incomplete(_) => {
                    buf = copy;
                    assert!(index < input.len() - 5, "completed late at {index}");
                }
                Poll::Complete { request, consumed } => {
                    assert_eq!(request.body, b"hello, w");
                    assert_eq!(consumed, input.len() - 4);
                    return;
                }
            }
        }
        panic!("never completed");
    }

    #[test]
    fn refuses_smuggling_and_oversize() {
        let cases: [(&[u8], HttpError); 8] = [
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", HttpError::ContentLengthAndChunked),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", HttpError::ContentLengthInvalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3x\r\n\r\nabc", HttpError::ContentLengthInvalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65\r\n\r\n", HttpError::BodyTooLarge),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HttpError::TransferEncodingUnsupported),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", HttpError::ChunkInvalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n", HttpError::BodyTooLarge),
            (b"GARBAGE\x01 / HTTP/1.1\r\nHost: h\r\n\r\n", HttpError::Malformed),
        ];
        for (input, expected) in cases {
            assert_eq!(frame(input).unwrap_err(), expected, "{}", String::from_utf8_lossy(input));
        }
        let long = [b"GET / HTTP/1.1\r\nHost: h\r\nX: ".as_slice(), &[b'a'; 2000]].concat();
        assert_eq!(frame(&long).unwrap_err(), HttpError::HeadersTooLarge);
        let many: Vec<u8> = [b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec(), b"A: b\r\n".repeat(17), b"\r\n".to_vec()].concat();
        assert_eq!(frame(&many).unwrap_err(), HttpError::TooManyHeaders);
    }

    /// Frames `input` whole and returns the error; panics if it frames or waits.
    fn refused(input: &[u8]) -> HttpError {
        match frame(input) {
            Err(error) => error,
            Ok((path, ..)) => panic!("framed {:?} from {}", String::from_utf8_lossy(&path), String::from_utf8_lossy(input)),
        }
    }

    fn assert_refused(cases: &[(&[u8], HttpError)]) {
        for (input, expected) in cases {
            assert_eq!(refused(input), *expected, "{}", String::from_utf8_lossy(input));
            assert_eq!(expected.status() / 100, 4, "{expected:?}");
        }
    }

    #[test]
    fn refuses_content_length_that_is_not_one_plain_number() {
        use HttpError::ContentLengthInvalid as Invalid;
        assert_refused(&[
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", Invalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc", Invalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc", Invalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", Invalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", Invalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", Invalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", Invalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551617\r\n\r\n", Invalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9999999999999999\r\n\r\n", Invalid),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999999\r\n\r\n", HttpError::BodyTooLarge),
        ]);
        assert_eq!(frame(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:  003 \t\r\n\r\nabc").unwrap().3, b"abc");
    }

    #[test]
    fn refuses_transfer_encoding_other_than_one_chunked_in_http_1_1() {
        use HttpError::TransferEncodingUnsupported as Unsupported;
        assert_refused(&[
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n", Unsupported),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", Unsupported),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Unsupported),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", Unsupported),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", Unsupported),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", HttpError::TransferEncodingInHttp10),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", HttpError::ContentLengthAndChunked),
        ]);
        let body = frame(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \t Chunked \r\n\r\n1\r\nx\r\n0\r\n\r\n").unwrap().3;
        assert_eq!(body, b"x");
    }

    #[test]
    fn refuses_malformed_chunk_lines() {
        use HttpError::ChunkInvalid as Invalid;
        let chunked = |rest: &[u8]| [b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(), rest].concat();
        let long_extension = [b"1;".as_slice(), &[b'a'; CHUNK_LINE_BYTES_MAX], b"\r\nx\r\n0\r\n\r\n"].concat();
        let long_trailers = [b"0\r\n".as_slice(), &b"X-T: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(200), b"\r\n"].concat();
        let cases = [
            (chunked(b"zz\r\n"), Invalid),
            (chunked(b"\r\n"), Invalid),
            (chunked(b"0x10\r\n"), Invalid),
            (chunked(b"-1\r\n"), Invalid),
            (chunked(b"+1\r\nx\r\n0\r\n\r\n"), Invalid),
            (chunked(b"000000001\r\nx\r\n0\r\n\r\n"), Invalid),
            (chunked(b"fffffffffffffffff\r\n"), Invalid),
            (chunked(b"ffffffff\r\n"), HttpError::BodyTooLarge),
            (chunked(b"1 x\r\nx\r\n0\r\n\r\n"), Invalid),
            (chunked(b"1 \r\nx\r\n0\r\n\r\n"), Invalid),
            (chunked(b"1;a\nb\r\nx\r\n0\r\n\r\n"), Invalid),
            (chunked(b"1;a\rb\r\nx\r\n0\r\n\r\n"), Invalid),
            (chunked(b"1;a\x00\r\nx\r\n0\r\n\r\n"), Invalid),
            (chunked(b"1\nx\r\n0\r\n\r\n"), Invalid),
            (chunked(b"1\r\nxy\r\n0\r\n\r\n"), Invalid),
            (chunked(b"1\r\nx\n0\r\n\r\n"), Invalid),
            (chunked(b"0\r\nX: a\nb\r\n\r\n"), Invalid),
            (chunked(b"0\r\nX: a\r\n folded\r\n\r\n"), Invalid),
            (chunked(b"0\n\n"), Invalid),
            (chunked(&long_extension), HttpError::ChunkLineTooLong),
            (chunked(&long_trailers), HttpError::TrailersTooLarge),
            (chunked(b"41\r\n"), HttpError::BodyTooLarge),
            (chunked(&b"20\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(3)), HttpError::BodyTooLarge),
        ];
        for (input, expected) in cases {
            assert_eq!(refused(&input), expected, "{}", String::from_utf8_lossy(&input));
        }
        let ok = frame(&chunked(b"1 ;name=\"v\"\r\nx\r\n0\r\nTrailer: y\r\n\r\n")).unwrap();
        assert_eq!(ok.3, b"x");
    }

    #[test]
    fn refuses_a_chunked_request_that_cannot_fit_the_input_buffer() {
        // Each 1-byte chunk carries a long extension: little data, much framing.
        let chunk = [b"1;".as_slice(), &[b'e'; 600], b"\r\nx\r\n"].concat();
        let input = [b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(), &chunk.repeat(2)].concat();
        let limit = LIMITS.header_bytes_max + LIMITS.body_bytes_max;
        assert!(input.len() >= limit);
        assert_eq!(refused(&input), HttpError::ChunkedTooLarge);
        assert_eq!(HttpError::ChunkedTooLarge.status(), 413);
    }

    #[test]
    fn refuses_heads_that_parsers_could_split_differently() {
        use HttpError::Malformed;
        assert_refused(&[
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", HttpError::LineEndingInvalid),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", HttpError::LineEndingInvalid),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\n", HttpError::LineEndingInvalid),
            (b"GET / HTTP/1.1\n\n", HttpError::LineEndingInvalid),
            (b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", HttpError::LineEndingInvalid),
            (b"GET / HTTP/1.1\rHost: a\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: h\r\n Host: a\r\n\r\n", Malformed),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello", Malformed),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length\t: 5\r\n\r\nhello", Malformed),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x1bb\r\n\r\n", Malformed),
            (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", Malformed),
            (b"GET http://sluice.test/v1/events HTTP/1.1\r\nHost: h\r\n\r\n", HttpError::TargetInvalid),
            (b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", HttpError::TargetInvalid),
            (b"CONNECT sluice.test:443 HTTP/1.1\r\nHost: h\r\n\r\n", HttpError::TargetInvalid),
            (b"GET v1/events HTTP/1.1\r\nHost: h\r\n\r\n", HttpError::TargetInvalid),
        ]);
        // Stray CRLFs before a request line are allowed (RFC 9112 §2.2); a tab in a value too.
        assert_eq!(frame(b"\r\nGET /x HTTP/1.1\r\nHost: h\r\nX: a\tb\r\n\r\n").unwrap().0, b"/x");
    }

    #[test]
    fn refuses_repeated_security_headers() {
        let names =
            "Content-Type X-Key-Id X-Timestamp X-Signature Authorization X-Request-Id webhook-id webhook-timestamp webhook-signature";
        for name in names.split(' ') {
            for second in ["same", "other"] {
                let input = format!("POST / HTTP/1.1\r\nHost: h\r\n{name}: same\r\nHost: a\r\n{}: {second}\r\n\r\n", name.to_lowercase());
                assert_eq!(refused(input.as_bytes()), HttpError::HeaderRepeated, "{input}");
            }
        }
    }

    /// RFC 9112 §3.2: a Host value is `uri-host [":" port]`; anything else is 400. Empty
    /// is allowed (a target without an authority).
    #[test]
    fn host_values_are_a_host_and_an_optional_port() {
        for good in ["a", "sluice.example:8080", "127.0.0.1", "[::1]:8443", "xn--bcher-kva.example", ""] {
            assert!(frame(format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n").as_bytes()).is_ok(), "{good:?}");
        }
        for bad in ["a b", "a, b", "a/b", "a@b", "a\"b", "a\\b", "a?b", "a#b"] {
            assert_eq!(frame(format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n").as_bytes()).unwrap_err(), HttpError::HostInvalid, "{bad:?}");
        }
        assert_eq!(HttpError::HostInvalid.status(), 400);
    }

    /// RFC 9112 §3.2: a request with no Host (HTTP/1.1) or with two (any version) is 400.
    #[test]
    fn host_is_required_once_in_http_1_1() {
        assert_eq!(frame(b"GET / HTTP/1.1\r\n\r\n").unwrap_err(), HttpError::HostMissing);
        assert_eq!(frame(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").unwrap_err(), HttpError::HeaderRepeated);
        assert_eq!(frame(b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n").unwrap_err(), HttpError::HeaderRepeated);
        assert!(frame(b"GET / HTTP/1.0\r\n\r\n").is_ok(), "HTTP/1.0 has no Host requirement");
        assert!(frame(b"GET / HTTP/1.1\r\nhOsT: sluice.example:8080\r\n\r\n").is_ok());
        assert_eq!(HttpError::HostMissing.status(), 400);
    }

    /// A request line inside the trailer section was accepted and swallowed with the
    /// request it followed; trailer lines are header fields or nothing.
    #[test]
    fn trailer_lines_must_be_header_fields() {
        let chunked =
            |trailer: &str| format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n{trailer}\r\n");
        for trailer in ["GET /admin HTTP/1.1\r\n", "no colon here\r\n", ": empty name\r\n", "Bad Name: x\r\n", " folded: x\r\n"] {
            assert_eq!(frame(chunked(trailer).as_bytes()).unwrap_err(), HttpError::ChunkInvalid, "{trailer:?}");
        }
        for trailer in ["", "X-Checksum: abc\r\n", "a:\r\n"] {
            assert_eq!(frame(chunked(trailer).as_bytes()).unwrap().3, b"x", "{trailer:?}");
        }
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        assert!(!frame(b"GET / HTTP/1.0\r\n\r\n").unwrap().2);
        assert!(frame(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().2);
        assert!(!frame(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").unwrap().2);
    }

    #[test]
    fn reports_phases_for_timeouts() {
        let mut framer = Framer::default();
        let mut buf = b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nab".to_vec();
        assert!(matches!(framer.poll(&mut buf, &LIMITS).unwrap(), Poll::Incomplete(Phase::Body { expects_continue: true })));
        let mut head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-".to_vec();
        assert!(matches!(Framer::default().poll(&mut head, &LIMITS).unwrap(), Poll::Incomplete(Phase::Head)));
    }
}

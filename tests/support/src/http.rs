//! Requests as raw bytes and a raw HTTP/1.1 client over TCP (or any byte stream, such
//! as a TLS stream): the tests speak the wire protocol, not a library's idea of it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::json::{Json, ParseJson};
use crate::sign::auth_headers;

/// Socket read timeout of the test client: a hung server fails the test, never hangs it.
pub const CLIENT_READ_TIMEOUT_MS: u64 = 10_000;

/// A POST with Content-Length and the given headers (in order).
pub fn post(path: &str, content_type: Option<&str>, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("POST {path} HTTP/1.1\r\nHost: sluice.test\r\n");
    if let Some(ct) = content_type {
        out.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A signed `POST /v1/events`.
pub fn signed_event(body: &[u8]) -> Vec<u8> {
    post("/v1/events", Some("application/json"), &auth_headers(body), body)
}

/// A signed `POST /v1/events/batch` of the given lines (joined with `\n`).
pub fn signed_batch(lines: &[String]) -> Vec<u8> {
    let body = lines.join("\n");
    post("/v1/events/batch", Some("application/x-ndjson"), &auth_headers(body.as_bytes()), body.as_bytes())
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: sluice.test\r\n\r\n").into_bytes()
}

/// A valid envelope (SPEC §1.2) with a payload marker.
pub fn event(event_id: &str, user_id: &str) -> String {
    format!(
        r#"{{"event_id":"{event_id}","event_type":"bet","schema_version":"1.3.0","occurred_at":"2025-10-24T11:37:21Z","key":{{"user_id":"{user_id}"}},"ctx":{{"platform":"ios","geo":"TR"}},"payload":{{"game_id":"slot_wolf","bet":0.5,"win":1.25,"currency":"EUR","marker":"{event_id}"}}}}"#
    )
}

/// [`event`] with another `event_type`.
pub fn typed_event(event_id: &str, user_id: &str, event_type: &str) -> String {
    event(event_id, user_id).replace("\"event_type\":\"bet\"", &format!("\"event_type\":\"{event_type}\""))
}

/// A per-run unique prefix for event ids (tests share nothing, but ids should still
/// never collide with a previous run's data dir by accident).
pub fn unique_prefix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").subsec_nanos();
    format!("r{}x{nanos}", std::process::id())
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Json {
        Json::parse(&self.body).unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }

    /// `error.code` of an error body; panics if the body is not an error body.
    pub fn error_code(&self) -> String {
        let json = self.json();
        let error = json.get("error").unwrap_or_else(|| panic!("not an error body: {}", self.text()));
        assert!(error.get("message").and_then(Json::as_str).is_some(), "error without message: {}", self.text());
        error.get("code").and_then(Json::as_str).unwrap_or_else(|| panic!("error without code: {}", self.text())).to_owned()
    }

    /// The server announced it closes the connection after this answer.
    pub fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// `(partition, offset)` of a single accepted or duplicate answer.
    pub fn placement(&self) -> (u32, u64) {
        placement_of(&self.json()).unwrap_or_else(|| panic!("no partition/offset in {}", self.text()))
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.status, self.text())
    }
}

/// `(partition, offset)` of an `{"status":..,"partition":P,"offset":O}` object.
pub fn placement_of(json: &Json) -> Option<(u32, u64)> {
    let partition = json.get("partition")?.as_u64()?;
    let offset = json.get("offset")?.as_u64()?;
    Some((u32::try_from(partition).ok()?, offset))
}

/// An HTTP/1.1 client over a TCP stream, or over any other byte stream (a TLS stream).
pub struct Client<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Self::try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        Ok(Client::over(connect_tcp(addr)?))
    }

    /// A client whose connection comes from `source` (another loopback address, say
    /// 127.0.0.2, to stand for a partner's host apart from the operator's).
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Client {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).expect("socket");
        socket.bind(&SocketAddr::new(source, 0).into()).unwrap_or_else(|e| panic!("bind {source}: {e}"));
        socket.connect_timeout(&addr.into(), Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {addr} from {source}: {e}"));
        Client::over(with_client_options(TcpStream::from(socket)).expect("socket options"))
    }
}

/// A TCP connection with the test client's timeouts and no Nagle delay.
pub fn connect_tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    with_client_options(TcpStream::connect_timeout(&addr, Duration::from_secs(5))?)
}

fn with_client_options(stream: TcpStream) -> io::Result<TcpStream> {
    stream.set_read_timeout(Some(Duration::from_millis(CLIENT_READ_TIMEOUT_MS)))?;
    stream.set_write_timeout(Some(Duration::from_millis(CLIENT_READ_TIMEOUT_MS)))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl<S: Read + Write> Client<S> {
    /// A client over an already connected stream.
    pub fn over(stream: S) -> Client<S> {
        Client { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send request");
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends one request and reads its answer.
    pub fn request(&mut self, bytes: &[u8]) -> Response {
        self.send(bytes);
        self.read_response()
    }

    pub fn read_response(&mut self) -> Response {
        match self.try_read_response() {
            Ok(Some(response)) => response,
            Ok(None) => panic!("connection closed before a response (buffered: {:?})", String::from_utf8_lossy(&self.buf)),
            Err(e) => panic!("reading response: {e}"),
        }
    }

    /// Reads one final (non-1xx) response honouring Content-Length. `Ok(None)`: the
    /// peer closed the connection before a whole response arrived.
    pub fn try_read_response(&mut self) -> io::Result<Option<Response>> {
        loop {
            let Some(head_end) = find(&self.buf, b"\r\n\r\n") else {
                if !self.fill()? {
                    return Ok(None);
                }
                continue;
            };
            let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let mut parts = status_line.splitn(3, ' ');
            let version = parts.next().unwrap_or_default();
            assert!(version == "HTTP/1.1" || version == "HTTP/1.0", "bad status line {status_line:?}");
            let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
            let headers: Vec<(String, String)> = lines
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (name, value) = l.split_once(':').unwrap_or_else(|| panic!("bad header line {l:?}"));
                    (name.trim().to_owned(), value.trim().to_owned())
                })
                .collect();
            let body_start = head_end + 4;
            if (100..200).contains(&status) {
                self.buf.drain(..body_start);
                continue;
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap_or_else(|_| panic!("bad content-length {v:?}")))
                // 204 has no body and must not carry a Content-Length (RFC 9110 §8.6).
                .or((status == 204).then_some(0))
                .unwrap_or_else(|| panic!("response without content-length: {head}"));
            while self.buf.len() < body_start + length {
                if !self.fill()? {
                    return Ok(None);
                }
            }
            let body = self.buf[body_start..body_start + length].to_vec();
            self.buf.drain(..body_start + length);
            return Ok(Some(Response { status, headers, body }));
        }
    }

    /// Reads the status line and headers of a response that has no body whatever its
    /// Content-Length says (the answer to HEAD), leaving later bytes buffered.
    pub fn read_head_only(&mut self) -> Response {
        loop {
            if let Some(head_end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
                self.buf.drain(..head_end + 4);
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap_or_default();
                let status =
                    status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
                let headers = lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
                return Response { status, headers, body: Vec::new() };
            }
            assert!(self.fill().expect("read"), "connection closed before a response head");
        }
    }

    fn read_chunk_inner(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(line_end) = find(&self.buf, b"\r\n") {
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.trim(), 16).unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
                if size == 0 {
                    // The last chunk and the empty trailer section.
                    while self.buf.len() < line_end + 4 {
                        if !self.fill()? {
                            break;
                        }
                    }
                    let end = (line_end + 4).min(self.buf.len());
                    self.buf.drain(..end);
                    return Ok(None);
                }
                while self.buf.len() < line_end + 2 + size + 2 {
                    if !self.fill()? {
                        return Ok(None);
                    }
                }
                let chunk = self.buf[line_end + 2..line_end + 2 + size].to_vec();
                assert_eq!(&self.buf[line_end + 2 + size..line_end + 4 + size], b"\r\n", "chunk not followed by CRLF");
                self.buf.drain(..line_end + 4 + size);
                return Ok(Some(chunk));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Bytes received but not yet consumed as part of a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads more bytes; `false` on EOF or reset.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Client {
    /// The next chunk of a chunked body being streamed (after [`Client::read_head_only`]);
    /// `None` at the last chunk or when the peer closes. Waits at most `within`.
    pub fn read_chunk_within(&mut self, within: Duration) -> io::Result<Option<Vec<u8>>> {
        self.stream.set_read_timeout(Some(within))?;
        let chunk = self.read_chunk_inner();
        self.stream.set_read_timeout(Some(Duration::from_millis(CLIENT_READ_TIMEOUT_MS)))?;
        chunk
    }

    /// `try_read_response` with a read timeout of `within` instead of the default.
    pub fn try_read_response_within(&mut self, within: Duration) -> io::Result<Option<Response>> {
        self.stream.set_read_timeout(Some(within))?;
        let response = self.try_read_response();
        self.stream.set_read_timeout(Some(Duration::from_millis(CLIENT_READ_TIMEOUT_MS)))?;
        response
    }

    /// True when the server closes the connection (EOF or reset) within `within`,
    /// with no further response bytes.
    pub fn is_closed_by_peer(&mut self, within: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(within)).expect("set timeout");
        let mut byte = [0u8; 1];
        let closed = match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
        };
        self.stream.set_read_timeout(Some(Duration::from_millis(CLIENT_READ_TIMEOUT_MS))).expect("set timeout");
        closed
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Asserts a single-event answer is `202 accepted` and returns its placement.
pub fn expect_accepted(response: &Response) -> (u32, u64) {
    assert_eq!(response.status, 202, "expected 202 accepted, got {}", response.describe());
    let json = response.json();
    assert_eq!(json.get("status").and_then(Json::as_str), Some("accepted"), "{}", response.describe());
    response.placement()
}

/// Asserts a single-event answer is `200 duplicate` and returns its placement.
pub fn expect_duplicate(response: &Response) -> (u32, u64) {
    assert_eq!(response.status, 200, "expected 200 duplicate, got {}", response.describe());
    let json = response.json();
    assert_eq!(json.get("status").and_then(Json::as_str), Some("duplicate"), "{}", response.describe());
    response.placement()
}

/// Asserts an error answer with `status` and `code`.
pub fn expect_error(response: &Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "expected {status} {code}, got {}", response.describe());
    assert_eq!(response.error_code(), code, "expected {status} {code}, got {}", response.describe());
    assert!(
        response.header("content-type").is_some_and(|v| v.starts_with("application/json")),
        "error without JSON content type: {:?}",
        response.headers
    );
}

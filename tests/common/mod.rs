//! Shared harness for the black-box tests: a sandbox (temp dir, config, key ring with a
//! known secret), a `sluice serve` child process, a raw-TCP HTTP/1.1 client, an
//! independent v1 signer (hmac + sha2, not the server's aws-lc-rs), a small strict JSON
//! reader and a `sluice tail` runner.
//!
//! Each test binary uses a different subset of this module.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod jwt;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `sluice` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// How long a server may take to print its ready line (debug build, cold disk).
pub const READY_TIMEOUT_MS: u64 = 20_000;
/// How long a SIGTERM'd server may take to drain and exit.
pub const EXIT_TIMEOUT_MS: u64 = 20_000;
/// Socket read timeout of the test client: a hung server fails the test, never hangs it.
pub const CLIENT_READ_TIMEOUT_MS: u64 = 10_000;

/// The key every test signs with.
pub const KID: &str = "test-key-1";
/// 32 secret bytes the test key ring holds (as `whsec_<base64>`).
pub const SECRET: [u8; 32] = *b"sluice-black-box-test-secret-32b";
/// A second partner's key, present in the ring.
pub const KID_OTHER: &str = "test-key-2";
pub const SECRET_OTHER: [u8; 24] = *b"another-partner-secret!!";

/// `whsec_` + standard base64 of `bytes`.
pub fn whsec(bytes: &[u8]) -> String {
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

// ---------------------------------------------------------------------------------------
// Sandbox and configuration
// ---------------------------------------------------------------------------------------

/// The configuration knobs the tests turn; rendered to TOML by [`Sandbox::new`].
#[derive(Debug, Clone)]
pub struct Setup {
    pub shards: usize,
    pub partitions: u32,
    pub durability: &'static str,
    pub body_bytes_max: usize,
    pub segment_bytes: u64,
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
    /// Extra `[[keys]]` tables appended to the key ring.
    pub extra_keys: String,
    /// Extra TOML appended to the configuration (e.g. `[auth.jwt]` tables).
    pub extra_config: String,
    /// `[ingest] connections_per_ip_max`, when set.
    pub connections_per_ip_max: Option<usize>,
    /// Lines of an `[ingest.tls]` table (`listen = "127.0.0.1:0"` is added), when set.
    pub tls: Option<String>,
    /// Extra lines of the `[ingest]` table (e.g. `proxy_protocol`).
    pub ingest_extra: String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            shards: 2,
            partitions: 8,
            durability: "os",
            body_bytes_max: 64 * 1024,
            segment_bytes: 1024 * 1024,
            header_timeout_ms: None,
            body_timeout_ms: None,
            idle_timeout_ms: None,
            drain_timeout_ms: None,
            extra_keys: String::new(),
            extra_config: String::new(),
            connections_per_ip_max: None,
            tls: None,
            ingest_extra: String::new(),
        }
    }
}

impl Setup {
    pub fn toml(&self, data_dir: &Path, keys_file: &Path) -> String {
        let mut ingest =
            format!("[ingest]\nlisten = \"127.0.0.1:0\"\nshards = {}\nbody_bytes_max = {}\n", self.shards, self.body_bytes_max);
        if let Some(ms) = self.header_timeout_ms {
            ingest.push_str(&format!("header_timeout_ms = {ms}\n"));
        }
        if let Some(ms) = self.body_timeout_ms {
            ingest.push_str(&format!("body_timeout_ms = {ms}\n"));
        }
        if let Some(ms) = self.idle_timeout_ms {
            ingest.push_str(&format!("idle_timeout_ms = {ms}\n"));
        }
        if let Some(ms) = self.drain_timeout_ms {
            ingest.push_str(&format!("drain_timeout_ms = {ms}\n"));
        }
        if let Some(max) = self.connections_per_ip_max {
            ingest.push_str(&format!("connections_per_ip_max = {max}\n"));
        }
        ingest.push_str(&self.ingest_extra);
        if let Some(tls) = &self.tls {
            ingest.push_str(&format!("\n[ingest.tls]\nlisten = \"127.0.0.1:0\"\n{tls}\n"));
        }
        format!(
            "{ingest}\n[storage]\ndata_dir = {:?}\npartitions = {}\ndurability = \"{}\"\nsegment_bytes = {}\n\n\
             [auth]\nkeys_file = {:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            data_dir.display().to_string(),
            self.partitions,
            self.durability,
            self.segment_bytes,
            keys_file.display().to_string(),
            self.extra_config,
        )
    }
}

/// A temp dir with `config.toml`, `keys.toml` (the known test keys) and `data/`.
/// Removed when dropped.
pub struct Sandbox {
    pub temp: tempfile::TempDir,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub keys: PathBuf,
    pub setup: Setup,
}

impl Sandbox {
    pub fn new(setup: Setup) -> Sandbox {
        let temp = tempfile::Builder::new().prefix("sluice-test-").tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let keys = temp.path().join("keys.toml");
        let config = temp.path().join("config.toml");
        let ring = format!(
            "[[keys]]\nkid = \"{KID}\"\nsecret = \"{}\"\npartner = \"tests\"\n\n\
             [[keys]]\nkid = \"{KID_OTHER}\"\nsecret = \"{}\"\npartner = \"other\"\n\n{}",
            whsec(&SECRET),
            whsec(&SECRET_OTHER),
            setup.extra_keys
        );
        std::fs::write(&keys, ring).expect("write key ring");
        std::fs::write(&config, setup.toml(&data_dir, &keys)).expect("write config");
        Sandbox { temp, config, data_dir, keys, setup }
    }

    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Starts `sluice serve --config <config.toml>` and waits for its ready line.
    pub fn start(&self) -> Server {
        Server::start(&self.config)
    }

    /// `sluice tail` over the whole data dir, from the earliest offset.
    pub fn tail(&self) -> Vec<TailLine> {
        tail(&self.data_dir)
    }
}

// ---------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------

/// A running `sluice serve`. Dropping it kills the process (SIGKILL) and reaps it.
pub struct Server {
    child: Option<Child>,
    pub ingest: SocketAddr,
    /// The TLS listener (`ingest_tls=` in the ready line), when configured.
    pub ingest_tls: Option<SocketAddr>,
    pub admin: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
}

/// Parses `ingest=ADDR` and `admin=ADDR` from the ready line.
fn parse_ready_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("sluice: listening ")?;
    let mut ingest = None;
    let mut admin = None;
    for word in rest.split_whitespace() {
        if let Some(addr) = word.strip_prefix("ingest=") {
            ingest = addr.parse().ok();
        } else if let Some(addr) = word.strip_prefix("admin=") {
            admin = addr.parse().ok();
        }
    }
    Some((ingest?, admin?))
}

impl Server {
    pub fn start(config: &Path) -> Server {
        Server::start_with_env(config, &[])
    }

    /// Starts with extra environment variables (a fake `NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    /// Logs are text lines so the tests can read them; `--log-format` defaults to JSON
    /// on a pipe (tests/logging.rs checks that format).
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--log-format", "text"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice serve");
        let stderr_pipe = child.stderr.take().expect("stderr piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let collected = Arc::clone(&stderr);
        let pid = child.id();
        let stderr_thread = std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("[sluice {pid}] {line}");
                collected.lock().unwrap().push_str(&line);
                collected.lock().unwrap().push('\n');
                if let Some(addrs) = parse_ready_line(&line)
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(addrs);
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            ingest: ([0, 0, 0, 0], 0).into(),
            ingest_tls: None,
            admin: ([0, 0, 0, 0], 0).into(),
            stderr,
            stderr_thread: Some(stderr_thread),
        };
        match ready_rx.recv_timeout(Duration::from_millis(READY_TIMEOUT_MS)) {
            Ok((ingest, admin)) => {
                server.ingest = ingest;
                server.admin = admin;
                // The ready line is collected before it is reported.
                server.ingest_tls = server
                    .stderr_text()
                    .lines()
                    .filter(|line| line.starts_with("sluice: listening "))
                    .flat_map(str::split_whitespace)
                    .find_map(|word| word.strip_prefix("ingest_tls=")?.parse().ok());
                server
            }
            Err(_) => {
                let status = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                if status.is_some()
                    && let Some(thread) = server.stderr_thread.take()
                {
                    let _ = thread.join();
                }
                panic!("sluice serve did not become ready (exit: {status:?}); stderr:\n{}", server.stderr_text());
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Everything the server printed to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.ingest)
    }

    pub fn admin_client(&self) -> Client {
        Client::connect(self.admin)
    }

    /// Sends SIGTERM without waiting.
    /// Sends SIGHUP (reload).
    pub fn sighup(&self) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0, "kill(SIGHUP) failed: {}", io::Error::last_os_error());
    }

    /// Waits until stderr has contained `needle` `count` times (at most 10 s).
    pub fn wait_for_stderr(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stderr_text().matches(needle).count() < count {
            assert!(Instant::now() < deadline, "no {needle:?} on stderr:\n{}", self.stderr_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn sigterm(&self) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed: {}", io::Error::last_os_error());
    }

    /// Waits for the process to exit on its own, at most `EXIT_TIMEOUT_MS`.
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("server running");
        let deadline = Instant::now() + Duration::from_millis(EXIT_TIMEOUT_MS);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                if let Some(thread) = self.stderr_thread.take() {
                    let _ = thread.join();
                }
                return status;
            }
            if Instant::now() >= deadline {
                panic!("sluice serve did not exit within {EXIT_TIMEOUT_MS} ms; stderr:\n{}", self.stderr_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait()
    }

    /// SIGKILL (kill -9) and reap: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Signing (SPEC §1.1), independent of the server's implementation
// ---------------------------------------------------------------------------------------

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.
pub fn sign_v1(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex(&mac.finalize().into_bytes()))
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// Current Unix seconds, taken in the first half of a second so that a request sent at
/// once is judged by the server within the same second (for window-edge tests).
pub fn now_secs_early() -> u64 {
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
        if now.subsec_millis() < 500 {
            return now.as_secs();
        }
        std::thread::sleep(Duration::from_millis(u64::from(1000 - now.subsec_millis()) + 1));
    }
}

/// The three signing headers for `body` with the test key at the current time.
pub fn auth_headers(body: &[u8]) -> Vec<(String, String)> {
    signing_headers(KID, &SECRET, &now_secs().to_string(), body)
}

/// The three signing headers for `body`, signed by `kid` / `secret` at `timestamp`.
pub fn signing_headers(kid: &str, secret: &[u8], timestamp: &str, body: &[u8]) -> Vec<(String, String)> {
    let signature = sign_v1(secret, timestamp, body);
    vec![("X-Key-Id".into(), kid.into()), ("X-Timestamp".into(), timestamp.into()), ("X-Signature".into(), signature)]
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------------------

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
}

/// A TCP connection with the test client's timeouts and no Nagle delay.
pub fn connect_tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
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

// ---------------------------------------------------------------------------------------
// `sluice tail`
// ---------------------------------------------------------------------------------------

/// One line of `sluice tail` output.
#[derive(Debug, Clone)]
pub struct TailLine {
    pub partition: u32,
    pub offset: u64,
    /// The stored event exactly as printed (raw bytes of the body plus `ingested_at`).
    pub event: String,
    pub event_json: Json,
    pub line: String,
}

impl TailLine {
    pub fn event_id(&self) -> String {
        self.event_json.get("event_id").and_then(Json::as_str).expect("stored event has event_id").to_owned()
    }
}

/// Runs `sluice` with `args` and returns its output.
pub fn run_sluice(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("run sluice")
}

/// `sluice tail --data-dir DIR --from earliest` (all partitions), parsed; panics if it
/// fails or a line is not JSON of the promised shape.
pub fn tail(data_dir: &Path) -> Vec<TailLine> {
    tail_with(data_dir, &[])
}

pub fn tail_with(data_dir: &Path, extra: &[&str]) -> Vec<TailLine> {
    let dir = data_dir.to_str().expect("utf-8 path");
    let mut args = vec!["tail", "--data-dir", dir];
    args.extend_from_slice(extra);
    let output = run_sluice(&args);
    assert!(output.status.success(), "sluice tail {extra:?} failed: {:?}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("tail prints UTF-8");
    stdout.lines().map(parse_tail_line).collect()
}

pub fn parse_tail_line(line: &str) -> TailLine {
    let json = Json::parse(line.as_bytes()).unwrap_or_else(|e| panic!("tail line is not JSON ({e}): {line}"));
    let partition = json.get("partition").and_then(Json::as_u64).unwrap_or_else(|| panic!("no partition: {line}"));
    let offset = json.get("offset").and_then(Json::as_u64).unwrap_or_else(|| panic!("no offset: {line}"));
    let event_json = json.get("event").cloned().unwrap_or_else(|| panic!("no event: {line}"));
    assert!(matches!(event_json, Json::Obj(_)), "event is not an object: {line}");
    let prefix = format!("{{\"partition\":{partition},\"offset\":{offset},\"event\":");
    let event = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or_else(|| panic!("tail line not shaped {{\"partition\",\"offset\",\"event\"}}: {line}"))
        .to_owned();
    TailLine { partition: partition as u32, offset, event, event_json, line: line.to_owned() }
}

/// Checks that `stored` (as `sluice tail` prints it) is `sent` with
/// `,"ingested_at":"<RFC 3339 ms>"` inserted before the final `}`, and returns the
/// ingested_at value in Unix ms. Tail prints raw CR/LF (only ever insignificant
/// whitespace in valid JSON) as spaces, so they are compared as spaces; the bytes on
/// disk are checked exactly by [`segment_records`] users.
pub fn assert_stored_as_sent(sent: &str, stored: &str) -> i64 {
    let flat = sent.replace(['\r', '\n'], " ");
    let sent = flat.as_str();
    let close = sent.rfind('}').expect("sent body has a closing brace");
    let (head, tail) = sent.split_at(close);
    let rest = stored
        .strip_prefix(head)
        .unwrap_or_else(|| panic!("stored event does not start with the sent bytes\nsent:   {sent}\nstored: {stored}"));
    let rest = rest.strip_prefix(",\"ingested_at\":\"").unwrap_or_else(|| panic!("no ingested_at right after the sent bytes: {stored}"));
    let (stamp, after) = rest.split_once('"').unwrap_or_else(|| panic!("unterminated ingested_at: {stored}"));
    assert_eq!(after, tail, "bytes after ingested_at differ from the sent body's end\nsent:   {sent}\nstored: {stored}");
    parse_rfc3339_ms_utc(stamp).unwrap_or_else(|| panic!("ingested_at {stamp:?} is not RFC 3339 UTC with milliseconds"))
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SS.mmmZ` into Unix ms (own implementation).
pub fn parse_rfc3339_ms_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        if s.bytes().all(|c| c.is_ascii_digit()) { s.parse().ok() } else { None }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut days = 0i64;
    for y in 1970..year {
        days += if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 366 } else { 365 };
    }
    days += month_days[..(month - 1) as usize].iter().sum::<i64>() + day - 1;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

/// One record read straight from the segment files (not through `sluice tail`).
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub offset: u64,
    pub event_id: Vec<u8>,
    pub event: Vec<u8>,
    /// Segment file and byte position of the record's start.
    pub path: PathBuf,
    pub position: usize,
    pub stored_bytes: usize,
}

/// Segment files of a partition, oldest first.
pub fn segment_files(data_dir: &Path, partition: u32) -> Vec<PathBuf> {
    let dir = data_dir.join("partitions").join(format!("{partition:04}"));
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.expect("dir entry").path()).filter(|p| p.extension().is_some_and(|x| x == "seg")).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", dir.display()),
    };
    files.sort();
    files
}

/// Every whole record of a partition, decoded with `sluice::log::format`.
pub fn segment_records(data_dir: &Path, partition: u32) -> Vec<RawRecord> {
    let mut records = Vec::new();
    for path in segment_files(data_dir, partition) {
        let bytes = std::fs::read(&path).expect("read segment");
        let header = sluice::log::format::decode_segment_header(&bytes).expect("segment header");
        let mut position = 64;
        sluice::log::format::scan_records(&bytes, header.base_offset, |record| {
            records.push(RawRecord {
                offset: record.offset,
                event_id: record.event_id.to_vec(),
                event: record.event.to_vec(),
                path: path.clone(),
                position,
                stored_bytes: record.stored_bytes,
            });
            position += record.stored_bytes;
        });
    }
    records
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

// ---------------------------------------------------------------------------------------
// A small strict JSON reader (RFC 8259), enough to check answers and tail lines.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text as written.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// Nesting bound of the reader (well above the server's 64).
const JSON_READER_DEPTH_MAX: usize = 256;

impl Json {
    pub fn parse(bytes: &[u8]) -> Result<Json, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        let mut reader = JsonReader { s: text.as_bytes(), at: 0 };
        reader.ws();
        let value = reader.value(0)?;
        reader.ws();
        if reader.at != reader.s.len() {
            return Err(format!("trailing bytes at {}", reader.at));
        }
        Ok(value)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Num(n) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(items) => Some(items),
            _ => None,
        }
    }
}

struct JsonReader<'a> {
    s: &'a [u8],
    at: usize,
}

impl JsonReader<'_> {
    fn ws(&mut self) {
        while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", byte as char, self.at))
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.s[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(format!("bad literal at {}", self.at))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > JSON_READER_DEPTH_MAX {
            return Err("too deep".into());
        }
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                    let value = self.value(depth + 1)?;
                    members.push((key, value));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Obj(members));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.at)),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.at)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(format!("unexpected byte at {}", self.at)),
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = |r: &mut Self| {
            let from = r.at;
            while r.peek().is_some_and(|b| b.is_ascii_digit()) {
                r.at += 1;
            }
            r.at - from
        };
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(format!("bad number at {start}")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return Err(format!("bad fraction at {start}"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(format!("bad exponent at {start}"));
            }
        }
        Ok(Json::Num(String::from_utf8_lossy(&self.s[start..self.at]).into_owned()))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.at..self.at + 4).ok_or("short \\u escape")?;
        let text = std::str::from_utf8(digits).map_err(|_| "bad \\u escape")?;
        let value = u32::from_str_radix(text, 16).map_err(|_| format!("bad \\u escape at {}", self.at))?;
        self.at += 4;
        Ok(value)
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let Some(byte) = self.peek() else { return Err("unterminated string".into()) };
            match byte {
                b'"' => {
                    self.at += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.at += 1;
                    let escape = self.peek().ok_or("unterminated escape")?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let unit = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&unit) {
                                if !self.s[self.at..].starts_with(b"\\u") {
                                    return Err("lone high surrogate".into());
                                }
                                self.at += 2;
                                let low = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return Err("bad low surrogate".into());
                                }
                                0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                            } else {
                                unit
                            };
                            out.push(char::from_u32(code).ok_or("bad code point")?);
                        }
                        _ => return Err(format!("bad escape at {}", self.at)),
                    }
                }
                0..=0x1f => return Err(format!("control byte in string at {}", self.at)),
                _ => {
                    // Copy one whole UTF-8 character (the input is valid UTF-8).
                    let len = match byte {
                        0x00..=0x7f => 1,
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    let piece = std::str::from_utf8(&self.s[self.at..self.at + len]).map_err(|e| e.to_string())?;
                    out.push_str(piece);
                    self.at += len;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers over answers
// ---------------------------------------------------------------------------------------

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

//! The admin listener: `/metrics` (Prometheus text), `/healthz`, `/readyz`, and
//! `POST /admin/reload` (loopback peers only). It is off the data path, so one plain
//! blocking thread serves it, one short request at a time, each bounded in bytes and time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::config::reload::{self, Reloadables};
use crate::metrics::Control;

mod governance;

/// Bytes of an admin request we read; the head of a GET is far smaller.
const ADMIN_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// A slow admin client is cut after this.
const ADMIN_IO_TIMEOUT_MS: u64 = 2000;
/// Body of an admin request (a schema is at most `SCHEMA_BYTES_MAX`, a runbook larger).
const ADMIN_BODY_BYTES_MAX: usize = 16 << 20;

/// Binds the admin address and serves it on a background thread; returns the bound address.
pub fn spawn(addr: SocketAddr, control: Arc<Control>, reloadables: Arc<Reloadables>) -> io::Result<SocketAddr> {
    let listener =
        TcpListener::bind(addr).map_err(|error| io::Error::new(error.kind(), format!("cannot listen on admin address {addr}: {error}")))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("sluice-admin".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = serve_one(stream, &control, &reloadables);
        }
    })?;
    Ok(bound)
}

/// One admin request: method, path, query string and body.
pub(crate) struct AdminRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
}

fn serve_one(mut stream: TcpStream, control: &Control, reloadables: &Reloadables) -> io::Result<()> {
    let timeout = Some(Duration::from_millis(ADMIN_IO_TIMEOUT_MS));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let mut buf = vec![0u8; ADMIN_REQUEST_BYTES_MAX];
    let mut filled = 0;
    let (method, path, query, head_len, body_len) = loop {
        let read = stream.read(&mut buf[filled..])?;
        if read == 0 {
            return Ok(());
        }
        filled += read;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(head_len)) => {
                let target = request.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let length = request.headers.iter().find(|header| header.name.eq_ignore_ascii_case("content-length"));
                let length = length.and_then(|header| std::str::from_utf8(header.value).ok()?.trim().parse::<usize>().ok()).unwrap_or(0);
                break (request.method.unwrap_or("GET").to_owned(), path.to_owned(), query.to_owned(), head_len, length);
            }
            Ok(httparse::Status::Partial) if filled < buf.len() => continue,
            _ => {
                return respond(
                    &mut stream,
                    400,
                    "application/json",
                    "{\"error\":{\"code\":\"http_malformed\",\"message\":\"bad request\"}}",
                );
            }
        }
    };
    if path == "/admin/reload" {
        return admin_reload(&mut stream, &method, reloadables);
    }
    if path.starts_with("/admin/") {
        if body_len > ADMIN_BODY_BYTES_MAX {
            return respond(
                &mut stream,
                413,
                "application/json",
                "{\"error\":{\"code\":\"body_too_large\",\"message\":\"admin bodies are at most 16 MiB\"}}",
            );
        }
        if !stream.peer_addr()?.ip().to_canonical().is_loopback() {
            return respond(
                &mut stream,
                403,
                "application/json",
                "{\"error\":{\"code\":\"forbidden\",\"message\":\"the admin API is for loopback clients only\"}}",
            );
        }
        let mut body = buf[head_len..filled].to_vec();
        body.truncate(body_len);
        if body.len() < body_len {
            let start = body.len();
            body.resize(body_len, 0);
            stream.read_exact(&mut body[start..])?;
        }
        let request = AdminRequest { method, path, query, body };
        return governance::serve(&mut stream, control, reloadables, &request);
    }
    match path.as_str() {
        "/metrics" => respond(&mut stream, 200, "text/plain; version=0.0.4", &control.render_metrics()),
        "/healthz" => respond(&mut stream, 200, "application/json", "{\"status\":\"ok\"}"),
        "/readyz" if control.is_ready() => respond(&mut stream, 200, "application/json", &readiness(control, None)),
        "/readyz" => respond(&mut stream, 503, "application/json", &readiness(control, Some(not_ready_reason(control)))),
        _ => respond(&mut stream, 404, "application/json", "{\"error\":{\"code\":\"not_found\",\"message\":\"no such endpoint\"}}"),
    }
}

/// What is keeping the node from being ready, for the `/readyz` message.
fn not_ready_reason(control: &Control) -> &'static str {
    use std::sync::atomic::Ordering::Acquire;
    if control.draining.load(Acquire) {
        "draining"
    } else if control.storage_failed.load(Acquire) {
        "storage is fail-stop after a failed fdatasync: restart to recover"
    } else if control.storage_refusing.load(Acquire) {
        "storage is refusing writes (disk full or failing)"
    } else if control.stalled.load(Acquire) {
        "a shard stalled"
    } else {
        "starting"
    }
}

/// The `/readyz` body: `{"status":"ready"}` or the `not_ready` error, plus, when
/// recovery found damaged records, a `storage` detail naming them (a node with damage
/// still takes writes; the damage is for the operator, also in
/// `sluice_log_damaged_offsets` and the start-up log).
fn readiness(control: &Control, not_ready: Option<&str>) -> String {
    const RANGES_SHOWN_MAX: usize = 16;
    let damage = control.damage.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let detail = if damage.is_empty() {
        String::new()
    } else {
        let total: u64 = damage.iter().map(|(_, range)| range.count()).sum();
        let ranges: Vec<String> = damage
            .iter()
            .take(RANGES_SHOWN_MAX)
            .map(|(slot, range)| {
                let (topic, partition) = control.slot_labels(*slot as usize);
                format!("{{\"topic\":\"{topic}\",\"partition\":{partition},\"from\":{},\"to\":{}}}", range.from, range.to)
            })
            .collect();
        format!(",\"storage\":{{\"damaged_offsets\":{total},\"damaged_ranges\":{},\"damaged\":[{}]}}", damage.len(), ranges.join(","))
    };
    match not_ready {
        None => format!("{{\"status\":\"ready\"{detail}}}"),
        Some(reason) => format!("{{\"error\":{{\"code\":\"not_ready\",\"message\":\"{reason}\"}}{detail}}}"),
    }
}

/// `POST /admin/reload`: 200 `{"reloaded":[..]}`, or the reload error: 400 when a file
/// is unusable, 500 when one cannot be read. Only loopback peers may ask, whatever
/// address the admin listener is bound to.
fn admin_reload(stream: &mut TcpStream, method: &str, reloadables: &Reloadables) -> io::Result<()> {
    if method != "POST" {
        return respond(stream, 405, "application/json", "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"use POST\"}}");
    }
    if !stream.peer_addr()?.ip().to_canonical().is_loopback() {
        return respond(
            stream,
            403,
            "application/json",
            "{\"error\":{\"code\":\"forbidden\",\"message\":\"reload is for loopback clients only\"}}",
        );
    }
    match reload::reload_and_report(reloadables, "admin") {
        Ok(reloaded) => {
            let body = serde_json::json!({ "reloaded": reloaded.parts, "restart_needed": reloaded.restart_needed });
            respond(stream, 200, "application/json", &body.to_string())
        }
        Err(error) => {
            let (status, code) = if error.is_invalid_content() { (400, "reload_rejected") } else { (500, "reload_failed") };
            let message = serde_json::to_string(&error.to_string()).unwrap_or_else(|_| "\"reload failed\"".into());
            respond(stream, status, "application/json", &format!("{{\"error\":{{\"code\":\"{code}\",\"message\":{message}}}}}"))
        }
    }
}

/// One whole answer, then the connection closes (the admin listener's and the Kafka
/// bridge's `/metrics`).
pub(crate) fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        crate::http::reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

//! A small blocking HTTP/1.1 client for the admin API (`sluice schema`, `sluice replay`):
//! one request per connection, bounded answer, bounded time.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Bytes of an admin answer read (a schema list, a dead-letter page).
const ANSWER_BYTES_MAX: u64 = 64 << 20;
const ADMIN_CLIENT_TIMEOUT_MS: u64 = 30_000;

/// Why the admin API could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("admin API at {addr}: {source} (is `sluice serve` running with this [admin] listen?)")]
pub struct AdminCallError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Sends `method path` with an optional JSON body; returns the status and the body.
pub fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), AdminCallError> {
    let failed = |source| AdminCallError { addr, source };
    let timeout = Duration::from_millis(ADMIN_CLIENT_TIMEOUT_MS);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    stream.set_write_timeout(Some(timeout)).map_err(failed)?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(failed)?;
    stream.write_all(body).map_err(failed)?;
    let mut reader = BufReader::new(stream.take(ANSWER_BYTES_MAX));
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(failed)?;
    let status = status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(failed)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut answer = Vec::new();
    match length {
        Some(length) => {
            answer.resize(length, 0);
            reader.read_exact(&mut answer).map_err(failed)?;
        }
        None => {
            reader.read_to_end(&mut answer).map_err(failed)?;
        }
    }
    Ok((status, answer))
}

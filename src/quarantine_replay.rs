//! `sluice quarantine list|replay`: the operator's side of the clock-skew quarantine.
//!
//! `replay` re-sends each quarantined request that has not been replayed yet to the
//! ingest listener, signed afresh (scheme v1, current time) with a currently accepted key
//! of the same partner from the key ring, so the partner's scopes and allow-lists apply
//! as for the original. Webhook requests are replayed to `/v1/events` (the body is the
//! same envelope). Dedup by event_id makes a replay safe to repeat. Progress is recorded
//! per file after every answered request; a 2xx or a 4xx (which a retry cannot change)
//! moves past the request, anything else stops the replay so it can resume later.

#![forbid(unsafe_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth;
use crate::keyring::KeyRing;
use crate::quarantine::{self, Quarantined};

/// How long one replayed request may take.
const REPLAY_TIMEOUT_MS: u64 = 10_000;
/// Largest answer read back.
const ANSWER_BYTES_MAX: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read quarantine {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("partner {partner:?} has no key accepted now in the key ring; add one to replay its requests")]
    NoKey { partner: String },
    #[error("cannot reach the ingest listener {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("the server answered {status} to a replayed request; stopped (run again to resume)")]
    Stopped { status: u16 },
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySummary {
    pub replayed: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// Answered 4xx (for a batch: lines rejected); not retried.
    pub rejected: u64,
    pub skipped_other_partners: u64,
}

/// Every quarantined request in `dir` (optionally one partner's), with its file, offset
/// and whether it was replayed, calling `each` per request.
pub fn for_each(dir: &Path, mut each: impl FnMut(&Path, u64, bool, &Quarantined<'_>)) -> Result<(), ReplayError> {
    for file in quarantine::quarantine_files(dir).map_err(|source| ReplayError::Read { path: dir.to_owned(), source })? {
        let bytes = fs::read(&file).map_err(|source| ReplayError::Read { path: file.clone(), source })?;
        let replayed_to = quarantine::replayed_offset(&file);
        let mut at = 0usize;
        while let Ok((record, used)) = quarantine::decode(&bytes[at..]) {
            each(&file, at as u64, (at as u64) < replayed_to, &record);
            at += used;
        }
    }
    Ok(())
}

/// One line of `sluice quarantine list` (JSON, no body).
pub fn list_line(file: &Path, offset: u64, replayed: bool, record: &Quarantined<'_>) -> String {
    let skew_secs = record.timestamp_secs - record.received_ms.div_euclid(1000);
    serde_json::json!({
        "file": file.file_name().map(|name| name.to_string_lossy().into_owned()),
        "offset": offset,
        "partner": record.partner,
        "kid": record.kid,
        "path": String::from_utf8_lossy(record.path),
        "received_at": String::from_utf8_lossy(&crate::time::format_rfc3339_ms(record.received_ms)),
        "timestamp": record.timestamp_secs,
        "skew_secs": skew_secs,
        "body_bytes": record.body.len(),
        "replayed": replayed,
    })
    .to_string()
}

/// Replays every request not replayed yet (of `partner`, if given) to `addr`.
pub fn replay(dir: &Path, ring: &KeyRing, addr: SocketAddr, partner: Option<&str>, now_ms: i64) -> Result<ReplaySummary, ReplayError> {
    let mut summary = ReplaySummary::default();
    for file in quarantine::quarantine_files(dir).map_err(|source| ReplayError::Read { path: dir.to_owned(), source })? {
        let bytes = fs::read(&file).map_err(|source| ReplayError::Read { path: file.clone(), source })?;
        let mut at = quarantine::replayed_offset(&file) as usize;
        while let Some(Ok((record, used))) = bytes.get(at..).map(quarantine::decode) {
            if partner.is_some_and(|wanted| wanted != record.partner) {
                summary.skipped_other_partners += 1;
            } else {
                replay_one(&record, ring, addr, now_ms, &mut summary)?;
            }
            at += used;
            quarantine::set_replayed_offset(&file, at as u64).map_err(|source| ReplayError::Read { path: file.clone(), source })?;
        }
    }
    Ok(summary)
}

fn replay_one(
    record: &Quarantined<'_>,
    ring: &KeyRing,
    addr: SocketAddr,
    now_ms: i64,
    summary: &mut ReplaySummary,
) -> Result<(), ReplayError> {
    let partner =
        ring.partner_by_name(record.partner.as_bytes()).ok_or_else(|| ReplayError::NoKey { partner: record.partner.to_owned() })?;
    let key = ring
        .keys_of_partner(partner)
        .find(|key| key.accepts_at(now_ms))
        .ok_or_else(|| ReplayError::NoKey { partner: record.partner.to_owned() })?;
    let path: &[u8] = if record.path.starts_with(b"/v1/webhooks/") { b"/v1/events" } else { record.path };
    let timestamp = now_ms.div_euclid(1000).to_string();
    let signature = auth::sign_v1(key.hmac_key(), timestamp.as_bytes(), record.body);
    let mut request = Vec::with_capacity(record.body.len() + 512);
    request.extend_from_slice(b"POST ");
    request.extend_from_slice(path);
    request.extend_from_slice(b" HTTP/1.1\r\nhost: sluice\r\nconnection: close\r\ncontent-type: ");
    request.extend_from_slice(record.content_type);
    let head = format!("\r\nx-key-id: {}\r\nx-timestamp: {timestamp}\r\nx-signature: ", key.kid);
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(&signature);
    request.extend_from_slice(format!("\r\ncontent-length: {}\r\n\r\n", record.body.len()).as_bytes());
    request.extend_from_slice(record.body);
    let (status, body) = exchange(addr, &request)?;
    summary.replayed += 1;
    match status {
        202 => summary.accepted += 1,
        200 if body.contains("\"status\":\"duplicate\"") => summary.duplicates += 1,
        200 => {
            let count = |name: &str| serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v.get(name)?.as_u64()).unwrap_or(0);
            summary.accepted += count("accepted");
            summary.duplicates += count("duplicates");
            summary.rejected += count("rejected");
        }
        400..=499 if status != 429 && status != 408 => summary.rejected += 1,
        _ => return Err(ReplayError::Stopped { status }),
    }
    Ok(())
}

/// Sends one request on a fresh connection and reads the status and body.
fn exchange(addr: SocketAddr, request: &[u8]) -> Result<(u16, String), ReplayError> {
    let connect = |source| ReplayError::Connect { addr, source };
    let timeout = Duration::from_millis(REPLAY_TIMEOUT_MS);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(connect)?;
    stream.set_read_timeout(Some(timeout)).map_err(connect)?;
    stream.write_all(request).map_err(connect)?;
    let mut reader = BufReader::new(stream.take(ANSWER_BYTES_MAX));
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(connect)?;
    let status = status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(connect)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length.min(ANSWER_BYTES_MAX as usize)];
    reader.read_exact(&mut body).map_err(connect)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

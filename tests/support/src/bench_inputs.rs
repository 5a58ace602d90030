//! Inputs shared by the benches: events shaped like the SPEC §1.2 example, padded to a
//! chosen size, and the signed HTTP requests that carry them. Built once, before any
//! timed closure runs.
//!
//! Each bench binary uses a subset of these helpers; signatures come from
//! [`crate::sign`], the signer the black-box tests use.

use std::fmt::Write as _;

/// The SPEC §1.2 example event, byte for byte (310 bytes, whitespace removed).
pub const SPEC_EVENT: &[u8] = br#"{"event_id":"e_01HF3Z8Z7Q8Q2K","event_type":"bet","schema_version":"1.3.0","occurred_at":"2025-10-24T11:37:21Z","key":{"user_id":"u_12345"},"ctx":{"session_id":"s_778","platform":"ios","geo":"TR","device_fp":"fp_4a1"},"payload":{"game_id":"slot_wolf","bet":0.5,"win":1.25,"currency":"EUR","provider":"GameCo"}}"#;

/// Size of a typical single event on the wire: the SPEC example plus a short note.
pub const EVENT_BYTES_TYPICAL: usize = 330;
/// Size of the larger event: a payload with a list of line items.
pub const EVENT_BYTES_LARGE: usize = 4096;
/// Events in the batch body of the HMAC bench (NDJSON, one event per line).
pub const BATCH_EVENTS: usize = 100;

/// The user id of every generated event: the routing key.
pub const USER_ID: &str = "u_12345";

/// An event with the SPEC example's fields and `event_id`, exactly `len` bytes long.
/// The payload gains `{"sku":..,"qty":..,"price":..}` items while they fit, then a
/// `note` string pads to the exact length, so a large event has realistic structure
/// for a JSON parser rather than one long string.
///
/// # Panics
/// If `len` is too small for the fixed fields.
pub fn event(event_id: &str, len: usize) -> Vec<u8> {
    let mut text = format!(
        "{{\"event_id\":\"{event_id}\",\"event_type\":\"bet\",\"schema_version\":\"1.3.0\",\
         \"occurred_at\":\"2025-10-24T11:37:21Z\",\"key\":{{\"user_id\":\"{USER_ID}\"}},\
         \"ctx\":{{\"session_id\":\"s_778\",\"platform\":\"ios\",\"geo\":\"TR\",\"device_fp\":\"fp_4a1\"}},\
         \"payload\":{{\"game_id\":\"slot_wolf\",\"bet\":0.5,\"win\":1.25,\"currency\":\"EUR\",\"provider\":\"GameCo\""
    );
    const NOTE_OPEN: &str = ",\"note\":\"";
    const CLOSE: &str = "\"}}";
    const ITEM_BYTES_MAX: usize = 64;
    if text.len() + NOTE_OPEN.len() + CLOSE.len() + ITEM_BYTES_MAX < len {
        text.push_str(",\"items\":[");
        let mut index = 0u32;
        while text.len() + NOTE_OPEN.len() + CLOSE.len() + ITEM_BYTES_MAX + 1 < len {
            let separator = if index == 0 { "" } else { "," };
            write!(text, "{separator}{{\"sku\":\"sku_{index:05}\",\"qty\":{},\"price\":{}.25}}", index % 7 + 1, index % 50)
                .expect("writing to a String cannot fail");
            index += 1;
        }
        text.push(']');
    }
    text.push_str(NOTE_OPEN);
    let padding = len.checked_sub(text.len() + CLOSE.len()).expect("len too small for the fixed event fields");
    text.extend(std::iter::repeat_n('n', padding));
    text.push_str(CLOSE);
    assert_eq!(text.len(), len);
    text.into_bytes()
}

/// `count` events of `len` bytes with distinct ids, one per line (NDJSON batch body).
pub fn ndjson_batch(count: usize, len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(count * (len + 1));
    for index in 0..count {
        body.extend_from_slice(&event(&format!("e_batch_{index:06}"), len));
        body.push(b'\n');
    }
    body
}

/// A signed `POST /v1/events` with a Content-Length body, as a producer sends it.
pub fn signed_post(body: &[u8], kid: &str, timestamp: &str, signature: &[u8]) -> Vec<u8> {
    let mut request = signed_head(kid, timestamp, signature);
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    request
}

/// The same request with a chunked body cut into chunks of `chunk_bytes`.
pub fn signed_post_chunked(body: &[u8], kid: &str, timestamp: &str, signature: &[u8], chunk_bytes: usize) -> Vec<u8> {
    let mut request = signed_head(kid, timestamp, signature);
    request.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
    for chunk in body.chunks(chunk_bytes) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

fn signed_head(kid: &str, timestamp: &str, signature: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: ingest.example\r\nUser-Agent: producer/1.0\r\n\
         Content-Type: application/json\r\nX-Key-Id: {kid}\r\nX-Timestamp: {timestamp}\r\nX-Signature: "
    )
    .into_bytes();
    head.extend_from_slice(signature);
    head.extend_from_slice(b"\r\n");
    head
}

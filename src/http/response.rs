//! Writing responses: a head whose Content-Length slot is filled in after the body, and
//! the JSON error body every refusal carries.

use super::Status;

const LENGTH_SLOT_BYTES: usize = 10;

/// Appends a response head whose Content-Length is filled in by [`finish_response`]
/// once the body has been appended after it; returns the token to pass there. The value
/// is right-aligned in a fixed slot after optional whitespace (RFC 9110 §5.5), so the body
/// is written once, in place: no staging buffer, no allocation once `out` is warm.
pub fn begin_response(out: &mut Vec<u8>, status: Status, keep_alive: bool, extra: &[u8]) -> usize {
    begin_response_as(out, status, keep_alive, b"application/json", extra)
}

/// [`begin_response`] with another content type (`application/x-ndjson` for reads).
pub fn begin_response_as(out: &mut Vec<u8>, status: Status, keep_alive: bool, content_type: &[u8], extra: &[u8]) -> usize {
    status_line(out, status);
    out.extend_from_slice(b"content-type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\n");
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"content-length:");
    let slot = out.len();
    out.extend_from_slice(&[b' '; LENGTH_SLOT_BYTES]);
    out.extend_from_slice(b"\r\n\r\n");
    slot
}

fn status_line(out: &mut Vec<u8>, status: Status) {
    let mut number = itoa_buf::Buffer::new();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(number.format(u64::from(status.code())));
    out.push(b' ');
    out.extend_from_slice(status.reason().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `204 No Content`: no body and no Content-Length (RFC 9110 §8.6).
pub fn write_no_content(out: &mut Vec<u8>, keep_alive: bool) {
    status_line(out, Status::NoContent);
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The head of an endless answer (a subscription stream, SSE): chunked, then
/// [`begin_chunk`]/[`finish_chunk`] around each part. The connection closes when the
/// stream ends.
pub fn begin_stream(out: &mut Vec<u8>, status: Status, content_type: &[u8], extra: &[u8]) {
    status_line(out, status);
    out.extend_from_slice(b"content-type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\n");
    out.extend_from_slice(extra);
    out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
}

const CHUNK_SIZE_DIGITS: usize = 8;

/// Starts a chunk whose size is filled in by [`finish_chunk`] (fixed-width hex with
/// leading zeros, which the chunk-size grammar allows).
pub fn begin_chunk(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[b'0'; CHUNK_SIZE_DIGITS]);
    out.extend_from_slice(b"\r\n");
    at
}

/// Fills in the chunk begun at `at`; an empty chunk is taken back out (a zero-size
/// chunk would end the stream).
pub fn finish_chunk(out: &mut Vec<u8>, at: usize) {
    let size = out.len() - at - CHUNK_SIZE_DIGITS - 2;
    if size == 0 {
        out.truncate(at);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for digit in 0..CHUNK_SIZE_DIGITS {
        out[at + CHUNK_SIZE_DIGITS - 1 - digit] = HEX[(size >> (4 * digit)) & 0xf];
    }
    out.extend_from_slice(b"\r\n");
}

/// The last chunk: the stream ends.
pub fn end_stream(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Writes the body length into the slot reserved by [`begin_response`].
pub fn finish_response(out: &mut [u8], slot: usize) {
    let body_len = out.len() - slot - LENGTH_SLOT_BYTES - 4;
    let mut number = itoa_buf::Buffer::new();
    let digits = number.format(body_len as u64);
    out[slot + LENGTH_SLOT_BYTES - digits.len()..slot + LENGTH_SLOT_BYTES].copy_from_slice(digits);
}

/// Appends a whole response with a ready body.
pub fn write_response(out: &mut Vec<u8>, status: Status, body: &[u8], keep_alive: bool, extra: &[u8]) {
    let slot = begin_response(out, status, keep_alive, extra);
    out.extend_from_slice(body);
    finish_response(out, slot);
}

/// Appends `text` as the inside of a JSON string, escaping what JSON requires, so no
/// message can break the answer's JSON.
pub fn write_json_string_content(out: &mut Vec<u8>, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            _ => out.push(byte),
        }
    }
}

/// Appends `{"error":{"code":"..","message":".."}}`.
pub fn write_error_body(out: &mut Vec<u8>, code: &str, message: &str) {
    out.extend_from_slice(b"{\"error\":");
    write_error_object(out, code, message);
    out.push(b'}');
}

/// Appends `{"code":"..","message":".."}`.
pub fn write_error_object(out: &mut Vec<u8>, code: &str, message: &str) {
    out.extend_from_slice(b"{\"code\":\"");
    write_json_string_content(out, code);
    out.extend_from_slice(b"\",\"message\":\"");
    write_json_string_content(out, message);
    out.extend_from_slice(b"\"}");
}

/// For a HEAD request: drops the body of the response that starts at `start` in `out`,
/// keeping its head (and its Content-Length, as RFC 9110 §9.3.2 asks).
pub fn strip_body(out: &mut Vec<u8>, start: usize) {
    if let Some(end) = out[start..].windows(4).position(|w| w == b"\r\n\r\n") {
        out.truncate(start + end + 4);
    }
}

/// A tiny stack formatter for unsigned integers (no allocation).
pub mod itoa_buf {
    pub struct Buffer {
        bytes: [u8; 20],
    }

    impl Buffer {
        pub fn new() -> Buffer {
            Buffer { bytes: [0; 20] }
        }

        pub fn format(&mut self, mut value: u64) -> &[u8] {
            let mut at = self.bytes.len();
            loop {
                at -= 1;
                self.bytes[at] = b'0' + (value % 10) as u8;
                value /= 10;
                if value == 0 {
                    return &self.bytes[at..];
                }
            }
        }
    }

    impl Default for Buffer {
        fn default() -> Self {
            Self::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_error_text() {
        let mut out = Vec::new();
        write_error_body(&mut out, "c", "say \"hi\" \\ \n");
        assert_eq!(out, br#"{"error":{"code":"c","message":"say \"hi\" \\ \u000a"}}"#);
    }

    #[test]
    fn writes_responses() {
        let mut out = Vec::new();
        let mut body = Vec::new();
        write_error_body(&mut body, "body_too_large", "too big");
        write_response(&mut out, Status::ContentTooLarge, &body, false, b"");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 413 Content Too Large\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n"));
        assert!(text.contains("content-length:        55\r\n\r\n{"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"error\":{\"code\":\"body_too_large\",\"message\":\"too big\"}}"));
    }
}

//! Chunked transfer coding (RFC 9112 §7.1), de-chunked in place and incrementally, so a
//! slow chunked body is never re-scanned. Strict where two parsers could disagree:
//! chunk-size lines and trailer lines are checked byte by byte.

use super::HttpError;
use crate::constants::{CHUNK_LINE_BYTES_MAX, CHUNK_SIZE_HEX_DIGITS_MAX, CHUNK_TRAILER_BYTES_MAX};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkStep {
    /// At the start of a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(usize),
    /// After chunk data, expecting CRLF.
    DataEnd,
    /// After the last chunk, inside trailers that began at this position.
    Trailers(usize),
}

fn hex_value(byte: u8) -> Option<usize> {
    (byte as char).to_digit(16).map(|d| d as usize)
}

/// A byte a chunk-size or trailer line may hold: visible ASCII, SP, HTAB and obs-text.
/// CR and LF anywhere but the final CRLF, NUL and other controls are refused.
fn is_line_byte(byte: u8) -> bool {
    byte == b'\t' || (byte >= b' ' && byte != 0x7f)
}

/// Position just past the CRLF ending the line that starts at `from`; `Ok(None)` while
/// the line is incomplete. A line (CRLF included) longer than `max_bytes` is `too_long`;
/// a bare LF or CR or a control byte in it is `ChunkInvalid`.
fn line_end(buf: &[u8], from: usize, max_bytes: usize, too_long: HttpError) -> Result<Option<usize>, HttpError> {
    let window = &buf[from..buf.len().min(from + max_bytes)];
    let Some(at) = memchr::memchr(b'\n', window) else {
        return if window.len() == max_bytes { Err(too_long) } else { Ok(None) };
    };
    match window[..at].split_last() {
        Some((b'\r', line)) if line.iter().all(|b| is_line_byte(*b)) => Ok(Some(from + at + 1)),
        _ => Err(HttpError::ChunkInvalid),
    }
}

pub(super) enum Dechunk {
    Done { body_len: usize, consumed: usize },
    More { read: usize, body_len: usize, step: ChunkStep },
}

/// Moves chunk data down to `buf[head_len..head_len + body_len]`, reading from `read`.
/// Bytes between the de-chunked body and `read` are dead; they belong to this request.
pub(super) fn dechunk(
    buf: &mut [u8],
    head_len: usize,
    mut read: usize,
    mut body_len: usize,
    mut step: ChunkStep,
    body_max: usize,
) -> Result<Dechunk, HttpError> {
    loop {
        match step {
            ChunkStep::Size => {
                let Some(end) = line_end(buf, read, CHUNK_LINE_BYTES_MAX, HttpError::ChunkLineTooLong)? else {
                    return Ok(Dechunk::More { read, body_len, step });
                };
                let size = chunk_size(&buf[read..end - 2])?;
                if size > body_max - body_len {
                    return Err(HttpError::BodyTooLarge);
                }
                read = end;
                step = if size == 0 { ChunkStep::Trailers(read) } else { ChunkStep::Data(size) };
            }
            ChunkStep::Data(left) => {
                let available = (buf.len() - read).min(left);
                if available == 0 {
                    return Ok(Dechunk::More { read, body_len, step });
                }
                let to = head_len + body_len;
                buf.copy_within(read..read + available, to);
                read += available;
                body_len += available;
                step = if available == left { ChunkStep::DataEnd } else { ChunkStep::Data(left - available) };
            }
            ChunkStep::DataEnd => {
                if buf.len() - read < 2 {
                    return Ok(Dechunk::More { read, body_len, step });
                }
                if &buf[read..read + 2] != b"\r\n" {
                    return Err(HttpError::ChunkInvalid);
                }
                read += 2;
                step = ChunkStep::Size;
            }
            ChunkStep::Trailers(start) => {
                let budget = (start + CHUNK_TRAILER_BYTES_MAX).saturating_sub(read);
                let Some(end) = line_end(buf, read, budget, HttpError::TrailersTooLarge)? else {
                    return Ok(Dechunk::More { read, body_len, step });
                };
                let empty = end - read == 2;
                // A trailer line is a header field (RFC 9112 §7.1.2): `token ":" value`.
                // Anything else (an obs-fold continuation, a request line a proxy would
                // have taken for the next request) is refused, not swallowed.
                if !empty && !is_field_line(&buf[read..end - 2]) {
                    return Err(HttpError::ChunkInvalid);
                }
                read = end;
                if empty {
                    return Ok(Dechunk::Done { body_len, consumed: read });
                }
            }
        }
    }
}

/// `token ":" ...`: a field name of RFC 9110 token characters, then a colon.
fn is_field_line(line: &[u8]) -> bool {
    let is_tchar = |byte: &u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(byte);
    let name_len = line.iter().take_while(|byte| is_tchar(byte)).count();
    name_len > 0 && line.get(name_len) == Some(&b':')
}

/// The size on a chunk-size line (CRLF removed): 1..=`CHUNK_SIZE_HEX_DIGITS_MAX` hex
/// digits, then nothing or optional whitespace and `;` extensions (ignored). `0x10`,
/// signs, an empty size and stray bytes after the digits are `ChunkInvalid`.
fn chunk_size(line: &[u8]) -> Result<usize, HttpError> {
    let digits_len = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits_len == 0 || digits_len > CHUNK_SIZE_HEX_DIGITS_MAX {
        return Err(HttpError::ChunkInvalid);
    }
    let after = &line[digits_len..];
    let extension_start = after.iter().find(|b| !matches!(b, b' ' | b'\t'));
    match extension_start {
        Some(b';') => {}
        None if after.is_empty() => {}
        _ => return Err(HttpError::ChunkInvalid),
    }
    Ok(line[..digits_len].iter().fold(0usize, |acc, b| acc * 16 + hex_value(*b).unwrap_or(0)))
}

//! The gateway's `ingested_at` stamp (SPEC §1.2), inserted into the stored bytes
//! before the body's closing brace: the producer's bytes are never re-serialized.

use super::*;

pub(super) const STAMP_PREFIX: &[u8] = b",\"ingested_at\":\"";
/// Length of a [`Stamp`]: the prefix, a millisecond RFC 3339 time, the closing quote.
pub const STAMP_BYTES: usize = STAMP_PREFIX.len() + RFC3339_MS_LEN + 1;

/// The `,"ingested_at":"<RFC 3339 ms>"` bytes the gateway inserts before the closing
/// brace. A valid envelope has at least four members, so the leading comma is always right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub(super) bytes: [u8; STAMP_BYTES],
}

impl Stamp {
    /// The stamp for `ingest_ms` (Unix milliseconds, gateway clock), always UTC with `Z`.
    pub fn new(ingest_ms: i64) -> Stamp {
        let mut bytes = [0u8; STAMP_BYTES];
        let time_at = STAMP_PREFIX.len();
        bytes[..time_at].copy_from_slice(STAMP_PREFIX);
        bytes[time_at..time_at + RFC3339_MS_LEN].copy_from_slice(&format_rfc3339_ms(ingest_ms));
        bytes[STAMP_BYTES - 1] = b'"';
        Stamp { bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The stored event is `body[..close_brace] ++ stamp ++ body[close_brace..]`; returns the
/// three parts for a vectored append. `envelope` must come from validating `body`.
pub fn stamped_parts<'a>(body: &'a [u8], envelope: &Envelope, stamp: &'a Stamp) -> [&'a [u8]; 3] {
    assert_eq!(body.get(envelope.close_brace), Some(&b'}'), "envelope is not from this body");
    let (head, tail) = body.split_at(envelope.close_brace);
    [head, stamp.as_bytes(), tail]
}

/// A stored event's bytes as the producer sent them: the gateway's stamp, the last member
/// [`stamped_parts`] inserted, taken out again (bytes without a stamp come back as they are).
pub fn unstamped(stored: &[u8]) -> Vec<u8> {
    match memchr::memmem::rfind(stored, STAMP_PREFIX) {
        Some(at) => {
            let end = stored[at + STAMP_PREFIX.len()..]
                .iter()
                .position(|byte| *byte == b'"')
                .map_or(stored.len(), |quote| at + STAMP_PREFIX.len() + quote + 1);
            [&stored[..at], &stored[end..]].concat()
        }
        None => stored.to_vec(),
    }
}

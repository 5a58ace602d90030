//! The record framing of the request-id journal and the quarantine files:
//! `len u32 | crc32c u32 | payload`, little-endian, the checksum over the payload. A
//! reader stops at the first frame that is short, out of range or damaged: that is the
//! torn tail of a file that was being appended to.

#![forbid(unsafe_code)]

/// Length and checksum before every payload.
pub const FRAME_BYTES: usize = 8;

/// Why bytes are not a whole, intact record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("record truncated")]
    Truncated,
    #[error("record length out of range")]
    BadLength,
    #[error("record checksum mismatch")]
    BadChecksum,
    #[error("record fields do not add up")]
    BadFields,
    /// From an encoder: a part does not fit its length field, or the payload is over the
    /// reader's limit (the reader would refuse the record and the rest of the file).
    #[error("record too large to encode")]
    TooLarge,
}

/// Starts a record at the end of `out`; write the payload, then [`finish`] with the result.
pub fn begin(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_BYTES]);
    start
}

/// Fills in the length and checksum of the record begun at `start`.
pub fn finish(out: &mut [u8], start: usize) {
    let payload_len = (out.len() - start - FRAME_BYTES) as u32;
    let crc = crc32c::crc32c(&out[start + FRAME_BYTES..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + FRAME_BYTES].copy_from_slice(&crc.to_le_bytes());
}

/// The payload of the record at the start of `bytes` (its length within
/// `payload_min..=payload_max`) and the bytes the record used. Never panics.
pub fn payload(bytes: &[u8], payload_min: usize, payload_max: usize) -> Result<(&[u8], usize), FrameError> {
    let frame = bytes.get(..FRAME_BYTES).ok_or(FrameError::Truncated)?;
    let payload_len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    if !(payload_min..=payload_max).contains(&payload_len) {
        return Err(FrameError::BadLength);
    }
    let payload = bytes.get(FRAME_BYTES..FRAME_BYTES + payload_len).ok_or(FrameError::Truncated)?;
    if crc32c::crc32c(payload) != u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]) {
        return Err(FrameError::BadChecksum);
    }
    Ok((payload, FRAME_BYTES + payload_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_every_cut_or_flip_is_refused() {
        let mut out = b"xx".to_vec();
        let start = begin(&mut out);
        out.extend_from_slice(b"payload");
        finish(&mut out, start);
        let record = &out[start..];
        assert_eq!(payload(record, 1, 64), Ok((&b"payload"[..], record.len())));
        for cut in 0..record.len() {
            assert_eq!(payload(&record[..cut], 1, 64), Err(FrameError::Truncated), "cut at {cut}");
        }
        for index in 0..record.len() {
            let mut flipped = record.to_vec();
            flipped[index] ^= 0x10;
            assert!(payload(&flipped, 1, 64).is_err(), "flip at {index}");
        }
        assert_eq!(payload(record, 8, 64), Err(FrameError::BadLength));
    }
}

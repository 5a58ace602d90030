//! The byte layout of segment headers and records, as pure functions over byte slices.
//!
//! Nothing here touches files or atomics, so recovery, the tail reader and a fuzz target
//! share one decoder. Decoding never panics, never allocates and trusts no length field
//! before checking it against the slice it was given.

use crate::constants::{RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, SEGMENT_BYTES_MAX, SEGMENT_HEADER_BYTES};

/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SLUICSEG";
/// The only segment layout this build reads and writes.
pub const SEGMENT_VERSION: u32 = 1;
/// `b"SLR1"` read as a little-endian `u32`: bytes 28..32 of every record header.
pub const RECORD_MAGIC: u32 = 0x3152_4C53;

/// The segment header covers bytes 0..60 with the CRC stored at 60..64.
const SEGMENT_CRC_AT: usize = 60;
/// The record CRC covers everything after the commit word and the CRC itself.
const RECORD_CRC_FROM: usize = 8;

/// Why bytes are not a valid segment header or record. Recovery treats every variant
/// except `Uncommitted` as damage; `Uncommitted` is the normal end of the written part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("needs {needed} bytes but only {available} remain")]
    Truncated { needed: u64, available: u64 },
    #[error("no record committed here (commit word is 0)")]
    Uncommitted,
    #[error("segment magic is not SLUICSEG")]
    BadSegmentMagic,
    #[error("segment format version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u32),
    #[error("segment_bytes {0} in the header is outside 65..=2^32")]
    BadSegmentBytes(u64),
    #[error("record magic {0:#010x} is not SLR1")]
    BadRecordMagic(u32),
    #[error("record flags {0:#06x} are not understood by this build")]
    UnknownFlags(u16),
    #[error("event id length {id_len} exceeds record body length {body_len}")]
    IdLongerThanBody { id_len: u16, body_len: u32 },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("record offset {found} where {expected} was expected")]
    OffsetOutOfSequence { expected: u64, found: u64 },
    #[error("event id of {0} bytes does not fit the 16-bit length field")]
    IdTooLong(usize),
    #[error("record body is empty or longer than 2^32 - 1 bytes")]
    BadBodyLength,
}

/// The decoded fields of a 64-byte segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub partition: u32,
    /// Offset of the segment's first record; also the number in its file name.
    pub base_offset: u64,
    pub created_ms: i64,
    /// Length of the file as preallocated; records never extend past it.
    pub segment_bytes: u64,
}

/// One valid record borrowed from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    pub offset: u64,
    pub ingest_ms: i64,
    pub event_id: &'a [u8],
    pub event: &'a [u8],
    /// Bytes from this record's start to the next record's: header, body, padding.
    pub stored_bytes: usize,
}

/// Offsets a scan expected but could not read: records damaged in place, or missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Bytes of the segment the damaged records occupied (empty when records are
    /// missing without a trace: an offset jump between two valid records).
    pub from_position: usize,
    pub to_position: usize,
    /// The missing offsets, `from_offset..to_offset`.
    pub from_offset: u64,
    pub to_offset: u64,
    /// What the first unreadable record looked like.
    pub reason: FormatError,
}

/// Where a scan of a segment's records stopped and what it saw on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Position just after the last valid record: where the next record goes.
    pub end_position: usize,
    /// Valid records seen.
    pub records: u64,
    /// Offset after the last valid record (the base offset when there is none).
    pub end_offset: u64,
    /// Largest `ingest_ms` among the valid records; `i64::MIN` when there are none.
    pub last_ingest_ms: i64,
    /// Damage with valid records after it, oldest first: every intact record around it
    /// was kept and visited.
    pub damage: Vec<Damage>,
    /// `Some` when non-zero bytes after the last valid record do not form one: a torn
    /// tail (nothing valid follows it), with what the first of them looked like.
    pub torn_tail: Option<FormatError>,
}

fn u16_at(bytes: &[u8; RECORD_HEADER_BYTES], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at<const N: usize>(bytes: &[u8; N], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at<const N: usize>(bytes: &[u8; N], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Bytes a record with `body_len` body bytes occupies, padding included.
pub fn stored_len(body_len: u64) -> u64 {
    let align = RECORD_ALIGN_BYTES as u64;
    (RECORD_HEADER_BYTES as u64 + body_len).div_ceil(align) * align
}

/// The 64 header bytes for `header`, CRC included.
pub fn encode_segment_header(header: &SegmentHeader) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut out = [0u8; SEGMENT_HEADER_BYTES];
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&header.partition.to_le_bytes());
    out[16..24].copy_from_slice(&header.base_offset.to_le_bytes());
    out[24..32].copy_from_slice(&header.created_ms.to_le_bytes());
    out[32..40].copy_from_slice(&header.segment_bytes.to_le_bytes());
    let crc = crc32c::crc32c(&out[..SEGMENT_CRC_AT]);
    out[SEGMENT_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the segment header at the start of `buf`. Magic and CRC are checked before
/// the version, so a torn header reads as `BadSegmentMagic`/`BadChecksum`/`Truncated`
/// and a header from a newer sluice as `UnsupportedVersion`.
pub fn decode_segment_header(buf: &[u8]) -> Result<SegmentHeader, FormatError> {
    let Some(Ok(bytes)) = buf.get(..SEGMENT_HEADER_BYTES).map(<[u8; SEGMENT_HEADER_BYTES]>::try_from) else {
        return Err(FormatError::Truncated { needed: SEGMENT_HEADER_BYTES as u64, available: buf.len() as u64 });
    };
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err(FormatError::BadSegmentMagic);
    }
    let stored = u32_at(&bytes, SEGMENT_CRC_AT);
    let computed = crc32c::crc32c(&bytes[..SEGMENT_CRC_AT]);
    if stored != computed {
        return Err(FormatError::BadChecksum { stored, computed });
    }
    let version = u32_at(&bytes, 8);
    if version != SEGMENT_VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let segment_bytes = u64_at(&bytes, 32);
    if segment_bytes <= SEGMENT_HEADER_BYTES as u64 || segment_bytes > SEGMENT_BYTES_MAX {
        return Err(FormatError::BadSegmentBytes(segment_bytes));
    }
    Ok(SegmentHeader {
        partition: u32_at(&bytes, 12),
        base_offset: u64_at(&bytes, 16),
        created_ms: u64_at(&bytes, 24) as i64,
        segment_bytes,
    })
}

/// Decodes the record at the start of `buf` (which runs to the end of the segment).
/// Checks, in order: room for a header, the commit word, magic, flags, id length,
/// room for body and padding, CRC. Offset sequence is the caller's to check.
pub fn decode_record(buf: &[u8]) -> Result<DecodedRecord<'_>, FormatError> {
    let truncated = |needed: u64| FormatError::Truncated { needed, available: buf.len() as u64 };
    let Some(Ok(header)) = buf.get(..RECORD_HEADER_BYTES).map(<[u8; RECORD_HEADER_BYTES]>::try_from) else {
        return Err(truncated(RECORD_HEADER_BYTES as u64));
    };
    let body_len = u32_at(&header, 0);
    if body_len == 0 {
        return Err(FormatError::Uncommitted);
    }
    let magic = u32_at(&header, 28);
    if magic != RECORD_MAGIC {
        return Err(FormatError::BadRecordMagic(magic));
    }
    let flags = u16_at(&header, 26);
    if flags != 0 {
        return Err(FormatError::UnknownFlags(flags));
    }
    let id_len = u16_at(&header, 24);
    if u32::from(id_len) > body_len {
        return Err(FormatError::IdLongerThanBody { id_len, body_len });
    }
    let stored = stored_len(u64::from(body_len));
    if stored > buf.len() as u64 {
        return Err(truncated(stored));
    }
    // Both fit in `buf`, whose length is a usize, so the conversions are lossless.
    let body_end = RECORD_HEADER_BYTES + body_len as usize;
    let stored_crc = u32_at(&header, 4);
    let computed = crc32c::crc32c(&buf[RECORD_CRC_FROM..body_end]);
    if stored_crc != computed {
        return Err(FormatError::BadChecksum { stored: stored_crc, computed });
    }
    let id_end = RECORD_HEADER_BYTES + usize::from(id_len);
    Ok(DecodedRecord {
        offset: u64_at(&header, 8),
        ingest_ms: u64_at(&header, 16) as i64,
        event_id: &buf[RECORD_HEADER_BYTES..id_end],
        event: &buf[id_end..body_end],
        stored_bytes: stored as usize,
    })
}

/// Writes a whole record except its commit word (bytes 0..4, left as they are) into
/// `out`, which must start at the record's position. Returns the body length: the
/// value the caller publishes as the commit word once these bytes are in place.
pub fn write_record_uncommitted(out: &mut [u8], offset: u64, ingest_ms: i64, event_id: &[u8], parts: &[&[u8]]) -> Result<u32, FormatError> {
    let id_len = u16::try_from(event_id.len()).map_err(|_| FormatError::IdTooLong(event_id.len()))?;
    let body_len = parts.iter().fold(event_id.len() as u64, |sum, part| sum + part.len() as u64);
    let body_len = u32::try_from(body_len).ok().filter(|&len| len > 0).ok_or(FormatError::BadBodyLength)?;
    let stored = stored_len(u64::from(body_len));
    if stored > out.len() as u64 {
        return Err(FormatError::Truncated { needed: stored, available: out.len() as u64 });
    }
    let out = &mut out[..stored as usize];
    out[8..16].copy_from_slice(&offset.to_le_bytes());
    out[16..24].copy_from_slice(&ingest_ms.to_le_bytes());
    out[24..26].copy_from_slice(&id_len.to_le_bytes());
    out[26..28].copy_from_slice(&0u16.to_le_bytes());
    out[28..32].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    let mut at = RECORD_HEADER_BYTES;
    for piece in std::iter::once(event_id).chain(parts.iter().copied()) {
        out[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
    }
    out[at..].fill(0);
    let crc = crc32c::crc32c(&out[RECORD_CRC_FROM..at]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(body_len)
}

/// Walks the records of `segment` (a whole segment file, header included) whose first
/// record carries `base_offset`, and calls `visit` for each valid one in order.
///
/// Damage is told from a torn tail by what follows it: after an unreadable record the
/// scan looks, at every record alignment, for the next valid record with an offset at
/// least the one expected. Found: the stretch is [`Damage`] and the scan goes on from
/// there, so an intact record is never lost behind a damaged one. Not found: the bytes
/// are a torn tail (`torn_tail`), or the normal unwritten end when they are all zero.
/// A false resynchronisation needs a 32-byte header with the record magic and a
/// matching CRC-32C; event bytes cannot carry one by accident, because stored events
/// are JSON text and a record header always holds zero bytes, which JSON text cannot.
pub fn scan_segment<'a>(segment: &'a [u8], base_offset: u64, visit: impl FnMut(&DecodedRecord<'a>)) -> ScanOutcome {
    scan_segment_from(segment, SEGMENT_HEADER_BYTES, base_offset, visit)
}

/// [`scan_segment`] from `position` (a record boundary, such as a checkpoint's), where
/// the record with offset `expected` is; the outcome counts only what it saw from there.
pub fn scan_segment_from<'a>(segment: &'a [u8], position: usize, expected: u64, mut visit: impl FnMut(&DecodedRecord<'a>)) -> ScanOutcome {
    let mut outcome = ScanOutcome {
        end_position: position,
        records: 0,
        end_offset: expected,
        last_ingest_ms: i64::MIN,
        damage: Vec::new(),
        torn_tail: None,
    };
    let mut position = position;
    // Bounded: every pass either consumes a record or jumps to a later position.
    while position + RECORD_HEADER_BYTES <= segment.len() {
        let expected = outcome.end_offset;
        let problem = match decode_record(&segment[position..]) {
            Ok(record) if record.offset == expected => {
                visit(&record);
                position += record.stored_bytes;
                outcome.end_position = position;
                outcome.end_offset = expected + 1;
                outcome.records += 1;
                outcome.last_ingest_ms = outcome.last_ingest_ms.max(record.ingest_ms);
                continue;
            }
            Ok(record) if record.offset > expected => {
                // Whole records, but offsets missing between them.
                let reason = FormatError::OffsetOutOfSequence { expected, found: record.offset };
                outcome.damage.push(Damage {
                    from_position: position,
                    to_position: position,
                    from_offset: expected,
                    to_offset: record.offset,
                    reason,
                });
                outcome.end_offset = record.offset;
                continue;
            }
            Ok(record) => FormatError::OffsetOutOfSequence { expected, found: record.offset },
            Err(FormatError::Uncommitted) if segment[position..].iter().all(|&b| b == 0) => break,
            Err(error) => error,
        };
        match resynchronise(segment, position + RECORD_ALIGN_BYTES, expected) {
            Some((next, offset)) => {
                // Stray bytes before the expected record lose no offset: nothing to report.
                if offset > expected {
                    outcome.damage.push(Damage {
                        from_position: position,
                        to_position: next,
                        from_offset: expected,
                        to_offset: offset,
                        reason: problem,
                    });
                }
                outcome.end_offset = offset;
                position = next;
            }
            None => {
                outcome.torn_tail = Some(problem);
                break;
            }
        }
    }
    outcome
}

/// The first position at or after `from` (rounded up to the record alignment) holding a
/// valid record whose offset is at least `expected`, with that offset.
pub fn resynchronise(segment: &[u8], from: usize, expected: u64) -> Option<(usize, u64)> {
    let mut position = from.next_multiple_of(RECORD_ALIGN_BYTES);
    // Bounded by the segment length, one alignment step per pass; the magic is compared
    // first, so a pass over zeros or noise costs a 4-byte load.
    while position + RECORD_HEADER_BYTES <= segment.len() {
        let magic_at = position + 28;
        if segment[magic_at..magic_at + 4] == RECORD_MAGIC.to_le_bytes()
            && let Ok(record) = decode_record(&segment[position..])
            && record.offset >= expected
        {
            return Some((position, record.offset));
        }
        position += RECORD_ALIGN_BYTES;
    }
    None
}

#[cfg(test)]
pub(crate) fn encode_record(out: &mut [u8], offset: u64, ingest_ms: i64, event_id: &[u8], event: &[u8]) -> usize {
    let body_len = write_record_uncommitted(out, offset, ingest_ms, event_id, &[event]).unwrap();
    out[0..4].copy_from_slice(&body_len.to_le_bytes());
    stored_len(u64::from(body_len)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic bytes without a dependency.
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    fn segment_with(records: &[(&[u8], &[u8])], base: u64) -> Vec<u8> {
        let header = SegmentHeader { partition: 3, base_offset: base, created_ms: 17, segment_bytes: 4096 };
        let mut segment = vec![0u8; 4096];
        segment[..SEGMENT_HEADER_BYTES].copy_from_slice(&encode_segment_header(&header));
        let mut at = SEGMENT_HEADER_BYTES;
        for (index, (id, event)) in records.iter().enumerate() {
            at += encode_record(&mut segment[at..], base + index as u64, 1000 + index as i64, id, event);
        }
        segment
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let header = SegmentHeader { partition: 7, base_offset: 1 << 40, created_ms: -5, segment_bytes: 1 << 20 };
        let bytes = encode_segment_header(&header);
        assert_eq!(decode_segment_header(&bytes), Ok(header));
        assert_eq!(decode_segment_header(&[0u8; 64]), Err(FormatError::BadSegmentMagic));
        assert!(matches!(decode_segment_header(&bytes[..63]), Err(FormatError::Truncated { .. })));
        let mut flipped = bytes;
        flipped[20] ^= 1;
        assert!(matches!(decode_segment_header(&flipped), Err(FormatError::BadChecksum { .. })));
    }

    #[test]
    fn records_round_trip_with_padding() {
        let segment = segment_with(&[(b"id-1", b"{\"a\":1}"), (b"", b"x"), (b"only-id", b"")], 40);
        let mut seen = Vec::new();
        let outcome = scan_segment(&segment, 40, |r| seen.push((r.offset, r.ingest_ms, r.event_id, r.event)));
        assert_eq!((outcome.records, outcome.end_offset), (3, 43));
        assert_eq!((outcome.torn_tail, outcome.damage.len()), (None, 0));
        assert_eq!(outcome.last_ingest_ms, 1002);
        assert_eq!(outcome.end_position, 64 + 48 + 40 + 40);
        assert_eq!(seen[0], (40, 1000, &b"id-1"[..], &b"{\"a\":1}"[..]));
        assert_eq!(seen[1], (41, 1001, &b""[..], &b"x"[..]));
        assert_eq!(seen[2], (42, 1002, &b"only-id"[..], &b""[..]));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let segment = segment_with(&[(b"event-7", b"{\"amount\":12}")], 0);
        for bit in 0..(RECORD_HEADER_BYTES + 20) * 8 {
            let mut damaged = segment.clone();
            damaged[SEGMENT_HEADER_BYTES + bit / 8] ^= 1 << (bit % 8);
            let outcome = scan_segment(&damaged, 0, |_| {});
            assert_eq!(outcome.records, 0, "bit {bit} went unnoticed");
            assert_eq!(outcome.end_position, SEGMENT_HEADER_BYTES);
            assert!(outcome.torn_tail.is_some(), "bit {bit}: damage with nothing after it is a torn tail");
        }
    }

    #[test]
    fn damage_before_intact_records_is_passed_over_not_cut() {
        let records: Vec<(&[u8], &[u8])> = vec![(b"a", b"{\"n\":1}"), (b"b", b"{\"n\":2}"), (b"c", b"{\"n\":3}"), (b"d", b"{\"n\":4}")];
        let segment = segment_with(&records, 100);
        let record_bytes = stored_len(1 + 7) as usize;
        // Flip a byte of the second record, then zero the whole third one (a lost block).
        let mut damaged = segment.clone();
        damaged[SEGMENT_HEADER_BYTES + record_bytes + 20] ^= 0x40;
        damaged[SEGMENT_HEADER_BYTES + 2 * record_bytes..SEGMENT_HEADER_BYTES + 3 * record_bytes].fill(0);
        let mut seen = Vec::new();
        let outcome = scan_segment(&damaged, 100, |r| seen.push(r.offset));
        assert_eq!(seen, [100, 103]);
        assert_eq!((outcome.records, outcome.end_offset, outcome.torn_tail), (2, 104, None));
        assert_eq!(outcome.end_position, SEGMENT_HEADER_BYTES + 4 * record_bytes);
        let [damage] = outcome.damage[..] else { panic!("{:?}", outcome.damage) };
        assert_eq!((damage.from_offset, damage.to_offset), (101, 103));
        assert_eq!(
            (damage.from_position, damage.to_position),
            (SEGMENT_HEADER_BYTES + record_bytes, SEGMENT_HEADER_BYTES + 3 * record_bytes)
        );
        assert!(matches!(damage.reason, FormatError::BadChecksum { .. }));
    }

    #[test]
    fn offset_jumps_are_damage_and_stale_offsets_are_not_records() {
        let segment = segment_with(&[(b"a", b"1"), (b"b", b"2")], 10);
        let outcome = scan_segment(&segment, 9, |_| {});
        assert_eq!((outcome.records, outcome.end_offset), (2, 12));
        assert_eq!((outcome.damage[0].from_offset, outcome.damage[0].to_offset), (9, 10));
        let outcome = scan_segment(&segment, 11, |_| {});
        assert_eq!((outcome.records, outcome.end_offset), (1, 12), "offset 10 is below the expected 11");
        assert_eq!(outcome.damage.len(), 0, "stray bytes before the expected record lose no offset");
    }

    #[test]
    fn garbage_after_the_end_is_a_torn_tail() {
        let mut segment = segment_with(&[(b"a", b"1")], 0);
        let end = SEGMENT_HEADER_BYTES + stored_len(2) as usize;
        segment[end + 100] = 7;
        let outcome = scan_segment(&segment, 0, |_| {});
        assert_eq!((outcome.records, outcome.end_position), (1, end));
        assert_eq!(outcome.torn_tail, Some(FormatError::Uncommitted));
    }

    #[test]
    fn writer_rejects_what_the_format_cannot_hold() {
        let mut out = [0u8; 64];
        assert_eq!(write_record_uncommitted(&mut out, 0, 0, b"", &[]), Err(FormatError::BadBodyLength));
        assert_eq!(write_record_uncommitted(&mut out, 0, 0, &[1; 70_000], &[]), Err(FormatError::IdTooLong(70_000)));
        assert!(matches!(write_record_uncommitted(&mut out, 0, 0, b"x", &[&[0; 40]]), Err(FormatError::Truncated { .. })));
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes() {
        let valid = segment_with(&[(b"id", b"payload-bytes"), (b"id2", b"more")], 0);
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let len = (noise.next() % 200) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
            if round % 2 == 0 && len >= 4 {
                // Plausible commit words and magic reach the deeper checks.
                buf[0..4].copy_from_slice(&((noise.next() % 300) as u32).to_le_bytes());
                if len >= 32 {
                    buf[28..32].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
                    buf[24..28].fill(0);
                }
            }
            let _ = decode_record(&buf);
            let _ = decode_segment_header(&buf);
            let _ = scan_segment(&buf, noise.next(), |_| {});
            let cut = (noise.next() as usize) % valid.len();
            let _ = scan_segment(&valid[..cut], 0, |_| {});
            let _ = decode_record(&valid[SEGMENT_HEADER_BYTES.min(cut)..cut]);
        }
    }
}

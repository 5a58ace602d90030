//! The request-id journal: each shard appends the answers it remembers to
//! `data_dir/request-ids/shard-<k>-<period>.journal`, one file per period (the
//! remembering window), so whole files expire and are deleted. At start every file is
//! read back into [`RequestIds`]; a torn or damaged tail ends a file's replay.
//!
//! Appends are buffered for the loop and written with one `write` before the loop's
//! answers are sent, so a remembered answer is in the page cache before the client can
//! see it: it survives a kill -9 like `durability = "os"` data. It is not fsynced: after
//! a power loss a repeat is processed again and event_id dedup answers `duplicate`.
//!
//! Record: `len u32 | crc32c u32 | payload`, payload = `expires_ms i64 | status u16 |
//! digest [16] | partner_len u16 | id_len u16 | body_len u32 | partner | id | body`,
//! little-endian.

#![forbid(unsafe_code)]

use std::fs;
use std::io;
use std::path::Path;

use crate::perimeter::request_ids::{BodyDigest, RequestIds};
use crate::sidelog::frame;
use crate::sidelog::writer::{self, Rotation, SideLogWriter};

/// Fixed part of a payload.
const PAYLOAD_FIXED_BYTES: usize = 8 + 2 + 16 + 2 + 2 + 4;
/// Largest payload accepted when reading: a batch answer of 1000 results fits easily.
pub const JOURNAL_PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// Largest journal file read back at start.
const JOURNAL_FILE_BYTES_MAX: u64 = 4 << 30;

/// One remembered answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord<'a> {
    pub expires_ms: i64,
    pub status: u16,
    pub digest: BodyDigest,
    pub partner: &'a str,
    pub id: &'a [u8],
    pub body: &'a [u8],
}

/// Why bytes are not a record; reading stops at the first one.
pub type JournalError = crate::sidelog::frame::FrameError;

/// Appends the framed record to `out`. A partner or id longer than `u16::MAX` bytes, or a
/// payload over `JOURNAL_PAYLOAD_BYTES_MAX`, is `TooLarge` and appends nothing: [`decode`]
/// would refuse the record, and start-up would stop replaying the file there.
pub fn encode(record: &JournalRecord<'_>, out: &mut Vec<u8>) -> Result<(), JournalError> {
    let payload_len = PAYLOAD_FIXED_BYTES + record.partner.len() + record.id.len() + record.body.len();
    let too_long = |part: usize| part > usize::from(u16::MAX);
    if too_long(record.partner.len()) || too_long(record.id.len()) || payload_len > JOURNAL_PAYLOAD_BYTES_MAX {
        return Err(JournalError::TooLarge);
    }
    let start = frame::begin(out);
    out.extend_from_slice(&record.expires_ms.to_le_bytes());
    out.extend_from_slice(&record.status.to_le_bytes());
    out.extend_from_slice(&record.digest);
    out.extend_from_slice(&(record.partner.len() as u16).to_le_bytes());
    out.extend_from_slice(&(record.id.len() as u16).to_le_bytes());
    out.extend_from_slice(&(record.body.len() as u32).to_le_bytes());
    out.extend_from_slice(record.partner.as_bytes());
    out.extend_from_slice(record.id);
    out.extend_from_slice(record.body);
    frame::finish(out, start);
    Ok(())
}

/// Decodes the record at the start of `bytes`; returns it and the bytes it used. Never
/// panics; trusts no length before checking it.
pub fn decode(bytes: &[u8]) -> Result<(JournalRecord<'_>, usize), JournalError> {
    let (payload, used) = frame::payload(bytes, PAYLOAD_FIXED_BYTES, JOURNAL_PAYLOAD_BYTES_MAX)?;
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([payload[at], payload[at + 1]]));
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&payload[10..26]);
    let (partner_len, id_len) = (u16_at(26), u16_at(28));
    let body_len = u32::from_le_bytes([payload[30], payload[31], payload[32], payload[33]]) as usize;
    if PAYLOAD_FIXED_BYTES + partner_len + id_len + body_len != payload.len() {
        return Err(JournalError::BadFields);
    }
    let rest = &payload[PAYLOAD_FIXED_BYTES..];
    let partner = std::str::from_utf8(&rest[..partner_len]).map_err(|_| JournalError::BadFields)?;
    let record = JournalRecord {
        expires_ms: i64::from_le_bytes(payload[0..8].try_into().map_err(|_| JournalError::BadFields)?),
        status: u16::from_le_bytes([payload[8], payload[9]]),
        digest,
        partner,
        id: &rest[partner_len..partner_len + id_len],
        body: &rest[partner_len + id_len..],
    };
    Ok((record, used))
}

/// File name suffix of the journal files.
const SUFFIX: &str = ".journal";
/// Periods a journal file is kept after its own: its records expire within one window.
const PERIODS_KEPT: i64 = 2;

/// One shard's writer: the side-log writer with one file per period.
pub struct Journal {
    log: SideLogWriter,
}

/// `(shard, period)` of a journal file name.
#[cfg(test)]
fn parse_name(name: &str) -> Option<(usize, i64)> {
    writer::parse_file_name(name, SUFFIX)
}

impl Journal {
    /// Bytes its buffer holds allocated (for the memory budget).
    pub fn buffer_bytes(&self) -> u64 {
        self.log.buffer_bytes()
    }

    /// A writer for `shard` in `dir`, one file per `period_ms`.
    pub fn new(dir: &Path, shard: usize, period_ms: i64) -> Journal {
        Journal { log: SideLogWriter::new(dir, "request-id journal", SUFFIX, shard, Rotation::Period { period_ms }) }
    }

    /// Buffers `record` for the next flush. One too large to encode is not journaled (the
    /// in-memory table still has it); the server's limits keep real answers far below
    /// that (`PARTNER_BYTES_MAX`, `REQUEST_ID_BYTES_MAX`, `BATCH_EVENTS_MAX` results).
    pub fn append(&mut self, record: &JournalRecord<'_>) {
        let _ = self.log.append(None, |out| encode(record, out));
    }

    /// Writes what was appended this loop. A failure is logged once per period and the
    /// records are dropped (the in-memory table still has them).
    pub fn flush(&mut self, now_ms: i64) {
        let _ = self.log.flush(now_ms);
    }

    /// Deletes this shard's files whose every record has expired (older than two periods).
    pub fn prune(&mut self, now_ms: i64) {
        self.log.prune(now_ms, PERIODS_KEPT);
    }
}

/// What start-up found in the journals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub files: usize,
    pub records: usize,
    pub restored: usize,
    /// Files whose tail was torn or damaged (their replay stopped there).
    pub damaged: usize,
}

/// Reads every journal in `dir` into `ids` and deletes the files that only hold expired
/// records. A missing directory is created.
pub fn load(dir: &Path, ids: &RequestIds, now_ms: i64) -> io::Result<Loaded> {
    fs::create_dir_all(dir)?;
    let mut loaded = Loaded::default();
    // Older periods first, so a later answer for the same id wins.
    for file in writer::files(dir, SUFFIX)? {
        if fs::metadata(&file.path)?.len() > JOURNAL_FILE_BYTES_MAX {
            loaded.damaged += 1;
            continue;
        }
        let bytes = fs::read(&file.path)?;
        loaded.files += 1;
        let mut live = 0;
        let (_, torn) = writer::read_records(&bytes, decode, |_, record| {
            loaded.records += 1;
            if record.expires_ms > now_ms {
                live += 1;
                ids.restore(&record, now_ms);
            }
        });
        loaded.damaged += usize::from(torn);
        loaded.restored += live;
        if live == 0 {
            let _ = fs::remove_file(&file.path);
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perimeter::request_ids::{Claim, digest};

    fn record(id: &[u8], expires_ms: i64) -> JournalRecord<'_> {
        JournalRecord {
            expires_ms,
            status: 202,
            digest: digest(b"/v1/events", b"body"),
            partner: "p",
            id,
            body: b"{\"status\":\"accepted\"}",
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_detected() {
        let mut bytes = Vec::new();
        encode(&record(b"r1", 99), &mut bytes).unwrap();
        let (decoded, used) = decode(&bytes).unwrap();
        assert_eq!((decoded, used), (record(b"r1", 99), bytes.len()));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for index in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[index] ^= 0x40;
            assert!(decode(&flipped).is_err() || decode(&flipped).unwrap().0 != record(b"r1", 99), "flip at {index}");
        }
    }

    #[test]
    fn answers_survive_a_restart_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::new(dir.path(), 0, 1000);
        journal.append(&record(b"live", 10_000));
        journal.append(&record(b"dead", 1_500));
        journal.flush(1_000);
        // A torn record at the end of the file stops the replay there.
        let _ = journal.log.append(None, |out| {
            out.extend_from_slice(&[7, 0, 0]);
            Ok(())
        });
        journal.flush(1_001);
        let ids = RequestIds::new(600_000, 1000, 1 << 20);
        let loaded = load(dir.path(), &ids, 2_000).unwrap();
        assert_eq!(loaded, Loaded { files: 1, records: 2, restored: 1, damaged: 1 });
        assert!(matches!(ids.claim("p", b"live", digest(b"/v1/events", b"body"), 2_000), Claim::Repeat { status: 202, .. }));
        assert!(matches!(ids.claim("p", b"dead", digest(b"/v1/events", b"body"), 2_000), Claim::New(_)));
    }

    #[test]
    fn old_periods_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::new(dir.path(), 3, 1000);
        for now in [0, 1_000, 5_000] {
            journal.append(&record(b"r", now + 2_000));
            journal.flush(now);
        }
        journal.prune(5_000);
        let mut names: Vec<String> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["shard-3-5.journal"]);
        assert_eq!(parse_name("shard-12-345.journal"), Some((12, 345)));
        assert_eq!(parse_name("shard-x-1.journal"), None);
    }

    /// The id's length was written as 16 bits whatever it was, so an id over 64 KiB made
    /// a record with a valid checksum that `decode` refused (`BadFields`), ending the
    /// file's replay there; a payload over `JOURNAL_PAYLOAD_BYTES_MAX` likewise
    /// (`BadLength`). Found by the `journal_decoder` fuzz target (a 256 KiB id).
    #[test]
    fn a_part_longer_than_its_length_field_is_refused_not_truncated() {
        let id = vec![b'i'; usize::from(u16::MAX) + 1];
        let body = vec![b'b'; JOURNAL_PAYLOAD_BYTES_MAX];
        let mut bytes = vec![7];
        for oversized in [record(&id, 99), JournalRecord { body: &body, ..record(b"r", 99) }] {
            assert_eq!(encode(&oversized, &mut bytes), Err(JournalError::TooLarge));
            assert_eq!(bytes, [7], "nothing appended");
        }
        let longest = record(&id[1..], 99);
        encode(&longest, &mut bytes).unwrap();
        assert_eq!(decode(&bytes[1..]).unwrap(), (longest, bytes.len() - 1));
    }
}

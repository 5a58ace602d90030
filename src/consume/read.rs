//! Partition reads (`GET /v1/topics/{t}/partitions/{p}/events`): NDJSON lines shaped as
//! `sluice tail` prints them, read from the partition's segments mapped read-only, up to
//! the readable end, `max` events or `READ_RESPONSE_BYTES_MAX` bytes. A read with
//! nothing to return and `wait_ms` parks as a [`ReadWait`] until the owner publishes
//! more (`shard/consume.rs`) or the wait ends (then 200 with an empty body).

use crate::constants::READ_RESPONSE_BYTES_MAX;
use crate::http::{self, Status, itoa_buf};
use crate::log::{DataDir, LogReader, SeekHint, StartAt, StorageError};

/// `X-Next-Offset` with room for any u64 (20 digits) after one space.
const NEXT_OFFSET_HEADER: &[u8] = b"x-next-offset:                     \r\n";
const NEXT_OFFSET_WIDTH: usize = 21;
const _: () = assert!(NEXT_OFFSET_HEADER.len() == "x-next-offset:".len() + NEXT_OFFSET_WIDTH + 2);

/// One partition read position: a read-only reader of the partition's log.
pub struct PartitionCursor {
    reader: LogReader,
    /// Where this cursor last left a hint: the next one only a stretch further on.
    hinted: Option<SeekHint>,
}

/// Bytes of log between two hints one cursor leaves (a tail reader would otherwise
/// leave one per read).
const HINT_SPACING_BYTES: usize = 256 * 1024;

impl PartitionCursor {
    /// A cursor whose next record is the one at `from` (or the first after it).
    pub fn open(dir: &DataDir, partition: u32, from: u64) -> Result<PartitionCursor, StorageError> {
        Ok(PartitionCursor { reader: LogReader::open(dir, partition, StartAt::Offset(from))?, hinted: None })
    }

    /// [`PartitionCursor::open`], starting from the nearest position at or before `from`
    /// that `hints` (the partition's, shared by every reader in the process) know, so
    /// a seek does not read the segment from its start.
    pub fn open_hinted(dir: &DataDir, partition: u32, from: u64, hints: &SeekHints) -> Result<PartitionCursor, StorageError> {
        match hints.nearest(from) {
            Some(hint) => Ok(PartitionCursor { reader: LogReader::open_at(dir, partition, from, hint)?, hinted: None }),
            None => PartitionCursor::open(dir, partition, from),
        }
    }

    /// Records where this cursor stands in `hints`, once per `HINT_SPACING_BYTES` of
    /// log it passes (and at each new segment).
    pub fn leave_hint(&mut self, hints: &SeekHints) {
        let Some(hint) = self.reader.hint() else { return };
        let far =
            self.hinted.is_none_or(|last| last.base_offset != hint.base_offset || hint.position >= last.position + HINT_SPACING_BYTES);
        if far {
            hints.add(hint);
            self.hinted = Some(hint);
        }
    }

    /// The offset the next record will have at the least.
    pub fn position(&self) -> u64 {
        self.reader.position()
    }

    /// Calls `visit(offset, ingest_ms, event)` for each record below `end`, in order,
    /// until it returns false (that record was taken) or `max` records were visited.
    /// Damaged offsets are passed over (counted in `skipped`).
    pub fn read(
        &mut self,
        end: u64,
        max: usize,
        skipped: &mut u64,
        mut visit: impl FnMut(u64, i64, &[u8]) -> bool,
    ) -> Result<usize, StorageError> {
        self.reader.set_limit(end);
        let mut count = 0;
        while count < max {
            let Some(record) = self.reader.next()? else { break };
            count += 1;
            if !visit(record.offset, record.ingest_ms, record.event) {
                break;
            }
        }
        for gap in self.reader.take_gaps() {
            *skipped += gap.to - gap.from;
            tracing::warn!(dir = %gap_dir(&gap), %gap, "a consumer read passed over offsets it cannot read");
        }
        Ok(count)
    }
}

fn gap_dir(gap: &crate::log::Gap) -> String {
    match &gap.cause {
        crate::log::GapCause::Damaged { path, .. } | crate::log::GapCause::Missing { path } => path.display().to_string(),
        crate::log::GapCause::Retention => "retention".to_owned(),
    }
}

/// The envelope fields consumer features read back out of a stored event (the rest is
/// skipped): `key.user_id` (SSE's `key=`, the reorder window's keys) and `occurred_at`.
#[derive(serde::Deserialize)]
pub struct StoredKey<'a> {
    #[serde(borrow)]
    pub key: UserKey<'a>,
    #[serde(borrow, default)]
    pub occurred_at: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
pub struct UserKey<'a> {
    #[serde(borrow)]
    pub user_id: std::borrow::Cow<'a, str>,
}

/// Known record positions of one partition, shared by every reader in the process: at
/// most `SEEK_HINTS_PER_PARTITION`, spread over the log (when full, the one closest to
/// its neighbour goes). A lock held for a scan of that short list.
#[derive(Debug, Default)]
pub struct SeekHints {
    hints: std::sync::Mutex<Vec<SeekHint>>,
}

const SEEK_HINTS_PER_PARTITION: usize = 64;

impl SeekHints {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SeekHint>> {
        self.hints.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The known position with the highest offset at or below `offset`.
    pub fn nearest(&self, offset: u64) -> Option<SeekHint> {
        let hints = self.lock();
        let at = hints.partition_point(|hint| hint.offset <= offset);
        at.checked_sub(1).map(|index| hints[index])
    }

    pub fn add(&self, hint: SeekHint) {
        let mut hints = self.lock();
        let at = hints.partition_point(|known| known.offset < hint.offset);
        if hints.get(at).is_some_and(|known| known.offset == hint.offset) {
            hints[at] = hint;
            return;
        }
        hints.insert(at, hint);
        if hints.len() > SEEK_HINTS_PER_PARTITION {
            // Keep the newest; drop the one that adds least spread.
            let last = hints.len() - 1;
            let closest = (1..last).min_by_key(|index| hints[index + 1].offset - hints[index - 1].offset).unwrap_or(0);
            hints.remove(closest);
        }
    }
}

/// A partition read parked until events arrive or `deadline_ms` (monotonic) passes.
#[derive(Debug, Clone)]
pub struct ReadWait {
    pub slot: u32,
    pub from: u64,
    pub max: u32,
    pub deadline_ms: u64,
    pub keep_alive: bool,
    /// By name: a key ring reload may renumber or remove partners.
    pub partner: Box<str>,
}

/// Appends one line: `{"topic":T,"partition":P,"offset":O,"event":{...}}\n`. Raw CR/LF
/// can only be insignificant whitespace in valid JSON, so they become spaces and the
/// line stays one line (as `sluice tail` does).
pub fn write_line(out: &mut Vec<u8>, topic: &str, partition: u32, offset: u64, event: &[u8]) {
    write_position(out, topic, partition, offset);
    out.extend_from_slice(b",\"event\":");
    write_event(out, event);
    out.extend_from_slice(b"}\n");
}

/// `{"topic":"T","partition":P,"offset":O` (the object is left open). Topic names are
/// `[a-z0-9_.-]`: nothing to escape.
pub fn write_position(out: &mut Vec<u8>, topic: &str, partition: u32, offset: u64) {
    let mut number = itoa_buf::Buffer::new();
    out.extend_from_slice(b"{\"topic\":\"");
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(b"\",\"partition\":");
    out.extend_from_slice(number.format(u64::from(partition)));
    out.extend_from_slice(b",\"offset\":");
    out.extend_from_slice(number.format(offset));
}

/// The stored event with raw CR/LF as spaces.
pub fn write_event(out: &mut Vec<u8>, event: &[u8]) {
    let start = out.len();
    out.extend_from_slice(event);
    if memchr::memchr2(b'\n', b'\r', event).is_some() {
        for byte in &mut out[start..] {
            if matches!(*byte, b'\n' | b'\r') {
                *byte = b' ';
            }
        }
    }
}

/// What one read put into its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadDone {
    pub events: u64,
    pub bytes: u64,
    /// The offset to read from next (`X-Next-Offset`).
    pub next: u64,
}

/// Writes the whole `200` answer of a partition read: the lines of the records from the
/// cursor's position up to `end` (at most `max`), with `X-Next-Offset`.
pub fn answer_read(
    out: &mut Vec<u8>,
    cursor: &mut PartitionCursor,
    topic: &str,
    partition: u32,
    end: u64,
    max: u32,
    keep_alive: bool,
) -> Result<ReadDone, StorageError> {
    let head_start = out.len();
    // X-Next-Offset is only known after the body: a fixed-width slot, right-aligned
    // after optional whitespace like Content-Length's.
    let slot = http::begin_response_as(out, Status::Ok, keep_alive, b"application/x-ndjson", NEXT_OFFSET_HEADER);
    let next_slot = find(&out[head_start..], b"x-next-offset:").map(|at| head_start + at + b"x-next-offset:".len());
    let body_start = out.len();
    let mut skipped = 0;
    let events = cursor.read(end, max as usize, &mut skipped, |offset, _, event| {
        write_line(out, topic, partition, offset, event);
        out.len() - body_start < READ_RESPONSE_BYTES_MAX
    })?;
    let bytes = (out.len() - body_start) as u64;
    http::finish_response(out, slot);
    let next = cursor.position();
    if let Some(at) = next_slot {
        let mut number = itoa_buf::Buffer::new();
        let digits = number.format(next);
        let width = NEXT_OFFSET_WIDTH;
        out[at + width - digits.len()..at + width].copy_from_slice(digits);
    }
    Ok(ReadDone { events: events as u64, bytes, next })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::PartitionLog;
    use crate::log::test_support::{data_dir, options};

    #[test]
    fn reads_stop_at_the_end_and_name_the_next_offset() {
        let (_temp, dir) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        for i in 0..5u64 {
            log.append(format!("id{i}").as_bytes(), 1, &[format!("{{\"n\":{i},\r\n\"x\":1}}").as_bytes()]).unwrap();
        }
        let mut cursor = PartitionCursor::open(&dir, 0, 1).unwrap();
        let mut out = Vec::new();
        let done = answer_read(&mut out, &mut cursor, "events", 0, 4, 100, true).unwrap();
        assert_eq!((done.events, done.next), (3, 4));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(&format!("x-next-offset:{}4\r\n", " ".repeat(20))), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(body.lines().count(), 3);
        assert!(body.starts_with("{\"topic\":\"events\",\"partition\":0,\"offset\":1,\"event\":{\"n\":1,  \"x\":1}}\n"), "{body}");
        let mut out = Vec::new();
        let done = answer_read(&mut out, &mut cursor, "events", 0, 5, 100, true).unwrap();
        assert_eq!((done.events, done.next), (1, 5), "the cursor goes on where it stopped");
    }

    #[test]
    fn hinted_cursors_start_near_their_target_and_read_the_same() {
        let (_temp, dir) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        for i in 0..100u64 {
            log.append(format!("id{i}").as_bytes(), 1, &[format!("{{\"n\":{i}}}").as_bytes()]).unwrap();
        }
        let hints = SeekHints::default();
        let mut first = PartitionCursor::open(&dir, 0, 0).unwrap();
        let mut skipped = 0;
        first.read(50, 1000, &mut skipped, |_, _, _| true).unwrap();
        first.leave_hint(&hints);
        assert_eq!(hints.nearest(60).map(|hint| hint.offset), Some(50));
        assert_eq!(hints.nearest(40), None, "no hint at or below 40");
        for target in [50, 60, 99] {
            let mut hinted = PartitionCursor::open_hinted(&dir, 0, target, &hints).unwrap();
            let mut offsets = Vec::new();
            hinted
                .read(100, 1000, &mut skipped, |offset, _, _| {
                    offsets.push(offset);
                    true
                })
                .unwrap();
            assert_eq!(offsets, (target..100).collect::<Vec<u64>>());
        }
        assert_eq!(skipped, 0);
        // Full: the list keeps its spread and the newest.
        for offset in 0..200u64 {
            hints.add(SeekHint { base_offset: 0, position: 4096, offset: offset * 10 });
        }
        assert_eq!(hints.nearest(u64::MAX).map(|hint| hint.offset), Some(1990));
        assert!(hints.nearest(5).is_some());
    }
}

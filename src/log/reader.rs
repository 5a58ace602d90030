//! A read-only follower of one partition's log, for `sluice tail` and other processes.
//! It maps segments read-only and trusts a record only after an acquire load of its
//! commit word and a CRC check, so it never takes a lock or talks to the writer.
//!
//! Offsets it cannot read back are never passed over silently: every gap (a damaged
//! record, a segment cut short or missing, records retention deleted before they were
//! read) is kept as a [`Gap`] for the caller to report (`take_gaps`).

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::format::{self, FormatError, SegmentHeader};
use super::segment::{self, SegmentFile};
use super::{DataDir, RecordView, StorageError};
use crate::constants::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};

/// Where a new [`LogReader`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest retained record.
    Earliest,
    /// The first record appended after the reader was opened.
    Latest,
    /// The record with this offset; below the oldest retained record this means
    /// `Earliest`, beyond the end the reader returns records from this offset on
    /// once they are written.
    Offset(u64),
}

/// Where a record starts: its segment (by base offset), its byte position and its
/// offset. A reader hands one out ([`LogReader::hint`]) and another reader of the same
/// partition in the same process starts there ([`LogReader::open_at`]) instead of
/// reading the segment from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeekHint {
    pub base_offset: u64,
    pub position: usize,
    pub offset: u64,
}

/// Follows one partition's log. Not tied to the writer: it may run in another process.
pub struct LogReader {
    dir: PathBuf,
    current: Option<ReadSegment>,
    /// Records below this offset are passed over (`StartAt::Offset`, `Latest`).
    skip_below: u64,
    /// Gaps found since the last `take_gaps`; bounded by the damage on disk, and the
    /// caller drains it after each batch of reads.
    gaps: Vec<Gap>,
    /// Records at or past this offset are not read (yet): the consumer API stops at the
    /// partition's readable end. `u64::MAX`: no limit.
    limit: u64,
}

/// Offsets a reader expected next but could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The offsets passed over, `from..to`.
    pub from: u64,
    pub to: u64,
    pub cause: GapCause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GapCause {
    /// Bytes that do not decode as the expected record (bit flip, lost write).
    Damaged { path: PathBuf, position: usize, reason: FormatError },
    /// The segment ends before the next one begins (cut short, or a segment in between
    /// is missing), while it is still on disk.
    Missing { path: PathBuf },
    /// Retention deleted the segment before the reader got to these records.
    Retention,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "offsets {}..{} ({} records) ", self.from, self.to, self.to - self.from)?;
        match &self.cause {
            GapCause::Damaged { path, position, reason } => {
                write!(f, "are damaged at byte {position} of {}: {reason}", path.display())
            }
            GapCause::Missing { path } => {
                write!(f, "are missing after the end of {} (segment cut short, or the next one deleted)", path.display())
            }
            GapCause::Retention => write!(f, "were deleted by retention before they were read"),
        }
    }
}

/// What the record at the current position of a segment is.
enum Step {
    Record(Located),
    /// Unwritten (commit word 0) or past the end of the map.
    End,
    /// Bytes that are not the expected record.
    Invalid(FormatError),
}

struct ReadSegment {
    map: Mmap,
    base_offset: u64,
    /// Position of the next record to read.
    position: usize,
    /// Offset the record at `position` must carry.
    next_offset: u64,
    /// Header length of the file; the map may be shorter if the file was when mapped.
    capacity: u64,
    path: PathBuf,
    /// Device and inode of the mapped file: a path renamed over means a new file.
    identity: (u64, u64),
}

/// A record found by `step`, as ranges into the current map so that the borrow of
/// `self` ends before the view is built.
struct Located {
    offset: u64,
    ingest_ms: i64,
    event_id: Range<usize>,
    event: Range<usize>,
}

impl LogReader {
    /// Opens a reader on `partition` of `dir`. A partition with no segments yet is
    /// fine: `next` returns `None` until the writer creates one.
    pub fn open(dir: &DataDir, partition: u32, start: StartAt) -> Result<LogReader, StorageError> {
        if partition >= dir.partitions() {
            return Err(StorageError::NoSuchPartition { partition, partitions: dir.partitions() });
        }
        let mut reader = LogReader { dir: dir.partition_dir(partition), current: None, skip_below: 0, gaps: Vec::new(), limit: u64::MAX };
        let (files, _) = segment::list(&reader.dir)?;
        match start {
            StartAt::Earliest => {}
            StartAt::Offset(offset) => reader.skip_below = offset,
            StartAt::Latest => {
                if let Some(last) = files.last() {
                    let mut current = ReadSegment::open(last)?;
                    // Bounded by the segment length: each step passes one record.
                    while matches!(current.step(), Step::Record(_)) {}
                    reader.skip_below = current.next_offset;
                    reader.current = Some(current);
                }
            }
        }
        Ok(reader)
    }

    /// A reader whose next record is the one at `target` (or the first after it), started
    /// at `hint` (a position at or before `target` another reader of this partition
    /// handed out) instead of the start of the segment. A hint whose segment is gone
    /// (retention) is ignored.
    pub fn open_at(dir: &DataDir, partition: u32, target: u64, hint: SeekHint) -> Result<LogReader, StorageError> {
        let mut reader = LogReader::open(dir, partition, StartAt::Offset(target))?;
        if hint.offset > target {
            return Ok(reader);
        }
        let (files, _) = segment::list(&reader.dir)?;
        // A hint in an earlier segment than the target's would read more than the
        // target's segment from its start.
        if files.iter().any(|file| file.base_offset > hint.base_offset && file.base_offset <= target) {
            return Ok(reader);
        }
        let Some(file) = files.iter().find(|file| file.base_offset == hint.base_offset) else { return Ok(reader) };
        if let Some(mut current) = open_unless_deleted(file)?
            && hint.position >= SEGMENT_HEADER_BYTES
            && hint.position <= current.map.len()
        {
            (current.position, current.next_offset) = (hint.position, hint.offset);
            reader.current = Some(current);
        }
        Ok(reader)
    }

    /// Where this reader's next record starts, to start another reader there.
    pub fn hint(&self) -> Option<SeekHint> {
        let current = self.current.as_ref()?;
        (current.next_offset >= self.skip_below).then_some(SeekHint {
            base_offset: current.base_offset,
            position: current.position,
            offset: current.next_offset,
        })
    }

    /// The next whole record, or `Ok(None)` at the current end; call again later to
    /// follow the writer across appends, rolls and retention (a deleted segment is
    /// skipped to the oldest one still present).
    #[expect(clippy::should_implement_trait, reason = "a lending iterator: each record borrows the reader's map")]
    pub fn next(&mut self) -> Result<Option<RecordView<'_>>, StorageError> {
        let Some(located) = self.locate()? else {
            return Ok(None);
        };
        let Some(current) = &self.current else {
            return Ok(None);
        };
        Ok(Some(RecordView {
            offset: located.offset,
            ingest_ms: located.ingest_ms,
            event_id: &current.map[located.event_id],
            event: &current.map[located.event],
        }))
    }

    /// An empty segment the writer replaced under the same name (after a crash it was
    /// too small for the record that came): read the new file from its start.
    fn reopen_current(&mut self) -> Result<(), StorageError> {
        if let Some(current) = &self.current {
            let file = SegmentFile { base_offset: current.base_offset, path: current.path.clone() };
            // Deleted meanwhile (retention): stay, the listing finds what comes after.
            if let Some(opened) = open_unless_deleted(&file)? {
                self.current = Some(opened);
            }
        }
        Ok(())
    }

    /// Reads no record at or past `limit` until it is raised again.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// The offset the next record returned will have at the least.
    pub fn position(&self) -> u64 {
        self.current.as_ref().map_or(self.skip_below, |current| current.next_offset.max(self.skip_below))
    }

    /// Gaps found since the last call, oldest first.
    pub fn take_gaps(&mut self) -> Vec<Gap> {
        std::mem::take(&mut self.gaps)
    }

    /// At the current end of the log, looks through the rest of the current segment for
    /// a valid record beyond unwritten space (a zeroed block with records after it);
    /// found, the skipped offsets become a gap and `next` goes on from there. A full
    /// pass over the segment: for a reader about to stop (`tail` without `--follow`),
    /// not for each poll of a follower. Returns whether it found one.
    pub fn look_past_end(&mut self) -> bool {
        let Some(current) = self.current.as_mut() else { return false };
        match format::resynchronise(&current.map, current.position + RECORD_HEADER_BYTES, current.next_offset) {
            Some((position, offset)) => {
                let cause = GapCause::Damaged { path: current.path.clone(), position: current.position, reason: FormatError::Uncommitted };
                let from = current.next_offset;
                (current.position, current.next_offset) = (position, offset);
                self.gap(from, offset, cause);
                true
            }
            None => false,
        }
    }

    fn gap(&mut self, from: u64, to: u64, cause: GapCause) {
        let from = from.max(self.skip_below);
        if from < to {
            self.gaps.push(Gap { from, to, cause });
        }
    }

    /// Moves from the finished current segment to `next`, recording the offsets between
    /// them as a gap: missing while the current segment is still on disk, retention's
    /// when it was deleted (retention deletes the oldest first).
    fn move_to(&mut self, next: &SegmentFile) -> Result<(), StorageError> {
        if let Some(current) = &self.current
            && current.next_offset < next.base_offset
        {
            let cause = if current.path.exists() { GapCause::Missing { path: current.path.clone() } } else { GapCause::Retention };
            let from = current.next_offset;
            self.gap(from, next.base_offset, cause);
        }
        if let Some(opened) = open_unless_deleted(next)? {
            self.current = Some(opened);
        }
        Ok(())
    }

    /// The current record is not valid. Damage with a valid record after it is passed
    /// over and reported; without one it may be a torn tail the writer's recovery will
    /// cut and rewrite, so it reads as the end (false) until a later segment exists.
    fn pass_invalid(&mut self, reason: FormatError) -> Result<bool, StorageError> {
        let Some(current) = self.current.as_mut() else { return Ok(false) };
        let (position, expected) = (current.position, current.next_offset);
        if let Some((next_position, offset)) =
            format::resynchronise(&current.map, position + crate::constants::RECORD_ALIGN_BYTES, expected)
        {
            let cause = GapCause::Damaged { path: current.path.clone(), position, reason };
            (current.position, current.next_offset) = (next_position, offset);
            self.gap(expected, offset, cause);
            return Ok(true);
        }
        let Some(next) = later_segment(&self.dir, current.base_offset)? else {
            return Ok(false);
        };
        let cause = GapCause::Damaged { path: current.path.clone(), position, reason };
        let to = next.base_offset;
        if expected < to {
            self.gap(expected, to, cause);
        }
        if let Some(current) = self.current.as_mut() {
            current.next_offset = current.next_offset.max(to);
        }
        self.move_to(&next)?;
        Ok(true)
    }

    fn locate(&mut self) -> Result<Option<Located>, StorageError> {
        // Bounded by the records and segments on disk: every pass either returns,
        // passes one record, or moves to a later position or segment.
        loop {
            let Some(current) = self.current.as_mut() else {
                let Some(first) = first_segment(&self.dir, self.skip_below)? else {
                    return Ok(None);
                };
                self.current = open_unless_deleted(&first)?;
                continue;
            };
            if current.next_offset >= self.limit {
                return Ok(None);
            }
            let step = match current.step() {
                Step::End => {
                    current.remap_if_grown()?;
                    current.step()
                }
                other => other,
            };
            let located = match step {
                Step::Record(located) => located,
                Step::End if current.next_offset == current.base_offset && current.replaced()? => {
                    self.reopen_current()?;
                    continue;
                }
                Step::Invalid(reason) => {
                    if self.pass_invalid(reason)? {
                        continue;
                    }
                    return Ok(None);
                }
                Step::End => {
                    let Some(next) = later_segment(&self.dir, current.base_offset)? else {
                        return Ok(None);
                    };
                    // The writer finished this segment before creating `next`: look once
                    // more so a record committed just before the roll is not skipped.
                    match current.step() {
                        Step::Record(located) => located,
                        // Replaced between the look above and the listing.
                        Step::End if current.next_offset == current.base_offset && current.replaced()? => {
                            self.reopen_current()?;
                            continue;
                        }
                        Step::Invalid(_) => continue,
                        Step::End => {
                            // Sealed and short of the next segment: records after a zeroed
                            // stretch are still read, then the rest is a gap.
                            if current.next_offset < next.base_offset && self.look_past_end() {
                                continue;
                            }
                            self.move_to(&next)?;
                            continue;
                        }
                    }
                }
            };
            if located.offset >= self.skip_below {
                return Ok(Some(located));
            }
        }
    }
}

/// The segment holding `offset`, or the oldest one when that was deleted.
fn first_segment(dir: &Path, offset: u64) -> Result<Option<SegmentFile>, StorageError> {
    let (files, _) = segment::list(dir)?;
    let holding = files.iter().rev().find(|file| file.base_offset <= offset);
    Ok(holding.or(files.first()).cloned())
}

/// The oldest segment after the one starting at `base_offset`. Normally it starts where
/// that one ends; it starts later when retention or damage removed records.
fn later_segment(dir: &Path, base_offset: u64) -> Result<Option<SegmentFile>, StorageError> {
    let (files, _) = segment::list(dir)?;
    Ok(files.into_iter().find(|file| file.base_offset > base_offset))
}

/// Retention may delete a segment between listing and opening it; the caller then
/// lists again and finds the oldest one left.
fn open_unless_deleted(file: &SegmentFile) -> Result<Option<ReadSegment>, StorageError> {
    match ReadSegment::open(file) {
        Ok(segment) => Ok(Some(segment)),
        Err(StorageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

impl ReadSegment {
    fn open(file: &SegmentFile) -> Result<ReadSegment, StorageError> {
        let (map, capacity, identity) = map_segment(&file.path)?;
        Ok(ReadSegment {
            map,
            base_offset: file.base_offset,
            position: SEGMENT_HEADER_BYTES,
            next_offset: file.base_offset,
            capacity,
            path: file.path.clone(),
            identity,
        })
    }

    /// Its path now names another file (a deleted path is not a replacement).
    fn replaced(&self) -> Result<bool, StorageError> {
        match std::fs::metadata(&self.path) {
            Ok(metadata) => Ok((metadata.dev(), metadata.ino()) != self.identity),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(StorageError::io(&self.path, "stat", error)),
        }
    }

    /// Passes the record at `position` if one is published, whole and in sequence.
    fn step(&mut self) -> Step {
        if self.position + RECORD_HEADER_BYTES > self.map.len() {
            return Step::End;
        }
        if segment::load_commit_word(&self.map, self.position) == 0 {
            return Step::End;
        }
        let record = match format::decode_record(&self.map[self.position..]) {
            Ok(record) => record,
            Err(reason) => return Step::Invalid(reason),
        };
        if record.offset != self.next_offset {
            return Step::Invalid(FormatError::OffsetOutOfSequence { expected: self.next_offset, found: record.offset });
        }
        let id_start = self.position + RECORD_HEADER_BYTES;
        let event_start = id_start + record.event_id.len();
        let located = Located {
            offset: record.offset,
            ingest_ms: record.ingest_ms,
            event_id: id_start..event_start,
            event: event_start..event_start + record.event.len(),
        };
        self.position += record.stored_bytes;
        self.next_offset += 1;
        Step::Record(located)
    }

    /// A segment mapped while the writer's recovery was still restoring its length
    /// would hide the records written past the old end: map it again.
    fn remap_if_grown(&mut self) -> Result<(), StorageError> {
        if self.map.len() as u64 >= self.capacity {
            return Ok(());
        }
        let (map, capacity, identity) = map_segment(&self.path)?;
        if identity == self.identity && map.len() > self.map.len() {
            (self.map, self.capacity) = (map, capacity);
        }
        Ok(())
    }
}

/// Maps a segment read-only up to the smaller of its file length and its header's
/// `segment_bytes`; a torn header (recovery will rewrite it) leaves the file length.
/// Also returns the file's device and inode.
fn map_segment(path: &Path) -> Result<(Mmap, u64, (u64, u64)), StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io(path, "open", e))?;
    let metadata = file.metadata().map_err(|e| StorageError::io(path, "stat", e))?;
    let (file_bytes, identity) = (metadata.len(), (metadata.dev(), metadata.ino()));
    if file_bytes < SEGMENT_HEADER_BYTES as u64 {
        let map = segment::map_read_only(&file, path, 0)?;
        return Ok((map, u64::MAX, identity));
    }
    let map = segment::map_read_only(&file, path, file_bytes)?;
    match format::decode_segment_header(&map) {
        Ok(SegmentHeader { segment_bytes, .. }) if segment_bytes < file_bytes => {
            let map = segment::map_read_only(&file, path, segment_bytes)?;
            Ok((map, segment_bytes, identity))
        }
        Ok(SegmentHeader { segment_bytes, .. }) => Ok((map, segment_bytes, identity)),
        Err(_) => Ok((map, u64::MAX, identity)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::log::PartitionLog;
    use crate::log::test_support::{data_dir, event, options};

    #[test]
    fn starts_at_offset_latest_and_earliest() {
        let (_temp, dir) = data_dir(1);
        let mut empty = LogReader::open(&dir, 0, StartAt::Earliest).unwrap();
        assert!(empty.next().unwrap().is_none());
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        for i in 0..5u64 {
            log.append(b"id", i as i64, &[&event(i, 10)]).unwrap();
        }
        assert_eq!(empty.next().unwrap().unwrap().offset, 0, "an empty partition is followed");
        let mut latest = LogReader::open(&dir, 0, StartAt::Latest).unwrap();
        assert!(latest.next().unwrap().is_none());
        let mut at_three = LogReader::open(&dir, 0, StartAt::Offset(3)).unwrap();
        assert_eq!(at_three.next().unwrap().unwrap().offset, 3);
        let mut ahead = LogReader::open(&dir, 0, StartAt::Offset(6)).unwrap();
        assert!(ahead.next().unwrap().is_none());
        log.append(b"id", 5, &[b"five"]).unwrap();
        log.append(b"id", 6, &[b"six"]).unwrap();
        assert_eq!(latest.next().unwrap().unwrap().event, b"five");
        assert_eq!(ahead.next().unwrap().unwrap().event, b"six");
        assert!(ahead.next().unwrap().is_none());
    }

    #[test]
    fn follows_a_writer_in_another_thread_exactly_once_in_order() {
        const RECORDS: u64 = 3_000;
        let (_temp, dir) = data_dir(1);
        let start = Arc::new(Barrier::new(2));
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (dir, start, done) = (dir.clone(), start.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
                start.wait();
                for i in 0..RECORDS {
                    // Sizes vary so that rolls land at different record boundaries.
                    log.append(format!("id-{i}").as_bytes(), i as i64, &[&event(i, 1 + (i as usize * 7919) % 4000)]).unwrap();
                }
                done.store(true, Ordering::Release);
            })
        };
        let mut reader = LogReader::open(&dir, 0, StartAt::Earliest).unwrap();
        start.wait();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut expected = 0u64;
        while expected < RECORDS {
            assert!(Instant::now() < deadline, "stuck at offset {expected}");
            let finished = done.load(Ordering::Acquire);
            match reader.next().unwrap() {
                Some(record) => {
                    assert_eq!(record.offset, expected);
                    assert_eq!(record.event_id, format!("id-{expected}").as_bytes());
                    assert_eq!(record.event, event(expected, 1 + (expected as usize * 7919) % 4000).as_slice());
                    expected += 1;
                }
                // Every append happened before `done` was set: nothing may be missing.
                None if finished => panic!("record {expected} lost"),
                None => std::thread::yield_now(),
            }
        }
        assert!(reader.next().unwrap().is_none());
        writer.join().unwrap();
        assert!(segment::list(&dir.partition_dir(0)).unwrap().0.len() >= 3);
    }
}

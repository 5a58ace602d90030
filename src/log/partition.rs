//! The partition log's single writer: append, roll, sync, retention and the start-up scan.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::os::fd::RawFd;
use std::path::PathBuf;

use super::format::{self, SegmentHeader};
use super::recovery::{self, SegmentSummary};
use super::segment::{self, WritableSegment};
use super::spare::{self, Taken};
use super::summary;
use super::{DataDir, LogOptions, RecordView, RecoveryReport, StorageError};
use crate::constants::{FIRST_SEGMENT_BYTES, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES, SPARE_REQUEST_FILL_PERCENT};

/// The append-only log of one partition. Exactly one may be open per partition
/// directory (enforced with `flock`); it is `Send` but not shared: one shard owns it.
/// `append` neither allocates nor locks except when it rolls to a new segment.
pub struct PartitionLog {
    dir: PathBuf,
    /// Holds the partition's writer lock and is the handle synced after renames.
    dir_file: File,
    partition: u32,
    options: LogOptions,
    /// Oldest first; the last entry describes `active` whenever `active` is `Some`.
    /// Bounded by the disk: one entry per segment file.
    segments: VecDeque<SegmentSummary>,
    active: Option<WritableSegment>,
    /// The segment before `active`, kept open so an fdatasync the shard already queued
    /// on its descriptor (see `active_fd`) never lands on a closed or reused fd.
    previous_file: Option<File>,
    next_offset: u64,
    /// The next segment, being prepared off this thread (see `spare.rs`).
    spare: Option<spare::Pending>,
    /// Rolls that found no spare ready and created the segment on this thread.
    stalled_rolls: u64,
    /// A record boundary in the active segment from its checkpoint (offset, position).
    resume: Option<(u64, usize)>,
    /// Set by `distrust`: this run writes no more summaries.
    distrusted: bool,
    /// `next_offset` at the last checkpoint.
    checkpointed: u64,
}

impl PartitionLog {
    /// Opens (creating if needed) the log of `partition` and runs recovery.
    pub fn open(dir: &DataDir, partition: u32, options: &LogOptions) -> Result<(PartitionLog, RecoveryReport), StorageError> {
        if partition >= dir.partitions() {
            return Err(StorageError::NoSuchPartition { partition, partitions: dir.partitions() });
        }
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&options.segment_bytes) {
            let (bytes, min, max) = (options.segment_bytes, SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
            return Err(StorageError::InvalidSegmentBytes { bytes, min, max });
        }
        let path = dir.partition_dir(partition);
        fs::create_dir_all(&path).map_err(|e| StorageError::io(&path, "create directory", e))?;
        let dir_file = File::open(&path).map_err(|e| StorageError::io(&path, "open directory", e))?;
        lock_exclusive(&dir_file, &path)?;
        let recovered = recovery::recover(&path, &dir_file, partition, options)?;
        let mut log = PartitionLog {
            dir: path.clone(),
            dir_file,
            partition,
            options: options.clone(),
            segments: recovered.segments,
            active: recovered.active,
            previous_file: None,
            next_offset: recovered.next_offset,
            spare: None,
            stalled_rolls: 0,
            checkpointed: u64::MAX,
            distrusted: false,
            resume: recovered.resume,
        };
        log.checkpoint(false);
        log.request_spare_when_due();
        Ok((log, recovered.report))
    }

    /// Appends one record whose event bytes are the concatenation of `parts`; returns
    /// its offset. Rolls to a new segment when the record does not fit and creates the
    /// first segment lazily. The record is visible to readers (and survives kill -9)
    /// when this returns; surviving power loss needs `sync` or an fdatasync on
    /// `active_fd`. On error nothing is published and the offset is not consumed.
    pub fn append(&mut self, event_id: &[u8], ingest_ms: i64, parts: &[&[u8]]) -> Result<u64, StorageError> {
        if event_id.len() > usize::from(u16::MAX) {
            return Err(StorageError::EventIdTooLong { bytes: event_id.len(), max: usize::from(u16::MAX) });
        }
        let body_bytes = parts.iter().fold(event_id.len() as u64, |sum, part| sum + part.len() as u64);
        if body_bytes == 0 {
            return Err(StorageError::EmptyRecord);
        }
        let stored = format::stored_len(body_bytes);
        let max = self.options.segment_bytes - SEGMENT_HEADER_BYTES as u64;
        if stored > max {
            return Err(StorageError::RecordTooLarge { bytes: stored, max });
        }
        if self.active.as_ref().is_none_or(|active| active.room() < stored) {
            self.roll(stored + SEGMENT_HEADER_BYTES as u64)?;
        }
        let Some(active) = self.active.as_mut() else { unreachable!("roll leaves an active segment") };
        let offset = self.next_offset;
        active.append(offset, ingest_ms, event_id, parts).map_err(|reason| StorageError::Corrupt {
            path: active.path().to_owned(),
            reason: format!("record rejected by the format after checks passed: {reason}"),
        })?;
        if let Some(summary) = self.segments.back_mut() {
            summary.records += 1;
            summary.end_offset = offset + 1;
            summary.last_ingest_ms = summary.last_ingest_ms.max(ingest_ms);
        }
        self.next_offset += 1;
        self.request_spare_when_due();
        Ok(offset)
    }

    /// Asks for the next segment once the active one is `SPARE_REQUEST_FILL_PERCENT`
    /// full, not before: a partition that never receives data reserves no disk, and one
    /// that receives a little holds one segment, not two (a spare is a whole preallocated
    /// segment). The first segment is made when the first record arrives.
    fn request_spare_when_due(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let Some(active) = &self.active else { return };
        let used = active.capacity() - active.room();
        if used * 100 >= active.capacity() * SPARE_REQUEST_FILL_PERCENT {
            self.spare = spare::request(&self.dir, self.next_segment_bytes(0));
        }
    }

    /// The size of the segment after the active one, for a record of `needed` bytes (its
    /// header included): a partition's segments start at `FIRST_SEGMENT_BYTES` and
    /// double up to `segment_bytes`, so the disk a partition reserves follows the data
    /// it holds, and a busy partition reaches full-size segments after a few rolls.
    fn next_segment_bytes(&self, needed: u64) -> u64 {
        let largest = self.options.segment_bytes;
        let mut size = match self.segments.back() {
            Some(last) => self.segment_bytes_after(last.bytes),
            None => FIRST_SEGMENT_BYTES.min(largest),
        };
        // Bounded: the size doubles until it holds the record or reaches the largest.
        while size < needed && size < largest {
            size = size.saturating_mul(2).min(largest);
        }
        size
    }

    /// The planned size of the segment after one of `bytes`: double, within bounds.
    fn segment_bytes_after(&self, bytes: u64) -> u64 {
        let largest = self.options.segment_bytes;
        bytes.saturating_mul(2).clamp(FIRST_SEGMENT_BYTES.min(largest), largest)
    }

    /// Seals the active segment and starts a new one at `next_offset`, from the spare
    /// when it is ready (a header write and a rename), else created here (and counted
    /// as a stall). With durability fsync the old segment and the directory are synced
    /// here, synchronously, so a roll never leaves acknowledged records or the new
    /// segment's name only in the page cache; rolls are rare (one per segment). With
    /// durability os the directory is synced on the preparer thread.
    fn roll(&mut self, needed: u64) -> Result<(), StorageError> {
        if let Some(old) = &self.active
            && self.options.fsync
        {
            old.sync()?;
        }
        let header = SegmentHeader {
            partition: self.partition,
            base_offset: self.next_offset,
            created_ms: crate::platform::time::now_unix_ms(),
            segment_bytes: self.next_segment_bytes(needed),
        };
        // The first segment of an empty partition is made here by design; only a roll
        // that finds no spare ready is a stall.
        let first_segment = self.active.is_none() && self.spare.is_none();
        let fresh = match self.spare.take().map(spare::Pending::take) {
            Some(Taken::Ready(ready)) if ready.map.len() as u64 != header.segment_bytes => {
                // Made for a smaller record than this one: give it back, make the right one.
                let _ = fs::remove_file(&ready.tmp_path);
                spare::ROLL_STALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.stalled_rolls += 1;
                WritableSegment::create(&self.dir, &self.dir_file, &header, self.options.fsync)?
            }
            Some(Taken::Ready(ready)) => {
                let fresh = WritableSegment::from_spare(&self.dir, ready, &header)?;
                if self.options.fsync {
                    self.dir_file.sync_all().map_err(|e| StorageError::sync(&self.dir, "fsync directory", e))?;
                } else {
                    spare::sync_dir_later(&self.dir);
                }
                fresh
            }
            not_ready => {
                // A spare still in the making is kept for the next roll if it has the size
                // that roll will want; one made for a smaller segment is dropped (the
                // preparer deletes it) so that roll asks for the right one.
                if let Some(Taken::NotYet(pending)) = not_ready
                    && pending.bytes == self.segment_bytes_after(header.segment_bytes)
                {
                    self.spare = Some(pending);
                }
                if !first_segment {
                    spare::ROLL_STALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.stalled_rolls += 1;
                }
                WritableSegment::create(&self.dir, &self.dir_file, &header, self.options.fsync)?
            }
        };
        // An empty active segment (smaller, from older options) is replaced by the
        // rename, which reused its file name: forget its summary.
        let replaced = self.segments.back().is_some_and(|last| last.base_offset == header.base_offset);
        if replaced {
            self.segments.pop_back();
        }
        // The sealed segment's summary: its facts are on disk when it was synced above.
        if let Some(old) = &self.active
            && !replaced
            && let Some(sealed) = self.segments.back_mut()
        {
            sealed.durable = self.options.fsync;
            summary::write_later(&sealed.path, &sealed.to_summary(self.partition, old.position() as u64, true, sealed.durable));
        }
        let fresh_summary = SegmentSummary::fresh(header.base_offset, header.segment_bytes, fresh.path().to_owned());
        summary::write_later(fresh.path(), &fresh_summary.to_summary(self.partition, fresh.position() as u64, false, false));
        self.checkpointed = self.next_offset;
        self.resume = None;
        self.segments.push_back(fresh_summary);
        if let Some(old) = self.active.replace(fresh) {
            self.previous_file = Some(old.into_file());
        }
        Ok(())
    }

    /// Writes the active segment's checkpoint when records were appended since the last
    /// one (about once a second, from the shard's tick), so a restart reads only the
    /// records after it. `durable` when the log was just synced (a clean close).
    pub fn checkpoint(&mut self, durable: bool) {
        let (Some(active), Some(current)) = (&self.active, self.segments.back()) else { return };
        if self.distrusted || (self.checkpointed == self.next_offset && !durable) {
            return;
        }
        let written = current.to_summary(self.partition, active.position() as u64, false, durable);
        if durable {
            // A clean close: written here, after every earlier background write.
            if let Err(error) = summary::write(active.path(), &written) {
                tracing::warn!(%error, "cannot write the active segment's checkpoint; the next start reads the segment");
            }
        } else {
            summary::write_later(active.path(), &written);
        }
        self.checkpointed = self.next_offset;
    }

    /// After a failed fdatasync: removes the summaries whose facts rest on writes not
    /// known to be on disk (the active checkpoint, sealed summaries not durable), so the
    /// next start reads those segments back instead of trusting this run's view.
    pub fn distrust(&mut self) {
        super::spare::flush();
        let sealed = self.segments.len() - usize::from(self.active.is_some());
        for (index, segment) in self.segments.iter().enumerate() {
            if index >= sealed || !segment.durable {
                let _ = fs::remove_file(summary::path_for(&segment.path));
            }
        }
        // No summary is written again by this run (`checkpoint` sees this).
        self.distrusted = true;
    }

    /// The end of a drain: syncs the active segment and every sealed one not yet known
    /// to be on disk, then writes their summaries as durable, so the next start on any
    /// boot reads summaries instead of segments.
    pub fn close_clean(&mut self) -> Result<(), StorageError> {
        self.sync()?;
        // Earlier summaries still queued must not land after the final ones.
        super::spare::flush();
        let sealed = self.segments.len() - usize::from(self.active.is_some());
        for segment in self.segments.iter_mut().take(sealed).filter(|segment| !segment.durable) {
            let file = File::open(&segment.path).map_err(|e| StorageError::io(&segment.path, "open", e))?;
            file.sync_data().map_err(|e| StorageError::sync(&segment.path, "fdatasync", e))?;
            segment.durable = true;
            let mut written = segment.to_summary(self.partition, 0, true, true);
            // The end position of a sealed segment is not needed to trust it; keep the
            // one on disk when there is one.
            if let Some(found) = summary::read(&segment.path) {
                written.end_position = found.end_position;
            }
            summary::write(&segment.path, &written)?;
        }
        self.checkpoint(true);
        Ok(())
    }

    /// Rolls that had to create their segment on the caller's thread.
    pub fn stalled_rolls(&self) -> u64 {
        self.stalled_rolls
    }

    /// Blocks until the spare segment is ready (tests only).
    #[cfg(test)]
    fn wait_for_spare(&mut self) {
        if let Some(pending) = self.spare.take() {
            self.spare = pending.wait().map(spare::Pending::ready);
        }
    }

    /// The partition's number.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The partition's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Offset the next appended record will get.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Offset of the oldest retained record (equal to `next_offset` when empty).
    pub fn start_offset(&self) -> u64 {
        self.segments.front().map_or(self.next_offset, |oldest| oldest.base_offset)
    }

    /// Descriptor of the active segment for an io_uring fdatasync (group commit). It
    /// stays open until the segment after the next one is created, so a sync queued
    /// just before a roll still targets the right file.
    pub fn active_fd(&self) -> Option<RawFd> {
        self.active.as_ref().map(WritableSegment::fd)
    }

    /// fdatasync of the active segment, synchronously (shutdown, or no io_uring).
    pub fn sync(&self) -> Result<(), StorageError> {
        match &self.active {
            Some(active) => active.sync(),
            None => Ok(()),
        }
    }

    /// Deletes sealed segments from the oldest on while the oldest one's newest record
    /// is older than `retention_ms` before `now_ms`, or the partition's segment files
    /// total more than `retention_bytes`. The active segment is never deleted. Returns
    /// the new start offset when it changed.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<Option<u64>, StorageError> {
        let before = self.start_offset();
        let retention_ms = i64::try_from(self.options.retention_ms).unwrap_or(i64::MAX);
        let horizon_ms = now_ms.saturating_sub(retention_ms);
        let mut total_bytes: u64 = self.segments.iter().map(|summary| summary.bytes).sum();
        // Bounded by the number of segments; the last (active) one is never a candidate.
        while self.segments.len() > 1 {
            let Some(oldest) = self.segments.front() else {
                break;
            };
            let expired = self.options.retention_ms > 0 && oldest.last_ingest_ms < horizon_ms;
            let oversize = self.options.retention_bytes > 0 && total_bytes > self.options.retention_bytes;
            if !expired && !oversize {
                break;
            }
            match fs::remove_file(&oldest.path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(StorageError::io(&oldest.path, "delete segment", error)),
            }
            // Its summary goes with it (a leftover is removed at the next start).
            let _ = fs::remove_file(summary::path_for(&oldest.path));
            total_bytes -= oldest.bytes;
            self.segments.pop_front();
        }
        let after = self.start_offset();
        Ok((after != before).then_some(after))
    }

    /// Calls `visit` for every retained record with `ingest_ms >= since_ms`, in offset
    /// order. Sealed segments whose newest record is older are not even opened.
    pub fn scan(&self, since_ms: i64, visit: impl FnMut(RecordView<'_>)) -> Result<(), StorageError> {
        self.scan_where(since_ms, 0, visit)
    }

    /// Calls `visit` for every retained record at or after `from_offset`, in order;
    /// only the segments that hold such records are opened.
    pub fn scan_from(&self, from_offset: u64, visit: impl FnMut(RecordView<'_>)) -> Result<(), StorageError> {
        self.scan_where(i64::MIN, from_offset, visit)
    }

    fn scan_where(&self, since_ms: i64, from_offset: u64, mut visit: impl FnMut(RecordView<'_>)) -> Result<(), StorageError> {
        let mut on_record = |record: &format::DecodedRecord<'_>| {
            if record.ingest_ms >= since_ms && record.offset >= from_offset {
                visit(RecordView::from(record));
            }
        };
        let sealed = self.segments.len() - usize::from(self.active.is_some());
        for summary in self.segments.iter().take(sealed) {
            if summary.records == 0 || summary.last_ingest_ms < since_ms || summary.end_offset <= from_offset {
                continue;
            }
            let file = File::open(&summary.path).map_err(|e| StorageError::io(&summary.path, "open", e))?;
            let bytes = file.metadata().map_err(|e| StorageError::io(&summary.path, "stat", e))?.len();
            let map = segment::map_read_only(&file, &summary.path, bytes)?;
            // Recovery validated these bytes; stop where it stopped regardless.
            let end_offset = summary.end_offset;
            format::scan_segment(&map, summary.base_offset, |record| {
                if record.offset < end_offset {
                    on_record(record);
                }
            });
        }
        if let Some(active) = &self.active {
            let base = self.segments.back().map_or(0, |s| s.base_offset);
            match self.resume {
                // Only the records after the checkpoint are wanted: start there rather
                // than read the whole active segment.
                Some((offset, position)) if from_offset >= offset && since_ms == i64::MIN => {
                    format::scan_segment_from(active.written(), position, offset, on_record);
                }
                _ => {
                    format::scan_segment(active.written(), base, on_record);
                }
            }
        }
        Ok(())
    }
}

/// Takes the partition's writer lock: a second sluice on the same data dir would
/// interleave records and corrupt both logs.
fn lock_exclusive(dir_file: &File, path: &std::path::Path) -> Result<(), StorageError> {
    match crate::platform::sys::try_lock_exclusive(dir_file) {
        Ok(true) => Ok(()),
        Ok(false) => Err(StorageError::PartitionLocked { path: path.to_owned() }),
        Err(error) => Err(StorageError::io(path, "flock", error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::test_support::{data_dir, event, options};
    use crate::log::{LogReader, StartAt};

    fn read_all(reader: &mut LogReader) -> Vec<(u64, i64, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(record) = reader.next().unwrap() {
            out.push((record.offset, record.ingest_ms, record.event_id.to_vec(), record.event.to_vec()));
        }
        out
    }

    #[test]
    fn appends_read_back_in_order() {
        let (_temp, dir) = data_dir(4);
        let (mut log, report) = PartitionLog::open(&dir, 2, &options()).unwrap();
        assert_eq!(report, RecoveryReport::default());
        assert_eq!((log.start_offset(), log.next_offset(), log.active_fd()), (0, 0, None));
        assert_eq!(log.append(b"e-0", 100, &[b"{\"a\":", b"1}"]).unwrap(), 0);
        assert_eq!(log.append(b"e-1", 101, &[b"{}"]).unwrap(), 1);
        assert!(log.active_fd().is_some());
        log.sync().unwrap();
        let mut reader = LogReader::open(&dir, 2, StartAt::Earliest).unwrap();
        let records = read_all(&mut reader);
        assert_eq!(records[0], (0, 100, b"e-0".to_vec(), b"{\"a\":1}".to_vec()));
        assert_eq!(records[1], (1, 101, b"e-1".to_vec(), b"{}".to_vec()));
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn rolls_across_segments_and_reopens_where_it_left_off() {
        let (_temp, dir) = data_dir(1);
        let fsync = LogOptions { fsync: true, ..options() };
        let (mut log, _) = PartitionLog::open(&dir, 0, &fsync).unwrap();
        for i in 0..50u64 {
            assert_eq!(log.append(format!("id-{i}").as_bytes(), i as i64, &[&event(i, 90_000)]).unwrap(), i);
        }
        let (files, _) = segment::list(&dir.partition_dir(0)).unwrap();
        assert!(files.len() >= 4, "{} segments", files.len());
        drop(log);
        let (mut log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!((report.records, report.segments, report.truncated_bytes), (50, files.len(), 0));
        assert_eq!(log.append(b"id-50", 50, &[&event(50, 90_000)]).unwrap(), 50);
        let mut reader = LogReader::open(&dir, 0, StartAt::Earliest).unwrap();
        let records = read_all(&mut reader);
        assert_eq!(records.len(), 51);
        for (i, record) in records.iter().enumerate() {
            assert_eq!((record.0, record.3.as_slice()), (i as u64, event(i as u64, 90_000).as_slice()));
        }
    }

    #[test]
    fn rolls_use_the_prepared_spare_and_leave_one_spare_behind() {
        let (_temp, dir) = data_dir(1);
        for fsync in [false, true] {
            let (mut log, _) = PartitionLog::open(&dir, 0, &LogOptions { fsync, ..options() }).unwrap();
            let first = log.next_offset();
            let segments_before = segment::list(&dir.partition_dir(0)).unwrap().0.len();
            for i in first..first + 40 {
                let record = event(i, 90_000);
                // Give the preparer the time a real roll has (the previous segment's worth).
                let id = format!("id-{i}");
                let stored = format::stored_len((id.len() + record.len()) as u64);
                if log.active.as_ref().is_none_or(|active| active.room() < stored) {
                    log.wait_for_spare();
                }
                assert_eq!(log.append(id.as_bytes(), 0, &[&record]).unwrap(), i);
            }
            let segments_after = segment::list(&dir.partition_dir(0)).unwrap().0.len();
            assert!(segments_after >= segments_before + 3, "{segments_before} -> {segments_after}");
            assert_eq!(log.stalled_rolls(), 0, "fsync {fsync}");
            let mut reader = LogReader::open(&dir, 0, StartAt::Offset(first)).unwrap();
            let records = read_all(&mut reader);
            assert_eq!(records.len(), 40);
            assert_eq!(records[39].3, event(first + 39, 90_000));
            // Only the next spare is a leftover (recovery deletes it at the next open), and
            // only once the active segment is half full: before, none was asked for.
            log.wait_for_spare();
            let half_full = log.active.as_ref().is_some_and(|active| active.room() * 2 <= options().segment_bytes);
            assert_eq!(segment::list(&dir.partition_dir(0)).unwrap().1.len(), usize::from(half_full));
            drop(log);
        }
        let (_log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        // The reopened log asked for a new spare; the old one is gone.
        let leftovers = segment::list(&dir.partition_dir(0)).unwrap().1;
        assert!(leftovers.len() <= 1, "{leftovers:?}");
    }

    /// The embedded default reserved 64 partitions x (active + spare) x 16 MiB at start.
    /// Now a partition reserves nothing until its first record, one segment after it, and
    /// a spare only once that segment is half full.
    #[test]
    fn segments_are_reserved_when_data_arrives_and_the_spare_near_the_roll() {
        let (_temp, dir) = data_dir(1);
        let reserved = |dir: &DataDir| -> u64 {
            let entries = std::fs::read_dir(dir.partition_dir(0)).unwrap().map(|entry| entry.unwrap());
            // Segments and spares; the summaries beside them are a few dozen bytes each.
            entries.filter(|entry| !entry.path().to_string_lossy().contains(".sum")).map(|entry| entry.metadata().unwrap().len()).sum()
        };
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        log.wait_for_spare();
        assert_eq!(reserved(&dir), 0, "an empty partition reserves nothing");
        log.append(b"id-0", 0, &[b"{}"]).unwrap();
        log.wait_for_spare();
        assert_eq!(reserved(&dir), options().segment_bytes, "one segment once data arrives");
        let mut i = 1;
        while log.active.as_ref().is_some_and(|active| active.room() * 2 > options().segment_bytes) {
            log.append(format!("id-{i}").as_bytes(), 0, &[&event(i, 50_000)]).unwrap();
            i += 1;
        }
        log.wait_for_spare();
        assert_eq!(reserved(&dir), 2 * options().segment_bytes, "the spare once the segment is half full");
        drop(log);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        log.wait_for_spare();
        assert_eq!(reserved(&dir), 2 * options().segment_bytes, "a reopened half-full partition asks for its spare again");
        assert_eq!(log.stalled_rolls(), 0);
    }

    /// A partition's segments start small and double up to `segment_bytes`; a record
    /// larger than the next planned size gets a segment that holds it.
    #[test]
    fn segments_double_from_the_first_size_up_to_segment_bytes() {
        let (_temp, dir) = data_dir(1);
        let sized = LogOptions { segment_bytes: 8 << 20, ..options() };
        let sizes = |dir: &DataDir| -> Vec<u64> {
            segment::list(&dir.partition_dir(0)).unwrap().0.iter().map(|file| std::fs::metadata(&file.path).unwrap().len()).collect()
        };
        let (mut log, _) = PartitionLog::open(&dir, 0, &sized).unwrap();
        for i in 0..160u64 {
            let record = event(i, 100_000);
            let stored = format::stored_len((8 + record.len()) as u64);
            if log.active.as_ref().is_none_or(|active| active.room() < stored) {
                log.wait_for_spare();
            }
            log.append(format!("id-{i:05}").as_bytes(), 0, &[&record]).unwrap();
        }
        let mib = 1 << 20;
        assert_eq!(sizes(&dir)[..4], [mib, 2 * mib, 4 * mib, 8 * mib]);
        assert!(sizes(&dir)[4..].iter().all(|&size| size == 8 * mib), "{:?}", sizes(&dir));
        assert_eq!(log.stalled_rolls(), 0);
        drop(log);
        // Reopened, the log goes on at full size; a fresh partition with a large record
        // starts with a segment that holds it.
        let (_temp, small) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&small, 0, &sized).unwrap();
        log.append(b"big", 0, &[&event(1, 3 << 20)]).unwrap();
        assert_eq!(sizes(&small), [4 * mib]);
        let mut reader = LogReader::open(&small, 0, StartAt::Earliest).unwrap();
        assert_eq!(read_all(&mut reader)[0].3, event(1, 3 << 20));
    }

    /// After a crash an empty active segment can be too small for the next record; the
    /// writer replaces it under the same name, and a reader waiting on the old file reads
    /// the new one instead of skipping its records at the next roll.
    #[test]
    fn a_reader_on_an_empty_segment_replaced_under_its_name_reads_the_new_one() {
        let (_temp, dir) = data_dir(1);
        let sized = LogOptions { segment_bytes: 8 << 20, ..options() };
        let (mut log, _) = PartitionLog::open(&dir, 0, &sized).unwrap();
        log.append(b"small", 0, &[b"{}"]).unwrap();
        log.append(b"torn", 0, &[&event(1, 1_500_000)]).unwrap();
        drop(log);
        // The crash: offset 1's record never became durable (its commit word is zero).
        let (files, _) = segment::list(&dir.partition_dir(0)).unwrap();
        let torn = files.iter().find(|file| file.base_offset == 1).expect("segment 1");
        let mut bytes = std::fs::read(&torn.path).unwrap();
        bytes[SEGMENT_HEADER_BYTES..SEGMENT_HEADER_BYTES + 64].fill(0);
        std::fs::write(&torn.path, &bytes).unwrap();
        let (mut log, report) = PartitionLog::open(&dir, 0, &sized).unwrap();
        assert_eq!((report.records, log.next_offset()), (1, 1));

        let mut reader = LogReader::open(&dir, 0, StartAt::Offset(1)).unwrap();
        assert!(reader.next().unwrap().is_none(), "the empty segment is mapped");
        let big = event(1, 3 << 20);
        assert_eq!(log.append(b"big", 0, &[&big]).unwrap(), 1);
        let read = reader.next().unwrap().map(|record| (record.offset, record.event == big.as_slice()));
        assert_eq!(read, Some((1, true)), "offset 1 read from the replacing file");
        // Past the next roll it goes on in order.
        assert_eq!(log.append(b"after", 0, &[&event(2, 5 << 20)]).unwrap(), 2);
        assert_eq!(reader.next().unwrap().map(|record| record.offset), Some(2));
    }

    /// A spare still being made at a roll is kept only if it has the size the next roll
    /// wants: one made for a smaller segment would block the right one and be thrown
    /// away at that roll, a second stall.
    #[test]
    fn a_pending_spare_of_the_wrong_size_is_dropped_at_a_roll() {
        let (_temp, dir) = data_dir(1);
        let sized = LogOptions { segment_bytes: 8 << 20, ..options() };
        let (mut log, _) = PartitionLog::open(&dir, 0, &sized).unwrap();
        log.append(b"first", 0, &[b"{}"]).unwrap();
        let mib = 1 << 20;
        // Planned after the 1 MiB segment: 2 MiB. A 3 MiB record makes the roll take 4 MiB,
        // after which 8 MiB is planned.
        let (wrong, _keep_pending) = spare::Pending::never(2 * mib);
        log.spare = Some(wrong);
        log.append(b"big", 0, &[&event(1, 3 << 20)]).unwrap();
        // Dropped; the 4 MiB segment is already more than half full, so the log asked for
        // the planned 8 MiB one at once.
        assert!(log.spare.as_ref().is_none_or(|pending| pending.bytes == 8 * mib), "the 2 MiB spare in the making was dropped");
        let (right, _keep_pending) = spare::Pending::never(8 * mib);
        log.spare = Some(right);
        log.append(b"bigger", 0, &[&event(2, 5 << 20)]).unwrap();
        assert_eq!(log.spare.as_ref().map(|pending| pending.bytes), Some(8 * mib), "a spare of the planned size is kept");
    }

    #[test]
    fn refuses_bad_records_and_a_second_writer() {
        let (_temp, dir) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert!(matches!(log.append(b"", 0, &[]), Err(StorageError::EmptyRecord)));
        let huge = vec![0u8; 1 << 20];
        assert!(matches!(log.append(b"x", 0, &[&huge]), Err(StorageError::RecordTooLarge { .. })));
        assert!(matches!(log.append(&[b'i'; 70_000], 0, &[b"x"]), Err(StorageError::EventIdTooLong { .. })));
        assert_eq!(log.next_offset(), 0);
        assert!(matches!(PartitionLog::open(&dir, 0, &options()), Err(StorageError::PartitionLocked { .. })));
        assert!(matches!(PartitionLog::open(&dir, 1, &options()), Err(StorageError::NoSuchPartition { .. })));
        let tiny = LogOptions { segment_bytes: 4096, ..options() };
        assert!(matches!(PartitionLog::open(&dir, 0, &tiny), Err(StorageError::InvalidSegmentBytes { .. })));
    }

    #[test]
    fn retention_by_age_deletes_only_sealed_segments() {
        let (_temp, dir) = data_dir(1);
        let aged = LogOptions { retention_ms: 1000, ..options() };
        let (mut log, _) = PartitionLog::open(&dir, 0, &aged).unwrap();
        for i in 0..35u64 {
            log.append(b"id", (i as i64) * 10, &[&event(i, 100_000)]).unwrap();
        }
        let files = segment::list(&dir.partition_dir(0)).unwrap().0;
        assert_eq!(files.len(), 4);
        assert_eq!(log.enforce_retention(1000).unwrap(), None);
        // Segment 0 holds ingest_ms 0..=90, segment 1 100..=190: now - 1000 = 150.
        assert_eq!(log.enforce_retention(1150).unwrap(), Some(files[1].base_offset));
        assert!(!files[0].path.exists() && files[1].path.exists());
        let mut reader = LogReader::open(&dir, 0, StartAt::Offset(0)).unwrap();
        assert_eq!(reader.next().unwrap().unwrap().offset, files[1].base_offset);
        assert_eq!(log.enforce_retention(i64::MAX).unwrap(), Some(files[3].base_offset));
        assert!(files[3].path.exists());
        assert_eq!(log.append(b"id", 0, &[b"after"]).unwrap(), 35);
        let mut since = Vec::new();
        log.scan(300, |record| since.push(record.offset)).unwrap();
        assert_eq!(since, (30..=34).collect::<Vec<_>>());
    }

    #[test]
    fn retention_by_size_keeps_the_newest_segments() {
        let (_temp, dir) = data_dir(1);
        let sized = LogOptions { retention_bytes: 2 << 20, ..options() };
        let (mut log, _) = PartitionLog::open(&dir, 0, &sized).unwrap();
        for i in 0..45u64 {
            log.append(b"id", 0, &[&event(i, 100_000)]).unwrap();
        }
        let files = segment::list(&dir.partition_dir(0)).unwrap().0;
        assert_eq!(files.len(), 5);
        assert_eq!(log.enforce_retention(0).unwrap(), Some(files[3].base_offset));
        assert_eq!(segment::list(&dir.partition_dir(0)).unwrap().0, files[3..].to_vec());
        let mut reader = LogReader::open(&dir, 0, StartAt::Earliest).unwrap();
        assert_eq!(read_all(&mut reader).len() as u64, 45 - files[3].base_offset);
        drop(log);
        let (log, report) = PartitionLog::open(&dir, 0, &sized).unwrap();
        assert_eq!((log.start_offset(), log.next_offset(), report.segments), (files[3].base_offset, 45, 2));
    }
}

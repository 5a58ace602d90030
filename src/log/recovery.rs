//! Recovery when a partition's log is opened: validate every segment, keep each valid
//! prefix, cut the torn tail of the last segment and hand back the writer's state.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{self, FormatError, SegmentHeader};
use super::segment::{self, SegmentFile, WritableSegment};
use super::{DamagedOffsets, LogOptions, RecoveryReport, StorageError};
use crate::constants::{SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES};

/// What retention needs to know about a segment without mapping it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub base_offset: u64,
    pub records: u64,
    /// Offset after its last valid record (`base_offset` when it has none).
    pub end_offset: u64,
    /// Largest `ingest_ms` of its records; `i64::MIN` when it has none.
    pub last_ingest_ms: i64,
    /// Size of the file: what deleting it frees.
    pub bytes: u64,
    pub path: PathBuf,
}

/// The writer's state after recovery.
pub(crate) struct Recovered {
    /// Oldest first; the last one describes `active` when there is one.
    pub segments: VecDeque<SegmentSummary>,
    pub active: Option<WritableSegment>,
    pub next_offset: u64,
    pub report: RecoveryReport,
}

/// Scans the partition directory `dir` (whose descriptor `dir_file` is locked by the
/// caller) and repairs what a crash can leave behind.
pub(crate) fn recover(dir: &Path, dir_file: &File, partition: u32, options: &LogOptions) -> Result<Recovered, StorageError> {
    let (files, leftovers) = segment::list(dir)?;
    for leftover in &leftovers {
        fs::remove_file(leftover).map_err(|e| StorageError::io(leftover, "remove unfinished segment", e))?;
    }
    let mut report = RecoveryReport { segments: files.len(), ..RecoveryReport::default() };
    let mut segments = VecDeque::with_capacity(files.len());
    let Some((last, sealed)) = files.split_last() else {
        return Ok(Recovered { segments, active: None, next_offset: 0, report });
    };
    for (index, file) in sealed.iter().enumerate() {
        let (summary, mut damage) = recover_sealed(file, partition)?;
        let next_base = files[index + 1].base_offset;
        let end = summary.end_offset;
        if end > next_base {
            let reason = format!("records run to offset {end} but the next segment starts at {next_base}");
            return Err(StorageError::Corrupt { path: file.path.clone(), reason });
        }
        if end < next_base {
            let reason = "missing at the end of the segment (cut short or torn)".to_owned();
            damage.push(DamagedOffsets { from: end, to: next_base, path: file.path.clone(), reason });
        }
        if !damage.is_empty() {
            report.corrupt_sealed_segments += 1;
        }
        report.damage.append(&mut damage);
        report.records += summary.records;
        segments.push_back(summary);
    }
    let (summary, active, truncated_bytes, mut damage) = recover_last(last, partition, options)?;
    report.damage.append(&mut damage);
    // Repairs (header, length, zeroed tail, removed leftovers) reach the disk before the
    // first new record; with nothing dirty these syncs cost next to nothing.
    if options.fsync {
        active.sync()?;
        dir_file.sync_all().map_err(|e| StorageError::sync(dir, "fsync directory", e))?;
    }
    report.records += summary.records;
    report.truncated_bytes = truncated_bytes;
    let next_offset = summary.end_offset;
    segments.push_back(summary);
    Ok(Recovered { segments, active: Some(active), next_offset, report })
}

/// A header that names another partition or offset means the file was moved by hand:
/// refuse rather than guess. `UnsupportedVersion` means a newer sluice wrote it.
fn check_identity(file: &SegmentFile, partition: u32, header: &SegmentHeader) -> Result<(), StorageError> {
    if header.partition == partition && header.base_offset == file.base_offset {
        return Ok(());
    }
    let reason = format!(
        "header says partition {} base offset {}, its place says partition {partition} base offset {}",
        header.partition, header.base_offset, file.base_offset
    );
    Err(StorageError::Corrupt { path: file.path.clone(), reason })
}

/// The scan's damage as offset ranges of the segment at `path`.
pub(crate) fn damage_of(outcome: &format::ScanOutcome, path: &Path) -> Vec<DamagedOffsets> {
    let describe = |damage: &format::Damage| {
        let reason = if damage.from_position == damage.to_position {
            format!("offsets skipped before byte {} ({})", damage.from_position, damage.reason)
        } else {
            format!("bytes {}..{} unreadable ({})", damage.from_position, damage.to_position, damage.reason)
        };
        DamagedOffsets { from: damage.from_offset, to: damage.to_offset, path: path.to_owned(), reason }
    };
    outcome.damage.iter().map(describe).collect()
}

/// Summarises a sealed segment read-only, with its damage. A segment whose header is
/// unreadable keeps no records; the caller reports its offsets as missing.
fn recover_sealed(file: &SegmentFile, partition: u32) -> Result<(SegmentSummary, Vec<DamagedOffsets>), StorageError> {
    let handle = File::open(&file.path).map_err(|e| StorageError::io(&file.path, "open", e))?;
    let bytes = handle.metadata().map_err(|e| StorageError::io(&file.path, "stat", e))?.len();
    let mut summary = SegmentSummary {
        base_offset: file.base_offset,
        records: 0,
        end_offset: file.base_offset,
        last_ingest_ms: i64::MIN,
        bytes,
        path: file.path.clone(),
    };
    if bytes < SEGMENT_HEADER_BYTES as u64 {
        return Ok((summary, Vec::new()));
    }
    let map = segment::map_read_only(&handle, &file.path, bytes)?;
    let header = match format::decode_segment_header(&map) {
        Ok(header) => header,
        Err(FormatError::UnsupportedVersion(version)) => return Err(unsupported(file, version)),
        Err(_) => return Ok((summary, Vec::new())),
    };
    check_identity(file, partition, &header)?;
    let view = &map[..header.segment_bytes.min(bytes) as usize];
    let outcome = format::scan_segment(view, file.base_offset, |_| {});
    summary.records = outcome.records;
    summary.end_offset = outcome.end_offset;
    summary.last_ingest_ms = outcome.last_ingest_ms;
    Ok((summary, damage_of(&outcome, &file.path)))
}

fn unsupported(file: &SegmentFile, version: u32) -> StorageError {
    let reason = format!("segment format version {version} was written by a newer sluice");
    StorageError::Corrupt { path: file.path.clone(), reason }
}

/// Reopens the last segment for writing: re-initialises a torn header, restores the
/// preallocated length, and zeroes the torn tail after the last valid record so nothing
/// there can later pass for a record. Damage with valid records after it is not a torn
/// tail: it is left in place and reported, and the writer carries on after the last
/// valid record, so no offset is handed out twice. Returns the non-zero bytes it cut.
fn recover_last(
    file: &SegmentFile,
    partition: u32,
    options: &LogOptions,
) -> Result<(SegmentSummary, WritableSegment, u64, Vec<DamagedOffsets>), StorageError> {
    let path = &file.path;
    let handle = OpenOptions::new().read(true).write(true).open(path).map_err(|e| StorageError::io(path, "open", e))?;
    let file_bytes = handle.metadata().map_err(|e| StorageError::io(path, "stat", e))?.len();
    let (header, torn_header) = read_last_header(&handle, file_bytes, file, partition, options)?;
    check_identity(file, partition, &header)?;
    let capacity = header.segment_bytes;
    if file_bytes < capacity {
        segment::reserve(&handle, path, capacity)?;
    }
    if torn_header {
        handle.write_all_at(&format::encode_segment_header(&header), 0).map_err(|e| StorageError::io(path, "write header", e))?;
    }
    let map = segment::map_writable(&handle, path, capacity)?;
    let outcome = format::scan_segment(&map, file.base_offset, |_| {});
    let cut = outcome.end_position;
    let truncated_bytes = if outcome.torn_tail.is_some() { nonzero_extent(&map[cut..]) } else { 0 };
    if truncated_bytes > 0 || file_bytes > capacity {
        segment::zero_range(&handle, path, cut as u64, file_bytes.max(capacity))?;
    }
    let summary = SegmentSummary {
        base_offset: file.base_offset,
        records: outcome.records,
        end_offset: outcome.end_offset,
        last_ingest_ms: outcome.last_ingest_ms,
        bytes: file_bytes.max(capacity),
        path: path.clone(),
    };
    let damage = damage_of(&outcome, path);
    Ok((summary, WritableSegment::from_recovered(handle, map, cut, path.clone()), truncated_bytes, damage))
}

/// The last segment's header, or a fresh one built from its file name when the header
/// is torn or was never written (a crash before it reached the disk); `true` then.
fn read_last_header(
    handle: &File,
    file_bytes: u64,
    file: &SegmentFile,
    partition: u32,
    options: &LogOptions,
) -> Result<(SegmentHeader, bool), StorageError> {
    let mut head = [0u8; SEGMENT_HEADER_BYTES];
    let head_len = file_bytes.min(SEGMENT_HEADER_BYTES as u64) as usize;
    handle.read_exact_at(&mut head[..head_len], 0).map_err(|e| StorageError::io(&file.path, "read header", e))?;
    match format::decode_segment_header(&head) {
        Ok(header) => Ok((header, false)),
        Err(FormatError::UnsupportedVersion(version)) => Err(unsupported(file, version)),
        Err(FormatError::BadSegmentBytes(bytes)) => {
            Err(StorageError::Corrupt { path: file.path.clone(), reason: format!("header claims {bytes} segment bytes") })
        }
        Err(_) => {
            // Segments are reserved whole before their header is written, so the file's
            // length is the size it was made with (segments grow from FIRST_SEGMENT_BYTES);
            // a length no segment could have means the configured size.
            let made_with = (SEGMENT_BYTES_MIN..=options.segment_bytes).contains(&file_bytes) && file_bytes.is_multiple_of(4096);
            let header = SegmentHeader {
                partition,
                base_offset: file.base_offset,
                created_ms: crate::platform::time::now_unix_ms(),
                segment_bytes: if made_with { file_bytes } else { options.segment_bytes },
            };
            Ok((header, true))
        }
    }
}

/// Length of `bytes` up to and including its last non-zero byte.
fn nonzero_extent(bytes: &[u8]) -> u64 {
    const PAGE_BYTES: usize = 4096;
    let mut end = bytes.len();
    // Bounded by the segment length; whole pages are compared at a time because the
    // unwritten rest of a segment is usually zero.
    for page in bytes.rchunks(PAGE_BYTES) {
        if page.iter().any(|&b| b != 0) {
            let last = page.iter().rposition(|&b| b != 0).unwrap_or(0);
            return (end - page.len() + last + 1) as u64;
        }
        end -= page.len();
    }
    0
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::log::test_support::{data_dir, event, options};
    use crate::log::{PartitionLog, StorageError};

    fn fill(log: &mut PartitionLog, count: u64, event_bytes: usize) {
        for i in 0..count {
            let id = format!("id-{i}");
            assert_eq!(log.append(id.as_bytes(), 1000 + i as i64, &[&event(i, event_bytes)]).unwrap(), log.next_offset() - 1);
        }
    }

    fn last_segment(dir: &Path) -> PathBuf {
        segment::list(dir).unwrap().0.pop().unwrap().path
    }

    #[test]
    fn torn_tail_from_a_truncated_file_keeps_whole_records() {
        let (_temp, dir) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        fill(&mut log, 10, 100);
        drop(log);
        // Each record is 32 + 4 + 100 = 136 bytes: cut the 10th in half.
        let path = last_segment(&dir.partition_dir(0));
        File::options().write(true).open(&path).unwrap().set_len(64 + 9 * 136 + 60).unwrap();
        let (mut log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!(report.records, 9);
        assert_eq!(report.truncated_bytes, 60);
        assert_eq!(log.next_offset(), 9);
        assert_eq!(fs::metadata(&path).unwrap().len(), 1 << 20);
        assert_eq!(log.append(b"again", 5, &[b"x"]).unwrap(), 9);
        drop(log);
        let (_, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!((report.records, report.truncated_bytes), (10, 0));
    }

    #[test]
    fn garbage_after_the_last_record_is_cut() {
        let (_temp, dir) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        fill(&mut log, 3, 10);
        drop(log);
        let path = last_segment(&dir.partition_dir(0));
        let end = 64 + 3 * 48;
        // A plausible commit word and magic, then noise: must not survive as a record.
        let mut garbage = vec![0x5Au8; 300];
        garbage[0..4].copy_from_slice(&20u32.to_le_bytes());
        garbage[28..32].copy_from_slice(&format::RECORD_MAGIC.to_le_bytes());
        File::options().write(true).open(&path).unwrap().write_all_at(&garbage, end).unwrap();
        let (log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!((report.records, report.truncated_bytes), (3, 300));
        assert_eq!(log.next_offset(), 3);
        let bytes = fs::read(&path).unwrap();
        assert!(bytes[end as usize..].iter().all(|&b| b == 0));
    }

    #[test]
    fn zeroed_last_header_is_reinitialised() {
        let (_temp, dir) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        fill(&mut log, 4, 10);
        drop(log);
        let path = last_segment(&dir.partition_dir(0));
        File::options().write(true).open(&path).unwrap().write_all_at(&[0; 64], 0).unwrap();
        let (log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!(report.records, 4, "records survive a torn header");
        assert_eq!(log.next_offset(), 4);
        let header = format::decode_segment_header(&fs::read(&path).unwrap()).unwrap();
        assert_eq!((header.partition, header.base_offset, header.segment_bytes), (0, 0, 1 << 20));
    }

    #[test]
    fn empty_last_file_and_leftover_tmp_are_repaired() {
        let (_temp, dir) = data_dir(1);
        let partition_dir = dir.partition_dir(0);
        File::create(segment::path_for(&partition_dir, 0)).unwrap();
        fs::write(partition_dir.join("00000000000000000005.seg.tmp"), b"half").unwrap();
        let (mut log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!((report.segments, report.records), (1, 0));
        assert!(!partition_dir.join("00000000000000000005.seg.tmp").exists());
        assert_eq!(log.append(b"a", 1, &[b"b"]).unwrap(), 0);
    }

    #[test]
    fn damaged_sealed_segment_keeps_every_intact_record_and_is_counted() {
        let (_temp, dir) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        fill(&mut log, 40, 100_000);
        drop(log);
        let (files, _) = segment::list(&dir.partition_dir(0)).unwrap();
        assert!(files.len() >= 3);
        // Flip a byte in the 3rd record's event of the first segment.
        let at = 64 + 2 * format::stored_len(4 + 100_000) + 100;
        File::options().write(true).open(&files[0].path).unwrap().write_all_at(&[0xFF], at).unwrap();
        let (log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!(report.corrupt_sealed_segments, 1);
        assert_eq!(log.next_offset(), 40);
        assert_eq!(report.records, 39);
        assert_eq!(report.damage.len(), 1);
        assert_eq!((report.damage[0].from, report.damage[0].to, &report.damage[0].path), (2, 3, &files[0].path));
        let mut offsets = Vec::new();
        log.scan(i64::MIN, |record| offsets.push(record.offset)).unwrap();
        assert_eq!(offsets, (0..40).filter(|&offset| offset != 2).collect::<Vec<_>>());
    }

    #[test]
    fn damage_in_the_active_segment_is_kept_not_cut() {
        let (_temp, dir) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        fill(&mut log, 20, 100);
        drop(log);
        let path = last_segment(&dir.partition_dir(0));
        // Zero records 5 and 6 whole (a lost block), flip a bit in record 9.
        let file = File::options().write(true).open(&path).unwrap();
        file.write_all_at(&[0; 2 * 136], 64 + 5 * 136).unwrap();
        file.write_all_at(&[0x80], 64 + 9 * 136 + 40).unwrap();
        let before = fs::read(&path).unwrap();
        let (mut log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!((report.records, report.truncated_bytes, log.next_offset()), (17, 0, 20));
        let ranges: Vec<(u64, u64)> = report.damage.iter().map(|range| (range.from, range.to)).collect();
        assert_eq!(ranges, [(5, 7), (9, 10)]);
        assert_eq!(fs::read(&path).unwrap(), before, "recovery must leave a damaged segment as it is");
        assert_eq!(log.append(b"next", 1, &[b"x"]).unwrap(), 20, "offsets are never reused");
        drop(log);
        let (log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!((report.records, report.damaged_offsets(), log.next_offset()), (18, 3, 21));
    }

    #[test]
    fn misplaced_segment_is_refused() {
        let (_temp, dir) = data_dir(2);
        let (mut log, _) = PartitionLog::open(&dir, 1, &options()).unwrap();
        fill(&mut log, 1, 10);
        drop(log);
        let from = last_segment(&dir.partition_dir(1));
        fs::copy(&from, segment::path_for(&dir.partition_dir(0), 0)).unwrap();
        let error = PartitionLog::open(&dir, 0, &options()).err().unwrap();
        assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    }
}

//! Recovery when a partition's log is opened: validate every segment (or trust its
//! summary, `summary.rs`), keep every intact record, report damage, cut the torn tail of
//! the last segment and hand back the writer's state.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{self, FormatError, SegmentHeader};
use super::segment::{self, SegmentFile, WritableSegment};
use super::summary::{self, Summary};
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
    /// Damaged offset ranges inside the segment.
    pub damage: Vec<(u64, u64)>,
    /// Its records up to `end_offset` are known to be on disk (synced, or read back
    /// after a boot); a clean close syncs the others.
    pub durable: bool,
}

impl SegmentSummary {
    /// An empty segment just made.
    pub(crate) fn fresh(base_offset: u64, bytes: u64, path: PathBuf) -> SegmentSummary {
        SegmentSummary {
            base_offset,
            records: 0,
            end_offset: base_offset,
            last_ingest_ms: i64::MIN,
            bytes,
            path,
            damage: Vec::new(),
            durable: false,
        }
    }

    /// The summary file's form of it.
    pub(crate) fn to_summary(&self, partition: u32, end_position: u64, sealed: bool, durable: bool) -> Summary {
        Summary {
            partition,
            base_offset: self.base_offset,
            end_offset: self.end_offset,
            records: self.records,
            last_ingest_ms: self.last_ingest_ms,
            end_position,
            segment_bytes: self.bytes,
            boot_id: crate::platform::boot_id(),
            sealed,
            durable,
            damage: self.damage.clone(),
        }
    }
}

/// Damage a summary remembers, as reported ranges.
fn remembered(damage: &[(u64, u64)], path: &Path) -> Vec<DamagedOffsets> {
    let reason = "found by an earlier recovery (the summary beside the segment remembers it)".to_owned();
    damage.iter().map(|&(from, to)| DamagedOffsets { from, to, path: path.to_owned(), reason: reason.clone() }).collect()
}

/// The writer's state after recovery.
pub(crate) struct Recovered {
    /// Oldest first; the last one describes `active` when there is one.
    pub segments: VecDeque<SegmentSummary>,
    pub active: Option<WritableSegment>,
    pub next_offset: u64,
    pub report: RecoveryReport,
    /// A record boundary in the active segment known from its checkpoint: (offset of the
    /// record there, its byte position), so a scan of the newest records starts there.
    pub resume: Option<(u64, usize)>,
}

/// What recovering the last segment gives back.
struct Last {
    summary: SegmentSummary,
    active: WritableSegment,
    truncated_bytes: u64,
    damage: Vec<DamagedOffsets>,
    resume: Option<(u64, usize)>,
}

/// Scans the partition directory `dir` (whose descriptor `dir_file` is locked by the
/// caller) and repairs what a crash can leave behind.
pub(crate) fn recover(dir: &Path, dir_file: &File, partition: u32, options: &LogOptions) -> Result<Recovered, StorageError> {
    let (files, leftovers) = segment::list(dir)?;
    for leftover in &leftovers {
        fs::remove_file(leftover).map_err(|e| StorageError::io(leftover, "remove unfinished segment", e))?;
    }
    summary::remove_orphans(dir)?;
    let boot_id = crate::platform::boot_id();
    let mut report = RecoveryReport { segments: files.len(), ..RecoveryReport::default() };
    let mut segments = VecDeque::with_capacity(files.len());
    let Some((last, sealed)) = files.split_last() else {
        return Ok(Recovered { segments, active: None, next_offset: 0, report, resume: None });
    };
    for (index, file) in sealed.iter().enumerate() {
        let (summary, mut damage) = match trusted_sealed(file, partition, &boot_id) {
            Some(summary) => {
                let damage = remembered(&summary.damage, &file.path);
                (summary, damage)
            }
            None => recover_sealed(file, partition)?,
        };
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
    let Last { summary, active, truncated_bytes, mut damage, resume } = recover_last(last, partition, options, &boot_id)?;
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
    Ok(Recovered { segments, active: Some(active), next_offset, report, resume })
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
    let mut summary = SegmentSummary::fresh(file.base_offset, bytes, file.path.clone());
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
    summary.damage = outcome.damage.iter().map(|damage| (damage.from_offset, damage.to_offset)).collect();
    // Remember what was read, once it is on disk (a no-op for a file with nothing
    // dirty), so the next start need not read it again. The segment may be cut short
    // (then the summary would not match its length): only whole ones are remembered.
    if bytes == header.segment_bytes {
        handle.sync_data().map_err(|e| StorageError::sync(&file.path, "fdatasync", e))?;
        summary.durable = true;
        let remembered = summary.to_summary(partition, outcome.end_position as u64, true, true);
        if let Err(error) = summary::write(&file.path, &remembered) {
            tracing::warn!(%error, "cannot write a segment summary; the next start reads the segment again");
        }
    }
    Ok((summary, damage_of(&outcome, &file.path)))
}

/// The summary of a sealed segment, when it can stand in for reading the segment: it
/// decodes, describes this file (partition, base offset, the file's length), is sealed,
/// and its facts were on disk when written or were written during this boot.
fn trusted_sealed(file: &SegmentFile, partition: u32, boot_id: &[u8; 16]) -> Option<SegmentSummary> {
    let found = summary::read(&file.path)?;
    let bytes = fs::metadata(&file.path).ok()?.len();
    let fits = found.partition == partition && found.base_offset == file.base_offset && found.segment_bytes == bytes;
    (fits && found.sealed && found.trusted(boot_id)).then(|| SegmentSummary {
        base_offset: found.base_offset,
        records: found.records,
        end_offset: found.end_offset,
        last_ingest_ms: found.last_ingest_ms,
        bytes,
        path: file.path.clone(),
        damage: found.damage,
        durable: found.durable,
    })
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
fn recover_last(file: &SegmentFile, partition: u32, options: &LogOptions, boot_id: &[u8; 16]) -> Result<Last, StorageError> {
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
    // A trusted checkpoint says where the records it saw end: only what follows is read.
    let checkpoint = summary::read(path).filter(|found| {
        !found.sealed
            && found.trusted(boot_id)
            && found.partition == partition
            && found.base_offset == file.base_offset
            && found.segment_bytes == capacity
            && found.end_position >= SEGMENT_HEADER_BYTES as u64
            && found.end_position <= capacity
            && !torn_header
            && file_bytes >= capacity
    });
    let (start_position, start_offset) = match &checkpoint {
        Some(found) => (found.end_position as usize, found.end_offset),
        None => (SEGMENT_HEADER_BYTES, file.base_offset),
    };
    let map = segment::map_writable(&handle, path, capacity)?;
    // Bytes past the file system's last data stretch read as zero: the scan (and the
    // check that nothing follows the last record) stops there instead of reading, and
    // faulting in, the whole unwritten rest of the segment.
    let data_end = crate::platform::sys::data_end(&handle, start_position as u64, capacity)
        .next_multiple_of(crate::constants::RECORD_ALIGN_BYTES as u64)
        .min(capacity) as usize;
    let view = &map[..data_end.max(start_position)];
    let outcome = format::scan_segment_from(view, start_position, start_offset, |_| {});
    let cut = outcome.end_position;
    let truncated_bytes = if outcome.torn_tail.is_some() { nonzero_extent(&view[cut..]) } else { 0 };
    if truncated_bytes > 0 || file_bytes > capacity {
        segment::zero_range(&handle, path, cut as u64, file_bytes.max(capacity))?;
    }
    let (mut damage, earlier_records, earlier_ms) = match &checkpoint {
        Some(found) => (found.damage.clone(), found.records, found.last_ingest_ms),
        None => (Vec::new(), 0, i64::MIN),
    };
    let mut reported = remembered(&damage, path);
    damage.extend(outcome.damage.iter().map(|range| (range.from_offset, range.to_offset)));
    reported.extend(damage_of(&outcome, path));
    let summary = SegmentSummary {
        base_offset: file.base_offset,
        records: earlier_records + outcome.records,
        end_offset: outcome.end_offset,
        last_ingest_ms: earlier_ms.max(outcome.last_ingest_ms),
        bytes: file_bytes.max(capacity),
        path: path.clone(),
        damage,
        durable: false,
    };
    let resume = checkpoint.map(|found| (found.end_offset, found.end_position as usize));
    let active = WritableSegment::from_recovered(handle, map, cut, path.clone());
    Ok(Last { summary, active, truncated_bytes, damage: reported, resume })
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
        // The summary written at the roll stands in for reading the segment at a start,
        // so damage that came later is not seen there (readers and check-log see it).
        let (_, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!((report.records, report.damage.len()), (40, 0));
        assert_eq!(crate::log::verify_partition(&dir, 0).unwrap().damage.len(), 1);
        // Without the summary the segment is read, and the damage found and remembered.
        crate::log::spare::flush();
        fs::remove_file(summary::path_for(&files[0].path)).unwrap();
        let (log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!(report.corrupt_sealed_segments, 1);
        assert_eq!(log.next_offset(), 40);
        assert_eq!(report.records, 39);
        assert_eq!(report.damage.len(), 1);
        assert_eq!((report.damage[0].from, report.damage[0].to, &report.damage[0].path), (2, 3, &files[0].path));
        let mut offsets = Vec::new();
        log.scan(i64::MIN, |record| offsets.push(record.offset)).unwrap();
        assert_eq!(offsets, (0..40).filter(|&offset| offset != 2).collect::<Vec<_>>());
        drop(log);
        let (_, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!((report.records, report.damaged_offsets()), (39, 1), "the new summary remembers the damage");
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
    fn a_start_reads_only_what_follows_the_checkpoint() {
        let (_temp, dir) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        fill(&mut log, 10, 100);
        log.close_clean().unwrap();
        // Records after the checkpoint (a kill -9 before the next one).
        for i in 10..15u64 {
            log.append(format!("id-{i}").as_bytes(), 2000, &[&event(i, 100)]).unwrap();
        }
        drop(log);
        let path = last_segment(&dir.partition_dir(0));
        // Damage before the checkpoint is not read again at a start: proof it is skipped.
        File::options().write(true).open(&path).unwrap().write_all_at(&[0x80], 64 + 3 * 136 + 40).unwrap();
        let (mut log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!((report.records, report.damage.len(), log.next_offset()), (15, 0, 15));
        assert_eq!(log.append(b"next", 1, &[b"x"]).unwrap(), 15);
        drop(log);
        // Without a trusted checkpoint the whole segment is read and the damage found.
        crate::log::spare::flush();
        fs::remove_file(summary::path_for(&path)).unwrap();
        let (log, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!((report.records, report.damaged_offsets(), log.next_offset()), (15, 1, 16));
    }

    #[test]
    fn a_checkpoint_from_another_boot_is_trusted_only_after_a_clean_close() {
        let (_temp, dir) = data_dir(1);
        let (mut log, _) = PartitionLog::open(&dir, 0, &options()).unwrap();
        fill(&mut log, 10, 100);
        log.checkpoint(false);
        drop(log);
        crate::log::spare::flush();
        let path = last_segment(&dir.partition_dir(0));
        let mut found = summary::read(&path).unwrap();
        assert!(!found.durable && !found.sealed && found.end_offset == 10);
        // As if written before a power loss: another boot, not durable.
        found.boot_id = [1; 16];
        summary::write(&path, &found).unwrap();
        File::options().write(true).open(&path).unwrap().write_all_at(&[0x80], 64 + 3 * 136 + 40).unwrap();
        let (_, report) = PartitionLog::open(&dir, 0, &options()).unwrap();
        assert_eq!(report.damaged_offsets(), 1, "an untrusted checkpoint means reading the segment");
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

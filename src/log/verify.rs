//! `sluice check-log`'s reading of one partition: every record's CRC and the offset
//! sequence within and across segments, read-only (safe beside a running writer).

use std::fs::File;
use std::path::PathBuf;

use super::format::{self, FormatError};
use super::recovery::damage_of;
use super::segment;
use super::{DamagedOffsets, DataDir, StorageError};
use crate::constants::SEGMENT_HEADER_BYTES;

/// What a check of one partition found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionCheck {
    pub segments: usize,
    pub records: u64,
    /// Offset of the oldest retained segment's first record.
    pub start_offset: u64,
    /// Offset after the newest valid record.
    pub end_offset: u64,
    /// Offsets handed out but unreadable, oldest first.
    pub damage: Vec<DamagedOffsets>,
    /// Non-zero bytes after the last record of the newest segment that do not form a
    /// record: a torn tail the writer's next recovery cuts (or a write in progress).
    pub torn_tail: Option<(PathBuf, usize, FormatError)>,
}

/// Reads every segment of `partition` and checks it.
pub fn verify_partition(dir: &DataDir, partition: u32) -> Result<PartitionCheck, StorageError> {
    if partition >= dir.partitions() {
        return Err(StorageError::NoSuchPartition { partition, partitions: dir.partitions() });
    }
    let (files, _) = segment::list(&dir.partition_dir(partition))?;
    let mut check = PartitionCheck { segments: files.len(), ..PartitionCheck::default() };
    // Set when the segment just read is shorter than its header says (cut short).
    let mut short: Option<PathBuf> = None;
    let Some(first) = files.first() else { return Ok(check) };
    (check.start_offset, check.end_offset) = (first.base_offset, first.base_offset);
    for (index, file) in files.iter().enumerate() {
        let last = index + 1 == files.len();
        if file.base_offset > check.end_offset {
            let reason = match short.take() {
                Some(path) => format!("{} is cut short, or a segment after it is missing", path.display()),
                None => format!("no segment holds them (the one before ends at {})", check.end_offset),
            };
            check.damage.push(DamagedOffsets { from: check.end_offset, to: file.base_offset, path: file.path.clone(), reason });
        }
        let handle = File::open(&file.path).map_err(|e| StorageError::io(&file.path, "open", e))?;
        let bytes = handle.metadata().map_err(|e| StorageError::io(&file.path, "stat", e))?.len();
        let header = if bytes >= SEGMENT_HEADER_BYTES as u64 {
            let map = segment::map_read_only(&handle, &file.path, bytes)?;
            format::decode_segment_header(&map).map(|header| (map, header))
        } else {
            Err(FormatError::Truncated { needed: SEGMENT_HEADER_BYTES as u64, available: bytes })
        };
        let (map, header) = match header {
            Ok(found) => found,
            Err(error) => {
                // The next segment's base says how many offsets this one held.
                if let Some(next) = files.get(index + 1) {
                    let reason = format!("segment header unreadable: {error}");
                    check.damage.push(DamagedOffsets { from: file.base_offset, to: next.base_offset, path: file.path.clone(), reason });
                    check.end_offset = next.base_offset;
                } else {
                    check.torn_tail = Some((file.path.clone(), 0, error));
                }
                continue;
            }
        };
        short = (bytes < header.segment_bytes).then(|| file.path.clone());
        let view = &map[..header.segment_bytes.min(bytes) as usize];
        let outcome = format::scan_segment(view, file.base_offset.max(check.end_offset), |_| {});
        check.records += outcome.records;
        check.damage.extend(damage_of(&outcome, &file.path));
        check.end_offset = outcome.end_offset;
        if let Some(reason) = outcome.torn_tail {
            if last {
                check.torn_tail = Some((file.path.clone(), outcome.end_position, reason));
            } else {
                let to = files[index + 1].base_offset;
                let reason = format!("bytes from {} unreadable ({reason})", outcome.end_position);
                check.damage.push(DamagedOffsets { from: outcome.end_offset, to, path: file.path.clone(), reason });
                check.end_offset = check.end_offset.max(to);
            }
        }
    }
    Ok(check)
}

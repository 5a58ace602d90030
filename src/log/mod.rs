//! Durable per-partition logs in preallocated, memory-mapped segment files.
//!
//! One [`PartitionLog`] per partition appends records (single writer, owned by one shard
//! thread); any number of [`LogReader`]s in other processes follow it read-only. The
//! layout, write ordering, recovery and durability promises are in `docs/STORAGE.md`.
//! `unsafe` lives only in `segment.rs` (the mappings and the commit word). New
//! segments are prepared ahead of time on one background thread (`spare.rs`).

mod datadir;
pub mod dedup;
pub mod format;
mod partition;
pub mod partitioner;
mod reader;
mod recovery;
#[allow(unsafe_code, reason = "memory-mapped segments and their atomic commit word")]
mod segment;
mod spare;
pub mod summary;
mod verify;

use std::io;
use std::path::PathBuf;

pub use datadir::{DataDir, check_topics, open_topics};
pub use format::{DecodedRecord, FormatError, decode_record};
pub use partition::PartitionLog;
pub use reader::{Gap, GapCause, LogReader, SeekHint, StartAt};
pub use verify::{PartitionCheck, verify_partition};

/// Base offset and size of each segment file of a partition directory, oldest first
/// (what retention would delete first comes first).
pub fn segment_sizes(dir: &std::path::Path) -> Result<Vec<(u64, u64)>, StorageError> {
    let (files, _) = segment::list(dir)?;
    Ok(files.into_iter().filter_map(|file| std::fs::metadata(&file.path).ok().map(|meta| (file.base_offset, meta.len()))).collect())
}

/// Process-wide counters of the segment preparer (see `spare.rs`), for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentCounters {
    /// Spare segments made ahead of their roll.
    pub spares_prepared: u64,
    /// Rolls that found no spare ready and created the segment on the shard thread.
    pub stalled_rolls: u64,
    /// Background directory fsyncs (after `os`-mode rolls) that failed.
    pub dir_sync_failures: u64,
}

pub fn segment_counters() -> SegmentCounters {
    use std::sync::atomic::Ordering::Relaxed;
    SegmentCounters {
        spares_prepared: spare::SPARES_PREPARED.load(Relaxed),
        stalled_rolls: spare::ROLL_STALLS.load(Relaxed),
        dir_sync_failures: spare::DIR_SYNC_FAILURES.load(Relaxed),
    }
}

// Whole segments of up to SEGMENT_BYTES_MAX are mapped at once.
const _: () = assert!(usize::BITS >= 64);

/// What goes wrong in the storage layer, with the file and operation an operator needs.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{operation} {path}: {source}")]
    Io { path: PathBuf, operation: &'static str, source: io::Error },
    #[error("no space left on the device holding {path}: free space, lower storage.retention_* or storage.segment_bytes")]
    DiskFull { path: PathBuf },
    #[error("a record of {bytes} bytes does not fit in an empty segment (at most {max}); raise storage.segment_bytes")]
    RecordTooLarge { bytes: u64, max: u64 },
    #[error("an event id of {bytes} bytes is longer than the format's {max}")]
    EventIdTooLong { bytes: usize, max: usize },
    #[error("a record needs an event id or event bytes; both are empty")]
    EmptyRecord,
    #[error(
        "the data dir holds {on_disk} partitions but storage.partitions is {configured}; keys would move to other \
         partitions and lose their order: keep {on_disk} or use a new data dir"
    )]
    PartitionCountMismatch { on_disk: u32, configured: u32 },
    #[error(
        "topic {topic:?}: its data holds {on_disk} partitions but its configuration says {configured}; keys would move to \
         other partitions and lose their order: keep {on_disk}"
    )]
    TopicPartitionCountMismatch { topic: String, on_disk: u32, configured: u32 },
    #[error("{path}: {reason}")]
    BadMeta { path: PathBuf, reason: String },
    #[error("the data dir {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("the data dir {path} cannot be written by this user (it or {blocking} refuses): fix its owner or mode")]
    NotWritable { path: PathBuf, blocking: PathBuf },
    #[error("partition count {partitions} is outside 1..={max}")]
    InvalidPartitionCount { partitions: u32, max: u32 },
    #[error("partition {partition} does not exist: the data dir holds {partitions}")]
    NoSuchPartition { partition: u32, partitions: u32 },
    #[error("segment_bytes {bytes} is outside {min}..={max}")]
    InvalidSegmentBytes { bytes: u64, min: u64, max: u64 },
    #[error("{path} is already open for writing by another process or log")]
    PartitionLocked { path: PathBuf },
    #[error("{path}: {reason}; move the file away to start without it")]
    Corrupt { path: PathBuf, reason: String },
    /// An fdatasync or directory fsync failed. The kernel may have dropped the dirty
    /// pages it covered and clears the error once reported, so a retry that succeeds
    /// proves nothing: whoever sees this stops acknowledging writes (fail-stop).
    #[error("{operation} {path} failed: {source}; data written before it may not be on disk")]
    SyncFailed { path: PathBuf, operation: &'static str, source: io::Error },
}

impl StorageError {
    /// Wraps a failed fdatasync/fsync (whatever its errno, ENOSPC included).
    pub(crate) fn sync(path: impl Into<PathBuf>, operation: &'static str, source: io::Error) -> StorageError {
        StorageError::SyncFailed { path: path.into(), operation, source }
    }

    /// Names `topic` in a partition-count mismatch (the only error whose key differs per topic).
    pub(crate) fn in_topic(self, topic: &str) -> StorageError {
        match self {
            StorageError::PartitionCountMismatch { on_disk, configured } if topic != crate::topics::DEFAULT_TOPIC => {
                StorageError::TopicPartitionCountMismatch { topic: topic.to_owned(), on_disk, configured }
            }
            other => other,
        }
    }

    /// True for [`StorageError::SyncFailed`]: the caller must go fail-stop.
    pub fn is_sync_failure(&self) -> bool {
        matches!(self, StorageError::SyncFailed { .. })
    }

    /// Wraps an I/O error; ENOSPC and EDQUOT become [`StorageError::DiskFull`].
    pub(crate) fn io(path: impl Into<PathBuf>, operation: &'static str, source: io::Error) -> StorageError {
        match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => StorageError::DiskFull { path: path.into() },
            _ => StorageError::Io { path: path.into(), operation, source },
        }
    }
}

/// How a partition's log is written and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Size of each new segment file, preallocated whole; SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX.
    pub segment_bytes: u64,
    /// Sealed segments whose newest record is older than this are deleted; 0 = no age limit.
    pub retention_ms: u64,
    /// Oldest sealed segments are deleted while the partition holds more; 0 = no size limit.
    pub retention_bytes: u64,
    /// Durability `fsync`: sync segment creation, recovery repairs and the old segment on roll.
    pub fsync: bool,
}

/// Offsets recovery or a reader expected but could not read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedOffsets {
    /// The missing offsets, `from..to`.
    pub from: u64,
    pub to: u64,
    /// The segment that should hold them.
    pub path: PathBuf,
    /// What was found instead, for the operator.
    pub reason: String,
}

impl DamagedOffsets {
    pub fn count(&self) -> u64 {
        self.to - self.from
    }
}

/// What recovery found when a [`PartitionLog`] was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Valid records retained across all segments.
    pub records: u64,
    /// Segment files found.
    pub segments: usize,
    /// Non-zero bytes after the last whole record of the last segment, now zeroed.
    pub truncated_bytes: u64,
    /// Sealed segments with damage in them or that end short of the next segment's
    /// base offset.
    pub corrupt_sealed_segments: usize,
    /// Every range of offsets that was handed out but cannot be read back, oldest first.
    /// Intact records around them are kept, the files are left as they are for the
    /// operator, and the offsets are never handed out again.
    pub damage: Vec<DamagedOffsets>,
}

impl RecoveryReport {
    /// Offsets lost to damage.
    pub fn damaged_offsets(&self) -> u64 {
        self.damage.iter().map(DamagedOffsets::count).sum()
    }
}

/// One record as stored. The slices borrow the segment mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: u64,
    pub ingest_ms: i64,
    pub event_id: &'a [u8],
    pub event: &'a [u8],
}

impl<'a> From<&DecodedRecord<'a>> for RecordView<'a> {
    fn from(record: &DecodedRecord<'a>) -> Self {
        RecordView { offset: record.offset, ingest_ms: record.ingest_ms, event_id: record.event_id, event: record.event }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub(crate) fn options() -> LogOptions {
        LogOptions { segment_bytes: 1 << 20, retention_ms: 0, retention_bytes: 0, fsync: false }
    }

    pub(crate) fn data_dir(partitions: u32) -> (tempfile::TempDir, DataDir) {
        let temp = tempfile::tempdir().unwrap();
        let dir = DataDir::open_or_init(temp.path(), partitions).unwrap();
        (temp, dir)
    }

    /// An event of `len` bytes whose content depends on `seed`.
    pub(crate) fn event(seed: u64, len: usize) -> Vec<u8> {
        (0..len).map(|i| (seed as usize).wrapping_mul(31).wrapping_add(i) as u8).collect()
    }
}

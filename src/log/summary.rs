//! The summary beside each segment (`<base offset>.sum`): what recovery would learn by
//! reading the segment, so that a restart reads a few hundred bytes per segment instead
//! of every record.
//!
//! A sealed segment's summary is written at its roll and never changes; the active
//! segment's is a checkpoint the writer rewrites about once a second and at a clean
//! close. Both are written on the segment preparer's thread (`spare::write_later`), so
//! a shard never waits for the file system's journal. A summary is trusted when its CRC holds and its facts were on disk when
//! it was written (`durable`: written after an fdatasync of the segment, or at a clean
//! close), or when it was written during this boot (a killed process leaves its writes
//! in the page cache). Anything else (a power loss, a torn write, a missing file) sends
//! recovery back to reading the segment, which is always correct: the log is the truth.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::StorageError;

const MAGIC: [u8; 8] = *b"SLUICSUM";
const VERSION: u32 = 1;
/// Damaged ranges a summary keeps (more are still reported by the recovery that found
/// them, and by `sluice check-log`).
pub const DAMAGE_KEPT_MAX: usize = 64;
const FIXED_BYTES: usize = 88;
const DAMAGE_BYTES: usize = 16;
const BYTES_MAX: usize = FIXED_BYTES + DAMAGE_KEPT_MAX * DAMAGE_BYTES + 4;

const FLAG_SEALED: u8 = 1;
const FLAG_DURABLE: u8 = 2;

/// What recovery needs to know about one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub partition: u32,
    pub base_offset: u64,
    /// Offset after the last valid record.
    pub end_offset: u64,
    pub records: u64,
    pub last_ingest_ms: i64,
    /// Where the next record goes (bytes used, header included).
    pub end_position: u64,
    pub segment_bytes: u64,
    pub boot_id: [u8; 16],
    /// No record will be added (false: a checkpoint of the active segment).
    pub sealed: bool,
    /// The segment's bytes up to `end_position` were on disk when this was written.
    pub durable: bool,
    /// Damaged offset ranges found inside the segment, at most `DAMAGE_KEPT_MAX`.
    pub damage: Vec<(u64, u64)>,
}

pub(crate) fn path_for(segment: &Path) -> PathBuf {
    segment.with_extension("sum")
}

impl Summary {
    /// True when recovery may use it instead of reading the segment.
    pub fn trusted(&self, boot_id: &[u8; 16]) -> bool {
        self.durable || (self.boot_id == *boot_id && *boot_id != [0; 16])
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BYTES_MAX);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.partition.to_le_bytes());
        for word in [self.base_offset, self.end_offset, self.records, self.last_ingest_ms as u64, self.end_position, self.segment_bytes] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&self.boot_id);
        let flags = if self.sealed { FLAG_SEALED } else { 0 } | if self.durable { FLAG_DURABLE } else { 0 };
        out.extend_from_slice(&[flags, 0, 0, 0]);
        let kept = &self.damage[..self.damage.len().min(DAMAGE_KEPT_MAX)];
        out.extend_from_slice(&(kept.len() as u32).to_le_bytes());
        for (from, to) in kept {
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&to.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a summary; `None` for anything torn, damaged or from another version.
    pub fn decode(bytes: &[u8]) -> Option<Summary> {
        let word = |at: usize| bytes.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let half = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
        if bytes.get(..8) != Some(&MAGIC[..]) || half(8)? != VERSION {
            return None;
        }
        let count = half(84)? as usize;
        let end = FIXED_BYTES + count.min(DAMAGE_KEPT_MAX) * DAMAGE_BYTES;
        if count > DAMAGE_KEPT_MAX || bytes.len() != end + 4 || half(end)? != crc32c::crc32c(&bytes[..end]) {
            return None;
        }
        let damage = (0..count).map(|i| Some((word(FIXED_BYTES + i * 16)?, word(FIXED_BYTES + i * 16 + 8)?))).collect::<Option<_>>()?;
        Some(Summary {
            partition: half(12)?,
            base_offset: word(16)?,
            end_offset: word(24)?,
            records: word(32)?,
            last_ingest_ms: word(40)? as i64,
            end_position: word(48)?,
            segment_bytes: word(56)?,
            boot_id: bytes[64..80].try_into().ok()?,
            sealed: bytes[80] & FLAG_SEALED != 0,
            durable: bytes[80] & FLAG_DURABLE != 0,
            damage,
        })
    }
}

/// Reads the summary beside `segment`; `None` when there is none or it does not decode.
pub(crate) fn read(segment: &Path) -> Option<Summary> {
    let mut bytes = Vec::with_capacity(BYTES_MAX);
    File::open(path_for(segment)).ok()?.take(BYTES_MAX as u64 + 1).read_to_end(&mut bytes).ok()?;
    Summary::decode(&bytes)
}

/// Writes the summary beside `segment` through a temporary name and a rename, so a
/// reader sees the old summary or the new one. Not synced: a summary lost to a power
/// loss only costs a read of the segment at the next start.
pub(crate) fn write(segment: &Path, summary: &Summary) -> Result<(), StorageError> {
    let path = path_for(segment);
    super::spare::replace_file(&path, &summary.encode()).map_err(|e| StorageError::io(&path, "write summary", e))
}

/// [`write`] on the segment preparer's thread, off the shard (`spare::write_later`).
pub(crate) fn write_later(segment: &Path, summary: &Summary) {
    super::spare::write_later(&path_for(segment), summary.encode());
}

/// Deletes `.sum` and `.sum.tmp` files in `dir` whose segment is gone.
pub(crate) fn remove_orphans(dir: &Path) -> Result<(), StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(StorageError::io(dir, "list", error)),
    };
    for entry in entries {
        let path = entry.map_err(|e| StorageError::io(dir, "list", e))?.path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        let orphan = match name.strip_suffix(".sum") {
            Some(stem) => !dir.join(format!("{stem}.seg")).exists(),
            None => name.ends_with(".sum.tmp"),
        };
        if orphan {
            fs::remove_file(&path).map_err(|e| StorageError::io(&path, "remove summary", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        Summary {
            partition: 3,
            base_offset: 100,
            end_offset: 180,
            records: 78,
            last_ingest_ms: 1_700_000_000_000,
            end_position: 65_536,
            segment_bytes: 1 << 20,
            boot_id: [9; 16],
            sealed: true,
            durable: false,
            damage: vec![(120, 121), (150, 151)],
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let summary = sample();
        let bytes = summary.encode();
        assert_eq!(Summary::decode(&bytes), Some(summary.clone()));
        for at in [0, 9, 20, 70, 80, 90, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert_eq!(Summary::decode(&damaged), None, "byte {at}");
        }
        assert_eq!(Summary::decode(&bytes[..bytes.len() - 1]), None);
        assert!(summary.trusted(&[9; 16]) && !summary.trusted(&[8; 16]));
        assert!(Summary { durable: true, ..summary }.trusted(&[8; 16]));
    }

    #[test]
    fn written_later_in_order_and_orphans_go() {
        let temp = tempfile::tempdir().unwrap();
        let segment = temp.path().join("00000000000000000100.seg");
        fs::write(&segment, b"").unwrap();
        let mut summary = Summary { sealed: false, damage: Vec::new(), ..sample() };
        write_later(&segment, &summary);
        summary.end_offset = 190;
        write_later(&segment, &summary);
        crate::log::spare::flush();
        assert_eq!(read(&segment), Some(summary));
        fs::write(temp.path().join("00000000000000000007.sum"), b"x").unwrap();
        fs::write(temp.path().join("00000000000000000100.sum.tmp"), b"x").unwrap();
        remove_orphans(temp.path()).unwrap();
        let mut left: Vec<_> = fs::read_dir(temp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["00000000000000000100.seg", "00000000000000000100.sum"]);
    }
}

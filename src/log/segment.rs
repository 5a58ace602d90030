//! One segment file: naming, crash-safe creation, preallocation, mapping, and the
//! atomic commit word. All of the storage layer's `unsafe` is here.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering, fence};

use memmap2::{Mmap, MmapMut};

use super::StorageError;
use super::format::{self, SegmentHeader};
use super::spare::Spare;
use crate::constants::{RECORD_ALIGN_BYTES, SEGMENT_HEADER_BYTES, ZERO_FILL_CHUNK_BYTES};
use crate::platform::sys;

const SEGMENT_SUFFIX: &str = ".seg";
pub(crate) const TMP_SUFFIX: &str = ".seg.tmp";
/// Width of the zero-padded base offset in file names: every u64 fits.
const NAME_DIGITS: usize = 20;

/// A segment file found in a partition directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    pub base_offset: u64,
    pub path: PathBuf,
}

/// Segment files of `dir` sorted by base offset, and leftover `*.seg.tmp` files
/// (segments whose creation never finished). A missing directory holds nothing.
pub(crate) fn list(dir: &Path) -> Result<(Vec<SegmentFile>, Vec<PathBuf>), StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), Vec::new()));
        }
        Err(error) => return Err(StorageError::io(dir, "list", error)),
    };
    let (mut segments, mut leftovers) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, "list", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            leftovers.push(entry.path());
        } else if let Some(base_offset) = parse_name(name) {
            segments.push(SegmentFile { base_offset, path: entry.path() });
        }
    }
    segments.sort_unstable_by_key(|segment| segment.base_offset);
    Ok((segments, leftovers))
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    let all_digits = digits.len() == NAME_DIGITS && digits.bytes().all(|b| b.is_ascii_digit());
    all_digits.then(|| digits.parse().ok()).flatten()
}

pub(crate) fn path_for(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:0NAME_DIGITS$}{SEGMENT_SUFFIX}"))
}

/// Reserves `[0, bytes)` of `file` so later writes through the mapping cannot hit a full
/// disk (a full disk under a mapping is SIGBUS). Filesystems without `fallocate` get
/// explicit zeros from the current end instead.
pub(crate) fn reserve(file: &File, path: &Path, bytes: u64) -> Result<(), StorageError> {
    libc::off_t::try_from(bytes).map_err(|_| invalid_length(path, bytes))?;
    let Err(error) = sys::fallocate(file, 0, 0, bytes) else { return Ok(()) };
    if error.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(StorageError::io(path, "fallocate", error));
    }
    let current = file.metadata().map_err(|e| StorageError::io(path, "stat", e))?.len();
    write_zeros(file, path, current, bytes)
}

/// Makes `[from, to)` read as zeros, without changing the file size.
pub(crate) fn zero_range(file: &File, path: &Path, from: u64, to: u64) -> Result<(), StorageError> {
    if from >= to {
        return Ok(());
    }
    libc::off_t::try_from(from).map_err(|_| invalid_length(path, from))?;
    libc::off_t::try_from(to - from).map_err(|_| invalid_length(path, to))?;
    let Err(error) = sys::fallocate(file, libc::FALLOC_FL_ZERO_RANGE, from, to - from) else { return Ok(()) };
    match error.raw_os_error() {
        // tmpfs and some network filesystems cannot zero a range; write the zeros.
        Some(libc::EOPNOTSUPP | libc::EINVAL) => write_zeros(file, path, from, to),
        _ => Err(StorageError::io(path, "fallocate zero range", error)),
    }
}

fn write_zeros(file: &File, path: &Path, from: u64, to: u64) -> Result<(), StorageError> {
    static ZEROS: [u8; ZERO_FILL_CHUNK_BYTES] = [0; ZERO_FILL_CHUNK_BYTES];
    let mut at = from;
    // Bounded: `at` grows by up to one chunk per pass until it reaches `to`.
    while at < to {
        let chunk = (to - at).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&ZEROS[..chunk], at).map_err(|e| StorageError::io(path, "write zeros", e))?;
        at += chunk as u64;
    }
    Ok(())
}

fn invalid_length(path: &Path, bytes: u64) -> StorageError {
    let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{bytes} bytes"));
    StorageError::Io { path: path.to_owned(), operation: "size", source }
}

/// Creates `tmp`, lets `prepare` fill it (reserve, header), then renames it to `path`:
/// a crash never leaves a half-made file under its name. On failure the temporary file
/// is removed, giving any reserved space back.
pub(crate) fn create_then_rename(
    tmp: &Path,
    path: &Path,
    prepare: impl FnOnce(&File) -> Result<(), StorageError>,
) -> Result<File, StorageError> {
    let file =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(tmp).map_err(|e| StorageError::io(tmp, "create", e))?;
    if let Err(error) = prepare(&file) {
        let _ = fs::remove_file(tmp);
        return Err(error);
    }
    fs::rename(tmp, path).map_err(|e| StorageError::io(path, "rename", e))?;
    Ok(file)
}

/// Maps the first `bytes` bytes of `file` read-only.
pub(crate) fn map_read_only(file: &File, path: &Path, bytes: u64) -> Result<Mmap, StorageError> {
    let len = usize::try_from(bytes).map_err(|_| invalid_length(path, bytes))?;
    // SAFETY: the file is at least `bytes` long (callers take the length from fstat or
    // reserve it first) and sluice never shrinks a segment file, so no access through
    // the map can fall past the end. The single writer only ever changes bytes that no
    // reader has accepted yet: unpublished record bytes, published only by the commit
    // word, which readers load atomically (`load_commit_word`) before touching the rest.
    unsafe { memmap2::MmapOptions::new().len(len).map(file) }.map_err(|e| StorageError::io(path, "mmap", e))
}

/// Maps the first `bytes` bytes of `file` for the partition's single writer.
pub(crate) fn map_writable(file: &File, path: &Path, bytes: u64) -> Result<MmapMut, StorageError> {
    let len = usize::try_from(bytes).map_err(|_| invalid_length(path, bytes))?;
    // SAFETY: the file was reserved to at least `bytes` and is never shrunk; the
    // partition directory's flock (see `PartitionLog::open`) makes this the only
    // writable mapping, and readers elsewhere only read it.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file) }.map_err(|e| StorageError::io(path, "mmap", e))?;
    // No read-around on faults: the writer touches each page once, in order, and a
    // fault in a fresh segment would otherwise zero a whole readahead window (8 MiB
    // with this disk's read_ahead_kb) on the request that caused it. Advisory only.
    let _ = map.advise(memmap2::Advice::Random);
    Ok(map)
}

/// Checks that the commit word at `base + position` lies inside `len` bytes and is
/// aligned; a violation is a bug in the caller, not a property of the file.
fn check_commit_word(base: *const u8, len: usize, position: usize) {
    let in_bounds = position.checked_add(4).is_some_and(|end| end <= len);
    let aligned = (base as usize).wrapping_add(position).is_multiple_of(RECORD_ALIGN_BYTES);
    assert!(in_bounds && aligned, "commit word at {position} is out of bounds or misaligned");
}

/// Acquire-loads the commit word (the record's `body_len`) at `position`; 0 means no
/// record is published there yet. Bytes of the record may be read once this is non-zero.
pub(crate) fn load_commit_word(bytes: &[u8], position: usize) -> u32 {
    check_commit_word(bytes.as_ptr(), bytes.len(), position);
    let word = bytes.as_ptr().wrapping_add(position).cast::<u32>().cast_mut();
    // SAFETY: `check_commit_word` checked that the 4 bytes are in bounds and aligned; they
    // live in a mapping that outlives `bytes`. The only writes to them are the writer's
    // atomic stores (or zeroing by recovery before any record is published). A relaxed
    // 4-byte atomic load is permitted on read-only mapped memory; the fence below gives
    // it acquire semantics, pairing with the writer's release store.
    let value = unsafe { AtomicU32::from_ptr(word) }.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    u32::from_le(value)
}

/// Publishes a fully written record by release-storing its commit word.
fn store_commit_word(map: &mut MmapMut, position: usize, body_len: u32) {
    check_commit_word(map.as_ptr(), map.len(), position);
    let word = map.as_mut_ptr().wrapping_add(position).cast::<u32>();
    // SAFETY: bounds and alignment checked above; the mapping is writable and we hold it
    // mutably, so nothing in this process reads or writes these bytes concurrently.
    // Readers (other mappings of the same page) only load them atomically.
    unsafe { AtomicU32::from_ptr(word) }.store(body_len.to_le(), Ordering::Release);
}

/// The segment the partition's writer appends to.
pub(crate) struct WritableSegment {
    file: File,
    map: MmapMut,
    /// Where the next record goes: always a multiple of RECORD_ALIGN_BYTES.
    position: usize,
    path: PathBuf,
}

impl WritableSegment {
    /// Creates the segment for `header` in `dir`: `.tmp` name, reserve, header, (sync),
    /// rename, directory sync, so a crash never leaves a half-made segment under its name.
    pub(crate) fn create(dir: &Path, dir_file: &File, header: &SegmentHeader, fsync: bool) -> Result<WritableSegment, StorageError> {
        let path = path_for(dir, header.base_offset);
        let tmp = dir.join(format!("{:0NAME_DIGITS$}{TMP_SUFFIX}", header.base_offset));
        let file = create_then_rename(&tmp, &path, |file| prepare(file, &tmp, header, fsync))?;
        dir_file.sync_all().map_err(|e| StorageError::sync(dir, "fsync directory", e))?;
        let map = map_writable(&file, &path, header.segment_bytes)?;
        Ok(WritableSegment { file, map, position: SEGMENT_HEADER_BYTES, path })
    }

    /// Turns a prepared spare into the segment for `header`: the header goes in through
    /// the mapping, then the spare is renamed to its final name. The rename is durable
    /// only after the caller syncs the directory; until then a crash can leave the file
    /// under either name, and recovery handles both (a leftover is deleted, a torn
    /// header on the last segment is rebuilt from the file name).
    pub(crate) fn from_spare(dir: &Path, spare: Spare, header: &SegmentHeader) -> Result<WritableSegment, StorageError> {
        let Spare { file, mut map, tmp_path } = spare;
        if map.len() as u64 != header.segment_bytes {
            let _ = fs::remove_file(&tmp_path);
            return Err(invalid_length(&tmp_path, map.len() as u64));
        }
        map[..SEGMENT_HEADER_BYTES].copy_from_slice(&format::encode_segment_header(header));
        let path = path_for(dir, header.base_offset);
        fs::rename(&tmp_path, &path).map_err(|e| StorageError::io(&path, "rename", e))?;
        Ok(WritableSegment { file, map, position: SEGMENT_HEADER_BYTES, path })
    }

    /// Wraps a recovered segment whose valid records end at `position`.
    pub(crate) fn from_recovered(file: File, map: MmapMut, position: usize, path: PathBuf) -> WritableSegment {
        WritableSegment { file, map, position, path }
    }

    /// The segment's size (its preallocated length).
    pub(crate) fn capacity(&self) -> u64 {
        self.map.len() as u64
    }

    /// Bytes left for records.
    pub(crate) fn room(&self) -> u64 {
        (self.map.len() - self.position) as u64
    }

    /// Writes one record and publishes it. The caller checked `room()`.
    pub(crate) fn append(&mut self, offset: u64, ingest_ms: i64, event_id: &[u8], parts: &[&[u8]]) -> Result<(), format::FormatError> {
        let position = self.position;
        let body_len = format::write_record_uncommitted(&mut self.map[position..], offset, ingest_ms, event_id, parts)?;
        store_commit_word(&mut self.map, position, body_len);
        self.position += format::stored_len(u64::from(body_len)) as usize;
        debug_assert!(self.position.is_multiple_of(RECORD_ALIGN_BYTES));
        Ok(())
    }

    /// Where the next record goes.
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// The header and the records written so far (no unwritten space).
    pub(crate) fn written(&self) -> &[u8] {
        &self.map[..self.position]
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// fdatasync: the data written through the mapping reaches the disk.
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(|e| StorageError::sync(&self.path, "fdatasync", e))
    }

    /// Unmaps the segment but keeps its descriptor open.
    pub(crate) fn into_file(self) -> File {
        self.file
    }
}

fn prepare(file: &File, tmp: &Path, header: &SegmentHeader, fsync: bool) -> Result<(), StorageError> {
    reserve(file, tmp, header.segment_bytes)?;
    file.write_all_at(&format::encode_segment_header(header), 0).map_err(|e| StorageError::io(tmp, "write header", e))?;
    if fsync {
        file.sync_data().map_err(|e| StorageError::sync(tmp, "fdatasync", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_twenty_digits_and_parse_back() {
        let path = path_for(Path::new("/d"), 42);
        assert_eq!(path, Path::new("/d/00000000000000000042.seg"));
        assert_eq!(parse_name("00000000000000000042.seg"), Some(42));
        assert_eq!(parse_name("18446744073709551615.seg"), Some(u64::MAX));
        for bad in ["42.seg", "0000000000000000004x.seg", "00000000000000000042.seg.tmp", "99999999999999999999.seg"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn create_reserves_the_whole_file_and_lists_it() {
        let temp = tempfile::tempdir().unwrap();
        let dir_file = File::open(temp.path()).unwrap();
        let header = SegmentHeader { partition: 1, base_offset: 7, created_ms: 5, segment_bytes: 1 << 20 };
        let mut segment = WritableSegment::create(temp.path(), &dir_file, &header, true).unwrap();
        segment.append(7, 9, b"id", &[b"{}"]).unwrap();
        assert_eq!(segment.room(), (1 << 20) - 64 - 40);
        assert_eq!(load_commit_word(segment.written(), 64), 4);
        assert_eq!(fs::metadata(segment.path()).unwrap().len(), 1 << 20);
        fs::write(temp.path().join("00000000000000000009.seg.tmp"), b"").unwrap();
        let (segments, leftovers) = list(temp.path()).unwrap();
        assert_eq!(segments, vec![SegmentFile { base_offset: 7, path: path_for(temp.path(), 7) }]);
        assert_eq!(leftovers.len(), 1);
        let map = map_read_only(&File::open(segment.path()).unwrap(), segment.path(), 1 << 20).unwrap();
        assert_eq!(format::decode_segment_header(&map), Ok(header));
    }

    #[test]
    fn zero_range_clears_bytes() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("f");
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.write_all_at(&[0xAB; 200_000], 0).unwrap();
        zero_range(&file, &path, 100, 150_000).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 200_000);
        assert!(bytes[..100].iter().all(|&b| b == 0xAB) && bytes[150_000..].iter().all(|&b| b == 0xAB));
        assert!(bytes[100..150_000].iter().all(|&b| b == 0));
        // The fallback used where fallocate cannot zero a range.
        write_zeros(&file, &path, 150_000, 150_100).unwrap();
        assert!(fs::read(&path).unwrap()[..150_100].iter().skip(100).all(|&b| b == 0));
    }
}

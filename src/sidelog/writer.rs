//! The one side-log writer: each shard appends framed records to its own files
//! (`shard-<k>-<n><suffix>` in the side log's directory), buffered for the reactor loop
//! and written with one `write` before the loop's answers are sent, so what a side log
//! promises is in the page cache before the client can see the answer. It is not
//! fsynced: a side log survives a kill -9 like `durability = "os"` data.
//!
//! What differs between side logs is configuration, not code: how files rotate
//! ([`Rotation`]), and an optional byte bound shared by every shard ([`Bound`]).
//! Readers ([`read_records`]) stop at the first frame that is torn or damaged.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::frame::FrameError;

/// When a writer starts a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// One file per period of this many ms, numbered by the period's index, so whole
    /// files expire together ([`SideLogWriter::prune`]).
    Period { period_ms: i64 },
    /// One file per process, numbered by the time it was opened (Unix ms); a new one
    /// only after a failed write.
    PerProcess,
}

/// A byte bound shared by every shard's writer of one side log: past it, records are
/// refused (counted by the caller), never written, and nothing old is deleted.
#[derive(Debug, Clone, Copy)]
pub struct Bound<'a> {
    /// Bytes in the side log's files (at start: what was found).
    pub bytes: &'a AtomicU64,
    pub max: u64,
}

impl Bound<'_> {
    /// Takes `bytes` of the bound; false (and nothing taken) past it.
    fn take(self, bytes: u64) -> bool {
        if self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > self.max {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Why a record was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its encoder refused it (a part over its length field, a payload over the limit).
    Encoding(FrameError),
    /// The shared byte bound is reached.
    Full,
}

/// One shard's writer of one side log.
pub struct SideLogWriter {
    dir: PathBuf,
    /// What the side log is called in error messages ("quarantine").
    name: &'static str,
    suffix: &'static str,
    shard: usize,
    rotation: Rotation,
    /// The open file and its number.
    file: Option<(i64, File)>,
    buffer: Vec<u8>,
    /// The file number whose failure was reported (reported once per number).
    failed: Option<i64>,
}

impl SideLogWriter {
    /// Bytes its buffer holds allocated (for the memory budget).
    pub fn buffer_bytes(&self) -> u64 {
        self.buffer.capacity() as u64
    }

    pub fn new(dir: &Path, name: &'static str, suffix: &'static str, shard: usize, rotation: Rotation) -> SideLogWriter {
        let rotation = match rotation {
            Rotation::Period { period_ms } => Rotation::Period { period_ms: period_ms.max(1) },
            other => other,
        };
        SideLogWriter { dir: dir.to_owned(), name, suffix, shard, rotation, file: None, buffer: Vec::new(), failed: None }
    }

    /// Encodes one record into this loop's buffer, within `bound` if given. On `Err`
    /// nothing is kept.
    pub fn append(&mut self, bound: Option<Bound<'_>>, encode: impl FnOnce(&mut Vec<u8>) -> Result<(), FrameError>) -> Result<(), Refused> {
        let before = self.buffer.len();
        encode(&mut self.buffer).map_err(Refused::Encoding)?;
        let added = (self.buffer.len() - before) as u64;
        if bound.is_some_and(|bound| !bound.take(added)) {
            self.buffer.truncate(before);
            return Err(Refused::Full);
        }
        Ok(())
    }

    /// Writes what was appended this loop with one `write`. A failure drops the loop's
    /// records and is returned for the caller to count; it is logged once per period
    /// (once in all with per-process files, whose number changes with every retry), and
    /// the next flush opens a new file.
    pub fn flush(&mut self, now_ms: i64) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let number = match self.rotation {
            Rotation::Period { period_ms } => now_ms.div_euclid(period_ms),
            Rotation::PerProcess => self.file.as_ref().map_or(now_ms, |(number, _)| *number),
        };
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.file_for(number).and_then(|file| file.write_all(&buffer));
        self.buffer = buffer;
        self.buffer.clear();
        if let Err(error) = &result {
            self.file = None;
            let reported = match self.rotation {
                Rotation::Period { .. } => self.failed == Some(number),
                Rotation::PerProcess => self.failed.is_some(),
            };
            if !reported {
                self.failed = Some(number);
                tracing::error!(shard = self.shard, dir = %self.dir.display(), %error, "cannot write the {}", self.name);
            }
        }
        result
    }

    fn file_for(&mut self, number: i64) -> io::Result<&mut File> {
        if self.file.as_ref().is_none_or(|(open, _)| *open != number) {
            fs::create_dir_all(&self.dir)?;
            let path = self.dir.join(file_name(self.shard, number, self.suffix));
            self.file = Some((number, OpenOptions::new().create(true).append(true).open(path)?));
        }
        match self.file.as_mut() {
            Some((_, file)) => Ok(file),
            None => Err(io::Error::other("side-log file not open")),
        }
    }

    /// Deletes this shard's files of periods that ended more than `keep_periods` ago
    /// (periodic rotation only). Returns the bytes of the files deleted, for a side log
    /// with a [`Bound`] to give back.
    pub fn prune(&mut self, now_ms: i64, keep_periods: i64) -> u64 {
        let Rotation::Period { period_ms } = self.rotation else { return 0 };
        let current = now_ms.div_euclid(period_ms);
        let mut freed = 0;
        for file in files(&self.dir, self.suffix).unwrap_or_default() {
            if file.shard == self.shard && file.number + keep_periods < current {
                let bytes = fs::metadata(&file.path).map_or(0, |meta| meta.len());
                if fs::remove_file(&file.path).is_ok() {
                    freed += bytes;
                }
            }
        }
        freed
    }
}

/// `shard-<shard>-<number><suffix>`.
pub fn file_name(shard: usize, number: i64, suffix: &str) -> String {
    format!("shard-{shard}-{number}{suffix}")
}

/// `(shard, number)` of a side-log file name with `suffix`.
pub fn parse_file_name(name: &str, suffix: &str) -> Option<(usize, i64)> {
    let rest = name.strip_prefix("shard-")?.strip_suffix(suffix)?;
    let (shard, number) = rest.split_once('-')?;
    Some((shard.parse().ok()?, number.parse().ok()?))
}

/// One file of a side log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideLogFile {
    pub shard: usize,
    pub number: i64,
    pub path: PathBuf,
}

/// The side-log files in `dir` with `suffix`, oldest number first (a missing directory
/// holds none). Other files are ignored.
pub fn files(dir: &Path, suffix: &str) -> io::Result<Vec<SideLogFile>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some((shard, number)) = entry.file_name().to_str().and_then(|name| parse_file_name(name, suffix)) {
            found.push(SideLogFile { shard, number, path: entry.path() });
        }
    }
    found.sort_by(|a, b| (a.number, a.shard, &a.path).cmp(&(b.number, b.shard, &b.path)));
    Ok(found)
}

/// Calls `each(offset, record)` for every whole record at the start of `bytes`, in
/// order, and stops at the first one `decode` refuses: the torn or damaged tail of a
/// file that was being appended to. Returns the bytes read and whether a tail was left.
pub fn read_records<'a, R>(
    bytes: &'a [u8],
    decode: impl Fn(&'a [u8]) -> Result<(R, usize), FrameError>,
    mut each: impl FnMut(u64, R),
) -> (usize, bool) {
    let mut at = 0;
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Ok((record, used)) => {
                each(at as u64, record);
                at += used;
            }
            Err(_) => return (at, true),
        }
    }
    (at, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidelog::frame;

    fn framed(payload: &[u8]) -> impl FnOnce(&mut Vec<u8>) -> Result<(), FrameError> + '_ {
        move |out| {
            let start = frame::begin(out);
            out.extend_from_slice(payload);
            frame::finish(out, start);
            Ok(())
        }
    }

    #[test]
    fn periods_rotate_files_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SideLogWriter::new(dir.path(), "test log", ".t", 3, Rotation::Period { period_ms: 1000 });
        for now in [0, 1_500, 5_000] {
            writer.append(None, framed(b"abc")).unwrap();
            writer.flush(now).unwrap();
        }
        let numbers: Vec<i64> = files(dir.path(), ".t").unwrap().iter().map(|file| file.number).collect();
        assert_eq!(numbers, [0, 1, 5]);
        assert_eq!(writer.prune(5_000, 2), 2 * 11, "two files of one 11-byte record");
        let left: Vec<i64> = files(dir.path(), ".t").unwrap().iter().map(|file| file.number).collect();
        assert_eq!(left, [5]);
    }

    #[test]
    fn a_per_process_file_keeps_its_number_and_the_budget_refuses_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = Vec::new();
        framed(b"record")(&mut one).unwrap();
        let bytes = AtomicU64::new(0);
        let bound = Some(Bound { bytes: &bytes, max: one.len() as u64 * 2 });
        let mut writer = SideLogWriter::new(dir.path(), "test log", ".q", 0, Rotation::PerProcess);
        assert_eq!(writer.append(bound, framed(b"record")), Ok(()));
        writer.flush(7).unwrap();
        assert_eq!(writer.append(bound, framed(b"record")), Ok(()));
        assert_eq!(writer.append(bound, framed(b"record")), Err(Refused::Full));
        assert_eq!(writer.append(bound, |_| Err(FrameError::TooLarge)), Err(Refused::Encoding(FrameError::TooLarge)));
        writer.flush(9).unwrap();
        let found = files(dir.path(), ".q").unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].number, 7);
        let file = fs::read(&found[0].path).unwrap();
        assert_eq!(file.len() as u64, bound.map_or(0, |bound| bound.bytes.load(Ordering::Relaxed)));
        let mut seen = Vec::new();
        let (read, torn) = read_records(&file, |b| frame::payload(b, 1, 64), |offset, payload| seen.push((offset, payload.to_vec())));
        assert_eq!((read, torn, seen.len()), (file.len(), false, 2));
        assert_eq!(read_records(&file[..file.len() - 1], |b| frame::payload(b, 1, 64), |_, _| {}), (one.len(), true));
    }

    #[test]
    fn a_failed_write_is_returned_and_the_next_flush_tries_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("not-a-dir");
        fs::write(&blocked, b"").unwrap();
        let mut writer = SideLogWriter::new(&blocked, "test log", ".t", 0, Rotation::PerProcess);
        writer.append(None, framed(b"x")).unwrap();
        assert!(writer.flush(1).is_err());
        assert!(writer.flush(2).is_ok(), "nothing left to write");
        assert_eq!(parse_file_name("shard-12-345.t", ".t"), Some((12, 345)));
        assert_eq!(parse_file_name("shard-x-1.t", ".t"), None);
    }
}

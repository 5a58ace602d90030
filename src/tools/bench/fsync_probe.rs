//! The disk's own fdatasync latency, measured before the load: 4 KiB appends to a
//! temporary file in the directory under test, each followed by one fdatasync, for a
//! fixed time. The `fsync` durability target compares the server's p99 with 1.5 × this
//! p99, so both must come from the same disk.

#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::constants::BENCH_FSYNC_PROBE_WRITE_BYTES;
use crate::tools::bench::stats::latency_histogram;

/// What the probe measured; `latency` is in nanoseconds per fdatasync.
#[derive(Debug, Clone)]
pub struct FsyncProbe {
    pub dir: PathBuf,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

/// The probe's file, removed when dropped (also on error).
struct TempFile {
    path: PathBuf,
    file: File,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Appends and syncs in `dir` for `duration` (at least one round). The file is deleted
/// afterwards whatever happens.
pub fn run(dir: &Path, duration: Duration) -> io::Result<FsyncProbe> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let path = dir.join(format!(".sluice-bench-fsync-{}-{nanos}.tmp", std::process::id()));
    let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
    let mut temp = TempFile { path, file };
    let block = [0x5au8; BENCH_FSYNC_PROBE_WRITE_BYTES];
    let mut latency = latency_histogram();
    let started = Instant::now();
    loop {
        temp.file.write_all(&block)?;
        let before = Instant::now();
        temp.file.sync_data()?;
        latency.saturating_record(before.elapsed().as_nanos().max(1) as u64);
        if started.elapsed() >= duration {
            break;
        }
    }
    Ok(FsyncProbe { dir: dir.to_owned(), elapsed: started.elapsed(), latency })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_measures_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let probe = run(dir.path(), Duration::from_millis(50)).expect("probe");
        assert!(!probe.latency.is_empty());
        assert!(probe.elapsed >= Duration::from_millis(50));
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0, "the probe file is deleted");
    }

    #[test]
    fn probe_in_a_missing_directory_fails() {
        assert!(run(Path::new("/nonexistent/sluice-bench"), Duration::from_millis(10)).is_err());
    }
}

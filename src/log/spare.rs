//! Segments made ahead of time, off the shard threads.
//!
//! Creating a segment costs a file create, an `fallocate` of the whole segment and, for
//! the rename to be durable, an fsync of the partition directory: milliseconds on a
//! virtual disk, and all of it used to land on the request that happened to fill the
//! previous segment (measured: p99 of 40 ms under load, see docs/PERFORMANCE.md). Now
//! one process-wide thread prepares a *spare* for every partition log: a preallocated,
//! mapped file under a temporary `*.seg.tmp` name. A roll only writes the header into
//! the spare, renames it and asks for the next spare; the directory fsync that makes
//! the rename durable runs on the same thread (durability `fsync` still syncs it
//! before acknowledging, see `PartitionLog::roll`).
//!
//! A spare that is not ready when its log rolls is not waited for: the log creates the
//! segment itself, as before, and counts the stall. A spare nobody took (a crash, or a
//! log closed at shutdown) is a `*.seg.tmp` leftover, which recovery deletes. The dedup
//! index takes its next table from the same preparer.
//!
//! The thread also writes the small files a shard must not block on (segment summaries
//! and checkpoints): creating or renaming a file needs an ext4 journal handle, and
//! while the journal commits, that waits for milliseconds. `flush` waits until every
//! write queued before it is done (a clean close, before its own final writes).

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use memmap2::MmapMut;

use super::StorageError;
use super::segment;
use crate::constants::SPARE_PREFAULT_BYTES;

/// A preallocated, mapped segment file that has no name in the log yet.
pub(crate) struct Spare {
    pub file: File,
    pub map: MmapMut,
    pub tmp_path: PathBuf,
}

enum Job {
    Prepare {
        dir: PathBuf,
        bytes: u64,
        reply: Sender<Result<Spare, StorageError>>,
    },
    SyncDir {
        dir: PathBuf,
    },
    /// Replace `path` with `bytes` through `<path>.tmp` and a rename (not synced).
    Write {
        path: PathBuf,
        bytes: Vec<u8>,
    },
    Barrier {
        reply: Sender<()>,
    },
}

/// Small files that could not be written in the background (logged by the thread).
pub(crate) static WRITE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Counters the metrics endpoint reports.
pub(crate) static SPARES_PREPARED: AtomicU64 = AtomicU64::new(0);
pub(crate) static ROLL_STALLS: AtomicU64 = AtomicU64::new(0);
pub(crate) static DIR_SYNC_FAILURES: AtomicU64 = AtomicU64::new(0);

static NEXT_SPARE: AtomicU64 = AtomicU64::new(0);

/// The preparer thread's job queue, started on first use; `None` when the thread
/// could not be started (every roll then creates its segment synchronously).
fn jobs() -> Option<&'static Sender<Job>> {
    static JOBS: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    JOBS.get_or_init(|| {
        // Unbounded on purpose: at most one Prepare per partition log is outstanding
        // and one SyncDir per roll, so the queue is bounded by the partition count.
        let (sender, receiver) = crossbeam_channel::unbounded();
        std::thread::Builder::new().name("sluice-segments".into()).spawn(move || run(&receiver)).ok().map(|_| sender)
    })
    .as_ref()
}

fn run(jobs: &Receiver<Job>) {
    // Ends when every sender is gone, which for a static sender is process exit.
    for job in jobs {
        match job {
            Job::Prepare { dir, bytes, reply } => {
                let prepared = prepare(&dir, bytes);
                if prepared.is_ok() {
                    SPARES_PREPARED.fetch_add(1, Ordering::Relaxed);
                }
                // Nobody waits for it any more (the log closed, or dropped a spare of the
                // wrong size): give the disk back now rather than at the next recovery.
                if let Err(unwanted) = reply.send(prepared)
                    && let Ok(spare) = unwanted.into_inner()
                {
                    let _ = fs::remove_file(&spare.tmp_path);
                }
            }
            Job::SyncDir { dir } => {
                if File::open(&dir).and_then(|file| file.sync_all()).is_err() {
                    DIR_SYNC_FAILURES.fetch_add(1, Ordering::Relaxed);
                }
            }
            Job::Write { path, bytes } => {
                if let Err(error) = replace_file(&path, &bytes) {
                    WRITE_FAILURES.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %path.display(), %error, "cannot write a summary; the next start reads the segment instead");
                }
            }
            Job::Barrier { reply } => {
                let _ = reply.send(());
            }
        }
    }
}

fn prepare(dir: &Path, bytes: u64) -> Result<Spare, StorageError> {
    let number = NEXT_SPARE.fetch_add(1, Ordering::Relaxed);
    let tmp_path = dir.join(format!("spare-{}-{number}{}", std::process::id(), segment::TMP_SUFFIX));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .map_err(|e| StorageError::io(&tmp_path, "create spare segment", e))?;
    let reserved = segment::reserve(&file, &tmp_path, bytes);
    let map = reserved.and_then(|()| segment::map_writable(&file, &tmp_path, bytes));
    match map {
        Ok(map) => {
            // Fault in the first pages here rather than on the roll's first requests.
            // Advisory: kernels before 5.14 do not know MADV_POPULATE_WRITE.
            let _ = map.advise_range(memmap2::Advice::PopulateWrite, 0, SPARE_PREFAULT_BYTES.min(map.len()));
            Ok(Spare { file, map, tmp_path })
        }
        Err(error) => {
            let _ = fs::remove_file(&tmp_path);
            Err(error)
        }
    }
}

/// Replaces `path` with `bytes` through `<path>.tmp` and a rename, so a reader sees the
/// old content or the new, never a mix. Not synced.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

/// Writes `bytes` to `path` (through a temporary name) on the preparer thread, in the
/// order asked; here, synchronously, without one.
pub(crate) fn write_later(path: &Path, bytes: Vec<u8>) {
    let sent = jobs().is_some_and(|jobs| jobs.send(Job::Write { path: path.to_owned(), bytes: bytes.clone() }).is_ok());
    if !sent && replace_file(path, &bytes).is_err() {
        WRITE_FAILURES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits until every write queued before this call is done.
pub(crate) fn flush() {
    let Some(jobs) = jobs() else { return };
    let (reply, done) = crossbeam_channel::bounded(1);
    if jobs.send(Job::Barrier { reply }).is_ok() {
        let _ = done.recv();
    }
}

/// A spare on its way for one partition log.
pub(crate) struct Pending {
    reply: Receiver<Result<Spare, StorageError>>,
    /// The size asked for.
    pub(crate) bytes: u64,
}

/// Asks the preparer for a spare of `bytes` in `dir`; `None` without a preparer.
pub(crate) fn request(dir: &Path, bytes: u64) -> Option<Pending> {
    let jobs = jobs()?;
    let (reply, receiver) = crossbeam_channel::bounded(1);
    jobs.send(Job::Prepare { dir: dir.to_owned(), bytes, reply }).ok()?;
    Some(Pending { reply: receiver, bytes })
}

/// Syncs `dir` on the preparer thread (or here, without one).
pub(crate) fn sync_dir_later(dir: &Path) {
    let sent = jobs().is_some_and(|jobs| jobs.send(Job::SyncDir { dir: dir.to_owned() }).is_ok());
    if !sent && File::open(dir).and_then(|file| file.sync_all()).is_err() {
        DIR_SYNC_FAILURES.fetch_add(1, Ordering::Relaxed);
    }
}

/// What became of a pending spare when the log needed it.
pub(crate) enum Taken {
    Ready(Spare),
    /// Still being prepared: keep waiting for it, but do not block on it now.
    NotYet(Pending),
    /// Preparing failed (disk full, ...) or the preparer is gone: create synchronously,
    /// where the error, if it persists, reaches the caller.
    Failed,
}

impl Pending {
    pub(crate) fn take(self) -> Taken {
        match self.reply.try_recv() {
            Ok(Ok(spare)) => Taken::Ready(spare),
            Ok(Err(_)) | Err(TryRecvError::Disconnected) => Taken::Failed,
            Err(TryRecvError::Empty) => Taken::NotYet(self),
        }
    }

    /// Blocks until the spare is ready (tests; never on a shard thread).
    #[cfg(test)]
    pub(crate) fn wait(self) -> Option<Spare> {
        self.reply.recv().ok().and_then(Result::ok)
    }

    /// A pending spare of `bytes` that never arrives, and the sender that keeps it
    /// pending (tests).
    #[cfg(test)]
    pub(crate) fn never(bytes: u64) -> (Pending, Sender<Result<Spare, StorageError>>) {
        let (reply, receiver) = crossbeam_channel::bounded(1);
        (Pending { reply: receiver, bytes }, reply)
    }

    /// A pending spare that is already there (tests).
    #[cfg(test)]
    pub(crate) fn ready(spare: Spare) -> Pending {
        let (reply, receiver) = crossbeam_channel::bounded(1);
        let bytes = spare.map.len() as u64;
        let _ = reply.send(Ok(spare));
        Pending { reply: receiver, bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_reserved_mapped_and_listed_as_a_leftover() {
        let temp = tempfile::tempdir().unwrap();
        let spare = request(temp.path(), 1 << 20).unwrap().wait().unwrap();
        assert_eq!(spare.map.len(), 1 << 20);
        assert_eq!(fs::metadata(&spare.tmp_path).unwrap().len(), 1 << 20);
        let (segments, leftovers) = segment::list(temp.path()).unwrap();
        assert_eq!((segments.len(), leftovers), (0, vec![spare.tmp_path.clone()]));
    }

    #[test]
    fn a_failed_spare_reports_failure_and_leaves_nothing() {
        let temp = tempfile::tempdir().unwrap();
        let missing = temp.path().join("no-such-dir");
        let pending = request(&missing, 1 << 20).unwrap();
        // Poll as a roll would until the job has finished (bounded: 10 s).
        let mut pending = Some(pending);
        for _ in 0..10_000 {
            match pending.take().unwrap().take() {
                Taken::Failed => break,
                Taken::Ready(_) => panic!("a spare in a missing directory"),
                Taken::NotYet(again) => {
                    pending = Some(again);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
        assert!(pending.is_none(), "the preparer never answered");
        assert!(!missing.exists());
    }
}

//! Partition log append, without and with group commit.
//!
//! Measures `sluice::log::PartitionLog::append` of a 330-byte SPEC-shaped event body
//! with the gateway's `ingested_at` stamp inserted (371 event bytes, passed as the same
//! three parts the server passes) and a distinct 18-byte event id per record, into a fresh data dir
//! (`DataDir::open_or_init(dir, 1)`, 256 MiB segments, no retention, `fsync: false`).
//! Group `append` is one record per iteration. Group `append_group_fsync` is N records
//! (N = 1, 16, 64, 128) then one `PartitionLog::sync()` — fdatasync of the active
//! segment, the call the server's group commit makes through io_uring — per iteration;
//! throughput counts records, so 1 / throughput is the cost per record when N records
//! share one fdatasync (criterion's `time` is per iteration: N appends and the sync).
//!
//! Opening a log, creating its segment and deleting it are kept out of the timings:
//! before a segment would fill, the clock stops and a new data dir is opened.
//! Data dirs go under cargo's target tmp dir (the target dir's filesystem, not `/tmp`,
//! which is often tmpfs where fdatasync costs nothing), or under `$SLUICE_BENCH_DIR` to
//! measure another disk; the bench prints the directory and its filesystem type.
//!
//! Reproduce: `cargo bench --bench append` (quick: `-- --warm-up-time 1 --measurement-time 3`)

use sluice_test_support::bench_inputs as common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::constants::SEGMENT_HEADER_BYTES;
use sluice::ingest::envelope::{STAMP_BYTES, Stamp, Validator, stamped_parts};
use sluice::log::format::stored_len;
use sluice::log::{DataDir, LogOptions, PartitionLog};
use tempfile::TempDir;

const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
/// Event body size as received; the stored event adds the `ingested_at` stamp.
const BODY_BYTES: usize = common::EVENT_BYTES_TYPICAL;
/// Stored event size: body plus stamp.
const EVENT_BYTES: usize = BODY_BYTES + STAMP_BYTES;
/// Records per fdatasync in the group-commit group: no batching, a light load, the
/// earlier single figure, and a loop's worth under heavy load.
const GROUP_COMMIT_RECORDS: [u64; 4] = [1, 16, 64, 128];
/// Samples of the group-commit group (criterion's default is 100).
const GROUP_COMMIT_SAMPLES: usize = 30;
/// Overrides where the data dirs are created.
const BENCH_DIR_ENV: &str = "SLUICE_BENCH_DIR";
/// Event ids are `e_` and 16 hex digits of a counter: unique, and of one length.
const EVENT_ID_BYTES: usize = 18;

fn options() -> LogOptions {
    LogOptions { segment_bytes: SEGMENT_BYTES, retention_ms: 0, retention_bytes: 0, fsync: false }
}

fn event_id(counter: u64) -> [u8; EVENT_ID_BYTES] {
    let mut id = [0u8; EVENT_ID_BYTES];
    id[..2].copy_from_slice(b"e_");
    let hex = format!("{counter:016x}");
    id[2..].copy_from_slice(hex.as_bytes());
    id
}

/// An open log in its own temporary data dir, with its first segment already created.
struct OpenLog {
    log: PartitionLog,
    /// Records that still fit in the active segment.
    room_records: u64,
    // Dropped after `log`, which deletes the data dir.
    _dir: TempDir,
}

impl OpenLog {
    fn open(root: &Path, parts: &[&[u8]], ingest_ms: i64) -> OpenLog {
        let dir = tempfile::tempdir_in(root).expect("create temporary data dir");
        let data_dir = DataDir::open_or_init(dir.path(), 1).expect("init data dir");
        let (mut log, _report) = PartitionLog::open(&data_dir, 0, &options()).expect("open partition log");
        let record_bytes = stored_len((EVENT_ID_BYTES + EVENT_BYTES) as u64);
        let capacity = (SEGMENT_BYTES - SEGMENT_HEADER_BYTES as u64) / record_bytes;
        // The first append creates and preallocates the segment: keep that out of timing.
        log.append(&event_id(u64::MAX), ingest_ms, parts).expect("first append");
        OpenLog { log, room_records: capacity - 1, _dir: dir }
    }
}

/// Runs `records` appends (with a sync after every `sync_every` records when set) and
/// returns only the time spent in them.
struct Runner {
    root: PathBuf,
    open: Option<OpenLog>,
    next_id: u64,
    ingest_ms: i64,
}

impl Runner {
    fn run(&mut self, parts: &[&[u8]], records: u64, sync_every: Option<u64>) -> Duration {
        let ids: Vec<[u8; EVENT_ID_BYTES]> = (self.next_id..self.next_id + records).map(event_id).collect();
        self.next_id += records;
        let step = sync_every.unwrap_or(1);
        debug_assert!(records.is_multiple_of(step));
        let mut elapsed = Duration::ZERO;
        let mut done = 0;
        while done < records {
            if self.open.as_ref().is_none_or(|open| open.room_records < step) {
                self.open = None;
                self.open = Some(OpenLog::open(&self.root, parts, self.ingest_ms));
            }
            let open = self.open.as_mut().expect("log opened above");
            let batch = (records - done).min(open.room_records / step * step);
            let started = Instant::now();
            for (index, id) in ids[done as usize..(done + batch) as usize].iter().enumerate() {
                black_box(open.log.append(black_box(id), self.ingest_ms, black_box(parts)).expect("append"));
                if sync_every.is_some() && (index as u64 + 1).is_multiple_of(step) {
                    open.log.sync().expect("fdatasync");
                }
            }
            elapsed += started.elapsed();
            open.room_records -= batch;
            done += batch;
        }
        elapsed
    }
}

fn bench_append(c: &mut Criterion) {
    let ingest_ms = sluice::platform::time::now_unix_ms();
    let body = common::event("e_01HF3Z8Z7Q8Q2K", BODY_BYTES);
    let envelope = Validator::new(body.len()).validate(&body).expect("bench event is a valid envelope");
    let stamp = Stamp::new(ingest_ms);
    let parts = stamped_parts(&body, &envelope, &stamp);
    assert_eq!(parts.iter().map(|part| part.len()).sum::<usize>(), EVENT_BYTES);

    let mut runner = Runner { root: bench_root(), open: None, next_id: 0, ingest_ms };

    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{BODY_BYTES}B_body_{EVENT_BYTES}B_stored"), |b| b.iter_custom(|iters| runner.run(&parts, iters, None)));
    group.finish();

    let mut group = c.benchmark_group("append_group_fsync");
    // An fdatasync takes about a millisecond here: fewer samples keep the default
    // measurement time enough for criterion's linear sampling plan.
    group.sample_size(GROUP_COMMIT_SAMPLES);
    for records in GROUP_COMMIT_RECORDS {
        group.throughput(Throughput::Elements(records));
        let id = BenchmarkId::new(format!("{BODY_BYTES}B_body_records_per_fdatasync"), records);
        group.bench_function(id, |b| b.iter_custom(|iters| runner.run(&parts, iters * records, Some(records))));
    }
    group.finish();
}

/// The directory data dirs are created in; says where and on what filesystem.
fn bench_root() -> PathBuf {
    let root = std::env::var_os(BENCH_DIR_ENV).map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&root).expect("create the bench directory");
    let filesystem = filesystem_type(&root).unwrap_or_else(|| "unknown".to_owned());
    eprintln!("append: data dirs under {} (filesystem {filesystem}; set {BENCH_DIR_ENV} to move them)", root.display());
    if filesystem == "tmpfs" || filesystem == "ramfs" {
        eprintln!("append: warning: {filesystem} keeps files in memory, so fdatasync figures say nothing about a disk");
    }
    root
}

/// The type of the filesystem holding `path`: the longest mount point in `/proc/mounts`
/// that contains it.
fn filesystem_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (_device, mount, filesystem) = (fields.next()?, fields.next()?, fields.next()?);
            Some((PathBuf::from(mount), filesystem.to_owned()))
        })
        .filter(|(mount, _)| path.starts_with(mount))
        .max_by_key(|(mount, _)| mount.as_os_str().len())
        .map(|(_, filesystem)| filesystem)
}

criterion_group!(benches, bench_append);
criterion_main!(benches);

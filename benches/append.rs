//! Partition log append, without and with group commit.
//!
//! Measures `sluice::storage::PartitionLog::append` of a 330-byte SPEC-shaped event body
//! with the gateway's `ingested_at` stamp inserted (371 event bytes, passed as the same
//! three parts the server passes) and a distinct 18-byte event id per record, into a fresh data dir
//! under `$TMPDIR` (`DataDir::open_or_init(dir, 1)`, 256 MiB segments, no retention,
//! `fsync: false`). Group `append` is one record per iteration; group
//! `append_fdatasync_64` is 64 records then `PartitionLog::sync()` (fdatasync) per
//! iteration, so the difference per record is what group commit costs on this disk.
//! Throughput is records per second.
//!
//! Opening a log, creating its segment and deleting it are kept out of the timings:
//! before a segment would fill, the clock stops and a new data dir is opened.
//! Set `TMPDIR` to put the data dir on the disk you want to measure.
//!
//! Reproduce: `cargo bench --bench append`

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::constants::SEGMENT_HEADER_BYTES;
use sluice::envelope::{STAMP_BYTES, Stamp, Validator, stamped_parts};
use sluice::storage::format::stored_len;
use sluice::storage::{DataDir, LogOptions, PartitionLog};
use tempfile::TempDir;

const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
/// Event body size as received; the stored event adds the `ingested_at` stamp.
const BODY_BYTES: usize = common::EVENT_BYTES_TYPICAL;
/// Stored event size: body plus stamp.
const EVENT_BYTES: usize = BODY_BYTES + STAMP_BYTES;
/// Records per fdatasync in the group-commit group.
const GROUP_COMMIT_RECORDS: u64 = 64;
/// Samples of the group-commit group (criterion's default is 100).
const GROUP_COMMIT_SAMPLES: usize = 30;
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
    fn open(parts: &[&[u8]], ingest_ms: i64) -> OpenLog {
        let dir = tempfile::tempdir().expect("create temporary data dir");
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
                self.open = Some(OpenLog::open(parts, self.ingest_ms));
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
    let ingest_ms = sluice::time::now_unix_ms();
    let body = common::event("e_01HF3Z8Z7Q8Q2K", BODY_BYTES);
    let envelope = Validator::new(body.len()).validate(&body).expect("bench event is a valid envelope");
    let stamp = Stamp::new(ingest_ms);
    let parts = stamped_parts(&body, &envelope, &stamp);
    assert_eq!(parts.iter().map(|part| part.len()).sum::<usize>(), EVENT_BYTES);

    let mut runner = Runner { open: None, next_id: 0, ingest_ms };

    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{BODY_BYTES}B_body_{EVENT_BYTES}B_stored"), |b| b.iter_custom(|iters| runner.run(&parts, iters, None)));
    group.finish();

    let mut group = c.benchmark_group("append_fdatasync_64");
    // An fdatasync takes about a millisecond here: fewer samples keep the default
    // measurement time enough for criterion's linear sampling plan.
    group.sample_size(GROUP_COMMIT_SAMPLES);
    group.throughput(Throughput::Elements(GROUP_COMMIT_RECORDS));
    group.bench_function(format!("{BODY_BYTES}B_body_x{GROUP_COMMIT_RECORDS}_then_sync"), |b| {
        b.iter_custom(|iters| runner.run(&parts, iters * GROUP_COMMIT_RECORDS, Some(GROUP_COMMIT_RECORDS)))
    });
    group.finish();
}

criterion_group!(benches, bench_append);
criterion_main!(benches);

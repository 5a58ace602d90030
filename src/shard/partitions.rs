//! The partitions one shard owns: their logs, dedup windows and group commit.
//! Only the owning shard's thread touches any of this.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::{Config, Durability};
use crate::log::dedup::{DedupIndex, Opened};
use crate::log::{DataDir, LogOptions, PartitionLog, RecoveryReport, StorageError};
use crate::metrics::Control;
use crate::shard::handoff::{Outcome, Ticket};

/// Records scanned between two updates of the shared recovery progress counter.
const RECOVERY_PROGRESS_RECORDS: u64 = 1 << 16;

struct Owned {
    /// The partition's slot (`topics.rs`); `log.partition()` is its number in its topic.
    partition: u32,
    /// The dedup window of its topic (at most the topic's retention).
    window_ms: i64,
    log: PartitionLog,
    dedup: DedupIndex,
    /// Every offset below this is durable under `fsync`.
    synced: u64,
    /// Target of the fdatasync in flight, if any.
    sync_inflight: Option<u64>,
    /// Outcomes waiting for `synced` to pass their offset.
    waiting: VecDeque<(Ticket, Outcome)>,
    /// The readable end last published to consumers.
    readable: u64,
    /// Wall-clock ms the fdatasync in flight was issued.
    sync_started_ms: i64,
}

/// Answers waiting for one partition's group commit past which its new events are
/// refused 503 `overloaded` (storage cannot keep up).
pub const SYNC_WAITING_MAX: usize = 100_000;
/// An fdatasync in flight longer than this refuses the partition's new events 503
/// `overloaded` until it completes: answers wait for the disk, never without bound.
pub const SYNC_SLOW_MS: i64 = 2_000;

/// What [`Partitions::store`] did with an event.
pub enum Stored {
    /// Answer now.
    Now(Outcome),
    /// Answer after the group commit; the outcome will come out of `take_released`.
    /// `offset` is the event's; `appended` false for a duplicate (`offset` is then the
    /// original's).
    AfterSync { offset: u64, appended: bool },
}

pub struct Partitions {
    shard: usize,
    shards: usize,
    durability: Durability,
    owned: Vec<Owned>,
    control: Arc<Control>,
    /// Set after an fsync error: sluice stops acknowledging (fail-stop), never retries.
    failed: bool,
    released: Vec<(Ticket, Outcome)>,
}

impl Partitions {
    /// Opens (recovering) every partition this shard owns (slots `shard`, `shard +
    /// shards`, ... across all topics; `dirs` holds each topic's data dir) and rebuilds
    /// its dedup window. Reports are keyed by slot.
    pub fn open(
        config: &Config,
        dirs: &[DataDir],
        shard: usize,
        control: Arc<Control>,
        now_ms: i64,
    ) -> Result<(Partitions, Vec<(u32, RecoveryReport)>), StorageError> {
        let shards = config.ingest.shards;
        let topology = &config.topics;
        let mut owned = Vec::new();
        let mut reports = Vec::new();
        for slot in (shard as u32..topology.slots()).step_by(shards) {
            let (topic_index, partition) = topology.locate(slot);
            let topic = topology.topic(topic_index);
            let dir = &dirs[usize::from(topic_index)];
            let options = LogOptions {
                segment_bytes: config.storage.segment_bytes,
                retention_ms: topic.retention_ms,
                retention_bytes: topic.retention_bytes,
                fsync: config.storage.durability == Durability::Fsync,
            };
            let window_ms = i64::try_from(config.dedup.window_ms.min(topic.retention_ms)).unwrap_or(i64::MAX);
            let (log, report) = PartitionLog::open(dir, partition, &options)?;
            let dedup = open_dedup(&log, dir, config, &control, now_ms.saturating_sub(window_ms))?;
            let end = log.next_offset();
            control.end_offsets[slot as usize].store(end, Ordering::Relaxed);
            control.readable_ends[slot as usize].store(end, Ordering::Release);
            control.start_offsets[slot as usize].store(log.start_offset(), Ordering::Relaxed);
            control.partitions_recovered.fetch_add(1, Ordering::Relaxed);
            owned.push(Owned {
                partition: slot,
                window_ms,
                log,
                dedup,
                synced: end,
                sync_inflight: None,
                waiting: VecDeque::new(),
                readable: end,
                sync_started_ms: 0,
            });
            reports.push((slot, report));
        }
        let partitions =
            Partitions { shard, shards, durability: config.storage.durability, owned, control, failed: false, released: Vec::new() };
        Ok((partitions, reports))
    }

    /// Dedups and appends one event to a partition this shard owns.
    pub fn store(&mut self, ticket: Ticket, partition: u32, event_id: &[u8], ingest_ms: i64, parts: &[&[u8]]) -> Stored {
        if self.failed {
            return Stored::Now(Outcome::StorageUnavailable);
        }
        let fsync = self.durability == Durability::Fsync;
        debug_assert_eq!(partition as usize % self.shards, self.shard);
        // Split borrows: the partition mutably, the shared control for the storage state.
        let (owned, control) = (&mut self.owned[partition as usize / self.shards], &self.control);
        let outcome = match owned.dedup.lookup(event_id) {
            Ok(offset) => Outcome::Duplicate { partition, offset },
            // Storage cannot keep up: a sync that takes too long, or too many answers
            // waiting for one. Refused before the append, so nothing of it is stored.
            Err(_)
                if fsync
                    && (owned.waiting.len() >= SYNC_WAITING_MAX
                        || owned.sync_inflight.is_some() && ingest_ms - owned.sync_started_ms > SYNC_SLOW_MS) =>
            {
                return Stored::Now(Outcome::Overloaded);
            }
            // The index has room before the record is stored: never stored unindexed.
            Err(hash) => match owned.dedup.prepare(owned.log.next_offset()).and_then(|()| owned.log.append(event_id, ingest_ms, parts)) {
                Ok(offset) => {
                    // Published before the answer exists, so a scrape after a 2xx counts it
                    // (a once-per-loop publish raced a hand-off answered by another shard).
                    control.end_offsets[partition as usize].store(offset + 1, Ordering::Relaxed);
                    owned.dedup.insert_hashed(hash, offset, ingest_ms);
                    Outcome::Accepted { partition, offset }
                }
                Err(error) if error.is_sync_failure() => {
                    // A failed fdatasync at a roll covers records already acknowledged
                    // under `os` and waiting under `fsync`: the same fail-stop as a
                    // failed group commit.
                    self.fail_stop(partition, &error);
                    return Stored::Now(Outcome::StorageUnavailable);
                }
                Err(error) => {
                    log_storage_error(partition, &error);
                    control.storage_refused(crate::platform::time::now_unix_ms());
                    Outcome::StorageUnavailable
                }
            },
        };
        match outcome.offset() {
            Some(offset) if fsync && offset >= owned.synced => {
                owned.waiting.push_back((ticket, outcome));
                Stored::AfterSync { offset, appended: matches!(outcome, Outcome::Accepted { .. }) }
            }
            _ => Stored::Now(outcome),
        }
    }

    /// Publishes to consumers how far each partition may be read (the end under `os`,
    /// the synced offset under `fsync`: never an event a power loss could take back),
    /// and returns the shards (a bit each) with a reader parked on a partition that
    /// moved; their bits are taken, so each parked reader is woken once. Called once
    /// per reactor loop.
    ///
    /// The store and the load are `SeqCst`, as are the reader's bit set and its load of
    /// the end (`shard/consume.rs`): one of the two always sees the other, so no reader
    /// sleeps through a move.
    pub fn publish_readable(&mut self) -> u64 {
        let mut wake = 0;
        let fsync = self.durability == Durability::Fsync;
        for owned in &mut self.owned {
            let readable = if fsync { owned.synced.min(owned.log.next_offset()) } else { owned.log.next_offset() };
            if readable == owned.readable {
                continue;
            }
            owned.readable = readable;
            let slot = owned.partition as usize;
            self.control.readable_ends[slot].store(readable, Ordering::SeqCst);
            if self.control.read_waiters[slot].load(Ordering::SeqCst) != 0 {
                wake |= self.control.read_waiters[slot].swap(0, Ordering::SeqCst);
            }
        }
        wake
    }

    /// Partitions (local index, fd, target) that need an fdatasync now: outcomes are
    /// waiting and no sync is in flight. Marks them in flight.
    pub fn syncs_to_start(&mut self, now_ms: i64, mut start: impl FnMut(u32, std::os::fd::RawFd)) {
        if self.failed {
            return;
        }
        for (index, owned) in self.owned.iter_mut().enumerate() {
            if owned.waiting.is_empty() || owned.sync_inflight.is_some() {
                continue;
            }
            if let Some(fd) = owned.log.active_fd() {
                owned.sync_inflight = Some(owned.log.next_offset());
                owned.sync_started_ms = now_ms;
                start(index as u32, fd);
            }
        }
    }

    /// An fdatasync issued by `syncs_to_start` finished with `result` (>= 0 ok, else -errno).
    pub fn sync_done(&mut self, index: u32, result: i32) {
        let Some(owned) = self.owned.get_mut(index as usize) else { return };
        let Some(target) = owned.sync_inflight.take() else { return };
        if result < 0 {
            let partition = owned.partition;
            let error = StorageError::sync(owned.log.dir(), "fdatasync", std::io::Error::from_raw_os_error(-result));
            self.fail_stop(partition, &error);
            return;
        }
        owned.synced = owned.synced.max(target);
        while let Some((_, outcome)) = owned.waiting.front() {
            if outcome.offset().is_some_and(|offset| offset >= owned.synced) {
                break;
            }
            let (ticket, outcome) = owned.waiting.pop_front().expect("front exists");
            self.released.push((ticket, outcome));
        }
    }

    /// An fdatasync failed: the kernel may have dropped the pages it covered and will
    /// not report that again, so nothing written before it can be promised any more.
    /// Every waiting outcome is answered 503, no further write is acknowledged, and
    /// `/readyz` reports not ready until a restart (whose recovery reads back what is
    /// really on disk).
    fn fail_stop(&mut self, partition: u32, error: &StorageError) {
        if !self.failed {
            tracing::error!(partition, %error, "storage is now fail-stop: no further acknowledgements until a restart");
        }
        let first = !self.failed;
        self.failed = true;
        self.control.storage_failed.store(true, Ordering::Release);
        for owned in &mut self.owned {
            if first {
                // Nothing this run wrote may be trusted by a restart on the same boot.
                owned.log.distrust();
                owned.dedup.distrust();
            }
            owned.sync_inflight = None;
            self.released.extend(owned.waiting.drain(..).map(|(ticket, _)| (ticket, Outcome::StorageUnavailable)));
        }
    }

    /// Outcomes whose durability condition has been met since the last call.
    pub fn take_released(&mut self, into: &mut Vec<(Ticket, Outcome)>) {
        into.append(&mut self.released);
    }

    pub fn sync_pending(&self) -> bool {
        self.owned.iter().any(|owned| owned.sync_inflight.is_some() || !owned.waiting.is_empty())
    }

    /// Retention and the dedup window; called from the reactor tick.
    pub fn housekeeping(&mut self, now_ms: i64) {
        for owned in &mut self.owned {
            if let Err(error) = owned.log.enforce_retention(now_ms) {
                log_storage_error(owned.partition, &error);
            }
            self.control.start_offsets[owned.partition as usize].store(owned.log.start_offset(), Ordering::Release);
            owned.dedup.expire(now_ms.saturating_sub(owned.window_ms), owned.log.start_offset());
        }
    }

    /// Rewrites the checkpoint of every partition that took records since the last one.
    pub fn checkpoint(&mut self) {
        if self.failed {
            return;
        }
        for owned in &mut self.owned {
            owned.log.checkpoint(false);
        }
    }

    /// Flushes every owned log to disk, then the dedup index, and marks the index clean
    /// so the next start trusts it on any boot (the end of a drain). After a fail-stop
    /// nothing is marked clean.
    pub fn close(&mut self) {
        for index in 0..self.owned.len() {
            if self.failed {
                return;
            }
            let owned = &mut self.owned[index];
            let partition = owned.partition;
            let closed = owned.log.close_clean().and_then(|()| owned.dedup.close_clean());
            if let Err(error) = closed {
                self.fail_stop(partition, &error);
            }
        }
    }
}

/// Opens the dedup index of `log`'s partition and brings it up to the log's end: the
/// records after the last indexed one when the index is trusted, else every record of
/// the window (`window_start_ms` on).
fn open_dedup(
    log: &PartitionLog,
    dir: &DataDir,
    config: &Config,
    control: &Control,
    window_start_ms: i64,
) -> Result<DedupIndex, StorageError> {
    let partition_dir = log.dir();
    let key = dir.dedup_key();
    let ids_max = config.dedup.ids_per_partition_max;
    let (mut dedup, opened) = DedupIndex::open(partition_dir, log.partition(), key, ids_max)?;
    let from = match opened {
        Opened::IndexedUpTo(indexed) if indexed <= log.next_offset() => Some(indexed),
        // Indexed past the log's end: the log lost records the index saw (a power loss
        // under `os`); start over so no id points at an offset that holds another event.
        Opened::IndexedUpTo(_) => {
            drop(dedup);
            let (fresh, _) = DedupIndex::open_discarding(partition_dir, log.partition(), key, ids_max)?;
            dedup = fresh;
            None
        }
        Opened::Rebuild => None,
    };
    let mut scanned = 0u64;
    let mut failed = None;
    let mut index = |record: crate::log::RecordView<'_>| {
        scanned += 1;
        if scanned.is_multiple_of(RECOVERY_PROGRESS_RECORDS) {
            control.records_recovered.fetch_add(RECOVERY_PROGRESS_RECORDS, Ordering::Relaxed);
        }
        if failed.is_some() || dedup.get(record.event_id).is_some() {
            return;
        }
        match dedup.prepare(record.offset) {
            Ok(()) => dedup.insert(record.event_id, record.offset, record.ingest_ms),
            Err(error) => failed = Some(error),
        }
    };
    match from {
        Some(offset) => log.scan_from(offset, &mut index)?,
        None => log.scan(window_start_ms, &mut index)?,
    }
    if let Some(error) = failed {
        return Err(error);
    }
    if from.is_none() && log.next_offset() > log.start_offset() {
        tracing::warn!(
            partition = log.partition(),
            records = scanned,
            "dedup index rebuilt from the log: it was not closed cleanly on this boot (a power loss or reboot after a crash)"
        );
    }
    control.records_recovered.fetch_add(scanned % RECOVERY_PROGRESS_RECORDS, Ordering::Relaxed);
    Ok(dedup)
}

/// Logs a storage failure, at most one line per second per shard (a full disk fails
/// every append; the count of the rest is in the line and in the metrics).
fn log_storage_error(partition: u32, error: &StorageError) {
    thread_local! {
        static SAMPLER: std::cell::RefCell<crate::platform::logging::Sampler> = const { crate::platform::logging::Sampler::per_thread() };
    }
    if let Some(suppressed) = crate::platform::logging::admit_on_this_thread(&SAMPLER) {
        tracing::error!(partition, %error, suppressed, "storage error");
    }
}
